//! Linearizable reads without the log (Raft thesis 6.4): ReadIndex, leases,
//! follower reads.

mod common;

use common::{config, Cluster};
use raft_core::{Body, Config, ReadError, ReadMode, ReadState, Role};

fn lease(id: u64) -> Config {
    Config {
        read_mode: ReadMode::Lease,
        ..config(id)
    }
}

fn reads(c: &Cluster, id: u64) -> Vec<ReadState> {
    c.reads.get(&id).cloned().unwrap_or_default()
}

#[test]
fn read_index_waits_for_a_heartbeat_round() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.propose(1, b"x");
    c.stabilize();
    let heartbeats = c.count_delivered(|b| matches!(b, Body::Heartbeat { .. }));
    c.node_mut(1).read_index(7).unwrap();
    c.drive(1);
    assert!(
        reads(&c, 1).is_empty(),
        "not before a majority confirmed leadership"
    );
    c.stabilize();
    assert!(c.count_delivered(|b| matches!(b, Body::Heartbeat { .. })) > heartbeats);
    let r = reads(&c, 1);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, 7);
    assert_eq!(r[0].index, c.node(1).commit_index());
    assert_eq!(c.node(1).metrics().reads_by_round, 1);
}

#[test]
fn reads_arriving_together_share_one_round() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    let before = c.count_delivered(|b| matches!(b, Body::Heartbeat { .. }));
    for id in 0..50 {
        c.node_mut(1).read_index(id).unwrap();
    }
    c.stabilize();
    assert_eq!(reads(&c, 1).len(), 50);
    let sent = c.count_delivered(|b| matches!(b, Body::Heartbeat { .. })) - before;
    assert_eq!(sent, 2, "one heartbeat to each follower");
}

#[test]
fn a_partitioned_leader_cannot_confirm_a_read() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.isolate(1);
    c.node_mut(1).read_index(1).unwrap();
    c.stabilize();
    assert!(reads(&c, 1).is_empty());
    let min = c.node(1).config().election_timeout_ticks_min;
    c.tick(1, 2 * min);
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(
        c.aborted[&1],
        vec![1],
        "the read fails when leadership is lost"
    );
}

#[test]
fn a_new_leader_serves_reads_only_after_committing_in_its_term() {
    let mut c = Cluster::new(3, config);
    c.pass_restart_lease(1);
    c.node_mut(1).campaign_now();
    c.drive(1);
    while c.node(1).role() != Role::Leader && c.deliver_one() {}
    c.node_mut(1).read_index(9).unwrap();
    c.drive(1);
    assert!(
        reads(&c, 1).is_empty(),
        "the commit index may be stale before the blank commits"
    );
    c.stabilize();
    c.tick_all(1);
    assert_eq!(reads(&c, 1).len(), 1);
}

#[test]
fn a_follower_reads_through_the_leader() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.propose(1, b"x");
    c.stabilize();
    c.node_mut(3).read_index(5).unwrap();
    c.stabilize();
    let r = reads(&c, 3);
    assert_eq!(r.len(), 1);
    assert!(
        c.node(3).applied_index() >= r[0].index,
        "served only once applied"
    );
}

#[test]
fn a_follower_without_a_leader_refuses_at_once() {
    let mut c = Cluster::new(3, config);
    assert_eq!(c.node_mut(2).read_index(1), Err(ReadError::NoLeader));
}

#[test]
fn a_lease_serves_reads_without_a_round() {
    let mut c = Cluster::new(3, lease);
    c.elect(1);
    c.tick_all(2); // heartbeats acknowledged: the lease holds
    let before = c.count_delivered(|b| matches!(b, Body::Heartbeat { .. }));
    c.node_mut(1).read_index(3).unwrap();
    c.drive(1);
    assert_eq!(reads(&c, 1).len(), 1, "served at once");
    assert_eq!(
        c.count_delivered(|b| matches!(b, Body::Heartbeat { .. })),
        before
    );
    assert_eq!(c.node(1).metrics().reads_by_lease, 1);
}

#[test]
fn a_lease_expires_without_acknowledgements() {
    let mut c = Cluster::new(3, lease);
    c.elect(1);
    c.tick_all(2);
    c.isolate(1);
    let min = c.node(1).config().election_timeout_ticks_min;
    let drift = c.node(1).config().lease_drift_ticks;
    c.tick(1, min - drift);
    c.node_mut(1).read_index(4).unwrap();
    c.drive(1);
    assert!(
        reads(&c, 1).is_empty(),
        "the lease ran out: a round is needed"
    );
}

#[test]
fn a_lease_is_not_used_after_handing_leadership_over() {
    let mut c = Cluster::new(3, lease);
    c.elect(1);
    c.tick_all(2);
    c.isolate(2);
    c.node_mut(1).transfer_leader(3).unwrap();
    // Deliver the catch-up and TimeoutNow, but keep n1 from hearing the
    // new term: it still believes it leads.
    c.drive(1);
    let mut held = Vec::new();
    while let Some(m) = c.queue.pop_front() {
        if m.to == 1 {
            held.push(m);
            continue;
        }
        if !c.cut.contains(&(m.from, m.to)) {
            let to = m.to;
            let _ = c.node_mut(to).step(m);
            c.drive(to);
        }
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    c.node_mut(1).read_index(8).unwrap();
    c.drive(1);
    assert!(
        reads(&c, 1).is_empty(),
        "no lease read once another node may have been elected"
    );
    assert_eq!(c.node(1).metrics().reads_by_lease, 0);
}
