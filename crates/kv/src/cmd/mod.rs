//! Commands: parsed from a request's arguments into what the store
//! replicates ([`Write`]), what it answers from one state ([`Read`]), or
//! what this server answers itself ([`Local`]). One file per family, as in
//! mini-redis: `strings` (GET, SET, INCR...), `keys` (DEL, EXISTS, KEYS,
//! SCAN, TYPE...), `expiry` (EXPIRE, TTL, PERSIST...), `hashes` (HSET,
//! HGET...), `sets` (SADD, SINTER...), `lists` (LPUSH, LRANGE...),
//! `server` (PING, AUTH, INFO, CONFIG...), `raft` (RAFT.*), `acl` (ACL
//! SETUSER, LIST...), `transactions` (MULTI, EXEC, WATCH...). What goes to
//! the store runs in the store's file of its family (`crate::store`).

use bytes::Bytes;

use crate::store::{Read, TypedCmd, Write};
use table::Family;

pub mod acl;
pub mod expiry;
pub mod hashes;
pub mod keys;
pub mod lists;
pub mod raft;
pub mod server;
pub mod sets;
pub mod strings;
pub mod table;
pub mod transactions;

pub use server::Session;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Goes through the log.
    Write(Write),
    /// Answered by the store, linearizable unless the connection chose
    /// local reads.
    Read(Read),
    /// Answered by this server.
    Local(Local),
    /// A command that does not exist, or has the wrong number of
    /// arguments: the reply is this error, even before AUTH (as in Redis).
    Refused(String),
    /// A command that cannot run (a bad option or value): the reply is this
    /// error, once the client is authenticated.
    Invalid(String),
    /// A request whose reply is known without running anything.
    Answer(crate::frame::Frame),
}

