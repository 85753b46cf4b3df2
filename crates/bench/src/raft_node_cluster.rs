//! raft-node under load: three `Node`s on one `MemoryNetwork`, each with its
//! own `MemoryPersistence` and a state machine that does nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_node::{
    ApplyMode, Bootstrap, MemoryNetwork, MemoryPersistence, Node, Options, Role, StateMachine,
};

use crate::Client;

/// Applies nothing, answers nothing.
struct Nothing;

impl StateMachine for Nothing {
    fn apply(&mut self, _index: u64, _command: &[u8]) -> Bytes {
        Bytes::new()
    }

    fn query(&self, _query: &[u8]) -> Bytes {
        Bytes::new()
    }

    fn snapshot(&self) -> Bytes {
        Bytes::new()
    }

    fn restore(&mut self, _snapshot: bytes::Bytes) -> Result<(), raft_node::RestoreError> {
        Ok(())
    }
}

/// Options that differ from raft-node's defaults (none unless asked for).
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// `Options::snapshot_threshold`.
    pub snapshot_threshold: Option<u64>,
    /// `Options::snapshot_trailing`.
    pub snapshot_trailing: Option<u64>,
    /// Write with `Node::command_without_session` instead of
    /// `Node::command` (no client session: no deduplication).
    pub without_sessions: bool,
    /// `ApplyMode::Inline` instead of the default `ApplyMode::Task`.
    pub apply_inline: bool,
}

/// A running three-node cluster with a leader.
pub struct Cluster {
    nodes: Vec<Node>,
    leader: usize,
    without_sessions: bool,
}

impl Cluster {
    /// Starts the nodes with default options (a static membership of the
    /// three; `tuning` may change the snapshot policy) and waits for a leader.
    pub async fn start(tuning: &Tuning) -> Result<Cluster, String> {
        let net = MemoryNetwork::new();
        let members: Vec<(String, String)> = (1..=3)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect();
        let mut nodes = Vec::new();
        let defaults = Options::default();
        for (id, address) in &members {
            let node = Node::new(Options {
                id: Some(id.clone()),
                cluster: Some("bench".into()),
                transport: Some(Arc::new(net.transport(address))),
                persistence: Some(Arc::new(MemoryPersistence::new())),
                state_machine: Some(Box::new(Nothing)),
                bootstrap: Bootstrap::Static(members.clone()),
                snapshot_threshold: tuning
                    .snapshot_threshold
                    .unwrap_or(defaults.snapshot_threshold),
                snapshot_trailing: tuning
                    .snapshot_trailing
                    .unwrap_or(defaults.snapshot_trailing),
                apply_mode: if tuning.apply_inline {
                    ApplyMode::Inline
                } else {
                    defaults.apply_mode
                },
                ..Options::default()
            })
            .await
            .map_err(|e| e.to_string())?;
            nodes.push(node);
        }
        for _ in 0..1000 {
            if let Some(leader) = nodes.iter().position(|n| n.role() == Role::Leader) {
                // The leader's first entry (a blank one) commits before it
                // serves commands well; one command makes sure.
                nodes[leader]
                    .command(Bytes::new())
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(Cluster {
                    nodes,
                    leader,
                    without_sessions: tuning.without_sessions,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err("no leader elected in 10 s".into())
    }

    /// A client of the leader.
    pub fn client(&self) -> NodeClient {
        NodeClient(self.nodes[self.leader].clone(), self.without_sessions)
    }

    /// The leader's current term (to notice elections during a run).
    pub fn leader_term(&self) -> u64 {
        self.nodes[self.leader].term()
    }

    /// The leader's transport and core counters, for the log.
    pub fn diagnostics(&self) -> String {
        let m = self.nodes[self.leader].metrics();
        format!(
            "leader: {} raft messages sent, {} dropped (peer queue full), {} failed; {} proposals, {} refused; {} snapshots taken, {} sent",
            m.messages_sent,
            m.messages_dropped,
            m.messages_failed,
            m.core.proposals,
            m.core.proposals_refused,
            m.core.snapshots_taken,
            m.core.snapshots_sent
        )
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for n in &self.nodes {
            let _ = n.shutdown().await;
        }
    }
}

/// Writes to the leader through `Node::command` (or, if the flag is set,
/// `Node::command_without_session`).
#[derive(Clone)]
pub struct NodeClient(Node, bool);

impl Client for NodeClient {
    async fn write(&self) -> Result<(), String> {
        let written = if self.1 {
            self.0.command_without_session(Bytes::new()).await
        } else {
            self.0.command(Bytes::new()).await
        };
        written.map(|_| ()).map_err(|e| e.to_string())
    }
}
