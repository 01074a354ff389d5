//! The demo: `tokengate-gateway` with no arguments.
//!
//! Everything runs on loopback in this process: the testkit issuer (JWKS, introspection), an
//! echo upstream that answers every request with a JSON description of it, the gateway built
//! from an in-memory configuration (`/api/*` local, `/admin/*` introspected with scope
//! `admin`), its admin listener, and a one-endpoint "issuer console" standing in for the
//! identity provider's own revoke/log-out function (the testkit has no HTTP endpoint for it).
//! It prints curl commands to paste, with tokens minted for the occasion.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use tokengate_testkit::{EchoUpstream, Issuer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{self, Environment};
use crate::gateway::Gateway;
use crate::http_util::{Body, json, json_error};
use crate::server::{self, ServerLimits};

/// The demo's admin secret: shown on screen on purpose; it protects nothing real.
const DEMO_ADMIN_TOKEN: &str = "demo-admin-secret";
const ADMIN_TOKEN_VAR: &str = "TOKENGATE_DEMO_ADMIN_TOKEN";
const CLIENT_SECRET_VAR: &str = "TOKENGATE_DEMO_CLIENT_SECRET";
/// Lifetime of the demo's tokens: 1 h, time to play.
const DEMO_TOKEN_TTL_SECS: i64 = 3600;

