//! The version of the `openclaw` CLI this machine runs, read from its npm package's `package.json`: the
//! executable is found, never run.
//!
//! Where: the configured path when there is one; else the first `openclaw` on `PATH`; else the usual install
//! prefixes, because a LaunchAgent's or a systemd user unit's PATH is bare (`/usr/bin:/bin:/usr/sbin:/sbin`):
//! Homebrew on Apple silicon (`/opt/homebrew/bin`) and Intel (`/usr/local/bin`), npm's global prefix
//! (`$NPM_CONFIG_PREFIX/bin`, `~/.npm-global/bin`), `~/.local/bin`, and on Windows `%APPDATA%\npm`.
//!
//! From the executable to the package: its symlinks resolved (npm links `bin/openclaw` to
//! `lib/node_modules/openclaw/openclaw.mjs`; Homebrew links through its Cellar), then the nearest
//! `package.json` above it whose `name` is `openclaw`; when the executable is a wrapper script or npm's
//! Windows shim (`openclaw.cmd`, not a link), the `lib/node_modules/openclaw` or `node_modules/openclaw` beside
//! it. The file is read only when its size or modification time changed since the last round.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The largest `package.json` read (openclaw's is ~10 KiB).
pub const MAX_PACKAGE_JSON: u64 = 1 << 20;

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `[cli] path`: the only place looked at when set.
    pub configured: Option<PathBuf>,
    /// The `PATH` to search.
    pub path_env: Option<OsString>,
    /// The user's home, for `~/.npm-global` and `~/.local`.
    pub home: Option<PathBuf>,
    /// `NPM_CONFIG_PREFIX`, npm's global prefix when set.
    pub npm_prefix: Option<PathBuf>,
    /// `%APPDATA%` (Windows).
    pub appdata: Option<PathBuf>,
    /// The last package file read, its size and modification time, and what it said.
    last: Option<(PathBuf, u64, Option<SystemTime>, Found)>,
}

/// The CLI found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The executable found (before its links were resolved).
    pub executable: PathBuf,
    /// The package file read.
    pub package_json: PathBuf,
    /// Its `version` (the gateway's alphabet, at most [`crate::readiness::MAX_VERSION`] characters).
    pub version: String,
}

/// Why no version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No `openclaw` executable anywhere looked.
    #[error("no openclaw executable at {looked}")]
    NotFound {
        /// Where it looked, for the log.
        looked: String,
    },
    /// An executable, but no `package.json` named `openclaw` above it or beside it.
    #[error("{executable}: no package.json of the openclaw package above or beside it")]
    NoPackage {
        /// The executable.
        executable: String,
    },
    /// The package file could not be read or has no valid version.
    #[error("{file}: {detail}")]
    Unreadable {
        /// The file.
        file: String,
        /// What was wrong.
        detail: String,
    },
}

crate::labels!(Failure {
    Failure::NotFound { .. } => "not_found",
    Failure::NoPackage { .. } => "no_package",
    Failure::Unreadable { .. } => "unreadable",
});

/// What one read returns.
pub type Outcome = Result<Found, Failure>;

impl From<crate::CutOff> for Outcome {
    fn from(_: crate::CutOff) -> Self {
        Err(Failure::Unreadable { file: "openclaw".into(), detail: "the read took longer than its timeout".into() })
    }
}

impl Target {
    /// A target reading this process's environment: `PATH`, `HOME` (`USERPROFILE`), `NPM_CONFIG_PREFIX`,
    /// `APPDATA`.
    pub fn from_env(configured: Option<PathBuf>) -> Target {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Target {
            configured,
            path_env: var("PATH"),
            home: var("HOME").or_else(|| var("USERPROFILE")).map(PathBuf::from),
            npm_prefix: var("NPM_CONFIG_PREFIX").or_else(|| var("npm_config_prefix")).map(PathBuf::from),
            appdata: var("APPDATA").map(PathBuf::from),
            last: None,
        }
    }

