//! [`EchoUpstream`]: a stand-in for the service behind the gateway, which answers every request
//! with a JSON description of it and records what it received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// One request as the upstream received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Every header in arrival order, names lower-case; non-UTF-8 values are converted lossily.
    pub headers: Vec<(String, String)>,
    /// How many body bytes arrived (the body is read to its end before the answer, so a proxy
    /// in front never sees its upload cut off by an early response).
    pub body_len: usize,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// An upstream HTTP server on `127.0.0.1` that answers every request 200 with
/// `{"method","path","query","headers":{name: value}}` (repeated headers joined with `", "`) and
/// records each request. Cheap to clone; stops accepting when the last clone is dropped.
#[derive(Clone)]
pub struct EchoUpstream {
    inner: Arc<EchoInner>,
}

struct EchoInner {
    addr: SocketAddr,
    recorded: Arc<Mutex<Vec<RecordedRequest>>>,
    server: AbortHandle,
}

impl Drop for EchoInner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for EchoUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoUpstream").field("addr", &self.inner.addr).field("count", &self.count()).finish()
    }
}

impl EchoUpstream {
    /// Binds `127.0.0.1:0` and starts serving.
    ///
    /// # Panics
    /// If binding fails, or outside a tokio runtime.
    pub async fn start() -> EchoUpstream {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(echo).with_state(recorded.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "testkit echo upstream stopped");
            }
        });
        EchoUpstream { inner: Arc::new(EchoInner { addr, recorded, server: server.abort_handle() }) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.recorded).clone()
    }

    /// How many requests were received.
    pub fn count(&self) -> usize {
        lock(&self.inner.recorded).len()
    }
}

/// The largest body the echo upstream reads: 64 MiB, well above what any test uploads.
const MAX_RECORDED_BODY: usize = 64 * 1024 * 1024;

fn lock(recorded: &Mutex<Vec<RecordedRequest>>) -> MutexGuard<'_, Vec<RecordedRequest>> {
    recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn echo(State(recorded): State<Arc<Mutex<Vec<RecordedRequest>>>>, request: Request) -> Response {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    // Read the whole body: answering before it is consumed makes the server close a connection
    // with unread bytes, which resets it under the client's upload.
    let body_len = match axum::body::to_bytes(request.into_body(), MAX_RECORDED_BODY).await {
        Ok(bytes) => bytes.len(),
        Err(_) => return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response(),
    };
    let recorded_request = RecordedRequest { method, path, query, headers, body_len };

    let mut header_map = Map::new();
    for (name, value) in &recorded_request.headers {
        match header_map.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                header_map.insert(name.clone(), json!(value));
            }
        }
    }
    let body = json!({
        "method": recorded_request.method,
        "path": recorded_request.path,
        "query": recorded_request.query,
        "headers": header_map,
        "body_len": recorded_request.body_len,
    });
    lock(&recorded).push(recorded_request);
    axum::Json(body).into_response()
}
