//! The tokio runtime around the core: one task drives the core (`driver`)
//! and carries out its output through `raft_core::pipeline`, polling the
//! store's saves as futures (`persist`); one applies it (`apply`), unless
//! the driver applies itself ([`crate::ApplyMode::Inline`]); one per peer
//! sends to it (`peers`). The driver never waits for the disk, a snapshot
//! or the network; it decides nothing the core and the pipeline do not
//! decide.

pub(crate) mod apply;
pub(crate) mod backlog;
pub(crate) mod driver;
pub(crate) mod peers;
pub(crate) mod persist;
pub(crate) mod spool;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_core::{ConfChange, LogIndex, Message, NodeId, Role, Term};
use tokio::sync::{mpsc, oneshot};

use crate::error::{LeaderInfo, NodeError, Removed};
use crate::ids::PeerContext;

/// Input to the driver task.
pub(crate) enum Input {
    /// A Raft message from a peer, and where that peer listens.
    Message(Message, std::sync::Arc<str>),
    /// Replicate a command; answered with its output once applied.
    Propose {
        data: Bytes,
        reply: oneshot::Sender<Result<Bytes, NodeError>>,
    },
    /// A linearizable read; answered with the answer's parts.
    Read {
        query: Bytes,
        reply: apply::ReadReply,
    },
    /// A membership change; answered once committed. `id` is the
    /// member's id as the caller gave it (for errors). With `joining_only`
    /// the change is proposed only while the member is a learner added by
    /// a join that has not finished (checked against the latest
    /// configuration, as the change is proposed: only one is in flight),
    /// else refused with [`crate::MembershipError::NotJoining`]: a join's
    /// promotion or roll-back never acts on a member that was promoted,
    /// removed or added again meanwhile.
    Change {
        change: ConfChange,
        id: String,
        joining_only: bool,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Hand leadership to another voter; `id` is its id as the caller gave
    /// it (for errors).
    Transfer {
        to: NodeId,
        id: String,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Start no election for a while.
    Weaken(Duration),
    /// The peers and their replication state.
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    /// Whether the node holds no log and no membership (the answer to a
    /// peer's hello), as the core says now.
    Empty(oneshot::Sender<bool>),
    /// A possibly stale read of the state machine held by the driver
    /// ([`crate::ApplyMode::Inline`]).
    LocalRead {
        query: Bytes,
        reply: apply::ReadReply,
    },
    /// The state machine made a snapshot at `index`.
    Compact { index: LogIndex, data: Bytes },
    /// Stop after finishing what is in flight.
    Shutdown(oneshot::Sender<()>),
}

/// A member of the configuration, as seen from this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The member's id.
    pub id: String,
    /// Where it listens.
    pub address: String,
    /// Voter or learner.
    pub role: raft_core::MemberRole,
    /// A learner added by a join that has not finished: the leader
    /// promotes it once it has caught up, or removes it if it does not
    /// within `join_timeout` (see [`crate::Node::join`]). False for a
    /// voter, and for a learner added by [`crate::Node::add_learner`],
    /// which stays one.
    pub joining: bool,
    /// On the leader: the highest index known replicated on it.
    pub match_index: Option<LogIndex>,
    /// On the leader: how long ago it last answered.
    pub last_contact: Option<Duration>,
    /// A message or probe to it got an answer within the last election
    /// timeout (`election_timeout_max`): it is up and reachable from here.
    pub connected: bool,
    /// On the leader: appends sent and not yet acknowledged.
    pub inflight: usize,
}

/// What the driver publishes after every round, read without a round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub role: Role,
    pub term: Term,
    pub leader: Option<LeaderInfo>,
    pub commit_index: LogIndex,
    pub applied_index: LogIndex,
    pub last_index: LogIndex,
    pub snapshot_index: LogIndex,
    pub empty: bool,
    pub core: raft_core::Metrics,
    /// Why the node stopped acknowledging: [`NodeError::Stopped`] after a
    /// storage failure, [`NodeError::ShuttingDown`] once shut down.
    pub stopped: Option<NodeError>,
    /// The configuration in force (the latest appended).
    pub members: Arc<Members>,
}

/// The members of the configuration in force, as [`Status`] publishes them
/// (replaced whole when the configuration or a member's address changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Members {
    /// Each member's id and the address it was added with, this node's
    /// own included when it is a member.
    pub list: Vec<PeerContext>,
    /// Every address a member is known to send from: the ones it was added
    /// with, and the ones its Raft messages came from (a node started with
    /// a host name listens at the address that name resolved to).
    pub addresses: Vec<Arc<str>>,
}

impl Members {
    /// Whether `address` is where a member listens.
    pub fn has_address(&self, address: &str) -> bool {
        !address.is_empty() && self.addresses.iter().any(|a| **a == *address)
    }
}

/// Where the clients of each node (by id) reach it, as each said in its
/// answer to a `Hello` (this node's own included): shared by the sender
/// tasks, which ask every peer they connect to, and the node.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientAddresses(Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>);

