//! The commands the store runs, as the server hands them over: writes
//! ([`Write`], what a log entry holds) and reads ([`Read`], what a query
//! holds). Their binary form is their serde form in postcard (`batch`);
//! each family's file runs them.
//!
//! Both are generic over the type of their byte strings: `Bytes` as the
//! server builds them, `&[u8]` as the store decodes them from an entry or
//! a query without copying. The order of the variants is the format: a
//! new command goes at the end of its enum, and none is ever removed or
//! reordered.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::expiry::{ExpireCommand, ExpireCondition, GetExTtl, SetTtl, TtlKind};
use super::tx::TxOp;
use super::typed::TypedCmd;
use crate::acl::{self, PasswordHash};

/// The condition of a `SET`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write<B = Bytes> {
    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT time | KEEPTTL]`,
    /// `SETEX`, `PSETEX`.
    Set {
        /// The key.
        key: B,
        /// The new value.
        value: B,
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
        keys: Vec<B>,
    },
    /// `INCR`, `INCRBY`, `DECR`, `DECRBY`: replies with the new value; the
    /// key keeps its time to live.
    IncrBy {
        /// The key (absent counts as 0).
        key: B,
        /// The amount to add (negative for DECR and DECRBY).
        by: i64,
    },
    /// `APPEND key value`: replies with the new length; the key keeps its
    /// time to live.
    Append {
        /// The key (absent counts as empty).
        key: B,
        /// The bytes to append.
        value: B,
    },
    /// `MSET key value [key value...]`, atomically; clears the keys' times
    /// to live.
    MSet {
        /// The keys and their new values, set in order.
        pairs: Vec<(B, B)>,
    },
    /// `GETSET key value`: replies with the old value (or null); clears the
    /// key's time to live.
    GetSet {
        /// The key.
        key: B,
        /// The new value.
        value: B,
    },
    /// `FLUSHDB`: removes every key.
    FlushDb,
    /// Compare-and-set: replies `:1` if it set `key`, `:0` if not. Setting
    /// clears the key's time to live, as SET does.
    Cas {
        /// The key.
        key: B,
        /// The value the key must hold; `None`: the key must be absent.
        expected: Option<B>,
        /// The value to set.
        new: B,
    },
    /// `ACL SETUSER name rule...`: `+OK` or the error. The rules hold
    /// password hashes, never a password.
    AclSetUser {
        /// The user's name.
        name: B,
        /// The rules, applied in order, all or none.
        rules: Vec<acl::Rule>,
    },
    /// `ACL DELUSER name...`: replies with the number of users removed.
    AclDelUser {
        /// The users' names.
        names: Vec<B>,
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
        key: B,
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
        key: B,
    },
    /// `GETEX key EX|PX|EXAT|PXAT time | PERSIST`: the value (null if
    /// absent), and the key's time to live changed.
    GetEx {
        /// The key.
        key: B,
        /// The change.
        ttl: GetExTtl<B>,
    },
    /// A command on a hash, a set or a list, or one on keys of any type
    /// (`typed`): its arguments after the name, as sent, checked when
    /// parsed ([`super::check_typed`]) and read again when applied.
    Typed {
        /// Which command.
        cmd: TypedCmd,
        /// Its arguments, the key first.
        args: Vec<B>,
    },
    /// `EXEC`: the queued commands of a transaction, applied at once if no
    /// watched key changed (see `tx`); replies with the array of their
    /// replies, or a null array.
    Exec {
        /// The watched keys and the versions read at WATCH.
        watches: Vec<(B, u64)>,
        /// The commands, in order (none of them an EXEC).
        #[serde(deserialize_with = "super::tx::exec_ops")]
        ops: Vec<TxOp<B>>,
    },
    /// `GETDEL key`: the value (or null), and the key removed.
    GetDel {
        /// The key.
        key: B,
    },
    /// `SETRANGE key offset value`: the new length.
    SetRange {
        /// The key.
        key: B,
        /// Where the value goes (zero bytes fill up to it).
        offset: u64,
        /// The bytes to write.
        value: B,
    },
    /// `MSETNX key value...`: `:1` if it set every key (none existed).
    MSetNx {
        /// The keys and their values.
        pairs: Vec<(B, B)>,
    },
    /// `INCRBYFLOAT key by`: the new value.
    IncrByFloat {
        /// The key.
        key: B,
        /// The increment, as sent (parsed when applied).
        by: B,
    },
}

/// A read-only command; a query holds one or more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Read<B = Bytes> {
    /// `GET key`: the value or null.
    Get {
        /// The key.
        key: B,
    },
    /// `MGET key...`: an array of values or nulls.
    MGet {
        /// The keys.
        keys: Vec<B>,
    },
    /// `EXISTS key...`: how many of the keys exist (a key named twice
    /// counts twice, as in Redis).
    Exists {
        /// The keys.
        keys: Vec<B>,
    },
    /// `STRLEN key`: the length of the value (0 if absent).
    Strlen {
        /// The key.
        key: B,
    },
    /// `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`: -2 if absent, -1 if it
    /// has no time to live, else the time left or the deadline.
    Ttl {
        /// The key.
        key: B,
        /// Which time.
        kind: TtlKind,
    },
    /// `DBSIZE`: the number of keys.
    DbSize,
    /// The number of keys with a time to live (INFO keyspace's `expires`).
    VolatileLen,
    /// `KEYS pattern`: the keys matching a glob pattern ([`super::glob_match`]),
    /// in no particular order.
    Keys {
        /// The glob pattern.
        pattern: B,
    },
    /// `SCAN cursor [MATCH pattern] [COUNT count]`: a two-element array,
    /// the next cursor (`"0"` at the end) and the keys found.
    Scan {
        /// Where to continue (0 to start).
        cursor: u64,
        /// Only return keys matching this glob pattern (applied after the
        /// keys are chosen, as in Redis).
        pattern: Option<B>,
        /// How many keys to examine at least (0 is taken as 1).
        count: usize,
    },
    /// A read-only command on a hash, a set or a list, or on keys of any
    /// type (`typed`), as [`Write::Typed`].
    Typed {
        /// Which command.
        cmd: TypedCmd,
        /// Its arguments, the key first.
        args: Vec<B>,
    },
    /// `GETRANGE key start end`: part of the value.
    GetRange {
        /// The key.
        key: B,
        /// The first byte (negative: from the end).
        start: i64,
        /// The last byte, included.
        end: i64,
    },
    /// The keys' versions (WATCH): an array of integers.
    Versions {
        /// The keys.
        keys: Vec<B>,
    },
}
