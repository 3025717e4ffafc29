//! The segment file format: the file header, the record layout, and reading a segment back (resynchronising
//! after damage, cutting a torn tail). See [`super`] for the guarantees this serves.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::private_files::PrivateDir;

/// A file's name in the queue's directory: every file is reached by it, relative to the directory the queue
/// holds open ([`PrivateDir`]); its path is kept for messages.
pub(super) fn name_of(path: &Path) -> &str {
    path.file_name().and_then(|name| name.to_str()).unwrap_or_default()
}

/// The first bytes of a segment in the current format.
pub(super) const FILE_HEADER: &[u8; 8] = b"OCRWQ002";
/// The first bytes of every record in the current format.
pub(super) const MAGIC: &[u8; 4] = b"OCRW";
/// The longest payload accepted (a corrupt length is never an allocation).
pub(super) const MAX_PAYLOAD: u32 = 64 * 1024 * 1024;

/// A segment's record layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// Before the magic: `[len][crc][seq][ts][samples]`, 28 bytes, from offset 0. Read only.
    V1,
    /// The file header, then `[magic][len][crc][seq][ts][samples]`, 32 bytes.
    V2,
}

impl Format {
    pub(super) fn header(self) -> u64 {
        match self {
            Format::V1 => 28,
            Format::V2 => 32,
        }
    }

    fn first_record(self) -> u64 {
        match self {
            Format::V1 => 0,
            Format::V2 => FILE_HEADER.len() as u64,
        }
    }
}

/// A queued round read back: where it was, and its payload.
pub type Round = (RecordInfo, Vec<u8>);

/// Where one record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// Its sequence number.
    pub seq: u64,
    /// Offset of its header in the segment.
    pub(super) offset: u64,
    /// Payload length.
    pub(super) len: u32,
    /// Its round's timestamp, ms since the epoch.
    pub timestamp_ms: i64,
    /// Samples in it.
    pub samples: u32,
}

impl RecordInfo {
    /// Payload bytes.
    pub fn payload_len(&self) -> usize {
        self.len as usize
    }
}

#[derive(Debug)]
pub(super) struct Segment {
    pub(super) path: PathBuf,
    pub(super) format: Format,
    /// The length of its good part: where the next record goes.
    pub(super) bytes: u64,
    pub(super) records: Vec<RecordInfo>,
    /// No more appends (an old format, or a failed write that could not be cut back).
    pub(super) sealed: bool,
}

impl Segment {
    pub(super) fn record_bytes(&self, info: &RecordInfo) -> u64 {
        self.format.header() + u64::from(info.len)
    }
}

/// Damage found in a segment: bytes skipped, and the rounds they held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file (for damage found at open, where it was before it was moved aside).
    pub segment: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// How many bytes were skipped.
    pub bytes: u64,
    /// The sequence numbers the damaged bytes held.
    pub lost: std::ops::Range<u64>,
    /// Unacknowledged rounds among them (counted dropped, reason `corrupt`); set once the acknowledgement is known.
    pub rounds: u64,
    /// A torn tail (a write that never returned), not a damaged record.
    pub torn: bool,
}

impl Damage {
    /// Set `rounds` to the lost rounds at or after `acked`.
    pub(super) fn count_from(&mut self, acked: u64) {
        self.rounds = self.lost.end.saturating_sub(self.lost.start.max(acked));
    }
}

/// What reading one segment back found.
#[derive(Debug)]
pub(super) struct Scanned {
    /// The segment as the queue indexes it (after a repair: the clean copy).
    pub(super) segment: Segment,
    /// Damaged bytes, with the sequence numbers they held.
    pub(super) damage: Vec<Damage>,
    /// Rounds the segment should hold past its last record whose bytes are simply not there: the file ends
    /// cleanly at a record boundary (a later segment deleted, or the file cut exactly there).
    pub(super) missing: std::ops::Range<u64>,
    /// What the file needs before the queue uses it: nothing is changed on disk until every segment has been
    /// read, so a queue that fails to open has changed nothing.
    pub(super) fix: Fix,
}

