//! The segment file format: the file header, the record layout, and reading a segment back (resynchronising
//! after damage, cutting a torn tail). See [`super`] for the guarantees this serves.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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

/// Damage found in a segment: bytes skipped, and how many unacknowledged rounds they held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// How many bytes were skipped.
    pub bytes: u64,
    /// Unacknowledged rounds lost in them (counted dropped, reason `corrupt`).
    pub rounds: u64,
    /// A torn tail (a write that never returned), not a damaged record.
    pub torn: bool,
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
pub(super) fn write_at_end(path: &Path, offset: u64, record: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
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

/// Read every whole record of a segment. In the current format a damaged record is skipped and reading goes
/// on at the next record that checks; what cannot be read up to the end is a torn tail and is cut off. Rounds
/// lost to damage are counted from the sequence numbers around it (those below `acked` do not count).
pub(super) fn scan(path: &Path, first_seq: u64, acked: u64) -> io::Result<(Segment, Vec<Damage>)> {
    let bytes = fs::read(path)?;
    let size = bytes.len() as u64;
    let format = if bytes.starts_with(FILE_HEADER) {
        Format::V2
    } else if size > 0 && size < FILE_HEADER.len() as u64 && FILE_HEADER.starts_with(&bytes) {
        // A file header torn while the segment was created: an empty segment.
        Format::V2
    } else {
        Format::V1
    };
    let mut records: Vec<RecordInfo> = Vec::new();
    let mut damage = Vec::new();
    let mut offset = format.first_record().min(size);
    let mut good = size;
    let lost_between = |previous: Option<&RecordInfo>, next_seq: u64| {
        let from = previous.map_or(first_seq, |r| r.seq + 1).max(acked);
        next_seq.saturating_sub(from)
    };
    while offset < size {
        if let Some(info) = parse(&bytes, format, offset) {
            // Sequence numbers only grow within a segment; anything else is not a record of ours.
            if records.last().is_none_or(|r| info.seq > r.seq) {
                offset += format.header() + u64::from(info.len);
                records.push(info);
                continue;
            }
        }
        let resync = match format {
            Format::V1 => None,
            Format::V2 => (offset + 1..size)
                .filter(|at| bytes[*at as usize..].starts_with(MAGIC))
                .find_map(|at| parse(&bytes, format, at).filter(|r| records.last().is_none_or(|l| r.seq > l.seq))),
        };
        match resync {
            Some(next) => {
                damage.push(Damage {
                    segment: path.to_owned(),
                    offset,
                    bytes: next.offset - offset,
                    rounds: lost_between(records.last(), next.seq),
                    torn: false,
                });
                offset = next.offset;
            }
            None => {
                // A whole-length record at the end whose CRC fails is a damaged round; anything shorter is
                // a write that never returned.
                let whole = match format {
                    Format::V2 => {
                        bytes[offset as usize..].starts_with(MAGIC)
                            && size - offset >= format.header()
                            && size - offset
                                == format.header()
                                    + u64::from(u32::from_le_bytes(
                                        bytes[offset as usize + 4..offset as usize + 8].try_into().expect("4"),
                                    ))
                    }
                    Format::V1 => false,
                };
                let previous_seq = records.last().map_or(first_seq, |r| r.seq + 1);
                damage.push(Damage {
                    segment: path.to_owned(),
                    offset,
                    bytes: size - offset,
                    rounds: u64::from(whole && previous_seq >= acked),
                    torn: !whole,
                });
                good = offset;
                break;
            }
        }
    }
    if good < size {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(good)?;
        file.sync_all()?;
    }
    let bytes_good = if format == Format::V2 && good < FILE_HEADER.len() as u64 {
        // A torn file header: rewrite it whole so appends (if any) land after it.
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.write_all(FILE_HEADER)?;
        file.sync_all()?;
        FILE_HEADER.len() as u64
    } else {
        good
    };
    let sealed = format != Format::V2;
    Ok((Segment { path: path.to_owned(), format, bytes: bytes_good, records, sealed }, damage))
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
