//! Per-connection state linking what the client sent to what the gateway answered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::credential::{Credential, Registry};
use super::http::{PendingRequests, RequestReader, RequestSeen, ResponseReader, ResponseSeen};
use super::messages::{connect_answer, connect_request, shutdown_notice, ConnectAnswer};
use super::ws::{FrameReader, WsItem};
use super::{AuthEvent, AuthSink, Channel, CloseBy};
use crate::refusal::Refusal;

/// An event that carries a credential's revision, built once the revision is known.
#[derive(Debug, Clone, Copy)]
enum ByRevision {
    Request(Channel),
    Failure(Channel, u16),
}

impl ByRevision {
    fn event(self, revision: &str) -> AuthEvent<'_> {
        match self {
            ByRevision::Request(channel) => AuthEvent::Request { channel, revision },
            ByRevision::Failure(channel, code) => AuthEvent::Failure { channel, code, revision },
        }
    }
}

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

/// The gateway's `shutdown` event, as it serializes it (`{"type":"event","event":...}`: key order fixed by
/// its frame builder, measured on 2026.9.6).
const SHUTDOWN_EVENT: &[u8] = br#"{"type":"event","event":"shutdown""#;

/// The first close of a connection, until the other side's echo (or the end) says it was first.
#[derive(Debug, Clone, Copy)]
struct FirstClose {
    code: Option<u16>,
    by: CloseBy,
    read_at: Instant,
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
    /// A close seen from one side, not yet answered by the other.
    close_pending: Option<FirstClose>,
    /// This connection's close was counted.
    close_counted: bool,
    /// The gateway answered the connect request (or closed it with a reason): its refusal is counted.
    connect_answered: bool,
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
            close_pending: None,
            connect_answered: false,
            close_counted: false,
        }
    }

    fn emit(&self, event: AuthEvent<'_>) {
        self.sink.auth_event(&self.forward, event);
    }

    /// Emit `what` with the revision of `credential`: now when it is known without argon2id, else from the
    /// registry's verification thread once verified (the copy task never waits for it).
    fn emit_by_revision(&self, credential: &Credential, what: ByRevision) {
        match self.registry.lookup(credential) {
            Ok(revision) => self.emit(what.event(revision)),
            Err(presented) => {
                let (sink, forward) = (self.sink.clone(), self.forward.clone());
                let then = Box::new(move |revision: &str| sink.auth_event(&forward, what.event(revision)));
                self.registry.resolve_later(presented, true, then);
            }
        }
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
                    self.emit_by_revision(&request.credential, ByRevision::Request(Channel::Http));
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
                    let mut gateway_frames = FrameReader::new(response.permessage_deflate);
                    gateway_frames.watch = Some(SHUTDOWN_EVENT);
                    self.gateway_frames = Some(gateway_frames);
                    let early = std::mem::take(&mut self.early_client_frames);
                    self.read_client_frames(&early, now);
                } else {
                    // Refused upgrade: what the client sends next is unknown; stop reading it.
                    self.requests.give_up();
                }
                continue;
            }
            if matches!(response.status, 401 | 403 | 429) {
                self.emit_by_revision(&request.credential, ByRevision::Failure(Channel::Http, response.status));
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
        // Read on after the connect request too, payloads skipped: the client's close may come first.
        let mut items = Vec::new();
        reader.feed(bytes, &mut items);
        for item in items {
            if let WsItem::Close(code) = item {
                self.close(code, CloseBy::Client, now);
                continue;
            }
            if !self.client_frames.as_ref().is_some_and(|r| r.interested) {
                continue;
            }
            let WsItem::Message(message) = item else { continue };
            self.client_messages += 1;
            if let Some((id, credential)) = connect_request(&message) {
                self.emit_by_revision(&credential, ByRevision::Request(Channel::Ws));
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
                WsItem::Close(code) => self.close(code, CloseBy::Gateway, now),
                WsItem::Unreadable => self.stop_reading_gateway_messages(),
                WsItem::Message(message) => {
                    if message.starts_with(SHUTDOWN_EVENT) {
                        if let Some(restart_expected) = shutdown_notice(&message) {
                            self.emit(AuthEvent::GatewayShutdown { restart_expected });
                        }
                        continue;
                    }
                    if !self.gateway_frames.as_ref().is_some_and(|r| r.interested) {
                        continue;
                    }
                    self.gateway_messages += 1;
                    if let Some(connect) = &self.connect {
                        if let Some(answer) = connect_answer(&message, &connect.id) {
                            let elapsed = now.saturating_duration_since(connect.sent_at);
                            self.emit(AuthEvent::FirstByte { channel: Channel::Ws, elapsed });
                            if let ConnectAnswer::Refused { status, reason } = answer {
                                if let Some(code) = status {
                                    let failure = ByRevision::Failure(Channel::Ws, code);
                                    self.emit_by_revision(&connect.credential, failure);
                                }
                                self.emit(AuthEvent::ConnectRefused { reason });
                            }
                            self.connect_answered = true;
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

    /// A close frame from `by`, read off its socket at `read_at`: the first of the pair is counted once the
    /// other side's echo arrives (or the connection ends without one).
    fn close(&mut self, code: Option<u16>, by: CloseBy, read_at: Instant) {
        // A connect the gateway closed instead of answering: 1002 and 1013 still say why.
        if by == CloseBy::Gateway && self.connect.is_some() && !self.connect_answered {
            if let Some(reason) = Refusal::of_close(code) {
                self.connect_answered = true;
                self.emit(AuthEvent::ConnectRefused { reason });
            }
        }
        if self.close_counted {
            return;
        }
        match self.close_pending {
            None => self.close_pending = Some(FirstClose { code, by, read_at }),
            Some(first) if first.by == by => {} // a second close from the same side: not an answer
            Some(first) => {
                let initiator = if read_at < first.read_at { FirstClose { code, by, read_at } } else { first };
                self.close_pending = None;
                self.close_counted = true;
                self.emit(AuthEvent::WsClose { code: initiator.code, by: initiator.by });
            }
        }
    }

    fn stop_reading_gateway_messages(&mut self) {
        if let Some(reader) = self.gateway_frames.as_mut() {
            reader.interested = false;
        }
    }
}

impl Drop for Observer {
    /// A close never answered (the other side vanished) still counts, for the side that sent it.
    fn drop(&mut self) {
        if let Some(first) = self.close_pending.take() {
            self.emit(AuthEvent::WsClose { code: first.code, by: first.by });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::messages::refusal_status;
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
        assert_eq!(
            events.0.lock().unwrap().clone(),
            [
                "fw Request { channel: Ws, revision: \"r1\" }",
                "fw first_byte ws",
                "fw Failure { channel: Ws, code: 401, revision: \"r1\" }",
                "fw ConnectRefused { reason: TokenMismatch }",
            ]
        );
        // The client's echo completes the pair: counted once, for the gateway, which sent it first.
        o.client_bytes(
            &encode_frame(true, 8, &1008u16.to_be_bytes(), Some([1, 2, 3, 4])),
            t + Duration::from_millis(1),
        );
        assert_eq!(events.0.lock().unwrap().last().unwrap(), "fw WsClose { code: Some(1008), by: Gateway }");
        assert_eq!(events.0.lock().unwrap().len(), 5);
    }

    #[test]
    fn a_connect_closed_1002_unanswered_is_a_protocol_refusal_counted_once() {
        let (mut o, events) = observer();
        let t = Instant::now();
        o.client_bytes(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", t);
        o.gateway_bytes(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", t);
        let connect = br#"{"type":"req","id":"c1","method":"connect","params":{"auth":{"token":"tok-1"}}}"#;
        o.client_bytes(&encode_frame(true, 1, connect, Some([7, 7, 7, 7])), t);
        o.gateway_bytes(&encode_frame(true, 8, &1002u16.to_be_bytes(), None), t);
        o.gateway_bytes(&encode_frame(true, 8, &1002u16.to_be_bytes(), None), t);
        let seen = events.0.lock().unwrap().clone();
        assert_eq!(
            seen.iter().filter(|e| e.contains("ConnectRefused { reason: ProtocolMismatch }")).count(),
            1,
            "{seen:?}"
        );
    }

    /// An observer past a WebSocket upgrade with an accepted connect (nothing more of interest is read).
    fn upgraded() -> (Observer, Arc<Events>, Instant) {
        let (mut o, events) = observer();
        let t = Instant::now();
        o.client_bytes(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", t);
        o.gateway_bytes(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", t);
        let connect = br#"{"type":"req","id":"c1","method":"connect","params":{"auth":{"token":"tok-2"}}}"#;
        o.client_bytes(&encode_frame(true, 1, connect, Some([9, 8, 7, 6])), t);
        o.gateway_bytes(&encode_frame(true, 1, br#"{"type":"res","id":"c1","ok":true,"payload":{}}"#, None), t);
        events.0.lock().unwrap().clear();
        (o, events, t)
    }

    #[test]
    fn a_client_close_is_counted_for_the_client_even_when_its_echo_is_observed_first() {
        let (mut o, events, t) = upgraded();
        // Chat traffic after connect is not kept, only walked.
        o.client_bytes(&encode_frame(true, 1, &[b'x'; 4000], Some([1, 1, 1, 1])), t);
        // The client sent 4000 (read at t+1 ms); the gateway's echo (read at t+2 ms) reaches the observer
        // first because the copy tasks race.
        o.gateway_bytes(&encode_frame(true, 8, &1000u16.to_be_bytes(), None), t + Duration::from_millis(2));
        assert!(events.0.lock().unwrap().is_empty(), "one close alone is not yet judged");
        o.client_bytes(
            &encode_frame(true, 8, &4000u16.to_be_bytes(), Some([5, 5, 5, 5])),
            t + Duration::from_millis(1),
        );
        assert_eq!(events.0.lock().unwrap().clone(), ["fw WsClose { code: Some(4000), by: Client }"]);
        drop(o);
        assert_eq!(events.0.lock().unwrap().len(), 1, "counted once");
    }

    #[test]
    fn an_unanswered_close_counts_when_the_connection_ends_and_a_shutdown_notice_is_read_late() {
        let (mut o, events, t) = upgraded();
        let notice =
            br#"{"type":"event","event":"shutdown","payload":{"reason":"restart","restartExpectedMs":2500},"seq":9}"#;
        // Big and unrelated messages before it are skipped at the cost of a prefix compare.
        o.gateway_bytes(&encode_frame(true, 1, &[b'{'; 100_000], None), t);
        o.gateway_bytes(&encode_frame(true, 1, br#"{"type":"event","event":"tick"}"#, None), t);
        for chunk in encode_frame(true, 1, notice, None).chunks(7) {
            o.gateway_bytes(chunk, t);
        }
        o.gateway_bytes(&encode_frame(true, 8, &1012u16.to_be_bytes(), None), t);
        assert_eq!(events.0.lock().unwrap().clone(), ["fw GatewayShutdown { restart_expected: Some(2.5s) }"]);
        drop(o);
        assert_eq!(events.0.lock().unwrap().last().unwrap(), "fw WsClose { code: Some(1012), by: Gateway }");
        assert_eq!(
            shutdown_notice(br#"{"type":"event","event":"shutdown","payload":{"reason":"gateway stopping"},"seq":3}"#),
            Some(None)
        );
    }

    #[test]
    fn every_documented_refusal_code_maps_to_its_status() {
        for (detail, status) in [
            ("AUTH_TOKEN_MISSING", Some(401)),
            ("AUTH_TOKEN_MISMATCH", Some(401)),
            ("AUTH_DEVICE_TOKEN_MISMATCH", Some(401)),
            ("DEVICE_AUTH_SIGNATURE_INVALID", Some(401)),
            ("AUTH_SCOPE_MISMATCH", Some(403)),
            ("PAIRING_REQUIRED", Some(403)),
            ("AUTH_RATE_LIMITED", Some(429)),
            ("UNAVAILABLE", None),
            ("INVALID_REQUEST", None),
        ] {
            assert_eq!(refusal_status(detail), status, "{detail}");
        }
    }

    #[test]
    fn rate_limited_and_accepted_connects_map_to_429_and_nothing() {
        let id = serde_json::json!(5);
        assert_eq!(
            connect_answer(
                br#"{"type":"res","id":5,"ok":false,"error":{"details":{"code":"AUTH_RATE_LIMITED"}}}"#,
                &id
            ),
            Some(ConnectAnswer::Refused { status: Some(429), reason: Refusal::RateLimited })
        );
        assert_eq!(
            connect_answer(br#"{"type":"res","id":5,"ok":false,"error":{"code":"UNAVAILABLE","details":{"reason":"startup-sidecars"}}}"#, &id),
            Some(ConnectAnswer::Refused { status: None, reason: Refusal::Starting })
        );
        assert_eq!(
            connect_answer(br#"{"type":"res","id":5,"ok":true,"payload":{}}"#, &id),
            Some(ConnectAnswer::Accepted)
        );
        assert_eq!(connect_answer(br#"{"type":"res","id":6,"ok":true}"#, &id), None);
        assert_eq!(
            connect_request(br#"{"type":"req","id":1,"method":"connect","params":{}}"#).unwrap().1,
            Credential::None
        );
    }
}
