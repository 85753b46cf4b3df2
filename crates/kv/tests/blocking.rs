//! Blocking list pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) on a real
//! cluster of three `raft-kv serve` processes: a client blocked on one node
//! gets what another pushes through another node; a timeout gives the null
//! reply; clients blocked on different nodes each get one element, none
//! lost or given twice, and those on one node in the order they came; a
//! client that disconnects stops waiting; MULTI does not block; a node with
//! a blocked client shuts down at once; `--command-timeout-ms` bounds each
//! attempt, not the wait.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use redis::Value;

/// How long a blocked client may take to get an element once it is there.
const SERVED: Duration = Duration::from_secs(10);

/// Runs `args` on `con` in a thread; its reply and how long it took come
/// on the channel.
fn blocked(
    mut con: redis::Connection,
    args: &[&str],
) -> mpsc::Receiver<(redis::RedisResult<Value>, Duration)> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let reply = cmd(&words).query::<Value>(&mut con);
        let _ = tx.send((reply, started.elapsed()));
    });
    rx
}

/// Waits until node `i` counts `n` blocked clients.
fn wait_blocked(c: &Cluster, i: usize, n: u64) {
    eventually(
        EVENTUALLY,
        &format!("{n} blocked clients on node {i}"),
        || (info_number(c.node(i), "clients", "blocked_clients") == n).then_some(()),
    );
}

fn pair(k: &str, v: &str) -> Value {
    Value::Array(vec![bulk(k), bulk(v)])
}

