//! What every part of a running raft-kv server shares: the node, the
//! back-ends it was built on (for their counters), the users its store has
//! applied, the metrics, and the proposer of the connections' writes.

use std::sync::Arc;
use std::time::Instant;

use raft_node::{FilePersistence, Node, TcpTransport};

use crate::acl::SharedUsers;
use crate::blocking::Wakeups;
use crate::metrics::Metrics;
use crate::proposer::Proposer;
use crate::tls::ReloadableAcceptor;

/// The shared state of one raft-kv server.
pub struct Context {
    /// The Raft node.
    pub node: Node,
    /// The client-facing counters and latencies.
    pub metrics: Arc<Metrics>,
    /// Joins the writes of the connections into shared log entries.
    pub writes: Arc<Proposer>,
    /// The clients blocked in BLPOP and the like, woken by the store.
    pub wakeups: Arc<Wakeups>,
    /// The ACL users the node's store has applied (or the node's own
    /// `--requirepass` until then).
    pub acl: Arc<SharedUsers>,
    /// The node's store, when it is the file store.
    pub file: Option<Arc<FilePersistence>>,
    /// The node's transport, when it is TCP.
    pub tcp: Option<Arc<TcpTransport>>,
    /// The TLS port's configuration, when there is one.
    pub client_tls: Option<ReloadableAcceptor>,
    /// Where clients connect (RESP).
    pub client_address: String,
    /// Where the admin HTTP endpoint listens, if anywhere.
    pub admin_address: Option<String>,
    /// When the server started.
    pub started: Instant,
}
