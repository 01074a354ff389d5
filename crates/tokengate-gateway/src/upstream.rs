//! Connections to the upstream: each HTTP/1 client connection gets an upstream connection of
//! its own (its [`Lane`]), driven by the task that serves the client connection; HTTP/2
//! clients, whose requests run concurrently, share a pool (hyper-util's pooled client).
//!
//! Why lanes: over the pooled client a request crosses tasks twice — from the task serving the
//! client to the pooled connection's own task and back, through a channel each way — and goes
//! through the pool's lock and map. An HTTP/1 client sends one request at a time, so one
//! upstream connection per client connection is enough, and the client's task can drive it
//! itself: no lock, no hand-off. nginx's workers work the same way, one thread for both sides.
//!
//! The task polls what waits on a lane's connection — the request's response, the response
//! body — with a waker that does nothing, and the connection with its own: only the
//! connection moves them, and the task polls them right after it, so the hand-overs between
//! them (a request queued, a response delivered) do not wake the task for another poll.
//!
//! A lane's connection is taken out for a request and put back when the response has been
//! read to its end, provided the request body was sent to its end too and the connection is
//! still open; a response dropped before its end (the client went away) closes it, since
//! HTTP/1 cannot abandon a response half read. When the response head arrives before the
//! request body has been sent (an upstream that answers an upload early, or streams both
//! ways), the rest of that exchange is driven by a task of its own, as the pool would, and the
//! connection is not reused: the client's task polls the upstream only while it writes the
//! response, and must not be what the rest of the request body waits for.
//!
//! When its client connection ends, a lane's idle connection goes to a small list shared by
//! all lanes ([`SHARED_IDLE`] at most), where a new client connection's lane looks first: a
//! stream of short client connections (HTTP/1.0, `Connection: close`) reuses upstream
//! connections instead of opening, and leaving in TIME_WAIT, one each. Idle connections older
//! than [`IDLE_TIMEOUT`] are closed when found. A request on a kept-alive connection that the
//! upstream closed before the request was written is sent again on a new connection, once (as
//! the pooled client does); one that was written is not, since the upstream may have acted on
//! it. Upstream connections open: at most one per HTTP/1 client connection (so at most
//! `max_connections`), plus the shared idle ones, plus the pool's.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::http_util::{Body, BoxError};

/// How long an idle upstream connection is kept, in a lane or the pool: 60 s, under the usual
/// 75 s of upstream keep-alive timeouts so the upstream is not the one closing mid-request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle upstream connections kept for lanes of new client connections, at most.
pub const SHARED_IDLE: usize = 64;

type UpstreamConnection = http1::Connection<TokioIo<TcpStream>, RequestBody>;

/// Idle connections left by lanes whose client connection ended, newest last.
type SharedIdle = Mutex<Vec<Idle>>;

/// The upstream connection of one HTTP/1 client connection, while no request uses it.
pub struct Lane {
    idle: Mutex<Option<Idle>>,
    shared: Arc<SharedIdle>,
}

impl fmt::Debug for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        f.debug_struct("Lane").field("idle_connection", &idle).finish()
    }
}

impl Lane {
    /// Its own idle connection, else the newest shared one; either only if idle for less
    /// than [`IDLE_TIMEOUT`] (older ones are dropped, which closes them).
    fn take(&self) -> Option<Open> {
        let own = self.idle.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(idle) = own.filter(Idle::fresh) {
            return Some(idle.open);
        }
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.retain(Idle::fresh);
        shared.pop().map(|idle| idle.open)
    }

    fn put(&self, connection: Open) {
        let idle = Idle { open: connection, since: Instant::now() };
        *self.idle.lock().unwrap_or_else(PoisonError::into_inner) = Some(idle);
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        let Some(idle) = self.idle.get_mut().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.retain(Idle::fresh);
        if idle.fresh() && shared.len() < SHARED_IDLE {
            shared.push(idle);
        }
    }
}

/// An open upstream connection: the handle that sends on it, and the connection itself, which
/// does its I/O only while it is polled. Boxed: its state (buffers, parser) is hundreds of
/// bytes, and it moves in and out of the lane and the request's future on every request.
struct Open {
    sender: http1::SendRequest<RequestBody>,
    connection: Box<UpstreamConnection>,
}

