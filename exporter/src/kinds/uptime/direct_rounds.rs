//! Tunnel rounds of a route without ssh (`ws://`, `wss://`): a round is up when the connect succeeds and, for
//! `wss://`, the TLS handshake completes and the certificate verifies. The same ledger, buckets, unobserved
//! time and families as an ssh forward's rounds; the ssh-only families (the session, its owner, the hijack
//! gauge, orphans) are absent for such a route, not 0, and its own are the route's info, the handshake's time
//! and the certificate's verdict and expiry.

use probes::route::{DialFailure, Transport};
use probes::{direct, Label};

use super::rounds::{RoundFacts, TunnelRound, TunnelVerdict, DOWN_CAUSES, THROUGH_WSL_DOWN_CAUSES};
use super::status::DirectStatus;
use super::UptimeRecord;
use crate::config::{Forward, RouteConfig, TlsVerify};
use crate::record::families::{ForwardLabels, ForwardTransportLabels};
use crate::record::Recorder;

/// Why a down round of a direct route was down (the `cause` label): the connect failed (the name did not
/// resolve, nothing listened, no answer), the TLS handshake failed (or the certificate expired, or names
/// another host), or the certificate is not the trusted one (another than the pinned one, or signed by no
/// trusted root).
pub const DIRECT_DOWN_CAUSES: [&str; 3] = ["connect_failed", "tls_failed", "certificate_mismatch"];

/// The causes a route of `transport` can be down by.
pub fn down_causes(transport: Transport) -> &'static [&'static str] {
    match transport {
        Transport::Ssh => &DOWN_CAUSES,
        Transport::Ws => &DIRECT_DOWN_CAUSES[..1],
        Transport::Wss => &DIRECT_DOWN_CAUSES,
    }
}

/// The causes `forward` can be down by: its transport's, and for an ssh forward with a `wsl_companion` also
/// the relay's.
pub fn forward_down_causes(forward: &Forward) -> &'static [&'static str] {
    match forward.transport() {
        Transport::Ssh if forward.wsl_companion.is_some() => &THROUGH_WSL_DOWN_CAUSES,
        transport => down_causes(transport),
    }
}

impl UptimeRecord {
    /// The route's own series, set when a config is applied: its info, and for `wss://` whether it pins;
    /// every series of another road's kind removed (a reload that turned an ssh forward into a direct route
    /// leaves no ssh series behind, and the other way round).
    pub(super) fn set_route_series(&self, forward: &Forward) {
        let m = &self.families;
        let name = forward.name.as_str();
        let transport = forward.transport();
        m.route_info.retain(|labels| labels.forward != name || labels.transport == transport.label());
        let info = ForwardTransportLabels { forward: name.to_owned(), transport: transport.label() };
        m.route_info.get_or_create(&info).set(1);
        let labels = ForwardLabels { forward: name.to_owned() };
        let causes = forward_down_causes(forward);
        m.tunnel_down_seconds.retain(|labels| labels.forward != name || causes.contains(&labels.cause));
        if transport != Transport::Ssh {
            m.ssh_session_up.remove(&labels);
            m.ssh_session_changes.remove(&labels);
            m.forward_hijacked.remove(&labels);
            m.ssh_session_state.retain(|labels| labels.forward != name);
            m.owner_lookups.retain(|labels| labels.forward != name);
        }
        match &forward.route {
            RouteConfig::Direct(direct) if direct.tls.is_some() => {
                let pinned = matches!(direct.tls, Some(TlsVerify::Pin(_)));
                m.tls_pinned.get_or_create(&labels).set(i64::from(pinned));
            }
            _ => {
                m.tls_pinned.remove(&labels);
                m.tls_certificate_verified.remove(&labels);
                m.tls_certificate_expiry.remove(&labels);
                m.tls_handshake_seconds.remove(&labels);
            }
        }
    }

    /// A direct route's tunnel counters at zero (so `rate()` works before the first round), and its state
    /// ready for a new generation's rounds.
    pub fn create_direct_series(&self, forward: &str, transport: Transport) {
        self.create_round_series(forward, down_causes(transport));
        self.with_forward(forward, |state| state.last_round_boot = None);
    }

