//! The commands on hashes, sets and lists, and the key commands that take
//! their arguments as sent (TYPE, SCAN, RENAME, RENAMENX, COPY): one
//! log-entry and query code for all ([`TypedCmd`] and the arguments as
//! sent), dispatched here to their family's file (`hashes`, `sets`,
//! `lists`, `keys`), where their arguments are checked as Redis checks
//! them, in Redis's order, when they are applied or answered. The replies
//! are written through [`Out`], once to size them (a bounded query sizes
//! every reply before it builds any) and once to build them, from the same
//! code.
//!
//! Random picks (SPOP, SRANDMEMBER, HRANDFIELD) are writes: they go through
//! the log, and the pick is seeded by the entry's index and the command's
//! place in it (`Rng::for_command`), so every node makes the same one.

use bytes::{Bytes, BytesMut};

use super::reply::{Answer, Out, Size};
use super::KvStore;
use crate::cmd::table::{index_of, Family, COMMANDS};

macro_rules! typed_commands {
    ($($variant:ident = $code:literal, $name:literal, $write:literal;)*) => {
        /// A command on a hash or a set, or on a key of any type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum TypedCmd {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl TypedCmd {
            /// The command of a lower-case name.
            pub fn from_name(name: &[u8]) -> Option<TypedCmd> {
                match std::str::from_utf8(name).ok()? {
                    $($name => Some(TypedCmd::$variant),)*
                    _ => None,
                }
            }

            /// Its code in log entries and queries (its serde form).
            pub(super) fn code(self) -> u8 {
                match self {
                    $(TypedCmd::$variant => $code,)*
                }
            }

            pub(super) fn from_code(code: u8) -> Option<TypedCmd> {
                match code {
                    $($code => Some(TypedCmd::$variant),)*
                    _ => None,
                }
            }

            /// True if it goes through the log: it changes the store, or
            /// picks at random.
            pub fn is_write(self) -> bool {
                match self {
                    $(TypedCmd::$variant => $write,)*
                }
            }

            /// Its lower-case name, as errors give it.
            pub fn name(self) -> &'static str {
                match self {
                    $(TypedCmd::$variant => $name,)*
                }
            }
        }
    };
}

typed_commands! {
    Type = 1, "type", false;
    HSet = 10, "hset", true;
    HSetNx = 11, "hsetnx", true;
    HGet = 12, "hget", false;
    HMGet = 13, "hmget", false;
    HDel = 14, "hdel", true;
    HGetAll = 15, "hgetall", false;
    HLen = 16, "hlen", false;
    HExists = 17, "hexists", false;
    HIncrBy = 18, "hincrby", true;
    HIncrByFloat = 19, "hincrbyfloat", true;
    HKeys = 20, "hkeys", false;
    HVals = 21, "hvals", false;
    HStrLen = 22, "hstrlen", false;
    HScan = 23, "hscan", false;
    HRandField = 24, "hrandfield", true;
    SAdd = 40, "sadd", true;
    SRem = 41, "srem", true;
    SMembers = 42, "smembers", false;
    SIsMember = 43, "sismember", false;
    SMIsMember = 44, "smismember", false;
    SCard = 45, "scard", false;
    SPop = 46, "spop", true;
    SRandMember = 47, "srandmember", true;
    SInter = 48, "sinter", false;
    SUnion = 49, "sunion", false;
    SDiff = 50, "sdiff", false;
    SInterStore = 51, "sinterstore", true;
    SUnionStore = 52, "sunionstore", true;
    SDiffStore = 53, "sdiffstore", true;
    SScan = 54, "sscan", false;
    ScanType = 60, "scan", false;
    LPush = 70, "lpush", true;
    RPush = 71, "rpush", true;
    LPop = 72, "lpop", true;
    RPop = 73, "rpop", true;
    LLen = 74, "llen", false;
    LRange = 75, "lrange", false;
    LIndex = 76, "lindex", false;
    LSet = 77, "lset", true;
    LRem = 78, "lrem", true;
    LTrim = 79, "ltrim", true;
    LPos = 80, "lpos", false;
    LMove = 81, "lmove", true;
    BLPop = 82, "blpop", true;
    BRPop = 83, "brpop", true;
    BLMove = 84, "blmove", true;
    BRPopLPush = 85, "brpoplpush", true;
    LMPop = 86, "lmpop", true;
    BLMPop = 87, "blmpop", true;
    Rename = 90, "rename", true;
    RenameNx = 91, "renamenx", true;
    Copy = 92, "copy", true;
}

