//! What a kind declares for the doctor: its step (a layer of the self-rescue list, checked once, with a verdict,
//! its evidence and the next thing to do) and its notes at another kind's layer. The kinds declare them
//! (each at its [`Layer`]; [`list`] gathers them from the network up); the doctor walks that list, numbers the steps,
//! stops explaining at the first failure and renders the report. It sits below `kinds` so every kind can name
//! these types, and above `config`, which the steps read.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Forward};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Checked and fine.
    Pass,
    /// Checked and broken: the layer to fix.
    Fail,
    /// Not applicable here (nothing configured for it, or it cannot be known).
    Skipped,
    /// Not checked because a layer below failed.
    NotChecked,
}

/// A step's verdict: how it ended, what was seen, and for a failure what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How the step ended.
    pub status: Status,
    /// What was seen: figures, the owning pid, the status code.
    pub evidence: String,
    /// What to do next (a failure's).
    pub next: Option<String>,
}

impl Verdict {
    /// Checked and fine.
    pub fn pass(evidence: String) -> Verdict {
        Verdict { status: Status::Pass, evidence, next: None }
    }

    /// Checked and broken, with the fix.
    pub fn fail(evidence: String, next: &str) -> Verdict {
        Verdict { status: Status::Fail, evidence, next: Some(next.to_owned()) }
    }

    /// Nothing to check here.
    pub fn skipped(evidence: String) -> Verdict {
        Verdict { status: Status::Skipped, evidence, next: None }
    }
}

/// A future a step or a note returns, borrowing the checkup it works on.
pub type Checking<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// A layer's check.
pub type Check = for<'c, 'a> fn(&'c mut Checkup<'a>) -> Checking<'c, Verdict>;

/// Notes a kind adds at a layer (into [`Checkup::notes`]): hygiene beside the verdict, each with its fix.
pub type Notes = for<'c, 'a> fn(&'c mut Checkup<'a>) -> Checking<'c, ()>;

/// The gateway host's own check (a config with no forward): only the bind-exposure layer has one.
pub type HostCheck = for<'c> fn(&'c Config) -> Checking<'c, Verdict>;

/// A layer of the doctor's list, from the network up: a step's number is its layer's place here, so a
/// failure's exit code (10 + it) is the doctor's API; a new layer goes where it belongs and the README says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// The ssh host answers (a direct route: the gateway's host resolves).
    SshHost,
    /// ssh owns the local forward (a direct route: the gateway's port accepts).
    Session,
    /// The local forward accepts (a direct route: TLS and the certificate).
    Syn,
    /// The gateway's first byte through the forward.
    FirstByte,
    /// The gateway started and ready.
    Readiness,
    /// The Control UI answers.
    ControlUi,
    /// The token is accepted and current.
    Auth,
    /// The gateway bound to loopback only.
    Exposure,
}

