//! The axum extractors: `Principal`, `Claims<T>`, `Option<Claims<T>>`, and a handler that uses
//! them without the layer in front.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Claims, Principal, TokenGateBuilder, TokenGateLayer};
use tokengate_testkit::Issuer;
use tokengate_tests::{
    Reply, ServerGuard, T0, build_layer, client, issuer_config, serve_router, start_issuer,
};

#[derive(Debug, Deserialize)]
struct MyClaims {
    sub: String,
    scope: String,
    tenant: String,
    exp: i64,
}

type Calls = Arc<AtomicUsize>;

async fn whoami(State(calls): State<Calls>, principal: Principal) -> Json<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "issuer": principal.issuer(),
        "subject": principal.subject(),
        "client_id": principal.client_id(),
        "scopes": principal.scopes(),
        "expires_at": principal.expires_at(),
        "jti": principal.token_id(),
    }))
}

async fn typed(State(calls): State<Calls>, Claims(claims): Claims<MyClaims>) -> Json<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "sub": claims.sub, "scope": claims.scope, "tenant": claims.tenant, "exp": claims.exp }))
}

async fn maybe_typed(State(calls): State<Calls>, claims: Option<Claims<MyClaims>>) -> Json<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "tenant": claims.map(|Claims(c)| c.tenant) }))
}

async fn maybe_whoami(State(calls): State<Calls>, principal: Option<Principal>) -> Json<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    Json(
        json!({ "subject": principal.as_ref().and_then(|p| p.subject()), "claims": principal.map(|p| p.claims().clone()) }),
    )
}

fn router(calls: Calls) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/optional/maybe", get(maybe_whoami))
        .route("/typed", get(typed))
        .route("/optional/typed", get(maybe_typed))
        .route("/optional/whoami", get(whoami))
        .with_state(calls)
}

struct App {
    issuer: Issuer,
    base_url: String,
    calls: Calls,
    http: reqwest::Client,
    _server: ServerGuard,
}

impl App {
    async fn start(with_layer: bool) -> App {
        let (issuer, clock) = start_issuer().await;
        let calls = Calls::default();
        let mut app = router(calls.clone());
        if with_layer {
            let policy =
                RoutePolicy::new().rule(Rule::new("/optional/*", Requirement::optional()).expect("rule"));
            let layer: TokenGateLayer =
                build_layer(TokenGateBuilder::default().issuer(issuer_config(&issuer)), &clock, policy).await;
            app = app.layer(layer);
        }
        let (addr, guard) = serve_router(app).await;
        App { issuer, base_url: format!("http://{addr}"), calls, http: client(), _server: guard }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        Reply::from_parts(status, headers, &response.bytes().await.expect("body"))
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn principal_extractor_gets_the_verified_caller() {
    let app = App::start(true).await;
    let token = app.issuer.token().claim("jti", json!("jti-1")).scope("read write").sign();
    let reply = app.get("/whoami", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({
            "issuer": app.issuer.url(),
            "subject": "user-1",
            "client_id": "client-1",
            "scopes": ["read", "write"],
            "expires_at": T0 + 300,
            "jti": "jti-1",
        })
    );
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn claims_extractor_deserialises_the_claims() {
    let app = App::start(true).await;
    let token = app.issuer.token().claim("tenant", json!("acme")).scope("read").sign();
    let reply = app.get("/typed", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({ "sub": "user-1", "scope": "read", "tenant": "acme", "exp": T0 + 300 }));
    assert_eq!(app.calls(), 1);
}

/// A verified token whose claims do not fit the handler's type is refused by the extractor
/// (401 `invalid_token`), and the handler does not run.
#[tokio::test]
async fn claims_extractor_refuses_claims_that_do_not_fit_the_type() {
    let app = App::start(true).await;
    let token = app.issuer.token().sign(); // no `tenant`
    let reply = app.get("/typed", Some(&token)).await;
    reply.assert_invalid_token("a claim of the token is invalid");
    assert_eq!(app.calls(), 0);
}

#[tokio::test]
async fn optional_claims_on_an_optional_route_without_a_token_is_none() {
    let app = App::start(true).await;
    let reply = app.get("/optional/typed", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({ "tenant": null }));

    let token = app.issuer.token().claim("tenant", json!("acme")).sign();
    let reply = app.get("/optional/typed", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({ "tenant": "acme" }));
    assert_eq!(app.calls(), 2);
}

#[tokio::test]
async fn optional_principal_is_none_without_a_token_and_the_caller_with_one() {
    let app = App::start(true).await;
    let reply = app.get("/optional/maybe", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({ "subject": null, "claims": null }));

    let (token, claims) = tokengate_tests::mint(app.issuer.token().sub("user-9"));
    let reply = app.get("/optional/maybe", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({ "subject": "user-9", "claims": claims }));

    // On an optional route a token that is sent must still be valid.
    let expired = app.issuer.token().expires_in(-600).sign();
    app.get("/optional/maybe", Some(&expired)).await.assert_invalid_token("the token has expired");
    assert_eq!(app.calls(), 2);
}

#[tokio::test]
async fn optional_principal_without_the_layer_is_still_the_wiring_500() {
    let app = App::start(false).await;
    let reply = app.get("/optional/maybe", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", reply.text);
    assert_eq!(app.calls(), 0);
}

/// A handler that insists on a `Principal` on an optional route gets the layer's own 401 with
/// the bare challenge when no token was sent.
#[tokio::test]
async fn required_principal_on_an_optional_route_without_a_token_is_401() {
    let app = App::start(true).await;
    let reply = app.get("/optional/whoami", None).await;
    reply.assert_missing_token();
    assert_eq!(app.calls(), 0);
}

#[tokio::test]
async fn extractors_without_the_layer_are_a_500_that_names_the_missing_layer() {
    let app = App::start(false).await;
    let token = app.issuer.token().claim("tenant", json!("acme")).sign();
    for path in ["/whoami", "/typed", "/optional/typed"] {
        for token in [None, Some(token.as_str())] {
            let reply = app.get(path, token).await;
            assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}: {}", reply.text);
            assert_eq!(reply.error(), "server_error");
            assert!(
                reply.error_description().contains("TokenGateLayer is not in front of this handler"),
                "{}",
                reply.text
            );
            assert_eq!(reply.www_authenticate(), None);
        }
    }
    assert_eq!(app.calls(), 0);
}
