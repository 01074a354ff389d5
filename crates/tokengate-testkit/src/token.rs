//! Minting tokens: [`TokenBuilder`] for valid and deliberately broken JWTs, [`raw_token`] for
//! byte-level malformed ones, and [`OpaqueTokenBuilder`] for opaque tokens that only the issuer's
//! introspection endpoint can vouch for.
//!
//! The builder writes the header and claims JSON itself (so any field can be set, removed or
//! given a wrong type) and hands only the signing to `jsonwebtoken::crypto::sign`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

use crate::issuer::Issuer;
use crate::keys::{KeyKind, SigningKey, alg_name};

/// Default token lifetime: five minutes, long enough for any test, short like real access tokens.
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 300;

/// The member of `events` that makes a JWT a back-channel logout token (OpenID Connect
/// Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// CAEP `session-revoked` event type.
pub const CAEP_SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// CAEP `credential-change` event type.
pub const CAEP_CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";

/// Default lifetime of a logout token: two minutes, as OWASP ASVS 10.5.5 recommends.
pub const DEFAULT_LOGOUT_TOKEN_TTL_SECS: i64 = 120;

/// Bytes of randomness in the default `jti`.
const JTI_BYTES: usize = 16;

/// Bytes of randomness in an opaque token (43 base64url characters).
const OPAQUE_TOKEN_BYTES: usize = 32;

/// Builds one token for an [`Issuer`]; get one from [`Issuer::token`].
///
/// Defaults: header `{"alg":"RS256","typ":"JWT","kid":<current RSA kid>}`, claims
/// `{"iss": <issuer url>, "sub":"user-1", "aud": <audience>, "iat": now, "nbf": now,
/// "exp": now+300, "jti": <random>, "scope":"read", "client_id":"client-1"}` where `now` is
/// [`Issuer::now`] when the builder was made.
///
/// Header fields set with [`header`](Self::header) / [`without_header`](Self::without_header)
/// are applied last, over the `alg`, `typ` and `kid` the builder chose, whatever the call order.
/// Claims are a plain map: later calls win.
#[derive(Clone)]
pub struct TokenBuilder {
    issuer: Issuer,
    now: i64,
    alg: Algorithm,
    /// The key that signs (and whose kid goes in the header).
    key: Arc<SigningKey>,
    claims: Map<String, Value>,
    header_overrides: Vec<(String, Option<Value>)>,
}

impl std::fmt::Debug for TokenBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBuilder")
            .field("alg", &self.alg)
            .field("kid", &self.key.kid)
            .field("claims", &self.claims)
            .field("header_overrides", &self.header_overrides)
            .finish_non_exhaustive()
    }
}

impl TokenBuilder {
    pub(crate) fn new(issuer: Issuer) -> TokenBuilder {
        let now = issuer.now();
        let key = issuer.current_key(KeyKind::Rsa);
        let mut claims = default_claims(&issuer, now);
        claims.insert("nbf".into(), json!(now));
        TokenBuilder { issuer, now, alg: Algorithm::RS256, key, claims, header_overrides: Vec::new() }
    }

    /// A back-channel logout token: header `typ` `logout+jwt`; claims `{"iss", "aud":
    /// client_id, "iat": now, "exp": now+120, "jti": <random>, "sub":"user-1", "events":
    /// {"http://schemas.openid.net/event/backchannel-logout": {}}}` — no `nonce`, `scope`,
    /// `client_id` or `nbf`. Add `sid` with [`claim`](Self::claim); remove `sub` with
    /// [`without_claim`](Self::without_claim).
    pub(crate) fn logout(issuer: Issuer, client_id: &str) -> TokenBuilder {
        let mut builder = TokenBuilder::new(issuer);
        for name in ["scope", "client_id", "nbf"] {
            builder.claims.remove(name);
        }
        builder
            .claim("aud", json!(client_id))
            .expires_in(DEFAULT_LOGOUT_TOKEN_TTL_SECS)
            .claim("events", json!({ BACKCHANNEL_LOGOUT_EVENT: {} }))
            .header("typ", json!("logout+jwt"))
    }

