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

// ---------------------------------------------------------------------------------------------
// Redirects: every hop passes the https-or-loopback rule.
// ---------------------------------------------------------------------------------------------

/// A host name that is not loopback by its name; user clients below resolve it to the issuer.
const NAMED_HOST: &str = "idp.example.test";

/// A loopback server that only redirects: `/elsewhere` to a non-loopback plain-http URL,
/// `/named` to the issuer's JWKS under [`NAMED_HOST`], `/hop/{n}` through `n` more hops to
/// `target`. Returns its base URL and its request count.
async fn redirector(target: String, issuer_port: u16) -> (String, Arc<AtomicUsize>) {
    use axum::extract::Path;
    use axum::response::Redirect;
    let hits = Arc::new(AtomicUsize::new(0));
    let (h1, h2, h3) = (hits.clone(), hits.clone(), hits.clone());
    let app = Router::new()
        .route(
            "/elsewhere",
            get(move || async move {
                h1.fetch_add(1, Ordering::SeqCst);
                // Unroutable: a connection attempt would hang until the connect timeout.
                Redirect::to("http://10.255.255.1/jwks")
            }),
        )
        .route(
            "/named",
            get(move || async move {
                h2.fetch_add(1, Ordering::SeqCst);
                Redirect::to(&format!("http://{NAMED_HOST}:{issuer_port}/jwks"))
            }),
        )
        .route(
            "/hop/{n}",
            get(move |Path(n): Path<u32>| async move {
                h3.fetch_add(1, Ordering::SeqCst);
                if n == 0 { Redirect::to(&target) } else { Redirect::to(&format!("/hop/{}", n - 1)) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

fn rs256_config(issuer: &Issuer) -> IssuerConfig {
    IssuerConfig::new(issuer.url()).audience(issuer.audience()).algorithms([Algorithm::RS256])
}

#[tokio::test]
async fn a_redirect_to_plain_http_on_another_host_is_refused_before_connecting() {
    let issuer = Issuer::builder().rsa_only().build().await;
    let (base, hits) = redirector(issuer.jwks_uri(), issuer.addr().port()).await;
    let result = TokenGateLayer::builder()
        .issuer(rs256_config(&issuer).jwks_url(format!("{base}/elsewhere")))
        .build()
        .await;
    let error = result.expect_err("the build must fail").to_string();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the loopback URL itself was fetched");
    assert!(error.contains("redirect refused") && error.contains("plain http"), "{error}");
    // Refused by the redirect policy, not by a failed or timed-out connection to the target.
    assert!(!error.contains("connect") && !error.contains("timed out"), "{error}");
}

#[tokio::test]
async fn up_to_three_loopback_redirects_are_followed_and_a_fourth_is_refused() {
    let issuer = Issuer::builder().rsa_only().build().await;
    let (base, _) = redirector(issuer.jwks_uri(), issuer.addr().port()).await;
    // /hop/2 → /hop/1 → /hop/0 → the JWKS: three redirects.
    let layer = TokenGateLayer::builder()
        .issuer(rs256_config(&issuer).jwks_url(format!("{base}/hop/2")))
        .build()
        .await
        .expect("three redirects are followed");
    assert_eq!(issuer.requests(Endpoint::Jwks), 1);
    let principal = layer.gate().verify_token(&issuer.token().sign()).await.expect("verifies");
    assert_eq!(principal.subject(), Some("user-1"));

    let result = TokenGateLayer::builder()
        .issuer(rs256_config(&issuer).jwks_url(format!("{base}/hop/3")))
        .build()
        .await;
    let error = result.expect_err("a fourth redirect is refused").to_string();
    assert!(error.contains("more than 3 redirects"), "{error}");
    assert_eq!(issuer.requests(Endpoint::Jwks), 1, "the JWKS was not reached through four hops");
}

#[tokio::test]
async fn a_user_client_that_followed_a_redirect_to_plain_http_gets_the_document_refused() {
    let issuer = Issuer::builder().rsa_only().build().await;
    let (base, _) = redirector(issuer.jwks_uri(), issuer.addr().port()).await;
    // The user's client follows any redirect, and reaches the issuer under a non-loopback name.
    let client = || reqwest::Client::builder().resolve(NAMED_HOST, issuer.addr()).build().unwrap();
    let result = TokenGateLayer::builder()
        .issuer(rs256_config(&issuer).jwks_url(format!("{base}/named")))
        .http_client(client())
        .build()
        .await;
    let error = result.expect_err("the build must fail").to_string();
    assert!(error.contains("redirect refused") && error.contains("not https"), "{error}");
    assert_eq!(issuer.requests(Endpoint::Jwks), 1, "the client did fetch it; tokengate refused it");

    // With plain http allowed for this issuer, the same document is used.
    let layer = TokenGateLayer::builder()
        .issuer(rs256_config(&issuer).jwks_url(format!("{base}/named")).allow_http(true))
        .http_client(client())
        .build()
        .await
        .expect("allowed explicitly");
    assert!(layer.gate().verify_token(&issuer.token().sign()).await.is_ok());
}

// ---------------------------------------------------------------------------------------------
// Unknown kids: rotation to a new algorithm, tokens without kid, waiters and their fetch.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rotation_to_a_new_algorithm_is_accepted_after_exactly_one_fetch() {
    let s =
        Setup::with(600, |i, c| c.jwks_url(i.jwks_uri()).algorithms([Algorithm::RS256, Algorithm::ES256]))
            .await;
    assert_eq!(s.jwks_fetches(), 1);
    // The set holds only an RSA key; the issuer now publishes its first P-256 key.
    let ec_kid = s.issuer.rotate(KeyKind::P256);
    let token = s.issuer.token().alg(Algorithm::ES256).expires_in(LONG_TTL).sign();
    let response = s.get(&token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "user-1");
    assert_eq!(s.jwks_fetches(), 2, "one unknown-kid fetch");
    assert_eq!(s.status().unknown_kid_refreshes, 1);
    assert!(s.layer.gate().issuers()[0].store().snapshot().has_kid(&ec_kid));
    assert_eq!(s.get(&s.issuer.token().alg(Algorithm::ES256).sign()).await.status(), 200);
    assert_eq!(s.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_token_without_kid_is_refused_at_once_when_every_key_has_one() {
    let s = Setup::new(600).await;
    let token = s.issuer.token().without_header("kid").sign();
    let response = s.get(&token).await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("the token's signing key is unknown"), "{challenge}");
    assert_eq!(s.jwks_fetches(), 1, "no refresh can help a token without kid: none is made");
    assert_eq!(s.status().unknown_kid_refreshes, 0);
    assert_eq!(s.calls.load(Ordering::SeqCst), 0, "the inner service was not called");
}

#[tokio::test]
async fn a_waiter_is_released_by_the_fetch_that_started_after_its_miss_not_an_older_one() {
    // A long wait bound, so only the order of events decides the outcome.
    let s = Setup::with(600, |i, c| c.jwks_url(i.jwks_uri()).kid_wait(Duration::from_secs(30))).await;
    // A background fetch starts and is held at the issuer; it will answer 500.
    s.issuer.set_fault(Endpoint::Jwks, Fault::Held(Box::new(Fault::Status(500))));
    s.advance(601);
    s.until("the background fetch is held at the issuer", |s| s.issuer.held(Endpoint::Jwks) == 1).await;

    // Meanwhile the issuer rotates and a token with the new kid arrives.
    let token = s.token_for_kid(&s.issuer.rotate(KeyKind::Rsa));
    let (client, url) = (s.client.clone(), format!("{}/r", s.base));
    let request = tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap() });
    s.until("the miss asks for a fetch", |s| s.status().unknown_kid_refreshes == 1).await;

    // The older fetch now fails; the one asked for by the miss must still run and be awaited.
    s.issuer.set_fault(Endpoint::Jwks, Fault::None);
    s.issuer.release(Endpoint::Jwks);
    let response = request.await.unwrap();
    assert_eq!(response.status(), 200, "released by the unknown-kid fetch, which has the new key");
    assert_eq!(response.text().await.unwrap(), "user-1");
    assert_eq!(s.jwks_fetches(), 3, "start-up, the held background fetch, the unknown-kid fetch");
    assert_eq!(s.status().failures, 1);
}

#[tokio::test]
async fn a_flood_of_random_kids_never_holds_up_known_kids_and_costs_one_fetch_per_cooldown() {
    let s = Setup::new(600).await;
    // The one unknown-kid fetch the flood may cause is held at the issuer for the whole flood.
    s.issuer.set_fault(Endpoint::Jwks, Fault::Held(Box::new(Fault::None)));
    let spawn = |token: String| {
        let (client, url) = (s.client.clone(), format!("{}/r", s.base));
        tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap().status() })
    };
    let random = |i: usize| s.issuer.token().header("kid", serde_json::json!(format!("flood-{i}"))).sign();
    let flood: Vec<_> = (0..300).map(|i| spawn(random(i))).collect();
    s.until("the flood's fetch is in flight", |s| s.issuer.held(Endpoint::Jwks) == 1).await;

    let known: Vec<_> = (0..50).map(|_| spawn(s.token_for_kid(&s.issuer.kid(KeyKind::Rsa)))).collect();
    for status in futures_join(known.into_iter()).await {
        assert_eq!(status, 200, "a known kid answers while the flood waits for its fetch");
    }
    assert_eq!(s.issuer.held(Endpoint::Jwks), 1, "the known kids completed while the fetch was held");
    assert_eq!(s.calls.load(Ordering::SeqCst), 50);

    s.issuer.set_fault(Endpoint::Jwks, Fault::None);
    s.issuer.release(Endpoint::Jwks);
    for status in futures_join(flood.into_iter()).await {
        assert_eq!(status, 401);
    }
    assert_eq!(s.jwks_fetches(), 2, "start-up plus one fetch for 300 random kids");
    assert_eq!(s.status().unknown_kid_refreshes, 1);
    assert_eq!(s.calls.load(Ordering::SeqCst), 50, "no random kid reached the inner service");

    // A second flood within the cooldown costs nothing; after it, exactly one more fetch.
    s.advance(29);
    let second: Vec<_> = (300..400).map(|i| spawn(random(i))).collect();
    for status in futures_join(second.into_iter()).await {
        assert_eq!(status, 401);
    }
    assert_eq!(s.jwks_fetches(), 2, "still within the 30 s cooldown");
    s.advance(2);
    let third: Vec<_> = (400..500).map(|i| spawn(random(i))).collect();
    for status in futures_join(third.into_iter()).await {
        assert_eq!(status, 401);
    }
    assert_eq!(s.jwks_fetches(), 3, "one more fetch once the cooldown has passed");
}

#[tokio::test]
async fn known_kids_answer_while_a_jwks_fetch_hangs() {
    let s = Setup::with(600, |i, c| c.jwks_url(i.jwks_uri()).fetch_timeout(Duration::from_secs(60))).await;
    s.issuer.set_fault(Endpoint::Jwks, Fault::Hang);
    s.advance(601);
    s.until("the background fetch hangs at the issuer", |s| s.issuer.jwks_in_flight() == 1).await;
    for _ in 0..5 {
        // A fresh token each time: the verified-token cache cannot answer for it.
        let response = s.get(&s.token_for_kid(&s.issuer.kid(KeyKind::Rsa))).await;
        assert_eq!(response.status(), 200);
        assert_eq!(s.issuer.jwks_in_flight(), 1, "the request completed while the fetch still hangs");
    }
    assert_eq!(s.jwks_fetches(), 2);
    assert_eq!(s.calls.load(Ordering::SeqCst), 5);
}

// ---------------------------------------------------------------------------------------------
// Size cap, RFC 8414 discovery.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_jwks_above_the_size_cap_is_refused_and_the_last_good_set_kept() {
    use tokengate::jwks::DEFAULT_MAX_DOCUMENT_BYTES;
    let s = Setup::new(600).await;
    let token = s.token_for_kid(&s.issuer.kid(KeyKind::Rsa));
    assert_eq!(s.get(&token).await.status(), 200);
    let generation = s.status().generation;

    s.issuer.rotate(KeyKind::Rsa);
    s.issuer.set_fault(Endpoint::Jwks, Fault::Oversized(DEFAULT_MAX_DOCUMENT_BYTES));
    s.advance(601);
    s.until("the oversized set is refused", |s| s.status().failures == 1).await;
    let error = s.status().last_error.expect("the failure is visible");
    assert!(error.contains(&format!("larger than {DEFAULT_MAX_DOCUMENT_BYTES} bytes")), "{error}");
    assert_eq!(s.status().generation, generation, "nothing was swapped in");
    assert_eq!(s.status().keys, 1);
    assert_eq!(s.get(&s.token_for_kid(&s.issuer.kid(KeyKind::Rsa))).await.status(), 401, "new key not taken");
    assert_eq!(s.get(&token).await.status(), 200, "the last good set still verifies");

    // Under the cap the same padded document is fine: only the size was refused.
    s.issuer.set_fault(Endpoint::Jwks, Fault::Oversized(1024));
    s.advance(600);
    s.until("the padded but small set is taken", |s| s.status().generation > generation).await;
    assert_eq!(s.status().keys, 2);
}

