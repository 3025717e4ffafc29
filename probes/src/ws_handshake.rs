//! WebSocket handshake probe: the CLI's own path through the forward. An HTTP upgrade, then the gateway's
//! first frame, the `connect.challenge` event, timed from the upgrade sent to that frame.
//!
//! `/healthz` is answered by the gateway's HTTP layer; the CLI talks WebSocket, and a gateway can answer the
//! one and not the other (during startup, under a stuck event loop, behind a proxy that drops upgrades).
//! With a token the probe completes a real `connect` and closes 1000: measured on the real gateway
//! 2026.9.6, that writes nothing to the gateway's log, while a handshake closed before `connect` writes one
//! warning ("closed before connect ... handshake=pending", ~1.1 KB across its console and file logs).
//!
//! The handshake is tokio-tungstenite's (the key, the accept check, framing); the probe only times it and
//! names what failed. Nothing the gateway sends becomes a label: failures are a fixed list, the connect
//! answer is accepted or refused.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, protocol::frame::coding::CloseCode, protocol::CloseFrame, Message};

pub use crate::auth_probe::Secret;
use crate::gate::Clearance;
use crate::route::{DialFailure, Route};

/// Where to probe, and with which token (none: the probe closes right after the challenge).
#[derive(Debug)]
pub struct Target {
    /// The forward's route.
    pub route: Route,
    /// The token for a real `connect`; empty for none.
    pub token: Secret,
    /// The owner check before the token goes out, run on the connected stream right before `connect` (see
    /// [`crate::gate::CredentialGate`]); when it fails, the probe closes after the challenge instead.
    /// `None` only where the caller itself made the listener (tests).
    pub gate: Option<crate::gate::CredentialGate>,
    /// Set by a round whose gate kept the token back (why), for the recording to take: a round that fails
    /// before the challenge withheld the token all the same.
    pub withheld: Withheld,
}

/// The gate's verdict of the last round when it kept the token back, shared by the probe and its recording.
#[derive(Debug, Clone, Default)]
pub struct Withheld(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Withheld {
    /// Take the last round's verdict (None: the token was not withheld, or there was none to send).
    pub fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    fn set(&self, why: String) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(why);
    }
}

/// What became of the `connect` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// No token: closed after the challenge, before `connect`.
    NotSent,
    /// `hello-ok`.
    Accepted,
    /// The gateway refused it (bad token, starting, rate limited), for this reason: the handshake itself still
    /// worked.
    Refused(crate::refusal::Refusal),
    /// No answer within the timeout, or the connection closed first.
    Unanswered,
}

/// A handshake that reached the challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Upgrade request written -> the challenge frame read (the 101 and the frame usually share a packet).
    pub elapsed: Duration,
    /// What became of `connect`.
    pub connect: Connect,
}

/// Why a handshake did not reach the challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Nothing listens on the forward's address.
    #[error("connection refused")]
    Refused,
    /// Reset or closed before the upgrade was answered (ssh alive, gateway dead).
    #[error("connection reset before the upgrade was answered: {detail}")]
    Reset {
        /// What the OS or the handshake said.
        detail: String,
    },
    /// No challenge within the timeout.
    #[error("no challenge within the timeout")]
    Timeout,
    /// The answer to the upgrade was not a valid 101 (an HTTP status, or a bad accept key).
    #[error("upgrade refused: {detail}")]
    UpgradeRefused {
        /// The HTTP status when there was one.
        status: Option<u16>,
        /// What was wrong.
        detail: String,
    },
    /// Upgraded, but the first frame was not `connect.challenge`.
    #[error("the first frame was not connect.challenge")]
    NoChallenge,
    /// Upgraded, then closed (a close frame, with its code when given) before the challenge.
    #[error("closed before the challenge (code {code:?})")]
    Closed {
        /// The close code the gateway sent.
        code: Option<u16>,
    },
    /// The exporter's own machine could not connect (out of fds, buffers or ports).
    #[error("local error, the gateway was not reached: {detail}")]
    LocalError {
        /// The OS error.
        detail: String,
    },
    /// A direct route's host name did not resolve.
    #[error("the gateway's host does not resolve: {detail}")]
    Dns {
        /// The resolver's error.
        detail: String,
    },
    /// A `wss://` route's TLS handshake failed or its certificate did not verify: nothing was sent.
    #[error("TLS: {detail}")]
    Tls {
        /// The handshake's failure.
        detail: String,
    },
}

