//! The soak test: the release gateway under steady load on loopback while its issuer rotates
//! keys every 30 s, its JWKS endpoint fails for a minute and its introspection endpoint hangs
//! for a minute. Not part of CI; run it with `scripts/soak.sh` (see the README).
//!
//! Every answer is judged against what a correct gateway must say:
//!
//! - a forged, expired, wrong-audience or revoked token is never admitted, on any route;
//! - a good token whose key the gateway has already accepted once is admitted on `local` routes
//!   (a token with a brand-new `kid` may get 401 until the gateway has fetched that key: that is
//!   the one ambiguous case, counted apart);
//! - on `introspect` routes a good token gets 200, or 503 while the introspection endpoint is
//!   down (never 401); a token revoked at the issuer gets 401 or 503 (never 200);
//! - `local` routes never answer 5xx, whatever the issuer does.
//!
//! It prints a markdown summary and exits non-zero if any verdict was wrong, a `local` route
//! answered 5xx, or the gateway's RSS grew by more than 10 % between the end of the warm-up and
//! the end of the run.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use std::io::{BufRead, BufReader};
use tokengate_testkit::{EchoUpstream, Endpoint, Fault, Issuer, KeyKind};

/// The longest run allowed: the issue bounds the soak at 10 minutes.
const MAX_DURATION: Duration = Duration::from_secs(600);
/// Key rotation period.
const ROTATE_EVERY: Duration = Duration::from_secs(30);
/// How long each outage lasts.
const OUTAGE: Duration = Duration::from_secs(60);
/// Load before the first RSS sample: long enough for the verified-token cache to reach its
/// steady size (tokens live [`TOKEN_LIFETIME`], so entries come and go at the same rate).
const WARM_UP: Duration = Duration::from_secs(120);
/// Lifetime of the good tokens: like real access tokens, they expire and are replaced, so the
/// working set (and the cache) stays the same size over the run.
const TOKEN_LIFETIME: i64 = 90;
/// A pool of good tokens is used for this long after it was minted, well inside its lifetime.
const POOL_USE: Duration = Duration::from_secs(60);
/// How long after the introspection outage a 503 on an `introspect` route is still expected:
/// the call in flight (2 s timeout) and one open period of the circuit breaker (10 s).
const OUTAGE_GRACE: Duration = Duration::from_secs(15);
/// Distinct users per signing key: a realistic working set, so the caches stay bounded.
const USERS_PER_KEY: usize = 100;
/// Allowed RSS growth from the end of warm-up to the end.
const MAX_RSS_DRIFT: f64 = 0.10;
const ADMIN_SECRET: &str = "soak-admin-secret";

/// The run's schedule, in seconds from the start of load.
struct Schedule {
    jwks_down: (Duration, Duration),
    introspection_down: (Duration, Duration),
}

impl Schedule {
    fn new() -> Schedule {
        // Both outages fit between warm-up and the last minute, which shows recovery.
        let jwks_from = WARM_UP + Duration::from_secs(30);
        let introspection_from = jwks_from + OUTAGE + Duration::from_secs(30);
        Schedule {
            jwks_down: (jwks_from, jwks_from + OUTAGE),
            introspection_down: (introspection_from, introspection_from + OUTAGE),
        }
    }

    fn introspection_may_fail(&self, at: Duration) -> bool {
        at >= self.introspection_down.0 && at < self.introspection_down.1 + OUTAGE_GRACE
    }
}

/// Counters of one kind of request.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    refused: AtomicU64,
    unavailable: AtomicU64,
    wrong: AtomicU64,
    ambiguous: AtomicU64,
    other_5xx: AtomicU64,
}

impl Tally {
    fn row(&self, name: &str) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            g(&self.sent),
            g(&self.ok),
            g(&self.refused),
            g(&self.unavailable),
            g(&self.other_5xx),
            g(&self.ambiguous),
            g(&self.wrong)
        )
    }
}

#[derive(Default)]
struct Tallies {
    local_good: Tally,
    local_bad: Tally,
    local_revoked: Tally,
    introspect_good: Tally,
    introspect_revoked: Tally,
    unexpected_introspect_503: AtomicU64,
    /// The first few wrong verdicts, as (seconds into the run, route, status, error body), so a
    /// failure says why.
    wrong_samples: Mutex<Vec<String>>,
}

/// Tokens the load uses: good ones per confirmed key, and fixed bad ones.
struct Tokens {
    /// Good tokens by kid, newest key last, with when they were minted.
    good: Mutex<Vec<(String, Vec<String>, Instant)>>,
    /// Kids the gateway is known to have (a token with it was admitted).
    confirmed: Mutex<HashSet<String>>,
    bad: Vec<String>,
    revoked_in_list: Vec<String>,
    revoked_at_issuer: Vec<String>,
}

