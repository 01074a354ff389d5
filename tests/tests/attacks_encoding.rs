//! Attack suite, part 2: how a token is spelled and carried — non-canonical base64url, extra
//! and missing segments, JWE-shaped tokens, duplicate JSON members, deep nesting, non-object
//! JSON, bad UTF-8, oversize tokens and headers, and smuggling a second token.
//!
//! Every case is one test asserting the exact answer DESIGN.md promises — 401 `invalid_token`
//! (with the failed check's description) for a bad token, 400 `invalid_request` for a bad
//! `Authorization` header — and that the handler behind the gate ran zero times. Tokens whose
//! JSON no serialiser would write (duplicate members, odd numbers, non-objects) are written by
//! hand and signed with HS256 against an HMAC-only gate, so the signature is always good and
//! only the check under test can refuse them.

mod attacks_support;

use attacks_support::{AUDIENCE, Gate, T0, b64, hmac_claims, hmac_claims_open, hs256, with_signature};
use http::{HeaderMap, HeaderValue, header};
use serde_json::json;
use tokengate::error::Rejection::*;

/// The header of the HMAC gate's good tokens.
const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// One test on the HMAC gate: a hand-written header and payload, signed, and the exact
/// rejection (401 `invalid_token`, that description, upstream untouched).
macro_rules! refused_raw {
    ($(#[$doc:meta])* $name:ident, $rejection:expr, $header:expr, $payload:expr) => {
        $(#[$doc])*
        #[tokio::test]
        async fn $name() {
            let gate = Gate::start_hmac(None).await;
            let header: String = $header.into();
            let payload: String = $payload.into();
            gate.assert_rejected(&hs256(&header, &payload), $rejection).await;
        }
    };
}

#[tokio::test]
async fn control_hand_written_hs256_token_reaches_the_upstream() {
    // Proves the raw signer and the HMAC gate agree, so every refusal below is the check's.
    let gate = Gate::start_hmac(None).await;
    gate.assert_accepted(&hs256(HS256, &hmac_claims())).await;
}

#[tokio::test]
async fn control_genuine_rs256_token_reaches_the_upstream() {
    let gate = Gate::start().await;
    gate.assert_accepted(&gate.issuer.token().sign()).await;
}

// =================================================================================================
// RFC 7515 §2 / §7.1 and RFC 7519 §7.2 — compact serialisation is exactly three segments of
// unpadded base64url. Lenient decoders (padding, the standard `+`/`/` alphabet, whitespace,
// non-zero trailing bits) give one token several spellings: distinct cache and revocation keys
// for the same signature, and parser differentials between the gate and the upstream.
// =================================================================================================

/// A genuine RS256 token and a gate; the token is re-minted until its signature segment
/// contains both `-` and `_`, so alphabet swaps really change it.
async fn genuine() -> (Gate, String) {
    let gate = Gate::start().await;
    loop {
        let token = gate.issuer.token().sign();
        let signature = token.split('.').nth(2).unwrap();
        if signature.contains('-') && signature.contains('_') {
            return (gate, token);
        }
    }
}

#[tokio::test]
async fn signature_with_one_padding_character_is_refused() {
    let (gate, token) = genuine().await;
    gate.assert_rejected(&format!("{token}="), Malformed).await;
}

#[tokio::test]
async fn signature_with_two_padding_characters_is_refused() {
    let (gate, token) = genuine().await;
    gate.assert_rejected(&format!("{token}=="), Malformed).await;
}

#[tokio::test]
async fn header_segment_with_padding_is_refused() {
    // `=` inside the token is not `b64token` syntax (it may only end the credentials): 400.
    let (gate, token) = genuine().await;
    let (head, rest) = token.split_once('.').unwrap();
    let answer = gate.get(&format!("{head}==.{rest}")).await;
    gate.assert_answer(&answer, 400, Some("invalid_request"));
}

#[tokio::test]
async fn signature_in_the_standard_alphabet_is_refused() {
    let (gate, token) = genuine().await;
    let signature = token.split('.').nth(2).unwrap().replace('-', "+").replace('_', "/");
    gate.assert_rejected(&with_signature(&token, &signature), Malformed).await;
}

#[tokio::test]
async fn payload_in_the_standard_alphabet_is_refused() {
    // A payload whose base64url has `-`/`_`: the `+`/`/` spelling must not decode to the same
    // claims (if it did, the signature over the original text would still fail — but a gate
    // that decoded leniently would parse claims the signature never covered).
    let (gate, token) = genuine().await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload = parts[1].clone();
    for filler in 0.. {
        if payload.contains(['-', '_']) {
            break;
        }
        let builder = gate.issuer.token().claim("pad", json!("?>?>".repeat(filler + 1)));
        let fresh = builder.sign();
        parts = fresh.split('.').map(str::to_owned).collect();
        payload = parts[1].clone();
    }
    parts[1] = payload.replace('-', "+").replace('_', "/");
    gate.assert_rejected(&parts.join("."), Malformed).await;
}

#[tokio::test]
async fn space_inside_the_token_is_an_invalid_request() {
    let (gate, token) = genuine().await;
    let (a, b) = token.split_at(20);
    let answer = gate.get(&format!("{a} {b}")).await;
    gate.assert_answer(&answer, 400, Some("invalid_request"));
}

#[tokio::test]
async fn tab_inside_the_token_is_an_invalid_request() {
    let (gate, token) = genuine().await;
    let (a, b) = token.split_at(20);
    let answer = gate.get_auth(&format!("Bearer {a}\t{b}")).await;
    gate.assert_answer(&answer, 400, Some("invalid_request"));
}

#[tokio::test]
async fn newline_inside_the_token_never_reaches_the_upstream() {
    // A bare LF, and an obs-fold (CRLF + space) continuation, inside the header value. HTTP
    // itself refuses both (hyper answers 400 before the gate runs).
    let (gate, token) = genuine().await;
    let (a, b) = token.split_at(20);
    for sep in ["\n", "\r\n "] {
        let request = format!(
            "GET /api/resource HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a}{sep}{b}\r\nConnection: close\r\n\r\n"
        );
        let status = gate.raw(request.as_bytes()).await;
        assert_eq!(status, Some(400), "separator {sep:?}");
    }
    gate.assert_upstream_untouched();
}

#[tokio::test]
async fn trailing_data_appended_to_the_signature_is_refused() {
    let (gate, token) = genuine().await;
    gate.assert_rejected(&format!("{token}AAAA"), BadSignature).await;
}

#[tokio::test]
async fn signature_of_impossible_base64_length_is_refused() {
    // 4k+1 characters can never be base64 (an RSA-2048 signature is 342 = 4k+2 characters).
    let (gate, token) = genuine().await;
    assert_eq!(token.split('.').nth(2).unwrap().len() % 4, 2);
    gate.assert_rejected(&format!("{token}AAA"), Malformed).await;
}

#[tokio::test]
async fn trailing_dot_is_refused() {
    let (gate, token) = genuine().await;
    gate.assert_rejected(&format!("{token}."), OpaqueNotAccepted).await;
}

#[tokio::test]
async fn fourth_segment_is_refused() {
    let (gate, token) = genuine().await;
    gate.assert_rejected(&format!("{token}.AAAA"), OpaqueNotAccepted).await;
}

#[tokio::test]
async fn fifth_segment_is_refused() {
    let (gate, token) = genuine().await;
    gate.assert_rejected(&format!("{token}.AAAA.AAAA"), OpaqueNotAccepted).await;
}

#[tokio::test]
async fn jwe_shaped_five_part_token_is_refused() {
    // RFC 7516 compact JWE: header.encrypted_key.iv.ciphertext.tag. tokengate verifies JWS
    // only; a JWE is never decrypted or treated as signed. 401.
    let gate = Gate::start().await;
    let header = b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa-1"}"#);
    let token =
        format!("{header}.{}.{}.{}.{}", b64([1u8; 256]), b64([2u8; 12]), b64(hmac_claims()), b64([3u8; 16]));
    gate.assert_rejected(&token, OpaqueNotAccepted).await;
}

#[tokio::test]
async fn jwe_header_in_a_three_part_token_is_refused() {
    // `alg: dir` + `enc` squeezed into JWS shape: `dir` is no signature algorithm. 401.
    let gate = Gate::start().await;
    let token = gate.issuer.token().header("alg", json!("dir")).header("enc", json!("A256GCM")).sign();
    gate.assert_rejected(&token, UnsupportedAlgorithm).await;
}

#[tokio::test]
async fn empty_segments_are_refused() {
    let (gate, token) = genuine().await;
    let parts: Vec<&str> = token.split('.').collect();
    for bad in [format!(".{}.{}", parts[1], parts[2]), format!("{}..{}", parts[0], parts[2]), "..".to_owned()]
    {
        gate.assert_rejected(&bad, Malformed).await;
    }
}

/// Replaces the last character of a segment by one that decodes to the same bytes but has
/// non-zero padding bits (the segment's length must leave spare bits).
fn with_dirty_trailing_bits(segment: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let spare_bits = match segment.len() % 4 {
        2 => 4,
        3 => 2,
        _ => panic!("segment has no spare bits"),
    };
    let last = segment.as_bytes()[segment.len() - 1];
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(index & ((1 << spare_bits) - 1), 0, "canonical input");
    let dirty = ALPHABET[index | 1] as char;
    format!("{}{dirty}", &segment[..segment.len() - 1])
}

#[tokio::test]
async fn non_canonical_trailing_bits_in_the_signature_are_refused() {
    // The most dangerous spelling: a lenient decoder yields the *same* signature bytes, so the
    // altered token would verify — a second accepted spelling of a genuine token. RSA-2048
    // signatures are 256 bytes: 342 characters, the last with 4 spare bits. 401, malformed.
    let (gate, token) = genuine().await;
    let signature = token.split('.').nth(2).unwrap();
    assert_eq!(signature.len() % 4, 2);
    let dirty = with_dirty_trailing_bits(signature);
    assert_ne!(dirty, signature);
    gate.assert_rejected(&with_signature(&token, &dirty), Malformed).await;
}

#[tokio::test]
async fn non_canonical_trailing_bits_in_the_header_are_refused() {
    let gate = Gate::start().await;
    // Pad the header until its base64url has spare bits.
    let mut token = gate.issuer.token().sign();
    for n in 0.. {
        if token.split('.').next().unwrap().len() % 4 >= 2 {
            break;
        }
        token = gate.issuer.token().header("x", json!("y".repeat(n))).sign();
    }
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = with_dirty_trailing_bits(&parts[0]);
    gate.assert_rejected(&parts.join("."), Malformed).await;
}

#[tokio::test]
async fn ecdsa_signature_with_non_canonical_trailing_bits_is_refused() {
    // 64 bytes: 86 characters, the last with 2 spare bits.
    let gate = Gate::start().await;
    let token = gate.issuer.token().alg(tokengate::Algorithm::ES256).sign();
    let signature = token.split('.').nth(2).unwrap();
    gate.assert_rejected(&with_signature(&token, &with_dirty_trailing_bits(signature)), Malformed).await;
}

#[tokio::test]
async fn fullwidth_lookalike_characters_are_an_invalid_request() {
    // Non-ASCII in the header value is not `b64token`. 400.
    let (gate, token) = genuine().await;
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {}．{}", &token[..10], &token[10..]);
    headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(value.as_bytes()).unwrap());
    let answer = gate.get_with(headers).await;
    gate.assert_answer(&answer, 400, Some("invalid_request"));
}

// =================================================================================================
// Duplicate member names — RFC 7515 §5.2 and RFC 7519 §4 allow a recipient to refuse them, and
// parsers that disagree on which duplicate wins are a classic bypass (CVE-2017-12635, CouchDB:
// two JSON parsers, two answers to "which `roles`?"). tokengate refuses any duplicate in the
// header or at the top level of the claims, also when one spelling is escaped.
// =================================================================================================

refused_raw!(
    /// `{"alg":"none","alg":"HS256"}`.
    duplicate_alg_none_first_is_refused,
    Malformed,
    r#"{"alg":"none","alg":"HS256"}"#,
    hmac_claims()
);
refused_raw!(
    /// `{"alg":"HS256","alg":"none"}`.
    duplicate_alg_none_last_is_refused,
    Malformed,
    r#"{"alg":"HS256","alg":"none"}"#,
    hmac_claims()
);
refused_raw!(duplicate_kid_is_refused, Malformed, r#"{"alg":"HS256","kid":"a","kid":"b"}"#, hmac_claims());
refused_raw!(
    duplicate_typ_is_refused,
    Malformed,
    r#"{"alg":"HS256","typ":"JWT","typ":"at+jwt"}"#,
    hmac_claims()
);
refused_raw!(
    duplicate_crit_is_refused,
    Malformed,
    r#"{"alg":"HS256","crit":["x"],"crit":[]}"#,
    hmac_claims()
);
refused_raw!(
    /// The escaped spelling `"\u0061lg"` is the same name `alg`.
    duplicate_alg_with_escaped_name_is_refused,
    Malformed,
    r#"{"alg":"HS256","\u0061lg":"none"}"#,
    hmac_claims()
);
refused_raw!(
    /// An untrusted issuer first, ours last (a last-wins parser would trust the token).
    duplicate_iss_ours_last_is_refused,
    Malformed,
    HS256,
    format!(r#"{{"iss":"https://evil.example.com",{}}}"#, &hmac_claims_open()[1..])
);
refused_raw!(
    duplicate_iss_ours_first_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"iss":"https://evil.example.com"}}"#, hmac_claims_open())
);
refused_raw!(
    /// `i\u0073s` is `iss`.
    duplicate_iss_with_escaped_name_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"i\u0073s":"https://evil.example.com"}}"#, hmac_claims_open())
);
refused_raw!(
    /// Expired first, far future last.
    duplicate_exp_is_refused,
    Malformed,
    HS256,
    format!(r#"{{"exp":{},{}}}"#, T0 - 3600, &hmac_claims_open()[1..])
);
refused_raw!(
    duplicate_exp_future_first_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"exp":{}}}"#, hmac_claims_open(), T0 - 3600)
);
refused_raw!(
    duplicate_aud_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"aud":"https://other.example.com"}}"#, hmac_claims_open())
);
refused_raw!(
    duplicate_sub_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"sub":"admin"}}"#, hmac_claims_open())
);
refused_raw!(
    /// A scope escalation a last-wins parser would grant.
    duplicate_scope_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"scope":"read","scope":"admin"}}"#, hmac_claims_open())
);
refused_raw!(
    duplicate_nbf_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"nbf":{T0},"nbf":{}}}"#, hmac_claims_open(), T0 + 3600)
);

