//! Named scenarios: the tests of MIT 6.5840's Raft lab (`raft/test_test.go`,
//! 3A-3D) and key-value lab (`kvraft/test_test.go`, 4A/4B), ported to the
//! simulator.
//!
//! Each scenario is a function of a seed that builds a [`crate::Sim`] with
//! MIT-like timing ([`support::mit_config`]), drives it the way the MIT
//! test drives its servers (disconnect and reconnect, crash and restart,
//! proposals, clients), and asserts what the MIT test asserts. It also
//! fails as soon as any of the simulator's invariant checkers fires, at any
//! step. A passing scenario returns the figures it measured.
//!
//! ```text
//! raft-sim scenario list                          the scenarios
//! raft-sim scenario NAME [--seeds N] [--start S]  one scenario over N seeds (default 20)
//! raft-sim scenario all [--seeds N]               every scenario, one line each
//! raft-sim scenario NAME|all --inject BUG          with a known core bug: which scenarios catch it
//! ```

mod clerk;
mod kv_tests;
mod persist_tests;
mod raft_tests;
mod snapshot_tests;
pub mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use raft_core::bugs::{Bug, BugSet};

pub use clerk::{Clerk, Request};
pub use support::{ScenarioReport, Tester};

/// A scenario: its name, the MIT test it ports, and the function that runs
/// it for one seed.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The name used on the command line.
    pub name: &'static str,
    /// The MIT test it ports.
    pub mit: &'static str,
    /// What it checks, in one line.
    pub what: &'static str,
    /// Runs the scenario for one seed.
    pub run: fn(u64) -> Result<ScenarioReport, String>,
}

macro_rules! scenario {
    ($name:literal, $mit:literal, $what:literal, $run:path) => {
        Scenario {
            name: $name,
            mit: $mit,
            what: $what,
            run: $run,
        }
    };
}

