//! Introspection (RFC 7662) and the revocation list, end to end: the testkit issuer's
//! introspection endpoint over loopback, a real axum app behind the layer, and time moved by
//! the `ManualClock`.
//!
//! Routes: `/admin/*` is `introspect` (scope `admin` under `/admin/secure/*`), everything else
//! `local`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use serde_json::{Value, json};
use tokengate::clock::{Clock, ManualClock};
use tokengate::introspect::BreakerState;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, ClientAuth, IntrospectionConfig, IssuerConfig, Principal, TokenGateLayer};
use tokengate_testkit::{Endpoint, Fault, Issuer};

struct Setup {
    issuer: Issuer,
    clock: ManualClock,
    layer: TokenGateLayer,
    base: String,
    calls: Arc<AtomicUsize>,
    client: reqwest::Client,
}

fn policy() -> RoutePolicy {
    RoutePolicy::new()
        .rule(Rule::new("/admin/secure/*", Requirement::introspect().with_scopes(["admin"])).unwrap())
        .rule(Rule::new("/admin/*", Requirement::introspect()).unwrap())
}

impl Setup {
    async fn new() -> Setup {
        Self::with(Issuer::builder(), |c| c).await
    }

    async fn with(
        issuer: tokengate_testkit::IssuerBuilder,
        configure: impl FnOnce(IntrospectionConfig) -> IntrospectionConfig,
    ) -> Setup {
        let issuer = issuer.build().await;
        let clock = ManualClock::starting_now();
        issuer.set_now(Some(clock.now()));
        let introspection = IntrospectionConfig::new(
            issuer.introspection_endpoint(),
            issuer.introspection_client_id(),
            issuer.introspection_client_secret(),
        )
        .issuer(issuer.url())
        .timeout(Duration::from_millis(500));
        let layer = TokenGateLayer::builder()
            .issuer(
                IssuerConfig::new(issuer.url())
                    .audience(issuer.audience())
                    .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
                    .jwks_url(issuer.jwks_uri()),
            )
            .introspection(configure(introspection))
            .policy(policy())
            .clock(clock.clone())
            .build()
            .await
            .expect("layer builds");
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = Router::new()
            .route(
                "/{*rest}",
                any(move |p: Principal| async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({
                        "sub": p.subject(),
                        "scopes": p.scopes(),
                        "verified_by": format!("{:?}", p.verified_by()),
                        "iss": p.issuer(),
                    }))
                }),
            )
            .layer(layer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Setup { issuer, clock, layer, base, calls, client: reqwest::Client::new() }
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(secs);
        self.issuer.set_now(Some(self.clock.now()));
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap()
    }

    async fn status(&self, path: &str, token: &str) -> u16 {
        self.get(path, token).await.status().as_u16()
    }

    fn introspections(&self) -> u64 {
        self.issuer.requests(Endpoint::Introspect)
    }

    fn token(&self) -> String {
        self.issuer.token().scope("read admin").expires_in(3600).sign()
    }

    fn metrics(&self) -> &tokengate::introspect::IntrospectionMetrics {
        self.layer.gate().introspector().unwrap().metrics()
    }
}

async fn assert_refused(response: reqwest::Response, status: u16, error: &str) {
    assert_eq!(response.status().as_u16(), status);
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    if status == 401 || status == 403 {
        let challenge = challenge.expect("WWW-Authenticate");
        assert!(challenge.contains(&format!("error=\"{error}\"")), "{challenge}");
    }
    if status == 503 {
        assert!(response.headers().contains_key("retry-after"));
    }
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error);
}

#[tokio::test]
async fn an_active_token_is_confirmed_and_the_inner_service_sees_it() {
    let s = Setup::new().await;
    let response = s.get("/admin/x", &s.token()).await;
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["sub"], "user-1");
    assert_eq!(seen["verified_by"], "Introspection");
    assert_eq!(seen["scopes"], json!(["read", "admin"]));
    assert_eq!(s.introspections(), 1);
    assert_eq!(s.issuer.introspection_auth_methods(), ["basic"]);
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_introspect_routes_after_the_ttl_and_still_passes_local_ones() {
    let s = Setup::new().await;
    let token = s.token();
    assert_eq!(s.status("/admin/x", &token).await, 200);
    s.issuer.revoke_token(&token);
    assert_eq!(s.status("/admin/x", &token).await, 200, "cached for the TTL");
    assert_eq!(s.introspections(), 1);

    s.advance(31);
    let calls = s.calls.load(Ordering::SeqCst);
    assert_refused(s.get("/admin/x", &token).await, 401, "invalid_token").await;
    assert_eq!(s.calls.load(Ordering::SeqCst), calls, "inner service not called");
    assert_eq!(s.introspections(), 2);
    assert_eq!(s.status("/api/x", &token).await, 200, "local routes see revocation only via the list");
}

