//! Where this machine's `openclaw` CLI gets its gateway token, read the way the CLI reads it
//! (openclaw 2026.9.6, gateway/remote.md and help/environment.md):
//!
//! - `OPENCLAW_GATEWAY_TOKEN` from the process environment, else `$OPENCLAW_STATE_DIR/.env` (default
//!   `~/.openclaw/.env`), else `~/.config/openclaw/gateway.env`; a value already set is never overridden;
//! - the JSON5 config (`$OPENCLAW_CONFIG_PATH` or `~/.openclaw/openclaw.json`): `gateway.remote.token` and
//!   `gateway.auth.token`, each a string, a `${VAR}`/`$VAR` shorthand or a SecretRef; `env` refs resolve,
//!   `file`/`exec`/`store` refs are reported unresolvable rather than guessed;
//! - remote mode uses remote.token, then the env token, then auth.token; local mode auth.token, env, remote.token;
//! - the exporter's `auth_probe.token_file`, when set, overrides all of them.
//!
//! Tokens stay in [`Secret`]s; only source names and agreement are ever logged.

use std::path::{Path, PathBuf};

use probes::auth_probe::Secret;

/// The kinds of token source, the `source` label's fixed set: the process environment, the state directory's
/// `.env`, `~/.config/openclaw/gateway.env`, the CLI's config file, the exporter's own `token_file`.
#[allow(dead_code)] // documentation of the label set; the kinds are set where each source is read
pub const SOURCE_KINDS: [&str; 5] = ["env", "dotenv", "gateway_env", "config", "token_file"];

/// One place a token may come from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where, for the log: e.g. `env OPENCLAW_GATEWAY_TOKEN`, `/home/u/.openclaw/openclaw.json gateway.auth.token`.
    pub name: String,
    /// Which kind of source, the `source` label: one of [`SOURCE_KINDS`].
    pub kind: &'static str,
    /// The token, when the source holds one that could be resolved.
    pub token: Option<Secret>,
    /// Why a configured source could not be resolved.
    pub unresolvable: Option<String>,
}

/// Every token source found, and the one the CLI would use.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// All sources that hold something.
    pub sources: Vec<Source>,
    /// Index into `sources` of the token the CLI would use.
    pub effective: Option<usize>,
}

impl Tokens {
    /// The token the CLI would use.
    pub fn effective(&self) -> Option<&Source> {
        self.effective.map(|i| &self.sources[i])
    }

    /// True when every resolved source holds the same token (or only one does).
    pub fn agree(&self) -> bool {
        let mut tokens = self.sources.iter().filter_map(|s| s.token.as_ref());
        let first = tokens.next();
        tokens.all(|t| Some(t) == first)
    }

    /// The names of the sources whose token differs from the effective one.
    pub fn disagreeing(&self) -> Vec<&str> {
        let Some(effective) = self.effective().and_then(|s| s.token.as_ref()) else { return Vec::new() };
        self.sources
            .iter()
            .filter(|s| s.token.as_ref().is_some_and(|t| t != effective))
            .map(|s| s.name.as_str())
            .collect()
    }
}

/// Where to look; the defaults follow the CLI.
#[derive(Debug, Clone)]
pub struct Locations {
    /// The process environment's `OPENCLAW_GATEWAY_TOKEN`.
    pub env_token: Option<String>,
    /// `OPENCLAW_GATEWAY_URL` and where it was found: the process environment, then the state directory's
    /// `.env`, then `gateway.env` (the first set wins, as for the token).
    pub env_url: Option<(String, String)>,
    /// `$OPENCLAW_STATE_DIR/.env` or `~/.openclaw/.env`.
    pub state_env_file: Option<PathBuf>,
    /// `~/.config/openclaw/gateway.env`.
    pub gateway_env_file: Option<PathBuf>,
    /// The JSON5 config.
    pub config_file: Option<PathBuf>,
    /// The exporter's own token file.
    pub token_file: Option<PathBuf>,
}

