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
//! By concern: `ops` (the commands, [`Write`] and [`Read`], serde enums),
//! `batch` (their binary format in entries and queries: postcard),
//! `legacy` (the first entry format, still read), `keyspace` (the map ordered by
//! key hash), `value` (what a key holds), `access` (how every family
//! reaches the keys: types, WRONGTYPE, empty collections), `reply` (where
//! replies go: an entry's output, a query's answer, a size), `args`
//! (arguments and errors as Redis words them), `query` (answering reads,
//! bounded or not), `snapshot` (the snapshot format), `glob` (patterns).
//! One file per family of commands, as in `crate::cmd`: `strings`,
//! `keys`, `expiry` (times to live and the log's time), `hashes`, `sets`,
//! `lists` (`typed` dispatches their commands, sent with their arguments
//! as they came), `tx` (MULTI/EXEC and the key versions WATCH reads),
//! `users` (ACL). This file holds the store and its glue to
//! [`raft_node::StateMachine`]: it applies entries, answers queries, and
//! writes and restores snapshots.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::acl::{self, SharedUsers, Users};
use crate::blocking::Wakeups;
use crate::frame::put_error;

mod access;
mod args;
mod batch;
mod expiry;
mod float;
mod glob;
mod hashes;
mod keys;
mod keyspace;
mod legacy;
mod lists;
mod ops;
mod query;
mod reply;
mod sets;
mod snapshot;
mod strings;
mod tx;
mod typed;
mod users;
mod value;

pub use args::{parse_i64, parse_timeout_ms, TIMEOUT_NEGATIVE, TIMEOUT_NOT_FLOAT};
pub(crate) use batch::refuse;
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
pub use glob::glob_match;
use keyspace::*;
pub use lists::{blocking_timeout_ms, mpop_args};
pub use ops::{Read, SetCondition, Write};
use reply::Answer;
pub use reply::SHARED_VALUE_BYTES;
use snapshot::{crc32c, decode_snapshot, SNAP_HEADER, SNAP_MAGIC, SNAP_VERSION};
pub use tx::TxOp;
pub use typed::{check_typed, TypedCmd};
use value::Rng;
pub use value::WRONGTYPE;

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
    /// Where the keys go after each change (the clients blocked on them).
    wake: Waker,
}

/// The node's [`Wakeups`], if any: no part of the state (every store
/// compares equal whatever it wakes).
#[derive(Debug, Clone, Default)]
struct Waker(Option<Arc<Wakeups>>);

impl PartialEq for Waker {
    fn eq(&self, _: &Waker) -> bool {
        true
    }
}

impl Eq for Waker {}

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

    /// The store, telling `wakeups` of every key an applied write changes
    /// (and of every key when a snapshot replaces it).
    pub fn waking(self, wakeups: Arc<Wakeups>) -> Self {
        KvStore {
            wake: Waker(Some(wakeups)),
            ..self
        }
    }

    /// Records that `key` changed in the entry at `index`: its version
    /// (WATCH), and a wake-up for the clients blocked on it.
    fn changed(&mut self, key: &[u8], index: u64) {
        self.versions.bump(key, index);
        if let Some(w) = &self.wake.0 {
            w.changed(key);
        }
    }

    /// The ACL users.
    pub fn users(&self) -> &Users {
        &self.users
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Applies one write (not an EXEC: see `tx`), each by its family's
    /// file.
    fn write(&mut self, op: Write<&[u8]>, out: &mut BytesMut) {
        match op {
            Write::Set {
                key,
                value,
                condition,
                get,
                ttl,
            } => self.write_set(key, value, condition, get, ttl, out),
            Write::Del { keys } => self.write_del(&keys, out),
            Write::IncrBy { key, by } => self.write_incrby(key, by, out),
            Write::Append { key, value } => self.write_append(key, value, out),
            Write::MSet { pairs } => self.write_mset(&pairs, out),
            Write::GetSet { key, value } => self.write_getset(key, value, out),
            Write::FlushDb => self.write_flushdb(out),
            Write::Cas { key, expected, new } => self.write_cas(key, expected, new, out),
            Write::AclSetUser { name, rules } => self.write_acl_setuser(name, &rules, out),
            Write::AclDelUser { names } => self.write_acl_deluser(&names, out),
            Write::AclInit { password } => self.write_acl_init(password, out),
            Write::Expire {
                key,
                when_ms,
                command,
                condition,
            } => self.write_expire(key, when_ms, command, condition, out),
            Write::Persist { key } => self.write_persist(key, out),
            Write::GetEx { key, ttl } => self.write_getex(key, ttl, out),
            // The keys it changes are recorded by `apply_write`.
            Write::Typed { cmd, args } => self.write_typed(cmd, &args, out, &mut Vec::new()),
            Write::GetDel { key } => self.write_getdel(key, out),
            Write::SetRange { key, offset, value } => self.write_setrange(key, offset, value, out),
            Write::MSetNx { pairs } => self.write_msetnx(&pairs, out),
            Write::IncrByFloat { key, by } => self.write_incrbyfloat(key, by, out),
            // Applied by `apply_write`, never here.
            Write::Exec { .. } => put_error(out, "ERR EXEC inside EXEC"),
        }
    }
}

impl raft_node::StateMachine for KvStore {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        let writes = match decode_writes(command) {
            Ok(w) => w,
            Err(why) => return batch_error("command", &why),
        };
        let mut out = BytesMut::with_capacity(writes.len().saturating_mul(8));
        for (position, op) in (0..).zip(writes) {
            // The seed of any random pick: from the log, the same on
            // every node.
            self.seed.0 = (index, position);
            self.apply_write(index, op, &mut out);
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

    /// The answer [`raft_node::StateMachine::query`] gives, in parts: RESP framing and
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
        if let Some(w) = &self.wake.0 {
            w.changed_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
