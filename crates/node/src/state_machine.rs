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
