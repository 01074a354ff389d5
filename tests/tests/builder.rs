//! The builder refuses configurations that are unsafe or could never accept a token, and its
//! error names the issuer at fault.

use std::time::Duration;

use tokengate::{Algorithm, BuildError, IssuerConfig, TokenGateBuilder, TokenGateLayer};
use tokengate_testkit::{Endpoint, Fault, Issuer, KeyKind};
use tokengate_tests::{bare_issuer_config, client, issuer_config};

async fn build(builder: TokenGateBuilder) -> Result<TokenGateLayer, BuildError> {
    builder.http_client(client()).build().await
}

/// Asserts the build fails with a message that names `issuer` and contains `why`.
#[track_caller]
fn assert_refused(result: Result<TokenGateLayer, BuildError>, issuer: &str, why: &str) {
    let error = match result {
        Ok(layer) => panic!("the builder should refuse this configuration, built {layer:?}"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains(issuer), "the error should name the issuer {issuer:?}: {error}");
    assert!(error.contains(why), "the error should say {why:?}: {error}");
}

#[tokio::test]
async fn a_sound_configuration_builds() {
    let issuer = Issuer::start().await;
    let layer = build(TokenGateBuilder::default().issuer(issuer_config(&issuer))).await;
    assert!(layer.is_ok(), "{layer:?}");
    assert_eq!(issuer.requests(Endpoint::Jwks), 1, "the JWKS is fetched once at build time");
}

#[tokio::test]
async fn refuses_an_issuer_without_audiences() {
    let issuer = Issuer::start().await;
    let config = IssuerConfig::new(issuer.url()).algorithms([Algorithm::RS256]).jwks_url(issuer.jwks_uri());
    assert_refused(build(TokenGateBuilder::default().issuer(config)).await, &issuer.url(), "no audiences");
    let config = issuer_config(&issuer).audience("");
    assert_refused(build(TokenGateBuilder::default().issuer(config)).await, &issuer.url(), "no audiences");
}

#[tokio::test]
async fn refuses_an_empty_algorithm_list() {
    let issuer = Issuer::start().await;
    let config = issuer_config(&issuer).algorithms([]);
    assert_refused(build(TokenGateBuilder::default().issuer(config)).await, &issuer.url(), "no algorithms");
}

#[tokio::test]
async fn refuses_hmac_algorithms_on_an_issuer_with_public_keys() {
    let issuer = Issuer::start().await;
    for config in [
        issuer_config(&issuer).algorithms([Algorithm::RS256, Algorithm::HS256]),
        bare_issuer_config(&issuer).algorithms([Algorithm::HS256]).jwks(issuer.jwks().to_string()),
        bare_issuer_config(&issuer)
            .algorithms([Algorithm::HS512])
            .pem(issuer.public_key_pem(KeyKind::Rsa), None),
    ] {
        assert_refused(
            build(TokenGateBuilder::default().issuer(config)).await,
            &issuer.url(),
            "algorithm confusion",
        );
    }
    // An HMAC secret next to public keys is refused as well.
    let config = issuer_config(&issuer).hmac_secret([1u8; 32]);
    assert_refused(
        build(TokenGateBuilder::default().issuer(config)).await,
        &issuer.url(),
        "mixes an HMAC secret",
    );
}

#[tokio::test]
async fn refuses_a_16_byte_hmac_secret() {
    let issuer = Issuer::start().await;
    let config = IssuerConfig::new(issuer.url())
        .audience(issuer.audience())
        .algorithms([Algorithm::HS256])
        .hmac_secret([7u8; 16]);
    assert_refused(build(TokenGateBuilder::default().issuer(config)).await, &issuer.url(), "HMAC secret");
    // 32 bytes is enough for HS256, not for HS512.
    let config = IssuerConfig::new(issuer.url())
        .audience(issuer.audience())
        .algorithms([Algorithm::HS512])
        .hmac_secret([7u8; 32]);
    assert_refused(
        build(TokenGateBuilder::default().issuer(config)).await,
        &issuer.url(),
        "shorter than 64 bytes",
    );
}

#[tokio::test]
async fn refuses_a_leeway_over_five_minutes() {
    let issuer = Issuer::start().await;
    let config = issuer_config(&issuer).leeway(Duration::from_secs(301));
    assert_refused(build(TokenGateBuilder::default().issuer(config)).await, &issuer.url(), "leeway");
    let config = issuer_config(&issuer).leeway(Duration::from_secs(300));
    assert!(build(TokenGateBuilder::default().issuer(config)).await.is_ok(), "exactly 5 min is allowed");
}

#[tokio::test]
async fn refuses_two_issuers_with_the_same_identifier() {
    let issuer = Issuer::start().await;
    let builder = TokenGateBuilder::default()
        .issuer(issuer_config(&issuer))
        .issuer(bare_issuer_config(&issuer).pem(issuer.public_key_pem(KeyKind::Rsa), None));
    assert_refused(build(builder).await, &issuer.url(), "configured twice");
}

#[tokio::test]
async fn refuses_a_jwks_url_that_answers_garbage() {
    let issuer = Issuer::start().await;
    issuer.set_fault(Endpoint::Jwks, Fault::Garbage);
    let result = build(TokenGateBuilder::default().issuer(issuer_config(&issuer))).await;
    assert_refused(result, &issuer.url(), "not a JWKS document");
    assert_eq!(issuer.requests(Endpoint::Jwks), 1);

    // An empty key set and an error status are refused too.
    issuer.set_fault(Endpoint::Jwks, Fault::EmptyKeys);
    let result = build(TokenGateBuilder::default().issuer(issuer_config(&issuer))).await;
    assert_refused(result, &issuer.url(), "no usable key");
    issuer.set_fault(Endpoint::Jwks, Fault::Status(503));
    let result = build(TokenGateBuilder::default().issuer(issuer_config(&issuer))).await;
    assert_refused(result, &issuer.url(), "503");
}

#[tokio::test]
async fn refuses_plain_http_to_a_non_loopback_host() {
    let name = "https://idp.example.com";
    for url in ["http://idp.example.com/jwks", "http://10.0.0.1/jwks", "ftp://idp.example.com/jwks"] {
        let config = IssuerConfig::new(name)
            .audience("https://api.example.com")
            .algorithms([Algorithm::RS256])
            .jwks_url(url);
        assert_refused(build(TokenGateBuilder::default().issuer(config)).await, name, "bad URL");
    }
}

#[tokio::test]
async fn refuses_no_issuer_and_an_issuer_without_keys() {
    let result = build(TokenGateBuilder::default()).await;
    assert!(result.is_err());
    let issuer = Issuer::start().await;
    assert_refused(
        build(TokenGateBuilder::default().issuer(bare_issuer_config(&issuer))).await,
        &issuer.url(),
        "no keys configured",
    );
}

#[tokio::test]
async fn refuses_a_key_without_kid_that_could_never_be_selected() {
    let issuer = Issuer::start().await;
    // The issuer's JWKS keys all have kids; a PEM key without one would never be tried.
    let config = issuer_config(&issuer).pem(issuer.public_key_pem(KeyKind::Rsa), None);
    assert_refused(build(TokenGateBuilder::default().issuer(config)).await, &issuer.url(), "has no kid");
    // With a kid it is fine.
    let config = issuer_config(&issuer).pem(issuer.public_key_pem(KeyKind::Rsa), Some("pem-1"));
    assert!(build(TokenGateBuilder::default().issuer(config)).await.is_ok());
}
