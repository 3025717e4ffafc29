//! The auth tap under abuse, run through the exporter binary: a thousand concurrent connections, ten
//! thousand distinct tokens, a burst through an upstream with a short listen queue, clients that stop reading,
//! half-closed sockets, and a WebSocket frame that announces 2^63 bytes. The upstream is a small keep-alive
//! HTTP/WebSocket server in this file, so each test controls exactly what the tap must pass through; the tap
//! itself is the real binary.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{fingerprint_line, forward_toml, free_port, own_comm, rss_kib, trusting, Exporter, Scrape};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream answers any request but `/healthz`, `/big` and a WebSocket upgrade: keep-alive.
const UNAUTHORIZED: &[u8] =
    b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{\"error\":\"unauthorized\"}";
const HEALTHY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
const BIG_BODY: usize = 10 * 1024 * 1024;

/// Counters the upstream keeps, for the tests to check what reached it.
#[derive(Default)]
struct Upstream {
    open: AtomicUsize,
    most_open: AtomicUsize,
    /// WebSocket bytes received after the 101, over all connections.
    ws_bytes: AtomicU64,
}

async fn serve_upstream(listener: TcpListener, upstream: Arc<Upstream>, accept_pause: Duration) {
    while let Ok((socket, _)) = listener.accept().await {
        tokio::time::sleep(accept_pause).await;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let open = upstream.open.fetch_add(1, Ordering::SeqCst) + 1;
            upstream.most_open.fetch_max(open, Ordering::SeqCst);
            let _ = answer(socket, &upstream).await;
            upstream.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Answer requests on one connection until the client closes its side.
async fn answer(mut socket: TcpStream, upstream: &Upstream) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buffer) {
                Ok(httparse::Status::Complete(head)) => {
                    let header = |name: &str| {
                        request.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.to_vec())
                    };
                    let body: usize = header("content-length")
                        .and_then(|v| String::from_utf8(v).ok()?.trim().parse().ok())
                        .unwrap_or(0);
                    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
                    Some((head + body, request.path.unwrap_or("/").to_owned(), upgrade))
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => return Ok(()),
            }
        };
        let Some((length, path, upgrade)) = parsed.filter(|(length, ..)| buffer.len() >= *length) else {
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
            continue;
        };
        buffer.drain(..length);
        if upgrade {
            socket.write_all(SWITCHING).await?;
            upstream.ws_bytes.fetch_add(buffer.len() as u64, Ordering::SeqCst);
            loop {
                let n = socket.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                upstream.ws_bytes.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
        match path.as_str() {
            "/healthz" => socket.write_all(HEALTHY).await?,
            "/big" => {
                socket.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG_BODY}\r\n\r\n").as_bytes()).await?;
                let zeros = vec![0u8; 64 * 1024];
                for _ in 0..BIG_BODY / zeros.len() {
                    socket.write_all(&zeros).await?;
                }
            }
            _ => socket.write_all(UNAUTHORIZED).await?,
        }
    }
}

/// The upstream on a free port, the exporter with a tap in front of it, and a runtime for the clients.
struct Setup {
    runtime: tokio::runtime::Runtime,
    upstream: Arc<Upstream>,
    exporter: Exporter,
    tap: SocketAddr,
}

impl Setup {
    fn start() -> Setup {
        Setup::with_upstream_queue(1024, Duration::ZERO)
    }

