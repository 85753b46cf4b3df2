//! Applying: the state machine applies committed entries in order, answers
//! the commands waiting for them, serves reads once their index is
//! applied, and takes snapshots by policy; on a task of its own
//! ([`crate::ApplyMode::Task`]) or on the driver ([`Applying::Inline`],
//! which lends the state machine to a blocking task for snapshots and
//! restores).

use std::collections::VecDeque;

use bytes::Bytes;
use std::sync::Arc;

use raft_core::{Entry, EntryPayload, LogIndex, MemberRole, Membership, NodeId, Snapshot, Term};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::{Attempt, NodeError, OutcomeUnknown, UnknownKind};
use crate::events::Event;
use crate::ids::PeerContext;
use crate::runtime::backlog::{batch_bytes, ApplyBacklog};
use crate::runtime::{Input, Removal};
use crate::session::{self, SessionRefusal, Sessions};
use crate::state_machine::StateMachine;

/// Who waits for an entry to be applied.
pub(crate) enum Waiter {
    /// A command: gets the state machine's output.
    Command(oneshot::Sender<Result<Bytes, NodeError>>),
    /// A membership change: gets told it committed.
    Change(oneshot::Sender<Result<(), NodeError>>),
}

impl Waiter {
    /// Fails the call waiting for an entry that is in the log: whatever
    /// ended the wait (a shutdown, a storage failure), the entry may still
    /// be committed and applied, so the caller is told the outcome is
    /// unknown.
    fn fail(self, e: NodeError) {
        let attempt = match self {
            // Whether it is numbered, the caller says (`Call::refine`).
            Waiter::Command(_) => Attempt::Command,
            Waiter::Change(_) => Attempt::MembershipChange,
        };
        let e = e.unknown_outcome_of(attempt, UnknownKind::NodeStopped);
        match self {
            Waiter::Command(tx) => {
                let _ = tx.send(Err(e));
            }
            Waiter::Change(tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

/// A reply channel for reads: the answer in parts
/// ([`StateMachine::query_parts`]).
pub(crate) type ReadReply = oneshot::Sender<Result<Vec<Bytes>, NodeError>>;

/// Work for the apply task, in the order it must happen.
pub(crate) enum Job {
    /// Tell each waiter when its entry (`index`, `term`) is applied; in
    /// ascending index order (one job per driver round).
    Register(Vec<(LogIndex, Term, Waiter)>),
    /// Durable output of the core: restore, apply, then serve reads.
    Batch {
        restore: Option<Snapshot>,
        entries: Vec<Entry>,
        reads: Vec<(Bytes, ReadReply)>,
    },
    /// A possibly stale read of the local state.
    LocalRead { query: Bytes, reply: ReadReply },
    /// Leadership was lost: the registered commands' outcome is unknown.
    FailPending(NodeError),
    /// Fail the commands registered before `now - command_timeout`.
    Expire(tokio::time::Instant),
}

/// The state of the apply task.
pub(crate) struct Applier {
    pub sm: Box<dyn StateMachine>,
    /// The client sessions: which numbered commands were applied, and
    /// their replies (saved in snapshots with the state machine's state).
    pub sessions: Sessions,
    pub applied: LogIndex,
    /// `applied`, published once a batch is applied (for `Node::metrics`),
    /// and what is left to apply (for back-pressure).
    pub backlog: Arc<ApplyBacklog>,
    pub snapshot_index: LogIndex,
    pub snapshot_threshold: u64,
    pub membership: Membership,
    /// Commands waiting for their entry, by ascending index (registrations
    /// come in index order), with when they were registered.
    pub waiters: VecDeque<(LogIndex, Term, Waiter, tokio::time::Instant)>,
    /// How long a command may wait before it fails with a timeout.
    pub command_timeout: std::time::Duration,
    pub events: broadcast::Sender<Event>,
    /// Weak, so that the driver stops once every `Node` handle is gone.
    pub to_raft: crate::runtime::WeakInboxSender,
    /// This node's number.
    pub me: NodeId,
    /// Set when an applied configuration removes this node.
    pub removal: Arc<Removal>,
    /// The log's time: the largest time entry applied since the node
    /// started or last restored a snapshot (0: none).
    pub log_time: u64,
    /// The log's time and the state machine's next deadline, published
    /// after each batch for the driver.
    pub clock: Arc<PublishedClock>,
}

/// What the applier tells the driver of the log's clock.
#[derive(Debug)]
pub(crate) struct PublishedClock {
    /// The state machine's next deadline
    /// ([`StateMachine::next_deadline_ms`]; `u64::MAX`: none).
    pub deadline: std::sync::atomic::AtomicU64,
    /// The log's time applied so far (0: none since start or restore).
    pub time: std::sync::atomic::AtomicU64,
}

impl PublishedClock {
    pub(crate) fn new(deadline: Option<u64>) -> PublishedClock {
        PublishedClock {
            deadline: std::sync::atomic::AtomicU64::new(deadline.unwrap_or(u64::MAX)),
            time: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Applier {
    /// Runs until the channel closes (the apply task of
    /// [`crate::ApplyMode::Task`]).
    pub(crate) async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            if self.handle(job) {
                let (index, data) = self.snapshot();
                if let Some(to_raft) = self.to_raft.upgrade() {
                    let _ = to_raft.send(Input::Compact { index, data }).await;
                }
                let _ = self.events.send(Event::SnapshotTaken { index });
            }
        }
        self.fail_all(NodeError::ShuttingDown);
    }

    /// Carries out `job`; true when the snapshot policy asks for a
    /// snapshot now ([`Applier::snapshot`]).
    pub(crate) fn handle(&mut self, job: Job) -> bool {
        match job {
            Job::Register(waiters) => {
                let now = tokio::time::Instant::now();
                for (index, term, waiter) in waiters {
                    let in_order = self.waiters.back().is_none_or(|w| w.0 < index);
                    if index <= self.applied || !in_order {
                        // Cannot happen (registration precedes the commit,
                        // and comes in index order), but never leave a
                        // caller hanging.
                        waiter.fail(NodeError::LeadershipLost);
                    } else {
                        self.waiters.push_back((index, term, waiter, now));
                    }
                }
            }
            Job::Batch {
                restore,
                entries,
                reads,
            } => {
                if let Some(s) = restore {
                    if let Err(e) = self.restore(s) {
                        let _ = self.events.send(Event::Warning(e));
                    }
                }
                let last = entries.last().map(|e| e.index);
                let (count, bytes) = (entries.len(), batch_bytes(&entries));
                for e in entries {
                    self.apply(e);
                }
                let relaxed = std::sync::atomic::Ordering::Relaxed;
                let deadline = self.sm.next_deadline_ms().unwrap_or(u64::MAX);
                self.clock.deadline.store(deadline, relaxed);
                self.clock.time.store(self.log_time, relaxed);
                self.backlog.applied_batch(self.applied, count, bytes);
                for (query, reply) in reads {
                    let _ = reply.send(Ok(self.sm.query_parts(&query)));
                }
                if let Some(index) = last {
                    let _ = self.events.send(Event::Applied { index });
                }
                return self.snapshot_due();
            }
            Job::LocalRead { query, reply } => {
                let _ = reply.send(Ok(self.sm.query_parts(&query)));
            }
            Job::FailPending(e) => self.fail_all(e),
            Job::Expire(now) => {
                let after = self.command_timeout;
                while self.waiters.front().is_some_and(|w| w.3 + after <= now) {
                    if let Some((_, _, w, _)) = self.waiters.pop_front() {
                        w.fail(NodeError::Timeout {
                            what: "command",
                            after,
                        });
                    }
                }
            }
        }
        false
    }

    /// Fails every command waiting for its entry.
    pub(crate) fn fail_all(&mut self, e: NodeError) {
        for (_, _, w, _) in self.waiters.drain(..) {
            w.fail(e.clone());
        }
    }

    /// Whether the snapshot policy asks for a snapshot now.
    fn snapshot_due(&self) -> bool {
        let t = self.snapshot_threshold;
        t != 0 && self.applied >= self.snapshot_index + t
    }

    /// Serializes the state machine: its applied index and the data, for
    /// the core to compact its log up to.
    pub(crate) fn snapshot(&mut self) -> (LogIndex, Bytes) {
        let index = self.applied;
        let data = self.sessions.wrap_snapshot(self.sm.snapshot());
        self.snapshot_index = index;
        (index, data)
    }

    /// Whether `job` restores a snapshot (a long operation).
    pub(crate) fn restores(job: &Job) -> bool {
        matches!(
            job,
            Job::Batch {
                restore: Some(_),
                ..
            }
        )
    }

    fn restore(&mut self, s: Snapshot) -> Result<(), String> {
        let index = s.meta.index;
        self.sessions
            .unwrap_snapshot(s.data.clone())
            .and_then(|data| self.sm.restore(data))
            .map_err(|e| format!("cannot restore the snapshot at {index}: {e}"))?;
        self.applied = index;
        self.snapshot_index = index;
        self.log_time = 0;
        self.membership_changed(s.meta.membership, index);
        // Commands at or below the snapshot were decided elsewhere; their
        // outcome is unknown here.
        while self.waiters.front().is_some_and(|w| w.0 <= index) {
            if let Some((_, _, w, _)) = self.waiters.pop_front() {
                w.fail(NodeError::LeadershipLost);
            }
        }
        let _ = self.events.send(Event::SnapshotInstalled { index });
        Ok(())
    }

    fn apply(&mut self, e: Entry) {
        debug_assert!(e.index > self.applied);
        self.applied = e.index;
        let output = match e.payload {
            EntryPayload::Command(data) => Some(self.apply_command(e.index, &data)),
            EntryPayload::Membership(m) => {
                self.membership_changed(m, e.index);
                None
            }
            EntryPayload::Blank => None,
        };
        // Waiters below this index were for entries that were replaced.
        while self.waiters.front().is_some_and(|w| w.0 <= e.index) {
            let Some((index, term, waiter, _)) = self.waiters.pop_front() else {
                break;
            };
            if index < e.index || term != e.term {
                waiter.fail(NodeError::LeadershipLost);
                continue;
            }
            match waiter {
                Waiter::Command(tx) => {
                    let _ = tx.send(output.clone().unwrap_or(Ok(Bytes::new())));
                }
                Waiter::Change(tx) => {
                    let _ = tx.send(Ok(()));
                }
            }
        }
    }

    /// Applies the command entry `data` at `index`: a command without a
    /// session goes to the state machine; a numbered command goes to it
    /// unless the session table knows it (then its first reply) or refuses
    /// it; a registration goes to the session table only.
    fn apply_command(&mut self, index: LogIndex, data: &[u8]) -> Result<Bytes, NodeError> {
        match session::Entry::decode(data) {
            session::Entry::Plain(command) => Ok(self.sm.apply(index, command)),
            session::Entry::Register { time } => Ok(self.sessions.register(index, time)),
            session::Entry::Time { time } => {
                if time > self.log_time {
                    self.log_time = time;
                    self.sm.advance_time(index, time);
                }
                Ok(Bytes::new())
            }
            session::Entry::Numbered {
                time,
                session,
                seq,
                floor,
                command,
            } => {
                let sm = &mut self.sm;
                self.sessions
                    .command(time, session, seq, floor, || sm.apply(index, command))
                    .map_err(|refusal| match refusal {
                        SessionRefusal::Expired => NodeError::SessionExpired { session },
                        SessionRefusal::Forgotten => OutcomeUnknown::new(
                            Attempt::NumberedCommand { session, seq },
                            UnknownKind::WindowExceeded,
                        )
                        .into(),
                    })
            }
        }
    }

    /// The configuration applied at `index` is `next`: tell subscribers who
    /// joined and who left, and note whether this node is still a member
    /// (a node that joins starts with no configuration: only a member that
    /// is dropped counts as removed).
    fn membership_changed(&mut self, next: Membership, index: LogIndex) {
        if next.contains(self.me) {
            self.removal.member_again();
        } else if self.membership.contains(self.me) && self.removal.removed_at(index) {
            tracing::warn!(
                index,
                "this node was removed from the cluster: it serves no more commands or reads; stop it, or add it again as a new, empty node"
            );
            let _ = self.events.send(Event::Removed { index: Some(index) });
        }
        for (id, m) in next.members() {
            let before = self.membership.get(id).map(|b| b.role);
            if before != Some(m.role) {
                if let Some(ctx) = PeerContext::decode(&m.context) {
                    let _ = self.events.send(Event::Joined {
                        id: ctx.id,
                        address: ctx.address,
                        voter: m.role == MemberRole::Voter,
                    });
                }
            }
        }
        for (id, m) in self.membership.members() {
            if !next.contains(id) {
                if let Some(ctx) = PeerContext::decode(&m.context) {
                    let _ = self.events.send(Event::Left { id: ctx.id });
                }
            }
        }
        self.membership = next;
    }
}

/// The state machine lent to a blocking task and given back, with the
/// snapshot made meanwhile (index and data), if any.
pub(crate) type Lent = (Box<Applier>, Option<(LogIndex, Bytes)>);

/// Where the driver hands apply work: to the apply task
/// ([`crate::ApplyMode::Task`]), or to the state machine it holds itself
/// ([`crate::ApplyMode::Inline`]).
pub(crate) enum Applying {
    /// The apply task's queue.
    Task(mpsc::UnboundedSender<Job>),
    /// The state machine, on the driver.
    Inline(Box<Inline>),
}

/// The state machine applied on the driver. Snapshots and restores, which
/// take time in proportion to the state, run on a blocking task instead:
/// the state machine is lent to it, and the jobs that arrive meanwhile
/// queue (counted in the apply backlog) until it comes back.
pub(crate) struct Inline {
    /// The state, unless lent out.
    applier: Option<Box<Applier>>,
    /// Jobs that arrived while the state was lent out, in order.
    queued: VecDeque<Job>,
    /// The blocking task holding the state.
    away: Option<tokio::task::JoinHandle<Lent>>,
}

impl Applying {
    /// Applies inline with `applier`.
    pub(crate) fn inline(applier: Applier) -> Applying {
        Applying::Inline(Box::new(Inline {
            applier: Some(Box::new(applier)),
            queued: VecDeque::new(),
            away: None,
        }))
    }

    /// Hands `job` over: to the apply task, or carried out at once (queued
    /// behind the jobs that wait while the state machine is lent out).
    pub(crate) fn submit(&mut self, job: Job) {
        match self {
            Applying::Task(tx) => {
                let _ = tx.send(job);
            }
            Applying::Inline(i) => {
                if i.applier.is_none() || !i.queued.is_empty() {
                    i.queued.push_back(job);
                } else {
                    i.run(job);
                }
            }
        }
    }

    /// Whether the state machine is lent to a blocking task.
    pub(crate) fn is_away(&self) -> bool {
        matches!(self, Applying::Inline(i) if i.away.is_some())
    }

    /// Waits for the state machine lent out to come back (never resolves
    /// if it is not lent out). A panic of the state machine is the
    /// caller's, as it would be when applied inline.
    pub(crate) async fn returned(&mut self) -> Lent {
        let Applying::Inline(i) = self else {
            return std::future::pending().await;
        };
        let Some(away) = i.away.as_mut() else {
            return std::future::pending().await;
        };
        let result = away.await;
        i.away = None;
        match result {
            Ok(lent) => lent,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => std::future::pending().await,
        }
    }

    /// The state machine came back: carries out the jobs that queued
    /// meanwhile (until one lends it out again); returns the snapshot it
    /// made, if any.
    pub(crate) fn back(&mut self, (applier, snapshot): Lent) -> Option<(LogIndex, Bytes)> {
        if let Applying::Inline(i) = self {
            i.applier = Some(applier);
            while i.applier.is_some() {
                let Some(job) = i.queued.pop_front() else {
                    break;
                };
                i.run(job);
            }
        }
        snapshot
    }

    /// Before the driver stops: waits for the state machine lent out, then
    /// carries out every queued job on the spot.
    pub(crate) async fn recall(&mut self) {
        if self.is_away() {
            let lent = self.returned().await;
            self.back(lent);
        }
        if let Applying::Inline(i) = self {
            if let Some(a) = i.applier.as_mut() {
                for job in i.queued.drain(..) {
                    a.handle(job);
                }
            }
        }
    }
}

impl Inline {
    /// Carries out `job` with the state machine at hand; a restore, or the
    /// snapshot a batch makes due, goes to a blocking task with it.
    fn run(&mut self, job: Job) {
        let Some(a) = self.applier.as_mut() else {
            self.queued.push_back(job);
            return;
        };
        if Applier::restores(&job) {
            self.lend(Some(job));
        } else if a.handle(job) {
            self.lend(None);
        }
    }

    /// Lends the state machine to a blocking task that carries out `job`
    /// (if any) and then makes the snapshot the policy asks for.
    fn lend(&mut self, job: Option<Job>) {
        let Some(mut a) = self.applier.take() else {
            return;
        };
        self.away = Some(tokio::task::spawn_blocking(move || {
            let due = match job {
                Some(job) => a.handle(job),
                None => true,
            };
            let snapshot = due.then(|| a.snapshot());
            (a, snapshot)
        }));
    }
}
