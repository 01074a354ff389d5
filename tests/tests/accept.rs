//! Tokens the layer must let through, and what the inner service then sees.

use serde_json::json;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, IssuerConfig, TokenGateBuilder};
use tokengate_testkit::KeyKind;
use tokengate_tests::{
    API_PATH, Harness, Reply, SERVERS, Server, assert_principal, bare_issuer_config, default_harness,
    issuer_config, mint,
};

/// One accepted request per algorithm, keys from the JWKS URL, on both servers.
async fn accepts_alg_from_jwks_url(alg: Algorithm) {
    for server in SERVERS {
        let h = default_harness(server).await;
        let (token, claims) = mint(h.issuer.token().alg(alg).scope("read write"));
        let seen = h.accepted(&format!("{API_PATH}?q=1"), Some(&token)).await;
        assert_eq!(seen.path, format!("{API_PATH}?q=1"), "{server:?}");
        assert_principal(&seen, &h.issuer.url(), &claims);
        assert_eq!(seen.principal().scopes, ["read", "write"]);
    }
}

#[tokio::test]
async fn accepts_rs256_from_jwks_url() {
    accepts_alg_from_jwks_url(Algorithm::RS256).await;
}

#[tokio::test]
async fn accepts_es256_from_jwks_url() {
    accepts_alg_from_jwks_url(Algorithm::ES256).await;
}

#[tokio::test]
async fn accepts_eddsa_from_jwks_url() {
    accepts_alg_from_jwks_url(Algorithm::EdDSA).await;
}

