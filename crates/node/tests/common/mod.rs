//! What the in-memory cluster tests share: a store that can be made slow,
//! waiting for an agreed leader, and the example state machine's SET.

#![allow(dead_code)] // Each test file uses its own part.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_node::example::KvCommand;
use raft_node::{Change, MemoryPersistence, Node, Persistence, PersistenceError, Role, State};
use tokio::time::{sleep, Instant};

/// A store whose saves take `delay` once `slow` is set.
pub struct SlowStore {
    pub inner: MemoryPersistence,
    pub slow: Arc<AtomicBool>,
    pub delay: Duration,
}

#[async_trait]
impl Persistence for SlowStore {
    async fn save(&self, change: Change) -> Result<(), PersistenceError> {
        if self.slow.load(Ordering::SeqCst) {
            sleep(self.delay).await;
        }
        self.inner.save(change).await
    }

    async fn load(&self) -> Result<Option<State>, PersistenceError> {
        self.inner.load().await
    }
}

/// Waits until exactly one of `nodes` leads and all of them name it, for
/// at most `patience`.
pub async fn agreed_leader(nodes: &[Node], patience: Duration) -> Node {
    let deadline = Instant::now() + patience;
    loop {
        let leaders: Vec<&Node> = nodes.iter().filter(|n| n.role() == Role::Leader).collect();
        if let [leader] = leaders[..] {
            if nodes
                .iter()
                .all(|n| n.leader().is_some_and(|l| l.id == leader.id()))
            {
                return leader.clone();
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader");
        sleep(Duration::from_millis(10)).await;
    }
}

/// The example state machine's `SET k v`.
pub fn set(k: &str, v: &str) -> Bytes {
    KvCommand::Set {
        key: Bytes::copy_from_slice(k.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
    .encode()
}
