//! A full disk under one node of three: that node's process exits with an
//! error (fail-stop: it neither keeps answering errors nor takes the last
//! free space), the other two keep serving, and once space is freed the
//! node restarts with every acknowledged write.
//!
//! The node's data directory is a small tmpfs, so the test needs to mount
//! file systems (root). Without that it is skipped, saying why, unless
//! `RAFT_KV_REQUIRE_ROOT_TESTS` is set, which makes it fail instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The tmpfs's size.
const TMPFS_SIZE: &str = "24m";
/// What the test leaves free on it before writing (the rest is a filler
/// file, removed to free space).
const LEFT_FREE: u64 = 3 << 20;
/// The size of each value written.
const VALUE_LEN: usize = 32 << 10;
/// Writes tried at most before the node must have stopped.
const MAX_WRITES: usize = 400;

/// A tmpfs mounted on a directory of its own; unmounted (and the directory
/// removed) when dropped, whatever happened.
struct Tmpfs {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Tmpfs {
    /// Mounts one, or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("raft-kv-tmpfs-")
            .tempdir()
            .map_err(|e| format!("cannot make a directory: {e}"))?;
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
        Ok(Tmpfs { dir, mounted: true })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes free on it.
    fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(self.path())
            .output()
            .expect("run df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df prints the free bytes")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a process not reaped yet): detach it now, it goes
            // once unused.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
        self.mounted = false;
    }
}

/// Fills `path` with a file of `len` bytes (written, not sparse).
fn write_filler(path: &Path, len: u64) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).expect("write the filler");
        left -= n as u64;
    }
    f.sync_all().expect("sync the filler");
}

fn value(i: usize) -> String {
    let mut v = format!("value-{i}-");
    while v.len() < VALUE_LEN {
        v.push(char::from(b'a' + (i % 26) as u8));
    }
    v
}

fn key(i: usize) -> String {
    format!("k{i}")
}

/// n3 follows when its disk fills.
#[test]
fn a_full_disk_makes_a_follower_exit_and_the_others_serve() {
    full_disk(false);
}

/// n3 leads when its disk fills: it hands leadership over, then exits.
#[test]
fn a_full_disk_makes_a_leader_hand_over_and_exit() {
    full_disk(true);
}

