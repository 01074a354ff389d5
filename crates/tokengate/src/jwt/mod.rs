//! Local verification of a compact JWS access token: header checks, issuer selection,
//! signature, claims. Pure and synchronous — it reads a key-set snapshot and never waits.
//!
//! The order is the one in DESIGN.md: size cap; three strict base64url segments; header
//! (`alg` registered and allowed, no `crit`, `typ` when required; `jku`/`x5u`/`jwk`/`x5c` are
//! ignored, never fetched or trusted); the unverified `iss` picks one of the *configured*
//! issuers; the signature is checked with that issuer's keys alone, with the algorithm bound to
//! the key; then `exp`, `nbf`, `iat`, `iss`, `aud`. The payload JSON is parsed exactly once.
//! Duplicate member names in the header or at the top level of the payload make a token
//! malformed (RFC 7515 §5.2 lets us refuse them, and parsers that disagree on which duplicate
//! wins are a classic bypass).

pub(crate) mod members;

pub(crate) use members::strict_object;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::claims::{FactsSource, Principal, ScopeSource, TokenFacts, VerifiedBy};
use crate::error::Rejection;
use crate::jwks::{KeySet, KeyStore, parse_algorithm};
use crate::policy::{is_scope_token, scope_tokens};
use members::{Claims, Header, Member, Members};

/// Default clock-skew leeway for `exp`, `nbf` and `iat`: 30 s, what most gateways use.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The largest leeway the builder accepts: 5 minutes. More would keep expired tokens alive.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Anything later is not a date.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// The verification settings and current keys of one issuer.
pub struct IssuerVerifier {
    pub(crate) issuer: Arc<str>,
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) required_type: Option<String>,
    pub(crate) require_exp: bool,
    pub(crate) leeway: i64,
    pub(crate) store: Arc<KeyStore>,
    /// Refuse JWTs that declare themselves another kind of token (see [`OTHER_JWT_TYPES`]).
    pub(crate) access_tokens_only: bool,
}

/// `typ` values of JWTs that are not access tokens and must never pass for one (RFC 8725
/// §3.11–3.12): OpenID Connect Back-Channel Logout tokens (§2.4) and Security Event Tokens
/// (RFC 8417 §2.3). Compared as media types (`application/` optional, case-insensitive).
pub(crate) const OTHER_JWT_TYPES: [&str; 2] = ["logout+jwt", "secevent+jwt"];

impl IssuerVerifier {
    /// The issuer identifier (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The issuer's key store: current keys, freshness, fetch counters.
    pub fn store(&self) -> &Arc<KeyStore> {
        &self.store
    }
}

impl fmt::Debug for IssuerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerVerifier")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("required_type", &self.required_type)
            .field("access_tokens_only", &self.access_tokens_only)
            .field("store", &self.store)
            .finish()
    }
}

/// The header and payload of a token, decoded but not yet verified.
pub struct UnverifiedToken<'t> {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// The registered algorithm named by the header.
    pub alg: Option<Algorithm>,
    signing_input: &'t [u8],
}

impl<'t> UnverifiedToken<'t> {
    /// What the signature covers: the first two segments and the dot between them.
    pub fn signing_input(&self) -> &'t [u8] {
        self.signing_input
    }
}

/// Splits and decodes a compact JWS without verifying anything: three non-empty segments of
/// canonical unpadded base64url, the first two JSON objects without duplicate member names.
/// It parses every member into maps, for tools that show them; [`verify`] parses only the
/// members it reads, and the two agree on which tokens are well formed.
pub fn decode_unverified(token: &str) -> Result<UnverifiedToken<'_>, Rejection> {
    let (h, p, s) = segments(token)?;
    let header = strict_object(&b64(h)?)?;
    let claims = strict_object(&b64(p)?)?;
    b64(s)?;
    let alg = match header.get("alg") {
        Some(Value::String(name)) => parse_algorithm(name),
        _ => None,
    };
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    Ok(UnverifiedToken { header, claims, alg, signing_input })
}

/// The three non-empty segments of a compact JWS.
fn segments(token: &str) -> Result<(&str, &str, &str), Rejection> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Rejection::Malformed);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(Rejection::Malformed);
    }
    Ok((h, p, s))
}

