//! The local revocation list, checked on every route after the signature.
//!
//! Three kinds of entries:
//! - by (`iss`, `jti`): that one token is revoked until its `exp`;
//! - by (`iss`, `sub`) and a time T: every token of that subject issued at or before T is
//!   revoked ("log out everywhere", a token-version check). A token without `iat` cannot prove
//!   it was issued after T, so it counts as revoked while the entry lives;
//! - by (`iss`, `sid`): every token carrying that session id (the `sid` claim of OpenID
//!   Connect) is revoked while the entry lives, whenever it was issued — a session that ended
//!   (back-channel logout, a CAEP `session-revoked` event) never comes back. Its time T (when
//!   the session was revoked) counts as a cut-off for the maximum-lifetime rule below.
//!
//! Every entry stays in force [`KEPT_PAST_EXPIRY`] (the largest leeway, 5 min) past the time
//! it ends at: a token is accepted until its `exp` plus its issuer's leeway, so an entry that
//! ended at `exp` would let the token in again for that long.
//!
//! # Sharing a list between processes
//!
//! The list itself is local memory. To share it (the gateway does, through Redis), give it an
//! [`observer`](RevocationList::set_observer), told of every entry [`add`](RevocationList::add)ed
//! here, and feed it what other processes added with [`apply`](RevocationList::apply) and
//! [`apply_all`](RevocationList::apply_all), which never tell the observer — so an entry learnt
//! from elsewhere is not sent back. Entries merge (the later expiry and cut-off win), so
//! applying one twice, or in any order, gives the same list.
//!
//! # How long a subject entry lives, and the maximum token lifetime
//!
//! A by-subject entry is forgotten at T + the list's *maximum token lifetime* L (default
//! 24 h, set with [`RevocationList::with_settings`]): a token issued by T with a lifetime of at
//! most L has expired by then. L is a promise about the issuer's tokens, so the list enforces
//! it rather than trusting it: a token whose lifetime (`exp` − `iat`) exceeds L and that was
//! issued at or before the latest cut-off ever set for its issuer is refused as revoked — it
//! could belong to a subject whose entry has already been forgotten. So a token with `exp`
//! beyond T + L is still refused after its subject's entry is gone. That costs one number per
//! issuer (never forgotten) and, on the read path, one comparison (one lookup for over-long
//! tokens only). Its price is for over-long tokens of *other* subjects too: after a "log out
//! everywhere" they are refused until their clients fetch new ones, which is the visible,
//! fail-closed sign that L is set below the issuer's real token lifetime — raise L.
//!
//! What stays uncovered: a token **without `iat`** whose `exp` lies beyond T + L is refused
//! while the entry lives and accepted after. Nothing bounds when such a token was issued;
//! require `iat` of the issuer's tokens (RFC 9068 makes it mandatory), or keep the entry longer
//! by [`add`](RevocationList::add)ing it with a later `expires_at`.
//!
//! # Cost
//!
//! Reading is an `ArcSwap` load and at most four hash lookups — no lock, no allocation.
//! Writes (rare: an admin, a logout) copy the maps under a mutex, drop every entry that can no
//! longer match a valid token, and swap the copy in: O(entries) time and, while the write
//! runs, a second copy of the list's memory (an estimate: well under a millisecond for ten
//! thousand entries; at the default capacity of a million, on the order of 100 ms and 100 MB
//! per write). Fine for an admin API; replaying a large list entry by entry is quadratic, so
//! [`apply_all`](RevocationList::apply_all) merges a batch with one copy. Memory is bounded
//! twice over: entries expire, and the list refuses new entries past its capacity.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SharedClock, SystemClock};

