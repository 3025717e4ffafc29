//! The durable on-disk queue of remote-write rounds: append-only segment files, an acknowledgement file and a
//! lock file.
//!
//! A segment starts with the 8-byte file header `OCRWQ002`; each record is one sampling round:
//! `[magic "OCRW"][len u32][crc32 u32][seq u64][timestamp_ms i64][samples u32][payload]` (little endian; the
//! CRC covers the length and everything after the CRC), the payload a snappy-compressed `WriteRequest`. The
//! magic lets a reader find the next record after damage: a record whose CRC fails is skipped and the reader
//! resynchronises on the next magic whose record checks, so a flipped bit loses that record only. Segments
//! written before the magic existed (no file header, 28-byte records) are still read, never appended to.
//!
//! Records are written and `fsync`ed before [`Queue::append`] returns. After a failed write or fsync (a full
//! disk) the segment is cut back to its last good length, or sealed when even that fails, so no record ever
//! sits at an offset the index does not know. Segments are named by their first sequence number and rotate
//! at [`Queue::segment_bytes`]. The file `acked` holds the first sequence number not yet acknowledged,
//! replaced atomically (temporary file, fsync, rename). The file `lock` is held exclusively while the queue is
//! open (one exporter per directory) and `owner` names the holder's pid.
//!
//! The guarantee, for a crash at any moment (kill -9, power loss): every round whose append returned Ok is
//! kept; a torn record at a segment's end (its append never returned) is cut off at the next open; a batch the
//! receiver acknowledged is sent again only when the crash came before its acknowledgement reached the disk
//! (at most one batch twice). Over `max_bytes`, whole segments go, oldest first, counted.

mod segment;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use segment::{encode_record, read_record, scan, write_at_end, Format, Segment, FILE_HEADER, MAX_PAYLOAD};
pub use segment::{Damage, RecordInfo, Round};

/// Why a round did not reach the queue or left it without being sent: the `reason` label's fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was over `max_bytes`: its oldest segment went.
    OverMaxBytes,
    /// The disk (or a quota) was full when the round was written.
    DiskFull,
    /// Another I/O error writing the round, or a round that could not be encoded.
    IoError,
    /// The round's record no longer reads back whole (a flipped bit, a damaged sector).
    Corrupt,
    /// The receiver refused the round for good (400, 409, 422; 413 for a single round).
    Rejected,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 5] = [
        DropReason::OverMaxBytes,
        DropReason::DiskFull,
        DropReason::IoError,
        DropReason::Corrupt,
        DropReason::Rejected,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::OverMaxBytes => "over_max_bytes",
            DropReason::DiskFull => "disk_full",
            DropReason::IoError => "io_error",
            DropReason::Corrupt => "corrupt",
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

/// What a successful append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The round's sequence number.
    pub seq: u64,
    /// Unsent rounds dropped to stay within `max_bytes`.
    pub dropped_rounds: u64,
    /// Their samples.
    pub dropped_samples: u64,
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
    /// Records that no longer read back whole: taken out of the queue, to be counted `corrupt`.
    pub corrupt: Vec<Damage>,
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
    /// The directory or a file in it could not be read or written.
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
    /// Damage found at open (torn tails and damaged records), for the log and the counters.
    pub damage_at_open: Vec<Damage>,
    /// Held for the queue's life: the exclusive lock on `lock`.
    _lock: File,
}