crate::labels!(Failure {
    Failure::Refused => "refused",
    Failure::Reset { .. } => "reset",
    Failure::Timeout => "timeout",
    Failure::UpgradeRefused { .. } => "upgrade_refused",
    Failure::NoChallenge => "no_challenge",
    Failure::Closed { .. } => "closed",
    Failure::LocalError { .. } => "local_error",
    Failure::Dns { .. } => "dns",
    Failure::Tls { .. } => "tls",
});

crate::labels!(Connect {
    Connect::NotSent => "not_sent",
    Connect::Accepted => "accepted",
    Connect::Refused(_) => "refused",
    Connect::Unanswered => "unanswered",
});

/// What one handshake probe returns.
pub type Outcome = Result<Handshake, Failure>;

impl From<crate::CutOff> for Outcome {
    fn from(_: crate::CutOff) -> Self {
        Err(Failure::Timeout)
    }
}

/// The `connect` request's id, to find its answer.
const CONNECT_ID: &str = "oce-probe";

impl crate::Probe for Target {
    const KIND: &'static str = "ws_handshake";
    type Outcome = Outcome;

    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let deadline = tokio::time::Instant::now() + timeout;
        // The gate first (after the round's permit, before the connect); the connection is checked again
        // right before `connect` below.
        let mut withheld = None;
        if let (false, Some(gate)) = (self.token.expose().is_empty(), &mut self.gate) {
            if let Clearance::Withheld(why) = gate.check(timeout).await {
                withheld = Some(why.why);
            }
        }
        let outcome = self.handshake(deadline, &mut withheld).await;
        if let Some(why) = withheld {
            self.withheld.set(why);
        }
        outcome
    }
}

impl Target {
    async fn handshake(&mut self, deadline: tokio::time::Instant, withheld: &mut Option<String>) -> Outcome {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let stream = match self.route.dial(remaining).await {
            Err(failure) => {
                // A certificate that did not verify keeps a token back: the round withheld it.
                if let (false, Some(_), None) = (self.token.expose().is_empty(), failure.presented(), &withheld) {
                    *withheld = Some(format!("the gateway's certificate did not verify: {failure}"));
                }
                return Err(dial_failure(failure));
            }
            Ok(dialed) => dialed.stream,
        };
        // The handshake's clock starts after the connect and any TLS handshake: the upgrade to the challenge.
        let started = Instant::now();
        let request = upgrade_request(&self.route)?;
        let (mut socket, _) = match tokio::time::timeout_at(
            deadline,
            tokio_tungstenite::client_async_with_config(request, stream, Some(frame_limits())),
        )
        .await
        {
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(err)) => return Err(handshake_failure(err)),
            Ok(Ok(upgraded)) => upgraded,
        };
        let first = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(first) => first,
        };
        let elapsed = started.elapsed();
        match first {
            Some(Ok(Message::Text(text))) if is_challenge(text.as_bytes()) => {}
            Some(Ok(Message::Close(frame))) => return Err(Failure::Closed { code: frame.map(|f| u16::from(f.code)) }),
            Some(Ok(_)) => return Err(Failure::NoChallenge),
            None | Some(Err(_)) => return Err(Failure::Closed { code: None }),
        }
        if !self.token.expose().is_empty() && withheld.is_none() {
            if let Some(gate) = &mut self.gate {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                if let Clearance::Withheld(why) = gate.confirm(socket.get_ref(), remaining).await {
                    *withheld = Some(why.why);
                }
            }
        }
        let connect = if self.token.expose().is_empty() || withheld.is_some() {
            Connect::NotSent
        } else {
            match tokio::time::timeout_at(deadline, connect(&mut socket, &self.token)).await {
                Ok(answer) => answer,
                Err(_) => Connect::Unanswered,
            }
        };
        // A normal close; not waiting for the echo beyond a moment (the result is already known).
        let close = CloseFrame { code: CloseCode::Normal, reason: "probe done".into() };
        let _ = tokio::time::timeout(Duration::from_millis(200), socket.close(Some(close))).await;
        Ok(Handshake { elapsed, connect })
    }
}

