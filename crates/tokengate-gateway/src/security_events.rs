//! The Security Event Token receiver: SETs (RFC 8417) pushed per RFC 8935 to `POST {path}`
//! with `Content-Type: application/secevent+jwt`, for the CAEP events `session-revoked` and
//! `credential-change`.
//!
//! A SET is accepted when: it verifies with the keys of a configured transmitter (its `iss`),
//! `aud` containing the receiver's `audience`, `exp` if present; its header `typ`, when
//! present, is `secevent+jwt` (RFC 8417 §2.3); `iat` is at most `max_age` old; `jti` is present
//! and not seen before; `events` is a JSON object; every event this receiver acts on names a
//! subject it can resolve; and at least one event is one it knows.
//!
//! Subjects (RFC 9493 subject identifiers, in the event's `subject` member or the SET's
//! `sub_id` claim, as SSF 1.0 puts it):
//! - `{"format":"iss_sub","iss":I,"sub":S}` → subject S of issuer I, which must be the
//!   transmitter's `subject_issuer` (another issuer's user: `access_denied`);
//! - `{"format":"opaque","id":S}` → subject S of the transmitter's `subject_issuer`;
//! - `{"format":"complex","user":…,"session":{"format":"opaque","id":X}}` → the user as above
//!   and the session X (the `sid` of that issuer's tokens);
//! - `email` and other formats are refused (`invalid_request`): tokens are revoked by `sub`,
//!   and an email address is not one.
//!
//! Actions: `session-revoked` and `credential-change` revoke every token of the subject issued
//! at or before now, and the session when one is named (access tokens often carry no `sid`,
//! so revoking only the session could leave them valid). The SSF `verification` event is
//! accepted and changes nothing. Unknown events are ignored, as RFC 8417 §2.2 lets a
//! recipient do, but a SET with none this receiver knows is refused.
//!
//! Answers (RFC 8935 §2.2–2.4): 202 Accepted; 400 with `{"err": …, "description": …}`, `err`
//! one of `invalid_request`, `invalid_key` (unknown key or algorithm), `invalid_issuer`,
//! `invalid_audience`, `authentication_failed` (the signature does not verify),
//! `access_denied`; 503 when the keys are unavailable or the list is full. Nothing changes
//! unless the answer is 202.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokengate::{AuthError, Gate, Rejection, RevocationList};

use crate::config::SecurityEventsSettings;
use crate::http_util::{Body, full, json};
use crate::receiver::{self, ReceiverCounters, ReplayCache};

/// CAEP: a session was revoked.
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP: a credential changed (password reset, key rotated…).
pub const CREDENTIAL_CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// SSF: a stream verification, acknowledged without action.
pub const SSF_VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// The media type of a pushed SET (RFC 8935 §2).
const SET_MEDIA_TYPE: &str = "application/secevent+jwt";
/// The `typ` a SET should carry (RFC 8417 §2.3).
const SET_TYP: &str = "secevent+jwt";

/// The security event endpoint.
pub struct EventReceiver {
    gate: Arc<Gate>,
    list: RevocationList,
    /// transmitter issuer → the access-token issuer whose subjects it speaks about.
    subject_issuers: Vec<(String, String)>,
    max_age: i64,
    replay: ReplayCache,
    /// Accepted and rejected SETs.
    pub counters: ReceiverCounters,
}

/// A refusal: RFC 8935 error code and description.
struct Refusal {
    status: StatusCode,
    err: &'static str,
    description: String,
}

fn refuse(err: &'static str, description: impl Into<String>) -> Refusal {
    Refusal { status: StatusCode::BAD_REQUEST, err, description: description.into() }
}

/// What one event asks for.
#[derive(Debug, PartialEq, Eq)]
struct Action {
    issuer: String,
    subject: Option<String>,
    session: Option<String>,
}

impl EventReceiver {
    /// A receiver verifying with `gate` (its issuers are the transmitters, their audience the
    /// receiver's) and revoking into `list`.
    pub fn new(gate: Arc<Gate>, list: RevocationList, settings: &SecurityEventsSettings) -> Self {
        EventReceiver {
            gate,
            list,
            subject_issuers: settings
                .transmitters
                .iter()
                .map(|t| (t.issuer.clone(), t.subject_issuer.clone()))
                .collect(),
            max_age: settings.endpoint.max_age.as_secs() as i64,
            replay: ReplayCache::new(settings.endpoint.replay_capacity),
            counters: ReceiverCounters::default(),
        }
    }

