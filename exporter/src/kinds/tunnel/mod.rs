//! The tunnel probe kind: its probe (a SYN and an ssh session lookup together), its adapter (schedule, logs,
//! one call per round into the uptime record it keeps with the first byte kind, [`super::uptime::rounds`]),
//! its rows and day strip on the status page, and the doctor's steps 1-3.

use super::uptime::ledger::{Bucket, BUCKETS_KEPT, BUCKET_SECONDS};
use super::uptime::rounds::TunnelRound;
use super::uptime::status::UptimeStatus;
use super::uptime::UptimeRecord;
use crate::checkup::{DoctorPart, Layer};
use crate::config::{Config, Forward};
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::{esc, seconds, state_badge};
use crate::record::status::ForwardStatus;
use crate::record::timeline::{human_duration, EventKind};
use crate::record::Recorder;
use probes::{ssh_session, syn, Label, Probe};

mod doctor;
pub use doctor::{DOCTOR_SESSION, DOCTOR_SSH_HOST, DOCTOR_SYN};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// The ssh session check of the listener at `addr` (the tunnel's, and each token sender's own gate), sharing
/// this generation's process walk through `index`, with the WSL companion `config` gives that listener.
pub fn session_target(
    addr: std::net::SocketAddr,
    config: &Config,
    index: &ssh_session::OwnerIndex,
) -> ssh_session::Target {
    ssh_session::Target {
        lookup: config.scheduler.owner_lookup,
        index: index.clone(),
        wsl_companion: config.wsl_companion_for(addr),
        ..ssh_session::Target::new(addr)
    }
}

/// One tunnel round's probes: the SYN probe and the ssh session probe, run together.
pub struct TunnelProbe {
    /// The connect to the forward's listener.
    pub syn: syn::Target,
    /// Who owns that listener (remembers the last owner between rounds).
    pub session: ssh_session::Target,
}

/// What one tunnel round found.
pub struct TunnelOutcome {
    /// The connect.
    pub syn: syn::Outcome,
    /// The listener's owner.
    pub session: ssh_session::Outcome,
}

impl From<probes::CutOff> for TunnelOutcome {
    fn from(cut_off: probes::CutOff) -> Self {
        TunnelOutcome { syn: cut_off.into(), session: cut_off.into() }
    }
}

impl Probe for TunnelProbe {
    /// The lag histogram's label for tunnel rounds, as before rounds were one probe.
    const KIND: &'static str = "syn";
    type Outcome = TunnelOutcome;

    async fn probe(&mut self, timeout: Duration) -> TunnelOutcome {
        let (syn, session) = tokio::join!(self.syn.probe(timeout), self.session.probe(timeout));
        TunnelOutcome { syn, session }
    }
}

/// The recording of one forward's tunnel rounds.
pub struct TunnelKind {
    forward: Arc<Forward>,
    recorder: Arc<Recorder>,
    uptime: Arc<UptimeRecord>,
}

/// The uptime KPI's kinds in the registry, one record: every forward's tunnel rounds (here) and first bytes
/// ([`super::first_byte`]).
pub struct Uptime;

impl super::Kind for Uptime {
    type Record = UptimeRecord;
    const RECORD: crate::record::kinds::NewKindRecord = super::uptime::record;
    const PAGE: &'static [super::PagePart] = &[
        super::PagePart::Row(super::Row::Route, super::route::page_row),
        super::PagePart::Row(super::Row::Session, session_row),
        super::PagePart::Row(super::Row::Syn, syn_row),
        super::PagePart::Row(super::Row::FirstByte, super::first_byte::page_rows),
        super::PagePart::Row(super::Row::Uptime, uptime_row),
        super::PagePart::Row(super::Row::Resume, resume_row),
        super::PagePart::AfterTable(super::AfterTable::Day, strip_and_chart),
    ];
    const DOCTOR: &'static [DoctorPart] = &[
        DoctorPart::Step(Layer::SshHost, DOCTOR_SSH_HOST),
        DoctorPart::OnDirectRoute(Layer::SshHost, super::route::DOCTOR_RESOLVE.0, super::route::DOCTOR_RESOLVE.1),
        DoctorPart::Step(Layer::Session, DOCTOR_SESSION),
        DoctorPart::OnDirectRoute(Layer::Session, super::route::DOCTOR_CONNECT.0, super::route::DOCTOR_CONNECT.1),
        DoctorPart::Step(Layer::Syn, DOCTOR_SYN),
        DoctorPart::OnDirectRoute(Layer::Syn, super::route::DOCTOR_TLS.0, super::route::DOCTOR_TLS.1),
        DoctorPart::Step(Layer::FirstByte, super::first_byte::DOCTOR_STEP),
    ];
    const TIMELINE: &'static [EventKind] =
        &[super::uptime::TUNNEL_DOWN, super::uptime::GATEWAY_DOWN, super::uptime::ASLEEP, super::uptime::SSH_RESTART];

    fn start(start: &mut super::Start<'_>, uptime: &Arc<UptimeRecord>) {
        for forward in start.forwards() {
            self::start(start, &forward, uptime.clone());
            super::first_byte::start(start, &forward, uptime.clone());
        }
    }
}