#[tokio::test]
async fn an_oversized_jwks_at_start_up_fails_the_build() {
    let result = Setup::try_new(
        600,
        |i, c| c.jwks_url(i.jwks_uri()).max_document_bytes(4096),
        true,
        |i| i.set_fault(Endpoint::Jwks, Fault::Oversized(4096)),
    )
    .await;
    let error = result.err().expect("fail fast").to_string();
    assert!(error.contains("larger than 4096 bytes"), "{error}");
}

#[tokio::test]
async fn rfc8414_metadata_naming_another_issuer_is_refused_and_no_jwks_fetched() {
    let issuer = Issuer::builder().rsa_only().build().await;
    issuer.set_fault(Endpoint::Discovery, Fault::Status(404));
    issuer.set_fault(Endpoint::AuthServerMetadata, Fault::WrongIssuer);
    let result = TokenGateLayer::builder().issuer(rs256_config(&issuer).discover()).build().await;
    let error = result.expect_err("the build must fail").to_string();
    assert!(error.contains("https://evil.example.com"), "{error}");
    assert_eq!(issuer.requests(Endpoint::AuthServerMetadata), 1);
    assert_eq!(issuer.requests(Endpoint::Jwks), 0, "keys vouched for by another issuer are not fetched");
}

// ---------------------------------------------------------------------------------------------
// Freshness: maximum staleness with a healthy issuer, backoff, large and small durations.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_healthy_issuer_is_refreshed_before_the_maximum_staleness() {
    // The issuer asks for an hour of caching; the keys may be at most 15 minutes old.
    let s = Setup::with(3600, |i, c| c.jwks_url(i.jwks_uri()).max_staleness(Duration::from_secs(900))).await;
    assert_eq!(s.status().next_refresh_at, Some(s.clock.now() + 450), "half the maximum staleness");
    for round in 1..=3 {
        s.advance(451);
        s.until("the background refresh", |s| s.status().not_modified == round).await;
        assert!(!s.status().stale);
        let response = s.get(&s.token_for_kid(&s.issuer.kid(KeyKind::Rsa))).await;
        assert_eq!(response.status(), 200, "round {round}: {} s after start-up", 451 * round);
    }
    assert_eq!(s.jwks_fetches(), 4);
}

