//! The clients: each on its own thread, connected to a random node (a new
//! one after any connection error), sending GET, SET, SET NX, CAS and
//! transactions (MULTI/EXEC, WATCH) on a few keys with values no other
//! client writes, and recording every operation with its invocation and
//! completion times (microseconds since the run started) and its outcome.
//!
//! A quarter of the SETs carry a time to live (`SET k v PX 100..1000`).
//! Such a write is recorded with the open expiry of its value
//! ([`Input::Expire`]), invoked with it: the value may vanish at any time
//! afterwards, or never. When is not checked (the log's time follows the
//! leader's clock, which the clock-skew nemesis moves), but a value seen
//! gone must stay gone, and an expiry must not remove a later value.

use std::fmt;
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

/// The most anomalies kept (the report shows the first five).
const MAX_ANOMALIES: usize = 100;

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
    /// How many transactions EXEC answered.
    pub transactions: AtomicU64,
    /// What went wrong that no key's history shows (a reply of the wrong
    /// kind, a transaction seen half done), one line each.
    pub anomalies: Mutex<Vec<String>>,
}

impl Shared {
    /// How many keys the clients use: their single keys and the two pair
    /// keys after them.
    pub fn all_keys(&self) -> u64 {
        self.keys + 2
    }

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

/// What one step of a client did.
#[derive(Default)]
struct Step {
    /// One entry per key it touched: the key, what was asked of it, and
    /// the output if it is known (`None`: the outcome is unknown).
    ops: Vec<(u64, Input, Option<Output>)>,
    /// Whether it certainly had no effect (kept out of the history).
    failed: bool,
    /// Whether the connection is to be dropped: it broke, or is left in a
    /// state the client does not know (inside MULTI, or watching).
    broken: bool,
    /// The time to live of a SET that had one, in milliseconds.
    ttl_ms: Option<u64>,
    /// Whether it was a transaction that EXEC answered.
    transaction: bool,
    /// What went wrong that no key's history shows: a reply of the wrong
    /// kind, or a transaction seen half done.
    anomaly: Option<String>,
}

impl Step {
    fn failed(broken: bool) -> Step {
        Step {
            failed: true,
            broken,
            ..Step::default()
        }
    }

    fn one(key: u64, input: Input, output: Option<Output>, broken: bool) -> Step {
        Step {
            ops: vec![(key, input, output)],
            broken,
            ..Step::default()
        }
    }

    fn unexpected(mut self, what: &str, reply: &impl fmt::Debug) -> Step {
        self.anomaly = Some(format!("unexpected reply {reply:?} to {what}"));
        self.broken = true;
        self
    }
}

/// Runs client `id` until `shared.stop` is set: mostly single commands on
/// key `0..keys`; one step in ten is a transaction, either a CAS written
/// as WATCH, GET, MULTI, SET, EXEC on one of those keys, or a write or
/// read of the two pair keys (`keys` and `keys + 1`) in one MULTI/EXEC,
/// which always hold the same value unless a transaction is seen half
/// done.
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
        let pick = rng.below(10);
        let call = shared.now();
        let step = match (pick, last_seen[k as usize], rng.below(2) == 0) {
            (9, Some(expected), true) => watch_cas(c, k, expected, next),
            (9, _, false) => pair_write(c, &shared, next),
            (9, _, true) => pair_read(c, &shared),
            _ => single(c, &mut rng, &shared, k, next, pick, last_seen[k as usize]),
        };
        let ret = shared.now();
        if step.broken {
            con = None;
        }
        if let Some(anomaly) = &step.anomaly {
            eprintln!("client {id}: {anomaly}");
            let mut anomalies = shared.anomalies.lock().expect("no panics while held");
            // The report shows the first few; a run gone wrong keeps no more.
            if anomalies.len() < MAX_ANOMALIES {
                anomalies.push(format!(
                    "client {id} at {:.3} s: {anomaly}",
                    call as f64 / 1e6
                ));
            }
        }
        if step.failed {
            shared.record(call, ret, Outcome::Failed);
            continue;
        }
        if step.transaction {
            shared.transactions.fetch_add(1, Ordering::Relaxed);
        }
        for &(key, input, output) in &step.ops {
            let Some(seen) = last_seen.get_mut(key as usize) else {
                continue;
            };
            match (input, output) {
                (_, Some(Output::Read(v))) => *seen = v,
                (Input::Write(v), Some(_))
                | (Input::Cas { new: v, .. }, Some(Output::Cas(true))) => *seen = Some(v),
                _ => {}
            }
        }
        let outcome = if step.ops.iter().all(|(_, _, output)| output.is_some()) {
            Outcome::Ok
        } else {
            Outcome::Unknown
        };
        shared.record(call, ret, outcome);
        let mut history = shared.history.lock().expect("no panics while held");
        for (key, input, output) in step.ops {
            history.push(Operation {
                client: id,
                key,
                input,
                call,
                ret: output.map(|o| (ret, o)),
            });
            if let (Some(_), Input::Write(v)) = (step.ttl_ms, input) {
                // The value may expire at any time from the write's
                // invocation.
                history.push(Operation::open(id, key, Input::Expire(v), call));
            }
        }
    }
}