/// A segment that must decode to UTF-8 text (the header and the payload, both JSON).
fn b64_text(segment: &str) -> Result<String, Rejection> {
    String::from_utf8(b64(segment)?).map_err(|_| Rejection::Malformed)
}

fn b64(segment: &str) -> Result<Vec<u8>, Rejection> {
    // The standard engine refuses padding, the `+`/`/` alphabet, whitespace and non-zero
    // trailing bits, so every token has exactly one encoding.
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| Rejection::Malformed)
}

/// Why [`verify`] did not return a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The token is invalid.
    Rejected(Rejection),
    /// The token names a `kid` the issuer's current key set lacks; a refresh may find it.
    UnknownKey {
        /// The index of the issuer in the configured list.
        issuer: usize,
    },
    /// The issuer's keys are not loaded yet, or older than the allowed staleness.
    KeysUnavailable,
}

impl From<Rejection> for VerifyError {
    fn from(r: Rejection) -> Self {
        VerifyError::Rejected(r)
    }
}

/// Verifies `token` against the configured `issuers` at time `now` and returns the principal.
pub fn verify(
    token: &str,
    issuers: &[IssuerVerifier],
    now: i64,
    max_len: usize,
) -> Result<Principal, VerifyError> {
    verify_detailed(token, issuers, now, max_len).map(|v| v.principal)
}

/// A successful verification and what a cache needs to know about it.
pub(crate) struct Verification {
    pub(crate) principal: Principal,
    /// Index of the issuer in the configured list.
    pub(crate) issuer: usize,
    /// The issuer's key-set generation read before the keys were loaded: if the set changed
    /// meanwhile, the recorded generation is the older one, so a cache entry is voided
    /// rather than trusted.
    pub(crate) generation: u64,
}

/// [`verify`], also returning what the verified-token cache records.
pub(crate) fn verify_detailed(
    token: &str,
    issuers: &[IssuerVerifier],
    now: i64,
    max_len: usize,
) -> Result<Verification, VerifyError> {
    if token.len() > max_len {
        return Err(Rejection::TooLarge.into());
    }
    let (h, p, s) = segments(token)?;
    // Each JSON text is parsed once, into the members verification reads (see `members`).
    let header_json = b64_text(h)?;
    let header: Header<'_> = members::parse(&header_json)?;
    let payload = b64_text(p)?;
    let claims: Claims<'_> = members::parse(&payload)?;
    let signature = b64(s)?;
    let alg = match &header.alg {
        Some(Member::Str(name)) => parse_algorithm(name).ok_or(Rejection::UnsupportedAlgorithm)?,
        Some(_) => return Err(Rejection::Malformed.into()),
        None => return Err(Rejection::UnsupportedAlgorithm.into()),
    };
    // RFC 7515 §4.1.11: a recipient must reject a token whose `crit` it does not fully
    // understand; tokengate implements no extension, so any `crit` is refused.
    if header.crit.is_some() {
        return Err(Rejection::UnknownCritical.into());
    }
    let kid = match &header.kid {
        None => None,
        Some(Member::Str(kid)) => Some(&**kid),
        Some(_) => return Err(Rejection::Malformed.into()),
    };

    let index = match &claims.iss {
        None => return Err(Rejection::MissingClaim("iss").into()),
        Some(Member::Str(iss)) => {
            issuers.iter().position(|i| *i.issuer == **iss).ok_or(Rejection::UnknownIssuer)?
        }
        Some(_) => return Err(Rejection::InvalidClaim("iss").into()),
    };
    let issuer = &issuers[index];
    if !issuer.algorithms.contains(&alg) {
        return Err(Rejection::AlgorithmNotAllowed.into());
    }
    if let Some(required) = &issuer.required_type {
        match &header.typ {
            Some(Member::Str(typ)) if media_type_eq(typ, required) => {}
            _ => return Err(Rejection::WrongType.into()),
        }
    }
    // A logout token or a security event token, signed by the same issuer for an audience an
    // API also accepts, is still no access token: refused by its `typ`, or, untyped, by the
    // `events` claim both carry (OIDC Back-Channel Logout §2.4, RFC 8417 §2.2).
    if issuer.access_tokens_only {
        // Parameters (`logout+jwt; charset=utf-8`) do not make it another type.
        let other_type = matches!(&header.typ, Some(Member::Str(typ))
            if OTHER_JWT_TYPES.iter().any(|t| media_type_eq(typ.split(';').next().unwrap_or_default(), t)));
        if other_type || claims.events.is_some() {
            return Err(Rejection::WrongType.into());
        }
    }

    // Before the first successful fetch, only static keys configured next to the remote source
    // are in the store: they may accept their own tokens, but a token they cannot verify may be
    // the remote keys' to judge, so it gets 503 (retry later), as it would without static
    // keys. Once loaded, a stale set is not used at all.
    let store = &issuer.store;
    let loaded = store.loaded();
    if loaded && store.is_stale(now) {
        return Err(VerifyError::KeysUnavailable);
    }
    let generation = store.generation();
    let keys = store.snapshot();
    if !loaded && keys.is_empty() {
        return Err(VerifyError::KeysUnavailable);
    }
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    match verify_signature(&keys, kid, alg, signing_input, &signature) {
        Ok(()) => {}
        Err(_) if !loaded => return Err(VerifyError::KeysUnavailable),
        Err(KeyMiss::Refreshable) => return Err(VerifyError::UnknownKey { issuer: index }),
        Err(KeyMiss::Final(rejection)) => return Err(rejection.into()),
    }
    check_claims(issuer, &claims, now)?;
    let facts = token_facts(&claims, &payload)?;
    let principal = Principal::new(issuer.issuer.clone(), facts, VerifiedBy::Signature, None);
    Ok(Verification { principal, issuer: index, generation })
}

