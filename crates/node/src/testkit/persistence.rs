//! The persistence conformance kit: checks any [`Persistence`] must pass.
//!
//! # How a store is handed to the kit
//!
//! The kit needs two things: a *fresh, empty* store for each check, and a
//! way to *reopen the same* store within a check (to check what survives a
//! restart). So [`run_all`] takes a factory of openers: each call of `fresh`
//! returns an [`Opener`] for a new empty store, and each call of that
//! opener's [`Opener::open`] opens (or reopens) that same store. Any
//! `FnMut() -> impl Future<Output = P>` is an opener.
//!
//! - Memory: `fresh` creates a [`MemoryPersistence`] and returns a closure
//!   handing out clones of it (see [`fresh_memory`]).
//! - Directory-backed: `fresh` creates a new temporary directory and returns
//!   a closure that opens a store in that directory (unwrapping the open,
//!   this is a test). The closure may own the directory's cleanup guard: it
//!   is dropped at the end of the check.
//!
//! The kit drops every handle it opened before it reopens the store, so a
//! store that locks its directory can be reopened.
//!
//! ```ignore
//! // Memory (runnable: see the guide):
//! run_all(fresh_memory).await;
//! // A directory-backed store (`tempdir` standing for any temporary
//! // directory helper):
//! run_all(|| {
//!     let dir = tempdir();
//!     move || {
//!         let path = dir.path().to_owned();
//!         async move { FilePersistence::open(&path).await.unwrap() }
//!     }
//! })
//! .await;
//! ```
//!
//! # The checks
//!
//! [`fresh_store_loads_none`], [`round_trip`], [`round_trip_survives_reopen`],
//! [`many_small_saves`], [`truncation`], [`snapshot_compacts`],
//! [`snapshot_install`], [`compaction_bounds_the_log`],
//! [`hard_state_last_wins`], [`restart_in_the_middle`], [`refuses_gaps`],
//! [`refuses_truncation_into_snapshot`], [`refuses_older_snapshot`],
//! [`refuses_other_identity`] and [`random_against_model`]; each says what
//! it checks. The random changes ([`ChangeGenerator`], [`random_changes`],
//! [`invalid_changes`]) and the reference [`Model`] are public so that other
//! tests (one store against another) can use them.
//!
//! # What a loaded state must be
//!
//! After a sequence of accepted changes, `load` returns the identity, the
//! last saved hard state (the default one if none was saved), the latest
//! snapshot, and log entries forming one contiguous run of indexes such
//! that: the entries above the snapshot's index are exactly the ones saved
//! (after truncations), starting at the snapshot's index + 1 (or at 1);
//! entries at or below the snapshot's index may be present, and if they are
//! each must equal the last entry saved at that index. [`Model::check`]
//! implements this rule.
//!
//! # What must be refused
//!
//! A change is refused as a whole (the stored state does not change) with
//! [`PersistenceError::Invalid`] when its entries do not follow on from the
//! stored log (a gap, an overlap without truncation), when it truncates at
//! or below the snapshot's index, or when its snapshot is older than the
//! stored one; and with [`PersistenceError::Identity`] when it carries an
//! identity different from the stored one.
//!
//! These checks reopen the store within one process, where the page cache
//! stands in for the disk: whether acknowledged saves survive a crash of
//! the process and a power loss is checked by
//! [`durability`](super::durability), with a child process.
//!
//! Every check panics with a message saying what went wrong. Each is also a
//! `pub async fn` of its own, to run one at a time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;

use bytes::Bytes;
use raft_core::{
    ConfChange, Entry, EntryPayload, HardState, LogIndex, Membership, Snapshot, SnapshotMeta, Term,
    NO_NODE,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::persistence::memory::MemoryPersistence;
use crate::persistence::{
    Change, Identity, IdentityMismatch, InvalidChange as Invalid, Persistence, PersistenceError,
    State,
};

/// Opens (or reopens) one store: every call opens the same store.
///
/// Implemented by every `FnMut() -> Fut` where `Fut: Future<Output = P>` and
/// `P: Persistence`.
pub trait Opener {
    /// The store opened.
    type Store: Persistence;

    /// Opens the store (again). Panics if it cannot (this is a test).
    fn open(&mut self) -> impl Future<Output = Self::Store>;
}

impl<F, Fut, P> Opener for F
where
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
    P: Persistence,
{
    type Store = P;

    fn open(&mut self) -> impl Future<Output = P> {
        self()
    }
}

/// An opener for a new, empty [`MemoryPersistence`]: reopening hands out a
/// clone of the same store. Pass `fresh_memory` to [`run_all`].
pub fn fresh_memory() -> impl FnMut() -> std::future::Ready<MemoryPersistence> {
    let store = MemoryPersistence::new();
    move || std::future::ready(store.clone())
}

/// Runs every check of the kit, each on a new store from `fresh`.
pub async fn run_all<S, O>(mut fresh: S)
where
    S: FnMut() -> O,
    O: Opener,
{
    fresh_store_loads_none(fresh()).await;
    round_trip(fresh()).await;
    round_trip_survives_reopen(fresh()).await;
    many_small_saves(fresh()).await;
    truncation(fresh()).await;
    snapshot_compacts(fresh()).await;
    snapshot_install(fresh()).await;
    compaction_bounds_the_log(fresh()).await;
    hard_state_last_wins(fresh()).await;
    restart_in_the_middle(fresh()).await;
    refuses_gaps(fresh()).await;
    refuses_truncation_into_snapshot(fresh()).await;
    refuses_older_snapshot(fresh()).await;
    refuses_other_identity(fresh()).await;
    random_against_model(fresh(), 0x5eed, 2_000).await;
}

// ---------------------------------------------------------------------------
// Sample data.

/// The identity the checks save: node "n1" of cluster "kit", bootstrapped
/// with [`sample_membership`].
pub fn sample_identity() -> Identity {
    Identity {
        id: "n1".into(),
        cluster: "kit".into(),
        bootstrap: sample_membership(),
    }
}

/// A membership with voters 1, 2, 3 and learner 4, each with a context.
pub fn sample_membership() -> Membership {
    build_membership(
        &[(1, b"n1@10.0.0.1:7001"), (2, b"n2@10.0.0.2:7001"), (3, b"")],
        &[(4, b"n4@10.0.0.4:7001")],
    )
}

fn build_membership(voters: &[(u64, &[u8])], learners: &[(u64, &[u8])]) -> Membership {
    let mut m = Membership::default();
    let changes = voters
        .iter()
        .map(|&(id, ctx)| ConfChange::AddVoter {
            id,
            context: Bytes::copy_from_slice(ctx),
        })
        .chain(learners.iter().map(|&(id, ctx)| ConfChange::AddLearner {
            id,
            context: Bytes::copy_from_slice(ctx),
        }));
    for change in changes {
        m = m
            .apply(&change)
            .unwrap_or_else(|e| panic!("kit bug: building a membership: {e}"));
    }
    m
}

/// A deterministic entry at `index`: the payload cycles through blank,
/// command (with bytes naming the index) and membership.
pub fn sample_entry(index: LogIndex, term: Term) -> Entry {
    let payload = match index % 3 {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Command(Bytes::from(format!("command {index}"))),
        _ => EntryPayload::Membership(build_membership(
            &[(1, b"a"), (2, b""), (index % 7 + 3, b"new")],
            &[(100 + index % 5, b"learner")],
        )),
    };
    Entry {
        term,
        index,
        payload,
    }
}

/// [`sample_entry`] for every index in `from..=to`, all of term `term`.
pub fn sample_entries(from: LogIndex, to: LogIndex, term: Term) -> Vec<Entry> {
    (from..=to).map(|i| sample_entry(i, term)).collect()
}

fn sample_snapshot(index: LogIndex, term: Term) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership: sample_membership(),
        },
        data: Bytes::from(format!("state machine at {index}")),
    }
}

