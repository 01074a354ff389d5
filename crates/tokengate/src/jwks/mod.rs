//! Key sets: JWKS documents and PEM keys parsed once into ready verification keys.
//!
//! A [`KeySet`] is immutable; it is parsed once and shared behind an `Arc`, and readers load
//! it from an `ArcSwap` so a request never waits for a parse or a fetch. Parsing binds every
//! key to the algorithms it may verify (`kty`, `crv`, `alg`, `use`, `key_ops`), so a token's
//! `alg` header can only ever select among algorithms its key was published for.
//!
//! Keys that cannot be used safely are skipped with a warning rather than failing the whole
//! set: `use` other than `sig`, `key_ops` without `verify`, unknown `kty` or `crv`, RSA moduli
//! under 2048 bits, an `alg` that contradicts the key type, private key material, and symmetric
//! (`oct`) keys, which never belong in a published key set. A set with no usable key at all is
//! an error.

pub(crate) mod fetch;
pub(crate) mod refresh;
pub mod store;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

pub use fetch::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_DOCUMENT_BYTES, FetchError, MAX_REDIRECTS,
};
pub use refresh::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_REFRESH_INTERVAL, DEFAULT_MIN_REFRESH_INTERVAL,
    RefresherGuard,
};
pub use store::{DEFAULT_KID_COOLDOWN, DEFAULT_KID_WAIT, KeyStore, KeyStoreStatus};

