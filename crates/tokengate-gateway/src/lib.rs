//! The `tokengate-gateway` binary's machinery, as a library: the binary (`src/main.rs`) is its
//! command line, and the fuzz targets parse configurations with [`config`].
//!
//! Modules: [`config`] (the TOML file → checked settings), [`gateway`] (listeners, lifecycle),
//! [`server`] (accept loop, limits, graceful shutdown), [`proxy`] (reverse proxy) over
//! [`upstream`] (its connections),
//! [`forward_auth`] (nginx / Traefik / Caddy / Envoy endpoint), [`access`] (token source, CSRF,
//! identity headers), [`admin`] (health, readiness, metrics, revocations), [`metrics`],
//! [`demo`], [`explain`]; fleet-wide revocation: [`revocation_store`] (Redis, feature
//! `redis`), [`receiver`] with [`logout`] (OIDC Back-Channel Logout) and [`security_events`]
//! (RFC 8935 pushed Security Event Tokens).

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod config;
pub mod demo;
pub mod explain;
pub mod forward_auth;
pub mod gateway;
pub mod http_util;
pub mod logout;
pub mod metrics;
pub mod proxy;
pub mod receiver;
pub mod revocation_store;
pub mod security_events;
pub mod server;
pub mod upstream;
