//! The RFC 7662 call: `POST token=…&token_type_hint=access_token`, client authentication,
//! timeout, size cap, and the strict reading of the answer.
//!
//! Only a 200 with a JSON object whose `active` is a boolean is a verdict. Anything else — a
//! timeout, a refused connection, another status, a body that is not such an object — is an
//! [`Outage`]: the gateway answers 503 and never caches it, because "the issuer could not say"
//! is not "the token is bad".
//!
//! Redirects are never followed: a 3xx would make the HTTP client re-send the token (and, with
//! `client_secret_post`, the client secret) to wherever the answer points. The client tokengate
//! builds for introspection ([`http_client`]) has redirects off, so a 3xx is an outage; a
//! caller-supplied client cannot be constrained per request (reqwest sets the redirect policy
//! per client only), so an answer that arrives from any URL but the endpoint is refused too.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::jwks::fetch::{self, FetchError};

/// How tokengate authenticates to the introspection endpoint (RFC 7662 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1). The default.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Why introspection could not give a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outage {
    /// Connection refused, reset, or timed out.
    Unreachable(String),
    /// A status other than 200.
    Status(u16),
    /// A body that is not a JSON object with a boolean `active`, or too large.
    Invalid(String),
    /// The circuit breaker is open; retry after this many seconds.
    BreakerOpen(u64),
}

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outage::Unreachable(why) => write!(f, "introspection endpoint unreachable: {why}"),
            Outage::Status(s) => write!(f, "introspection endpoint answered HTTP {s}"),
            Outage::Invalid(why) => write!(f, "invalid introspection response: {why}"),
            Outage::BreakerOpen(secs) => {
                write!(f, "introspection paused by the circuit breaker for {secs} s")
            }
        }
    }
}

impl std::error::Error for Outage {}

/// The answer of the endpoint: a JSON object with a boolean `active`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) active: bool,
    pub(crate) members: Map<String, Value>,
}

/// The HTTP client for introspection calls: redirects off (see the module doc), connect
/// timeout as the call's.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Calls the endpoint once. `secret` was checked when the layer was built.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn call(
    client: &reqwest::Client,
    endpoint: &reqwest::Url,
    auth: ClientAuth,
    client_id: &str,
    secret: &str,
    token: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Answer, Outage> {
    let mut form: Vec<(&str, &str)> = vec![("token", token), ("token_type_hint", "access_token")];
    let mut request =
        client.post(endpoint.clone()).timeout(timeout).header(http::header::ACCEPT, "application/json");
    match auth {
        ClientAuth::ClientSecretBasic => {
            request = request.header(http::header::AUTHORIZATION, basic_credentials(client_id, secret));
        }
        ClientAuth::ClientSecretPost => {
            form.push(("client_id", client_id));
            form.push(("client_secret", secret));
        }
    }
    let mut response =
        request.form(&form).send().await.map_err(|e| Outage::Unreachable(fetch::describe(&e)))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(Outage::Status(response.status().as_u16()));
    }
    if response.url() != endpoint {
        // Only a caller-supplied client follows redirects; whoever answered is not the endpoint.
        return Err(Outage::Invalid("the answer came through a redirect".into()));
    }
    let body = fetch::read_capped(&mut response, max_bytes).await.map_err(|e| match e {
        FetchError::TooLarge(cap) => Outage::Invalid(format!("larger than {cap} bytes")),
        other => Outage::Unreachable(other.to_string()),
    })?;
    parse_answer(&body)
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` — RFC 6749 §2.3.1 encodes both with
/// `application/x-www-form-urlencoded` before Base64, which many clients forget.
pub(crate) fn basic_credentials(client_id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(client_id), encode(secret))))
}

/// Reads an introspection response strictly.
pub(crate) fn parse_answer(body: &[u8]) -> Result<Answer, Outage> {
    // Strict like a token's claims: a duplicate `active` (or any member), or a member name
    // serde_json reserves, would let the parser, not the issuer, decide what the answer says.
    let members = crate::jwt::strict_object(body)
        .map_err(|_| Outage::Invalid("not a JSON object with unique member names".into()))?;
    match members.get("active") {
        Some(Value::Bool(active)) => Ok(Answer { active: *active, members }),
        _ => Err(Outage::Invalid("\"active\" is missing or not a boolean".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        // "gate way" → "gate+way", "s:e/c" → "s%3Ae%2Fc"
        let header = basic_credentials("gate way", "s:e/c");
        let decoded = STANDARD.decode(header.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "gate+way:s%3Ae%2Fc");
    }

    #[test]
    fn only_an_object_with_boolean_active_is_an_answer() {
        assert!(parse_answer(br#"{"active":true,"scope":"a"}"#).unwrap().active);
        assert!(!parse_answer(br#"{"active":false}"#).unwrap().active);
        for bad in [
            &br#"{"active":"true"}"#[..],
            br#"{}"#,
            b"[]",
            b"null",
            b"not json",
            br#"{"active":1}"#,
            br#"{"active":true,"active":false}"#,
            br#"{"active":false,"scope":"a","scope":"admin"}"#,
            br#"{"$serde_json::private::RawValue":"{\"active\":true}"}"#,
            br#"{"active":true,"role":{"$serde_json::private::RawValue":"\"admin\""}}"#,
        ] {
            assert!(
                matches!(parse_answer(bad), Err(Outage::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
