//! Opening the queue: the directory checked and locked, every segment read and planned before any file
//! changes, then torn tails cut, damage repaired and quarantined, and the acknowledgement checked.

use super::files::*;
use super::*;

impl Queue {
    /// Open (or create) the queue in `dir`: check the directory is the user's own, take its lock, then read
    /// every segment; only when all were read are torn tails cut and damaged files repaired.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Queue, OpenError> {
        let io_error = |source| OpenError::Io { dir: dir.to_owned(), source };
        let named =
            |path: &Path, err: io::Error| io_error(io::Error::new(err.kind(), format!("{}: {err}", path.display())));
        // Held open from here on: every file below is reached through this descriptor, never by the path again.
        let held = PrivateDir::open(dir, true).map_err(io_error)?;
        let lock = lock(&held)?;
        let mut found = Found::default();
        for repaired in held.names().map_err(io_error)?.into_iter().filter(|name| name.ends_with(".seg.repair")) {
            finish_repair(&held, &repaired).map_err(|e| named(&held.display(&repaired), e))?;
        }
        let stored_next = read_next(&held);
        let mut names: Vec<(u64, PathBuf)> = held
            .names()
            .map_err(io_error)?
            .into_iter()
            .filter_map(|name| segment_seq(&name).map(|seq| (seq, held.display(&name))))
            .collect();
        names.sort();
        let mut scans = Vec::with_capacity(names.len());
        for (i, (first_seq, path)) in names.iter().enumerate() {
            let end = match (names.get(i + 1), stored_next) {
                (Some((next, _)), _) => End::Next(*next),
                (None, Some(next)) => End::Recorded(next),
                (None, None) => End::Unknown,
            };
            match scan(&held, path, *first_seq, end) {
                Ok(scanned) => scans.push((*first_seq, scanned)),
                // Vanished between the listing and the read: its rounds are a gap, counted below.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(named(path, err)),
            }
        }
        let highest = scans
            .iter()
            .flat_map(|(first, s)| [*first, s.segment.records.last().map_or(0, |r| r.seq + 1)])
            .chain(stored_next)
            .max()
            .unwrap_or(0);
        let lowest = scans.first().map_or(highest, |(first, _)| *first);
        let acked_read = read_acked(&held);
        let fresh = matches!(acked_read, Ok(None)) && scans.is_empty();
        let acked = acked_to_use(acked_read, (lowest, highest), scans.is_empty(), &mut found);
        let mut queue = Queue {
            dir: held,
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(64 * 1024, 8 * 1024 * 1024),
            segments: VecDeque::new(),
            next_seq: highest.max(acked),
            acked,
            persisted_acked: acked,
            in_flight_end: acked,
            dropped_in_flight: Losses::default(),
            losses: Losses::default(),
            found_at_open: Found::default(),
            next_failing: false,
            _lock: lock,
        };
        // Segments deleted before the first one left (or all of them).
        let first_present = scans.first().map_or(highest, |(first, _)| *first);
        found.missing += first_present.saturating_sub(acked);
        let newest = scans.len().saturating_sub(1);
        for (i, (_, mut scanned)) in scans.into_iter().enumerate() {
            // Appends go to the newest segment only; an older one is complete (a segment sealed after a failed
            // write stays sealed across a restart).
            scanned.segment.sealed |= i < newest;
            let path = scanned.segment.path.clone();
            if let Some(moved) = apply(&queue.dir, &path, &scanned.fix).map_err(|e| named(&path, e))? {
                found.quarantined.push((path.clone(), moved));
            }
            for mut damage in scanned.damage {
                damage.count_from(acked);
                found.damage.push(damage);
            }
            found.missing += scanned.missing.end.saturating_sub(scanned.missing.start.max(acked));
            if scanned.segment.records.is_empty() {
                match queue.dir.remove(name_of(&path)) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(named(&path, err)),
                    _ => {}
                }
            } else {
                queue.segments.push_back(scanned.segment);
            }
        }
        prune_quarantine(&queue.dir);
        queue.skip_lost_front();
        if found.acked_problem.is_some() || fresh || queue.acked != acked {
            // Write the acknowledgement the queue now uses, so damage is reported once and a missing file
            // always means damage. Until it is written, nothing counts as acknowledged on disk (0: no segment
            // is collected) and the sender writes it before anything more is sent.
            queue.persisted_acked = 0;
            if let Err(err) = queue.write_acked() {
                tracing::warn!(dir = %dir.display(), error = %err, "remote-write queue: cannot write the acknowledgement yet; retried before the next send");
            }
        }
        queue.found_at_open = found;
        queue.collect_acked().map_err(io_error)?;
        Ok(queue)
    }
}

/// The acknowledgement the queue uses: the file's when it is within the queue (`lowest..=highest` of the
/// segments read); the end of an empty queue's when a new queue has none; else the lowest round still present,
/// with what was wrong in `found` (a value past the end, the file missing beside segments, or damaged).
fn acked_to_use(
    read: Result<Option<u64>, String>,
    (lowest, highest): (u64, u64),
    no_segments: bool,
    found: &mut Found,
) -> u64 {
    match read {
        Ok(Some(acked)) if acked <= highest => acked,
        Ok(Some(acked)) => {
            found.acked_problem = Some(format!("holds {acked}, past the queue's end ({highest})"));
            lowest
        }
        Ok(None) if no_segments => highest,
        Ok(None) => {
            found.acked_problem = Some("is missing".into());
            lowest
        }
        Err(problem) => {
            found.acked_problem = Some(problem);
            lowest
        }
    }
}
