//! Route rules: method + path pattern → [`Requirement`] (mode and scopes).
//!
//! Rules match the *normalised* path, never the raw one, and the normalised path is what the
//! inner service then sees, so a rule and the service can never disagree about which resource
//! was asked for. Normalising ([`normalize_path`]):
//!
//! - percent-encoded unreserved characters (`%41`, `%2e`, `%7E`) are decoded; every other
//!   escape is kept, with upper-case hex;
//! - `.` and `..` segments are resolved (never above the root), repeated `/` collapse;
//! - an encoded `/`, `\`, `%` or `;`, an encoded control character, a raw `\`, a `;` (path
//!   parameters), or an invalid escape makes the request a 400: such paths mean different
//!   things to different servers (Tomcat and Spring decode `%3B` into a path parameter), so
//!   they are refused rather than guessed at.
//!
//! Patterns: exact (`/health`), prefix (`/admin/*`, which covers `/admin` itself and everything
//! below it), and `{name}` segments matching one non-empty segment (`/users/{id}/keys`). A
//! trailing `/` on the request never changes which rule matches. Paths are case-sensitive.
//! First matching rule wins; requests that match none get the policy's default requirement.
//! A rule for `GET` also covers `HEAD`, which reads the same resource.

use std::fmt;
use std::sync::Arc;

use http::Method;

use crate::error::AuthError;

/// How a route is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// No check at all; a token, if sent, is ignored and no `Principal` is set.
    Public,
    /// A token is verified if one is present (and rejected if invalid); none is fine.
    Optional,
    /// The token is verified locally: signature, claims, revocation list. The default.
    Local,
    /// Verified locally, then confirmed with the issuer's introspection endpoint.
    Introspect,
    /// Refused with 403 whatever the token: for deny-by-default policies.
    Deny,
}

impl Mode {
    /// The mode's configuration name (`public`, `optional`, `local`, `introspect`, `deny`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Public => "public",
            Mode::Optional => "optional",
            Mode::Local => "local",
            Mode::Introspect => "introspect",
            Mode::Deny => "deny",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Mode::Public),
            "optional" => Ok(Mode::Optional),
            "local" => Ok(Mode::Local),
            "introspect" => Ok(Mode::Introspect),
            "deny" => Ok(Mode::Deny),
            other => Err(PolicyError(format!(
                "unknown mode {other:?}: expected public, optional, local, introspect or deny"
            ))),
        }
    }
}

/// What a request must present to reach a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// How the token is checked.
    pub mode: Mode,
    /// Scopes the token must all carry.
    pub scopes: Arc<[String]>,
}

impl Requirement {
    /// A requirement of `mode` with no scopes.
    pub fn new(mode: Mode) -> Self {
        Self { mode, scopes: Arc::from([]) }
    }

    /// The same requirement, also demanding `scopes`.
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// No check at all.
    pub fn public() -> Self {
        Self::new(Mode::Public)
    }

    /// Verify a token if one is present.
    pub fn optional() -> Self {
        Self::new(Mode::Optional)
    }

    /// Local verification (the default).
    pub fn local() -> Self {
        Self::new(Mode::Local)
    }

    /// Local verification plus introspection.
    pub fn introspect() -> Self {
        Self::new(Mode::Introspect)
    }

    /// Always refused.
    pub fn deny() -> Self {
        Self::new(Mode::Deny)
    }
}

impl Requirement {
    /// Checks that the requirement means what it says:
    ///
    /// - scopes only on modes that require a token (`local`, `introspect`): on `public` they
    ///   would be ignored, and on `optional` a request without a token would pass a route whose
    ///   configuration seems to demand a scope — a silent weakening, so it is refused;
    /// - every scope a non-empty RFC 6749 §3.3 `scope-token` (`%x21 / %x23-5B / %x5D-7E`),
    ///   so it can be compared with a token's scopes and quoted in `WWW-Authenticate`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !self.scopes.is_empty() && !matches!(self.mode, Mode::Local | Mode::Introspect) {
            return Err(PolicyError(format!(
                "mode {} cannot require scopes (it does not require a token); use local or introspect",
                self.mode.as_str()
            )));
        }
        for scope in self.scopes.iter() {
            if !is_scope_token(scope) {
                return Err(PolicyError(format!(
                    "scope {scope:?} is not a valid scope token (RFC 6749 §3.3: printable ASCII, no space, '\"' or '\\')"
                )));
            }
        }
        Ok(())
    }
}

