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
//! A lane's connection is taken out for a request and put back when the response has been
//! read to its end; a response dropped before its end (the client went away) closes it, since
//! HTTP/1 cannot abandon a response half read. It ends with the client connection, when it has
//! been idle for [`IDLE_TIMEOUT`], or when the upstream closes it. A request on a kept-alive
//! connection that the upstream closed before the request was written is sent again on a new
//! connection, once (as the pooled client does); one that was written is not, since the
//! upstream may have acted on it. Upstream connections open: at most one per HTTP/1 client
//! connection (so at most `max_connections`), plus the pool's.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
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

type UpstreamConnection = http1::Connection<TokioIo<TcpStream>, Incoming>;

/// The upstream connection of one HTTP/1 client connection, while no request uses it.
#[derive(Default)]
pub struct Lane(Mutex<Option<Idle>>);

impl fmt::Debug for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self.0.lock().unwrap_or_else(PoisonError::into_inner).is_some();
        f.debug_struct("Lane").field("idle_connection", &idle).finish()
    }
}

impl Lane {
    fn take(&self) -> Option<Idle> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn put(&self, connection: Open) {
        let idle = Idle { open: connection, since: Instant::now() };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(idle);
    }
}

/// An open upstream connection: the handle that sends on it, and the connection itself, which
/// does its I/O only while it is polled. Boxed: its state (buffers, parser) is hundreds of
/// bytes, and it moves in and out of the lane and the request's future on every request.
struct Open {
    sender: http1::SendRequest<Incoming>,
    connection: Box<UpstreamConnection>,
}

struct Idle {
    open: Open,
    since: Instant,
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

/// The upstream: where lanes connect, and the pool for HTTP/2 clients.
#[derive(Debug)]
pub struct Upstream {
    authority: Authority,
    connect_timeout: Duration,
    pool: Client<HttpConnector, Incoming>,
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
        Upstream { authority, connect_timeout, pool }
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

        let mut open = match lane.take() {
            Some(idle) if idle.since.elapsed() < IDLE_TIMEOUT => Some(idle.open),
            _ => None,
        };
        loop {
            let reused = open.is_some();
            let mut connection = match open.take() {
                Some(connection) => connection,
                // Boxed: connecting happens once per connection, and its state would
                // otherwise enlarge every request's future.
                None => Box::pin(self.connect()).await?,
            };
            let Open { sender, connection: io } = &mut connection;
            let mut closed = false;
            // A kept-alive connection the upstream has closed shows it here, before anything
            // is written to it.
            if drive(io, &mut closed, sender.ready()).await.is_err() || closed {
                if reused {
                    continue;
                }
                return Err(SendError::Exchange("the new connection closed before the request".into()));
            }
            match drive(io, &mut closed, sender.try_send_request(request)).await {
                Ok(response) => {
                    let driver = (!closed).then_some(connection);
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
async fn drive<F: Future>(connection: &mut UpstreamConnection, closed: &mut bool, future: F) -> F::Output {
    let mut future = pin!(future);
    poll_fn(|cx| {
        if !*closed && ended(connection, cx) {
            *closed = true;
        }
        future.as_mut().poll(cx)
    })
    .await
}

/// Polls `connection` (doing whatever I/O it can); whether it has ended.
fn ended(connection: &mut UpstreamConnection, cx: &mut Context<'_>) -> bool {
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
    /// Gives the connection back if the response has been read to its end.
    fn release_if_done(&mut self) {
        if self.body.is_end_stream()
            && let Some(open) = self.driver.take()
        {
            self.lane.put(open);
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
        let mut frame = Pin::new(&mut this.body).poll_frame(cx);
        if frame.is_pending() {
            if let Some(open) = &mut this.driver
                && ended(&mut open.connection, cx)
            {
                this.driver = None;
            }
            frame = Pin::new(&mut this.body).poll_frame(cx);
        }
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
                if let Some(open) = this.driver.take() {
                    this.lane.put(open);
                }
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
