//! Forward-auth mode: directly (the Traefik/Caddy headers, Envoy's `ext_authz` HTTP requests,
//! refusals), and end to end behind a real nginx with `auth_request`, which passes the identity
//! headers on to the upstream.
//!
//! nginx comes from Debian's `nginx` package, which `.ci/run` installs. Without it the nginx
//! test fails and says so: a skipped test would hide a broken integration.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Gateway, TempDir, free_port, introspection_toml, issuer_toml, raw_exchange};
use tokengate_testkit::{EchoUpstream, Endpoint, Fault, Issuer};

fn config(issuer: &Issuer, extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
mode = "forward_auth"

[admin]
listen = "127.0.0.1:0"

[identity]
subject = "X-User"
scopes = "X-Scopes"

{issuer}
{introspection}

[[routes]]
path = "/public/*"
mode = "public"

[[routes]]
path = "/admin/*"
mode = "local"
scopes = ["admin"]

{extra}
"#,
        issuer = issuer_toml(issuer),
        introspection = introspection_toml(issuer),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_traefik_and_caddy_style_requests() {
    let issuer = Issuer::start().await;
    let gw = Gateway::start(&config(&issuer, ""), &[]).await;
    let client = reqwest::Client::new();
    let token = issuer.token().sub("carol").scope("read admin").sign();
    let auth = format!("{}/auth", gw.url());

    let r = client.get(&auth).header("authorization", format!("Bearer {token}")).send().await.unwrap();
    assert_eq!(r.status(), 400, "no original request headers");

    let r = client
        .get(&auth)
        .header("x-forwarded-method", "POST")
        .header("x-forwarded-uri", "/admin/users?x=1")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-user"], "carol");
    assert_eq!(r.headers()["x-scopes"], "read admin");

    // Traefik and Caddy pass every client header on: an identity header spelled with `_`
    // (`HTTP_X_USER` to a CGI-style upstream, as `X-User` is) would reach the upstream
    // untouched, since the proxy replaces only the spelling the gateway answers with. Refused,
    // on every route; the mapped spelling itself is the proxy's to replace, as always.
    for (name, path) in [("x_user", "/admin/users"), ("X_Scopes", "/public/x"), ("x_user", "/public/x")] {
        let r = client
            .get(&auth)
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", path)
            .header("authorization", format!("Bearer {token}"))
            .header(name, "mallory")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name} on {path}");
        assert!(r.headers().get("x-user").is_none());
        assert!(r.text().await.unwrap().contains("spelled with '_'"));
    }
    let r = client
        .get(&auth)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/public/x")
        .header("x-user", "mallory")
        .header("x-users", "other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = client
        .get(&auth)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tokengate\"");

    // Spoofing X-Original-* next to the proxy's X-Forwarded-* is refused, not believed.
    let r = client
        .get(&auth)
        .header("x-forwarded-method", "POST")
        .header("x-forwarded-uri", "/admin/users")
        .header("x-original-method", "GET")
        .header("x-original-uri", "/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The original URI must be an origin-form request target: with a fragment, the rules would
    // judge one path and the upstream serve another.
    for target in ["/admin#/x", "/public/x#/../../admin", "/admin x"] {
        let r = client
            .get(&auth)
            .header("x-original-method", "GET")
            .header("x-original-uri", target)
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{target:?}");
        assert!(r.headers().get("x-user").is_none());
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
}

/// The issuer's introspection endpoint fails: the `introspect` route is answered 503 with
/// `Retry-After` and no identity headers (the proxy in front must not let the request through),
/// while a `local` route keeps answering 200.
#[tokio::test(flavor = "multi_thread")]
async fn an_original_path_that_is_not_its_normalised_form_is_never_admitted() {
    // The proxy in front forwards the original URI as the client sent it. Were
    // `/admin/%2e%2e/public/x` judged as `/public/x` (public) and allowed, an upstream that
    // routes on the raw path would serve `/admin/…` with no token checked.
    let issuer = Issuer::start().await;
    let gw = Gateway::start(&config(&issuer, ""), &[]).await;
    let client = reqwest::Client::new();
    let auth = format!("{}/auth", gw.url());
    let admin = issuer.token().sub("grace").scope("read admin").sign();
    let ask = |uri: &str, token: Option<&str>| {
        let request = client.get(&auth).header("x-original-method", "DELETE").header("x-original-uri", uri);
        match token {
            Some(token) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        }
    };

    for uri in [
        "/admin/../public/x",
        "/admin/%2e%2e/public/x",
        "/admin/%2E%2E/public/x",
        "/admin/./../public/x",
        "//public/x",
        "/public/./x",
        "/public/%78",
        "/public/x/..",
    ] {
        let r = ask(uri, None).send().await.unwrap();
        assert_eq!(r.status(), 400, "{uri}: admitted without a token as its normalised form");
        assert!(r.headers().get("x-user").is_none(), "{uri}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("error=\"invalid_request\""), "{uri}: {challenge}");
        let body = r.text().await.unwrap();
        assert!(body.contains("not in normalised form"), "{uri}: {body}");
    }
    // With a token that the normalised path would admit, the same: 400, no identity.
    for uri in ["/admin/./x", "/admin//x", "/public/../admin/x", "/admin/%78"] {
        let r = ask(uri, Some(&admin)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{uri}");
        assert!(r.headers().get("x-user").is_none(), "{uri}");
    }
    // A refusal stays what it is (the rules judged the normalised path, which is /admin/x).
    let r = ask("/public/../admin/x", None).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Paths already in normalised form are answered as always; the query plays no part.
    let r = ask("/public/x?next=/admin/../y", None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = ask("/admin/x", Some(&admin)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-user"], "grace");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_introspection_outage_is_503_in_forward_auth_mode() {
    let issuer = Issuer::start().await;
    let routes = "[[routes]]\npath = \"/risky/*\"\nmode = \"introspect\"\n\n[[routes]]\npath = \"/api/*\"\nmode = \"local\"\n";
    let gw = Gateway::start(&config(&issuer, routes), &[]).await;
    let client = reqwest::Client::new();
    let token = issuer.token().sub("dave").scope("read").sign();
    let auth = format!("{}/auth", gw.url());
    let ask = |uri: &'static str| {
        client
            .get(&auth)
            .header("x-original-method", "GET")
            .header("x-original-uri", uri)
            .header("authorization", format!("Bearer {token}"))
            .send()
    };

    let r = ask("/risky/x").await.unwrap();
    assert_eq!(r.status(), 200, "the issuer is up: introspection confirms the token");
    assert_eq!(r.headers()["x-user"], "dave");

    issuer.set_fault(Endpoint::Introspect, Fault::Status(500));
    // A different token, so no cached answer can stand in for the issuer.
    let fresh = issuer.token().sub("erin").scope("read").sign();
    let r = client
        .get(&auth)
        .header("x-original-method", "GET")
        .header("x-original-uri", "/risky/x")
        .header("authorization", format!("Bearer {fresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some(), "503 without Retry-After");
    assert!(r.headers().get("x-user").is_none(), "an outage must carry no identity");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");

    let r = ask("/api/items").await.unwrap();
    assert_eq!(r.status(), 200, "local routes do not depend on introspection");
    assert_eq!(r.headers()["x-user"], "dave");
}

/// Requests shaped as Envoy's `ext_authz` `http_service` sends them: the original method, to
/// `path_prefix` + the original path and query, with the original `Authorization`.
#[tokio::test(flavor = "multi_thread")]
async fn answers_envoy_style_requests_under_the_path_prefix() {
    let issuer = Issuer::start().await;
    let gw = Gateway::start(&config(&issuer, "[forward_auth]\npath_prefix = \"/ext_authz\""), &[]).await;
    let client = reqwest::Client::new();
    let admin = issuer.token().sub("erin").scope("read admin").sign();
    let reader = issuer.token().sub("frank").scope("read").sign();
    let check =
        |method: reqwest::Method, path: &str| client.request(method, format!("{}/ext_authz{path}", gw.url()));

    let r = check(reqwest::Method::POST, "/admin/users?page=2")
        .header("authorization", format!("Bearer {admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-user"], "erin");
    assert_eq!(r.headers()["x-scopes"], "read admin");
    // Every identity header is set, so Envoy is only asked to drop the `_` spellings.
    assert_eq!(r.headers()["x-envoy-auth-headers-to-remove"], "x_user, x_scopes");

    let r = check(reqwest::Method::DELETE, "/admin/users").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tokengate\"");

    let r = check(reqwest::Method::DELETE, "/admin/users")
        .header("authorization", format!("Bearer {reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));

    // The rest of the path is judged as the library judges any path: normalised first. (Raw,
    // because reqwest would resolve the dots itself.)
    let dotted = |token: &str| {
        format!(
            "GET /ext_authz/public/../admin/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
    };
    let answer = raw_exchange(gw.listen, dotted(&reader).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "/public/../admin/x is /admin/x: {answer}");
    // Envoy forwards the path as sent: one the rules would admit only in its normalised form
    // is refused, never judged as a path the upstream will not see.
    let answer = raw_exchange(gw.listen, dotted(&admin).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "admitted only as /admin/x: {answer}");
    assert!(!answer.to_ascii_lowercase().contains("x-user:"), "{answer}");

    // A public route: allowed without a token, and Envoy is told to drop any identity header
    // the client sent itself.
    let r = check(reqwest::Method::GET, "/public/info").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-user").is_none());
    assert_eq!(r.headers()["x-envoy-auth-headers-to-remove"], "x-user, x-scopes, x_user, x_scopes");

    // A client's own X-Forwarded-* passed along by Envoy must not choose what is judged.
    let r = check(reqwest::Method::POST, "/admin/users")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/public/info")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Outside the prefix, with nothing else describing the original request: 400.
    for path in ["/auth", "/ext_authzadmin", "/ext_authz"] {
        let r = client.get(format!("{}{path}", gw.url())).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }
    // Outside the prefix, the header pairs still work.
    let r = client
        .get(format!("{}/auth", gw.url()))
        .header("x-original-method", "POST")
        .header("x-original-uri", "/admin/users")
        .header("authorization", format!("Bearer {admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// nginx on loopback, killed on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file());
    match on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file())) {
        Some(path) => path,
        None => panic!(
            "nginx is not installed, and this test needs a real one: run .ci/run (it installs the Debian package) or `apt-get install nginx`"
        ),
    }
}

impl Nginx {
    async fn start(gateway: SocketAddr, upstream: SocketAddr) -> Nginx {
        let binary = nginx_binary();
        let dir = TempDir::new("nginx");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /_tokengate {{
            internal;
            proxy_pass http://{gateway}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
        }}
        location / {{
            auth_request /_tokengate;
            auth_request_set $tg_user $upstream_http_x_user;
            auth_request_set $tg_scopes $upstream_http_x_scopes;
            proxy_set_header X-User $tg_user;
            proxy_set_header X-Scopes $tg_scopes;
            proxy_pass http://{upstream};
        }}
    }}
}}
"#
        );
        let conf_path = dir.write("nginx.conf", &conf);
        let child = Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let mut nginx = Nginx { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), dir };
        // Bounded wait for the listening socket; an early exit means a config error.
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(nginx.addr).await.is_ok() {
                return nginx;
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited with {status}: {}", nginx.error_log());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nginx did not start listening: {}", nginx.error_log());
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_real_nginx_with_auth_request() {
    let binary = nginx_binary(); // fails loudly first if nginx is missing
    assert!(binary.is_file());
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let gw = Gateway::start(&config(&issuer, ""), &[]).await;
    let nginx = Nginx::start(gw.listen, upstream.addr()).await;
    let client = reqwest::Client::new();
    let token = issuer.token().sub("dave").scope("read admin").sign();

    // Allow: the identity reaches the upstream, the client's own copy does not.
    let r = client
        .get(format!("{}/admin/reports?page=2", nginx.url()))
        .header("authorization", format!("Bearer {token}"))
        .header("x-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "nginx error log: {}", nginx.error_log());
    let seen = upstream.requests().pop().expect("the upstream got the request");
    assert_eq!(seen.path, "/admin/reports");
    assert_eq!(seen.query.as_deref(), Some("page=2"));
    let users: Vec<_> = seen.headers.iter().filter(|(h, _)| h == "x-user").map(|(_, v)| v.as_str()).collect();
    assert_eq!(users, ["dave"]);
    assert_eq!(seen.header("x-scopes"), Some("read admin"));

    // Deny: no token → 401 with the challenge passed back by nginx.
    let before = upstream.count();
    let r = client.get(format!("{}/admin/reports", nginx.url())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tokengate\"");

    // Bad token → 401 invalid_token.
    let forged = issuer.token().scope("admin").sign_with_foreign_key();
    let r = client
        .get(format!("{}/admin/reports", nginx.url()))
        .header("authorization", format!("Bearer {forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // Insufficient scope → 403.
    let reader = issuer.token().scope("read").sign();
    let r = client
        .delete(format!("{}/admin/reports", nginx.url()))
        .header("authorization", format!("Bearer {reader}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(upstream.count(), before, "refused requests reached the upstream");

    // nginx forwards the request URI as the client sent it: a path the rules would admit
    // only as its normalised form (`/public/x`, public) must not reach the upstream as
    // `/admin/%2e%2e/public/x` unchecked. (Raw, because reqwest would resolve the dots.)
    for path in ["/admin/%2e%2e/public/x", "/admin/../public/x"] {
        let request = format!("DELETE {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(nginx.addr, request.as_bytes()).await;
        assert!(!answer.starts_with("HTTP/1.1 2"), "{path}: {answer}");
        assert_eq!(
            upstream.count(),
            before,
            "{path} reached the upstream as {:?}",
            upstream.requests().pop().map(|r| r.path)
        );
    }

    // Public route: through without a token.
    let r = client.get(format!("{}/public/info", nginx.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.requests().pop().unwrap().header("x-user"), None);

    // The gateway counted what nginx asked.
    let metrics =
        client.get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("tokengate_requests_total{class=\"4xx\",reason=\"insufficient_scope\"} 1"),
        "{metrics}"
    );
}