/// One command on key `key`: GET, SET (a quarter with a time to live),
/// SET NX, or CAS from the value last seen.
fn single(
    c: &mut Conn,
    rng: &mut Rng,
    shared: &Shared,
    key: u64,
    value: u64,
    pick: u64,
    seen: Option<u64>,
) -> Step {
    let (name, value_bytes) = (key_name(key).into_bytes(), value.to_string().into_bytes());
    let mut ttl_ms = None;
    let (input, args) = match (pick, seen) {
        (0..=3, _) => (Input::Read, vec![b"GET".to_vec(), name]),
        (4..=6, _) => {
            let mut set = vec![b"SET".to_vec(), name, value_bytes];
            if rng.below(4) == 0 {
                let ttl = TTL_MS.start() + rng.below(TTL_MS.end() - TTL_MS.start() + 1);
                set.extend([b"PX".to_vec(), ttl.to_string().into_bytes()]);
                ttl_ms = Some(ttl);
                shared.longest_ttl_ms.fetch_max(ttl, Ordering::Relaxed);
            }
            (Input::Write(value), set)
        }
        (8, Some(expected)) => (
            Input::Cas {
                expected: Some(expected),
                new: value,
            },
            vec![
                b"CAS".to_vec(),
                name,
                expected.to_string().into_bytes(),
                value_bytes,
            ],
        ),
        // CAS from absent: SET NX.
        _ => (
            Input::Cas {
                expected: None,
                new: value,
            },
            vec![b"SET".to_vec(), name, value_bytes, b"NX".to_vec()],
        ),
    };
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let reply = c.call(&args);
    // A write that may have been applied keeps its time to live whatever
    // the reply, none included: its value may vanish, and the history
    // must hold that expiry.
    let step = |output, broken| Step {
        ttl_ms,
        ..Step::one(key, input, output, broken)
    };
    let output = match (&input, &reply) {
        (Input::Read, Err(_)) => return Step::failed(true),
        (_, Err(_)) => return step(None, true),
        (_, Ok(Reply::Error(e))) if input == Input::Read || certainly_failed(e) => {
            return Step::failed(false)
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
            let what = input.to_string();
            return step(None, true).unexpected(&what, other);
        }
    };
    step(output, false)
}

/// How a transaction (MULTI, its commands, EXEC) ended.
enum Exec {
    /// EXEC ran the commands: their replies.
    Ran(Vec<Reply>),
    /// EXEC answered nil: a watched key had changed and nothing ran.
    Aborted,
    /// Certainly nothing ran: EXEC was not sent, or was refused for
    /// certain.
    Failed,
    /// EXEC was sent and no certain answer came back.
    Unknown,
}

