//! Each thread's last few hits of the verified-token cache, kept with the [`Principal`] built
//! for them, so a token a worker has just seen is found without the shard's lock.
//!
//! A hit in the shared cache writes to memory every worker shares: the shard lock's word and
//! the reference counts of the token's facts and of its issuer's name. With two workers on the
//! same token those cache lines move between cores on every request. A hit here touches only
//! this thread's memory and the principal it built itself, and it skips building a principal.
//!
//! It is no shortcut around the checks: an entry is a copy of a shared entry (or of one just
//! inserted), with the same deadline, issuer and key-set generation, and the caller's check
//! (key set unchanged and usable, `exp`, `nbf`) runs on every hit, as for the shared cache.
//! The revocation list and the route's scopes are checked after either, by the pipeline.
//! Entries are direct-mapped by hash bits and tagged with their cache's identity, so two
//! layers on one thread never see each other's tokens. Bounded: [`SLOTS`] entries a thread,
//! each holding one token's facts (at most the layer's token size cap of claims).

use std::cell::RefCell;

use super::{Key, Verified};
use crate::claims::Principal;

/// Entries a thread keeps: enough for the tokens one worker's connections are sending right
/// now; a worker that sees thousands of tokens goes to the shared cache as before.
pub(super) const SLOTS: usize = 64;

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

thread_local! {
    static HOT: RefCell<Vec<Option<Entry>>> = const { RefCell::new(Vec::new()) };
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
        let place = hot.get_mut(slot(cache, key))?;
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

/// Remembers `principal`, built from `verified`, as this thread's entry for `key` in `cache`.
pub(super) fn put(cache: u64, key: &Key, verified: Verified, principal: Principal) {
    let entry = Entry { cache, index: key.index, check: key.check, verified, principal };
    let _replaced = HOT
        .try_with(|hot| {
            let mut hot = hot.try_borrow_mut().ok()?;
            if hot.is_empty() {
                hot.resize_with(SLOTS, || None);
            }
            hot[slot(cache, key)].replace(entry)
        })
        .ok()
        .flatten();
}

/// Forgets this thread's entry for `key` in `cache`, if it has one.
pub(super) fn forget(cache: u64, key: &Key) {
    let _dead = HOT
        .try_with(|hot| {
            let mut hot = hot.try_borrow_mut().ok()?;
            let place = hot.get_mut(slot(cache, key))?;
            if place.as_ref().is_some_and(|e| e.is_for(cache, key)) { place.take() } else { None }
        })
        .ok()
        .flatten();
}

/// Entries this thread holds for `cache` (for tests).
#[cfg(test)]
pub(super) fn held(cache: u64) -> usize {
    HOT.with(|hot| hot.borrow().iter().flatten().filter(|e| e.cache == cache).count())
}
