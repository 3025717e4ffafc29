//! Incremental, bounded readers for HTTP/1.1 message framing in both directions.
//!
//! They never buffer more than one message head ([`MAX_HEAD`]); bodies are only counted through
//! (Content-Length, chunked, or until close). Heads are parsed with `httparse`. Anything that does not parse
//! turns the reader opaque: the bytes still flow through the tap, they are just no longer read.

use super::credential::Credential;

/// The largest message head read; a longer one makes the reader opaque.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
const MAX_CHUNK_LINE: usize = 1024;

/// Accumulates one head until its blank line, bounded by [`MAX_HEAD`].
#[derive(Debug, Default)]
struct HeadBuffer {
    bytes: Vec<u8>,
}

enum HeadProgress {
    /// A whole head is in the buffer; this many input bytes belonged to it.
    Complete(usize),
    /// All input consumed, head not finished.
    Partial,
    /// The head is longer than allowed.
    TooLarge,
}

impl HeadBuffer {
    fn feed(&mut self, input: &[u8]) -> HeadProgress {
        let old_len = self.bytes.len();
        let take = input.len().min(MAX_HEAD - old_len);
        self.bytes.extend_from_slice(&input[..take]);
        let search_from = old_len.saturating_sub(3);
        if let Some(pos) = self.bytes[search_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = search_from + pos + 4;
            self.bytes.truncate(end);
            return HeadProgress::Complete(end - old_len);
        }
        if self.bytes.len() >= MAX_HEAD {
            HeadProgress::TooLarge
        } else {
            HeadProgress::Partial
        }
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

/// Chunked transfer coding, consumed without keeping the data.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunked {
    SizeLine(Vec<u8>),
    Data(u64),
    DataEnd(u8),
    Trailer { line_len: usize },
}

enum BodyProgress {
    /// The body ended; this many input bytes belonged to it.
    Done(usize),
    /// All input belonged to the body.
    More,
    /// Framing error.
    Invalid,
}

impl Body {
    fn feed(&mut self, input: &[u8]) -> BodyProgress {
        match self {
            Body::UntilClose => BodyProgress::More,
            Body::Length(remaining) => {
                if (input.len() as u64) < *remaining {
                    *remaining -= input.len() as u64;
                    BodyProgress::More
                } else {
                    BodyProgress::Done(*remaining as usize)
                }
            }
            Body::Chunked(state) => {
                let mut used = 0;
                while used < input.len() {
                    match state {
                        Chunked::SizeLine(line) => {
                            let byte = input[used];
                            used += 1;
                            if byte == b'\n' {
                                let text = String::from_utf8_lossy(line);
                                let hex = text.trim_end_matches('\r').split(';').next().unwrap_or("").trim();
                                let Ok(size) = u64::from_str_radix(hex, 16) else { return BodyProgress::Invalid };
                                *state = if size == 0 { Chunked::Trailer { line_len: 0 } } else { Chunked::Data(size) };
                            } else if line.len() >= MAX_CHUNK_LINE {
                                return BodyProgress::Invalid;
                            } else {
                                line.push(byte);
                            }
                        }
                        Chunked::Data(remaining) => {
                            let n = (*remaining).min((input.len() - used) as u64);
                            used += n as usize;
                            *remaining -= n;
                            if *remaining == 0 {
                                *state = Chunked::DataEnd(2);
                            }
                        }
                        Chunked::DataEnd(left) => {
                            used += 1;
                            *left -= 1;
                            if *left == 0 {
                                *state = Chunked::SizeLine(Vec::new());
                            }
                        }
                        Chunked::Trailer { line_len } => {
                            let byte = input[used];
                            used += 1;
                            match byte {
                                b'\n' if *line_len == 0 => return BodyProgress::Done(used),
                                b'\n' => *line_len = 0,
                                b'\r' => {}
                                _ => *line_len = line_len.saturating_add(1),
                            }
                        }
                    }
                }
                BodyProgress::More
            }
        }
    }
}

/// A request head as the tap saw it: the credential (already hashed) and how the exchange continues.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSeen {
    /// The Bearer credential, none, or unreadable.
    pub credential: Credential,
    /// A HEAD request: its response has no body.
    pub is_head: bool,
    /// `Upgrade: websocket`.
    pub websocket_upgrade: bool,
}

/// A response head as the tap saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSeen {
    /// The status code.
    pub status: u16,
    /// The 101 negotiated permessage-deflate.
    pub permessage_deflate: bool,
}

#[derive(Debug)]
enum State {
    Head,
    Body(Body),
    /// After a WebSocket upgrade request: the rest of the stream is frames (or, if refused, unread).
    Upgraded,
    Opaque,
}

/// Message framing shared by both directions: walks bodies, and stops at each complete head.
#[derive(Debug)]
struct Framer {
    state: State,
    head: HeadBuffer,
}

