//! Shared helpers for the end-to-end tests of tokengate.
//!
//! Every test gets its own [`Harness`]: a testkit [`Issuer`] on loopback, a [`TokenGateLayer`]
//! built against it with a [`ManualClock`] that the issuer shares (so minting and verifying agree
//! on the time and tests move time instead of sleeping), and a real app — axum 0.8 or a plain
//! hyper 1 `service_fn` — served on `127.0.0.1:0`. The inner handler counts its calls and answers
//! JSON describing what it saw ([`Seen`]), so a test can assert both sides of the gate.
//!
//! Requests go out with `reqwest`, except where a path must reach the server byte for byte:
//! reqwest (through the `url` crate) resolves `.`/`..` and `%2e%2e` itself, so the path tests use
//! [`Harness::raw_get`] (a hyper client connection) or [`Harness::raw_request_bytes`] (plain TCP).

#![warn(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::routing::any;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::{Value, json};
use tokengate::clock::ManualClock;
use tokengate::policy::RoutePolicy;
use tokengate::{Algorithm, IssuerConfig, NonCanonicalPath, Principal, TokenGateBuilder, TokenGateLayer};
use tokengate_testkit::Issuer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The fixed time (seconds since the Unix epoch) every harness starts at: 2023-11-14T22:13:20Z.
pub const T0: i64 = 1_700_000_000;

/// The realm every harness's layer uses (the library's default).
pub const REALM: &str = "tokengate";

/// The path most tests request; the default policy makes it `local`.
pub const API_PATH: &str = "/api/resource";

/// The algorithms the default issuer configuration allows: every asymmetric one the testkit
/// can sign.
pub const ASYMMETRIC_ALGORITHMS: [Algorithm; 4] =
    [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];

/// Which real server serves the layered app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// An axum 0.8 `Router` with the layer, served with `axum::serve`.
    Axum,
    /// A hyper 1 service (`tower::ServiceBuilder` + `service_fn`) served by hyper-util's
    /// `auto::Builder` through `TowerToHyperService`.
    Hyper,
}

/// Both servers, for tests that run a case against each.
pub const SERVERS: [Server; 2] = [Server::Axum, Server::Hyper];

/// Aborts a spawned server task when dropped, so a test's servers end with the test.
#[derive(Debug)]
pub struct ServerGuard(AbortHandle);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A started issuer, a layer built against it, and a real app behind the layer.
pub struct Harness {
    /// The testkit issuer the layer trusts; its clock is pinned to the harness's.
    pub issuer: Issuer,
    /// `http://127.0.0.1:PORT` of the layered app.
    pub base_url: String,
    /// The app's address.
    pub addr: SocketAddr,
    /// How many times the inner handler ran.
    pub calls: Arc<AtomicUsize>,
    /// A reqwest client that never uses a proxy.
    pub client: reqwest::Client,
    /// The layer's clock (the issuer's minting time follows it through [`Harness::advance`]).
    pub clock: ManualClock,
    /// The layer in front of the app.
    pub layer: TokenGateLayer,
    _server: ServerGuard,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").field("base_url", &self.base_url).field("calls", &self.calls()).finish()
    }
}

/// An issuer started with its minting clock pinned at [`T0`], and a [`ManualClock`] at the same
/// time for the layer.
pub async fn start_issuer() -> (Issuer, ManualClock) {
    let issuer = Issuer::start().await;
    issuer.set_now(Some(T0));
    (issuer, ManualClock::new(T0))
}

/// The usual configuration of `issuer`: its URL, its audience, [`ASYMMETRIC_ALGORITHMS`], keys
/// from its JWKS URL.
pub fn issuer_config(issuer: &Issuer) -> IssuerConfig {
    bare_issuer_config(issuer).jwks_url(issuer.jwks_uri())
}

/// [`issuer_config`] without any key source, for tests that add their own (PEM, inline JWKS).
pub fn bare_issuer_config(issuer: &Issuer) -> IssuerConfig {
    IssuerConfig::new(issuer.url()).audience(issuer.audience()).algorithms(ASYMMETRIC_ALGORITHMS)
}

