//! The admin listener, on its own address:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 once every issuer has usable keys, else 503; JSON per issuer |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /revocations` | the local revocation list (admin secret) |
//! | `POST /revocations` | adds an entry (admin secret): `token`, `subject` or `session` |
//!
//! An entry added here takes effect on this replica at once and, with a shared store
//! (`[revocation.redis]`), is written through to every other replica (queued while the store
//! is unreachable). `/readyz` shows the store's state under `revocation_store`: still 200 while
//! it is degraded, 503 until its first full load. A receiver (back-channel logout, security
//! events) configured with `listener = "admin"` answers here too, at its path.
//!
//! The revocation API needs `Authorization: Bearer <secret>`, the secret coming from the
//! environment variable named by `admin_token_env`; missing or wrong → 401. Without a
//! configured secret the API does not exist: 404, so an unprotected list can never be edited.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use tokengate::Gate;
use tokengate::revocation::Revocation;

use crate::config::{ListenerChoice, Secret};
use crate::http_util::{Body, full, json, json_error};
use crate::metrics::Metrics;
use crate::receiver::Receivers;
use crate::revocation_store::StoreStatus;

/// Cap on a `POST /revocations` body: 64 KiB, far above one entry.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The admin listener's state.
pub struct Admin {
    gate: Arc<Gate>,
    metrics: Arc<Metrics>,
    token: Option<Secret>,
    fleet: Arc<Fleet>,
}

/// What fleet-wide revocation adds to the admin listener: the shared store's state (in
/// `/readyz` and `/metrics`) and the receivers (some may listen here).
#[derive(Debug, Default)]
pub struct Fleet {
    /// The shared store's status, when one is configured.
    pub store: Option<Arc<StoreStatus>>,
    /// The back-channel logout and security event receivers.
    pub receivers: Arc<Receivers>,
}

/// A revocation as the API accepts it: the library's entry with its optional fields optional.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RevocationRequest {
    /// One token: by `issuer` + `jti`, or by the token itself (verified first, so only a valid
    /// token of a configured issuer can be named this way).
    Token(TokenRevocation),
    /// Every token of a subject issued before a time (default: now).
    Subject(SubjectRevocation),
    /// Every token carrying a session id (`sid`).
    Session(SessionRevocation),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRevocation {
    issuer: String,
    sid: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRevocation {
    issuer: Option<String>,
    jti: Option<String>,
    /// The token's `exp`; the entry is forgotten then.
    expires_at: Option<i64>,
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectRevocation {
    issuer: String,
    subject: String,
    issued_before: Option<i64>,
}

impl Admin {
    /// The admin API over `gate`; `token` enables the revocation endpoints.
    pub fn new(gate: Arc<Gate>, metrics: Arc<Metrics>, token: Option<Secret>, fleet: Arc<Fleet>) -> Self {
        Admin { gate, metrics, token, fleet }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        if let Some(receiver) = self.fleet.receivers.route(ListenerChoice::Admin, request.uri().path()) {
            return receiver.handle(request).await;
        }
        let method = request.method().clone();
        match (request.uri().path(), method) {
            ("/healthz", Method::GET | Method::HEAD) => {
                text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
            }
            ("/readyz", Method::GET | Method::HEAD) => self.readyz(),
            ("/metrics", Method::GET | Method::HEAD) => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(&self.gate, &self.fleet),
            ),
            ("/revocations", method @ (Method::GET | Method::POST)) => {
                let Some(secret) = &self.token else {
                    return json_error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "the revocation API is disabled: set admin_token_env in the configuration",
                    );
                };
                if !authorized(request.headers(), secret) {
                    let mut response = json_error(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "the admin bearer secret is required",
                    );
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"tokengate-admin\""),
                    );
                    return response;
                }
                if method == Method::GET {
                    json(StatusCode::OK, &json!({ "revocations": self.gate.revocations().entries() }))
                } else {
                    self.revoke(request).await
                }
            }
            ("/healthz" | "/readyz" | "/metrics", _) => method_not_allowed("GET, HEAD"),
            ("/revocations", _) => method_not_allowed("GET, POST"),
            _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
        }
    }

    fn readyz(&self) -> Response<Body> {
        let now = self.gate.now();
        let issuers: Vec<_> = self
            .gate
            .issuers()
            .iter()
            .map(|issuer| {
                let s = issuer.store().status(now);
                json!({
                    "issuer": issuer.issuer(),
                    "ready": s.ready && !s.stale,
                    "keys": s.keys,
                    "age_secs": s.age_secs,
                    "stale": s.stale,
                    "last_error": s.last_error,
                    "next_refresh_at": s.next_refresh_at,
                })
            })
            .collect();
        // A degraded store keeps the replica ready (the local list still serves, and failing
        // every replica at once would turn a Redis outage into a full one); a store that never
        // completed a load does not, since this replica knows none of the fleet's entries.
        let store_ready = self.fleet.store.as_ref().is_none_or(|s| s.ready());
        let ready = self.gate.ready() && self.fleet.receivers.ready() && store_ready;
        let mut body = json!({ "ready": ready, "issuers": issuers });
        if let Some(store) = &self.fleet.store {
            body["revocation_store"] = store.to_json();
        }
        if let Some(introspector) = self.gate.introspector() {
            let state = match introspector.breaker_state().as_gauge() {
                0 => "closed",
                1 => "open",
                _ => "half_open",
            };
            body["introspection"] = json!({ "breaker": state });
        }
        json(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
    }

    async fn revoke(&self, request: Request<Incoming>) -> Response<Body> {
        let body = match Limited::new(request.into_body(), MAX_ADMIN_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    "the body is too large or could not be read",
                );
            }
        };
        let input: RevocationRequest = match serde_json::from_slice(&body) {
            Ok(input) => input,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
        };
        let revocations = self.gate.revocations();
        let added = match input {
            RevocationRequest::Token(TokenRevocation {
                token: Some(token),
                issuer: None,
                jti: None,
                expires_at: None,
            }) => {
                let principal = match self.gate.verify_token(&token).await {
                    Ok(principal) => principal,
                    Err(e) => {
                        return json_error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "invalid_token",
                            &format!("the token cannot be revoked by value: {}", e.description()),
                        );
                    }
                };
                let Some(jti) = principal.token_id() else {
                    return json_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_request",
                        "the token has no jti; revoke its subject instead",
                    );
                };
                revocations.revoke_token(principal.issuer(), jti, principal.expires_at())
            }
            RevocationRequest::Token(TokenRevocation {
                token: None,
                issuer: Some(issuer),
                jti: Some(jti),
                expires_at,
            }) => revocations.revoke_token(&issuer, &jti, expires_at),
            RevocationRequest::Token(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "a token revocation needs either issuer and jti (and optionally expires_at), or token",
                );
            }
            RevocationRequest::Subject(SubjectRevocation { issuer, subject, issued_before }) => {
                revocations.revoke_subject(&issuer, &subject, issued_before)
            }
            RevocationRequest::Session(SessionRevocation { issuer, sid }) => {
                revocations.revoke_session(&issuer, &sid)
            }
        };
        match added {
            Ok(entry) => {
                log_revocation(&entry);
                json(StatusCode::CREATED, &json!({ "revoked": entry }))
            }
            Err(e) => json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
        }
    }
}

