//! Which signature backend verifies tokens: aws-lc-rs (feature `aws-lc-rs`, the default) or
//! the RustCrypto crates (feature `rust-crypto`).
//!
//! `jsonwebtoken` panics at the first verification when both or neither of its backends are
//! enabled and no provider is installed. tokengate never relies on that guess: it calls the
//! chosen provider directly, and installs it as jsonwebtoken's process default when a layer is
//! built, so code elsewhere in the process that uses jsonwebtoken does not panic either. With
//! both features enabled (cargo unifies features across a build), aws-lc-rs is chosen.

use jsonwebtoken::Algorithm;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::crypto::CryptoProvider;

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tokengate needs a signature backend: enable its feature `aws-lc-rs` (the default) or `rust-crypto`, \
     e.g. `tokengate = { version = \"…\", default-features = false, features = [\"rust-crypto\"] }`"
);

/// The provider tokengate verifies with.
pub(crate) fn provider() -> &'static CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    {
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
    }
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    {
        &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
    }
    #[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
    {
        // Unreachable: the compile_error! above stops the build; this keeps it the only error.
        unreachable!()
    }
}

/// Installs tokengate's provider as `jsonwebtoken`'s process-wide default, unless one is
/// installed already (then that one stays; tokengate itself does not depend on it).
pub fn install_default_provider() {
    // Err means another provider was installed first, which is the caller's explicit choice.
    let _ = provider().install_default();
}

/// The name of the backend in use, for logs and `explain`.
pub fn backend_name() -> &'static str {
    if cfg!(feature = "aws-lc-rs") { "aws-lc-rs" } else { "rust-crypto" }
}

/// Checks `signature` over `message` with `key` for `alg`: the one place a signature is
/// verified.
///
/// With aws-lc-rs the public key is parsed once per key and algorithm ([`PreparedKey`]) and
/// reused: `jsonwebtoken`'s provider re-parses it on every call, which a profile showed as
/// about a tenth of a cold RS256 verification. The bytes and aws-lc-rs algorithms are exactly
/// those jsonwebtoken's aws-lc provider uses, so what verifies is unchanged. HMAC and the
/// rust-crypto backend go through jsonwebtoken's provider.
pub(crate) fn verify(
    prepared: &PreparedKey,
    key: &DecodingKey,
    alg: Algorithm,
    message: &[u8],
    signature: &Vec<u8>,
) -> bool {
    #[cfg(feature = "aws-lc-rs")]
    if let Some(parsed) = prepared.parsed(key, alg) {
        return parsed.is_some_and(|parsed| parsed.verify_sig(message, signature).is_ok());
    }
    let _ = prepared;
    match (provider().verifier_factory)(&alg, key) {
        Ok(verifier) => verifier.verify(message, signature).is_ok(),
        Err(_) => false,
    }
}

/// A key's parsed aws-lc-rs forms, one per asymmetric algorithm, made on first use.
#[derive(Default)]
pub(crate) struct PreparedKey {
    #[cfg(feature = "aws-lc-rs")]
    parsed: [std::sync::OnceLock<Option<aws_lc::signature::ParsedPublicKey>>; ASYMMETRIC_ALGORITHMS],
}

/// RS256/384/512, PS256/384/512, ES256, ES384, EdDSA.
#[cfg(feature = "aws-lc-rs")]
const ASYMMETRIC_ALGORITHMS: usize = 9;

#[cfg(feature = "aws-lc-rs")]
impl PreparedKey {
    /// `None` for an algorithm this path does not handle (HMAC); `Some(None)` when the key
    /// does not parse for `alg` (then nothing verifies, as with jsonwebtoken).
    fn parsed(
        &self,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Option<Option<&aws_lc::signature::ParsedPublicKey>> {
        use aws_lc::signature::{self as sig, ParsedPublicKey, RsaParameters, VerificationAlgorithm};
        use jsonwebtoken::DecodingKeyKind;

        enum Params {
            Rsa(&'static RsaParameters),
            Other(&'static dyn VerificationAlgorithm),
        }
        let (index, params) = match alg {
            Algorithm::RS256 => (0, Params::Rsa(&sig::RSA_PKCS1_2048_8192_SHA256)),
            Algorithm::RS384 => (1, Params::Rsa(&sig::RSA_PKCS1_2048_8192_SHA384)),
            Algorithm::RS512 => (2, Params::Rsa(&sig::RSA_PKCS1_2048_8192_SHA512)),
            Algorithm::PS256 => (3, Params::Rsa(&sig::RSA_PSS_2048_8192_SHA256)),
            Algorithm::PS384 => (4, Params::Rsa(&sig::RSA_PSS_2048_8192_SHA384)),
            Algorithm::PS512 => (5, Params::Rsa(&sig::RSA_PSS_2048_8192_SHA512)),
            Algorithm::ES256 => (6, Params::Other(&sig::ECDSA_P256_SHA256_FIXED)),
            Algorithm::ES384 => (7, Params::Other(&sig::ECDSA_P384_SHA384_FIXED)),
            Algorithm::EdDSA => (8, Params::Other(&sig::ED25519)),
            _ => return None,
        };
        let parsed = self.parsed[index].get_or_init(|| match (key.kind(), params) {
            (DecodingKeyKind::RsaModulusExponent { n, e }, Params::Rsa(params)) => {
                sig::RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
                    .to_parsed_public_key(params)
                    .ok()
            }
            (DecodingKeyKind::RsaModulusExponent { .. }, Params::Other(_)) => None,
            (DecodingKeyKind::SecretOrDer(bytes), Params::Rsa(params)) => {
                ParsedPublicKey::new(params, bytes).ok()
            }
            (DecodingKeyKind::SecretOrDer(bytes), Params::Other(params)) => {
                ParsedPublicKey::new(params, bytes).ok()
            }
        });
        Some(parsed.as_ref())
    }
}
