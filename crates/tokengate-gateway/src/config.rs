//! The configuration file: TOML in, a checked [`Settings`] out.
//!
//! Two passes. [`parse`] reads the text into the file's shape ([`FileConfig`]) with
//! `deny_unknown_fields` everywhere, through `serde_path_to_error`, so a wrong type, an unknown
//! key or a bad value is reported with its key path (`issuers[0].algorithms[1]: ...`).
//! [`FileConfig::resolve`] then checks what one key alone cannot say (at least one issuer, a
//! secret given exactly once, a route pattern the policy accepts, an `introspect` route with
//! no `[introspection]`), reads secrets from the environment, and builds the library's
//! configuration values. Nothing here touches the network: `--check-config` stops after
//! [`FileConfig::resolve`]; key sets are fetched when the layer is built.
//!
//! Durations are strings with a unit (`"250ms"`, `"5s"`, `"2m"`, `"1h"`), parsed by
//! [`parse_duration`]: digits then one unit, nothing else.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, Uri};
use serde::{Deserialize, Deserializer};
use tokengate::policy::{Mode, Requirement, RoutePolicy, Rule};
use tokengate::{Algorithm, ClientAuth, IntrospectionConfig, IssuerConfig};

/// Default time to establish a connection to the upstream: 5 s; a healthy upstream on a LAN
/// connects in milliseconds, and a dead one should fail fast with 502.
pub const DEFAULT_UPSTREAM_CONNECT: Duration = Duration::from_secs(5);
/// Default time the upstream has to start answering (status and headers): 30 s, nginx's
/// `proxy_read_timeout` order of magnitude.
pub const DEFAULT_UPSTREAM_RESPONSE: Duration = Duration::from_secs(30);
/// Default time a client has to send a complete request head: 10 s, so slow-header clients
/// cannot hold connections open (Slowloris).
pub const DEFAULT_HEADER_READ: Duration = Duration::from_secs(10);
/// Default interval of the pings that tell a live HTTP/2 client from a gone or silent one (it
/// must answer within `header_read`): 30 s, so a dead connection is found within a minute at
/// the cost of 17 bytes each way.
pub const DEFAULT_HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Default cap on the connections one listener serves at once: 10 000, far above what one
/// instance serves in practice and below the file-descriptor limits production hosts set; it
/// bounds memory and descriptors under a connection flood.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time in-flight requests get to finish after SIGTERM or ctrl-c: 10 s, below
/// Kubernetes' default 30 s termination grace period.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default cap on a request head (request line and headers): 32 KiB, nginx's default
/// `large_client_header_buffers` (4 × 8 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// hyper refuses a connection read buffer below 8 KiB.
pub const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;

/// Headers the gateway must own: identity mappings may not name them.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "forwarded",
];

/// A configuration problem, naming the key path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    fn at(path: impl fmt::Display, why: impl fmt::Display) -> Self {
        Self(format!("{path}: {why}"))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[cfg(test)]
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Read from the file as a plain string, so the file's own structs never print it either.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

// ---------------------------------------------------------------------------------------------
// The file's shape.

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the proxy or forward-auth endpoint listens, `host:port`.
    pub listen: SocketAddr,
    /// `proxy` (default) or `forward_auth`.
    #[serde(default)]
    pub mode: FrontendMode,
    /// The upstream base URL, `http://host:port` (proxy mode only).
    pub upstream: Option<UpstreamUrl>,
    /// The trusted issuers (at least one).
    pub issuers: Vec<IssuerFile>,
    /// The introspection endpoint for `introspect` routes.
    pub introspection: Option<IntrospectionFile>,
    /// Route rules, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// The mode of requests no rule matches (default `local`).
    pub default_mode: Option<ModeName>,
    /// The `WWW-Authenticate` realm.
    pub realm: Option<String>,
    /// The admin listener.
    pub admin: Option<AdminFile>,
    /// The environment variable holding the admin API's bearer secret.
    pub admin_token_env: Option<String>,
    /// Identity headers sent upstream (or answered in forward-auth mode).
    #[serde(default)]
    pub identity: IdentityFile,
    /// Whether the `Authorization` header (and a token cookie) reaches the upstream (default
    /// `false`, as Envoy's `jwt_authn`: the upstream gets the identity headers instead).
    #[serde(default)]
    pub forward_authorization: bool,
    /// Tokens in cookies.
    pub cookies: Option<CookiesFile>,
    /// Peers (addresses or CIDR blocks) whose `X-Forwarded-For` is extended rather than replaced
    /// (proxy mode; default none).
    #[serde(default)]
    pub trusted_proxies: Vec<IpNetValue>,
    /// The `[forward_auth]` table (forward-auth mode only).
    pub forward_auth: Option<ForwardAuthFile>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    /// The `[limits]` table.
    #[serde(default)]
    pub limits: LimitsFile,
    /// Cap on a request head, in bytes (default 32 KiB, at least 8 KiB).
    pub max_header_bytes: Option<usize>,
    /// Cap on a token, in bytes (default 8 KiB).
    pub max_token_bytes: Option<usize>,
    /// Refuse to start when an issuer's keys cannot be loaded (default `true`); `false`
    /// starts anyway, not ready, and keeps retrying.
    pub fail_fast: Option<bool>,
    /// The `[revocation]` table (and `[revocation.redis]`, the shared store).
    #[serde(default)]
    pub revocation: RevocationFile,
    /// The `[backchannel_logout]` table: the OpenID Connect Back-Channel Logout receiver.
    pub backchannel_logout: Option<ReceiverFile>,
    /// The `[security_events]` table: the RFC 8935 Security Event Token receiver.
    pub security_events: Option<SecurityEventsFile>,
}

/// How the gateway fronts requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrontendMode {
    /// A reverse proxy in front of `upstream`.
    #[default]
    Proxy,
    /// An authorization endpoint for nginx, Traefik, Caddy, Envoy.
    ForwardAuth,
}

/// One `[[issuers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerFile {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The JWKS URL; absent: discovery at `issuer + /.well-known/openid-configuration`.
    pub jwks_uri: Option<String>,
    /// Accepted audiences (at least one).
    pub audiences: Vec<String>,
    /// Accepted signature algorithms (at least one).
    pub algorithms: Vec<AlgorithmName>,
    /// Clock-skew leeway (default 30 s, at most 5 min).
    pub leeway: Option<DurationValue>,
    /// Required header `typ`, e.g. `at+jwt`.
    pub require_type: Option<String>,
    /// Allow plain-`http` key URLs on non-loopback hosts (default `false`).
    pub allow_http: Option<bool>,
    /// Refuse this issuer's tokens with 503 once its keys are older than this.
    pub max_staleness: Option<DurationValue>,
    /// Our client id at this issuer: enables its back-channel logout tokens (their `aud`).
    pub logout_client_id: Option<String>,
    /// Shortest background refresh interval, whatever `Cache-Control` says (default 5m).
    pub refresh_min: Option<DurationValue>,
    /// Longest background refresh interval (default 24h).
    pub refresh_max: Option<DurationValue>,
    /// At most one fetch per this period for tokens naming an unknown `kid` (default 30s).
    pub kid_cooldown: Option<DurationValue>,
    /// How long a request with an unknown `kid` waits for that fetch (default 1s).
    pub kid_wait: Option<DurationValue>,
    /// Total timeout of a key or discovery fetch (default 5s).
    pub fetch_timeout: Option<DurationValue>,
    /// Connect timeout of a key or discovery fetch (default 5s).
    pub connect_timeout: Option<DurationValue>,
}

/// The `[introspection]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionFile {
    /// The RFC 7662 endpoint.
    pub endpoint: String,
    /// Our client id at the endpoint.
    pub client_id: String,
    /// The client secret, inline.
    pub client_secret: Option<Secret>,
    /// The environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// Seconds an active answer is cached (default 30; 0 asks every time).
    pub cache_ttl_secs: Option<u64>,
    /// Seconds an inactive answer is cached (default 5).
    pub negative_cache_ttl_secs: Option<u64>,
    /// Timeout of one call (default 2 s).
    pub timeout: Option<DurationValue>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub client_auth: Option<ClientAuthName>,
    /// The issuer this endpoint speaks for.
    pub issuer: Option<String>,
    /// Allow a plain-`http` endpoint on a non-loopback host (default `false`).
    pub allow_http: Option<bool>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// The path pattern (`/health`, `/admin/*`, `/users/{id}`).
    pub path: String,
    /// Methods the rule covers (absent: every method).
    pub methods: Option<Vec<MethodName>>,
    /// The mode (default `local`).
    pub mode: Option<ModeName>,
    /// Scopes the token must carry.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The `[admin]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Where the admin listener listens.
    pub listen: SocketAddr,
}

/// The `[identity]` table: which headers carry the caller to the upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// Header for `sub`.
    pub subject: Option<HeaderNameValue>,
    /// Header for the scopes, space-separated.
    pub scopes: Option<HeaderNameValue>,
    /// Header for the client id.
    pub client_id: Option<HeaderNameValue>,
    /// Header for the issuer.
    pub issuer: Option<HeaderNameValue>,
    /// Claim name → header.
    #[serde(default)]
    pub claims: BTreeMap<String, HeaderNameValue>,
}

