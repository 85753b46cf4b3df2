//! The in-memory persistence: the conformance kit, then what is specific to
//! it (fault injection, counters, shared clones, the validation rules beyond
//! the kit's) and a differential test against the kit's model.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, HardState, Membership, Snapshot, SnapshotMeta};
use raft_node::persistence::memory::{MemoryPersistence, MemoryStats};
use raft_node::persistence::{
    Change, Identity, InvalidChange, Persistence, PersistenceError, State,
};
use raft_node::testkit::persistence::{
    self as kit, fresh_memory, invalid_changes, random_changes, sample_entries, sample_identity,
    ChangeGenerator, Model,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership: Membership::with_voters([1, 2, 3]),
        },
        data: Bytes::from_static(b"data"),
    }
}

fn first_change() -> Change {
    Change {
        identity: Some(sample_identity()),
        entries: sample_entries(1, 10, 1),
        hard_state: Some(hs(1, 1, 5)),
        ..Change::default()
    }
}

async fn stored(store: &MemoryPersistence) -> State {
    store.load().await.unwrap().expect("a state was saved")
}

// ---------------------------------------------------------------------------
// The kit.

#[tokio::test]
async fn conformance_kit() {
    let started = std::time::Instant::now();
    kit::run_all(fresh_memory).await;
    let elapsed = started.elapsed();
    eprintln!("persistence kit on memory: {elapsed:?}");
}

#[tokio::test]
async fn kit_checks_one_at_a_time() {
    // Each check is usable on its own.
    kit::fresh_store_loads_none(fresh_memory()).await;
    kit::truncation(fresh_memory()).await;
    kit::random_against_model(fresh_memory(), 7, 300).await;
}

#[tokio::test]
async fn random_against_model_many_seeds() {
    for seed in 1..=4 {
        kit::random_against_model(fresh_memory(), seed, 3_000).await;
    }
}

/// The kit must catch a broken store: one that forgets everything on reopen.
#[tokio::test]
#[should_panic(expected = "load returned None after accepted saves")]
async fn kit_catches_a_store_that_forgets() {
    kit::round_trip_survives_reopen(|| std::future::ready(MemoryPersistence::new())).await;
}

/// The kit must catch a store that accepts anything: a store that swallows
/// errors is detected by the refusal checks.
#[tokio::test]
#[should_panic(expected = "the change was accepted, it must be refused")]
async fn kit_catches_a_store_that_accepts_gaps() {
    #[derive(Clone, Default)]
    struct Lenient(MemoryPersistence);
    #[async_trait::async_trait]
    impl Persistence for Lenient {
        async fn save(&self, change: Change) -> Result<(), PersistenceError> {
            let _ = self.0.save(change).await;
            Ok(())
        }
        async fn load(&self) -> Result<Option<State>, PersistenceError> {
            self.0.load().await
        }
    }
    let store = Lenient::default();
    kit::refuses_gaps(move || std::future::ready(store.clone())).await;
}

/// The kit allows a store to return entries at or below the snapshot (a
/// store that compacts lazily) as long as they are what was saved: a store
/// that prepends up to 50 of them passes the whole kit.
#[tokio::test]
async fn kit_accepts_a_store_that_compacts_lazily() {
    #[derive(Clone, Default)]
    struct Lazy {
        inner: MemoryPersistence,
        saved: Arc<Mutex<BTreeMap<u64, Entry>>>,
    }
    #[async_trait::async_trait]
    impl Persistence for Lazy {
        async fn save(&self, change: Change) -> Result<(), PersistenceError> {
            let (from, entries) = (change.truncate_from, change.entries.clone());
            self.inner.save(change).await?;
            let mut saved = self.saved.lock().unwrap();
            if let Some(from) = from {
                saved.retain(|&i, _| i < from);
            }
            saved.extend(entries.into_iter().map(|e| (e.index, e)));
            Ok(())
        }
        async fn load(&self) -> Result<Option<State>, PersistenceError> {
            let Some(mut state) = self.inner.load().await? else {
                return Ok(None);
            };
            let base = state.snapshot.as_ref().map_or(0, |s| s.meta.index);
            let saved = self.saved.lock().unwrap();
            let mut stale: Vec<Entry> = Vec::new();
            let mut index = base;
            while index > 0 && stale.len() < 50 {
                match saved.get(&index) {
                    Some(e) => stale.push(e.clone()),
                    None => break,
                }
                index -= 1;
            }
            stale.reverse();
            stale.append(&mut state.entries);
            state.entries = stale;
            Ok(Some(state))
        }
    }
    let stale_seen = Arc::new(Mutex::new(0usize));
    let seen = stale_seen.clone();
    kit::run_all(move || {
        let store = Lazy::default();
        let seen = seen.clone();
        move || {
            let store = store.clone();
            let seen = seen.clone();
            async move {
                // Count how often the kit got stale entries back.
                if let Some(s) = store.load().await.unwrap() {
                    let base = s.snapshot.as_ref().map_or(0, |s| s.meta.index);
                    *seen.lock().unwrap() += s.entries.iter().filter(|e| e.index <= base).count();
                }
                store
            }
        }
    })
    .await;
    assert!(
        *stale_seen.lock().unwrap() > 0,
        "the lazy store did return entries at or below the snapshot"
    );
}

