//! The in-process issuer: its key set, its clock, and the HTTP server that publishes discovery
//! metadata, the JWKS and an introspection endpoint — with request counters and fault injection.
//!
//! The state behind an [`Issuer`] is one `Mutex`: this is test code, and a single lock keeps
//! "rotate, then serve the new set" trivially consistent.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use crate::keys::{KeyKind, SigningKey};
use crate::token::TokenBuilder;

/// The audience tokens carry unless the builder says otherwise.
pub const DEFAULT_AUDIENCE: &str = "https://api.example.com";

/// `Cache-Control: max-age` of the JWKS unless the builder says otherwise: five minutes, a common
/// choice of real identity providers.
pub const DEFAULT_JWKS_MAX_AGE_SECS: u64 = 300;

/// The `issuer` that discovery documents carry under [`Fault::WrongIssuer`].
pub const WRONG_ISSUER: &str = "https://evil.example.com";

/// The body served under [`Fault::Garbage`].
pub const GARBAGE_BODY: &str = "not json{";

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

    /// How many HTTP requests `endpoint` has received (counted on arrival, faults included).
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.inner.shared.counters[endpoint.index()].load(Ordering::SeqCst)
    }

    /// Injects `fault` into every later request to `endpoint` (`Fault::None` clears it).
    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.state().faults.insert(endpoint, fault);
    }

    /// Makes the introspection endpoint answer `{"active": false}` for tokens with this `jti`.
    pub fn revoke(&self, jti: &str) {
        self.state().revoked_jtis.insert(jti.to_owned());
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
        let fault = self.state().faults.get(&endpoint).cloned().unwrap_or_default();
        match fault {
            Fault::Status(code) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Err((status, "injected fault").into_response())
            }
            Fault::Hang => std::future::pending().await,
            Fault::Garbage => Err(json_response(StatusCode::OK, GARBAGE_BODY.to_owned())),
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(Fault::None)
            }
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
            "token_endpoint": format!("{url}/token"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        })
    }

    /// RFC 7662 for the issuer's own tokens: signature by a published key, `iss` exact, not
    /// expired at [`Shared::now`], `jti` not revoked. Audience is not checked (the caller does).
    fn introspect(&self, token: &str) -> Option<Map<String, Value>> {
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
        let revoked = claims
            .get("jti")
            .and_then(Value::as_str)
            .is_some_and(|jti| self.state().revoked_jtis.contains(jti));
        (exp > now && iss_ok && !revoked).then_some(claims)
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
    let fault = match shared.arrive(Endpoint::Jwks).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    let body = if fault == Fault::EmptyKeys {
        json!({ "keys": [] }).to_string()
    } else {
        shared.state().jwks().to_string()
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
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(response) = shared.arrive(Endpoint::Introspect).await {
        return response;
    }
    let Some(token) = form.get("token") else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_request" }))).into_response();
    };
    let body = match shared.introspect(token) {
        Some(mut claims) => {
            claims.insert("active".into(), json!(true));
            claims.insert("token_type".into(), json!("Bearer"));
            Value::Object(claims)
        }
        None => json!({ "active": false }),
    };
    json_response(StatusCode::OK, body.to_string())
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
