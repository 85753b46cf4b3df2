//! Membership changes: learners, single-server changes, removing the
//! leader (Raft thesis chapter 4).

mod common;

use bytes::Bytes;
use common::{config, Cluster};
use raft_core::{ConfChange, Membership, ProposeError, Role};

fn add_voter(id: u64) -> ConfChange {
    ConfChange::AddVoter {
        id,
        context: Bytes::from(format!("addr-{id}")),
    }
}

#[test]
fn a_learner_catches_up_without_voting_then_is_promoted() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    for i in 0..20u8 {
        c.node_mut(1).propose(Bytes::from(vec![i])).unwrap();
    }
    c.stabilize();
    c.add_node(config(4), Membership::default());
    c.node_mut(1)
        .propose_conf_change(ConfChange::AddLearner {
            id: 4,
            context: Bytes::from_static(b"addr-4"),
        })
        .unwrap();
    c.stabilize();
    c.tick_all(3);
    assert_eq!(c.commands(4).len(), 20, "the learner received the log");
    assert!(!c.node(1).membership().is_voter(4));
    // A learner does not count: with two voters down, nothing commits.
    c.isolate(2);
    c.isolate(3);
    let index = c.propose(1, b"needs-a-voter");
    c.stabilize();
    assert!(c.node(1).commit_index() < index);
    c.heal();
    c.tick_all(2);
    c.node_mut(1).propose_conf_change(add_voter(4)).unwrap();
    c.stabilize();
    c.tick_all(2);
    assert!(c.node(4).membership().is_voter(4));
    assert_eq!(
        c.node(4).membership().get(4).unwrap().context,
        Bytes::from_static(b"addr-4"),
        "the context given when it joined is kept"
    );
}

#[test]
fn one_change_at_a_time() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.isolate(2);
    c.isolate(3);
    let first = c.node_mut(1).propose_conf_change(add_voter(4)).unwrap();
    let err = c.node_mut(1).propose_conf_change(add_voter(5)).unwrap_err();
    assert_eq!(err, ProposeError::ChangeInProgress(first));
}

#[test]
fn a_new_leader_changes_nothing_before_committing_in_its_term() {
    let mut c = Cluster::new(3, config);
    c.isolate(2);
    c.isolate(3);
    c.pass_restart_lease(1);
    c.node_mut(1).campaign_now();
    c.heal();
    c.drive_all();
    // Deliver only until n1 is leader, before its blank commits.
    while c.node(1).role() != Role::Leader && c.deliver_one() {}
    assert_eq!(c.node(1).role(), Role::Leader);
    let err = c.node_mut(1).propose_conf_change(add_voter(4)).unwrap_err();
    assert_eq!(err, ProposeError::NotReady);
}

#[test]
fn a_configuration_is_used_as_soon_as_it_is_appended() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.isolate(2);
    c.isolate(3);
    c.node_mut(1)
        .propose_conf_change(ConfChange::Remove { id: 3 })
        .unwrap();
    assert_eq!(
        c.node(1).membership().voters().collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn a_removed_follower_leaves_and_the_rest_go_on() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.node_mut(1)
        .propose_conf_change(ConfChange::Remove { id: 3 })
        .unwrap();
    c.stabilize();
    c.isolate(3);
    let index = c.propose(1, b"two-voters");
    c.stabilize();
    assert!(
        c.node(1).commit_index() >= index,
        "a majority of {{1, 2}} commits"
    );
    c.tick(3, 500);
    assert_eq!(
        c.node(3).metrics().pre_elections,
        0,
        "a removed node stays quiet"
    );
}

#[test]
fn a_removed_leader_steps_down_and_hands_over() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.node_mut(1)
        .propose_conf_change(ConfChange::Remove { id: 1 })
        .unwrap();
    c.stabilize();
    assert_ne!(c.node(1).role(), Role::Leader);
    let leader = c.node(2).leader().expect("a successor took over at once");
    assert!(leader == 2 || leader == 3);
    assert_eq!(c.node(3).leader(), Some(leader));
}

#[test]
fn removing_all_but_one_leaves_that_one_leading() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    for id in [2, 3] {
        c.node_mut(1)
            .propose_conf_change(ConfChange::Remove { id })
            .unwrap();
        c.stabilize();
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).membership().voters().collect::<Vec<_>>(), vec![1]);
    let index = c.propose(1, b"alone");
    c.stabilize();
    assert!(c.node(1).commit_index() >= index);
    let err = c
        .node_mut(1)
        .propose_conf_change(ConfChange::Remove { id: 1 })
        .unwrap_err();
    assert!(err.to_string().contains("without voters"), "{err}");
}

/// A leader that removed itself and crashed before the change committed
/// may hold the only log that can win: it must still campaign (found by
/// the simulator, seed 792).
#[test]
fn a_node_removed_by_an_uncommitted_change_may_still_campaign() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.node_mut(1)
        .propose_conf_change(ConfChange::Remove { id: 2 })
        .unwrap();
    c.stabilize();
    // n1 removes itself; only n1 gets the entry.
    c.isolate(1);
    c.node_mut(1)
        .propose_conf_change(ConfChange::Remove { id: 1 })
        .unwrap();
    c.drive(1);
    c.restart(1);
    assert!(!c.node(1).membership().is_voter(1));
    c.heal();
    c.isolate(2);
    c.tick_all(60);
    // n3 (the only voter of the new configuration) ends up leading, after n1
    // won with n3's vote, committed the change and handed over.
    assert_eq!(c.node(3).role(), Role::Leader);
    assert_eq!(c.node(3).membership().voters().collect::<Vec<_>>(), vec![3]);
}
