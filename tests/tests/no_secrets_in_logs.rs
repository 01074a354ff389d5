//! No secret or token reaches the logs or `Debug` output, with every `tracing` level on.
//!
//! A test binary of its own: `tracing` caches per-callsite interest process-wide, so a capture
//! that shares a process with other tests can miss events.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use tokengate::clock::{Clock, ManualClock};
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, IntrospectionConfig, IssuerConfig, Principal, TokenGateLayer};
use tokengate_testkit::{Endpoint, Fault, Issuer};

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
async fn the_client_secret_and_tokens_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let secret = "sup3r-s3cret-value";
    let issuer = Issuer::builder().introspection_client("gateway", secret).build().await;
    let clock = ManualClock::starting_now();
    issuer.set_now(Some(clock.now()));
    let layer = TokenGateLayer::builder()
        .issuer(
            IssuerConfig::new(issuer.url())
                .audience(issuer.audience())
                .algorithms([Algorithm::RS256])
                .jwks_url(issuer.jwks_uri()),
        )
        .introspection(
            IntrospectionConfig::new(issuer.introspection_endpoint(), "gateway", secret)
                .issuer(issuer.url())
                .timeout(Duration::from_millis(500)),
        )
        .policy(RoutePolicy::new().rule(Rule::new("/admin/*", Requirement::introspect()).unwrap()))
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route("/{*rest}", any(|p: Principal| async move { p.subject().unwrap_or_default().to_string() }))
        .layer(layer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/admin/x", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let status = |token: String| {
        let (client, base) = (client.clone(), base.clone());
        async move { client.get(base).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };

    let token = issuer.token().expires_in(3600).sign();
    let opaque = issuer.opaque_token().issue();
    assert_eq!(status(token.clone()).await, 200);
    assert_eq!(status(opaque.clone()).await, 200);
    assert_eq!(status("not-a-valid.token.at-all".to_string()).await, 401);
    issuer.set_fault(Endpoint::Introspect, Fault::Status(500));
    assert_eq!(status(issuer.token().expires_in(3600).sign()).await, 503);

    let debug = format!("{layer:?} {:?}", layer.gate().introspector());
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("introspect"), "the capture works: {} bytes", logs.len());
    let basic = basic_credentials("gateway", secret);
    for (what, needle) in [
        ("secret", secret),
        ("token", token.as_str()),
        ("opaque token", opaque.as_str()),
        ("basic", basic.as_str()),
    ] {
        assert!(!logs.contains(needle), "the {what} appeared in the logs");
        assert!(!debug.contains(needle), "the {what} appeared in Debug output");
    }
}

/// The Basic credentials the client sends, to make sure they are not logged either.
fn basic_credentials(id: &str, secret: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

/// `Debug` of every type that holds a secret prints `[redacted]` in its place: an issuer's HMAC
/// secret, the introspection client secret, the builder holding both, and the built layer.
#[tokio::test(flavor = "current_thread")]
async fn debug_output_redacts_every_secret() {
    let hmac = "hmac-secret-value-long-enough-for-hs256!";
    let client_secret = "introspection-secret-Qm4";
    let issuer = IssuerConfig::new("https://hmac.example")
        .audience("api")
        .algorithms([Algorithm::HS256])
        .hmac_secret(hmac.as_bytes());
    let introspection = IntrospectionConfig::new("http://127.0.0.1:9/introspect", "gateway", client_secret)
        .issuer("https://hmac.example");
    let builder = TokenGateLayer::builder().issuer(issuer.clone()).introspection(introspection.clone());
    let bytes_debug = format!("{:?}", hmac.as_bytes());
    for debug in [format!("{issuer:?}"), format!("{introspection:?}"), format!("{builder:?}")] {
        assert!(debug.contains("[redacted]"), "no redaction marker in {debug}");
        for needle in [hmac, client_secret, bytes_debug.as_str()] {
            assert!(!debug.contains(needle), "a secret in Debug output: {debug}");
        }
    }
    // The built layer (its gate, issuers, introspector) as well.
    let layer = builder.fail_fast(false).build().await.expect("builds");
    let debug = format!("{layer:?} {:?} {:?}", layer.gate(), layer.gate().introspector());
    for needle in [hmac, client_secret, bytes_debug.as_str()] {
        assert!(!debug.contains(needle), "a secret in Debug output of the layer: {debug}");
    }
}
