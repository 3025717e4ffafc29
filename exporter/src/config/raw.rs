//! The configuration as written: strings and optional keys, deserialized before any value is checked.
//!
//! One source per default: a key of a top-level section is defaulted in the embedded `default.toml` (the
//! layering always supplies it); a key of an array table (`[[forward]]`, `[[gateway]]`, `[[model_host]]`,
//! `[otlp]`, which the layering replaces whole) is defaulted here, by serde.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct RawConfig {
    pub(super) web: RawWeb,
    pub(super) scheduler: RawScheduler,
    #[serde(default)]
    pub(super) forward: Vec<RawForward>,
    #[serde(default)]
    pub(super) auth: RawAuth,
    #[serde(default)]
    pub(super) auth_tap: Vec<RawAuthTap>,
    pub(super) auth_probe: RawAuthProbe,
    #[serde(default)]
    pub(super) model_host: Vec<RawModelHost>,
    pub(super) objectives: RawObjectives,
    #[serde(default)]
    pub(super) gateway: Vec<RawGateway>,
    pub(super) otlp: Option<RawOtlp>,
    pub(super) remote_write: Option<RawRemoteWrite>,
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) cli: RawCli,
}

/// `[cli]`: the openclaw CLI this laptop runs, when it is not the one found on PATH or the usual prefixes.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCli {
    pub(super) path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawState {
    pub(super) file: Option<String>,
}

/// `[remote_write]`: absent means off (the layering supplies no default section).
#[derive(Debug, Deserialize)]
pub(super) struct RawRemoteWrite {
    pub(super) url: String,
    #[serde(default = "default_remote_write_interval")]
    pub(super) interval: String,
    pub(super) queue_dir: Option<String>,
    #[serde(default = "default_remote_write_max_bytes")]
    pub(super) max_bytes: String,
    #[serde(default = "default_remote_write_min_backoff")]
    pub(super) min_backoff: String,
    #[serde(default = "default_remote_write_max_backoff")]
    pub(super) max_backoff: String,
    pub(super) bearer_token_file: Option<String>,
    pub(super) basic_auth: Option<RawBasicAuth>,
    pub(super) tls: Option<RawClientTls>,
    #[serde(default)]
    pub(super) external_labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub(super) headers: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_auto")]
    pub(super) protocol: String,
    #[serde(default = "default_auto")]
    pub(super) histograms: String,
    #[serde(default = "default_batch_rounds")]
    pub(super) batch_rounds: u32,
}

pub(super) fn default_batch_rounds() -> u32 {
    4
}

pub(super) fn default_auto() -> String {
    "auto".into()
}

