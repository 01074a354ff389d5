//! What a cold verification adds to the signature check, measured interleaved: each round
//! times a batch of raw aws-lc-rs verifications of a token's signature (pre-parsed key, the
//! floor of any verifier) and then a batch of tokengate's whole local verification of the
//! same token (header, issuer, signature, claims, principal), swapping the order every round.
//! Both sides see the same machine at the same moment, so the ratio holds still where
//! criterion's one-after-the-other groups drift with a shared machine's load.
//!
//! Run: `cargo bench -p tokengate --bench verify_overhead`. Prints a markdown table: the median
//! time per verification of each side, and the median of the per-round ratios (the number the
//! "cold RS256 ≤ 1.15× raw" target is checked with).

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokengate::Algorithm;
use tokengate::policy::RoutePolicy;
use tokengate_testkit::KeyKind;

mod common;
use common::{issuer_and_layer, raw_key};

/// Rounds per algorithm; each round is one batch of each side.
const ROUNDS: usize = 400;
/// Verifications per batch: long enough (milliseconds) for the clock, short enough that the
/// machine's load stays the same across the round.
const BATCH: u32 = 100;

/// Time per call of `f`, over one batch.
fn batch(mut f: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..BATCH {
        f();
    }
    started.elapsed() / BATCH
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let algorithms = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
    let (issuer, layer) = issuer_and_layer(&runtime, &algorithms, RoutePolicy::new());
    let issuers = layer.gate().issuers();
    let now = layer.gate().now();

    println!(
        "| alg | raw aws-lc-rs verify | tokengate verify | added | tokengate vs raw (median of rounds) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (alg, kind) in [
        (Algorithm::RS256, KeyKind::Rsa),
        (Algorithm::ES256, KeyKind::P256),
        (Algorithm::EdDSA, KeyKind::Ed25519),
    ] {
        let token = issuer.token().alg(alg).scope("read write").expires_in(3600).sign();
        let (message, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let key = raw_key(&issuer, kind, alg);
        let raw = || key.verify_sig(black_box(message.as_bytes()), black_box(&sig)).unwrap();
        let ours = || {
            black_box(tokengate::jwt::verify(black_box(&token), issuers, now, 8192).unwrap());
        };
        // Warm both paths (key preparation, caches, branch predictors) outside the rounds.
        batch(raw);
        batch(ours);

        let (mut raws, mut oursv, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (r, o) = if round % 2 == 0 {
                let r = batch(raw);
                (r, batch(ours))
            } else {
                let o = batch(ours);
                (batch(raw), o)
            };
            let (r, o) = (r.as_secs_f64() * 1e6, o.as_secs_f64() * 1e6);
            raws.push(r);
            oursv.push(o);
            ratios.push(o / r);
        }
        let (r, o) = (median(&mut raws), median(&mut oursv));
        println!("| {alg:?} | {r:.2} µs | {o:.2} µs | {:+.2} µs | {:.3}× |", o - r, median(&mut ratios));
    }
}