#[tokio::test]
async fn retry_backoff_base_and_cap_are_configurable() {
    let s = Setup::try_new(
        600,
        |i, c| c.jwks_url(i.jwks_uri()).retry_backoff(Duration::from_secs(10), Duration::from_secs(15)),
        false,
        |i| i.set_fault(Endpoint::Jwks, Fault::Status(500)),
    )
    .await
    .expect("starts not ready");
    let next = s.status().next_refresh_at.unwrap() - s.clock.now();
    assert!((5..=10).contains(&next), "first retry within [base/2, base]: {next}");
    s.advance(next);
    s.until("the second failure", |s| s.status().failures == 2).await;
    let next = s.status().next_refresh_at.unwrap() - s.clock.now();
    assert!((7..=15).contains(&next), "the doubled delay is capped at 15 s: {next}");
}

#[tokio::test]
async fn huge_durations_saturate_instead_of_wrapping() {
    let s = Setup::with(600, |i, c| {
        c.jwks_url(i.jwks_uri())
            .max_staleness(Duration::MAX)
            .kid_cooldown(Duration::MAX)
            .refresh_interval_bounds(Duration::MAX, Duration::MAX)
    })
    .await;
    let next = s.status().next_refresh_at.unwrap();
    assert!(next > s.clock.now(), "the next refresh is in the future: {next}");
    assert!(!s.status().stale, "an unbounded staleness never makes the keys stale");
    assert_eq!(s.get(&s.token_for_kid(&s.issuer.kid(KeyKind::Rsa))).await.status(), 200);

    for i in 0..2 {
        let token = s.issuer.token().header("kid", serde_json::json!(format!("unknown-{i}"))).sign();
        assert_eq!(s.get(&token).await.status(), 401);
        s.advance(365 * 24 * 3600);
    }
    assert_eq!(s.status().unknown_kid_refreshes, 1, "an unbounded cooldown allows one fetch, ever");
}

