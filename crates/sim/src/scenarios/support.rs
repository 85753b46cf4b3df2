//! MIT 6.5840's tester (`config.go`, `tester1`) in the simulator's terms.
//!
//! A [`Tester`] wraps a [`Sim`] with what the MIT helpers need: which
//! servers are "connected" (MIT's `connected[i]`: a link is up when both
//! ends are connected), crash and restart, and the helpers the lab tests
//! are written with: [`Tester::one`], [`Tester::n_committed`],
//! [`Tester::check_one_leader`], [`Tester::check_no_leader`],
//! [`Tester::check_terms`], [`Tester::wait`].
//!
//! Every helper that lets simulated time pass checks `sim.violation`
//! afterwards: an invariant broken at any step fails the scenario at once.
//!
//! Commands: MIT's tests replicate integers. Here a command `x` is the
//! 8-byte little-endian encoding of `x`, which the key-value state machine
//! ignores (too short for `kv::Command::decode`), so raw commands and client
//! operations share one log. A committed entry is recognised by the hash of
//! its payload, which the checker records for every committed index, so the
//! helpers work just as well once the entries are compacted into snapshots.
//!
//! Timing: [`mit_config`] mirrors MIT's setting. The tester allows an
//! election one second ([`RAFT_ELECTION_TIMEOUT`]) and requires at most ten
//! heartbeats a second, so the nodes tick every 10 ms, the leader sends a
//! heartbeat every 10 ticks (100 ms: 10 per second, 20 requests a second to
//! two followers, within TestCount's 60 per idle second), and election
//! timeouts are drawn from 30..60 ticks (300-600 ms: several heartbeats
//! fit in the shortest one, and a split vote still resolves well within the
//! tester's one-second allowance). MIT's sleeps are kept as they are, in
//! simulated time.

use std::cell::Cell;
use std::collections::BTreeMap;

use bytes::Bytes;
use raft_core::bugs::BugSet;
use raft_core::{EntryPayload, LogIndex, Role, Term};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cluster::{id_of, Sim, SimConfig};
use crate::kv::payload_hash;
use crate::trace::TRACE_SHOWN;
use crate::workload::Status;

/// One millisecond of simulated time, in microseconds.
pub const MS: u64 = 1_000;
/// One second of simulated time, in microseconds.
pub const SECOND: u64 = 1_000_000;
/// MIT's `RaftElectionTimeout`: the time the tester allows for an election.
pub const RAFT_ELECTION_TIMEOUT: u64 = SECOND;

/// Fails the scenario with a formatted message (and the cluster's state)
/// unless `cond` holds.
macro_rules! ensure {
    ($t:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($t.failure(&format!($($fmt)+)));
        }
    };
}
pub(crate) use ensure;

/// What a passing scenario measured: named figures (requests counted,
/// snapshots installed, operations completed, ...), printed by the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioReport {
    /// Figure name and value, in the order recorded.
    pub figures: Vec<(&'static str, u64)>,
}

impl ScenarioReport {
    /// The value of figure `name`, if recorded.
    pub fn figure(&self, name: &str) -> Option<u64> {
        self.figures
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }
}

thread_local! {
    /// Known bugs switched on in the scenarios run by this thread.
    static INJECTED: Cell<BugSet> = Cell::new(BugSet::default());
}

/// Runs `f` (a scenario) with `bugs` switched on in every cluster it builds
/// with [`mit_config`]: a scenario that still passes did not notice them.
pub fn with_bugs<T>(bugs: BugSet, f: impl FnOnce() -> T) -> T {
    struct Reset(BugSet);
    impl Drop for Reset {
        fn drop(&mut self) {
            INJECTED.set(self.0);
        }
    }
    let _reset = Reset(INJECTED.replace(bugs));
    f()
}

/// The core and simulator settings that mirror MIT's tester (see the module
/// documentation): 10 ms ticks, heartbeats every 100 ms, election timeouts
/// of 300-600 ms, a reliable network; and the bugs of [`with_bugs`].
pub fn mit_config(seed: u64, servers: usize) -> SimConfig {
    let mut cfg = SimConfig::new(seed, servers);
    cfg.bugs = INJECTED.get();
    cfg.tick_us = 10 * MS;
    cfg.raft.heartbeat_interval_ticks = 10;
    cfg.raft.election_timeout_ticks_min = 30;
    cfg.raft.election_timeout_ticks_max = 60;
    cfg
}

/// The payload of MIT command `x`.
pub fn cmd(x: u64) -> Bytes {
    Bytes::copy_from_slice(&x.to_le_bytes())
}

/// The payload hash the checker records for command `x` once committed.
pub fn cmd_hash(x: u64) -> u64 {
    payload_hash(&EntryPayload::Command(cmd(x)))
}

