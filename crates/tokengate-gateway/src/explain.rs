//! `tokengate-gateway explain`: what the gateway would answer for a token on a route, step by
//! step — for the operator asking "why is this token refused here?".
//!
//! Every verdict comes from the library itself ([`Gate::authorize`] for the answer,
//! [`Gate::verify_token`] for which local check failed), so the report cannot drift from what
//! the gateway does; this module only adds what a person needs around the verdicts: the decoded
//! header and claims, dates, and which step of the pipeline said no.
//!
//! It prints the token's decoded header and claims — that is the point — but never the token
//! itself, and nothing secret from the configuration (the [`Gate`] does not expose HMAC or
//! client secrets, and nothing here asks for them).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value};
use tokengate::jwt::{IssuerVerifier, UnverifiedToken, decode_unverified};
use tokengate::policy::{Mode, NormalizedPath, Requirement};
use tokengate::{AuthError, Authorized, Gate, Principal, Rejection, VerifiedBy};

/// The registered time claims shown as dates (RFC 7519 §4.1, OpenID Connect Core §2).
const TIME_CLAIMS: [&str; 4] = ["exp", "nbf", "iat", "auth_time"];

/// The latest NumericDate the library accepts: 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// Header parameters that point at keys elsewhere; tokengate never fetches or trusts them.
const KEY_POINTERS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// Column where a step's summary starts, so continuation lines line up under it.
const DETAIL_INDENT: &str = "                          ";

/// Explains, step by step, what `gate` would answer for `token` on `method` + `path`: the
/// decoded header and claims (times as ISO dates and relative), each pipeline step's verdict,
/// and the final status with the reason. Never prints secrets.
pub async fn explain(gate: &Gate, method: &Method, path: &str, token: &str) -> String {
    let now = gate.now();
    let mut out = String::new();
    out.push_str(&format!("tokengate explain: {method} {path:?}\n"));
    out.push_str(&format!("now: {} ({now})\n", iso8601(now)));
    out.push_str(&format!("token: {} bytes (the token itself is not shown)\n", token.len()));

    let decoded = decode_unverified(token);
    match &decoded {
        Ok(t) => {
            section(&mut out, "header (unverified)");
            push_json(&mut out, &t.header);
            section(&mut out, "claims (unverified)");
            push_json(&mut out, &t.claims);
            section(&mut out, "times");
            push_times(&mut out, &t.claims, now);
        }
        Err(_) => {
            section(&mut out, "decoding");
            out.push_str(&format!("  not a decodable JWT: {}\n", why_undecodable(token)));
        }
    }

    let facts = Facts::gather(gate, method, path, token, decoded.ok()).await;
    section(&mut out, "pipeline (DESIGN.md order)");
    for step in facts.steps(gate) {
        out.push_str(&step.to_string());
    }
    section(&mut out, "answer");
    push_answer(&mut out, gate, &facts);
    out
}

/// Which local check a [`Gate::verify_token`] failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Header,
    Issuer,
    Key,
    Claims,
}

/// What local verification concluded.
enum Local {
    /// The pipeline never got to local verification (route, extraction, or a public route).
    NotRun,
    /// Signature and claims are good.
    Verified(Principal),
    /// Refused at this stage.
    Rejected(Stage, AuthError),
    /// An opaque token on an `introspect` route: only the issuer can vouch for it.
    Opaque,
}

/// Everything the report says, gathered before anything is written.
struct Facts<'t> {
    method: Method,
    raw_path: String,
    /// The normalised path and what the policy asks of it, or why the path is refused.
    route: Result<(NormalizedPath, Requirement, Option<String>), AuthError>,
    token_len: usize,
    /// Whether the token can travel in an `Authorization` header at all.
    sendable: bool,
    decoded: Option<UnverifiedToken<'t>>,
    /// The configured issuer the token's `iss` names.
    issuer: Option<usize>,
    local: Local,
    /// The full decision, as the gateway would make it (`None`: the request cannot be sent).
    answer: Option<Result<Authorized, AuthError>>,
}