/// A change to a segment's file, planned by [`scan`] and made by [`apply`].
#[derive(Debug)]
pub(super) enum Fix {
    /// The file is sound.
    Keep,
    /// Cut a torn tail at `to`; rewrite a torn file header.
    Truncate {
        /// The good length.
        to: u64,
        /// The file header was torn (the file is shorter than it).
        header: bool,
    },
    /// Move the damaged file aside and put the readable records (`clean`: a whole segment, empty when none
    /// was readable) under its name.
    Repair {
        /// The clean copy's bytes.
        clean: Vec<u8>,
    },
}

/// Where one segment ends, as far as the queue knows.
#[derive(Debug, Clone, Copy)]
pub(super) enum End {
    /// The next segment starts here: a record at or past it is a ghost.
    Next(u64),
    /// The newest segment: the durable next sequence number says rounds below it were written.
    Recorded(u64),
    /// A queue from before the durable number.
    Unknown,
}

impl End {
    fn known(self) -> Option<u64> {
        match self {
            End::Next(seq) | End::Recorded(seq) => Some(seq),
            End::Unknown => None,
        }
    }
}

pub(super) fn encode_record(info: &RecordInfo, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(Format::V2.header() as usize + payload.len());
    record.extend_from_slice(MAGIC);
    record.extend_from_slice(&info.len.to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    record.extend_from_slice(&info.seq.to_le_bytes());
    record.extend_from_slice(&info.timestamp_ms.to_le_bytes());
    record.extend_from_slice(&info.samples.to_le_bytes());
    record.extend_from_slice(payload);
    let crc = v2_crc(&record);
    record[8..12].copy_from_slice(&crc.to_le_bytes());
    record
}

/// The CRC of a V2 record: its length and everything after the CRC field.
fn v2_crc(record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record[4..8]);
    hasher.update(&record[12..]);
    hasher.finalize()
}

/// Write `record` at `offset` (the segment's good length) and fsync it.
pub(super) fn write_at_end(dir: &PrivateDir, path: &Path, offset: u64, record: &[u8]) -> io::Result<()> {
    let mut file = dir.open_existing(name_of(path))?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(record)?;
    file.sync_data()
}

/// The record at `offset` of `bytes` when it is whole and checks: its info.
fn parse(bytes: &[u8], format: Format, offset: u64) -> Option<RecordInfo> {
    let start = usize::try_from(offset).ok()?;
    let header = format.header() as usize;
    let head = bytes.get(start..start.checked_add(header)?)?;
    let fields = match format {
        Format::V1 => head,
        Format::V2 => {
            if &head[..4] != MAGIC {
                return None;
            }
            &head[4..]
        }
    };
    let len = u32::from_le_bytes(fields[0..4].try_into().ok()?);
    if len > MAX_PAYLOAD {
        return None;
    }
    let record = bytes.get(start..start + header + len as usize)?;
    let crc = u32::from_le_bytes(fields[4..8].try_into().ok()?);
    let computed = match format {
        Format::V1 => crc32fast::hash(&record[8..]),
        Format::V2 => v2_crc(record),
    };
    (computed == crc).then(|| RecordInfo {
        seq: u64::from_le_bytes(fields[8..16].try_into().expect("8")),
        offset,
        len,
        timestamp_ms: i64::from_le_bytes(fields[16..24].try_into().expect("8")),
        samples: u32::from_le_bytes(fields[24..28].try_into().expect("4")),
    })
}

/// The format of a segment's bytes: by the file header, else by the records themselves (a damaged file header
/// does not make a segment unreadable), else `None` (nothing in it parses).
fn detect(bytes: &[u8]) -> Option<(Format, bool)> {
    if bytes.starts_with(FILE_HEADER) {
        return Some((Format::V2, true));
    }
    if bytes.len() < FILE_HEADER.len() && FILE_HEADER.starts_with(bytes) {
        // A file header torn while the segment was created: an empty segment.
        return Some((Format::V2, true));
    }
    let any_v2 = (0..bytes.len())
        .filter(|at| bytes[*at..].starts_with(MAGIC))
        .any(|at| parse(bytes, Format::V2, at as u64).is_some());
    if any_v2 {
        return Some((Format::V2, false));
    }
    parse(bytes, Format::V1, 0).map(|_| (Format::V1, true))
}

