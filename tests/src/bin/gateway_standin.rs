//! A stand-in for the OpenClaw gateway's unauthenticated health endpoint, for tests and benchmarks.
//!
//! Answers `GET /healthz` (and `/health`) like the real gateway does: 200 with the same 27-byte JSON body,
//! then closes. `--delay-ms N` waits N ms after the request head before answering, which gives a target
//! with a known first-byte time. Anything else gets 404.
//!
//! Usage: gateway-standin --listen 127.0.0.1:PORT [--delay-ms N]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = r#"{"ok":true,"status":"live"}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut delay) = (String::from("127.0.0.1:18789"), Duration::ZERO);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            "--delay-ms" => delay = Duration::from_millis(args.next().expect("--delay-ms N").parse().expect("ms")),
            other => panic!("unknown argument {other}"),
        }
    }
    let listener = TcpListener::bind(&listen).await.unwrap_or_else(|e| panic!("bind {listen}: {e}"));
    eprintln!("gateway-standin listening on {listen}, delay {delay:?}");
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(socket, delay));
    }
}

async fn answer(mut socket: TcpStream, delay: Duration) {
    let _ = socket.set_nodelay(true);
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let path = loop {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => break request.path.unwrap_or("/").to_owned(),
            Ok(httparse::Status::Partial) if head.len() < 16 * 1024 => continue,
            _ => return,
        }
    };
    tokio::time::sleep(delay).await;
    let response = if path == "/healthz" || path == "/health" {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
            BODY.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    };
    // One write, so the first byte is not split from the rest by the test's own making.
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}
