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
    /// apply it twice (a [`crate::NumberedCommand`] sent again is applied
    /// at most once).
    ///
    /// [`OutcomeUnknown`] says what was attempted, why its outcome is
    /// unknown ([`UnknownKind`], to match on), where, and the failure
    /// behind it (as its [`source`](std::error::Error::source)).
    #[error(transparent)]
    OutcomeUnknown(OutcomeUnknown),
}

/// What a call whose outcome is unknown attempted
/// ([`OutcomeUnknown::attempt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attempt {
    /// A command without a session ([`crate::Node::command_without_session`]).
    Command,
    /// A numbered command of a client session ([`crate::Node::command`],
    /// [`crate::NumberedCommand`]).
    NumberedCommand {
        /// The session's id (the index of its registering entry).
        session: u64,
        /// The command's number in its session.
        seq: u64,
    },
    /// The registration of a client session (registering twice leaves at
    /// worst a session nobody uses, which expires).
    OpenSession,
    /// A membership change (a join, a learner added, promoted or removed,
    /// a leave).
    MembershipChange,
    /// A linearizable read (which changes nothing: only its answer is
    /// lost).
    Read,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Command => write!(f, "the command"),
            Attempt::NumberedCommand { session, seq } => {
                write!(f, "command {seq} of session {session}")
            }
            Attempt::OpenSession => write!(f, "the session registration"),
            Attempt::MembershipChange => write!(f, "the membership change"),
            Attempt::Read => write!(f, "the read"),
        }
    }
}

/// Why the outcome of a call is unknown ([`OutcomeUnknown::kind`]). Each
/// kind travels over the wire with a failed forwarded call
/// ([`crate::transport::ErrorCode::OutcomeUnknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum UnknownKind {
    /// The request was sent, and no reply came back in time.
    ReplyLost,
    /// The connection closed, or broke, after the request was sent.
    ConnectionClosed,
    /// The command reached the log again after its session's window of
    /// numbers had moved past it (more of the session's commands were
    /// answered than the window keeps replies for, or its caller said it
    /// would not send it again): its first reply, if it was applied, is
    /// forgotten, and it was not applied again.
    WindowExceeded,
    /// The command's session expired after an earlier attempt of it was
    /// sent, which may have been applied.
    SessionExpired,
    /// The call's deadline passed after an attempt was sent.
    DeadlinePassed,
    /// The leader lost its leadership with the entry in its log, before it
    /// committed: a later leader may still commit it.
    LeadershipLost,
    /// The node that held the entry in its log stopped (it shut down,
    /// crashed, or its storage failed) before the entry was applied.
    NodeStopped,
    /// The transport on the remote node's side failed the request after it
    /// was delivered (its handler did not answer in time, say).
    RemoteFailed,
    /// A node of an earlier version reported the outcome unknown without
    /// saying why (its message says it for people), or gave a reason this
    /// version does not know.
    Unspecified,
}

impl UnknownKind {
    /// Every kind, in the order of their wire numbers.
    pub const ALL: [UnknownKind; 9] = [
        UnknownKind::Unspecified,
        UnknownKind::ReplyLost,
        UnknownKind::ConnectionClosed,
        UnknownKind::WindowExceeded,
        UnknownKind::SessionExpired,
        UnknownKind::DeadlinePassed,
        UnknownKind::LeadershipLost,
        UnknownKind::NodeStopped,
        UnknownKind::RemoteFailed,
    ];

    /// The kind's number on the wire (0 for [`UnknownKind::Unspecified`]).
    pub fn number(self) -> u8 {
        match self {
            UnknownKind::Unspecified => 0,
            UnknownKind::ReplyLost => 1,
            UnknownKind::ConnectionClosed => 2,
            UnknownKind::WindowExceeded => 3,
            UnknownKind::SessionExpired => 4,
            UnknownKind::DeadlinePassed => 5,
            UnknownKind::LeadershipLost => 6,
            UnknownKind::NodeStopped => 7,
            UnknownKind::RemoteFailed => 8,
        }
    }

    /// The kind of a wire number; a number this version does not know is
    /// [`UnknownKind::Unspecified`].
    pub fn from_number(number: u8) -> UnknownKind {
        UnknownKind::ALL
            .into_iter()
            .find(|k| k.number() == number)
            .unwrap_or(UnknownKind::Unspecified)
    }
}

