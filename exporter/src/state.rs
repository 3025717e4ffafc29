//! The state file: the five-minute uptime buckets, saved so they survive a restart.
//!
//! Written atomically (a temporary file in the same directory, fsync, rename) every minute and at shutdown.
//! A missing file is a first start; a corrupt or truncated one is reported in the log and ignored, never fatal.
//! Counters are not saved: Prometheus handles a counter reset; only the buckets have no other home.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::recorder::Recorder;

/// How often the buckets are saved while running.
pub const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Load `path` into the recorder. Problems are logged and otherwise ignored.
pub fn load(path: &Path, recorder: &Recorder) {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => {
            tracing::warn!(file = %path.display(), error = %err, "cannot read the state file; starting without saved buckets");
            return;
        }
    };
    let restored = serde_json::from_slice::<serde_json::Value>(&text)
        .map_err(|e| format!("not valid JSON (corrupt or truncated): {e}"))
        .and_then(|saved| recorder.restore_buckets(&saved));
    match restored {
        Ok(forwards) => tracing::info!(file = %path.display(), forwards, "restored the uptime buckets"),
        Err(problem) => {
            tracing::warn!(file = %path.display(), problem = %problem, "the state file is unusable and was ignored")
        }
    }
}

/// Save the recorder's buckets to `path` atomically.
pub fn save(path: &Path, recorder: &Recorder) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::fs::create_dir_all(&dir)?;
    let temporary = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("state")));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(recorder.save_buckets().to_string().as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}
