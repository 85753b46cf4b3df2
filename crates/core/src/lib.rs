//! The Raft consensus algorithm as a deterministic state machine.
//!
//! This crate does no I/O: no threads, no clock, no sockets, no files, no
//! global randomness. Time enters as [`Raft::tick`], messages as
//! [`Raft::step`], client work as [`Raft::propose`], [`Raft::read_index`],
//! [`Raft::propose_conf_change`] and [`Raft::transfer_leader`]; randomness
//! comes from a generator seeded by [`Config::seed`]. What the node must do
//! comes out of [`Raft::ready`] as a [`Ready`]: what to persist, what to
//! send and when, what to apply, which reads to serve. The driver reports
//! durability back with [`Raft::on_persisted`].
//!
//! One module per concern: `quorum` (majority math), `progress` (a leader's
//! view of each follower), `log` (the entries and the positions along them),
//! `membership` (configurations and single-server changes), `election`,
//! `replication`, `snapshot`, `read`; and `pipeline`, the ordering rules
//! between the core's output, the disk and the state machine that every
//! driver (the runtime, the simulator) follows. Each states the invariants it keeps
//! where its state is declared.
#![warn(missing_docs)]

pub mod bugs;
mod config;
mod election;
mod log;
mod membership;
mod message;
mod metrics;
pub mod pipeline;
mod progress;
pub mod quorum;
mod raft;
mod read;
mod ready;
mod replication;
mod restore;
mod snapshot;
mod step;
mod types;

pub use config::{Config, ConfigError, ReadMode};
pub use election::TransferError;
pub use membership::{ConfChange, Member, MemberRole, Membership, MembershipError};
pub use message::{
    Append, AppendOutcome, AppendResponse, Body, Message, SnapshotChunk, SnapshotResponse,
    VoteRequest,
};
pub use metrics::Metrics;
pub use progress::{Progress, ReplicationState, SnapshotSend};
pub use raft::Raft;
pub use read::ReadError;
pub use ready::{IncomingChunk, ReadState, Ready, SoftState};
pub use replication::ProposeError;
pub use restore::{RestoreError, Restored, StoredTerm};
pub use snapshot::CompactError;
pub use step::StepError;
pub use types::{
    Entry, EntryPayload, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMeta, Term,
    MAX_INDEX, MAX_TERM, NO_NODE,
};