    /// A Security Event Token (RFC 8417) as pushed per RFC 8935: header `typ`
    /// `secevent+jwt`; claims `{"iss", "aud": audience, "iat": now, "jti": <random>,
    /// "events": {event_type: {"subject": subject, "event_timestamp": now}}}` — no `exp`,
    /// `sub`, `scope`, `client_id` or `nbf`.
    pub(crate) fn security_event(
        issuer: Issuer,
        audience: &str,
        event_type: &str,
        subject: Value,
    ) -> TokenBuilder {
        let mut builder = TokenBuilder::new(issuer);
        let now = builder.now;
        for name in ["scope", "client_id", "nbf", "exp", "sub"] {
            builder.claims.remove(name);
        }
        builder
            .claim("aud", json!(audience))
            .claim("events", json!({ event_type: { "subject": subject, "event_timestamp": now } }))
            .header("typ", json!("secevent+jwt"))
    }

    /// Signs with `alg`, using the issuer's current key of the matching family (RS*/PS* → RSA,
    /// ES256 → P-256, EdDSA → Ed25519) and its kid.
    ///
    /// # Panics
    /// For HMAC algorithms (use [`sign_hmac`](Self::sign_hmac)) and ES384 (no P-384 key).
    pub fn alg(mut self, alg: Algorithm) -> Self {
        self.key = self.issuer.current_key(KeyKind::for_algorithm(alg));
        self.alg = alg;
        self
    }

    /// Signs with the key named `kid` — also one removed from the JWKS — and puts `kid` in the
    /// header. If the current algorithm does not fit that key's family, the family's JWK
    /// algorithm (RS256 / ES256 / EdDSA) is used instead.
    ///
    /// # Panics
    /// If the issuer never had a key named `kid`.
    pub fn kid_key(mut self, kid: &str) -> Self {
        self.key = self.issuer.key_by_kid(kid);
        if KeyKind::for_algorithm(self.alg) != self.key.kind {
            self.alg = self.key.kind.jwk_alg();
        }
        self
    }

    /// Sets (or overrides) any claim.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.to_owned(), value);
        self
    }

    /// Removes a claim.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets (or overrides) any header field: `kid`, `typ`, `crit`, `jku`, ... Overriding `alg`
    /// changes only the header text, not how the token is signed.
    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header_overrides.push((name.to_owned(), Some(value)));
        self
    }

    /// Removes a header field (also `alg`, `typ` or `kid`).
    pub fn without_header(mut self, name: &str) -> Self {
        self.header_overrides.push((name.to_owned(), None));
        self
    }

    /// Sets the `scope` claim (space-separated scopes).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", json!(scope))
    }

    /// Sets the `sub` claim.
    // The JWT claim name is the clearest name here; nobody will mistake it for subtraction.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", json!(sub))
    }

    /// Sets the `aud` claim: a string or an array of strings (or anything else, to test
    /// rejection).
    pub fn aud(self, aud: Value) -> Self {
        self.claim("aud", aud)
    }

    /// Sets `exp` to now + `secs`; negative means already expired.
    pub fn expires_in(self, secs: i64) -> Self {
        let exp = self.now + secs;
        self.claim("exp", json!(exp))
    }

    /// The header and claims JSON that [`sign`](Self::sign) would use.
    pub fn parts(self) -> (Value, Value) {
        let header = self.header_json(self.alg);
        (Value::Object(header), Value::Object(self.claims))
    }

    /// A compact JWS signed with the chosen key and algorithm.
    pub fn sign(self) -> String {
        let key = self.key.clone();
        self.sign_with(self.alg, &key.encoding)
    }

    /// A compact JWS signed with HS256/384/512 and `secret`; the header's `alg` is that HMAC
    /// algorithm (unless overridden) and `kid` stays the asymmetric key's — e.g. for the
    /// "HS256 signed with the RSA public key PEM as secret" attack.
    ///
    /// # Panics
    /// If `alg` is not an HMAC algorithm.
    pub fn sign_hmac(self, alg: Algorithm, secret: &[u8]) -> String {
        assert!(
            matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512),
            "tokengate-testkit: sign_hmac needs an HS* algorithm, got {alg:?}"
        );
        self.sign_with(alg, &EncodingKey::from_secret(secret))
    }

    /// Signs with a fresh key of the same family that the issuer never published, keeping the
    /// same header (`kid` included): the signature does not verify.
    pub fn sign_with_foreign_key(self) -> String {
        let foreign = SigningKey::generate(self.key.kind, &self.key.kid);
        self.sign_with(self.alg, &foreign.encoding)
    }

    /// The header as set (tests set `alg` to `"none"`, `"None"`, ...) and the payload, with an
    /// empty signature: `header.payload.`.
    pub fn unsigned(self) -> String {
        format!("{}.", self.signing_input(self.alg))
    }

    fn header_json(&self, alg: Algorithm) -> Map<String, Value> {
        let mut header = Map::new();
        header.insert("alg".into(), json!(alg_name(alg)));
        header.insert("typ".into(), json!("JWT"));
        header.insert("kid".into(), json!(self.key.kid));
        for (name, value) in &self.header_overrides {
            match value {
                Some(value) => header.insert(name.clone(), value.clone()),
                None => header.remove(name),
            };
        }
        header
    }

    fn signing_input(&self, alg: Algorithm) -> String {
        let header = serde_json::to_vec(&self.header_json(alg)).expect("header serialises");
        let claims = serde_json::to_vec(&self.claims).expect("claims serialise");
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims))
    }

    fn sign_with(&self, alg: Algorithm, key: &EncodingKey) -> String {
        crate::install_crypto_provider();
        let input = self.signing_input(alg);
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg)
            .unwrap_or_else(|e| panic!("tokengate-testkit: signing with {alg:?} failed: {e}"));
        format!("{input}.{signature}")
    }
}

