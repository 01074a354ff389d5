//! The demo (`tokengate-gateway` with no arguments): the commands it prints do what it says —
//! replayed here with reqwest, parsed from the printed curl lines.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{BIN, STARTUP_TIMEOUT};

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `curl` invocation of the printed commands.
#[derive(Debug)]
struct Curl {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// Parses the curl invocations of a printed line (`;`-separated, single-quoted arguments).
fn parse_curls(line: &str) -> Vec<Curl> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            ';' | ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                if c == ';' {
                    words.push(";".to_owned());
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let mut curls = Vec::new();
    for command in words.split(|w| w == ";") {
        let [first, rest @ ..] = command else { continue };
        if first != "curl" {
            continue;
        }
        let mut curl = Curl { method: "GET".into(), url: String::new(), headers: Vec::new(), body: None };
        let mut args = rest.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-X" => curl.method = args.next().unwrap().clone(),
                "-H" => {
                    let (k, v) = args.next().unwrap().split_once(": ").unwrap();
                    curl.headers.push((k.to_owned(), v.to_owned()));
                }
                "-d" | "--data-binary" => {
                    curl.body = Some(args.next().unwrap().clone());
                    if curl.method == "GET" {
                        curl.method = "POST".into();
                    }
                }
                "-i" | "-s" => {}
                url if url.starts_with("http://") => curl.url = url.to_owned(),
                other => panic!("unexpected curl argument {other:?}"),
            }
        }
        curls.push(curl);
    }
    curls
}

async fn send(client: &reqwest::Client, curl: &Curl) -> u16 {
    let mut request = client.request(curl.method.parse().unwrap(), &curl.url);
    for (k, v) in &curl.headers {
        request = request.header(k, v);
    }
    if let Some(body) = &curl.body {
        request = request.body(body.clone());
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_printed_commands_answer_as_announced() {
    let mut child =
        Command::new(BIN).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let _demo = Demo(child);
    let lines = tokio::time::timeout(
        STARTUP_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let done = line.starts_with("Press ctrl-c");
                lines.push(line);
                if done {
                    break;
                }
            }
            lines
        }),
    )
    .await
    .expect("the demo printed its commands in time")
    .unwrap();
    let commands: Vec<Vec<Curl>> =
        lines.iter().filter(|l| l.starts_with("curl ")).map(|l| parse_curls(l)).collect();
    assert_eq!(commands.len(), 4, "{lines:#?}");
    let client = reqwest::Client::new();

    // 1) local → 200; 2) introspect → 200.
    assert_eq!(send(&client, &commands[0][0]).await, 200);
    assert_eq!(send(&client, &commands[1][0]).await, 200);
    // 3) revoke at the issuer, then introspect → 401 while local → 200.
    let third: Vec<u16> = {
        let mut statuses = Vec::new();
        for curl in &commands[2] {
            statuses.push(send(&client, curl).await);
        }
        statuses
    };
    assert_eq!(third, [200, 401, 200]);
    // The gateway's own revocation list: the local route refuses the token too.
    assert_eq!(send(&client, &commands[3][0]).await, 201);
    assert_eq!(send(&client, &commands[0][0]).await, 401);
}
