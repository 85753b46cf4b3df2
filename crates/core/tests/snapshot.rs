//! Snapshots and log compaction (Raft paper section 7, Figure 13).

mod common;

use bytes::Bytes;
use common::{config, Cluster, CLUSTER};
use raft_core::{
    Body, CompactError, Config, Membership, Message, Snapshot, SnapshotChunk, SnapshotMeta,
};

fn small_chunks(id: u64) -> Config {
    Config {
        snapshot_chunk_bytes: 16,
        max_inflight_snapshot_chunks: 2,
        snapshot_trailing_entries: 2,
        ..config(id)
    }
}

fn filled(c: &mut Cluster, leader: u64, n: usize) {
    for i in 0..n {
        c.node_mut(leader)
            .propose(Bytes::from(format!("cmd{i}")))
            .unwrap();
        c.stabilize();
    }
}

#[test]
fn compaction_drops_applied_entries_and_keeps_a_few() {
    let mut c = Cluster::new(3, small_chunks);
    c.elect(1);
    filled(&mut c, 1, 10);
    let applied = c.node(1).applied_index();
    c.node_mut(1)
        .compact(applied, Bytes::from_static(b"state"))
        .unwrap();
    c.drive(1);
    assert_eq!(
        c.node(1).first_index(),
        applied - 2 + 1,
        "two trailing entries kept"
    );
    assert_eq!(c.disk_snapshot(1).unwrap().meta.index, applied);
    let err = c
        .node_mut(1)
        .compact(applied + 5, Bytes::new())
        .unwrap_err();
    assert!(matches!(err, CompactError::NotApplied { .. }));
    let err = c.node_mut(1).compact(applied, Bytes::new()).unwrap_err();
    assert_eq!(err, CompactError::AlreadyCovered(applied));
}

#[test]
fn a_follower_behind_the_compaction_point_gets_the_snapshot_in_chunks() {
    let mut c = Cluster::new(3, small_chunks);
    c.elect(1);
    c.isolate(3);
    filled(&mut c, 1, 20);
    let applied = c.node(1).applied_index();
    let state = Bytes::from(vec![7u8; 100]);
    c.node_mut(1).compact(applied, state.clone()).unwrap();
    c.drive(1);
    c.heal();
    c.tick_all(3);
    let chunks: Vec<usize> = c
        .delivered
        .iter()
        .filter_map(|m| match &m.body {
            Body::Snapshot(ch) => Some(ch.data.len()),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.iter().sum::<usize>(), 100);
    assert!(
        chunks.iter().all(|&n| n <= 16),
        "chunks are bounded: {chunks:?}"
    );
    let installed = c.disk_snapshot(3).expect("n3 installed the snapshot");
    assert_eq!(installed.meta.index, applied);
    assert_eq!(installed.data, state);
    assert_eq!(c.node(3).commit_index(), c.node(1).commit_index());
    filled(&mut c, 1, 1);
    assert_eq!(
        c.commands(3).last(),
        Some(&Bytes::from_static(b"cmd0")),
        "replication resumes from the log"
    );
}

fn snapshot_chunk(term: u64, index: u64, snap_term: u64, data: &'static [u8]) -> Message {
    Message {
        cluster: CLUSTER,
        from: 1,
        to: 2,
        term,
        body: Body::Snapshot(Box::new(SnapshotChunk {
            meta: SnapshotMeta {
                index,
                term: snap_term,
                membership: Membership::with_voters([1, 2, 3]),
            },
            total_bytes: data.len() as u64,
            offset: 0,
            data: Bytes::from_static(data),
            round: 0,
        })),
    }
}

#[test]
fn a_snapshot_the_follower_already_covers_changes_nothing() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    filled(&mut c, 1, 5);
    c.tick_all(2);
    let (last, commit) = (c.node(2).last_index(), c.node(2).commit_index());
    let term = c.node(1).term();
    c.node_mut(2)
        .step(snapshot_chunk(term, 2, term, b"old"))
        .unwrap();
    let rd = c.node_mut(2).ready();
    assert!(rd.snapshot.is_none(), "an older snapshot is not installed");
    assert_eq!(
        c.node(2).last_index(),
        last,
        "nothing acknowledged is dropped"
    );
    assert_eq!(c.node(2).commit_index(), commit);
}

