//! The vocabulary shared by every module: ids, terms, indexes, entries, the
//! durable hard state and snapshot metadata.

use bytes::Bytes;

use crate::membership::Membership;

/// A node's id inside the core. The embedding layer maps its own ids (strings,
/// addresses) to these; `0` is reserved for "nobody".
pub type NodeId = u64;

/// A Raft term. Terms start at 0 (no election has happened) and only grow.
pub type Term = u64;

/// A position in the replicated log. Index 0 is the empty prefix; the first
/// entry has index 1.
pub type LogIndex = u64;

/// The id reserved for "no node" (no vote cast, no leader known).
pub const NO_NODE: NodeId = 0;

/// The highest term a node adopts, stores or campaigns in: 2^53.
///
/// A term grows by one per election, and an election takes at least a
/// network round trip and an fsync (in practice a randomized election
/// timeout: hundreds of milliseconds). Even at one election every
/// millisecond, a cluster takes 2^53 ms = 9.0e12 s, about 285,000 years, to
/// get here. A term above
/// it (`u64::MAX`, say) therefore comes from a forged or corrupt message:
/// adopting one would leave every node unable to campaign (its next term
/// would overflow) for good, as the term is durable. So every message that
/// carries a term above this bound is refused (and counted), a stored state
/// holding one is refused at restart, and a node at the bound starts no
/// election rather than wrap around. Two more reasons for this bound rather
/// than `u64::MAX - 1`: `term + 1` is always far from overflowing, and every
/// term stays exact as a float64 (a Prometheus gauge, a JSON number read by
/// JavaScript).
pub const MAX_TERM: Term = 1 << 53;

/// The highest log index a message may carry. No log reaches it: at a
/// million entries a second, 2^62 entries take about 146,000 years. A
/// forged index near `u64::MAX` would overflow `index + 1` (the index after
/// an append's `prev_index`, after a snapshot), so every message that
/// carries an index above this bound is refused as malformed.
pub const MAX_INDEX: LogIndex = 1 << 62;

/// What a log entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EntryPayload {
    /// The empty entry a new leader appends so that it can commit (and learn
    /// the commit index of) its own term, Raft paper section 8.
    Blank,
    /// An opaque command for the state machine.
    Command(Bytes),
    /// A new cluster configuration; it takes effect as soon as it is appended.
    Membership(Membership),
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// The number of payload bytes, used to bound message and batch sizes.
    pub fn size_bytes(&self) -> usize {
        const HEADER_BYTES: usize = 24;
        HEADER_BYTES
            + match &self.payload {
                EntryPayload::Blank => 0,
                EntryPayload::Command(data) => data.len(),
                EntryPayload::Membership(m) => 16 * m.len(),
            }
    }
}

/// The state that must be durable before any message that depends on it is
/// sent: the current term, the vote cast in it, and the commit index (kept so
/// that the commit index never goes backwards across a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, or [`NO_NODE`].
    pub vote: NodeId,
    /// The highest index known to be committed.
    pub commit: LogIndex,
}

/// What a snapshot covers: everything up to and including `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The configuration in force at `index`.
    pub membership: Membership,
}

/// A state-machine snapshot with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The state machine's serialized state at `meta.index`.
    pub data: Bytes,
}

/// The role a node plays at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for pre-votes without changing its term (Raft thesis 9.6).
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Replicates the log and serves reads.
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(name)
    }
}
