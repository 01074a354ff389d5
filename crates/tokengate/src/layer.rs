//! [`TokenGateLayer`] and its builder, [`TokenGateBuilder`], and [`IssuerConfig`].
//!
//! The builder refuses, when it runs, every configuration that would be unsafe or could never
//! accept a token: an issuer without audiences or algorithms, HMAC algorithms on an issuer with
//! asymmetric keys (the classic algorithm-confusion hole), a weak HMAC secret, a leeway over
//! five minutes, two issuers with the same identifier, a key set with no usable key.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use tower::Layer;

use crate::claims::GateContext;
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::discovery;
use crate::error::{ErrorRenderer, JsonErrors};
use crate::extract::DEFAULT_MAX_TOKEN_BYTES;
use crate::gate::Gate;
use crate::introspect::{EndpointSource, IntrospectionConfig, Introspector};
use crate::jwks::fetch::{self, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_DOCUMENT_BYTES};
use crate::jwks::refresh::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, JwksLocation, RefreshSettings, Refresher,
};
use crate::jwks::store::RefreshControl;
use crate::jwks::{
    DEFAULT_KID_COOLDOWN, DEFAULT_KID_WAIT, DEFAULT_MAX_REFRESH_INTERVAL, DEFAULT_MIN_REFRESH_INTERVAL,
    KeyKind, KeySet, KeyStore, VerifyingKey,
};
use crate::jwt::{DEFAULT_LEEWAY, IssuerVerifier, MAX_LEEWAY};
use crate::policy::{Mode, RoutePolicy};
use crate::revocation::{
    DEFAULT_CAPACITY as DEFAULT_REVOCATION_CAPACITY, DEFAULT_MAX_TOKEN_LIFETIME, RevocationList,
};
use crate::service::{NonCanonicalPath, TokenGate};
use crate::token_cache::{TokenCache, TokenCacheConfig};

/// Default `WWW-Authenticate` realm.
pub const DEFAULT_REALM: &str = "tokengate";

/// A tower [`Layer`] that puts token verification in front of a service.
///
/// Cheap to clone; every service it makes shares one [`Gate`].
#[derive(Clone)]
pub struct TokenGateLayer {
    gate: Arc<Gate>,
}

impl TokenGateLayer {
    /// Starts building a layer.
    pub fn builder() -> TokenGateBuilder {
        TokenGateBuilder::default()
    }

    /// The shared pipeline, for callers that decide requests themselves (forward-auth,
    /// `explain`).
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
}

impl<S> Layer<S> for TokenGateLayer {
    type Service = TokenGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenGate::new(inner, self.gate.clone())
    }
}

impl fmt::Debug for TokenGateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGateLayer").field("gate", &self.gate).finish()
    }
}

/// A secret that never appears in `Debug` output.
#[derive(Clone)]
struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone)]
enum KeySource {
    JwksDocument(String),
    JwksUrl(String),
    Pem { pem: String, kid: Option<String> },
    HmacSecret(Secret),
}

/// How to verify the tokens of one issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    keys: Vec<KeySource>,
    required_type: Option<String>,
    require_exp: bool,
    leeway: Duration,
    allow_http: bool,
    max_document_bytes: usize,
    fetch_timeout: Duration,
    connect_timeout: Duration,
    backoff_base: Duration,
    backoff_max: Duration,
    discover: bool,
    min_refresh_interval: Duration,
    max_refresh_interval: Duration,
    kid_cooldown: Duration,
    kid_wait: Duration,
    max_staleness: Option<Duration>,
}

