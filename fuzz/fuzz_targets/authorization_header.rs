//! `tokengate::extract::parse_authorization` on arbitrary header bytes.
//!
//! Invariants: never panics; a token it returns is at most the cap, non-empty, and made only of
//! RFC 6750 `b64token` characters (so nothing after it — a second credential, a comma, a
//! space — can ride along).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::extract::parse_authorization;

fuzz_target!(|data: &[u8]| {
    for cap in [tokengate_fuzz::MAX_TOKEN_BYTES, 16] {
        if let Ok(Some(token)) = parse_authorization(data, cap) {
            assert!(!token.is_empty() && token.len() <= cap, "token length {} vs cap {cap}", token.len());
            let body = token.trim_end_matches('=');
            assert!(!body.is_empty());
            assert!(
                body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
                "not a b64token: {token:?}"
            );
            assert!(data.ends_with(token.as_bytes()), "the token is the tail of the header value");
        }
    }
});