/// Where [`Framer::next`] stopped.
enum Framed<'a> {
    /// A complete head, and the input after it. The caller parses it and sets the next state.
    Head(Vec<u8>, &'a [u8]),
    /// The stream switched protocols: the rest of the input is the new protocol's.
    Upgraded(&'a [u8]),
    /// All input consumed (or the stream is no longer read).
    Consumed,
}

impl Default for Framer {
    fn default() -> Self {
        Framer { state: State::Head, head: HeadBuffer::default() }
    }
}

impl Framer {
    fn next<'a>(&mut self, mut input: &'a [u8]) -> Framed<'a> {
        while !input.is_empty() {
            match &mut self.state {
                State::Opaque => return Framed::Consumed,
                State::Upgraded => return Framed::Upgraded(input),
                State::Body(body) => match body.feed(input) {
                    BodyProgress::Done(used) => {
                        input = &input[used..];
                        self.state = State::Head;
                    }
                    BodyProgress::More => return Framed::Consumed,
                    BodyProgress::Invalid => self.state = State::Opaque,
                },
                State::Head => match self.head.feed(input) {
                    HeadProgress::Partial => return Framed::Consumed,
                    HeadProgress::TooLarge => self.state = State::Opaque,
                    HeadProgress::Complete(used) => return Framed::Head(self.head.take(), &input[used..]),
                },
            }
        }
        Framed::Consumed
    }

    /// Walk all of `input`; each complete head goes to `on_head`, which returns the state that follows it.
    /// Returns the bytes after a protocol switch.
    fn feed<'a>(&mut self, mut input: &'a [u8], mut on_head: impl FnMut(&[u8]) -> State) -> &'a [u8] {
        loop {
            match self.next(input) {
                Framed::Consumed => return &[],
                Framed::Upgraded(rest) => return rest,
                Framed::Head(head, rest) => {
                    input = rest;
                    self.state = on_head(&head);
                }
            }
        }
    }
}

/// Reads the client-to-gateway direction: request heads and bodies, pipelining included.
#[derive(Debug, Default)]
pub struct RequestReader {
    framer: Framer,
}

impl RequestReader {
    /// Read `input`; every complete request head is pushed to `seen`. Returns the bytes that follow a
    /// WebSocket upgrade request (frames), which are the caller's to read.
    pub fn feed<'a>(&mut self, input: &'a [u8], seen: &mut Vec<RequestSeen>) -> &'a [u8] {
        self.framer.feed(input, |head| match parse_request(head) {
            Some((request, body)) => {
                let upgrade = request.websocket_upgrade;
                seen.push(request);
                if upgrade {
                    State::Upgraded
                } else {
                    body.map_or(State::Head, State::Body)
                }
            }
            None => State::Opaque,
        })
    }

    /// Stop reading this direction (e.g. an upgrade the server refused).
    pub fn give_up(&mut self) {
        self.framer.state = State::Opaque;
    }
}

fn parse_request(head: &[u8]) -> Option<(RequestSeen, Option<Body>)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let mut credential = Credential::None;
    let mut websocket_upgrade = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("authorization") {
            credential = bearer(header.value);
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            websocket_upgrade = String::from_utf8_lossy(header.value).trim().eq_ignore_ascii_case("websocket");
        }
    }
    let body = body_of(request.headers)?;
    let is_head = request.method == Some("HEAD");
    Some((RequestSeen { credential, is_head, websocket_upgrade }, body))
}

/// The fingerprint of a `Bearer` credential. The gateway reads nothing else, so any other scheme is a
/// credential it will not accept: unreadable, labelled `unknown`.
fn bearer(value: &[u8]) -> Credential {
    let value = value.trim_ascii();
    match value.split_at_checked(7) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
            let token = token.trim_ascii();
            if token.is_empty() {
                Credential::None
            } else {
                Credential::token(token)
            }
        }
        _ => Credential::Unreadable,
    }
}

/// The body of a message with these headers: None = no body, Some(None) = header error.
fn body_of(headers: &[httparse::Header<'_>]) -> Option<Option<Body>> {
    let mut length = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = String::from_utf8_lossy(header.value).to_ascii_lowercase();
            if value.split(',').next_back().map(str::trim) == Some("chunked") {
                return Some(Some(Body::Chunked(Chunked::SizeLine(Vec::new()))));
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            length = Some(std::str::from_utf8(header.value).ok()?.trim().parse::<u64>().ok()?);
        }
    }
    Some(match length {
        Some(0) | None => None,
        Some(n) => Some(Body::Length(n)),
    })
}

/// Reads the gateway-to-client direction: response heads and bodies.
#[derive(Debug, Default)]
pub struct ResponseReader {
    framer: Framer,
}

/// What the response reader needs to know of the requests its responses answer.
pub trait PendingRequests {
    /// Whether the `nth` oldest unanswered request (0 = oldest) was a HEAD: its response has no body.
    fn is_head(&self, nth: usize) -> bool;
}

