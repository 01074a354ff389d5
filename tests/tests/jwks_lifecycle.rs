//! Key-set lifecycle against the testkit issuer over loopback: rotation, removal, outages of
//! the JWKS endpoint, unknown-`kid` floods, discovery, `Cache-Control`/`ETag`, not-ready start,
//! maximum staleness, and the refresher stopping with the layer. Time moves through the
//! `ManualClock`; the tests wait for events (a fetch arriving, a swap), never for time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokengate::clock::{Clock, ManualClock};
use tokengate::{Algorithm, IssuerConfig, Principal, TokenGateLayer};
use tokengate_testkit::{Endpoint, Fault, Issuer, KeyKind};

/// A token lifetime long enough to survive every clock move in these tests.
const LONG_TTL: i64 = 7 * 24 * 3600;

struct Setup {
    issuer: Issuer,
    clock: ManualClock,
    layer: TokenGateLayer,
    base: String,
    calls: Arc<AtomicUsize>,
    client: reqwest::Client,
}

impl Setup {
    /// An issuer publishing its JWKS with `max-age`, and a layer fetching it from the URL.
    async fn new(max_age: u64) -> Setup {
        Self::with(max_age, |i, c| c.jwks_url(i.jwks_uri())).await
    }

    async fn with(max_age: u64, configure: impl FnOnce(&Issuer, IssuerConfig) -> IssuerConfig) -> Setup {
        Self::try_new(max_age, configure, true, |_| {}).await.expect("layer builds")
    }

