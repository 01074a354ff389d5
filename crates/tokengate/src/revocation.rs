//! The local revocation list, checked on every route after the signature.
//!
//! Two kinds of entries:
//! - by (`iss`, `jti`): that one token is revoked until its `exp`;
//! - by (`iss`, `sub`) and a time T: every token of that subject issued before T is revoked
//!   ("log out everywhere", a token-version check). A token without `iat` cannot prove it was
//!   issued after T, so it counts as revoked.
//!
//! Reading is an `ArcSwap` load and at most two hash lookups — no lock, no allocation. Writes
//! (rare: an admin, a logout) copy the maps under a mutex, drop every entry that can no longer
//! match a valid token, and swap the copy in. Memory is bounded twice over: entries expire, and
//! the list refuses new entries past its capacity.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SharedClock, SystemClock};

/// Default capacity: 1 000 000 entries, about 100 MB at worst; far above any real list.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// Default longest lifetime of a token, used to expire a by-subject entry (and a by-`jti`
/// entry whose token expiry is not given): 24 h, longer than any common access-token lifetime.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// One token, by its `jti`.
    Token {
        /// The token's issuer.
        issuer: String,
        /// The token's `jti`.
        jti: String,
        /// When the entry may be forgotten (the token's `exp`), seconds since the epoch.
        expires_at: i64,
    },
    /// Every token of a subject issued before a time.
    Subject {
        /// The tokens' issuer.
        issuer: String,
        /// The subject (`sub`).
        subject: String,
        /// Tokens with `iat` before this time (seconds since the epoch) are revoked.
        issued_before: i64,
        /// When the entry may be forgotten, seconds since the epoch.
        expires_at: i64,
    },
}

/// Why an entry could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationError {
    /// The list is full.
    Full(usize),
    /// The entry is already expired or has an empty field.
    Invalid(&'static str),
}

impl fmt::Display for RevocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationError::Full(cap) => write!(f, "the revocation list is full ({cap} entries)"),
            RevocationError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for RevocationError {}

/// sub → (issued_before, expires_at)
type SubjectEntries = HashMap<Box<str>, (i64, i64)>;

#[derive(Debug, Default, Clone)]
struct Entries {
    /// issuer → jti → expires_at
    tokens: HashMap<Arc<str>, HashMap<Box<str>, i64>>,
    /// issuer → sub → (issued_before, expires_at)
    subjects: HashMap<Arc<str>, SubjectEntries>,
}

impl Entries {
    fn len(&self) -> usize {
        self.tokens.values().map(HashMap::len).sum::<usize>()
            + self.subjects.values().map(HashMap::len).sum::<usize>()
    }

    fn prune(&mut self, now: i64) {
        for map in self.tokens.values_mut() {
            map.retain(|_, expires_at| *expires_at > now);
        }
        self.tokens.retain(|_, m| !m.is_empty());
        for map in self.subjects.values_mut() {
            map.retain(|_, (_, expires_at)| *expires_at > now);
        }
        self.subjects.retain(|_, m| !m.is_empty());
    }
}

/// The revocation list. Cheap to clone; clones share the list.
#[derive(Clone)]
pub struct RevocationList {
    inner: Arc<Inner>,
}

struct Inner {
    entries: ArcSwap<Entries>,
    writer: Mutex<()>,
    capacity: usize,
    max_token_lifetime: i64,
    clock: SharedClock,
}

impl Default for RevocationList {
    fn default() -> Self {
        Self::new()
    }
}

impl RevocationList {
    /// An empty list on the system clock with the default capacity and maximum token lifetime.
    pub fn new() -> Self {
        Self::with_settings(Arc::new(SystemClock), DEFAULT_CAPACITY, DEFAULT_MAX_TOKEN_LIFETIME)
    }

