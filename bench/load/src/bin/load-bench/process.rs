//! The processes the driver starts (servers, nginx, wrk): started with their output in files,
//! killed and reaped when their handle is dropped — on success, on an error (`?`) and on a
//! panic — and, through a registry of live pids, on SIGINT/SIGTERM too. Also their CPU time,
//! read from `/proc/<pid>/stat`.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Error;

/// How long a server may take to print its address (or, for nginx, to accept a connection):
/// generous, the machine is shared with other builds.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long nginx gets to stop its workers after SIGTERM before everything gets SIGKILL.
const NGINX_STOP_GRACE: Duration = Duration::from_secs(5);

/// How often a wait polls a process or a port.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Every process the driver started and has not reaped yet, so a signal handler can kill them.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Sends `signal` (`TERM`, `KILL`) to one process by its id, through kill(1): the standard
/// library has no way to send anything but SIGKILL, and this crate has no `unsafe`.
fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGKILLs every live process and its children (nginx workers). For the signal handler.
pub fn kill_all_live() {
    let pids = LIVE.lock().map(|live| live.clone()).unwrap_or_default();
    for pid in pids {
        for child in children_of(pid) {
            send_signal(child, "KILL");
        }
        send_signal(pid, "KILL");
    }
}

/// A process started by the driver. Dropping it kills it (nginx: SIGTERM, then SIGKILL for
/// whatever is left) and waits for it.
#[derive(Debug)]
pub struct Managed {
    name: String,
    child: Option<Child>,
    stderr_log: PathBuf,
    /// nginx: stop the master with SIGTERM so it takes its workers down.
    graceful: bool,
}

impl Managed {
    /// Starts `command` with stdin closed, stdout as given and stderr into `stderr_log`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        stdout: Stdio,
        stderr_log: &Path,
    ) -> Result<Managed, Error> {
        let stderr = File::create(stderr_log).map_err(|e| format!("create {}: {e}", stderr_log.display()))?;
        let mut live = LIVE.lock().map_err(|_| "the process registry is poisoned")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", command.get_program()))?;
        live.push(child.id());
        drop(live);
        Ok(Managed {
            name: name.to_owned(),
            child: Some(child),
            stderr_log: stderr_log.to_owned(),
            graceful: false,
        })
    }

    /// Stop with SIGTERM first (see [`Managed`]).
    pub fn graceful(mut self) -> Self {
        self.graceful = true;
        self
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The process name given at spawn, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's stdout pipe, if it was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|child| child.stdout.take())
    }

    /// `Err` with its exit status and the end of its stderr if it has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        let status = match self.child.as_mut() {
            Some(child) => child.try_wait().map_err(|e| format!("{}: {e}", self.name))?,
            None => None,
        };
        match status {
            None => Ok(()),
            Some(status) => Err(format!("{} exited ({status}); {}", self.name, self.stderr_tail()).into()),
        }
    }

    /// The last lines of its stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        /// Enough to show the error, not a whole log.
        const TAIL_LINES: usize = 15;
        match std::fs::read_to_string(&self.stderr_log) {
            Ok(text) if !text.trim().is_empty() => {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
                format!("its stderr ({}) ends with:\n{tail}", self.stderr_log.display())
            }
            _ => format!("its stderr ({}) is empty", self.stderr_log.display()),
        }
    }

    /// Waits until it exits, for at most `timeout`; kills it past that.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, Error> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().ok_or("already reaped")?;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| format!("{}: {e}", self.name))? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not finish within {timeout:?}; killed", self.name).into());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id();
        if matches!(child.try_wait(), Ok(None)) {
            let workers = children_of(pid);
            if self.graceful {
                send_signal(pid, "TERM");
                let deadline = Instant::now() + NGINX_STOP_GRACE;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(POLL_INTERVAL);
                }
            }
            let _ = child.kill();
            for worker in workers {
                if is_alive(worker) {
                    send_signal(worker, "KILL");
                }
            }
        }
        let _ = child.wait();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|&p| p != pid);
        }
    }
}

/// Reads the child's stdout on a thread of its own (kept draining, so the child never blocks on
/// a full pipe) until a line contains `marker`; returns the `host:port` that follows the marker.
pub fn wait_for_address(process: &mut Managed, marker: &str, line_filter: &str) -> Result<SocketAddr, Error> {
    let stdout = process.take_stdout().ok_or("stdout is not piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The receiver goes away once the address is found; keep draining regardless.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        process.check_running()?;
        match rx.recv_timeout(POLL_INTERVAL * 5) {
            Ok(line) => {
                if !line.contains(line_filter) {
                    continue;
                }
                if let Some((_, rest)) = line.split_once(marker) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    return addr.parse().map_err(|e| {
                        format!("{} printed a bad address {addr:?}: {e}", process.name()).into()
                    });
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                process.wait_exit(Duration::from_secs(1))?;
                return Err(format!(
                    "{} closed stdout without an address; {}",
                    process.name(),
                    process.stderr_tail()
                )
                .into());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} printed no address within {STARTUP_TIMEOUT:?}; {}",
                process.name(),
                process.stderr_tail()
            )
            .into());
        }
    }
}

/// Waits until `addr` accepts TCP connections (for nginx, which prints nothing).
pub fn wait_for_port(process: &mut Managed, addr: SocketAddr) -> Result<(), Error> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        process.check_running()?;
        if TcpStream::connect_timeout(&addr, POLL_INTERVAL * 5).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} does not accept connections on {addr}; {}",
                process.name(),
                process.stderr_tail()
            )
            .into());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 nearly always).
pub fn clock_ticks_per_second() -> Result<u64, Error> {
    let output =
        Command::new("getconf").arg("CLK_TCK").output().map_err(|e| format!("getconf CLK_TCK: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse::<u64>() {
        Ok(ticks) if output.status.success() && ticks > 0 => Ok(ticks),
        _ => Err(format!("getconf CLK_TCK printed {text:?}").into()),
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may contain spaces and
/// parentheses, so split at the last `)`): index 0 is field 3 (`state`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Index (in [`stat_fields`]) of `ppid`, field 4 in proc(5).
const STAT_PPID: usize = 1;
/// Index of `utime`, field 14 in proc(5): user time of all the process's threads, in ticks.
const STAT_UTIME: usize = 11;
/// Index of `stime`, field 15: system time, in ticks.
const STAT_STIME: usize = 12;

fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The direct children of `pid` (nginx's workers), found by scanning `/proc`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            stat_fields(candidate).and_then(|fields| fields.get(STAT_PPID)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// utime + stime of `pid` and its direct children, in ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, Error> {
    let own = |pid: u32| -> Option<u64> {
        let fields = stat_fields(pid)?;
        Some(fields.get(STAT_UTIME)?.parse::<u64>().ok()? + fields.get(STAT_STIME)?.parse::<u64>().ok()?)
    };
    let mut total =
        own(pid).ok_or_else(|| format!("cannot read /proc/{pid}/stat: has the process exited?"))?;
    for child in children_of(pid) {
        total += own(child).unwrap_or(0);
    }
    Ok(total)
}

/// A directory removed (with its contents) when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/<prefix>-<pid>`.
    pub fn new(prefix: &str) -> Result<TempDir, Error> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
