//! What remote write pushes: every family a bundled dashboard panel or alert rule reads, unchanged, and a few
//! more worth their bytes ([`PUSHED`]); the rest stays on `/metrics` for a scraper and the laptop's own page
//! ([`LEFT_ON_METRICS`]). Every family the exporter registers is in exactly one of the two (a unit test), so a new
//! family is a decision, not a silent cost: a round is bytes every laptop sends every interval to one store.
//!
//! Measured on a healthy laptop (one forward through a real ssh forward, the default probes, the auth probe;
//! `tests/tests/remote_write_cost.rs`): 8.7 KB a round with everything pushed (470 series, 225 of them the
//! probe lag's classic buckets), which is what this table cuts.

/// Families pushed, as the exposition names them, each with why.
pub const PUSHED: &[(&str, &str)] = &[
    ("openclaw_cli_build_info", "tunnel dashboard"),
    ("openclaw_exporter_build_info", "fleet dashboard"),
    ("openclaw_exporter_config_reloads_total", "alert OpenclawExporterReloadFailing"),
    ("openclaw_exporter_probe_lag_p99_seconds", "tunnel dashboard: the exporter's own health, one series a kind"),
    ("openclaw_exporter_remote_write_bytes_total", "one series: what each laptop costs the store"),
    ("openclaw_exporter_remote_write_last_success_timestamp_seconds", "fleet dashboard, alert"),
    ("openclaw_exporter_remote_write_protocol_info", "one series: which laptops fell back, and to what"),
    ("openclaw_exporter_remote_write_queue_bytes", "fleet dashboard"),
    ("openclaw_exporter_remote_write_rejected_batches_total", "fleet dashboard, alert"),
    ("openclaw_exporter_remote_write_retries_total", "fleet dashboard"),
    ("openclaw_exporter_remote_write_round_sequence", "the store counts lost rounds from it"),
    ("openclaw_exporter_remote_write_rounds_total", "fleet dashboard, alert"),
    ("openclaw_gateway_auth_failures_total", "KPI 3: dashboards, alerts"),
    ("openclaw_gateway_bind_allowed", "tunnel dashboard"),
    ("openclaw_gateway_cli_url_matches", "one series: the CLI pointing elsewhere is a common cause of a dead CLI"),
    ("openclaw_gateway_connect_refusals_total", "KPI 3: dashboards, alerts"),
    ("openclaw_gateway_control_ui_up", "one series: a broken Control UI, seen fleet-wide"),
    ("openclaw_gateway_down_seconds_total", "tunnel dashboard"),
    ("openclaw_gateway_event_loop_delay_p99_seconds", "tunnel dashboard, alert"),
    ("openclaw_gateway_event_loop_utilization", "tunnel dashboard"),
    ("openclaw_gateway_exposed_since_timestamp_seconds", "alert OpenclawGatewayExposed"),
    ("openclaw_gateway_first_byte_good_total", "KPI 2: objective, burn-rate alerts"),
    ("openclaw_gateway_first_byte_seconds", "KPI 2: dashboards, alerts"),
    ("openclaw_gateway_listen_sockets", "tunnel dashboard, alert"),
    ("openclaw_gateway_observed_first_byte_seconds", "tunnel dashboard"),
    ("openclaw_gateway_old_revision_failures_total", "KPI 3: alert"),
    ("openclaw_gateway_probe_attempts_total", "KPI 2: objective, alerts"),
    ("openclaw_gateway_probe_failures_total", "tunnel dashboard"),
    ("openclaw_gateway_ready", "tunnel dashboard, alert"),
    ("openclaw_gateway_restarts_total", "tunnel dashboard, alert"),
    ("openclaw_gateway_startup_state", "tunnel dashboard, alert"),
    ("openclaw_gateway_tap_hijacked", "alert OpenclawTapHijacked"),
    ("openclaw_gateway_token_local_revision", "KPI 3: dashboards"),
    ("openclaw_gateway_token_revision_current", "KPI 3: dashboards, alerts"),
    ("openclaw_gateway_token_revision_older", "KPI 3: dashboards, alerts"),
    ("openclaw_gateway_token_rotation_timestamp_seconds", "KPI 3: dashboards, alerts"),
    ("openclaw_gateway_token_sources_agree", "tunnel dashboard, alert"),
    ("openclaw_gateway_up", "dashboards, alerts"),
    ("openclaw_gateway_ws_closes_total", "tunnel dashboard, alert"),
    ("openclaw_gateway_ws_handshake_failures_total", "tunnel dashboard"),
    ("openclaw_gateway_ws_handshake_seconds", "tunnel dashboard"),
    ("openclaw_model_host_first_byte_seconds", "KPI 2: dashboards, alert"),
    ("openclaw_model_host_phase_seconds", "tunnel dashboard"),
    ("openclaw_model_host_probe_attempts_total", "tunnel dashboard, alert"),
    ("openclaw_model_host_probe_failures_total", "tunnel dashboard, alert"),
    ("openclaw_objective_first_byte_ratio", "alert thresholds"),
    ("openclaw_objective_first_byte_seconds", "alert thresholds"),
    ("openclaw_objective_gateway_event_loop_delay_seconds", "alert thresholds"),
    ("openclaw_objective_gateway_restarts_per_hour", "alert thresholds"),
    ("openclaw_objective_model_host_first_byte_seconds", "alert thresholds"),
    ("openclaw_objective_ssh_restarts_per_hour", "alert thresholds"),
    ("openclaw_objective_tunnel_stalls_per_hour", "alert thresholds"),
    ("openclaw_objective_tunnel_uptime_ratio", "alert thresholds"),
    ("openclaw_objective_window_seconds", "alert thresholds"),
    ("openclaw_tunnel_down_seconds_total", "tunnel dashboard"),
    ("openclaw_tunnel_forward_hijacked", "alert OpenclawForwardHijacked"),
    ("openclaw_tunnel_gateway_build_info", "tunnel dashboard"),
    ("openclaw_tunnel_resume_seconds", "tunnel dashboard"),
    ("openclaw_tunnel_route_info", "dashboards"),
    ("openclaw_tunnel_ssh_orphans", "tunnel dashboard, alert"),
    ("openclaw_tunnel_ssh_session_changes_total", "tunnel dashboard, alert"),
    ("openclaw_tunnel_ssh_session_up", "KPI 1: dashboards"),
    ("openclaw_tunnel_syn_attempts_total", "tunnel dashboard"),
    ("openclaw_tunnel_syn_successes_total", "tunnel dashboard"),
    ("openclaw_tunnel_tls_certificate_expiry_timestamp_seconds", "tunnel dashboard, alert"),
    ("openclaw_tunnel_tls_certificate_verified", "tunnel dashboard, alert"),
    ("openclaw_tunnel_tls_handshake_seconds", "tunnel dashboard"),
    ("openclaw_tunnel_tls_pinned", "tunnel dashboard, alert"),
    ("openclaw_tunnel_unobserved_seconds_total", "KPI 1: dashboards"),
    ("openclaw_tunnel_up_checks_total", "KPI 1: dashboards, alerts"),
    ("openclaw_tunnel_up_successes_total", "KPI 1: dashboards, alerts"),
    ("openclaw_tunnel_uptime_ratio", "KPI 1: tunnel dashboard"),
];