impl<'t> Facts<'t> {
    async fn gather(
        gate: &Gate,
        method: &Method,
        path: &str,
        token: &'t str,
        decoded: Option<UnverifiedToken<'t>>,
    ) -> Facts<'t> {
        let route = NormalizedPath::new(path).map(|p| {
            let (requirement, rule) = gate.policy().requirement(method, &p);
            let pattern = rule.map(|r| r.pattern().as_str().to_owned());
            let requirement = requirement.clone();
            (p, requirement, pattern)
        });
        let headers = bearer_headers(token);
        let answer = match &headers {
            Some(headers) => Some(gate.authorize(method, path, headers).await),
            None => None,
        };
        let issuer = decoded.as_ref().and_then(|t| match t.claims.get("iss") {
            Some(Value::String(iss)) => gate.issuers().iter().position(|i| i.issuer() == iss),
            _ => None,
        });
        let mut facts = Facts {
            method: method.clone(),
            raw_path: path.to_owned(),
            route,
            token_len: token.len(),
            sendable: headers.is_some(),
            decoded,
            issuer,
            local: Local::NotRun,
            answer,
        };
        if facts.reaches_verification() {
            facts.local = facts.verify_locally(gate, token).await;
        }
        facts
    }

    fn mode(&self) -> Option<Mode> {
        self.route.as_ref().ok().map(|(_, r, _)| r.mode)
    }

    /// The extraction error the gate answered with, if extraction is where it stopped.
    fn extraction_error(&self) -> Option<&AuthError> {
        match &self.answer {
            Some(Err(e @ (AuthError::MissingToken | AuthError::InvalidToken(Rejection::TooLarge)))) => {
                Some(e)
            }
            // A refused path is also `InvalidRequest`; only a good route makes it the header's fault.
            Some(Err(e @ AuthError::InvalidRequest(_))) if self.route.is_ok() => Some(e),
            _ => None,
        }
    }

    /// Whether the pipeline gets as far as looking at the token itself.
    fn reaches_verification(&self) -> bool {
        self.sendable
            && matches!(self.mode(), Some(Mode::Optional | Mode::Local | Mode::Introspect))
            && self.extraction_error().is_none()
    }

    async fn verify_locally(&self, gate: &Gate, token: &str) -> Local {
        // The gate's own test: anything but a three-part JWS is opaque.
        if !tokengate::extract::is_compact_jws(token) {
            return match &self.answer {
                Some(Err(e @ AuthError::InvalidToken(Rejection::OpaqueNotAccepted))) => {
                    Local::Rejected(Stage::Header, e.clone())
                }
                Some(Err(e @ AuthError::Unavailable { .. })) if gate.introspector().is_none() => {
                    Local::Rejected(Stage::Header, e.clone())
                }
                _ => Local::Opaque,
            };
        }
        match gate.verify_token(token).await {
            Ok(principal) => Local::Verified(principal),
            Err(e) => Local::Rejected(self.stage_of(gate, &e), e),
        }
    }

    /// Maps a verification failure to the step it belongs to.
    fn stage_of(&self, gate: &Gate, error: &AuthError) -> Stage {
        let AuthError::InvalidToken(rejection) = error else {
            // Keys not loaded or too stale (503).
            return Stage::Key;
        };
        match rejection {
            Rejection::Malformed
            | Rejection::UnsupportedAlgorithm
            | Rejection::UnknownCritical
            | Rejection::WrongType => Stage::Header,
            // Refused by the allow-list when a key would fit; otherwise no key fits the alg.
            Rejection::AlgorithmNotAllowed if self.a_key_fits(gate) => Stage::Header,
            Rejection::AlgorithmNotAllowed | Rejection::UnknownKey | Rejection::BadSignature => Stage::Key,
            Rejection::UnknownIssuer | Rejection::MissingClaim("iss") | Rejection::InvalidClaim("iss") => {
                Stage::Issuer
            }
            _ => Stage::Claims,
        }
    }

    /// Whether a key of the token's issuer could verify the token's `kid` + `alg`.
    fn a_key_fits(&self, gate: &Gate) -> bool {
        let (Some(issuer), Some(t)) = (self.issuer_config(gate), &self.decoded) else {
            return false;
        };
        let Some(alg) = t.alg else {
            return false;
        };
        issuer.store().snapshot().candidates(self.kid(), alg).next().is_some()
    }

    fn issuer_config<'g>(&self, gate: &'g Gate) -> Option<&'g IssuerVerifier> {
        self.issuer.and_then(|i| gate.issuers().get(i))
    }

    fn kid(&self) -> Option<&str> {
        self.decoded.as_ref().and_then(|t| t.header.get("kid")).and_then(Value::as_str)
    }

    fn claim(&self, name: &str) -> Option<&Value> {
        self.decoded.as_ref().and_then(|t| t.claims.get(name))
    }

    /// Where local verification stopped, if it did.
    fn failed_stage(&self) -> Option<Stage> {
        match &self.local {
            Local::Rejected(stage, _) => Some(*stage),
            _ => None,
        }
    }

    /// Whether something before introspection stopped the pipeline.
    fn earlier_failure(&self) -> bool {
        matches!(self.local, Local::NotRun | Local::Rejected(..)) || self.revoked_locally()
    }

    fn revoked_locally(&self) -> bool {
        matches!(&self.answer, Some(Err(AuthError::InvalidToken(Rejection::Revoked))))
            && matches!(self.local, Local::Verified(_))
    }

    fn steps(&self, gate: &Gate) -> Vec<Step> {
        let mut steps = vec![self.route_step()];
        let (skip, why) = match self.mode() {
            None => (Mark::NotReached, "the path is refused first"),
            Some(Mode::Public) => (Mark::Skip, "public route: the token is not looked at"),
            Some(Mode::Deny) => (Mark::Skip, "deny route: refused whatever the token"),
            Some(_) if !self.sendable => {
                steps
                    .push(TOKEN.fail("has characters an HTTP header value may not carry: it cannot be sent"));
                (Mark::NotReached, "")
            }
            Some(_) => {
                steps.push(self.extract_step());
                if self.extraction_error().is_some() {
                    (Mark::NotReached, "")
                } else if matches!(self.local, Local::Opaque) {
                    for id in [HEADER, ISSUER, KEY, CLAIMS] {
                        steps.push(id.skip("an opaque token: only the issuer can vouch for it"));
                    }
                    steps.extend([
                        self.revocation_step(gate),
                        self.introspection_step(gate),
                        self.scopes_step(),
                    ]);
                    return steps;
                } else {
                    steps.extend([
                        self.header_step(),
                        self.issuer_step(gate),
                        self.key_step(gate),
                        self.claims_step(gate),
                        self.revocation_step(gate),
                        self.introspection_step(gate),
                        self.scopes_step(),
                    ]);
                    return steps;
                }
            }
        };
        // Whatever stopped the pipeline, the remaining steps say so.
        for id in &TOKEN_STEPS[steps.len() - 1..] {
            steps.push(id.step(skip, why));
        }
        steps
    }

    fn route_step(&self) -> Step {
        match &self.route {
            Err(e) => ROUTE.fail(format!("{:?}: {}", self.raw_path, e.description())),
            Ok((path, requirement, pattern)) => {
                let mut summary = format!("{} {}", self.method, path.as_str());
                if path.as_str() != self.raw_path {
                    summary.push_str(&format!("  (normalised from {:?})", self.raw_path));
                }
                let rule = match pattern {
                    Some(p) => format!("rule {p:?}"),
                    None => "no rule matches: the default requirement".to_owned(),
                };
                let scopes = if requirement.scopes.is_empty() {
                    "no scopes required".to_owned()
                } else {
                    format!("requires scopes: {}", requirement.scopes.join(" "))
                };
                let mode = match requirement.mode {
                    Mode::Optional => "mode optional (no token is fine; one that is sent must be valid)",
                    Mode::Public => "mode public",
                    Mode::Local => "mode local",
                    Mode::Introspect => "mode introspect",
                    Mode::Deny => "mode deny",
                };
                ROUTE.ok(summary).detail(format!("{rule}; {mode}; {scopes}"))
            }
        }
    }

    fn extract_step(&self) -> Step {
        let bytes = self.token_len;
        match self.extraction_error() {
            Some(AuthError::InvalidToken(Rejection::TooLarge)) => {
                TOKEN.fail(format!("{bytes} bytes: over the gate's size cap, refused before decoding"))
            }
            Some(AuthError::MissingToken) => TOKEN.fail("no bearer token (an empty token is none)"),
            Some(e) => TOKEN.fail(format!("{}: not RFC 6750 b64token syntax", e.description())),
            None => TOKEN.ok(format!("{bytes} bytes: a well-formed bearer token within the size cap")),
        }
    }

    fn header_step(&self) -> Step {
        let Some(t) = &self.decoded else {
            let why = match &self.local {
                Local::Rejected(_, e) if !matches!(e, AuthError::InvalidToken(Rejection::Malformed)) => {
                    e.description().to_owned()
                }
                _ => "the token is malformed (see decoding above)".to_owned(),
            };
            return HEADER.fail(why);
        };
        let mut facts = Vec::new();
        match t.header.get("alg") {
            None => facts.push("no alg".to_owned()),
            Some(Value::String(alg)) if t.alg.is_some() => facts.push(format!("alg {alg}")),
            Some(Value::String(alg)) if alg.eq_ignore_ascii_case("none") => {
                facts.push(format!("alg {alg:?}: unsigned tokens are never accepted"))
            }
            Some(Value::String(alg)) => {
                facts.push(format!("alg {alg:?} is not an algorithm tokengate implements"))
            }
            Some(_) => facts.push("alg is not a string".to_owned()),
        }
        match t.header.get("typ") {
            Some(Value::String(typ)) => facts.push(format!("typ {typ:?}")),
            Some(_) => facts.push("typ is not a string".to_owned()),
            None => facts.push("no typ".to_owned()),
        }
        facts.push(if t.header.contains_key("crit") {
            "crit present".to_owned()
        } else {
            "no crit".to_owned()
        });
        let mut step = match &self.local {
            Local::Rejected(Stage::Header, e) => {
                let why = match e {
                    AuthError::InvalidToken(Rejection::AlgorithmNotAllowed) => {
                        "the token's algorithm is not in the issuer's allow-list".to_owned()
                    }
                    AuthError::InvalidToken(Rejection::WrongType) => {
                        "not an access token of the accepted type: the issuer requires another typ (RFC 9068: \
                         at+jwt), or the token is a logout token or a security event token (typ logout+jwt or \
                         secevent+jwt, or an events claim), which never pass for access tokens"
                            .to_owned()
                    }
                    AuthError::InvalidToken(Rejection::UnknownCritical) => {
                        "crit names extensions tokengate does not implement (RFC 7515 §4.1.11)".to_owned()
                    }
                    AuthError::InvalidToken(Rejection::Malformed) => "alg or kid is not a string".to_owned(),
                    other => other.description().to_owned(),
                };
                HEADER.fail(why).detail(facts.join("; "))
            }
            Local::Rejected(Stage::Issuer, _) => HEADER
                .ok(facts.join("; "))
                .detail("the issuer's allow-list and required typ are not checked: no configured issuer"),
            _ => HEADER.ok(facts.join("; ")).detail("alg allowed for the issuer, typ accepted"),
        };
        let pointers: Vec<&str> = KEY_POINTERS.into_iter().filter(|p| t.header.contains_key(*p)).collect();
        if !pointers.is_empty() {
            step = step.detail(format!("{} present: ignored, never fetched or trusted", pointers.join(", ")));
        }
        step
    }

    fn issuer_step(&self, gate: &Gate) -> Step {
        if self.failed_stage().is_some_and(|s| s < Stage::Issuer) {
            return ISSUER.not_reached("");
        }
        let n = gate.issuers().len();
        match (self.claim("iss"), self.issuer) {
            (Some(Value::String(iss)), Some(i)) => {
                ISSUER.ok(format!("{iss:?} is configured (issuer {} of {n})", i + 1))
            }
            (iss, _) => {
                let why = match iss {
                    None => "the token has no iss claim".to_owned(),
                    Some(Value::String(iss)) => format!("{iss:?} is not a configured issuer"),
                    Some(_) => "iss is not a string".to_owned(),
                };
                let configured: Vec<String> =
                    gate.issuers().iter().map(|i| format!("{:?}", i.issuer())).collect();
                ISSUER.fail(why).detail(format!("configured: {}", configured.join(", ")))
            }
        }
    }

    fn key_step(&self, gate: &Gate) -> Step {
        if self.failed_stage().is_some_and(|s| s < Stage::Key) {
            return KEY.not_reached("");
        }
        let Some(issuer) = self.issuer_config(gate) else {
            return KEY.not_reached("");
        };
        let keys = issuer.store().snapshot();
        let kid = match self.kid() {
            Some(kid) if keys.has_kid(kid) => {
                format!("kid {kid:?} is in the issuer's key set ({} keys)", keys.len())
            }
            Some(kid) => format!("kid {kid:?} is not in the issuer's key set ({} keys)", keys.len()),
            None => format!("no kid; the issuer has {} keys", keys.len()),
        };
        let alg = self.decoded.as_ref().and_then(|t| t.alg);
        match &self.local {
            Local::Rejected(Stage::Key, e) => {
                let why = match e {
                    AuthError::InvalidToken(Rejection::BadSignature) => {
                        "the signature does not verify: forged, altered, or signed by another key".to_owned()
                    }
                    AuthError::InvalidToken(Rejection::UnknownKey) => {
                        "no key of the issuer matches the token's kid, even after a refresh".to_owned()
                    }
                    AuthError::InvalidToken(Rejection::AlgorithmNotAllowed) => format!(
                        "no key of the issuer can verify {} (the allow-list may refuse it too)",
                        alg.map_or_else(|| "this alg".to_owned(), |a| format!("{a:?}"))
                    ),
                    other => format!("{} (not loaded yet, or older than allowed)", other.description()),
                };
                KEY.fail(why).detail(kid)
            }
            _ => KEY.ok(format!("{kid}; the signature verifies")),
        }
    }

    fn claims_step(&self, gate: &Gate) -> Step {
        if self.failed_stage().is_some_and(|s| s < Stage::Claims) {
            return CLAIMS.not_reached("");
        }
        let mut details = Vec::new();
        for name in ["exp", "nbf", "iat"] {
            match self.claim(name).map(numeric_date) {
                Some(Ok(t)) => details.push(format!("{name}: {}", relative(name, t, gate.now()))),
                Some(Err(why)) => details.push(format!("{name}: {why}")),
                None => details.push(format!("no {name}")),
            }
        }
        let aud = self.claim("aud").map_or_else(|| "no aud".to_owned(), |a| format!("aud: {}", compact(a)));
        details.push(aud);
        let step = match &self.local {
            Local::Rejected(Stage::Claims, e) => CLAIMS.fail(e.description()),
            _ => {
                let mut step = CLAIMS.ok("exp, nbf, iat and aud pass");
                let exp = self.claim("exp").and_then(|v| numeric_date(v).ok());
                if let (Some(exp), Local::Verified(_)) = (exp, &self.local)
                    && exp <= gate.now()
                {
                    step = step.detail("exp has passed, but within the issuer's clock-skew leeway");
                }
                step
            }
        };
        step.detail(details.join("; "))
    }

    fn revocation_step(&self, gate: &Gate) -> Step {
        if let Local::Verified(p) = &self.local {
            let now = gate.now();
            let list = gate.revocations();
            let by_jti = list.is_revoked(p.issuer(), p.token_id(), None, p.issued_at(), now);
            let by_sub = list.is_revoked(p.issuer(), None, p.subject(), p.issued_at(), now);
            let by_sid = p.session_id().is_some_and(|sid| list.is_session_revoked(p.issuer(), sid, now));
            // What the gate itself checks: also the maximum-lifetime rule for long-lived tokens.
            let by_gate = list.is_token_revoked(
                p.issuer(),
                p.token_id(),
                p.subject(),
                p.session_id(),
                p.issued_at(),
                p.expires_at(),
                now,
            );
            let jti = p.token_id().map_or_else(|| "no jti".to_owned(), |j| format!("jti {j:?}"));
            let sub = p.subject().map_or_else(|| "no sub".to_owned(), |s| format!("sub {s:?}"));
            return match (by_jti, by_sub, by_sid) {
                (false, false, false) if by_gate => REVOCATION.fail(format!(
                    "the token lives longer than the maximum token lifetime and was issued before its issuer's latest subject or session revocation, so {jti} and {sub} cannot be cleared"
                )),
                (false, false, false) => REVOCATION.ok(format!("{jti} and {sub} are not revoked")),
                (true, _, _) => REVOCATION.fail(format!("{jti} is on the revocation list")),
                (false, true, _) => REVOCATION.fail(format!(
                    "every token of {sub} issued before a time after this one's iat is revoked"
                )),
                (false, false, true) => REVOCATION.fail(format!(
                    "the token's session (sid {:?}) has been revoked",
                    p.session_id().unwrap_or_default()
                )),
            };
        }
        if matches!(self.local, Local::Opaque) {
            return match &self.answer {
                Some(Err(AuthError::InvalidToken(Rejection::Revoked))) => {
                    REVOCATION.fail("the claims the issuer answered are on the revocation list")
                }
                Some(Ok(_) | Err(AuthError::InsufficientScope { .. })) => {
                    REVOCATION.ok("checked on the claims the issuer answered (after step 8)")
                }
                _ => REVOCATION.not_reached("checked after introspection for opaque tokens"),
            };
        }
        REVOCATION.not_reached("")
    }

    fn introspection_step(&self, gate: &Gate) -> Step {
        let mode = self.mode().unwrap_or(Mode::Local);
        if mode != Mode::Introspect {
            return INTROSPECTION.skip(format!("mode {}: the issuer is not asked", mode.as_str()));
        }
        let Some(introspector) = gate.introspector() else {
            return INTROSPECTION.fail("introspection is not configured: the route answers 503");
        };
        let at = format!("the issuer is asked at {}", introspector.endpoint());
        if self.earlier_failure() {
            return INTROSPECTION.not_reached(format!("{at} only after local checks pass"));
        }
        let breaker =
            format!("circuit breaker {:?}; answers are cached by token hash", introspector.breaker_state());
        let confirmed = |a: &Authorized| {
            a.principal.as_ref().is_some_and(|p| p.verified_by() == VerifiedBy::Introspection)
        };
        let (mark, verdict) = match &self.answer {
            Some(Ok(a)) if confirmed(a) => (Mark::Ok, "active".to_owned()),
            Some(Err(AuthError::InsufficientScope { .. } | AuthError::InvalidToken(Rejection::Revoked))) => {
                (Mark::Ok, "active".to_owned())
            }
            Some(Err(AuthError::InvalidToken(Rejection::Inactive))) => {
                (Mark::Fail, "not active (revoked or expired at the issuer)".to_owned())
            }
            Some(Err(e @ AuthError::Unavailable { .. })) => (Mark::Fail, format!("{}: 503", e.description())),
            Some(Err(e)) => (Mark::Fail, e.description().to_owned()),
            Some(Ok(_)) | None => (Mark::NotReached, "no answer".to_owned()),
        };
        INTROSPECTION.step(mark, format!("{at}: {verdict}")).detail(breaker)
    }

    fn scopes_step(&self) -> Step {
        let required: Vec<String> = match &self.route {
            Ok((_, r, _)) => r.scopes.to_vec(),
            Err(_) => Vec::new(),
        };
        let (has, source) = match (&self.answer, &self.local) {
            (Some(Ok(Authorized { principal: Some(p), .. })), _) => (p.scopes().to_vec(), "token"),
            (_, Local::Verified(p)) => (p.scopes().to_vec(), "token"),
            _ => (unverified_scopes(self.decoded.as_ref()), "token (unverified)"),
        };
        let list = |s: &[String]| if s.is_empty() { "none".to_owned() } else { s.join(" ") };
        let detail = format!("{source}: {}; route requires: {}", list(&has), list(&required));
        match &self.answer {
            Some(Err(AuthError::InsufficientScope { required })) => {
                let missing: Vec<String> = required.iter().filter(|s| !has.contains(s)).cloned().collect();
                let missing = if missing.is_empty() {
                    // Introspection answered narrower scopes than the token carries.
                    "the issuer's answer lacks a required scope".to_owned()
                } else {
                    format!("missing: {}", missing.join(" "))
                };
                SCOPES.fail(missing).detail(detail)
            }
            Some(Ok(_)) => SCOPES.ok(detail),
            _ => SCOPES.not_reached("").detail(detail),
        }
    }
}

