//! Unit tests over real loopback HTTP: the issuer's endpoints, minted tokens verified with
//! jsonwebtoken against the served JWKS, and the echo upstream.

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value, json};

use crate::{Algorithm, EchoUpstream, Endpoint, Fault, Issuer, KeyKind, raw_token};

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.expect("GET");
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.expect("JSON body")
}

/// Verifies `token` the way a relying party would: key by `kid` from the served JWKS.
async fn verify(issuer: &Issuer, token: &str, alg: Algorithm) -> Result<Map<String, Value>, String> {
    crate::install_crypto_provider();
    let jwks: JwkSet = serde_json::from_value(get_json(&issuer.jwks_uri()).await).unwrap();
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("unknown kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.set_audience(&[issuer.audience()]);
    validation.set_issuer(&[issuer.url()]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn minted_tokens_verify_against_served_jwks() {
    let issuer = Issuer::start().await;
    for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA] {
        let token = issuer.token().alg(alg).scope("read write").sign();
        let claims = verify(&issuer, &token, alg).await.unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(claims["scope"], "read write");
        assert_eq!(claims["sub"], "user-1");
        assert_eq!(claims["client_id"], "client-1");
    }
    let header = jsonwebtoken::decode_header(issuer.token().alg(Algorithm::ES256).sign()).unwrap();
    assert_eq!(header.kid.as_deref(), Some("ec-1"));
}

#[tokio::test]
async fn broken_tokens_do_not_verify() {
    let issuer = Issuer::start().await;
    let forged = issuer.token().sign_with_foreign_key();
    assert!(verify(&issuer, &forged, Algorithm::RS256).await.unwrap_err().contains("Signature"));
    let expired = issuer.token().expires_in(-120).sign();
    assert!(verify(&issuer, &expired, Algorithm::RS256).await.unwrap_err().contains("Expired"));
    let wrong_aud = issuer.token().aud(json!(["https://other.example.com"])).sign();
    assert!(verify(&issuer, &wrong_aud, Algorithm::RS256).await.is_err());

    let unsigned = issuer.token().header("alg", json!("none")).unsigned();
    assert!(unsigned.ends_with('.'));
    let (header, _) = issuer.token().header("alg", json!("none")).parts();
    assert_eq!(header["alg"], "none");

    // The classic confusion attack: HS256 keyed with the RSA public key PEM.
    let pem = issuer.public_key_pem(KeyKind::Rsa);
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert!(pem.lines().all(|line| line.len() <= 64));
    let hs = issuer.token().sign_hmac(Algorithm::HS256, pem.as_bytes());
    let header = jsonwebtoken::decode_header(&hs).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.kid.as_deref(), Some("rsa-1"));

    assert_eq!(raw_token("{}", "{}", "x"), "e30.e30.x");
}

#[tokio::test]
async fn jwks_has_etag_cache_control_and_304() {
    let issuer = Issuer::builder().jwks_max_age(120).build().await;
    let client = reqwest::Client::new();
    let first = client.get(issuer.jwks_uri()).send().await.unwrap();
    assert_eq!(first.headers()["content-type"], "application/json");
    assert_eq!(first.headers()["cache-control"], "max-age=120");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let body: Value = first.json().await.unwrap();
    assert_eq!(body, issuer.jwks());
    let kids: HashSet<&str> =
        body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, HashSet::from(["rsa-1", "ec-1", "ed-1"]));
    for key in body["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "sig");
    }

    let again = client.get(issuer.jwks_uri()).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);

    assert_eq!(issuer.rotate(KeyKind::Rsa), "rsa-2");
    let changed = client.get(issuer.jwks_uri()).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(issuer.requests(Endpoint::Jwks), 3);
}

#[tokio::test]
async fn rotation_and_removal() {
    let issuer = Issuer::start().await;
    let new_kid = issuer.rotate(KeyKind::P256);
    assert_eq!(new_kid, "ec-2");
    assert_eq!(issuer.kid(KeyKind::P256), "ec-2");
    assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 4);
    let token = issuer.token().alg(Algorithm::ES256).sign();
    assert!(verify(&issuer, &token, Algorithm::ES256).await.is_ok());

    issuer.remove_key("ec-1");
    assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 3);
    let old = issuer.token().kid_key("ec-1").sign();
    assert_eq!(verify(&issuer, &old, Algorithm::ES256).await.unwrap_err(), "unknown kid");
}

