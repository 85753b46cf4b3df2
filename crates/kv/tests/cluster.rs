//! raft-kv as a cluster, end to end: three `raft-kv serve` processes with
//! static membership, driven with the `redis` crate. Forwarding, reads on
//! followers, atomic MSET, leadership transfer, membership changes, crashes
//! and restarts.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use redis::Value;

/// A three-node cluster with its leader elected; the leader's index.
fn three(extra: &[&str]) -> (Cluster, usize) {
    let mut c = Cluster::start(3, extra);
    let leader = c.wait_leader();
    (c, leader)
}

/// Sets `prefix:0..n` to `value-of(prefix, i)` with MSETs of 100 keys.
fn set_many(con: &mut redis::Connection, prefix: &str, n: usize) {
    for start in (0..n).step_by(100) {
        let mut c = redis::cmd("MSET");
        for i in start..(start + 100).min(n) {
            c.arg(format!("{prefix}:{i}"))
                .arg(format!("{prefix}-value-{i}"));
        }
        assert_eq!(c.query::<Value>(con).expect("MSET"), Value::Okay);
    }
}

/// The keys `prefix:0..n` that do not hold their values (empty: all do).
fn missing(con: &mut redis::Connection, prefix: &str, n: usize) -> Vec<String> {
    let mut c = redis::cmd("MGET");
    for i in 0..n {
        c.arg(format!("{prefix}:{i}"));
    }
    let values: Vec<Option<String>> = c.query(con).expect("MGET");
    values
        .iter()
        .enumerate()
        .filter(|(i, v)| v.as_deref() != Some(format!("{prefix}-value-{i}").as_str()))
        .map(|(i, v)| format!("{prefix}:{i}={v:?}"))
        .collect()
}

fn assert_all_there(con: &mut redis::Connection, prefix: &str, n: usize, on: &str) {
    let m = missing(con, prefix, n);
    assert!(
        m.is_empty(),
        "{} of {n} keys wrong on {on}: {:?}",
        m.len(),
        &m[..m.len().min(10)]
    );
}

fn raft_status(con: &mut redis::Connection) -> serde_json::Value {
    let v = q(con, &["RAFT.STATUS"]);
    serde_json::from_str(&text(&v))
        .unwrap_or_else(|e| panic!("RAFT.STATUS is not JSON ({e}): {v:?}"))
}

