//! The proxy's upstream connections, driven through the built binary against hand-written
//! upstreams that count their connections: an HTTP/1 client connection keeps one upstream
//! connection for all its requests, whatever the responses' framing; one the upstream closed
//! is replaced; one whose response the client abandoned is closed, never reused; HTTP/2
//! clients go through the pool.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{Gateway, issuer_toml};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokengate_testkit::Issuer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(10);

async fn start_gateway(issuer: &Issuer, upstream: &str) -> Gateway {
    let config = format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{issuer}\n\n[[routes]]\npath = \"/*\"\nmode = \"public\"\n",
        issuer = issuer_toml(issuer),
    );
    Gateway::start(&config, &[]).await
}

/// Waits until the gateway serves `open` client connections (the state of those that ended,
/// their lanes among it, is gone by then).
async fn client_connections_open(gateway: &Gateway, open: usize) {
    let url = format!("{}/metrics", gateway.admin_url());
    let expected = format!("tokengate_connections_open{{listener=\"main\"}} {open}\n");
    common::eventually("the gateway's client connections ended", || {
        let (url, expected) = (url.clone(), expected.clone());
        async move { reqwest::get(url).await.unwrap().text().await.unwrap().contains(&expected) }
    })
    .await;
}

/// Reads one request head; `None` when the connection ends first (the requests these
/// upstreams get have no body). Returns the request line.
async fn next_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8(head).expect("an ASCII head");
    Some(text.lines().next().unwrap_or_default().to_owned())
}

/// The response an upstream gives to a request line, chosen by its path (to `HEAD`, the head
/// alone).
fn answer(request_line: &str) -> &'static [u8] {
    let mut words = request_line.split(' ');
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    if method == "HEAD" {
        return b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n";
    }
    match path {
        "/length" => b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nlength",
        "/chunked" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nchu\r\n4\r\nnked\r\n0\r\n\r\n"
        }
        "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n",
        "/zero" => b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        "/close" | "/announce-close" => {
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nclose"
        }
        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    }
}

/// A hand-written upstream: where it listens, how many connections it accepted, and how many
/// of them it has closed (or seen closed).
struct Counting {
    url: String,
    accepted: Arc<AtomicUsize>,
    closed: watch::Receiver<usize>,
}

/// An upstream that answers every request on a connection until the client closes it, or
/// after `per_connection` requests closes it itself.
async fn counting_upstream(per_connection: Option<usize>) -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = watch::channel(0);
    let closed_tx = Arc::new(closed_tx);
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut served = 0;
                while let Some(line) = next_head(&mut stream).await {
                    if stream.write_all(answer(&line)).await.is_err() {
                        break;
                    }
                    served += 1;
                    // `/announce-close` says `connection: close` but leaves the closing to
                    // the gateway.
                    if line.contains(" /close ") || per_connection == Some(served) {
                        break;
                    }
                }
                drop(stream);
                closed_tx.send_modify(|n| *n += 1);
            });
        }
    });
    Counting { url, accepted, closed }
}

