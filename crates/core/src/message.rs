//! The messages nodes exchange. Every message carries the cluster id, the
//! sender's term, and one of the Raft RPCs or their replies.

use bytes::Bytes;

use crate::types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};

/// One message between two nodes of the same cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Message {
    /// The cluster the sender belongs to; a node refuses (and counts) messages
    /// whose cluster differs from its own.
    pub cluster: u64,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's current term (for a pre-vote request: the term the sender
    /// would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: Body,
}

/// The RPCs and their replies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Body {
    /// Leader to follower: entries to append after `prev_index`.
    Append(Append),
    /// Follower to leader: the outcome of an [`Append`].
    AppendResponse(AppendResponse),
    /// Leader to follower: "I am still the leader"; carries the commit index
    /// (capped at what the follower is known to hold) and a round number.
    Heartbeat {
        /// The leader's commit index, capped at the follower's match index.
        commit: LogIndex,
        /// The leader's heartbeat round, echoed in the reply.
        round: u64,
    },
    /// Leader to an idle follower: the commit index moved (capped at what the
    /// follower is known to hold). One-way: there is no reply.
    Commit {
        /// The leader's commit index, capped at the follower's match index.
        commit: LogIndex,
    },
    /// Follower to leader: the reply to a heartbeat (or to a message from a
    /// leader of an older term, which it makes step down).
    HeartbeatResponse {
        /// The round being acknowledged.
        round: u64,
    },
    /// Candidate to voter: a request for a vote or, with `pre`, a pre-vote.
    Vote(VoteRequest),
    /// Voter to candidate.
    VoteResponse {
        /// True for a pre-vote reply.
        pre: bool,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Leader to follower: one chunk of a snapshot (boxed: it is rare and
    /// the largest body, and every message is as large as its largest body).
    Snapshot(Box<SnapshotChunk>),
    /// Follower to leader: progress of a snapshot transfer.
    SnapshotResponse(SnapshotResponse),
    /// Leader to its chosen successor: start an election now (leader transfer).
    TimeoutNow,
    /// Follower to leader: confirm leadership and tell me the read index.
    ReadIndex {
        /// The follower's id for the read.
        id: u64,
    },
    /// Leader to follower: the read index, or `None` when the leader cannot
    /// serve reads (it is stepping down, or not leader any more).
    ReadIndexResponse {
        /// The follower's id for the read.
        id: u64,
        /// The index the follower must have applied before serving the read.
        index: Option<LogIndex>,
    },
}

/// An AppendEntries request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Append {
    /// The index of the entry just before `entries`.
    pub prev_index: LogIndex,
    /// The term of that entry.
    pub prev_term: Term,
    /// The entries to append (possibly none: a probe).
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub commit: LogIndex,
    /// The leader's heartbeat round when it sent this, echoed in the reply.
    pub round: u64,
}

/// The reply to an [`Append`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AppendResponse {
    /// Echo of the request's round.
    pub round: u64,
    /// Accepted or not.
    pub outcome: AppendOutcome,
}

/// Whether an append was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AppendOutcome {
    /// The follower's log matches the leader's up to `match_index`, durably.
    Accepted {
        /// The last index known to match.
        match_index: LogIndex,
    },
    /// The follower has no entry matching (`prev_index`, `prev_term`).
    Rejected {
        /// The `prev_index` of the rejected request.
        prev_index: LogIndex,
        /// The follower's last index.
        last_index: LogIndex,
        /// The follower's term at `prev_index` and the first index it holds
        /// of that term, for fast backtracking (Raft paper section 5.3).
        conflict: Option<(Term, LogIndex)>,
    },
}

/// A RequestVote (or PreVote) request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct VoteRequest {
    /// A pre-vote: the voter's state does not change.
    pub pre: bool,
    /// The candidate's last log index.
    pub last_index: LogIndex,
    /// The candidate's last log term.
    pub last_term: Term,
    /// The election was started by a leader transfer (TimeoutNow): voters grant
    /// even while they still hear from the old leader.
    pub transfer: bool,
}

/// One chunk of a snapshot being installed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotChunk {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The total size of the snapshot data.
    pub total_bytes: u64,
    /// Where this chunk starts.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Bytes,
    /// The leader's heartbeat round, echoed in the reply.
    pub round: u64,
}

