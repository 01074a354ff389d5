//! Starting and stopping the gateway: bind the listeners, serve the proxy or forward-auth
//! endpoint and the admin API, and shut down gracefully on a signal.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokengate::TokenGateLayer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{Admin, Fleet};
use crate::config::{Frontend, ListenerChoice, Settings};
use crate::forward_auth::ForwardAuth;
use crate::http_util::Body;
use crate::metrics::Metrics;
use crate::proxy::{ClientConnection, Proxy, Shared};
use crate::receiver::Receivers;
#[cfg(feature = "redis")]
use crate::revocation_store::RevocationStore;
use crate::server::{self, ServerLimits};

/// Connections the admin listener serves at once: its own cap, so that a flood on the main
/// listener never locks operators out, and small — probes and scrapers need a handful.
const ADMIN_MAX_CONNECTIONS: usize = 128;

/// A running gateway.
pub struct Gateway {
    /// The proxy's or forward-auth endpoint's address.
    pub listen: SocketAddr,
    /// The admin listener's address.
    pub admin: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    #[cfg(feature = "redis")]
    store: Option<RevocationStore>,
}

/// Binds `addr`; with `fallback`, a taken port falls back to a free one (the demo).
pub async fn bind(addr: SocketAddr, fallback: bool) -> io::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Err(e) if fallback && e.kind() == io::ErrorKind::AddrInUse => {
            TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await
        }
        other => other,
    }
}

impl Gateway {
    /// Binds the listeners and starts serving with `layer`'s gate.
    pub async fn start(
        settings: &Settings,
        layer: &TokenGateLayer,
        fallback_ports: bool,
    ) -> io::Result<Gateway> {
        let gate = layer.gate().clone();
        let metrics = Arc::new(Metrics::default());
        let (shutdown, signal) = watch::channel(false);
        let limits = ServerLimits {
            max_header_bytes: settings.max_header_bytes,
            header_read_timeout: settings.timeouts.header_read,
            http2_keep_alive: settings.timeouts.http2_keep_alive,
            max_connections: settings.max_connections,
        };
        let grace = settings.timeouts.shutdown_grace;

        // Fleet-wide revocation: the receivers write into the gate's list, and the shared
        // store (if any) carries every local entry to the other replicas and theirs here.
        let receivers = Arc::new(
            Receivers::build(settings, gate.revocations())
                .await
                .map_err(|e| io::Error::other(format!("receivers: {e}")))?,
        );
        #[cfg(feature = "redis")]
        let store = match &settings.redis {
            Some(redis) => {
                Some(RevocationStore::start(redis, gate.revocations().clone()).map_err(io::Error::other)?)
            }
            None => None,
        };
        #[cfg(feature = "redis")]
        let store_status = store.as_ref().map(|s| s.status().clone());
        #[cfg(not(feature = "redis"))]
        let store_status = None;
        let fleet = Arc::new(Fleet { store: store_status, receivers: receivers.clone() });

        let listener = bind(settings.listen, fallback_ports)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("listen {}: {e}", settings.listen)))?;
        let listen = listener.local_addr()?;
        let admin_listener = match &settings.admin {
            Some(admin) => Some(
                bind(admin.listen, fallback_ports)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("admin.listen {}: {e}", admin.listen)))?,
            ),
            None => None,
        };
        let admin_addr = admin_listener.as_ref().map(TcpListener::local_addr).transpose()?;

        let shared = Shared {
            gate: gate.clone(),
            metrics: metrics.clone(),
            identity: settings.identity.clone(),
            cookies: settings.cookies.clone(),
            forward_authorization: settings.forward_authorization,
        };
        let mut tasks = Vec::new();
        let (name, frontend) = match &settings.frontend {
            Frontend::Proxy { upstream } => (
                "proxy",
                MainHandler::Proxy(Arc::new(Proxy::new(
                    shared,
                    upstream,
                    &settings.timeouts,
                    settings.trusted_proxies.clone(),
                ))),
            ),
            Frontend::ForwardAuth { path_prefix } => (
                "forward_auth",
                MainHandler::ForwardAuth(Arc::new(ForwardAuth::new(shared, path_prefix.clone()))),
            ),
        };
        tasks.push(tokio::spawn(server::serve(
            name,
            listener,
            limits,
            metrics.main_connections.clone(),
            signal.clone(),
            grace,
            move |peer| {
                let receivers = receivers.clone();
                let frontend = frontend.for_connection(peer);
                move |request: Request<Incoming>| -> RequestFuture {
                    // The logout and security-event receivers share the main listener.
                    match receivers.route(ListenerChoice::Main, request.uri().path()) {
                        Some(receiver) => Box::pin(receiver.handle(request)),
                        None => frontend.handle(request),
                    }
                }
            },
        )));
        if let (Some(listener), Some(admin)) = (admin_listener, &settings.admin) {
            let counters = metrics.admin_connections.clone();
            let admin = Arc::new(Admin::new(gate, metrics, admin.token.clone(), fleet));
            tasks.push(tokio::spawn(server::serve(
                "admin",
                listener,
                ServerLimits { max_connections: ADMIN_MAX_CONNECTIONS, ..limits },
                counters,
                signal,
                grace,
                move |peer| {
                    let admin = admin.clone();
                    move |request| admin.clone().handle(request, peer)
                },
            )));
        }
        #[cfg(not(feature = "redis"))]
        let _ = fleet;
        Ok(Gateway {
            listen,
            admin: admin_addr,
            shutdown,
            tasks,
            #[cfg(feature = "redis")]
            store,
        })
    }

    /// Serves until SIGTERM or ctrl-c, then stops accepting and drains for the grace period.
    pub async fn run_until_signal(self) {
        server::termination().await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        self.shutdown().await;
    }

    /// Stops accepting and waits for the drain (bounded by the grace period).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        #[cfg(feature = "redis")]
        if let Some(store) = self.store {
            store.shutdown().await;
        }
    }
}