/// Changes one setting of an issuer configuration.
type Configure = fn(IssuerConfig) -> IssuerConfig;

#[tokio::test]
async fn sub_second_and_inconsistent_figures_are_refused_at_build() {
    let cases: [(Configure, &str); 5] = [
        (|c| c.kid_cooldown(Duration::from_millis(500)), "cooldown must be at least 1 s"),
        (
            |c| c.retry_backoff(Duration::from_millis(500), Duration::from_secs(60)),
            "backoff base must be at least 1 s",
        ),
        (
            |c| c.retry_backoff(Duration::from_secs(10), Duration::from_secs(5)),
            "backoff maximum is below its base",
        ),
        (|c| c.max_staleness(Duration::from_millis(999)), "maximum staleness must be at least 1 s"),
        (|c| c.connect_timeout(Duration::ZERO), "timeouts must be above zero"),
    ];
    let issuer = Issuer::builder().rsa_only().build().await;
    for (configure, expected) in cases {
        let config = configure(rs256_config(&issuer).jwks_url(issuer.jwks_uri()));
        let result = TokenGateLayer::builder().issuer(config).build().await;
        let error = result.expect_err("refused").to_string();
        assert!(error.contains(expected) && error.contains(&issuer.url()), "{error}");
    }
    assert_eq!(issuer.requests(Endpoint::Jwks), 0, "refused before any fetch");
}

