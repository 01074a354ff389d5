//! The local revocation list over time: a token is accepted until its `exp` plus its issuer's
//! leeway, so a revocation must hold as long — by `jti`, by subject ("log out everywhere") and
//! when the token is revoked while already inside its leeway. Over loopback, time moved by the
//! clock.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokengate::TokenGateBuilder;
use tokengate::policy::RoutePolicy;
use tokengate::revocation::RevocationList;
use tokengate_tests::{API_PATH, Harness, SERVERS, T0, issuer_config};

/// A token revoked by `jti` until its `exp` (what the gateway's revoke-by-value does) stays
/// refused through the 30 s leeway after `exp`, until the token itself is dead.
#[tokio::test]
async fn a_revoked_jti_stays_revoked_through_the_leeway_after_exp() {
    for server in SERVERS {
        let h = Harness::start(server, RoutePolicy::new(), |i| {
            TokenGateBuilder::default().issuer(issuer_config(i))
        })
        .await;
        let token = h.issuer.token().claim("jti", json!("j-1")).expires_in(120).sign();
        h.accepted(API_PATH, Some(&token)).await;
        h.layer.gate().revocations().revoke_token(&h.issuer.url(), "j-1", Some(T0 + 120)).unwrap();
        h.refused(&token).await.assert_invalid_token("the token has been revoked");
        h.advance(120); // now = exp: still valid for the leeway
        h.refused(&token).await.assert_invalid_token("the token has been revoked");
        h.advance(29);
        h.refused(&token).await.assert_invalid_token("the token has been revoked");
        h.advance(1); // exp + leeway: dead anyway
        h.refused(&token).await.assert_invalid_token("the token has expired");
    }
}

/// "Every token of `sub` issued before T": the entry ends at T + L (the list's maximum token
/// lifetime), and a token issued at T that lives exactly L is accepted until T + L + leeway.
#[tokio::test]
async fn a_revoked_subjects_token_stays_revoked_through_the_leeway() {
    const L: i64 = 3600;
    let (issuer, clock) = tokengate_tests::start_issuer().await;
    let list = RevocationList::with_settings(Arc::new(clock.clone()), 1000, Duration::from_secs(L as u64));
    let layer = tokengate_tests::build_layer(
        TokenGateBuilder::default().issuer(issuer_config(&issuer)).revocation_list(list.clone()),
        &clock,
        RoutePolicy::new(),
    )
    .await;
    let h = Harness::serve(tokengate_tests::Server::Hyper, issuer, clock, layer).await;
    let token = h.issuer.token().sub("alice").expires_in(L).sign(); // iat = T0, exp = T0 + L
    h.accepted(API_PATH, Some(&token)).await;
    list.revoke_subject(&h.issuer.url(), "alice", None).unwrap(); // T = T0
    h.refused(&token).await.assert_invalid_token("the token has been revoked");
    h.advance(L + 29); // past the entry's T + L, inside the token's leeway
    h.refused(&token).await.assert_invalid_token("the token has been revoked");
    // A token issued after T is not the entry's.
    let fresh = h.issuer.token().sub("alice").expires_in(60).sign();
    h.accepted(API_PATH, Some(&fresh)).await;
}

/// Revoking a token that is past its `exp` but inside its leeway (still accepted) takes effect:
/// the entry is kept, and the token is refused from the next request.
#[tokio::test]
async fn revoking_a_token_inside_its_leeway_takes_effect() {
    for server in SERVERS {
        let h = Harness::start(server, RoutePolicy::new(), |i| {
            TokenGateBuilder::default().issuer(issuer_config(i))
        })
        .await;
        let token = h.issuer.token().claim("jti", json!("j-2")).expires_in(120).sign();
        h.advance(125); // past exp, inside the 30 s leeway
        h.accepted(API_PATH, Some(&token)).await;
        let principal = h.layer.gate().verify_token(&token).await.expect("still valid");
        let revocations = h.layer.gate().revocations();
        revocations.revoke_token(principal.issuer(), "j-2", principal.expires_at()).expect("accepted");
        assert!(!revocations.entries().is_empty(), "the revocation the caller was told of is in force");
        h.refused(&token).await.assert_invalid_token("the token has been revoked");
    }
}
