//! One seeded run: a cluster shape and fault mix drawn from the seed, a
//! fault phase with clients running, a heal phase that must recover within a
//! bound (liveness), and the linearizability check of the history.

use raft_core::bugs::{Bug, BugSet};
use raft_core::ReadMode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::checker::Violation;
use crate::cluster::{Sim, SimConfig};
use crate::faults::FaultMix;
use crate::net::NetConfig;
use crate::trace::TRACE_SHOWN;

/// How long each phase of a run lasts.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Faults and clients.
    pub faults_us: u64,
    /// After healing, a write must complete within this bound.
    pub liveness_bound_us: u64,
    /// Quiet time at the end, for stragglers.
    pub settle_us: u64,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Voters at the start.
    pub voters: usize,
    /// The first broken invariant, if any.
    pub violation: Option<Violation>,
    /// The last events before the violation.
    pub trace: String,
    /// Client operations answered.
    pub ops_completed: usize,
    /// Client operations that timed out (left open).
    pub ops_timed_out: usize,
    /// Time from healing to the first write invoked after it completing.
    pub recovery_us: Option<u64>,
    /// Events simulated.
    pub events: u64,
    /// Leaders elected.
    pub elections: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Leaderships handed over because a leader's disk stalled, counted
    /// by the nodes up at the end.
    pub disk_stall_handovers: u64,
    /// One line describing the run's shape.
    pub shape: String,
}

/// The cluster, faults and phases a seed stands for.
pub fn profile(seed: u64, bugs: BugSet) -> (SimConfig, FaultMix, Phases) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5EED_F00D_5EED);
    let voters = [3, 5, 7][(seed % 3) as usize];
    let mut cfg = SimConfig::new(seed, voters);
    cfg.spares = rng.random_range(0..=2);
    cfg.skew_per_mille = rng.random_range(0..=50);
    cfg.net = if rng.random_bool(0.5) {
        NetConfig::reliable()
    } else {
        NetConfig::unreliable()
    };
    cfg.disk_delay_us = (50, rng.random_range(200..=5_000));
    cfg.clients = rng.random_range(2..=6);
    cfg.keys = rng.random_range(1..=5);
    cfg.client_timeout_us = 500_000;
    cfg.snapshot_every = [0, 8, 25, 100][rng.random_range(0..4)];
    cfg.raft.read_mode = if rng.random_bool(0.3) {
        ReadMode::Lease
    } else {
        ReadMode::ReadIndex
    };
    cfg.raft.pre_vote = rng.random_bool(0.9);
    cfg.raft.check_quorum = cfg.raft.read_mode == ReadMode::Lease || rng.random_bool(0.9);
    cfg.raft.lease_drift_ticks = 2;
    cfg.raft.max_inflight_appends = rng.random_range(1..=8);
    cfg.raft.max_append_entries = rng.random_range(1..=64);
    cfg.raft.stream_snapshots = rng.random_bool(0.5);
    cfg.bugs = bugs;
    let mut mix = FaultMix::all();
    match rng.random_range(0..10) {
        0 => mix.membership = false,
        1 => mix.crashes = false,
        2 => mix.partitions = false,
        _ => {}
    }
    mix.mean_interval_us = rng.random_range(40_000..=400_000);
    if rng.random_bool(0.25) {
        // The shape of MIT 6.5840's Figure 8 tests: leaders crash as soon
        // as they are elected.
        mix.crashes = true;
        mix.leader_crash_bias = 0.9;
        mix.mean_interval_us = 40_000;
    }
    if rng.random_bool(0.25) {
        // Now and then a disk hangs for longer than the leader's stall
        // period: leaders hand over (and come back once it returns).
        cfg.disk_stalls = Some((2, (200_000, 1_200_000)));
    }
    let phases = Phases {
        faults_us: 10_000_000,
        liveness_bound_us: 3_000_000,
        settle_us: 1_000_000,
    };
    (cfg, mix, phases)
}

