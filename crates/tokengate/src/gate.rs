//! The pipeline itself, read top to bottom: route → token → verification → scopes.
//!
//! [`Gate`] is what a built [`TokenGateLayer`](crate::TokenGateLayer) shares between all its
//! services. [`Gate::authorize`] decides one request from its method, path and headers, so the
//! tower service, the gateway's forward-auth endpoint and `explain` all run the same code.

use http::{HeaderMap, Method};
use std::fmt;

use crate::claims::{GateContext, Principal};
use crate::clock::SharedClock;
use crate::error::{AuthError, Rejection};
use crate::extract;
use crate::jwks::RefresherGuard;
use crate::jwt::{self, IssuerVerifier, VerifyError};
use crate::policy::{Mode, NormalizedPath, Requirement, RoutePolicy};

/// Reason given while a route is in mode `introspect` but no introspection endpoint is set up:
/// such a route must never quietly fall back to local verification.
const INTROSPECTION_NOT_CONFIGURED: &str = "introspection is not configured";

/// `Retry-After` for a misconfiguration that will not heal by itself soon.
const MISCONFIGURED_RETRY_AFTER_SECS: u64 = 60;

/// The shared, immutable state of a built layer, and the pipeline.
pub struct Gate {
    pub(crate) issuers: Vec<IssuerVerifier>,
    pub(crate) policy: RoutePolicy,
    pub(crate) max_token_bytes: usize,
    pub(crate) clock: SharedClock,
    pub(crate) context: GateContext,
    /// Keeps the key refreshers running; dropping the gate stops them.
    pub(crate) _refreshers: Vec<RefresherGuard>,
}

/// A request that may proceed.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The normalised path the rules matched; the inner service must see this path.
    pub path: NormalizedPath,
    /// The requirement that applied.
    pub requirement: Requirement,
    /// The caller, when a token was verified (`None` on `public` routes and on `optional`
    /// routes without a token).
    pub principal: Option<Principal>,
}

/// Retry-After while an issuer's keys are not loaded or too stale: 5 s, about one fetch
/// attempt with backoff.
const KEYS_UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// What [`Gate::decide`] concluded without waiting.
pub(crate) enum Step {
    /// The decision.
    Done(Result<Authorized, AuthError>),
    /// The token names a `kid` issuer `usize` lacks: wait for a refresh, then decide again.
    AwaitKeys(usize),
}

