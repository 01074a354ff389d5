//! Requests refused for how they carry (or do not carry) a token, and for missing scopes.

use http::header::AUTHORIZATION;
use serde_json::json;
use tokengate::TokenGateBuilder;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate_tests::{API_PATH, Harness, SERVERS, default_harness, issuer_config};

const MALFORMED_HEADER: &str = "malformed Authorization header";

#[tokio::test]
async fn no_authorization_header_gets_the_bare_challenge() {
    for server in SERVERS {
        let h = default_harness(server).await;
        let reply = h.refused_at(API_PATH, None).await;
        reply.assert_missing_token();
        let challenge = reply.www_authenticate().expect("a challenge");
        assert!(!challenge.contains("error="), "{challenge}");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_an_invalid_request() {
    for server in SERVERS {
        let h = default_harness(server).await;
        let token = h.issuer.token().sign();
        // Two valid tokens, and a valid token next to another scheme: both ambiguous.
        for second in [format!("Bearer {token}"), "Basic dXNlcjpwYXNz".to_owned()] {
            let request = h
                .client
                .get(h.url(API_PATH))
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(AUTHORIZATION, second);
            h.refused_request(request).await.assert_invalid_request("more than one Authorization header");
        }
    }
}

#[tokio::test]
async fn another_scheme_counts_as_no_token() {
    for server in SERVERS {
        let h = default_harness(server).await;
        for value in ["Basic dXNlcjpwYXNz", "DPoP abc.def.ghi", "Digest username=\"u\""] {
            let request = h.client.get(h.url(API_PATH)).header(AUTHORIZATION, value);
            h.refused_request(request).await.assert_missing_token();
        }
    }
}

#[tokio::test]
async fn bearer_with_empty_or_invalid_credentials_is_an_invalid_request() {
    for server in SERVERS {
        let h = default_harness(server).await;
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer     ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer \"abc\"",
            "Bearer a=b",
            "Bearer =",
            "Bearer\tabc",
            "Bearer abc!",
            "Bearer a.b.c; x",
        ] {
            let request = h.client.get(h.url(API_PATH)).header(AUTHORIZATION, value);
            let reply = h.refused_request(request).await;
            assert_eq!(reply.status, 400, "{value:?}: {}", reply.text);
            reply.assert_invalid_request(MALFORMED_HEADER);
        }
        // A scheme that is not a token at all.
        let request = h.client.get(h.url(API_PATH)).header(AUTHORIZATION, "Be@rer abc");
        h.refused_request(request).await.assert_invalid_request(MALFORMED_HEADER);
    }
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let h = default_harness(tokengate_tests::Server::Axum).await;
    let (token, claims) = tokengate_tests::mint(h.issuer.token());
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let request = h.client.get(h.url(API_PATH)).header(AUTHORIZATION, format!("{scheme}  {token}"));
        let before = h.calls();
        let reply = h.send(request).await;
        let seen = reply.seen(&h, before);
        tokengate_tests::assert_principal(&seen, &h.issuer.url(), &claims);
    }
}

#[tokio::test]
async fn insufficient_scope_is_403_naming_the_scope() {
    let policy = RoutePolicy::new()
        .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"])).expect("rule"))
        .rule(
            Rule::new("/reports/*", Requirement::local().with_scopes(["reports", "export"])).expect("rule"),
        );
    for server in SERVERS {
        let h = Harness::start(server, policy.clone(), |issuer| {
            TokenGateBuilder::default().issuer(issuer_config(issuer))
        })
        .await;
        let token = h.issuer.token().scope("read write").sign();
        h.refused_at("/admin/users", Some(&token)).await.assert_insufficient_scope("admin");
        // Every required scope is named; holding only some of them is not enough.
        let token = h.issuer.token().scope("reports").sign();
        h.refused_at("/reports/q1", Some(&token)).await.assert_insufficient_scope("reports export");
        // A scope that merely contains the name does not count.
        let token = h.issuer.token().scope("administrator admin:read").sign();
        h.refused_at("/admin/users", Some(&token)).await.assert_insufficient_scope("admin");
        // Only the space separates scopes (RFC 6749 §3.3): a tab, a line break or a form feed
        // does not, so none of these tokens holds `admin`.
        for scope in ["read\tadmin", "read\nadmin", "read\radmin", "read\u{c}admin", "read\u{b}admin"] {
            let token = h.issuer.token().scope(scope).sign();
            h.refused_at("/admin/users", Some(&token)).await.assert_insufficient_scope("admin");
        }
        let token = h.issuer.token().without_claim("scope").claim("scp", json!("read\tadmin")).sign();
        h.refused_at("/admin/users", Some(&token)).await.assert_insufficient_scope("admin");

        let (token, claims) = tokengate_tests::mint(h.issuer.token().scope("read admin"));
        let seen = h.accepted("/admin/users", Some(&token)).await;
        tokengate_tests::assert_principal(&seen, &h.issuer.url(), &claims);
        assert_eq!(seen.principal().scopes, ["read", "admin"]);
    }
}

/// A renderer of the user's own: the body changes, the status and the RFC 6750 challenge stay
/// what the pipeline decided, and the inner service still never runs.
#[tokio::test]
async fn a_custom_error_renderer_changes_the_body_not_the_decision() {
    struct ProblemJson;
    impl tokengate::ErrorRenderer for ProblemJson {
        fn render(&self, error: &tokengate::AuthError, realm: &str) -> http::Response<bytes::Bytes> {
            let body = serde_json::json!({
                "type": "about:blank",
                "status": error.status().as_u16(),
                "title": error.code().unwrap_or("unauthorized"),
            });
            let mut response = http::Response::new(bytes::Bytes::from(body.to_string()));
            *response.status_mut() = error.status();
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/problem+json"),
            );
            if let Some(challenge) = tokengate::error::www_authenticate(error, realm) {
                response.headers_mut().insert(http::header::WWW_AUTHENTICATE, challenge);
            }
            response
        }
    }
    for server in SERVERS {
        let h = Harness::start(server, RoutePolicy::new(), |issuer| {
            TokenGateBuilder::default().issuer(issuer_config(issuer)).error_renderer(ProblemJson).realm("api")
        })
        .await;
        let expired = h.issuer.token().expires_in(-600).sign();
        let reply = h.refused(&expired).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.headers["content-type"], "application/problem+json");
        assert_eq!(
            reply.body,
            serde_json::json!({ "type": "about:blank", "status": 401, "title": "invalid_token" })
        );
        assert!(
            reply
                .www_authenticate()
                .is_some_and(|c| c.starts_with("Bearer realm=\"api\", error=\"invalid_token\"")),
            "{:?}",
            reply.www_authenticate()
        );
    }
}
