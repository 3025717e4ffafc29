//! An incremental, bounded WebSocket frame reader (RFC 6455) for one direction of a tapped connection.
//!
//! It walks frame headers and counts payload through without keeping it, except while the caller is
//! interested in whole messages (the client's first `connect` request and the gateway's answer), and then
//! only up to [`MAX_MESSAGE`]. A frame announcing 2^63 bytes costs nothing but a counter. Close frames are
//! always reported with their code. permessage-deflate messages are inflated (raw DEFLATE with the
//! `00 00 ff ff` tail, context kept across messages) while the caller is interested.

/// The largest message kept for reading; longer ones are counted through and reported as oversized.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// While not interested, messages that start with the watched prefix and are at most this long are still
/// reported (the gateway's `shutdown` event is ~80 bytes); anything else costs a prefix compare.
pub const MAX_WATCHED: usize = 512;

/// Something the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsItem {
    /// A whole data message (text or binary), unmasked and inflated.
    Message(Vec<u8>),
    /// A data message that was too large (or would not inflate) to read.
    Unreadable,
    /// A close frame, with its status code when it carried one.
    Close(Option<u16>),
}

#[derive(Debug)]
enum State {
    Header { bytes: [u8; 14], have: usize },
    Payload { remaining: u64, mask: Option<[u8; 4]>, offset: u64, opcode: u8, fin: bool },
    Broken,
}

/// Reads frames from one direction.
pub struct FrameReader {
    state: State,
    /// Keep whole messages (true until the caller has what it needs).
    pub interested: bool,
    /// Once not interested, still report uncompressed messages of at most [`MAX_WATCHED`] bytes that start
    /// with this.
    pub watch: Option<&'static [u8]>,
    deflate: Option<flate2::Decompress>,
    message: Vec<u8>,
    message_compressed: bool,
    message_too_large: bool,
    control: Vec<u8>,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader").field("state", &self.state).field("interested", &self.interested).finish()
    }
}

impl FrameReader {
    /// A reader; `permessage_deflate` when the 101 negotiated it.
    pub fn new(permessage_deflate: bool) -> Self {
        FrameReader {
            state: State::Header { bytes: [0; 14], have: 0 },
            interested: true,
            watch: None,
            deflate: permessage_deflate.then(|| flate2::Decompress::new(false)),
            message: Vec::new(),
            message_compressed: false,
            message_too_large: false,
            control: Vec::new(),
        }
    }

