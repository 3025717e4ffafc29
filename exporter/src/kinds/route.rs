//! A forward's road to the gateway. For a route without ssh (`ws://`, `wss://`): its tunnel round's adapter
//! ([`DirectRoundKind`]: the connect and the TLS handshake, one call per round into the uptime record,
//! [`super::uptime::direct_rounds`]) and the doctor's first three layers (the host resolves, the connect, TLS
//! and the certificate). For every route: its row on the status page (the road, and a `wss://` route's
//! certificate: its SHA-256, whether it verified, when it expires, and for an unpinned one the line that pins
//! it).

use std::sync::Arc;

use probes::direct;
use probes::route::{DialFailure, Route, Transport};

use super::uptime::rounds::TunnelRound;
use super::uptime::status::CertificateStatus;
use super::uptime::UptimeRecord;
use crate::checkup::{ms, Check, Checkup, Verdict};
use crate::config::{Forward, RouteConfig};
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::{esc, state_badge};
use crate::record::status::ForwardStatus;
use crate::record::Recorder;

/// The recording of one direct route's tunnel rounds.
pub struct DirectRoundKind {
    forward: Arc<Forward>,
    recorder: Arc<Recorder>,
    uptime: Arc<UptimeRecord>,
}

impl DirectRoundKind {
    /// Its probe and its recording, with the route's counters created at zero.
    pub fn new(
        forward: Arc<Forward>,
        recorder: Arc<Recorder>,
        uptime: Arc<UptimeRecord>,
        route: Route,
    ) -> (direct::Target, DirectRoundKind) {
        uptime.create_direct_series(&forward.name, forward.transport());
        (direct::Target { route }, DirectRoundKind { forward, recorder, uptime })
    }
}

impl Adapter for DirectRoundKind {
    type Probe = direct::Target;
    /// Up (None) or the down cause (`local_error` for the exporter's own shortage).
    type State = Option<&'static str>;

    fn schedule(&self) -> Schedule<'_> {
        Schedule::forward(&self.forward, self.forward.syn_interval)
    }

    fn handle(&mut self, round: Round, outcome: &direct::Outcome) -> &'static str {
        let round = TunnelRound { at: round.wall, boot: round.boot, interval: self.forward.syn_interval };
        let verdict = self.uptime.record_direct(&self.recorder, &self.forward.name, round, outcome);
        if let Some(unobserved) = verdict.stalled {
            tracing::warn!(forward = %self.forward.name, unobserved = ?unobserved, "probe loop stalled (suspend or stop); counting the gap as unobserved");
        }
        verdict.label
    }

    fn annotate(&self, outcome: &direct::Outcome, fields: &mut SpanFields) {
        match outcome {
            Ok(reached) => {
                fields.syn = Some("ok");
                fields.connect_us = Some(reached.connect.as_micros() as u64);
                fields.tls_us = reached.tls.as_ref().map(|tls| tls.elapsed.as_micros() as u64);
            }
            Err(failure) => fields.syn = Some(failure.cause().unwrap_or("local_error")),
        }
    }

    fn state(&self, outcome: &direct::Outcome) -> Option<&'static str> {
        outcome.as_ref().err().map(|failure| failure.cause().unwrap_or("local_error"))
    }

    fn log_change(&self, outcome: &direct::Outcome) {
        let (forward, address) = (self.forward.name.as_str(), self.forward.address());
        match outcome {
            Ok(reached) => match &reached.tls {
                Some(tls) => {
                    tracing::info!(forward, route = %address, sha256 = %tls.certificate.sha256, "the gateway answers directly; its certificate verified")
                }
                None => tracing::info!(forward, route = %address, "the gateway answers directly"),
            },
            Err(failure @ DialFailure::Mismatch { .. }) => tracing::error!(
                forward, route = %address, error = %failure,
                "the gateway's address presented another certificate: the token is withheld; a CLI pinned to the same fingerprint is refused too, an unpinned one would be talking to an impostor"
            ),
            Err(failure) => tracing::warn!(
                forward, route = %address, cause = failure.cause().unwrap_or("local_error"), error = %failure,
                "the gateway is not reachable directly"
            ),
        }
    }
}

