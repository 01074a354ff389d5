//! The reverse proxy: decide, then forward to the upstream (over the client connection's own
//! upstream connection, or the pool for HTTP/2 clients: [`crate::upstream`]), streaming both
//! bodies.
//!
//! What the upstream receives: the method; the *normalised* path the rules matched (never the
//! raw one) and the query as sent; the client's headers minus hop-by-hop headers, minus
//! headers that could make it act on another path or method, minus every inbound copy of the
//! identity headers (on every route, public ones too), minus `Forwarded` and `X-Real-IP` —
//! each of these however spelled with `_` for `-` — then the identity headers of the verified
//! caller, `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` (set, never trusted
//! from the client), and `Host` set to the upstream's. `Authorization` and the token cookie
//! only when `forward_authorization = true` (the cookie is removed even when the token came
//! from `Authorization`; other cookies stay).
//!
//! `X-Forwarded-For` is the peer's address alone, unless the peer is one of `trusted_proxies`:
//! then the chain it sent, with its address appended. A client that talks to the gateway
//! directly cannot plant addresses in the chain, and a proxy in front can be believed.
//!
//! The `upstream_response` timer starts when the request is handed to the upstream connection
//! (opening one counts) and stops at the upstream's response head: it includes sending the request body, so a slow
//! upload counts against it. That keeps a client that trickles a body from holding an upstream
//! connection for ever; uploads that take long need a larger value. The response body then
//! streams with no deadline of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use tokengate::Gate;

use crate::access;
use crate::config::{CookieSettings, IdentitySettings, IpNet, Timeouts, UpstreamUrl};
use crate::http_util::{Body, json_error, remove_client_addresses, remove_hop_by_hop, remove_path_overrides};
use crate::metrics::{Metrics, Outcome};
use crate::upstream::{Lane, Upstream};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What the proxy and the forward-auth endpoint share.
#[derive(Debug)]
pub struct Shared {
    /// The pipeline.
    pub gate: Arc<Gate>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// Identity headers.
    pub identity: IdentitySettings,
    /// Tokens in cookies.
    pub cookies: Option<CookieSettings>,
    /// Whether `Authorization` reaches the upstream.
    pub forward_authorization: bool,
}

/// The reverse proxy.
pub struct Proxy {
    shared: Shared,
    upstream_base: String,
    upstream_host: HeaderValue,
    upstream: Upstream,
    response_timeout: Duration,
    trusted_proxies: Vec<IpNet>,
}

/// What the proxy keeps for one client connection.
#[derive(Debug)]
pub struct ClientConnection {
    /// The client's address, as `X-Forwarded-For` names it: formatted once per connection.
    ip: HeaderValue,
    /// Whether the client is one of `trusted_proxies`.
    trusted: bool,
    /// Its upstream connection, for its HTTP/1 requests.
    lane: Arc<Lane>,
}

impl Proxy {
    /// A proxy to `upstream`, believing the `X-Forwarded-For` of `trusted_proxies`.
    pub fn new(
        shared: Shared,
        upstream: &UpstreamUrl,
        timeouts: &Timeouts,
        trusted_proxies: Vec<IpNet>,
    ) -> Self {
        let upstream_host = HeaderValue::from_str(upstream.authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Proxy {
            shared,
            upstream_base: upstream.base(),
            upstream_host,
            upstream: Upstream::new(upstream.authority.clone(), timeouts.upstream_connect),
            response_timeout: timeouts.upstream_response,
            trusted_proxies,
        }
    }

    /// The proxy's state for a new client connection from `peer`.
    pub fn client(&self, peer: SocketAddr) -> ClientConnection {
        let ip = peer.ip().to_canonical().to_string();
        ClientConnection {
            ip: HeaderValue::try_from(ip).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            trusted: self.trusted_proxies.iter().any(|net| net.contains(peer.ip())),
            lane: Arc::new(self.upstream.lane()),
        }
    }

    /// Handles one request from `client` and records it. HTTP/1 requests go over the client
    /// connection's own upstream connection, HTTP/2 requests through the pool.
    ///
    /// One `async fn` from the request to the response, awaiting nothing but the decision and
    /// the upstream: each nested `async fn` would hold (and copy in) a copy of the request's
    /// state, which is kilobytes.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: Arc<ClientConnection>,
    ) -> Response<Body> {
        let started = Instant::now();
        let lane = (request.version() < Version::HTTP_2).then_some(&client.lane);
        let shared = &self.shared;
        let (parts, body) = request.into_parts();
        let original_host = match client_host(&parts) {
            Ok(host) => host,
            Err(why) => {
                let response = json_error(StatusCode::BAD_REQUEST, "invalid_request", why);
                return self.record(started, response, Outcome::InvalidRequest);
            }
        };
        let decision = access::decide(
            &shared.gate,
            shared.cookies.as_ref(),
            &parts.method,
            parts.uri.path(),
            &parts.headers,
        )
        .await;
        let (authorized, _) = match decision {
            Ok(decision) => decision,
            Err(refusal) => return self.record(started, refusal.response, refusal.outcome),
        };
        // The path the rules matched, and the query exactly as sent, in origin form.
        let target = match parts.uri.query() {
            Some(query) => PathAndQuery::try_from(format!("{}?{query}", authorized.path.as_str())),
            None => PathAndQuery::try_from(authorized.path.into_string()),
        };
        let Ok(target) = target else {
            let response = json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request target cannot be forwarded",
            );
            return self.record(started, response, Outcome::InvalidRequest);
        };

