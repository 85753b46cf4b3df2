//! A tiny in-memory cluster for the core's tests: persistence is instant,
//! messages wait in one queue until delivered, links can be cut.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use raft_core::{
    Body, Config, Entry, EntryPayload, Membership, Message, NodeId, Raft, ReadState, Ready,
    Restored, Role, Snapshot,
};

pub const CLUSTER: u64 = 7;

pub fn config(id: NodeId) -> Config {
    Config {
        id,
        cluster: CLUSTER,
        seed: 42,
        ..Config::default()
    }
}

/// What a node made durable, so that it can restart.
#[derive(Default, Clone)]
pub struct Durable {
    pub restored: Restored,
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Raft>,
    pub durable: BTreeMap<NodeId, Durable>,
    pub queue: VecDeque<Message>,
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    pub reads: BTreeMap<NodeId, Vec<ReadState>>,
    pub aborted: BTreeMap<NodeId, Vec<u64>>,
    pub delivered: Vec<Message>,
    /// When false, `persisted` is not reported (the disk is "slow").
    pub report_persisted: bool,
    /// Nodes whose disk stalls: nothing they write becomes durable, so
    /// neither `persisted` nor the messages waiting for it go out.
    pub stalled: BTreeSet<NodeId>,
}

impl Cluster {
    /// `n` voters with ids 1..=n, built from `cfg`.
    pub fn new(n: u64, cfg: impl Fn(NodeId) -> Config) -> Cluster {
        let voters = Membership::with_voters(1..=n);
        let mut c = Cluster::empty();
        for id in 1..=n {
            c.add_node(cfg(id), voters.clone());
        }
        c
    }

    pub fn empty() -> Cluster {
        Cluster {
            nodes: BTreeMap::new(),
            durable: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            aborted: BTreeMap::new(),
            delivered: Vec::new(),
            report_persisted: true,
            stalled: BTreeSet::new(),
        }
    }

    /// Starts a node with `bootstrap` membership and an empty disk.
    pub fn add_node(&mut self, cfg: Config, bootstrap: Membership) {
        let id = cfg.id;
        let restored = Restored {
            bootstrap,
            ..Restored::default()
        };
        let raft = Raft::new(cfg, restored.clone()).expect("valid config");
        self.durable.insert(id, Durable { restored });
        self.nodes.insert(id, raft);
        self.applied.insert(id, Vec::new());
    }

