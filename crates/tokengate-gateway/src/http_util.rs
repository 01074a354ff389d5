//! Small HTTP helpers shared by the listeners: the response body type, JSON answers, and the
//! header hygiene every proxy owes its upstream (hop-by-hop headers, path overrides, client
//! addresses).
//!
//! CGI, WSGI, PHP and Rack read a header `X-User` as `HTTP_X_USER` — and `X_User` as well. So
//! where a header must not come from the client, its underscore spellings are removed too
//! ([`same_field`]).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// Any error a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the gateway sends: streamed from the upstream, or a small buffer.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The small `{"error": ..., "error_description": ...}` body the library also uses.
pub fn json_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": error, "error_description": description }))
}

/// A response the library rendered (status, `WWW-Authenticate`, `Retry-After`, JSON body).
pub fn from_bytes(response: Response<Bytes>) -> Response<Body> {
    response.map(full)
}

/// Whether `name` (lower-case, as `HeaderName` is) is a hop-by-hop header (RFC 9110 §7.6.1),
/// which describes one connection and never travels on: `Proxy-*` (`Proxy-Authorization`,
/// `Proxy-Authenticate`, `Proxy-Connection` and any other) by prefix, and the rest by name.
fn is_hop_by_hop(name: &str) -> bool {
    name.starts_with("proxy-")
        || matches!(name, "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade")
}

/// Removes the hop-by-hop headers, including every header the `Connection` header names.
///
/// One pass over the names, comparing strings: removing each listed name by `&str` would parse
/// and hash it every time, twice per proxied request, whether or not it is there.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in &named {
        headers.remove(name);
    }
    remove_where(headers, is_hop_by_hop);
}

/// Headers some frameworks and proxies read as "the real path or method": left in place, they
/// would let a client make the upstream act on another path or method than the one that was
/// authorised.
pub const PATH_OVERRIDE_HEADERS: &[&str] = &[
    "x-original-uri",
    "x-original-url",
    "x-original-method",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-forwarded-method",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Removes every [`PATH_OVERRIDE_HEADERS`] header, however spelled with `_`.
pub fn remove_path_overrides(headers: &mut HeaderMap) {
    remove_where(headers, |name| PATH_OVERRIDE_HEADERS.iter().any(|h| same_field(name, h)));
}

/// Headers that claim a client address or protocol; the gateway sets `X-Forwarded-*` itself.
pub const CLIENT_ADDRESS_HEADERS: &[&str] =
    &["forwarded", "x-real-ip", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"];

/// Removes `Forwarded` (RFC 7239), `X-Real-IP` and every underscore spelling of the
/// [`CLIENT_ADDRESS_HEADERS`]; `X-Forwarded-*` themselves are left for the caller to replace.
pub fn remove_client_addresses(headers: &mut HeaderMap) {
    remove_where(headers, |name| {
        name == "forwarded"
            || name == "x-real-ip"
            || (name.contains('_') && CLIENT_ADDRESS_HEADERS.iter().any(|h| same_field(name, h)))
    });
}

/// Whether header names `a` and `b` are the same field to an upstream that reads `_` as `-`.
/// Both are lower-case (`HeaderName` always is).
pub fn same_field(a: &str, b: &str) -> bool {
    let dash = |c: u8| if c == b'_' { b'-' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| dash(x) == dash(y))
}

/// Removes every header whose name satisfies `doomed`.
pub fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    // Empty, and so free, in the common case of nothing to remove.
    let names: Vec<HeaderName> = headers.keys().filter(|name| doomed(name.as_str())).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, X-Secret-Hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-foo", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic eDp5"));
        h.insert("trailer", HeaderValue::from_static("x-checksum"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn removes_underscore_spellings() {
        let mut h = HeaderMap::new();
        for name in
            ["x_original_uri", "X_HTTP_Method-Override", "x-rewrite-url", "x_forwarded_for", "x_real_ip"]
        {
            h.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("/admin"));
        }
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        h.insert("forwarded", HeaderValue::from_static("for=203.0.113.1"));
        h.insert("x-original-urix", HeaderValue::from_static("kept"));
        remove_path_overrides(&mut h);
        remove_client_addresses(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-forwarded-for", "x-original-urix"]);
        assert!(same_field("x_user", "x-user"));
        assert!(same_field("x-user", "x_user"));
        assert!(!same_field("x-users", "x-user"));
    }
}
