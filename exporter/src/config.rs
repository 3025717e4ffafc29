//! Configuration: an embedded default, then a TOML file (`--config`), then `OPENCLAW_EXPORTER__SECTION__KEY`
//! environment variables, layered by the `config` crate.
//!
//! Loading never stops at the first problem: unknown keys (found by `serde_ignored`), wrong types (located
//! by `serde_path_to_error`) and bad values (checked here) are all collected, each naming where it came
//! from, its key and its value, so one `check-config` run shows everything to fix.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::web_security::WebSecurity;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The environment variable prefix; `__` separates the section from the key.
pub const ENV_PREFIX: &str = "OPENCLAW_EXPORTER";

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The web listener.
    pub web: Web,
    /// Scheduler limits.
    pub scheduler: Scheduler,
    /// The ssh -L forwards to probe, with unique names.
    pub forwards: Vec<Forward>,
    /// The token revision registry.
    pub auth: Auth,
    /// In-path auth taps.
    pub auth_taps: Vec<AuthTap>,
    /// The active auth probe.
    pub auth_probe: AuthProbe,
    /// Model APIs to probe (host side).
    pub model_hosts: Vec<ModelHost>,
    /// Objectives exported for the alert rules.
    pub objectives: Objectives,
    /// Gateways on this host whose bind exposure is checked.
    pub gateways: Vec<Gateway>,
    /// Where probe spans go, when set (off by default).
    pub otlp: Option<Otlp>,
    /// Where the uptime buckets are saved across restarts (off when unset).
    pub state_file: Option<PathBuf>,
}

/// OTLP/HTTP trace export: each probe run is a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Otlp {
    /// The collector's traces URL, e.g. http://127.0.0.1:4318/v1/traces.
    pub endpoint: String,
    /// The service.name resource attribute.
    pub service_name: String,
}

/// A gateway running on this host (host side): its port's listeners are classified by scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    /// The `gateway` label.
    pub name: String,
    /// The gateway's port.
    pub port: u16,
    /// How often the socket table is read.
    pub interval: Duration,
}

/// The token revision registry: names and salted hashes (or legacy SHA-256 fingerprints), never tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// The revision configured as current.
    pub current: Option<String>,
    /// When it became current, if configured.
    pub rotated_at: Option<std::time::SystemTime>,
    /// Names and their verifiers.
    pub registry: probes::auth_tap::Registry,
}

/// One in-path auth tap.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthTap {
    /// The forward label of its events.
    pub forward: String,
    /// Where the CLI connects.
    pub listen: SocketAddr,
    /// Where the tap connects (the ssh forward, or the gateway).
    pub upstream: SocketAddr,
}

/// The active auth probe: POST /tools/invoke with the laptop's own token.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthProbe {
    /// How often (default 1m).
    pub interval: Duration,
    /// Forwards probed (default all; empty when disabled).
    pub forwards: Vec<String>,
    /// An extra token source: a file holding the token.
    pub token_file: Option<PathBuf>,
    /// The openclaw config file (default $OPENCLAW_CONFIG_PATH or ~/.openclaw/openclaw.json).
    pub openclaw_config: Option<PathBuf>,
}

/// One model API probed over HTTPS.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelHost {
    /// The `model_host` label.
    pub name: String,
    /// The URL requested.
    pub url: url::Url,
    /// How often.
    pub interval: Duration,
    /// Per probe.
    pub timeout: Duration,
    /// An extra CA bundle (PEM) trusted besides the built-in roots.
    pub ca_file: Option<PathBuf>,
}

/// Objectives, exported as gauges so alert rules read thresholds from one place.
#[derive(Debug, Clone, PartialEq)]
pub struct Objectives {
    /// Tunnel uptime objective, e.g. 0.99.
    pub tunnel_uptime_ratio: f64,
    /// First-byte latency objective through the forward.
    pub first_byte: Duration,
    /// First-byte latency objective of model hosts.
    pub model_host_first_byte: Duration,
}

