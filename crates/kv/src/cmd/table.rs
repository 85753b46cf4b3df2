//! The command table: every command raft-kv knows, with what `COMMAND INFO`
//! shows of it (arity, flags, key positions), its ACL categories as Redis 7
//! assigns them, the family that parses and runs it ([`Family`]), a
//! one-line summary and what `COMMAND DOCS` shows ([`Doc`]). It is the one
//! list of command names: dispatch and the arity check
//! ([`crate::cmd::parse`]), the permission check, `ACL CAT`, `COMMAND`, the
//! metrics (one counter per command) and the README's list of commands
//! ([`readme_list`]) all read it. Adding a command is one row here, its
//! parse in its family's file here (`cmd/<family>.rs`), and its run in the
//! store's file of that family (`store/<family>.rs`; ACL's is `users.rs`,
//! the transactions' `tx.rs`).
//!
//! Containers (ACL, CONFIG, CLIENT) have an entry of their own and one per
//! subcommand, named `container|sub` as in Redis 7, so that a rule may
//! allow `+acl|whoami` without the rest of ACL. A container belongs to no
//! category (a category rule reaches its subcommands one by one), so that
//! `+@slow` cannot grant `ACL SETUSER` through the container.

use bytes::Bytes;

/// The ACL categories, in Redis 7's order (`ACL CAT`). A category's bit in
/// [`CommandSpec::categories`] is `1 << its index`.
pub const CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

const KEYSPACE: u32 = 1 << 0;
const READ: u32 = 1 << 1;
const WRITE: u32 = 1 << 2;
const SET: u32 = 1 << 3;
const LIST: u32 = 1 << 5;
const HASH: u32 = 1 << 6;
const STRING: u32 = 1 << 7;
const ADMIN: u32 = 1 << 13;
const FAST: u32 = 1 << 14;
const SLOW: u32 = 1 << 15;
const BLOCKING: u32 = 1 << 16;
const DANGEROUS: u32 = 1 << 17;
const CONNECTION: u32 = 1 << 18;
const TRANSACTION: u32 = 1 << 19;

/// A category by its name (case-insensitive, without the `@`); its index
/// in [`CATEGORIES`].
pub fn category(name: &[u8]) -> Option<usize> {
    CATEGORIES
        .iter()
        .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
}

/// One command (or subcommand) of the table.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// The lower-case name; `container|sub` for a subcommand.
    pub name: &'static str,
    /// Redis's arity: the number of arguments with the name, negative for
    /// "at least".
    pub arity: i64,
    /// The flags `COMMAND INFO` shows.
    pub flags: &'static [&'static str],
    /// The position of the first key argument (0: none).
    pub first_key: i64,
    /// The position of the last key argument (-1: the last argument).
    pub last_key: i64,
    /// The step between key arguments.
    pub key_step: i64,
    /// The position of the argument that says how many keys follow it
    /// (LMPOP's numkeys; 0: none): the keys are then the arguments after
    /// it, and COMMAND INFO shows the `movablekeys` flag and no positions.
    pub numkeys_at: usize,
    /// The ACL categories, one bit per index in [`CATEGORIES`].
    pub categories: u32,
    /// The family that parses it (a subcommand's is its container's).
    pub family: Family,
    /// What it does, in a few words (the README's list, `COMMAND DOCS`).
    pub summary: &'static str,
    /// The rest of what `COMMAND DOCS` shows of it.
    pub doc: Doc,
}

/// What `COMMAND DOCS` shows of a command beyond its summary, as Redis 7
/// shows it (a row gives the three as one tuple).
#[derive(Debug, PartialEq, Eq)]
pub struct Doc {
    /// The version that added it: Redis's for Redis's commands, raft-kv's
    /// for its own (CAS, RAFT.*).
    pub since: &'static str,
    /// Redis's group of commands: `string`, `generic` (keys of any type),
    /// `hash`, `set`, `list`, `transactions`, `connection`, `server`,
    /// `cluster`.
    pub group: &'static str,
    /// Its time complexity, in a few words.
    pub complexity: &'static str,
}

/// The families of commands, one file each in `crate::cmd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `cmd/strings.rs`: GET, SET, INCR...
    Strings,
    /// `cmd/keys.rs`: DEL, EXISTS, KEYS, SCAN...
    Keys,
    /// `cmd/expiry.rs`: EXPIRE, TTL, PERSIST, SETEX...
    Expiry,
    /// `cmd/hashes.rs`: HSET, HGET, HGETALL...
    Hashes,
    /// `cmd/sets.rs`: SADD, SMEMBERS, SINTER...
    Sets,
    /// `cmd/lists.rs`: LPUSH, LRANGE, LMOVE...
    Lists,
    /// `cmd/server.rs`: PING, AUTH, INFO, CONFIG...
    Server,
    /// `cmd/raft.rs`: RAFT.*.
    Raft,
    /// `cmd/acl.rs`: ACL and its subcommands.
    Acl,
    /// `cmd/transactions.rs`: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transactions,
}

impl Family {
    /// The family's heading in the README's list.
    pub fn title(self) -> &'static str {
        match self {
            Family::Strings => "Strings",
            Family::Keys => "Keys",
            Family::Expiry => "Expiry (by the log's time)",
            Family::Hashes => "Hashes",
            Family::Sets => "Sets",
            Family::Lists => "Lists",
            Family::Server => "Connection and server",
            Family::Raft => "Cluster (raft-kv's own)",
            Family::Acl => "Users (ACL)",
            Family::Transactions => "Transactions",
        }
    }

    /// Every family, in the README's order.
    pub const ALL: [Family; 10] = [
        Family::Strings,
        Family::Keys,
        Family::Expiry,
        Family::Hashes,
        Family::Sets,
        Family::Lists,
        Family::Transactions,
        Family::Server,
        Family::Acl,
        Family::Raft,
    ];
}

impl CommandSpec {
    /// True for commands any client may run, authenticated or not, whatever
    /// its user's command rules (Redis's `no_auth` flag).
    pub fn is_no_auth(&self) -> bool {
        self.flags.contains(&"no_auth")
    }

    /// How the metrics time it: writes (the `write` category), reads (the
    /// `read` category) or neither.
    pub fn is_write(&self) -> bool {
        self.categories & WRITE != 0
    }

    /// True for a command in the `read` category.
    pub fn is_read(&self) -> bool {
        self.categories & READ != 0
    }

    /// True for a subcommand (`container|sub`).
    pub fn is_subcommand(&self) -> bool {
        self.name.contains('|')
    }

    /// Whether `args` (the command name first) has an acceptable number of
    /// arguments.
    pub fn arity_ok(&self, args: usize) -> bool {
        let n = args as i64;
        if self.arity >= 0 {
            n == self.arity
        } else {
            n >= -self.arity
        }
    }

