//! Random and hostile messages: the node refuses or survives them, never
//! panics, and its log keeps its invariants.

mod common;

use bytes::Bytes;
use common::{config, Cluster, CLUSTER};
use raft_core::{
    Append, AppendOutcome, AppendResponse, Body, Config, Entry, EntryPayload, HardState,
    Membership, Message, Raft, RestoreError, Restored, Snapshot, SnapshotChunk, SnapshotMeta,
    SnapshotResponse, StepError, StoredTerm, VoteRequest, MAX_TERM,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn random_entry(rng: &mut SmallRng, index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        payload: if rng.random_bool(0.5) {
            EntryPayload::Command(Bytes::from(vec![
                rng.random::<u8>();
                rng.random_range(0..8)
            ]))
        } else {
            EntryPayload::Blank
        },
    }
}

fn random_message(rng: &mut SmallRng, to: u64, term_hint: u64, last_hint: u64) -> Message {
    let small = |rng: &mut SmallRng, hint: u64| {
        if rng.random_bool(0.1) {
            rng.random::<u64>()
        } else {
            rng.random_range(0..=hint + 3)
        }
    };
    let term = small(rng, term_hint);
    let body = match rng.random_range(0..9) {
        0 => {
            let prev_index = small(rng, last_hint);
            let prev_term = small(rng, term_hint);
            let n = rng.random_range(0..4);
            let mut entries = Vec::new();
            for k in 0..n {
                let contiguous = rng.random_bool(0.9);
                let index = if contiguous {
                    prev_index + 1 + k
                } else {
                    small(rng, last_hint)
                };
                let term = small(rng, term_hint);
                entries.push(random_entry(rng, index, term));
            }
            Body::Append(Append {
                prev_index,
                prev_term,
                entries,
                commit: small(rng, last_hint),
                round: small(rng, 10),
            })
        }
        1 => Body::AppendResponse(AppendResponse {
            round: small(rng, 10),
            outcome: if rng.random_bool(0.5) {
                AppendOutcome::Accepted {
                    match_index: small(rng, last_hint),
                }
            } else {
                AppendOutcome::Rejected {
                    prev_index: small(rng, last_hint),
                    last_index: small(rng, last_hint),
                    conflict: rng
                        .random_bool(0.5)
                        .then(|| (small(rng, term_hint), small(rng, last_hint))),
                }
            },
        }),
        2 => Body::Heartbeat {
            commit: small(rng, last_hint),
            round: small(rng, 10),
        },
        3 => Body::HeartbeatResponse {
            round: small(rng, 10),
        },
        4 => Body::Vote(VoteRequest {
            pre: rng.random_bool(0.5),
            last_index: small(rng, last_hint),
            last_term: small(rng, term_hint),
            transfer: rng.random_bool(0.2),
        }),
        5 => Body::VoteResponse {
            pre: rng.random_bool(0.5),
            granted: rng.random_bool(0.5),
        },
        6 => {
            let total = small(rng, 40);
            Body::Snapshot(Box::new(SnapshotChunk {
                meta: SnapshotMeta {
                    index: small(rng, last_hint),
                    term: small(rng, term_hint),
                    membership: Membership::with_voters([1, 2, 3]),
                },
                total_bytes: total,
                offset: small(rng, 40),
                data: Bytes::from(vec![0u8; rng.random_range(0..20)]),
                round: 0,
            }))
        }
        7 => Body::SnapshotResponse(SnapshotResponse {
            snapshot_index: small(rng, last_hint),
            next_offset: small(rng, 100),
            done: rng.random_bool(0.3),
            round: 0,
        }),
        _ => match rng.random_range(0..4) {
            0 => Body::TimeoutNow,
            3 => Body::Commit {
                commit: small(rng, last_hint),
            },
            1 => Body::ReadIndex { id: small(rng, 5) },
            _ => Body::ReadIndexResponse {
                id: small(rng, 5),
                index: rng.random_bool(0.5).then(|| small(rng, last_hint)),
            },
        },
    };
    Message {
        cluster: if rng.random_bool(0.02) {
            CLUSTER + 1
        } else {
            CLUSTER
        },
        from: rng.random_range(0..=4),
        to,
        term,
        body,
    }
}