    /// The upstream's listen queue holds `backlog` connections, and its accept loop pauses `accept_pause` after
    /// each accept (an ssh busy elsewhere; ssh's own queue is 128).
    fn with_upstream_queue(backlog: u32, accept_pause: Duration) -> Setup {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let upstream_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let listener = runtime
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(upstream_addr)?;
                socket.listen(backlog)
            })
            .unwrap();
        let upstream = Arc::new(Upstream::default());
        runtime.spawn(serve_upstream(listener, upstream.clone(), accept_pause));
        let tap = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let exporter = Exporter::start(&format!(
            "{}{}[auth_probe]\nenabled = false\ninterval = \"1m\"\n[auth]\ncurrent = \"r2\"\n\
             [[auth.revision]]\nname = \"r1\"\n{}\n[[auth.revision]]\nname = \"r2\"\n{}\n\
             [[auth_tap]]\nforward = \"t\"\nlisten = \"{tap}\"\nupstream = \"{upstream_addr}\"\n",
            forward_toml("t", upstream_addr.port()),
            // The upstream is this test process itself.
            trusting(&own_comm()),
            fingerprint_line("sekrit-token-r1"),
            fingerprint_line("sekrit-token-r2"),
        ));
        e2e::wait_listening(tap, "auth tap", Duration::from_secs(10));
        Setup { runtime, upstream, exporter, tap }
    }

    fn rss_mib(&self) -> f64 {
        rss_kib(self.exporter.proc.pid()) as f64 / 1024.0
    }
}

async fn invoke(stream: &mut TcpStream, token: &str) -> std::io::Result<Vec<u8>> {
    let request = format!(
        "POST /tools/invoke HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = vec![0u8; UNAUTHORIZED.len()];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

fn auth_series(scrape: &Scrape) -> Vec<&str> {
    scrape.text.lines().filter(|l| l.starts_with("openclaw_gateway_auth_")).collect()
}

#[test]
fn a_thousand_connections_and_ten_thousand_tokens_keep_labels_bounded() {
    const CONNECTIONS: usize = 1_000;
    const REQUESTS_EACH: usize = 10;
    let setup = Setup::start();
    let rss_before = setup.rss_mib();
    let all_open = Arc::new(tokio::sync::Barrier::new(CONNECTIONS + 1));
    // First answers other than the upstream's 401, for the message should fewer than all reach it at once.
    let other_first_answers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|connection| {
            let (tap, all_open, others) = (setup.tap, all_open.clone(), other_first_answers.clone());
            setup.runtime.spawn(async move {
                let mut stream = TcpStream::connect(tap).await?;
                let first = invoke(&mut stream, &format!("sekrit-{connection}-0")).await?;
                if first != UNAUTHORIZED {
                    others.lock().unwrap().push(String::from_utf8_lossy(&first).into_owned());
                }
                all_open.wait().await;
                let mut answers = vec![first];
                for request in 1..REQUESTS_EACH {
                    answers.push(invoke(&mut stream, &format!("sekrit-{connection}-{request}")).await?);
                }
                std::io::Result::Ok(answers)
            })
        })
        .collect();
    // Every connection is open and has had an answer through the tap before any goes on.
    setup.runtime.block_on(all_open.wait());
    let rss_open = setup.rss_mib();
    let most_open = setup.upstream.most_open.load(Ordering::SeqCst);
    if most_open < CONNECTIONS {
        let others = other_first_answers.lock().unwrap();
        let log = setup.exporter.proc.output();
        let tap_lines: Vec<&str> = log.lines().filter(|l| l.contains("tap")).take(20).collect();
        panic!(
            "only {most_open} connections reached the upstream at once; {} first answers were not the upstream's \
             401 (the first: {:?}); the exporter's tap log lines:\n{}",
            others.len(),
            others.first(),
            tap_lines.join("\n")
        );
    }
    for task in tasks {
        for answer in setup.runtime.block_on(task).unwrap().expect("a connection through the tap failed") {
            assert_eq!(answer, UNAUTHORIZED);
        }
    }

    let total = (CONNECTIONS * REQUESTS_EACH) as f64;
    let scrape = setup.exporter.wait_for("every request counted", Duration::from_secs(20), |s| {
        s.value(
            r#"openclaw_gateway_auth_failures_total{forward="t",channel="http",code="401",token_revision="unknown"}"#,
        ) >= total
    });
    assert_eq!(
        scrape.value(r#"openclaw_gateway_auth_requests_total{forward="t",channel="http",token_revision="unknown"}"#),
        total
    );
    // Ten thousand distinct credentials, and the label values are still only the registry's plus unknown/none.
    let series = auth_series(&scrape);
    for line in &series {
        let revision = line.split("token_revision=\"").nth(1).and_then(|rest| rest.split('"').next());
        assert!(matches!(revision, None | Some("r1" | "r2" | "unknown" | "none")), "unexpected label value in {line}");
    }
    assert!(series.len() <= 64, "{} auth series after 10,000 tokens:\n{}", series.len(), series.join("\n"));
    assert!(!scrape.text.contains("sekrit-"), "a token reached /metrics");
    let log = setup.exporter.proc.output();
    assert!(!log.contains("sekrit-"), "a token reached the log:\n{log}");
    println!("exporter RSS: {rss_before:.1} MiB before, {rss_open:.1} MiB with {CONNECTIONS} tapped connections open");
    // Each open connection costs two copy buffers and an observer; a leak per token or per request would not fit.
    assert!(rss_open - rss_before < 96.0, "RSS grew {rss_before:.1} -> {rss_open:.1} MiB");
}

#[test]
fn a_burst_of_clients_all_reach_an_upstream_with_a_short_listen_queue() {
    // Dialled at once, 64 upstream connections overflow a queue of 4: the kernel answers with SYN cookies and
    // drops final ACKs, and a connection the listener never took has no far end the gate could vouch for.
    const CLIENTS: usize = 64;
    let setup = Setup::with_upstream_queue(4, Duration::from_millis(5));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let tap = setup.tap;
            setup.runtime.spawn(async move {
                let mut stream = TcpStream::connect(tap).await?;
                invoke(&mut stream, &format!("sekrit-{client}")).await
            })
        })
        .collect();
    let answers: Vec<Vec<u8>> = tasks
        .into_iter()
        .map(|task| setup.runtime.block_on(task).unwrap().expect("a connection through the tap failed"))
        .collect();
    let refused: Vec<String> =
        answers.iter().filter(|a| a.as_slice() != UNAUTHORIZED).map(|a| String::from_utf8_lossy(a).into()).collect();
    let log = setup.exporter.proc.output();
    let withheld: Vec<&str> = log.lines().filter(|l| l.contains("relayed nothing")).collect();
    assert!(
        refused.is_empty(),
        "{} of {CLIENTS} clients did not get the upstream's answer (the first: {:?}); the tap logged:\n{}",
        refused.len(),
        refused.first(),
        withheld.join("\n")
    );
}

