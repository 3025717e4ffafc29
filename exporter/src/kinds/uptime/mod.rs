//! The uptime KPI's record, kept by its two kinds together: [`super::tunnel`]'s rounds (SYN and ssh session:
//! the ledger's up and observed rounds, the session gauges, the hijack gauge, time unobserved) and
//! [`super::first_byte`]'s probes (the end-to-end latency, the gateway's down time, each bucket's first-byte
//! quantiles, the wait for usable after a gap). One record because the ledger joins them per forward: a
//! bucket's uptime comes from tunnel rounds and its quantiles from first bytes, a gateway counts as down only
//! through a forward its last tunnel round found up, and the wait for usable starts at a tunnel round and
//! ends at a first byte.
//!
//! - [`ledger`]: the five-minute buckets aligned to the wall clock;
//! - [`rounds`]: what a tunnel round records; [`first_bytes`]: what a first-byte probe records;
//!   [`resume`]: the wait for usable after a gap;
//! - [`status`]: their keys in a forward's `/api/status` entry, and the state file's `forwards` (the buckets).

pub mod direct_rounds;
pub mod first_bytes;
pub mod ledger;
pub mod resume;
pub mod rounds;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::clock::unix_seconds;
use crate::config::Config;
use crate::record::families::{
    families, latency, FloatCounter, FloatGauge, ForwardCauseLabels, ForwardLabels, ForwardReasonLabels,
    ForwardResultLabels, ForwardStateLabels, ForwardTransportLabels, Latency, Subjects,
};
use crate::record::kinds::{lock, KindRecord};
use crate::record::timeline::EventKind;
use crate::record::tracked::Tracked;
use crate::record::Recorder;
use ledger::Ledger;

/// The tunnel was down (a spell per forward, its cause the detail).
pub const TUNNEL_DOWN: EventKind = EventKind { name: "tunnel_down", words: "tunnel down" };
/// The gateway did not answer through a live tunnel (a spell, the first byte's reason the detail).
pub const GATEWAY_DOWN: EventKind = EventKind { name: "gateway_down", words: "gateway not answering" };
/// No round could run: asleep or stopped (a closed spell, not counted).
pub const ASLEEP: EventKind = EventKind { name: "asleep", words: "asleep (not counted)" };
/// A new ssh process owns the forward (a point).
pub const SSH_RESTART: EventKind = EventKind { name: "ssh_restart", words: "new ssh process" };

