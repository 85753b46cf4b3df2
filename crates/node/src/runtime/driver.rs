//! The driver task: feeds the core its input (peer messages, client calls,
//! ticks), carries out each `Ready` in the order the core requires, and
//! publishes the node's status. It never blocks on the disk or the network:
//! those are other tasks, reached through queues. It applies committed
//! entries itself with [`crate::ApplyMode::Inline`] (snapshots and restores
//! then run on a blocking task), else hands them to the apply task.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_core::{
    ConfChange, MemberRole, Membership, MembershipError as CoreMembershipError, Message, NodeId,
    ProposeError, Raft, ReadError, Role, SoftState, TransferError, NO_NODE,
};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::error::{LeaderInfo, MembershipError, NodeError, RetryReason, TransferRefused};
use crate::events::Event;
use crate::ids::PeerContext;
use crate::persistence::PersistenceError;
use crate::runtime::apply::{self, ReadReply, Waiter};
use crate::runtime::backlog::ApplyBacklog;
use crate::runtime::peers::{Peer, PeerStats, SenderContext};
use crate::runtime::persist;
use crate::runtime::spool::Spool;
use crate::runtime::{Input, Members, PeerStatus, Status};
use raft_core::pipeline::{Batch, Pipeline, SaveJob};
use raft_core::LogIndex;

/// Inputs handled per round before the core's output is taken (batching).
const MAX_INPUTS_PER_ROUND: usize = 4096;
/// The most batches merged into one write.
const MAX_MERGED: usize = 1024;
/// Ticks after which a held commit index is written alone.
pub(crate) const FLUSH_AFTER_TICKS: u64 = 5;
/// How often commands that waited too long are failed, in ticks.
const EXPIRE_EVERY_TICKS: u64 = 5;

/// The driver's state.
pub(crate) struct Driver {
    pub raft: Raft,
    pub me: NodeId,
    pub id: String,
    pub address: String,
    pub tick: Duration,
    pub inbox: crate::runtime::InboxReceiver,
    /// The write under way, if any (one at a time: what the core hands out
    /// meanwhile waits in the pipeline and becomes the next write).
    pub saving: Option<persist::Saving>,
    /// Where snapshot chunks from the leader are assembled.
    pub spool: Spool,
    /// The store, for saves that need no waiting.
    pub persistence: Arc<dyn crate::persistence::Persistence>,
    /// Where committed entries, reads and waiters go: the apply task, or
    /// the state machine on this task.
    pub applying: apply::Applying,
    /// Committed entries handed over and not yet applied.
    pub backlog: Arc<ApplyBacklog>,
    pub sender: SenderContext,
    pub peer_stats: Arc<PeerStats>,
    pub status_tx: watch::Sender<Status>,
    pub events: broadcast::Sender<Event>,
    /// The core's output on its way through the disk: the ordering,
    /// merging and commit-index rules the simulator runs too.
    pub pipeline: Pipeline,
    pub peers: HashMap<NodeId, Peer>,
    /// Addresses learned from envelopes, for nodes outside the membership.
    pub addresses: HashMap<NodeId, Arc<str>>,
    pub pending_reads: HashMap<u64, (Bytes, ReadReply)>,
    pub next_read: u64,
    pub soft: SoftState,
    /// Set after a storage failure: the node acknowledges nothing more.
    pub stopped: Option<PersistenceError>,
    /// Set by `shutdown`: when to give up on what is in flight, and whom to
    /// tell once stopped.
    pub closing: Option<(Instant, oneshot::Sender<()>)>,
    /// The highest index this node proposed (for a graceful shutdown).
    pub proposed: u64,
    /// The leader id last announced in an event.
    pub announced_leader: Option<String>,
    /// The leader last published in the status.
    pub published_leader: NodeId,
    /// Whether the leader last announced, or last published, was named by
    /// a placeholder (its id not known yet: see [`Driver::id_known`]).
    pub leader_placeholder: (bool, bool),
    /// Ticks so far.
    pub ticks: u64,
    /// Commands proposed this round, registered with the apply task at its
    /// end (one message per round, not per command).
    pub registrations: Vec<(u64, raft_core::Term, Waiter)>,
    /// The configuration last published in the status and given sender
    /// tasks (`None`: not yet).
    pub published_membership: Option<Membership>,
    /// An address learned from an envelope changed since the last publish.
    pub addresses_changed: bool,
    /// After a storage failure while leading: the tick until which the node
    /// still steps messages and sends what needs nothing durable, so that
    /// it can hand leadership to an up-to-date voter.
    pub handing_over: Option<u64>,
    /// Batches released by the pipeline, to complete; kept between rounds
    /// so that its memory is reused.
    pub released: Vec<Batch>,
    /// For a state machine that reads the log's time
    /// ([`crate::StateMachine::uses_log_time`]): what the leader needs to
    /// propose time entries.
    pub log_clock: Option<LogClock>,
}