/// The `[cookies]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookiesFile {
    /// The cookie holding the token.
    pub name: String,
    /// Origins allowed to send unsafe requests authenticated by the cookie.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// The `[forward_auth]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthFile {
    /// Envoy `ext_authz` (HTTP) style: a request whose path is under this prefix describes the
    /// original request by its own method and the rest of its path.
    pub path_prefix: Option<String>,
}

/// The `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Connections served at once per listener (default 10 000); more are closed on arrival.
    pub max_connections: Option<usize>,
}

/// The `[timeouts]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// Connecting to the upstream (→ 502).
    pub upstream_connect: Option<DurationValue>,
    /// The upstream's status and headers (→ 504).
    pub upstream_response: Option<DurationValue>,
    /// A client's first bytes, each complete HTTP/1 request head, an answer to an HTTP/2 ping.
    pub header_read: Option<DurationValue>,
    /// The interval of HTTP/2 pings.
    pub http2_keep_alive: Option<DurationValue>,
    /// In-flight requests after SIGTERM / ctrl-c.
    pub shutdown_grace: Option<DurationValue>,
}

// ---------------------------------------------------------------------------------------------
// Values that check themselves while deserialising, so their errors carry the key path.

/// A duration written with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = StringOrOther::deserialize(d)?;
        let text = text.0.ok_or_else(|| {
            serde::de::Error::custom(r#"expected a duration string with a unit, like "250ms", "5s" or "2m""#)
        })?;
        parse_duration(&text).map(DurationValue).map_err(serde::de::Error::custom)
    }
}

/// A string, or a note that the value was something else (for a friendlier message than
/// serde's "invalid type").
struct StringOrOther(Option<String>);

impl<'de> Deserialize<'de> for StringOrOther {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StringOrOther;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StringOrOther, E> {
                Ok(StringOrOther(Some(v.to_owned())))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<StringOrOther, E> {
                Ok(StringOrOther(None))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<StringOrOther, E> {
                Ok(StringOrOther(None))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<StringOrOther, E> {
                Ok(StringOrOther(None))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Parses `"250ms"`, `"5s"`, `"2m"`, `"1h"`: ASCII digits, then exactly one unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let bad = || {
        format!(
            r#"invalid duration {text:?}: expected digits and a unit (ms, s, m, h), like "250ms", "5s" or "2m""#
        )
    };
    if digits.is_empty() || digits.len() > 12 {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(millis_per_unit).map(Duration::from_millis).ok_or_else(bad)
}

/// A signature algorithm name (`RS256`, `ES256`, `EdDSA`, …).
#[derive(Debug, Clone, Copy)]
pub struct AlgorithmName(pub Algorithm);

impl<'de> Deserialize<'de> for AlgorithmName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<Algorithm>().map(AlgorithmName).map_err(|_| {
            serde::de::Error::custom(format!(
                "unknown algorithm {name:?}: expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512"
            ))
        })
    }
}

/// A route mode name.
#[derive(Debug, Clone, Copy)]
pub struct ModeName(pub Mode);

impl<'de> Deserialize<'de> for ModeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<Mode>().map(ModeName).map_err(serde::de::Error::custom)
    }
}

/// An HTTP method, upper-case as on the wire.
#[derive(Debug, Clone)]
pub struct MethodName(pub Method);

impl<'de> Deserialize<'de> for MethodName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        // Methods are case-sensitive (RFC 9110 §9.1): "get" would be another method that no
        // client sends, silently leaving GET unmatched.
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom(format!(
                "invalid method {name:?}: write it upper-case, like \"POST\""
            )));
        }
        Method::from_bytes(name.as_bytes())
            .map(MethodName)
            .map_err(|_| serde::de::Error::custom(format!("invalid method {name:?}")))
    }
}

/// `client_secret_basic` or `client_secret_post`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuthName(pub ClientAuth);

impl<'de> Deserialize<'de> for ClientAuthName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "client_secret_basic" => Ok(ClientAuthName(ClientAuth::ClientSecretBasic)),
            "client_secret_post" => Ok(ClientAuthName(ClientAuth::ClientSecretPost)),
            other => Err(serde::de::Error::custom(format!(
                "unknown client_auth {other:?}: expected client_secret_basic or client_secret_post"
            ))),
        }
    }
}

/// A header name the gateway may set for the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNameValue(pub HeaderName);

impl<'de> Deserialize<'de> for HeaderNameValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| serde::de::Error::custom(format!("{name:?} is not a valid header name")))?;
        // `X_Forwarded_For` reaches CGI-style stacks as `X-Forwarded-For` would.
        let dashed = header.as_str().replace('_', "-");
        if RESERVED_HEADERS.contains(&dashed.as_str()) || dashed.starts_with("proxy-") {
            return Err(serde::de::Error::custom(format!(
                "{name:?} is a header the gateway manages itself; choose another name, like \"X-User\""
            )));
        }
        Ok(HeaderNameValue(header))
    }
}

/// An address or a CIDR block (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses an address (a block of one) or `address/prefix` with no host bits set.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or a CIDR block like \"10.0.0.0/8\""))?;
        if let IpAddr::V6(v6) = network
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Err(format!("{text:?}: write the IPv4 address itself ({v4})"));
        }
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be at most {max}"))?,
            Some(_) => return Err(format!("{text:?}: the prefix length must be a number, like /8")),
        };
        let net = IpNet { network, prefix };
        if net.masked(network) != Some(bits(network)) {
            return Err(format!("{text:?}: the address has bits set beyond the /{prefix} prefix"));
        }
        Ok(net)
    }

    /// Whether `ip` (IPv4-mapped IPv6 read as IPv4) is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.masked(ip.to_canonical()) == self.masked(self.network)
    }

    /// `ip`'s first `prefix` bits, if `ip` is of the block's family.
    fn masked(&self, ip: IpAddr) -> Option<u128> {
        let width: u32 = if self.network.is_ipv4() { 32 } else { 128 };
        if ip.is_ipv4() != self.network.is_ipv4() {
            return None;
        }
        let host_bits = width - u32::from(self.prefix);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        Some(bits(ip) & mask)
    }
}

/// The address as a number (IPv4 in the low 32 bits).
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// A `trusted_proxies` entry.
#[derive(Debug, Clone, Copy)]
pub struct IpNetValue(pub IpNet);

impl<'de> Deserialize<'de> for IpNetValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        IpNet::parse(&text).map(IpNetValue).map_err(serde::de::Error::custom)
    }
}

/// The upstream base URL: `http://host[:port]`, no path, query or user info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// `host:port`, for the `Host` header and the connection.
    pub authority: http::uri::Authority,
}

impl UpstreamUrl {
    /// `http://host:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.authority)
    }
}

impl<'de> Deserialize<'de> for UpstreamUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_upstream(&text).map_err(serde::de::Error::custom)
    }
}

fn parse_upstream(text: &str) -> Result<UpstreamUrl, String> {
    let uri: Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{text:?}: https upstreams are not supported yet; put the upstream on http on a private network, or terminate TLS in front of it"
            ));
        }
        _ => return Err(format!("{text:?}: expected http://host:port")),
    }
    let authority = uri.authority().cloned().ok_or_else(|| format!("{text:?}: expected http://host:port"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{text:?}: user info in the upstream URL is not supported"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{text:?}: the upstream URL must not have a path or query; requests keep their own path"
        ));
    }
    Ok(UpstreamUrl { authority })
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/// Parses the text of a configuration file. Errors name the key path.
pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    // Syntax first: toml's own message says the line and column.
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError(format!("invalid TOML: {}", e.to_string().trim_end())))?;
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        describe(&path, &e.inner().to_string())
    })
}

/// Turns serde's messages into `path: why`, naming the key itself for missing and unknown
/// keys (serde reports those at the enclosing table).
fn describe(path: &str, message: &str) -> ConfigError {
    // toml appends "in `table`" on further lines: the path says it better.
    let message = message.lines().next().unwrap_or_default().trim_end();
    let join =
        |key: &str| if path == "." || path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    let quoted = |rest: &str| {
        rest.strip_prefix('`')
            .and_then(|r| r.split_once('`'))
            .map(|(k, tail)| (k.to_owned(), tail.to_owned()))
    };
    if let Some((key, _)) = message.strip_prefix("missing field ").and_then(quoted) {
        return ConfigError::at(join(&key), "missing");
    }
    if let Some((key, tail)) = message.strip_prefix("unknown field ").and_then(quoted) {
        // The path already ends with the unknown key.
        let at = if path.ends_with(&key) { path.to_owned() } else { join(&key) };
        let expected = tail.trim_start_matches(", ");
        return ConfigError::at(at, format!("unknown key ({expected})"));
    }
    if let Some((key, tail)) = message.strip_prefix("unknown variant ").and_then(quoted) {
        let expected = tail.trim_start_matches(", ");
        return ConfigError::at(
            if path.is_empty() { ".".to_owned() } else { path.to_owned() },
            format!("unknown value {key:?} ({expected})"),
        );
    }
    let path = if path.is_empty() || path == "." { "(top level)" } else { path };
    ConfigError::at(path, message)
}

// ---------------------------------------------------------------------------------------------
// Resolving: the checks across keys, secrets from the environment, library values.