/// The route's row on the status page (the first of a forward's rows): the road, and a `wss://` route's
/// certificate.
pub fn page_row(forward: &ForwardStatus, now: f64) -> String {
    let uptime = forward.part::<super::uptime::status::UptimeStatus>();
    let Some(route) = uptime.route.as_ref() else { return String::new() };
    let transport = esc(&route.transport);
    let badge = format!("<span class=\"badge\">{transport}</span>");
    let mut said = match route.transport.as_str() {
        "ssh" => format!("{} · an ssh -L listener, owner-checked", esc(&route.address)),
        _ => format!("{} · direct, no ssh", esc(&route.address)),
    };
    if let Some(verify) = &route.verify {
        let how = match verify.as_str() {
            "pin" => format!("pinned {}", esc(route.pinned.as_deref().unwrap_or(""))),
            "ca_file" => "a private CA (ca_file) and the host name".to_owned(),
            _ => "the built-in roots and the host name".to_owned(),
        };
        said.push_str(&format!(" · verified by {how}"));
    }
    let last = route.last.as_ref();
    if let Some(last) = last.filter(|last| last.state != "up") {
        said.push_str(&format!(" · <b>{}</b>: {}", esc(&last.state), esc(last.detail.as_deref().unwrap_or(""))));
    }
    if let Some(certificate) = last.and_then(|last| last.certificate.as_ref()) {
        said.push_str(&certificate_words(certificate, now));
    }
    format!("<tr class=\"route\"><th>Route</th><td>{badge}</td><td class=\"muted\">{said}</td></tr>")
}

fn certificate_words(certificate: &CertificateStatus, now: f64) -> String {
    let verdict = state_badge(Some(certificate.verified), "certificate verified", "certificate NOT verified");
    let expiry = match certificate.not_after {
        Some(not_after) => {
            let days = (not_after as f64 - now) / 86_400.0;
            format!(" · expires {} ({days:.0} days)", crate::clock::rfc3339_seconds(not_after as f64))
        }
        None => String::new(),
    };
    let pin = match &certificate.pin_line {
        Some(line) => format!(" · pin it: <code>{}</code>", esc(line)),
        None => String::new(),
    };
    format!(" · {verdict} sha256:{}{expiry}{pin}", esc(&certificate.sha256))
}

/// Step 1 on a direct route: the gateway's host name resolves.
pub const DOCTOR_RESOLVE: (&str, Check) = ("gateway host resolves", |c| Box::pin(resolve(c)));
/// Step 2 on a direct route: a TCP connect to the gateway.
pub const DOCTOR_CONNECT: (&str, Check) = ("connect to the gateway", |c| Box::pin(connect(c)));
/// Step 3 on a direct route: TLS and the certificate (`wss://`), or whether the CLI may speak in the clear.
pub const DOCTOR_TLS: (&str, Check) = ("TLS and certificate", |c| Box::pin(tls(c)));

/// The direct route's host and port (steps 1 and 2 need no more than the config).
fn host_port(checkup: &Checkup<'_>) -> Option<(String, u16)> {
    match &checkup.forward.route {
        RouteConfig::Direct(direct) => Some((direct.host.clone(), direct.port)),
        RouteConfig::Local(_) => None,
    }
}

async fn resolve(checkup: &mut Checkup<'_>) -> Verdict {
    let Some((host, port)) = host_port(checkup) else { return Verdict::skipped("an ssh forward".into()) };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Verdict::pass(format!("{host} is an address: nothing to resolve"));
    }
    let started = std::time::Instant::now();
    let lookup = tokio::net::lookup_host((host.clone(), port));
    match tokio::time::timeout(checkup.timeout, lookup).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<String> = addrs.map(|addr| addr.ip().to_string()).collect();
            if addrs.is_empty() {
                return Verdict::fail(format!("{host} has no address"), RESOLVE_NEXT);
            }
            Verdict::pass(format!("{host} -> {} in {}", addrs.join(", "), ms(started.elapsed())))
        }
        Ok(Err(err)) => Verdict::fail(format!("{host}: {err}"), RESOLVE_NEXT),
        Err(_) => Verdict::fail(format!("{host}: no answer within {:?}", checkup.timeout), RESOLVE_NEXT),
    }
}

const RESOLVE_NEXT: &str =
    "the name does not resolve here: a tailnet name needs Tailscale up and MagicDNS on (`tailscale status`), \
     a .local name mDNS on the same LAN; or use the gateway's address";

async fn connect(checkup: &mut Checkup<'_>) -> Verdict {
    let Some((host, port)) = host_port(checkup) else { return Verdict::skipped("an ssh forward".into()) };
    // A plain connect, whatever the scheme: TLS is the next layer.
    let plain = Route::Direct(Arc::new(probes::route::Direct::ws(&host, port)));
    match plain.dial(checkup.timeout).await {
        Ok(dialed) => {
            let evidence = format!("{} connected in {}", dialed.peer, ms(dialed.connect));
            dialed.stream.close_without_time_wait();
            Verdict::pass(evidence)
        }
        Err(failure) => Verdict::fail(
            format!("{host}:{port}: {failure}"),
            "nothing accepts on the gateway's address: is the gateway running and bound beyond loopback \
             (`gateway.bind: \"lan\"` or \"tailnet\"), and does a firewall let this laptop in?",
        ),
    }
}