#[test]
fn random_messages_never_break_a_node() {
    let mut rng = SmallRng::seed_from_u64(2024);
    for round in 0..200 {
        let mut c = Cluster::new(3, |id| Config {
            snapshot_chunk_bytes: 8,
            ..config(id)
        });
        c.elect(1);
        for i in 0..5u8 {
            c.node_mut(1).propose(Bytes::from(vec![i])).unwrap();
        }
        c.stabilize();
        if round % 2 == 0 {
            let applied = c.node(1).applied_index();
            c.node_mut(1)
                .compact(applied, Bytes::from_static(b"state"))
                .unwrap();
        }
        for _ in 0..200 {
            let to = rng.random_range(1..=3);
            let (term, last) = (c.node(to).term(), c.node(to).last_index());
            let m = random_message(&mut rng, to, term, last);
            let _ = c.node_mut(to).step(m);
            c.node_mut(to).debug_check();
            let _ = c.node_mut(to).ready();
            if rng.random_bool(0.1) {
                c.node_mut(to).tick();
            }
            let r = c.node(to);
            assert!(
                r.commit_index() <= r.last_index().max(r.snapshot_meta().map_or(0, |m| m.index))
            );
        }
    }
}

#[test]
fn a_malformed_append_is_refused_and_counted() {
    let mut c = Cluster::new(3, config);
    let gap = Message {
        cluster: CLUSTER,
        from: 1,
        to: 2,
        term: 1,
        body: Body::Append(Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![
                Entry {
                    index: 1,
                    term: 1,
                    payload: EntryPayload::Blank,
                },
                Entry {
                    index: 3,
                    term: 1,
                    payload: EntryPayload::Blank,
                },
            ],
            commit: 0,
            round: 0,
        }),
    };
    let err = c.node_mut(2).step(gap).unwrap_err();
    assert!(err.to_string().contains("not contiguous"), "{err}");
    assert_eq!(c.node(2).metrics().refused_malformed, 1);
    assert_eq!(c.node(2).last_index(), 0);
}

/// Three nodes, n1 leading, a command committed everywhere.
fn committing_cluster() -> Cluster {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.propose(1, b"before");
    c.stabilize();
    for id in 1..=3 {
        assert_eq!(c.commands(id).last().map(|d| &d[..]), Some(&b"before"[..]));
    }
    c
}

/// A forged message to `to`, seemingly from a member (the leader, or n2 for
/// the leader itself).
fn forged(to: u64, term: u64, body: Body) -> Message {
    Message {
        cluster: CLUSTER,
        from: if to == 1 { 2 } else { 1 },
        to,
        term,
        body,
    }
}

/// Hands every node the message `forge` makes for it: each refuses it as
/// implausible and counts it, its term, vote and role unchanged; then the
/// cluster still commits.
fn refused_everywhere(c: &mut Cluster, what: &[u8], forge: impl Fn(u64) -> Message) {
    for id in 1..=3 {
        let m = forge(id);
        let highest = m.highest_term();
        let (term, vote, role) = (c.node(id).term(), c.node(id).vote(), c.node(id).role());
        let before = c.node(id).metrics().refused_implausible_term;
        let err = c.node_mut(id).step(m).unwrap_err();
        assert_eq!(
            err,
            StepError::ImplausibleTerm {
                from: if id == 1 { 2 } else { 1 },
                kind: err_kind(&err),
                term: highest,
                max: MAX_TERM,
            }
        );
        assert!(err.to_string().contains(&highest.to_string()), "{err}");
        let r = c.node(id);
        assert_eq!(r.metrics().refused_implausible_term, before + 1);
        assert_eq!((r.term(), r.vote(), r.role()), (term, vote, role));
        assert!(
            !c.node_mut(id).has_ready(),
            "a refused message changes nothing"
        );
    }
    c.node_mut(1).propose(Bytes::copy_from_slice(what)).unwrap();
    c.stabilize();
    c.tick_all(30);
    assert_eq!(c.node(1).role(), raft_core::Role::Leader);
    for id in 1..=3 {
        assert_eq!(c.commands(id).last().map(|d| &d[..]), Some(what));
    }
}