/// Where an environment variable's value comes from; tests and the demo pass a map.
pub trait Environment {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Everything the gateway needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The main listener's address.
    pub listen: SocketAddr,
    /// Proxy or forward-auth.
    pub frontend: Frontend,
    /// The admin listener, if any.
    pub admin: Option<AdminSettings>,
    /// Identity headers.
    pub identity: IdentitySettings,
    /// Whether `Authorization` (and a token cookie) reaches the upstream.
    pub forward_authorization: bool,
    /// Tokens in cookies, if enabled.
    pub cookies: Option<CookieSettings>,
    /// Peers whose `X-Forwarded-For` is extended rather than replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Cap on a request head.
    pub max_header_bytes: usize,
    /// Connections served at once by the main listener.
    pub max_connections: usize,
    /// What builds the library's layer.
    pub gate: GateSettings,
    /// The shared revocation store, if any.
    pub redis: Option<RedisSettings>,
    /// The back-channel logout receiver, if enabled.
    pub backchannel_logout: Option<LogoutSettings>,
    /// The Security Event Token receiver, if enabled.
    pub security_events: Option<SecurityEventsSettings>,
}

/// Proxy or forward-auth, with what each needs.
#[derive(Debug, Clone)]
pub enum Frontend {
    /// Reverse proxy to this upstream.
    Proxy {
        /// The upstream.
        upstream: UpstreamUrl,
    },
    /// Forward-auth endpoint.
    ForwardAuth {
        /// Envoy style: requests under this prefix describe the original by their own method
        /// and the rest of their path.
        path_prefix: Option<String>,
    },
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Its address.
    pub listen: SocketAddr,
    /// The bearer secret of the revocation API; `None` disables it.
    pub token: Option<Secret>,
}

/// Identity header names.
#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    /// `sub`.
    pub subject: Option<HeaderName>,
    /// Scopes, space-separated.
    pub scopes: Option<HeaderName>,
    /// Client id.
    pub client_id: Option<HeaderName>,
    /// Issuer.
    pub issuer: Option<HeaderName>,
    /// Claim → header.
    pub claims: Vec<(String, HeaderName)>,
}

impl IdentitySettings {
    /// Every configured header name.
    pub fn header_names(&self) -> impl Iterator<Item = &HeaderName> {
        [&self.subject, &self.scopes, &self.client_id, &self.issuer]
            .into_iter()
            .flatten()
            .chain(self.claims.iter().map(|(_, h)| h))
    }
}

/// Tokens in cookies.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// The cookie's name.
    pub name: String,
    /// Origins (`scheme://host[:port]`, lower-case) allowed to send unsafe requests.
    pub allowed_origins: Vec<String>,
}

/// Timeouts, all set.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting to the upstream.
    pub upstream_connect: Duration,
    /// The upstream's response head.
    pub upstream_response: Duration,
    /// A client's first bytes, HTTP/1 request heads, HTTP/2 ping answers.
    pub header_read: Duration,
    /// HTTP/2 ping interval.
    pub http2_keep_alive: Duration,
    /// Graceful shutdown.
    pub shutdown_grace: Duration,
}

/// The library's configuration.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// Issuers.
    pub issuers: Vec<IssuerConfig>,
    /// Routes.
    pub policy: RoutePolicy,
    /// Introspection.
    pub introspection: Option<IntrospectionConfig>,
    /// Realm.
    pub realm: Option<String>,
    /// Token size cap.
    pub max_token_bytes: Option<usize>,
    /// Fail when keys cannot be loaded at start.
    pub fail_fast: bool,
    /// Issuer identifiers, for messages.
    pub issuer_names: Vec<String>,
    /// The number of route rules, for messages.
    pub routes: usize,
    /// The longest lifetime of the issuers' tokens (how long by-subject entries live).
    pub max_token_lifetime: Duration,
    /// Most entries the revocation list holds.
    pub revocation_capacity: usize,
}

impl GateSettings {
    /// Builds the layer: fetches every issuer's keys (unless `fail_fast` is off) and resolves
    /// discovery.
    pub async fn build(&self) -> Result<tokengate::TokenGateLayer, tokengate::BuildError> {
        let revocations = tokengate::RevocationList::with_settings(
            std::sync::Arc::new(tokengate::clock::SystemClock),
            self.revocation_capacity,
            self.max_token_lifetime,
        );
        let mut builder = tokengate::TokenGateLayer::builder()
            .policy(self.policy.clone())
            .fail_fast(self.fail_fast)
            .revocation_list(revocations);
        for issuer in &self.issuers {
            builder = builder.issuer(issuer.clone());
        }
        if let Some(introspection) = &self.introspection {
            builder = builder.introspection(introspection.clone());
        }
        if let Some(realm) = &self.realm {
            builder = builder.realm(realm.clone());
        }
        if let Some(max) = self.max_token_bytes {
            builder = builder.max_token_bytes(max);
        }
        builder.build().await
    }
}

impl FileConfig {
    /// Checks what single keys cannot, reads secrets from `env`, and builds [`Settings`].
    pub fn resolve(self, env: &dyn Environment) -> Result<Settings, ConfigError> {
        if self.mode == FrontendMode::Proxy && self.forward_auth.is_some() {
            return Err(ConfigError::at("forward_auth", "only used when mode = \"forward_auth\"; remove it"));
        }
        if self.mode == FrontendMode::ForwardAuth && !self.trusted_proxies.is_empty() {
            return Err(ConfigError::at(
                "trusted_proxies",
                "only used when mode = \"proxy\" (the calling proxy sets X-Forwarded-For); remove it",
            ));
        }

        let frontend = match (self.mode, self.upstream) {
            (FrontendMode::Proxy, Some(upstream)) => Frontend::Proxy { upstream },
            (FrontendMode::Proxy, None) => {
                return Err(ConfigError::at(
                    "upstream",
                    "missing (required when mode = \"proxy\", the default)",
                ));
            }
            (FrontendMode::ForwardAuth, None) => {
                let path_prefix = match self.forward_auth.and_then(|f| f.path_prefix) {
                    None => None,
                    Some(prefix) => Some(check_path_prefix(prefix)?),
                };
                Frontend::ForwardAuth { path_prefix }
            }
            (FrontendMode::ForwardAuth, Some(_)) => {
                return Err(ConfigError::at(
                    "upstream",
                    "not used when mode = \"forward_auth\" (the calling proxy forwards the request); remove it",
                ));
            }
        };

        if self.issuers.is_empty() {
            return Err(ConfigError::at("issuers", "at least one [[issuers]] entry is required"));
        }
        let mut issuers = Vec::with_capacity(self.issuers.len());
        let mut issuer_names = Vec::new();
        let mut issuer_keys = Vec::new();
        let mut logout_clients = Vec::new();
        for (i, file) in self.issuers.into_iter().enumerate() {
            let at = |key: &str| format!("issuers[{i}].{key}");
            if file.issuer.is_empty() {
                return Err(ConfigError::at(at("issuer"), "empty"));
            }
            if issuer_names.contains(&file.issuer) {
                return Err(ConfigError::at(at("issuer"), format!("{:?} is configured twice", file.issuer)));
            }
            if file.audiences.is_empty() || file.audiences.iter().any(String::is_empty) {
                return Err(ConfigError::at(
                    at("audiences"),
                    "at least one non-empty audience is required (otherwise tokens for any API would pass)",
                ));
            }
            if file.algorithms.is_empty() {
                return Err(ConfigError::at(at("algorithms"), "at least one algorithm is required"));
            }
            if matches!(&file.jwks_uri, Some(url) if url.is_empty()) {
                return Err(ConfigError::at(at("jwks_uri"), "empty"));
            }
            if file.leeway.is_some_and(|l| l.0 > Duration::from_secs(300)) {
                return Err(ConfigError::at(at("leeway"), "at most 5m"));
            }
            // How to find and trust this issuer's keys, whatever the audience: the receivers
            // verify logout tokens and security events with it too.
            let keys = KeySourceFile {
                jwks_uri: file.jwks_uri.clone(),
                algorithms: file.algorithms.iter().map(|a| a.0).collect(),
                leeway: file.leeway.map(|l| l.0),
                allow_http: file.allow_http,
                max_staleness: file.max_staleness.map(|s| s.0),
                tuning: KeyTuning {
                    refresh: match (file.refresh_min, file.refresh_max) {
                        (None, None) => None,
                        (min, max) => {
                            let min = min.map_or(tokengate::jwks::DEFAULT_MIN_REFRESH_INTERVAL, |d| d.0);
                            let max = max.map_or(tokengate::jwks::DEFAULT_MAX_REFRESH_INTERVAL, |d| d.0);
                            if min > max {
                                return Err(ConfigError::at(at("refresh_min"), "is longer than refresh_max"));
                            }
                            Some((min, max))
                        }
                    },
                    kid_cooldown: file.kid_cooldown.map(|d| d.0),
                    kid_wait: file.kid_wait.map(|d| d.0),
                    fetch_timeout: file.fetch_timeout.map(|d| d.0),
                    connect_timeout: file.connect_timeout.map(|d| d.0),
                },
            };
            let mut config = keys.apply(IssuerConfig::new(file.issuer.clone()).audiences(file.audiences));
            if let Some(typ) = file.require_type {
                config = config.require_type(typ);
            }
            match file.logout_client_id {
                Some(id) if id.is_empty() => return Err(ConfigError::at(at("logout_client_id"), "empty")),
                Some(id) => logout_clients.push((i, file.issuer.clone(), id)),
                None => {}
            }
            issuer_keys.push((file.issuer.clone(), keys));
            issuer_names.push(file.issuer);
            issuers.push(config);
        }

        let introspection = match self.introspection {
            None => None,
            Some(file) => Some(resolve_introspection(file, env)?),
        };

        let default_mode = self.default_mode.map_or(Mode::Local, |m| m.0);
        if default_mode == Mode::Introspect && introspection.is_none() {
            return Err(ConfigError::at("default_mode", "\"introspect\" needs an [introspection] table"));
        }
        let routes = self.routes.len();
        let mut policy = RoutePolicy::new().default_requirement(Requirement::new(default_mode));
        for (i, route) in self.routes.into_iter().enumerate() {
            let mode = route.mode.map_or(Mode::Local, |m| m.0);
            if mode == Mode::Introspect && introspection.is_none() {
                return Err(ConfigError::at(
                    format!("routes[{i}].mode"),
                    "\"introspect\" needs an [introspection] table",
                ));
            }
            if !route.scopes.is_empty() && matches!(mode, Mode::Public | Mode::Deny) {
                return Err(ConfigError::at(
                    format!("routes[{i}].scopes"),
                    format!("has no effect in mode \"{}\"", mode.as_str()),
                ));
            }
            if let Some(s) = route.scopes.iter().find(|s| s.is_empty() || s.contains(char::is_whitespace)) {
                return Err(ConfigError::at(
                    format!("routes[{i}].scopes"),
                    format!("{s:?} is not a scope (one non-empty word per entry)"),
                ));
            }
            let mut rule = Rule::new(&route.path, Requirement::new(mode).with_scopes(route.scopes))
                .map_err(|e| ConfigError::at(format!("routes[{i}].path"), e))?;
            if let Some(methods) = route.methods {
                if methods.is_empty() {
                    return Err(ConfigError::at(
                        format!("routes[{i}].methods"),
                        "empty: list methods, or remove the key to cover every method",
                    ));
                }
                rule = rule.methods(methods.into_iter().map(|m| m.0));
            }
            policy = policy.rule(rule);
        }

        let admin_token = match &self.admin_token_env {
            None => None,
            Some(var) => Some(secret_from_env(env, "admin_token_env", var)?),
        };
        let admin = match (self.admin, admin_token) {
            (Some(admin), token) => Some(AdminSettings { listen: admin.listen, token }),
            (None, Some(_)) => {
                return Err(ConfigError::at(
                    "admin_token_env",
                    "needs an [admin] table with listen = \"host:port\"",
                ));
            }
            (None, None) => None,
        };
        if let Some(admin) = &admin
            && admin.listen == self.listen
            && admin.listen.port() != 0
        {
            return Err(ConfigError::at("admin.listen", "must differ from listen"));
        }

        let identity = resolve_identity(self.identity)?;

        let cookies = match self.cookies {
            None => None,
            Some(file) => Some(resolve_cookies(file)?),
        };

        let t = self.timeouts;
        let timeouts = Timeouts {
            upstream_connect: t.upstream_connect.map_or(DEFAULT_UPSTREAM_CONNECT, |d| d.0),
            upstream_response: t.upstream_response.map_or(DEFAULT_UPSTREAM_RESPONSE, |d| d.0),
            header_read: t.header_read.map_or(DEFAULT_HEADER_READ, |d| d.0),
            http2_keep_alive: t.http2_keep_alive.map_or(DEFAULT_HTTP2_KEEP_ALIVE, |d| d.0),
            shutdown_grace: t.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0),
        };
        for (key, value) in [
            ("timeouts.upstream_connect", timeouts.upstream_connect),
            ("timeouts.upstream_response", timeouts.upstream_response),
            ("timeouts.header_read", timeouts.header_read),
            ("timeouts.http2_keep_alive", timeouts.http2_keep_alive),
        ] {
            if value.is_zero() {
                return Err(ConfigError::at(key, "must be more than 0"));
            }
        }

