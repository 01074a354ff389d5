//! Tokens the layer must refuse: 401 `invalid_token` with the description of the failed check,
//! and the inner service never runs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokengate::policy::RoutePolicy;
use tokengate::{Algorithm, IssuerConfig, TokenGateBuilder};
use tokengate_testkit::{KeyKind, raw_token};
use tokengate_tests::{
    API_PATH, CountingServer, Harness, SERVERS, Server, T0, assert_principal, axum_harness, default_harness,
    issuer_config, mint, replace_segment, sign_raw_hs256,
};

const MALFORMED: &str = "the token is malformed";
const BAD_SIGNATURE: &str = "the token's signature is invalid";
const ALG_NOT_ALLOWED: &str = "the token's algorithm is not allowed";
/// What a token that is not three dot-separated segments may be refused as.
const NOT_A_JWS: &[&str] = &[MALFORMED, "this route accepts only JWT access tokens"];

#[tokio::test]
async fn expired_token_is_refused_once_the_leeway_has_passed() {
    for server in SERVERS {
        let h = default_harness(server).await;
        let (token, claims) = mint(h.issuer.token().expires_in(60));
        // exp = T0+60; the default leeway is 30 s: still good at exp+29 ...
        h.advance(60 + 29);
        let seen = h.accepted(API_PATH, Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
        // ... and expired from exp+30 on.
        h.advance(1);
        h.refused(&token).await.assert_invalid_token("the token has expired");

        // A token minted already expired is refused at once.
        let expired = h.issuer.token().expires_in(-3600).sign();
        h.refused(&expired).await.assert_invalid_token("the token has expired");
    }
}

#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    let h = default_harness(Server::Axum).await;
    let (token, claims) = mint(h.issuer.token().claim("nbf", json!(T0 + 120)));
    h.refused(&token).await.assert_invalid_token("the token is not valid yet");
    // Once the clocks reach nbf - leeway, the same token passes.
    h.advance(90);
    let seen = h.accepted(API_PATH, Some(&token)).await;
    assert_principal(&seen, &h.issuer.url(), &claims);
}

#[tokio::test]
async fn iat_in_the_future_beyond_the_leeway_is_refused() {
    let h = default_harness(Server::Hyper).await;
    let token = h.issuer.token().claim("iat", json!(T0 + 60)).sign();
    h.refused(&token).await.assert_invalid_token("the token is issued in the future");
}

#[tokio::test]
async fn iat_in_the_future_within_the_leeway_is_accepted() {
    let h = default_harness(Server::Hyper).await;
    let (token, claims) = mint(h.issuer.token().claim("iat", json!(T0 + 20)));
    let seen = h.accepted(API_PATH, Some(&token)).await;
    assert_principal(&seen, &h.issuer.url(), &claims);
}

#[tokio::test]
async fn unconfigured_issuer_is_refused() {
    for server in SERVERS {
        let h = default_harness(server).await;
        let token = h.issuer.token().claim("iss", json!("https://evil.example.com")).sign();
        h.refused(&token).await.assert_invalid_token("the token's issuer is not trusted");
        // A near miss of our own issuer (trailing slash) is no match either.
        let token = h.issuer.token().claim("iss", json!(format!("{}/", h.issuer.url()))).sign();
        h.refused(&token).await.assert_invalid_token("the token's issuer is not trusted");
    }
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    for server in SERVERS {
        let h = default_harness(server).await;
        let token = h.issuer.token().aud(json!("https://other.example.com")).sign();
        h.refused(&token).await.assert_invalid_token("the token is not meant for this audience");
        let token = h.issuer.token().aud(json!(["https://a.example.com", "https://b.example.com"])).sign();
        h.refused(&token).await.assert_invalid_token("the token is not meant for this audience");
    }
}

#[tokio::test]
async fn missing_exp_is_refused() {
    let h = default_harness(Server::Axum).await;
    let token = h.issuer.token().without_claim("exp").sign();
    h.refused(&token).await.assert_invalid_token("the token has no exp claim");
}

#[tokio::test]
async fn missing_iss_is_refused() {
    let h = default_harness(Server::Axum).await;
    let token = h.issuer.token().without_claim("iss").sign();
    h.refused(&token).await.assert_invalid_token("the token has no iss claim");
}

