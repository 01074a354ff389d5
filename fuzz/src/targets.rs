//! The checks behind every fuzz target, one function per target: each takes the fuzzer's bytes,
//! runs the code under test and asserts its invariants (a panic is a finding).
//!
//! `fuzz_targets/*.rs` are one-line wrappers around these, and the workspace test
//! `tests/tests/fuzz_corpus.rs` includes this file (`#[path]`) to replay every corpus entry in CI
//! without libFuzzer, so a regression the fuzzer once found fails the ordinary test run.

use http::{HeaderMap, HeaderValue, Method, header};
use tokengate::discovery::{MetadataKind, metadata_url, parse_metadata};
use tokengate::extract::parse_authorization;
use tokengate::introspect::{Verdict, judge_response};
use tokengate::jwks::{KeyKind, KeySet};
use tokengate::jwt::{self, VerifyError};
use tokengate::policy::{Mode, NormalizedPath, PathPattern, normalize_path};
use tokengate::{Algorithm, Rejection};

use crate::world::{AUDIENCE, HMAC_ISSUER, ISSUER, MAX_TOKEN_BYTES, NOW, is_canonical, layer, poll_once};

const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// `tokengate::extract::parse_authorization` on arbitrary header bytes.
///
/// Invariants: never panics; a token it returns is at most the cap, non-empty, and made only of
/// RFC 6750 `b64token` characters (so nothing after it — a second credential, a comma, a
/// space — can ride along).
pub fn authorization_header(data: &[u8]) {
    for cap in [MAX_TOKEN_BYTES, 16] {
        if let Ok(Some(token)) = parse_authorization(data, cap) {
            assert!(!token.is_empty() && token.len() <= cap, "token length {} vs cap {cap}", token.len());
            let body = token.trim_end_matches('=');
            assert!(!body.is_empty());
            assert!(
                body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
                "not a b64token: {token:?}"
            );
            assert!(data.ends_with(token.as_bytes()), "the token is the tail of the header value");
        }
    }
}

/// The whole local verification of an arbitrary token string against a fixed key set:
/// `tokengate::jwt::verify` with the issuers of the fuzz layer, and `Gate::verify_token`.
///
/// Invariants: never panics; the two entry points agree; a token that is accepted is canonical
/// (three segments of canonical base64url), names a configured issuer, and is under the cap;
/// the verifier's one-pass member parse and `decode_unverified`'s full parse agree on which
/// tokens are well formed (the verifier refuses as malformed every token the full parse
/// refuses, and the full parse accepts every token the verifier accepts).
pub fn verify_token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let gate = layer().gate();
    let unverified = jwt::decode_unverified(token);
    let direct = jwt::verify(token, gate.issuers(), NOW, MAX_TOKEN_BYTES);
    if unverified.is_err() && token.len() <= MAX_TOKEN_BYTES {
        assert!(
            matches!(direct, Err(VerifyError::Rejected(Rejection::Malformed))),
            "decode_unverified refuses the token, jwt::verify says {direct:?}"
        );
    }
    let through_gate = poll_once(gate.verify_token(token)).expect("verify_token never waits on static keys");
    match (&direct, &through_gate) {
        (Ok(principal), Ok(again)) => {
            assert!(token.len() <= MAX_TOKEN_BYTES);
            assert!(unverified.is_ok(), "jwt::verify accepted a token decode_unverified refuses");
            assert_eq!(token.split('.').count(), 3, "accepted a token that is not three segments");
            assert!(is_canonical(token), "accepted a non-canonical encoding: {token:?}");
            assert!(
                [ISSUER, HMAC_ISSUER].contains(&principal.issuer()),
                "accepted for an unconfigured issuer"
            );
            assert_eq!(principal.subject(), again.subject());
        }
        (Err(VerifyError::UnknownKey { .. }), Err(_)) | (Err(_), Err(_)) => {}
        (direct, through_gate) => {
            panic!("jwt::verify says {direct:?}, Gate::verify_token says {through_gate:?}")
        }
    }
}

