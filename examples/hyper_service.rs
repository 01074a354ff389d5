//! A plain hyper 1 `service_fn` behind `TokenGateLayer`, no framework.
//!
//! What it shows:
//!
//! - the layer is a tower `Layer`: it wraps any `Service<http::Request<_>>`, here a function of
//!   `Request<Incoming>`, and the result is served by hyper-util's `auto::Builder` (HTTP/1 and
//!   HTTP/2) through `TowerToHyperService`;
//! - without axum, the caller is read from the request's extensions:
//!   `request.extensions().get::<tokengate::Principal>()`;
//! - requests the layer refuses never reach the function.
//!
//! Run it from the repository root, then paste the `curl` commands it prints:
//!
//! ```text
//! cargo run --example hyper_service
//! ```
//!
//! It listens on 127.0.0.1:3001 (or on `$PORT`; if 3001 is taken, on a free port) and serves
//! until ctrl-c, then lets open connections finish for a few seconds.

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, IssuerConfig, NonCanonicalPath, Principal, TokenGateLayer};
use tokengate_examples::{TOKEN_TTL_SECS, Try, base_url, bind, ctrl_c, print_tries, tamper};
use tokengate_testkit::Issuer;
use tower::{ServiceBuilder, service_fn};
use tracing_subscriber::EnvFilter;

const DEFAULT_PORT: u16 = 3001;

/// How long open connections may take to finish after ctrl-c.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(EnvFilter::from_default_env()).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hyper_service: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The identity provider. In production this is your IdP, and the layer only needs its URLs.
    let issuer = Issuer::start().await;

    let gate = TokenGateLayer::builder()
        .issuer(
            IssuerConfig::new(issuer.url())
                .audience(issuer.audience())
                .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
                .jwks_url(issuer.jwks_uri()),
        )
        .policy(
            RoutePolicy::new()
                .rule(Rule::new("/health", Requirement::public())?)
                .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"]))?),
        )
        // `handle` routes on the URI the layer passes on, so the layer may rewrite `//admin`
        // or `/x/../admin` to the path its rules judged (with axum's `Router::layer`, leave
        // the default, which refuses such paths with 400).
        .non_canonical_path(NonCanonicalPath::Rewrite)
        .build()
        .await?;

    // The layer around a plain function; `TowerToHyperService` adapts the tower service to the
    // `hyper::service::Service` trait hyper's connections want.
    let service = TowerToHyperService::new(ServiceBuilder::new().layer(gate).service(service_fn(handle)));

    let listener = bind(DEFAULT_PORT).await?;
    let addr = listener.local_addr()?;
    let base = base_url(addr);

    let reader = issuer.token().sub("alice").scope("read").expires_in(TOKEN_TTL_SECS).sign();
    let admin = issuer
        .token()
        .sub("root")
        .scope("read admin")
        .alg(Algorithm::ES256)
        .expires_in(TOKEN_TTL_SECS)
        .sign();
    print_tries(
        "hyper_service",
        addr,
        &[
            Try::curl("/health is public: 200 without a token", &format!("{base}/health"), None),
            Try::curl(
                "/whoami needs a token: 401 with a bare WWW-Authenticate: Bearer challenge",
                &format!("{base}/whoami"),
                None,
            ),
            Try::curl(
                "with alice's token (RS256, scope read): 200 and who the token says she is",
                &format!("{base}/whoami"),
                Some(&reader),
            ),
            Try::curl(
                "alice's token lacks scope admin: 403 insufficient_scope, scope=\"admin\"",
                &format!("{base}/admin/stats"),
                Some(&reader),
            ),
            Try::curl(
                "root's token (ES256, scope read admin): 200",
                &format!("{base}/admin/stats"),
                Some(&admin),
            ),
            Try::curl(
                "alice's token edited to claim admin, signature kept: 401 invalid_token",
                &format!("{base}/admin/stats"),
                Some(&tamper(&reader)),
            ),
        ],
    );

    let server = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let shutdown = ctrl_c();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(connection) => connection,
                    Err(error) => {
                        // Typically out of file descriptors: say so and keep accepting.
                        eprintln!("accept failed: {error}");
                        continue;
                    }
                };
                let connection = server.serve_connection_with_upgrades(TokioIo::new(stream), service.clone());
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        eprintln!("connection error: {error}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        eprintln!("some connections were still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    drop(issuer);
    Ok(())
}

/// The whole application: three routes. Only requests the layer admitted arrive here, with their
/// path normalised and, unless the route is public, a `Principal` in the extensions.
async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let principal = request.extensions().get::<Principal>();
    let response = match (request.uri().path(), principal) {
        ("/health", _) => text(StatusCode::OK, "ok\n"),
        ("/whoami", Some(p)) => json_response(json!({
            "subject": p.subject(),
            "scopes": p.scopes(),
            "client_id": p.client_id(),
        })),
        ("/admin/stats", Some(p)) => json_response(json!({
            "requested_by": p.subject(),
            "token_expires_at": p.expires_at(),
        })),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    response
}

fn json_response(value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}