/// Default capacity: 1 000 000 entries, about 100 MB at worst; far above any real list.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// Default longest lifetime of a token, used to expire a by-subject entry (and a by-`jti`
/// entry whose token expiry is not given): 24 h, longer than any common access-token lifetime.
/// Tokens living longer are refused once their issuer has a by-subject entry (see the module
/// doc).
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Most issuer names the list keeps a by-subject cut-off for: 10 000, far more issuers than
/// one gateway trusts; it bounds the one number per issuer that is never forgotten.
pub const MAX_ISSUERS_WITH_SUBJECT_ENTRIES: usize = 10_000;

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
    /// Every token carrying a session id (`sid`).
    Session {
        /// The tokens' issuer.
        issuer: String,
        /// The session id (`sid`).
        sid: String,
        /// When the session was revoked (seconds since the epoch): a cut-off for the
        /// maximum-lifetime rule; tokens with this `sid` are revoked whenever issued.
        revoked_at: i64,
        /// When the entry may be forgotten, seconds since the epoch.
        expires_at: i64,
    },
}

impl Revocation {
    /// The issuer the entry is about.
    pub fn issuer(&self) -> &str {
        match self {
            Revocation::Token { issuer, .. }
            | Revocation::Subject { issuer, .. }
            | Revocation::Session { issuer, .. } => issuer,
        }
    }

    /// When the entry may be forgotten, seconds since the epoch: the longest time a token it
    /// matches can still be valid.
    pub fn expires_at(&self) -> i64 {
        match self {
            Revocation::Token { expires_at, .. }
            | Revocation::Subject { expires_at, .. }
            | Revocation::Session { expires_at, .. } => *expires_at,
        }
    }
}

/// Told of every entry [`RevocationList::add`] put in force (not of entries
/// [`apply`](RevocationList::apply)'d). It runs while the list's writer lock is held, so it
/// must be quick and must not block: queue the entry and return.
pub type RevocationObserver = Arc<dyn Fn(&Revocation) + Send + Sync>;

/// What [`RevocationList::apply_all`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplySummary {
    /// Entries merged into the list (new or strengthening an existing one).
    pub applied: usize,
    /// Entries already expired: nothing to remember.
    pub expired: usize,
    /// Entries refused: an empty field, or the list (or its issuer table) was full.
    pub refused: usize,
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

/// sub → (issued_before, expires_at); sid → (revoked_at, expires_at)
type TimedEntries = HashMap<Box<str>, (i64, i64)>;

#[derive(Debug, Default, Clone)]
struct Entries {
    /// issuer → jti → expires_at
    tokens: HashMap<Arc<str>, HashMap<Box<str>, i64>>,
    /// issuer → sub → (issued_before, expires_at)
    subjects: HashMap<Arc<str>, TimedEntries>,
    /// issuer → sid → (revoked_at, expires_at)
    sessions: HashMap<Arc<str>, TimedEntries>,
    /// issuer → the latest by-subject or by-session cut-off ever set. Never pruned: it is what
    /// refuses a token that outlives the maximum lifetime after its entry was forgotten.
    latest_cutoff: HashMap<Arc<str>, i64>,
}

impl Entries {
    fn len(&self) -> usize {
        self.tokens.values().map(HashMap::len).sum::<usize>()
            + self.subjects.values().map(HashMap::len).sum::<usize>()
            + self.sessions.values().map(HashMap::len).sum::<usize>()
    }

    fn prune(&mut self, now: i64) {
        for map in self.tokens.values_mut() {
            map.retain(|_, expires_at| alive(*expires_at, now));
        }
        self.tokens.retain(|_, m| !m.is_empty());
        for timed in [&mut self.subjects, &mut self.sessions] {
            for map in timed.values_mut() {
                map.retain(|_, (_, expires_at)| alive(*expires_at, now));
            }
            timed.retain(|_, m| !m.is_empty());
        }
    }