#[tokio::test]
async fn discovery_counters_and_faults() {
    let issuer = Issuer::builder().audience("aud-x").rsa_only().build().await;
    assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 1);
    let oidc = get_json(&format!("{}/.well-known/openid-configuration", issuer.url())).await;
    assert_eq!(oidc["issuer"], issuer.url());
    assert_eq!(oidc["jwks_uri"], issuer.jwks_uri());
    let oauth = get_json(&format!("{}/.well-known/oauth-authorization-server", issuer.url())).await;
    assert_eq!(oauth, oidc);
    assert_eq!(issuer.requests(Endpoint::Discovery), 1);
    assert_eq!(issuer.requests(Endpoint::AuthServerMetadata), 1);

    issuer.set_fault(Endpoint::Discovery, Fault::WrongIssuer);
    let evil = get_json(&format!("{}/.well-known/openid-configuration", issuer.url())).await;
    assert_eq!(evil["issuer"], "https://evil.example.com");

    issuer.set_fault(Endpoint::Jwks, Fault::Status(503));
    assert_eq!(reqwest::get(issuer.jwks_uri()).await.unwrap().status(), 503);
    issuer.set_fault(Endpoint::Jwks, Fault::Garbage);
    assert_eq!(reqwest::get(issuer.jwks_uri()).await.unwrap().text().await.unwrap(), "not json{");
    issuer.set_fault(Endpoint::Jwks, Fault::EmptyKeys);
    assert_eq!(get_json(&issuer.jwks_uri()).await, json!({"keys": []}));
    issuer.set_fault(Endpoint::Jwks, Fault::Hang);
    let client = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    assert!(client.get(issuer.jwks_uri()).send().await.unwrap_err().is_timeout());
    issuer.set_fault(Endpoint::Jwks, Fault::Slow(Duration::from_millis(150)));
    let started = std::time::Instant::now();
    assert_eq!(get_json(&issuer.jwks_uri()).await, issuer.jwks());
    assert!(started.elapsed() >= Duration::from_millis(150));
    issuer.set_fault(Endpoint::Jwks, Fault::None);
    assert_eq!(get_json(&issuer.jwks_uri()).await, issuer.jwks());
    assert_eq!(issuer.requests(Endpoint::Jwks), 6);

    let token = issuer.token().sign();
    let claims = verify(&issuer, &token, Algorithm::RS256).await.unwrap();
    assert_eq!(claims["aud"], "aud-x");
}

#[tokio::test]
async fn introspection_and_revocation() {
    let issuer = Issuer::start().await;
    let client = reqwest::Client::new();
    let token = issuer.token().claim("jti", json!("j-1")).sign();
    let introspect = |token: String| {
        let request = client.post(issuer.introspection_endpoint()).form(&[("token", token)]);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let active = introspect(token.clone()).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], "user-1");
    issuer.revoke("j-1");
    assert_eq!(introspect(token).await, json!({"active": false}));
    assert_eq!(introspect(issuer.token().expires_in(-1).sign()).await["active"], false);
    assert_eq!(introspect(issuer.token().sign_with_foreign_key()).await["active"], false);
    assert_eq!(issuer.requests(Endpoint::Introspect), 4);
}

#[tokio::test]
async fn set_now_moves_minting_time() {
    let issuer = Issuer::start().await;
    issuer.set_now(Some(1_000));
    let (_, claims) = issuer.token().expires_in(10).parts();
    assert_eq!((claims["iat"].as_i64(), claims["exp"].as_i64()), (Some(1_000), Some(1_010)));
    issuer.set_now(None);
    assert!(issuer.now() > 1_600_000_000);
}

#[tokio::test]
async fn echo_upstream_records_requests() {
    let upstream = EchoUpstream::start().await;
    let response: Value = reqwest::Client::new()
        .post(format!("{}/a/b?x=1", upstream.url()))
        .header("x-user", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["method"], "POST");
    assert_eq!(response["path"], "/a/b");
    assert_eq!(response["query"], "x=1");
    assert_eq!(response["headers"]["x-user"], "alice");
    assert_eq!(upstream.count(), 1);
    let recorded = &upstream.requests()[0];
    assert_eq!(recorded.header("X-User"), Some("alice"));
    assert_eq!(recorded.query.as_deref(), Some("x=1"));
}
