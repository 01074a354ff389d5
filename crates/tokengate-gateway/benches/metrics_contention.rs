//! What recording a request in the gateway's metrics costs on one thread, and on two threads
//! at once (two tokio workers answering requests). The counters are striped per thread
//! (`metrics.rs`), so two threads should cost each what one does; with one set of counters,
//! every record on two threads moved the same cache lines between the cores (measured on the
//! 2-core AMD VM, 2026-12-06: 6.5 ns a record alone, 55 ns each on two threads; striped, 6.8).
//!
//! Run: `cargo bench -p tokengate-gateway --bench metrics_contention`. Prints, for each of
//! five rounds, ns per record on one thread and on each of two threads at once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tokengate_gateway::metrics::{Metrics, Outcome};

/// Records per thread per measurement: ≈ 30 ms.
const RECORDS: u32 = 5_000_000;

fn record_many(metrics: &Metrics) {
    for _ in 0..RECORDS {
        metrics.record(http::StatusCode::OK, Outcome::Allowed, black_box(Duration::from_micros(300)));
    }
}

fn main() {
    let metrics = Metrics::default();
    println!("| round | one thread, ns per record | two threads at once, ns per record each |");
    println!("| ---: | ---: | ---: |");
    for round in 1..=5 {
        let started = Instant::now();
        record_many(&metrics);
        let one = started.elapsed().as_secs_f64() * 1e9 / f64::from(RECORDS);
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| record_many(&metrics));
            }
        });
        let two = started.elapsed().as_secs_f64() * 1e9 / f64::from(RECORDS);
        println!("| {round} | {one:.1} | {two:.1} |");
    }
}
