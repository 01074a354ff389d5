//! The gateway end to end with `RUST_LOG=trace`: whatever it logs while it verifies, introspects,
//! refuses, proxies, fails upstream and serves the admin API, no token, no introspection client
//! secret (nor its Basic form) and no admin secret ever appears in its output, and no error body
//! echoes a token or an internal address.

mod common;

use base64::Engine as _;
use common::{Gateway, issuer_toml};
use tokengate_testkit::{EchoUpstream, Issuer};

const ADMIN_SECRET: &str = "admin-secret-Zq8vLw3RkT0p";
const CLIENT_SECRET: &str = "client-secret-Hn5xUe7YcB2m";

fn config(issuer: &Issuer, upstream: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
upstream = "{upstream}"
admin_token_env = "TG_TRACE_ADMIN"

[admin]
listen = "127.0.0.1:0"

[identity]
subject = "X-User"

{issuer}
[introspection]
endpoint = "{endpoint}"
client_id = "{client_id}"
client_secret_env = "TG_TRACE_CLIENT_SECRET"
cache_ttl_secs = 0

[[routes]]
path = "/admin/*"
mode = "introspect"

[[routes]]
path = "/api/*"
mode = "local"
"#,
        issuer = issuer_toml(issuer),
        endpoint = issuer.introspection_endpoint(),
        client_id = issuer.introspection_client_id(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_or_secret_reaches_the_trace_log_or_an_error_body() {
    let issuer = Issuer::builder().introspection_client("gateway", CLIENT_SECRET).build().await;
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(
        &config(&issuer, &upstream.url()),
        &[("RUST_LOG", "trace"), ("TG_TRACE_ADMIN", ADMIN_SECRET), ("TG_TRACE_CLIENT_SECRET", CLIENT_SECRET)],
    )
    .await;
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    let mut bodies = Vec::new();
    macro_rules! get {
        ($path:expr, $authorization:expr) => {{
            let response = client
                .get(format!("{}{}", gw.url(), $path))
                .header("authorization", $authorization)
                .send()
                .await
                .expect("the gateway answers");
            let status = response.status().as_u16();
            // Only the gateway's own answers: a 200 carries the echo upstream's body.
            let body = response.text().await.unwrap_or_default();
            if status >= 400 {
                bodies.push(body);
            }
            status
        }};
    }

    // Accepted on a local and an introspected route, the latter asking the issuer each time.
    let good = issuer.token().sign();
    assert_eq!(get!("/api/x", format!("Bearer {good}")), 200);
    assert_eq!(get!("/admin/x", format!("Bearer {good}")), 200);
    tokens.push(good.clone());
    // Refused for many reasons: expired, forged, garbage, revoked at the issuer.
    let expired = issuer.token().expires_in(-600).sign();
    assert_eq!(get!("/api/x", format!("Bearer {expired}")), 401);
    let (head, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.AAAA");
    assert_eq!(get!("/api/x", format!("Bearer {forged}")), 401);
    let garbage = "not-a-jwt-but-long-enough-to-spot-7f3e9a".to_owned();
    assert_eq!(get!("/api/x", format!("Bearer {garbage}")), 401);
    let revoked = issuer.token().sign();
    issuer.revoke_token(&revoked);
    assert_eq!(get!("/admin/x", format!("Bearer {revoked}")), 401);
    let opaque = "opaque-token-value-5d1c2b8e".to_owned();
    let _ = get!("/admin/x", format!("Bearer {opaque}"));
    tokens.extend([expired, forged, garbage, revoked, opaque]);

    // The admin API: refused with a wrong secret, then a revocation by token.
    let admin = format!("{}/revocations", gw.admin_url());
    let to_revoke = issuer.token().claim("jti", serde_json::json!("jti-trace-1")).sign();
    let r = client
        .post(&admin)
        .header("authorization", "Bearer wrong-admin-secret")
        .json(&serde_json::json!({"kind": "token", "token": to_revoke}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    bodies.push(r.text().await.unwrap_or_default());
    let r = client
        .post(&admin)
        .header("authorization", format!("Bearer {ADMIN_SECRET}"))
        .json(&serde_json::json!({"kind": "token", "token": to_revoke}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(get!("/api/x", format!("Bearer {to_revoke}")), 401);
    tokens.push(to_revoke);

    // The upstream goes away: the 502 must not name its address.
    let upstream_addr = upstream.addr().to_string();
    drop(upstream);
    let late = issuer.token().sign();
    let status = get!("/api/x", format!("Bearer {late}"));
    assert!(status == 502 || status == 504, "{status}");
    tokens.push(late);

    let log = gw.stderr();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "RUST_LOG=trace took no effect:\n{log}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("gateway:{CLIENT_SECRET}"));
    for secret in [ADMIN_SECRET, CLIENT_SECRET, basic.as_str()] {
        assert!(!log.contains(secret), "a secret is in the log");
    }
    for token in &tokens {
        // Every token, and each of its segments long enough to be telling (a leaked payload
        // or signature is as bad as the whole token).
        assert!(!log.contains(token.as_str()), "a token is in the log");
        for segment in token.split('.').filter(|s| s.len() >= 16) {
            assert!(!log.contains(segment), "a token segment is in the log");
        }
        for body in &bodies {
            assert!(!body.contains(token.as_str()), "an error body echoes a token: {body}");
        }
    }
    assert!(bodies.len() >= 8, "the refusals were collected: {bodies:?}");
    for body in &bodies {
        assert!(!body.contains(&upstream_addr), "an error body names the upstream: {body}");
        assert!(!body.contains(&issuer.url()), "an error body names the issuer: {body}");
        assert!(!body.contains(ADMIN_SECRET) && !body.contains(CLIENT_SECRET));
    }
}
