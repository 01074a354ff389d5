//! Which signature backend verifies tokens: aws-lc-rs (feature `aws-lc-rs`, the default) or
//! the RustCrypto crates (feature `rust-crypto`).
//!
//! `jsonwebtoken` panics at the first verification when both or neither of its backends are
//! enabled and no provider is installed. tokengate never relies on that guess: it calls the
//! chosen provider directly, and installs it as jsonwebtoken's process default when a layer is
//! built, so code elsewhere in the process that uses jsonwebtoken does not panic either. With
//! both features enabled (cargo unifies features across a build), aws-lc-rs is chosen.

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
