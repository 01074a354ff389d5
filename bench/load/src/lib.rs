//! What the load benchmark's two binaries agree on: the routes and body the server answers, the
//! line it prints when it listens, and the environment variable that carries the introspection
//! secret. `load-server` (src/bin/load-server.rs) is the server under test; `load-bench`
//! (src/bin/load-bench/) drives it with `wrk`. See README.md.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The route every mode serves; `tokengate` mode verifies it locally (mode `local`).
pub const API_PATH: &str = "/api/items";

/// The second route; `tokengate` mode also introspects it (mode `introspect`).
pub const ADMIN_PATH: &str = "/admin/x";

/// The body of every 200: a small JSON document, so the handler itself costs next to nothing
/// and the table shows the cost of what is in front of it.
pub const ITEMS_BODY: &str = r#"{"items":[{"id":1,"name":"alpha"},{"id":2,"name":"beta"}]}"#;

/// `load-server` prints this, then its address (`127.0.0.1:PORT`), on one line of stdout once
/// it accepts connections.
pub const LISTENING_PREFIX: &str = "load-server listening on http://";

/// The introspection client secret of `load-server tokengate`: passed in the environment rather
/// than on the command line, where every user of the machine could read it.
pub const CLIENT_SECRET_ENV: &str = "LOAD_SERVER_CLIENT_SECRET";