/// Every forward has its tunnel rounds, an ssh forward's SYN and session here, a direct route's connect and
/// handshake in [`super::route`].
fn start(start: &mut super::Start<'_>, forward: &Arc<Forward>, uptime: Arc<UptimeRecord>) {
    let Some(local) = forward.local() else {
        let route = start.route(forward);
        let (probe, kind) = super::route::DirectRoundKind::new(forward.clone(), start.recorder.clone(), uptime, route);
        start.drive(probe, kind);
        return;
    };
    let session = start.session_target(local);
    let (probe, kind) = TunnelKind::new(forward.clone(), start.recorder.clone(), uptime, session);
    start.drive(probe, kind);
}

impl TunnelKind {
    /// Its probe and its recording, with the forward's counters created at zero (so `rate()` works before
    /// the first round).
    pub fn new(
        forward: Arc<Forward>,
        recorder: Arc<Recorder>,
        uptime: Arc<UptimeRecord>,
        session: ssh_session::Target,
    ) -> (TunnelProbe, TunnelKind) {
        uptime.create_tunnel_series(&forward.name, super::uptime::direct_rounds::forward_down_causes(&forward));
        let probe = TunnelProbe { syn: syn::Target { addr: session.addr }, session };
        (probe, TunnelKind { forward, recorder, uptime })
    }
}

impl Adapter for TunnelKind {
    type Probe = TunnelProbe;
    /// The session's verdict (its kind and holder): a new owner (autossh's restart) is a change, a steady one is
    /// not, nor are the figures a lookup's words carry (how many processes it could not read).
    type State = String;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::forward(&self.forward, self.forward.syn_interval)
    }

    fn handle(&mut self, round: Round, TunnelOutcome { syn, session }: &TunnelOutcome) -> &'static str {
        let round = TunnelRound { at: round.wall, boot: round.boot, interval: self.forward.syn_interval };
        let (forward, trusted_owners) = (&self.forward.name, &self.forward.trusted_owners);
        let verdict = self.uptime.record_tunnel(&self.recorder, forward, round, trusted_owners, syn, session);
        if let Some(unobserved) = verdict.stalled {
            tracing::warn!(forward = %self.forward.name, unobserved = ?unobserved, "probe loop stalled (suspend or stop); counting the gap as unobserved");
        }
        verdict.label
    }

    fn annotate(&self, TunnelOutcome { syn, session }: &TunnelOutcome, fields: &mut SpanFields) {
        fields.ssh_session = Some(session.label());
        match syn {
            Ok(connected) => {
                fields.syn = Some("ok");
                fields.connect_us = Some(connected.connect.as_micros() as u64);
            }
            Err(failure) => fields.syn = Some(failure.label()),
        }
    }

    fn state(&self, outcome: &TunnelOutcome) -> String {
        outcome.session.verdict()
    }

    fn log_change(&self, TunnelOutcome { session, .. }: &TunnelOutcome) {
        let forward = self.forward.name.as_str();
        match session {
            ssh_session::Outcome::Up(owner) => tracing::info!(
                forward, pid = owner.pid, parent_pid = owner.parent_pid, parent = %owner.parent_name.as_deref().unwrap_or("?"),
                "ssh session up: ssh owns the forward's listener"
            ),
            ssh_session::Outcome::NotSsh(owner) => tracing::warn!(
                forward, pid = owner.pid, name = %owner.name, parent = %owner.parent_name.as_deref().unwrap_or("?"),
                "the forward's port is held by a process that is not ssh"
            ),
            ssh_session::Outcome::WslRelay { relay, companion } => match companion.why_not() {
                None => tracing::info!(
                    forward,
                    relay_pid = relay.pid,
                    "WSL's relay holds the forward's listener and the companion inside WSL2 vouches for its ssh"
                ),
                Some(why) => tracing::warn!(
                    forward, relay_pid = relay.pid, companion = companion.label(), why = %why,
                    "WSL's relay holds the forward's listener, but nothing vouches for the ssh inside WSL2: the token is withheld, rounds are down"
                ),
            },
            ssh_session::Outcome::NoListener => {
                tracing::warn!(forward, "no process listens on the forward's address: ssh is down or reconnecting")
            }
            ssh_session::Outcome::Unreadable { detail } => tracing::warn!(
                forward, detail = %detail, "cannot read which process owns the forward's listener; session state unknown (not counted as down)"
            ),
            ssh_session::Outcome::Unsupported { detail } => {
                tracing::warn!(forward, detail = %detail, "cannot check the ssh session on this system")
            }
            ssh_session::Outcome::Unknown { detail } => tracing::warn!(
                forward, detail = %detail, "could not tell who owns the forward's listener this round; the token is withheld, the hijack gauge unchanged"
            ),
        }
    }
}