fn hs(term: Term, vote: u64, commit: LogIndex) -> HardState {
    HardState { term, vote, commit }
}

// ---------------------------------------------------------------------------
// Helpers that panic with context.

async fn save<P: Persistence>(store: &P, model: &mut Model, change: Change, what: &str) {
    if let Err(e) = model.apply(&change) {
        panic!("kit bug: the model refuses a valid change ({what}): {e}");
    }
    if let Err(e) = store.save(change).await {
        panic!("{what}: save of a valid change failed: {e}");
    }
}

async fn load<P: Persistence>(store: &P, what: &str) -> Option<State> {
    match store.load().await {
        Ok(state) => state,
        Err(e) => panic!("{what}: load failed: {e}"),
    }
}

async fn load_checked<P: Persistence>(store: &P, model: &Model, what: &str) -> Option<State> {
    let loaded = load(store, what).await;
    model.assert_matches(loaded.as_ref(), what);
    loaded
}

/// The loaded entries above the snapshot's index (the ones that count).
fn live_entries(state: &State) -> Vec<Entry> {
    let base = state.snapshot.as_ref().map_or(0, |s| s.meta.index);
    state
        .entries
        .iter()
        .filter(|e| e.index > base)
        .cloned()
        .collect()
}

fn expect_some(loaded: Option<State>, what: &str) -> State {
    loaded.unwrap_or_else(|| panic!("{what}: load returned None after saves"))
}

/// Which error a refused change must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// [`PersistenceError::Invalid`].
    Invalid,
    /// [`PersistenceError::Identity`].
    Identity,
}

impl Refusal {
    /// True if `error` is of this kind.
    pub fn matches(self, error: &PersistenceError) -> bool {
        matches!(
            (self, error),
            (Refusal::Invalid, PersistenceError::Invalid(_))
                | (Refusal::Identity, PersistenceError::Identity(_))
        )
    }
}

/// Saves a change that must be refused; checks it was, with the right
/// error, and that the stored state did not change.
async fn expect_refused<P: Persistence>(
    store: &P,
    model: &Model,
    change: Change,
    refusal: Refusal,
    what: &str,
) {
    match model.validate(&change) {
        Err(e) if refusal.matches(&e) => {}
        other => panic!("kit bug: the model does not refuse {what} as {refusal:?}: {other:?}"),
    }
    match store.save(change).await {
        Ok(()) => panic!("{what}: the change was accepted, it must be refused with {refusal:?}"),
        Err(e) if refusal.matches(&e) => {}
        Err(e) => panic!("{what}: refused with the wrong error {e:?}, expected {refusal:?}"),
    }
    load_checked(
        store,
        model,
        &format!("{what} (after the refusal, nothing may change)"),
    )
    .await;
}

// ---------------------------------------------------------------------------
// The checks.

/// A store never written loads `None`, also after a reopen.
pub async fn fresh_store_loads_none<O: Opener>(mut open: O) {
    let store = open.open().await;
    let loaded = load(&store, "fresh store").await;
    assert!(
        loaded.is_none(),
        "fresh store: load must return None, got {loaded:?}"
    );
    drop(store);
    let store = open.open().await;
    let loaded = load(&store, "fresh store, reopened").await;
    assert!(
        loaded.is_none(),
        "fresh store, reopened: load must return None, got {loaded:?}"
    );
}

/// The changes of the round-trip checks: identity, hard state, entries of
/// every payload kind (blank, commands with and without bytes, memberships
/// with voters, learners and contexts), then a snapshot with data and
/// membership.
fn round_trip_changes() -> Vec<Change> {
    let big = Bytes::from((0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let entries = vec![
        Entry {
            term: 1,
            index: 1,
            payload: EntryPayload::Blank,
        },
        Entry {
            term: 1,
            index: 2,
            payload: EntryPayload::Command(Bytes::from_static(b"set x = 1")),
        },
        Entry {
            term: 2,
            index: 3,
            payload: EntryPayload::Membership(sample_membership()),
        },
        Entry {
            term: 2,
            index: 4,
            payload: EntryPayload::Command(Bytes::new()),
        },
        Entry {
            term: 3,
            index: 5,
            payload: EntryPayload::Blank,
        },
        Entry {
            term: 3,
            index: 6,
            payload: EntryPayload::Membership(build_membership(
                &[(2, b"two"), (3, b"three"), (5, b"five")],
                &[(4, b"four"), (9, b"")],
            )),
        },
        Entry {
            term: 3,
            index: 7,
            payload: EntryPayload::Command(big),
        },
    ];
    vec![
        Change {
            identity: Some(sample_identity()),
            entries,
            hard_state: Some(hs(3, 2, 2)),
            ..Change::default()
        },
        Change {
            snapshot: Some(Snapshot {
                meta: SnapshotMeta {
                    index: 4,
                    term: 2,
                    membership: sample_membership(),
                },
                data: Bytes::from_static(b"\x00state machine at 4\xff"),
            }),
            hard_state: Some(hs(3, 2, 4)),
            ..Change::default()
        },
    ]
}

/// Saves and loads identity, hard state, entries of every kind and a
/// snapshot; what is loaded equals what was saved.
pub async fn round_trip<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let mut changes = round_trip_changes().into_iter();
    let first = changes.next().unwrap_or_default();
    let saved_entries = first.entries.clone();
    save(&store, &mut model, first, "round trip: first save").await;
    let state = expect_some(
        load_checked(&store, &model, "round trip: after the first save").await,
        "round trip",
    );
    assert_eq!(state.identity, sample_identity(), "round trip: identity");
    assert_eq!(state.hard_state, hs(3, 2, 2), "round trip: hard state");
    assert_eq!(state.snapshot, None, "round trip: no snapshot was saved");
    assert_eq!(
        state.entries, saved_entries,
        "round trip: with no snapshot, every saved entry must load back identical"
    );
    for change in changes {
        let snapshot = change.snapshot.clone();
        save(&store, &mut model, change, "round trip: snapshot").await;
        let state = expect_some(
            load_checked(&store, &model, "round trip: after the snapshot").await,
            "round trip",
        );
        assert_eq!(state.snapshot, snapshot, "round trip: snapshot");
        assert_eq!(state.hard_state, hs(3, 2, 4), "round trip: hard state");
        assert_eq!(
            live_entries(&state),
            saved_entries[4..].to_vec(),
            "round trip: the entries after the snapshot"
        );
    }
}

/// The round trip survives a restart: save, drop, reopen, load.
pub async fn round_trip_survives_reopen<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    for change in round_trip_changes() {
        save(&store, &mut model, change, "round trip with reopen").await;
    }
    let before = load_checked(&store, &model, "round trip with reopen: before").await;
    drop(store);
    let store = open.open().await;
    let after = load_checked(&store, &model, "round trip with reopen: after the reopen").await;
    assert_eq!(
        before, after,
        "round trip with reopen: the state loaded after a reopen differs from the one before"
    );
    drop(store);
    let store = open.open().await;
    load_checked(
        &store,
        &model,
        "round trip with reopen: after a second reopen",
    )
    .await;
}

