//! Fuzz target `gateway_config`; the check itself is `tokengate_fuzz::targets::gateway_config`
//! (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::targets::gateway_config(data));
