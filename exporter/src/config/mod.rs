//! Configuration: an embedded default, then a TOML file (`--config`), then `OPENCLAW_EXPORTER__SECTION__KEY`
//! environment variables, layered by the `config` crate.
//!
//! Loading never stops at the first problem: unknown keys (found by `serde_ignored`), wrong types (located
//! by `serde_path_to_error`) and bad values (checked here) are all collected, each naming where it came
//! from, its key and its value, so one `check-config` run shows everything to fix.
//!
//! - this module: the typed [`Config`] every other module reads, and loading;
//! - [`raw`]: the TOML as written (strings, optional keys) and the defaults of optional keys;
//! - [`validate`]: raw -> typed, one function per section, every problem collected.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::web_security::WebSecurity;

mod auth;
mod checker;
mod forwards;
mod model_host;
mod raw;
mod remote_write;
pub use remote_write::{HistogramChoice, ProtocolChoice};
mod route;
mod validate;
mod warnings;

pub use route::{DirectRoute, RouteConfig, TlsVerify};

use raw::RawConfig;
use validate::{bracket_indices, validate};

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// The environment variable prefix; `__` separates the section from the key.
pub const ENV_PREFIX: &str = "OPENCLAW_EXPORTER";

/// The sections that are lists of tables, as environment-variable segments: none can be set from there.
const LIST_SECTIONS: [&str; 5] = ["FORWARD", "AUTH_TAP", "MODEL_HOST", "GATEWAY", "AUTH__REVISION"];

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
    /// Remote write, when `[remote_write]` is set.
    pub remote_write: Option<RemoteWrite>,
    /// Where the uptime buckets are saved across restarts (off when unset).
    pub state_file: Option<PathBuf>,
    /// The openclaw CLI whose version is read (`[cli] path`); None: PATH, then the usual install prefixes.
    pub cli_path: Option<PathBuf>,
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
    /// The scopes its listeners may bind without paging, declared by the team (`allowed = ["tailnet"]`):
    /// loopback always, and any of private, tailnet, public.
    pub allowed: Vec<probes::exposure::Scope>,
    /// The Docker Engine API's Unix socket (`docker_socket = "/var/run/docker.sock"`, opt-in): when a container
    /// (or a NAT rule) publishes the port, the containers publishing it are named, and their logs.
    pub docker_socket: Option<PathBuf>,
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
    /// Where the tap connects: a local address (the ssh forward, or the gateway beside it); None: its forward's
    /// own route (a `ws://` or `wss://` url route, TLS and pin included, or the ssh forward's `local`).
    pub upstream: Option<SocketAddr>,
    /// Connections open at once at most (the oldest never-spoken one makes room for a new one).
    pub max_connections: usize,
    /// A client's first request head (or WebSocket upgrade) must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection with nothing moving either way for this long is closed.
    pub idle_timeout: Duration,
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
    /// More gateway restarts than this in an hour is a restart storm.
    pub gateway_restarts_per_hour: u32,
    /// An event-loop delay p99 above this, for long, is a saturated gateway.
    pub gateway_event_loop_delay: Duration,
    /// More client closes 4000 (the CLI heard nothing for two ticks) than this in an hour is a stalling tunnel.
    pub tunnel_stalls_per_hour: u32,
    /// More new ssh owners of a forward than this in an hour is a restart storm.
    pub ssh_restarts_per_hour: u32,
    /// The share of first-byte probes that must answer within `first_byte`, e.g. 0.99.
    pub first_byte_ratio: f64,
    /// The error-budget window the burn-rate alerts are scaled to (30 days by default).
    pub window: Duration,
}

