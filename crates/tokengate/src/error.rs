//! `AuthError` — why a request was refused — and its mapping to an HTTP response.
//!
//! The mapping follows RFC 6750 §3: a request without a token gets 401 with a bare
//! `WWW-Authenticate: Bearer realm="…"`; a malformed request gets 400 `invalid_request`; a token
//! that fails any check gets 401 `invalid_token`; a token without the route's scopes gets 403
//! `insufficient_scope` with `scope="…"`. An issuer outage is 503 with `Retry-After`, never
//! 401, because a 401 tells clients to throw away a token that may be perfectly good.
//!
//! Rendering is a trait, [`ErrorRenderer`], so users can change the body without forking the
//! layer. The default, [`JsonErrors`], writes a small JSON object. Nothing rendered ever echoes
//! the token, a key or an internal address: descriptions are fixed strings.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// Why a token was rejected (the request is answered 401 `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The token is longer than the configured size cap.
    TooLarge,
    /// The token is not a compact JWS: not three base64url segments, or not JSON objects.
    Malformed,
    /// The header's `alg` is not one tokengate implements (this includes every spelling of `none`).
    UnsupportedAlgorithm,
    /// The header's `alg` is not in the issuer's allow-list, or does not fit the key.
    AlgorithmNotAllowed,
    /// The header carries `crit` parameters tokengate does not understand.
    UnknownCritical,
    /// The header's `typ` is not the one the issuer requires.
    WrongType,
    /// The token's `iss` is missing, or not a configured issuer.
    UnknownIssuer,
    /// No key of the issuer matches the token's `kid` (and algorithm).
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// A required claim is absent.
    MissingClaim(&'static str),
    /// A claim has the wrong type or an impossible value.
    InvalidClaim(&'static str),
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `aud` does not contain any configured audience.
    WrongAudience,
    /// The token was revoked.
    Revoked,
    /// The issuer says the token is no longer active (introspection).
    Inactive,
    /// The token is not a JWT and this route only verifies locally.
    OpaqueNotAccepted,
    /// The route needs introspection, but the introspection endpoint speaks for another of the
    /// configured issuers: asking it could never confirm this token, so retrying cannot help.
    IssuerNotIntrospectable,
}

impl Rejection {
    /// A short, fixed, human-readable description, safe to send to the client.
    pub fn description(&self) -> &'static str {
        match self {
            Rejection::TooLarge => "the token is larger than allowed",
            Rejection::Malformed => "the token is malformed",
            Rejection::UnsupportedAlgorithm => "the token's algorithm is not supported",
            Rejection::AlgorithmNotAllowed => "the token's algorithm is not allowed",
            Rejection::UnknownCritical => "the token has unsupported critical header parameters",
            Rejection::WrongType => "the token has the wrong type",
            Rejection::UnknownIssuer => "the token's issuer is not trusted",
            Rejection::UnknownKey => "the token's signing key is unknown",
            Rejection::BadSignature => "the token's signature is invalid",
            Rejection::MissingClaim("exp") => "the token has no exp claim",
            Rejection::MissingClaim("iss") => "the token has no iss claim",
            Rejection::MissingClaim("aud") => "the token has no aud claim",
            Rejection::MissingClaim("sub") => "the token has no sub claim",
            Rejection::MissingClaim(_) => "the token lacks a required claim",
            Rejection::InvalidClaim("exp") => "the token's exp claim is invalid",
            Rejection::InvalidClaim("nbf") => "the token's nbf claim is invalid",
            Rejection::InvalidClaim("iat") => "the token's iat claim is invalid",
            Rejection::InvalidClaim("aud") => "the token's aud claim is invalid",
            Rejection::InvalidClaim("scope") => "the token's scope claim is invalid",
            Rejection::InvalidClaim(_) => "a claim of the token is invalid",
            Rejection::Expired => "the token has expired",
            Rejection::NotYetValid => "the token is not valid yet",
            Rejection::IssuedInFuture => "the token is issued in the future",
            Rejection::WrongAudience => "the token is not meant for this audience",
            Rejection::Revoked => "the token has been revoked",
            Rejection::Inactive => "the token is not active",
            Rejection::OpaqueNotAccepted => "this route accepts only JWT access tokens",
            Rejection::IssuerNotIntrospectable => "the token's issuer cannot be introspected here",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Why a request may not reach the inner service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was sent: 401 with a bare `WWW-Authenticate` challenge (RFC 6750 §3.1).
    MissingToken,
    /// The request is malformed (bad `Authorization` header, more than one token, a path that
    /// cannot be normalised safely): 400 `invalid_request`.
    InvalidRequest(&'static str),
    /// The token failed a check: 401 `invalid_token`.
    InvalidToken(Rejection),
    /// The token lacks scopes the route requires: 403 `insufficient_scope`.
    InsufficientScope {
        /// Every scope the route requires, in configuration order.
        required: Arc<[String]>,
    },
    /// No route rule admits the request (deny-by-default): 403.
    AccessDenied,
    /// A dependency (issuer, introspection endpoint) cannot answer now: 503 with `Retry-After`.
    Unavailable {
        /// A fixed description of what is unavailable.
        reason: &'static str,
        /// Seconds the client should wait before retrying.
        retry_after_secs: u64,
    },
}

impl AuthError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } | AuthError::AccessDenied => StatusCode::FORBIDDEN,
            AuthError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The OAuth error code (RFC 6750 §3.1), if any.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingToken => None,
            AuthError::InvalidRequest(_) => Some("invalid_request"),
            AuthError::InvalidToken(_) => Some("invalid_token"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
            AuthError::AccessDenied => Some("access_denied"),
            AuthError::Unavailable { .. } => Some("temporarily_unavailable"),
        }
    }

    /// A fixed, human-readable description, safe to send to the client.
    pub fn description(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "a bearer token is required",
            AuthError::InvalidRequest(d) => d,
            AuthError::InvalidToken(r) => r.description(),
            AuthError::InsufficientScope { .. } => "the token lacks a scope this route requires",
            AuthError::AccessDenied => "no rule admits this request",
            AuthError::Unavailable { reason, .. } => reason,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code() {
            Some(code) => write!(f, "{code}: {}", self.description()),
            None => f.write_str(self.description()),
        }
    }
}

