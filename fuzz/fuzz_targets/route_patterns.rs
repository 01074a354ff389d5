//! Fuzz target `route_patterns`; the check itself is `tokengate_fuzz::targets::route_patterns` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::targets::route_patterns(data));
