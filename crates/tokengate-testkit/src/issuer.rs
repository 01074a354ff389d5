//! The in-process issuer: its key set, its clock, and the HTTP server that publishes discovery
//! metadata, the JWKS and an introspection endpoint — with request counters and fault injection.
//!
//! The state behind an [`Issuer`] is one `Mutex`: this is test code, and a single lock keeps
//! "rotate, then serve the new set" trivially consistent.
//!
//! Introspection (RFC 7662) authenticates its caller as a confidential client (RFC 7662 §2.1)
//! with `client_secret_basic` or `client_secret_post` (RFC 6749 §2.3.1), answers for the issuer's
//! JWTs and for the opaque tokens it issued, and can be made to answer narrower, stale or broken
//! responses through [`Issuer::set_introspection_override`] and [`Fault`]s.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use crate::keys::{KeyKind, SigningKey};
use crate::token::{OpaqueTokenBuilder, TokenBuilder};

/// The audience tokens carry unless the builder says otherwise.
pub const DEFAULT_AUDIENCE: &str = "https://api.example.com";

/// `Cache-Control: max-age` of the JWKS unless the builder says otherwise: five minutes, a common
/// choice of real identity providers.
pub const DEFAULT_JWKS_MAX_AGE_SECS: u64 = 300;

/// The `issuer` that discovery documents carry under [`Fault::WrongIssuer`].
pub const WRONG_ISSUER: &str = "https://evil.example.com";

/// The body served under [`Fault::Garbage`].
pub const GARBAGE_BODY: &str = "not json{";

/// The introspection client's `client_id` unless the builder says otherwise.
pub const INTROSPECTION_CLIENT_ID: &str = "gateway";

/// The introspection client's `client_secret` unless the builder says otherwise.
pub const INTROSPECTION_CLIENT_SECRET: &str = "gateway-secret";

/// The introspection answer under [`Fault::ActiveNotBool`].
const ACTIVE_NOT_BOOL_BODY: &str = r#"{"active":"true"}"#;

/// The introspection answer under [`Fault::NotObject`].
const NOT_OBJECT_BODY: &str = "[]";

/// One of the issuer's HTTP endpoints, for counting requests and injecting faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /.well-known/openid-configuration`.
    Discovery,
    /// `GET /.well-known/oauth-authorization-server` (RFC 8414).
    AuthServerMetadata,
    /// `GET /jwks`.
    Jwks,
    /// `POST /introspect` (RFC 7662).
    Introspect,
}

impl Endpoint {
    const COUNT: usize = 4;

    fn index(self) -> usize {
        match self {
            Endpoint::Discovery => 0,
            Endpoint::AuthServerMetadata => 1,
            Endpoint::Jwks => 2,
            Endpoint::Introspect => 3,
        }
    }
}

/// A fault injected into one endpoint; it applies to every request until replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer with this status code (an invalid code becomes 500) and a short text body.
    Status(u16),
    /// Never answer: the request waits until the client gives up.
    Hang,
    /// Answer 200, `Content-Type: application/json`, body `not json{`.
    Garbage,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// JWKS only: answer 200 `{"keys":[]}` (other endpoints answer normally).
    EmptyKeys,
    /// Discovery documents only: `issuer` is `https://evil.example.com` (other endpoints answer
    /// normally).
    WrongIssuer,
    /// Introspection only: answer 200 `{"active":"true"}` — a string, not a boolean (other
    /// endpoints answer as under [`Fault::Garbage`]).
    ActiveNotBool,
    /// Introspection only: answer 200 `[]` — JSON, but not an object (other endpoints answer as
    /// under [`Fault::Garbage`]).
    NotObject,
    /// Introspection only: the normal answer with a member `"padding"` of this many `x`s, so the
    /// body is a valid answer just over that size — for testing a response size cap (other
    /// endpoints answer normally).
    Padded(usize),
    /// JWKS only: answer 200 with the current, valid key set padded (with an extra member that
    /// parsers ignore) to at least this many bytes, with a `Content-Length`. Only a size cap
    /// refuses it. Other endpoints answer normally.
    Oversized(usize),
    /// Hold each request until [`Issuer::release`] is called for the endpoint, then answer it
    /// under the inner fault — the one in force when the request arrived. Lets a test order
    /// events exactly: "this fetch is in flight, now that happens, now the fetch answers".
    Held(Box<Fault>),
}