/// Read every whole record of a segment, whose first sequence number is `first_seq` (its name) and whose
/// rounds end before `end` when that is known (the next segment's name; for the newest, the durable next
/// sequence number). A damaged record is skipped and reading goes on at the next record that checks. Bytes
/// after the last record are a torn write (cut off) only when no round is known to be missing there;
/// otherwise they are damage. A segment with any damage, a damaged file header or a first record that does
/// not parse is never cut: its readable records are copied to a clean file under its own name and the original
/// is moved into `quarantine` for a person to look at.
pub(super) fn scan(dir: &PrivateDir, path: &Path, first_seq: u64, end: End) -> io::Result<Scanned> {
    let bytes = dir.read(name_of(path))?;
    let size = bytes.len() as u64;
    let Some((format, header_ok)) = detect(&bytes) else {
        // Nothing in it parses: every round it held is damaged.
        let lost = first_seq..end.known().unwrap_or(first_seq).max(first_seq);
        let damage = (size > 0)
            .then(|| Damage { segment: path.to_owned(), offset: 0, bytes: size, lost, rounds: 0, torn: false })
            .into_iter()
            .collect::<Vec<_>>();
        let fix = if size > 0 { Fix::Repair { clean: Vec::new() } } else { Fix::Keep };
        let segment =
            Segment { path: path.to_owned(), format: Format::V2, bytes: 0, records: Vec::new(), sealed: true };
        return Ok(Scanned { segment, damage, missing: 0..0, fix });
    };
    let below_end = |info: &RecordInfo| !matches!(end, End::Next(next) if info.seq >= next);
    let mut records: Vec<RecordInfo> = Vec::new();
    let mut damage = Vec::new();
    let mut offset = format.first_record().min(size);
    let mut good = size;
    let mut missing = 0..0;
    let next_of = |records: &[RecordInfo]| records.last().map_or(first_seq, |r| r.seq + 1);
    while offset < size {
        if let Some(info) = parse(&bytes, format, offset) {
            // Sequence numbers only grow within a segment and stay below the next one's; anything else is not
            // a record of ours (a ghost: a write whose fsync failed, its number reused by the next segment).
            if records.last().is_none_or(|r| info.seq > r.seq) && below_end(&info) {
                offset += format.header() + u64::from(info.len);
                records.push(info);
                continue;
            }
        }
        let resync = match format {
            Format::V1 => None,
            Format::V2 => (offset + 1..size).filter(|at| bytes[*at as usize..].starts_with(MAGIC)).find_map(|at| {
                parse(&bytes, format, at).filter(|r| records.last().is_none_or(|l| r.seq > l.seq) && below_end(r))
            }),
        };
        if let Some(next) = resync {
            damage.push(Damage {
                segment: path.to_owned(),
                offset,
                bytes: next.offset - offset,
                lost: next_of(&records)..next.seq,
                rounds: 0,
                torn: false,
            });
            offset = next.offset;
            continue;
        }
        let from = next_of(&records);
        let lost_here = match end.known() {
            Some(end) => from..end.max(from),
            // Without a known end (a queue from before the durable number): a whole-length record at the end
            // whose CRC fails is a damaged round; anything shorter is a write that never returned.
            None => {
                let at = offset as usize;
                let whole = format == Format::V2
                    && bytes[at..].starts_with(MAGIC)
                    && size - offset >= format.header()
                    && size - offset
                        == format.header()
                            + u64::from(u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4")));
                from..from + u64::from(whole)
            }
        };
        damage.push(Damage {
            segment: path.to_owned(),
            offset,
            bytes: size - offset,
            torn: lost_here.is_empty(),
            lost: lost_here,
            rounds: 0,
        });
        good = offset;
        break;
    }
    if good == size {
        if let Some(end) = end.known() {
            missing = next_of(&records)..end.max(next_of(&records));
        }
    }
    let first_bad = records.first().is_none_or(|r| r.offset != format.first_record()) && size > format.first_record();
    let needs_repair = !header_ok || first_bad || damage.iter().any(|d| !d.torn);
    if needs_repair {
        let mut clean = FILE_HEADER.to_vec();
        let mut moved = Vec::with_capacity(records.len());
        for info in &records {
            let start = info.offset as usize + format.header() as usize;
            let payload = &bytes[start..start + info.len as usize];
            let copy = RecordInfo { offset: clean.len() as u64, ..*info };
            clean.extend(encode_record(&copy, payload));
            moved.push(copy);
        }
        let segment = Segment {
            path: path.to_owned(),
            format: Format::V2,
            bytes: clean.len() as u64,
            records: moved,
            sealed: true,
        };
        let clean = if segment.records.is_empty() { Vec::new() } else { clean };
        return Ok(Scanned { segment, damage, missing, fix: Fix::Repair { clean } });
    }
    let header = format == Format::V2 && good < FILE_HEADER.len() as u64;
    let fix = if good < size || header { Fix::Truncate { to: good, header } } else { Fix::Keep };
    let bytes_good = if header { FILE_HEADER.len() as u64 } else { good };
    let sealed = format != Format::V2;
    Ok(Scanned {
        segment: Segment { path: path.to_owned(), format, bytes: bytes_good, records, sealed },
        damage,
        missing,
        fix,
    })
}

/// Make the change [`scan`] planned for the segment at `path`; a damaged file goes into the quarantine.
/// Returns where a damaged file went. A repair first writes the clean copy beside it (`.seg.repair`), then
/// moves the original aside, then renames the copy in: a crash in between leaves either the original or the
/// copy, which the next open finishes ([`finish_repair`]).
pub(super) fn apply(dir: &PrivateDir, path: &Path, fix: &Fix) -> io::Result<Option<PathBuf>> {
    match fix {
        Fix::Keep => Ok(None),
        Fix::Truncate { to, header } => {
            let mut file = dir.open_existing(name_of(path))?;
            file.set_len(*to)?;
            if *header {
                // A torn file header: rewrite it whole so appends (if any) land after it.
                file.write_all(FILE_HEADER)?;
            }
            file.sync_all()?;
            Ok(None)
        }
        Fix::Repair { clean } => {
            let repaired = repair_name(name_of(path));
            if !clean.is_empty() {
                write_whole(dir, &repaired, clean)?;
            }
            let quarantined = move_aside(dir, name_of(path))?;
            if !clean.is_empty() {
                dir.rename(&repaired, name_of(path))?;
            }
            Ok(Some(quarantined))
        }
    }
}

/// The name a segment's clean copy is written under before it takes the segment's.
fn repair_name(name: &str) -> String {
    format!("{name}.repair")
}

/// Finish a repair a crash interrupted (`repaired`: a `.seg.repair` name): a clean copy whose segment is gone
/// (moved aside) takes its name; one whose segment is still there is discarded (the segment is read, and
/// repaired, again).
pub(super) fn finish_repair(dir: &PrivateDir, repaired: &str) -> io::Result<()> {
    let segment = repaired.strip_suffix(".repair").unwrap_or(repaired);
    match dir.open_read(segment) {
        Ok(_) => dir.remove(repaired),
        Err(err) if err.kind() == io::ErrorKind::NotFound => dir.rename(repaired, segment),
        Err(err) => Err(err),
    }
}

/// Write `bytes` as a new file `name` and fsync it.
fn write_whole(dir: &PrivateDir, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut file = dir.create_fresh(name)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Move the damaged segment `name` into the directory's `quarantine` (created private), named after it and the
/// time, so a person can look at what was lost; returns where it went.
fn move_aside(dir: &PrivateDir, name: &str) -> io::Result<PathBuf> {
    let quarantine = dir.subdir(super::QUARANTINE, true)?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let to = format!("{name}.{stamp}");
    dir.rename_into(name, &quarantine, &to)?;
    Ok(quarantine.display(&to))
}

/// A record's payload, its CRC checked: `None` when it no longer checks.
pub(super) fn read_record(file: &mut File, format: Format, info: &RecordInfo) -> io::Result<Option<Vec<u8>>> {
    let header = format.header();
    file.seek(SeekFrom::Start(info.offset))?;
    let mut record = vec![0u8; (header + u64::from(info.len)) as usize];
    match file.read_exact(&mut record) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    Ok(parse(&record, format, 0).filter(|r| r.seq == info.seq).map(|_| record.split_off(header as usize)))
}