#[test]
fn clients_that_stop_reading_cost_bounded_memory_and_hold_no_one_else() {
    const STALLED: usize = 50;
    let setup = Setup::start();
    let rss_before = setup.rss_mib();
    let stalled: Vec<TcpStream> = setup.runtime.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..STALLED {
            let mut stream = TcpStream::connect(setup.tap).await.unwrap();
            stream.write_all(b"GET /big HTTP/1.1\r\nHost: gateway\r\n\r\n").await.unwrap();
            streams.push(stream);
        }
        streams
    });
    // Let every 10 MiB answer push until the socket buffers and the tap's copy buffer are full.
    std::thread::sleep(Duration::from_secs(3));
    let rss_stalled = setup.rss_mib();
    println!("exporter RSS: {rss_before:.1} MiB before, {rss_stalled:.1} MiB with {STALLED} stalled 10 MiB answers");
    // Buffering the answers would take 500 MiB; the tap holds at most one copy buffer per direction.
    assert!(rss_stalled - rss_before < 48.0, "RSS grew {rss_before:.1} -> {rss_stalled:.1} MiB");

    // Others are still served, and a stalled client that starts reading gets its whole answer.
    let answer = setup.runtime.block_on(async {
        let mut stream = TcpStream::connect(setup.tap).await.unwrap();
        invoke(&mut stream, "sekrit-token-r1").await.unwrap()
    });
    assert_eq!(answer, UNAUTHORIZED);
    let mut first = stalled.into_iter().next().unwrap();
    let received = setup.runtime.block_on(async {
        let mut buffer = vec![0u8; 256 * 1024];
        let (mut received, mut head_end) = (Vec::new(), None);
        loop {
            let n = first.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the tap closed a stalled connection early");
            if head_end.is_none() {
                received.extend_from_slice(&buffer[..n]);
                head_end = received.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
                if let Some(end) = head_end {
                    received.drain(..end);
                    received.shrink_to_fit();
                }
                continue;
            }
            received.extend_from_slice(&buffer[..n]);
            if received.len() >= BIG_BODY {
                return received.len();
            }
        }
    });
    assert_eq!(received, BIG_BODY);
}

