//! `load-bench`: the load benchmark's driver (issue 8, item 4). In one run it starts the testkit
//! issuer in-process, mints one warm token and N distinct RS256 tokens, and for each worker
//! count runs every scenario as a fresh `load-server` (or gateway, or nginx) process under
//! `wrk`: warm-up first (not measured), then a bounded measured run during which the server's
//! CPU time is read from `/proc/<pid>/stat`. It prints the machine, the exact command and one
//! markdown table whose ratios are all against the same run's baseline. See README.md.
//!
//! Exit status: 0 when every scenario was measured (missed targets included), 1 on a harness
//! failure (a server that does not start, a 4xx/5xx under load, wrk failing), 2 on a bad
//! command line.

#![forbid(unsafe_code)]

mod nginx;
mod process;
mod report;
mod wrk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use tokengate_load::{ADMIN_PATH, API_PATH, CLIENT_SECRET_ENV, LISTENING_PREFIX};
use tokengate_testkit::Issuer;

use crate::process::{Managed, TempDir};
use crate::report::{Kind, Report, RoundRatios, Row};
use crate::wrk::Load;

/// The driver's error type: every failure is a message for the operator.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Lifetime of every minted token: far beyond the longest run (see [`MAX_DURATION_SECS`]), so no
/// token expires mid-run and turns the load into 401s.
const TOKEN_TTL_SECS: i64 = 2 * 60 * 60;

/// Upper bound of `--duration`: 22 measured runs of 300 s stay well inside the token lifetime.
const MAX_DURATION_SECS: u64 = 300;

/// The environment variable `scripts/load_bench.sh` sets to the command it was run with.
const COMMAND_ENV: &str = "LOAD_BENCH_COMMAND";

/// Timeout of the sanity-check requests made before each measurement.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Measured runs per worker count of the in-process group (bare axum, tokengate warm and
/// introspect in rounds, later passes, bare axum 0.7, jwt-authorizer warm and later passes);
/// for the time estimate. The first passes are counted apart.
const IN_PROCESS_RUNS_PER_WORKER_COUNT: u64 = 7;

/// Measured runs per worker count of the proxy group (upstream direct, nginx, the gateway):
/// each is [`ROUNDS`] runs of a third of `--duration`, so the group takes as long.
const PROXY_RUNS_PER_WORKER_COUNT: u64 = 3;

/// Rounds of a group measured side by side (the proxies; bare axum against tokengate's warm
/// token and `introspect` route): its targets run at once and are measured in turns, one
/// short run each per round (the order rotating), so a slow minute of a shared machine falls
/// on all of them alike; their rows take the median round.
const ROUNDS: usize = 3;

/// Rounds of the first passes: an even number, so each of the two layers is measured first in
/// as many rounds as the other (with three, the first-measured layer's passes came out slower
/// in both runs that had them).
const FIRST_PASS_ROUNDS: usize = 4;

/// Short first passes over the distinct tokens per worker count: tokengate and jwt-authorizer,
/// [`FIRST_PASS_ROUNDS`] each, every one in a fresh process after its own warm-up.
const FIRST_PASSES_PER_WORKER_COUNT: u64 = 2 * FIRST_PASS_ROUNDS as u64;

/// The longest a first pass may take (wrk's `-d`, which it also sleeps through after the pass):
/// a pass of 10 000 tokens takes under 1.5 s even for jwt-authorizer on one worker.
const FIRST_PASS_LIMIT: Duration = Duration::from_secs(5);