impl Gate {
    /// Decides whether a request for `method` and the raw `path` with `headers` may proceed.
    ///
    /// Waits only when the token names a `kid` its issuer's key set lacks: then for one
    /// rate-limited refresh, at most the configured bound, before deciding again.
    pub async fn authorize(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Authorized, AuthError> {
        match self.decide(method, path, headers) {
            Step::Done(result) => result,
            Step::AwaitKeys(issuer) => {
                self.await_keys(issuer).await;
                self.decide_again(method, path, headers)
            }
        }
    }

    /// Waits for the refresh an unknown `kid` of `issuer` asks for (bounded, rate-limited).
    pub(crate) async fn await_keys(&self, issuer: usize) {
        if let Some(issuer) = self.issuers.get(issuer) {
            issuer.store.refresh_for_unknown_kid(self.clock.now()).await;
        }
    }

    /// Decides after a key refresh; a `kid` still unknown is now a rejection.
    pub(crate) fn decide_again(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Authorized, AuthError> {
        match self.decide(method, path, headers) {
            Step::Done(result) => result,
            Step::AwaitKeys(_) => Err(AuthError::InvalidToken(Rejection::UnknownKey)),
        }
    }

    /// The pipeline, without waiting for anything.
    pub(crate) fn decide(&self, method: &Method, path: &str, headers: &HeaderMap) -> Step {
        use Step::Done;
        // 1. Route, on the normalised path.
        let path = match NormalizedPath::new(path) {
            Ok(path) => path,
            Err(e) => return Done(Err(e)),
        };
        let requirement = self.policy.requirement(method, &path).0.clone();
        let allow = |principal| {
            Done(Ok(Authorized { path: path.clone(), requirement: requirement.clone(), principal }))
        };
        match requirement.mode {
            Mode::Public => return allow(None),
            Mode::Deny => return Done(Err(AuthError::AccessDenied)),
            Mode::Optional | Mode::Local | Mode::Introspect => {}
        }

        // 2. Extract the token.
        let token = match extract::bearer_token(headers, self.max_token_bytes) {
            Ok(Some(token)) => token,
            Ok(None) if requirement.mode == Mode::Optional => return allow(None),
            Ok(None) => return Done(Err(AuthError::MissingToken)),
            Err(e) => return Done(Err(e)),
        };

        // 4–7. Local verification.
        let principal = match self.verify_now(token) {
            Ok(principal) => principal,
            Err(VerifyError::UnknownKey { issuer }) => return Step::AwaitKeys(issuer),
            Err(e) => return Done(Err(verify_error(e))),
        };

        // 8. Introspection.
        if requirement.mode == Mode::Introspect {
            return Done(Err(AuthError::Unavailable {
                reason: INTROSPECTION_NOT_CONFIGURED,
                retry_after_secs: MISCONFIGURED_RETRY_AFTER_SECS,
            }));
        }

        // 9. Scopes.
        if let Err(e) = check_scopes(&principal, &requirement) {
            return Done(Err(e));
        }
        allow(Some(principal))
    }

    fn verify_now(&self, token: &str) -> Result<Principal, VerifyError> {
        jwt::verify(token, &self.issuers, self.clock.now(), self.max_token_bytes)
    }

    /// Verifies a token locally (signature and claims) without any route or scope check,
    /// waiting for one key refresh if its `kid` is unknown.
    pub async fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        match self.verify_now(token) {
            Err(VerifyError::UnknownKey { issuer }) => {
                self.await_keys(issuer).await;
                match self.verify_now(token) {
                    Err(VerifyError::UnknownKey { .. }) => {
                        Err(AuthError::InvalidToken(Rejection::UnknownKey))
                    }
                    other => other.map_err(verify_error),
                }
            }
            other => other.map_err(verify_error),
        }
    }

    /// The route policy.
    pub fn policy(&self) -> &RoutePolicy {
        &self.policy
    }

    /// The configured issuers, in configuration order.
    pub fn issuers(&self) -> &[IssuerVerifier] {
        &self.issuers
    }

    /// Whether every issuer has usable keys (for a readiness probe).
    pub fn ready(&self) -> bool {
        let now = self.clock.now();
        self.issuers.iter().all(|i| i.store().usable(now))
    }

    /// The current time on the gate's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Renders `error` with the configured renderer and realm.
    pub fn render(&self, error: &AuthError) -> http::Response<bytes::Bytes> {
        self.context.render(error)
    }

    pub(crate) fn context(&self) -> &GateContext {
        &self.context
    }
}

fn verify_error(e: VerifyError) -> AuthError {
    match e {
        VerifyError::Rejected(r) => AuthError::InvalidToken(r),
        VerifyError::UnknownKey { .. } => AuthError::InvalidToken(Rejection::UnknownKey),
        VerifyError::KeysUnavailable => AuthError::Unavailable {
            reason: "the issuer's keys are unavailable",
            retry_after_secs: KEYS_UNAVAILABLE_RETRY_AFTER_SECS,
        },
    }
}

/// Every scope the route requires must be among the token's.
fn check_scopes(principal: &Principal, requirement: &Requirement) -> Result<(), AuthError> {
    if requirement.scopes.iter().all(|s| principal.has_scope(s)) {
        Ok(())
    } else {
        Err(AuthError::InsufficientScope { required: requirement.scopes.clone() })
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("issuers", &self.issuers)
            .field("policy", &self.policy)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("realm", &self.context.realm)
            .finish_non_exhaustive()
    }
}
