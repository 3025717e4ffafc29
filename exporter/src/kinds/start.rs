//! What a kind's registry entry takes and what its start is given: [`Kind`] (a kind's record, its start, its
//! parts of the status page ([`PagePart`] at a [`Row`], [`AfterTable`] or [`Section`]) and of the doctor's
//! list, and its timeline events, declared together), [`Entry`] (the two, erased to one type for [`super::KINDS`]), [`Start`] (the generation's
//! configuration, shared lookups and task set), [`prepare`] (what kinds load before a generation starts, so a
//! start cannot fail) and [`tap_sink`] (where an auth tap puts what it sees). The registry ([`super`]) is the
//! list alone.

use std::collections::HashMap;
use std::sync::Arc;

use probes::auth_tap::Registry;
use probes::gate::CredentialGate;
use probes::route::Route;
use probes::ssh_session;
use tokio::task::JoinSet;

use super::{auth, model_host, tunnel};
use crate::checkup::DoctorPart;
use crate::config::{Config, Forward, ModelHost};
use crate::driver::{drive, Adapter, TaskContext};
use crate::record::kinds::{KindRecord, NewKindRecord};
use crate::record::status::{ForwardStatus, StatusReport};
use crate::record::timeline::EventKind;
use crate::record::Recorder;

/// A kind as the registry lists it: the record it keeps and how it starts, in one declaration, so neither can
/// be listed without the other. Its start is handed its own record, typed: no kind looks its record up.
pub trait Kind: 'static {
    /// The record it writes into (the uptime KPI's two kinds, tunnel and first byte, share one kind's).
    type Record: KindRecord;
    /// Its record, built and its families registered when the recorder is built.
    const RECORD: NewKindRecord;
    /// Its tasks for the generation `start` begins (for each forward, gateway or model host it decides on).
    fn start(start: &mut Start<'_>, record: &Arc<Self::Record>);
    /// Its parts of the status page, each at its place.
    const PAGE: &'static [PagePart] = &[];
    /// Its parts of the doctor's list, each at its layer.
    const DOCTOR: &'static [DoctorPart] = &[];
    /// The timeline events it writes, with their words for the page.
    const TIMELINE: &'static [EventKind] = &[];
}

/// A [`Kind`] erased for the registry's list ([`super::KINDS`]).
#[derive(Clone, Copy)]
pub struct Entry {
    /// The record's constructor, as the recorder is built with it.
    pub record: NewKindRecord,
    /// The kind's start, its record found by its type.
    pub start: fn(&mut Start<'_>),
    /// Whether a recorder holds the kind's record: read by the registry's unit test (every entry's record is
    /// the type its start takes), which is what makes `start`'s lookup sure.
    #[cfg_attr(not(test), allow(dead_code))]
    pub held_by: fn(&Recorder) -> bool,
    /// Its parts of the status page.
    pub page: &'static [PagePart],
    /// Its parts of the doctor's list.
    pub doctor: &'static [DoctorPart],
    /// Its timeline events.
    pub timeline: &'static [EventKind],
}

impl Entry {
    /// `K`'s entry.
    pub const fn of<K: Kind>() -> Entry {
        Entry {
            record: K::RECORD,
            start: start_kind::<K>,
            held_by: holds::<K>,
            page: K::PAGE,
            doctor: K::DOCTOR,
            timeline: K::TIMELINE,
        }
    }
}

fn holds<K: Kind>(recorder: &Recorder) -> bool {
    recorder.kind_record::<K::Record>().is_some()
}

/// `K`'s start with its record: the recorder is built from the same entries (`kinds::records`), and the
/// registry's unit test proves each entry's constructor builds the type its start takes.
fn start_kind<K: Kind>(start: &mut Start<'_>) {
    let record = start.recorder.kind_record::<K::Record>().unwrap_or_else(|| {
        panic!("the recorder is built from kinds::KINDS, which holds {}'s record", std::any::type_name::<K>())
    });
    K::start(start, &record);
}

/// A kind's part of one forward on the status page, from the forward's status and the report's time: empty
/// when it has nothing to show.
pub type ForwardPart = fn(&ForwardStatus, f64) -> String;

/// A row's place in a forward's table, top to bottom: the page's order, whichever kind declares the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Row {
    /// The route the forward takes.
    Route,
    /// The ssh session owning the forward.
    Session,
    /// The ssh options' and orphans' risks.
    Hygiene,
    /// The CLI's URL against the forward.
    CliUrl,
    /// The auth taps.
    Tap,
    /// The SYN to the forward.
    Syn,
    /// The gateway's first byte through it.
    FirstByte,
    /// The WebSocket handshake.
    Handshake,
    /// The last refusal.
    Refusal,
    /// The uptime.
    Uptime,
    /// The wait from wake to usable.
    Resume,
    /// The Control UI.
    ControlUi,
}

/// What follows a forward's table, in the page's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AfterTable {
    /// The day's strip and chart.
    Day,
    /// The auth failures.
    AuthFailures,
}

/// A section of the page after every forward's, in the page's order (the timeline closes the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// The model hosts.
    ModelHosts,
    /// The gateways' bind exposure.
    Exposure,
}

/// A kind's part of the status page, at its place.
#[derive(Clone, Copy)]
pub enum PagePart {
    /// A row of each forward's table.
    Row(Row, ForwardPart),
    /// What follows each forward's table.
    AfterTable(AfterTable, ForwardPart),
    /// A section after the forwards.
    Section(Section, fn(&StatusReport) -> String),
}

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
    /// The configuration's forwards, each shared by the kinds that run for it.
    forwards: Vec<Arc<Forward>>,
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
        let forwards = config.forwards.iter().cloned().map(Arc::new).collect();
        Start { config, recorder, owner_index, process_table, auth_registry, model_hosts, forwards, routes, tasks, ctx }
    }

    /// The configuration's forwards (for a kind that runs for each of them).
    pub fn forwards(&self) -> Vec<Arc<Forward>> {
        self.forwards.clone()
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
