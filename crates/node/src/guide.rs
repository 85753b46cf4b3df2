//! A short guide: a cluster, exactly-once commands, a state machine, a
//! transport and a store of your own. Every example here runs as a test.
//!
//! # A cluster
//!
//! A node starts alone ([`Bootstrap::Single`](crate::Bootstrap::Single),
//! the default) or empty, waiting to be added
//! ([`Bootstrap::Join`](crate::Bootstrap::Join)); a member adds it with
//! [`Node::join`](crate::Node::join) and removes one with
//! [`Node::leave`](crate::Node::leave). Commands and reads go through any
//! member: a follower forwards them to the leader.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), raft_node::NodeError> {
//! use std::sync::Arc;
//! use raft_node::example::{kv_get, KvCommand};
//! use raft_node::{Bootstrap, Event, MemoryNetwork, Node, Options};
//!
//! let net = MemoryNetwork::new();
//! let start = |id: &str, bootstrap| {
//!     Node::new(Options {
//!         id: Some(id.into()),
//!         cluster: Some("guide".into()),
//!         transport: Some(Arc::new(net.transport(id))),
//!         bootstrap,
//!         ..Options::default()
//!     })
//! };
//! let a = start("a", Bootstrap::Single).await?;
//! let b = start("b", Bootstrap::Join).await?;
//! let mut events = b.subscribe();
//!
//! a.join("b").await?; // "b" is b's address on this network
//! let peers = a.peers().await?;
//! assert_eq!(peers.len(), 1);
//!
//! // Through the follower: forwarded to the leader.
//! let set = KvCommand::Set { key: "k".into(), value: "v".into() };
//! b.command(set.encode()).await?;
//! let value = b.read(kv_get(b"k")).await?;
//! assert!(!value.is_empty());
//!
//! // b saw its leader.
//! while let Some(event) = events.next().await {
//!     if let Event::LeaderChanged { leader: Some(_), .. } = event {
//!         break;
//!     }
//! }
//!
//! a.leave("b").await?;
//! assert!(a.peers().await?.is_empty());
//! # a.shutdown().await?; b.shutdown().await.ok(); Ok(()) }
//! ```
//!
//! # Exactly-once commands
//!
//! Every [`Node::command`](crate::Node::command) is numbered in the node's
//! client session (registered through the log; clones of a `Node` share
//! it). Within `command_timeout` the node sends it again, with the same
//! number, across leader changes and lost answers, and the layer that
//! applies entries applies each number once, answering a repeat with the
//! first reply. An error says whether the command certainly took no
//! effect or may have ([`NodeError::is_outcome_unknown`](crate::NodeError::is_outcome_unknown)).
//! To go on retrying past the timeout without ever applying twice, keep
//! the [`NumberedCommand`](crate::NumberedCommand) and send it again:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), raft_node::NodeError> {
//! use raft_node::example::KvCommand;
//! use raft_node::{Node, Options};
//!
//! let node = Node::new(Options::default()).await?;
//! let set = KvCommand::Set { key: "k".into(), value: "v".into() };
//! let numbered = node.numbered_command(set.encode());
//! let first = loop {
//!     match numbered.send().await {
//!         Ok(reply) => break reply,
//!         Err(e) if e.is_outcome_unknown() => continue, // same number: at most once
//!         Err(e) => return Err(e),                       // certainly not applied
//!     }
//! };
//! // Sent again after a success (an answer that was lost, say): the first
//! // reply again, not a second application.
//! assert_eq!(numbered.send().await?, first);
//! # node.shutdown().await?; Ok(()) }
//! ```
//!
//! A command that is harmless to apply twice can skip the session
//! ([`Node::command_without_session`](crate::Node::command_without_session)):
//! it goes to the log as given.
//!
//! # A state machine
//!
//! A [`StateMachine`](crate::StateMachine) applies committed commands in
//! log order, answers queries, and turns its whole state into a snapshot
//! and back. It must be deterministic: every node applies the same
//! commands and must reach the same state. Here, a counter:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), raft_node::NodeError> {
//! use bytes::Bytes;
//! use raft_node::{Node, Options, RestoreError, StateMachine};
//!
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! impl StateMachine for Counter {
//!     fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
//!         self.0 += command.len() as u64;
//!         Bytes::copy_from_slice(&self.0.to_le_bytes())
//!     }
//!     fn query(&self, _query: &[u8]) -> Bytes {
//!         Bytes::copy_from_slice(&self.0.to_le_bytes())
//!     }
//!     fn snapshot(&self) -> Bytes {
//!         Bytes::copy_from_slice(&self.0.to_le_bytes())
//!     }
//!     fn restore(&mut self, snapshot: Bytes) -> Result<(), RestoreError> {
//!         let bytes: [u8; 8] = snapshot[..].try_into().map_err(|_| RestoreError::Malformed {
//!             reason: format!("{} bytes, not 8", snapshot.len()),
//!         })?;
//!         self.0 = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! let node = Node::new(Options {
//!     state_machine: Some(Box::new(Counter::default())),
//!     ..Options::default()
//! })
//! .await?;
//! node.command(&b"abc"[..]).await?;
//! let total = node.read(Bytes::new()).await?;
//! assert_eq!(total[..], 3u64.to_le_bytes());
//! # node.shutdown().await?; Ok(()) }
//! ```
//!
//! # A transport
//!
//! A [`Transport`](crate::Transport) connects to peers
//! ([`Connection`](crate::Connection): `invoke`, `listen`, `close`) and
//! accepts their requests for a [`Handler`](crate::Handler). A transport
//! that moves bytes encodes with [`codec`](crate::codec) (or, with the
//! `serde` feature, any serde format). The transport kit
//! ([`testkit::transport`](crate::testkit::transport), feature `testkit`)
//! checks what the node relies on: order, timeouts, errors that say whether
//! a request may have been delivered, shutdown freeing the address. This
//! one wraps the in-memory transport and counts requests:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use raft_node::transport::{Connection, Envelope, Handler, Reply, Transport, TransportError};
//! use raft_node::MemoryNetwork;
//!
//! struct Counting {
//!     inner: Arc<dyn Transport>,
//!     sent: Arc<AtomicU64>,
//! }
//! struct CountingConnection {
//!     inner: Arc<dyn Connection>,
//!     sent: Arc<AtomicU64>,
//! }
//!
//! #[async_trait]
//! impl Transport for Counting {
//!     async fn connect(&self, address: &str) -> Result<Arc<dyn Connection>, TransportError> {
//!         let inner = self.inner.connect(address).await?;
//!         Ok(Arc::new(CountingConnection { inner, sent: self.sent.clone() }))
//!     }
//!     async fn listen(&self, address: &str, handler: Arc<dyn Handler>) -> Result<String, TransportError> {
//!         self.inner.listen(address, handler).await
//!     }
//!     async fn shutdown(&self) -> Result<(), TransportError> {
//!         self.inner.shutdown().await
//!     }
//! }
//!
//! #[async_trait]
//! impl Connection for CountingConnection {
//!     async fn invoke(&self, envelope: Envelope) -> Result<Reply, TransportError> {
//!         self.sent.fetch_add(1, Ordering::Relaxed);
//!         self.inner.invoke(envelope).await
//!     }
//!     async fn close(&self) -> Result<(), TransportError> {
//!         self.inner.close().await
//!     }
//!     // `listen` (the back channel) keeps its default: the node never uses it.
//! }
//!
//! // The conformance kit: a fresh transport per setup, and its address.
//! let net = MemoryNetwork::new();
//! let sent = Arc::new(AtomicU64::new(0));
//! let counted = sent.clone();
//! raft_node::testkit::transport::Kit::new(move |setup| {
//!     net.set_timeout(setup.request_timeout); // the timeout the kit asks for
//!     let address = format!("node-{}", setup.index);
//!     let transport: Arc<dyn Transport> = Arc::new(Counting {
//!         inner: Arc::new(net.transport(address.clone())),
//!         sent: counted.clone(),
//!     });
//!     async move { (transport, address) }
//! })
//! .without_back_channel()
//! .run_all()
//! .await;
//! assert!(sent.load(Ordering::Relaxed) > 0);
//! # }
//! ```
//!
//! # A store
//!
//! A [`Persistence`](crate::Persistence) makes each
//! [`Change`](crate::Change) durable before `save` returns and gives back
//! the [`State`](crate::State) they add up to on `load`. The file store
//! ([`FilePersistence`](crate::FilePersistence)) is the one to use on a
//! disk; `examples/custom_persistence.rs` writes one from scratch. Two kits
//! check a store: [`testkit::persistence`](crate::testkit::persistence)
//! (what `load` must return after any sequence of changes, what must be
//! refused) and [`testkit::durability`](crate::testkit::durability) (a
//! child process killed at random, and every acknowledged save on disk,
//! not only in the page cache).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use raft_node::testkit::persistence::{fresh_memory, run_all};
//!
//! // Every check, each on a fresh store.
//! run_all(fresh_memory).await;
//! # }
//! ```