#[tokio::test]
async fn with_a_zero_ttl_revocation_is_seen_at_once() {
    let s = Setup::with(Issuer::builder(), |c| c.cache_ttl(Duration::ZERO)).await;
    let token = s.token();
    assert_eq!(s.status("/admin/x", &token).await, 200);
    s.issuer.revoke_token(&token);
    assert_refused(s.get("/admin/x", &token).await, 401, "invalid_token").await;
    assert_eq!(s.introspections(), 2);
}

#[tokio::test]
async fn inactive_answers_are_cached_for_the_negative_ttl() {
    let s = Setup::new().await;
    let token = s.token();
    s.issuer.revoke_token(&token);
    for _ in 0..3 {
        assert_eq!(s.status("/admin/x", &token).await, 401);
    }
    assert_eq!(s.introspections(), 1);
    s.advance(6);
    assert_eq!(s.status("/admin/x", &token).await, 401);
    assert_eq!(s.introspections(), 2, "the negative entry expired after 5 s");
}

#[tokio::test]
async fn two_hundred_concurrent_identical_requests_share_one_call() {
    let s = Setup::with(Issuer::builder(), |c| c).await;
    s.issuer.set_fault(Endpoint::Introspect, Fault::Slow(Duration::from_millis(200)));
    let token = s.token();
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let (client, url, token) = (s.client.clone(), format!("{}/admin/x", s.base), token.clone());
            tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap().status() })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert!(s.introspections() <= 2, "{} calls for 200 identical requests", s.introspections());
    assert!(
        s.metrics().coalesced.load(Ordering::Relaxed) + s.metrics().cache_hits.load(Ordering::Relaxed) >= 198
    );
}

#[tokio::test]
async fn a_hanging_endpoint_gives_503_and_local_routes_are_unaffected() {
    let s = Setup::new().await;
    s.issuer.set_fault(Endpoint::Introspect, Fault::Hang);
    let token = s.token();
    let local = {
        let (client, url, token) = (s.client.clone(), format!("{}/api/x", s.base), token.clone());
        tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap().status() })
    };
    assert_refused(s.get("/admin/x", &token).await, 503, "temporarily_unavailable").await;
    assert_eq!(local.await.unwrap(), 200);
    assert_eq!(s.calls.load(Ordering::SeqCst), 1, "only the local request reached the service");
}

#[tokio::test]
async fn outages_are_503_and_never_cached() {
    for fault in [Fault::Status(500), Fault::Garbage, Fault::ActiveNotBool, Fault::NotObject] {
        let s = Setup::new().await;
        let token = s.token();
        s.issuer.set_fault(Endpoint::Introspect, fault.clone());
        assert_refused(s.get("/admin/x", &token).await, 503, "temporarily_unavailable").await;
        s.issuer.set_fault(Endpoint::Introspect, Fault::None);
        assert_eq!(s.status("/admin/x", &token).await, 200, "{fault:?} was not cached");
    }
}

