//! Propagation latency of revocations across gateway replicas, through Redis.
//!
//! Starts a private `redis-server`, the testkit issuer, an echo upstream and three replicas of
//! the built (release) gateway on loopback; adds 1 000 token revocations through replica A's
//! admin API, one after another as fast as A answers; and watches replicas B and C by polling
//! their `GET /revocations`. For each entry, latency = when B (or C) first lists it − when A
//! answered 201 (the entry was in force on A). Prints p50/p90/p99/max per replica and overall.
//! The resolution is one poll of B's or C's list (printed too).
//!
//!     scripts/replicas_bench.sh        # = cargo bench -p tokengate-gateway --bench replicas
//!
//! Not a test: nothing is asserted; the target is p99 < 1 s.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Gateway, RedisServer, issuer_toml};
use serde_json::{Value, json};
use tokengate_testkit::{EchoUpstream, Issuer};
use tokio::sync::Mutex;

const REVOCATIONS: usize = 1_000;
const ADMIN_SECRET: &str = "bench-admin-secret-0123456789";
/// Give up watching after this long: far beyond any healthy propagation.
const WATCH_LIMIT: Duration = Duration::from_secs(120);

fn config(issuer: &Issuer, upstream: &EchoUpstream, redis: &RedisServer) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"{}\"\nadmin_token_env = \"TG_BENCH_ADMIN\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{}\n[revocation.redis]\nurl = \"{}\"\nkey_prefix = \"tg-bench\"\n",
        upstream.url(),
        issuer_toml(issuer),
        redis.url()
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<8} n={:<5} p50={:>7.2} ms  p90={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

/// Polls `gw`'s list until it holds every jti in `wanted` (or the limit), recording when each
/// first appeared and how long one poll took.
async fn watch(gw: &Gateway, wanted: usize, seen: Arc<Mutex<HashMap<String, Instant>>>) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let url = format!("{}/revocations", gw.admin_url());
    let started = Instant::now();
    let mut polls = Vec::new();
    while started.elapsed() < WATCH_LIMIT {
        let poll = Instant::now();
        let Ok(r) = client.get(&url).bearer_auth(ADMIN_SECRET).send().await else { continue };
        let Ok(body) = r.json::<Value>().await else { continue };
        let now = Instant::now();
        polls.push(now - poll);
        let mut seen = seen.lock().await;
        for entry in body["revocations"].as_array().into_iter().flatten() {
            if let Some(jti) = entry["jti"].as_str() {
                seen.entry(jti.to_owned()).or_insert(now);
            }
        }
        if seen.len() >= wanted {
            break;
        }
    }
    polls
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let issuer = Issuer::start().await;
    let upstream = EchoUpstream::start().await;
    let redis = RedisServer::start().await;
    let text = config(&issuer, &upstream, &redis);
    let env = [("TG_BENCH_ADMIN", ADMIN_SECRET)];
    let (a, b, c) = (
        Gateway::start(&text, &env).await,
        Gateway::start(&text, &env).await,
        Gateway::start(&text, &env).await,
    );
    let client = reqwest::Client::new();

    let seen_b = Arc::new(Mutex::new(HashMap::new()));
    let seen_c = Arc::new(Mutex::new(HashMap::new()));
    let added: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let writer = {
        let added = added.clone();
        let url = format!("{}/revocations", a.admin_url());
        let issuer = issuer.url();
        async move {
            let started = Instant::now();
            for i in 0..REVOCATIONS {
                let jti = format!("bench-{i}");
                let r = client
                    .post(&url)
                    .bearer_auth(ADMIN_SECRET)
                    .json(&json!({"kind": "token", "issuer": issuer, "jti": jti}))
                    .send()
                    .await
                    .expect("POST /revocations");
                assert_eq!(r.status(), 201);
                added.lock().await.insert(jti, Instant::now());
            }
            started.elapsed()
        }
    };
    let (write_time, polls_b, polls_c) =
        tokio::join!(writer, watch(&b, REVOCATIONS, seen_b.clone()), watch(&c, REVOCATIONS, seen_c.clone()));

    let added = added.lock().await;
    let latencies = |seen: &HashMap<String, Instant>| -> Vec<Duration> {
        added.iter().filter_map(|(jti, at)| seen.get(jti).map(|s| s.saturating_duration_since(*at))).collect()
    };
    let (lb, lc) = (latencies(&*seen_b.lock().await), latencies(&*seen_c.lock().await));
    println!("replicas bench: {REVOCATIONS} token revocations through replica A, watched on B and C");
    println!(
        "writes: {:.0} revocations/s through A's admin API ({:.2} s in all)",
        REVOCATIONS as f64 / write_time.as_secs_f64(),
        write_time.as_secs_f64()
    );
    let mean_poll = |p: &[Duration]| p.iter().sum::<Duration>().as_secs_f64() * 1e3 / p.len().max(1) as f64;
    println!(
        "resolution: one poll of B's list {:.2} ms, of C's {:.2} ms (mean)",
        mean_poll(&polls_b),
        mean_poll(&polls_c)
    );
    summary("B", lb.clone());
    summary("C", lc.clone());
    summary("B and C", lb.into_iter().chain(lc).collect());
    let missing = 2 * REVOCATIONS
        - seen_b.lock().await.len().min(REVOCATIONS)
        - seen_c.lock().await.len().min(REVOCATIONS);
    if missing > 0 {
        println!("NOT PROPAGATED within {} s: {missing}", WATCH_LIMIT.as_secs());
    }
}