/// Load tokengate's gate, jwt-authorizer, nginx and the gateway with wrk; print one markdown
/// table of req/s, latency and server CPU per request, all relative to the same run's baseline.
#[derive(Debug, Parser)]
#[command(name = "load-bench")]
struct Cli {
    /// Seconds of each measured run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    duration: u64,
    /// Seconds of the unmeasured warm-up before each measured run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=60))]
    warmup: u64,
    /// wrk connections (-c).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads (-t).
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Server worker counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Number of distinct tokens for the many-tokens scenarios.
    #[arg(long, default_value_t = 10_000)]
    tokens: usize,
    /// The load-server binary (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// The tokengate-gateway binary.
    #[arg(long, default_value = "target/release/tokengate-gateway")]
    gateway: PathBuf,
    /// The nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// The wrk binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// Run only one group of scenarios (to profile it, or to iterate on it): `in-process` (bare
    /// axum, tokengate, jwt-authorizer) or `proxy` (upstream direct, nginx, the gateway).
    /// Targets of the other group print as "not measured".
    #[arg(long, value_enum)]
    only: Option<Group>,
}

/// A group of scenarios, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Group {
    /// Bare axum, tokengate and jwt-authorizer as in-process layers.
    InProcess,
    /// The upstream direct, behind nginx, and behind the gateway.
    Proxy,
}

