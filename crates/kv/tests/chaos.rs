//! raft-kv-chaos on real raft-kv processes: every nemesis (kills, pauses
//! and, with network namespaces, partitions) for a few seconds on 3 nodes
//! must pass (linearizable histories, every node converged, a write soon
//! after the last heal); and clients reading with READONLY while the leader
//! is cut off must be caught (stale reads are not linearizable).
//!
//! Partitions need root and iproute2: without them those nemeses are
//! skipped, saying why, unless `RAFT_KV_REQUIRE_ROOT_TESTS` is set.
//! `RAFT_KV_CHAOS_SEED` picks the seed (printed either way).

use std::sync::Mutex;
use std::time::Duration;

use raft_kv_chaos::{net, Config, Nemesis, NetChoice, Report};

/// One run at a time: they share two cores and the namespace prefix.
static SERIAL: Mutex<()> = Mutex::new(());

fn seed() -> u64 {
    std::env::var("RAFT_KV_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Whether partitions can run here; panics if they must and cannot.
fn namespaces_usable() -> bool {
    let Some(why) = net::unavailable() else {
        return true;
    };
    if std::env::var_os("RAFT_KV_REQUIRE_ROOT_TESTS").is_some() {
        panic!("partitions need network namespaces, unavailable: {why}");
    }
    eprintln!("partition nemeses skipped: network namespaces unavailable ({why})");
    false
}

fn run(nemeses: Vec<Nemesis>, readonly_reads: bool, net: NetChoice) -> Vec<Report> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::Builder::new()
        .prefix("raft-kv-chaos-")
        .tempdir()
        .expect("make a temporary directory");
    let config = Config {
        bin: env!("CARGO_BIN_EXE_raft-kv").into(),
        nodes: 3,
        clients: 4,
        keys: 3,
        seed: seed(),
        duration: Duration::from_secs(4),
        liveness_bound: Duration::from_secs(10),
        readonly_reads,
        net,
        nemeses,
        dir: dir.path().to_path_buf(),
        plots: None,
    };
    raft_kv_chaos::run(&config).unwrap_or_else(|e| panic!("the run could not proceed: {e}"))
}

#[test]
fn every_nemesis_leaves_histories_linearizable_and_nodes_converged() {
    let (nemeses, net): (Vec<Nemesis>, _) = if namespaces_usable() {
        (Nemesis::ALL.to_vec(), NetChoice::Namespaces)
    } else {
        let kills_and_pauses = Nemesis::ALL.into_iter().filter(|n| !n.needs_namespaces());
        (kills_and_pauses.collect(), NetChoice::Loopback)
    };
    let reports = run(nemeses.clone(), false, net);
    assert_eq!(reports.len(), nemeses.len(), "every nemesis ran");
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "seed {}: {} nemeses failed:\n{}",
        seed(),
        failed.len(),
        failed.join("\n")
    );
    for r in &reports {
        assert!(
            !r.faults.is_empty(),
            "{} injected no fault",
            r.nemesis.name()
        );
    }
}

#[test]
fn readonly_reads_with_the_leader_cut_off_are_reported_not_linearizable() {
    if !namespaces_usable() {
        return;
    }
    let reports = run(vec![Nemesis::PartitionLeader], true, NetChoice::Namespaces);
    let report = &reports[0];
    assert!(
        !report.passed() && report.verdict.starts_with("not linearizable"),
        "stale reads went unnoticed: {report}"
    );
}