/// Tunes a profile so that an injected bug has the conditions it needs
/// (snapshots for the snapshot bug, reads for the read bug, ...), the way a
/// targeted test would. The checkers are the same.
pub fn focus_on(bug: Bug, cfg: &mut SimConfig, mix: &mut FaultMix) {
    match bug {
        Bug::SnapshotDropsUncommitted => {
            cfg.snapshot_every = cfg.snapshot_every.clamp(5, 25);
            cfg.net.dup_per_mille = cfg.net.dup_per_mille.max(100);
            cfg.net.long_delay_per_mille = cfg.net.long_delay_per_mille.max(30);
            cfg.net.long_delay_max_us = cfg.net.long_delay_max_us.max(300_000);
        }
        Bug::ReadWithoutQuorum => {
            mix.partitions = true;
        }
        Bug::CommitOldTermByCount => {
            // Figure 8 needs a new leader to replicate an old entry to a
            // majority before its own no-op gets there: one entry per append.
            cfg.raft.max_append_entries = 1;
            cfg.raft.max_inflight_appends = 1;
            mix.crashes = true;
            mix.leader_crash_bias = 0.9;
            mix.mean_interval_us = 40_000;
        }
        Bug::SendBeforePersist => {
            mix.crashes = true;
            cfg.disk_delay_us = (2_000, 20_000);
        }
        _ => {}
    }
}

/// Runs `seed` with the given bugs switched on.
pub fn run_seed(seed: u64, bugs: BugSet, focus: Option<Bug>, echo: bool) -> RunReport {
    let (mut cfg, mut mix, phases) = profile(seed, bugs);
    if let Some(bug) = focus {
        focus_on(bug, &mut cfg, &mut mix);
    }
    let shape = format!(
        "{} voters + {} spares, {:?} network, skew {}‰, disk ≤{}us{}, {} clients on {} keys, snapshot every {}, {:?}, pre-vote {}, check-quorum {}",
        cfg.voters,
        cfg.spares,
        if cfg.net.drop_per_mille > 0 { "unreliable" } else { "reliable" },
        cfg.skew_per_mille,
        cfg.disk_delay_us.1,
        match cfg.disk_stalls {
            Some((pm, (a, b))) => format!(" ({pm}‰ stall {}-{} ms)", a / 1000, b / 1000),
            None => String::new(),
        },
        cfg.clients,
        cfg.keys,
        cfg.snapshot_every,
        cfg.raft.read_mode,
        cfg.raft.pre_vote,
        cfg.raft.check_quorum,
    );
    let mut sim = Sim::new(cfg);
    sim.trace.echo = echo;
    sim.start_clients();
    sim.start_faults(mix, phases.faults_us);
    sim.run_until(phases.faults_us);
    let mut recovery_us = None;
    if sim.violation.is_none() {
        let healed_at = sim.now;
        sim.heal_all();
        sim.abandon_pending_ops();
        sim.workload.watch_from = Some(healed_at);
        sim.start_clients();
        sim.run_until(healed_at + phases.liveness_bound_us);
        match sim.workload.first_write_after {
            Some(t) => recovery_us = Some(t - healed_at),
            None if sim.violation.is_none() => {
                let detail = format!(
                    "no write completed within {} ms after every fault healed",
                    phases.liveness_bound_us / 1000
                );
                sim.fail("liveness", detail);
            }
            None => {}
        }
    }
    if sim.violation.is_none() {
        sim.stop_clients();
        sim.run_for(phases.settle_us);
    }
    if sim.violation.is_none() {
        let history = sim.workload.history();
        if let Err(e) = raft_lincheck::check(&history) {
            sim.fail("linearizability", e.to_string());
        }
    }
    let trace = if sim.violation.is_some() {
        format!(
            "{}  nodes at the end:\n{}",
            sim.trace.render(TRACE_SHOWN),
            sim.describe_nodes()
        )
    } else {
        String::new()
    };
    RunReport {
        seed,
        voters: sim.cfg.voters,
        violation: sim.violation.clone(),
        trace,
        ops_completed: sim.workload.completed(),
        ops_timed_out: sim.workload.timed_out(),
        recovery_us,
        events: sim.stats.events,
        elections: sim.stats.elections_won,
        snapshots_installed: sim.stats.snapshots_installed,
        disk_stall_handovers: sim
            .nodes
            .iter()
            .filter_map(|n| n.raft.as_ref())
            .map(|r| r.metrics().disk_stall_handovers)
            .sum(),
        shape,
    }
}
