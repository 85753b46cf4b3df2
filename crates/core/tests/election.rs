//! Elections, one test per rule (Raft paper section 5.2 and 5.4.1, thesis
//! 4.2.3 and 9.6).

mod common;

use common::{config, Cluster, CLUSTER};
use raft_core::{Body, Config, Membership, Message, Raft, Restored, Role, VoteRequest};

fn three() -> Cluster {
    Cluster::new(3, config)
}

fn vote_request(
    from: u64,
    to: u64,
    term: u64,
    last_index: u64,
    last_term: u64,
    pre: bool,
) -> Message {
    Message {
        cluster: CLUSTER,
        from,
        to,
        term,
        body: Body::Vote(VoteRequest {
            pre,
            last_index,
            last_term,
            transfer: false,
        }),
    }
}

#[test]
fn a_follower_campaigns_when_its_election_timeout_expires() {
    let mut c = three();
    c.pass_restart_lease(1);
    let max = c.node(1).config().election_timeout_ticks_max;
    c.tick(1, max);
    assert_eq!(c.node(1).role(), Role::PreCandidate, "pre-vote comes first");
    assert_eq!(c.node(1).term(), 0, "a pre-candidate keeps its term");
    c.stabilize();
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), 1);
    assert_eq!(c.node(2).leader(), Some(1));
    assert_eq!(c.node(3).leader(), Some(1));
}

#[test]
fn a_new_leader_appends_a_blank_entry_of_its_term() {
    let mut c = three();
    c.elect(1);
    let last = c.node(1).last_index();
    assert_eq!(c.node(1).entry_term(last), Some(1));
    assert_eq!(
        c.node(2).commit_index(),
        last,
        "followers learn the commit at the next append"
    );
}

#[test]
fn a_node_votes_at_most_once_per_term() {
    let mut c = three();
    c.pass_restart_lease(3);
    let r = c.node_mut(3);
    r.step(vote_request(1, 3, 5, 0, 0, false)).unwrap();
    r.step(vote_request(2, 3, 5, 0, 0, false)).unwrap();
    let rd = r.ready();
    assert_eq!(rd.hard_state.map(|h| (h.term, h.vote)), Some((5, 1)));
    let grants: Vec<(u64, bool)> = rd
        .messages_after_persist
        .iter()
        .filter_map(|m| match m.body {
            Body::VoteResponse { granted, .. } => Some((m.to, granted)),
            _ => None,
        })
        .collect();
    assert_eq!(grants, vec![(1, true), (2, false)]);
    assert!(
        rd.messages.is_empty(),
        "no vote leaves before the vote is durable"
    );
}

#[test]
fn a_vote_is_refused_to_a_candidate_with_a_less_up_to_date_log() {
    let mut c = three();
    c.elect(1);
    c.propose(1, b"x");
    c.stabilize();
    let last = c.node(3).last_index();
    c.tick(3, 10); // past the lease it holds from hearing the leader
    let r = c.node_mut(3);
    r.step(vote_request(2, 3, 9, last - 1, 1, false)).unwrap();
    let rd = r.ready();
    let granted = rd
        .messages_after_persist
        .iter()
        .any(|m| matches!(m.body, Body::VoteResponse { granted: true, .. }));
    assert!(!granted, "shorter log of the same last term");
    assert_eq!(
        c.node(3).term(),
        9,
        "the higher term is adopted all the same"
    );
}

#[test]
fn votes_are_ignored_while_a_leader_is_heard_from() {
    let mut c = three();
    c.elect(1);
    let before = c.node(3).term();
    let last = c.node(3).last_index();
    c.node_mut(3)
        .step(vote_request(2, 3, before + 1, last, before, false))
        .unwrap();
    assert_eq!(
        c.node(3).term(),
        before,
        "in-lease: the candidate's term is not adopted"
    );
    assert_eq!(c.node(3).metrics().votes_ignored_in_lease, 1);
}

#[test]
fn a_rejoining_partitioned_node_does_not_disrupt_the_leader() {
    let mut c = three();
    c.elect(1);
    c.isolate(3);
    c.tick(3, 100); // many pre-vote rounds, none answered
    assert_eq!(
        c.node(3).term(),
        1,
        "pre-vote keeps an isolated node's term"
    );
    c.heal();
    c.tick_all(5);
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), 1);
    assert_eq!(c.node(3).leader(), Some(1));
}

#[test]
fn without_pre_vote_a_partitioned_node_raises_its_term() {
    let mut c = Cluster::new(3, |id| Config {
        pre_vote: false,
        check_quorum: false,
        ..config(id)
    });
    c.elect(1);
    c.isolate(3);
    c.tick(3, 100);
    assert!(c.node(3).term() > 1, "this is what pre-vote prevents");
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut c = three();
    c.elect(1);
    c.isolate(1);
    let min = c.node(1).config().election_timeout_ticks_min;
    c.tick(1, 2 * min);
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).leader(), None);
}

#[test]
fn a_weakened_node_starts_no_election() {
    let mut c = three();
    c.node_mut(1).weaken(1_000);
    c.tick(1, 200);
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).metrics().pre_elections, 0);
}

#[test]
fn leadership_transfer_hands_over_to_the_target() {
    let mut c = three();
    c.elect(1);
    c.propose(1, b"a");
    c.stabilize();
    c.node_mut(1).transfer_leader(3).unwrap();
    let refused = c.node_mut(1).propose(bytes::Bytes::from_static(b"b"));
    assert!(refused.is_err(), "no proposals while handing over");
    c.stabilize();
    assert_eq!(c.node(3).role(), Role::Leader);
    assert_eq!(c.node(3).term(), 2);
    assert_eq!(c.node(1).leader(), Some(3));
}