/// Whether `scope` is one RFC 6749 §3.3 `scope-token`: `1*( %x21 / %x23-5B / %x5D-7E )`,
/// printable ASCII without space, `"` or `\`.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty() && scope.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// The scopes of a `scope` string, as RFC 6749 §3.3 writes them: `scope-token`s separated by
/// spaces. Only the space separates: a piece that is not one `scope-token` (it holds a tab, a
/// line break, a quote, a non-ASCII character) is left out, never split further, so
/// `"read\tadmin"` grants neither `read` nor `admin`. Empty pieces (runs of spaces) are
/// skipped.
///
/// ```
/// use tokengate::policy::scope_tokens;
/// assert!(scope_tokens(" read  write ").eq(["read", "write"]));
/// assert!(scope_tokens("read\tadmin orders:read").eq(["orders:read"]));
/// ```
pub fn scope_tokens(scope: &str) -> impl Iterator<Item = &str> {
    scope.split(' ').filter(|piece| is_scope_token(piece))
}

impl Default for Requirement {
    fn default() -> Self {
        Self::local()
    }
}

/// An invalid rule or pattern, found when the policy is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// A parsed path pattern: exact, `/prefix/*`, with `{param}` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
    prefix: bool,
}

impl PathPattern {
    /// Parses a pattern; see the module docs for the syntax.
    pub fn parse(pattern: &str) -> Result<Self, PolicyError> {
        let bad = |why: &str| PolicyError(format!("route pattern {pattern:?}: {why}"));
        if !pattern.starts_with('/') {
            return Err(bad("must start with '/'"));
        }
        let mut rest = &pattern[1..];
        let mut prefix = false;
        if rest == "*" {
            rest = "";
            prefix = true;
        } else if let Some(head) = rest.strip_suffix("/*") {
            rest = head;
            prefix = true;
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for raw in rest.split('/') {
                if raw.is_empty() {
                    return Err(bad("has an empty segment"));
                }
                if raw.starts_with('{') && raw.ends_with('}') && raw.len() > 2 {
                    segments.push(Segment::Param);
                    continue;
                }
                if raw.contains(['{', '}', '*']) {
                    return Err(bad("'*' may only end a pattern, and '{name}' must be a whole segment"));
                }
                // Normalise the segment as a request path would be, so `%7E` and `~` match alike;
                // a `.` or `..` segment normalises to nothing and is refused.
                let normal = normalize_path(&format!("/{raw}/"))
                    .map_err(|_| bad("has a segment that is not a valid path segment"))?;
                let literal = normal.trim_matches('/');
                if literal.is_empty() || literal.contains('/') {
                    return Err(bad("has a '.' or '..' segment"));
                }
                segments.push(Segment::Literal(literal.to_string()));
            }
        }
        Ok(Self { source: pattern.to_string(), segments, prefix })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the normalised `path` matches.
    pub fn matches(&self, path: &NormalizedPath) -> bool {
        let mut buf = [""; INLINE_SEGMENTS];
        match path.split_into(&mut buf) {
            Some(segments) => self.matches_segments(segments),
            None => self.matches_iter(path),
        }
    }

    /// [`matches`](Self::matches) against segments split once for every rule of a policy.
    fn matches_segments(&self, segments: &[&str]) -> bool {
        let length_fits = if self.prefix {
            segments.len() >= self.segments.len()
        } else {
            segments.len() == self.segments.len()
        };
        length_fits
            && self.segments.iter().zip(segments).all(|(want, got)| match want {
                Segment::Param => true,
                Segment::Literal(lit) => lit == got,
            })
    }

    /// The same, for paths deeper than [`INLINE_SEGMENTS`].
    fn matches_iter(&self, path: &NormalizedPath) -> bool {
        let mut segments = path.segments();
        for want in &self.segments {
            let Some(got) = segments.next() else {
                return false;
            };
            match want {
                Segment::Param => {}
                Segment::Literal(lit) => {
                    if lit != got {
                        return false;
                    }
                }
            }
        }
        self.prefix || segments.next().is_none()
    }
}

/// A rule: methods (all when empty) + path pattern → requirement.
#[derive(Debug, Clone)]
pub struct Rule {
    methods: Vec<Method>,
    pattern: PathPattern,
    requirement: Requirement,
}

impl Rule {
    /// A rule for `pattern` and every method. Refuses an invalid pattern, and a requirement
    /// that [`Requirement::validate`] refuses.
    pub fn new(pattern: &str, requirement: Requirement) -> Result<Self, PolicyError> {
        let pattern = PathPattern::parse(pattern)?;
        requirement.validate().map_err(|e| PolicyError(format!("route {:?}: {e}", pattern.as_str())))?;
        Ok(Self { methods: Vec::new(), pattern, requirement })
    }

