//! A 3-node cluster in one process on the in-memory transport: writes
//! through any node, a leader crash, a new leader, the data still there.
//!
//! `cargo run -p raft-node --example three_nodes`

use std::sync::Arc;
use std::time::Duration;

use raft_node::example::{kv_get, KvCommand, KvOutput};
use raft_node::{Bootstrap, MemoryNetwork, MemoryPersistence, Node, NodeError, Options, Role};

async fn start(
    net: &MemoryNetwork,
    id: &str,
    members: &[(String, String)],
) -> Result<Node, NodeError> {
    Node::new(Options {
        id: Some(id.to_string()),
        cluster: Some("example".into()),
        transport: Some(Arc::new(net.transport(id))),
        persistence: Some(Arc::new(MemoryPersistence::new())),
        bootstrap: Bootstrap::Static(members.to_vec()),
        ..Options::default()
    })
    .await
}

async fn leader_of(nodes: &[Node]) -> usize {
    loop {
        if let Some(i) = nodes.iter().position(|n| n.role() == Role::Leader) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), NodeError> {
    let net = MemoryNetwork::new();
    let members: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|id| (id.to_string(), id.to_string()))
        .collect();
    let mut nodes = Vec::new();
    for (id, _) in &members {
        nodes.push(start(&net, id, &members).await?);
    }
    let leader = leader_of(&nodes).await;
    println!("leader: {}", nodes[leader].id());
    for (i, node) in nodes.iter().enumerate() {
        // Followers forward commands to the leader.
        let set = KvCommand::Set {
            key: format!("k{i}").into(),
            value: format!("written through {}", node.id()).into(),
        };
        node.command(set.encode()).await?;
    }
    println!("crashing the leader {}", nodes[leader].id());
    nodes[leader].crash().await;
    let survivors: Vec<Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, n)| n.clone())
        .collect();
    let next = leader_of(&survivors).await;
    println!("new leader: {}", survivors[next].id());
    for i in 0..3 {
        let out = survivors[next]
            .read(kv_get(format!("k{i}").as_bytes()))
            .await?;
        if let Some(KvOutput::Value(Some(v))) = KvOutput::decode(&out) {
            println!("k{i} = {}", String::from_utf8_lossy(&v));
        }
    }
    for n in survivors {
        n.shutdown().await?;
    }
    Ok(())
}
