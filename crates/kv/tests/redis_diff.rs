//! raft-kv checked against Redis itself: the same seeded random command
//! streams (every supported data command, with edge cases: wrong arity,
//! bad numbers, conflicting options, binary keys) go to a `redis-server`
//! and to a raft-kv node, and every reply must be the same bytes (the
//! replies of KEYS are compared as sets: neither server promises an
//! order). A difference fails the test with the seed, the command and both
//! replies.
//!
//! Expiry is compared too: SET's time options, SETEX, PSETEX, GETEX, the
//! EXPIRE family, PERSIST and the TTL family. Relative times in the streams
//! are either long (at least 100 s, so that no key expires during the test
//! on one server and not yet on the other: raft-kv removes a key when the
//! leader's time entry reaches its deadline, Redis when it finds it
//! expired) or already passed (0 or negative, or an absolute time in the
//! past: the key goes at once on both). The replies of TTL, PTTL,
//! EXPIRETIME and PEXPIRETIME are counts of time read from two clocks at
//! slightly different moments: two non-negative ones match within
//! [`TIME_TOLERANCE_MS`] (in their unit); -1 and -2 must match exactly.
//! Redis keeps a key whose time has passed until something touches it (or
//! its background cycle finds it), and DBSIZE counts it meanwhile; raft-kv
//! removes it at once. So before each DBSIZE both servers get an EXISTS of
//! every key of the streams (replies compared too), which makes Redis drop
//! such keys.
//!
//! Hashes, sets and lists are compared too, on the same keys as strings (so that
//! WRONGTYPE comes up both ways). Replies without an order (HGETALL, HKEYS,
//! HVALS, SMEMBERS, SINTER, SUNION, SDIFF) are compared as multisets
//! (HGETALL's as field-value pairs); HSCAN and SSCAN are walked to the end
//! on both servers and what they found compared as sets. Random picks
//! (SPOP, SRANDMEMBER, HRANDFIELD) are compared by shape: the same error,
//! or the same kind and number of items, each a member (a field with its
//! value) of the key on the reference; after an SPOP both servers are made
//! to hold the same set again (each puts back what it popped and removes
//! what the other popped). HINCRBYFLOAT adds numbers exact in binary to a
//! field of its own (raft-kv computes in double, Redis in long double:
//! their results differ in the last digits otherwise).
//! Transactions are in the streams too: MULTI, EXEC, DISCARD, WATCH and
//! UNWATCH come at random among the other commands (a watched key then
//! changes, or not, by the stream's own writes), and EXEC's whole array is
//! compared. Inside MULTI the streams leave out what cannot be compared
//! exactly in an array (the TTL family, KEYS, DBSIZE, the replies without
//! an order and the random picks of hashes and sets) and SELECT (refused
//! in a transaction by raft-kv, a deliberate difference); the other
//! commands on hashes, sets and lists are queued like any other.
//!
//! Skipped (with a note on stderr) when `redis-server` is not installed,
//! unless `RAFT_KV_REDIS_TOOLS=required`, which makes its absence a
//! failure. `RAFT_KV_DIFF_SEED=n` replays one stream.
//!
//! Not compared, as deliberate differences (listed in the README): SCAN
//! (raft-kv's cursors are key hashes, Redis's are table positions), CAS,
//! READONLY and RAFT.* (raft-kv's own), and server introspection (INFO,
//! CONFIG, CLIENT, COMMAND), except the shape of COMMAND DOCS: its field
//! names and kinds, group and since, are compared command by command.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How many streams, and how many commands in each.
const STREAMS: u64 = 10;
const COMMANDS_PER_STREAM: usize = 500;