// =================================================================================================
// Member names serde_json reserves for itself. With its `raw_value` feature (on whenever axum's
// `json` feature is) `serde_json::Value` reads `{"$serde_json::private::RawValue":"\"admin\""}`
// as the string "admin", and with `arbitrary_precision` it reads `$serde_json::private::Number`
// objects as numbers: an app reading `Principal::claims()` would see another claim than the one
// verified. tokengate refuses such a name in any object at any depth, escaped or not.
// =================================================================================================

refused_raw!(
    /// A role that `Value` would read as the string "admin".
    reserved_raw_value_name_in_a_custom_claim_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"role":{{"$serde_json::private::RawValue":"\"admin\""}}}}"#, hmac_claims_open())
);
refused_raw!(
    /// An audience that `Value` would read as ours.
    reserved_raw_value_name_as_the_audience_is_refused,
    Malformed,
    HS256,
    hmac_claims()
        .replace(&format!(r#""aud":"{AUDIENCE}""#), &format!(r#""aud":{{"$serde_json::private::RawValue":"\"{AUDIENCE}\""}}"#))
);
refused_raw!(
    reserved_number_name_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"n":{{"$serde_json::private::Number":"1"}}}}"#, hmac_claims_open())
);
refused_raw!(
    /// `\u0024` is `$`: the name is compared after unescaping.
    reserved_name_with_an_escape_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"x":[{{"\u0024serde_json::private::RawValue":"1"}}]}}"#, hmac_claims_open())
);
refused_raw!(
    reserved_name_at_the_top_level_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"$serde_json::private::RawValue":"{{}}"}}"#, hmac_claims_open())
);
refused_raw!(
    reserved_name_in_the_header_is_refused,
    Malformed,
    r#"{"alg":"HS256","x":{"$serde_json::private::RawValue":"1"}}"#,
    hmac_claims()
);

