//! What the inner service learns about the caller: the [`Principal`] put into the request's
//! extensions, and (feature `axum`) the `Principal` and [`Claims<T>`] extractors.
//!
//! The layer marks every request it lets through with a [`GateContext`], so an extractor can
//! tell "no token on an `optional` route" (a `None`) from "the layer is not in front of this
//! handler" (a wiring mistake, answered 500 rather than a misleading 401).

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ErrorRenderer;

/// How a principal's token was found valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    /// Local JWT verification (signature and claims).
    Signature,
    /// Local verification confirmed by the issuer's introspection endpoint.
    Introspection,
}

/// The authenticated caller of a request.
///
/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Clone)]
pub struct Principal(Arc<PrincipalData>);

pub(crate) struct PrincipalData {
    pub(crate) issuer: Arc<str>,
    pub(crate) subject: Option<Box<str>>,
    pub(crate) client_id: Option<Box<str>>,
    pub(crate) scopes: Box<[String]>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) issued_at: Option<i64>,
    pub(crate) token_id: Option<Box<str>>,
    pub(crate) session_id: Option<Box<str>>,
    pub(crate) verified_by: VerifiedBy,
    pub(crate) claims: ClaimsJson,
}

/// Every claim of a token, kept as the JSON text it arrived as and parsed into a [`Value`]
/// only when someone asks for it.
///
/// A cached principal lives as long as its token is in use; its claims as a `serde_json` map
/// weigh several times their text (one allocation per key and string value, and the tree), so
/// the verified-token cache keeps the text, and handlers that only read the subject or scopes
/// never pay for the rest. [`Principal::claims_as`] deserialises straight from the text.
pub(crate) struct ClaimsJson {
    /// A JSON object without duplicate member names (checked when the token was verified).
    json: Box<str>,
    parsed: OnceLock<Value>,
}

impl ClaimsJson {
    /// Claims from their verified JSON text.
    pub(crate) fn from_json(json: Box<str>) -> Self {
        Self { json, parsed: OnceLock::new() }
    }

    /// Claims already parsed (introspection answers), with their text for the same API.
    pub(crate) fn from_value(value: Value) -> Self {
        let json = value.to_string().into_boxed_str();
        Self { json, parsed: OnceLock::from(value) }
    }

    fn value(&self) -> &Value {
        // The text was parsed once already, as an object; a failure here cannot happen, and
        // `Null` would still be a safe answer (no claim present).
        self.parsed.get_or_init(|| serde_json::from_str(&self.json).unwrap_or(Value::Null))
    }

    fn names(&self) -> Vec<String> {
        match self.parsed.get() {
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            Some(_) => Vec::new(),
            None => {
                serde_json::from_str::<std::collections::BTreeMap<String, serde::de::IgnoredAny>>(&self.json)
                    .map(|map| map.into_keys().collect())
                    .unwrap_or_default()
            }
        }
    }
}

impl Clone for ClaimsJson {
    fn clone(&self) -> Self {
        Self { json: self.json.clone(), parsed: self.parsed.clone() }
    }
}

impl Principal {
    pub(crate) fn new(data: PrincipalData) -> Self {
        Self(Arc::new(data))
    }

    /// The issuer (`iss`) that vouched for the token.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// The subject (`sub`), if the token has one.
    pub fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }

    /// The OAuth client the token was issued to (`client_id`, else `azp`).
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }

    /// The token's scopes (`scope`, space-separated, or `scp`).
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| s == scope)
    }

    /// Expiry (`exp`) in seconds since the Unix epoch.
    pub fn expires_at(&self) -> Option<i64> {
        self.0.expires_at
    }

    /// Issue time (`iat`) in seconds since the Unix epoch.
    pub fn issued_at(&self) -> Option<i64> {
        self.0.issued_at
    }

    /// The token's identifier (`jti`).
    pub fn token_id(&self) -> Option<&str> {
        self.0.token_id.as_deref()
    }

    /// The session id (`sid`, OpenID Connect Front-/Back-Channel Logout), if the token has
    /// one as a string. Extracted when the token was verified: the revocation list checks it
    /// on every request.
    pub fn session_id(&self) -> Option<&str> {
        self.0.session_id.as_deref()
    }

    /// How the token was found valid.
    pub fn verified_by(&self) -> VerifiedBy {
        self.0.verified_by
    }

    /// The same principal, confirmed by introspection; the answer's scopes, when it gave
    /// any, replace the token's.
    pub(crate) fn confirmed_by_introspection(&self, scopes: Option<Vec<String>>) -> Principal {
        let d = &self.0;
        Principal::new(PrincipalData {
            issuer: d.issuer.clone(),
            subject: d.subject.clone(),
            client_id: d.client_id.clone(),
            scopes: scopes.map_or_else(|| d.scopes.clone(), Vec::into_boxed_slice),
            expires_at: d.expires_at,
            issued_at: d.issued_at,
            token_id: d.token_id.clone(),
            session_id: d.session_id.clone(),
            verified_by: VerifiedBy::Introspection,
            claims: d.claims.clone(),
        })
    }

    /// Every claim of the token, as verified (a JSON object). Parsed from the token's text on
    /// the first call for this token, then kept; prefer [`claims_as`](Self::claims_as) for a
    /// typed view, which reads the text directly.
    pub fn claims(&self) -> &Value {
        self.0.claims.value()
    }

    /// The claims deserialised into `T`.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self.0.claims.parsed.get() {
            Some(value) => T::deserialize(value),
            None => serde_json::from_str(&self.0.claims.json),
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claim values may be personal data; list only their names.
        let names = self.0.claims.names();
        f.debug_struct("Principal")
            .field("issuer", &self.0.issuer)
            .field("subject", &self.0.subject)
            .field("client_id", &self.0.client_id)
            .field("scopes", &self.0.scopes)
            .field("expires_at", &self.0.expires_at)
            .field("verified_by", &self.0.verified_by)
            .field("claims", &names)
            .finish()
    }
}

