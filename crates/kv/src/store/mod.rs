//! The replicated state machine of raft-kv: a map from byte-string keys to
//! byte-string values that every node builds by applying the same log
//! entries in the same order.
//!
//! A log entry is a batch of [`Write`]s ([`encode_writes`]); a query is a
//! batch of [`Read`]s ([`encode_reads`]), or one with room for its replies
//! ([`encode_bounded_reads`]: the replies are sized before they are built,
//! and only those that fit are). Both are answered with the RESP2 replies
//! of their commands, concatenated in order, so that the server can write
//! the output straight to the client's socket. Answered in parts
//! ([`raft_node::StateMachine::query_parts`]), a reply holds the stored
//! values it returns (of at least [`SHARED_VALUE_BYTES`]) rather than
//! copies of them.
//!
//! Keys are kept ordered by a fixed 64-bit hash of the key (SipHash-1-3 with
//! constant keys, the same on every node and platform), then by the key. That
//! makes `SCAN` cursors stateless: cursor `c` means "the keys whose hash is at
//! least `c`", so a key present for a whole iteration is returned at least
//! once whatever is inserted or removed meanwhile. Keys sharing a hash (a
//! bucket) live in one map slot and are always returned together.
//!
//! Apply never panics on any input: bytes that are not a batch get one
//! `-ERR` reply, the same on every node.
//!
//! The store also holds the ACL users ([`crate::acl::Users`]): ACL SETUSER,
//! ACL DELUSER and the init entry are writes like the others, applied in
//! log order on every node and kept in snapshots. After each of them the
//! table is published to the node's connections ([`KvStore::publishing_users_to`]).
//!
//! Keys may have a time to live, kept by the log's time, never by a node's
//! clock: see `expiry` for how and for the clock rules.
//!
//! By concern: `batch` (the binary format of entries and queries),
//! `keyspace` (the map ordered by key hash), `expiry` (times to live and
//! the log's time), `glob` (patterns), `snapshot` (the snapshot decoder);
//! this file applies writes, answers reads and writes snapshots.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::acl::{self, PasswordHash, SharedUsers, Users};

mod batch;
mod expiry;
mod float;
mod glob;
mod keyspace;
mod snapshot;
mod strings;
mod tx;
mod typed;
mod value;

use batch::*;
pub use batch::{
    encode_bounded_reads, encode_reads, encode_writes, encoded_write_len, split_bounded_answer,
    BoundedAnswer, ReplyRoom,
};
use expiry::Deadlines;
pub use expiry::{
    invalid_expire_time, ExpireCommand, ExpireCondition, GetExTime, GetExTtl, SetName, SetTtl,
    TtlKind,
};
use keyspace::*;
pub use tx::TxOp;

pub use glob::glob_match;
use snapshot::{decode_snapshot, SNAP_HEADER, SNAP_MAGIC, SNAP_VERSION};
pub use typed::{check_typed, TypedCmd};
pub use value::WRONGTYPE;
use value::{Rng, Value};

use crate::frame::{put_array, put_bulk, put_error, put_int, put_null, put_simple};

/// The condition of a `SET`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SetCondition {
    /// Set whether or not the key exists.
    #[default]
    Always,
    /// `NX`: set only if the key does not exist.
    IfAbsent,
    /// `XX`: set only if the key exists.
    IfPresent,
}

/// A command that changes the store; a log entry holds one or more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT time | KEEPTTL]`,
    /// `SETEX`, `PSETEX`.
    Set {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
        /// When to set.
        condition: SetCondition,
        /// `GET`: reply with the old value (or null) instead of `+OK`.
        get: bool,
        /// What happens to the key's time to live when it is set.
        ttl: SetTtl,
    },
    /// `DEL key...`: replies with the number of keys removed (their times
    /// to live go with them).
    Del {
        /// The keys (a key named twice is removed, and counted, once).
        keys: Vec<Bytes>,
    },
    /// `INCR`, `INCRBY`, `DECR`, `DECRBY`: replies with the new value; the
    /// key keeps its time to live.
    IncrBy {
        /// The key (absent counts as 0).
        key: Bytes,
        /// The amount to add (negative for DECR and DECRBY).
        by: i64,
    },
    /// `APPEND key value`: replies with the new length; the key keeps its
    /// time to live.
    Append {
        /// The key (absent counts as empty).
        key: Bytes,
        /// The bytes to append.
        value: Bytes,
    },
    /// `MSET key value [key value...]`, atomically; clears the keys' times
    /// to live.
    MSet {
        /// The keys and their new values, set in order.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `GETSET key value`: replies with the old value (or null); clears the
    /// key's time to live.
    GetSet {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// `FLUSHDB`: removes every key.
    FlushDb,
    /// Compare-and-set: replies `:1` if it set `key`, `:0` if not. Setting
    /// clears the key's time to live, as SET does.
    Cas {
        /// The key.
        key: Bytes,
        /// The value the key must hold; `None`: the key must be absent.
        expected: Option<Bytes>,
        /// The value to set.
        new: Bytes,
    },
    /// `ACL SETUSER name rule...`: `+OK` or the error. The rules hold
    /// password hashes, never a password.
    AclSetUser {
        /// The user's name.
        name: Bytes,
        /// The rules, applied in order, all or none.
        rules: Vec<acl::Rule>,
    },
    /// `ACL DELUSER name...`: replies with the number of users removed.
    AclDelUser {
        /// The users' names.
        names: Vec<Bytes>,
    },
    /// The init entry of the user table: the first applied makes the
    /// default user with this password (`nopass` without) and replies
    /// `:1`; later ones change nothing and reply `:0`.
    AclInit {
        /// The hash of the founding leader's `--requirepass`.
        password: Option<PasswordHash>,
    },
    /// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`: `:1` if it set the
    /// time (a time already passed removes the key), `:0` if the key is
    /// absent or the condition refused.
    Expire {
        /// The key.
        key: Bytes,
        /// The time argument in milliseconds (seconds already converted):
        /// from the log's time at apply for EXPIRE and PEXPIRE, from the
        /// epoch for the others. May be negative.
        when_ms: i64,
        /// Which of the four (the base of the time, the name in errors).
        command: ExpireCommand,
        /// NX, XX, GT or LT.
        condition: ExpireCondition,
    },
    /// `PERSIST key`: `:1` if it removed a time to live, else `:0`.
    Persist {
        /// The key.
        key: Bytes,
    },
    /// `GETEX key EX|PX|EXAT|PXAT time | PERSIST`: the value (null if
    /// absent), and the key's time to live changed.
    GetEx {
        /// The key.
        key: Bytes,
        /// The change.
        ttl: GetExTtl,
    },
    /// A command on a hash, a set or a list, or one on keys of any type
    /// (`typed`): its arguments after the name, as sent, checked when
    /// parsed ([`check_typed`]) and read again when applied.
    Typed {
        /// Which command.
        cmd: TypedCmd,
        /// Its arguments, the key first.
        args: Vec<Bytes>,
    },
    /// `EXEC`: the queued commands of a transaction, applied at once if no
    /// watched key changed (see `tx`); replies with the array of their
    /// replies, or a null array.
    Exec {
        /// The watched keys and the versions read at WATCH.
        watches: Vec<(Bytes, u64)>,
        /// The commands, in order.
        ops: Vec<TxOp>,
    },
    /// `GETDEL key`: the value (or null), and the key removed.
    GetDel {
        /// The key.
        key: Bytes,
    },
    /// `SETRANGE key offset value`: the new length.
    SetRange {
        /// The key.
        key: Bytes,
        /// Where the value goes (zero bytes fill up to it).
        offset: u64,
        /// The bytes to write.
        value: Bytes,
    },
    /// `MSETNX key value...`: `:1` if it set every key (none existed).
    MSetNx {
        /// The keys and their values.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `INCRBYFLOAT key by`: the new value.
    IncrByFloat {
        /// The key.
        key: Bytes,
        /// The increment, as sent (parsed when applied).
        by: Bytes,
    },
}

/// A read-only command; a query holds one or more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// `GET key`: the value or null.
    Get {
        /// The key.
        key: Bytes,
    },
    /// `MGET key...`: an array of values or nulls.
    MGet {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// `EXISTS key...`: how many of the keys exist (a key named twice
    /// counts twice, as in Redis).
    Exists {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// `STRLEN key`: the length of the value (0 if absent).
    Strlen {
        /// The key.
        key: Bytes,
    },
    /// `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`: -2 if absent, -1 if it
    /// has no time to live, else the time left or the deadline.
    Ttl {
        /// The key.
        key: Bytes,
        /// Which time.
        kind: TtlKind,
    },
    /// `DBSIZE`: the number of keys.
    DbSize,
    /// The number of keys with a time to live (INFO keyspace's `expires`).
    VolatileLen,
    /// `KEYS pattern`: the keys matching a glob pattern ([`glob_match`]),
    /// in no particular order.
    Keys {
        /// The glob pattern.
        pattern: Bytes,
    },
    /// `SCAN cursor [MATCH pattern] [COUNT count]`: a two-element array,
    /// the next cursor (`"0"` at the end) and the keys found.
    Scan {
        /// Where to continue (0 to start).
        cursor: u64,
        /// Only return keys matching this glob pattern (applied after the
        /// keys are chosen, as in Redis).
        pattern: Option<Bytes>,
        /// How many keys to examine at least (0 is taken as 1).
        count: usize,
    },
    /// A read-only command on a hash, a set or a list, or on keys of any
    /// type (`typed`), as [`Write::Typed`].
    Typed {
        /// Which command.
        cmd: TypedCmd,
        /// Its arguments, the key first.
        args: Vec<Bytes>,
    },
    /// `GETRANGE key start end`: part of the value.
    GetRange {
        /// The key.
        key: Bytes,
        /// The first byte (negative: from the end).
        start: i64,
        /// The last byte, included.
        end: i64,
    },
    /// The keys' versions (WATCH): an array of integers.
    Versions {
        /// The keys.
        keys: Vec<Bytes>,
    },
}

// ---------------------------------------------------------------------------
// Helpers: integers, the key hash, glob matching, the checksum
// ---------------------------------------------------------------------------

/// Parses an i64 the way Redis's `string2ll` does: an optional `-`, no `+`,
/// no spaces, no leading zeros (except "0" itself), at most 20 characters.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if v > i64::MIN.unsigned_abs() {
            None
        } else {
            Some(0i64.wrapping_sub_unsigned(v))
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Writes the decimal digits of `n` at the end of `buf`; returns them.
fn u64_digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The decimal form of `n` as a value.
fn i64_value(n: i64) -> Bytes {
    let mut buf = [0u8; 21];
    let mut digits = [0u8; 20];
    let d = u64_digits(n.unsigned_abs(), &mut digits);
    let start = usize::from(n >= 0);
    buf[0] = b'-';
    buf[1..=d.len()].copy_from_slice(d);
    Bytes::copy_from_slice(&buf[start..=d.len()])
}

/// The fixed hash that orders the keys (and that SCAN cursors are made
/// of): SipHash-1-3 under constant keys, so that an attacker cannot cheaply
/// make many keys share a hash, and the same on every node.
fn key_hash(key: &[u8]) -> u64 {
    use std::hash::Hasher;
    // "RAFT-KVS", "scan-ord": changing them would change every cursor.
    let mut h =
        siphasher::sip::SipHasher13::new_with_keys(0x5241_4654_2d4b_5653, 0x7363_616e_2d6f_7264);
    h.write(key);
    h.finish()
}

/// CRC-32C (Castagnoli), the checksum of the file store too.
fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Writes a bulk reply, growing the buffer once.
fn bulk(out: &mut BytesMut, v: &[u8]) {
    out.reserve(v.len() + 16);
    put_bulk(out, v);
}

/// A stored value (or key) of at least this many bytes is not copied into
/// an answer built in parts ([`raft_node::StateMachine::query_parts`]): the
/// answer holds a clone of the stored `Bytes` (a reference count) as a part
/// of its own. A shorter one is copied with the RESP framing around it: a
/// copy of a few KiB costs less than a part of its own (an entry in the
/// list of parts, one more buffer in the vectored write that sends it), and
/// a reply of many short values stays a few large parts.
///
/// A shared value is kept alive by the reply until it is written, even if
/// the key is overwritten or deleted meanwhile: that memory was counted
/// already when the key held it, and only one copy of it exists however
/// many replies hold it. Values are stored in buffers of their own (copied
/// out of the log entry that set them), except after a snapshot is
/// restored: they are then slices of the snapshot's one buffer (a file
/// mapped into memory, or the bytes received), which a reply holding one
/// keeps alive until it is written. An APPEND to a value a reply holds
/// copies it into a new buffer instead of growing it in place.
pub const SHARED_VALUE_BYTES: usize = 4096;

/// The most a chunk of framing of an answer in parts reserves at first.
const FRAMING_CHUNK: usize = 16 * 1024;

/// An answer being built: RESP framing and short values are copied into
/// `chunk`; a value of at least `share_from` bytes ends the chunk (which
/// becomes a part) and is added as a part of its own, a clone of the
/// stored `Bytes`.
struct Answer {
    /// The parts before `chunk`.
    parts: Vec<Bytes>,
    /// Where framing and copied values go: the next part.
    chunk: BytesMut,
    /// The length from which a value is shared rather than copied
    /// (`usize::MAX`: never).
    share_from: usize,
}

impl Answer {
    /// An answer in one buffer, every value copied into it
    /// ([`raft_node::StateMachine::query`]).
    fn whole() -> Answer {
        Answer {
            parts: Vec::new(),
            chunk: BytesMut::new(),
            share_from: usize::MAX,
        }
    }

    /// An answer in parts, sharing values of [`SHARED_VALUE_BYTES`] or more
    /// ([`raft_node::StateMachine::query_parts`]).
    fn in_parts() -> Answer {
        Answer {
            parts: Vec::new(),
            chunk: BytesMut::new(),
            share_from: SHARED_VALUE_BYTES,
        }
    }

    /// Makes room for an answer of `total` bytes: all of it in one buffer,
    /// or, in parts, at most [`FRAMING_CHUNK`] (most of a large answer is
    /// shared values).
    fn reserve(&mut self, total: usize) {
        let n = if self.share_from == usize::MAX {
            total
        } else {
            total.min(FRAMING_CHUNK)
        };
        self.chunk.reserve(n);
    }

    /// Writes the bulk reply of a stored value or key.
    fn bulk(&mut self, v: &Bytes) {
        if v.len() < self.share_from {
            bulk(&mut self.chunk, v);
            return;
        }
        let mut digits = [0u8; 20];
        self.chunk.reserve(1 + 20 + 2);
        self.chunk.put_u8(b'$');
        self.chunk
            .put_slice(u64_digits(v.len() as u64, &mut digits));
        self.chunk.put_slice(b"\r\n");
        self.parts.push(self.chunk.split().freeze());
        self.parts.push(v.clone());
        self.chunk.extend_from_slice(b"\r\n");
    }

    /// The answer in one buffer (built by [`Answer::whole`], whose values
    /// are all copied).
    fn into_bytes(self) -> Bytes {
        debug_assert!(self.parts.is_empty());
        self.chunk.freeze()
    }

    /// The answer's parts, in order; none if it is empty.
    fn into_parts(mut self) -> Vec<Bytes> {
        if !self.chunk.is_empty() {
            self.parts.push(self.chunk.freeze());
        }
        self.parts
    }
}

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

/// The state machine of raft-kv: byte-string keys and values, ordered by
/// the keys' hashes (see the module documentation), their deadlines, and
/// the ACL users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvStore {
    map: Map,
    /// The number of keys (the map counts hashes).
    len: usize,
    /// The log's time (ms since the Unix epoch): the last time entry
    /// applied, never going back; 0 before the first.
    now_ms: u64,
    /// The keys' deadlines, all later than `now_ms`, all of existing keys.
    deadlines: Deadlines,
    /// This node's clock, read only to answer TTL and PTTL.
    wall_clock: WallClock,
    /// The ACL users.
    users: Users,
    /// Where the users go after each change.
    publish: Publisher,
    /// The entry and place in it of the write being applied: the seed of
    /// SPOP, SRANDMEMBER and HRANDFIELD.
    seed: Seed,
    /// The versions of recently changed keys (WATCH).
    versions: tx::Versions,
}

/// The log index of the entry being applied and the place of the write in
/// it: no part of the state.
#[derive(Debug, Clone, Copy, Default)]
struct Seed((u64, u64));

impl Seed {
    fn rng(self) -> Rng {
        Rng::for_command(self.0 .0, self.0 .1)
    }
}

impl PartialEq for Seed {
    fn eq(&self, _: &Seed) -> bool {
        true
    }
}

impl Eq for Seed {}

/// The node's [`SharedUsers`], if any: no part of the state (every store
/// compares equal whatever it publishes to).
#[derive(Debug, Clone, Default)]
struct Publisher(Option<Arc<SharedUsers>>);

/// The clock TTL and PTTL read (ms since the Unix epoch): the system's, or
/// a fixed time in tests. No part of the state.
#[derive(Debug, Clone, Copy, Default)]
struct WallClock(Option<u64>);

impl WallClock {
    fn now_ms(self) -> u64 {
        self.0.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        })
    }
}

