//! The state file: the five-minute uptime buckets, and since when each gateway has listened beyond loopback,
//! saved so they survive a restart (a host exposed for three days with a nightly restart crosses the 24 h
//! red line all the same).
//!
//! Written atomically (a temporary file in the same directory, fsync, rename) every minute and at shutdown.
//! A missing file is a first start; a corrupt or truncated one is reported in the log and ignored, never fatal.
//! Counters are not saved: Prometheus handles a counter reset; only the buckets have no other home.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::private_files::PrivateDir;
use crate::record::Recorder;

/// The file's format, version 1: `{"version": 1, "forwards": {"name": [bucket, ...]}, "exposed_since":
/// {"gateway": unix seconds}}`. Every key beside `version` is a kind's record's (`forwards`: the uptime
/// record's buckets; `exposed_since`: the exposure kind's), each read back by its record, which skips a damaged
/// entry alone. `exposed_since` came later: a file without it reads as none exposed, and an older build
/// ignores it.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// The kinds' records' keys, each read back by its record.
    #[serde(flatten)]
    kinds: serde_json::Map<String, serde_json::Value>,
}

/// The only version this build reads and writes.
const VERSION: u32 = 1;

/// The state of `recorder` as the file's bytes.
fn encode(recorder: &Recorder) -> Vec<u8> {
    let file = StateFile { version: VERSION, kinds: recorder.saved_kinds().into_iter().collect() };
    serde_json::to_vec(&file).expect("JSON values serialize")
}

/// Hand the keys in `bytes` to the kinds' records; returns how many keys there were.
fn decode_into(bytes: &[u8], recorder: &Recorder) -> Result<usize, String> {
    let version: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON (corrupt or truncated): {e}"))?;
    if version["version"] != VERSION {
        return Err(format!("unknown state version {}", version["version"]));
    }
    let file: StateFile = serde_json::from_value(version).map_err(|e| e.to_string())?;
    recorder.restore_kinds(&file.kinds);
    Ok(file.kinds.len())
}

/// How often the buckets are saved while running.
pub const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Load `path` into the recorder. Problems are logged and otherwise ignored.
pub fn load(path: &Path, recorder: &Recorder) {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Err(err) = crate::private_files::check_readable_dir(dir) {
        tracing::warn!(file = %path.display(), error = %err, "the state file's directory is not this user's alone; starting without saved buckets");
        return;
    }
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => {
            tracing::warn!(file = %path.display(), error = %err, "cannot read the state file; starting without saved buckets");
            return;
        }
    };
    match decode_into(&text, recorder) {
        Ok(keys) => tracing::info!(file = %path.display(), keys, "read the state file"),
        Err(problem) => {
            tracing::warn!(file = %path.display(), problem = %problem, "the state file is unusable and was ignored")
        }
    }
}

/// Save the recorder's buckets to `path` atomically, through its directory held open ([`PrivateDir`]: checked,
/// then every file reached relative to it).
pub fn save(path: &Path, recorder: &Recorder) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = PrivateDir::open(&dir, false)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let temporary = format!(".{name}.tmp");
    let mut file = dir.create_fresh(&temporary)?;
    file.write_all(&encode(recorder))?;
    file.sync_all()?;
    drop(file);
    dir.rename(&temporary, name)?;
    dir.sync()
}

#[cfg(test)]
mod tests {
    /// A time in the state file comes back to the last bit: serde_json's default float parser can land one
    /// ulp off (CI saw an exposure's start saved as 1796459741.4850225 restored as ...0223, so the restarted
    /// exporter's `exposed_since` moved); its `float_roundtrip` feature parses exactly.
    #[test]
    fn a_time_in_the_state_file_comes_back_to_the_last_bit() {
        let at: f64 = 1_796_459_741.485_022_5;
        let text = serde_json::to_vec(&serde_json::json!({ "exposed_since": { "g": at } })).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(back["exposed_since"]["g"].as_f64(), Some(at), "{}", String::from_utf8_lossy(&text));
    }

    /// Each key is its record's: a damaged `forwards` (the buckets) costs the buckets alone, and the exposure
    /// kind's `exposed_since` beside it still comes back.
    #[test]
    fn a_damaged_key_costs_only_itself() {
        let recorder = crate::record::Recorder::with_kinds(&crate::kinds::records(), Vec::new());
        let mut config = crate::config::Config::load(None).unwrap();
        let interval = std::time::Duration::from_secs(1);
        config.gateways = vec![crate::config::Gateway {
            name: "g".into(),
            port: 18789,
            interval,
            allowed: vec![],
            docker_socket: None,
        }];
        recorder.apply_config(&config);
        let file = br#"{"version": 1, "forwards": {"mac": "not a list"}, "exposed_since": {"g": 1800000000.0}}"#;
        assert_eq!(super::decode_into(file, &recorder), Ok(2));
        assert_eq!(recorder.saved_kinds()["exposed_since"], serde_json::json!({ "g": 1_800_000_000.0 }));
        let buckets = &recorder.saved_kinds()["forwards"];
        assert!(buckets.as_object().is_some_and(|forwards| !forwards.contains_key("mac")), "{buckets}");
        let wrong_version = br#"{"version": 2, "forwards": {}}"#;
        assert!(super::decode_into(wrong_version, &recorder).is_err());
    }
}