/// A reqwest client for loopback tests: no proxy, short timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// Builds a layer with `clock`, `policy` and whatever `gate` configured (issuers, limits).
///
/// # Panics
/// If the builder refuses the configuration.
pub async fn build_layer(
    builder: TokenGateBuilder,
    clock: &ManualClock,
    policy: RoutePolicy,
) -> TokenGateLayer {
    builder
        .clock(clock.clone())
        .policy(policy)
        .http_client(client())
        .build()
        .await
        .unwrap_or_else(|e| panic!("the layer should build: {e}"))
}

/// An axum harness whose one issuer is [`issuer_config`] changed by `configure_issuer`.
pub async fn axum_harness(
    policy: RoutePolicy,
    configure_issuer: impl FnOnce(IssuerConfig) -> IssuerConfig,
) -> Harness {
    Harness::start(Server::Axum, policy, |issuer| {
        TokenGateBuilder::default().issuer(configure_issuer(issuer_config(issuer)))
    })
    .await
}

/// A hyper harness whose one issuer is [`issuer_config`] changed by `configure_issuer`.
pub async fn hyper_harness(
    policy: RoutePolicy,
    configure_issuer: impl FnOnce(IssuerConfig) -> IssuerConfig,
) -> Harness {
    Harness::start(Server::Hyper, policy, |issuer| {
        TokenGateBuilder::default().issuer(configure_issuer(issuer_config(issuer)))
    })
    .await
}

/// A harness on `server` with the default policy (every route `local`) and [`issuer_config`].
pub async fn default_harness(server: Server) -> Harness {
    Harness::start(server, RoutePolicy::new(), |issuer| {
        TokenGateBuilder::default().issuer(issuer_config(issuer))
    })
    .await
}

impl Harness {
    /// Starts an issuer, builds the layer from what `gate` returns (it adds the issuers; the
    /// harness adds the clock, the policy and a proxy-less HTTP client), and serves the counting
    /// app on `server`.
    ///
    /// Non-canonical paths are refused on [`Server::Axum`], where `Router::layer` runs after
    /// routing, and rewritten on [`Server::Hyper`], where the layer wraps the whole service —
    /// each the way a careful user sets it.
    pub async fn start(
        server: Server,
        policy: RoutePolicy,
        gate: impl FnOnce(&Issuer) -> TokenGateBuilder,
    ) -> Harness {
        let (issuer, clock) = start_issuer().await;
        let handling = match server {
            Server::Axum => NonCanonicalPath::Refuse,
            Server::Hyper => NonCanonicalPath::Rewrite,
        };
        let layer = build_layer(gate(&issuer).non_canonical_path(handling), &clock, policy).await;
        Harness::serve(server, issuer, clock, layer).await
    }

    /// Serves the counting app behind an already built `layer`.
    pub async fn serve(server: Server, issuer: Issuer, clock: ManualClock, layer: TokenGateLayer) -> Harness {
        let calls = Arc::new(AtomicUsize::new(0));
        let (addr, guard) = match server {
            Server::Axum => serve_router(counting_router(calls.clone()).layer(layer.clone())).await,
            Server::Hyper => serve_hyper(layer.clone(), calls.clone()).await,
        };
        Harness {
            issuer,
            base_url: format!("http://{addr}"),
            addr,
            calls,
            client: client(),
            clock,
            layer,
            _server: guard,
        }
    }