/// Families left on `/metrics` (a scraper and the laptop's status page have them), each with why it is not
/// worth its bytes in every round.
#[cfg_attr(not(test), allow(dead_code))] // read by the unit test that every family is decided
pub const LEFT_ON_METRICS: &[(&str, &str)] = &[
    ("openclaw_exporter_connections_closed_total", "the web's own guard: local diagnostics"),
    (
        "openclaw_exporter_listen_failures_total",
        "local diagnostics (a held web address cannot be scraped, but is logged)",
    ),
    ("openclaw_exporter_other_user_connections_total", "local diagnostics"),
    ("openclaw_exporter_probe_lag_seconds", "225 classic series; pushed as the p99 gauge"),
    ("openclaw_exporter_remote_write_fallbacks_total", "4 series; protocol_info is pushed"),
    ("openclaw_exporter_remote_write_oldest_queued_timestamp_seconds", "the store sees the backlog as late rounds"),
    ("openclaw_exporter_remote_write_queue_errors_total", "its losses are in rounds_total{result=\"dropped\"}"),
    ("openclaw_exporter_remote_write_rounds_queued", "taken - sent - dropped - left, from rounds_total"),
    ("openclaw_exporter_remote_write_samples_total", "rounds_total accounts for every round"),
    ("openclaw_exporter_web_requests_refused_total", "local diagnostics"),
    ("openclaw_gateway_auth_requests_total", "the failures are pushed; the requests are the probe's schedule"),
    ("openclaw_gateway_build_info", "the gateway host's own; the laptop pushes tunnel_gateway_build_info"),
    ("openclaw_gateway_control_ui_failures_total", "reasons for the laptop's page; control_ui_up is pushed"),
    ("openclaw_gateway_credential_withheld_total", "local diagnostics: why a token was not sent"),
    ("openclaw_gateway_endpoint", "the gateway host's own"),
    ("openclaw_gateway_event_loop_degraded", "derived from the pushed p99 and its objective"),
    ("openclaw_gateway_ready_failing", "the reasons behind the pushed ready"),
    ("openclaw_gateway_restart_expected_seconds", "local diagnostics"),
    ("openclaw_gateway_shutdown_notices_total", "restarts_total is pushed"),
    ("openclaw_gateway_start_time_seconds", "restarts_total is pushed"),
    ("openclaw_tunnel_connect_seconds", "25 series; connect to an ssh -L listener proves nothing, the first byte does"),
    ("openclaw_tunnel_owner_lookups_total", "local diagnostics"),
    ("openclaw_tunnel_ssh_option_risk", "the laptop's page and doctor; orphans are pushed"),
    ("openclaw_tunnel_ssh_session_state", "7 series; ssh_session_up is pushed, the cause is on the laptop's page"),
    ("openclaw_tunnel_unobserved_rounds_total", "unobserved_seconds_total is pushed"),
];

