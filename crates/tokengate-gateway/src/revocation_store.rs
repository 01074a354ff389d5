//! The shared revocation store: every replica's revocation list, kept in step through Redis.
//!
//! The request path never talks to Redis. Each replica keeps its own in-memory
//! [`RevocationList`] (a hash lookup per request) and a background task keeps it in step:
//!
//! - **Writing**: the list's observer hears every entry added on this replica (admin API,
//!   back-channel logout, security events) and puts it on a bounded queue; the task writes the
//!   queue to Redis — `ZADD` into the sorted set `{prefix}:entries` (member: the entry as JSON,
//!   score: its `expires_at`, when a matching token stops being valid, bar the leeway) and one
//!   `PUBLISH` on `{prefix}:events` per batch, in one `MULTI`/`EXEC`.
//! - **Learning**: the task subscribes to `{prefix}:events` and merges what other replicas
//!   publish with [`RevocationList::apply_all`], which does not tell the observer (no echo).
//! - **Catching up**: on start and on every reconnect it subscribes *first*, then writes what it
//!   queued meanwhile, then loads the whole set (`ZSCAN`), so nothing published while it was
//!   away is lost; entries merge, so seeing one twice is harmless. A full reload also runs every
//!   `full_load_interval`, a safety net under pub/sub's at-most-once delivery.
//! - **Redis losing its data** (a restart without persistence, a failover to an empty
//!   replica): the key `{prefix}:epoch` holds a random value set once (`SET NX`). A replica
//!   that reconnects and finds another epoch than it saw before writes its whole local list
//!   back, so the fleet refills the store; entries merge, so every replica doing it is
//!   harmless.
//! - **Expiry**: Redis 7.0 (Debian 12) has no per-field expiry (`HEXPIRE` is 7.4), so entries
//!   share one sorted set scored by expiry and the task trims it with `ZREMRANGEBYSCORE` on
//!   every connect and full load, keeping what expired less than
//!   [`KEPT_PAST_EXPIRY`](tokengate::revocation::KEPT_PAST_EXPIRY) ago (a token is accepted
//!   until its `exp` plus the leeway). A full load is one `ZSCAN` walk of one key.
//!
//! # When Redis is unreachable
//!
//! Requests are served from the local list as before. Local adds still take effect at once
//! and are queued (`queue_capacity`, default 10 000). If the queue overflows, the entry stays
//! in the local list, the queue is dropped and a flag is set: on reconnect the replica writes
//! its *whole* local list instead of the queue, so nothing is lost either way. The store
//! reports `degraded` in `/readyz` (still 200: the local list is complete up to the outage,
//! and failing readiness on every replica at once would turn a Redis outage into a full one)
//! and in `/metrics`. Until the *first* full load has succeeded, though, a replica knows
//! nothing of the fleet's revocations, so `/readyz` answers 503 (unless
//! `ready_before_first_load = true`).
//!
//! Every Redis call has a timeout (`connect_timeout`, `command_timeout`); both connections
//! are pinged every `ping_interval`, so a silently dead one is replaced. The URL (it may carry
//! a password) is never logged.

// Without the `redis` feature nothing drives a status; the type stays for `/readyz`.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

const STATE_CONNECTING: u8 = 0;
const STATE_UP: u8 = 1;
const STATE_DEGRADED: u8 = 2;

