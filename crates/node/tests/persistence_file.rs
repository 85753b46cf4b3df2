//! The file persistence: the conformance kit, random changes against the
//! model and the memory store (with reopens), group commit, compaction,
//! snapshot files, and injected faults (torn writes, flipped bits, failing
//! fsyncs, a full disk, missing segments, another identity).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, HardState, Membership, Snapshot, SnapshotMeta};
use raft_node::persistence::file::{FaultFs, FileOptions, FilePersistence, SnapshotReader};
use raft_node::persistence::memory::MemoryPersistence;
use raft_node::persistence::{
    Change, IdentityMismatch, InvalidChange, Owner, Persistence, PersistenceError, State,
};
use raft_node::testkit::persistence::{
    self as kit, random_changes, sample_entries, sample_identity, ChangeGenerator, Model,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

fn small() -> FileOptions {
    FileOptions::default().segment_size(4096).preallocate(false)
}

fn small_prealloc() -> FileOptions {
    FileOptions::default()
        .segment_size(64 << 10)
        .preallocate(true)
}

async fn open(dir: &Path, options: &FileOptions) -> FilePersistence {
    FilePersistence::open_with(dir, options.clone())
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn first_change(n: u64) -> Change {
    Change {
        identity: Some(sample_identity()),
        entries: sample_entries(1, n, 1),
        hard_state: Some(hs(1, 1, 0)),
        ..Change::default()
    }
}

/// Saves the entries of `indexes` (term 1), one per save.
async fn append_each(store: &FilePersistence, indexes: std::ops::RangeInclusive<u64>) {
    for i in indexes {
        store
            .save(Change {
                entries: sample_entries(i, i, 1),
                ..Change::default()
            })
            .await
            .unwrap();
    }
}

fn snapshot(index: u64, term: u64, data: Bytes) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership: Membership::with_voters([1, 2, 3]),
        },
        data,
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    v.sort();
    v
}

/// The records of a segment file: (offset, total length, type byte), by
/// the documented format.
fn records(path: &Path) -> Vec<(usize, usize, u8)> {
    let buf = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 32;
    while at + 10 <= buf.len() {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        let kind = buf[at + 8];
        if len == 0 && kind == 0 {
            break;
        }
        out.push((at, len + 10, kind));
        at += len + 10;
    }
    out
}

fn flip_bit(path: &Path, offset: usize, bit: u8) {
    let mut buf = std::fs::read(path).unwrap();
    buf[offset] ^= 1 << bit;
    std::fs::write(path, buf).unwrap();
}

fn expect_corrupt(result: Result<FilePersistence, PersistenceError>, needles: &[&str]) -> String {
    match result {
        Ok(_) => panic!("the open must refuse, it succeeded"),
        Err(PersistenceError::Corrupt(c)) => {
            let msg = c.to_string();
            for n in needles {
                assert!(msg.contains(n), "the error must mention {n:?}: {msg}");
            }
            msg
        }
        Err(e) => panic!("expected Corrupt, got {e:?}"),
    }
}

async fn state(store: &FilePersistence) -> State {
    store.load().await.unwrap().expect("a state")
}

// ---------------------------------------------------------------------------
// The kit.

fn kit_opener(
    options: FileOptions,
) -> impl FnMut() -> Box<
    dyn FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = FilePersistence>>>,
