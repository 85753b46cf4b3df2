//! raft-kv with the Redis tools: `redis-cli` and `redis-benchmark` against
//! a three-node cluster. Skipped (with a note on stderr) when the tools are
//! not installed, unless `RAFT_KV_REDIS_TOOLS=required`, which makes their
//! absence a failure.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Whether the tools are there; panics if they must be and are not.
fn tools_present() -> bool {
    let missing: Vec<&str> = ["redis-cli", "redis-benchmark"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("RAFT_KV_REDIS_TOOLS").as_deref() == Ok("required") {
        panic!(
            "{} not found on PATH, and RAFT_KV_REDIS_TOOLS=required: install redis-tools \
             (e.g. `apt-get install redis-tools`)",
            missing.join(" and ")
        );
    }
    eprintln!(
        "skipped: redis-tools not installed ({} not on PATH; set RAFT_KV_REDIS_TOOLS=required to fail instead)",
        missing.join(", ")
    );
    false
}

/// Runs a tool with a time limit; returns (success, stdout, stderr).
fn run(tool: &str, args: &[&str], limit: Duration) -> (bool, String, String) {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("wait for the tool") {
            Some(s) => break s,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let (o, e) = (out_reader.join().unwrap(), err_reader.join().unwrap());
                panic!(
                    "{tool} {args:?} did not finish within {limit:?}\nstdout:\n{o}\nstderr:\n{e}"
                );
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    (
        status.success(),
        out_reader.join().unwrap(),
        err_reader.join().unwrap(),
    )
}

/// Runs redis-cli against a port; its stdout, trimmed.
fn cli(port: u16, args: &[&str]) -> String {
    let p = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", p.as_str()];
    all.extend_from_slice(args);
    let (ok, out, err) = run("redis-cli", &all, Duration::from_secs(30));
    assert!(
        ok,
        "redis-cli {all:?} failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    out.trim().to_string()
}

#[test]
fn redis_cli_talks_to_every_node() {
    if !tools_present() {
        return;
    }
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let lp = c.node(leader).client_port;
    assert_eq!(cli(lp, &["ping"]), "PONG");
    assert_eq!(cli(lp, &["ping", "hi"]), "hi");
    assert_eq!(cli(lp, &["set", "foo", "bar"]), "OK");
    assert_eq!(cli(lp, &["get", "foo"]), "bar");
    let mut n = 1;
    assert_eq!(cli(lp, &["incr", "n"]), "1");
    assert_eq!(cli(lp, &["get", "nope"]), "");
    let info = cli(lp, &["info", "raft"]);
    assert!(info.contains("# Raft"), "{info}");
    // The leader says so (asked again if an election on a loaded machine
    // moved leadership meanwhile).
    eventually(EVENTUALLY, "INFO raft on the leader saying leader", || {
        let leader = c.wait_leader();
        let info = cli(c.node(leader).client_port, &["info", "raft"]);
        let id = c.node(leader).id.as_str();
        (field(&info, "raft_role").as_deref() == Some("leader")
            && field(&info, "raft_leader_id").as_deref() == Some(id))
        .then_some(())
    });
    for f in c.followers(leader) {
        let port = c.node(f).client_port;
        assert_eq!(cli(port, &["ping"]), "PONG");
        assert_eq!(cli(port, &["get", "foo"]), "bar", "a linearizable read");
        let key = format!("from-{}", c.node(f).id);
        assert_eq!(cli(port, &["set", &key, "baz"]), "OK", "a forwarded write");
        assert_eq!(cli(lp, &["get", &key]), "baz");
        n += 1;
        assert_eq!(cli(port, &["incr", "n"]), n.to_string());
        assert_eq!(cli(lp, &["get", "n"]), n.to_string());
        // A follower says so, unless an election moved leadership.
        let info = cli(port, &["info", "raft"]);
        let follows = field(&info, "raft_role").as_deref() == Some("follower");
        assert!(follows || c.wait_leader() != leader, "{info}");
        let err = cli(port, &["frob"]);
        assert!(err.starts_with("ERR unknown command 'frob'"), "{err}");
    }
    assert_eq!(cli(lp, &["dbsize"]), "4");
}

/// The lines of redis-benchmark's output (progress lines end in `\r`).
fn lines(text: &str) -> Vec<String> {
    text.split(['\r', '\n'])
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs redis-benchmark, prints its output to stderr, and checks that it
/// succeeded without errors and reported every test; returns the
/// requests-per-second figure of each test.
fn benchmark(port: u16, tests: &[&str], args: &[&str]) -> Vec<(String, f64)> {
    let p = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", p.as_str()];
    all.extend_from_slice(args);
    eprintln!("$ redis-benchmark {}", all.join(" "));
    let started = Instant::now();
    let (ok, out, err) = run("redis-benchmark", &all, Duration::from_secs(180));
    let shown: Vec<String> = lines(&out)
        .into_iter()
        .filter(|l| !l.contains("rps="))
        .collect();
    eprintln!("{}", shown.join("\n"));
    if !err.trim().is_empty() {
        eprintln!("stderr:\n{}", err.trim());
    }
    eprintln!("({:.1} s)", started.elapsed().as_secs_f64());
    assert!(
        ok,
        "redis-benchmark {all:?} failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    let errors: Vec<String> = lines(&out)
        .into_iter()
        .chain(lines(&err))
        .filter(|l| {
            let lower = l.to_lowercase();
            lower.contains("error") || lower.contains("warning") || l.contains("ERR")
        })
        .collect();
    assert!(
        errors.is_empty(),
        "redis-benchmark reported errors: {errors:?}"
    );
    let mut rates = Vec::new();
    for test in tests {
        let prefix = format!("{test}: ");
        let line = lines(&out)
            .into_iter()
            .find(|l| l.starts_with(&prefix) && l.contains("requests per second"))
            .unwrap_or_else(|| panic!("no requests-per-second line for {test} in:\n{out}"));
        let rate: f64 = line[prefix.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure in {line:?}"));
        assert!(rate > 0.0, "{line}");
        rates.push((test.to_string(), rate));
    }
    rates
}

#[test]
fn redis_benchmark_runs_without_errors_and_its_writes_are_on_every_node() {
    if !tools_present() {
        return;
    }
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let lp = c.node(leader).client_port;
    benchmark(
        lp,
        &["SET", "GET", "INCR", "MSET (10 keys)"],
        &[
            "-t",
            "set,get,incr,mset",
            "-n",
            "20000",
            "-c",
            "50",
            "-P",
            "16",
            "-q",
        ],
    );
    let follower = c.followers(leader)[0];
    benchmark(
        c.node(follower).client_port,
        &["SET"],
        &["-t", "set", "-n", "2000", "-c", "10", "-P", "4", "-q"],
    );

    // Without -r every request uses the same key: the benchmark wrote
    // exactly these, with 3-byte (random) values, and 20000 INCRs.
    let mut lcon = c.conn(leader);
    let keys: BTreeSet<String> = redis::cmd("KEYS")
        .arg("*")
        .query::<Vec<String>>(&mut lcon)
        .unwrap()
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = ["key:__rand_int__", "counter:__rand_int__"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(keys, expected, "the keys redis-benchmark wrote");
    let value = |con: &mut redis::Connection, key: &str| -> Option<String> {
        redis::cmd("GET").arg(key).query(con).unwrap()
    };
    let data = value(&mut lcon, "key:__rand_int__").expect("key:__rand_int__");
    assert_eq!(
        data.len(),
        3,
        "redis-benchmark's default 3-byte values: {data:?}"
    );
    assert_eq!(
        value(&mut lcon, "counter:__rand_int__").as_deref(),
        Some("20000"),
        "20000 INCRs"
    );
    for i in 0..3 {
        let id = c.node(i).id.clone();
        // Linearizable reads.
        let mut con = c.conn(i);
        assert_eq!(
            value(&mut con, "key:__rand_int__"),
            Some(data.clone()),
            "{id}"
        );
        assert_eq!(
            value(&mut con, "counter:__rand_int__").as_deref(),
            Some("20000"),
            "{id}"
        );
        // Local reads, once caught up.
        let mut ro = c.node(i).readonly_conn();
        eventually(EVENTUALLY, "READONLY reads to see the counter", || {
            (value(&mut ro, "counter:__rand_int__").as_deref() == Some("20000")).then_some(())
        });
        assert_eq!(
            value(&mut ro, "key:__rand_int__"),
            Some(data.clone()),
            "{id}"
        );
        let keys_here: BTreeSet<String> = redis::cmd("KEYS")
            .arg("*")
            .query::<Vec<String>>(&mut ro)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(keys_here, expected, "KEYS * on {id}");
    }
}