/// What the main listener serves besides the receivers: one of the two front ends.
#[derive(Clone)]
enum MainHandler {
    Proxy(Arc<Proxy>),
    ForwardAuth(Arc<ForwardAuth>),
}

impl MainHandler {
    /// What serves the requests of one client connection from `peer`.
    fn for_connection(&self, peer: SocketAddr) -> ConnectionHandler {
        match self {
            MainHandler::Proxy(proxy) => {
                ConnectionHandler::Proxy(proxy.clone(), Arc::new(proxy.client(peer)))
            }
            MainHandler::ForwardAuth(endpoint) => ConnectionHandler::ForwardAuth(endpoint.clone(), peer),
        }
    }
}

/// The main listener's handler for one client connection: the proxy with its state for that
/// connection, or the forward-auth endpoint.
#[derive(Clone)]
enum ConnectionHandler {
    Proxy(Arc<Proxy>, Arc<ClientConnection>),
    ForwardAuth(Arc<ForwardAuth>, SocketAddr),
}

/// One request's future on the main listener, boxed where it is made.
///
/// A request's state is kilobytes (the proxy's holds the request, its headers and the upstream
/// exchange). Unboxed, every layer that awaits it — an `async` wrapper per handler, hyper's
/// in-flight slot — holds a copy of it and copies it in on the first poll: ≈ 23 KB of `memcpy`
/// a request through five layers. Boxed once, each layer moves a pointer.
type RequestFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

impl ConnectionHandler {
    fn handle(&self, request: Request<Incoming>) -> RequestFuture {
        match self {
            ConnectionHandler::Proxy(proxy, client) => {
                Box::pin(Arc::clone(proxy).handle(request, Arc::clone(client)))
            }
            ConnectionHandler::ForwardAuth(endpoint, peer) => {
                Box::pin(Arc::clone(endpoint).handle(request, *peer))
            }
        }
    }
}