        let max_header_bytes = self.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
        if max_header_bytes < MIN_MAX_HEADER_BYTES {
            return Err(ConfigError::at("max_header_bytes", format!("at least {MIN_MAX_HEADER_BYTES}")));
        }
        let max_connections = self.limits.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(ConfigError::at("limits.max_connections", "must be more than 0"));
        }
        if self.max_token_bytes == Some(0) {
            return Err(ConfigError::at("max_token_bytes", "must be more than 0"));
        }

        let (max_token_lifetime, revocation_capacity, redis) = resolve_revocation(self.revocation, env)?;
        let listeners = Listeners { admin: admin.is_some() };
        let backchannel_logout =
            resolve_logout(self.backchannel_logout, logout_clients, &issuer_keys, listeners)?;
        let security_events = match self.security_events {
            None => None,
            Some(file) => Some(resolve_security_events(file, &issuer_keys, listeners)?),
        };
        if let (Some(logout), Some(events)) = (&backchannel_logout, &security_events)
            && logout.endpoint.listener == events.endpoint.listener
            && logout.endpoint.path == events.endpoint.path
        {
            return Err(ConfigError::at(
                "security_events.path",
                "the same path as backchannel_logout.path on the same listener",
            ));
        }

        Ok(Settings {
            listen: self.listen,
            frontend,
            admin,
            identity,
            forward_authorization: self.forward_authorization,
            cookies,
            trusted_proxies: self.trusted_proxies.into_iter().map(|n| n.0).collect(),
            timeouts,
            max_header_bytes,
            max_connections,
            gate: GateSettings {
                issuers,
                policy,
                introspection,
                realm: self.realm,
                max_token_bytes: self.max_token_bytes,
                fail_fast: self.fail_fast.unwrap_or(true),
                issuer_names,
                routes,
                max_token_lifetime,
                revocation_capacity,
            },
            redis,
            backchannel_logout,
            security_events,
        })
    }
}

fn secret_from_env(env: &dyn Environment, key: &str, var: &str) -> Result<Secret, ConfigError> {
    if var.is_empty() {
        return Err(ConfigError::at(key, "empty: name an environment variable"));
    }
    match env.var(var) {
        Some(value) if !value.is_empty() => Ok(Secret(value)),
        Some(_) => Err(ConfigError::at(key, format!("the environment variable {var} is empty"))),
        None => Err(ConfigError::at(key, format!("the environment variable {var} is not set"))),
    }
}

fn resolve_introspection(
    file: IntrospectionFile,
    env: &dyn Environment,
) -> Result<IntrospectionConfig, ConfigError> {
    if file.endpoint.is_empty() {
        return Err(ConfigError::at("introspection.endpoint", "empty"));
    }
    if file.client_id.is_empty() {
        return Err(ConfigError::at("introspection.client_id", "empty"));
    }
    let secret = match (file.client_secret, file.client_secret_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::at(
                "introspection.client_secret",
                "give client_secret or client_secret_env, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::at(
                "introspection.client_secret",
                "missing (or set client_secret_env to the name of an environment variable)",
            ));
        }
        (Some(s), None) if s.0.is_empty() => {
            return Err(ConfigError::at("introspection.client_secret", "empty"));
        }
        (Some(s), None) => s,
        (None, Some(var)) => secret_from_env(env, "introspection.client_secret_env", &var)?,
    };
    let mut config = IntrospectionConfig::new(file.endpoint, file.client_id, secret.0);
    if let Some(ttl) = file.cache_ttl_secs {
        config = config.cache_ttl(Duration::from_secs(ttl));
    }
    if let Some(ttl) = file.negative_cache_ttl_secs {
        config = config.negative_cache_ttl(Duration::from_secs(ttl));
    }
    if let Some(timeout) = file.timeout {
        if timeout.0.is_zero() {
            return Err(ConfigError::at("introspection.timeout", "must be more than 0"));
        }
        config = config.timeout(timeout.0);
    }
    if let Some(auth) = file.client_auth {
        config = config.client_auth(auth.0);
    }
    if let Some(issuer) = file.issuer {
        config = config.issuer(issuer);
    }
    if let Some(allow) = file.allow_http {
        config = config.allow_http(allow);
    }
    Ok(config)
}

/// A `[forward_auth] path_prefix`: `/` and plain segments (unreserved characters), no `/` at
/// the end, so that "under the prefix" has one meaning.
fn check_path_prefix(prefix: String) -> Result<String, ConfigError> {
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    match prefix.strip_prefix('/') {
        Some(rest) if rest.split('/').all(plain) => Ok(prefix),
        _ => Err(ConfigError::at(
            "forward_auth.path_prefix",
            format!("{prefix:?} is not a path prefix like \"/ext_authz\" (plain segments, no trailing /)"),
        )),
    }
}