/// 1,000 saves of one entry each (every 100th with a hard state) load back
/// identical and in order, before and after a reopen.
pub async fn many_small_saves<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let first = Change {
        identity: Some(sample_identity()),
        hard_state: Some(hs(1, 1, 0)),
        ..Change::default()
    };
    save(&store, &mut model, first, "many small saves: identity").await;
    for i in 1..=1_000 {
        let change = Change {
            entries: vec![sample_entry(i, 1)],
            hard_state: (i % 100 == 0).then(|| hs(1, 1, i - 50)),
            ..Change::default()
        };
        save(&store, &mut model, change, "many small saves").await;
    }
    let expected = sample_entries(1, 1_000, 1);
    let what = "many small saves";
    let state = expect_some(load_checked(&store, &model, what).await, what);
    assert_eq!(state.entries.len(), 1_000, "{what}: entry count");
    assert!(
        state.entries == expected,
        "{what}: the entries differ from the ones saved"
    );
    assert_eq!(state.hard_state, hs(1, 1, 950), "{what}: hard state");
    drop(store);
    let store = open.open().await;
    let state = expect_some(
        load_checked(&store, &model, "many small saves, after a reopen").await,
        "many small saves, after a reopen",
    );
    assert!(
        state.entries == expected,
        "many small saves, after a reopen: the entries differ from the ones saved"
    );
}

/// Entries 1..=10, then one change truncating from 6 and appending 6..=8 of
/// a higher term: the log is 1..=5 then the new 6..=8.
pub async fn truncation<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let first = Change {
        identity: Some(sample_identity()),
        entries: sample_entries(1, 10, 1),
        hard_state: Some(hs(1, 1, 3)),
        ..Change::default()
    };
    save(&store, &mut model, first, "truncation: entries 1..=10").await;
    let replace = Change {
        truncate_from: Some(6),
        entries: sample_entries(6, 8, 2),
        hard_state: Some(hs(2, 0, 3)),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        replace,
        "truncation: from 6, then 6..=8 of term 2",
    )
    .await;
    let mut expected = sample_entries(1, 5, 1);
    expected.extend(sample_entries(6, 8, 2));
    let state = expect_some(
        load_checked(&store, &model, "truncation").await,
        "truncation",
    );
    assert_eq!(
        state.entries, expected,
        "truncation: 1..=5 then the new 6..=8"
    );
    drop(store);
    let store = open.open().await;
    let state = expect_some(
        load_checked(&store, &model, "truncation, after a reopen").await,
        "truncation",
    );
    assert_eq!(
        state.entries, expected,
        "truncation, after a reopen: 1..=5 then the new 6..=8"
    );
    // The log goes on after the truncated one, and a truncation at the end
    // (dropping the last entry only) works too.
    let more = Change {
        truncate_from: Some(8),
        entries: sample_entries(8, 9, 3),
        hard_state: Some(hs(3, 3, 3)),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        more,
        "truncation: from 8, then 8..=9 of term 3",
    )
    .await;
    expected.truncate(7);
    expected.extend(sample_entries(8, 9, 3));
    let state = expect_some(
        load_checked(&store, &model, "truncation: second truncation").await,
        "truncation",
    );
    assert_eq!(
        state.entries, expected,
        "truncation: 1..=5, 6..=7 of term 2, 8..=9 of term 3"
    );
}

/// Entries 1..=20 then a snapshot at 15: load returns the snapshot and
/// 16..=20 (entries up to 15 may be present, equal to the saved ones). A
/// later snapshot replaces it; the log goes on after both.
pub async fn snapshot_compacts<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let mut entries = sample_entries(1, 10, 1);
    entries.extend(sample_entries(11, 20, 2));
    let first = Change {
        identity: Some(sample_identity()),
        entries: entries.clone(),
        hard_state: Some(hs(2, 2, 18)),
        ..Change::default()
    };
    save(&store, &mut model, first, "snapshot: entries 1..=20").await;
    let snap15 = sample_snapshot(15, 2);
    let change = Change {
        snapshot: Some(snap15.clone()),
        ..Change::default()
    };
    save(&store, &mut model, change, "snapshot: at 15").await;
    let state = expect_some(
        load_checked(&store, &model, "snapshot at 15").await,
        "snapshot",
    );
    assert_eq!(state.snapshot, Some(snap15), "snapshot at 15: the snapshot");
    assert_eq!(
        live_entries(&state),
        entries[15..].to_vec(),
        "snapshot at 15: entries 16..=20"
    );
    assert_eq!(
        state.hard_state,
        hs(2, 2, 18),
        "snapshot at 15: the hard state saved before it"
    );

    let snap18 = sample_snapshot(18, 2);
    let change = Change {
        snapshot: Some(snap18.clone()),
        entries: sample_entries(21, 22, 2),
        ..Change::default()
    };
    save(&store, &mut model, change, "snapshot: at 18, with 21..=22").await;
    entries.extend(sample_entries(21, 22, 2));
    let what = "snapshot at 18";
    let state = expect_some(load_checked(&store, &model, what).await, what);
    assert_eq!(
        state.snapshot,
        Some(snap18.clone()),
        "{what}: the later snapshot replaces the earlier"
    );
    assert_eq!(
        live_entries(&state),
        entries[18..].to_vec(),
        "{what}: entries 19..=22"
    );
    drop(store);
    let store = open.open().await;
    let state = expect_some(
        load_checked(&store, &model, "snapshot at 18, after a reopen").await,
        "snapshot",
    );
    assert_eq!(
        state.snapshot,
        Some(snap18),
        "snapshot at 18, after a reopen: the snapshot"
    );
    assert_eq!(
        live_entries(&state),
        entries[18..].to_vec(),
        "snapshot at 18, after a reopen: entries 19..=22"
    );
}