impl Cli {
    /// Whether `--only` leaves `group` in.
    fn runs(&self, group: Group) -> bool {
        self.only.is_none_or(|only| only == group)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.workers.is_empty()
        || cli.workers.contains(&0)
        || cli.tokens < 2
        || cli.connections == 0
        || cli.threads == 0
    {
        eprintln!(
            "load-bench: --workers must be positive, --tokens at least 2, --connections and --threads positive"
        );
        return ExitCode::from(2);
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load-bench: harness failure: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything a scenario needs.
struct Bench<'a> {
    cli: &'a Cli,
    server: PathBuf,
    dir: PathBuf,
    load: Load,
    issuer: Issuer,
    runtime: &'a tokio::runtime::Runtime,
    client: reqwest::Client,
    warm_token: String,
    warm_file: PathBuf,
    distinct_file: PathBuf,
    report: Report,
}

fn run(cli: &Cli) -> Result<(), Error> {
    let server = match &cli.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("load-server"),
    };
    for (what, path) in [("load-server", &server), ("tokengate-gateway", &cli.gateway), ("nginx", &cli.nginx)]
    {
        if !path.is_file() {
            return Err(
                format!("{what} not found at {} (scripts/load_bench.sh builds it)", path.display()).into()
            );
        }
    }
    let ticks_per_second = process::clock_ticks_per_second()?;
    let dir = TempDir::new("tokengate-load")?;
    let load = Load {
        wrk: cli.wrk.clone(),
        threads: cli.threads,
        connections: cli.connections,
        dir: dir.path().to_owned(),
    };
    load.install_script()?;

    // The issuer runs on this runtime's thread; everything else here is blocking code on the
    // main thread, which never has to yield to it.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let cleanup_dir = dir.path().to_owned();
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else { return };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        process::kill_all_live();
        let _ = std::fs::remove_dir_all(&cleanup_dir);
        eprintln!("load-bench: interrupted; every process it started is killed");
        std::process::exit(130);
    });
    let issuer = runtime.block_on(Issuer::builder().rsa_only().build());
    let client = reqwest::Client::builder().timeout(CHECK_TIMEOUT).no_proxy().build()?;

    print_header(cli, &load);

    let started = Instant::now();
    let warm_token = issuer.token().sub("load-warm").expires_in(TOKEN_TTL_SECS).sign();
    let distinct = mint_distinct(&issuer, cli.tokens);
    let warm_file = dir.path().join("warm.txt");
    let distinct_file = dir.path().join("distinct.txt");
    std::fs::write(&warm_file, format!("{warm_token}\n"))?;
    std::fs::write(&distinct_file, distinct.join("\n") + "\n")?;
    eprintln!(
        "load-bench: minted 1 + {} RS256 tokens ({} bytes each) in {:.1} s",
        distinct.len(),
        warm_token.len(),
        started.elapsed().as_secs_f64()
    );
    drop(distinct);

    let mut bench = Bench {
        cli,
        server,
        dir: dir.path().to_owned(),
        load,
        issuer,
        runtime: &runtime,
        client,
        warm_token,
        warm_file,
        distinct_file,
        report: Report { tokens: cli.tokens, ticks_per_second, ..Report::default() },
    };
    for &workers in &cli.workers {
        if cli.runs(Group::InProcess) {
            bench.in_process_scenarios(workers)?;
        }
        if cli.runs(Group::Proxy) {
            bench.proxy_scenarios(workers)?;
        }
    }

    println!("{}", bench.report.table());
    println!("Notes:\n{}", bench.report.notes());
    println!("Targets (issue 8, item 5; the micro benchmarks check the others):\n{}", bench.report.targets());
    eprintln!("load-bench: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Prints the machine, the tools and the exact command, before anything is measured.
fn print_header(cli: &Cli, load: &Load) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| Some(line.strip_prefix("model name")?.split_once(':')?.1.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let first_line = |program: &Path, arg: &str| -> String {
        Command::new(program)
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .map(|out| {
                let text = [out.stdout, out.stderr].concat();
                String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_owned()
            })
            .unwrap_or_else(|e| format!("unavailable: {e}"))
    };
    let argv: Vec<String> = std::env::args().collect();
    let command = std::env::var(COMMAND_ENV).unwrap_or_else(|_| argv.join(" "));
    let worker_counts = cli.workers.len() as u64;
    let (mut runs, mut passes) = (0, 0);
    if cli.runs(Group::InProcess) {
        runs += worker_counts * IN_PROCESS_RUNS_PER_WORKER_COUNT;
        passes += worker_counts * FIRST_PASSES_PER_WORKER_COUNT;
    }
    if cli.runs(Group::Proxy) {
        runs += worker_counts * PROXY_RUNS_PER_WORKER_COUNT;
    }
    let pass_limit = FIRST_PASS_LIMIT.as_secs().min(cli.duration);
    println!("## tokengate load benchmark\n");
    println!("- machine: {cores} cores (nproc), {model}, Linux {}", kernel.trim());
    println!("- tools: {}; {}", first_line(&load.wrk, "-v"), first_line(&cli.nginx, "-v"));
    println!("- command: `{command}`");
    println!("- driver: `{}`", argv.join(" "));
    println!(
        "- load: `{}`; {runs} measured runs of {} s, each after a {} s warm-up (not measured), and {passes} first passes (each at most {} s, after its own warm-up): at most ≈ {} s plus process start-ups",
        load.describe(),
        cli.duration,
        cli.warmup,
        pass_limit,
        runs * (cli.warmup + cli.duration) + passes * (cli.warmup + pass_limit),
    );
    println!("- tokens: RS256 (RSA-2048) from the in-process testkit issuer; every request carries one\n");
}

/// Mints `count` distinct tokens (distinct `sub` and random `jti`), on every core: RSA signing
/// is the slow part of setting up.
fn mint_distinct(issuer: &Issuer, count: usize) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).max(1);
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let issuer = issuer.clone();
                scope.spawn(move || {
                    let range = (t * per_thread)..((t + 1) * per_thread).min(count);
                    range
                        .map(|i| {
                            issuer.token().sub(&format!("load-user-{i}")).expires_in(TOKEN_TTL_SECS).sign()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|handle| handle.join().expect("a minting thread panicked")).collect()
    })
}

/// The modes of `load-server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerMode {
    Bare,
    BareAxum07,
    Tokengate,
    JwtAuthorizer,
}

impl ServerMode {
    /// Its subcommand name.
    fn as_str(self) -> &'static str {
        match self {
            ServerMode::Bare => "bare",
            ServerMode::BareAxum07 => "bare-axum07",
            ServerMode::Tokengate => "tokengate",
            ServerMode::JwtAuthorizer => "jwt-authorizer",
        }
    }

    /// Whether it refuses requests without a token.
    fn has_auth(self) -> bool {
        matches!(self, ServerMode::Tokengate | ServerMode::JwtAuthorizer)
    }
}