/// Where /metrics is served.
#[derive(Debug, Clone, PartialEq)]
pub struct Web {
    /// The listen address; loopback unless `allow_non_loopback` is set.
    pub listen: SocketAddr,
    /// TLS and basic auth from `web.config_file` (exporter-toolkit format), when set.
    pub security: Option<Arc<WebSecurity>>,
}

/// Scheduler limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    /// How many probes may run at once across all forwards.
    pub max_concurrent_probes: usize,
    /// How the owner of a forward's listener is found (`procfs` on Linux, `listeners` everywhere).
    pub owner_lookup: probes::ssh_session::Lookup,
}

/// One laptop-side ssh -L forward.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// The `forward` label value.
    pub name: String,
    /// The ssh -L listener.
    pub local: SocketAddr,
    /// The gateway's unauthenticated health path.
    pub health_path: String,
    /// How often a tunnel round (SYN + SSH session) runs.
    pub syn_interval: Duration,
    /// How often the first-byte probe runs.
    pub first_byte_interval: Duration,
    /// The longest any probe of this forward may take (capped at its interval, so rounds never overlap).
    pub timeout: Duration,
    /// The ssh server (the Mac) as `host:port`, for the doctor and the routing row.
    pub ssh_host: Option<String>,
    /// The jump host (`-J`) as `host:port`, when there is one.
    pub jump_host: Option<String>,
    /// The forward's remote end, `host:port` as seen from the ssh server (the -L target).
    pub remote: String,
    /// Who owns this forward (a person or team), for the routing row.
    pub owner: Option<String>,
}

/// Every problem found in a configuration, one per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The problems, each naming its source, key and value.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration problem(s):", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    web: RawWeb,
    scheduler: RawScheduler,
    #[serde(default)]
    forward: Vec<RawForward>,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    auth_tap: Vec<RawAuthTap>,
    auth_probe: RawAuthProbe,
    #[serde(default)]
    model_host: Vec<RawModelHost>,
    objectives: RawObjectives,
    #[serde(default)]
    gateway: Vec<RawGateway>,
    otlp: Option<RawOtlp>,
    #[serde(default)]
    state: RawState,
}