#[test]
fn a_weakened_node_ignores_a_transfer() {
    let mut c = three();
    c.elect(1);
    c.node_mut(3).weaken(1_000);
    c.node_mut(1).transfer_leader(3).unwrap();
    c.stabilize();
    assert_eq!(c.node(1).role(), Role::Leader);
    let min = c.node(1).config().election_timeout_ticks_min;
    c.tick_all(min + 1);
    assert_eq!(c.node(1).metrics().transfers_aborted, 1);
    assert!(c
        .node_mut(1)
        .propose(bytes::Bytes::from_static(b"ok"))
        .is_ok());
}

#[test]
fn a_message_from_another_cluster_is_refused_and_counted() {
    let mut c = three();
    let mut m = vote_request(2, 1, 50, 0, 0, false);
    m.cluster = CLUSTER + 1;
    assert!(c.node_mut(1).step(m).is_err());
    assert_eq!(c.node(1).metrics().refused_foreign_cluster, 1);
    assert_eq!(c.node(1).term(), 0);
}

#[test]
fn a_node_outside_the_configuration_never_campaigns() {
    let mut c = Cluster::empty();
    c.add_node(config(9), Membership::default());
    c.tick(9, 500);
    assert_eq!(c.node(9).metrics().pre_elections, 0);
}

#[test]
fn a_single_voter_elects_itself() {
    let mut c = Cluster::new(1, config);
    c.tick(1, 30);
    assert_eq!(c.node(1).role(), Role::Leader);
    c.propose(1, b"solo");
    c.stabilize();
    assert_eq!(c.commands(1), vec![bytes::Bytes::from_static(b"solo")]);
}

#[test]
fn restart_refuses_a_log_with_a_gap() {
    let mut c = three();
    c.elect(1);
    c.propose(1, b"a");
    c.propose(1, b"b");
    c.stabilize();
    let mut restored: Restored = c.durable[&2].restored.clone();
    restored.entries.remove(1);
    let err = Raft::new(config(2), restored)
        .err()
        .expect("a gap is refused");
    assert!(err.to_string().contains("gap"), "{err}");
}

/// A lone voter wins without sending anything, before its new term is on
/// disk: it must not send in that term until it is (found by the
/// simulator: a learner had adopted a term the leader then lost).
#[test]
fn a_lone_voter_sends_nothing_before_its_term_is_durable() {
    let learner = raft_core::ConfChange::AddLearner {
        id: 2,
        context: bytes::Bytes::new(),
    };
    let membership = Membership::with_voters([1]).apply(&learner).unwrap();
    let restored = Restored {
        bootstrap: membership,
        ..Restored::default()
    };
    let mut r = Raft::new(config(1), restored).unwrap();
    while r.role() != Role::Leader {
        r.tick();
    }
    let rd = r.ready();
    assert_eq!(rd.hard_state.map(|h| h.term), Some(1));
    assert!(
        rd.messages.is_empty(),
        "sent before term 1 is durable: {:?}",
        rd.messages
    );
    assert!(rd
        .messages_after_persist
        .iter()
        .any(|m| m.to == 2 && matches!(m.body, Body::Append(_))));
    let (index, term) = rd.persisted_marker().unwrap();
    r.on_persisted(index, term);
    r.propose(bytes::Bytes::from_static(b"x")).unwrap();
    r.tick();
    let rd = r.ready();
    assert!(
        rd.messages.iter().any(|m| m.to == 2),
        "once the term is durable, appends leave at once"
    );
}

#[test]
fn a_leader_whose_disk_stalls_hands_leadership_over() {
    let stall = 30;
    let mut c = Cluster::new(3, |id| Config {
        disk_stall_ticks: stall,
        ..config(id)
    });
    c.elect(1);
    c.propose(1, b"a");
    c.stabilize();
    // The leader's disk stops completing writes; its heartbeats go on, so
    // without a handover no one else would campaign.
    c.stalled.insert(1);
    c.propose(1, b"b");
    c.stabilize();
    c.tick_all(stall - 1);
    assert_eq!(
        c.node(1).role(),
        Role::Leader,
        "not before the stall period"
    );
    assert_eq!(c.node(1).metrics().disk_stall_handovers, 0);
    c.tick_all(2);
    assert_eq!(c.node(1).metrics().disk_stall_handovers, 1);
    assert_ne!(c.node(1).role(), Role::Leader);
    let leader = c.node(2).leader();
    assert!(
        matches!(leader, Some(2 | 3)) && c.node(leader.unwrap()).role() == Role::Leader,
        "a follower took over: {leader:?}"
    );
    // The new leader commits without the stalled node.
    let new = leader.unwrap();
    let index = c.propose(new, b"c");
    c.stabilize();
    assert!(c.node(new).commit_index() >= index);
}

#[test]
fn a_leader_whose_disk_is_slow_but_moving_keeps_leading() {
    let stall = 5;
    let mut c = Cluster::new(3, |id| Config {
        disk_stall_ticks: stall,
        ..config(id)
    });
    c.elect(1);
    // Every write takes about as long as the stall period, but each one
    // completes: the durable index keeps moving.
    for i in 0..50u64 {
        c.stalled.insert(1);
        c.propose(1, b"x");
        c.stabilize();
        c.tick_all(stall - 1);
        c.stalled.remove(&1);
        c.drive(1);
        let (last, term) = (c.node(1).last_index(), c.node(1).term());
        c.node_mut(1).on_persisted(last, term);
        c.stabilize();
        assert_eq!(c.node(1).role(), Role::Leader, "round {i}");
    }
    assert_eq!(c.node(1).metrics().disk_stall_handovers, 0);
}