/// The leader's side of the log's clock.
pub(crate) struct LogClock {
    /// The log's time and the state machine's next deadline, published
    /// by the applier.
    pub published: Arc<apply::PublishedClock>,
    /// The time of the last time entry this node proposed, and in which
    /// term: a leader proposes at most one per millisecond of its clock.
    last: (u64, raft_core::Term),
    /// The clock it stamps ([`crate::Options::wall_clock`]).
    wall_clock: crate::options::WallClock,
}

impl LogClock {
    pub(crate) fn new(wall_clock: crate::options::WallClock, deadline: Option<u64>) -> LogClock {
        LogClock {
            published: Arc::new(apply::PublishedClock::new(deadline)),
            last: (0, 0),
            wall_clock,
        }
    }
}

/// The members of `membership` as the status publishes them; `addresses`
/// are the ones learned from envelopes, by node number.
pub(crate) fn members_view(
    membership: &Membership,
    addresses: &HashMap<NodeId, Arc<str>>,
) -> Members {
    let mut view = Members::default();
    for (n, m) in membership.members() {
        if let Some(ctx) = PeerContext::decode(&m.context) {
            view.addresses.push(Arc::from(ctx.address.as_str()));
            view.list.push(ctx);
        }
        if let Some(learned) = addresses.get(&n) {
            if !view.addresses.contains(learned) {
                view.addresses.push(learned.clone());
            }
        }
    }
    view
}

/// How long a leader whose storage failed tries to hand leadership over,
/// in ticks.
const HAND_OVER_TICKS: u64 = 20;