// Its rows and section on the status page (at their places in `Uptime::PAGE`).

/// Whether the forward's road has no ssh (a `ws://` or `wss://` route): its ssh rows say so.
fn without_ssh(forward: &ForwardStatus) -> bool {
    forward.part::<UptimeStatus>().route.as_ref().is_some_and(|route| route.transport != "ssh")
}

/// The listener's owner: ssh up (with its pid, user and parent) or what holds the port instead; a route
/// without ssh says so.
fn session_row(forward: &ForwardStatus, _now: f64) -> String {
    if without_ssh(forward) {
        return "<tr><th>SSH session</th><td class=\"ssh\">–</td><td class=\"muted\">no ssh on this route</td></tr>"
            .to_owned();
    }
    let uptime = forward.part::<UptimeStatus>();
    let session = uptime.ssh_session.as_ref();
    let session_state = session.map(|s| s.state.as_str());
    let companion = session.and_then(|s| s.wsl_companion.as_ref());
    let session_badge = match session_state {
        Some("up") => state_badge(Some(true), "ssh up", ""),
        Some("wsl_relay") => state_badge(companion.map(|c| c.said == "vouches"), "ssh up in WSL2", "WSL relay"),
        Some("unreadable") | Some("unsupported") | Some("unknown") | None => state_badge(None, "", ""),
        Some(other) => state_badge(Some(false), "", &esc(other)),
    };
    let owner = match session.and_then(|s| Some((s.pid?, s.name.as_deref()?, s.parent_name.as_deref()))) {
        Some((pid, comm, parent)) => {
            let user = session.and_then(|s| s.user.as_deref()).unwrap_or("an unknown user");
            format!("{} pid {pid} ({}), parent {}", esc(comm), esc(user), esc(parent.unwrap_or("?")))
        }
        None => match session.and_then(|s| s.detail.as_deref()) {
            Some(detail) => format!("{}: {}", esc(session_state.unwrap_or("")), esc(detail)),
            None => esc(session_state.unwrap_or("not checked yet")),
        },
    };
    let through = match companion {
        Some(c) if c.said == "vouches" => format!(
            " · WSL's relay: the companion inside WSL2 vouches for its ssh{}",
            c.ssh_pid.map_or(String::new(), |pid| format!(" pid {pid}"))
        ),
        Some(c) => format!(" · WSL's relay: {}", esc(c.why.as_deref().unwrap_or(&c.said))),
        None => String::new(),
    };
    format!(
        "<tr><th>SSH session</th><td class=\"ssh\">{session_badge}</td><td class=\"muted\">{owner}{through}</td></tr>"
    )
}