#[tokio::test]
async fn the_breaker_opens_after_five_outages_and_closes_after_a_good_probe() {
    let s = Setup::new().await;
    s.issuer.set_fault(Endpoint::Introspect, Fault::Status(500));
    // Distinct tokens, so no cache or coalescing gets in the way.
    for _ in 0..5 {
        assert_eq!(s.status("/admin/x", &s.token()).await, 503);
    }
    assert_eq!(s.introspections(), 5);
    let introspector = s.layer.gate().introspector().unwrap();
    assert_eq!(introspector.breaker_state(), BreakerState::Open);

    let response = s.get("/admin/x", &s.token()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "10");
    assert_eq!(s.introspections(), 5, "open: answered without calling");

    s.issuer.set_fault(Endpoint::Introspect, Fault::None);
    s.advance(10);
    assert_eq!(introspector.breaker_state(), BreakerState::HalfOpen);
    assert_eq!(s.status("/admin/x", &s.token()).await, 200, "the probe goes through");
    assert_eq!(introspector.breaker_state(), BreakerState::Closed);
    assert_eq!(s.metrics().breaker_opens.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn opaque_tokens_pass_introspect_routes_and_are_refused_on_local_ones() {
    let s = Setup::new().await;
    let opaque = s.issuer.opaque_token().sub("svc-7").scope("read admin").issue();
    let response = s.get("/admin/x", &opaque).await;
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["sub"], "svc-7");
    assert_eq!(seen["iss"], s.issuer.url());

    let calls = s.calls.load(Ordering::SeqCst);
    assert_refused(s.get("/api/x", &opaque).await, 401, "invalid_token").await;
    assert_eq!(s.calls.load(Ordering::SeqCst), calls);
    assert_eq!(s.introspections(), 1, "the local route never asked the issuer");
}

#[tokio::test]
async fn scopes_from_the_answer_override_the_token() {
    let s = Setup::new().await;
    s.issuer.set_introspection_override(Some(json!({"scope": "read"})));
    let token = s.token(); // the token itself says "read admin"
    let response = s.get("/admin/secure/x", &token).await;
    assert_eq!(response.status(), 403);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("scope=\"admin\""));
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn active_answers_for_another_issuer_audience_or_past_expiry_are_inactive() {
    for members in
        [json!({"iss": "https://other.example.com"}), json!({"aud": "someone-else"}), json!({"exp": 1})]
    {
        let s = Setup::new().await;
        s.issuer.set_introspection_override(Some(members.clone()));
        assert_refused(s.get("/admin/x", &s.token()).await, 401, "invalid_token").await;
        assert_eq!(s.calls.load(Ordering::SeqCst), 0, "{members}");
    }
}

#[tokio::test]
async fn a_forged_jwt_is_refused_before_any_introspection_call() {
    let s = Setup::new().await;
    assert_refused(s.get("/admin/x", &s.issuer.token().sign_with_foreign_key()).await, 401, "invalid_token")
        .await;
    assert_eq!(s.introspections(), 0);
}

#[tokio::test]
async fn client_secret_post_and_form_encoded_basic_credentials_work() {
    let s = Setup::with(Issuer::builder(), |c| c.client_auth(ClientAuth::ClientSecretPost)).await;
    assert_eq!(s.status("/admin/x", &s.token()).await, 200);
    assert_eq!(s.issuer.introspection_auth_methods(), ["post"]);

    // ':' and '+' and '%' must be form-urlencoded before Base64 (RFC 6749 §2.3.1).
    let s = Setup::with(Issuer::builder().introspection_client("gate:way", "a+b%41"), |c| c).await;
    assert_eq!(s.status("/admin/x", &s.token()).await, 200);
    assert_eq!(s.issuer.introspection_auth_methods(), ["basic"]);
}

#[tokio::test]
async fn wrong_client_credentials_are_an_outage_not_a_verdict() {
    let issuer = Issuer::builder().introspection_client("gateway", "the-real-secret").build().await;
    let layer = TokenGateLayer::builder()
        .issuer(
            IssuerConfig::new(issuer.url())
                .audience(issuer.audience())
                .algorithms([Algorithm::RS256])
                .jwks_url(issuer.jwks_uri()),
        )
        .introspection(
            IntrospectionConfig::new(issuer.introspection_endpoint(), "gateway", "wrong")
                .issuer(issuer.url()),
        )
        .policy(policy())
        .build()
        .await
        .unwrap();
    let token = issuer.token().sign();
    let result = layer.gate().authorize(&http::Method::GET, "/admin/x", &bearer(&token)).await;
    assert!(matches!(result, Err(tokengate::AuthError::Unavailable { .. })), "{result:?}");
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    headers
}

#[tokio::test]
async fn the_revocation_list_refuses_by_jti_on_local_routes() {
    let s = Setup::new().await;
    let token = s.issuer.token().claim("jti", json!("token-42")).expires_in(3600).sign();
    let other = s.token();
    assert_eq!(s.status("/api/x", &token).await, 200);
    s.layer
        .gate()
        .revocations()
        .revoke_token(&s.issuer.url(), "token-42", Some(s.clock.now() + 3600))
        .unwrap();
    assert_refused(s.get("/api/x", &token).await, 401, "invalid_token").await;
    assert_refused(s.get("/admin/x", &token).await, 401, "invalid_token").await;
    assert_eq!(s.status("/api/x", &other).await, 200, "other tokens are unaffected");
    assert_eq!(s.introspections(), 0, "the list refused before introspection");
}

#[tokio::test]
async fn the_revocation_list_refuses_a_subjects_older_tokens_on_local_routes() {
    let s = Setup::new().await;
    let old = s.issuer.token().sub("alice").expires_in(3600).sign();
    let bob = s.issuer.token().sub("bob").expires_in(3600).sign();
    s.layer.gate().revocations().revoke_subject(&s.issuer.url(), "alice", None).unwrap();
    let response = s.get("/api/x", &old).await;
    let description = response.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert_refused(response, 401, "invalid_token").await;
    assert!(description.contains("revoked"), "{description}");
    assert_eq!(s.status("/api/x", &bob).await, 200);

    s.advance(1);
    let fresh = s.issuer.token().sub("alice").expires_in(3600).sign();
    assert_eq!(s.status("/api/x", &fresh).await, 200, "a token issued after the cut-off passes");
}