        let mut headers = parts.headers;
        remove_hop_by_hop(&mut headers);
        remove_path_overrides(&mut headers);
        shared.identity.strip(&mut headers);
        remove_client_addresses(&mut headers);
        if !shared.forward_authorization {
            headers.remove(header::AUTHORIZATION);
            // Whichever credential was used: a token the upstream is not meant to see must not
            // ride along in a cookie next to an `Authorization` header.
            if let Some(cookies) = &shared.cookies {
                access::remove_cookie(&mut headers, &cookies.name);
            }
        }
        join_cookie_crumbs(&mut headers);
        set_forwarded(&mut headers, &client.ip, client.trusted, original_host);
        headers.insert(header::HOST, self.upstream_host.clone());
        if let Some(principal) = &authorized.principal {
            shared.identity.inject(principal, &mut headers);
        }

        let mut upstream_request = Request::new(body);
        *upstream_request.method_mut() = parts.method;
        *upstream_request.uri_mut() = Uri::from(target);
        // HTTP/1.1 to the upstream, whatever the client spoke to us.
        *upstream_request.version_mut() = Version::HTTP_11;
        *upstream_request.headers_mut() = headers;

        let (response, outcome) = match tokio::time::timeout(
            self.response_timeout,
            self.upstream.send(lane, upstream_request),
        )
        .await
        {
            // The gateway removes `Upgrade` from every request it forwards, so a 101 is a
            // switch nobody asked for (RFC 9110 §15.2.2), and no tunnel is ever opened.
            Ok(Ok(response)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => (
                json_error(StatusCode::BAD_GATEWAY, "bad_gateway", "the upstream switched protocols unasked"),
                Outcome::UpstreamError,
            ),
            Ok(Ok(mut response)) => {
                // RFC 9112 §6.3: with Transfer-Encoding the body was framed by it (hyper reads it
                // so), and a Content-Length next to it is stale: forwarded, it would cut the body
                // short or leave the client waiting for bytes that never come.
                if response.headers().contains_key(header::TRANSFER_ENCODING) {
                    response.headers_mut().remove(header::CONTENT_LENGTH);
                }
                remove_hop_by_hop(response.headers_mut());
                (response, Outcome::Allowed)
            }
            Ok(Err(error)) => {
                tracing::warn!(upstream = %self.upstream_base, %error, "upstream request failed");
                let description = if error.is_connect() {
                    "the upstream cannot be reached"
                } else {
                    "the upstream failed to answer"
                };
                (json_error(StatusCode::BAD_GATEWAY, "bad_gateway", description), Outcome::UpstreamError)
            }
            Err(_) => {
                tracing::warn!(upstream = %self.upstream_base, timeout = ?self.response_timeout, "upstream response timed out");
                (
                    json_error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "gateway_timeout",
                        "the upstream did not answer in time",
                    ),
                    Outcome::UpstreamTimeout,
                )
            }
        };
        self.record(started, response, outcome)
    }

    /// Counts the answer to a request that began at `started`, and returns it.
    fn record(&self, started: Instant, response: Response<Body>, outcome: Outcome) -> Response<Body> {
        self.shared.metrics.record(response.status(), outcome, started.elapsed());
        response
    }
}

/// The host the client asked for, checked as RFC 9112 §3.2 requires of a server: at most one
/// `Host` field, and one on every HTTP/1.1 request (HTTP/2 names it in `:authority`). For an
/// absolute-form target the target's authority is the host (§3.2.2). It becomes
/// `X-Forwarded-Host`, which upstreams build links from (password resets), so it must be one
/// plain host (see [`is_forwardable_host`]); anything else is refused (400) rather than passed on.
fn client_host(parts: &http::request::Parts) -> Result<Option<HeaderValue>, &'static str> {
    let mut fields = parts.headers.get_all(header::HOST).iter();
    let host = fields.next();
    if fields.next().is_some() {
        return Err("the request has more than one Host header");
    }
    if let Some(host) = host
        && !is_forwardable_host(host.as_bytes())
    {
        return Err("the Host header is not a valid host");
    }
    if host.is_none() && parts.version == Version::HTTP_11 {
        return Err("an HTTP/1.1 request must carry a Host header");
    }
    match parts.uri.authority() {
        Some(authority) if !is_forwardable_host(authority.as_str().as_bytes()) => {
            Err("the request target's authority is not a valid host")
        }
        Some(authority) => Ok(HeaderValue::from_str(authority.as_str()).ok()),
        None => Ok(host.cloned()),
    }
}