    /// Restricts the rule to `methods` (a `GET` rule also covers `HEAD`).
    pub fn methods<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        self.methods = methods.into_iter().collect();
        if self.methods.contains(&Method::GET) && !self.methods.contains(&Method::HEAD) {
            self.methods.push(Method::HEAD);
        }
        self
    }

    /// The rule's path pattern.
    pub fn pattern(&self) -> &PathPattern {
        &self.pattern
    }

    /// The rule's requirement.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }

    fn matches(&self, method: &Method, path: &NormalizedPath) -> bool {
        self.allows(method) && self.pattern.matches(path)
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }
}

/// An ordered list of rules and a default requirement.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicy {
    rules: Vec<Rule>,
    default: Requirement,
}

impl RoutePolicy {
    /// A policy with no rules whose default is `local`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a rule (rules are tried in the order added; the first match wins).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets the requirement of requests no rule matches (`Requirement::deny()` for
    /// deny-by-default).
    pub fn default_requirement(mut self, requirement: Requirement) -> Self {
        self.default = requirement;
        self
    }

    /// The requirement for `method` on the normalised `path`, and the rule that gave it
    /// (`None` for the default).
    pub fn requirement(&self, method: &Method, path: &NormalizedPath) -> (&Requirement, Option<&Rule>) {
        // Split the path once, not once per rule: with 100 rules that was most of the cost.
        let mut buf = [""; INLINE_SEGMENTS];
        let found = match path.split_into(&mut buf) {
            Some(segments) => {
                self.rules.iter().find(|r| r.allows(method) && r.pattern.matches_segments(segments))
            }
            None => self.rules.iter().find(|r| r.matches(method, path)),
        };
        match found {
            Some(rule) => (&rule.requirement, Some(rule)),
            None => (&self.default, None),
        }
    }

    /// Every rule, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Checks every rule's requirement and the default's (see [`Requirement::validate`]).
    /// [`Rule::new`] already checked the rules; the builder calls this for the default.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.default.validate().map_err(|e| PolicyError(format!("default requirement: {e}")))?;
        for rule in &self.rules {
            rule.requirement
                .validate()
                .map_err(|e| PolicyError(format!("route {:?}: {e}", rule.pattern.as_str())))?;
        }
        Ok(())
    }

    /// Whether any rule (or the default) uses `mode`.
    pub fn uses_mode(&self, mode: Mode) -> bool {
        self.default.mode == mode || self.rules.iter().any(|r| r.requirement.mode == mode)
    }
}

