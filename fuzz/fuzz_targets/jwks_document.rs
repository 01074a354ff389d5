//! `tokengate::jwks::KeySet::from_jwks` on arbitrary bytes (and `key_from_pem` on the same bytes
//! as text).
//!
//! Invariants: never panics; a set it returns is non-empty, every key fits the algorithm it is
//! pinned to, no key is an HMAC secret (published sets never contribute symmetric keys), and
//! lookups by `kid` and algorithm only ever return keys that fit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::Algorithm;
use tokengate::jwks::{KeyKind, KeySet};

const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fuzz_target!(|data: &[u8]| {
    if let Ok((set, _skipped)) = KeySet::from_jwks(data) {
        assert!(!set.is_empty(), "an Ok key set is never empty");
        for key in set.keys() {
            assert_ne!(key.kind(), KeyKind::Hmac, "a JWKS contributed a symmetric key");
            if let Some(alg) = key.alg() {
                assert!(key.kind().supports(alg), "key pinned to an algorithm its kind cannot verify");
            }
            for alg in ALGORITHMS {
                for candidate in set.candidates(key.kid(), alg) {
                    assert!(candidate.fits(alg));
                    if set.has_kids() {
                        assert_eq!(candidate.kid(), key.kid());
                    }
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = KeySet::key_from_pem(text, Some("k".into())) {
            assert_ne!(key.kind(), KeyKind::Hmac);
        }
    }
});