#[derive(Debug, Deserialize)]
pub(super) struct RawBasicAuth {
    pub(super) username: String,
    pub(super) password_file: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawClientTls {
    pub(super) ca_file: Option<String>,
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
}

/// The first wait after a failed send (Prometheus's own remote write starts at 30 ms; a laptop has no hurry).
pub(super) fn default_remote_write_min_backoff() -> String {
    "1s".into()
}
/// The longest wait between sends to a failing receiver: it bounds how long a receiver that came back waits
/// for a laptop's backlog (a thousand laptops retrying every 30 s are 33 requests a second).
pub(super) fn default_remote_write_max_backoff() -> String {
    "30s".into()
}
pub(super) fn default_remote_write_interval() -> String {
    "15s".into()
}
/// Measured (bench/fleet.sh): a healthy laptop's round on the default config (one forward, 244 series) is
/// ~4.1 KB snappy-compressed on disk, so 15 s rounds take ~23 MB a day and 7 days ~165 MB; 256 MiB keeps ~11 days.
/// The round account (issue 18) adds 23 series, ~20% (bench/queue_ab.py): ~28 MB a day, ~9 days.
pub(super) fn default_remote_write_max_bytes() -> String {
    "256MiB".into()
}

#[derive(Debug, Deserialize)]
pub(super) struct RawOtlp {
    pub(super) endpoint: String,
    #[serde(default = "default_service_name")]
    pub(super) service_name: String,
}

pub(super) fn default_service_name() -> String {
    "openclaw-tunnel-exporter".into()
}

#[derive(Debug, Deserialize)]
pub(super) struct RawGateway {
    pub(super) name: String,
    #[serde(default = "default_gateway_port")]
    pub(super) port: u16,
    #[serde(default = "default_exposure_interval")]
    pub(super) interval: String,
    /// The scopes a listener may bind without paging: loopback (always), private, tailnet, public.
    #[serde(default)]
    pub(super) allowed: Vec<String>,
    /// The Docker Engine's Unix socket, to name the container publishing the port (opt-in).
    pub(super) docker_socket: Option<String>,
}

pub(super) fn default_gateway_port() -> u16 {
    18789
}
pub(super) fn default_exposure_interval() -> String {
    "10s".into()
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAuth {
    pub(super) current: Option<String>,
    pub(super) rotated_at: Option<String>,
    #[serde(default)]
    pub(super) revision: Vec<RawRevision>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRevision {
    pub(super) name: String,
    /// An argon2id PHC string (what `fingerprint` prints).
    pub(super) hash: Option<String>,
    /// A legacy unsalted SHA-256 (hex): still read, with a warning.
    pub(super) sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawAuthTap {
    pub(super) forward: String,
    pub(super) listen: String,
    /// Where the tap connects: an ssh forward's address; unset, the forward's own route (required unset for a
    /// url route: the tap then speaks to that route, TLS and pin included).
    pub(super) upstream: Option<String>,
    #[serde(default)]
    pub(super) allow_non_loopback: bool,
    #[serde(default = "default_tap_max_connections")]
    pub(super) max_connections: usize,
    #[serde(default = "default_header_read_timeout")]
    pub(super) header_read_timeout: String,
    #[serde(default = "default_idle_timeout")]
    pub(super) idle_timeout: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawAuthProbe {
    pub(super) enabled: bool,
    pub(super) interval: String,
    pub(super) forwards: Option<Vec<String>>,
    pub(super) token_file: Option<String>,
    pub(super) openclaw_config: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawModelHost {
    pub(super) name: String,
    pub(super) url: String,
    #[serde(default = "default_model_interval")]
    pub(super) interval: String,
    #[serde(default = "default_model_timeout")]
    pub(super) timeout: String,
    pub(super) ca_file: Option<String>,
}

pub(super) fn default_model_interval() -> String {
    "30s".into()
}
pub(super) fn default_model_timeout() -> String {
    "5s".into()
}

#[derive(Debug, Deserialize)]
pub(super) struct RawObjectives {
    pub(super) tunnel_uptime_ratio: f64,
    pub(super) first_byte: String,
    pub(super) model_host_first_byte: String,
    pub(super) gateway_restarts_per_hour: u32,
    pub(super) gateway_event_loop_delay: String,
    pub(super) tunnel_stalls_per_hour: u32,
    pub(super) first_byte_ratio: f64,
    pub(super) ssh_restarts_per_hour: u32,
    pub(super) window: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawWeb {
    pub(super) listen: String,
    #[serde(default)]
    pub(super) allow_non_loopback: bool,
    #[serde(default)]
    pub(super) config_file: String,
    #[serde(default)]
    pub(super) enable_lifecycle: bool,
    #[serde(default)]
    pub(super) allowed_hosts: Vec<String>,
    #[serde(default = "default_web_max_connections")]
    pub(super) max_connections: usize,
    #[serde(default = "default_header_read_timeout")]
    pub(super) header_read_timeout: String,
    #[serde(default = "default_idle_timeout")]
    pub(super) idle_timeout: String,
}

pub(super) fn default_web_max_connections() -> usize {
    128
}
pub(super) fn default_header_read_timeout() -> String {
    "10s".into()
}
pub(super) fn default_idle_timeout() -> String {
    "2m".into()
}
pub(super) fn default_tap_max_connections() -> usize {
    1024
}

#[derive(Debug, Deserialize)]
pub(super) struct RawScheduler {
    pub(super) max_concurrent_probes: usize,
    pub(super) owner_lookup: String,
    pub(super) cli_url_interval: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawForward {
    pub(super) name: String,
    /// The ssh -L listener (`HOST:PORT`); or `url`, never both.
    pub(super) local: Option<String>,
    /// A direct route: `ws://HOST:PORT` or `wss://HOST[:PORT]`.
    pub(super) url: Option<String>,
    /// A `wss://` route's pinned certificate (SHA-256, in any form OpenClaw's `tlsFingerprint` takes).
    pub(super) tls_fingerprint: Option<String>,
    /// A `wss://` route's private CA (PEM).
    pub(super) ca_file: Option<String>,
    #[serde(default = "default_health_path")]
    pub(super) health_path: String,
    /// The per-forward intervals and the timeout, as written (unset: `None`); their defaults, bounds and typed
    /// fields are one table, `config::forwards::INTERVALS`.
    pub(super) syn_interval: Option<String>,
    pub(super) first_byte_interval: Option<String>,
    pub(super) readiness_interval: Option<String>,
    /// A duration or `off`; unset: [`WS_HANDSHAKE_WITH_TOKEN`] when the auth probe covers the forward,
    /// else [`WS_HANDSHAKE_WITHOUT_TOKEN`].
    pub(super) ws_handshake_interval: Option<String>,
    pub(super) hygiene_interval: Option<String>,
    pub(super) control_ui_interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) ssh_host: Option<String>,
    pub(super) jump_host: Option<String>,
    #[serde(default = "default_remote")]
    pub(super) remote: String,
    pub(super) owner: Option<String>,
    #[serde(default)]
    pub(super) trusted_owners: Vec<String>,
    /// `http://HOST:PORT`: the companion exporter inside WSL2 that vouches for the ssh behind WSL's relay.
    pub(super) wsl_companion: Option<String>,
}

pub(super) fn default_remote() -> String {
    "127.0.0.1:18789".into()
}

pub(super) fn default_health_path() -> String {
    "/healthz".into()
}
/// The WebSocket handshake probe's interval when it completes a `connect` with the auth probe's token: the
/// gateway logs nothing for it (measured on 2026.9.6).
pub(super) const WS_HANDSHAKE_WITH_TOKEN: &str = "60s";
/// Without a token the probe closes before `connect`, and the gateway logs one warning per handshake
/// ("closed before connect"): every 5 minutes is 288 lines a day, not 1,440.
pub(super) const WS_HANDSHAKE_WITHOUT_TOKEN: &str = "5m";
