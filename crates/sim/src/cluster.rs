//! The simulated cluster: an event queue over virtual time, the nodes, the
//! network and the disks, and the driver loop that feeds each core and
//! carries out its `Ready` batches exactly as a real runtime must.

use bytes::Bytes;
use raft_core::bugs::BugSet;
use raft_core::pipeline::Pipeline;
use raft_core::{Body, ConfChange, Config, Membership, Message, NodeId, Raft, Restored, Role};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::checker::{Checker, Violation};
use crate::kv::Kv;
use crate::net::{Fate, NetConfig, Network};
use crate::node::{SimNode, FLUSH_AFTER_TICKS};
use crate::queue::EventQueue;
use crate::trace::{Event, Summary, Trace};
use crate::workload::Workload;

/// The cluster id every simulated node belongs to.
pub const CLUSTER: u64 = 0xC1A5;

/// A run that processes more events than this is stuck in a storm or a
/// livelock (a normal seed takes well under a million).
const MAX_EVENTS: u64 = 5_000_000;
/// Events waiting at once; beyond this, messages are multiplying.
const MAX_QUEUED: usize = 100_000;
/// `Ready` batches one node may produce for one input.
pub(crate) const MAX_READY_ROUNDS: usize = 10_000;

/// Everything that shapes one run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed of every random choice.
    pub seed: u64,
    /// Voters at the start (ids 1..=voters).
    pub voters: usize,
    /// Further nodes that start empty and can be added (ids after the voters).
    pub spares: usize,
    /// The base tick period.
    pub tick_us: u64,
    /// Clock skew: each node's tick period differs from the base by up to
    /// this many per mille.
    pub skew_per_mille: u64,
    /// The core configuration every node starts from (id, seed and cluster
    /// are filled in per node).
    pub raft: Config,
    /// Network behaviour.
    pub net: NetConfig,
    /// Disk write latency range.
    pub disk_delay_us: (u64, u64),
    /// Disk stalls: this many writes in 1000 take a time drawn from the
    /// range instead (a disk that hangs for a while).
    pub disk_stalls: Option<(u64, (u64, u64))>,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys the clients use.
    pub keys: u64,
    /// A client gives up on an operation after this long; it stays open.
    pub client_timeout_us: u64,
    /// Pause between a client's operations.
    pub think_us: (u64, u64),
    /// Take a snapshot every this many applied entries (0: never).
    pub snapshot_every: u64,
    /// Known bugs switched on.
    pub bugs: BugSet,
    /// Events kept for the violation report.
    pub trace_capacity: usize,
}

