//! The first format of log entries, written by raft-kv before the commands
//! were serde enums (format byte 0xD7). It is only read: a log or a data
//! directory written then still applies the same writes after an upgrade.
//! Nothing writes it any more; `every-write.bin` beside this file is an
//! entry in it, holding every kind of write, that the tests decode.
//!
//! ```text
//! entry  = 0xD7 write*
//! string = u32-LE length, bytes     list = u32-LE count, string*
//! write  = 1 SET flags:u8 key value [time:u64-LE]
//!          (flags: bits 0-1 condition 0/1/2, bit 2 GET, bits 3-4 the time
//!          to live 0 clear/1 keep/2 in ms/3 at ms (with the time), bits 5-6
//!          the command named in an error 0 SET/1 SETEX/2 PSETEX)
//!        | 2 DEL list | 3 INCRBY key i64-LE | 4 APPEND key value
//!        | 5 MSET u32-LE pairs, (key value)* | 6 GETSET key value | 7 FLUSHDB
//!        | 8 CAS key has:u8 [expected] new
//!        | 9 ACL-SETUSER name list(rule text) | 10 ACL-DELUSER list
//!        | 11 ACL-INIT has:u8 [sha256:32 bytes]
//!        | 12 EXPIRE command:u8 condition:u8 key when-ms:i64-LE
//!          (command 0 EXPIRE/1 PEXPIRE/2 EXPIREAT/3 PEXPIREAT; condition
//!          0 none/1 NX/2 XX/3 GT/4 LT/5 XX LT)
//!        | 13 PERSIST key | 14 GETEX mode:u8 key [time as sent]
//!          (mode 1 PERSIST/2 EX/3 PX/4 EXAT/5 PXAT)
//!        | 0x40 EXEC u32-LE watches, (key version:u64-LE)*
//!          u32-LE commands, (0 write | 1 read | 2 reply-string)*
//!          (a write inside is never an EXEC)
//!        | 0x41 GETDEL key | 0x42 SETRANGE key offset:u64-LE value
//!        | 0x43 MSETNX u32-LE pairs, (key value)* | 0x44 INCRBYFLOAT key by
//!        | 0x60 TYPED command:u8 list(argument)  (a `TypedCmd` code)
//! read   = 1 GET key | 2 MGET list | 3 EXISTS list | 4 STRLEN key | 5 DBSIZE
//!        | 6 KEYS pattern | 7 SCAN cursor:u64-LE count:u64-LE has:u8 [pattern]
//!        | 8 TTL kind:u8 key  (kind 0 TTL/1 PTTL/2 EXPIRETIME/3 PEXPIRETIME)
//!        | 9 VOLATILE-LEN | 0x40 GETRANGE key start:i64-LE end:i64-LE
//!        | 0x41 VERSIONS list | 0x60 TYPED command:u8 list(argument)
//! ```
//!
//! Reads appear in entries only inside an EXEC.

use super::batch::Reader;
use super::expiry::{
    ExpireCommand, ExpireCondition, GetExTime, GetExTtl, SetName, SetTtl, TtlKind,
};
use super::tx::TxOp;
use super::typed::TypedCmd;
use super::{Read, SetCondition, Write};
use crate::acl::{PasswordHash, Rule};

/// The format byte of an entry in this format.
pub(super) const FORMAT: u8 = 0xD7;

const W_SET: u8 = 1;
const W_DEL: u8 = 2;
const W_INCRBY: u8 = 3;
const W_APPEND: u8 = 4;
const W_MSET: u8 = 5;
const W_GETSET: u8 = 6;
const W_FLUSHDB: u8 = 7;
const W_CAS: u8 = 8;
const W_ACL_SETUSER: u8 = 9;
const W_ACL_DELUSER: u8 = 10;
const W_ACL_INIT: u8 = 11;
const W_EXPIRE: u8 = 12;
const W_PERSIST: u8 = 13;
const W_GETEX: u8 = 14;
const W_EXEC: u8 = 0x40;
const W_GETDEL: u8 = 0x41;
const W_SETRANGE: u8 = 0x42;
const W_MSETNX: u8 = 0x43;
const W_INCRBYFLOAT: u8 = 0x44;
const W_TYPED: u8 = 0x60;

