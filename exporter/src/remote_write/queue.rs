//! The durable on-disk queue of remote-write rounds: append-only segment files and an acknowledgement file.
//!
//! A record is one sampling round: `[len u32][crc32 u32][seq u64][timestamp_ms i64][samples u32][payload]`
//! (little endian; the CRC covers everything after it), the payload a snappy-compressed `WriteRequest`.
//! Records are written and `fsync`ed before [`Queue::append`] returns. Segments are named by their first
//! sequence number and rotate at [`Queue::segment_bytes`]. The file `acked` holds the first sequence number
//! not yet acknowledged by the receiver, replaced atomically (temporary file, fsync, rename) after each
//! acknowledged batch.
//!
//! The guarantee, for a crash at any moment (kill -9, power loss): every round whose append returned is
//! kept; a torn record at a segment's end is cut off at the next open (its round is lost, never half-read);
//! a batch the receiver acknowledged is sent again only if the crash came between its acknowledgement and
//! the rename of `acked` (at most one batch twice). Over `max_bytes`, whole segments go, oldest first,
//! and their unsent samples are counted as dropped.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes before a record's payload.
const HEADER: u64 = 28;
/// The longest payload accepted when reading (a corrupt length is not an allocation).
const MAX_PAYLOAD: u32 = 64 * 1024 * 1024;

/// A queued round read back: where it was, and its payload.
pub type Round = (RecordInfo, Vec<u8>);

/// Where one record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// Its sequence number.
    pub seq: u64,
    /// Offset of its header in the segment.
    offset: u64,
    /// Payload length.
    len: u32,
    /// Its round's timestamp, ms since the epoch.
    pub timestamp_ms: i64,
    /// Samples in it.
    pub samples: u32,
}

impl RecordInfo {
    fn bytes(&self) -> u64 {
        HEADER + u64::from(self.len)
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    records: Vec<RecordInfo>,
}

/// What an append had to drop to stay within `max_bytes`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Unsent samples dropped.
    pub samples: u64,
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
    acked: u64,
    /// Torn or corrupt records cut off at open, for the log.
    pub repaired: u64,
}