> {
    move || {
        let dir = TempDir::new().unwrap();
        let options = options.clone();
        Box::new(move || {
            let path = dir.path().to_owned();
            let options = options.clone();
            Box::pin(async move { open(&path, &options).await })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_kit_small_segments() {
    let started = std::time::Instant::now();
    kit::run_all(kit_opener(small())).await;
    eprintln!(
        "persistence kit on files, 4 KiB segments: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_kit_preallocated() {
    let started = std::time::Instant::now();
    kit::run_all(kit_opener(small_prealloc())).await;
    eprintln!(
        "persistence kit on files, preallocated 64 KiB segments: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_kit_default_segments() {
    kit::run_all(kit_opener(FileOptions::default().preallocate(false))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_against_model_many_seeds() {
    for seed in 1..=3 {
        let dir = TempDir::new().unwrap();
        let path = dir.path().to_owned();
        let options = if seed % 2 == 0 {
            small_prealloc()
        } else {
            small()
        };
        kit::random_against_model(
            || {
                let (path, options) = (path.clone(), options.clone());
                async move { open(&path, &options).await }
            },
            seed,
            3_000,
        )
        .await;
    }
}

/// `random_changes` applied to the file store and to the memory store, with
/// random reopens of the file store: after every reopen and every 50 steps
/// both load exactly the same state, which the model accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_changes_with_reopens_against_memory() {
    let (mut reopens, mut snapshots) = (0, 0);
    for seed in [11u64, 12, 13] {
        let dir = TempDir::new().unwrap();
        let options = if seed == 12 {
            small_prealloc()
        } else {
            small()
        };
        let mut rng = SmallRng::seed_from_u64(seed);
        let memory = MemoryPersistence::new();
        let mut model = Model::new();
        let mut store = open(dir.path(), &options).await;
        for (step, change) in random_changes(seed, 2_500).into_iter().enumerate() {
            let what = format!("seed {seed} step {step}");
            model.apply(&change).unwrap();
            snapshots += usize::from(change.snapshot.is_some());
            memory.save(change.clone()).await.unwrap();
            store
                .save(change)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let reopen = rng.random_ratio(1, 30);
            if reopen {
                drop(store);
                store = open(dir.path(), &options).await;
                reopens += 1;
            }
            if reopen || step % 50 == 49 {
                let loaded = store.load().await.unwrap();
                model.assert_matches(loaded.as_ref(), &what);
                assert_eq!(
                    loaded,
                    memory.load().await.unwrap(),
                    "{what}: file vs memory"
                );
            }
        }
    }
    assert!(
        reopens > 100 && snapshots > 100,
        "{reopens} reopens, {snapshots} snapshots"
    );
}

// ---------------------------------------------------------------------------
// Group commit.

/// Concurrent saves share syncs: 400 saves from 200 tasks take far fewer
/// syncs than saves, and everything is there in order afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_syncs() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(open(dir.path(), &FileOptions::default().preallocate(false)).await);
    store.save(first_change(0)).await.unwrap();
    let next = Arc::new(Mutex::new(1u64));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (store, next) = (store.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..2 {
                let done = {
                    let mut next = next.lock().unwrap();
                    let index = *next;
                    *next += 1;
                    store.submit(Change {
                        entries: sample_entries(index, index, 1),
                        ..Change::default()
                    })
                };
                done.await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.saves, 401);
    assert!(
        stats.syncs * 4 < stats.saves,
        "group commit: {} syncs for {} saves",
        stats.syncs,
        stats.saves
    );
    assert_eq!(state(&store).await.entries, sample_entries(1, 400, 1));
}

/// A refused change in the middle of a batch is answered on its own; the
/// others go through.
#[tokio::test]
async fn refused_change_inside_a_batch() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(5)).await.unwrap();
    let a = store.submit(Change {
        entries: sample_entries(6, 6, 1),
        ..Change::default()
    });
    let bad = store.submit(Change {
        entries: sample_entries(9, 9, 1),
        ..Change::default()
    });
    let b = store.submit(Change {
        entries: sample_entries(7, 7, 1),
        hard_state: Some(hs(1, 1, 3)),
        ..Change::default()
    });
    let (a, bad, b) = tokio::join!(a, bad, b);
    a.unwrap();
    b.unwrap();
    assert!(matches!(bad, Err(PersistenceError::Invalid(_))), "{bad:?}");
    let s = state(&store).await;
    assert_eq!(s.entries, sample_entries(1, 7, 1));
    assert_eq!(s.hard_state, hs(1, 1, 3));
    assert_eq!(store.stats().rejected_saves, 1);
}

// ---------------------------------------------------------------------------
// Segments, truncation, compaction, snapshots.

/// A truncation that spans segments, before and after a reopen.
#[tokio::test]
async fn truncation_spanning_segments() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(0)).await.unwrap();
    append_each(&store, 1..=300).await;
    let before = segments(dir.path()).len();
    assert!(before > 5, "{before} segments");
    store
        .save(Change {
            truncate_from: Some(50),
            entries: sample_entries(50, 60, 2),
            hard_state: Some(hs(2, 0, 10)),
            ..Change::default()
        })
        .await
        .unwrap();
    let mut expected = sample_entries(1, 49, 1);
    expected.extend(sample_entries(50, 60, 2));
    assert_eq!(state(&store).await.entries, expected);
    drop(store);
    let store = open(dir.path(), &small()).await;
    assert_eq!(state(&store).await.entries, expected);
    store
        .save(Change {
            entries: sample_entries(61, 62, 2),
            ..Change::default()
        })
        .await
        .unwrap();
    expected.extend(sample_entries(61, 62, 2));
    drop(store);
    let store = open(dir.path(), &small()).await;
    assert_eq!(state(&store).await.entries, expected);
}

/// Snapshots let whole segments go: the number of segment files stays
/// bounded, one snapshot file remains, and a reopen sees the same state.
#[tokio::test]
async fn compaction_removes_segments() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(0)).await.unwrap();
    let mut max_segments = 0;
    for batch in 0..100u64 {
        let from = batch * 20 + 1;
        let snapshot_at = (batch % 5 == 4).then(|| from - 10);
        store
            .save(Change {
                entries: sample_entries(from, from + 19, 1),
                snapshot: snapshot_at.map(|i| snapshot(i, 1, Bytes::from(vec![batch as u8; 100]))),
                hard_state: Some(hs(1, 1, from + 19)),
                ..Change::default()
            })
            .await
            .unwrap();
        max_segments = max_segments.max(segments(dir.path()).len());
        assert!(snapshot_files(dir.path()).len() <= 1);
    }
    let stats = store.stats();
    assert!(stats.segments_deleted > 10, "{stats:?}");
    assert!(max_segments < 40, "{max_segments} segments at most");
    let before = state(&store).await;
    assert_eq!(before.snapshot.as_ref().unwrap().meta.index, 1971);
    assert_eq!(before.entries.first().unwrap().index, 1972);
    drop(store);
    let store = open(dir.path(), &small()).await;
    assert_eq!(state(&store).await, before);
    assert_eq!(snapshot_files(dir.path()).len(), 1);
    assert_eq!(
        store.recovery().first_segment,
        store.recovery().last_segment - (store.recovery().segments_replayed - 1)
    );
}

/// The snapshot file reads by ranges; a damaged snapshot file is refused.
#[tokio::test]
async fn snapshot_file_reads_by_ranges() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(10)).await.unwrap();
    assert_eq!(store.snapshot_path(), None);
    let data: Vec<u8> = (0..(3 << 20) + 17).map(|i: u32| (i % 251) as u8).collect();
    let snap = snapshot(8, 1, Bytes::from(data.clone()));
    store
        .save(Change {
            snapshot: Some(snap.clone()),
            hard_state: Some(hs(1, 1, 8)),
            ..Change::default()
        })
        .await
        .unwrap();
    let path = store.snapshot_path().expect("a snapshot file");
    let mut reader = SnapshotReader::open(&path).unwrap();
    assert_eq!(reader.meta(), &snap.meta);
    assert_eq!(reader.data_len(), data.len() as u64);
    for (offset, len) in [(0usize, 10usize), (1 << 20, 4096), (data.len() - 5, 5)] {
        let mut buf = vec![0; len];
        reader.read_data(offset as u64, &mut buf).unwrap();
        assert_eq!(buf, &data[offset..offset + len]);
    }
    assert!(reader
        .read_data(data.len() as u64 - 1, &mut [0; 2])
        .is_err());
    reader.verify().unwrap();
    assert_eq!(state(&store).await.snapshot, Some(snap.clone()));
    // A newer snapshot replaces the file.
    let snap2 = snapshot(9, 1, Bytes::from_static(b"nine"));
    store
        .save(Change {
            snapshot: Some(snap2.clone()),
            hard_state: Some(hs(1, 1, 9)),
            ..Change::default()
        })
        .await
        .unwrap();
    let path2 = store.snapshot_path().unwrap();
    assert_ne!(path, path2);
    assert!(!path.exists(), "the old snapshot file is removed");
    assert_eq!(snapshot_files(dir.path()), vec![path2.clone()]);
    drop(store);
    // A flipped bit in the data: found by verify and by load.
    let size = std::fs::metadata(&path2).unwrap().len() as usize;
    flip_bit(&path2, size - 14, 3);
    assert!(matches!(
        SnapshotReader::open(&path2).unwrap().verify(),
        Err(PersistenceError::Corrupt(_))
    ));
    let store = open(dir.path(), &small()).await;
    match store.load().await {
        Err(PersistenceError::Corrupt(c)) => {
            let file = c
                .file()
                .expect("names the file")
                .to_string_lossy()
                .into_owned();
            assert!(file.contains("snapshot-"), "{c}");
            assert!(c.offset().is_some(), "says where: {c}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    drop(store);
    // A damaged header: the open refuses.
    flip_bit(&path2, 20, 0);
    expect_corrupt(
        FilePersistence::open_with(dir.path(), small()).await,
        &["snapshot-", "offset"],
    );
}

/// Files a crash may leave behind are cleaned up on open: temporary files,
/// a snapshot file no marker names, a segment whose creation did not
/// finish, and a segment left over by an interrupted compaction.
#[tokio::test]
async fn leftovers_are_removed_on_open() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(3)).await.unwrap();
    let expected = state(&store).await;
    drop(store);
    let segs = segments(dir.path());
    let last = segs.last().unwrap().clone();
    let name = last.file_name().unwrap().to_string_lossy().to_string();
    let seq: u64 = name["segment-".len()..name.len() - 4].parse().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join(format!("segment-{:020}.wal.tmp", seq + 1)),
        b"partial",
    )
    .unwrap();
    std::fs::write(d.join("snapshot-00000000000000000009.snap.tmp"), b"partial").unwrap();
    std::fs::write(d.join("snapshot-00000000000000000007.snap"), b"orphan").unwrap();
    // A next segment with half a header (its creation did not finish).
    std::fs::write(
        d.join(format!("segment-{:020}.wal", seq + 1)),
        b"RAFTWAL\0\x01",
    )
    .unwrap();
    std::fs::write(d.join("notes.txt"), b"not ours").unwrap();
    let store = open(dir.path(), &small()).await;
    assert_eq!(state(&store).await, expected);
    assert_eq!(store.recovery().removed.len(), 4, "{:?}", store.recovery());
    assert!(d.join("notes.txt").exists(), "files not ours stay");
    assert_eq!(segments(d), segs);
    assert!(snapshot_files(d).is_empty());
}