impl Open {
    /// Whether it can take another request: polled once (without a waker: nothing waits on
    /// an idle connection) to see a close the upstream announced or has done.
    fn reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        !ended(&mut self.connection, &mut cx) && !self.sender.is_closed()
    }
}

struct Idle {
    open: Open,
    since: Instant,
}

impl Idle {
    fn fresh(&self) -> bool {
        self.since.elapsed() < IDLE_TIMEOUT
    }
}

/// A request body on its way to the upstream, which says when it has been sent to its end.
struct RequestBody {
    body: Incoming,
    sent: Arc<AtomicBool>,
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.body.is_end_stream() {
            this.sent.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        let end = self.body.is_end_stream();
        if end {
            self.sent.store(true, Ordering::Release);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Why a request did not get a response from the upstream.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened.
    Connect(BoxError),
    /// The connection failed while sending the request or reading the response head.
    Exchange(BoxError),
}

impl SendError {
    /// Whether the upstream could not be reached at all.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, error): (&str, &dyn std::error::Error) = match self {
            SendError::Connect(error) => ("connecting", error.as_ref()),
            SendError::Exchange(error) => ("exchanging the request", error.as_ref()),
        };
        write!(f, "{what}: {error}")?;
        let mut source = error.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl std::error::Error for SendError {}

/// The upstream: where lanes connect, the idle connections they share, and the pool for
/// HTTP/2 clients.
pub struct Upstream {
    authority: Authority,
    connect_timeout: Duration,
    pool: Client<HttpConnector, Incoming>,
    shared: Arc<SharedIdle>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Upstream")
            .field("authority", &self.authority)
            .field("connect_timeout", &self.connect_timeout)
            .field("shared_idle", &shared)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The upstream at `authority` (`host:port`, plain HTTP/1.1).
    pub fn new(authority: Authority, connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Upstream { authority, connect_timeout, pool, shared: Arc::default() }
    }

    /// A lane for a new HTTP/1 client connection.
    pub fn lane(&self) -> Lane {
        Lane { idle: Mutex::default(), shared: Arc::clone(&self.shared) }
    }

    /// Sends `request` — its URI in origin form (`/path?query`), its `Host` header set — on
    /// `lane`'s connection (opening one if it has none), or through the pool without a lane,
    /// and returns the response head with its body streaming.
    pub async fn send(
        &self,
        lane: Option<&Arc<Lane>>,
        mut request: Request<Incoming>,
    ) -> Result<Response<Body>, SendError> {
        let Some(lane) = lane else {
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(self.authority.clone());
            parts.path_and_query.get_or_insert_with(|| PathAndQuery::from_static("/"));
            *request.uri_mut() = Uri::from_parts(parts).map_err(|e| SendError::Exchange(e.into()))?;
            let response = self.pool.request(request).await.map_err(|error| {
                if error.is_connect() {
                    SendError::Connect(error.into())
                } else {
                    SendError::Exchange(error.into())
                }
            })?;
            return Ok(response.map(|body| body.map_err(Into::into).boxed_unsync()));
        };

        let sent = Arc::new(AtomicBool::new(false));
        let mut request = request.map(|body| RequestBody { body, sent: Arc::clone(&sent) });
        let mut open = lane.take();
        loop {
            let reused = open.is_some();
            let mut connection = match open.take() {
                Some(connection) => connection,
                // Boxed: connecting happens once per connection, and its state would
                // otherwise enlarge every request's future.
                None => Box::pin(self.connect()).await?,
            };
            let Open { sender, connection: io } = &mut connection;
            // A kept-alive connection the upstream has closed shows it here, before anything
            // is written to it.
            let mut closed = ended(io, &mut Context::from_waker(Waker::noop()));
            if !closed && drive(io, &mut closed, sender.ready()).await.is_err() {
                closed = true;
            }
            if closed {
                if reused {
                    continue;
                }
                return Err(SendError::Exchange("the new connection closed before the request".into()));
            }
            match drive(io, &mut closed, sender.try_send_request(request)).await {
                Ok(response) => {
                    let driver = if closed {
                        None
                    } else if sent.load(Ordering::Acquire) {
                        Some(connection)
                    } else {
                        // The request body is still on its way: it must not wait for the
                        // client's task to poll the response. The exchange finishes in a
                        // task of its own; without its sender the connection then ends.
                        let Open { sender, connection } = connection;
                        drop(sender);
                        tokio::spawn(async move {
                            if let Err(error) = connection.await {
                                tracing::debug!(%error, "upstream connection ended with an error");
                            }
                        });
                        None
                    };
                    let lane = Arc::clone(lane);
                    return Ok(response.map(|body| LaneBody { body, driver, lane }.boxed_unsync()));
                }
                Err(mut error) => match error.take_message() {
                    // Not written: nothing reached the upstream, so sending it again is safe.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Exchange(error.into_error().into())),
                },
            }
        }
    }

    async fn connect(&self) -> Result<Open, SendError> {
        let address = host_and_port(&self.authority);
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(SendError::Connect(error.into())),
            Err(_) => return Err(SendError::Connect("timed out".into())),
        };
        stream.set_nodelay(true).map_err(|e| SendError::Connect(e.into()))?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|e| SendError::Connect(e.into()))?;
        Ok(Open { sender, connection: Box::new(connection) })
    }
}