fn err_kind(err: &StepError) -> &'static str {
    match err {
        StepError::ImplausibleTerm { kind, .. } => kind,
        other => panic!("refused for another reason: {other}"),
    }
}

fn heartbeat() -> Body {
    Body::Heartbeat {
        commit: 0,
        round: 0,
    }
}

fn append_of_term(entry_term: u64, next: u64) -> Body {
    Body::Append(Append {
        prev_index: next - 1,
        prev_term: 1,
        entries: vec![Entry {
            index: next,
            term: entry_term,
            payload: EntryPayload::Command(Bytes::from_static(b"forged")),
        }],
        commit: next,
        round: 0,
    })
}

fn vote(pre: bool, last_term: u64) -> Body {
    Body::Vote(VoteRequest {
        pre,
        last_index: 1_000,
        last_term,
        transfer: true,
    })
}

#[test]
fn a_forged_message_term_at_u64_max_is_refused_by_every_node() {
    let mut c = committing_cluster();
    refused_everywhere(&mut c, b"heartbeat", |to| forged(to, u64::MAX, heartbeat()));
    refused_everywhere(&mut c, b"append", |to| {
        forged(to, u64::MAX, append_of_term(u64::MAX, 3))
    });
    refused_everywhere(&mut c, b"timeout-now", |to| {
        forged(to, u64::MAX, Body::TimeoutNow)
    });
    for id in 1..=3 {
        assert_eq!(c.node(id).metrics().refused_implausible_term, 3);
        assert_eq!(c.node(id).term(), 1);
    }
}

#[test]
fn forged_terms_just_below_u64_max_and_above_the_bound_are_refused() {
    let mut c = committing_cluster();
    for (term, what) in [
        (u64::MAX - 1, &b"max - 1"[..]),
        (MAX_TERM + 1, &b"bound + 1"[..]),
    ] {
        refused_everywhere(&mut c, what, |to| forged(to, term, vote(false, 1)));
        refused_everywhere(&mut c, what, |to| forged(to, term, vote(true, 1)));
        refused_everywhere(&mut c, what, |to| forged(to, term, heartbeat()));
        refused_everywhere(&mut c, what, |to| {
            forged(
                to,
                term,
                Body::VoteResponse {
                    pre: false,
                    granted: true,
                },
            )
        });
    }
    assert_eq!(c.node(2).metrics().refused_implausible_term, 8);
    assert_eq!(c.node(2).term(), 1);
}

#[test]
fn implausible_terms_inside_a_plausible_message_are_refused() {
    let mut c = committing_cluster();
    // An append of the leader's own term whose entry carries u64::MAX.
    refused_everywhere(&mut c, b"entry term", |to| {
        forged(to, 1, append_of_term(u64::MAX, 3))
    });
    // ... whose prev_term does.
    refused_everywhere(&mut c, b"prev term", |to| {
        let mut body = append_of_term(1, 4);
        if let Body::Append(a) = &mut body {
            a.prev_term = MAX_TERM + 1;
        }
        forged(to, 1, body)
    });
    // A vote request of the next term whose last log term is u64::MAX: its
    // log would beat every log, and its term would be adopted.
    refused_everywhere(&mut c, b"last log term", |to| {
        forged(to, 2, vote(false, u64::MAX))
    });
    refused_everywhere(&mut c, b"pre-vote last log term", |to| {
        forged(to, 2, vote(true, u64::MAX))
    });
    // A snapshot of an implausible term.
    refused_everywhere(&mut c, b"snapshot term", |to| {
        forged(
            to,
            1,
            Body::Snapshot(Box::new(SnapshotChunk {
                meta: SnapshotMeta {
                    index: 100,
                    term: u64::MAX,
                    membership: Membership::with_voters([1, 2, 3]),
                },
                total_bytes: 1,
                offset: 0,
                data: Bytes::from_static(b"x"),
                round: 0,
            })),
        )
    });
    // A rejection whose conflict hint names an implausible term.
    refused_everywhere(&mut c, b"conflict term", |to| {
        forged(
            to,
            1,
            Body::AppendResponse(AppendResponse {
                round: 0,
                outcome: AppendOutcome::Rejected {
                    prev_index: 1,
                    last_index: 0,
                    conflict: Some((u64::MAX, 1)),
                },
            }),
        )
    });
    for id in 1..=3 {
        assert_eq!(c.node(id).metrics().refused_implausible_term, 6);
        assert_eq!(c.node(id).metrics().refused_malformed, 0);
        assert_eq!(c.node(id).term(), 1);
    }
}