/// Smallest RSA modulus accepted: 2048 bits (RFC 7518 §3.3, NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// What a key is, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// An RSA public key (RS256/384/512, PS256/384/512).
    Rsa,
    /// A P-256 public key (ES256).
    P256,
    /// A P-384 public key (ES384).
    P384,
    /// An Ed25519 public key (EdDSA).
    Ed25519,
    /// An HMAC secret (HS256/384/512).
    Hmac,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg` at all.
    pub fn supports(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
        }
    }

    /// Whether this is a symmetric (shared-secret) key.
    pub fn is_symmetric(self) -> bool {
        self == KeyKind::Hmac
    }
}

/// One ready-to-use verification key.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The one algorithm the key was published for (`alg` in the JWK), if any.
    alg: Option<Algorithm>,
    key: DecodingKey,
    /// The key parsed by the crypto backend, per algorithm, shared by every clone.
    prepared: std::sync::Arc<crate::crypto::PreparedKey>,
}

impl VerifyingKey {
    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The algorithm the key is pinned to, if its JWK named one.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.kind.supports(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }

    /// Whether `signature` is a valid `alg` signature of `message` under this key.
    pub(crate) fn verifies(&self, alg: Algorithm, message: &[u8], signature: &Vec<u8>) -> bool {
        crate::crypto::verify(&self.prepared, &self.key, alg, message, signature)
    }

    fn new(kid: Option<String>, kind: KeyKind, alg: Option<Algorithm>, key: DecodingKey) -> Self {
        Self { kid, kind, alg, key, prepared: Default::default() }
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material is public for asymmetric keys, but HMAC secrets are not: print neither.
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// A key that was skipped while parsing a set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's `kid`, if it had one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

/// Why a key set could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySetError {
    /// The document is not a JSON object with a `keys` array.
    NotAJwks(String),
    /// No key in the document is usable.
    NoUsableKey {
        /// The keys that were skipped, and why.
        skipped: Vec<SkippedKey>,
    },
    /// A PEM key could not be parsed.
    BadPem(String),
    /// An HMAC secret is shorter than its algorithm's hash (RFC 7518 §3.2).
    WeakSecret,
}

impl fmt::Display for KeySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySetError::NotAJwks(why) => write!(f, "not a JWKS document: {why}"),
            KeySetError::NoUsableKey { skipped } => {
                write!(f, "the key set has no usable key")?;
                for s in skipped {
                    write!(f, "; {} skipped: {}", s.kid.as_deref().unwrap_or("a key without kid"), s.reason)?;
                }
                Ok(())
            }
            KeySetError::BadPem(why) => write!(f, "invalid PEM key: {why}"),
            KeySetError::WeakSecret => {
                f.write_str("the HMAC secret must be at least as long as the hash: 32 bytes for HS256, 48 for HS384, 64 for HS512")
            }
        }
    }
}

impl std::error::Error for KeySetError {}

/// An immutable set of verification keys, indexed by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    by_kid: HashMap<String, Vec<usize>>,
    any_kid: bool,
}

impl KeySet {
    /// Builds a set from keys (none may be empty).
    pub fn from_keys(keys: Vec<VerifyingKey>) -> Self {
        let mut by_kid: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = &key.kid {
                by_kid.entry(kid.clone()).or_default().push(i);
            }
        }
        let any_kid = !by_kid.is_empty();
        Self { keys: keys.into_iter().map(Arc::new).collect(), by_kid, any_kid }
    }

    /// Parses a JWKS document (RFC 7517 §5). Unusable keys are skipped and returned.
    pub fn from_jwks(document: &[u8]) -> Result<(Self, Vec<SkippedKey>), KeySetError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document = serde_json::from_slice(document).map_err(|e| {
            KeySetError::NotAJwks(format!("{} at line {} column {}", classify(&e), e.line(), e.column()))
        })?;
        let mut keys = Vec::with_capacity(doc.keys.len());
        let mut skipped = Vec::new();
        for value in doc.keys {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            match parse_jwk(value) {
                Ok(key) => keys.push(key),
                Err(reason) => skipped.push(SkippedKey { kid, reason }),
            }
        }
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey { skipped });
        }
        Ok((Self::from_keys(keys), skipped))
    }

    /// Parses one SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`) PEM public key.
    pub fn key_from_pem(pem: &str, kid: Option<String>) -> Result<VerifyingKey, KeySetError> {
        if pem.contains("PRIVATE KEY") {
            return Err(KeySetError::BadPem("a private key was given; configure the public key".into()));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
            let der = key.try_get_as_bytes().map_err(|e| KeySetError::BadPem(e.to_string()))?;
            let (n, e) = (crate::crypto::provider().key_utils.rsa_pub_components_from_public_key)(der)
                .map_err(|e| KeySetError::BadPem(e.to_string()))?;
            check_rsa_size(&n).map_err(KeySetError::BadPem)?;
            return Ok(VerifyingKey::new(
                kid,
                KeyKind::Rsa,
                None,
                DecodingKey::from_rsa_raw_components(&n, &e),
            ));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
            let kind = match key.try_get_as_bytes().map(<[u8]>::len) {
                Ok(65) => KeyKind::P256,
                Ok(97) => KeyKind::P384,
                _ => return Err(KeySetError::BadPem("only P-256 and P-384 EC keys are supported".into())),
            };
            return Ok(VerifyingKey::new(kid, kind, None, key));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem.as_bytes()) {
            if key.try_get_as_bytes().map(<[u8]>::len) != Ok(32) {
                return Err(KeySetError::BadPem("only Ed25519 keys are supported".into()));
            }
            return Ok(VerifyingKey::new(kid, KeyKind::Ed25519, None, key));
        }
        Err(KeySetError::BadPem("not an RSA, EC (P-256/P-384) or Ed25519 public key".into()))
    }

    /// An HMAC secret as a key. The secret must be at least 32 bytes (HS256's hash size);
    /// algorithms with longer hashes are checked against their own size when configured.
    pub fn key_from_secret(secret: &[u8]) -> Result<VerifyingKey, KeySetError> {
        if secret.len() < 32 {
            return Err(KeySetError::WeakSecret);
        }
        Ok(VerifyingKey::new(None, KeyKind::Hmac, None, DecodingKey::from_secret(secret)))
    }

    /// Every key, in document order.
    pub fn keys(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter().map(|k| &**k)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that may verify a token with this `kid` and `alg`.
    ///
    /// When any key of the set has a `kid`, only keys with exactly the token's `kid` are
    /// candidates (a token without `kid` has none). When no key has a `kid`, every key that
    /// fits `alg` is a candidate.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        let indices: &[usize] = match (self.any_kid, kid) {
            (true, Some(kid)) => self.by_kid.get(kid).map_or(&[], Vec::as_slice),
            (true, None) => &[],
            (false, _) => &[],
        };
        let all = if self.any_kid { None } else { Some(self.keys.iter()) };
        indices
            .iter()
            .map(|&i| &*self.keys[i])
            .chain(all.into_iter().flatten().map(|k| &**k))
            .filter(move |k| k.fits(alg))
    }

    /// Whether any key of the set carries a `kid` (then keys without one are never tried).
    pub fn has_kids(&self) -> bool {
        self.any_kid
    }

    /// Whether any key carries this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Whether the set has a key that can verify `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.keys.iter().any(|k| k.fits(alg))
    }
}

fn classify(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "I/O error",
        Category::Syntax => "invalid JSON",
        Category::Data => "unexpected shape (a JSON object with a \"keys\" array is required)",
        Category::Eof => "truncated JSON",
    }
}

/// The JWK members tokengate reads (RFC 7517 §4, RFC 7518 §6).
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<serde_json::Value>,
}