/// A path after [`normalize_path`]: starts with `/`, no empty, `.` or `..` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    /// Normalises `raw`; see [`normalize_path`].
    pub fn new(raw: &str) -> Result<Self, AuthError> {
        normalize_path(raw).map(Self)
    }

    /// The normalised path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised path, as an owned string (no copy).
    pub fn into_string(self) -> String {
        self.0
    }

    /// The path's segments; a trailing `/` adds none.
    fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The segments in `buf`, or `None` when there are more than it holds.
    fn split_into<'p, 'b>(&'p self, buf: &'b mut [&'p str; INLINE_SEGMENTS]) -> Option<&'b [&'p str]> {
        let mut n = 0;
        for segment in self.segments() {
            *buf.get_mut(n)? = segment;
            n += 1;
        }
        Some(&buf[..n])
    }
}

/// Paths with up to this many segments are split into an array on the stack for matching;
/// deeper ones (rare, and never faster to attack with) are matched segment by segment.
const INLINE_SEGMENTS: usize = 32;

const BAD_PATH: AuthError = AuthError::InvalidRequest("the request path is not allowed");

/// Normalises a request path (see the module docs), or refuses it with 400.
pub fn normalize_path(raw: &str) -> Result<String, AuthError> {
    if !raw.starts_with('/') {
        return Err(BAD_PATH);
    }
    if is_plain(raw) {
        return Ok(raw.to_owned());
    }
    normalize_general(raw)
}

/// [`normalize_path`] for any path that starts with `/`: decode, refuse, resolve.
fn normalize_general(raw: &str) -> Result<String, AuthError> {
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(BAD_PATH)?;
                let value = (hex_value(hex[0]).ok_or(BAD_PATH)? << 4) | hex_value(hex[1]).ok_or(BAD_PATH)?;
                if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                    decoded.push(value as char);
                } else if matches!(value, b'/' | b'\\' | b'%' | b';') || value.is_ascii_control() {
                    return Err(BAD_PATH);
                } else {
                    decoded.push('%');
                    decoded.push(HEX_UPPER[(value >> 4) as usize] as char);
                    decoded.push(HEX_UPPER[(value & 0xf) as usize] as char);
                }
                i += 3;
            }
            b'\\' | b';' => return Err(BAD_PATH),
            b if b.is_ascii_control() || b == b' ' || !b.is_ascii() => return Err(BAD_PATH),
            _ => {
                decoded.push(b as char);
                i += 1;
            }
        }
    }

    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                out.pop();
                trailing_slash = true;
            }
            s => out.push(s),
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for s in &out {
        normal.push('/');
        normal.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        normal.push('/');
    }
    Ok(normal)
}

/// Whether `raw` is a path [`normalize_path`] returns unchanged, answered in one pass without
/// building anything: it starts with `/`, is printable ASCII without `%`, `\\` or `;`, and has
/// no empty, `.` or `..` segment (one trailing `/` aside). `false` is not the contrary: a path
/// with escapes may be normalised too.
pub fn is_plain_path(raw: &str) -> bool {
    raw.starts_with('/') && is_plain(raw)
}