/// The SYN probe's last answer and counts (a direct route's connects to the gateway).
fn syn_row(forward: &ForwardStatus, _now: f64) -> String {
    let syn = &forward.part::<UptimeStatus>().syn;
    let (name, failed) = if without_ssh(forward) { ("Connect", "fails") } else { ("SYN", "refused") };
    format!(
        "<tr><th>{name}</th><td class=\"syn\">{}</td><td class=\"muted\">{} of {} connects succeeded</td></tr>",
        state_badge(syn.last_ok, "connects", failed),
        syn.successes,
        syn.attempts,
    )
}

/// The last completed five-minute bucket's uptime and the time unobserved.
fn uptime_row(forward: &ForwardStatus, _now: f64) -> String {
    let uptime = forward.part::<UptimeStatus>();
    format!(
        "<tr><th>Uptime</th><td>{}</td><td class=\"muted\">last completed 5-minute bucket · {} unobserved</td></tr>",
        uptime.uptime_ratio_last_bucket.map_or("–".into(), |r| format!("{:.2}%", r * 100.0)),
        seconds(Some(uptime.unobserved_seconds)),
    )
}

/// The last wake's row: how long after the first round after a gap (a sleep, a stall) the first byte through
/// the forward worked again.
fn resume_row(forward: &ForwardStatus, now: f64) -> String {
    let uptime = forward.part::<UptimeStatus>();
    let Some(resume) = uptime.last_resume.as_ref() else { return String::new() };
    let (badge, text) = if resume.usable {
        (
            state_badge(Some(resume.seconds <= 60.0), "quick", "slow"),
            format!("usable in {}", human_duration(resume.seconds)),
        )
    } else {
        (state_badge(Some(false), "", "unusable"), format!("not usable within {}", human_duration(resume.seconds)))
    };
    let advice = if without_ssh(forward) {
        ""
    } else {
        " · shorten it with ServerAliveInterval x ServerAliveCountMax and the supervisor's restart delay"
    };
    format!(
        "<tr class=\"resume\"><th>After the last wake</th><td>{badge}</td><td class=\"muted\">{text} · {} ago{advice}</td></tr>",
        human_duration((now - resume.at).max(0.0))
    )
}

/// The last day's strip of five-minute buckets and the first-byte chart below it.
fn strip_and_chart(forward: &ForwardStatus, now: f64) -> String {
    let now = now as u64;
    let current_bucket = now / BUCKET_SECONDS * BUCKET_SECONDS;
    let first_bucket = current_bucket.saturating_sub((BUCKETS_KEPT as u64 - 1) * BUCKET_SECONDS);
    let mut html = String::new();
    let uptime = forward.part::<UptimeStatus>();
    let buckets = &uptime.buckets;
    html.push_str("<div class=\"strip\" title=\"last 24 hours, five-minute buckets\">");
    let mut start = first_bucket;
    while start <= current_bucket {
        let bucket = buckets.iter().find(|b| b.start == start);
        let (class, title) = bucket_class(bucket);
        let _ = write!(html, "<span class=\"s-{class}\" title=\"{}\"></span>", esc(&title));
        start += BUCKET_SECONDS;
    }
    html.push_str(concat!(
        "</div><div class=\"legend muted\"><span class=\"s-up\"></span>up<span class=\"s-partly\"></span>partly",
        "<span class=\"s-down\"></span>down<span class=\"s-unobserved\"></span>unobserved (asleep)",
        "<span class=\"s-empty\"></span>no data</div>"
    ));
    html.push_str(&first_byte_chart(buckets, first_bucket, current_bucket));
    html.push_str(
        "<div class=\"legend muted\">first byte through the tunnel per five-minute bucket: \
         <b style=\"color:#1565c0\">p50</b> and <b style=\"color:#ef6c00\">p99</b>, log scale; gaps: no probe answered \
         (down or asleep). The model host's round trip is in its table below.</div>",
    );
    html
}