#[derive(Debug, Default, Deserialize)]
struct RawState {
    file: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawOtlp {
    endpoint: String,
    #[serde(default = "default_service_name")]
    service_name: String,
}

fn default_service_name() -> String {
    "openclaw-tunnel-exporter".into()
}

#[derive(Debug, Deserialize)]
struct RawGateway {
    name: String,
    #[serde(default = "default_gateway_port")]
    port: u16,
    #[serde(default = "default_exposure_interval")]
    interval: String,
}

fn default_gateway_port() -> u16 {
    18789
}
fn default_exposure_interval() -> String {
    "10s".into()
}

#[derive(Debug, Default, Deserialize)]
struct RawAuth {
    current: Option<String>,
    rotated_at: Option<String>,
    #[serde(default)]
    revision: Vec<RawRevision>,
}

#[derive(Debug, Deserialize)]
struct RawRevision {
    name: String,
    /// An argon2id PHC string (what `fingerprint` prints).
    hash: Option<String>,
    /// A legacy unsalted SHA-256 (hex): still read, with a warning.
    sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawAuthTap {
    forward: String,
    listen: String,
    upstream: String,
    #[serde(default)]
    allow_non_loopback: bool,
}

#[derive(Debug, Deserialize)]
struct RawAuthProbe {
    enabled: bool,
    interval: String,
    forwards: Option<Vec<String>>,
    token_file: Option<String>,
    openclaw_config: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawModelHost {
    name: String,
    url: String,
    #[serde(default = "default_model_interval")]
    interval: String,
    #[serde(default = "default_model_timeout")]
    timeout: String,
    ca_file: Option<String>,
}

fn default_model_interval() -> String {
    "30s".into()
}
fn default_model_timeout() -> String {
    "5s".into()
}

#[derive(Debug, Deserialize)]
struct RawObjectives {
    tunnel_uptime_ratio: f64,
    first_byte: String,
    model_host_first_byte: String,
}

#[derive(Debug, Deserialize)]
struct RawWeb {
    listen: String,
    #[serde(default)]
    allow_non_loopback: bool,
    #[serde(default)]
    config_file: String,
}

#[derive(Debug, Deserialize)]
struct RawScheduler {
    max_concurrent_probes: usize,
    #[serde(default = "default_owner_lookup")]
    owner_lookup: String,
}

fn default_owner_lookup() -> String {
    "auto".into()
}

#[derive(Debug, Deserialize)]
struct RawForward {
    name: String,
    local: String,
    #[serde(default = "default_health_path")]
    health_path: String,
    #[serde(default = "default_syn_interval")]
    syn_interval: String,
    #[serde(default = "default_first_byte_interval")]
    first_byte_interval: String,
    #[serde(default = "default_timeout")]
    timeout: String,
    ssh_host: Option<String>,
    jump_host: Option<String>,
    #[serde(default = "default_remote")]
    remote: String,
    owner: Option<String>,
}

fn default_remote() -> String {
    "127.0.0.1:18789".into()
}

fn default_health_path() -> String {
    "/healthz".into()
}
fn default_syn_interval() -> String {
    "1s".into()
}
fn default_first_byte_interval() -> String {
    "5s".into()
}
fn default_timeout() -> String {
    "3s".into()
}

/// Says where a key's value came from, for error messages.
struct Origins<'a> {
    file: Option<&'a Path>,
}

impl Origins<'_> {
    fn of(&self, key: &str) -> String {
        let top = key.split(['.', '[']).collect::<Vec<_>>();
        let env_name = format!("{ENV_PREFIX}__{}", top.join("__").to_uppercase());
        if std::env::var_os(&env_name).is_some() {
            return format!("environment variable {env_name}");
        }
        match self.file {
            Some(path) => path.display().to_string(),
            None => "embedded default".into(),
        }
    }
}

impl Config {
    /// What is accepted but should change: revisions still on an unsalted SHA-256 fingerprint.
    pub fn warnings(&self) -> Vec<String> {
        self.auth
            .registry
            .legacy_names()
            .map(|name| {
                format!(
                    "auth.revision \"{name}\": an unsalted sha256 fingerprint; anyone who reads this config can test \
                     guesses of a short token in seconds: replace it with the `hash = ` line `openclaw-tunnel-exporter \
                     fingerprint` prints"
                )
            })
            .collect()
    }

    /// Load the embedded default, then `file` if given, then the environment, and validate the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let origins = Origins { file };
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError {
                    problems: vec![format!("{}: cannot read the config file: not found or not a file", path.display())],
                });
            }
            builder = builder.add_source(config::File::from(PathBuf::from(path)).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX).prefix_separator("__").separator("__").try_parsing(true),
        );
        let merged = builder.build().map_err(|e| one_problem(file, e))?;
        let value: serde_json::Value = merged.try_deserialize().map_err(|e| one_problem(file, e))?;

        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        let raw: Result<RawConfig, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
            &value,
            &mut |path: serde_ignored::Path<'_>| unknown.push(path.to_string()),
        ));
        for key in unknown {
            let key = bracket_indices(&key);
            problems.push(format!("{}: key `{key}`: unknown key", origins.of(&key)));
        }
        let raw = match raw {
            Ok(raw) => raw,
            Err(err) => {
                let key = err.path().to_string();
                problems.push(format!("{}: key `{key}`: {}", origins.of(&key), err.inner()));
                return Err(ConfigError { problems });
            }
        };
        let config = validate(raw, &origins, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }
}

fn one_problem(file: Option<&Path>, err: config::ConfigError) -> ConfigError {
    let source = file.map(|p| p.display().to_string()).unwrap_or_else(|| "configuration".into());
    ConfigError { problems: vec![format!("{source}: {err}")] }
}

/// Collects problems while turning raw strings into typed values.
struct Checker<'a> {
    origins: &'a Origins<'a>,
    problems: &'a mut Vec<String>,
}