/// Whether `host` is one host an upstream can build a URL from: `name[:port]` with a name of
/// RFC 3986 unreserved characters (letters, digits, `-`, `.`, `_`, `~`), or an IPv6 literal
/// in brackets (`[::1]:8443`), and a port of 1 to 5 digits. Stricter than the URI grammar on
/// purpose: its sub-delimiters would let `a.example,evil.example` through as one name (a list,
/// to an upstream that takes its last item), and no userinfo (`a@evil.example`) or path fits.
fn is_forwardable_host(host: &[u8]) -> bool {
    let (name_ok, rest) = match host.strip_prefix(b"[") {
        Some(literal) => match literal.iter().position(|&b| b == b']') {
            Some(close) => {
                let inner = std::str::from_utf8(&literal[..close]).ok();
                (
                    inner.is_some_and(|inner| inner.parse::<std::net::Ipv6Addr>().is_ok()),
                    &literal[close + 1..],
                )
            }
            None => (false, &b""[..]),
        },
        None => {
            let colon = host.iter().position(|&b| b == b':').unwrap_or(host.len());
            let name = &host[..colon];
            let unreserved = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
            (!name.is_empty() && name.iter().all(unreserved), &host[colon..])
        }
    };
    let port_ok = match rest.strip_prefix(b":") {
        Some(port) => (1..=5).contains(&port.len()) && port.iter().all(u8::is_ascii_digit),
        None => rest.is_empty(),
    };
    name_ok && port_ok
}

/// Joins the `Cookie` fields into one, as HTTP/2 clients split them ("crumbs") and an
/// HTTP/1.1 upstream expects one field (RFC 9113 §8.2.3, RFC 6265 §5.4).
fn join_cookie_crumbs(headers: &mut HeaderMap) {
    let crumbs = headers.get_all(header::COOKIE);
    if crumbs.iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = crumbs.iter().map(HeaderValue::as_bytes).collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

/// `X-Forwarded-For`: the client's address `ip`, after the chain it sent when it is `trusted`;
/// `-Proto` and `-Host`: ours, any inbound value dropped (the gateway terminates plain HTTP and
/// knows the host it was asked).
fn set_forwarded(headers: &mut HeaderMap, ip: &HeaderValue, trusted: bool, host: Option<HeaderValue>) {
    let previous: Vec<String> = if trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    // `insert` replaces every value the client sent under the name.
    let chain = if previous.is_empty() {
        Some(ip.clone())
    } else {
        let chain = ip.to_str().map(|ip| format!("{}, {ip}", previous.join(", ")));
        chain.ok().and_then(|chain| HeaderValue::from_str(&chain).ok())
    };
    match chain {
        Some(chain) => headers.insert(X_FORWARDED_FOR, chain),
        None => headers.remove(&X_FORWARDED_FOR),
    };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(&X_FORWARDED_HOST),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwardable_hosts_are_one_plain_host() {
        for host in [
            "a.example",
            "a.example:8443",
            "A-1.x:1",
            "localhost",
            "127.0.0.1:80",
            "x:65535",
            "a_b.~c",
            "[::1]",
            "[::1]:80",
            "[2001:db8::7]:443",
        ] {
            assert!(is_forwardable_host(host.as_bytes()), "{host}");
            assert!(host.parse::<http::uri::Authority>().is_ok(), "{host}: a valid authority too");
        }
        for host in [
            "",
            ":80",
            "a:",
            "a:123456",
            "a@b",
            "a b",
            "a/b",
            "a:8x",
            "a:1:2",
            "é",
            "a.example,evil.example",
            "a.example:evil",
            "a.example:+443",
            "a;b",
            "a!b",
            "[::1",
            "[::1]x",
            "[zz::1]",
            "[::1]:",
            "a%41",
        ] {
            assert!(!is_forwardable_host(host.as_bytes()), "{host}");
        }
    }

    #[test]
    fn forwarded_headers_append_and_replace() {
        let inbound = || {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
            h.insert("x-forwarded-host", HeaderValue::from_static("evil"));
            h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
            // Second copies, which must not survive either.
            h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
            h.append("x-forwarded-host", HeaderValue::from_static("evil2"));
            h
        };
        let ip = HeaderValue::from_static("127.0.0.1");
        let mut h = inbound();
        set_forwarded(&mut h, &ip, true, Some(HeaderValue::from_static("api.local")));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.7, 127.0.0.1");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-host"], "api.local");
        assert_eq!(h.get_all("x-forwarded-host").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "http");
        let mut h = inbound();
        set_forwarded(&mut h, &ip, false, None);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert!(!h.contains_key("x-forwarded-host"));
    }
}
