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
    /// flight, a new leader has not settled); retry shortly.
    #[error("{0}; retry shortly")]
    Retry(String),
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// A leadership transfer was refused (the target is not a voter, or
    /// already leads).
    #[error("leadership transfer refused: {0}")]
    Transfer(String),
    /// This node is no longer a member of its cluster: it serves nothing.
    #[error("{0}")]
    Removed(Removed),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The node stopped after its storage failed: it no longer acknowledges
    /// anything (fail-stop).
    #[error("the node stopped after a storage failure: {0}")]
    Stopped(String),
    /// Reaching a peer failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The storage failed.
    #[error(transparent)]
    Persistence(#[from] PersistenceError),
    /// The remote node refused the request.
    #[error("the remote node refused: {0}")]
    Remote(String),
    /// The command reached the leader, or may have, but its answer was lost
    /// (the leader crashed or stopped, the connection broke after the
    /// request was sent): it may or may not take effect. Unlike the errors
    /// after which the command certainly took no effect, retrying it may
    /// apply it twice.
    #[error("the outcome is unknown: {0}; the command may or may not take effect")]
    OutcomeUnknown(String),
}

impl NodeError {
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
