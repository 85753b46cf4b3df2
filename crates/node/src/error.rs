//! What can go wrong, said so that the caller knows what to do.

use std::time::Duration;

use raft_core::LogIndex;

use crate::persistence::PersistenceError;
use crate::transport::TransportError;

/// The leader, as far as this node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The leader's id.
    pub id: String,
    /// Where it listens, in the transport's terms (its peer address).
    pub address: String,
    /// Where its clients reach it ([`crate::Options::client_address`] as
    /// the leader tells its peers), once this node has heard it.
    pub client_address: Option<String>,
}

/// How a node knows it is no longer a member of its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// The index of the configuration entry that removed it, when this node
    /// applied that entry; `None` when it learned it from the leader, which
    /// refused a call it forwarded.
    pub index: Option<LogIndex>,
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(index) => write!(f, "this node was removed from the cluster at index {index}")?,
            None => write!(
                f,
                "this node was removed from the cluster (the leader no longer counts it as a member)"
            )?,
        }
        write!(f, "; stop it, or add it again as a new, empty node")
    }
}

/// An error from a [`crate::Node`] call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// An option is invalid.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// This node is not the leader; retry on the leader.
    #[error("not the leader; {}", match .leader {
        Some(l) => format!("the leader is {} at {}", l.id, l.address),
        None => "no leader is known right now: retry after the election".to_string(),
    })]
    NotLeader {
        /// The leader, if known.
        leader: Option<LeaderInfo>,
    },
    /// The call did not finish in time; a command may still take effect.
    #[error("{what} did not finish within {after:?}; it may still take effect")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// How long the call waited.
        after: Duration,
    },
    /// Leadership was lost (no majority reachable, or another node was
    /// elected) before the command committed; it may or may not take effect.
    #[error("leadership lost before the command committed (no majority reachable, or a new leader was elected); it may or may not take effect")]
    LeadershipLost,
    /// The command is larger than the largest log entry the node's
    /// transport can carry to its peers
    /// ([`Transport::max_entry_bytes`](crate::Transport::max_entry_bytes)):
    /// it was refused before reaching the log, and retrying cannot help.
    #[error("a command of {bytes} bytes is larger than the largest entry the peers can carry ({max_bytes} bytes)")]
    EntryTooLarge {
        /// The command's size.
        bytes: usize,
        /// The largest command the transport carries.
        max_bytes: usize,
    },
    /// Too much is waiting to be committed; retry shortly.
    #[error("too many commands are waiting to commit; retry shortly")]
    Busy,
    /// The call cannot be done right now (another membership change is in
    /// flight, a new leader has not settled); it took no effect: retry
    /// shortly.
    #[error("{0}; retry shortly")]
    Retry(RetryReason),
    /// A membership change was refused; it took no effect.
    #[error("membership change refused: {0}")]
    Membership(MembershipError),
    /// A leadership transfer was refused (the target is not a voter, or
    /// already leads).
    #[error("leadership transfer refused: {0}")]
    Transfer(TransferRefused),
    /// This node is no longer a member of its cluster: it serves nothing.
    #[error("{0}")]
    Removed(Removed),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The node stopped after its storage failed: it no longer acknowledges
    /// anything (fail-stop). The call took no effect on this node.
    #[error("the node stopped after a storage failure: {0}")]
    Stopped(PersistenceError),
    /// Reaching a peer failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The storage failed.
    #[error(transparent)]
    Persistence(#[from] PersistenceError),
    /// The node a call was forwarded to failed it in a way this node cannot
    /// sort further ([`RemoteError`] says which); it took no effect.
    #[error("{0}")]
    Remote(RemoteError),
    /// The session of a numbered command expired (it stayed idle longer
    /// than sessions are kept, or was evicted to bound the session table)
    /// before the command reached the log: the command was not applied.
    /// [`crate::Node::command`] registers a new session and sends the
    /// command again by itself; a caller sees this error only when that
    /// fails too.
    #[error(
        "session {session} expired before the command reached the log; the command was not applied"
    )]
    SessionExpired {
        /// The session's id.
        session: u64,
    },
    /// The command reached the leader, or may have, but its answer was lost
    /// (the leader crashed or stopped, the connection broke after the
    /// request was sent): it may or may not take effect. Unlike the errors
    /// after which the command certainly took no effect, retrying it may
    /// apply it twice.
    #[error("the outcome is unknown: {0}; the command may or may not take effect")]
    OutcomeUnknown(String),
}

