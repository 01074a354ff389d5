//! The small harness of the attack suites (`attacks_*.rs`): a testkit issuer, a `TokenGateLayer`
//! that loads its keys from the issuer's JWKS URL, and a real axum app on `127.0.0.1:0` whose one
//! handler counts its calls. Requests go out with reqwest over loopback (or raw TCP where a
//! request must reach the server byte for byte).
//!
//! Every attack asserts two things: the exact status (and `WWW-Authenticate` error) DESIGN.md
//! promises, and that the handler behind the gate ran zero times. A positive control in each
//! suite proves the harness does admit a good token, so a zero is never vacuous.
//!
//! Kept local to the attack suites (not in `tests/src/lib.rs`) so they do not move when the
//! shared harness does. Cargo does not treat `tests/tests/attacks_support/mod.rs` as a test target.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use serde_json::{Value, json};
use tokengate::clock::ManualClock;
use tokengate::error::Rejection;
use tokengate::{Algorithm, IssuerConfig, Principal, TokenGateBuilder, TokenGateLayer};
use tokengate_testkit::Issuer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The time the issuer mints at and the gate verifies at: 2023-11-14T22:13:20Z.
pub const T0: i64 = 1_700_000_000;

/// The algorithms the default gate allows: every asymmetric one the testkit signs.
pub const ALGORITHMS: [Algorithm; 4] =
    [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];

/// The issuer of the HMAC gate ([`Gate::start_hmac`]).
pub const HMAC_ISSUER: &str = "https://hmac.issuer.test";

/// The HMAC gate's shared secret (47 bytes; HS256 needs 32).
pub const HMAC_SECRET: &[u8] = b"attack-suite-hmac-secret-that-is-long-enough-!!";

/// The audience every gate accepts (the testkit's default).
pub const AUDIENCE: &str = tokengate_testkit::DEFAULT_AUDIENCE;

/// Aborts a spawned server when dropped.
pub struct ServerGuard(AbortHandle);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A gate in front of a counting app, and the issuer it trusts.
pub struct Gate {
    /// The testkit issuer (minting clock pinned at [`T0`]).
    pub issuer: Issuer,
    /// `http://127.0.0.1:PORT` of the app.
    pub base: String,
    calls: Arc<AtomicUsize>,
    client: reqwest::Client,
    /// The layer, for tests that look at its key store.
    pub layer: TokenGateLayer,
    _server: ServerGuard,
}

/// What came back.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The `WWW-Authenticate` header, if any.
    pub challenge: Option<String>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The `error="…"` parameter of the challenge.
    pub fn challenge_error(&self) -> Option<String> {
        param(self.challenge.as_deref()?, "error")
    }

    /// The `error_description="…"` parameter of the challenge.
    pub fn challenge_description(&self) -> Option<String> {
        param(self.challenge.as_deref()?, "error_description")
    }
}

fn param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!(" {name}=\""))? + name.len() + 3;
    let rest = &challenge[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// A reqwest client that never uses a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client")
}

/// A started testkit issuer minting at [`T0`].
pub async fn issuer() -> Issuer {
    let issuer = Issuer::start().await;
    issuer.set_now(Some(T0));
    issuer
}

/// Serves `router` on `127.0.0.1:0`.
pub async fn serve(router: Router) -> (String, ServerGuard) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), ServerGuard(task.abort_handle()))
}

/// A server that counts every request it gets (any method, any path) and answers `body` as
/// JSON: the attacker's key server for `jku`/`x5u`.
pub async fn counting_server(body: Value) -> (String, Arc<AtomicUsize>, ServerGuard) {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let router = Router::new().fallback(move || {
        let seen = seen.clone();
        let body = body.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            axum::Json(body)
        }
    });
    let (url, guard) = serve(router).await;
    (url, hits, guard)
}

impl Gate {
    /// The usual gate: a fresh issuer, keys from its JWKS URL, [`ALGORITHMS`].
    pub async fn start() -> Gate {
        Self::with(|config| config, |builder| builder).await
    }

