//! The auth tap's sink ([`TapSink`]): its events into the auth kind's record, and its withheld connections
//! logged once per verdict.

use std::sync::{Arc, Mutex};

use probes::auth_tap::{AuthEvent, AuthSink};

use super::record::AuthRecord;
use crate::record::kinds::lock;
use crate::record::Recorder;

/// The auth tap's sink: its events into the auth record, the exporter's own counts (connections closed, the
/// timeline) into the recorder.
pub struct TapSink {
    recorder: Arc<Recorder>,
    /// Absent from a recorder built without the auth kind's record: then the tap records nothing.
    record: Option<Arc<AuthRecord>>,
    /// The last withheld connection logged: its verdict, when, and how many like it since went unlogged.
    last_withheld: Mutex<Option<(String, std::time::Instant, u64)>>,
}

/// The longest a repeated withheld verdict goes unlogged: a client retrying through a refused tap would
/// otherwise write a line per connection.
const WITHHELD_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl TapSink {
    /// The sink of a tap fronting `forward`, its withheld-token counter created at zero.
    pub fn new(recorder: Arc<Recorder>, forward: &str) -> TapSink {
        let record = recorder.kind_record::<AuthRecord>();
        if let Some(record) = &record {
            record.create_withheld_series(forward, "tap");
        }
        TapSink { recorder, record, last_withheld: Mutex::default() }
    }

    /// Log a withheld connection once per verdict, and again at most once a minute while it repeats, with how
    /// many went unlogged since.
    fn warn_withheld(&self, forward: &str, why: &str, verdict: &str) {
        let now = std::time::Instant::now();
        let mut last = lock(&self.last_withheld);
        let unlogged = match last.as_mut() {
            Some((last_verdict, at, unlogged)) if last_verdict == verdict => {
                if now.duration_since(*at) < WITHHELD_LOG_EVERY {
                    *unlogged += 1;
                    return;
                }
                *unlogged
            }
            _ => 0,
        };
        *last = Some((verdict.to_owned(), now, 0));
        drop(last);
        tracing::warn!(forward, unlogged_since = unlogged, "auth tap relayed nothing (502): {why}");
    }
}

impl AuthSink for TapSink {
    fn auth_event(&self, forward: &str, event: AuthEvent<'_>) {
        if let AuthEvent::Withheld { why, verdict } = &event {
            self.warn_withheld(forward, why, verdict);
        }
        if let Some(record) = &self.record {
            record.tap_event(&self.recorder, forward, event);
        }
    }
}