impl Locations {
    /// The CLI's locations from this process's environment, with an optional config override and token file.
    pub fn from_env(config_override: Option<&Path>, token_file: Option<&Path>) -> Self {
        // As Node's os.homedir() (libuv) finds it for the CLI: HOME, then USERPROFILE (Windows sets only that).
        let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")).map(PathBuf::from);
        let state_dir = std::env::var_os("OPENCLAW_STATE_DIR")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".openclaw")));
        let config_file = config_override
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("OPENCLAW_CONFIG_PATH").map(PathBuf::from))
            .or_else(|| home.as_ref().map(|h| h.join(".openclaw/openclaw.json")));
        let state_env_file = state_dir.map(|d| d.join(".env"));
        let gateway_env_file = home.map(|h| h.join(".config/openclaw/gateway.env"));
        let env_url = std::env::var("OPENCLAW_GATEWAY_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .map(|url| (url, "env OPENCLAW_GATEWAY_URL".to_owned()))
            .or_else(|| {
                [&state_env_file, &gateway_env_file].into_iter().flatten().find_map(|file| {
                    let url = dotenv_value(file, "OPENCLAW_GATEWAY_URL")?;
                    Some((url, format!("{} OPENCLAW_GATEWAY_URL", file.display())))
                })
            });
        Locations {
            env_token: std::env::var("OPENCLAW_GATEWAY_TOKEN").ok().filter(|t| !t.is_empty()),
            env_url,
            state_env_file,
            gateway_env_file,
            config_file,
            token_file: token_file.map(Path::to_path_buf),
        }
    }
}

/// Read every source. Never fails: a missing file is no source, a broken one is reported unresolvable.
pub fn read(locations: &Locations) -> Tokens {
    let mut tokens = Tokens::default();
    let push = |tokens: &mut Tokens, source: Source| -> Option<usize> {
        tokens.sources.push(source);
        Some(tokens.sources.len() - 1)
    };

    let token_file = locations.token_file.as_ref().map(|path| {
        let name = path.display().to_string();
        let kind = "token_file";
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {
                Source { name, kind, token: Some(Secret::new(text.trim())), unresolvable: None }
            }
            Ok(_) => Source { name, kind, token: None, unresolvable: Some("empty".into()) },
            Err(err) => Source { name, kind, token: None, unresolvable: Some(err.to_string()) },
        }
    });

    // The env token: process env, then .env, then gateway.env; the first set wins, the others still count
    // as sources (they are what the CLI would use if the one above were unset).
    let mut env_index = None;
    if let Some(value) = &locations.env_token {
        env_index = push(
            &mut tokens,
            Source {
                name: "env OPENCLAW_GATEWAY_TOKEN".into(),
                kind: "env",
                token: Some(Secret::new(value.as_str())),
                unresolvable: None,
            },
        );
    }
    let env_files = [(&locations.state_env_file, "dotenv"), (&locations.gateway_env_file, "gateway_env")];
    for (file, kind) in env_files.into_iter().filter_map(|(file, kind)| Some((file.as_ref()?, kind))) {
        if let Some(value) = dotenv_value(file, "OPENCLAW_GATEWAY_TOKEN") {
            let name = format!("{} OPENCLAW_GATEWAY_TOKEN", file.display());
            let source = Source { name, kind, token: Some(Secret::new(value)), unresolvable: None };
            let index = push(&mut tokens, source);
            env_index = env_index.or(index);
        }
    }

    let (mut remote_index, mut auth_index, mut remote_mode) = (None, None, false);
    if let Some(path) = locations.config_file.as_ref() {
        match read_config(path) {
            Ok(None) => {}
            Ok(Some(value)) => {
                remote_mode = value["gateway"]["mode"] == "remote";
                for (key, slot) in [("remote", &mut remote_index), ("auth", &mut auth_index)] {
                    let field = &value["gateway"][key]["token"];
                    if field.is_null() {
                        continue;
                    }
                    let name = format!("{} gateway.{key}.token", path.display());
                    let source = match resolve_secret(field) {
                        Ok(token) => {
                            Source { name, kind: "config", token: Some(Secret::new(token)), unresolvable: None }
                        }
                        Err(why) => Source { name, kind: "config", token: None, unresolvable: Some(why) },
                    };
                    *slot = push(&mut tokens, source);
                }
            }
            Err(err) => {
                push(
                    &mut tokens,
                    Source { name: path.display().to_string(), kind: "config", token: None, unresolvable: Some(err) },
                );
            }
        }
    }

    let resolved = |i: &Option<usize>, tokens: &Tokens| i.filter(|&i| tokens.sources[i].token.is_some());
    let order = if remote_mode { [remote_index, env_index, auth_index] } else { [auth_index, env_index, remote_index] };
    tokens.effective = order.iter().find_map(|i| resolved(i, &tokens));
    if let Some(source) = token_file {
        let has_token = source.token.is_some();
        let index = push(&mut tokens, source);
        if has_token {
            tokens.effective = index;
        }
    }
    tokens
}