impl serde::Serialize for TypedCmd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for TypedCmd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TypedCmd, D::Error> {
        let code = u8::deserialize(d)?;
        TypedCmd::from_code(code)
            .ok_or_else(|| super::batch::refuse(format_args!("unknown typed command {code}")))
    }
}

/// The family that runs `cmd` if `args` arguments (after the name) fit
/// the command table's arity, else the arity error: checked again when
/// applied, since an entry is untrusted bytes.
fn family(cmd: TypedCmd, args: usize) -> Result<Family, String> {
    match index_of(cmd.name().as_bytes()).map(|i| &COMMANDS[i]) {
        Some(spec) if spec.arity_ok(args + 1) => Ok(spec.family),
        _ => Err(crate::cmd::arity_error(cmd.name())),
    }
}

/// Checks what Redis checks before running a command (beyond the table's
/// arity): the field-value pairs of HSET. `Err` is the arity error. Every
/// other argument is checked when the command runs, in Redis's order (a
/// syntax error may come after WRONGTYPE, or not at all for a missing key).
pub fn check_typed(cmd: TypedCmd, args: &[Bytes]) -> Result<(), String> {
    if cmd == TypedCmd::HSet && args.len().is_multiple_of(2) {
        return Err(crate::cmd::arity_error("hset"));
    }
    Ok(())
}

impl KvStore {
    /// Answers a read-only typed command into a query's answer.
    pub(super) fn read_typed(&self, cmd: TypedCmd, args: &[&[u8]], answer: &mut Answer) {
        self.answer_typed(cmd, args, answer);
    }

    /// The length of the reply [`KvStore::read_typed`] would give.
    pub(super) fn typed_reply_size(&self, cmd: TypedCmd, args: &[&[u8]]) -> usize {
        let mut size = Size::default();
        self.answer_typed(cmd, args, &mut size);
        size.0
    }

    /// Answers a read-only typed command, by its family.
    fn answer_typed(&self, cmd: TypedCmd, a: &[&[u8]], out: &mut impl Out) {
        match family(cmd, a.len()) {
            Err(e) => out.error(&e),
            Ok(Family::Hashes) => self.answer_hashes(cmd, a, out),
            Ok(Family::Sets) => self.answer_sets(cmd, a, out),
            Ok(Family::Lists) => self.answer_lists(cmd, a, out),
            Ok(Family::Keys) => self.answer_keys(cmd, a, out),
            Ok(_) => out.error(&format!("ERR '{}' is not answered by a query", cmd.name())),
        }
    }