/// An in-process OAuth2/OIDC issuer serving HTTP on `127.0.0.1`; cheap to clone.
///
/// The server runs on a tokio task of the runtime that called [`Issuer::start`] and stops
/// accepting connections when the last clone is dropped.
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<IssuerInner>,
}

struct IssuerInner {
    shared: Arc<Shared>,
    server: AbortHandle,
}

impl Drop for IssuerInner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("url", &self.inner.shared.url)
            .field("audience", &self.inner.shared.audience)
            .finish_non_exhaustive()
    }
}

/// What the HTTP handlers and the [`Issuer`] handle share.
struct Shared {
    url: String,
    addr: SocketAddr,
    audience: String,
    jwks_max_age: u64,
    counters: [AtomicU64; Endpoint::COUNT],
    /// Introspection requests whose answer is not sent yet (see [`InFlight`]).
    introspections_in_flight: AtomicU64,
    /// The highest value `introspections_in_flight` ever had.
    max_introspections_in_flight: AtomicU64,
    /// JWKS requests whose answer is not sent yet (see [`Counted`]).
    jwks_in_flight: AtomicU64,
    /// Requests held by [`Fault::Held`], per endpoint, and what releases them.
    held: [AtomicU64; Endpoint::COUNT],
    release: [tokio::sync::Notify; Endpoint::COUNT],
    client_id: String,
    client_secret: String,
    state: Mutex<IssuerState>,
}

struct IssuerState {
    /// Every key ever made, published or not, so removed keys can still sign.
    keys: Vec<Arc<SigningKey>>,
    /// Kids in the JWKS, in publication order.
    published: Vec<String>,
    current: HashMap<KeyKind, String>,
    /// How many keys of each family were made: the next kid is `<prefix>-<n+1>`.
    made: HashMap<KeyKind, u32>,
    now: Option<i64>,
    faults: HashMap<Endpoint, Fault>,
    revoked_jtis: HashSet<String>,
    /// Whole tokens revoked through [`Issuer::revoke_token`], opaque or JWT.
    revoked_tokens: HashSet<String>,
    /// Opaque tokens issued, with the claims introspection answers for them.
    opaque: HashMap<String, Map<String, Value>>,
    /// Merged over every active introspection answer.
    introspection_override: Option<Map<String, Value>>,
    /// `"basic"` or `"post"`, one per successfully authenticated introspection call.
    introspection_auth_methods: Vec<String>,
}

impl IssuerState {
    fn new_key(&mut self, kind: KeyKind, publish: bool) -> String {
        let n = self.made.entry(kind).or_insert(0);
        *n += 1;
        let kid = format!("{}-{n}", kind.kid_prefix());
        self.keys.push(Arc::new(SigningKey::generate(kind, &kid)));
        if publish {
            self.published.push(kid.clone());
        }
        self.current.insert(kind, kid.clone());
        kid
    }

    fn key(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    fn jwks(&self) -> Value {
        let keys: Vec<Value> =
            self.published.iter().filter_map(|kid| self.key(kid)).map(|key| key.jwk.clone()).collect();
        json!({ "keys": keys })
    }
}

/// Configures an [`Issuer`]; get one from [`Issuer::builder`].
#[derive(Clone, Debug)]
pub struct IssuerBuilder {
    audience: String,
    rsa_only: bool,
    jwks_max_age: u64,
    client_id: String,
    client_secret: String,
}

impl IssuerBuilder {
    /// The audience minted tokens carry (default `https://api.example.com`).
    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = audience.to_owned();
        self
    }

    /// Publish only the RSA key. The P-256 and Ed25519 keys still exist, unpublished, so tokens
    /// of those families can be minted and are refused for an unknown `kid`.
    pub fn rsa_only(mut self) -> Self {
        self.rsa_only = true;
        self
    }

    /// The JWKS `Cache-Control: max-age`, in seconds (default 300).
    pub fn jwks_max_age(mut self, secs: u64) -> Self {
        self.jwks_max_age = secs;
        self
    }