#[tokio::test]
async fn missing_aud_is_refused() {
    let h = default_harness(Server::Axum).await;
    let token = h.issuer.token().without_claim("aud").sign();
    h.refused(&token).await.assert_invalid_token("the token has no aud claim");
}

#[tokio::test]
async fn alg_none_in_every_spelling_is_refused() {
    for server in SERVERS {
        let h = default_harness(server).await;
        for none in ["none", "None", "NONE", "nOnE"] {
            // As an attacker sends it: `header.payload.` with an empty signature.
            let unsigned = h.issuer.token().header("alg", json!(none)).unsigned();
            assert!(unsigned.ends_with('.'), "{unsigned}");
            h.refused(&unsigned).await.assert_invalid_token(MALFORMED);
            // With some signature bytes, the `alg` check itself is what refuses it.
            let with_signature = format!("{unsigned}c2lnbmF0dXJl");
            h.refused(&with_signature).await.assert_invalid_token("the token's algorithm is not supported");
        }
    }
}

#[tokio::test]
async fn algorithm_outside_the_issuers_allow_list_is_refused() {
    let h = axum_harness(RoutePolicy::new(), |config| config.algorithms([Algorithm::RS256])).await;
    // The key (kid rsa-1) could verify PS256, but the issuer allows only RS256.
    let token = h.issuer.token().alg(Algorithm::PS256).sign();
    h.refused(&token).await.assert_invalid_token(ALG_NOT_ALLOWED);
    let token = h.issuer.token().alg(Algorithm::ES256).sign();
    h.refused(&token).await.assert_invalid_token(ALG_NOT_ALLOWED);
    let (token, claims) = mint(h.issuer.token());
    let seen = h.accepted(API_PATH, Some(&token)).await;
    assert_principal(&seen, &h.issuer.url(), &claims);
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_pem_is_refused() {
    for server in SERVERS {
        let h = default_harness(server).await;
        let pem = h.issuer.public_key_pem(KeyKind::Rsa);
        let token = h.issuer.token().sign_hmac(Algorithm::HS256, pem.as_bytes());
        h.refused(&token).await.assert_invalid_token(ALG_NOT_ALLOWED);
    }
    // Also when the key is configured as that very PEM.
    let h = Harness::start(Server::Axum, RoutePolicy::new(), |issuer| {
        let pem = issuer.public_key_pem(KeyKind::Rsa);
        TokenGateBuilder::default()
            .issuer(tokengate_tests::bare_issuer_config(issuer).pem(pem, Some("rsa-1")))
    })
    .await;
    let pem = h.issuer.public_key_pem(KeyKind::Rsa);
    let token = h.issuer.token().sign_hmac(Algorithm::HS256, pem.as_bytes());
    h.refused(&token).await.assert_invalid_token(ALG_NOT_ALLOWED);
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let h = default_harness(Server::Hyper).await;
    let token = h.issuer.token().header("kid", json!("no-such-key")).sign();
    h.refused(&token).await.assert_invalid_token("the token's signing key is unknown");
    let token = h.issuer.token().without_header("kid").sign();
    h.refused(&token).await.assert_invalid_token("the token's signing key is unknown");
}

/// Flips one bit of the decoded signature and re-encodes it, so the segment stays canonical
/// base64url and only the signature check can catch it.
fn flip_signature_bit(token: &str) -> String {
    let signature = token.rsplit('.').next().expect("a signature segment");
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("canonical base64url");
    bytes[7] ^= 0x01;
    replace_segment(token, 2, &URL_SAFE_NO_PAD.encode(&bytes))
}

#[tokio::test]
async fn bad_signature_is_refused() {
    for server in SERVERS {
        let h = default_harness(server).await;
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let token = h.issuer.token().alg(alg).sign();
            h.refused(&flip_signature_bit(&token)).await.assert_invalid_token(BAD_SIGNATURE);
        }
        // A payload changed after signing.
        let (token, mut claims) = mint(h.issuer.token().scope("read"));
        claims["scope"] = json!("read admin");
        let tampered = replace_segment(&token, 1, &URL_SAFE_NO_PAD.encode(claims.to_string()));
        h.refused(&tampered).await.assert_invalid_token(BAD_SIGNATURE);
    }
}

