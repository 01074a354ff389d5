//! The `explain` subcommand's command line: the token as an argument or on standard input, the
//! route, and a report that never prints the token.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{BIN, TempDir, issuer_toml};
use tokengate_testkit::Issuer;

fn config(issuer: &Issuer) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n\n{}\n[[routes]]\npath = \"/admin/*\"\nscopes = [\"admin\"]\n",
        issuer_toml(issuer)
    )
}

/// Runs the binary off the async runtime (the issuer keeps serving on it) with `stdin`.
async fn explain(args: Vec<String>, stdin: Option<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn explains_a_token_from_an_argument_or_stdin() {
    let issuer = Issuer::start().await;
    let dir = TempDir::new("explain");
    let path = dir.write("gateway.toml", &config(&issuer)).to_str().unwrap().to_owned();
    let token = issuer.token().scope("read").sign();

    let args = vec![
        "explain".into(),
        "--config".into(),
        path.clone(),
        "--route".into(),
        "POST /admin/x".into(),
        token.clone(),
    ];
    let (ok, output) = explain(args, None).await;
    assert!(ok, "{output}");
    assert!(!output.trim().is_empty());
    assert!(!output.contains(&token), "the token was printed: {output}");

    let args = vec!["explain".into(), "--config".into(), path.clone()];
    let (ok, output) = explain(args, Some(format!("{token}\n"))).await;
    assert!(ok, "{output}");
    assert!(!output.trim().is_empty());

    let args = vec!["explain".into(), "--config".into(), path, "--route".into(), "admin".into(), token];
    let (ok, output) = explain(args, None).await;
    assert!(!ok);
    assert!(output.contains("--route"), "{output}");
}