    /// The credentials the introspection endpoint requires of its caller (default
    /// [`INTROSPECTION_CLIENT_ID`] / [`INTROSPECTION_CLIENT_SECRET`]). Any characters are fine:
    /// `client_secret_basic` callers must URL-encode both before Base64 (RFC 6749 §2.3.1).
    pub fn introspection_client(mut self, client_id: &str, client_secret: &str) -> Self {
        self.client_id = client_id.to_owned();
        self.client_secret = client_secret.to_owned();
        self
    }

    /// Generates the keys, binds `127.0.0.1:0` and starts serving.
    ///
    /// # Panics
    /// If key generation or binding a loopback port fails, or outside a tokio runtime.
    pub async fn build(self) -> Issuer {
        crate::install_crypto_provider();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");

        let mut state = IssuerState {
            keys: Vec::new(),
            published: Vec::new(),
            current: HashMap::new(),
            made: HashMap::new(),
            now: None,
            faults: HashMap::new(),
            revoked_jtis: HashSet::new(),
            revoked_tokens: HashSet::new(),
            opaque: HashMap::new(),
            introspection_override: None,
            introspection_auth_methods: Vec::new(),
        };
        for kind in KeyKind::ALL {
            state.new_key(kind, kind == KeyKind::Rsa || !self.rsa_only);
        }

        let shared = Arc::new(Shared {
            url: format!("http://{addr}"),
            addr,
            audience: self.audience,
            jwks_max_age: self.jwks_max_age,
            counters: Default::default(),
            introspections_in_flight: AtomicU64::new(0),
            max_introspections_in_flight: AtomicU64::new(0),
            jwks_in_flight: AtomicU64::new(0),
            held: Default::default(),
            release: Default::default(),
            client_id: self.client_id,
            client_secret: self.client_secret,
            state: Mutex::new(state),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/oauth-authorization-server", get(auth_server_metadata))
            .route("/jwks", get(jwks))
            .route("/introspect", post(introspect))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "testkit issuer stopped");
            }
        });
        Issuer { inner: Arc::new(IssuerInner { shared, server: server.abort_handle() }) }
    }
}

impl Issuer {
    /// Starts an issuer with one RSA-2048 key (kid `rsa-1`), one P-256 key (`ec-1`) and one
    /// Ed25519 key (`ed-1`), serving HTTP on `127.0.0.1:0`, audience `https://api.example.com`.
    ///
    /// # Panics
    /// As [`IssuerBuilder::build`].
    pub async fn start() -> Issuer {
        Issuer::builder().build().await
    }

