//! Writes `fixtures/jwks.json` and the seed corpora under `corpus/`.
//!
//!     cd fuzz && cargo run --example make_seeds
//!
//! Run it again only to regenerate everything: it makes new keys, so every token seed changes
//! with the JWKS. The seeds are the valid tokens of each algorithm and the attack cases of the
//! attack suite (tests/tests/attacks_*.rs), so fuzzing starts from both sides of every check.

use std::fs;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokengate_fuzz::{AUDIENCE, HMAC_ISSUER, HMAC_SECRET, ISSUER, NOW};
use tokengate_testkit::{Algorithm, Issuer, KeyKind, TokenBuilder, raw_token};

/// P-256 group order n: an ECDSA r or s equal to it (or 0) must never verify (CVE-2022-21449).
const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn hs256(header: &str, payload: &str) -> String {
    tokengate_testkit::install_crypto_provider();
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let key = jsonwebtoken::EncodingKey::from_secret(HMAC_SECRET);
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{input}.{sig}")
}

fn with_sig(token: &str, sig: &str) -> String {
    let (input, _) = token.rsplit_once('.').expect("three segments");
    format!("{input}.{sig}")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let issuer = Issuer::start().await;
    issuer.set_now(Some(NOW));
    let jwks = serde_json::to_string_pretty(&issuer.jwks()).expect("jwks");
    fs::write("fixtures/jwks.json", format!("{jwks}\n")).expect("write fixture");

    let ours = |b: TokenBuilder| b.claim("iss", json!(ISSUER));
    let t = || ours(issuer.token());
    let claims = json!({"iss": HMAC_ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": NOW, "exp": NOW + 300, "scope": "read"});
    let hmac_claims = claims.to_string();
    let rsa_pem = issuer.public_key_pem(KeyKind::Rsa);
    let es = t().alg(Algorithm::ES256).sign();
    let n = hex(P256_N);
    let mut tokens: Vec<(&str, String)> = vec![
        ("valid_rs256", t().sign()),
        ("valid_rs256_admin", t().scope("read admin").sign()),
        ("valid_es256", es.clone()),
        ("valid_eddsa", t().alg(Algorithm::EdDSA).sign()),
        ("ps256_on_rs256_pinned_key", t().alg(Algorithm::PS256).sign()),
        ("valid_hs256", hs256(r#"{"alg":"HS256","typ":"JWT"}"#, &hmac_claims)),
        ("valid_float_exp", t().claim("exp", json!(NOW as f64 + 300.5)).sign()),
        ("valid_aud_array", t().aud(json!(["x", AUDIENCE])).sign()),
        ("expired", t().expires_in(-3600).sign()),
        ("not_yet_valid", t().claim("nbf", json!(NOW + 3600)).sign()),
        ("iat_future", t().claim("iat", json!(NOW + 3600)).sign()),
        ("exp_string", t().claim("exp", json!("1700000300")).sign()),
        ("exp_huge", t().claim("exp", json!(1e30)).sign()),
        ("exp_negative", t().claim("exp", json!(-1)).sign()),
        ("aud_nested", t().aud(json!([[AUDIENCE]])).sign()),
        ("aud_number", t().aud(json!(1)).sign()),
        ("wrong_aud", t().aud(json!("https://other.example.com")).sign()),
        ("unknown_issuer", issuer.token().claim("iss", json!("https://evil.example.com")).sign()),
        ("no_exp", t().without_claim("exp").sign()),
        ("alg_none", t().header("alg", json!("none")).unsigned()),
        ("alg_none_no_dot", t().header("alg", json!("none")).unsigned().trim_end_matches('.').to_owned()),
        ("alg_None", t().header("alg", json!("None")).unsigned()),
        ("alg_empty", t().header("alg", json!("")).sign()),
        ("alg_missing", t().without_header("alg").sign()),
        ("alg_number", t().header("alg", json!(256)).sign()),
        ("alg_array", t().header("alg", json!(["RS256"])).sign()),
        ("hs256_with_rsa_pem", t().sign_hmac(Algorithm::HS256, rsa_pem.as_bytes())),
        ("es256_on_rsa_kid", t().alg(Algorithm::ES256).header("kid", json!("rsa-1")).sign()),
        ("jku", t().header("jku", json!("http://127.0.0.1:1/jwks")).header("kid", json!("attacker")).sign()),
        ("jwk_embedded", t().header("jwk", issuer.jwks()["keys"][0].clone()).sign_with_foreign_key()),
        ("x5c_junk", t().header("x5c", json!(["junk"])).sign()),
        ("crit", t().header("crit", json!(["exp"])).sign()),
        ("kid_traversal", t().header("kid", json!("../../dev/null")).sign()),
        ("kid_sql", t().header("kid", json!("' OR '1'='1")).sign()),
        ("kid_empty", t().header("kid", json!("")).sign()),
        ("kid_number", t().header("kid", json!(1)).sign()),
        ("kid_object", t().header("kid", json!({"a": 1})).sign()),
        ("foreign_key", t().sign_with_foreign_key()),
        ("es256_zero", with_sig(&es, &URL_SAFE_NO_PAD.encode([0u8; 64]))),
        ("es256_r_eq_n", with_sig(&es, &URL_SAFE_NO_PAD.encode([n.clone(), n.clone()].concat()))),
        ("padded_sig", format!("{}==", t().sign())),
        ("four_segments", format!("{}.AAAA", t().sign())),
        (
            "jwe_shaped",
            format!(
                "{}.AAAA.AAAA.AAAA.AAAA",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
            ),
        ),
        ("dup_alg", hs256(r#"{"alg":"none","alg":"HS256"}"#, &hmac_claims)),
        (
            "dup_iss",
            hs256(
                r#"{"alg":"HS256"}"#,
                &hmac_claims.replacen('{', r#"{"iss":"https://evil.example.com","#, 1),
            ),
        ),
        (
            "escaped_dup_iss",
            hs256(r#"{"alg":"HS256"}"#, &hmac_claims.replacen('{', r#"{"i\u0073s":"x","#, 1)),
        ),
        (
            "reserved_raw_value",
            hs256(
                r#"{"alg":"HS256"}"#,
                &hmac_claims.replacen('{', r#"{"role":{"$serde_json::private::RawValue":"\"admin\""},"#, 1),
            ),
        ),
        (
            "reserved_number",
            hs256(
                r#"{"alg":"HS256"}"#,
                &hmac_claims.replacen('{', r#"{"n":[{"$serde_json::private::Number":"1"}],"#, 1),
            ),
        ),
        (
            "reserved_in_header",
            hs256(r#"{"alg":"HS256","x":{"\u0024serde_json::private::RawValue":"1"}}"#, &hmac_claims),
        ),
        ("payload_array", hs256(r#"{"alg":"HS256"}"#, "[]")),
        ("payload_null", hs256(r#"{"alg":"HS256"}"#, "null")),
        (
            "nested_100",
            hs256(
                r#"{"alg":"HS256"}"#,
                &hmac_claims.replacen('{', &format!(r#"{{"n":{}1{},"#, "[".repeat(100), "]".repeat(100)), 1),
            ),
        ),
        ("raw_empty_parts", raw_token("{}", "{}", "AA")),
    ];
    tokens.push(("typ_at_jwt", t().header("typ", json!("at+jwt")).sign()));
    for (name, token) in &tokens {
        write("verify_token", name, token);
    }

    // The Authorization header: valid and broken values.
    let valid = &tokens[0].1;
    for (name, value) in [
        ("bearer_valid", format!("Bearer {valid}")),
        ("bearer_lowercase", format!("bearer  {valid}")),
        ("bearer_padded", "Bearer abc==".to_owned()),
        ("basic", "Basic dXNlcjpwYXNz".to_owned()),
        ("dpop", format!("DPoP {valid}")),
        ("two_tokens", format!("Bearer {valid}, Bearer {valid}")),
        ("space_inside", "Bearer abc def".to_owned()),
        ("tab", "Bearer\tabc".to_owned()),
        ("empty", String::new()),
        ("scheme_only", "Bearer".to_owned()),
        ("quoted", "Bearer \"abc\"".to_owned()),
        ("equals_only", "Bearer ===".to_owned()),
        ("leading_space", " Bearer abc".to_owned()),
    ] {
        write("authorization_header", name, value);
    }

    // Whole requests: method, path, then Authorization values.
    let admin = &tokens[1].1;
    for (name, request) in [
        ("get_api_valid", format!("GET\n/api/x\nBearer {valid}")),
        ("get_admin_with_scope", format!("GET\n/admin/panel\nBearer {admin}")),
        ("get_admin_without_scope", format!("GET\n/admin/panel\nBearer {valid}")),
        ("dotdot_into_admin", format!("GET\n/api/%2e%2e/admin/x\nBearer {valid}")),
        ("encoded_slash", format!("GET\n/api%2fadmin\nBearer {valid}")),
        ("health_public", "GET\n/health\n".to_owned()),
        ("optional_no_token", "GET\n/optional/x\n".to_owned()),
        ("optional_bad_token", "GET\n/optional/x\nBearer abc.def.ghi".to_owned()),
        ("introspected", format!("POST\n/introspected/x\nBearer {valid}")),
        ("users_param", format!("GET\n/users/42/keys\nBearer {valid}")),
        ("two_headers", format!("GET\n/api/x\nBearer {valid}\nBearer {valid}")),
        ("deny_default", format!("GET\n/elsewhere\nBearer {valid}")),
        ("head_on_get", format!("HEAD\n/api/x\nBearer {valid}")),
    ] {
        write("gate_request", name, request);
    }

    // Key sets and PEM keys.
    let rsa = issuer.jwks()["keys"][0].clone();
    let with = |name: &str, key: Value| {
        write("jwks_document", name, json!({"keys": [key]}).to_string());
    };
    with("rsa_no_alg", {
        let mut k = rsa.clone();
        k.as_object_mut().unwrap().remove("alg");
        k
    });
    with("rsa_use_enc", {
        let mut k = rsa.clone();
        k["use"] = json!("enc");
        k
    });
    with("rsa_alg_es256", {
        let mut k = rsa.clone();
        k["alg"] = json!("ES256");
        k
    });
    with("rsa_key_ops_sign", {
        let mut k = rsa.clone();
        k["key_ops"] = json!(["sign"]);
        k
    });
    with(
        "rsa_small",
        json!({"kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"}),
    );
    with("rsa_private", {
        let mut k = rsa.clone();
        k["d"] = json!("AAAA");
        k
    });
    with("oct", json!({"kty": "oct", "kid": "s", "k": URL_SAFE_NO_PAD.encode([7u8; 32])}));
    with("ec_p521", json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}));
    with("ec_short_x", json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}));
    with("okp_x448", json!({"kty": "OKP", "crv": "X448", "x": "AAAA"}));
    write("jwks_document", "issuer_jwks", jwks.as_bytes());
    write("jwks_document", "not_an_object", "[]");
    write("jwks_document", "keys_not_array", r#"{"keys": {}}"#);
    write("jwks_document", "rsa_pem", rsa_pem.as_bytes());
    write("jwks_document", "ec_pem", issuer.public_key_pem(KeyKind::P256));
    write("jwks_document", "ed_pem", issuer.public_key_pem(KeyKind::Ed25519));

    // Discovery documents: first line the configured issuer.
    let doc = |iss: &str, body: Value| format!("{iss}\n{body}");
    let google_like = json!({
        "issuer": "https://accounts.example.com",
        "authorization_endpoint": "https://accounts.example.com/o/oauth2/v2/auth",
        "token_endpoint": "https://oauth2.example.com/token",
        "jwks_uri": "https://www.example.com/oauth2/v3/certs",
        "response_types_supported": ["code", "token", "id_token"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let keycloak_like = json!({
        "issuer": "https://sso.example.com/realms/main",
        "jwks_uri": "https://sso.example.com/realms/main/protocol/openid-connect/certs",
        "introspection_endpoint": "https://sso.example.com/realms/main/protocol/openid-connect/token/introspect",
        "grant_types_supported": ["authorization_code", "client_credentials"],
    });
    write("discovery_document", "google_like", doc("https://accounts.example.com", google_like.clone()));
    write("discovery_document", "keycloak_like", doc("https://sso.example.com/realms/main", keycloak_like));
    write("discovery_document", "trailing_slash_mismatch", doc("https://accounts.example.com/", google_like));
    write(
        "discovery_document",
        "wrong_issuer",
        doc(
            "https://idp.example.com",
            json!({"issuer": "https://evil.example.com", "jwks_uri": "https://evil.example.com/jwks"}),
        ),
    );
    write("discovery_document", "issuer_not_string", doc("https://idp.example.com", json!({"issuer": 1})));
    write(
        "discovery_document",
        "no_jwks_uri",
        doc("https://idp.example.com", json!({"issuer": "https://idp.example.com"})),
    );
    write(
        "discovery_document",
        "issuer_with_query",
        doc("https://idp.example.com/?a=b", json!({"issuer": "https://idp.example.com/?a=b"})),
    );
    write(
        "discovery_document",
        "dup_issuer",
        "https://idp.example.com\n{\"issuer\":\"https://evil.example.com\",\"issuer\":\"https://idp.example.com\"}",
    );

    // Route patterns and paths: "pattern\npath".
    for (name, pair) in [
        ("exact", "/health\n/health"),
        ("exact_trailing", "/health\n/health/"),
        ("prefix_self", "/admin/*\n/admin"),
        ("prefix_below", "/admin/*\n/admin/users/1"),
        ("prefix_dotdot", "/admin/*\n/public/../admin/x"),
        ("prefix_encoded_dots", "/admin/*\n/public/%2e%2E/admin/x"),
        ("encoded_letter", "/admin/*\n/%61dmin/x"),
        ("encoded_slash", "/admin/*\n/admin%2fx"),
        ("backslash", "/admin/*\n/admin\\x"),
        ("semicolon", "/admin/*\n/admin;x=1/y"),
        ("double_slash", "/admin/*\n//admin//x"),
        ("param", "/users/{id}/keys\n/users/42/keys"),
        ("param_empty", "/users/{id}/keys\n/users//keys"),
        ("tilde", "/~me/*\n/%7Eme/x"),
        ("utf8_escape", "/caf%C3%A9\n/caf%c3%a9"),
        ("root", "/*\n/"),
        ("above_root", "/etc/*\n/../../etc/passwd"),
        ("percent_25", "/a\n/a%25"),
        ("bad_pattern", "/a/*/b\n/a/x/b"),
    ] {
        write("route_patterns", name, pair);
    }
    println!("wrote fixtures/jwks.json and {} token seeds", tokens.len());
}
