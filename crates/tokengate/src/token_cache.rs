//! The verified-token cache (DESIGN.md step 3): a token seen before skips the signature check.
//!
//! Keyed by the SHA-256 of the token — never the token — and a hit needs 128 bits of it to
//! match, so neither a memory dump nor a hash collision can turn the cache into a token store
//! or a bypass. Only successfully verified tokens are cached, so a flood of forgeries cannot
//! fill it. A hit is not a free pass:
//! `exp`/`nbf` are checked again, as are the revocation list and the route's scopes (by the
//! pipeline), the issuer's keys must still be usable, and the entry is void as soon as the
//! issuer's key set has changed (a generation number compare, not a search).
//!
//! Bounded twice: by entries and by bytes (each entry weighs its `TokenFacts`, the token's
//! claims text and a small header in one allocation, plus its slot). Neither bound can be
//! exceeded: both are split evenly between the shards and enforced per shard. The tables are
//! sized up front for `max_entries` (≈ 50 bytes of address space per entry, resident only as
//! entries arrive); `max_bytes` counts the entries' weight, not that reservation. Apart from
//! both bounds, each thread that decides requests keeps copies of its last few hits (at most
//! 64, each of at most 4 KiB of facts; see `token_cache/hot.rs`).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use crate::claims::{Principal, TokenFacts};

mod hot;

/// Default number of cached tokens: 100 000.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// Default memory budget of the cache: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Longest time an entry lives even if its token lives longer: 10 minutes, so the cache also
/// forgets tokens that stopped being used. An entry whose token expires sooner is dead when
/// its token is (plus the leeway), and its memory is reclaimed by the next sweep.
const MAX_ENTRY_LIFETIME_SECS: i64 = 600;

/// How often (seconds, on the gate's clock) a shard drops its dead entries, at its next insert.
const SWEEP_INTERVAL_SECS: i64 = 60;

/// Entries per shard the cache aims for: 7/8 of 16 384, the most a hash table of 16 384
/// slots holds before it doubles, so a full shard wastes little of its table.
const SHARD_TARGET: u64 = 16_384 / 8 * 7;

/// At least this many shards (when there are that many entries), so that two workers rarely
/// meet on one shard's lock, and at most this many.
const MIN_SHARDS: u64 = 16;
const MAX_SHARDS: u64 = 4096;

/// What an entry weighs besides its facts: its slot in the table and the facts' reference
/// counts and allocator header.
const SLOT_BYTES: u64 = (std::mem::size_of::<(u64, Slot)>() + 24) as u64;