// ---------------------------------------------------------------------------
// Faults.

/// A write torn at every kind of place (inside a record header, a payload,
/// just before the trailer; in a plain and in a preallocated segment): the
/// save fails, and a reopen cuts the tail and loads everything before it.
#[tokio::test]
async fn torn_write_at_the_tail_is_cut() {
    for prealloc in [false, true] {
        for keep in [1usize, 4, 9, 12, 40, 200, 340, 370] {
            let what = format!("preallocated {prealloc}, {keep} bytes landed");
            let dir = TempDir::new().unwrap();
            let fault = FaultFs::new();
            let options =
                if prealloc { small_prealloc() } else { small() }.fs(Arc::new(fault.clone()));
            let store = open(dir.path(), &options).await;
            store.save(first_change(5)).await.unwrap();
            if prealloc {
                // The next segment is preallocated once the active one is
                // half full: fill it, then wait until the store moved to
                // the preallocated segment.
                store
                    .save(Change {
                        entries: vec![Entry {
                            term: 1,
                            index: 6,
                            payload: EntryPayload::Command(Bytes::from(vec![3u8; 40 << 10])),
                        }],
                        ..Change::default()
                    })
                    .await
                    .unwrap();
                for _ in 0..500 {
                    if store.stats().active_preallocated {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    store.save(Change::default()).await.unwrap();
                }
                assert!(store.stats().active_preallocated, "{what}");
            }
            let b = if prealloc { 1 } else { 0 };
            store
                .save(Change {
                    entries: sample_entries(6 + b, 8 + b, 1),
                    hard_state: Some(hs(1, 1, 4)),
                    ..Change::default()
                })
                .await
                .unwrap();
            let expected = state(&store).await;
            fault.tear_next_write(".wal", keep);
            let err = store
                .save(Change {
                    entries: vec![Entry {
                        term: 2,
                        index: 9 + b,
                        payload: EntryPayload::Command(Bytes::from(vec![7u8; 300])),
                    }],
                    hard_state: Some(hs(2, 0, 6)),
                    ..Change::default()
                })
                .await
                .unwrap_err();
            assert!(matches!(err, PersistenceError::Io(_)), "{what}: {err:?}");
            drop(store);
            fault.heal();
            let store = open(dir.path(), &options).await;
            assert_eq!(state(&store).await, expected, "{what}");
            let torn = store.recovery().torn_tail.clone();
            let torn = torn.unwrap_or_else(|| panic!("{what}: a torn tail must be reported"));
            assert!(
                torn.bytes > 0 && torn.bytes <= keep as u64,
                "{what}: {torn:?}"
            );
            assert_eq!(store.stats().torn_tails_cut, 1);
            // The log goes on after the cut, and survives another reopen.
            store
                .save(Change {
                    entries: sample_entries(9 + b, 9 + b, 2),
                    ..Change::default()
                })
                .await
                .unwrap();
            drop(store);
            let store = open(dir.path(), &options).await;
            assert!(store.recovery().torn_tail.is_none(), "{what}");
            assert_eq!(state(&store).await.entries.len() as u64, 9 + b, "{what}");
        }
    }
}

/// A flipped bit in a record in the middle of the log (of the last segment,
/// or of an earlier one), or in the last record when it is complete: the
/// open refuses with an error naming the file and the offset.
#[tokio::test]
async fn flipped_bit_in_a_record_is_refused() {
    for (case, options) in [("plain", small()), ("preallocated", small_prealloc())] {
        let dir = TempDir::new().unwrap();
        let store = open(dir.path(), &options).await;
        store.save(first_change(0)).await.unwrap();
        for i in 1..=120 {
            store
                .save(Change {
                    entries: sample_entries(i, i, 1),
                    hard_state: Some(hs(1, 1, i / 2)),
                    ..Change::default()
                })
                .await
                .unwrap();
        }
        drop(store);
        let segs = segments(dir.path());
        let last = segs.last().unwrap();
        let recs = records(last);
        assert!(recs.len() > 4, "{case}: {} records", recs.len());
        // Every bit of the payload of a middle record, in turn (a sample).
        let (mid, len, _) = recs[recs.len() / 2];
        let name = last.file_name().unwrap().to_string_lossy().to_string();
        for byte in [
            mid,
            mid + 2,
            mid + 5,
            mid + 8,
            mid + 12,
            mid + len - 3,
            mid + len - 1,
        ] {
            for bit in [0u8, 7] {
                flip_bit(last, byte, bit);
                let msg = expect_corrupt(
                    FilePersistence::open_with(dir.path(), options.clone()).await,
                    &[&name, "offset"],
                );
                assert!(
                    msg.contains(&format!("offset {mid}")),
                    "{case}: byte {byte}: {msg}"
                );
                flip_bit(last, byte, bit);
            }
        }
        // The last record, complete, with a flipped payload bit.
        let (end, end_len, _) = *recs.last().unwrap();
        flip_bit(last, end + end_len - 4, 1);
        expect_corrupt(
            FilePersistence::open_with(dir.path(), options.clone()).await,
            &[&name, &format!("offset {end}")],
        );
        flip_bit(last, end + end_len - 4, 1);
        // Every bit of the last record's length field: the record is
        // complete, so this is damage, not a torn write.
        for bit in 0..32 {
            flip_bit(last, end + bit / 8, (bit % 8) as u8);
            expect_corrupt(
                FilePersistence::open_with(dir.path(), options.clone()).await,
                &[&name, &format!("offset {end}")],
            );
            flip_bit(last, end + bit / 8, (bit % 8) as u8);
        }
        // A record of an earlier segment.
        if segs.len() > 1 {
            let first = &segs[0];
            let recs = records(first);
            let (at, len, _) = recs[recs.len() - 1];
            flip_bit(first, at + len / 2, 4);
            let fname = first.file_name().unwrap().to_string_lossy().to_string();
            expect_corrupt(
                FilePersistence::open_with(dir.path(), options.clone()).await,
                &[&fname, &format!("offset {at}")],
            );
            flip_bit(first, at + len / 2, 4);
        }
        // Undamaged again: it opens.
        let store = open(dir.path(), &options).await;
        assert_eq!(state(&store).await.entries.len(), 120, "{case}");
        assert!(store.recovery().torn_tail.is_none());
    }
}

/// A lost tail of a segment that is not the last one is caught by the next
/// segment's checkpoint.
#[tokio::test]
async fn lost_tail_of_an_earlier_segment_is_refused() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(0)).await.unwrap();
    append_each(&store, 1..=300).await;
    drop(store);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{} segments", segs.len());
    let victim = &segs[segs.len() - 2];
    // Its last change (before the end record, which names the next segment).
    let (at, _, _) = *records(victim)
        .iter()
        .rev()
        .find(|&&(_, _, kind)| kind & 0x7f != 7)
        .unwrap();
    let buf = std::fs::read(victim).unwrap();
    std::fs::write(victim, &buf[..at]).unwrap();
    let next = segs[segs.len() - 1]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    expect_corrupt(
        FilePersistence::open_with(dir.path(), small()).await,
        &[&next, "offset 32", "checkpoint"],
    );
}