#[tokio::test]
async fn reserved_name_in_a_signed_rs256_token_is_refused() {
    let gate = Gate::start().await;
    let token =
        gate.issuer.token().claim("role", json!({"$serde_json::private::RawValue": "\"admin\""})).sign();
    gate.assert_rejected(&token, Malformed).await;
}

#[tokio::test]
async fn names_that_only_resemble_the_reserved_prefix_are_accepted() {
    // Control: ordinary members, passed to the app as they are.
    let gate = Gate::start_hmac(None).await;
    let payload = format!(
        r#"{},"role":{{"$serde_json::privat":"a","serde_json::private::RawValue":"b","$Serde_json::private::RawValue":"c"}}}}"#,
        hmac_claims_open()
    );
    gate.assert_accepted(&hs256(HS256, &payload)).await;
}

// =================================================================================================
// RFC 8725 §3.7 "Use UTF-8", and JSON that is not a claims object: non-object payloads and
// headers, bad encodings, numbers out of range, and nesting deep enough to exhaust a recursive
// parser's stack (serde_json stops at 128 levels).
// =================================================================================================

refused_raw!(payload_array_is_refused, Malformed, HS256, format!("[{}]", hmac_claims()));
refused_raw!(payload_string_is_refused, Malformed, HS256, json!(hmac_claims()).to_string());
refused_raw!(payload_number_is_refused, Malformed, HS256, "1700000000");
refused_raw!(payload_null_is_refused, Malformed, HS256, "null");
refused_raw!(payload_true_is_refused, Malformed, HS256, "true");
refused_raw!(payload_empty_object_is_refused, MissingClaim("iss"), HS256, "{}");
refused_raw!(header_array_is_refused, Malformed, format!("[{HS256}]"), hmac_claims());
refused_raw!(header_null_is_refused, Malformed, "null", hmac_claims());
refused_raw!(
    /// JSON followed by more JSON.
    payload_with_trailing_garbage_is_refused,
    Malformed,
    HS256,
    format!("{} {{}}", hmac_claims())
);
refused_raw!(
    /// A UTF-8 byte-order mark before the object.
    payload_with_byte_order_mark_is_refused,
    Malformed,
    HS256,
    format!("\u{feff}{}", hmac_claims())
);
refused_raw!(
    /// A lone UTF-16 surrogate escape in `sub`.
    payload_with_lone_surrogate_escape_is_refused,
    Malformed,
    HS256,
    format!(r#"{},"sub":"\ud800"}}"#, &hmac_claims_open().replace(r#","sub":"user-1""#, ""))
);
refused_raw!(
    /// `exp: 1e400` does not fit a double.
    exp_overflowing_a_double_is_refused,
    Malformed,
    HS256,
    hmac_claims().replace(&format!(r#""exp":{}"#, T0 + 300), r#""exp":1e400"#)
);
refused_raw!(
    /// One past u64::MAX: parsed as a float far beyond year 9999.
    exp_beyond_u64_is_refused,
    InvalidClaim("exp"),
    HS256,
    hmac_claims().replace(&format!(r#""exp":{}"#, T0 + 300), r#""exp":18446744073709551616"#)
);

#[tokio::test]
async fn payload_with_invalid_utf8_is_refused() {
    let gate = Gate::start_hmac(None).await;
    let mut payload = hmac_claims().into_bytes();
    let at = payload.len() - 1;
    payload.splice(at..at, br#","x":"\xff\xfe""#.iter().copied());
    let token = attacks_support::sign_raw(
        HS256.as_bytes(),
        &payload,
        tokengate::Algorithm::HS256,
        attacks_support::HMAC_SECRET,
    );
    gate.assert_rejected(&token, Malformed).await;
}

#[tokio::test]
async fn payload_in_utf16_is_refused() {
    let gate = Gate::start_hmac(None).await;
    let payload: Vec<u8> = hmac_claims().encode_utf16().flat_map(u16::to_le_bytes).collect();
    let token = attacks_support::sign_raw(
        HS256.as_bytes(),
        &payload,
        tokengate::Algorithm::HS256,
        attacks_support::HMAC_SECRET,
    );
    gate.assert_rejected(&token, Malformed).await;
}

fn nested_arrays(depth: usize) -> String {
    format!(r#"{},"deep":{}1{}}}"#, hmac_claims_open(), "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn ten_thousand_nested_arrays_are_refused_by_the_size_cap() {
    // 20 KB of brackets: over the 8 KiB cap before any decoding. 401, too large.
    let gate = Gate::start_hmac(None).await;
    gate.assert_rejected(&hs256(HS256, &nested_arrays(10_000)), TooLarge).await;
}

#[tokio::test]
async fn ten_thousand_nested_arrays_under_a_raised_cap_are_malformed() {
    // With the cap raised past the token, the parser meets the nesting: serde_json's depth
    // limit refuses it without exhausting the stack. 401, malformed.
    let gate = Gate::start_hmac(Some(256 * 1024)).await;
    gate.assert_rejected(&hs256(HS256, &nested_arrays(10_000)), Malformed).await;
}

#[tokio::test]
async fn ten_thousand_nested_objects_under_a_raised_cap_are_malformed() {
    let gate = Gate::start_hmac(Some(256 * 1024)).await;
    let payload =
        format!(r#"{},"deep":{}1{}}}"#, hmac_claims_open(), r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    gate.assert_rejected(&hs256(HS256, &payload), Malformed).await;
}

#[tokio::test]
async fn ten_thousand_nested_arrays_in_the_header_are_malformed() {
    let gate = Gate::start_hmac(Some(256 * 1024)).await;
    let header = format!(r#"{{"alg":"HS256","x":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    gate.assert_rejected(&hs256(&header, &hmac_claims()), Malformed).await;
}

#[tokio::test]
async fn moderate_nesting_in_a_custom_claim_is_accepted() {
    // Control: 100 levels is legal JSON and within the parser's limit.
    let gate = Gate::start_hmac(None).await;
    gate.assert_accepted(&hs256(HS256, &nested_arrays(100))).await;
}

// =================================================================================================
// Sizes — DESIGN.md: a token over the cap (8 KiB) is 401 `invalid_token` before any decoding;
// a huge header never reaches the upstream (the HTTP server may refuse it first with 431).
// =================================================================================================

/// A genuine token of exactly `len` bytes (padding a header member and a claim to get there).
async fn token_of_len(gate: &Gate, len: usize) -> String {
    let base = gate.issuer.token().claim("pad", json!("")).header("p", json!("")).sign().len();
    assert!(base < len);
    for claim_pad in (len - base).saturating_sub(8) * 3 / 4..=(len - base) * 3 / 4 + 4 {
        for header_pad in 0..4 {
            let token = gate
                .issuer
                .token()
                .claim("pad", json!("x".repeat(claim_pad)))
                .header("p", json!("y".repeat(header_pad)))
                .sign();
            if token.len() == len {
                return token;
            }
        }
    }
    panic!("no token of {len} bytes");
}

#[tokio::test]
async fn token_of_exactly_8_kib_is_accepted() {
    // The boundary itself: the cap is inclusive. Control.
    let gate = Gate::start().await;
    let token = token_of_len(&gate, 8 * 1024).await;
    gate.assert_accepted(&token).await;
}

#[tokio::test]
async fn token_of_8_kib_plus_one_byte_is_refused() {
    let gate = Gate::start().await;
    let token = token_of_len(&gate, 8 * 1024 + 1).await;
    gate.assert_rejected(&token, TooLarge).await;
}

#[tokio::test]
async fn authorization_header_of_64_kib_never_reaches_the_upstream() {
    // 64 KiB of b64token: within hyper's header budget, so the gate answers: 401 too large.
    let gate = Gate::start().await;
    let answer = gate.get(&"a".repeat(64 * 1024)).await;
    assert!(answer.status == 401 || answer.status == 431, "{}", answer.status);
    if answer.status == 401 {
        assert_eq!(answer.challenge_description().as_deref(), Some(TooLarge.description()));
    }
    gate.assert_upstream_untouched();
}

#[tokio::test]
async fn authorization_header_of_64_kib_that_is_not_b64token_never_reaches_the_upstream() {
    // Size is judged before syntax: 401 too large (or 431 from the server), never 2xx.
    let gate = Gate::start().await;
    let answer = gate.get_auth(&format!("Bearer {}", "a b,".repeat(16 * 1024))).await;
    assert!(answer.status == 401 || answer.status == 431, "{}", answer.status);
    gate.assert_upstream_untouched();
}

#[tokio::test]
async fn authorization_header_of_1_mib_never_reaches_the_upstream() {
    // Past hyper's header buffer: the server refuses (431) or drops the connection; either
    // way nothing reaches the gate's upstream.
    let gate = Gate::start().await;
    let request = format!(
        "GET /api/resource HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let status = gate.raw(request.as_bytes()).await;
    assert!(matches!(status, None | Some(400) | Some(431)), "{status:?}");
    gate.assert_upstream_untouched();
}

// =================================================================================================
// Header smuggling — RFC 6750 §2.1 (one `Authorization: Bearer`), DESIGN.md: more than one
// `Authorization` header, or more than one credential in one, is 400 `invalid_request`; a
// token in the query string (RFC 6750 §2.3) is never read.
// =================================================================================================

#[tokio::test]
async fn valid_token_sent_twice_in_two_authorization_headers_is_an_invalid_request() {
    let gate = Gate::start().await;
    let token = gate.issuer.token().sign();
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    headers.append(header::AUTHORIZATION, value.clone());
    headers.append(header::AUTHORIZATION, value);
    let answer = gate.get_with(headers).await;
    gate.assert_answer(&answer, 400, Some("invalid_request"));
}

#[tokio::test]
async fn valid_token_and_a_forged_one_in_two_headers_is_an_invalid_request() {
    // Whichever header a downstream reads, the gate must not have vouched for the other.
    let gate = Gate::start().await;
    let good = gate.issuer.token().sign();
    let forged = gate.issuer.token().sub("admin").sign_with_foreign_key();
    for (first, second) in [(&good, &forged), (&forged, &good)] {
        let mut headers = HeaderMap::new();
        headers.append(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {first}")).unwrap());
        headers.append(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {second}")).unwrap());
        let answer = gate.get_with(headers).await;
        gate.assert_answer(&answer, 400, Some("invalid_request"));
    }
}

#[tokio::test]
async fn bearer_and_basic_headers_together_are_an_invalid_request() {
    let gate = Gate::start().await;
    let token = gate.issuer.token().sign();
    let mut headers = HeaderMap::new();
    headers.append(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwYXNz"));
    headers.append(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let answer = gate.get_with(headers).await;
    gate.assert_answer(&answer, 400, Some("invalid_request"));
}

#[tokio::test]
async fn two_authorization_header_lines_in_different_case_are_an_invalid_request() {
    // Byte for byte over TCP: `authorization:` and `AUTHORIZATION:` are one header name.
    let gate = Gate::start().await;
    let token = gate.issuer.token().sign();
    let request = format!(
        "GET /api/resource HTTP/1.1\r\nHost: x\r\nauthorization: Bearer {token}\r\nAUTHORIZATION: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(gate.raw(request.as_bytes()).await, Some(400));
    gate.assert_upstream_untouched();
}

#[tokio::test]
async fn two_tokens_in_one_header_are_an_invalid_request() {
    let gate = Gate::start().await;
    let token = gate.issuer.token().sign();
    for value in [
        format!("Bearer {token}, Bearer {token}"),
        format!("Bearer {token} {token}"),
        format!("Bearer {token},{token}"),
    ] {
        let answer = gate.get_auth(&value).await;
        gate.assert_answer(&answer, 400, Some("invalid_request"));
    }
}

#[tokio::test]
async fn token_in_the_query_string_is_never_read() {
    // RFC 6750 §2.3 tokens end up in access logs; tokengate ignores them: 401 with a bare
    // challenge (no error code), as for no token at all.
    let gate = Gate::start().await;
    let token = gate.issuer.token().sign();
    let response = attacks_support::client()
        .get(format!("{}/api/resource?access_token={token}", gate.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    assert!(!challenge.contains("error="), "{challenge}");
    gate.assert_upstream_untouched();
}

#[tokio::test]
async fn token_in_a_form_body_is_never_read() {
    // RFC 6750 §2.2 form-encoded body parameter: not supported, so not read.
    let gate = Gate::start().await;
    let token = gate.issuer.token().sign();
    let response = attacks_support::client()
        .post(format!("{}/api/resource", gate.base))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    gate.assert_upstream_untouched();
}
