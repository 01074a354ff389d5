//! Counters of the gateway's own requests and the Prometheus text exposition (format 0.0.4) of
//! them and of the library's key-store and introspection counters, written by hand.
//!
//! Recording a request is three relaxed atomic additions to the recording thread's stripe of
//! the counters: no lock, no allocation, and no cache line another worker writes (with one
//! set of counters, every request on two workers moved those lines between the cores).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokengate::jwks::KeyStoreStatus;
use tokengate::{AuthError, Gate};

use crate::admin::Fleet;
use crate::receiver::ReceiverCounters;
use crate::revocation_store::StoreStatus;
use crate::server::ConnectionCounters;

/// Why a request ended the way it did: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let through (proxied, or answered 200 in forward-auth mode).
    Allowed,
    /// No token on a route that needs one.
    MissingToken,
    /// A malformed request (400).
    InvalidRequest,
    /// The token failed a check (401).
    InvalidToken,
    /// The token lacks a scope (403).
    InsufficientScope,
    /// Route in mode `deny` (403).
    AccessDenied,
    /// An issuer or the introspection endpoint could not answer (503).
    Unavailable,
    /// A cookie-authenticated unsafe request from a foreign origin (403).
    Csrf,
    /// The upstream could not be reached or failed (502).
    UpstreamError,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
}

impl Outcome {
    const ALL: [Outcome; 10] = [
        Outcome::Allowed,
        Outcome::MissingToken,
        Outcome::InvalidRequest,
        Outcome::InvalidToken,
        Outcome::InsufficientScope,
        Outcome::AccessDenied,
        Outcome::Unavailable,
        Outcome::Csrf,
        Outcome::UpstreamError,
        Outcome::UpstreamTimeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::MissingToken => "missing_token",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::InvalidToken => "invalid_token",
            Outcome::InsufficientScope => "insufficient_scope",
            Outcome::AccessDenied => "access_denied",
            Outcome::Unavailable => "unavailable",
            Outcome::Csrf => "csrf",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The outcome of a refusal by the gate.
    pub fn of(error: &AuthError) -> Outcome {
        match error {
            AuthError::MissingToken => Outcome::MissingToken,
            AuthError::InvalidRequest(_) => Outcome::InvalidRequest,
            AuthError::InvalidToken(_) => Outcome::InvalidToken,
            AuthError::InsufficientScope { .. } => Outcome::InsufficientScope,
            AuthError::AccessDenied => Outcome::AccessDenied,
            // `AuthError` is non-exhaustive; anything new is most likely a refusal to decide.
            _ => Outcome::Unavailable,
        }
    }

    fn index(self) -> usize {
        Outcome::ALL.iter().position(|&o| o == self).unwrap_or(0)
    }
}

/// Upper bounds of the latency histogram, in microseconds: from 100 µs (a local verification
/// plus a loopback hop) to 10 s (a slow upstream).
const BUCKETS_MICROS: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 2_500_000,
    10_000_000,
];

/// Status classes 1xx … 5xx.
const CLASSES: usize = 5;

/// Stripes of the request counters. A thread records into one stripe, its own as long as no
/// more threads record than there are stripes (the gateway's tokio workers); rendering sums
/// them.
const STRIPES: usize = 16;

/// One stripe of the request counters, on cache lines of its own.
#[derive(Debug)]
#[repr(align(128))]
struct Stripe {
    /// [status class][outcome]
    requests: [[AtomicU64; Outcome::ALL.len()]; CLASSES],
    /// Per bucket (not cumulative; summed when rendered), then +Inf.
    latency: [AtomicU64; BUCKETS_MICROS.len() + 1],
    latency_sum_micros: AtomicU64,
}

impl Default for Stripe {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_micros: AtomicU64::new(0),
        }
    }
}

/// The stripe the calling thread records into: threads take stripes in turn, on first use.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.try_with(|stripe| *stripe).unwrap_or(0)
}

