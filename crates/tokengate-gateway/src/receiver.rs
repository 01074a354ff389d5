//! What the two push receivers share: the OpenID Connect Back-Channel Logout endpoint
//! ([`crate::logout`]) and the RFC 8935 Security Event Token endpoint
//! ([`crate::security_events`]).
//!
//! Both take a signed JWT from an identity provider and turn it into revocation-list entries.
//! Both verify it with the library's own verification (`Gate::verify_token`: signature with
//! the issuer's JWKS, `iss`, `aud`, `exp`, `iat` not in the future) on a *separate* gate whose
//! issuers have the receiver's audience — the client id for logout tokens, the receiver's
//! identifier for security events — so an access token can never pass for one and back. Both
//! then refuse an `iat` older than the endpoint's `max_age` and a `jti` seen before
//! ([`ReplayCache`]), and change nothing unless every check passed.
//!
//! The replay cache is per replica: a token replayed to another replica passes it. Such a
//! replay can only revoke the same user again (a forced re-login), and only within `max_age`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use tokengate::{BuildError, Gate, IssuerConfig, RevocationList, TokenGateLayer};

use crate::config::{EndpointSettings, ListenerChoice, Settings};
use crate::http_util::Body;
use crate::logout::LogoutReceiver;
use crate::security_events::EventReceiver;

/// Cap on a receiver's request body: 64 KiB, far above one logout token or SET (the verifier
/// caps the token itself at the gateway's `max_token_bytes`).
pub const MAX_RECEIVER_BODY: usize = 64 * 1024;

/// The receivers this gateway runs, by listener and path.
#[derive(Default)]
pub struct Receivers {
    logout: Option<(EndpointSettings, Arc<LogoutReceiver>)>,
    events: Option<(EndpointSettings, Arc<EventReceiver>)>,
}

impl std::fmt::Debug for Receivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receivers")
            .field("logout", &self.logout.as_ref().map(|(e, _)| &e.path))
            .field("security_events", &self.events.as_ref().map(|(e, _)| &e.path))
            .finish()
    }
}

impl Receivers {
    /// Builds the configured receivers: fetches their issuers' keys (like the main gate) and
    /// points them at `list`.
    pub async fn build(settings: &Settings, list: &RevocationList) -> Result<Receivers, BuildError> {
        let mut receivers = Receivers::default();
        if let Some(logout) = &settings.backchannel_logout {
            let gate = verifier(logout.issuers.iter().cloned(), settings).await?;
            let receiver = LogoutReceiver::new(gate, list.clone(), &logout.endpoint);
            receivers.logout = Some((logout.endpoint.clone(), Arc::new(receiver)));
        }
        if let Some(events) = &settings.security_events {
            let gate = verifier(events.transmitters.iter().map(|t| t.verifier.clone()), settings).await?;
            let receiver = EventReceiver::new(gate, list.clone(), events);
            receivers.events = Some((events.endpoint.clone(), Arc::new(receiver)));
        }
        Ok(receivers)
    }

    /// Whether a request on `listener` for `path` is a receiver's, and which.
    pub fn route(&self, listener: ListenerChoice, path: &str) -> Option<Receiver> {
        if self.logout.is_none() && self.events.is_none() {
            return None;
        }
        self.route_exact(listener, path).or_else(|| {
            // The proxy forwards the normalised path, so `/./backchannel-logout` must not reach
            // the upstream as the receiver's path: it is the receiver's too. A plain path is its
            // own normalised form, and was not a receiver's (no allocation on that common path).
            if tokengate::policy::is_plain_path(path) {
                return None;
            }
            let normal = tokengate::policy::normalize_path(path).ok()?;
            self.route_exact(listener, &normal)
        })
    }

    /// The receiver at exactly `path` on `listener`.
    fn route_exact(&self, listener: ListenerChoice, path: &str) -> Option<Receiver> {
        let at = |e: &EndpointSettings| e.listener == listener && e.path == path;
        if let Some((endpoint, receiver)) = &self.logout
            && at(endpoint)
        {
            return Some(Receiver::Logout(receiver.clone()));
        }
        if let Some((endpoint, receiver)) = &self.events
            && at(endpoint)
        {
            return Some(Receiver::Events(receiver.clone()));
        }
        None
    }

    /// The back-channel logout receiver, if configured (for metrics).
    pub fn logout(&self) -> Option<&LogoutReceiver> {
        self.logout.as_ref().map(|(_, r)| &**r)
    }