impl Checker<'_> {
    fn problem(&mut self, key: &str, value: &dyn fmt::Display, what: &str) {
        self.problems.push(format!("{}: key `{key}` = \"{value}\": {what}", self.origins.of(key)));
    }

    fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse::<SocketAddr>().unwrap_or_else(|err| {
            self.problem(key, &value, &format!("not an IP:port address ({err})"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// `host` or `host:port` (port 22 when absent); returns `host:port`.
    fn host_port(&mut self, key: &str, value: &str) -> String {
        let (host, port) = match value.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host, port.parse::<u16>().ok()),
            _ => (value, Some(22)),
        };
        let valid_host = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b));
        match port {
            Some(port) if valid_host && port != 0 => format!("{host}:{port}"),
            _ => {
                self.problem(key, &value, "must be host or host:port");
                value.to_owned()
            }
        }
    }

    fn loopback_addr(&mut self, key: &str, value: &str, allow_non_loopback: bool, flag: &str) -> SocketAddr {
        let addr = self.addr(key, value);
        if !addr.ip().is_loopback() && !allow_non_loopback {
            self.problem(
                key,
                &value,
                &format!("not a loopback address; set {flag} = true to listen beyond this machine"),
            );
        }
        addr
    }

    fn duration(&mut self, key: &str, value: &str, min: Duration, max: Duration) -> Duration {
        match humantime::parse_duration(value) {
            Ok(d) if d >= min && d <= max => d,
            Ok(_) => {
                let range = format!(
                    "must be between {} and {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                );
                self.problem(key, &value, &range);
                min.max(Duration::from_secs(1))
            }
            Err(err) => {
                self.problem(key, &value, &format!("not a duration like 1s or 500ms ({err})"));
                min.max(Duration::from_secs(1))
            }
        }
    }

    fn label(&mut self, key: &str, value: &str, seen: &mut HashSet<String>, what: &str) {
        if !is_label_safe(value) {
            self.problem(key, &value, "must be 1-64 characters of A-Z a-z 0-9 _ . -");
        } else if !seen.insert(value.to_owned()) {
            self.problem(key, &value, &format!("duplicate {what} name"));
        }
    }
}

const PROBE_MIN: Duration = Duration::from_millis(10);
const PROBE_MAX: Duration = Duration::from_secs(3600);

