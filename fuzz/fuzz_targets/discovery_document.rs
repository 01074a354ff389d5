//! `tokengate::discovery::parse_metadata` and `metadata_url` on arbitrary input: the first line
//! is the configured issuer, the rest the metadata document.
//!
//! Invariants: never panics; a document is only ever accepted for exactly the configured issuer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate::discovery::{MetadataKind, metadata_url, parse_metadata};

fuzz_target!(|data: &[u8]| {
    let (issuer, document) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"https://idp.example.com"[..], data),
    };
    let Ok(issuer) = std::str::from_utf8(issuer) else {
        return;
    };
    if let Ok(metadata) = parse_metadata(issuer, document) {
        assert_eq!(metadata.issuer, issuer, "metadata accepted for another issuer");
    }
    for kind in [MetadataKind::OpenIdConfiguration, MetadataKind::OAuthAuthorizationServer] {
        if let Ok(url) = metadata_url(issuer, kind) {
            assert!(url.contains("/.well-known/"), "{url}");
        }
    }
});
