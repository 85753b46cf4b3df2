//! Raft consensus for Rust: a node with a pluggable transport and a
//! pluggable persistence, on tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), raft_node::NodeError> {
//! use raft_node::example::{kv_get, KvCommand};
//! use raft_node::{Node, Options};
//!
//! let node = Node::new(Options::default()).await?; // a single-node store in memory
//! let set = KvCommand::Set { key: "k".into(), value: "v".into() };
//! node.command(set.encode()).await?;
//! let value = node.read(kv_get(b"k")).await?;
//! # let _ = value; Ok(()) }
//! ```
//!
//! The algorithm lives in `raft-core`, a deterministic state machine with no
//! I/O; this crate drives it: one task feeds it and carries out its output
//! (saving to the [`Persistence`] through the core's pipeline), one
//! applies to the [`StateMachine`], one per peer sends through the
//! [`Transport`].
//!
//! The [`guide`] shows a cluster, and how to write a state machine, a
//! transport and a store of your own. [`example`] holds the key-value
//! state machine a node runs when it is given none.
//!
//! # Features
//!
//! - `testkit`: the conformance kits ([`testkit`]: transport,
//!   authentication, persistence, crash durability) and the
//!   fault-injecting `FaultyTransport`, for the tests of transports, stores
//!   and applications.
//! - `serde`: `Serialize` and `Deserialize` on what a custom transport or
//!   store carries ([`Envelope`], [`Request`], [`Reply`], [`Change`],
//!   [`State`], [`Identity`] and the Raft types inside them). The compact
//!   binary encoding the TCP transport and the file store use is
//!   [`codec`], versioned by [`codec::WIRE_VERSION`].
#![warn(missing_docs)]

pub mod codec;
mod error;
mod events;
pub mod example;
pub mod guide;
mod ids;
mod node;
mod options;
pub mod persistence;
mod runtime;
mod session;
mod state_machine;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tls;
pub mod transport;

pub use error::{
    Attempt, LeaderInfo, MembershipError, NodeError, OutcomeUnknown, RemoteError, Removed,
    RetryReason, TransferRefused, UnknownKind,
};
pub use events::Event;
pub use ids::{cluster_number, node_number};
pub use node::{Events, Node, NodeMetrics, NumberedCommand};
pub use options::{system_clock_ms, ApplyMode, Bootstrap, IdGenerator, Options, WallClock};
pub use persistence::file::FilePersistence;
pub use persistence::memory::MemoryPersistence;
pub use persistence::{Change, Identity, Persistence, PersistenceError, State};
pub use raft_core::{MemberRole, ReadMode, Role};
pub use runtime::backlog::ApplyBacklogStats;
pub use runtime::PeerStatus;
pub use state_machine::{RestoreError, StateMachine};
#[cfg(any(test, feature = "testkit"))]
pub use transport::faulty::{FaultyStats, FaultyTransport};
pub use transport::memory::{MemoryNetwork, MemoryTransport};
pub use transport::tcp::{TcpOptions, TcpStats, TcpTransport};
pub use transport::{Connection, Envelope, Handler, Reply, Request, Transport, TransportError};