#[test]
fn a_sender_outside_the_cluster_is_refused_the_same_way() {
    let mut c = committing_cluster();
    let m = Message {
        cluster: CLUSTER,
        from: 99,
        to: 2,
        term: u64::MAX,
        body: heartbeat(),
    };
    let err = c.node_mut(2).step(m).unwrap_err();
    assert!(
        matches!(err, StepError::ImplausibleTerm { from: 99, .. }),
        "{err}"
    );
    assert_eq!(c.node(2).metrics().refused_implausible_term, 1);
}

#[test]
fn a_cluster_runs_up_to_the_bound_and_stops_campaigning_there() {
    // Restarted just below the bound: the next election reaches it.
    let mut c = Cluster::with_logs(&[&[MAX_TERM - 1][..]; 3], config);
    assert_eq!(c.node(1).term(), MAX_TERM - 1);
    c.elect(1);
    assert_eq!(c.node(1).term(), MAX_TERM);
    c.propose(1, b"at the bound");
    c.stabilize();
    for id in 1..=3 {
        assert_eq!(c.node(id).term(), MAX_TERM);
        assert_eq!(
            c.commands(id).last().map(|d| &d[..]),
            Some(&b"at the bound"[..])
        );
    }
    // A message of the bound's term is plausible: handled as usual.
    let m = forged(2, MAX_TERM, vote(true, MAX_TERM));
    assert!(c.node_mut(2).step(m).is_ok());
    // With the leader gone, nobody can campaign past the bound: no election,
    // no wrap-around, no panic.
    c.isolate(1);
    c.tick_all(200);
    for id in 2..=3 {
        let r = c.node(id);
        assert_eq!(r.term(), MAX_TERM);
        assert_eq!(r.role(), raft_core::Role::Follower);
        assert_eq!(r.metrics().pre_elections, 0);
        assert_eq!(r.metrics().elections, 0);
        c.node_mut(id).campaign_now();
        assert_eq!(c.node(id).term(), MAX_TERM);
    }
}

#[test]
fn a_pre_vote_just_below_the_bound_runs_as_usual() {
    let mut c = Cluster::with_logs(&[&[MAX_TERM - 2][..]; 3], config);
    c.elect(2);
    assert_eq!(c.node(2).term(), MAX_TERM - 1);
    c.isolate(2);
    c.tick_all(100);
    let leader = (1..=3)
        .find(|&id| c.node(id).role() == raft_core::Role::Leader && id != 2)
        .expect("n1 or n3 took over");
    assert_eq!(c.node(leader).term(), MAX_TERM);
}

fn restart_with(hard_term: u64, snapshot_term: u64, entry_term: u64) -> Result<Raft, RestoreError> {
    let restored = Restored {
        hard_state: HardState {
            term: hard_term,
            vote: 0,
            commit: 0,
        },
        snapshot: Some(Snapshot {
            meta: SnapshotMeta {
                index: 1,
                term: snapshot_term,
                membership: Membership::with_voters([1, 2, 3]),
            },
            data: Bytes::new(),
        }),
        bootstrap: Membership::default(),
        entries: vec![Entry {
            index: 2,
            term: entry_term,
            payload: EntryPayload::Blank,
        }],
    };
    Raft::new(config(1), restored)
}

