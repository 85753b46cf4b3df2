//! The clients: each on its own thread, connected to a random node (a new
//! one after any connection error), sending GET, SET, SET NX and CAS on a
//! few keys with values no other client writes, and recording every
//! operation with its invocation and completion times (microseconds since
//! the run started) and its outcome.
//!
//! A quarter of the SETs carry a time to live (`SET k v PX 100..1000`).
//! Such a write is recorded with the open expiry of its value
//! ([`Input::Expire`]), invoked with it: the value may vanish at any time
//! afterwards, or never. When is not checked (the log's time follows the
//! leader's clock, which the clock-skew nemesis moves), but a value seen
//! gone must stay gone, and an expiry must not remove a later value.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raft_lincheck::{Input, Operation, Output};

use crate::net::Net;
use crate::plot::{Outcome, Timing};
use crate::resp::{Conn, Reply};
use crate::Rng;

/// How long a client waits for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a client waits for a reply before the outcome is unknown
/// (longer than the nodes' `--command-timeout-ms`).
pub const REPLY_TIMEOUT: Duration = Duration::from_millis(2000);

/// The times to live of expiring writes, in milliseconds.
pub const TTL_MS: std::ops::RangeInclusive<u64> = 100..=1000;

/// What the clients share.
pub struct Shared {
    /// The network the nodes are on.
    pub net: Arc<Net>,
    /// How many nodes.
    pub nodes: usize,
    /// How many keys.
    pub keys: u64,
    /// Whether reads are local (READONLY): possibly stale, the bug mode.
    pub readonly: bool,
    /// Time zero of the run.
    pub started: Instant,
    /// Set to stop the clients.
    pub stop: AtomicBool,
    /// Every operation that was sent, completed or not.
    pub history: Mutex<Vec<Operation>>,
    /// Every client operation's times and outcome, including those the
    /// history leaves out (they certainly had no effect).
    pub timings: Mutex<Vec<Timing>>,
    /// The longest time to live sent, in milliseconds.
    pub longest_ttl_ms: AtomicU64,
}

impl Shared {
    /// Microseconds since the start of the run.
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Records an operation's times and outcome.
    fn record(&self, call: u64, ret: u64, outcome: Outcome) {
        let timing = Timing { call, ret, outcome };
        self.timings
            .lock()
            .expect("no panics while held")
            .push(timing);
    }

    /// How many operations certainly had no effect.
    pub fn failed(&self) -> u64 {
        let timings = self.timings.lock().expect("no panics while held");
        timings
            .iter()
            .filter(|t| t.outcome == Outcome::Failed)
            .count() as u64
    }
}

/// The key name of key `k`.
pub fn key_name(k: u64) -> String {
    format!("chaos:{k}")
}