/// Builds a compact token from the raw text of a header and a payload (base64url-encoded here,
/// byte for byte) and a signature segment used as is — for malformed-token tests.
pub fn raw_token(header_json: &str, payload_json: &str, signature_b64: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(payload_json),
        signature_b64
    )
}

/// Builds one opaque access token for an [`Issuer`]; get one from [`Issuer::opaque_token`].
///
/// The token is 32 random bytes in base64url — no dots, nothing to decode. The issuer remembers
/// it with its claims, which its introspection endpoint answers (plus `"active": true` and
/// `"token_type": "Bearer"`) while `exp` is in the future at [`Issuer::now`] and the token is not
/// revoked. Defaults: `{"iss": <issuer url>, "sub":"user-1", "aud": <audience>, "iat": now,
/// "exp": now+300, "jti": <random>, "scope":"read", "client_id":"client-1"}`; a token without
/// `exp` never expires.
#[derive(Clone, Debug)]
pub struct OpaqueTokenBuilder {
    issuer: Issuer,
    now: i64,
    claims: Map<String, Value>,
}

impl OpaqueTokenBuilder {
    pub(crate) fn new(issuer: Issuer) -> OpaqueTokenBuilder {
        let now = issuer.now();
        let claims = default_claims(&issuer, now);
        OpaqueTokenBuilder { issuer, now, claims }
    }

    /// Sets (or overrides) any claim introspection will answer.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.to_owned(), value);
        self
    }

    /// Removes a claim.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets the `scope` claim (space-separated scopes).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", json!(scope))
    }

    /// Sets the `sub` claim.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", json!(sub))
    }

    /// Sets the `aud` claim: a string or an array of strings.
    pub fn aud(self, aud: Value) -> Self {
        self.claim("aud", aud)
    }

    /// Sets `exp` to now + `secs`; negative means already expired.
    pub fn expires_in(self, secs: i64) -> Self {
        let exp = self.now + secs;
        self.claim("exp", json!(exp))
    }

    /// The claims introspection would answer for the token.
    pub fn claims(&self) -> Value {
        Value::Object(self.claims.clone())
    }

    /// Makes the issuer remember the token and returns it.
    pub fn issue(self) -> String {
        let token = random_base64url::<OPAQUE_TOKEN_BYTES>();
        self.issuer.remember_opaque(token.clone(), self.claims);
        token
    }
}

/// The claims JWTs and opaque tokens share by default.
fn default_claims(issuer: &Issuer, now: i64) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer.url()));
    claims.insert("sub".into(), json!("user-1"));
    claims.insert("aud".into(), json!(issuer.audience()));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + DEFAULT_TOKEN_TTL_SECS));
    claims.insert("jti".into(), json!(random_base64url::<JTI_BYTES>()));
    claims.insert("scope".into(), json!("read"));
    claims.insert("client_id".into(), json!("client-1"));
    claims
}

fn random_base64url<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}