/// A command this server answers without the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `PING [message]`
    Ping(Option<Bytes>),
    /// ECHO message
    Echo(Bytes),
    /// `AUTH [user] password`
    Auth {
        /// The user name (`default` if none).
        user: Option<Bytes>,
        /// The password.
        password: Bytes,
    },
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`
    Hello {
        /// The protocol version asked for.
        version: Option<Bytes>,
        /// AUTH user pass.
        auth: Option<(Bytes, Bytes)>,
        /// SETNAME name.
        name: Option<Bytes>,
    },
    /// `INFO [section ...]`
    Info(Vec<Bytes>),
    /// `COMMAND [COUNT | DOCS | INFO name... | LIST]`
    Command(Vec<Bytes>),
    /// CONFIG GET pattern... / CONFIG SET / CONFIG RESETSTAT
    Config(Vec<Bytes>),
    /// SELECT index
    Select(Bytes),
    /// CLIENT subcommand args...
    Client(Vec<Bytes>),
    /// QUIT
    Quit,
    /// READONLY: this connection's reads are local (fast, possibly stale).
    ReadOnly,
    /// READWRITE: this connection's reads are linearizable again.
    ReadWrite,
    /// RAFT.STATUS
    RaftStatus,
    /// RAFT.JOIN id peer-address
    RaftJoin {
        /// The id the new node must have.
        id: String,
        /// Its peer address.
        address: String,
    },
    /// RAFT.LEAVE id
    RaftLeave(String),
    /// RAFT.TRANSFER id
    RaftTransfer(String),
    /// ACL LIST, USERS, GETUSER, WHOAMI, CAT, DRYRUN, HELP.
    Acl(acl::AclLocal),
    /// MULTI, EXEC, DISCARD, WATCH key..., UNWATCH.
    Tx(transactions::TxCommand),
}

/// The error for a wrong number of arguments, as Redis words it.
pub fn arity_error(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

/// `ERR syntax error`.
pub fn syntax_error() -> String {
    "ERR syntax error".into()
}

/// `ERR value is not an integer or out of range`.
pub fn not_integer() -> String {
    "ERR value is not an integer or out of range".into()
}

pub use crate::store::parse_i64;

/// A command the store runs from its arguments as sent ([`TypedCmd`]):
/// a write if it changes the store or picks at random, else a read.
pub(crate) fn typed(name: &[u8], args: &[Bytes]) -> Option<Command> {
    let cmd = TypedCmd::from_name(name)?;
    if let Err(e) = crate::store::check_typed(cmd, args) {
        return Some(Command::Refused(e));
    }
    let args = args.to_vec();
    Some(if cmd.is_write() {
        Command::Write(Write::Typed { cmd, args })
    } else {
        Command::Read(Read::Typed { cmd, args })
    })
}

/// The error for an unknown command, as Redis 7 words it: the name and
/// the first arguments quoted, each cut at a NUL byte (Redis formats them
/// as C strings), the arguments to about 128 bytes in all.
fn unknown(args: &[Bytes]) -> String {
    let c_str = |a: &[u8], max: usize| {
        let a = &a[..a.iter().position(|&b| b == 0).unwrap_or(a.len())];
        String::from_utf8_lossy(&a[..a.len().min(max)]).into_owned()
    };
    let mut shown = String::new();
    for a in args.iter().skip(1) {
        if shown.len() >= 128 {
            break;
        }
        shown.push_str(&format!("'{}' ", c_str(a, 128 - shown.len())));
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {shown}",
        c_str(&args[0], 128)
    )
}

/// Parses a request's arguments (the command name first): the command
/// table ([`table::COMMANDS`]) names the family that parses it and checks
/// its number of arguments; the family checks the rest.
pub fn parse(args: &[Bytes]) -> Command {
    let Some(first) = args.first() else {
        return Command::Refused("ERR empty command".into());
    };
    let Some(spec) = table::index_of(first).map(|i| &table::COMMANDS[i]) else {
        return Command::Refused(unknown(args));
    };
    if spec.is_subcommand() {
        // `acl|whoami` is a name in the table, not a command.
        return Command::Refused(unknown(args));
    }
    if !spec.arity_ok(args.len()) {
        return Command::Refused(arity_error(spec.name));
    }
    let name = spec.name.as_bytes();
    let rest = &args[1..];
    let parsed = match spec.family {
        Family::Strings => strings::parse(name, rest),
        Family::Keys => keys::parse(name, rest),
        Family::Expiry => expiry::parse(name, rest),
        Family::Hashes => hashes::parse(name, rest),
        Family::Sets => sets::parse(name, rest),
        Family::Lists => lists::parse(name, rest),
        Family::Raft => raft::parse(name, rest),
        Family::Acl => Some(acl::parse(rest)),
        Family::Server => server::parse(name, rest),
        Family::Transactions => transactions::parse(name, rest),
    };
    match parsed {
        Some(c) => c,
        None => Command::Refused(unknown(args)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::SetCondition;

    /// The command a line of space-separated words parses to.
    pub(crate) fn p(s: &str) -> Command {
        let args: Vec<Bytes> = s
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        parse(&args)
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            "",
            "+1",
            " 1",
            "01",
            "-0",
            "1.5",
            "9223372036854775808",
            "-",
        ] {
            assert_eq!(parse_i64(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn commands_parse_case_insensitively() {
        assert_eq!(
            p("sEt k v NX get"),
            Command::Write(Write::Set {
                key: "k".into(),
                value: "v".into(),
                condition: SetCondition::IfAbsent,
                get: true,
                ttl: Default::default(),
            })
        );
        assert_eq!(p("GET k"), Command::Read(Read::Get { key: "k".into() }));
        assert_eq!(p("PING"), Command::Local(Local::Ping(None)));
    }

    #[test]
    fn errors_are_worded_like_redis() {
        assert_eq!(
            p("GET"),
            Command::Refused("ERR wrong number of arguments for 'get' command".into())
        );
        assert_eq!(
            p("FROB a b"),
            Command::Refused(
                "ERR unknown command 'FROB', with args beginning with: 'a' 'b' ".into()
            )
        );
        // Arguments are C strings to Redis: cut at a NUL byte.
        assert_eq!(
            parse(&[Bytes::from_static(b"FROB"), Bytes::from_static(b"a\0b")]),
            Command::Refused("ERR unknown command 'FROB', with args beginning with: 'a' ".into())
        );
        assert_eq!(p("SET k v NX XX"), Command::Invalid(syntax_error()));
        assert!(matches!(p("SET k v NX NX GET GET"), Command::Write(_)));
        assert_eq!(p("INCRBY k x"), Command::Invalid(not_integer()));
        assert_eq!(p("MSET a 1 b"), Command::Refused(arity_error("mset")));
        assert_eq!(
            p("DECRBY k -9223372036854775808"),
            Command::Invalid("ERR decrement would overflow".into())
        );
    }
}
