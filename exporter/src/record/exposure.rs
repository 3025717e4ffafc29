//! Bind exposure of a gateway port (host side): listening sockets by scope, and since when the port has
//! listened beyond loopback.

use std::time::SystemTime;

use probes::exposure::{self, Scope};
use probes::Label;

use super::families::{GatewayLabels, GatewayScopeLabels};
use super::Recorder;
use crate::clock::unix_seconds;

impl Recorder {
    /// Since when each configured gateway has listened beyond loopback (exposed ones only), for the state file.
    pub fn saved_exposures(&self) -> Vec<(String, f64)> {
        let gateways = self.index().gateways.clone();
        gateways
            .into_iter()
            .filter_map(|gateway| {
                let since = self.metrics.exposed_since.get(&GatewayLabels { gateway: gateway.clone() })?.get();
                (since > 0.0).then_some((gateway, since))
            })
            .collect()
    }

    /// Restore a gateway's exposure from the state file: the 24 h red line counts from `since`, and the
    /// timeline's spell is open from then. A loopback-only round after the restart resets both.
    pub fn restore_exposure(&self, gateway: &str, since: f64) {
        self.metrics.exposed_since.get_or_create(&GatewayLabels { gateway: gateway.to_owned() }).set(since);
        self.timeline().spell(
            "exposed",
            gateway,
            "the gateway port listens beyond loopback (since before a restart)",
            since,
        );
    }

    /// Record one read of a gateway port's listeners, judged against the scopes its team `allowed`.
    pub fn record_exposure(&self, gateway: &str, found: &exposure::Exposure, allowed: &[Scope], now: SystemTime) {
        let m = &self.metrics;
        for scope in Scope::ALL {
            let labels = GatewayScopeLabels { gateway: gateway.to_owned(), scope: scope.label() };
            m.listen_sockets.get_or_create(&labels).set(found.count(scope) as i64);
            let is_allowed = scope == Scope::Loopback || allowed.contains(&scope);
            m.bind_allowed.get_or_create(&labels).set(i64::from(is_allowed));
        }
        let outside = found.outside(allowed);
        let since = m.exposed_since.get_or_create(&GatewayLabels { gateway: gateway.to_owned() });
        let changed = match (since.get() > 0.0, !outside.is_empty()) {
            (false, true) => {
                since.set(unix_seconds(now));
                true
            }
            (true, false) => {
                since.set(0.0);
                true
            }
            _ => false,
        };
        drop(since);
        if changed {
            let mut timeline = self.timeline();
            if !outside.is_empty() {
                let listeners: Vec<String> = outside.iter().map(ToString::to_string).collect();
                let detail = format!("the gateway port listens outside its allowed scopes: {}", listeners.join(" "));
                timeline.spell("exposed", gateway, &detail, unix_seconds(now));
            } else {
                timeline.over("exposed", gateway, unix_seconds(now));
            }
        }
    }
}