    /// A gate on a fresh issuer, its config (already with audience, [`ALGORITHMS`] and the JWKS
    /// URL) and the builder adjusted by the closures.
    pub async fn with(
        configure: impl FnOnce(IssuerConfig) -> IssuerConfig,
        tweak: impl FnOnce(TokenGateBuilder) -> TokenGateBuilder,
    ) -> Gate {
        let issuer = issuer().await;
        let config = IssuerConfig::new(issuer.url()).audience(AUDIENCE).algorithms(ALGORITHMS);
        let config = configure(config.jwks_url(issuer.jwks_uri()));
        Self::on(issuer, tweak(TokenGateBuilder::default().issuer(config))).await
    }

    /// A gate on `issuer` with the issuer config built by `config` (no key source added).
    pub async fn custom(issuer: Issuer, config: impl FnOnce(&Issuer) -> IssuerConfig) -> Gate {
        let config = config(&issuer);
        Self::on(issuer, TokenGateBuilder::default().issuer(config)).await
    }

    /// A gate trusting only [`HMAC_ISSUER`] with [`HMAC_SECRET`] and HS256, for tokens whose
    /// JSON is written by hand (see [`hs256`]); `max_token_bytes` when given.
    pub async fn start_hmac(max_token_bytes: Option<usize>) -> Gate {
        let config = IssuerConfig::new(HMAC_ISSUER)
            .audience(AUDIENCE)
            .algorithms([Algorithm::HS256])
            .hmac_secret(HMAC_SECRET);
        let mut builder = TokenGateBuilder::default().issuer(config);
        if let Some(max) = max_token_bytes {
            builder = builder.max_token_bytes(max);
        }
        Self::on(issuer().await, builder).await
    }

    async fn on(issuer: Issuer, builder: TokenGateBuilder) -> Gate {
        let layer = builder
            .clock(ManualClock::new(T0))
            .http_client(client())
            .build()
            .await
            .unwrap_or_else(|e| panic!("the gate should build: {e}"));
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        // The handler answers with the claims of the principal the gate handed it, so a
        // positive control shows what the app saw, not just that it ran.
        let router = Router::new()
            .fallback(move |request: axum::extract::Request| {
                let seen = seen.clone();
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let claims = request.extensions().get::<Principal>().map(|p| p.claims().clone());
                    axum::Json(json!({ "claims": claims }))
                }
            })
            .layer(layer.clone());
        let (base, server) = serve(router).await;
        Gate { issuer, base, calls, client: client(), layer, _server: server }
    }

    /// How many times the handler behind the gate ran.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// GET `/api/resource` with these headers.
    pub async fn get_with(&self, headers: HeaderMap) -> Answer {
        let response = self
            .client
            .get(format!("{}/api/resource", self.base))
            .headers(headers)
            .send()
            .await
            .expect("the gate answers");
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().expect("ASCII challenge").to_owned());
        let body = response.text().await.unwrap_or_default();
        Answer { status, challenge, body }
    }

    /// GET with `Authorization: <value>`.
    pub async fn get_auth(&self, value: &str) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().expect("a valid header value"));
        self.get_with(headers).await
    }

    /// GET with `Authorization: Bearer <token>`.
    pub async fn get(&self, token: &str) -> Answer {
        self.get_auth(&format!("Bearer {token}")).await
    }

    /// Sends `request` (a whole HTTP/1.1 request) over a fresh TCP connection and returns the
    /// status of the answer (`None` if the server closed without one).
    pub async fn raw(&self, request: &[u8]) -> Option<u16> {
        let addr = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        // The server may answer (and close) before reading everything; a failed write is fine.
        let _ = stream.write_all(request).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    /// The token is admitted (a positive control): 200, one more upstream call, and the app
    /// saw exactly the token's claims.
    pub async fn assert_accepted(&self, token: &str) {
        let before = self.calls();
        let answer = self.get(token).await;
        assert_eq!(answer.status, 200, "a good token must pass: {answer:?}");
        assert_eq!(self.calls(), before + 1);
        let seen: Value = serde_json::from_str(&answer.body).expect("the app answers JSON");
        let payload = token.split('.').nth(1).expect("a JWS payload");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
                .expect("JSON");
        assert_eq!(seen["claims"], claims, "the app must see the token's claims");
    }

    /// 401 `invalid_token` with `rejection`'s description; the upstream saw nothing.
    pub async fn assert_rejected(&self, token: &str, rejection: Rejection) {
        let answer = self.get(token).await;
        self.assert_answer(&answer, 401, Some("invalid_token"));
        assert_eq!(
            answer.challenge_description().as_deref(),
            Some(rejection.description()),
            "expected {rejection:?}: {answer:?}"
        );
    }

    /// 401 `invalid_token` for any of `rejections`; the upstream saw nothing.
    pub async fn assert_rejected_any(&self, token: &str, rejections: &[Rejection]) {
        let answer = self.get(token).await;
        self.assert_answer(&answer, 401, Some("invalid_token"));
        let got = answer.challenge_description().unwrap_or_default();
        assert!(
            rejections.iter().any(|r| r.description() == got),
            "expected one of {rejections:?}, got {got:?}"
        );
    }

    /// `status` with `WWW-Authenticate: … error="<error>"` (or no `error` when `None`), the
    /// JSON body's `error` agreeing, and no upstream call so far.
    pub fn assert_answer(&self, answer: &Answer, status: u16, error: Option<&str>) {
        assert_eq!(answer.status, status, "{answer:?}");
        assert_eq!(answer.challenge_error().as_deref(), error, "{answer:?}");
        if let Some(error) = error {
            let body: Value = serde_json::from_str(&answer.body).expect("a JSON error body");
            assert_eq!(body["error"], error);
        }
        self.assert_upstream_untouched();
    }

    /// The handler behind the gate never ran.
    pub fn assert_upstream_untouched(&self) {
        assert_eq!(self.calls(), 0, "the upstream must see nothing");
    }
}

