//! The tap's WebSocket frame reader on arbitrary bytes, with and without permessage-deflate, in the chunk
//! sizes the first byte picks: it must never panic, and no message it returns exceeds the reader's bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probes::auth_tap::ws::{FrameReader, WsItem, MAX_MESSAGE};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, stream)) = data.split_first() else { return };
    let deflate = settings & 0x80 != 0;
    let chunk = usize::from(settings & 0x7f).max(1);
    let mut reader = FrameReader::new(deflate);
    let mut items = Vec::new();
    for piece in stream.chunks(chunk) {
        reader.feed(piece, &mut items);
        for item in items.drain(..) {
            if let WsItem::Message(message) = item {
                assert!(message.len() <= MAX_MESSAGE, "a {} byte message kept", message.len());
            }
        }
    }
});