/// The latency histograms' classic buckets pushed: 100 us to 10 s and `+Inf`, 17 of 23. `/metrics` keeps all
/// of them; below 100 us nothing answers through a forward (loopback ssh adds ~50 us each way), and above 10 s
/// (past any probe's default timeout, 3 s) a quantile reads "over 10 s" either way. Each kept bucket's value is
/// the same as on `/metrics`, so a query of pushed data by `le` reads what a scrape reads; 12 series a round fewer
/// for a forward's first byte and handshake.
pub fn pushed_latency_bucket(upper_bound: f64) -> bool {
    upper_bound >= 1e-4 && (upper_bound <= 10.0 || upper_bound.is_infinite() || upper_bound >= f64::MAX)
}

/// Whether remote write pushes the family `name` (as the exposition names it).
pub fn pushed(name: &str) -> bool {
    PUSHED.binary_search_by(|(family, _)| family.cmp(&name)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every family the exporter registers, named as remote write sees it (`_total`, `_info` as exposed): the
    /// `families!` tables' (noted as a recorder with every kind's record registers them), the recorder's build
    /// info and the round account's collector.
    fn registered() -> BTreeSet<String> {
        let _ = crate::record::Recorder::with_kinds(&crate::kinds::records(), Vec::new());
        let mut names = crate::record::families::names_for_tests::all();
        let slot = crate::remote_write::QueueSlot::default();
        slot.activate_for_test();
        let recorder = crate::record::Recorder::with_kinds(&[], vec![Box::new(slot.collector())]);
        let families = recorder.metric_families(std::time::SystemTime::now());
        names.extend(families.into_iter().map(|family| family.name).filter(|name| {
            ["openclaw_exporter_build_info", "openclaw_exporter_remote_write_rounds"]
                .iter()
                .any(|p| name.starts_with(p))
        }));
        names
    }

    #[test]
    fn every_registered_family_is_pushed_or_left_on_metrics_and_never_both() {
        let decided: BTreeSet<String> =
            PUSHED.iter().chain(LEFT_ON_METRICS).map(|(name, _)| (*name).to_owned()).collect();
        assert_eq!(decided.len(), PUSHED.len() + LEFT_ON_METRICS.len(), "a family in both tables");
        let registered = registered();
        let undecided: Vec<_> = registered.difference(&decided).collect();
        assert!(undecided.is_empty(), "families neither pushed nor left on /metrics: {undecided:?}");
        let unknown: Vec<_> = decided.difference(&registered).collect();
        assert!(unknown.is_empty(), "names in the tables that no family has: {unknown:?}");
        assert!(PUSHED.windows(2).all(|w| w[0].0 < w[1].0), "PUSHED is sorted (a binary search reads it)");
    }

    /// Every family a bundled dashboard panel or alert rule reads is pushed.
    #[test]
    fn every_family_the_dashboards_and_alerts_read_is_pushed() {
        let read = [
            include_str!("../../../dashboards/openclaw-tunnel.json"),
            include_str!("../../../dashboards/openclaw-fleet.json"),
            include_str!("../../../alerts/openclaw.rules.yml"),
        ];
        let registered = registered();
        for text in read {
            for (start, _) in text.match_indices("openclaw_") {
                let name: String =
                    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix).filter(|base| registered.contains(*base)))
                    .unwrap_or(&name);
                if registered.contains(family) {
                    assert!(pushed(family), "{family} is read by a dashboard or an alert but not pushed");
                }
            }
        }
    }
}