/// Every scenario, in MIT's order.
pub const SCENARIOS: &[Scenario] = &[
    scenario!(
        "InitialElection",
        "TestInitialElection3A",
        "a leader is elected; the term holds with no failure",
        raft_tests::initial_election
    ),
    scenario!(
        "ReElection",
        "TestReElection3A",
        "leader lost -> new leader; no quorum -> no leader",
        raft_tests::re_election
    ),
    scenario!(
        "ManyElections",
        "TestManyElections3A",
        "7 servers, 3 random disconnected: one leader",
        raft_tests::many_elections
    ),
    scenario!(
        "BasicAgree",
        "TestBasicAgree3B",
        "3 commands committed everywhere at the expected index",
        raft_tests::basic_agree
    ),
    scenario!(
        "FollowerFailure",
        "TestFollowerFailure3B",
        "agreement with a follower gone; none with both",
        raft_tests::follower_failure
    ),
    scenario!(
        "LeaderFailure",
        "TestLeaderFailure3B",
        "new leaders agree; no agreement without a majority",
        raft_tests::leader_failure
    ),
    scenario!(
        "FailAgree",
        "TestFailAgree3B",
        "a reconnected follower catches up and agrees",
        raft_tests::fail_agree
    ),
    scenario!(
        "FailNoAgree",
        "TestFailNoAgree3B",
        "3 of 5 followers gone: nothing commits; then it does",
        raft_tests::fail_no_agree
    ),
    scenario!(
        "ConcurrentStarts",
        "TestConcurrentStarts3B",
        "5 simultaneous proposals all commit",
        raft_tests::concurrent_starts
    ),
    scenario!(
        "Rejoin",
        "TestRejoin3B",
        "a partitioned leader's stale entries are replaced",
        raft_tests::rejoin
    ),
    scenario!(
        "Backup",
        "TestBackup3B",
        "a leader backs up quickly over 50 conflicting entries",
        raft_tests::backup
    ),
    scenario!(
        "Count",
        "TestCount3B",
        "requests: <=30 to elect, <=42 for 10 commands, <=60 idle/s",
        raft_tests::count
    ),
    scenario!(
        "Persist1",
        "TestPersist13C",
        "committed entries survive crashes of all and of leaders",
        persist_tests::persist1
    ),
    scenario!(
        "Persist2",
        "TestPersist23C",
        "5 rounds of crashing majorities; entries survive",
        persist_tests::persist2
    ),
    scenario!(
        "Persist3",
        "TestPersist33C",
        "a partitioned leader and follower crash; leader restarts",
        persist_tests::persist3
    ),
    scenario!(
        "Figure8",
        "TestFigure83C",
        "1000 rounds of leader crashes; all agree in the end",
        persist_tests::figure8
    ),
    scenario!(
        "Figure8Unreliable",
        "TestFigure8Unreliable3C",
        "Figure 8 with loss and long reordering",
        persist_tests::figure8_unreliable
    ),
    scenario!(
        "ReliableChurn",
        "TestReliableChurn3C",
        "random crash/restart/disconnect with clients",
        persist_tests::reliable_churn
    ),
    scenario!(
        "UnreliableChurn",
        "TestUnreliableChurn3C",
        "churn on an unreliable network",
        persist_tests::unreliable_churn
    ),
    scenario!(
        "SnapshotBasic",
        "TestSnapshotBasic3D",
        "snapshots keep the log short",
        snapshot_tests::snapshot_basic
    ),
    scenario!(
        "SnapshotInstall",
        "TestSnapshotInstall3D",
        "disconnected followers catch up by snapshot",
        snapshot_tests::snapshot_install
    ),
    scenario!(
        "SnapshotInstallUnreliable",
        "TestSnapshotInstallUnreliable3D",
        "the same, unreliable network",
        snapshot_tests::snapshot_install_unreliable
    ),
    scenario!(
        "SnapshotInstallCrash",
        "TestSnapshotInstallCrash3D",
        "crashed followers catch up by snapshot",
        snapshot_tests::snapshot_install_crash
    ),
    scenario!(
        "SnapshotInstallUnCrash",
        "TestSnapshotInstallUnCrash3D",
        "the same, unreliable network",
        snapshot_tests::snapshot_install_uncrash
    ),
    scenario!(
        "SnapshotAllCrash",
        "TestSnapshotAllCrash3D",
        "all crash and restart from snapshot + log tail",
        snapshot_tests::snapshot_all_crash
    ),
    scenario!(
        "SnapshotInit",
        "TestSnapshotInit3D",
        "state written after a snapshot restore survives",
        snapshot_tests::snapshot_init
    ),
    scenario!(
        "Basic",
        "TestBasic4A",
        "kv: one client, no faults, linearizable",
        kv_tests::basic
    ),
    scenario!(
        "Concurrent",
        "TestConcurrent4A",
        "kv: five clients, linearizable",
        kv_tests::concurrent
    ),
    scenario!(
        "Unreliable",
        "TestUnreliable4A",
        "kv: five clients, unreliable network",
        kv_tests::unreliable
    ),
    scenario!(
        "OnePartition",
        "TestOnePartition4A",
        "kv: majority progresses, minority waits for heal",
        kv_tests::one_partition
    ),
    scenario!(
        "ManyPartitionsOneClient",
        "TestManyPartitionsOneClient4A",
        "kv: one client, random partitions",
        kv_tests::many_partitions_one_client
    ),
    scenario!(
        "ManyPartitionsManyClients",
        "TestManyPartitionsManyClients4A",
        "kv: five clients, random partitions",
        kv_tests::many_partitions_many_clients
    ),
    scenario!(
        "PersistOneClient",
        "TestPersistOneClient4A",
        "kv: one client, all servers crash each round",
        kv_tests::persist_one_client
    ),
    scenario!(
        "PersistConcurrent",
        "TestPersistConcurrent4A",
        "kv: five clients, all servers crash each round",
        kv_tests::persist_concurrent
    ),
    scenario!(
        "PersistPartition",
        "TestPersistPartition4A",
        "kv: five clients, partitions and crashes",
        kv_tests::persist_partition
    ),
    scenario!(
        "PersistPartitionUnreliable",
        "TestPersistPartitionUnreliable4A",
        "kv: partitions, crashes, unreliable net",
        kv_tests::persist_partition_unreliable
    ),
    scenario!(
        "SnapshotUnreliableRecoverConcurrentPartition",
        "TestSnapshotUnreliableRecoverConcurrentPartition4B",
        "kv: the same with snapshots",
        kv_tests::snapshot_unreliable_recover_partition
    ),
];