const R_GET: u8 = 1;
const R_MGET: u8 = 2;
const R_EXISTS: u8 = 3;
const R_STRLEN: u8 = 4;
const R_DBSIZE: u8 = 5;
const R_KEYS: u8 = 6;
const R_SCAN: u8 = 7;
const R_TTL: u8 = 8;
const R_VOLATILE_LEN: u8 = 9;
const R_GETRANGE: u8 = 0x40;
const R_VERSIONS: u8 = 0x41;
const R_TYPED: u8 = 0x60;

const OP_WRITE: u8 = 0;
const OP_READ: u8 = 1;
const OP_REPLY: u8 = 2;

const SET_NX: u8 = 1;
const SET_XX: u8 = 2;
const SET_GET: u8 = 4;

const CUT: &str = "cut off";

/// Decodes the body of an entry (after its format byte), whole.
pub(super) fn decode_writes(body: &[u8]) -> Result<Vec<Write<&[u8]>>, String> {
    let mut r = Reader { buf: body };
    let mut all = Vec::new();
    while !r.is_empty() {
        let w = parse_write(&mut r).map_err(|e| format!("command {}: {e}", all.len() + 1))?;
        all.push(w);
    }
    Ok(all)
}

/// A count of groups of `per` strings, then the strings.
fn list<'a>(r: &mut Reader<'a>, per: usize) -> Option<Vec<&'a [u8]>> {
    let n = (r.u32()? as usize).checked_mul(per)?;
    // Every string takes at least its 4-byte length.
    if n > r.buf.len() / 4 {
        return None;
    }
    (0..n).map(|_| r.str()).collect()
}

fn pairs<'a>(r: &mut Reader<'a>) -> Option<Vec<(&'a [u8], &'a [u8])>> {
    let items = list(r, 2)?;
    Some(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
}

/// A 0/1 flag followed, if 1, by a string.
fn opt_str<'a>(r: &mut Reader<'a>) -> Option<Option<&'a [u8]>> {
    match r.u8()? {
        0 => Some(None),
        1 => Some(Some(r.str()?)),
        _ => None,
    }
}