impl Queue {
    /// Open (or create) the queue in `dir`, repairing a torn tail.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Queue> {
        fs::create_dir_all(dir)?;
        let acked = match fs::read_to_string(dir.join("acked")) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| invalid(format!("{}: not a number", dir.join("acked").display())))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
            Err(err) => return Err(err),
        };
        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
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
            repaired: 0,
        };
        for (_, path) in names {
            let (segment, cut) = scan(&path)?;
            queue.repaired += cut;
            if let Some(last) = segment.records.last() {
                queue.next_seq = queue.next_seq.max(last.seq + 1);
            }
            if segment.records.is_empty() {
                fs::remove_file(&path)?;
            } else {
                queue.segments.push_back(segment);
            }
        }
        queue.collect_acked()?;
        Ok(queue)
    }

    /// Append one round and fsync it; then drop the oldest segments while over `max_bytes`.
    pub fn append(&mut self, payload: &[u8], timestamp_ms: i64, samples: u32) -> io::Result<Dropped> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_PAYLOAD)
            .ok_or_else(|| invalid("round too large".into()))?;
        if self.segments.back().is_none_or(|s| s.bytes >= self.segment_bytes) {
            let path = self.dir.join(format!("{:016x}.seg", self.next_seq));
            File::create(&path)?.sync_all()?;
            sync_dir(&self.dir)?;
            self.segments.push_back(Segment { path, bytes: 0, records: Vec::new() });
        }
        let segment = self.segments.back_mut().expect("pushed above");
        let info = RecordInfo { seq: self.next_seq, offset: segment.bytes, len, timestamp_ms, samples };
        let mut record = Vec::with_capacity(HEADER as usize + payload.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&[0; 4]);
        record.extend_from_slice(&info.seq.to_le_bytes());
        record.extend_from_slice(&timestamp_ms.to_le_bytes());
        record.extend_from_slice(&samples.to_le_bytes());
        record.extend_from_slice(payload);
        let crc = crc32fast::hash(&record[8..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        let mut file = OpenOptions::new().append(true).open(&segment.path)?;
        file.write_all(&record)?;
        file.sync_data()?;
        segment.bytes += record.len() as u64;
        segment.records.push(info);
        self.next_seq += 1;
        self.enforce_max_bytes()
    }

    fn enforce_max_bytes(&mut self) -> io::Result<Dropped> {
        let mut dropped = Dropped::default();
        while self.total_bytes() > self.max_bytes && self.segments.len() > 1 {
            let oldest = self.segments.pop_front().expect("more than one");
            dropped.samples +=
                oldest.records.iter().filter(|r| r.seq >= self.acked).map(|r| u64::from(r.samples)).sum::<u64>();
            if let Some(last) = oldest.records.last() {
                if last.seq >= self.acked {
                    self.write_acked(last.seq + 1)?;
                }
            }
            fs::remove_file(&oldest.path)?;
        }
        Ok(dropped)
    }

    /// The oldest unacknowledged rounds, up to `max_records` and about `max_payload` bytes (at least one),
    /// with their payloads. A record that no longer reads back whole is skipped (acknowledged) and counted
    /// in the second value.
    pub fn peek(&mut self, max_records: usize, max_payload: usize) -> io::Result<(Vec<Round>, u64)> {
        let mut batch = Vec::new();
        let mut unreadable = 0;
        let mut taken = 0usize;
        'segments: for segment in &self.segments {
            let mut file: Option<File> = None;
            for info in segment.records.iter().filter(|r| r.seq >= self.acked) {
                if batch.len() >= max_records || (taken > 0 && taken + info.len as usize > max_payload) {
                    break 'segments;
                }
                let file = match &mut file {
                    Some(file) => file,
                    None => file.insert(File::open(&segment.path)?),
                };
                match read_record(file, info) {
                    Ok(payload) => {
                        taken += payload.len();
                        batch.push((*info, payload));
                    }
                    Err(_) => unreadable += 1,
                }
            }
        }
        Ok((batch, unreadable))
    }

    /// Everything before `seq` is acknowledged: persist that, and delete segments wholly before it.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        if seq > self.acked {
            self.write_acked(seq)?;
        }
        self.collect_acked()
    }

    fn write_acked(&mut self, seq: u64) -> io::Result<()> {
        let tmp = self.dir.join("acked.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(format!("{seq}\n").as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join("acked"))?;
        sync_dir(&self.dir)?;
        self.acked = seq;
        Ok(())
    }

    /// Delete segments whose records are all acknowledged, but keep the tail (appends go there).
    fn collect_acked(&mut self) -> io::Result<()> {
        while self.segments.len() > 1
            && self.segments.front().and_then(|s| s.records.last()).is_some_and(|last| last.seq < self.acked)
        {
            let segment = self.segments.pop_front().expect("checked");
            fs::remove_file(&segment.path)?;
        }
        Ok(())
    }

    /// Bytes of every segment on disk.
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Bytes of the records not yet acknowledged.
    pub fn queued_bytes(&self) -> u64 {
        self.unacked().map(RecordInfo::bytes).sum()
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

/// Read every whole record of a segment; cut the file at the first torn or corrupt one. Returns the
/// segment and how many bytes were cut (0: none).
fn scan(path: &Path) -> io::Result<(Segment, u64)> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let size = file.metadata()?.len();
    let mut records = Vec::new();
    let mut offset = 0u64;
    let mut header = [0u8; HEADER as usize];
    while offset + HEADER <= size {
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4"));
        if len > MAX_PAYLOAD || offset + HEADER + u64::from(len) > size {
            break;
        }
        let info = RecordInfo {
            seq: u64::from_le_bytes(header[8..16].try_into().expect("8")),
            offset,
            len,
            timestamp_ms: i64::from_le_bytes(header[16..24].try_into().expect("8")),
            samples: u32::from_le_bytes(header[24..28].try_into().expect("4")),
        };
        if read_record(&mut file, &info).is_err() {
            break;
        }
        records.push(info);
        offset += info.bytes();
    }
    let cut = size - offset;
    if cut > 0 {
        file.set_len(offset)?;
        file.sync_all()?;
    }
    Ok((Segment { path: path.to_owned(), bytes: offset, records }, cut))
}

/// A record's payload, its CRC checked.
fn read_record(file: &mut File, info: &RecordInfo) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(info.offset))?;
    let mut record = vec![0u8; info.bytes() as usize];
    file.read_exact(&mut record)?;
    let crc = u32::from_le_bytes(record[4..8].try_into().expect("4"));
    if crc32fast::hash(&record[8..]) != crc {
        return Err(invalid("record CRC mismatch".into()));
    }
    Ok(record.split_off(HEADER as usize))
}