/// The largest message or frame the probe accepts: a challenge and a hello answer are a few KiB; whatever
/// holds the port may send anything (tungstenite's default would buffer 64 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

fn frame_limits() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// A dial's failure in the handshake's terms.
fn dial_failure(failure: DialFailure) -> Failure {
    match failure {
        DialFailure::Refused => Failure::Refused,
        DialFailure::LocalError { detail } => Failure::LocalError { detail },
        DialFailure::Unreachable { detail } => Failure::Reset { detail },
        DialFailure::ConnectTimeout | DialFailure::TlsTimeout => Failure::Timeout,
        DialFailure::Resolve { detail } => Failure::Dns { detail },
        tls @ (DialFailure::Tls { .. } | DialFailure::Mismatch { .. }) => Failure::Tls { detail: tls.to_string() },
    }
}

/// The upgrade request: path `/`, Host the route's authority, the exporter's User-Agent.
fn upgrade_request(route: &Route) -> Result<tungstenite::handshake::client::Request, Failure> {
    use tungstenite::client::IntoClientRequest;
    let mut request = route
        .ws_url()
        .into_client_request()
        .map_err(|err| Failure::UpgradeRefused { status: None, detail: err.to_string() })?;
    request.headers_mut().insert("User-Agent", tungstenite::http::HeaderValue::from_static(crate::http::USER_AGENT));
    Ok(request)
}

fn handshake_failure(err: tungstenite::Error) -> Failure {
    use tungstenite::error::ProtocolError;
    match err {
        tungstenite::Error::Http(response) => Failure::UpgradeRefused {
            status: Some(response.status().as_u16()),
            detail: format!("HTTP {}", response.status().as_u16()),
        },
        tungstenite::Error::Io(err) if crate::net::is_local_shortage(&err) => {
            Failure::LocalError { detail: err.to_string() }
        }
        tungstenite::Error::Io(err) => Failure::Reset { detail: err.to_string() },
        tungstenite::Error::Protocol(ProtocolError::HandshakeIncomplete)
        | tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed => Failure::Reset { detail: "closed before the upgrade's answer".into() },
        other => Failure::UpgradeRefused { status: None, detail: other.to_string() },
    }
}

/// `{"type":"event","event":"connect.challenge",...}`.
fn is_challenge(message: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(message)
        .is_ok_and(|value| value["type"] == "event" && value["event"] == "connect.challenge")
}