/// Settings of the verified-token cache.
///
/// Both bounds are split evenly between the cache's shards (at least 16 when there are that
/// many entries), so a small cache holds up to `max_entries` rounded down to a multiple of the
/// shard count, and a token weighing more than a shard's share of `max_bytes` is not cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheConfig {
    /// Maximum number of cached tokens (in the shared table; each thread that decides requests
    /// also keeps copies of up to 64 recent hits).
    pub max_entries: u64,
    /// Memory budget, in bytes: the shared entries' own weight (their facts and their slots).
    pub max_bytes: u64,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self { max_entries: DEFAULT_MAX_ENTRIES, max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// One verified token, as the cache keeps it.
#[derive(Clone)]
pub(crate) struct Verified {
    /// The token's facts, shared with every principal built from them.
    pub(crate) facts: TokenFacts,
    /// Index of the issuer that verified it.
    pub(crate) issuer: usize,
    /// The issuer's key-set generation at verification time (its low bits; compare with
    /// [`generation_is`](Self::generation_is)).
    generation: u64,
    /// When the entry dies (gate clock, seconds): when its token no longer passes `exp` with
    /// the leeway, at most [`MAX_ENTRY_LIFETIME_SECS`] after it was verified.
    deadline: i64,
}

impl Verified {
    /// An entry for `facts`, verified at `now` with `leeway` seconds of clock skew.
    pub(crate) fn new(facts: TokenFacts, issuer: usize, generation: u64, now: i64, leeway: i64) -> Self {
        let longest = now.saturating_add(MAX_ENTRY_LIFETIME_SECS);
        let deadline = facts.expires_at().map_or(longest, |exp| exp.saturating_add(leeway).min(longest));
        Self { facts, issuer, generation: generation & GENERATION_MASK, deadline }
    }

    /// Whether the issuer's key set is still the one this entry was verified under.
    pub(crate) fn generation_is(&self, current: u64) -> bool {
        self.generation == current & GENERATION_MASK
    }
}

/// An entry in a shard's table, keyed by the first 64 bits of the token's hash: 32 bytes.
struct Slot {
    /// The next 64 bits of the hash: a hit needs all 128 to match.
    check: u64,
    facts: TokenFacts,
    /// [`Verified::deadline`], in Unix seconds (a `u32` lasts until 2106).
    deadline: u32,
    /// The issuer's index (high 10 bits) and its key-set generation (low 22 bits).
    stamp: u32,
}

/// Bits of the key-set generation a slot keeps. A generation changes when the issuer's keys
/// do, and an entry lives at most ten minutes: four million changes in that time do not
/// happen (key refreshes are minutes apart, unknown-`kid` refreshes 30 s apart).
const GENERATION_BITS: u32 = 22;
const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;
/// Issuers past the 1024th are verified as ever but not cached.
const MAX_CACHED_ISSUERS: usize = 1 << (32 - GENERATION_BITS);

/// What an entry for `facts` weighs against the cache's byte budget.
fn entry_weight(facts: &TokenFacts) -> u64 {
    facts.len() as u64 + SLOT_BYTES
}

/// A token hash, cut into the parts the cache uses.
struct Key {
    index: u64,
    check: u64,
    shard: u64,
}

impl Key {
    fn of(hash: &[u8; 32]) -> Self {
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&hash[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        Self { index: word(0), check: word(8), shard: word(16) }
    }
}

/// The table keys are SHA-256 bits already: hashing them again would only cost time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps any other input well mixed all the same.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
struct Shard {
    table: HashMap<u64, Slot, BuildHasherDefault<KeyHasher>>,
    /// Sum of the entries' weights.
    bytes: u64,
    /// When (gate clock) this shard next drops its dead entries.
    next_sweep: i64,
    /// Which sixteenth of the table goes next when the shard is full.
    victim: u8,
}

impl Shard {
    fn drop_where(&mut self, mut dead: impl FnMut(u64, &Slot) -> bool) {
        let bytes = &mut self.bytes;
        self.table.retain(|&index, slot| {
            let drop = dead(index, slot);
            if drop {
                *bytes = bytes.saturating_sub(entry_weight(&slot.facts));
            }
            !drop
        });
    }
}

/// The cache itself: a fixed number of shards, each a hash table behind a read-write lock.
///
/// A hit takes one shard's read lock for a table lookup and a reference-count increment;
/// nothing on the hit path writes to the table, so hits on one shard do not wait for each
/// other. Each thread also keeps its last few hits with their principals ([`hot`]): a token
/// the thread saw a moment ago is found there with no lock and no shared write. An insert
/// (after a signature check, tens of microseconds) takes the write lock. When a shard is full,
/// a random sixteenth of it goes at once (chosen by hash bits, so the work is one pass over the
/// shard per `capacity / 16` inserts). Dead entries are never served, and each shard drops them
/// every [`SWEEP_INTERVAL_SECS`] at its next insert.
pub(crate) struct TokenCache {
    /// Tells this cache's entries in each thread's [`hot`] set from another cache's (and, once
    /// the cache is dropped, marks them for the threads' sweeps).
    id: u64,
    shards: Box<[RwLock<Shard>]>,
    entries_per_shard: usize,
    bytes_per_shard: u64,
}

impl TokenCache {
    pub(crate) fn new(config: TokenCacheConfig) -> Self {
        let max_entries = config.max_entries;
        let shards = max_entries.div_ceil(SHARD_TARGET).clamp(MIN_SHARDS, MAX_SHARDS).min(max_entries).max(1);
        let entries_per_shard = usize::try_from(max_entries / shards).unwrap_or(usize::MAX);
        // Each table is sized once for its share, so it never grows (and leaves no outgrown
        // table behind); its pages become resident only as entries arrive.
        let capacity = entries_per_shard.min(SHARD_TARGET as usize);
        let shards_vec: Vec<RwLock<Shard>> = (0..shards)
            .map(|_| {
                RwLock::new(Shard {
                    table: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
                    ..Shard::default()
                })
            })
            .collect();
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        hot::made(id);
        Self {
            id,
            shards: shards_vec.into_boxed_slice(),
            entries_per_shard,
            bytes_per_shard: config.max_bytes / shards,
        }
    }

    fn shard(&self, key: &Key) -> &RwLock<Shard> {
        // `shards` is never empty and the index is below its length.
        &self.shards[(key.shard % self.shards.len() as u64) as usize]
    }

    /// The principal of the live entry for the token with hash `hash` that passes `valid`, if
    /// any: this thread's own copy of a recent hit when it has one, else one built by `make`
    /// from the shared entry (and then kept as this thread's copy). A shared entry that fails
    /// `valid` is dropped.
    pub(crate) fn principal(
        &self,
        hash: &[u8; 32],
        now: i64,
        valid: impl Fn(&Verified) -> bool,
        make: impl FnOnce(&Verified) -> Option<Principal>,
    ) -> Option<Principal> {
        let key = Key::of(hash);
        if let Some(principal) = hot::get(self.id, &key, now, &valid) {
            return Some(principal);
        }
        let hit = self.get(hash, now)?;
        let principal = if valid(&hit) { make(&hit) } else { None };
        match principal {
            Some(principal) => {
                hot::put(self.id, &key, hit, principal.clone(), now);
                Some(principal)
            }
            None => {
                self.invalidate(hash);
                None
            }
        }
    }

    /// The live shared entry for the token with hash `hash`, if any.
    fn get(&self, hash: &[u8; 32], now: i64) -> Option<Verified> {
        let key = Key::of(hash);
        let shard = self.shard(&key).read().unwrap_or_else(PoisonError::into_inner);
        let slot = shard.table.get(&key.index)?;
        (slot.check == key.check && now < i64::from(slot.deadline)).then(|| Verified {
            facts: slot.facts.clone(),
            issuer: (slot.stamp >> GENERATION_BITS) as usize,
            generation: u64::from(slot.stamp) & GENERATION_MASK,
            deadline: i64::from(slot.deadline),
        })
    }

    /// Caches `entry` for the token with hash `hash`, making room if the shard is full; when
    /// it is cached, `principal` (built from it) becomes this thread's copy of the entry.
    pub(crate) fn insert(&self, hash: &[u8; 32], entry: Verified, principal: &Principal, now: i64) {
        let weight = entry_weight(&entry.facts);
        let Ok(deadline) = u32::try_from(entry.deadline) else { return };
        if entry.issuer >= MAX_CACHED_ISSUERS
            || self.entries_per_shard == 0
            || weight > self.bytes_per_shard
            || now >= entry.deadline
        {
            return;
        }
        let key = Key::of(hash);
        let mut shard = self.shard(&key).write().unwrap_or_else(PoisonError::into_inner);
        // A clock that went back a long way must not postpone sweeps for as long.
        if now >= shard.next_sweep || now.saturating_add(SWEEP_INTERVAL_SECS) < shard.next_sweep {
            shard.drop_where(|_, slot| now >= i64::from(slot.deadline));
            shard.next_sweep = now.saturating_add(SWEEP_INTERVAL_SECS);
        }
        if let Some(old) = shard.table.remove(&key.index) {
            shard.bytes = shard.bytes.saturating_sub(entry_weight(&old.facts));
        }
        while !shard.table.is_empty()
            && (shard.table.len() >= self.entries_per_shard || shard.bytes + weight > self.bytes_per_shard)
        {
            let victim = shard.victim & 15;
            shard.victim = shard.victim.wrapping_add(1);
            shard.drop_where(|index, _| (index >> 60) as u8 == victim);
        }
        shard.bytes += weight;
        // Both parts fit: the issuer is below `MAX_CACHED_ISSUERS`, the generation was masked.
        let stamp = ((entry.issuer as u64) << GENERATION_BITS | entry.generation) as u32;
        shard.table.insert(key.index, Slot { check: key.check, facts: entry.facts.clone(), deadline, stamp });
        drop(shard);
        hot::put(self.id, &key, entry, principal.clone(), now);
    }

    /// Forgets the token with hash `hash`: in the shared table and in **this** thread's copies
    /// only. Other threads' copies stay until their own check fails, so this is for entries
    /// that fail a check every thread makes on every hit (as [`principal`](Self::principal)
    /// does), never a way to revoke a token: the revocation list is checked on every request.
    pub(crate) fn invalidate(&self, hash: &[u8; 32]) {
        let key = Key::of(hash);
        hot::forget(self.id, &key);
        let mut shard = self.shard(&key).write().unwrap_or_else(PoisonError::into_inner);
        if shard.table.get(&key.index).is_some_and(|slot| slot.check == key.check)
            && let Some(old) = shard.table.remove(&key.index)
        {
            shard.bytes = shard.bytes.saturating_sub(entry_weight(&old.facts));
        }
    }

    /// Entries held, dead ones not yet swept included; for metrics and tests.
    pub(crate) fn entry_count(&self) -> u64 {
        self.shards.iter().map(|s| s.read().unwrap_or_else(PoisonError::into_inner).table.len() as u64).sum()
    }

    /// Bytes the entries weigh (their facts and slots).
    #[cfg(test)]
    fn weighed_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.read().unwrap_or_else(PoisonError::into_inner).bytes).sum()
    }
}

