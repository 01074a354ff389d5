//! Route rules on the normalised path: tricks that try to slip past a rule, the path the inner
//! service sees, paths refused outright, `introspect` without an endpoint, deny-by-default.
//!
//! reqwest resolves `.`/`..` (and `%2e%2e`) before sending, so these tests send their paths with
//! `Harness::raw_get`, which puts the request-target on the wire exactly as written.

use http::StatusCode;
use tokengate::TokenGateBuilder;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate_tests::{Harness, SERVERS, Server, assert_principal, issuer_config, mint};

const BAD_PATH: &str = "the request path is not allowed";

fn policy() -> RoutePolicy {
    RoutePolicy::new()
        .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"])).expect("rule"))
        .rule(Rule::new("/public/*", Requirement::public()).expect("rule"))
        .rule(Rule::new("/introspected/*", Requirement::introspect()).expect("rule"))
}

async fn harness(server: Server, policy: RoutePolicy) -> Harness {
    Harness::start(server, policy, |issuer| TokenGateBuilder::default().issuer(issuer_config(issuer))).await
}

#[tokio::test]
async fn tricks_that_lead_to_admin_are_caught_by_the_admin_rule() {
    for server in SERVERS {
        let h = harness(server, policy()).await;
        let token = h.issuer.token().scope("read").sign();
        for path in [
            "/admin",
            "/admin/",
            "/admin/users",
            "//admin",
            "//admin//users",
            "/./admin/users",
            "/x/../admin",
            "/%2e%2e/admin",
            "/%2E%2e/admin/users",
            "/public/../admin/x",
            "/public/%2e%2e/admin/x",
            "/%61dmin/users",
            "/../../admin",
        ] {
            let before = h.calls();
            let reply = h.raw_get(path, Some(&token)).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{server:?} {path}: {}", reply.text);
            reply.assert_insufficient_scope("admin");
            assert_eq!(h.calls(), before, "{path}");
        }
    }
}

/// `/admin/../x` *is* `/x` (RFC 3986 §5.2.4): the admin rule does not apply. Where the layer
/// wraps the whole service (hyper here), the inner service is asked for `/x`, never for the raw
/// path, so the gate and the app agree.
#[tokio::test]
async fn dot_segments_out_of_admin_lead_elsewhere_and_the_app_sees_where() {
    let h = harness(Server::Hyper, policy()).await;
    let (token, claims) = mint(h.issuer.token().scope("read"));
    let before = h.calls();
    let seen = h.raw_get("/admin/../x", Some(&token)).await.seen(&h, before);
    assert_eq!(seen.path, "/x");
    assert_principal(&seen, &h.issuer.url(), &claims);
}

#[tokio::test]
async fn with_rewrite_the_inner_service_sees_the_normalised_path_and_the_query() {
    let h = harness(Server::Hyper, policy()).await;
    let admin = h.issuer.token().scope("admin").sign();
    for (raw, normal, token) in [
        ("/public/./a//b?x=1&y=%2F", "/public/a/b?x=1&y=%2F", None),
        ("/public/a/../b/", "/public/b/", None),
        ("//admin/./users/%7Euser?q=%2e%2e", "/admin/users/~user?q=%2e%2e", Some(&admin)),
        ("/api/%e2%82%ac/x", "/api/%E2%82%AC/x", Some(&admin)),
    ] {
        let before = h.calls();
        let seen = h.raw_get(raw, token.map(String::as_str)).await.seen(&h, before);
        assert_eq!(seen.path, normal, "{raw}");
        assert_eq!(seen.principal.is_some(), token.is_some());
    }
}

