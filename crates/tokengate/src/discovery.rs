//! Authorization-server metadata: OpenID Connect Discovery 1.0 and RFC 8414.
//!
//! The metadata document tells tokengate where an issuer's keys (`jwks_uri`) and introspection
//! endpoint live. Its `issuer` must equal the configured issuer byte for byte (OpenID Connect
//! Discovery §4.3, RFC 8414 §3.3); anything else is refused, because a document that vouches
//! for another issuer could hand us another issuer's keys.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::jwks::fetch::{self, FetchError};

/// Which well-known document to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataKind {
    /// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
    OpenIdConfiguration,
    /// `{origin}/.well-known/oauth-authorization-server{path}` (RFC 8414 §3).
    OAuthAuthorizationServer,
}

/// The metadata members tokengate uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProviderMetadata {
    /// The issuer identifier; equal to the configured one.
    pub issuer: String,
    /// Where the issuer publishes its JWKS.
    pub jwks_uri: Option<String>,
    /// The RFC 7662 introspection endpoint, if any.
    pub introspection_endpoint: Option<String>,
}

/// Why metadata could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The document could not be fetched.
    Fetch(FetchError),
    /// The document is not a metadata JSON object.
    Invalid(String),
    /// The document's `issuer` is not the configured issuer.
    IssuerMismatch {
        /// The issuer the document names.
        found: String,
    },
    /// The document has no `jwks_uri`.
    NoJwksUri,
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Fetch(e) => write!(f, "fetching metadata: {e}"),
            DiscoveryError::Invalid(why) => write!(f, "invalid metadata: {why}"),
            DiscoveryError::IssuerMismatch { found } => {
                write!(f, "the metadata names issuer {found:?}, not the configured one; refused")
            }
            DiscoveryError::NoJwksUri => f.write_str("the metadata has no jwks_uri"),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// The well-known URL of `kind` for `issuer`.
pub fn metadata_url(issuer: &str, kind: MetadataKind) -> Result<String, DiscoveryError> {
    let parsed = reqwest::Url::parse(issuer)
        .map_err(|e| DiscoveryError::Invalid(format!("issuer {issuer:?} is not a URL: {e}")))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(DiscoveryError::Invalid("an issuer identifier has no query or fragment".into()));
    }
    Ok(match kind {
        MetadataKind::OpenIdConfiguration => {
            format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
        }
        MetadataKind::OAuthAuthorizationServer => {
            let path = parsed.path().trim_end_matches('/');
            let origin = parsed.origin().ascii_serialization();
            format!("{origin}/.well-known/oauth-authorization-server{path}")
        }
    })
}

/// Parses a metadata document and checks its `issuer`.
pub fn parse_metadata(issuer: &str, document: &[u8]) -> Result<ProviderMetadata, DiscoveryError> {
    let metadata: ProviderMetadata =
        serde_json::from_slice(document).map_err(|e| DiscoveryError::Invalid(e.to_string()))?;
    if metadata.issuer != issuer {
        return Err(DiscoveryError::IssuerMismatch { found: metadata.issuer });
    }
    Ok(metadata)
}

/// Fetches the issuer's metadata: OpenID Connect discovery first, RFC 8414 when the first
/// answers 404. A mismatching `issuer` is final: there is no fallback from a refusal. Every
/// redirect hop, and the URL the document is finally served from, must pass the same
/// https-or-loopback (or `allow_http`) rule as the first URL.
pub async fn discover(
    client: &reqwest::Client,
    issuer: &str,
    allow_http: bool,
    max_bytes: usize,
    timeout: Duration,
) -> Result<ProviderMetadata, DiscoveryError> {
    let mut last = None;
    for kind in [MetadataKind::OpenIdConfiguration, MetadataKind::OAuthAuthorizationServer] {
        let url =
            fetch::check_url(&metadata_url(issuer, kind)?, allow_http).map_err(DiscoveryError::Fetch)?;
        let limits = fetch::FetchLimits { max_bytes, timeout, allow_http };
        match fetch::fetch_document(client, &url, &limits).await {
            Ok(body) => return parse_metadata(issuer, &body),
            Err(FetchError::Status(404)) => last = Some(DiscoveryError::Fetch(FetchError::Status(404))),
            Err(e) => return Err(DiscoveryError::Fetch(e)),
        }
    }
    Err(last.unwrap_or(DiscoveryError::NoJwksUri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls() {
        let oidc = MetadataKind::OpenIdConfiguration;
        let oauth = MetadataKind::OAuthAuthorizationServer;
        assert_eq!(
            metadata_url("https://idp.example.com", oidc).unwrap(),
            "https://idp.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            metadata_url("https://idp.example.com/tenant/", oidc).unwrap(),
            "https://idp.example.com/tenant/.well-known/openid-configuration"
        );
        assert_eq!(
            metadata_url("https://idp.example.com/tenant", oauth).unwrap(),
            "https://idp.example.com/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(
            metadata_url("https://idp.example.com", oauth).unwrap(),
            "https://idp.example.com/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn issuer_must_match_byte_for_byte() {
        let doc = br#"{"issuer":"https://idp.example.com/","jwks_uri":"https://idp.example.com/jwks"}"#;
        assert!(matches!(
            parse_metadata("https://idp.example.com", doc),
            Err(DiscoveryError::IssuerMismatch { .. })
        ));
        assert!(parse_metadata("https://idp.example.com/", doc).is_ok());
        assert!(matches!(parse_metadata("https://idp.example.com/", b"[]"), Err(DiscoveryError::Invalid(_))));
    }
}
