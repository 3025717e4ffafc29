//! The durable on-disk queue of remote-write rounds: append-only segment files, an acknowledgement file, the
//! durable next sequence number, a lock file, and `quarantine/` for damaged files.
//!
//! A segment starts with the 8-byte file header `OCRWQ002`; each record is one sampling round:
//! `[magic "OCRW"][len u32][crc32 u32][seq u64][timestamp_ms i64][samples u32][payload]` (little endian; the
//! CRC covers the length and everything after the CRC), the payload a snappy-compressed `WriteRequest`. The
//! magic lets a reader find the next record after damage: a record whose CRC fails is skipped and the reader
//! resynchronises on the next magic whose record checks, so a flipped bit loses that record only. A segment
//! is known by its name (`<first sequence number, hex>.seg`) and its records, not only by its file header: a
//! damaged header costs nothing. Segments written before the magic existed (no file header, 28-byte records)
//! are still read, never appended to.
//!
//! Records are written and `fsync`ed before [`Queue::append`] returns; then the file `next` records the next
//! sequence number (with a CRC), so a later open knows how many rounds the newest segment held even when its
//! end is damaged, and numbers never go backwards. After a failed write or fsync (a full disk) the segment is
//! cut back to its last good length, or sealed when even that fails, so no record ever sits at an offset the
//! index does not know. Segments rotate at [`Queue::segment_bytes`]; a segment's name is never reused while
//! the index holds it. The file `acked` holds the first sequence number not yet acknowledged and its CRC,
//! replaced atomically (temporary file, fsync, rename). The file `lock` is held exclusively while the queue is
//! open (one exporter per directory) and `owner` names the holder's pid. The directory is the user's own,
//! 0700, and no file in it is written through a symbolic link ([`crate::private_files`]).
//!
//! Damage costs only what is damaged, counted: a segment with a damaged record, a damaged file header or a
//! first record that does not parse is never cut; its readable records are copied to a clean file under its
//! name, and the original is moved into `quarantine/` (the newest [`KEEP_QUARANTINED`] kept). A segment file
//! that vanished (a cleanup tool, a person) costs its rounds, counted `missing`, and nothing else: reads,
//! appends and `max_bytes` go on. A damaged `acked` (no CRC match, not a number, or past the queue's end)
//! keeps every queued round, which is sent again (at least once, never lost).
//!
//! The guarantee, for a crash at any moment (kill -9, power loss): every round whose append returned Ok is
//! kept; a torn record at a segment's end (its append never returned) is cut off at the next open; a batch the
//! receiver acknowledged is sent again only when the crash came before its acknowledgement reached the disk
//! (at most one batch twice). Over `max_bytes`, whole segments go, oldest first, counted.

mod segment;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::private_files;
use segment::{
    apply, encode_record, finish_repair, read_record, scan, write_at_end, End, Format, Segment, FILE_HEADER,
    MAX_PAYLOAD,
};
pub use segment::{Damage, RecordInfo, Round};

/// Damaged segment files kept in `quarantine/` for a person to look at; older ones are deleted at open.
pub const KEEP_QUARANTINED: usize = 8;

/// Why a round did not reach the queue or left it without being sent: the `reason` label's fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was over `max_bytes`: its oldest segment went.
    OverMaxBytes,
    /// The disk (or a quota) was full when the round was written.
    DiskFull,
    /// Another I/O error writing the round (or no queue could be opened), or a round that could not be encoded.
    IoError,
    /// The round's record no longer reads back whole (a flipped bit, a damaged sector, a cut file).
    Corrupt,
    /// The round's segment file is gone (deleted by a cleanup tool or a person).
    Missing,
    /// The receiver refused the round for good (400, 409, 422).
    Rejected,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 6] = [
        DropReason::OverMaxBytes,
        DropReason::DiskFull,
        DropReason::IoError,
        DropReason::Corrupt,
        DropReason::Missing,
        DropReason::Rejected,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::OverMaxBytes => "over_max_bytes",
            DropReason::DiskFull => "disk_full",
            DropReason::IoError => "io_error",
            DropReason::Corrupt => "corrupt",
            DropReason::Missing => "missing",
            DropReason::Rejected => "rejected",
        }
    }

    /// The reason an I/O error stands for.
    pub fn of(err: &io::Error) -> DropReason {
        let full = matches!(err.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded);
        if full {
            DropReason::DiskFull
        } else {
            DropReason::IoError
        }
    }
}

/// Rounds and their samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// Rounds.
    pub rounds: u64,
    /// Their samples (0 where the rounds could not be read).
    pub samples: u64,
}

impl Loss {
    fn add(&mut self, record: &RecordInfo) {
        self.rounds += 1;
        self.samples += u64::from(record.samples);
    }

    fn merge(&mut self, other: Loss) {
        self.rounds += other.rounds;
        self.samples += other.samples;
    }
}

/// Rounds that left the queue without being sent, by reason, not yet counted by the caller.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Losses {
    /// Dropped to stay within `max_bytes`.
    pub over_max_bytes: Loss,
    /// Their segment file vanished.
    pub missing: Loss,
    /// Their record no longer reads back whole.
    pub corrupt: Loss,
}

impl Losses {
    /// Each reason with its loss.
    pub fn each(&self) -> [(DropReason, Loss); 3] {
        [
            (DropReason::OverMaxBytes, self.over_max_bytes),
            (DropReason::Missing, self.missing),
            (DropReason::Corrupt, self.corrupt),
        ]
    }
}

/// What a successful append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The round's sequence number.
    pub seq: u64,
}

/// Rounds an acknowledgement (or a rejection) took out of the queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// Rounds still queued that the acknowledgement covered.
    pub rounds: u64,
    /// Their samples.
    pub samples: u64,
}

/// What [`Queue::peek`] found.
#[derive(Debug, Default)]
pub struct Peeked {
    /// The oldest unacknowledged rounds, in order.
    pub rounds: Vec<Round>,
    /// Records that no longer read back whole: taken out of the queue (counted `corrupt`), for the log.
    pub corrupt: Vec<Damage>,
    /// Segment files that vanished: taken out of the queue (their rounds counted `missing`), for the log.
    pub vanished: Vec<PathBuf>,
}

