//! What more than one bench needs: the floor every verification is compared with, and a
//! layer for the testkit's issuer.

// Each bench uses its own part of this module.
#![allow(dead_code)]

use aws_lc::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokengate::policy::RoutePolicy;
use tokengate::{Algorithm, IssuerConfig, TokenGateLayer};
use tokengate_testkit::{Issuer, KeyKind};

/// The testkit's issuer, started on `runtime`, and a layer that verifies its tokens signed with
/// `algorithms` against its key set (given inline: nothing is fetched), under `policy`.
pub fn issuer_and_layer(
    runtime: &tokio::runtime::Runtime,
    algorithms: &[Algorithm],
    policy: RoutePolicy,
) -> (Issuer, TokenGateLayer) {
    runtime.block_on(async {
        let issuer = Issuer::start().await;
        let layer = TokenGateLayer::builder()
            .issuer(
                IssuerConfig::new(issuer.url())
                    .audience(issuer.audience())
                    .algorithms(algorithms.iter().copied())
                    .jwks(issuer.jwks().to_string()),
            )
            .policy(policy)
            .build()
            .await
            .unwrap();
        (issuer, layer)
    })
}

/// The issuer's public key for `kind`, pre-parsed by aws-lc-rs for `alg`.
pub fn raw_key(issuer: &Issuer, kind: KeyKind, alg: Algorithm) -> ParsedPublicKey {
    let jwks = issuer.jwks();
    let kid = issuer.kid(kind);
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    let b64 = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    match alg {
        Algorithm::RS256 => RsaPublicKeyComponents { n: b64("n"), e: b64("e") }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .unwrap(),
        Algorithm::ES256 => {
            let mut point = vec![4u8];
            point.extend(b64("x"));
            point.extend(b64("y"));
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).unwrap()
        }
        Algorithm::EdDSA => ParsedPublicKey::new(&signature::ED25519, b64("x")).unwrap(),
        other => panic!("no raw key for {other:?}"),
    }
}
