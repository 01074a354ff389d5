//! [`KeyStore`]: one issuer's current key set, swapped atomically, and what is known about
//! its freshness.
//!
//! Readers call [`KeyStore::snapshot`] (an `ArcSwap` load: no lock, no wait). Only the
//! refresher (`jwks::refresh`) writes. A request that meets an unknown `kid` may ask for a
//! refresh; at most one such fetch runs per cooldown, and every request that missed in the
//! meantime waits for that same fetch, for a bounded time.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{Notify, watch};

use super::KeySet;

/// Default minimum time between two fetches caused by unknown `kid`s: 30 s. jose and Kong use
/// 30 s; shorter lets a flood of random `kid`s turn into a flood of fetches at the issuer.
pub const DEFAULT_KID_COOLDOWN: Duration = Duration::from_secs(30);

/// Default longest time a request with an unknown `kid` waits for the refresh it triggered:
/// 1 s. Long enough for a healthy issuer, short enough not to stall clients on a dead one.
pub const DEFAULT_KID_WAIT: Duration = Duration::from_secs(1);

/// Counters of one issuer's key fetches.
#[derive(Debug, Default)]
pub struct KeyMetrics {
    /// Fetch attempts (background and unknown-`kid`).
    pub fetches: AtomicU64,
    /// Failed or invalid fetches.
    pub failures: AtomicU64,
    /// `304 Not Modified` answers.
    pub not_modified: AtomicU64,
    /// Fetches triggered by an unknown `kid`.
    pub unknown_kid_refreshes: AtomicU64,
    /// Times a new key set was swapped in.
    pub swaps: AtomicU64,
}

/// A point-in-time view of a key store, for `/readyz`, metrics and `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStoreStatus {
    /// Whether a usable key set has been loaded.
    pub ready: bool,
    /// Incremented at every swap; a verified-token cache compares it.
    pub generation: u64,
    /// Seconds since the last successful fetch (or 304), if any; 0 for static keys.
    pub age_secs: Option<i64>,
    /// Whether the set is older than the configured maximum staleness.
    pub stale: bool,
    /// The number of keys in the current set.
    pub keys: usize,
    /// The last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
    /// When the next background fetch is due (seconds since the epoch), if one is scheduled.
    pub next_refresh_at: Option<i64>,
    /// Fetch attempts.
    pub fetches: u64,
    /// Failed fetches.
    pub failures: u64,
    /// `304 Not Modified` answers.
    pub not_modified: u64,
    /// Fetches triggered by unknown `kid`s.
    pub unknown_kid_refreshes: u64,
}

/// Sentinel for "never fetched successfully".
const NEVER: i64 = i64::MIN;

/// One issuer's keys.
pub struct KeyStore {
    keys: ArcSwap<KeySet>,
    generation: AtomicU64,
    ready: AtomicBool,
    last_success: AtomicI64,
    last_error: ArcSwapOption<String>,
    next_refresh: AtomicI64,
    max_staleness: Option<i64>,
    pub(crate) metrics: KeyMetrics,
    pub(crate) control: Option<RefreshControl>,
}

/// The hand-off between requests that miss a `kid` and the refresher.
///
/// Every fetch attempt gets a sequence number when it starts ([`KeyStore::fetch_started`]) and
/// publishes it when it ends ([`KeyStore::fetch_finished`]). A request that misses a `kid` is
/// attached to one fetch: the unknown-`kid` fetch already in flight (every concurrent miss
/// shares it), or else the next fetch to start. It is released only when that fetch (or a
/// later one) ends, or when its wait bound passes — never by a fetch that had started before
/// its miss and so may not hold the new key.
pub(crate) struct RefreshControl {
    /// Wakes the refresher for an unknown-`kid` fetch.
    pub(crate) kick: Notify,
    cooldown_secs: i64,
    max_wait: Duration,
    /// Only requests with an unknown `kid` and the refresher take this lock, never for long
    /// and never across an `.await`; verification of known keys does not touch it.
    kid_refresh: Mutex<KidRefresh>,
    /// The sequence number of the latest fetch attempt that finished; waiters watch it.
    finished: watch::Sender<u64>,
}