    /// A builder for a non-default issuer.
    pub fn builder() -> IssuerBuilder {
        IssuerBuilder {
            audience: DEFAULT_AUDIENCE.to_owned(),
            rsa_only: false,
            jwks_max_age: DEFAULT_JWKS_MAX_AGE_SECS,
            client_id: INTROSPECTION_CLIENT_ID.to_owned(),
            client_secret: INTROSPECTION_CLIENT_SECRET.to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT`; this is also the `iss` of minted tokens.
    pub fn url(&self) -> String {
        self.inner.shared.url.clone()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.shared.addr
    }

    /// `url() + "/jwks"`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.inner.shared.url)
    }

    /// `url() + "/introspect"` (RFC 7662).
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.inner.shared.url)
    }

    /// The `client_id` the introspection endpoint requires of its caller.
    pub fn introspection_client_id(&self) -> String {
        self.inner.shared.client_id.clone()
    }

    /// The `client_secret` the introspection endpoint requires of its caller.
    pub fn introspection_client_secret(&self) -> String {
        self.inner.shared.client_secret.clone()
    }

    /// The audience minted tokens carry.
    pub fn audience(&self) -> String {
        self.inner.shared.audience.clone()
    }

    /// The current public JWKS document, `{"keys":[...]}`.
    pub fn jwks(&self) -> Value {
        self.state().jwks()
    }

    /// The current kid of a key family.
    pub fn kid(&self, kind: KeyKind) -> String {
        self.current_key(kind).kid.clone()
    }

    /// The current public key of a family as an SPKI `-----BEGIN PUBLIC KEY-----` PEM.
    pub fn public_key_pem(&self, kind: KeyKind) -> String {
        self.current_key(kind).public_key_pem()
    }

    /// The public key named `kid` (published or not) as an SPKI PEM.
    ///
    /// # Panics
    /// If the issuer never had a key named `kid`.
    pub fn public_key_pem_of(&self, kid: &str) -> String {
        self.key_by_kid(kid).public_key_pem()
    }

    /// Adds a new key of `kind` with a fresh kid (`rsa-2`, ...) and makes it the one new tokens
    /// use; the old key stays in the JWKS. Returns the new kid.
    pub fn rotate(&self, kind: KeyKind) -> String {
        // Generate outside the lock: RSA keygen takes ~100 ms and handlers read the state.
        let n = {
            let mut state = self.state();
            let n = state.made.entry(kind).or_insert(0);
            *n += 1;
            *n
        };
        let kid = format!("{}-{n}", kind.kid_prefix());
        let key = Arc::new(SigningKey::generate(kind, &kid));
        let mut state = self.state();
        state.keys.push(key);
        state.published.push(kid.clone());
        state.current.insert(kind, kid.clone());
        kid
    }

    /// Drops the key named `kid` from the JWKS. Tokens can still be signed with it through
    /// [`TokenBuilder::kid_key`]; if it was its family's current key, it stays current (new
    /// tokens then carry an unpublished kid) until the next [`rotate`](Self::rotate).
    pub fn remove_key(&self, kid: &str) {
        self.state().published.retain(|published| published != kid);
    }

    /// Fixes the time used when minting (`None`: the system clock).
    pub fn set_now(&self, unix_secs: Option<i64>) {
        self.state().now = unix_secs;
    }

    /// The time used when minting, in seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        self.inner.shared.now()
    }

    /// A builder for a token; unchanged, it signs a valid RS256 token.
    pub fn token(&self) -> TokenBuilder {
        TokenBuilder::new(self.clone())
    }

    /// A builder for an OpenID Connect Back-Channel Logout token for the relying party
    /// `client_id`; unchanged, it signs a valid one — see [`TokenBuilder::logout`].
    pub fn logout_token(&self, client_id: &str) -> TokenBuilder {
        TokenBuilder::logout(self.clone(), client_id)
    }

    /// A builder for a Security Event Token (RFC 8417) for the receiver `audience`, holding
    /// one event of `event_type` about `subject` — see [`TokenBuilder::security_event`].
    pub fn security_event(&self, audience: &str, event_type: &str, subject: Value) -> TokenBuilder {
        TokenBuilder::security_event(self.clone(), audience, event_type, subject)
    }

    /// A builder for an opaque (non-JWT) token that only introspection can vouch for.
    pub fn opaque_token(&self) -> OpaqueTokenBuilder {
        OpaqueTokenBuilder::new(self.clone())
    }

    /// How many HTTP requests `endpoint` has received (counted on arrival, faults included).
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.inner.shared.counters[endpoint.index()].load(Ordering::SeqCst)
    }

    /// How many introspection requests are being handled now: counted on arrival, uncounted when
    /// the answer is ready or when the request is abandoned (a client that gives up on a
    /// [`Fault::Hang`] or [`Fault::Slow`] request is uncounted once the server notices the closed
    /// connection).
    pub fn introspections_in_flight(&self) -> u64 {
        self.inner.shared.introspections_in_flight.load(Ordering::SeqCst)
    }

    /// The highest [`introspections_in_flight`](Self::introspections_in_flight) ever seen: 1 means
    /// the caller never had two introspection calls open at once.
    pub fn max_introspections_in_flight(&self) -> u64 {
        self.inner.shared.max_introspections_in_flight.load(Ordering::SeqCst)
    }

    /// How many JWKS requests are being handled now: counted on arrival, uncounted when the
    /// answer is ready or the request is abandoned (as for
    /// [`introspections_in_flight`](Self::introspections_in_flight)). Under [`Fault::Hang`] a
    /// fetch that is still waiting shows here.
    pub fn jwks_in_flight(&self) -> u64 {
        self.inner.shared.jwks_in_flight.load(Ordering::SeqCst)
    }

    /// How many requests to `endpoint` are held by [`Fault::Held`] right now, waiting for
    /// [`release`](Self::release).
    pub fn held(&self, endpoint: Endpoint) -> u64 {
        self.inner.shared.held[endpoint.index()].load(Ordering::SeqCst)
    }

    /// Lets every request to `endpoint` that [`Fault::Held`] holds now go on; later ones are
    /// held again while the fault stays.
    pub fn release(&self, endpoint: Endpoint) {
        self.inner.shared.release[endpoint.index()].notify_waiters();
    }

    /// The client authentication method of every successfully authenticated introspection call,
    /// in order: `"basic"` (`client_secret_basic`) or `"post"` (`client_secret_post`).
    pub fn introspection_auth_methods(&self) -> Vec<String> {
        self.state().introspection_auth_methods.clone()
    }

    /// Injects `fault` into every later request to `endpoint` (`Fault::None` clears it).
    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.state().faults.insert(endpoint, fault);
    }

    /// Makes the introspection endpoint answer `{"active": false}` for tokens with this `jti`,
    /// JWT or opaque.
    pub fn revoke(&self, jti: &str) {
        self.state().revoked_jtis.insert(jti.to_owned());
    }

    /// Makes the introspection endpoint answer `{"active": false}` for `token`: an opaque token,
    /// or a JWT — which also revokes every token with the same `jti`, as [`revoke`](Self::revoke)
    /// does. A JWT without a `jti` (or any other string) is revoked as that exact text.
    pub fn revoke_token(&self, token: &str) {
        let jti = unverified_jti(token);
        let mut state = self.state();
        state.revoked_tokens.insert(token.to_owned());
        if let Some(jti) = jti {
            state.revoked_jtis.insert(jti);
        }
    }

    /// Members merged over every *active* introspection answer (`None`: answer the token's own
    /// claims). A member set to `null` is removed, as in a JSON Merge Patch (RFC 7396), so
    /// `{"scope": "read"}` narrows the scopes, `{"iss": "https://other"}`, `{"aud": "x"}` or
    /// `{"exp": 1}` contradict the token, and `{"exp": null}` drops `exp`. Inactive answers stay
    /// `{"active": false}`; for bodies that are not an object use [`Fault`]s.
    ///
    /// # Panics
    /// If `members` is `Some` of anything but a JSON object.
    pub fn set_introspection_override(&self, members: Option<Value>) {
        let members = members.map(|members| match members {
            Value::Object(members) => members,
            other => panic!("tokengate-testkit: an introspection override must be an object, got {other}"),
        });
        self.state().introspection_override = members;
    }

    pub(crate) fn remember_opaque(&self, token: String, claims: Map<String, Value>) {
        self.state().opaque.insert(token, claims);
    }

    pub(crate) fn current_key(&self, kind: KeyKind) -> Arc<SigningKey> {
        let state = self.state();
        let kid = &state.current[&kind];
        state.key(kid).expect("current key exists").clone()
    }

    pub(crate) fn key_by_kid(&self, kid: &str) -> Arc<SigningKey> {
        self.state()
            .key(kid)
            .unwrap_or_else(|| panic!("tokengate-testkit: the issuer never had a key {kid:?}"))
            .clone()
    }

    fn state(&self) -> MutexGuard<'_, IssuerState> {
        self.inner.shared.state()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, IssuerState> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to tests, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> i64 {
        self.state().now.unwrap_or_else(|| {
            let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
        })
    }

    /// Counts the request and applies the endpoint's fault: `Err` is the response to send
    /// instead of the normal one; `Ok` carries the fault for endpoint-specific handling.
    async fn arrive(&self, endpoint: Endpoint) -> Result<Fault, Response> {
        self.counters[endpoint.index()].fetch_add(1, Ordering::SeqCst);
        let mut fault = self.state().faults.get(&endpoint).cloned().unwrap_or_default();
        if let Fault::Held(inner) = fault {
            let released = self.release[endpoint.index()].notified();
            let mut released = std::pin::pin!(released);
            // Registered before it is counted, so a `release` after `held` shows it is not lost.
            released.as_mut().enable();
            let _held = Counted::enter(&self.held[endpoint.index()]);
            released.await;
            fault = *inner;
        }
        match fault {
            Fault::Status(code) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Err((status, "injected fault").into_response())
            }
            Fault::Hang => std::future::pending().await,
            Fault::ActiveNotBool if endpoint == Endpoint::Introspect => {
                Err(json_response(StatusCode::OK, ACTIVE_NOT_BOOL_BODY.to_owned()))
            }
            Fault::NotObject if endpoint == Endpoint::Introspect => {
                Err(json_response(StatusCode::OK, NOT_OBJECT_BODY.to_owned()))
            }
            Fault::Garbage | Fault::ActiveNotBool | Fault::NotObject => {
                Err(json_response(StatusCode::OK, GARBAGE_BODY.to_owned()))
            }
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(Fault::None)
            }
            // A held request answers under its inner fault; holding it twice is not meant.
            Fault::Held(_) => Ok(Fault::None),
            other => Ok(other),
        }
    }

    fn metadata(&self, fault: &Fault) -> Value {
        let url = &self.url;
        let issuer = if *fault == Fault::WrongIssuer { WRONG_ISSUER } else { url };
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{url}/jwks"),
            "introspection_endpoint": format!("{url}/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "token_endpoint": format!("{url}/token"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        })
    }

    /// RFC 7662 for the issuer's own tokens: the active answer (claims, `active`, `token_type`,
    /// then the override), or `None` for an inactive token.
    fn introspect(&self, token: &str) -> Option<Map<String, Value>> {
        let opaque = self.state().opaque.get(token).cloned();
        let mut claims = match opaque {
            Some(claims) => self.opaque_is_active(&claims).then_some(claims)?,
            None => self.verify_jwt(token)?,
        };
        let state = self.state();
        if state.revoked_tokens.contains(token) {
            return None;
        }
        claims.insert("active".into(), json!(true));
        claims.insert("token_type".into(), json!("Bearer"));
        for (name, value) in state.introspection_override.iter().flatten() {
            if value.is_null() {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
        Some(claims)
    }

    /// An opaque token is active until its `exp` (if it has one) and unless its `jti` is revoked.
    fn opaque_is_active(&self, claims: &Map<String, Value>) -> bool {
        let unexpired = claims.get("exp").is_none_or(|exp| exp.as_i64().is_some_and(|exp| exp > self.now()));
        unexpired && !self.jti_revoked(claims)
    }

    fn jti_revoked(&self, claims: &Map<String, Value>) -> bool {
        claims.get("jti").and_then(Value::as_str).is_some_and(|jti| self.state().revoked_jtis.contains(jti))
    }

    /// A JWT's claims if its signature verifies with a published key, `iss` is exact, it is not
    /// expired at [`Shared::now`] and its `jti` is not revoked. Audience is not checked (the
    /// caller does).
    fn verify_jwt(&self, token: &str) -> Option<Map<String, Value>> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let jwk = {
            let state = self.state();
            let kid = header.kid.as_deref()?;
            if !state.published.iter().any(|published| published == kid) {
                return None;
            }
            state.key(kid)?.jwk.clone()
        };
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).ok()?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?;
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        // Time is checked below against the issuer's clock, which tests may have moved.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).ok()?.claims;
        let now = self.now();
        let exp = claims.get("exp").and_then(Value::as_i64)?;
        let iss_ok = claims.get("iss").and_then(Value::as_str) == Some(self.url.as_str());
        (exp > now && iss_ok && !self.jti_revoked(&claims)).then_some(claims)
    }

    /// Client authentication of an introspection call (RFC 6749 §2.3.1): the method used, or why
    /// the call is refused.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        params: &[(String, String)],
    ) -> Result<&'static str, ClientAuthError> {
        let posted_id = single_param(params, "client_id");
        let posted_secret = single_param(params, "client_secret");
        let (method, credentials) = match headers.get(header::AUTHORIZATION) {
            Some(_) if posted_secret.is_some() => return Err(ClientAuthError::TwoMethods),
            Some(value) => ("basic", basic_credentials(value)),
            None => {
                ("post", posted_id.zip(posted_secret).map(|(id, secret)| (id.to_owned(), secret.to_owned())))
            }
        };
        match credentials {
            Some((id, secret)) if id == self.client_id && secret == self.client_secret => Ok(method),
            _ => Err(ClientAuthError::InvalidClient),
        }
    }
}

/// Why an introspection call's client authentication failed.
enum ClientAuthError {
    /// Missing, malformed or wrong credentials: 401 `invalid_client`, with a `WWW-Authenticate`
    /// challenge (RFC 6749 §5.2 requires one when the `Authorization` header was used).
    InvalidClient,
    /// Both `client_secret_basic` and `client_secret_post`: 400 `invalid_request` (RFC 6749 §5.2).
    TwoMethods,
}

impl IntoResponse for ClientAuthError {
    fn into_response(self) -> Response {
        match self {
            ClientAuthError::InvalidClient => {
                let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"introspection\""),
                );
                response
            }
            ClientAuthError::TwoMethods => oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
        }
    }
}

/// Counts one introspection request in flight for as long as it lives: dropped when the handler
/// returns its answer, or with the handler's future when the server abandons the request.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.introspections_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_introspections_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.introspections_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Adds one to a counter for as long as it lives: dropped when the handler answers, or with
/// the handler's future when the server abandons the request. Counts JWKS requests in flight
/// and requests held by [`Fault::Held`].
struct Counted<'a>(&'a AtomicU64);

impl<'a> Counted<'a> {
    fn enter(counter: &'a AtomicU64) -> Counted<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    metadata_response(&shared, Endpoint::Discovery).await
}

async fn auth_server_metadata(State(shared): State<Arc<Shared>>) -> Response {
    metadata_response(&shared, Endpoint::AuthServerMetadata).await
}

async fn metadata_response(shared: &Shared, endpoint: Endpoint) -> Response {
    match shared.arrive(endpoint).await {
        Ok(fault) => json_response(StatusCode::OK, shared.metadata(&fault).to_string()),
        Err(response) => response,
    }
}

async fn jwks(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let _in_flight = Counted::enter(&shared.jwks_in_flight);
    let fault = match shared.arrive(Endpoint::Jwks).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    let body = match fault {
        Fault::EmptyKeys => json!({ "keys": [] }).to_string(),
        Fault::Oversized(size) => {
            let mut document = shared.state().jwks();
            document["padding"] = Value::String("x".repeat(size));
            return json_response(StatusCode::OK, document.to_string());
        }
        _ => shared.state().jwks().to_string(),
    };
    let etag = strong_etag(&body);
    let not_modified = headers.get_all(header::IF_NONE_MATCH).iter().any(|value| etag_matches(value, &etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        json_response(StatusCode::OK, body)
    };
    let response_headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response_headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={}", shared.jwks_max_age)) {
        response_headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

async fn introspect(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let fault = match shared.arrive(Endpoint::Introspect).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    // Parameters must not repeat (RFC 6749 §3.2), which a map would hide.
    let Ok(Form(params)) = form else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let method = match shared.authenticate(&headers, &params) {
        Ok(method) => method,
        Err(error) => return error.into_response(),
    };
    shared.state().introspection_auth_methods.push(method.to_owned());
    let Some(token) = single_param(&params, "token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let mut body = match shared.introspect(token) {
        Some(answer) => Value::Object(answer),
        None => json!({ "active": false }),
    };
    if let (Fault::Padded(bytes), Value::Object(members)) = (fault, &mut body) {
        members.insert("padding".into(), Value::String("x".repeat(bytes)));
    }
    json_response(StatusCode::OK, body.to_string())
}

/// The value of a form parameter that appears exactly once.
fn single_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = params.iter().filter(|(param, _)| param == name).map(|(_, value)| value.as_str());
    let value = values.next()?;
    values.next().is_none().then_some(value)
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))` decoded (RFC 6749 §2.3.1):
/// Base64, split at the first `:`, then each half form-URL-decoded (`+` is a space).
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_url_decode(id)?, form_url_decode(secret)?))
}

fn form_url_decode(text: &str) -> Option<String> {
    let plus_as_space = text.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space).decode_utf8().ok().map(|text| text.into_owned())
}

/// The `jti` of a JWT, read without verifying anything; `None` for anything else.
fn unverified_jti(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: Map<String, Value> = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("jti")?.as_str().map(str::to_owned)
}

/// An OAuth 2.0 error answer, `{"error": code}` (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, code: &str) -> Response {
    json_response(status, json!({ "error": code }).to_string())
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A strong ETag derived from the body, so it changes exactly when the served key set does.
fn strong_etag(body: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// `If-None-Match` uses the weak comparison (RFC 9110 §13.1.2): a `W/` prefix is ignored.
fn etag_matches(if_none_match: &HeaderValue, etag: &str) -> bool {
    let Ok(value) = if_none_match.to_str() else {
        return false;
    };
    value
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag)
}
