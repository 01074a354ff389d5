//! Attack suite, part 1: the threats of RFC 8725 (JWT Best Current Practices) and the CVE classes
//! they came from — algorithm confusion, `none`, embedded and referenced keys, `kid` tricks,
//! broken ECDSA signatures, and claims of the wrong type.
//!
//! Every case is one test, and every test asserts the exact answer DESIGN.md promises (401
//! `invalid_token` with the description of the check that fired, unless noted) and that the
//! handler behind the gate ran zero times. Each test has a fresh issuer and gate (a real axum
//! app on loopback, keys from the issuer's JWKS URL); see `attacks_support`.
//!
//! Encodings, duplicate JSON members, nesting, sizes and header smuggling are in
//! `attacks_encoding.rs`.

mod attacks_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use attacks_support::{AUDIENCE, Gate, T0, b64, counting_server, jwk_of, pem_der, with_signature};
use serde_json::{Value, json};
use tokengate::error::Rejection::*;
use tokengate::{Algorithm, IssuerConfig, TokenGateLayer};
use tokengate_testkit::{Endpoint, KeyKind, TokenBuilder};

/// One test: a fresh gate, a token built from the issuer's valid defaults, and the exact
/// rejection (401 `invalid_token`, that description, upstream untouched).
macro_rules! refused {
    ($(#[$doc:meta])* $name:ident, $rejection:expr, |$gate:ident, $t:ident| $build:expr) => {
        $(#[$doc])*
        #[tokio::test]
        async fn $name() {
            let $gate = Gate::start().await;
            let $t: TokenBuilder = $gate.issuer.token();
            let token: String = $build;
            $gate.assert_rejected(&token, $rejection).await;
        }
    };
}

#[tokio::test]
async fn control_a_genuine_token_of_each_algorithm_reaches_the_upstream() {
    let gate = Gate::start().await;
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        gate.assert_accepted(&gate.issuer.token().alg(alg).sign()).await;
    }
}

// =================================================================================================
// RFC 8725 §2.1, §3.1 "Perform algorithm verification", §3.2 — algorithm confusion.
// CVE-2015-9235 (node-jsonwebtoken), CVE-2016-10555 (jwt-simple), CVE-2017-11424 and
// CVE-2022-29217 (PyJWT): a token signed with HS* using the issuer's *public* key as the HMAC
// secret verifies in a library that lets the token's `alg` pick the algorithm.
// =================================================================================================

/// A gate that trusts the issuer's RSA key given as a PEM (no `alg` pinned by a JWK), with
/// exactly `algorithms` allowed: the allow-list is then the only thing between a token and a
/// key, which is what these tests exercise.
async fn pem_gate(algorithms: &[Algorithm]) -> Gate {
    let issuer = attacks_support::issuer().await;
    let algorithms = algorithms.to_vec();
    Gate::custom(issuer, move |i| {
        IssuerConfig::new(i.url())
            .audience(AUDIENCE)
            .algorithms(algorithms)
            .pem(i.public_key_pem(KeyKind::Rsa), Some(&i.kid(KeyKind::Rsa)))
    })
    .await
}

refused!(
    /// HS256 with the RSA public key's PEM text as the secret: 401, algorithm not allowed.
    hs256_signed_with_the_rsa_public_key_pem_is_refused,
    AlgorithmNotAllowed,
    |gate, t| {
        let secret = gate.issuer.public_key_pem(KeyKind::Rsa);
        t.sign_hmac(Algorithm::HS256, secret.as_bytes())
    }
);

refused!(
    /// HS384 with the RSA public key PEM as the secret: 401, algorithm not allowed.
    hs384_signed_with_the_rsa_public_key_pem_is_refused,
    AlgorithmNotAllowed,
    |gate, t| t.sign_hmac(Algorithm::HS384, gate.issuer.public_key_pem(KeyKind::Rsa).as_bytes())
);

refused!(
    /// HS512 with the RSA public key PEM as the secret: 401, algorithm not allowed.
    hs512_signed_with_the_rsa_public_key_pem_is_refused,
    AlgorithmNotAllowed,
    |gate, t| t.sign_hmac(Algorithm::HS512, gate.issuer.public_key_pem(KeyKind::Rsa).as_bytes())
);

refused!(
    /// HS256 with the RSA key's published JWK (the JSON text) as the secret: 401.
    hs256_signed_with_the_rsa_jwk_json_is_refused,
    AlgorithmNotAllowed,
    |gate, t| {
        let jwk = jwk_of(&gate.issuer, &gate.issuer.kid(KeyKind::Rsa)).to_string();
        t.sign_hmac(Algorithm::HS256, jwk.as_bytes())
    }
);

refused!(
    /// HS256 with the RSA key's SPKI DER bytes as the secret: 401.
    hs256_signed_with_the_rsa_spki_der_is_refused,
    AlgorithmNotAllowed,
    |gate, t| t.sign_hmac(Algorithm::HS256, &pem_der(&gate.issuer.public_key_pem(KeyKind::Rsa)))
);

refused!(
    /// HS256 with the P-256 public key PEM as the secret and the EC kid: 401.
    hs256_signed_with_the_ec_public_key_pem_is_refused,
    AlgorithmNotAllowed,
    |gate, t| t
        .header("kid", json!(gate.issuer.kid(KeyKind::P256)))
        .sign_hmac(Algorithm::HS256, gate.issuer.public_key_pem(KeyKind::P256).as_bytes())
);

refused!(
    /// HS256 with the RSA modulus `n` (raw bytes) as the secret and no `kid` at all: 401.
    hs256_signed_with_the_rsa_modulus_and_no_kid_is_refused,
    AlgorithmNotAllowed,
    |gate, t| {
        let n = jwk_of(&gate.issuer, &gate.issuer.kid(KeyKind::Rsa))["n"].as_str().unwrap().to_owned();
        t.without_header("kid").sign_hmac(Algorithm::HS256, n.as_bytes())
    }
);

#[tokio::test]
async fn hs256_with_the_pem_as_secret_is_refused_even_by_a_pem_configured_issuer() {
    // The key is a PEM (no JWK `alg` to pin it): only the allow-list and the key kind stand
    // between the token and the confusion. 401, algorithm not allowed.
    let gate = pem_gate(&[Algorithm::RS256]).await;
    gate.assert_accepted(&gate.issuer.token().sign()).await;
    let pem = gate.issuer.public_key_pem(KeyKind::Rsa);
    let token = gate.issuer.token().sign_hmac(Algorithm::HS256, pem.as_bytes());
    let answer = gate.get(&token).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenge_description().as_deref(), Some(AlgorithmNotAllowed.description()));
    assert_eq!(gate.calls(), 1, "only the control reached the upstream");
}

