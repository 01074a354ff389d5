//! An axum 0.8 app behind `TokenGateLayer`, with a real issuer to try it against.
//!
//! What it shows:
//!
//! - building the layer from an issuer's JWKS URL (here the testkit's in-process issuer, the
//!   stand-in for your identity provider): issuer, audience, allowed algorithms;
//! - a `RoutePolicy`: `/health` public, `/admin/*` needs scope `admin`, every other route needs
//!   a valid token (the default, `local`);
//! - handlers that read the caller with the `tokengate::Principal` extractor and with
//!   `tokengate::Claims<T>` into a struct of your own;
//! - what clients see when they are refused: 401 with `WWW-Authenticate`, 403
//!   `insufficient_scope`.
//!
//! Run it from the repository root, then paste the `curl` commands it prints:
//!
//! ```text
//! cargo run --example axum_app
//! ```
//!
//! It listens on 127.0.0.1:3000 (or on `$PORT`; if 3000 is taken, on a free port) and serves
//! until ctrl-c. `RUST_LOG=debug` shows what the layer does.

use std::process::ExitCode;
use std::time::Instant;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, Claims, IssuerConfig, Principal, TokenGateLayer};
use tokengate_examples::{TOKEN_TTL_SECS, Try, base_url, bind, ctrl_c, print_tries, tamper};
use tokengate_testkit::Issuer;
use tracing_subscriber::EnvFilter;

const DEFAULT_PORT: u16 = 3000;

/// The claims `/admin/stats` wants, deserialised from the verified token.
#[derive(Debug, Deserialize)]
struct MyClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    scope: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(EnvFilter::from_default_env()).init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("axum_app: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The identity provider. In production this is your IdP, and the layer only needs its URLs.
    let issuer = Issuer::start().await;

    let policy = RoutePolicy::new()
        .rule(Rule::new("/health", Requirement::public())?)
        .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"]))?)
        .default_requirement(Requirement::local());

    let gate = TokenGateLayer::builder()
        .issuer(
            IssuerConfig::new(issuer.url())
                .audience(issuer.audience())
                .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
                .jwks_url(issuer.jwks_uri()),
        )
        .policy(policy)
        .build()
        .await?;

    let app = Router::new()
        .route("/health", get(health))
        .route("/whoami", get(whoami))
        .route("/admin/stats", get(admin_stats))
        .with_state(Instant::now())
        .layer(gate);

    let listener = bind(DEFAULT_PORT).await?;
    let base = base_url(listener.local_addr()?);

    let reader = issuer.token().sub("alice").scope("read").expires_in(TOKEN_TTL_SECS).sign();
    let admin = issuer
        .token()
        .sub("root")
        .scope("read admin")
        .alg(Algorithm::EdDSA)
        .expires_in(TOKEN_TTL_SECS)
        .sign();
    print_tries(
        "axum_app",
        listener.local_addr()?,
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
                "root's token (EdDSA, scope read admin): 200",
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

    axum::serve(listener, app).with_graceful_shutdown(ctrl_c()).await?;
    // Keep the issuer (and its JWKS endpoint) up for as long as the app serves.
    drop(issuer);
    Ok(())
}

async fn health() -> &'static str {
    "ok\n"
}

/// Any valid token: the layer has verified it and put the `Principal` in the request.
async fn whoami(principal: Principal) -> Json<Value> {
    Json(json!({
        "subject": principal.subject(),
        "scopes": principal.scopes(),
        "client_id": principal.client_id(),
    }))
}

/// Only tokens with scope `admin` get here (the policy says so); the handler reads the claims it
/// cares about into its own struct.
async fn admin_stats(State(started): State<Instant>, Claims(claims): Claims<MyClaims>) -> Json<Value> {
    Json(json!({
        "requested_by": claims.sub,
        "scope": claims.scope,
        "token_expires_at": claims.exp,
        "uptime_secs": started.elapsed().as_secs(),
    }))
}
