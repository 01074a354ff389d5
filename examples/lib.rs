//! Plumbing shared by tokengate's runnable examples: picking a port, printing `curl` commands,
//! forging a tampered token, waiting for ctrl-c.
//!
//! Nothing here is about tokengate itself — each example builds its `TokenGateLayer` in the
//! open, so it can be read (and copied) on its own. Run them from the repository root:
//!
//! ```text
//! cargo run --example axum_app
//! cargo run --example hyper_service
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::net::TcpListener;

/// The environment variable that overrides an example's default port.
pub const PORT_VAR: &str = "PORT";

/// Lifetime of the tokens the examples mint: one hour, long enough to paste every command.
pub const TOKEN_TTL_SECS: i64 = 3600;

/// Binds `127.0.0.1` on the port in `$PORT`, or on `default_port`.
///
/// When `$PORT` is unset and `default_port` is taken (another example is running, say), falls
/// back to a port the OS picks, so the example still starts; it prints its real address anyway.
/// A `$PORT` the user chose is honoured or reported, never silently replaced.
pub async fn bind(default_port: u16) -> io::Result<TcpListener> {
    match std::env::var(PORT_VAR) {
        Ok(value) => {
            let port: u16 = value.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{PORT_VAR}={value:?} is not a port number (0-65535)"),
                )
            })?;
            TcpListener::bind(("127.0.0.1", port)).await.map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot listen on 127.0.0.1:{port} ({PORT_VAR}): {error}"),
                )
            })
        }
        Err(_) => match TcpListener::bind(("127.0.0.1", default_port)).await {
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
                eprintln!("port {default_port} is taken; listening on a free port instead");
                TcpListener::bind(("127.0.0.1", 0)).await
            }
            other => other,
        },
    }
}

/// `http://ADDR`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// One ready-to-paste command and what it shows, printed as a pair of lines.
#[derive(Debug, Clone)]
pub struct Try {
    /// One line: what the command shows and the answer to expect.
    pub explanation: String,
    /// The shell command, exactly as it should be pasted.
    pub command: String,
}

impl Try {
    /// `curl -i URL`, optionally with `Authorization: Bearer TOKEN`.
    ///
    /// Tokens are base64url segments joined by dots, so they need no shell quoting; the header
    /// is single-quoted for its space.
    pub fn curl(explanation: impl Into<String>, url: &str, token: Option<&str>) -> Self {
        let command = match token {
            Some(token) => format!("curl -i -H 'Authorization: Bearer {token}' {url}"),
            None => format!("curl -i {url}"),
        };
        Self { explanation: explanation.into(), command }
    }
}

/// Prints the address and the commands to try, each after a `#` line explaining it.
pub fn print_tries(name: &str, addr: SocketAddr, tries: &[Try]) {
    println!();
    println!("{name} listening on {}", base_url(addr));
    println!("Try these (tokens are valid for {} minutes):", TOKEN_TTL_SECS / 60);
    for t in tries {
        println!();
        println!("# {}", t.explanation);
        println!("{}", t.command);
    }
    println!();
    println!("Press ctrl-c to stop.");
}

/// The token with its payload rewritten to add `admin` to its scopes, and its original
/// signature kept: what an attacker who edits a token gets. The signature no longer matches.
///
/// # Panics
/// If `token` is not a compact JWS with a JSON-object payload (the examples mint their own).
pub fn tamper(token: &str) -> String {
    let mut parts = token.splitn(3, '.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("tamper: not a compact JWS");
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("tamper: payload is base64url");
    let mut claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).expect("tamper: payload is a JSON object");
    let scope = claims.get("scope").and_then(|s| s.as_str()).unwrap_or_default();
    let escalated = format!("{scope} admin").trim().to_owned();
    claims.insert("scope".into(), escalated.into());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
    format!("{header}.{payload}.{signature}")
}

/// Resolves when the process receives ctrl-c (SIGINT).
pub async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        // Without a signal handler the example could never stop cleanly; say so and keep serving
        // until killed.
        eprintln!("cannot listen for ctrl-c: {error}");
        std::future::pending::<()>().await;
    }
    eprintln!("ctrl-c received; shutting down");
}

/// The README's code blocks, compiled as doctests so the README cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tamper_adds_admin_and_keeps_header_and_signature() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","scope":"read"}"#);
        let token = format!("aGVhZGVy.{payload}.c2ln");
        let tampered = tamper(&token);
        let parts: Vec<&str> = tampered.split('.').collect();
        assert_eq!(parts[0], "aGVhZGVy");
        assert_eq!(parts[2], "c2ln");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["scope"], "read admin");
        assert_eq!(claims["sub"], "alice");
    }

    #[test]
    fn curl_commands_quote_the_header_only() {
        let t = Try::curl("x", "http://127.0.0.1:1/whoami", Some("a.b.c"));
        assert_eq!(t.command, "curl -i -H 'Authorization: Bearer a.b.c' http://127.0.0.1:1/whoami");
        assert_eq!(Try::curl("x", "http://h/p", None).command, "curl -i http://h/p");
    }
}
