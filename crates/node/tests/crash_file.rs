//! Crash test with real processes: a child process (this test binary, run
//! again with an environment variable) saves random changes through a
//! `FilePersistence` as fast as it can, several in flight at once, printing
//! each change it submits and each one acknowledged; the parent kills it
//! with SIGKILL at random moments, reopens the directory, and checks that
//! the store holds exactly the changes up to some point between the last
//! acknowledged one and the last submitted one: every acknowledged entry is
//! there, in order, and nothing that was not written. The next child goes
//! on from what was loaded.
//!
//! Two runs: one with the generator's small changes (many snapshots and
//! truncations), one where a quarter of the commands are padded to up to
//! 64 KiB, so that batches are large writes that a kill can interrupt (torn
//! tails are then cut on reopen).
//!
//! `RAFT_WAL_CRASH_ITERATIONS` sets the number of kills per run (default
//! 40).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::EntryPayload;
use raft_node::persistence::file::{FileOptions, FilePersistence};
use raft_node::persistence::{Change, Persistence, State};
use raft_node::testkit::persistence::ChangeGenerator;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CHILD_DIR: &str = "RAFT_WAL_CRASH_CHILD";
const CHILD_SEED: &str = "RAFT_WAL_CRASH_SEED";
const CHILD_START: &str = "RAFT_WAL_CRASH_START";
const CHILD_STEPS: &str = "RAFT_WAL_CRASH_STEPS";
const CHILD_BIG: &str = "RAFT_WAL_CRASH_BIG";
/// Saves in flight at once in the child (they share syncs).
const IN_FLIGHT: usize = 16;

fn options(big: bool) -> FileOptions {
    FileOptions::default()
        .segment_size(if big { 1 << 20 } else { 128 << 10 })
        .preallocate(true)
}

/// The padding added to the command of entry (index, term) in big mode.
fn padding(index: u64, term: u64) -> Vec<u8> {
    let h = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ term.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    let len = if h.is_multiple_of(4) {
        (h >> 8) % (64 << 10)
    } else {
        0
    };
    (0..len).map(|i| (i ^ index ^ (h >> 20)) as u8).collect()
}

/// Big mode: pads the commands of a generated change.
fn pad(mut change: Change, big: bool) -> Change {
    if big {
        for e in &mut change.entries {
            if let EntryPayload::Command(b) = &e.payload {
                let mut v = b.to_vec();
                v.extend(padding(e.index, e.term));
                e.payload = EntryPayload::Command(Bytes::from(v));
            }
        }
    }
    change
}

/// Big mode: checks and strips the padding of loaded entries, so that the
/// state compares with the generator's model.
fn unpad(mut state: State, big: bool) -> Result<State, String> {
    if big {
        for e in &mut state.entries {
            if let EntryPayload::Command(b) = &e.payload {
                let p = padding(e.index, e.term);
                if b.len() < p.len() || b[b.len() - p.len()..] != p[..] {
                    return Err(format!("entry {} has damaged padding", e.index));
                }
                e.payload = EntryPayload::Command(b.slice(..b.len() - p.len()));
            }
        }
    }
    Ok(state)
}

/// The child: does nothing unless run by the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let var = |name: &str| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("child: {name} missing"))
    };
    let (seed, start, max_steps) = (var(CHILD_SEED), var(CHILD_START), var(CHILD_STEPS));
    let big = var(CHILD_BIG) == 1;
    let mut generator = ChangeGenerator::new(seed);
    for _ in 0..start {
        generator.next_change();
    }
    let store = FilePersistence::open_with(&dir, options(big))
        .await
        .expect("child: open");
    let loaded = store.load().await.expect("child: load");
    let loaded = loaded.map(|s| unpad(s, big).expect("child: padding"));
    if let Err(e) = generator.model().check(loaded.as_ref()) {
        panic!("child: the store does not hold the {start} changes it should: {e}");
    }
    println!("READY {start}");
    let mut in_flight = std::collections::VecDeque::new();
    let mut step = start;
    while step < start + max_steps || !in_flight.is_empty() {
        while in_flight.len() < IN_FLIGHT && step < start + max_steps {
            step += 1;
            let change = pad(generator.next_change(), big);
            println!("SUBMIT {step}");
            in_flight.push_back((step, store.submit(change)));
        }
        if let Some((s, done)) = in_flight.pop_front() {
            done.await.expect("child: save");
            println!("ACK {s}");
        }
    }
    println!("DONE {step}");
}

