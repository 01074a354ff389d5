//! Fuzz target `introspection_response`; the check itself is
//! `tokengate_fuzz::targets::introspection_response` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::targets::introspection_response(data));