// ---------------------------------------------------------------------------
// Property-style: random changes, the store against the model.

/// Random sequences of appends, truncations, snapshots and reopens (a reopen
/// of the memory store is a new clone), checked after every step against the
/// model; random invalid changes and random corruptions of valid changes are
/// mixed in: the store and the model must agree on accepting or refusing
/// them (with the same error kind), and a refusal changes nothing.
#[tokio::test]
async fn differential_against_model() {
    let (mut refused, mut accepted) = (0u32, 0u32);
    for seed in 100..104u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        // A run follows one generator; a corruption that happens to be
        // valid takes the store off the generator's path, so a new run
        // (new store, new generator) starts.
        let mut run = 0u64;
        let mut steps = 0;
        'runs: while steps < 3_000 {
            run += 1;
            let mut generator = ChangeGenerator::new(seed * 1_000 + run);
            let mut model = Model::new();
            let root = MemoryPersistence::new();
            let mut store = root.clone();
            while steps < 3_000 {
                steps += 1;
                let what = format!("seed {seed} run {run} step {steps}");
                if rng.random_ratio(1, 50) {
                    drop(store);
                    store = root.clone();
                }
                let valid = generator.next_change();
                let candidate = if rng.random_ratio(1, 8) {
                    corrupt(&valid, &mut rng)
                } else if rng.random_ratio(1, 20) {
                    let bad = invalid_changes(&model);
                    if bad.is_empty() {
                        valid.clone()
                    } else {
                        bad[rng.random_range(0..bad.len())].change.clone()
                    }
                } else {
                    valid.clone()
                };
                let by_model = model.apply(&candidate);
                let by_store = store.save(candidate.clone()).await;
                match (&by_model, &by_store) {
                    (Ok(()), Ok(())) => accepted += 1,
                    (Err(a), Err(b)) if std::mem::discriminant(a) == std::mem::discriminant(b) => {
                        refused += 1
                    }
                    _ => panic!(
                        "{what}: model says {by_model:?}, store says {by_store:?} for {candidate:?}"
                    ),
                }
                let loaded = store.load().await.unwrap();
                model.assert_matches(loaded.as_ref(), &what);
                assert_eq!(
                    model.state(),
                    loaded,
                    "{what}: the memory store holds exactly the model's state"
                );
                if candidate != valid {
                    if by_model.is_ok() {
                        continue 'runs;
                    }
                    // Refused: go on with the valid change.
                    model.apply(&valid).unwrap();
                    store.save(valid).await.unwrap();
                    accepted += 1;
                }
            }
        }
    }
    assert!(
        refused > 400 && accepted > 10_000,
        "too few cases exercised ({accepted} accepted, {refused} refused)"
    );
}

/// A random corruption of a valid change, usually (not always) invalid.
fn corrupt(change: &Change, rng: &mut SmallRng) -> Change {
    let mut c = change.clone();
    match rng.random_range(0..7) {
        0 if !c.entries.is_empty() => {
            let i = rng.random_range(0..c.entries.len());
            c.entries[i].index += rng.random_range(1..=3);
        }
        1 if !c.entries.is_empty() => {
            let i = rng.random_range(0..c.entries.len());
            c.entries[i].index = c.entries[i].index.saturating_sub(rng.random_range(1..=3));
        }
        2 if c.entries.len() >= 2 => c.entries.swap(0, 1),
        3 => {
            if let Some(s) = &mut c.snapshot {
                s.meta.index = s.meta.index.saturating_sub(rng.random_range(1..=20));
            } else {
                c.truncate_from = Some(rng.random_range(0..=3));
            }
        }
        4 => {
            let h = c.hard_state.unwrap_or_default();
            c.hard_state = Some(hs(h.term.saturating_sub(1), h.vote + 1, h.commit));
        }
        5 if !c.entries.is_empty() => {
            c.entries[0].term = c.entries[0].term.saturating_sub(1);
        }
        _ => {
            c.identity = Some(Identity {
                cluster: "other".into(),
                ..sample_identity()
            });
        }
    }
    c
}