/// The processes whose CPU a measurement counts, and where the load goes.
struct Target<'p> {
    processes: Vec<&'p Managed>,
    url: String,
    /// Whether the target refuses a request without a token (checked before it is measured).
    auth: bool,
}

impl Bench<'_> {
    /// Starts `load-server <mode> --workers N ...` (named `name` in messages) and waits for
    /// its address.
    fn start_server(
        &self,
        name: &str,
        mode: ServerMode,
        workers: usize,
    ) -> Result<(Managed, SocketAddr), Error> {
        let mut command = Command::new(&self.server);
        command.arg(mode.as_str()).arg("--workers").arg(workers.to_string()).args(self.server_args(mode));
        command.env(CLIENT_SECRET_ENV, self.issuer.introspection_client_secret());
        let log = self.dir.join(format!("{name}.stderr"));
        let mut server = Managed::spawn(name, command, Stdio::piped(), &log)?;
        let addr = process::wait_for_address(&mut server, LISTENING_PREFIX, LISTENING_PREFIX)?;
        Ok((server, addr))
    }

    /// The options `mode` needs: the issuer's coordinates, and the introspection endpoint.
    fn server_args(&self, mode: ServerMode) -> Vec<String> {
        let mut args = Vec::new();
        if mode.has_auth() {
            args.extend([
                "--issuer".into(),
                self.issuer.url(),
                "--jwks-uri".into(),
                self.issuer.jwks_uri(),
                "--audience".into(),
                self.issuer.audience(),
            ]);
        }
        if mode == ServerMode::Tokengate {
            args.extend([
                "--introspection-endpoint".into(),
                self.issuer.introspection_endpoint(),
                "--client-id".into(),
                self.issuer.introspection_client_id(),
            ]);
        }
        args
    }

    /// Sends one GET and fails unless the status is `expected`: proves, before the numbers,
    /// that the layer under test is really there (no token → 401) and lets the load through.
    fn expect_status(&self, url: &str, token: Option<&str>, expected: u16) -> Result<(), Error> {
        let mut request = self.client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        // `send` itself needs the runtime (its timeout timer), so the whole call goes inside.
        let status = self
            .runtime
            .block_on(async { request.send().await })
            .map_err(|e| format!("GET {url}: {e}"))?
            .status();
        if status.as_u16() != expected {
            let with = if token.is_some() { "with" } else { "without" };
            return Err(format!("GET {url} {with} a token answered {status}, expected {expected}").into());
        }
        Ok(())
    }

    /// Checks the target: 200 with the warm token and, when it has auth, 401 without one.
    fn check(&self, target: &Target<'_>) -> Result<(), Error> {
        if target.auth {
            self.expect_status(&target.url, None, 401)?;
        }
        self.expect_status(&target.url, Some(&self.warm_token), 200)
    }

    /// Warm-up (warm token, not measured).
    fn warm_up(&self, label: &str, target: &Target<'_>) -> Result<(), Error> {
        eprintln!("load-bench: {label}: warm-up {} s", self.cli.warmup);
        self.load.run(label, &target.url, &self.warm_file, Duration::from_secs(self.cli.warmup), false)?;
        Ok(())
    }

    /// One measured wrk run: the CPU time of the target's processes before and after, and the
    /// row it makes.
    fn measure(
        &mut self,
        kind: Kind,
        workers: usize,
        target: &Target<'_>,
        tokens: &Path,
        first_pass: bool,
    ) -> Result<(), Error> {
        let duration = Duration::from_secs(self.cli.duration);
        let row = self.sample(kind, workers, target, tokens, duration, first_pass)?;
        self.report.rows.push(row);
        Ok(())
    }

    /// One wrk run of `duration` against `target`, as a row.
    fn sample(
        &self,
        kind: Kind,
        workers: usize,
        target: &Target<'_>,
        tokens: &Path,
        duration: Duration,
        first_pass: bool,
    ) -> Result<Row, Error> {
        let label = format!("{kind:?}, {workers} worker(s)");
        for process in &target.processes {
            // A server that died during the warm-up would be measured as zero CPU.
            if process::cpu_ticks(process.pid()).is_err() {
                return Err(format!("{label}: {} is gone; {}", process.name(), process.stderr_tail()).into());
            }
        }
        let ticks = |processes: &[&Managed]| -> Result<u64, Error> {
            processes.iter().map(|process| process::cpu_ticks(process.pid())).sum()
        };
        eprintln!("load-bench: {label}: measuring {} s", duration.as_secs());
        let before = ticks(&target.processes)?;
        let result = self.load.run(&label, &target.url, tokens, duration, first_pass)?;
        let after = ticks(&target.processes)?;
        let cpu_seconds = after.saturating_sub(before) as f64 / self.report.ticks_per_second as f64;
        Ok(Row {
            kind,
            workers,
            rps: result.rps(),
            p50_us: result.p50_us,
            p99_us: result.p99_us,
            cpu_us_per_req: cpu_seconds * 1e6 / result.requests as f64,
            requests: result.requests,
            seconds: result.duration.as_secs_f64(),
        })
    }

    /// A fresh `load-server` for one scenario: start, check, warm up, measure.
    fn simple_scenario(
        &mut self,
        kind: Kind,
        mode: ServerMode,
        workers: usize,
        path: &str,
    ) -> Result<(), Error> {
        let (server, addr) = self.start_server(mode.as_str(), mode, workers)?;
        let target =
            Target { processes: vec![&server], url: format!("http://{addr}{path}"), auth: mode.has_auth() };
        self.check(&target)?;
        self.warm_up(&format!("{kind:?}, {workers} worker(s)"), &target)?;
        let tokens = self.warm_file.clone();
        self.measure(kind, workers, &target, &tokens, false)
    }

    /// Bare axum against tokengate's warm token and its `introspect` route, in rounds; bare
    /// axum 0.7 and jwt-authorizer's warm token, each a fresh `load-server` process; then both
    /// layers' first and later passes over the distinct tokens (see
    /// [`distinct_tokens_in_rounds`](Self::distinct_tokens_in_rounds)).
    fn in_process_scenarios(&mut self, workers: usize) -> Result<(), Error> {
        use ServerMode::{BareAxum07, JwtAuthorizer};
        self.warm_scenarios_in_rounds(workers)?;
        self.simple_scenario(Kind::BareAxum07, BareAxum07, workers, API_PATH)?;
        self.simple_scenario(Kind::JwtAuthorizerWarm, JwtAuthorizer, workers, API_PATH)?;
        self.distinct_tokens_in_rounds(workers)
    }

    /// One bare server and one tokengate server side by side: bare axum, the warm token and
    /// the `introspect` route (tokengate's two routes), measured in rounds (see
    /// [`in_rounds`](Self::in_rounds)). Both servers stop when this returns.
    fn warm_scenarios_in_rounds(&mut self, workers: usize) -> Result<(), Error> {
        use ServerMode::{Bare, Tokengate};
        let (bare, bare_addr) = self.start_server(Bare.as_str(), Bare, workers)?;
        let (gate, gate_addr) = self.start_server(Tokengate.as_str(), Tokengate, workers)?;
        let target = |server, addr, path, auth| Target {
            processes: vec![server],
            url: format!("http://{addr}{path}"),
            auth,
        };
        let targets = [
            (Kind::Bare, target(&bare, bare_addr, API_PATH, false)),
            (Kind::TokengateWarm, target(&gate, gate_addr, API_PATH, true)),
            (Kind::TokengateIntrospect, target(&gate, gate_addr, ADMIN_PATH, true)),
        ];
        self.in_rounds(
            workers,
            &targets,
            &[(Kind::TokengateWarm, Kind::Bare), (Kind::TokengateIntrospect, Kind::Bare)],
        )
    }

    /// tokengate and jwt-authorizer with the distinct tokens, in [`FIRST_PASS_ROUNDS`] rounds. Each round
    /// starts a fresh process of each layer (in an order that rotates), checks it, warms it up
    /// with the warm token only (so for tokengate every distinct token is still a cold
    /// verification) and measures its first pass over the tokens (wrk stops once each was
    /// answered); the last round then measures a full-length run over the same tokens in the
    /// same processes, which tokengate now has in its verified-token cache (jwt-authorizer
    /// caches nothing: both its passes verify every token). A first pass lasts a fraction of a
    /// second, so one pass says little on a shared machine: the first-pass rows are the median
    /// round, and their ratio the median of the rounds' ratios, each from two passes measured
    /// seconds apart.
    fn distinct_tokens_in_rounds(&mut self, workers: usize) -> Result<(), Error> {
        use ServerMode::{JwtAuthorizer, Tokengate};
        let layers = [
            (Tokengate, Kind::TokengateFirstPass, Kind::TokengateLaterPasses),
            (JwtAuthorizer, Kind::JwtAuthorizerFirstPass, Kind::JwtAuthorizerLaterPasses),
        ];
        let tokens = self.distinct_file.clone();
        let pass_limit = FIRST_PASS_LIMIT.min(Duration::from_secs(self.cli.duration));
        let mut first_passes: Vec<Vec<Row>> = vec![Vec::new(); layers.len()];
        let mut later_passes: Vec<Option<Row>> = vec![None; layers.len()];
        for round in 0..FIRST_PASS_ROUNDS {
            for turn in 0..layers.len() {
                let index = (round + turn) % layers.len();
                let (mode, first, later) = layers[index];
                let (server, addr) = self.start_server(mode.as_str(), mode, workers)?;
                let target =
                    Target { processes: vec![&server], url: format!("http://{addr}{API_PATH}"), auth: true };
                self.check(&target)?;
                self.warm_up(&format!("{first:?}, {workers} worker(s), round {}", round + 1), &target)?;
                let row = self.sample(first, workers, &target, &tokens, pass_limit, true)?;
                first_passes[index].push(row);
                if round + 1 == FIRST_PASS_ROUNDS {
                    let duration = Duration::from_secs(self.cli.duration);
                    later_passes[index] =
                        Some(self.sample(later, workers, &target, &tokens, duration, false)?);
                }
            }
        }
        let ratios = first_passes[0]
            .iter()
            .zip(&first_passes[1])
            .map(|(ours, theirs)| ours.rps / theirs.rps)
            .collect();
        self.report.round_ratios.push(RoundRatios {
            kind: Kind::TokengateFirstPass,
            other: Kind::JwtAuthorizerFirstPass,
            workers,
            ratios,
        });
        for (samples, later) in first_passes.iter().zip(later_passes) {
            self.report.rows.extend(report::median_round(samples));
            self.report.rows.extend(later);
        }
        Ok(())
    }

    /// One bare upstream, nginx (no auth) and the gateway (warm token) in front of it, all
    /// running at once, measured in rounds (see [`in_rounds`](Self::in_rounds)).
    fn proxy_scenarios(&mut self, workers: usize) -> Result<(), Error> {
        let (upstream, upstream_addr) = self.start_server("upstream", ServerMode::Bare, workers)?;
        let (nginx, nginx_addr) = nginx::start(&self.cli.nginx, &self.dir, workers, upstream_addr)?;
        let (gateway, gateway_addr) = self.start_gateway(workers, upstream_addr)?;
        let targets = [
            (
                Kind::UpstreamDirect,
                Target {
                    processes: vec![&upstream],
                    url: format!("http://{upstream_addr}{API_PATH}"),
                    auth: false,
                },
            ),
            (
                Kind::Nginx,
                Target {
                    processes: vec![&nginx, &upstream],
                    url: format!("http://{nginx_addr}{API_PATH}"),
                    auth: false,
                },
            ),
            (
                Kind::Gateway,
                Target {
                    processes: vec![&gateway, &upstream],
                    url: format!("http://{gateway_addr}{API_PATH}"),
                    auth: true,
                },
            ),
        ];
        self.in_rounds(workers, &targets, &[(Kind::Gateway, Kind::Nginx)])
    }

    /// Measures `targets`, all running at once: each checked and warmed up, then [`ROUNDS`]
    /// rounds in which each is measured for a third of `--duration`, in an order that rotates.
    /// Each one's row is its median round by req/s, with CPU per request over all its rounds
    /// (so the added CPU of one against another comes from the same minutes); for each pair in
    /// `compared`, the report keeps the rounds' req/s ratios, each from two runs seconds apart,
    /// and the table shows their median.
    fn in_rounds(
        &mut self,
        workers: usize,
        targets: &[(Kind, Target<'_>)],
        compared: &[(Kind, Kind)],
    ) -> Result<(), Error> {
        for (kind, target) in targets {
            self.check(target)?;
            self.warm_up(&format!("{kind:?}, {workers} worker(s)"), target)?;
        }
        let warm = self.warm_file.clone();
        let slice = Duration::from_secs((self.cli.duration / ROUNDS as u64).max(1));
        let mut rounds: Vec<Vec<Row>> = vec![Vec::new(); targets.len()];
        for round in 0..ROUNDS {
            for turn in 0..targets.len() {
                let index = (round + turn) % targets.len();
                let (kind, target) = &targets[index];
                let row = self.sample(*kind, workers, target, &warm, slice, false)?;
                rounds[index].push(row);
            }
        }
        let position = |kind: Kind| targets.iter().position(|(k, _)| *k == kind);
        for &(kind, other) in compared {
            if let (Some(a), Some(b)) = (position(kind), position(other)) {
                let ratios = rounds[a].iter().zip(&rounds[b]).map(|(x, y)| x.rps / y.rps).collect();
                self.report.round_ratios.push(RoundRatios { kind, other, workers, ratios });
            }
        }
        for samples in rounds {
            if let Some(row) = report::median_round(&samples) {
                self.report.rows.push(row);
            }
        }
        Ok(())
    }

    /// Starts the gateway as a reverse proxy (every route `local`) in front of `upstream`, with
    /// `workers` tokio worker threads (`TOKIO_WORKER_THREADS`: the gateway builds a default
    /// multi-thread runtime, which reads it).
    fn start_gateway(&self, workers: usize, upstream: SocketAddr) -> Result<(Managed, SocketAddr), Error> {
        let config = format!(
            r#"# Generated by load-bench.
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[[issuers]]
issuer = "{issuer}"
jwks_uri = "{jwks}"
audiences = ["{audience}"]
algorithms = ["RS256"]
"#,
            issuer = self.issuer.url(),
            jwks = self.issuer.jwks_uri(),
            audience = self.issuer.audience(),
        );
        let path = self.dir.join("gateway.toml");
        std::fs::write(&path, config).map_err(|e| format!("write {}: {e}", path.display()))?;
        let mut command = Command::new(&self.cli.gateway);
        command
            .arg("--config")
            .arg(&path)
            .env("TOKIO_WORKER_THREADS", workers.to_string())
            .env("RUST_LOG", "warn");
        let mut gateway =
            Managed::spawn("tokengate-gateway", command, Stdio::piped(), &self.dir.join("gateway.stderr"))?;
        let addr = process::wait_for_address(&mut gateway, "listening on http://", "proxy listening")?;
        Ok((gateway, addr))
    }
}
