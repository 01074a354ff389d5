//! The verified-token cache (DESIGN.md step 3): a token seen before skips the signature check.
//!
//! Keyed by the SHA-256 of the token — never the token — so neither a memory dump nor a hash
//! collision can turn the cache into a token store or a bypass. Only successfully verified
//! tokens are cached, so a flood of forgeries cannot fill it. A hit is not a free pass:
//! `exp`/`nbf` are checked again, as are the revocation list and the route's scopes (by the
//! pipeline), the issuer's keys must still be usable, and the entry is void as soon as the
//! issuer's key set has changed (a generation number compare, not a search).
//!
//! Bounded twice: by entries and by bytes (each entry weighs at least `max_bytes /
//! max_entries`, so neither bound can be exceeded).

use std::fmt;
use std::time::Duration;

use crate::claims::Principal;

/// Default number of cached tokens: 100 000.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// Default memory budget of the cache: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Longest time an entry lives even if its token lives longer: 10 minutes, so the cache also
/// forgets tokens that stopped being used. An entry whose token expires sooner goes when its
/// token does (plus the leeway): expired tokens never hold memory.
const MAX_ENTRY_LIFETIME: Duration = Duration::from_secs(600);

/// Fixed overhead of an entry besides the claims: the key, the principal's fields, moka's
/// bookkeeping (measured roughly; see the performance notes in the README).
const ENTRY_OVERHEAD_BYTES: u64 = 320;

/// Settings of the verified-token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheConfig {
    /// Maximum number of cached tokens.
    pub max_entries: u64,
    /// Approximate memory budget, in bytes.
    pub max_bytes: u64,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self { max_entries: DEFAULT_MAX_ENTRIES, max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// One verified token.
#[derive(Clone)]
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    /// Index of the issuer that verified it.
    pub(crate) issuer: usize,
    /// The issuer's key-set generation at verification time.
    pub(crate) generation: u64,
    /// `nbf`, re-checked on every hit (`exp` is the principal's).
    pub(crate) not_before: Option<i64>,
    weight: u32,
    /// How long the entry may stay: until the token can no longer pass, at most
    /// [`MAX_ENTRY_LIFETIME`].
    lifetime: Duration,
}

impl Verified {
    /// An entry for `principal`, verified at `now` with `leeway` seconds of clock skew.
    pub(crate) fn new(
        principal: Principal,
        issuer: usize,
        generation: u64,
        not_before: Option<i64>,
        claims_bytes: usize,
        now: i64,
        leeway: i64,
    ) -> Self {
        let weight = (claims_bytes as u64 + ENTRY_OVERHEAD_BYTES).min(u32::MAX as u64) as u32;
        let lifetime = match principal.expires_at() {
            Some(exp) => {
                let secs = exp.saturating_add(leeway).saturating_sub(now).max(0);
                Duration::from_secs(u64::try_from(secs).unwrap_or(0)).min(MAX_ENTRY_LIFETIME)
            }
            None => MAX_ENTRY_LIFETIME,
        };
        Self { principal, issuer, generation, not_before, weight, lifetime }
    }
}

/// The cache itself.
pub(crate) struct TokenCache {
    cache: moka::sync::Cache<[u8; 32], Verified>,
}

impl TokenCache {
    pub(crate) fn new(config: TokenCacheConfig) -> Self {
        let floor = (config.max_bytes / config.max_entries.max(1)).clamp(1, u32::MAX as u64) as u32;
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(move |_, v: &Verified| v.weight.max(floor))
            .expire_after(UntilTokenExpiry)
            .build();
        Self { cache }
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Verified> {
        self.cache.get(key)
    }

    pub(crate) fn insert(&self, key: [u8; 32], entry: Verified) {
        self.cache.insert(key, entry);
    }

    pub(crate) fn invalidate(&self, key: &[u8; 32]) {
        self.cache.invalidate(key);
    }

    /// Entries held, after moka's pending bookkeeping (it counts lazily); for metrics and
    /// tests, not the request path.
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

/// Expires each entry after its own [`Verified::lifetime`].
struct UntilTokenExpiry;

impl moka::Expiry<[u8; 32], Verified> for UntilTokenExpiry {
    fn expire_after_create(&self, _: &[u8; 32], value: &Verified, _: std::time::Instant) -> Option<Duration> {
        Some(value.lifetime)
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache").field("entries", &self.cache.entry_count()).finish()
    }
}

/// SHA-256 of a token: the key of every cache, so no cache ever holds a token.
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    let digest = aws_lc::digest::digest(&aws_lc::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}
