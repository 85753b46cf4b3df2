//! Log replication and commitment, one test per rule (Raft paper 5.3 and
//! 5.4.2, thesis 10.2.1).

mod common;

use bytes::Bytes;
use common::{config, Cluster, CLUSTER};
#[cfg(feature = "bug-injection")]
use raft_core::bugs::Bug;
use raft_core::bugs::BugSet;
use raft_core::{
    Append, AppendOutcome, Body, Config, Entry, EntryPayload, Message, ProposeError, Role,
};

fn cmd(i: u64) -> Bytes {
    Bytes::from(format!("cmd{i}"))
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        payload: EntryPayload::Command(Bytes::from(format!("{index}/{term}"))),
    }
}

fn append(
    from: u64,
    to: u64,
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
) -> Message {
    Message {
        cluster: CLUSTER,
        from,
        to,
        term,
        body: Body::Append(Append {
            prev_index: prev.0,
            prev_term: prev.1,
            entries,
            commit,
            round: 0,
        }),
    }
}

/// The outcome of the single append response in `id`'s next Ready.
fn append_outcome(c: &mut Cluster, id: u64) -> AppendOutcome {
    let rd = c.node_mut(id).ready();
    let outcomes: Vec<AppendOutcome> = rd
        .messages_after_persist
        .iter()
        .filter_map(|m| match &m.body {
            Body::AppendResponse(r) => Some(r.outcome),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes.len(), 1, "{rd:?}");
    outcomes[0]
}

#[test]
fn a_committed_command_is_applied_everywhere_in_order() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    for i in 0..5 {
        c.node_mut(1).propose(cmd(i)).unwrap();
    }
    c.stabilize();
    let expected: Vec<Bytes> = (0..5).map(cmd).collect();
    for id in 1..=3 {
        assert_eq!(c.commands(id), expected, "n{id}");
    }
}

#[test]
fn proposals_made_together_travel_in_one_append() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    let before = c.count_delivered(|b| matches!(b, Body::Append(a) if !a.entries.is_empty()));
    for i in 0..100 {
        c.node_mut(1).propose(cmd(i)).unwrap();
    }
    c.stabilize();
    let appends =
        c.count_delivered(|b| matches!(b, Body::Append(a) if !a.entries.is_empty())) - before;
    assert_eq!(appends, 2, "one batch to each follower");
    assert_eq!(c.commands(3).len(), 100);
}

#[test]
fn appends_respect_the_size_bounds_and_the_inflight_window() {
    let mut c = Cluster::new(3, |id| Config {
        max_append_entries: 4,
        max_inflight_appends: 2,
        ..config(id)
    });
    c.elect(1);
    for i in 0..40 {
        c.node_mut(1).propose(cmd(i)).unwrap();
    }
    let rd = c.node_mut(1).ready();
    let to2: Vec<usize> = rd
        .messages
        .iter()
        .filter(|m| m.to == 2)
        .filter_map(|m| match &m.body {
            Body::Append(a) => Some(a.entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        to2,
        vec![4, 4],
        "two appends of four entries, then wait for acks"
    );
}

#[test]
fn a_follower_rejects_an_append_whose_previous_entry_does_not_match() {
    let mut c = Cluster::new(3, config);
    c.pass_restart_lease(2);
    let r = c.node_mut(2);
    r.step(append(1, 2, 2, (0, 0), vec![entry(1, 1), entry(2, 1)], 0))
        .unwrap();
    let _ = r.ready();
    r.step(append(1, 2, 2, (2, 2), vec![entry(3, 2)], 0))
        .unwrap();
    match append_outcome(&mut c, 2) {
        AppendOutcome::Rejected {
            prev_index,
            last_index,
            conflict,
        } => {
            assert_eq!((prev_index, last_index), (2, 2));
            assert_eq!(
                conflict,
                Some((1, 1)),
                "term 1 starts at index 1: skip it whole"
            );
        }
        other => panic!("accepted a mismatched append: {other:?}"),
    }
    assert_eq!(c.node(2).last_index(), 2);
}

#[test]
fn a_follower_truncates_only_from_the_first_conflicting_entry() {
    let mut c = Cluster::new(3, config);
    let r = c.node_mut(2);
    r.step(append(
        1,
        2,
        1,
        (0, 0),
        vec![entry(1, 1), entry(2, 1), entry(3, 1)],
        0,
    ))
    .unwrap();
    let _ = r.ready();
    r.step(append(3, 2, 2, (1, 1), vec![entry(2, 1), entry(3, 2)], 0))
        .unwrap();
    let rd = c.node_mut(2).ready();
    assert_eq!(rd.truncate_from, Some(3));
    assert_eq!(rd.entries, vec![entry(3, 2)]);
}

#[test]
fn a_stale_append_never_cuts_the_log() {
    let mut c = Cluster::new(3, config);
    let r = c.node_mut(2);
    r.step(append(
        1,
        2,
        1,
        (0, 0),
        vec![entry(1, 1), entry(2, 1), entry(3, 1)],
        0,
    ))
    .unwrap();
    let _ = r.ready();
    // A delayed copy of an earlier, shorter append.
    r.step(append(1, 2, 1, (0, 0), vec![entry(1, 1)], 0))
        .unwrap();
    assert_eq!(
        append_outcome(&mut c, 2),
        AppendOutcome::Accepted { match_index: 1 }
    );
    assert_eq!(c.node(2).last_index(), 3, "entries 2 and 3 are kept");
}

#[test]
fn a_leader_commits_an_entry_only_once_a_majority_holds_it_durably() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.isolate(2);
    c.isolate(3);
    let index = c.propose(1, b"x");
    c.stabilize();
    assert!(c.node(1).commit_index() < index, "no majority, no commit");
    c.heal();
    c.tick_all(3);
    assert_eq!(c.node(1).commit_index(), index);
}

#[test]
fn the_leader_counts_itself_only_once_its_own_write_is_durable() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.isolate(3);
    c.report_persisted = false;
    let index = c.propose(1, b"x");
    c.stabilize();
    assert!(
        c.node(1).commit_index() < index,
        "one follower acked, but the leader's own disk has not confirmed"
    );
    let term = c.node(1).term();
    c.node_mut(1).on_persisted(index, term);
    assert_eq!(c.node(1).commit_index(), index);
}