/// The scenario called `name` (or named after MIT test `name`), ignoring case.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name) || s.mit.eq_ignore_ascii_case(name))
}

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// The report, or why the scenario failed.
    pub result: Result<ScenarioReport, String>,
    /// Wall-clock time taken.
    pub wall: Duration,
}

/// Runs `scenario` for one seed; a panic counts as a failure.
pub fn run_one(scenario: &Scenario, seed: u64) -> SeedRun {
    run_one_with(scenario, seed, BugSet::default())
}

/// Runs `scenario` for one seed with `bugs` switched on in the core.
pub fn run_one_with(scenario: &Scenario, seed: u64, bugs: BugSet) -> SeedRun {
    let began = Instant::now();
    let run = scenario.run;
    let result = std::panic::catch_unwind(move || support::with_bugs(bugs, || run(seed)));
    let result = result.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("panicked: {msg}"))
    });
    SeedRun {
        seed,
        result,
        wall: began.elapsed(),
    }
}

/// Runs `scenario` for seeds `start..start + count` on `threads` threads,
/// with `bugs` switched on; the results are sorted by seed.
pub fn run_seeds(
    scenario: &Scenario,
    start: u64,
    count: u64,
    threads: usize,
    bugs: BugSet,
) -> Vec<SeedRun> {
    let next = AtomicU64::new(start);
    let runs = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + count {
                    return;
                }
                let r = run_one_with(scenario, seed, bugs);
                runs.lock().expect("no panics while held").push(r);
            });
        }
    });
    let mut runs = runs.into_inner().expect("threads joined");
    runs.sort_by_key(|r| r.seed);
    runs
}

/// One line: the scenario, seeds passed, and each figure's range over the
/// passing seeds.
pub fn summary_line(scenario: &Scenario, runs: &[SeedRun]) -> String {
    let passed: Vec<&ScenarioReport> = runs.iter().filter_map(|r| r.result.as_ref().ok()).collect();
    let mut figures: Vec<(&'static str, u64, u64)> = Vec::new();
    for report in &passed {
        for &(name, v) in &report.figures {
            match figures.iter_mut().find(|(n, _, _)| *n == name) {
                Some((_, lo, hi)) => {
                    *lo = (*lo).min(v);
                    *hi = (*hi).max(v);
                }
                None => figures.push((name, v, v)),
            }
        }
    }
    let shown: Vec<String> = figures
        .iter()
        .map(|&(n, lo, hi)| {
            if lo == hi {
                format!("{n} {lo}")
            } else {
                format!("{n} {lo}..{hi}")
            }
        })
        .collect();
    let wall: f64 = runs.iter().map(|r| r.wall.as_secs_f64()).sum();
    format!(
        "{:<28} {:>3}/{:<3} seeds passed  {:>6.2}s  {}",
        scenario.name,
        passed.len(),
        runs.len(),
        wall,
        shown.join(", ")
    )
}

struct Options {
    target: Option<String>,
    seeds: u64,
    start: u64,
    threads: usize,
    inject: Option<Bug>,
}

/// Reads `--seeds`, `--start`, `--threads` and `--inject` from `args`, or
/// else from the process's own arguments (the top-level parser may have
/// taken them).
fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        target: None,
        seeds: 20,
        start: 0,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        inject: None,
    };
    let process: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| -> Result<Option<&String>, String> {
        for list in [args, &process[..]] {
            if let Some(i) = list.iter().position(|a| a == name) {
                return list
                    .get(i + 1)
                    .map(Some)
                    .ok_or(format!("{name} needs a value"));
            }
        }
        Ok(None)
    };
    let flag = |name: &str| -> Result<Option<u64>, String> {
        match value(name)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{name}: '{v}' is not a number")),
        }
    };
    if let Some(name) = value("--inject")? {
        let bug = Bug::from_name(name).ok_or(format!("unknown bug '{name}'"))?;
        o.inject = Some(bug);
    }
    if let Some(n) = flag("--seeds")? {
        o.seeds = n;
    }
    if let Some(n) = flag("--start")? {
        o.start = n;
    }
    if let Some(n) = flag("--threads")? {
        o.threads = n.max(1) as usize;
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a.starts_with("--") {
            it.next();
        } else if o.target.is_none() {
            o.target = Some(a.clone());
        }
    }
    Ok(o)
}