/// A value read back: the number a client wrote, or one no client writes
/// (`u64::MAX`), which the checker then refutes.
pub fn parse_value(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// A connection to node `i`, in READONLY mode if asked.
pub fn connect(shared: &Shared, i: usize, readonly: bool) -> Option<Conn> {
    let stream = shared.net.connect(i, CONNECT_TIMEOUT).ok()?;
    let mut con = Conn::new(stream, REPLY_TIMEOUT).ok()?;
    if readonly && con.call(&[b"READONLY"]).ok()? != Reply::Simple("OK".into()) {
        return None;
    }
    Some(con)
}

/// Whether an error reply to a write says it certainly had no effect.
fn certainly_failed(error: &str) -> bool {
    error.starts_with("MOVED") || error.starts_with("LOADING")
}

/// Runs client `id` until `shared.stop` is set.
pub fn client(id: u64, seed: u64, shared: Arc<Shared>) {
    let mut rng = Rng::new(seed ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut next = id * 1_000_000_000;
    let mut last_seen = vec![None; shared.keys as usize];
    let mut con: Option<Conn> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(c) = con.as_mut() else {
            con = connect(
                &shared,
                rng.below(shared.nodes as u64) as usize,
                shared.readonly,
            );
            if con.is_none() {
                thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        let k = rng.below(shared.keys);
        next += 1;
        let (key, value) = (key_name(k).into_bytes(), next.to_string().into_bytes());
        let set_nx = || vec![b"SET".to_vec(), key.clone(), value.clone(), b"NX".to_vec()];
        let mut ttl_ms = None;
        let (input, args) = match (rng.below(10), last_seen[k as usize]) {
            (0..=3, _) => (Input::Read, vec![b"GET".to_vec(), key.clone()]),
            (4..=6, _) => {
                let mut set = vec![b"SET".to_vec(), key.clone(), value.clone()];
                if rng.below(4) == 0 {
                    let ttl = TTL_MS.start() + rng.below(TTL_MS.end() - TTL_MS.start() + 1);
                    set.extend([b"PX".to_vec(), ttl.to_string().into_bytes()]);
                    ttl_ms = Some(ttl);
                }
                (Input::Write(next), set)
            }
            (8.., Some(expected)) => (
                Input::Cas {
                    expected: Some(expected),
                    new: next,
                },
                vec![
                    b"CAS".to_vec(),
                    key.clone(),
                    expected.to_string().into_bytes(),
                    value.clone(),
                ],
            ),
            // CAS from absent: SET NX.
            _ => (
                Input::Cas {
                    expected: None,
                    new: next,
                },
                set_nx(),
            ),
        };
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        if let Some(ttl) = ttl_ms {
            shared.longest_ttl_ms.fetch_max(ttl, Ordering::Relaxed);
        }
        let call = shared.now();
        let reply = c.call(&args);
        let ret = shared.now();
        let output = match (&input, &reply) {
            (_, Err(_)) => {
                con = None;
                None
            }
            (_, Ok(Reply::Error(e))) if input == Input::Read || certainly_failed(e) => {
                shared.record(call, ret, Outcome::Failed);
                continue;
            }
            (_, Ok(Reply::Error(_))) => None,
            (Input::Read, Ok(Reply::Bulk(v))) => Some(Output::Read(v.as_deref().map(parse_value))),
            (Input::Write(_), Ok(Reply::Simple(s))) if s == "OK" => Some(Output::Write),
            (Input::Cas { expected: None, .. }, Ok(Reply::Simple(s))) if s == "OK" => {
                Some(Output::Cas(true))
            }
            (Input::Cas { expected: None, .. }, Ok(Reply::Bulk(None))) => Some(Output::Cas(false)),
            (Input::Cas { .. }, Ok(Reply::Int(n))) => Some(Output::Cas(*n == 1)),
            (_, Ok(other)) => {
                // A reply of the wrong kind: recorded as a read of a value
                // nobody wrote, so that the check fails and shows it.
                eprintln!("client {id}: unexpected reply {other:?} to {input}");
                Some(Output::Read(Some(u64::MAX)))
            }
        };
        match (input, output) {
            (Input::Read, None) => {
                shared.record(call, ret, Outcome::Failed);
                continue;
            }
            (_, Some(Output::Read(v))) => last_seen[k as usize] = v,
            (Input::Write(v), Some(_)) | (Input::Cas { new: v, .. }, Some(Output::Cas(true))) => {
                last_seen[k as usize] = Some(v)
            }
            _ => {}
        }
        let outcome = if output.is_some() {
            Outcome::Ok
        } else {
            Outcome::Unknown
        };
        shared.record(call, ret, outcome);
        let mut history = shared.history.lock().expect("no panics while held");
        history.push(Operation {
            client: id,
            key: k,
            input,
            call,
            ret: output.map(|o| (ret, o)),
        });
        if let (Some(_), Input::Write(v)) = (ttl_ms, input) {
            // The value may expire at any time from the write's invocation.
            history.push(Operation::open(id, k, Input::Expire(v), call));
        }
    }
}