/// Put into the extensions of every request the layer lets through, token or not.
#[derive(Clone)]
pub struct GateContext {
    pub(crate) realm: Arc<str>,
    pub(crate) renderer: Arc<dyn ErrorRenderer>,
}

impl GateContext {
    /// The `WWW-Authenticate` realm of the layer that let the request through.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Renders `error` the way the layer would.
    pub fn render(&self, error: &crate::AuthError) -> http::Response<bytes::Bytes> {
        self.renderer.render(error, &self.realm)
    }
}

impl fmt::Debug for GateContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateContext").field("realm", &self.realm).finish_non_exhaustive()
    }
}

/// The verified claims of the request's token, deserialised into `T` (an axum extractor with
/// feature `axum`).
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

#[cfg(feature = "axum")]
mod axum_extract {
    use super::*;
    use crate::error::{AuthError, Rejection};
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    /// Why a [`Principal`] or [`Claims`] extractor refused the request.
    #[derive(Debug)]
    pub enum ClaimsRejection {
        /// The `TokenGateLayer` is not in front of this handler: a wiring mistake, answered 500.
        MissingLayer,
        /// No token was sent (on an `optional` route) but the handler requires one.
        Auth(AuthError, GateContext),
    }

    impl IntoResponse for ClaimsRejection {
        fn into_response(self) -> Response {
            match self {
                ClaimsRejection::MissingLayer => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(http::header::CONTENT_TYPE, "application/json")],
                    r#"{"error":"server_error","error_description":"tokengate: the TokenGateLayer is not in front of this handler"}"#,
                )
                    .into_response(),
                ClaimsRejection::Auth(error, context) => context.render(&error).map(axum::body::Body::from),
            }
        }
    }

    fn context(parts: &Parts) -> Result<GateContext, ClaimsRejection> {
        parts.extensions.get::<GateContext>().cloned().ok_or(ClaimsRejection::MissingLayer)
    }

    fn principal(parts: &Parts) -> Result<Option<Principal>, ClaimsRejection> {
        context(parts)?;
        Ok(parts.extensions.get::<Principal>().cloned())
    }

    fn claims<T: DeserializeOwned>(
        parts: &Parts,
        principal: &Principal,
    ) -> Result<Claims<T>, ClaimsRejection> {
        let context = context(parts)?;
        principal.claims_as::<T>().map(Claims).map_err(|_| {
            ClaimsRejection::Auth(AuthError::InvalidToken(Rejection::InvalidClaim("claims")), context)
        })
    }

    impl<S: Send + Sync> FromRequestParts<S> for Principal {
        type Rejection = ClaimsRejection;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            match principal(parts)? {
                Some(p) => Ok(p),
                None => Err(ClaimsRejection::Auth(AuthError::MissingToken, context(parts)?)),
            }
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
        type Rejection = ClaimsRejection;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
            principal(parts)
        }
    }

    impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Claims<T> {
        type Rejection = ClaimsRejection;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            match principal(parts)? {
                Some(p) => claims(parts, &p),
                None => Err(ClaimsRejection::Auth(AuthError::MissingToken, context(parts)?)),
            }
        }
    }

    impl<S: Send + Sync, T: DeserializeOwned + Send> OptionalFromRequestParts<S> for Claims<T> {
        type Rejection = ClaimsRejection;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
            match principal(parts)? {
                Some(p) => claims(parts, &p).map(Some),
                None => Ok(None),
            }
        }
    }
}

#[cfg(feature = "axum")]
pub use axum_extract::ClaimsRejection;
