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

mod files;
mod open;
mod segment;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::private_files::PrivateDir;
use files::*;
use segment::{
    apply, encode_record, finish_repair, name_of, read_record, scan, write_at_end, End, Format, Segment, FILE_HEADER,
    MAX_PAYLOAD,
};
pub use segment::{Damage, RecordInfo, Round};

/// Damaged segment files kept in `quarantine/` for a person to look at; older ones are deleted at open.
pub const KEEP_QUARANTINED: usize = 8;
/// The subdirectory damaged segments are moved into.
const QUARANTINE: &str = "quarantine";

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
    /// The directory, held open: every file is reached through it.
    dir: PrivateDir,
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

impl Queue {
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
            match write_at_end(&self.dir, &segment.path, segment.bytes, &record) {
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
                    let cut = self.dir.open_existing(name_of(&segment.path)).and_then(|f| {
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
        let path = self.dir.display("next");
        let written = self.dir.open_rw("next").and_then(|mut file| {
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
        let name = format!("{:016x}.seg", self.next_seq);
        let path = self.dir.display(&name);
        if self.segments.back().is_some_and(|s| s.path == path) {
            self.segments.pop_back();
        }
        let create = |dir: &PrivateDir| -> io::Result<()> {
            let mut file = dir.create_fresh(&name)?;
            file.write_all(FILE_HEADER)?;
            file.sync_all()?;
            dir.sync()
        };
        let mut created = create(&self.dir);
        if matches!(&created, Err(err) if err.kind() == io::ErrorKind::NotFound) {
            // The whole directory was removed: make it again (private, checked as at open), hold the new one.
            created = PrivateDir::open(self.dir.path(), true).and_then(|dir| {
                self.dir = dir;
                create(&self.dir)
            });
        }
        if let Err(err) = created {
            let _ = self.dir.remove(&name);
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
            match self.dir.remove(name_of(&oldest.path)) {
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
                    None => match self.dir.open_read(name_of(&segment.path)) {
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
        if self.dir.is_symlink("acked.tmp") {
            tracing::warn!(file = %self.dir.display("acked.tmp").display(), "remote-write queue: a symbolic link stood where the acknowledgement's temporary file goes; removed, nothing written through it");
        }
        let mut file = self.dir.create_fresh("acked.tmp")?;
        file.write_all(encode_acked(self.acked).as_bytes())?;
        file.sync_all()?;
        self.dir.rename("acked.tmp", "acked")?;
        self.dir.sync()?;
        self.persisted_acked = self.acked;
        Ok(())
    }

    /// Delete segments whose records are all acknowledged on disk, but keep the tail (appends go there).
    fn collect_acked(&mut self) -> io::Result<()> {
        while self.segments.len() > 1
            && self.segments.front().and_then(|s| s.records.last()).is_none_or(|last| last.seq < self.persisted_acked)
        {
            match self.dir.remove(name_of(&self.segments.front().expect("checked").path)) {
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

#[cfg(test)]
mod tests;