impl SimConfig {
    /// A quiet cluster of `voters` nodes: reliable network, fast disks.
    pub fn new(seed: u64, voters: usize) -> SimConfig {
        SimConfig {
            seed,
            voters,
            spares: 0,
            tick_us: 10_000,
            skew_per_mille: 0,
            raft: Config {
                heartbeat_interval_ticks: 2,
                election_timeout_ticks_min: 10,
                election_timeout_ticks_max: 20,
                max_append_entries: 64,
                max_inflight_appends: 8,
                snapshot_chunk_bytes: 256,
                snapshot_trailing_entries: 20,
                // Two of the longest election timeouts, as raft-node sets it.
                disk_stall_ticks: 40,
                ..Config::default()
            },
            net: NetConfig::reliable(),
            disk_delay_us: (100, 1_000),
            disk_stalls: None,
            clients: 0,
            keys: 4,
            client_timeout_us: 1_000_000,
            think_us: (0, 20_000),
            snapshot_every: 0,
            bugs: BugSet::default(),
            trace_capacity: 2_000,
        }
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Requests sent (appends, heartbeats, votes, snapshots, ...): what RPC
    /// budgets count.
    pub requests_sent: u64,
    /// All messages sent.
    pub messages_sent: u64,
    /// Messages delivered.
    pub messages_delivered: u64,
    /// Crashes.
    pub crashes: u64,
    /// Leaders elected.
    pub elections_won: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Snapshots taken.
    pub snapshots_taken: u64,
    /// Forged messages with implausible terms handed to nodes.
    pub forged_terms_injected: u64,
}

#[derive(Debug)]
pub(crate) enum Ev {
    Tick(usize, u32),
    /// The message in this slot of [`Sim::wire`] arrives.
    Deliver(u32),
    DiskDone(usize, u32),
    Client(usize),
    Submit(u64),
    Timeout(u64),
    Fault,
    Restart(usize),
}

/// A simulated cluster.
pub struct Sim {
    /// The configuration.
    pub cfg: SimConfig,
    /// Batches the pipeline released, being completed (kept to reuse its
    /// allocation).
    pub(crate) released: Vec<raft_core::pipeline::Batch>,
    /// The run's random source.
    pub rng: SmallRng,
    /// Virtual time, in microseconds.
    pub now: u64,
    /// Events by (time, sequence number): events due at the same time
    /// happen in the order they were scheduled.
    queue: EventQueue<Ev>,
    seq: u64,
    /// Messages on their way, each in a slot that its `Deliver` event
    /// names (no allocation per message); free slots are reused.
    wire: Vec<Option<Message>>,
    free_slots: Vec<u32>,
    /// The nodes; node id `i + 1` is `nodes[i]`.
    pub nodes: Vec<SimNode>,
    /// The network.
    pub net: Network,
    /// The global invariants.
    pub checker: Checker,
    /// Recent events.
    pub trace: Trace,
    /// The first invariant that failed.
    pub violation: Option<Violation>,
    /// Clients and their history.
    pub workload: Workload,
    /// Counters.
    pub stats: Stats,
    /// Random faults are injected until this time.
    pub(crate) faults_until: u64,
    /// Which random faults to inject.
    pub(crate) fault_mix: crate::faults::FaultMix,
}

/// The node id of slot `n`.
pub fn id_of(n: usize) -> NodeId {
    n as NodeId + 1
}

impl Sim {
    /// Builds the cluster and starts every node.
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let total = cfg.voters + cfg.spares;
        let bootstrap = Membership::with_voters((1..=cfg.voters as u64).collect::<Vec<_>>());
        let mut nodes = Vec::with_capacity(total);
        for n in 0..total {
            let skew = if cfg.skew_per_mille > 0 {
                rng.random_range(0..=2 * cfg.skew_per_mille) as i64 - cfg.skew_per_mille as i64
            } else {
                0
            };
            let tick_us = (cfg.tick_us as i64 + cfg.tick_us as i64 * skew / 1000) as u64;
            let boot = if n < cfg.voters {
                bootstrap.clone()
            } else {
                Membership::default()
            };
            nodes.push(SimNode::new(tick_us.max(1), boot));
        }
        let mut trace = Trace::new(cfg.trace_capacity);
        trace.echo = false;
        let workload = Workload::new(cfg.clients);
        let mut sim = Sim {
            net: Network::new(total, cfg.net),
            rng,
            now: 0,
            queue: EventQueue::new(),
            wire: Vec::new(),
            free_slots: Vec::new(),
            released: Vec::new(),
            seq: 0,
            nodes,
            checker: Checker::default(),
            trace,
            violation: None,
            workload,
            stats: Stats::default(),
            faults_until: 0,
            fault_mix: crate::faults::FaultMix::none(),
            cfg,
        };
        for n in 0..total {
            sim.start(n);
        }
        sim
    }

    pub(crate) fn schedule(&mut self, delay_us: u64, ev: Ev) {
        self.seq += 1;
        let key = ((self.now + delay_us) as u128) << 64 | self.seq as u128;
        match ev {
            // A fixed time ahead: in order (see `queue`).
            Ev::Timeout(_) => self.queue.push_in_order(key, ev),
            _ => self.queue.push(key, ev),
        }
    }

