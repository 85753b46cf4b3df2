//! A single-node key-value store in memory: `Options::default()` is all it
//! takes.
//!
//! `cargo run -p raft-node --example single_node`

use raft_node::example::{kv_get, KvCommand, KvOutput};
use raft_node::{Node, Options};

#[tokio::main]
async fn main() -> Result<(), raft_node::NodeError> {
    let node = Node::new(Options::default()).await?;
    println!("node {} of cluster {}", node.id(), node.cluster());
    let set = KvCommand::Set {
        key: "greeting".into(),
        value: "hello".into(),
    };
    node.command(set.encode()).await?;
    let out = node.read(kv_get(b"greeting")).await?;
    match KvOutput::decode(&out) {
        Some(KvOutput::Value(Some(v))) => println!("greeting = {}", String::from_utf8_lossy(&v)),
        other => println!("unexpected: {other:?}"),
    }
    node.shutdown().await
}