fn peer_ids(status: &serde_json::Value) -> Vec<(String, String)> {
    status["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default().to_string(),
                p["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn writes_on_followers_are_forwarded_and_reads_on_followers_are_linearizable() {
    let (mut c, leader) = three(&[]);
    let followers = c.followers(leader);
    assert_eq!(followers.len(), 2);
    let mut cons: Vec<redis::Connection> = (0..3).map(|i| c.conn(i)).collect();

    // A SET on every node (two of them followers) is seen by a GET on
    // every node right after it is acknowledged.
    for i in 0..3 {
        let key = format!("fwd:{i}");
        let value = format!("from-{}", c.node(i).id);
        assert_eq!(q(&mut cons[i], &["SET", &key, &value]), Value::Okay);
        for (j, con) in cons.iter_mut().enumerate() {
            assert_eq!(
                q(con, &["GET", &key]),
                bulk(&value),
                "GET {key} on {} after the SET on {}",
                c.node(j).id,
                c.node(i).id
            );
        }
    }
    // Every kind of write is forwarded, with its reply.
    let f = followers[0];
    assert_eq!(q(&mut cons[f], &["INCR", "ctr"]), Value::Int(1));
    assert_eq!(q(&mut cons[f], &["INCRBY", "ctr", "9"]), Value::Int(10));
    assert_eq!(q(&mut cons[f], &["APPEND", "ap", "xy"]), Value::Int(2));
    assert_eq!(q(&mut cons[f], &["SET", "ap", "z", "GET"]), bulk("xy"));
    assert_eq!(q(&mut cons[f], &["SET", "ap", "w", "NX"]), Value::Nil);
    assert_eq!(q(&mut cons[f], &["CAS", "ap", "z", "q"]), Value::Int(1));
    assert_eq!(q(&mut cons[f], &["DEL", "ap", "nope"]), Value::Int(1));
    let err = expect_err(&mut cons[f], &cmd(&["INCR", "fwd:0"]));
    assert_eq!(err, "ERR value is not an integer or out of range");
    assert_eq!(q(&mut cons[leader], &["GET", "ctr"]), bulk("10"));

    // Linearizable reads on followers see each write acknowledged just
    // before on the leader, every time.
    for n in 1..=100i64 {
        assert_eq!(q(&mut cons[leader], &["INCR", "lin"]), Value::Int(n));
        let f = followers[n as usize % 2];
        assert_eq!(
            q(&mut cons[f], &["GET", "lin"]),
            bulk(&n.to_string()),
            "a linearizable GET on follower {} missed write {n}",
            c.node(f).id
        );
    }

    // READONLY reads on a follower see the writes eventually.
    for &f in &followers {
        let mut ro = c.node(f).readonly_conn();
        assert_eq!(
            q(&mut cons[leader], &["SET", "ro", &format!("v{f}")]),
            Value::Okay
        );
        eventually(EVENTUALLY, "a READONLY read to see the write", || {
            (q(&mut ro, &["GET", "ro"]) == bulk(&format!("v{f}"))).then_some(())
        });
        eventually(EVENTUALLY, "a READONLY read to see the counter", || {
            (q(&mut ro, &["GET", "lin"]) == bulk("100")).then_some(())
        });
        let info = text(&q(&mut ro, &["INFO", "replication"]));
        assert_eq!(field(&info, "role").as_deref(), Some("slave"), "{info}");
    }
    let info = text(&q(&mut cons[leader], &["INFO", "replication"]));
    assert_eq!(field(&info, "role").as_deref(), Some("master"), "{info}");
    let raft = text(&q(&mut cons[followers[0]], &["INFO", "raft"]));
    assert_eq!(field(&raft, "raft_role").as_deref(), Some("follower"));
    assert_eq!(
        field(&raft, "raft_leader_id").as_deref(),
        Some(c.node(leader).id.as_str())
    );
}

#[test]
fn nodes_on_one_thread_each_forward_replicate_and_restart() {
    // `--threads 1` runs each node on a current-thread runtime: every task
    // on the main thread, the WAL writer and snapshots on their own.
    let (mut c, leader) = three(&["--threads", "1", "--snapshot-threshold", "20"]);
    let follower = c.followers(leader)[0];
    let mut con = c.conn(follower);
    set_many(&mut con, "one", 300);
    for n in 1..=60 {
        assert_eq!(q(&mut con, &["INCR", "counter"]), Value::Int(n));
    }
    drop(con);
    for i in 0..3 {
        assert_all_there(&mut c.conn(i), "one", 300, &c.node(i).id);
    }
    for i in 0..3 {
        c.node_mut(i).terminate();
    }
    for i in 0..3 {
        c.node_mut(i).start();
    }
    let leader = c.wait_leader();
    let mut con = c.conn(leader);
    assert_all_there(&mut con, "one", 300, "the leader after a restart");
    assert_eq!(q(&mut con, &["GET", "counter"]), bulk("60"));
}

#[test]
fn mset_is_atomic_for_readers_on_other_nodes() {
    let (mut c, leader) = three(&[]);
    let followers = c.followers(leader);
    let keys: Vec<String> = (0..50).map(|i| format!("atomic:{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Readers on both followers: local (READONLY) reads, which see every
    // applied entry, and linearizable ones.
    let mut readers = Vec::new();
    for (n, &f) in followers.iter().enumerate() {
        let mut con = if n == 0 {
            c.node(f).readonly_conn()
        } else {
            c.node(f).conn()
        };
        let (keys, stop) = (keys.clone(), stop.clone());
        readers.push(thread::spawn(move || {
            let mut reads = 0;
            let mut torn = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let values: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query(&mut con).expect("MGET");
                reads += 1;
                if values.iter().any(|v| *v != values[0]) && torn.len() < 5 {
                    torn.push(values);
                }
            }
            (reads, torn)
        }));
    }
    let mut con = c.conn(leader);
    for round in 1..=40 {
        let mut m = redis::cmd("MSET");
        for k in &keys {
            m.arg(k).arg(format!("round-{round}"));
        }
        assert_eq!(m.query::<Value>(&mut con).unwrap(), Value::Okay);
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let (reads, torn) = r.join().expect("a reader");
        assert!(reads > 0);
        assert!(
            torn.is_empty(),
            "a reader saw a partly applied MSET: {torn:?}"
        );
    }
    // After the last MSET every node has all of it.
    for i in 0..3 {
        let mut con = c.conn(i);
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
        assert!(
            values.iter().all(|v| v.as_deref() == Some("round-40")),
            "node {}: {values:?}",
            c.node(i).id
        );
    }
}

#[test]
fn raft_transfer_moves_leadership() {
    let (mut c, leader) = three(&[]);
    let target = c.followers(leader)[0];
    let target_id = c.node(target).id.clone();
    let mut con = c.conn(leader);
    assert_eq!(q(&mut con, &["SET", "before", "1"]), Value::Okay);
    assert_eq!(
        q(&mut con, &["RAFT.TRANSFER", &target_id]),
        Value::Okay,
        "RAFT.TRANSFER {target_id}"
    );
    let mut tcon = c.conn(target);
    eventually(EVENTUALLY, "the target to say it leads", || {
        let info = text(&q(&mut tcon, &["INFO", "raft"]));
        (field(&info, "raft_role").as_deref() == Some("leader")).then_some(())
    });
    let now = c.wait_leader();
    assert_eq!(now, target, "the leader after the transfer");
    assert_eq!(q(&mut tcon, &["GET", "before"]), bulk("1"));
    assert_eq!(q(&mut tcon, &["SET", "after", "2"]), Value::Okay);
    // The old leader, now a follower, forwards.
    assert_eq!(q(&mut con, &["SET", "after", "3"]), Value::Okay);
    assert_eq!(q(&mut tcon, &["GET", "after"]), bulk("3"));
    // A transfer to a node that is not a member fails.
    let err = expect_err(&mut tcon, &cmd(&["RAFT.TRANSFER", "nosuch"]));
    assert!(err.starts_with("ERR"), "{err}");
    assert_eq!(c.wait_leader(), target);
    assert_eq!(
        expect_err(&mut tcon, &cmd(&["RAFT.TRANSFER"])),
        "ERR wrong number of arguments for 'raft.transfer' command"
    );
}

#[test]
fn a_follower_leaves_and_a_fresh_node_joins() {
    let (mut c, leader) = three(&[]);
    let followers = c.followers(leader);
    let (gone, stays) = (followers[0], followers[1]);
    let gone_id = c.node(gone).id.clone();
    let mut lcon = c.conn(leader);
    set_many(&mut lcon, "early", 200);

    assert_eq!(q(&mut lcon, &["RAFT.LEAVE", &gone_id]), Value::Okay);
    let status = raft_status(&mut lcon);
    assert!(
        !peer_ids(&status).iter().any(|(id, _)| *id == gone_id),
        "{gone_id} is still listed after RAFT.LEAVE: {status}"
    );
    c.nodes[gone].terminate();
    // Two members now: writes need both.
    assert_eq!(q(&mut lcon, &["SET", "after-leave", "1"]), Value::Okay);

    // A fresh node joins through the remaining follower.
    let via = c.node(stays).peer_addr.clone();
    let new = c.start_joining("n4", &via);
    let new_addr = c.node(new).peer_addr.clone();
    eventually(EVENTUALLY, "the leader to list n4 as a voter", || {
        let status = raft_status(&mut lcon);
        peer_ids(&status)
            .contains(&("n4".to_string(), "voter".to_string()))
            .then_some(())
    });
    // RAFT.JOIN of a node that already joined is idempotent.
    assert_eq!(q(&mut lcon, &["RAFT.JOIN", "n4", &new_addr]), Value::Okay);
    let status = raft_status(&mut lcon);
    let peers = peer_ids(&status);
    assert!(
        peers.contains(&("n4".to_string(), "voter".to_string())),
        "{status}"
    );
    assert!(!peers.iter().any(|(id, _)| *id == gone_id), "{status}");
    assert_eq!(peers.len(), 2, "{status}");

    // The new node serves the earlier keys, locally once caught up.
    let mut ro = c.node(new).readonly_conn();
    eventually(EVENTUALLY, "n4 to catch up", || {
        missing(&mut ro, "early", 200).is_empty().then_some(())
    });
    assert_eq!(q(&mut ro, &["GET", "after-leave"]), bulk("1"));
    let mut ncon = c.conn(new);
    assert_all_there(&mut ncon, "early", 200, "n4 (linearizable)");
    assert_eq!(q(&mut ncon, &["SET", "via-n4", "x"]), Value::Okay);
    assert_eq!(q(&mut lcon, &["GET", "via-n4"]), bulk("x"));
    let info = text(&q(&mut ncon, &["INFO", "raft"]));
    assert_eq!(
        field(&info, "raft_leader_id").as_deref(),
        Some(c.node(leader).id.as_str()),
        "{info}"
    );

    // n4 is a voter: with the other follower gone, the leader and n4
    // still make a quorum.
    c.nodes[stays].kill();
    assert_eq!(q(&mut lcon, &["SET", "quorum-with-n4", "1"]), Value::Okay);
    assert_eq!(q(&mut ncon, &["GET", "quorum-with-n4"]), bulk("1"));

    // n4 restarts (with --join again) as the member it is.
    drop(ro);
    drop(ncon);
    c.nodes[new].terminate();
    c.nodes[new].start();
    let mut ncon = c.conn(new);
    // It answers LOADING until it has applied the cluster's users again.
    let got = eventually(EVENTUALLY, "n4 to serve after its restart", || {
        match cmd(&["GET", "quorum-with-n4"]).query::<Value>(&mut ncon) {
            Err(e) if err_text(&e).starts_with("LOADING") => None,
            other => Some(other.map_err(|e| err_text(&e))),
        }
    });
    assert_eq!(got, Ok(bulk("1")));
    assert_eq!(q(&mut ncon, &["SET", "after-n4-restart", "1"]), Value::Okay);
    let status = raft_status(&mut lcon);
    assert!(
        peer_ids(&status).contains(&("n4".to_string(), "voter".to_string())),
        "{status}"
    );

    // Bad requests.
    let err = expect_err(&mut lcon, &cmd(&["RAFT.JOIN", "n5"]));
    assert_eq!(err, "ERR wrong number of arguments for 'raft.join' command");
    let err = expect_err(&mut lcon, &cmd(&["RAFT.LEAVE"]));
    assert_eq!(
        err,
        "ERR wrong number of arguments for 'raft.leave' command"
    );
}

#[test]
fn killing_the_leader_elects_a_new_one_and_keeps_acknowledged_writes() {
    let (mut c, old) = three(&["--snapshot-threshold", "40"]);
    let mut con = c.conn(old);
    set_many(&mut con, "acked", 300);
    for n in 1..=60 {
        assert_eq!(q(&mut con, &["INCR", "counter"]), Value::Int(n));
    }
    drop(con);
    let rest: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let mut through = c.conn(rest[0]);
    c.nodes[old].kill();
    let started = Instant::now();
    // Writes through a follower meanwhile fail with a retryable error,
    // then succeed once a new leader is elected.
    let mut errors = Vec::new();
    loop {
        match cmd(&["SET", "during-failover", "x"]).query::<Value>(&mut through) {
            Ok(v) => {
                assert_eq!(v, Value::Okay);
                break;
            }
            Err(e) => {
                let text = err_text(&e);
                assert!(
                    ["TRYAGAIN", "CLUSTERDOWN", "TIMEOUT"]
                        .iter()
                        .any(|code| text.starts_with(code)),
                    "a write during the failover failed with {text:?}, not a retryable error"
                );
                if errors.len() < 5 {
                    errors.push(text);
                }
                assert!(
                    started.elapsed() < EVENTUALLY,
                    "writes still fail {EVENTUALLY:?} after the leader died: {errors:?}"
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
    eprintln!(
        "a write went through {:?} after the leader died (errors first: {errors:?})",
        started.elapsed()
    );
    let new = c.wait_leader_among(&rest, None);
    assert_ne!(new, old);
    eprintln!(
        "a new leader {} within {:?} of killing {}",
        c.node(new).id,
        started.elapsed(),
        c.node(old).id
    );
    for &i in &rest {
        let mut con = c.conn(i);
        assert_all_there(&mut con, "acked", 300, &c.node(i).id);
        assert_eq!(q(&mut con, &["GET", "counter"]), bulk("60"));
    }
    // Writes go on, on the new leader and through the other node; enough
    // entries for a snapshot that the old leader may need to catch up.
    let other = rest.iter().copied().find(|&i| i != new).unwrap();
    let mut ncon = c.conn(new);
    let mut ocon = c.conn(other);
    for n in 61..=120 {
        let con = if n % 2 == 0 { &mut ncon } else { &mut ocon };
        assert_eq!(q(con, &["INCR", "counter"]), Value::Int(n));
    }
    assert_eq!(q(&mut ocon, &["SET", "after-crash", "yes"]), Value::Okay);

    // The old leader comes back as a follower and catches up.
    c.nodes[old].start();
    let leader = c.wait_leader();
    assert_ne!(leader, old, "a restarted node does not disrupt the leader");
    let mut ro = c.node(old).readonly_conn();
    eventually(EVENTUALLY, "the restarted node to catch up", || {
        (q(&mut ro, &["GET", "after-crash"]) == bulk("yes")).then_some(())
    });
    assert_eq!(q(&mut ro, &["GET", "counter"]), bulk("120"));
    assert_all_there(&mut ro, "acked", 300, "the restarted node");
}

#[test]
fn restarting_every_node_keeps_all_data() {
    let (mut c, leader) = three(&["--snapshot-threshold", "50"]);
    let mut con = c.conn(leader);
    set_many(&mut con, "durable", 400);
    for n in 1..=120 {
        assert_eq!(q(&mut con, &["INCR", "counter"]), Value::Int(n));
    }
    assert_eq!(q(&mut con, &["SET", "last", "written"]), Value::Okay);
    // Let every node apply everything (and snapshot) before stopping.
    for i in 0..3 {
        let mut ro = c.node(i).readonly_conn();
        eventually(EVENTUALLY, "every node to apply the last write", || {
            (q(&mut ro, &["GET", "last"]) == bulk("written")).then_some(())
        });
    }
    eventually(EVENTUALLY, "a snapshot on the leader", || {
        let info = text(&q(&mut con, &["INFO", "raft"]));
        let s: u64 = field(&info, "raft_snapshot_index")?.parse().ok()?;
        (s > 0).then_some(())
    });
    // Idle clients do not hold a node up on SIGTERM.
    let idle: Vec<redis::Connection> = (0..3).map(|i| c.conn(i)).collect();
    drop(con);
    for i in 0..3 {
        c.nodes[i].terminate();
    }
    drop(idle);
    for i in 0..3 {
        c.nodes[i].start();
    }
    let leader = c.wait_leader();
    for i in 0..3 {
        let mut con = c.conn(i);
        assert_all_there(&mut con, "durable", 400, &c.node(i).id);
        assert_eq!(q(&mut con, &["GET", "counter"]), bulk("120"));
        assert_eq!(q(&mut con, &["GET", "last"]), bulk("written"));
        assert_eq!(q(&mut con, &["DBSIZE"]), Value::Int(402));
    }
    let mut con = c.conn(leader);
    assert_eq!(q(&mut con, &["INCR", "counter"]), Value::Int(121));
    let f = c.followers(leader)[0];
    let mut fcon = c.conn(f);
    assert_eq!(q(&mut fcon, &["SET", "after-restart", "ok"]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "after-restart"]), bulk("ok"));
}

#[test]
fn with_requirepass_a_client_without_auth_cannot_write() {
    let mut c = Cluster::start(3, &["--requirepass", "pw"]);
    let leader = c.wait_leader_among(&[], Some("pw"));
    let noauth = "NOAUTH Authentication required.";
    for i in 0..3 {
        let mut con = c.conn(i);
        assert_eq!(expect_err(&mut con, &cmd(&["SET", "k", "v"])), noauth);
        assert_eq!(expect_err(&mut con, &cmd(&["GET", "k"])), noauth);
        assert_eq!(expect_err(&mut con, &cmd(&["RAFT.LEAVE", "n1"])), noauth);
        assert_eq!(expect_err(&mut con, &cmd(&["RAFT.TRANSFER", "n1"])), noauth);
        assert!(expect_err(&mut con, &cmd(&["AUTH", "nope"])).starts_with("WRONGPASS"));
        assert_eq!(expect_err(&mut con, &cmd(&["FLUSHDB"])), noauth);
    }
    let mut lcon = c.node(leader).conn_with(Some("pw"));
    assert_eq!(
        q(&mut lcon, &["GET", "k"]),
        Value::Nil,
        "nothing was written"
    );
    // Authenticated, a follower forwards writes.
    let f = c.followers(leader)[0];
    let mut fcon = c.conn(f);
    assert_eq!(q(&mut fcon, &["AUTH", "pw"]), Value::Okay);
    assert_eq!(q(&mut fcon, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(q(&mut lcon, &["GET", "k"]), bulk("v"));
    let status = raft_status(&mut lcon);
    assert_eq!(peer_ids(&status).len(), 2);
}

#[test]
fn large_values_are_forwarded_and_replicated() {
    let (mut c, leader) = three(&[]);
    let f = c.followers(leader)[0];
    let mut fcon = c.conn(f);
    // 4 MiB through a follower: forwarded, then replicated to all.
    let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    let ok: Value = redis::cmd("SET")
        .arg("big")
        .arg(&big[..])
        .query(&mut fcon)
        .expect("SET of 4 MiB on a follower");
    assert_eq!(ok, Value::Okay);
    // Three 2 MiB values in one pipeline (more than one log entry).
    let mid: Vec<u8> = vec![b'm'; 2 << 20];
    let mut pipe = redis::pipe();
    for i in 0..3 {
        pipe.cmd("SET").arg(format!("mid{i}")).arg(&mid[..]);
    }
    pipe.cmd("STRLEN").arg("mid2");
    let replies: Vec<Value> = pipe.query(&mut fcon).expect("a 6 MiB pipeline");
    assert_eq!(
        replies,
        vec![Value::Okay, Value::Okay, Value::Okay, Value::Int(2 << 20)]
    );
    for i in 0..3 {
        let mut con = c.conn(i);
        let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
        assert!(got == big, "the 4 MiB value differs on {}", c.node(i).id);
        assert_eq!(q(&mut con, &["STRLEN", "mid0"]), Value::Int(2 << 20));
        let mut ro = c.node(i).readonly_conn();
        eventually(EVENTUALLY, "the follower to apply the large values", || {
            (q(&mut ro, &["STRLEN", "mid2"]) == Value::Int(2 << 20)).then_some(())
        });
    }
}

#[test]
fn lease_reads_on_followers_see_acknowledged_writes() {
    let (mut c, leader) = three(&["--read-mode", "lease"]);
    let followers = c.followers(leader);
    let mut lcon = c.conn(leader);
    let mut fcons: Vec<redis::Connection> = followers.iter().map(|&f| c.conn(f)).collect();
    for n in 1..=100i64 {
        assert_eq!(q(&mut lcon, &["INCR", "lin"]), Value::Int(n));
        let k = n as usize % 2;
        assert_eq!(
            q(&mut fcons[k], &["GET", "lin"]),
            bulk(&n.to_string()),
            "a lease read on follower {} missed write {n}",
            c.node(followers[k]).id
        );
        assert_eq!(q(&mut lcon, &["GET", "lin"]), bulk(&n.to_string()));
    }
}

#[test]
fn without_a_quorum_writes_fail_with_an_error_and_local_reads_still_work() {
    let (mut c, leader) = three(&["--command-timeout-ms", "1000"]);
    let mut lcon = c.conn(leader);
    assert_eq!(q(&mut lcon, &["SET", "k", "v"]), Value::Okay);
    let followers = c.followers(leader);
    for &f in &followers {
        let mut ro = c.node(f).readonly_conn();
        eventually(EVENTUALLY, "the followers to apply the write", || {
            (q(&mut ro, &["GET", "k"]) == bulk("v")).then_some(())
        });
    }
    for &f in &followers {
        c.nodes[f].kill();
    }
    // LOADING: a restarted node that has not yet applied the users.
    let retryable = |text: &str| {
        ["TRYAGAIN", "CLUSTERDOWN", "TIMEOUT", "LOADING"]
            .iter()
            .any(|code| text.starts_with(code))
    };
    let started = Instant::now();
    let err = expect_err(&mut lcon, &cmd(&["SET", "k", "w"]));
    let took = started.elapsed();
    assert!(retryable(&err), "a write without a quorum: {err}");
    assert!(
        took < Duration::from_secs(5),
        "the write failed only after {took:?}"
    );
    let started = Instant::now();
    let err = expect_err(&mut lcon, &cmd(&["GET", "k"]));
    let took = started.elapsed();
    assert!(
        retryable(&err),
        "a linearizable read without a quorum: {err}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the read failed only after {took:?}"
    );
    let mut ro = c.node(leader).readonly_conn();
    assert_eq!(q(&mut ro, &["GET", "k"]), bulk("v"), "a local read");
    assert_eq!(q(&mut lcon, &["PING"]), Value::SimpleString("PONG".into()));

    // A follower back: the cluster has a quorum again.
    c.nodes[followers[0]].start();
    let mut con = c.conn(followers[0]);
    let started = Instant::now();
    loop {
        match cmd(&["SET", "k", "back"]).query::<Value>(&mut con) {
            Ok(v) => {
                assert_eq!(v, Value::Okay);
                break;
            }
            Err(e) => {
                let text = err_text(&e);
                assert!(retryable(&text), "{text}");
                assert!(started.elapsed() < EVENTUALLY, "writes still fail: {text}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let now = c.wait_leader();
    let mut con = c.conn(now);
    assert_eq!(q(&mut con, &["GET", "k"]), bulk("back"));
}

#[test]
fn a_node_of_another_cluster_can_neither_join_nor_write() {
    let (mut c, leader) = three(&["--command-timeout-ms", "1500"]);
    let mut lcon = c.conn(leader);
    assert_eq!(q(&mut lcon, &["SET", "k", "mine"]), Value::Okay);
    let ours = c.name.clone();
    c.name = format!("{ours}-stranger");
    let via = c.node(leader).peer_addr.clone();
    let stranger = c.start_joining("stranger", &via);
    c.name = ours;
    let stranger_addr = c.node(stranger).peer_addr.clone();

    // Its own --join is refused, and so is an operator's RAFT.JOIN.
    let err = expect_err(&mut lcon, &cmd(&["RAFT.JOIN", "stranger", &stranger_addr]));
    assert!(err.contains("cluster"), "{err}");
    thread::sleep(Duration::from_millis(500));
    let status = raft_status(&mut lcon);
    assert!(
        !peer_ids(&status).iter().any(|(id, _)| id == "stranger"),
        "the stranger became a member: {status}"
    );
    // It has no leader (nor the cluster's users: it serves nothing), so
    // it cannot write anything anywhere.
    let mut scon = c.conn(stranger);
    let err = expect_err(&mut scon, &cmd(&["SET", "k", "theirs"]));
    assert!(
        err.starts_with("CLUSTERDOWN") || err.starts_with("TIMEOUT") || err.starts_with("LOADING"),
        "{err}"
    );
    assert_eq!(q(&mut lcon, &["GET", "k"]), bulk("mine"));
}