    /// The verifying gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let response = match self.receive(request).await {
            Ok(()) => {
                let mut response = Response::new(full(""));
                *response.status_mut() = StatusCode::ACCEPTED;
                response
            }
            Err(r) => {
                let mut response = json(r.status, &json!({ "err": r.err, "description": r.description }));
                if r.status == StatusCode::METHOD_NOT_ALLOWED {
                    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
                }
                if r.status == StatusCode::SERVICE_UNAVAILABLE {
                    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                }
                response
            }
        };
        self.counters.record(response.status());
        response
    }

    async fn receive(&self, request: Request<Incoming>) -> Result<(), Refusal> {
        let body = receiver::read_post(request, SET_MEDIA_TYPE).await.map_err(|(status, why)| Refusal {
            status,
            err: "invalid_request",
            description: why.to_owned(),
        })?;
        let token = std::str::from_utf8(&body)
            .map(str::trim)
            .map_err(|_| refuse("invalid_request", "the body is not a SET"))?;
        let principal = match self.gate.verify_token(token).await {
            Ok(principal) => principal,
            Err(AuthError::InvalidToken(rejection)) => return Err(rejection_refusal(rejection)),
            Err(e) => {
                return Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    err: "invalid_request",
                    description: e.description().to_owned(),
                });
            }
        };
        if !receiver::typ_is_absent_or(token, SET_TYP) {
            return Err(refuse("invalid_request", "the SET's typ must be secevent+jwt"));
        }
        let claims = principal.claims().as_object().ok_or_else(|| refuse("invalid_request", "not a SET"))?;
        let now = self.gate.now();
        receiver::check_issued_at(claims, now, self.max_age).map_err(|why| refuse("invalid_request", why))?;
        let jti = receiver::string_claim(claims, "jti")
            .map_err(|why| refuse("invalid_request", why))?
            .ok_or_else(|| refuse("invalid_request", "the jti claim is required"))?;
        let Some(Value::Object(events)) = claims.get("events") else {
            return Err(refuse("invalid_request", "the events claim must be a JSON object"));
        };
        let transmitter = principal.issuer();
        let subject_issuer =
            self.subject_issuers.iter().find(|(t, _)| t == transmitter).map(|(_, s)| s.as_str()).ok_or_else(
                || refuse("invalid_issuer", "the SET's issuer is not a configured transmitter"),
            )?;

        // Resolve every event before acting on any, so a bad one changes nothing.
        let mut actions = Vec::new();
        let mut known = false;
        for (event_type, payload) in events {
            let Value::Object(payload) = payload else {
                return Err(refuse(
                    "invalid_request",
                    format!("the event {event_type} is not a JSON object"),
                ));
            };
            match event_type.as_str() {
                SESSION_REVOKED | CREDENTIAL_CHANGE => {
                    known = true;
                    let subject =
                        payload.get("subject").or_else(|| claims.get("sub_id")).ok_or_else(|| {
                            refuse("invalid_request", format!("the event {event_type} names no subject"))
                        })?;
                    actions.push(resolve_subject(subject, subject_issuer)?);
                }
                SSF_VERIFICATION => known = true,
                _ => {}
            }
        }
        if !known {
            return Err(refuse("invalid_request", "the SET holds no event this receiver acts on"));
        }
        let until = now.saturating_add(self.max_age).saturating_add(1);
        if self.replay.check_and_remember(transmitter, jti, until, now).is_err() {
            return Err(refuse("invalid_request", "the SET was already received (jti replayed)"));
        }
        for action in &actions {
            let mut result = Ok(());
            if let Some(subject) = &action.subject {
                result = self.list.revoke_subject(&action.issuer, subject, None).map(|_| ());
            }
            if let (Ok(()), Some(session)) = (&result, &action.session) {
                result = self.list.revoke_session(&action.issuer, session).map(|_| ());
            }
            if let Err(e) = result {
                self.replay.forget(transmitter, jti);
                tracing::error!(issuer = %action.issuer, error = %e, "security event could not be recorded");
                return Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    err: "invalid_request",
                    description: "the event could not be recorded".into(),
                });
            }
            tracing::info!(
                %transmitter,
                issuer = %action.issuer,
                sub = action.subject.as_deref().unwrap_or("-"),
                sid = action.session.as_deref().unwrap_or("-"),
                "security event: revoked"
            );
        }
        Ok(())
    }
}

/// RFC 8935 §2.4 codes for a token the verifier refused.
fn rejection_refusal(rejection: Rejection) -> Refusal {
    let err = match rejection {
        Rejection::UnknownIssuer => "invalid_issuer",
        Rejection::WrongAudience | Rejection::MissingClaim("aud") | Rejection::InvalidClaim("aud") => {
            "invalid_audience"
        }
        Rejection::BadSignature => "authentication_failed",
        Rejection::UnknownKey | Rejection::AlgorithmNotAllowed | Rejection::UnsupportedAlgorithm => {
            "invalid_key"
        }
        _ => "invalid_request",
    };
    refuse(err, format!("the SET is invalid: {}", rejection.description()))
}