fn resolve_identity(file: IdentityFile) -> Result<IdentitySettings, ConfigError> {
    let identity = IdentitySettings {
        subject: file.subject.map(|h| h.0),
        scopes: file.scopes.map(|h| h.0),
        client_id: file.client_id.map(|h| h.0),
        issuer: file.issuer.map(|h| h.0),
        claims: file.claims.into_iter().map(|(claim, h)| (claim, h.0)).collect(),
    };
    if let Some((claim, _)) = identity.claims.iter().find(|(claim, _)| claim.is_empty()) {
        return Err(ConfigError::at("identity.claims", format!("{claim:?} is not a claim name")));
    }
    let mut seen = HashSet::new();
    for name in identity.header_names() {
        // `X_User` and `X-User` are one header to CGI-style upstreams.
        if !seen.insert(name.as_str().replace('_', "-")) {
            return Err(ConfigError::at("identity", format!("the header {name} is mapped twice")));
        }
    }
    Ok(identity)
}

fn resolve_cookies(file: CookiesFile) -> Result<CookieSettings, ConfigError> {
    let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if file.name.is_empty() || !file.name.bytes().all(token_char) {
        return Err(ConfigError::at("cookies.name", format!("{:?} is not a valid cookie name", file.name)));
    }
    let mut allowed_origins = Vec::with_capacity(file.allowed_origins.len());
    for (i, origin) in file.allowed_origins.into_iter().enumerate() {
        let valid = origin
            .parse::<Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
            .filter(|u| u.authority().is_some_and(|a| !a.as_str().contains('@')))
            .filter(|_| !origin.ends_with('/'))
            .filter(|u| u.path() == "/" || u.path().is_empty())
            .filter(|u| u.query().is_none());
        if valid.is_none() {
            return Err(ConfigError::at(
                format!("cookies.allowed_origins[{i}]"),
                format!(
                    "{origin:?} is not an origin like \"https://app.example.com\" (scheme and host, no path)"
                ),
            ));
        }
        allowed_origins.push(origin.to_ascii_lowercase());
    }
    Ok(CookieSettings { name: file.name, allowed_origins })
}

// ---------------------------------------------------------------------------------------------
// Fleet-wide revocation: `[revocation]`, `[revocation.redis]`, `[backchannel_logout]`,
// `[security_events]`.

/// Default longest token lifetime: the library's, 24 h.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = tokengate::revocation::DEFAULT_MAX_TOKEN_LIFETIME;
/// Default prefix of the Redis keys: the entries live in `{prefix}:entries`, news travel on
/// the channel `{prefix}:events`.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "tokengate:revocations";
/// Default time to connect to Redis: 1 s; on a LAN it takes a millisecond, and the list keeps
/// serving meanwhile, so giving up early only starts the retry sooner.
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time one Redis command may take: 1 s (a write, a page of a full load, a ping).
pub const DEFAULT_REDIS_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Default longest pause between reconnection attempts: 5 s, so a restarted Redis is found
/// within seconds without hammering one that is down.
pub const DEFAULT_REDIS_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Default bound of the queue of writes waiting for Redis: 10 000 entries (a few MB). When it
/// overflows nothing is lost: the replica writes its whole local list on reconnect instead.
pub const DEFAULT_REDIS_QUEUE_CAPACITY: usize = 10_000;
/// Default interval of full reloads while connected: 5 min, a safety net under pub/sub (which
/// delivers at most once); the load on start and on every reconnect is what matters.
pub const DEFAULT_REDIS_FULL_LOAD_INTERVAL: Duration = Duration::from_secs(300);
/// Default interval of the pings that find a silently dead connection: 5 s.
pub const DEFAULT_REDIS_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Default path of the back-channel logout endpoint.
pub const DEFAULT_LOGOUT_PATH: &str = "/backchannel-logout";
/// Default path of the Security Event Token endpoint.
pub const DEFAULT_EVENTS_PATH: &str = "/security-events";
/// Default oldest `iat` a logout token may have: 2 minutes (plus the issuer's leeway). The
/// OP sends it at logout time; OWASP ASVS 10.5.5 recommends a short window, and the replay
/// cache has to remember each `jti` only this long.
pub const DEFAULT_LOGOUT_MAX_AGE: Duration = Duration::from_secs(120);
/// Default oldest `iat` a security event may have: 5 minutes (plus leeway); transmitters retry
/// failed pushes (RFC 8935 §2.3), so a SET may arrive later than a logout token.
pub const DEFAULT_EVENTS_MAX_AGE: Duration = Duration::from_secs(300);
/// Default capacity of a receiver's replay cache: 100 000 `jti`s (about 10 MB), far more
/// logouts than arrive within a window at one replica.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;
/// The admin listener's own paths, which a receiver may not take.
const ADMIN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/revocations"];

/// The `[revocation]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationFile {
    /// The longest lifetime of any token the issuers mint (default 24 h): how long a
    /// by-subject or by-session entry lives; longer-lived tokens are refused after one.
    pub max_token_lifetime: Option<DurationValue>,
    /// Most entries in the list (default 1 000 000).
    pub capacity: Option<usize>,
    /// The shared store.
    pub redis: Option<RedisFile>,
}

/// The `[revocation.redis]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisFile {
    /// `redis://[:password@]host:port[/db]`, inline.
    pub url: Option<Secret>,
    /// The environment variable holding the URL (when it carries a password).
    pub url_env: Option<String>,
    /// Prefix of the keys and the channel (default `tokengate:revocations`).
    pub key_prefix: Option<String>,
    /// Connecting (default 1 s).
    pub connect_timeout: Option<DurationValue>,
    /// One command (default 1 s).
    pub command_timeout: Option<DurationValue>,
    /// Longest pause between reconnection attempts (default 5 s).
    pub reconnect_max_backoff: Option<DurationValue>,
    /// Writes queued while Redis is unreachable (default 10 000).
    pub queue_capacity: Option<usize>,
    /// Full reloads while connected (default 5 min).
    pub full_load_interval: Option<DurationValue>,
    /// Pings of both connections (default 5 s).
    pub ping_interval: Option<DurationValue>,
    /// Whether `/readyz` may answer 200 before the first full load succeeded (default
    /// `false`: a replica that never saw the shared list would accept revoked tokens).
    pub ready_before_first_load: Option<bool>,
}

/// Which listener serves a receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerChoice {
    /// The proxy or forward-auth listener: the one the identity provider can reach.
    #[default]
    Main,
    /// The admin listener.
    Admin,
}

/// The `[backchannel_logout]` table (the issuers opt in with `logout_client_id`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverFile {
    /// The endpoint's path (default `/backchannel-logout`).
    pub path: Option<String>,
    /// `main` (default) or `admin`.
    pub listener: Option<ListenerChoice>,
    /// The oldest `iat` accepted (default 2 min), plus the issuer's leeway.
    pub max_age: Option<DurationValue>,
    /// `jti`s remembered against replays (default 100 000).
    pub replay_cache_capacity: Option<usize>,
}

/// The `[security_events]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityEventsFile {
    /// The endpoint's path (default `/security-events`).
    pub path: Option<String>,
    /// `main` (default) or `admin`.
    pub listener: Option<ListenerChoice>,
    /// The `aud` every SET must carry: this receiver's identifier at the transmitters.
    pub audience: String,
    /// The oldest `iat` accepted (default 5 min), plus the leeway.
    pub max_age: Option<DurationValue>,
    /// `jti`s remembered against replays (default 100 000).
    pub replay_cache_capacity: Option<usize>,
    /// The trusted transmitters (at least one).
    pub transmitters: Vec<TransmitterFile>,
}

/// One `[[security_events.transmitters]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmitterFile {
    /// The SETs' `iss`.
    pub issuer: String,
    /// The transmitter's JWKS; absent: the keys of the `[[issuers]]` entry with this issuer.
    pub jwks_uri: Option<String>,
    /// Accepted algorithms; absent: those of the `[[issuers]]` entry with this issuer.
    pub algorithms: Option<Vec<AlgorithmName>>,
    /// The `[[issuers]]` entry whose subjects this transmitter speaks about (default: its
    /// own issuer). Opaque subject ids are that issuer's `sub`s; an `iss_sub` subject of any
    /// other issuer is refused (`access_denied`).
    pub subject_issuer: Option<String>,
    /// Allow a plain-`http` JWKS URL on a non-loopback host (default `false`).
    pub allow_http: Option<bool>,
}

/// How to find and trust an issuer's keys, shared by the access-token verifier and the
/// receivers.
#[derive(Debug, Clone)]
struct KeySourceFile {
    jwks_uri: Option<String>,
    algorithms: Vec<Algorithm>,
    leeway: Option<Duration>,
    allow_http: Option<bool>,
    max_staleness: Option<Duration>,
    tuning: KeyTuning,
}

/// The key refresher's figures an operator may change (the library's defaults otherwise).
#[derive(Debug, Clone, Default)]
struct KeyTuning {
    refresh: Option<(Duration, Duration)>,
    kid_cooldown: Option<Duration>,
    kid_wait: Option<Duration>,
    fetch_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
}

