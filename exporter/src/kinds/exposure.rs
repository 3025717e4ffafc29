//! The adapter of the exposure probe kind: its target, interval and timeout, what it does before a round, its logs, and what it records (through the recorder's API in [`crate::record::exposure`]).

use crate::config::Gateway;
use crate::driver::{Adapter, Round, Schedule, SpanFields};
use crate::html::{esc, state_badge};
use crate::record::status::{GatewayStatus, StatusReport};
use crate::record::Recorder;
use probes::exposure::{self, Scope};
use probes::Label;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// The recording of one gateway port's exposure checks.
pub struct ExposureKind {
    gateway: Arc<Gateway>,
    recorder: Arc<Recorder>,
}

/// Registry entry: each `[[gateway]]`'s bind exposure.
pub fn start(start: &mut super::Start<'_>) {
    for gateway in &start.config.gateways {
        let (probe, kind) = ExposureKind::new(Arc::new(gateway.clone()), start.recorder.clone());
        start.drive(probe, kind);
    }
}

impl ExposureKind {
    /// Its probe and its recording.
    pub fn new(gateway: Arc<Gateway>, recorder: Arc<Recorder>) -> (exposure::Target, ExposureKind) {
        (exposure::Target { port: gateway.port }, ExposureKind { gateway, recorder })
    }
}

impl Adapter for ExposureKind {
    type Probe = exposure::Target;
    /// Exposed or not; or why the table could not be read.
    type State = Result<bool, &'static str>;

    fn schedule(&self) -> Schedule<'_> {
        // A table read is milliseconds; five seconds is a hung read, not a slow one.
        Schedule {
            subject: ("gateway", &self.gateway.name),
            interval: self.gateway.interval,
            timeout: Duration::from_secs(5),
        }
    }

    fn handle(&mut self, round: Round, outcome: &exposure::Outcome) -> &'static str {
        match outcome {
            Ok(found) => {
                self.recorder.record_exposure(&self.gateway.name, found, &self.gateway.allowed, round.wall);
                if !found.outside(&self.gateway.allowed).is_empty() {
                    "exposed"
                } else if found.exposed() {
                    "within_allowed"
                } else {
                    "loopback_only"
                }
            }
            Err(failure) => failure.label(),
        }
    }

    fn annotate(&self, outcome: &exposure::Outcome, fields: &mut SpanFields) {
        if let Ok(found) = outcome {
            fields.loopback = Some(found.count(Scope::Loopback) as u64);
            fields.private = Some(found.count(Scope::Private) as u64);
            fields.tailnet = Some(found.count(Scope::Tailnet) as u64);
            fields.public = Some(found.count(Scope::Public) as u64);
        }
    }

    fn state(&self, outcome: &exposure::Outcome) -> Result<bool, &'static str> {
        outcome.as_ref().map(|found| !found.outside(&self.gateway.allowed).is_empty()).map_err(Label::label)
    }

    fn log_change(&self, outcome: &exposure::Outcome) {
        let (gateway, port) = (&self.gateway.name, self.gateway.port);
        match outcome {
            Ok(found) => {
                let listeners: Vec<String> = found.listeners.iter().map(ToString::to_string).collect();
                let allowed: Vec<&str> = self.gateway.allowed.iter().map(|scope| scope.label()).collect();
                let outside: Vec<String> =
                    found.outside(&self.gateway.allowed).iter().map(ToString::to_string).collect();
                if !outside.is_empty() {
                    tracing::warn!(gateway = %gateway, port, listeners = %listeners.join(" "), outside = %outside.join(" "), allowed = %allowed.join(","), "the gateway port listens beyond loopback, outside its allowed scopes");
                } else {
                    tracing::info!(gateway = %gateway, port, listeners = %listeners.join(" "), allowed = %allowed.join(","), "the gateway port listens only within its allowed scopes");
                }
            }
            Err(failure) => {
                tracing::warn!(gateway = %gateway, error = %failure, "cannot check the gateway's bind exposure")
            }
        }
    }
}

/// Its section on the status page (listed in `kinds::PAGE_SECTIONS`).
pub fn page_section(status: &StatusReport) -> String {
    let mut html = String::new();
    exposure_section(&mut html, &status.gateways);
    html
}

