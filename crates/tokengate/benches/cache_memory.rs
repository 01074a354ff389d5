//! Memory per entry of the verified-token cache: fills it with N distinct tokens (default
//! 1 000 000, `-- N` to change; the cache holds at most N) through the real pipeline and
//! reports the growth of the process's resident memory per cached token, next to the size of
//! each token's claims JSON. Tokens are minted on another thread (so in another allocator
//! arena): the garbage of minting them is not counted as the cache's, as in a server where
//! tokens arrive from the network.
//!
//! Run: `cargo bench -p tokengate --bench cache_memory` (or `-- 200000` for a quicker look).
//! Tokens are HS256 so minting a million takes seconds; the cache holds the same entry whatever
//! the algorithm. Linux only (reads `/proc/self/statm`).

use std::future::Future;
use std::task::{Context, Poll, Waker};

use http::{HeaderMap, Method};
use serde_json::json;
use tokengate::token_cache::TokenCacheConfig;
use tokengate::{Algorithm, IssuerConfig, TokenGateLayer};
use tokengate_testkit::Issuer;

const SECRET: &[u8] = b"cache-memory-bench-secret-32-bytes-at-least!";

fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the measured path waited"),
    }
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * 4096
}

fn main() {
    let n: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (issuer, layer) = runtime.block_on(async {
        let issuer = Issuer::start().await;
        let layer = TokenGateLayer::builder()
            .issuer(
                IssuerConfig::new(issuer.url())
                    .audience(issuer.audience())
                    .algorithms([Algorithm::HS256])
                    .hmac_secret(SECRET),
            )
            .token_cache(Some(TokenCacheConfig { max_entries: n, max_bytes: 64 * 1024 * 1024 * 1024 }))
            .build()
            .await
            .unwrap();
        (issuer, layer)
    });
    let gate = layer.gate();
    // Claims shaped like a real IdP access token (RFC 9068 plus the usual extras).
    let mint = |i: u64| {
        let builder = issuer
            .token()
            .without_header("kid")
            .sub(&format!("00u{i:016x}"))
            .claim("jti", json!(format!("AT.{i:032x}")))
            .claim("client_id", json!("0oa1b2c3d4e5f6g7h8i9"))
            .claim("scope", json!("openid profile email orders:read orders:write"))
            .claim("auth_time", json!(issuer.now() - 60))
            .claim("email", json!(format!("user{i}@example.com")))
            .expires_in(3600);
        let claims_len = builder.clone().parts().1.to_string().len();
        (builder.sign_hmac(Algorithm::HS256, SECRET), claims_len)
    };
    // Warm the allocator and the cache's own structures before the baseline.
    for i in 0..1_000 {
        let (token, _) = mint(u64::MAX - i);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        ready(gate.authorize(&Method::GET, "/x", &headers)).unwrap();
    }
    let before = rss();
    let warm_entries = gate.cached_tokens();
    let mut claims_total = 0u64;
    std::thread::scope(|scope| {
        let (tokens, arrivals) = std::sync::mpsc::sync_channel::<(String, usize)>(256);
        scope.spawn(move || {
            for i in 0..n {
                if tokens.send(mint(i)).is_err() {
                    break;
                }
            }
        });
        for (token, claims_len) in arrivals {
            claims_total += claims_len as u64;
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
            ready(gate.authorize(&Method::GET, "/x", &headers)).unwrap();
        }
    });
    let after = rss();
    // Per token the cache holds: a full cache has let a few go (a shard that filled before
    // the others evicted a sixteenth of itself), and their memory was reused.
    let entries = gate.cached_tokens().saturating_sub(warm_entries).max(1);
    let per_entry = (after.saturating_sub(before)) as f64 / entries as f64;
    let claims = claims_total as f64 / n as f64;
    println!("| tokens | cached | RSS growth | bytes / cached token | claims JSON bytes | ratio |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {n} | {entries} | {:.1} MiB | {per_entry:.0} | {claims:.0} | {:.2}x |",
        (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0),
        per_entry / claims
    );
}