/// A simulated cluster driven the way MIT's tester drives its servers.
pub struct Tester {
    /// The simulation.
    pub sim: Sim,
    /// MIT's `connected[i]`: the links between two connected servers are up.
    pub connected: Vec<bool>,
    /// The scenario's own random choices (the simulation has its own).
    pub rng: SmallRng,
    figures: Vec<(&'static str, u64)>,
}

impl Tester {
    /// Starts the cluster described by `cfg`, every server connected.
    pub fn new(cfg: SimConfig) -> Tester {
        let n = cfg.voters + cfg.spares;
        let rng = SmallRng::seed_from_u64(cfg.seed ^ 0x6584_0658_4065);
        Tester {
            sim: Sim::new(cfg),
            connected: vec![true; n],
            rng,
            figures: Vec::new(),
        }
    }

    /// The number of servers.
    pub fn n(&self) -> usize {
        self.sim.nodes.len()
    }

    /// A random number in `0..n`, from the scenario's generator.
    pub fn rand(&mut self, n: u64) -> u64 {
        self.rng.random_range(0..n.max(1))
    }

    /// A random server.
    pub fn rand_server(&mut self) -> usize {
        let n = self.n() as u64;
        self.rand(n) as usize
    }

    /// Records a figure for the report.
    pub fn figure(&mut self, name: &'static str, value: u64) {
        self.figures.push((name, value));
    }

    /// The failure message for `what`: the time, the broken invariant and
    /// the last events if a checker fired, and every node's state.
    pub fn failure(&self, what: &str) -> String {
        let mut s = format!("at {:.3} s: {what}\n", self.sim.now as f64 / SECOND as f64);
        if let Some(v) = &self.sim.violation {
            s += &format!(
                "checker violation: {} at {:.3} ms: {}\nlast events:\n{}",
                v.invariant,
                v.time_us as f64 / MS as f64,
                v.detail,
                self.sim.trace.render(TRACE_SHOWN)
            );
        }
        let down: Vec<u64> = (0..self.n())
            .filter(|&i| !self.connected[i])
            .map(id_of)
            .collect();
        s += &format!(
            "disconnected: {down:?}\nnodes:\n{}",
            self.sim.describe_nodes()
        );
        s
    }

    /// Fails if an invariant checker fired.
    pub fn ok(&self) -> Result<(), String> {
        match &self.sim.violation {
            Some(v) => Err(self.failure(&format!("invariant '{}' broken", v.invariant))),
            None => Ok(()),
        }
    }

    /// Lets `d` microseconds of simulated time pass (MIT's `time.Sleep`).
    pub fn sleep(&mut self, d: u64) -> Result<(), String> {
        self.sim.run_for(d);
        self.ok()
    }

    /// The report of a passing scenario, after a last check of the
    /// invariants: the figures recorded plus the simulation's counters.
    pub fn finish(mut self) -> Result<ScenarioReport, String> {
        self.ok()?;
        let s = &self.sim.stats;
        let common = [
            ("sim_ms", self.sim.now / MS),
            ("requests", s.requests_sent),
            ("leaders_elected", s.elections_won),
            ("snapshots_installed", s.snapshots_installed),
        ];
        self.figures.extend(common);
        Ok(ScenarioReport {
            figures: self.figures,
        })
    }

    /// MIT's `disconnect(i)` / `DisconnectAll(i)`: cuts every link of `i`.
    pub fn disconnect(&mut self, i: usize) {
        self.connected[i] = false;
        self.sim.net.isolate(i);
        self.sim.note(format!("tester: n{} disconnected", id_of(i)));
    }

    /// MIT's `connect(i)` / `ConnectOne(i)`: restores the links between `i`
    /// and every other connected server (not those still disconnected).
    pub fn connect(&mut self, i: usize) {
        self.connected[i] = true;
        for j in 0..self.n() {
            if self.connected[j] {
                self.sim.net.set_link(i, j, true);
                self.sim.net.set_link(j, i, true);
            }
        }
        self.sim.note(format!("tester: n{} connected", id_of(i)));
    }

    /// Connects every server.
    pub fn connect_all(&mut self) {
        self.connected.iter_mut().for_each(|c| *c = true);
        self.sim.net.heal();
        self.sim.note("tester: all connected".to_string());
    }

    /// MIT's `partition(p1, p2)`: links within each group up, across cut.
    pub fn partition(&mut self, p1: &[usize], p2: &[usize]) {
        self.connected.iter_mut().for_each(|c| *c = true);
        self.sim.net.partition(&[p1.to_vec(), p2.to_vec()]);
        let show = |g: &[usize]| g.iter().map(|&n| id_of(n)).collect::<Vec<_>>();
        self.sim
            .note(format!("tester: partition {:?} | {:?}", show(p1), show(p2)));
    }

