//! The node's state, its construction from durable state, `tick`, and the
//! output (`ready`). Messages are dispatched in `step`. The rules of each
//! concern live in their own modules: `election`, `replication`,
//! `snapshot`, `read`.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::bugs::Bug;
use crate::config::Config;
use crate::log::RaftLog;
use crate::membership::{Membership, MembershipLog};
use crate::message::{Body, Message};
use crate::metrics::Metrics;
use crate::progress::{Progress, ProgressMap, ReplicationState};
use crate::read::Reads;
use crate::ready::{Ready, SoftState};
use crate::restore::{RestoreError, Restored};
use crate::snapshot::Incoming;
use crate::types::{
    Entry, EntryPayload, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMeta, Term, NO_NODE,
};

/// A leader transfer in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transfer {
    /// The chosen successor.
    pub to: NodeId,
    /// Ticks since the transfer started; it is abandoned after an election
    /// timeout.
    pub elapsed_ticks: u64,
}

/// Output accumulated between two calls to [`Raft::ready`].
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub messages: Vec<Message>,
    pub messages_after_persist: Vec<Message>,
    pub snapshot: Option<Snapshot>,
    pub restore_snapshot: bool,
    pub snapshot_streamed: bool,
    pub snapshot_chunks: Vec<crate::ready::IncomingChunk>,
    pub aborted_reads: Vec<u64>,
}

/// One Raft node as a deterministic state machine.
///
/// Feed it input with [`step`](Raft::step), [`tick`](Raft::tick),
/// [`propose`](Raft::propose), [`read_index`](Raft::read_index) and the other
/// calls, then take its output with [`ready`](Raft::ready) and report
/// durability with [`on_persisted`](Raft::on_persisted).
///
/// Invariants kept across every call:
/// - `term` never decreases, and `vote` changes only with `term` or from
///   [`NO_NODE`];
/// - at most one vote per term leaves this node, and only after the term and
///   vote it depends on were handed out for persisting;
/// - a leader never truncates or rewrites its log in its own term;
/// - `log.commit` never decreases; entries are handed out for applying once,
///   in order, and only when committed.
pub struct Raft {
    pub(crate) cfg: Config,
    pub(crate) rng: SmallRng,
    /// The latest term seen. Durable.
    pub(crate) term: Term,
    /// The vote cast in `term`, or [`NO_NODE`]. Durable.
    pub(crate) vote: NodeId,
    /// The highest term known to be durable: a leader sends without waiting
    /// for its disk only once its term is (a lone voter wins without any
    /// message, before its new term reached the disk).
    pub(crate) durable_term: Term,
    /// The log and its commit, applied and persisted positions.
    pub(crate) log: RaftLog,
    /// The configuration in force and the uncommitted ones before it.
    pub(crate) conf: MembershipLog,
    pub(crate) role: Role,
    /// The leader of `term`, once known; [`NO_NODE`] otherwise.
    pub(crate) leader: NodeId,
    /// This node's clock: ticks since it started.
    pub(crate) ticks: u64,
    /// The tick at which a leader was last heard from (or at which this node
    /// last led). Starts at 0: a restarted node refuses votes for one minimum
    /// election timeout, as it may have acknowledged a leader just before.
    pub(crate) leader_contact_tick: u64,
    /// Ticks since the leader was last heard from (follower), since the
    /// election started (candidate), or since the last check-quorum (leader).
    pub(crate) election_elapsed: u64,
    /// The current randomized election timeout, in
    /// `[election_timeout_ticks_min, election_timeout_ticks_max)`.
    pub(crate) election_timeout: u64,
    /// Ticks since the leader's last heartbeat broadcast.
    pub(crate) heartbeat_elapsed: u64,
    /// This node starts no election before this tick (`weaken`).
    pub(crate) weakened_until: u64,
    /// Votes received in the current (pre-)election: voter -> granted.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Leader only: each other member's replication progress.
    pub(crate) progress: ProgressMap,
    /// Leader only: a leader transfer in progress.
    pub(crate) transfer: Option<Transfer>,
    /// Leader only: the durable index last seen and the tick it was first
    /// seen at (see [`Config::disk_stall_ticks`]).
    pub(crate) durable_since: (LogIndex, u64),
    /// Leader only: a TimeoutNow was sent this term, so another node may be
    /// elected without waiting for our lease to expire: no lease reads.
    pub(crate) lease_revoked: bool,
    /// Leader only: bytes of entries of this term beyond the commit index.
    pub(crate) uncommitted_bytes: usize,
    /// Leader only: entries were appended that followers have not been sent.
    pub(crate) needs_flush: bool,
    /// Linearizable reads in their various stages.
    pub(crate) reads: Reads,
    /// The latest snapshot, sent to followers that need compacted entries.
    pub(crate) snapshot: Option<Snapshot>,
    /// The latest snapshot's data is at hand (a streamed one is not until
    /// the driver calls `set_snapshot_data`).
    pub(crate) snapshot_data_ready: bool,
    /// A snapshot being received from the leader.
    pub(crate) incoming: Option<Incoming>,
    pub(crate) out: Outbox,
    /// The hard state last handed out for persisting.
    pub(crate) last_hard_state: HardState,
    /// The soft state last reported.
    pub(crate) last_soft_state: SoftState,
    pub(crate) metrics: Metrics,
    /// Scratch space for quorum computations.
    pub(crate) scratch: Vec<u64>,
}