    pub fn node(&self, id: NodeId) -> &Raft {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Raft {
        self.nodes.get_mut(&id).expect("node exists")
    }

    /// Takes every Ready of `id`, persisting at once.
    pub fn drive(&mut self, id: NodeId) {
        while let Some(raft) = self.nodes.get_mut(&id) {
            if !raft.has_ready() {
                break;
            }
            let rd = raft.ready();
            self.handle(id, rd);
        }
    }

    fn handle(&mut self, id: NodeId, rd: Ready) {
        let d = self.durable.get_mut(&id).expect("durable state exists");
        if let Some(s) = &rd.snapshot {
            d.restored.entries.retain(|e| e.index > s.meta.index);
            d.restored.snapshot = Some(s.clone());
        }
        if let Some(t) = rd.truncate_from {
            d.restored.entries.retain(|e| e.index < t);
        }
        d.restored.entries.extend(rd.entries.iter().cloned());
        if let Some(hs) = rd.hard_state {
            d.restored.hard_state = hs;
        }
        self.queue.extend(rd.messages.iter().cloned());
        if self.stalled.contains(&id) {
            // Held by the disk for good: what waits for the write never
            // happens (the node's acknowledgements and votes stay unsent).
            return;
        }
        if self.report_persisted {
            if let Some((i, t)) = rd.persisted_marker() {
                self.nodes.get_mut(&id).expect("exists").on_persisted(i, t);
            }
        }
        self.queue.extend(rd.messages_after_persist.iter().cloned());
        let applied = self.applied.get_mut(&id).expect("exists");
        if rd.restore_snapshot {
            applied.clear();
        }
        applied.extend(rd.committed_entries.iter().cloned());
        self.reads.entry(id).or_default().extend(rd.reads);
        self.aborted.entry(id).or_default().extend(rd.aborted_reads);
    }

    pub fn drive_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.drive(id);
        }
    }

    /// Delivers one queued message (dropping it if the link is cut).
    pub fn deliver_one(&mut self) -> bool {
        let Some(m) = self.queue.pop_front() else {
            return false;
        };
        let (from, to) = (m.from, m.to);
        if self.cut.contains(&(from, to)) || !self.nodes.contains_key(&to) {
            return true;
        }
        self.delivered.push(m.clone());
        let _ = self.node_mut(to).step(m);
        self.drive(to);
        true
    }

    /// Delivers messages until none are left.
    pub fn stabilize(&mut self) {
        self.drive_all();
        let mut budget = 100_000;
        while self.deliver_one() {
            budget -= 1;
            assert!(budget > 0, "the cluster never went quiet");
        }
    }

    /// Ticks `id` `n` times, driving it after each tick.
    pub fn tick(&mut self, id: NodeId, n: u64) {
        for _ in 0..n {
            self.node_mut(id).tick();
            self.drive(id);
        }
    }

    /// Ticks every node `n` times, delivering messages as they come.
    pub fn tick_all(&mut self, n: u64) {
        for _ in 0..n {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.node_mut(id).tick();
                self.drive(id);
            }
            self.stabilize();
        }
    }

    /// Makes `id` campaign and delivers everything; asserts it won.
    pub fn elect(&mut self, id: NodeId) {
        self.pass_restart_lease(id);
        self.node_mut(id).campaign_now();
        self.stabilize();
        assert_eq!(self.node(id).role(), Role::Leader, "n{id} did not win");
    }

    /// Ticks every node past the lease a fresh node holds (it refuses votes
    /// for one minimum election timeout after starting), without letting any
    /// node but `id` campaign; drops what the ticking sent.
    pub fn pass_restart_lease(&mut self, id: NodeId) {
        let ticks = self.node(id).config().election_timeout_ticks_min;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &other in &ids {
            if other != id {
                self.node_mut(other).weaken(ticks + 2);
            }
        }
        for &other in &ids {
            let r = self.node_mut(other);
            let target = r.ticks() + ticks;
            while r.ticks() < target {
                r.tick();
            }
            r.weaken(0);
            self.drive(other);
        }
        self.queue.clear();
    }

    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for other in ids {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn propose(&mut self, id: NodeId, data: &'static [u8]) -> u64 {
        let index = self
            .node_mut(id)
            .propose(Bytes::from_static(data))
            .expect("proposal accepted");
        self.drive(id);
        index
    }

    /// Commands applied by `id`, in order.
    pub fn commands(&self, id: NodeId) -> Vec<Bytes> {
        self.applied[&id]
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Command(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    /// Crashes and restarts `id` from its durable state.
    pub fn restart(&mut self, id: NodeId) {
        let cfg = self.node(id).config().clone();
        let restored = self.durable[&id].restored.clone();
        let raft = Raft::new(cfg, restored).expect("restarts from its own disk");
        self.nodes.insert(id, raft);
        self.applied.insert(id, Vec::new());
        self.queue.retain(|m| m.to != id && m.from != id);
    }

    /// The latest snapshot `id` holds on disk.
    pub fn disk_snapshot(&self, id: NodeId) -> Option<Snapshot> {
        self.durable[&id].restored.snapshot.clone()
    }

    /// Messages of a kind delivered so far.
    pub fn count_delivered(&self, pred: impl Fn(&Body) -> bool) -> usize {
        self.delivered.iter().filter(|m| pred(&m.body)).count()
    }
}

impl Cluster {
    /// Nodes 1..=n restarted from logs whose entry terms are `logs[n - 1]`
    /// (the same entry index and term carry the same payload everywhere),
    /// in a term one past the highest entry term.
    pub fn with_logs(logs: &[&[u64]], cfg: impl Fn(NodeId) -> Config) -> Cluster {
        let n = logs.len() as u64;
        let voters = Membership::with_voters(1..=n);
        let top = logs
            .iter()
            .flat_map(|l| l.iter())
            .copied()
            .max()
            .unwrap_or(0);
        let mut c = Cluster::empty();
        for (i, terms) in logs.iter().enumerate() {
            let id = i as u64 + 1;
            let entries: Vec<Entry> = terms
                .iter()
                .enumerate()
                .map(|(k, &term)| Entry {
                    index: k as u64 + 1,
                    term,
                    payload: EntryPayload::Command(Bytes::from(format!("{}/{term}", k + 1))),
                })
                .collect();
            let restored = Restored {
                hard_state: raft_core::HardState {
                    term: top,
                    vote: 0,
                    commit: 0,
                },
                snapshot: None,
                bootstrap: voters.clone(),
                entries,
            };
            let raft = Raft::new(cfg(id), restored.clone()).expect("valid state");
            c.durable.insert(id, Durable { restored });
            c.nodes.insert(id, raft);
            c.applied.insert(id, Vec::new());
        }
        c
    }

    /// Elects `id` counting only `voters` (plus itself) as reachable: the
    /// others stay cut.
    pub fn elect_among(&mut self, id: NodeId, reachable: &[NodeId]) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &a in &ids {
            for &b in &ids {
                let up = (a == id || reachable.contains(&a)) && (b == id || reachable.contains(&b));
                if !up && a != b {
                    self.cut.insert((a, b));
                }
            }
        }
        self.elect(id);
    }
}
