//! The probe kinds: one module per kind, each declaring what the rest of the exporter needs from it: its
//! [`crate::driver::Adapter`] (its target, its schedule as one value, what a round needs first, its logs and
//! what each outcome records), its rows and sections on the status page, its step or notes for the doctor
//! ([`crate::checkup`]), and its record, its families and status ([`crate::record::kinds::KindRecord`]: tunnel
//! and first byte keep [`uptime`] together, as the uptime ledger joins their rounds).
//!
//! The registry, which the rest walks without naming a kind: [`KINDS`], one entry per kind holding its record
//! and its start together ([`Kind`]: the recorder is built with the records, registers their families and
//! puts their status in `/api/status`; each generation runs every start, which decides from the configuration
//! whether, and for what, the kind runs); [`FORWARD_ROWS`], [`FORWARD_SECTIONS`] and [`PAGE_SECTIONS`] their
//! parts of the status page, in the page's order; [`DOCTOR`] their steps and notes in the doctor's list. What
//! an entry takes and a start is given is [`start`]'s.

use crate::checkup::DoctorStep;
#[cfg(test)]
use crate::config::Config;

pub mod auth;
pub mod control_ui;
pub mod exposure;
pub mod first_byte;
pub mod model_host;
pub mod openclaw_cli_url;
pub mod openclaw_cli_version;
pub mod readiness;
pub mod route;
pub mod ssh_hygiene;
mod start;
pub mod tunnel;
pub mod uptime;
pub mod ws_handshake;

pub use start::{prepare, tap_sink, Entry, Kind, PrepareError, Prepared, Start};

/// Every kind, its record and its start in one entry ([`Kind`]): the recorder is built with their records (in
/// this order: the order of their families on `/metrics`), and each generation starts every one of them.
pub const KINDS: &[Entry] = &[
    Entry::of::<tunnel::Uptime>(),
    Entry::of::<readiness::GatewayReadiness>(),
    Entry::of::<ssh_hygiene::SshHygiene>(),
    Entry::of::<openclaw_cli_url::CliUrl>(),
    Entry::of::<openclaw_cli_version::CliVersion>(),
    Entry::of::<ws_handshake::WsHandshake>(),
    Entry::of::<model_host::ModelHosts>(),
    Entry::of::<exposure::Exposure>(),
    Entry::of::<control_ui::ControlUi>(),
    Entry::of::<auth::Auth>(),
];

/// The records of [`KINDS`], as the recorder is built with them.
pub fn records() -> Vec<crate::record::kinds::NewKindRecord> {
    KINDS.iter().map(|entry| entry.record).collect()
}

/// Start every kind of [`KINDS`] for the generation `start` begins.
pub fn start_all(start: &mut Start<'_>) {
    for entry in KINDS {
        (entry.start)(start);
    }
}

/// A kind's part of one forward on the status page, from the forward's status and the report's time: empty
/// when it has nothing to show.
pub type ForwardPart = fn(&crate::record::status::ForwardStatus, f64) -> String;

/// The rows of a forward's table on the status page, in the page's order.
pub const FORWARD_ROWS: &[ForwardPart] = &[
    route::page_row,
    tunnel::session_row,
    ssh_hygiene::page_rows,
    openclaw_cli_url::page_row,
    auth::tap_rows,
    tunnel::syn_row,
    first_byte::page_rows,
    ws_handshake::page_row,
    auth::refusal_row,
    tunnel::uptime_row,
    tunnel::resume_row,
    control_ui::page_row,
];

/// What follows a forward's table on the status page: the day's strip and chart, the auth failures.
pub const FORWARD_SECTIONS: &[ForwardPart] = &[tunnel::strip_and_chart, auth::failures_section];

/// The page's sections after the forwards: the model hosts, the gateways' bind exposure.
pub const PAGE_SECTIONS: &[fn(&crate::record::status::StatusReport) -> String] =
    &[model_host::page_section, exposure::page_section];

/// Every kind's timeline events, for the status page's words (each declared with the kind that writes it).
pub const TIMELINE_EVENTS: &[crate::record::timeline::EventKind] = &[
    uptime::TUNNEL_DOWN,
    uptime::GATEWAY_DOWN,
    exposure::EXPOSED,
    uptime::ASLEEP,
    uptime::SSH_RESTART,
    readiness::GATEWAY_RESTART,
    auth::TOKEN_ROTATION,
];

/// The doctor's self-rescue list, from the network up: each layer's check from the kind that measures it, with
/// the notes other kinds add at that layer. A step's number is its place here (a failure's exit code is 10 + it).
pub const DOCTOR: &[DoctorStep] = &[
    tunnel::DOCTOR_SSH_HOST.on_direct_route(route::DOCTOR_RESOLVE.0, route::DOCTOR_RESOLVE.1),
    tunnel::DOCTOR_SESSION
        .with_notes(&[ssh_hygiene::DOCTOR_NOTES])
        .on_direct_route(route::DOCTOR_CONNECT.0, route::DOCTOR_CONNECT.1),
    tunnel::DOCTOR_SYN
        .with_notes(&[openclaw_cli_url::DOCTOR_NOTES])
        .on_direct_route(route::DOCTOR_TLS.0, route::DOCTOR_TLS.1),
    first_byte::DOCTOR_STEP,
    readiness::DOCTOR_STEP.with_notes(&[openclaw_cli_version::DOCTOR_NOTES]),
    control_ui::DOCTOR_STEP,
    auth::DOCTOR_STEP,
    exposure::DOCTOR_STEP,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Recorder;
    use std::sync::Arc;

    /// Each entry's record constructor builds the record its start takes, alone and among all the others: a kind
    /// whose `RECORD` is another kind's, or whose record the recorder was not built with, fails here.
    #[test]
    fn every_kind_s_record_is_the_one_its_start_takes() {
        let all = Recorder::with_kinds(&records(), Vec::new());
        for (index, entry) in KINDS.iter().enumerate() {
            assert!((entry.held_by)(&all), "KINDS[{index}]: the recorder built from KINDS lacks its record");
            let alone = Recorder::with_kinds(&[entry.record], Vec::new());
            assert!((entry.held_by)(&alone), "KINDS[{index}]: its RECORD builds another kind's record");
        }
    }

    /// Every kind starts on a recorder built from the registry, for a config with a forward, a gateway and a
    /// model host: a start that found no record would panic here, not go quiet.
    #[tokio::test]
    async fn every_kind_starts_on_the_registry_s_recorder() {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(
            file.path(),
            "[[gateway]]\nname = \"g\"\n[[model_host]]\nname = \"m\"\nurl = \"https://127.0.0.1:9/\"\n",
        )
        .unwrap();
        let config = Config::load(Some(file.path())).unwrap();
        let recorder = Arc::new(Recorder::with_kinds(&records(), Vec::new()));
        recorder.apply_config(&config);
        let (owner_index, process_table) = (Default::default(), Default::default());
        let cancel = tokio_util::sync::CancellationToken::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(8));
        let ctx = crate::driver::TaskContext { recorder: recorder.clone(), permits, cancel: cancel.clone() };
        let mut tasks = tokio::task::JoinSet::new();
        let prepared = prepare(&config).unwrap();
        let mut start = Start::new(&config, &recorder, &owner_index, &process_table, prepared, &mut tasks, ctx);
        start_all(&mut start);
        // The default forward's tunnel, first byte, readiness, hygiene, handshake, auth probe, Control UI and
        // token watch; the CLI's URL and version; the gateway's exposure; the model host.
        assert!(tasks.len() >= 12, "{} tasks", tasks.len());
        cancel.cancel();
        tasks.shutdown().await;
    }
}