/// Bits 3-6 of SET's flags and the time after them.
fn set_ttl(flags: u8, r: &mut Reader<'_>) -> Result<SetTtl, &'static str> {
    let name = match (flags >> 5) & 3 {
        0 => SetName::Set,
        1 => SetName::SetEx,
        2 => SetName::PSetEx,
        _ => return Err("invalid SET flags"),
    };
    let kind = (flags >> 3) & 3;
    if name != SetName::Set && kind != 2 {
        return Err("invalid SET flags");
    }
    Ok(match kind {
        0 => SetTtl::Clear,
        1 => SetTtl::Keep,
        2 => SetTtl::In {
            ms: r.u64().ok_or(CUT)?,
            name,
        },
        _ => SetTtl::At(r.u64().ok_or(CUT)?),
    })
}

fn expire_command(code: u8) -> Option<ExpireCommand> {
    use ExpireCommand::*;
    [Expire, PExpire, ExpireAt, PExpireAt]
        .get(usize::from(code))
        .copied()
}

fn expire_condition(code: u8) -> Option<ExpireCondition> {
    use ExpireCondition::*;
    [Always, IfNone, IfSome, IfLater, IfEarlier, IfSomeEarlier]
        .get(usize::from(code))
        .copied()
}

fn ttl_kind(code: u8) -> Option<TtlKind> {
    use TtlKind::*;
    [Ttl, PTtl, ExpireTime, PExpireTime]
        .get(usize::from(code))
        .copied()
}

fn typed<'a>(r: &mut Reader<'a>) -> Result<(TypedCmd, Vec<&'a [u8]>), &'static str> {
    let cmd = TypedCmd::from_code(r.u8().ok_or(CUT)?).ok_or("unknown typed command")?;
    Ok((cmd, list(r, 1).ok_or(CUT)?))
}

fn parse_write<'a>(r: &mut Reader<'a>) -> Result<Write<&'a [u8]>, &'static str> {
    let tag = r.u8().ok_or(CUT)?;
    let op = match tag {
        W_SET => {
            let flags = r.u8().ok_or(CUT)?;
            let condition = match flags & 3 {
                0 => SetCondition::Always,
                SET_NX => SetCondition::IfAbsent,
                SET_XX => SetCondition::IfPresent,
                _ => return Err("invalid SET flags"),
            };
            if flags & 0x80 != 0 {
                return Err("invalid SET flags");
            }
            let key = r.str().ok_or(CUT)?;
            let value = r.str().ok_or(CUT)?;
            Write::Set {
                key,
                value,
                condition,
                get: flags & SET_GET != 0,
                ttl: set_ttl(flags, r)?,
            }
        }
        W_DEL => Write::Del {
            keys: list(r, 1).ok_or(CUT)?,
        },
        W_INCRBY => Write::IncrBy {
            key: r.str().ok_or(CUT)?,
            by: r.u64().ok_or(CUT)? as i64,
        },
        W_APPEND => Write::Append {
            key: r.str().ok_or(CUT)?,
            value: r.str().ok_or(CUT)?,
        },
        W_MSET => Write::MSet {
            pairs: pairs(r).ok_or(CUT)?,
        },
        W_GETSET => Write::GetSet {
            key: r.str().ok_or(CUT)?,
            value: r.str().ok_or(CUT)?,
        },
        W_FLUSHDB => Write::FlushDb,
        W_CAS => Write::Cas {
            key: r.str().ok_or(CUT)?,
            expected: opt_str(r).ok_or("invalid CAS")?,
            new: r.str().ok_or(CUT)?,
        },
        W_ACL_SETUSER => {
            let name = r.str().ok_or(CUT)?;
            let texts = list(r, 1).ok_or(CUT)?;
            // An empty rule does nothing, as in ACL SETUSER.
            let rules = texts
                .into_iter()
                .filter(|t| !t.is_empty())
                .map(Rule::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| "invalid ACL rule")?;
            Write::AclSetUser { name, rules }
        }
        W_ACL_DELUSER => Write::AclDelUser {
            names: list(r, 1).ok_or(CUT)?,
        },
        W_ACL_INIT => Write::AclInit {
            password: match r.u8().ok_or(CUT)? {
                0 => None,
                1 => {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(r.take(32).ok_or(CUT)?);
                    Some(PasswordHash(h))
                }
                _ => return Err("invalid ACL init"),
            },
        },
        W_EXPIRE => {
            let command = expire_command(r.u8().ok_or(CUT)?).ok_or("invalid EXPIRE")?;
            let condition = expire_condition(r.u8().ok_or(CUT)?).ok_or("invalid EXPIRE")?;
            Write::Expire {
                key: r.str().ok_or(CUT)?,
                when_ms: r.u64().ok_or(CUT)? as i64,
                command,
                condition,
            }
        }
        W_PERSIST => Write::Persist {
            key: r.str().ok_or(CUT)?,
        },
        W_GETEX => {
            let mode = r.u8().ok_or(CUT)?;
            if !(1..=5).contains(&mode) {
                return Err("invalid GETEX");
            }
            let key = r.str().ok_or(CUT)?;
            let ttl = if mode == 1 {
                GetExTtl::Persist
            } else {
                GetExTtl::Set(GetExTime {
                    seconds: mode & 1 == 0,
                    absolute: mode >= 4,
                    time: r.str().ok_or(CUT)?,
                })
            };
            Write::GetEx { key, ttl }
        }
        W_TYPED => {
            let (cmd, args) = typed(r)?;
            Write::Typed { cmd, args }
        }
        W_EXEC => parse_exec(r)?,
        W_GETDEL => Write::GetDel {
            key: r.str().ok_or(CUT)?,
        },
        W_SETRANGE => Write::SetRange {
            key: r.str().ok_or(CUT)?,
            offset: r.u64().ok_or(CUT)?,
            value: r.str().ok_or(CUT)?,
        },
        W_MSETNX => Write::MSetNx {
            pairs: pairs(r).ok_or(CUT)?,
        },
        W_INCRBYFLOAT => Write::IncrByFloat {
            key: r.str().ok_or(CUT)?,
            by: r.str().ok_or(CUT)?,
        },
        _ => return Err("unknown command"),
    };
    Ok(op)
}

