//! The whole local verification of an arbitrary token string against a fixed key set:
//! `tokengate::jwt::verify` with the issuers of the fuzz layer, and `Gate::verify_token`.
//!
//! Invariants: never panics; the two entry points agree; a token that is accepted is canonical
//! (three segments of canonical base64url), names a configured issuer, and is under the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::jwt::{self, VerifyError};
use tokengate_fuzz::{MAX_TOKEN_BYTES, NOW, is_canonical, layer, poll_once};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let gate = layer().gate();
    let _ = jwt::decode_unverified(token);
    let direct = jwt::verify(token, gate.issuers(), NOW, MAX_TOKEN_BYTES);
    let through_gate = poll_once(gate.verify_token(token)).expect("verify_token never waits on static keys");
    match (&direct, &through_gate) {
        (Ok(principal), Ok(again)) => {
            assert!(token.len() <= MAX_TOKEN_BYTES);
            assert_eq!(token.split('.').count(), 3, "accepted a token that is not three segments");
            assert!(is_canonical(token), "accepted a non-canonical encoding: {token:?}");
            assert!(
                [tokengate_fuzz::ISSUER, tokengate_fuzz::HMAC_ISSUER].contains(&principal.issuer()),
                "accepted for an unconfigured issuer"
            );
            assert_eq!(principal.subject(), again.subject());
        }
        (Err(VerifyError::UnknownKey { .. }), Err(_)) | (Err(_), Err(_)) => {}
        (direct, through_gate) => panic!("jwt::verify says {direct:?}, Gate::verify_token says {through_gate:?}"),
    }
});
