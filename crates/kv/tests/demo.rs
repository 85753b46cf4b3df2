//! End-to-end tests of `raft-kv demo` and `raft-kv cluster`: real
//! processes on free ports, stopped on every path (a failing test
//! terminates what it started).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raft_kv::client::Client;
use raft_kv::frame::Frame;

const BIN: &str = env!("CARGO_BIN_EXE_raft-kv");

/// A child process that is terminated (SIGTERM, then SIGKILL after
/// 15 s) if the test ends before it exits, so that a launcher gets the
/// chance to stop its own nodes.
struct Guard {
    child: Child,
}

impl Guard {
    fn spawn(cmd: &mut Command) -> Guard {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        Guard { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn terminate(&self) {
        signal("-TERM", self.pid());
    }

    /// Waits for the exit, at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
            if self.wait(Duration::from_secs(15)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn signal(sig: &str, pid: u32) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Reads a pipe to its end on a thread; the lines arrive on the channel.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Everything that arrives on `rx` until it closes or `timeout` passes.
fn collect(rx: &mpsc::Receiver<String>, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => out.push(l),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn the_demo_passes_all_its_checks() {
    let started = Instant::now();
    let mut demo =
        Guard::spawn(Command::new(BIN).args(["demo", "--keys", "1000", "--clients", "8"]));
    let stdout = lines_of(demo.child.stdout.take().unwrap());
    let stderr = lines_of(demo.child.stderr.take().unwrap());
    let status = demo.wait(Duration::from_secs(120));
    let out = collect(&stdout, Duration::from_secs(5)).join("\n");
    let err = collect(&stderr, Duration::from_secs(1)).join("\n");
    let status = status.unwrap_or_else(|| {
        panic!("the demo did not finish within 120 s\n--- stdout:\n{out}\n--- stderr:\n{err}")
    });
    assert!(
        status.success(),
        "the demo failed ({status})\n--- stdout:\n{out}\n--- stderr:\n{err}"
    );
    for expected in [
        "the cluster had no leader for",
        "  failover  no leader for",
        "- latency -",
        "p50       p90       p99       max",
        "\n  SET ",
        "\n  GET ",
        "  catch-up  ",
        "PASS  every GET returns the value written",
        "demo: all checks passed",
    ] {
        assert!(out.contains(expected), "no '{expected}' in\n{out}");
    }
    assert!(!out.contains("FAIL "), "{out}");
    eprintln!("the demo took {:.1} s", started.elapsed().as_secs_f64());
}

/// `count` consecutive ports from `first` that can all be bound now.
fn free_range(first: u16, count: u16) -> bool {
    (first..first + count).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// The first port of 9 consecutive free ports below the usual ephemeral
/// range (so that outgoing connections are unlikely to take them).
fn nine_free_ports(attempt: u32) -> u16 {
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(attempt.wrapping_mul(40_503))
        .wrapping_add(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
        );
    for i in 0..200u32 {
        let first = 20_000 + ((seed.wrapping_add(i.wrapping_mul(7_919))) % 10_000) as u16;
        if free_range(first, 9) {
            return first;
        }
    }
    panic!("no 9 consecutive free ports between 20000 and 30009");
}

fn port_is_free(port: u16) -> bool {
    // As the nodes bind: with SO_REUSEADDR (TIME_WAIT does not count).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .is_ok()
    })
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && signal("-0", pid)
}

#[test]
fn a_local_cluster_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // The ports may be taken between the check and the start: try again.
    let mut attempt = 0;
    let (mut cluster, stdout, first, lines) = loop {
        attempt += 1;
        let first = nine_free_ports(attempt);
        let data = dir.path().join(format!("attempt-{attempt}"));
        let mut cluster = Guard::spawn(Command::new(BIN).args([
            "cluster",
            "--nodes",
            "3",
            "--port",
            &first.to_string(),
            "--peer-port",
            &(first + 3).to_string(),
            "--admin-port",
            &(first + 6).to_string(),
            "--data-dir",
            data.to_str().unwrap(),
        ]));
        let stdout = lines_of(cluster.child.stdout.take().unwrap());
        let stderr = lines_of(cluster.child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = Vec::new();
        let mut ready = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match stdout.recv_timeout(left) {
                Ok(l) => {
                    ready = l.contains("Press Ctrl-C");
                    lines.push(l);
                    if ready {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        if ready {
            break (cluster, stdout, first, lines);
        }
        let status = cluster.wait(Duration::from_secs(20));
        let err = collect(&stderr, Duration::from_secs(1)).join("\n");
        if attempt < 5 && err.contains("is taken") {
            continue;
        }
        panic!(
            "the cluster did not start ({status:?})\n--- stdout:\n{}\n--- stderr:\n{err}",
            lines.join("\n")
        );
    };
    let text = lines.join("\n");
    for id in ["n1", "n2", "n3"] {
        assert!(text.contains(&format!("  {id} ")), "{text}");
    }
    assert!(
        text.contains(&format!("clients on 127.0.0.1:{first}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("redis-cli -p {first} set hello world")),
        "{text}"
    );
    let pids: Vec<u32> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "pid")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    assert_eq!(pids.len(), 3, "{text}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut n1 = Client::connect(("127.0.0.1", first)).await.unwrap();
        let mut reply = Frame::Null;
        // The leader may still be being elected: retry for a while.
        for _ in 0..100 {
            reply = n1.call(&[b"SET", b"hello", b"world"]).await.unwrap();
            if reply == Frame::Simple("OK".into()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(reply, Frame::Simple("OK".into()));
        let mut n3 = Client::connect(("127.0.0.1", first + 2)).await.unwrap();
        assert_eq!(
            n3.call(&[b"GET", b"hello"]).await.unwrap(),
            Frame::Bulk("world".into())
        );
    });
    drop(rt);

    cluster.terminate();
    let status = cluster.wait(Duration::from_secs(30));
    let rest = collect(&stdout, Duration::from_secs(2)).join("\n");
    let status = status.unwrap_or_else(|| panic!("the cluster did not stop within 30 s\n{rest}"));
    assert!(status.success(), "{status}\n{rest}");
    for id in ["n1", "n2", "n3"] {
        assert!(rest.contains(&format!("{id} stopped")), "{rest}");
    }
    for pid in pids {
        assert!(!process_exists(pid), "node process {pid} is still running");
    }
    for port in first..first + 9 {
        assert!(port_is_free(port), "port {port} is still in use");
    }
}