/// One HTTP/1 client connection to `gateway`: exactly one, unlike a pooled client.
async fn client_connection(gateway: &Gateway) -> http1::SendRequest<Empty<Bytes>> {
    let addr = gateway.url().trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// Sends `method path` on `sender`; the status and body.
async fn exchange(sender: &mut http1::SendRequest<Empty<Bytes>>, method: &str, path: &str) -> (u16, String) {
    sender.ready().await.unwrap();
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gateway")
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(WAIT, sender.send_request(request)).await.unwrap().unwrap();
    let status = response.status().as_u16();
    let body = tokio::time::timeout(WAIT, response.into_body().collect()).await.unwrap().unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_connection_keeps_one_upstream_connection_whatever_the_framing() {
    let issuer = Issuer::start().await;
    let upstream = counting_upstream(None).await;
    let gw = start_gateway(&issuer, &upstream.url).await;

    let mut client = client_connection(&gw).await;
    let expected = [
        ("GET", "/length", 200, "length"),
        ("GET", "/chunked", 200, "chunked"),
        ("GET", "/empty", 204, ""),
        ("GET", "/zero", 200, ""),
        ("HEAD", "/length", 200, ""),
        ("GET", "/length", 200, "length"),
    ];
    for (method, path, status, body) in expected {
        assert_eq!(exchange(&mut client, method, path).await, (status, body.to_owned()), "{method} {path}");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1, "one client connection, one upstream connection");

    // Another client connection has its own.
    let mut other = client_connection(&gw).await;
    assert_eq!(exchange(&mut other, "GET", "/length").await, (200, "length".to_owned()));
    assert_eq!(exchange(&mut client, "GET", "/length").await, (200, "length".to_owned()));
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(*upstream.closed.borrow(), 0);

    // A client connection that ends leaves its upstream connection to the next one.
    drop(other);
    client_connections_open(&gw, 1).await;
    let mut third = client_connection(&gw).await;
    assert_eq!(exchange(&mut third, "GET", "/chunked").await, (200, "chunked".to_owned()));
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(*upstream.closed.borrow(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_connection_the_upstream_closed_is_replaced() {
    let issuer = Issuer::start().await;
    // One request per connection, then closed without a word: the gateway finds it closed
    // when the next request comes.
    let mut upstream = counting_upstream(Some(1)).await;
    let gw = start_gateway(&issuer, &upstream.url).await;
    let mut client = client_connection(&gw).await;
    for round in 1..=3 {
        assert_eq!(
            exchange(&mut client, "GET", "/length").await,
            (200, "length".to_owned()),
            "round {round}"
        );
        tokio::time::timeout(WAIT, upstream.closed.wait_for(|n| *n == round)).await.unwrap().unwrap();
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 3);

    // A response that says `connection: close`: the next request opens a new connection too.
    let upstream = counting_upstream(None).await;
    let gw = start_gateway(&issuer, &upstream.url).await;
    let mut client = client_connection(&gw).await;
    assert_eq!(exchange(&mut client, "GET", "/close").await, (200, "close".to_owned()));
    assert_eq!(exchange(&mut client, "GET", "/length").await, (200, "length".to_owned()));
    assert_eq!(exchange(&mut client, "GET", "/length").await, (200, "length".to_owned()));
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_response_closes_its_upstream_connection() {
    const CHUNK: usize = 64 * 1024;
    let issuer = Issuer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    // The first connection streams an endless chunked body and reports when it can no longer
    // write; later connections answer normally.
    let (ended, mut ended_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            next_head(&mut stream).await.unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
            let chunk = [format!("{CHUNK:x}\r\n").into_bytes(), vec![b'x'; CHUNK], b"\r\n".to_vec()].concat();
            while stream.write_all(&chunk).await.is_ok() {}
            // Written to its end, the connection would be asked for a second request instead.
            let _ = ended.send(next_head(&mut stream).await);
        });
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                while let Some(line) = next_head(&mut stream).await {
                    let _ = stream.write_all(answer(&line)).await;
                }
            });
        }
    });
    let gw = start_gateway(&issuer, &upstream).await;

    abandon_a_response(client_connection(&gw).await).await;
    let second_request =
        tokio::time::timeout(WAIT, ended_rx.recv()).await.expect("the upstream connection stays open");
    assert_eq!(second_request, Some(None), "the abandoned connection was reused");

    let mut fresh = client_connection(&gw).await;
    assert_eq!(exchange(&mut fresh, "GET", "/length").await, (200, "length".to_owned()));
}