    /// Merges one entry. `Ok(true)`: in force now; `Ok(false)`: past its expiry and
    /// [`KEPT_PAST_EXPIRY`], ignored.
    /// A new entry past `capacity` is refused; strengthening an existing one never is.
    fn merge(&mut self, entry: Revocation, now: i64, capacity: usize) -> Result<bool, RevocationError> {
        match entry {
            Revocation::Token { issuer, jti, expires_at } => {
                if issuer.is_empty() || jti.is_empty() {
                    return Err(RevocationError::Invalid("issuer and jti must not be empty"));
                }
                if !alive(expires_at, now) {
                    return Ok(false); // The token has expired anyway: nothing to remember.
                }
                let exists = self.tokens.get(issuer.as_str()).is_some_and(|m| m.contains_key(jti.as_str()));
                if !exists && self.len() >= capacity {
                    return Err(RevocationError::Full(capacity));
                }
                let map = self.tokens.entry(Arc::from(issuer.as_str())).or_default();
                let until = map.entry(jti.into_boxed_str()).or_insert(expires_at);
                *until = (*until).max(expires_at);
            }
            Revocation::Subject { issuer, subject, issued_before, expires_at } => {
                if issuer.is_empty() || subject.is_empty() {
                    return Err(RevocationError::Invalid("issuer and subject must not be empty"));
                }
                self.merge_timed(Kind::Subject, issuer, subject, issued_before, expires_at, now, capacity)?;
                return Ok(alive(expires_at, now));
            }
            Revocation::Session { issuer, sid, revoked_at, expires_at } => {
                if issuer.is_empty() || sid.is_empty() {
                    return Err(RevocationError::Invalid("issuer and sid must not be empty"));
                }
                self.merge_timed(Kind::Session, issuer, sid, revoked_at, expires_at, now, capacity)?;
                return Ok(alive(expires_at, now));
            }
        }
        Ok(true)
    }