fn validate(raw: RawConfig, origins: &Origins<'_>, problems: &mut Vec<String>) -> Config {
    let mut c = Checker { origins, problems };
    let listen = c.loopback_addr("web.listen", &raw.web.listen, raw.web.allow_non_loopback, "web.allow_non_loopback");
    let security =
        (!raw.web.config_file.is_empty()).then(|| match WebSecurity::load(Path::new(&raw.web.config_file)) {
            Ok(security) => Some(Arc::new(security)),
            Err(web_problems) => {
                c.problem("web.config_file", &raw.web.config_file, &web_problems.join("; "));
                None
            }
        });
    if raw.scheduler.max_concurrent_probes == 0 {
        c.problem("scheduler.max_concurrent_probes", &0, "must be at least 1");
    }
    let owner_lookup = owner_lookup(&mut c, &raw.scheduler.owner_lookup);

    // The gateway Mac has no forward of its own: `forward = []` with a [[gateway]] (or a [[model_host]]).
    if raw.forward.is_empty() && raw.gateway.is_empty() && raw.model_host.is_empty() {
        c.problem("forward", &"[]", "at least one [[forward]] is required (or a [[gateway]] or [[model_host]])");
    }
    let mut names = HashSet::new();
    let mut forwards = Vec::new();
    for (index, forward) in raw.forward.into_iter().enumerate() {
        let key = |field: &str| format!("forward[{index}].{field}");
        c.label(&key("name"), &forward.name, &mut names, "forward");
        let local = c.addr(&key("local"), &forward.local);
        if local.port() == 0 && forward.local.parse::<SocketAddr>().is_ok() {
            c.problem(&key("local"), &forward.local, "port 0 is not a forward's port");
        }
        if !forward.health_path.starts_with('/') || forward.health_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            c.problem(
                &key("health_path"),
                &forward.health_path,
                "must start with / and contain no spaces or control characters",
            );
        }
        forwards.push(Forward {
            local,
            health_path: forward.health_path,
            syn_interval: c.duration(&key("syn_interval"), &forward.syn_interval, PROBE_MIN, PROBE_MAX),
            first_byte_interval: c.duration(
                &key("first_byte_interval"),
                &forward.first_byte_interval,
                PROBE_MIN,
                PROBE_MAX,
            ),
            timeout: c.duration(&key("timeout"), &forward.timeout, PROBE_MIN, PROBE_MAX),
            ssh_host: forward.ssh_host.map(|host| c.host_port(&key("ssh_host"), &host)),
            jump_host: forward.jump_host.map(|host| c.host_port(&key("jump_host"), &host)),
            remote: c.host_port(&key("remote"), &forward.remote),
            owner: forward.owner,
            name: forward.name,
        });
    }

    let auth = validate_auth(raw.auth, &mut c);
    let mut taps = Vec::new();
    let mut tap_listens = HashSet::new();
    for (index, tap) in raw.auth_tap.into_iter().enumerate() {
        let key = |field: &str| format!("auth_tap[{index}].{field}");
        if !names.contains(&tap.forward) {
            c.problem(&key("forward"), &tap.forward, "names no configured [[forward]]");
        }
        let listen = c.loopback_addr(&key("listen"), &tap.listen, tap.allow_non_loopback, &key("allow_non_loopback"));
        if !tap_listens.insert(listen) {
            c.problem(&key("listen"), &tap.listen, "another auth_tap listens there");
        }
        let upstream = c.addr(&key("upstream"), &tap.upstream);
        if upstream == listen {
            c.problem(&key("upstream"), &tap.upstream, "the tap would connect to itself");
        }
        taps.push(AuthTap { forward: tap.forward, listen, upstream });
    }

    let probed = match (raw.auth_probe.enabled, raw.auth_probe.forwards) {
        (false, _) => Vec::new(),
        (true, Some(listed)) => listed,
        (true, None) => forwards.iter().map(|f| f.name.clone()).collect(),
    };
    for (index, forward) in probed.iter().enumerate() {
        if !names.contains(forward) {
            c.problem(&format!("auth_probe.forwards[{index}]"), forward, "names no configured [[forward]]");
        }
    }
    let auth_probe = AuthProbe {
        interval: c.duration(
            "auth_probe.interval",
            &raw.auth_probe.interval,
            Duration::from_secs(1),
            Duration::from_secs(86400),
        ),
        forwards: probed,
        token_file: raw.auth_probe.token_file.map(PathBuf::from),
        openclaw_config: raw.auth_probe.openclaw_config.map(PathBuf::from),
    };

    let mut model_names = HashSet::new();
    let mut model_hosts = Vec::new();
    for (index, host) in raw.model_host.into_iter().enumerate() {
        let key = |field: &str| format!("model_host[{index}].{field}");
        c.label(&key("name"), &host.name, &mut model_names, "model_host");
        let url = match url::Url::parse(&host.url) {
            Ok(url) if matches!(url.scheme(), "https" | "http") && url.host_str().is_some() => url,
            Ok(_) => {
                c.problem(&key("url"), &host.url, "must be an http:// or https:// URL with a host");
                url::Url::parse("https://invalid.invalid/").expect("literal URL")
            }
            Err(err) => {
                c.problem(&key("url"), &host.url, &format!("not a URL ({err})"));
                url::Url::parse("https://invalid.invalid/").expect("literal URL")
            }
        };
        if let Some(ca) = &host.ca_file {
            if !Path::new(ca).is_file() {
                c.problem(&key("ca_file"), ca, "no such file");
            }
        }
        model_hosts.push(ModelHost {
            url,
            interval: c.duration(&key("interval"), &host.interval, PROBE_MIN, PROBE_MAX),
            timeout: c.duration(&key("timeout"), &host.timeout, PROBE_MIN, PROBE_MAX),
            ca_file: host.ca_file.map(PathBuf::from),
            name: host.name,
        });
    }

    let objectives = Objectives {
        tunnel_uptime_ratio: {
            let ratio = raw.objectives.tunnel_uptime_ratio;
            if !(0.0..=1.0).contains(&ratio) {
                c.problem("objectives.tunnel_uptime_ratio", &ratio, "must be between 0 and 1");
            }
            ratio
        },
        first_byte: c.duration(
            "objectives.first_byte",
            &raw.objectives.first_byte,
            Duration::from_micros(1),
            PROBE_MAX,
        ),
        model_host_first_byte: c.duration(
            "objectives.model_host_first_byte",
            &raw.objectives.model_host_first_byte,
            Duration::from_micros(1),
            PROBE_MAX,
        ),
    };

    let mut gateway_names = HashSet::new();
    let mut gateways = Vec::new();
    for (index, gateway) in raw.gateway.into_iter().enumerate() {
        let key = |field: &str| format!("gateway[{index}].{field}");
        c.label(&key("name"), &gateway.name, &mut gateway_names, "gateway");
        if gateway.port == 0 {
            c.problem(&key("port"), &0, "port 0 is not a gateway's port");
        }
        gateways.push(Gateway {
            interval: c.duration(&key("interval"), &gateway.interval, PROBE_MIN, PROBE_MAX),
            port: gateway.port,
            name: gateway.name,
        });
    }

    let otlp = raw.otlp.map(|otlp| {
        match url::Url::parse(&otlp.endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => c.problem("otlp.endpoint", &otlp.endpoint, "must be an http:// or https:// URL (OTLP over HTTP)"),
        }
        Otlp { endpoint: otlp.endpoint, service_name: otlp.service_name }
    });

    let state_file = raw.state.file.map(PathBuf::from);
    if let Some(file) = &state_file {
        if file.is_dir() {
            c.problem("state.file", &file.display(), "is a directory; name a file");
        }
    }

    Config {
        state_file,
        otlp,
        gateways,
        web: Web { listen, security: security.flatten() },
        scheduler: Scheduler { max_concurrent_probes: raw.scheduler.max_concurrent_probes, owner_lookup },
        forwards,
        auth,
        auth_taps: taps,
        auth_probe,
        model_hosts,
        objectives,
    }
}