/// What a kind declares for the doctor, each at its layer: its step, its notes at a layer, or a layer's check
/// on a route without ssh. The registry gathers every kind's parts into the list ([`list`]).
#[derive(Clone, Copy)]
pub enum DoctorPart {
    /// The layer's check, from the kind that measures it.
    Step(Layer, DoctorStep),
    /// Notes a kind adds at a layer (run before the layer's check, in the registry's order).
    Notes(Layer, Notes),
    /// The layer as a route without ssh (`ws://`, `wss://`) has it: its name and check, at the same place, so
    /// the exit codes stay per layer.
    OnDirectRoute(Layer, &'static str, Check),
}

/// A layer's check as a kind declares it.
#[derive(Clone, Copy)]
pub struct DoctorStep {
    /// What is checked, as the report names it.
    pub name: &'static str,
    /// The check.
    pub check: Check,
    /// The check a gateway host runs on its own (a config with `forward = []` and a `[[gateway]]`).
    pub on_gateway_host: Option<HostCheck>,
}

impl DoctorStep {
    /// The step `name`, checked by `check`, with nothing on a gateway host.
    pub const fn new(name: &'static str, check: Check) -> DoctorStep {
        DoctorStep { name, check, on_gateway_host: None }
    }
}

/// One step of the doctor's list: a layer's check with what other kinds declared at its layer.
#[derive(Clone)]
pub struct ListedStep {
    /// The layer's check.
    pub step: DoctorStep,
    /// Notes other kinds add at this layer, run before the check, in order.
    pub notes: Vec<Notes>,
    /// The layer on a route without ssh; None when the step is the same on every route.
    pub on_direct_route: Option<(&'static str, Check)>,
}

impl ListedStep {
    /// The name and check this step has for `forward`'s route.
    pub fn for_forward(&self, forward: &Forward) -> (&'static str, Check) {
        match self.on_direct_route {
            Some(direct) if forward.local().is_none() => direct,
            _ => (self.step.name, self.step.check),
        }
    }
}

/// The doctor's list from the kinds' `parts`: one step per layer that has a check, in the layers' order, each
/// with the notes and direct-route check declared at its layer (parts at a layer with no check are left out;
/// the registry's unit test proves there are none, and that no layer has two checks).
pub fn list<'p>(parts: impl IntoIterator<Item = &'p DoctorPart>) -> Vec<ListedStep> {
    let parts: Vec<&DoctorPart> = parts.into_iter().collect();
    let mut steps: Vec<(Layer, ListedStep)> = parts
        .iter()
        .filter_map(|part| match part {
            DoctorPart::Step(layer, step) => {
                Some((*layer, ListedStep { step: *step, notes: Vec::new(), on_direct_route: None }))
            }
            _ => None,
        })
        .collect();
    steps.sort_by_key(|(layer, _)| *layer);
    for part in parts {
        let Some((_, listed)) = steps.iter_mut().find(|(layer, _)| match part {
            DoctorPart::Step(..) => false,
            DoctorPart::Notes(at, _) | DoctorPart::OnDirectRoute(at, ..) => at == layer,
        }) else {
            continue;
        };
        match part {
            DoctorPart::Notes(_, notes) => listed.notes.push(*notes),
            DoctorPart::OnDirectRoute(_, name, check) => listed.on_direct_route = Some((*name, *check)),
            DoctorPart::Step(..) => {}
        }
    }
    steps.into_iter().map(|(_, listed)| listed).collect()
}

/// What the steps of one forward's checkup share: what they check, what one step read for the next, and the
/// current step's notes.
pub struct Checkup<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// The forward checked.
    pub forward: &'a Forward,
    /// Its route, or why it cannot be built (a `wss://` route's CA file that does not load: its TLS step
    /// fails with it, every step above is not checked).
    pub route: Result<probes::route::Route, String>,
    /// Every step's time limit (the forward's `timeout`).
    pub timeout: Duration,
    /// The gateway's `/startupz` + `/readyz` answer, read by the first-byte step for its evidence and judged by
    /// the readiness step (read once; whoever needs it first reads it: [`Checkup::readiness`]).
    pub readiness: Option<probes::readiness::Outcome>,
    /// The current step's notes.
    pub notes: Vec<String>,
    /// What must be done before the current step's `next`, should the step fail (a note's finding that stands
    /// in the fix's way: orphaned ssh clients holding the port).
    pub before_next: Option<&'static str>,
}

impl<'a> Checkup<'a> {
    /// A checkup of `forward`.
    pub fn new(config: &'a Config, forward: &'a Forward) -> Self {
        let route = forward.probe_route().map_err(|err| err.to_string());
        Checkup {
            config,
            forward,
            route,
            timeout: forward.timeout,
            readiness: None,
            notes: Vec::new(),
            before_next: None,
        }
    }

    /// The route, for a step above the TLS layer (which fails when it cannot be built, so none above runs).
    pub fn route(&self) -> probes::route::Route {
        match &self.route {
            Ok(route) => route.clone(),
            // Unreachable above a failed TLS step; a route to nowhere fails any probe honestly.
            Err(_) => probes::route::Route::Local(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        }
    }

    /// The gateway's readiness answer, read now unless a step below read it.
    pub async fn readiness(&mut self) -> &probes::readiness::Outcome {
        use probes::Probe;
        let read = match self.readiness.take() {
            Some(read) => read,
            None => (probes::readiness::Target { route: self.route() }).probe(self.timeout).await,
        };
        self.readiness.insert(read)
    }
}

/// A duration as the doctor prints it: microseconds below a millisecond, else milliseconds to a tenth.
pub fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}
