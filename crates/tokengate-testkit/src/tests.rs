//! Unit tests over real loopback HTTP: the issuer's endpoints, minted tokens verified with
//! jsonwebtoken against the served JWKS, and the echo upstream.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value, json};

use crate::{
    Algorithm, EchoUpstream, Endpoint, Fault, INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET, Issuer,
    KeyKind, raw_token,
};

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
    assert_eq!(kids, HashSet::from(["rsa-1", "ec-1", "ec384-1", "ed-1"]));
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
    assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 5);
    let token = issuer.token().alg(Algorithm::ES256).sign();
    assert!(verify(&issuer, &token, Algorithm::ES256).await.is_ok());

    issuer.remove_key("ec-1");
    assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 4);
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

/// `Authorization: Basic ...` as RFC 6749 §2.3.1 asks: each half form-URL-encoded first.
fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(client_id), encode(client_secret))))
}

/// Introspects `token` with the default client credentials (`client_secret_post`).
async fn introspect(issuer: &Issuer, token: &str) -> Value {
    let response = introspect_raw(issuer, token).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON body")
}

async fn introspect_raw(issuer: &Issuer, token: &str) -> reqwest::Response {
    let form = [
        ("token", token),
        ("client_id", INTROSPECTION_CLIENT_ID),
        ("client_secret", INTROSPECTION_CLIENT_SECRET),
    ];
    reqwest::Client::new().post(issuer.introspection_endpoint()).form(&form).send().await.expect("POST")
}

#[tokio::test]
async fn introspection_and_revocation() {
    let issuer = Issuer::start().await;
    let token = issuer.token().claim("jti", json!("j-1")).sign();
    let active = introspect(&issuer, &token).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["token_type"], "Bearer");
    assert_eq!(active["sub"], "user-1");
    issuer.revoke("j-1");
    assert_eq!(introspect(&issuer, &token).await, json!({"active": false}));
    assert_eq!(introspect(&issuer, &issuer.token().expires_in(-1).sign()).await["active"], false);
    assert_eq!(introspect(&issuer, &issuer.token().sign_with_foreign_key()).await["active"], false);
    assert_eq!(issuer.requests(Endpoint::Introspect), 4);

    // revoke_token on a JWT revokes its jti: another token with the same jti goes too.
    let first = issuer.token().claim("jti", json!("j-2")).sign();
    let twin = issuer.token().claim("jti", json!("j-2")).scope("write").sign();
    assert_eq!(introspect(&issuer, &twin).await["active"], true);
    issuer.revoke_token(&first);
    assert_eq!(introspect(&issuer, &twin).await, json!({"active": false}));
    // Without a jti, the exact token is revoked.
    let no_jti = issuer.token().without_claim("jti").sign();
    assert_eq!(introspect(&issuer, &no_jti).await["active"], true);
    issuer.revoke_token(&no_jti);
    assert_eq!(introspect(&issuer, &no_jti).await["active"], false);

    // The issuer's clock decides expiry.
    let token = issuer.token().expires_in(60).sign();
    issuer.set_now(Some(issuer.now() + 61));
    assert_eq!(introspect(&issuer, &token).await["active"], false);
}

