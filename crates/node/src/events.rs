//! What a node tells its subscribers about itself.

use raft_core::{LogIndex, Role, Term};

/// Something that happened on a node. Subscribe with
/// [`crate::Node::subscribe`]; a subscriber that falls behind misses the
/// oldest events (and is told how many), it never slows the node down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This node's role changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The term.
        term: Term,
    },
    /// The known leader changed (`None`: no leader known).
    LeaderChanged {
        /// The leader's id.
        leader: Option<String>,
        /// The term.
        term: Term,
    },
    /// A member joined the configuration (as a learner or a voter).
    Joined {
        /// Its id.
        id: String,
        /// Its address.
        address: String,
        /// True for a voter, false for a learner.
        voter: bool,
    },
    /// A member left the configuration.
    Left {
        /// Its id.
        id: String,
    },
    /// This node is no longer a member of its cluster: it refuses every
    /// command and read from now on.
    Removed {
        /// The index of the configuration entry that removed it, if this
        /// node applied it (`None`: the leader refused it as a non-member).
        index: Option<LogIndex>,
    },
    /// Committed entries were applied up to this index.
    Applied {
        /// The last index applied.
        index: LogIndex,
    },
    /// This node took a snapshot.
    SnapshotTaken {
        /// The index it covers.
        index: LogIndex,
    },
    /// This node installed a snapshot from the leader.
    SnapshotInstalled {
        /// The index it covers.
        index: LogIndex,
    },
    /// A connection to a peer came up.
    PeerConnected {
        /// The peer's id.
        id: String,
    },
    /// A connection to a peer failed.
    PeerDisconnected {
        /// The peer's id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Something worth a look (a refused message, a slow disk, ...).
    Warning(String),
}