impl Driver {
    /// Runs until shutdown (or until every handle on the node is dropped).
    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let voters: Vec<NodeId> = self.raft.membership().voters().collect();
        if voters == [self.me] {
            // A lone voter needs nobody's vote: lead at once rather than
            // after an election timeout.
            self.raft.campaign_now();
        }
        loop {
            let mut ticked = false;
            tokio::select! {
                biased;
                (job, result) = persist::wait(&mut self.saving), if self.saving.is_some() => {
                    self.saving = None;
                    self.persisted(job, result);
                }
                lent = self.applying.returned(), if self.applying.is_away() => {
                    if let Some((index, data)) = self.applying.back(lent) {
                        self.compacted(index, data);
                    }
                }
                input = self.inbox.recv() => match input {
                    Some(i) => self.input(i),
                    None => break,
                },
                _ = ticker.tick() => {
                    ticked = true;
                    if self.stopped.is_none() {
                        let handovers = self.raft.metrics().disk_stall_handovers;
                        self.raft.tick();
                        if self.raft.metrics().disk_stall_handovers > handovers {
                            tracing::warn!(
                                node = %self.id,
                                durable = self.raft.persisted_index(),
                                last = self.raft.last_index(),
                                "this leader's log writes stalled: handing leadership to the most up-to-date voter"
                            );
                        }
                    } else if self.handing_over.is_some() {
                        self.raft.tick();
                        self.hand_over_ready();
                    }
                    self.ticks += 1;
                    if self.stopped.is_none() {
                        self.propose_time(true);
                    }
                    self.pipeline.tick();
                    if self.stopped.is_none() {
                        self.start_saves();
                    }
                    if self.ticks.is_multiple_of(EXPIRE_EVERY_TICKS) {
                        let now = Instant::now();
                        self.applying.submit(apply::Job::Expire(now));
                    }
                }
            }
            for _ in 0..MAX_INPUTS_PER_ROUND {
                match self.inbox.try_recv() {
                    Some(i) => self.input(i),
                    None => break,
                }
            }
            if !self.registrations.is_empty() {
                // Before the round's output: the entries cannot be applied
                // before their waiters are registered.
                // The next round's list starts as large as this one was,
                // rather than growing by doubling again.
                let room = self.registrations.len();
                let waiters = std::mem::replace(&mut self.registrations, Vec::with_capacity(room));
                self.applying.submit(apply::Job::Register(waiters));
            }
            if self.stopped.is_none() {
                self.process_ready();
            }
            self.publish(ticked);
            if self.soft.leader != NO_NODE && self.announced_leader.is_none()
                || self.leader_placeholder.0
            {
                self.announce_leader();
            }
            if self.closing.as_ref().is_some_and(|(deadline, _)| {
                Instant::now() >= *deadline
                    || (self.pipeline.idle() && self.raft.applied_index() >= self.proposed)
            }) {
                break;
            }
        }
        self.end_saves().await;
        self.applying.recall().await;
        self.finish();
        let _ = self.sender.transport.shutdown().await;
    }

    /// Before the node reports itself stopped: lets the write under way
    /// end, then saves a held commit index (so that a restart need not
    /// learn it again), each for at most a second. Nothing is released any
    /// more; a node restarted from the same store after `shutdown` returns
    /// never races a write of this one.
    async fn end_saves(&mut self) {
        const AT_MOST: Duration = Duration::from_secs(1);
        if let Some(saving) = self.saving.take() {
            let _ = tokio::time::timeout(AT_MOST, saving).await;
        }
        if self.stopped.is_some() || !self.pipeline.holds_commit() {
            return;
        }
        self.pipeline.flush_now();
        let mut released = Vec::new();
        if let Some(mut job) = self.pipeline.next_save(MAX_MERGED, &mut released) {
            // The write may carry batches that waited behind the one under
            // way: their snapshot chunks go to the spool first, as in
            // `start_saves` (a streamed snapshot's data is the spooled file).
            if persist::spool_chunks(&mut self.spool, &mut job).is_err() {
                return;
            }
            let saving = persist::start(self.persistence.clone(), job);
            let _ = tokio::time::timeout(AT_MOST, saving).await;
        }
    }

    fn finish(&mut self) {
        self.status_tx.send_modify(|s| {
            s.role = Role::Follower;
            s.leader = None;
            s.stopped.get_or_insert(NodeError::ShuttingDown);
        });
        for (_, (_, reply)) in self.pending_reads.drain() {
            let _ = reply.send(Err(NodeError::ShuttingDown));
        }
        self.applying
            .submit(apply::Job::FailPending(NodeError::ShuttingDown));
        self.peers.clear();
        if let Some((_, done)) = self.closing.take() {
            let _ = done.send(());
        }
    }

    fn refuse(&self) -> Option<NodeError> {
        if let Some(reason) = &self.stopped {
            return Some(NodeError::Stopped(reason.clone()));
        }
        self.closing.as_ref().map(|_| NodeError::ShuttingDown)
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Message(m, from) => {
                if !from.is_empty() && self.addresses.get(&m.from) != Some(&from) {
                    self.addresses.insert(m.from, from);
                    self.addresses_changed = true;
                }
                if self.defer_append(&m) {
                    return;
                }
                if self.stopped.is_some() {
                    if self.handing_over.is_some() {
                        let _ = self.raft.step(m);
                        self.hand_over_ready();
                    }
                    return;
                }
                if let Err(e) = self.raft.step(m) {
                    let _ = self.events.send(Event::Warning(format!("refused: {e}")));
                }
            }
            Input::Propose { data, reply } => {
                if let Some(e) = self.refuse() {
                    let _ = reply.send(Err(e));
                    return;
                }
                self.propose_time(false);
                match self.raft.propose(data) {
                    Ok(index) => {
                        self.proposed = index;
                        let term = self.raft.term();
                        self.registrations
                            .push((index, term, Waiter::Command(reply)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.propose_error(e, "")));
                    }
                }
            }
            Input::Read { query, reply } => {
                if let Some(e) = self.refuse() {
                    let _ = reply.send(Err(e));
                    return;
                }
                let id = self.next_read;
                self.next_read += 1;
                match self.raft.read_index(id) {
                    Ok(()) => {
                        self.pending_reads.insert(id, (query, reply));
                    }
                    Err(ReadError::NoLeader) => {
                        let _ = reply.send(Err(NodeError::NotLeader { leader: None }));
                    }
                }
            }
            Input::Change {
                mut change,
                id,
                joining_only,
                reply,
            } => {
                if let Some(e) = self.refuse() {
                    let _ = reply.send(Err(e));
                    return;
                }
                let n = match &change {
                    ConfChange::AddVoter { id, .. }
                    | ConfChange::AddLearner { id, .. }
                    | ConfChange::Remove { id } => *id,
                };
                let member = self.raft.membership().get(n);
                let joining = member.is_some_and(|m| {
                    m.role == MemberRole::Learner
                        && PeerContext::decode(&m.context).is_some_and(|c| c.joining)
                });
                // (On a follower the core refuses the change: not the
                // leader, which is what the caller needs to know.)
                if joining_only && !joining && self.raft.role() == Role::Leader {
                    let e = NodeError::Membership(MembershipError::NotJoining {
                        id: self.name_of(n, &id),
                    });
                    let _ = reply.send(Err(e));
                    return;
                }
                if let ConfChange::AddVoter { context, .. } = &mut change {
                    // A promotion (no context) of a node that is not a
                    // member would add a voter nobody can reach.
                    if context.is_empty() && member.is_none() {
                        let e = NodeError::Membership(MembershipError::NotMember {
                            id: self.name_of(n, &id),
                            add_first: true,
                        });
                        let _ = reply.send(Err(e));
                        return;
                    }
                    // A promotion ends a join: the voter's record loses
                    // the mark, whoever promotes it.
                    if context.is_empty() && joining {
                        if let Some(c) = member.and_then(|m| PeerContext::decode(&m.context)) {
                            *context = c.marked(false).encode();
                        }
                    }
                }
                match self.raft.propose_conf_change(change) {
                    Ok(index) => {
                        self.proposed = index;
                        let term = self.raft.term();
                        self.registrations
                            .push((index, term, Waiter::Change(reply)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.propose_error(e, &id)));
                    }
                }
            }
            Input::Transfer { to, id, reply } => {
                let r = self.raft.transfer_leader(to).map_err(|e| match e {
                    TransferError::NotLeader { leader } => NodeError::NotLeader {
                        leader: self.leader_info(leader.unwrap_or(NO_NODE)),
                    },
                    TransferError::NotVoter(n) => NodeError::Transfer(TransferRefused::NotVoter {
                        id: self.name_of(n, &id),
                    }),
                    TransferError::AlreadyLeader(n) => {
                        NodeError::Transfer(TransferRefused::AlreadyLeader {
                            id: self.name_of(n, &id),
                        })
                    }
                });
                let _ = reply.send(r);
            }
            Input::Weaken(d) => {
                let ticks = (d.as_micros() / self.tick.as_micros().max(1)) as u64;
                self.raft.weaken(ticks);
            }
            Input::Peers(reply) => {
                let _ = reply.send(self.peer_statuses());
            }
            Input::Empty(reply) => {
                let r = &self.raft;
                let _ = reply.send(r.last_index() == 0 && r.membership().is_empty());
            }
            Input::Compact { index, data } => {
                // Refused only when a newer snapshot already covers it.
                let _ = self.raft.compact(index, data);
            }
            Input::LocalRead { query, reply } => {
                self.applying.submit(apply::Job::LocalRead { query, reply });
            }
            Input::Shutdown(done) => {
                let grace = Duration::from_secs(1);
                self.closing = Some((Instant::now() + grace, done));
            }
        }
    }

    /// Whether to leave `m` unanswered: an append with entries while the
    /// state machine is too far behind (its backlog full). The entries
    /// would only wait in memory to be applied; the leader sends them again
    /// (it probes a follower that acknowledged nothing for a heartbeat
    /// interval), by when the backlog has drained. Heartbeats and the rest
    /// are still handled: the follower keeps its leader and elects nobody.
    fn defer_append(&self, m: &Message) -> bool {
        let carries_entries =
            matches!(&m.body, raft_core::Body::Append(a) if !a.entries.is_empty());
        if carries_entries && self.raft.role() != Role::Leader && self.backlog.full() {
            self.backlog.deferred_append();
            return true;
        }
        false
    }

    /// `e` with the node it names as users know it; `given` is the id the
    /// caller gave (empty if none).
    /// Proposes a time entry stamped with this node's clock, if the state
    /// machine reads the log's time, this node leads, and its clock moved
    /// on since its last time entry of this term: ahead of a command
    /// (`due` false), or when the state machine's next deadline has come
    /// (`due` true: on a tick).
    fn propose_time(&mut self, due: bool) {
        let Some(clock) = &mut self.log_clock else {
            return;
        };
        if self.raft.role() != Role::Leader {
            return;
        }
        let now = (clock.wall_clock)();
        let term = self.raft.term();
        let (last, last_term) = clock.last;
        if last_term == term && now <= last {
            return;
        }
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        // A leader whose clock is behind the log's time cannot move it:
        // no entry until its clock catches up.
        if now <= clock.published.time.load(relaxed) {
            return;
        }
        if due && clock.published.deadline.load(relaxed) > now {
            return;
        }
        if self.raft.propose(crate::session::time_entry(now)).is_ok() {
            clock.last = (now, term);
            // A due deadline is not proposed again on every tick while the
            // entry is on its way: the applier publishes the next one once
            // this entry is applied.
            if due {
                clock.published.deadline.store(u64::MAX, relaxed);
            }
        }
    }

    fn propose_error(&self, e: ProposeError, given: &str) -> NodeError {
        match e {
            ProposeError::NotLeader { leader } => NodeError::NotLeader {
                leader: self.leader_info(leader.unwrap_or(NO_NODE)),
            },
            ProposeError::TransferInProgress => NodeError::NotLeader { leader: None },
            ProposeError::Backpressure { .. } => NodeError::Busy,
            ProposeError::ChangeInProgress(index) => {
                NodeError::Retry(RetryReason::ChangeInProgress { index })
            }
            ProposeError::NotReady => NodeError::Retry(RetryReason::LeaderNotReady),
            ProposeError::Membership(e) => NodeError::Membership(self.membership_error(&e, given)),
        }
    }

    /// A refused configuration change, naming the node by its id (the core
    /// knows only its number).
    fn membership_error(&self, e: &CoreMembershipError, given: &str) -> MembershipError {
        match *e {
            CoreMembershipError::ReservedId => MembershipError::ReservedId(e.to_string()),
            CoreMembershipError::AlreadyMember(n) => MembershipError::AlreadyMember {
                id: self.name_of(n, given),
            },
            CoreMembershipError::NotMember(n) => MembershipError::NotMember {
                id: self.name_of(n, given),
                add_first: false,
            },
            CoreMembershipError::LastVoter(n) => MembershipError::LastVoter {
                id: self.name_of(n, given),
            },
        }
    }

    /// The id users know node `n` by: from the membership or this node's
    /// own, else `given` (the id a caller named it by) if that is `n`, else
    /// a placeholder made from the number.
    fn name_of(&self, n: NodeId, given: &str) -> String {
        if n == self.me {
            return self.id.clone();
        }
        if let Some(ctx) = PeerContext::of(self.raft.membership(), n) {
            return ctx.id;
        }
        if !given.is_empty() && crate::ids::node_number(given) == n {
            return given.to_string();
        }
        format!("node-{n:016x}")
    }

    /// Whether node `n`'s id is known (it is this node, or in the
    /// configuration), rather than a placeholder made from its number.
    fn id_known(&self, n: NodeId) -> bool {
        n == self.me || PeerContext::of(self.raft.membership(), n).is_some()
    }

    /// The id and address of node `n`, from the membership or from what it
    /// told us in its envelopes.
    fn context(&self, n: NodeId) -> Option<PeerContext> {
        if n == self.me {
            return Some(PeerContext::new(self.id.clone(), self.address.clone()));
        }
        PeerContext::of(self.raft.membership(), n).or_else(|| {
            self.addresses
                .get(&n)
                .map(|a| PeerContext::new(format!("node-{n:016x}"), a.to_string()))
        })
    }

    fn leader_info(&self, leader: NodeId) -> Option<LeaderInfo> {
        if leader == NO_NODE {
            return None;
        }
        self.context(leader).map(|c| LeaderInfo {
            client_address: self.sender.client_addresses.get(&c.id),
            id: c.id,
            address: c.address,
        })
    }

    /// Takes and carries out every batch the core has ready: through the
    /// pipeline, which says what may be sent at once, what must be saved
    /// and which batches are released (durable, in order).
    fn process_ready(&mut self) {
        let mut released = std::mem::take(&mut self.released);
        while self.raft.has_ready() {
            let rd = self.raft.ready();
            let leadership_lost = match rd.soft_state {
                Some(ss) => self.soft_state_changed(ss),
                None => false,
            };
            let mut send = self.pipeline.push(rd, leadership_lost, &mut released);
            for m in send.drain(..) {
                self.send(m);
            }
            self.raft.recycle(send);
            for batch in released.drain(..) {
                self.complete(batch);
            }
        }
        self.released = released;
        self.start_saves();
    }

    /// Hands the pipeline's next write to the store, unless one is under
    /// way (batches that arrive meanwhile become the next write: group
    /// commit). A store that saves without waiting (in memory) saves here,
    /// with no hop to the persistence task and back.
    fn start_saves(&mut self) {
        let mut released = std::mem::take(&mut self.released);
        while self.stopped.is_none() && self.saving.is_none() && self.pipeline.has_save() {
            let job = self.pipeline.next_save(MAX_MERGED, &mut released);
            for batch in released.drain(..) {
                self.complete(batch);
            }
            let Some(mut job) = job else {
                continue;
            };
            let inline = job.save.snapshot.is_none()
                && job
                    .batches
                    .iter()
                    .all(|b| b.chunks.is_empty() && !b.streamed);
            if inline {
                match self
                    .persistence
                    .try_save_now(persist::change_of(std::mem::take(&mut job.save)))
                {
                    Ok(Ok(())) => {
                        self.pipeline.saved(job, &mut released);
                        for batch in released.drain(..) {
                            self.complete(batch);
                        }
                        continue;
                    }
                    Ok(Err(e)) => {
                        self.stop(e);
                        break;
                    }
                    Err(change) => job.save = persist::save_of(*change),
                }
            }
            if let Err(e) = persist::spool_chunks(&mut self.spool, &mut job) {
                self.stop(e);
                break;
            }
            self.saving = Some(persist::start(self.persistence.clone(), job));
        }
        self.released = released;
    }

    /// The write under way ended.
    fn persisted(
        &mut self,
        job: SaveJob,
        result: Result<Option<(LogIndex, Bytes)>, PersistenceError>,
    ) {
        match result {
            Ok(mapped) => {
                if let Some((index, data)) = mapped {
                    // Send this snapshot on from where it is stored, not
                    // from memory.
                    self.raft.set_snapshot_data(index, data);
                }
                let mut released = Vec::new();
                self.pipeline.saved(job, &mut released);
                for batch in released {
                    self.complete(batch);
                }
            }
            Err(e) => self.stop(e),
        }
    }

    /// A batch is durable: release what waited for it.
    fn complete(&mut self, mut job: Batch) {
        let mut after = std::mem::take(&mut job.after);
        for m in after.drain(..) {
            self.send(m);
        }
        self.raft.recycle(after);
        if let Some((index, term)) = job.marker {
            self.raft.on_persisted(index, term);
        }
        for id in job.aborted {
            if let Some((_, reply)) = self.pending_reads.remove(&id) {
                let leader = self.leader_info(self.raft.leader().unwrap_or(NO_NODE));
                let _ = reply.send(Err(NodeError::NotLeader { leader }));
            }
        }
        let reads: Vec<(Bytes, ReadReply)> = job
            .reads
            .iter()
            .filter_map(|r| self.pending_reads.remove(&r.id))
            .collect();
        if job.restore.is_some() || !job.committed.is_empty() || !reads.is_empty() {
            self.backlog.handed(&job.committed);
            self.applying.submit(apply::Job::Batch {
                restore: job.restore,
                entries: job.committed,
                reads,
            });
        }
        if job.leadership_lost {
            // After the entries committed in the same step are applied.
            self.applying
                .submit(apply::Job::FailPending(NodeError::LeadershipLost));
        }
    }

    /// The state machine, applied on this task, made a snapshot at `index`
    /// (on a blocking task): the core compacts its log up to it.
    fn compacted(&mut self, index: LogIndex, data: Bytes) {
        // Refused only when a newer snapshot already covers it.
        let _ = self.raft.compact(index, data);
        let _ = self.events.send(Event::SnapshotTaken { index });
    }

    /// Storage failed: stop acknowledging anything (fail-stop), and say why.
    fn stop(&mut self, reason: PersistenceError) {
        if self.stopped.is_some() {
            return;
        }
        let _ = self.events.send(Event::Warning(format!(
            "storage failed, the node stops acknowledging: {reason}"
        )));
        for (_, (_, reply)) in self.pending_reads.drain() {
            let _ = reply.send(Err(NodeError::Stopped(reason.clone())));
        }
        self.applying
            .submit(apply::Job::FailPending(NodeError::Stopped(reason.clone())));
        self.peers.clear();
        self.stopped = Some(reason);
        self.start_hand_over();
    }

    /// A leader whose storage failed hands leadership to its most
    /// up-to-date voter if it can (best effort): the others then need not
    /// wait for an election timeout.
    fn start_hand_over(&mut self) {
        if self.raft.role() != Role::Leader {
            return;
        }
        let me = self.me;
        let best = self
            .raft
            .membership()
            .voters()
            .filter(|&n| n != me)
            .filter_map(|n| self.raft.progress(n).map(|p| (p.match_index, n)))
            .max();
        let Some((_, to)) = best else { return };
        if self.raft.transfer_leader(to).is_ok() {
            let target = self
                .context(to)
                .map_or_else(|| format!("{to:016x}"), |c| c.id);
            tracing::warn!(to = %target, "handing leadership over after the storage failure");
            let _ = self.events.send(Event::Warning(format!(
                "handing leadership to {target} after the storage failure"
            )));
            self.handing_over = Some(self.ticks + HAND_OVER_TICKS);
            self.hand_over_ready();
        }
    }

    /// While handing leadership over after a storage failure: sends what
    /// the core allows before anything is durable (appends from memory,
    /// heartbeats, the TimeoutNow), and drops the rest; nothing is saved,
    /// applied or acknowledged. Ends once the node no longer leads, or
    /// after [`HAND_OVER_TICKS`].
    fn hand_over_ready(&mut self) {
        while self.raft.has_ready() {
            let rd = self.raft.ready();
            if let Some(ss) = rd.soft_state {
                self.soft_state_changed(ss);
            }
            for m in rd.messages {
                self.send(m);
            }
        }
        if self.raft.role() != Role::Leader
            || self.handing_over.is_some_and(|until| self.ticks >= until)
        {
            self.handing_over = None;
        }
    }

    /// Reports role and leader changes; returns true if leadership was lost.
    fn soft_state_changed(&mut self, ss: SoftState) -> bool {
        let old = self.soft;
        self.soft = ss;
        if old.role != ss.role {
            let _ = self.events.send(Event::RoleChanged {
                role: ss.role,
                term: ss.term,
            });
        }
        self.announce_leader();
        old.role == Role::Leader && ss.role != Role::Leader
    }

    /// Sends `LeaderChanged` when the leader changed. A joining node learns
    /// its leader's id only with the configuration: until then no leader is
    /// announced, so that events name nodes by their ids, never by a
    /// placeholder.
    fn announce_leader(&mut self) {
        let n = self.raft.leader().unwrap_or(NO_NODE);
        let leader = self.leader_info(n).map(|l| l.id);
        self.leader_placeholder.0 = leader.is_some() && !self.id_known(n);
        // A leader not yet known by id counts as none known, for now.
        let leader = if self.leader_placeholder.0 {
            None
        } else {
            leader
        };
        if leader != self.announced_leader {
            self.announced_leader = leader.clone();
            let _ = self.events.send(Event::LeaderChanged {
                leader,
                term: self.raft.term(),
            });
        }
    }

    /// Hands a message to the sender task of its addressee (starting one if
    /// needed).
    fn send(&mut self, m: Message) {
        let to = m.to;
        if let Some(p) = self.peers.get(&to) {
            p.send(m, &self.peer_stats);
            return;
        }
        let Some(ctx) = self.context(to) else {
            self.peer_stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let peer = Peer::start(self.sender.clone(), ctx.id, ctx.address);
        peer.send(m, &self.peer_stats);
        self.peers.insert(to, peer);
    }

    /// Whether the configuration or a learned address changed since the
    /// last call; on a new configuration, every member gets a sender task
    /// that probes it while idle (so that every node, followers included,
    /// knows which peers are up), and former members' tasks stop probing.
    fn membership_changed(&mut self) -> bool {
        let addresses = std::mem::take(&mut self.addresses_changed);
        if self.published_membership.as_ref() == Some(self.raft.membership()) {
            return addresses;
        }
        let membership = self.raft.membership().clone();
        for (n, peer) in &self.peers {
            peer.probe(membership.contains(*n));
        }
        for (n, m) in membership.members() {
            if n == self.me || self.peers.contains_key(&n) {
                continue;
            }
            let Some(ctx) = PeerContext::decode(&m.context) else {
                continue;
            };
            let peer = Peer::start(self.sender.clone(), ctx.id, ctx.address);
            peer.probe(true);
            self.peers.insert(n, peer);
        }
        self.published_membership = Some(membership);
        true
    }

    fn peer_statuses(&self) -> Vec<PeerStatus> {
        let tick = self.tick;
        let now = self.raft.ticks();
        self.raft
            .membership()
            .members()
            .filter(|(n, _)| *n != self.me)
            .map(|(n, m)| {
                let ctx = PeerContext::decode(&m.context);
                let progress = self.raft.progress(n);
                PeerStatus {
                    id: ctx
                        .as_ref()
                        .map_or(format!("node-{n:016x}"), |c| c.id.clone()),
                    joining: m.role == MemberRole::Learner
                        && ctx.as_ref().is_some_and(|c| c.joining),
                    address: ctx.map_or_else(String::new, |c| c.address),
                    role: m.role,
                    match_index: progress.map(|p| p.match_index),
                    last_contact: progress
                        .map(|p| tick * now.saturating_sub(p.last_contact_tick) as u32),
                    connected: self.peers.get(&n).is_some_and(Peer::is_connected),
                    inflight: progress.map_or(0, |p| p.inflight.len()),
                }
            })
            .collect()
    }

    /// Publishes the status, touching only what changed. Role, term, leader
    /// and stop go out at once; positions and counters at most once per
    /// tick (`fresh`), so that a busy node does not wake watchers per round.
    fn publish(&mut self, fresh: bool) {
        let r = &self.raft;
        let (role, term, leader) = (r.role(), r.term(), r.leader().unwrap_or(NO_NODE));
        // A joining node knows its leader's id only once the configuration
        // arrives: until then the id is a placeholder, refreshed each round.
        let leader_info = if leader != self.published_leader || self.leader_placeholder.1 {
            self.published_leader = leader;
            let info = self.leader_info(leader);
            self.leader_placeholder.1 = info.is_some() && !self.id_known(leader);
            Some(info)
        } else {
            None
        };
        let members = self
            .membership_changed()
            .then(|| Arc::new(members_view(self.raft.membership(), &self.addresses)));
        let r = &self.raft;
        let stopped = &self.stopped;
        self.status_tx.send_if_modified(|s| {
            let mut changed = false;
            macro_rules! set {
                ($field:ident, $v:expr) => {
                    if s.$field != $v {
                        s.$field = $v;
                        changed = true;
                    }
                };
            }
            set!(role, role);
            set!(term, term);
            if let Some(l) = leader_info {
                s.leader = l;
                changed = true;
            }
            if s.stopped.is_some() != stopped.is_some() {
                s.stopped = stopped.clone().map(NodeError::Stopped);
                changed = true;
            }
            if let Some(m) = members {
                if *s.members != *m {
                    s.members = m;
                    changed = true;
                }
            }
            if fresh || changed {
                set!(commit_index, r.commit_index());
                set!(applied_index, r.applied_index());
                set!(last_index, r.last_index());
                set!(snapshot_index, r.snapshot_meta().map_or(0, |m| m.index));
                set!(empty, r.last_index() == 0 && r.membership().is_empty());
                set!(core, *r.metrics());
            }
            changed
        });
    }
}