/// An RFC 9493 subject identifier → whose tokens to revoke.
fn resolve_subject(subject: &Value, subject_issuer: &str) -> Result<Action, Refusal> {
    let Value::Object(subject) = subject else {
        return Err(refuse("invalid_request", "the subject is not a JSON object"));
    };
    let format = subject.get("format").and_then(Value::as_str).unwrap_or_default();
    match format {
        "complex" => {
            let user = match subject.get("user") {
                Some(user) => Some(user_subject(user, subject_issuer)?),
                None => None,
            };
            let session = match subject.get("session") {
                None => None,
                Some(Value::Object(s)) if s.get("format").and_then(Value::as_str) == Some("opaque") => {
                    Some(non_empty(s, "id")?)
                }
                Some(_) => {
                    return Err(refuse(
                        "invalid_request",
                        "the session must be an opaque subject identifier",
                    ));
                }
            };
            if user.is_none() && session.is_none() {
                return Err(refuse(
                    "invalid_request",
                    "the complex subject names neither a user nor a session",
                ));
            }
            Ok(Action { issuer: subject_issuer.to_owned(), subject: user, session })
        }
        _ => Ok(Action {
            issuer: subject_issuer.to_owned(),
            subject: Some(user_subject(&Value::Object(subject.clone()), subject_issuer)?),
            session: None,
        }),
    }
}

/// A user: `iss_sub` of the subject issuer, or `opaque`.
fn user_subject(user: &Value, subject_issuer: &str) -> Result<String, Refusal> {
    let Value::Object(user) = user else {
        return Err(refuse("invalid_request", "the user is not a JSON object"));
    };
    match user.get("format").and_then(Value::as_str) {
        Some("iss_sub") => {
            let iss = non_empty(user, "iss")?;
            if iss != subject_issuer {
                return Err(refuse(
                    "access_denied",
                    "the transmitter may not speak for that subject's issuer",
                ));
            }
            non_empty(user, "sub")
        }
        Some("opaque") => non_empty(user, "id"),
        Some(other) => Err(refuse(
            "invalid_request",
            format!("the subject format {other:?} is not supported (iss_sub, opaque, complex)"),
        )),
        None => Err(refuse("invalid_request", "the subject has no format")),
    }
}

fn non_empty(object: &Map<String, Value>, name: &str) -> Result<String, Refusal> {
    match object.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(refuse("invalid_request", format!("the subject's {name} must be a non-empty string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(subject: Value) -> Result<Action, &'static str> {
        resolve_subject(&subject, "https://idp").map_err(|r| r.err)
    }

    #[test]
    fn subject_formats() {
        let user = |s: &str| Action { issuer: "https://idp".into(), subject: Some(s.into()), session: None };
        assert_eq!(resolve(json!({"format":"iss_sub","iss":"https://idp","sub":"alice"})), Ok(user("alice")));
        assert_eq!(resolve(json!({"format":"opaque","id":"bob"})), Ok(user("bob")));
        assert_eq!(
            resolve(json!({"format":"iss_sub","iss":"https://other","sub":"alice"})),
            Err("access_denied")
        );
        assert_eq!(resolve(json!({"format":"email","email":"a@example.com"})), Err("invalid_request"));
        assert_eq!(resolve(json!({"format":"opaque","id":""})), Err("invalid_request"));
        assert_eq!(resolve(json!({"format":"opaque"})), Err("invalid_request"));
        assert_eq!(resolve(json!("alice")), Err("invalid_request"));
        assert_eq!(
            resolve(
                json!({"format":"complex","user":{"format":"opaque","id":"carol"},"session":{"format":"opaque","id":"s1"}})
            ),
            Ok(Action {
                issuer: "https://idp".into(),
                subject: Some("carol".into()),
                session: Some("s1".into())
            })
        );
        assert_eq!(
            resolve(json!({"format":"complex","session":{"format":"opaque","id":"s1"}})),
            Ok(Action { issuer: "https://idp".into(), subject: None, session: Some("s1".into()) })
        );
        assert_eq!(resolve(json!({"format":"complex"})), Err("invalid_request"));
        assert_eq!(resolve(json!({"format":"complex","session":{"format":"email"}})), Err("invalid_request"));
    }

    #[test]
    fn rejection_codes() {
        assert_eq!(rejection_refusal(Rejection::UnknownIssuer).err, "invalid_issuer");
        assert_eq!(rejection_refusal(Rejection::WrongAudience).err, "invalid_audience");
        assert_eq!(rejection_refusal(Rejection::BadSignature).err, "authentication_failed");
        assert_eq!(rejection_refusal(Rejection::UnknownKey).err, "invalid_key");
        assert_eq!(rejection_refusal(Rejection::Expired).err, "invalid_request");
    }
}