/// Prints the failures among `runs`, the first in full; `bug` is the bug
/// injected, if any (for the replay command).
fn print_failures(scenario: &Scenario, runs: &[&SeedRun], bug: Option<Bug>) {
    let failed: Vec<&&SeedRun> = runs.iter().filter(|r| r.result.is_err()).collect();
    let inject = bug.map_or(String::new(), |b| format!(" --inject {}", b.name()));
    for (k, r) in failed.iter().enumerate() {
        let Err(msg) = &r.result else { continue };
        println!(
            "  FAILED {} seed {}: replay with raft-sim scenario {} --start {} --seeds 1{inject}",
            scenario.name, r.seed, scenario.name, r.seed
        );
        if k == 0 {
            for line in msg.lines() {
                println!("    {line}");
            }
        } else {
            println!("    {}", msg.lines().next().unwrap_or(""));
        }
    }
}

/// Entry point of `raft-sim scenario`.
pub fn main(args: &[String]) -> ExitCode {
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let chosen: Vec<&Scenario> = match o.target.as_deref() {
        None | Some("list") => {
            println!("scenarios ({}):", SCENARIOS.len());
            for s in SCENARIOS {
                println!("  {:<46} {:<52} {}", s.name, s.mit, s.what);
            }
            return ExitCode::SUCCESS;
        }
        Some("all") => SCENARIOS.iter().collect(),
        Some(name) => match find(name) {
            Some(s) => vec![s],
            None => {
                eprintln!("unknown scenario '{name}'; try 'raft-sim scenario list'");
                return ExitCode::from(2);
            }
        },
    };
    if let Some(bug) = o.inject {
        return inject(&chosen, bug, &o);
    }
    let began = Instant::now();
    let mut failed = 0;
    for s in &chosen {
        let runs = run_seeds(s, o.start, o.seeds, o.threads, BugSet::default());
        println!("{}", summary_line(s, &runs));
        if runs.iter().any(|r| r.result.is_err()) {
            failed += 1;
            print_failures(s, &runs.iter().collect::<Vec<_>>(), None);
        }
    }
    println!(
        "{} scenarios, {} failed, seeds {}..{}, {:.1}s on {} threads",
        chosen.len(),
        failed,
        o.start,
        o.start + o.seeds,
        began.elapsed().as_secs_f64(),
        o.threads
    );
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `chosen` with `bug` switched on: each scenario that fails on some
/// seed caught it. Succeeds if some scenario did.
fn inject(chosen: &[&Scenario], bug: Bug, o: &Options) -> ExitCode {
    let mut caught = 0;
    for s in chosen {
        let runs = run_seeds(s, o.start, o.seeds, o.threads, BugSet::only(bug));
        let failed: Vec<&SeedRun> = runs.iter().filter(|r| r.result.is_err()).collect();
        match failed.first() {
            Some(first) => {
                caught += 1;
                let why = first
                    .result
                    .as_ref()
                    .err()
                    .and_then(|m| m.lines().next())
                    .unwrap_or("");
                println!(
                    "{:<28} caught {} on {}/{} seeds (seed {}: {why})",
                    s.name,
                    bug.name(),
                    failed.len(),
                    runs.len(),
                    first.seed
                );
                if chosen.len() == 1 {
                    print_failures(s, &failed[..1], Some(bug));
                }
            }
            None => println!("{:<28} did not notice {}", s.name, bug.name()),
        }
    }
    println!(
        "{} caught by {caught} of {} scenarios",
        bug.name(),
        chosen.len()
    );
    if caught > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
