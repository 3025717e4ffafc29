//! The probe kinds: one module per kind, each declaring what the rest of the exporter needs from it: its
//! [`crate::driver::Adapter`] (its target, its schedule as one value, what a round needs first, its logs and
//! what each outcome records), its rows and sections on the status page, its step or notes for the doctor
//! ([`crate::checkup`]), and its record, its families and status ([`crate::record::kinds::KindRecord`]: tunnel
//! and first byte keep [`uptime`] together, as the uptime ledger joins their rounds).
//!
//! The registry, which the rest walks without naming a kind: [`FOR_EACH_FORWARD`] and [`ONCE`] list every
//! kind's `start`, which decides from the configuration whether (and for what) the kind runs and spawns its
//! tasks (the scheduler); [`RECORDS`] the kinds' own records (the recorder is built with them, registers
//! their families and puts their status in `/api/status`); [`FORWARD_ROWS`], [`FORWARD_SECTIONS`] and
//! [`PAGE_SECTIONS`] their parts of the status page, in the page's order; [`DOCTOR`] their steps and notes in
//! the doctor's list. [`control_ui`] was added that way, whole in its file.

use std::collections::HashMap;
use std::sync::Arc;

use probes::auth_tap::Registry;
use probes::gate::CredentialGate;
use probes::route::Route;
use probes::ssh_session;
use tokio::task::JoinSet;

use crate::checkup::DoctorStep;
use crate::config::{Config, Forward, ModelHost};
use crate::driver::{drive, Adapter, TaskContext};
use crate::record::Recorder;

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
pub mod tunnel;
pub mod uptime;
pub mod ws_handshake;