impl ResponseReader {
    /// Read `input` (with `seen` empty); every complete response head is pushed to `seen` (informational 1xx
    /// other than 101 included, for the caller to skip). Returns the bytes after a 101 (frames).
    pub fn feed<'a>(
        &mut self,
        input: &'a [u8],
        pending: &dyn PendingRequests,
        seen: &mut Vec<ResponseSeen>,
    ) -> &'a [u8] {
        self.framer.feed(input, |head| {
            let answered = seen.iter().filter(|r| r.status == 101 || r.status >= 200).count();
            match parse_response(head, pending.is_head(answered)) {
                Some((response, next)) => {
                    seen.push(response);
                    next
                }
                None => State::Opaque,
            }
        })
    }

    /// Stop reading this direction.
    pub fn give_up(&mut self) {
        self.framer.state = State::Opaque;
    }

    /// True between messages: the next byte starts a response head.
    pub fn at_message_start(&self) -> bool {
        matches!(self.framer.state, State::Head) && self.framer.head.bytes.is_empty()
    }
}

fn parse_response(head: &[u8], head_request: bool) -> Option<(ResponseSeen, State)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if !matches!(response.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let status = response.code?;
    let permessage_deflate = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-extensions")
            && String::from_utf8_lossy(h.value).to_ascii_lowercase().contains("permessage-deflate")
    });
    let next = match status {
        101 => State::Upgraded,
        100..=199 | 204 | 304 => State::Head,
        _ if head_request => State::Head,
        _ => match body_of(response.headers)? {
            Some(body) => State::Body(body),
            None if has_header(response.headers, "content-length") => State::Head,
            None => State::Body(Body::UntilClose),
        },
    };
    Some((ResponseSeen { status, permessage_deflate }, next))
}

fn has_header(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers.iter().any(|h| h.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoHead;
    impl PendingRequests for NoHead {
        fn is_head(&self, _nth: usize) -> bool {
            false
        }
    }

    fn requests_split_everywhere(stream: &[u8]) -> Vec<RequestSeen> {
        let mut whole = Vec::new();
        RequestReader::default().feed(stream, &mut whole);
        for split in 0..=stream.len() {
            let mut reader = RequestReader::default();
            let mut seen = Vec::new();
            reader.feed(&stream[..split], &mut seen);
            reader.feed(&stream[split..], &mut seen);
            assert_eq!(seen, whole, "split at {split}");
        }
        // And one byte at a time.
        let mut reader = RequestReader::default();
        let mut seen = Vec::new();
        for byte in stream {
            reader.feed(std::slice::from_ref(byte), &mut seen);
        }
        assert_eq!(seen, whole, "byte by byte");
        whole
    }

    #[test]
    fn pipelined_requests_with_bodies_are_each_seen_at_every_split() {
        let stream = b"POST /tools/invoke HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-r1\r\nContent-Length: 2\r\n\r\n{}\
GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
POST /tools/invoke HTTP/1.1\r\nauthorization: bearer  tok-r2 \r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n\
GET / HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n";
        let seen = requests_split_everywhere(stream);
        let credentials: Vec<_> = seen.iter().map(|r| r.credential.clone()).collect();
        assert_eq!(
            credentials,
            [Credential::token(b"tok-r1"), Credential::None, Credential::token(b"tok-r2"), Credential::Unreadable]
        );
    }

    #[test]
    fn a_websocket_upgrade_hands_the_rest_to_the_frame_reader() {
        let stream = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85abcd";
        let mut reader = RequestReader::default();
        let mut seen = Vec::new();
        let rest = reader.feed(stream, &mut seen);
        assert!(seen[0].websocket_upgrade);
        assert_eq!(rest, b"\x81\x85abcd");
    }

    #[test]
    fn a_client_that_never_finishes_its_headers_costs_at_most_one_head() {
        let mut reader = RequestReader::default();
        let mut seen = Vec::new();
        reader.feed(b"GET / HTTP/1.1\r\n", &mut seen);
        for _ in 0..10_000 {
            reader.feed(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", &mut seen);
        }
        assert!(seen.is_empty());
        assert!(
            reader.framer.head.bytes.capacity() <= 2 * MAX_HEAD,
            "head buffer grew to {}",
            reader.framer.head.bytes.capacity()
        );
        assert!(matches!(reader.framer.state, State::Opaque));
    }

    #[test]
    fn responses_are_framed_by_length_chunks_and_status() {
        let stream = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nnope!\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut whole = Vec::new();
        ResponseReader::default().feed(stream, &NoHead, &mut whole);
        let statuses: Vec<_> = whole.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [401, 100, 400, 204, 200]);
        for split in 0..=stream.len() {
            let mut reader = ResponseReader::default();
            let mut seen = Vec::new();
            reader.feed(&stream[..split], &NoHead, &mut seen);
            reader.feed(&stream[split..], &NoHead, &mut seen);
            assert_eq!(seen, whole, "split at {split}");
        }
    }

    #[test]
    fn a_101_reports_permessage_deflate() {
        let mut reader = ResponseReader::default();
        let mut seen = Vec::new();
        let rest = reader.feed(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n\x81\x00",
            &NoHead,
            &mut seen,
        );
        assert_eq!(seen, [ResponseSeen { status: 101, permessage_deflate: true }]);
        assert_eq!(rest, b"\x81\x00");
    }
}