/// Base64url without padding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `token` with its third segment replaced.
pub fn with_signature(token: &str, signature: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[2] = signature;
    parts.join(".")
}

/// A compact JWS over the exact header and payload text given, signed with HS256 and
/// [`HMAC_SECRET`]: the only way to sign duplicate member names, odd number spellings or
/// non-object payloads, which no JSON serialiser writes.
pub fn hs256(header: &str, payload: &str) -> String {
    sign_raw(header.as_bytes(), payload.as_bytes(), Algorithm::HS256, HMAC_SECRET)
}

/// Signs raw header and payload bytes with an HMAC `alg` and `secret`.
pub fn sign_raw(header: &[u8], payload: &[u8], alg: Algorithm, secret: &[u8]) -> String {
    tokengate_testkit::install_crypto_provider();
    let input = format!("{}.{}", b64(header), b64(payload));
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).expect("HMAC signing");
    format!("{input}.{signature}")
}

/// The claims of a good token of the HMAC gate, as JSON text (`iss`, `aud`, `sub`, `iat`,
/// `exp` = T0 + 300, `scope`), without the closing brace so tests can append members.
pub fn hmac_claims_open() -> String {
    format!(r#"{{"iss":"{HMAC_ISSUER}","aud":"{AUDIENCE}","sub":"user-1","iat":{T0},"exp":{}"#, T0 + 300)
}

/// [`hmac_claims_open`] closed.
pub fn hmac_claims() -> String {
    format!("{}}}", hmac_claims_open())
}

/// The issuer's published JWK named `kid`.
pub fn jwk_of(issuer: &Issuer, kid: &str) -> Value {
    issuer.jwks()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == json!(kid))
        .cloned()
        .unwrap_or_else(|| panic!("no published key {kid}"))
}

/// The DER inside a PEM block.
pub fn pem_der(pem: &str) -> Vec<u8> {
    use base64::engine::general_purpose::STANDARD;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM base64")
}
