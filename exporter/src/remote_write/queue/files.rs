//! The queue's small files: `next`, `acked` (each with a CRC), `lock` and `owner`, the quarantine's pruning and
//! a segment's name; each reached through the directory the queue holds open ([`PrivateDir`]).

use super::*;

/// A segment file's first sequence number, from its name.
pub(super) fn segment_seq(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 16).then(|| u64::from_str_radix(stem, 16).ok())?
}

/// The first bytes of the `next` file.
pub(super) const NEXT_MAGIC: &[u8; 8] = b"OCRWNX01";
/// The first word of the `acked` file.
pub(super) const ACKED_MAGIC: &str = "OCRWACK1";

/// The `next` file's number, when it is there and checks.
pub(super) fn read_next(dir: &PrivateDir) -> Option<u64> {
    let bytes = dir.read("next").ok()?;
    let bytes = bytes.get(..20)?;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    (bytes.starts_with(NEXT_MAGIC) && crc32fast::hash(&bytes[..16]) == crc)
        .then(|| u64::from_le_bytes(bytes[8..16].try_into().expect("8")))
}

/// `acked`'s text: `OCRWACK1 <n> <crc32 of "OCRWACK1 <n>", hex>`.
pub(super) fn encode_acked(acked: u64) -> String {
    let body = format!("{ACKED_MAGIC} {acked}");
    format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
}

/// The `acked` file's number: `None` when there is no file; an error saying what is wrong with a damaged one.
/// A bare number (the format before the CRC) is read as it is.
pub(super) fn read_acked(dir: &PrivateDir) -> Result<Option<u64>, String> {
    let text = match dir.read("acked") {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot be read ({err})")),
    };
    let text = String::from_utf8_lossy(&text);
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [number] => number.parse().map(Some).map_err(|_| "is not a number".to_owned()),
        [ACKED_MAGIC, number, crc] => {
            let body = format!("{ACKED_MAGIC} {number}");
            let checks = u32::from_str_radix(crc, 16).is_ok_and(|crc| crc == crc32fast::hash(body.as_bytes()));
            match number.parse() {
                Ok(acked) if checks => Ok(Some(acked)),
                _ => Err("fails its checksum".to_owned()),
            }
        }
        _ => Err("is damaged (not the acknowledgement's format)".to_owned()),
    }
}

/// Keep the newest [`KEEP_QUARANTINED`] damaged files in the directory's quarantine, when it has one.
pub(super) fn prune_quarantine(dir: &PrivateDir) {
    if !dir.names().is_ok_and(|names| names.iter().any(|name| name == QUARANTINE)) {
        return;
    }
    let Ok(quarantine) = dir.subdir(QUARANTINE, true) else { return };
    let Ok(names) = quarantine.names() else { return };
    let mut files: Vec<(std::time::SystemTime, String)> =
        names.into_iter().filter_map(|name| Some((quarantine.modified(&name).ok()?, name))).collect();
    files.sort();
    let excess = files.len().saturating_sub(KEEP_QUARANTINED);
    for (_, name) in files.into_iter().take(excess) {
        let _ = quarantine.remove(&name);
    }
}

pub(super) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Take the directory's lock and write our pid to `owner`; name the holder when it is taken.
pub(super) fn lock(dir: &PrivateDir) -> Result<File, OpenError> {
    let io_error = |source| OpenError::Io { dir: dir.path().to_owned(), source };
    let file = dir.open_rw("lock").map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let owner = dir.read("owner").map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            let holder = match owner {
                Ok(pid) if !pid.trim().is_empty() => format!("pid {}", pid.trim().chars().take(20).collect::<String>()),
                _ => "its pid is not known".to_owned(),
            };
            return Err(OpenError::Locked { dir: dir.path().to_owned(), holder });
        }
        Err(fs::TryLockError::Error(err)) => return Err(io_error(err)),
    }
    // The owner file is for people and the error above; the lock is what counts.
    let mut owner = dir.create_fresh("owner").map_err(io_error)?;
    owner.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(io_error)?;
    Ok(file)
}