/// The gateways' bind exposure table, when there are any.
fn exposure_section(html: &mut String, gateways: &[GatewayStatus]) {
    if !gateways.is_empty() {
        html.push_str("<h2>Gateway bind exposure</h2><table class=\"exposure\"><tr><th>gateway</th><th>loopback</th><th>private</th><th>tailnet</th><th>public</th><th>allowed</th><th></th></tr>");
        for gateway in gateways {
            let scopes = &gateway.listen_sockets;
            let exposed = gateway.exposed_since.map(|t| t > 0.0);
            let count = |n: Option<i64>| n.map_or("–".to_owned(), |n| n.to_string());
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&gateway.gateway),
                count(scopes.loopback),
                count(scopes.private),
                count(scopes.tailnet),
                count(scopes.public),
                esc(&gateway.allowed.join(", ")),
                state_badge(exposed.map(|e| !e), "within allowed", "exposed")
            );
        }
        html.push_str("</table>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::Format;

    #[test]
    fn a_round_records_listeners_by_scope_and_when_the_port_was_first_exposed() {
        let recorder = Arc::new(Recorder::new());
        let gateway = Arc::new(Gateway {
            name: "g".into(),
            port: 18789,
            interval: Duration::from_secs(1),
            allowed: vec![Scope::Loopback, Scope::Tailnet],
        });
        let (target, mut recording) = ExposureKind::new(gateway, recorder.clone());
        assert_eq!(target.port, 18789);
        let t0 = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let round = |at| Round { wall: at, boot: Duration::ZERO };
        let loopback = Ok(exposure::Exposure { listeners: vec!["127.0.0.1:18789".parse().unwrap()] });
        let exposed = Ok(exposure::Exposure {
            listeners: vec!["127.0.0.1:18789".parse().unwrap(), "0.0.0.0:18789".parse().unwrap()],
        });
        assert_eq!(recording.handle(round(t0), &loopback), "loopback_only");
        assert_eq!(recording.handle(round(t0 + Duration::from_secs(10)), &exposed), "exposed");
        assert_eq!(recording.handle(round(t0 + Duration::from_secs(20)), &exposed), "exposed");
        assert_eq!(recording.state(&exposed), Ok(true));
        let mut fields = SpanFields::default();
        recording.annotate(&exposed, &mut fields);
        assert_eq!(
            (fields.loopback, fields.private, fields.tailnet, fields.public),
            (Some(1), Some(0), Some(0), Some(1))
        );

        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(30));
        assert_eq!(sample(&text, "openclaw_gateway_listen_sockets{gateway=\"g\",scope=\"public\"}"), Some(1.0));
        assert_eq!(sample(&text, "openclaw_gateway_listen_sockets{gateway=\"g\",scope=\"loopback\"}"), Some(1.0));
        let since = "openclaw_gateway_exposed_since_timestamp_seconds{gateway=\"g\"}";
        assert_eq!(sample(&text, since), Some(1_800_000_010.0), "the first exposed round, not the last");
        // Loopback only again: the red line resets.
        recording.handle(round(t0 + Duration::from_secs(40)), &loopback);
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(50));
        assert_eq!(sample(&text, since), Some(0.0));
        // A tailnet listener is declared: counted, exported as allowed, and no red line.
        let tailnet = Ok(exposure::Exposure {
            listeners: vec!["127.0.0.1:18789".parse().unwrap(), "100.100.1.1:18789".parse().unwrap()],
        });
        assert_eq!(recording.handle(round(t0 + Duration::from_secs(60)), &tailnet), "within_allowed");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(70));
        assert_eq!(sample(&text, since), Some(0.0));
        assert_eq!(sample(&text, "openclaw_gateway_listen_sockets{gateway=\"g\",scope=\"tailnet\"}"), Some(1.0));
        assert_eq!(sample(&text, "openclaw_gateway_bind_allowed{gateway=\"g\",scope=\"tailnet\"}"), Some(1.0));
        assert_eq!(sample(&text, "openclaw_gateway_bind_allowed{gateway=\"g\",scope=\"private\"}"), Some(0.0));
        // A LAN listener is not: it pages.
        let lan = Ok(exposure::Exposure { listeners: vec!["10.0.0.5:18789".parse().unwrap()] });
        assert_eq!(recording.handle(round(t0 + Duration::from_secs(80)), &lan), "exposed");
        let text = recorder.encode(Format::Prometheus, t0 + Duration::from_secs(90));
        assert_eq!(sample(&text, since), Some(1_800_000_080.0));
    }
}
