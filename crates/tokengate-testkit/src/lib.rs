//! An in-process OAuth2 / OpenID Connect issuer for tokengate's tests, benches and demo.
//!
//! [`Issuer`] serves discovery metadata, a JWKS and RFC 7662 introspection over real HTTP on
//! `127.0.0.1:0`, mints tokens — valid ones and deliberately broken ones, JWTs and opaque ones —
//! counts requests per endpoint and injects faults. Introspection requires client credentials
//! ([`INTROSPECTION_CLIENT_ID`] / [`INTROSPECTION_CLIENT_SECRET`] unless configured).
//! [`EchoUpstream`] is the service behind the gateway: it echoes and records every request.
//!
//! ```no_run
//! # async fn demo() {
//! use tokengate_testkit::{Algorithm, Endpoint, Fault, Issuer, KeyKind};
//!
//! let issuer = Issuer::start().await;
//! let good = issuer.token().scope("read write").sign();
//! let es256 = issuer.token().alg(Algorithm::ES256).sign();
//! let expired = issuer.token().expires_in(-60).sign();
//! let forged = issuer.token().sign_with_foreign_key();
//! let opaque = issuer.opaque_token().scope("admin").issue();
//! let logout = issuer.logout_token("my-client").claim("sid", "s-1".into()).sign();
//! issuer.revoke_token(&opaque);
//! let new_kid = issuer.rotate(KeyKind::Rsa);
//! issuer.set_fault(Endpoint::Jwks, Fault::Status(503));
//! assert_eq!(issuer.requests(Endpoint::Jwks), 0);
//! # }
//! ```
//!
//! Modules: `keys` owns key generation and the public forms of keys (JWK, PEM); `issuer` owns
//! the key set, the clock, the HTTP endpoints, counters and faults; `token` owns minting;
//! `echo` owns the echo upstream.
//!
//! Supported algorithms: RS256/384/512 and PS256/384/512 (RSA-2048 key), ES256 (P-256), EdDSA
//! (Ed25519), and HS256/384/512 through [`TokenBuilder::sign_hmac`]. ES384 is not supported: the
//! issuer has no P-384 key.
//!
//! This crate must not depend on `tokengate`: it plays the identity provider, not the client.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod echo;
mod issuer;
mod keys;
mod token;

pub use echo::{EchoUpstream, RecordedRequest};
pub use issuer::{
    DEFAULT_AUDIENCE, DEFAULT_JWKS_MAX_AGE_SECS, Endpoint, Fault, GARBAGE_BODY, INTROSPECTION_CLIENT_ID,
    INTROSPECTION_CLIENT_SECRET, Issuer, IssuerBuilder, WRONG_ISSUER,
};
pub use jsonwebtoken::Algorithm;
pub use keys::KeyKind;
pub use token::{
    BACKCHANNEL_LOGOUT_EVENT, CAEP_CREDENTIAL_CHANGE, CAEP_SESSION_REVOKED, DEFAULT_LOGOUT_TOKEN_TTL_SECS,
    DEFAULT_TOKEN_TTL_SECS, OpaqueTokenBuilder, TokenBuilder, raw_token,
};

/// Installs jsonwebtoken's aws-lc-rs crypto provider for the process, if none is installed yet.
///
/// jsonwebtoken 11 needs a process-wide provider before it signs or verifies; the issuer calls
/// this itself, and tests that verify tokens with jsonwebtoken may call it too.
pub fn install_crypto_provider() {
    // `Err` only means a provider is already installed, which is what we want.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

#[cfg(test)]
mod tests;