/// Whether `raw` (starting with `/`) is already normalised and allowed as it is: printable
/// ASCII without `%`, `\\` or `;`, and no empty, `.` or `..` segment except one trailing `/` —
/// the common case, answered in one pass without building anything.
fn is_plain(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if !bytes.iter().all(|&b| b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b';')) {
        return false;
    }
    let inner = raw.strip_suffix('/').unwrap_or(raw);
    inner.is_empty() || inner[1..].split('/').all(|segment| !matches!(segment, "" | "." | ".."))
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_path_is_its_own_normalised_form() {
        for path in ["/", "/a", "/a/b/", "/.well-known/x", "/a.b/c..d"] {
            assert!(is_plain_path(path), "{path}");
            assert_eq!(normalize_path(path).unwrap(), path);
        }
        for path in ["", "a", "//a", "/./a", "/a/..", "/a%41", "/a;b", "/a\\b", "/é"] {
            assert!(!is_plain_path(path), "{path}");
        }
    }

    fn norm(p: &str) -> Result<String, AuthError> {
        normalize_path(p)
    }

    #[test]
    fn normalises_dots_slashes_and_unreserved_escapes() {
        assert_eq!(norm("/").unwrap(), "/");
        assert_eq!(norm("//admin").unwrap(), "/admin");
        assert_eq!(norm("/admin/../x").unwrap(), "/x");
        assert_eq!(norm("/a/./b/").unwrap(), "/a/b/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/../../etc").unwrap(), "/etc");
        assert_eq!(norm("/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/x/%2E%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/%61dmin").unwrap(), "/admin");
        assert_eq!(norm("/a%20b%c3%a9").unwrap(), "/a%20b%C3%A9");
    }

    #[test]
    fn refuses_ambiguous_paths() {
        for p in [
            "/admin%2fx",
            "/admin%2Fx",
            "/a%5cb",
            "/a\\b",
            "/a;jsessionid=1",
            "/a%",
            "/a%zz",
            "/a%2",
            "/a%25",
            "/a%00",
            "/a%3Bjsessionid=1",
            "/a%3b",
            "*",
            "admin",
        ] {
            assert_eq!(norm(p), Err(BAD_PATH), "{p}");
        }
    }

    fn policy() -> RoutePolicy {
        RoutePolicy::new()
            .rule(Rule::new("/health", Requirement::public()).unwrap())
            .rule(
                Rule::new("/admin/*", Requirement::introspect())
                    .unwrap()
                    .methods([Method::POST, Method::DELETE]),
            )
            .rule(Rule::new("/admin/*", Requirement::local().with_scopes(["admin"])).unwrap())
            .rule(Rule::new("/users/{id}/keys", Requirement::local().with_scopes(["keys"])).unwrap())
            .default_requirement(Requirement::deny())
    }

    fn mode_of(p: &RoutePolicy, method: Method, path: &str) -> Mode {
        let path = NormalizedPath::new(path).unwrap();
        p.requirement(&method, &path).0.mode
    }

    #[test]
    fn first_match_wins_and_tricks_do_not_slip_past() {
        let p = policy();
        assert_eq!(mode_of(&p, Method::GET, "/health"), Mode::Public);
        assert_eq!(mode_of(&p, Method::GET, "/health/"), Mode::Public);
        assert_eq!(mode_of(&p, Method::GET, "/healthz"), Mode::Deny);
        assert_eq!(mode_of(&p, Method::POST, "/admin"), Mode::Introspect);
        assert_eq!(mode_of(&p, Method::POST, "/admin/"), Mode::Introspect);
        assert_eq!(mode_of(&p, Method::POST, "//admin/users"), Mode::Introspect);
        assert_eq!(mode_of(&p, Method::POST, "/health/../admin/x"), Mode::Introspect);
        assert_eq!(mode_of(&p, Method::POST, "/%2e%2e/admin/x"), Mode::Introspect);
        assert_eq!(mode_of(&p, Method::POST, "/%61dmin/x"), Mode::Introspect);
        assert_eq!(mode_of(&p, Method::GET, "/admin/x"), Mode::Local);
        assert_eq!(mode_of(&p, Method::GET, "/Admin/x"), Mode::Deny);
        assert_eq!(mode_of(&p, Method::GET, "/users/42/keys"), Mode::Local);
        assert_eq!(mode_of(&p, Method::GET, "/users//keys"), Mode::Deny);
        assert_eq!(mode_of(&p, Method::GET, "/users/42/keys/x"), Mode::Deny);
    }

    #[test]
    fn get_rules_cover_head() {
        let p = RoutePolicy::new()
            .rule(Rule::new("/r", Requirement::introspect()).unwrap().methods([Method::GET]))
            .default_requirement(Requirement::public());
        assert_eq!(mode_of(&p, Method::HEAD, "/r"), Mode::Introspect);
        assert_eq!(mode_of(&p, Method::POST, "/r"), Mode::Public);
    }

    proptest::proptest! {
        /// The fast path never disagrees with the general one.
        #[test]
        fn plain_paths_are_their_own_normal_form(path in "/[ -~]{0,40}") {
            if is_plain(&path) {
                proptest::prop_assert_eq!(normalize_general(&path), Ok(path.clone()));
            }
        }

        #[test]
        fn plain_segment_paths_take_the_fast_path(path in "(/[a-z.]{0,4}){0,6}/?") {
            if !path.is_empty() && is_plain(&path) {
                proptest::prop_assert_eq!(normalize_general(&path), Ok(path.clone()));
            }
        }
    }

    #[test]
    fn scopes_need_a_required_token_and_valid_names() {
        for mode in [Mode::Public, Mode::Optional, Mode::Deny] {
            let error = Rule::new("/x", Requirement::new(mode).with_scopes(["read"])).unwrap_err();
            assert!(error.0.contains("cannot require scopes"), "{error}");
        }
        for bad in ["", "has space", "quote\"", "back\\slash", "é"] {
            let error = Rule::new("/x", Requirement::local().with_scopes([bad])).unwrap_err();
            assert!(error.0.contains("not a valid scope token"), "{bad}: {error}");
        }
        assert!(Rule::new("/x", Requirement::introspect().with_scopes(["read:all", "urn:x/y"])).is_ok());
        let policy = RoutePolicy::new().default_requirement(Requirement::optional().with_scopes(["a"]));
        assert!(policy.validate().unwrap_err().0.starts_with("default requirement:"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["admin", "/a//b", "/a/*/b", "/a*", "/a/../b", "/{x", "/a;b"] {
            assert!(PathPattern::parse(p).is_err(), "{p}");
        }
        assert!(PathPattern::parse("/*").unwrap().matches(&NormalizedPath::new("/anything/at/all").unwrap()));
        assert!(PathPattern::parse("/").unwrap().matches(&NormalizedPath::new("/").unwrap()));
    }
}