#[test]
fn blocked_clients_get_what_other_nodes_push_exactly_once() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let followers = c.followers(leader);
    let (f1, f2) = (followers[0], followers[1]);
    let mut lead = c.conn(leader);

    // A client blocked on a follower gets the value pushed on the leader.
    let a = blocked(c.conn(f1), &["BLPOP", "nothing", "q1", "0"]);
    wait_blocked(&c, f1, 1);
    assert!(a.try_recv().is_err(), "BLPOP on empty lists waits");
    assert_eq!(q(&mut lead, &["LPUSH", "q1", "v1"]), Value::Int(1));
    let (got, _) = a.recv_timeout(SERVED).expect("BLPOP is served");
    assert_eq!(got.unwrap(), pair("q1", "v1"));
    assert_eq!(q(&mut lead, &["EXISTS", "q1"]), Value::Int(0));
    wait_blocked(&c, f1, 0);

    // Data already there: no wait, from the first non-empty list.
    q(&mut lead, &["RPUSH", "q0", "x", "y"]);
    let mut on_f2 = c.conn(f2);
    assert_eq!(
        q(&mut on_f2, &["BRPOP", "empty", "q0", "0"]),
        pair("q0", "y")
    );

    // A timeout gives a null array, no sooner than asked.
    let started = Instant::now();
    assert_eq!(q(&mut on_f2, &["BLPOP", "empty", "0.2"]), Value::Nil);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        q(&mut on_f2, &["BRPOPLPUSH", "empty", "d", "0.2"]),
        Value::Nil
    );

    // Two clients blocked on different nodes, two values pushed: each gets
    // exactly one, nothing is lost or given twice.
    let one = blocked(c.conn(f1), &["BRPOP", "q2", "0"]);
    let two = blocked(c.conn(f2), &["BRPOP", "q2", "0"]);
    wait_blocked(&c, f1, 1);
    wait_blocked(&c, f2, 1);
    q(&mut lead, &["LPUSH", "q2", "a"]);
    q(&mut lead, &["LPUSH", "q2", "b"]);
    let mut values: Vec<String> = [one, two]
        .iter()
        .map(|rx| {
            let (got, _) = rx.recv_timeout(SERVED).expect("both are served");
            match got.unwrap() {
                Value::Array(kv) if kv.len() == 2 && kv[0] == bulk("q2") => text(&kv[1]),
                other => panic!("not [q2, value]: {other:?}"),
            }
        })
        .collect();
    values.sort();
    assert_eq!(values, ["a", "b"]);
    assert_eq!(q(&mut lead, &["LLEN", "q2"]), Value::Int(0));

    // Several clients on one node and as many elements: each is served once.
    let waiters: Vec<_> = (0..3)
        .map(|_| blocked(c.conn(f1), &["BLPOP", "q3", "0"]))
        .collect();
    wait_blocked(&c, f1, 3);
    q(&mut lead, &["RPUSH", "q3", "1", "2", "3"]);
    let mut values: Vec<String> = waiters
        .iter()
        .map(|rx| {
            let (got, _) = rx.recv_timeout(SERVED).expect("all are served");
            match got.unwrap() {
                Value::Array(kv) => text(&kv[1]),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    values.sort();
    assert_eq!(values, ["1", "2", "3"]);
    assert_eq!(q(&mut lead, &["EXISTS", "q3"]), Value::Int(0));

    // On one node, the longest-waiting client is served first.
    let queue: Vec<_> = (1..=3)
        .map(|n| {
            let rx = blocked(c.conn(f2), &["BLPOP", "fifo", "0"]);
            wait_blocked(&c, f2, n);
            rx
        })
        .collect();
    for (i, rx) in queue.iter().enumerate() {
        let value = format!("e{i}");
        q(&mut lead, &["RPUSH", "fifo", &value]);
        let (got, _) = rx.recv_timeout(SERVED).expect("the oldest is served");
        assert_eq!(got.unwrap(), pair("fifo", &value), "waiter {i}");
    }
    wait_blocked(&c, f2, 0);

    // BLMOVE moves exactly once.
    let mover = blocked(c.conn(f2), &["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"]);
    wait_blocked(&c, f2, 1);
    q(&mut lead, &["RPUSH", "src", "m"]);
    let (got, _) = mover.recv_timeout(SERVED).expect("BLMOVE is served");
    assert_eq!(got.unwrap(), bulk("m"));
    assert_eq!(
        q(&mut lead, &["LRANGE", "dst", "0", "-1"]),
        Value::Array(vec![bulk("m")])
    );
    assert_eq!(q(&mut lead, &["EXISTS", "src"]), Value::Int(0));
    let started = Instant::now();
    assert_eq!(
        q(
            &mut on_f2,
            &["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0.2"]
        ),
        Value::Nil
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(q(&mut lead, &["LLEN", "dst"]), Value::Int(1));

    // BLMPOP waits on all its keys, and pops up to COUNT from the first
    // that holds something.
    let multi = blocked(
        c.conn(f1),
        &["BLMPOP", "0", "2", "m1", "m2", "RIGHT", "COUNT", "2"],
    );
    wait_blocked(&c, f1, 1);
    q(&mut lead, &["RPUSH", "m2", "a", "b", "c"]);
    let (got, _) = multi.recv_timeout(SERVED).expect("BLMPOP is served");
    assert_eq!(
        got.unwrap(),
        Value::Array(vec![bulk("m2"), Value::Array(vec![bulk("c"), bulk("b")])])
    );
    assert_eq!(
        q(&mut lead, &["LRANGE", "m2", "0", "-1"]),
        Value::Array(vec![bulk("a")])
    );
    let started = Instant::now();
    assert_eq!(
        q(&mut on_f2, &["BLMPOP", "0.2", "1", "m1", "LEFT"]),
        Value::Nil
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        q(&mut on_f2, &["LMPOP", "2", "m1", "m2", "LEFT"]),
        Value::Array(vec![bulk("m2"), Value::Array(vec![bulk("a")])])
    );

    // Inside MULTI a blocking pop does not block: it pops or is null.
    let mut tx = c.conn(f1);
    tx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    q(&mut tx, &["MULTI"]);
    q(&mut tx, &["BLPOP", "empty", "0"]);
    q(&mut tx, &["BLMOVE", "dst", "dst2", "LEFT", "LEFT", "0"]);
    q(&mut tx, &["BRPOPLPUSH", "empty", "dst2", "0"]);
    q(&mut tx, &["BLMPOP", "0", "1", "empty", "LEFT"]);
    assert_eq!(
        q(&mut tx, &["EXEC"]),
        Value::Array(vec![Value::Nil, bulk("m"), Value::Nil, Value::Nil])
    );

    // The commands are @blocking, as in Redis.
    let mut blocking: Vec<String> = match q(&mut lead, &["ACL", "CAT", "blocking"]) {
        Value::Array(names) => names.iter().map(text).collect(),
        other => panic!("{other:?}"),
    };
    blocking.sort();
    assert_eq!(
        blocking,
        ["blmove", "blmpop", "blpop", "brpop", "brpoplpush"]
    );

    // Errors, as Redis words them.
    q(&mut lead, &["SET", "str", "v"]);
    for (args, error) in [
        (vec!["BLPOP", "k", "-1"], "ERR timeout is negative"),
        (
            vec!["BRPOP", "k", "x"],
            "ERR timeout is not a float or out of range",
        ),
        (
            vec!["BLMOVE", "a", "b", "UP", "LEFT", "0"],
            "ERR syntax error",
        ),
        (vec!["BLPOP", "str", "0"], "WRONGTYPE"),
        (vec!["BLMPOP", "0", "1", "str", "LEFT"], "WRONGTYPE"),
        (
            vec!["BLMPOP", "0", "0", "k", "LEFT"],
            "ERR numkeys should be greater than 0",
        ),
        (
            vec!["BLPOP", "k"],
            "ERR wrong number of arguments for 'blpop' command",
        ),
    ] {
        let e = expect_err(&mut on_f2, &cmd(&args));
        assert!(e.starts_with(error), "{args:?}: {e}");
    }

    // A client that disconnects while blocked stops waiting: it takes
    // nothing pushed after; what a client sends while blocked runs after.
    let mut gone = Raw::connect(&c.node(f1).client_addr());
    gone.send(b"BLPOP q4 0\r\n");
    let mut piped = Raw::connect(&c.node(f2).client_addr());
    piped.send(b"BLPOP q5 0\r\n");
    wait_blocked(&c, f1, 1);
    wait_blocked(&c, f2, 1);
    piped.send(b"PING\r\n");
    drop(gone);
    wait_blocked(&c, f1, 0);
    q(&mut lead, &["RPUSH", "q4", "kept"]);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(q(&mut lead, &["LLEN", "q4"]), Value::Int(1));
    q(&mut lead, &["RPUSH", "q5", "p"]);
    assert_eq!(
        piped.read_lines(6),
        "*2\r\n$2\r\nq5\r\n$1\r\np\r\n+PONG\r\n"
    );

    // A node with a blocked client stops at once on SIGTERM (`terminate`
    // fails the test after 20 s).
    let mut stuck = Raw::connect(&c.node(f2).client_addr());
    stuck.send(b"BLPOP never 0\r\n");
    wait_blocked(&c, f2, 1);
    c.node_mut(f2).terminate();
}

#[test]
fn the_command_timeout_bounds_each_attempt_not_the_wait() {
    let mut c = Cluster::single(&["--command-timeout-ms", "100"]);
    c.wait_leader();
    let mut con = c.conn(0);
    let started = Instant::now();
    assert_eq!(q(&mut con, &["BLPOP", "k", "0.6"]), Value::Nil);
    assert!(started.elapsed() >= Duration::from_millis(600));
    let waiter = blocked(c.conn(0), &["BRPOPLPUSH", "k", "d", "0"]);
    wait_blocked(&c, 0, 1);
    thread::sleep(Duration::from_millis(300));
    assert!(
        waiter.try_recv().is_err(),
        "still waiting past the command timeout"
    );
    q(&mut con, &["RPUSH", "k", "v"]);
    let (got, _) = waiter.recv_timeout(SERVED).expect("served");
    assert_eq!(got.unwrap(), bulk("v"));
    assert_eq!(
        q(&mut con, &["LRANGE", "d", "0", "-1"]),
        Value::Array(vec![bulk("v")])
    );
}