/// The gateway's request counters.
#[derive(Debug)]
pub struct Metrics {
    stripes: Box<[Stripe; STRIPES]>,
    /// The proxy's or forward-auth endpoint's connections.
    pub main_connections: Arc<ConnectionCounters>,
    /// The admin listener's connections.
    pub admin_connections: Arc<ConnectionCounters>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            stripes: Box::new(std::array::from_fn(|_| Stripe::default())),
            main_connections: Arc::default(),
            admin_connections: Arc::default(),
        }
    }
}

impl Metrics {
    /// Records one finished request: its status, why, and how long the gateway took to answer
    /// (to the response head; a streamed body is not waited for).
    pub fn record(&self, status: http::StatusCode, outcome: Outcome, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, CLASSES) - 1;
        let stripe = &self.stripes[stripe_index()];
        stripe.requests[class][outcome.index()].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_MICROS.iter().position(|&b| micros <= b).unwrap_or(BUCKETS_MICROS.len());
        stripe.latency[bucket].fetch_add(1, Ordering::Relaxed);
        stripe.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The sum over the stripes of the counter `pick` chooses.
    fn total(&self, pick: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes.iter().map(|stripe| pick(stripe).load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
    }

    /// The Prometheus text exposition of these counters, of `gate`'s, and of the shared
    /// store's and receivers' in `fleet`.
    pub fn render(&self, gate: &Gate, fleet: &Fleet) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        self.render_connections(&mut out);
        render_keys(&mut out, gate);
        render_introspection(&mut out, gate);
        header(&mut out, "tokengate_revocations", "gauge", "Entries in the local revocation list.");
        let _ = writeln!(out, "tokengate_revocations {}", gate.revocations().len());
        header(&mut out, "tokengate_ready", "gauge", "1 when every issuer has usable keys.");
        let _ = writeln!(out, "tokengate_ready {}", u8::from(gate.ready()));
        if let Some(store) = &fleet.store {
            render_store(&mut out, store);
        }
        let receivers = [
            ("logout", fleet.receivers.logout().map(|r| &r.counters)),
            ("security_event", fleet.receivers.events().map(|r| &r.counters)),
        ];
        render_receivers(&mut out, &receivers);
        out
    }

