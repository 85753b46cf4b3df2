//! Group commit: writes of many connections that arrive while an entry is
//! under way go together in the next log entry, and each client still gets
//! its own replies, in order, errors included. A real `raft-kv serve`
//! process (a cluster of one, on disk), its entries counted through the
//! admin endpoint's `raftkv_write_batch_size` metric.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use common::*;
use redis::Value;

/// Connections writing at once.
const CLIENTS: usize = 24;

/// Writes of each connection, one at a time.
const ROUNDS: usize = 30;

/// The value of the metric line `name` (without labels), a whole number
/// (a histogram's sum is written as a float: `12.0`).
fn metric(metrics: &str, name: &str) -> u64 {
    let value: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
    assert_eq!(value.fract(), 0.0, "{name} {value}");
    value as u64
}

/// The log entries of client writes so far, and the writes in them.
fn entries_and_writes(admin: &str) -> (u64, u64) {
    let metrics = http_get(admin, "/metrics");
    (
        metric(&metrics, "raftkv_write_batch_size_count"),
        metric(&metrics, "raftkv_write_batch_size_sum"),
    )
}

/// A single node with an admin endpoint, its leader elected.
fn node_with_metrics() -> (Cluster, String) {
    let admin = format!("127.0.0.1:{}", free_ports(1)[0]);
    let mut c = Cluster::single(&["--admin-addr", &admin]);
    c.wait_leader();
    (c, admin)
}

/// Runs `client(i, connection)` for `CLIENTS` connections at once (each
/// in its thread, started together); panics if one does.
fn at_once(c: &Cluster, client: impl Fn(usize, &mut redis::Connection) + Send + Sync + 'static) {
    let start = Arc::new(Barrier::new(CLIENTS));
    let client = Arc::new(client);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let mut con = c.conn(0);
            let (start, client) = (start.clone(), client.clone());
            thread::spawn(move || {
                start.wait();
                client(i, &mut con);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed");
    }
}

/// `SET k<i> <i>:<round> GET`: the reply is the value this client set in
/// its round before, which no other client sets.
fn set_get(con: &mut redis::Connection, i: usize, round: usize) {
    let key = format!("k{i}");
    let value = format!("{i}:{round}");
    let got = q(con, &["SET", &key, &value, "GET"]);
    let before = match round {
        0 => Value::Nil,
        r => bulk(&format!("{i}:{}", r - 1)),
    };
    assert_eq!(got, before, "client {i}, round {round}");
}

#[test]
fn writes_of_many_connections_share_entries_and_each_client_gets_its_own_replies_in_order() {
    let (c, admin) = node_with_metrics();
    let (entries_before, writes_before) = entries_and_writes(&admin);
    at_once(&c, |i, con| {
        for round in 0..ROUNDS {
            set_get(con, i, round);
        }
    });
    let (entries, writes) = entries_and_writes(&admin);
    let (entries, writes) = (entries - entries_before, writes - writes_before);
    assert_eq!(writes, (CLIENTS * ROUNDS) as u64);
    // One write at a time per connection: fewer entries than writes only
    // if connections shared them.
    assert!(
        entries < writes,
        "{writes} writes of {CLIENTS} connections in {entries} entries"
    );
    let mut con = c.conn(0);
    for i in 0..CLIENTS {
        let last = format!("{i}:{}", ROUNDS - 1);
        assert_eq!(q(&mut con, &["GET", &format!("k{i}")]), bulk(&last));
    }
}

#[test]
fn a_write_that_fails_in_a_shared_entry_fails_for_its_client_alone() {
    let (c, admin) = node_with_metrics();
    let mut con = c.conn(0);
    assert_eq!(q(&mut con, &["SET", "word", "abc"]), Value::Okay);
    let (entries_before, writes_before) = entries_and_writes(&admin);
    at_once(&c, |i, con| {
        for round in 0..ROUNDS {
            if i == 0 {
                // Fails in the store, as the entry is applied.
                let e = expect_err(con, &cmd(&["INCR", "word"]));
                assert_eq!(e, "ERR value is not an integer or out of range");
                assert_eq!(q(con, &["INCR", "n0"]), Value::Int(round as i64 + 1));
            } else {
                set_get(con, i, round);
            }
        }
    });
    let (entries, writes) = entries_and_writes(&admin);
    let (entries, writes) = (entries - entries_before, writes - writes_before);
    assert_eq!(writes, (CLIENTS * ROUNDS + ROUNDS) as u64);
    assert!(
        entries < writes,
        "{writes} writes of {CLIENTS} connections in {entries} entries"
    );
    assert_eq!(q(&mut con, &["GET", "word"]), bulk("abc"));
    assert_eq!(q(&mut con, &["GET", "n0"]), bulk(&ROUNDS.to_string()));
}

#[test]
fn pipelined_writes_of_many_connections_come_back_whole_and_in_order() {
    let (c, admin) = node_with_metrics();
    let (entries_before, _) = entries_and_writes(&admin);
    let address = c.node(0).client_addr();
    at_once(&c, move |i, _| {
        let mut raw = Raw::connect(&address);
        let key = format!("n{i}");
        let by = (i + 1).to_string();
        // Two writes, a request that is refused, and a write, sent at once.
        let mut request = Vec::new();
        for args in [
            &["INCR", &key][..],
            &["INCRBY", &key, &by],
            &["INCR"],
            &["INCR", &key],
        ] {
            request.extend(format!("*{}\r\n", args.len()).bytes());
            for a in args {
                request.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
            }
        }
        for round in 0..ROUNDS {
            raw.send(&request);
            let before = round * (i + 3);
            let expected = format!(
                ":{}\r\n:{}\r\n-ERR wrong number of arguments for 'incr' command\r\n:{}\r\n",
                before + 1,
                before + i + 2,
                before + i + 3,
            );
            assert_eq!(raw.read_lines(4), expected, "client {i}, round {round}");
        }
    });
    // Two entries a round per connection unless they shared them.
    let (entries, _) = entries_and_writes(&admin);
    assert!(entries - entries_before < (2 * CLIENTS * ROUNDS) as u64);
}