/// What opening the queue found and repaired, for the log and the account.
#[derive(Debug, Default)]
pub struct Found {
    /// Damaged and torn bytes (each with the unacknowledged rounds it cost).
    pub damage: Vec<Damage>,
    /// Unacknowledged rounds whose segment files are gone.
    pub missing: u64,
    /// Damaged segment files moved aside: (where it was, where it is now).
    pub quarantined: Vec<(PathBuf, PathBuf)>,
    /// Why the acknowledgement on disk was not used (its rounds are sent again), when it was not.
    pub acked_problem: Option<String>,
}

impl Found {
    /// Unacknowledged rounds lost to damage.
    pub fn corrupt(&self) -> u64 {
        self.damage.iter().map(|d| d.rounds).sum()
    }
}

/// Why a queue could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the directory's lock.
    #[error(
        "remote_write.queue_dir = \"{dir}\" is in use by another exporter ({holder}); one exporter per queue directory"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// `pid N`, or why the holder is not known.
        holder: String,
    },
    /// The directory or a file in it could not be read or written, or is not private.
    #[error("remote_write.queue_dir = \"{dir}\": {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The queue; see the module documentation.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    max_bytes: u64,
    /// Segments rotate at this size.
    pub segment_bytes: u64,
    segments: VecDeque<Segment>,
    next_seq: u64,
    /// The first unacknowledged sequence number, in memory (what the receiver has).
    acked: u64,
    /// The same, as the `acked` file holds it.
    persisted_acked: u64,
    /// The end of the batch [`Queue::peek`] last handed out (the rounds before it may be in flight).
    in_flight_end: u64,
    /// Rounds of that batch whose segment went (for `max_bytes`, or vanished) while it was in flight: sent
    /// when the batch is acknowledged, dropped for that reason when it is not.
    dropped_in_flight: Losses,
    /// Rounds that left the queue unsent, not yet handed to the account ([`Queue::take_losses`]).
    losses: Losses,
    /// What opening found, for the log and the account.
    pub found_at_open: Found,
    /// The last failure to record the next sequence number (logged once until it works again).
    next_failing: bool,
    /// Held for the queue's life: the exclusive lock on `lock`.
    _lock: File,
}

/// A segment file's first sequence number, from its name.
fn segment_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 16).then(|| u64::from_str_radix(stem, 16).ok())?
}