#[tokio::test]
async fn introspection_client_authentication() {
    let issuer = Issuer::builder().introspection_client("gate way", "s:e/c%r").build().await;
    assert_eq!(
        (issuer.introspection_client_id(), issuer.introspection_client_secret()),
        ("gate way".into(), "s:e/c%r".into())
    );
    let token = issuer.token().sign();
    let client = reqwest::Client::new();
    let endpoint = issuer.introspection_endpoint();

    let basic = client
        .post(&endpoint)
        .header("authorization", basic_auth("gate way", "s:e/c%r"))
        .form(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    assert_eq!(basic.json::<Value>().await.unwrap()["active"], true);

    let post = client
        .post(&endpoint)
        .form(&[("token", token.as_str()), ("client_id", "gate way"), ("client_secret", "s:e/c%r")])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 200);
    assert_eq!(post.json::<Value>().await.unwrap()["active"], true);
    assert_eq!(issuer.introspection_auth_methods(), ["basic", "post"]);

    let refused = [
        client
            .post(&endpoint)
            .header("authorization", basic_auth("gate way", "wrong"))
            .form(&[("token", &token)]),
        client.post(&endpoint).form(&[
            ("token", token.as_str()),
            ("client_id", "gate way"),
            ("client_secret", "x"),
        ]),
        client.post(&endpoint).form(&[("token", token.as_str()), ("client_id", "gate way")]),
        client.post(&endpoint).form(&[("token", &token)]),
        client.post(&endpoint).header("authorization", "Bearer abc").form(&[("token", &token)]),
        client.post(&endpoint).header("authorization", "Basic !!!").form(&[("token", &token)]),
    ];
    for request in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Basic realm=\"introspection\"");
        assert_eq!(response.json::<Value>().await.unwrap(), json!({"error": "invalid_client"}));
    }
    // Two methods at once is a malformed request (RFC 6749 §5.2).
    let both = client
        .post(&endpoint)
        .header("authorization", basic_auth("gate way", "s:e/c%r"))
        .form(&[("token", token.as_str()), ("client_id", "gate way"), ("client_secret", "s:e/c%r")])
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    assert_eq!(issuer.introspection_auth_methods().len(), 2);
    assert_eq!(issuer.requests(Endpoint::Introspect), 9);

    // A client that forgets to URL-encode is refused when encoding matters.
    let strict = Issuer::builder().introspection_client("gate:way", "a+b%41").build().await;
    let raw = client
        .post(strict.introspection_endpoint())
        .basic_auth("gate:way", Some("a+b%41"))
        .form(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let encoded = client
        .post(strict.introspection_endpoint())
        .header("authorization", basic_auth("gate:way", "a+b%41"))
        .form(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(encoded.status(), 200);

    let metadata = get_json(&format!("{}/.well-known/oauth-authorization-server", issuer.url())).await;
    assert_eq!(
        metadata["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
}

#[tokio::test]
async fn opaque_tokens() {
    let issuer = Issuer::start().await;
    let token = issuer.opaque_token().scope("read write").sub("alice").claim("tenant", json!("t-1")).issue();
    assert_eq!(URL_SAFE_NO_PAD_LEN, token.len());
    assert!(!token.contains('.'));
    let answer = introspect(&issuer, &token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["scope"], "read write");
    assert_eq!(answer["sub"], "alice");
    assert_eq!(answer["tenant"], "t-1");
    assert_eq!(answer["iss"], issuer.url());
    assert_eq!(answer["aud"], issuer.audience());
    assert_eq!(answer["client_id"], "client-1");
    assert_eq!(answer["exp"].as_i64(), Some(answer["iat"].as_i64().unwrap() + 300));
    assert!(answer["jti"].as_str().is_some_and(|jti| !jti.is_empty()));

    issuer.revoke_token(&token);
    assert_eq!(introspect(&issuer, &token).await, json!({"active": false}));

    let by_jti = issuer.opaque_token().claim("jti", json!("o-1")).issue();
    issuer.revoke("o-1");
    assert_eq!(introspect(&issuer, &by_jti).await["active"], false);

    let expired = issuer.opaque_token().expires_in(-1).issue();
    assert_eq!(introspect(&issuer, &expired).await, json!({"active": false}));
    let short = issuer.opaque_token().expires_in(10).issue();
    assert_eq!(introspect(&issuer, &short).await["active"], true);
    issuer.set_now(Some(issuer.now() + 10));
    assert_eq!(introspect(&issuer, &short).await["active"], false);
    let forever = issuer.opaque_token().without_claim("exp").issue();
    assert_eq!(introspect(&issuer, &forever).await["active"], true);

    assert_eq!(introspect(&issuer, "never-issued").await, json!({"active": false}));
}

/// 32 random bytes in base64url without padding.
const URL_SAFE_NO_PAD_LEN: usize = 43;

#[tokio::test]
async fn introspection_override_merges_over_active_answers() {
    let issuer = Issuer::start().await;
    let token = issuer.token().scope("read write").sign();
    issuer.set_introspection_override(Some(json!({"scope": "read", "iss": "https://other", "exp": null})));
    let answer = introspect(&issuer, &token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["scope"], "read");
    assert_eq!(answer["iss"], "https://other");
    assert!(answer.get("exp").is_none());
    assert_eq!(answer["sub"], "user-1");

    issuer.set_introspection_override(Some(json!({"aud": "x", "exp": 1})));
    let opaque = issuer.opaque_token().issue();
    let answer = introspect(&issuer, &opaque).await;
    assert_eq!((answer["aud"].as_str(), answer["exp"].as_i64()), (Some("x"), Some(1)));
    // Inactive answers are left alone.
    assert_eq!(introspect(&issuer, &issuer.token().expires_in(-1).sign()).await, json!({"active": false}));

    issuer.set_introspection_override(None);
    assert_eq!(introspect(&issuer, &token).await["scope"], "read write");
}

#[tokio::test]
async fn introspection_faults() {
    let issuer = Issuer::start().await;
    let token = issuer.token().sign();
    let body = |fault: Fault| {
        issuer.set_fault(Endpoint::Introspect, fault);
        let issuer = issuer.clone();
        let token = token.clone();
        async move {
            let response = introspect_raw(&issuer, &token).await;
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(body(Fault::ActiveNotBool).await, (200, r#"{"active":"true"}"#.to_owned()));
    assert_eq!(body(Fault::NotObject).await, (200, "[]".to_owned()));
    assert_eq!(body(Fault::Garbage).await, (200, "not json{".to_owned()));
    assert_eq!(body(Fault::Status(500)).await.0, 500);
    let started = Instant::now();
    let (status, text) = body(Fault::Slow(Duration::from_millis(100))).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["active"], true);
    assert_eq!(body(Fault::None).await.0, 200);
    assert_eq!(issuer.requests(Endpoint::Introspect), 6);

    // Elsewhere the introspection-only faults are garbage.
    issuer.set_fault(Endpoint::Jwks, Fault::NotObject);
    assert_eq!(reqwest::get(issuer.jwks_uri()).await.unwrap().text().await.unwrap(), "not json{");
}

#[tokio::test]
async fn introspections_in_flight_gauge() {
    let issuer = Issuer::start().await;
    let token = issuer.token().sign();
    assert_eq!(introspect(&issuer, &token).await["active"], true);
    assert_eq!((issuer.introspections_in_flight(), issuer.max_introspections_in_flight()), (0, 1));

    issuer.set_fault(Endpoint::Introspect, Fault::Hang);
    let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let form = [
        ("token", token.as_str()),
        ("client_id", INTROSPECTION_CLIENT_ID),
        ("client_secret", INTROSPECTION_CLIENT_SECRET),
    ];
    let hung = tokio::spawn(client.post(issuer.introspection_endpoint()).form(&form).send());
    let also_hung = tokio::spawn(client.post(issuer.introspection_endpoint()).form(&form).send());
    wait_for(|| issuer.introspections_in_flight() == 2).await;
    assert!(hung.await.unwrap().unwrap_err().is_timeout());
    assert!(also_hung.await.unwrap().unwrap_err().is_timeout());
    wait_for(|| issuer.introspections_in_flight() == 0).await;
    assert_eq!(issuer.max_introspections_in_flight(), 2);
}

/// Polls `condition` every 10 ms for up to 5 s.
async fn wait_for(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

#[tokio::test]
async fn logout_tokens_and_security_events_have_their_spec_shapes() {
    let issuer = Issuer::start().await;
    let now = issuer.now();
    let (header, claims) = issuer.logout_token("rp-1").claim("sid", json!("s-1")).parts();
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(claims["aud"], "rp-1");
    assert_eq!(claims["iss"], json!(issuer.url()));
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + crate::DEFAULT_LOGOUT_TOKEN_TTL_SECS);
    assert_eq!(claims["sid"], "s-1");
    assert_eq!(claims["sub"], "user-1");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(claims["events"], json!({ crate::BACKCHANNEL_LOGOUT_EVENT: {} }));
    for absent in ["nonce", "scope", "client_id", "nbf"] {
        assert!(claims.get(absent).is_none(), "{absent}");
    }

    let subject = json!({"format": "opaque", "id": "alice"});
    let (header, claims) =
        issuer.security_event("https://gw", crate::CAEP_SESSION_REVOKED, subject.clone()).parts();
    assert_eq!(header["typ"], "secevent+jwt");
    assert_eq!(claims["aud"], "https://gw");
    assert_eq!(claims["events"][crate::CAEP_SESSION_REVOKED]["subject"], subject);
    for absent in ["exp", "sub", "scope", "nbf"] {
        assert!(claims.get(absent).is_none(), "{absent}");
    }
    // Both are real JWS from the issuer's current key: three segments.
    assert_eq!(issuer.logout_token("rp-1").sign().split('.').count(), 3);
}