    /// The directories searched after `PATH`, in order.
    fn prefixes(&self) -> Vec<PathBuf> {
        let mut dirs = vec![PathBuf::from("/opt/homebrew/bin"), PathBuf::from("/usr/local/bin")];
        if let Some(prefix) = &self.npm_prefix {
            dirs.push(prefix.join("bin"));
            dirs.push(prefix.clone());
        }
        if let Some(home) = &self.home {
            dirs.push(home.join(".npm-global/bin"));
            dirs.push(home.join(".local/bin"));
        }
        if let Some(appdata) = &self.appdata {
            dirs.push(appdata.join("npm"));
        }
        dirs
    }

    /// The executable: the configured one, else the first on `PATH`, else the first in [`Target::prefixes`].
    fn executable(&self) -> Result<PathBuf, Failure> {
        if let Some(path) = &self.configured {
            return if path.is_file() {
                Ok(path.clone())
            } else {
                Err(Failure::NotFound { looked: path.display().to_string() })
            };
        }
        let path_dirs: Vec<PathBuf> =
            self.path_env.as_ref().map(|p| std::env::split_paths(p).collect()).unwrap_or_default();
        let names: &[&str] = if cfg!(windows) { &["openclaw.cmd", "openclaw.exe", "openclaw"] } else { &["openclaw"] };
        for dir in path_dirs.iter().chain(self.prefixes().iter()) {
            for name in names {
                let candidate = dir.join(name);
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        Err(Failure::NotFound { looked: "PATH and the usual prefixes".into() })
    }

    /// Find and read, on the calling thread (file system calls only).
    pub fn read(&mut self) -> Outcome {
        let executable = self.executable()?;
        let package_json = package_of(&executable)
            .ok_or_else(|| Failure::NoPackage { executable: executable.display().to_string() })?;
        let unreadable = |detail: String| Failure::Unreadable { file: package_json.display().to_string(), detail };
        let meta = std::fs::metadata(&package_json).map_err(|err| unreadable(err.to_string()))?;
        let modified = meta.modified().ok();
        if let Some((file, len, at, found)) = &self.last {
            if *file == package_json && *len == meta.len() && *at == modified && found.executable == executable {
                return Ok(found.clone());
            }
        }
        if meta.len() > MAX_PACKAGE_JSON {
            return Err(unreadable(format!("{} bytes, more than a package file holds", meta.len())));
        }
        let bytes = std::fs::read(&package_json).map_err(|err| unreadable(err.to_string()))?;
        let version = version_of(&bytes).ok_or_else(|| unreadable("no valid \"version\"".into()))?;
        let found = Found { executable, package_json: package_json.clone(), version };
        self.last = Some((package_json, meta.len(), modified, found.clone()));
        Ok(found)
    }
}

impl crate::Probe for Target {
    const KIND: &'static str = "cli_version";
    type Outcome = Outcome;

    async fn probe(&mut self, _timeout: Duration) -> Outcome {
        // A few stats and one small read: on the blocking pool, so a slow disk never holds a probe thread.
        let mut target = self.clone();
        match tokio::task::spawn_blocking(move || {
            let outcome = target.read();
            (target, outcome)
        })
        .await
        {
            Ok((target, outcome)) => {
                *self = target;
                outcome
            }
            Err(join_error) => Err(Failure::Unreadable { file: "openclaw".into(), detail: join_error.to_string() }),
        }
    }
}

/// The `package.json` of the openclaw package `executable` belongs to.
pub fn package_of(executable: &Path) -> Option<PathBuf> {
    let is_ours = |file: &Path| {
        std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.len() <= MAX_PACKAGE_JSON)
            && std::fs::read(file).ok().is_some_and(|bytes| {
                serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| v["name"] == "openclaw")
            })
    };
    // The links resolved: the nearest package.json above the real file.
    if let Ok(real) = std::fs::canonicalize(executable) {
        for dir in real.ancestors().skip(1).take(8) {
            let candidate = dir.join("package.json");
            if is_ours(&candidate) {
                return Some(candidate);
            }
        }
    }
    // A wrapper script or npm's Windows shim: the package installed beside it.
    let dir = executable.parent()?;
    for beside in [
        dir.join("node_modules/openclaw"),
        dir.join("../lib/node_modules/openclaw"),
        dir.join("../libexec/lib/node_modules/openclaw"),
    ] {
        let candidate = beside.join("package.json");
        if is_ours(&candidate) {
            return Some(candidate);
        }
    }
    None
}

