//! Key expiry on real processes: a lock taken with `SET lock token NX PX
//! ms` on three `raft-kv serve` nodes. Every node sees it, no one can take
//! it again while it is held, it is gone on every node once its time is
//! up without any client write (the leader's time entry removes it), and
//! a leader killed with SIGKILL while it is held does not let it be
//! granted twice.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use redis::Value;

/// How early a key may be gone, measured on this machine's clock (the
/// nodes share it): a command is applied at a log time at most about a
/// round older than its proposal, so its deadline may be that much before
/// "sent + time to live".
const EARLY_SLACK: Duration = Duration::from_millis(250);

/// Whether `reply` to a write is an error a client retries.
fn retryable(e: &redis::RedisError) -> bool {
    let text = err_text(e);
    ["TRYAGAIN", "CLUSTERDOWN", "TIMEOUT", "MOVED"]
        .iter()
        .any(|code| text.starts_with(code))
        || e.is_io_error()
}

/// `SET lock token NX PX ms` on `con`: `Some(true)` if granted, `Some(false)`
/// if held by someone, `None` on a retryable error.
fn take(con: &mut redis::Connection, token: &str, ms: u64) -> Option<bool> {
    match cmd(&["SET", "lock", token, "NX", "PX", &ms.to_string()]).query::<Value>(con) {
        Ok(Value::Okay) => Some(true),
        Ok(Value::Nil) => Some(false),
        Ok(other) => panic!("SET lock NX PX answered {other:?}"),
        Err(e) if retryable(&e) => None,
        Err(e) => panic!("SET lock NX PX failed: {}", err_text(&e)),
    }
}

#[test]
fn a_lock_with_a_time_to_live_is_held_then_gone_on_every_node() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader();
    let follower = c.followers(leader)[0];
    let ttl = Duration::from_millis(3000);

    // Taken through a follower (forwarded to the leader).
    let mut fcon = c.conn(follower);
    let sent = Instant::now();
    assert_eq!(take(&mut fcon, "tok", 3000), Some(true));

    // Every node sees it, with its time to live; no node grants it again.
    let mut local: Vec<redis::Connection> = (0..3).map(|i| c.node(i).readonly_conn()).collect();
    for i in 0..3 {
        let mut con = c.conn(i);
        assert_eq!(q(&mut con, &["GET", "lock"]), bulk("tok"), "on node {i}");
        match q(&mut con, &["PTTL", "lock"]) {
            Value::Int(ms) => assert!((1..=3000).contains(&ms), "PTTL {ms} on node {i}"),
            other => panic!("PTTL answered {other:?}"),
        }
        assert_eq!(take(&mut con, "thief", 3000), Some(false), "on node {i}");
    }
    assert_eq!(q(&mut fcon, &["GET", "lock"]), bulk("tok"), "not stolen");

    // No client writes from here: the key goes on every node, through the
    // log, once its time is up, and not before.
    let mut gone_at = [None; 3];
    while gone_at.iter().any(Option::is_none) {
        assert!(
            sent.elapsed() < ttl + Duration::from_secs(5),
            "the lock is still there {:?} after it was taken (gone: {gone_at:?})\n{}",
            sent.elapsed(),
            c.logs()
        );
        for (i, con) in local.iter_mut().enumerate() {
            if gone_at[i].is_none() && q(con, &["EXISTS", "lock"]) == Value::Int(0) {
                gone_at[i] = Some(sent.elapsed());
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!("a lock of {ttl:?}: gone on the nodes after {gone_at:?}");
    for (i, at) in gone_at.iter().enumerate() {
        let at = at.expect("gone");
        assert!(
            at + EARLY_SLACK >= ttl,
            "gone on node {i} after {at:?} only"
        );
    }
    for i in 0..3 {
        assert_eq!(q(&mut c.conn(i), &["TTL", "lock"]), Value::Int(-2));
    }
    // Free again.
    assert_eq!(take(&mut fcon, "next", 60_000), Some(true));
    assert_eq!(q(&mut fcon, &["DEL", "lock"]), Value::Int(1));
}

#[test]
fn a_lock_is_not_granted_twice_across_a_leader_kill() {
    let mut c = Cluster::start(3, &[]);
    let old = c.wait_leader();
    let ttl = Duration::from_millis(4000);
    let mut con = c.conn(old);
    let sent = Instant::now();
    assert_eq!(take(&mut con, "tok", 4000), Some(true));
    drop(con);
    c.nodes[old].kill();
    let rest: Vec<usize> = (0..3).filter(|&i| i != old).collect();

    // The survivors try to take it all the time: refused (or a retryable
    // error during the election) while it is held, granted once after. An
    // attempt that failed with a retryable error may still have taken it:
    // each attempt has a token of its own, and the time the holder's SET
    // was applied is read back from its PTTL.
    let mut cons: Vec<redis::Connection> = rest.iter().map(|&i| c.conn(i)).collect();
    let (mut refused, mut tries) = (0, 0);
    const THIEF_TTL_MS: u64 = 60_000;
    loop {
        assert!(
            sent.elapsed() < ttl + Duration::from_secs(15),
            "the lock was never granted again ({refused} refusals)\n{}",
            c.logs()
        );
        let mut granted = false;
        for con in cons.iter_mut() {
            tries += 1;
            match take(con, &format!("thief-{tries}"), THIEF_TTL_MS) {
                Some(true) => granted = true,
                Some(false) => refused += 1,
                None => {}
            }
            if granted {
                break;
            }
        }
        let held_by_thief = sent.elapsed() > ttl + Duration::from_secs(2)
            && matches!(
                cmd(&["GET", "lock"]).query::<Option<String>>(&mut cons[0]),
                Ok(Some(t)) if t.starts_with("thief-")
            );
        if granted || held_by_thief {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let leader = c.wait_leader_among(&rest, None);
    let mut con = c.conn(leader);
    let holder = text(&q(&mut con, &["GET", "lock"]));
    assert!(holder.starts_with("thief-"), "held by {holder:?}");
    let Value::Int(left_ms) = q(&mut con, &["PTTL", "lock"]) else {
        panic!("no PTTL");
    };
    let granted_after = sent
        .elapsed()
        .saturating_sub(Duration::from_millis(THIEF_TTL_MS - left_ms as u64));
    eprintln!(
        "a lock of {ttl:?} held across a leader kill: refused {refused} times, granted again \
         about {granted_after:?} after it was taken (to {holder})"
    );
    assert!(
        granted_after + EARLY_SLACK >= ttl,
        "the lock was granted twice: again about {granted_after:?} after it was taken, within \
         its {ttl:?}"
    );
    assert!(refused > 0, "the lock was tried while held");
}