impl IssuerConfig {
    /// An issuer whose tokens carry exactly this `iss`.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: Vec::new(),
            algorithms: Vec::new(),
            keys: Vec::new(),
            required_type: None,
            require_exp: true,
            leeway: DEFAULT_LEEWAY,
            allow_http: false,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            discover: false,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            max_refresh_interval: DEFAULT_MAX_REFRESH_INTERVAL,
            kid_cooldown: DEFAULT_KID_COOLDOWN,
            kid_wait: DEFAULT_KID_WAIT,
            max_staleness: None,
        }
    }

    /// Finds the keys through the issuer's metadata: OpenID Connect discovery at
    /// `{issuer}/.well-known/openid-configuration`, else RFC 8414. The document's `issuer`
    /// must equal this issuer byte for byte.
    pub fn discover(mut self) -> Self {
        self.discover = true;
        self
    }

    /// Bounds of the background refresh interval, which otherwise follows the key set's
    /// `Cache-Control: max-age` (defaults 5 min … 24 h). A [`max_staleness`](Self::max_staleness)
    /// caps the interval further, at half of it.
    pub fn refresh_interval_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh_interval = min;
        self.max_refresh_interval = max;
        self
    }

    /// Minimum time between two fetches caused by unknown `kid`s (default 30 s). At least 1 s:
    /// the clock counts whole seconds, and a fraction is rounded up.
    pub fn kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.kid_cooldown = cooldown;
        self
    }

    /// Longest time a request with an unknown `kid` waits for the refresh (default 1 s).
    pub fn kid_wait(mut self, wait: Duration) -> Self {
        self.kid_wait = wait;
        self
    }

    /// After this long without a successful fetch, the issuer's tokens get 503 instead of
    /// being verified with possibly revoked keys (default: no limit, keep the last good set).
    /// At least 1 s. The background refresh then runs at least every `staleness / 2` (even
    /// below the refresh interval's lower bound), so a healthy issuer never reaches it.
    pub fn max_staleness(mut self, staleness: Duration) -> Self {
        self.max_staleness = Some(staleness);
        self
    }

    /// Adds an accepted audience; a token's `aud` must contain at least one. Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Adds accepted audiences.
    pub fn audiences<I: IntoIterator<Item = T>, T: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// Sets the allowed signature algorithms. Required; never includes `none`.
    pub fn algorithms<I: IntoIterator<Item = Algorithm>>(mut self, algorithms: I) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Adds the keys of a JWKS document given inline (JSON text).
    pub fn jwks(mut self, document: impl Into<String>) -> Self {
        self.keys.push(KeySource::JwksDocument(document.into()));
        self
    }

    /// Adds the keys of the JWKS at `url`: fetched when the layer is built, then refreshed in
    /// the background and on unknown `kid`s. Keys configured next to it (inline JWKS, PEM) are
    /// kept in every refreshed set, and verify their tokens even before the first fetch
    /// succeeds.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys.push(KeySource::JwksUrl(url.into()));
        self
    }

    /// Adds a PEM public key (SPKI or PKCS#1 RSA), optionally with the `kid` tokens name it by.
    pub fn pem(mut self, pem: impl Into<String>, kid: Option<&str>) -> Self {
        self.keys.push(KeySource::Pem { pem: pem.into(), kid: kid.map(str::to_owned) });
        self
    }

    /// Uses an HMAC shared secret (for HS256/384/512 only; at least as long as the hash).
    pub fn hmac_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.keys.push(KeySource::HmacSecret(Secret(secret.into())));
        self
    }

    /// Requires the header `typ` to be this media type, e.g. `at+jwt` (RFC 9068 §2.1).
    pub fn require_type(mut self, typ: impl Into<String>) -> Self {
        self.required_type = Some(typ.into());
        self
    }

    /// Whether `exp` must be present (default `true`).
    pub fn require_exp(mut self, required: bool) -> Self {
        self.require_exp = required;
        self
    }

    /// Clock-skew leeway for `exp`, `nbf`, `iat` (default 30 s, at most 5 min).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Allows fetching keys over plain `http` from non-loopback hosts (default `false`).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Caps the size of a fetched key set (default 1 MiB).
    pub fn max_document_bytes(mut self, bytes: usize) -> Self {
        self.max_document_bytes = bytes;
        self
    }

    /// The total timeout of a key or metadata fetch, connecting and reading included
    /// (default 5 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The timeout of establishing a connection (TCP and TLS) for a key or metadata fetch
    /// (default 5 s: a handshake not done by then is to a host that is down or filtered, and
    /// giving up starts the retry sooner). Applies to the client tokengate builds; a client
    /// passed to [`TokenGateBuilder::http_client`] keeps its own.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The retry delay after failed fetches: `base` after the first, doubling per failure up
    /// to `max`, each drawn with jitter from its upper half (defaults 1 s and 5 min: a blip is
    /// retried at once, a long outage no more often than a healthy issuer is asked). `base`
    /// must be at least 1 s (the clock counts whole seconds) and `max` at least `base`.
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }
}