#[tokio::test]
async fn signature_by_a_foreign_key_with_our_kid_is_refused() {
    for server in SERVERS {
        let h = default_harness(server).await;
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let token = h.issuer.token().alg(alg).sign_with_foreign_key();
            h.refused(&token).await.assert_invalid_token(BAD_SIGNATURE);
        }
    }
}

#[tokio::test]
async fn key_of_the_wrong_kty_for_the_alg_is_refused() {
    let h = default_harness(Server::Axum).await;
    // Signed with the P-256 key, but the header names the RSA key.
    let token =
        h.issuer.token().alg(Algorithm::ES256).header("kid", json!(h.issuer.kid(KeyKind::Rsa))).sign();
    h.refused(&token).await.assert_invalid_token(ALG_NOT_ALLOWED);
    // EdDSA naming the P-256 key.
    let token =
        h.issuer.token().alg(Algorithm::EdDSA).header("kid", json!(h.issuer.kid(KeyKind::P256))).sign();
    h.refused(&token).await.assert_invalid_token(ALG_NOT_ALLOWED);
}

#[tokio::test]
async fn unknown_crit_header_is_refused() {
    let h = default_harness(Server::Hyper).await;
    let token = h.issuer.token().header("crit", json!(["exp"])).header("exp", json!(T0 + 300)).sign();
    h.refused(&token).await.assert_invalid_token("the token has unsupported critical header parameters");
    let token = h.issuer.token().header("crit", json!(["b64"])).header("b64", json!(false)).sign();
    h.refused(&token).await.assert_invalid_token("the token has unsupported critical header parameters");
}

/// A token signed by a key the issuer never published, which carries that key itself in `jwk`,
/// and points `jku` / `x5u` at a server of ours: refused, and nothing is ever fetched.
#[tokio::test]
async fn embedded_jwk_and_key_urls_are_never_trusted_or_fetched() {
    let h = default_harness(Server::Axum).await;
    let keys_server = CountingServer::start().await;
    // A second issuer plays the attacker: its keys are foreign to ours, with the same kids.
    let attacker = tokengate_testkit::Issuer::start().await;
    attacker.set_now(Some(T0));
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let kind = KeyKind::for_algorithm(alg);
        let attacker_jwk = attacker.jwks()["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == json!(attacker.kid(kind)))
            .expect("the attacker's key")
            .clone();
        let forged = |builder: tokengate_testkit::TokenBuilder| {
            builder.alg(alg).claim("iss", json!(h.issuer.url())).aud(json!(h.issuer.audience()))
        };
        // The attacker's kids are ours (`rsa-1`, `ec-1`, `ed-1`): the signature is checked with
        // our key of that name and fails.
        for token in [
            forged(attacker.token()).header("jwk", attacker_jwk.clone()).sign(),
            forged(attacker.token()).header("jku", json!(format!("{}/jwks", keys_server.url))).sign(),
            forged(attacker.token()).header("x5u", json!(format!("{}/cert.pem", keys_server.url))).sign(),
            forged(attacker.token())
                .header("x5c", json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]))
                .sign(),
        ] {
            h.refused(&token).await.assert_invalid_token(BAD_SIGNATURE);
        }
        // Without a `kid`, the embedded key is the only candidate the token offers: not one of ours.
        let token = forged(attacker.token()).header("jwk", attacker_jwk).without_header("kid").sign();
        h.refused(&token).await.assert_invalid_token("the token's signing key is unknown");
    }
    assert_eq!(keys_server.hits(), 0, "jku / x5u must never be fetched");
}

/// A valid token that also carries `jku`: the header is ignored (the token verifies against the
/// configured keys) and the URL is never fetched.
#[tokio::test]
async fn valid_token_with_a_jku_header_is_accepted_without_fetching_it() {
    let h = default_harness(Server::Hyper).await;
    let keys_server = CountingServer::start().await;
    let (token, claims) = mint(
        h.issuer
            .token()
            .header("jku", json!(format!("{}/jwks", keys_server.url)))
            .header("x5u", json!(format!("{}/x5u", keys_server.url))),
    );
    let seen = h.accepted(API_PATH, Some(&token)).await;
    assert_principal(&seen, &h.issuer.url(), &claims);
    assert_eq!(keys_server.hits(), 0);
}