impl KeySourceFile {
    fn apply(&self, mut config: IssuerConfig) -> IssuerConfig {
        config = config.algorithms(self.algorithms.iter().copied());
        config = match &self.jwks_uri {
            Some(url) => config.jwks_url(url.clone()),
            None => config.discover(),
        };
        if let Some(leeway) = self.leeway {
            config = config.leeway(leeway);
        }
        if let Some(allow) = self.allow_http {
            config = config.allow_http(allow);
        }
        if let Some(staleness) = self.max_staleness {
            config = config.max_staleness(staleness);
        }
        let t = &self.tuning;
        if let Some((min, max)) = t.refresh {
            config = config.refresh_interval_bounds(min, max);
        }
        if let Some(cooldown) = t.kid_cooldown {
            config = config.kid_cooldown(cooldown);
        }
        if let Some(wait) = t.kid_wait {
            config = config.kid_wait(wait);
        }
        if let Some(timeout) = t.fetch_timeout {
            config = config.fetch_timeout(timeout);
        }
        if let Some(timeout) = t.connect_timeout {
            config = config.connect_timeout(timeout);
        }
        config
    }
}

/// The shared revocation store.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The server's URL (may hold a password: never logged).
    pub url: Secret,
    /// Key and channel prefix.
    pub key_prefix: String,
    /// Connecting.
    pub connect_timeout: Duration,
    /// One command.
    pub command_timeout: Duration,
    /// Longest pause between reconnection attempts.
    pub reconnect_max_backoff: Duration,
    /// Bound of the write queue.
    pub queue_capacity: usize,
    /// Full reloads while connected.
    pub full_load_interval: Duration,
    /// Pings.
    pub ping_interval: Duration,
    /// Whether `/readyz` may pass before the first full load.
    pub ready_before_first_load: bool,
}

impl RedisSettings {
    /// The sorted set of entries.
    pub fn entries_key(&self) -> String {
        format!("{}:entries", self.key_prefix)
    }

    /// The pub/sub channel.
    pub fn channel(&self) -> String {
        format!("{}:events", self.key_prefix)
    }
}

/// Where a receiver listens and how it treats time and replays.
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    /// Its path (exact match, `POST` only).
    pub path: String,
    /// Its listener.
    pub listener: ListenerChoice,
    /// The oldest `iat` accepted (the issuer's leeway comes on top).
    pub max_age: Duration,
    /// Replay cache capacity.
    pub replay_capacity: usize,
}

/// The back-channel logout receiver.
#[derive(Debug, Clone)]
pub struct LogoutSettings {
    /// Path, listener, window.
    pub endpoint: EndpointSettings,
    /// One verifier per issuer that opted in: its keys, `aud` = our client id, `exp` required.
    pub issuers: Vec<IssuerConfig>,
}

/// The Security Event Token receiver.
#[derive(Debug, Clone)]
pub struct SecurityEventsSettings {
    /// Path, listener, window.
    pub endpoint: EndpointSettings,
    /// The accepted `aud`.
    pub audience: String,
    /// The transmitters.
    pub transmitters: Vec<TransmitterSettings>,
}

/// One trusted transmitter.
#[derive(Debug, Clone)]
pub struct TransmitterSettings {
    /// The SETs' `iss`.
    pub issuer: String,
    /// Its keys, `aud` = the receiver's audience, `exp` optional (RFC 8417 SETs have none).
    pub verifier: IssuerConfig,
    /// The access-token issuer whose subjects it speaks about.
    pub subject_issuer: String,
}

#[derive(Clone, Copy)]
struct Listeners {
    admin: bool,
}

fn resolve_revocation(
    file: RevocationFile,
    env: &dyn Environment,
) -> Result<(Duration, usize, Option<RedisSettings>), ConfigError> {
    let lifetime = file.max_token_lifetime.map_or(DEFAULT_MAX_TOKEN_LIFETIME, |d| d.0);
    if lifetime < Duration::from_secs(1) {
        return Err(ConfigError::at("revocation.max_token_lifetime", "at least 1s"));
    }
    let capacity = file.capacity.unwrap_or(tokengate::revocation::DEFAULT_CAPACITY);
    if capacity == 0 {
        return Err(ConfigError::at("revocation.capacity", "must be more than 0"));
    }
    let redis = match file.redis {
        None => None,
        Some(file) => Some(resolve_redis(file, env)?),
    };
    Ok((lifetime, capacity, redis))
}

fn resolve_redis(file: RedisFile, env: &dyn Environment) -> Result<RedisSettings, ConfigError> {
    if !cfg!(feature = "redis") {
        return Err(ConfigError::at(
            "revocation.redis",
            "this build has no Redis support: build tokengate-gateway with the cargo feature `redis` (on by default)",
        ));
    }
    let (url, key) = match (file.url, file.url_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::at("revocation.redis.url", "give url or url_env, not both"));
        }
        (None, None) => {
            return Err(ConfigError::at(
                "revocation.redis.url",
                "missing (or set url_env to the name of an environment variable)",
            ));
        }
        (Some(url), None) => (url, "revocation.redis.url"),
        (None, Some(var)) => {
            (secret_from_env(env, "revocation.redis.url_env", &var)?, "revocation.redis.url_env")
        }
    };
    if !url.expose().starts_with("redis://") {
        // Never echo the URL: it may carry a password.
        return Err(ConfigError::at(
            key,
            "expected redis://[:password@]host:port[/db] (rediss:// and unix sockets are not supported)",
        ));
    }
    let key_prefix = file.key_prefix.unwrap_or_else(|| DEFAULT_REDIS_KEY_PREFIX.to_owned());
    if key_prefix.is_empty() || key_prefix.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(ConfigError::at("revocation.redis.key_prefix", "must be non-empty, without spaces"));
    }
    let settings = RedisSettings {
        url,
        key_prefix,
        connect_timeout: file.connect_timeout.map_or(DEFAULT_REDIS_CONNECT_TIMEOUT, |d| d.0),
        command_timeout: file.command_timeout.map_or(DEFAULT_REDIS_COMMAND_TIMEOUT, |d| d.0),
        reconnect_max_backoff: file.reconnect_max_backoff.map_or(DEFAULT_REDIS_RECONNECT_MAX, |d| d.0),
        queue_capacity: file.queue_capacity.unwrap_or(DEFAULT_REDIS_QUEUE_CAPACITY),
        full_load_interval: file.full_load_interval.map_or(DEFAULT_REDIS_FULL_LOAD_INTERVAL, |d| d.0),
        ping_interval: file.ping_interval.map_or(DEFAULT_REDIS_PING_INTERVAL, |d| d.0),
        ready_before_first_load: file.ready_before_first_load.unwrap_or(false),
    };
    for (key, value) in [
        ("revocation.redis.connect_timeout", settings.connect_timeout),
        ("revocation.redis.command_timeout", settings.command_timeout),
        ("revocation.redis.reconnect_max_backoff", settings.reconnect_max_backoff),
        ("revocation.redis.full_load_interval", settings.full_load_interval),
        ("revocation.redis.ping_interval", settings.ping_interval),
    ] {
        if value.is_zero() {
            return Err(ConfigError::at(key, "must be more than 0"));
        }
    }
    if settings.queue_capacity == 0 {
        return Err(ConfigError::at("revocation.redis.queue_capacity", "must be more than 0"));
    }
    Ok(settings)
}

#[allow(clippy::too_many_arguments)]
fn resolve_endpoint(
    table: &str,
    path: Option<String>,
    default_path: &str,
    listener: Option<ListenerChoice>,
    max_age: Option<DurationValue>,
    default_max_age: Duration,
    replay_capacity: Option<usize>,
    listeners: Listeners,
) -> Result<EndpointSettings, ConfigError> {
    let path = path.unwrap_or_else(|| default_path.to_owned());
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    if !path.strip_prefix('/').is_some_and(|rest| rest.split('/').all(plain)) {
        return Err(ConfigError::at(
            format!("{table}.path"),
            format!("{path:?} is not a path like \"/backchannel-logout\" (plain segments, no trailing /)"),
        ));
    }
    let listener = listener.unwrap_or_default();
    if listener == ListenerChoice::Admin {
        if !listeners.admin {
            return Err(ConfigError::at(
                format!("{table}.listener"),
                "\"admin\" needs an [admin] table with listen = \"host:port\"",
            ));
        }
        if ADMIN_PATHS.contains(&path.as_str()) {
            return Err(ConfigError::at(format!("{table}.path"), "taken by the admin listener itself"));
        }
    }
    let max_age = max_age.map_or(default_max_age, |d| d.0);
    if max_age.is_zero() {
        return Err(ConfigError::at(format!("{table}.max_age"), "must be more than 0"));
    }
    let replay_capacity = replay_capacity.unwrap_or(DEFAULT_REPLAY_CAPACITY);
    if replay_capacity == 0 {
        return Err(ConfigError::at(format!("{table}.replay_cache_capacity"), "must be more than 0"));
    }
    Ok(EndpointSettings { path, listener, max_age, replay_capacity })
}