/// The outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Ok,
    Fail,
    Skip,
    NotReached,
}

impl Mark {
    fn as_str(self) -> &'static str {
        match self {
            Mark::Ok => "ok",
            Mark::Fail => "FAIL",
            Mark::Skip => "skip",
            Mark::NotReached => "-",
        }
    }
}

/// A step of the pipeline: its number in DESIGN.md and its name.
#[derive(Debug, Clone, Copy)]
struct StepId(&'static str, &'static str);

const ROUTE: StepId = StepId("1", "route");
const TOKEN: StepId = StepId("2", "token");
const HEADER: StepId = StepId("4", "header");
const ISSUER: StepId = StepId("5", "issuer");
const KEY: StepId = StepId("5", "key");
const CLAIMS: StepId = StepId("6", "claims");
const REVOCATION: StepId = StepId("7", "revocation");
const INTROSPECTION: StepId = StepId("8", "introspection");
const SCOPES: StepId = StepId("9", "scopes");

/// The steps that look at the token, in order.
const TOKEN_STEPS: [StepId; 8] = [TOKEN, HEADER, ISSUER, KEY, CLAIMS, REVOCATION, INTROSPECTION, SCOPES];

impl StepId {
    fn step(self, mark: Mark, summary: impl Into<String>) -> Step {
        let summary = match (mark, summary.into()) {
            (Mark::NotReached, s) if s.is_empty() => "not reached".to_owned(),
            (Mark::NotReached, s) => format!("not reached ({s})"),
            (_, s) => s,
        };
        Step { id: self, mark, summary, details: Vec::new() }
    }

