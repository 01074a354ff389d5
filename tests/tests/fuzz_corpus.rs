//! Replays every fuzz corpus (`fuzz/corpus/<target>/*`) through the same checks the fuzz targets
//! run, without libFuzzer: the seeds, and every input a fuzzing run found interesting and kept,
//! become regression tests of the ordinary test run. No fuzzing happens here; see
//! `fuzz/README.md` for running the fuzzers themselves.

#[allow(dead_code, missing_docs)]
#[path = "../../fuzz/src/world.rs"]
mod world;

#[allow(dead_code, missing_docs)]
#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

/// Every file of `fuzz/corpus/<target>`, sorted so a failure names the same input every run.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

/// Runs `check` on every input of `target`'s corpus; a panic names the input.
fn replay(target: &str, check: fn(&[u8])) {
    for path in corpus(target) {
        let data = match std::fs::read(&path) {
            Ok(data) => data,
            // A fuzzer running on the same checkout replaces entries as it minimises them.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("?");
            panic!("{target}: {} fails: {why}", path.display());
        }
    }
}

#[test]
fn authorization_header_corpus() {
    replay("authorization_header", targets::authorization_header);
}

#[test]
fn verify_token_corpus() {
    replay("verify_token", targets::verify_token);
}

#[test]
fn jwks_document_corpus() {
    replay("jwks_document", targets::jwks_document);
}

#[test]
fn discovery_document_corpus() {
    replay("discovery_document", targets::discovery_document);
}

#[test]
fn route_patterns_corpus() {
    replay("route_patterns", targets::route_patterns);
}

#[test]
fn introspection_response_corpus() {
    replay("introspection_response", targets::introspection_response);
}

#[test]
fn gateway_config_corpus() {
    replay("gateway_config", targets::gateway_config);
}

#[test]
fn gate_request_corpus() {
    replay("gate_request", targets::gate_request);
}

/// The world is not vacuous: its valid seed tokens really are accepted, so the replay (and the
/// fuzzer) start from the accepting path too.
#[test]
fn valid_seed_tokens_are_accepted_by_the_fuzz_world() {
    let gate = world::layer().gate();
    let valid: Vec<PathBuf> = corpus("verify_token")
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("valid_")))
        .collect();
    assert!(valid.len() >= 4, "expected valid seeds per algorithm, found {valid:?}");
    for path in valid {
        let token = std::fs::read_to_string(&path).expect("a UTF-8 seed");
        let verified =
            tokengate::jwt::verify(token.trim_end(), gate.issuers(), world::NOW, world::MAX_TOKEN_BYTES);
        assert!(verified.is_ok(), "{}: {verified:?}", path.display());
    }
}

/// The configuration seeds reach both sides: the README's and the minimal one resolve, the
/// broken ones do not.
#[test]
fn gateway_config_seeds_resolve_and_fail_as_meant() {
    struct Env;
    impl tokengate_gateway::config::Environment for Env {
        fn var(&self, _: &str) -> Option<String> {
            Some("a-value-long-enough-for-any-secret-here".into())
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/gateway_config");
    let resolve = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name)).expect("a seed");
        tokengate_gateway::config::parse(&text).and_then(|file| file.resolve(&Env)).map(|_| ())
    };
    for good in ["minimal", "design_minimum", "readme_0", "forward_auth", "cookies", "introspection"] {
        assert!(resolve(good).is_ok(), "{good}: {:?}", resolve(good).err().map(|e| e.to_string()));
    }
    for bad in ["unknown_key", "bad_duration", "no_issuer", "no_audience", "bad_mode", "scopes_on_public"] {
        assert!(resolve(bad).is_err(), "{bad} resolved");
    }
}