/// Why [`verify_signature`] found no key that verifies the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyMiss {
    /// The token names a `kid` the set lacks: a refresh may bring it (rotation, also to a new
    /// algorithm — the caller has already checked the `alg` against the issuer's allow-list).
    Refreshable,
    /// No refresh can help.
    Final(Rejection),
}

/// Verifies the signature with the issuer's keys that fit `kid` and `alg`.
// `&Vec<u8>` because jsonwebtoken's verifiers implement `Verifier<Vec<u8>>`.
#[allow(clippy::ptr_arg)]
fn verify_signature(
    keys: &KeySet,
    kid: Option<&str>,
    alg: Algorithm,
    message: &[u8],
    signature: &Vec<u8>,
) -> Result<(), KeyMiss> {
    // Keys are looked up by `kid` whenever the set has any (RFC 7517 §4.5): a token without
    // one can never match, and no refresh changes that — refuse it without a fetch.
    if kid.is_none() && keys.has_kids() {
        return Err(KeyMiss::Final(Rejection::UnknownKey));
    }
    let mut tried = false;
    for key in keys.candidates(kid, alg) {
        tried = true;
        if key.verifies(alg, message, signature) {
            return Ok(());
        }
    }
    if tried {
        return Err(KeyMiss::Final(Rejection::BadSignature));
    }
    // No candidate: either what has this kid cannot verify this alg, or nothing has this kid.
    match kid {
        Some(kid) if keys.has_kid(kid) => Err(KeyMiss::Final(Rejection::AlgorithmNotAllowed)),
        Some(_) => Err(KeyMiss::Refreshable),
        // A set without kids and no key for this alg.
        None => Err(KeyMiss::Final(Rejection::AlgorithmNotAllowed)),
    }
}

/// Whether two `typ` values name the same media type: case-insensitively, with or without the
/// `application/` prefix, surrounding whitespace ignored (RFC 7515 §4.1.9). Parameters
/// (`; charset=…`) count: strip them first where they should not.
pub fn media_type_eq(got: &str, want: &str) -> bool {
    strip_application(got).eq_ignore_ascii_case(strip_application(want))
}

/// `typ` trimmed, without an `application/` prefix.
fn strip_application(typ: &str) -> &str {
    let typ = typ.trim();
    // `get` rather than slicing: `typ` is attacker-controlled and may be any UTF-8.
    match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    }
}

