//! The state machine a node drives. The default one, an in-memory
//! key-value map, is in [`crate::example`].

use bytes::Bytes;
use raft_core::LogIndex;

/// What the node applies committed commands to.
///
/// `apply` must be deterministic: every node applies the same commands in
/// the same order and must reach the same state and outputs. A command the
/// machine does not understand should produce an error *output* (the same
/// on every node), not a panic.
pub trait StateMachine: Send + 'static {
    /// Applies the committed command at `index` and returns its output.
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Bytes;
    /// Answers a read-only query against the current state.
    fn query(&self, query: &[u8]) -> Bytes;
    /// Answers a read-only query in parts: the answer is the parts
    /// concatenated, the same bytes [`StateMachine::query`] returns. A
    /// machine whose answers hold values it stores as `Bytes` returns
    /// clones of them as parts of their own instead of copying them into
    /// one buffer, so that an answer repeating a large value many times
    /// costs a reference count per repetition, not a copy.
    /// [`crate::Node::read_parts`] and [`crate::Node::read_local_parts`]
    /// return these parts; `read` and `read_local` concatenate them. The
    /// default is the one part `query` returns.
    fn query_parts(&self, query: &[u8]) -> Vec<Bytes> {
        vec![self.query(query)]
    }
    /// Serializes the whole state (for a snapshot).
    fn snapshot(&self) -> Bytes;
    /// Replaces the state with a snapshot made by [`StateMachine::snapshot`].
    /// The bytes may be a file mapped into memory: a machine that keeps them
    /// (rather than decoding them into its own structures) costs no heap.
    fn restore(&mut self, snapshot: Bytes) -> Result<(), RestoreError>;

    /// Whether this machine reads the log's time (for expiring keys,
    /// leases, rate limits). No node may read its own clock while it
    /// applies an entry (the nodes would disagree); instead, when this is
    /// true, the leader proposes *time entries* stamped with its wall
    /// clock: one ahead of the commands of every round in which its clock
    /// moved on (so a command is applied at a log time at most about a
    /// round older than its proposal), and one once its clock passes
    /// [`StateMachine::next_deadline_ms`]. Each time entry reaches the
    /// machine as [`StateMachine::advance_time`], at the same log position
    /// on every node. Read once, when the node starts. Default: false (no
    /// time entries).
    fn uses_log_time(&self) -> bool {
        false
    }

    /// The log's time moved forward to `time_ms` (milliseconds since the
    /// Unix epoch: the wall clock of the leader that proposed the time
    /// entry at `index`). Called at the same log position on every node,
    /// before the commands that follow it in the log; never with a time
    /// smaller than an earlier call's since the node started or last
    /// restored a snapshot (a leader whose clock is behind does not move
    /// the log's time back). The machine keeps the time it was last given,
    /// in its snapshots too, treats it as "now" when it applies commands,
    /// and keeps the larger of its own and a call's time after a restore.
    ///
    /// Clock assumptions: the log's time is the largest leader clock
    /// stamped so far. A leader whose clock runs ahead moves it ahead for
    /// everyone (keys expire early); a new leader whose clock is behind
    /// stops it until its clock catches up (keys live longer, never
    /// shorter).
    fn advance_time(&mut self, index: LogIndex, time_ms: u64) {
        let _ = (index, time_ms);
    }

    /// The earliest log time at which this machine has work to do (the
    /// next key due to expire), if any. The node reads it after each
    /// applied batch; the leader proposes a time entry once its wall clock
    /// passes it (checked every tick), so that due work happens through
    /// the log without waiting for a client's command. Default: none.
    fn next_deadline_ms(&self) -> Option<u64> {
        None
    }
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The snapshot ends before `what` does.
    #[error("the snapshot is cut off in {what}")]
    Truncated {
        /// What is cut off.
        what: String,
    },
    /// Bytes remain after `what`, which should end the snapshot.
    #[error("{bytes} stray bytes after {what}")]
    TrailingBytes {
        /// What should have ended the snapshot.
        what: String,
        /// How many bytes remain.
        bytes: usize,
    },
    /// The snapshot is not one this state machine made (another format,
    /// another version).
    #[error("the snapshot is not one this state machine can read: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
}