/// `tokengate::jwks::KeySet::from_jwks` on arbitrary bytes (and `key_from_pem` on the same bytes
/// as text).
///
/// Invariants: never panics; a set it returns is non-empty, every key fits the algorithm it is
/// pinned to, no key is an HMAC secret (published sets never contribute symmetric keys), and
/// lookups by `kid` and algorithm only ever return keys that fit.
pub fn jwks_document(data: &[u8]) {
    if let Ok((set, _skipped)) = KeySet::from_jwks(data) {
        assert!(!set.is_empty(), "an Ok key set is never empty");
        for key in set.keys() {
            assert_ne!(key.kind(), KeyKind::Hmac, "a JWKS contributed a symmetric key");
            if let Some(alg) = key.alg() {
                assert!(key.kind().supports(alg), "key pinned to an algorithm its kind cannot verify");
            }
            for alg in ALGORITHMS {
                for candidate in set.candidates(key.kid(), alg) {
                    assert!(candidate.fits(alg));
                    if set.has_kids() {
                        assert_eq!(candidate.kid(), key.kid());
                    }
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(key) = KeySet::key_from_pem(text, Some("k".into()))
    {
        assert_ne!(key.kind(), KeyKind::Hmac);
    }
}

/// `tokengate::discovery::parse_metadata` and `metadata_url` on arbitrary input: the first line
/// is the configured issuer, the rest the metadata document.
///
/// Invariants: never panics; a document is only ever accepted for exactly the configured issuer.
pub fn discovery_document(data: &[u8]) {
    let (issuer, document) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"https://idp.example.com"[..], data),
    };
    let Ok(issuer) = std::str::from_utf8(issuer) else {
        return;
    };
    if let Ok(metadata) = parse_metadata(issuer, document) {
        assert_eq!(metadata.issuer, issuer, "metadata accepted for another issuer");
    }
    for kind in [MetadataKind::OpenIdConfiguration, MetadataKind::OAuthAuthorizationServer] {
        if let Ok(url) = metadata_url(issuer, kind) {
            assert!(url.contains("/.well-known/"), "{url}");
        }
    }
}

/// Route patterns against paths: `PathPattern::parse`, `NormalizedPath::new`, `matches`.
/// Input: the first line is a pattern, the rest a request path.
///
/// Invariants: never panics; a normalised path starts with `/`, has no empty, `.` or `..`
/// segment except a single trailing `/`, no raw `\`, `;`, space, control or non-ASCII byte, no
/// encoded `/`, `\`, `%` or control character, and normalising it again changes nothing (so the
/// path a rule matched is exactly the path forwarded, and a second proxy sees the same thing).
pub fn route_patterns(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, path) = text.split_once('\n').unwrap_or((text, text));
    let pattern = PathPattern::parse(pattern).ok();
    let Ok(normal) = NormalizedPath::new(path) else {
        return;
    };
    let s = normal.as_str();
    assert!(s.starts_with('/'), "{s:?}");
    let inner = s.strip_suffix('/').unwrap_or(s);
    if !inner.is_empty() {
        for segment in inner[1..].split('/') {
            assert!(!segment.is_empty() && segment != "." && segment != "..", "{path:?} -> {s:?}");
        }
    }
    assert!(s.bytes().all(|b| b.is_ascii_graphic() && b != b'\\' && b != b';'), "{path:?} -> {s:?}");
    let upper = s.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%25", "%00", "%2E"] {
        assert!(!upper.contains(bad), "{path:?} -> {s:?} keeps {bad}");
    }
    assert_eq!(normalize_path(s).as_deref(), Ok(s), "normalising is not idempotent for {path:?}");
    if let Some(pattern) = pattern {
        let again = NormalizedPath::new(s).expect("idempotent");
        assert_eq!(pattern.matches(&normal), pattern.matches(&again));
    }
}

