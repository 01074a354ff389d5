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
/// Cheap to clone: everything lives behind one `Arc`. The token's facts (its claims text, the
/// subject, scopes and times) are shared with the verified-token cache; the `Principal` adds
/// how the token was confirmed and lazily parsed views of the facts. A thread's requests with
/// the same token may share one `Principal` (the verified-token cache keeps each thread's
/// recent ones), so what it parsed for one request is there for the next: views of the same
/// facts, never anything a request wrote.
#[derive(Clone)]
pub struct Principal(Arc<PrincipalData>);

pub(crate) struct PrincipalData {
    issuer: Arc<str>,
    facts: TokenFacts,
    verified_by: VerifiedBy,
    /// Scopes from an introspection answer, which replace the token's.
    scopes_override: Option<Box<[String]>>,
    /// [`Principal::scopes`], split from the token's scope text on first use.
    scope_list: OnceLock<Box<[String]>>,
    /// [`Principal::claims`], parsed from the claims text on first use.
    parsed: OnceLock<Value>,
}

/// What a token says about its caller, gathered by the verifier before a [`TokenFacts`] is
/// built from it. No `Debug`: it holds claim values.
#[derive(Default)]
pub(crate) struct FactsSource<'a> {
    pub(crate) subject: Option<&'a str>,
    pub(crate) client_id: Option<&'a str>,
    pub(crate) token_id: Option<&'a str>,
    pub(crate) session_id: Option<&'a str>,
    pub(crate) scopes: ScopeSource<'a>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) issued_at: Option<i64>,
    pub(crate) not_before: Option<i64>,
}