/// A NumericDate claim (RFC 7519 §2): a non-negative number of seconds, not later than year
/// 9999. Fractions are allowed; `round_up` says which way to round them (always the stricter).
fn numeric_date(
    value: Option<&Member<'_>>,
    name: &'static str,
    round_up: bool,
) -> Result<Option<i64>, Rejection> {
    let Some(value) = value else {
        return Ok(None);
    };
    let Member::Num(n) = value else {
        return Err(Rejection::InvalidClaim(name));
    };
    if let Some(i) = n.as_i64() {
        if (0..=MAX_NUMERIC_DATE as i64).contains(&i) {
            return Ok(Some(i));
        }
        return Err(Rejection::InvalidClaim(name));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(&f) => {
            Ok(Some(if round_up { f.ceil() } else { f.floor() } as i64))
        }
        _ => Err(Rejection::InvalidClaim(name)),
    }
}

/// `exp`, `nbf`, `iat` and `aud` (`iss` was matched when the issuer was chosen).
fn check_claims(issuer: &IssuerVerifier, claims: &Claims<'_>, now: i64) -> Result<(), Rejection> {
    let leeway = issuer.leeway;
    match numeric_date(claims.exp.as_ref(), "exp", false)? {
        Some(exp) if now - leeway >= exp => return Err(Rejection::Expired),
        Some(_) => {}
        None if issuer.require_exp => return Err(Rejection::MissingClaim("exp")),
        None => {}
    }
    if let Some(nbf) = numeric_date(claims.nbf.as_ref(), "nbf", true)?
        && nbf > now + leeway
    {
        return Err(Rejection::NotYetValid);
    }
    if let Some(iat) = numeric_date(claims.iat.as_ref(), "iat", true)?
        && iat > now + leeway
    {
        return Err(Rejection::IssuedInFuture);
    }
    check_audience(claims.aud.as_ref(), &issuer.audiences)
}

/// `aud` must be present, a string or an array of strings, and contain a configured audience.
pub(crate) fn check_audience(aud: Option<&Member<'_>>, accepted: &[String]) -> Result<(), Rejection> {
    let ours = |a: &str| accepted.iter().any(|x| x == a);
    match aud {
        None => Err(Rejection::MissingClaim("aud")),
        Some(Member::Str(a)) => ours(a).then_some(()).ok_or(Rejection::WrongAudience),
        Some(Member::List(items)) => {
            let mut found = false;
            for item in items {
                let Some(a) = item else {
                    return Err(Rejection::InvalidClaim("aud"));
                };
                found |= ours(a);
            }
            found.then_some(()).ok_or(Rejection::WrongAudience)
        }
        Some(_) => Err(Rejection::InvalidClaim("aud")),
    }
}

/// Where the scopes are: `scope` (space-separated string, RFC 8693 §4.2 / RFC 9068 §2.2.3)
/// or, failing that, `scp` (a string or an array of strings, as Okta and Azure AD send it;
/// every item must be a string, and only those that are one RFC 6749 `scope-token` are kept:
/// the others could never satisfy a rule and are left out, rather than split into scopes the
/// issuer never granted; see [`scope_tokens`] for the string).
pub(crate) fn scope_source<'c>(claims: &'c Claims<'_>) -> Result<ScopeSource<'c>, Rejection> {
    match (&claims.scope, &claims.scp) {
        (Some(Member::Str(s)), _) => Ok(ScopeSource::Text(s)),
        (Some(_), _) => Err(Rejection::InvalidClaim("scope")),
        (None, Some(Member::Str(s))) => Ok(ScopeSource::Text(s)),
        (None, Some(Member::List(items))) => {
            let items = items
                .iter()
                .map(|i| i.as_deref().ok_or(Rejection::InvalidClaim("scope")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ScopeSource::List(items.into_iter().filter(|i| is_scope_token(i)).collect()))
        }
        (None, Some(_)) => Err(Rejection::InvalidClaim("scope")),
        (None, None) => Ok(ScopeSource::None),
    }
}

/// The scopes of a claims object read as JSON (an unverified token's, say), by the rules the
/// verifier applies (see [`scope_source`]); `None` when `scope` or `scp` has a shape the
/// verifier refuses.
pub fn scopes_of(claims: &Map<String, Value>) -> Option<Vec<String>> {
    scopes(&Claims::from_map(claims)).ok()
}

/// The scopes of `claims`, one string each (see [`scope_source`]).
pub(crate) fn scopes(claims: &Claims<'_>) -> Result<Vec<String>, Rejection> {
    Ok(match scope_source(claims)? {
        ScopeSource::None => Vec::new(),
        ScopeSource::Text(s) => scope_tokens(s).map(str::to_owned).collect(),
        ScopeSource::List(items) => items.into_iter().map(str::to_owned).collect(),
    })
}

fn optional_string<'c>(
    member: &'c Option<Member<'_>>,
    name: &'static str,
) -> Result<Option<&'c str>, Rejection> {
    match member {
        None => Ok(None),
        Some(Member::Str(s)) => Ok(Some(s)),
        Some(_) => Err(Rejection::InvalidClaim(name)),
    }
}

