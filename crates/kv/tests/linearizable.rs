//! Clients of a 3-node raft-kv cluster, pipelining GET, SET, SET NX and
//! CAS on a few keys, and HGET, HSET and HSETNX on a few fields of one
//! hash, through every node while the leader is killed (SIGKILL) and
//! restarted and a follower is stopped and restarted: the history they
//! observe must be linearizable (checked by raft-lincheck). Each string
//! key, and each field of the hash, is a register of its own: HSET writes
//! it, HGET reads it, HSETNX is a compare-and-set from absent.
//!
//! `RAFT_KV_LIN_READONLY=1` makes the clients use READONLY (local, possibly
//! stale) reads: the check must then fail, which shows it can.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use raft_lincheck::{Input, Operation, Output};
use redis::Value;

/// String keys: registers `0..KEYS`.
const KEYS: u64 = 3;
/// Fields of the hash [`HASH`]: registers `KEYS..KEYS + FIELDS`.
const FIELDS: u64 = 3;
/// The hash whose fields are registers.
const HASH: &str = "lin:hash";
const CLIENTS: u64 = 4;

/// A small deterministic generator (xorshift), one per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key(k: u64) -> String {
    format!("lin:{k}")
}

/// The field of [`HASH`] that register `k` (at least [`KEYS`]) is.
fn field(k: u64) -> String {
    format!("f{}", k - KEYS)
}

fn parse_value(v: &Value) -> Option<u64> {
    match v {
        Value::Nil => None,
        Value::BulkString(b) => Some(
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("a value no client wrote: {b:?}")),
        ),
        other => panic!("unexpected GET or HGET reply {other:?}"),
    }
}

/// Records an operation without a reply: a write stays open (it may or may
/// not have taken effect); a read had no effect and is dropped.
fn open(history: &mut Vec<Operation>, client: u64, key: u64, input: Input, call: u64) {
    if input != Input::Read {
        history.push(Operation {
            client,
            key,
            input,
            call,
            ret: None,
        });
    }
}

/// One client: pipelines of 1 to 3 operations through a random node until
/// `stop`; every operation is recorded with the pipeline's interval.
fn client(
    id: u64,
    urls: Vec<String>,
    started: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Operation>>>,
    readonly: bool,
) -> (usize, usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((id + 1) * 0x1000_0000_01B3));
    let mut next_value = id * 1_000_000;
    let mut con: Option<redis::Connection> = None;
    let (mut completed, mut completed_in_hash) = (0, 0);
    let now = || started.elapsed().as_micros() as u64;
    while !stop.load(Ordering::Relaxed) {
        if con.is_none() {
            let url = &urls[rng.below(urls.len() as u64) as usize];
            let c = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)));
            match c {
                Ok(mut c) => {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                    if readonly {
                        let _: redis::RedisResult<Value> = redis::cmd("READONLY").query(&mut c);
                    }
                    con = Some(c);
                }
                Err(_) => {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let mut pipe = redis::pipe();
        let mut ops = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let k = rng.below(KEYS + FIELDS);
            let input = if k >= KEYS {
                // A field of the hash: HGET, HSET, HSETNX.
                match rng.below(10) {
                    0..4 => {
                        pipe.cmd("HGET").arg(HASH).arg(field(k));
                        Input::Read
                    }
                    4..8 => {
                        next_value += 1;
                        pipe.cmd("HSET").arg(HASH).arg(field(k)).arg(next_value);
                        Input::Write(next_value)
                    }
                    _ => {
                        next_value += 1;
                        pipe.cmd("HSETNX").arg(HASH).arg(field(k)).arg(next_value);
                        Input::Cas {
                            expected: None,
                            new: next_value,
                        }
                    }
                }
            } else {
                match rng.below(10) {
                    0..4 => {
                        pipe.cmd("GET").arg(key(k));
                        Input::Read
                    }
                    4..7 => {
                        next_value += 1;
                        pipe.cmd("SET").arg(key(k)).arg(next_value);
                        Input::Write(next_value)
                    }
                    7 => {
                        next_value += 1;
                        pipe.cmd("SET").arg(key(k)).arg(next_value).arg("NX");
                        Input::Cas {
                            expected: None,
                            new: next_value,
                        }
                    }
                    _ => {
                        // Expect a value this client may have written lately.
                        let expected = next_value - rng.below(3).min(next_value % 1_000_000);
                        next_value += 1;
                        pipe.cmd("CAS").arg(key(k)).arg(expected).arg(next_value);
                        Input::Cas {
                            expected: Some(expected),
                            new: next_value,
                        }
                    }
                }
            };
            ops.push((k, input));
        }
        let call = now();
        let replies: redis::RedisResult<Vec<Value>> = pipe.query(con.as_mut().expect("connected"));
        let ret = now();
        let mut h = history.lock().expect("no panics while held");
        match replies {
            Ok(replies) => {
                assert_eq!(replies.len(), ops.len(), "one reply per command");
                for ((k, input), reply) in ops.into_iter().zip(replies) {
                    // An error reply inside a pipeline: the command may or
                    // may not have taken effect (a read had none).
                    if let Value::ServerError(_) = reply {
                        open(&mut h, id, k, input, call);
                        continue;
                    }
                    let in_hash = k >= KEYS;
                    let output = match input {
                        Input::Read => Output::Read(parse_value(&reply)),
                        Input::Write(_) if in_hash => {
                            // The number of fields HSET added: 0 or 1.
                            assert!(
                                matches!(reply, Value::Int(0 | 1)),
                                "HSET of one field replies 0 or 1: {reply:?}"
                            );
                            Output::Write
                        }
                        Input::Write(_) => {
                            assert_eq!(reply, Value::Okay, "SET replies OK");
                            Output::Write
                        }
                        // HSETNX: 1 if it set the field.
                        Input::Cas { expected: None, .. } if in_hash => {
                            Output::Cas(reply == Value::Int(1))
                        }
                        Input::Cas { expected: None, .. } => Output::Cas(reply == Value::Okay),
                        Input::Cas { .. } => Output::Cas(reply == Value::Int(1)),
                        Input::Expire(_) => unreachable!("this test sends no time to live"),
                    };
                    completed += 1;
                    if in_hash {
                        completed_in_hash += 1;
                    }
                    h.push(Operation {
                        client: id,
                        key: k,
                        input,
                        call,
                        ret: Some((ret, output)),
                    });
                }
            }
            Err(_) => {
                // The node went away or answered with an error: every
                // write of the pipeline stays open; reads are dropped.
                for (k, input) in ops {
                    open(&mut h, id, k, input, call);
                }
                con = None;
            }
        }
    }
    (completed, completed_in_hash)
}