/// `auto` (this OS's default), or a lookup this OS can run.
fn owner_lookup(c: &mut Checker<'_>, value: &str) -> probes::ssh_session::Lookup {
    use probes::ssh_session::Lookup;
    let platform_default = Lookup::platform_default();
    if value == "auto" {
        return platform_default;
    }
    match Lookup::ALL.into_iter().find(|lookup| lookup.as_str() == value) {
        Some(lookup) if lookup.available() => lookup,
        Some(_) => {
            c.problem("scheduler.owner_lookup", &value, "not available on this OS; use \"auto\" or \"listeners\"");
            platform_default
        }
        None => {
            c.problem("scheduler.owner_lookup", &value, "must be \"auto\", \"procfs\" (Linux) or \"listeners\"");
            platform_default
        }
    }
}

fn validate_auth(raw: RawAuth, c: &mut Checker<'_>) -> Auth {
    use probes::auth_tap::credential;
    let mut names = HashSet::new();
    let mut registry = probes::auth_tap::Registry::new();
    for (index, revision) in raw.revision.into_iter().enumerate() {
        let key = |field: &str| format!("auth.revision[{index}].{field}");
        c.label(&key("name"), &revision.name, &mut names, "revision");
        if matches!(revision.name.as_str(), "unknown" | "none") {
            c.problem(&key("name"), &revision.name, "reserved label value");
        }
        // The values are meant to be hashes, but a token pasted by mistake must not be echoed.
        match (revision.hash, revision.sha256) {
            (Some(phc), None) => match credential::parse_hash(&phc) {
                Ok(phc) => registry.add_hashed(revision.name, phc),
                Err(err) => c.problem(&key("hash"), &"<redacted>", &format!("{err} (see `openclaw-tunnel-exporter fingerprint`)")),
            },
            (None, Some(hex)) => match credential::from_hex(&hex.to_ascii_lowercase()) {
                Some(fingerprint) => registry.add_sha256(revision.name, fingerprint),
                None => c.problem(
                    &key("sha256"),
                    &"<redacted>",
                    "must be 64 hex digits; better, replace it with the `hash = ` line `openclaw-tunnel-exporter fingerprint` prints",
                ),
            },
            (Some(_), Some(_)) => c.problem(&key("sha256"), &"<redacted>", "give hash or sha256, not both"),
            (None, None) => c.problem(&key("hash"), &"<missing>", "required (see `openclaw-tunnel-exporter fingerprint`)"),
        }
    }
    if let Some(current) = &raw.current {
        if !names.contains(current) {
            c.problem("auth.current", current, "names no [[auth.revision]]");
        }
    }
    let rotated_at = raw.rotated_at.as_ref().and_then(|text| match humantime::parse_rfc3339_weak(text) {
        Ok(at) => Some(at),
        Err(err) => {
            c.problem("auth.rotated_at", text, &format!("not an RFC 3339 time like 2026-11-20T09:00:00Z ({err})"));
            None
        }
    });
    Auth { current: raw.current, rotated_at, registry }
}