/// Make a directory's entries (a new file, a rename) durable. Windows has no directory fsync; NTFS
/// journals its metadata.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Vec<u8> {
        format!("round-{i}-").repeat(100).into_bytes()
    }

    fn seqs(batch: &[(RecordInfo, Vec<u8>)]) -> Vec<u64> {
        batch.iter().map(|(info, _)| info.seq).collect()
    }

    #[test]
    fn rounds_come_back_in_order_across_reopens_and_acked_ones_never_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        for i in 0..10 {
            queue.append(&payload(i), 1000 + i as i64, 5).unwrap();
        }
        let (batch, _) = queue.peek(4, usize::MAX).unwrap();
        assert_eq!(seqs(&batch), [0, 1, 2, 3]);
        assert_eq!(batch[2].1, payload(2));
        queue.ack(4).unwrap();
        drop(queue);
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(queue.oldest_timestamp_ms(), Some(1004));
        let (batch, _) = queue.peek(100, usize::MAX).unwrap();
        assert_eq!(seqs(&batch), [4, 5, 6, 7, 8, 9]);
        queue.append(&payload(10), 1010, 5).unwrap();
        assert_eq!(queue.peek(100, usize::MAX).unwrap().0.last().unwrap().0.seq, 10);
        queue.ack(11).unwrap();
        assert_eq!(queue.queued_bytes(), 0);
        assert_eq!(queue.oldest_timestamp_ms(), None);
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
        file.write_all(&1000u32.to_le_bytes()).unwrap();
        file.write_all(b"partial").unwrap();
        drop(file);
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(queue.repaired, 11);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().0), [0, 1, 2]);
        queue.append(&payload(3), 3, 1).unwrap();
        drop(queue);
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(queue.repaired, 0);
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().0), [0, 1, 2, 3]);
    }

    #[test]
    fn a_flipped_byte_cuts_the_segment_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        for i in 0..3 {
            queue.append(&payload(i), i as i64, 1).unwrap();
        }
        let segment = queue.segments.back().unwrap().path.clone();
        let second = queue.segments.back().unwrap().records[1];
        drop(queue);
        let mut bytes = fs::read(&segment).unwrap();
        bytes[(second.offset + HEADER + 5) as usize] ^= 0xff;
        fs::write(&segment, bytes).unwrap();
        let mut queue = Queue::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(seqs(&queue.peek(100, usize::MAX).unwrap().0), [0]);
    }

    #[test]
    fn over_max_bytes_the_oldest_segments_go_and_their_unsent_samples_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB segments (the floor), 256 KiB in all; each round ~1 KiB.
        let mut queue = Queue::open(dir.path(), 256 * 1024).unwrap();
        let mut dropped = 0;
        for i in 0..1000 {
            dropped += queue.append(&payload(i), i as i64, 7).unwrap().samples;
        }
        assert!(queue.total_bytes() <= 256 * 1024, "{}", queue.total_bytes());
        let (batch, _) = queue.peek(usize::MAX, usize::MAX).unwrap();
        let first = batch[0].0.seq;
        assert!(first > 0);
        assert_eq!(dropped, first * 7, "every dropped round counted, once");
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
        assert_eq!(queue.peek(100, one * 2).unwrap().0.len(), 2);
        assert_eq!(queue.peek(100, 1).unwrap().0.len(), 1);
    }
}
