//! The back-channel logout and security event receivers, through the built binary: every bad
//! logout token and bad SET is answered as the specs say and changes nothing — the revocation
//! list stays empty and the user's token still passes — while good ones revoke.

mod common;

use common::{Gateway, issuer_toml};
use serde_json::{Value, json};
use tokengate_testkit::{CAEP_CREDENTIAL_CHANGE, CAEP_SESSION_REVOKED, EchoUpstream, Issuer, TokenBuilder};

const ADMIN_SECRET: &str = "receivers-admin-secret-0123456789";
const CLIENT_ID: &str = "rp-gateway";
const RECEIVER: &str = "https://gateway.test";

struct Setup {
    issuer: Issuer,
    _upstream: EchoUpstream,
    gw: Gateway,
    client: reqwest::Client,
}

impl Setup {
    /// One gateway: logout on the main listener, security events on the admin listener.
    async fn new() -> Setup {
        let issuer = Issuer::start().await;
        let upstream = EchoUpstream::start().await;
        let config = format!(
            r#"listen = "127.0.0.1:0"
upstream = "{upstream}"
admin_token_env = "TG_RECEIVERS_ADMIN"

[admin]
listen = "127.0.0.1:0"

{issuer}logout_client_id = "{CLIENT_ID}"

[backchannel_logout]
max_age = "2m"

[security_events]
listener = "admin"
audience = "{RECEIVER}"
[[security_events.transmitters]]
issuer = "{issuer_url}"
"#,
            upstream = upstream.url(),
            issuer = issuer_toml(&issuer),
            issuer_url = issuer.url(),
        );
        let gw = Gateway::start(&config, &[("TG_RECEIVERS_ADMIN", ADMIN_SECRET)]).await;
        Setup { issuer, _upstream: upstream, gw, client: reqwest::Client::new() }
    }

