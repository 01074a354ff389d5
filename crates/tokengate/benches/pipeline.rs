//! Micro benchmarks of the pipeline, each next to its floor measured in the same run:
//!
//! - `verify/<alg>/raw_aws_lc`: the signature check alone, aws-lc-rs with a pre-parsed key —
//!   the floor of any verifier;
//! - `verify/<alg>/jsonwebtoken_decode`: `jsonwebtoken::decode` with a `DecodingKey` made once;
//! - `verify/<alg>/tokengate`: tokengate's whole local verification of a token it has not seen
//!   (header, issuer, signature, claims, principal);
//! - `request/first_seen_RS256/*`: a token never seen, through the whole decision, with the
//!   verified-token cache on (verify + insert) and off;
//! - `request/*`: the whole per-request decision (`Gate::authorize`: path, route, token,
//!   verification or cache, scopes), for a local and an introspected route;
//! - `policy/100_rules`, `extract/authorization`.
//!
//! Run: `cargo bench -p tokengate --bench pipeline`. Report ratios against the floor of the
//! same run; absolute times on shared machines swing by tens of percent.

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use serde_json::Value;
use tokengate::policy::{NormalizedPath, Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, IntrospectionConfig, IssuerConfig, TokenGateLayer};
use tokengate_testkit::{Issuer, KeyKind};

mod common;
use common::raw_key;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    issuer: Issuer,
    layer: TokenGateLayer,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (issuer, layer) = runtime.block_on(async {
        let issuer = Issuer::start().await;
        let layer = TokenGateLayer::builder()
            .issuer(
                IssuerConfig::new(issuer.url())
                    .audience(issuer.audience())
                    .algorithms([Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA])
                    .jwks_url(issuer.jwks_uri()),
            )
            .introspection(
                IntrospectionConfig::new(
                    issuer.introspection_endpoint(),
                    issuer.introspection_client_id(),
                    issuer.introspection_client_secret(),
                )
                .issuer(issuer.url()),
            )
            .policy(RoutePolicy::new().rule(Rule::new("/admin/*", Requirement::introspect()).unwrap()))
            .build()
            .await
            .unwrap();
        (issuer, layer)
    });
    Fixture { runtime, issuer, layer }
}

fn bench_verify(c: &mut Criterion) {
    let f = fixture();
    let issuers = f.layer.gate().issuers();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(f.issuer.jwks()).unwrap();
    for (alg, kind) in [
        (Algorithm::RS256, KeyKind::Rsa),
        (Algorithm::ES256, KeyKind::P256),
        (Algorithm::EdDSA, KeyKind::Ed25519),
    ] {
        let token = f.issuer.token().alg(alg).expires_in(3600).sign();
        let (message, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let key = raw_key(&f.issuer, kind, alg);
        let mut group = c.benchmark_group(format!("verify/{alg:?}"));
        group.bench_function("raw_aws_lc", |b| {
            b.iter(|| key.verify_sig(black_box(message.as_bytes()), black_box(&sig)).unwrap())
        });

        let decoding = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&f.issuer.kid(kind)).unwrap()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_audience(&[f.issuer.audience()]);
        validation.set_issuer(&[f.issuer.url()]);
        group.bench_function("jsonwebtoken_decode", |b| {
            b.iter(|| jsonwebtoken::decode::<Value>(black_box(&token), &decoding, &validation).unwrap())
        });

        let now = f.layer.gate().now();
        group.bench_function("tokengate", |b| {
            b.iter(|| tokengate::jwt::verify(black_box(&token), issuers, now, 8192).unwrap())
        });
        group.finish();
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    headers
}

fn bench_requests(c: &mut Criterion) {
    let f = fixture();
    let gate = f.layer.gate().clone();
    let token = f.issuer.token().scope("read admin").expires_in(3600).sign();
    let headers = bearer(&token);
    let mut group = c.benchmark_group("request");
    group.bench_function("local_route_same_token", |b| {
        b.iter(|| {
            f.runtime.block_on(gate.authorize(&Method::GET, black_box("/api/items/42"), &headers)).unwrap()
        })
    });
    f.runtime.block_on(gate.authorize(&Method::GET, "/admin/x", &headers)).unwrap();
    group.bench_function("introspect_route_warm_cache", |b| {
        b.iter(|| f.runtime.block_on(gate.authorize(&Method::GET, black_box("/admin/x"), &headers)).unwrap())
    });
    group.finish();
}

/// A token never seen before, through the whole decision, with the verified-token cache on
/// (verification + insertion) and off (verification only). Each iteration takes the next of
/// `TOKENS` pre-minted tokens; when they run out a fresh layer is built, outside the timing.
fn bench_first_seen(c: &mut Criterion) {
    const TOKENS: usize = 2_000;
    let f = fixture();
    let tokens: Vec<HeaderMap> = (0..TOKENS)
        .map(|i| bearer(&f.issuer.token().sub(&format!("user-{i}")).expires_in(3600).sign()))
        .collect();
    let build = |cache: bool| {
        let builder = TokenGateLayer::builder()
            .issuer(
                IssuerConfig::new(f.issuer.url())
                    .audience(f.issuer.audience())
                    .algorithms([Algorithm::RS256])
                    .jwks_url(f.issuer.jwks_uri()),
            )
            .policy(RoutePolicy::new().rule(Rule::new("/api/*", Requirement::local()).unwrap()));
        let builder = if cache { builder } else { builder.token_cache(None) };
        f.runtime.block_on(builder.build()).unwrap().gate().clone()
    };
    let mut group = c.benchmark_group("request/first_seen_RS256");
    for (name, cache) in [("cache_on", true), ("cache_off", false)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let gate = build(cache);
                    let n = left.min(TOKENS);
                    let start = std::time::Instant::now();
                    for headers in &tokens[..n] {
                        f.runtime.block_on(gate.authorize(&Method::GET, "/api/items", headers)).unwrap();
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    group.finish();
}

fn bench_policy(c: &mut Criterion) {
    let mut policy = RoutePolicy::new();
    for i in 0..100 {
        policy =
            policy.rule(Rule::new(&format!("/service-{i}/{{id}}/items/*"), Requirement::local()).unwrap());
    }
    let last = NormalizedPath::new("/service-99/42/items/7").unwrap();
    let none = NormalizedPath::new("/elsewhere/42").unwrap();
    let mut group = c.benchmark_group("policy/100_rules");
    group.bench_function("match_last", |b| {
        b.iter(|| policy.requirement(&Method::GET, black_box(&last)).0.mode)
    });
    group.bench_function("match_none", |b| {
        b.iter(|| policy.requirement(&Method::GET, black_box(&none)).0.mode)
    });
    group.bench_function("normalize_plain_path", |b| {
        b.iter(|| NormalizedPath::new(black_box("/service-99/42/items/7")))
    });
    group.bench_function("normalize_tricky_path", |b| {
        b.iter(|| NormalizedPath::new(black_box("/service-99//42/./x/../items/%37")))
    });
    group.finish();
}

fn bench_extract(c: &mut Criterion) {
    let f = fixture();
    let value = format!("Bearer {}", f.issuer.token().sign());
    c.bench_function("extract/authorization", |b| {
        b.iter(|| tokengate::extract::parse_authorization(black_box(value.as_bytes()), 8192).unwrap())
    });
}

criterion_group!(benches, bench_verify, bench_requests, bench_first_seen, bench_policy, bench_extract);
criterion_main!(benches);
