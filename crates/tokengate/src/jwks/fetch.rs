//! Fetching a document (JWKS, discovery) over HTTP with a timeout, a size cap and a clear error.

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// Default cap on a fetched key set or metadata document: 1 MiB. Real key sets are a few KB;
/// the cap stops a hostile or broken endpoint from exhausting memory.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Default connect and total timeout of a fetch: 5 s, long enough for a distant issuer and
/// short enough that start-up or a refresh does not hang on a dead one.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a document could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not valid, or not `https` (plain `http` is allowed only for loopback hosts or
    /// when explicitly enabled).
    BadUrl(String),
    /// The connection failed or timed out.
    Unreachable(String),
    /// The server answered with a status other than 200.
    Status(u16),
    /// The document is larger than the cap.
    TooLarge(usize),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::BadUrl(why) => write!(f, "bad URL: {why}"),
            FetchError::Unreachable(why) => write!(f, "unreachable: {why}"),
            FetchError::Status(s) => write!(f, "answered HTTP {s}"),
            FetchError::TooLarge(cap) => write!(f, "document larger than {cap} bytes"),
        }
    }
}

impl std::error::Error for FetchError {}

/// Checks that `url` may be fetched: `https`, or `http` to a loopback host, or `http` when
/// `allow_http` is set.
pub(crate) fn check_url(url: &str, allow_http: bool) -> Result<reqwest::Url, FetchError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| FetchError::BadUrl(format!("{url:?}: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_http || is_loopback(&parsed) => Ok(parsed),
        "http" => Err(FetchError::BadUrl(format!(
            "{url:?} is plain http; use https, or allow http explicitly for non-loopback hosts"
        ))),
        other => Err(FetchError::BadUrl(format!("{url:?}: scheme {other:?} is not http(s)"))),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The client tokengate builds when the user gives none: rustls, timeouts, no redirects to
/// other schemes, no proxy surprises beyond the environment's.
pub(crate) fn default_client(timeout: Duration) -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| FetchError::Unreachable(format!("cannot build HTTP client: {e}")))
}

/// GETs `url` and reads at most `max_bytes` of the body.
pub(crate) async fn fetch_document(
    client: &reqwest::Client,
    url: &reqwest::Url,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    match fetch_conditional(client, url, None, max_bytes, timeout).await? {
        Conditional::Document { body, .. } => Ok(body),
        // Without an ETag sent, a 304 is not a valid answer.
        Conditional::NotModified { .. } => Err(FetchError::Status(304)),
    }
}

/// A short description of a transport error without the URL's query (which may carry
/// credentials in badly configured deployments).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        let mut h = http::HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(http::header::CACHE_CONTROL, "public, max-age=600".parse().unwrap());
        assert_eq!(max_age(&h), Some(600));
        h.insert(http::header::CACHE_CONTROL, "no-cache".parse().unwrap());
        assert_eq!(max_age(&h), Some(0));
    }

    #[test]
    fn plain_http_only_for_loopback_or_when_allowed() {
        assert!(check_url("https://idp.example.com/jwks", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/jwks", false).is_ok());
        assert!(check_url("http://localhost:9/jwks", false).is_ok());
        assert!(check_url("http://[::1]:9/jwks", false).is_ok());
        assert!(check_url("http://idp.example.com/jwks", false).is_err());
        assert!(check_url("http://idp.example.com/jwks", true).is_ok());
        assert!(check_url("file:///etc/passwd", true).is_err());
        assert!(check_url("not a url", true).is_err());
    }
}

/// The answer to a conditional fetch.
#[derive(Debug)]
pub(crate) enum Conditional {
    /// 304: the document has not changed since the `ETag` we sent.
    NotModified { max_age: Option<u64> },
    /// 200 with a new document.
    Document { body: Bytes, etag: Option<String>, max_age: Option<u64> },
}

/// GETs `url` with `If-None-Match: etag` when we have one.
pub(crate) async fn fetch_conditional(
    client: &reqwest::Client,
    url: &reqwest::Url,
    etag: Option<&str>,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Conditional, FetchError> {
    let mut request =
        client.get(url.clone()).header(http::header::ACCEPT, "application/json").timeout(timeout);
    if let Some(etag) = etag {
        request = request.header(http::header::IF_NONE_MATCH, etag);
    }
    let mut response = request.send().await.map_err(|e| FetchError::Unreachable(describe(&e)))?;
    let max_age = max_age(response.headers());
    if response.status() == reqwest::StatusCode::NOT_MODIFIED && etag.is_some() {
        return Ok(Conditional::NotModified { max_age });
    }
    if response.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    let etag = response
        .headers()
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 256)
        .map(str::to_owned);
    let body = read_capped(&mut response, max_bytes).await?;
    Ok(Conditional::Document { body, etag, max_age })
}

/// Reads a response body, refusing it as soon as it exceeds `max_bytes`.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    max_bytes: usize,
) -> Result<Bytes, FetchError> {
    if response.content_length().is_some_and(|len| len > max_bytes as u64) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Unreachable(describe(&e)))? {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `Cache-Control: max-age` in seconds; `no-cache`/`no-store` count as 0.
pub(crate) fn max_age(headers: &http::HeaderMap) -> Option<u64> {
    let mut found = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-cache" || lower == "no-store" {
                return Some(0);
            }
            if let Some(secs) = lower.strip_prefix("max-age=") {
                found = secs.trim_matches('"').parse::<u64>().ok().or(found);
            }
        }
    }
    found
}
