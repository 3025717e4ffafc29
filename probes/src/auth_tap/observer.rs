//! Per-connection state linking what the client sent to what the gateway answered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::credential::{Credential, Registry};
use super::http::{PendingRequests, RequestReader, RequestSeen, ResponseReader, ResponseSeen};
use super::ws::{FrameReader, WsItem};
use super::{AuthEvent, AuthSink, Channel};

/// Pipelined requests awaiting answers beyond this make the tap stop reading the connection.
const MAX_PENDING: usize = 64;
/// Client frames seen before the 101 was read (a race between the two copy tasks), kept up to this.
const MAX_EARLY_FRAMES: usize = 64 * 1024;
/// Messages read on each side looking for the connect request and its answer before giving up.
const MAX_WS_MESSAGES: u32 = 8;

#[derive(Debug)]
struct Pending {
    credential: Credential,
    is_head: bool,
    upgrade: bool,
    sent_at: Instant,
    first_byte_seen: bool,
}

impl PendingRequests for VecDeque<Pending> {
    fn is_head(&self, nth: usize) -> bool {
        self.get(nth).is_some_and(|p| p.is_head)
    }
}

#[derive(Debug)]
struct WsConnect {
    id: serde_json::Value,
    credential: Credential,
    sent_at: Instant,
}

/// Reads both directions of one tapped connection and reports auth events to the sink.
pub struct Observer {
    forward: String,
    registry: Arc<Registry>,
    sink: Arc<dyn AuthSink>,
    requests: RequestReader,
    responses: ResponseReader,
    pending: VecDeque<Pending>,
    client_frames: Option<FrameReader>,
    gateway_frames: Option<FrameReader>,
    early_client_frames: Vec<u8>,
    connect: Option<WsConnect>,
    client_messages: u32,
    gateway_messages: u32,
    request_scratch: Vec<RequestSeen>,
    response_scratch: Vec<ResponseSeen>,
}

impl Observer {
    /// An observer for one connection of the tap labelled `forward`.
    pub fn new(forward: String, registry: Arc<Registry>, sink: Arc<dyn AuthSink>) -> Self {
        Observer {
            forward,
            registry,
            sink,
            requests: RequestReader::default(),
            responses: ResponseReader::default(),
            pending: VecDeque::new(),
            client_frames: None,
            gateway_frames: None,
            early_client_frames: Vec::new(),
            connect: None,
            client_messages: 0,
            gateway_messages: 0,
            request_scratch: Vec::new(),
            response_scratch: Vec::new(),
        }
    }

    fn emit(&self, event: AuthEvent<'_>) {
        self.sink.auth_event(&self.forward, event);
    }

    /// Bytes the client sent (already forwarded to the gateway).
    pub fn client_bytes(&mut self, bytes: &[u8], now: Instant) {
        if self.client_frames.is_some() {
            self.read_client_frames(bytes, now);
            return;
        }
        if !self.pending.iter().any(|p| p.upgrade) || self.early_client_frames.is_empty() {
            let mut seen = std::mem::take(&mut self.request_scratch);
            let rest = self.requests.feed(bytes, &mut seen);
            for request in seen.drain(..) {
                if self.pending.len() >= MAX_PENDING {
                    self.requests.give_up();
                    self.responses.give_up();
                    break;
                }
                if !request.websocket_upgrade {
                    let revision = self.registry.revision(&request.credential);
                    self.emit(AuthEvent::Request { channel: Channel::Http, revision });
                }
                self.pending.push_back(Pending {
                    credential: request.credential,
                    is_head: request.is_head,
                    upgrade: request.websocket_upgrade,
                    sent_at: now,
                    first_byte_seen: false,
                });
            }
            self.request_scratch = seen;
            self.keep_early_frames(rest);
        } else {
            self.keep_early_frames(bytes);
        }
    }

