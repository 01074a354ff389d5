//! `tokengate-gateway`: a config-driven reverse proxy and forward-auth server built on the
//! tokengate library.
//!
//! ```text
//! tokengate-gateway                                  the demo (embedded issuer and upstream)
//! tokengate-gateway --config gateway.toml            run
//! tokengate-gateway --config gateway.toml --check-config
//! tokengate-gateway explain --config gateway.toml [--route "POST /admin/x"] [TOKEN]
//! ```
//!
//! The command line lives here; everything else is the `tokengate_gateway` library
//! (`src/lib.rs`), which the fuzz targets use too.
//!
//! Exit status: 0 success; 1 the gateway could not start (a port, the issuer's keys); 2 a
//! command line clap refused; 78 (`EX_CONFIG`) an invalid configuration.

#![forbid(unsafe_code)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use http::Method;

use tokengate_gateway::config::{Frontend, ProcessEnv, Settings};
use tokengate_gateway::gateway::Gateway;
use tokengate_gateway::{config, demo, explain};

/// An invalid configuration (sysexits `EX_CONFIG`).
const EXIT_CONFIG: u8 = 78;

/// The route `explain` assumes without `--route`.
const DEFAULT_EXPLAIN_ROUTE: &str = "GET /";

/// Verifies bearer tokens in front of any HTTP upstream, or behind nginx, Traefik, Caddy or
/// Envoy as their auth filter. Without arguments, runs a self-contained demo.
#[derive(Debug, Parser)]
#[command(name = "tokengate-gateway", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration file and the environment variables it names, then exit (0 when
    /// valid). Does not contact the issuers.
    #[arg(long, requires = "config")]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Explain, step by step, what the gateway would answer for a token on a route.
    Explain {
        /// The configuration file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The route, as "METHOD /path".
        #[arg(long, default_value = DEFAULT_EXPLAIN_ROUTE)]
        route: String,
        /// The token; read from standard input when absent.
        token: Option<String>,
    },
    /// Run the demo: an embedded issuer and echo upstream, and curl commands to try.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokengate-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match (cli.command, cli.config) {
        (Some(Command::Explain { config, route, token }), _) => {
            init_logging("warn");
            runtime.block_on(explain_command(&config, &route, token))
        }
        (Some(Command::Demo), _) | (None, None) => {
            init_logging("warn");
            runtime.block_on(demo::run())
        }
        (None, Some(path)) => {
            if cli.check_config {
                return check_config(&path);
            }
            init_logging("info");
            runtime.block_on(run(&path))
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Reads and checks the configuration file, printing the problem and the file on failure.
fn load(path: &Path) -> Result<Settings, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("tokengate-gateway: cannot read {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })?;
    config::parse(&text).and_then(|file| file.resolve(&ProcessEnv)).map_err(|e| {
        eprintln!("tokengate-gateway: invalid configuration {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check_config(path: &Path) -> ExitCode {
    match load(path) {
        Ok(settings) => {
            let mode = match settings.frontend {
                Frontend::Proxy { .. } => "proxy",
                Frontend::ForwardAuth { .. } => "forward_auth",
            };
            println!(
                "{}: configuration OK (mode {mode}, {} issuer(s), {} route rule(s)); issuers were not contacted",
                path.display(),
                settings.gate.issuer_names.len(),
                settings.gate.routes,
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn run(path: &Path) -> ExitCode {
    let settings = match load(path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let layer = match settings.gate.build().await {
        Ok(layer) => layer,
        Err(e) => {
            eprintln!("tokengate-gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match Gateway::start(&settings, &layer, false).await {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("tokengate-gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_addresses(&settings, &gateway);
    gateway.run_until_signal().await;
    ExitCode::SUCCESS
}

/// Prints where the gateway listens, one line per listener (tests read these lines).
fn print_addresses(settings: &Settings, gateway: &Gateway) {
    match &settings.frontend {
        Frontend::Proxy { upstream } => {
            println!("proxy listening on http://{} (upstream {})", gateway.listen, upstream.base());
        }
        Frontend::ForwardAuth { .. } => println!("forward-auth listening on http://{}", gateway.listen),
    }
    if let Some(admin) = gateway.admin {
        println!("admin listening on http://{admin} (/healthz /readyz /metrics /revocations)");
    }
}

async fn explain_command(path: &Path, route: &str, token: Option<String>) -> ExitCode {
    let settings = match load(path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let Some((method, route_path)) = parse_route(route) else {
        eprintln!(
            "tokengate-gateway: --route {route:?}: expected \"METHOD /path\", like \"POST /admin/users\""
        );
        return ExitCode::from(2);
    };
    let token = match token {
        Some(token) => token,
        None => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                eprintln!("tokengate-gateway: cannot read the token from standard input: {e}");
                return ExitCode::FAILURE;
            }
            input
        }
    };
    let token = token.trim();
    if token.is_empty() {
        eprintln!("tokengate-gateway: no token: pass it as an argument or on standard input");
        return ExitCode::from(2);
    }
    let layer = match settings.gate.build().await {
        Ok(layer) => layer,
        Err(e) => {
            eprintln!("tokengate-gateway: cannot load the issuers: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", explain::explain(layer.gate(), &method, route_path, token).await);
    ExitCode::SUCCESS
}

/// `"POST /admin/x"` → (POST, "/admin/x").
fn parse_route(route: &str) -> Option<(Method, &str)> {
    let (method, path) = route.trim().split_once(' ')?;
    // The query plays no part in the decision.
    let path = path.trim().split('?').next().unwrap_or_default();
    if !path.starts_with('/') || method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Some((Method::from_bytes(method.as_bytes()).ok()?, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(parse_route("POST /admin/x"), Some((Method::POST, "/admin/x")));
        assert_eq!(parse_route(" GET  /a?b=1 "), Some((Method::GET, "/a")));
        assert_eq!(parse_route("/admin"), None);
        assert_eq!(parse_route("post /admin"), None);
        assert_eq!(parse_route("GET admin"), None);
    }

    #[test]
    fn cli_shapes() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["tokengate-gateway", "--check-config"]).is_err());
        let cli = Cli::try_parse_from([
            "tokengate-gateway",
            "explain",
            "-c",
            "g.toml",
            "--route",
            "POST /x",
            "tok",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Explain { .. })));
    }
}