impl Queue {
    /// Open (or create) the queue in `dir`: take its lock, then read every segment, repairing a torn tail and
    /// skipping damaged records.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Queue, OpenError> {
        let io_error = |source| OpenError::Io { dir: dir.to_owned(), source };
        fs::create_dir_all(dir).map_err(io_error)?;
        let lock = lock(dir)?;
        let acked = match fs::read_to_string(dir.join("acked")) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| io_error(invalid(format!("{}: not a number", dir.join("acked").display()))))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
            Err(err) => return Err(io_error(err)),
        };
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io_error)?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let stem = path.file_stem()?.to_str()?;
                (path.extension()? == "seg")
                    .then(|| u64::from_str_radix(stem, 16).ok().map(|seq| (seq, path.clone())))?
            })
            .collect();
        names.sort();
        let mut queue = Queue {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(64 * 1024, 8 * 1024 * 1024),
            segments: VecDeque::new(),
            next_seq: acked,
            acked,
            persisted_acked: acked,
            damage_at_open: Vec::new(),
            _lock: lock,
        };
        for (i, (first_seq, path)) in names.iter().enumerate() {
            // A record at or past the next segment's first sequence number is a ghost: a write whose fsync
            // failed and could not be cut back, whose number the next segment reused.
            let next_first = names.get(i + 1).map(|(seq, _)| *seq);
            let (mut segment, damage) = scan(path, *first_seq, acked).map_err(io_error)?;
            if let Some(limit) = next_first {
                segment.records.retain(|r| r.seq < limit);
                segment.sealed = true;
            }
            queue.damage_at_open.extend(damage);
            if let Some(last) = segment.records.last() {
                queue.next_seq = queue.next_seq.max(last.seq + 1);
            }
            if segment.records.is_empty() {
                fs::remove_file(path).map_err(io_error)?;
            } else {
                queue.segments.push_back(segment);
            }
        }
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

    /// Append one round and fsync it; then drop the oldest segments while over `max_bytes`. On an error
    /// nothing of the round stays on disk or in the index, and the next append starts clean.
    pub fn append(&mut self, payload: &[u8], timestamp_ms: i64, samples: u32) -> io::Result<Appended> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_PAYLOAD)
            .ok_or_else(|| invalid("round too large".into()))?;
        let needs_new =
            self.segments.back().is_none_or(|s| s.sealed || s.format != Format::V2 || s.bytes >= self.segment_bytes);
        if needs_new {
            self.new_segment()?;
        }
        let seq = self.next_seq;
        let segment = self.segments.back_mut().expect("pushed above");
        let info = RecordInfo { seq, offset: segment.bytes, len, timestamp_ms, samples };
        let record = encode_record(&info, payload);
        if let Err(err) = write_at_end(&segment.path, segment.bytes, &record) {
            // Cut back what the failed write may have left, so the index and the file agree; when even
            // that fails, seal the segment: the next append opens a new one, and the next open cuts the tail.
            let cut = OpenOptions::new().write(true).open(&segment.path).and_then(|f| {
                f.set_len(segment.bytes)?;
                f.sync_all()
            });
            if let Err(cut_err) = cut {
                tracing::warn!(segment = %segment.path.display(), error = %cut_err, "remote-write queue: cannot cut a failed write back; sealing the segment");
                segment.sealed = true;
            }
            return Err(err);
        }
        segment.bytes += record.len() as u64;
        segment.records.push(info);
        self.next_seq += 1;
        let (dropped_rounds, dropped_samples) = self.enforce_max_bytes();
        Ok(Appended { seq, dropped_rounds, dropped_samples })
    }

    fn new_segment(&mut self) -> io::Result<()> {
        let path = self.dir.join(format!("{:016x}.seg", self.next_seq));
        let created = (|| {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
            file.write_all(FILE_HEADER)?;
            file.sync_all()?;
            sync_dir(&self.dir)
        })();
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

    /// Drop the oldest segments while over `max_bytes` (never the one appends go to). A segment leaves the
    /// index only after its file is gone.
    fn enforce_max_bytes(&mut self) -> (u64, u64) {
        let (mut rounds, mut samples) = (0, 0);
        while self.total_bytes() > self.max_bytes && self.segments.len() > 1 {
            let oldest = self.segments.front().expect("more than one");
            if let Err(err) = fs::remove_file(&oldest.path) {
                tracing::warn!(segment = %oldest.path.display(), error = %err, "remote-write queue: cannot remove the oldest segment");
                break;
            }
            let oldest = self.segments.pop_front().expect("more than one");
            for record in oldest.records.iter().filter(|r| r.seq >= self.acked) {
                rounds += 1;
                samples += u64::from(record.samples);
            }
        }
        (rounds, samples)
    }

    /// The oldest unacknowledged rounds, up to `max_records` and about `max_payload` bytes (at least one),
    /// with their payloads. A record whose CRC no longer checks leaves the index and is returned in
    /// `corrupt`; an error reading the file is returned (and the rounds stay).
    pub fn peek(&mut self, max_records: usize, max_payload: usize) -> io::Result<Peeked> {
        let mut peeked = Peeked::default();
        let mut taken = 0usize;
        let acked = self.acked;
        let mut full = false;
        for segment in &mut self.segments {
            let mut file: Option<File> = None;
            let mut bad = Vec::new();
            for info in segment.records.iter().filter(|r| r.seq >= acked) {
                if peeked.rounds.len() >= max_records || (taken > 0 && taken + info.len as usize > max_payload) {
                    full = true;
                    break;
                }
                let file = match &mut file {
                    Some(file) => file,
                    None => file.insert(File::open(&segment.path)?),
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
                    rounds: 1,
                    torn: false,
                });
            }
            segment.records.retain(|r| !bad.contains(r));
            if full {
                break;
            }
        }
        Ok(peeked)
    }

    /// Everything before `seq` is acknowledged (or refused for good): in memory now, so it is never sent
    /// again by this process; on disk at the next [`Queue::persist_ack`]. Returns the rounds it took out.
    pub fn ack(&mut self, seq: u64) -> Acked {
        let mut acked = Acked::default();
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

    /// Whether an acknowledgement is not yet on disk.
    pub fn ack_pending(&self) -> bool {
        self.persisted_acked < self.acked
    }

    /// Write the acknowledgement to disk, then delete the segments wholly before it.
    pub fn persist_ack(&mut self) -> io::Result<()> {
        if self.ack_pending() {
            let tmp = self.dir.join("acked.tmp");
            let mut file = File::create(&tmp)?;
            file.write_all(format!("{}\n", self.acked).as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, self.dir.join("acked"))?;
            sync_dir(&self.dir)?;
            self.persisted_acked = self.acked;
        }
        self.collect_acked()
    }

    /// Delete segments whose records are all acknowledged on disk, but keep the tail (appends go there).
    fn collect_acked(&mut self) -> io::Result<()> {
        while self.segments.len() > 1
            && self.segments.front().and_then(|s| s.records.last()).is_none_or(|last| last.seq < self.persisted_acked)
        {
            fs::remove_file(&self.segments.front().expect("checked").path)?;
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

    /// Rounds not yet acknowledged.
    pub fn queued_rounds(&self) -> u64 {
        self.unacked().count() as u64
    }

    /// The timestamp of the oldest unacknowledged round.
    pub fn oldest_timestamp_ms(&self) -> Option<i64> {
        self.unacked().next().map(|r| r.timestamp_ms)
    }

    fn unacked(&self) -> impl Iterator<Item = &RecordInfo> {
        self.segments.iter().flat_map(|s| &s.records).filter(|r| r.seq >= self.acked)
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Take the directory's lock and write our pid to `owner`; name the holder when it is taken.
fn lock(dir: &Path) -> Result<File, OpenError> {
    let io_error = |source| OpenError::Io { dir: dir.to_owned(), source };
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join("lock"));
    let file = file.map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = match fs::read_to_string(dir.join("owner")) {
                Ok(pid) if !pid.trim().is_empty() => format!("pid {}", pid.trim()),
                _ => "its pid is not known".to_owned(),
            };
            return Err(OpenError::Locked { dir: dir.to_owned(), holder });
        }
        Err(fs::TryLockError::Error(err)) => return Err(io_error(err)),
    }
    // The owner file is for people and the error above; the lock is what counts.
    fs::write(dir.join("owner"), format!("{}\n", std::process::id())).map_err(io_error)?;
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
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        for i in 0..10 {
            assert_eq!(queue.append(&payload(i), 1000 + i as i64, 5).unwrap().seq, i);
        }
        let batch = queue.peek(4, usize::MAX).unwrap().rounds;
        assert_eq!(seqs(&batch), [0, 1, 2, 3]);
        assert_eq!(batch[2].1, payload(2));
        assert_eq!(queue.ack(4), Acked { rounds: 4, samples: 20 });
        queue.persist_ack().unwrap();
        drop(queue);
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
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
        let queue = Queue::open(dir.path(), 1 << 30).unwrap();
        let err = Queue::open(dir.path(), 1 << 30).unwrap_err();
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        drop(queue);
        Queue::open(dir.path(), 1 << 30).expect("the lock goes with the queue");
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_whole_rounds_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
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
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(queue.damage_at_open.len(), 1);
        assert_eq!(queue.damage_at_open[0].bytes, 15);
        assert!(queue.damage_at_open[0].torn);
        assert_eq!(queue.damage_at_open[0].rounds, 0, "a torn write is no round lost");
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 1, 2]);
        assert_eq!(queue.append(&payload(3), 3, 1).unwrap().seq, 3);
        drop(queue);
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert!(queue.damage_at_open.is_empty());
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 1, 2, 3]);
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        for i in 0..5 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let segment = queue.segments.back().unwrap().path.clone();
        let second = queue.segments.back().unwrap().records[1];
        drop(queue);
        let mut bytes = fs::read(&segment).unwrap();
        bytes[(second.offset + 32 + 5) as usize] ^= 0xff;
        fs::write(&segment, &bytes).unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 2, 3, 4]);
        let damage = &queue.damage_at_open;
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert_eq!((damage[0].offset, damage[0].rounds, damage[0].torn), (second.offset, 1, false));
        // Appends go on after the last good record, and the damaged one stays skipped.
        assert_eq!(queue.append(&payload(5), 5, 1).unwrap().seq, 5);
        drop(queue);
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 2, 3, 4, 5]);
    }

    #[test]
    fn a_damaged_header_and_a_damaged_last_record_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
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
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [1, 2]);
        let lost: u64 = queue.damage_at_open.iter().map(|d| d.rounds).sum();
        assert_eq!(lost, 2, "{:?}", queue.damage_at_open);
        // The damaged last record was cut; its number is the next round's.
        assert_eq!(queue.append(&payload(9), 9, 1).unwrap().seq, 3);
    }

    #[test]
    fn a_record_damaged_after_open_is_taken_out_when_read_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
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
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        let batch = queue.peek(100, usize::MAX).unwrap().rounds;
        assert_eq!(seqs(&batch), [0, 1, 2]);
        assert_eq!(batch[1].1, payload(1));
        // New rounds go to a new segment in the current format.
        assert_eq!(queue.append(&payload(3), 3, 2).unwrap().seq, 3);
        assert_eq!(queue.segments.len(), 2);
        drop(queue);
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [0, 1, 2, 3]);
    }

    #[test]
    fn a_ghost_record_past_the_next_segment_start_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
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
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        let batch = queue.peek(100, usize::MAX).unwrap().rounds;
        assert_eq!(seqs(&batch), [0, 1]);
        assert_eq!(batch[1].1, payload(1), "the real round 1, not the ghost");
    }

    #[test]
    fn an_ack_that_cannot_reach_the_disk_stays_pending_and_the_batch_is_not_offered_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
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
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().rounds), [2]);
    }

    #[test]
    fn over_max_bytes_the_oldest_segments_go_and_their_unsent_rounds_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB segments (the floor), 256 KiB in all; each round ~1 KiB.
        let mut queue = Queue::open(dir.path(), 256 * 1024).unwrap();
        let (mut dropped, mut dropped_samples) = (0, 0);
        for i in 0..1000 {
            let appended = queue.append(&payload(i), i as i64, 7).unwrap();
            dropped += appended.dropped_rounds;
            dropped_samples += appended.dropped_samples;
        }
        assert!(queue.total_bytes() <= 256 * 1024, "{}", queue.total_bytes());
        let batch = queue.peek(usize::MAX, usize::MAX).unwrap().rounds;
        let first = batch[0].0.seq;
        assert!(first > 0);
        assert_eq!(dropped, first, "every dropped round counted, once");
        assert_eq!(dropped_samples, first * 7);
        assert_eq!(seqs(&batch), (first..1000).collect::<Vec<_>>(), "the newest kept, in order, no hole");
        drop(queue);
        let queue = Queue::open(dir.path(), 256 * 1024).unwrap();
        assert_eq!(queue.oldest_timestamp_ms(), Some(first as i64), "the drop is durable");
    }

    #[test]
    fn a_batch_stops_at_its_byte_budget_but_holds_at_least_one_round() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        for i in 0..5 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let one = payload(0).len();
        assert_eq!(queue.peek(100, one * 2).unwrap().rounds.len(), 2);
        assert_eq!(queue.peek(100, 1).unwrap().rounds.len(), 1);
    }
}
