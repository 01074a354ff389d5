//! A circuit breaker for the introspection endpoint: after N consecutive outages, stop calling
//! for M seconds and answer 503 at once; then let one probe through.
//!
//! Time comes from the [`Clock`](crate::clock::Clock). State lives in atomics: checking the
//! breaker on a request is two loads.
//!
//! Permission to call is a [`Permit`], an RAII guard. The half-open probe runs inside a request
//! future, which is dropped when the client disconnects; a probe permit dropped without a
//! verdict gives the probe back (the next request may probe at once), so the breaker can never
//! stay "probing" forever.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

/// Default consecutive outages that open the breaker: 5.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;

/// Default time the breaker stays open: 10 s.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(10);

/// The breaker's state, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// The open period ended; one probe call decides.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 open, 2 half-open: a gauge value.
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

const CLOSED: i64 = 0;

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    open_secs: i64,
    failures: AtomicU32,
    /// 0 when closed, else when the open period ends.
    open_until: AtomicI64,
    /// A probe permit is alive. Only that permit clears it (verdict or drop).
    probing: AtomicBool,
}

/// Permission to make one call. Report the outcome with [`Permit::succeeded`] or
/// [`Permit::failed`]; dropping it without either (the request was abandoned) gives a probe
/// back without counting anything.
#[derive(Debug)]
#[must_use = "a permit reports the call's outcome"]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    /// Whether this call is the half-open probe.
    #[cfg(test)]
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    /// The endpoint gave a verdict: close the breaker.
    pub(crate) fn succeeded(mut self) {
        self.settled = true;
        let b = self.breaker;
        b.failures.store(0, Ordering::Release);
        b.open_until.store(CLOSED, Ordering::Release);
        if self.probe {
            b.probing.store(false, Ordering::Release);
        }
    }

    /// The call ended in an outage at `now`; returns whether this (re)opened the breaker.
    pub(crate) fn failed(mut self, now: i64) -> bool {
        self.settled = true;
        let b = self.breaker;
        let failures = b.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let until = now.saturating_add(b.open_secs).max(1);
        if self.probe {
            // The probe decides: open again for a full period, and give the probe back.
            b.open_until.store(until, Ordering::Release);
            b.probing.store(false, Ordering::Release);
            return true;
        }
        // An ordinary call opens a closed breaker at the threshold. One that fails while the
        // breaker is already open or half-open (it started before) leaves the state alone:
        // above all it must not clear `probing`, which would let a second probe out.
        failures >= b.threshold
            && b.open_until.compare_exchange(CLOSED, until, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            // Abandoned (the client went away): no evidence either way, so neither count an
            // outage nor close; let the next request probe.
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

impl Breaker {
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_secs: open_for.as_secs().max(1) as i64,
            failures: AtomicU32::new(0),
            open_until: AtomicI64::new(CLOSED),
            probing: AtomicBool::new(false),
        }
    }

    /// May a call go out at `now`? `Err(secs)` says how long until it may.
    pub(crate) fn permit(&self, now: i64) -> Result<Permit<'_>, u64> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == CLOSED {
            return Ok(Permit { breaker: self, probe: false, settled: false });
        }
        if now < until {
            return Err((until - now) as u64);
        }
        match self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(Permit { breaker: self, probe: true, settled: false }),
            Err(_) => Err(1),
        }
    }

    pub(crate) fn state(&self, now: i64) -> BreakerState {
        match self.open_until.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            until if now < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(b: &Breaker, now: i64) {
        loop {
            if b.permit(now).unwrap().failed(now) {
                return;
            }
        }
    }

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(!b.permit(100).unwrap().failed(100));
        }
        assert!(b.permit(100).unwrap().failed(100));
        assert_eq!(b.state(105), BreakerState::Open);
        assert_eq!(b.permit(105).unwrap_err(), 5);
        assert_eq!(b.state(110), BreakerState::HalfOpen);
        let probe = b.permit(110).unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.permit(110).unwrap_err(), 1, "one probe at a time");
        probe.succeeded();
        assert_eq!(b.state(110), BreakerState::Closed);
        assert!(!b.permit(110).unwrap().is_probe());
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_secs(10));
        open(&b, 0);
        let probe = b.permit(10).unwrap();
        assert!(probe.is_probe());
        assert!(probe.failed(10));
        assert_eq!(b.permit(11).unwrap_err(), 9);
        assert!(b.permit(20).unwrap().is_probe(), "the next period ends with a new probe");
    }

    #[test]
    fn a_dropped_probe_lets_the_next_request_probe() {
        let b = Breaker::new(1, Duration::from_secs(10));
        open(&b, 0);
        let probe = b.permit(10).unwrap();
        assert!(probe.is_probe());
        drop(probe); // the request future was dropped mid-call
        assert_eq!(b.state(10), BreakerState::HalfOpen, "no verdict: still half-open");
        let again = b.permit(10).expect("the probe was given back");
        assert!(again.is_probe());
        again.succeeded();
        assert_eq!(b.state(10), BreakerState::Closed);
    }

    #[test]
    fn an_ordinary_call_failing_during_a_probe_allows_no_second_probe() {
        let b = Breaker::new(2, Duration::from_secs(10));
        // A call that started while the breaker was closed…
        let late = b.permit(0).unwrap();
        open(&b, 0);
        let probe = b.permit(10).unwrap();
        assert!(probe.is_probe());
        // …fails while the probe is in flight.
        assert!(!late.failed(10), "it does not reopen what the probe is deciding");
        assert_eq!(b.permit(10).unwrap_err(), 1, "still one probe at a time");
        assert_eq!(b.permit(25).unwrap_err(), 1, "even much later, while the probe lives");
        assert!(probe.failed(25));
        assert_eq!(b.permit(30).unwrap_err(), 5);
    }

    #[test]
    fn a_settled_probe_is_not_given_back_twice() {
        let b = Breaker::new(1, Duration::from_secs(10));
        open(&b, 0);
        let probe = b.permit(10).unwrap();
        let probe_failed = probe.failed(10);
        assert!(probe_failed);
        assert_eq!(b.state(10), BreakerState::Open);
        assert_eq!(b.permit(19).unwrap_err(), 1);
    }
}
