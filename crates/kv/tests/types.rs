//! Hashes, sets and lists on a real cluster: three `raft-kv serve` processes,
//! written through every node, the leader killed (SIGKILL) and restarted,
//! then every node stopped and started again from its snapshot and log.
//! Every node must hold exactly what the clients were told, type by type.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use redis::Value;

/// What the clients were told the store holds.
#[derive(Default)]
struct Model {
    hashes: BTreeMap<String, BTreeMap<String, String>>,
    sets: BTreeMap<String, BTreeSet<String>>,
    lists: BTreeMap<String, Vec<String>>,
}

/// Runs a command, retrying retryable errors (a leader is being elected)
/// for up to [`EVENTUALLY`]. Only for commands that may run twice.
fn retried(con: &mut redis::Connection, args: &[&str]) -> Value {
    let started = Instant::now();
    loop {
        match cmd(args).query::<Value>(con) {
            Ok(v) => return v,
            Err(e) => {
                let text = err_text(&e);
                assert!(
                    ["TRYAGAIN", "CLUSTERDOWN", "TIMEOUT"]
                        .iter()
                        .any(|code| text.starts_with(code)),
                    "{args:?} failed with {text:?}, not a retryable error"
                );
                assert!(
                    started.elapsed() < EVENTUALLY,
                    "{args:?} still fails: {text}"
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(text).collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// Checks that node `i` holds exactly the model.
fn check_node(c: &Cluster, i: usize, m: &Model, on: &str) {
    let mut con = c.conn(i);
    let mut keys: Vec<String> = strings(&q(&mut con, &["KEYS", "*"]));
    keys.sort();
    let mut expected: Vec<String> = m
        .hashes
        .keys()
        .chain(m.sets.keys())
        .chain(m.lists.keys())
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(keys, expected, "the keys on {on}");
    for (k, fields) in &m.hashes {
        assert_eq!(
            q(&mut con, &["TYPE", k]),
            Value::SimpleString("hash".into()),
            "{k} on {on}"
        );
        let flat = strings(&q(&mut con, &["HGETALL", k]));
        let got: BTreeMap<String, String> = flat
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        assert_eq!(&got, fields, "{k} on {on}");
        assert_eq!(q(&mut con, &["HLEN", k]), Value::Int(fields.len() as i64));
    }
    for (k, elements) in &m.lists {
        assert_eq!(
            q(&mut con, &["TYPE", k]),
            Value::SimpleString("list".into()),
            "{k} on {on}"
        );
        assert_eq!(
            &strings(&q(&mut con, &["LRANGE", k, "0", "-1"])),
            elements,
            "{k} on {on}"
        );
    }
    for (k, members) in &m.sets {
        assert_eq!(
            q(&mut con, &["TYPE", k]),
            Value::SimpleString("set".into()),
            "{k} on {on}"
        );
        let got: BTreeSet<String> = strings(&q(&mut con, &["SMEMBERS", k]))
            .into_iter()
            .collect();
        assert_eq!(&got, members, "{k} on {on}");
    }
}

#[test]
fn hashes_sets_and_lists_through_every_node_survive_a_killed_leader_and_a_restart() {
    let mut c = Cluster::start(3, &["--snapshot-threshold", "40"]);
    let leader = c.wait_leader();
    let mut m = Model::default();
    let mut cons: Vec<redis::Connection> = (0..3).map(|i| c.conn(i)).collect();
    // Written through every node in turn (followers forward).
    for j in 0..90 {
        let con = &mut cons[j % 3];
        let (k, f, v) = (
            format!("user:{}", j % 12),
            format!("f{}", j % 7),
            format!("v{j}"),
        );
        let new = !m.hashes.get(&k).is_some_and(|h| h.contains_key(&f));
        assert_eq!(q(con, &["HSET", &k, &f, &v]), Value::Int(i64::from(new)));
        m.hashes.entry(k).or_default().insert(f, v);
        let (s, member) = (format!("tags:{}", j % 5), format!("m{}", j % 17));
        let new = !m.sets.get(&s).is_some_and(|t| t.contains(&member));
        assert_eq!(q(con, &["SADD", &s, &member]), Value::Int(i64::from(new)));
        m.sets.entry(s).or_default().insert(member);
        let list = m.lists.entry("queue".into()).or_default();
        list.push(format!("e{j}"));
        assert_eq!(
            q(con, &["RPUSH", "queue", &format!("e{j}")]),
            Value::Int(list.len() as i64)
        );
        if j % 10 == 9 {
            let n = q(con, &["HINCRBY", "counters", "visits", "1"]);
            let count = m.hashes.entry("counters".into()).or_default();
            let next = count.get("visits").map_or(0, |v| v.parse::<i64>().unwrap()) + 1;
            assert_eq!(n, Value::Int(next));
            count.insert("visits".into(), next.to_string());
        }
    }
    // A move between lists, through a follower.
    assert_eq!(
        q(
            &mut cons[(leader + 1) % 3],
            &["LMOVE", "queue", "done", "LEFT", "RIGHT"]
        ),
        Value::BulkString(b"e0".to_vec())
    );
    m.lists.get_mut("queue").unwrap().remove(0);
    m.lists.insert("done".into(), vec!["e0".into()]);
    // Random pops, decided by the log: every node must remove the same.
    for (i, s) in ["tags:0", "tags:1", "tags:2"].iter().enumerate() {
        let popped = strings(&q(&mut cons[i], &["SPOP", s, "2"]));
        assert_eq!(popped.len(), 2);
        let set = m.sets.get_mut(*s).unwrap();
        for p in popped {
            assert!(set.remove(&p), "{p} was a member of {s}");
        }
    }
    assert_eq!(
        q(&mut cons[0], &["SINTERSTORE", "common", "tags:3", "tags:4"]),
        Value::Int(m.sets["tags:3"].intersection(&m.sets["tags:4"]).count() as i64)
    );
    let common: BTreeSet<String> = m.sets["tags:3"]
        .intersection(&m.sets["tags:4"])
        .cloned()
        .collect();
    if !common.is_empty() {
        m.sets.insert("common".into(), common);
    }
    drop(cons);
    for i in 0..3 {
        check_node(&c, i, &m, &c.node(i).id.clone());
    }

    // The leader dies; writes go on through the others.
    c.nodes[leader].kill();
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for (n, &i) in rest.iter().cycle().take(20).enumerate() {
        let mut con = c.conn(i);
        let k = format!("after:{}", n % 4);
        retried(&mut con, &["HSET", &k, &format!("f{n}"), "x"]);
        m.hashes
            .entry(k)
            .or_default()
            .insert(format!("f{n}"), "x".into());
        retried(&mut con, &["SADD", "after-set", &format!("m{n}")]);
        m.sets
            .entry("after-set".into())
            .or_default()
            .insert(format!("m{n}"));
    }
    let new = c.wait_leader_among(&rest, None);
    assert_ne!(new, leader);
    c.nodes[leader].start();
    let mut ro = c.node(leader).readonly_conn();
    eventually(EVENTUALLY, "the restarted node to catch up", || {
        (q(&mut ro, &["SISMEMBER", "after-set", "m19"]) == Value::Int(1)).then_some(())
    });
    c.wait_leader();
    for i in 0..3 {
        check_node(&c, i, &m, &format!("{} after the kill", c.node(i).id));
    }

    // A time to live on a hash survives too; then every node restarts from
    // its snapshot and log.
    let leader = c.wait_leader();
    let mut con = c.conn(leader);
    assert_eq!(q(&mut con, &["EXPIRE", "user:1", "1000"]), Value::Int(1));
    eventually(EVENTUALLY, "a snapshot on every node", || {
        (0..3)
            .all(|i| {
                raft_info(c.node(i), None)
                    .and_then(|info| field(&info, "raft_snapshot_index"))
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|s| s > 0)
            })
            .then_some(())
    });
    drop(con);
    for i in 0..3 {
        c.nodes[i].terminate();
    }
    for i in 0..3 {
        c.nodes[i].start();
    }
    c.wait_leader();
    for i in 0..3 {
        check_node(&c, i, &m, &format!("{} after the restart", c.node(i).id));
        let mut con = c.conn(i);
        let Value::Int(ttl) = q(&mut con, &["TTL", "user:1"]) else {
            panic!("TTL is an integer")
        };
        assert!((900..=1000).contains(&ttl), "user:1's time to live: {ttl}");
    }
    // And the store goes on: WRONGTYPE across types, on any node.
    let mut con = c.conn(0);
    assert_eq!(
        expect_err(&mut con, &cmd(&["GET", "user:1"])),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(
        expect_err(&mut con, &cmd(&["SADD", "user:1", "x"])),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
}
