//! A seed is a complete description of a run: replaying it gives the same
//! run, event for event.

use raft_core::bugs::{Bug, BugSet};
use raft_sim::run::run_seed;

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17, 42] {
        let a = run_seed(seed, BugSet::default(), None, false);
        let b = run_seed(seed, BugSet::default(), None, false);
        assert!(a.violation.is_none(), "seed {seed}: {:?}", a.violation);
        assert_eq!(a.events, b.events, "seed {seed}");
        assert_eq!(a.ops_completed, b.ops_completed, "seed {seed}");
        assert_eq!(a.recovery_us, b.recovery_us, "seed {seed}");
        assert!(a.ops_completed > 0, "seed {seed}: the clients got answers");
    }
}

#[test]
fn an_injected_bug_is_reported_with_its_seed_and_trace() {
    let bug = Bug::AcceptMismatchedPrev;
    let caught = (0..50)
        .map(|seed| run_seed(seed, BugSet::only(bug), Some(bug), false))
        .find(|r| r.violation.is_some())
        .expect("caught within 50 seeds");
    let v = caught.violation.expect("found above");
    assert!(!v.invariant.is_empty() && !v.detail.is_empty());
    assert!(caught.trace.contains("<-"), "the trace shows deliveries");
}
