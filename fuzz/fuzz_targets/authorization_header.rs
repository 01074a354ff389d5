//! Fuzz target `authorization_header`; the check itself is `tokengate_fuzz::targets::authorization_header` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::targets::authorization_header(data));