struct KidRefresh {
    /// When the last unknown-`kid` fetch was asked for.
    last: i64,
    /// Sequence number of the latest fetch attempt that started (0: none yet).
    started: u64,
    /// An unknown-`kid` fetch was asked for and has not started yet.
    requested: bool,
    /// The sequence number of the unknown-`kid` fetch in flight, if one is.
    in_flight: Option<u64>,
}

/// A duration in whole seconds as an `i64`, saturating instead of wrapping negative.
pub(crate) fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl RefreshControl {
    /// `cooldown` is counted in the clock's whole seconds; a fraction rounds up, so the
    /// cooldown is never shorter than configured (the builder refuses one under 1 s).
    pub(crate) fn new(cooldown: Duration, max_wait: Duration) -> Self {
        let whole = secs_i64(cooldown);
        let cooldown_secs = if cooldown.subsec_nanos() > 0 { whole.saturating_add(1) } else { whole };
        Self {
            kick: Notify::new(),
            cooldown_secs,
            max_wait,
            kid_refresh: Mutex::new(KidRefresh {
                last: NEVER,
                started: 0,
                requested: false,
                in_flight: None,
            }),
            finished: watch::Sender::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, KidRefresh> {
        self.kid_refresh.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a request asked for an unknown-`kid` fetch that has not started yet.
    pub(crate) fn requested(&self) -> bool {
        self.state().requested
    }
}

impl KeyStore {
    /// Puts keys configured statically next to a remote source into the store before the
    /// first fetch, so tokens they sign verify even while the remote keys are not loaded. The
    /// store stays not ready (and not fresh) until a fetch succeeds.
    pub(crate) fn preload(&self, keys: KeySet) {
        if keys.is_empty() || self.loaded() {
            return;
        }
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A store holding fixed keys that never refresh.
    pub(crate) fn fixed(keys: KeySet) -> Self {
        let store = Self::empty(None, None);
        store.swap(keys, 0);
        store
    }

    /// A store without keys yet; `control` is set when a refresher will fill it.
    pub(crate) fn empty(control: Option<RefreshControl>, max_staleness: Option<Duration>) -> Self {
        Self {
            keys: ArcSwap::from_pointee(KeySet::default()),
            generation: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            last_success: AtomicI64::new(NEVER),
            last_error: ArcSwapOption::empty(),
            next_refresh: AtomicI64::new(NEVER),
            max_staleness: max_staleness.map(secs_i64),
            metrics: KeyMetrics::default(),
            control,
        }
    }

    /// The current key set. Never waits.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Incremented at every swap.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether keys may be used at time `now`: loaded, and not older than the maximum
    /// staleness when one is configured.
    pub fn usable(&self, now: i64) -> bool {
        self.loaded() && !self.is_stale(now)
    }

    /// Whether a key set has been loaded: static keys alone, or a successful fetch. Static
    /// keys preloaded next to a remote source do not count.
    pub fn loaded(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether the loaded set is older than the configured maximum staleness at `now`.
    pub fn is_stale(&self, now: i64) -> bool {
        let last = self.last_success.load(Ordering::Acquire);
        match self.max_staleness {
            Some(max) if self.control.is_some() => last == NEVER || now.saturating_sub(last) > max,
            _ => false,
        }
    }

    /// The store's status at time `now`.
    pub fn status(&self, now: i64) -> KeyStoreStatus {
        let last = self.last_success.load(Ordering::Acquire);
        let m = &self.metrics;
        KeyStoreStatus {
            ready: self.ready.load(Ordering::Acquire),
            generation: self.generation(),
            age_secs: match (self.control.is_some(), last) {
                (false, _) => Some(0),
                (true, NEVER) => None,
                (true, last) => Some(now.saturating_sub(last).max(0)),
            },
            stale: self.is_stale(now),
            keys: self.keys.load().len(),
            last_error: self.last_error.load_full().map(|e| (*e).clone()),
            next_refresh_at: Some(self.next_refresh.load(Ordering::Acquire)).filter(|&t| t != NEVER),
            fetches: m.fetches.load(Ordering::Relaxed),
            failures: m.failures.load(Ordering::Relaxed),
            not_modified: m.not_modified.load(Ordering::Relaxed),
            unknown_kid_refreshes: m.unknown_kid_refreshes.load(Ordering::Relaxed),
        }
    }

    /// Replaces the key set (never with an empty one) and records a successful fetch.
    pub(crate) fn swap(&self, keys: KeySet, now: i64) {
        if keys.is_empty() {
            return;
        }
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.metrics.swaps.fetch_add(1, Ordering::Relaxed);
        self.mark_fresh(now);
        self.ready.store(true, Ordering::Release);
    }

    /// Records a fetch that confirmed the current set (a 304).
    pub(crate) fn mark_fresh(&self, now: i64) {
        self.last_success.store(now, Ordering::Release);
        self.last_error.store(None);
    }

    /// Records a failed fetch; the current set stays.
    pub(crate) fn mark_failed(&self, error: String) {
        self.metrics.failures.fetch_add(1, Ordering::Relaxed);
        self.last_error.store(Some(Arc::new(error)));
    }

    /// Records that a fetch attempt starts and returns its sequence number. A pending
    /// unknown-`kid` request is served by this fetch: it started after the miss.
    pub(crate) fn fetch_started(&self) -> u64 {
        let Some(control) = &self.control else {
            return 0;
        };
        let mut state = control.state();
        state.started = state.started.saturating_add(1);
        if state.requested {
            state.requested = false;
            state.in_flight = Some(state.started);
        }
        state.started
    }

    /// Records that fetch attempt `seq` finished and when the next one is due, and releases
    /// the waiters attached to it.
    pub(crate) fn fetch_finished(&self, seq: u64, next_refresh_at: i64) {
        self.next_refresh.store(next_refresh_at, Ordering::Release);
        if let Some(control) = &self.control {
            let mut state = control.state();
            if state.in_flight == Some(seq) {
                state.in_flight = None;
            }
            drop(state);
            control.finished.send_modify(|n| *n = (*n).max(seq));
        }
    }

    /// Called by a request whose token names a `kid` the set lacks. Asks for a fetch unless one
    /// was asked for within the cooldown, and waits (at most the configured bound) for the
    /// unknown-`kid` fetch in flight or, failing that, for the next fetch to start. Returns
    /// whether that fetch finished while waiting, i.e. whether a retry may help.
    pub async fn refresh_for_unknown_kid(&self, now: i64) -> bool {
        let Some(control) = &self.control else {
            return false;
        };
        // Subscribe first: a fetch that finishes after we read the state must wake us.
        let mut finished = control.finished.subscribe();
        let target = {
            let mut state = control.state();
            match state.in_flight {
                // Share the unknown-`kid` fetch already under way.
                Some(seq) => seq,
                None => {
                    if !state.requested {
                        let cooled =
                            state.last == NEVER || now.saturating_sub(state.last) >= control.cooldown_secs;
                        if !cooled {
                            // Within the cooldown and nothing in flight: answer now rather
                            // than stall.
                            return false;
                        }
                        state.last = now;
                        state.requested = true;
                        self.metrics.unknown_kid_refreshes.fetch_add(1, Ordering::Relaxed);
                        control.kick.notify_one();
                    }
                    // Whatever fetch starts next started after this miss.
                    state.started.saturating_add(1)
                }
            }
        };
        let released = finished.wait_for(|&seq| seq >= target);
        matches!(tokio::time::timeout(control.max_wait, released).await, Ok(Ok(_)))
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.keys.load().len())
            .field("generation", &self.generation())
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .field("refreshing", &self.control.is_some())
            .finish()
    }
}
