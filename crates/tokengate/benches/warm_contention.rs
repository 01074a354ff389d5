//! What a warm token (a verified-token cache hit) costs when two threads decide requests at
//! once, against one thread alone, measured interleaved. Each round times a batch of whole
//! decisions (`Gate::authorize` on a `local` route) on one thread; on two threads at once with
//! the **same** token (the load bench's "1 warm token" with two workers: both cores read one
//! cache entry); on two threads with a token each; the same three for the whole layer (the
//! `TokenGate` service cloned per request as axum does, called, its response taken, around an
//! inner service that answers at once); and, as the control, work that shares nothing between
//! threads (SHA-256 of the request's header). The order rotates every round.
//!
//! Two threads that share nothing would each run as fast as one alone on two idle cores; the
//! control shows what this machine's two cores cost each other anyway (a VM's two vCPUs may
//! share a physical core, its caches, its clock). What the decision's two-thread rows add over
//! the control's is what the threads contend for: cache lines that both write (a lock word, a
//! reference count), bouncing between the cores.
//!
//! Run: `cargo bench -p tokengate --bench warm_contention`. Prints a markdown table: the median
//! time per operation of each case, and the median of the per-round ratios to the same work on
//! one thread.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::Empty;
use tokengate::policy::{Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, Gate, TokenGate};
use tower::{Layer, Service};

mod common;
use common::issuer_and_layer;

/// Rounds; each round measures every case once.
const ROUNDS: usize = 60;
/// Operations per thread per batch: ≈ 20 ms of decisions, long against a thread's start, short
/// against the minutes over which a shared machine's speed swings.
const BATCH: u32 = 20_000;

/// What a case's threads do.
#[derive(Clone, Copy, PartialEq)]
enum Work {
    /// The whole decision for a warm token.
    Decide,
    /// The whole layer for a warm token, as axum drives it: the service cloned for the request,
    /// called, its response taken (the inner service answers at once); the request is built
    /// from a clone of the headers, which shares nothing.
    Layer,
    /// The control: SHA-256 of the `Authorization` header, which shares nothing.
    Hash,
}

/// One case: the work, and one request per thread.
struct Case<'a> {
    name: &'static str,
    work: Work,
    threads: Vec<&'a HeaderMap>,
}

/// One decision, which a cache hit makes without waiting: polled once, it must be ready.
fn decide(gate: &Gate, headers: &HeaderMap) {
    let mut cx = Context::from_waker(Waker::noop());
    let future = pin!(gate.authorize(&Method::GET, black_box("/api/items/42"), headers));
    match future.poll(&mut cx) {
        Poll::Ready(result) => {
            black_box(result.expect("a warm token is admitted"));
        }
        Poll::Pending => panic!("a cache hit must not wait"),
    }
}

/// What the inner service answers: at once, 200 and no body.
type Answer = std::future::Ready<Result<Response<Empty<Bytes>>, Infallible>>;

/// The layer around an inner service that answers at once.
type Layered = TokenGate<tower::util::ServiceFn<fn(Request<()>) -> Answer>>;

fn answer(_request: Request<()>) -> Answer {
    std::future::ready(Ok(Response::new(Empty::new())))
}

/// One request through the whole layer: the service cloned for it (as axum clones a route's
/// service per request), called, and its response, which a cache hit gives at once, taken.
fn through_layer(service: &Layered, headers: &HeaderMap) {
    let mut request = Request::new(());
    *request.uri_mut() = http::Uri::from_static("/api/items/42");
    *request.headers_mut() = headers.clone();
    let mut service = service.clone();
    let mut cx = Context::from_waker(Waker::noop());
    let future = pin!(service.call(request));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => {
            assert_eq!(response.status(), http::StatusCode::OK, "a warm token is admitted");
            black_box(response);
        }
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => panic!("a cache hit must not wait"),
    }
}

fn hash(headers: &HeaderMap) {
    let value = headers.get(http::header::AUTHORIZATION).expect("a token").as_bytes();
    black_box(aws_lc::digest::digest(&aws_lc::digest::SHA256, black_box(value)));
}

/// Time per operation of `case`, on each of its threads running at once (their mean).
fn batch(gate: &Gate, layered: &Layered, case: &Case<'_>) -> Duration {
    let start = Barrier::new(case.threads.len());
    let total: Duration = std::thread::scope(|s| {
        let threads: Vec<_> = case
            .threads
            .iter()
            .map(|headers| {
                let (start, work) = (&start, case.work);
                s.spawn(move || {
                    start.wait();
                    let started = Instant::now();
                    for _ in 0..BATCH {
                        match work {
                            Work::Decide => decide(gate, headers),
                            Work::Layer => through_layer(layered, headers),
                            Work::Hash => hash(headers),
                        }
                    }
                    started.elapsed()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("a bench thread")).sum()
    });
    total / (BATCH * case.threads.len() as u32)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("a header"));
    headers
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let policy = RoutePolicy::new().rule(Rule::new("/api/*", Requirement::local()).unwrap());
    let (issuer, layer) = issuer_and_layer(&runtime, &[Algorithm::RS256], policy);
    let gate = layer.gate();
    let mint = |sub: &str| bearer(&issuer.token().sub(sub).scope("read").expires_in(3600).sign());
    let (first, second) = (mint("alice"), mint("bob"));
    // Verified once each, so every measured decision is a cache hit.
    decide(gate, &first);
    decide(gate, &second);
    let layered: Layered = layer.layer(tower::service_fn(answer as fn(_) -> _));

    let case = |name, work, threads| Case { name, work, threads };
    // Each work's first case is its one-thread case: the others are compared with it.
    let cases = [
        case("decision, one thread", Work::Decide, vec![&first]),
        case("decision, two threads, one token", Work::Decide, vec![&first, &first]),
        case("decision, two threads, a token each", Work::Decide, vec![&first, &second]),
        case("whole layer, one thread", Work::Layer, vec![&first]),
        case("whole layer, two threads, one token", Work::Layer, vec![&first, &first]),
        case("whole layer, two threads, a token each", Work::Layer, vec![&first, &second]),
        case("control (SHA-256 of the header), one thread", Work::Hash, vec![&first]),
        case("control, two threads", Work::Hash, vec![&first, &second]),
    ];
    let alone = |i: usize| cases.iter().position(|c| c.work == cases[i].work).expect("itself");
    let mut times = vec![Vec::new(); cases.len()];
    let mut ratios = vec![Vec::new(); cases.len()];
    for round in 0..ROUNDS {
        let mut this_round = vec![0.0; cases.len()];
        for i in 0..cases.len() {
            let at = (i + round) % cases.len();
            this_round[at] = batch(gate, &layered, &cases[at]).as_secs_f64() * 1e9;
        }
        for i in 0..cases.len() {
            times[i].push(this_round[i]);
            ratios[i].push(this_round[i] / this_round[alone(i)]);
        }
    }

    println!("warm token, {ROUNDS} rounds of {BATCH} operations per thread (medians):\n");
    println!("| case | ns per operation | vs the same work on one thread |");
    println!("| --- | ---: | ---: |");
    for (i, case) in cases.iter().enumerate() {
        println!("| {} | {:.0} | {:.2}× |", case.name, median(&mut times[i]), median(&mut ratios[i]));
    }
    drop(runtime);
}