fn resolve_logout(
    file: Option<ReceiverFile>,
    clients: Vec<(usize, String, String)>,
    keys: &[(String, KeySourceFile)],
    listeners: Listeners,
) -> Result<Option<LogoutSettings>, ConfigError> {
    let file = match (file, clients.first()) {
        (None, None) => return Ok(None),
        (None, Some((i, _, _))) => {
            return Err(ConfigError::at(
                format!("issuers[{i}].logout_client_id"),
                "needs a [backchannel_logout] table (it says where the endpoint listens)",
            ));
        }
        (Some(_), None) => {
            return Err(ConfigError::at(
                "backchannel_logout",
                "no issuer has logout_client_id: set it on each [[issuers]] entry whose logout tokens to accept",
            ));
        }
        (Some(file), Some(_)) => file,
    };
    let endpoint = resolve_endpoint(
        "backchannel_logout",
        file.path,
        DEFAULT_LOGOUT_PATH,
        file.listener,
        file.max_age,
        DEFAULT_LOGOUT_MAX_AGE,
        file.replay_cache_capacity,
        listeners,
    )?;
    let issuers = clients
        .into_iter()
        .filter_map(|(_, issuer, client_id)| {
            let (_, source) = keys.iter().find(|(name, _)| *name == issuer)?;
            // Back-Channel Logout 1.0 §2.4: `exp` is required; `typ` is checked by the
            // receiver (`logout+jwt` when present), not by the verifier.
            Some(source.apply(IssuerConfig::new(issuer).audience(client_id)).require_exp(true))
        })
        .collect();
    Ok(Some(LogoutSettings { endpoint, issuers }))
}