    fn render_requests(&self, out: &mut String) {
        header(out, "tokengate_requests_total", "counter", "Requests answered, by status class and outcome.");
        for class in 0..CLASSES {
            for (index, outcome) in Outcome::ALL.iter().enumerate() {
                let n = self.total(|stripe| &stripe.requests[class][index]);
                // Only combinations that happened, plus the common one so the series exists.
                if n > 0 || (class == 1 && *outcome == Outcome::Allowed) {
                    let _ = writeln!(
                        out,
                        "tokengate_requests_total{{class=\"{}xx\",reason=\"{}\"}} {n}",
                        class + 1,
                        outcome.as_str()
                    );
                }
            }
        }
        header(
            out,
            "tokengate_request_duration_seconds",
            "histogram",
            "Time from the request head to the response head.",
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_MICROS.iter().enumerate() {
            cumulative += self.total(|stripe| &stripe.latency[i]);
            let _ = writeln!(
                out,
                "tokengate_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        cumulative += self.total(|stripe| &stripe.latency[BUCKETS_MICROS.len()]);
        let _ = writeln!(out, "tokengate_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.total(|stripe| &stripe.latency_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "tokengate_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "tokengate_request_duration_seconds_count {cumulative}");
    }

    fn render_connections(&self, out: &mut String) {
        let listeners = [("main", &self.main_connections), ("admin", &self.admin_connections)];
        header(out, "tokengate_connections_open", "gauge", "Connections being served, by listener.");
        for (listener, counters) in listeners {
            let _ =
                writeln!(out, "tokengate_connections_open{{listener=\"{listener}\"}} {}", counters.open());
        }
        header(
            out,
            "tokengate_connections_refused_total",
            "counter",
            "Connections closed on arrival at the max_connections limit, by listener.",
        );
        for (listener, counters) in listeners {
            let _ = writeln!(
                out,
                "tokengate_connections_refused_total{{listener=\"{listener}\"}} {}",
                counters.refused()
            );
        }
    }
}

/// One per-issuer key-store series: name, type, help, and its value (if known).
type KeySeries = (&'static str, &'static str, &'static str, fn(&KeyStoreStatus) -> Option<i64>);

fn render_keys(out: &mut String, gate: &Gate) {
    let now = gate.now();
    let statuses: Vec<_> =
        gate.issuers().iter().map(|i| (escape(i.issuer()), i.store().status(now))).collect();
    let series: [KeySeries; 7] = [
        ("tokengate_jwks_fetches_total", "counter", "Key set fetch attempts.", |s| Some(s.fetches as i64)),
        ("tokengate_jwks_fetch_failures_total", "counter", "Failed or invalid key set fetches.", |s| {
            Some(s.failures as i64)
        }),
        ("tokengate_jwks_not_modified_total", "counter", "Key set fetches answered 304.", |s| {
            Some(s.not_modified as i64)
        }),
        (
            "tokengate_jwks_unknown_kid_refreshes_total",
            "counter",
            "Key set fetches caused by an unknown kid.",
            |s| Some(s.unknown_kid_refreshes as i64),
        ),
        ("tokengate_jwks_keys", "gauge", "Keys in the current set.", |s| Some(s.keys as i64)),
        ("tokengate_jwks_age_seconds", "gauge", "Seconds since the last successful fetch.", |s| s.age_secs),
        ("tokengate_jwks_ready", "gauge", "1 when the issuer's keys are usable.", |s| {
            Some(i64::from(s.ready && !s.stale))
        }),
    ];
    for (name, kind, help, value) in series {
        header(out, name, kind, help);
        for (issuer, status) in &statuses {
            if let Some(v) = value(status) {
                let _ = writeln!(out, "{name}{{issuer=\"{issuer}\"}} {v}");
            }
        }
    }
}

fn render_introspection(out: &mut String, gate: &Gate) {
    let Some(introspector) = gate.introspector() else {
        return;
    };
    let m = introspector.metrics();
    let counters = [
        ("tokengate_introspection_calls_total", "Calls to the introspection endpoint.", &m.calls),
        ("tokengate_introspection_cache_hits_total", "Lookups answered from the cache.", &m.cache_hits),
        (
            "tokengate_introspection_cache_misses_total",
            "Lookups the cache could not answer.",
            &m.cache_misses,
        ),
        (
            "tokengate_introspection_coalesced_total",
            "Lookups that shared another request's call.",
            &m.coalesced,
        ),
        ("tokengate_introspection_outages_total", "Calls that ended in an outage.", &m.outages),
        (
            "tokengate_introspection_breaker_opens_total",
            "Times the circuit breaker opened.",
            &m.breaker_opens,
        ),
    ];
    for (name, help, counter) in counters {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
    }
    header(
        out,
        "tokengate_introspection_breaker_state",
        "gauge",
        "Circuit breaker: 0 closed, 1 open, 2 half-open.",
    );
    let _ =
        writeln!(out, "tokengate_introspection_breaker_state {}", introspector.breaker_state().as_gauge());
}

fn render_store(out: &mut String, store: &StoreStatus) {
    header(
        out,
        "tokengate_revocation_store_up",
        "gauge",
        "1 while the shared revocation store is connected and in step; 0 while degraded.",
    );
    let _ = writeln!(out, "tokengate_revocation_store_up {}", u8::from(store.is_up()));
    header(
        out,
        "tokengate_revocation_store_queued",
        "gauge",
        "Local entries waiting to be written to the shared store.",
    );
    let _ = writeln!(out, "tokengate_revocation_store_queued {}", store.queued());
    let counters = [
        ("tokengate_revocation_store_written_total", "Entries written to the shared store.", &store.written),
        (
            "tokengate_revocation_store_received_total",
            "Entries learnt from other replicas through pub/sub.",
            &store.received,
        ),
        ("tokengate_revocation_store_full_loads_total", "Full loads of the shared store.", &store.full_loads),
        (
            "tokengate_revocation_store_connects_total",
            "Connections to the shared store (the first and every reconnect).",
            &store.connects,
        ),
        ("tokengate_revocation_store_errors_total", "Failed shared-store operations.", &store.errors),
        (
            "tokengate_revocation_store_queue_overflows_total",
            "Times the write queue overflowed (the whole list is written on reconnect).",
            &store.overflows,
        ),
        (
            "tokengate_revocation_store_refused_total",
            "Shared entries the local list refused or could not read.",
            &store.refused,
        ),
    ];
    for (name, help, counter) in counters {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
    }
}

fn render_receivers(out: &mut String, receivers: &[(&str, Option<&ReceiverCounters>)]) {
    if receivers.iter().all(|(_, r)| r.is_none()) {
        return;
    }
    header(
        out,
        "tokengate_pushed_revocations_total",
        "counter",
        "Back-channel logout tokens and security events received, by kind and result.",
    );
    for (kind, counters) in receivers {
        if let Some(c) = counters {
            for (result, n) in [("accepted", &c.accepted), ("rejected", &c.rejected)] {
                let _ = writeln!(
                    out,
                    "tokengate_pushed_revocations_total{{kind=\"{kind}\",result=\"{result}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value: `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_class_outcome_and_bucket() {
        let m = Metrics::default();
        m.record(http::StatusCode::OK, Outcome::Allowed, Duration::from_micros(80));
        m.record(http::StatusCode::UNAUTHORIZED, Outcome::InvalidToken, Duration::from_millis(3));
        let mut out = String::new();
        m.render_requests(&mut out);
        assert!(out.contains("tokengate_requests_total{class=\"2xx\",reason=\"allowed\"} 1"), "{out}");
        assert!(out.contains("tokengate_requests_total{class=\"4xx\",reason=\"invalid_token\"} 1"), "{out}");
        assert!(out.contains("tokengate_request_duration_seconds_bucket{le=\"0.0001\"} 1"), "{out}");
        assert!(out.contains("tokengate_request_duration_seconds_bucket{le=\"0.005\"} 2"), "{out}");
        assert!(out.contains("tokengate_request_duration_seconds_count 2"), "{out}");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn threads_record_into_stripes_that_render_as_one() {
        let m = Metrics::default();
        std::thread::scope(|s| {
            for _ in 0..(STRIPES + 3) {
                s.spawn(|| {
                    for _ in 0..100 {
                        m.record(http::StatusCode::OK, Outcome::Allowed, Duration::from_micros(300));
                    }
                });
            }
        });
        let used = m.stripes.iter().filter(|s| s.latency_sum_micros.load(Ordering::Relaxed) > 0).count();
        assert!(used > 1, "threads spread over the stripes");
        let mut out = String::new();
        m.render_requests(&mut out);
        let n = (STRIPES + 3) * 100;
        assert!(
            out.contains(&format!("tokengate_requests_total{{class=\"2xx\",reason=\"allowed\"}} {n}")),
            "{out}"
        );
        assert!(
            out.contains(&format!("tokengate_request_duration_seconds_bucket{{le=\"0.0005\"}} {n}")),
            "{out}"
        );
        assert!(out.contains(&format!("tokengate_request_duration_seconds_count {n}")), "{out}");
        assert!(
            out.contains(&format!("tokengate_request_duration_seconds_sum {}", n as f64 * 300.0 / 1e6)),
            "{out}"
        );
    }
}