    /// A by-subject or by-session entry: (key, cut-off, expiry), and the issuer's cut-off.
    #[allow(clippy::too_many_arguments)]
    fn merge_timed(
        &mut self,
        kind: Kind,
        issuer: String,
        key: String,
        cutoff: i64,
        expires_at: i64,
        now: i64,
        capacity: usize,
    ) -> Result<(), RevocationError> {
        if !alive(expires_at, now) {
            return Ok(());
        }
        let known_issuer = self.latest_cutoff.contains_key(issuer.as_str());
        if !known_issuer && self.latest_cutoff.len() >= MAX_ISSUERS_WITH_SUBJECT_ENTRIES {
            return Err(RevocationError::Full(MAX_ISSUERS_WITH_SUBJECT_ENTRIES));
        }
        let table = match kind {
            Kind::Subject => &self.subjects,
            Kind::Session => &self.sessions,
        };
        let exists = table.get(issuer.as_str()).is_some_and(|m| m.contains_key(key.as_str()));
        if !exists && self.len() >= capacity {
            return Err(RevocationError::Full(capacity));
        }
        let issuer: Arc<str> = Arc::from(issuer.as_str());
        let latest = self.latest_cutoff.entry(issuer.clone()).or_insert(cutoff);
        *latest = (*latest).max(cutoff);
        let table = match kind {
            Kind::Subject => &mut self.subjects,
            Kind::Session => &mut self.sessions,
        };
        let (before, until) =
            table.entry(issuer).or_default().entry(key.into_boxed_str()).or_insert((cutoff, expires_at));
        *before = (*before).max(cutoff);
        *until = (*until).max(expires_at);
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Subject,
    Session,
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
    observer: OnceLock<RevocationObserver>,
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

    /// An empty list with its own clock, capacity and maximum token lifetime (how long a
    /// by-subject entry lives after its cut-off; tokens living longer are refused once their
    /// issuer has such an entry — see the module doc). Pass it to the layer with
    /// [`TokenGateBuilder::revocation_list`](crate::TokenGateBuilder::revocation_list).
    pub fn with_settings(clock: Arc<dyn Clock>, capacity: usize, max_token_lifetime: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: ArcSwap::from_pointee(Entries::default()),
                writer: Mutex::new(()),
                capacity,
                max_token_lifetime: max_token_lifetime.as_secs() as i64,
                clock,
                observer: OnceLock::new(),
            }),
        }
    }

    /// Revokes one token of `issuer` by `jti`, until `expires_at` (its `exp`; when unknown,
    /// now plus the maximum token lifetime), and [`KEPT_PAST_EXPIRY`] beyond, for the leeway.
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

    /// Revokes every token of (`issuer`, `subject`) issued at or before `issued_before`
    /// (default now). The entry lives until `issued_before` + the maximum token lifetime.
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

    /// Revokes every token of `issuer` carrying the session id `sid`, from now until now plus
    /// the maximum token lifetime.
    pub fn revoke_session(&self, issuer: &str, sid: &str) -> Result<Revocation, RevocationError> {
        let now = self.now();
        let expires_at = now.saturating_add(self.inner.max_token_lifetime);
        let entry =
            Revocation::Session { issuer: issuer.into(), sid: sid.into(), revoked_at: now, expires_at };
        self.add(entry.clone()).map(|()| entry)
    }

    /// Adds an entry made here, and tells the [observer](Self::set_observer). Adding an entry
    /// that exists keeps the later expiry and the later cut-off time. An entry past its expiry
    /// and [`KEPT_PAST_EXPIRY`] is accepted and forgotten at once (the observer is not told);
    /// one that expired less long ago is kept, since its token may still be in its leeway.
    pub fn add(&self, entry: Revocation) -> Result<(), RevocationError> {
        self.write(entry, true).map(|_| ())
    }

    /// Merges an entry learnt from elsewhere (another replica, a shared store) *without*
    /// telling the observer, so it is not sent back. `Ok(false)`: past its expiry and
    /// [`KEPT_PAST_EXPIRY`], ignored.
    pub fn apply(&self, entry: Revocation) -> Result<bool, RevocationError> {
        self.write(entry, false)
    }

    /// Merges a batch learnt from elsewhere with one copy of the list (replaying entry by entry
    /// is quadratic). Never tells the observer; refused entries are counted, not fatal.
    pub fn apply_all(&self, batch: impl IntoIterator<Item = Revocation>) -> ApplySummary {
        let now = self.now();
        let _writer = self.inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut entries = Entries::clone(&self.inner.entries.load());
        entries.prune(now);
        let mut summary = ApplySummary::default();
        for entry in batch {
            match entries.merge(entry, now, self.inner.capacity) {
                Ok(true) => summary.applied += 1,
                Ok(false) => summary.expired += 1,
                Err(_) => summary.refused += 1,
            }
        }
        if summary.applied > 0 {
            self.inner.entries.store(Arc::new(entries));
        }
        summary
    }

    /// Sets the observer told of every entry [`add`](Self::add)ed from now on. One per list:
    /// a second call returns the observer back as the error.
    pub fn set_observer(&self, observer: RevocationObserver) -> Result<(), RevocationObserver> {
        self.inner.observer.set(observer)
    }

    fn write(&self, entry: Revocation, notify: bool) -> Result<bool, RevocationError> {
        let now = self.now();
        let _writer = self.inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut entries = Entries::clone(&self.inner.entries.load());
        entries.prune(now);
        let observed = notify.then(|| self.inner.observer.get()).flatten().map(|o| (o, entry.clone()));
        let in_force = entries.merge(entry, now, self.inner.capacity)?;
        if in_force {
            self.inner.entries.store(Arc::new(entries));
            // Still under the writer lock: the observer sees entries in the order they took
            // effect.
            if let Some((observer, entry)) = observed {
                observer(&entry);
            }
        }
        Ok(in_force)
    }

    /// Whether a token of `issuer` with these claims is revoked at time `now`: the check the
    /// layer runs. [`is_revoked`](Self::is_revoked), the token's session (`sid`) on the list,
    /// plus the maximum-lifetime rule of the module doc: a token living longer than the
    /// maximum token lifetime, issued at or before the latest cut-off of its issuer, is
    /// refused.
    #[allow(clippy::too_many_arguments)]
    pub fn is_token_revoked(
        &self,
        issuer: &str,
        jti: Option<&str>,
        subject: Option<&str>,
        session: Option<&str>,
        issued_at: Option<i64>,
        expires_at: Option<i64>,
        now: i64,
    ) -> bool {
        let entries = self.inner.entries.load();
        listed(&entries, issuer, jti, subject, issued_at, now)
            || session_listed(&entries, issuer, session, now)
            || self.outlives_a_forgotten_entry(&entries, issuer, issued_at, expires_at)
    }

    /// A token whose lifetime exceeds the maximum, issued at or before its issuer's latest
    /// cut-off, might be covered by an entry already forgotten.
    fn outlives_a_forgotten_entry(
        &self,
        entries: &Entries,
        issuer: &str,
        issued_at: Option<i64>,
        expires_at: Option<i64>,
    ) -> bool {
        let (Some(iat), Some(exp)) = (issued_at, expires_at) else {
            return false;
        };
        exp.saturating_sub(iat) > self.inner.max_token_lifetime
            && entries.latest_cutoff.get(issuer).is_some_and(|&cutoff| iat <= cutoff)
    }

    /// Whether a token of `issuer` with these claims is on the list at time `now`. A by-subject
    /// entry covers tokens issued at or before its time (the same second counts: a token
    /// minted in the second of a "log out everywhere" must not survive it) and tokens
    /// without `iat`. This does not look at sessions nor apply the maximum-lifetime rule; the
    /// layer uses [`is_token_revoked`](Self::is_token_revoked).
    pub fn is_revoked(
        &self,
        issuer: &str,
        jti: Option<&str>,
        subject: Option<&str>,
        issued_at: Option<i64>,
        now: i64,
    ) -> bool {
        listed(&self.inner.entries.load(), issuer, jti, subject, issued_at, now)
    }

    /// Whether the session `sid` of `issuer` is on the list at time `now`.
    pub fn is_session_revoked(&self, issuer: &str, sid: &str, now: i64) -> bool {
        session_listed(&self.inner.entries.load(), issuer, Some(sid), now)
    }

    /// Every entry still in force, tokens first.
    pub fn entries(&self) -> Vec<Revocation> {
        let now = self.now();
        let entries = self.inner.entries.load();
        let mut out = Vec::new();
        for (issuer, map) in &entries.tokens {
            for (jti, &expires_at) in map.iter().filter(|(_, e)| alive(**e, now)) {
                out.push(Revocation::Token { issuer: issuer.to_string(), jti: jti.to_string(), expires_at });
            }
        }
        for (issuer, map) in &entries.subjects {
            for (subject, &(issued_before, expires_at)) in map.iter().filter(|(_, (_, e))| alive(*e, now)) {
                out.push(Revocation::Subject {
                    issuer: issuer.to_string(),
                    subject: subject.to_string(),
                    issued_before,
                    expires_at,
                });
            }
        }
        for (issuer, map) in &entries.sessions {
            for (sid, &(revoked_at, expires_at)) in map.iter().filter(|(_, (_, e))| alive(*e, now)) {
                out.push(Revocation::Session {
                    issuer: issuer.to_string(),
                    sid: sid.to_string(),
                    revoked_at,
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

/// How long an entry stays in force past its `expires_at`. A token is accepted until its `exp`
/// plus its issuer's leeway, which is at most [`MAX_LEEWAY`](crate::jwt::MAX_LEEWAY): an entry
/// that ended at `exp` would let its token in again for that long. A store that shares the list
/// keeps entries as long (the gateway's Redis store trims by `expires_at` + this).
pub const KEPT_PAST_EXPIRY: Duration = crate::jwt::MAX_LEEWAY;

/// Whether an entry with `expires_at` is still in force at `now` (see [`KEPT_PAST_EXPIRY`]).
fn alive(expires_at: i64, now: i64) -> bool {
    expires_at.saturating_add(KEPT_PAST_EXPIRY.as_secs() as i64) > now
}

/// By `jti`, or by subject for a token issued at or before the cut-off (or without `iat`).
fn listed(
    entries: &Entries,
    issuer: &str,
    jti: Option<&str>,
    subject: Option<&str>,
    issued_at: Option<i64>,
    now: i64,
) -> bool {
    if let Some(jti) = jti
        && let Some(&until) = entries.tokens.get(issuer).and_then(|m| m.get(jti))
        && alive(until, now)
    {
        return true;
    }
    if let Some(subject) = subject
        && let Some(&(before, until)) = entries.subjects.get(issuer).and_then(|m| m.get(subject))
        && alive(until, now)
    {
        return issued_at.is_none_or(|iat| iat <= before);
    }
    false
}

/// By session: whenever the token was issued.
fn session_listed(entries: &Entries, issuer: &str, session: Option<&str>, now: i64) -> bool {
    // The common case — no session entries at all — costs one emptiness check.
    let Some(sid) = session.filter(|_| !entries.sessions.is_empty()) else {
        return false;
    };
    entries.sessions.get(issuer).and_then(|m| m.get(sid)).is_some_and(|&(_, until)| alive(until, now))
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

    /// [`KEPT_PAST_EXPIRY`] in seconds.
    const KEPT: i64 = KEPT_PAST_EXPIRY.as_secs() as i64;

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
        assert!(l.is_revoked("iss", Some("t1"), None, None, 1_100), "through the leeway after exp");
        assert!(l.is_revoked("iss", Some("t1"), None, None, 1_100 + KEPT - 1));
        assert!(!l.is_revoked("iss", Some("t1"), None, None, 1_100 + KEPT));
        clock.set(1_100 + KEPT);
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
        assert!(l.is_revoked("iss", None, Some("alice"), Some(999), 1_000 + 3_600), "the leeway after T + L");
        assert!(!l.is_revoked("iss", None, Some("alice"), Some(999), 1_000 + 3_600 + KEPT), "entry expired");
    }

    #[test]
    fn a_token_outliving_the_maximum_lifetime_is_refused_after_its_entry_is_forgotten() {
        let clock = ManualClock::new(1_000);
        let l = list(&clock, 10); // maximum token lifetime 3 600 s
        // Issued at 900 with a lifetime of three hours: longer than the list's maximum.
        let (iat, exp) = (Some(900), Some(900 + 3 * 3_600));
        l.revoke_subject("iss", "alice", None).unwrap();
        assert!(l.is_token_revoked("iss", None, Some("alice"), None, iat, exp, 1_001));
        clock.set(1_000 + 3_600 + KEPT + 1);
        l.revoke_token("iss", "unrelated", Some(99_999)).unwrap(); // a write prunes alice's entry
        assert_eq!(l.entries().len(), 1, "alice's entry is forgotten");
        assert!(
            !l.is_revoked("iss", None, Some("alice"), iat, clock.now()),
            "the entry alone would let it in"
        );
        assert!(
            l.is_token_revoked("iss", None, Some("alice"), None, iat, exp, clock.now()),
            "exp beyond T + L: refused"
        );
        // Tokens within the maximum lifetime, later tokens and other issuers are unaffected.
        assert!(!l.is_token_revoked("iss", None, Some("alice"), None, Some(900), Some(900 + 3_600), 1_100));
        assert!(!l.is_token_revoked(
            "iss",
            None,
            Some("alice"),
            None,
            Some(1_001),
            Some(1_001 + 3 * 3_600),
            5_000
        ));
        assert!(!l.is_token_revoked("other", None, Some("alice"), None, iat, exp, 5_000));
        // Without iat the lifetime is unknown: covered only while the entry lives.
        assert!(!l.is_token_revoked("iss", None, Some("alice"), None, None, exp, clock.now()));
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

    #[test]
    fn by_session_whenever_issued() {
        let clock = ManualClock::new(1_000);
        let l = list(&clock, 10);
        let entry = l.revoke_session("iss", "sid-1").unwrap();
        assert_eq!(
            entry,
            Revocation::Session {
                issuer: "iss".into(),
                sid: "sid-1".into(),
                revoked_at: 1_000,
                expires_at: 4_600
            }
        );
        let check =
            |sid, iat, now| l.is_token_revoked("iss", Some("j"), Some("bob"), sid, iat, Some(now + 60), now);
        assert!(check(Some("sid-1"), Some(999), 1_001));
        assert!(
            check(Some("sid-1"), Some(1_500), 1_501),
            "a token of an ended session issued later goes too"
        );
        assert!(check(Some("sid-1"), None, 1_001));
        assert!(!check(Some("sid-2"), Some(999), 1_001));
        assert!(!check(None, Some(999), 1_001));
        assert!(!l.is_token_revoked("other", None, None, Some("sid-1"), Some(999), None, 1_001));
        assert!(l.is_session_revoked("iss", "sid-1", 1_001));
        assert!(l.is_session_revoked("iss", "sid-1", 4_600), "the leeway after its end");
        assert!(!l.is_session_revoked("iss", "sid-1", 4_600 + KEPT), "entry expired");
        assert!(
            !l.is_revoked("iss", Some("j"), Some("bob"), Some(999), 1_001),
            "is_revoked ignores sessions"
        );
        // The session's revocation time is a cut-off for over-long tokens.
        assert!(l.is_token_revoked(
            "iss",
            None,
            Some("carol"),
            None,
            Some(900),
            Some(900 + 3 * 3_600),
            1_001
        ));
        assert!(matches!(l.revoke_session("iss", ""), Err(RevocationError::Invalid(_))));
        assert!(l.entries().contains(&entry));
    }

    #[test]
    fn the_observer_hears_adds_but_not_applies() {
        let clock = ManualClock::new(1_000);
        let l = list(&clock, 10);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        assert!(l.set_observer(Arc::new(move |e: &Revocation| sink.lock().unwrap().push(e.clone()))).is_ok());
        assert!(l.set_observer(Arc::new(|_: &Revocation| {})).is_err(), "one observer per list");
        let added = l.revoke_token("iss", "mine", Some(2_000)).unwrap();
        l.revoke_token("iss", "expired", Some(999 - KEPT)).unwrap();
        let learnt = Revocation::Token { issuer: "iss".into(), jti: "theirs".into(), expires_at: 2_000 };
        assert_eq!(l.apply(learnt.clone()), Ok(true));
        assert_eq!(
            l.apply(Revocation::Token { issuer: "iss".into(), jti: "old".into(), expires_at: 1_000 - KEPT }),
            Ok(false)
        );
        assert_eq!(*heard.lock().unwrap(), vec![added], "only the live entry added here");
        assert!(l.is_revoked("iss", Some("theirs"), None, None, 1_001));
    }

    #[test]
    fn apply_all_merges_a_batch_in_any_order() {
        let clock = ManualClock::new(1_000);
        let l = list(&clock, 3);
        let subject = |before, until| Revocation::Subject {
            issuer: "iss".into(),
            subject: "alice".into(),
            issued_before: before,
            expires_at: until,
        };
        let summary = l.apply_all([
            subject(1_100, 4_000),
            subject(1_050, 5_000),
            Revocation::Token { issuer: "iss".into(), jti: "t".into(), expires_at: 10 },
            Revocation::Token { issuer: "".into(), jti: "t".into(), expires_at: 2_000 },
            Revocation::Session {
                issuer: "iss".into(),
                sid: "s".into(),
                revoked_at: 1_000,
                expires_at: 2_000,
            },
            Revocation::Token { issuer: "iss".into(), jti: "a".into(), expires_at: 2_000 },
            Revocation::Token { issuer: "iss".into(), jti: "b".into(), expires_at: 2_000 },
        ]);
        assert_eq!(
            summary,
            ApplySummary { applied: 4, expired: 1, refused: 2 },
            "one empty, one past capacity"
        );
        assert_eq!(l.len(), 3);
        // Both cut-off and expiry are the maxima, whatever the order.
        assert!(l.entries().contains(&subject(1_100, 5_000)), "{:?}", l.entries());
        assert_eq!(l.apply_all([subject(900, 1_500)]).applied, 1);
        assert!(l.entries().contains(&subject(1_100, 5_000)), "a weaker copy changes nothing");
    }

    #[test]
    fn entries_round_trip_through_json() {
        for entry in [
            Revocation::Token { issuer: "i".into(), jti: "j".into(), expires_at: 5 },
            Revocation::Subject { issuer: "i".into(), subject: "s".into(), issued_before: 1, expires_at: 5 },
            Revocation::Session { issuer: "i".into(), sid: "x".into(), revoked_at: 1, expires_at: 5 },
        ] {
            let text = serde_json::to_string(&entry).unwrap();
            assert_eq!(serde_json::from_str::<Revocation>(&text).unwrap(), entry, "{text}");
        }
        assert!(serde_json::from_str::<Revocation>(r#"{"kind":"everything"}"#).is_err());
    }
}