    /// One tunnel round of a direct route, everything it records: the gap before it (unobserved), the
    /// exporter's own shortage (unobserved, not down), the connect's counts, the handshake's time, the
    /// certificate's verdict and expiry, up or down by cause. Returns what the adapter logs.
    pub fn record_direct(
        &self,
        recorder: &Recorder,
        forward: &str,
        round: TunnelRound,
        outcome: &direct::Outcome,
    ) -> TunnelVerdict {
        let (observed, stalled) = self.since_last_round(recorder, forward, round);
        let cause = match outcome {
            Err(failure) => match failure.cause() {
                Some(cause) => Some(cause),
                None => {
                    // The exporter's own shortage: the gateway was never asked. Neither up nor down.
                    self.record_round_unobserved(forward, "local_error");
                    return TunnelVerdict { label: "unobserved", stalled };
                }
            },
            Ok(_) => None,
        };
        self.record_certificate(forward, outcome);
        // A round whose TLS failed did connect.
        let connected = matches!(
            outcome,
            Ok(_) | Err(DialFailure::Tls { .. } | DialFailure::TlsTimeout | DialFailure::Mismatch { .. })
        );
        let connect_time = outcome.as_ref().ok().map(|reached| reached.connect);
        let facts = RoundFacts {
            at: round.at,
            boot: round.boot,
            connected,
            connect_time,
            up: outcome.is_ok(),
            cause: cause.unwrap_or(""),
        };
        let last = DirectStatus::of(outcome);
        let up = self.record_round(recorder, forward, facts, |state| {
            state.last_direct = Some(last);
            None
        });
        let label = if up {
            "up"
        } else {
            self.record_tunnel_down(forward, cause.unwrap_or("connect_failed"), observed);
            "down"
        };
        TunnelVerdict { label, stalled }
    }

    /// The certificate's verdict and expiry, and the handshake's time: verified 1 on a good handshake, 0 when a
    /// presented certificate did not verify; a handshake that failed before any certificate changes neither.
    fn record_certificate(&self, forward: &str, outcome: &direct::Outcome) {
        let m = &self.families;
        let labels = ForwardLabels { forward: forward.to_owned() };
        let (certificate, verified) = match outcome {
            Ok(reached) => match &reached.tls {
                Some(handshake) => {
                    m.tls_handshake_seconds.get_or_create(&labels).observe(handshake.elapsed.as_secs_f64());
                    (&handshake.certificate, true)
                }
                None => return,
            },
            Err(failure) => match failure.presented() {
                Some(certificate) => (certificate, false),
                None => return,
            },
        };
        m.tls_certificate_verified.get_or_create(&labels).set(i64::from(verified));
        if let Some(not_after) = certificate.not_after {
            m.tls_certificate_expiry.get_or_create(&labels).set(not_after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;
    use probes::route::{Certificate, Fingerprint, Handshake};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const PIN: [u8; 32] = [0xab; 32];

    /// A recorder with the uptime record, a config with a pinned `wss://` route named `gw` applied.
    fn pinned_route() -> (std::sync::Arc<Recorder>, std::sync::Arc<UptimeRecord>, crate::config::Config) {
        let (recorder, uptime) = super::super::tests::recorder();
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        let toml = format!(
            "[[forward]]\nname = \"gw\"\nurl = \"wss://10.200.0.2:28789\"\ntls_fingerprint = \"{}\"\n",
            Fingerprint(PIN)
        );
        std::fs::write(file.path(), toml).unwrap();
        let config = crate::config::Config::load(Some(file.path())).unwrap();
        recorder.apply_config(&config);
        uptime.create_direct_series("gw", Transport::Wss);
        (recorder, uptime, config)
    }

    fn certificate(sha: [u8; 32]) -> Certificate {
        Certificate { sha256: Fingerprint(sha), not_after: Some(1_900_000_000) }
    }

    fn reached() -> direct::Outcome {
        let tls = Handshake { elapsed: Duration::from_micros(900), certificate: certificate(PIN) };
        Ok(direct::Reached { connect: Duration::from_micros(200), tls: Some(tls) })
    }

    fn series(name: &str) -> String {
        format!("{name}{{forward=\"gw\"}}")
    }

    #[test]
    fn a_direct_route_is_up_on_a_verified_handshake_and_down_by_its_cause_with_no_ssh_series() {
        let (recorder, uptime, _) = pinned_route();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let round = |at: u64| TunnelRound {
            at: t0 + Duration::from_secs(at),
            boot: Duration::from_secs(at),
            interval: Duration::from_secs(1),
        };
        assert_eq!(uptime.record_direct(&recorder, "gw", round(1), &reached()).label, "up");
        let impostor = Err(DialFailure::Mismatch { detail: "another".into(), certificate: certificate([1; 32]) });
        assert_eq!(uptime.record_direct(&recorder, "gw", round(2), &impostor).label, "down");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(3));
        assert_eq!(sample(&text, &series("openclaw_tunnel_up_checks_total")), Some(2.0));
        assert_eq!(sample(&text, &series("openclaw_tunnel_up_successes_total")), Some(1.0));
        assert_eq!(sample(&text, &series("openclaw_tunnel_syn_successes_total")), Some(2.0), "both connected");
        assert_eq!(sample(&text, &series("openclaw_tunnel_tls_certificate_verified")), Some(0.0));
        assert_eq!(sample(&text, &series("openclaw_tunnel_tls_certificate_expiry_timestamp_seconds")), Some(1.9e9));
        assert_eq!(sample(&text, &series("openclaw_tunnel_tls_pinned")), Some(1.0));
        assert_eq!(sample(&text, &series("openclaw_tunnel_tls_handshake_seconds_count")), Some(1.0));
        let down = |cause: &str| format!("openclaw_tunnel_down_seconds_total{{forward=\"gw\",cause=\"{cause}\"}}");
        assert_eq!(sample(&text, &down("certificate_mismatch")), Some(1.0));
        assert_eq!(sample(&text, &down("tls_failed")), Some(0.0));
        assert_eq!(sample(&text, &down("no_ssh")), None, "an ssh cause is not this route's");
        assert_eq!(sample(&text, "openclaw_tunnel_route_info{forward=\"gw\",transport=\"wss\"}"), Some(1.0));
        for ssh_only in
            ["openclaw_tunnel_ssh_session", "openclaw_tunnel_owner_lookups", "openclaw_tunnel_forward_hijacked"]
        {
            assert!(
                !text.lines().any(|line| line.starts_with(ssh_only) && line.contains("\"gw\"")),
                "{ssh_only} in:\n{text}"
            );
        }
        // A handshake that fails before any certificate says nothing of it: verified stays as it was.
        let reset = Err(DialFailure::Tls { detail: "reset".into(), certificate: None });
        assert_eq!(uptime.record_direct(&recorder, "gw", round(3), &reset).label, "down");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(4));
        assert_eq!(sample(&text, &series("openclaw_tunnel_tls_certificate_verified")), Some(0.0));
        assert_eq!(sample(&text, &down("tls_failed")), Some(1.0));
        assert_eq!(uptime.record_direct(&recorder, "gw", round(4), &reached()).label, "up");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(5));
        assert_eq!(sample(&text, &series("openclaw_tunnel_tls_certificate_verified")), Some(1.0));
    }

