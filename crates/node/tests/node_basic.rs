//! The Node end to end on the in-memory transport and persistence.

use std::time::Duration;

use raft_node::example::{kv_get, KvCommand, KvOutput};
use raft_node::{Bootstrap, MemoryNetwork, Node, Options, Role};

fn set(k: &str, v: &str) -> bytes::Bytes {
    KvCommand::Set {
        key: k.to_string().into(),
        value: v.to_string().into(),
    }
    .encode()
}

async fn get(node: &Node, k: &str) -> Option<bytes::Bytes> {
    match KvOutput::decode(&node.read(kv_get(k.as_bytes())).await.unwrap()) {
        Some(KvOutput::Value(v)) => v,
        other => panic!("unexpected read output {other:?}"),
    }
}

async fn wait_for_leader(nodes: &[Node]) -> usize {
    for _ in 0..500 {
        if let Some(i) = nodes.iter().position(|n| n.role() == Role::Leader) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no leader elected");
}

#[tokio::test(start_paused = true)]
async fn a_default_node_is_a_working_single_node_store() {
    let node = Node::new(Options::default()).await.unwrap();
    assert!(!node.id().is_empty());
    assert!(!node.cluster().is_empty());
    wait_for_leader(std::slice::from_ref(&node)).await;
    let out = node.command(set("a", "1")).await.unwrap();
    assert_eq!(KvOutput::decode(&out), Some(KvOutput::Done));
    assert_eq!(get(&node, "a").await, Some("1".into()));
    node.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn three_nodes_replicate_and_serve_reads_anywhere() {
    let net = MemoryNetwork::new();
    let members: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("n{i}"), format!("n{i}")))
        .collect();
    let mut nodes = Vec::new();
    for (id, addr) in &members {
        let node = Node::new(Options {
            id: Some(id.clone()),
            cluster: Some("c".into()),
            transport: Some(std::sync::Arc::new(net.transport(addr))),
            bootstrap: Bootstrap::Static(members.clone()),
            ..Options::default()
        })
        .await
        .unwrap();
        nodes.push(node);
    }
    let leader = wait_for_leader(&nodes).await;
    nodes[leader].command(set("x", "42")).await.unwrap();
    let follower = (leader + 1) % 3;
    // Forwarded to the leader.
    nodes[follower].command(set("y", "7")).await.unwrap();
    for n in &nodes {
        assert_eq!(get(n, "x").await, Some("42".into()), "read at {}", n.id());
        assert_eq!(get(n, "y").await, Some("7".into()));
    }
    let peers = nodes[leader].peers().await.unwrap();
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.match_index.is_some()));
    for n in &nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_single_node_restarts_from_its_storage() {
    let store = raft_node::MemoryPersistence::new();
    let options = || Options {
        persistence: Some(std::sync::Arc::new(store.clone())),
        ..Options::default()
    };
    let node = Node::new(Options {
        id: Some("solo".into()),
        ..options()
    })
    .await
    .unwrap();
    node.command(set("k", "v")).await.unwrap();
    node.shutdown().await.unwrap();
    let node = Node::new(options()).await.unwrap();
    assert_eq!(node.id(), "solo", "the persisted id wins");
    assert_eq!(get(&node, "k").await, Some("v".into()));
    node.command(set("k", "w")).await.unwrap();
    assert_eq!(get(&node, "k").await, Some("w".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_restart_is_served() {
    let store = raft_node::MemoryPersistence::new();
    let options = || Options {
        persistence: Some(std::sync::Arc::new(store.clone())),
        command_timeout: Duration::from_secs(2),
        ..Options::default()
    };
    let node = Node::new(options()).await.unwrap();
    node.command(set("k", "v")).await.unwrap();
    node.shutdown().await.unwrap();
    let node = Node::new(options()).await.unwrap();
    assert_eq!(get(&node, "k").await, Some("v".into()));
}

/// A state machine that keeps one value and answers every query with it
/// three times, in parts that are the stored value itself.
struct Repeater {
    value: bytes::Bytes,
}

impl raft_node::StateMachine for Repeater {
    fn apply(&mut self, _index: u64, command: &[u8]) -> bytes::Bytes {
        self.value = bytes::Bytes::copy_from_slice(command);
        bytes::Bytes::new()
    }
    fn query(&self, query: &[u8]) -> bytes::Bytes {
        self.query_parts(query).concat().into()
    }
    fn query_parts(&self, _query: &[u8]) -> Vec<bytes::Bytes> {
        vec![self.value.clone(), self.value.clone(), self.value.clone()]
    }
    fn snapshot(&self) -> bytes::Bytes {
        self.value.clone()
    }
    fn restore(&mut self, snapshot: bytes::Bytes) -> Result<(), raft_node::RestoreError> {
        self.value = snapshot;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn reads_in_parts_return_the_machines_parts_and_reads_their_concatenation() {
    let node = Node::new(Options {
        state_machine: Some(Box::new(Repeater {
            value: bytes::Bytes::new(),
        })),
        ..Options::default()
    })
    .await
    .unwrap();
    wait_for_leader(std::slice::from_ref(&node)).await;
    node.command(&b"abc"[..]).await.unwrap();
    let parts = node.read_parts(&b"q"[..]).await.unwrap();
    assert_eq!(parts, ["abc", "abc", "abc"]);
    // The parts are the stored value itself, not copies of it.
    assert!(parts.iter().all(|p| p.as_ptr() == parts[0].as_ptr()));
    let local = node.read_local_parts(&b"q"[..]).await.unwrap();
    assert_eq!(local, parts);
    assert_eq!(node.read(&b"q"[..]).await.unwrap(), "abcabcabc");
    assert_eq!(node.read_local(&b"q"[..]).await.unwrap(), "abcabcabc");
    node.shutdown().await.unwrap();
}

/// A key-value machine whose `snapshot` waits until the test opens its
/// gate (for at most 10 s), saying when one started.
struct GatedSnapshots {
    kv: raft_node::example::KvStateMachine,
    gate: std::sync::Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    started: std::sync::atomic::AtomicBool,
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl raft_node::StateMachine for GatedSnapshots {
    fn apply(&mut self, index: u64, command: &[u8]) -> bytes::Bytes {
        self.kv.apply(index, command)
    }

    fn query(&self, query: &[u8]) -> bytes::Bytes {
        self.kv.query(query)
    }

    fn snapshot(&self) -> bytes::Bytes {
        self.gate
            .started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let open = self.gate.open.lock().unwrap();
        let _open = self
            .gate
            .opened
            .wait_timeout_while(open, Duration::from_secs(10), |open| !*open)
            .unwrap();
        self.kv.snapshot()
    }

    fn restore(&mut self, snapshot: bytes::Bytes) -> Result<(), raft_node::RestoreError> {
        self.kv.restore(snapshot)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_state_machine_snapshots_off_the_driver_and_answers_what_committed_meanwhile() {
    let store = raft_node::MemoryPersistence::new();
    let gate = std::sync::Arc::new(Gate::default());
    let options = |gate: &std::sync::Arc<Gate>| Options {
        id: Some("solo".into()),
        cluster: Some("c".into()),
        persistence: Some(std::sync::Arc::new(store.clone())),
        state_machine: Some(Box::new(GatedSnapshots {
            kv: Default::default(),
            gate: gate.clone(),
        })),
        snapshot_threshold: 5,
        apply_mode: raft_node::ApplyMode::Inline,
        ..Options::default()
    };
    let node = Node::new(options(&gate)).await.unwrap();
    wait_for_leader(std::slice::from_ref(&node)).await;
    // Commands are answered until the snapshot they make due starts. The
    // snapshot starts on another thread after the command that made it due
    // was answered, so the next command may already be under way: then it
    // is the late one, which waits behind the snapshot.
    let started = || gate.started.load(std::sync::atomic::Ordering::SeqCst);
    let send = |key: String| {
        let node = node.clone();
        tokio::spawn(async move { node.command(set(&key, "2")).await })
    };
    let mut written = 0;
    let (late, late_key) = loop {
        assert!(written < 20, "no snapshot started after {written} commands");
        let key = format!("k{written}");
        written += 1;
        let pending = send(key.clone());
        while !pending.is_finished() && !started() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if !pending.is_finished() {
            break (pending, key);
        }
        pending.await.unwrap().unwrap();
        if started() {
            break (send("late".into()), "late".to_string());
        }
    };
    // The driver still runs: it answers calls, and the committed command
    // waits in the apply backlog, unanswered, while the snapshot is made.
    for _ in 0..500 {
        if node.metrics().apply_backlog.entries > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(node.metrics().apply_backlog.entries > 0);
    assert!(!late.is_finished(), "answered before it was applied");
    let peers = tokio::time::timeout(Duration::from_secs(5), node.peers()).await;
    assert!(matches!(peers, Ok(Ok(_))), "the driver was blocked");
    *gate.open.lock().unwrap() = true;
    gate.opened.notify_all();
    let out = tokio::time::timeout(Duration::from_secs(10), late)
        .await
        .expect("answered once the snapshot was made")
        .unwrap()
        .unwrap();
    assert_eq!(KvOutput::decode(&out), Some(KvOutput::Done));
    assert_eq!(get(&node, &late_key).await, Some("2".into()));
    assert_eq!(node.metrics().apply_backlog.entries, 0);
    node.shutdown().await.unwrap();
    // A restart restores the snapshot and replays the rest.
    let node = Node::new(options(&gate)).await.unwrap();
    wait_for_leader(std::slice::from_ref(&node)).await;
    assert_eq!(get(&node, "k0").await, Some("2".into()));
    assert_eq!(get(&node, &late_key).await, Some("2".into()));
    node.shutdown().await.unwrap();
}