/// A snapshot received from a leader, as the core hands it out (with a
/// truncation right after it): beyond the end of the log, then over a log
/// whose entry at the snapshot's index has another term. The log is empty
/// after each and goes on from the snapshot's index + 1.
pub async fn snapshot_install<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let first = Change {
        identity: Some(sample_identity()),
        entries: sample_entries(1, 5, 1),
        hard_state: Some(hs(1, 1, 2)),
        ..Change::default()
    };
    save(&store, &mut model, first, "snapshot install: entries 1..=5").await;
    let snap = sample_snapshot(30, 3);
    let change = Change {
        snapshot: Some(snap.clone()),
        truncate_from: Some(31),
        hard_state: Some(hs(3, 0, 30)),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        change,
        "snapshot install: at 30, beyond the log",
    )
    .await;
    let state = expect_some(
        load_checked(&store, &model, "snapshot install beyond the log").await,
        "snapshot install",
    );
    assert_eq!(state.snapshot, Some(snap), "snapshot install: the snapshot");
    assert!(
        live_entries(&state).is_empty(),
        "snapshot install beyond the log: no entry after it"
    );
    let change = Change {
        entries: sample_entries(31, 40, 3),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        change,
        "snapshot install: 31..=40 after it",
    )
    .await;

    // Entry 38 has term 3; a snapshot at 38 of term 4 contradicts the log.
    let snap = sample_snapshot(38, 4);
    let change = Change {
        snapshot: Some(snap.clone()),
        truncate_from: Some(39),
        hard_state: Some(hs(4, 0, 38)),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        change,
        "snapshot install: at 38, over the log",
    )
    .await;
    let change = Change {
        entries: sample_entries(39, 41, 4),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        change,
        "snapshot install: 39..=41 after it",
    )
    .await;
    drop(store);
    let store = open.open().await;
    let state = expect_some(
        load_checked(&store, &model, "snapshot install over the log, reopened").await,
        "snapshot install",
    );
    assert_eq!(state.snapshot, Some(snap), "snapshot install: the snapshot");
    assert_eq!(
        live_entries(&state),
        sample_entries(39, 41, 4),
        "snapshot install over the log: only the entries after it"
    );
}

/// 10,000 entries saved in batches of 50, with a snapshot every 1,000
/// (lagging 100 behind the log): the loaded log stays under 2,000 entries.
pub async fn compaction_bounds_the_log<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let first = Change {
        identity: Some(sample_identity()),
        hard_state: Some(hs(1, 1, 0)),
        ..Change::default()
    };
    save(&store, &mut model, first, "compaction: identity").await;
    let mut last = 0;
    while last < 10_000 {
        let entries = (last + 1..=last + 50)
            .map(|index| Entry {
                term: 1,
                index,
                payload: EntryPayload::Command(Bytes::from_static(b"x")),
            })
            .collect();
        last += 50;
        let snapshot = (last % 1_000 == 0).then(|| sample_snapshot(last - 100, 1));
        let change = Change {
            snapshot,
            entries,
            hard_state: Some(hs(1, 1, last)),
            ..Change::default()
        };
        save(&store, &mut model, change, "compaction: a batch").await;
    }
    let what = "compaction";
    let state = expect_some(load_checked(&store, &model, what).await, what);
    assert!(
        state.entries.len() < 2_000,
        "{what}: {} entries loaded after snapshots every 1,000 entries: compaction does not bound the log",
        state.entries.len()
    );
    assert_eq!(
        state.snapshot.as_ref().map(|s| s.meta.index),
        Some(9_900),
        "{what}: the latest snapshot"
    );
    drop(store);
    let store = open.open().await;
    let state = expect_some(
        load_checked(&store, &model, "compaction, after a reopen").await,
        "compaction",
    );
    assert!(
        state.entries.len() < 2_000,
        "compaction, after a reopen: {} entries loaded",
        state.entries.len()
    );
}

/// The last saved hard state wins; a change without one keeps the previous
/// one; so does a reopen.
pub async fn hard_state_last_wins<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let steps: [(Option<HardState>, Vec<Entry>, HardState); 6] = [
        (Some(hs(1, 1, 0)), vec![], hs(1, 1, 0)),
        (None, sample_entries(1, 3, 1), hs(1, 1, 0)),
        (Some(hs(2, 0, 1)), vec![], hs(2, 0, 1)),
        (None, sample_entries(4, 4, 2), hs(2, 0, 1)),
        (Some(hs(2, 3, 2)), vec![], hs(2, 3, 2)),
        (Some(hs(5, 3, 4)), vec![], hs(5, 3, 4)),
    ];
    let mut first = true;
    for (i, (hard_state, entries, expected)) in steps.into_iter().enumerate() {
        let change = Change {
            identity: first.then(sample_identity),
            hard_state,
            entries,
            ..Change::default()
        };
        first = false;
        let what = format!("hard state, save {}", i + 1);
        save(&store, &mut model, change, &what).await;
        let state = expect_some(load_checked(&store, &model, &what).await, &what);
        assert_eq!(state.hard_state, expected, "{what}: the hard state");
    }
    let change = Change {
        entries: sample_entries(5, 6, 5),
        ..Change::default()
    };
    save(&store, &mut model, change, "hard state: entries only").await;
    drop(store);
    let store = open.open().await;
    let state = expect_some(
        load_checked(&store, &model, "hard state, after a reopen").await,
        "hard state",
    );
    assert_eq!(
        state.hard_state,
        hs(5, 3, 4),
        "hard state, after a reopen: the last saved"
    );
}

