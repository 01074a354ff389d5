//! The gateway's decision on one request, shared by the proxy and the forward-auth endpoint:
//! where the token comes from (the `Authorization` header, else the configured cookie), the
//! library's pipeline ([`Gate::authorize`]), the CSRF rule for cookie tokens, and the identity
//! headers that carry the caller onward.
//!
//! A cookie token is handed to the library as a synthesized `Authorization: Bearer` header, so
//! it goes through exactly the same checks as a header token.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use tokengate::{AuthError, Authorized, Gate, Principal};

use crate::config::{CookieSettings, IdentitySettings};
use crate::http_util::{Body, from_bytes, json_error, remove_where, same_field};
use crate::metrics::Outcome;

/// Where the request's token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The `Authorization` header, or no token at all.
    Header,
    /// The configured cookie.
    Cookie,
}

/// A refusal, ready to answer.
pub struct Refusal {
    /// The response.
    pub response: http::Response<Body>,
    /// Its metrics reason.
    pub outcome: Outcome,
}

impl Refusal {
    /// The refusal of `error`, as `gate` renders it.
    pub fn auth(gate: &Gate, error: &AuthError) -> Self {
        Refusal { response: from_bytes(gate.render(error)), outcome: Outcome::of(error) }
    }
}

/// Decides `method` + raw `path_and_query`'s path with `headers` (the client's headers).
pub async fn decide(
    gate: &Gate,
    cookies: Option<&CookieSettings>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(Authorized, TokenSource), Refusal> {
    let synthesized;
    let (decision_headers, source) = match cookies {
        Some(cookies) if !headers.contains_key(header::AUTHORIZATION) => {
            match cookie_token(headers, &cookies.name) {
                Ok(Some(token)) => {
                    let mut value = Vec::with_capacity(token.len() + 7);
                    value.extend_from_slice(b"Bearer ");
                    value.extend_from_slice(token.as_bytes());
                    let Ok(value) = HeaderValue::from_bytes(&value) else {
                        return Err(Refusal::auth(
                            gate,
                            &AuthError::InvalidRequest("malformed token cookie"),
                        ));
                    };
                    synthesized = HeaderMap::from_iter([(header::AUTHORIZATION, value)]);
                    (&synthesized, TokenSource::Cookie)
                }
                Ok(None) => (headers, TokenSource::Header),
                Err(why) => return Err(Refusal::auth(gate, &AuthError::InvalidRequest(why))),
            }
        }
        _ => (headers, TokenSource::Header),
    };
    let authorized =
        gate.authorize(method, path, decision_headers).await.map_err(|e| Refusal::auth(gate, &e))?;
    // CSRF: a browser attaches cookies to cross-site requests by itself, so a cookie token
    // only counts for unsafe methods when the request provably comes from a trusted page.
    if source == TokenSource::Cookie
        && authorized.principal.is_some()
        && !is_safe(method)
        && !same_origin(headers, cookies.map_or(&[][..], |c| &c.allowed_origins))
    {
        return Err(Refusal {
            response: json_error(
                StatusCode::FORBIDDEN,
                "csrf",
                "a request authenticated by a cookie with an unsafe method must come from the same origin or an allowed origin",
            ),
            outcome: Outcome::Csrf,
        });
    }
    Ok((authorized, source))
}

/// GET, HEAD, OPTIONS and TRACE change nothing (RFC 9110 §9.2.1).
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// `Sec-Fetch-Site: same-origin`, or an `Origin` among `allowed` (exact, lower-case).
fn same_origin(headers: &HeaderMap, allowed: &[String]) -> bool {
    let fetch_site = headers.get_all("sec-fetch-site").iter().collect::<Vec<_>>();
    if let [site] = fetch_site.as_slice()
        && site.as_bytes() == b"same-origin"
    {
        return true;
    }
    let origins = headers.get_all(header::ORIGIN).iter().collect::<Vec<_>>();
    match origins.as_slice() {
        [origin] => {
            origin.to_str().is_ok_and(|origin| allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)))
        }
        _ => false,
    }
}

