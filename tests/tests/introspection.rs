//! Introspection (RFC 7662) and the revocation list, end to end: the testkit issuer's
//! introspection endpoint over loopback, a real axum app behind the layer, and time moved by
//! the `ManualClock`.
//!
//! Routes: `/admin/*` is `introspect` (scope `admin` under `/admin/secure/*`), everything else
//! `local`.
//!
//! Waiting is for events (a call arriving at the issuer), bounded by a generous deadline that
//! only turns a hang into a failure; no assertion depends on how long anything takes.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use serde_json::{Value, json};
use tokengate::clock::{Clock, ManualClock};
use tokengate::introspect::BreakerState;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::revocation::RevocationList;
use tokengate::{
    Algorithm, ClientAuth, IntrospectionConfig, IssuerConfig, Principal, TokenGateBuilder, TokenGateLayer,
};
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
        let introspection = configure(introspection_at(&issuer, issuer.introspection_endpoint()));
        Self::custom(issuer, introspection, |_, builder| builder).await
    }

    /// The testkit issuer (JWKS by URL), `introspection`, and whatever `extra` adds to the
    /// builder (it gets the clock the layer will use).
    async fn custom(
        issuer: Issuer,
        introspection: IntrospectionConfig,
        extra: impl FnOnce(&ManualClock, TokenGateBuilder) -> TokenGateBuilder,
    ) -> Setup {
        let clock = ManualClock::starting_now();
        issuer.set_now(Some(clock.now()));
        let builder = TokenGateLayer::builder()
            .issuer(issuer_config(&issuer))
            .introspection(introspection)
            .policy(policy())
            .clock(clock.clone());
        let layer = extra(&clock, builder).build().await.expect("layer builds");
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

    fn breaker(&self) -> BreakerState {
        self.layer.gate().introspector().unwrap().breaker_state()
    }

    /// Opens the breaker: five outages, each on a fresh token so no cache or coalescing helps.
    async fn open_breaker(&self) {
        self.issuer.set_fault(Endpoint::Introspect, Fault::Status(500));
        let before = self.introspections();
        for _ in 0..5 {
            assert_eq!(self.status("/admin/x", &self.token()).await, 503);
        }
        assert_eq!(self.introspections(), before + 5);
        assert_eq!(self.breaker(), BreakerState::Open);
    }
}

/// The testkit issuer as the layer trusts it: JWKS by URL, its audience, three algorithms.
fn issuer_config(issuer: &Issuer) -> IssuerConfig {
    IssuerConfig::new(issuer.url())
        .audience(issuer.audience())
        .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
        .jwks_url(issuer.jwks_uri())
}

/// Introspection at `endpoint` with `issuer`'s client credentials, bound to `issuer`, 500 ms
/// timeout.
fn introspection_at(issuer: &Issuer, endpoint: String) -> IntrospectionConfig {
    IntrospectionConfig::new(endpoint, issuer.introspection_client_id(), issuer.introspection_client_secret())
        .issuer(issuer.url())
        .timeout(Duration::from_millis(500))
}

/// Waits (bounded) until `done` holds; the condition is an event, not a time.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The layer's answer body and `WWW-Authenticate`, for a refused request.
async fn description(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap();
    (status, body["error_description"].as_str().unwrap_or_default().to_owned(), challenge)
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
    assert_eq!(s.issuer.max_introspections_in_flight(), 1, "never two calls open at once");
    assert!(
        s.metrics().coalesced.load(Ordering::Relaxed) + s.metrics().cache_hits.load(Ordering::Relaxed) >= 198
    );
}