    /// The security event receiver, if configured (for metrics).
    pub fn events(&self) -> Option<&EventReceiver> {
        self.events.as_ref().map(|(_, r)| &**r)
    }

    /// Whether every receiver's issuers have usable keys.
    pub fn ready(&self) -> bool {
        self.logout.as_ref().is_none_or(|(_, r)| r.gate().ready())
            && self.events.as_ref().is_none_or(|(_, r)| r.gate().ready())
    }
}

/// One receiver, ready to answer a request.
pub enum Receiver {
    /// Back-Channel Logout.
    Logout(Arc<LogoutReceiver>),
    /// Security Event Tokens.
    Events(Arc<EventReceiver>),
}

impl Receiver {
    /// Answers the request.
    pub async fn handle(self, request: Request<Incoming>) -> Response<Body> {
        match self {
            Receiver::Logout(r) => r.handle(request).await,
            Receiver::Events(r) => r.handle(request).await,
        }
    }
}

/// A gate holding only `issuers`, for verifying pushed tokens.
async fn verifier(
    issuers: impl Iterator<Item = IssuerConfig>,
    settings: &Settings,
) -> Result<Arc<Gate>, BuildError> {
    // Logout tokens and security event tokens are what these gates verify: the receivers
    // check each kind's own `typ` and `events` themselves.
    let mut builder = TokenGateLayer::builder()
        .fail_fast(settings.gate.fail_fast)
        .token_cache(None)
        .verify_any_token_type();
    for issuer in issuers {
        builder = builder.issuer(issuer);
    }
    if let Some(max) = settings.gate.max_token_bytes {
        builder = builder.max_token_bytes(max);
    }
    Ok(builder.build().await?.gate().clone())
}

/// Reads a `POST` body of at most [`MAX_RECEIVER_BODY`] bytes whose media type is `expected`
/// (parameters such as `charset` allowed). `Err` says why, for a 400.
pub async fn read_post(
    request: Request<Incoming>,
    expected: &str,
) -> Result<Bytes, (StatusCode, &'static str)> {
    if request.method() != Method::POST {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "only POST is allowed"));
    }
    if !media_type_is(request.headers(), expected) {
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "wrong Content-Type"));
    }
    match Limited::new(request.into_body(), MAX_RECEIVER_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(_) => Err((StatusCode::PAYLOAD_TOO_LARGE, "the body is too large or could not be read")),
    }
}

/// Whether the single `Content-Type` is `expected`, ignoring case and parameters.
fn media_type_is(headers: &HeaderMap, expected: &str) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    value.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(expected)
}

/// `typ` in the token's header: absent, or `expected` (with or without `application/`,
/// case-insensitive, RFC 7515 §4.1.9). The token was verified already; this reads its header
/// again only to look at `typ`.
pub fn typ_is_absent_or(token: &str, expected: &str) -> bool {
    let Ok(decoded) = tokengate::jwt::decode_unverified(token) else {
        return false;
    };
    match decoded.header.get("typ") {
        None => true,
        Some(Value::String(typ)) => tokengate::jwt::media_type_eq(typ, expected),
        Some(_) => false,
    }
}

/// A string claim: `Ok(None)` when absent, `Err` when not a non-empty string.
pub fn string_claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Result<Option<&'c str>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(format!("the {name} claim must be a non-empty string")),
    }
}

/// `iat` present and not older than `max_age` seconds (the verifier already refused one in
/// the future beyond the leeway).
pub fn check_issued_at(claims: &Map<String, Value>, now: i64, max_age: i64) -> Result<i64, String> {
    let iat = match claims.get("iat") {
        None => return Err("the iat claim is required".into()),
        Some(v) => v.as_f64().filter(|f| f.is_finite()).ok_or("the iat claim must be a number")?,
    };
    let iat = iat.floor() as i64;
    if iat < now.saturating_sub(max_age) {
        return Err(format!("the token was issued more than {max_age} s ago"));
    }
    Ok(iat)
}

/// Accepted and rejected counts of one receiver.
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    /// Tokens acted on.
    pub accepted: AtomicU64,
    /// Tokens refused (nothing changed).
    pub rejected: AtomicU64,
}