/// A missing segment (a gap in the numbering, or the first one gone) is
/// refused, naming the missing file.
#[tokio::test]
async fn missing_segment_is_refused() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(0)).await.unwrap();
    append_each(&store, 1..=200).await;
    drop(store);
    let segs = segments(dir.path());
    assert!(segs.len() >= 4);
    for victim in [&segs[segs.len() / 2], &segs[0]] {
        let saved = std::fs::read(victim).unwrap();
        std::fs::remove_file(victim).unwrap();
        let name = victim.file_name().unwrap().to_string_lossy().to_string();
        expect_corrupt(
            FilePersistence::open_with(dir.path(), small()).await,
            &[&name, "missing"],
        );
        std::fs::write(victim, saved).unwrap();
    }
    let store = open(dir.path(), &small()).await;
    assert_eq!(state(&store).await.entries.len(), 200);
}

/// A store of 200 one-entry saves in 4 KiB segments, closed; its segments.
async fn store_of_200(dir: &Path) -> Vec<PathBuf> {
    let store = open(dir, &small()).await;
    store.save(first_change(0)).await.unwrap();
    for i in 1..=200 {
        store
            .save(Change {
                entries: sample_entries(i, i, 1),
                hard_state: Some(hs(1, 1, i - 1)),
                ..Change::default()
            })
            .await
            .unwrap();
    }
    drop(store);
    let segs = segments(dir);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    segs
}