    /// Records a broken invariant (the first one wins) and stops the run.
    pub fn fail(&mut self, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.trace.record(
                self.now,
                Event::Note(format!("VIOLATION {invariant}: {detail}")),
            );
            self.violation = Some(Violation {
                time_us: self.now,
                invariant,
                detail,
            });
        }
    }

    pub(crate) fn note(&mut self, line: String) {
        self.trace.record(self.now, Event::Note(line));
    }

    pub(crate) fn check(&mut self, r: Result<(), (&'static str, String)>) {
        if let Err((invariant, detail)) = r {
            self.fail(invariant, detail);
        }
    }

    /// Processes the next event. Returns false when there is none, or a
    /// violation stopped the run.
    pub fn step(&mut self) -> bool {
        if self.violation.is_some() {
            return false;
        }
        if self.stats.events >= MAX_EVENTS || self.queue.len() >= MAX_QUEUED {
            let detail = format!(
                "the run did not settle: {} events processed, {} queued (a message storm or livelock)",
                self.stats.events,
                self.queue.len()
            );
            self.fail("bounded work", detail);
            return false;
        }
        let Some((key, ev)) = self.queue.pop() else {
            return false;
        };
        let time = (key >> 64) as u64;
        debug_assert!(time >= self.now);
        self.now = time;
        self.stats.events += 1;
        match ev {
            Ev::Tick(n, life) => self.on_tick(n, life),
            Ev::Deliver(slot) => {
                let m = self.wire[slot as usize].take().expect("a message per slot");
                self.free_slots.push(slot);
                self.deliver(m);
            }
            Ev::DiskDone(n, life) => self.disk_done(n, life),
            Ev::Client(c) => self.client_next(c),
            Ev::Submit(op) => self.submit(op),
            Ev::Timeout(op) => self.timeout(op),
            Ev::Fault => self.random_fault(),
            Ev::Restart(n) => self.restart(n),
        }
        self.violation.is_none()
    }

    /// Runs until virtual time `t` (or a violation).
    pub fn run_until(&mut self, t: u64) {
        while self.violation.is_none() {
            match self.queue.peek_key() {
                Some(key) if (key >> 64) as u64 <= t => {
                    self.step();
                }
                _ => break,
            }
        }
        if self.violation.is_none() {
            self.now = self.now.max(t);
        }
    }

    /// Runs for `d` more microseconds.
    pub fn run_for(&mut self, d: u64) {
        self.run_until(self.now + d);
    }

    /// The core config of node slot `n` for its current life.
    fn node_config(&self, n: usize) -> Config {
        let mut c = self.cfg.raft.clone();
        c.id = id_of(n);
        c.cluster = CLUSTER;
        c.seed = self.cfg.seed ^ ((n as u64) << 32) ^ self.nodes[n].life as u64;
        c.bugs = self.cfg.bugs;
        c
    }

    /// Starts (or restarts) node `n` from its disk.
    fn start(&mut self, n: usize) {
        let node = &self.nodes[n];
        let restored = Restored {
            hard_state: node.disk.hard,
            snapshot: node.disk.snapshot.clone(),
            bootstrap: node.bootstrap.clone(),
            entries: node.disk.entries.clone(),
        };
        let raft = match Raft::new(self.node_config(n), restored) {
            Ok(r) => r,
            Err(e) => {
                self.fail(
                    "restart",
                    format!("n{} cannot restart from its disk: {e}", id_of(n)),
                );
                return;
            }
        };
        let snapshot = self.nodes[n].disk.snapshot.clone();
        let kv = match &snapshot {
            Some(s) => Kv::restore(&s.data).unwrap_or_default(),
            None => Kv::default(),
        };
        if let Some(s) = &snapshot {
            if let Some(h) = self.checker.state_after(s.meta.index) {
                if h != kv.state_hash() {
                    self.fail(
                        "state machine safety",
                        format!(
                            "n{}'s snapshot at {} holds a state no node applied",
                            id_of(n),
                            s.meta.index
                        ),
                    );
                }
            }
        }
        let max_sent = self.nodes[n].max_term_sent;
        if raft.term() < max_sent {
            self.fail(
                "terms never decrease",
                format!(
                    "n{} restarts in term {} after sending messages of term {max_sent}",
                    id_of(n),
                    raft.term()
                ),
            );
        }
        let node = &mut self.nodes[n];
        node.life += 1;
        node.commit_seen = raft.commit_index();
        node.term_seen = raft.term();
        node.snapshot_index = kv.applied;
        node.kv = kv;
        node.raft = Some(raft);
        node.pipeline = Pipeline::new(FLUSH_AFTER_TICKS, self.cfg.bugs);
        node.flushing = None;
        let (life, tick) = (node.life, node.tick_us);
        let phase = self.rng.random_range(1..=tick);
        self.schedule(phase, Ev::Tick(n, life));
    }

    /// Crashes node `n`: everything not yet on its disk is lost.
    pub fn crash(&mut self, n: usize) {
        if !self.nodes[n].is_up() {
            return;
        }
        self.stats.crashes += 1;
        self.note(format!(
            "n{} crashes ({} writes lost)",
            id_of(n),
            self.nodes[n]
                .flushing
                .as_ref()
                .map_or(0, |j| j.batches.len())
        ));
        let node = &self.nodes[n];
        self.checker
            .crashed(id_of(n), node.disk.hard.term, node.max_term_sent);
        let node = &mut self.nodes[n];
        node.raft = None;
        node.pipeline = Pipeline::new(FLUSH_AFTER_TICKS, self.cfg.bugs);
        node.flushing = None;
        node.kv = Kv::default();
        node.proposals.clear();
        node.reads.clear();
        node.receiving = None;
        node.leading = None;
        node.life += 1;
    }

    /// Restarts crashed node `n` from its disk.
    pub fn restart(&mut self, n: usize) {
        if self.nodes[n].is_up() {
            return;
        }
        self.note(format!("n{} restarts", id_of(n)));
        self.start(n);
        self.drive(n);
    }

    fn on_tick(&mut self, n: usize, life: u32) {
        let node = &mut self.nodes[n];
        if node.life != life {
            return;
        }
        let Some(raft) = node.raft.as_mut() else {
            return;
        };
        raft.tick();
        node.pipeline.tick();
        let tick = node.tick_us;
        self.schedule(tick, Ev::Tick(n, life));
        self.drive(n);
    }

    /// Puts a message on the network.
    pub(crate) fn net_send(&mut self, m: Message) {
        self.stats.messages_sent += 1;
        if m.body.is_request() {
            self.stats.requests_sent += 1;
        }
        let from = (m.from - 1) as usize;
        let to = m.to.wrapping_sub(1) as usize;
        match m.body {
            Body::VoteResponse {
                pre: false,
                granted: true,
            } => {
                let r = self.checker.vote(m.from, m.term, m.to);
                self.check(r);
            }
            Body::Vote(v) if v.pre => {}
            Body::VoteResponse { pre: true, .. } => {}
            _ => {
                let node = &mut self.nodes[from];
                node.max_term_sent = node.max_term_sent.max(m.term);
            }
        }
        if to >= self.nodes.len() {
            return;
        }
        match self.net.fate(from, to, &mut self.rng) {
            Fate::Dropped => {}
            Fate::Delivered(first, second) => {
                if let Some(d) = second {
                    let slot = self.on_wire(m.clone());
                    self.schedule(d, Ev::Deliver(slot));
                }
                let slot = self.on_wire(m);
                self.schedule(first, Ev::Deliver(slot));
            }
        }
    }

    /// Puts `m` in a free slot of the wire.
    fn on_wire(&mut self, m: Message) -> u32 {
        match self.free_slots.pop() {
            Some(slot) => {
                self.wire[slot as usize] = Some(m);
                slot
            }
            None => {
                self.wire.push(Some(m));
                (self.wire.len() - 1) as u32
            }
        }
    }

    fn deliver(&mut self, m: Message) {
        let from = (m.from - 1) as usize;
        let to = (m.to - 1) as usize;
        if !self.nodes[to].is_up() || !self.net.connected(from, to) {
            return;
        }
        self.stats.messages_delivered += 1;
        self.trace.record(
            self.now,
            Event::Deliver {
                from: m.from,
                to: m.to,
                term: m.term,
                summary: Summary::of(&m),
            },
        );
        let raft = self.nodes[to].raft.as_mut().expect("checked up");
        if let Err(e) = raft.step(m) {
            self.fail("message refused", format!("n{}: {e}", id_of(to)));
            return;
        }
        self.drive(to);
    }

    /// Hands node `n` a message from another cluster; it must refuse it.
    pub fn inject_foreign_message(&mut self, n: usize) {
        let from = id_of((n + 1) % self.nodes.len());
        let Some(raft) = self.nodes[n].raft.as_mut() else {
            return;
        };
        let before = raft.metrics().refused_foreign_cluster;
        let term = raft.term() + 100;
        let m = Message {
            cluster: CLUSTER + 1,
            from,
            to: id_of(n),
            term,
            body: Body::Heartbeat {
                commit: 0,
                round: 0,
            },
        };
        let refused = raft.step(m).is_err();
        let counted = raft.metrics().refused_foreign_cluster == before + 1;
        let unchanged = raft.term() < term;
        if !(refused && counted && unchanged) {
            self.fail(
                "cluster id",
                format!("n{} accepted a message from another cluster", id_of(n)),
            );
        }
    }

    /// The leader with the highest term among running nodes.
    pub fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(n, node)| node.raft.as_ref().map(|r| (n, r)))
            .filter(|(_, r)| r.role() == Role::Leader)
            .max_by_key(|(_, r)| r.term())
            .map(|(n, _)| n)
    }

    /// The core of node `n`, if running.
    pub fn raft(&self, n: usize) -> Option<&Raft> {
        self.nodes[n].raft.as_ref()
    }

    /// Proposes a membership change at the current leader.
    pub fn change_membership(&mut self, change: ConfChange) -> bool {
        let Some(l) = self.leader() else { return false };
        let raft = self.nodes[l].raft.as_mut().expect("leader is up");
        let line = format!("n{} proposes {change:?}", id_of(l));
        let ok = raft.propose_conf_change(change).is_ok();
        if ok {
            self.note(line);
            self.drive(l);
        }
        ok
    }

    /// Asks the current leader to hand over to node `to`.
    pub fn transfer_leader(&mut self, to: usize) -> bool {
        let Some(l) = self.leader() else { return false };
        let raft = self.nodes[l].raft.as_mut().expect("leader is up");
        let ok = raft.transfer_leader(id_of(to)).is_ok();
        if ok {
            self.note(format!(
                "n{} transfers leadership to n{}",
                id_of(l),
                id_of(to)
            ));
            self.drive(l);
        }
        ok
    }

    /// Node `n` starts no election for `ticks` ticks.
    pub fn weaken(&mut self, n: usize, ticks: u64) {
        if let Some(raft) = self.nodes[n].raft.as_mut() {
            raft.weaken(ticks);
            self.note(format!("n{} weakened for {ticks} ticks", id_of(n)));
        }
    }

    /// Proposes raw `data` at node `n`; returns its index if `n` leads.
    pub fn propose_at(&mut self, n: usize, data: Bytes) -> Option<u64> {
        let raft = self.nodes[n].raft.as_mut()?;
        let index = raft.propose(data).ok()?;
        self.drive(n);
        Some(index)
    }

    /// Running nodes.
    pub fn up_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].is_up())
            .collect()
    }
}