/// Save, reopen, keep saving after the loaded log, reopen: everything is
/// there.
pub async fn restart_in_the_middle<O: Opener>(mut open: O) {
    let mut model = Model::new();
    let store = open.open().await;
    let first = Change {
        identity: Some(sample_identity()),
        hard_state: Some(hs(1, 1, 0)),
        ..Change::default()
    };
    save(&store, &mut model, first, "restart: identity").await;
    for batch in 0..5 {
        let from = batch * 10 + 1;
        let change = Change {
            entries: sample_entries(from, from + 9, 1),
            hard_state: Some(hs(1, 1, from)),
            ..Change::default()
        };
        save(&store, &mut model, change, "restart: first life").await;
    }
    let change = Change {
        snapshot: Some(sample_snapshot(20, 1)),
        ..Change::default()
    };
    save(&store, &mut model, change, "restart: snapshot at 20").await;
    drop(store);

    let store = open.open().await;
    let state = expect_some(
        load_checked(&store, &model, "restart: first reopen").await,
        "restart",
    );
    let last = state.entries.last().map_or_else(
        || state.snapshot.as_ref().map_or(0, |s| s.meta.index),
        |e| e.index,
    );
    assert_eq!(last, 50, "restart: the loaded log ends at 50");
    for batch in 0..5 {
        let from = last + batch * 10 + 1;
        let change = Change {
            truncate_from: (batch == 0).then_some(49),
            entries: sample_entries(if batch == 0 { 49 } else { from }, from + 9, 2),
            hard_state: Some(hs(2, 3, from - 2)),
            ..Change::default()
        };
        save(&store, &mut model, change, "restart: second life").await;
    }
    let change = Change {
        snapshot: Some(sample_snapshot(60, 2)),
        ..Change::default()
    };
    save(&store, &mut model, change, "restart: snapshot at 60").await;
    drop(store);

    let store = open.open().await;
    let state = expect_some(
        load_checked(&store, &model, "restart: second reopen").await,
        "restart",
    );
    let expected = sample_entries(61, 100, 2);
    assert_eq!(
        live_entries(&state),
        expected,
        "restart: entries 61..=100 of the second life"
    );
    drop(store);
    let store = open.open().await;
    load_checked(&store, &model, "restart: third reopen, no save in between").await;
}

/// Entries that do not follow on from the stored log are refused as a whole
/// (with the hard state and identity they carry), and the store still
/// accepts a valid change afterwards.
pub async fn refuses_gaps<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let bad_first = Change {
        identity: Some(sample_identity()),
        entries: sample_entries(2, 3, 1),
        hard_state: Some(hs(1, 1, 0)),
        ..Change::default()
    };
    expect_refused(
        &store,
        &model,
        bad_first,
        Refusal::Invalid,
        "gap: a first save whose log starts at 2",
    )
    .await;
    let first = Change {
        identity: Some(sample_identity()),
        entries: sample_entries(1, 5, 1),
        hard_state: Some(hs(1, 1, 0)),
        ..Change::default()
    };
    save(&store, &mut model, first, "gap: entries 1..=5").await;
    let cases = [
        ("gap: entries 7..=8 after 5", sample_entries(7, 8, 1)),
        (
            "gap: entries 6 and 8 in one change",
            vec![sample_entry(6, 1), sample_entry(8, 1)],
        ),
        (
            "overlap: entry 5 again, without truncation",
            sample_entries(5, 6, 1),
        ),
        (
            "out of order: entries 7 then 6",
            vec![sample_entry(7, 1), sample_entry(6, 1)],
        ),
    ];
    for (what, entries) in cases {
        let change = Change {
            entries,
            hard_state: Some(hs(2, 0, 1)),
            ..Change::default()
        };
        expect_refused(&store, &model, change, Refusal::Invalid, what).await;
    }
    let change = Change {
        entries: sample_entries(6, 6, 1),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        change,
        "gap: entry 6 after the refusals",
    )
    .await;
    drop(store);
    let store = open.open().await;
    load_checked(&store, &model, "gap: after a reopen").await;
}

/// A truncation at or below the snapshot's index is refused as a whole.
pub async fn refuses_truncation_into_snapshot<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let first = Change {
        identity: Some(sample_identity()),
        entries: sample_entries(1, 10, 1),
        hard_state: Some(hs(1, 1, 6)),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        first,
        "truncation into snapshot: 1..=10",
    )
    .await;
    let change = Change {
        snapshot: Some(sample_snapshot(6, 1)),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        change,
        "truncation into snapshot: snapshot at 6",
    )
    .await;
    for from in [6, 3, 0] {
        let change = Change {
            truncate_from: Some(from),
            entries: sample_entries(from.max(1), 8, 2),
            hard_state: Some(hs(2, 0, 8)),
            ..Change::default()
        };
        let what = format!("truncation from {from}, with a snapshot at 6");
        expect_refused(&store, &model, change, Refusal::Invalid, &what).await;
    }
    // A truncation inside one change, below the snapshot it carries.
    let change = Change {
        snapshot: Some(sample_snapshot(8, 1)),
        truncate_from: Some(7),
        ..Change::default()
    };
    expect_refused(
        &store,
        &model,
        change,
        Refusal::Invalid,
        "truncation from 7 in the change that snapshots at 8",
    )
    .await;
    let change = Change {
        truncate_from: Some(7),
        entries: sample_entries(7, 8, 2),
        hard_state: Some(hs(2, 0, 6)),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        change,
        "truncation from 7, just above the snapshot",
    )
    .await;
    drop(store);
    let store = open.open().await;
    load_checked(&store, &model, "truncation into snapshot: after a reopen").await;
}

/// A snapshot older than the stored one is refused as a whole.
pub async fn refuses_older_snapshot<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let first = Change {
        identity: Some(sample_identity()),
        entries: sample_entries(1, 10, 1),
        hard_state: Some(hs(1, 1, 8)),
        ..Change::default()
    };
    save(&store, &mut model, first, "older snapshot: 1..=10").await;
    let change = Change {
        snapshot: Some(sample_snapshot(6, 1)),
        ..Change::default()
    };
    save(&store, &mut model, change, "older snapshot: snapshot at 6").await;
    let change = Change {
        snapshot: Some(sample_snapshot(4, 1)),
        entries: sample_entries(11, 11, 1),
        hard_state: Some(hs(1, 1, 9)),
        ..Change::default()
    };
    expect_refused(
        &store,
        &model,
        change,
        Refusal::Invalid,
        "older snapshot: at 4 after one at 6",
    )
    .await;
    let change = Change {
        snapshot: Some(sample_snapshot(8, 1)),
        ..Change::default()
    };
    save(
        &store,
        &mut model,
        change,
        "older snapshot: a newer one at 8",
    )
    .await;
}

/// A change carrying another identity (node or cluster) is refused with
/// [`PersistenceError::Identity`], also after a reopen.
pub async fn refuses_other_identity<O: Opener>(mut open: O) {
    let store = open.open().await;
    let mut model = Model::new();
    let first = Change {
        identity: Some(sample_identity()),
        hard_state: Some(hs(1, 1, 0)),
        ..Change::default()
    };
    save(&store, &mut model, first, "identity: first save").await;
    let other_node = Identity {
        id: "n2".into(),
        ..sample_identity()
    };
    let other_cluster = Identity {
        cluster: "another".into(),
        ..sample_identity()
    };
    let other_bootstrap = Identity {
        bootstrap: Membership::with_voters([1, 2]),
        ..sample_identity()
    };
    let mut store = store;
    for (what, identity) in [
        ("identity: another node id", other_node),
        ("identity: another cluster", other_cluster),
        ("identity: another bootstrap membership", other_bootstrap),
    ] {
        let change = Change {
            identity: Some(identity.clone()),
            entries: sample_entries(1, 2, 1),
            hard_state: Some(hs(2, 0, 0)),
            ..Change::default()
        };
        expect_refused(&store, &model, change, Refusal::Identity, what).await;
        drop(store);
        store = open.open().await;
        let change = Change {
            identity: Some(identity),
            ..Change::default()
        };
        let what = format!("{what}, after a reopen");
        expect_refused(&store, &model, change, Refusal::Identity, &what).await;
    }
}

