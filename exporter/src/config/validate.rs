//! Raw strings to typed values, one function per section; every problem is collected with where the value
//! came from, its key and the value.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::checker::{Checker, PROBE_MAX, PROBE_MIN};
use super::raw::*;
use super::*;

pub(super) fn validate(raw: RawConfig, origins: &Origins<'_>, problems: &mut Vec<String>) -> Config {
    let mut c = Checker::new(origins, problems);
    let web = validate_web(&raw.web, &mut c);
    let scheduler = validate_scheduler(&raw.scheduler, &mut c);
    // The gateway Mac has no forward of its own: `forward = []` with a [[gateway]] (or a [[model_host]]).
    if raw.forward.is_empty() && raw.gateway.is_empty() && raw.model_host.is_empty() {
        c.problem("forward", &"[]", "at least one [[forward]] is required (or a [[gateway]] or [[model_host]])");
    }
    let (mut forwards, ws_handshake_set) = super::forwards::validate_forwards(raw.forward, &mut c);
    let auth = super::auth::validate_auth(raw.auth, &mut c);
    let auth_taps = super::auth::validate_auth_taps(raw.auth_tap, &forwards, web.listen, &mut c);
    let auth_probe = super::auth::validate_auth_probe(raw.auth_probe, &mut forwards, &ws_handshake_set, &mut c);
    let model_hosts = super::model_host::validate_model_hosts(raw.model_host, &mut c);
    let objectives = validate_objectives(&raw.objectives, &mut c);
    let gateways = validate_gateways(raw.gateway, &mut c);
    let otlp = raw.otlp.map(|otlp| validate_otlp(otlp, &mut c));
    let state_file = validate_state(raw.state, &mut c);
    let cli_path = validate_cli(raw.cli, &mut c);
    let remote_write =
        raw.remote_write.map(|rw| super::remote_write::validate_remote_write(rw, state_file.as_deref(), &mut c));
    Config {
        remote_write,
        state_file,
        cli_path,
        otlp,
        gateways,
        web,
        scheduler,
        forwards,
        auth,
        auth_taps,
        auth_probe,
        model_hosts,
        objectives,
    }
}

/// `[web]`: a loopback listener unless widened on purpose, the web config file, the connection limits.
fn validate_web(raw: &RawWeb, c: &mut Checker<'_>) -> Web {
    let listen = c.loopback_addr("web.listen", &raw.listen, raw.allow_non_loopback, "web.allow_non_loopback");
    let security = (!raw.config_file.is_empty()).then(|| match WebSecurity::load(Path::new(&raw.config_file)) {
        Ok(security) => Some(Arc::new(security)),
        Err(web_problems) => {
            c.problem("web.config_file", &raw.config_file, &web_problems.join("; "));
            None
        }
    });
    let limits = WebLimits {
        max_connections: raw.max_connections,
        header_read_timeout: c.duration(
            "web.header_read_timeout",
            &raw.header_read_timeout,
            Duration::from_millis(100),
            Duration::from_secs(600),
        ),
        idle_timeout: c.duration(
            "web.idle_timeout",
            &raw.idle_timeout,
            Duration::from_millis(100),
            Duration::from_secs(86_400),
        ),
    };
    if raw.max_connections == 0 {
        c.problem("web.max_connections", &0, "must be at least 1");
    }
    Web {
        listen,
        security: security.flatten(),
        policy: WebPolicy {
            enable_lifecycle: raw.enable_lifecycle,
            allowed_hosts: raw.allowed_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
        },
        limits,
    }
}

/// `[scheduler]`.
fn validate_scheduler(raw: &RawScheduler, c: &mut Checker<'_>) -> Scheduler {
    if raw.max_concurrent_probes == 0 {
        c.problem("scheduler.max_concurrent_probes", &0, "must be at least 1");
    }
    Scheduler {
        max_concurrent_probes: raw.max_concurrent_probes,
        owner_lookup: owner_lookup(c, &raw.owner_lookup),
        cli_url_interval: (raw.cli_url_interval != "off")
            .then(|| c.duration("scheduler.cli_url_interval", &raw.cli_url_interval, PROBE_MIN, PROBE_MAX)),
    }
}