#[tokio::test]
async fn the_builder_refuses_an_hmac_algorithm_next_to_public_keys() {
    // The configuration that makes the confusion possible cannot be built at all.
    let issuer = attacks_support::issuer().await;
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let result = TokenGateLayer::builder()
            .issuer(
                IssuerConfig::new(issuer.url())
                    .audience(AUDIENCE)
                    .algorithms([Algorithm::RS256, alg])
                    .jwks_url(issuer.jwks_uri()),
            )
            .build()
            .await;
        let error = result.expect_err("HMAC + public keys must not build").to_string();
        assert!(error.contains("algorithm confusion"), "{error}");
        let result = TokenGateLayer::builder()
            .issuer(
                IssuerConfig::new(issuer.url())
                    .audience(AUDIENCE)
                    .algorithms([alg])
                    .pem(issuer.public_key_pem(KeyKind::Rsa), Some("rsa-1")),
            )
            .build()
            .await;
        assert!(result.is_err(), "{alg:?} with a PEM public key must not build");
    }
}

#[tokio::test]
async fn ps256_token_is_refused_where_only_rs256_is_allowed() {
    // Same RSA key, other padding: the allow-list decides. 401, algorithm not allowed.
    let gate = pem_gate(&[Algorithm::RS256]).await;
    let token = gate.issuer.token().alg(Algorithm::PS256).sign();
    gate.assert_rejected(&token, AlgorithmNotAllowed).await;
}

#[tokio::test]
async fn rs256_token_is_refused_where_only_ps256_is_allowed() {
    let gate = pem_gate(&[Algorithm::PS256]).await;
    let token = gate.issuer.token().alg(Algorithm::RS256).sign();
    gate.assert_rejected(&token, AlgorithmNotAllowed).await;
    // Control: PS256 passes on this gate.
    gate.assert_accepted(&gate.issuer.token().alg(Algorithm::PS256).sign()).await;
}

refused!(
    /// PS256 is allowed by the issuer config, but the JWK says `alg: RS256`: the key's pin
    /// wins. 401, algorithm not allowed.
    ps256_token_is_refused_by_a_key_pinned_to_rs256,
    AlgorithmNotAllowed,
    |gate, t| t.alg(Algorithm::PS256).sign()
);

refused!(
    /// ES256 header and signature, but the RSA key's `kid`: the kid's key cannot verify
    /// ES256. 401, algorithm not allowed.
    es256_header_on_an_rsa_kid_is_refused,
    AlgorithmNotAllowed,
    |gate, t| t.alg(Algorithm::ES256).header("kid", json!(gate.issuer.kid(KeyKind::Rsa))).sign()
);

refused!(
    /// RS256 signature naming the P-256 key's `kid`. 401, algorithm not allowed.
    rs256_header_on_an_ec_kid_is_refused,
    AlgorithmNotAllowed,
    |gate, t| t.header("kid", json!(gate.issuer.kid(KeyKind::P256))).sign()
);

refused!(
    /// EdDSA signature naming the RSA key's `kid`. 401, algorithm not allowed.
    eddsa_header_on_an_rsa_kid_is_refused,
    AlgorithmNotAllowed,
    |gate, t| t.alg(Algorithm::EdDSA).header("kid", json!(gate.issuer.kid(KeyKind::Rsa))).sign()
);

refused!(
    /// ES384 (a registered algorithm the issuer never allowed): 401, algorithm not allowed.
    es384_header_is_refused,
    AlgorithmNotAllowed,
    |gate, t| t.header("alg", json!("ES384")).sign()
);

