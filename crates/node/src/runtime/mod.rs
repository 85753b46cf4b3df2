//! The tokio runtime around the core: one task drives the core (`driver`),
//! one saves its output (`persist`), one applies it (`apply`), one per peer
//! sends to it (`peers`). The driver never waits for the disk, the state
//! machine or the network; it decides nothing the core does not decide.

pub(crate) mod apply;
pub(crate) mod driver;
pub(crate) mod peers;
pub(crate) mod persist;
pub(crate) mod spool;

use std::time::Duration;

use bytes::Bytes;
use raft_core::{ConfChange, LogIndex, Message, NodeId, Role, Term};
use tokio::sync::oneshot;

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
