//! The forward-auth endpoint: nginx `auth_request`, Traefik `ForwardAuth`, Caddy
//! `forward_auth` and Envoy `ext_authz` (HTTP) ask it, for every request they receive, whether
//! to let it through.
//!
//! The original request is described by its caller — in this mode the gateway *reads* these
//! descriptions, by design, and only from its caller:
//! - nginx: `X-Original-Method` and `X-Original-URI` (set with `proxy_set_header`);
//! - Traefik, Caddy: `X-Forwarded-Method` and `X-Forwarded-Uri` (set by the proxy itself);
//! - Envoy, with `[forward_auth] path_prefix`: the check request itself — Envoy sends it with
//!   the original method, to the prefix followed by the original path and query.
//!
//! Each header pair must be complete: a URI without its method could turn a refused `POST`
//! into an allowed `GET`. The URI must be an origin-form request target (`/path?query`, no
//! fragment): `/admin#/x` would be judged as one path and served as another. No description
//! → 400; two that disagree → 400 (under the prefix too: Envoy can pass a client's own
//! `X-Forwarded-Uri` along, and believing it over the path would let the client choose what
//! is judged). The proxy forwards the original URI as it was sent, so a request the rules
//! would admit is refused (400) unless its path is its own normalised form: judging
//! `/admin/%2e%2e/public/x` as `/public/x` would let an upstream that routes on the raw path
//! serve `/admin/…` unchecked. A request with another spelling of an identity header
//! (`X_User` for `X-User`) is refused too (400): the gateway cannot remove it, and an upstream
//! may read it as the header itself. The token and any cookie come from the forwarded client headers. The answer is
//! 200 with the identity headers, or the library's 400/401/403/503 with `WWW-Authenticate`
//! and `Retry-After` as usual.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokengate::AuthError;

use crate::access;
use crate::http_util::{Body, full, json_error};
use crate::metrics::Outcome;
use crate::proxy::Shared;

/// Envoy removes the headers this answer header names from the request it forwards.
const ENVOY_HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// The forward-auth endpoint.
#[derive(Debug)]
pub struct ForwardAuth {
    shared: Shared,
    /// Envoy style: requests under this prefix describe the original themselves.
    path_prefix: Option<String>,
}

/// Why an admitted original request is refused when its path is not in normalised form.
const NON_CANONICAL: AuthError = AuthError::InvalidRequest(
    "the original request path is not in normalised form, and the proxy in front forwards it as sent",
);

/// Why a request carrying another spelling of an identity header (`X_User`) is refused.
const OTHER_SPELLING: AuthError = AuthError::InvalidRequest(
    "the request carries an identity header spelled with '_' for '-', which the proxy in front would pass on",
);

/// The request the caller asks about.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    method: Method,
    /// Path only; the query plays no part in the decision.
    path: String,
}

impl ForwardAuth {
    /// A forward-auth endpoint; with `path_prefix`, Envoy's native style too.
    pub fn new(shared: Shared, path_prefix: Option<String>) -> Self {
        ForwardAuth { shared, path_prefix }
    }

    /// Answers one question, at any path, and records it.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let (response, outcome) = self.answer(request.method(), request.uri(), request.headers()).await;
        self.shared.metrics.record(response.status(), outcome, started.elapsed());
        response
    }

    async fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> (Response<Body>, Outcome) {
        let original = match original_request(method, uri, headers, self.path_prefix.as_deref()) {
            Ok(original) => original,
            Err(why) => {
                return (
                    json_error(StatusCode::BAD_REQUEST, "invalid_request", why),
                    Outcome::InvalidRequest,
                );
            }
        };
        let shared = &self.shared;
        if shared.identity.carries_other_spelling(headers) {
            let refusal = access::Refusal::auth(&shared.gate, &OTHER_SPELLING);
            return (refusal.response, refusal.outcome);
        }
        match access::decide(&shared.gate, shared.cookies.as_ref(), &original.method, &original.path, headers)
            .await
        {
            // The proxy in front forwards the original URI as it was sent, whatever the rules
            // matched: admitting `/admin/%2e%2e/public/x` because `/public/x` is public would
            // send an upstream that routes on the raw path to `/admin/…` unchecked. So only a
            // path that is its own normalised form is admitted (the layer's default, too).
            Ok((authorized, _)) if authorized.path.as_str() != original.path => {
                let refusal = access::Refusal::auth(&shared.gate, &NON_CANONICAL);
                (refusal.response, refusal.outcome)
            }
            Ok((authorized, _)) => {
                let mut response = Response::new(full(""));
                let out = response.headers_mut();
                out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if let Some(principal) = &authorized.principal {
                    shared.identity.inject(principal, out);
                }
                if let Some(removals) = shared.identity.envoy_removals(out) {
                    out.insert(ENVOY_HEADERS_TO_REMOVE, removals);
                }
                (response, Outcome::Allowed)
            }
            Err(refusal) => (refusal.response, refusal.outcome),
        }
    }
}