/// The value of cookie `name` across every `Cookie` header: `Ok(None)` when absent or empty,
/// an error when it appears twice (a sibling domain may have planted the second) or is not a
/// valid cookie value (RFC 6265 §4.1.1, quotes allowed around it).
pub fn cookie_token<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, &'static str> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else {
            // Not ours to judge unless it holds our cookie, which then would be malformed.
            if memchr(value.as_bytes(), name.as_bytes()) {
                return Err("malformed Cookie header");
            }
            continue;
        };
        for pair in value.split(';') {
            let pair = pair.trim_matches(|c| c == ' ' || c == '\t');
            let Some((key, v)) = pair.split_once('=') else { continue };
            if key.trim_end_matches([' ', '\t']) != name {
                continue;
            }
            if found.is_some() {
                return Err("the token cookie is sent more than once");
            }
            let v = v.trim_start_matches([' ', '\t']);
            let v = match v.strip_prefix('"') {
                Some(rest) => rest.strip_suffix('"').ok_or("malformed token cookie")?,
                None => v,
            };
            if !v.bytes().all(is_cookie_octet) {
                return Err("malformed token cookie");
            }
            found = Some(v);
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

fn memchr(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// RFC 6265 `cookie-octet`: visible ASCII except `"`, `,`, `;` and `\`.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// Removes cookie `name` from the `Cookie` headers (the token must not reach an upstream that
/// is not meant to see it), keeping every other cookie.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(|pair| pair.trim_matches(|c| c == ' ' || c == '\t'))
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k.trim_end() != name))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// Identity headers: stripping inbound copies, then setting them from a principal.
///
/// Scopes are joined with a space (the OAuth `scope` syntax, RFC 6749 §3.3). A claim that is
/// an array is joined with `,` (the list syntax of HTTP fields, RFC 9110 §5.6.1); strings go
/// as they are, numbers and booleans as JSON text, objects as compact JSON. A value that
/// cannot be a header value (control characters) is left out, never truncated.
impl IdentitySettings {
    /// Removes every inbound copy of every mapped header, and of its spellings with `_` for
    /// `-` (`X_User` is `HTTP_X_USER` to CGI-style upstreams, as `X-User` is).
    pub fn strip(&self, headers: &mut HeaderMap) {
        remove_where(headers, |name| self.header_names().any(|h| same_field(name, h.as_str())));
    }

    /// Whether `headers` hold another spelling of a mapped header (`X_User` for `X-User`), which
    /// CGI-style upstreams read as the header itself (`HTTP_X_USER`). In forward-auth mode the
    /// gateway cannot remove it, and proxies that forward it (Traefik, Caddy; nginx drops
    /// headers with `_` by default) would hand the client's own identity to the upstream.
    pub fn carries_other_spelling(&self, headers: &HeaderMap) -> bool {
        headers
            .keys()
            .any(|name| self.header_names().any(|h| h != name && same_field(name.as_str(), h.as_str())))
    }

    /// The value of Envoy's `x-envoy-auth-headers-to-remove` for an answer whose identity
    /// headers are `set`: the mapped headers it does not set, and the `_` spellings of all of
    /// them. Envoy's `allowed_upstream_headers` only overwrites the headers an answer carries,
    /// so without this a client's own `X-Client-Id` would reach the upstream whenever the token
    /// has no client id (or the route is public).
    pub fn envoy_removals(&self, set: &HeaderMap) -> Option<HeaderValue> {
        let mapped: Vec<&str> = self.header_names().map(HeaderName::as_str).collect();
        let mut remove: Vec<String> =
            mapped.iter().filter(|name| !set.contains_key(**name)).map(|name| (*name).to_owned()).collect();
        for name in &mapped {
            let underscored = name.replace('-', "_");
            if !mapped.contains(&underscored.as_str()) {
                remove.push(underscored);
            }
        }
        if remove.is_empty() {
            return None;
        }
        HeaderValue::from_str(&remove.join(", ")).ok()
    }