/// Sends MULTI, `commands` and EXEC; how it ended, and whether the
/// connection is to be dropped (it broke, or its state is unknown).
fn transaction(c: &mut Conn, commands: &[Vec<Vec<u8>>]) -> (Exec, bool) {
    if !matches!(c.call(&[b"MULTI"]), Ok(Reply::Simple(s)) if s == "OK") {
        return (Exec::Failed, true);
    }
    for command in commands {
        let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
        if !matches!(c.call(&args), Ok(Reply::Simple(s)) if s == "QUEUED") {
            // EXEC is never sent: closing the connection discards the
            // transaction.
            return (Exec::Failed, true);
        }
    }
    match c.call(&[b"EXEC"]) {
        Ok(Reply::Array(Some(replies))) => (Exec::Ran(replies), false),
        Ok(Reply::Array(None)) => (Exec::Aborted, false),
        Ok(Reply::Error(e)) if e.starts_with("EXECABORT") || certainly_failed(&e) => {
            (Exec::Failed, false)
        }
        Ok(Reply::Error(_)) => (Exec::Unknown, false),
        Err(_) | Ok(_) => (Exec::Unknown, true),
    }
}

/// A CAS of key `key` from `expected` to `new` as a transaction: WATCH,
/// GET, and if the value is the expected one MULTI, SET, EXEC. A value
/// other than the expected one, or EXEC answering nil (the key changed
/// after WATCH, to a value no other client writes), is a failed CAS.
fn watch_cas(c: &mut Conn, key: u64, expected: u64, new: u64) -> Step {
    let name = key_name(key).into_bytes();
    let input = Input::Cas {
        expected: Some(expected),
        new,
    };
    if !matches!(c.call(&[b"WATCH", &name]), Ok(Reply::Simple(s)) if s == "OK") {
        return Step::failed(true);
    }
    let seen = match c.call(&[b"GET", &name]) {
        Ok(Reply::Bulk(v)) => v.as_deref().map(parse_value),
        _ => return Step::failed(true),
    };
    if seen != Some(expected) {
        let clean = matches!(c.call(&[b"UNWATCH"]), Ok(Reply::Simple(s)) if s == "OK");
        return Step::one(key, input, Some(Output::Cas(false)), !clean);
    }
    let set = vec![b"SET".to_vec(), name, new.to_string().into_bytes()];
    let (exec, broken) = transaction(c, &[set]);
    let step = match exec {
        Exec::Ran(replies) if replies == [Reply::Simple("OK".into())] => {
            Step::one(key, input, Some(Output::Cas(true)), broken)
        }
        Exec::Ran(replies) => {
            Step::one(key, input, None, broken).unexpected("WATCH, MULTI, SET, EXEC", &replies)
        }
        Exec::Aborted => Step::one(key, input, Some(Output::Cas(false)), broken),
        Exec::Failed => return Step::failed(broken),
        Exec::Unknown => return Step::one(key, input, None, broken),
    };
    Step {
        transaction: true,
        ..step
    }
}

/// The pair keys' numbers.
fn pair(shared: &Shared) -> [u64; 2] {
    [shared.keys, shared.keys + 1]
}

/// Writes `value` to both pair keys in one MULTI/EXEC.
fn pair_write(c: &mut Conn, shared: &Shared, value: u64) -> Step {
    let keys = pair(shared);
    let sets: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|&k| {
            let name = key_name(k).into_bytes();
            vec![b"SET".to_vec(), name, value.to_string().into_bytes()]
        })
        .collect();
    let (exec, broken) = transaction(c, &sets);
    let writes = |output: Option<Output>| {
        let ops = keys.iter().map(|&k| (k, Input::Write(value), output));
        Step {
            ops: ops.collect(),
            broken,
            ..Step::default()
        }
    };
    let ok = Reply::Simple("OK".into());
    match exec {
        Exec::Ran(replies) if replies == [ok.clone(), ok] => Step {
            transaction: true,
            ..writes(Some(Output::Write))
        },
        Exec::Ran(replies) => writes(None).unexpected("MULTI, SET, SET, EXEC", &replies),
        Exec::Aborted => Step::failed(broken).unexpected("MULTI, SET, SET, EXEC", &"nil"),
        Exec::Failed => Step::failed(broken),
        Exec::Unknown => writes(None),
    }
}

