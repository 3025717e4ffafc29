//! One tapped connection driven by arbitrary bytes in both directions (HTTP, the switch to WebSocket,
//! frames, the connect request and its answer): it must never panic, and every revision it reports is a
//! registry name, `unknown` or `none`, whatever the tokens in the input.
//!
//! Input: a sequence of records, each a byte (high bit: which side sent it; low 7 bits: length) and that
//! many bytes.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use probes::auth_tap::credential::{sha256, Registry};
use probes::auth_tap::{AuthEvent, AuthSink, Observer};

struct BoundedLabels;

impl AuthSink for BoundedLabels {
    fn auth_event(&self, forward: &str, event: AuthEvent<'_>) {
        assert_eq!(forward, "fuzz");
        let revision = match event {
            AuthEvent::Request { revision, .. } | AuthEvent::Failure { revision, .. } => revision,
            // A reason is one of the fixed set, whatever the gateway sent.
            AuthEvent::ConnectRefused { reason } => {
                use probes::Label;
                assert!(probes::refusal::Refusal::LABELS.contains(&reason.label()));
                return;
            }
            AuthEvent::WsClose { .. }
            | AuthEvent::GatewayShutdown { .. }
            | AuthEvent::FirstByte { .. }
            | AuthEvent::OverLimit { .. }
            | AuthEvent::TimedOut { .. }
            | AuthEvent::OtherUser { .. }
            | AuthEvent::Withheld { .. } => return,
        };
        assert!(matches!(revision, "r1" | "unknown" | "none"), "label value {revision:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    // A legacy fingerprint: every first sight is one SHA-256, so the fuzzer spends its time in the readers.
    let mut registry = Registry::new();
    registry.add_sha256("r1".to_owned(), sha256(b"fuzz-token"));
    let registry = Arc::new(registry);
    let mut observer = Observer::new("fuzz".to_owned(), registry, Arc::new(BoundedLabels));
    let start = Instant::now();
    let mut rest = data;
    let mut step = 0u64;
    while let Some((&record, tail)) = rest.split_first() {
        let length = usize::from(record & 0x7f).min(tail.len());
        let (bytes, tail) = tail.split_at(length);
        step += 1;
        let now = start + Duration::from_micros(step);
        if record & 0x80 == 0 {
            observer.client_bytes(bytes, now);
        } else {
            observer.gateway_bytes(bytes, now);
        }
        rest = tail;
    }
});
