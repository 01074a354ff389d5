//! The refresher: one task per issuer that owns every fetch of that issuer's keys.
//!
//! It fetches in the background before the set goes stale (the interval is the document's
//! `Cache-Control: max-age`, clamped to configured bounds and, when a maximum staleness is set,
//! to half of it; with `ETag`/`If-None-Match`), and when a request reports an unknown `kid`
//! (rate-limited by [`KeyStore`]). A failed, slow or invalid fetch keeps the last good set and
//! is retried with exponential backoff and jitter (base and cap configurable). The task ends
//! when the [`RefresherGuard`] held by the layer is dropped.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::fetch::{self, Conditional};
use super::store::KeyStore;
use super::{KeySet, VerifyingKey};
use crate::clock::SharedClock;
use crate::discovery;

/// Default lower bound of the background refresh interval: 5 minutes. Refreshing more often
/// than this gains little (unknown `kid`s trigger their own fetch) and loads the issuer.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Default upper bound of the background refresh interval: 24 hours, so a removed key stops
/// verifying within a day even if the issuer asks for longer caching.
pub const DEFAULT_MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Default first retry delay after a failed fetch: 1 s, doubling per failure. A blip (a
/// restarting issuer, a dropped connection) is retried at once; the clock counts whole
/// seconds, so this is also the shortest delay that means anything.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);

/// Default longest retry delay after failures: 5 minutes, the default floor of the refresh
/// interval: an issuer that is down for long is asked no more often than a healthy one, yet
/// its recovery is noticed within minutes.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);

/// How often the task looks at the clock. Time comes from the [`Clock`](crate::clock::Clock),
/// so tests move it and the task notices within a tick.
const TICK: Duration = Duration::from_millis(250);

/// Where the keys come from.
#[derive(Debug, Clone)]
pub(crate) enum JwksLocation {
    /// A configured `jwks_uri`.
    Url(reqwest::Url),
    /// The `jwks_uri` of the issuer's metadata, discovered on the first fetch.
    Discover,
}

/// Settings of one refresher.
#[derive(Debug, Clone)]
pub(crate) struct RefreshSettings {
    pub(crate) min_interval: Duration,
    pub(crate) max_interval: Duration,
    /// When set, the background interval never exceeds half of it, so a healthy issuer is
    /// refreshed (twice) before its keys count as stale.
    pub(crate) max_staleness: Option<Duration>,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) fetch_timeout: Duration,
    pub(crate) max_document_bytes: usize,
    pub(crate) allow_http: bool,
}

/// Fetches one issuer's keys into its [`KeyStore`].
pub(crate) struct Refresher {
    issuer: Arc<str>,
    /// The JWKS URL: configured, or found by discovery on the first fetch.
    resolved: Option<reqwest::Url>,
    client: reqwest::Client,
    static_keys: Vec<VerifyingKey>,
    etag: Option<String>,
    settings: RefreshSettings,
    failures_in_row: u32,
    next_due: i64,
    store: Arc<KeyStore>,
    clock: SharedClock,
}

/// Stops the refresher task when dropped.
pub struct RefresherGuard {
    _stop: watch::Sender<()>,
}

impl fmt::Debug for RefresherGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefresherGuard")
    }
}