/// `[objectives]`: ratios within (0, 1), durations within their ranges.
fn validate_objectives(raw: &RawObjectives, c: &mut Checker<'_>) -> Objectives {
    Objectives {
        tunnel_uptime_ratio: {
            let ratio = raw.tunnel_uptime_ratio;
            if !(0.0..=1.0).contains(&ratio) {
                c.problem("objectives.tunnel_uptime_ratio", &ratio, "must be between 0 and 1");
            }
            ratio
        },
        first_byte: c.duration("objectives.first_byte", &raw.first_byte, Duration::from_micros(1), PROBE_MAX),
        model_host_first_byte: c.duration(
            "objectives.model_host_first_byte",
            &raw.model_host_first_byte,
            Duration::from_micros(1),
            PROBE_MAX,
        ),
        gateway_restarts_per_hour: raw.gateway_restarts_per_hour,
        tunnel_stalls_per_hour: raw.tunnel_stalls_per_hour,
        ssh_restarts_per_hour: raw.ssh_restarts_per_hour,
        first_byte_ratio: {
            let ratio = raw.first_byte_ratio;
            if !(ratio > 0.0 && ratio < 1.0) {
                c.problem("objectives.first_byte_ratio", &ratio, "must be between 0 and 1 (exclusive), e.g. 0.99");
            }
            ratio
        },
        window: c.duration(
            "objectives.window",
            &raw.window,
            Duration::from_secs(86400),
            Duration::from_secs(366 * 86400),
        ),
        gateway_event_loop_delay: c.duration(
            "objectives.gateway_event_loop_delay",
            &raw.gateway_event_loop_delay,
            Duration::from_micros(1),
            PROBE_MAX,
        ),
    }
}

/// `[[gateway]]` (the gateway Mac's bind check): unique names, a real port.
fn validate_gateways(raw: Vec<RawGateway>, c: &mut Checker<'_>) -> Vec<Gateway> {
    let mut gateway_names = HashSet::new();
    let mut gateways = Vec::new();
    for (index, gateway) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("gateway[{index}].{field}");
        c.label(&key("name"), &gateway.name, &mut gateway_names, "gateway");
        if gateway.port == 0 {
            c.problem(&key("port"), &0, "port 0 is not a gateway's port");
        }
        let mut allowed = vec![probes::exposure::Scope::Loopback];
        for scope in &gateway.allowed {
            match probes::exposure::Scope::from_label(scope) {
                Some(scope) if !allowed.contains(&scope) => allowed.push(scope),
                Some(_) => {}
                None => c.problem(
                    &key("allowed"),
                    scope,
                    "must be one of \"loopback\", \"private\", \"tailnet\", \"public\"",
                ),
            }
        }
        allowed.sort();
        let docker_socket = gateway.docker_socket.map(PathBuf::from);
        if let Some(socket) = docker_socket.as_deref().filter(|socket| !socket.is_absolute()) {
            c.problem(
                &key("docker_socket"),
                &socket.display(),
                "must be an absolute path to the Docker Engine's Unix socket (e.g. /var/run/docker.sock)",
            );
        }
        gateways.push(Gateway {
            allowed,
            docker_socket,
            interval: c.duration(&key("interval"), &gateway.interval, PROBE_MIN, PROBE_MAX),
            port: gateway.port,
            name: gateway.name,
        });
    }
    gateways
}

/// `[otlp]`: an http:// endpoint (OTLP over HTTP). The OTLP exporter is built without a TLS backend, so an
/// https:// collector could only fail at every export: it is refused by name here instead.
fn validate_otlp(otlp: RawOtlp, c: &mut Checker<'_>) -> Otlp {
    match url::Url::parse(&otlp.endpoint) {
        Ok(url) if url.scheme() == "http" => {}
        Ok(url) if url.scheme() == "https" => c.problem(
            "otlp.endpoint",
            &crate::openclaw_cli_url::redacted(&otlp.endpoint),
            "https is not supported (the OTLP client has no TLS); send to a collector on http:// on this host or \
             your network",
        ),
        _ => c.problem(
            "otlp.endpoint",
            &crate::openclaw_cli_url::redacted(&otlp.endpoint),
            "must be an http:// URL (OTLP over HTTP)",
        ),
    }
    Otlp { endpoint: otlp.endpoint, service_name: otlp.service_name }
}

/// `[state]`: a file, not a directory.
fn validate_state(raw: RawState, c: &mut Checker<'_>) -> Option<PathBuf> {
    let state_file = raw.file.map(PathBuf::from);
    if let Some(file) = &state_file {
        if file.is_dir() {
            c.problem("state.file", &file.display(), "is a directory; name a file");
        }
    }
    state_file
}

