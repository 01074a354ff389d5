//! Fuzz target `gate_request`; the check itself is `tokengate_fuzz::targets::gate_request` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::targets::gate_request(data));
