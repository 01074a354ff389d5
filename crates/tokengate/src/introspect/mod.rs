//! Introspection (RFC 7662) for routes in mode `introspect`: the client, a result cache, request
//! coalescing and a circuit breaker.
//!
//! - The endpoint speaks for one issuer (by default the only configured one). Only that
//!   issuer's JWTs are sent to it; opaque tokens are attributed to it.
//! - The cache is keyed by the SHA-256 of the token, never the token. An active result lives
//!   min(`cache_ttl`, the answer's `exp` − now, the JWT's `exp` − now); an inactive one
//!   min(negative TTL, `cache_ttl`), so a zero `cache_ttl` caches nothing; outages are never
//!   cached. Expiry is judged by the [`Clock`](crate::clock::Clock), so tests move time.
//! - Concurrent lookups of one token share one call (moka's `try_get_with`).
//! - After N consecutive outages the breaker answers 503 at once for M seconds, then lets one
//!   probe through.
//!
//! An active answer is still refused (treated as inactive) when its `exp` has passed, its
//! `iss` is not the endpoint's issuer, or its `aud` does not contain one of that issuer's
//! audiences.

mod breaker;
mod client;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::Instrument;

pub use breaker::{BreakerState, DEFAULT_FAILURE_THRESHOLD, DEFAULT_OPEN_FOR};
pub use client::{ClientAuth, Outage};

use crate::clock::SharedClock;
use crate::error::Rejection;
use crate::jwt;
use crate::jwt::members::{Claims, Member, Members};
use crate::token_cache::token_hash;
use breaker::Breaker;

/// Default timeout of one introspection call: 2 s. A gateway request waits for it, so it is
/// short; an issuer slower than this is treated as down (503), not as a verdict.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default cap on an introspection response: 64 KiB, far above any real answer.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Default lifetime of a cached active result: 30 s, the revocation latency of introspected
/// routes.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// Default lifetime of a cached inactive result: 5 s, so a flood of one bad token costs one
/// call per 5 s while a token that becomes valid is not refused for long.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Default number of cached results: 100 000 (a few tens of MB).
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;

/// `Retry-After` on a single outage: 5 s.
pub(crate) const OUTAGE_RETRY_AFTER_SECS: u64 = 5;

/// A secret that never appears in `Debug` output.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone)]
pub(crate) enum EndpointSource {
    Url(String),
    Discover(String),
}

/// How to reach and use the introspection endpoint.
#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    pub(crate) endpoint: EndpointSource,
    pub(crate) issuer: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    pub(crate) auth: ClientAuth,
    pub(crate) timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) cache_ttl: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) capacity: u64,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_open_for: Duration,
    pub(crate) audiences: Vec<String>,
    pub(crate) allow_http: bool,
    pub(crate) accept_opaque: bool,
    pub(crate) http_client: Option<reqwest::Client>,
}

impl IntrospectionConfig {
    /// Introspect at `endpoint`, authenticating as `client_id` with `client_secret`.
    pub fn new(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Vec<u8>>,
    ) -> Self {
        Self::with_source(EndpointSource::Url(endpoint.into()), client_id.into(), client_secret.into())
    }

    /// Introspect at the `introspection_endpoint` of `issuer`'s metadata (OpenID Connect
    /// discovery or RFC 8414), resolved when the layer is built.
    pub fn discovered(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Vec<u8>>,
    ) -> Self {
        let issuer = issuer.into();
        let mut config = Self::with_source(
            EndpointSource::Discover(issuer.clone()),
            client_id.into(),
            client_secret.into(),
        );
        config.issuer = Some(issuer);
        config
    }

    fn with_source(endpoint: EndpointSource, client_id: String, client_secret: Vec<u8>) -> Self {
        Self {
            endpoint,
            issuer: None,
            client_id,
            client_secret: Secret(client_secret),
            auth: ClientAuth::default(),
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            cache_ttl: DEFAULT_CACHE_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            capacity: DEFAULT_CACHE_CAPACITY,
            breaker_threshold: DEFAULT_FAILURE_THRESHOLD,
            breaker_open_for: DEFAULT_OPEN_FOR,
            audiences: Vec::new(),
            allow_http: false,
            accept_opaque: true,
            http_client: None,
        }
    }