impl Tokens {
    fn mint_for_key(issuer: &Issuer, kid: &str) -> Vec<String> {
        (0..USERS_PER_KEY)
            .map(|u| issuer.token().kid_key(kid).sub(&format!("user-{u}")).expires_in(TOKEN_LIFETIME).sign())
            .collect()
    }
}

/// A tiny xorshift generator: the load only needs a cheap, seeded spread of choices.
struct Choice(u64);

impl Choice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct GatewayProcess {
    child: Child,
    url: String,
    admin: String,
    _dir: tempdir::Dir,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn start_gateway(binary: &str, issuer: &Issuer, upstream: &EchoUpstream) -> GatewayProcess {
    let dir = std::env::temp_dir().join(format!("tokengate-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let config = format!(
        r#"listen = "127.0.0.1:0"
upstream = "{upstream}"
admin_token_env = "TOKENGATE_SOAK_ADMIN"

[admin]
listen = "127.0.0.1:0"

[identity]
subject = "X-User"

[[issuers]]
issuer = "{issuer}"
jwks_uri = "{jwks}"
audiences = ["{audience}"]
algorithms = ["RS256"]

[introspection]
endpoint = "{introspect}"
client_id = "{client_id}"
client_secret = "{client_secret}"
cache_ttl_secs = 2

[[routes]]
path = "/introspect/*"
mode = "introspect"

[[routes]]
path = "/local/*"
mode = "local"
"#,
        upstream = upstream.url(),
        issuer = issuer.url(),
        jwks = issuer.jwks_uri(),
        audience = issuer.audience(),
        introspect = issuer.introspection_endpoint(),
        client_id = issuer.introspection_client_id(),
        client_secret = issuer.introspection_client_secret(),
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).expect("write the config");
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&path)
        .env("TOKENGATE_SOAK_ADMIN", ADMIN_SECRET)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    // Read stdout on a thread of its own (and keep draining it, so the child never blocks).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (url, admin) = tokio::task::spawn_blocking(move || {
        let (mut url, mut admin) = (None, None);
        while url.is_none() || admin.is_none() {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("the gateway prints its addresses");
            if let Some((_, rest)) = line.split_once("listening on http://") {
                let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                if line.starts_with("admin") {
                    admin = Some(addr);
                } else {
                    url = Some(addr);
                }
            }
        }
        // Keep the channel's receiver alive for the run so the reader thread keeps draining.
        std::mem::forget(rx);
        (url.unwrap(), admin.unwrap())
    })
    .await
    .expect("the reader");
    GatewayProcess { child, url, admin, _dir: tempdir::Dir(dir) }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut binary, mut secs, mut workers) = ("target/release/tokengate-gateway".to_owned(), 360u64, 8usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--gateway" => binary = args.next().expect("--gateway PATH"),
            "--duration" => secs = args.next().and_then(|s| s.parse().ok()).expect("--duration SECS"),
            "--workers" => workers = args.next().and_then(|s| s.parse().ok()).expect("--workers N"),
            other => panic!(
                "unknown argument {other:?}; usage: soak [--gateway PATH] [--duration SECS] [--workers N]"
            ),
        }
    }
    let duration = Duration::from_secs(secs).min(MAX_DURATION);
    let schedule = Arc::new(Schedule::new());
    assert!(
        schedule.introspection_down.1 + OUTAGE_GRACE < duration,
        "--duration must leave time after both outages (at least {} s)",
        (schedule.introspection_down.1 + OUTAGE_GRACE).as_secs() + 30
    );

    let issuer = Issuer::builder().rsa_only().build().await;
    let upstream = EchoUpstream::start().await;
    let gateway = start_gateway(&binary, &issuer, &upstream).await;
    let pid = gateway.child.id();
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(64).build().expect("client");

    // Fixed bad tokens, and tokens revoked through the admin API and at the issuer.
    let kid = issuer.kid(KeyKind::Rsa);
    let good = issuer.token().sign();
    let (head, _) = good.rsplit_once('.').expect("a JWS");
    let bad = vec![
        format!("{head}.AAAA"),
        issuer.token().expires_in(-600).sign(),
        issuer.token().claim("aud", json!("https://someone-else.example")).sign(),
        issuer.token().claim("iss", json!("https://evil.example")).sign(),
    ];
    let mut revoked_in_list = Vec::new();
    for n in 0..20 {
        let token = issuer.token().claim("jti", json!(format!("soak-revoked-{n}"))).expires_in(3600).sign();
        let r = client
            .post(format!("http://{}/revocations", gateway.admin))
            .bearer_auth(ADMIN_SECRET)
            .json(&json!({"kind": "token", "token": token}))
            .send()
            .await
            .expect("the admin API answers");
        assert!(r.status().is_success(), "revocation refused: {}", r.status());
        revoked_in_list.push(token);
    }
    let revoked_at_issuer: Vec<String> = (0..20)
        .map(|n| {
            let token = issuer
                .token()
                .claim("jti", json!(format!("soak-issuer-revoked-{n}")))
                .expires_in(3600)
                .sign();
            issuer.revoke_token(&token);
            token
        })
        .collect();
    let tokens = Arc::new(Tokens {
        good: Mutex::new(vec![(kid.clone(), Tokens::mint_for_key(&issuer, &kid), Instant::now())]),
        confirmed: Mutex::new(HashSet::new()),
        bad,
        revoked_in_list,
        revoked_at_issuer,
    });

    let tallies = Arc::new(Tallies::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, tokens, tallies, stop, schedule) =
            (client.clone(), tokens.clone(), tallies.clone(), stop.clone(), schedule.clone());
        let base = format!("http://{}", gateway.url);
        // A quarter of the workers drive the introspected route; the rest the local one.
        let introspect = w % 4 == 3;
        tasks.push(tokio::spawn(async move {
            let mut choice = Choice(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
            while !stop.load(Ordering::Relaxed) {
                load_once(&client, &base, introspect, &tokens, &tallies, &schedule, started, &mut choice)
                    .await;
            }
        }));
    }

    // The issuer's side of the story: rotations, then the two outages, on schedule.
    let mut rss_after_warm_up = None;
    let mut next_rotation = ROTATE_EVERY;
    let mut rotations = 0;
    let (mut jwks_failing, mut introspection_hanging) = (false, false);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let at = started.elapsed();
        if rss_after_warm_up.is_none() && at >= WARM_UP {
            rss_after_warm_up = rss_kib(pid);
        }
        if at >= next_rotation {
            let kid = issuer.rotate(KeyKind::Rsa);
            let minted = Tokens::mint_for_key(&issuer, &kid);
            tokens.good.lock().unwrap().push((kid, minted, Instant::now()));
            rotations += 1;
            next_rotation += ROTATE_EVERY;
        }
        // Pools past their use are dropped on every tick (not only at rotations, which would let
        // a pool outlive its tokens by a tick's jitter): their tokens are about to expire.
        tokens.good.lock().unwrap().retain(|(_, _, minted)| minted.elapsed() < POOL_USE);
        let jwks_window = at >= schedule.jwks_down.0 && at < schedule.jwks_down.1;
        if jwks_window != jwks_failing {
            issuer.set_fault(Endpoint::Jwks, if jwks_window { Fault::Status(500) } else { Fault::None });
            jwks_failing = jwks_window;
        }
        let hang_window = at >= schedule.introspection_down.0 && at < schedule.introspection_down.1;
        if hang_window != introspection_hanging {
            issuer.set_fault(Endpoint::Introspect, if hang_window { Fault::Hang } else { Fault::None });
            introspection_hanging = hang_window;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let rss_end = rss_kib(pid);

    let t = &tallies;
    let wrong = [&t.local_good, &t.local_bad, &t.local_revoked, &t.introspect_good, &t.introspect_revoked]
        .iter()
        .map(|t| t.wrong.load(Ordering::Relaxed))
        .sum::<u64>();
    let local_5xx = t.local_good.other_5xx.load(Ordering::Relaxed)
        + t.local_good.unavailable.load(Ordering::Relaxed)
        + t.local_bad.other_5xx.load(Ordering::Relaxed)
        + t.local_bad.unavailable.load(Ordering::Relaxed)
        + t.local_revoked.other_5xx.load(Ordering::Relaxed)
        + t.local_revoked.unavailable.load(Ordering::Relaxed);
    let drift = match (rss_after_warm_up, rss_end) {
        (Some(a), Some(b)) if a > 0 => Some((b as f64 - a as f64) / a as f64),
        _ => None,
    };
    println!("## Soak run: {} s, {workers} workers, {rotations} key rotations", duration.as_secs());
    println!();
    println!(
        "JWKS failing (500) from {} s to {} s; introspection hanging from {} s to {} s.",
        schedule.jwks_down.0.as_secs(),
        schedule.jwks_down.1.as_secs(),
        schedule.introspection_down.0.as_secs(),
        schedule.introspection_down.1.as_secs()
    );
    println!();
    println!("| requests | sent | 2xx | 401/403 | 503 | other 5xx | ambiguous (new kid) | wrong |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    println!("{}", t.local_good.row("local, good token"));
    println!("{}", t.local_bad.row("local, forged/expired/wrong aud/iss"));
    println!("{}", t.local_revoked.row("local, revoked in the list"));
    println!("{}", t.introspect_good.row("introspect, good token"));
    println!("{}", t.introspect_revoked.row("introspect, forged or revoked at the issuer"));
    println!();
    println!("- wrong verdicts: **{wrong}** (must be 0)");
    println!("- 5xx on local routes: **{local_5xx}** (must be 0)");
    println!(
        "- 503 on introspect routes outside the outage (+{} s grace): {}",
        OUTAGE_GRACE.as_secs(),
        t.unexpected_introspect_503.load(Ordering::Relaxed)
    );
    match (rss_after_warm_up, rss_end, drift) {
        (Some(a), Some(b), Some(d)) => {
            println!(
                "- gateway RSS: {a} KiB after warm-up, {b} KiB at the end: **{:+.1} %** (must be < 10 %)",
                d * 100.0
            )
        }
        _ => println!("- gateway RSS: not measured (no /proc)"),
    }
    for sample in tallies.wrong_samples.lock().unwrap().iter() {
        println!("- wrong: {sample}");
    }
    let failed = wrong > 0 || local_5xx > 0 || drift.is_some_and(|d| d > MAX_RSS_DRIFT);
    drop(gateway);
    std::process::exit(if failed { 1 } else { 0 });
}

#[allow(clippy::too_many_arguments)]
async fn load_once(
    client: &reqwest::Client,
    base: &str,
    introspect: bool,
    tokens: &Tokens,
    tallies: &Tallies,
    schedule: &Schedule,
    started: Instant,
    choice: &mut Choice,
) {
    enum Kind {
        Good { kid: String, confirmed: bool },
        Bad,
        Revoked,
    }
    let roll = choice.below(100);
    let (token, kind) = if roll < 80 {
        let good = tokens.good.lock().unwrap();
        let confirmed = tokens.confirmed.lock().unwrap();
        // Mostly keys the gateway is known to hold; one in ten the newest key, confirmed or not.
        let candidates: Vec<&(String, Vec<String>, Instant)> =
            good.iter().filter(|(kid, _, _)| confirmed.contains(kid)).collect();
        let (kid, pool, _) = if candidates.is_empty() || choice.below(10) == 0 {
            good.last().expect("a key")
        } else {
            candidates[choice.below(candidates.len())]
        };
        let token = pool[choice.below(pool.len())].clone();
        (token, Kind::Good { kid: kid.clone(), confirmed: confirmed.contains(kid) })
    } else if roll < 90 {
        (tokens.bad[choice.below(tokens.bad.len())].clone(), Kind::Bad)
    } else if introspect {
        (tokens.revoked_at_issuer[choice.below(tokens.revoked_at_issuer.len())].clone(), Kind::Revoked)
    } else {
        (tokens.revoked_in_list[choice.below(tokens.revoked_in_list.len())].clone(), Kind::Revoked)
    };
    let path = if introspect { "/introspect/item" } else { "/local/item" };
    let (status, body) = match client.get(format!("{base}{path}")).bearer_auth(&token).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            (status, body)
        }
        // A transport error counts as a 5xx: the gateway failed to answer.
        Err(_) => (599, Default::default()),
    };
    let wrong = |tally: &Tally| {
        tally.wrong.fetch_add(1, Ordering::Relaxed);
        let mut samples = tallies.wrong_samples.lock().unwrap();
        if samples.len() < 10 {
            let body = String::from_utf8_lossy(&body);
            samples.push(format!("{:.1} s {path} {status} {body}", started.elapsed().as_secs_f64()));
        }
    };
    let at = started.elapsed();
    let tally = match (&kind, introspect) {
        (Kind::Good { .. }, false) => &tallies.local_good,
        (Kind::Bad, false) => &tallies.local_bad,
        (Kind::Revoked, false) => &tallies.local_revoked,
        (Kind::Good { .. }, true) => &tallies.introspect_good,
        (Kind::Bad | Kind::Revoked, true) => &tallies.introspect_revoked,
    };
    tally.sent.fetch_add(1, Ordering::Relaxed);
    match status {
        200..=299 => tally.ok.fetch_add(1, Ordering::Relaxed),
        401 | 403 => tally.refused.fetch_add(1, Ordering::Relaxed),
        503 => tally.unavailable.fetch_add(1, Ordering::Relaxed),
        _ => tally.other_5xx.fetch_add(1, Ordering::Relaxed),
    };
    let admitted = (200..300).contains(&status);
    match kind {
        Kind::Bad | Kind::Revoked => {
            if admitted {
                wrong(tally);
            }
        }
        Kind::Good { kid, confirmed } => {
            if admitted {
                tokens.confirmed.lock().unwrap().insert(kid);
            } else if status == 401 || status == 403 {
                if confirmed {
                    wrong(tally);
                } else {
                    tally.ambiguous.fetch_add(1, Ordering::Relaxed);
                }
            } else if status == 503 && introspect && !schedule.introspection_may_fail(at) {
                tallies.unexpected_introspect_503.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
