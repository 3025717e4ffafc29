//! A stand-in for the OpenClaw gateway's unauthenticated health endpoint, for tests and benchmarks.
//!
//! Answers `GET /healthz` (and `/health`) like the real gateway does: 200 with the same 27-byte JSON body,
//! then closes. `--delay-ms N` waits N ms after the request head before answering, which gives a target
//! with a known first-byte time. Anything else gets 404.
//!
//! It also serves a Control UI stand-in at `/` (an HTML page; `--no-ui` makes it 404) and `POST /tools/invoke`
//! like the gateway's auth: 400 "requires name" with `Authorization: Bearer <--token>`, else 401.
//!
//! A WebSocket upgrade on any path gets the gateway's protocol as far as auth: the `connect.challenge` event
//! first, then a `res` to `connect` (ok with the `--token`, else refused AUTH_TOKEN_MISMATCH), and the close
//! echoed (tungstenite, on a blocking thread).
//!
//! With `--readiness VERSION` it also answers `GET /startupz` and `/readyz` as a current gateway does to a local
//! caller (its version and uptime, an event loop); `--starting-ms N` makes them say `starting` (503, one failing
//! component) for the first N ms. Without `--readiness` they are 404, as on gateways older than mid-2026.
//!
//! Usage: gateway-standin --listen 127.0.0.1:PORT [--listen ...] [--delay-ms N] [--token T] [--no-ui]
//!        [--readiness VERSION [--starting-ms N]]
//! (`--listen` may repeat: one process serves as many forwards as the scale benchmark needs.)

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = r#"{"ok":true,"status":"live"}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listens, mut delay) = (Vec::new(), Duration::ZERO);
    let mut settings =
        Settings { token: None, ui: true, version: None, starting: Duration::ZERO, started: std::time::Instant::now() };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listens.push(args.next().expect("--listen ADDR")),
            "--delay-ms" => delay = Duration::from_millis(args.next().expect("--delay-ms N").parse().expect("ms")),
            "--token" => settings.token = Some(args.next().expect("--token T")),
            "--no-ui" => settings.ui = false,
            "--readiness" => settings.version = Some(args.next().expect("--readiness VERSION")),
            "--starting-ms" => {
                settings.starting = Duration::from_millis(args.next().expect("--starting-ms N").parse().expect("ms"))
            }
            other => panic!("unknown argument {other}"),
        }
    }
    if listens.is_empty() {
        listens.push(String::from("127.0.0.1:18789"));
    }
    let settings = std::sync::Arc::new(settings);
    let mut accepting = tokio::task::JoinSet::new();
    for listen in &listens {
        let listener = TcpListener::bind(listen).await.unwrap_or_else(|e| panic!("bind {listen}: {e}"));
        accepting.spawn(accept(listener, delay, settings.clone()));
    }
    eprintln!("gateway-standin listening on {} address(es) from {}, delay {delay:?}", listens.len(), listens[0]);
    accepting.join_next().await;
}

async fn accept(listener: TcpListener, delay: Duration, settings: std::sync::Arc<Settings>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(socket, delay, settings.clone()));
    }
}

struct Settings {
    token: Option<String>,
    ui: bool,
    /// The version `/startupz` gives; None: no `/startupz` or `/readyz` (an older gateway).
    version: Option<String>,
    /// How long after start the gateway says `starting`.
    starting: Duration,
    started: std::time::Instant,
}