// ---------------------------------------------------------------------------------------------
// Connect timeout.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_connect_timeout_is_configurable_apart_from_the_total_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connection
    // attempt neither succeeds nor fails until the client gives up.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(Ok(stream)) =
        tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await
    {
        queued.push(stream);
        assert!(queued.len() < 64, "the accept queue never filled");
    }

    // The 3 s total timeout is shorter than the 5 s default connect timeout: only the
    // configured connect timeout can produce a connect timeout here.
    let issuer = Issuer::builder().rsa_only().build().await;
    let config = rs256_config(&issuer)
        .jwks_url(format!("http://{addr}/jwks"))
        .connect_timeout(Duration::from_millis(200))
        .fetch_timeout(Duration::from_secs(3));
    let result = TokenGateLayer::builder().issuer(config).build().await;
    let error = result.expect_err("the build must fail").to_string();
    assert!(error.contains("connect timed out"), "{error}");
    drop((listener, queued));
}

// ---------------------------------------------------------------------------------------------
// Static keys next to a remote source.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn static_keys_verify_before_the_first_fetch_succeeds() {
    let s = Setup::try_new(
        600,
        |i, c| {
            c.algorithms([Algorithm::RS256, Algorithm::ES256])
                .pem(i.public_key_pem(KeyKind::P256), Some(&i.kid(KeyKind::P256)))
                .jwks_url(i.jwks_uri())
        },
        false,
        |i| i.set_fault(Endpoint::Jwks, Fault::Status(500)),
    )
    .await
    .expect("starts not ready");
    assert!(!s.layer.gate().ready(), "the remote keys are not loaded");

    let static_token = s.issuer.token().alg(Algorithm::ES256).sub("static").expires_in(LONG_TTL).sign();
    let response = s.get(&static_token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "static");

    // A token only the remote keys can judge waits for them: 503, inner service not called.
    let remote_token = s.token_for_kid(&s.issuer.kid(KeyKind::Rsa));
    let response = s.get(&remote_token).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let forged = s.issuer.token().alg(Algorithm::ES256).sign_with_foreign_key();
    assert_eq!(s.get(&forged).await.status(), 503, "never accepted, judged once the keys are in");
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);

    s.issuer.set_fault(Endpoint::Jwks, Fault::None);
    s.advance(2);
    s.until("a retry loads the remote keys", |s| s.layer.gate().ready()).await;
    assert_eq!(s.get(&remote_token).await.status(), 200);
    assert_eq!(s.get(&static_token).await.status(), 200, "static keys stay in the refreshed set");
    assert_eq!(s.get(&forged).await.status(), 401);
}