async fn tls(checkup: &mut Checkup<'_>) -> Verdict {
    let route = match &checkup.route {
        Ok(route) => route.clone(),
        Err(err) => return Verdict::fail(format!("the route cannot be built: {err}"), "fix the forward's ca_file"),
    };
    let Some(direct) = route.direct() else { return Verdict::skipped("an ssh forward".into()) };
    if route.transport() == Transport::Ws {
        return if probes::route::plaintext_host_allowed(direct.host()) {
            Verdict::skipped(format!(
                "{}: ws://, no TLS; the CLI speaks in the clear to a LAN or tailnet host, so the token crosses that \
                 network unencrypted",
                route.authority()
            ))
        } else {
            Verdict::fail(
                format!("ws://{} is a public host: OpenClaw's CLI refuses plaintext to it, and the exporter withholds the token", route.authority()),
                "use wss:// (gateway.tls, or Tailscale Serve), or an ssh forward",
            )
        };
    }
    let pinned = direct.verify().is_some_and(probes::route::Verify::is_pin);
    match route.dial(checkup.timeout).await {
        Ok(dialed) => {
            let Some(handshake) = dialed.tls.clone() else { return Verdict::skipped("no TLS".into()) };
            dialed.stream.close_without_time_wait();
            let sha = handshake.certificate.sha256;
            let by = if pinned { "the pin" } else { "a trusted chain and the host name" };
            let expiry = handshake
                .certificate
                .not_after
                .map(|t| format!(", expires {}", crate::clock::rfc3339_seconds(t as f64)))
                .unwrap_or_default();
            if !pinned {
                checkup.notes.push(format!("to pin this certificate: tls_fingerprint = \"sha256:{sha}\""));
            }
            Verdict::pass(format!("TLS in {}: sha256:{sha} verified by {by}{expiry}", ms(handshake.elapsed)))
        }
        Err(failure @ DialFailure::Mismatch { .. }) => Verdict::fail(
            format!("{}: {failure}", route.authority()),
            if pinned {
                "the gateway's address presented another certificate than the pinned one: if the gateway's \
                 certificate was renewed on purpose, pin the new one here and in the CLI's gateway.remote.tlsFingerprint; \
                 otherwise something else answers at that address: send it nothing"
            } else {
                "no trusted root signed the presented certificate: set ca_file to the gateway's private CA, or pin \
                 its own certificate with tls_fingerprint; if neither should be needed, something else answers there"
            },
        ),
        Err(failure @ DialFailure::Tls { certificate: Some(_), .. }) => Verdict::fail(
            format!("{}: {failure}", route.authority()),
            "the certificate has expired or names another host: renew it for this name, or reach the gateway by \
             the name it carries",
        ),
        Err(failure) if failure.cause() == Some("tls_failed") => Verdict::fail(
            format!("{}: {failure}", route.authority()),
            "no TLS handshake here: is gateway.tls enabled on the gateway (or the TLS front, e.g. Tailscale Serve, \
             running)?",
        ),
        Err(failure) => Verdict::fail(
            format!("{}: {failure}", route.authority()),
            "the connect failed by the time TLS was tried: rerun the doctor",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(route: serde_json::Value) -> ForwardStatus {
        ForwardStatus::new("gw".into(), [("route".to_owned(), route)].into_iter().collect())
    }

    #[test]
    fn the_row_names_the_road_the_certificate_and_for_an_unpinned_one_the_line_that_pins_it() {
        let sha = "ab".repeat(32);
        let row = page_row(
            &status(serde_json::json!({
                "transport": "wss", "address": "wss://gw.tail1.ts.net/", "verify": "roots",
                "last": {"state": "up", "certificate": {"sha256": sha, "not_after": 1_900_000_000, "verified": true,
                    "pin_line": format!("tls_fingerprint = \"sha256:{sha}\"")}}
            })),
            1_800_000_000.0,
        );
        for said in [
            "wss",
            "wss://gw.tail1.ts.net/ · direct, no ssh",
            "the built-in roots",
            "certificate verified",
            "pin it:",
            "expires 2030-03-17",
        ] {
            assert!(row.contains(said), "{said} in {row}");
        }
        let mismatch = page_row(
            &status(serde_json::json!({
                "transport": "wss", "address": "wss://10.0.0.5:18789/", "verify": "pin", "pinned": "sha256:00",
                "last": {"state": "certificate_mismatch", "detail": "presented <b>x</b>",
                    "certificate": {"sha256": sha, "verified": false}}
            })),
            1_800_000_000.0,
        );
        assert!(
            mismatch.contains("certificate NOT verified") && mismatch.contains("certificate_mismatch"),
            "{mismatch}"
        );
        assert!(mismatch.contains("presented &lt;b&gt;x&lt;/b&gt;") && !mismatch.contains("pin it"), "{mismatch}");
        let ssh = page_row(&status(serde_json::json!({"transport": "ssh", "address": "127.0.0.1:18789"})), 0.0);
        assert!(ssh.contains("an ssh -L listener, owner-checked") && !ssh.contains("certificate"), "{ssh}");
    }
}