#[test]
fn random_changes_are_deterministic_and_valid() {
    let a = random_changes(42, 2_000);
    let b = random_changes(42, 2_000);
    assert_eq!(a, b, "same seed, same changes");
    assert_ne!(a, random_changes(43, 2_000), "another seed, other changes");
    let mut model = Model::new();
    let (mut snapshots, mut truncations, mut entries) = (0, 0, 0);
    for change in &a {
        model
            .apply(change)
            .expect("every generated change is valid");
        snapshots += usize::from(change.snapshot.is_some());
        truncations += usize::from(change.truncate_from.is_some());
        entries += change.entries.len();
    }
    assert!(
        snapshots > 50 && truncations > 50 && entries > 2_000,
        "the generator exercises everything: {snapshots} snapshots, {truncations} truncations, {entries} entries"
    );
    assert!(
        model.entries().len() < 500,
        "snapshots keep the model's log short: {}",
        model.entries().len()
    );
}

// ---------------------------------------------------------------------------
// Memory-specific.

#[tokio::test]
async fn injected_failures_change_nothing() {
    let store = MemoryPersistence::new();
    store.save(first_change()).await.unwrap();
    let before = stored(&store).await;

    store.fail_next_saves(2);
    for _ in 0..2 {
        let change = Change {
            entries: sample_entries(11, 12, 1),
            hard_state: Some(hs(2, 0, 6)),
            ..Change::default()
        };
        let err = store.save(change).await.unwrap_err();
        assert!(matches!(err, PersistenceError::Io(_)), "{err:?}");
        assert_eq!(
            stored(&store).await,
            before,
            "a failed save changes nothing"
        );
    }
    // The third save goes through.
    let change = Change {
        entries: sample_entries(11, 12, 1),
        ..Change::default()
    };
    store.save(change).await.unwrap();
    assert_eq!(stored(&store).await.entries.len(), 12);

    store.set_fail(true);
    let err = store.save(Change::default()).await.unwrap_err();
    assert!(matches!(err, PersistenceError::Io(_)));
    let err = store
        .save(Change {
            snapshot: Some(snapshot(5, 1)),
            ..Change::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, PersistenceError::Io(_)));
    assert_eq!(stored(&store).await.snapshot, None);
    // Loads still work while saves fail.
    assert!(store.load().await.unwrap().is_some());
    store.set_fail(false);
    store
        .save(Change {
            snapshot: Some(snapshot(5, 1)),
            ..Change::default()
        })
        .await
        .unwrap();
    assert_eq!(stored(&store).await.snapshot, Some(snapshot(5, 1)));
    let stats = store.stats();
    assert_eq!(stats.failed_saves, 4);
}

#[tokio::test]
async fn injected_failure_shared_by_clones() {
    let store = MemoryPersistence::new();
    let other = store.clone();
    other.fail_next_saves(1);
    assert!(store.save(first_change()).await.is_err());
    assert_eq!(store.load().await.unwrap(), None);
    store.save(first_change()).await.unwrap();
}

#[tokio::test]
async fn counters() {
    let store = MemoryPersistence::new();
    assert_eq!(store.stats(), MemoryStats::default());
    store.save(first_change()).await.unwrap();
    store
        .save(Change {
            entries: sample_entries(11, 13, 1),
            ..Change::default()
        })
        .await
        .unwrap();
    store
        .save(Change {
            snapshot: Some(snapshot(12, 1)),
            ..Change::default()
        })
        .await
        .unwrap();
    // Refused: a gap.
    store
        .save(Change {
            entries: sample_entries(20, 20, 1),
            ..Change::default()
        })
        .await
        .unwrap_err();
    store.fail_next_saves(1);
    store.save(Change::default()).await.unwrap_err();
    store.load().await.unwrap();
    assert_eq!(store.saves(), 3);
    assert_eq!(store.entries_written(), 13);
    assert_eq!(
        store.stats(),
        MemoryStats {
            saves: 3,
            entries_written: 13,
            snapshots_written: 1,
            failed_saves: 1,
            rejected_saves: 1,
            loads: 1,
        }
    );
    // Truncated entries still count as written.
    store
        .save(Change {
            truncate_from: Some(13),
            entries: sample_entries(13, 14, 2),
            ..Change::default()
        })
        .await
        .unwrap();
    assert_eq!(store.entries_written(), 15);
    // `stored` does not count as a load.
    assert!(store.stored().is_some());
    assert_eq!(store.stats().loads, 1);
}