/// The demo's environment: its secrets come from here, not from the process.
struct DemoEnv(HashMap<&'static str, String>);

impl Environment for DemoEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Runs the demo until ctrl-c.
pub async fn run() -> ExitCode {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let (console_addr, console_stop) = match start_console(issuer.clone()).await {
        Ok(console) => console,
        Err(e) => {
            eprintln!("tokengate-gateway demo: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };

    let text = demo_config(&issuer, &upstream);
    let env = DemoEnv(HashMap::from([
        (ADMIN_TOKEN_VAR, DEMO_ADMIN_TOKEN.to_owned()),
        (CLIENT_SECRET_VAR, issuer.introspection_client_secret()),
    ]));
    let settings = match config::parse(&text).and_then(|file| file.resolve(&env)) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("tokengate-gateway demo: the built-in configuration is invalid: {e}");
            return ExitCode::FAILURE;
        }
    };
    let layer = match settings.gate.build().await {
        Ok(layer) => layer,
        Err(e) => {
            eprintln!("tokengate-gateway demo: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match Gateway::start(&settings, &layer, true).await {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("tokengate-gateway demo: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };

    let token = issuer.token().sub("demo-user").scope("read admin").expires_in(DEMO_TOKEN_TTL_SECS).sign();
    let gw = format!("http://{}", gateway.listen);
    let admin = gateway.admin.map(|a| format!("http://{a}")).unwrap_or_default();
    let auth = format!("-H 'Authorization: Bearer {token}'");
    let local = format!("curl -i {gw}/api/hello {auth}");
    let introspected = format!("curl -i {gw}/admin/users {auth}");
    println!(
        "\
tokengate-gateway demo — everything below runs on 127.0.0.1, in this process:
  gateway   {gw}   /api/* → local (signature only), /admin/* → introspect + scope admin
  admin     {admin}   /healthz /readyz /metrics /revocations (secret: {DEMO_ADMIN_TOKEN})
  issuer    {issuer_url}   testkit: JWKS + RFC 7662 introspection (cache TTL 0 s here)
  upstream  {upstream_url}   echoes each request as JSON, so you see what the gateway forwarded

The token below is valid for 1 hour (sub demo-user, scope \"read admin\").

1) A local route — verified against the issuer's cached keys, no network call — answers 200:

{local}

2) An introspect route — verified locally, then confirmed with the issuer — answers 200:

{introspected}

3) Log the token out at the issuer, then ask both routes again: /admin/users answers 401, /api/hello still 200:

curl -s -X POST http://{console_addr}/revoke --data-binary '{token}'; echo; {introspected}; echo; {local}

That shows the trade-off: introspected routes hear about a revocation at once (within the cache TTL),
while local routes trust the signature until the token expires — no network call, no revocation.
To cut the token off on every route at once, add it to the gateway's own revocation list
(a hash lookup on every request); /api/hello then answers 401 too:

curl -i -X POST {admin}/revocations -H 'Authorization: Bearer {DEMO_ADMIN_TOKEN}' -d '{{\"kind\":\"token\",\"token\":\"{token}\"}}'

Press ctrl-c to stop.",
        issuer_url = issuer.url(),
        upstream_url = upstream.url(),
    );

    gateway.run_until_signal().await;
    let _ = console_stop.send(true);
    ExitCode::SUCCESS
}

/// The gateway's configuration for the demo, written as a user would write it.
fn demo_config(issuer: &Issuer, upstream: &EchoUpstream) -> String {
    format!(
        r#"
listen = "127.0.0.1:8080"
upstream = "{upstream}"
admin_token_env = "{ADMIN_TOKEN_VAR}"

[admin]
listen = "127.0.0.1:8081"

[[issuers]]
issuer = "{issuer}"
jwks_uri = "{jwks}"
audiences = ["{audience}"]
algorithms = ["RS256", "ES256", "EdDSA"]

[introspection]
endpoint = "{introspection}"
client_id = "{client_id}"
client_secret_env = "{CLIENT_SECRET_VAR}"
cache_ttl_secs = 0

[identity]
subject = "X-User"
scopes = "X-Scopes"
client_id = "X-Client-Id"

[[routes]]
path = "/api/*"
mode = "local"

[[routes]]
path = "/admin/*"
mode = "introspect"
scopes = ["admin"]
"#,
        upstream = upstream.url(),
        issuer = issuer.url(),
        jwks = issuer.jwks_uri(),
        audience = issuer.audience(),
        introspection = issuer.introspection_endpoint(),
        client_id = issuer.introspection_client_id(),
    )
}

/// Cap on the console's request body: a token is a few KB.
const CONSOLE_MAX_BODY: usize = 16 * 1024;

/// Starts the issuer console: `POST /revoke` with a token as the body makes the issuer's
/// introspection endpoint answer `active: false` for it, as an identity provider does after a
/// log-out.
async fn start_console(issuer: Issuer) -> std::io::Result<(SocketAddr, watch::Sender<bool>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, signal) = watch::channel(false);
    let limits = ServerLimits {
        max_header_bytes: config::DEFAULT_MAX_HEADER_BYTES,
        header_read_timeout: config::DEFAULT_HEADER_READ,
        http2_keep_alive: config::DEFAULT_HTTP2_KEEP_ALIVE,
        max_connections: config::DEFAULT_MAX_CONNECTIONS,
    };
    let issuer = Arc::new(issuer);
    tokio::spawn(server::serve(
        "issuer-console",
        listener,
        limits,
        Arc::default(),
        signal,
        Duration::ZERO,
        move |_| {
            let issuer = issuer.clone();
            move |request| revoke_at_issuer(issuer.clone(), request)
        },
    ));
    Ok((addr, stop))
}

async fn revoke_at_issuer(issuer: Arc<Issuer>, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::POST || request.uri().path() != "/revoke" {
        return json_error(StatusCode::NOT_FOUND, "not_found", "POST /revoke with the token as the body");
    }
    let Ok(body) = Limited::new(request.into_body(), CONSOLE_MAX_BODY).collect().await else {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "the body is too large");
    };
    let body = body.to_bytes();
    let token = String::from_utf8_lossy(&body);
    let token = token.trim();
    if token.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "invalid_request", "send the token as the body");
    }
    issuer.revoke_token(token);
    json(StatusCode::OK, &json!({ "revoked_at_issuer": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_demo_configuration_is_valid() {
        let issuer = Issuer::start().await;
        let upstream = EchoUpstream::start().await;
        let env = DemoEnv(HashMap::from([
            (ADMIN_TOKEN_VAR, DEMO_ADMIN_TOKEN.to_owned()),
            (CLIENT_SECRET_VAR, "x".to_owned()),
        ]));
        let settings = config::parse(&demo_config(&issuer, &upstream)).unwrap().resolve(&env).unwrap();
        assert_eq!(settings.gate.routes, 2);
        assert!(settings.admin.unwrap().token.is_some());
    }
}