    async fn try_new(
        max_age: u64,
        configure: impl FnOnce(&Issuer, IssuerConfig) -> IssuerConfig,
        fail_fast: bool,
        before_build: impl FnOnce(&Issuer),
    ) -> Result<Setup, tokengate::BuildError> {
        let issuer = Issuer::builder().rsa_only().jwks_max_age(max_age).build().await;
        let clock = ManualClock::starting_now();
        issuer.set_now(Some(clock.now()));
        before_build(&issuer);
        let config =
            IssuerConfig::new(issuer.url()).audience(issuer.audience()).algorithms([Algorithm::RS256]);
        let layer = TokenGateLayer::builder()
            .issuer(configure(&issuer, config))
            .clock(clock.clone())
            .fail_fast(fail_fast)
            .build()
            .await?;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = Router::new()
            .route(
                "/r",
                get(move |p: Principal| async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    p.subject().unwrap_or_default().to_string()
                }),
            )
            .layer(layer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Setup { issuer, clock, layer, base, calls, client: reqwest::Client::new() })
    }

    fn jwks_fetches(&self) -> u64 {
        self.issuer.requests(Endpoint::Jwks)
    }

    fn status(&self) -> tokengate::jwks::KeyStoreStatus {
        self.layer.gate().issuers()[0].store().status(self.clock.now())
    }

    /// Moves both clocks (ours and the issuer's minting clock) forward.
    fn advance(&self, secs: i64) {
        self.clock.advance(secs);
        self.issuer.set_now(Some(self.clock.now()));
    }

    async fn get(&self, token: &str) -> reqwest::Response {
        self.client.get(format!("{}/r", self.base)).bearer_auth(token).send().await.unwrap()
    }

    fn token_for_kid(&self, kid: &str) -> String {
        self.issuer.token().kid_key(kid).expires_in(LONG_TTL).sign()
    }

    /// Waits (bounded) until `done` holds; the condition is an event, not a time.
    async fn until(&self, what: &str, done: impl Fn(&Setup) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_exactly_one_fetch() {
    let s = Setup::new(600).await;
    assert_eq!(s.jwks_fetches(), 1, "the builder loads the keys once");
    let new_kid = s.issuer.rotate(KeyKind::Rsa);
    let token = s.token_for_kid(&new_kid);

    let response = s.get(&token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "user-1");
    assert_eq!(s.jwks_fetches(), 2, "one unknown-kid fetch");
    assert_eq!(s.status().unknown_kid_refreshes, 1);

    assert_eq!(s.get(&token).await.status(), 200);
    assert_eq!(s.jwks_fetches(), 2, "the new kid is now known: no further fetch");
}

#[tokio::test]
async fn a_key_removed_at_the_issuer_stops_verifying_after_the_background_refresh() {
    let s = Setup::new(600).await;
    let old_kid = s.issuer.kid(KeyKind::Rsa);
    let old_token = s.token_for_kid(&old_kid);
    assert_eq!(s.get(&old_token).await.status(), 200);

    s.issuer.rotate(KeyKind::Rsa);
    s.issuer.remove_key(&old_kid);
    let generation = s.status().generation;
    s.advance(601);
    s.until("the background refresh swaps the set", |s| s.status().generation > generation).await;
    assert_eq!(s.jwks_fetches(), 2);

    let calls = s.calls.load(Ordering::SeqCst);
    let response = s.get(&old_token).await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(s.calls.load(Ordering::SeqCst), calls, "the inner service was not called");
}

async fn known_kids_survive(fault: Fault) {
    let s = Setup::with(600, |i, c| c.jwks_url(i.jwks_uri()).fetch_timeout(Duration::from_secs(30))).await;
    let token = s.token_for_kid(&s.issuer.kid(KeyKind::Rsa));
    assert_eq!(s.get(&token).await.status(), 200);

    s.issuer.set_fault(Endpoint::Jwks, fault.clone());
    s.advance(601);
    s.until("the background fetch reaches the faulty endpoint", |s| s.jwks_fetches() == 2).await;
    if fault != Fault::Hang {
        s.until("the failure is recorded", |s| s.status().failures == 1).await;
        assert!(s.status().last_error.is_some());
    }
    // While the fetch fails or hangs, known keys keep verifying without waiting for it.
    for _ in 0..20 {
        assert_eq!(s.get(&token).await.status(), 200, "{fault:?}");
    }
    assert!(s.status().ready);
    assert_eq!(s.status().keys, 1, "the last good set is kept");
}

#[tokio::test]
async fn jwks_answering_500_keeps_the_last_good_set() {
    known_kids_survive(Fault::Status(500)).await;
}

#[tokio::test]
async fn jwks_answering_garbage_keeps_the_last_good_set() {
    known_kids_survive(Fault::Garbage).await;
}

#[tokio::test]
async fn jwks_answering_an_empty_set_keeps_the_last_good_set() {
    known_kids_survive(Fault::EmptyKeys).await;
}

#[tokio::test]
async fn jwks_hanging_does_not_delay_known_kids() {
    known_kids_survive(Fault::Hang).await;
}

#[tokio::test]
async fn a_thousand_random_kids_cost_one_fetch_per_cooldown() {
    let s = Setup::new(600).await;
    let tokens: Vec<String> = (0..1000)
        .map(|i| s.issuer.token().header("kid", serde_json::json!(format!("random-{i}"))).sign())
        .collect();
    for token in &tokens {
        assert_eq!(s.get(token).await.status(), 401);
    }
    assert_eq!(s.jwks_fetches(), 2, "start-up plus one unknown-kid fetch within the 30 s cooldown");
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);

    s.advance(31);
    assert_eq!(s.get(&tokens[0]).await.status(), 401);
    assert_eq!(s.jwks_fetches(), 3, "one more fetch once the cooldown has passed");

    // Known kids were never held up by the flood.
    let good = s.token_for_kid(&s.issuer.kid(KeyKind::Rsa));
    assert_eq!(s.get(&good).await.status(), 200);
}

#[tokio::test]
async fn a_hundred_concurrent_requests_with_a_new_kid_share_one_fetch() {
    let s = Setup::new(600).await;
    let token = s.token_for_kid(&s.issuer.rotate(KeyKind::Rsa));
    let requests = (0..100).map(|_| {
        let (client, url, token) = (s.client.clone(), format!("{}/r", s.base), token.clone());
        tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap().status() })
    });
    for status in futures_join(requests).await {
        assert_eq!(status, 200);
    }
    assert_eq!(s.jwks_fetches(), 2, "exactly one fetch for all hundred");
    assert_eq!(s.calls.load(Ordering::SeqCst), 100);
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn discovery_finds_the_jwks() {
    let s = Setup::with(600, |_, c| c.discover()).await;
    assert_eq!(s.issuer.requests(Endpoint::Discovery), 1);
    let token = s.token_for_kid(&s.issuer.kid(KeyKind::Rsa));
    assert_eq!(s.get(&token).await.status(), 200);
}

