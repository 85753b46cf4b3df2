//! raft-kv-chaos on real raft-kv processes: every nemesis (kills, pauses,
//! partitions, flaky and delayed packets, clock skew, disk faults,
//! membership changes, several faults at once) for a few seconds on 3
//! nodes must pass (linearizable histories, every node converged, a write
//! soon after the last heal, nodes whose disk failed stopped); the same
//! with TLS between the nodes; and the bug modes must be caught: clients
//! reading with READONLY while the leader is cut off (stale reads), and
//! leaders that acknowledge writes once their own log holds them, before a
//! majority does, while leaders are killed (lost acknowledged writes), a
//! bug that must go unnoticed while no leader is lost.
//!
//! Partitions, flaky and delayed packets need root, iproute2 and nftables, the full
//! disk root (a tmpfs), clock skew libfaketime: without them those
//! nemeses are skipped, saying why, unless `RAFT_KV_REQUIRE_ROOT_TESTS` is
//! set. `RAFT_KV_CHAOS_SEED` picks the seed (printed either way).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use raft_kv_chaos::{cluster, net, Config, Length, Nemesis, NetChoice, Report};

/// One run at a time: they share two cores and the namespace prefix.
static SERIAL: Mutex<()> = Mutex::new(());

fn seed() -> u64 {
    std::env::var("RAFT_KV_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn required() -> bool {
    std::env::var_os("RAFT_KV_REQUIRE_ROOT_TESTS").is_some()
}

/// Whether partitions can run here; panics if they must and cannot.
fn namespaces_usable() -> bool {
    let Some(why) = net::unavailable() else {
        return true;
    };
    if required() {
        panic!("partitions need network namespaces, unavailable: {why}");
    }
    eprintln!("partition nemeses skipped: network namespaces unavailable ({why})");
    false
}

/// Whether a program is on the PATH.
fn on_path(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok()
}

/// The nemeses this machine can run; panics if `RAFT_KV_REQUIRE_ROOT_TESTS`
/// is set and one cannot.
fn runnable() -> (Vec<Nemesis>, NetChoice) {
    let namespaces = namespaces_usable();
    let faketime = Path::new(cluster::LIBFAKETIME).exists();
    let nft = on_path("nft");
    if required() {
        assert!(faketime, "clock skew needs {}", cluster::LIBFAKETIME);
        assert!(nft, "flaky and delayed packets need nft (nftables)");
    }
    let nemeses = Nemesis::ALL
        .into_iter()
        .filter(|n| namespaces || !(n.needs_namespaces() || *n == Nemesis::DiskFull))
        .filter(|n| faketime || *n != Nemesis::ClockSkew)
        .filter(|n| nft || !matches!(n, Nemesis::FlakyPackets | Nemesis::Delay))
        .collect();
    let net = if namespaces {
        NetChoice::Namespaces
    } else {
        NetChoice::Loopback
    };
    (nemeses, net)
}

fn config(nemeses: Vec<Nemesis>, net: NetChoice, dir: &Path) -> Config {
    Config {
        bin: env!("CARGO_BIN_EXE_raft-kv").into(),
        nodes: 3,
        clients: 4,
        keys: 3,
        seed: seed(),
        duration: Length::Each(Duration::from_secs(4)),
        liveness_bound: Duration::from_secs(10),
        readonly_reads: false,
        early_ack: false,
        ignore_watch: false,
        relays: false,
        tls: false,
        net,
        nemeses,
        dir: dir.to_path_buf(),
        plots: None,
        keep: false,
    }
}

fn run(change: impl FnOnce(&mut Config), nemeses: Vec<Nemesis>, net: NetChoice) -> Vec<Report> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::Builder::new()
        .prefix("raft-kv-chaos-test-")
        .tempdir()
        .expect("make a temporary directory");
    let mut config = config(nemeses, net, dir.path());
    change(&mut config);
    raft_kv_chaos::run(&config).unwrap_or_else(|e| panic!("the run could not proceed: {e}"))
}

fn assert_all_passed(nemeses: &[Nemesis], reports: &[Report]) {
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
    for r in reports {
        assert!(
            !r.faults.is_empty(),
            "{} injected no fault",
            r.nemesis.name()
        );
    }
}

#[test]
fn every_nemesis_leaves_histories_linearizable_and_nodes_converged() {
    let (nemeses, net) = runnable();
    let reports = run(|_| {}, nemeses.clone(), net);
    assert_all_passed(&nemeses, &reports);
}

#[test]
fn kills_and_membership_changes_pass_with_tls_between_the_nodes() {
    let (_, net) = runnable();
    let nemeses = vec![Nemesis::KillLeader, Nemesis::Membership];
    let reports = run(|c| c.tls = true, nemeses.clone(), net);
    assert_all_passed(&nemeses, &reports);
}

#[test]
fn readonly_reads_with_the_leader_cut_off_are_reported_not_linearizable() {
    if !namespaces_usable() {
        return;
    }
    let reports = run(
        |c| c.readonly_reads = true,
        vec![Nemesis::PartitionLeader],
        NetChoice::Namespaces,
    );
    let report = &reports[0];
    assert!(
        !report.passed() && report.verdict.starts_with("not linearizable"),
        "stale reads went unnoticed: {report}"
    );
}

#[test]
fn writes_acknowledged_before_a_majority_has_them_are_lost_when_the_leader_is_killed() {
    let (_, net) = runnable();
    // Without a fault the bug does no harm: reads see every write
    // acknowledged before them.
    let reports = run(|c| c.early_ack = true, vec![Nemesis::None], net);
    assert_all_passed_without_faults(&reports);
    // Killing leaders loses the writes they acknowledged in their last
    // 100 ms; a lost write shows only if a read of its key comes before
    // the next write to it, which on two loaded cores does not happen in
    // every schedule (seed 1 once ran 301 operations through five kills
    // without one). Up to three schedules of six clients and ten seconds
    // each: one of them must catch it.
    let mut missed = Vec::new();
    for attempt in 0..3 {
        let reports = run(
            |c| {
                c.early_ack = true;
                c.clients = 6;
                c.seed = seed() + attempt;
                c.duration = Length::Each(Duration::from_secs(10));
            },
            vec![Nemesis::KillLeader],
            net,
        );
        let report = &reports[0];
        if !report.passed() && report.verdict.starts_with("not linearizable") {
            return;
        }
        missed.push(format!("seed {}: {report}", seed() + attempt));
    }
    panic!(
        "writes acknowledged before a majority had them went unnoticed when leaders were killed, in every schedule tried:\n{}",
        missed.join("\n")
    );
}

#[test]
fn an_exec_that_ignores_watched_keys_is_reported_not_linearizable() {
    let (_, net) = runnable();
    // No fault needed: the clients' WATCH/MULTI/EXEC CASes race with the
    // other clients' writes of the same keys.
    let reports = run(|c| c.ignore_watch = true, vec![Nemesis::None], net);
    let report = &reports[0];
    assert!(
        report.transactions > 0
            && !report.passed()
            && report.verdict.starts_with("not linearizable"),
        "an EXEC that ignored a changed watched key went unnoticed: {report}"
    );
}

fn assert_all_passed_without_faults(reports: &[Report]) {
    let report = &reports[0];
    assert!(
        report.passed() && report.faults.is_empty() && report.ok > 50,
        "the early-ack bug broke a cluster without faults: {report}"
    );
}