/// With axum's `Router::layer` routing has already happened when the layer runs, so a
/// rewritten path would be judged on one path while the handler of another runs. The default,
/// `NonCanonicalPath::Refuse`, answers 400 for any admitted request whose raw path is not its
/// normalised form; canonical paths pass as usual.
#[tokio::test]
async fn by_default_non_canonical_paths_are_refused_before_the_app_runs() {
    let h = harness(Server::Axum, policy()).await;
    let admin = h.issuer.token().scope("admin").sign();
    for (raw, token) in [
        ("/public/./a//b?x=1", None),
        ("/public/a/../b/", None),
        ("/admin/../x", Some(&admin)),
        ("//admin/./users/%7Euser", Some(&admin)),
        ("/api/%e2%82%ac/x", Some(&admin)),
        ("/%61pi/x", Some(&admin)),
    ] {
        let before = h.calls();
        let reply = h.raw_get(raw, token.map(String::as_str)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{raw}: {}", reply.text);
        reply.assert_invalid_request("the request path is not in normalised form");
        assert_eq!(h.calls(), before, "{raw}");
    }
    let before = h.calls();
    let seen = h.raw_get("/api/%E2%82%AC/x?q=1", Some(&admin)).await.seen(&h, before);
    assert_eq!(seen.path, "/api/%E2%82%AC/x?q=1");
}

/// The attack the default refusal stops: axum routes `/users/%2e%2e/keys` to the keys handler
/// (with `id = ".."`), while the normalised path `/keys` matches no scoped rule.
#[tokio::test]
async fn axum_distinct_routes_cannot_be_reached_around_their_rule() {
    use axum::routing::get;
    let (issuer, clock) = tokengate_tests::start_issuer().await;
    let policy = RoutePolicy::new()
        .rule(Rule::new("/users/{id}/keys", Requirement::local().with_scopes(["keys"])).expect("rule"))
        .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"])).expect("rule"));
    let layer = tokengate_tests::build_layer(
        TokenGateBuilder::default().issuer(issuer_config(&issuer)),
        &clock,
        policy,
    )
    .await;
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = |name: &'static str| {
        let hits = hits.clone();
        move || {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { name }
        }
    };
    let router = axum::Router::new()
        .route("/users/{id}/keys", get(counted("keys")))
        .route("/admin/{*rest}", get(counted("admin")))
        .route("/keys", get(counted("plain keys")))
        .layer(layer);
    let (addr, _guard) = tokengate_tests::serve_router(router).await;
    let token = issuer.token().scope("read").sign();
    for path in ["/users/%2e%2e/keys", "/users/./keys", "/admin/..", "/admin/%2e%2e/keys", "//users/1/keys"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        let (status, text) = tokengate_tests::raw_exchange(addr, request.as_bytes()).await;
        assert!(status == 400 || status == 403, "{path}: {status} {text}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "{path} reached a handler: {text}");
    }
    // The canonical path with the right scope does reach the handler.
    let keys = issuer.token().scope("keys").sign();
    let request = format!(
        "GET /users/7/keys HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {keys}\r\nConnection: close\r\n\r\n"
    );
    let (status, text) = tokengate_tests::raw_exchange(addr, request.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("keys"), "{text}");
}

#[tokio::test]
async fn ambiguous_paths_are_an_invalid_request() {
    for server in SERVERS {
        let h = harness(server, policy()).await;
        let token = h.issuer.token().scope("admin").sign();
        for path in [
            "/admin%2Fusers",
            "/public%2f..%2fadmin",
            "/public/a%5Cb",
            "/public/%25",
            "/public/%252e%252e/admin",
            "/admin;jsessionid=1/users",
            "/admin%3Bjsessionid=1/users",
            "/public/x;a=b",
            "/public/%00",
            "/public/%zz",
            "/public/%2",
        ] {
            for token in [None, Some(token.as_str())] {
                let before = h.calls();
                let reply = h.raw_get(path, token).await;
                assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{server:?} {path}: {}", reply.text);
                reply.assert_invalid_request(BAD_PATH);
                assert_eq!(h.calls(), before, "{path}");
            }
        }
    }
}

/// A raw `\` never reaches the gate on these servers: hyper refuses the request-target itself.
/// Either way the answer is 400 and the inner service does not run.
#[tokio::test]
async fn raw_backslash_in_the_path_is_refused() {
    for server in SERVERS {
        let h = harness(server, policy()).await;
        let token = h.issuer.token().scope("admin").sign();
        for path in ["/public\\..\\admin", "/admin\\x"] {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
                h.addr
            );
            let (status, text) = h.raw_request_bytes(request.as_bytes()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{server:?} {path}: {text}");
        }
        assert_eq!(h.calls(), 0);
    }
}

#[tokio::test]
async fn introspect_route_without_an_endpoint_is_503_never_local() {
    for server in SERVERS {
        let h = harness(server, policy()).await;
        // A token that would pass every local check, with every scope.
        let token = h.issuer.token().scope("admin read write").sign();
        for path in ["/introspected", "/introspected/x", "//introspected/./x"] {
            let before = h.calls();
            let reply = h.raw_get(path, Some(&token)).await;
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{server:?} {path}: {}", reply.text);
            assert_eq!(reply.headers.get(http::header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"60"[..]));
            assert_eq!(reply.www_authenticate(), None);
            assert_eq!(reply.error(), "temporarily_unavailable");
            assert_eq!(reply.error_description(), "introspection is not configured");
            assert_eq!(h.calls(), before);
        }
        // No token, or a bad one, is still refused as such (not 503, not 200).
        h.refused_at("/introspected/x", None).await.assert_missing_token();
        let expired = h.issuer.token().expires_in(-600).sign();
        h.refused_at("/introspected/x", Some(&expired)).await.assert_invalid_token("the token has expired");
    }
}

#[tokio::test]
async fn deny_by_default_refuses_unmatched_paths_even_with_a_valid_token() {
    let policy = RoutePolicy::new()
        .rule(Rule::new("/api/*", Requirement::local()).expect("rule"))
        .rule(Rule::new("/health", Requirement::public()).expect("rule"))
        .default_requirement(Requirement::deny());
    for server in SERVERS {
        let h = harness(server, policy.clone()).await;
        let (token, claims) = mint(h.issuer.token().scope("admin read write"));
        for path in ["/other", "/", "/API/x", "/apix", "/health/../other", "/healthz"] {
            let before = h.calls();
            let reply = h.raw_get(path, Some(&token)).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{server:?} {path}");
            reply.assert_access_denied();
            assert_eq!(h.calls(), before);
        }
        let seen = h.accepted("/api/x", Some(&token)).await;
        assert_principal(&seen, &h.issuer.url(), &claims);
        let seen = h.accepted("/health", None).await;
        assert_eq!(seen.principal, None);
    }
}