    async fn logout(&self, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self
            .client
            .post(format!("{}/backchannel-logout", self.gw.url()))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn push(&self, set: &str, content_type: &str) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/security-events", self.gw.admin_url()))
            .header("content-type", content_type)
            .body(set.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
    }

    async fn listed(&self) -> Vec<Value> {
        let r = self
            .client
            .get(format!("{}/revocations", self.gw.admin_url()))
            .bearer_auth(ADMIN_SECRET)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["revocations"].as_array().cloned().unwrap_or_default()
    }

    async fn status(&self, token: &str) -> u16 {
        self.client
            .get(format!("{}/api/x", self.gw.url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn logout_token(&self) -> TokenBuilder {
        self.issuer.logout_token(CLIENT_ID)
    }

    fn event(&self, event_type: &str, subject: Value) -> TokenBuilder {
        self.issuer.security_event(RECEIVER, event_type, subject)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_logout_tokens_get_400_and_change_nothing() {
    let s = Setup::new().await;
    let user = s.issuer.token().sub("user-1").claim("sid", json!("sid-1")).sign();
    assert_eq!(s.status(&user).await, 200);
    let other_issuer = Issuer::start().await;

    let cases: Vec<(&str, String)> = vec![
        ("forged", s.logout_token().sign_with_foreign_key()),
        ("expired", s.logout_token().expires_in(-120).sign()),
        ("without exp", s.logout_token().without_claim("exp").sign()),
        ("too old", s.logout_token().claim("iat", json!(s.issuer.now() - 600)).sign()),
        ("issued in the future", s.logout_token().claim("iat", json!(s.issuer.now() + 600)).sign()),
        ("without iat", s.logout_token().without_claim("iat").sign()),
        ("carrying a nonce", s.logout_token().claim("nonce", json!("n-1")).sign()),
        ("without events", s.logout_token().without_claim("events").sign()),
        ("with events as an array", s.logout_token().claim("events", json!([])).sign()),
        (
            "with another event",
            s.logout_token().claim("events", json!({"https://example.com/other": {}})).sign(),
        ),
        (
            "with the event not an object",
            s.logout_token()
                .claim("events", json!({"http://schemas.openid.net/event/backchannel-logout": true}))
                .sign(),
        ),
        ("without sub or sid", s.logout_token().without_claim("sub").sign()),
        ("without jti", s.logout_token().without_claim("jti").sign()),
        ("for another client", s.logout_token().aud(json!("someone-else")).sign()),
        ("typed as a JWT access token", s.logout_token().header("typ", json!("at+jwt")).sign()),
        ("an access token", s.issuer.token().aud(json!(CLIENT_ID)).sign()),
        ("from an unknown issuer", other_issuer.logout_token(CLIENT_ID).sign()),
        ("not a JWT", "not-a-jwt".to_owned()),
        ("empty", String::new()),
    ];
    for (what, token) in &cases {
        let (status, headers, body) = s.logout(token).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_request", "{what}");
        assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{what}");
        assert_eq!(headers["cache-control"], "no-store", "{what}");
    }

    // Replayed: the first is acted on, the second refused.
    let good = s.logout_token().sub("replayed-user").sign();
    assert_eq!(s.logout(&good).await.0, 200);
    let (status, _, body) = s.logout(&good).await;
    assert_eq!(status, 400);
    assert!(body["error_description"].as_str().unwrap().contains("replayed"), "{body}");

    // Not a form, not a POST, two tokens.
    let r = s
        .client
        .post(format!("{}/backchannel-logout", s.gw.url()))
        .header("content-type", "application/json")
        .body(format!("{{\"logout_token\":\"{good}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = s.client.get(format!("{}/backchannel-logout", s.gw.url())).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let two = s.logout_token().sign();
    let r = s
        .client
        .post(format!("{}/backchannel-logout", s.gw.url()))
        .form(&[("logout_token", two.as_str()), ("logout_token", two.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Only the one good token changed anything.
    let listed = s.listed().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["subject"], "replayed-user");
    assert_eq!(s.status(&user).await, 200, "user-1 is untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_token_with_sub_and_sid_revokes_both() {
    let s = Setup::new().await;
    let same_session = s.issuer.token().sub("someone-else").claim("sid", json!("sid-7")).sign();
    let user = s.issuer.token().sub("user-7").sign();
    let logout = s.logout_token().sub("user-7").claim("sid", json!("sid-7")).sign();
    let (status, headers, _) = s.logout(&logout).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(s.status(&user).await, 401);
    assert_eq!(s.status(&same_session).await, 401, "every token of the session");
    let kinds: Vec<String> =
        s.listed().await.iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"subject".to_owned()) && kinds.contains(&"session".to_owned()), "{kinds:?}");
    // A token of the user issued after the logout passes: the issuer's clock is moved ahead
    // (within the gateway's leeway) rather than waited for.
    s.issuer.set_now(Some(s.issuer.now() + 5));
    let fresh = s.issuer.token().sub("user-7").sign();
    assert_eq!(s.status(&fresh).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn security_events_are_answered_per_rfc_8935() {
    let s = Setup::new().await;
    let alice = s.issuer.token().sub("alice").claim("sid", json!("s-a")).sign();
    let bob = s.issuer.token().sub("bob").sign();
    let other_issuer = Issuer::start().await;
    let iss_sub = |sub: &str| json!({"format": "iss_sub", "iss": s.issuer.url(), "sub": sub});

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "forged",
            s.event(CAEP_SESSION_REVOKED, iss_sub("bob")).sign_with_foreign_key(),
            "authentication_failed",
        ),
        (
            "for another receiver",
            s.issuer.security_event("https://elsewhere", CAEP_SESSION_REVOKED, iss_sub("bob")).sign(),
            "invalid_audience",
        ),
        (
            "from an unknown transmitter",
            other_issuer.security_event(RECEIVER, CAEP_SESSION_REVOKED, iss_sub("bob")).sign(),
            "invalid_issuer",
        ),
        (
            "signed by an unknown key",
            s.event(CAEP_SESSION_REVOKED, iss_sub("bob")).header("kid", json!("no-such-kid")).sign(),
            "invalid_key",
        ),
        ("expired", s.event(CAEP_SESSION_REVOKED, iss_sub("bob")).expires_in(-120).sign(), "invalid_request"),
        (
            "too old",
            s.event(CAEP_SESSION_REVOKED, iss_sub("bob")).claim("iat", json!(s.issuer.now() - 3_600)).sign(),
            "invalid_request",
        ),
        (
            "without jti",
            s.event(CAEP_SESSION_REVOKED, iss_sub("bob")).without_claim("jti").sign(),
            "invalid_request",
        ),
        (
            "without events",
            s.event(CAEP_SESSION_REVOKED, iss_sub("bob")).without_claim("events").sign(),
            "invalid_request",
        ),
        (
            "with only unknown events",
            s.event("https://example.com/unknown", iss_sub("bob")).sign(),
            "invalid_request",
        ),
        (
            "about another issuer's user",
            s.event(
                CAEP_SESSION_REVOKED,
                json!({"format": "iss_sub", "iss": other_issuer.url(), "sub": "bob"}),
            )
            .sign(),
            "access_denied",
        ),
        (
            "with an email subject",
            s.event(CAEP_CREDENTIAL_CHANGE, json!({"format": "email", "email": "bob@example.com"})).sign(),
            "invalid_request",
        ),
        (
            "typed as a logout token",
            s.event(CAEP_SESSION_REVOKED, iss_sub("bob")).header("typ", json!("logout+jwt")).sign(),
            "invalid_request",
        ),
        ("an access token", s.issuer.token().aud(json!(RECEIVER)).sign(), "invalid_request"),
    ];
    for (what, set, err) in &cases {
        let (status, body) = s.push(set, "application/secevent+jwt").await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["err"], *err, "{what}: {body}");
        assert!(body["description"].as_str().is_some_and(|d| !d.is_empty()), "{what}");
    }
    let (status, body) =
        s.push(&s.event(CAEP_SESSION_REVOKED, iss_sub("bob")).sign(), "application/jwt").await;
    assert_eq!((status, &body["err"]), (415, &json!("invalid_request")), "{body}");
    assert!(s.listed().await.is_empty(), "a bad SET changed the list");
    assert_eq!(s.status(&bob).await, 200);

    // session-revoked with a complex subject: the user and the session.
    let subject = json!({"format": "complex", "user": {"format": "opaque", "id": "alice"}, "session": {"format": "opaque", "id": "s-a"}});
    let set = s.event(CAEP_SESSION_REVOKED, subject).sign();
    assert_eq!(s.push(&set, "application/secevent+jwt").await.0, 202);
    assert_eq!(s.status(&alice).await, 401);
    assert_eq!(s.listed().await.len(), 2);
    // Replayed: refused, and nothing more is added.
    let (status, body) = s.push(&set, "application/secevent+jwt").await;
    assert_eq!((status, &body["err"]), (400, &json!("invalid_request")), "{body}");
    assert_eq!(s.listed().await.len(), 2);
    // credential-change with iss_sub: bob is revoked.
    let set = s.event(CAEP_CREDENTIAL_CHANGE, iss_sub("bob")).sign();
    assert_eq!(s.push(&set, "application/secevent+jwt; charset=utf-8").await.0, 202);
    assert_eq!(s.status(&bob).await, 401);
}

/// The issuer signs access tokens, logout tokens and SETs alike, and here all three share one
/// audience (the API's audience is the relying party's client id, as it often is). A logout
/// token or a SET sent to an API route as a bearer token is refused — it is no access token
/// (RFC 8725 §3.11–3.12) — while the receivers still take it for what it is.
#[tokio::test(flavor = "multi_thread")]
async fn logout_tokens_and_sets_are_never_access_tokens_at_the_api() {
    const SHARED: &str = "rp-and-api";
    let issuer = Issuer::builder().audience(SHARED).build().await;
    let upstream = EchoUpstream::start().await;
    let config = format!(
        r#"listen = "127.0.0.1:0"
upstream = "{upstream}"

[admin]
listen = "127.0.0.1:0"

[identity]
subject = "X-User"

{issuer}logout_client_id = "{SHARED}"

[backchannel_logout]

[security_events]
audience = "{SHARED}"
[[security_events.transmitters]]
issuer = "{issuer_url}"
"#,
        upstream = upstream.url(),
        issuer = issuer_toml(&issuer),
        issuer_url = issuer.url(),
    );
    let gw = Gateway::start(&config, &[]).await;
    let client = reqwest::Client::new();
    let api = |token: String| client.get(format!("{}/api/x", gw.url())).bearer_auth(token).send();

    let user = issuer.token().sub("alice").sign();
    assert_eq!(api(user.clone()).await.unwrap().status(), 200);
    let logout = issuer.logout_token(SHARED).sub("alice").sign();
    let untyped_logout = issuer.logout_token(SHARED).sub("alice").without_header("typ").sign();
    let set = issuer
        .security_event(SHARED, CAEP_SESSION_REVOKED, json!({"format": "opaque", "id": "alice"}))
        .claim("sub", json!("alice"))
        .expires_in(300)
        .sign();
    let before = upstream.count();
    for (what, token) in [("logout token", &logout), ("untyped logout token", &untyped_logout), ("SET", &set)]
    {
        let r = api(token.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "a {what} was accepted as an access token");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
    }
    assert_eq!(upstream.count(), before, "refused tokens reached the upstream");

    // The receiver still verifies the logout token as one, and it takes effect.
    let r = client
        .post(format!("{}/backchannel-logout", gw.url()))
        .form(&[("logout_token", logout.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(api(user).await.unwrap().status(), 401, "alice's sessions are logged out");
}

/// The receivers answer at their exact path, and the proxy forwards the normalised path: so a
/// receiver's path spelled with dot segments or doubled slashes is the receiver's too, and
/// never reaches the upstream as `POST /backchannel-logout`.
#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_path_never_reaches_the_upstream_however_spelled() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         {issuer}logout_client_id = \"{CLIENT_ID}\"\n\n[backchannel_logout]\n",
        upstream = upstream.url(),
        issuer = issuer_toml(&issuer),
    );
    let gw = Gateway::start(&config, &[]).await;
    let client = reqwest::Client::new();
    let token = issuer.token().sub("alice").sign();
    for path in
        ["/./backchannel-logout", "//backchannel-logout", "/x/../backchannel-logout", "/%62ackchannel-logout"]
    {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let answer = common::raw_exchange(gw.listen, request.as_bytes()).await;
        // The receiver's own answer (the proxy never says 415): the body must be a form.
        assert!(answer.starts_with("HTTP/1.1 415"), "{path}: not the receiver: {answer}");
    }
    let paths: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert!(paths.is_empty(), "the upstream got {paths:?}");
    // Other paths still go to the upstream.
    let r = client.get(format!("{}/api/x", gw.url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
