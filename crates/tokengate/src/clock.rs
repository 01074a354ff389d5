//! Time as a trait, so tests move time instead of sleeping.
//!
//! Every time-dependent check in tokengate (`exp`, `nbf`, `iat`, cache lifetimes) reads the
//! current time from a [`Clock`]. Production code uses [`SystemClock`]; tests use
//! [`ManualClock`] and move it forward explicitly.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time in seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // A clock set before 1970 is broken; treating it as the epoch makes every
            // token look issued in the future, which fails closed.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use tokengate::clock::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// let same = clock.clone();
/// clock.advance(30);
/// assert_eq!(same.now(), 1_030);
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock that reads `now` (seconds since the Unix epoch) until moved.
    pub fn new(now: i64) -> Self {
        Self { now: Arc::new(AtomicI64::new(now)) }
    }

    /// A clock starting at the system's current time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward (or back, with a negative value) by `secs` seconds.
    pub fn advance(&self, secs: i64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock to `now` seconds since the Unix epoch.
    pub fn set(&self, now: i64) {
        self.now.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock").field("now", &self.now()).finish()
    }
}

/// A shared, type-erased clock.
pub(crate) type SharedClock = Arc<dyn Clock>;