#[tokio::test]
async fn typ_must_match_when_the_issuer_requires_one() {
    for server in SERVERS {
        let h = Harness::start(server, RoutePolicy::new(), |issuer| {
            TokenGateBuilder::default().issuer(issuer_config(issuer).require_type("at+jwt"))
        })
        .await;
        // The testkit's default `typ` is "JWT".
        let token = h.issuer.token().sign();
        h.refused(&token).await.assert_invalid_token("the token has the wrong type");
        let token = h.issuer.token().without_header("typ").sign();
        h.refused(&token).await.assert_invalid_token("the token has the wrong type");

        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            let (token, claims) = mint(h.issuer.token().header("typ", json!(typ)));
            let seen = h.accepted(API_PATH, Some(&token)).await;
            assert_principal(&seen, &h.issuer.url(), &claims);
        }
    }
}

/// A logout token or a security event token signed by a configured issuer, for an audience the
/// API accepts, is no access token (RFC 8725 §3.11–3.12): refused by its `typ`, or, untyped, by
/// the `events` claim both kinds carry — with no `require_type` configured.
#[tokio::test]
async fn logout_tokens_and_security_event_tokens_are_never_access_tokens() {
    for server in SERVERS {
        let h = Harness::start(server, RoutePolicy::new(), |issuer| {
            TokenGateBuilder::default().issuer(issuer_config(issuer))
        })
        .await;
        let logout_event = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
        for typ in [
            "logout+jwt",
            "application/logout+jwt",
            "Logout+JWT",
            "secevent+jwt",
            "application/secevent+jwt",
            "logout+jwt; charset=utf-8",
            "application/secevent+jwt;v=1",
            " logout+jwt ;x=y",
        ] {
            let token = h.issuer.token().header("typ", json!(typ)).sign();
            h.refused(&token).await.assert_invalid_token("the token has the wrong type");
        }
        for typ in [None, Some("JWT"), Some("at+jwt")] {
            let builder = h.issuer.token().claim("events", logout_event.clone());
            let builder = match typ {
                Some(typ) => builder.header("typ", json!(typ)),
                None => builder.without_header("typ"),
            };
            h.refused(&builder.sign()).await.assert_invalid_token("the token has the wrong type");
        }
        // Any other `events` value too: the claim itself marks a token that is not for APIs.
        let token = h.issuer.token().claim("events", json!(null)).sign();
        h.refused(&token).await.assert_invalid_token("the token has the wrong type");
        // Other types pass as before.
        for typ in ["JWT", "at+jwt", "application/jwt"] {
            let (token, claims) = mint(h.issuer.token().header("typ", json!(typ)));
            let seen = h.accepted(API_PATH, Some(&token)).await;
            assert_principal(&seen, &h.issuer.url(), &claims);
        }
    }
}

/// `typ` is compared after stripping an `application/` prefix, by byte offset: a non-ASCII
/// `typ` whose 12th byte falls inside a character must be refused like any wrong type, not
/// crash the connection (DESIGN: "no panic on any input"; this runs before the signature check,
/// so anyone can send it).
#[tokio::test]
async fn non_ascii_typ_is_refused_without_a_panic() {
    let h = axum_harness(RoutePolicy::new(), |config| config.require_type("at+jwt")).await;
    // "a" + six "é": 13 bytes; byte 12 is the middle of the last "é".
    let typ = format!("a{}", "é".repeat(6));
    assert!(!typ.is_char_boundary(12));
    let token = h.issuer.token().header("typ", json!(typ)).sign();
    h.refused(&token).await.assert_invalid_token("the token has the wrong type");
}

