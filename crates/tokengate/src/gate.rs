//! The pipeline itself, read top to bottom: route → token → verification → scopes.
//!
//! [`Gate`] is what a built [`TokenGateLayer`](crate::TokenGateLayer) shares between all its
//! services. [`Gate::authorize`] decides one request from its method, path and headers, so the
//! tower service, the gateway's forward-auth endpoint and `explain` all run the same code.

use http::{HeaderMap, Method};
use std::fmt;

use crate::claims::{GateContext, Principal, VerifiedBy};
use crate::clock::SharedClock;
use crate::error::{AuthError, Rejection};
use crate::extract;
use crate::introspect::{Introspector, OUTAGE_RETRY_AFTER_SECS, Outage, Verdict};
use crate::jwks::RefresherGuard;
use crate::jwt::{self, IssuerVerifier, VerifyError};
use crate::policy::{Mode, NormalizedPath, Requirement, RoutePolicy};
use crate::revocation::RevocationList;
use crate::service::NonCanonicalPath;
use crate::token_cache::{TokenCache, Verified, token_hash};

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
    pub(crate) introspector: Option<Introspector>,
    pub(crate) token_cache: Option<TokenCache>,
    pub(crate) revocations: RevocationList,
    pub(crate) non_canonical_path: NonCanonicalPath,
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
    /// The route needs the issuer's word on the token.
    Introspect(Box<PendingIntrospection>),
}

/// A request waiting for introspection.
pub(crate) struct PendingIntrospection {
    path: NormalizedPath,
    requirement: Requirement,
    token: String,
    /// The token's SHA-256 when local verification already computed it (for the
    /// verified-token cache): the introspection cache is keyed by the same hash.
    hash: Option<[u8; 32]>,
    /// The locally verified principal of a JWT; `None` for an opaque token.
    local: Option<Principal>,
}