impl Raft {
    /// A node restarting from `restored` (or starting fresh from
    /// `Restored::default()` plus a bootstrap membership).
    pub fn new(cfg: Config, restored: Restored) -> Result<Raft, RestoreError> {
        cfg.validate()?;
        restored.check_terms()?;
        let Restored {
            hard_state,
            snapshot,
            bootstrap,
            entries,
        } = restored;
        let meta = match &snapshot {
            Some(s) => s.meta.clone(),
            None => SnapshotMeta {
                index: 0,
                term: 0,
                membership: bootstrap,
            },
        };
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|e| e.index > meta.index)
            .collect();
        let mut prev = (meta.index, meta.term);
        for e in &entries {
            if e.index != prev.0 + 1 {
                return Err(RestoreError::Gap {
                    expected_after: prev.0,
                    found: e.index,
                });
            }
            if e.term < prev.1 {
                return Err(RestoreError::TermOrder {
                    index: e.index,
                    term: e.term,
                });
            }
            prev = (e.index, e.term);
        }
        if hard_state.term < prev.1 {
            return Err(RestoreError::HardTermBehind {
                hard: hard_state.term,
                entry: prev.1,
                index: prev.0,
            });
        }
        if hard_state.commit > prev.0 {
            return Err(RestoreError::CommitBeyondLog {
                commit: hard_state.commit,
                last: prev.0,
            });
        }
        let mut conf = MembershipLog::new(meta.index, meta.membership.clone());
        for e in &entries {
            if let EntryPayload::Membership(m) = &e.payload {
                conf.push(e.index, m.clone());
            }
        }
        let mut log = RaftLog::restore(meta.index, meta.term, entries);
        log.commit = hard_state.commit.max(meta.index);
        let seed = cfg.seed ^ cfg.id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut raft = Raft {
            rng: SmallRng::seed_from_u64(seed),
            term: hard_state.term,
            vote: hard_state.vote,
            durable_term: hard_state.term,
            log,
            conf,
            role: Role::Follower,
            leader: NO_NODE,
            ticks: 0,
            leader_contact_tick: 0,
            election_elapsed: 0,
            election_timeout: cfg.election_timeout_ticks_min,
            heartbeat_elapsed: 0,
            weakened_until: 0,
            votes: BTreeMap::new(),
            progress: ProgressMap::new(),
            transfer: None,
            durable_since: (0, 0),
            lease_revoked: false,
            uncommitted_bytes: 0,
            needs_flush: false,
            reads: Reads::default(),
            snapshot_data_ready: true,
            snapshot,
            incoming: None,
            out: Outbox::default(),
            last_hard_state: HardState {
                term: hard_state.term,
                vote: hard_state.vote,
                commit: hard_state.commit,
            },
            last_soft_state: SoftState {
                role: Role::Follower,
                leader: NO_NODE,
                term: hard_state.term,
            },
            metrics: Metrics::default(),
            scratch: Vec::new(),
            cfg,
        };
        raft.reset_election_timer();
        Ok(raft)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The vote cast in the current term.
    pub fn vote(&self) -> NodeId {
        self.vote
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this node knows of, if any.
    pub fn leader(&self) -> Option<NodeId> {
        (self.leader != NO_NODE).then_some(self.leader)
    }

    /// The commit index.
    pub fn commit_index(&self) -> LogIndex {
        self.log.commit
    }

    /// The index of the last entry handed out for applying.
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied
    }