impl Queue {
    /// Open (or create) the queue in `dir`: check the directory is the user's own, take its lock, then read
    /// every segment; only when all were read are torn tails cut and damaged files repaired.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Queue, OpenError> {
        let io_error = |source| OpenError::Io { dir: dir.to_owned(), source };
        let named =
            |path: &Path, err: io::Error| io_error(io::Error::new(err.kind(), format!("{}: {err}", path.display())));
        private_files::ensure_dir(dir, true).map_err(io_error)?;
        let lock = lock(dir)?;
        let quarantine = dir.join("quarantine");
        let mut found = Found::default();
        let mut repairs = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            if path.to_str().is_some_and(|p| p.ends_with(".seg.repair")) {
                repairs.push(path);
            }
        }
        for repaired in repairs {
            finish_repair(&repaired).map_err(|e| named(&repaired, e))?;
        }
        let stored_next = read_next(dir);
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io_error)?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                segment_seq(&path).map(|seq| (seq, path))
            })
            .collect();
        names.sort();
        let mut scans = Vec::with_capacity(names.len());
        for (i, (first_seq, path)) in names.iter().enumerate() {
            let end = match (names.get(i + 1), stored_next) {
                (Some((next, _)), _) => End::Next(*next),
                (None, Some(next)) => End::Recorded(next),
                (None, None) => End::Unknown,
            };
            match scan(path, *first_seq, end) {
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
        let acked_read = read_acked(dir);
        let fresh = matches!(acked_read, Ok(None)) && scans.is_empty();
        let acked = match acked_read {
            Ok(Some(acked)) if acked <= highest => acked,
            Ok(Some(acked)) => {
                found.acked_problem = Some(format!("holds {acked}, past the queue's end ({highest})"));
                lowest
            }
            Ok(None) if scans.is_empty() => highest,
            Ok(None) => {
                found.acked_problem = Some("is missing".into());
                lowest
            }
            Err(problem) => {
                found.acked_problem = Some(problem);
                lowest
            }
        };
        let mut queue = Queue {
            dir: dir.to_owned(),
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
            if let Some(moved) = apply(&path, &scanned.fix, &quarantine).map_err(|e| named(&path, e))? {
                found.quarantined.push((path.clone(), moved));
            }
            for mut damage in scanned.damage {
                damage.count_from(acked);
                found.damage.push(damage);
            }
            found.missing += scanned.missing.end.saturating_sub(scanned.missing.start.max(acked));
            if scanned.segment.records.is_empty() {
                match fs::remove_file(&path) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(named(&path, err)),
                    _ => {}
                }
            } else {
                queue.segments.push_back(scanned.segment);
            }
        }
        prune_quarantine(&quarantine);
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

    /// The sequence number the next appended round gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Change the size limit (a reload); it applies at the next append.
    pub fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes;
    }

    /// Rounds that left the queue unsent since the last call, by reason: the caller counts them in the same
    /// critical section as [`Queue::queued_rounds`], so the account always adds up.
    pub fn take_losses(&mut self) -> Losses {
        std::mem::take(&mut self.losses)
    }

    /// Append one round and fsync it; then drop the oldest segments while over `max_bytes`. On an error
    /// nothing of the round stays on disk or in the index, and the next append starts clean.
    pub fn append(&mut self, payload: &[u8], timestamp_ms: i64, samples: u32) -> io::Result<Appended> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_PAYLOAD)
            .ok_or_else(|| invalid("round too large".into()))?;
        let seq = self.next_seq;
        let mut tries = 0;
        let record = loop {
            tries += 1;
            let needs_new = self
                .segments
                .back()
                .is_none_or(|s| s.sealed || s.format != Format::V2 || s.bytes >= self.segment_bytes);
            if needs_new {
                self.new_segment()?;
            }
            let segment = self.segments.back_mut().expect("pushed above");
            let info = RecordInfo { seq, offset: segment.bytes, len, timestamp_ms, samples };
            let record = encode_record(&info, payload);
            match write_at_end(&segment.path, segment.bytes, &record) {
                Ok(()) => {
                    segment.bytes += record.len() as u64;
                    segment.records.push(info);
                    break record;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound && tries == 1 => {
                    // The segment appends go to vanished: its rounds are missing; a new one takes this round.
                    self.forget_vanished(self.segments.len() - 1);
                    self.skip_lost_front();
                }
                Err(err) => {
                    // Cut back what the failed write may have left, so the index and the file agree; when even
                    // that fails, seal the segment: the next append opens a new one, and the next open cuts the tail.
                    let cut = private_files::open_existing(&segment.path).and_then(|f| {
                        f.set_len(segment.bytes)?;
                        f.sync_all()
                    });
                    if let Err(cut_err) = cut {
                        tracing::warn!(segment = %segment.path.display(), error = %cut_err, "remote-write queue: cannot cut a failed write back; sealing the segment");
                        segment.sealed = true;
                    }
                    return Err(err);
                }
            }
        };
        drop(record);
        self.next_seq += 1;
        self.write_next();
        self.enforce_max_bytes();
        Ok(Appended { seq })
    }

    /// Record the next sequence number durably (a CRC'd 20-byte file written in place). A failure costs only
    /// the exactness of a later count of rounds lost at the newest segment's end: logged, not fatal.
    fn write_next(&mut self) {
        let mut bytes = NEXT_MAGIC.to_vec();
        bytes.extend_from_slice(&self.next_seq.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        let path = self.dir.join("next");
        let written = private_files::open_rw(&path).and_then(|mut file| {
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&bytes)?;
            file.sync_data()
        });
        match written {
            Ok(()) => self.next_failing = false,
            Err(err) if !self.next_failing => {
                tracing::warn!(file = %path.display(), error = %err, "remote-write queue: cannot record the next sequence number");
                self.next_failing = true;
            }
            Err(_) => {}
        }
    }

    /// A new segment for appends, named by the next sequence number. The newest segment is replaced when it
    /// holds no record (it already has that name: a failed first write), so no two index entries share a file.
    fn new_segment(&mut self) -> io::Result<()> {
        let path = self.dir.join(format!("{:016x}.seg", self.next_seq));
        if self.segments.back().is_some_and(|s| s.path == path) {
            self.segments.pop_back();
        }
        let create = |path: &Path| -> io::Result<()> {
            let mut file = private_files::create_fresh(path)?;
            file.write_all(FILE_HEADER)?;
            file.sync_all()?;
            sync_dir(&self.dir)
        };
        let mut created = create(&path);
        if matches!(&created, Err(err) if err.kind() == io::ErrorKind::NotFound) {
            // The whole directory was removed: make it again (private) and go on.
            created = private_files::ensure_dir(&self.dir, true).and_then(|()| create(&path));
        }
        if let Err(err) = created {
            let _ = fs::remove_file(&path);
            return Err(err);
        }
        self.segments.push_back(Segment {
            path,
            format: Format::V2,
            bytes: FILE_HEADER.len() as u64,
            records: Vec::new(),
            sealed: false,
        });
        Ok(())
    }

    /// Take segment `index` out of the index: its file is gone, its unacknowledged rounds are missing (or, when
    /// they were in flight, settled by their batch).
    fn forget_vanished(&mut self, index: usize) -> PathBuf {
        let segment = self.segments.remove(index).expect("in range");
        self.lose(&segment, |losses| &mut losses.missing);
        segment.path
    }

    /// Count the unacknowledged rounds of a segment that left the index under `reason` (picked from
    /// [`Losses`]): those of the batch in flight are settled by its answer, the rest are lost now.
    fn lose(&mut self, segment: &Segment, reason: fn(&mut Losses) -> &mut Loss) {
        for record in segment.records.iter().filter(|r| r.seq >= self.acked) {
            let losses = if record.seq < self.in_flight_end { &mut self.dropped_in_flight } else { &mut self.losses };
            reason(losses).add(record);
        }
    }

    /// Drop the oldest segments while over `max_bytes` (never the one appends go to). A segment leaves the
    /// index only after its file is gone (a file already gone is gone).
    fn enforce_max_bytes(&mut self) {
        while self.total_bytes() > self.max_bytes && self.segments.len() > 1 {
            let oldest = self.segments.front().expect("more than one");
            match fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    self.forget_vanished(0);
                    continue;
                }
                Err(err) => {
                    tracing::warn!(segment = %oldest.path.display(), error = %err, "remote-write queue: cannot remove the oldest segment");
                    break;
                }
            }
            let oldest = self.segments.pop_front().expect("more than one");
            self.lose(&oldest, |losses| &mut losses.over_max_bytes);
        }
    }

    /// The oldest unacknowledged rounds, up to `max_records` and about `max_payload` bytes (at least one),
    /// with their payloads. A record whose CRC no longer checks leaves the index and is returned in
    /// `corrupt`; a segment whose file vanished leaves the index and is returned in `vanished`; another error
    /// reading a file is returned (and the rounds stay).
    pub fn peek(&mut self, max_records: usize, max_payload: usize) -> io::Result<Peeked> {
        let mut peeked = Peeked::default();
        // Rounds that went while the last batch was in flight, which was not acknowledged.
        let dropped = std::mem::take(&mut self.dropped_in_flight);
        self.losses.over_max_bytes.merge(dropped.over_max_bytes);
        self.losses.missing.merge(dropped.missing);
        let mut taken = 0usize;
        let acked = self.acked;
        let mut index = 0;
        'segments: while index < self.segments.len() {
            let segment = &mut self.segments[index];
            let mut file: Option<File> = None;
            let mut bad = Vec::new();
            let mut full = false;
            for info in segment.records.iter().filter(|r| r.seq >= acked) {
                if peeked.rounds.len() >= max_records || (taken > 0 && taken + info.len as usize > max_payload) {
                    full = true;
                    break;
                }
                let file = match &mut file {
                    Some(file) => file,
                    None => match File::open(&segment.path) {
                        Ok(opened) => file.insert(opened),
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {
                            // Vanished (nothing of this batch came from it: the file is opened before its first
                            // record is read).
                            peeked.vanished.push(self.forget_vanished(index));
                            continue 'segments;
                        }
                        Err(err) => return Err(err),
                    },
                };
                match read_record(file, segment.format, info)? {
                    Some(payload) => {
                        taken += payload.len();
                        peeked.rounds.push((*info, payload));
                    }
                    None => bad.push(*info),
                }
            }
            for info in &bad {
                peeked.corrupt.push(Damage {
                    segment: segment.path.clone(),
                    offset: info.offset,
                    bytes: segment.record_bytes(info),
                    lost: info.seq..info.seq + 1,
                    rounds: 1,
                    torn: false,
                });
                self.losses.corrupt.add(info);
            }
            segment.records.retain(|r| !bad.contains(r));
            if full {
                break;
            }
            index += 1;
        }
        self.in_flight_end = peeked.rounds.last().map_or(self.acked, |(r, _)| r.seq + 1);
        self.skip_lost_front();
        Ok(peeked)
    }

    /// Everything before `seq` is acknowledged (or refused for good): in memory now, so it is never sent
    /// again by this process; on disk at the next [`Queue::persist_ack`]. Returns the rounds it took out
    /// (including those of the batch that went for `max_bytes` while it was in flight).
    pub fn ack(&mut self, seq: u64) -> Acked {
        let mut acked = Acked::default();
        if seq >= self.in_flight_end {
            for (_, loss) in std::mem::take(&mut self.dropped_in_flight).each() {
                acked.rounds += loss.rounds;
                acked.samples += loss.samples;
            }
        }
        if seq <= self.acked {
            return acked;
        }
        for record in self.unacked().filter(|r| r.seq < seq) {
            acked.rounds += 1;
            acked.samples += u64::from(record.samples);
        }
        self.acked = seq;
        acked
    }

    /// Move the acknowledgement up to the first round still queued, past rounds already counted lost (a
    /// vanished or damaged front), so a restart does not count them again. Nothing queued is skipped.
    fn skip_lost_front(&mut self) {
        let first = self.unacked().next().map_or(self.next_seq, |r| r.seq);
        self.acked = self.acked.max(first);
    }

    /// Whether an acknowledgement is not yet on disk.
    pub fn ack_pending(&self) -> bool {
        self.persisted_acked != self.acked
    }

    /// Write the acknowledgement to disk, then delete the segments wholly before it.
    pub fn persist_ack(&mut self) -> io::Result<()> {
        if self.ack_pending() {
            self.write_acked()?;
        }
        self.collect_acked()
    }

    fn write_acked(&mut self) -> io::Result<()> {
        let tmp = self.dir.join("acked.tmp");
        if fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_symlink()) {
            tracing::warn!(file = %tmp.display(), "remote-write queue: a symbolic link stood where the acknowledgement's temporary file goes; removed, nothing written through it");
        }
        let mut file = private_files::create_fresh(&tmp)?;
        file.write_all(encode_acked(self.acked).as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join("acked"))?;
        sync_dir(&self.dir)?;
        self.persisted_acked = self.acked;
        Ok(())
    }

    /// Delete segments whose records are all acknowledged on disk, but keep the tail (appends go there).
    fn collect_acked(&mut self) -> io::Result<()> {
        while self.segments.len() > 1
            && self.segments.front().and_then(|s| s.records.last()).is_none_or(|last| last.seq < self.persisted_acked)
        {
            match fs::remove_file(&self.segments.front().expect("checked").path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Bytes of every segment on disk.
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Bytes of the records not yet acknowledged.
    pub fn queued_bytes(&self) -> u64 {
        self.segments
            .iter()
            .flat_map(|s| s.records.iter().filter(|r| r.seq >= self.acked).map(|r| s.record_bytes(r)))
            .sum()
    }

    /// Rounds not yet acknowledged (with those of the batch in flight whose segment went for `max_bytes`: they
    /// are settled with the batch).
    pub fn queued_rounds(&self) -> u64 {
        self.unacked().count() as u64 + self.dropped_in_flight.each().iter().map(|(_, l)| l.rounds).sum::<u64>()
    }

    /// The timestamp of the oldest unacknowledged round.
    pub fn oldest_timestamp_ms(&self) -> Option<i64> {
        self.unacked().next().map(|r| r.timestamp_ms)
    }

    fn unacked(&self) -> impl Iterator<Item = &RecordInfo> {
        self.segments.iter().flat_map(|s| &s.records).filter(|r| r.seq >= self.acked)
    }
}

/// The first bytes of the `next` file.
const NEXT_MAGIC: &[u8; 8] = b"OCRWNX01";
/// The first word of the `acked` file.
const ACKED_MAGIC: &str = "OCRWACK1";

/// The `next` file's number, when it is there and checks.
fn read_next(dir: &Path) -> Option<u64> {
    let bytes = fs::read(dir.join("next")).ok()?;
    let bytes = bytes.get(..20)?;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    (bytes.starts_with(NEXT_MAGIC) && crc32fast::hash(&bytes[..16]) == crc)
        .then(|| u64::from_le_bytes(bytes[8..16].try_into().expect("8")))
}

/// `acked`'s text: `OCRWACK1 <n> <crc32 of "OCRWACK1 <n>", hex>`.
fn encode_acked(acked: u64) -> String {
    let body = format!("{ACKED_MAGIC} {acked}");
    format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
}

/// The `acked` file's number: `None` when there is no file; an error saying what is wrong with a damaged one.
/// A bare number (the format before the CRC) is read as it is.
fn read_acked(dir: &Path) -> Result<Option<u64>, String> {
    let text = match fs::read(dir.join("acked")) {
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

/// Keep the newest [`KEEP_QUARANTINED`] damaged files.
fn prune_quarantine(quarantine: &Path) {
    let Ok(entries) = fs::read_dir(quarantine) else { return };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.metadata().ok()?.modified().ok()?, e.path()))
        })
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(KEEP_QUARANTINED);
    for (_, path) in files.into_iter().take(excess) {
        let _ = fs::remove_file(path);
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Take the directory's lock and write our pid to `owner`; name the holder when it is taken.
fn lock(dir: &Path) -> Result<File, OpenError> {
    let io_error = |source| OpenError::Io { dir: dir.to_owned(), source };
    let file = private_files::open_rw(&dir.join("lock")).map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = match fs::read_to_string(dir.join("owner")) {
                Ok(pid) if !pid.trim().is_empty() => format!("pid {}", pid.trim().chars().take(20).collect::<String>()),
                _ => "its pid is not known".to_owned(),
            };
            return Err(OpenError::Locked { dir: dir.to_owned(), holder });
        }
        Err(fs::TryLockError::Error(err)) => return Err(io_error(err)),
    }
    // The owner file is for people and the error above; the lock is what counts.
    let mut owner = private_files::create_fresh(&dir.join("owner")).map_err(io_error)?;
    owner.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(io_error)?;
    Ok(file)
}

