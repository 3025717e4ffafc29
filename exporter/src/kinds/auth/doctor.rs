//! The auth kind's step in the doctor's list (`Auth::DOCTOR`, at `Layer::Auth`: step 7).

use crate::checkup::{Checkup, DoctorStep, Verdict};
use crate::token_sources;
use probes::{ssh_session, Label};

/// The gate of the checked forward's route, one per sender (each keeps its own).
fn gate(checkup: &Checkup<'_>) -> probes::gate::CredentialGate {
    let index = ssh_session::OwnerIndex::default();
    let session = |addr| crate::kinds::tunnel::session_target(addr, checkup.config, &index);
    probes::gate::CredentialGate::for_route(&checkup.route(), session, checkup.forward.trusted_owners.clone())
}

/// The doctor's step 7: the token this machine holds, sent only to our own user's ssh, over HTTP (the revision
/// and whether it is accepted) and over the CLI's own WebSocket `connect` (the gateway's reason when it refuses).
pub const DOCTOR_STEP: DoctorStep = DoctorStep::new("token accepted and current", |c| Box::pin(doctor_check(c)));

async fn doctor_check(checkup: &mut Checkup<'_>) -> Verdict {
    use probes::Probe;
    let (config, timeout) = (checkup.config, checkup.timeout);
    let locations = config.auth_probe.token_locations();
    let tokens = tokio::task::spawn_blocking(move || token_sources::read(&locations)).await.unwrap_or_default();
    let Some(source) = tokens.effective() else {
        return Verdict::fail(
            "no gateway token in any source the openclaw CLI reads".into(),
            "set gateway.remote.token in ~/.openclaw/openclaw.json or OPENCLAW_GATEWAY_TOKEN",
        );
    };
    let Some(token) = source.token.clone() else {
        return Verdict::fail(
            format!("{} names no token", source.name),
            "set gateway.remote.token in ~/.openclaw/openclaw.json or OPENCLAW_GATEWAY_TOKEN",
        );
    };
    // The revision first (argon2id, ~85 ms): nothing may stand between the gate's verdict and the send.
    let registry = std::sync::Arc::new(config.auth.registry.clone());
    let revision = registry.revision_of(&probes::auth_tap::credential::Credential::token(token.expose())).await;
    let disagree =
        if tokens.agree() { String::new() } else { format!("; sources disagree: {}", tokens.disagreeing().join(", ")) };
    // The token goes only where the route's gate allows: our own user's ssh (or a process the config trusts),
    // a verified wss:// connection, or a ws:// LAN host. The probe checks before the connect, and the
    // connection itself before it writes the token. Each sender has its own gate (the probe keeps it).
    let route = checkup.route();
    let mut target =
        probes::auth_probe::Target { route: route.clone(), token: token.clone(), gate: Some(gate(checkup)) };
    let answer = target.probe(timeout).await;
    // The CLI's own path: a WebSocket connect with the same token, for the gateway's reason when it refuses
    // (the HTTP answer is a bare 401; a scope, pairing or protocol refusal shows only here).
    let refusal = match &answer {
        Ok(_) => {
            let withheld = probes::ws_handshake::Withheld::default();
            let mut handshake = probes::ws_handshake::Target { route, token, gate: Some(gate(checkup)), withheld };
            match handshake.probe(timeout).await {
                Ok(probes::ws_handshake::Handshake {
                    connect: probes::ws_handshake::Connect::Refused(reason), ..
                }) => Some(reason),
                _ => None,
            }
        }
        Err(_) => None,
    };
    let refused = |reason: probes::refusal::Refusal| format!("; the WebSocket connect is refused: {}", reason.label());
    match answer {
        Ok(probes::auth_probe::Answer::Accepted(status)) => match (&config.auth.current, refusal) {
            (Some(current), _) if *current != revision => Verdict::fail(
                format!("accepted (HTTP {status}) but the token is revision {revision}, not the current {current}{disagree}"),
                "the gateway still takes an old token: finish the rotation on the gateway, then update this machine",
            ),
            (_, Some(reason)) => Verdict::fail(
                format!("HTTP accepts the token (HTTP {status}, revision {revision}){}{disagree}", refused(reason)),
                reason.fix(),
            ),
            _ => Verdict::pass(format!("accepted (HTTP {status}), revision {revision}, from {}{disagree}", source.name)),
        },
        Ok(probes::auth_probe::Answer::Rejected(status)) => Verdict::fail(
            format!(
                "the gateway rejects the token from {} (revision {revision}, HTTP {status}){}{disagree}",
                source.name,
                refusal.map(refused).unwrap_or_default()
            ),
            match refusal {
                Some(reason) => reason.fix(),
                None => "configuration management missed this machine: install the current token where the CLI reads it",
            },
        ),
        Err(probes::auth_probe::Failure::Withheld { why, .. }) => Verdict::fail(
            format!("token not sent: {why}"),
            "the token goes only to this user's ssh, a verified wss:// gateway or a ws:// LAN host: fix the layer \
             the gate names first",
        ),
        Err(failure) => Verdict::fail(format!("POST /tools/invoke -> {failure}"), "the gateway stopped answering: rerun the doctor"),
    }
}