    /// How many times the inner handler ran so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Moves both the layer's clock and the issuer's minting time by `secs`.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(secs);
        self.issuer.set_now(Some(tokengate::clock::Clock::now(&self.clock)));
    }

    /// `base_url + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET path` with `Authorization: Bearer token` when a token is given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        Reply::read(request.send().await.expect("request to the app")).await
    }

    /// Sends `request` (built from [`Harness::client`]) and reads the reply.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("request to the app")).await
    }

    /// `GET path` with `token`, expecting the inner service to answer 200; returns what it saw.
    pub async fn accepted(&self, path: &str, token: Option<&str>) -> Seen {
        let before = self.calls();
        let reply = self.get(path, token).await;
        reply.seen(self, before)
    }

    /// `GET API_PATH` with `token`, expecting a refusal that did not reach the inner service.
    pub async fn refused(&self, token: &str) -> Reply {
        self.refused_at(API_PATH, Some(token)).await
    }

    /// `GET path` with an optional token, expecting a refusal that did not reach the inner service.
    pub async fn refused_at(&self, path: &str, token: Option<&str>) -> Reply {
        let before = self.calls();
        let reply = self.get(path, token).await;
        assert_ne!(reply.status, StatusCode::OK, "expected a refusal, got 200: {}", reply.body);
        assert_eq!(self.calls(), before, "the inner service must not run for a refused request");
        reply
    }

    /// Sends `request` expecting a refusal that did not reach the inner service.
    pub async fn refused_request(&self, request: reqwest::RequestBuilder) -> Reply {
        let before = self.calls();
        let reply = self.send(request).await;
        assert_ne!(reply.status, StatusCode::OK, "expected a refusal, got 200: {}", reply.body);
        assert_eq!(self.calls(), before, "the inner service must not run for a refused request");
        reply
    }

    /// `GET` with `path_and_query` sent exactly as given (no client-side normalisation), over a
    /// hyper HTTP/1.1 client connection, with an optional bearer token.
    pub async fn raw_get(&self, path_and_query: &str, token: Option<&str>) -> Reply {
        let stream = TcpStream::connect(self.addr).await.expect("connect to the app");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP/1.1 handshake");
        let driver = tokio::spawn(connection);
        let mut request = http::Request::get(path_and_query).header(header::HOST, self.addr.to_string());
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::<Bytes>::new()).expect("a valid request");
        let response = sender.send_request(request).await.expect("response from the app");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        driver.abort();
        Reply::from_parts(parts.status, parts.headers, &body)
    }

    /// Writes `request` (a complete HTTP/1.1 request, bytes as given) on a fresh TCP connection
    /// and returns the status code of the answer, for requests no HTTP client library will send
    /// (a raw `\` in the path).
    pub async fn raw_request_bytes(&self, request: &[u8]) -> (StatusCode, String) {
        raw_exchange(self.addr, request).await
    }
}

/// Writes `request` (a complete HTTP/1.1 request with `Connection: close`, bytes as given) on a
/// fresh TCP connection to `addr`; returns the answer's status and its whole text.
///
/// # Panics
/// If the connection fails or the answer is not HTTP.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (StatusCode, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the app");
    stream.write_all(request).await.expect("write the request");
    let mut buf = Vec::new();
    // The request carries `Connection: close`, so the server ends the stream after answering.
    stream.read_to_end(&mut buf).await.expect("read the answer");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, text)
}