    fn keep_early_frames(&mut self, bytes: &[u8]) {
        let room = MAX_EARLY_FRAMES - self.early_client_frames.len();
        self.early_client_frames.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Bytes the gateway sent (already forwarded to the client).
    pub fn gateway_bytes(&mut self, bytes: &[u8], now: Instant) {
        if self.gateway_frames.is_some() {
            self.read_gateway_frames(bytes, now);
            return;
        }
        if self.responses.at_message_start() {
            self.first_byte(now);
        }
        let mut seen = std::mem::take(&mut self.response_scratch);
        let rest = self.responses.feed(bytes, &self.pending, &mut seen);
        for response in seen.drain(..) {
            if (100..200).contains(&response.status) && response.status != 101 {
                continue;
            }
            self.first_byte(now);
            let Some(request) = self.pending.pop_front() else { continue };
            if request.upgrade {
                if response.status == 101 {
                    self.client_frames = Some(FrameReader::new(response.permessage_deflate));
                    self.gateway_frames = Some(FrameReader::new(response.permessage_deflate));
                    let early = std::mem::take(&mut self.early_client_frames);
                    self.read_client_frames(&early, now);
                } else {
                    // Refused upgrade: what the client sends next is unknown; stop reading it.
                    self.requests.give_up();
                }
                continue;
            }
            if matches!(response.status, 401 | 403 | 429) {
                let revision = self.registry.revision(&request.credential);
                self.emit(AuthEvent::Failure { channel: Channel::Http, code: response.status, revision });
            }
        }
        self.response_scratch = seen;
        if !rest.is_empty() {
            self.read_gateway_frames(rest, now);
        }
    }

    fn first_byte(&mut self, now: Instant) {
        if let Some(request) = self.pending.front_mut() {
            if !request.first_byte_seen && !request.upgrade {
                request.first_byte_seen = true;
                let elapsed = now.saturating_duration_since(request.sent_at);
                self.emit(AuthEvent::FirstByte { channel: Channel::Http, elapsed });
            }
        }
    }

    fn read_client_frames(&mut self, bytes: &[u8], now: Instant) {
        let Some(reader) = self.client_frames.as_mut() else { return };
        if !reader.interested {
            return; // The client side holds nothing more of interest (its closes are echoes).
        }
        let mut items = Vec::new();
        reader.feed(bytes, &mut items);
        for item in items {
            let WsItem::Message(message) = item else { continue };
            self.client_messages += 1;
            if let Some((id, credential)) = connect_request(&message) {
                let revision = self.registry.revision(&credential);
                self.emit(AuthEvent::Request { channel: Channel::Ws, revision });
                self.connect = Some(WsConnect { id, credential, sent_at: now });
            }
            if self.connect.is_some() || self.client_messages >= MAX_WS_MESSAGES {
                if let Some(reader) = self.client_frames.as_mut() {
                    reader.interested = false;
                }
                break;
            }
        }
    }

    fn read_gateway_frames(&mut self, bytes: &[u8], now: Instant) {
        let Some(reader) = self.gateway_frames.as_mut() else { return };
        let mut items = Vec::new();
        reader.feed(bytes, &mut items);
        for item in items {
            match item {
                WsItem::Close(Some(code)) => self.emit(AuthEvent::WsClose { code }),
                WsItem::Close(None) => {}
                WsItem::Unreadable => self.stop_reading_gateway_messages(),
                WsItem::Message(message) => {
                    if !self.gateway_frames.as_ref().is_some_and(|r| r.interested) {
                        continue;
                    }
                    self.gateway_messages += 1;
                    if let Some(connect) = &self.connect {
                        if let Some(code) = connect_answer(&message, &connect.id) {
                            let elapsed = now.saturating_duration_since(connect.sent_at);
                            self.emit(AuthEvent::FirstByte { channel: Channel::Ws, elapsed });
                            if let Some(code) = code {
                                let revision = self.registry.revision(&connect.credential);
                                self.emit(AuthEvent::Failure { channel: Channel::Ws, code, revision });
                            }
                            self.stop_reading_gateway_messages();
                            continue;
                        }
                    }
                    if self.gateway_messages >= MAX_WS_MESSAGES {
                        self.stop_reading_gateway_messages();
                    }
                }
            }
        }
    }

    fn stop_reading_gateway_messages(&mut self) {
        if let Some(reader) = self.gateway_frames.as_mut() {
            reader.interested = false;
        }
    }
}

/// `{"type":"req","method":"connect","id":..,"params":{"auth":{"token":".."}}}` -> (id, credential).
fn connect_request(message: &[u8]) -> Option<(serde_json::Value, Credential)> {
    let value: serde_json::Value = serde_json::from_slice(message).ok()?;
    if value["type"] != "req" || value["method"] != "connect" {
        return None;
    }
    let credential = match value["params"]["auth"]["token"].as_str() {
        Some(token) if !token.is_empty() => Credential::token(token.as_bytes()),
        _ => Credential::None,
    };
    Some((value["id"].clone(), credential))
}

/// The gateway's `res` to the connect request: Some(None) accepted, Some(Some(code)) refused with an auth
/// code (401, 403, 429), None when this message is not that answer.
fn connect_answer(message: &[u8], id: &serde_json::Value) -> Option<Option<u16>> {
    let value: serde_json::Value = serde_json::from_slice(message).ok()?;
    if value["type"] != "res" || &value["id"] != id {
        return None;
    }
    if value["ok"] == true {
        return Some(None);
    }
    let error = &value["error"];
    let detail = error["details"]["code"].as_str().or(error["code"].as_str()).unwrap_or_default();
    let message = error["message"].as_str().unwrap_or_default().to_ascii_lowercase();
    Some(match detail {
        "AUTH_RATE_LIMITED" => Some(429),
        "NOT_PAIRED" | "DEVICE_IDENTITY_REQUIRED" => Some(401),
        d if d.starts_with("AUTH_") => Some(401),
        _ if message.starts_with("unauthorized") => Some(401),
        _ if message.contains("scope") || detail.contains("SCOPE") || detail == "FORBIDDEN" => Some(403),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::ws::encode_frame;
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Events(Mutex<Vec<String>>);
    impl AuthSink for Events {
        fn auth_event(&self, forward: &str, event: AuthEvent<'_>) {
            let text = match event {
                AuthEvent::FirstByte { channel, .. } => format!("{forward} first_byte {}", channel.as_str()),
                other => format!("{forward} {other:?}"),
            };
            self.0.lock().unwrap().push(text);
        }
    }

    fn observer() -> (Observer, Arc<Events>) {
        let events = Arc::new(Events::default());
        let mut registry = Registry::new();
        registry.add_sha256("r1".into(), super::super::credential::sha256(b"tok-1"));
        registry.add_sha256("r2".into(), super::super::credential::sha256(b"tok-2"));
        (Observer::new("fw".into(), Arc::new(registry), events.clone()), events)
    }

    #[test]
    fn http_failures_are_labelled_by_the_request_s_revision_in_pipelined_order() {
        let (mut o, events) = observer();
        let t = Instant::now();
        o.client_bytes(b"POST /tools/invoke HTTP/1.1\r\nAuthorization: Bearer tok-1\r\nContent-Length: 2\r\n\r\n{}", t);
        o.client_bytes(b"POST /tools/invoke HTTP/1.1\r\nAuthorization: Bearer tok-2\r\nContent-Length: 2\r\n\r\n{}", t);
        o.client_bytes(b"HEAD /healthz HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n", t);
        o.gateway_bytes(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nno!HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", t + Duration::from_millis(1));
        o.gateway_bytes(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\n", t);
        let events = events.0.lock().unwrap().clone();
        assert_eq!(
            events,
            [
                "fw Request { channel: Http, revision: \"r1\" }",
                "fw Request { channel: Http, revision: \"r2\" }",
                "fw Request { channel: Http, revision: \"unknown\" }",
                "fw first_byte http",
                "fw Failure { channel: Http, code: 401, revision: \"r1\" }",
                "fw first_byte http",
                "fw first_byte http",
                "fw Failure { channel: Http, code: 403, revision: \"unknown\" }",
            ]
        );
    }

    #[test]
    fn a_websocket_connect_and_its_refusal_and_close_are_read() {
        let (mut o, events) = observer();
        let t = Instant::now();
        o.client_bytes(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", t);
        // The connect frame is observed before the 101 (the copy tasks race): it must still count.
        let connect =
            br#"{"type":"req","id":"c1","method":"connect","params":{"auth":{"token":"tok-1"},"role":"operator"}}"#;
        let frame = encode_frame(true, 1, connect, Some([7, 7, 7, 7]));
        o.client_bytes(&frame[..10], t);
        o.gateway_bytes(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", t);
        o.client_bytes(&frame[10..], t);
        let mut from_gateway =
            encode_frame(true, 1, br#"{"type":"event","event":"connect.challenge","payload":{}}"#, None);
        from_gateway.extend(encode_frame(
            true,
            1,
            br#"{"type":"res","id":"c1","ok":false,"error":{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch","details":{"code":"AUTH_TOKEN_MISMATCH"}}}"#,
            None,
        ));
        from_gateway.extend(encode_frame(true, 8, &1008u16.to_be_bytes(), None));
        for chunk in from_gateway.chunks(5) {
            o.gateway_bytes(chunk, t);
        }
        let events = events.0.lock().unwrap().clone();
        assert_eq!(
            events,
            [
                "fw Request { channel: Ws, revision: \"r1\" }",
                "fw first_byte ws",
                "fw Failure { channel: Ws, code: 401, revision: \"r1\" }",
                "fw WsClose { code: 1008 }",
            ]
        );
    }

    #[test]
    fn rate_limited_and_accepted_connects_map_to_429_and_nothing() {
        let id = serde_json::json!(5);
        assert_eq!(
            connect_answer(
                br#"{"type":"res","id":5,"ok":false,"error":{"details":{"code":"AUTH_RATE_LIMITED"}}}"#,
                &id
            ),
            Some(Some(429))
        );
        assert_eq!(connect_answer(br#"{"type":"res","id":5,"ok":true,"payload":{}}"#, &id), Some(None));
        assert_eq!(connect_answer(br#"{"type":"res","id":6,"ok":true}"#, &id), None);
        assert_eq!(
            connect_request(br#"{"type":"req","id":1,"method":"connect","params":{}}"#).unwrap().1,
            Credential::None
        );
    }
}