/// Where a token's scopes came from.
#[derive(Default)]
pub(crate) enum ScopeSource<'a> {
    /// No `scope` or `scp` claim.
    #[default]
    None,
    /// A space-separated string (`scope`, or `scp` as a string).
    Text(&'a str),
    /// An array of strings (`scp`, as Okta and Azure AD send it), each one scope.
    List(Vec<&'a str>),
}

/// The facts of one verified token in **one** allocation, shared by the verified-token cache
/// and every [`Principal`] of that token.
///
/// A cached token costs what this allocation weighs plus its slot in the cache's index, so it
/// is laid out tightly: a fixed header of little-endian integers, then the claims JSON text,
/// then (rarely) copies of string claims whose JSON form is escaped. The subject, client id,
/// `jti`, `sid` and scope text are byte ranges, nearly always into the claims text itself
/// (a claim's value is searched for verbatim there; any occurrence has the same bytes), so
/// they are not stored twice.
///
/// Layout (offsets in bytes): `exp`, `iat`, `nbf` as `i64` at 0, 8, 16; presence bits at
/// 24; the claims text's length as `u32` at 25 (the text starts right after the header); five
/// ranges (start, length) as `u32` pairs from 29. Everything after the header is UTF-8 text.
#[derive(Clone)]
pub(crate) struct TokenFacts(Arc<[u8]>);

/// The five string facts, in header order.
#[derive(Clone, Copy)]
enum Text {
    Subject = 0,
    ClientId = 1,
    TokenId = 2,
    SessionId = 3,
    Scopes = 4,
}

const TIMES: usize = 0;
const PRESENT: usize = 24;
const CLAIMS_LEN: usize = 25;
const RANGES: usize = 29;
const HEADER: usize = RANGES + 5 * 8;
/// Presence bits: `exp`, `iat`, `nbf`, then one per [`Text`].
const HAS_EXP: u8 = 1;
const HAS_IAT: u8 = 2;
const HAS_NBF: u8 = 4;
const fn has_text(text: Text) -> u8 {
    8 << text as u8
}

impl TokenFacts {
    /// The facts of `source`, whose claims are `claims_json` (a JSON object). `None` if the
    /// text is too large to be addressed by the header (over 4 GiB; never, in practice).
    pub(crate) fn new(claims_json: &str, source: &FactsSource<'_>) -> Option<Self> {
        let joined;
        let scope_text = match &source.scopes {
            ScopeSource::None => None,
            ScopeSource::Text(text) => Some(*text),
            ScopeSource::List(items) => {
                joined = items.join(" ");
                Some(joined.as_str())
            }
        };
        let texts = [source.subject, source.client_id, source.token_id, source.session_id, scope_text];

        // Where each string goes: into the claims text where it occurs verbatim, else into
        // the copies after it.
        let mut end = HEADER + claims_json.len();
        let mut ranges = [None::<(usize, usize)>; 5];
        let mut copies: Vec<&str> = Vec::new();
        for (range, text) in ranges.iter_mut().zip(texts) {
            let Some(text) = text else { continue };
            let start = match memchr::memmem::find(claims_json.as_bytes(), text.as_bytes()) {
                Some(found) => HEADER + found,
                None => {
                    copies.push(text);
                    end += text.len();
                    end - text.len()
                }
            };
            *range = Some((start, text.len()));
        }
        u32::try_from(end).ok()?;

        // One allocation of exactly the record's size, then filled in place.
        let mut record: Arc<[u8]> = std::iter::repeat_n(0u8, end).collect();
        let bytes = Arc::get_mut(&mut record)?;
        let mut present = 0u8;
        let times = [(source.expires_at, HAS_EXP), (source.issued_at, HAS_IAT), (source.not_before, HAS_NBF)];
        for (at, (value, bit)) in times.into_iter().enumerate() {
            if let Some(value) = value {
                present |= bit;
                bytes[TIMES + 8 * at..TIMES + 8 * at + 8].copy_from_slice(&value.to_le_bytes());
            }
        }
        let put = |bytes: &mut [u8], at: usize, value: usize| {
            // Every value is at most `end`, checked above to fit.
            bytes[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes());
        };
        put(bytes, CLAIMS_LEN, claims_json.len());
        for (i, range) in ranges.into_iter().enumerate() {
            if let Some((start, len)) = range {
                present |= 8 << i;
                put(bytes, RANGES + 8 * i, start);
                put(bytes, RANGES + 8 * i + 4, len);
            }
        }
        bytes[PRESENT] = present;
        bytes[HEADER..HEADER + claims_json.len()].copy_from_slice(claims_json.as_bytes());
        let mut at = HEADER + claims_json.len();
        for copy in copies {
            bytes[at..at + copy.len()].copy_from_slice(copy.as_bytes());
            at += copy.len();
        }
        Some(Self(record))
    }

    /// Bytes this token's facts occupy (its weight in the verified-token cache).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn u32_at(&self, at: usize) -> u32 {
        self.0.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes)
    }

    fn present(&self, bit: u8) -> bool {
        self.0.get(PRESENT).is_some_and(|present| present & bit != 0)
    }

    fn time(&self, index: usize, bit: u8) -> Option<i64> {
        if !self.present(bit) {
            return None;
        }
        let at = TIMES + 8 * index;
        self.0.get(at..at + 8).and_then(|b| b.try_into().ok()).map(i64::from_le_bytes)
    }

    fn str_at(&self, start: usize, len: usize) -> Option<&str> {
        // The ranges were cut from UTF-8 text at the boundaries of a UTF-8 string, so this
        // never fails; a failure would read as an absent claim, never as another one.
        std::str::from_utf8(self.0.get(start..start.checked_add(len)?)?).ok()
    }

    fn text(&self, text: Text) -> Option<&str> {
        if !self.present(has_text(text)) {
            return None;
        }
        let at = RANGES + 8 * text as usize;
        self.str_at(self.u32_at(at) as usize, self.u32_at(at + 4) as usize)
    }

    /// `exp`, seconds since the Unix epoch.
    pub(crate) fn expires_at(&self) -> Option<i64> {
        self.time(0, HAS_EXP)
    }

    /// `iat`, seconds since the Unix epoch.
    pub(crate) fn issued_at(&self) -> Option<i64> {
        self.time(1, HAS_IAT)
    }

    /// `nbf`, seconds since the Unix epoch.
    pub(crate) fn not_before(&self) -> Option<i64> {
        self.time(2, HAS_NBF)
    }

    /// The claims, as the JSON text they were verified as.
    fn claims_json(&self) -> &str {
        self.str_at(HEADER, self.u32_at(CLAIMS_LEN) as usize).unwrap_or("{}")
    }
}

