//! The pipeline itself, read top to bottom: route → token → verification → scopes.
//!
//! [`Gate`] is what a built [`TokenGateLayer`](crate::TokenGateLayer) shares between all its
//! services. [`Gate::authorize`] decides one request from its method, path and headers, so the
//! tower service, the gateway's forward-auth endpoint and `explain` all run the same code.

use http::{HeaderMap, Method};
use std::fmt;

use crate::claims::{GateContext, Principal};
use crate::clock::SharedClock;
use crate::error::AuthError;
use crate::extract;
use crate::jwt::{self, IssuerVerifier};
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

impl Gate {
    /// Decides whether a request for `method` and the raw `path` with `headers` may proceed.
    pub fn authorize(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Authorized, AuthError> {
        // 1. Route, on the normalised path.
        let path = NormalizedPath::new(path)?;
        let requirement = self.policy.requirement(method, &path).0.clone();
        let allow =
            |principal| Ok(Authorized { path: path.clone(), requirement: requirement.clone(), principal });
        match requirement.mode {
            Mode::Public => return allow(None),
            Mode::Deny => return Err(AuthError::AccessDenied),
            Mode::Optional | Mode::Local | Mode::Introspect => {}
        }

        // 2. Extract the token.
        let token = match extract::bearer_token(headers, self.max_token_bytes)? {
            Some(token) => token,
            None if requirement.mode == Mode::Optional => return allow(None),
            None => return Err(AuthError::MissingToken),
        };

        // 4–7. Local verification.
        let principal = self.verify_token(token)?;

        // 8. Introspection.
        if requirement.mode == Mode::Introspect {
            return Err(AuthError::Unavailable {
                reason: INTROSPECTION_NOT_CONFIGURED,
                retry_after_secs: MISCONFIGURED_RETRY_AFTER_SECS,
            });
        }

        // 9. Scopes.
        check_scopes(&principal, &requirement)?;
        allow(Some(principal))
    }

    /// Verifies a token locally (signature and claims) without any route or scope check.
    pub fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        jwt::verify(token, &self.issuers, self.clock.now(), self.max_token_bytes)
            .map_err(AuthError::InvalidToken)
    }

    /// The route policy.
    pub fn policy(&self) -> &RoutePolicy {
        &self.policy
    }

    /// The configured issuers, in configuration order.
    pub fn issuers(&self) -> &[IssuerVerifier] {
        &self.issuers
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