/// A response as the client got it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// Every header.
    pub headers: HeaderMap,
    /// The body as JSON (`Value::Null` when it is empty or not JSON; see [`Reply::text`]).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Reply {
    /// Reads a reqwest response (status, headers, whole body).
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("response body");
        Reply::from_parts(status, headers, &body)
    }

    /// Builds a reply from a status, headers and body bytes.
    pub fn from_parts(status: StatusCode, headers: HeaderMap, body: &[u8]) -> Reply {
        Reply {
            status,
            headers,
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(body).into_owned(),
        }
    }

    /// The `WWW-Authenticate` header, if exactly one was sent.
    pub fn www_authenticate(&self) -> Option<&str> {
        let mut values = self.headers.get_all(header::WWW_AUTHENTICATE).iter();
        let first = values.next()?;
        assert!(values.next().is_none(), "more than one WWW-Authenticate header");
        Some(first.to_str().expect("WWW-Authenticate is visible ASCII"))
    }

    /// The body's `error`.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_else(|| panic!("no JSON `error` in the body: {:?}", self.text))
    }

    /// The body's `error_description`.
    pub fn error_description(&self) -> &str {
        self.body["error_description"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON `error_description` in the body: {:?}", self.text))
    }

    /// Asserts a 401 `invalid_token` whose description (in the body and in the challenge) is
    /// exactly `description`.
    #[track_caller]
    pub fn assert_invalid_token(&self, description: &str) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "body: {}", self.text);
        assert_eq!(
            self.www_authenticate(),
            Some(
                format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""
                )
                .as_str()
            )
        );
        assert_eq!(self.error(), "invalid_token");
        assert_eq!(self.error_description(), description);
    }

    /// Asserts a 401 `invalid_token` whose description is one of `descriptions` (for checks
    /// whose exact wording depends on which stage refuses first).
    #[track_caller]
    pub fn assert_invalid_token_one_of(&self, descriptions: &[&str]) {
        let description = self.error_description().to_owned();
        assert!(descriptions.contains(&description.as_str()), "unexpected description {description:?}");
        self.assert_invalid_token(&description);
    }

    /// Asserts a 400 `invalid_request` with exactly `description`.
    #[track_caller]
    pub fn assert_invalid_request(&self, description: &str) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "body: {}", self.text);
        assert_eq!(
            self.www_authenticate(),
            Some(
                format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_request\", error_description=\"{description}\""
                )
                .as_str()
            )
        );
        assert_eq!(self.error(), "invalid_request");
        assert_eq!(self.error_description(), description);
    }

    /// Asserts 401 with the bare challenge `Bearer realm="tokengate"` (RFC 6750 §3.1: no error
    /// code when no token was sent).
    #[track_caller]
    pub fn assert_missing_token(&self) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "body: {}", self.text);
        assert_eq!(self.www_authenticate(), Some(format!("Bearer realm=\"{REALM}\"").as_str()));
        assert_eq!(self.error(), "unauthorized");
        assert_eq!(self.error_description(), "a bearer token is required");
    }

    /// Asserts 403 `insufficient_scope` naming exactly the space-separated `scope`.
    #[track_caller]
    pub fn assert_insufficient_scope(&self, scope: &str) {
        assert_eq!(self.status, StatusCode::FORBIDDEN, "body: {}", self.text);
        assert_eq!(
            self.www_authenticate(),
            Some(
                format!(
                    "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", \
                     error_description=\"the token lacks a scope this route requires\", scope=\"{scope}\""
                )
                .as_str()
            )
        );
        assert_eq!(self.error(), "insufficient_scope");
    }

    /// Asserts 403 `access_denied` (deny-by-default), which carries no challenge.
    #[track_caller]
    pub fn assert_access_denied(&self) {
        assert_eq!(self.status, StatusCode::FORBIDDEN, "body: {}", self.text);
        assert_eq!(self.www_authenticate(), None);
        assert_eq!(self.error(), "access_denied");
        assert_eq!(self.error_description(), "no rule admits this request");
    }

    /// Asserts 200 from the inner service, that it ran exactly once more than `before`, and
    /// returns what it saw.
    #[track_caller]
    pub fn seen(&self, harness: &Harness, before: usize) -> Seen {
        assert_eq!(self.status, StatusCode::OK, "expected 200, body: {}", self.text);
        assert_eq!(harness.calls(), before + 1, "the inner service must run exactly once");
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("the inner service's JSON ({}): {e}", self.text))
    }
}

/// What the inner service saw, as it reported it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Seen {
    /// The request's path and query as the inner service got them.
    pub path: String,
    /// The principal the layer put into the extensions, if any.
    pub principal: Option<SeenPrincipal>,
}

/// The [`Principal`] the inner service found, as JSON.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SeenPrincipal {
    /// `Principal::issuer`.
    pub issuer: String,
    /// `Principal::subject`.
    pub subject: Option<String>,
    /// `Principal::client_id`.
    pub client_id: Option<String>,
    /// `Principal::scopes`.
    pub scopes: Vec<String>,
    /// `Principal::expires_at`.
    pub expires_at: Option<i64>,
    /// `Principal::claims`.
    pub claims: Value,
}

impl Seen {
    /// The principal, which the test expects to be there.
    #[track_caller]
    pub fn principal(&self) -> &SeenPrincipal {
        self.principal.as_ref().expect("the inner service should have received a Principal")
    }
}

/// The JSON the inner handlers answer: the path and query they saw and the principal, if any.
pub fn describe(uri: &http::Uri, principal: Option<&Principal>) -> Value {
    let path = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let principal = principal.map(|p| {
        json!({
            "issuer": p.issuer(),
            "subject": p.subject(),
            "client_id": p.client_id(),
            "scopes": p.scopes(),
            "expires_at": p.expires_at(),
            "claims": p.claims(),
        })
    });
    json!({ "path": path, "principal": principal })
}

async fn counting_handler(State(calls): State<Arc<AtomicUsize>>, request: Request) -> axum::Json<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    axum::Json(describe(request.uri(), request.extensions().get::<Principal>()))
}