    /// An empty list with its own clock, capacity and maximum token lifetime.
    pub fn with_settings(clock: Arc<dyn Clock>, capacity: usize, max_token_lifetime: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: ArcSwap::from_pointee(Entries::default()),
                writer: Mutex::new(()),
                capacity,
                max_token_lifetime: max_token_lifetime.as_secs() as i64,
                clock,
            }),
        }
    }

    /// Revokes one token of `issuer` by `jti`, until `expires_at` (its `exp`; when unknown,
    /// now plus the maximum token lifetime).
    pub fn revoke_token(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Option<i64>,
    ) -> Result<Revocation, RevocationError> {
        let expires_at =
            expires_at.unwrap_or_else(|| self.now().saturating_add(self.inner.max_token_lifetime));
        let entry = Revocation::Token { issuer: issuer.into(), jti: jti.into(), expires_at };
        self.add(entry.clone()).map(|()| entry)
    }

    /// Revokes every token of (`issuer`, `subject`) issued before `issued_before` (default now).
    pub fn revoke_subject(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: Option<i64>,
    ) -> Result<Revocation, RevocationError> {
        let now = self.now();
        let issued_before = issued_before.unwrap_or(now);
        // A token issued before T expires at the latest T + the maximum lifetime.
        let expires_at = issued_before.saturating_add(self.inner.max_token_lifetime);
        let entry =
            Revocation::Subject { issuer: issuer.into(), subject: subject.into(), issued_before, expires_at };
        self.add(entry.clone()).map(|()| entry)
    }

    /// Adds an entry (also used to replay entries learnt from elsewhere). Adding an entry that
    /// exists keeps the later expiry and the later cut-off time.
    pub fn add(&self, entry: Revocation) -> Result<(), RevocationError> {
        let now = self.now();
        let _writer = self.inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut entries = Entries::clone(&self.inner.entries.load());
        entries.prune(now);
        let full = entries.len() >= self.inner.capacity;
        match entry {
            Revocation::Token { issuer, jti, expires_at } => {
                if issuer.is_empty() || jti.is_empty() {
                    return Err(RevocationError::Invalid("issuer and jti must not be empty"));
                }
                if expires_at <= now {
                    return Ok(()); // The token has expired anyway: nothing to remember.
                }
                let map = entries.tokens.entry(Arc::from(issuer.as_str())).or_default();
                match map.get_mut(jti.as_str()) {
                    Some(existing) => *existing = (*existing).max(expires_at),
                    None if full => return Err(RevocationError::Full(self.inner.capacity)),
                    None => {
                        map.insert(jti.into_boxed_str(), expires_at);
                    }
                }
            }
            Revocation::Subject { issuer, subject, issued_before, expires_at } => {
                if issuer.is_empty() || subject.is_empty() {
                    return Err(RevocationError::Invalid("issuer and subject must not be empty"));
                }
                if expires_at <= now {
                    return Ok(());
                }
                let map = entries.subjects.entry(Arc::from(issuer.as_str())).or_default();
                match map.get_mut(subject.as_str()) {
                    Some((before, until)) => {
                        *before = (*before).max(issued_before);
                        *until = (*until).max(expires_at);
                    }
                    None if full => return Err(RevocationError::Full(self.inner.capacity)),
                    None => {
                        map.insert(subject.into_boxed_str(), (issued_before, expires_at));
                    }
                }
            }
        }
        self.inner.entries.store(Arc::new(entries));
        Ok(())
    }

    /// Whether a token of `issuer` with these claims is revoked at time `now`. A by-subject
    /// entry covers tokens issued at or before its time (the same second counts: a token
    /// minted in the second of a "log out everywhere" must not survive it) and tokens
    /// without `iat`.
    pub fn is_revoked(
        &self,
        issuer: &str,
        jti: Option<&str>,
        subject: Option<&str>,
        issued_at: Option<i64>,
        now: i64,
    ) -> bool {
        let entries = self.inner.entries.load();
        if let Some(jti) = jti
            && let Some(&until) = entries.tokens.get(issuer).and_then(|m| m.get(jti))
            && until > now
        {
            return true;
        }
        if let Some(subject) = subject
            && let Some(&(before, until)) = entries.subjects.get(issuer).and_then(|m| m.get(subject))
            && until > now
        {
            return issued_at.is_none_or(|iat| iat <= before);
        }
        false
    }

    /// Every entry still in force, tokens first.
    pub fn entries(&self) -> Vec<Revocation> {
        let now = self.now();
        let entries = self.inner.entries.load();
        let mut out = Vec::new();
        for (issuer, map) in &entries.tokens {
            for (jti, &expires_at) in map.iter().filter(|(_, e)| **e > now) {
                out.push(Revocation::Token { issuer: issuer.to_string(), jti: jti.to_string(), expires_at });
            }
        }
        for (issuer, map) in &entries.subjects {
            for (subject, &(issued_before, expires_at)) in map.iter().filter(|(_, (_, e))| *e > now) {
                out.push(Revocation::Subject {
                    issuer: issuer.to_string(),
                    subject: subject.to_string(),
                    issued_before,
                    expires_at,
                });
            }
        }
        out
    }

    /// The number of entries held (expired ones included until the next write prunes them).
    pub fn len(&self) -> usize {
        self.inner.entries.load().len()
    }

    /// Whether the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now(&self) -> i64 {
        self.inner.clock.now()
    }
}