    /// The issuer this endpoint speaks for: only its JWTs are introspected (another
    /// configured issuer's get 401 on `introspect` routes, since asking this endpoint about
    /// them could never succeed), an answer naming another `iss` is refused, and opaque tokens
    /// are attributed to it. It must be a configured issuer. Default: the only configured
    /// issuer; with several, the build fails unless this is set.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// `client_secret_basic` (default) or `client_secret_post`.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Timeout of one call (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Cap on the response size (default 64 KiB).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Lifetime of a cached active result (default 30 s), further capped by the answer's and
    /// the JWT's `exp`. Zero asks every time, for inactive answers too.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Lifetime of a cached inactive result (default 5 s), never longer than
    /// [`cache_ttl`](Self::cache_ttl).
    pub fn negative_cache_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Maximum number of cached results (default 100 000).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.capacity = entries;
        self
    }

    /// Opens the breaker after `failures` consecutive outages, for `open_for` (defaults 5, 10 s).
    pub fn circuit_breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.breaker_threshold = failures;
        self.breaker_open_for = open_for;
        self
    }

    /// Audiences an answer's `aud` must contain one of (default: the audiences of the
    /// endpoint's [`issuer`](Self::issuer)).
    pub fn audiences<I: IntoIterator<Item = T>, T: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Allows a plain-`http` endpoint on a non-loopback host (default `false`).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Whether opaque (non-JWT) tokens are accepted on `introspect` routes (default `true`).
    pub fn accept_opaque(mut self, accept: bool) -> Self {
        self.accept_opaque = accept;
        self
    }

    /// Uses this HTTP client for introspection calls instead of the one tokengate builds
    /// (which follows no redirects and uses the configured timeout for connecting too).
    ///
    /// **Its redirect policy is yours.** reqwest fixes the policy per client, not per request,
    /// so tokengate cannot switch redirects off on a client it is given. Build it with
    /// `.redirect(reqwest::redirect::Policy::none())`: otherwise a 3xx from the endpoint makes
    /// reqwest re-send the token — and with `client_secret_post` the client secret — to the
    /// redirect's target. tokengate still refuses (as an outage) any answer that did not come
    /// from the endpoint itself, but by then the request has been sent.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }
}

/// Counters of the introspection client.
#[derive(Debug, Default)]
pub struct IntrospectionMetrics {
    /// Calls made to the endpoint.
    pub calls: AtomicU64,
    /// Lookups answered from the cache.
    pub cache_hits: AtomicU64,
    /// Lookups the cache could not answer.
    pub cache_misses: AtomicU64,
    /// Lookups that waited for another request's call instead of making their own.
    pub coalesced: AtomicU64,
    /// Calls that ended in an outage (including refusals by the open breaker).
    pub outages: AtomicU64,
    /// Times the breaker opened.
    pub breaker_opens: AtomicU64,
}

/// What the endpoint said about a token, after our own checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Active, and our checks agree.
    Active {
        /// The response's members, as the issuer sent them.
        members: Map<String, Value>,
        /// The response's `scope`, split; `None` when it has none (the token's then count).
        scopes: Option<Vec<String>>,
    },
    /// Inactive: the issuer said so, or our checks (past `exp`, another `iss`, another `aud`)
    /// overrule its "active".
    Inactive,
}

/// Judges an introspection response body exactly as the gate does, without any I/O: the body
/// must be a JSON object with a boolean `active`; an active answer with `exp` at or before
/// `now`, an `iss` other than `issuer`, or an `aud` without one of `audiences` is
/// [`Verdict::Inactive`]; any other shape, or a member of the wrong type, is an [`Outage`]
/// (never a verdict). Public for tests, tools and fuzzing.
pub fn judge_response(body: &[u8], issuer: &str, audiences: &[String], now: i64) -> Result<Verdict, Outage> {
    interpret(client::parse_answer(body)?, issuer, audiences, now)
}