/// An axum router that answers every path and method with [`describe`] and counts calls in
/// `calls`; add the layer with `.layer(...)`.
pub fn counting_router(calls: Arc<AtomicUsize>) -> Router {
    Router::new().route("/", any(counting_handler)).route("/{*rest}", any(counting_handler)).with_state(calls)
}

/// Serves an axum `router` on `127.0.0.1:0`.
pub async fn serve_router(router: Router) -> (SocketAddr, ServerGuard) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("axum server");
    });
    (addr, ServerGuard(task.abort_handle()))
}

/// Serves `layer` around a plain `tower::service_fn` (counting in `calls`) with hyper-util's
/// `auto::Builder` on `127.0.0.1:0`.
pub async fn serve_hyper(layer: TokenGateLayer, calls: Arc<AtomicUsize>) -> (SocketAddr, ServerGuard) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let inner = tower::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = describe(request.uri(), request.extensions().get::<Principal>());
            let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok::<_, Infallible>(response)
        }
    });
    let service = tower::ServiceBuilder::new().layer(layer).service(inner);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                // A client closing early is no failure of the server.
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, ServerGuard(task.abort_handle()))
}

/// An HTTP server that answers 404 to everything and counts the requests it gets: the target of
/// `jku` / `x5u` headers, which the layer must never fetch.
#[derive(Debug)]
pub struct CountingServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Requests received so far.
    pub hits: Arc<AtomicUsize>,
    _server: ServerGuard,
}

impl CountingServer {
    /// Starts the server on `127.0.0.1:0`.
    pub async fn start() -> CountingServer {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let router = Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                StatusCode::NOT_FOUND
            }
        });
        let (addr, guard) = serve_router(router).await;
        CountingServer { url: format!("http://{addr}"), hits, _server: guard }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Signs `header_json.payload_json` (raw text, base64url-encoded byte for byte) with HS256 and
/// `secret`, for payloads the testkit's builder cannot express (duplicate member names).
pub fn sign_raw_hs256(header_json: &str, payload_json: &str, secret: &[u8]) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    tokengate_testkit::install_crypto_provider();
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header_json), URL_SAFE_NO_PAD.encode(payload_json));
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).expect("HS256 signing");
    format!("{input}.{signature}")
}

/// Replaces segment `index` (0 header, 1 payload, 2 signature) of a compact token.
pub fn replace_segment(token: &str, index: usize, segment: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = segment;
    parts.join(".")
}

/// Signs `builder`'s token and returns it with the exact claims it carries.
pub fn mint(builder: tokengate_testkit::TokenBuilder) -> (String, Value) {
    let claims = builder.clone().parts().1;
    (builder.sign(), claims)
}

/// RFC 6749 §3.3 `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, written out here rather than
/// taken from the library, so the tests check the library against the RFC.
fn is_rfc6749_scope_token(piece: &str) -> bool {
    !piece.is_empty()
        && piece.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Asserts that the inner service got a principal from `issuer` built from exactly `claims`:
/// subject, client id, scopes (`scope`, or the `scp` array), expiry, and every raw claim.
#[track_caller]
pub fn assert_principal(seen: &Seen, issuer: &str, claims: &Value) {
    let principal = seen.principal();
    assert_eq!(principal.issuer, issuer);
    assert_eq!(principal.subject.as_deref(), claims["sub"].as_str());
    let client_id = claims["client_id"].as_str().or(claims["azp"].as_str());
    assert_eq!(principal.client_id.as_deref(), client_id);
    let scopes: Vec<String> = match (&claims["scope"], &claims["scp"]) {
        // RFC 6749 §3.3: scope-tokens (printable ASCII but space, `"` and `\`) separated by
        // spaces; a piece that is not one scope-token is left out, never split further.
        (Value::String(s), _) => {
            s.split(' ').filter(|t| is_rfc6749_scope_token(t)).map(str::to_owned).collect()
        }
        // One scope per item, by the same rule.
        (Value::Null, Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().expect("scp items are strings"))
            .filter(|i| is_rfc6749_scope_token(i))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    assert_eq!(principal.scopes, scopes);
    assert_eq!(principal.expires_at, claims["exp"].as_f64().map(|exp| exp.floor() as i64));
    assert_eq!(&principal.claims, claims, "the inner service must see the token's claims unchanged");
}

/// The README's Rust examples, compiled (and run unless marked `no_run`) as doctests, so the
/// code a newcomer copies first keeps building.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