/// The index of the first entry a segment holds, by the documented format.
fn first_index_in(path: &Path) -> u64 {
    let buf = std::fs::read(path).unwrap();
    let (at, _, _) = records(path)
        .into_iter()
        .find(|&(_, _, kind)| kind & 0x7f == 5)
        .expect("an entries record");
    u64::from_le_bytes(buf[at + 9..at + 17].try_into().unwrap())
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The newest segment deleted, the newest two deleted (the log cut back
/// to an earlier segment boundary), or the newest emptied: the segment
/// before says the log went on, so the open refuses, naming the missing
/// file and the first lost index. Put back, the store opens whole.
#[tokio::test]
async fn missing_newest_segments_are_refused() {
    let dir = TempDir::new().unwrap();
    let segs = store_of_200(dir.path()).await;
    let n = segs.len();
    let (newest, second) = (&segs[n - 1], &segs[n - 2]);
    let saved: Vec<Vec<u8>> = segs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let restore = || {
        for (p, b) in segs.iter().zip(&saved) {
            std::fs::write(p, b).unwrap();
        }
    };

    let from = format!("from index {} on", first_index_in(newest));
    std::fs::remove_file(newest).unwrap();
    let msg = expect_corrupt(
        FilePersistence::open_with(dir.path(), small()).await,
        &[&file_name(newest), "is missing", &file_name(second), &from],
    );
    assert!(
        msg.contains("offset"),
        "names where the end record is: {msg}"
    );
    restore();

    let from = format!("from index {} on", first_index_in(second));
    std::fs::remove_file(newest).unwrap();
    std::fs::remove_file(second).unwrap();
    expect_corrupt(
        FilePersistence::open_with(dir.path(), small()).await,
        &[
            &file_name(second),
            "is missing",
            &file_name(&segs[n - 3]),
            &from,
        ],
    );
    restore();

    // Emptied, or cut back to its header: not a segment whose creation did
    // not finish, since the one before names it.
    for len in [0u64, 32] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(newest)
            .unwrap();
        f.set_len(len).unwrap();
        drop(f);
        expect_corrupt(
            FilePersistence::open_with(dir.path(), small()).await,
            &[&file_name(newest), "is damaged", &file_name(second)],
        );
        restore();
    }

    let store = open(dir.path(), &small()).await;
    assert_eq!(state(&store).await.entries.len(), 200);
    assert!(store.recovery().removed.is_empty());
}

/// A torn last record of the newest segment is still cut and accepted; an
/// unfinished end record in an earlier segment (a crash while the writer
/// closed it) is accepted too: the next segment's checkpoint vouches for
/// what is before it.
#[tokio::test]
async fn torn_tails_are_still_accepted() {
    let dir = TempDir::new().unwrap();
    let segs = store_of_200(dir.path()).await;
    let n = segs.len();
    let newest = &segs[n - 1];
    let (at, len, _) = *records(newest).last().unwrap();
    let buf = std::fs::read(newest).unwrap();
    std::fs::write(newest, &buf[..at + len / 2]).unwrap();
    let store = open(dir.path(), &small()).await;
    assert!(store.recovery().torn_tail.is_some());
    assert_eq!(state(&store).await.entries.len(), 199);
    drop(store);

    let second = &segs[n - 2];
    let (at, len, kind) = *records(second).last().unwrap();
    assert_eq!(kind, 0x80 | 7, "segments end with an end record");
    let buf = std::fs::read(second).unwrap();
    assert_eq!(buf.len(), at + len, "the end record is the last");
    for keep in [1, 9, len - 1] {
        std::fs::write(second, &buf[..at + keep]).unwrap();
        let store = open(dir.path(), &small()).await;
        assert!(store.recovery().torn_tail.is_none(), "{keep} bytes");
        assert_eq!(state(&store).await.entries.len(), 199, "{keep} bytes");
    }
    // Any other damage there is refused as before.
    let mut other = buf[..at].to_vec();
    other.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    std::fs::write(second, &other).unwrap();
    expect_corrupt(
        FilePersistence::open_with(dir.path(), small()).await,
        &[&file_name(second), &format!("offset {at}")],
    );
}

/// A store written before segments had end records (format version 1)
/// opens and loads as before, and goes on in the new format.
#[tokio::test]
async fn version_1_stores_are_read() {
    let dir = TempDir::new().unwrap();
    let segs = store_of_200(dir.path()).await;
    for path in &segs {
        let mut buf = std::fs::read(path).unwrap();
        if let Some(&(at, _, kind)) = records(path).last() {
            if kind == 0x80 | 7 {
                buf.truncate(at);
            }
        }
        buf[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&buf[..28]);
        buf[28..32].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(path, buf).unwrap();
    }
    let store = open(dir.path(), &small()).await;
    assert_eq!(state(&store).await.entries.len(), 200);
    append_each(&store, 201..=260).await;
    drop(store);
    let store = open(dir.path(), &small()).await;
    assert_eq!(state(&store).await.entries.len(), 260);
}

/// A hard state whose commit index is beyond the log is refused at save
/// (a node commits only entries it holds), so a store that finds one on
/// open knows that entries are missing.
#[tokio::test]
async fn commit_index_beyond_the_log_is_refused() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(5)).await.unwrap();
    let err = store
        .save(Change {
            hard_state: Some(hs(1, 1, 6)),
            ..Change::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        PersistenceError::Invalid(InvalidChange::CommitBeyondLog { commit: 6, last: 5 }),
        "{err}"
    );
    store
        .save(Change {
            entries: sample_entries(6, 6, 1),
            hard_state: Some(hs(1, 1, 6)),
            ..Change::default()
        })
        .await
        .unwrap();
}

