//! `openclaw-tunnel-exporter doctor`: the three-minute self-rescue list, layer by layer from the network up,
//! each step with pass/fail, its evidence and the next thing to do. It stops explaining at the first failing
//! layer: prove the tunnel alive before debugging the gateway.
//!
//! Exit codes: 0 all passed; 11-17 the number of the first failing step plus 10; 2 a configuration error.

use std::time::Duration;

use probes::readiness::{self, Readiness, Startup};
use probes::{control_ui, exposure, first_byte, ssh_session, syn, Label, Probe};
use serde::Serialize;

use crate::config::{Config, Forward};
use crate::kinds;

mod token;
use token::token;

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

/// One step of the list.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// 1-based position; the exit code of a failure is 10 + this.
    pub number: u8,
    /// What is checked.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was seen: figures, the owning pid, the status code.
    pub evidence: String,
    /// What to do next, for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Hygiene found beside the verdict, each with its fix (orphaned ssh clients): they do not fail a step
    /// that works, so the exit code stays the first broken layer's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The doctor's findings for one forward.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The forward checked.
    pub forward: String,
    /// Its local address.
    pub local: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// 0 when every step passed or was skipped, else 10 + the first failing step's number.
    pub fn exit_code(&self) -> u8 {
        self.steps.iter().find(|s| s.status == Status::Fail).map_or(0, |s| 10 + s.number)
    }

    /// The human rendering.
    pub fn render(&self) -> String {
        let mut out = format!("doctor: forward {} ({})\n", self.forward, self.local);
        for step in &self.steps {
            let status = match step.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skipped => "skip",
                Status::NotChecked => "----",
            };
            out.push_str(&format!("  {} {:<34} {status}  {}\n", step.number, step.name, step.evidence));
            if let Some(next) = &step.next {
                out.push_str(&format!("      next: {next}\n"));
            }
            for note in &step.notes {
                out.push_str(&format!("      note: {note}\n"));
            }
        }
        out
    }
}

/// The layers, from the network up; a step's number is its place here (the exit code of its failure is 10 +
/// it), and a `match` on it is checked by the compiler to name every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    SshHost,
    Session,
    Syn,
    FirstByte,
    StartedReady,
    ControlUi,
    Token,
    LoopbackOnly,
}

impl Layer {
    const ALL: [Layer; 8] = [
        Layer::SshHost,
        Layer::Session,
        Layer::Syn,
        Layer::FirstByte,
        Layer::StartedReady,
        Layer::ControlUi,
        Layer::Token,
        Layer::LoopbackOnly,
    ];

    fn name(self) -> &'static str {
        match self {
            Layer::SshHost => "ssh host reachable",
            Layer::Session => "ssh owns the local forward",
            Layer::Syn => "SYN to the local forward",
            Layer::FirstByte => "gateway first byte (/healthz)",
            Layer::StartedReady => "gateway started and ready",
            Layer::ControlUi => "Control UI answers HTML",
            Layer::Token => "token accepted and current",
            Layer::LoopbackOnly => "gateway bound to loopback only",
        }
    }
}

type Verdict = (Status, String, Option<String>);

fn pass(evidence: String) -> Verdict {
    (Status::Pass, evidence, None)
}