/// The `version` of a package file, when it has the gateway's shape.
pub fn version_of(package_json: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(package_json).ok()?;
    let version = value["version"].as_str()?;
    crate::readiness::valid_version(version).then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path, name: &str, version: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("package.json");
        std::fs::write(
            &file,
            format!(r#"{{"name":"{name}","version":"{version}","bin":{{"openclaw":"openclaw.mjs"}}}}"#),
        )
        .unwrap();
        file
    }

    #[cfg(unix)]
    #[test]
    fn an_npm_link_resolves_to_its_package_and_a_rewrite_is_read_again() {
        let root = tempfile::tempdir().unwrap();
        let pkg_dir = root.path().join("lib/node_modules/openclaw");
        let file = package(&pkg_dir, "openclaw", "2026.5.1");
        std::fs::write(pkg_dir.join("openclaw.mjs"), "#!/usr/bin/env node\n").unwrap();
        // A package.json of another name between the two is passed over.
        package(&pkg_dir.join("dist"), "not-openclaw", "9.9.9");
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("../lib/node_modules/openclaw/openclaw.mjs", root.path().join("bin/openclaw"))
            .unwrap();
        let mut target = Target { path_env: Some(root.path().join("bin").into_os_string()), ..Target::default() };
        let found = target.read().unwrap();
        assert_eq!(found.version, "2026.5.1");
        assert_eq!(found.package_json, std::fs::canonicalize(&file).unwrap());
        // `brew upgrade`: the file changes, the next read says so.
        std::fs::write(&file, r#"{"name":"openclaw","version":"2026.9.6"}"#).unwrap();
        assert_eq!(target.read().unwrap().version, "2026.9.6");
    }

    #[test]
    fn a_shim_beside_its_package_is_read_and_nothing_found_is_said() {
        let root = tempfile::tempdir().unwrap();
        package(&root.path().join("node_modules/openclaw"), "openclaw", "2026.9.6");
        let shim = root.path().join(if cfg!(windows) { "openclaw.cmd" } else { "openclaw" });
        std::fs::write(&shim, "@ECHO off\r\nnode \"%~dp0\\node_modules\\openclaw\\openclaw.mjs\" %*\r\n").unwrap();
        let mut target = Target { configured: Some(shim.clone()), ..Target::default() };
        assert_eq!(target.read().unwrap().version, "2026.9.6");
        let mut nowhere = Target { configured: Some(root.path().join("missing")), ..Target::default() };
        assert!(matches!(nowhere.read(), Err(Failure::NotFound { .. })));
        let lone = root.path().join("lone");
        std::fs::create_dir_all(&lone).unwrap();
        std::fs::write(lone.join("openclaw"), "").unwrap();
        let mut alone = Target { configured: Some(lone.join("openclaw")), ..Target::default() };
        assert!(matches!(alone.read(), Err(Failure::NoPackage { .. })));
    }

    #[test]
    fn a_version_is_bounded_to_the_gateways_alphabet() {
        assert_eq!(version_of(br#"{"version":"2026.10.0-beta.1"}"#).as_deref(), Some("2026.10.0-beta.1"));
        assert_eq!(version_of(br#"{"version":"1.0\n{evil=\"x\"}"}"#), None);
        assert_eq!(version_of(format!(r#"{{"version":"{}"}}"#, "9".repeat(40)).as_bytes()), None);
        assert_eq!(version_of(b"not json"), None);
    }
}