fn full_disk(n3_leads: bool) {
    let tmpfs = match Tmpfs::mount(TMPFS_SIZE) {
        Ok(t) => t,
        Err(why) => {
            if std::env::var_os("RAFT_KV_REQUIRE_ROOT_TESTS").is_some() {
                panic!("{why}, and RAFT_KV_REQUIRE_ROOT_TESTS is set");
            }
            eprintln!(
                "skipped: this test mounts a tmpfs and needs root ({why}); set RAFT_KV_REQUIRE_ROOT_TESTS to fail instead"
            );
            return;
        }
    };
    // n3 keeps its store on the tmpfs (its log file stays on the real disk).
    let store_dir: PathBuf = tmpfs.path().join("n3");
    let mut cluster = Cluster::start_with(3, &[], |node| {
        if node.id == "n3" {
            let at = node
                .args
                .iter()
                .position(|a| a == "--data-dir")
                .expect("a --data-dir flag");
            let _ = std::fs::remove_dir_all(&store_dir);
            node.args[at + 1] = store_dir.display().to_string();
        }
    });
    let n3 = cluster.index_of("n3");
    let leader = cluster.wait_leader();
    if n3_leads && leader != n3 {
        let mut con = cluster.conn(leader);
        assert_eq!(q(&mut con, &["RAFT.TRANSFER", "n3"]), redis::Value::Okay);
        eventually(EVENTUALLY, "n3 to lead", || {
            (cluster.wait_leader() == n3).then_some(())
        });
    } else if !n3_leads && leader == n3 {
        let mut con = cluster.conn(leader);
        assert_eq!(q(&mut con, &["RAFT.TRANSFER", "n1"]), redis::Value::Okay);
        eventually(EVENTUALLY, "n3 to follow", || {
            (cluster.wait_leader() != n3).then_some(())
        });
    }

    // Leave only LEFT_FREE on the tmpfs.
    let filler = tmpfs.path().join("filler");
    let free = tmpfs.free();
    assert!(free > LEFT_FREE + (1 << 20), "{free} bytes free");
    write_filler(&filler, free - LEFT_FREE);

    // Write through n1 (forwarded to the leader) until n3 stops: every
    // write answered OK is acknowledged, and must survive.
    let started = Instant::now();
    let mut acked: Vec<usize> = Vec::new();
    let mut con = cluster.node(0).conn();
    let mut exited = None;
    for i in 0..MAX_WRITES {
        match redis::cmd("SET")
            .arg(key(i))
            .arg(value(i))
            .query::<String>(&mut con)
        {
            Ok(ok) => {
                assert_eq!(ok, "OK");
                acked.push(i);
            }
            Err(_) => {
                // n3 led and stopped, say: wait for the new leader.
                std::thread::sleep(Duration::from_millis(100));
                con = cluster.node(0).conn();
            }
        }
        if i % 8 == 0 {
            if let Some(status) = cluster.node_mut(n3).wait_exit(Duration::ZERO) {
                exited = Some(status);
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "still writing after 90 s"
        );
    }
    let status = match exited {
        Some(s) => s,
        None => cluster
            .node_mut(n3)
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| {
                panic!(
                    "n3 did not exit within 20 s of its disk filling ({} free on the tmpfs)\nlog:\n{}",
                    tmpfs.free(),
                    cluster.node(n3).log_tail()
                )
            }),
    };
    assert!(
        !status.success(),
        "n3 exited with {status}, not with an error"
    );
    let log = std::fs::read_to_string(cluster.node(n3).log_path()).unwrap_or_default();
    assert!(
        log.contains("No space left") || log.contains("ENOSPC"),
        "n3's log says why:\n{log}"
    );
    assert!(
        log.contains("storage failure"),
        "n3's log says it stopped:\n{log}"
    );
    assert!(
        acked.len() >= 10,
        "only {} writes acknowledged",
        acked.len()
    );
    if n3_leads {
        assert!(
            log.contains("handing leadership over"),
            "n3 hands leadership over:\n{log}"
        );
    }
    eprintln!(
        "n3 exited with {status} after {} acknowledged writes, in {:?}",
        acked.len(),
        started.elapsed()
    );
    if std::env::var_os("DISK_FULL_SHOW_LOG").is_some() {
        eprintln!("{log}");
    }

    // The other two keep serving: writes, and every acknowledged write.
    let leader = cluster.wait_leader_among(&[0, 1], None);
    assert_ne!(leader, n3);
    let mut con = cluster.node(0).conn();
    let more = MAX_WRITES..MAX_WRITES + 20;
    for i in more.clone() {
        let ok: String = redis::cmd("SET")
            .arg(key(i))
            .arg(value(i))
            .query(&mut con)
            .unwrap_or_else(|e| panic!("a write after n3 stopped: {e}"));
        assert_eq!(ok, "OK");
        acked.push(i);
    }
    for &i in &acked {
        let v: Option<String> = redis::cmd("GET").arg(key(i)).query(&mut con).unwrap();
        assert_eq!(v.as_deref(), Some(value(i).as_str()), "{}", key(i));
    }

    // Space freed, n3 restarts and holds every acknowledged write.
    std::fs::remove_file(&filler).unwrap();
    cluster.node_mut(n3).start();
    // Local reads (READONLY), once the node has the cluster's users.
    let mut local = eventually(EVENTUALLY, "n3 to take READONLY", || {
        let mut con = cluster.node(n3).try_conn(None).ok()?;
        redis::cmd("READONLY").query::<String>(&mut con).ok()?;
        Some(con)
    });
    for &i in &acked {
        eventually(EVENTUALLY, &format!("n3 to hold {}", key(i)), || {
            let v: Option<String> = redis::cmd("GET").arg(key(i)).query(&mut local).ok()?;
            (v.as_deref() == Some(value(i).as_str())).then_some(())
        });
    }
    // And it takes writes again.
    let mut con = cluster.node(n3).conn();
    let ok: String = redis::cmd("SET")
        .arg("after")
        .arg("restart")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    cluster.node_mut(n3).kill();
    drop(cluster);
    drop(tmpfs);
}