    #[test]
    fn a_stopped_exporter_on_a_direct_route_counts_the_gap_unobserved_not_down() {
        let (recorder, uptime, _) = pinned_route();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |seconds: u64| TunnelRound {
            at: t0 + Duration::from_secs(seconds),
            boot: Duration::from_secs(seconds),
            interval: Duration::from_secs(1),
        };
        uptime.record_direct(&recorder, "gw", at(1), &reached());
        let verdict = uptime.record_direct(&recorder, "gw", at(12), &reached());
        assert_eq!(verdict.stalled, Some(Duration::from_secs(10)));
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(13));
        assert_eq!(sample(&text, &series("openclaw_tunnel_unobserved_seconds_total")), Some(10.0));
        let down = "openclaw_tunnel_down_seconds_total{forward=\"gw\",cause=\"connect_failed\"}";
        assert_eq!(sample(&text, down), Some(0.0));
        let local = Err(DialFailure::LocalError { detail: "EMFILE".into() });
        assert_eq!(uptime.record_direct(&recorder, "gw", at(13), &local).label, "unobserved");
    }

    #[test]
    fn a_reload_that_turns_an_ssh_forward_into_a_direct_route_leaves_no_ssh_series() {
        let (recorder, uptime) = super::super::tests::recorder();
        let mut config = crate::config::Config::load(None).unwrap();
        recorder.apply_config(&config);
        let name = config.forwards[0].name.clone();
        uptime.create_tunnel_series(&name, &DOWN_CAUSES);
        let syn = Ok(probes::syn::Connected { connect: Duration::from_micros(30) });
        let session = probes::ssh_session::Outcome::Up(super::super::rounds::tests::owner("ssh"));
        let round =
            TunnelRound { at: SystemTime::now(), boot: Duration::from_secs(1), interval: Duration::from_secs(1) };
        uptime.record_tunnel(&recorder, &name, round, &[], &syn, &session);
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        assert!(text.contains(&format!("openclaw_tunnel_ssh_session_up{{forward=\"{name}\"}} 1")), "{text}");
        assert!(text.contains(&format!("openclaw_tunnel_route_info{{forward=\"{name}\",transport=\"ssh\"}} 1")));
        config.forwards[0].route = crate::config::RouteConfig::Direct(crate::config::DirectRoute {
            url: "ws://10.0.0.5:18789/".into(),
            host: "10.0.0.5".into(),
            port: 18789,
            tls: None,
        });
        recorder.apply_config(&config);
        let text = recorder.encode(Format::Prometheus, SystemTime::now());
        for gone in [
            "openclaw_tunnel_ssh_session",
            "openclaw_tunnel_owner_lookups",
            "openclaw_tunnel_forward_hijacked",
            "openclaw_tunnel_tls",
        ] {
            assert!(!text.lines().any(|line| line.starts_with(gone)), "{gone} left in:\n{text}");
        }
        assert!(text.contains(&format!("openclaw_tunnel_route_info{{forward=\"{name}\",transport=\"ws\"}} 1")));
        assert!(!text.contains("transport=\"ssh\""), "{text}");
        assert!(!text.contains("cause=\"no_ssh\""), "{text}");
    }
}