#[tokio::test]
async fn malformed_base64url_in_any_segment_is_refused() {
    for server in SERVERS {
        let h = default_harness(server).await;
        let token = h.issuer.token().sign();
        let segments: Vec<String> = token.split('.').map(str::to_owned).collect();
        for (index, segment) in segments.iter().enumerate() {
            // Characters that are valid in an RFC 6750 b64token but not in unpadded base64url.
            let plus = format!("{}+{}", &segment[..4], &segment[5..]);
            let slash = format!("{}/{}", &segment[..4], &segment[5..]);
            let tilde = format!("{}~{}", &segment[..4], &segment[5..]);
            // A length of 1 mod 4 is never valid base64.
            let mut dangling = segment.clone();
            while dangling.len() % 4 != 1 {
                dangling.push('A');
            }
            for bad in [plus, slash, tilde, dangling] {
                let token = replace_segment(&token, index, &bad);
                h.refused(&token).await.assert_invalid_token(MALFORMED);
            }
        }
        // Padding (b64token allows `=` only at the very end, so only the signature can carry it).
        let padded = format!("{token}==");
        h.refused(&padded).await.assert_invalid_token(MALFORMED);
        // Non-canonical trailing bits: `fR` decodes like `fQ` in a lenient decoder.
        let lenient =
            raw_token(r#"{"alg":"RS256"}"#, r#"{"a":1}"#, "c2ln").replace("eyJhIjoxfQ", "eyJhIjoxfR");
        h.refused(&lenient).await.assert_invalid_token(MALFORMED);
        // Empty segments.
        for shape in ["..", ".e30.e30", "e30..e30", "e30.e30."] {
            h.refused(shape).await.assert_invalid_token(MALFORMED);
        }
        // Not three segments at all: not a JWS (refused as malformed, or as an opaque token
        // on a route that verifies JWTs locally only).
        for shape in ["a", "a.b", "a.b.c.d", "e30.e30.e30.e30.e30"] {
            h.refused(shape).await.assert_invalid_token_one_of(NOT_A_JWS);
        }
    }
}

#[tokio::test]
async fn payload_that_is_not_a_json_object_is_refused() {
    let h = default_harness(Server::Hyper).await;
    let header = r#"{"alg":"RS256","typ":"JWT","kid":"rsa-1"}"#;
    for payload in
        ["not json", "{\"iss\":", "[]", "[{\"iss\":\"x\"}]", "42", "\"a string\"", "null", "true", "{} {}"]
    {
        let token = raw_token(header, payload, "c2lnbmF0dXJl");
        h.refused(&token).await.assert_invalid_token(MALFORMED);
    }
    // Same for the header.
    let token = raw_token("[\"RS256\"]", r#"{"iss":"x"}"#, "c2lnbmF0dXJl");
    h.refused(&token).await.assert_invalid_token(MALFORMED);
}

#[tokio::test]
async fn exp_as_a_string_is_refused() {
    let h = default_harness(Server::Axum).await;
    let token = h.issuer.token().claim("exp", json!((T0 + 300).to_string())).sign();
    h.refused(&token).await.assert_invalid_token("the token's exp claim is invalid");
}

/// RFC 7519 §2: a NumericDate "can represent any non-integer value".
#[tokio::test]
async fn exp_as_a_float_in_the_future_is_accepted() {
    let h = default_harness(Server::Axum).await;
    let (token, claims) = mint(h.issuer.token().claim("exp", json!(T0 as f64 + 300.75)));
    let seen = h.accepted(API_PATH, Some(&token)).await;
    assert_principal(&seen, &h.issuer.url(), &claims);
    assert_eq!(seen.principal().expires_at, Some(T0 + 300));
    // And a float in the past is expired.
    let token = h.issuer.token().claim("exp", json!(T0 as f64 - 3600.5)).sign();
    h.refused(&token).await.assert_invalid_token("the token has expired");
}

#[tokio::test]
async fn absurdly_large_exp_is_refused() {
    let h = default_harness(Server::Axum).await;
    for exp in [json!(1e20), json!(u64::MAX), json!(i64::MAX), json!(f64::MAX), json!(-1)] {
        let token = h.issuer.token().claim("exp", exp.clone()).sign();
        h.refused(&token).await.assert_invalid_token("the token's exp claim is invalid");
    }
}

/// Duplicate member names are refused as malformed, even with a valid signature over the exact
/// bytes (parsers disagree on which duplicate wins). The testkit cannot sign raw JSON, so this
/// uses an HMAC issuer and signs the hand-written payload with jsonwebtoken directly.
#[tokio::test]
async fn duplicate_claim_names_are_refused_even_when_signed() {
    const SECRET: [u8; 32] = [0x42; 32];
    let h = Harness::start(Server::Axum, RoutePolicy::new(), |issuer| {
        TokenGateBuilder::default().issuer(
            IssuerConfig::new(issuer.url())
                .audience(issuer.audience())
                .algorithms([Algorithm::HS256])
                .hmac_secret(SECRET),
        )
    })
    .await;
    let iss = h.issuer.url();
    let aud = h.issuer.audience();
    let exp = T0 + 300;
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;

    // Control: the same shape without duplicates verifies.
    let good = format!(r#"{{"iss":"{iss}","sub":"u","aud":"{aud}","exp":{exp}}}"#);
    let seen = h.accepted(API_PATH, Some(&sign_raw_hs256(header, &good, &SECRET))).await;
    assert_eq!(seen.principal().subject.as_deref(), Some("u"));

    for payload in [
        format!(r#"{{"iss":"{iss}","iss":"https://evil.example.com","sub":"u","aud":"{aud}","exp":{exp}}}"#),
        format!(r#"{{"iss":"{iss}","sub":"u","sub":"admin","aud":"{aud}","exp":{exp}}}"#),
        format!(r#"{{"iss":"{iss}","sub":"u","aud":"{aud}","exp":{exp},"exp":{}}}"#, exp + 999_999),
    ] {
        let token = sign_raw_hs256(header, &payload, &SECRET);
        h.refused(&token).await.assert_invalid_token(MALFORMED);
    }
    // Duplicate header members too.
    let token = sign_raw_hs256(r#"{"alg":"HS256","alg":"none"}"#, &good, &SECRET);
    h.refused(&token).await.assert_invalid_token(MALFORMED);
}

#[tokio::test]
async fn oversized_token_is_refused_before_decoding() {
    for server in SERVERS {
        let h = default_harness(server).await;
        // A validly signed token just over 8 KiB (a big claim) ...
        let token = h.issuer.token().claim("pad", json!("x".repeat(8 * 1024))).sign();
        assert!(token.len() > 8 * 1024);
        h.refused(&token).await.assert_invalid_token("the token is larger than allowed");
        // ... and 9 KiB of anything.
        h.refused(&"a".repeat(9 * 1024)).await.assert_invalid_token("the token is larger than allowed");
        // The cap is inclusive: 8192 bytes are decoded (and found malformed), 8193 are not.
        h.refused(&"a".repeat(8 * 1024)).await.assert_invalid_token_one_of(NOT_A_JWS);
        h.refused(&"a".repeat(8 * 1024 + 1)).await.assert_invalid_token("the token is larger than allowed");
    }
}

#[tokio::test]
async fn claims_of_the_wrong_type_are_refused() {
    let h = default_harness(Server::Hyper).await;
    let cases: [(&str, Value, &str); 6] = [
        ("nbf", json!("soon"), "the token's nbf claim is invalid"),
        ("iat", json!({"t": 1}), "the token's iat claim is invalid"),
        ("aud", json!(42), "the token's aud claim is invalid"),
        ("aud", json!([h.issuer.audience(), 7]), "the token's aud claim is invalid"),
        ("scope", json!(["read"]), "the token's scope claim is invalid"),
        ("sub", json!(12345), "a claim of the token is invalid"),
    ];
    for (name, value, description) in cases {
        let token = h.issuer.token().claim(name, value).sign();
        h.refused(&token).await.assert_invalid_token(description);
    }
    // `scp` is read when `scope` is absent: a string or an array of strings only. An item
    // that is a string but not one scope is left out; an item that is not a string refuses
    // the token, wherever it sits.
    for scp in [json!(7), json!({"read": true}), json!(["read", 7]), json!(["x y", null])] {
        let token = h.issuer.token().without_claim("scope").claim("scp", scp).sign();
        h.refused(&token).await.assert_invalid_token("the token's scope claim is invalid");
    }
}
