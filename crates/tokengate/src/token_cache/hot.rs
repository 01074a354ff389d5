//! Each thread's last few hits of the verified-token cache, kept with the [`Principal`] built
//! for them, so a token a worker has just seen is found without the shard's lock.
//!
//! A hit in the shared cache writes to memory every worker shares: the shard lock's word and
//! the reference counts of the token's facts and of its issuer's name. With two workers on the
//! same token those cache lines move between cores on every request. A hit here touches only
//! this thread's memory and the principal it built itself (unless a request that holds it ends
//! on another worker), and it skips building a principal.
//!
//! It is no shortcut around the checks: an entry is a copy of a shared entry (or of one just
//! inserted), with the same deadline, issuer and key-set generation, and the caller's check
//! (key set unchanged and usable, `exp`, `nbf`) runs on every hit, as for the shared cache.
//! The revocation list and the route's scopes are checked after either, by the pipeline.
//! Entries are direct-mapped by hash bits and tagged with their cache's identity, so two
//! layers on one thread never see each other's tokens.
//!
//! Bounded apart from the shared cache's limits: at most [`SLOTS`] entries a thread, each of a
//! token whose facts weigh at most [`MAX_COPY_BYTES`], plus what its principal parses when a
//! handler asks (`claims()`, `scopes()`), since the principal is shared by the requests that
//! hit it. Dead entries, and entries of a cache that was dropped, go at the thread's next
//! sweep (every [`SLOTS`]th copy it makes) or when looked up; like the shared cache, which drops
//! dead entries at its next insert, a thread that stops deciding requests keeps its copies
//! until it decides again.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use super::{Key, Verified};
use crate::claims::Principal;

/// Entries a thread keeps: enough for the tokens one worker's connections are sending right
/// now; a worker that sees thousands of tokens goes to the shared cache as before.
pub(super) const SLOTS: usize = 64;

/// Heaviest token facts (claims text and header) a thread keeps a copy of: 4 KiB, the claims of
/// nearly every access token; heavier tokens are served by the shared cache alone.
pub(super) const MAX_COPY_BYTES: usize = 4096;

/// The identities of the caches that exist: a sweep drops entries of any other. Written when a
/// cache is made or dropped, read by a sweep — never on a request's own path, so no worker
/// writes it per request (a `Weak` per entry would have: its count is one shared cache line).
static LIVE_CACHES: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

/// Records that cache `id` exists, until [`dropped`].
pub(super) fn made(id: u64) {
    LIVE_CACHES.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(HashSet::new).insert(id);
}

/// Records that cache `id` is gone: every thread's entries of it go at its next sweep.
pub(super) fn dropped(id: u64) {
    if let Some(live) = LIVE_CACHES.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        live.remove(&id);
    }
}

/// One remembered hit.
struct Entry {
    /// Which [`TokenCache`](super::TokenCache) it belongs to.
    cache: u64,
    /// The token's hash bits, as the shared table keys them: all 128 must match.
    index: u64,
    check: u64,
    verified: Verified,
    principal: Principal,
}

impl Entry {
    fn is_for(&self, cache: u64, key: &Key) -> bool {
        self.cache == cache && self.index == key.index && self.check == key.check
    }
}

/// A thread's entries, and how many copies it has made (to time its sweeps).
struct HotSet {
    slots: Vec<Option<Entry>>,
    copies: u32,
}

thread_local! {
    static HOT: RefCell<HotSet> = const { RefCell::new(HotSet { slots: Vec::new(), copies: 0 }) };
}

fn slot(cache: u64, key: &Key) -> usize {
    // Another part of the hash than the table's or the shard's, mixed with the cache, so that
    // two caches on one thread do not contend for the same slots for the same token.
    (key.shard.rotate_left(17) ^ cache.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as usize % SLOTS
}

/// The principal remembered for `key` in `cache`, if its entry is alive at `now` and passes
/// `valid`; an entry that does not is forgotten.
pub(super) fn get(
    cache: u64,
    key: &Key,
    now: i64,
    valid: impl FnOnce(&Verified) -> bool,
) -> Option<Principal> {
    let found = HOT.try_with(|hot| {
        let mut hot = hot.try_borrow_mut().ok()?;
        let place = hot.slots.get_mut(slot(cache, key))?;
        let entry = place.as_ref().filter(|e| e.is_for(cache, key))?;
        Some(if now < entry.verified.deadline && valid(&entry.verified) {
            Ok(entry.principal.clone())
        } else {
            Err(place.take())
        })
    });
    // A dead entry is dropped here, once the thread's set is no longer borrowed.
    match found {
        Ok(Some(Ok(principal))) => Some(principal),
        _ => None,
    }
}

/// Remembers `principal`, built from `verified`, as this thread's entry for `key` in `cache`,
/// unless the token's facts weigh more than [`MAX_COPY_BYTES`]. Every [`SLOTS`]th copy, sweeps
/// the thread's set: entries of dropped caches go, and `cache`'s entries dead at `now`.
pub(super) fn put(cache: u64, key: &Key, verified: Verified, principal: Principal, now: i64) {
    if verified.facts.len() > MAX_COPY_BYTES {
        return;
    }
    let entry = Entry { cache, index: key.index, check: key.check, verified, principal };
    // What leaves the set is dropped here, once the thread's set is no longer borrowed.
    let _gone = HOT.try_with(|hot| {
        let mut hot = hot.try_borrow_mut().ok()?;
        if hot.slots.is_empty() {
            hot.slots.resize_with(SLOTS, || None);
        }
        let replaced = hot.slots[slot(cache, key)].replace(entry);
        hot.copies = hot.copies.wrapping_add(1);
        let swept =
            if hot.copies % SLOTS as u32 == 0 { sweep(&mut hot.slots, cache, now) } else { Vec::new() };
        Some((replaced, swept))
    });
}

/// Takes out the entries of caches that are gone, and those of cache `id` dead at `now` (the
/// other caches' entries are judged on their own clocks, when looked up).
fn sweep(slots: &mut [Option<Entry>], id: u64, now: i64) -> Vec<Entry> {
    let live = LIVE_CACHES.lock().unwrap_or_else(PoisonError::into_inner);
    let gone = |cache: u64| live.as_ref().is_none_or(|live| !live.contains(&cache));
    let dead = |e: &Entry| gone(e.cache) || (e.cache == id && now >= e.verified.deadline);
    slots.iter_mut().filter(|place| place.as_ref().is_some_and(dead)).filter_map(Option::take).collect()
}

/// Forgets this thread's entry for `key` in `cache`, if it has one.
pub(super) fn forget(cache: u64, key: &Key) {
    let _dead = HOT
        .try_with(|hot| {
            let mut hot = hot.try_borrow_mut().ok()?;
            let place = hot.slots.get_mut(slot(cache, key))?;
            if place.as_ref().is_some_and(|e| e.is_for(cache, key)) { place.take() } else { None }
        })
        .ok()
        .flatten();
}

/// Entries this thread holds for `cache` (for tests).
#[cfg(test)]
pub(super) fn held(cache: u64) -> usize {
    held_where(cache, |_| true)
}

/// Entries this thread holds for `cache` that `which` picks (for tests).
#[cfg(test)]
pub(super) fn held_where(cache: u64, which: impl Fn(&Verified) -> bool) -> usize {
    HOT.with(|hot| {
        hot.borrow().slots.iter().flatten().filter(|e| e.cache == cache && which(&e.verified)).count()
    })
}
