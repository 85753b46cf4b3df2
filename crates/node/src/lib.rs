//! Raft consensus for Rust: a node with a pluggable transport and a
//! pluggable persistence, on tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), raft_node::NodeError> {
//! use raft_node::{KvCommand, Node, Options};
//!
//! let node = Node::new(Options::default()).await?; // a single-node store in memory
//! let set = KvCommand::Set { key: "k".into(), value: "v".into() };
//! node.command(set.encode()).await?;
//! let value = node.read(raft_node::kv_get(b"k")).await?;
//! # let _ = value; Ok(()) }
//! ```
//!
//! The algorithm lives in `raft-core`, a deterministic state machine with no
//! I/O; this crate drives it: one task feeds it and carries out its output
//! (saving to the [`Persistence`] through the core's pipeline), one
//! applies to the [`StateMachine`], one per peer sends through the
//! [`Transport`].
#![warn(missing_docs)]

pub mod codec;
mod error;
mod events;
mod ids;
mod node;
mod options;
pub mod persistence;
mod runtime;
mod session;
mod state_machine;
pub mod testkit;
pub mod tls;
pub mod transport;

pub use error::{
    LeaderInfo, MembershipError, NodeError, RemoteError, Removed, RetryReason, TransferRefused,
};
pub use events::Event;
pub use ids::{cluster_number, node_number};
pub use node::{Events, Node, NodeMetrics, NumberedCommand};
pub use options::{ApplyMode, Bootstrap, IdGenerator, Options};
pub use persistence::file::FilePersistence;
pub use persistence::memory::MemoryPersistence;
pub use persistence::{Change, Identity, Persistence, PersistenceError, State};
pub use raft_core::{MemberRole, ReadMode, Role};
pub use runtime::backlog::ApplyBacklogStats;
pub use runtime::PeerStatus;
pub use state_machine::{kv_get, KvCommand, KvOutput, KvStateMachine, RestoreError, StateMachine};
pub use transport::faulty::{FaultyStats, FaultyTransport};
pub use transport::memory::{MemoryNetwork, MemoryTransport};
pub use transport::tcp::{TcpOptions, TcpStats, TcpTransport};
pub use transport::{Connection, Envelope, Handler, Reply, Request, Transport, TransportError};