/// Raft paper Figure 8: a leader must not commit an entry of an earlier
/// term by counting replicas, even once a majority holds it; it commits
/// it only together with an entry of its own term.
fn figure_8(bugs: BugSet) -> Result<(), String> {
    // n1 and n2 hold entry 2 of term 2 (written by n1, then leader of term
    // 2, before it crashed); n3..n5 only entry 1. n4 and n5 stay down.
    let mut c = Cluster::with_logs(&[&[1, 2], &[1, 2], &[1], &[1], &[1]], |id| Config {
        max_append_entries: 1,
        bugs,
        ..config(id)
    });
    c.isolate(4);
    c.isolate(5);
    c.pass_restart_lease(1);
    c.node_mut(1).campaign_now();
    c.drive(1);
    let mut saw_old_entry_on_majority = false;
    while c.deliver_one() {
        let n1 = c.node(1);
        if n1.progress(3).is_some_and(|p| p.match_index == 2) {
            // n1, n2 and n3 hold entry 2: a majority of five.
            saw_old_entry_on_majority = true;
            if n1.commit_index() >= 2 {
                return Err("committed an old-term entry by counting".into());
            }
        }
    }
    assert_eq!(c.node(1).term(), 3);
    assert!(
        saw_old_entry_on_majority,
        "the test must reach the Figure 8 state"
    );
    assert_eq!(
        c.node(1).commit_index(),
        3,
        "the blank of term 3 commits both"
    );
    Ok(())
}

#[test]
fn figure_8_an_old_term_entry_is_not_committed_by_counting() {
    figure_8(BugSet::default()).unwrap();
}

#[cfg(feature = "bug-injection")]
#[test]
fn figure_8_test_catches_the_bug() {
    let err = figure_8(BugSet::only(Bug::CommitOldTermByCount)).unwrap_err();
    assert!(err.contains("old-term"), "{err}");
}

#[test]
fn a_far_behind_follower_catches_up_in_few_round_trips() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    c.isolate(3);
    for i in 0..200 {
        c.node_mut(1).propose(cmd(i)).unwrap();
    }
    c.stabilize();
    c.heal();
    let before = c.count_delivered(|b| matches!(b, Body::AppendResponse(r) if matches!(r.outcome, AppendOutcome::Rejected { .. })));
    c.tick_all(3);
    let rejections = c.count_delivered(|b| matches!(b, Body::AppendResponse(r) if matches!(r.outcome, AppendOutcome::Rejected { .. }))) - before;
    assert!(rejections <= 2, "{rejections} rejections");
    assert_eq!(c.commands(3).len(), 200);
}

#[test]
fn proposals_are_refused_beyond_the_uncommitted_limit() {
    let mut c = Cluster::new(3, |id| Config {
        max_uncommitted_bytes: 1_000,
        ..config(id)
    });
    c.elect(1);
    c.isolate(2);
    c.isolate(3);
    let mut refused = None;
    for i in 0..100 {
        if let Err(e) = c.node_mut(1).propose(Bytes::from(vec![i as u8; 64])) {
            refused = Some(e);
            break;
        }
    }
    assert!(
        matches!(refused, Some(ProposeError::Backpressure { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_follower_refuses_proposals_and_names_the_leader() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    let err = c.node_mut(2).propose(cmd(0)).unwrap_err();
    assert_eq!(err, ProposeError::NotLeader { leader: Some(1) });
    assert_eq!(c.node(2).role(), Role::Follower);
}

#[test]
fn a_restarted_node_recovers_its_log_and_commit() {
    let mut c = Cluster::new(3, config);
    c.elect(1);
    for i in 0..10 {
        c.node_mut(1).propose(cmd(i)).unwrap();
    }
    c.stabilize();
    c.tick_all(2);
    let commit = c.node(2).commit_index();
    c.restart(2);
    assert_eq!(
        c.node(2).commit_index(),
        commit,
        "the commit index is durable"
    );
    c.drive(2);
    assert_eq!(
        c.commands(2).len(),
        10,
        "re-applied from the log after restart"
    );
}