/// A failing fsync: that save fails with `Io`, and so does every later one
/// even once the disk works again (fail-stop); a reopen recovers.
#[tokio::test]
async fn failing_fsync_fails_stop() {
    let dir = TempDir::new().unwrap();
    let fault = FaultFs::new();
    let options = small().fs(Arc::new(fault.clone()));
    let store = open(dir.path(), &options).await;
    store.save(first_change(5)).await.unwrap();
    let before = state(&store).await;
    fault.fail_syncs(true);
    // Several saves in one batch: all fail.
    let a = store.submit(Change {
        entries: sample_entries(6, 6, 1),
        ..Change::default()
    });
    let b = store.submit(Change {
        entries: sample_entries(7, 7, 1),
        ..Change::default()
    });
    let (a, b) = tokio::join!(a, b);
    for r in [a, b] {
        match r {
            Err(PersistenceError::Io(f)) => {
                assert_eq!(f.action(), "fdatasync of", "{f}");
                assert!(f.is_fail_stop(), "{f}");
                let m = f.to_string();
                assert!(m.contains("fdatasync") && m.contains("fail-stop"), "{m}")
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }
    fault.heal();
    for change in [
        Change {
            entries: sample_entries(8, 8, 1),
            ..Change::default()
        },
        Change::default(),
        Change {
            hard_state: Some(hs(5, 0, 0)),
            ..Change::default()
        },
    ] {
        assert!(matches!(
            store.save(change).await,
            Err(PersistenceError::Io(_))
        ));
    }
    assert!(matches!(store.load().await, Err(PersistenceError::Io(_))));
    assert!(store.stats().failed_saves >= 5);
    drop(store);
    let store = open(dir.path(), &options).await;
    let after = state(&store).await;
    // The failed saves may or may not have reached the disk (in order);
    // nothing else.
    let mut with_one = before.clone();
    with_one.entries.extend(sample_entries(6, 6, 1));
    let mut with_two = with_one.clone();
    with_two.entries.extend(sample_entries(7, 7, 1));
    assert!(
        after == before || after == with_one || after == with_two,
        "{} entries",
        after.entries.len()
    );
}

/// A full disk: the save fails with `Io` saying so, every later save fails;
/// a reopen loads what was acknowledged.
#[tokio::test]
async fn enospc_fails_stop() {
    let dir = TempDir::new().unwrap();
    let fault = FaultFs::new();
    let options = FileOptions::default()
        .preallocate(false)
        .fs(Arc::new(fault.clone()));
    let store = open(dir.path(), &options).await;
    store.save(first_change(5)).await.unwrap();
    let before = state(&store).await;
    fault.set_space_left(Some(100));
    let big = Change {
        entries: vec![Entry {
            term: 1,
            index: 6,
            payload: EntryPayload::Command(Bytes::from(vec![1u8; 4096])),
        }],
        ..Change::default()
    };
    match store.save(big).await {
        Err(PersistenceError::Io(f)) => {
            assert_eq!(f.kind(), std::io::ErrorKind::StorageFull, "{f}");
            assert!(f.is_storage_full() && f.is_fail_stop(), "{f}");
            let file = f.path().expect("names the file").to_string_lossy();
            assert!(file.contains("segment-"), "names the file: {f}");
            let m = f.to_string();
            assert!(m.contains("ENOSPC") && m.contains("disk is full"), "{m}");
        }
        other => panic!("expected Io, got {other:?}"),
    }
    fault.set_space_left(None);
    let err = store
        .save(Change {
            entries: sample_entries(6, 6, 1),
            ..Change::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.is_storage_full() && err.io_kind() == Some(std::io::ErrorKind::StorageFull),
        "{err:?}"
    );
    assert_eq!(fault.counts().enospc, 1);
    drop(store);
    let store = open(dir.path(), &options).await;
    assert_eq!(state(&store).await, before);
    assert!(
        store.recovery().torn_tail.is_some(),
        "the partial write is cut"
    );
}

/// ENOSPC while writing a snapshot file fails the save too.
#[tokio::test]
async fn enospc_in_a_snapshot_fails_stop() {
    let dir = TempDir::new().unwrap();
    let fault = FaultFs::new();
    let options = small().fs(Arc::new(fault.clone()));
    let store = open(dir.path(), &options).await;
    store.save(first_change(5)).await.unwrap();
    fault.set_space_left(Some(1000));
    let err = store
        .save(Change {
            snapshot: Some(snapshot(3, 1, Bytes::from(vec![0u8; 10_000]))),
            ..Change::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PersistenceError::Io(f)
            if f.is_storage_full()
                && f.path().is_some_and(|p| p.to_string_lossy().contains("snapshot-"))),
        "{err:?}"
    );
    fault.heal();
    assert!(store.save(Change::default()).await.is_err());
    drop(store);
    let store = open(dir.path(), &options).await;
    assert_eq!(state(&store).await.snapshot, None);
    assert!(snapshot_files(dir.path()).is_empty());
}

/// The bytes the files of `dir` hold.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// An idle store with the default 64 MiB segments holds about as much as
/// its data: the next segment is preallocated only once the active one is
/// half full (before, every store preallocated one at once and moved to
/// it, then preallocated another: 128 MiB for a few bytes).
#[tokio::test]
async fn an_idle_store_preallocates_nothing() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &FileOptions::default()).await;
    store.save(first_change(5)).await.unwrap();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        store.save(Change::default()).await.unwrap();
    }
    assert_eq!(store.stats().spares_prepared, 0);
    let bytes = dir_bytes(dir.path());
    assert!(bytes < 64 << 10, "an idle store holds {bytes} bytes");
    drop(store);
    let store = open(dir.path(), &FileOptions::default()).await;
    store.save(Change::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bytes = dir_bytes(dir.path());
    assert!(
        bytes < 64 << 10,
        "a reopened idle store holds {bytes} bytes"
    );
}

/// Preallocation never takes the last free space: with less than two
/// segments' worth free, the next segment is not preallocated (and the
/// stats say so), and the log goes on in segments that grow as written.
#[tokio::test]
async fn preallocation_leaves_free_space() {
    let dir = TempDir::new().unwrap();
    let fault = FaultFs::new();
    let options = small_prealloc().fs(Arc::new(fault.clone()));
    let store = open(dir.path(), &options).await;
    store.save(first_change(5)).await.unwrap();
    // 64 KiB segments, 150 KiB free: once the active segment is half full,
    // preallocating the next would leave less than 64 KiB free.
    fault.set_space_left(Some(150 << 10));
    for i in 6..=85 {
        store
            .save(Change {
                entries: vec![Entry {
                    term: 1,
                    index: i,
                    payload: EntryPayload::Command(Bytes::from(vec![i as u8; 1 << 10])),
                }],
                ..Change::default()
            })
            .await
            .unwrap_or_else(|e| panic!("save {i}: {e}"));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stats = store.stats();
    assert_eq!(stats.spares_prepared, 0, "{stats:?}");
    assert!(stats.preallocations_skipped >= 1, "{stats:?}");
    assert!(stats.segments_created >= 1, "{stats:?}");
    assert_eq!(fault.counts().enospc, 0);
    drop(store);
    fault.set_space_left(None);
    let store = open(dir.path(), &options).await;
    assert_eq!(state(&store).await.entries.len(), 85);
}

/// A store of another node or cluster refuses to open when the caller says
/// who it expects; a change with another identity is refused.
#[tokio::test]
async fn identity_of_another_node_is_refused() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(2)).await.unwrap();
    drop(store);
    let me = sample_identity();
    for (id, cluster) in [("n2", me.cluster.as_str()), (me.id.as_str(), "other")] {
        match FilePersistence::open_with(dir.path(), small().expect_identity(id, cluster)).await {
            Err(PersistenceError::Identity(m)) => {
                let (place, stored, expected) = match &*m {
                    IdentityMismatch::OtherNode {
                        place,
                        stored,
                        expected,
                    } => (place, stored, (expected.as_str(), cluster)),
                    IdentityMismatch::OtherCluster {
                        place,
                        stored,
                        expected,
                    } => (place, stored, (id, expected.as_str())),
                    other => panic!("{other:?}"),
                };
                assert_eq!(stored, &Owner::new(&me.id, &me.cluster), "{m}");
                assert_eq!(expected, (id, cluster), "{m}");
                let file = place.path.file_name().unwrap().to_string_lossy();
                assert!(file.starts_with("segment-"), "{m}");
                assert!(place.offset.is_some(), "{m}");
                assert!(m.to_string().contains("segment-"), "{m}");
            }
            Err(e) => panic!("expected Identity, got {e:?}"),
            Ok(_) => panic!("expected Identity, the open succeeded"),
        }
    }
    let store =
        FilePersistence::open_with(dir.path(), small().expect_identity(&me.id, &me.cluster))
            .await
            .unwrap();
    assert_eq!(state(&store).await.identity, me);
    // An empty directory is fine whoever is expected.
    let empty = TempDir::new().unwrap();
    let store = FilePersistence::open_with(empty.path(), small().expect_identity("x", "y"))
        .await
        .unwrap();
    assert_eq!(store.load().await.unwrap(), None);
    assert!(store.recovery().created);
}