#[derive(Debug, Default)]
struct Totals {
    iterations: u64,
    killed_before_ready: u64,
    finished_before_kill: u64,
    acked_saves: u64,
    acked_entries: u64,
    unacked_found_durable: u64,
    entries_verified: u64,
    torn_tails_cut: u64,
    segments_removed_on_open: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_recover_small_changes() {
    crash_and_recover(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_recover_large_writes() {
    crash_and_recover(true).await;
}

async fn crash_and_recover(big: bool) {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let iterations: u64 = std::env::var("RAFT_WAL_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed = if big { 0xb16 } else { 0xc0ffee };
    let dir = tempfile::TempDir::new().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    // The parent's copy of the generator, at the last step known durable.
    let mut generator = ChangeGenerator::new(seed);
    let mut durable: u64 = 0;
    let mut totals = Totals::default();
    let started = Instant::now();
    // Steps a child may take: bounded so that a child's replay of the
    // generator (to reach its starting point) stays cheap.
    let max_steps = match (cfg!(debug_assertions), big) {
        (true, _) => 400,
        (false, false) => 2_000,
        (false, true) => 1_000,
    };

    for iteration in 0..iterations {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_SEED, seed.to_string())
            .env(CHILD_START, durable.to_string())
            .env(CHILD_STEPS, max_steps.to_string())
            .env(CHILD_BIG, u64::from(big).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut submitted, mut acked) = (durable, durable);
        let mut lines = Vec::new();
        let early = rng.random_ratio(1, 8);
        if early {
            // Kill it while it opens (recovery, segment creation, ...).
            std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
        } else {
            // Wait until it is ready, then let it write for a while.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let line = rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .unwrap_or_else(|_| {
                        panic!("iteration {iteration}: the child never got ready: {lines:?}")
                    });
                let ready = line.contains("READY");
                lines.push(line);
                if ready {
                    break;
                }
            }
            std::thread::sleep(Duration::from_micros(rng.random_range(1_000..120_000)));
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let mut ready = false;
        let mut done = false;
        for line in &lines {
            // The harness may print before the child's first line.
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(at) = words
                .iter()
                .position(|w| matches!(*w, "READY" | "SUBMIT" | "ACK" | "DONE"))
            else {
                continue;
            };
            let (tag, Some(Ok(n))) = (words[at], words.get(at + 1).map(|n| n.parse::<u64>()))
            else {
                continue;
            };
            match tag {
                "READY" => ready = true,
                "SUBMIT" => submitted = submitted.max(n),
                "ACK" => acked = acked.max(n),
                "DONE" => done = true,
                _ => {}
            }
        }
        totals.killed_before_ready += u64::from(!ready);
        totals.finished_before_kill += u64::from(done);
        assert!(
            done || !status.success(),
            "iteration {iteration}: the child exited on its own before finishing: {status:?}"
        );

        // Restart: what is there must be the state after some step between
        // the last acknowledged and the last submitted one.
        let store = FilePersistence::open_with(dir.path(), options(big))
            .await
            .unwrap_or_else(|e| panic!("iteration {iteration}: reopen after the kill: {e}"));
        totals.torn_tails_cut += u64::from(store.recovery().torn_tail.is_some());
        totals.segments_removed_on_open += store.recovery().removed.len() as u64;
        let loaded = store.load().await.unwrap();
        drop(store);
        let loaded =
            loaded.map(|s| unpad(s, big).unwrap_or_else(|e| panic!("iteration {iteration}: {e}")));
        for _ in durable..acked {
            totals.acked_entries += generator.next_change().entries.len() as u64;
        }
        let mut candidate = generator.clone();
        let mut matched = None;
        let mut errors = Vec::new();
        for step in acked..=submitted {
            if step > acked {
                candidate.next_change();
            }
            match candidate.model().check(loaded.as_ref()) {
                Ok(()) => {
                    matched = Some((step, candidate.clone()));
                    break;
                }
                Err(e) => errors.push(format!("after step {step}: {e}")),
            }
        }
        let Some((step, at)) = matched else {
            panic!(
                "iteration {iteration}: the reopened store matches no step between the last acknowledged ({acked}) and the last submitted ({submitted}):\n{}",
                errors.join("\n")
            );
        };
        totals.acked_saves += acked - durable;
        totals.unacked_found_durable += step - acked;
        totals.entries_verified += loaded.as_ref().map_or(0, |s| s.entries.len() as u64);
        totals.iterations += 1;
        generator = at;
        durable = step;
    }
    eprintln!(
        "crash test ({}): {} kills in {:?}, {} saves acknowledged with {} entries ({} more saves found durable before their ack), {} changes durable at the end, {} log entries checked on reloads, {} killed while opening, {} finished before the kill, {} torn tails cut, {} leftover files removed on open",
        if big { "large writes" } else { "small changes" },
        totals.iterations,
        started.elapsed(),
        totals.acked_saves,
        totals.acked_entries,
        totals.unacked_found_durable,
        durable,
        totals.entries_verified,
        totals.killed_before_ready,
        totals.finished_before_kill,
        totals.torn_tails_cut,
        totals.segments_removed_on_open
    );
    assert!(durable > 0 || iterations == 0, "the children wrote nothing");
}