impl fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationList")
            .field("entries", &self.len())
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn list(clock: &ManualClock, capacity: usize) -> RevocationList {
        RevocationList::with_settings(Arc::new(clock.clone()), capacity, Duration::from_secs(3600))
    }

    #[test]
    fn by_jti_until_expiry() {
        let clock = ManualClock::new(1_000);
        let l = list(&clock, 10);
        l.revoke_token("iss", "t1", Some(1_100)).unwrap();
        assert!(l.is_revoked("iss", Some("t1"), None, None, 1_050));
        assert!(!l.is_revoked("other", Some("t1"), None, None, 1_050));
        assert!(!l.is_revoked("iss", Some("t2"), None, None, 1_050));
        assert!(!l.is_revoked("iss", Some("t1"), None, None, 1_100));
        clock.set(1_200);
        l.revoke_token("iss", "t3", None).unwrap();
        assert_eq!(l.len(), 1, "the expired entry was pruned by the write");
    }

    #[test]
    fn by_subject_before_a_time() {
        let clock = ManualClock::new(1_000);
        let l = list(&clock, 10);
        l.revoke_subject("iss", "alice", None).unwrap();
        assert!(l.is_revoked("iss", None, Some("alice"), Some(999), 1_001));
        assert!(l.is_revoked("iss", None, Some("alice"), Some(1_000), 1_001), "same second counts");
        assert!(!l.is_revoked("iss", None, Some("alice"), Some(1_001), 1_001));
        assert!(l.is_revoked("iss", None, Some("alice"), None, 1_001), "no iat: cannot prove it is newer");
        assert!(!l.is_revoked("iss", None, Some("bob"), Some(1), 1_001));
        assert!(!l.is_revoked("iss", None, Some("alice"), Some(999), 1_000 + 3_600), "entry expired");
    }

    #[test]
    fn bounded() {
        let clock = ManualClock::new(1_000);
        let l = list(&clock, 2);
        l.revoke_token("iss", "a", Some(2_000)).unwrap();
        l.revoke_subject("iss", "s", None).unwrap();
        assert_eq!(l.revoke_token("iss", "b", Some(2_000)), Err(RevocationError::Full(2)));
        l.revoke_token("iss", "a", Some(3_000)).unwrap(); // updating an entry is fine
        assert!(matches!(l.revoke_token("", "x", None), Err(RevocationError::Invalid(_))));
        assert_eq!(l.entries().len(), 2);
    }
}