/// The reply to a [`SnapshotChunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotResponse {
    /// The index of the snapshot being transferred.
    pub snapshot_index: LogIndex,
    /// The offset the follower expects next.
    pub next_offset: u64,
    /// The snapshot is installed and durable (or was not needed because the
    /// follower already holds that state): replication resumes after it.
    pub done: bool,
    /// Echo of the chunk's round.
    pub round: u64,
}

impl Message {
    /// The highest term this message carries: its own, or one it reports
    /// (entry terms and `prev_term` of an append, a rejection's conflict
    /// term, a candidate's last log term, a snapshot's term). The core
    /// refuses a message when this is above [`MAX_TERM`](crate::MAX_TERM).
    pub fn highest_term(&self) -> Term {
        let carried = match &self.body {
            Body::Append(a) => a
                .entries
                .iter()
                .map(|e| e.term)
                .fold(a.prev_term, Term::max),
            Body::AppendResponse(r) => match r.outcome {
                AppendOutcome::Rejected {
                    conflict: Some((term, _)),
                    ..
                } => term,
                AppendOutcome::Rejected { conflict: None, .. } | AppendOutcome::Accepted { .. } => {
                    0
                }
            },
            Body::Vote(v) => v.last_term,
            Body::Snapshot(c) => c.meta.term,
            Body::Heartbeat { .. }
            | Body::Commit { .. }
            | Body::HeartbeatResponse { .. }
            | Body::VoteResponse { .. }
            | Body::SnapshotResponse(_)
            | Body::TimeoutNow
            | Body::ReadIndex { .. }
            | Body::ReadIndexResponse { .. } => 0,
        };
        self.term.max(carried)
    }

    /// The highest log index the message carries (every index and commit
    /// index in it). The core refuses a message when this is above
    /// [`MAX_INDEX`](crate::MAX_INDEX).
    pub fn highest_index(&self) -> LogIndex {
        match &self.body {
            Body::Append(a) => a
                .entries
                .last()
                .map_or(0, |e| e.index)
                .max(a.prev_index)
                .max(a.commit),
            Body::AppendResponse(r) => match r.outcome {
                AppendOutcome::Accepted { match_index } => match_index,
                AppendOutcome::Rejected {
                    prev_index,
                    last_index,
                    conflict,
                } => prev_index
                    .max(last_index)
                    .max(conflict.map_or(0, |(_, index)| index)),
            },
            Body::Heartbeat { commit, .. } | Body::Commit { commit } => *commit,
            Body::Vote(v) => v.last_index,
            Body::Snapshot(c) => c.meta.index,
            Body::SnapshotResponse(r) => r.snapshot_index,
            Body::ReadIndexResponse { index, .. } => index.unwrap_or(0),
            Body::HeartbeatResponse { .. }
            | Body::VoteResponse { .. }
            | Body::TimeoutNow
            | Body::ReadIndex { .. } => 0,
        }
    }
}

impl Body {
    /// The short name of the message type, for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Append(_) => "append",
            Body::AppendResponse(_) => "append-response",
            Body::Heartbeat { .. } => "heartbeat",
            Body::Commit { .. } => "commit",
            Body::HeartbeatResponse { .. } => "heartbeat-response",
            Body::Vote(v) if v.pre => "pre-vote",
            Body::Vote(_) => "vote",
            Body::VoteResponse { pre: true, .. } => "pre-vote-response",
            Body::VoteResponse { .. } => "vote-response",
            Body::Snapshot(_) => "snapshot",
            Body::SnapshotResponse(_) => "snapshot-response",
            Body::TimeoutNow => "timeout-now",
            Body::ReadIndex { .. } => "read-index",
            Body::ReadIndexResponse { .. } => "read-index-response",
        }
    }

    /// True for requests (as opposed to replies): what RPC budgets count.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Body::Append(_)
                | Body::Heartbeat { .. }
                | Body::Commit { .. }
                | Body::Vote(_)
                | Body::Snapshot(_)
                | Body::TimeoutNow
                | Body::ReadIndex { .. }
        )
    }
}