impl std::error::Error for AuthError {}

/// Renders an [`AuthError`] into the response the client sees.
///
/// Implement this to change the body (HTML, problem+json, …); keep the status and
/// [`www_authenticate`] header unless you know why not.
pub trait ErrorRenderer: Send + Sync + 'static {
    /// Builds the response for `error`. `realm` is the configured `WWW-Authenticate` realm.
    fn render(&self, error: &AuthError, realm: &str) -> Response<Bytes>;
}

/// The default renderer: `{"error": "...", "error_description": "..."}` with the RFC 6750
/// `WWW-Authenticate` challenge and, for 503, `Retry-After`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonErrors;

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl ErrorRenderer for JsonErrors {
    fn render(&self, error: &AuthError, realm: &str) -> Response<Bytes> {
        let body = ErrorBody {
            error: error.code().unwrap_or("unauthorized"),
            error_description: error.description(),
        };
        // Serialising two &str fields cannot fail.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = error.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = www_authenticate(error, realm) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let AuthError::Unavailable { retry_after_secs, .. } = error {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    }
}

/// The RFC 6750 §3 `WWW-Authenticate` challenge for `error`, or `None` where the status
/// carries none (deny-by-default 403, 503).
pub fn www_authenticate(error: &AuthError, realm: &str) -> Option<HeaderValue> {
    let mut value = String::with_capacity(96);
    value.push_str("Bearer realm=");
    push_quoted(&mut value, realm);
    match error {
        AuthError::MissingToken => {}
        AuthError::InvalidRequest(_) | AuthError::InvalidToken(_) => {
            value.push_str(", error=");
            push_quoted(&mut value, error.code().unwrap_or_default());
            value.push_str(", error_description=");
            push_quoted(&mut value, error.description());
        }
        AuthError::InsufficientScope { required } => {
            value.push_str(", error=\"insufficient_scope\", error_description=");
            push_quoted(&mut value, error.description());
            value.push_str(", scope=");
            push_quoted(&mut value, &required.join(" "));
        }
        AuthError::AccessDenied | AuthError::Unavailable { .. } => return None,
    }
    HeaderValue::from_str(&value).ok()
}

/// Appends `s` as an RFC 9110 quoted-string: `"` and `\` escaped, and anything that is not
/// visible ASCII or a space replaced, so a configured realm can never break the header.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_has_no_error_code() {
        let v = www_authenticate(&AuthError::MissingToken, "api").unwrap();
        assert_eq!(v, "Bearer realm=\"api\"");
    }

    #[test]
    fn quoted_strings_are_escaped() {
        let v = www_authenticate(&AuthError::InvalidToken(Rejection::Expired), "a\"b\\c\n").unwrap();
        assert_eq!(
            v,
            "Bearer realm=\"a\\\"b\\\\c?\", error=\"invalid_token\", error_description=\"the token has expired\""
        );
    }

    #[test]
    fn insufficient_scope_lists_scopes() {
        let e = AuthError::InsufficientScope { required: vec!["a".to_string(), "b".to_string()].into() };
        let r = JsonErrors.render(&e, "api");
        assert_eq!(r.status(), 403);
        let h = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(h.ends_with("scope=\"a b\""), "{h}");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["error"], "insufficient_scope");
    }

    #[test]
    fn unavailable_sets_retry_after() {
        let e = AuthError::Unavailable { reason: "introspection is unavailable", retry_after_secs: 5 };
        let r = JsonErrors.render(&e, "api");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