impl Principal {
    /// The principal of a token whose `issuer` vouched for `facts`. `parsed` is the claims
    /// as a value when the caller already holds them (an introspection answer).
    pub(crate) fn new(
        issuer: Arc<str>,
        facts: TokenFacts,
        verified_by: VerifiedBy,
        parsed: Option<Value>,
    ) -> Self {
        Self(Arc::new(PrincipalData {
            issuer,
            facts,
            verified_by,
            scopes_override: None,
            scope_list: OnceLock::new(),
            parsed: parsed.map_or_else(OnceLock::new, OnceLock::from),
        }))
    }

    /// The facts this principal was built from (what the verified-token cache keeps).
    pub(crate) fn facts(&self) -> &TokenFacts {
        &self.0.facts
    }

    /// The issuer (`iss`) that vouched for the token.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// The subject (`sub`), if the token has one.
    pub fn subject(&self) -> Option<&str> {
        self.0.facts.text(Text::Subject)
    }

    /// The OAuth client the token was issued to (`client_id`, else `azp`).
    pub fn client_id(&self) -> Option<&str> {
        self.0.facts.text(Text::ClientId)
    }

    /// The token's scopes (`scope`, space-separated, or `scp`), or those of the introspection
    /// answer that confirmed it, when that answer had any. Only RFC 6749 `scope-token`s: see
    /// [`policy::scope_tokens`](crate::policy::scope_tokens).
    pub fn scopes(&self) -> &[String] {
        if let Some(scopes) = &self.0.scopes_override {
            return scopes;
        }
        self.0.scope_list.get_or_init(|| self.scope_names().map(str::to_owned).collect())
    }

    /// The scopes of [`scopes`](Self::scopes), one at a time, without building the list.
    pub fn scope_names(&self) -> impl Iterator<Item = &str> {
        let (listed, text) = match &self.0.scopes_override {
            Some(scopes) => (Some(scopes.iter().map(String::as_str)), None),
            None => (None, self.0.facts.text(Text::Scopes)),
        };
        listed.into_iter().flatten().chain(text.into_iter().flat_map(crate::policy::scope_tokens))
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope_names().any(|s| s == scope)
    }

    /// Expiry (`exp`) in seconds since the Unix epoch.
    pub fn expires_at(&self) -> Option<i64> {
        self.0.facts.expires_at()
    }

    /// Issue time (`iat`) in seconds since the Unix epoch.
    pub fn issued_at(&self) -> Option<i64> {
        self.0.facts.issued_at()
    }

    /// The token's identifier (`jti`).
    pub fn token_id(&self) -> Option<&str> {
        self.0.facts.text(Text::TokenId)
    }

    /// The session id (`sid`, OpenID Connect Front-/Back-Channel Logout), if the token has
    /// one as a string. Extracted when the token was verified: the revocation list checks it
    /// on every request.
    pub fn session_id(&self) -> Option<&str> {
        self.0.facts.text(Text::SessionId)
    }

    /// How the token was found valid.
    pub fn verified_by(&self) -> VerifiedBy {
        self.0.verified_by
    }

    /// The same principal, confirmed by introspection; the answer's scopes, when it gave
    /// any, replace the token's.
    pub(crate) fn confirmed_by_introspection(&self, scopes: Option<Vec<String>>) -> Principal {
        let d = &self.0;
        let scopes_override = match scopes {
            Some(scopes) => Some(scopes.into_boxed_slice()),
            None => d.scopes_override.clone(),
        };
        Principal(Arc::new(PrincipalData {
            issuer: d.issuer.clone(),
            facts: d.facts.clone(),
            verified_by: VerifiedBy::Introspection,
            scopes_override,
            scope_list: d.scope_list.clone(),
            parsed: d.parsed.clone(),
        }))
    }