impl Gate {
    /// Decides whether a request for `method` and the raw `path` with `headers` may proceed.
    ///
    /// Waits only when it must: for one rate-limited key refresh when the token names an
    /// unknown `kid`, and for introspection on `introspect` routes.
    pub async fn authorize(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Authorized, AuthError> {
        match self.decide(method, path, headers) {
            Step::Done(result) => result,
            // Boxed: the waiting paths' state (an introspection request in flight) is kilobytes,
            // and a future that held it inline would be that large, and copied that much, on
            // every request, decided at once or not.
            step => Box::pin(self.resolve(method, path, headers, step)).await,
        }
    }

    /// Finishes a decision that [`Gate::decide`] could not make without waiting.
    pub(crate) async fn resolve(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        step: Step,
    ) -> Result<Authorized, AuthError> {
        let step = match step {
            Step::AwaitKeys(issuer) => {
                self.await_keys(issuer).await;
                match self.decide(method, path, headers) {
                    // Still unknown after the refresh: now it is a rejection.
                    Step::AwaitKeys(_) => return Err(AuthError::InvalidToken(Rejection::UnknownKey)),
                    step => step,
                }
            }
            step => step,
        };
        match step {
            Step::Done(result) => result,
            Step::Introspect(pending) => self.introspect(*pending).await,
            Step::AwaitKeys(_) => Err(AuthError::InvalidToken(Rejection::UnknownKey)),
        }
    }

    /// Waits for the refresh an unknown `kid` of `issuer` asks for (bounded, rate-limited).
    pub(crate) async fn await_keys(&self, issuer: usize) {
        if let Some(issuer) = self.issuers.get(issuer) {
            issuer.store.refresh_for_unknown_kid(self.clock.now()).await;
        }
    }

    /// 8. Introspection, then 9. scopes (from the answer when it has `scope`).
    async fn introspect(&self, pending: PendingIntrospection) -> Result<Authorized, AuthError> {
        let Some(introspector) = &self.introspector else {
            return Err(introspection_not_configured());
        };
        let exp = pending.local.as_ref().and_then(Principal::expires_at);
        let hash = pending.hash.unwrap_or_else(|| token_hash(&pending.token));
        let verdict = introspector.check(&pending.token, hash, exp).await.map_err(outage)?;
        let principal = match (&*verdict, pending.local) {
            (Verdict::Inactive, _) => return Err(AuthError::InvalidToken(Rejection::Inactive)),
            (Verdict::Active { scopes, .. }, Some(local)) => local.confirmed_by_introspection(scopes.clone()),
            (Verdict::Active { members, .. }, None) => {
                // The answer's `iss`, if any, was checked to be the endpoint's issuer.
                let issuer = introspector.issuer_arc().clone();
                let principal = jwt::principal_from_members(issuer, members, VerifiedBy::Introspection)
                    .map_err(AuthError::InvalidToken)?;
                if self.is_revoked(&principal, self.clock.now()) {
                    return Err(AuthError::InvalidToken(Rejection::Revoked));
                }
                principal
            }
        };
        check_scopes(&principal, &pending.requirement)?;
        Ok(Authorized { path: pending.path, requirement: pending.requirement, principal: Some(principal) })
    }

    /// 7. The revocation list at `now`: by `jti`, by `sub` and `iat`, by session (`sid`).
    fn is_revoked(&self, principal: &Principal, now: i64) -> bool {
        self.revocations.is_token_revoked(
            principal.issuer(),
            principal.token_id(),
            principal.subject(),
            principal.session_id(),
            principal.issued_at(),
            principal.expires_at(),
            now,
        )
    }

    /// The pipeline, without waiting for anything.
    pub(crate) fn decide(&self, method: &Method, path: &str, headers: &HeaderMap) -> Step {
        use Step::Done;
        // 1. Route, on the normalised path.
        let path = match NormalizedPath::new(path) {
            Ok(path) => path,
            Err(e) => return Done(Err(e)),
        };
        let requirement = self.policy.requirement(method, &path).0;
        // Moves the path in: an admitted request costs no copy of it.
        let allow =
            |path, principal| Done(Ok(Authorized { path, requirement: requirement.clone(), principal }));
        match requirement.mode {
            Mode::Public => return allow(path, None),
            Mode::Deny => return Done(Err(AuthError::AccessDenied)),
            Mode::Optional | Mode::Local | Mode::Introspect => {}
        }

        // 2. Extract the token.
        let token = match extract::bearer_token(headers, self.max_token_bytes) {
            Ok(Some(token)) => token,
            Ok(None) if requirement.mode == Mode::Optional => return allow(path, None),
            Ok(None) => return Done(Err(AuthError::MissingToken)),
            Err(e) => return Done(Err(e)),
        };

        // Anything but a three-part JWS is opaque: only the issuer can vouch for it.
        if !extract::is_compact_jws(token) {
            return match (requirement.mode, &self.introspector) {
                (Mode::Introspect, Some(i)) if i.accepts_opaque() => {
                    Step::Introspect(Box::new(PendingIntrospection {
                        path,
                        requirement: requirement.clone(),
                        token: token.to_owned(),
                        hash: None,
                        local: None,
                    }))
                }
                (Mode::Introspect, None) => Done(Err(introspection_not_configured())),
                _ => Done(Err(AuthError::InvalidToken(Rejection::OpaqueNotAccepted))),
            };
        }

        // 3. The verified-token cache, else 4–6. local verification: header, issuer,
        // signature, claims.
        let now = self.clock.now();
        let key = self.token_cache.as_ref().map(|_| token_hash(token));
        let principal = match key.as_ref().and_then(|key| self.cached(key, now)) {
            Some(principal) => principal,
            None => match jwt::verify_detailed(token, &self.issuers, now, self.max_token_bytes) {
                Ok(verified) => {
                    if let (Some(cache), Some(key)) = (&self.token_cache, &key) {
                        let leeway = self.issuers[verified.issuer].leeway;
                        let entry = Verified::new(
                            verified.principal.facts().clone(),
                            verified.issuer,
                            verified.generation,
                            now,
                            leeway,
                        );
                        cache.insert(key, entry, &verified.principal, now);
                    }
                    verified.principal
                }
                Err(VerifyError::UnknownKey { issuer }) => return Step::AwaitKeys(issuer),
                Err(e) => return Done(Err(verify_error(e))),
            },
        };

        // 7. Revocation list.
        if self.is_revoked(&principal, now) {
            return Done(Err(AuthError::InvalidToken(Rejection::Revoked)));
        }

        // 8. Introspection, after local verification so forgeries never cost a call.
        if requirement.mode == Mode::Introspect {
            let Some(introspector) = &self.introspector else {
                return Done(Err(introspection_not_configured()));
            };
            // The endpoint speaks for one issuer; another issuer's token must never be sent
            // to it (it would leak the token, and no answer could confirm it).
            if principal.issuer() != introspector.issuer() {
                return Done(Err(AuthError::InvalidToken(Rejection::IssuerNotIntrospectable)));
            }
            return Step::Introspect(Box::new(PendingIntrospection {
                path,
                requirement: requirement.clone(),
                token: token.to_owned(),
                hash: key,
                local: Some(principal),
            }));
        }

        // 9. Scopes.
        if let Err(e) = check_scopes(&principal, requirement) {
            return Done(Err(e));
        }
        allow(path, Some(principal))
    }

    /// A cache hit still valid at `now`: the issuer's keys unchanged and usable, `exp` and
    /// `nbf` still satisfied. Anything else voids the entry.
    fn cached(&self, key: &[u8; 32], now: i64) -> Option<Principal> {
        let cache = self.token_cache.as_ref()?;
        let valid = |hit: &Verified| {
            self.issuers.get(hit.issuer).is_some_and(|issuer| {
                let leeway = issuer.leeway;
                hit.generation_is(issuer.store.generation())
                    && issuer.store.usable(now)
                    && hit.facts.expires_at().is_none_or(|exp| now - leeway < exp)
                    && hit.facts.not_before().is_none_or(|nbf| nbf <= now + leeway)
            })
        };
        let principal = |hit: &Verified| {
            let issuer = self.issuers.get(hit.issuer)?;
            Some(Principal::new(issuer.issuer.clone(), hit.facts.clone(), VerifiedBy::Signature, None))
        };
        cache.principal(key, now, valid, principal)
    }

    /// What the tower service does with a request whose raw path is not normalised.
    pub fn non_canonical_path(&self) -> NonCanonicalPath {
        self.non_canonical_path
    }

    /// Tokens held by the verified-token cache (for metrics and tests, not for the request
    /// path: it visits every shard).
    pub fn cached_tokens(&self) -> u64 {
        self.token_cache.as_ref().map_or(0, TokenCache::entry_count)
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

    /// The introspection client, when configured.
    pub fn introspector(&self) -> Option<&Introspector> {
        self.introspector.as_ref()
    }

    /// The revocation list checked on every route.
    pub fn revocations(&self) -> &RevocationList {
        &self.revocations
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

fn introspection_not_configured() -> AuthError {
    AuthError::Unavailable {
        reason: INTROSPECTION_NOT_CONFIGURED,
        retry_after_secs: MISCONFIGURED_RETRY_AFTER_SECS,
    }
}

fn outage(outage: Outage) -> AuthError {
    let retry_after_secs = match outage {
        Outage::BreakerOpen(secs) => secs.max(1),
        _ => OUTAGE_RETRY_AFTER_SECS,
    };
    AuthError::Unavailable {
        reason: "the token issuer cannot be reached to confirm the token",
        retry_after_secs,
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
            .field("realm", &self.context.realm())
            .finish_non_exhaustive()
    }
}