#[test]
fn a_stored_implausible_term_refuses_to_start_naming_it() {
    let err = restart_with(u64::MAX, 1, 1).err().expect("refused");
    assert_eq!(
        err,
        RestoreError::ImplausibleTerm {
            what: StoredTerm::HardState,
            term: u64::MAX,
            max: MAX_TERM,
        }
    );
    let text = err.to_string();
    assert!(text.contains(&u64::MAX.to_string()), "{text}");
    assert!(text.contains(&MAX_TERM.to_string()), "{text}");

    let err = restart_with(u64::MAX, u64::MAX, 1).err().expect("refused");
    assert!(matches!(
        err,
        RestoreError::ImplausibleTerm {
            what: StoredTerm::HardState,
            ..
        }
    ));
    let err = restart_with(5, MAX_TERM + 1, 1).err().expect("refused");
    assert!(matches!(
        err,
        RestoreError::ImplausibleTerm {
            what: StoredTerm::Snapshot,
            ..
        }
    ));
    let err = restart_with(5, 1, u64::MAX - 1).err().expect("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "stored term of entry 2 {} is above the highest plausible term {MAX_TERM} (MAX_TERM): it came from a forged or corrupt message, and no election can follow it; rebuild this node's storage from its peers",
            u64::MAX - 1
        )
    );
}

#[test]
fn a_stored_term_at_the_bound_restarts() {
    let raft = restart_with(MAX_TERM, MAX_TERM - 1, MAX_TERM).expect("plausible");
    assert_eq!(raft.term(), MAX_TERM);
    assert_eq!(raft.last_term(), MAX_TERM);
}

/// Indexes near `u64::MAX` (an append after `u64::MAX - 1` or at it, a
/// snapshot at `u64::MAX`, a commit far beyond the log) would overflow the
/// core's `index + 1`: each is refused as malformed by every node, which
/// changes nothing, and the cluster still commits. Debug builds (these
/// tests) would panic on the overflow.
#[test]
fn forged_indexes_near_u64_max_are_refused() {
    let mut c = committing_cluster();
    let bodies: Vec<Box<dyn Fn(u64) -> Body>> = vec![
        Box::new(|_| append_of_term(1, u64::MAX)),
        Box::new(|_| {
            Body::Append(Append {
                prev_index: u64::MAX,
                prev_term: 1,
                entries: vec![Entry {
                    index: 0,
                    term: 1,
                    payload: EntryPayload::Blank,
                }],
                commit: 0,
                round: 0,
            })
        }),
        Box::new(|_| Body::Commit { commit: u64::MAX }),
        Box::new(|_| {
            Body::Vote(raft_core::VoteRequest {
                pre: false,
                last_index: u64::MAX,
                last_term: 1,
                transfer: false,
            })
        }),
        Box::new(|_| {
            Body::Snapshot(Box::new(raft_core::SnapshotChunk {
                meta: raft_core::SnapshotMeta {
                    index: u64::MAX,
                    term: 1,
                    membership: raft_core::Membership::with_voters([1, 2, 3]),
                },
                total_bytes: 1,
                offset: 0,
                data: Bytes::from_static(b"x"),
                round: 0,
            }))
        }),
    ];
    for body in &bodies {
        for id in 1..=3 {
            let term = c.node(id).term();
            let m = forged(id, term, body(id));
            assert!(m.highest_index() > raft_core::MAX_INDEX);
            let before = c.node(id).metrics().refused_malformed;
            let (last, commit) = (c.node(id).last_index(), c.node(id).commit_index());
            let err = c.node_mut(id).step(m).unwrap_err();
            assert!(err.to_string().contains("MAX_INDEX"), "{err}");
            let r = c.node(id);
            assert_eq!(r.metrics().refused_malformed, before + 1);
            assert_eq!((r.last_index(), r.commit_index()), (last, commit));
        }
    }
    c.node_mut(1).propose(Bytes::from_static(b"after")).unwrap();
    c.stabilize();
    for id in 1..=3 {
        assert_eq!(c.commands(id).last().map(|d| &d[..]), Some(&b"after"[..]));
    }
}
