//! The auth tap's sink ([`TapSink`]): its events into the auth kind's record, its withheld connections
//! logged once per verdict, and its listener: listening, or waiting for an address another process holds
//! (`openclaw_gateway_tap_hijacked`, `auth_taps` in the forward's `/api/status`, its rows on the page).

use std::collections::HashSet;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use probes::auth_tap::{AuthEvent, AuthSink};
use serde::Deserialize;

use super::record::AuthRecord;
pub use super::tap_status::{TapListenStatus, AUTH_TAPS_KEY};
use crate::clock::unix_seconds;
use crate::config::Config;
use crate::html::{esc, state_badge};
use crate::record::families::ForwardLabels;
use crate::record::kinds::lock;
use crate::record::status::ForwardStatus;
use crate::record::timeline::human_duration;
use crate::record::Recorder;

/// The auth tap's sink: its events into the auth record, the exporter's own counts (connections closed, the
/// timeline) into the recorder.
pub struct TapSink {
    recorder: Arc<Recorder>,
    /// The forward the tap fronts.
    forward: String,
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
        TapSink { recorder, record, forward: forward.to_owned(), last_withheld: Mutex::default() }
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

/// Who holds a tap's address, as the retry loop looks it up.
#[derive(Debug, Clone, PartialEq)]
pub struct TapHolder {
    /// For people: `python3 pid 4242 (nobody (uid 65534), another user)`.
    pub described: String,
    /// Another process than this user's ssh (or this process, during a reload's hand-over) holds it: the CLI
    /// pointed at the address would hand that process its token.
    pub hijacking: bool,
}

impl TapHolder {
    /// The holder of `listen`, looked up now (it walks the processes: on the blocking pool).
    pub fn look_up(listen: std::net::SocketAddr, lookup: probes::ssh_session::Lookup) -> TapHolder {
        let outcome = probes::ssh_session::holder_now(listen, lookup);
        let ours = matches!(outcome, probes::ssh_session::Outcome::Up(_) | probes::ssh_session::Outcome::NoListener)
            || outcome.owner().is_some_and(|owner| owner.pid == std::process::id());
        TapHolder { described: outcome.holder(), hijacking: !ours }
    }
}

impl TapSink {
    /// The tap on `listen` could not bind (`error`), `holder` holding the address when it is taken: the
    /// failure counted, the hijack gauge set, and a line logged when the holder or the reason changes.
    pub fn listen_failed(
        &self,
        listen: std::net::SocketAddr,
        reason: crate::listen::BindFailure,
        error: &std::io::Error,
        holder: Option<&TapHolder>,
    ) {
        self.recorder.count_listen_failure("auth_tap", reason);
        let status = TapListenStatus {
            listen: listen.to_string(),
            listening: false,
            error: Some(error.to_string()),
            held_by: holder.map(|holder| holder.described.clone()),
            hijacked: holder.is_some_and(|holder| holder.hijacking),
            since: unix_seconds(std::time::SystemTime::now()),
        };
        let changed = self.record.as_ref().is_none_or(|record| record.set_tap_listen(&self.forward, status.clone()));
        if changed {
            let held_by = status.held_by.as_deref().unwrap_or("unknown");
            if status.hijacked {
                tracing::error!(
                    forward = %self.forward, listen = %listen, error = %error, held_by,
                    "auth tap cannot listen: another process holds its address, and the openclaw CLI pointed there \
                     hands it its token; retrying every 2 s"
                );
            } else {
                tracing::warn!(forward = %self.forward, listen = %listen, error = %error, held_by, "auth tap cannot listen: retrying every 2 s");
            }
        }
    }

    /// The tap listens on `listen` (at once, or after waiting for the address).
    pub fn listening(&self, listen: std::net::SocketAddr) {
        let status = TapListenStatus {
            listen: listen.to_string(),
            listening: true,
            error: None,
            held_by: None,
            hijacked: false,
            since: unix_seconds(std::time::SystemTime::now()),
        };
        if let Some(record) = &self.record {
            record.set_tap_listen(&self.forward, status);
        }
    }
}

impl AuthRecord {
    /// Keep `status` as the state of its tap fronting `forward`, and set the forward's hijack gauge (1 while
    /// any of its taps' addresses is hijacked). Whether it changed anything but the time.
    fn set_tap_listen(&self, forward: &str, status: TapListenStatus) -> bool {
        let mut taps = lock(&self.tap_listeners);
        let key = status.listen.clone();
        let changed = match taps.get(&key) {
            // The same state again: it keeps the time it began.
            Some((tapped, kept)) => {
                tapped != forward || TapListenStatus { since: status.since, ..kept.clone() } != status
            }
            None => true,
        };
        if changed {
            taps.insert(key, (forward.to_owned(), status));
        }
        let hijacked = taps.values().any(|(tapped, status)| tapped == forward && status.hijacked);
        drop(taps);
        let labels = ForwardLabels { forward: forward.to_owned() };
        self.families.tap_hijacked.get_or_create(&labels).set(i64::from(hijacked));
        changed
    }

    /// The forward's taps' listeners, by address.
    pub(super) fn tap_listens_of(&self, forward: &str) -> Vec<TapListenStatus> {
        let taps = lock(&self.tap_listeners);
        let mut of: Vec<TapListenStatus> =
            taps.values().filter(|(tapped, _)| tapped == forward).map(|(_, status)| status.clone()).collect();
        of.sort_by(|a, b| a.listen.cmp(&b.listen));
        of
    }

    /// What a new configuration keeps of the taps' listeners: those it still has (by address and forward),
    /// and each tapped forward's hijack gauge (at 0 when new; a tap still waiting keeps its value).
    pub(super) fn apply_tap_listens(&self, config: &Config) {
        let kept: HashSet<(String, String)> =
            config.auth_taps.iter().map(|tap| (tap.listen.to_string(), tap.forward.clone())).collect();
        lock(&self.tap_listeners).retain(|listen, (forward, _)| kept.contains(&(listen.clone(), forward.clone())));
        let tapped: HashSet<&str> = config.auth_taps.iter().map(|tap| tap.forward.as_str()).collect();
        self.families.tap_hijacked.retain(|labels| tapped.contains(labels.forward.as_str()));
        for forward in tapped {
            self.families.tap_hijacked.get_or_create_owned(&ForwardLabels { forward: forward.to_owned() });
        }
    }
}

/// The forward's auth taps on the status page: each listening, or waiting for an address another process holds.
pub fn page_rows(forward: &ForwardStatus, now: f64) -> String {
    let taps = forward.kinds.get(AUTH_TAPS_KEY).and_then(|v| Vec::<TapListenStatus>::deserialize(v).ok());
    let mut html = String::new();
    for tap in taps.unwrap_or_default() {
        let since = human_duration((now - tap.since).max(0.0));
        let (badge, detail) = if tap.listening {
            (state_badge(Some(true), "listening", ""), format!("for {since}"))
        } else if tap.hijacked {
            let holder = tap.held_by.as_deref().unwrap_or("unknown");
            let detail = format!(
                "held by {holder} for {since}: the openclaw CLI pointed here hands it its token; the tap retries every 2 s"
            );
            (state_badge(Some(false), "", "hijacked"), detail)
        } else {
            (
                state_badge(Some(false), "", "not listening"),
                format!("{} (retrying)", tap.error.as_deref().unwrap_or("")),
            )
        };
        let _ = write!(
            html,
            "<tr class=\"tap\"><th>Auth tap {}</th><td>{badge}</td><td class=\"muted\">{}</td></tr>",
            esc(&tap.listen),
            esc(&detail)
        );
    }
    html
}