fn parse_jwk(value: serde_json::Value) -> Result<VerifyingKey, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a valid JWK: {e}"))?;
    if let Some(u) = &jwk.use_
        && u != "sig"
    {
        return Err(format!("\"use\" is {u:?}, not \"sig\""));
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|o| o == "verify")
    {
        return Err("\"key_ops\" does not include \"verify\"".into());
    }
    if jwk.d.is_some() {
        return Err("the key contains private key material; it must not be published".into());
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(parse_algorithm(name).ok_or_else(|| format!("unsupported \"alg\" {name:?}"))?),
    };
    let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let s = v.as_deref().ok_or_else(|| format!("missing \"{name}\""))?;
        URL_SAFE_NO_PAD.decode(s).map_err(|_| format!("\"{name}\" is not base64url"))
    };
    let (kind, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let n = field(&jwk.n, "n")?;
            let e = field(&jwk.e, "e")?;
            check_rsa_size(&n)?;
            if e.is_empty() || e.len() > 8 {
                return Err("\"e\" is not a valid RSA exponent".into());
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (kind, len) = if crv == "P-256" { (KeyKind::P256, 32) } else { (KeyKind::P384, 48) };
            let x = field(&jwk.x, "x")?;
            let y = field(&jwk.y, "y")?;
            if x.len() != len || y.len() != len {
                return Err(format!("\"x\"/\"y\" have the wrong length for {crv}"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, DecodingKey::from_ec_der(&point))
        }
        ("OKP", Some("Ed25519")) => {
            let x = field(&jwk.x, "x")?;
            if x.len() != 32 {
                return Err("\"x\" has the wrong length for Ed25519".into());
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        ("EC" | "OKP", crv) => return Err(format!("unsupported curve {:?}", crv.unwrap_or("(none)"))),
        ("oct", _) => {
            return Err("symmetric keys are never taken from a key set; configure an HMAC secret".into());
        }
        (kty, _) => return Err(format!("unsupported \"kty\" {kty:?}")),
    };
    if let Some(alg) = alg
        && !kind.supports(alg)
    {
        return Err(format!("\"alg\" {alg:?} contradicts \"kty\" {:?}", jwk.kty));
    }
    Ok(VerifyingKey::new(jwk.kid, kind, alg, key))
}

fn check_rsa_size(n: &[u8]) -> Result<(), String> {
    let n = &n[n.iter().position(|&b| b != 0).unwrap_or(n.len())..];
    let bits = n.first().map_or(0, |&b| (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize));
    if bits < MIN_RSA_BITS {
        return Err(format!("RSA modulus of {bits} bits is under the minimum of {MIN_RSA_BITS}"));
    }
    Ok(())
}

/// Parses a JWS `alg` name exactly as registered (RFC 7518 §3.1, RFC 8037). Case-sensitive:
/// `none`, `None`, `NONE`, `Rs256` and everything unregistered are `None`.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match name {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" | "Ed25519" => EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_jwk(bits: usize, extra: serde_json::Value) -> serde_json::Value {
        let mut n = vec![0xC5u8; bits / 8];
        n[0] = 0xC5;
        let mut v = json!({"kty": "RSA", "kid": "r", "n": b64(&n), "e": "AQAB"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    }

    #[test]
    fn skips_unusable_keys_and_keeps_the_rest() {
        let doc = json!({"keys": [
            rsa_jwk(2048, json!({"kid": "good", "alg": "RS256", "use": "sig"})),
            rsa_jwk(1024, json!({"kid": "small"})),
            rsa_jwk(2048, json!({"kid": "enc", "use": "enc"})),
            rsa_jwk(2048, json!({"kid": "ops", "key_ops": ["encrypt"]})),
            rsa_jwk(2048, json!({"kid": "contradicts", "alg": "ES256"})),
            rsa_jwk(2048, json!({"kid": "private", "d": "AAAA"})),
            {"kty": "oct", "kid": "oct", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "XYZ", "kid": "weird"},
            "not an object",
        ]});
        let (set, skipped) = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(skipped.len(), 9, "{skipped:?}");
        assert!(set.has_kid("good"));
        assert_eq!(set.candidates(Some("good"), Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(Some("good"), Algorithm::PS256).count(), 0, "alg is pinned");
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 0, "kid required when the set has kids");
    }

    #[test]
    fn garbage_and_empty_sets_are_errors() {
        assert!(matches!(KeySet::from_jwks(b"not json"), Err(KeySetError::NotAJwks(_))));
        assert!(matches!(KeySet::from_jwks(b"[]"), Err(KeySetError::NotAJwks(_))));
        assert!(matches!(KeySet::from_jwks(br#"{"keys": []}"#), Err(KeySetError::NoUsableKey { .. })));
    }

    #[test]
    fn keys_without_kid_are_tried_only_when_no_key_has_one() {
        let doc = json!({"keys": [rsa_jwk(2048, json!({"kid": null}))]});
        let doc = doc.to_string().replace(",\"kid\":null", "").replace("\"kid\":null,", "");
        let (set, _) = KeySet::from_jwks(doc.as_bytes()).unwrap();
        assert_eq!(set.candidates(Some("anything"), Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::PS384).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::ES256).count(), 0);
    }

    #[test]
    fn algorithm_names_are_exact() {
        assert_eq!(parse_algorithm("RS256"), Some(Algorithm::RS256));
        for bad in ["none", "None", "NONE", "nOnE", "rs256", "RS256 ", "HS1", ""] {
            assert_eq!(parse_algorithm(bad), None, "{bad}");
        }
    }

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert_eq!(KeySet::key_from_secret(b"short").unwrap_err(), KeySetError::WeakSecret);
        assert!(KeySet::key_from_secret(&[7u8; 32]).is_ok());
    }
}
