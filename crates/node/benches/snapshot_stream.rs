//! How much memory a large snapshot costs to move: a leader whose state
//! machine holds SNAPSHOT_MIB (default 1024) MiB sends its snapshot over TCP
//! on loopback to a node that joins; both keep their state in
//! `FilePersistence`. The heap is counted by a counting allocator: the
//! figure printed is the peak heap during the transfer above what was in
//! use before it, for both nodes together (they share this process).
//! Goal: under 64 MiB on either side.
//!
//! `cargo bench -p raft-node --bench snapshot_stream` (`SNAPSHOT_MIB=256`
//! for a quicker run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_node::{
    Bootstrap, FilePersistence, Node, Options, StateMachine, TcpOptions, TcpTransport,
};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A state machine whose whole state is one blob: its snapshot is the blob
/// and restoring keeps the bytes given (a mapped file), so the state itself
/// costs no heap and what is measured is the transfer.
struct Blob {
    data: Bytes,
}

impl StateMachine for Blob {
    fn apply(&mut self, _index: u64, _command: &[u8]) -> Bytes {
        Bytes::new()
    }

    fn query(&self, _query: &[u8]) -> Bytes {
        Bytes::from(self.data.len().to_le_bytes().to_vec())
    }

    fn snapshot(&self) -> Bytes {
        self.data.clone()
    }

    fn restore(&mut self, snapshot: Bytes) -> Result<(), raft_node::RestoreError> {
        self.data = snapshot;
        Ok(())
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn node_options(id: &str, port: u16, dir: &std::path::Path, blob: Bytes) -> Options {
    let address = format!("127.0.0.1:{port}");
    let mut tcp = TcpOptions::new(id, "big").insecure();
    tcp.advertise = Some(address.clone());
    Options {
        id: Some(id.into()),
        cluster: Some("big".into()),
        address: Some(address),
        transport: Some(Arc::new(TcpTransport::new(tcp).expect("valid TCP options"))),
        persistence: None,
        state_machine: Some(Box::new(Blob { data: blob })),
        snapshot_threshold: 1,
        snapshot_trailing: 0,
        snapshot_spool: Some(dir.join(format!("{id}-spool"))),
        command_timeout: Duration::from_secs(120),
        join_timeout: Duration::from_secs(600),
        ..Options::default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size_mib: usize = std::env::var("SNAPSHOT_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let root = std::env::current_dir()
        .expect("a working directory")
        .join("target")
        .join("snapshot-stream-bench");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("a scratch directory");

    // The leader's state: a file of `size_mib` MiB, mapped (not on the heap).
    let blob_path = root.join("state.bin");
    {
        let mut f = std::fs::File::create(&blob_path).expect("the state file");
        let block = vec![0xA5u8; 1 << 20];
        for _ in 0..size_mib {
            f.write_all(&block).expect("writing the state file");
        }
        f.sync_all().expect("syncing the state file");
    }
    let file = std::fs::File::open(&blob_path).expect("the state file");
    // SAFETY: the file is written completely above and never modified again.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("mapping the state file");
    let blob = Bytes::from_owner(map);

    let (pa, pb) = (free_port(), free_port());
    let store_a = FilePersistence::open(root.join("a"))
        .await
        .expect("store a");
    let leader = Node::new(Options {
        persistence: Some(Arc::new(store_a)),
        bootstrap: Bootstrap::Single,
        ..node_options("a", pa, &root, blob)
    })
    .await
    .expect("the leader starts");
    // One command, and the snapshot policy (every entry) snapshots the blob.
    let began = Instant::now();
    leader
        .command(Bytes::from_static(b"go"))
        .await
        .expect("a command");
    while leader.metrics().snapshot_index == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the snapshot reach the disk, then measure from here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let prepared = began.elapsed();

    let store_b = FilePersistence::open(root.join("b"))
        .await
        .expect("store b");
    let joiner = Node::new(Options {
        persistence: Some(Arc::new(store_b)),
        bootstrap: Bootstrap::Join,
        snapshot_threshold: 1_000_000,
        ..node_options("b", pb, &root, Bytes::new())
    })
    .await
    .expect("the joiner starts");
    let mut events = leader.subscribe();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            if std::env::var("DEBUG_EVENTS").is_ok() {
                eprintln!("leader event: {e:?}");
            }
        }
    });
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let began = Instant::now();
    leader
        .join(&format!("127.0.0.1:{pb}"))
        .await
        .expect("the joiner is added");
    while joiner.metrics().snapshot_index == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let moved = began.elapsed();
    let peak = PEAK.load(Ordering::Relaxed);
    let got = joiner.read_local(Bytes::new()).await.expect("a local read");
    let received = u64::from_le_bytes(got[..8].try_into().expect("8 bytes")) as usize;
    println!("snapshot of {size_mib} MiB (leader's state is a mapped file)");
    println!(
        "  leader: snapshot taken and saved in {:.1} s",
        prepared.as_secs_f64()
    );
    println!(
        "  transfer over TCP on loopback, spooled, saved and restored in {:.1} s ({:.0} MiB/s)",
        moved.as_secs_f64(),
        size_mib as f64 / moved.as_secs_f64()
    );
    println!(
        "  joiner's state after the transfer: {:.0} MiB",
        mib(received)
    );
    println!(
        "  heap before the transfer {:.1} MiB, peak during it {:.1} MiB: {:.1} MiB extra for both nodes together (goal: under 64 MiB on either side)",
        mib(baseline),
        mib(peak),
        mib(peak.saturating_sub(baseline))
    );
    assert_eq!(received, size_mib << 20, "the joiner holds the whole state");
    joiner.shutdown().await.expect("shutdown");
    leader.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&root);
}