/// Why a call cannot be done right now ([`NodeError::Retry`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryReason {
    /// Another membership change is not committed yet.
    #[error("the membership change at index {index} is not committed yet")]
    ChangeInProgress {
        /// The index of the change in flight.
        index: LogIndex,
    },
    /// The new leader has not committed an entry of its term yet.
    #[error("the new leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// The node the call was forwarded to could not take it now.
    #[error("{node} could not take the call now: {message}")]
    Remote {
        /// That node (its id, or its address when its id is not known).
        node: String,
        /// Its reason, for people.
        message: String,
    },
}

/// Why a membership change was refused ([`NodeError::Membership`]). Nodes
/// are named by the ids they were given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// A node was asked to join itself.
    #[error("a node cannot join itself")]
    JoinSelf,
    /// The node to add belongs to another cluster.
    #[error("the node at {address} belongs to cluster {cluster}, not {expected}")]
    OtherCluster {
        /// Where it listens.
        address: String,
        /// Its cluster.
        cluster: String,
        /// This node's cluster.
        expected: String,
    },
    /// The node to add already holds a log or a membership (it founded a
    /// cluster of its own, or was a member elsewhere).
    #[error("the node {id} at {address} already holds a log or a membership: start it empty (Bootstrap::Join) to add it")]
    NotEmpty {
        /// Its id.
        id: String,
        /// Where it listens.
        address: String,
    },
    /// The new node's id maps to the same number as a member's.
    #[error("the id {id} collides with member {member}: give the new node another id")]
    IdCollision {
        /// The new node's id.
        id: String,
        /// The member's id.
        member: String,
    },
    /// The node is already a member in that role.
    #[error("node {id} is already a member in that role")]
    AlreadyMember {
        /// The node's id.
        id: String,
    },
    /// The node is not a member (to remove or promote it).
    #[error("node {id} is not a member{}", if *.add_first { ": add it first (join or add_learner)" } else { "" })]
    NotMember {
        /// The node's id.
        id: String,
        /// True when the call needs it to be a member first (a promotion).
        add_first: bool,
    },
    /// Removing the node would leave the cluster without voters.
    #[error("removing node {id} would leave the cluster without voters")]
    LastVoter {
        /// The node's id.
        id: String,
    },
    /// The id is reserved.
    #[error("{0}")]
    ReservedId(String),
}

/// Why a leadership transfer was refused ([`NodeError::Transfer`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferRefused {
    /// The target is not a voter of the current configuration.
    #[error("{id} is not a voter of the current configuration")]
    NotVoter {
        /// The target's id.
        id: String,
    },
    /// The target already leads.
    #[error("{id} is already the leader")]
    AlreadyLeader {
        /// The target's id.
        id: String,
    },
}

/// How the node a call was forwarded to failed it
/// ([`NodeError::Remote`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// It refused the call, and retrying fails the same way.
    #[error("the remote node refused: {message}")]
    Refused {
        /// Its reason, for people.
        message: String,
    },
    /// It, or the transport on its side, failed the request.
    #[error("the remote node failed the request: {message}")]
    Failed {
        /// Its reason, for people.
        message: String,
    },
    /// It answered with a reply that does not fit the call.
    #[error("the remote node answered unexpectedly: {reply}")]
    Unexpected {
        /// The reply, as debug text.
        reply: String,
    },
    /// The request is not a call a client may forward.
    #[error("a hello or a call within a call is not a client call")]
    NotAClientCall,
}

impl NodeError {
    /// The storage failure behind [`NodeError::Stopped`] or
    /// [`NodeError::Persistence`]: match on it (for instance
    /// [`PersistenceError::is_storage_full`]) rather than on the message.
    pub fn storage_error(&self) -> Option<&PersistenceError> {
        match self {
            NodeError::Stopped(e) | NodeError::Persistence(e) => Some(e),
            _ => None,
        }
    }

    /// True when the call failed, or the node stopped, because its storage
    /// is full ([`PersistenceError::is_storage_full`]).
    pub fn is_storage_full(&self) -> bool {
        self.storage_error()
            .is_some_and(PersistenceError::is_storage_full)
    }

    /// True if the call may have taken effect although it failed
    /// ([`NodeError::OutcomeUnknown`], [`NodeError::Timeout`],
    /// [`NodeError::LeadershipLost`]); false if it certainly took no effect
    /// (it was refused, or never reached the leader), so that retrying it
    /// cannot apply it twice.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            NodeError::OutcomeUnknown(_) | NodeError::Timeout { .. } | NodeError::LeadershipLost
        )
    }
}