    /// MIT's `ShutdownServer(i)`: crashes `i` (unpersisted writes are lost)
    /// and disconnects it.
    pub fn crash(&mut self, i: usize) {
        self.sim.crash(i);
        self.disconnect(i);
    }

    /// MIT's `restart(i)`: restarts `i` from its disk (if down) and
    /// connects it.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.sim.restart(i);
        self.connect(i);
        self.ok()
    }

    /// True while server `i` runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.sim.nodes[i].is_up()
    }

    /// MIT's `rf.Start(x)` at server `i`: the index and term of the new
    /// entry if `i` is a running leader, `None` otherwise.
    pub fn start(&mut self, i: usize, x: u64) -> Option<(LogIndex, Term)> {
        let index = self.sim.propose_at(i, cmd(x))?;
        let term = self.sim.raft(i).map_or(0, |r| r.term());
        Some((index, term))
    }

    /// True if connected server `i` runs and believes it leads.
    fn is_connected_leader(&self, i: usize) -> bool {
        self.connected[i] && self.sim.raft(i).is_some_and(|r| r.role() == Role::Leader)
    }

    /// The connected running servers that believe they lead (node ids).
    pub fn connected_leaders(&self) -> Vec<u64> {
        (0..self.n())
            .filter(|&i| self.is_connected_leader(i))
            .map(id_of)
            .collect()
    }

    /// MIT's `checkOneLeader`: up to ten times, sleeps 450-550 ms and looks
    /// at the connected servers; fails if a term has two leaders, returns
    /// the leader of the latest term once there is one.
    pub fn check_one_leader(&mut self) -> Result<usize, String> {
        for _ in 0..10 {
            let ms = 450 + self.rand(100);
            self.sleep(ms * MS)?;
            let mut leaders: BTreeMap<Term, Vec<usize>> = BTreeMap::new();
            for i in 0..self.n() {
                if self.is_connected_leader(i) {
                    let term = self.sim.raft(i).map_or(0, |r| r.term());
                    leaders.entry(term).or_default().push(i);
                }
            }
            for (term, ls) in &leaders {
                ensure!(
                    self,
                    ls.len() == 1,
                    "term {term} has {} (>1) leaders",
                    ls.len()
                );
            }
            if let Some((_, ls)) = leaders.last_key_value() {
                return Ok(ls[0]);
            }
        }
        Err(self.failure("expected one leader, got none"))
    }

    /// MIT's `checkNoLeader`: no connected server believes it leads.
    pub fn check_no_leader(&self) -> Result<(), String> {
        for i in 0..self.n() {
            ensure!(
                self,
                !self.is_connected_leader(i),
                "expected no leader among connected servers, but n{} claims to be leader",
                id_of(i)
            );
        }
        Ok(())
    }

    /// MIT's `checkTerms`: every connected running server is in the same
    /// term; returns it.
    pub fn check_terms(&self) -> Result<Term, String> {
        let mut term = None;
        for i in 0..self.n() {
            if !self.connected[i] {
                continue;
            }
            if let Some(r) = self.sim.raft(i) {
                match term {
                    None => term = Some(r.term()),
                    Some(t) => ensure!(self, t == r.term(), "servers disagree on term"),
                }
            }
        }
        Ok(term.unwrap_or(0))
    }

    /// MIT's `nCommitted(index)`: how many running servers applied `index`,
    /// and the payload hash committed there (the checkers already fail the
    /// run if two servers applied different entries at one index).
    pub fn n_committed(&self, index: LogIndex) -> (usize, Option<u64>) {
        let count = self
            .sim
            .nodes
            .iter()
            .filter(|node| node.is_up() && node.kv.applied >= index)
            .count();
        (count, self.sim.checker.committed_at(index).map(|(_, h)| h))
    }

    /// MIT's `checkNoAgreement(index)`: no server applied `index`.
    pub fn check_no_agreement(&self, index: LogIndex) -> Result<(), String> {
        let (n, _) = self.n_committed(index);
        ensure!(self, n == 0, "{n} committed index {index} but no majority");
        Ok(())
    }

    /// MIT's `one(cmd, expectedServers, retry)`: proposes `x` at whichever
    /// connected server accepts it, waits up to 2 s for `expected` servers
    /// to apply it, retries (if `retry`) for up to 10 s; returns its index.
    pub fn one(&mut self, x: u64, expected: usize, retry: bool) -> Result<LogIndex, String> {
        let t0 = self.sim.now;
        let n = self.n();
        let mut starts = 0;
        while self.sim.now < t0 + 10 * SECOND {
            let mut index = None;
            for _ in 0..n {
                starts = (starts + 1) % n;
                if self.connected[starts] {
                    if let Some((i, _)) = self.start(starts, x) {
                        index = Some(i);
                        break;
                    }
                }
            }
            match index {
                Some(index) => {
                    let t1 = self.sim.now;
                    while self.sim.now < t1 + 2 * SECOND {
                        let (nd, h) = self.n_committed(index);
                        if nd > 0 && nd >= expected && h == Some(cmd_hash(x)) {
                            return Ok(index);
                        }
                        self.sleep(20 * MS)?;
                    }
                    ensure!(
                        self,
                        retry,
                        "one({x}) failed to reach agreement at index {index}"
                    );
                }
                None => self.sleep(50 * MS)?,
            }
        }
        Err(self.failure(&format!("one({x}) failed to reach agreement within 10 s")))
    }

    /// MIT's `wait(index, n, startTerm)`: waits (with backoff, about 25 s in
    /// all) for `n` servers to apply `index`; returns the payload hash
    /// committed there, or `None` if some server moved past `start_term`
    /// (MIT's -1). Fails if fewer than `n` applied it in the end.
    pub fn wait(
        &mut self,
        index: LogIndex,
        n: usize,
        start_term: Option<Term>,
    ) -> Result<Option<u64>, String> {
        let mut to = 10 * MS;
        for _ in 0..30 {
            if self.n_committed(index).0 >= n {
                break;
            }
            self.sleep(to)?;
            if to < SECOND {
                to *= 2;
            }
            if let Some(st) = start_term {
                let moved_on =
                    (0..self.n()).any(|i| self.sim.raft(i).is_some_and(|r| r.term() > st));
                if moved_on {
                    return Ok(None);
                }
            }
        }
        let (nd, h) = self.n_committed(index);
        ensure!(
            self,
            nd >= n,
            "only {nd} decided for index {index}; wanted {n}"
        );
        Ok(h)
    }

    /// The payload hash committed at `index`, if known.
    pub fn committed_hash(&self, index: LogIndex) -> Option<u64> {
        self.sim.checker.committed_at(index).map(|(_, h)| h)
    }

    /// The most log entries any running server holds (in memory or on its
    /// disk): MIT's `LogSize`, in entries.
    pub fn max_log_entries(&self) -> u64 {
        self.sim
            .nodes
            .iter()
            .filter_map(|node| {
                let r = node.raft.as_ref()?;
                let held = (r.last_index() + 1).saturating_sub(r.first_index());
                Some(held.max(node.disk.entries.len() as u64))
            })
            .max()
            .unwrap_or(0)
    }

    /// Crashes every server, waits `pause`, restarts them all (MIT's
    /// `Shutdown` + `StartServers`).
    pub fn crash_all_and_restart(&mut self, pause: u64) -> Result<(), String> {
        for i in 0..self.n() {
            self.crash(i);
        }
        self.sleep(pause)?;
        for i in 0..self.n() {
            self.restart(i)?;
        }
        Ok(())
    }

    /// Checks that `x` is still committed at `index` and applied by
    /// `servers` running servers: committed entries survive.
    pub fn check_survived(&self, index: LogIndex, x: u64, servers: usize) -> Result<(), String> {
        let (nd, h) = self.n_committed(index);
        ensure!(
            self,
            nd >= servers && h == Some(cmd_hash(x)),
            "command {x} committed at {index} did not survive: {nd} servers applied it, hash {h:?}"
        );
        Ok(())
    }

    /// Client operations still waiting for an answer.
    pub fn pending_ops(&self) -> usize {
        let ops = &self.sim.workload.ops;
        ops.iter().filter(|o| o.status == Status::Pending).count()
    }

    /// MIT's "wait for clients": lets time pass until every client
    /// operation started has finished (answered, or given up by a client
    /// whose server crashed); fails if some are still pending after `bound`.
    pub fn settle_ops(&mut self, bound: u64) -> Result<(), String> {
        let until = self.sim.now + bound;
        while self.pending_ops() > 0 && self.sim.now < until {
            self.sleep(10 * MS)?;
        }
        let pending = self.pending_ops();
        ensure!(
            self,
            pending == 0,
            "{pending} client operations still pending after {} ms",
            bound / MS
        );
        Ok(())
    }

    /// Checks the client history for linearizability (what Porcupine does
    /// at the end of MIT's kv tests) and records its size.
    pub fn check_linearizable(&mut self) -> Result<(), String> {
        let history = self.sim.workload.history();
        let completed = self.sim.workload.completed() as u64;
        match raft_lincheck::check(&history) {
            Ok(_) => {
                self.figure("ops_completed", completed);
                self.figure("ops_timed_out", self.sim.workload.timed_out() as u64);
                Ok(())
            }
            Err(e) => Err(self.failure(&format!(
                "history of {} operations is not linearizable: {e}",
                history.len()
            ))),
        }
    }
}