/// Send `connect` with the token, as the CLI does (operator, read scope, client mode `probe`) and read its
/// answer.
async fn connect<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>, token: &Secret) -> Connect
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(token) = std::str::from_utf8(token.expose()) else { return Connect::NotSent };
    let request = serde_json::json!({
        "type": "req", "id": CONNECT_ID, "method": "connect",
        "params": {
            "minProtocol": 3, "maxProtocol": 4,
            "client": {"id": "gateway-client", "version": env!("CARGO_PKG_VERSION"), "platform": std::env::consts::OS, "mode": "probe"},
            "role": "operator", "scopes": ["operator.read"],
            "auth": {"token": token}
        }
    });
    if socket.send(Message::text(request.to_string())).await.is_err() {
        return Connect::Unanswered;
    }
    while let Some(Ok(message)) = socket.next().await {
        let text = match message {
            Message::Text(text) => text,
            // Closed without an answer: 1002 (protocol) and 1013 (starting) still say why.
            Message::Close(frame) => {
                let code = frame.map(|f| u16::from(f.code));
                return crate::refusal::Refusal::of_close(code).map_or(Connect::Unanswered, Connect::Refused);
            }
            _ => continue,
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text.as_str()) else { continue };
        if value["type"] == "res" && value["id"] == CONNECT_ID {
            return if value["ok"] == true {
                Connect::Accepted
            } else {
                Connect::Refused(crate::refusal::Refusal::of_error(&value["error"]))
            };
        }
    }
    Connect::Unanswered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Label, Probe};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn target(addr: SocketAddr) -> Target {
        Target { route: Route::Local(addr), token: Secret::new(Vec::new()), gate: None, withheld: Withheld::default() }
    }

    /// A WebSocket server that sends `first` (if any) after the upgrade, then answers a connect with `ok`.
    async fn ws_server(first: Option<Message>, ok: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
            match first {
                Some(message) => socket.send(message).await.unwrap(),
                None => return,
            }
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                    assert_eq!(value["params"]["auth"]["token"], "tok-1");
                    let answer = serde_json::json!({"type": "res", "id": value["id"], "ok": ok});
                    socket.send(Message::text(answer.to_string())).await.unwrap();
                }
            }
        });
        addr
    }

    fn challenge() -> Message {
        Message::text(r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n"}}"#)
    }

    #[tokio::test]
    async fn the_challenge_is_a_handshake_and_a_token_completes_connect() {
        let addr = ws_server(Some(challenge()), true).await;
        let handshake = target(addr).probe(Duration::from_secs(5)).await.unwrap();
        assert_eq!(handshake.connect, Connect::NotSent);
        let addr = ws_server(Some(challenge()), true).await;
        let mut with_token = Target {
            route: Route::Local(addr),
            token: Secret::new("tok-1"),
            gate: None,
            withheld: Withheld::default(),
        };
        assert_eq!(with_token.probe(Duration::from_secs(5)).await.unwrap().connect, Connect::Accepted);
        let addr = ws_server(Some(challenge()), false).await;
        let mut refused = Target {
            route: Route::Local(addr),
            token: Secret::new("tok-1"),
            gate: None,
            withheld: Withheld::default(),
        };
        assert_eq!(
            refused.probe(Duration::from_secs(5)).await.unwrap().connect,
            Connect::Refused(crate::refusal::Refusal::Other)
        );
    }

    #[tokio::test]
    async fn another_first_frame_is_no_challenge_and_a_close_is_closed_with_its_code() {
        let addr = ws_server(Some(Message::text(r#"{"type":"event","event":"tick"}"#)), true).await;
        assert_eq!(target(addr).probe(Duration::from_secs(5)).await.unwrap_err(), Failure::NoChallenge);
        let close = CloseFrame { code: CloseCode::Again, reason: "gateway starting".into() };
        let addr = ws_server(Some(Message::Close(Some(close))), true).await;
        let failure = target(addr).probe(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(failure, Failure::Closed { code: Some(1013) });
        assert_eq!(failure.label(), "closed");
    }

    /// A plain TCP server that reads the request, then does `behave`.
    async fn raw_server(reply: &'static [u8], hold: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 2048];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(reply).await;
            if hold {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_answers_resets_and_silence_are_named() {
        let addr = raw_server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false).await;
        let failure = target(addr).probe(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(failure.label(), "upgrade_refused");
        assert!(matches!(failure, Failure::UpgradeRefused { status: Some(404), .. }), "{failure:?}");
        let addr = raw_server(b"", false).await;
        assert_eq!(target(addr).probe(Duration::from_secs(5)).await.unwrap_err().label(), "reset");
        let addr = raw_server(b"", true).await;
        let started = Instant::now();
        assert_eq!(target(addr).probe(Duration::from_millis(300)).await.unwrap_err(), Failure::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2));
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        assert_eq!(target(free).probe(Duration::from_secs(5)).await.unwrap_err(), Failure::Refused);
    }

    #[test]
    fn the_token_never_appears_in_debug_output() {
        let target = Target {
            route: Route::Local("127.0.0.1:1".parse().unwrap()),
            token: Secret::new("tok-secret-123"),
            gate: None,
            withheld: Withheld::default(),
        };
        assert!(!format!("{target:?}").contains("tok-secret-123"));
    }
}