/// A bucket's class: up, down, partly, unobserved, or empty (no data).
fn bucket_class(bucket: Option<&Bucket>) -> (&'static str, String) {
    let Some(bucket) = bucket else { return ("empty", "no data".into()) };
    let (checks, up, unobserved) = (bucket.checks, bucket.successes, bucket.unobserved_seconds);
    if checks == 0 || unobserved >= BUCKET_SECONDS as f64 / 2.0 {
        return ("unobserved", format!("{unobserved:.0} s unobserved, {up}/{checks} rounds up"));
    }
    let class = match up {
        u if u == checks => "up",
        0 => "down",
        _ => "partly",
    };
    (class, format!("{up}/{checks} rounds up ({:.2}%)", up as f64 * 100.0 / checks as f64))
}

/// The chart's geometry: one 3-pixel column per five-minute bucket, a log axis from 100 µs to 10 s.
const CHART_HEIGHT: f64 = 120.0;
const COLUMN: f64 = 3.0;
const LOG_FLOOR: f64 = -4.0;
const LOG_DECADES: f64 = 5.0;

fn chart_y(seconds: f64) -> f64 {
    let decades = (seconds.max(1e-6).log10() - LOG_FLOOR).clamp(0.0, LOG_DECADES);
    CHART_HEIGHT - decades / LOG_DECADES * CHART_HEIGHT
}

/// An SVG step path through the buckets' values (each bucket a level across its column, so a lone bucket is
/// a visible dash), broken where a bucket has none (no probe answered, asleep).
fn chart_path(points: &[(usize, Option<f64>)]) -> String {
    let mut path = String::new();
    let mut drawing = false;
    for (column, value) in points {
        match value {
            Some(seconds) => {
                let (x, y) = (*column as f64 * COLUMN, chart_y(*seconds));
                let _ = write!(path, "{}{x:.1} {y:.1} H{:.1} ", if drawing { "L" } else { "M" }, x + COLUMN);
                drawing = true;
            }
            None => drawing = false,
        }
    }
    path.trim_end().to_owned()
}