    /// Read `input`, pushing what was found to `items`. After a protocol error the reader stops reading.
    pub fn feed(&mut self, mut input: &[u8], items: &mut Vec<WsItem>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Broken => return,
                State::Header { bytes, have } => {
                    let needed = header_len(&bytes[..*have]);
                    let take = (needed - *have).min(input.len());
                    bytes[*have..*have + take].copy_from_slice(&input[..take]);
                    *have += take;
                    input = &input[take..];
                    if *have == header_len(&bytes[..*have]) {
                        let header = *bytes;
                        let have = *have;
                        self.start_frame(&header[..have], items);
                    }
                }
                State::Payload { remaining, mask, offset, opcode, fin } => {
                    let n = (*remaining).min(input.len() as u64) as usize;
                    let (chunk, rest) = input.split_at(n);
                    input = rest;
                    let (opcode, fin, mask, start) = (*opcode, *fin, *mask, *offset);
                    *remaining -= n as u64;
                    *offset += n as u64;
                    let done = *remaining == 0;
                    self.payload(opcode, chunk, mask, start);
                    if done {
                        self.end_frame(opcode, fin, items);
                    }
                }
            }
        }
    }

    fn start_frame(&mut self, header: &[u8], items: &mut Vec<WsItem>) {
        let fin = header[0] & 0x80 != 0;
        let rsv1 = header[0] & 0x40 != 0;
        let opcode = header[0] & 0x0f;
        let masked = header[1] & 0x80 != 0;
        let (length, mask_at) = match header[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([header[2], header[3]])), 4),
            127 => (u64::from_be_bytes(header[2..10].try_into().expect("8 bytes")), 10),
            n => (u64::from(n), 2),
        };
        let control = opcode >= 8;
        if length > i64::MAX as u64 || (control && (length > 125 || !fin)) || matches!(opcode, 3..=7 | 11..=15) {
            self.state = State::Broken;
            return;
        }
        let mask = masked.then(|| header[mask_at..mask_at + 4].try_into().expect("4 bytes"));
        if opcode == 1 || opcode == 2 {
            self.message.clear();
            self.message_too_large = false;
            self.message_compressed = rsv1 && self.deflate.is_some();
        }
        if control {
            self.control.clear();
        }
        self.state = State::Payload { remaining: length, mask, offset: 0, opcode, fin };
        if length == 0 {
            self.end_frame(opcode, fin, items);
        }
    }

    fn payload(&mut self, opcode: u8, chunk: &[u8], mask: Option<[u8; 4]>, start: u64) {
        let target = if opcode >= 8 {
            &mut self.control
        } else if self.interested && !self.message_too_large {
            if self.message.len() + chunk.len() > MAX_MESSAGE {
                self.message_too_large = true;
                self.message = Vec::new();
                return;
            }
            &mut self.message
        } else if let (Some(prefix), false) = (self.watch, self.message_too_large) {
            // Watching: keep a short message while what is kept can still be the prefix.
            if self.message.len() + chunk.len() > MAX_WATCHED || self.message_compressed {
                self.message_too_large = true;
                self.message.clear();
                return;
            }
            let base = self.message.len();
            self.message.extend_from_slice(chunk);
            if let Some(mask) = mask {
                for (i, byte) in self.message[base..].iter_mut().enumerate() {
                    *byte ^= mask[((start + i as u64) % 4) as usize];
                }
            }
            let n = self.message.len().min(prefix.len());
            if self.message[..n] != prefix[..n] {
                self.message_too_large = true;
                self.message.clear();
            }
            return;
        } else {
            return;
        };
        let base = target.len();
        target.extend_from_slice(chunk);
        if let Some(mask) = mask {
            for (i, byte) in target[base..].iter_mut().enumerate() {
                *byte ^= mask[((start + i as u64) % 4) as usize];
            }
        }
    }

    fn end_frame(&mut self, opcode: u8, fin: bool, items: &mut Vec<WsItem>) {
        self.state = State::Header { bytes: [0; 14], have: 0 };
        if opcode == 8 {
            let code = (self.control.len() >= 2).then(|| u16::from_be_bytes([self.control[0], self.control[1]]));
            items.push(WsItem::Close(code));
            return;
        }
        if opcode >= 8 || !fin {
            return;
        }
        if !self.interested {
            // Compressed context is lost once messages are skipped: never inflate again.
            self.deflate = None;
            if let Some(prefix) = self.watch {
                if !self.message_too_large && self.message.starts_with(prefix) {
                    items.push(WsItem::Message(std::mem::take(&mut self.message)));
                }
                self.message.clear();
            }
            return;
        }
        if self.message_too_large {
            self.deflate = None;
            items.push(WsItem::Unreadable);
            return;
        }
        let message = std::mem::take(&mut self.message);
        if !self.message_compressed {
            items.push(WsItem::Message(message));
            return;
        }
        match self.inflate(&message) {
            Some(inflated) => items.push(WsItem::Message(inflated)),
            None => {
                self.deflate = None;
                items.push(WsItem::Unreadable);
            }
        }
    }

    fn inflate(&mut self, compressed: &[u8]) -> Option<Vec<u8>> {
        let deflate = self.deflate.as_mut()?;
        let mut input = compressed.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        // Never start at zero capacity: an empty compressed message would otherwise never grow the buffer
        // and loop forever (found by fuzz/ws_frames).
        let mut out = Vec::with_capacity((compressed.len() * 4).clamp(64, MAX_MESSAGE));
        let mut consumed = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.capacity() >= MAX_MESSAGE {
                    return None;
                }
                out.reserve_exact((out.capacity() * 2).min(MAX_MESSAGE) - out.len());
            }
            let (before_in, before_out) = (deflate.total_in(), deflate.total_out());
            let status = deflate.decompress_vec(&input[consumed..], &mut out, flate2::FlushDecompress::Sync).ok()?;
            consumed += (deflate.total_in() - before_in) as usize;
            if deflate.total_in() == before_in && deflate.total_out() == before_out && out.len() < out.capacity() {
                return None; // no progress: corrupt stream
            }
            if consumed >= input.len() && out.len() < out.capacity() {
                return Some(out);
            }
            if status == flate2::Status::StreamEnd {
                return Some(out);
            }
        }
    }
}

/// How long a frame header is, given its first bytes (at least 2 are needed to know).
fn header_len(start: &[u8]) -> usize {
    if start.len() < 2 {
        return 2;
    }
    let mask = if start[1] & 0x80 != 0 { 4 } else { 0 };
    match start[1] & 0x7f {
        126 => 4 + mask,
        127 => 10 + mask,
        _ => 2 + mask,
    }
}