refused!(
    /// `alg` in lower case is not RS256: 401, unsupported algorithm.
    alg_in_lower_case_is_refused,
    UnsupportedAlgorithm,
    |gate, t| t.header("alg", json!("rs256")).sign()
);

refused!(
    /// `alg` with a trailing space: 401, unsupported algorithm.
    alg_with_trailing_space_is_refused,
    UnsupportedAlgorithm,
    |gate, t| t.header("alg", json!("RS256 ")).sign()
);

// =================================================================================================
// RFC 8725 §2.1 "Weak signatures and insufficient signature validation", §3.2 — `alg: none`
// and stripped signatures (the 2015 `none` disclosures; CVE-2020-28042, ServiceStack, accepted
// an empty signature). Three spellings of each: unsigned with the trailing dot (an empty third
// segment: malformed), unsigned without it (two segments: not a JWS, so opaque, which a local
// route refuses), and with the real RS256 signature left in place (unsupported algorithm).
// =================================================================================================

async fn assert_none_variant(alg: Value) {
    let gate = Gate::start().await;
    let unsigned = gate.issuer.token().header("alg", alg.clone()).unsigned();
    assert!(unsigned.ends_with('.'));
    gate.assert_rejected(&unsigned, Malformed).await;
    gate.assert_rejected(unsigned.trim_end_matches('.'), OpaqueNotAccepted).await;
    let with_signature = gate.issuer.token().header("alg", alg).sign();
    gate.assert_rejected(&with_signature, UnsupportedAlgorithm).await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    assert_none_variant(json!("none")).await;
}

#[tokio::test]
async fn alg_none_capitalised_is_refused() {
    assert_none_variant(json!("None")).await;
}

#[tokio::test]
async fn alg_none_upper_case_is_refused() {
    assert_none_variant(json!("NONE")).await;
}

#[tokio::test]
async fn alg_none_mixed_case_is_refused() {
    assert_none_variant(json!("nOnE")).await;
}

#[tokio::test]
async fn alg_empty_string_is_refused() {
    assert_none_variant(json!("")).await;
}

refused!(
    /// No `alg` member at all: 401, unsupported algorithm.
    alg_missing_is_refused,
    UnsupportedAlgorithm,
    |gate, t| t.without_header("alg").sign()
);

refused!(
    /// `alg` missing and the signature empty-but-present is still malformed: 401.
    alg_missing_and_unsigned_is_refused,
    Malformed,
    |gate, t| t.without_header("alg").unsigned()
);

refused!(
    /// `alg: 256` (a number): 401, malformed.
    alg_as_number_is_refused,
    Malformed,
    |gate, t| t.header("alg", json!(256)).sign()
);

refused!(
    /// `alg: ["RS256"]` (an array): 401, malformed.
    alg_as_array_is_refused,
    Malformed,
    |gate, t| t.header("alg", json!(["RS256"])).sign()
);

refused!(
    /// `alg: null`: 401, malformed.
    alg_as_null_is_refused,
    Malformed,
    |gate, t| t.header("alg", Value::Null).sign()
);

refused!(
    /// `alg: {"name":"RS256"}` (an object): 401, malformed.
    alg_as_object_is_refused,
    Malformed,
    |gate, t| t.header("alg", json!({"name": "RS256"})).sign()
);

refused!(
    /// A genuine token with its signature stripped, dot kept: 401, malformed.
    genuine_token_with_signature_stripped_is_refused,
    Malformed,
    |gate, t| with_signature(&t.sign(), "")
);

refused!(
    /// A genuine token with its signature segment removed entirely: two segments, opaque.
    genuine_token_with_signature_segment_removed_is_refused,
    OpaqueNotAccepted,
    |gate, t| t.sign().rsplit_once('.').unwrap().0.to_owned()
);

// =================================================================================================
// RFC 8725 §2.9 "Indirect attacks on the server", §3.10 "Do not trust received claims" —
// embedded and referenced keys. CVE-2018-0114 (node-jose trusted a `jwk` embedded in the
// header). `jku`/`x5u` are SSRF and key-injection vectors: a counting server proves that no
// request ever arrives.
// =================================================================================================

/// A token minted by a second, attacker-run issuer but claiming to come from `gate`'s issuer,
/// with the attacker's RSA kid renamed to `kid`.
async fn attacker_token(
    gate: &Gate,
    kid: &str,
    header: &[(&str, Value)],
) -> (String, tokengate_testkit::Issuer) {
    let attacker = attacks_support::issuer().await;
    let mut builder = attacker.token().claim("iss", json!(gate.issuer.url())).header("kid", json!(kid));
    for (name, value) in header {
        builder = builder.header(name, value.clone());
    }
    (builder.sign(), attacker)
}

#[tokio::test]
async fn embedded_jwk_with_the_attackers_key_is_ignored() {
    let gate = Gate::start().await;
    let attacker = attacks_support::issuer().await;
    let attacker_jwk = jwk_of(&attacker, "rsa-1");
    // Signed by the attacker, the attacker's public key embedded, the victim's kid name.
    let token = attacker
        .token()
        .claim("iss", json!(gate.issuer.url()))
        .header("kid", json!(gate.issuer.kid(KeyKind::Rsa)))
        .header("jwk", attacker_jwk.clone())
        .sign();
    gate.assert_rejected(&token, BadSignature).await;
    // Without a kid the embedded key is still not a candidate: 401, unknown key.
    let token = attacker
        .token()
        .claim("iss", json!(gate.issuer.url()))
        .without_header("kid")
        .header("jwk", attacker_jwk)
        .sign();
    gate.assert_rejected(&token, UnknownKey).await;
}