/// A segment copied in from another node's store is refused.
#[tokio::test]
async fn segment_of_another_store_is_refused() {
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    for (dir, id) in [(&a, "n1"), (&b, "n9")] {
        let store = open(dir.path(), &small()).await;
        let mut change = first_change(0);
        change.identity.as_mut().unwrap().id = id.into();
        store.save(change).await.unwrap();
        append_each(&store, 1..=60).await;
    }
    let (sa, sb) = (segments(a.path()), segments(b.path()));
    let last = sa.last().unwrap();
    assert_eq!(
        last.file_name(),
        sb.last().unwrap().file_name(),
        "same numbering"
    );
    std::fs::copy(sb.last().unwrap(), last).unwrap();
    match FilePersistence::open_with(a.path(), small()).await {
        Err(PersistenceError::Identity(m)) => {
            let IdentityMismatch::RecordsDisagree {
                place,
                record,
                before,
                ..
            } = *m
            else {
                panic!("another mismatch than records that disagree");
            };
            assert_eq!(place.offset, Some(32));
            assert_eq!(record.map(|o| o.id).as_deref(), Some("n9"));
            assert_eq!(before.map(|o| o.id).as_deref(), Some("n1"));
        }
        Err(e) => panic!("expected Identity, got {e:?}"),
        Ok(_) => panic!("expected Identity, the open succeeded"),
    }
}