/// `[remote_write]`: push samples, taken on the exporter's own schedule, to a Prometheus remote-write
/// receiver through a durable on-disk queue.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWrite {
    /// The receiver's URL (http or https).
    pub url: url::Url,
    /// How often a round of samples is taken.
    pub interval: Duration,
    /// Where the queue lives.
    pub queue_dir: PathBuf,
    /// The most the queue may hold on disk; the oldest rounds go first.
    pub max_bytes: u64,
    /// The first wait after a failed send; it doubles (with jitter) up to `max_backoff`.
    pub min_backoff: Duration,
    /// The longest wait between failed sends.
    pub max_backoff: Duration,
    /// A file holding a bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth: the user, and a file holding the password.
    pub basic_auth: Option<(String, PathBuf)>,
    /// A CA file to trust besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and key (PEM files).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Labels added to every series (`laptop = "..."`), sorted; `job` and `instance` default to
    /// `openclaw-tunnel` and the host name.
    pub external_labels: Vec<(String, String)>,
    /// Extra request headers (a tenant's `X-Scope-OrgID`).
    pub headers: Vec<(String, String)>,
    /// Which protocol to send (`protocol`).
    pub protocol: ProtocolChoice,
    /// How to send histograms (`histograms`).
    pub histograms: HistogramChoice,
    /// Rounds per request while the receiver keeps up (`batch_rounds`): the sender waits until the oldest
    /// unsent round is this many intervals less one old. More rounds share one compression window (and, in
    /// 2.0, one symbols table), so each costs fewer bytes; the store sees them that much later.
    pub batch_rounds: u32,
}

/// Where /metrics is served.
#[derive(Debug, Clone, PartialEq)]
pub struct Web {
    /// The listen address; loopback unless `allow_non_loopback` is set.
    pub listen: SocketAddr,
    /// TLS and basic auth from `web.config_file` (exporter-toolkit format), when set.
    pub security: Option<Arc<WebSecurity>>,
    /// What the web server lets a request do; a reload replaces it.
    pub policy: WebPolicy,
    /// Connection limits and timeouts, fixed at start like `listen`.
    pub limits: WebLimits,
}

/// How many connections the web server holds and for how long (fixed at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebLimits {
    /// Connections open at once at most: the oldest that never sent a byte makes room for a new one, else
    /// the new one is closed. Counted either way.
    pub max_connections: usize,
    /// A request's head must arrive within this of the connection's start (or of the first byte of a
    /// request on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
}

/// What the web server lets a request do, beyond reading.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebPolicy {
    /// `POST /-/reload` is served (off by default, as Prometheus's `--web.enable-lifecycle`); SIGHUP and the
    /// config file's change reload either way.
    pub enable_lifecycle: bool,
    /// Host names a request's `Host` may carry besides loopback names, IP literals and this machine's name
    /// (lower case, no port): a guard against DNS rebinding.
    pub allowed_hosts: Vec<String>,
}

/// Scheduler limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    /// How many probes may run at once across all forwards.
    pub max_concurrent_probes: usize,
    /// How the owner of a forward's listener is found (`procfs` on Linux, `listeners` everywhere).
    pub owner_lookup: probes::ssh_session::Lookup,
    /// How often the openclaw CLI's gateway URL is read and checked against the forwards; None when `off`.
    pub cli_url_interval: Option<Duration>,
}

