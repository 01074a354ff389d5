//! The fixed world the fuzz targets run in: two issuers with keys that never change, a route
//! policy, a clock stopped at [`NOW`], and a tiny executor for the gate's async API.
//!
//! Shared, through `#[path]`, with the workspace test `tests/tests/fuzz_corpus.rs`, which replays
//! every corpus in CI: keep it free of anything the test crate lacks (libFuzzer above all).
//!
//! The keys are the public half of `fixtures/jwks.json`, written by
//! `cargo run --example make_seeds` together with the seed tokens that verify against them, so a
//! corpus entry that is a valid token really is accepted and mutations start from the accepting
//! path, not only from the many ways to fail early.

use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use tokengate::clock::ManualClock;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, IssuerConfig, TokenGateLayer};

/// The time every target runs at: 2023-11-14T22:13:20Z (seed tokens are valid at it).
pub const NOW: i64 = 1_700_000_000;

/// The asymmetric issuer (keys in `fixtures/jwks.json`).
pub const ISSUER: &str = "https://idp.fuzz.test";

/// The HMAC issuer.
pub const HMAC_ISSUER: &str = "https://hmac.fuzz.test";

/// The audience both issuers accept.
pub const AUDIENCE: &str = "https://api.example.com";

/// The HMAC issuer's secret: 44 bytes, above HS256's 32-byte minimum. Not a secret: fuzz only.
pub const HMAC_SECRET: &[u8] = b"tokengate-fuzz-hmac-secret-not-for-any-real-use";

/// The public JWKS of [`ISSUER`]: RSA-2048 (`rsa-1`, RS256), P-256 (`ec-1`), Ed25519 (`ed-1`).
pub const JWKS: &str = include_str!("../fixtures/jwks.json");

/// The token size cap the targets use (the library default).
pub const MAX_TOKEN_BYTES: usize = tokengate::extract::DEFAULT_MAX_TOKEN_BYTES;

/// The route policy of [`layer`]: every mode, a scope, a parameter, a deny default.
pub fn policy() -> RoutePolicy {
    let rule = |pattern: &str, requirement| Rule::new(pattern, requirement).expect("a valid pattern");
    RoutePolicy::new()
        .rule(rule("/health", Requirement::public()))
        .rule(rule("/optional/*", Requirement::optional()))
        .rule(rule("/admin/*", Requirement::local().with_scopes(["admin"])))
        .rule(rule("/users/{id}/keys", Requirement::local().with_scopes(["read"])))
        .rule(rule("/introspected/*", Requirement::introspect()))
        .rule(rule("/api/*", Requirement::local()))
        .default_requirement(Requirement::deny())
}

/// The layer, built once per process.
pub fn layer() -> &'static TokenGateLayer {
    static LAYER: OnceLock<TokenGateLayer> = OnceLock::new();
    LAYER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            TokenGateLayer::builder()
                .issuer(
                    IssuerConfig::new(ISSUER)
                        .audience(AUDIENCE)
                        .algorithms([Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA])
                        .jwks(JWKS),
                )
                .issuer(
                    IssuerConfig::new(HMAC_ISSUER)
                        .audience(AUDIENCE)
                        .algorithms([Algorithm::HS256])
                        .hmac_secret(HMAC_SECRET),
                )
                .clock(ManualClock::new(NOW))
                .policy(policy())
                .build()
                .await
                .expect("the fuzz layer builds")
        })
    })
}

/// Polls `future` once with a no-op waker. The gate's futures never really wait in this world
/// (keys are static, so an unknown `kid` has no refresh to wait for, and no introspection is
/// configured); `None` would mean one did, which the targets treat as a bug.
pub fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Whether every dot-separated segment of `token` is canonical unpadded base64url: decoding and
/// re-encoding gives the same text. An accepted token must be, or one token would have several
/// spellings (distinct cache keys, distinct revocation entries, same signature).
pub fn is_canonical(token: &str) -> bool {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    token.split('.').all(|segment| {
        URL_SAFE_NO_PAD.decode(segment).is_ok_and(|bytes| URL_SAFE_NO_PAD.encode(bytes) == segment)
    })
}
