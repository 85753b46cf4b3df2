//! The apply task: owns the state machine, applies committed entries in
//! order, answers the commands waiting for them, serves reads once their
//! index is applied, and takes snapshots by policy.

use std::collections::VecDeque;

use bytes::Bytes;
use std::sync::Arc;

use raft_core::{Entry, EntryPayload, LogIndex, MemberRole, Membership, NodeId, Snapshot, Term};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::NodeError;
use crate::events::Event;
use crate::ids::PeerContext;
use crate::runtime::backlog::{batch_bytes, ApplyBacklog};
use crate::runtime::{Input, Removal};
use crate::state_machine::StateMachine;

/// Who waits for an entry to be applied.
pub(crate) enum Waiter {
    /// A command: gets the state machine's output.
    Command(oneshot::Sender<Result<Bytes, NodeError>>),
    /// A membership change: gets told it committed.
    Change(oneshot::Sender<Result<(), NodeError>>),
}

impl Waiter {
    fn fail(self, e: NodeError) {
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
}

impl Applier {
    /// Runs until the channel closes.
    pub(crate) async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Register(waiters) => {
                    let now = tokio::time::Instant::now();
                    for (index, term, waiter) in waiters {
                        let in_order = self.waiters.back().is_none_or(|w| w.0 < index);
                        if index <= self.applied || !in_order {
                            // Cannot happen (registration precedes the
                            // commit, and comes in index order), but never
                            // leave a caller hanging.
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
                    self.backlog.applied_batch(self.applied, count, bytes);
                    for (query, reply) in reads {
                        let _ = reply.send(Ok(self.sm.query_parts(&query)));
                    }
                    if let Some(index) = last {
                        let _ = self.events.send(Event::Applied { index });
                    }
                    self.maybe_snapshot().await;
                }
                Job::LocalRead { query, reply } => {
                    let _ = reply.send(Ok(self.sm.query_parts(&query)));
                }
                Job::FailPending(e) => {
                    for (_, _, w, _) in self.waiters.drain(..) {
                        w.fail(e.clone());
                    }
                }
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
        }
        for (_, _, w, _) in self.waiters.drain(..) {
            w.fail(NodeError::ShuttingDown);
        }
    }

    fn restore(&mut self, s: Snapshot) -> Result<(), String> {
        let index = s.meta.index;
        self.sm
            .restore(s.data.clone())
            .map_err(|e| format!("cannot restore the snapshot at {index}: {e}"))?;
        self.applied = index;
        self.snapshot_index = index;
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
            EntryPayload::Command(data) => Some(self.sm.apply(e.index, &data)),
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
                    let _ = tx.send(Ok(output.clone().unwrap_or_default()));
                }
                Waiter::Change(tx) => {
                    let _ = tx.send(Ok(()));
                }
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

    async fn maybe_snapshot(&mut self) {
        let t = self.snapshot_threshold;
        if t == 0 || self.applied < self.snapshot_index + t {
            return;
        }
        let index = self.applied;
        let data = self.sm.snapshot();
        self.snapshot_index = index;
        if let Some(to_raft) = self.to_raft.upgrade() {
            let _ = to_raft.send(Input::Compact { index, data }).await;
        }
        let _ = self.events.send(Event::SnapshotTaken { index });
    }
}