    fn ok(self, summary: impl Into<String>) -> Step {
        self.step(Mark::Ok, summary)
    }

    fn fail(self, summary: impl Into<String>) -> Step {
        self.step(Mark::Fail, summary)
    }

    fn skip(self, summary: impl Into<String>) -> Step {
        self.step(Mark::Skip, summary)
    }

    fn not_reached(self, summary: impl Into<String>) -> Step {
        self.step(Mark::NotReached, summary)
    }
}

/// One line of the pipeline table, with its continuation lines.
struct Step {
    id: StepId,
    mark: Mark,
    summary: String,
    details: Vec<String>,
}

impl Step {
    fn detail(mut self, detail: impl Into<String>) -> Step {
        self.details.push(detail.into());
        self
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let StepId(no, name) = self.id;
        writeln!(f, "  {no:<2} {name:<14} {:<5} {}", self.mark.as_str(), self.summary)?;
        for d in &self.details {
            writeln!(f, "{DETAIL_INDENT}{d}")?;
        }
        Ok(())
    }
}

fn push_answer(out: &mut String, gate: &Gate, facts: &Facts<'_>) {
    match &facts.answer {
        None => out.push_str(
            "  no answer from tokengate: the token has characters an HTTP header value may not carry,\n  \
             so HTTP servers refuse the request (400) before the gateway sees it\n",
        ),
        Some(Ok(authorized)) => {
            out.push_str(&format!("  200 — forwarded to the upstream as {}\n", authorized.path.as_str()));
            if authorized.path.as_str() != facts.raw_path {
                out.push_str(
                    "  (in forward_auth mode: 400 instead — the proxy in front would forward the path as sent,\n  \
                     not the normalised one the rules judged)\n",
                );
            }
            match &authorized.principal {
                Some(p) => {
                    let by = match p.verified_by() {
                        VerifiedBy::Signature => "signature",
                        VerifiedBy::Introspection => "signature and introspection",
                    };
                    out.push_str(&format!(
                        "  as subject {} of {:?} (verified by {by})\n",
                        p.subject().map_or_else(|| "(none)".to_owned(), |s| format!("{s:?}")),
                        p.issuer()
                    ));
                }
                None => out.push_str("  without a principal: no token is checked on this route\n"),
            }
        }
        Some(Err(error)) => {
            let response = gate.render(error);
            out.push_str(&format!("  {}\n", response.status()));
            let headers = response.headers();
            for (name, header) in [("WWW-Authenticate", WWW_AUTHENTICATE), ("Retry-After", RETRY_AFTER)] {
                if let Some(value) = headers.get(header) {
                    out.push_str(&format!("  {name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
                }
            }
            out.push_str(&format!("  body: {}\n", String::from_utf8_lossy(response.body())));
            out.push_str(&format!("  why: {}\n", error.description()));
        }
    }
}

/// `Authorization: Bearer <token>`, or `None` when the token cannot be a header value.
fn bearer_headers(token: &str) -> Option<HeaderMap> {
    let value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    Some(headers)
}

fn section(out: &mut String, title: &str) {
    out.push('\n');
    out.push_str(title);
    out.push('\n');
}

fn push_json(out: &mut String, map: &Map<String, Value>) {
    // Serialising a `Value` cannot fail.
    let pretty = serde_json::to_string_pretty(map).unwrap_or_default();
    for line in pretty.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

/// A claim value on one line, shortened if long.
fn compact(value: &Value) -> String {
    const MAX: usize = 80;
    let s = value.to_string();
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

fn unverified_scopes(decoded: Option<&UnverifiedToken<'_>>) -> Vec<String> {
    decoded.and_then(|t| tokengate::jwt::scopes_of(&t.claims)).unwrap_or_default()
}

fn push_times(out: &mut String, claims: &Map<String, Value>, now: i64) {
    for name in TIME_CLAIMS {
        let line = match claims.get(name) {
            None => "absent".to_owned(),
            Some(value) => match numeric_date(value) {
                Err(why) => why.to_owned(),
                Ok(t) => format!("{}  {}", iso8601(t), relative(name, t, now)),
            },
        };
        out.push_str(&format!("  {name:<10} {line}\n"));
    }
    let date = |name| claims.get(name).and_then(|v| numeric_date(v).ok());
    if let (Some(iat), Some(exp)) = (date("iat"), date("exp"))
        && exp >= iat
    {
        out.push_str(&format!("  lifetime   {}\n", span(exp.abs_diff(iat))));
    }
}

/// A NumericDate as the library reads it: a non-negative number up to year 9999, fractions
/// rounded down (the report only shows it).
fn numeric_date(value: &Value) -> Result<i64, &'static str> {
    let Value::Number(n) = value else {
        return Err("not a NumericDate (not a number)");
    };
    let secs = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        (None, Some(f)) if f.is_finite() && (0.0..=MAX_NUMERIC_DATE as f64).contains(&f) => f.floor() as i64,
        _ => return Err("not a NumericDate (out of range)"),
    };
    if (0..=MAX_NUMERIC_DATE).contains(&secs) {
        Ok(secs)
    } else {
        Err("not a NumericDate (before 1970 or after 9999)")
    }
}

/// "expires in 4 min", "expired 2 h ago", "issued 10 s ago", …
fn relative(claim: &str, t: i64, now: i64) -> String {
    let d = span(t.abs_diff(now));
    let future = t > now;
    match (claim, future) {
        ("exp", true) => format!("expires in {d}"),
        ("exp", false) => format!("expired {d} ago"),
        ("nbf", true) => format!("not valid for another {d}"),
        ("nbf", false) => format!("valid since {d} ago"),
        ("iat", true) => format!("issued {d} in the future"),
        ("iat", false) => format!("issued {d} ago"),
        (_, true) => format!("authenticated {d} in the future"),
        (_, false) => format!("authenticated {d} ago"),
    }
}

/// A duration in its largest unit and the next one: "4 min 50 s", "2 h", "3 d 1 h".
fn span(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
    for (i, &(unit, name)) in UNITS.iter().enumerate() {
        if secs >= unit {
            let main = format!("{} {name}", secs / unit);
            return match UNITS.get(i + 1) {
                Some(&(next, next_name)) if (secs % unit) / next > 0 => {
                    format!("{main} {} {next_name}", (secs % unit) / next)
                }
                _ => main,
            };
        }
    }
    "0 s".to_owned()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch.
fn iso8601(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3_600, rem % 3_600 / 60, rem % 60)
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day): the inverse of Howard
/// Hinnant's `days_from_civil` (<https://howardhinnant.github.io/date_algorithms.html>), which
/// counts in 400-year eras of 146 097 days starting on 1 March so leap days fall at the end.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Why [`decode_unverified`] refused the token, worked out again here because the library
/// only says "malformed". Names a segment, never shows it.
fn why_undecodable(token: &str) -> String {
    if token.is_empty() {
        return "the token is empty".to_owned();
    }
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() != 3 {
        return format!(
            "{} segment(s) separated by '.', a signed JWT has 3: an opaque token, or not a token",
            segments.len()
        );
    }
    for (name, segment) in ["header", "payload", "signature"].into_iter().zip(segments) {
        if segment.is_empty() {
            return format!("the {name} segment is empty");
        }
        let Some(bytes) = base64url(segment) else {
            return format!("the {name} segment is not canonical unpadded base64url");
        };
        if name != "signature" {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(_)) => {}
                Ok(_) => return format!("the {name} is JSON but not an object"),
                Err(_) => return format!("the {name} is not JSON"),
            }
        }
    }
    "the header or the payload repeats a member name, or uses one serde_json reserves \
     (`$serde_json::private::…`) (refused: parsers disagree on what such JSON means)"
        .to_owned()
}