/// Where to connect for `authority`: its host (an IPv6 literal without its brackets) and its
/// port, 80 when it names none (as the pool's connector does).
fn host_and_port(authority: &Authority) -> (&str, u16) {
    let host = authority.host();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (host, authority.port_u16().unwrap_or(80))
}

/// Polls `future` to its end, polling `connection` alongside so its I/O happens; `closed`
/// turns true once the connection has ended (the future then ends too, with an error unless
/// the connection ended after answering).
///
/// `future` (a request handed to the connection, its response) is moved only by the
/// connection, which this task polls itself: so while the connection is open it is polled
/// with a waker that does nothing, and only the connection gets the task's. Each hand-over
/// between the two — the request queued, the response delivered — would otherwise wake this
/// task, which hyper then polls once more from the top for nothing: ≈ 1.7 polls a request
/// more than the two an exchange needs (the request arrives; the response does).
///
/// `future` runs outside tokio's cooperative budget ([`tokio::task::unconstrained`]): the
/// response's channel is budgeted, and once the task's budget is spent it answers "not yet"
/// and asks for a wake — of the waker it was given, here the one that does nothing. A response
/// that arrived in the poll that spent the budget would then wait for nothing to wake it.
/// Waiting on one channel is no work worth yielding for; the connection's I/O, polled with the
/// task's waker, stays budgeted.
async fn drive<C, F>(connection: &mut C, closed: &mut bool, future: F) -> F::Output
where
    C: Future<Output = hyper::Result<()>> + Unpin,
    F: Future,
{
    let mut future = pin!(tokio::task::unconstrained(future));
    poll_fn(|cx| {
        let mut quiet = Context::from_waker(Waker::noop());
        if !*closed {
            if let Poll::Ready(output) = future.as_mut().poll(&mut quiet) {
                return Poll::Ready(output);
            }
            if !ended(connection, cx) {
                // The connection is waiting with this task's waker; whatever it does next
                // that moves `future` happens while it is polled, and `future` is polled
                // after it.
                return future.as_mut().poll(&mut quiet);
            }
            *closed = true;
        }
        // The connection has ended, and with it whatever `future` waited on.
        future.as_mut().poll(cx)
    })
    .await
}

/// Polls `connection` (doing whatever I/O it can); whether it has ended.
fn ended<C: Future<Output = hyper::Result<()>> + Unpin>(connection: &mut C, cx: &mut Context<'_>) -> bool {
    match Pin::new(connection).poll(cx) {
        Poll::Ready(Ok(())) => true,
        Poll::Ready(Err(error)) => {
            tracing::debug!(%error, "upstream connection ended with an error");
            true
        }
        Poll::Pending => false,
    }
}

/// A response body from a lane's connection: polling it drives the connection, and once it
/// has been read to its end the connection goes back to the lane.
struct LaneBody {
    body: Incoming,
    /// `None` once the connection has ended or gone back.
    driver: Option<Open>,
    lane: Arc<Lane>,
}