/// Reads both pair keys in one MULTI/EXEC; an anomaly if they differ.
fn pair_read(c: &mut Conn, shared: &Shared) -> Step {
    let keys = pair(shared);
    let gets: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|&k| vec![b"GET".to_vec(), key_name(k).into_bytes()])
        .collect();
    let (exec, broken) = transaction(c, &gets);
    let Exec::Ran(replies) = exec else {
        return Step::failed(broken);
    };
    let [Reply::Bulk(a), Reply::Bulk(b)] = replies.as_slice() else {
        return Step::failed(broken).unexpected("MULTI, GET, GET, EXEC", &replies);
    };
    let (a, b) = (a.as_deref().map(parse_value), b.as_deref().map(parse_value));
    let ops = keys.iter().zip([a, b]);
    Step {
        ops: ops
            .map(|(&k, v)| (k, Input::Read, Some(Output::Read(v))))
            .collect(),
        broken,
        transaction: true,
        anomaly: (a != b).then(|| {
            format!(
                "MULTI, GET {}, GET {}, EXEC read {a:?} and {b:?}: a transaction seen half done",
                key_name(keys[0]),
                key_name(keys[1])
            )
        }),
        ..Step::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};

    /// The `SET ... PX` the fake node below loses the replies of.
    const LOST: usize = 20;

    /// Reads one command (an array of bulk strings); `None` at the end.
    fn read_command(r: &mut impl BufRead) -> Option<Vec<String>> {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            line.clear();
            r.read_line(&mut line).ok()?;
            let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
            let mut arg = vec![0; len + 2];
            r.read_exact(&mut arg).ok()?;
            arg.truncate(len);
            args.push(String::from_utf8(arg).ok()?);
        }
        Some(args)
    }

    /// One connection to a node whose replies to `SET ... PX` are lost:
    /// it closes the connection instead (the client sees what a reply too
    /// late or a broken connection leaves it with), after noting the
    /// value in `lost`; it answers other SETs `+OK`, GETs nil, anything
    /// else an error.
    fn serve(stream: TcpStream, lost: &Mutex<BTreeSet<u64>>) {
        let mut reader = BufReader::new(stream.try_clone().expect("a socket clones"));
        let mut writer = stream;
        while let Some(args) = read_command(&mut reader) {
            let reply = match args[0].to_ascii_uppercase().as_str() {
                "SET" if args.iter().any(|a| a.eq_ignore_ascii_case("PX")) => {
                    let value = args[2].parse().expect("the clients write numbers");
                    lost.lock().unwrap().insert(value);
                    return;
                }
                "SET" => "+OK\r\n",
                "GET" => "$-1\r\n",
                _ => "-ERR not served in this test\r\n",
            };
            if writer.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }

    #[test]
    fn a_write_with_a_time_to_live_whose_reply_is_lost_may_still_expire() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lost = Arc::new(Mutex::new(BTreeSet::new()));
        let node = {
            let lost = lost.clone();
            listener.set_nonblocking(true).unwrap();
            let until = Instant::now() + Duration::from_secs(30);
            thread::spawn(move || {
                while lost.lock().unwrap().len() < LOST && Instant::now() < until {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            serve(stream, &lost);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        let shared = Arc::new(Shared {
            net: Arc::new(Net::Loopback(vec![(0, port)])),
            nodes: 1,
            keys: 3,
            readonly: false,
            started: Instant::now(),
            stop: AtomicBool::new(false),
            history: Mutex::default(),
            timings: Mutex::default(),
            longest_ttl_ms: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            anomalies: Mutex::default(),
        });
        let client = {
            let shared = shared.clone();
            thread::spawn(move || client(0, 7, shared))
        };
        // The node stops once it lost that many replies (or after 30 s).
        node.join().unwrap();
        shared.stop.store(true, Ordering::Relaxed);
        client.join().unwrap();

        let lost = lost.lock().unwrap().clone();
        assert_eq!(lost.len(), LOST, "the client sent too few SET ... PX");
        let history = shared.history.lock().unwrap();
        let open_writes: BTreeSet<u64> = history
            .iter()
            .filter_map(|o| match (o.input, o.ret) {
                (Input::Write(v), None) => Some(v),
                _ => None,
            })
            .collect();
        let expiries: BTreeSet<u64> = history
            .iter()
            .filter_map(|o| match o.input {
                Input::Expire(v) => Some(v),
                _ => None,
            })
            .collect();
        // Each may have been applied, and then expired.
        assert!(lost.is_subset(&open_writes), "{lost:?} {open_writes:?}");
        assert_eq!(expiries, lost, "the expiries in the history");
    }
}