/// Strict unpadded base64url (RFC 4648 §5): no padding, no other alphabet, zero trailing bits;
/// the same decoding the verifier uses.
fn base64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;
    use tokengate::policy::{RoutePolicy, Rule};
    use tokengate::{Algorithm, IntrospectionConfig, IssuerConfig, TokenGateLayer};
    use tokengate_testkit::Issuer;

    const HMAC_ISSUER: &str = "https://hmac.example.com";
    const HMAC_SECRET: &[u8] = b"an-hmac-secret-of-at-least-32-bytes!";

    /// The testkit issuer (RS256/ES256/EdDSA by its JWKS, introspection), an HMAC issuer, and
    /// routes of every mode.
    async fn gate(issuer: &Issuer) -> Arc<Gate> {
        let policy = RoutePolicy::new()
            .rule(Rule::new("/health", Requirement::public()).unwrap())
            .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"])).unwrap())
            .rule(Rule::new("/payments/*", Requirement::introspect()).unwrap())
            .rule(Rule::new("/blocked", Requirement::deny()).unwrap());
        let layer = TokenGateLayer::builder()
            .issuer(
                IssuerConfig::new(issuer.url())
                    .audience(issuer.audience())
                    .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
                    .jwks(issuer.jwks().to_string()),
            )
            .issuer(
                IssuerConfig::new(HMAC_ISSUER)
                    .audience(issuer.audience())
                    .algorithms([Algorithm::HS256])
                    .hmac_secret(HMAC_SECRET),
            )
            .introspection(
                IntrospectionConfig::new(
                    issuer.introspection_endpoint(),
                    issuer.introspection_client_id(),
                    issuer.introspection_client_secret(),
                )
                .issuer(issuer.url()),
            )
            .policy(policy)
            .build()
            .await
            .expect("gate builds");
        layer.gate().clone()
    }

    /// Runs `explain` and checks what every report must satisfy.
    async fn report(gate: &Gate, issuer: &Issuer, method: Method, path: &str, token: &str) -> String {
        let report = explain(gate, &method, path, token).await;
        if token.len() >= 8 {
            assert!(!report.contains(token), "the report echoes the token:\n{report}");
        }
        assert!(!report.contains(&issuer.introspection_client_secret()), "client secret:\n{report}");
        assert!(!report.contains(std::str::from_utf8(HMAC_SECRET).unwrap()), "HMAC secret:\n{report}");
        report
    }

    #[tokio::test]
    async fn valid_token_on_a_local_route_is_forwarded_on_the_normalised_path() {
        let issuer = Issuer::start().await;
        let gate = gate(&issuer).await;
        let token = issuer.token().sub("alice").scope("read").sign();
        let r = report(&gate, &issuer, Method::GET, "/x/../whoami", &token).await;
        assert!(r.contains("200 — forwarded to the upstream as /whoami"), "{r}");
        assert!(r.contains("(normalised from \"/x/../whoami\")"), "{r}");
        assert!(r.contains("in forward_auth mode: 400 instead"), "{r}");
        assert!(r.contains("no rule matches: the default requirement; mode local"), "{r}");
        assert!(r.contains("\"sub\": \"alice\""), "{r}");
        assert!(r.contains("expires in 5 min") || r.contains("expires in 4 min"), "{r}");
        assert!(r.contains("issued 0 s ago") || r.contains("issued 1 s ago"), "{r}");
        assert!(r.contains("the signature verifies"), "{r}");
        assert!(!r.contains("FAIL"), "{r}");
    }

    #[tokio::test]
    async fn expired_token_is_401_at_the_claims_step() {
        let issuer = Issuer::start().await;
        let gate = gate(&issuer).await;
        let token = issuer.token().expires_in(-600).sign();
        let r = report(&gate, &issuer, Method::GET, "/whoami", &token).await;
        assert!(r.contains("401 Unauthorized"), "{r}");
        assert!(r.contains("expired 10 min ago"), "{r}");
        assert!(r.contains("6  claims         FAIL  the token has expired"), "{r}");
        assert!(r.contains("error=\"invalid_token\", error_description=\"the token has expired\""), "{r}");
        assert!(r.contains("7  revocation     -     not reached"), "{r}");
    }

    #[tokio::test]
    async fn missing_scope_is_403_and_names_the_scope() {
        let issuer = Issuer::start().await;
        let gate = gate(&issuer).await;
        let token = issuer.token().scope("read write").sign();
        let r = report(&gate, &issuer, Method::GET, "/admin/stats", &token).await;
        assert!(r.contains("403 Forbidden"), "{r}");
        assert!(r.contains("rule \"/admin/*\"; mode local; requires scopes: admin"), "{r}");
        assert!(r.contains("FAIL  missing: admin"), "{r}");
        assert!(r.contains("token: read write; route requires: admin"), "{r}");
        assert!(r.contains("scope=\"admin\""), "{r}");
    }

    #[tokio::test]
    async fn garbage_tokens_are_explained_without_panicking() {
        let issuer = Issuer::start().await;
        let gate = gate(&issuer).await;
        let cases = [
            ("not-a-token", "1 segment(s)", "401 Unauthorized"),
            ("Z2FyYmFnZQ.Z2FyYmFnZQ.Z2FyYmFnZQ", "the header is not JSON", "the token is malformed"),
            ("eyJhbGciOiJSUzI1NiJ9.eyJhIjoxfQ==.c2ln", "payload segment is not canonical", "400 Bad Request"),
            ("eyJhbGciOiJSUzI1NiJ9.WzFd.c2ln", "the payload is JSON but not an object", "401"),
            ("a.b", "2 segment(s)", "401"),
            ("", "the token is empty", "400 Bad Request"),
            ("has space.x.y", "not canonical", "400 Bad Request"),
            ("line\nbreak", "1 segment(s)", "no answer from tokengate"),
            ("é.é.é", "not canonical", "400 Bad Request"),
        ];
        for (token, why, answer) in cases {
            let r = report(&gate, &issuer, Method::GET, "/whoami", token).await;
            assert!(r.contains("not a decodable JWT"), "{token:?}:\n{r}");
            assert!(r.contains(why), "{token:?}:\n{r}");
            assert!(r.contains(answer), "{token:?}:\n{r}");
        }
    }

    #[tokio::test]
    async fn each_local_check_is_blamed_on_its_step() {
        let issuer = Issuer::start().await;
        let gate = gate(&issuer).await;
        let cases = [
            (issuer.token().sign_with_foreign_key(), "5  key            FAIL  the signature does not verify"),
            (issuer.token().header("kid", json!("nope")).sign(), "FAIL  no key of the issuer matches"),
            (issuer.token().claim("iss", json!("https://evil.example")).sign(), "is not a configured issuer"),
            (issuer.token().header("crit", json!(["exp"])).sign(), "4  header         FAIL  crit names"),
            (issuer.token().alg(Algorithm::PS256).sign(), "FAIL  no key of the issuer can verify PS256"),
            (
                issuer.token().claim("iss", json!(HMAC_ISSUER)).sign_hmac(Algorithm::HS384, HMAC_SECRET),
                "FAIL  the token's algorithm is not in the issuer's allow-list",
            ),
            (
                issuer.token().aud(json!("https://other.example")).sign(),
                "FAIL  the token is not meant for this audience",
            ),
            (
                issuer.token().expires_in(-10).sign(),
                "exp has passed, but within the issuer's clock-skew leeway",
            ),
        ];
        for (token, expected) in cases {
            let r = report(&gate, &issuer, Method::GET, "/whoami", &token).await;
            assert!(r.contains(expected), "{expected}:\n{r}");
        }
    }

    #[tokio::test]
    async fn introspected_route_gives_the_issuers_live_answer() {
        let issuer = Issuer::start().await;
        let gate = gate(&issuer).await;
        let good = issuer.token().sign();
        let r = report(&gate, &issuer, Method::POST, "/payments/1", &good).await;
        assert!(r.contains("8  introspection  ok    the issuer is asked at http://"), "{r}");
        assert!(r.contains("verified by signature and introspection"), "{r}");

        let revoked = issuer.token().sign();
        issuer.revoke_token(&revoked);
        let r = report(&gate, &issuer, Method::POST, "/payments/1", &revoked).await;
        assert!(r.contains("FAIL  the issuer is asked at"), "{r}");
        assert!(r.contains("not active"), "{r}");
        assert!(r.contains("401 Unauthorized"), "{r}");

        let opaque = issuer.opaque_token().issue();
        let r = report(&gate, &issuer, Method::POST, "/payments/1", &opaque).await;
        assert!(r.contains("skip  an opaque token"), "{r}");
        assert!(r.contains("200 — forwarded to the upstream as /payments/1"), "{r}");
        assert!(!r.contains("forward_auth mode"), "the path is its normalised form: {r}");
        let r = report(&gate, &issuer, Method::GET, "/whoami", &opaque).await;
        assert!(r.contains("this route accepts only JWT access tokens"), "{r}");
    }

    #[tokio::test]
    async fn revocation_list_public_and_deny_routes() {
        let issuer = Issuer::start().await;
        let gate = gate(&issuer).await;
        let token = issuer.token().sub("mallory").sign();
        let r = report(&gate, &issuer, Method::GET, "/health", &token).await;
        assert!(r.contains("skip  public route"), "{r}");
        assert!(r.contains("without a principal"), "{r}");
        let r = report(&gate, &issuer, Method::GET, "/blocked", &token).await;
        assert!(r.contains("403 Forbidden"), "{r}");
        let r = report(&gate, &issuer, Method::GET, "/a%2fb", &token).await;
        assert!(r.contains("1  route          FAIL"), "{r}");
        assert!(r.contains("400 Bad Request"), "{r}");

        let revoked = issuer.token().claim("jti", json!("jti-1")).sign();
        gate.revocations().revoke_token(&issuer.url(), "jti-1", None).unwrap();
        let r = report(&gate, &issuer, Method::GET, "/whoami", &revoked).await;
        assert!(r.contains("7  revocation     FAIL"), "{r}");
        assert!(r.contains("the token has been revoked"), "{r}");
    }

    #[tokio::test]
    async fn hmac_secrets_never_appear() {
        let issuer = Issuer::start().await;
        let gate = gate(&issuer).await;
        let token = issuer.token().claim("iss", json!(HMAC_ISSUER)).sign_hmac(Algorithm::HS256, HMAC_SECRET);
        let r = report(&gate, &issuer, Method::GET, "/whoami", &token).await;
        assert!(r.contains("200 — forwarded"), "{r}");
        assert!(r.contains("(issuer 2 of 2)"), "{r}");
    }

    #[test]
    fn dates_are_iso_8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(iso8601(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(iso8601(MAX_NUMERIC_DATE), "9999-12-31T23:59:59Z");
        assert_eq!(iso8601(-86_400), "1969-12-31T00:00:00Z");
    }

    #[test]
    fn spans_use_two_units_at_most() {
        assert_eq!(span(0), "0 s");
        assert_eq!(span(59), "59 s");
        assert_eq!(span(240), "4 min");
        assert_eq!(span(290), "4 min 50 s");
        assert_eq!(span(7_260), "2 h 1 min");
        assert_eq!(span(90_061), "1 d 1 h");
        assert_eq!(relative("exp", 100, 340), "expired 4 min ago");
        assert_eq!(relative("iat", 330, 340), "issued 10 s ago");
        assert_eq!(relative("exp", 7_540, 340), "expires in 2 h");
    }

    #[test]
    fn numeric_dates_are_read_like_the_library() {
        assert_eq!(numeric_date(&json!(5)), Ok(5));
        assert_eq!(numeric_date(&json!(5.9)), Ok(5));
        assert!(numeric_date(&json!("5")).is_err());
        assert!(numeric_date(&json!(-1)).is_err());
        assert!(numeric_date(&json!(1e300)).is_err());
        assert!(numeric_date(&json!(MAX_NUMERIC_DATE + 1)).is_err());
    }

    #[test]
    fn base64url_is_strict() {
        assert_eq!(base64url("eyJhIjoxfQ").as_deref(), Some(&b"{\"a\":1}"[..]));
        for bad in ["eyJhIjoxfQ==", "ey+h", "ey/h", "eyJhIjoxfR", "a"] {
            assert_eq!(base64url(bad), None, "{bad}");
        }
    }
}
