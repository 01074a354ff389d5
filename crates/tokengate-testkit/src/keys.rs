//! Signing keys: generating them with aws-lc-rs, and describing them as a JWK, an SPKI PEM and a
//! `jsonwebtoken` [`EncodingKey`].
//!
//! This module owns everything that touches key material; the issuer only keeps [`SigningKey`]s
//! in a list and asks them for their public forms.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm,
    Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// PEM bodies are wrapped at 64 characters (RFC 7468 §2).
const PEM_LINE_LEN: usize = 64;

/// Which of the issuer's key families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// RSA-2048: signs RS256/384/512 and PS256/384/512; published with `alg: RS256`.
    Rsa,
    /// ECDSA P-256: signs ES256; published with `alg: ES256`.
    P256,
    /// ECDSA P-384: signs ES384; published with `alg: ES384`.
    P384,
    /// Ed25519: signs EdDSA; published with `alg: EdDSA`.
    Ed25519,
}

impl KeyKind {
    /// Every family, in the order the issuer creates and publishes them.
    pub const ALL: [KeyKind; 4] = [KeyKind::Rsa, KeyKind::P256, KeyKind::P384, KeyKind::Ed25519];

    /// The family whose key signs `alg`.
    ///
    /// # Panics
    /// For HMAC algorithms (use `TokenBuilder::sign_hmac`) and any algorithm added to
    /// jsonwebtoken later.
    pub fn for_algorithm(alg: Algorithm) -> KeyKind {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyKind::Rsa,
            Algorithm::ES256 => KeyKind::P256,
            Algorithm::ES384 => KeyKind::P384,
            Algorithm::EdDSA => KeyKind::Ed25519,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                panic!("tokengate-testkit: {alg:?} has no issuer key; use TokenBuilder::sign_hmac")
            }
            other => panic!("tokengate-testkit: {other:?} is not supported (no key of that kind)"),
        }
    }

    /// The `alg` the issuer publishes in this family's JWK.
    pub fn jwk_alg(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::P256 => Algorithm::ES256,
            KeyKind::P384 => Algorithm::ES384,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }

    /// The prefix of this family's kids: `rsa-1`, `ec-1`, `ec384-1`, `ed-1`.
    pub(crate) fn kid_prefix(self) -> &'static str {
        match self {
            KeyKind::Rsa => "rsa",
            KeyKind::P256 => "ec",
            KeyKind::P384 => "ec384",
            KeyKind::Ed25519 => "ed",
        }
    }
}

/// One private key with its kid, ready to sign and to be published.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) kind: KeyKind,
    pub(crate) encoding: EncodingKey,
    /// The public JWK, `use: sig`, with the family's `alg`.
    pub(crate) jwk: Value,
    /// The public key as a DER `SubjectPublicKeyInfo`.
    pub(crate) spki_der: Vec<u8>,
}

impl SigningKey {
    /// Generates a fresh key of `kind` named `kid`.
    pub(crate) fn generate(kind: KeyKind, kid: &str) -> SigningKey {
        let (encoding, mut jwk, spki_der) = match kind {
            KeyKind::Rsa => generate_rsa(),
            KeyKind::P256 => generate_ec(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256"),
            KeyKind::P384 => generate_ec(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
            KeyKind::Ed25519 => generate_ed25519(),
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(alg_name(kind.jwk_alg()));
        SigningKey { kid: kid.to_owned(), kind, encoding, jwk, spki_der }
    }

    /// The public key as an SPKI `-----BEGIN PUBLIC KEY-----` PEM.
    pub(crate) fn public_key_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki_der)
    }
}

/// The JOSE name of `alg` (`"RS256"`, `"EdDSA"`, ...), as jsonwebtoken serialises it.
pub(crate) fn alg_name(alg: Algorithm) -> String {
    match serde_json::to_value(alg) {
        Ok(Value::String(name)) => name,
        _ => format!("{alg:?}"),
    }
}

fn generate_rsa() -> (EncodingKey, Value, Vec<u8>) {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA-2048 key generation");
    let pkcs8 = pair.as_der().expect("RSA PKCS#8 export");
    // jsonwebtoken's aws-lc backend wants a PKCS#1 `RSAPrivateKey` in `from_rsa_der`, and
    // aws-lc-rs only exports PKCS#8; jsonwebtoken's PEM reader unwraps PKCS#8 for us.
    let encoding = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
        .expect("jsonwebtoken accepts the RSA PKCS#8 PEM");
    let public = pair.public_key();
    let jwk = json!({
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    });
    let spki = public.as_der().expect("RSA SPKI export");
    (encoding, jwk, spki.as_ref().to_vec())
}

/// An ECDSA key on the curve of `alg`, published as a JWK with `crv`.
fn generate_ec(alg: &'static EcdsaSigningAlgorithm, crv: &str) -> (EncodingKey, Value, Vec<u8>) {
    let pair = EcdsaKeyPair::generate(alg).expect("ECDSA keygen");
    let pkcs8 = pair.to_pkcs8v1().expect("ECDSA PKCS#8 export");
    let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
    // The public key is the SEC1 uncompressed point: 0x04 || x || y, each half the rest.
    let point = pair.public_key().as_ref();
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    let jwk = json!({
        "kty": "EC",
        "crv": crv,
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
    });
    let spki = pair.public_key().as_der().expect("ECDSA SPKI export");
    (encoding, jwk, spki.as_ref().to_vec())
}

fn generate_ed25519() -> (EncodingKey, Value, Vec<u8>) {
    let pair = Ed25519KeyPair::generate().expect("Ed25519 keygen");
    let pkcs8 = pair.to_pkcs8v1().expect("Ed25519 PKCS#8 export");
    let encoding = EncodingKey::from_ed_der(pkcs8.as_ref());
    let jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
    });
    let spki = pair.public_key().as_der().expect("Ed25519 SPKI export");
    (encoding, jwk, spki.as_ref().to_vec())
}

/// Encodes `der` as a PEM block with the given label.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 output is ASCII, so every chunk is valid UTF-8.
    for line in body.as_bytes().chunks(PEM_LINE_LEN) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