/// Our own checks on an answer: an active answer with a past `exp`, another `iss`, or an
/// `aud` without ours counts as inactive; malformed members are an outage.
fn interpret(
    answer: client::Answer,
    issuer: &str,
    audiences: &[String],
    now: i64,
) -> Result<Verdict, Outage> {
    if !answer.active {
        return Ok(Verdict::Inactive);
    }
    let members = answer.members;
    let invalid = |what: &str| Outage::Invalid(format!("\"{what}\" has the wrong type"));
    match members.get("exp") {
        None => {}
        Some(Value::Number(n)) if n.as_f64().is_some_and(|exp| exp <= now as f64) => {
            return Ok(Verdict::Inactive);
        }
        Some(Value::Number(_)) => {}
        Some(_) => return Err(invalid("exp")),
    }
    match members.get("iss") {
        None => {}
        Some(Value::String(iss)) if iss == issuer => {}
        Some(Value::String(_)) => return Ok(Verdict::Inactive),
        Some(_) => return Err(invalid("iss")),
    }
    if let Some(aud) = members.get("aud") {
        match jwt::check_audience(Some(&Member::of(aud)), audiences) {
            Ok(()) => {}
            Err(Rejection::WrongAudience) => return Ok(Verdict::Inactive),
            Err(_) => return Err(invalid("aud")),
        }
    }
    let scopes = match members.get("scope") {
        None => None,
        Some(_) => Some(jwt::scopes(&Claims::from_map(&members)).map_err(|_| invalid("scope"))?),
    };
    Ok(Verdict::Active { members, scopes })
}

#[derive(Clone)]
struct Cached {
    verdict: Arc<Verdict>,
    expires_at: i64,
}

/// The introspection client with its cache and breaker. Built by the layer builder.
pub struct Introspector {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    /// The issuer the endpoint speaks for (resolved at build).
    issuer: Arc<str>,
    /// The client secret, checked at build to be non-empty UTF-8.
    client_secret: Box<str>,
    config: IntrospectionConfig,
    cache: moka::future::Cache<[u8; 32], Cached>,
    breaker: Breaker,
    metrics: IntrospectionMetrics,
    clock: SharedClock,
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("endpoint", &self.endpoint.as_str())
            .field("issuer", &self.issuer)
            .field("client_id", &self.config.client_id)
            .field("client_secret", &self.config.client_secret)
            .field("cache_entries", &self.cache.entry_count())
            .finish()
    }
}

impl Introspector {
    /// Checks what only the introspection settings can tell (the client id and secret) and
    /// builds the client. `issuer` and `audiences` are the endpoint's issuer and the audiences
    /// answers must name (the layer resolves both). The HTTP client is the config's, else one
    /// of ours with redirects off.
    pub(crate) fn new(
        mut config: IntrospectionConfig,
        endpoint: reqwest::Url,
        issuer: Arc<str>,
        audiences: Vec<String>,
        clock: SharedClock,
    ) -> Result<Self, String> {
        if config.client_id.is_empty() {
            return Err("client_id is empty".into());
        }
        // Refused now rather than failing every call: a secret that cannot be sent would turn
        // every introspected request into a 503.
        let client_secret: Box<str> = match std::str::from_utf8(&config.client_secret.0) {
            Ok("") => return Err("client_secret is empty".into()),
            Ok(secret) => secret.into(),
            Err(_) => return Err("client_secret is not valid UTF-8".into()),
        };
        if audiences.is_empty() || audiences.iter().any(String::is_empty) {
            return Err("no audiences to check answers against".into());
        }
        config.audiences = audiences;
        let client = match config.http_client.take() {
            Some(client) => client,
            None => client::http_client(config.timeout)?,
        };
        // moka's own clock only bounds memory; validity is judged by our Clock on every read.
        // No entry outlives `cache_ttl` (the negative TTL is capped by it).
        let real_ttl = config.cache_ttl + Duration::from_secs(1);
        let cache =
            moka::future::Cache::builder().max_capacity(config.capacity).time_to_live(real_ttl).build();
        let breaker = Breaker::new(config.breaker_threshold, config.breaker_open_for);
        Ok(Self {
            client,
            endpoint,
            issuer,
            client_secret,
            config,
            cache,
            breaker,
            metrics: IntrospectionMetrics::default(),
            clock,
        })
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The issuer this endpoint speaks for: the configured one, or the only configured issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub(crate) fn issuer_arc(&self) -> &Arc<str> {
        &self.issuer
    }

    /// The audiences an answer's `aud` must contain one of.
    pub fn audiences(&self) -> &[String] {
        &self.config.audiences
    }

    /// Whether opaque tokens are accepted on `introspect` routes.
    pub fn accepts_opaque(&self) -> bool {
        self.config.accept_opaque
    }

    /// The client's counters.
    pub fn metrics(&self) -> &IntrospectionMetrics {
        &self.metrics
    }

    /// The breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(self.clock.now())
    }

