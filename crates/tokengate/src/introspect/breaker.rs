//! A circuit breaker for the introspection endpoint: after N consecutive outages, stop calling
//! for M seconds and answer 503 at once; then let one probe through.
//!
//! Time comes from the [`Clock`](crate::clock::Clock). State lives in atomics: checking the
//! breaker on a request is two loads.

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
    probing: AtomicBool,
}

/// Permission to call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Permit {
    /// The breaker is closed.
    Call,
    /// This call is the half-open probe.
    Probe,
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
    pub(crate) fn permit(&self, now: i64) -> Result<Permit, u64> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == CLOSED {
            return Ok(Permit::Call);
        }
        if now < until {
            return Err((until - now) as u64);
        }
        match self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(Permit::Probe),
            Err(_) => Err(1),
        }
    }

    pub(crate) fn on_success(&self) {
        self.failures.store(0, Ordering::Release);
        self.open_until.store(CLOSED, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    /// Records an outage; returns whether this one opened the breaker.
    pub(crate) fn on_outage(&self, now: i64, permit: &Permit) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let open = *permit == Permit::Probe || failures >= self.threshold;
        if open {
            self.open_until.store(now.saturating_add(self.open_secs).max(1), Ordering::Release);
            self.probing.store(false, Ordering::Release);
        }
        open
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

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            let p = b.permit(100).unwrap();
            assert!(!b.on_outage(100, &p));
        }
        let p = b.permit(100).unwrap();
        assert!(b.on_outage(100, &p));
        assert_eq!(b.state(105), BreakerState::Open);
        assert_eq!(b.permit(105), Err(5));
        assert_eq!(b.state(110), BreakerState::HalfOpen);
        assert_eq!(b.permit(110), Ok(Permit::Probe));
        assert_eq!(b.permit(110), Err(1), "one probe at a time");
        b.on_success();
        assert_eq!(b.state(110), BreakerState::Closed);
        assert_eq!(b.permit(110), Ok(Permit::Call));
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let p = b.permit(0).unwrap();
        b.on_outage(0, &p);
        let probe = b.permit(10).unwrap();
        assert_eq!(probe, Permit::Probe);
        assert!(b.on_outage(10, &probe));
        assert_eq!(b.permit(11), Err(9));
    }
}
