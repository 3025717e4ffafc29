//! The queue's tests: every kind of damage, loss and restart, and a property test over random runs of them.

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
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| segment_seq(name_of(p)).is_some()).collect();
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
    let first_left = segment_seq(name_of(&files[1])).unwrap();
    assert_eq!(queue.found_at_open.missing, first_left - 200);
    assert_eq!(queue.peek(1, usize::MAX).unwrap().rounds[0].0.seq, first_left);
    fs::remove_file(files.last().unwrap()).unwrap();
    drop(queue);
    let queue = open(dir.path(), 1 << 20);
    // The front gap was counted once: the acknowledgement moved past it.
    assert_eq!(queue.found_at_open.missing, 300 - segment_seq(name_of(files.last().unwrap())).unwrap());
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
                    assert_eq!(Some(body), appended.get(&info.seq), "step {step}: round {} read back wrong", info.seq);
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