async fn assert_reference_never_fetched(member: &str) {
    let gate = Gate::start().await;
    let attacker = attacks_support::issuer().await;
    let (server, hits, _guard) = counting_server(attacker.jwks()).await;
    let url = json!(format!("{server}/jwks.json"));
    // The attacker's kid, unknown to the victim: an unknown-kid refresh goes to the victim's
    // own JWKS only. 401, unknown key.
    let token = attacker
        .token()
        .claim("iss", json!(gate.issuer.url()))
        .header("kid", json!("attacker-key"))
        .header(member, url.clone())
        .sign();
    gate.assert_rejected(&token, UnknownKey).await;
    // The victim's kid name: 401, bad signature.
    let token = attacker.token().claim("iss", json!(gate.issuer.url())).header(member, url).sign();
    gate.assert_rejected(&token, BadSignature).await;
    // Give any background fetch time to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "`{member}` must never be fetched");
}

#[tokio::test]
async fn jku_pointing_at_an_attacker_server_is_never_fetched() {
    assert_reference_never_fetched("jku").await;
}

#[tokio::test]
async fn x5u_pointing_at_an_attacker_server_is_never_fetched() {
    assert_reference_never_fetched("x5u").await;
}

#[tokio::test]
async fn jku_on_a_genuine_token_is_ignored_not_followed() {
    // The member is ignored, not an error: the genuine token passes on its own signature, and
    // the URL it names still sees nothing. (The only test here where the upstream is reached.)
    let gate = Gate::start().await;
    let (server, hits, _guard) = counting_server(json!({"keys": []})).await;
    let token = gate.issuer.token().header("jku", json!(server.clone())).header("x5u", json!(server)).sign();
    gate.assert_accepted(&token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn x5c_with_junk_is_ignored() {
    let gate = Gate::start().await;
    let (token, _attacker) =
        attacker_token(&gate, &gate.issuer.kid(KeyKind::Rsa), &[("x5c", json!(["junk", "!!"]))]).await;
    gate.assert_rejected(&token, BadSignature).await;
}

#[tokio::test]
async fn x5c_carrying_the_attackers_public_key_is_ignored() {
    let gate = Gate::start().await;
    let attacker = attacks_support::issuer().await;
    let der = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        pem_der(&attacker.public_key_pem(KeyKind::Rsa)),
    );
    let token = attacker.token().claim("iss", json!(gate.issuer.url())).header("x5c", json!([der])).sign();
    gate.assert_rejected(&token, BadSignature).await;
}

refused!(
    /// `crit` naming anything: tokengate understands no extension. 401, unknown critical.
    crit_header_is_refused,
    UnknownCritical,
    |gate, t| t.header("crit", json!(["exp"])).sign()
);

refused!(
    /// `crit: []` is refused too (RFC 7515 §4.1.11 forbids the empty list).
    empty_crit_header_is_refused,
    UnknownCritical,
    |gate, t| t.header("crit", json!([])).sign()
);

// =================================================================================================
// RFC 8725 §2.9, §3.10 — `kid` tricks: path traversal (a `kid` used as a file name), SQL
// injection (a `kid` used in a query), lookalikes, wrong types, huge values, retired keys.
// tokengate looks a `kid` up in an in-memory map only; unknown kids cost at most one
// rate-limited refresh of the issuer's own JWKS.
// =================================================================================================

refused!(
    /// `kid: "../../dev/null"` on a genuine signature: 401, unknown key.
    kid_path_traversal_is_refused,
    UnknownKey,
    |gate, t| t.header("kid", json!("../../dev/null")).sign()
);

#[tokio::test]
async fn kid_path_traversal_with_an_empty_hmac_secret_is_refused() {
    // The classic: `kid` points at an empty file, the token is HS256 with an empty secret.
    let gate = Gate::start().await;
    let token = gate
        .issuer
        .token()
        .header("kid", json!("../../../../../../dev/null"))
        .sign_hmac(Algorithm::HS256, b"");
    gate.assert_rejected(&token, AlgorithmNotAllowed).await;
    // An HMAC-only gate allows HS256, and still the empty secret is no secret of its.
    let hmac = Gate::start_hmac(None).await;
    let token = attacks_support::sign_raw(
        br#"{"alg":"HS256","kid":"../../../../../../dev/null"}"#,
        attacks_support::hmac_claims().as_bytes(),
        Algorithm::HS256,
        b"",
    );
    hmac.assert_rejected(&token, BadSignature).await;
}

refused!(
    /// `kid: "' OR '1'='1"`: 401, unknown key.
    kid_sql_injection_is_refused,
    UnknownKey,
    |gate, t| t.header("kid", json!("rsa-1' OR '1'='1")).sign()
);

refused!(
    /// `kid: ""`: 401, unknown key.
    kid_empty_string_is_refused,
    UnknownKey,
    |gate, t| t.header("kid", json!("")).sign()
);

refused!(
    /// The right kid with a NUL appended (C-string truncation): 401, unknown key.
    kid_with_nul_suffix_is_refused,
    UnknownKey,
    |gate, t| t.header("kid", json!(format!("{}\u{0}", gate.issuer.kid(KeyKind::Rsa)))).sign()
);

refused!(
    /// The right kid in another case: 401, unknown key (kids are compared exactly).
    kid_in_another_case_is_refused,
    UnknownKey,
    |gate, t| t.header("kid", json!(gate.issuer.kid(KeyKind::Rsa).to_uppercase())).sign()
);

refused!(
    /// A 10 KB `kid` makes the token larger than the 8 KiB cap: 401, too large.
    kid_of_10_kb_is_refused_by_the_size_cap,
    TooLarge,
    |gate, t| t.header("kid", json!("k".repeat(10 * 1024))).sign()
);

#[tokio::test]
async fn kid_of_10_kb_under_a_raised_cap_is_an_unknown_key() {
    let gate = Gate::with(|c| c, |b| b.max_token_bytes(64 * 1024)).await;
    let token = gate.issuer.token().header("kid", json!("k".repeat(10 * 1024))).sign();
    gate.assert_rejected(&token, UnknownKey).await;
}

refused!(
    /// `kid: 1` (a number): 401, malformed.
    kid_as_number_is_refused,
    Malformed,
    |gate, t| t.header("kid", json!(1)).sign()
);

refused!(
    /// `kid: {"$ne": null}` (an object, NoSQL style): 401, malformed.
    kid_as_object_is_refused,
    Malformed,
    |gate, t| t.header("kid", json!({"$ne": null})).sign()
);

refused!(
    /// `kid: ["rsa-1"]`: 401, malformed.
    kid_as_array_is_refused,
    Malformed,
    |gate, t| t.header("kid", json!([gate.issuer.kid(KeyKind::Rsa)])).sign()
);

refused!(
    /// `kid: null`: 401, malformed.
    kid_as_null_is_refused,
    Malformed,
    |gate, t| t.header("kid", Value::Null).sign()
);

refused!(
    /// No `kid` while the issuer's keys all have one: 401, unknown key.
    kid_missing_is_refused,
    UnknownKey,
    |gate, t| t.without_header("kid").sign()
);

#[tokio::test]
async fn kid_of_a_key_removed_from_the_jwks_is_refused() {
    // The issuer rotated and retired `rsa-1` before the gate started; a token still signed
    // with it (a stolen old key) is refused after one refresh finds nothing. 401, unknown key.
    let issuer = attacks_support::issuer().await;
    let old = issuer.kid(KeyKind::Rsa);
    issuer.rotate(KeyKind::Rsa);
    issuer.remove_key(&old);
    let gate = Gate::custom(issuer, |i| {
        IssuerConfig::new(i.url()).audience(AUDIENCE).algorithms([Algorithm::RS256]).jwks_url(i.jwks_uri())
    })
    .await;
    let token = gate.issuer.token().kid_key(&old).sign();
    gate.assert_rejected(&token, UnknownKey).await;
    gate.assert_upstream_untouched();
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_at_most_one_jwks_refresh() {
    // DoS: every unknown kid may ask for a refresh, but at most one per cooldown (30 s; the
    // gate's clock is stopped) reaches the issuer. 401, unknown key, for all of them.
    let gate = Gate::start().await;
    let before = gate.issuer.requests(Endpoint::Jwks);
    assert_eq!(before, 1, "the gate loaded the JWKS once");
    let started = std::time::Instant::now();
    for i in 0..20 {
        let token = gate.issuer.token().header("kid", json!(format!("random-{i}"))).sign();
        gate.assert_rejected(&token, UnknownKey).await;
    }
    assert!(gate.issuer.requests(Endpoint::Jwks) <= before + 1, "{}", gate.issuer.requests(Endpoint::Jwks));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "unknown kids must not stall: {:?}",
        started.elapsed()
    );
}

// =================================================================================================
// RFC 8725 §3.3 "Validate all cryptographic operations", §3.4 — ECDSA signatures that are
// not signatures. CVE-2022-21449 ("psychic signatures", Java 15–18): r = s = 0 verified any
// message. r and s must be in [1, n−1]; these are raw 64-byte r‖s (RFC 7518 §3.4), built by
// hand.
// =================================================================================================

/// P-256's group order n.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// A gate and a genuine ES256 token; the token's real r and s.
async fn es256() -> (Gate, String, [u8; 32], [u8; 32]) {
    let gate = Gate::start().await;
    let token = gate.issuer.token().alg(Algorithm::ES256).sign();
    let signature = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        token.split('.').nth(2).unwrap(),
    )
    .expect("base64url signature");
    assert_eq!(signature.len(), 64, "JWS ECDSA signatures are raw r‖s");
    let (r, s) = signature.split_at(32);
    (gate, token, r.try_into().unwrap(), s.try_into().unwrap())
}