/// The testkit signs PS256 with its RSA key, but publishes that key with `"alg": "RS256"`.
/// RFC 7517 §4.4 makes `alg` the algorithm the key is meant for, and tokengate pins it, so a PS256
/// token under that JWK is refused. With the same key published without `alg`, PS256 verifies.
#[tokio::test]
async fn accepts_ps256_when_the_jwk_does_not_pin_rs256() {
    // The JWKS as served: the RSA key is pinned to RS256.
    let h = default_harness(Server::Axum).await;
    let token = h.issuer.token().alg(Algorithm::PS256).sign();
    h.refused(&token).await.assert_invalid_token("the token's algorithm is not allowed");

    // The same keys, inline, with `alg` removed from every JWK.
    for server in SERVERS {
        let h = Harness::start(server, RoutePolicy::new(), |issuer| {
            let mut jwks = issuer.jwks();
            for key in jwks["keys"].as_array_mut().expect("keys") {
                key.as_object_mut().expect("a JWK object").remove("alg");
            }
            TokenGateBuilder::default().issuer(bare_issuer_config(issuer).jwks(jwks.to_string()))
        })
        .await;
        let (token, claims) = mint(h.issuer.token().alg(Algorithm::PS256));
        let seen = h.accepted(API_PATH, Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
    }
}

/// Every asymmetric algorithm tokengate supports, each verified and showing its claims: the
/// JWKS inline with `alg` unpinned, so the one RSA key serves RS* and PS*, and the P-256 and
/// P-384 keys fit ES256 and ES384 by their curve.
#[tokio::test]
async fn accepts_every_asymmetric_algorithm() {
    const ALL: [Algorithm; 9] = [
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
    for server in SERVERS {
        let h = Harness::start(server, RoutePolicy::new(), |issuer| {
            let mut jwks = issuer.jwks();
            for key in jwks["keys"].as_array_mut().expect("keys") {
                key.as_object_mut().expect("a JWK object").remove("alg");
            }
            TokenGateBuilder::default()
                .issuer(bare_issuer_config(issuer).algorithms(ALL).jwks(jwks.to_string()))
        })
        .await;
        for alg in ALL {
            let (token, claims) = mint(h.issuer.token().alg(alg).scope("read"));
            let seen = h.accepted(API_PATH, Some(&token)).await;
            assert_principal(&seen, &h.issuer.url(), &claims);
            assert_eq!(seen.principal().scopes, ["read"], "{server:?} {alg:?}");
        }
    }
}

/// HS384 and HS512 as well as HS256, each with a secret long enough for it (RFC 7518 §3.2).
#[tokio::test]
async fn accepts_every_hmac_algorithm() {
    const SECRET: [u8; 64] = [0x6b; 64];
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let h = Harness::start(Server::Axum, RoutePolicy::new(), |issuer| {
            TokenGateBuilder::default().issuer(
                IssuerConfig::new(issuer.url())
                    .audience(issuer.audience())
                    .algorithms([alg])
                    .hmac_secret(SECRET),
            )
        })
        .await;
        let builder = h.issuer.token().without_header("kid").scope("read");
        let claims = builder.clone().parts().1;
        let seen = h.accepted(API_PATH, Some(&builder.sign_hmac(alg, &SECRET))).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
    }
}

#[tokio::test]
async fn accepts_tokens_verified_with_pem_keys() {
    let h = Harness::start(Server::Hyper, RoutePolicy::new(), |issuer| {
        TokenGateBuilder::default().issuer(
            bare_issuer_config(issuer)
                .pem(issuer.public_key_pem(KeyKind::Rsa), Some(&issuer.kid(KeyKind::Rsa)))
                .pem(issuer.public_key_pem(KeyKind::P256), Some(&issuer.kid(KeyKind::P256)))
                .pem(issuer.public_key_pem(KeyKind::Ed25519), Some(&issuer.kid(KeyKind::Ed25519))),
        )
    })
    .await;
    // A PEM key pins no algorithm: PS256 works with the RSA key as well.
    for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA] {
        let (token, claims) = mint(h.issuer.token().alg(alg));
        let seen = h.accepted(API_PATH, Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
    }
}

#[tokio::test]
async fn accepts_hs256_from_an_hmac_issuer() {
    const SECRET: [u8; 32] = [0x5a; 32];
    for server in SERVERS {
        let h = Harness::start(server, RoutePolicy::new(), |issuer| {
            TokenGateBuilder::default().issuer(
                IssuerConfig::new(issuer.url())
                    .audience(issuer.audience())
                    .algorithms([Algorithm::HS256])
                    .hmac_secret(SECRET),
            )
        })
        .await;
        let builder = h.issuer.token().without_header("kid").sub("service-7");
        let claims = builder.clone().parts().1;
        let token = builder.clone().sign_hmac(Algorithm::HS256, &SECRET);
        let seen = h.accepted(API_PATH, Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
        assert_eq!(seen.principal().subject.as_deref(), Some("service-7"));

        // The same claims under another secret are refused.
        let forged = builder.sign_hmac(Algorithm::HS256, &[0x5b; 32]);
        h.refused(&forged).await.assert_invalid_token("the token's signature is invalid");
    }
}

#[tokio::test]
async fn accepts_an_aud_array_that_contains_our_audience() {
    for server in SERVERS {
        let h = default_harness(server).await;
        let aud = json!(["https://other.example.com", h.issuer.audience(), "https://third.example.com"]);
        let (token, claims) = mint(h.issuer.token().aud(aud));
        let seen = h.accepted(API_PATH, Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
    }
}

#[tokio::test]
async fn two_issuers_the_tokens_iss_picks_the_one_that_verifies() {
    let other = tokengate_testkit::Issuer::start().await;
    other.set_now(Some(tokengate_tests::T0));
    let other_config = issuer_config(&other);
    let h = Harness::start(Server::Axum, RoutePolicy::new(), move |issuer| {
        TokenGateBuilder::default().issuer(issuer_config(issuer)).issuer(other_config)
    })
    .await;

    let (first, first_claims) = mint(h.issuer.token().sub("from-first"));
    let seen = h.accepted(API_PATH, Some(&first)).await;
    assert_principal(&seen, &h.issuer.url(), &first_claims);

    let (second, second_claims) = mint(other.token().alg(Algorithm::ES256).sub("from-second"));
    let seen = h.accepted(API_PATH, Some(&second)).await;
    assert_principal(&seen, &other.url(), &second_claims);

    // Both issuers name their RSA key `rsa-1`: a token of the second issuer that claims the
    // first as `iss` is checked against the first issuer's keys alone, and fails.
    assert_eq!(h.issuer.kid(KeyKind::Rsa), other.kid(KeyKind::Rsa));
    let crossed = other.token().claim("iss", json!(h.issuer.url())).sign();
    h.refused(&crossed).await.assert_invalid_token("the token's signature is invalid");
}

#[tokio::test]
async fn accepts_scopes_from_an_scp_array() {
    let policy = RoutePolicy::new()
        .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin", "write"])).expect("rule"));
    for server in SERVERS {
        let h = Harness::start(server, policy.clone(), |issuer| {
            TokenGateBuilder::default().issuer(issuer_config(issuer))
        })
        .await;
        let (token, claims) =
            mint(h.issuer.token().without_claim("scope").claim("scp", json!(["write", "admin", "read"])));
        let seen = h.accepted("/admin/users", Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
        assert_eq!(seen.principal().scopes, ["write", "admin", "read"]);
    }
}

#[tokio::test]
async fn scopes_are_the_scope_tokens_between_spaces() {
    // RFC 6749 §3.3: `scope` is scope-tokens separated by spaces. A piece that is not one
    // scope-token (a tab, a line break, a quote) is left out whole, never split further.
    let policy = RoutePolicy::new()
        .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["write"])).expect("rule"));
    for server in SERVERS {
        let h = Harness::start(server, policy.clone(), |issuer| {
            TokenGateBuilder::default().issuer(issuer_config(issuer))
        })
        .await;
        let (token, claims) = mint(h.issuer.token().scope(" read\tadmin  write q\"x "));
        let seen = h.accepted("/admin/users", Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
        assert_eq!(seen.principal().scopes, ["write"]);
    }
}

fn optional_and_public_policy() -> RoutePolicy {
    RoutePolicy::new()
        .rule(Rule::new("/optional/*", Requirement::optional()).expect("rule"))
        .rule(Rule::new("/public/*", Requirement::public()).expect("rule"))
}

#[tokio::test]
async fn optional_route_without_a_token_passes_without_principal() {
    for server in SERVERS {
        let h = Harness::start(server, optional_and_public_policy(), |issuer| {
            TokenGateBuilder::default().issuer(issuer_config(issuer))
        })
        .await;
        let seen = h.accepted("/optional/page", None).await;
        assert_eq!(seen.path, "/optional/page");
        assert_eq!(seen.principal, None);
    }
}

#[tokio::test]
async fn optional_route_with_a_valid_token_passes_with_principal() {
    for server in SERVERS {
        let h = Harness::start(server, optional_and_public_policy(), |issuer| {
            TokenGateBuilder::default().issuer(issuer_config(issuer))
        })
        .await;
        let (token, claims) = mint(h.issuer.token());
        let seen = h.accepted("/optional/page", Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);

        // A token that is present is verified: an expired one is refused, not ignored.
        let expired = h.issuer.token().expires_in(-120).sign();
        h.refused_at("/optional/page", Some(&expired)).await.assert_invalid_token("the token has expired");
    }
}

#[tokio::test]
async fn public_route_with_a_garbage_token_passes_without_principal() {
    for server in SERVERS {
        let h = Harness::start(server, optional_and_public_policy(), |issuer| {
            TokenGateBuilder::default().issuer(issuer_config(issuer))
        })
        .await;
        let seen = h.accepted("/public/page", Some("garbage.not-a.jwt")).await;
        assert_eq!(seen.path, "/public/page");
        assert_eq!(seen.principal, None);

        // Even a valid token yields no principal on a public route.
        let token = h.issuer.token().sign();
        let seen = h.accepted("/public/page", Some(&token)).await;
        assert_eq!(seen.principal, None);
    }
}

/// The hyper server speaks HTTP/2 too (`auto::Builder`): the layer decides h2 requests alike.
#[tokio::test]
async fn http2_requests_are_gated_like_http1() {
    let h = default_harness(Server::Hyper).await;
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().expect("an h2 client");
    let (token, claims) = mint(h.issuer.token());
    let response = h2.get(h.url(API_PATH)).bearer_auth(&token).send().await.expect("h2 request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let seen = Reply::read(response).await.seen(&h, 0);
    assert_principal(&seen, &h.issuer.url(), &claims);

    let response = h2.get(h.url(API_PATH)).send().await.expect("h2 request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    Reply::read(response).await.assert_missing_token();
    assert_eq!(h.calls(), 1, "the refused request did not reach the inner service");
}
