//! Heap allocations per request on the hot paths, counted with dhat's allocator (not timed):
//! a cold local verification (a token never seen), a warm one (a verified-token cache hit), an
//! `introspect` route with a warm introspection cache, and a refusal.
//!
//! Run: `cargo bench -p tokengate --bench allocations`. Prints a markdown table; the counts are
//! exact and repeatable, unlike times on a shared machine.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use http::{HeaderMap, Method};
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, IntrospectionConfig, IssuerConfig, TokenGateLayer};
use tokengate_testkit::Issuer;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Requests per measurement: the average hides one-off allocations (a cache's first insert).
const ROUNDS: u64 = 1_000;

/// Polls a future that must not wait (keys are loaded, caches warm) to completion, once.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the measured path waited"),
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("a header"));
    headers
}

/// Allocations and bytes per call of `f`, over [`ROUNDS`] calls.
fn per_call(mut f: impl FnMut(u64)) -> (f64, f64) {
    let before = dhat::HeapStats::get();
    for i in 0..ROUNDS {
        f(i);
    }
    let after = dhat::HeapStats::get();
    (
        (after.total_blocks - before.total_blocks) as f64 / ROUNDS as f64,
        (after.total_bytes - before.total_bytes) as f64 / ROUNDS as f64,
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (issuer, layer, uncached) = runtime.block_on(async {
        let issuer = Issuer::start().await;
        let config = || {
            IssuerConfig::new(issuer.url())
                .audience(issuer.audience())
                .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
                .jwks(issuer.jwks().to_string())
        };
        let policy = || {
            RoutePolicy::new()
                .rule(Rule::new("/admin/*", Requirement::introspect()).unwrap())
                .rule(Rule::new("/api/*", Requirement::local().with_scopes(["read"])).unwrap())
        };
        let layer = TokenGateLayer::builder()
            .issuer(config())
            .introspection(IntrospectionConfig::new(
                issuer.introspection_endpoint(),
                issuer.introspection_client_id(),
                issuer.introspection_client_secret(),
            ))
            .policy(policy())
            .build()
            .await
            .unwrap();
        let uncached = TokenGateLayer::builder()
            .issuer(config())
            .policy(policy())
            .token_cache(None)
            .build()
            .await
            .unwrap();
        (issuer, layer, uncached)
    });
    let gate = layer.gate();
    let _profiler = dhat::Profiler::builder().testing().build();

    let token = issuer.token().scope("read").expires_in(3600).sign();
    let headers = bearer(&token);
    let mut rows = Vec::new();

    // Cold: the cache is off, so every call verifies the signature and parses the token.
    let cold = uncached.gate();
    rows.push((
        "cold RS256 (no verified-token cache)",
        per_call(|_| {
            ready(cold.authorize(&Method::GET, "/api/items", &headers)).unwrap();
        }),
    ));
    // Warm: the same token again, from the verified-token cache.
    ready(gate.authorize(&Method::GET, "/api/items", &headers)).unwrap();
    rows.push((
        "warm (verified-token cache hit)",
        per_call(|_| {
            ready(gate.authorize(&Method::GET, "/api/items", &headers)).unwrap();
        }),
    ));
    // Introspect route, introspection cache warm (the first call, outside the count, asked).
    runtime.block_on(gate.authorize(&Method::GET, "/admin/x", &headers)).unwrap();
    rows.push((
        "introspect route, warm caches",
        per_call(|_| {
            ready(gate.authorize(&Method::GET, "/admin/x", &headers)).unwrap();
        }),
    ));
    // A refusal: no token at all.
    let none = HeaderMap::new();
    rows.push((
        "refused: no token",
        per_call(|_| {
            let _ = ready(gate.authorize(&Method::GET, "/api/items", &none));
        }),
    ));

    println!("| path | allocations / request | bytes allocated / request |");
    println!("| --- | --- | --- |");
    for (name, (blocks, bytes)) in rows {
        println!("| {name} | {blocks:.1} | {bytes:.0} |");
    }
}
