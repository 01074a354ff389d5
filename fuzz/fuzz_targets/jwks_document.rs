//! Fuzz target `jwks_document`; the check itself is `tokengate_fuzz::targets::jwks_document` (see there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_fuzz::targets::jwks_document(data));