/// One forward: a laptop's road to the gateway, an ssh -L listener (`local`) or a direct URL (`url`).
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// The `forward` label value.
    pub name: String,
    /// Its road to the gateway.
    pub route: RouteConfig,
    /// The gateway's unauthenticated health path.
    pub health_path: String,
    /// How often a tunnel round (SYN + SSH session) runs.
    pub syn_interval: Duration,
    /// How often the first-byte probe runs.
    pub first_byte_interval: Duration,
    /// How often `/startupz` and `/readyz` are read (default 15 s).
    pub readiness_interval: Duration,
    /// How often the WebSocket handshake probe runs; None when `off`. Its default depends on whether the
    /// auth probe covers this forward (a token lets it complete `connect`, which the gateway does not log).
    pub ws_handshake_interval: Option<Duration>,
    /// How often this user's ssh processes are checked for orphans of this forward (ssh clients forwarding
    /// its address that do not own its listener); None when `off`.
    pub hygiene_interval: Option<Duration>,
    /// How often the gateway's Control UI (`GET /` answering HTML) is checked through the forward; None when
    /// `off`.
    pub control_ui_interval: Option<Duration>,
    /// The longest any probe of this forward may take (capped at its interval, so rounds never overlap).
    pub timeout: Duration,
    /// The ssh server (the Mac), for the doctor and the routing row.
    pub ssh_host: Option<HostPort>,
    /// The jump host (`-J`), when there is one.
    pub jump_host: Option<HostPort>,
    /// The forward's remote end as seen from the ssh server (the -L target).
    pub remote: HostPort,
    /// Who owns this forward (a person or team), for the routing row.
    pub owner: Option<String>,
    /// Process names, besides ssh clients, that may be handed the gateway token when one of them holds the
    /// forward's port and runs as this user (the gateway itself, `node`, where the exporter runs beside it).
    pub trusted_owners: Vec<String>,
    /// The companion exporter inside WSL2 (`wsl_companion = "http://HOST:PORT"`), for an ssh forward whose ssh
    /// runs inside WSL2 while the CLI runs on Windows: while this user's WSL relay holds the forward's port, the
    /// forward is up (and handed the token) only while the companion says its own ssh owns that port.
    pub wsl_companion: Option<SocketAddr>,
}

/// A validated `host:port` (a name, an IPv4 address or a bracketed IPv6 address; the port 1-65535).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The host as written (`mac-ap1.lan`, `10.0.0.5`, `[fd00::1]`).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
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

/// Says where a key's value came from, for error messages.
pub(super) struct Origins<'a> {
    file: Option<&'a Path>,
}