/// Random valid changes ([`ChangeGenerator`] with `seed`), `steps` of them,
/// with random reopens and random invalid changes in between
/// ([`invalid_changes`]), checked against the [`Model`]: at every reopen,
/// every 100 steps, after every refusal, and at the end.
pub async fn random_against_model<O: Opener>(mut open: O, seed: u64, steps: usize) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6b69_745f_7261_6e64);
    let mut generator = ChangeGenerator::new(seed);
    let mut store = open.open().await;
    for step in 0..steps {
        let what = format!("random (seed {seed}), step {step}");
        if rng.random_ratio(1, 40) {
            drop(store);
            store = open.open().await;
            load_checked(&store, generator.model(), &format!("{what}, reopened")).await;
        }
        let current = &store;
        if rng.random_ratio(1, 20) {
            let invalid = invalid_changes(generator.model());
            if !invalid.is_empty() {
                let bad = &invalid[rng.random_range(0..invalid.len())];
                let what = format!("{what}: {}", bad.what);
                expect_refused(
                    current,
                    generator.model(),
                    bad.change.clone(),
                    bad.refusal,
                    &what,
                )
                .await;
            }
        }
        let change = generator.next_change();
        if let Err(e) = current.save(change.clone()).await {
            panic!("{what}: save of a valid change failed: {e}\nchange: {change:?}");
        }
        if step % 100 == 99 {
            load_checked(current, generator.model(), &what).await;
        }
    }
    drop(store);
    let store = open.open().await;
    load_checked(
        &store,
        generator.model(),
        &format!("random (seed {seed}), at the end, reopened"),
    )
    .await;
}

// ---------------------------------------------------------------------------
// The model.

/// A trivial reference store: what a store holds after a sequence of
/// changes, by the rules of [`MemoryPersistence`] (it accepts and refuses
/// exactly the same changes), written for clarity rather than speed.
///
/// It also remembers the entries snapshots compacted away, to check a store
/// that keeps some of them (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    identity: Option<Identity>,
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    /// The entries after the snapshot.
    entries: Vec<Entry>,
    /// The last entry saved at each index at or below the snapshot.
    compacted: BTreeMap<LogIndex, Entry>,
}

impl Model {
    /// An empty model: a store never written.
    pub fn new() -> Model {
        Model::default()
    }