#[tokio::test]
async fn a_hanging_endpoint_gives_503_while_the_issuer_still_holds_the_call() {
    let s = Setup::new().await;
    s.issuer.set_fault(Endpoint::Introspect, Fault::Hang);
    let token = s.token();
    let admin = {
        let (client, url, token) = (s.client.clone(), format!("{}/admin/x", s.base), token.clone());
        tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap() })
    };
    // The call reached the issuer, which holds it and will never answer…
    until("the call to arrive at the issuer", || s.issuer.introspections_in_flight() == 1).await;
    // …so the 503 can only be the layer's own timeout, not an answer.
    assert_refused(admin.await.unwrap(), 503, "temporarily_unavailable").await;
    assert_eq!(s.introspections(), 1);
    assert_eq!(s.issuer.max_introspections_in_flight(), 1);
    assert_eq!(s.calls.load(Ordering::SeqCst), 0, "the inner service was not reached");
    // The abandoned call is not leaked: the layer closed it.
    until("the issuer to see the call abandoned", || s.issuer.introspections_in_flight() == 0).await;
    assert_eq!(s.status("/api/x", &token).await, 200, "local routes are unaffected");
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
async fn a_failed_probe_reopens_the_breaker_and_a_good_probe_closes_it() {
    let s = Setup::new().await;
    s.open_breaker().await;
    s.advance(10);
    assert_eq!(s.breaker(), BreakerState::HalfOpen);

    // The endpoint still fails: the one probe is the only call, and the breaker opens again.
    assert_refused(s.get("/admin/x", &s.token()).await, 503, "temporarily_unavailable").await;
    assert_eq!(s.introspections(), 6, "one probe");
    assert_eq!(s.breaker(), BreakerState::Open);
    let response = s.get("/admin/x", &s.token()).await;
    assert_eq!(response.headers()["retry-after"], "10", "a full open period again");
    assert_refused(response, 503, "temporarily_unavailable").await;
    assert_eq!(s.introspections(), 6, "open again: no call");

    s.issuer.set_fault(Endpoint::Introspect, Fault::None);
    s.advance(10);
    assert_eq!(s.status("/admin/x", &s.token()).await, 200, "the next probe succeeds");
    assert_eq!(s.breaker(), BreakerState::Closed);
    assert_eq!(s.status("/admin/x", &s.token()).await, 200);
    assert_eq!(s.introspections(), 8);
    assert_eq!(s.metrics().breaker_opens.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_probe_abandoned_by_its_client_does_not_leave_the_breaker_stuck() {
    let s = Setup::new().await;
    s.open_breaker().await;
    s.advance(10);
    // The probe hangs at the issuer, and its client gives up: the request future is dropped
    // in the middle of the call.
    s.issuer.set_fault(Endpoint::Introspect, Fault::Hang);
    let probe = {
        let (gate, token) = (s.layer.gate().clone(), s.token());
        tokio::spawn(async move { gate.authorize(&http::Method::GET, "/admin/x", &bearer(&token)).await })
    };
    until("the probe to arrive at the issuer", || s.issuer.introspections_in_flight() == 1).await;
    probe.abort();
    assert!(probe.await.unwrap_err().is_cancelled());
    assert_eq!(s.breaker(), BreakerState::HalfOpen, "no verdict was reached");

    // The next request may probe; it succeeds and closes the breaker.
    s.issuer.set_fault(Endpoint::Introspect, Fault::None);
    assert_eq!(s.status("/admin/x", &s.token()).await, 200, "not stuck half-open");
    assert_eq!(s.introspections(), 7, "the abandoned probe and the new one");
    assert_eq!(s.breaker(), BreakerState::Closed);
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
async fn an_answers_scope_is_split_on_spaces_only() {
    let s = Setup::new().await;
    s.issuer.set_introspection_override(Some(json!({"scope": "read\tadmin"})));
    let response = s.get("/admin/secure/x", &s.token()).await;
    assert_eq!(response.status(), 403, "\"read\\tadmin\" is no scope at all, not read and admin");
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

/// A second testkit issuer trusted by the same layer, with its own audience.
async fn second_issuer(clock: &ManualClock) -> Issuer {
    let other = Issuer::builder().audience("https://b.example.com").build().await;
    other.set_now(Some(clock.now()));
    other
}

#[tokio::test]
async fn another_issuers_jwt_is_never_sent_to_this_issuers_endpoint() {
    let clock_for_b = ManualClock::starting_now();
    let b = second_issuer(&clock_for_b).await;
    let b_config = issuer_config(&b);
    let a = Issuer::start().await;
    let s = Setup::custom(a.clone(), introspection_at(&a, a.introspection_endpoint()), |_, builder| {
        builder.issuer(b_config)
    })
    .await;
    let b_token = b.token().scope("read admin").expires_in(3600).sign();
    assert_eq!(s.status("/api/x", &b_token).await, 200, "a valid token of a trusted issuer");
    let calls = s.calls.load(Ordering::SeqCst);

    let response = s.get("/admin/x", &b_token).await;
    let (status, description, challenge) = description(response).await;
    assert_eq!(status, 401, "retrying cannot help, so not 503");
    assert_eq!(description, "the token's issuer cannot be introspected here");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(s.introspections(), 0, "issuer A's endpoint was not asked about B's token");
    assert_eq!(b.requests(Endpoint::Introspect), 0);
    assert_eq!(s.metrics().calls.load(Ordering::Relaxed), 0);
    assert_eq!(s.calls.load(Ordering::SeqCst), calls, "the inner service was not reached");

    assert_eq!(s.status("/admin/x", &s.token()).await, 200, "A's own tokens are introspected");
    assert_eq!(s.introspections(), 1);
}

#[tokio::test]
async fn answers_are_checked_against_the_audiences_of_the_endpoints_issuer_only() {
    let a = Issuer::start().await;
    let b = second_issuer(&ManualClock::starting_now()).await;
    let b_config = issuer_config(&b);
    let s = Setup::custom(a.clone(), introspection_at(&a, a.introspection_endpoint()), |_, builder| {
        builder.issuer(b_config)
    })
    .await;
    assert_eq!(s.layer.gate().introspector().unwrap().audiences(), [a.audience()]);
    // An answer for B's audience says the token is not for A's API.
    a.set_introspection_override(Some(json!({"aud": b.audience()})));
    assert_refused(s.get("/admin/x", &s.token()).await, 401, "invalid_token").await;
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
    a.set_introspection_override(Some(json!({"aud": [b.audience(), a.audience()]})));
    assert_eq!(s.status("/admin/x", &s.token()).await, 200, "one of A's audiences suffices");
}

#[tokio::test]
async fn the_endpoints_issuer_defaults_to_the_only_one_and_opaque_answers_must_name_it() {
    let issuer = Issuer::start().await;
    let endpoint = issuer.introspection_endpoint();
    let unbound = IntrospectionConfig::new(
        endpoint,
        issuer.introspection_client_id(),
        issuer.introspection_client_secret(),
    );
    let s = Setup::custom(issuer, unbound, |_, builder| builder).await;
    assert_eq!(s.layer.gate().introspector().unwrap().issuer(), s.issuer.url());

    let opaque = s.issuer.opaque_token().sub("svc-7").scope("read").issue();
    let response = s.get("/admin/x", &opaque).await;
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["iss"], s.issuer.url());

    // An answer naming any other issuer is not accepted for an opaque token.
    s.issuer.set_introspection_override(Some(json!({"iss": "https://evil.example.com"})));
    let other = s.issuer.opaque_token().sub("svc-8").issue();
    let calls = s.calls.load(Ordering::SeqCst);
    assert_refused(s.get("/admin/x", &other).await, 401, "invalid_token").await;
    assert_eq!(s.calls.load(Ordering::SeqCst), calls, "the inner service was not reached");
}

#[tokio::test]
async fn the_build_refuses_an_ambiguous_or_unknown_introspection_issuer() {
    let a = Issuer::start().await;
    let b = Issuer::builder().audience("https://b.example.com").build().await;
    let build = |introspection: IntrospectionConfig| {
        TokenGateLayer::builder()
            .issuer(issuer_config(&a))
            .issuer(issuer_config(&b))
            .introspection(introspection)
            .policy(policy())
            .build()
    };
    let unbound =
        || IntrospectionConfig::new(a.introspection_endpoint(), a.introspection_client_id(), "secret");
    let error = build(unbound()).await.unwrap_err().to_string();
    assert!(error.starts_with("introspection: several issuers are configured"), "{error}");
    let error = build(unbound().issuer("https://not-configured.example.com")).await.unwrap_err().to_string();
    assert!(
        error.contains("\"https://not-configured.example.com\" is not one of the configured issuers"),
        "{error}"
    );
    assert!(build(unbound().issuer(b.url())).await.is_ok(), "naming either issuer builds");
}

#[tokio::test]
async fn a_client_secret_that_cannot_be_sent_is_refused_at_build() {
    let issuer = Issuer::start().await;
    for (secret, why) in [
        (vec![0xff, 0xfe, b'x'], "introspection: client_secret is not valid UTF-8"),
        (Vec::new(), "introspection: client_secret is empty"),
    ] {
        let error = TokenGateLayer::builder()
            .issuer(issuer_config(&issuer))
            .introspection(IntrospectionConfig::new(issuer.introspection_endpoint(), "gateway", secret))
            .build()
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), why);
    }
}

/// A server that answers every request with `307 Temporary Redirect` to `location`, counting
/// the requests.
async fn redirector(location: String) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(move || {
        let (counter, location) = (counter.clone(), location.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (axum::http::StatusCode::TEMPORARY_REDIRECT, [(axum::http::header::LOCATION, location)])
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test]
async fn a_redirect_is_an_outage_and_the_token_is_never_re_sent() {
    let target = tokengate_tests::CountingServer::start().await;
    let (endpoint, hits) = redirector(format!("{}/introspect", target.url)).await;
    let issuer = Issuer::start().await;
    let config = introspection_at(&issuer, endpoint).client_auth(ClientAuth::ClientSecretPost);
    let s = Setup::custom(issuer, config, |_, builder| builder).await;
    let token = s.token();
    assert_refused(s.get("/admin/x", &token).await, 503, "temporarily_unavailable").await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the endpoint was asked once");
    assert_eq!(target.hits(), 0, "the redirect target received nothing");
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
    assert_eq!(s.status("/api/x", &token).await, 200, "local routes are unaffected");
}

#[tokio::test]
async fn an_answer_that_came_through_a_redirect_is_refused_even_with_a_following_client() {
    // A client of the user's that follows redirects (documented as their choice): the
    // redirect leads to the real issuer, which says "active" — still not a verdict.
    let issuer = Issuer::start().await;
    let (endpoint, hits) = redirector(issuer.introspection_endpoint()).await;
    let following =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::limited(3)).build().unwrap();
    let config =
        introspection_at(&issuer, endpoint).client_auth(ClientAuth::ClientSecretPost).http_client(following);
    let s = Setup::custom(issuer, config, |_, builder| builder).await;
    assert_refused(s.get("/admin/x", &s.token()).await, 503, "temporarily_unavailable").await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(s.introspections(), 1, "this client did follow the redirect");
    assert_eq!(s.issuer.introspection_auth_methods(), ["post"], "and re-sent the secret: hence the default");
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_cache_never_outlives_the_jwt_even_when_the_answer_says_later() {
    let s = Setup::new().await; // cache_ttl 30 s
    let token = s.issuer.token().scope("read").expires_in(10).sign();
    s.issuer.set_introspection_override(Some(json!({"exp": s.clock.now() + 3600})));
    assert_eq!(s.status("/admin/x", &token).await, 200);
    s.advance(9);
    assert_eq!(s.status("/admin/x", &token).await, 200);
    assert_eq!(s.introspections(), 1, "cached until the token's exp");
    s.issuer.revoke_token(&token);
    s.advance(2); // past the token's exp, inside the 30 s leeway of local verification
    assert_refused(s.get("/admin/x", &token).await, 401, "invalid_token").await;
    assert_eq!(s.introspections(), 2, "the entry ended at the token's exp, not the answer's");
}

#[tokio::test]
async fn the_cache_never_outlives_the_answers_exp() {
    let s = Setup::new().await;
    let token = s.token(); // exp in an hour
    s.issuer.set_introspection_override(Some(json!({"exp": s.clock.now() + 5})));
    assert_eq!(s.status("/admin/x", &token).await, 200);
    s.advance(6);
    assert_refused(s.get("/admin/x", &token).await, 401, "invalid_token").await;
    assert_eq!(s.introspections(), 2, "asked again once the answer's exp passed");
}

#[tokio::test]
async fn with_a_zero_ttl_inactive_answers_are_not_cached_either() {
    let s = Setup::with(Issuer::builder(), |c| c.cache_ttl(Duration::ZERO)).await;
    let token = s.token();
    s.issuer.revoke_token(&token);
    for n in 1..=3 {
        assert_refused(s.get("/admin/x", &token).await, 401, "invalid_token").await;
        assert_eq!(s.introspections(), n, "asked every time");
    }
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_answer_over_the_size_cap_is_an_outage() {
    // Just over the default 64 KiB cap, but otherwise a valid active answer…
    let s = Setup::new().await;
    s.issuer.set_fault(Endpoint::Introspect, Fault::Padded(64 * 1024));
    let token = s.token();
    assert_refused(s.get("/admin/x", &token).await, 503, "temporarily_unavailable").await;
    assert_eq!(s.introspections(), 1);
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
    assert_eq!(s.status("/api/x", &token).await, 200, "local routes are unaffected");

    // …which a larger cap accepts: the cap, not the content, refused it.
    let s = Setup::with(Issuer::builder(), |c| c.max_response_bytes(128 * 1024)).await;
    s.issuer.set_fault(Endpoint::Introspect, Fault::Padded(64 * 1024));
    assert_eq!(s.status("/admin/x", &s.token()).await, 200);
}

#[tokio::test]
async fn a_refused_connection_is_503_with_retry_after_and_local_routes_answer() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }; // dropped: nothing listens there any more
    let issuer = Issuer::start().await;
    let config = introspection_at(&issuer, format!("http://{closed}/introspect"));
    let s = Setup::custom(issuer, config, |_, builder| builder).await;
    let token = s.token();
    let response = s.get("/admin/x", &token).await;
    assert_eq!(response.headers()["retry-after"], "5");
    assert_refused(response, 503, "temporarily_unavailable").await;
    assert_eq!(s.metrics().outages.load(Ordering::Relaxed), 1);
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
    assert_eq!(s.status("/api/x", &token).await, 200);
}

#[tokio::test]
async fn the_discovered_introspection_endpoint_is_used_when_none_is_given() {
    let issuer = Issuer::start().await;
    let config = IntrospectionConfig::discovered(
        issuer.url(),
        issuer.introspection_client_id(),
        issuer.introspection_client_secret(),
    );
    let s = Setup::custom(issuer, config, |_, builder| builder).await;
    let metadata = s.issuer.requests(Endpoint::Discovery) + s.issuer.requests(Endpoint::AuthServerMetadata);
    assert!(metadata >= 1, "the builder read the issuer's metadata");
    assert_eq!(s.layer.gate().introspector().unwrap().endpoint(), s.issuer.introspection_endpoint());
    assert_eq!(s.status("/admin/x", &s.token()).await, 200);
    assert_eq!(s.introspections(), 1, "the call went to the discovered endpoint");
}

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn outage_warnings_are_logged_inside_the_calls_span() {
    let s = Setup::new().await;
    s.issuer.set_fault(Endpoint::Introspect, Fault::Status(500));
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let token = s.token();
    {
        // On this thread only, around a call made on this thread.
        let _guard = tracing::subscriber::set_default(subscriber);
        let result = s.layer.gate().authorize(&http::Method::GET, "/admin/x", &bearer(&token)).await;
        assert!(matches!(result, Err(tokengate::AuthError::Unavailable { .. })), "{result:?}");
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs.lines().find(|l| l.contains("introspection failed")).unwrap_or_else(|| panic!("{logs}"));
    let span = format!("introspect{{endpoint={} outcome=\"outage\"}}", s.issuer.introspection_endpoint());
    assert!(line.contains(&span), "the warning carries the call's span: {line}");
    assert!(!logs.contains(&token), "never the token");
}

#[tokio::test]
async fn a_token_without_iat_is_refused_while_its_subjects_revocation_lives() {
    let s = Setup::new().await;
    let without_iat = s.issuer.token().sub("alice").without_claim("iat").expires_in(3600).sign();
    assert_eq!(s.status("/api/x", &without_iat).await, 200);
    s.layer.gate().revocations().revoke_subject(&s.issuer.url(), "alice", None).unwrap();
    let calls = s.calls.load(Ordering::SeqCst);
    let (status, description, challenge) = description(s.get("/api/x", &without_iat).await).await;
    assert_eq!((status, description.as_str()), (401, "the token has been revoked"));
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(s.calls.load(Ordering::SeqCst), calls, "the inner service was not reached");

    s.advance(1);
    let fresh = s.issuer.token().sub("alice").expires_in(3600).sign();
    assert_eq!(s.status("/api/x", &fresh).await, 200, "an iat after the cut-off proves it is newer");
}

#[tokio::test]
async fn a_token_living_beyond_the_maximum_lifetime_is_refused_after_its_subjects_entry_expires() {
    const MAX_LIFETIME: i64 = 3600;
    let issuer = Issuer::start().await;
    let config = introspection_at(&issuer, issuer.introspection_endpoint());
    let s = Setup::custom(issuer, config, |clock, builder| {
        builder.revocation_list(RevocationList::with_settings(
            Arc::new(clock.clone()),
            1_000,
            Duration::from_secs(MAX_LIFETIME as u64),
        ))
    })
    .await;
    // Three hours: longer than the list's maximum token lifetime.
    let long = s.issuer.token().sub("alice").expires_in(3 * MAX_LIFETIME).sign();
    let bob = s.issuer.token().sub("bob").expires_in(3 * MAX_LIFETIME).sign();
    s.layer.gate().revocations().revoke_subject(&s.issuer.url(), "alice", None).unwrap();
    assert_refused(s.get("/api/x", &long).await, 401, "invalid_token").await;

    // The entry ends at T + L and is kept for the largest leeway after it.
    let kept = tokengate::revocation::KEPT_PAST_EXPIRY.as_secs() as i64;
    s.advance(MAX_LIFETIME + kept + 1);
    assert!(s.layer.gate().revocations().entries().is_empty(), "alice's entry has expired");
    let calls = s.calls.load(Ordering::SeqCst);
    assert_refused(s.get("/api/x", &long).await, 401, "invalid_token").await;
    assert_refused(s.get("/admin/x", &long).await, 401, "invalid_token").await;
    assert_eq!(s.calls.load(Ordering::SeqCst), calls, "the inner service was not reached");
    // The documented price: over-long tokens issued before the cut-off are refused whoever
    // holds them, until their clients fetch new ones.
    assert_refused(s.get("/api/x", &bob).await, 401, "invalid_token").await;
    let fresh = s.issuer.token().sub("alice").expires_in(3 * MAX_LIFETIME).sign();
    assert_eq!(s.status("/api/x", &fresh).await, 200, "issued after the cut-off");
    let short = s.issuer.token().sub("bob").expires_in(MAX_LIFETIME).sign();
    assert_eq!(s.status("/api/x", &short).await, 200);
    assert_eq!(s.introspections(), 0, "the list refused before introspection");
}