/// A `redis-server` on a free local port, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `redis-server` (no persistence, 127.0.0.1 only); `None` if it is
/// not installed and not required.
fn redis_server() -> Option<RedisServer> {
    let present = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !present {
        if std::env::var("RAFT_KV_REDIS_TOOLS").as_deref() == Ok("required") {
            panic!(
                "redis-server not found on PATH, and RAFT_KV_REDIS_TOOLS=required: install \
                 redis-server (e.g. `apt-get install redis-server`)"
            );
        }
        eprintln!(
            "skipped: redis-server not installed (set RAFT_KV_REDIS_TOOLS=required to fail instead)"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let server = RedisServer {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

/// A raw RESP connection: requests as arrays of bulk strings, replies as
/// the bytes the server sent.
struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(address: &str) -> Raw {
        let stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&req).unwrap();
        let mut reply = Vec::new();
        if let Err(e) = self.reply(&mut reply) {
            panic!("no whole reply to {}: {e}", shown(args));
        }
        reply
    }

    /// Reads one whole reply into `out`.
    fn reply(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let start = out.len();
        self.reader.read_until(b'\n', out)?;
        let line = out[start..].to_vec();
        let n = || -> i64 {
            std::str::from_utf8(&line[1..line.len() - 2])
                .unwrap()
                .parse()
                .unwrap()
        };
        match line[0] {
            b'$' if n() >= 0 => {
                let mut body = vec![0; n() as usize + 2];
                self.reader.read_exact(&mut body)?;
                out.extend_from_slice(&body);
            }
            b'*' => {
                for _ in 0..n().max(0) {
                    self.reply(out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A small seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const KEYS: &[&[u8]] = &[
    b"a",
    b"b",
    b"counter",
    b"key with spaces",
    b"\x00\xff\r\n",
    b"k*",
    b"",
];

const VALUES: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"42",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"01",
    b"+1",
    b" 1",
    b"-0",
    b"1.5",
    b"",
    b"abc",
    b"\x00\x01\x02",
];

const NUMBERS: &[&[u8]] = &[
    b"1",
    b"-1",
    b"0",
    b"100",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"x",
    b"1.0",
    b"",
    b"99999999999999999999",
];

/// Increments and values for INCRBYFLOAT.
const FLOATS: &[&[u8]] = &[
    b"1.5",
    b"-0.1",
    b"0.1",
    b"10.50",
    b"3e20",
    b"-5e3",
    b"1e308",
    b"1e-20",
    b"0x10",
    b"5.",
    b".5",
    b"inf",
    b"-inf",
    b"nan",
    b"abc",
    b" 1",
    b"1e",
    b"0",
    b"-0",
    b"1.23456789012345678901",
    b"1e400",
    b"1e5000",
];

/// GETRANGE's bounds and SETRANGE's offsets.
const OFFSETS: &[&[u8]] = &[
    b"0",
    b"1",
    b"3",
    b"-1",
    b"-3",
    b"100",
    b"-100",
    b"x",
    b"9223372036854775807",
    b"-9223372036854775808",
];

const PATTERNS: &[&[u8]] = &[
    b"*", b"a", b"?", b"k\\*", b"[ab]", b"[^a]*", b"*e*", b"[a-c]",
];

const SET_OPTIONS: &[&[u8]] = &[b"NX", b"XX", b"GET", b"KEEPTTL", b"nx", b"get", b"BOGUS"];

const FIELDS: &[&[u8]] = &[b"f", b"g", b"", b"\x00\xff\r\n", b"field with spaces"];

/// The field HINCRBYFLOAT counts in (no other command writes numbers
/// there, so its value stays exact in binary).
const FLOAT_FIELD: &[u8] = b"float";

const FLOAT_INCREMENTS: &[&[u8]] = &[
    b"1", b"-1", b"0.5", b"-2.25", b"10.5", b"1e3", b"1.5e2", b"+1", b"01", b"x", b"", b"inf",
    b"-inf", b"nan", b" 1",
];

/// The commands on hashes and sets (without the random ones).
const TYPED_NAMES: &[&[u8]] = &[
    b"HSET",
    b"HSETNX",
    b"HGET",
    b"HMGET",
    b"HDEL",
    b"HGETALL",
    b"HLEN",
    b"HEXISTS",
    b"HINCRBY",
    b"HINCRBYFLOAT",
    b"HKEYS",
    b"HVALS",
    b"HSTRLEN",
    b"HSCAN",
    b"SADD",
    b"SREM",
    b"SMEMBERS",
    b"SISMEMBER",
    b"SMISMEMBER",
    b"SCARD",
    b"SINTER",
    b"SUNION",
    b"SDIFF",
    b"SINTERSTORE",
    b"SUNIONSTORE",
    b"SDIFFSTORE",
    b"SSCAN",
    b"TYPE",
    b"LPUSH",
    b"RPUSH",
    b"LPOP",
    b"RPOP",
    b"LLEN",
    b"LRANGE",
    b"LINDEX",
    b"LSET",
    b"LREM",
    b"LTRIM",
    b"LPOS",
    b"LMOVE",
    b"BLPOP",
    b"BRPOP",
    b"BLMOVE",
    b"BRPOPLPUSH",
    b"LMPOP",
    b"BLMPOP",
    b"RENAME",
    b"RENAMENX",
    b"COPY",
];

/// Timeouts of the blocking pops: short, negative or not numbers.
const BLOCKING_TIMEOUTS: &[&[u8]] = &[
    b"0.01", b"0.001", b"0.0001", b"0.02", b"-1", b"-0.5", b"x", b"1e-3", b"inf", b"1e30",
];

/// Indexes of LRANGE, LTRIM, LINDEX and LSET.
const INDEXES: &[&[u8]] = &[b"0", b"1", b"-1", b"2", b"-3", b"10", b"-100", b"x", b""];

/// One random command on a hash or a set (the name first).
fn typed_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let key = |rng: &mut Rng| rng.pick(KEYS).to_vec();
    let field = |rng: &mut Rng| rng.pick(FIELDS).to_vec();
    let member = |rng: &mut Rng| rng.pick(VALUES).to_vec();
    let name = if rng.chance(15) {
        rng.pick(&[b"SPOP", b"SRANDMEMBER", b"HRANDFIELD"])
    } else {
        rng.pick(TYPED_NAMES)
    };
    let mut c = vec![name.to_vec(), key(rng)];
    let upper = name.to_ascii_uppercase();
    match &upper[..] {
        b"HSET" | b"HSETNX" => {
            let pairs = if upper == b"HSET" {
                1 + rng.below(3)
            } else {
                1
            };
            for _ in 0..pairs {
                if rng.chance(5) {
                    // HINCRBYFLOAT's field: a value that is no number, or
                    // one exact in binary.
                    c.push(FLOAT_FIELD.to_vec());
                    c.push(rng.pick(&[b"abc", b"1.5"]).to_vec());
                } else {
                    c.push(field(rng));
                    c.push(member(rng));
                }
            }
        }
        b"HGET" | b"HEXISTS" | b"HSTRLEN" => c.push(if rng.chance(20) {
            FLOAT_FIELD.to_vec()
        } else {
            field(rng)
        }),
        b"HMGET" | b"HDEL" => {
            for _ in 0..=rng.below(3) {
                c.push(if rng.chance(10) {
                    FLOAT_FIELD.to_vec()
                } else {
                    field(rng)
                });
            }
        }
        b"HINCRBY" => {
            c.push(field(rng));
            c.push(rng.pick(NUMBERS).to_vec());
        }
        b"HINCRBYFLOAT" => {
            if rng.chance(80) {
                c.push(FLOAT_FIELD.to_vec());
                c.push(rng.pick(FLOAT_INCREMENTS).to_vec());
            } else {
                // Other fields hold any number (which long double and
                // double may round apart): only increments that are none.
                c.push(field(rng));
                c.push(rng.pick(&[b"x", b"", b"nan", b"1x"]).to_vec());
            }
        }
        b"HSCAN" | b"SSCAN" => {
            // Only 0 or no cursor: for a small hash or set Redis answers all
            // of it from any cursor.
            c.push(rng.pick(&[b"0", b"0", b"0", b"x", b"+0"]).to_vec());
            for _ in 0..rng.below(3) {
                match rng.below(4) {
                    0 => {
                        c.push(b"MATCH".to_vec());
                        c.push(rng.pick(PATTERNS).to_vec());
                    }
                    1 => {
                        c.push(b"COUNT".to_vec());
                        c.push(rng.pick(&[b"1", b"2", b"100", b"0", b"x"]).to_vec());
                    }
                    2 => c.push(b"NOVALUES".to_vec()),
                    _ => {
                        c.push(b"count".to_vec());
                        c.push(b"3".to_vec());
                    }
                }
            }
        }
        b"SADD" | b"SREM" | b"SMISMEMBER" => {
            for _ in 0..=rng.below(3) {
                c.push(member(rng));
            }
        }
        b"SISMEMBER" => c.push(member(rng)),
        b"LPUSH" | b"RPUSH" => {
            for _ in 0..=rng.below(3) {
                c.push(member(rng));
            }
        }
        b"LPOP" | b"RPOP" if rng.chance(50) => {
            c.push(rng.pick(&[b"1", b"2", b"0", b"10", b"-1", b"x"]).to_vec());
        }
        b"LRANGE" | b"LTRIM" => {
            c.push(rng.pick(INDEXES).to_vec());
            c.push(rng.pick(INDEXES).to_vec());
        }
        b"LINDEX" => c.push(rng.pick(INDEXES).to_vec()),
        b"LSET" => {
            c.push(rng.pick(INDEXES).to_vec());
            c.push(member(rng));
        }
        b"LREM" => {
            c.push(rng.pick(&[b"0", b"1", b"-1", b"2", b"x"]).to_vec());
            c.push(member(rng));
        }
        b"LPOS" => {
            c.push(member(rng));
            for _ in 0..rng.below(3) {
                c.push(
                    rng.pick(&[b"RANK", b"COUNT", b"MAXLEN", b"rank", b"BOGUS"])
                        .to_vec(),
                );
                c.push(rng.pick(&[b"1", b"2", b"-1", b"0", b"-2", b"x"]).to_vec());
            }
        }
        b"RENAME" | b"RENAMENX" => c.push(key(rng)),
        b"COPY" => {
            c.push(key(rng));
            for _ in 0..rng.below(3) {
                c.push(rng.pick(&[b"REPLACE", b"replace", b"DB", b"NOPE"]).to_vec());
                if c.last().is_some_and(|o| o == b"DB") {
                    c.push(rng.pick(&[b"0", b"x"]).to_vec());
                }
            }
        }
        b"LMOVE" => {
            c.push(key(rng));
            c.push(rng.pick(&[b"LEFT", b"RIGHT", b"left", b"UP"]).to_vec());
            c.push(rng.pick(&[b"LEFT", b"RIGHT", b"right"]).to_vec());
        }
        // Blocking pops: on lists that hold something they pop at once;
        // on empty ones they wait a few milliseconds for the null reply
        // (never 0, which waits for ever).
        b"BLPOP" | b"BRPOP" => {
            for _ in 0..rng.below(3) {
                c.push(key(rng));
            }
            c.push(rng.pick(BLOCKING_TIMEOUTS).to_vec());
        }
        b"BLMOVE" => {
            c.push(key(rng));
            c.push(rng.pick(&[b"LEFT", b"RIGHT", b"left", b"UP"]).to_vec());
            c.push(rng.pick(&[b"LEFT", b"RIGHT", b"right"]).to_vec());
            c.push(rng.pick(BLOCKING_TIMEOUTS).to_vec());
        }
        b"BRPOPLPUSH" => {
            c.push(key(rng));
            c.push(rng.pick(BLOCKING_TIMEOUTS).to_vec());
        }
        // numkeys (not always the number of keys that follow), the keys, a
        // side, and COUNT (sometimes twice, or without a value).
        b"LMPOP" | b"BLMPOP" => {
            c.truncate(1);
            if upper == b"BLMPOP" {
                c.push(rng.pick(BLOCKING_TIMEOUTS).to_vec());
            }
            let keys = 1 + rng.below(3);
            c.push(if rng.chance(80) {
                keys.to_string().into_bytes()
            } else {
                rng.pick(&[b"0", b"-1", b"x", b"9", b"+1"]).to_vec()
            });
            for _ in 0..keys {
                c.push(key(rng));
            }
            c.push(rng.pick(&[b"LEFT", b"RIGHT", b"left", b"UP"]).to_vec());
            for _ in 0..rng.below(3) {
                c.push(rng.pick(&[b"COUNT", b"count", b"BOGUS"]).to_vec());
                if rng.chance(90) {
                    c.push(rng.pick(&[b"1", b"2", b"10", b"0", b"-1", b"x"]).to_vec());
                }
            }
        }
        b"SINTER" | b"SUNION" | b"SDIFF" | b"SINTERSTORE" | b"SUNIONSTORE" | b"SDIFFSTORE" => {
            for _ in 0..=rng.below(3) {
                c.push(key(rng));
            }
        }
        b"SPOP" if rng.chance(60) => {
            c.push(rng.pick(&[b"1", b"2", b"0", b"10", b"-1", b"x"]).to_vec());
        }
        b"SRANDMEMBER" | b"HRANDFIELD" if rng.chance(70) => {
            c.push(
                rng.pick(&[
                    b"1",
                    b"3",
                    b"0",
                    b"-5",
                    b"10",
                    b"x",
                    b"-9223372036854775808",
                ])
                .to_vec(),
            );
            if upper == b"HRANDFIELD" && rng.chance(50) {
                c.push(rng.pick(&[b"WITHVALUES", b"withvalues", b"BOGUS"]).to_vec());
            }
        }
        _ => {}
    }
    c
}

/// A RESP reply, parsed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reply {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

fn parse_reply(b: &[u8]) -> (Reply, usize) {
    let line_end = b.iter().position(|&c| c == b'\n').unwrap() + 1;
    let line = &b[1..line_end - 2];
    let n = || -> i64 { std::str::from_utf8(line).unwrap().parse().unwrap() };
    match b[0] {
        b'+' => (Reply::Simple(line.to_vec()), line_end),
        b'-' => (Reply::Error(line.to_vec()), line_end),
        b':' => (Reply::Int(n()), line_end),
        b'$' if n() < 0 => (Reply::Bulk(None), line_end),
        b'$' => {
            let len = n() as usize;
            (
                Reply::Bulk(Some(b[line_end..line_end + len].to_vec())),
                line_end + len + 2,
            )
        }
        b'*' if n() < 0 => (Reply::Array(None), line_end),
        b'*' => {
            let mut at = line_end;
            let mut items = Vec::new();
            for _ in 0..n() {
                let (r, used) = parse_reply(&b[at..]);
                items.push(r);
                at += used;
            }
            (Reply::Array(Some(items)), at)
        }
        other => panic!("not a RESP reply: {other}"),
    }
}

fn reply(b: &[u8]) -> Reply {
    parse_reply(b).0
}

fn bulks(r: &Reply) -> Vec<Vec<u8>> {
    match r {
        Reply::Array(Some(items)) => items
            .iter()
            .map(|i| match i {
                Reply::Bulk(Some(b)) => b.clone(),
                other => panic!("not a bulk string: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// Replies in no particular order, sorted (HGETALL's as pairs).
fn unordered(args: &[Vec<u8>], r: Reply) -> Reply {
    let name = args[0].to_ascii_uppercase();
    if !matches!(
        &name[..],
        b"HGETALL" | b"HKEYS" | b"HVALS" | b"SMEMBERS" | b"SINTER" | b"SUNION" | b"SDIFF"
    ) {
        return r;
    }
    let Reply::Array(Some(mut items)) = r else {
        return r;
    };
    if name == b"HGETALL" {
        let mut pairs: Vec<Vec<Reply>> = items.chunks(2).map(|p| p.to_vec()).collect();
        pairs.sort();
        items = pairs.concat();
    } else {
        items.sort();
    }
    Reply::Array(Some(items))
}

/// Walks an HSCAN or SSCAN to its end on one server: what it found (as a
/// set; HSCAN's as pairs), or the first error.
fn walk_scan(
    server: &mut Raw,
    args: &[Vec<u8>],
) -> Result<std::collections::BTreeSet<Vec<Vec<u8>>>, Reply> {
    let per = if args[0].eq_ignore_ascii_case(b"HSCAN") {
        2
    } else {
        1
    };
    let mut found = std::collections::BTreeSet::new();
    let mut args = args.to_vec();
    for _ in 0..10_000 {
        let r = reply(&server.send(&args));
        let Reply::Array(Some(parts)) = &r else {
            return Err(r);
        };
        let Reply::Bulk(Some(next)) = &parts[0] else {
            panic!("a cursor: {r:?}")
        };
        for item in bulks(&parts[1]).chunks(per) {
            found.insert(item.to_vec());
        }
        if next == b"0" {
            return Ok(found);
        }
        args[2] = next.clone();
    }
    panic!("the scan did not end: {}", shown(&args));
}

/// Checks a random pick's replies by shape (and each item against the
/// reference's state), then, after an SPOP, makes both servers hold the
/// same set again. The error, if any, says what differs.
fn check_random(args: &[Vec<u8>], kv: &mut Raw, reference: &mut Raw) -> Result<(), String> {
    let name = args[0].to_ascii_uppercase();
    let key = args[1].clone();
    let ours = reply(&kv.send(args));
    let theirs = reply(&reference.send(args));
    let shape = |r: &Reply| match r {
        Reply::Array(Some(items)) => format!("array of {}", items.len()),
        Reply::Bulk(Some(_)) => "bulk".to_string(),
        other => format!("{other:?}"),
    };
    if shape(&ours) != shape(&theirs) {
        return Err(format!("{ours:?} and {theirs:?} differ in shape"));
    }
    let picked = |r: &Reply| match r {
        Reply::Bulk(Some(b)) => vec![b.clone()],
        Reply::Array(Some(_)) => bulks(r),
        _ => Vec::new(),
    };
    let (ours, theirs) = (picked(&ours), picked(&theirs));
    let with_values = name == b"HRANDFIELD" && args.len() == 4;
    let distinct = args.get(2).is_none_or(|c| !c.starts_with(b"-"));
    if name == b"SPOP" {
        // Both popped as many from the same set: the reference puts back
        // what it popped, checks that raft-kv's pops were members, and
        // removes them, so that both hold the same set again.
        if ours.iter().collect::<std::collections::BTreeSet<_>>()
            != theirs.iter().collect::<std::collections::BTreeSet<_>>()
        {
            for m in &theirs {
                reference.send(&[b"SADD".to_vec(), key.clone(), m.clone()]);
            }
            for m in &ours {
                let r = reply(&reference.send(&[b"SREM".to_vec(), key.clone(), m.clone()]));
                if r != Reply::Int(1) {
                    return Err(format!("raft-kv popped {m:?}, no member ({r:?})"));
                }
            }
        }
        let members = |server: &mut Raw| {
            let r = server.send(&[b"SMEMBERS".to_vec(), key.clone()]);
            unordered(&[b"SMEMBERS".to_vec()], reply(&r))
        };
        let (a, b) = (members(kv), members(reference));
        if a != b {
            return Err(format!("after SPOP the sets differ: {a:?} and {b:?}"));
        }
        return Ok(());
    }
    let items: Vec<Vec<Vec<u8>>> = ours
        .chunks(if with_values { 2 } else { 1 })
        .map(|c| c.to_vec())
        .collect();
    if distinct {
        let set: std::collections::BTreeSet<_> = items.iter().collect();
        if set.len() != items.len() {
            return Err(format!("{items:?} repeats an item"));
        }
    }
    for item in &items {
        let ok = if name == b"SRANDMEMBER" {
            reply(&reference.send(&[b"SISMEMBER".to_vec(), key.clone(), item[0].clone()]))
                == Reply::Int(1)
        } else {
            let v = reply(&reference.send(&[b"HGET".to_vec(), key.clone(), item[0].clone()]));
            matches!(&v, Reply::Bulk(Some(_)))
                && (!with_values || v == Reply::Bulk(Some(item[1].clone())))
        };
        if !ok {
            return Err(format!("raft-kv picked {item:?}, not on the key"));
        }
    }
    Ok(())
}

/// How far apart two time replies (TTL, PTTL...) may be, in milliseconds.
const TIME_TOLERANCE_MS: i64 = 1500;

/// The time options of SET and GETEX (the value follows, but for KEEPTTL
/// and PERSIST, which stand alone).
const TIME_OPTIONS: &[&[u8]] = &[
    b"EX", b"PX", b"EXAT", b"PXAT", b"ex", b"KEEPTTL", b"PERSIST",
];

/// A time argument for `option` (EX, PX, EXAT, PXAT, or an EXPIRE-like
/// command's name): long, already passed, or not a valid time.
fn time_arg(rng: &mut Rng, option: &[u8]) -> Vec<u8> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let upper = option.to_ascii_uppercase();
    let seconds = matches!(&upper[..], b"EX" | b"EXAT" | b"EXPIRE" | b"EXPIREAT");
    let absolute = upper.ends_with(b"AT");
    let unit = if seconds { 1000 } else { 1 };
    let t: i64 = match rng.below(10) {
        // Long: 100 s to a day.
        0..=4 => {
            let ms = 100_000 + rng.below(86_400_000) as i64;
            (if absolute { now_ms + ms } else { ms }) / unit
        }
        // Already passed (or not positive).
        5 => {
            if absolute {
                (now_ms - 5_000) / unit
            } else {
                0
            }
        }
        6 => 1,
        7 => -(rng.below(100) as i64) - 1,
        // Out of range, or not a number.
        8 => {
            return rng
                .pick(&[
                    b"9223372036854775807",
                    b"9223372036854775",
                    b"9223372036854776",
                    b"-9223372036854775808",
                    b"x",
                    b"1.5",
                    b"",
                ])
                .to_vec()
        }
        _ => i64::MAX / unit / 2 - rng.below(1_000_000) as i64,
    };
    // `1` as a relative time would expire within the test: keep it only
    // for absolute times (long passed). Relative times are random, so that
    // GT and LT never compare two equal ones (which of two equal relative
    // times is later depends on when each server read its clock).
    let t = if t == 1 && !absolute {
        100_000 + rng.below(1_000_000) as i64
    } else {
        t
    };
    t.to_string().into_bytes()
}

/// The expiry commands (and SET, when it has a time option).
const EXPIRY_COMMANDS: &[&[u8]] = &[
    b"SETEX",
    b"PSETEX",
    b"GETEX",
    b"EXPIRE",
    b"PEXPIRE",
    b"EXPIREAT",
    b"PEXPIREAT",
    b"PERSIST",
    b"TTL",
    b"PTTL",
    b"EXPIRETIME",
    b"PEXPIRETIME",
];

/// One random expiry command (the name first).
fn expiry_command(rng: &mut Rng, key: Vec<u8>, value: Vec<u8>) -> Vec<Vec<u8>> {
    match rng.below(13) {
        0..=2 => {
            let mut c = vec![b"SET".to_vec(), key, value];
            for i in 0..=rng.below(3) {
                if i > 0 && rng.chance(40) {
                    c.push(rng.pick(SET_OPTIONS).to_vec());
                    continue;
                }
                let opt = rng.pick(TIME_OPTIONS);
                c.push(opt.to_vec());
                if !matches!(opt, b"KEEPTTL" | b"PERSIST") && rng.chance(95) {
                    c.push(time_arg(rng, opt));
                }
            }
            c
        }
        3 => {
            let name: &[u8] = rng.pick(&[b"SETEX", b"PSETEX"]);
            let unit: &[u8] = if name == b"SETEX" { b"EX" } else { b"PX" };
            vec![name.to_vec(), key, time_arg(rng, unit), value]
        }
        4 => {
            let mut c = vec![b"GETEX".to_vec(), key];
            for _ in 0..rng.below(3) {
                let opt = rng.pick(&[b"EX", b"PX", b"EXAT", b"PXAT", b"PERSIST", b"NX"]);
                c.push(opt.to_vec());
                if !matches!(opt, b"PERSIST" | b"NX") {
                    c.push(time_arg(rng, opt));
                }
            }
            c
        }
        5 | 6 => {
            let name = rng.pick(&[b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT"]);
            let mut c = vec![name.to_vec(), key, time_arg(rng, name)];
            for _ in 0..rng.below(3) {
                c.push(
                    rng.pick(&[b"NX", b"XX", b"GT", b"LT", b"gt", b"BOGUS"])
                        .to_vec(),
                );
            }
            c
        }
        7 => vec![b"PERSIST".to_vec(), key],
        _ => {
            let name = rng.pick(&[b"TTL", b"PTTL", b"PTTL", b"EXPIRETIME", b"PEXPIRETIME"]);
            vec![name.to_vec(), key]
        }
    }
}

/// Whether two replies match: the same bytes, or for TTL-like commands
/// two non-negative integers within [`TIME_TOLERANCE_MS`].
fn same_reply(args: &[Vec<u8>], ours: &[u8], theirs: &[u8]) -> bool {
    if ours == theirs {
        return true;
    }
    let name = args[0].to_ascii_uppercase();
    let per_ms = match &name[..] {
        b"TTL" | b"EXPIRETIME" => 1000,
        b"PTTL" | b"PEXPIRETIME" => 1,
        _ => return false,
    };
    let int = |r: &[u8]| -> Option<i64> {
        std::str::from_utf8(r.strip_prefix(b":")?.strip_suffix(b"\r\n")?)
            .ok()?
            .parse()
            .ok()
    };
    match (int(ours), int(theirs)) {
        (Some(a), Some(b)) if a >= 0 && b >= 0 => {
            (a - b).abs() <= TIME_TOLERANCE_MS / per_ms + i64::from(per_ms > 1)
        }
        _ => false,
    }
}

/// One random command (the name first).
fn command(rng: &mut Rng) -> Vec<Vec<u8>> {
    let key = |rng: &mut Rng| rng.pick(KEYS).to_vec();
    let value = |rng: &mut Rng| {
        if rng.chance(5) {
            vec![b'v'; 300]
        } else {
            rng.pick(VALUES).to_vec()
        }
    };
    let mut c: Vec<Vec<u8>> = match rng.below(40) {
        28..=39 => typed_command(rng),
        0 => vec![b"GET".to_vec(), key(rng)],
        1 | 2 => {
            let mut c = vec![b"SET".to_vec(), key(rng), value(rng)];
            for _ in 0..rng.below(3) {
                c.push(rng.pick(SET_OPTIONS).to_vec());
            }
            c
        }
        3 => {
            let mut c = vec![b"DEL".to_vec()];
            for _ in 0..=rng.below(3) {
                c.push(key(rng));
            }
            c
        }
        4 => vec![b"UNLINK".to_vec(), key(rng)],
        5 => {
            let mut c = vec![b"EXISTS".to_vec()];
            for _ in 0..=rng.below(3) {
                c.push(key(rng));
            }
            c
        }
        6 => vec![b"INCR".to_vec(), key(rng)],
        7 => vec![b"DECR".to_vec(), key(rng)],
        8 => vec![b"INCRBY".to_vec(), key(rng), rng.pick(NUMBERS).to_vec()],
        9 => vec![b"DECRBY".to_vec(), key(rng), rng.pick(NUMBERS).to_vec()],
        10 => vec![b"APPEND".to_vec(), key(rng), value(rng)],
        11 => vec![b"STRLEN".to_vec(), key(rng)],
        12 => {
            let mut c = vec![b"MGET".to_vec()];
            for _ in 0..=rng.below(4) {
                c.push(key(rng));
            }
            c
        }
        13 => {
            let mut c = vec![b"MSET".to_vec()];
            for _ in 0..=rng.below(3) {
                c.push(key(rng));
                c.push(value(rng));
            }
            c
        }
        14 => vec![b"GETSET".to_vec(), key(rng), value(rng)],
        15 => vec![b"DBSIZE".to_vec()],
        16 => vec![b"KEYS".to_vec(), rng.pick(PATTERNS).to_vec()],
        17 => vec![b"ECHO".to_vec(), value(rng)],
        18 => vec![b"PING".to_vec()],
        19 => {
            if rng.chance(20) {
                vec![b"FLUSHDB".to_vec()]
            } else {
                vec![b"GET".to_vec(), key(rng)]
            }
        }
        20 => vec![b"NOSUCHCOMMAND".to_vec(), key(rng)],
        21 => match rng.below(10) {
            0 | 1 => {
                let v = if rng.chance(50) {
                    rng.pick(FLOATS).to_vec()
                } else {
                    value(rng)
                };
                vec![b"INCRBYFLOAT".to_vec(), key(rng), v]
            }
            2 => vec![b"GETDEL".to_vec(), key(rng)],
            3 | 4 => vec![
                b"GETRANGE".to_vec(),
                key(rng),
                rng.pick(OFFSETS).to_vec(),
                rng.pick(OFFSETS).to_vec(),
            ],
            5 | 6 => {
                // Past the largest string (512 MiB): the error, never a
                // value that large.
                let offset = if rng.chance(10) {
                    rng.pick(&[b"536870912", b"9223372036854775807"]).to_vec()
                } else {
                    rng.pick(&OFFSETS[..7]).to_vec()
                };
                vec![b"SETRANGE".to_vec(), key(rng), offset, value(rng)]
            }
            7 => {
                let mut c = vec![b"SET".to_vec(), key(rng)];
                c.push(rng.pick(FLOATS).to_vec());
                c
            }
            _ => {
                let mut c = vec![b"MSETNX".to_vec()];
                for _ in 0..=rng.below(2) {
                    c.push(key(rng));
                    c.push(value(rng));
                }
                c
            }
        },
        22..=27 => {
            let (k, v) = (key(rng), value(rng));
            expiry_command(rng, k, v)
        }
        _ => vec![b"SELECT".to_vec(), rng.pick(&[b"0", b"x"]).to_vec()],
    };
    // Wrong arity: one argument too few or too many, now and then.
    if rng.chance(5) {
        if rng.chance(50) && c.len() > 1 {
            c.pop();
        } else {
            c.push(b"extra".to_vec());
        }
    }
    // Command names are case-insensitive.
    if rng.chance(20) {
        c[0].make_ascii_lowercase();
    }
    c
}

/// A transaction command, now and then, among the others.
fn transaction_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    match rng.below(10) {
        0..=2 => vec![b"MULTI".to_vec()],
        3..=5 => vec![b"EXEC".to_vec()],
        6 => vec![b"DISCARD".to_vec()],
        7 | 8 => {
            let mut c = vec![b"WATCH".to_vec()];
            for _ in 0..=rng.below(2) {
                c.push(rng.pick(KEYS).to_vec());
            }
            c
        }
        _ => vec![b"UNWATCH".to_vec()],
    }
}

/// Whether a command's reply cannot be compared exactly inside EXEC's
/// array (or is refused in a transaction by raft-kv on purpose).
fn not_in_transactions(args: &[Vec<u8>]) -> bool {
    let name = args[0].to_ascii_uppercase();
    matches!(
        &name[..],
        b"TTL"
            | b"PTTL"
            | b"EXPIRETIME"
            | b"PEXPIRETIME"
            | b"KEYS"
            | b"DBSIZE"
            | b"SELECT"
            // Replies in no order, and random picks (compared by shape
            // outside a transaction, not exactly).
            | b"HGETALL"
            | b"HKEYS"
            | b"HVALS"
            | b"SMEMBERS"
            | b"SINTER"
            | b"SUNION"
            | b"SDIFF"
            | b"HSCAN"
            | b"SSCAN"
            | b"SPOP"
            | b"SRANDMEMBER"
            | b"HRANDFIELD"
    )
}

/// KEYS replies hold the same keys in any order: sorted for comparison.
fn normalize(args: &[Vec<u8>], reply: Vec<u8>) -> Vec<u8> {
    if !args[0].eq_ignore_ascii_case(b"KEYS") || reply.first() != Some(&b'*') {
        return reply;
    }
    let header_end = reply.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut items = Vec::new();
    let mut at = header_end;
    while at < reply.len() {
        let line_end = at + reply[at..].iter().position(|&b| b == b'\n').unwrap() + 1;
        let n: usize = std::str::from_utf8(&reply[at + 1..line_end - 2])
            .unwrap()
            .parse()
            .unwrap();
        let end = line_end + n + 2;
        items.push(reply[at..end].to_vec());
        at = end;
    }
    items.sort();
    let mut out = reply[..header_end].to_vec();
    for i in items {
        out.extend_from_slice(&i);
    }
    out
}

fn shown(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| format!("{:?}", String::from_utf8_lossy(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn random_command_streams_get_the_same_replies_as_from_redis() {
    let Some(redis) = redis_server() else {
        return;
    };
    let mut cluster = Cluster::single(&[]);
    cluster.wait_leader();
    let mut kv = Raw::connect(&cluster.node_mut(0).client_addr());
    let mut reference = Raw::connect(&format!("127.0.0.1:{}", redis.port));
    let seeds: Vec<u64> = match std::env::var("RAFT_KV_DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("RAFT_KV_DIFF_SEED is a number")],
        Err(_) => (1..=STREAMS).collect(),
    };
    let mut compared = 0;
    // Replies of the expiry commands: errors, and times to live found.
    let (mut expiry_errors, mut ttls_found) = (0, 0);
    // Commands on hashes and sets, random picks, WRONGTYPE errors.
    let (mut typed, mut random, mut wrong_types) = (0, 0, 0);
    // EXEC replies: arrays, null arrays (a watched key changed), aborts.
    let (mut execs, mut exec_nulls, mut exec_aborts) = (0, 0, 0);
    // Typed commands queued in a transaction.
    let mut typed_in_exec = 0;
    for seed in seeds {
        // The last stream may have left a transaction open: the same on both.
        let discard = [b"DISCARD".to_vec()];
        assert_eq!(kv.send(&discard), reference.send(&discard), "seed {seed}");
        for r in [&mut kv, &mut reference] {
            assert_eq!(r.send(&[b"UNWATCH".to_vec()]), b"+OK\r\n");
            assert_eq!(r.send(&[b"FLUSHDB".to_vec()]), b"+OK\r\n");
        }
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut in_multi = false;
        for i in 0..COMMANDS_PER_STREAM {
            let mut args = if rng.chance(12) {
                transaction_command(&mut rng)
            } else {
                command(&mut rng)
            };
            if in_multi && not_in_transactions(&args) {
                args = vec![b"GET".to_vec(), rng.pick(KEYS).to_vec()];
            }
            let name = args[0].to_ascii_uppercase();
            if args.len() == 1 && (name == b"MULTI" || name == b"EXEC" || name == b"DISCARD") {
                in_multi = name == b"MULTI" || (in_multi && name != b"EXEC" && name != b"DISCARD");
            }
            if args[0].eq_ignore_ascii_case(b"DBSIZE") {
                let mut exists = vec![b"EXISTS".to_vec()];
                exists.extend(KEYS.iter().map(|k| k.to_vec()));
                assert_eq!(kv.send(&exists), reference.send(&exists), "seed {seed}");
            }
            let name = args[0].to_ascii_uppercase();
            if in_multi && name != b"MULTI" && TYPED_NAMES.contains(&&name[..]) {
                typed_in_exec += 1;
            }
            if matches!(&name[..], b"SPOP" | b"SRANDMEMBER" | b"HRANDFIELD") && args.len() >= 2 {
                if let Err(e) = check_random(&args, &mut kv, &mut reference) {
                    panic!(
                        "seed {seed}, command {i}: {}: {e} (replay with RAFT_KV_DIFF_SEED={seed})",
                        shown(&args)
                    );
                }
                compared += 1;
                random += 1;
                continue;
            }
            if matches!(&name[..], b"HSCAN" | b"SSCAN") && args.len() >= 3 {
                let (ours, theirs) = (walk_scan(&mut kv, &args), walk_scan(&mut reference, &args));
                assert_eq!(
                    ours,
                    theirs,
                    "seed {seed}, command {i}: {} (replay with RAFT_KV_DIFF_SEED={seed})",
                    shown(&args)
                );
                compared += 1;
                continue;
            }
            if TYPED_NAMES.contains(&&name[..]) && args.len() >= 2 {
                let ours = kv.send(&args);
                let theirs = reference.send(&args);
                if ours.starts_with(b"-WRONGTYPE") {
                    wrong_types += 1;
                }
                assert_eq!(
                    unordered(&args, reply(&ours)),
                    unordered(&args, reply(&theirs)),
                    "seed {seed}, command {i}: {} (replay with RAFT_KV_DIFF_SEED={seed})",
                    shown(&args)
                );
                compared += 1;
                typed += 1;
                continue;
            }
            let ours = normalize(&args, kv.send(&args));
            let theirs = normalize(&args, reference.send(&args));
            if ours.starts_with(b"-WRONGTYPE") {
                wrong_types += 1;
            }
            assert!(
                same_reply(&args, &ours, &theirs),
                "seed {seed}, command {i}: {}\n raft-kv: {:?}\n   redis: {:?}\n\
                 (replay with RAFT_KV_DIFF_SEED={seed})",
                shown(&args),
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
            );
            compared += 1;
            if name == b"EXEC" {
                match theirs.get(..2) {
                    Some(b"*-") => exec_nulls += 1,
                    Some(b"-E") if theirs.starts_with(b"-EXECABORT") => exec_aborts += 1,
                    Some([b'*', _]) => execs += 1,
                    _ => {}
                }
            }
            let is_expiry = EXPIRY_COMMANDS.contains(&&name[..])
                || (name == b"SET" && args.iter().any(|a| TIME_OPTIONS.contains(&&a[..])));
            if is_expiry && theirs.starts_with(b"-") {
                expiry_errors += 1;
            }
            if matches!(&name[..], b"TTL" | b"PTTL" | b"EXPIRETIME" | b"PEXPIRETIME")
                && theirs.starts_with(b":")
                && theirs[1] != b'-'
            {
                ttls_found += 1;
            }
        }
    }
    eprintln!(
        "{compared} replies compared with redis-server's ({expiry_errors} errors of expiry \
         commands, {ttls_found} times found by the TTL family; {typed} of hashes, sets and \
         lists, {random} random picks, {wrong_types} WRONGTYPE errors; EXEC: {execs} arrays, \
         {exec_nulls} null arrays, {exec_aborts} aborts, {typed_in_exec} typed commands queued)"
    );
    assert!(
        typed > 0 && random > 0 && wrong_types > 0,
        "the streams reach hashes, sets and wrong types"
    );
    assert!(typed_in_exec > 0, "the transactions hold typed commands");
    assert!(
        execs > 0 && exec_nulls > 0 && exec_aborts > 0,
        "the streams reach every outcome of EXEC"
    );
    assert!(compared >= COMMANDS_PER_STREAM);
    assert!(
        expiry_errors > 0 && ttls_found > 0,
        "the streams reach expiry"
    );
}

/// A RESP2 map (a flat array of bulk-string names and values) as pairs.
fn map_pairs(r: &Reply) -> Vec<(String, Reply)> {
    let Reply::Array(Some(items)) = r else {
        panic!("not a map: {r:?}")
    };
    assert_eq!(items.len() % 2, 0, "a map has pairs: {r:?}");
    items
        .chunks(2)
        .map(|p| match &p[0] {
            Reply::Bulk(Some(k)) => (String::from_utf8(k.clone()).unwrap(), p[1].clone()),
            other => panic!("a map's key is a bulk string: {other:?}"),
        })
        .collect()
}

/// Checks that one command's docs (`ours`) have the shape of Redis's
/// (`theirs`): every field ours gives, Redis gives too, of the same kind
/// (a bulk string; `subcommands` a map whose names Redis has, each checked
/// the same way); `group` and `since` the same. Redis gives more fields
/// (arguments, history) than the table knows.
fn same_docs_shape(name: &str, ours: &Reply, theirs: &Reply) {
    let (ours, theirs) = (map_pairs(ours), map_pairs(theirs));
    for required in ["summary", "since", "group"] {
        assert!(
            ours.iter().any(|(f, _)| f == required),
            "{name}: no {required}"
        );
    }
    for (field, value) in &ours {
        let Some((_, reference)) = theirs.iter().find(|(f, _)| f == field) else {
            panic!("{name}: Redis gives no field {field:?}: {theirs:?}")
        };
        if field == "subcommands" {
            let reference = map_pairs(reference);
            for (sub, docs) in map_pairs(value) {
                // A subcommand of a later Redis (CLIENT SETINFO came in
                // 7.2) has nothing to be compared with.
                let Some((_, theirs)) = reference.iter().find(|(s, _)| *s == sub) else {
                    continue;
                };
                same_docs_shape(&sub, &docs, theirs);
            }
            continue;
        }
        assert!(
            matches!(value, Reply::Bulk(Some(_))) && matches!(reference, Reply::Bulk(Some(_))),
            "{name}: {field} is a bulk string: ours {value:?}, Redis's {reference:?}"
        );
        if field == "group" || field == "since" {
            assert_eq!(value, reference, "{name}: {field}");
        }
    }
}

#[test]
fn command_docs_have_the_shape_of_redis_7s() {
    let Some(redis) = redis_server() else {
        return;
    };
    let mut cluster = Cluster::single(&[]);
    cluster.wait_leader();
    let mut kv = Raw::connect(&cluster.node_mut(0).client_addr());
    let mut reference = Raw::connect(&format!("127.0.0.1:{}", redis.port));
    let names = [
        "get",
        "SET",
        "del",
        "expire",
        "hset",
        "sadd",
        "lpush",
        "multi",
        "ping",
        "config",
        "acl",
        "acl|whoami",
        "nosuch",
    ];
    let mut args = vec![b"COMMAND".to_vec(), b"DOCS".to_vec()];
    args.extend(names.iter().map(|n| n.as_bytes().to_vec()));
    let ours = map_pairs(&reply(&kv.send(&args)));
    let theirs = map_pairs(&reply(&reference.send(&args)));
    let listed = |m: &[(String, Reply)]| m.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        listed(&ours),
        listed(&theirs),
        "the same commands, in order"
    );
    assert_eq!(ours.len(), names.len() - 1, "an unknown name is left out");
    for ((name, docs), (_, reference)) in ours.iter().zip(&theirs) {
        same_docs_shape(name, docs, reference);
    }
    // Without names: every command; each of Redis's has the same shape.
    let all = map_pairs(&reply(&kv.send(&[b"COMMAND".to_vec(), b"DOCS".to_vec()])));
    let count = reply(&kv.send(&[b"COMMAND".to_vec(), b"COUNT".to_vec()]));
    assert_eq!(Reply::Int(all.len() as i64), count);
    let mut checked = 0;
    for (name, docs) in &all {
        let args = [
            b"COMMAND".to_vec(),
            b"DOCS".to_vec(),
            name.as_bytes().to_vec(),
        ];
        let theirs = map_pairs(&reply(&reference.send(&args)));
        if let Some((_, reference)) = theirs.first() {
            same_docs_shape(name, docs, reference);
            checked += 1;
        }
    }
    eprintln!("{checked} commands' docs compared with redis-server's");
    assert!(
        checked >= all.len() - 6,
        "only raft-kv's own commands are not Redis's"
    );
}