impl LaneBody {
    /// Gives the connection back to the lane, if it can take another request.
    fn release(&mut self) {
        if let Some(mut open) = self.driver.take()
            && open.reusable()
        {
            self.lane.put(open);
        }
    }

    /// Gives the connection back if the response has been read to its end.
    fn release_if_done(&mut self) {
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

impl HttpBody for LaneBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = match &mut this.driver {
            // The body is fed by the connection this task drives: as in `drive`, the body
            // is polled with a waker that does nothing and the connection with the task's.
            Some(open) => {
                let mut quiet = Context::from_waker(Waker::noop());
                match Pin::new(&mut this.body).poll_frame(&mut quiet) {
                    Poll::Pending if ended(&mut open.connection, cx) => {
                        this.driver = None;
                        Pin::new(&mut this.body).poll_frame(cx)
                    }
                    Poll::Pending => Pin::new(&mut this.body).poll_frame(&mut quiet),
                    ready => ready,
                }
            }
            // Driven elsewhere (its own task), or ended: the body's own waker.
            None => Pin::new(&mut this.body).poll_frame(cx),
        };
        match frame {
            Poll::Ready(Some(Ok(frame))) => {
                this.release_if_done();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.driver = None;
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                // The end of the body, however it was framed: the connection is free.
                this.release();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for LaneBody {
    fn drop(&mut self) {
        // A body the server did not poll to its end because its length said it was complete
        // (or it was empty) is done; one dropped half read takes its connection with it.
        self.release_if_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// One exchange through [`drive`] in a task of its own, which spends `spend` units of its
    /// cooperative budget at the start of every poll after the first (on other work, as the
    /// task serving a client does); the response head's status.
    async fn exchange_with_budget_spent(spend: usize) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(stream.read_u8().await.unwrap());
            }
            // The head and a first chunk, the body not ended: hyper hands over the response,
            // fills the body's one slot and then waits for it to be taken.
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                .await
                .unwrap();
            stream
        });
        let exchange = tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, mut connection) =
                http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await.unwrap();
            let mut closed = ended(&mut connection, &mut Context::from_waker(Waker::noop()));
            drive(&mut connection, &mut closed, sender.ready()).await.unwrap();
            let request = Request::builder().uri("/").header("host", "upstream").body(Empty::new()).unwrap();
            let mut response = pin!(drive(&mut connection, &mut closed, sender.try_send_request(request)));
            let (work, mut queued) = tokio::sync::mpsc::unbounded_channel::<()>();
            let mut polls = 0;
            let response = poll_fn(|cx| {
                polls += 1;
                if polls > 1 {
                    for _ in 0..spend {
                        work.send(()).unwrap();
                        // Ready, and so one unit of the budget spent.
                        assert!(queued.poll_recv(cx).is_ready());
                    }
                }
                response.as_mut().poll(cx)
            })
            .await;
            response.unwrap().status().as_u16()
        });
        // Nothing else wakes the exchange's task: a response it was not woken for never comes.
        let status = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .unwrap_or_else(|_| panic!("the response never came with {spend} units of budget spent"));
        drop(upstream);
        status.unwrap()
    }

    /// tokio gives a task 128 units a poll; the socket read that brings the response takes
    /// one. Whichever unit is the last, the response that arrives with it is delivered. (At
    /// 128 spent every poll, nothing budgeted could ever run: no exchange is tested there.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_response_that_arrives_as_the_task_budget_runs_out_is_delivered() {
        for spend in 110..128 {
            assert_eq!(exchange_with_budget_spent(spend).await, 200);
        }
    }

    #[test]
    fn connects_to_the_authoritys_host_and_port_80_by_default() {
        let of = |text: &str| {
            let authority: Authority = text.parse().unwrap();
            let (host, port) = host_and_port(&authority);
            (host.to_owned(), port)
        };
        assert_eq!(of("backend:8080"), ("backend".to_owned(), 8080));
        assert_eq!(of("backend"), ("backend".to_owned(), 80));
        assert_eq!(of("127.0.0.1:9"), ("127.0.0.1".to_owned(), 9));
        assert_eq!(of("[::1]:8080"), ("::1".to_owned(), 8080));
        assert_eq!(of("[::1]"), ("::1".to_owned(), 80));
    }
}