    /// Every claim of the token, as verified (a JSON object). Parsed from the token's text on
    /// the first call for this principal (which a thread's requests with the same token may
    /// share), then kept; prefer [`claims_as`](Self::claims_as) for a typed view, which reads
    /// the text directly.
    pub fn claims(&self) -> &Value {
        // The verifier (or the introspection client) parsed this text already and refused
        // duplicates and the member names `serde_json` reserves, so `Value` reads it as the
        // same object the checks read; a failure cannot happen, and `Null` would still be a
        // safe answer (no claim present).
        self.0.parsed.get_or_init(|| serde_json::from_str(self.0.facts.claims_json()).unwrap_or(Value::Null))
    }

    /// The claims deserialised into `T`.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self.0.parsed.get() {
            Some(value) => T::deserialize(value),
            None => serde_json::from_str(self.0.facts.claims_json()),
        }
    }

    /// The names of the claims, for `Debug` (their values may be personal data).
    fn claim_names(&self) -> Vec<String> {
        match self.0.parsed.get() {
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            Some(_) => Vec::new(),
            None => serde_json::from_str::<std::collections::BTreeMap<String, serde::de::IgnoredAny>>(
                self.0.facts.claims_json(),
            )
            .map(|map| map.into_keys().collect())
            .unwrap_or_default(),
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claim values may be personal data; list only their names.
        f.debug_struct("Principal")
            .field("issuer", &self.issuer())
            .field("subject", &self.subject())
            .field("client_id", &self.client_id())
            .field("scopes", &self.scopes())
            .field("expires_at", &self.expires_at())
            .field("verified_by", &self.0.verified_by)
            .field("claims", &self.claim_names())
            .finish()
    }
}

/// Put into the extensions of every request the layer lets through, token or not.
///
/// One `Arc`: cloning it for each request writes one reference count that every worker shares.
#[derive(Clone)]
pub struct GateContext(Arc<ContextData>);

struct ContextData {
    realm: Box<str>,
    renderer: Arc<dyn ErrorRenderer>,
}

impl GateContext {
    pub(crate) fn new(realm: &str, renderer: Arc<dyn ErrorRenderer>) -> Self {
        Self(Arc::new(ContextData { realm: realm.into(), renderer }))
    }

    /// The `WWW-Authenticate` realm of the layer that let the request through.
    pub fn realm(&self) -> &str {
        &self.0.realm
    }

    /// Renders `error` the way the layer would.
    pub fn render(&self, error: &crate::AuthError) -> http::Response<bytes::Bytes> {
        self.0.renderer.render(error, &self.0.realm)
    }
}