    /// The stored identity.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The stored hard state (the default before any is saved).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The entries after the snapshot.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The snapshot's index and term, or (0, 0).
    pub fn base(&self) -> (LogIndex, Term) {
        self.snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.meta.index, s.meta.term))
    }

    /// The last index and term of the log (the snapshot's when it is empty).
    pub fn last(&self) -> (LogIndex, Term) {
        self.entries
            .last()
            .map_or_else(|| self.base(), |e| (e.index, e.term))
    }

    /// The term at `index`: of the snapshot or of a stored entry after it.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        let (base, base_term) = self.base();
        if index == base {
            return Some(base_term);
        }
        self.entries
            .iter()
            .find(|e| e.index == index)
            .map(|e| e.term)
    }

    /// The membership in force at `index`: the last membership entry at or
    /// below it, else the snapshot's, else the bootstrap one.
    pub fn membership_at(&self, index: LogIndex) -> Membership {
        for e in self.entries.iter().rev() {
            if e.index <= index {
                if let EntryPayload::Membership(m) = &e.payload {
                    return m.clone();
                }
            }
        }
        if let Some(s) = &self.snapshot {
            return s.meta.membership.clone();
        }
        self.identity
            .as_ref()
            .map(|i| i.bootstrap.clone())
            .unwrap_or_default()
    }

    /// What a store holding this must return from `load` (with no entry at
    /// or below the snapshot).
    pub fn state(&self) -> Option<State> {
        Some(State {
            identity: self.identity.clone()?,
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        })
    }

    /// Applies `change`, or refuses it (changing nothing) with the error
    /// [`MemoryPersistence`] gives.
    pub fn apply(&mut self, change: &Change) -> Result<(), PersistenceError> {
        self.validate(change)?;
        if self.identity.is_none() {
            self.identity.clone_from(&change.identity);
        }
        if let Some(s) = &change.snapshot {
            let index = s.meta.index;
            for e in self.entries.iter().filter(|e| e.index <= index) {
                self.compacted.insert(e.index, e.clone());
            }
            self.entries.retain(|e| e.index > index);
            self.snapshot = Some(s.clone());
        }
        if let Some(from) = change.truncate_from {
            self.entries.retain(|e| e.index < from);
        }
        self.entries.extend(change.entries.iter().cloned());
        if let Some(hs) = change.hard_state {
            self.hard_state = hs;
        }
        Ok(())
    }

    fn validate(&self, change: &Change) -> Result<(), PersistenceError> {
        let invalid = |kind: Invalid| Err(PersistenceError::Invalid(kind));
        match (&self.identity, &change.identity) {
            (Some(a), Some(b)) if a != b => {
                return Err(PersistenceError::identity(IdentityMismatch::Differs {
                    stored: a.into(),
                    given: b.into(),
                }))
            }
            (None, None) if !change.is_empty() => return invalid(Invalid::MissingIdentity),
            _ => {}
        }
        // The log after the snapshot and truncation, as (index, term) pairs.
        let (mut base, mut base_term) = self.base();
        let mut log: Vec<(LogIndex, Term)> =
            self.entries.iter().map(|e| (e.index, e.term)).collect();
        let mut conflict = None;
        if let Some(s) = &change.snapshot {
            let (index, term) = (s.meta.index, s.meta.term);
            if index == 0 {
                return invalid(Invalid::EmptySnapshot);
            }
            if index < base {
                return invalid(Invalid::SnapshotOlder {
                    index,
                    stored: base,
                });
            }
            if term < base_term || (index == base && term != base_term) {
                return invalid(Invalid::SnapshotTerm {
                    index,
                    term,
                    stored_index: base,
                    stored_term: base_term,
                });
            }
            if self.last().0 > index && self.term_at(index) != Some(term) {
                conflict = Some(index);
            }
            log.retain(|&(i, _)| i > index);
            (base, base_term) = (index, term);
        }
        if let Some(from) = change.truncate_from {
            if from <= base {
                return invalid(Invalid::TruncationIntoSnapshot {
                    from,
                    snapshot: base,
                });
            }
            log.retain(|&(i, _)| i < from);
        }
        if let Some(index) = conflict.filter(|_| !log.is_empty()) {
            return invalid(Invalid::SnapshotConflicts {
                index,
                term: base_term,
                stored_term: self.term_at(index),
                stored_last: self.last().0,
            });
        }
        let mut prev = log.last().copied().unwrap_or((base, base_term));
        for e in &change.entries {
            if e.index != prev.0 + 1 {
                return invalid(Invalid::EntryNotNext {
                    index: e.index,
                    last: prev.0,
                });
            }
            if e.term < prev.1 {
                return invalid(Invalid::EntryTermBelow {
                    index: e.index,
                    term: e.term,
                    previous: prev.1,
                });
            }
            prev = (e.index, e.term);
        }
        if let Some(hs) = &change.hard_state {
            let old = &self.hard_state;
            if hs.term < old.term {
                return invalid(Invalid::TermBelow {
                    term: hs.term,
                    stored: old.term,
                });
            }
            if hs.term == old.term && old.vote != NO_NODE && hs.vote != old.vote {
                return invalid(Invalid::VoteChanged {
                    term: hs.term,
                    vote: hs.vote,
                    stored: old.vote,
                });
            }
            if hs.commit < old.commit {
                return invalid(Invalid::CommitBelow {
                    commit: hs.commit,
                    stored: old.commit,
                });
            }
            if hs.commit > prev.0 {
                return invalid(Invalid::CommitBeyondLog {
                    commit: hs.commit,
                    last: prev.0,
                });
            }
        }
        Ok(())
    }

    /// Checks a loaded state against this model, by the rule in the module
    /// documentation; the error says what differs.
    pub fn check(&self, loaded: Option<&State>) -> Result<(), String> {
        let (identity, state) = match (&self.identity, loaded) {
            (None, None) => return Ok(()),
            (None, Some(s)) => {
                return Err(format!(
                    "load returned a state (identity {:?}, {} entries) but no change was accepted",
                    s.identity,
                    s.entries.len()
                ))
            }
            (Some(_), None) => return Err("load returned None after accepted saves".into()),
            (Some(identity), Some(state)) => (identity, state),
        };
        if &state.identity != identity {
            return Err(format!(
                "identity: loaded {:?}, saved {identity:?}",
                state.identity
            ));
        }
        if state.hard_state != self.hard_state {
            return Err(format!(
                "hard state: loaded {:?}, last saved {:?}",
                state.hard_state, self.hard_state
            ));
        }
        if state.snapshot != self.snapshot {
            let meta = |s: Option<&Snapshot>| s.map(|s| (s.meta.index, s.meta.term, s.data.len()));
            return Err(format!(
                "snapshot: loaded (index, term, data bytes) {:?}, latest saved {:?} (or their membership or data differ)",
                meta(state.snapshot.as_ref()),
                meta(self.snapshot.as_ref())
            ));
        }
        for pair in state.entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(format!(
                    "loaded entries are not contiguous: entry {} follows entry {}",
                    pair[1].index, pair[0].index
                ));
            }
        }
        let (base, _) = self.base();
        let split = state.entries.partition_point(|e| e.index <= base);
        let (below, above) = state.entries.split_at(split);
        for e in below {
            match self.compacted.get(&e.index) {
                Some(saved) if saved == e => {}
                Some(_) => {
                    return Err(format!(
                        "loaded entry {} (at or below the snapshot at {base}) differs from the one saved",
                        e.index
                    ))
                }
                None => {
                    return Err(format!(
                        "loaded entry {} (at or below the snapshot at {base}) was never saved",
                        e.index
                    ))
                }
            }
        }
        if above != self.entries.as_slice() {
            let mut msg = format!(
                "entries after the snapshot (index {base}): loaded {}, expected {}",
                describe_run(above),
                describe_run(&self.entries)
            );
            if let Some((l, m)) = above.iter().zip(&self.entries).find(|(l, m)| l != m) {
                let _ = write!(
                    msg,
                    "; first difference at index {}: loaded {:?}, saved {:?}",
                    l.index, l, m
                );
            }
            return Err(msg);
        }
        Ok(())
    }

    /// Panics, naming `what`, if `loaded` does not match this model.
    pub fn assert_matches(&self, loaded: Option<&State>, what: &str) {
        if let Err(e) = self.check(loaded) {
            panic!("{what}: the loaded state is wrong: {e}");
        }
    }
}

fn describe_run(entries: &[Entry]) -> String {
    match (entries.first(), entries.last()) {
        (Some(a), Some(b)) => format!("{} entries {}..={}", entries.len(), a.index, b.index),
        _ => "no entries".into(),
    }
}

// ---------------------------------------------------------------------------
// Random changes.

/// Makes random changes that are all valid, one after another: the first
/// carries the identity; then appends (with random payloads of every kind),
/// new terms with truncations above the commit index, votes, commits, local
/// snapshots of committed entries, snapshots received from a leader (with
/// the truncation the core hands out with them) and empty changes. The
/// same seed makes the same changes.
#[derive(Debug, Clone)]
pub struct ChangeGenerator {
    rng: SmallRng,
    model: Model,
}