fn resolve_security_events(
    file: SecurityEventsFile,
    keys: &[(String, KeySourceFile)],
    listeners: Listeners,
) -> Result<SecurityEventsSettings, ConfigError> {
    let endpoint = resolve_endpoint(
        "security_events",
        file.path,
        DEFAULT_EVENTS_PATH,
        file.listener,
        file.max_age,
        DEFAULT_EVENTS_MAX_AGE,
        file.replay_cache_capacity,
        listeners,
    )?;
    if file.audience.is_empty() {
        return Err(ConfigError::at("security_events.audience", "empty"));
    }
    if file.transmitters.is_empty() {
        return Err(ConfigError::at(
            "security_events.transmitters",
            "at least one [[security_events.transmitters]] entry is required",
        ));
    }
    let mut transmitters: Vec<TransmitterSettings> = Vec::new();
    for (i, t) in file.transmitters.into_iter().enumerate() {
        let at = |key: &str| format!("security_events.transmitters[{i}].{key}");
        if t.issuer.is_empty() {
            return Err(ConfigError::at(at("issuer"), "empty"));
        }
        if transmitters.iter().any(|other| other.issuer == t.issuer) {
            return Err(ConfigError::at(at("issuer"), format!("{:?} is configured twice", t.issuer)));
        }
        let own = keys.iter().find(|(name, _)| *name == t.issuer).map(|(_, k)| k);
        let mut source = match (t.jwks_uri, own) {
            (Some(url), _) if url.is_empty() => return Err(ConfigError::at(at("jwks_uri"), "empty")),
            (Some(url), own) => KeySourceFile {
                jwks_uri: Some(url),
                algorithms: own.map(|k| k.algorithms.clone()).unwrap_or_default(),
                leeway: own.and_then(|k| k.leeway),
                allow_http: t.allow_http,
                max_staleness: None,
                tuning: KeyTuning::default(),
            },
            (None, Some(own)) => own.clone(),
            (None, None) => {
                return Err(ConfigError::at(
                    at("jwks_uri"),
                    "missing: the transmitter is not one of the [[issuers]], so its keys must be named",
                ));
            }
        };
        if let Some(algorithms) = t.algorithms {
            source.algorithms = algorithms.iter().map(|a| a.0).collect();
        }
        if source.algorithms.is_empty() {
            return Err(ConfigError::at(at("algorithms"), "at least one algorithm is required"));
        }
        let subject_issuer = t.subject_issuer.unwrap_or_else(|| t.issuer.clone());
        if !keys.iter().any(|(name, _)| *name == subject_issuer) {
            return Err(ConfigError::at(
                at("subject_issuer"),
                format!(
                    "{subject_issuer:?} is not one of the [[issuers]]: whose tokens would its events revoke?"
                ),
            ));
        }
        let verifier = source
            .apply(IssuerConfig::new(t.issuer.clone()).audience(file.audience.clone()))
            .require_exp(false);
        transmitters.push(TransmitterSettings { issuer: t.issuer, verifier, subject_issuer });
    }
    Ok(SecurityEventsSettings { endpoint, audience: file.audience, transmitters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Env(HashMap<&'static str, &'static str>);
    impl Environment for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    const DESIGN_MINIMUM: &str = r#"
listen = "127.0.0.1:8080"
upstream = "http://127.0.0.1:9000"

[[issuers]]
issuer = "https://idp.example.com"        # discovery at issuer + /.well-known/openid-configuration
# jwks_uri = "https://idp.example.com/jwks" # instead of discovery
audiences = ["https://api.example.com"]
algorithms = ["RS256", "ES256", "EdDSA"]

[introspection]
endpoint = "https://idp.example.com/introspect"
client_id = "gateway"
client_secret = "…"                        # or client_secret_env = "VAR"
cache_ttl_secs = 30

[[routes]]
path = "/admin/*"
methods = ["POST", "DELETE"]               # absent: every method
mode = "introspect"                        # public | optional | local (default) | introspect
scopes = ["admin"]
"#;

    fn error(text: &str) -> String {
        match parse(text).and_then(|f| f.resolve(&Env(HashMap::new()))) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_the_design_minimum_as_written() {
        let settings = parse(DESIGN_MINIMUM).unwrap().resolve(&Env(HashMap::new())).unwrap();
        assert_eq!(settings.gate.issuers.len(), 1);
        assert_eq!(settings.gate.routes, 1);
        assert!(matches!(settings.frontend, Frontend::Proxy { .. }));
        assert!(!format!("{settings:?}").contains('…'), "the secret leaked into Debug");
    }

    #[test]
    fn errors_name_the_key_path() {
        let missing_aud = DESIGN_MINIMUM.replace("audiences = [\"https://api.example.com\"]", "");
        assert_eq!(error(&missing_aud), "issuers[0].audiences: missing");
        let unknown = DESIGN_MINIMUM.replace("cache_ttl_secs = 30", "cache_ttl_secs = 30\ncolour = 1");
        assert!(error(&unknown).starts_with("introspection.colour: unknown key"), "{}", error(&unknown));
        let bad_alg = DESIGN_MINIMUM.replace("\"ES256\"", "\"ES999\"");
        assert!(
            error(&bad_alg).starts_with("issuers[0].algorithms[1]: unknown algorithm"),
            "{}",
            error(&bad_alg)
        );
        let bad_mode = DESIGN_MINIMUM.replace("mode = \"introspect\"", "mode = \"strict\"");
        assert!(error(&bad_mode).starts_with("routes[0].mode: unknown mode"), "{}", error(&bad_mode));
        let no_issuers = "listen = \"127.0.0.1:1\"\nupstream = \"http://127.0.0.1:2\"\n";
        assert_eq!(error(no_issuers), "issuers: missing");
        let bad_toml = "listen = ";
        assert!(error(bad_toml).starts_with("invalid TOML"), "{}", error(bad_toml));
        let bad_listen = DESIGN_MINIMUM.replace("127.0.0.1:8080", "localhost");
        assert!(error(&bad_listen).starts_with("listen: "), "{}", error(&bad_listen));
        let both =
            DESIGN_MINIMUM.replace("cache_ttl_secs = 30", "cache_ttl_secs = 30\nclient_secret_env = \"X\"");
        assert!(error(&both).starts_with("introspection.client_secret: give"), "{}", error(&both));
        let env = DESIGN_MINIMUM.replace("client_secret = \"…\"", "client_secret_env = \"TG_NOPE\"");
        assert_eq!(
            error(&env),
            "introspection.client_secret_env: the environment variable TG_NOPE is not set"
        );
        let timeout = format!("{DESIGN_MINIMUM}\n[timeouts]\nupstream_connect = \"5 s\"\n");
        assert!(
            error(&timeout).starts_with("timeouts.upstream_connect: invalid duration"),
            "{}",
            error(&timeout)
        );
        let number = format!("{DESIGN_MINIMUM}\n[timeouts]\nupstream_connect = 5\n");
        assert!(
            error(&number).starts_with("timeouts.upstream_connect: expected a duration"),
            "{}",
            error(&number)
        );
        let frontend = DESIGN_MINIMUM.replace("upstream = ", "mode = \"sidecar\"\nupstream = ");
        assert!(error(&frontend).starts_with("mode: unknown value \"sidecar\""), "{}", error(&frontend));
        let header = format!("{DESIGN_MINIMUM}\n[identity]\nsubject = \"Authorization\"\n");
        assert!(error(&header).starts_with("identity.subject: "), "{}", error(&header));
        let pattern = DESIGN_MINIMUM.replace("path = \"/admin/*\"", "path = \"admin\"");
        assert!(error(&pattern).starts_with("routes[0].path: "), "{}", error(&pattern));
    }

    #[test]
    fn reads_secrets_from_the_environment() {
        let text = "admin_token_env = \"TG_ADMIN\"\n".to_owned()
            + &DESIGN_MINIMUM.replace("client_secret = \"…\"", "client_secret_env = \"TG_SECRET\"")
            + "[admin]\nlisten = \"127.0.0.1:9901\"\n";
        let env = Env(HashMap::from([("TG_SECRET", "s3cret"), ("TG_ADMIN", "admin-s3cret")]));
        let settings = parse(&text).unwrap().resolve(&env).unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert_eq!(settings.admin.unwrap().token.unwrap().expose(), "admin-s3cret");
    }

    #[test]
    fn durations_are_strict() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in [
            "",
            "5",
            "s",
            "5 s",
            " 5s",
            "5s ",
            "1.5s",
            "-1s",
            "5S",
            "5sec",
            "5s5ms",
            "+5s",
            "99999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ip_blocks() {
        let net = |t: &str| IpNet::parse(t).unwrap();
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.200.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")), "IPv4-mapped peers are IPv4");
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.1")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(net("::1").contains(ip("::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        for bad in
            ["10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "::ffff:10.0.0.1", "localhost", ""]
        {
            assert!(IpNet::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn gateway_limits_and_modes() {
        let settings = parse(&format!("trusted_proxies = [\"10.0.0.0/8\"]\n{DESIGN_MINIMUM}")).unwrap();
        let settings = settings.resolve(&Env(HashMap::new())).unwrap();
        assert_eq!(settings.trusted_proxies, [IpNet::parse("10.0.0.0/8").unwrap()]);
        assert_eq!(settings.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(settings.timeouts.http2_keep_alive, DEFAULT_HTTP2_KEEP_ALIVE);

        let bad_proxy = format!("trusted_proxies = [\"10.0.0.1/8\"]\n{DESIGN_MINIMUM}");
        assert!(error(&bad_proxy).starts_with("trusted_proxies[0]: "), "{}", error(&bad_proxy));
        let zero = format!("{DESIGN_MINIMUM}\n[limits]\nmax_connections = 0\n");
        assert_eq!(error(&zero), "limits.max_connections: must be more than 0");
        let prefix_in_proxy = format!("{DESIGN_MINIMUM}\n[forward_auth]\npath_prefix = \"/ext_authz\"\n");
        assert!(
            error(&prefix_in_proxy).starts_with("forward_auth: only used"),
            "{}",
            error(&prefix_in_proxy)
        );

        let forward_auth =
            DESIGN_MINIMUM.replace("upstream = \"http://127.0.0.1:9000\"", "mode = \"forward_auth\"");
        let with_prefix =
            |prefix: &str| format!("{forward_auth}\n[forward_auth]\npath_prefix = \"{prefix}\"\n");
        let settings = parse(&with_prefix("/ext_authz")).unwrap().resolve(&Env(HashMap::new())).unwrap();
        assert!(matches!(
            settings.frontend,
            Frontend::ForwardAuth { path_prefix: Some(ref p) } if p == "/ext_authz"
        ));
        for bad in ["ext_authz", "/", "/ext_authz/", "/a//b", "/a/../b", "/a?b", "/a%2Fb", "/a b"] {
            let text = with_prefix(bad);
            assert!(error(&text).starts_with("forward_auth.path_prefix: "), "{bad:?}: {}", error(&text));
        }
        let proxies_in_forward_auth = format!("trusted_proxies = [\"127.0.0.1\"]\n{forward_auth}");
        assert!(error(&proxies_in_forward_auth).starts_with("trusted_proxies: only used"));

        let spoofable = format!("{DESIGN_MINIMUM}\n[identity]\nsubject = \"X_Forwarded_For\"\n");
        assert!(error(&spoofable).starts_with("identity.subject: "), "{}", error(&spoofable));
        let twice = format!("{DESIGN_MINIMUM}\n[identity]\nsubject = \"X-User\"\nclient_id = \"X_User\"\n");
        assert!(error(&twice).contains("mapped twice"), "{}", error(&twice));
    }

    #[test]
    fn upstream_urls() {
        assert_eq!(parse_upstream("http://127.0.0.1:9000").unwrap().base(), "http://127.0.0.1:9000");
        assert!(parse_upstream("http://127.0.0.1:9000/").is_ok());
        for bad in ["https://x", "127.0.0.1:9000", "http://x/api", "http://u:p@x", "http://x?q", "ftp://x"] {
            assert!(parse_upstream(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_file_as_parsed_never_prints_inline_secrets() {
        let text = DESIGN_MINIMUM.replace("client_secret = \"…\"", "client_secret = \"cs-s3cret\"")
            + "\n[revocation.redis]\nurl = \"redis://:pw-s3cret@127.0.0.1:6379/0\"\n";
        let file = parse(&text).unwrap();
        let printed = format!("{file:?}");
        assert!(printed.contains("[redacted]"), "{printed}");
        for secret in ["cs-s3cret", "pw-s3cret"] {
            assert!(!printed.contains(secret), "{secret} leaked into Debug: {printed}");
        }
        let settings = file.resolve(&Env(HashMap::new())).unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn fleet_tables_resolve_and_name_their_keys() {
        let base = DESIGN_MINIMUM.replace(
            "algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]",
            "algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\nlogout_client_id = \"rp-1\"",
        );
        let full = format!(
            "{base}\n[admin]\nlisten = \"127.0.0.1:9901\"\n\n[revocation]\nmax_token_lifetime = \"1h\"\n\n[revocation.redis]\nurl_env = \"TG_REDIS\"\nkey_prefix = \"tg\"\n\n[backchannel_logout]\npath = \"/bcl\"\n\n[security_events]\naudience = \"https://gw.example.com\"\nlistener = \"admin\"\n[[security_events.transmitters]]\nissuer = \"https://idp.example.com\"\n"
        );
        let env = Env(HashMap::from([("TG_REDIS", "redis://:pw-s3cret@127.0.0.1:6379/0")]));
        let settings = parse(&full).unwrap().resolve(&env).unwrap();
        assert!(!format!("{settings:?}").contains("pw-s3cret"), "the Redis password leaked into Debug");
        assert_eq!(settings.gate.max_token_lifetime, Duration::from_secs(3600));
        let redis = settings.redis.as_ref().unwrap();
        assert_eq!((redis.entries_key(), redis.channel()), ("tg:entries".into(), "tg:events".into()));
        assert_eq!(redis.queue_capacity, DEFAULT_REDIS_QUEUE_CAPACITY);
        let logout = settings.backchannel_logout.as_ref().unwrap();
        assert_eq!((logout.endpoint.path.as_str(), logout.endpoint.listener), ("/bcl", ListenerChoice::Main));
        assert_eq!(logout.issuers.len(), 1);
        let events = settings.security_events.as_ref().unwrap();
        assert_eq!(events.endpoint.listener, ListenerChoice::Admin);
        assert_eq!(events.transmitters[0].subject_issuer, "https://idp.example.com");

        let bad = |from: &str, to: &str| {
            let text = full.replace(from, to);
            match parse(&text).and_then(|f| f.resolve(&env)) {
                Ok(_) => panic!("accepted with {to:?}"),
                Err(e) => e.to_string(),
            }
        };
        let e = bad("key_prefix = \"tg\"", "key_prefix = \"tg\"\ncolour = 1");
        assert!(e.starts_with("revocation.redis.colour: unknown key"), "{e}");
        let e = bad("url_env = \"TG_REDIS\"", "url = \"http://x\"");
        assert!(e.starts_with("revocation.redis.url: expected redis://"), "{e}");
        let e = bad("url_env = \"TG_REDIS\"", "url_env = \"TG_REDIS\"\nurl = \"redis://x\"");
        assert!(e.starts_with("revocation.redis.url: give url or url_env"), "{e}");
        let e = bad("key_prefix = \"tg\"", "key_prefix = \"tg\"\ncommand_timeout = \"0s\"");
        assert_eq!(e, "revocation.redis.command_timeout: must be more than 0");
        let e = bad("path = \"/bcl\"", "path = \"bcl/\"");
        assert!(e.starts_with("backchannel_logout.path: "), "{e}");
        let e = bad("path = \"/bcl\"", "path = \"/bcl\"\nnonce = true");
        assert!(e.starts_with("backchannel_logout.nonce: unknown key"), "{e}");
        let e = bad("logout_client_id = \"rp-1\"", "");
        assert!(e.starts_with("backchannel_logout: no issuer has logout_client_id"), "{e}");
        let e = bad("[backchannel_logout]\npath = \"/bcl\"\n", "");
        assert!(e.starts_with("issuers[0].logout_client_id: needs a [backchannel_logout]"), "{e}");
        let e = bad("listener = \"admin\"", "listener = \"admin\"\npath = \"/metrics\"");
        assert_eq!(e, "security_events.path: taken by the admin listener itself");
        let e = bad(
            "[[security_events.transmitters]]\nissuer = \"https://idp.example.com\"",
            "[[security_events.transmitters]]\nissuer = \"https://other.example.com\"",
        );
        assert!(e.starts_with("security_events.transmitters[0].jwks_uri: missing"), "{e}");
        let e = bad(
            "[[security_events.transmitters]]\nissuer = \"https://idp.example.com\"",
            "[[security_events.transmitters]]\nissuer = \"https://other.example.com\"\njwks_uri = \"https://other.example.com/jwks\"\nalgorithms = [\"ES256\"]",
        );
        assert!(e.starts_with("security_events.transmitters[0].subject_issuer: "), "{e}");
        let e = bad("audience = \"https://gw.example.com\"", "audience = \"\"");
        assert_eq!(e, "security_events.audience: empty");
        let e = bad("max_token_lifetime = \"1h\"", "max_token_lifetime = \"0s\"");
        assert_eq!(e, "revocation.max_token_lifetime: at least 1s");
    }
}
