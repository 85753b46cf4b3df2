//! Runs every named scenario (the MIT 6.5840 Raft and kvraft tests ported
//! to the simulator) over a few seeds: one test per scenario, so a failure
//! names it. Replay a failing seed with
//! `raft-sim scenario NAME --start SEED --seeds 1`.

use raft_core::bugs::{Bug, BugSet};
use raft_sim::scenarios::{find, run_one, run_one_with, SCENARIOS};

/// Seeds per scenario: the whole file takes a few seconds in release.
const SEEDS: u64 = if cfg!(debug_assertions) { 3 } else { 10 };

fn check(name: &str) {
    let scenario = find(name).unwrap_or_else(|| panic!("no scenario named {name}"));
    let mut failures = Vec::new();
    for seed in 0..SEEDS {
        if let Err(e) = run_one(scenario, seed).result {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "scenario {name} failed on {} of {SEEDS} seeds (replay: raft-sim scenario {name} --start SEED --seeds 1)\n{}",
        failures.len(),
        failures.join("\n")
    );
}

macro_rules! scenario_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check($name);
            }
        )*

        /// The scenarios tested above.
        const TESTED: &[&str] = &[$($name),*];
    };
}

scenario_tests! {
    initial_election => "InitialElection",
    re_election => "ReElection",
    many_elections => "ManyElections",
    basic_agree => "BasicAgree",
    follower_failure => "FollowerFailure",
    leader_failure => "LeaderFailure",
    fail_agree => "FailAgree",
    fail_no_agree => "FailNoAgree",
    concurrent_starts => "ConcurrentStarts",
    rejoin => "Rejoin",
    backup => "Backup",
    count => "Count",
    persist1 => "Persist1",
    persist2 => "Persist2",
    persist3 => "Persist3",
    figure8 => "Figure8",
    figure8_unreliable => "Figure8Unreliable",
    reliable_churn => "ReliableChurn",
    unreliable_churn => "UnreliableChurn",
    snapshot_basic => "SnapshotBasic",
    snapshot_install => "SnapshotInstall",
    snapshot_install_unreliable => "SnapshotInstallUnreliable",
    snapshot_install_crash => "SnapshotInstallCrash",
    snapshot_install_uncrash => "SnapshotInstallUnCrash",
    snapshot_all_crash => "SnapshotAllCrash",
    snapshot_init => "SnapshotInit",
    kv_basic => "Basic",
    kv_concurrent => "Concurrent",
    kv_unreliable => "Unreliable",
    kv_one_partition => "OnePartition",
    kv_many_partitions_one_client => "ManyPartitionsOneClient",
    kv_many_partitions_many_clients => "ManyPartitionsManyClients",
    kv_persist_one_client => "PersistOneClient",
    kv_persist_concurrent => "PersistConcurrent",
    kv_persist_partition => "PersistPartition",
    kv_persist_partition_unreliable => "PersistPartitionUnreliable",
    kv_snapshot_unreliable_recover_partition => "SnapshotUnreliableRecoverConcurrentPartition",
}

#[test]
fn every_scenario_is_tested() {
    let untested: Vec<&str> = SCENARIOS
        .iter()
        .map(|s| s.name)
        .filter(|n| !TESTED.contains(n))
        .collect();
    assert!(
        untested.is_empty(),
        "scenarios without a test: {untested:?}"
    );
}

#[test]
fn count_reports_its_request_figures() {
    let report = run_one(find("Count").expect("registered"), 0)
        .result
        .expect("Count passes on seed 0");
    let election = report.figure("election_requests").expect("measured");
    let agreement = report.figure("agreement_requests").expect("measured");
    let idle = report.figure("idle_requests").expect("measured");
    assert!((1..=30).contains(&election), "{election}");
    assert!(agreement <= 42, "{agreement}");
    assert!(idle <= 60, "{idle}");
}

/// The scenarios' assertions can fail: with a known bug switched on in the
/// core, the scenarios that exercise it catch it.
#[test]
fn scenarios_catch_injected_bugs() {
    let cases = [
        ("FailNoAgree", Bug::ApplyBeforeCommit),
        ("Persist2", Bug::VoteWithoutLogCheck),
        ("SnapshotInstallUnreliable", Bug::SnapshotDropsUncommitted),
        ("Rejoin", Bug::AcceptMismatchedPrev),
    ];
    for (name, bug) in cases {
        let scenario = find(name).expect("registered");
        let caught = (0..SEEDS).any(|seed| {
            run_one_with(scenario, seed, BugSet::only(bug))
                .result
                .is_err()
        });
        assert!(caught, "{name} did not notice {}", bug.name());
    }
}