impl ChangeGenerator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> ChangeGenerator {
        ChangeGenerator {
            rng: SmallRng::seed_from_u64(seed),
            model: Model::new(),
        }
    }

    /// What a store holds after the changes made so far.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The next change (already applied to [`ChangeGenerator::model`]).
    pub fn next_change(&mut self) -> Change {
        let change = if self.model.identity.is_none() {
            let n = self.rng.random_range(0..=3);
            Change {
                identity: Some(sample_identity()),
                entries: self.payload_entries(1, n, 1),
                hard_state: Some(hs(1, 1, 0)),
                ..Change::default()
            }
        } else {
            self.random_change()
        };
        if let Err(e) = self.model.apply(&change) {
            panic!("kit bug: the generator made an invalid change ({e}): {change:?}");
        }
        change
    }

    fn random_change(&mut self) -> Change {
        let (base, _) = self.model.base();
        let (last, last_term) = self.model.last();
        let cur = self.model.hard_state;
        let term = cur.term.max(last_term);
        match self.rng.random_range(0..100) {
            // Append at the current term, perhaps committing.
            0..=44 => {
                let n = self.rng.random_range(1..=6);
                let entries = self.payload_entries(last + 1, n, term);
                let new_last = last + n;
                let hard_state = self.rng.random_bool(0.5).then(|| {
                    let commit = self.rng.random_range(cur.commit..=new_last);
                    hs(cur.term.max(term), cur.vote, commit)
                });
                Change {
                    entries,
                    hard_state,
                    ..Change::default()
                }
            }
            // A new term, truncating uncommitted entries.
            45..=56 => {
                let new_term = term + self.rng.random_range(1..=2);
                let vote = self.rng.random_range(0..=3);
                let floor = cur.commit.max(base);
                let truncate_from = (last > floor && self.rng.random_bool(0.7))
                    .then(|| self.rng.random_range(floor + 1..=last));
                let from = truncate_from.unwrap_or(last + 1);
                let n = self.rng.random_range(0..=4);
                let entries = self.payload_entries(from, n, new_term);
                Change {
                    truncate_from,
                    entries,
                    hard_state: Some(hs(new_term, vote, cur.commit)),
                    ..Change::default()
                }
            }
            // A local snapshot of committed entries, perhaps with appends.
            57..=66 => {
                let mut hard_state = None;
                let mut commit = cur.commit;
                if commit <= base {
                    if last <= base {
                        return Change::default();
                    }
                    commit = self.rng.random_range(base + 1..=last);
                    hard_state = Some(hs(cur.term, cur.vote, commit));
                }
                let index = self.rng.random_range(base + 1..=commit);
                let snap_term = self.model.term_at(index).unwrap_or(term);
                let snapshot = Snapshot {
                    meta: SnapshotMeta {
                        index,
                        term: snap_term,
                        membership: self.model.membership_at(index),
                    },
                    data: self.random_bytes(64),
                };
                let n = if self.rng.random_bool(0.3) {
                    self.rng.random_range(1..=3)
                } else {
                    0
                };
                Change {
                    snapshot: Some(snapshot),
                    entries: self.payload_entries(last + 1, n, term),
                    hard_state,
                    ..Change::default()
                }
            }
            // A snapshot from a leader: beyond the commit index, perhaps
            // over uncommitted entries, with the truncation after it.
            67..=71 => {
                let index = self.rng.random_range(cur.commit.max(base) + 1..=last + 30);
                let snap_term = term + self.rng.random_range(0..=1);
                let vote = if snap_term > cur.term { 0 } else { cur.vote };
                let snapshot = Snapshot {
                    meta: SnapshotMeta {
                        index,
                        term: snap_term,
                        membership: self.random_membership(),
                    },
                    data: self.random_bytes(256),
                };
                let n = self.rng.random_range(0..=3);
                Change {
                    snapshot: Some(snapshot),
                    truncate_from: Some(index + 1),
                    entries: self.payload_entries(index + 1, n, snap_term),
                    hard_state: Some(hs(snap_term, vote, index)),
                    ..Change::default()
                }
            }
            // Hard state only: a new term, a vote, or a commit.
            72..=93 => {
                let hard_state = match self.rng.random_range(0..3) {
                    0 => hs(term + 1, self.rng.random_range(0..=3), cur.commit),
                    1 if cur.vote == NO_NODE => {
                        hs(cur.term, self.rng.random_range(1..=3), cur.commit)
                    }
                    _ => hs(cur.term, cur.vote, self.rng.random_range(cur.commit..=last)),
                };
                Change {
                    hard_state: Some(hard_state),
                    ..Change::default()
                }
            }
            // Nothing at all, or the same hard state again.
            _ => Change {
                hard_state: self.rng.random_bool(0.5).then_some(cur),
                ..Change::default()
            },
        }
    }

    fn payload_entries(&mut self, from: LogIndex, n: u64, term: Term) -> Vec<Entry> {
        (from..from + n)
            .map(|index| {
                let payload = match self.rng.random_range(0..20) {
                    0..=5 => EntryPayload::Blank,
                    6..=16 => EntryPayload::Command(self.random_bytes(24)),
                    _ => EntryPayload::Membership(self.random_membership()),
                };
                Entry {
                    term,
                    index,
                    payload,
                }
            })
            .collect()
    }

    fn random_bytes(&mut self, max: usize) -> Bytes {
        let len = self.rng.random_range(0..=max);
        Bytes::from(
            (0..len)
                .map(|_| self.rng.random::<u8>())
                .collect::<Vec<u8>>(),
        )
    }

    fn random_membership(&mut self) -> Membership {
        let mut m = Membership::default();
        for id in 1..=6u64 {
            let context = self.random_bytes(8);
            let change = match self.rng.random_range(0..4) {
                0 | 1 => ConfChange::AddVoter { id, context },
                2 => ConfChange::AddLearner { id, context },
                _ => continue,
            };
            m = m
                .apply(&change)
                .unwrap_or_else(|e| panic!("kit bug: building a membership: {e}"));
        }
        m
    }
}

/// `steps` random changes, all valid in sequence (see [`ChangeGenerator`]).
pub fn random_changes(seed: u64, steps: usize) -> Vec<Change> {
    let mut generator = ChangeGenerator::new(seed);
    (0..steps).map(|_| generator.next_change()).collect()
}

/// A change a store must refuse, given what it holds.
#[derive(Debug, Clone)]
pub struct InvalidChange {
    /// What is wrong with it.
    pub what: &'static str,
    /// The change.
    pub change: Change,
    /// The error it must get.
    pub refusal: Refusal,
}

/// Changes a store holding `model` must refuse (none for a store never
/// written): entries leaving a gap, entries overlapping the log without a
/// truncation, a truncation into the snapshot, an older snapshot, another
/// identity. Each also carries a valid-looking hard state, which must not be
/// applied either.
pub fn invalid_changes(model: &Model) -> Vec<InvalidChange> {
    let Some(identity) = model.identity() else {
        return Vec::new();
    };
    let (base, base_term) = model.base();
    let (last, last_term) = model.last();
    let cur = model.hard_state();
    let bump = Some(hs(cur.term + 1, NO_NODE, cur.commit));
    let mut out = vec![
        InvalidChange {
            what: "entries leaving a gap",
            change: Change {
                entries: vec![sample_entry(last + 2, last_term)],
                hard_state: bump,
                ..Change::default()
            },
            refusal: Refusal::Invalid,
        },
        InvalidChange {
            what: "another identity",
            change: Change {
                identity: Some(Identity {
                    id: format!("{}-other", identity.id),
                    ..identity.clone()
                }),
                hard_state: bump,
                ..Change::default()
            },
            refusal: Refusal::Identity,
        },
    ];
    if last > base {
        out.push(InvalidChange {
            what: "entries overlapping the log without a truncation",
            change: Change {
                entries: vec![sample_entry(last, last_term)],
                hard_state: bump,
                ..Change::default()
            },
            refusal: Refusal::Invalid,
        });
    }
    if base > 0 {
        out.push(InvalidChange {
            what: "a truncation into the snapshot",
            change: Change {
                truncate_from: Some(base),
                entries: vec![sample_entry(base, cur.term + 1)],
                hard_state: bump,
                ..Change::default()
            },
            refusal: Refusal::Invalid,
        });
    }
    if base > 1 {
        out.push(InvalidChange {
            what: "a snapshot older than the stored one",
            change: Change {
                snapshot: Some(sample_snapshot(base - 1, base_term)),
                hard_state: bump,
                ..Change::default()
            },
            refusal: Refusal::Invalid,
        });
    }
    out
}