#[tokio::test]
async fn clones_share_the_store() {
    let a = MemoryPersistence::new();
    let b = a.clone();
    a.save(first_change()).await.unwrap();
    assert_eq!(b.load().await.unwrap(), a.load().await.unwrap());
    b.save(Change {
        entries: sample_entries(11, 11, 1),
        ..Change::default()
    })
    .await
    .unwrap();
    assert_eq!(stored(&a).await.entries.len(), 11);
    // A crash: the node's handle is dropped; the test's handle restarts it.
    drop(a);
    assert_eq!(stored(&b).await.entries.len(), 11);
    assert_eq!(a_fresh_store_is_separate().await, None);
}

async fn a_fresh_store_is_separate() -> Option<State> {
    MemoryPersistence::new().load().await.unwrap()
}

#[tokio::test]
async fn saves_from_tasks_are_shared() {
    let store = MemoryPersistence::new();
    store
        .save(Change {
            identity: Some(sample_identity()),
            ..Change::default()
        })
        .await
        .unwrap();
    let clone = store.clone();
    tokio::spawn(async move {
        for i in 1..=100 {
            clone
                .save(Change {
                    entries: sample_entries(i, i, 1),
                    ..Change::default()
                })
                .await
                .unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(stored(&store).await.entries, sample_entries(1, 100, 1));
}

/// The rules the memory store checks beyond the kit's.
#[tokio::test]
async fn memory_specific_refusals() {
    let store = MemoryPersistence::new();
    // Nothing is stored without an identity.
    let err = store
        .save(Change {
            hard_state: Some(hs(1, 1, 0)),
            ..Change::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        PersistenceError::Invalid(InvalidChange::MissingIdentity),
        "{err}"
    );
    // An empty change is fine, even on a fresh store.
    store.save(Change::default()).await.unwrap();
    assert_eq!(store.load().await.unwrap(), None);

    store.save(first_change()).await.unwrap();
    // The same identity again is accepted.
    store
        .save(Change {
            identity: Some(sample_identity()),
            ..Change::default()
        })
        .await
        .unwrap();
    let before = stored(&store).await;

    let refused: Vec<(&str, Change)> = vec![
        (
            "term goes backwards",
            Change {
                hard_state: Some(hs(0, 0, 5)),
                ..Change::default()
            },
        ),
        (
            "vote changes within a term",
            Change {
                hard_state: Some(hs(1, 2, 5)),
                ..Change::default()
            },
        ),
        (
            "commit goes backwards",
            Change {
                hard_state: Some(hs(1, 1, 4)),
                ..Change::default()
            },
        ),
        (
            "entry terms go backwards",
            Change {
                truncate_from: Some(9),
                entries: vec![Entry {
                    term: 0,
                    index: 9,
                    payload: EntryPayload::Blank,
                }],
                ..Change::default()
            },
        ),
        (
            "snapshot at index 0",
            Change {
                snapshot: Some(snapshot(0, 0)),
                ..Change::default()
            },
        ),
        (
            "snapshot contradicting the log without truncating it",
            Change {
                snapshot: Some(snapshot(5, 2)),
                ..Change::default()
            },
        ),
        (
            "snapshot contradicting the log, truncation too high",
            Change {
                snapshot: Some(snapshot(5, 2)),
                truncate_from: Some(8),
                ..Change::default()
            },
        ),
    ];
    for (what, change) in refused {
        let err = store.save(change).await.unwrap_err();
        let PersistenceError::Invalid(kind) = &err else {
            panic!("{what}: {err:?}");
        };
        // Each refusal says what was expected and what was found.
        let expected = match what {
            "term goes backwards" => InvalidChange::TermBelow { term: 0, stored: 1 },
            "vote changes within a term" => InvalidChange::VoteChanged {
                term: 1,
                vote: 2,
                stored: 1,
            },
            "commit goes backwards" => InvalidChange::CommitBelow {
                commit: 4,
                stored: 5,
            },
            "entry terms go backwards" => InvalidChange::EntryTermBelow {
                index: 9,
                term: 0,
                previous: 1,
            },
            "snapshot at index 0" => InvalidChange::EmptySnapshot,
            "snapshot contradicting the log without truncating it" => {
                InvalidChange::SnapshotConflicts {
                    index: 5,
                    term: 2,
                    stored_term: Some(1),
                    stored_last: 10,
                }
            }
            "snapshot contradicting the log, truncation too high" => {
                InvalidChange::SnapshotConflicts {
                    index: 5,
                    term: 2,
                    stored_term: Some(1),
                    stored_last: 10,
                }
            }
            other => panic!("no kind for {other}"),
        };
        assert_eq!(kind, &expected, "{what}: {err}");
        assert!(!err.to_string().is_empty());
        assert_eq!(stored(&store).await, before, "{what}: nothing changed");
    }

    // The same contradicting snapshot with the truncation the core sends.
    store
        .save(Change {
            snapshot: Some(snapshot(5, 2)),
            truncate_from: Some(6),
            hard_state: Some(hs(2, 0, 5)),
            ..Change::default()
        })
        .await
        .unwrap();
    let state = stored(&store).await;
    assert!(state.entries.is_empty());
    // The same snapshot again is accepted; one of another term at the same
    // index, or of a lower term later on, is not.
    store
        .save(Change {
            snapshot: Some(snapshot(5, 2)),
            ..Change::default()
        })
        .await
        .unwrap();
    for bad in [snapshot(5, 3), snapshot(9, 1)] {
        let err = store
            .save(Change {
                snapshot: Some(bad.clone()),
                ..Change::default()
            })
            .await
            .unwrap_err();
        let PersistenceError::Invalid(InvalidChange::SnapshotTerm {
            index,
            term,
            stored_index: 5,
            stored_term: 2,
        }) = err
        else {
            panic!("{err:?}");
        };
        assert_eq!((index, term), (bad.meta.index, bad.meta.term));
    }
    // A truncation beyond the end drops nothing.
    store
        .save(Change {
            truncate_from: Some(100),
            entries: sample_entries(6, 7, 2),
            ..Change::default()
        })
        .await
        .unwrap();
    assert_eq!(stored(&store).await.entries, sample_entries(6, 7, 2));
}

#[tokio::test]
async fn compaction_keeps_memory_bounded() {
    let store = MemoryPersistence::new();
    store
        .save(Change {
            identity: Some(sample_identity()),
            ..Change::default()
        })
        .await
        .unwrap();
    for batch in 0..200u64 {
        let from = batch * 100 + 1;
        store
            .save(Change {
                entries: sample_entries(from, from + 99, 1),
                snapshot: (batch > 0).then(|| snapshot(from - 1, 1)),
                ..Change::default()
            })
            .await
            .unwrap();
        let held = store.stored().unwrap().entries.len();
        assert!(held <= 100, "batch {batch}: {held} entries held");
    }
    assert_eq!(store.entries_written(), 20_000);
}

/// The model's check accepts exactly what the rule allows.
#[test]
fn model_check_rule() {
    let mut model = Model::new();
    model.apply(&first_change()).unwrap();
    model
        .apply(&Change {
            snapshot: Some(snapshot(6, 1)),
            ..Change::default()
        })
        .unwrap();
    let exact = model.state();
    assert_eq!(exact.as_ref().unwrap().entries, sample_entries(7, 10, 1));
    assert_eq!(model.check(exact.as_ref()), Ok(()));
    assert!(model.check(None).is_err(), "None after saves");
    let with = |entries: Vec<Entry>| {
        let mut s = exact.clone().unwrap();
        s.entries = entries;
        s
    };
    // Stale entries at or below the snapshot, equal to the saved ones: fine.
    assert_eq!(model.check(Some(&with(sample_entries(4, 10, 1)))), Ok(()));
    // A stale entry that differs from the saved one.
    let mut wrong = sample_entries(4, 10, 1);
    wrong[0].term = 0;
    assert!(model.check(Some(&with(wrong))).is_err());
    // Not contiguous, missing an entry, an extra entry.
    let mut gap = sample_entries(4, 10, 1);
    gap.remove(1);
    assert!(model.check(Some(&with(gap))).is_err());
    assert!(model.check(Some(&with(sample_entries(7, 9, 1)))).is_err());
    assert!(model.check(Some(&with(sample_entries(8, 10, 1)))).is_err());
    assert!(model.check(Some(&with(sample_entries(7, 11, 1)))).is_err());
    // Another hard state, snapshot or identity.
    let mut s = exact.clone().unwrap();
    s.hard_state.commit += 1;
    assert!(model.check(Some(&s)).is_err());
    let mut s = exact.clone().unwrap();
    s.snapshot = None;
    assert!(model.check(Some(&s)).is_err());
    let mut s = exact.unwrap();
    s.identity.id = "other".into();
    assert!(model.check(Some(&s)).is_err());
    // A fresh model accepts only None.
    assert_eq!(Model::new().check(None), Ok(()));
    assert!(Model::new().check(Some(&s)).is_err());
}
