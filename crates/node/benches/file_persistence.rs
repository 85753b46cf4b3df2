//! Benchmarks of the file persistence, each printed beside its baseline
//! measured in the same run on the same disk (printed, not asserted):
//!
//! 1. durable append latency of one writer (p50/p99) vs a raw `pwrite` +
//!    `fdatasync` of the same size (into a preallocated file, and appending
//!    to a growing file);
//! 2. entries per second with 256 concurrent writers (group commit) vs raw
//!    `fdatasync`s per second;
//! 3. reopen (open + load) of a log of 1 million 100-byte entries.
//!
//! `cargo bench -p raft-node --bench file_persistence`; the files go to
//! `$RAFT_BENCH_DIR` (default: `target/file-persistence-bench`), removed at
//! the end. `RAFT_BENCH_QUICK=1` runs smaller sizes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{Entry, EntryPayload, HardState};
use raft_node::persistence::file::{FileOptions, FilePersistence};
use raft_node::persistence::{Change, Persistence};
use raft_node::testkit::persistence::sample_identity;

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("RAFT_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/file-persistence-bench"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&base).unwrap();
    base
}

fn fresh(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn entry(index: u64, payload: usize) -> Entry {
    Entry {
        term: 1,
        index,
        payload: EntryPayload::Command(Bytes::from(vec![(index % 251) as u8; payload])),
    }
}

fn first_change() -> Change {
    Change {
        identity: Some(sample_identity()),
        hard_state: Some(HardState {
            term: 1,
            vote: 1,
            commit: 0,
        }),
        ..Change::default()
    }
}

/// A file of `size` zeros, written and synced (like a preallocated segment).
fn preallocated(path: &Path, size: u64) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < size {
        f.write_all_at(&zeros, off).unwrap();
        off += zeros.len() as u64;
    }
    f.sync_all().unwrap();
    f
}

/// Raw `pwrite` + `fdatasync` latencies of `size`-byte writes, one after
/// the other: into a preallocated file, or appending to a new file.
fn raw_latencies(dir: &Path, size: usize, n: usize, prealloc: bool) -> Vec<Duration> {
    let path = dir.join(if prealloc {
        "raw-prealloc"
    } else {
        "raw-append"
    });
    let f = if prealloc {
        preallocated(&path, (size * (n + 10)) as u64 + (1 << 20))
    } else {
        File::create(&path).unwrap()
    };
    let buf = vec![0x5au8; size];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let start = Instant::now();
        f.write_all_at(&buf, (i * size) as u64).unwrap();
        f.sync_data().unwrap();
        if i >= 10 {
            out.push(start.elapsed());
        }
    }
    drop(f);
    std::fs::remove_file(&path).unwrap();
    out.sort();
    out
}