fn parse_read<'a>(r: &mut Reader<'a>) -> Result<Read<&'a [u8]>, &'static str> {
    let tag = r.u8().ok_or(CUT)?;
    let op = match tag {
        R_GET => Read::Get {
            key: r.str().ok_or(CUT)?,
        },
        R_MGET => Read::MGet {
            keys: list(r, 1).ok_or(CUT)?,
        },
        R_EXISTS => Read::Exists {
            keys: list(r, 1).ok_or(CUT)?,
        },
        R_STRLEN => Read::Strlen {
            key: r.str().ok_or(CUT)?,
        },
        R_TTL => {
            let kind = ttl_kind(r.u8().ok_or(CUT)?).ok_or("invalid TTL")?;
            Read::Ttl {
                key: r.str().ok_or(CUT)?,
                kind,
            }
        }
        R_DBSIZE => Read::DbSize,
        R_VOLATILE_LEN => Read::VolatileLen,
        R_KEYS => Read::Keys {
            pattern: r.str().ok_or(CUT)?,
        },
        R_SCAN => {
            let cursor = r.u64().ok_or(CUT)?;
            let count = r.u64().ok_or(CUT)?;
            Read::Scan {
                cursor,
                count: usize::try_from(count).unwrap_or(usize::MAX),
                pattern: opt_str(r).ok_or("invalid SCAN")?,
            }
        }
        R_TYPED => {
            let (cmd, args) = typed(r)?;
            Read::Typed { cmd, args }
        }
        R_GETRANGE => Read::GetRange {
            key: r.str().ok_or(CUT)?,
            start: r.u64().ok_or(CUT)? as i64,
            end: r.u64().ok_or(CUT)? as i64,
        },
        R_VERSIONS => Read::Versions {
            keys: list(r, 1).ok_or(CUT)?,
        },
        _ => return Err("unknown command"),
    };
    Ok(op)
}

/// An EXEC after its tag.
fn parse_exec<'a>(r: &mut Reader<'a>) -> Result<Write<&'a [u8]>, &'static str> {
    let n_watches = r.u32().ok_or(CUT)? as usize;
    if n_watches > r.buf.len() / 12 {
        return Err(CUT);
    }
    let watches = (0..n_watches)
        .map(|_| Some((r.str()?, r.u64()?)))
        .collect::<Option<Vec<_>>>()
        .ok_or(CUT)?;
    let n_ops = r.u32().ok_or(CUT)? as usize;
    if n_ops > r.buf.len() {
        return Err(CUT);
    }
    let mut ops = Vec::with_capacity(n_ops);
    for _ in 0..n_ops {
        ops.push(match r.u8().ok_or(CUT)? {
            OP_WRITE => {
                if r.buf.first() == Some(&W_EXEC) {
                    return Err("an EXEC inside an EXEC");
                }
                TxOp::Write(parse_write(r)?)
            }
            OP_READ => TxOp::Read(parse_read(r)?),
            OP_REPLY => TxOp::Reply(r.str().ok_or(CUT)?),
            _ => return Err("invalid EXEC"),
        });
    }
    Ok(Write::Exec { watches, ops })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{every_write, owned};
    use crate::store::KvStore;
    use raft_node::StateMachine;

    /// `every-write.bin` is `every_write()` as the first format encoded it.
    const EVERY_WRITE: &[u8] = include_bytes!("legacy/every-write.bin");

    #[test]
    fn an_entry_of_the_first_format_decodes_to_the_same_writes() {
        assert_eq!(EVERY_WRITE[0], FORMAT);
        let decoded = decode_writes(&EVERY_WRITE[1..]).unwrap();
        let decoded: Vec<Write> = decoded.iter().map(owned).collect();
        assert_eq!(decoded, every_write());
    }

    #[test]
    fn an_entry_of_the_first_format_applies_as_the_same_entry_in_the_new_one() {
        let (mut old, mut new) = (KvStore::new(), KvStore::new());
        let a = old.apply(3, EVERY_WRITE);
        let b = new.apply(3, &crate::store::encode_writes(&every_write()));
        assert_eq!(a, b);
        assert_eq!(old, new);
        assert!(!a.starts_with(b"-ERR not a raft-kv"));
    }

    #[test]
    fn a_cut_or_damaged_entry_of_the_first_format_is_refused() {
        // Every cut but those between two writes (a valid shorter entry).
        let cuts =
            (1..EVERY_WRITE.len() - 1).filter(|&cut| decode_writes(&EVERY_WRITE[1..cut]).is_err());
        assert!(cuts.count() > EVERY_WRITE.len() / 2);
        assert!(decode_writes(&[99])
            .unwrap_err()
            .contains("unknown command"));
        assert!(decode_writes(&[W_SET, 1, 0, 9])
            .unwrap_err()
            .contains("cut off"));
        // NX and XX together; a huge count; an EXEC inside an EXEC.
        assert!(decode_writes(&[W_SET, 3, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_writes(&[W_DEL, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_writes(&[W_EXEC, 0, 0, 0, 0, 1, 0, 0, 0, OP_WRITE, W_EXEC]).is_err());
    }
}
