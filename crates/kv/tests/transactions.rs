//! Transactions on a cluster of real processes: WATCH read on one node,
//! the key changed through another, EXEC answered with a null array; and
//! a counter incremented with WATCH/GET/MULTI/SET/EXEC by 8 clients spread
//! over every node while the leader is killed (SIGKILL) and restarted,
//! which must end at exactly the number of EXECs that succeeded (those
//! whose outcome is unknown, a connection error or a retryable error,
//! counted apart: the counter is between the two).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use redis::Value;

/// A connection to `addr` (5 s to connect, 5 s per reply), or the error.
fn connect(addr: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}"))?;
    let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
    con.set_read_timeout(Some(Duration::from_secs(5)))?;
    con.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(con)
}

#[test]
fn a_watch_on_a_follower_sees_a_change_made_through_another_node() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let followers = c.followers(leader);
    let mut watcher = c.conn(followers[0]);
    let mut writer = c.conn(followers[1]);
    assert_eq!(q(&mut writer, &["SET", "k", "1"]), Value::Okay);
    // Unchanged: EXEC runs, and its reads see its own writes.
    assert_eq!(q(&mut watcher, &["WATCH", "k"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    assert_eq!(
        q(&mut watcher, &["INCR", "k"]),
        Value::SimpleString("QUEUED".into())
    );
    q(&mut watcher, &["GET", "k"]);
    assert_eq!(
        q(&mut watcher, &["EXEC"]),
        Value::Array(vec![Value::Int(2), bulk("2")])
    );
    // Changed through another node after WATCH: a null array, nothing run.
    assert_eq!(q(&mut watcher, &["WATCH", "k", "absent"]), Value::Okay);
    assert_eq!(q(&mut writer, &["SET", "k", "x"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    q(&mut watcher, &["SET", "k", "mine"]);
    assert_eq!(q(&mut watcher, &["EXEC"]), Value::Nil);
    assert_eq!(q(&mut writer, &["GET", "k"]), bulk("x"));
    // EXEC forgot the watches: the next transaction runs.
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    q(&mut watcher, &["SET", "k", "mine"]);
    assert_eq!(q(&mut watcher, &["EXEC"]), Value::Array(vec![Value::Okay]));
    // A key created after WATCH counts as changed; errors at queue time
    // abort EXEC.
    assert_eq!(q(&mut watcher, &["WATCH", "absent"]), Value::Okay);
    assert_eq!(q(&mut writer, &["SET", "absent", "1"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["EXEC"]), Value::Nil);
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    assert!(expect_err(&mut watcher, &cmd(&["GET"])).contains("wrong number of arguments"));
    assert!(expect_err(&mut watcher, &cmd(&["EXEC"])).starts_with("EXECABORT"));
    assert!(expect_err(&mut watcher, &cmd(&["EXEC"])).contains("EXEC without MULTI"));
    // A READONLY connection's WATCH is linearizable all the same.
    let mut ro = c.node(followers[0]).readonly_conn();
    assert_eq!(q(&mut ro, &["WATCH", "k"]), Value::Okay);
    assert_eq!(q(&mut writer, &["SET", "k", "y"]), Value::Okay);
    assert_eq!(q(&mut ro, &["MULTI"]), Value::Okay);
    q(&mut ro, &["GET", "k"]);
    assert_eq!(q(&mut ro, &["EXEC"]), Value::Nil);
}

#[test]
fn hashes_sets_and_lists_are_watched_and_run_inside_transactions() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let followers = c.followers(leader);
    let mut watcher = c.conn(followers[0]);
    let mut writer = c.conn(followers[1]);
    let queued = || Value::SimpleString("QUEUED".into());
    // WATCH a hash, HSET it through another node: EXEC is a null array
    // and runs nothing.
    assert_eq!(q(&mut writer, &["HSET", "h", "f", "1"]), Value::Int(1));
    assert_eq!(q(&mut watcher, &["WATCH", "h"]), Value::Okay);
    assert_eq!(q(&mut writer, &["HSET", "h", "f", "2"]), Value::Int(0));
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["HSET", "h", "mine", "1"]), queued());
    assert_eq!(q(&mut watcher, &["EXEC"]), Value::Nil);
    assert_eq!(q(&mut writer, &["HGET", "h", "mine"]), Value::Nil);
    // A typed write that changes nothing (a field not there) leaves the
    // watch alone; one that empties a set and so removes it does not.
    assert_eq!(q(&mut writer, &["SADD", "s", "a"]), Value::Int(1));
    assert_eq!(q(&mut watcher, &["WATCH", "h", "s"]), Value::Okay);
    assert_eq!(q(&mut writer, &["HDEL", "h", "nothing"]), Value::Int(0));
    assert_eq!(q(&mut writer, &["SREM", "s", "b"]), Value::Int(0));
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["HLEN", "h"]), queued());
    assert_eq!(
        q(&mut watcher, &["EXEC"]),
        Value::Array(vec![Value::Int(1)])
    );
    assert_eq!(q(&mut watcher, &["WATCH", "s"]), Value::Okay);
    assert_eq!(q(&mut writer, &["SREM", "s", "a"]), Value::Int(1));
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["SCARD", "s"]), queued());
    assert_eq!(q(&mut watcher, &["EXEC"]), Value::Nil);
    // The destination of a move is watched like its source.
    assert_eq!(q(&mut writer, &["RPUSH", "src", "x", "y"]), Value::Int(2));
    assert_eq!(q(&mut watcher, &["WATCH", "dst"]), Value::Okay);
    assert_eq!(
        q(&mut writer, &["LMOVE", "src", "dst", "LEFT", "RIGHT"]),
        bulk("x")
    );
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["LLEN", "dst"]), queued());
    assert_eq!(q(&mut watcher, &["EXEC"]), Value::Nil);
    // RENAME changes the key under its new name too.
    assert_eq!(q(&mut watcher, &["WATCH", "moved"]), Value::Okay);
    assert_eq!(q(&mut writer, &["RENAME", "src", "moved"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    assert_eq!(q(&mut watcher, &["TYPE", "moved"]), queued());
    assert_eq!(q(&mut watcher, &["EXEC"]), Value::Nil);
    assert_eq!(
        q(&mut watcher, &["LRANGE", "moved", "0", "-1"]),
        Value::Array(vec![bulk("y")])
    );
    // Typed commands queue and run in the one entry, their replies in
    // EXEC's array, reads seeing the transaction's own writes (WRONGTYPE
    // in the array: the store's tests).
    assert_eq!(q(&mut watcher, &["MULTI"]), Value::Okay);
    for line in [
        &["HSET", "t", "a", "1", "b", "2"][..],
        &["HINCRBY", "t", "a", "5"],
        &["HGET", "t", "a"],
        &["SADD", "u", "m1", "m2"],
        &["SISMEMBER", "u", "m2"],
        &["LPUSH", "v", "e1", "e2"],
        &["LRANGE", "v", "0", "-1"],
        &["TYPE", "v"],
        &["SMEMBERS", "u"],
        &["HGETALL", "t"],
    ] {
        assert_eq!(q(&mut watcher, line), queued(), "{line:?}");
    }
    let got = q(&mut watcher, &["EXEC"]);
    let Value::Array(items) = got else {
        panic!("EXEC: {got:?}");
    };
    assert_eq!(items.len(), 10, "{items:?}");
    assert_eq!(
        items[..8],
        [
            Value::Int(2),
            Value::Int(6),
            bulk("6"),
            Value::Int(2),
            Value::Int(1),
            Value::Int(2),
            Value::Array(vec![bulk("e2"), bulk("e1")]),
            Value::SimpleString("list".into()),
        ]
    );
    let texts = |v: &Value| {
        let Value::Array(items) = v else {
            panic!("{v:?}")
        };
        let mut t: Vec<String> = items.iter().map(text).collect();
        t.sort();
        t
    };
    assert_eq!(texts(&items[8]), ["m1", "m2"]);
    // HGETALL: field a is 6, b is 2 (fields and values sorted together).
    assert_eq!(texts(&items[9]), ["2", "6", "a", "b"]);
    // Applied on every node.
    assert_eq!(q(&mut writer, &["HLEN", "t"]), Value::Int(2));
    assert_eq!(q(&mut writer, &["SCARD", "u"]), Value::Int(2));
}

/// What one client's transactions came to.
#[derive(Default, Debug, Clone, Copy)]
struct Outcomes {
    /// EXEC replied with an array: the increment is applied.
    ok: u64,
    /// EXEC replied with a null array: a watched key changed.
    conflicts: u64,
    /// EXEC's outcome is unknown (a connection error, or an error reply
    /// such as TRYAGAIN or TIMEOUT while the leader changed).
    unknown: u64,
    /// Attempts that failed before EXEC was sent (nothing applied).
    failed_before_exec: u64,
    /// The client ran until told to stop (not out of attempts or time):
    /// its load spanned every kill.
    ran_to_the_end: bool,
}

/// The most transactions one client tries, and for how long.
const ATTEMPTS_PER_CLIENT: u64 = 5_000;
const LOAD_TIME: Duration = Duration::from_secs(40);

/// One client: WATCH counter, GET it, MULTI, SET it to one more, EXEC,
/// until told to stop (or its attempts or time run out).
fn increment_loop(addr: String, stop: Arc<AtomicBool>) -> Outcomes {
    let mut out = Outcomes::default();
    let started = Instant::now();
    let mut con: Option<redis::Connection> = None;
    let mut attempts = 0;
    while !stop.load(Ordering::Relaxed)
        && attempts < ATTEMPTS_PER_CLIENT
        && started.elapsed() < LOAD_TIME
    {
        let c = match con.as_mut() {
            Some(c) => c,
            None => match connect(&addr) {
                Ok(c) => con.insert(c),
                Err(_) => {
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        attempts += 1;
        let before_exec = (|| -> redis::RedisResult<()> {
            cmd(&["WATCH", "counter"]).query::<()>(c)?;
            let n: Option<i64> = cmd(&["GET", "counter"]).query(c)?;
            let next = (n.unwrap_or(0) + 1).to_string();
            cmd(&["MULTI"]).query::<()>(c)?;
            cmd(&["SET", "counter", &next]).query::<()>(c)?;
            Ok(())
        })();
        if let Err(e) = before_exec {
            out.failed_before_exec += 1;
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                con = None;
            } else {
                // Leave MULTI (if in it) and the watches behind.
                let _ = cmd(&["DISCARD"]).query::<Value>(c);
                let _ = cmd(&["UNWATCH"]).query::<Value>(c);
            }
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        match cmd(&["EXEC"]).query::<Value>(c) {
            Ok(Value::Nil) => out.conflicts += 1,
            Ok(Value::Array(replies)) => {
                assert_eq!(replies, vec![Value::Okay], "EXEC's array");
                out.ok += 1;
            }
            Ok(other) => panic!("EXEC replied {other:?}"),
            Err(e) => {
                out.unknown += 1;
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    con = None;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
    out.ran_to_the_end = stop.load(Ordering::Relaxed);
    out
}

#[test]
fn a_watched_counter_counts_every_successful_exec_while_the_leader_is_killed() {
    let mut c = Cluster::start(3, &["--snapshot-threshold", "50"]);
    let first = c.wait_leader();
    assert_eq!(q(&mut c.conn(first), &["SET", "counter", "0"]), Value::Okay);
    let addrs: Vec<String> = (0..3).map(|i| c.node(i).client_addr()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (addr, stop) = (addrs[i % 3].clone(), stop.clone());
            thread::spawn(move || increment_loop(addr, stop))
        })
        .collect();
    // Two rounds: load, SIGKILL the leader, load through the election,
    // restart it.
    let mut killed = Vec::new();
    for _ in 0..2 {
        thread::sleep(Duration::from_millis(2500));
        let leader = c.wait_leader();
        c.node_mut(leader).kill();
        killed.push(c.node(leader).id.clone());
        thread::sleep(Duration::from_millis(2500));
        c.node_mut(leader).start();
    }
    thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    let mut total = Outcomes::default();
    for (i, h) in clients.into_iter().enumerate() {
        let o = h.join().expect("a client thread panicked");
        eprintln!("client {i} (node {}): {o:?}", i % 3);
        total.ok += o.ok;
        total.conflicts += o.conflicts;
        total.unknown += o.unknown;
        total.failed_before_exec += o.failed_before_exec;
        assert!(
            o.ran_to_the_end,
            "client {i} ran out of attempts or time before the kills were over: {o:?}"
        );
    }
    eprintln!("killed leaders {killed:?}; all clients: {total:?}");
    // The final value, read linearizably, and the same on every node.
    let leader = c.wait_leader();
    let final_value: i64 = eventually(EVENTUALLY, "a linearizable read of the counter", || {
        let mut con = connect(&addrs[leader]).ok()?;
        cmd(&["GET", "counter"]).query::<i64>(&mut con).ok()
    });
    for i in 0..3 {
        let mut ro = c.node(i).readonly_conn();
        eventually(EVENTUALLY, "every node to apply the last EXEC", || {
            (cmd(&["GET", "counter"]).query::<i64>(&mut ro).ok()? == final_value).then_some(())
        });
    }
    eprintln!(
        "counter {final_value}: {} EXECs succeeded, {} of unknown outcome",
        total.ok, total.unknown
    );
    assert!(total.ok > 0, "some transactions succeeded: {total:?}");
    assert!(total.conflicts > 0, "clients competed: {total:?}");
    let final_value = final_value as u64;
    assert!(
        total.ok <= final_value && final_value <= total.ok + total.unknown,
        "the counter {final_value} is not between the {} EXECs that succeeded and those plus the {} of unknown outcome",
        total.ok,
        total.unknown
    );
}