fn fail(evidence: String, next: &str) -> Verdict {
    (Status::Fail, evidence, Some(next.to_owned()))
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

/// Run every step for `forward`.
pub async fn run(config: &Config, forward: &Forward) -> Report {
    let timeout = forward.timeout;
    let mut steps = Vec::new();
    let mut failed = false;
    // Step 4 reads /startupz and /readyz for its evidence (the version); step 5 judges the same answer.
    let mut readiness_read = None;
    for (index, layer) in Layer::ALL.into_iter().enumerate() {
        let number = index as u8 + 1;
        let name = layer.name();
        if failed {
            steps.push(Step {
                number,
                name,
                status: Status::NotChecked,
                evidence: "not checked: a layer below failed".into(),
                next: None,
                notes: Vec::new(),
            });
            continue;
        }
        let mut notes = Vec::new();
        let mut orphans_found = false;
        let (status, evidence, mut next) = match layer {
            Layer::SshHost => ssh_host(forward, timeout).await,
            Layer::Session => {
                (notes, orphans_found) =
                    kinds::ssh_hygiene::doctor_notes(forward, config.scheduler.owner_lookup, timeout).await;
                session(forward, config.scheduler.owner_lookup, timeout).await
            }
            Layer::Syn => {
                notes = kinds::openclaw_cli_url::doctor_notes(config, forward);
                match (syn::Target { addr: forward.local }).probe(timeout).await {
                    Ok(connected) => pass(format!("{} connected in {}", forward.local, ms(connected.connect))),
                    Err(failure) => fail(
                        format!("{}: {failure}", forward.local),
                        "nothing accepts on the forward: restart the ssh forward (autossh/launchd/systemd unit)",
                    ),
                }
            }
            Layer::FirstByte => {
                let (verdict, read) = gateway(forward, timeout).await;
                readiness_read = read;
                verdict
            }
            Layer::StartedReady => {
                let read = match readiness_read.take() {
                    Some(read) => read,
                    None => (readiness::Target { addr: forward.local }).probe(timeout).await,
                };
                notes = kinds::openclaw_cli_version::doctor_notes(config, &read).await;
                started_and_ready(read)
            }
            Layer::ControlUi => match (control_ui::Target { addr: forward.local }).probe(timeout).await {
                Ok(page) => pass(format!("GET / -> HTTP {} text/html in {}", page.status, ms(page.first_byte))),
                Err(failure) => fail(
                    format!("GET / -> {failure}"),
                    "the gateway answers /healthz but not its Control UI: check the gateway's logs and version on the host",
                ),
            },
            Layer::Token => token(config, forward, timeout).await,
            Layer::LoopbackOnly => loopback_only(config, timeout).await,
        };
        failed = status == Status::Fail;
        if failed && orphans_found {
            next = next.map(|next| format!("end the orphaned ssh clients below first; then {next}"));
        }
        steps.push(Step { number, name, status, evidence, next, notes });
    }
    Report { forward: forward.name.clone(), local: forward.local.to_string(), steps }
}

/// The gateway host's own list (a config with `forward = []` and a [[gateway]]): only the bind-exposure step.
pub async fn run_gateway_host(config: &Config) -> Report {
    let timeout =
        config.gateways.iter().map(|g| g.interval).min().unwrap_or(Duration::from_secs(3)).min(Duration::from_secs(3));
    let number = Layer::ALL.len() as u8;
    let (status, evidence, next) = loopback_only(config, timeout).await;
    let step = Step { number, name: Layer::LoopbackOnly.name(), status, evidence, next, notes: Vec::new() };
    Report { forward: "(gateway host)".into(), local: "-".into(), steps: vec![step] }
}

async fn ssh_host(forward: &Forward, timeout: Duration) -> Verdict {
    let Some(host) = forward.jump_host.as_ref().or(forward.ssh_host.as_ref()) else {
        return (Status::Skipped, "no ssh_host or jump_host configured for this forward".into(), None);
    };
    let which = if forward.jump_host.is_some() { "jump host" } else { "ssh host" };
    let started = std::time::Instant::now();
    let connect = async {
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to no address");
        for addr in tokio::net::lookup_host((host.host.trim_matches(['[', ']']), host.port)).await? {
            match probes::net::connect_stream(addr).await {
                Ok(stream) => {
                    probes::net::close_without_time_wait(stream);
                    return Ok(());
                }
                Err(err) => last = err,
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(())) => pass(format!("{which} {host} connected in {}", ms(started.elapsed()))),
        Ok(Err(err)) => fail(
            format!("{which} {host}: {err}"),
            "the laptop cannot reach the ssh server: check the network or VPN, then `ssh -v` to see where it stops",
        ),
        Err(_) => fail(
            format!("{which} {host}: no answer within {timeout:?}"),
            "the ssh server is unreachable (filtered or down): check the network or VPN",
        ),
    }
}

async fn session(forward: &Forward, lookup: ssh_session::Lookup, timeout: Duration) -> Verdict {
    let mut target = ssh_session::Target { lookup, ..ssh_session::Target::new(forward.local) };
    match target.probe(timeout).await {
        ssh_session::Outcome::Up(owner) if owner.same_user == Some(false) => fail(
            format!(
                "{} is held by {} pid {} of {}: not this user's ssh, so the CLI would hand another user its token",
                forward.local,
                owner.name,
                owner.pid,
                owner.user()
            ),
            "end that process (or ask its user to), then start your own tunnel",
        ),
        ssh_session::Outcome::Up(owner) => pass(format!(
            "ssh pid {} ({}; parent {} pid {}) listens on {}",
            owner.pid,
            owner.user(),
            owner.parent_name.as_deref().unwrap_or("?"),
            owner.parent_pid,
            forward.local
        )),
        ssh_session::Outcome::NoListener => fail(
            format!("nothing listens on {}", forward.local),
            "start the tunnel (`ssh -N -L ...`) or restart its autossh/launchd/systemd unit; if autossh runs, it may be reconnecting",
        ),
        ssh_session::Outcome::NotSsh(owner) if forward.trusted_owners.contains(&owner.name) => pass(format!(
            "{} pid {} ({}, trusted by trusted_owners) listens on {}",
            owner.name,
            owner.pid,
            owner.user(),
            forward.local
        )),
        ssh_session::Outcome::NotSsh(owner) => fail(
            format!("{} is held by {} pid {} ({}), not ssh", forward.local, owner.name, owner.pid, owner.user()),
            "another program took the forward's port: stop it, then restart the tunnel (the CLI would hand it its token)",
        ),
        // A listener whose owner this user cannot read is another user's process: the CLI's token would go
        // to it.
        ssh_session::Outcome::Unreadable { detail } => fail(
            format!("{} is held by a process this user cannot read ({detail}): another user's", forward.local),
            "find who holds the port (sudo lsof -iTCP -sTCP:LISTEN -P), stop it, then restart your tunnel",
        ),
        ssh_session::Outcome::Unsupported { detail } => (Status::Skipped, format!("owner unknown: {detail}"), None),
        ssh_session::Outcome::Unknown { detail } => fail(
            format!("could not tell who holds {} ({detail})", forward.local),
            "the owner lookup did not answer in time (a loaded machine?): rerun the doctor",
        ),
    }
}

fn started_and_ready(read: readiness::Outcome) -> Verdict {
    let found = match read {
        Ok(found) => found,
        Err(failure) => {
            return fail(format!("/startupz: {failure}"), "the gateway stopped answering: rerun the doctor")
        }
    };
    let uptime = |startup: &Startup| startup.uptime.map_or(String::new(), |u| format!(", up {} s", u.as_secs()));
    match (&found.startup, &found.ready) {
        (None, None) => (
            Status::Skipped,
            "the gateway has no /startupz or /readyz (a build older than mid-2026)".into(),
            None,
        ),
        (Some(startup), _) if startup.state != readiness::StartupState::Started => fail(
            format!("live but {}{}", startup.state.label(), uptime(startup)),
            "the gateway is still starting (WebSocket connects get close 1013) or draining: wait, then rerun; if it stays, read its log on the host",
        ),
        (_, Some(ready)) if !ready.ready => fail(
            format!("started but not ready; failing: {}", if ready.failing.is_empty() { "(none named)".to_owned() } else { ready.failing.join(", ") }),
            "a gateway component is failing: fix the one named (its log on the host says why)",
        ),
        (startup, _) => pass(format!(
            "started and ready{}{}",
            startup.as_ref().and_then(|s| s.version.as_deref()).map_or(String::new(), |v| format!(", version {v}")),
            startup.as_ref().map_or(String::new(), uptime)
        )),
    }
}

/// Step 4, and the `/startupz` + `/readyz` answer read for its evidence (step 5 judges it).
async fn gateway(forward: &Forward, timeout: Duration) -> (Verdict, Option<readiness::Outcome>) {
    let mut target = first_byte::Target { addr: forward.local, path: forward.health_path.clone() };
    let verdict = match target.probe(timeout).await {
        Ok(response) => {
            let read = (readiness::Target { addr: forward.local }).probe(timeout).await;
            let version = match &read {
                Ok(Readiness { startup: Some(Startup { version: Some(version), .. }), .. }) => {
                    format!(", gateway {version}")
                }
                _ => String::new(),
            };
            return (
                pass(format!(
                    "GET {} -> HTTP {} first byte in {}{version}",
                    forward.health_path,
                    response.status,
                    ms(response.first_byte)
                )),
                Some(read),
            );
        }
        Err(failure) => {
            let next = match failure.label() {
                "reset" | "empty_reply" => {
                    "ssh is up but the far side refused: is the gateway running on the host (`openclaw gateway status` there)?"
                }
                "timeout" => {
                    "the path is silently dead or the gateway hung; if ssh exits soon (ServerAlive), it is the path"
                }
                "refused" => "the forward stopped listening: restart the tunnel",
                "local_error" => {
                    "this machine could not open the connection (out of file descriptors, buffers or local ports): not the gateway; check `ulimit -n` and what holds sockets here"
                }
                _ => "something answers that is not a healthy gateway: check what listens on the host's gateway port",
            };
            fail(format!("GET {} -> {failure} ({})", forward.health_path, failure.label()), next)
        }
    };
    (verdict, None)
}

async fn loopback_only(config: &Config, timeout: Duration) -> Verdict {
    if config.gateways.is_empty() {
        return (
            Status::Skipped,
            "no [[gateway]] configured (run the doctor on the gateway host with one)".into(),
            None,
        );
    }
    let mut evidence = Vec::new();
    let mut outside_allowed = Vec::new();
    for gateway in &config.gateways {
        match (exposure::Target { port: gateway.port }).probe(timeout).await {
            Ok(found) => {
                outside_allowed.extend(found.outside(&gateway.allowed).iter().map(ToString::to_string));
                let listeners: Vec<String> = found.listeners.iter().map(ToString::to_string).collect();
                let allowed: Vec<&str> = gateway.allowed.iter().map(|scope| scope.label()).collect();
                evidence.push(format!(
                    "{} port {}: {} (allowed: {})",
                    gateway.name,
                    gateway.port,
                    listeners.join(" "),
                    allowed.join(", ")
                ));
            }
            Err(failure) => {
                return fail(
                    format!("{}: {failure}", gateway.name),
                    "run the doctor as a user who can read the socket table",
                )
            }
        }
    }
    if !outside_allowed.is_empty() {
        fail(
            format!("{}; outside the allowed scopes: {}", evidence.join("; "), outside_allowed.join(" ")),
            "the gateway listens beyond loopback where the team has not declared it: set gateway.bind = \"loopback\" in openclaw.json and restart it (status reports the configured bind, not the real one), or declare the scope in [[gateway]] allowed (private, tailnet, public)",
        )
    } else {
        pass(evidence.join("; "))
    }
}