impl std::fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnknownKind::ReplyLost => "the request was sent and its reply was lost",
            UnknownKind::ConnectionClosed => "the connection closed after the request was sent",
            UnknownKind::WindowExceeded => {
                "it reached the log again after its session's window of numbers had moved past it (its reply, if it was applied, is forgotten; it was not applied again)"
            }
            UnknownKind::SessionExpired => {
                "its session expired after an earlier attempt was sent, which may have been applied"
            }
            UnknownKind::DeadlinePassed => "the deadline passed after an attempt was sent",
            UnknownKind::LeadershipLost => {
                "the leader lost its leadership with the entry in its log, before it committed"
            }
            UnknownKind::NodeStopped => {
                "the node holding the entry in its log stopped before it was applied"
            }
            UnknownKind::RemoteFailed => {
                "the remote node's transport failed the request after it was delivered"
            }
            UnknownKind::Unspecified => "the node that handled it did not say why",
        })
    }
}

/// A call whose outcome is unknown ([`NodeError::OutcomeUnknown`]): it
/// may or may not take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeUnknown {
    /// What was attempted.
    pub attempt: Attempt,
    /// Why its outcome is unknown.
    pub kind: UnknownKind,
    /// The node the attempt was sent to, when it was not this one (the
    /// leader a call was forwarded to): its id as it was given, or its
    /// address when its id is not known.
    pub node: Option<String>,
    /// What that node said, for people, when it reported the outcome
    /// unknown over the wire.
    pub message: Option<String>,
    /// The failure behind it, when there is one (a transport error, the
    /// storage failure that stopped the node, the last attempt's error).
    pub source: Option<Box<NodeError>>,
}

impl OutcomeUnknown {
    /// An outcome unknown for `kind`, of an attempt this node made itself.
    pub fn new(attempt: Attempt, kind: UnknownKind) -> OutcomeUnknown {
        OutcomeUnknown {
            attempt,
            kind,
            node: None,
            message: None,
            source: None,
        }
    }

    /// The same, with `source` as the failure behind it.
    pub fn caused_by(mut self, source: NodeError) -> OutcomeUnknown {
        self.source = Some(Box::new(source));
        self
    }

    /// The same, sent to `node` (its id, or its address).
    pub fn at(mut self, node: impl Into<String>) -> OutcomeUnknown {
        self.node = Some(node.into());
        self
    }
}

impl std::fmt::Display for OutcomeUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the outcome of {} is unknown: {}",
            self.attempt, self.kind
        )?;
        if let Some(node) = &self.node {
            write!(f, " (at {node})")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        write!(f, "; it may or may not take effect")
    }
}

impl std::error::Error for OutcomeUnknown {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<OutcomeUnknown> for NodeError {
    fn from(e: OutcomeUnknown) -> NodeError {
        NodeError::OutcomeUnknown(e)
    }
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
    /// A step of a join (promoting the new node, or rolling its addition
    /// back) found the node no longer a learner added by that join: it was
    /// promoted, removed, or added again meanwhile.
    #[error("node {id} is not a joining learner any more: its join was finished or rolled back")]
    NotJoining {
        /// The node's id.
        id: String,
    },
    /// The node being joined was removed again before it was promoted: it
    /// did not catch up within `join_timeout` of a leader taking its join
    /// over (or it was removed with `leave`).
    #[error("the join of node {id} was rolled back: it did not catch up within join_timeout, or was removed")]
    JoinRolledBack {
        /// The node's id.
        id: String,
    },
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
        self.unknown_kind().is_some()
    }

    /// Why the outcome is unknown, for the errors after which the call may
    /// have taken effect ([`NodeError::is_outcome_unknown`]):
    /// [`OutcomeUnknown::kind`], [`UnknownKind::DeadlinePassed`] for a
    /// [`NodeError::Timeout`], [`UnknownKind::LeadershipLost`] for
    /// [`NodeError::LeadershipLost`]; `None` for the others.
    pub fn unknown_kind(&self) -> Option<UnknownKind> {
        match self {
            NodeError::OutcomeUnknown(u) => Some(u.kind),
            NodeError::Timeout { .. } => Some(UnknownKind::DeadlinePassed),
            NodeError::LeadershipLost => Some(UnknownKind::LeadershipLost),
            _ => None,
        }
    }

    /// This error as one of unknown outcome for `attempt`: an
    /// [`NodeError::OutcomeUnknown`] is given `attempt` (the caller knows
    /// best what it attempted); a `Timeout` or `LeadershipLost` is kept; any
    /// other error, which ended the wait for an attempt that may have taken
    /// effect, becomes an [`OutcomeUnknown`] of `kind` caused by it.
    pub(crate) fn unknown_outcome_of(self, attempt: Attempt, kind: UnknownKind) -> NodeError {
        match self {
            NodeError::OutcomeUnknown(mut u) => {
                u.attempt = attempt;
                NodeError::OutcomeUnknown(u)
            }
            e if e.is_outcome_unknown() => e,
            e => OutcomeUnknown::new(attempt, kind).caused_by(e).into(),
        }
    }
}
