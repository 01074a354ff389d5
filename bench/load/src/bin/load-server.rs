//! `load-server`: the server under test of the load benchmark, one mode per process.
//!
//! ```text
//! load-server bare            [--workers N] [--listen ADDR]     axum 0.8, no auth (the baseline)
//! load-server bare-axum07     [--workers N] [--listen ADDR]     axum 0.7, no auth
//! load-server tokengate       ... --issuer URL --jwks-uri URL --audience AUD
//!                                 --introspection-endpoint URL --client-id ID
//!                                 (secret in $LOAD_SERVER_CLIENT_SECRET)
//! load-server jwt-authorizer  ... --issuer URL --jwks-uri URL --audience AUD
//! ```
//!
//! Every mode serves `GET /api/items` and `GET /admin/x` with the same small JSON body, on a
//! tokio runtime of exactly `--workers` threads, and prints `load-server listening on
//! http://ADDR` once it accepts connections. In `tokengate` mode `/api/*` is verified locally
//! and `/admin/*` is also introspected; in `jwt-authorizer` mode both are verified locally
//! (jwt-authorizer has no introspection). jwt-authorizer 0.15 needs axum 0.7, so that mode (and
//! `bare-axum07`, its baseline) runs on axum 0.7.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, IntrospectionConfig, IssuerConfig, TokenGateLayer};
use tokengate_load::{ADMIN_PATH, API_PATH, CLIENT_SECRET_ENV, ITEMS_BODY, LISTENING_PREFIX};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Leeway for `exp`/`nbf` given to both layers, so they check the same thing (tokengate's
/// default; jwt-authorizer's default is 60 s).
const LEEWAY_SECS: u64 = 30;

/// The server under test of tokengate's load benchmark.
#[derive(Debug, Parser)]
#[command(name = "load-server")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// axum 0.8 with no authentication: the baseline.
    Bare(Common),
    /// axum 0.7 with no authentication: what jwt-authorizer's framework costs on its own.
    #[command(name = "bare-axum07")]
    BareAxum07(Common),
    /// axum 0.8 behind `tokengate::TokenGateLayer` (/api/* local, /admin/* introspect).
    Tokengate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        issuer: IssuerArgs,
        /// The RFC 7662 introspection endpoint.
        #[arg(long)]
        introspection_endpoint: String,
        /// The introspection client id (the secret comes from $LOAD_SERVER_CLIENT_SECRET).
        #[arg(long)]
        client_id: String,
    },
    /// axum 0.7 behind jwt-authorizer's layer (every route verified locally).
    JwtAuthorizer {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        issuer: IssuerArgs,
    },
}

/// Options every mode has.
#[derive(Debug, Args)]
struct Common {
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Where to listen (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// The issuer whose tokens are accepted.
#[derive(Debug, Args)]
struct IssuerArgs {
    /// The issuer identifier (`iss`).
    #[arg(long)]
    issuer: String,
    /// The JWKS URL.
    #[arg(long)]
    jwks_uri: String,
    /// The accepted audience (`aud`).
    #[arg(long)]
    audience: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workers = match &cli.mode {
        Mode::Bare(common) | Mode::BareAxum07(common) => common.workers,
        Mode::Tokengate { common, .. } | Mode::JwtAuthorizer { common, .. } => common.workers,
    };
    if workers == 0 {
        eprintln!("load-server: --workers must be at least 1");
        return ExitCode::from(2);
    }
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("load-server: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
    match runtime.block_on(run(cli.mode)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mode: Mode) -> Result<(), Error> {
    match mode {
        Mode::Bare(common) => serve_axum08(&common, app_axum08()).await,
        Mode::BareAxum07(common) => serve_axum07(&common, app_axum07()).await,
        Mode::Tokengate { common, issuer, introspection_endpoint, client_id } => {
            let secret = std::env::var(CLIENT_SECRET_ENV)
                .map_err(|_| format!("${CLIENT_SECRET_ENV} must hold the introspection client secret"))?;
            let policy = RoutePolicy::new()
                .rule(Rule::new("/api/*", Requirement::local())?)
                .rule(Rule::new("/admin/*", Requirement::introspect())?)
                .default_requirement(Requirement::deny());
            let gate = TokenGateLayer::builder()
                .issuer(
                    IssuerConfig::new(issuer.issuer)
                        .audience(issuer.audience)
                        .algorithms([Algorithm::RS256])
                        .jwks_url(issuer.jwks_uri),
                )
                .introspection(IntrospectionConfig::new(introspection_endpoint, client_id, secret))
                .policy(policy)
                .build()
                .await?;
            serve_axum08(&common, app_axum08().layer(gate)).await
        }
        Mode::JwtAuthorizer { common, issuer } => {
            use jwt_authorizer::{Authorizer, IntoLayer as _, JwtAuthorizer, Validation};
            // The same checks tokengate makes: signature, iss, aud, exp and nbf, same leeway.
            // The algorithms are the key's (RS256 for the testkit's RSA JWK).
            let validation = Validation::new()
                .iss(&[issuer.issuer])
                .aud(&[issuer.audience])
                .exp(true)
                .nbf(true)
                .leeway(LEEWAY_SECS);
            let authorizer: Authorizer =
                JwtAuthorizer::from_jwks_url(&issuer.jwks_uri).validation(validation).build().await?;
            serve_axum07(&common, app_axum07().layer(authorizer.into_layer())).await
        }
    }
}

/// The handler of every route in every mode.
async fn items() -> ([(&'static str, &'static str); 1], &'static str) {
    ([("content-type", "application/json")], ITEMS_BODY)
}

fn app_axum08() -> axum::Router {
    axum::Router::new()
        .route(API_PATH, axum::routing::get(items))
        .route(ADMIN_PATH, axum::routing::get(items))
}

fn app_axum07() -> axum07::Router {
    axum07::Router::new()
        .route(API_PATH, axum07::routing::get(items))
        .route(ADMIN_PATH, axum07::routing::get(items))
}

async fn bind(common: &Common) -> Result<tokio::net::TcpListener, Error> {
    let listener = tokio::net::TcpListener::bind(common.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", common.listen))?;
    let addr = listener.local_addr()?;
    // The driver waits for this line; flush it now, stdout is a pipe (block-buffered).
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{LISTENING_PREFIX}{addr}")?;
    stdout.flush()?;
    Ok(listener)
}

async fn serve_axum08(common: &Common, app: axum::Router) -> Result<(), Error> {
    let listener = bind(common).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn serve_axum07(common: &Common, app: axum07::Router) -> Result<(), Error> {
    let listener = bind(common).await?;
    axum07::serve(listener, app).await?;
    Ok(())
}
