//! The forward-auth endpoint: nginx `auth_request`, Traefik `ForwardAuth`, Caddy
//! `forward_auth` and Envoy `ext_authz` (HTTP) ask it, for every request they receive, whether
//! to let it through.
//!
//! The original request is described by headers the calling proxy sets — in this mode the
//! gateway *reads* them, by design, and only from its caller:
//! - nginx: `X-Original-Method` and `X-Original-URI` (set with `proxy_set_header`);
//! - Traefik, Caddy: `X-Forwarded-Method` and `X-Forwarded-Uri` (set by the proxy itself).
//!
//! Each pair must be complete: a URI without its method could turn a refused `POST` into an
//! allowed `GET`. Neither pair (or two pairs that disagree) → 400. The token and any cookie
//! come from the forwarded client headers. The answer is 200 with the identity headers, or the
//! library's 400/401/403/503 with `WWW-Authenticate` and `Retry-After` as usual.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::access;
use crate::http_util::{Body, full, json_error};
use crate::metrics::Outcome;
use crate::proxy::Shared;

/// The forward-auth endpoint.
#[derive(Debug)]
pub struct ForwardAuth {
    shared: Shared,
}

/// The request the caller asks about.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    method: Method,
    /// Path only; the query plays no part in the decision.
    path: String,
}

impl ForwardAuth {
    /// A forward-auth endpoint.
    pub fn new(shared: Shared) -> Self {
        ForwardAuth { shared }
    }

    /// Answers one question, at any path, and records it.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let (response, outcome) = self.answer(request.headers()).await;
        self.shared.metrics.record(response.status(), outcome, started.elapsed());
        response
    }

    async fn answer(&self, headers: &HeaderMap) -> (Response<Body>, Outcome) {
        let original = match original_request(headers) {
            Ok(original) => original,
            Err(why) => {
                return (
                    json_error(StatusCode::BAD_REQUEST, "invalid_request", why),
                    Outcome::InvalidRequest,
                );
            }
        };
        let shared = &self.shared;
        match access::decide(&shared.gate, shared.cookies.as_ref(), &original.method, &original.path, headers)
            .await
        {
            Ok((authorized, _)) => {
                let mut response = Response::new(full(""));
                let out = response.headers_mut();
                out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if let Some(principal) = &authorized.principal {
                    shared.identity.inject(principal, out);
                }
                (response, Outcome::Allowed)
            }
            Err(refusal) => (refusal.response, refusal.outcome),
        }
    }
}

/// Reads the original method and path from the nginx or the Traefik/Caddy header pair.
fn original_request(headers: &HeaderMap) -> Result<Original, &'static str> {
    let nginx = pair(headers, "x-original-method", "x-original-uri")?;
    let traefik = pair(headers, "x-forwarded-method", "x-forwarded-uri")?;
    let original = match (nginx, traefik) {
        (Some(a), Some(b)) if a != b => {
            return Err("X-Original-* and X-Forwarded-* describe different requests");
        }
        (Some(original), _) | (None, Some(original)) => original,
        (None, None) => {
            return Err(
                "no original request: send X-Original-Method and X-Original-URI (nginx) or X-Forwarded-Method and X-Forwarded-Uri (Traefik, Caddy)",
            );
        }
    };
    Ok(original)
}

fn pair(headers: &HeaderMap, method: &str, uri: &str) -> Result<Option<Original>, &'static str> {
    let method_value = single(headers, method)?;
    let uri_value = single(headers, uri)?;
    let (method, uri) = match (method_value, uri_value) {
        (None, None) => return Ok(None),
        (Some(m), Some(u)) => (m, u),
        _ => return Err("the original method and URI headers must both be present"),
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| "invalid original method")?;
    // Origin-form only (`/path?query`), as nginx's $request_uri and Traefik send it.
    let uri = uri.to_str().map_err(|_| "invalid original URI")?;
    if !uri.starts_with('/') {
        return Err("the original URI must be a path, like /api/items?id=1");
    }
    let path = uri.split_once('?').map_or(uri, |(path, _)| path);
    Ok(Some(Original { method, path: path.to_owned() }))
}

fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h HeaderValue>, &'static str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err("an original-request header is repeated");
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn reads_nginx_and_traefik_headers() {
        let nginx = headers(&[("x-original-method", "POST"), ("x-original-uri", "/admin/x?y=1")]);
        assert_eq!(original_request(&nginx), Ok(Original { method: Method::POST, path: "/admin/x".into() }));
        let traefik = headers(&[("x-forwarded-method", "DELETE"), ("x-forwarded-uri", "/a")]);
        assert_eq!(original_request(&traefik), Ok(Original { method: Method::DELETE, path: "/a".into() }));
        assert!(original_request(&headers(&[])).is_err());
        assert!(original_request(&headers(&[("x-original-uri", "/a")])).is_err());
        assert!(
            original_request(&headers(&[("x-original-method", "GET"), ("x-original-uri", "http://x/a")]))
                .is_err()
        );
        let conflict = headers(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/a"),
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/a"),
        ]);
        assert!(original_request(&conflict).is_err());
        let repeated =
            headers(&[("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-original-uri", "/b")]);
        assert!(original_request(&repeated).is_err());
    }
}