/// What the store is doing, for `/readyz` and `/metrics`. Lock-free except `last_error`.
#[derive(Debug, Default)]
pub struct StoreStatus {
    state: AtomicU8,
    loaded_once: AtomicBool,
    ready_before_first_load: bool,
    since: AtomicI64,
    queued: AtomicU64,
    /// Entries written to Redis.
    pub written: AtomicU64,
    /// Entries learnt from other replicas through pub/sub.
    pub received: AtomicU64,
    /// Full loads completed.
    pub full_loads: AtomicU64,
    /// Connections established (the first and every reconnect).
    pub connects: AtomicU64,
    /// Failed Redis operations.
    pub errors: AtomicU64,
    /// Times the write queue overflowed (the whole list is written on reconnect).
    pub overflows: AtomicU64,
    /// Entries Redis held that the local list refused (full) or could not read.
    pub refused: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl StoreStatus {
    fn new(ready_before_first_load: bool) -> Self {
        StoreStatus { ready_before_first_load, since: AtomicI64::new(unix_now()), ..Default::default() }
    }

    /// `connecting` (no connection yet), `up` or `degraded`.
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            STATE_UP => "up",
            STATE_DEGRADED => "degraded",
            _ => "connecting",
        }
    }

    /// Whether the store is connected and in step.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == STATE_UP
    }

    /// Whether the replica may take traffic: once one full load has succeeded (or if
    /// configured not to wait for it).
    pub fn ready(&self) -> bool {
        self.ready_before_first_load || self.loaded_once.load(Ordering::Relaxed)
    }

    /// Entries waiting to be written.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The `/readyz` section.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "backend": "redis",
            "state": self.state(),
            "loaded": self.loaded_once.load(Ordering::Relaxed),
            "since": self.since.load(Ordering::Relaxed),
            "queued": self.queued(),
            "last_error": self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        })
    }

    fn set_state(&self, state: u8) {
        if self.state.swap(state, Ordering::Relaxed) != state {
            self.since.store(unix_now(), Ordering::Relaxed);
        }
    }

    fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        // Redis errors name the operation and the cause (refused, timed out), never the URL.
        let message = format!("{what}: {error}");
        if self.is_up() || self.state.load(Ordering::Relaxed) == STATE_CONNECTING {
            tracing::warn!(error = %message, "revocation store degraded: serving from the local list");
        } else {
            tracing::debug!(error = %message, "revocation store still unreachable");
        }
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
        self.set_state(STATE_DEGRADED);
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(feature = "redis")]
pub use backend::RevocationStore;

/// The Redis side (feature `redis`); the status above exists without it, for `/readyz`.
#[cfg(feature = "redis")]
mod backend {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::time::Duration;

    use serde::{Deserialize, Serialize};
    use tokengate::RevocationList;
    use tokengate::revocation::Revocation;
    use tokio::sync::{Notify, watch};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::config::RedisSettings;

    /// Entries per `MULTI`/`EXEC` write and per published message: 512 keeps one message well
    /// under [`MAX_MESSAGE_BYTES`] with typical identifiers, and one round trip amortised.
    const WRITE_BATCH: usize = 512;

    /// `COUNT` hint of each `ZSCAN` page: 1 000 entries, about 150 KB a page.
    const SCAN_PAGE: usize = 1_000;

    /// The largest pub/sub message or stored member read: 4 MiB and 64 KiB. Redis is trusted like
    /// the configuration, but a corrupted or foreign value must not cost unbounded memory.
    const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
    const MAX_MEMBER_BYTES: usize = 64 * 1024;

