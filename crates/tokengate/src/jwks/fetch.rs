//! Fetching a document (JWKS, discovery) over HTTP with a timeout, a size cap and a clear error.

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// Default cap on a fetched key set or metadata document: 1 MiB. Real key sets are a few KB;
/// the cap stops a hostile or broken endpoint from exhausting memory.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Default total timeout of a fetch (connect, request, and reading the body): 5 s, long
/// enough for a distant issuer and short enough that start-up or a refresh does not hang on a
/// dead one.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Default timeout of establishing the connection (TCP and TLS) of a fetch: 5 s. A TCP
/// handshake that has not completed by then is, in practice, to a host that is down or
/// filtered (SYN retries are spaced 1 s, 2 s, 4 s…); giving up lets the retry with backoff
/// start sooner. Deployments on slow links can raise it, ones on a LAN can lower it.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most redirects a fetch follows: 3, reqwest's own habit for APIs and enough for an
/// `http`→`https` or a vanity-domain hop; a longer chain is a misconfiguration or a trap.
pub const MAX_REDIRECTS: usize = 3;

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
    /// A redirect was not followed: too many hops, or to a URL the `check_url` rule refuses
    /// (plain `http` to a non-loopback host without `allow_http`, or another scheme).
    Redirect(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::BadUrl(why) => write!(f, "bad URL: {why}"),
            FetchError::Unreachable(why) => write!(f, "unreachable: {why}"),
            FetchError::Status(s) => write!(f, "answered HTTP {s}"),
            FetchError::TooLarge(cap) => write!(f, "document larger than {cap} bytes"),
            FetchError::Redirect(why) => write!(f, "redirect refused: {why}"),
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

/// Why the redirect policy stopped a redirect; found again in the error's source chain by
/// [`describe_redirect`]. Carries no URL: a query string may hold credentials.
#[derive(Debug)]
struct RedirectRefused(String);

impl fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// A redirect policy that applies [`check_url`] to every hop, not only to the first URL, and
/// follows at most [`MAX_REDIRECTS`]. Without it an `https` (or loopback) JWKS URL could
/// redirect to plain `http` on another host and hand us keys anyone on the path could forge.
/// The hop is refused before any connection to it is made.
pub(crate) fn redirect_policy(allow_http: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        // `previous` starts with the original URL, so it holds one URL per hop already taken.
        if attempt.previous().len() > MAX_REDIRECTS {
            let why = format!("more than {MAX_REDIRECTS} redirects");
            return attempt.error(RedirectRefused(why));
        }
        match check_url(attempt.url().as_str(), allow_http) {
            Ok(_) => attempt.follow(),
            Err(_) => {
                let scheme = attempt.url().scheme().to_owned();
                let why = if scheme == "http" {
                    "to plain http on a non-loopback host (use https, or allow http explicitly)".to_owned()
                } else {
                    format!("to a URL with scheme {scheme:?}")
                };
                attempt.error(RedirectRefused(why))
            }
        }
    })
}

/// The client tokengate builds for an issuer when the user gives none: rustls, a connect
/// timeout and a total timeout, and the [`redirect_policy`] for `allow_http`.
pub(crate) fn default_client(
    connect_timeout: Duration,
    timeout: Duration,
    allow_http: bool,
) -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .redirect(redirect_policy(allow_http))
        .build()
        .map_err(|e| FetchError::Unreachable(format!("cannot build HTTP client: {e}")))
}

/// What bounds one fetch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchLimits {
    /// The largest body accepted.
    pub(crate) max_bytes: usize,
    /// The total timeout of the request.
    pub(crate) timeout: Duration,
    /// Whether plain `http` to non-loopback hosts is allowed (see [`check_url`]).
    pub(crate) allow_http: bool,
}

/// GETs `url` and reads at most `limits.max_bytes` of the body.
pub(crate) async fn fetch_document(
    client: &reqwest::Client,
    url: &reqwest::Url,
    limits: &FetchLimits,
) -> Result<Bytes, FetchError> {
    match fetch_conditional(client, url, None, limits).await? {
        Conditional::Document { body, .. } => Ok(body),
        // Without an ETag sent, a 304 is not a valid answer.
        Conditional::NotModified { .. } => Err(FetchError::Status(304)),
    }
}

/// A short description of a transport error without the URL's query (which may carry
/// credentials in badly configured deployments).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() && e.is_timeout() {
        "connect timed out".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read".into()
    } else {
        "request failed".into()
    }
}

/// The reason [`redirect_policy`] gave, if `e` is a refused redirect.
fn describe_redirect(e: &reqwest::Error) -> Option<String> {
    if !e.is_redirect() {
        return None;
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<RedirectRefused>() {
            return Some(refused.0.clone());
        }
        source = err.source();
    }
    Some("the redirect could not be followed".into())
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
    limits: &FetchLimits,
) -> Result<Conditional, FetchError> {
    let FetchLimits { max_bytes, timeout, allow_http } = *limits;
    let mut request =
        client.get(url.clone()).header(http::header::ACCEPT, "application/json").timeout(timeout);
    if let Some(etag) = etag {
        request = request.header(http::header::IF_NONE_MATCH, etag);
    }
    let mut response = request.send().await.map_err(|e| match describe_redirect(&e) {
        Some(why) => FetchError::Redirect(why),
        None => FetchError::Unreachable(describe(&e)),
    })?;
    // A client passed in by the user may follow redirects by its own rules: whatever it did,
    // a document that was finally served from a URL we would refuse is refused.
    if response.url() != url && check_url(response.url().as_str(), allow_http).is_err() {
        return Err(FetchError::Redirect(
            "the document was served from a URL that is not https (nor loopback http)".into(),
        ));
    }
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
