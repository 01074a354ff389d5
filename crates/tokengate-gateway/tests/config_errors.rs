//! Configuration errors through the built binary: a non-zero exit and a message that names the
//! key. Nothing here needs a network.

mod common;

use common::{TempDir, run};

const VALID: &str = r#"
listen = "127.0.0.1:8080"
upstream = "http://127.0.0.1:9000"

[[issuers]]
issuer = "https://idp.example.com"
audiences = ["https://api.example.com"]
algorithms = ["RS256", "ES256", "EdDSA"]

[introspection]
endpoint = "https://idp.example.com/introspect"
client_id = "gateway"
client_secret_env = "TG_TEST_INTROSPECTION_SECRET"
cache_ttl_secs = 30

[[routes]]
path = "/admin/*"
methods = ["POST", "DELETE"]
mode = "introspect"
scopes = ["admin"]
"#;

const ENV: &[(&str, &str)] = &[("TG_TEST_INTROSPECTION_SECRET", "very-secret-value")];

/// Runs `--check-config` on `text`; returns (success, output).
fn check(text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = TempDir::new("cfg");
    let path = dir.write("gateway.toml", text);
    let (status, output) = run(&["--config", path.to_str().unwrap(), "--check-config"], env);
    (status.success(), output)
}

fn refused(text: &str, key_message: &str) {
    let (ok, output) = check(text, ENV);
    assert!(!ok, "accepted:\n{text}\noutput: {output}");
    assert!(output.contains(key_message), "expected {key_message:?} in: {output}");
    assert!(!output.contains("very-secret-value"), "a secret was printed: {output}");
}

#[test]
fn a_valid_file_passes_check_config() {
    let (ok, output) = check(VALID, ENV);
    assert!(ok, "{output}");
    assert!(output.contains("configuration OK"), "{output}");
    assert!(!output.contains("very-secret-value"), "{output}");
}

#[test]
fn bad_toml_is_refused() {
    refused("listen = \"127.0.0.1:8080\nupstream = ", "invalid TOML");
}

#[test]
fn an_unknown_key_is_refused_by_path() {
    refused(
        &VALID.replace("cache_ttl_secs = 30", "cache_ttl_secs = 30\ncache_size = 5"),
        "introspection.cache_size: unknown key",
    );
    refused(&format!("colour = \"blue\"\n{VALID}"), "colour: unknown key");
}

#[test]
fn a_missing_issuer_is_refused() {
    let without = VALID
        .replace("[[issuers]]\n", "")
        .replace("issuer = \"https://idp.example.com\"\n", "")
        .replace("audiences = [\"https://api.example.com\"]\n", "")
        .replace("algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\n", "");
    refused(&without, "issuers: missing");
    refused(
        &VALID.replace("audiences = [\"https://api.example.com\"]\n", ""),
        "issuers[0].audiences: missing",
    );
}

#[test]
fn bad_values_name_their_key() {
    refused(&VALID.replace("\"EdDSA\"", "\"none\""), "issuers[0].algorithms[2]: unknown algorithm");
    refused(&VALID.replace("mode = \"introspect\"", "mode = \"strict\""), "routes[0].mode: unknown mode");
    refused(
        &format!("{VALID}\n[timeouts]\nupstream_response = \"30\"\n"),
        "timeouts.upstream_response: invalid duration",
    );
    refused(&VALID.replace("upstream = \"http://127.0.0.1:9000\"\n", ""), "upstream: missing");
}

#[test]
fn connection_limits_proxies_and_prefixes_name_their_key() {
    let (ok, output) = check(
        &format!(
            "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n{VALID}\n[limits]\nmax_connections = 500\n[timeouts]\nhttp2_keep_alive = \"20s\"\n"
        ),
        ENV,
    );
    assert!(ok, "{output}");
    refused(&format!("trusted_proxies = [\"10.0.0.1/8\"]\n{VALID}"), "trusted_proxies[0]: ");
    refused(&format!("trusted_proxies = [\"proxy.local\"]\n{VALID}"), "trusted_proxies[0]: ");
    refused(
        &format!("{VALID}\n[limits]\nmax_connections = 0\n"),
        "limits.max_connections: must be more than 0",
    );
    refused(&format!("{VALID}\n[limits]\nmax_conns = 5\n"), "limits.max_conns: unknown key");
    refused(
        &format!("{VALID}\n[timeouts]\nhttp2_keep_alive = \"0s\"\n"),
        "timeouts.http2_keep_alive: must be",
    );
    refused(&format!("{VALID}\n[forward_auth]\npath_prefix = \"/ext_authz\"\n"), "forward_auth: only used");
    let forward_auth = VALID.replace("upstream = \"http://127.0.0.1:9000\"", "mode = \"forward_auth\"");
    let (ok, output) = check(&format!("{forward_auth}\n[forward_auth]\npath_prefix = \"/ext_authz\"\n"), ENV);
    assert!(ok, "{output}");
    refused(
        &format!("{forward_auth}\n[forward_auth]\npath_prefix = \"/ext_authz/\"\n"),
        "forward_auth.path_prefix: ",
    );
}

#[test]
fn a_missing_secret_variable_is_refused_without_printing_secrets() {
    let (ok, output) = check(VALID, &[]);
    assert!(!ok);
    assert!(output.contains("introspection.client_secret_env: the environment variable TG_TEST_INTROSPECTION_SECRET is not set"), "{output}");
}

#[test]
fn a_config_that_cannot_start_exits_non_zero() {
    // Valid file, unreachable issuer: starting fails (the keys cannot be loaded) and says why.
    let dir = TempDir::new("start");
    let text = VALID.replace(
        "issuer = \"https://idp.example.com\"",
        &format!(
            "issuer = \"http://127.0.0.1:{}\"\njwks_uri = \"http://127.0.0.1:{0}/jwks\"",
            common::free_port()
        ),
    );
    let path = dir.write("gateway.toml", &text);
    let (status, output) = run(&["--config", path.to_str().unwrap()], ENV);
    assert!(!status.success());
    assert!(output.contains("cannot start"), "{output}");
}

#[test]
fn key_refresh_figures_are_configurable_per_issuer() {
    let tuned = VALID.replace(
        "algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\n",
        "algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\nrefresh_min = \"1m\"\nrefresh_max = \"1h\"\nkid_cooldown = \"10s\"\nkid_wait = \"500ms\"\nfetch_timeout = \"3s\"\nconnect_timeout = \"1s\"\n",
    );
    let (ok, output) = check(&tuned, ENV);
    assert!(ok, "{output}");
    let inverted = VALID.replace(
        "algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\n",
        "algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\nrefresh_min = \"2h\"\nrefresh_max = \"1h\"\n",
    );
    refused(&inverted, "issuers[0].refresh_min: is longer than refresh_max");
    let unitless = VALID.replace(
        "algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\n",
        "algorithms = [\"RS256\"]\nkid_cooldown = \"30\"\n",
    );
    refused(&unitless, "issuers[0].kid_cooldown");
}