    /// Sets the mapped headers for `principal`.
    ///
    /// Each value is made only for a configured header, and copied once, into the header:
    /// this runs on every admitted request.
    pub fn inject(&self, principal: &Principal, headers: &mut HeaderMap) {
        let mut set = |name: Option<&HeaderName>, value: &dyn Fn() -> Option<Bytes>| {
            if let Some(name) = name
                && let Some(value) = value()
                && let Ok(value) = HeaderValue::from_maybe_shared(value)
            {
                headers.insert(name.clone(), value);
            }
        };
        let copy = |text: &str| Bytes::copy_from_slice(text.as_bytes());
        set(self.subject.as_ref(), &|| principal.subject().map(copy));
        set(self.scopes.as_ref(), &|| {
            let mut joined = String::new();
            for scope in principal.scope_names() {
                if !joined.is_empty() {
                    joined.push(' ');
                }
                joined.push_str(scope);
            }
            (!joined.is_empty()).then(|| Bytes::from(joined))
        });
        set(self.client_id.as_ref(), &|| principal.client_id().map(copy));
        set(self.issuer.as_ref(), &|| Some(copy(principal.issuer())));
        for (claim, name) in &self.claims {
            set(Some(name), &|| principal.claims().get(claim).and_then(claim_value).map(Bytes::from));
        }
    }
}

fn claim_value(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            Some(items.join(","))
        }
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_token_cookie_strictly() {
        assert_eq!(cookie_token(&headers(&["a=1; tok=abc.def; b=2"]), "tok"), Ok(Some("abc.def")));
        assert_eq!(cookie_token(&headers(&["a=1", "tok=\"xyz\""]), "tok"), Ok(Some("xyz")));
        assert_eq!(cookie_token(&headers(&["a=1; toke=x; xtok=y"]), "tok"), Ok(None));
        assert_eq!(cookie_token(&headers(&["tok="]), "tok"), Ok(None));
        assert!(cookie_token(&headers(&["tok=a; tok=b"]), "tok").is_err());
        assert!(cookie_token(&headers(&["tok=a", "tok=b"]), "tok").is_err());
        assert!(cookie_token(&headers(&["tok=a\\b"]), "tok").is_err());
        assert!(cookie_token(&headers(&["tok=\"a"]), "tok").is_err());
        assert_eq!(cookie_token(&headers(&["garbage; tok=v"]), "tok"), Ok(Some("v")));
    }

    #[test]
    fn removes_only_the_token_cookie() {
        let mut h = headers(&["a=1; tok=abc", "b=2"]);
        remove_cookie(&mut h, "tok");
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        let mut h = headers(&["tok=abc"]);
        remove_cookie(&mut h, "tok");
        assert!(!h.contains_key(header::COOKIE));
    }

    #[test]
    fn same_origin_rules() {
        let allowed = vec!["https://app.example.com".to_owned()];
        let mut h = HeaderMap::new();
        assert!(!same_origin(&h, &allowed));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!same_origin(&h, &allowed));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://app.example.com"));
        assert!(same_origin(&h, &allowed));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example.com"));
        assert!(!same_origin(&h, &allowed));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h, &allowed));
    }

    #[test]
    fn strips_identity_headers_however_spelled() {
        let identity = IdentitySettings {
            subject: Some(HeaderName::from_static("x-user")),
            client_id: Some(HeaderName::from_static("x-client-id")),
            ..IdentitySettings::default()
        };
        let mut h = HeaderMap::new();
        for name in ["x-user", "x_user", "x-client_id", "x-users", "xuser"] {
            h.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("admin"));
        }
        assert!(identity.carries_other_spelling(&h));
        identity.strip(&mut h);
        assert!(!identity.carries_other_spelling(&h), "x-users and xuser are other headers");
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-users", "xuser"]);

        let mut set = HeaderMap::new();
        set.insert("x-user", HeaderValue::from_static("alice"));
        assert!(!identity.carries_other_spelling(&set), "the mapped spelling itself is not another one");
        set.insert("x-client_id", HeaderValue::from_static("mallory"));
        assert!(identity.carries_other_spelling(&set));
        set.remove("x-client_id");
        assert_eq!(identity.envoy_removals(&set).unwrap(), "x-client-id, x_user, x_client_id");
    }

    #[test]
    fn claim_values() {
        use serde_json::json;
        assert_eq!(claim_value(&json!("a b")).as_deref(), Some("a b"));
        assert_eq!(claim_value(&json!(["x", "y", 3])).as_deref(), Some("x,y,3"));
        assert_eq!(claim_value(&json!(true)).as_deref(), Some("true"));
        assert_eq!(claim_value(&json!({"k": 1})).as_deref(), Some("{\"k\":1}"));
        assert_eq!(claim_value(&json!(null)), None);
    }
}