fn log_revocation(entry: &Revocation) {
    match entry {
        Revocation::Token { issuer, jti, .. } => tracing::info!(%issuer, %jti, "token revoked"),
        Revocation::Subject { issuer, subject, issued_before, .. } => {
            tracing::info!(%issuer, %subject, issued_before, "subject revoked")
        }
        Revocation::Session { issuer, sid, .. } => tracing::info!(%issuer, %sid, "session revoked"),
    }
}

/// `Authorization: Bearer <secret>`, compared in constant time.
fn authorized(headers: &http::HeaderMap, secret: &Secret) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(presented) = value.get(7..).filter(|_| value[..7].eq_ignore_ascii_case(b"bearer ")) else {
        return false;
    };
    // Only the length can leak (the comparison refuses unequal lengths at once).
    aws_lc_rs::constant_time::verify_slices_are_equal(presented, secret.expose().as_bytes()).is_ok()
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed");
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_secret_check() {
        let secret = Secret::new("s3cret-value");
        let mut h = http::HeaderMap::new();
        assert!(!authorized(&h, &secret));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret-value"));
        assert!(authorized(&h, &secret));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer s3cret-value"));
        assert!(authorized(&h, &secret));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret-valuX"));
        assert!(!authorized(&h, &secret));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic s3cret-value"));
        assert!(!authorized(&h, &secret));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert!(!authorized(&h, &secret));
    }

    #[test]
    fn revocation_requests_parse() {
        let r: RevocationRequest =
            serde_json::from_str(r#"{"kind":"token","issuer":"i","jti":"j","expires_at":5}"#).unwrap();
        assert!(matches!(r, RevocationRequest::Token(TokenRevocation { expires_at: Some(5), .. })));
        let r: RevocationRequest =
            serde_json::from_str(r#"{"kind":"subject","issuer":"i","subject":"s"}"#).unwrap();
        assert!(matches!(r, RevocationRequest::Subject(_)));
        assert!(serde_json::from_str::<RevocationRequest>(r#"{"kind":"token","jti":"j","oops":1}"#).is_err());
        assert!(serde_json::from_str::<RevocationRequest>(r#"{"kind":"everything"}"#).is_err());
    }
}