/// `forward.1.bogus` (serde_ignored's spelling) -> `forward[1].bogus` (serde_path_to_error's and ours).
fn bracket_indices(path: &str) -> String {
    let mut key = String::new();
    for segment in path.split('.').filter(|s| *s != "?") {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

/// Label values must stay short and printable whatever the config says.
fn is_label_safe(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn the_embedded_default_has_one_forward_on_loopback() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.forwards.len(), 1);
        assert_eq!(config.forwards[0].name, "default");
        assert_eq!(config.forwards[0].local, "127.0.0.1:18789".parse().unwrap());
        assert!(config.web.listen.ip().is_loopback());
    }

    #[test]
    fn a_file_replaces_the_default_forwards_and_keeps_unset_sections() {
        let f = file(
            "[[forward]]\nname = \"mac-ap1\"\nlocal = \"127.0.0.1:28789\"\nsyn_interval = \"2s\"\n\
             [[forward]]\nname = \"mac-eu1\"\nlocal = \"127.0.0.1:28790\"\n",
        );
        let config = Config::load(Some(f.path())).unwrap();
        let names: Vec<_> = config.forwards.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["mac-ap1", "mac-eu1"]);
        assert_eq!(config.forwards[0].syn_interval, Duration::from_secs(2));
        assert_eq!(config.forwards[1].timeout, Duration::from_secs(3));
        assert_eq!(config.web.listen, "127.0.0.1:19789".parse().unwrap());
    }

    #[test]
    fn every_problem_is_reported_with_file_key_and_value() {
        let f = file(
            "[web]\nlisten = \"0.0.0.0:9999\"\nlisten_extra = 1\n\
             [[forward]]\nname = \"a\"\nlocal = \"localhost:x\"\ntimeout = \"3 parsecs\"\n\
             [[forward]]\nname = \"a\"\nlocal = \"127.0.0.1:1\"\nbogus = true\n",
        );
        let err = Config::load(Some(f.path())).unwrap_err();
        let text = err.to_string();
        let path = f.path().display().to_string();
        for expected in [
            "key `web.listen_extra`: unknown key",
            "key `forward[1].bogus`: unknown key",
            "key `web.listen` = \"0.0.0.0:9999\": not a loopback address",
            "key `forward[0].local` = \"localhost:x\"",
            "key `forward[0].timeout` = \"3 parsecs\"",
            "key `forward[1].name` = \"a\": duplicate forward name",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(err.problems.len(), 6, "{text}");
        assert!(err.problems.iter().all(|p| p.starts_with(&path)), "{text}");
    }

    #[test]
    fn a_file_forward_does_not_inherit_the_default_forward_fields() {
        let f = file("[[forward]]\nname = \"a\"\n");
        let text = Config::load(Some(f.path())).unwrap_err().to_string();
        assert!(text.contains("missing field `local`"), "{text}");
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        let f = file("[[forward]]\nname = \"a\"\nlocal = \"127.0.0.1:1\"\ntimeout = [1]\n");
        let text = Config::load(Some(f.path())).unwrap_err().to_string();
        assert!(text.contains("forward[0].timeout"), "{text}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let text = Config::load(Some(Path::new("/nonexistent/x.toml"))).unwrap_err().to_string();
        assert!(text.contains("/nonexistent/x.toml"), "{text}");
    }
}
