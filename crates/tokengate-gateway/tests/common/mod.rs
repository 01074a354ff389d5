//! Helpers for driving the built `tokengate-gateway` binary as a user would: a temporary
//! directory for its configuration, the child process (killed on drop), the addresses it
//! prints, readiness through `/readyz`.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokengate_testkit::Issuer;
use tokio::sync::mpsc;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tokengate-gateway");

/// Bound on every wait for the gateway to say or do something.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "tokengate-gw-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `[[issuers]]` entry for the testkit issuer.
pub fn issuer_toml(issuer: &Issuer) -> String {
    format!(
        "[[issuers]]\nissuer = \"{}\"\njwks_uri = \"{}\"\naudiences = [\"{}\"]\nalgorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\n",
        issuer.url(),
        issuer.jwks_uri(),
        issuer.audience()
    )
}

/// An `[introspection]` table for the testkit issuer (secret inline), asking every time.
pub fn introspection_toml(issuer: &Issuer) -> String {
    format!(
        "[introspection]\nendpoint = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\ncache_ttl_secs = 0\n",
        issuer.introspection_endpoint(),
        issuer.introspection_client_id(),
        issuer.introspection_client_secret()
    )
}

/// The gateway process, killed on drop.
pub struct Gateway {
    child: Child,
    /// The proxy or forward-auth address.
    pub listen: SocketAddr,
    /// The admin address.
    pub admin: Option<SocketAddr>,
    _dir: TempDir,
}

impl Gateway {
    /// Writes `config` to a temp dir, starts the binary with it and `env`, and waits until it
    /// prints its addresses and `/readyz` answers 200.
    pub async fn start(config: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = TempDir::new("run");
        let path = dir.write("gateway.toml", config);
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
        let mut command = Command::new(BIN);
        command.arg("--config").arg(&path).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn tokengate-gateway");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, mut rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut gateway = Gateway { child, listen: "0.0.0.0:0".parse().unwrap(), admin: None, _dir: dir };
        let has_admin = config.contains("[admin]");
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        let mut listen = None;
        while listen.is_none() || (has_admin && gateway.admin.is_none()) {
            let line = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => line,
                _ => panic!("the gateway did not print its addresses; stderr:\n{}", gateway.stderr()),
            };
            if let Some(addr) = address_in(&line) {
                if line.starts_with("admin ") {
                    gateway.admin = Some(addr);
                } else {
                    listen = Some(addr);
                }
            }
        }
        gateway.listen = listen.unwrap();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        if gateway.admin.is_some() {
            gateway.wait_ready().await;
        }
        gateway
    }

    /// Polls `/readyz` until 200, a bounded number of times, each poll a real request.
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", self.admin_url());
        // Bounded; a replica with a shared store is ready only after its first full load,
        // which under a loaded CI machine can take more than a few polls.
        for _ in 0..2_000 {
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("/readyz never answered 200; stderr:\n{}", self.stderr());
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin.expect("an admin listener"))
    }

    /// What the gateway wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (through kill(1): no libc binding in the tests).
    pub fn terminate(&self) {
        let status =
            Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "the gateway did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http://127.0.0.1:1234` in a "… listening on http://127.0.0.1:1234 …" line.
fn address_in(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("listening on http://")?.1;
    rest.split_whitespace().next()?.parse().ok()
}

/// Runs the binary to completion with `args` (no network needed) and returns its status and
/// its output (stdout + stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("run tokengate-gateway");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private `redis-server` on a free loopback port, with no persistence, in its own temp dir;
/// killed on drop. [`RedisServer::restart`] brings it back on the same port, empty.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts `redis-server` (installed by `.ci/run`) and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        let mut server = RedisServer { child: None, port: free_port(), dir: TempDir::new("redis") };
        server.spawn().await;
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("redis log file");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with .ci/run or `apt-get install redis-server`")
            });
        self.child = Some(child);
        // Bounded: each attempt is a real connection; the server needs milliseconds.
        for _ in 0..500 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not answer PING; log:\n{}", self.log());
    }

    /// Whether the server answers `PING` now.
    pub async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut buf)).await,
            Ok(Ok(_)) if &buf == b"+PONG\r\n"
        )
    }

    /// Sends one command (as a RESP array of bulk strings) and returns the first line of the
    /// reply, e.g. `:1` or `+OK`.
    pub async fn command(&self, args: &[&[u8]]) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut stream =
            tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.expect("connect to redis");
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).await.expect("write to redis");
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stream);
        tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
            .await
            .expect("redis answers")
            .expect("read from redis");
        line.trim_end().to_owned()
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with no data (nothing was persisted).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it holds, a bounded number of times (each poll real I/O), and says
/// `what` did not happen otherwise.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1_000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Sends `request` on a fresh connection and reads the response head and what follows until
/// the body's declared length (or the connection closes).
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n =
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
