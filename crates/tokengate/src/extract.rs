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

/// Bytes classified at once. The checks below run over every byte of every token; written as
/// arithmetic on a fixed-size block, each compiles to a few SIMD compares per block. (A
/// lookup table, the previous form, cannot be vectorised: ≈ 3 instructions a byte, 2 000 for
/// a 700-byte token, as much as the rest of a cache hit's bookkeeping.)
const BLOCK: usize = 32;

/// RFC 6750 §2.1: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", the bytes of a
/// `b64token` before its padding. Branch-free, so that [`BLOCK`]s of it vectorise.
#[inline(always)]
fn is_b64token_byte(b: u8) -> bool {
    // `| 0x20` folds upper case onto lower case and moves no other byte into `a..=z`.
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    // `-`, `.`, `/` and the digits are one run of ASCII, 0x2d..=0x39.
    let dash_dot_slash_digit = b.wrapping_sub(b'-') < 13;
    letter | dash_dot_slash_digit | (b == b'+') | (b == b'_') | (b == b'~')
}

/// RFC 6750 §2.1 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &[u8]) -> bool {
    let body_end = s.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let body = &s[..body_end];
    let mut blocks = body.chunks_exact(BLOCK);
    // `fold` with `&` rather than `all` inside a block: no early exit, so the block vectorises.
    let blocks_ok = blocks.all(|block| block.iter().fold(true, |ok, &b| ok & is_b64token_byte(b)));
    !body.is_empty() && blocks_ok && blocks.remainder().iter().all(|&b| is_b64token_byte(b))
}

/// Whether `token` has the shape of a JWS in compact form: three parts, so exactly two `.`
/// (RFC 7515 §7.1). Anything else is an opaque token, which only its issuer can vouch for.
pub fn is_compact_jws(token: &str) -> bool {
    count_dots(token) == 2
}

/// The number of `.` in `token`, counted in [`BLOCK`]s like the syntax check, because it too
/// runs over every token.
fn count_dots(token: &str) -> usize {
    let mut blocks = token.as_bytes().chunks_exact(BLOCK);
    // A block has at most 32 dots: its count fits a `u8`, which keeps the lanes narrow.
    let in_blocks: usize =
        (&mut blocks).map(|block| usize::from(block.iter().fold(0u8, |n, &b| n + u8::from(b == b'.')))).sum();
    in_blocks + blocks.remainder().iter().filter(|&&b| b == b'.').count()
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

    #[test]
    fn the_b64token_bytes_are_exactly_the_rfcs() {
        for b in 0..=255u8 {
            let rfc = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_b64token_byte(b), rfc, "byte {b:#04x}");
        }
        // A bad byte is found at every position, inside a block or in the remainder.
        let good = "aZ09-._~+/".repeat(10);
        for at in 0..good.len() {
            for bad in [b' ', b',', b'"', b'=', 0x80, 0xff, b'@', b'[', b'`', b'{'] {
                if bad == b'=' && at == good.len() - 1 {
                    continue; // padding, at the end only
                }
                let mut token = good.clone().into_bytes();
                token[at] = bad;
                assert!(!is_b64token(&token), "{bad:#04x} at {at}");
            }
        }
        assert!(is_b64token(good.as_bytes()));
        assert!(is_b64token(format!("{good}==").as_bytes()));
        assert!(!is_b64token(b"=="));
    }

    #[test]
    fn dots_are_counted_across_blocks() {
        for len in [0, 1, 31, 32, 33, 64, 95, 700] {
            let mut token = vec![b'a'; len];
            let mut expected = 0;
            for at in (0..len).step_by(7) {
                token[at] = b'.';
                expected += 1;
            }
            let token = String::from_utf8(token).expect("ASCII");
            assert_eq!(count_dots(&token), expected, "{len}");
        }
        assert_eq!(count_dots(&".".repeat(64)), 64);
    }
}
