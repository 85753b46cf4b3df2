//! A node whose disk fills up stops with a typed error: the store's
//! [`PersistenceError`] says `StorageFull` (the kind of the operating
//! system's error, not only its text), which file and what was being done,
//! and the node hands that error to every caller as
//! [`NodeError::Stopped`].
//!
//! Twice: over [`FaultFs`] (a write budget, then `ENOSPC`), and over a real
//! tmpfs of 512 KiB, which needs root to mount (skipped otherwise, saying
//! why, unless `RAFT_NODE_REQUIRE_ROOT_TESTS` is set, which makes it fail).

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use raft_node::example::KvCommand;
use raft_node::persistence::file::{FaultFs, FileOptions, FilePersistence};
use raft_node::persistence::PersistenceError;
use raft_node::{Node, NodeError, Options, UnknownKind};

/// Commands written at most before the node must have stopped.
const MAX_WRITES: usize = 400;
/// The size of each value.
const VALUE_LEN: usize = 8 << 10;

async fn node_on(store: FilePersistence) -> Node {
    let options = Options {
        id: Some("n1".into()),
        cluster: Some("full".into()),
        persistence: Some(Arc::new(store)),
        ..Options::default()
    };
    let node = Node::new(options).await.expect("start the node");
    tokio::time::timeout(Duration::from_secs(10), async {
        while node.role() != raft_node::Role::Leader {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a single node leads");
    node
}

/// Writes until a command fails; returns that error and how many were
/// acknowledged.
async fn write_until_failure(node: &Node) -> (NodeError, usize) {
    for i in 0..MAX_WRITES {
        let set = KvCommand::Set {
            key: format!("k{i}").into(),
            value: vec![b'v'; VALUE_LEN].into(),
        };
        if let Err(e) = node.command(set.encode()).await {
            return (e, i);
        }
    }
    panic!("{MAX_WRITES} writes of {VALUE_LEN} bytes fit: the disk never filled up");
}

/// What every caller of a node on a full disk must see.
async fn check_stopped_on_full_disk(node: &Node) {
    let (first, acked) = write_until_failure(node).await;
    eprintln!("the first write failed after {acked} acknowledged ones: {first}");

    // The node says why it stopped to whoever waits on it.
    let err = tokio::time::timeout(Duration::from_secs(5), node.stopped())
        .await
        .expect("the node reports that it stopped");
    let NodeError::Stopped(cause) = &err else {
        panic!("expected NodeError::Stopped, got {err:?}");
    };
    assert!(err.is_storage_full(), "{err}");
    assert_eq!(cause.io_kind(), Some(ErrorKind::StorageFull), "{cause:?}");
    let PersistenceError::Io(failure) = cause else {
        panic!("expected PersistenceError::Io, got {cause:?}");
    };
    assert!(
        failure.is_storage_full() && failure.is_fail_stop(),
        "{failure}"
    );
    let file = failure.path().expect("names the file").to_string_lossy();
    assert!(
        file.contains("segment-") || file.contains("snapshot-"),
        "names the file written: {failure}"
    );
    let os = failure.io_error().expect("carries the io::Error");
    assert_eq!(os.kind(), ErrorKind::StorageFull);
    let text = err.to_string();
    assert!(
        text.contains("ENOSPC") && text.contains("storage failure"),
        "the message still says it: {text}"
    );

    // The write that hit the full disk was in the log already: its outcome
    // is unknown (a new leader may commit it), or it was refused as the
    // node stopped.
    match &first {
        NodeError::OutcomeUnknown(why) => {
            assert_eq!(why.kind, UnknownKind::NodeStopped, "{first}");
            assert_eq!(why.source.as_deref(), Some(&err), "{first}");
        }
        other => assert_eq!(other, &err),
    }
    // Every later call gets the typed error.
    let again = node
        .command(KvCommand::Delete { key: "k0".into() }.encode())
        .await
        .expect_err("a stopped node acknowledges nothing");
    assert_eq!(again, err);
    assert!(again.is_storage_full());
    let metrics = node.metrics();
    assert!(
        metrics
            .stopped
            .as_deref()
            .is_some_and(|s| s.contains("ENOSPC")),
        "{:?}",
        metrics.stopped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_fs_full_disk_stops_the_node_with_storage_full() {
    let dir = tempfile::TempDir::new().unwrap();
    let fault = FaultFs::new();
    let store = FilePersistence::open_with(
        dir.path(),
        FileOptions::default()
            .segment_size(256 << 10)
            .preallocate(false)
            .fs(Arc::new(fault.clone())),
    )
    .await
    .unwrap();
    let node = node_on(store).await;
    fault.set_space_left(Some(200 << 10));
    check_stopped_on_full_disk(&node).await;
    assert!(fault.counts().enospc >= 1);
    let _ = node.shutdown().await;
}

/// A tmpfs on a directory of its own, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::TempDir::new().map_err(|e| format!("cannot make a directory: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmpfs_full_disk_stops_the_node_with_storage_full() {
    let tmpfs = match Tmpfs::mount("512k") {
        Ok(t) => t,
        Err(why) => {
            assert!(
                std::env::var_os("RAFT_NODE_REQUIRE_ROOT_TESTS").is_none(),
                "RAFT_NODE_REQUIRE_ROOT_TESTS is set, but {why}"
            );
            eprintln!("skipped: this test mounts a tmpfs and needs root ({why}); set RAFT_NODE_REQUIRE_ROOT_TESTS to fail instead");
            return;
        }
    };
    let store = FilePersistence::open_with(
        tmpfs.path().join("n1"),
        FileOptions::default()
            .segment_size(128 << 10)
            .preallocate(false),
    )
    .await
    .unwrap();
    let node = node_on(store).await;
    check_stopped_on_full_disk(&node).await;
    let _ = node.shutdown().await;
    drop(node);
}