#[test]
fn a_half_closed_client_still_gets_its_answer() {
    let setup = Setup::start();
    let answer = setup.runtime.block_on(async {
        let mut stream = TcpStream::connect(setup.tap).await.unwrap();
        stream
            .write_all(b"POST /tools/invoke HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer sekrit-token-r1\r\nContent-Length: 2\r\n\r\n{}")
            .await
            .unwrap();
        // The client is done sending; the tap must pass the FIN on and keep relaying the answer.
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
        answer
    });
    assert_eq!(answer, UNAUTHORIZED);
    setup.exporter.wait_for("the half-closed request counted", Duration::from_secs(10), |s| {
        s.value(r#"openclaw_gateway_auth_failures_total{forward="t",channel="http",code="401",token_revision="r1"}"#)
            == 1.0
    });
    // The upstream saw the FIN too: the connection is gone on both sides.
    let deadline = Instant::now() + Duration::from_secs(10);
    while setup.upstream.open.load(Ordering::SeqCst) > 0 {
        assert!(Instant::now() < deadline, "the upstream connection stayed open after both sides closed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_websocket_frame_announcing_2_pow_63_bytes_allocates_nothing_and_still_relays() {
    const STREAMED: usize = 32 * 1024 * 1024;
    let setup = Setup::start();
    let rss_before = setup.rss_mib();
    let sent = setup.runtime.block_on(async {
        let mut sent = 0;
        // Length 2^63 - 1 (the largest legal) and 2^63 (a protocol error): either way the bytes pass.
        for length in [u64::MAX >> 1, 1u64 << 63] {
            let mut stream = TcpStream::connect(setup.tap).await.unwrap();
            stream
                .write_all(
                    b"GET /ws HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                )
                .await
                .unwrap();
            let mut switching = vec![0u8; SWITCHING.len()];
            stream.read_exact(&mut switching).await.unwrap();
            assert_eq!(switching, SWITCHING);
            let mut header = vec![0x82, 0x80 | 127];
            header.extend_from_slice(&length.to_be_bytes());
            header.extend_from_slice(&[1, 2, 3, 4]);
            stream.write_all(&header).await.unwrap();
            let payload = vec![0x5a; 1024 * 1024];
            for _ in 0..STREAMED / payload.len() {
                stream.write_all(&payload).await.unwrap();
            }
            sent += header.len() + STREAMED;
        }
        sent as u64
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.upstream.ws_bytes.load(Ordering::SeqCst) < sent {
        assert!(Instant::now() < deadline, "the tap stopped relaying after a 2^63-byte frame header");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(setup.upstream.ws_bytes.load(Ordering::SeqCst), sent);
    let rss_after = setup.rss_mib();
    println!("exporter RSS: {rss_before:.1} MiB before, {rss_after:.1} MiB after 2 x 32 MiB into 2^63-byte frames");
    assert!(rss_after - rss_before < 16.0, "RSS grew {rss_before:.1} -> {rss_after:.1} MiB");
    // The exporter is alive and the tap still counts.
    setup.exporter.scrape();
}