impl Drop for TokenCache {
    fn drop(&mut self) {
        hot::dropped(self.id);
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("shards", &self.shards.len())
            .field("entries", &self.entry_count())
            .finish()
    }
}

/// SHA-256 of a token: the key of every cache, so no cache ever holds a token.
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    let digest = aws_lc::digest::digest(&aws_lc::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{FactsSource, VerifiedBy};

    fn principal_of(entry: &Verified) -> Principal {
        Principal::new("https://issuer.example".into(), entry.facts.clone(), VerifiedBy::Signature, None)
    }

    /// Inserts `entry` the way the pipeline does, with the principal built from it.
    fn insert(cache: &TokenCache, hash: &[u8; 32], entry: Verified, now: i64) {
        let principal = principal_of(&entry);
        cache.insert(hash, entry, &principal, now);
    }

    fn entry(exp: Option<i64>, now: i64) -> Verified {
        let source = FactsSource { subject: Some("alice"), expires_at: exp, ..FactsSource::default() };
        let facts = TokenFacts::new(r#"{"sub":"alice"}"#, &source).expect("facts");
        Verified::new(facts, 0, 7, now, 30)
    }

    fn hash(n: u64) -> [u8; 32] {
        token_hash(&format!("token-{n}"))
    }

    #[test]
    fn a_hit_needs_128_bits_of_the_hash() {
        let cache = TokenCache::new(TokenCacheConfig::default());
        let key = hash(1);
        insert(&cache, &key, entry(Some(1_000), 0), 0);
        let hit = cache.get(&key, 0).expect("a hit");
        assert_eq!((hit.issuer, hit.generation), (0, 7));
        let mut near = key;
        near[8] ^= 1; // same table key, another token
        assert!(cache.get(&near, 0).is_none());
        cache.invalidate(&near);
        assert!(cache.get(&key, 0).is_some(), "invalidating another token leaves this one");
        cache.invalidate(&key);
        assert!(cache.get(&key, 0).is_none());
        assert_eq!((cache.entry_count(), cache.weighed_bytes()), (0, 0));
    }

    #[test]
    fn a_hit_knows_its_issuer_and_key_set_generation() {
        let cache = TokenCache::new(TokenCacheConfig::default());
        let facts = entry(Some(1_000), 0).facts;
        insert(&cache, &hash(1), Verified::new(facts.clone(), 1023, (5 << GENERATION_BITS) | 9, 0, 30), 0);
        let hit = cache.get(&hash(1), 0).expect("a hit");
        assert_eq!(hit.issuer, 1023);
        assert!(hit.generation_is((5 << GENERATION_BITS) | 9));
        assert!(!hit.generation_is(10) && !hit.generation_is(8));
        // An issuer whose index does not fit is verified as ever, just not cached.
        insert(&cache, &hash(2), Verified::new(facts, MAX_CACHED_ISSUERS, 1, 0, 30), 0);
        assert!(cache.get(&hash(2), 0).is_none());
    }

    #[test]
    fn an_entry_dies_with_its_token_or_after_ten_minutes() {
        let cache = TokenCache::new(TokenCacheConfig::default());
        insert(&cache, &hash(1), entry(Some(100), 0), 0);
        assert!(cache.get(&hash(1), 129).is_some());
        assert!(cache.get(&hash(1), 130).is_none(), "exp + leeway");
        insert(&cache, &hash(2), entry(None, 0), 0);
        assert!(cache.get(&hash(2), 599).is_some());
        assert!(cache.get(&hash(2), 600).is_none(), "ten minutes");
        insert(&cache, &hash(3), entry(Some(10), 50), 50);
        assert!(cache.get(&hash(3), 50).is_none(), "a token dead already is not cached");
    }

    #[test]
    fn dead_entries_are_swept_at_the_next_insert_after_the_interval() {
        let cache = TokenCache::new(TokenCacheConfig { max_entries: 16, max_bytes: 1 << 20 });
        assert_eq!(cache.shards.len(), 16);
        for n in 0..200 {
            insert(&cache, &hash(n), entry(Some(100), 0), 0);
        }
        assert!(cache.entry_count() > 0);
        // Every shard's next insert after the interval drops what died.
        for n in 1_000..3_000 {
            insert(&cache, &hash(n), entry(Some(10_000), 200), 200);
        }
        assert!((0..200).all(|n| cache.get(&hash(n), 200).is_none()));
        let count = cache.entry_count();
        assert!(count <= 16, "{count}");
    }

    #[test]
    fn neither_bound_is_ever_exceeded() {
        let one = entry_weight(&entry(Some(1_000), 0).facts);
        for (max_entries, max_bytes) in [(1_000, 1 << 30), (100_000, 300 * one), (1, 1 << 20), (0, 1 << 20)] {
            let cache = TokenCache::new(TokenCacheConfig { max_entries, max_bytes });
            for n in 0..5_000 {
                insert(&cache, &hash(n), entry(Some(1_000), 0), 0);
                if n % 500 == 0 {
                    assert!(cache.entry_count() <= max_entries);
                    assert!(cache.weighed_bytes() <= max_bytes);
                }
            }
            let (count, bytes) = (cache.entry_count(), cache.weighed_bytes());
            assert!(count <= max_entries && bytes <= max_bytes, "{max_entries}/{max_bytes}: {count}/{bytes}");
            assert_eq!(bytes, count * one, "the weights add up");
            if max_entries >= 1_000 {
                assert!(
                    count * 2 > max_entries.min(max_bytes / one),
                    "a full cache stays mostly full: {count}"
                );
            }
        }
    }

    #[test]
    fn an_entry_heavier_than_a_shard_is_not_cached() {
        let one = entry_weight(&entry(Some(1_000), 0).facts);
        let cache = TokenCache::new(TokenCacheConfig { max_entries: 1_000, max_bytes: one * 16 - 1 });
        insert(&cache, &hash(1), entry(Some(1_000), 0), 0);
        assert_eq!(cache.entry_count(), 0);
    }

    fn principal(cache: &TokenCache, hash: &[u8; 32], now: i64, valid: bool) -> Option<Principal> {
        cache.principal(hash, now, |_| valid, |hit| Some(principal_of(hit)))
    }

    fn clear_shared_tables(cache: &TokenCache) {
        for shard in cache.shards.iter() {
            shard.write().expect("lock").table.clear();
        }
    }

    #[test]
    fn a_thread_finds_its_recent_hits_without_the_shared_table() {
        let cache = TokenCache::new(TokenCacheConfig::default());
        insert(&cache, &hash(1), entry(Some(1_000), 0), 0);
        assert_eq!(hot::held(cache.id), 1, "the inserting thread keeps the principal");
        clear_shared_tables(&cache);
        let seen = principal(&cache, &hash(1), 0, true).expect("this thread's copy");
        assert_eq!(seen.subject(), Some("alice"));
        // Another thread has no copy: it sees what the shared table holds (nothing now).
        std::thread::scope(|s| {
            s.spawn(|| assert!(principal(&cache, &hash(1), 0, true).is_none())).join().expect("thread");
        });
        // A shared hit becomes the thread's copy too.
        let cache = TokenCache::new(TokenCacheConfig::default());
        std::thread::scope(|s| {
            s.spawn(|| insert(&cache, &hash(2), entry(Some(1_000), 0), 0)).join().expect("thread");
        });
        assert_eq!(hot::held(cache.id), 0);
        assert!(principal(&cache, &hash(2), 0, true).is_some());
        assert_eq!(hot::held(cache.id), 1);
        clear_shared_tables(&cache);
        assert!(principal(&cache, &hash(2), 0, true).is_some());
    }

    #[test]
    fn a_threads_copy_is_checked_like_the_shared_entry_on_every_hit() {
        let cache = TokenCache::new(TokenCacheConfig::default());
        insert(&cache, &hash(1), entry(Some(100), 0), 0);
        assert!(principal(&cache, &hash(1), 129, true).is_some());
        assert!(principal(&cache, &hash(1), 130, true).is_none(), "exp + leeway");
        assert_eq!(hot::held(cache.id), 0, "a dead copy is forgotten");

        // A copy that fails the caller's check (key set changed, `exp`, `nbf`) is forgotten,
        // and so is the shared entry.
        insert(&cache, &hash(2), entry(Some(1_000), 0), 0);
        assert!(principal(&cache, &hash(2), 0, false).is_none());
        assert_eq!(hot::held(cache.id), 0);
        assert!(principal(&cache, &hash(2), 0, true).is_none(), "the shared entry is gone too");

        // Invalidating forgets this thread's copy.
        insert(&cache, &hash(3), entry(Some(1_000), 0), 0);
        cache.invalidate(&hash(3));
        assert!(principal(&cache, &hash(3), 0, true).is_none());

        // A hit needs all 128 bits in the copy as in the table.
        insert(&cache, &hash(4), entry(Some(1_000), 0), 0);
        let mut near = hash(4);
        near[8] ^= 1;
        assert!(principal(&cache, &near, 0, true).is_none());
        assert!(principal(&cache, &hash(4), 0, true).is_some());
    }

    #[test]
    fn two_caches_on_one_thread_never_see_each_others_tokens() {
        let (one, two) =
            (TokenCache::new(TokenCacheConfig::default()), TokenCache::new(TokenCacheConfig::default()));
        insert(&one, &hash(1), entry(Some(1_000), 0), 0);
        assert!(principal(&two, &hash(1), 0, true).is_none());
        assert!(principal(&one, &hash(1), 0, true).is_some());
        // A token the shared cache refuses (too heavy for a shard) gets no copy either.
        let light = TokenCache::new(TokenCacheConfig { max_entries: 1_000, max_bytes: 16 });
        insert(&light, &hash(1), entry(Some(1_000), 0), 0);
        assert_eq!(hot::held(light.id), 0);
        assert!(principal(&light, &hash(1), 0, true).is_none());
    }

    #[test]
    fn a_thread_keeps_at_most_its_slots() {
        let cache = TokenCache::new(TokenCacheConfig::default());
        for n in 0..1_000 {
            insert(&cache, &hash(n), entry(Some(1_000), 0), 0);
        }
        let held = hot::held(cache.id);
        assert!(held <= hot::SLOTS && held > hot::SLOTS / 2, "{held}");
        assert!(
            (0..1_000).all(|n| principal(&cache, &hash(n), 0, true).is_some()),
            "the shared table has them all"
        );
    }

    #[test]
    fn a_threads_copies_of_a_dropped_cache_or_of_dead_tokens_are_swept() {
        // Copies of a cache that is gone: swept within the thread's next SLOTS copies.
        let gone = TokenCache::new(TokenCacheConfig::default());
        for n in 0..64 {
            insert(&gone, &hash(n), entry(Some(1_000), 0), 0);
        }
        let gone_id = gone.id;
        assert!(hot::held(gone_id) > hot::SLOTS / 2);
        drop(gone);
        let other = TokenCache::new(TokenCacheConfig::default());
        for n in 1_000..1_000 + hot::SLOTS as u64 {
            insert(&other, &hash(n), entry(Some(1_000), 0), 0);
        }
        assert_eq!(hot::held(gone_id), 0, "without sweeps about a third would stay");

        // Copies of tokens that died: swept too (the shared table drops them at its own sweep).
        let cache = TokenCache::new(TokenCacheConfig::default());
        for n in 0..64 {
            insert(&cache, &hash(n), entry(Some(100), 0), 0);
        }
        assert!(hot::held(cache.id) > hot::SLOTS / 2);
        for n in 1_000..1_000 + hot::SLOTS as u64 {
            insert(&cache, &hash(n), entry(Some(10_000), 200), 200);
        }
        assert_eq!(hot::held_where(cache.id, |v| v.deadline <= 200), 0);
        assert!(hot::held(cache.id) > 0, "the live ones stay");
    }

    #[test]
    fn a_thread_keeps_no_copy_of_a_heavy_token() {
        let cache = TokenCache::new(TokenCacheConfig::default());
        let claims = format!(r#"{{"sub":"alice","pad":"{}"}}"#, "x".repeat(hot::MAX_COPY_BYTES));
        let source =
            FactsSource { subject: Some("alice"), expires_at: Some(1_000), ..FactsSource::default() };
        let facts = TokenFacts::new(&claims, &source).expect("facts");
        assert!(facts.len() > hot::MAX_COPY_BYTES);
        insert(&cache, &hash(1), Verified::new(facts, 0, 7, 0, 30), 0);
        assert_eq!(hot::held(cache.id), 0);
        assert_eq!(cache.entry_count(), 1, "the shared cache has it");
        assert!(principal(&cache, &hash(1), 0, true).is_some());
        assert_eq!(hot::held(cache.id), 0, "and a hit makes no copy either");
    }
}