/// Opens a store and fills it until it appends to a preallocated segment
/// with the next one ready (the next segment is preallocated once the
/// active one is half full); returns it and the next log index.
async fn open_ready(dir: &Path) -> (FilePersistence, u64) {
    let mut options = FileOptions::default();
    if let Some(spin) = std::env::var("RAFT_BENCH_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options = options.spin(Duration::from_micros(spin));
    }
    let store = FilePersistence::open_with(dir, options).await.unwrap();
    store.save(first_change()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Steady state: appending to a preallocated segment, with the next one
    // ready (preallocation then runs once per segment filled).
    let mut next = 1;
    while !(store.stats().active_preallocated && store.stats().spares_prepared >= 2)
        && Instant::now() < deadline
    {
        store
            .save(Change {
                entries: vec![entry(next, 1 << 20)],
                ..Change::default()
            })
            .await
            .unwrap();
        next += 1;
        if store.stats().spares_prepared < 2 {
            continue;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (store, next)
}

fn latency(base: &Path, n: usize) {
    let payload = 4096;
    let dir = fresh(base, "latency");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (lat, record) = rt.block_on(async {
        let (store, mut next) = open_ready(&dir).await;
        for _ in 0..200 {
            store
                .save(Change {
                    entries: vec![entry(next, payload)],
                    ..Change::default()
                })
                .await
                .unwrap();
            next += 1;
        }
        let bytes_before = store.stats().bytes_written;
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let change = Change {
                entries: vec![entry(next, payload)],
                ..Change::default()
            };
            next += 1;
            let start = Instant::now();
            store.save(change).await.unwrap();
            lat.push(start.elapsed());
        }
        let record = (store.stats().bytes_written - bytes_before) as usize / n;
        (lat, record)
    });
    let mut lat = lat;
    lat.sort();
    let raw = raw_latencies(&dir, record, n, true);
    let raw_append = raw_latencies(&dir, record, n.min(2000), false);
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    let (r50, r99) = (percentile(&raw, 0.5), percentile(&raw, 0.99));
    let (a50, a99) = (percentile(&raw_append, 0.5), percentile(&raw_append, 0.99));
    println!(
        "1. durable append latency, 1 writer, one {payload}-byte entry per save ({record} bytes on disk), {n} saves:"
    );
    println!(
        "   FilePersistence::save          p50 {:8.1} us   p99 {:8.1} us",
        us(p50),
        us(p99)
    );
    println!(
        "   raw pwrite+fdatasync, prealloc p50 {:8.1} us   p99 {:8.1} us   -> ratio p50 {:.2}x, p99 {:.2}x (goal <= 1.2x)",
        us(r50),
        us(r99),
        us(p50) / us(r50),
        us(p99) / us(r99)
    );
    println!(
        "   raw pwrite+fdatasync, appending p50 {:7.1} us   p99 {:8.1} us   -> ratio p50 {:.2}x",
        us(a50),
        us(a99),
        us(p50) / us(a50)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Entries per second (and stats) with `writers` concurrent writers.
fn store_throughput(
    base: &Path,
    writers: usize,
    run: Duration,
) -> (f64, raft_node::persistence::file::FileStats) {
    let payload = 100;
    let dir = fresh(base, "throughput");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (entries, elapsed, stats) = rt.block_on(async {
        let (store, first) = open_ready(&dir).await;
        let store = Arc::new(store);
        // The saves that filled the store are not counted.
        let before = store.stats();
        let next = Arc::new(Mutex::new(first));
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + run;
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let (store, next, done) = (store.clone(), next.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let saved = {
                        let mut next = next.lock().unwrap();
                        let index = *next;
                        *next += 1;
                        store.submit(Change {
                            entries: vec![entry(index, payload)],
                            ..Change::default()
                        })
                    };
                    saved.await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed();
        let mut stats = store.stats();
        stats.saves -= before.saves;
        stats.syncs -= before.syncs;
        (done.load(Ordering::Relaxed), elapsed, stats)
    });
    let _ = std::fs::remove_dir_all(&dir);
    (entries as f64 / elapsed.as_secs_f64(), stats)
}

fn throughput(base: &Path, run: Duration) {
    // Baseline: raw fdatasyncs per second (small writes, preallocated file).
    let dir = fresh(base, "raw-syncs");
    let path = dir.join("raw-syncs");
    let f = preallocated(&path, 64 << 20);
    let buf = vec![0x5au8; 160];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        f.write_all_at(&buf, syncs * 160).unwrap();
        f.sync_data().unwrap();
        syncs += 1;
    }
    let raw = syncs as f64 / start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "2. throughput, concurrent writers, one 100-byte entry per save, {:.1} s each:",
        run.as_secs_f64()
    );
    println!("   raw pwrite+fdatasync (160 B)      {raw:10.0} syncs/s");
    for writers in [1, 16, 256] {
        let (rate, stats) = store_throughput(base, writers, run);
        println!(
            "   FilePersistence, {writers:3} writers     {rate:10.0} entries/s  ({:6.1} saves per sync) -> {:6.1}x raw syncs/s{}",
            stats.saves as f64 / stats.syncs.max(1) as f64,
            rate / raw,
            if writers == 256 { " (goal >= 50x)" } else { "" }
        );
    }
}

fn reopen(base: &Path, total: u64) {
    let payload = 100;
    let batch = 1000;
    let dir = fresh(base, "reopen");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = FilePersistence::open_with(&dir, FileOptions::default())
            .await
            .unwrap();
        store.save(first_change()).await.unwrap();
        let mut next = 1;
        let write_start = Instant::now();
        while next <= total {
            let entries = (next..next + batch).map(|i| entry(i, payload)).collect();
            next += batch;
            store
                .save(Change {
                    entries,
                    ..Change::default()
                })
                .await
                .unwrap();
        }
        let written = write_start.elapsed();
        let stats = store.stats();
        drop(store);
        let size: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();

        // Baseline: reading the files.
        let start = Instant::now();
        let mut read = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            read += std::fs::read(e.unwrap().path()).unwrap().len();
        }
        let raw_read = start.elapsed();

        let start = Instant::now();
        let store = FilePersistence::open_with(&dir, FileOptions::default())
            .await
            .unwrap();
        let opened = start.elapsed();
        let state = store.load().await.unwrap().unwrap();
        let total_time = start.elapsed();
        assert_eq!(state.entries.len() as u64, total);
        println!(
            "3. reopen of a log of {total} {payload}-byte entries ({} MiB of segments, {} segments; written in {:.2} s in saves of {batch}):",
            size >> 20,
            store.recovery().segments_replayed,
            written.as_secs_f64(),
        );
        println!(
            "   open (recovery scan)           {:8.1} ms",
            opened.as_secs_f64() * 1e3
        );
        println!(
            "   open + load (all entries)      {:8.1} ms   (goal < 1000 ms)",
            total_time.as_secs_f64() * 1e3
        );
        println!(
            "   baseline: reading the files    {:8.1} ms   ({} MiB, page cache warm)",
            raw_read.as_secs_f64() * 1e3,
            read >> 20
        );
        let _ = stats;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let quick = std::env::var_os("RAFT_BENCH_QUICK").is_some();
    let base = bench_dir();
    println!("file persistence benchmarks in {}", base.display());
    latency(&base, if quick { 1000 } else { 5000 });
    if std::env::var_os("RAFT_BENCH_LATENCY_ONLY").is_some() {
        return;
    }
    throughput(&base, Duration::from_secs(if quick { 1 } else { 2 }));
    reopen(&base, if quick { 100_000 } else { 1_000_000 });
    let _ = std::fs::remove_dir(&base);
}