/// Why a layer could not be built. The message names the issuer and the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(String);

impl BuildError {
    fn issuer(issuer: &str, why: impl fmt::Display) -> Self {
        Self(format!("issuer {issuer:?}: {why}"))
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// Builds a [`TokenGateLayer`].
#[derive(Default)]
pub struct TokenGateBuilder {
    issuers: Vec<IssuerConfig>,
    policy: RoutePolicy,
    realm: Option<String>,
    max_token_bytes: Option<usize>,
    clock: Option<SharedClock>,
    renderer: Option<Arc<dyn ErrorRenderer>>,
    http_client: Option<reqwest::Client>,
    start_not_ready: bool,
    introspection: Option<IntrospectionConfig>,
    revocations: Option<RevocationList>,
    token_cache: Option<Option<TokenCacheConfig>>,
    non_canonical_path: NonCanonicalPath,
    any_token_type: bool,
}

impl TokenGateBuilder {
    /// Verifies JWTs of every kind, not only access tokens. By default a JWT that declares
    /// itself another kind — header `typ` `logout+jwt` (OpenID Connect Back-Channel Logout) or
    /// `secevent+jwt` (RFC 8417), or any JWT with an `events` claim — is refused with 401
    /// `invalid_token`, so a logout token or a security event token signed by a configured
    /// issuer can never be used as an access token (RFC 8725 §3.11). Only for a gate that
    /// checks those tokens' own rules itself, as the gateway's receivers do; never for routes.
    pub fn verify_any_token_type(mut self) -> Self {
        self.any_token_type = true;
        self
    }

    /// What the tower service does with an admitted request whose raw path is not its
    /// normalised form (`//admin`, `/a/../b`): refuse with 400 (the default), or rewrite it —
    /// only where the inner service routes after the layer; see [`NonCanonicalPath`].
    pub fn non_canonical_path(mut self, handling: NonCanonicalPath) -> Self {
        self.non_canonical_path = handling;
        self
    }

    /// Sizes the verified-token cache, or turns it off with `None` (default: on, 100 000
    /// tokens, 64 MiB).
    pub fn token_cache(mut self, config: Option<TokenCacheConfig>) -> Self {
        self.token_cache = Some(config);
        self
    }

    /// Enables introspection for routes in mode `introspect`.
    pub fn introspection(mut self, config: IntrospectionConfig) -> Self {
        self.introspection = Some(config);
        self
    }

    /// Uses this revocation list (share a clone with whatever adds entries). Default: a new,
    /// empty list on the layer's clock.
    pub fn revocation_list(mut self, list: RevocationList) -> Self {
        self.revocations = Some(list);
        self
    }

    /// When an issuer's keys cannot be fetched at build time: `true` (the default) fails the
    /// build; `false` starts anyway, answers that issuer's tokens with 503, and keeps retrying.
    pub fn fail_fast(mut self, fail_fast: bool) -> Self {
        self.start_not_ready = !fail_fast;
        self
    }

    /// Adds a trusted issuer.
    pub fn issuer(mut self, issuer: IssuerConfig) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Sets the route policy (default: every route `local`, no scopes).
    pub fn policy(mut self, policy: RoutePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the `WWW-Authenticate` realm (default `tokengate`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Caps the token length (default 8 KiB).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = Some(bytes);
        self
    }

    /// Sets the clock (default: the system clock). Tests pass a [`ManualClock`](crate::clock::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Replaces the error renderer (default [`JsonErrors`]).
    pub fn error_renderer(mut self, renderer: impl ErrorRenderer) -> Self {
        self.renderer = Some(Arc::new(renderer));
        self
    }

    /// Uses this HTTP client for key fetches (and metadata discovery) instead of building one per
    /// issuer. Its redirect policy and connect timeout are its own; tokengate still applies the
    /// total timeout and size cap, and refuses a document finally served from a plain-`http`
    /// non-loopback URL (unless the issuer allows http). The client tokengate builds checks every
    /// redirect hop before following it. Introspection calls do not use it: they get a client
    /// that follows no redirects, or the one given to [`IntrospectionConfig::http_client`].
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Checks the configuration, loads every issuer's keys, and builds the layer. Key
    /// refreshers start on the current tokio runtime and stop when the layer is dropped.
    pub async fn build(self) -> Result<TokenGateLayer, BuildError> {
        crate::crypto::install_default_provider();
        if self.issuers.is_empty() {
            return Err(BuildError("no issuer is configured".into()));
        }
        self.policy.validate().map_err(|e| BuildError(format!("policy: {e}")))?;
        let clock: SharedClock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        // Key fetches use a client per issuer (its connect timeout and redirect rule) unless
        // the user gave one; this one serves the discovery of the introspection endpoint.
        let user_client = self.http_client;
        let client = match &user_client {
            Some(client) => client.clone(),
            None => fetch::default_client(DEFAULT_CONNECT_TIMEOUT, DEFAULT_FETCH_TIMEOUT, false)
                .map_err(|e| BuildError(e.to_string()))?,
        };
        let mut issuers: Vec<IssuerVerifier> = Vec::with_capacity(self.issuers.len());
        let mut refreshers = Vec::new();
        for config in &self.issuers {
            if issuers.iter().any(|i| *i.issuer == *config.issuer) {
                return Err(BuildError::issuer(&config.issuer, "is configured twice"));
            }
            let (issuer, refresher) = build_issuer(
                config,
                user_client.as_ref(),
                &clock,
                !self.start_not_ready,
                !self.any_token_type,
            )
            .await?;
            issuers.push(issuer);
            refreshers.extend(refresher.map(Refresher::spawn));
        }
        let introspector = match self.introspection {
            Some(config) => Some(build_introspector(config, &client, &clock, &issuers).await?),
            None => {
                if self.policy.uses_mode(Mode::Introspect) {
                    tracing::warn!(
                        "a route is in mode `introspect` but no introspection endpoint is configured; it will answer 503"
                    );
                }
                None
            }
        };
        let revocations = self.revocations.unwrap_or_else(|| {
            RevocationList::with_settings(
                clock.clone(),
                DEFAULT_REVOCATION_CAPACITY,
                DEFAULT_MAX_TOKEN_LIFETIME,
            )
        });
        let realm = self.realm.as_deref().unwrap_or(DEFAULT_REALM);
        let renderer = self.renderer.unwrap_or_else(|| Arc::new(JsonErrors));
        let gate = Gate {
            issuers,
            policy: self.policy,
            max_token_bytes: self.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES),
            clock,
            context: GateContext::new(realm, renderer),
            introspector,
            token_cache: self.token_cache.unwrap_or(Some(TokenCacheConfig::default())).map(TokenCache::new),
            revocations,
            non_canonical_path: self.non_canonical_path,
            _refreshers: refreshers,
        };
        Ok(TokenGateLayer { gate: Arc::new(gate) })
    }
}

impl fmt::Debug for TokenGateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGateBuilder")
            .field("issuers", &self.issuers)
            .field("policy", &self.policy)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

async fn build_issuer(
    config: &IssuerConfig,
    user_client: Option<&reqwest::Client>,
    clock: &SharedClock,
    fail_fast: bool,
    access_tokens_only: bool,
) -> Result<(IssuerVerifier, Option<Refresher>), BuildError> {
    let name = config.issuer.as_str();
    let err = |why: &dyn fmt::Display| BuildError::issuer(name, why);
    if name.is_empty() {
        return Err(BuildError("an issuer has an empty identifier".into()));
    }
    if config.audiences.is_empty() || config.audiences.iter().any(String::is_empty) {
        return Err(err(&"no audiences configured: tokens for any audience would be accepted"));
    }
    if config.algorithms.is_empty() {
        return Err(err(&"no algorithms configured"));
    }
    if config.leeway > MAX_LEEWAY {
        return Err(err(&format_args!(
            "leeway of {} s exceeds the maximum of {} s",
            config.leeway.as_secs(),
            MAX_LEEWAY.as_secs()
        )));
    }
    if config.min_refresh_interval > config.max_refresh_interval {
        return Err(err(&"the minimum refresh interval exceeds the maximum"));
    }
    // The clock counts whole seconds: under 1 s these would silently become 0 — no cooldown
    // at all, retries in a tight loop, everything stale at once.
    if config.kid_cooldown < Duration::from_secs(1) {
        return Err(err(&"the unknown-kid cooldown must be at least 1 s"));
    }
    if config.backoff_base < Duration::from_secs(1) {
        return Err(err(&"the retry backoff base must be at least 1 s"));
    }
    if config.backoff_max < config.backoff_base {
        return Err(err(&"the retry backoff maximum is below its base"));
    }
    if config.max_staleness.is_some_and(|s| s < Duration::from_secs(1)) {
        return Err(err(&"the maximum staleness must be at least 1 s"));
    }
    if config.fetch_timeout.is_zero() || config.connect_timeout.is_zero() {
        return Err(err(&"fetch and connect timeouts must be above zero"));
    }

    // Static keys, parsed now; at most one remote source (a JWKS URL or discovery).
    let mut static_keys: Vec<VerifyingKey> = Vec::new();
    let mut remote: Option<JwksLocation> = config.discover.then_some(JwksLocation::Discover);
    for source in &config.keys {
        match source {
            KeySource::JwksDocument(doc) => static_keys.extend(parse_jwks(name, doc.as_bytes())?),
            KeySource::JwksUrl(url) => {
                if remote.is_some() {
                    return Err(err(&"has more than one remote key source (JWKS URL or discovery)"));
                }
                let url = fetch::check_url(url, config.allow_http).map_err(|e| err(&e))?;
                remote = Some(JwksLocation::Url(url));
            }
            KeySource::Pem { pem, kid } => {
                static_keys.push(KeySet::key_from_pem(pem, kid.clone()).map_err(|e| err(&e))?)
            }
            KeySource::HmacSecret(secret) => {
                static_keys.push(KeySet::key_from_secret(&secret.0).map_err(|e| err(&e))?)
            }
        }
    }
    let static_kidless = static_keys.iter().any(|k| k.kid().is_none() && !k.kind().is_symmetric());
    if static_keys.is_empty() && remote.is_none() {
        return Err(err(&"no keys configured (a JWKS, a JWKS URL, discovery, a PEM key or an HMAC secret)"));
    }
    if config.discover {
        // Discovery needs the issuer to be a fetchable URL.
        fetch::check_url(name, config.allow_http).map_err(|e| err(&e))?;
    }

    // Algorithm confusion: an issuer is either HMAC-only or public-key-only. Published key
    // sets never contribute HMAC keys, so a remote source counts as public keys.
    let symmetric = static_keys.iter().any(|k| k.kind().is_symmetric());
    let asymmetric = remote.is_some() || static_keys.iter().any(|k| !k.kind().is_symmetric());
    if symmetric && asymmetric {
        return Err(err(&"mixes an HMAC secret with public keys; use separate issuers"));
    }
    for &alg in &config.algorithms {
        let hmac = KeyKind::Hmac.supports(alg);
        if hmac && asymmetric {
            return Err(err(&format_args!(
                "{alg:?} is an HMAC algorithm but the issuer's keys are public keys (algorithm confusion)"
            )));
        }
        if !hmac && symmetric {
            return Err(err(&format_args!(
                "{alg:?} needs a public key but the issuer has only an HMAC secret"
            )));
        }
        if hmac {
            let min = match alg {
                Algorithm::HS384 => 48,
                Algorithm::HS512 => 64,
                _ => 32,
            };
            for key in config.keys.iter() {
                if let KeySource::HmacSecret(secret) = key
                    && secret.0.len() < min
                {
                    return Err(err(&format_args!(
                        "the HMAC secret is shorter than {min} bytes, the minimum for {alg:?}"
                    )));
                }
            }
        }
    }

    let issuer: Arc<str> = Arc::from(name);
    let (store, refresher) = match remote {
        None => (Arc::new(KeyStore::fixed(KeySet::from_keys(static_keys))), None),
        Some(location) => {
            let control = RefreshControl::new(config.kid_cooldown, config.kid_wait);
            let store = Arc::new(KeyStore::empty(Some(control), config.max_staleness));
            store.preload(KeySet::from_keys(static_keys.clone()));
            let client = match user_client {
                Some(client) => client.clone(),
                None => {
                    fetch::default_client(config.connect_timeout, config.fetch_timeout, config.allow_http)
                        .map_err(|e| err(&e))?
                }
            };
            let settings = RefreshSettings {
                min_interval: config.min_refresh_interval,
                max_interval: config.max_refresh_interval,
                max_staleness: config.max_staleness,
                backoff_base: config.backoff_base,
                backoff_max: config.backoff_max,
                fetch_timeout: config.fetch_timeout,
                max_document_bytes: config.max_document_bytes,
                allow_http: config.allow_http,
            };
            let mut refresher = Refresher::new(
                issuer.clone(),
                location,
                client,
                static_keys,
                settings,
                store.clone(),
                clock.clone(),
            );
            if let Err(e) = refresher.fetch_once().await {
                if fail_fast {
                    return Err(err(&format_args!("loading keys: {e}")));
                }
                tracing::warn!(issuer = name, error = %e, "starting without keys; this issuer's tokens get 503 until a fetch succeeds");
            }
            (store, Some(refresher))
        }
    };

    let keys = store.snapshot();
    // A configured key without `kid` is only ever tried when no key has one (RFC 7517 §4.5
    // lookup is by `kid`): next to keys with kids it would be dead configuration.
    if static_kidless && keys.has_kids() {
        return Err(err(
            &"a configured key has no kid while other keys do, so it would never be used; give it a kid",
        ));
    }
    // Checked against the remote keys only once they are loaded.
    if store.loaded() {
        if !config.algorithms.iter().any(|&alg| keys.supports(alg)) {
            return Err(err(&"no key can verify any of the configured algorithms"));
        }
        for &alg in &config.algorithms {
            if !keys.supports(alg) {
                tracing::warn!(issuer = name, algorithm = ?alg, "no key of this issuer can verify this algorithm yet");
            }
        }
    }
    drop(keys);
    let verifier = IssuerVerifier {
        issuer,
        audiences: config.audiences.clone(),
        algorithms: config.algorithms.clone(),
        required_type: config.required_type.clone(),
        require_exp: config.require_exp,
        leeway: config.leeway.as_secs() as i64,
        store,
        access_tokens_only,
    };
    Ok((verifier, refresher))
}

/// Builds the introspector. `client` (the key-fetch client) only reads discovery metadata;
/// the introspection calls themselves get a client of their own that follows no redirects.
async fn build_introspector(
    config: IntrospectionConfig,
    client: &reqwest::Client,
    clock: &SharedClock,
    issuers: &[IssuerVerifier],
) -> Result<Introspector, BuildError> {
    let err = |why: &dyn fmt::Display| BuildError(format!("introspection: {why}"));
    // The endpoint speaks for one issuer: its answers are checked against that issuer's name
    // and audiences, and opaque tokens are attributed to it. Never "whatever the answer says".
    let issuer = match (&config.issuer, issuers) {
        (Some(name), _) => issuers
            .iter()
            .find(|i| *i.issuer == **name)
            .ok_or_else(|| err(&format_args!("the issuer {name:?} is not one of the configured issuers")))?,
        (None, [only]) => only,
        (None, _) => {
            return Err(err(
                &"several issuers are configured: name the one the introspection endpoint speaks for (its issuer setting)",
            ));
        }
    };
    let audiences =
        if config.audiences.is_empty() { issuer.audiences.clone() } else { config.audiences.clone() };
    let endpoint = match &config.endpoint {
        EndpointSource::Url(url) => url.clone(),
        EndpointSource::Discover(issuer) => {
            let metadata = discovery::discover(
                client,
                issuer,
                config.allow_http,
                DEFAULT_MAX_DOCUMENT_BYTES,
                DEFAULT_FETCH_TIMEOUT,
            )
            .await
            .map_err(|e| err(&e))?;
            metadata
                .introspection_endpoint
                .ok_or_else(|| err(&"the issuer's metadata has no introspection_endpoint"))?
        }
    };
    let endpoint = fetch::check_url(&endpoint, config.allow_http).map_err(|e| err(&e))?;
    Introspector::new(config, endpoint, issuer.issuer.clone(), audiences, clock.clone()).map_err(|e| err(&e))
}

fn parse_jwks(issuer: &str, document: &[u8]) -> Result<Vec<VerifyingKey>, BuildError> {
    let (set, skipped) = KeySet::from_jwks(document).map_err(|e| BuildError::issuer(issuer, e))?;
    for s in &skipped {
        tracing::warn!(issuer, kid = s.kid.as_deref().unwrap_or(""), reason = %s.reason, "skipping an unusable key");
    }
    Ok(set.keys().cloned().collect())
}