/// Sends a request, reads a little of the response body, then drops the client connection.
async fn abandon_a_response(mut client: http1::SendRequest<Empty<Bytes>>) {
    client.ready().await.unwrap();
    let request =
        http::Request::builder().uri("/stream").header("host", "gateway").body(Empty::new()).unwrap();
    let response = tokio::time::timeout(WAIT, client.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(WAIT, body.frame()).await.unwrap().unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|data| !data.is_empty()));
    // Dropping the body and the sender ends the client connection's task, which closes it.
    drop(body);
    drop(client);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_clients_share_the_pool() {
    let issuer = Issuer::start().await;
    let upstream = counting_upstream(None).await;
    let gw = start_gateway(&issuer, &upstream.url).await;
    let h2 = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap();
    for path in ["/length", "/chunked", "/length"] {
        let response = h2.get(format!("{}{path}", gw.url())).send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), path.trim_start_matches('/'));
    }
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        1,
        "sequential HTTP/2 requests reuse a pooled connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order_over_one_upstream_connection() {
    let issuer = Issuer::start().await;
    let upstream = counting_upstream(None).await;
    let gw = start_gateway(&issuer, &upstream.url).await;
    let addr = gw.url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Three requests in one write: the gateway answers them one after the other, and never
    // sends a request on an upstream connection whose previous response is still being read.
    stream
        .write_all(
            b"GET /chunked HTTP/1.1\r\nhost: gw\r\n\r\nGET /length HTTP/1.1\r\nhost: gw\r\n\r\nGET /zero HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let statuses = answer.matches("HTTP/1.1 200 OK").count();
    assert_eq!(statuses, 3, "{answer}");
    let chunked = answer.find("chu").expect("the chunked body");
    let length = answer.find("length").expect("the second body");
    assert!(chunked < length, "answered out of order: {answer}");
    assert!(
        answer.ends_with("content-length: 0\r\n\r\n") || answer.contains("content-length: 0"),
        "{answer}"
    );
    assert!(upstream.accepted.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_named_by_host_name_is_resolved() {
    let issuer = Issuer::start().await;
    let upstream = counting_upstream(None).await;
    // `localhost` may resolve to ::1 first, where nothing listens: the next address is tried.
    let named = upstream.url.replace("127.0.0.1", "localhost");
    let gw = start_gateway(&issuer, &named).await;
    let mut client = client_connection(&gw).await;
    assert_eq!(exchange(&mut client, "GET", "/length").await, (200, "length".to_owned()));
    assert_eq!(exchange(&mut client, "GET", "/chunked").await, (200, "chunked".to_owned()));
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_connection_whose_response_says_close_is_closed_at_once() {
    let issuer = Issuer::start().await;
    let mut upstream = counting_upstream(None).await;
    let gw = start_gateway(&issuer, &upstream.url).await;
    let mut client = client_connection(&gw).await;
    assert_eq!(exchange(&mut client, "GET", "/announce-close").await, (200, "close".to_owned()));
    // The upstream waits for the gateway to close; the client connection stays open.
    tokio::time::timeout(WAIT, upstream.closed.wait_for(|n| *n == 1)).await.expect("never closed").unwrap();
    assert_eq!(exchange(&mut client, "GET", "/length").await, (200, "length".to_owned()));
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn short_client_connections_reuse_upstream_connections() {
    let issuer = Issuer::start().await;
    let upstream = counting_upstream(None).await;
    let gw = start_gateway(&issuer, &upstream.url).await;
    for round in 0..3 {
        let mut client = client_connection(&gw).await;
        assert_eq!(
            exchange(&mut client, "GET", "/length").await,
            (200, "length".to_owned()),
            "round {round}"
        );
        drop(client);
        client_connections_open(&gw, 0).await;
    }
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        1,
        "each client connection's left its upstream one for the next"
    );
    assert_eq!(*upstream.closed.borrow(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_early_answer_to_an_upload_leaves_nothing_stuck() {
    early_answer_to_an_upload(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_early_answer_and_close_to_an_upload_leaves_nothing_stuck() {
    early_answer_to_an_upload(true).await;
}

/// An upstream that answers a 4 MiB POST at once, before reading its body; then, unless
/// `close`, reads the body to its end (reporting how much arrived) and goes on serving the
/// connection, else closes it. The client gets the answer (or, with `close`, possibly a 502);
/// once it leaves, the gateway holds nothing for it, and serves the next client.
async fn early_answer_to_an_upload(close: bool) {
    const BODY: usize = 4 * 1024 * 1024;
    let issuer = Issuer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (received_tx, mut received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let received_tx = received_tx.clone();
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
                    if !head.starts_with("post") {
                        if stream.write_all(answer("GET /length HTTP/1.1")).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let early: &[u8] = if close {
                        b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 4\r\n\r\nnope"
                    } else {
                        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nnope"
                    };
                    stream.write_all(early).await.unwrap();
                    if close {
                        return;
                    }
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    let mut body = vec![0u8; length];
                    let read = stream.read_exact(&mut body).await.map_or(0, |_| length);
                    let _ = received_tx.send(read);
                }
            });
        }
    });
    let gw = start_gateway(&issuer, &url).await;

    let (mut sender, client_task) = client_connection_with_bodies(&gw).await;
    sender.ready().await.unwrap();
    let upload = http::Request::post("/upload")
        .header("host", "gateway")
        .body(Full::new(Bytes::from(vec![b'u'; BODY])))
        .unwrap();
    let response = tokio::time::timeout(WAIT, sender.send_request(upload)).await.expect("no answer");
    if close {
        // An upstream that closes on an upload it has not read resets the connection; the
        // gateway may see the reset before the answer, and then answers 502 itself.
        let status = response.map(|r| r.status().as_u16()).unwrap_or(0);
        assert!(matches!(status, 413 | 502 | 0), "{status}");
    } else {
        let response = response.unwrap();
        assert_eq!(response.status(), 413);
        let body =
            tokio::time::timeout(WAIT, response.into_body().collect()).await.unwrap().unwrap().to_bytes();
        assert_eq!(&body[..], b"nope");
        // The rest of the upload still reaches the upstream: the gateway goes on reading it
        // from the client and sending it on, though the answer has gone back already.
        let arrived =
            tokio::time::timeout(WAIT, received.recv()).await.expect("the upload never finished").unwrap();
        assert_eq!(arrived, BODY);
    }
    // The client leaves; the gateway lets go of its connection (it holds no slot, no socket
    // for it), and serves the next client.
    drop(sender);
    client_task.abort();
    client_connections_open(&gw, 0).await;
    let mut fresh = client_connection(&gw).await;
    assert_eq!(exchange(&mut fresh, "GET", "/length").await, (200, "length".to_owned()));
}

/// One HTTP/1 client connection whose requests carry bodies, and its task (aborting it
/// closes the socket, whatever state the client's HTTP/1 machinery is in).
async fn client_connection_with_bodies(
    gateway: &Gateway,
) -> (http1::SendRequest<Full<Bytes>>, tokio::task::JoinHandle<hyper::Result<()>>) {
    let addr = gateway.url().trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    (sender, tokio::spawn(connection))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_closes_at_once_is_a_502_and_the_client_connection_goes_on() {
    let issuer = Issuer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accepts and closes every connection without a word.
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let gw = start_gateway(&issuer, &url).await;
    let mut client = client_connection(&gw).await;
    for round in 0..2 {
        let (status, body) = exchange(&mut client, "GET", "/length").await;
        assert_eq!(status, 502, "round {round}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "bad_gateway");
    }
}

/// An exchange that waits on the upstream at each step — the response head held back until
/// the gateway is waiting for it, the body sent in two parts, the second only once the client
/// has read the first — twice over one client connection. The gateway's task polls the
/// response only through the upstream connection it drives itself (the response and its body
/// with a waker that does nothing): it must be woken by that connection at each step, and
/// never stall.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_back_answer_and_a_body_in_parts_arrive_whole_over_one_upstream_connection() {
    let issuer = Issuer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Upstream to test: a request has arrived. Test to upstream: send the next part.
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<()>();
    let (go_on, mut go) = mpsc::unbounded_channel::<()>();
    let upstream = tokio::spawn(async move {
        // One connection only: a second request on another would never be answered.
        let (mut stream, _) = listener.accept().await.unwrap();
        for _ in 0..2 {
            next_head(&mut stream).await.expect("a request");
            arrived_tx.send(()).unwrap();
            go.recv().await.unwrap();
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n";
            stream.write_all(head).await.unwrap();
            go.recv().await.unwrap();
            stream.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
        }
    });
    let gateway = start_gateway(&issuer, &url).await;
    let mut client = client_connection(&gateway).await;
    for _ in 0..2 {
        client.ready().await.unwrap();
        let request =
            http::Request::builder().uri("/slow").header("host", "gateway").body(Empty::new()).unwrap();
        let response = tokio::spawn(client.send_request(request));
        tokio::time::timeout(WAIT, arrived.recv()).await.expect("the request reached the upstream").unwrap();
        go_on.send(()).unwrap();
        let response =
            tokio::time::timeout(WAIT, response).await.expect("the head came through").unwrap().unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let first = tokio::time::timeout(WAIT, body.frame()).await.expect("the first part came through");
        let first = first.expect("a first part").unwrap().into_data().expect("data");
        assert_eq!(&first[..], b"first");
        go_on.send(()).unwrap();
        let rest = tokio::time::timeout(WAIT, body.collect()).await.expect("the rest came through").unwrap();
        assert_eq!(&rest.to_bytes()[..], b"second");
    }
    tokio::time::timeout(WAIT, upstream).await.expect("the upstream served both").unwrap();
}