/// The CLI's JSON5 config at `path`: None when there is no such file (or it cannot be read), an error naming
/// the file when it is not JSON5.
pub fn read_config(path: &Path) -> Result<Option<serde_json::Value>, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    json5::from_str::<serde_json::Value>(&text).map(Some).map_err(|err| format!("{}: not JSON5: {err}", path.display()))
}

/// A token field: a string (with `${VAR}` / `$VAR` shorthand) or a SecretRef object.
fn resolve_secret(field: &serde_json::Value) -> Result<String, String> {
    if let Some(text) = field.as_str() {
        let var = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')).or_else(|| text.strip_prefix('$'));
        return match var {
            Some(var) if !var.is_empty() && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                std::env::var(var).map_err(|_| format!("references ${{{var}}}, which is not set"))
            }
            _ => Ok(text.to_owned()),
        };
    }
    match (field["source"].as_str(), field["id"].as_str()) {
        (Some("env"), Some(var)) => std::env::var(var).map_err(|_| format!("SecretRef env {var} is not set")),
        (Some(source), _) => Err(format!("SecretRef source `{source}` cannot be resolved by the exporter")),
        _ => Err("neither a string nor a SecretRef".into()),
    }
}

fn dotenv_value(path: &Path, key: &str) -> Option<String> {
    let entries = dotenvy::from_path_iter(path).ok()?;
    entries.flatten().find(|(k, _)| k == key).map(|(_, v)| v).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locations(dir: &Path) -> Locations {
        Locations {
            env_token: None,
            env_url: None,
            state_env_file: Some(dir.join(".env")),
            gateway_env_file: Some(dir.join("gateway.env")),
            config_file: Some(dir.join("openclaw.json")),
            token_file: None,
        }
    }

    fn effective(tokens: &Tokens) -> Option<&[u8]> {
        tokens.effective().and_then(|s| s.token.as_ref()).map(Secret::expose)
    }

    #[test]
    fn remote_mode_prefers_the_remote_token_and_disagreement_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("openclaw.json"),
            "// JSON5\n{gateway: {mode: 'remote', remote: {url: 'ws://127.0.0.1:18789', token: 'tok-remote'}, auth: {token: 'tok-auth',},},}",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env"), "OPENCLAW_GATEWAY_TOKEN=tok-dotenv\n").unwrap();
        let mut at = locations(dir.path());
        at.env_token = Some("tok-launchd".into());
        let tokens = read(&at);
        assert_eq!(effective(&tokens), Some(&b"tok-remote"[..]));
        assert!(!tokens.agree());
        assert_eq!(tokens.disagreeing().len(), 3);
        // None of the source names or the Debug form carries a token.
        assert!(!format!("{tokens:?}").contains("tok-"));
    }

    #[test]
    fn local_mode_uses_auth_then_env_and_one_source_agrees() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gateway.env"), "OPENCLAW_GATEWAY_TOKEN=\"tok-same\"\n").unwrap();
        let tokens = read(&locations(dir.path()));
        assert_eq!(effective(&tokens), Some(&b"tok-same"[..]));
        assert!(tokens.agree());
    }

    #[test]
    fn secret_refs_resolve_from_env_or_are_reported_unresolvable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("openclaw.json"),
            r#"{"gateway":{"auth":{"token":{"source":"exec","provider":"op","id":"x"}},"remote":{"token":"${OCE_TEST_SURELY_UNSET}"}}}"#,
        )
        .unwrap();
        let tokens = read(&locations(dir.path()));
        assert!(tokens.effective().is_none());
        assert!(tokens.sources.iter().all(|s| s.unresolvable.is_some()), "{tokens:?}");
    }

    #[test]
    fn the_token_file_overrides_everything() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("openclaw.json"), r#"{"gateway":{"auth":{"token":"tok-a"}}}"#).unwrap();
        std::fs::write(dir.path().join("token"), "tok-file\n").unwrap();
        let mut at = locations(dir.path());
        at.token_file = Some(dir.path().join("token"));
        let tokens = read(&at);
        assert_eq!(effective(&tokens), Some(&b"tok-file"[..]));
        assert!(!tokens.agree());
    }
}
