//! The verified-token cache (DESIGN.md step 3): a token seen before skips the signature, but a
//! hit is no free pass — `exp`/`nbf`, the revocation list and the route's scopes are checked on
//! every request, the entry is void once its issuer's key set changes, and only tokens that
//! verified are ever cached. Over loopback, through both real servers, time moved by the clock.

use tokengate::TokenGateBuilder;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::token_cache::TokenCacheConfig;
use tokengate_testkit::KeyKind;
use tokengate_tests::{API_PATH, Harness, SERVERS, Server, T0, assert_principal, issuer_config, mint};

fn policy() -> RoutePolicy {
    RoutePolicy::new().rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"])).expect("rule"))
}

async fn harness(server: Server) -> Harness {
    Harness::start(server, policy(), |issuer| TokenGateBuilder::default().issuer(issuer_config(issuer))).await
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    for server in SERVERS {
        let h = harness(server).await;
        let (token, claims) = mint(h.issuer.token().expires_in(120));
        for _ in 0..3 {
            let seen = h.accepted(API_PATH, Some(&token)).await;
            assert_principal(&seen, &h.issuer.url(), &claims);
        }
        assert_eq!(h.layer.gate().cached_tokens(), 1, "{server:?}: the token is cached");
        // Past exp + the 30 s leeway the cached entry no longer admits it.
        h.advance(120 + 30);
        h.refused(&token).await.assert_invalid_token("the token has expired");
    }
}

#[tokio::test]
async fn a_cached_token_revoked_afterwards_is_refused_at_once() {
    for server in SERVERS {
        let h = harness(server).await;
        let (token, claims) = mint(h.issuer.token().claim("jti", serde_json::json!("jti-cached")));
        let seen = h.accepted(API_PATH, Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
        h.layer
            .gate()
            .revocations()
            .revoke_token(&h.issuer.url(), "jti-cached", Some(T0 + 3600))
            .expect("revoke");
        h.refused(&token).await.assert_invalid_token("the token has been revoked");

        // And by subject: every token of the user issued before now.
        let (other, claims) = mint(h.issuer.token().sub("bob"));
        let seen = h.accepted(API_PATH, Some(&other)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
        h.layer.gate().revocations().revoke_subject(&h.issuer.url(), "bob", None).expect("revoke");
        h.refused(&other).await.assert_invalid_token("the token has been revoked");
    }
}

#[tokio::test]
async fn a_cached_token_gets_no_scope_it_lacks() {
    for server in SERVERS {
        let h = harness(server).await;
        let (token, claims) = mint(h.issuer.token().scope("read"));
        let seen = h.accepted(API_PATH, Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
        // The same (now cached) token on a route that needs `admin`.
        h.refused_at("/admin/users", Some(&token)).await.assert_insufficient_scope("admin");
    }
}

#[tokio::test]
async fn a_cached_token_is_void_once_its_key_leaves_the_set() {
    for server in SERVERS {
        let h = harness(server).await;
        let old_kid = h.issuer.kid(KeyKind::Rsa);
        let (old, claims) = mint(h.issuer.token().kid_key(&old_kid));
        let seen = h.accepted(API_PATH, Some(&old)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);

        // The issuer rotates and drops the old key; a token under the new key makes the gate
        // fetch the new set.
        let new_kid = h.issuer.rotate(KeyKind::Rsa);
        h.issuer.remove_key(&old_kid);
        let (new, claims) = mint(h.issuer.token().kid_key(&new_kid));
        let seen = h.accepted(API_PATH, Some(&new)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);

        // The old token was cached, but its key is gone: refused, not served from the cache.
        let reply = h.refused(&old).await;
        assert_eq!(reply.status, 401, "{server:?}: {}", reply.text);
    }
}

#[tokio::test]
async fn only_verified_tokens_are_cached() {
    let h = harness(Server::Axum).await;
    let good = h.issuer.token().sign();
    let (head, _) = good.rsplit_once('.').expect("a JWS");
    for n in 0..50 {
        let forged = format!("{head}.{}", "A".repeat(300 + n));
        let reply = h.refused(&forged).await;
        assert_eq!(reply.status, 401);
    }
    let expired = h.issuer.token().expires_in(-600).sign();
    h.refused(&expired).await.assert_invalid_token("the token has expired");
    let early = h.issuer.token().claim("nbf", serde_json::json!(T0 + 600)).sign();
    h.refused(&early).await.assert_invalid_token("the token is not valid yet");
    assert_eq!(h.layer.gate().cached_tokens(), 0, "no refused token was cached");
    h.accepted(API_PATH, Some(&good)).await;
    assert_eq!(h.layer.gate().cached_tokens(), 1);
}

#[tokio::test]
async fn the_cache_is_bounded_and_can_be_turned_off() {
    let h = Harness::start(Server::Hyper, policy(), |issuer| {
        TokenGateBuilder::default()
            .issuer(issuer_config(issuer))
            .token_cache(Some(TokenCacheConfig { max_entries: 10, max_bytes: 1024 * 1024 }))
    })
    .await;
    for n in 0..40 {
        let (token, claims) = mint(h.issuer.token().sub(&format!("user-{n}")));
        let seen = h.accepted(API_PATH, Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
    }
    assert!(h.layer.gate().cached_tokens() <= 10, "{} entries", h.layer.gate().cached_tokens());

    let off = Harness::start(Server::Axum, policy(), |issuer| {
        TokenGateBuilder::default().issuer(issuer_config(issuer)).token_cache(None)
    })
    .await;
    let (token, claims) = mint(off.issuer.token());
    for _ in 0..2 {
        let seen = off.accepted(API_PATH, Some(&token)).await;
        assert_principal(&seen, &off.issuer.url(), &claims);
    }
    assert_eq!(off.layer.gate().cached_tokens(), 0);
}

#[tokio::test]
async fn a_cached_token_with_escaped_and_listed_claims_is_seen_the_same_every_time() {
    for server in SERVERS {
        let h = harness(server).await;
        // A subject that JSON must escape, a client id and jti that occur elsewhere in the
        // text, and scopes as an `scp` array, one item of which is not a scope token.
        let (token, claims) = mint(
            h.issuer
                .token()
                .without_claim("scope")
                .sub("ann \"the admin\" \\ o'brien\u{e9}\u{1f600}")
                .claim("client_id", serde_json::json!("read"))
                .claim("jti", serde_json::json!("admin"))
                .claim("scp", serde_json::json!(["read", "admin users", "", "admin"])),
        );
        for round in 0..3 {
            let seen = h.accepted("/admin/users", Some(&token)).await;
            assert_principal(&seen, &h.issuer.url(), &claims);
            assert_eq!(seen.principal().scopes, ["read", "admin"], "{server:?}, round {round}");
        }
        assert_eq!(h.layer.gate().cached_tokens(), 1, "{server:?}: served from the cache");

        // An item with whitespace grants neither of its words.
        let (listed, claims) = mint(
            h.issuer.token().without_claim("scope").claim("scp", serde_json::json!(["read", "x admin"])),
        );
        let seen = h.accepted(API_PATH, Some(&listed)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
        h.refused_at("/admin/users", Some(&listed)).await.assert_insufficient_scope("admin");
    }
}
