//! # tokengate
//!
//! A [`tower`] middleware that checks bearer tokens in front of an API. Every request is
//! verified locally against the issuer's keys (no network call); routes can be public,
//! optional, local or introspected; failures answer exactly as RFC 6750 says.
//!
//! With feature `axum` (the example runs as a doctest then, and is skipped without it):
//!
#![cfg_attr(feature = "axum", doc = "```")]
#![cfg_attr(not(feature = "axum"), doc = "```ignore")]
//! use axum::{Router, routing::get};
//! use tokengate::{Algorithm, IssuerConfig, Principal, TokenGateLayer};
//! use tokengate::policy::{Requirement, RoutePolicy, Rule};
//!
//! # const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RoutePolicy::new()
//!     .rule(Rule::new("/health", Requirement::public())?)
//!     .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"]))?);
//!
//! let gate = TokenGateLayer::builder()
//!     .issuer(
//!         IssuerConfig::new("https://idp.example.com")
//!             .audience("https://api.example.com")
//!             .algorithms([Algorithm::RS256, Algorithm::EdDSA])
//!             .jwks(JWKS), // or .jwks_url("https://idp.example.com/jwks")
//!     )
//!     .policy(policy)
//!     .build()
//!     .await?;
//!
//! async fn whoami(principal: Principal) -> String {
//!     format!("hello {}", principal.subject().unwrap_or("?"))
//! }
//! let app: Router = Router::new().route("/whoami", get(whoami)).layer(gate);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! The pipeline, per request: normalise the path and find the route's [`Requirement`](policy::Requirement);
//! extract the token ([`extract`]); verify it ([`jwt`]): header, issuer, signature, claims;
//! check the scopes; put a [`Principal`] into the request's extensions. See `DESIGN.md`.
//!
//! Features: `aws-lc-rs` (default) or `rust-crypto` pick the signature backend (one is
//! required); `axum` adds the [`Principal`] and [`Claims`] extractors.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod claims;
pub mod clock;
mod crypto;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod gate;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod layer;
pub mod policy;
pub mod revocation;
pub mod service;
pub mod token_cache;

pub use claims::{Claims, GateContext, Principal, VerifiedBy};
pub use crypto::{backend_name, install_default_provider};
pub use error::{AuthError, ErrorRenderer, JsonErrors, Rejection};
pub use gate::{Authorized, Gate};
pub use introspect::{ClientAuth, IntrospectionConfig};
pub use jsonwebtoken::Algorithm;
pub use layer::{BuildError, IssuerConfig, TokenGateBuilder, TokenGateLayer};
pub use revocation::RevocationList;
pub use service::{NonCanonicalPath, ResponseBody, ResponseFuture, TokenGate};
