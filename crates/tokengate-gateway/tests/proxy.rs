//! The reverse proxy, driven through the built binary: decisions, what the upstream receives,
//! upstream failures, streaming, limits on slow and idle connections, cookies, the admin API,
//! metrics and graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Gateway, free_port, introspection_toml, issuer_toml, raw_exchange};
use tokengate_testkit::{EchoUpstream, Issuer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const ADMIN_SECRET: &str = "test-admin-secret-0123456789";

fn config(issuer: &Issuer, upstream: &str, extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
upstream = "{upstream}"
admin_token_env = "TG_TEST_ADMIN"
{extra}

[admin]
listen = "127.0.0.1:0"

[identity]
subject = "X-User"
scopes = "X-Scopes"
client_id = "X-Client-Id"
claims = {{ email = "X-Email" }}

{issuer}
{introspection}

[[routes]]
path = "/public/*"
mode = "public"

[[routes]]
path = "/admin/*"
methods = ["POST", "DELETE"]
mode = "introspect"
scopes = ["admin"]

[[routes]]
path = "/api/*"
mode = "local"
scopes = ["read"]
"#,
        issuer = issuer_toml(issuer),
        introspection = introspection_toml(issuer),
    )
}

async fn start(issuer: &Issuer, upstream: &str, extra: &str) -> Gateway {
    Gateway::start(&config(issuer, upstream, extra), &[("TG_TEST_ADMIN", ADMIN_SECRET)]).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread")]
async fn allows_and_refuses_like_the_library() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = start(&issuer, &upstream.url(), "").await;
    let client = reqwest::Client::new();
    let good = issuer.token().scope("read").sign();

    let r = client
        .get(format!("{}/api/items", gw.url()))
        .header("authorization", bearer(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = client.get(format!("{}/api/items", gw.url())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tokengate\"");

    let expired = issuer.token().scope("read").expires_in(-120).sign();
    let r = client
        .get(format!("{}/api/items", gw.url()))
        .header("authorization", bearer(&expired))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    let no_scope = issuer.token().scope("write").sign();
    let r = client
        .get(format!("{}/api/items", gw.url()))
        .header("authorization", bearer(&no_scope))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));

    let r = client.get(format!("{}/public/x", gw.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Introspected route: allowed, then refused once the issuer revokes the token.
    let admin = issuer.token().scope("admin").sign();
    let url = format!("{}/admin/users", gw.url());
    assert_eq!(client.post(&url).header("authorization", bearer(&admin)).send().await.unwrap().status(), 200);
    issuer.revoke_token(&admin);
    assert_eq!(client.post(&url).header("authorization", bearer(&admin)).send().await.unwrap().status(), 401);

    // Ambiguous paths never reach the upstream.
    let before = upstream.count();
    let r = client
        .get(format!("{}/api/a%2Fb", gw.url()))
        .header("authorization", bearer(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(upstream.count(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_sees_identity_and_clean_headers() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    // The test client is the trusted proxy in front: its X-Forwarded-For chain is extended.
    let gw = start(&issuer, &upstream.url(), "trusted_proxies = [\"127.0.0.1\"]").await;
    let token =
        issuer.token().sub("alice").scope("read write").claim("email", "alice@example.com".into()).sign();

    // A raw HTTP/1.1 request, so hop-by-hop headers and duplicates go out exactly as written.
    let request = format!(
        "GET /api/./x//y/../items?b=2&a=1 HTTP/1.1\r\n\
         Host: api.example.test\r\n\
         Authorization: Bearer {token}\r\n\
         X-User: mallory\r\n\
         x-user: mallory-again\r\n\
         X-Scopes: admin\r\n\
         X-Email: mallory@example.com\r\n\
         X-Original-URI: /admin/secret\r\n\
         X-HTTP-Method-Override: DELETE\r\n\
         X-Forwarded-Method: DELETE\r\n\
         X-Forwarded-For: 203.0.113.7\r\n\
         X-Forwarded-Host: evil.example\r\n\
         Connection: keep-alive, X-Hop\r\n\
         X-Hop: secret-hop\r\n\
         Keep-Alive: timeout=5\r\n\
         TE: trailers\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         Content-Length: 0\r\n\
         \r\n"
    );
    let response = raw_exchange(gw.listen, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let seen = upstream.requests().pop().expect("the upstream got the request");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/api/x/items", "the normalised path is forwarded");
    assert_eq!(seen.query.as_deref(), Some("b=2&a=1"));
    let all = |name: &str| {
        seen.headers.iter().filter(|(h, _)| h == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>()
    };
    assert_eq!(all("x-user"), ["alice"]);
    assert_eq!(all("x-scopes"), ["read write"]);
    assert_eq!(all("x-client-id"), ["client-1"]);
    assert_eq!(all("x-email"), ["alice@example.com"]);
    for gone in [
        "authorization",
        "x-original-uri",
        "x-http-method-override",
        "x-forwarded-method",
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
    ] {
        assert!(all(gone).is_empty(), "{gone} reached the upstream: {:?}", seen.headers);
    }
    assert_eq!(all("x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(all("x-forwarded-host"), ["api.example.test"]);
    assert_eq!(all("x-forwarded-proto"), ["http"]);
    assert_eq!(all("host"), [upstream.addr().to_string().as_str()]);

    // On a public route too, inbound identity headers never pass.
    let r = reqwest::Client::new()
        .get(format!("{}/public/p", gw.url()))
        .header("x-user", "root")
        .header("x-scopes", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(seen.header("x-user"), None);
    assert_eq!(seen.header("x-scopes"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofable_headers_never_reach_the_upstream() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = start(&issuer, &upstream.url(), "").await;
    let token = issuer.token().sub("alice").scope("read").sign();

    // Underscore spellings (read as HTTP_X_USER etc. by CGI, WSGI, PHP, Rack), Forwarded and
    // X-Real-IP, and an X-Forwarded-For from a peer that is not a trusted proxy.
    let request = format!(
        "GET /api/items HTTP/1.1\r\n\
         Host: api.example.test\r\n\
         Authorization: Bearer {token}\r\n\
         X_User: admin\r\n\
         x_scopes: admin\r\n\
         X-Client_Id: evil-client\r\n\
         X_Email: root@example.com\r\n\
         X_Original_URI: /admin/secret\r\n\
         X_HTTP_Method_Override: DELETE\r\n\
         Forwarded: for=203.0.113.7;proto=https\r\n\
         X-Real-IP: 203.0.113.7\r\n\
         X_Real_IP: 203.0.113.8\r\n\
         X_Forwarded_For: 203.0.113.9\r\n\
         X-Forwarded-For: 203.0.113.10\r\n\
         X-Innocent_Header: kept\r\n\
         Content-Length: 0\r\n\
         \r\n"
    );
    let response = raw_exchange(gw.listen, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let seen = upstream.requests().pop().expect("the upstream got the request");
    let names: Vec<&str> = seen.headers.iter().map(|(h, _)| h.as_str()).collect();
    for gone in [
        "x_user",
        "x_scopes",
        "x-client_id",
        "x_email",
        "x_original_uri",
        "x_http_method_override",
        "forwarded",
        "x-real-ip",
        "x_real_ip",
        "x_forwarded_for",
    ] {
        assert!(!names.contains(&gone), "{gone} reached the upstream: {:?}", seen.headers);
    }
    assert_eq!(seen.header("x-user"), Some("alice"));
    assert_eq!(seen.header("x-scopes"), Some("read"));
    assert_eq!(seen.header("x-innocent_header"), Some("kept"), "other underscore headers pass");
    // Not a trusted proxy: the chain it sent is replaced by its address.
    let chain: Vec<&str> =
        seen.headers.iter().filter(|(h, _)| h == "x-forwarded-for").map(|(_, v)| v.as_str()).collect();
    assert_eq!(chain, ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scopes_header_holds_only_scope_tokens_the_issuer_listed() {
    // RFC 6749 §3.3: scopes are separated by spaces only. "read\twrite" is no scope at all,
    // not `read` and `write`: neither the route's check nor the upstream may see it split.
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = start(&issuer, &upstream.url(), "").await;
    let client = reqwest::Client::new();
    let get = |token: String| client.get(format!("{}/api/items", gw.url())).bearer_auth(token).send();

    let r = get(issuer.token().sub("alice").scope("write\tread").sign()).await.unwrap();
    assert_eq!(r.status(), 403, "`read` is not among the token's scopes");
    let r = get(issuer.token().sub("alice").scope("admin\nx read").sign()).await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.requests().pop().expect("the upstream got the request");
    assert_eq!(seen.header("x-scopes"), Some("read"));
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_is_forwarded_only_when_configured_and_http2_works() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = start(&issuer, &upstream.url(), "forward_authorization = true").await;
    let token = issuer.token().scope("read").sign();
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = client
        .get(format!("{}/api/h2", gw.url()))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(seen.header("authorization"), Some(bearer(&token).as_str()));
    assert_eq!(seen.path, "/api/h2");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_stream_through() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = start(&issuer, &upstream.url(), "").await;
    let token = issuer.token().scope("read").sign();
    let body = vec![b'x'; 3 * 1024 * 1024];
    let r = reqwest::Client::new()
        .post(format!("{}/api/upload", gw.url()))
        .header("authorization", bearer(&token))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header("content-length"), Some("3145728"));
    assert_eq!(seen.body_len, 3 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread")]
async fn response_bodies_stream_through() {
    const FIRST: usize = 64 * 1024;
    const CHUNK: usize = 256 * 1024;
    const CHUNKS: usize = 32;
    let issuer = Issuer::start().await;
    // An upstream that sends the first chunk, then waits until the client has it before it
    // sends the rest: the client only gets there if the gateway streams rather than buffers.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let first_arrived = Arc::new(Notify::new());
    let go_on = first_arrived.clone();
    let server = tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.unwrap();
        read_head(&mut stream).await;
        stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
        stream.write_all(format!("{FIRST:x}\r\n").as_bytes()).await.unwrap();
        stream.write_all(&[b'f'; FIRST]).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        go_on.notified().await;
        for i in 0..CHUNKS {
            stream.write_all(format!("{CHUNK:x}\r\n").as_bytes()).await.unwrap();
            stream.write_all(&[b'a' + (i % 26) as u8; CHUNK]).await.unwrap();
            stream.write_all(b"\r\n").await.unwrap();
        }
        stream.write_all(b"0\r\n\r\n").await.unwrap();
    });

    let gw = start(&issuer, &upstream_url, "").await;
    let token = issuer.token().scope("read").sign();
    let mut r = reqwest::Client::new()
        .get(format!("{}/api/download", gw.url()))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = Vec::new();
    while body.len() < FIRST {
        let chunk = tokio::time::timeout(common::STARTUP_TIMEOUT, r.chunk())
            .await
            .expect("the first chunk was held back: the gateway buffers the response")
            .unwrap()
            .expect("the body ended early");
        body.extend_from_slice(&chunk);
    }
    first_arrived.notify_one();
    while let Some(chunk) = r.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body.len(), FIRST + CHUNKS * CHUNK);
    assert!(body[..FIRST].iter().all(|&b| b == b'f'));
    for (i, chunk) in body[FIRST..].chunks(CHUNK).enumerate() {
        assert!(chunk.iter().all(|&b| b == b'a' + (i % 26) as u8), "chunk {i} garbled");
    }
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_upstream_is_502_and_hanging_upstream_is_504() {
    let issuer = Issuer::start().await;
    let token = issuer.token().scope("read").sign();
    let client = reqwest::Client::new();

    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = start(&issuer, &dead, "").await;
    let r = client
        .get(format!("{}/api/x", gw.url()))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    drop(gw);

    // An upstream that accepts and reads but never answers.
    let hanging = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}", hanging.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hanging.accept().await {
            held.push(stream);
        }
    });
    let gw = start(&issuer, &hanging_url, "[timeouts]\nupstream_response = \"300ms\"").await;
    let r = client
        .get(format!("{}/api/x", gw.url()))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "gateway_timeout");

    let metrics =
        client.get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("tokengate_requests_total{class=\"5xx\",reason=\"upstream_timeout\"} 1"),
        "{metrics}"
    );
    holder.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_oversized_request_heads_are_cut_off() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = start(&issuer, &upstream.url(), "max_header_bytes = 16384\n[timeouts]\nheader_read = \"300ms\"")
        .await;

    // Slowloris: half a request head, then silence. The gateway must close the connection.
    let mut stream = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    stream.write_all(b"GET /api/x HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the connection was held open");

    let r = reqwest::Client::new()
        .get(format!("{}/api/x", gw.url()))
        .header("x-big", "a".repeat(20 * 1024))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    assert_eq!(upstream.count(), 0);
}

/// Reads from `stream` until the peer closes it (bounded, so a connection held open fails the
/// test instead of hanging it) and returns what arrived.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    match tokio::time::timeout(common::STARTUP_TIMEOUT, stream.read_to_end(&mut buf)).await {
        Ok(Ok(_)) => buf,
        // A reset is a close too.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => buf,
        Ok(Err(e)) => panic!("reading failed: {e}"),
        Err(_) => panic!("the connection was held open"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_and_idle_connections_are_closed() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let extra = "[timeouts]\nheader_read = \"300ms\"\nhttp2_keep_alive = \"300ms\"";
    let gw = start(&issuer, &upstream.url(), extra).await;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    // Connects and sends nothing: closed before the protocol is even known.
    let mut silent = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    assert!(read_until_closed(&mut silent).await.is_empty());

    // Half of the HTTP/2 preface, then silence.
    let mut half = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    half.write_all(&PREFACE[..12]).await.unwrap();
    assert!(read_until_closed(&mut half).await.is_empty());

    // The whole preface, then silence: the gateway's SETTINGS and PING go unanswered.
    let mut preface_only = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    preface_only.write_all(PREFACE).await.unwrap();
    let frames = read_until_closed(&mut preface_only).await;
    assert_eq!(frames.get(3), Some(&0x4), "the gateway spoke HTTP/2 first (a SETTINGS frame)");

    // HTTP/1 keep-alive: one request answered, then an idle connection is closed.
    let mut idle = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    idle.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_are_closed() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    // A long header_read, so that only the limit can close the second connection.
    let extra = "[limits]\nmax_connections = 1\n[timeouts]\nheader_read = \"1h\"";
    let gw = start(&issuer, &upstream.url(), extra).await;

    let holder = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    let mut refused = tokio::net::TcpStream::connect(gw.listen).await.unwrap();
    // Refused before a byte was read: nothing comes back, whatever the client sends.
    let _ = refused.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(read_until_closed(&mut refused).await.is_empty());
    assert_eq!(upstream.count(), 0);

    // The admin listener has its own limit, and counts.
    let client = reqwest::Client::new();
    let metrics =
        client.get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tokengate_connections_open{listener=\"main\"} 1"), "{metrics}");
    assert!(metrics.contains("tokengate_connections_refused_total{listener=\"main\"} 1"), "{metrics}");

    // Once the holder leaves, its slot is free again (bounded poll: the gateway notices the
    // close on its own schedule).
    drop(holder);
    let url = format!("{}/public/x", gw.url());
    let mut served = false;
    for _ in 0..500 {
        if let Ok(r) = reqwest::Client::new().get(&url).send().await
            && r.status() == 200
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served, "the freed slot was never reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_tokens_and_csrf() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let extra = "[cookies]\nname = \"tg_session\"\nallowed_origins = [\"https://app.example.com\"]";
    let gw = start(&issuer, &upstream.url(), extra).await;
    let token = issuer.token().scope("read").sign();
    let client = reqwest::Client::new();
    let url = format!("{}/api/items", gw.url());
    let cookie = format!("theme=dark; tg_session={token}");

    let r = client.get(&url).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(seen.header("x-user"), Some("user-1"));
    assert_eq!(seen.header("cookie"), Some("theme=dark"), "the token cookie is not forwarded");

    let r = client.post(&url).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "csrf");

    let r = client
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(&url)
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A header token needs no origin check; a doubled cookie is refused.
    let r = client.post(&url).header("authorization", bearer(&token)).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Authorization and the cookie together: the header's token decides, and the cookie's
    // still never reaches the upstream.
    let r = client
        .get(&url)
        .header("authorization", bearer(&token))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(seen.header("cookie"), Some("theme=dark"), "the token cookie leaked next to Authorization");
    assert_eq!(seen.header("authorization"), None);
    let r =
        client.get(&url).header("cookie", format!("tg_session={token}; tg_session=x")).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_health_metrics_and_revocations() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = start(&issuer, &upstream.url(), "").await;
    let client = reqwest::Client::new();
    let admin = gw.admin_url();

    assert_eq!(client.get(format!("{admin}/healthz")).send().await.unwrap().status(), 200);
    let ready: serde_json::Value =
        client.get(format!("{admin}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["issuers"][0]["issuer"], issuer.url());
    assert_eq!(ready["issuers"][0]["stale"], false);

    let token = issuer.token().scope("read admin").sign();
    let api = format!("{}/api/x", gw.url());
    assert_eq!(client.get(&api).header("authorization", bearer(&token)).send().await.unwrap().status(), 200);
    let admin_route = format!("{}/admin/x", gw.url());
    assert_eq!(
        client.post(&admin_route).header("authorization", bearer(&token)).send().await.unwrap().status(),
        200
    );

    let revocations = format!("{admin}/revocations");
    let body = serde_json::json!({"kind": "token", "token": token});
    assert_eq!(client.post(&revocations).json(&body).send().await.unwrap().status(), 401);
    let wrong =
        client.post(&revocations).header("authorization", "Bearer nope").json(&body).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let r = client
        .post(&revocations)
        .header("authorization", bearer(ADMIN_SECRET))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Immediate, on the local route too.
    assert_eq!(client.get(&api).header("authorization", bearer(&token)).send().await.unwrap().status(), 401);
    let list: serde_json::Value = client
        .get(&revocations)
        .header("authorization", bearer(ADMIN_SECRET))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["revocations"][0]["kind"], "token");
    assert_eq!(list["revocations"][0]["issuer"], issuer.url());

    // By subject.
    let other = issuer.token().sub("bob").scope("read").sign();
    assert_eq!(client.get(&api).header("authorization", bearer(&other)).send().await.unwrap().status(), 200);
    let body = serde_json::json!({"kind": "subject", "issuer": issuer.url(), "subject": "bob"});
    let r = client
        .post(&revocations)
        .header("authorization", bearer(ADMIN_SECRET))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(client.get(&api).header("authorization", bearer(&other)).send().await.unwrap().status(), 401);

    let metrics = client.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    for expected in [
        "tokengate_requests_total{class=\"2xx\",reason=\"allowed\"} 3",
        "tokengate_requests_total{class=\"4xx\",reason=\"invalid_token\"} 2",
        "tokengate_request_duration_seconds_bucket{le=\"+Inf\"} 5",
        "tokengate_request_duration_seconds_count 5",
        &format!("tokengate_jwks_fetches_total{{issuer=\"{}\"}} 1", issuer.url()),
        &format!("tokengate_jwks_fetch_failures_total{{issuer=\"{}\"}} 0", issuer.url()),
        "tokengate_introspection_calls_total 1",
        "tokengate_introspection_cache_misses_total",
        "tokengate_introspection_breaker_state 0",
        "tokengate_revocations 2",
        "# TYPE tokengate_request_duration_seconds histogram",
    ] {
        assert!(metrics.contains(expected), "missing {expected:?} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_api_is_absent_without_a_secret() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let text = config(&issuer, &upstream.url(), "").replace("admin_token_env = \"TG_TEST_ADMIN\"", "");
    let gw = Gateway::start(&text, &[]).await;
    let r = reqwest::Client::new()
        .get(format!("{}/revocations", gw.admin_url()))
        .header("authorization", bearer(ADMIN_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_requests_in_flight() {
    let issuer = Issuer::start().await;
    // An upstream that answers only when the test says so.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (a, r) = (arrived.clone(), release.clone());
    let server = tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.unwrap();
        read_head(&mut stream).await;
        a.notify_one();
        r.notified().await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone")
            .await
            .unwrap();
    });

    let mut gw = start(&issuer, &upstream_url, "[timeouts]\nshutdown_grace = \"20s\"").await;
    let token = issuer.token().scope("read").sign();
    let url = format!("{}/api/slow", gw.url());
    let in_flight = tokio::spawn(async move {
        let r = reqwest::Client::new().get(url).header("authorization", bearer(&token)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    });
    arrived.notified().await;
    gw.terminate();

    // New connections are refused once the listener is closed (bounded poll).
    let mut refused = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(gw.listen).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the gateway kept accepting after SIGTERM");

    release.notify_one();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "done");
    assert!(gw.wait_exit().await.success());
    server.await.unwrap();
}

/// An in-flight request that never finishes does not hold the gateway past its grace period:
/// after `shutdown_grace` the connection is cut and the process exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cuts_requests_still_running_after_the_grace_period() {
    let issuer = Issuer::start().await;
    // An upstream that takes the request and never answers.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let arrived = Arc::new(Notify::new());
    let a = arrived.clone();
    let _server = tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.unwrap();
        read_head(&mut stream).await;
        a.notify_one();
        std::future::pending::<()>().await;
        drop(stream);
    });

    let mut gw =
        start(&issuer, &upstream_url, "[timeouts]\nshutdown_grace = \"200ms\"\nupstream_response = \"60s\"")
            .await;
    let token = issuer.token().scope("read").sign();
    let url = format!("{}/api/forever", gw.url());
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new().get(url).header("authorization", bearer(&token)).send().await
    });
    arrived.notified().await;
    gw.terminate();

    // The gateway exits (well before the 60 s upstream timeout could answer the request), and
    // the client sees its connection closed rather than an answer.
    assert!(gw.wait_exit().await.success());
    let outcome = in_flight.await.unwrap();
    assert!(outcome.is_err(), "the request was answered: {:?}", outcome.map(|r| r.status()));
}

/// Reads a request head, byte by byte (the requests these upstreams get have no body).
async fn read_head(stream: &mut tokio::net::TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
}

/// RFC 9112 §3.2: a server answers 400 to an HTTP/1.1 request without `Host`, with more than
/// one, or with an invalid one. The gateway also turns the host into `X-Forwarded-Host`, which
/// upstreams build links from (password resets), so nothing else may pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_repeated_or_invalid_host_is_400() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = start(&issuer, &upstream.url(), "").await;
    for request in [
        "GET /public/a HTTP/1.1\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: evil.example/reset?x=\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: a@evil.example\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n",
        // Valid to the URI grammar, but a list to an upstream that takes its last item.
        "GET /public/a HTTP/1.1\r\nHost: a.example,evil.example\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: a.example:evil\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: a.example:+443\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: \r\n\r\n",
        "GET http://a@evil.example/public/a HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        "GET /public/a HTTP/1.0\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    ] {
        let answer = raw_exchange(gw.listen, request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.0 400"),
            "{request:?} → {answer}"
        );
        assert!(answer.contains("Host") || answer.contains("host"), "{request:?} → {answer}");
    }
    assert_eq!(upstream.count(), 0, "{:?}", upstream.requests());

    // A valid host passes and becomes X-Forwarded-Host; for an absolute-form target the
    // target's authority is the host (RFC 9112 §3.2.2); HTTP/1.0 may omit it.
    for (request, forwarded) in [
        ("GET /public/a HTTP/1.1\r\nHost: shop.example:8443\r\n\r\n", Some("shop.example:8443")),
        ("GET /public/a HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", Some("[::1]:80")),
        ("GET http://shop.example/public/a HTTP/1.1\r\nHost: other.example\r\n\r\n", Some("shop.example")),
        ("GET /public/a HTTP/1.0\r\n\r\n", None),
    ] {
        let answer = raw_exchange(gw.listen, request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "{request:?} → {answer}"
        );
        let seen = upstream.requests().pop().expect("the upstream got the request");
        assert_eq!(seen.header("x-forwarded-host"), forwarded, "{request:?}");
    }
}

/// RFC 9112 §6.3: a response with both `Transfer-Encoding` and `Content-Length` is framed by
/// the former; an intermediary must drop the latter. Forwarded, the stale length cut the body
/// short or left the client waiting for bytes that never came.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_content_length_next_to_transfer_encoding_is_not_forwarded() {
    let issuer = Issuer::start().await;
    for length in [100, 1] {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut stream, _) = upstream.accept().await.unwrap();
            read_head(&mut stream).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
            // Keep the connection open: the client must not need a close to see the end.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let gw = start(&issuer, &upstream_url, "").await;
        let r = tokio::time::timeout(
            Duration::from_secs(4),
            reqwest::Client::new().get(format!("{}/public/x", gw.url())).send(),
        )
        .await
        .expect("answered in time")
        .unwrap();
        assert_eq!(r.status(), 200, "Content-Length: {length}");
        assert!(r.headers().get("content-length").is_none_or(|v| v == "2"), "{:?}", r.headers());
        let body =
            tokio::time::timeout(Duration::from_secs(4), r.text()).await.expect("the whole body").unwrap();
        assert_eq!(body, "ok", "Content-Length: {length}");
        server.abort();
    }
}

/// The gateway strips `Upgrade` from requests, so an upstream's 101 is a protocol switch no one
/// asked for (RFC 9110 §15.2.2): 502, and no tunnel.
#[tokio::test(flavor = "multi_thread")]
async fn an_unrequested_protocol_switch_is_502() {
    let issuer = Issuer::start().await;
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, _) = upstream.accept().await.unwrap();
        read_head(&mut stream).await;
        let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        stream.write_all(answer.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let gw = start(&issuer, &upstream_url, "").await;
    let request = "GET /public/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let answer = raw_exchange(gw.listen, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    server.abort();
}

/// RFC 9113 §8.2.3: an HTTP/2 client may split `Cookie` into crumbs; they are joined with
/// "; " before the request goes to the HTTP/1.1 upstream, which expects one field.
#[tokio::test(flavor = "multi_thread")]
async fn http2_cookie_crumbs_reach_the_upstream_as_one_field() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = start(&issuer, &upstream.url(), "").await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = client
        .get(format!("{}/public/h2", gw.url()))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let seen = upstream.requests().pop().expect("the upstream got the request");
    let cookies: Vec<&str> =
        seen.headers.iter().filter(|(n, _)| n == "cookie").map(|(_, v)| v.as_str()).collect();
    assert_eq!(cookies, ["a=1; b=2"]);
}