families! {
/// The uptime KPI's families: the tunnel rounds', the first bytes', the wait for usable.
pub struct UptimeFamilies {
    syn_attempts: Tracked<ForwardLabels, Counter> = Tracked::default(),
        "openclaw_tunnel_syn_attempts", "TCP connects tried to the forward's local address";
    syn_successes: Tracked<ForwardLabels, Counter> = Tracked::default(),
        "openclaw_tunnel_syn_successes", "TCP connects to the forward's local address that connected";
    connect_seconds: Latency<ForwardLabels> = latency(),
        "openclaw_tunnel_connect_seconds", "Local connect time of successful SYN probes (proves only the local ssh listener)";
    ssh_session_up: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_ssh_session_up", "1 when an ssh process (or autossh's ssh child) owns the local listener; absent while the owner cannot be read";
    ssh_session_state: Tracked<ForwardStateLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_ssh_session_state", "1 for the current state of the listener's owner: up, no_listener, not_ssh, unreadable, unsupported";
    up_checks: Tracked<ForwardLabels, Counter> = Tracked::default(),
        "openclaw_tunnel_up_checks", "Probe rounds in which the tunnel was observed";
    up_successes: Tracked<ForwardLabels, Counter> = Tracked::default(),
        "openclaw_tunnel_up_successes", "Probe rounds with the SSH session up and SYN success (the uptime numerator)";
    uptime_ratio: Tracked<ForwardLabels, FloatGauge> = Tracked::default(),
        "openclaw_tunnel_uptime_ratio", "Uptime of the last completed wall-clock five-minute bucket; absent until one completes";
    unobserved_rounds: Tracked<ForwardReasonLabels, Counter> = Tracked::default(),
        "openclaw_tunnel_unobserved_rounds", "Tunnel rounds that observed nothing of the forward, by reason: local_error (the exporter's own shortage, out of descriptors or local ports, failed its SYN before the forward was asked); neither up nor down";
    unobserved_seconds: Tracked<ForwardLabels, FloatCounter> = Tracked::default(),
        "openclaw_tunnel_unobserved_seconds", "Time no probe round could run (machine asleep, process stalled); not counted as down";
    ssh_session_changes: Tracked<ForwardLabels, Counter> = Tracked::default(),
        "openclaw_tunnel_ssh_session_changes", "The forward's owner changed (autossh restarted ssh, a respawn, a manual restart): a restart loop shows as a rate";
    tunnel_down_seconds: Tracked<ForwardCauseLabels, FloatCounter> = Tracked::default(),
        "openclaw_tunnel_down_seconds", "Seconds of down tunnel rounds by cause: no_ssh (nothing listens: ssh not running or reconnecting), not_ssh (another program holds the port), syn_failed (ssh's listener, SYN failed); asleep excluded";
    gateway_down_seconds: Tracked<ForwardReasonLabels, FloatCounter> = Tracked::default(),
        "openclaw_gateway_down_seconds", "Seconds the gateway did not answer through a live forward, by the first-byte failure reason; asleep excluded";
    first_byte_seconds: Latency<ForwardLabels> = latency(),
        "openclaw_gateway_first_byte_seconds", "Request written to first response byte, GET health path through the forward";
    gateway_probe_attempts: Tracked<ForwardLabels, Counter> = Tracked::default(),
        "openclaw_gateway_probe_attempts", "First-byte probes tried";
    gateway_probe_failures: Tracked<ForwardReasonLabels, Counter> = Tracked::default(),
        "openclaw_gateway_probe_failures", "First-byte probes failed, by reason: refused, reset, empty_reply, timeout, bad_status, local_error (the exporter's own: never the gateway's)";
    first_byte_good: Tracked<ForwardLabels, Counter> = Tracked::default(),
        "openclaw_gateway_first_byte_good", "First-byte probes answered 2xx within the first-byte objective (the latency SLI's good events)";
    gateway_up: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_gateway_up", "1 when the last first-byte probe got a 2xx from the gateway";
    resume_seconds: Tracked<ForwardLabels, Histogram, fn() -> Histogram> = Tracked::new_with_constructor(|| Histogram::new_classic_and_native(resume::RESUME_BUCKETS, crate::record::families::native_latency())),
        "openclaw_tunnel_resume_seconds", "After a gap counted unobserved (sleep, a stall), seconds from the first round after it to the first good first byte through the forward; a wait past 600 s is observed then, above the last bucket";
    forward_hijacked: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_forward_hijacked", "1 when a listener that could take the forward's connections (the exact address, a wildcard, a dual-stack IPv6 wildcard) is held by a process that is not our user's ssh (another program, another user's process, or one this user cannot read): the CLI would hand it its token; unchanged while a lookup cannot tell";
    owner_lookups: Tracked<ForwardResultLabels, Counter> = Tracked::default(),
        "openclaw_tunnel_owner_lookups", "Tunnel rounds' owner lookups by result: ours (this user's ssh, or a trusted owner, holds every listener that could take the connection), not_ours (anything else: nothing listening, another program or user), unknown (the lookup timed out or was cut off: the token is withheld, the hijack gauge unchanged)";
    route_info: Tracked<ForwardTransportLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_route_info", "1 for the forward's road to the gateway: transport ssh (local, a listener our ssh owns), ws or wss (url, the gateway reached directly)";
    tls_handshake_seconds: Latency<ForwardLabels> = latency(),
        "openclaw_tunnel_tls_handshake_seconds", "TLS handshake of a wss:// route's tunnel round, certificate verified, timed apart from the connect and never inside a first byte";
    tls_certificate_verified: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_tls_certificate_verified", "1 when the last certificate a wss:// route presented matched its pin (or chained to the trusted roots and named the host), 0 when it did not; unchanged by a handshake that failed before a certificate; absent for routes without TLS";
    tls_certificate_expiry: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_tls_certificate_expiry_timestamp_seconds", "The notAfter of the last certificate a wss:// route presented, Unix seconds";
    tls_pinned: Tracked<ForwardLabels, Gauge> = Tracked::default(),
        "openclaw_tunnel_tls_pinned", "1 when a wss:// route pins its certificate (tls_fingerprint: its expiry is not checked, as OpenClaw's CLI does not), 0 when it verifies a chain and the host name; absent for routes without TLS";
}
}

/// What the record keeps of one forward beyond its series: the ledger, the exact first-byte quantiles and the
/// last outcomes the status report shows.
pub(crate) struct ForwardState {
    pub(crate) ledger: Ledger,
    /// First-byte times of successful probes, microseconds, for exact quantiles in the status report.
    /// Auto-resizing, u32 counts: it covers only the range actually seen (a loopback gateway's first bytes
    /// need ~16 KiB, where fixed bounds up to the longest timeout took 160 KiB per forward).
    pub(crate) first_byte_us: hdrhistogram::Histogram<u32>,
    pub(crate) session: Option<probes::ssh_session::Outcome>,
    /// The pid of the last ssh seen owning the listener, to count owner changes.
    pub(crate) last_owner_pid: Option<u32>,
    pub(crate) last_syn_ok: Option<bool>,
    /// The sleep-counting clock at the last tunnel round, to find the time no round could run.
    pub(crate) last_round_boot: Option<Duration>,
    /// The hijack gauge's last value (set only on a change: a round stays a handful of atomic adds).
    pub(crate) last_hijacked: Option<Option<bool>>,
    /// Whether the last tunnel round was up (session up or unknown, and SYN success).
    pub(crate) last_round_up: Option<bool>,
    pub(crate) last_first_byte: Option<String>,
    /// The first-byte objective (a good probe answers within it).
    pub(crate) first_byte_objective: Duration,
    /// The wait for usable after the last gap, while open.
    pub(crate) resume: resume::Resume,
    /// The last wait observed.
    pub(crate) last_resume: Option<status::ResumeStatus>,
    /// A gateway-down spell was opened (or continued) by the last first-byte round: kept here, not in the
    /// generation, so the spell closes on the first healthy round after a reload.
    pub(crate) gateway_down_open: bool,
    /// Its road, from the config.
    pub(crate) route: Option<status::RouteStatus>,
    /// What the last round of a direct route saw: its certificate, and its failure in words.
    pub(crate) last_direct: Option<status::DirectStatus>,
}

impl ForwardState {
    fn new() -> Self {
        ForwardState {
            ledger: Ledger::default(),
            first_byte_us: hdrhistogram::Histogram::new(3).expect("3 significant figures is a valid precision"),
            session: None,
            last_owner_pid: None,
            last_syn_ok: None,
            last_round_up: None,
            last_round_boot: None,
            last_hijacked: None,
            last_first_byte: None,
            first_byte_objective: Duration::MAX,
            resume: resume::Resume::default(),
            last_resume: None,
            gateway_down_open: false,
            route: None,
            last_direct: None,
        }
    }
}

/// The uptime KPI's record; see the module documentation.
pub struct UptimeRecord {
    families: UptimeFamilies,
    /// Per forward: held only for a few operations, never with the timeline's lock.
    forwards: Mutex<HashMap<String, ForwardState>>,
}

/// Registry entry (its kind's `RECORD` in `kinds::KINDS`): the record, its families registered.
pub fn record(registry: &mut Registry) -> Arc<dyn KindRecord> {
    Arc::new(UptimeRecord { families: UptimeFamilies::register(registry), forwards: Mutex::default() })
}

impl UptimeRecord {
    /// The per-forward state. A panic while holding the lock cannot leave the ledger half-written in a way
    /// worth losing all metrics over: keep serving.
    fn states(&self) -> MutexGuard<'_, HashMap<String, ForwardState>> {
        lock(&self.forwards)
    }

    /// The state of `forward`, created when first seen.
    fn with_forward<T>(&self, forward: &str, f: impl FnOnce(&mut ForwardState) -> T) -> T {
        let mut forwards = self.states();
        if !forwards.contains_key(forward) {
            forwards.insert(forward.to_owned(), ForwardState::new());
        }
        f(forwards.get_mut(forward).expect("inserted above"))
    }
}

impl KindRecord for UptimeRecord {
    /// Each forward's first-byte objective (a good first byte answers within it); a forward the config has
    /// is in the status report from now on.
    fn apply_config(&self, config: &Config) {
        for forward in &config.forwards {
            let route = status::RouteStatus::of(forward);
            self.with_forward(&forward.name, |state| {
                state.first_byte_objective = config.objectives.first_byte;
                if state.route.as_ref().is_some_and(|was| was.address != route.address) {
                    // Another road under the same name: what the last one saw is not this one's.
                    state.last_direct = None;
                }
                state.route = Some(route);
            });
            self.set_route_series(forward);
        }
    }

    fn retain_subjects(&self, subjects: &Subjects) {
        self.families.retain_subjects(subjects);
    }

    /// A removed forward's state goes, and its open spells end with it.
    fn subjects_removed(&self, recorder: &Recorder, subjects: &Subjects) {
        let mut removed = Vec::new();
        self.states().retain(|name, _| {
            let kept = subjects.keeps_value("forward", name);
            if !kept {
                removed.push(name.clone());
            }
            kept
        });
        let now = unix_seconds(SystemTime::now());
        for name in &removed {
            for kind in [TUNNEL_DOWN, GATEWAY_DOWN] {
                recorder.timeline_over(kind, name, now);
            }
        }
    }

    fn forwards(&self) -> Vec<String> {
        self.states().keys().cloned().collect()
    }

    fn forward_status(&self, forward: &str, now: f64) -> serde_json::Map<String, serde_json::Value> {
        self.status_of(forward, now)
    }

    /// The uptime gauge of the last completed bucket, brought up to `now` (absent until one completes).
    fn before_encode(&self, now: f64) {
        let forwards = self.states();
        for (name, state) in forwards.iter() {
            let labels = ForwardLabels { forward: name.clone() };
            match state.ledger.last_completed_ratio(now) {
                Some(ratio) => {
                    self.families.uptime_ratio.get_or_create(&labels).set(ratio);
                }
                None => {
                    self.families.uptime_ratio.remove(&labels);
                }
            }
        }
    }

    /// `forwards`: every forward's buckets.
    fn save(&self) -> serde_json::Map<String, serde_json::Value> {
        self.saved_buckets()
    }

    fn restore(&self, _recorder: &Recorder, saved: &serde_json::Map<String, serde_json::Value>) {
        self.restore_buckets(saved);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A recorder built with the uptime record alone, and that record.
    pub(crate) fn recorder() -> (Arc<Recorder>, Arc<UptimeRecord>) {
        let recorder = Arc::new(Recorder::with_kinds(&[record], Vec::new()));
        let uptime = recorder.kind_record::<UptimeRecord>().expect("built with the uptime record");
        (recorder, uptime)
    }

    fn up_round(uptime: &UptimeRecord, recorder: &Recorder, forward: &str, at: SystemTime, up: bool) {
        use probes::{ssh_session, syn};
        let syn: syn::Outcome =
            if up { Ok(syn::Connected { connect: Duration::from_micros(30) }) } else { Err(syn::Failure::Refused) };
        let session = ssh_session::Outcome::Up(rounds::tests::owner("ssh"));
        let round = rounds::TunnelRound { at, boot: Duration::from_secs(10), interval: Duration::from_secs(5) };
        uptime.record_tunnel(recorder, forward, round, &[], &syn, &session);
    }

    #[test]
    fn a_forward_a_reload_removes_leaves_the_report_and_its_open_spell_ends() {
        let (recorder, uptime) = recorder();
        let mut config = Config::load(None).unwrap();
        let kept = config.forwards[0].name.clone();
        let mut other = config.forwards[0].clone();
        other.name = "other".into();
        config.forwards.push(other);
        recorder.apply_config(&config);
        up_round(&uptime, &recorder, "other", SystemTime::now(), false);
        let report = recorder.status(SystemTime::now());
        let names: Vec<&str> = report.forwards.iter().map(|f| f.forward.as_str()).collect();
        assert_eq!(names, [kept.as_str(), "other"]);
        let down = |report: &crate::record::status::StatusReport| {
            report.timeline.iter().find(|e| e.kind == "tunnel_down" && e.subject == "other").cloned().unwrap()
        };
        assert_eq!(down(&report).end, None, "open while the forward is down");

        config.forwards.truncate(1);
        recorder.apply_config(&config);
        let report = recorder.status(SystemTime::now());
        let names: Vec<&str> = report.forwards.iter().map(|f| f.forward.as_str()).collect();
        assert_eq!(names, [kept.as_str()]);
        assert!(down(&report).end.is_some(), "the removed forward's spell ended with it");
        let text = recorder.encode(crate::record::Format::Prometheus, SystemTime::now());
        assert!(!text.contains("forward=\"other\""), "{text}");
    }

    #[test]
    fn the_buckets_come_back_from_the_state_file_and_a_damaged_forwards_key_is_skipped_alone() {
        let (recorder, uptime) = recorder();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        up_round(&uptime, &recorder, "mac", t0, true);
        up_round(&uptime, &recorder, "mac", t0 + Duration::from_secs(400), false);
        let saved: serde_json::Map<_, _> = recorder.saved_kinds().into_iter().collect();
        let buckets = &saved["forwards"]["mac"];
        assert_eq!(buckets.as_array().map(Vec::len), Some(2), "{saved:?}");

        let (restarted, _) = tests::recorder();
        restarted.restore_kinds(&saved);
        let report = restarted.status(t0 + Duration::from_secs(700));
        assert_eq!(report.forwards[0].kinds["buckets"], *buckets);
        assert_eq!(report.forwards[0].part::<status::UptimeStatus>().uptime_ratio_last_bucket, Some(0.0));

        let (damaged, _) = tests::recorder();
        let not_buckets = serde_json::json!({ "forwards": { "mac": "not a list" } });
        damaged.restore_kinds(not_buckets.as_object().unwrap());
        assert!(damaged.status(t0).forwards.is_empty(), "nothing restored from a damaged key");
    }
}