async fn answer(mut socket: TcpStream, delay: Duration, settings: std::sync::Arc<Settings>) {
    let _ = socket.set_nodelay(true);
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (method, path, authorization, websocket_key) = loop {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let authorization = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned());
                let websocket_key = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                    .map(|h| h.value.to_vec());
                break (
                    request.method.unwrap_or("GET").to_owned(),
                    request.path.unwrap_or("/").to_owned(),
                    authorization,
                    websocket_key,
                );
            }
            Ok(httparse::Status::Partial) if head.len() < 16 * 1024 => continue,
            _ => return,
        }
    };
    tokio::time::sleep(delay).await;
    if let Some(key) = websocket_key {
        let accept = tungstenite::handshake::derive_accept_key(&key);
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let Ok(socket) = socket.into_std() else { return };
        let token = settings.token.clone();
        tokio::task::spawn_blocking(move || websocket_session(socket, token));
        return;
    }
    let reply = |status: &str, content_type: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let response = match (method.as_str(), path.as_str()) {
        (_, "/healthz" | "/health") => reply("200 OK", "application/json; charset=utf-8", BODY),
        ("GET", "/") if settings.ui => {
            reply("200 OK", "text/html; charset=utf-8", "<!doctype html><title>OpenClaw Control</title>")
        }
        ("POST", "/tools/invoke") => {
            let accepted = matches!((&settings.token, &authorization), (Some(token), Some(header)) if *header == format!("Bearer {token}"));
            if accepted {
                reply(
                    "400 Bad Request",
                    "application/json",
                    r#"{"ok":false,"error":{"type":"invalid_request","message":"tools.invoke requires name"}}"#,
                )
            } else {
                reply(
                    "401 Unauthorized",
                    "application/json",
                    r#"{"error":{"message":"Unauthorized","type":"unauthorized"}}"#,
                )
            }
        }
        ("GET", "/startupz" | "/readyz") if settings.version.is_some() => {
            let uptime = settings.started.elapsed();
            let uptime_ms = uptime.as_millis();
            let starting = uptime < settings.starting;
            let status = if starting { "503 Service Unavailable" } else { "200 OK" };
            let body = if path == "/startupz" {
                format!(
                    r#"{{"ok":{},"status":"{}","version":"{}","uptimeMs":{uptime_ms}}}"#,
                    !starting,
                    if starting { "starting" } else { "started" },
                    settings.version.as_deref().unwrap_or_default()
                )
            } else {
                format!(
                    r#"{{"ready":{},"failing":{},"uptimeMs":{uptime_ms},"eventLoop":{{"degraded":false,"delayP99Ms":1.5,"utilization":0.02}}}}"#,
                    !starting,
                    if starting { r#"["plugin-reload"]"# } else { "[]" }
                )
            };
            reply(status, "application/json; charset=utf-8", &body)
        }
        _ => reply("404 Not Found", "text/plain", ""),
    };
    // One write, so the first byte is not split from the rest by the test's own making.
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// The gateway's WebSocket protocol as far as auth: challenge, the answer to `connect`, then whatever the
/// client sends until it closes (tungstenite answers the close).
fn websocket_session(socket: std::net::TcpStream, token: Option<String>) {
    use tungstenite::Message;
    let _ = socket.set_nonblocking(false);
    let mut ws = tungstenite::WebSocket::from_raw_socket(socket, tungstenite::protocol::Role::Server, None);
    let challenge = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"standin","ts":0}}"#;
    if ws.send(Message::text(challenge)).is_err() {
        return;
    }
    while let Ok(message) = ws.read() {
        let Message::Text(text) = message else { continue };
        let Ok(request) = serde_json::from_str::<serde_json::Value>(text.as_str()) else { continue };
        if request["method"] != "connect" {
            continue;
        }
        let ok = token.as_deref().is_some_and(|t| request["params"]["auth"]["token"] == t);
        let answer = if ok {
            serde_json::json!({"type": "res", "id": request["id"], "ok": true, "payload": {"type": "hello-ok"}})
        } else {
            serde_json::json!({"type": "res", "id": request["id"], "ok": false,
                "error": {"code": "INVALID_REQUEST", "message": "unauthorized: gateway token mismatch",
                          "details": {"code": "AUTH_TOKEN_MISMATCH"}}})
        };
        if ws.send(Message::text(answer.to_string())).is_err() {
            return;
        }
    }
}