impl ClientAddresses {
    /// Node `id`'s clients reach it at `address`.
    pub fn learn(&self, id: &str, address: &str) {
        let mut map = self
            .0
            .lock()
            .expect("the lock is never held across a panic");
        if map.get(id).map(String::as_str) != Some(address) {
            map.insert(id.to_string(), address.to_string());
        }
    }

    /// Where node `id`'s clients reach it, if it said.
    pub fn get(&self, id: &str) -> Option<String> {
        self.0
            .lock()
            .expect("the lock is never held across a panic")
            .get(id)
            .cloned()
    }
}

/// Whether this node was removed from its cluster: set by the apply task
/// when it applies the configuration that removes it, or by the node when
/// the leader refuses it as a non-member; cleared when a configuration
/// that holds it again is applied.
#[derive(Debug, Default)]
pub(crate) struct Removal(AtomicU64);

/// [`Removal`]'s value for "a member (or not yet one)".
const MEMBER: u64 = 0;
/// [`Removal`]'s value for "told by the leader, index unknown".
const TOLD: u64 = u64::MAX;

impl Removal {
    /// How this node knows it was removed, if it was.
    pub fn get(&self) -> Option<Removed> {
        match self.0.load(Ordering::Acquire) {
            MEMBER => None,
            TOLD => Some(Removed { index: None }),
            index => Some(Removed { index: Some(index) }),
        }
    }

    /// The configuration entry at `index` removed this node; true if that
    /// is news.
    pub fn removed_at(&self, index: LogIndex) -> bool {
        debug_assert!(index != MEMBER && index != TOLD);
        self.0.swap(index, Ordering::AcqRel) != index
    }

    /// The leader refused this node as a non-member; true if that is news
    /// (an index already known is kept).
    pub fn told(&self) -> bool {
        self.0
            .compare_exchange(MEMBER, TOLD, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// A configuration holding this node again was applied.
    pub fn member_again(&self) {
        self.0.store(MEMBER, Ordering::Release);
    }
}

impl Default for Status {
    fn default() -> Status {
        Status {
            role: Role::Follower,
            term: 0,
            leader: None,
            commit_index: 0,
            applied_index: 0,
            last_index: 0,
            snapshot_index: 0,
            empty: true,
            core: raft_core::Metrics::default(),
            stopped: None,
            members: Arc::default(),
        }
    }
}

/// Inputs queued for the driver before senders wait (back-pressure).
pub(crate) const INBOX: usize = 1 << 16;

/// The sending side of the driver's queue: unbounded underneath (cheaper
/// than a semaphore per message), bounded by a count that makes senders
/// wait once `INBOX` inputs are queued.
#[derive(Clone)]
pub(crate) struct InboxSender {
    tx: mpsc::UnboundedSender<Input>,
    queued: Arc<AtomicUsize>,
}

/// The driver's side of its queue.
pub(crate) struct InboxReceiver {
    rx: mpsc::UnboundedReceiver<Input>,
    queued: Arc<AtomicUsize>,
}

/// A sender that does not keep the driver alive.
pub(crate) struct WeakInboxSender {
    tx: mpsc::WeakUnboundedSender<Input>,
    queued: Arc<AtomicUsize>,
}

/// A new driver queue.
pub(crate) fn inbox() -> (InboxSender, InboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        InboxSender {
            tx,
            queued: queued.clone(),
        },
        InboxReceiver { rx, queued },
    )
}

impl InboxSender {
    /// Queues `input`, waiting while the queue is full; fails once the
    /// driver is gone.
    pub(crate) async fn send(&self, input: Input) -> Result<(), ()> {
        while self.queued.load(Ordering::Relaxed) >= INBOX {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(input).map_err(|_| ())
    }

    /// Queues `input` at once if the queue has room and the driver runs;
    /// gives it back otherwise (the caller then waits with
    /// [`InboxSender::send`], or drops it).
    pub(crate) fn try_send(&self, input: Input) -> Result<(), Input> {
        if self.queued.load(Ordering::Relaxed) >= INBOX {
            return Err(input);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(input).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            e.0
        })
    }

    /// A sender that does not keep the driver alive.
    pub(crate) fn downgrade(&self) -> WeakInboxSender {
        WeakInboxSender {
            tx: self.tx.downgrade(),
            queued: self.queued.clone(),
        }
    }
}

impl WeakInboxSender {
    /// The sender, if the driver still runs.
    pub(crate) fn upgrade(&self) -> Option<InboxSender> {
        self.tx.upgrade().map(|tx| InboxSender {
            tx,
            queued: self.queued.clone(),
        })
    }
}

impl InboxReceiver {
    /// The next input; `None` once every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<Input> {
        let i = self.rx.recv().await;
        if i.is_some() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        i
    }

    /// The next input if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Input> {
        let i = self.rx.try_recv().ok();
        if i.is_some() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        i
    }
}