/// Reads the original method and path from every description present, which must agree.
fn original_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    path_prefix: Option<&str>,
) -> Result<Original, &'static str> {
    let nginx = pair(headers, "x-original-method", "x-original-uri")?;
    let traefik = pair(headers, "x-forwarded-method", "x-forwarded-uri")?;
    let envoy = path_prefix.and_then(|prefix| under_prefix(method, uri, prefix));
    let mut descriptions = [nginx, traefik, envoy].into_iter().flatten();
    let Some(original) = descriptions.next() else {
        return Err(
            "no original request: send X-Original-Method and X-Original-URI (nginx) or X-Forwarded-Method and X-Forwarded-Uri (Traefik, Caddy), or, with [forward_auth] path_prefix, the original path under the prefix (Envoy)",
        );
    };
    if descriptions.any(|other| other != original) {
        return Err(
            "the request describes two different original requests (X-Original-*, X-Forwarded-* or the path under path_prefix)",
        );
    }
    Ok(original)
}

/// Envoy's check request: the original method, and `prefix` + the original path.
fn under_prefix(method: &Method, uri: &Uri, prefix: &str) -> Option<Original> {
    let rest = uri.path().strip_prefix(prefix)?;
    // `/ext_authzfoo` is not under `/ext_authz`, and `/ext_authz` alone has no original path.
    rest.starts_with('/').then(|| Original { method: method.clone(), path: rest.to_owned() })
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
    // A fragment is never part of a request target; `PathAndQuery` would drop it silently.
    if uri.contains('#') {
        return Err("the original URI has a fragment (#), which no request target carries");
    }
    let target = PathAndQuery::try_from(uri)
        .ok()
        .filter(|target| target.as_str() == uri)
        .ok_or("the original URI is not a valid request target")?;
    Ok(Some(Original { method, path: target.path().to_owned() }))
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

    fn original(headers: &HeaderMap) -> Result<Original, &'static str> {
        original_request(&Method::GET, &Uri::from_static("/auth"), headers, None)
    }

    #[test]
    fn reads_nginx_and_traefik_headers() {
        let nginx = headers(&[("x-original-method", "POST"), ("x-original-uri", "/admin/x?y=1")]);
        assert_eq!(original(&nginx), Ok(Original { method: Method::POST, path: "/admin/x".into() }));
        let traefik = headers(&[("x-forwarded-method", "DELETE"), ("x-forwarded-uri", "/a")]);
        assert_eq!(original(&traefik), Ok(Original { method: Method::DELETE, path: "/a".into() }));
        assert!(original(&headers(&[])).is_err());
        assert!(original(&headers(&[("x-original-uri", "/a")])).is_err());
        for bad in ["http://x/a", "/admin#/x", "/a b", "/a?b#c", "*"] {
            let h = headers(&[("x-original-method", "GET"), ("x-original-uri", bad)]);
            assert!(original(&h).is_err(), "{bad:?} accepted");
        }
        let conflict = headers(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/a"),
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/a"),
        ]);
        assert!(original(&conflict).is_err());
        let repeated =
            headers(&[("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-original-uri", "/b")]);
        assert!(original(&repeated).is_err());
    }

    #[test]
    fn reads_envoy_style_requests_under_the_prefix() {
        let envoy = |method: Method, uri: &'static str, h: &HeaderMap| {
            original_request(&method, &Uri::from_static(uri), h, Some("/ext_authz"))
        };
        let none = HeaderMap::new();
        assert_eq!(
            envoy(Method::DELETE, "/ext_authz/admin/x?y=1", &none),
            Ok(Original { method: Method::DELETE, path: "/admin/x".into() })
        );
        assert_eq!(
            envoy(Method::GET, "/ext_authz/", &none),
            Ok(Original { method: Method::GET, path: "/".into() })
        );
        for outside in ["/ext_authz", "/ext_authzx/a", "/other/a", "/"] {
            assert!(envoy(Method::GET, outside, &none).is_err(), "{outside:?} accepted");
        }
        // Headers that agree are fine; headers that disagree are refused, not preferred.
        let agree = headers(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/admin?z")]);
        assert!(envoy(Method::GET, "/ext_authz/admin", &agree).is_ok());
        let spoof = headers(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/public/x")]);
        assert!(envoy(Method::POST, "/ext_authz/admin", &spoof).is_err());
        // Without a prefix configured, the path describes nothing.
        assert!(original_request(&Method::GET, &Uri::from_static("/ext_authz/a"), &none, None).is_err());
    }
}
