//! The command table: every command raft-kv knows, with what `COMMAND INFO`
//! shows of it (arity, flags, key positions) and its ACL categories as
//! Redis 7 assigns them. The permission check, `ACL CAT` and `COMMAND` all
//! read this one table.
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
const STRING: u32 = 1 << 7;
const ADMIN: u32 = 1 << 13;
const FAST: u32 = 1 << 14;
const SLOW: u32 = 1 << 15;
const DANGEROUS: u32 = 1 << 17;
const CONNECTION: u32 = 1 << 18;

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
    /// The ACL categories, one bit per index in [`CATEGORIES`].
    pub categories: u32,
}

impl CommandSpec {
    /// True for commands any client may run, authenticated or not, whatever
    /// its user's command rules (Redis's `no_auth` flag).
    pub fn is_no_auth(&self) -> bool {
        self.flags.contains(&"no_auth")
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
    /// arguments, from the first, last and step positions.
    pub fn key_indexes(&self, args: usize) -> impl Iterator<Item = usize> {
        let first = usize::try_from(self.first_key).unwrap_or(0);
        let last = if self.last_key < 0 {
            args.saturating_sub(self.last_key.unsigned_abs() as usize)
        } else {
            usize::try_from(self.last_key).unwrap_or(0)
        };
        let step = usize::try_from(self.key_step).unwrap_or(1).max(1);
        let (first, last) = if first == 0 {
            (1, 0)
        } else {
            (first, last.min(args.saturating_sub(1)))
        };
        (first..=last).step_by(step)
    }
}

macro_rules! spec {
    ($name:expr, $arity:expr, [$($flag:expr),*], $first:expr, $last:expr, $step:expr, $cats:expr) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: &[$($flag),*],
            first_key: $first,
            last_key: $last,
            key_step: $step,
            categories: $cats,
        }
    };
}

