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
use std::time::Duration;

use serde::Deserialize;

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
}

/// Where /metrics is served.
#[derive(Debug, Clone, PartialEq)]
pub struct Web {
    /// The listen address; loopback unless `allow_non_loopback` is set.
    pub listen: SocketAddr,
}

/// Scheduler limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    /// How many probes may run at once across all forwards.
    pub max_concurrent_probes: usize,
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
}

#[derive(Debug, Deserialize)]
struct RawWeb {
    listen: String,
    #[serde(default)]
    allow_non_loopback: bool,
}

#[derive(Debug, Deserialize)]
struct RawScheduler {
    max_concurrent_probes: usize,
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

fn validate(raw: RawConfig, origins: &Origins<'_>, problems: &mut Vec<String>) -> Config {
    let mut problem = |key: &str, value: &dyn fmt::Display, what: &str| {
        problems.push(format!("{}: key `{key}` = \"{value}\": {what}", origins.of(key)));
    };
    let placeholder: SocketAddr = "127.0.0.1:0".parse().expect("literal address");

    let listen = match raw.web.listen.parse::<SocketAddr>() {
        Ok(addr) if !addr.ip().is_loopback() && !raw.web.allow_non_loopback => {
            problem(
                "web.listen",
                &raw.web.listen,
                "not a loopback address; set web.allow_non_loopback = true to serve metrics beyond this machine",
            );
            addr
        }
        Ok(addr) => addr,
        Err(err) => {
            problem("web.listen", &raw.web.listen, &format!("not an IP:port address ({err})"));
            placeholder
        }
    };
    if raw.scheduler.max_concurrent_probes == 0 {
        problem("scheduler.max_concurrent_probes", &0, "must be at least 1");
    }

    if raw.forward.is_empty() {
        problem("forward", &"[]", "at least one [[forward]] is required");
    }
    let mut names = HashSet::new();
    let mut forwards = Vec::new();
    for (index, forward) in raw.forward.into_iter().enumerate() {
        let key = |field: &str| format!("forward[{index}].{field}");
        if !is_label_safe(&forward.name) {
            problem(&key("name"), &forward.name, "must be 1-64 characters of A-Z a-z 0-9 _ . -");
        } else if !names.insert(forward.name.clone()) {
            problem(&key("name"), &forward.name, "duplicate forward name");
        }
        let local = forward.local.parse::<SocketAddr>().unwrap_or_else(|err| {
            problem(&key("local"), &forward.local, &format!("not an IP:port address ({err})"));
            placeholder
        });
        if local.port() == 0 && local != placeholder {
            problem(&key("local"), &forward.local, "port 0 is not a forward's port");
        }
        if !forward.health_path.starts_with('/') || forward.health_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            problem(
                &key("health_path"),
                &forward.health_path,
                "must start with / and contain no spaces or control characters",
            );
        }
        let mut duration = |field: &str, value: &str| -> Duration {
            match humantime::parse_duration(value) {
                Ok(d) if d >= Duration::from_millis(10) && d <= Duration::from_secs(3600) => d,
                Ok(_) => {
                    problem(&key(field), &value, "must be between 10ms and 1h");
                    Duration::from_secs(1)
                }
                Err(err) => {
                    problem(&key(field), &value, &format!("not a duration like 1s or 500ms ({err})"));
                    Duration::from_secs(1)
                }
            }
        };
        let syn_interval = duration("syn_interval", &forward.syn_interval);
        let first_byte_interval = duration("first_byte_interval", &forward.first_byte_interval);
        let timeout = duration("timeout", &forward.timeout);
        forwards.push(Forward {
            name: forward.name,
            local,
            health_path: forward.health_path,
            syn_interval,
            first_byte_interval,
            timeout,
        });
    }
    Config {
        web: Web { listen },
        scheduler: Scheduler { max_concurrent_probes: raw.scheduler.max_concurrent_probes },
        forwards,
    }
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