/// Saves and loads from a current-thread runtime never block it: the store
/// works from any executor.
#[test]
fn works_on_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = TempDir::new().unwrap();
        let store = open(dir.path(), &small()).await;
        let mut generator = ChangeGenerator::new(5);
        for _ in 0..300 {
            store.save(generator.next_change()).await.unwrap();
        }
        generator
            .model()
            .assert_matches(store.load().await.unwrap().as_ref(), "current thread");
    });
}

// ---------------------------------------------------------------------------
// A node on it.

/// A single node keeps its data in a `FilePersistence` (with snapshots
/// taken by the node) and restarts from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_from_its_directory() {
    use raft_node::example::{kv_get, KvCommand, KvOutput};
    use raft_node::{Node, Options};
    let dir = TempDir::new().unwrap();
    let set = |k: &str, v: &str| {
        KvCommand::Set {
            key: k.to_string().into(),
            value: v.to_string().into(),
        }
        .encode()
    };
    async fn get(node: &Node, k: &str) -> Option<Bytes> {
        match KvOutput::decode(&node.read(kv_get(k.as_bytes())).await.unwrap()) {
            Some(KvOutput::Value(v)) => v,
            other => panic!("unexpected read output {other:?}"),
        }
    }
    let options = |store: &Arc<FilePersistence>| Options {
        persistence: Some(store.clone()),
        snapshot_threshold: 20,
        snapshot_trailing: 5,
        command_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    // Waits until the node let go of the store, then closes it.
    async fn close(store: Arc<FilePersistence>) {
        for _ in 0..500 {
            if Arc::strong_count(&store) == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the node still holds the store");
    }
    let store = Arc::new(open(dir.path(), &small_prealloc()).await);
    let node = Node::new(Options {
        id: Some("solo".into()),
        ..options(&store)
    })
    .await
    .unwrap();
    for i in 0..50 {
        node.command(set(&format!("k{i}"), &i.to_string()))
            .await
            .unwrap();
    }
    assert!(store.stats().snapshots_written > 0, "{:?}", store.stats());
    node.shutdown().await.unwrap();
    drop(node);
    close(store).await;

    let store = Arc::new(open(dir.path(), &small_prealloc()).await);
    let node = Node::new(options(&store)).await.unwrap();
    assert_eq!(node.id(), "solo", "the persisted id wins");
    assert_eq!(get(&node, "k7").await, Some(Bytes::from("7")));
    assert_eq!(get(&node, "k49").await, Some(Bytes::from("49")));
    node.command(set("k7", "seven")).await.unwrap();
    assert_eq!(get(&node, "k7").await, Some(Bytes::from("seven")));
    node.shutdown().await.unwrap();
}

/// A write costs one fdatasync, not two: the commit index that follows it
/// is not waited for (it rides along with the next save), on the node's
/// path through the driver and through the persistence task alike. A
/// count, not a timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_syncs_once_per_write_not_twice() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(
        FilePersistence::open_with(dir.path(), FileOptions::default().spin(Duration::ZERO))
            .await
            .unwrap(),
    );
    let node = raft_node::Node::new(raft_node::Options {
        persistence: Some(store.clone()),
        ..raft_node::Options::default()
    })
    .await
    .unwrap();
    // One write first: the election's saves are done.
    let set = |i: u64| raft_node::example::KvCommand::Set {
        key: Bytes::from(format!("k{i}")),
        value: Bytes::from_static(b"v"),
    };
    node.command(set(0).encode()).await.unwrap();
    let before = store.stats().syncs;
    const WRITES: u64 = 200;
    for i in 1..=WRITES {
        node.command(set(i).encode()).await.unwrap();
    }
    let syncs = store.stats().syncs - before;
    assert!(
        syncs <= WRITES + WRITES / 10,
        "{syncs} fdatasyncs for {WRITES} sequential writes: the commit index is being waited for"
    );
    node.shutdown().await.unwrap();
    // And nothing is lost by not waiting: every write is there after a restart.
    drop(node);
    let state = store.load().await.unwrap().expect("a stored state");
    assert!(state.hard_state.commit >= 1, "{:?}", state.hard_state);
    assert!(
        state.entries.len() as u64 > WRITES,
        "{} entries",
        state.entries.len()
    );
}

/// What an earlier run wrote but never synced (it crashed first) is read
/// back from the page cache on open: the store syncs every segment it keeps
/// before it reports any of it as saved, and a failing sync fails the open.
#[tokio::test]
async fn open_syncs_what_an_earlier_run_left_in_every_segment() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path(), &small()).await;
    store.save(first_change(0)).await.unwrap();
    append_each(&store, 1..=400).await;
    drop(store);
    let kept = segments(dir.path()).len() as u64;
    assert!(kept > 3, "{kept} segments");

    let fs = FaultFs::new();
    let store = open(dir.path(), &small().fs(Arc::new(fs.clone()))).await;
    assert!(
        fs.counts().syncs >= kept,
        "{} syncs on open for {kept} segments",
        fs.counts().syncs
    );
    assert_eq!(state(&store).await.entries.len(), 400);
    drop(store);

    let fs = FaultFs::new();
    fs.fail_syncs(true);
    let refused = FilePersistence::open_with(dir.path(), small().fs(Arc::new(fs))).await;
    let e = expect_failed(refused);
    assert!(
        e.contains("syncing what an earlier run left in") && e.contains("segment-"),
        "{e}"
    );
}

fn expect_failed(result: Result<FilePersistence, PersistenceError>) -> String {
    match result {
        Ok(_) => panic!("opened although every sync fails"),
        Err(e) => e.to_string(),
    }
}