/// The kinds started for each `[[forward]]`, each deciding from the forward and the config whether it runs.
pub const FOR_EACH_FORWARD: [fn(&mut Start<'_>, &Arc<Forward>); 7] = [
    tunnel::start,
    first_byte::start,
    readiness::start,
    ssh_hygiene::start,
    ws_handshake::start,
    auth::start,
    control_ui::start,
];

/// The kinds started once per configuration (per gateway or model host inside).
pub const ONCE: [fn(&mut Start<'_>); 5] = [
    auth::start_token_sources,
    openclaw_cli_url::start,
    openclaw_cli_version::start,
    exposure::start,
    model_host::start,
];

/// The kinds' records, their families and status ([`crate::record::kinds::KindRecord`]; tunnel and first byte
/// keep [`uptime`]'s together): the recorder is built with these, registers their families once and puts their
/// status into `/api/status`.
pub const RECORDS: &[crate::record::kinds::NewKindRecord] = &[
    uptime::record,
    readiness::record,
    ssh_hygiene::record,
    openclaw_cli_url::record,
    openclaw_cli_version::record,
    ws_handshake::record,
    model_host::record,
    exposure::record,
    control_ui::record,
    auth::record,
];

/// A kind's part of one forward on the status page, from the forward's status and the report's time: empty
/// when it has nothing to show.
pub type ForwardPart = fn(&crate::record::status::ForwardStatus, f64) -> String;

/// The rows of a forward's table on the status page, in the page's order.
pub const FORWARD_ROWS: [ForwardPart; 12] = [
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
pub const FORWARD_SECTIONS: [ForwardPart; 2] = [tunnel::strip_and_chart, auth::failures_section];

/// The page's sections after the forwards: the model hosts, the gateways' bind exposure.
pub const PAGE_SECTIONS: [fn(&crate::record::status::StatusReport) -> String; 2] =
    [model_host::page_section, exposure::page_section];

/// The doctor's self-rescue list, from the network up: each layer's check from the kind that measures it, with
/// the notes other kinds add at that layer. A step's number is its place here (a failure's exit code is 10 + it).
pub const DOCTOR: [DoctorStep; 8] = [
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

/// What the kinds load before a generation starts ([`prepare`]), handed to their `start`: a start cannot fail,
/// so a reload prepares first and stops the running generation only once the new one is sure to start.
pub struct Prepared {
    model_hosts: Vec<(Arc<ModelHost>, probes::model_host::Target)>,
    /// Each forward's route, by name (a `wss://` route's CA file loaded).
    routes: HashMap<String, Route>,
}

/// Why a kind could not be prepared, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A `wss://` forward's CA file does not load.
    #[error("forward[{index}].ca_file: {source}")]
    RouteCaFile {
        /// The `[[forward]]`'s place in the config.
        index: usize,
        /// Why it does not load.
        source: probes::tls::TlsConfigError,
    },
    /// A model host's CA file does not load.
    #[error("model_host[{index}].ca_file: {source}")]
    CaFile {
        /// The `[[model_host]]`'s place in the config.
        index: usize,
        /// Why it does not load.
        source: probes::model_host::TlsConfigError,
    },
}

impl Prepared {
    /// Each forward's route, by name (the auth taps in front of url routes speak to them).
    pub fn routes(&self) -> HashMap<String, Route> {
        self.routes.clone()
    }
}

/// Load what the kinds of `config` read before they start: the model hosts' and the `wss://` routes' CA files.
pub fn prepare(config: &Config) -> Result<Prepared, PrepareError> {
    let mut routes = HashMap::new();
    for (index, forward) in config.forwards.iter().enumerate() {
        let route = forward.probe_route().map_err(|source| PrepareError::RouteCaFile { index, source })?;
        routes.insert(forward.name.clone(), route);
    }
    Ok(Prepared { model_hosts: model_host::prepare(config)?, routes })
}

/// Where an auth tap fronting `forward` puts what it sees: the auth kind's record (the tap is the auth kind's
/// view of real traffic; the scheduler binds it and keeps it across reloads).
pub fn tap_sink(recorder: &Arc<Recorder>, forward: &str) -> Arc<auth::TapSink> {
    Arc::new(auth::TapSink::new(recorder.clone(), forward))
}

/// What a kind's `start` has: the generation's configuration and shared lookups, and where its tasks go.
pub struct Start<'a> {
    /// The configuration the generation runs.
    pub config: &'a Config,
    /// Where outcomes go.
    pub recorder: &'a Arc<Recorder>,
    /// One process walk shared by every forward's owner lookups, kept across reloads.
    pub owner_index: &'a ssh_session::OwnerIndex,
    /// One read of this user's ssh processes a second, shared by every forward's orphan check.
    pub process_table: &'a probes::ssh_hygiene::ProcessTable,
    /// The token revision registry (shared: its caches).
    pub auth_registry: Arc<Registry>,
    /// The model hosts' targets, prepared (CA files loaded) before the generation starts; taken by their kind.
    pub model_hosts: Vec<(Arc<ModelHost>, probes::model_host::Target)>,
    routes: HashMap<String, Route>,
    tasks: &'a mut JoinSet<()>,
    ctx: TaskContext,
}

impl<'a> Start<'a> {
    /// A start into `tasks`, each task with `ctx`.
    pub fn new(
        config: &'a Config,
        recorder: &'a Arc<Recorder>,
        owner_index: &'a ssh_session::OwnerIndex,
        process_table: &'a probes::ssh_hygiene::ProcessTable,
        prepared: Prepared,
        tasks: &'a mut JoinSet<()>,
        ctx: TaskContext,
    ) -> Self {
        let auth_registry = Arc::new(config.auth.registry.clone());
        let Prepared { model_hosts, routes } = prepared;
        Start { config, recorder, owner_index, process_table, auth_registry, model_hosts, routes, tasks, ctx }
    }

    /// Run `probe` on `kind`'s schedule until the generation stops.
    pub fn drive<A: Adapter>(&mut self, probe: A::Probe, kind: A) {
        self.tasks.spawn(drive(probe, kind, self.ctx.clone()));
    }

    /// Run a task of the kind's own (one that is not a probe's schedule) until the generation stops.
    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// The generation's cancellation token, for a task of the kind's own.
    pub fn cancel(&self) -> tokio_util::sync::CancellationToken {
        self.ctx.cancel.clone()
    }

    /// `forward`'s route, as [`prepare`] built it from the same configuration the generation starts.
    pub fn route(&self, forward: &Forward) -> Route {
        self.routes.get(&forward.name).cloned().expect("prepare builds a route for every forward of the config")
    }

    /// An owner lookup of the listener of a `local` route at `addr`, sharing the generation's process walk.
    pub fn session_target(&self, addr: std::net::SocketAddr) -> ssh_session::Target {
        tunnel::session_target(addr, self.config, self.owner_index)
    }

    /// The credential gate of `forward`'s route: its owner lookup (sharing the process walk) for an ssh
    /// forward, its transport's rule for a direct route.
    pub fn gate(&self, forward: &Forward) -> CredentialGate {
        CredentialGate::for_route(
            &self.route(forward),
            |addr| self.session_target(addr),
            forward.trusted_owners.clone(),
        )
    }
}