#[tokio::test]
async fn discovery_falls_back_to_rfc8414_metadata() {
    let s = Setup::try_new(
        600,
        |_, c| c.discover(),
        true,
        |i| i.set_fault(Endpoint::Discovery, Fault::Status(404)),
    )
    .await
    .unwrap();
    assert_eq!(s.issuer.requests(Endpoint::AuthServerMetadata), 1);
    assert_eq!(s.get(&s.token_for_kid(&s.issuer.kid(KeyKind::Rsa))).await.status(), 200);
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let result = Setup::try_new(
        600,
        |_, c| c.discover(),
        true,
        |i| i.set_fault(Endpoint::Discovery, Fault::WrongIssuer),
    )
    .await;
    let error = result.err().expect("the build must fail").to_string();
    assert!(error.contains("not the configured one"), "{error}");
}

#[tokio::test]
async fn cache_control_max_age_sets_the_refresh_interval_within_bounds() {
    let s = Setup::new(900).await;
    assert_eq!(s.status().next_refresh_at, Some(s.clock.now() + 900));

    let short = Setup::new(10).await;
    assert_eq!(short.status().next_refresh_at, Some(short.clock.now() + 300), "clamped to the 5 min floor");

    let long = Setup::new(30 * 24 * 3600).await;
    assert_eq!(
        long.status().next_refresh_at,
        Some(long.clock.now() + 24 * 3600),
        "clamped to the 24 h ceiling"
    );

    let custom = Setup::with(10, |i, c| {
        c.jwks_url(i.jwks_uri()).refresh_interval_bounds(Duration::from_secs(5), Duration::from_secs(60))
    })
    .await;
    assert_eq!(custom.status().next_refresh_at, Some(custom.clock.now() + 10));
}

#[tokio::test]
async fn etag_turns_an_unchanged_set_into_a_304() {
    let s = Setup::new(600).await;
    s.advance(601);
    s.until("the background refresh", |s| s.status().not_modified == 1).await;
    assert_eq!(s.jwks_fetches(), 2);
    assert_eq!(s.status().generation, 1, "nothing was swapped");
    assert_eq!(s.get(&s.token_for_kid(&s.issuer.kid(KeyKind::Rsa))).await.status(), 200);
}

#[tokio::test]
async fn an_unreachable_issuer_fails_the_build_by_default() {
    let result = Setup::try_new(
        600,
        |i, c| c.jwks_url(i.jwks_uri()),
        true,
        |i| i.set_fault(Endpoint::Jwks, Fault::Status(500)),
    )
    .await;
    let error = result.err().expect("fail fast").to_string();
    assert!(error.contains("HTTP 500"), "{error}");
}

#[tokio::test]
async fn starting_not_ready_answers_503_until_keys_arrive() {
    let s = Setup::try_new(
        600,
        |i, c| c.jwks_url(i.jwks_uri()),
        false,
        |i| i.set_fault(Endpoint::Jwks, Fault::Status(500)),
    )
    .await
    .expect("starts not ready");
    assert!(!s.layer.gate().ready());
    let token = s.token_for_kid(&s.issuer.kid(KeyKind::Rsa));
    let response = s.get(&token).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);

    s.issuer.set_fault(Endpoint::Jwks, Fault::None);
    s.advance(2);
    s.until("a retry loads the keys", |s| s.layer.gate().ready()).await;
    assert_eq!(s.get(&token).await.status(), 200);
}

#[tokio::test]
async fn keys_older_than_the_maximum_staleness_get_503() {
    let s = Setup::with(600, |i, c| c.jwks_url(i.jwks_uri()).max_staleness(Duration::from_secs(900))).await;
    let token = s.token_for_kid(&s.issuer.kid(KeyKind::Rsa));
    assert_eq!(s.get(&token).await.status(), 200);
    s.issuer.set_fault(Endpoint::Jwks, Fault::Status(500));
    s.advance(901);
    s.until("the failed refresh", |s| s.status().failures >= 1).await;
    assert!(s.status().stale);
    let response = s.get(&token).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn the_refresher_stops_when_the_layer_is_dropped() {
    let issuer = Issuer::builder().rsa_only().build().await;
    let layer = TokenGateLayer::builder()
        .issuer(
            IssuerConfig::new(issuer.url())
                .audience(issuer.audience())
                .algorithms([Algorithm::RS256])
                .jwks_url(issuer.jwks_uri()),
        )
        .build()
        .await
        .unwrap();
    let store = Arc::downgrade(layer.gate().issuers()[0].store());
    drop(layer);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.upgrade().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the refresher task still holds the key store");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