    /// Applies a typed write (or answers a typed read sent as one), by its
    /// family, adding to `changed` each key it really changes (made,
    /// altered or removed because it became empty: what WATCH sees).
    pub(super) fn write_typed<'a>(
        &mut self,
        cmd: TypedCmd,
        a: &[&'a [u8]],
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
    ) {
        if !cmd.is_write() {
            let mut answer = Answer::whole();
            self.answer_typed(cmd, a, &mut answer);
            out.extend_from_slice(&answer.into_bytes());
            return;
        }
        match family(cmd, a.len()) {
            Err(e) => out.error(&e),
            Ok(Family::Hashes) => self.write_hashes(cmd, a, out, changed),
            Ok(Family::Sets) => self.write_sets(cmd, a, out, changed),
            Ok(Family::Lists) => self.write_lists(cmd, a, out, changed),
            Ok(Family::Keys) => self.write_keys(cmd, a, out, changed),
            Ok(_) => out.error(&format!("ERR '{}' is not a write", cmd.name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::args::{MUST_BE_POSITIVE, NOT_INTEGER, SYNTAX};
    use super::super::testing::*;
    use super::super::{encode_reads, encode_writes, KvStore, Read};
    use super::TypedCmd;
    use crate::frame::Frame;
    use bytes::Bytes;
    use raft_node::StateMachine;
    use std::collections::BTreeSet;

    #[test]
    fn entries_with_too_few_arguments_get_an_error_not_a_panic() {
        let mut s = KvStore::new();
        for code in 0..=u8::MAX {
            let Some(cmd) = TypedCmd::from_code(code) else {
                continue;
            };
            for n in 0..3 {
                let args = vec![Bytes::from_static(b"k"); n];
                let w = crate::store::Write::Typed {
                    cmd,
                    args: args.clone(),
                };
                let out = s.apply(1, &encode_writes(&[w]));
                let _ = frame(&out);
                let r = Read::Typed { cmd, args };
                let _ = frame(&s.query(&encode_reads(&[r])));
            }
        }
    }

    #[test]
    fn scans_walk_every_field_and_member_once() {
        let mut s = KvStore::new();
        for i in 0..300 {
            run(&mut s, &format!("HSET h f{i} v{i}"));
            run(&mut s, &format!("SADD s m{i}"));
        }
        for (cmd, per) in [("HSCAN h", 2), ("SSCAN s", 1)] {
            let mut seen = BTreeSet::new();
            let mut cursor = "0".to_string();
            let mut steps = 0;
            loop {
                let Frame::Array(a) = run(&mut s, &format!("{cmd} {cursor} COUNT 7")) else {
                    panic!()
                };
                let Frame::Bulk(next) = &a[0] else { panic!() };
                let found = items(a[1].clone());
                assert!(found.len() >= 7 * per || next[..] == *b"0");
                for f in found.into_iter().filter(|f| f.starts_with(['f', 'm'])) {
                    assert!(seen.insert(f), "returned once");
                }
                cursor = String::from_utf8(next.to_vec()).unwrap();
                steps += 1;
                if cursor == "0" {
                    break;
                }
            }
            assert_eq!(seen.len(), 300, "{cmd}");
            assert!(steps > 10);
        }
        let Frame::Array(a) = run(&mut s, "HSCAN h 0 COUNT 1000 MATCH f1?") else {
            panic!()
        };
        assert_eq!(items(a[1].clone()).len(), 20, "10 fields and their values");
        assert_eq!(run(&mut s, "HSCAN h x"), err("ERR invalid cursor"));
        assert_eq!(run(&mut s, "HSCAN h 0 COUNT 0"), err(SYNTAX));
        assert_eq!(run(&mut s, "SSCAN s 0 COUNT x"), err(NOT_INTEGER));
        assert_eq!(run(&mut s, "SSCAN s 0 FOO 1"), err(SYNTAX));
        // A missing key checks no option, as in Redis.
        assert_eq!(
            run(&mut s, "HSCAN nokey 0 COUNT 0"),
            Frame::Array(vec![bulk("0"), Frame::Array(vec![])])
        );
    }

    #[test]
    fn random_picks_are_decided_by_the_log() {
        let mut a = KvStore::new();
        for i in 0..50 {
            run(&mut a, &format!("SADD s m{i}"));
            run(&mut a, &format!("HSET h f{i} v{i}"));
        }
        let b = a.clone();
        let mut picks = BTreeSet::new();
        for index in 10..40 {
            let line = "SRANDMEMBER s 3";
            let (mut x, mut y) = (a.clone(), b.clone());
            let one = run_at(&mut x, index, line);
            assert_eq!(one, run_at(&mut y, index, line), "same entry, same pick");
            let got = items(one);
            assert_eq!(got.len(), 3);
            assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 3, "distinct");
            picks.insert(got);
        }
        assert!(picks.len() > 20, "different entries pick differently");
        let mut s = a.clone();
        assert_eq!(items(run(&mut s, "SRANDMEMBER s 100")).len(), 50);
        assert_eq!(items(run(&mut s, "SRANDMEMBER s -100")).len(), 100);
        assert_eq!(items(run(&mut s, "SRANDMEMBER s 0")).len(), 0);
        assert_eq!(items(run(&mut s, "SRANDMEMBER nokey 5")).len(), 0);
        assert_eq!(run(&mut s, "SRANDMEMBER nokey"), Frame::Null);
        assert_eq!(
            run(&mut s, "SRANDMEMBER s -9223372036854775808"),
            err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        );
        assert_eq!(items(run(&mut s, "HRANDFIELD h -7 WITHVALUES")).len(), 14);
        assert_eq!(items(run(&mut s, "HRANDFIELD h 100")).len(), 50);
        assert_eq!(run(&mut s, "HRANDFIELD h 1 FOO"), err(SYNTAX));
        assert_eq!(
            run(&mut s, "HRANDFIELD h 9223372036854775807 WITHVALUES"),
            err("ERR value is out of range")
        );
        // SPOP removes what it picks, the same on every replica.
        let mut t = s.clone();
        for index in 100..110 {
            let line = "SPOP s 4";
            let (p, q) = (run_at(&mut s, index, line), run_at(&mut t, index, line));
            assert_eq!(p, q);
        }
        assert_eq!(s, t);
        assert_eq!(run(&mut s, "SCARD s"), int(10));
        assert_eq!(run(&mut s, "SPOP s -1"), err(MUST_BE_POSITIVE));
        assert_eq!(run(&mut s, "SPOP s 1 2"), err(SYNTAX));
        assert_eq!(items(run(&mut s, "SPOP s 100")).len(), 10);
        assert_eq!(run(&mut s, "EXISTS s"), int(0));
        assert_eq!(run(&mut s, "SPOP s"), Frame::Null);
        assert_eq!(items(run(&mut s, "SPOP s 2")).len(), 0);
    }
}