impl ReceiverCounters {
    /// Counts one answer by its status.
    pub fn record(&self, status: StatusCode) {
        let counter = if status.is_success() { &self.accepted } else { &self.rejected };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// `jti`s seen recently, per issuer, so a token is acted on once. Bounded: past its capacity
/// the oldest entry is forgotten (a replay of it would then only revoke the same user again);
/// entries are forgotten anyway once their token is too old to be accepted.
pub struct ReplayCache {
    inner: Mutex<ReplayInner>,
    capacity: usize,
}

#[derive(Default)]
struct ReplayInner {
    /// SHA-256 of (issuer, jti) → until when it must be remembered. A hash, so a long `jti`
    /// costs no more memory than a short one.
    seen: HashMap<[u8; 32], i64>,
    /// Insertion order, which is also expiry order (one window per cache).
    order: VecDeque<([u8; 32], i64)>,
}

/// The token's `jti` was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed;

impl ReplayCache {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        ReplayCache { inner: Mutex::new(ReplayInner::default()), capacity: capacity.max(1) }
    }

    fn key(issuer: &str, jti: &str) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&(issuer.len() as u64).to_be_bytes());
        ctx.update(issuer.as_bytes());
        ctx.update(jti.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// Remembers (`issuer`, `jti`) until `until`, or says it was seen before.
    pub fn check_and_remember(&self, issuer: &str, jti: &str, until: i64, now: i64) -> Result<(), Replayed> {
        let key = Self::key(issuer, jti);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(old, expiry)) = inner.order.front() {
            if expiry > now && inner.order.len() < self.capacity {
                break;
            }
            inner.order.pop_front();
            if inner.seen.get(&old) == Some(&expiry) {
                inner.seen.remove(&old);
            }
        }
        if inner.seen.get(&key).is_some_and(|&expiry| expiry > now) {
            return Err(Replayed);
        }
        inner.seen.insert(key, until);
        inner.order.push_back((key, until));
        Ok(())
    }

    /// Forgets (`issuer`, `jti`): the token was not acted on after all, so a retry may be.
    pub fn forget(&self, issuer: &str, jti: &str) {
        let key = Self::key(issuer, jti);
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).seen.remove(&key);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).seen.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_refused_until_the_window_ends() {
        let cache = ReplayCache::new(3);
        assert_eq!(cache.check_and_remember("iss", "a", 200, 100), Ok(()));
        assert_eq!(cache.check_and_remember("iss", "a", 200, 150), Err(Replayed));
        assert_eq!(cache.check_and_remember("other", "a", 200, 150), Ok(()), "per issuer");
        assert_eq!(cache.check_and_remember("iss", "a", 300, 200), Ok(()), "window over");
        cache.forget("iss", "a");
        assert_eq!(cache.check_and_remember("iss", "a", 300, 201), Ok(()));
    }

    #[test]
    fn bounded_by_forgetting_the_oldest() {
        let cache = ReplayCache::new(2);
        for jti in ["a", "b", "c", "d"] {
            cache.check_and_remember("iss", jti, 1_000, 100).unwrap();
        }
        assert!(cache.len() <= 2, "{}", cache.len());
        assert_eq!(cache.check_and_remember("iss", "d", 1_000, 100), Err(Replayed), "the newest stays");
    }

    #[test]
    fn typ_checks() {
        let token = |typ: &str| {
            use base64::Engine as _;
            let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
            format!("{}.{}.AA", b64(&format!(r#"{{"alg":"RS256"{typ}}}"#)), b64("{}"))
        };
        assert!(typ_is_absent_or(&token(""), "logout+jwt"));
        assert!(typ_is_absent_or(&token(r#","typ":"logout+jwt""#), "logout+jwt"));
        assert!(typ_is_absent_or(&token(r#","typ":"application/Logout+JWT""#), "logout+jwt"));
        assert!(!typ_is_absent_or(&token(r#","typ":"JWT""#), "logout+jwt"));
        assert!(!typ_is_absent_or(&token(r#","typ":1"#), "logout+jwt"));
        assert!(!typ_is_absent_or("not a token", "logout+jwt"));
    }

    #[test]
    fn issued_at_window() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(check_issued_at(&claims(serde_json::json!({"iat": 950})), 1_000, 60), Ok(950));
        assert!(check_issued_at(&claims(serde_json::json!({"iat": 900})), 1_000, 60).is_err());
        assert!(check_issued_at(&claims(serde_json::json!({})), 1_000, 60).is_err());
        assert!(check_issued_at(&claims(serde_json::json!({"iat": "950"})), 1_000, 60).is_err());
    }
}
