//! The OpenID Connect Back-Channel Logout 1.0 receiver: `POST {path}` with a form-encoded
//! `logout_token`.
//!
//! A logout token is accepted when (§2.6 of the spec, in this order): it verifies like any
//! token of a configured issuer that opted in with `logout_client_id` — signature with the
//! issuer's JWKS, `iss`, `aud` containing our client id, `exp` (required, §2.4), `iat` not in
//! the future — its header `typ`, when present, is `logout+jwt` (§2.4, which recommends it;
//! an access token typed `at+jwt` never passes); `iat` is at most `max_age` old; `jti` is
//! present and not seen before; `events` is a JSON object whose member
//! `http://schemas.openid.net/event/backchannel-logout` is a JSON object; `nonce` is absent
//! (so an ID token can never pass); and `sub` and/or `sid` is present.
//!
//! Then: `sub` → every token of (`iss`, `sub`) issued at or before now is revoked; `sid` →
//! every token carrying that session id is revoked; both → both (access tokens often carry no
//! `sid`, so the session entry alone could leave them valid). The entries go into the
//! replica's revocation list, and from there to every replica through the shared store.
//!
//! Answers (§2.8): 200 with `Cache-Control: no-store` on success; 400 with
//! `{"error":"invalid_request","error_description":...}` for a bad logout token (nothing
//! changes); 503 if the issuer's keys are unavailable or the list is full (nothing changes).

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use tokengate::{AuthError, Gate, RevocationList};

use crate::config::EndpointSettings;
use crate::http_util::{Body, full, json_error};
use crate::receiver::{self, ReceiverCounters, ReplayCache};

/// The event member that makes a JWT a logout token (§2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The `typ` a logout token should carry (§2.4).
const LOGOUT_TYP: &str = "logout+jwt";

/// The back-channel logout endpoint.
pub struct LogoutReceiver {
    gate: Arc<Gate>,
    list: RevocationList,
    max_age: i64,
    replay: ReplayCache,
    /// Accepted and rejected logout tokens.
    pub counters: ReceiverCounters,
}

impl LogoutReceiver {
    /// A receiver verifying with `gate` (its issuers' audience is our client id) and revoking
    /// into `list`.
    pub fn new(gate: Arc<Gate>, list: RevocationList, endpoint: &EndpointSettings) -> Self {
        LogoutReceiver {
            gate,
            list,
            max_age: endpoint.max_age.as_secs() as i64,
            replay: ReplayCache::new(endpoint.replay_capacity),
            counters: ReceiverCounters::default(),
        }
    }

    /// The verifying gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let response = match self.logout(request).await {
            Ok(()) => {
                let mut response = Response::new(full(""));
                response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(response) => response,
        };
        self.counters.record(response.status());
        response
    }

    async fn logout(&self, request: Request<Incoming>) -> Result<(), Response<Body>> {
        let body = match receiver::read_post(request, "application/x-www-form-urlencoded").await {
            Ok(body) => body,
            Err((status, why)) => {
                let mut response = json_error(status, "invalid_request", why);
                if status == StatusCode::METHOD_NOT_ALLOWED {
                    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
                }
                return Err(response);
            }
        };
        let mut tokens = form_urlencoded::parse(&body).filter(|(k, _)| k == "logout_token").map(|(_, v)| v);
        let token = match (tokens.next(), tokens.next()) {
            (Some(token), None) if !token.is_empty() => token,
            (Some(_), Some(_)) => return Err(bad("more than one logout_token")),
            _ => return Err(bad("the logout_token parameter is required")),
        };
        let principal = match self.gate.verify_token(&token).await {
            Ok(principal) => principal,
            Err(AuthError::InvalidToken(rejection)) => {
                return Err(bad(&format!("the logout token is invalid: {}", rejection.description())));
            }
            Err(e) => return Err(unavailable(e.description())),
        };
        if !receiver::typ_is_absent_or(&token, LOGOUT_TYP) {
            return Err(bad("the logout token's typ must be logout+jwt"));
        }
        let Some(claims) = principal.claims().as_object() else {
            return Err(bad("the logout token's claims are not an object"));
        };
        let now = self.gate.now();
        receiver::check_issued_at(claims, now, self.max_age).map_err(|why| bad(&why))?;
        let jti = receiver::string_claim(claims, "jti").map_err(|why| bad(&why))?;
        let Some(jti) = jti else {
            return Err(bad("the jti claim is required"));
        };
        match claims.get("events") {
            Some(Value::Object(events))
                if events.get(BACKCHANNEL_LOGOUT_EVENT).is_some_and(Value::is_object) => {}
            Some(Value::Object(_)) | None => {
                return Err(bad("the events claim must hold the back-channel logout event"));
            }
            Some(_) => return Err(bad("the events claim must be a JSON object")),
        }
        if claims.contains_key("nonce") {
            return Err(bad("a logout token must not contain nonce"));
        }
        let sub = receiver::string_claim(claims, "sub").map_err(|why| bad(&why))?;
        let sid = receiver::string_claim(claims, "sid").map_err(|why| bad(&why))?;
        if sub.is_none() && sid.is_none() {
            return Err(bad("a logout token needs sub or sid"));
        }
        let issuer = principal.issuer();
        // Remembered for as long as the token could pass the age check.
        let until = now.saturating_add(self.max_age).saturating_add(1);
        if self.replay.check_and_remember(issuer, jti, until, now).is_err() {
            return Err(bad("the logout token was already used (jti replayed)"));
        }
        // A failure after the subject entry leaves it in force: more revoked, never less.
        let mut result = Ok(());
        if let Some(sub) = sub {
            result = self.list.revoke_subject(issuer, sub, None).map(|_| ());
        }
        if let (Ok(()), Some(sid)) = (&result, sid) {
            result = self.list.revoke_session(issuer, sid).map(|_| ());
        }
        if let Err(e) = result {
            self.replay.forget(issuer, jti);
            tracing::error!(%issuer, error = %e, "back-channel logout could not be recorded");
            return Err(unavailable("the logout could not be recorded"));
        }
        tracing::info!(%issuer, sub = sub.unwrap_or("-"), sid = sid.unwrap_or("-"), "back-channel logout");
        Ok(())
    }
}

fn bad(why: &str) -> Response<Body> {
    json_error(StatusCode::BAD_REQUEST, "invalid_request", why)
}

fn unavailable(why: &str) -> Response<Body> {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", why);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}