/// The whole pipeline without a server: `Gate::authorize(method, path, headers)`.
/// Input: line 1 is the method, line 2 the raw path, every further line one `Authorization`
/// header value (so duplicates are fuzzed too).
///
/// Invariants: never panics and never waits; an admitted request carries a normalised path; a
/// protected route is only ever admitted with a principal, and a `deny` route never.
pub fn gate_request(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let Some(Ok(method)) = lines.next().map(Method::from_bytes) else {
        return;
    };
    let Some(Ok(path)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for value in lines {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(header::AUTHORIZATION, value);
        }
    }
    let gate = layer().gate();
    let decision = poll_once(gate.authorize(&method, path, &headers)).expect("authorize never waits here");
    if let Ok(authorized) = decision {
        assert_eq!(normalize_path(path).as_deref(), Ok(authorized.path.as_str()));
        match authorized.requirement.mode {
            Mode::Deny | Mode::Introspect => panic!("admitted on a {:?} route", authorized.requirement.mode),
            Mode::Local => {
                let principal = authorized.principal.expect("a local route admits only with a principal");
                for scope in authorized.requirement.scopes.iter() {
                    assert!(principal.has_scope(scope));
                }
            }
            Mode::Optional | Mode::Public => {}
        }
    }
}

/// `tokengate::introspect::judge_response` on arbitrary bytes: an RFC 7662 response body judged
/// for [`ISSUER`] and [`AUDIENCE`] at [`NOW`].
///
/// Invariants: never panics; "active" only for a JSON object whose `active` is `true`, whose
/// `exp` (if any) lies after now, whose `iss` (if any) is ours and whose `aud` (if any) names our
/// audience; scopes are reported exactly when the response has a `scope`.
pub fn introspection_response(data: &[u8]) {
    let audiences = [AUDIENCE.to_owned()];
    let Ok(verdict) = judge_response(data, ISSUER, &audiences, NOW) else {
        return;
    };
    let value: serde_json::Value = serde_json::from_slice(data).expect("a verdict comes from valid JSON");
    let object = value.as_object().expect("a verdict comes from a JSON object");
    let active = object.get("active").and_then(serde_json::Value::as_bool).expect("a boolean active");
    match verdict {
        Verdict::Inactive => {}
        Verdict::Active { members, scopes } => {
            assert!(active, "active verdict for active: false");
            assert_eq!(&members, object);
            if let Some(exp) = object.get("exp") {
                assert!(exp.as_f64().expect("a numeric exp") > NOW as f64, "active after exp");
            }
            if let Some(iss) = object.get("iss") {
                assert_eq!(iss.as_str(), Some(ISSUER), "active for another issuer");
            }
            if let Some(aud) = object.get("aud") {
                let names_ours = match aud {
                    serde_json::Value::String(a) => a == AUDIENCE,
                    serde_json::Value::Array(list) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
                    _ => false,
                };
                assert!(names_ours, "active for another audience: {aud}");
            }
            assert_eq!(scopes.is_some(), object.contains_key("scope"));
        }
    }
}

/// An environment in which every variable a configuration names is set, so resolving goes as
/// far as the file allows.
struct EveryVariableSet;

impl tokengate_gateway::config::Environment for EveryVariableSet {
    fn var(&self, name: &str) -> Option<String> {
        Some(format!("value-of-{name}-that-is-long-enough-for-a-secret"))
    }
}

/// The gateway's configuration: `tokengate_gateway::config::parse` and `resolve` on arbitrary
/// text (the seeds are real configurations).
///
/// Invariants: never panics; every refusal is a one-line message that names where it is (a key
/// path or TOML's line and column); a configuration that resolves has at least one issuer, every
/// issuer has an audience and an algorithm, and its route policy validates.
pub fn gateway_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match tokengate_gateway::config::parse(text).and_then(|file| file.resolve(&EveryVariableSet)) {
        Ok(settings) => {
            assert!(!settings.gate.issuers.is_empty(), "a configuration without an issuer resolved");
            assert_eq!(settings.gate.issuers.len(), settings.gate.issuer_names.len());
            assert!(settings.gate.policy.validate().is_ok(), "a resolved policy does not validate");
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.trim().is_empty(), "an empty configuration error");
            assert!(message.contains(':'), "the error does not say where: {message:?}");
        }
    }
}