    /// The indexes in `args` (the command name first) of the key
    /// arguments: from the first, last and step positions, or the
    /// arguments that the numkeys argument counts (none if it is not a
    /// positive number; never past the end).
    pub fn key_indexes<A: AsRef<[u8]>>(&self, args: &[A]) -> impl Iterator<Item = usize> {
        let (first, last, step) = if self.numkeys_at > 0 {
            let n = args
                .get(self.numkeys_at)
                .and_then(|n| crate::store::parse_i64(n.as_ref()))
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0);
            let first = self.numkeys_at + 1;
            let last = first.saturating_add(n).min(args.len()).saturating_sub(1);
            (first, last, 1)
        } else {
            self.positions(args.len())
        };
        (first..=last).step_by(step)
    }

    /// The first and last key indexes and the step, from the positions.
    fn positions(&self, args: usize) -> (usize, usize, usize) {
        let first = usize::try_from(self.first_key).unwrap_or(0);
        let last = if self.last_key < 0 {
            args.saturating_sub(self.last_key.unsigned_abs() as usize)
        } else {
            usize::try_from(self.last_key).unwrap_or(0)
        };
        let step = usize::try_from(self.key_step).unwrap_or(1).max(1);
        if first == 0 {
            (1, 0, step)
        } else {
            (first, last.min(args.saturating_sub(1)), step)
        }
    }
}

macro_rules! spec {
    ($name:expr, $arity:expr, [$($flag:expr),*], numkeys at $at:expr, $cats:expr, $family:ident, $summary:expr, ($since:expr, $group:expr, $complexity:expr)) => {
        CommandSpec {
            numkeys_at: $at,
            ..spec!($name, $arity, [$($flag),*], 0, 0, 0, $cats, $family, $summary, ($since, $group, $complexity))
        }
    };
    ($name:expr, $arity:expr, [$($flag:expr),*], $first:expr, $last:expr, $step:expr, $cats:expr, $family:ident, $summary:expr, ($since:expr, $group:expr, $complexity:expr)) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: &[$($flag),*],
            first_key: $first,
            last_key: $last,
            key_step: $step,
            numkeys_at: 0,
            categories: $cats,
            family: Family::$family,
            summary: $summary,
            doc: Doc {
                since: $since,
                group: $group,
                complexity: $complexity,
            },
        }
    };
}

/// Every command raft-kv knows, subcommands after their container.
pub static COMMANDS: &[CommandSpec] = TABLE;

/// The words of a [`CommandSet`]: as many as the table needs.
const WORDS: usize = TABLE.len().div_ceil(64);

/// A set of commands, as indexes in [`COMMANDS`] (a user's allowed
/// commands, what an ACL rule applies to): as wide as the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommandSet([u64; WORDS]);

impl CommandSet {
    /// No command.
    pub const NONE: CommandSet = CommandSet([0; WORDS]);

    /// Every command of the table.
    pub fn all() -> CommandSet {
        (0..COMMANDS.len()).collect()
    }

    /// Whether it holds the command at index `i`.
    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds the command at index `i` (which must be in the table).
    pub fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// The commands in both.
    pub fn and(self, other: CommandSet) -> CommandSet {
        CommandSet(std::array::from_fn(|w| self.0[w] & other.0[w]))
    }

    /// The commands in either.
    pub fn or(self, other: CommandSet) -> CommandSet {
        CommandSet(std::array::from_fn(|w| self.0[w] | other.0[w]))
    }

    /// The commands in this set but not in `other`.
    pub fn without(self, other: CommandSet) -> CommandSet {
        CommandSet(std::array::from_fn(|w| self.0[w] & !other.0[w]))
    }

    /// How many commands it holds.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether it holds no command.
    pub fn is_empty(&self) -> bool {
        *self == CommandSet::NONE
    }
}

impl FromIterator<usize> for CommandSet {
    fn from_iter<I: IntoIterator<Item = usize>>(indexes: I) -> CommandSet {
        let mut set = CommandSet::NONE;
        for i in indexes {
            set.insert(i);
        }
        set
    }
}