impl PartialEq for WallClock {
    fn eq(&self, _: &WallClock) -> bool {
        true
    }
}

impl Eq for WallClock {}

impl PartialEq for Publisher {
    fn eq(&self, _: &Publisher) -> bool {
        true
    }
}

impl Eq for Publisher {}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that publishes its users to `shared` after every
    /// change (and once now).
    pub fn publishing_users_to(shared: Arc<SharedUsers>) -> Self {
        let store = KvStore {
            publish: Publisher(Some(shared)),
            ..KvStore::default()
        };
        store.publish_users();
        store
    }

    /// The ACL users.
    pub fn users(&self) -> &Users {
        &self.users
    }

    fn publish_users(&self) {
        if let Some(shared) = &self.publish.0 {
            shared.publish(self.users.clone());
        }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every key and value, in (hash, key) order.
    fn iter(&self) -> impl Iterator<Item = (&Bytes, &Value)> {
        self.map.values().flat_map(Slot::iter)
    }

    /// What `key` holds, of any type.
    fn get(&self, key: &[u8]) -> Option<&Value> {
        lookup(&self.map, key_hash(key), key)
    }

    /// The string `key` holds: `Err` (WRONGTYPE) if it holds another type.
    fn get_str(&self, key: &[u8]) -> Result<Option<&Bytes>, &'static str> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(WRONGTYPE),
        }
    }

    /// Sets `key` to the string `value` (copied), whatever it held.
    fn put(&mut self, key: &[u8], value: &[u8]) {
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(v) => *v = Value::Str(Bytes::copy_from_slice(value)),
            Spot::Absent(a) => {
                a.fill(
                    Bytes::copy_from_slice(key),
                    Value::Str(Bytes::copy_from_slice(value)),
                );
                self.len += 1;
            }
        }
    }

    fn write(&mut self, op: WriteOp<'_>, out: &mut BytesMut) {
        match op {
            WriteOp::Set {
                key,
                value,
                condition,
                get,
                ttl,
            } => {
                // The time is checked first, as Redis does.
                let deadline = match self.set_deadline(ttl) {
                    Ok(d) => d,
                    Err(e) => return put_error(out, &e),
                };
                match spot(&mut self.map, key_hash(key), key) {
                    Spot::Present(v) => {
                        if get {
                            // SET GET wants the old string: any other type
                            // is an error and nothing is set (Redis 7).
                            let Value::Str(old) = v else {
                                return put_error(out, WRONGTYPE);
                            };
                            bulk(out, old);
                        }
                        if condition == SetCondition::IfAbsent {
                            if !get {
                                put_null(out);
                            }
                            return;
                        }
                        *v = Value::Str(Bytes::copy_from_slice(value));
                    }
                    Spot::Absent(a) => {
                        if get || condition == SetCondition::IfPresent {
                            put_null(out);
                        }
                        if condition == SetCondition::IfPresent {
                            return;
                        }
                        a.fill(
                            Bytes::copy_from_slice(key),
                            Value::Str(Bytes::copy_from_slice(value)),
                        );
                        self.len += 1;
                    }
                }
                if !get {
                    put_simple(out, "OK");
                }
                self.settle_ttl(key, ttl, deadline);
            }
            WriteOp::Del(keys) => {
                let mut n: i64 = 0;
                for k in keys {
                    if remove(&mut self.map, key_hash(k), k).is_some() {
                        self.deadlines.clear(k);
                        n += 1;
                    }
                }
                self.len -= n as usize;
                put_int(out, n);
            }
            WriteOp::IncrBy { key, by } => match spot(&mut self.map, key_hash(key), key) {
                Spot::Present(Value::Str(v)) => match parse_i64(v) {
                    None => put_error(out, "ERR value is not an integer or out of range"),
                    Some(old) => match old.checked_add(by) {
                        None => put_error(out, "ERR increment or decrement would overflow"),
                        Some(n) => {
                            *v = i64_value(n);
                            put_int(out, n);
                        }
                    },
                },
                Spot::Present(_) => put_error(out, WRONGTYPE),
                Spot::Absent(a) => {
                    a.fill(Bytes::copy_from_slice(key), Value::Str(i64_value(by)));
                    self.len += 1;
                    put_int(out, by);
                }
            },
            WriteOp::Append { key, value } => match spot(&mut self.map, key_hash(key), key) {
                Spot::Present(Value::Str(v)) => {
                    let total = v.len() + value.len();
                    if total > MAX_STRING {
                        put_error(
                            out,
                            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
                        );
                        return;
                    }
                    // Grow in place when the buffer is ours alone, so that
                    // appending again and again costs amortized O(1) a byte.
                    let mut m = match std::mem::take(v).try_into_mut() {
                        Ok(m) => m,
                        Err(old) => {
                            let mut m = BytesMut::with_capacity(total);
                            m.extend_from_slice(&old);
                            m
                        }
                    };
                    m.extend_from_slice(value);
                    *v = m.freeze();
                    put_int(out, total as i64);
                }
                Spot::Present(_) => put_error(out, WRONGTYPE),
                Spot::Absent(a) => {
                    if value.len() > MAX_STRING {
                        put_error(
                            out,
                            "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
                        );
                        return;
                    }
                    a.fill(
                        Bytes::copy_from_slice(key),
                        Value::Str(Bytes::copy_from_slice(value)),
                    );
                    self.len += 1;
                    put_int(out, value.len() as i64);
                }
            },
            WriteOp::MSet(mut items) => {
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    self.put(k, v);
                    self.deadlines.clear(k);
                }
                put_simple(out, "OK");
            }
            WriteOp::GetSet { key, value } => {
                match spot(&mut self.map, key_hash(key), key) {
                    Spot::Present(Value::Str(v)) => {
                        bulk(out, v);
                        *v = Bytes::copy_from_slice(value);
                    }
                    Spot::Present(_) => return put_error(out, WRONGTYPE),
                    Spot::Absent(a) => {
                        put_null(out);
                        a.fill(
                            Bytes::copy_from_slice(key),
                            Value::Str(Bytes::copy_from_slice(value)),
                        );
                        self.len += 1;
                    }
                }
                self.deadlines.clear(key);
            }
            WriteOp::FlushDb => {
                discard(std::mem::take(&mut self.map));
                self.deadlines.clear_all();
                self.len = 0;
                put_simple(out, "OK");
            }
            WriteOp::Cas { key, expected, new } => {
                let done = match (spot(&mut self.map, key_hash(key), key), expected) {
                    // A key of another type holds no expected string.
                    (Spot::Present(v), Some(e)) if v.as_str().is_some_and(|s| s[..] == *e) => {
                        *v = Value::Str(Bytes::copy_from_slice(new));
                        true
                    }
                    (Spot::Absent(a), None) => {
                        a.fill(
                            Bytes::copy_from_slice(key),
                            Value::Str(Bytes::copy_from_slice(new)),
                        );
                        self.len += 1;
                        true
                    }
                    _ => false,
                };
                if done {
                    self.deadlines.clear(key);
                }
                put_int(out, i64::from(done));
            }
            WriteOp::AclSetUser { name, rules } => {
                match self.users.set_user(name, rules) {
                    Ok(()) => put_simple(out, "OK"),
                    Err(e) => put_error(out, &e.to_string()),
                }
                self.publish_users();
            }
            WriteOp::AclDelUser(names) => {
                match self.users.del_users(names) {
                    Ok(n) => put_int(out, n as i64),
                    Err(e) => put_error(out, &e.to_string()),
                }
                self.publish_users();
            }
            WriteOp::AclInit(password) => {
                put_int(out, i64::from(self.users.init(password)));
                self.publish_users();
            }
            WriteOp::Expire {
                key,
                when_ms,
                command,
                condition,
            } => self.write_expire(key, when_ms, command, condition, out),
            WriteOp::Persist(key) => self.write_persist(key, out),
            WriteOp::GetEx { key, op } => self.write_getex(key, op, out),
            // The keys it changes are recorded by `apply_write`.
            WriteOp::Typed(cmd, args) => self.write_typed(cmd, args, out, &mut Vec::new()),
            WriteOp::GetDel(key) => self.write_getdel(key, out),
            WriteOp::SetRange { key, offset, value } => {
                self.write_setrange(key, offset, value, out)
            }
            WriteOp::MSetNx(items) => self.write_msetnx(items, out),
            WriteOp::IncrByFloat { key, by } => self.write_incrbyfloat(key, by, out),
            // Applied by `apply_write`, never here.
            WriteOp::Exec(_) => put_error(out, "ERR EXEC inside EXEC"),
        }
    }

    /// Answers a query, plain ([`encode_reads`]) or bounded
    /// ([`encode_bounded_reads`]), into `out`.
    fn answer(&self, query: &[u8], out: &mut Answer) {
        if query.first() == Some(&BOUNDED_READS_FORMAT) {
            self.bounded_query(&query[1..], out);
            return;
        }
        let (body, _) = match check_batch(query, READS_FORMAT, parse_read) {
            Ok(b) => b,
            Err(why) => {
                out.chunk.extend_from_slice(&batch_error("query", &why));
                return;
            }
        };
        let mut r = Reader { buf: body };
        while !r.is_empty() {
            match parse_read(&mut r) {
                Ok(op) => self.read(op, out),
                Err(_) => break, // checked above: cannot happen
            }
        }
    }

    /// Answers a bounded query (its body after the format byte) into `out`:
    /// see [`encode_bounded_reads`]. The counts are written first, so that
    /// they begin the first part.
    fn bounded_query(&self, query: &[u8], out: &mut Answer) {
        let mut r = Reader { buf: query };
        let (Some(soft), Some(hard), Some(limit)) = (r.u64(), r.u64(), r.u64()) else {
            out.chunk
                .extend_from_slice(&batch_error("query", "its room is cut off"));
            return;
        };
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let (soft, hard, limit) = (size(soft), size(hard), size(limit));
        let body = r.buf;
        let mut n = 0;
        while !r.is_empty() {
            if let Err(e) = parse_read(&mut r) {
                let e = batch_error("query", &format!("command {}: {e}", n + 1));
                out.chunk.extend_from_slice(&e);
                return;
            }
            n += 1;
        }
        // First the sizes: which reads are answered, which refused, and the
        // answer's length; then the answer, allocated once (in one buffer;
        // in parts, its framing and short values).
        let mut r = Reader { buf: body };
        let mut refusals: Vec<Option<Bytes>> = Vec::new();
        let mut total = 0usize;
        while !r.is_empty() {
            let Ok(op) = parse_read(&mut r) else {
                break; // checked above: cannot happen
            };
            let n = self.reply_size(&op);
            let (n, refusal) = if n > limit {
                let mut e = BytesMut::new();
                put_error(
                    &mut e,
                    &format!(
                        "ERR the reply would be {n} bytes, more than the client output buffer limit of {limit} bytes (--client-output-buffer-limit)"
                    ),
                );
                (e.len(), Some(e.freeze()))
            } else {
                (n, None)
            };
            let room = if refusals.is_empty() { hard } else { soft };
            if total.saturating_add(n) > room {
                break;
            }
            total += n;
            refusals.push(refusal);
        }
        let answered = len32(refusals.len());
        let refused = len32(refusals.iter().filter(|e| e.is_some()).count());
        // The slack keeps the replies' own reservations from growing it.
        out.reserve(8 + total + 64);
        out.chunk.put_u32_le(answered);
        out.chunk.put_u32_le(refused);
        let mut r = Reader { buf: body };
        for refusal in refusals {
            let Ok(op) = parse_read(&mut r) else {
                break; // checked above: cannot happen
            };
            match refusal {
                Some(e) => out.chunk.extend_from_slice(&e),
                None => self.read(op, out),
            }
        }
    }

    /// The length of the reply [`KvStore::read`] would write for `op`, found
    /// without building it.
    fn reply_size(&self, op: &ReadOp<'_>) -> usize {
        let value = |k: &[u8]| match self.get(k) {
            Some(Value::Str(v)) => bulk_len(v.len()),
            Some(_) => WRONGTYPE.len() + 3,
            None => 5,
        };
        match op {
            ReadOp::Get(key) => value(key),
            // MGET answers null for a key of another type.
            ReadOp::MGet(keys) => {
                array_len(keys.len())
                    + keys
                        .map(|k| {
                            self.get_str(k)
                                .ok()
                                .flatten()
                                .map_or(5, |v| bulk_len(v.len()))
                        })
                        .fold(0, usize::saturating_add)
            }
            ReadOp::Typed(cmd, args) => self.typed_reply_size(*cmd, *args),
            ReadOp::Strlen(key) if self.get_str(key).is_err() => WRONGTYPE.len() + 3,
            // An integer: at most ":-9223372036854775808\r\n".
            ReadOp::Exists(_)
            | ReadOp::Strlen(_)
            | ReadOp::Ttl(..)
            | ReadOp::DbSize
            | ReadOp::VolatileLen => 24,
            ReadOp::GetRange(key, start, end) => match self.getrange(key, *start, *end) {
                Ok(v) => bulk_len(v.len()),
                Err(e) => e.len() + 3,
            },
            ReadOp::Versions(keys) => {
                array_len(keys.len())
                    + keys
                        .map(|k| 3 + decimal_len(self.versions.get(k)))
                        .sum::<usize>()
            }
            ReadOp::Keys(pattern) => {
                let pattern = *pattern;
                let (n, bytes) = self
                    .iter()
                    .filter(|(k, _)| pattern == b"*" || glob_match(pattern, k))
                    .fold((0, 0usize), |(n, bytes), (k, _)| {
                        (n + 1, bytes.saturating_add(bulk_len(k.len())))
                    });
                array_len(n) + bytes
            }
            ReadOp::Scan {
                cursor,
                pattern,
                count,
            } => {
                let (next, keys) = self.scan(*cursor, *pattern, *count);
                array_len(2)
                    + bulk_len(decimal_len(next))
                    + array_len(keys.len())
                    + keys.iter().map(|k| bulk_len(k.len())).sum::<usize>()
            }
        }
    }

    /// The keys one SCAN step returns and the cursor after it.
    fn scan(&self, cursor: u64, pattern: Option<&[u8]>, count: usize) -> (u64, Vec<&Bytes>) {
        let pattern = pattern.filter(|p| *p != b"*");
        let count = count.max(1);
        let mut examined = 0;
        let mut next = 0;
        let mut keys: Vec<&Bytes> = Vec::new();
        for (&h, slot) in self.map.range(cursor..) {
            if examined >= count {
                next = h;
                break;
            }
            examined += slot.len();
            for (k, _) in slot.iter() {
                if pattern.is_none_or(|p| glob_match(p, k)) {
                    keys.push(k);
                }
            }
        }
        (next, keys)
    }

    /// Writes the reply to `op`: stored values and keys through
    /// [`Answer::bulk`] (copied, or shared in an answer in parts), the rest
    /// into its current chunk.
    fn read(&self, op: ReadOp<'_>, answer: &mut Answer) {
        // Room for a short reply (a bulk reply reserves its own): the
        // output starts empty so that one GET allocates once.
        if !matches!(op, ReadOp::Get(_)) {
            answer.chunk.reserve(24);
        }
        match op {
            ReadOp::Get(key) => match self.get_str(key) {
                Ok(Some(v)) => answer.bulk(v),
                Ok(None) => {
                    answer.chunk.reserve(5);
                    put_null(&mut answer.chunk);
                }
                Err(e) => put_error(&mut answer.chunk, e),
            },
            ReadOp::MGet(keys) => {
                put_array(&mut answer.chunk, keys.len());
                for k in keys {
                    match self.get_str(k).ok().flatten() {
                        Some(v) => answer.bulk(v),
                        None => {
                            answer.chunk.reserve(5);
                            put_null(&mut answer.chunk);
                        }
                    }
                }
            }
            ReadOp::Exists(keys) => {
                let n = keys.filter(|k| self.get(k).is_some()).count();
                put_int(&mut answer.chunk, n as i64);
            }
            ReadOp::Strlen(key) => match self.get_str(key) {
                Ok(v) => put_int(&mut answer.chunk, v.map_or(0, |v| v.len() as i64)),
                Err(e) => put_error(&mut answer.chunk, e),
            },
            ReadOp::Typed(cmd, args) => self.read_typed(cmd, args, answer),
            ReadOp::Ttl(key, kind) => {
                let wall_ms = match kind {
                    TtlKind::Ttl | TtlKind::PTtl => self.wall_clock.now_ms(),
                    TtlKind::ExpireTime | TtlKind::PExpireTime => 0,
                };
                self.read_ttl(key, kind, wall_ms, &mut answer.chunk)
            }
            ReadOp::DbSize => put_int(&mut answer.chunk, self.len as i64),
            ReadOp::VolatileLen => put_int(&mut answer.chunk, self.deadlines.len() as i64),
            ReadOp::Keys(pattern) => {
                if pattern == b"*" {
                    put_array(&mut answer.chunk, self.len);
                    for (k, _) in self.iter() {
                        answer.bulk(k);
                    }
                } else {
                    let keys: Vec<&Bytes> = self
                        .iter()
                        .map(|(k, _)| k)
                        .filter(|k| glob_match(pattern, k))
                        .collect();
                    put_array(&mut answer.chunk, keys.len());
                    for k in keys {
                        answer.bulk(k);
                    }
                }
            }
            ReadOp::Scan {
                cursor,
                pattern,
                count,
            } => {
                let (next, keys) = self.scan(cursor, pattern, count);
                let out = &mut answer.chunk;
                put_array(out, 2);
                let mut digits = [0u8; 20];
                put_bulk(out, u64_digits(next, &mut digits));
                put_array(out, keys.len());
                for k in keys {
                    answer.bulk(k);
                }
            }
            ReadOp::GetRange(key, start, end) => match self.getrange(key, start, end) {
                Ok(v) => bulk(&mut answer.chunk, v),
                Err(e) => put_error(&mut answer.chunk, e),
            },
            ReadOp::Versions(keys) => self.read_versions(keys, &mut answer.chunk),
        }
    }
}

