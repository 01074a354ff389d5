//! The accept loop every listener shares: hyper 1 over HTTP/1.1 and HTTP/2 (`auto`), limits on
//! what a client may hold open, and graceful shutdown — stop accepting, let the connections in
//! flight finish for up to the grace period, then drop them.
//!
//! What bounds a client that sends slowly or not at all:
//! - before the protocol is known (hyper-util's `auto` builder sniffs for the HTTP/2 preface
//!   with no timer of its own): [`FirstBytes`] fails the connection's reads once
//!   `header_read` has passed;
//! - HTTP/1: hyper's `header_read_timeout`, for the first request head and for each one after
//!   it on a kept-alive connection (so an idle keep-alive connection is closed too);
//! - HTTP/2: a ping every `http2_keep_alive`, which the client must answer within
//!   `header_read`. hyper has no per-request head deadline for HTTP/2; a client that answers
//!   pings but trickles a header block holds its connection until it stops answering;
//! - at most `max_connections` connections per listener. Beyond it a new connection is closed
//!   at once (a client or its load balancer sees the failure and can go elsewhere), rather than
//!   left waiting in the kernel's accept queue where nothing bounds how long it waits.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::http_util::Body;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The HTTP/2 connection preface (RFC 9113 §3.4), which the `auto` builder reads to choose the
/// protocol.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Limits on what a client may send, or hold, before and between requests.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Cap on the request head (HTTP/1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Time a client has to send its first bytes and each HTTP/1 request head, and to answer
    /// an HTTP/2 ping.
    pub header_read_timeout: Duration,
    /// Interval of HTTP/2 pings.
    pub http2_keep_alive: Duration,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
}

/// A shutdown signal: `true` once shutting down.
pub type ShutdownSignal = watch::Receiver<bool>;

/// Open and refused connections of one listener, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    open: AtomicUsize,
    refused: AtomicU64,
}

impl ConnectionCounters {
    /// Connections being served now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed on arrival because `max_connections` were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A slot for one more connection, unless `max` are open.
    fn claim(self: &Arc<Self>, max: usize) -> Option<ConnectionSlot> {
        match self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)) {
            Ok(_) => Some(ConnectionSlot(self.clone())),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// One open connection; frees its slot when dropped.
struct ConnectionSlot(Arc<ConnectionCounters>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `listener` until `shutdown` turns true, then drains for up to `grace`.
/// `new_connection` is called with each client's address and returns what handles that
/// connection's requests, so a connection can hold state of its own (the proxy's upstream
/// connection).
pub async fn serve<M, H, F>(
    name: &'static str,
    listener: TcpListener,
    limits: ServerLimits,
    connections: Arc<ConnectionCounters>,
    mut shutdown: ShutdownSignal,
    grace: Duration,
    new_connection: M,
) where
    M: Fn(SocketAddr) -> H,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive)
        .keep_alive_timeout(limits.header_read_timeout)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    // Whether the last connection was refused: warn once per episode, not once per connection.
    let mut at_capacity = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(listener = name, %error, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                };
                let Some(slot) = connections.claim(limits.max_connections) else {
                    if !at_capacity {
                        tracing::warn!(listener = name, max_connections = limits.max_connections, "at the connection limit; closing new connections");
                    }
                    at_capacity = true;
                    drop(stream);
                    continue;
                };
                at_capacity = false;
                let _ = stream.set_nodelay(true);
                let handler = new_connection(peer);
                let service = service_fn(move |request| {
                    let response = handler(request);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let io = TokioIo::new(FirstBytes::new(stream, limits.header_read_timeout));
                let connection = builder.serve_connection(io, service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(error) = connection.await {
                        tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
                    }
                });
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(listener = name, "all connections closed"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(listener = name, grace_secs = grace.as_secs_f64(), "grace period over; closing the remaining connections");
        }
    }
}

/// A connection whose first bytes must arrive by a deadline.
///
/// Until the bytes read so far either differ from the HTTP/2 preface (HTTP/1, whose own head
/// timer takes over) or complete it (HTTP/2, whose pings take over), a read that would wait past
/// the deadline fails with `TimedOut`, which ends the connection. Afterwards it is the plain
/// stream.
struct FirstBytes<S> {
    inner: S,
    /// `None` once the protocol is known.
    sniffing: Option<Sniffing>,
}

struct Sniffing {
    deadline: Pin<Box<Sleep>>,
    /// How many bytes of the preface have arrived.
    matched: usize,
}

impl<S> FirstBytes<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        let sniffing = Sniffing { deadline: Box::pin(tokio::time::sleep(timeout)), matched: 0 };
        FirstBytes { inner, sniffing: Some(sniffing) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(sniffing) = &mut this.sniffing else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let rest = &H2_PREFACE[sniffing.matched..];
                let n = new.len().min(rest.len());
                // End of stream, a byte that is not the preface's, or the whole preface.
                if n == 0 || new[..n] != rest[..n] || n == rest.len() {
                    this.sniffing = None;
                } else {
                    sniffing.matched += n;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match sniffing.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the header read timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            error => error,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once `signal` turns true (or its sender is gone).
async fn stopped(signal: &mut ShutdownSignal) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across the caller's awaits.
    let _ = signal.wait_for(|&stop| stop).await.map(|_| ());
}

/// Resolves once SIGTERM or ctrl-c (SIGINT) arrives.
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    const FAR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn the_first_bytes_deadline_ends_once_the_protocol_is_known() {
        let mut buf = [0u8; 64];

        let (mut client, server) = duplex(64);
        let mut h2 = FirstBytes::new(server, FAR);
        client.write_all(&H2_PREFACE[..16]).await.unwrap();
        assert_eq!(h2.read(&mut buf).await.unwrap(), 16);
        assert!(h2.sniffing.is_some(), "half a preface says nothing yet");
        client.write_all(&H2_PREFACE[16..]).await.unwrap();
        client.write_all(b"\0\0").await.unwrap();
        let _ = h2.read(&mut buf).await.unwrap();
        assert!(h2.sniffing.is_none());

        let (mut client, server) = duplex(64);
        let mut h1 = FirstBytes::new(server, FAR);
        client.write_all(b"PRI / HTTP/1.1\r\n").await.unwrap();
        let _ = h1.read(&mut buf).await.unwrap();
        assert!(h1.sniffing.is_none(), "not the preface: HTTP/1's own timer takes over");
    }

    #[tokio::test]
    async fn a_silent_connection_fails_at_the_deadline() {
        let (_client, server) = duplex(64);
        let mut silent = FirstBytes::new(server, Duration::ZERO);
        let error = silent.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn connection_slots_are_capped_and_freed() {
        let counters = Arc::new(ConnectionCounters::default());
        let first = counters.claim(1).unwrap();
        assert!(counters.claim(1).is_none());
        assert_eq!((counters.open(), counters.refused()), (1, 1));
        drop(first);
        assert!(counters.claim(1).is_some());
    }
}