#[test]
fn a_snapshot_whose_last_entry_the_follower_holds_keeps_the_entries_after_it() {
    // n2 holds entries 1..=4 of term 1, none known committed.
    let mut c = Cluster::with_logs(&[&[1, 1, 1, 1], &[1, 1, 1, 1], &[1]], config);
    c.pass_restart_lease(1);
    c.node_mut(2).step(snapshot_chunk(2, 2, 1, b"s")).unwrap();
    let rd = c.node_mut(2).ready();
    assert!(
        !rd.restore_snapshot,
        "no need to restore: the entries are here"
    );
    assert_eq!(
        c.node(2).last_index(),
        4,
        "entries after the snapshot are kept (openraft #511)"
    );
    assert_eq!(c.node(2).commit_index(), 2);
}

#[test]
fn a_snapshot_that_conflicts_replaces_the_whole_log() {
    let mut c = Cluster::with_logs(&[&[1, 2, 2], &[1, 1, 1, 1], &[1]], config);
    c.pass_restart_lease(1);
    c.node_mut(2).step(snapshot_chunk(3, 3, 2, b"s")).unwrap();
    let rd = c.node_mut(2).ready();
    assert!(rd.restore_snapshot);
    assert_eq!(
        rd.truncate_from,
        Some(4),
        "stored entries after it are dropped"
    );
    assert_eq!(c.node(2).last_index(), 3);
    assert_eq!(c.node(2).entry_term(3), Some(2));
}

#[test]
fn a_restarted_node_starts_from_its_snapshot() {
    let mut c = Cluster::new(3, small_chunks);
    c.elect(1);
    filled(&mut c, 1, 6);
    let applied = c.node(2).applied_index();
    c.node_mut(2)
        .compact(applied, Bytes::from_static(b"snap"))
        .unwrap();
    c.drive(2);
    c.restart(2);
    let snap: Option<&SnapshotMeta> = c.node(2).snapshot_meta();
    assert_eq!(snap.map(|m| m.index), Some(applied));
    assert_eq!(c.node(2).applied_index(), applied);
    let _: Option<Snapshot> = c.disk_snapshot(2);
}

#[test]
fn a_streamed_snapshot_is_handed_out_in_chunks_not_gathered() {
    let mut c = Cluster::new(3, |id| Config {
        stream_snapshots: id == 3,
        ..small_chunks(id)
    });
    c.elect(1);
    c.isolate(3);
    filled(&mut c, 1, 20);
    let applied = c.node(1).applied_index();
    let state = Bytes::from((0..100u8).collect::<Vec<u8>>());
    c.node_mut(1).compact(applied, state.clone()).unwrap();
    c.drive(1);
    c.heal();
    // Drive n3 by hand to see its Ready batches.
    let mut received = Vec::new();
    let mut streamed = None;
    for _ in 0..200 {
        c.node_mut(1).tick();
        c.drive(1);
        while let Some(m) = c.queue.pop_front() {
            let to = m.to;
            let _ = c.node_mut(to).step(m);
            if to != 3 {
                c.drive(to);
                continue;
            }
            let mut out = Vec::new();
            let r = c.nodes.get_mut(&3).expect("n3 exists");
            while r.has_ready() {
                let rd = r.ready();
                for ch in &rd.snapshot_chunks {
                    assert_eq!(ch.offset as usize, received.len(), "chunks come in order");
                    received.extend_from_slice(&ch.data);
                }
                if rd.snapshot_streamed {
                    let s = rd.snapshot.clone().expect("the installed snapshot");
                    assert!(s.data.is_empty(), "the data went out in chunks");
                    streamed = Some(s.meta.index);
                }
                out.extend(rd.messages.iter().cloned());
                if let Some((i, t)) = rd.persisted_marker() {
                    r.on_persisted(i, t);
                }
                out.extend(rd.messages_after_persist.iter().cloned());
            }
            c.queue.extend(out);
        }
        if streamed.is_some() {
            break;
        }
    }
    assert_eq!(streamed, Some(applied));
    assert_eq!(Bytes::from(received.clone()), state);
    // Until the driver hands the data back, n3 cannot send the snapshot on.
    c.node_mut(3)
        .set_snapshot_data(applied, Bytes::from(received));
    assert_eq!(c.node(3).snapshot_meta().map(|m| m.index), Some(applied));
}