#[test]
fn histories_through_every_node_are_linearizable_across_leader_kills() {
    let readonly = std::env::var("RAFT_KV_LIN_READONLY").is_ok_and(|v| v == "1");
    let mut c = Cluster::start(
        3,
        &[
            "--snapshot-threshold",
            "300",
            "--command-timeout-ms",
            "2000",
        ],
    );
    c.wait_leader();
    let urls: Vec<String> = c.nodes.iter().map(|n| n.url(None)).collect();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (urls, stop, history) = (urls.clone(), stop.clone(), history.clone());
            thread::spawn(move || client(id, urls, started, stop, history, readonly))
        })
        .collect();

    // Faults: the leader killed and restarted, twice; then a follower
    // stopped and restarted.
    for _ in 0..2 {
        thread::sleep(Duration::from_millis(1200));
        let leader = c.wait_leader();
        c.nodes[leader].kill();
        thread::sleep(Duration::from_millis(800));
        c.nodes[leader].start();
    }
    thread::sleep(Duration::from_millis(800));
    let leader = c.wait_leader();
    let follower = c.followers(leader)[0];
    c.nodes[follower].terminate();
    thread::sleep(Duration::from_millis(600));
    c.nodes[follower].start();
    thread::sleep(Duration::from_millis(1200));

    stop.store(true, Ordering::Relaxed);
    let (completed, completed_in_hash) = clients
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let ops = history.lock().expect("clients are done").clone();
    let open = ops.iter().filter(|o| o.ret.is_none()).count();
    eprintln!(
        "{} operations ({completed} completed, {completed_in_hash} of them on the hash's \
         fields, {open} open) in {:.1} s",
        ops.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        completed > 500,
        "too few operations completed ({completed}) for the check to mean much\n{}",
        c.logs()
    );
    assert!(
        completed_in_hash > 100,
        "too few operations on the hash's fields completed ({completed_in_hash})"
    );
    if let Err(e) = raft_lincheck::check(&ops) {
        panic!(
            "the history of {} operations is not linearizable:\n{e}",
            ops.len()
        );
    }
}