/// Every command raft-kv knows, subcommands after their container. At
/// most 128 entries (a user's allowed commands are a 128-bit set).
pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "get",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | STRING | FAST
    ),
    spec!(
        "set",
        -3,
        ["write", "denyoom"],
        1,
        1,
        1,
        WRITE | STRING | SLOW
    ),
    spec!("del", -2, ["write"], 1, -1, 1, KEYSPACE | WRITE | SLOW),
    spec!(
        "unlink",
        -2,
        ["write", "fast"],
        1,
        -1,
        1,
        KEYSPACE | WRITE | FAST
    ),
    spec!(
        "exists",
        -2,
        ["readonly", "fast"],
        1,
        -1,
        1,
        KEYSPACE | READ | FAST
    ),
    spec!(
        "incr",
        2,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST
    ),
    spec!(
        "incrby",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST
    ),
    spec!(
        "decr",
        2,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST
    ),
    spec!(
        "decrby",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST
    ),
    spec!(
        "append",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST
    ),
    spec!(
        "strlen",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        READ | STRING | FAST
    ),
    spec!(
        "mget",
        -2,
        ["readonly", "fast"],
        1,
        -1,
        1,
        READ | STRING | FAST
    ),
    spec!(
        "mset",
        -3,
        ["write", "denyoom"],
        1,
        -1,
        2,
        WRITE | STRING | SLOW
    ),
    spec!(
        "getset",
        3,
        ["write", "denyoom", "fast"],
        1,
        1,
        1,
        WRITE | STRING | FAST
    ),
    spec!(
        "cas",
        4,
        ["write", "denyoom"],
        1,
        1,
        1,
        WRITE | STRING | SLOW
    ),
    spec!(
        "dbsize",
        1,
        ["readonly", "fast"],
        0,
        0,
        0,
        KEYSPACE | READ | FAST
    ),
    spec!(
        "keys",
        2,
        ["readonly"],
        0,
        0,
        0,
        KEYSPACE | READ | SLOW | DANGEROUS
    ),
    spec!("scan", -2, ["readonly"], 0, 0, 0, KEYSPACE | READ | SLOW),
    spec!(
        "flushdb",
        -1,
        ["write"],
        0,
        0,
        0,
        KEYSPACE | WRITE | SLOW | DANGEROUS
    ),
    spec!(
        "flushall",
        -1,
        ["write"],
        0,
        0,
        0,
        KEYSPACE | WRITE | SLOW | DANGEROUS
    ),
    spec!("ping", -1, ["fast", "stale"], 0, 0, 0, FAST | CONNECTION),
    spec!("echo", 2, ["fast", "stale"], 0, 0, 0, FAST | CONNECTION),
    spec!(
        "auth",
        -2,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        FAST | CONNECTION
    ),
    spec!(
        "hello",
        -1,
        ["noscript", "loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        FAST | CONNECTION
    ),
    spec!("info", -1, ["loading", "stale"], 0, 0, 0, SLOW | DANGEROUS),
    spec!(
        "command",
        -1,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION
    ),
    spec!("config", -2, [], 0, 0, 0, 0),
    spec!(
        "config|get",
        -3,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "config|set",
        -4,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "config|resetstat",
        2,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "config|rewrite",
        2,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "select",
        2,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        FAST | CONNECTION
    ),
    spec!("client", -2, [], 0, 0, 0, 0),
    spec!(
        "client|id",
        2,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION
    ),
    spec!(
        "client|setname",
        3,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION
    ),
    spec!(
        "client|getname",
        2,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION
    ),
    spec!(
        "client|setinfo",
        4,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION
    ),
    spec!(
        "client|info",
        2,
        ["loading", "stale"],
        0,
        0,
        0,
        SLOW | CONNECTION
    ),
    spec!(
        "client|list",
        -2,
        ["admin", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS | CONNECTION
    ),
    spec!(
        "quit",
        -1,
        ["loading", "stale", "fast", "no_auth"],
        0,
        0,
        0,
        FAST | CONNECTION
    ),
    spec!(
        "readonly",
        1,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        FAST | CONNECTION
    ),
    spec!(
        "readwrite",
        1,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        FAST | CONNECTION
    ),
    spec!("acl", -2, [], 0, 0, 0, 0),
    spec!(
        "acl|cat",
        -2,
        ["noscript", "loading", "stale"],
        0,
        0,
        0,
        SLOW
    ),
    spec!(
        "acl|deluser",
        -3,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "acl|dryrun",
        -4,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "acl|getuser",
        3,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!("acl|help", 2, ["loading", "stale"], 0, 0, 0, SLOW),
    spec!(
        "acl|list",
        2,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "acl|setuser",
        -3,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "acl|users",
        2,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "acl|whoami",
        2,
        ["noscript", "loading", "stale"],
        0,
        0,
        0,
        SLOW
    ),
    spec!("raft.status", 1, ["admin", "stale"], 0, 0, 0, ADMIN | SLOW),
    spec!("raft.join", 3, ["admin"], 0, 0, 0, ADMIN | SLOW | DANGEROUS),
    spec!(
        "raft.leave",
        2,
        ["admin"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
    ),
    spec!(
        "raft.transfer",
        2,
        ["admin"],
        0,
        0,
        0,
        ADMIN | SLOW | DANGEROUS
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
    fn the_table_fits_a_128_bit_set_and_names_are_unique() {
        assert!(COMMANDS.len() <= 128);
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
        assert_eq!(name("hgetall h"), None);
        let acl = index_of(b"acl").unwrap();
        assert_eq!(subcommands(acl).count(), 9);
        assert_eq!(subcommands(index_of(b"get").unwrap()).count(), 0);
    }

    #[test]
    fn key_positions_like_command_info() {
        let keys = |name: &str, a: &str| -> Vec<usize> {
            COMMANDS[index_of(name.as_bytes()).unwrap()]
                .key_indexes(args(a).len())
                .collect()
        };
        assert_eq!(keys("get", "get k"), [1]);
        assert_eq!(keys("set", "set k v nx"), [1]);
        assert_eq!(keys("mset", "mset a 1 b 2 c 3"), [1, 3, 5]);
        assert_eq!(keys("del", "del a b c"), [1, 2, 3]);
        assert_eq!(keys("cas", "cas k a b"), [1]);
        assert!(keys("keys", "keys *").is_empty());
        assert!(keys("ping", "ping").is_empty());
        // Too few arguments: no index past the end.
        assert!(keys("get", "get").is_empty());
        assert!(COMMANDS[index_of(b"mset").unwrap()].arity_ok(5));
        assert!(!COMMANDS[index_of(b"get").unwrap()].arity_ok(3));
    }
}
