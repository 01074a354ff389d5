//! Fuzz target `verify_token`; the check itself is `tokengate_fuzz::targets::verify_token` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::targets::verify_token(data));
