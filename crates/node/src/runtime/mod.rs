//! The tokio runtime around the core: one task drives the core (`driver`),
//! one saves its output (`persist`), one applies it (`apply`), one per peer
//! sends to it (`peers`). The driver never waits for the disk, the state
//! machine or the network; it decides nothing the core does not decide.

pub(crate) mod apply;
pub(crate) mod driver;
pub(crate) mod peers;
pub(crate) mod persist;
pub(crate) mod spool;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_core::{ConfChange, LogIndex, Message, NodeId, Role, Term};
use tokio::sync::{mpsc, oneshot};

use crate::error::{LeaderInfo, NodeError};

/// Input to the driver task.
pub(crate) enum Input {
    /// A Raft message from a peer, and where that peer listens.
    Message(Message, std::sync::Arc<str>),
    /// Replicate a command; answered with its output once applied.
    Propose {
        data: Bytes,
        reply: oneshot::Sender<Result<Bytes, NodeError>>,
    },
    /// A linearizable read.
    Read {
        query: Bytes,
        reply: oneshot::Sender<Result<Bytes, NodeError>>,
    },
    /// A membership change; answered once committed.
    Change {
        change: ConfChange,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Hand leadership to another voter.
    Transfer {
        to: NodeId,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Start no election for a while.
    Weaken(Duration),
    /// The peers and their replication state.
    Peers(oneshot::Sender<Vec<PeerStatus>>),
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
    /// On the leader: the highest index known replicated on it.
    pub match_index: Option<LogIndex>,
    /// On the leader: how long ago it last answered.
    pub last_contact: Option<Duration>,
    /// The last message to it got through.
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
    pub stopped: Option<String>,
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