impl fmt::Debug for GateContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateContext").field("realm", &self.realm()).finish_non_exhaustive()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(json: &str, source: &FactsSource<'_>) -> Principal {
        let facts = TokenFacts::new(json, source).expect("facts");
        Principal::new(Arc::from("https://issuer.example"), facts, VerifiedBy::Signature, None)
    }

    #[test]
    fn facts_found_in_the_claims_text_are_not_stored_twice() {
        let json = r#"{"sub":"alice","client_id":"app","jti":"j-1","sid":"s-1","scope":"read write"}"#;
        let source = FactsSource {
            subject: Some("alice"),
            client_id: Some("app"),
            token_id: Some("j-1"),
            session_id: Some("s-1"),
            scopes: ScopeSource::Text("read write"),
            expires_at: Some(2_000_000_000),
            issued_at: Some(-5),
            not_before: None,
        };
        let facts = TokenFacts::new(json, &source).expect("facts");
        assert_eq!(facts.len(), HEADER + json.len(), "every string is a range into the claims");
        let p = Principal::new(Arc::from("https://issuer.example"), facts, VerifiedBy::Signature, None);
        assert_eq!(p.subject(), Some("alice"));
        assert_eq!(p.client_id(), Some("app"));
        assert_eq!(p.token_id(), Some("j-1"));
        assert_eq!(p.session_id(), Some("s-1"));
        assert_eq!(p.scopes(), ["read", "write"]);
        assert!(p.scope_names().eq(["read", "write"]));
        assert!(p.has_scope("write") && !p.has_scope("writ") && !p.has_scope("read write"));
        assert_eq!(
            (p.expires_at(), p.issued_at(), p.facts().not_before()),
            (Some(2_000_000_000), Some(-5), None)
        );
        assert_eq!(p.claims()["sub"], "alice");
    }

    #[test]
    fn escaped_values_are_kept_as_decoded_copies() {
        // `sub` is "A\"B" with the A escaped, so its decoded form is nowhere in the text.
        let json = r#"{"sub":"\u0041\"B","iss":"x"}"#;
        let source = FactsSource { subject: Some("A\"B"), ..FactsSource::default() };
        let p = principal(json, &source);
        assert_eq!(p.subject(), Some("A\"B"));
        assert_eq!(p.client_id(), None);
        assert_eq!(p.token_id(), None);
        assert!(p.scopes().is_empty() && !p.has_scope(""));
        assert_eq!(p.claims_as::<Value>().expect("claims")["sub"], "A\"B");
    }

    #[test]
    fn a_value_may_be_found_anywhere_in_the_text_with_the_same_bytes() {
        // The decoded `sub` is `a","b`: those bytes occur, unescaped, inside the array.
        let json = r#"{"k":["a","b"],"sub":"a\",\"b"}"#;
        let source = FactsSource { subject: Some(r#"a","b"#), ..FactsSource::default() };
        let facts = TokenFacts::new(json, &source).expect("facts");
        assert_eq!(facts.len(), HEADER + json.len());
        let p = Principal::new(Arc::from("i"), facts, VerifiedBy::Signature, None);
        assert_eq!(p.subject(), Some(r#"a","b"#));
    }

    #[test]
    fn scp_items_are_one_scope_each_and_never_split() {
        let json = r#"{"scp":["orders:read","two words","","admin"]}"#;
        let claims: crate::jwt::members::Claims<'_> = crate::jwt::members::parse(json).expect("claims");
        let source = FactsSource {
            scopes: crate::jwt::scope_source(&claims).expect("scopes"),
            ..FactsSource::default()
        };
        assert_eq!(crate::jwt::scopes(&claims).expect("scopes"), ["orders:read", "admin"]);
        let p = principal(json, &source);
        assert_eq!(p.scopes(), ["orders:read", "admin"]);
        assert!(p.scope_names().eq(["orders:read", "admin"]));
        assert!(p.has_scope("admin"));
        assert!(!p.has_scope("two") && !p.has_scope("words") && !p.has_scope("two words"));
    }

    #[test]
    fn introspection_scopes_replace_the_tokens() {
        let json = r#"{"scope":"read admin"}"#;
        let p = principal(
            json,
            &FactsSource { scopes: ScopeSource::Text("read admin"), ..FactsSource::default() },
        );
        let confirmed = p.confirmed_by_introspection(Some(vec!["read".to_owned()]));
        assert_eq!(confirmed.scopes(), ["read"]);
        assert!(confirmed.scope_names().eq(["read"]), "the answer's scopes, not the token's");
        assert!(!confirmed.has_scope("admin"));
        assert_eq!(confirmed.verified_by(), VerifiedBy::Introspection);
        let kept = p.confirmed_by_introspection(None);
        assert!(kept.has_scope("admin"));
    }

    #[test]
    fn debug_shows_claim_names_never_values() {
        let json = r#"{"sub":"alice","email":"alice@example.com"}"#;
        let p = principal(json, &FactsSource { subject: Some("alice"), ..FactsSource::default() });
        let debug = format!("{p:?}");
        assert!(debug.contains("\"email\"") && !debug.contains("alice@example.com"), "{debug}");
    }
}
