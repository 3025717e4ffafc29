//! The tunnel kind's doctor steps 1-3: the ssh server reachable, this user's ssh (or WSL's relay, vouched for by
//! its companion) owning the forward's listener, and a connect to it.

use super::session_target;
use crate::checkup::{ms, Checkup, DoctorStep, Verdict};
use crate::config::Forward;
use probes::{ssh_session, syn, Probe};

/// The doctor's first three layers: the ssh server reachable, this user's ssh owning the forward, the SYN.
pub const DOCTOR_SSH_HOST: DoctorStep = DoctorStep::new("ssh host reachable", |c| Box::pin(ssh_host(c)));
/// Step 2: the session's owner, as the credential gate judges it.
pub const DOCTOR_SESSION: DoctorStep = DoctorStep::new("ssh owns the local forward", |c| Box::pin(session(c)));
/// Step 3: a connect to the forward's listener.
pub const DOCTOR_SYN: DoctorStep = DoctorStep::new("SYN to the local forward", |c| Box::pin(connect(c)));

async fn ssh_host(checkup: &mut Checkup<'_>) -> Verdict {
    let (forward, timeout) = (checkup.forward, checkup.timeout);
    let Some(host) = forward.jump_host.as_ref().or(forward.ssh_host.as_ref()) else {
        return Verdict::skipped("no ssh_host or jump_host configured for this forward".into());
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
        Ok(Ok(())) => Verdict::pass(format!("{which} {host} connected in {}", ms(started.elapsed()))),
        Ok(Err(err)) => Verdict::fail(
            format!("{which} {host}: {err}"),
            "the laptop cannot reach the ssh server: check the network or VPN, then `ssh -v` to see where it stops",
        ),
        Err(_) => Verdict::fail(
            format!("{which} {host}: no answer within {timeout:?}"),
            "the ssh server is unreachable (filtered or down): check the network or VPN",
        ),
    }
}

async fn session(checkup: &mut Checkup<'_>) -> Verdict {
    let forward = checkup.forward;
    let Some(local) = forward.local() else { return Verdict::skipped("no ssh on this route".into()) };
    let mut target = session_target(local, checkup.config, &ssh_session::OwnerIndex::default());
    match target.probe(checkup.timeout).await {
        ssh_session::Outcome::Up(owner) if owner.same_user == Some(false) => Verdict::fail(
            format!(
                "{} is held by {} pid {} of {}: not this user's ssh, so the CLI would hand another user its token",
                local,
                owner.name,
                owner.pid,
                owner.user()
            ),
            "end that process (or ask its user to), then start your own tunnel",
        ),
        ssh_session::Outcome::Up(owner) => Verdict::pass(format!(
            "ssh pid {} ({}; parent {} pid {}) listens on {}",
            owner.pid,
            owner.user(),
            owner.parent_name.as_deref().unwrap_or("?"),
            owner.parent_pid,
            local
        )),
        ssh_session::Outcome::NoListener => Verdict::fail(
            format!("nothing listens on {}", local),
            "start the tunnel (`ssh -N -L ...`) or restart its autossh/launchd/systemd unit; if autossh runs, it may be reconnecting",
        ),
        ssh_session::Outcome::NotSsh(owner) if forward.trusted_owners.contains(&owner.name) => {
            Verdict::pass(format!(
                "{} pid {} ({}, trusted by trusted_owners) listens on {}",
                owner.name,
                owner.pid,
                owner.user(),
                local
            ))
        }
        ssh_session::Outcome::NotSsh(owner) => Verdict::fail(
            format!("{} is held by {} pid {} ({}), not ssh", local, owner.name, owner.pid, owner.user()),
            "another program took the forward's port: stop it, then restart the tunnel (the CLI would hand it its token)",
        ),
        // A listener whose owner this user cannot read is another user's process: the CLI's token would go
        // to it.
        ssh_session::Outcome::Unreadable { detail } => Verdict::fail(
            format!("{} is held by a process this user cannot read ({detail}): another user's", local),
            "find who holds the port (sudo lsof -iTCP -sTCP:LISTEN -P), stop it, then restart your tunnel",
        ),
        ssh_session::Outcome::WslRelay { relay, companion } => through_wsl(local, forward, &relay, &companion),
        ssh_session::Outcome::Unsupported { detail } => Verdict::skipped(format!("owner unknown: {detail}")),
        ssh_session::Outcome::Unknown { detail } => Verdict::fail(
            format!("could not tell who holds {} ({detail})", local),
            "the owner lookup did not answer in time (a loaded machine?): rerun the doctor",
        ),
    }
}

/// The session step through WSL's relay: the chain from Windows' listener to the ssh inside WSL2, link by
/// link, and what breaks it.
fn through_wsl(
    local: std::net::SocketAddr,
    forward: &Forward,
    relay: &ssh_session::Owner,
    companion: &ssh_session::wsl::Companion,
) -> Verdict {
    use ssh_session::wsl::Companion;
    let at = forward.wsl_companion.map_or("no wsl_companion configured".to_owned(), |at| format!("http://{at}"));
    let chain = format!(
        "{local} on Windows is held by WSL's relay ({} pid {}, {}), which carries each connection to port {} inside          WSL2, where the ssh -L must listen; the companion exporter there ({at})",
        relay.name,
        relay.pid,
        relay.user(),
        local.port()
    );
    match companion {
        Companion::Vouches { ssh_pid } => Verdict::pass(format!(
            "{chain} says its own ssh{} owns that port",
            ssh_pid.map_or(String::new(), |pid| format!(" (pid {pid})"))
        )),
        Companion::NotConfigured | Companion::NotAsked => Verdict::fail(
            format!("{chain}: nothing vouches for the ssh inside"),
            "run the exporter inside WSL2 beside the ssh (the Linux build, the same forward), and set wsl_companion = \"http://127.0.0.1:PORT\" (its web.listen) on this forward",
        ),
        Companion::SshDown { state } => Verdict::fail(
            format!("{chain} says no ssh of its user owns that port (its session state: {state})"),
            "inside WSL2, start the tunnel again (`ssh -N -L ...`, its autossh or systemd unit); the relay outlives the ssh, so the port still accepts",
        ),
        Companion::Unwatched => Verdict::fail(
            format!("{chain} watches no ssh forward on port {}", local.port()),
            "give the companion inside WSL2 the same forward (local = \"127.0.0.1:PORT\"), or point wsl_companion at the exporter that watches it",
        ),
        Companion::Unreachable(why) => Verdict::fail(
            format!("{chain} cannot be read: {why}"),
            "start the exporter inside WSL2 (WSL stops an idle VM 15-20 s after its last client: keep a process running there, e.g. its systemd unit); check that interop and localhost forwarding are on (.wslconfig, /etc/wsl.conf)",
        ),
    }
}

async fn connect(checkup: &mut Checkup<'_>) -> Verdict {
    let Some(local) = checkup.forward.local() else { return Verdict::skipped("no ssh on this route".into()) };
    match (syn::Target { addr: local }).probe(checkup.timeout).await {
        Ok(connected) => Verdict::pass(format!("{local} connected in {}", ms(connected.connect))),
        Err(failure) => Verdict::fail(
            format!("{local}: {failure}"),
            "nothing accepts on the forward: restart the ssh forward (autossh/launchd/systemd unit)",
        ),
    }
}
