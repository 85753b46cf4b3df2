//! Snapshots from the leader are streamed: written chunk by chunk to a spool
//! file, installed only when complete, and a transfer cut off half-way is
//! retried without leaving files behind.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raft_node::example::{kv_get, KvCommand, KvOutput};
use raft_node::{Bootstrap, MemoryNetwork, MemoryPersistence, Node, Options, Role};

fn set(k: &str, v: &str) -> bytes::Bytes {
    KvCommand::Set {
        key: k.to_string().into(),
        value: v.to_string().into(),
    }
    .encode()
}

async fn value(node: &Node, k: &str) -> Option<bytes::Bytes> {
    match KvOutput::decode(&node.read(kv_get(k.as_bytes())).await.unwrap()) {
        Some(KvOutput::Value(v)) => v,
        other => panic!("unexpected read output {other:?}"),
    }
}

fn spool_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn options(net: &MemoryNetwork, id: &str, spool: &Path) -> Options {
    Options {
        id: Some(id.into()),
        cluster: Some("stream".into()),
        transport: Some(Arc::new(net.transport(id))),
        persistence: Some(Arc::new(MemoryPersistence::new())),
        snapshot_threshold: 50,
        snapshot_trailing: 5,
        snapshot_spool: Some(spool.to_path_buf()),
        heartbeat_interval: Duration::from_millis(20),
        election_timeout_min: Duration::from_millis(100),
        election_timeout_max: Duration::from_millis(200),
        command_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{what} did not happen within 10 s");
}

/// A leader with enough state that its snapshot takes several 1 MiB chunks.
async fn leader_with_state(net: &MemoryNetwork, spool: &Path, values: usize) -> Node {
    let leader = Node::new(Options {
        bootstrap: Bootstrap::Single,
        ..options(net, "a", spool)
    })
    .await
    .unwrap();
    let big = "x".repeat(64 * 1024);
    for i in 0..values {
        leader.command(set(&format!("k{i}"), &big)).await.unwrap();
    }
    eventually("a snapshot", || leader.metrics().snapshot_index > 0).await;
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_receives_the_snapshot_through_its_spool() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemoryNetwork::new();
    let leader = leader_with_state(&net, &dir.path().join("a"), 120).await;
    let spool = dir.path().join("b");
    let joiner = Node::new(Options {
        bootstrap: Bootstrap::Join,
        ..options(&net, "b", &spool)
    })
    .await
    .unwrap();
    let mut events = joiner.subscribe();
    leader.join("b").await.unwrap();
    let installed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.next().await {
                Some(raft_node::Event::SnapshotInstalled { index }) => return index,
                Some(_) => continue,
                None => panic!("the joiner went away"),
            }
        }
    })
    .await
    .expect("a snapshot installed");
    assert!(installed > 0);
    assert_eq!(value(&joiner, "k0").await.map(|v| v.len()), Some(64 * 1024));
    assert_eq!(
        value(&joiner, "k119").await.map(|v| v.len()),
        Some(64 * 1024)
    );
    assert!(
        spool_files(&spool).is_empty(),
        "left behind: {:?}",
        spool_files(&spool)
    );
    joiner.shutdown().await.unwrap();
    leader.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_off_half_way_is_retried_without_leaking_files() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemoryNetwork::new();
    // About 16 MiB of state: sixteen 1 MiB chunks, four in flight at a time.
    let leader = leader_with_state(&net, &dir.path().join("a"), 256).await;
    let spool = dir.path().join("b");
    let joiner_store = MemoryPersistence::new();
    let start_joiner = || async {
        Node::new(Options {
            bootstrap: Bootstrap::Join,
            persistence: Some(Arc::new(joiner_store.clone())),
            ..options(&net, "b", &spool)
        })
        .await
        .unwrap()
    };
    let joiner = start_joiner().await;
    // Slow the network down so that the transfer takes a while.
    net.set_delay(Duration::from_millis(20), Duration::from_millis(20))
        .unwrap();
    let join = {
        let leader = leader.clone();
        tokio::spawn(async move { leader.join("b").await })
    };
    // Cut the transfer off as soon as a part of the snapshot has arrived.
    eventually("a partial spool file", || {
        spool_files(&spool).iter().any(|f| f.ends_with(".part"))
    })
    .await;
    net.isolate("b");
    joiner.crash().await;
    drop(joiner);
    // A real crash (unlike this one, which unwinds the node's tasks) leaves
    // the partial file behind: put one there.
    std::fs::write(spool.join("raft-b-incoming-7-1.part"), b"half a snapshot").unwrap();
    // The restarted node clears it and receives the snapshot afresh.
    let joiner = start_joiner().await;
    assert!(spool_files(&spool).is_empty(), "leftovers removed at start");
    net.set_delay(Duration::ZERO, Duration::ZERO).unwrap();
    net.reconnect("b");
    let joined = join.await.unwrap();
    if let Err(e) = &joined {
        panic!(
            "join failed: {e}; leader peers {:?}; joiner {:?}; spool {:?}",
            leader.peers().await,
            joiner.metrics(),
            spool_files(&spool)
        );
    }
    eventually("the joiner caught up", || {
        joiner.metrics().applied_index >= leader.metrics().commit_index
    })
    .await;
    assert_eq!(
        value(&joiner, "k255").await.map(|v| v.len()),
        Some(64 * 1024)
    );
    assert!(
        spool_files(&spool).is_empty(),
        "left behind: {:?}",
        spool_files(&spool)
    );
    assert!(joiner.metrics().snapshot_index > 0);
    assert_eq!(leader.role(), Role::Leader);
    joiner.shutdown().await.unwrap();
    leader.shutdown().await.unwrap();
}