impl Refresher {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        issuer: Arc<str>,
        location: JwksLocation,
        client: reqwest::Client,
        static_keys: Vec<VerifyingKey>,
        settings: RefreshSettings,
        store: Arc<KeyStore>,
        clock: SharedClock,
    ) -> Self {
        let resolved = match &location {
            JwksLocation::Url(url) => Some(url.clone()),
            JwksLocation::Discover => None,
        };
        Self {
            issuer,
            resolved,
            client,
            static_keys,
            etag: None,
            settings,
            failures_in_row: 0,
            next_due: i64::MIN,
            store,
            clock,
        }
    }

    /// One fetch attempt: swaps in a new set, confirms the current one, or records a failure.
    pub(crate) async fn fetch_once(&mut self) -> Result<(), String> {
        let seq = self.store.fetch_started();
        let result = self.try_fetch().await;
        let now = self.clock.now();
        match &result {
            Ok(interval) => {
                self.failures_in_row = 0;
                self.next_due = now.saturating_add(i64::try_from(*interval).unwrap_or(i64::MAX));
            }
            Err(error) => {
                self.failures_in_row = self.failures_in_row.saturating_add(1);
                let delay = backoff_secs(
                    self.failures_in_row,
                    self.settings.backoff_base.as_secs(),
                    self.settings.backoff_max.as_secs(),
                );
                self.next_due = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
                self.store.mark_failed(error.clone());
                tracing::warn!(
                    issuer = %self.issuer,
                    error = %error,
                    failures_in_row = self.failures_in_row,
                    retry_in_secs = delay,
                    "key set fetch failed; keeping the last good key set"
                );
            }
        }
        self.store.fetch_finished(seq, self.next_due);
        result.map(|_| ())
    }

    /// Fetches, and on success returns the seconds until the next background fetch.
    async fn try_fetch(&mut self) -> Result<u64, String> {
        self.store.metrics.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = match &self.resolved {
            Some(url) => url.clone(),
            None => {
                let metadata = discovery::discover(
                    &self.client,
                    &self.issuer,
                    self.settings.allow_http,
                    self.settings.max_document_bytes,
                    self.settings.fetch_timeout,
                )
                .await
                .map_err(|e| e.to_string())?;
                let jwks_uri = metadata.jwks_uri.ok_or("the issuer's metadata has no jwks_uri")?;
                let url = fetch::check_url(&jwks_uri, self.settings.allow_http).map_err(|e| e.to_string())?;
                self.resolved = Some(url.clone());
                url
            }
        };
        let limits = fetch::FetchLimits {
            max_bytes: self.settings.max_document_bytes,
            timeout: self.settings.fetch_timeout,
            allow_http: self.settings.allow_http,
        };
        let answer = fetch::fetch_conditional(&self.client, &url, self.etag.as_deref(), &limits)
            .await
            .map_err(|e| format!("fetching the JWKS: {e}"))?;
        let now = self.clock.now();
        match answer {
            Conditional::NotModified { max_age } => {
                self.store.metrics.not_modified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.store.mark_fresh(now);
                Ok(self.interval(max_age))
            }
            Conditional::Document { body, etag, max_age } => {
                let (set, skipped) = KeySet::from_jwks(&body).map_err(|e| format!("invalid JWKS: {e}"))?;
                for s in &skipped {
                    tracing::warn!(issuer = %self.issuer, kid = s.kid.as_deref().unwrap_or(""), reason = %s.reason, "skipping an unusable key");
                }
                let mut keys: Vec<VerifyingKey> = self.static_keys.clone();
                keys.extend(set.keys().cloned());
                let next = KeySet::from_keys(keys);
                log_swap(&self.issuer, &self.store.snapshot(), &next);
                self.store.swap(next, now);
                self.etag = etag;
                Ok(self.interval(max_age))
            }
        }
    }

    /// Seconds until the next background fetch: `max-age` clamped to the bounds, then capped
    /// at half the maximum staleness (which wins over the lower bound: a healthy issuer must
    /// never be answered with 503 merely because we did not ask it in time).
    fn interval(&self, max_age: Option<u64>) -> u64 {
        refresh_interval(&self.settings, max_age)
    }

    /// Runs the refresher until the returned guard is dropped.
    pub(crate) fn spawn(self) -> RefresherGuard {
        let (stop, stopped) = watch::channel(());
        tokio::spawn(self.run(stopped));
        RefresherGuard { _stop: stop }
    }

    async fn run(mut self, mut stopped: watch::Receiver<()>) {
        let store = self.store.clone();
        let Some(control) = store.control.as_ref() else {
            return;
        };
        loop {
            let kicked = tokio::select! {
                _ = stopped.changed() => return,
                _ = control.kick.notified() => true,
                _ = tokio::time::sleep(TICK) => false,
            };
            // A kick whose request an earlier fetch already served (it started after the miss)
            // needs no fetch of its own.
            let asked = kicked && control.requested();
            if !asked && self.clock.now() < self.next_due {
                continue;
            }
            tokio::select! {
                _ = stopped.changed() => return,
                _ = self.fetch_once() => {}
            }
        }
    }
}

