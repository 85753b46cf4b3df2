//! Random and hostile messages: the node refuses or survives them, never
//! panics, and its log keeps its invariants.

mod common;

use bytes::Bytes;
use common::{config, Cluster, CLUSTER};
use raft_core::{
    Append, AppendOutcome, AppendResponse, Body, Config, Entry, EntryPayload, Membership, Message,
    SnapshotChunk, SnapshotMeta, SnapshotResponse, VoteRequest,
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
            Body::Snapshot(SnapshotChunk {
                meta: SnapshotMeta {
                    index: small(rng, last_hint),
                    term: small(rng, term_hint),
                    membership: Membership::with_voters([1, 2, 3]),
                },
                total_bytes: total,
                offset: small(rng, 40),
                data: Bytes::from(vec![0u8; rng.random_range(0..20)]),
                round: 0,
            })
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