    /// The number of cached results (approximate).
    pub fn cached_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The verdict on `token`, from the cache or one (shared) call. `key` is the token's
    /// SHA-256 ([`token_hash`]; the verified-token cache's key too, so a JWT is hashed once).
    /// The caller has made sure a JWT is of [`issuer`](Self::issuer); `token_exp` is a JWT's
    /// `exp`, which caps the cache lifetime.
    pub(crate) async fn check(
        &self,
        token: &str,
        key: [u8; 32],
        token_exp: Option<i64>,
    ) -> Result<Arc<Verdict>, Outage> {
        debug_assert_eq!(key, token_hash(token));
        if let Some(cached) = self.cache.get(&key).await {
            if self.clock.now() < cached.expires_at {
                self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(cached.verdict);
            }
            self.cache.invalidate(&key).await;
        }
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        let called = AtomicBool::new(false);
        let result = self
            .cache
            .try_get_with(key, async {
                called.store(true, Ordering::Relaxed);
                self.call(token, token_exp).await
            })
            .await;
        if !called.load(Ordering::Relaxed) {
            self.metrics.coalesced.fetch_add(1, Ordering::Relaxed);
        }
        let cached = result.map_err(|outage| (*outage).clone())?;
        if cached.expires_at <= self.clock.now() {
            // A zero lifetime (`cache_ttl` 0, or a token about to expire): the entry served the
            // requests that shared the call, and must not answer a later one.
            self.cache.invalidate(&key).await;
        }
        Ok(cached.verdict)
    }

    async fn call(&self, token: &str, token_exp: Option<i64>) -> Result<Cached, Outage> {
        let permit = self.breaker.permit(self.clock.now()).map_err(|secs| {
            self.metrics.outages.fetch_add(1, Ordering::Relaxed);
            Outage::BreakerOpen(secs)
        })?;
        // Everything logged about the call, warnings included, is inside its span. Info level,
        // so the warnings carry it under the usual filters; the token is never a field.
        let span =
            tracing::info_span!("introspect", endpoint = %self.endpoint, outcome = tracing::field::Empty);
        self.call_with(permit, token, token_exp).instrument(span).await
    }

    async fn call_with(
        &self,
        permit: breaker::Permit<'_>,
        token: &str,
        token_exp: Option<i64>,
    ) -> Result<Cached, Outage> {
        self.metrics.calls.fetch_add(1, Ordering::Relaxed);
        let answer = client::call(
            &self.client,
            &self.endpoint,
            self.config.auth,
            &self.config.client_id,
            &self.client_secret,
            token,
            self.config.timeout,
            self.config.max_response_bytes,
        )
        .await;
        let now = self.clock.now();
        let span = tracing::Span::current();
        match answer.and_then(|answer| interpret(answer, &self.issuer, &self.config.audiences, now)) {
            Ok(verdict) => {
                permit.succeeded();
                let ttl = self.lifetime(&verdict, token_exp, now);
                span.record(
                    "outcome",
                    if matches!(verdict, Verdict::Inactive) { "inactive" } else { "active" },
                );
                Ok(Cached { verdict: Arc::new(verdict), expires_at: now.saturating_add(ttl) })
            }
            Err(outage) => {
                span.record("outcome", "outage");
                self.metrics.outages.fetch_add(1, Ordering::Relaxed);
                if permit.failed(now) {
                    self.metrics.breaker_opens.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %outage, "introspection circuit breaker opened");
                } else {
                    tracing::warn!(error = %outage, "introspection failed");
                }
                Err(outage)
            }
        }
    }

    /// Seconds a verdict may be reused, from `now`. Active: min(`cache_ttl`, the answer's
    /// `exp` − now, the JWT's `exp` − now), so a cached "active" never outlives the token.
    /// Inactive: the negative TTL, never longer than `cache_ttl` (zero asks every time).
    fn lifetime(&self, verdict: &Verdict, token_exp: Option<i64>, now: i64) -> i64 {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let ttl = secs(self.config.cache_ttl);
        let lifetime = match verdict {
            Verdict::Inactive => ttl.min(secs(self.config.negative_ttl)),
            Verdict::Active { members, .. } => {
                // `interpret` made sure `exp`, when present, is a number.
                let answer_exp = members.get("exp").and_then(Value::as_f64).map(|exp| exp.floor() as i64);
                [answer_exp, token_exp]
                    .into_iter()
                    .flatten()
                    .fold(ttl, |ttl, exp| ttl.min(exp.saturating_sub(now)))
            }
        };
        lifetime.max(0)
    }
}