/// The last 24 h of one forward's first-byte p50 and p99 per five-minute bucket, inline SVG (no script).
fn first_byte_chart(buckets: &[Bucket], first_bucket: u64, current_bucket: u64) -> String {
    let columns = ((current_bucket - first_bucket) / BUCKET_SECONDS + 1) as usize;
    let width = columns as f64 * COLUMN;
    let (mut p50, mut p99) = (Vec::with_capacity(columns), Vec::with_capacity(columns));
    for column in 0..columns {
        let start = first_bucket + column as u64 * BUCKET_SECONDS;
        let quantiles = buckets.iter().find(|b| b.start == start).and_then(Bucket::first_byte_quantiles);
        p50.push((column, quantiles.map(|q| q.0)));
        p99.push((column, quantiles.map(|q| q.1)));
    }
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\" \
         aria-label=\"first byte p50 and p99 per five-minute bucket, last 24 hours\"><title>first byte p50 (blue) and p99 \
         (orange) per five-minute bucket, last 24 hours, log scale</title>",
        height = CHART_HEIGHT
    );
    for (seconds, label) in [(1e-3, "1 ms"), (1e-2, "10 ms"), (1e-1, "100 ms"), (1.0, "1 s")] {
        let y = chart_y(seconds);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"0\" x2=\"{width:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"2\" y=\"{:.1}\">{label}</text>",
            y - 2.0
        );
    }
    let _ = write!(
        svg,
        "<path class=\"p99\" d=\"{}\"/><path class=\"p50\" d=\"{}\"/></svg>",
        chart_path(&p99),
        chart_path(&p50)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::uptime::rounds::tests::owner;
    use crate::kinds::uptime::rounds::DOWN_CAUSES;
    use crate::record::tests::sample;
    use crate::record::Format;
    use std::time::UNIX_EPOCH;

    #[test]
    fn the_chart_steps_through_buckets_and_breaks_at_gaps() {
        let path = chart_path(&[(0, Some(1e-3)), (1, Some(1e-2)), (2, None), (3, Some(1.0))]);
        assert_eq!(path, "M0.0 96.0 H3.0 L3.0 72.0 H6.0 M9.0 24.0 H12.0");
        assert_eq!(chart_y(1e-9), CHART_HEIGHT, "below the floor sits on the axis");
        assert_eq!(chart_y(1e9), 0.0, "above the top sits on the top");
    }

    /// A recorder with the uptime record, the default config's forward, and its tunnel kind.
    fn default_forwards_tunnel() -> (Arc<Recorder>, Arc<Forward>, TunnelKind) {
        let (recorder, uptime) = crate::kinds::uptime::tests::recorder();
        let forward = Arc::new(crate::config::Config::load(None).unwrap().forwards[0].clone());
        let session = ssh_session::Target::new(forward.local().unwrap());
        let (_, tunnel) = TunnelKind::new(forward.clone(), recorder.clone(), uptime, session);
        (recorder, forward, tunnel)
    }

    #[test]
    fn a_round_whose_syn_failed_for_the_exporters_own_shortage_is_neither_up_nor_down() {
        let (recorder, forward, mut tunnel) = default_forwards_tunnel();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let round = Round { wall: t0, boot: Duration::from_secs(10) };
        let outcome = TunnelOutcome {
            syn: Err(syn::Failure::LocalError(std::io::ErrorKind::AddrNotAvailable)),
            session: ssh_session::Outcome::Up(owner("ssh")),
        };
        assert_eq!(tunnel.handle(round, &outcome), "unobserved");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(1));
        let name = &forward.name;
        assert_eq!(sample(&text, &format!("openclaw_tunnel_up_checks_total{{forward=\"{name}\"}}")), Some(0.0));
        let unobserved =
            format!("openclaw_tunnel_unobserved_rounds_total{{forward=\"{name}\",reason=\"local_error\"}}");
        assert_eq!(sample(&text, &unobserved), Some(1.0));
        for cause in DOWN_CAUSES {
            let down = format!("openclaw_tunnel_down_seconds_total{{forward=\"{name}\",cause=\"{cause}\"}}");
            assert_eq!(sample(&text, &down), Some(0.0), "{cause}");
        }
    }

    #[test]
    fn a_lookup_that_could_not_tell_leaves_the_hijack_gauge_as_it_was_and_counts_unknown() {
        let (recorder, forward, mut tunnel) = default_forwards_tunnel();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let name = &forward.name;
        let hijacked = format!("openclaw_tunnel_forward_hijacked{{forward=\"{name}\"}}");
        let lookups =
            |result: &str| format!("openclaw_tunnel_owner_lookups_total{{forward=\"{name}\",result=\"{result}\"}}");
        let mut at = 10;
        let mut round = |session: ssh_session::Outcome| {
            at += 1;
            let round = Round { wall: t0 + Duration::from_secs(at), boot: Duration::from_secs(at) };
            let syn = Ok(syn::Connected { connect: Duration::from_micros(30) });
            tunnel.handle(round, &TunnelOutcome { syn, session });
            recorder.encode(Format::Prometheus, t0 + Duration::from_secs(at))
        };
        let unknown = || ssh_session::Outcome::Unknown { detail: "socket table lookup timed out".into() };
        // Before anything is known: absent, and an unknown round does not invent a value.
        let text = round(unknown());
        assert_eq!(sample(&text, &hijacked), None, "{text}");
        let mut foreign = owner("python3");
        foreign.same_user = Some(false);
        let text = round(ssh_session::Outcome::NotSsh(foreign));
        assert_eq!(sample(&text, &hijacked), Some(1.0));
        // A lookup that timed out says nothing new: still 1 (not cleared, not raised).
        let text = round(unknown());
        assert_eq!(sample(&text, &hijacked), Some(1.0));
        let text = round(ssh_session::Outcome::Up(owner("ssh")));
        assert_eq!(sample(&text, &hijacked), Some(0.0));
        let text = round(unknown());
        assert_eq!(sample(&text, &hijacked), Some(0.0), "unknown is not hijacked");
        assert_eq!(sample(&text, &lookups("unknown")), Some(3.0));
        assert_eq!(sample(&text, &lookups("not_ours")), Some(1.0));
        assert_eq!(sample(&text, &lookups("ours")), Some(1.0));
        // And the token is withheld while unknown.
        assert!(matches!(unknown().trust(&[]), ssh_session::Trust::NotOurs(why) if why.contains("could not tell")));
    }
}
