//! Property: whatever arrives in `Authorization` (and on whatever path), a request without a
//! validly signed token is answered 4xx — never 2xx, never 5xx, never a panic — and the inner
//! service never runs.
//!
//! Every case is a real HTTP/1.1 request over loopback to a hyper server with the layer in
//! front of a counting `service_fn`, sent on a fresh hyper client connection so the header bytes
//! and the request-target reach the server exactly as generated. One tokio runtime (current
//! thread) serves and sends for the whole test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};
use tokengate::TokenGateBuilder;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate_tests::ServerGuard;

/// Cases per strategy: enough to cover the shapes, small enough for a fast suite.
const CASES: u32 = 256;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    issuer_url: String,
    audience: String,
    _server: ServerGuard,
    _issuer: tokengate_testkit::Issuer,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let calls = Arc::new(AtomicUsize::new(0));
        let (issuer, addr, server) = runtime.block_on(async {
            let issuer = tokengate_testkit::Issuer::start().await;
            let policy = RoutePolicy::new()
                .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"])).expect("rule"))
                .rule(Rule::new("/optional/*", Requirement::optional()).expect("rule"));
            // Keys inline: deciding a request must not need the issuer's server.
            let config = tokengate_tests::bare_issuer_config(&issuer)
                .jwks(issuer.jwks().to_string())
                .require_type("at+jwt");
            let layer = TokenGateBuilder::default()
                .issuer(config)
                .policy(policy)
                .build()
                .await
                .expect("the layer builds");
            let (addr, server) = tokengate_tests::serve_hyper(layer, calls.clone()).await;
            (issuer, addr, server)
        });
        Fixture {
            runtime,
            addr,
            calls,
            issuer_url: issuer.url(),
            audience: issuer.audience(),
            _server: server,
            _issuer: issuer,
        }
    }

    /// Sends one request over loopback and checks the property.
    fn check(&self, path: &str, authorization: Option<HeaderValue>) -> Result<(), TestCaseError> {
        let before = self.calls.load(Ordering::SeqCst);
        let status = self.runtime.block_on(self.send(path, authorization));
        prop_assert!(status.is_client_error(), "status {} for path {:?}", status, path);
        prop_assert_eq!(self.calls.load(Ordering::SeqCst), before, "the inner service ran");
        Ok(())
    }

    async fn send(&self, path: &str, authorization: Option<HeaderValue>) -> StatusCode {
        let stream = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        let driver = tokio::spawn(connection);
        let mut request = Request::get(path).header(header::HOST, self.addr.to_string());
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let request = request.body(Empty::<Bytes>::new()).expect("a valid request");
        let status = sender.send_request(request).await.expect("an answer").status();
        driver.abort();
        status
    }
}

fn runner() -> TestRunner {
    let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
    // A fixed seed: the same cases on every run and machine, so a failure always reproduces.
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// Paths that are valid request-targets; `/optional/...` is avoided because a request without a
/// bearer token legitimately passes there.
fn paths() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/api/resource".to_owned()),
        Just("/admin/x".to_owned()),
        "/[!-~]{0,40}".prop_filter("a valid URI", |p| p.parse::<Uri>().is_ok() && !p.contains("optional")),
    ]
}

fn maybe_bearer(token: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = HeaderValue> {
    (any::<bool>(), token).prop_filter_map("a valid header value", |(bearer, token)| {
        let mut value = if bearer { b"Bearer ".to_vec() } else { Vec::new() };
        value.extend(token);
        HeaderValue::from_bytes(&value).ok()
    })
}

#[test]
fn arbitrary_header_values_never_reach_the_inner_service() {
    let fixture = Fixture::new();
    runner()
        .run(&(paths(), maybe_bearer(prop::collection::vec(any::<u8>(), 0..256))), |(path, value)| {
            fixture.check(&path, Some(value))
        })
        .unwrap();
    // And no header at all.
    runner().run(&paths(), |path| fixture.check(&path, None)).unwrap();
}

#[test]
fn arbitrary_ascii_tokens_never_reach_the_inner_service() {
    let fixture = Fixture::new();
    let tokens = "[ -~]{0,300}".prop_map(String::into_bytes);
    runner()
        .run(&(paths(), maybe_bearer(tokens)), |(path, value)| fixture.check(&path, Some(value)))
        .unwrap();
}

#[test]
fn arbitrary_three_part_base64url_tokens_never_reach_the_inner_service() {
    let fixture = Fixture::new();
    let tokens =
        "[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,400}\\.[A-Za-z0-9_-]{0,350}".prop_map(String::into_bytes);
    runner()
        .run(&(paths(), maybe_bearer(tokens)), |(path, value)| fixture.check(&path, Some(value)))
        .unwrap();
}

/// Tokens whose header and payload are well-formed JSON objects with plausible and implausible
/// values (so they get past decoding into the header, issuer and claim checks), with a random
/// signature: still never admitted, never a 5xx, never a panic.
#[test]
fn structured_forged_tokens_never_reach_the_inner_service() {
    let fixture = Fixture::new();
    let iss = fixture.issuer_url.clone();
    let aud = fixture.audience.clone();
    let algs = prop_oneof![
        Just(json!("RS256")),
        Just(json!("PS256")),
        Just(json!("ES256")),
        Just(json!("EdDSA")),
        Just(json!("HS256")),
        Just(json!("none")),
        Just(json!("nOnE")),
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
    ];
    let kids = prop_oneof![
        Just(json!("rsa-1")),
        Just(json!("ec-1")),
        Just(json!("ed-1")),
        any::<String>().prop_map(Value::from),
        Just(Value::Null),
    ];
    let typs = prop_oneof![
        Just(json!("at+jwt")),
        Just(json!("application/at+jwt")),
        any::<String>().prop_map(Value::from),
    ];
    let dates = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        any::<String>().prop_map(Value::from),
        Just(json!(4_000_000_000i64)),
    ];
    let issuers = prop_oneof![Just(json!(iss)), any::<String>().prop_map(Value::from), Just(json!(42))];
    let audiences =
        prop_oneof![Just(json!(aud)), Just(json!([aud, "x"])), any::<String>().prop_map(Value::from)];
    let signatures = prop::collection::vec(any::<u8>(), 0..300);
    let strategy = (algs, kids, typs, issuers, audiences, dates, signatures, any::<bool>());
    runner()
        .run(&strategy, |(alg, kid, typ, iss, aud, exp, signature, with_crit)| {
            let mut header = json!({ "alg": alg, "typ": typ });
            if !kid.is_null() {
                header["kid"] = kid;
            }
            if with_crit {
                header["crit"] = json!(["exp"]);
            }
            let claims = json!({ "iss": iss, "aud": aud, "exp": exp, "sub": "attacker", "scope": "admin" });
            let token = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string()),
                URL_SAFE_NO_PAD.encode(&signature)
            );
            let value =
                HeaderValue::from_str(&format!("Bearer {token}")).expect("base64url is a valid header");
            fixture.check("/admin/x", Some(value.clone()))?;
            fixture.check("/optional/x", Some(value))
        })
        .unwrap();
}