    /// The last log index.
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The term of the last log entry.
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }

    /// The highest term this node knows durable in its hard state. A node
    /// may lead in memory before its term is durable (a lone voter wins at
    /// once), but until then nothing it sends or commits as leader leaves
    /// it, and a crash ends that leadership without a trace.
    pub fn durable_term(&self) -> Term {
        self.durable_term
    }

    /// The highest index this node knows durable in its own log.
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted
    }

    /// The term of the entry at `index`, if held.
    pub fn entry_term(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.get(index)
    }

    /// The first log index held in memory.
    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }

    /// The configuration in force (the latest appended).
    pub fn membership(&self) -> &Membership {
        self.conf.current()
    }

    /// The latest snapshot's metadata, if any.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref().map(|s| &s.meta)
    }

    /// This node's clock, in ticks since it started.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Leader only: the replication progress of `peer`.
    pub fn progress(&self, peer: NodeId) -> Option<&Progress> {
        self.progress.get(&peer)
    }

    /// True if `bug` is switched on.
    #[inline(always)]
    pub(crate) fn bug(&self, bug: Bug) -> bool {
        self.cfg.bugs.has(bug)
    }

    /// Advances this node's clock by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// A leader of `term` spoke: follow it.
    pub(crate) fn follow(&mut self, term: Term, leader: NodeId) {
        if self.role != Role::Follower || self.leader != leader {
            self.become_follower(term, leader);
        }
        self.election_elapsed = 0;
        self.leader_contact_tick = self.ticks;
    }

    /// True while a leader was heard from (or this node led, or restarted)
    /// less than the minimum election timeout ago: with check-quorum, vote
    /// requests are then ignored, which is what makes leader leases safe.
    pub(crate) fn in_leader_lease(&self) -> bool {
        self.cfg.check_quorum
            && self.ticks - self.leader_contact_tick < self.cfg.election_timeout_ticks_min
    }

    /// Becomes a follower of `leader` (or of nobody yet) in `term`.
    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId) {
        debug_assert!(term >= self.term);
        if term > self.term {
            self.term = term;
            self.vote = NO_NODE;
        }
        if self.role == Role::Leader {
            self.progress.clear();
            self.transfer = None;
            self.needs_flush = false;
        }
        self.role = Role::Follower;
        if leader != self.leader {
            self.reads.leader_changed(&mut self.out.aborted_reads);
        }
        self.reads.step_down(&mut self.out);
        self.leader = leader;
        self.votes.clear();
        self.reset_election_timer();
    }

    /// Draws a new randomized election timeout and restarts the timer.
    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.election_timeout = self
            .rng
            .random_range(self.cfg.election_timeout_ticks_min..self.cfg.election_timeout_ticks_max);
    }

    /// Queues a message to `to` in the current term.
    pub(crate) fn send(&mut self, to: NodeId, body: Body) {
        self.send_with_term(to, self.term, body);
    }

    /// Queues a message with an explicit term (pre-vote replies carry the
    /// term of the pre-election).
    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: Body) {
        // A leader's replication traffic depends only on state that was
        // durable before it could win its election, so it leaves at once;
        // everything else waits for the batch it belongs to be persisted.
        // A heartbeat reply says only "I am alive in this term": once the
        // term is durable it need not wait behind a slow disk (a follower
        // saving a large snapshot must not make its leader step down).
        let alive = matches!(body, Body::HeartbeatResponse { .. })
            && term == self.term
            && self.durable_term == self.term;
        let immediate = alive
            || self.role == Role::Leader
                && self.durable_term == self.term
                && matches!(
                    body,
                    Body::Append(_)
                        | Body::Heartbeat { .. }
                        | Body::Commit { .. }
                        | Body::Snapshot(_)
                        | Body::TimeoutNow
                        | Body::ReadIndexResponse { .. }
                );
        let m = Message {
            cluster: self.cfg.cluster,
            from: self.cfg.id,
            to,
            term,
            body,
        };
        self.metrics.messages_sent += 1;
        if immediate || self.bug(Bug::SendBeforePersist) {
            self.out.messages.push(m);
        } else {
            self.out.messages_after_persist.push(m);
        }
    }

    /// Raises the commit index to `index` (never lowers it) and runs what
    /// depends on commits.
    pub(crate) fn commit_to(&mut self, index: LogIndex) {
        if index <= self.log.commit {
            return;
        }
        let old = self.log.commit;
        self.log.commit = index;
        if self.role == Role::Leader {
            self.leader_committed(old, index);
        }
    }

    /// True when output is waiting for [`Raft::ready`].
    pub fn has_ready(&self) -> bool {
        let hs = self.hard_state();
        hs != self.last_hard_state
            || self.needs_flush
            || self.reads.has_work(self.log.applied)
            || !self.out.messages.is_empty()
            || !self.out.messages_after_persist.is_empty()
            || self.out.snapshot.is_some()
            || !self.out.snapshot_chunks.is_empty()
            || !self.out.aborted_reads.is_empty()
            || self.log.has_unstable()
            || self.log.applied < self.apply_limit()
            || self.soft_state() != self.last_soft_state
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
            term: self.term,
        }
    }

    /// The highest index that may be handed out for applying.
    fn apply_limit(&self) -> LogIndex {
        if self.bug(Bug::ApplyBeforeCommit) {
            self.log.last_index()
        } else {
            self.log.commit
        }
    }

    /// Takes the output accumulated since the last call. See [`Ready`] for
    /// the order in which the driver must handle it.
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            self.start_read_round();
            self.flush();
        }
        let mut ready = Ready::default();
        let hs = self.hard_state();
        if hs != self.last_hard_state {
            ready.hard_state = Some(hs);
            self.last_hard_state = hs;
        }
        let ss = self.soft_state();
        if ss != self.last_soft_state {
            ready.soft_state = Some(ss);
            self.last_soft_state = ss;
        }
        ready.snapshot = self.out.snapshot.take();
        ready.restore_snapshot = std::mem::take(&mut self.out.restore_snapshot);
        ready.snapshot_streamed = std::mem::take(&mut self.out.snapshot_streamed);
        ready.snapshot_chunks = std::mem::take(&mut self.out.snapshot_chunks);
        ready.truncate_from = self.log.pending_truncate.take();
        ready.entries = self.log.take_unstable();
        let limit = self.apply_limit();
        if self.log.applied < limit {
            let from = self.log.applied + 1;
            ready.committed_entries = self.log.slice(from, limit, self.cfg.max_apply_bytes);
            if let Some(last) = ready.committed_entries.last() {
                self.log.applied = last.index;
            }
        }
        self.reads.take_ready(self.log.applied, &mut ready.reads);
        ready.aborted_reads = std::mem::take(&mut self.out.aborted_reads);
        ready.messages = std::mem::take(&mut self.out.messages);
        ready.messages_after_persist = std::mem::take(&mut self.out.messages_after_persist);
        ready
    }

    /// Takes back a message buffer of an earlier [`Ready`] (emptied here)
    /// once its messages are sent, so that later rounds queue their
    /// messages in its memory instead of allocating anew.
    pub fn recycle(&mut self, mut messages: Vec<Message>) {
        messages.clear();
        if self.out.messages.capacity() == 0 {
            self.out.messages = messages;
        } else if self.out.messages_after_persist.capacity() == 0 {
            self.out.messages_after_persist = messages;
        }
    }

    /// The driver made this node's log durable up to (`index`, `term`) (the
    /// [`Ready::persisted_marker`] of a batch it persisted).
    pub fn on_persisted(&mut self, index: LogIndex, term: Term) {
        // An entry of `term` is durable, so is the batch that carried it, and
        // with it a hard state of at least that term.
        self.durable_term = self.durable_term.max(term.min(self.term));
        if self.log.persisted_to(index, term) && self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Keeps the leader's progress map in step with the configuration in
    /// force: new members get a fresh entry; removed ones keep theirs until
    /// the change commits, so that they learn they were removed (and stay
    /// quiet) instead of being cut off mid-way.
    pub(crate) fn sync_progress(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let me = self.cfg.id;
        let next = self.log.last_index() + 1;
        let mut members: Vec<NodeId> = self
            .conf
            .current()
            .members()
            .map(|(id, _)| id)
            .filter(|&id| id != me)
            .collect();
        let conf_index = self.conf.current_index();
        let previous: Vec<NodeId> = self
            .conf
            .previous()
            .map(|m| {
                m.members()
                    .map(|(id, _)| id)
                    .filter(|&id| id != me)
                    .collect()
            })
            .unwrap_or_default();
        if conf_index > self.log.commit {
            members.extend(previous.iter().copied());
        }
        // A member removed by the latest change is kept until it was told
        // the change committed (then it knows to stay quiet), or until the
        // next change.
        self.progress.retain(|id, p| {
            members.contains(id) || (previous.contains(id) && p.commit_sent < conf_index)
        });
        for id in members {
            self.progress.entry(id).or_insert_with(|| {
                let mut p = Progress::new(next);
                p.recent_active = true;
                p
            });
        }
    }

    /// Records configurations carried by `entries` just appended.
    pub(crate) fn note_membership_entries(&mut self, entries: &[Entry]) {
        let mut changed = false;
        for e in entries {
            if let EntryPayload::Membership(m) = &e.payload {
                self.conf.push(e.index, m.clone());
                changed = true;
            }
        }
        if changed {
            self.sync_progress();
        }
    }

    /// The status of every peer this leader replicates to, for stats.
    pub fn peer_states(&self) -> impl Iterator<Item = (NodeId, &Progress)> {
        self.progress.iter().map(|(&id, p)| (id, p))
    }

    /// Debug check of the invariants that tie the modules together.
    pub fn debug_check(&self) {
        self.log.debug_check();
        if self.role == Role::Leader {
            for p in self.progress.values() {
                p.debug_check(self.cfg.max_inflight_appends);
                if let ReplicationState::Snapshot(s) = &p.state {
                    debug_assert!(s.acked_bytes <= s.sent_bytes);
                }
            }
        }
    }
}