impl raft_node::StateMachine for KvStore {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        let (body, n) = match check_batch(command, WRITES_FORMAT, parse_write) {
            Ok(b) => b,
            Err(why) => return batch_error("command", &why),
        };
        let mut out = BytesMut::with_capacity(n.saturating_mul(8));
        let mut r = Reader { buf: body };
        let mut position = 0;
        while !r.is_empty() {
            // The seed of any random pick: from the log, the same on
            // every node.
            self.seed.0 = (index, position);
            position += 1;
            match parse_write(&mut r) {
                Ok(op) => self.apply_write(index, op, &mut out),
                Err(_) => break, // checked above: cannot happen
            }
        }
        out.freeze()
    }

    /// Keys expire by the log's time (see `expiry`).
    fn uses_log_time(&self) -> bool {
        true
    }

    /// Moves the log's time forward and removes the keys due by then, at
    /// the same log position on every node.
    fn advance_time(&mut self, index: u64, time_ms: u64) {
        self.advance_time_at(index, time_ms);
    }

    /// The deadline of the key that expires first.
    fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.next_ms()
    }

    fn query(&self, query: &[u8]) -> Bytes {
        let mut answer = Answer::whole();
        self.answer(query, &mut answer);
        answer.into_bytes()
    }

    /// The answer [`KvStore::query`] gives, in parts: RESP framing and
    /// values shorter than [`SHARED_VALUE_BYTES`] copied into chunks, longer
    /// values (and keys) as clones of the stored `Bytes`, not copies. The
    /// counts of a bounded query begin the first part.
    fn query_parts(&self, query: &[u8]) -> Vec<Bytes> {
        let mut answer = Answer::in_parts();
        self.answer(query, &mut answer);
        answer.into_parts()
    }

    fn snapshot(&self) -> Bytes {
        let mut users = Vec::new();
        acl::codec::encode(&self.users, &mut users);
        let size = SNAP_HEADER
            + 4
            + 4
            + users.len()
            + expiry::snapshot_part_len(&self.deadlines)
            + self.versions.snapshot_part_len()
            + self
                .iter()
                .map(|(k, v)| 4 + k.len() + v.snapshot_len())
                .sum::<usize>();
        let mut b = BytesMut::with_capacity(size);
        b.put_slice(SNAP_MAGIC);
        b.put_u8(SNAP_VERSION);
        b.put_u64_le(self.len as u64);
        for (k, v) in self.iter() {
            put_str(&mut b, k);
            v.put_snapshot(&mut b);
        }
        put_str(&mut b, &users);
        expiry::put_snapshot_part(&mut b, self.now_ms, &self.deadlines);
        self.versions.put_snapshot_part(&mut b);
        let crc = crc32c(&b);
        b.put_u32_le(crc);
        b.freeze()
    }

    /// Replaces the store with a snapshot; on error the store is unchanged.
    /// Keys and values are slices of `snapshot` (a mapped file stays mapped
    /// while any of them lives) rather than copies.
    fn restore(&mut self, snapshot: Bytes) -> Result<(), raft_node::RestoreError> {
        let restored = decode_snapshot(&snapshot)
            .map_err(|reason| raft_node::RestoreError::Malformed { reason })?;
        discard(std::mem::replace(&mut self.map, restored.map));
        self.len = restored.len;
        self.users = restored.users;
        self.now_ms = restored.now_ms;
        self.deadlines = restored.deadlines;
        self.versions = restored.versions;
        self.publish_users();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, Limits};
    use raft_node::example::KvCommand;
    use raft_node::StateMachine;
    use std::collections::BTreeSet;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn sv(s: &str) -> Value {
        Value::Str(b(s))
    }

    fn limits() -> Limits {
        Limits {
            max_bulk: 1 << 30,
            max_elements: 1 << 24,
            max_depth: 8,
            max_line: 1 << 20,
        }
    }

    /// Parses the whole output into frames (panics if it is not exactly that).
    fn frames(mut out: &[u8]) -> Vec<Frame> {
        let mut v = Vec::new();
        while !out.is_empty() {
            let (f, used) = Frame::parse(out, &limits()).expect("complete RESP frames");
            v.push(f);
            out = &out[used..];
        }
        v
    }

    fn w(s: &mut KvStore, writes: &[Write]) -> Vec<Frame> {
        let out = frames(&s.apply(1, &encode_writes(writes)));
        assert_eq!(out.len(), writes.len());
        out
    }

    fn w1(s: &mut KvStore, write: Write) -> Frame {
        w(s, &[write]).remove(0)
    }

    fn r(s: &KvStore, reads: &[Read]) -> Vec<Frame> {
        let out = frames(&s.query(&encode_reads(reads)));
        assert_eq!(out.len(), reads.len());
        out
    }

    fn r1(s: &KvStore, read: Read) -> Frame {
        r(s, &[read]).remove(0)
    }

    fn get(s: &KvStore, k: &str) -> Frame {
        r1(s, Read::Get { key: b(k) })
    }

    fn set(k: &str, v: &str) -> Write {
        set_with(k, v, SetCondition::Always, false)
    }

    fn set_with(k: &str, v: &str, condition: SetCondition, get: bool) -> Write {
        Write::Set {
            key: b(k),
            value: b(v),
            condition,
            get,
            ttl: SetTtl::Clear,
        }
    }

    fn incr(k: &str, by: i64) -> Write {
        Write::IncrBy { key: b(k), by }
    }

    fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    fn bulk_f(s: &str) -> Frame {
        Frame::Bulk(b(s))
    }

    fn err(s: &str) -> Frame {
        Frame::Error(s.into())
    }

    fn is_error(f: &Frame) -> bool {
        matches!(f, Frame::Error(e) if e.starts_with("ERR "))
    }

    /// xorshift64*: a small seeded generator for the randomized tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn bytes(&mut self, max: u64) -> Vec<u8> {
            let n = self.below(max + 1);
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn set_and_get() {
        let mut s = KvStore::new();
        assert_eq!(get(&s, "k"), Frame::Null);
        assert_eq!(w1(&mut s, set("k", "v")), ok());
        assert_eq!(get(&s, "k"), bulk_f("v"));
        assert_eq!(w1(&mut s, set("k", "w")), ok());
        assert_eq!(get(&s, "k"), bulk_f("w"));
        assert_eq!(s.len(), 1);
        // Empty keys and values are keys and values.
        assert_eq!(w1(&mut s, set("", "")), ok());
        assert_eq!(get(&s, ""), bulk_f(""));
        assert_eq!(s.len(), 2);
        // Binary-safe.
        let key = Bytes::from_static(b"\0\r\n\xff");
        let value = Bytes::from_static(b"a\r\nb\0");
        let reply = w1(
            &mut s,
            Write::Set {
                key: key.clone(),
                value: value.clone(),
                condition: SetCondition::Always,
                get: false,
                ttl: SetTtl::Clear,
            },
        );
        assert_eq!(reply, ok());
        assert_eq!(r1(&s, Read::Get { key }), Frame::Bulk(value));
    }

    #[test]
    fn set_nx_xx_get_combinations() {
        use SetCondition::*;
        let mut s = KvStore::new();
        // NX: only when absent.
        assert_eq!(w1(&mut s, set_with("k", "1", IfAbsent, false)), ok());
        assert_eq!(w1(&mut s, set_with("k", "2", IfAbsent, false)), Frame::Null);
        assert_eq!(get(&s, "k"), bulk_f("1"));
        // XX: only when present.
        assert_eq!(
            w1(&mut s, set_with("x", "1", IfPresent, false)),
            Frame::Null
        );
        assert_eq!(get(&s, "x"), Frame::Null);
        assert_eq!(w1(&mut s, set_with("k", "3", IfPresent, false)), ok());
        assert_eq!(get(&s, "k"), bulk_f("3"));
        // GET: the old value, and the set happens.
        assert_eq!(w1(&mut s, set_with("k", "4", Always, true)), bulk_f("3"));
        assert_eq!(get(&s, "k"), bulk_f("4"));
        assert_eq!(w1(&mut s, set_with("g", "1", Always, true)), Frame::Null);
        assert_eq!(get(&s, "g"), bulk_f("1"));
        // NX GET: the old value; set only when absent.
        assert_eq!(w1(&mut s, set_with("k", "5", IfAbsent, true)), bulk_f("4"));
        assert_eq!(get(&s, "k"), bulk_f("4"));
        assert_eq!(w1(&mut s, set_with("n", "1", IfAbsent, true)), Frame::Null);
        assert_eq!(get(&s, "n"), bulk_f("1"));
        // XX GET: the old value; set only when present.
        assert_eq!(w1(&mut s, set_with("k", "6", IfPresent, true)), bulk_f("4"));
        assert_eq!(get(&s, "k"), bulk_f("6"));
        assert_eq!(w1(&mut s, set_with("y", "1", IfPresent, true)), Frame::Null);
        assert_eq!(get(&s, "y"), Frame::Null);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn del_counts_each_removed_key_once() {
        let mut s = KvStore::new();
        w(&mut s, &[set("a", "1"), set("b", "2"), set("c", "3")]);
        let del = |keys: &[&str]| Write::Del {
            keys: keys.iter().map(|k| b(k)).collect(),
        };
        assert_eq!(w1(&mut s, del(&["a", "a", "x", "b"])), Frame::Integer(2));
        assert_eq!(s.len(), 1);
        assert_eq!(w1(&mut s, del(&["a"])), Frame::Integer(0));
        assert_eq!(w1(&mut s, del(&[])), Frame::Integer(0));
        assert_eq!(get(&s, "c"), bulk_f("3"));
        assert_eq!(get(&s, "a"), Frame::Null);
    }

    #[test]
    fn incr_decr_and_their_errors() {
        let mut s = KvStore::new();
        assert_eq!(w1(&mut s, incr("n", 1)), Frame::Integer(1));
        assert_eq!(w1(&mut s, incr("n", 41)), Frame::Integer(42));
        assert_eq!(w1(&mut s, incr("n", -50)), Frame::Integer(-8));
        assert_eq!(get(&s, "n"), bulk_f("-8"));
        assert_eq!(w1(&mut s, incr("m", -3)), Frame::Integer(-3));
        assert_eq!(get(&s, "m"), bulk_f("-3"));
        // Overflow at both ends; the value is left alone.
        let max = i64::MAX.to_string();
        w1(&mut s, set("big", &max));
        let overflow = err("ERR increment or decrement would overflow");
        assert_eq!(w1(&mut s, incr("big", 1)), overflow);
        assert_eq!(get(&s, "big"), bulk_f(&max));
        assert_eq!(w1(&mut s, incr("big", 0)), Frame::Integer(i64::MAX));
        assert_eq!(w1(&mut s, incr("big", i64::MIN)), Frame::Integer(-1));
        let min = i64::MIN.to_string();
        w1(&mut s, set("small", &min));
        assert_eq!(w1(&mut s, incr("small", -1)), overflow);
        assert_eq!(w1(&mut s, incr("small", 1)), Frame::Integer(i64::MIN + 1));
        assert_eq!(
            w1(&mut s, incr("fresh", i64::MIN)),
            Frame::Integer(i64::MIN)
        );
        assert_eq!(get(&s, "fresh"), bulk_f(&min));
        // Redis's strict integers only.
        let not_int = err("ERR value is not an integer or out of range");
        for bad in [
            "",
            "abc",
            "+1",
            " 1",
            "1 ",
            "01",
            "-01",
            "00",
            "-0",
            "-",
            "1.0",
            "1e3",
            "9223372036854775808",
            "-9223372036854775809",
            "0x10",
            "100000000000000000000",
            "\u{0661}",
        ] {
            w1(&mut s, set("bad", bad));
            assert_eq!(w1(&mut s, incr("bad", 1)), not_int, "{bad:?}");
            assert_eq!(get(&s, "bad"), bulk_f(bad), "{bad:?} left alone");
        }
        for (good, n) in [
            ("0", 0),
            ("-1", -1),
            ("10", 10),
            ("9223372036854775806", i64::MAX - 1),
        ] {
            w1(&mut s, set("good", good));
            assert_eq!(
                w1(&mut s, incr("good", 1)),
                Frame::Integer(n + 1),
                "{good:?}"
            );
        }
    }

    #[test]
    fn strict_integer_parsing() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-00"), None);
        assert_eq!(parse_i64(b"99999999999999999999"), None);
        assert_eq!(parse_i64(b"-99999999999999999999"), None);
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let n = rng.next() as i64 >> rng.below(64);
            let v = i64_value(n);
            assert_eq!(&v[..], n.to_string().as_bytes());
            assert_eq!(parse_i64(&v), Some(n));
        }
    }

    #[test]
    fn append_creates_and_grows() {
        let mut s = KvStore::new();
        let append = |k: &str, v: &str| Write::Append {
            key: b(k),
            value: b(v),
        };
        assert_eq!(w1(&mut s, append("k", "Hello")), Frame::Integer(5));
        assert_eq!(w1(&mut s, append("k", " World")), Frame::Integer(11));
        assert_eq!(get(&s, "k"), bulk_f("Hello World"));
        assert_eq!(w1(&mut s, append("e", "")), Frame::Integer(0));
        assert_eq!(get(&s, "e"), bulk_f(""));
        // Appending to a counter makes a string.
        w1(&mut s, incr("n", 12));
        assert_eq!(w1(&mut s, append("n", "3")), Frame::Integer(3));
        assert_eq!(w1(&mut s, incr("n", 1)), Frame::Integer(124));
        // Many appends; a snapshot taken midway keeps its bytes.
        let mut expect = String::new();
        let mut snap = None;
        for i in 0..300 {
            let piece = format!("{i},");
            expect.push_str(&piece);
            let reply = w1(&mut s, append("long", &piece));
            assert_eq!(reply, Frame::Integer(expect.len() as i64));
            if i == 150 {
                snap = Some((s.snapshot(), expect.clone()));
            }
        }
        assert_eq!(get(&s, "long"), bulk_f(&expect));
        let (snap, then) = snap.unwrap();
        let mut old = KvStore::new();
        old.restore(snap).unwrap();
        assert_eq!(get(&old, "long"), bulk_f(&then));
        // Values restored from a snapshot share its buffer: appending copies.
        w1(&mut old, append("long", "x"));
        assert_eq!(get(&old, "long"), bulk_f(&format!("{then}x")));
    }

    #[test]
    fn mset_mget_getset_flushdb() {
        let mut s = KvStore::new();
        let pairs = vec![(b("a"), b("1")), (b("b"), b("2")), (b("a"), b("3"))];
        assert_eq!(w1(&mut s, Write::MSet { pairs }), ok());
        assert_eq!(s.len(), 2);
        let mget = Read::MGet {
            keys: vec![b("a"), b("x"), b("b"), b("a")],
        };
        assert_eq!(
            r1(&s, mget),
            Frame::Array(vec![bulk_f("3"), Frame::Null, bulk_f("2"), bulk_f("3")])
        );
        assert_eq!(r1(&s, Read::MGet { keys: vec![] }), Frame::Array(vec![]));
        assert_eq!(w1(&mut s, Write::MSet { pairs: vec![] }), ok());
        let getset = |k: &str, v: &str| Write::GetSet {
            key: b(k),
            value: b(v),
        };
        assert_eq!(w1(&mut s, getset("a", "4")), bulk_f("3"));
        assert_eq!(w1(&mut s, getset("c", "5")), Frame::Null);
        assert_eq!(get(&s, "a"), bulk_f("4"));
        assert_eq!(get(&s, "c"), bulk_f("5"));
        assert_eq!(r1(&s, Read::DbSize), Frame::Integer(3));
        assert_eq!(w1(&mut s, Write::FlushDb), ok());
        assert_eq!(r1(&s, Read::DbSize), Frame::Integer(0));
        assert!(s.is_empty());
        assert_eq!(get(&s, "a"), Frame::Null);
        assert_eq!(w1(&mut s, Write::FlushDb), ok());
        // A large flush frees on another thread; the state is the same.
        let pairs: Vec<_> = (0..20_000).map(|i| (b(&format!("k{i}")), b("v"))).collect();
        w1(&mut s, Write::MSet { pairs });
        assert_eq!(s.len(), 20_000);
        assert_eq!(w1(&mut s, Write::FlushDb), ok());
        assert!(s.is_empty());
        // Empty; every key it removed changed at the flush's entry (1).
        assert_eq!(s.versions.get(b"k0"), 1);
        assert_eq!(
            s,
            KvStore {
                versions: s.versions.clone(),
                ..KvStore::new()
            }
        );
    }

    #[test]
    fn cas_absent_present_mismatch() {
        let mut s = KvStore::new();
        let cas = |k: &str, expected: Option<&str>, new: &str| Write::Cas {
            key: b(k),
            expected: expected.map(b),
            new: b(new),
        };
        assert_eq!(w1(&mut s, cas("k", Some("x"), "1")), Frame::Integer(0));
        assert_eq!(get(&s, "k"), Frame::Null);
        assert_eq!(w1(&mut s, cas("k", None, "1")), Frame::Integer(1));
        assert_eq!(get(&s, "k"), bulk_f("1"));
        assert_eq!(w1(&mut s, cas("k", None, "2")), Frame::Integer(0));
        assert_eq!(w1(&mut s, cas("k", Some("2"), "3")), Frame::Integer(0));
        assert_eq!(get(&s, "k"), bulk_f("1"));
        assert_eq!(w1(&mut s, cas("k", Some("1"), "3")), Frame::Integer(1));
        assert_eq!(get(&s, "k"), bulk_f("3"));
        // The empty value is a value, not absence.
        assert_eq!(w1(&mut s, cas("e", Some(""), "1")), Frame::Integer(0));
        w1(&mut s, set("e", ""));
        assert_eq!(w1(&mut s, cas("e", None, "1")), Frame::Integer(0));
        assert_eq!(w1(&mut s, cas("e", Some(""), "1")), Frame::Integer(1));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn exists_strlen_dbsize() {
        let mut s = KvStore::new();
        w(&mut s, &[set("a", "hello"), set("b", "")]);
        let exists = |keys: &[&str]| Read::Exists {
            keys: keys.iter().map(|k| b(k)).collect(),
        };
        assert_eq!(r1(&s, exists(&["a", "a", "b", "x"])), Frame::Integer(3));
        assert_eq!(r1(&s, exists(&[])), Frame::Integer(0));
        assert_eq!(r1(&s, Read::Strlen { key: b("a") }), Frame::Integer(5));
        assert_eq!(r1(&s, Read::Strlen { key: b("b") }), Frame::Integer(0));
        assert_eq!(r1(&s, Read::Strlen { key: b("x") }), Frame::Integer(0));
        assert_eq!(r1(&s, Read::DbSize), Frame::Integer(2));
    }

    #[test]
    fn a_batch_applies_in_order() {
        let mut s = KvStore::new();
        let out = w(
            &mut s,
            &[
                set("n", "10"),
                incr("n", 5),
                Write::Append {
                    key: b("n"),
                    value: b("0"),
                },
                incr("n", 1),
                set("n", "x"),
                incr("n", 1),
                Write::Del { keys: vec![b("n")] },
                incr("n", 1),
            ],
        );
        let not_int = err("ERR value is not an integer or out of range");
        assert_eq!(
            out,
            vec![
                ok(),
                Frame::Integer(15),
                Frame::Integer(3),
                Frame::Integer(151),
                ok(),
                not_int,
                Frame::Integer(1),
                Frame::Integer(1)
            ]
        );
        // A later query sees it all; several reads answer in order.
        let reads = r(
            &s,
            &[
                Read::Get { key: b("n") },
                Read::DbSize,
                Read::Strlen { key: b("n") },
            ],
        );
        assert_eq!(
            reads,
            vec![bulk_f("1"), Frame::Integer(1), Frame::Integer(1)]
        );
        // An empty batch has no replies.
        assert!(s.apply(2, &encode_writes(&[])).is_empty());
        assert!(s.query(&encode_reads(&[])).is_empty());
    }

    /// All the writes, for encoding tests.
    fn every_write() -> Vec<Write> {
        vec![
            set_with("k", "v", SetCondition::Always, false),
            set_with("k", "v", SetCondition::IfAbsent, true),
            set_with("", "", SetCondition::IfPresent, false),
            Write::Set {
                key: b("t"),
                value: b("v"),
                condition: SetCondition::IfPresent,
                get: true,
                ttl: SetTtl::In {
                    ms: 1500,
                    name: SetName::PSetEx,
                },
            },
            Write::Set {
                key: b("t"),
                value: b("v"),
                condition: SetCondition::Always,
                get: false,
                ttl: SetTtl::At(u64::MAX),
            },
            Write::Set {
                key: b("t"),
                value: b(""),
                condition: SetCondition::IfAbsent,
                get: false,
                ttl: SetTtl::Keep,
            },
            Write::Expire {
                key: b("t"),
                when_ms: i64::MIN,
                command: ExpireCommand::PExpireAt,
                condition: ExpireCondition::IfSomeEarlier,
            },
            Write::Expire {
                key: b(""),
                when_ms: 5,
                command: ExpireCommand::Expire,
                condition: ExpireCondition::Always,
            },
            Write::Persist { key: b("t") },
            Write::GetEx {
                key: b("t"),
                ttl: GetExTtl::Persist,
            },
            Write::GetEx {
                key: b("t"),
                ttl: GetExTtl::Set(GetExTime {
                    seconds: false,
                    absolute: true,
                    time: b("123"),
                }),
            },
            Write::GetEx {
                key: b("t"),
                ttl: GetExTtl::Set(GetExTime {
                    seconds: true,
                    absolute: false,
                    time: b(""),
                }),
            },
            Write::Del {
                keys: vec![b("a"), b(""), b("c")],
            },
            Write::Del { keys: vec![] },
            incr("n", i64::MIN),
            Write::Append {
                key: b("k"),
                value: b("more"),
            },
            Write::MSet {
                pairs: vec![(b("a"), b("1")), (b("b"), b(""))],
            },
            Write::GetSet {
                key: b("g"),
                value: b("s"),
            },
            Write::FlushDb,
            Write::Cas {
                key: b("c"),
                expected: None,
                new: b("1"),
            },
            Write::Cas {
                key: b("c"),
                expected: Some(b("")),
                new: b("2"),
            },
            Write::AclInit { password: None },
            Write::AclInit {
                password: Some(PasswordHash::of(b"pw")),
            },
            Write::AclSetUser {
                name: b("alice"),
                rules: [
                    "on",
                    ">pw",
                    "~app:*",
                    "&*",
                    "+@read",
                    "-keys",
                    "+acl|whoami",
                ]
                .iter()
                .map(|r| acl::Rule::parse(r.as_bytes()).unwrap())
                .collect(),
            },
            Write::AclSetUser {
                name: b(""),
                rules: vec![],
            },
            Write::AclDelUser {
                names: vec![b("alice"), b("bob")],
            },
            Write::Typed {
                cmd: TypedCmd::HSet,
                args: vec![b("h"), b("f"), b("")],
            },
            Write::Typed {
                cmd: TypedCmd::SPop,
                args: vec![],
            },
            Write::GetDel { key: b("k") },
            Write::SetRange {
                key: b("k"),
                offset: 7,
                value: b("xy"),
            },
            Write::MSetNx {
                pairs: vec![(b("a"), b("1")), (b("b"), b(""))],
            },
            Write::IncrByFloat {
                key: b("f"),
                by: b("1.5e3"),
            },
            Write::Exec {
                watches: vec![],
                ops: vec![],
            },
            Write::Exec {
                watches: vec![(b("w"), 7), (b(""), u64::MAX)],
                ops: vec![
                    TxOp::Write(set("k", "v")),
                    TxOp::Read(Read::Get { key: b("k") }),
                    TxOp::Reply(b("+PONG\r\n")),
                    TxOp::Write(Write::FlushDb),
                    TxOp::Read(Read::DbSize),
                ],
            },
        ]
    }

    fn every_read() -> Vec<Read> {
        vec![
            Read::Get { key: b("k") },
            Read::MGet {
                keys: vec![b("a"), b("b")],
            },
            Read::Exists { keys: vec![b("")] },
            Read::Strlen { key: b("k") },
            Read::Ttl {
                key: b("k"),
                kind: TtlKind::Ttl,
            },
            Read::Ttl {
                key: b(""),
                kind: TtlKind::PExpireTime,
            },
            Read::DbSize,
            Read::VolatileLen,
            Read::Keys { pattern: b("*") },
            Read::Scan {
                cursor: u64::MAX,
                pattern: Some(b("a*")),
                count: 10,
            },
            Read::Scan {
                cursor: 0,
                pattern: None,
                count: 0,
            },
            Read::GetRange {
                key: b("k"),
                start: i64::MIN,
                end: -1,
            },
            Read::Versions {
                keys: vec![b("a"), b("")],
            },
            // Last: a whole one in a cut-off query would be an error.
            Read::Typed {
                cmd: TypedCmd::HGetAll,
                args: vec![b("h")],
            },
            Read::Typed {
                cmd: TypedCmd::SInter,
                args: vec![],
            },
        ]
    }

    fn owned_write(op: WriteOp<'_>) -> Write {
        let c = Bytes::copy_from_slice;
        match op {
            WriteOp::Set {
                key,
                value,
                condition,
                get,
                ttl,
            } => Write::Set {
                key: c(key),
                value: c(value),
                condition,
                get,
                ttl,
            },
            WriteOp::Del(keys) => Write::Del {
                keys: keys.map(c).collect(),
            },
            WriteOp::IncrBy { key, by } => Write::IncrBy { key: c(key), by },
            WriteOp::Append { key, value } => Write::Append {
                key: c(key),
                value: c(value),
            },
            WriteOp::MSet(items) => {
                let flat: Vec<Bytes> = items.map(c).collect();
                Write::MSet {
                    pairs: flat
                        .chunks(2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect(),
                }
            }
            WriteOp::GetSet { key, value } => Write::GetSet {
                key: c(key),
                value: c(value),
            },
            WriteOp::FlushDb => Write::FlushDb,
            WriteOp::Cas { key, expected, new } => Write::Cas {
                key: c(key),
                expected: expected.map(c),
                new: c(new),
            },
            WriteOp::AclSetUser { name, rules } => Write::AclSetUser {
                name: c(name),
                rules: rules
                    .map(|r| acl::Rule::parse(r).expect("a rule written by encode_writes"))
                    .collect(),
            },
            WriteOp::AclDelUser(names) => Write::AclDelUser {
                names: names.map(c).collect(),
            },
            WriteOp::AclInit(password) => Write::AclInit { password },
            WriteOp::Expire {
                key,
                when_ms,
                command,
                condition,
            } => Write::Expire {
                key: c(key),
                when_ms,
                command,
                condition,
            },
            WriteOp::Persist(key) => Write::Persist { key: c(key) },
            WriteOp::GetEx { key, op } => Write::GetEx {
                key: c(key),
                ttl: match op.mode {
                    1 => GetExTtl::Persist,
                    m => GetExTtl::Set(GetExTime {
                        seconds: m % 2 == 0,
                        absolute: m >= 4,
                        time: c(op.time),
                    }),
                },
            },
            WriteOp::Typed(cmd, args) => Write::Typed {
                cmd,
                args: args.map(c).collect(),
            },
            WriteOp::GetDel(key) => Write::GetDel { key: c(key) },
            WriteOp::SetRange { key, offset, value } => Write::SetRange {
                key: c(key),
                offset,
                value: c(value),
            },
            WriteOp::MSetNx(items) => {
                let flat: Vec<Bytes> = items.map(c).collect();
                Write::MSetNx {
                    pairs: flat
                        .chunks(2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect(),
                }
            }
            WriteOp::IncrByFloat { key, by } => Write::IncrByFloat {
                key: c(key),
                by: c(by),
            },
            WriteOp::Exec(e) => tx::owned_exec(e, owned_write, owned_read),
        }
    }

    fn owned_read(op: ReadOp<'_>) -> Read {
        let c = Bytes::copy_from_slice;
        match op {
            ReadOp::Get(key) => Read::Get { key: c(key) },
            ReadOp::MGet(keys) => Read::MGet {
                keys: keys.map(c).collect(),
            },
            ReadOp::Exists(keys) => Read::Exists {
                keys: keys.map(c).collect(),
            },
            ReadOp::Strlen(key) => Read::Strlen { key: c(key) },
            ReadOp::Ttl(key, kind) => Read::Ttl { key: c(key), kind },
            ReadOp::DbSize => Read::DbSize,
            ReadOp::VolatileLen => Read::VolatileLen,
            ReadOp::Keys(p) => Read::Keys { pattern: c(p) },
            ReadOp::Typed(cmd, args) => Read::Typed {
                cmd,
                args: args.map(c).collect(),
            },
            ReadOp::Scan {
                cursor,
                pattern,
                count,
            } => Read::Scan {
                cursor,
                pattern: pattern.map(c),
                count,
            },
            ReadOp::GetRange(key, start, end) => Read::GetRange {
                key: c(key),
                start,
                end,
            },
            ReadOp::Versions(keys) => Read::Versions {
                keys: keys.map(c).collect(),
            },
        }
    }

    #[test]
    fn encodings_round_trip_with_exact_sizes() {
        let writes = every_write();
        let e = encode_writes(&writes);
        assert_eq!(e.len(), 1 + writes.iter().map(write_size).sum::<usize>());
        let (body, n) = check_batch(&e, WRITES_FORMAT, parse_write).unwrap();
        assert_eq!(n, writes.len());
        let mut rd = Reader { buf: body };
        let back: Vec<Write> = (0..n)
            .map(|_| owned_write(parse_write(&mut rd).unwrap()))
            .collect();
        assert_eq!(back, writes);

        let reads = every_read();
        let e = encode_reads(&reads);
        assert_eq!(e.len(), 1 + reads.iter().map(read_size).sum::<usize>());
        let (body, n) = check_batch(&e, READS_FORMAT, parse_read).unwrap();
        let mut rd = Reader { buf: body };
        let back: Vec<Read> = (0..n)
            .map(|_| owned_read(parse_read(&mut rd).unwrap()))
            .collect();
        assert_eq!(back, reads);
    }

    fn one_error(out: &[u8]) -> String {
        match &frames(out)[..] {
            [Frame::Error(e)] if e.starts_with("ERR not a raft-kv ") => e.clone(),
            other => panic!("expected one error, got {other:?}"),
        }
    }

    #[test]
    fn undecodable_entries_and_queries_get_one_error() {
        let mut s = KvStore::new();
        w1(&mut s, set("k", "v"));
        let before = s.clone();
        let writes = encode_writes(&every_write());
        let reads = encode_reads(&every_read());
        let mut bad: Vec<Vec<u8>> = vec![
            vec![],
            b"SET k v".to_vec(),
            vec![0xD7, 99],
            vec![0xD7, W_SET, 0x80, 0, 0, 0, 0, 0, 0, 0, 0], // unknown flag
            vec![0xD7, W_SET, 0x60, 0, 0, 0, 0, 0, 0, 0, 0], // unknown command
            vec![0xD7, W_SET, 0x28, 0, 0, 0, 0, 0, 0, 0, 0], // SETEX without a time
            vec![0xD7, W_SET, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2], // a time cut off
            vec![0xD7, W_EXPIRE, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // bad command
            vec![0xD7, W_EXPIRE, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // bad condition
            vec![0xD7, W_GETEX, 6, 0, 0, 0, 0],              // bad mode
            vec![0xD7, W_GETEX, 0, 0, 0, 0, 0],              // bad mode
            vec![0xD7, W_SET, 3, 0, 0, 0, 0, 0, 0, 0, 0],    // NX and XX
            vec![0xD7, W_DEL, 0xff, 0xff, 0xff, 0xff],       // a huge count
            vec![0xD7, W_MSET, 0xff, 0xff, 0xff, 0x7f],
            vec![0xD7, W_CAS, 0, 0, 0, 0, 2, 0, 0, 0, 0], // bad flag
            reads.to_vec(),                               // a query is no entry
            KvCommand::Set {
                key: b("k"),
                value: b("v"),
            }
            .encode()
            .to_vec(),
        ];
        // Every proper prefix of a valid batch that cuts a command.
        for cut in 1..writes.len() {
            let mut r = Reader {
                buf: &writes[1..cut],
            };
            let mut whole = true;
            while !r.is_empty() {
                whole = parse_write(&mut r).is_ok();
            }
            if !whole {
                bad.push(writes[..cut].to_vec());
            }
        }
        for entry in &bad {
            let e = one_error(&s.apply(5, entry));
            assert!(e.contains("command batch"), "{e}");
            assert_eq!(s, before, "a bad entry changes nothing: {entry:?}");
        }
        let mut bad_queries: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xD2, 0],
            vec![0xD2, R_SCAN, 0, 0],
            vec![0xD2, R_TTL, 4, 0, 0, 0, 0],
            vec![
                0xD2, R_SCAN, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9,
            ],
            writes.to_vec(),
        ];
        for cut in 2..reads.len() - 1 {
            bad_queries.push(reads[..cut].to_vec());
        }
        let mut cut_somewhere = 0;
        for q in &bad_queries {
            let out = s.query(q);
            // Some prefixes end between two commands: those are valid.
            if frames(&out).iter().all(|f| !is_error(f)) {
                continue;
            }
            cut_somewhere += 1;
            assert!(one_error(&out).contains("query batch"));
        }
        assert!(cut_somewhere > reads.len() / 2);
        // The error names the problem.
        assert!(one_error(&s.apply(1, &[])).contains("empty"));
        assert!(one_error(&s.apply(1, b"x")).contains("format byte 0x78"));
        assert!(one_error(&s.apply(1, &[0xD7, 7, 42])).contains("command 2: unknown command"));
        assert!(one_error(&s.apply(1, &[0xD7, 1, 0, 9])).contains("command 1: cut off"));
    }

    #[test]
    fn fuzzed_input_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut s = KvStore::new();
        let valid_w = encode_writes(&every_write());
        let valid_r = encode_reads(&every_read());
        let snap = {
            let mut t = KvStore::new();
            w(&mut t, &every_write()[..5]);
            t.snapshot()
        };
        for i in 0..6000 {
            // Random bytes, and random damage to valid bytes.
            let input: Vec<u8> = match i % 4 {
                0 => rng.bytes(64),
                1 => {
                    let mut v = rng.bytes(48);
                    v.insert(
                        0,
                        if rng.below(2) == 0 {
                            WRITES_FORMAT
                        } else {
                            READS_FORMAT
                        },
                    );
                    v
                }
                2 => {
                    let base = [&valid_w, &valid_r, &snap][rng.below(3) as usize];
                    let mut v = base.to_vec();
                    for _ in 0..=rng.below(3) {
                        let at = rng.below(v.len() as u64) as usize;
                        v[at] = rng.next() as u8;
                    }
                    v
                }
                _ => {
                    let base = [&valid_w, &valid_r, &snap][rng.below(3) as usize];
                    base[..rng.below(base.len() as u64 + 1) as usize].to_vec()
                }
            };
            let out = s.apply(i, &input);
            frames(&out);
            frames(&s.query(&input));
            let kept = s.clone();
            if s.restore(Bytes::from(input)).is_err() {
                assert_eq!(s, kept, "a failed restore changes nothing");
            }
            if s.len() > 1000 {
                s = KvStore::new();
            }
        }
    }

    #[test]
    fn snapshot_round_trip() {
        let mut s = KvStore::new();
        let mut rng = Rng(3);
        for i in 0..500 {
            let k = format!("key:{}", rng.below(300));
            match i % 5 {
                0 => w1(&mut s, Write::Del { keys: vec![b(&k)] }),
                1 => w1(&mut s, incr(&k, 3)),
                _ => w1(&mut s, set(&k, &"x".repeat(rng.below(40) as usize))),
            };
        }
        w1(&mut s, set("", ""));
        let snap = s.snapshot();
        let mut t = KvStore::new();
        w1(&mut t, set("gone", "1"));
        t.restore(snap.clone()).unwrap();
        assert_eq!(t, s);
        assert_eq!(t.len(), s.len());
        assert_eq!(t.snapshot(), snap);
        assert_eq!(get(&t, "gone"), Frame::Null);
        // The empty store too.
        let empty = KvStore::new().snapshot();
        t.restore(empty).unwrap();
        assert!(t.is_empty());
        assert_eq!(t, KvStore::new());
    }

    #[test]
    fn bad_snapshots_are_rejected_and_change_nothing() {
        let mut s = KvStore::new();
        w(&mut s, &[set("a", "1"), set("b", "22"), set("c", "333")]);
        // Older versions have no key versions: none here either (the
        // table is 16 bytes, the floor and the count).
        s.versions = tx::Versions::default();
        let snap = s.snapshot();
        let mut t = KvStore::new();
        w1(&mut t, set("mine", "x"));
        let before = t.clone();
        let mut check = |bytes: Vec<u8>, says: &str| {
            let e = t.restore(Bytes::from(bytes)).unwrap_err();
            assert!(e.to_string().contains(says), "{e:?} should say {says:?}");
            assert_eq!(t, before);
        };
        // Every truncation.
        for cut in 0..snap.len() {
            check(snap[..cut].to_vec(), "");
        }
        check(vec![], "at least");
        let mut v = snap.to_vec();
        v[0] = b'X';
        check(v, "not a raft-kv snapshot");
        let mut v = snap.to_vec();
        v[4] = 6;
        check(v, "version 6");
        // Any flipped bit breaks the checksum.
        for at in 5..snap.len() {
            let mut v = snap.to_vec();
            v[at] ^= 0x10;
            check(v, "checksum");
        }
        // Well-checksummed but inconsistent bodies.
        let reseal = |mut body: Vec<u8>| {
            let crc = crc32c(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        // The keys' part is checked on a version 1 body (no user table).
        let users_len = {
            let mut u = Vec::new();
            acl::codec::encode(&s.users, &mut u);
            4 + u.len()
        };
        // Version 3 (strings only), and version 2: the same without the
        // times (16 bytes: no deadlines).
        let v3 = s.snapshot_v3();
        let mut v3_store = KvStore::new();
        v3_store.restore(Bytes::from(v3.clone())).unwrap();
        assert_eq!(v3_store, s, "a version 3 snapshot reads as strings");
        // Version 4 (strings only, with key versions) reads as strings too.
        let v4 = s.snapshot_v4();
        let mut v4_store = KvStore::new();
        v4_store.restore(Bytes::from(v4)).unwrap();
        assert_eq!(v4_store, s, "a version 4 snapshot reads as strings");
        let mut v2_body = v3[..v3.len() - 4 - 16].to_vec();
        v2_body[4] = 2;
        let mut v2 = s.clone();
        v2.restore(Bytes::from(reseal(v2_body.clone()))).unwrap();
        assert_eq!(v2, s, "a version 2 snapshot reads with no deadlines");
        let mut body = v2_body[..v2_body.len() - users_len].to_vec();
        body[4] = 1;
        let mut v1 = s.clone();
        v1.restore(Bytes::from(reseal(body.clone()))).unwrap();
        assert_eq!(v1, s, "a version 1 snapshot reads with no users");
        let mut v = v2_body.clone();
        v.truncate(v.len() - 1);
        check(reseal(v), "cut off in its user table");
        v2_body.push(0);
        check(reseal(v2_body.clone()), "stray bytes");
        let last = v2_body.len() - 2;
        v2_body[last] = 9;
        check(reseal(v2_body), "user table");
        let mut v = body.to_vec();
        v[5..13].copy_from_slice(&4u64.to_le_bytes());
        check(reseal(v), "cut off in key 4 of 4");
        let mut v = body.to_vec();
        v[5..13].copy_from_slice(&u64::MAX.to_le_bytes());
        check(reseal(v), "claims");
        let mut v = body.to_vec();
        v[5..13].copy_from_slice(&2u64.to_le_bytes());
        check(reseal(v), "stray bytes");
        let mut v = body.to_vec();
        v.truncate(v.len() - 1);
        check(reseal(v), "cut off in the value of key 3");
        // A key twice.
        let mut v = b"RKVS\x01".to_vec();
        v.extend_from_slice(&2u64.to_le_bytes());
        for _ in 0..2 {
            v.extend_from_slice(&[1, 0, 0, 0, b'k', 0, 0, 0, 0]);
        }
        check(reseal(v), "twice");
    }

    /// SipHash-1-3 of "foo" under the store's keys.
    const KEY_HASH_OF_FOO: u64 = 567_765_770_624_988_561;

    #[test]
    fn the_key_hash_is_pinned() {
        // Cursors and the order of keys in snapshots are made of this hash:
        // it must not change between versions or platforms.
        assert_eq!(key_hash(b"foo"), KEY_HASH_OF_FOO);
        assert_ne!(key_hash(b"foo"), key_hash(b"fop"));
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn glob_matching_like_redis() {
        let yes = |p: &str, s: &str| assert!(glob_match(p.as_bytes(), s.as_bytes()), "{p} ~ {s}");
        let no = |p: &str, s: &str| assert!(!glob_match(p.as_bytes(), s.as_bytes()), "{p} !~ {s}");
        // The examples of Redis's KEYS documentation.
        for s in ["hello", "hallo", "hxllo"] {
            yes("h?llo", s);
        }
        for s in ["hllo", "heeeello", "hello"] {
            yes("h*llo", s);
        }
        yes("h[ae]llo", "hello");
        yes("h[ae]llo", "hallo");
        no("h[ae]llo", "hillo");
        yes("h[^e]llo", "hallo");
        yes("h[^e]llo", "hbllo");
        no("h[^e]llo", "hello");
        yes("h[a-b]llo", "hallo");
        yes("h[a-b]llo", "hbllo");
        no("h[a-b]llo", "hcllo");
        no("h?llo", "hllo");
        no("h*llo", "hellx");
        // `*` alone, and stars anywhere.
        yes("*", "anything");
        yes("*", "x");
        no("*", ""); // as stringmatchlen; KEYS and SCAN special-case "*"
        yes("", "");
        no("", "a");
        yes("**", "ab");
        yes("a*", "a");
        yes("a*b*c", "aXXbYYc");
        yes("*c", "abc");
        no("*c", "abd");
        yes("*a*b*", "xxaxxbxx");
        no("a*b", "acbd");
        // Escapes.
        yes("h\\*llo", "h*llo");
        no("h\\*llo", "hello");
        yes("\\?", "?");
        no("\\?", "a");
        yes("a\\", "a\\"); // a trailing backslash is itself
        yes("[\\]]", "]");
        yes("[\\-a]", "-");
        no("[\\-a]", "b");
        // Ranges either way round; a lone `-`; `[^...]` with ranges.
        yes("[z-a]", "m");
        yes("[a-]", "]"); // Redis takes "a-]" as a range from 'a' to ']'
        yes("[^0-9]x", "ax");
        no("[^0-9]x", "5x");
        // An unclosed set runs to the end of the pattern.
        yes("[abc", "a");
        no("[abc", "d");
        no("a[", "a\0"); // an empty unclosed set matches nothing, not even NUL
        no("ab[", "ab");
        // Binary bytes.
        assert!(glob_match(b"\xff*\x00", b"\xff\x01\x00"));
        assert!(glob_match(b"[\x80-\xff]", b"\x90"));
        // Abusive patterns end quickly.
        let long = "a".repeat(60);
        no(&format!("{}b", "*a".repeat(30)), &long);
        no(&"*".repeat(3000).replace("**", "*a"), &long);
    }

    fn keys_of(f: Frame) -> BTreeSet<Bytes> {
        match f {
            Frame::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Frame::Bulk(k) => k,
                    other => panic!("not a key: {other:?}"),
                })
                .collect(),
            other => panic!("not an array: {other:?}"),
        }
    }

    fn set_of(keys: &[&str]) -> BTreeSet<Bytes> {
        keys.iter().map(|k| b(k)).collect()
    }

    #[test]
    fn keys_with_patterns() {
        let mut s = KvStore::new();
        w(
            &mut s,
            &[
                set("hello", "1"),
                set("hallo", "2"),
                set("x", "3"),
                set("", "4"),
            ],
        );
        let keys = |p: &str| keys_of(r1(&s, Read::Keys { pattern: b(p) }));
        assert_eq!(keys("*"), set_of(&["hello", "hallo", "x", ""]));
        assert_eq!(keys("h*"), set_of(&["hello", "hallo"]));
        assert_eq!(keys("h[^a]llo"), set_of(&["hello"]));
        assert_eq!(keys("nothing"), set_of(&[]));
        assert_eq!(keys(""), set_of(&[""]));
        assert_eq!(keys("?"), set_of(&["x"]));
    }

    /// One SCAN call: the next cursor and the keys.
    fn scan(s: &KvStore, cursor: u64, pattern: Option<&str>, count: usize) -> (u64, Vec<Bytes>) {
        let reply = r1(
            s,
            Read::Scan {
                cursor,
                pattern: pattern.map(b),
                count,
            },
        );
        let Frame::Array(mut parts) = reply else {
            panic!("not an array")
        };
        assert_eq!(parts.len(), 2);
        let keys = keys_of(parts.pop().unwrap());
        let Some(Frame::Bulk(c)) = parts.pop() else {
            panic!("no cursor")
        };
        let next = std::str::from_utf8(&c).unwrap().parse().unwrap();
        (next, keys.into_iter().collect())
    }

    #[test]
    fn scan_walks_everything_once_when_nothing_changes() {
        let mut s = KvStore::new();
        assert_eq!(scan(&s, 0, None, 10), (0, vec![]));
        let all: BTreeSet<Bytes> = (0..100).map(|i| b(&format!("k{i}"))).collect();
        let pairs = all.iter().map(|k| (k.clone(), b("v"))).collect();
        w1(&mut s, Write::MSet { pairs });
        for count in [1, 3, 7, 100, 1000] {
            let (mut cursor, mut seen, mut calls) = (0, Vec::new(), 0);
            loop {
                let (next, keys) = scan(&s, cursor, None, count);
                calls += 1;
                assert!(keys.len() >= count.min(100 - seen.len()));
                seen.extend(keys);
                if next == 0 {
                    break;
                }
                assert!(next > cursor, "cursors increase");
                cursor = next;
            }
            assert_eq!(seen.len(), 100, "each key once");
            assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);
            assert_eq!(calls, 100usize.div_ceil(count));
        }
        // COUNT 0 is taken as 1; MATCH filters what was examined.
        let (next, keys) = scan(&s, 0, None, 0);
        assert!(next != 0 && keys.len() == 1);
        let (mut cursor, mut seen) = (0, Vec::new());
        loop {
            let (next, keys) = scan(&s, cursor, Some("k1*"), 10);
            seen.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen.len(), 11); // k1, k10..k19
                                    // "*" matches the empty key, as in Redis.
        w1(&mut s, set("", "e"));
        assert!(scan(&s, 0, Some("*"), 1000).1.contains(&b("")));
        // A cursor past every key ends the iteration.
        assert_eq!(scan(&s, u64::MAX, None, 10).0, 0);
    }

    #[test]
    fn scan_returns_stable_keys_under_churn() {
        let mut rng = Rng(42);
        for round in 0..20 {
            let mut s = KvStore::new();
            let stable: BTreeSet<Bytes> = (0..200).map(|i| b(&format!("stable:{i}"))).collect();
            let pairs = stable.iter().map(|k| (k.clone(), b("v"))).collect();
            w1(&mut s, Write::MSet { pairs });
            let mut churn: Vec<Bytes> = Vec::new();
            let (mut cursor, mut seen, mut calls) = (0u64, BTreeSet::new(), 0);
            let pattern = (round % 2 == 1).then_some("stable:*");
            loop {
                let count = 1 + rng.below(5) as usize;
                let (next, keys) = scan(&s, cursor, pattern, count);
                seen.extend(keys);
                calls += 1;
                if next == 0 {
                    break;
                }
                assert!(next > cursor);
                cursor = next;
                // Between calls: insert some keys, delete some churn keys.
                for _ in 0..rng.below(8) {
                    let k = b(&format!("churn:{}", rng.next()));
                    w1(&mut s, set(std::str::from_utf8(&k).unwrap(), "c"));
                    churn.push(k);
                }
                for _ in 0..rng.below(6) {
                    if !churn.is_empty() {
                        let k = churn.swap_remove(rng.below(churn.len() as u64) as usize);
                        w1(&mut s, Write::Del { keys: vec![k] });
                    }
                }
            }
            assert!(
                stable.is_subset(&seen),
                "round {round}: a stable key was missed"
            );
            if pattern.is_some() {
                assert!(seen.iter().all(|k| k.starts_with(b"stable:")));
            }
            assert!(calls <= 200 + churn.len() + 1000);
        }
    }

    #[test]
    fn colliding_keys_share_a_slot() {
        // Force collisions by using the map directly with a made-up hash.
        let mut s = KvStore::new();
        let h = 77;
        for k in ["b", "a", "c"] {
            match spot(&mut s.map, h, k.as_bytes()) {
                Spot::Absent(a) => a.fill(b(k), sv(&k.repeat(2))),
                Spot::Present(_) => panic!("{k} is new"),
            }
            s.len += 1;
        }
        match spot(&mut s.map, h + 1, b"d") {
            Spot::Absent(a) => a.fill(b("d"), sv("dd")),
            Spot::Present(_) => panic!(),
        }
        s.len += 1;
        assert_eq!(s.map.len(), 2);
        assert_eq!(lookup(&s.map, h, b"b"), Some(&sv("bb")));
        assert_eq!(lookup(&s.map, h, b"x"), None);
        assert_eq!(lookup(&s.map, h + 1, b"a"), None);
        match spot(&mut s.map, h, b"c") {
            Spot::Present(v) => *v = sv("new"),
            Spot::Absent(_) => panic!("c is here"),
        }
        assert_eq!(lookup(&s.map, h, b"c"), Some(&sv("new")));
        // In order within the slot; the slot is returned whole by SCAN.
        let keys: Vec<_> = s.iter().map(|(k, _)| k.clone()).collect();
        let first_is_slot = h < h + 1;
        assert!(first_is_slot);
        assert_eq!(keys, vec![b("a"), b("b"), b("c"), b("d")]);
        let (next, got) = scan(&s, 0, None, 1);
        assert_eq!(next, h + 1);
        assert_eq!(got.len(), 3);
        assert_eq!(scan(&s, next, None, 1), (0, vec![b("d")]));
        // Removing down to one key makes a plain slot again.
        assert_eq!(remove(&mut s.map, h, b"x"), None);
        assert_eq!(remove(&mut s.map, h, b"a"), Some(sv("aa")));
        assert!(matches!(s.map.get(&h), Some(Slot::Many(_))));
        assert_eq!(remove(&mut s.map, h, b"b"), Some(sv("bb")));
        assert_eq!(s.map.get(&h), Some(&Slot::One(b("c"), sv("new"))));
        assert_eq!(remove(&mut s.map, h, b"b"), None);
        assert_eq!(remove(&mut s.map, h, b"c"), Some(sv("new")));
        assert_eq!(s.map.len(), 1);
        // A slot with two keys survives a snapshot (rehashed on restore).
        let mut t = KvStore::new();
        for k in ["p", "q"] {
            if let Spot::Absent(a) = spot(&mut t.map, 5, k.as_bytes()) {
                a.fill(b(k), sv("v"));
                t.len += 1;
            }
        }
        let mut u = KvStore::new();
        u.restore(t.snapshot()).unwrap();
        assert_eq!(
            keys_of(r1(&u, Read::Keys { pattern: b("*") })),
            set_of(&["p", "q"])
        );
    }

    #[test]
    fn replicas_applying_the_same_entries_agree() {
        let mut rng = Rng(2024);
        let mut entries = Vec::new();
        for _ in 0..400 {
            let mut batch = Vec::new();
            for _ in 0..=rng.below(4) {
                let k = format!("k{}", rng.below(50));
                let v = format!("{}", rng.below(1000));
                batch.push(match rng.below(9) {
                    0 => set(&k, &v),
                    1 => set_with(&k, &v, SetCondition::IfAbsent, rng.below(2) == 0),
                    2 => Write::Del {
                        keys: vec![b(&k), b(&format!("k{}", rng.below(50)))],
                    },
                    3 => incr(&k, rng.below(100) as i64 - 50),
                    4 => Write::Append {
                        key: b(&k),
                        value: b(&v),
                    },
                    5 => Write::MSet {
                        pairs: vec![(b(&k), b(&v)), (b("k0"), b(&v))],
                    },
                    6 => Write::GetSet {
                        key: b(&k),
                        value: b(&v),
                    },
                    7 if rng.below(30) == 0 => Write::FlushDb,
                    _ => Write::Cas {
                        key: b(&k),
                        expected: (rng.below(2) == 0).then(|| b(&v)),
                        new: b(&v),
                    },
                });
            }
            entries.push(encode_writes(&batch));
        }
        let mut a = KvStore::new();
        let mut b_ = KvStore::new();
        let mut outs_a = Vec::new();
        let mut outs_b = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            outs_a.push(a.apply(i as u64 + 1, e));
            // The second replica restarts from a snapshot halfway.
            if i == 200 {
                let snap = b_.snapshot();
                b_ = KvStore::new();
                b_.restore(snap).unwrap();
            }
            outs_b.push(b_.apply(i as u64 + 1, e));
        }
        assert_eq!(outs_a, outs_b);
        assert_eq!(a.snapshot(), b_.snapshot());
        assert_eq!(a, b_);
        assert_eq!(a.len(), a.iter().count());
        let q = encode_reads(&every_read());
        assert_eq!(a.query(&q), b_.query(&q));
    }

    #[test]
    fn reply_sizes_are_found_before_the_replies_are_built() {
        let mut s = KvStore::new();
        w(
            &mut s,
            &[
                set("k", "value"),
                set("a", ""),
                set("big", &"x".repeat(12_345)),
            ],
        );
        for i in 0..50 {
            w(&mut s, &[set(&format!("a{i}"), "1")]);
        }
        let mut reads = every_read();
        reads.push(Read::MGet {
            keys: vec![b("big"), b("nope"), b("k")],
        });
        reads.push(Read::Keys { pattern: b("a1*") });
        for read in reads {
            let q = encode_reads(std::slice::from_ref(&read));
            let mut r = Reader { buf: &q[1..] };
            let op = parse_read(&mut r).unwrap();
            let size = s.reply_size(&op);
            let built = s.query(&q).len();
            match read {
                Read::Exists { .. }
                | Read::Strlen { .. }
                | Read::Ttl { .. }
                | Read::DbSize
                | Read::VolatileLen => {
                    assert!(built <= size, "{read:?}: {built} > {size}")
                }
                _ => assert_eq!(built, size, "{read:?}"),
            }
        }
    }

    #[test]
    fn a_bounded_query_answers_what_fits_in_order_and_refuses_what_never_fits() {
        let mut s = KvStore::new();
        w(&mut s, &[set("v", &"x".repeat(1000)), set("k", "1")]);
        let get = |k: &str| Read::Get { key: b(k) };
        let v = bulk_len(1000);
        let answer = |reads: &[Read], soft, hard, limit| {
            let a = s.query(&encode_bounded_reads(
                reads,
                ReplyRoom { soft, hard, limit },
            ));
            let a = split_bounded_answer(std::slice::from_ref(&a)).unwrap();
            let replies = a.replies.concat();
            assert_eq!(
                a.refused,
                frames(&replies).iter().filter(|f| is_error(f)).count()
            );
            (a.answered, frames(&replies))
        };
        // Three of five fit the soft room.
        let (n, f) = answer(
            &[get("v"), get("v"), get("v"), get("v"), get("k")],
            3 * v,
            v,
            1 << 20,
        );
        assert_eq!((n, f.len()), (3, 3));
        // The first must fit the hard room, or nothing is answered.
        let (n, f) = answer(&[get("v"), get("k")], 1 << 20, v - 1, 1 << 20);
        assert_eq!((n, f.len()), (0, 0));
        // Over the limit: an error naming it, and the next reads go on.
        let mget = Read::MGet {
            keys: vec![b("v"); 1000],
        };
        let (n, f) = answer(&[mget, get("k")], 1 << 20, 1 << 20, 64 << 10);
        assert_eq!(n, 2);
        assert_eq!(
            f[0],
            err(&format!(
                "ERR the reply would be {} bytes, more than the client output buffer limit of 65536 bytes (--client-output-buffer-limit)",
                array_len(1000) + 1000 * v
            ))
        );
        assert_eq!(f[1], bulk_f("1"));
        // Garbage is an error, not a panic.
        let e = s.query(&[BOUNDED_READS_FORMAT, 1, 2]);
        assert!(frames(&e).iter().all(is_error));
    }

    #[test]
    fn an_answer_in_parts_is_the_whole_answer_with_long_values_shared() {
        let mut s = KvStore::new();
        let long_key = "K".repeat(SHARED_VALUE_BYTES + 10);
        w(
            &mut s,
            &[
                set("long", &"L".repeat(SHARED_VALUE_BYTES)),
                set("short", &"s".repeat(SHARED_VALUE_BYTES - 1)),
                set("big", &"x".repeat(100_000)),
                set("empty", ""),
                set(&long_key, "v"),
            ],
        );
        for i in 0..20 {
            w(&mut s, &[set(&format!("a{i}"), &i.to_string())]);
        }
        let mut reads = every_read();
        reads.extend([
            Read::Get { key: b("long") },
            Read::Get { key: b("short") },
            Read::Get { key: b("big") },
            Read::Get { key: b("empty") },
            Read::MGet {
                keys: vec![
                    b("long"),
                    b("nope"),
                    b("short"),
                    b("big"),
                    b("long"),
                    b("empty"),
                ],
            },
            Read::Keys { pattern: b("*") },
            Read::Keys { pattern: b("K*") },
            Read::Scan {
                cursor: 0,
                pattern: None,
                count: 1000,
            },
            Read::Strlen { key: b("big") },
            Read::Exists {
                keys: vec![b("big"), b("nope")],
            },
        ]);
        // Each read alone, then all of them in one query.
        for read in &reads {
            let q = encode_reads(std::slice::from_ref(read));
            assert_eq!(s.query_parts(&q).concat(), s.query(&q), "{read:?}");
        }
        let q = encode_reads(&reads);
        let parts = s.query_parts(&q);
        assert_eq!(parts.concat(), s.query(&q));
        // Values and keys of SHARED_VALUE_BYTES or more are the stored
        // bytes themselves; shorter ones are copied.
        let stored = |k: &str| {
            let (key, v) = s.iter().find(|(key, _)| key[..] == *k.as_bytes()).unwrap();
            (key, v.as_str().unwrap())
        };
        let is_part = |v: &Bytes| {
            parts
                .iter()
                .any(|p| p.as_ptr() == v.as_ptr() && p.len() == v.len())
        };
        assert!(is_part(stored("long").1));
        assert!(is_part(stored("big").1));
        assert!(is_part(stored(&long_key).0));
        assert!(!is_part(stored("short").1));
        let stored_at: Vec<*const u8> = s
            .iter()
            .flat_map(|(k, v)| [k.as_ptr(), v.as_str().unwrap().as_ptr()])
            .collect();
        let ours = encode_reads(&reads[every_read().len()..]);
        let shared = s
            .query_parts(&ours)
            .iter()
            .filter(|p| stored_at.contains(&p.as_ptr()))
            .count();
        // GET long, GET big, MGET's three, KEYS * and KEYS K*, SCAN.
        assert_eq!(shared, 2 + 3 + 1 + 1 + 1);
        // Bounded queries too: their counts begin the first part.
        let rooms = [
            (usize::MAX, usize::MAX, usize::MAX),
            (150_000, 200_000, 150_000),
            (0, 100_000, 100_000),
            (0, 10, 10),
        ];
        for (soft, hard, limit) in rooms {
            let q = encode_bounded_reads(&reads, ReplyRoom { soft, hard, limit });
            let (parts, whole) = (s.query_parts(&q), s.query(&q));
            assert_eq!(parts.concat(), whole);
            let a = split_bounded_answer(&parts).unwrap();
            let b_ = split_bounded_answer(std::slice::from_ref(&whole)).unwrap();
            assert_eq!((a.answered, a.refused), (b_.answered, b_.refused));
            assert_eq!(a.replies.concat(), b_.replies.concat());
        }
        // Errors, and an empty query.
        for q in [&[READS_FORMAT, 99][..], &[BOUNDED_READS_FORMAT, 1, 2], &[7]] {
            assert_eq!(s.query_parts(q).concat(), s.query(q));
        }
        assert!(s.query_parts(&encode_reads(&[])).is_empty());
        assert!(s.query(&encode_reads(&[])).is_empty());
    }
}