/// `[cli]`: the openclaw executable, when set, must be a file.
fn validate_cli(raw: RawCli, c: &mut Checker<'_>) -> Option<PathBuf> {
    let path = raw.path.map(PathBuf::from)?;
    if !path.is_file() {
        c.problem("cli.path", &path.display(), "is not a file: name the openclaw executable (`which openclaw`)");
    }
    Some(path)
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

/// `forward.1.bogus` (serde_ignored's spelling) -> `forward[1].bogus` (serde_path_to_error's and ours).
pub(super) fn bracket_indices(path: &str) -> String {
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

/// Each section's errors, through `Config::load` on a file: every problem names the file, the key and the
/// value, and the load fails (the binary exits non-zero on it).
#[cfg(test)]
mod tests {
    use super::*;

    /// The problems of loading `toml` from a file, and the file's path.
    fn problems(toml: &str) -> (Vec<String>, String) {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), toml).unwrap();
        let problems = Config::load(Some(file.path())).expect_err("a bad config must not load").problems;
        (problems, file.path().display().to_string())
    }

    /// `toml` fails to load with a problem naming the file, each of `keys` and its value, and nothing else.
    fn assert_named(toml: &str, keys: &[(&str, &str)]) {
        let (problems, path) = problems(toml);
        for (key, value) in keys {
            let named = format!("{path}: key `{key}` = \"{value}\": ");
            assert!(problems.iter().any(|p| p.starts_with(&named)), "no problem {named:?} in {problems:#?}");
        }
        assert_eq!(problems.len(), keys.len(), "{problems:#?}");
    }

    const FORWARD: &str = "[[forward]]\nname = \"a\"\nlocal = \"127.0.0.1:18789\"\n";

    #[test]
    fn web_errors_name_the_key_and_value() {
        assert_named(
            &format!(
                "[web]\nlisten = \"0.0.0.0:9\"\nheader_read_timeout = \"1ms\"\nidle_timeout = \"soon\"\n\
                 max_connections = 0\n{FORWARD}"
            ),
            &[
                ("web.listen", "0.0.0.0:9"),
                ("web.header_read_timeout", "1ms"),
                ("web.idle_timeout", "soon"),
                ("web.max_connections", "0"),
            ],
        );
    }

    #[test]
    fn scheduler_errors_name_the_key_and_value() {
        assert_named(
            &format!("[scheduler]\nmax_concurrent_probes = 0\nowner_lookup = \"magic\"\n{FORWARD}"),
            &[("scheduler.max_concurrent_probes", "0"), ("scheduler.owner_lookup", "magic")],
        );
    }

    #[test]
    fn forward_errors_name_the_key_and_value() {
        assert_named(
            "[[forward]]\nname = \"a b\"\nlocal = \"127.0.0.1:0\"\nhealth_path = \"healthz\"\nsyn_interval = \"1h1s\"\n\
             remote = \"mac:0\"\n[[forward]]\nname = \"c\"\nlocal = \"nowhere\"\n[[forward]]\nname = \"c\"\n\
             local = \"127.0.0.1:1\"\n",
            &[
                ("forward[0].name", "a b"),
                ("forward[0].local", "127.0.0.1:0"),
                ("forward[0].health_path", "healthz"),
                ("forward[0].syn_interval", "1h1s"),
                ("forward[0].remote", "mac:0"),
                ("forward[1].local", "nowhere"),
                ("forward[2].name", "c"),
            ],
        );
        let (problems, _) = problems("forward = []\n");
        assert!(problems[0].contains("key `forward` = \"[]\""), "{problems:?}");
    }

    #[test]
    fn wsl_companion_and_docker_socket_errors_name_the_key_and_value() {
        assert_named(
            "[[forward]]\nname = \"a\"\nlocal = \"127.0.0.1:1\"\nwsl_companion = \"https://127.0.0.1:9465\"\n\
             [[forward]]\nname = \"b\"\nlocal = \"127.0.0.1:2\"\nwsl_companion = \"http://wsl-vm:9465\"\n\
             [[forward]]\nname = \"c\"\nurl = \"ws://10.0.0.2:18789\"\nwsl_companion = \"http://127.0.0.1:9465\"\n\
             [[gateway]]\nname = \"g\"\ndocker_socket = \"docker.sock\"\n",
            &[
                ("forward[0].wsl_companion", "https://127.0.0.1:9465"),
                ("forward[1].wsl_companion", "http://wsl-vm:9465"),
                ("forward[2].wsl_companion", "http://127.0.0.1:9465"),
                ("gateway[0].docker_socket", "docker.sock"),
            ],
        );
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(
            file.path(),
            "[[forward]]\nname = \"a\"\nlocal = \"127.0.0.1:1\"\nwsl_companion = \"http://localhost:9465/\"\n\
             [[gateway]]\nname = \"g\"\ndocker_socket = \"/var/run/docker.sock\"\n",
        )
        .unwrap();
        let config = Config::load(Some(file.path())).unwrap();
        let forward = config.forwards.iter().find(|f| f.name == "a").unwrap();
        assert_eq!(forward.wsl_companion, Some("127.0.0.1:9465".parse().unwrap()));
        assert_eq!(config.wsl_companion_for("127.0.0.1:1".parse().unwrap()), forward.wsl_companion);
        assert_eq!(config.gateways[0].docker_socket.as_deref(), Some(Path::new("/var/run/docker.sock")));
    }

    #[test]
    fn auth_tap_and_auth_probe_errors_name_the_key_and_value() {
        assert_named(
            &format!(
                "{FORWARD}[[auth_tap]]\nforward = \"zz\"\nlisten = \"127.0.0.1:7\"\nupstream = \"127.0.0.1:7\"\n\
                 max_connections = 0\n[[auth_tap]]\nforward = \"a\"\nlisten = \"127.0.0.1:7\"\nupstream = \"127.0.0.1:8\"\n\
                 [[auth_tap]]\nforward = \"a\"\nlisten = \"127.0.0.1:19789\"\nupstream = \"127.0.0.1:8\"\n\
                 [auth_probe]\nenabled = true\nforwards = [\"a\", \"nope\"]\ninterval = \"100ms\"\n"
            ),
            &[
                ("auth_tap[0].forward", "zz"),
                ("auth_tap[0].upstream", "127.0.0.1:7"),
                ("auth_tap[0].max_connections", "0"),
                ("auth_tap[1].listen", "127.0.0.1:7"),
                ("auth_tap[2].listen", "127.0.0.1:19789"),
                ("auth_probe.forwards[1]", "nope"),
                ("auth_probe.interval", "100ms"),
            ],
        );
    }

    #[test]
    fn model_host_gateway_and_objective_errors_name_the_key_and_value() {
        assert_named(
            &format!(
                "{FORWARD}[[model_host]]\nname = \"m\"\nurl = \"ftp://x\"\nca_file = \"/nonexistent/ca.pem\"\n\
                 [[gateway]]\nname = \"g\"\nport = 0\nallowed = [\"tailnet\", \"lan\"]\n[objectives]\ntunnel_uptime_ratio = 1.5\nfirst_byte_ratio = 1.0\n\
                 window = \"1h\"\n"
            ),
            &[
                ("model_host[0].url", "ftp://x"),
                ("model_host[0].ca_file", "/nonexistent/ca.pem"),
                ("gateway[0].port", "0"),
                ("gateway[0].allowed", "lan"),
                ("objectives.tunnel_uptime_ratio", "1.5"),
                ("objectives.first_byte_ratio", "1"),
                ("objectives.window", "1h"),
            ],
        );
    }

    #[test]
    fn an_https_otlp_endpoint_is_refused_by_name() {
        let (problems, _) = problems(&format!("{FORWARD}[otlp]\nendpoint = \"https://collector:4318\"\n"));
        assert!(problems.len() == 1 && problems[0].contains("https is not supported"), "{problems:?}");
    }

    #[test]
    fn otlp_and_state_errors_name_the_key_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().display().to_string();
        assert_named(
            &format!("{FORWARD}[otlp]\nendpoint = \"grpc://collector\"\n[state]\nfile = \"{state}\"\n"),
            &[("otlp.endpoint", "grpc://collector"), ("state.file", &state)],
        );
    }

    #[test]
    fn auth_errors_name_the_key_and_value_and_never_a_secret() {
        assert_named(
            &format!(
                "{FORWARD}[auth]\ncurrent = \"r9\"\nrotated_at = \"yesterday\"\n[[auth.revision]]\nname = \"r1\"\n\
                 hash = \"not-a-hash-but-maybe-a-token\"\n[[auth.revision]]\nname = \"r2\"\n"
            ),
            &[
                ("auth.current", "r9"),
                ("auth.rotated_at", "yesterday"),
                ("auth.revision[0].hash", "<redacted>"),
                ("auth.revision[1].hash", "<missing>"),
            ],
        );
        let (problems, _) =
            problems(&format!("{FORWARD}[[auth.revision]]\nname = \"r1\"\nhash = \"not-a-hash-but-maybe-a-token\"\n"));
        assert!(!problems.join("\n").contains("maybe-a-token"), "{problems:?}");
    }

    #[test]
    fn remote_write_errors_name_the_key_and_value() {
        assert_named(
            &format!(
                "{FORWARD}[remote_write]\nurl = \"ftp://x\"\nmax_bytes = \"lots\"\nmin_backoff = \"10s\"\n\
                 max_backoff = \"5s\"\n[remote_write.external_labels]\n__bad = \"v\"\n"
            ),
            &[
                ("remote_write.url", "ftp://x"),
                ("remote_write.max_bytes", "lots"),
                ("remote_write.max_backoff", "5s"),
                ("remote_write.external_labels.__bad", "__bad"),
            ],
        );
    }

    #[test]
    fn a_forward_on_localhost_is_told_to_use_127_0_0_1_and_why() {
        let (problems, path) = problems("[[forward]]\nname = \"a\"\nlocal = \"localhost:18789\"\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problem = &problems[0];
        assert!(problem.starts_with(&format!("{path}: key `forward[0].local` = \"localhost:18789\": ")), "{problem}");
        assert!(problem.contains("use 127.0.0.1:18789") && problem.contains("::1"), "{problem}");
    }
}