impl Origins<'_> {
    pub(super) fn of(&self, key: &str) -> String {
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
    /// The `wsl_companion` of the ssh forward listening on `local`, if it has one: every owner lookup of that
    /// listener (the tunnel's, each token sender's gate) asks it when WSL's relay holds the port.
    pub fn wsl_companion_for(&self, local: SocketAddr) -> Option<SocketAddr> {
        self.forwards.iter().find(|forward| forward.local() == Some(local)).and_then(|forward| forward.wsl_companion)
    }

    /// Where the openclaw CLI may point for each forward: the forward's local address or its URL, and the
    /// listen address of every auth tap in front of it (the README's tap layout: the CLI keeps its port, the
    /// forward moves), so a CLI pointed at a tap is judged as using the forward the tap fronts.
    pub fn cli_addresses(&self) -> Vec<(&str, crate::openclaw_cli_url::CliAddress)> {
        use crate::openclaw_cli_url::CliAddress;
        let forwards = self.forwards.iter().filter_map(|forward| {
            let address = match &forward.route {
                RouteConfig::Local(local) => CliAddress::Local(*local),
                RouteConfig::Direct(direct) => CliAddress::of_url(&direct.url)?,
            };
            Some((forward.name.as_str(), address))
        });
        let taps = self.auth_taps.iter().map(|tap| (tap.forward.as_str(), CliAddress::Local(tap.listen)));
        taps.chain(forwards).collect()
    }

    /// The routing-table rows of every forward (and the header first when asked).
    pub fn routing_rows(&self, header: bool) -> String {
        let mut text = String::new();
        if header {
            text.push_str(
                "| forward | local port | jump host | remote host | remote port | token revision | owner |\n",
            );
            text.push_str("|---|---|---|---|---|---|---|\n");
        }
        for forward in &self.forwards {
            // An ssh forward: remote host = the ssh server (the Mac), remote port = the -L target's port on it. A
            // direct route: no local port, the URL's host and port.
            let (local_port, remote_host, remote_port) = match &forward.route {
                RouteConfig::Local(local) => (
                    local.port().to_string(),
                    forward.ssh_host.as_ref().map_or("-".to_owned(), |h| h.host.clone()),
                    forward.remote.port,
                ),
                RouteConfig::Direct(direct) => ("-".to_owned(), direct.host.clone(), direct.port),
            };
            text.push_str(&format!(
                "| {} | {local_port} | {} | {remote_host} | {remote_port} | {} | {} |\n",
                forward.name,
                forward.jump_host.as_ref().map_or("-".to_owned(), ToString::to_string),
                self.auth.current.as_deref().unwrap_or("-"),
                forward.owner.as_deref().unwrap_or("-"),
            ));
        }
        text
    }

    /// Load the embedded default, then `file` if given, then the environment, and validate the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        // A list of tables (`[[forward]]`, ...) cannot be set from the environment: the config crate would
        // read `..__FORWARD__0__NAME` as a map and blame the embedded default. Name the variable instead.
        let aimed_at_lists: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| LIST_SECTIONS.iter().any(|section| name.starts_with(&format!("{ENV_PREFIX}__{section}__"))))
            .map(|name| {
                format!(
                    "environment variable {name}: [[forward]], [[auth_tap]], [[model_host]], [[gateway]] and \
                     [[auth.revision]] tables come from the config file; set this in the file (--config)"
                )
            })
            .collect();
        if !aimed_at_lists.is_empty() {
            return Err(ConfigError { problems: aimed_at_lists });
        }
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
    fn hosts_are_typed_with_their_default_ports_and_bad_ones_named() {
        let forward = |keys: &str| format!("[[forward]]\nname = \"a\"\nlocal = \"127.0.0.1:18789\"\n{keys}");
        let f = file(&forward("ssh_host = \"mac-ap1.lan\"\njump_host = \"[fd00::1]:2222\"\n"));
        let config = Config::load(Some(f.path())).unwrap();
        let forward0 = &config.forwards[0];
        assert_eq!(forward0.ssh_host, Some(HostPort { host: "mac-ap1.lan".into(), port: 22 }));
        assert_eq!(forward0.jump_host.as_ref().map(ToString::to_string).as_deref(), Some("[fd00::1]:2222"));
        assert_eq!(forward0.remote, HostPort { host: "127.0.0.1".into(), port: 18789 });
        let f = file(&forward("ssh_host = \"mac:0\"\nremote = \"bad host:1\"\n"));
        let text = Config::load(Some(f.path())).unwrap_err().to_string();
        assert!(text.contains("forward[0].ssh_host` = \"mac:0\""), "{text}");
        assert!(text.contains("forward[0].remote` = \"bad host:1\""), "{text}");
    }

    #[test]
    fn the_embedded_default_has_one_forward_on_loopback() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.forwards.len(), 1);
        assert_eq!(config.forwards[0].name, "default");
        assert_eq!(config.forwards[0].local(), Some("127.0.0.1:18789".parse().unwrap()));
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
        assert!(text.contains("key `forward[0].local` = \"(unset)\": a forward needs local"), "{text}");
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

    #[test]
    fn a_cli_pointed_at_a_tap_uses_the_forward_the_tap_fronts_and_a_wildcard_local_is_measured_at_loopback() {
        let f = file(
            "[[forward]]\nname = \"mac\"\nlocal = \"127.0.0.1:18799\"\n\
             [[forward]]\nname = \"wide\"\nlocal = \"0.0.0.0:18800\"\n\
             [[auth_tap]]\nforward = \"mac\"\nlisten = \"127.0.0.1:18789\"\nupstream = \"127.0.0.1:18799\"\n",
        );
        let config = Config::load(Some(f.path())).unwrap();
        let judged = crate::openclaw_cli_url::judge("ws://127.0.0.1:18789", &config.cli_addresses());
        assert_eq!(judged.matched(), Some("mac"), "{judged:?}");
        assert_eq!(config.forwards[1].local(), Some("127.0.0.1:18800".parse().unwrap()));
    }
}