/// The facts a principal keeps of verified `claims`, whose JSON text is `text`.
fn token_facts(claims: &Claims<'_>, text: &str) -> Result<TokenFacts, Rejection> {
    let client_id = match optional_string(&claims.client_id, "client_id")? {
        Some(id) => Some(id),
        None => optional_string(&claims.azp, "azp")?,
    };
    let source = FactsSource {
        subject: optional_string(&claims.sub, "sub")?,
        client_id,
        token_id: optional_string(&claims.jti, "jti")?,
        // `sid` is not a registered JWT claim; a non-string one is ignored rather than refused.
        session_id: claims.sid.as_ref().and_then(Member::as_str),
        scopes: scope_source(claims)?,
        expires_at: numeric_date(claims.exp.as_ref(), "exp", false)?,
        issued_at: numeric_date(claims.iat.as_ref(), "iat", true)?,
        not_before: numeric_date(claims.nbf.as_ref(), "nbf", true)?,
    };
    TokenFacts::new(text, &source).ok_or(Rejection::TooLarge)
}

/// The principal of an introspection answer's `members` (already checked by the
/// introspector). Their text is written from the map, and the map is kept as the parsed claims.
pub(crate) fn principal_from_members(
    issuer: Arc<str>,
    members: &Map<String, Value>,
    verified_by: VerifiedBy,
) -> Result<Principal, Rejection> {
    let text = serde_json::to_string(members).map_err(|_| Rejection::Malformed)?;
    let facts = token_facts(&Claims::from_map(members), &text)?;
    Ok(Principal::new(issuer, facts, verified_by, Some(Value::Object(members.clone()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_base64url_only() {
        assert!(b64("eyJhIjoxfQ").is_ok());
        for bad in ["eyJhIjoxfQ==", "eyJhIjoxfQ=", "ey Jh", "ey+h", "ey/h", "eyJhIjoxfR"] {
            assert_eq!(b64(bad), Err(Rejection::Malformed), "{bad}");
        }
    }

    #[test]
    fn duplicate_members_and_non_objects_are_malformed() {
        assert!(strict_object(br#"{"a":1,"b":2}"#).is_ok());
        assert_eq!(strict_object(br#"{"a":1,"a":2}"#), Err(Rejection::Malformed));
        for bad in [&b"[]"[..], b"1", b"\"s\"", b"null", b"{", b"{} x"] {
            assert_eq!(strict_object(bad), Err(Rejection::Malformed));
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(strict_object(deep.as_bytes()), Err(Rejection::Malformed));
    }

    #[test]
    fn token_shape() {
        assert!(matches!(decode_unverified("a.b"), Err(Rejection::Malformed)));
        assert!(matches!(decode_unverified("a.b.c.d.e"), Err(Rejection::Malformed)));
        assert!(matches!(decode_unverified("e30.e30."), Err(Rejection::Malformed)));
        assert!(decode_unverified("e30.e30.AA").is_ok());
    }

    #[test]
    fn numeric_dates() {
        let date = |v: Value, round_up: bool| numeric_date(Some(&Member::of(&v)), "exp", round_up);
        assert_eq!(date(Value::from(10), false), Ok(Some(10)));
        assert_eq!(date(Value::from(10.7), false), Ok(Some(10)));
        assert_eq!(date(Value::from(10.2), true), Ok(Some(11)));
        assert_eq!(numeric_date(None, "exp", false), Ok(None));
        for bad in [
            Value::from("10"),
            Value::from(-1),
            Value::from(1e300),
            Value::from(u64::MAX),
            Value::Null,
            Value::Bool(true),
        ] {
            assert_eq!(date(bad.clone(), false), Err(Rejection::InvalidClaim("exp")), "{bad}");
        }
    }

    #[test]
    fn typ_is_a_media_type() {
        assert!(media_type_eq("at+jwt", "at+jwt"));
        assert!(media_type_eq("application/AT+JWT", "at+jwt"));
        assert!(!media_type_eq("JWT", "at+jwt"));
        // Byte 12 inside a multi-byte character must not panic.
        assert!(!media_type_eq("applicationé/at+jwt", "at+jwt"));
        assert!(!media_type_eq("ééééééé", "at+jwt"));
    }

    #[test]
    fn audience_shapes() {
        let ours = vec!["api".to_string()];
        assert!(check_audience(Some(&Member::of(&Value::from("api"))), &ours).is_ok());
        assert!(check_audience(Some(&Member::of(&serde_json::json!(["x", "api"]))), &ours).is_ok());
        assert_eq!(
            check_audience(Some(&Member::of(&serde_json::json!(["x"]))), &ours),
            Err(Rejection::WrongAudience)
        );
        assert_eq!(
            check_audience(Some(&Member::of(&serde_json::json!([]))), &ours),
            Err(Rejection::WrongAudience)
        );
        assert_eq!(
            check_audience(Some(&Member::of(&serde_json::json!(["api", 1]))), &ours),
            Err(Rejection::InvalidClaim("aud"))
        );
        assert_eq!(
            check_audience(Some(&Member::of(&serde_json::json!([["api"]]))), &ours),
            Err(Rejection::InvalidClaim("aud"))
        );
        assert_eq!(
            check_audience(Some(&Member::of(&serde_json::json!(1))), &ours),
            Err(Rejection::InvalidClaim("aud"))
        );
        assert_eq!(check_audience(None, &ours), Err(Rejection::MissingClaim("aud")));
    }

    #[test]
    fn scope_shapes() {
        let of = |json: &str| scopes(&members::parse(json).unwrap());
        assert_eq!(of(r#"{"scope": "a  b"}"#).unwrap(), ["a", "b"]);
        assert_eq!(of(r#"{"scp": ["a", "b"]}"#).unwrap(), ["a", "b"]);
        assert_eq!(of(r#"{"scp": "a b"}"#).unwrap(), ["a", "b"]);
        assert_eq!(of(r#"{"scope": "a", "scp": [1]}"#).unwrap(), ["a"]);
        assert!(of(r#"{"scope": ["a"]}"#).is_err());
        assert!(of(r#"{"scp": [1]}"#).is_err());
        // RFC 6749 §3.3: only the space separates, and a piece that is not one scope-token
        // is left out whole, never split into scopes the issuer did not list.
        for text in ["read\\tadmin", "read\\nadmin", "read\\radmin", "read\\u000cadmin", "read\\u000badmin"] {
            assert!(of(&format!(r#"{{"scope": "{text}"}}"#)).unwrap().is_empty(), "{text}");
        }
        assert_eq!(of(r#"{"scope": " a\tb c  d\"e f\u00e9 g "}"#).unwrap(), ["c", "g"]);
        assert_eq!(of(r#"{"scp": "a\tb c"}"#).unwrap(), ["c"]);
        assert_eq!(of(r#"{"scp": ["a\tb", "c", "d e", "", "q\"", "\u00e9", "f"]}"#).unwrap(), ["c", "f"]);
        // The same rules over an object already parsed (what `explain` shows of a token).
        let map = |json: &str| serde_json::from_str::<Map<String, Value>>(json).unwrap();
        assert_eq!(scopes_of(&map(r#"{"scope": "read\tadmin write"}"#)).unwrap(), ["write"]);
        assert_eq!(scopes_of(&map(r#"{"scp": ["a", "b c"]}"#)).unwrap(), ["a"]);
        assert_eq!(scopes_of(&map(r#"{"scp": ["a", 1]}"#)), None);
        assert_eq!(scopes_of(&map("{}")).unwrap(), Vec::<String>::new());
    }
}