const TABLE: &[CommandSpec] = &[
    spec!(
        "get",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | STRING | FAST,
        Strings,
        "the value of a key",
        ("1.0.0", "string", "O(1)")
    ),
    spec!(
        "set",
        -3,
        ["write", "denyoom"],
        1,
        1,
        1,
        WRITE | STRING | SLOW,
        Strings,
        "sets a key (NX, XX, GET; EX, PX, EXAT, PXAT, KEEPTTL)",
        ("1.0.0", "string", "O(1)")
    ),
    spec!(
        "del",
        -2,
        ["write"],
        1,
        -1,
        1,
        KEYSPACE | WRITE | SLOW,
        Keys,
        "removes keys",
        ("1.0.0", "generic", "O(N) for N keys (and the size of each collection removed)")
    ),
    spec!(
        "unlink",
        -2,
        ["write", "fast"],
        1,
        -1,
        1,
        KEYSPACE | WRITE | FAST,
        Keys,
        "removes keys (as DEL)",
        ("4.0.0", "generic", "O(N) for N keys (and the size of each collection removed)")
    ),
    spec!(
        "exists",
        -2,
        ["readonly", "fast"],
        1,
        -1,
        1,
        KEYSPACE | READ | FAST,
        Keys,
        "how many of the keys exist",
        ("1.0.0", "generic", "O(N) for N keys")
    ),
    spec!(
        "incr",
        2,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST,
        Strings,
        "adds 1 to an integer",
        ("1.0.0", "string", "O(1)")
    ),
    spec!(
        "incrby",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST,
        Strings,
        "adds to an integer",
        ("1.0.0", "string", "O(1)")
    ),
    spec!(
        "decr",
        2,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST,
        Strings,
        "subtracts 1 from an integer",
        ("1.0.0", "string", "O(1)")
    ),
    spec!(
        "decrby",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST,
        Strings,
        "subtracts from an integer",
        ("1.0.0", "string", "O(1)")
    ),
    spec!(
        "append",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST,
        Strings,
        "appends to a value",
        ("2.0.0", "string", "O(1) amortized")
    ),
    spec!(
        "strlen",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | STRING | FAST,
        Strings,
        "the length of a value",
        ("2.2.0", "string", "O(1)")
    ),
    spec!(
        "mget",
        -2,
        ["readonly", "fast"],
        1,
        -1,
        1,
        READ | STRING | FAST,
        Strings,
        "the values of keys",
        ("1.0.0", "string", "O(N) for N keys")
    ),
    spec!(
        "mset",
        -3,
        ["write", "denyoom"],
        1,
        -1,
        2,
        WRITE | STRING | SLOW,
        Strings,
        "sets keys atomically (one log entry)",
        ("1.0.1", "string", "O(N) for N keys")
    ),
    spec!(
        "getset",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST,
        Strings,
        "sets a key, replies with the old value",
        ("1.0.0", "string", "O(1)")
    ),
    spec!(
        "cas",
        4,
        ["write", "denyoom"],
        1,
        1,
        1,
        WRITE | STRING | SLOW,
        Strings,
        "compare-and-set (raft-kv's own): 1 if it set, 0 if not",
        ("0.1.0", "string", "O(1)")
    ),
    spec!(
        "incrbyfloat",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST,
        Strings,
        "adds a decimal number (long double arithmetic, as Redis on x86-64)",
        ("2.6.0", "string", "O(1)")
    ),
    spec!(
        "getdel",
        2,
        ["write", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST,
        Strings,
        "the value, and removes the key",
        ("6.2.0", "string", "O(1)")
    ),
    spec!(
        "getrange",
        4,
        ["readonly"],
        1,
        1,
        1,
        READ | STRING | SLOW,
        Strings,
        "part of a value (negative offsets from the end)",
        ("2.4.0", "string", "O(N) for N bytes returned")
    ),
    spec!(
        "setrange",
        4,
        ["write", "denyoom"],
        1,
        1,
        1,
        WRITE | STRING | SLOW,
        Strings,
        "overwrites part of a value, zero-padded; replies with the length",
        ("2.2.0", "string", "O(M) for a value of M bytes")
    ),
    spec!(
        "msetnx",
        -3,
        ["write", "denyoom"],
        1,
        -1,
        2,
        WRITE | STRING | SLOW,
        Strings,
        "sets keys atomically if none exists: 1, else 0",
        ("1.0.1", "string", "O(N) for N keys")
    ),
    spec!(
        "dbsize",
        1,
        ["readonly", "fast"],
        0,
        0,
        0,
        KEYSPACE | READ | FAST,
        Keys,
        "the number of keys",
        ("1.0.0", "server", "O(1)")
    ),
    spec!(
        "keys",
        2,
        ["readonly"],
        0,
        0,
        0,
        KEYSPACE | READ | SLOW | DANGEROUS,
        Keys,
        "the keys matching a glob pattern",
        ("1.0.0", "generic", "O(N) for N keys in the store")
    ),
    spec!(
        "scan",
        -2,
        ["readonly"],
        0,
        0,
        0,
        KEYSPACE | READ | SLOW,
        Keys,
        "iterates the keys (MATCH, COUNT, TYPE); stable cursors",
        ("2.8.0", "generic", "O(1) a call; O(N) a whole iteration")
    ),
    spec!(
        "flushdb",
        -1,
        ["write"],
        0,
        0,
        0,
        KEYSPACE | WRITE | SLOW | DANGEROUS,
        Keys,
        "removes every key",
        ("1.0.0", "server", "O(N) for N keys")
    ),
    spec!(
        "flushall",
        -1,
        ["write"],
        0,
        0,
        0,
        KEYSPACE | WRITE | SLOW | DANGEROUS,
        Keys,
        "removes every key (one database)",
        ("1.0.0", "server", "O(N) for N keys")
    ),
    spec!(
        "setex",
        4,
        ["write", "denyoom"],
        1,
        1,
        1,
        WRITE | STRING | SLOW,
        Expiry,
        "sets a key that lives this many seconds",
        ("2.0.0", "string", "O(1)")
    ),
    spec!(
        "psetex",
        4,
        ["write", "denyoom"],
        1,
        1,
        1,
        WRITE | STRING | SLOW,
        Expiry,
        "sets a key that lives this many milliseconds",
        ("2.6.0", "string", "O(1)")
    ),
    spec!(
        "getex",
        -2,
        ["write", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST,
        Expiry,
        "the value, and sets or removes its time to live (EX, PX, EXAT, PXAT, PERSIST)",
        ("6.2.0", "string", "O(1)")
    ),
    spec!(
        "expire",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        KEYSPACE | WRITE | FAST,
        Expiry,
        "sets a time to live in seconds (NX, XX, GT, LT)",
        ("1.0.0", "generic", "O(1)")
    ),
    spec!(
        "pexpire",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        KEYSPACE | WRITE | FAST,
        Expiry,
        "sets a time to live in milliseconds (NX, XX, GT, LT)",
        ("2.6.0", "generic", "O(1)")
    ),
    spec!(
        "expireat",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        KEYSPACE | WRITE | FAST,
        Expiry,
        "sets a deadline in Unix seconds (NX, XX, GT, LT)",
        ("1.2.0", "generic", "O(1)")
    ),
    spec!(
        "pexpireat",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        KEYSPACE | WRITE | FAST,
        Expiry,
        "sets a deadline in Unix milliseconds (NX, XX, GT, LT)",
        ("2.6.0", "generic", "O(1)")
    ),
    spec!(
        "ttl",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        KEYSPACE | READ | FAST,
        Expiry,
        "the seconds left to live (-1 none, -2 no key)",
        ("1.0.0", "generic", "O(1)")
    ),
    spec!(
        "pttl",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        KEYSPACE | READ | FAST,
        Expiry,
        "the milliseconds left to live (-1 none, -2 no key)",
        ("2.6.0", "generic", "O(1)")
    ),
    spec!(
        "expiretime",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        KEYSPACE | READ | FAST,
        Expiry,
        "the deadline in Unix seconds (-1 none, -2 no key)",
        ("7.0.0", "generic", "O(1)")
    ),
    spec!(
        "pexpiretime",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        KEYSPACE | READ | FAST,
        Expiry,
        "the deadline in Unix milliseconds (-1 none, -2 no key)",
        ("7.0.0", "generic", "O(1)")
    ),
    spec!(
        "persist",
        2,
        ["write", "fast"],
        1,
        1,
        1,
        KEYSPACE | WRITE | FAST,
        Expiry,
        "removes a time to live",
        ("2.2.0", "generic", "O(1)")
    ),
    spec!(
        "multi",
        1,
        ["noscript", "loading", "stale", "fast", "allow_busy"],
        0,
        0,
        0,
        FAST | TRANSACTION,
        Transactions,
        "starts queueing commands",
        ("1.2.0", "transactions", "O(1)")
    ),
    spec!(
        "exec",
        1,
        ["noscript", "loading", "stale", "skip_slowlog"],
        0,
        0,
        0,
        SLOW | TRANSACTION,
        Transactions,
        "runs the queued commands as one log entry, atomically on every node (null if a watched key changed)",
        ("1.2.0", "transactions", "that of the queued commands")
    ),
    spec!(
        "discard",
        1,
        ["noscript", "loading", "stale", "fast", "allow_busy"],
        0,
        0,
        0,
        FAST | TRANSACTION,
        Transactions,
        "drops the queued commands and the watches",
        ("2.0.0", "transactions", "O(N) for N queued commands")
    ),
    spec!(
        "watch",
        -2,
        ["noscript", "loading", "stale", "fast", "allow_busy"],
        1,
        -1,
        1,
        FAST | TRANSACTION,
        Transactions,
        "EXEC runs only if these keys do not change (versions read linearizably)",
        ("2.2.0", "transactions", "O(1) a key")
    ),
    spec!(
        "unwatch",
        1,
        ["noscript", "loading", "stale", "fast", "allow_busy"],
        0,
        0,
        0,
        FAST | TRANSACTION,
        Transactions,
        "forgets the watched keys",
        ("2.2.0", "transactions", "O(1)")
    ),
    spec!(
        "ping",
        -1,
        ["fast", "stale"],
        0,
        0,
        0,
        FAST | CONNECTION,
        Server,
        "PONG, or the message",
        ("1.0.0", "connection", "O(1)")
    ),
    spec!(
        "echo",
        2,
        ["fast", "stale"],
        0,
        0,
        0,
        FAST | CONNECTION,
        Server,
        "the message",
        ("1.0.0", "connection", "O(1)")
    ),
    spec!(
        "auth",
        -2,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        FAST | CONNECTION,
        Server,
        "authenticates the connection",
        ("1.0.0", "connection", "O(1)")
    ),
    spec!(
        "hello",
        -1,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        FAST | CONNECTION,
        Server,
        "protocol 2 only, with AUTH and SETNAME",
        ("6.0.0", "connection", "O(1)")
    ),
    spec!(
        "info",
        -1,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | DANGEROUS,
        Server,
        "server, clients, stats, replication, raft, keyspace",
        ("1.0.0", "server", "O(1)")
    ),
    spec!(
        "command",
        -1,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION,
        Server,
        "this table: COUNT, INFO, LIST, DOCS",
        ("2.8.13", "server", "O(N) for N commands")
    ),
    spec!(
        "config",
        -2,
        [],
        0,
        0,
        0,
        0,
        Server,
        "CONFIG subcommands",
        ("2.0.0", "server", "that of the subcommand")
    ),
    spec!(
        "config|get",
        -3,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Server,
        "settings by glob pattern",
        ("2.0.0", "server", "O(N) for N parameters")
    ),
    spec!(
        "config|set",
        -4,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Server,
        "changes a setting",
        ("2.0.0", "server", "O(N) for N parameters")
    ),
    spec!(
        "config|resetstat",
        2,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Server,
        "resets the statistics",
        ("2.0.0", "server", "O(1)")
    ),
    spec!(
        "config|rewrite",
        2,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Server,
        "refused: settings come from flags",
        ("2.8.0", "server", "O(1)")
    ),
    spec!(
        "select",
        2,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        FAST | CONNECTION,
        Server,
        "database 0 only",
        ("1.0.0", "connection", "O(1)")
    ),
    spec!(
        "client",
        -2,
        [],
        0,
        0,
        0,
        0,
        Server,
        "CLIENT subcommands",
        ("2.4.0", "connection", "that of the subcommand")
    ),
    spec!(
        "client|id",
        2,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION,
        Server,
        "the connection id",
        ("5.0.0", "connection", "O(1)")
    ),
    spec!(
        "client|setname",
        3,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION,
        Server,
        "names the connection",
        ("2.6.9", "connection", "O(1)")
    ),
    spec!(
        "client|getname",
        2,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION,
        Server,
        "the connection name",
        ("2.6.9", "connection", "O(1)")
    ),
    spec!(
        "client|setinfo",
        4,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION,
        Server,
        "library name and version",
        ("7.2.0", "connection", "O(1)")
    ),
    spec!(
        "client|info",
        2,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION,
        Server,
        "this connection",
        ("6.2.0", "connection", "O(1)")
    ),
    spec!(
        "client|list",
        -2,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS | CONNECTION,
        Server,
        "the connections",
        ("2.4.0", "connection", "O(N) for N connections")
    ),
    spec!(
        "quit",
        -1,
        ["loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        FAST | CONNECTION,
        Server,
        "closes the connection",
        ("1.0.0", "connection", "O(1)")
    ),
    spec!(
        "readonly",
        1,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        FAST | CONNECTION,
        Server,
        "this connection reads locally (fast, possibly stale)",
        ("3.0.0", "cluster", "O(1)")
    ),
    spec!(
        "readwrite",
        1,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        FAST | CONNECTION,
        Server,
        "this connection reads linearizably again",
        ("3.0.0", "cluster", "O(1)")
    ),
    spec!(
        "acl",
        -2,
        [],
        0,
        0,
        0,
        0,
        Acl,
        "ACL subcommands",
        ("6.0.0", "server", "that of the subcommand")
    ),
    spec!(
        "acl|cat",
        -2,
        ["noscript", "loading", "stale"],
        0,
        0,
        0,
        SLOW,
        Acl,
        "the categories, or a category's commands",
        ("6.0.0", "server", "O(1)")
    ),
    spec!(
        "acl|deluser",
        -3,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Acl,
        "removes users (through the log)",
        ("6.0.0", "server", "O(N) for N users named")
    ),
    spec!(
        "acl|dryrun",
        -4,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Acl,
        "whether a user may run a command",
        ("7.0.0", "server", "O(1)")
    ),
    spec!(
        "acl|getuser",
        3,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Acl,
        "a user's rules",
        ("6.0.0", "server", "O(N) for N rules of the user")
    ),
    spec!(
        "acl|help",
        2,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW,
        Acl,
        "the ACL subcommands",
        ("6.0.0", "server", "O(1)")
    ),
    spec!(
        "acl|list",
        2,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Acl,
        "every user as rules",
        ("6.0.0", "server", "O(N) for N users")
    ),
    spec!(
        "acl|setuser",
        -3,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Acl,
        "creates or changes a user (through the log)",
        ("6.0.0", "server", "O(N) for N rules")
    ),
    spec!(
        "acl|users",
        2,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Acl,
        "the user names",
        ("6.0.0", "server", "O(N) for N users")
    ),
    spec!(
        "acl|whoami",
        2,
        ["noscript", "loading", "stale"],
        0,
        0,
        0,
        SLOW,
        Acl,
        "the connection's user",
        ("6.0.0", "server", "O(1)")
    ),
    spec!(
        "type",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        KEYSPACE | READ | FAST,
        Keys,
        "the type of a key's value (string, hash, set, list or none)",
        ("1.0.0", "generic", "O(1)")
    ),
    spec!(
        "rename",
        3,
        ["write"],
        1,
        2,
        1,
        KEYSPACE | WRITE | SLOW,
        Keys,
        "renames a key (its value of any type and its time to live)",
        ("1.0.0", "generic", "O(1)")
    ),
    spec!(
        "renamenx",
        3,
        ["write", "fast"],
        1,
        2,
        1,
        KEYSPACE | WRITE | FAST,
        Keys,
        "renames a key if the new name is free: 1, else 0",
        ("1.0.0", "generic", "O(1)")
    ),
    spec!(
        "copy",
        -3,
        ["write", "denyoom"],
        1,
        2,
        1,
        KEYSPACE | WRITE | SLOW,
        Keys,
        "copies a key's value and time to live (DB 0, REPLACE): 1, else 0",
        ("6.2.0", "generic", "O(N) for a value of N items")
    ),
    spec!(
        "hset",
        -4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | HASH | FAST,
        Hashes,
        "sets fields of a hash (how many are new)",
        ("2.0.0", "hash", "O(N) for N pairs")
    ),
    spec!(
        "hsetnx",
        4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | HASH | FAST,
        Hashes,
        "sets a field of a hash if it is absent",
        ("2.0.0", "hash", "O(1)")
    ),
    spec!(
        "hget",
        3,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | HASH | FAST,
        Hashes,
        "the value of a field",
        ("2.0.0", "hash", "O(1)")
    ),
    spec!(
        "hmget",
        -3,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | HASH | FAST,
        Hashes,
        "the values of fields",
        ("2.0.0", "hash", "O(N) for N fields")
    ),
    spec!(
        "hdel",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        WRITE | HASH | FAST,
        Hashes,
        "removes fields (the last removes the key)",
        ("2.0.0", "hash", "O(N) for N fields")
    ),
    spec!(
        "hgetall",
        2,
        ["readonly"],
        1,
        1,
        1,
        READ | HASH | SLOW,
        Hashes,
        "every field and value",
        ("2.0.0", "hash", "O(N) for a hash of N fields")
    ),
    spec!(
        "hlen",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | HASH | FAST,
        Hashes,
        "the number of fields",
        ("2.0.0", "hash", "O(1)")
    ),
    spec!(
        "hexists",
        3,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | HASH | FAST,
        Hashes,
        "whether a field exists",
        ("2.0.0", "hash", "O(1)")
    ),
    spec!(
        "hincrby",
        4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | HASH | FAST,
        Hashes,
        "adds an integer to a field",
        ("2.0.0", "hash", "O(1)")
    ),
    spec!(
        "hincrbyfloat",
        4,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | HASH | FAST,
        Hashes,
        "adds a float to a field (computed in 64-bit floats)",
        ("2.6.0", "hash", "O(1)")
    ),
    spec!(
        "hkeys",
        2,
        ["readonly"],
        1,
        1,
        1,
        READ | HASH | SLOW,
        Hashes,
        "every field",
        ("2.0.0", "hash", "O(N) for a hash of N fields")
    ),
    spec!(
        "hvals",
        2,
        ["readonly"],
        1,
        1,
        1,
        READ | HASH | SLOW,
        Hashes,
        "every value",
        ("2.0.0", "hash", "O(N) for a hash of N fields")
    ),
    spec!(
        "hstrlen",
        3,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | HASH | FAST,
        Hashes,
        "the length of a field's value",
        ("3.2.0", "hash", "O(1)")
    ),
    spec!(
        "hscan",
        -3,
        ["readonly"],
        1,
        1,
        1,
        READ | HASH | SLOW,
        Hashes,
        "iterates fields (MATCH, COUNT) by a stateless cursor",
        ("2.8.0", "hash", "O(1) a call; O(N) a whole iteration")
    ),
    spec!(
        "hrandfield",
        -2,
        ["readonly"],
        1,
        1,
        1,
        READ | HASH | SLOW,
        Hashes,
        "random fields (count, WITHVALUES), picked through the log",
        ("6.2.0", "hash", "O(N) for N fields returned")
    ),
    spec!(
        "sadd",
        -3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | SET | FAST,
        Sets,
        "adds members (how many are new)",
        ("1.0.0", "set", "O(N) for N members")
    ),
    spec!(
        "srem",
        -3,
        ["write", "fast"],
        1,
        1,
        1,
        WRITE | SET | FAST,
        Sets,
        "removes members (the last removes the key)",
        ("1.0.0", "set", "O(N) for N members")
    ),
    spec!(
        "smembers",
        2,
        ["readonly"],
        1,
        1,
        1,
        READ | SET | SLOW,
        Sets,
        "every member",
        ("1.0.0", "set", "O(N) for a set of N members")
    ),
    spec!(
        "sismember",
        3,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | SET | FAST,
        Sets,
        "whether a member is in the set",
        ("1.0.0", "set", "O(1)")
    ),
    spec!(
        "smismember",
        -3,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | SET | FAST,
        Sets,
        "whether each member is in the set",
        ("6.2.0", "set", "O(N) for N members")
    ),
    spec!(
        "scard",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | SET | FAST,
        Sets,
        "the number of members",
        ("1.0.0", "set", "O(1)")
    ),
    spec!(
        "spop",
        -2,
        ["write", "fast"],
        1,
        1,
        1,
        WRITE | SET | FAST,
        Sets,
        "removes random members, picked through the log",
        ("1.0.0", "set", "O(N) for N members popped")
    ),
    spec!(
        "srandmember",
        -2,
        ["readonly"],
        1,
        1,
        1,
        READ | SET | SLOW,
        Sets,
        "random members (count), picked through the log",
        ("1.0.0", "set", "O(N) for N members returned")
    ),
    spec!(
        "sinter",
        -2,
        ["readonly"],
        1,
        -1,
        1,
        READ | SET | SLOW,
        Sets,
        "the intersection of sets",
        ("1.0.0", "set", "O(N*M) for M sets, the smallest of N members")
    ),
    spec!(
        "sunion",
        -2,
        ["readonly"],
        1,
        -1,
        1,
        READ | SET | SLOW,
        Sets,
        "the union of sets",
        ("1.0.0", "set", "O(N) for N members in all")
    ),
    spec!(
        "sdiff",
        -2,
        ["readonly"],
        1,
        -1,
        1,
        READ | SET | SLOW,
        Sets,
        "the members of the first set in none of the others",
        ("1.0.0", "set", "O(N) for N members in all")
    ),
    spec!(
        "sinterstore",
        -3,
        ["write", "denyoom"],
        1,
        -1,
        1,
        WRITE | SET | SLOW,
        Sets,
        "stores an intersection",
        ("1.0.0", "set", "O(N*M) for M sets, the smallest of N members")
    ),
    spec!(
        "sunionstore",
        -3,
        ["write", "denyoom"],
        1,
        -1,
        1,
        WRITE | SET | SLOW,
        Sets,
        "stores a union",
        ("1.0.0", "set", "O(N) for N members in all")
    ),
    spec!(
        "sdiffstore",
        -3,
        ["write", "denyoom"],
        1,
        -1,
        1,
        WRITE | SET | SLOW,
        Sets,
        "stores a difference",
        ("1.0.0", "set", "O(N) for N members in all")
    ),
    spec!(
        "sscan",
        -3,
        ["readonly"],
        1,
        1,
        1,
        READ | SET | SLOW,
        Sets,
        "iterates members (MATCH, COUNT) by a stateless cursor",
        ("2.8.0", "set", "O(1) a call; O(N) a whole iteration")
    ),
    spec!(
        "lpush",
        -3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | LIST | FAST,
        Lists,
        "push elements at the head (the new length)",
        ("1.0.0", "list", "O(N) for N elements")
    ),
    spec!(
        "rpush",
        -3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | LIST | FAST,
        Lists,
        "push elements at the tail (the new length)",
        ("1.0.0", "list", "O(N) for N elements")
    ),
    spec!(
        "lpop",
        -2,
        ["write", "fast"],
        1,
        1,
        1,
        WRITE | LIST | FAST,
        Lists,
        "removes elements from the head (count)",
        ("1.0.0", "list", "O(N) for N elements popped")
    ),
    spec!(
        "rpop",
        -2,
        ["write", "fast"],
        1,
        1,
        1,
        WRITE | LIST | FAST,
        Lists,
        "removes elements from the tail (count)",
        ("1.0.0", "list", "O(N) for N elements popped")
    ),
    spec!(
        "llen",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | LIST | FAST,
        Lists,
        "the length of a list",
        ("1.0.0", "list", "O(1)")
    ),
    spec!(
        "lrange",
        4,
        ["readonly"],
        1,
        1,
        1,
        READ | LIST | SLOW,
        Lists,
        "the elements from start to stop",
        ("1.0.0", "list", "O(S+N): S the start's distance from the nearer end, N the elements returned")
    ),
    spec!(
        "lindex",
        3,
        ["readonly"],
        1,
        1,
        1,
        READ | LIST | SLOW,
        Lists,
        "the element at an index",
        ("1.0.0", "list", "O(N) for the distance from the nearer end")
    ),
    spec!(
        "lset",
        4,
        ["write", "denyoom"],
        1,
        1,
        1,
        WRITE | LIST | SLOW,
        Lists,
        "sets the element at an index",
        ("1.0.0", "list", "O(N) for the distance from the nearer end")
    ),
    spec!(
        "lrem",
        4,
        ["write"],
        1,
        1,
        1,
        WRITE | LIST | SLOW,
        Lists,
        "removes elements equal to a value (count, from either end)",
        ("1.0.0", "list", "O(N) for a list of N elements")
    ),
    spec!(
        "ltrim",
        4,
        ["write"],
        1,
        1,
        1,
        WRITE | LIST | SLOW,
        Lists,
        "keeps the elements from start to stop",
        ("1.0.0", "list", "O(N) for N elements removed")
    ),
    spec!(
        "lpos",
        -3,
        ["readonly"],
        1,
        1,
        1,
        READ | LIST | SLOW,
        Lists,
        "the positions of an element (RANK, COUNT, MAXLEN)",
        ("6.0.6", "list", "O(N) for a list of N elements")
    ),
    spec!(
        "lmove",
        5,
        ["write", "denyoom"],
        1,
        2,
        1,
        WRITE | LIST | SLOW,
        Lists,
        "moves an element from one end of a list to one end of another",
        ("6.2.0", "list", "O(1)")
    ),
    spec!(
        "blpop",
        -3,
        ["write", "blocking"],
        1,
        -2,
        1,
        WRITE | LIST | SLOW | BLOCKING,
        Lists,
        "pops the head of the first non-empty list, waiting up to a timeout (seconds, 0 for ever) for one",
        ("2.0.0", "list", "O(N) for N keys")
    ),
    spec!(
        "brpop",
        -3,
        ["write", "blocking"],
        1,
        -2,
        1,
        WRITE | LIST | SLOW | BLOCKING,
        Lists,
        "pops the tail of the first non-empty list, waiting up to a timeout for one",
        ("2.0.0", "list", "O(N) for N keys")
    ),
    spec!(
        "blmove",
        6,
        ["write", "denyoom", "blocking"],
        1,
        2,
        1,
        WRITE | LIST | SLOW | BLOCKING,
        Lists,
        "LMOVE, waiting up to a timeout for the source to hold an element",
        ("6.2.0", "list", "O(1)")
    ),
    spec!(
        "brpoplpush",
        4,
        ["write", "denyoom", "blocking"],
        1,
        2,
        1,
        WRITE | LIST | SLOW | BLOCKING,
        Lists,
        "BLMOVE source destination RIGHT LEFT",
        ("2.2.0", "list", "O(1)")
    ),
    spec!(
        "lmpop",
        -4,
        ["write", "movablekeys"],
        numkeys at 1,
        WRITE | LIST | SLOW,
        Lists,
        "pops up to COUNT elements from one end of the first non-empty list of numkeys keys",
        ("7.0.0", "list", "O(N+M) for N keys and M elements popped")
    ),
    spec!(
        "blmpop",
        -5,
        ["write", "blocking", "movablekeys"],
        numkeys at 2,
        WRITE | LIST | SLOW | BLOCKING,
        Lists,
        "LMPOP, waiting up to a timeout (the first argument) for one of the lists to hold an element",
        ("7.0.0", "list", "O(N+M) for N keys and M elements popped")
    ),
    spec!(
        "raft.status",
        1,
        ["admin", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW,
        Raft,
        "the node's Raft state (JSON)",
        ("0.1.0", "cluster", "O(N) for N nodes")
    ),
    spec!(
        "raft.join",
        3,
        ["admin"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Raft,
        "adds a node (id, peer address; on the leader)",
        ("0.1.0", "cluster", "O(1)")
    ),
    spec!(
        "raft.leave",
        2,
        ["admin"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Raft,
        "removes a node (on the leader)",
        ("0.1.0", "cluster", "O(1)")
    ),
    spec!(
        "raft.transfer",
        2,
        ["admin"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS,
        Raft,
        "hands leadership to a node (on the leader)",
        ("0.1.0", "cluster", "O(1)")
    ),
];

/// The longest name in [`COMMANDS`] that [`index_of`] looks up through its
/// map (longer names are in no table).
const MAX_NAME: usize = 64;

/// The table's names (lower case) to their indexes, and whether each entry
/// is a container with subcommands: built once, looked up for every request.
struct Index {
    by_name: std::collections::HashMap<&'static [u8], usize>,
    containers: Vec<bool>,
}

fn index() -> &'static Index {
    static INDEX: std::sync::OnceLock<Index> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| Index {
        by_name: COMMANDS
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_bytes(), i))
            .collect(),
        containers: (0..COMMANDS.len())
            .map(|i| {
                let name = COMMANDS[i].name;
                COMMANDS.iter().any(|c| {
                    c.name
                        .split_once('|')
                        .is_some_and(|(parent, _)| parent == name)
                })
            })
            .collect(),
    })
}

/// The index in [`COMMANDS`] of the command or subcommand named `name`
/// (case-insensitive; `container|sub` for a subcommand).
pub fn index_of(name: &[u8]) -> Option<usize> {
    if name.len() > MAX_NAME {
        return None;
    }
    // Lower-cased on the stack: no allocation per request.
    let mut lower = [0u8; MAX_NAME];
    let lower = &mut lower[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    index().by_name.get(&*lower).copied()
}

/// Whether entry `i` is a container with subcommands (`ACL`, `CONFIG`...).
fn is_container(i: usize) -> bool {
    index().containers.get(i).copied().unwrap_or(false)
}

/// The indexes of a container's subcommands (none for other commands).
pub fn subcommands(container: usize) -> impl Iterator<Item = usize> {
    let name = COMMANDS[container].name;
    COMMANDS.iter().enumerate().filter_map(move |(i, c)| {
        let (parent, _) = c.name.split_once('|')?;
        (parent == name).then_some(i)
    })
}

/// The entry a request runs as: its command, or for a container with a
/// known subcommand that subcommand. `None` for an unknown command.
pub fn lookup(args: &[Bytes]) -> Option<usize> {
    let name = args.first()?;
    let top = index_of(name)?;
    let Some(sub) = args.get(1) else {
        return Some(top);
    };
    if !is_container(top) || name.len() + 1 + sub.len() > MAX_NAME {
        return Some(top);
    }
    let mut full = [0u8; MAX_NAME];
    let n = name.len();
    full[..n].copy_from_slice(name);
    full[n] = b'|';
    full[n + 1..n + 1 + sub.len()].copy_from_slice(sub);
    Some(index_of(&full[..n + 1 + sub.len()]).unwrap_or(top))
}

/// The README's list of commands, made from the table: one line per
/// family, each command (a container by its subcommands) with its summary.
/// A test keeps the README's copy, between [`README_BEGIN`] and
/// [`README_END`], equal to it.
pub fn readme_list() -> String {
    let mut out = String::new();
    for family in Family::ALL {
        let entries: Vec<String> = COMMANDS
            .iter()
            .enumerate()
            .filter(|(i, c)| c.family == family && !is_container(*i))
            .map(|(_, c)| {
                let name = c.name.replace('|', " ").to_ascii_uppercase();
                format!("`{name}` {}", c.summary)
            })
            .collect();
        if !entries.is_empty() {
            out.push_str(&format!(
                "- **{}**: {}.\n",
                family.title(),
                entries.join("; ")
            ));
        }
    }
    out
}

/// The line before the README's list of commands.
pub const README_BEGIN: &str = "<!-- commands: made from crates/kv/src/cmd/table.rs; RAFT_KV_UPDATE_README=1 cargo test -p raft-kv --lib readme rewrites it -->";

/// The line after it.
pub const README_END: &str = "<!-- end of commands -->";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn cats(name: &str) -> Vec<&'static str> {
        let spec = &COMMANDS[index_of(name.as_bytes()).unwrap()];
        CATEGORIES
            .iter()
            .enumerate()
            .filter(|(i, _)| spec.categories & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect()
    }

    #[test]
    fn a_command_set_holds_every_command_of_the_table() {
        let all = CommandSet::all();
        assert_eq!(all.len(), COMMANDS.len());
        assert!((0..COMMANDS.len()).all(|i| all.contains(i)));
        assert!(!all.contains(COMMANDS.len()));
        let last = COMMANDS.len() - 1;
        let two: CommandSet = [0, last].into_iter().collect();
        assert_eq!(two.len(), 2);
        assert_eq!(all.without(two).len(), COMMANDS.len() - 2);
        assert!(!all.without(two).contains(last));
        assert_eq!(all.and(two), two);
        assert_eq!(CommandSet::NONE.or(two), two);
        assert!(CommandSet::NONE.is_empty() && !two.is_empty());
    }

    #[test]
    fn names_are_unique() {
        for (i, c) in COMMANDS.iter().enumerate() {
            assert_eq!(index_of(c.name.as_bytes()), Some(i), "{}", c.name);
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(c.name.len() <= MAX_NAME, "{}", c.name);
            assert_eq!(is_container(i), subcommands(i).next().is_some());
            assert_eq!(index_of(c.name.to_ascii_uppercase().as_bytes()), Some(i));
            if subcommands(i).next().is_some() {
                assert_eq!(c.categories, 0, "the container {} has a category", c.name);
                continue;
            }
            // Every command is @fast or @slow, as in Redis.
            assert_ne!(c.categories & (FAST | SLOW), 0, "{}", c.name);
        }
    }

    #[test]
    fn categories_follow_redis_7() {
        assert_eq!(cats("get"), ["read", "string", "fast"]);
        assert_eq!(cats("set"), ["write", "string", "slow"]);
        assert_eq!(cats("keys"), ["keyspace", "read", "slow", "dangerous"]);
        assert_eq!(cats("flushall"), ["keyspace", "write", "slow", "dangerous"]);
        assert_eq!(cats("config|get"), ["admin", "slow", "dangerous"]);
        assert_eq!(cats("info"), ["slow", "dangerous"]);
        assert_eq!(cats("acl|whoami"), ["slow"]);
        assert_eq!(cats("acl|setuser"), ["admin", "slow", "dangerous"]);
        assert_eq!(cats("raft.status"), ["admin", "slow"]);
        assert_eq!(cats("raft.leave"), ["admin", "slow", "dangerous"]);
        assert_eq!(cats("cas"), ["write", "string", "slow"]);
        assert_eq!(cats("readonly"), ["fast", "connection"]);
        assert_eq!(cats("expire"), ["keyspace", "write", "fast"]);
        assert_eq!(cats("ttl"), ["keyspace", "read", "fast"]);
        assert_eq!(cats("setex"), ["write", "string", "slow"]);
        assert_eq!(cats("getex"), ["write", "string", "fast"]);
        assert_eq!(cats("type"), ["keyspace", "read", "fast"]);
        assert_eq!(cats("rename"), ["keyspace", "write", "slow"]);
        assert_eq!(cats("renamenx"), ["keyspace", "write", "fast"]);
        assert_eq!(cats("copy"), ["keyspace", "write", "slow"]);
        assert_eq!(cats("hset"), ["write", "hash", "fast"]);
        assert_eq!(cats("hgetall"), ["read", "hash", "slow"]);
        assert_eq!(cats("hrandfield"), ["read", "hash", "slow"]);
        assert_eq!(cats("sadd"), ["write", "set", "fast"]);
        assert_eq!(cats("sinterstore"), ["write", "set", "slow"]);
        assert_eq!(cats("srandmember"), ["read", "set", "slow"]);
        assert_eq!(cats("lpush"), ["write", "list", "fast"]);
        assert_eq!(cats("lrange"), ["read", "list", "slow"]);
        assert_eq!(cats("lmove"), ["write", "list", "slow"]);
        assert_eq!(cats("blpop"), ["write", "list", "slow", "blocking"]);
        assert_eq!(cats("brpop"), ["write", "list", "slow", "blocking"]);
        assert_eq!(cats("blmove"), ["write", "list", "slow", "blocking"]);
        assert_eq!(cats("brpoplpush"), ["write", "list", "slow", "blocking"]);
        assert_eq!(cats("incrbyfloat"), ["write", "string", "fast"]);
        assert_eq!(cats("getdel"), ["write", "string", "fast"]);
        assert_eq!(cats("getrange"), ["read", "string", "slow"]);
        assert_eq!(cats("setrange"), ["write", "string", "slow"]);
        assert_eq!(cats("msetnx"), ["write", "string", "slow"]);
        assert_eq!(cats("multi"), ["fast", "transaction"]);
        assert_eq!(cats("exec"), ["slow", "transaction"]);
        assert_eq!(cats("discard"), ["fast", "transaction"]);
        assert_eq!(cats("watch"), ["fast", "transaction"]);
        assert_eq!(cats("unwatch"), ["fast", "transaction"]);
        assert_eq!(category(b"Admin"), Some(13));
        assert_eq!(category(b"all"), None);
    }

    #[test]
    fn containers_resolve_to_their_subcommands() {
        let name = |a: &str| lookup(&args(a)).map(|i| COMMANDS[i].name);
        assert_eq!(name("GET k"), Some("get"));
        assert_eq!(name("acl WhoAmI"), Some("acl|whoami"));
        assert_eq!(name("config get maxmemory"), Some("config|get"));
        assert_eq!(name("acl frob"), Some("acl"));
        assert_eq!(name("acl"), Some("acl"));
        assert_eq!(name("get get"), Some("get"));
        assert_eq!(name("hgetall h"), Some("hgetall"));
        assert_eq!(name("bzpopmin z 0"), None);
        let acl = index_of(b"acl").unwrap();
        assert_eq!(subcommands(acl).count(), 9);
        assert_eq!(subcommands(index_of(b"get").unwrap()).count(), 0);
    }

    #[test]
    fn key_positions_like_command_info() {
        let keys = |name: &str, a: &str| -> Vec<usize> {
            COMMANDS[index_of(name.as_bytes()).unwrap()]
                .key_indexes(&args(a))
                .collect()
        };
        assert_eq!(keys("get", "get k"), [1]);
        assert_eq!(keys("set", "set k v nx"), [1]);
        assert_eq!(keys("mset", "mset a 1 b 2 c 3"), [1, 3, 5]);
        assert_eq!(keys("del", "del a b c"), [1, 2, 3]);
        assert_eq!(keys("cas", "cas k a b"), [1]);
        assert_eq!(keys("blpop", "blpop a b c 0"), [1, 2, 3]);
        assert_eq!(keys("blmove", "blmove a b left right 0"), [1, 2]);
        assert_eq!(keys("lmpop", "lmpop 2 a b left count 3"), [2, 3]);
        assert_eq!(keys("blmpop", "blmpop 0 3 a b c right"), [3, 4, 5]);
        // A count past the end, or not a count: no index past the end.
        assert_eq!(keys("lmpop", "lmpop 9 a b"), [2, 3]);
        assert!(keys("lmpop", "lmpop x a left").is_empty());
        assert!(keys("lmpop", "lmpop -1 a left").is_empty());
        // Read as the command reads it: "+1" and "01" are not counts.
        assert!(keys("lmpop", "lmpop +1 a left").is_empty());
        assert!(keys("lmpop", "lmpop 01 a left").is_empty());
        assert!(keys("keys", "keys *").is_empty());
        assert!(keys("ping", "ping").is_empty());
        // Too few arguments: no index past the end.
        assert!(keys("get", "get").is_empty());
        assert!(COMMANDS[index_of(b"mset").unwrap()].arity_ok(5));
        assert!(!COMMANDS[index_of(b"get").unwrap()].arity_ok(3));
    }

    #[test]
    fn the_readme_lists_the_commands_of_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let begin = readme
            .find(README_BEGIN)
            .expect("the README has the begin marker");
        let start = begin + README_BEGIN.len() + 1;
        let end = readme[start..]
            .find(README_END)
            .expect("the README has the end marker")
            + start;
        let expected = readme_list();
        if readme[start..end] == expected {
            return;
        }
        if std::env::var_os("RAFT_KV_UPDATE_README").is_some() {
            let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        panic!(
            "the README's list of commands differs from the command table: \
             run RAFT_KV_UPDATE_README=1 cargo test -p raft-kv --lib readme"
        );
    }

    #[test]
    fn every_command_has_docs_in_redis_terms() {
        let groups = [
            "string",
            "generic",
            "hash",
            "set",
            "list",
            "transactions",
            "connection",
            "server",
            "cluster",
        ];
        for c in COMMANDS {
            let d = &c.doc;
            assert!(groups.contains(&d.group), "{}: group {}", c.name, d.group);
            let parts: Vec<&str> = d.since.split('.').collect();
            assert!(
                parts.len() == 3
                    && parts
                        .iter()
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
                "{}: since {}",
                c.name,
                d.since
            );
            assert!(!d.complexity.is_empty(), "{}", c.name);
            // A subcommand is in its container's group.
            if let Some((parent, _)) = c.name.split_once('|') {
                let parent = &COMMANDS[index_of(parent.as_bytes()).unwrap()];
                assert_eq!(d.group, parent.doc.group, "{}", c.name);
            }
        }
    }

    #[test]
    fn every_command_has_a_summary_and_a_parser() {
        for c in COMMANDS {
            assert!(!c.summary.is_empty(), "{}", c.name);
            if c.is_subcommand() {
                continue;
            }
            let args = vec![Bytes::from(c.name); c.arity.unsigned_abs() as usize];
            let parsed = crate::cmd::parse(&args);
            assert!(
                !matches!(&parsed, crate::cmd::Command::Refused(e) if e.contains("unknown command")),
                "{}: {parsed:?}",
                c.name
            );
        }
    }
}