/// Make a directory's entries (a new file, a rename) durable. Windows has no directory fsync (NTFS journals
/// its metadata); some file systems (network and FUSE mounts) answer EINVAL or ENOTSUP, which PostgreSQL
/// also tolerates: the data files themselves were fsynced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    match File::open(dir)?.sync_all() {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::Unsupported || err.raw_os_error() == Some(libc::EINVAL) => {}
        Err(err) => return Err(err),
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::segment::MAGIC;
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::fs::OpenOptions;

    /// Open the queue, waiting out a lock that a sibling test's child holds for a moment: the lock is an
    /// `flock` on an open file, and a test that forks (supervise's, spawn's) copies every descriptor into its
    /// child until the child's exec closes it. CI saw one reopen refused this way (holder: this very pid).
    /// A lock never released still fails, after 5 s.
    fn open(dir: &Path, max_bytes: u64) -> Queue {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Queue::open(dir, max_bytes) {
                Err(OpenError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                other => return other.unwrap(),
            }
        }
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("round-{i}-").repeat(100).into_bytes()
    }

    fn seqs(batch: &[(RecordInfo, Vec<u8>)]) -> Vec<u64> {
        batch.iter().map(|(info, _)| info.seq).collect()
    }

    fn ack(queue: &mut Queue, seq: u64) {
        queue.ack(seq);
        queue.persist_ack().unwrap();
    }

    #[test]
    fn rounds_come_back_in_order_across_reopens_and_acked_ones_never_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..10 {
            assert_eq!(queue.append(&payload(i), 1000 + i as i64, 5).unwrap().seq, i);
        }
        let batch = queue.peek(4, usize::MAX).unwrap().rounds;
        assert_eq!(seqs(&batch), [0, 1, 2, 3]);
        assert_eq!(batch[2].1, payload(2));
        assert_eq!(queue.ack(4), Acked { rounds: 4, samples: 20 });
        queue.persist_ack().unwrap();
        drop(queue);
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(queue.oldest_timestamp_ms(), Some(1004));
        assert_eq!(queue.queued_rounds(), 6);
        let batch = queue.peek(100, usize::MAX).unwrap().rounds;
        assert_eq!(seqs(&batch), [4, 5, 6, 7, 8, 9]);
        queue.append(&payload(10), 1010, 5).unwrap();
        assert_eq!(queue.peek(100, usize::MAX).unwrap().rounds.last().unwrap().0.seq, 10);
        ack(&mut queue, 11);
        assert_eq!(queue.queued_bytes(), 0);
        assert_eq!(queue.oldest_timestamp_ms(), None);
    }

    #[test]
    fn a_second_open_of_one_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path(), 1 << 30);
        let err = Queue::open(dir.path(), 1 << 30).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        drop(queue);
        open(dir.path(), 1 << 30);
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_whole_rounds_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..3 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let segment = queue.segments.back().unwrap().path.clone();
        drop(queue);
        // A crash in the middle of the fourth record's write.
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(MAGIC).unwrap();
        file.write_all(&1000u32.to_le_bytes()).unwrap();
        file.write_all(b"partial").unwrap();
        drop(file);
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(queue.found_at_open.damage.len(), 1);
        assert_eq!(queue.found_at_open.damage[0].bytes, 15);
        assert!(queue.found_at_open.damage[0].torn);
        assert_eq!(queue.found_at_open.damage[0].rounds, 0, "a torn write is no round lost");
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 1, 2]);
        assert_eq!(queue.append(&payload(3), 3, 1).unwrap().seq, 3);
        drop(queue);
        let mut queue = open(dir.path(), 1 << 30);
        assert!(queue.found_at_open.damage.is_empty());
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 1, 2, 3]);
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..5 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let segment = queue.segments.back().unwrap().path.clone();
        let second = queue.segments.back().unwrap().records[1];
        drop(queue);
        let mut bytes = fs::read(&segment).unwrap();
        bytes[(second.offset + 32 + 5) as usize] ^= 0xff;
        fs::write(&segment, &bytes).unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 2, 3, 4]);
        let damage = &queue.found_at_open.damage;
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert_eq!((damage[0].offset, damage[0].rounds, damage[0].torn), (second.offset, 1, false));
        // Appends go on after the last good record, and the damaged one stays skipped.
        assert_eq!(queue.append(&payload(5), 5, 1).unwrap().seq, 5);
        drop(queue);
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 2, 3, 4, 5]);
    }

    #[test]
    fn a_damaged_header_and_a_damaged_last_record_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..4 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let segment = queue.segments.back().unwrap().path.clone();
        let records = queue.segments.back().unwrap().records.clone();
        drop(queue);
        let mut bytes = fs::read(&segment).unwrap();
        // The first record's length field, and a payload byte of the last record.
        bytes[(records[0].offset + 5) as usize] ^= 0x40;
        bytes[(records[3].offset + 40) as usize] ^= 0x01;
        fs::write(&segment, &bytes).unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [1, 2]);
        let lost: u64 = queue.found_at_open.damage.iter().map(|d| d.rounds).sum();
        assert_eq!(lost, 2, "{:?}", queue.found_at_open.damage);
        // The damaged last record is gone; its number is never given to another round.
        assert_eq!(queue.append(&payload(9), 9, 1).unwrap().seq, 4);
    }

    #[test]
    fn a_record_damaged_after_open_is_taken_out_when_read_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..3 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let segment = queue.segments.back().unwrap().path.clone();
        let second = queue.segments.back().unwrap().records[1];
        let mut bytes = fs::read(&segment).unwrap();
        bytes[(second.offset + 40) as usize] ^= 0xff;
        fs::write(&segment, &bytes).unwrap();
        let peeked = queue.peek(100, usize::MAX).unwrap();
        assert_eq!(seqs(&peeked.rounds), [0, 2]);
        assert_eq!(peeked.corrupt.len(), 1);
        assert_eq!(queue.queued_rounds(), 2, "counted once: it left the queue");
        assert!(queue.peek(100, usize::MAX).unwrap().corrupt.is_empty());
    }

    #[test]
    fn segments_of_the_format_before_the_magic_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for seq in 0u64..3 {
            let body = payload(seq);
            let mut record = Vec::new();
            record.extend_from_slice(&(body.len() as u32).to_le_bytes());
            record.extend_from_slice(&[0; 4]);
            record.extend_from_slice(&seq.to_le_bytes());
            record.extend_from_slice(&(seq as i64).to_le_bytes());
            record.extend_from_slice(&2u32.to_le_bytes());
            record.extend_from_slice(&body);
            let crc = crc32fast::hash(&record[8..]);
            record[4..8].copy_from_slice(&crc.to_le_bytes());
            bytes.extend(record);
        }
        fs::write(dir.path().join(format!("{:016x}.seg", 0)), &bytes).unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        let batch = queue.peek(100, usize::MAX).unwrap().rounds;
        assert_eq!(seqs(&batch), [0, 1, 2]);
        assert_eq!(batch[1].1, payload(1));
        // New rounds go to a new segment in the current format.
        assert_eq!(queue.append(&payload(3), 3, 2).unwrap().seq, 3);
        assert_eq!(queue.segments.len(), 2);
        drop(queue);
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 1, 2, 3]);
    }

    #[test]
    fn a_ghost_record_past_the_next_segment_start_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        queue.append(&payload(0), 0, 1).unwrap();
        // A write whose fsync failed and could not be cut back: sealed, its number reused next.
        let first = queue.segments.back().unwrap().path.clone();
        let ghost = encode_record(
            &RecordInfo { seq: 1, offset: 0, len: payload(77).len() as u32, timestamp_ms: 77, samples: 1 },
            &payload(77),
        );
        OpenOptions::new().append(true).open(&first).unwrap().write_all(&ghost).unwrap();
        queue.segments.back_mut().unwrap().sealed = true;
        queue.append(&payload(1), 1, 1).unwrap();
        drop(queue);
        let mut queue = open(dir.path(), 1 << 30);
        let batch = queue.peek(100, usize::MAX).unwrap().rounds;
        assert_eq!(seqs(&batch), [0, 1]);
        assert_eq!(batch[1].1, payload(1), "the real round 1, not the ghost");
    }

    #[test]
    fn an_ack_that_cannot_reach_the_disk_stays_pending_and_the_batch_is_not_offered_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..3 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        // `acked.tmp` as a directory: creating the file fails, as on a full disk.
        fs::create_dir(dir.path().join("acked.tmp")).unwrap();
        assert_eq!(queue.ack(2).rounds, 2);
        assert!(queue.persist_ack().is_err());
        assert!(queue.ack_pending());
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [2]);
        fs::remove_dir(dir.path().join("acked.tmp")).unwrap();
        queue.persist_ack().unwrap();
        assert!(!queue.ack_pending());
        drop(queue);
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [2]);
    }

    #[test]
    fn over_max_bytes_the_oldest_segments_go_and_their_unsent_rounds_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB segments (the floor), 256 KiB in all; each round ~1 KiB.
        let mut queue = open(dir.path(), 256 * 1024);
        let (mut dropped, mut dropped_samples) = (0, 0);
        for i in 0..1000 {
            queue.append(&payload(i), i as i64, 7).unwrap();
            let losses = queue.take_losses();
            dropped += losses.over_max_bytes.rounds;
            dropped_samples += losses.over_max_bytes.samples;
        }
        assert!(queue.total_bytes() <= 256 * 1024, "{}", queue.total_bytes());
        let batch = queue.peek(usize::MAX, usize::MAX).unwrap().rounds;
        let first = batch[0].0.seq;
        assert!(first > 0);
        assert_eq!(dropped, first, "every dropped round counted, once");
        assert_eq!(dropped_samples, first * 7);
        assert_eq!(seqs(&batch), (first..1000).collect::<Vec<_>>(), "the newest kept, in order, no hole");
        drop(queue);
        let queue = open(dir.path(), 256 * 1024);
        assert_eq!(queue.oldest_timestamp_ms(), Some(first as i64), "the drop is durable");
    }

    #[test]
    fn a_batch_stops_at_its_byte_budget_but_holds_at_least_one_round() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..5 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let one = payload(0).len();
        assert_eq!(queue.peek(100, one * 2).unwrap().rounds.len(), 2);
        assert_eq!(queue.peek(100, 1).unwrap().rounds.len(), 1);
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| segment_seq(p).is_some()).collect();
        files.sort();
        files
    }

    #[test]
    fn a_flipped_file_header_costs_nothing_and_numbers_go_on_upward() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..16 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        drop(queue);
        let segment = &segment_files(dir.path())[0];
        let mut bytes = fs::read(segment).unwrap();
        bytes[3] ^= 0x20;
        fs::write(segment, &bytes).unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), (0..16).collect::<Vec<_>>());
        assert_eq!(queue.found_at_open.corrupt(), 0);
        assert_eq!(queue.found_at_open.quarantined.len(), 1, "the damaged original is kept aside");
        assert_eq!(queue.append(&payload(16), 16, 1).unwrap().seq, 16);
        drop(queue);
        let mut queue = open(dir.path(), 1 << 30);
        assert!(queue.found_at_open.damage.is_empty(), "repaired once: {:?}", queue.found_at_open.damage);
        assert_eq!(queue.peek(100, usize::MAX).unwrap().rounds.len(), 17);
    }

    #[test]
    fn a_first_record_that_does_not_parse_is_moved_aside_never_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..6 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        drop(queue);
        let segment = segment_files(dir.path())[0].clone();
        let original = fs::read(&segment).unwrap();
        let mut bytes = original.clone();
        bytes[8..12].copy_from_slice(b"XXXX");
        fs::write(&segment, &bytes).unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [1, 2, 3, 4, 5]);
        assert_eq!(queue.found_at_open.corrupt(), 1);
        let (_, moved) = &queue.found_at_open.quarantined[0];
        assert_eq!(fs::read(moved).unwrap(), bytes, "the damaged file is kept whole");
    }

    #[test]
    fn a_segment_of_garbage_is_moved_aside_and_its_rounds_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        for i in 0..5 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        drop(queue);
        let segment = segment_files(dir.path())[0].clone();
        let size = fs::metadata(&segment).unwrap().len() as usize;
        fs::write(&segment, vec![0x5a; size]).unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(queue.found_at_open.corrupt(), 5);
        assert!(queue.peek(100, usize::MAX).unwrap().rounds.is_empty());
        assert_eq!(queue.append(&payload(5), 5, 1).unwrap().seq, 5, "numbers never go backwards");
    }

    #[test]
    fn deleted_segments_are_counted_missing_and_the_queue_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB segments; each round ~1 KiB: several segments.
        let mut queue = open(dir.path(), 1 << 20);
        for i in 0..200 {
            queue.append(&payload(i), i as i64, 3).unwrap();
        }
        let files = segment_files(dir.path());
        assert!(files.len() >= 3, "{files:?}");
        for file in &files {
            fs::remove_file(file).unwrap();
        }
        let peeked = queue.peek(100, usize::MAX).unwrap();
        assert!(peeked.rounds.is_empty());
        assert_eq!(peeked.vanished.len(), files.len());
        queue.persist_ack().unwrap();
        // The next append goes to a new segment.
        assert_eq!(queue.append(&payload(200), 200, 3).unwrap().seq, 200);
        let losses = queue.take_losses();
        assert_eq!(losses.missing, Loss { rounds: 200, samples: 600 });
        assert_eq!(queue.queued_rounds(), 1);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [200]);
        // Deleted while stopped: counted at the next open.
        for i in 201..300 {
            queue.append(&payload(i), i as i64, 3).unwrap();
        }
        drop(queue);
        let files = segment_files(dir.path());
        fs::remove_file(&files[0]).unwrap();
        let mut queue = open(dir.path(), 1 << 20);
        let first_left = segment_seq(&files[1]).unwrap();
        assert_eq!(queue.found_at_open.missing, first_left - 200);
        assert_eq!(queue.peek(1, usize::MAX).unwrap().rounds[0].0.seq, first_left);
        fs::remove_file(files.last().unwrap()).unwrap();
        drop(queue);
        let queue = open(dir.path(), 1 << 20);
        // The front gap was counted once: the acknowledgement moved past it.
        assert_eq!(queue.found_at_open.missing, 300 - segment_seq(files.last().unwrap()).unwrap());
    }

    #[test]
    fn a_damaged_or_impossible_acked_keeps_every_round() {
        for content in ["soon\n", "99999999\n", "OCRWACK1 3 00000000\n"] {
            let dir = tempfile::tempdir().unwrap();
            let mut queue = open(dir.path(), 1 << 30);
            for i in 0..5 {
                queue.append(&payload(i), i as i64, 1).unwrap();
            }
            queue.ack(3);
            queue.persist_ack().unwrap();
            drop(queue);
            assert!(fs::read_to_string(dir.path().join("acked")).unwrap().starts_with("OCRWACK1 3 "));
            fs::write(dir.path().join("acked"), content).unwrap();
            let mut queue = open(dir.path(), 1 << 30);
            assert!(queue.found_at_open.acked_problem.is_some(), "{content}");
            assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 1, 2, 3, 4], "{content}");
            drop(queue);
            let queue = open(dir.path(), 1 << 30);
            assert!(queue.found_at_open.acked_problem.is_none(), "reported once");
        }
    }

    #[test]
    fn rounds_dropped_for_max_bytes_while_in_flight_are_settled_by_their_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 256 * 1024);
        for i in 0..100 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let batch = queue.peek(50, usize::MAX).unwrap().rounds;
        let next = batch.last().unwrap().0.seq + 1;
        for i in 100..400 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let over = queue.take_losses().over_max_bytes.rounds;
        let acked = queue.ack(next);
        assert_eq!(acked.rounds, 50, "the whole batch delivered counts sent");
        assert_eq!(over + 50 + queue.queued_rounds(), 400, "no round counted twice or not at all");
    }

    #[test]
    fn a_segment_name_is_never_held_twice_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 30);
        queue.append(&payload(0), 0, 1).unwrap();
        // A fresh segment whose first write failed and could not be cut back: sealed, and empty in the index.
        queue.new_segment().unwrap();
        queue.segments.back_mut().unwrap().sealed = true;
        queue.append(&payload(1), 1, 1).unwrap();
        let mut paths: Vec<_> = queue.segments.iter().map(|s| s.path.clone()).collect();
        paths.dedup();
        assert_eq!(paths.len(), queue.segments.len(), "{paths:?}");
        queue.ack(1);
        queue.persist_ack().unwrap();
        drop(queue);
        let mut queue = open(dir.path(), 1 << 30);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [1], "the live round survived the ack");
    }

    /// A tiny deterministic generator (splitmix64), so the property test needs no dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n.max(1)
        }
    }

    /// Random appends, acknowledgements, damage (flipped bytes in file headers, record headers and payloads,
    /// truncation, deleted files, while stopped and while running) and restarts. After every step the
    /// process's account adds up (`taken = sent + dropped + queued`), sequence numbers only grow, and at the
    /// end every round not damaged was sent exactly once. `OCE_QUEUE_PROPERTY_STEPS` and
    /// `OCE_QUEUE_PROPERTY_SEED` run it longer or elsewhere.
    #[test]
    fn property_every_undamaged_round_is_sent_once_and_the_account_adds_up() {
        let steps: u64 = std::env::var("OCE_QUEUE_PROPERTY_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
        let seed: u64 = std::env::var("OCE_QUEUE_PROPERTY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(29);
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Some(open(dir.path(), 1 << 30));
        let mut appended: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut damaged: BTreeSet<u64> = BTreeSet::new();
        let mut sent: BTreeMap<u64, u32> = BTreeMap::new();
        let mut highest_seq: Option<u64> = None;
        // This process's account.
        let (mut taken, mut sent_here, mut dropped) = (0u64, 0u64, 0u64);
        let check = |queue: &mut Queue, taken: u64, sent_here: u64, dropped: &mut u64, step: u64| {
            let losses = queue.take_losses();
            *dropped += losses.each().iter().map(|(_, l)| l.rounds).sum::<u64>();
            assert_eq!(taken, sent_here + *dropped + queue.queued_rounds(), "step {step} (seed {seed})");
        };
        for step in 0..steps {
            let q = queue.as_mut().unwrap();
            match rng.below(100) {
                0..=44 => {
                    let seq = q.next_seq();
                    let body = format!("round {seq} at step {step} ").repeat(1 + rng.below(60) as usize).into_bytes();
                    let got = q.append(&body, step as i64, 2).unwrap().seq;
                    assert!(highest_seq.is_none_or(|h| got > h), "step {step}: seq {got} after {highest_seq:?}");
                    highest_seq = Some(got);
                    appended.insert(got, body);
                    taken += 1;
                }
                45..=74 => {
                    let peeked = q.peek(1 + rng.below(20) as usize, usize::MAX).unwrap();
                    for (info, body) in &peeked.rounds {
                        assert_eq!(
                            Some(body),
                            appended.get(&info.seq),
                            "step {step}: round {} read back wrong",
                            info.seq
                        );
                    }
                    if let Some((last, _)) = peeked.rounds.last() {
                        let acked = q.ack(last.seq + 1);
                        for (info, _) in &peeked.rounds {
                            *sent.entry(info.seq).or_default() += 1;
                        }
                        sent_here += acked.rounds;
                        q.persist_ack().unwrap();
                    }
                }
                75..=84 => {
                    // Restart, sometimes with damage done while stopped.
                    let q = queue.take().unwrap();
                    let acked = q.persisted_acked;
                    let layout: Vec<(PathBuf, Vec<RecordInfo>)> =
                        q.segments.iter().map(|s| (s.path.clone(), s.records.clone())).collect();
                    drop(q);
                    if let Some(hit) = (!layout.is_empty()).then(|| rng.below(layout.len() as u64) as usize) {
                        let (path, records) = &layout[hit];
                        let mut bytes = fs::read(path).unwrap_or_default();
                        let kind = if bytes.is_empty() { 9 } else { rng.below(5) };
                        match kind {
                            0 if bytes.len() > 8 => bytes[rng.below(8) as usize] ^= 1 << rng.below(8),
                            1 | 2 if !records.is_empty() => {
                                let record = records[rng.below(records.len() as u64) as usize];
                                let span = 32 + u64::from(record.len);
                                bytes[(record.offset + rng.below(span)) as usize] ^= 1 << rng.below(8);
                                damaged.insert(record.seq);
                            }
                            3 if hit == layout.len() - 1 => {
                                let cut = rng.below(bytes.len() as u64 + 1);
                                bytes.truncate(cut as usize);
                                damaged.extend(
                                    records.iter().filter(|r| r.offset + 32 + u64::from(r.len) > cut).map(|r| r.seq),
                                );
                            }
                            4 => {
                                fs::remove_file(path).unwrap();
                                damaged.extend(records.iter().map(|r| r.seq));
                                bytes.clear();
                            }
                            _ => {}
                        }
                        if fs::metadata(path).is_ok() {
                            fs::write(path, &bytes).unwrap();
                        }
                    }
                    let reopened = open(dir.path(), 1 << 30);
                    let lost = reopened.found_at_open.corrupt() + reopened.found_at_open.missing;
                    let damaged_unacked = damaged.range(acked..).count() as u64;
                    assert!(lost <= damaged_unacked, "step {step}: {lost} counted lost, {damaged_unacked} damaged");
                    assert!(reopened.found_at_open.acked_problem.is_none(), "step {step}");
                    taken = reopened.queued_rounds() + lost;
                    (sent_here, dropped) = (0, lost);
                    queue = Some(reopened);
                }
                85..=89 => {
                    // A file deleted while running.
                    let files = segment_files(dir.path());
                    if !files.is_empty() {
                        let file = &files[rng.below(files.len() as u64) as usize];
                        if let Some(segment) = q.segments.iter().find(|s| &s.path == file) {
                            damaged.extend(segment.records.iter().map(|r| r.seq));
                        }
                        fs::remove_file(file).unwrap();
                    }
                }
                _ => {
                    // Nothing but a look at the account.
                }
            }
            let q = queue.as_mut().unwrap();
            check(q, taken, sent_here, &mut dropped, step);
        }
        // Drain, then every round not damaged was sent exactly once.
        let q = queue.as_mut().unwrap();
        loop {
            let peeked = q.peek(50, usize::MAX).unwrap();
            let Some((last, _)) = peeked.rounds.last() else { break };
            let next = last.seq + 1;
            for (info, _) in &peeked.rounds {
                *sent.entry(info.seq).or_default() += 1;
            }
            sent_here += q.ack(next).rounds;
        }
        check(q, taken, sent_here, &mut dropped, steps);
        for seq in appended.keys().filter(|s| !damaged.contains(s)) {
            assert_eq!(sent.get(seq).copied().unwrap_or(0), 1, "round {seq} (seed {seed})");
        }
        for (seq, times) in &sent {
            assert!(*times == 1, "round {seq} sent {times} times (seed {seed})");
        }
        eprintln!("{steps} steps: {} rounds appended, {} damaged, {} sent", appended.len(), damaged.len(), sent.len());
    }
}
