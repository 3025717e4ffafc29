//! The tap's HTTP request reader on arbitrary bytes, fed in the chunk sizes the first byte picks: it must
//! never panic, and never report more requests than the input could hold (each needs at least "\r\n\r\n").
#![no_main]

use libfuzzer_sys::fuzz_target;
use probes::auth_tap::http::RequestReader;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut reader = RequestReader::default();
    let mut seen = Vec::new();
    let mut total = 0;
    for piece in stream.chunks(chunk) {
        let _rest = reader.feed(piece, &mut seen);
        total += seen.len();
        seen.clear();
    }
    assert!(total <= stream.len() / 4, "{total} requests from {} bytes", stream.len());
});
