//! Finding the token: the `Authorization: Bearer` header (RFC 6750 §2.1).
//!
//! Exactly one `Authorization` header may be present. A header with another scheme (`Basic`,
//! `DPoP`, …) is no bearer token, so the request is treated as carrying none (401 with a bare
//! challenge). A `Bearer` header whose credentials are empty or not `b64token` syntax is
//! malformed (400). A token over the size cap is refused before anything decodes it (401).
//! Tokens in the query string (RFC 6750 §2.3) are never read: they end up in access logs.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::error::{AuthError, Rejection};

/// Default cap on a token's length: 8 KiB, the common header-size budget of proxies; real
/// access tokens are 1–3 KB.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Reads the bearer token from `headers`.
///
/// Returns `Ok(None)` when no bearer token was sent, `Ok(Some(token))` for a well-formed one,
/// and an error for a malformed, duplicated or oversized one.
pub fn bearer_token(headers: &HeaderMap, max_len: usize) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest("more than one Authorization header"));
    }
    parse_authorization(value.as_bytes(), max_len)
}

/// Parses one `Authorization` header value (see [`bearer_token`]).
pub fn parse_authorization(value: &[u8], max_len: usize) -> Result<Option<&str>, AuthError> {
    const MALFORMED: AuthError = AuthError::InvalidRequest("malformed Authorization header");
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if scheme.is_empty() || !scheme.iter().all(|b| is_tchar(*b)) {
        return Err(MALFORMED);
    }
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another authentication scheme: not ours to judge, and no bearer token was sent.
        return Ok(None);
    }
    // RFC 9110 §11.4: one or more spaces separate the scheme from the credentials.
    let credentials = trim_leading_spaces(rest);
    if credentials.is_empty() {
        return Err(MALFORMED);
    }
    if credentials.len() > max_len {
        return Err(AuthError::InvalidToken(Rejection::TooLarge));
    }
    if !is_b64token(credentials) {
        return Err(MALFORMED);
    }
    // b64token is ASCII, so this cannot fail; map it to "malformed" rather than unwrap anyway.
    std::str::from_utf8(credentials).map(Some).map_err(|_| MALFORMED)
}

fn trim_leading_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = s {
        s = rest;
    }
    s
}

/// RFC 9110 `tchar`, the characters of an authentication scheme name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The bytes of a `b64token` body, as a table: the check runs over every byte of every token,
/// and a lookup is several times cheaper than comparing each byte with the set (it showed as
/// a quarter of a cache hit's time in a profile).
const B64TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// RFC 6750 §2.1 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &[u8]) -> bool {
    let body_end = s.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    // `fold` with `&` rather than `all`: no early exit, so the loop vectorises; a token is
    // rarely malformed, and never long.
    body_end > 0 && s[..body_end].iter().fold(true, |ok, &b| ok & B64TOKEN_BYTES[b as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(v: &str) -> Result<Option<&str>, AuthError> {
        parse_authorization(v.as_bytes(), 64)
    }

    #[test]
    fn accepts_bearer_in_any_case() {
        assert_eq!(parse("Bearer abc.def.ghi"), Ok(Some("abc.def.ghi")));
        assert_eq!(parse("bearer abc"), Ok(Some("abc")));
        assert_eq!(parse("BEARER  abc=="), Ok(Some("abc==")));
    }

    #[test]
    fn other_schemes_are_no_token() {
        assert_eq!(parse("Basic dXNlcjpwYXNz"), Ok(None));
        assert_eq!(parse("DPoP abc"), Ok(None));
    }

    #[test]
    fn malformed_values_are_invalid_request() {
        for v in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer =",
            "Bearer a=b",
            " Bearer a",
            "Bearer\ta",
            "Bearer \"a\"",
        ] {
            assert!(matches!(parse(v), Err(AuthError::InvalidRequest(_))), "{v:?}");
        }
    }

    #[test]
    fn oversized_token_is_invalid_token() {
        let v = format!("Bearer {}", "a".repeat(65));
        assert_eq!(parse(&v), Err(AuthError::InvalidToken(Rejection::TooLarge)));
    }

    #[test]
    fn duplicate_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert!(matches!(bearer_token(&h, 64), Err(AuthError::InvalidRequest(_))));
        assert_eq!(bearer_token(&HeaderMap::new(), 64), Ok(None));
    }
}
