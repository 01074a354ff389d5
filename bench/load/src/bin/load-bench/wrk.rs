//! Running `wrk` as a subprocess with the benchmark's Lua script (wrk/tokens.lua) and reading
//! the one `LOADBENCH` line its `done()` prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::Error;
use crate::process::Managed;

/// The Lua script, embedded so the driver binary is all it needs.
pub const SCRIPT: &str = include_str!("../../../wrk/tokens.lua");

/// wrk's per-request timeout: far above any latency here; a request that slow is an error.
const REQUEST_TIMEOUT_SECS: u64 = 5;

/// How long past its `-d` a wrk run may take before the driver gives up on it.
const OVERRUN: Duration = Duration::from_secs(30);

/// Socket errors tolerated, as a fraction of the requests (connections torn down at the end of
/// a run); above it the run is a harness failure.
const MAX_SOCKET_ERROR_FRACTION: f64 = 0.001;

/// The fixed shape of the load.
#[derive(Debug, Clone)]
pub struct Load {
    /// The wrk binary.
    pub wrk: PathBuf,
    /// `-t`.
    pub threads: u32,
    /// `-c`.
    pub connections: u32,
    /// Where the script and wrk's output go.
    pub dir: PathBuf,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// Wall time of the run.
    pub duration: Duration,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Socket errors (connect, read, write, timeout).
    pub socket_errors: u64,
}

impl WrkResult {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.duration.as_secs_f64()
    }
}

impl Load {
    /// Writes the Lua script into the run's directory; returns its path.
    pub fn install_script(&self) -> Result<PathBuf, Error> {
        let path = self.dir.join("tokens.lua");
        std::fs::write(&path, SCRIPT).map_err(|e| format!("write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// The wrk command line of a run, for the report (token files are named, never tokens).
    pub fn describe(&self) -> String {
        format!(
            "wrk -t{} -c{} -d<SECS>s --latency --timeout {REQUEST_TIMEOUT_SECS}s -s tokens.lua <URL> -- <TOKEN_FILE> cycle|first-pass {}",
            self.threads, self.connections, self.threads
        )
    }

    /// Runs wrk for `duration` against `url` with the tokens of `token_file`; with `first_pass`,
    /// stops once every token was sent once, and the result's duration is that pass's. Fails on any HTTP status >= 400 (the numbers would be
    /// those of refusals), on too many socket errors, and on no request at all.
    pub fn run(
        &self,
        label: &str,
        url: &str,
        token_file: &Path,
        duration: Duration,
        first_pass: bool,
    ) -> Result<WrkResult, Error> {
        let secs = duration.as_secs().max(1);
        let out = self.dir.join("wrk.out");
        let stdout = std::fs::File::create(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
        let mut command = Command::new(&self.wrk);
        command
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{secs}s"))
            .arg("--latency")
            .arg("--timeout")
            .arg(format!("{REQUEST_TIMEOUT_SECS}s"))
            .arg("-s")
            .arg(self.dir.join("tokens.lua"))
            .arg(url)
            .arg("--")
            .arg(token_file)
            .arg(if first_pass { "first-pass" } else { "cycle" })
            .arg(self.threads.to_string());
        let mut wrk = Managed::spawn("wrk", command, Stdio::from(stdout), &self.dir.join("wrk.err"))?;
        let status = wrk.wait_exit(Duration::from_secs(secs) + OVERRUN)?;
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if !status.success() {
            return Err(format!("{label}: wrk failed ({status}): {text}\n{}", wrk.stderr_tail()).into());
        }
        let result =
            parse(&text).ok_or_else(|| format!("{label}: no LOADBENCH line in wrk's output:\n{text}"))?;
        if result.status_errors > 0 {
            return Err(format!(
                "{label}: {} of {} responses had a status >= 400: the server refuses the load, the numbers would be meaningless",
                result.status_errors, result.wrk.requests
            )
            .into());
        }
        if result.wrk.requests == 0 {
            return Err(format!("{label}: wrk completed no request:\n{text}").into());
        }
        if result.wrk.socket_errors as f64 > MAX_SOCKET_ERROR_FRACTION * result.wrk.requests as f64 {
            return Err(format!(
                "{label}: {} socket errors in {} requests:\n{text}",
                result.wrk.socket_errors, result.wrk.requests
            )
            .into());
        }
        Ok(result.wrk)
    }
}

struct Parsed {
    wrk: WrkResult,
    status_errors: u64,
}

/// Reads `LOADBENCH key=value ...` (see wrk/tokens.lua).
fn parse(text: &str) -> Option<Parsed> {
    let line = text.lines().find_map(|line| line.strip_prefix("LOADBENCH "))?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace().find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?.parse().ok()
    };
    // A first pass that ended reports its own span; wrk's duration is the whole -d.
    let duration_us = match field("pass_us")? {
        0 => field("duration_us")?,
        pass_us => pass_us,
    };
    if duration_us == 0 {
        return None;
    }
    Some(Parsed {
        wrk: WrkResult {
            requests: field("requests")?,
            duration: Duration::from_micros(duration_us),
            p50_us: field("p50_us")? as f64,
            p99_us: field("p99_us")? as f64,
            socket_errors: field("connect_errors")?
                + field("read_errors")?
                + field("write_errors")?
                + field("timeouts")?,
        },
        status_errors: field("status_errors")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_done_line() {
        let text = "Running 1s test\nLOADBENCH requests=1200 duration_us=1000000 pass_us=0 status_errors=0 connect_errors=0 read_errors=1 write_errors=0 timeouts=0 p50_us=250 p99_us=900\n";
        let parsed = parse(text).expect("parsed");
        assert_eq!(parsed.wrk.requests, 1200);
        assert_eq!(parsed.wrk.socket_errors, 1);
        assert_eq!(parsed.wrk.p99_us, 900.0);
        assert!((parsed.wrk.rps() - 1200.0).abs() < 1e-9);
    }

    #[test]
    fn refuses_output_without_the_line() {
        assert!(parse("Running 1s test\n").is_none());
        assert!(parse("LOADBENCH requests=1 duration_us=0 pass_us=0").is_none());
    }

    #[test]
    fn a_first_pass_reports_its_own_span() {
        let text = "LOADBENCH requests=500 duration_us=5000000 pass_us=250000 status_errors=0 connect_errors=0 read_errors=0 write_errors=0 timeouts=0 p50_us=250 p99_us=900\n";
        let parsed = parse(text).expect("parsed");
        assert_eq!(parsed.wrk.duration, Duration::from_millis(250));
        assert!((parsed.wrk.rps() - 2000.0).abs() < 1e-9);
    }
}