async fn assert_ecdsa_refused(r: impl Fn([u8; 32]) -> [u8; 32], s: impl Fn([u8; 32]) -> [u8; 32]) {
    let (gate, token, real_r, real_s) = es256().await;
    let forged = with_signature(&token, &b64([r(real_r), s(real_s)].concat()));
    gate.assert_rejected(&forged, BadSignature).await;
}

fn plus_one(mut x: [u8; 32]) -> [u8; 32] {
    for byte in x.iter_mut().rev() {
        let (v, carry) = byte.overflowing_add(1);
        *byte = v;
        if !carry {
            break;
        }
    }
    x
}

fn n_minus(x: [u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = P256_N[i] as i16 - x[i] as i16 - borrow;
        borrow = if d < 0 { 1 } else { 0 };
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

#[tokio::test]
async fn ecdsa_r_and_s_zero_is_refused() {
    // CVE-2022-21449 itself: 64 zero bytes.
    assert_ecdsa_refused(|_| [0; 32], |_| [0; 32]).await;
}

#[tokio::test]
async fn ecdsa_r_zero_is_refused() {
    assert_ecdsa_refused(|_| [0; 32], |s| s).await;
}

#[tokio::test]
async fn ecdsa_s_zero_is_refused() {
    assert_ecdsa_refused(|r| r, |_| [0; 32]).await;
}

#[tokio::test]
async fn ecdsa_r_equal_to_n_is_refused() {
    // r = n ≡ 0 (mod n): the zero check must not be done after reduction only.
    assert_ecdsa_refused(|_| P256_N, |s| s).await;
}

#[tokio::test]
async fn ecdsa_s_equal_to_n_is_refused() {
    assert_ecdsa_refused(|r| r, |_| P256_N).await;
}

#[tokio::test]
async fn ecdsa_r_and_s_equal_to_n_is_refused() {
    assert_ecdsa_refused(|_| P256_N, |_| P256_N).await;
}

#[tokio::test]
async fn ecdsa_r_above_n_is_refused() {
    assert_ecdsa_refused(|_| plus_one(P256_N), |s| s).await;
}

#[tokio::test]
async fn ecdsa_s_all_ones_is_refused() {
    assert_ecdsa_refused(|r| r, |_| [0xff; 32]).await;
}

#[tokio::test]
async fn ecdsa_r_plus_n_is_refused() {
    // r + n where it fits in 32 bytes never does for a real r, so use r = 1 (+ n): the
    // reduced value is a valid-looking 1, but r ≥ n must be refused before any reduction.
    assert_ecdsa_refused(|_| plus_one(P256_N), |_| plus_one([0; 32])).await;
}

#[tokio::test]
async fn ecdsa_signature_in_der_instead_of_raw_is_refused() {
    // ASN.1 DER `SEQUENCE { INTEGER r, INTEGER s }` (what Java and OpenSSL produce) is not
    // the JWS encoding. 401, bad signature.
    let (gate, token, r, s) = es256().await;
    let int = |x: [u8; 32]| {
        let mut v = vec![0x02];
        let body: Vec<u8> = if x[0] & 0x80 != 0 { [&[0u8][..], &x].concat() } else { x.to_vec() };
        v.push(body.len() as u8);
        v.extend(body);
        v
    };
    let seq = [int(r), int(s)].concat();
    let der = [vec![0x30, seq.len() as u8], seq].concat();
    gate.assert_rejected(&with_signature(&token, &b64(der)), BadSignature).await;
}

#[tokio::test]
async fn ecdsa_signature_of_wrong_length_is_refused() {
    let (gate, token, r, s) = es256().await;
    let rs = [r, s].concat();
    for bad in [
        rs[..63].to_vec(),
        [rs.clone(), vec![0]].concat(),
        [vec![0], rs.clone()].concat(),
        [rs.clone(), rs].concat(),
    ] {
        gate.assert_rejected(&with_signature(&token, &b64(&bad)), BadSignature).await;
    }
}

#[tokio::test]
async fn ecdsa_high_s_twin_of_a_genuine_signature_is_accepted() {
    // Not a forgery — only a holder of a valid token can make it — but worth knowing: ECDSA
    // signatures are malleable, (r, n−s) verifies wherever (r, s) does, and JWS does not ask
    // for low-s. So one genuine ES256 token has two accepted spellings. tokengate revokes by
    // `jti`/`sub`, never by token text, so the twin is revoked with the original; SECURITY.md
    // says so. (The upstream is reached twice here, on purpose.)
    let (gate, token, r, s) = es256().await;
    gate.assert_accepted(&token).await;
    let twin = with_signature(&token, &b64([r, n_minus(s)].concat()));
    assert_ne!(twin, token);
    gate.assert_accepted(&twin).await;
}

#[tokio::test]
async fn eddsa_all_zero_signature_is_refused() {
    let gate = Gate::start().await;
    let token = gate.issuer.token().alg(Algorithm::EdDSA).sign();
    gate.assert_rejected(&with_signature(&token, &b64([0u8; 64])), BadSignature).await;
}

#[tokio::test]
async fn rsa_signature_of_zero_or_one_or_the_modulus_is_refused() {
    let gate = Gate::start().await;
    let token = gate.issuer.token().sign();
    let n = jwk_of(&gate.issuer, &gate.issuer.kid(KeyKind::Rsa))["n"].as_str().unwrap().to_owned();
    let mut one = vec![0u8; 256];
    one[255] = 1;
    for bad in [b64([0u8; 256]), b64(&one), n, b64([0xffu8; 256]), b64([0u8; 1])] {
        gate.assert_rejected(&with_signature(&token, &bad), BadSignature).await;
    }
}

// =================================================================================================
// RFC 8725 §3.8 "Validate issuer and subject", §3.9 "Use and validate audience", §2.7
// "Substitution attacks", §2.8 "Cross-JWT confusion", §3.11 "Use explicit typing"; RFC 7519
// §2 NumericDate. Claims of the wrong type are invalid, never "absent" (which might be
// allowed) and never coerced. The gate's clock stands at T0; the leeway is 30 s.
// =================================================================================================

refused!(exp_as_string_is_refused, InvalidClaim("exp"), |gate, t| t
    .claim("exp", json!((T0 + 300).to_string()))
    .sign());
refused!(exp_huge_1e30_is_refused, InvalidClaim("exp"), |gate, t| t.claim("exp", json!(1e30)).sign());
refused!(exp_beyond_year_9999_is_refused, InvalidClaim("exp"), |gate, t| t
    .claim("exp", json!(253_402_300_800i64))
    .sign());
refused!(exp_u64_max_is_refused, InvalidClaim("exp"), |gate, t| t.claim("exp", json!(u64::MAX)).sign());
refused!(exp_negative_is_refused, InvalidClaim("exp"), |gate, t| t.claim("exp", json!(-1)).sign());
refused!(exp_negative_float_is_refused, InvalidClaim("exp"), |gate, t| t.claim("exp", json!(-0.5)).sign());
refused!(exp_null_is_refused, InvalidClaim("exp"), |gate, t| t.claim("exp", Value::Null).sign());
refused!(exp_bool_is_refused, InvalidClaim("exp"), |gate, t| t.claim("exp", json!(true)).sign());
refused!(exp_array_is_refused, InvalidClaim("exp"), |gate, t| t.claim("exp", json!([T0 + 300])).sign());
refused!(exp_object_is_refused, InvalidClaim("exp"), |gate, t| t
    .claim("exp", json!({"$numberLong": "1"}))
    .sign());
refused!(exp_zero_is_expired, Expired, |gate, t| t.claim("exp", json!(0)).sign());
refused!(exp_missing_is_refused, MissingClaim("exp"), |gate, t| t.without_claim("exp").sign());
refused!(
    /// A fraction is rounded towards "expired": exp = T0 − 30 + 0.9 floors to T0 − 30, which the
    /// 30 s leeway no longer covers.
    exp_float_just_past_the_leeway_is_expired,
    Expired,
    |gate, t| t.claim("exp", json!((T0 - 30) as f64 + 0.9)).sign()
);

#[tokio::test]
async fn exp_float_in_the_future_is_accepted() {
    // RFC 7519 §2: a NumericDate may have a fraction. Control, not an attack.
    let gate = Gate::start().await;
    gate.assert_accepted(&gate.issuer.token().claim("exp", json!(T0 as f64 + 300.5)).sign()).await;
}

refused!(nbf_as_string_is_refused, InvalidClaim("nbf"), |gate, t| t
    .claim("nbf", json!(T0.to_string()))
    .sign());
refused!(nbf_huge_1e30_is_refused, InvalidClaim("nbf"), |gate, t| t.claim("nbf", json!(1e30)).sign());
refused!(nbf_negative_is_refused, InvalidClaim("nbf"), |gate, t| t.claim("nbf", json!(-1)).sign());
refused!(nbf_null_is_refused, InvalidClaim("nbf"), |gate, t| t.claim("nbf", Value::Null).sign());
refused!(nbf_bool_is_refused, InvalidClaim("nbf"), |gate, t| t.claim("nbf", json!(false)).sign());
refused!(nbf_array_is_refused, InvalidClaim("nbf"), |gate, t| t.claim("nbf", json!([T0])).sign());
refused!(
    /// nbf = T0 + 30 + 0.1 rounds up to T0 + 31: beyond the leeway, not valid yet.
    nbf_float_just_beyond_the_leeway_is_not_yet_valid,
    NotYetValid,
    |gate, t| t.claim("nbf", json!((T0 + 30) as f64 + 0.1)).sign()
);

refused!(iat_as_string_is_refused, InvalidClaim("iat"), |gate, t| t
    .claim("iat", json!(T0.to_string()))
    .sign());
refused!(iat_huge_1e30_is_refused, InvalidClaim("iat"), |gate, t| t.claim("iat", json!(1e30)).sign());
refused!(iat_negative_is_refused, InvalidClaim("iat"), |gate, t| t.claim("iat", json!(-1)).sign());
refused!(iat_null_is_refused, InvalidClaim("iat"), |gate, t| t.claim("iat", Value::Null).sign());
refused!(iat_bool_is_refused, InvalidClaim("iat"), |gate, t| t.claim("iat", json!(true)).sign());
refused!(iat_array_is_refused, InvalidClaim("iat"), |gate, t| t.claim("iat", json!([T0])).sign());
refused!(iat_float_in_the_future_is_refused, IssuedInFuture, |gate, t| t
    .claim("iat", json!((T0 + 30) as f64 + 0.1))
    .sign());

refused!(aud_as_number_is_refused, InvalidClaim("aud"), |gate, t| t.aud(json!(1)).sign());
refused!(aud_nested_array_is_refused, InvalidClaim("aud"), |gate, t| t.aud(json!([[AUDIENCE]])).sign());
refused!(aud_as_object_is_refused, InvalidClaim("aud"), |gate, t| t.aud(json!({"aud": AUDIENCE})).sign());
refused!(aud_null_is_refused, InvalidClaim("aud"), |gate, t| t.aud(Value::Null).sign());
refused!(aud_bool_is_refused, InvalidClaim("aud"), |gate, t| t.aud(json!(true)).sign());
refused!(aud_array_with_a_number_is_refused, InvalidClaim("aud"), |gate, t| t
    .aud(json!([AUDIENCE, 1]))
    .sign());
refused!(aud_empty_string_is_refused, WrongAudience, |gate, t| t.aud(json!("")).sign());
refused!(aud_empty_array_is_refused, WrongAudience, |gate, t| t.aud(json!([])).sign());
refused!(aud_missing_is_refused, MissingClaim("aud"), |gate, t| t.without_claim("aud").sign());
refused!(aud_with_trailing_slash_is_refused, WrongAudience, |gate, t| t
    .aud(json!(format!("{AUDIENCE}/")))
    .sign());
refused!(aud_in_another_case_is_refused, WrongAudience, |gate, t| t
    .aud(json!(AUDIENCE.to_uppercase()))
    .sign());
refused!(aud_as_a_prefix_is_refused, WrongAudience, |gate, t| t
    .aud(json!(format!("{AUDIENCE}.evil.example")))
    .sign());

refused!(iss_missing_is_refused, MissingClaim("iss"), |gate, t| t.without_claim("iss").sign());
refused!(iss_as_array_is_refused, InvalidClaim("iss"), |gate, t| t
    .claim("iss", json!([gate.issuer.url()]))
    .sign());
refused!(iss_as_number_is_refused, InvalidClaim("iss"), |gate, t| t.claim("iss", json!(1)).sign());
refused!(iss_null_is_refused, InvalidClaim("iss"), |gate, t| t.claim("iss", Value::Null).sign());
refused!(iss_with_trailing_slash_is_refused, UnknownIssuer, |gate, t| t
    .claim("iss", json!(format!("{}/", gate.issuer.url())))
    .sign());
refused!(iss_in_another_case_is_refused, UnknownIssuer, |gate, t| t
    .claim("iss", json!(gate.issuer.url().to_uppercase()))
    .sign());
refused!(
    /// Signed by our issuer's key but claiming another issuer: tokengate only knows issuers it
    /// was configured with, and would verify with *that* issuer's keys. 401, unknown issuer.
    iss_of_an_unconfigured_issuer_is_refused,
    UnknownIssuer,
    |gate, t| t.claim("iss", json!("https://evil.example.com")).sign()
);

refused!(sub_as_number_is_refused, InvalidClaim("sub"), |gate, t| t.claim("sub", json!(1)).sign());
refused!(sub_as_object_is_refused, InvalidClaim("sub"), |gate, t| t
    .claim("sub", json!({"id": "admin"}))
    .sign());
refused!(scope_as_array_is_refused, InvalidClaim("scope"), |gate, t| t
    .claim("scope", json!(["read", "admin"]))
    .sign());
refused!(jti_as_number_is_refused, InvalidClaim("jti"), |gate, t| t.claim("jti", json!(1)).sign());

/// A gate requiring `typ: at+jwt` (RFC 9068 §2.1).
async fn typed_gate() -> Gate {
    Gate::with(|c| c.require_type("at+jwt"), |b| b).await
}

#[tokio::test]
async fn typ_jwt_where_at_jwt_is_required_is_refused() {
    // §2.8 cross-JWT confusion: an ID token (typ JWT) presented as an access token.
    let gate = typed_gate().await;
    gate.assert_rejected(&gate.issuer.token().header("typ", json!("JWT")).sign(), WrongType).await;
}

#[tokio::test]
async fn typ_missing_where_at_jwt_is_required_is_refused() {
    let gate = typed_gate().await;
    gate.assert_rejected(&gate.issuer.token().without_header("typ").sign(), WrongType).await;
}

#[tokio::test]
async fn typ_as_number_where_at_jwt_is_required_is_refused() {
    let gate = typed_gate().await;
    gate.assert_rejected(&gate.issuer.token().header("typ", json!(1)).sign(), WrongType).await;
}

#[tokio::test]
async fn typ_with_a_suffix_where_at_jwt_is_required_is_refused() {
    let gate = typed_gate().await;
    gate.assert_rejected(&gate.issuer.token().header("typ", json!("at+jwt; x=1")).sign(), WrongType).await;
    // Control: the media-type spelling with `application/` is the same type.
    gate.assert_accepted(&gate.issuer.token().header("typ", json!("application/at+jwt")).sign()).await;
}
