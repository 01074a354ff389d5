//! A minimal reverse proxy: `TokenGateLayer` in front of a tower service that forwards each
//! admitted request to an upstream with hyper-util's pooled client.
//!
//! - The layer decides; the proxy only forwards, and forwards the *normalised* path: the layer
//!   has rewritten the URI already, so `/docs/../whoami` reaches the upstream as `/whoami`.
//! - Bodies stream both ways (`Incoming` in and out); nothing is buffered.
//! - Hop-by-hop headers are removed both ways, headers that could make the upstream serve
//!   another path or method are dropped, and `X-Forwarded-For` names the client.
//!
//! No setup: it starts the testkit's issuer and an echo upstream that answers with a JSON
//! description of each request it gets. From the repository root: `cargo run --example proxy`,
//! then paste the printed `curl` commands. It listens on 127.0.0.1:3002 (or `$PORT`; if 3002 is
//! taken, a free port) until ctrl-c.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http::header::{CONNECTION, HOST};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokengate::{Algorithm, IssuerConfig, NonCanonicalPath, TokenGateLayer};
use tokengate_examples::{TOKEN_TTL_SECS, Try, base_url, bind, ctrl_c, print_tries};
use tokengate_testkit::{EchoUpstream, Issuer};
use tower::{ServiceBuilder, service_fn};
use tracing_subscriber::EnvFilter;

const DEFAULT_PORT: u16 = 3002;

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, never the next one.
const HOP_BY_HOP: &str =
    "connection keep-alive proxy-authenticate proxy-authorization te trailer transfer-encoding upgrade";

/// Headers some upstreams obey to serve another path or method than the one the layer judged
/// (DESIGN.md, pipeline step 1).
const OVERRIDES: &str =
    "x-original-uri x-original-url x-rewrite-url x-http-method-override x-http-method x-method-override";

type Upstream = Client<HttpConnector, Incoming>;
type ProxyBody = Either<Incoming, Full<Bytes>>;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(EnvFilter::from_default_env()).init();
    if let Err(error) = run().await {
        eprintln!("proxy: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Stand-ins for your identity provider and for the service behind the proxy.
    let issuer = Issuer::start().await;
    let echo = EchoUpstream::start().await;

    // No policy: every route needs a valid token (mode `local`, the default).
    let gate = TokenGateLayer::builder()
        .issuer(
            IssuerConfig::new(issuer.url())
                .audience(issuer.audience())
                .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
                .jwks_url(issuer.jwks_uri()),
        )
        // `forward` sends on the URI the layer passes, so it may rewrite `//x` or `/a/../x` to
        // the normalised path its rules judged.
        .non_canonical_path(NonCanonicalPath::Rewrite)
        .build()
        .await?;
    let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
    let upstream = echo.url();

    let listener = bind(DEFAULT_PORT).await?;
    let addr = listener.local_addr()?;
    let base = base_url(addr);
    let token = issuer.token().sub("alice").scope("read").expires_in(TOKEN_TTL_SECS).sign();
    let whoami = format!("{base}/whoami");
    let echoed = Try::curl("with a token: 200 and the upstream's echo of the request", &whoami, Some(&token));
    let refused = Try::curl("without a token: 401, and the upstream never sees the request", &whoami, None);
    let dotted = Try {
        explanation: "the path the rules matched is the path forwarded: the echo shows \"/whoami\"".into(),
        command: format!("curl -i --path-as-is -H 'Authorization: Bearer {token}' '{base}/docs/../whoami'"),
    };
    print_tries("proxy", addr, &[echoed, refused, dotted]);

    let server = auto::Builder::new(TokioExecutor::new());
    let shutdown = ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    eprintln!("accept failed: {error}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // One service per connection, so it knows the client's address for X-Forwarded-For.
        let (client, upstream) = (client.clone(), upstream.clone());
        let forward = service_fn(move |request| forward(client.clone(), upstream.clone(), peer, request));
        let service = TowerToHyperService::new(ServiceBuilder::new().layer(gate.clone()).service(forward));
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(error) = server.serve_connection(TokioIo::new(stream), service).await {
                eprintln!("connection error: {error}");
            }
        });
    }
    Ok(())
}

/// Sends an admitted request on to the upstream and streams the answer back; 502 if the
/// upstream cannot be reached.
async fn forward(
    client: Upstream,
    upstream: String,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // The layer already put the normalised path into the URI.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{upstream}{path}").parse::<Uri>() else {
        return Ok(bad_gateway());
    };
    *request.uri_mut() = uri;
    // HTTP/1.1 to the upstream whatever the client spoke: the client refuses an HTTP/2 request.
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    for name in OVERRIDES.split(' ') {
        headers.remove(name);
    }
    // The client sets Host from the upstream URI; the original one travels as X-Forwarded-Host.
    if let Some(host) = headers.remove(HOST) {
        headers.insert("x-forwarded-host", host);
    }
    let prior: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    let chain = prior.into_iter().chain([peer.ip().to_string().as_str()]).collect::<Vec<_>>().join(", ");
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert("x-forwarded-for", value);
    }

    match client.request(request).await {
        Ok(mut response) => {
            strip_hop_by_hop(response.headers_mut());
            Ok(response.map(Either::Left))
        }
        Err(e) => {
            eprintln!("upstream request failed: {e}");
            Ok(bad_gateway())
        }
    }
}

/// Removes the hop-by-hop headers, and those the `Connection` header names as hop-by-hop.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for name in HOP_BY_HOP.split(' ').chain(named.iter().map(String::as_str)) {
        headers.remove(name);
    }
}

fn bad_gateway() -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(b"bad gateway\n"))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