/// Encode one frame (for tests and the benchmark's client).
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_split_everywhere(stream: &[u8], deflate: bool) -> Vec<WsItem> {
        let mut whole = Vec::new();
        FrameReader::new(deflate).feed(stream, &mut whole);
        for split in 0..=stream.len() {
            let mut reader = FrameReader::new(deflate);
            let mut items = Vec::new();
            reader.feed(&stream[..split], &mut items);
            reader.feed(&stream[split..], &mut items);
            assert_eq!(items, whole, "split at {split}");
        }
        let mut reader = FrameReader::new(deflate);
        let mut items = Vec::new();
        for byte in stream {
            reader.feed(std::slice::from_ref(byte), &mut items);
        }
        assert_eq!(items, whole, "byte by byte");
        whole
    }

    #[test]
    fn fragmented_masked_text_with_a_ping_between_fragments() {
        let mask = Some([1, 2, 3, 4]);
        let mut stream = encode_frame(false, 1, br#"{"type":"req","#, mask);
        stream.extend(encode_frame(true, 9, b"ping", mask));
        stream.extend(encode_frame(true, 0, br#""method":"connect"}"#, mask));
        stream.extend(encode_frame(true, 8, &4001u16.to_be_bytes(), mask));
        let items = read_split_everywhere(&stream, false);
        assert_eq!(
            items,
            [WsItem::Message(br#"{"type":"req","method":"connect"}"#.to_vec()), WsItem::Close(Some(4001))]
        );
    }

    #[test]
    fn extended_lengths_are_read() {
        let big = vec![b'x'; 70_000];
        let mut stream = encode_frame(true, 2, &big, None);
        stream.extend(encode_frame(true, 1, &vec![b'y'; 300], None));
        let mut items = Vec::new();
        FrameReader::new(false).feed(&stream, &mut items);
        assert_eq!(items, [WsItem::Message(big), WsItem::Message(vec![b'y'; 300])]);
    }

    #[test]
    fn a_frame_announcing_2_pow_63_minus_1_bytes_costs_no_memory() {
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
        let mut reader = FrameReader::new(false);
        let mut items = Vec::new();
        reader.feed(&header, &mut items);
        for _ in 0..1000 {
            reader.feed(&[0u8; 4096], &mut items);
        }
        assert!(reader.message.capacity() <= MAX_MESSAGE + 4096, "{}", reader.message.capacity());
        assert!(items.is_empty());
        // 2^63 itself is a protocol error: the reader stops.
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&(1u64 << 63).to_be_bytes());
        let mut reader = FrameReader::new(false);
        reader.feed(&header, &mut items);
        assert!(matches!(reader.state, State::Broken));
    }

    #[test]
    fn an_empty_compressed_message_inflates_to_nothing() {
        // fuzz/ws_frames found this one spinning forever: RSV1, text, FIN, zero length.
        assert_eq!(read_split_everywhere(&[0xc1, 0x00], true), vec![WsItem::Message(Vec::new())]);
        let hang =
            [0x00, 0x00, 0x18, 0x60, 0x00, 0x01, 0x00, 0x18, 0x60, 0x00, 0x00, 0x0c, 0x22, 0, 0, 0, 0, 0x3a, 0x7d];
        let mut reader = FrameReader::new(true);
        reader.feed(&hang, &mut Vec::new());
    }

    #[test]
    fn an_oversized_message_is_unreadable_not_kept() {
        let stream = encode_frame(true, 1, &vec![b'a'; MAX_MESSAGE + 1], Some([9, 9, 9, 9]));
        let mut items = Vec::new();
        FrameReader::new(false).feed(&stream, &mut items);
        assert_eq!(items, [WsItem::Unreadable]);
    }

    #[test]
    fn permessage_deflate_messages_inflate_with_context_takeover() {
        use flate2::{Compress, Compression, FlushCompress};
        let mut compress = Compress::new(Compression::default(), false);
        let mut frames = Vec::new();
        for text in [&br#"{"type":"event","event":"connect.challenge"}"#[..], br#"{"type":"res","ok":true}"#] {
            let mut out = Vec::with_capacity(1024);
            compress.compress_vec(text, &mut out, FlushCompress::Sync).unwrap();
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
            out.truncate(out.len() - 4);
            let mut frame = encode_frame(true, 1, &out, None);
            frame[0] |= 0x40; // RSV1: compressed
            frames.extend(frame);
        }
        let items = read_split_everywhere(&frames, true);
        assert_eq!(
            items,
            [
                WsItem::Message(br#"{"type":"event","event":"connect.challenge"}"#.to_vec()),
                WsItem::Message(br#"{"type":"res","ok":true}"#.to_vec())
            ]
        );
    }
}