fn log_swap(issuer: &str, old: &KeySet, new: &KeySet) {
    let kids = |set: &KeySet| -> BTreeSet<String> {
        set.keys().filter_map(|k| k.kid().map(str::to_owned)).collect()
    };
    let (old, new_kids) = (kids(old), kids(new));
    let added: Vec<&String> = new_kids.difference(&old).collect();
    let removed: Vec<&String> = old.difference(&new_kids).collect();
    tracing::info!(issuer, ?added, ?removed, keys = new.len(), "key set swapped");
}

/// Seconds until the next background fetch (see [`Refresher::interval`]).
fn refresh_interval(settings: &RefreshSettings, max_age: Option<u64>) -> u64 {
    let min = settings.min_interval.as_secs();
    let max = settings.max_interval.as_secs().max(min);
    let interval = max_age.unwrap_or(min).clamp(min, max);
    match settings.max_staleness {
        Some(staleness) => interval.min((staleness.as_secs() / 2).max(1)),
        None => interval,
    }
}

/// Exponential backoff with jitter: a delay drawn from [d/2, d], d = base·2^(n−1), capped at
/// `max_secs` (all in seconds).
fn backoff_secs(failures: u32, base_secs: u64, max_secs: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(20);
    let ceiling = base_secs.saturating_mul(1 << exp).min(max_secs.max(base_secs));
    let half = ceiling / 2;
    // Jitter needs no cryptographic randomness; RandomState is seeded randomly per instance.
    let random = std::collections::hash_map::RandomState::new().hash_one(failures);
    ceiling - half + random % (half + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let (base, max) = (DEFAULT_BACKOFF_BASE.as_secs(), DEFAULT_BACKOFF_MAX.as_secs());
        for n in 1..40 {
            let d = backoff_secs(n, base, max);
            let ceiling = (base << (n - 1).min(20)).min(max);
            assert!(d <= ceiling && d >= ceiling - ceiling / 2, "{n}: {d}");
        }
        assert!(backoff_secs(30, base, max) >= max / 2);
    }

    #[test]
    fn backoff_follows_the_configured_base_and_cap_without_overflow() {
        for n in 1..40 {
            let d = backoff_secs(n, 10, 60);
            assert!((5..=60).contains(&d), "{n}: {d}");
        }
        assert!((5..=10).contains(&backoff_secs(1, 10, 60)));
        assert!(backoff_secs(40, u64::MAX, u64::MAX) >= u64::MAX / 2, "saturates, never wraps");
    }

    fn settings(max_staleness: Option<Duration>) -> RefreshSettings {
        RefreshSettings {
            min_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            max_interval: DEFAULT_MAX_REFRESH_INTERVAL,
            max_staleness,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            fetch_timeout: Duration::from_secs(5),
            max_document_bytes: 1024,
            allow_http: false,
        }
    }

    #[test]
    fn the_interval_stays_under_half_the_maximum_staleness() {
        assert_eq!(refresh_interval(&settings(None), Some(3600)), 3600);
        let capped = settings(Some(Duration::from_secs(900)));
        assert_eq!(refresh_interval(&capped, Some(3600)), 450);
        assert_eq!(refresh_interval(&capped, Some(10)), 300, "the floor still applies below the cap");
        let tight = settings(Some(Duration::from_secs(120)));
        assert_eq!(refresh_interval(&tight, None), 60, "the cap wins over the 5 min floor");
        assert_eq!(refresh_interval(&settings(Some(Duration::from_secs(1))), None), 1);
        let huge = RefreshSettings { max_interval: Duration::MAX, ..settings(Some(Duration::MAX)) };
        assert_eq!(refresh_interval(&huge, Some(u64::MAX)), u64::MAX / 2);
    }
}