    /// First pause after a failed connection; doubled per failure up to `reconnect_max_backoff`.
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);

    /// Entries added here and not yet in Redis.
    struct Queue {
        entries: Mutex<VecDeque<Revocation>>,
        capacity: usize,
        /// Set when an entry could not be queued: write the whole local list on reconnect.
        overflowed: AtomicBool,
        wake: Notify,
        status: Arc<StoreStatus>,
    }

    impl Queue {
        /// Called by the list's observer, under the list's writer lock: never blocks.
        fn push(&self, entry: &Revocation) {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if entries.len() >= self.capacity {
                if !self.overflowed.swap(true, Ordering::Relaxed) {
                    self.status.overflows.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        capacity = self.capacity,
                        "revocation store queue full: the whole local list will be written on reconnect"
                    );
                }
            } else {
                entries.push_back(entry.clone());
                self.status.queued.store(entries.len() as u64, Ordering::Relaxed);
            }
            drop(entries);
            self.wake.notify_one();
        }

        fn peek(&self, n: usize) -> Vec<Revocation> {
            self.entries.lock().unwrap_or_else(PoisonError::into_inner).iter().take(n).cloned().collect()
        }

        fn pop(&self, n: usize) {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let n = n.min(entries.len());
            entries.drain(..n);
            self.status.queued.store(entries.len() as u64, Ordering::Relaxed);
        }

        fn clear(&self) {
            self.pop(usize::MAX);
        }
    }

    /// What travels on the channel: a batch of entries and who wrote them.
    #[derive(Debug, Serialize, Deserialize)]
    struct Message {
        /// The writing replica's random id: a replica skips its own messages.
        origin: String,
        entries: Vec<Revocation>,
    }

    /// A running store; dropping it (or [`RevocationStore::shutdown`]) stops the task.
    pub struct RevocationStore {
        status: Arc<StoreStatus>,
        stop: watch::Sender<bool>,
        task: Option<JoinHandle<()>>,
    }

    impl std::fmt::Debug for RevocationStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RevocationStore").field("state", &self.status.state()).finish_non_exhaustive()
        }
    }

    impl RevocationStore {
        /// Hooks `list` up to Redis and starts the background task. Fails only on a URL the
        /// client cannot use (the message never repeats the URL) or a list that already has an
        /// observer.
        pub fn start(settings: &RedisSettings, list: RevocationList) -> Result<RevocationStore, String> {
            let client = redis::Client::open(settings.url.expose())
                .map_err(|_| "revocation.redis.url: not a usable Redis URL".to_owned())?;
            let status = Arc::new(StoreStatus::new(settings.ready_before_first_load));
            let queue = Arc::new(Queue {
                entries: Mutex::new(VecDeque::new()),
                capacity: settings.queue_capacity,
                overflowed: AtomicBool::new(false),
                wake: Notify::new(),
                status: status.clone(),
            });
            let observer = queue.clone();
            list.set_observer(Arc::new(move |entry: &Revocation| observer.push(entry)))
                .map_err(|_| "the revocation list already has an observer".to_owned())?;
            let (stop, stopped) = watch::channel(false);
            let worker = Worker {
                client,
                settings: settings.clone(),
                entries_key: settings.entries_key(),
                channel: settings.channel(),
                origin: replica_id(),
                list,
                queue,
                status: status.clone(),
            };
            let task = tokio::spawn(worker.run(stopped));
            Ok(RevocationStore { status, stop, task: Some(task) })
        }

        /// The store's state and counters.
        pub fn status(&self) -> &Arc<StoreStatus> {
            &self.status
        }

        /// Stops the task (entries still queued stay in the local list only).
        pub async fn shutdown(mut self) {
            let _ = self.stop.send(true);
            if let Some(task) = self.task.take() {
                let _ = task.await;
            }
        }
    }

    impl Drop for RevocationStore {
        fn drop(&mut self) {
            let _ = self.stop.send(true);
        }
    }

    /// 16 random bytes in hex: tells this process's messages from the others'.
    fn replica_id() -> String {
        let mut bytes = [0u8; 16];
        // Without randomness the id is merely less unique; a collision only makes two replicas
        // skip each other's messages until the next full load.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Why a connected session ended.
    enum Ended {
        Stopped,
        Lost,
    }

    struct Worker {
        client: redis::Client,
        settings: RedisSettings,
        entries_key: String,
        channel: String,
        origin: String,
        list: RevocationList,
        queue: Arc<Queue>,
        status: Arc<StoreStatus>,
    }

    type Conn = redis::aio::MultiplexedConnection;

    impl Worker {
        async fn run(self, mut stop: watch::Receiver<bool>) {
            let mut backoff = FIRST_BACKOFF;
            let mut epoch = None;
            loop {
                if *stop.borrow() {
                    return;
                }
                match self.session(&mut stop, &mut epoch).await {
                    Ok(Ended::Stopped) => return,
                    Ok(Ended::Lost) => backoff = FIRST_BACKOFF,
                    Err(()) => {}
                }
                // Wait before the next attempt, but wake for a shutdown.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(self.settings.reconnect_max_backoff);
            }
        }

        /// One connection's life: connect, subscribe, flush, load, then follow the channel.
        async fn session(
            &self,
            stop: &mut watch::Receiver<bool>,
            epoch: &mut Option<String>,
        ) -> Result<Ended, ()> {
            let s = &self.settings;
            let connect = s.connect_timeout + s.command_timeout;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(s.connect_timeout))
                .set_response_timeout(Some(s.command_timeout));
            let mut conn = self
                .timed("connect", connect, self.client.get_multiplexed_async_connection_with_config(&config))
                .await?;
            let pubsub = self.timed("connect (pub/sub)", connect, self.client.get_async_pubsub()).await?;
            let (mut sink, mut stream) = pubsub.split();
            // Subscribe before loading: whatever is published from here on reaches us.
            self.timed("subscribe", s.command_timeout, sink.subscribe(&self.channel)).await?;
            self.status.connects.fetch_add(1, Ordering::Relaxed);
            let current = self.epoch(&mut conn).await?;
            if epoch.as_ref().is_some_and(|seen| *seen != current) {
                tracing::warn!(
                    "the revocation store lost its entries (new epoch): writing the local list back"
                );
                self.queue.overflowed.store(true, Ordering::Relaxed);
            }
            *epoch = Some(current);
            self.flush(&mut conn).await?;
            self.full_load(&mut conn).await?;
            self.status.loaded_once.store(true, Ordering::Relaxed);
            self.status.set_state(STATE_UP);
            tracing::info!("revocation store connected and in step");

            let mut ping = tokio::time::interval(s.ping_interval);
            let mut reload = tokio::time::interval(s.full_load_interval);
            ping.tick().await;
            reload.tick().await;
            loop {
                tokio::select! {
                    message = futures_util::StreamExt::next(&mut stream) => {
                        let Some(message) = message else {
                            self.status.failed("pub/sub", &"the connection closed");
                            return Ok(Ended::Lost);
                        };
                        let mut batch = Vec::new();
                        self.read_message(message, &mut batch);
                        // Take whatever else already arrived, so a burst costs one list copy.
                        while batch.len() < WRITE_BATCH * 8 {
                            match futures_util::FutureExt::now_or_never(futures_util::StreamExt::next(&mut stream)) {
                                Some(Some(message)) => self.read_message(message, &mut batch),
                                _ => break,
                            }
                        }
                        self.learn(batch);
                    }
                    _ = self.queue.wake.notified() => {
                        if self.flush(&mut conn).await.is_err() {
                            return Ok(Ended::Lost);
                        }
                    }
                    _ = ping.tick() => {
                        let ok = self.timed("ping", s.command_timeout, redis::cmd("PING").query_async::<()>(&mut conn)).await.is_ok()
                            && self.timed("ping (pub/sub)", s.command_timeout, sink.ping::<()>()).await.is_ok();
                        if !ok {
                            return Ok(Ended::Lost);
                        }
                    }
                    _ = reload.tick() => {
                        if self.full_load(&mut conn).await.is_err() {
                            return Ok(Ended::Lost);
                        }
                    }
                    _ = stop.changed() => return Ok(Ended::Stopped),
                }
            }
        }

        /// Awaits `future` for at most `limit`, recording a failure.
        async fn timed<T, F>(&self, what: &str, limit: Duration, future: F) -> Result<T, ()>
        where
            F: Future<Output = redis::RedisResult<T>>,
        {
            match tokio::time::timeout(limit, future).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => {
                    self.status.failed(what, &e);
                    Err(())
                }
                Err(_) => {
                    self.status.failed(what, &"timed out");
                    Err(())
                }
            }
        }

        /// The store's epoch: set once by whoever comes first, read by everyone.
        async fn epoch(&self, conn: &mut Conn) -> Result<String, ()> {
            let key = format!("{}:epoch", self.settings.key_prefix);
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("SET").arg(&key).arg(replica_id()).arg("NX").ignore().cmd("GET").arg(&key);
            let (epoch,): (String,) =
                self.timed("epoch", self.settings.command_timeout, pipe.query_async(conn)).await?;
            Ok(epoch)
        }

        /// Writes what was queued (or, after an overflow, the whole local list).
        async fn flush(&self, conn: &mut Conn) -> Result<(), ()> {
            if self.queue.overflowed.swap(false, Ordering::Relaxed) {
                // Everything queued is in the local list too: write the list, drop the queue.
                self.queue.clear();
                let all = self.list.entries();
                for chunk in all.chunks(WRITE_BATCH) {
                    if self.write(conn, chunk).await.is_err() {
                        self.queue.overflowed.store(true, Ordering::Relaxed);
                        return Err(());
                    }
                }
            }
            loop {
                let batch = self.queue.peek(WRITE_BATCH);
                if batch.is_empty() {
                    return Ok(());
                }
                // Removed only once written: a failure leaves the batch for the next connection.
                self.write(conn, &batch).await?;
                self.queue.pop(batch.len());
            }
        }

        async fn write(&self, conn: &mut Conn, batch: &[Revocation]) -> Result<(), ()> {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for entry in batch {
                let member = serde_json::to_string(entry).map_err(|_| ())?;
                pipe.cmd("ZADD").arg(&self.entries_key).arg(entry.expires_at()).arg(member).ignore();
            }
            let message = Message { origin: self.origin.clone(), entries: batch.to_vec() };
            let message = serde_json::to_string(&message).map_err(|_| ())?;
            pipe.cmd("PUBLISH").arg(&self.channel).arg(message).ignore();
            self.timed("write", self.settings.command_timeout, pipe.query_async::<()>(conn)).await?;
            self.status.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
            Ok(())
        }

        /// Trims expired entries, then merges the whole set into the local list.
        async fn full_load(&self, conn: &mut Conn) -> Result<(), ()> {
            let t = self.settings.command_timeout;
            // Entries stay in force a while past their expiry, for the leeway (KEPT_PAST_EXPIRY).
            let kept = tokengate::revocation::KEPT_PAST_EXPIRY.as_secs() as i64;
            let trim = redis::cmd("ZREMRANGEBYSCORE")
                .arg(&self.entries_key)
                .arg("-inf")
                .arg(unix_now().saturating_sub(kept))
                .clone();
            self.timed("trim", t, trim.query_async::<()>(conn)).await?;
            let mut cursor: u64 = 0;
            let mut batch = Vec::new();
            let mut unreadable = 0u64;
            loop {
                let page = redis::cmd("ZSCAN")
                    .arg(&self.entries_key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SCAN_PAGE)
                    .clone();
                // Bytes, not strings: one member that is not UTF-8 must not stop every load.
                let (next, items): (u64, Vec<Vec<u8>>) =
                    self.timed("full load", t, page.query_async(conn)).await?;
                // Members and scores alternate; the member holds the expiry itself.
                for member in items.iter().step_by(2) {
                    match (member.len() <= MAX_MEMBER_BYTES)
                        .then(|| serde_json::from_slice::<Revocation>(member))
                    {
                        Some(Ok(entry)) => batch.push(entry),
                        _ => unreadable += 1,
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            let summary = self.list.apply_all(batch);
            self.status.refused.fetch_add(summary.refused as u64 + unreadable, Ordering::Relaxed);
            self.status.full_loads.fetch_add(1, Ordering::Relaxed);
            if summary.refused > 0 || unreadable > 0 {
                tracing::warn!(
                    refused = summary.refused,
                    unreadable,
                    "revocation store: some shared entries could not be applied (list full, or not entries)"
                );
            }
            Ok(())
        }

        fn read_message(&self, message: redis::Msg, batch: &mut Vec<Revocation>) {
            let payload = message.get_payload_bytes();
            let parsed =
                (payload.len() <= MAX_MESSAGE_BYTES).then(|| serde_json::from_slice::<Message>(payload));
            match parsed {
                Some(Ok(m)) if m.origin == self.origin => {}
                Some(Ok(m)) => batch.extend(m.entries),
                _ => {
                    self.status.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("revocation store: ignored a message on the channel that is not ours");
                }
            }
        }

        fn learn(&self, batch: Vec<Revocation>) {
            if batch.is_empty() {
                return;
            }
            let n = batch.len() as u64;
            let summary = self.list.apply_all(batch);
            self.status.received.fetch_add(n, Ordering::Relaxed);
            if summary.refused > 0 {
                self.status.refused.fetch_add(summary.refused as u64, Ordering::Relaxed);
                tracing::warn!(
                    refused = summary.refused,
                    "revocation store: the local list refused shared entries"
                );
            }
        }
    }
}
