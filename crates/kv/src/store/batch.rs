//! The binary format of log entries (batches of [`Write`]s) and queries
//! (batches of [`Read`]s): encoding, and decoding from untrusted bytes
//! without copies.

use bytes::{BufMut, Bytes, BytesMut};

use super::expiry::{getex_code, ExpireCommand, ExpireCondition, GetExOp, SetTtl, TtlKind};
use super::typed::TypedCmd;
use super::{Read, SetCondition, Write};
use crate::acl::PasswordHash;
use crate::frame::put_error;

// ---------------------------------------------------------------------------
// The binary format of entries and queries
// ---------------------------------------------------------------------------
//
// entry  = 0xD7 write*          query = 0xD2 read*
//                               | 0xD3 soft:u64-LE hard:u64-LE limit:u64-LE read*
// string = u32-LE length, bytes list = u32-LE count, string*
// write  = 1 SET flags:u8 key value [time:u64-LE]
//          (flags: bits 0-1 condition 0/1/2, bit 2 GET, bits 3-4 the time
//          to live 0 clear/1 keep/2 in ms/3 at ms (with the time), bits 5-6
//          the command named in an error 0 SET/1 SETEX/2 PSETEX)
//        | 2 DEL list | 3 INCRBY key i64-LE | 4 APPEND key value
//        | 5 MSET u32-LE pairs, (key value)* | 6 GETSET key value | 7 FLUSHDB
//        | 8 CAS key has:u8 [expected] new
//        | 9 ACL-SETUSER name list(rule text) | 10 ACL-DELUSER list
//        | 11 ACL-INIT has:u8 [sha256:32 bytes]
//        | 12 EXPIRE command:u8 condition:u8 key when-ms:i64-LE
//          (command 0 EXPIRE/1 PEXPIRE/2 EXPIREAT/3 PEXPIREAT; condition
//          0 none/1 NX/2 XX/3 GT/4 LT/5 XX LT)
//        | 13 PERSIST key | 14 GETEX mode:u8 key [time as sent]
//          (mode 1 PERSIST/2 EX/3 PX/4 EXAT/5 PXAT)
//        | 0x40 EXEC u32-LE watches, (key version:u64-LE)*
//          u32-LE commands, (0 write | 1 read | 2 reply-string)*
//          (a write inside is never an EXEC)
//        | 0x41 GETDEL key | 0x42 SETRANGE key offset:u64-LE value
//        | 0x43 MSETNX u32-LE pairs, (key value)* | 0x44 INCRBYFLOAT key by
//        | 0x60 TYPED command:u8 list(argument)  (a `TypedCmd` code)
// read   = 1 GET key | 2 MGET list | 3 EXISTS list | 4 STRLEN key | 5 DBSIZE
//        | 6 KEYS pattern | 7 SCAN cursor:u64-LE count:u64-LE has:u8 [pattern]
//        | 8 TTL kind:u8 key  (kind 0 TTL/1 PTTL/2 EXPIRETIME/3 PEXPIRETIME)
//        | 9 VOLATILE-LEN | 0x40 GETRANGE key start:i64-LE end:i64-LE
//        | 0x41 VERSIONS list | 0x60 TYPED command:u8 list(argument)

pub(super) const WRITES_FORMAT: u8 = 0xD7;
pub(super) const READS_FORMAT: u8 = 0xD2;
/// A query with room for its replies ([`encode_bounded_reads`]).
pub(super) const BOUNDED_READS_FORMAT: u8 = 0xD3;

pub(super) const W_SET: u8 = 1;
pub(super) const W_DEL: u8 = 2;
pub(super) const W_INCRBY: u8 = 3;
pub(super) const W_APPEND: u8 = 4;
pub(super) const W_MSET: u8 = 5;
pub(super) const W_GETSET: u8 = 6;
pub(super) const W_FLUSHDB: u8 = 7;
pub(super) const W_CAS: u8 = 8;
pub(super) const W_ACL_SETUSER: u8 = 9;
pub(super) const W_ACL_DELUSER: u8 = 10;
pub(super) const W_ACL_INIT: u8 = 11;
pub(super) const W_EXPIRE: u8 = 12;
pub(super) const W_PERSIST: u8 = 13;
pub(super) const W_GETEX: u8 = 14;
pub(super) const W_EXEC: u8 = 0x40;
pub(super) const W_GETDEL: u8 = 0x41;
pub(super) const W_SETRANGE: u8 = 0x42;
pub(super) const W_MSETNX: u8 = 0x43;
pub(super) const W_INCRBYFLOAT: u8 = 0x44;
/// Hashes, sets, lists and the commands on keys of any type: far from the
/// string commands' codes (0x40 on), which grow one by one.
pub(super) const W_TYPED: u8 = 0x60;

pub(super) const R_GET: u8 = 1;
pub(super) const R_MGET: u8 = 2;
pub(super) const R_EXISTS: u8 = 3;
pub(super) const R_STRLEN: u8 = 4;
pub(super) const R_DBSIZE: u8 = 5;
pub(super) const R_KEYS: u8 = 6;
pub(super) const R_SCAN: u8 = 7;
pub(super) const R_TTL: u8 = 8;
pub(super) const R_VOLATILE_LEN: u8 = 9;
pub(super) const R_GETRANGE: u8 = 0x40;
pub(super) const R_VERSIONS: u8 = 0x41;
/// As [`W_TYPED`].
pub(super) const R_TYPED: u8 = 0x60;

pub(super) const SET_NX: u8 = 1;
pub(super) const SET_XX: u8 = 2;
pub(super) const SET_GET: u8 = 4;

/// The longest value APPEND may make (Redis's default proto-max-bulk-len).
pub(super) const MAX_STRING: usize = 512 << 20;

pub(super) fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("raft-kv cannot encode a string of 4 GiB or more")
}

pub(super) fn put_str(b: &mut BytesMut, s: &[u8]) {
    b.put_u32_le(len32(s.len()));
    b.put_slice(s);
}

pub(super) fn write_size(w: &Write) -> usize {
    1 + match w {
        Write::Set {
            key, value, ttl, ..
        } => 1 + 8 + key.len() + value.len() + ttl.time().map_or(0, |_| 8),
        Write::Del { keys } => 4 + keys.iter().map(|k| 4 + k.len()).sum::<usize>(),
        Write::IncrBy { key, .. } => 4 + key.len() + 8,
        Write::Append { key, value } | Write::GetSet { key, value } => 8 + key.len() + value.len(),
        Write::MSet { pairs } => {
            4 + pairs
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>()
        }
        Write::FlushDb => 0,
        Write::Cas { key, expected, new } => {
            1 + 8 + key.len() + new.len() + expected.as_ref().map_or(0, |e| 4 + e.len())
        }
        Write::AclSetUser { name, rules } => {
            8 + name.len() + rules.iter().map(|r| 4 + r.text().len()).sum::<usize>()
        }
        Write::AclDelUser { names } => 4 + names.iter().map(|n| 4 + n.len()).sum::<usize>(),
        Write::AclInit { password } => 1 + password.map_or(0, |_| 32),
        Write::Expire { key, .. } => 2 + 4 + key.len() + 8,
        Write::Persist { key } => 4 + key.len(),
        Write::GetEx { key, ttl } => {
            1 + 4
                + key.len()
                + match ttl {
                    super::GetExTtl::Persist => 0,
                    super::GetExTtl::Set(t) => 4 + t.time.len(),
                }
        }
        Write::Typed { args, .. } => typed_size(args),
        Write::Exec { watches, ops } => super::tx::exec_size(watches, ops),
        Write::GetDel { key } => 4 + key.len(),
        Write::SetRange { key, value, .. } => 16 + key.len() + value.len(),
        Write::MSetNx { pairs } => {
            4 + pairs
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>()
        }
        Write::IncrByFloat { key, by } => 8 + key.len() + by.len(),
    }
}

pub(super) fn read_size(r: &Read) -> usize {
    1 + match r {
        Read::Get { key } | Read::Strlen { key } => 4 + key.len(),
        Read::Ttl { key, .. } => 1 + 4 + key.len(),
        Read::MGet { keys } | Read::Exists { keys } => {
            4 + keys.iter().map(|k| 4 + k.len()).sum::<usize>()
        }
        Read::DbSize | Read::VolatileLen => 0,
        Read::Keys { pattern } => 4 + pattern.len(),
        Read::Scan { pattern, .. } => 17 + pattern.as_ref().map_or(0, |p| 4 + p.len()),
        Read::Typed { args, .. } => typed_size(args),
        Read::GetRange { key, .. } => 4 + key.len() + 16,
        Read::Versions { keys } => 4 + keys.iter().map(|k| 4 + k.len()).sum::<usize>(),
    }
}

fn typed_size(args: &[Bytes]) -> usize {
    1 + 4 + args.iter().map(|a| 4 + a.len()).sum::<usize>()
}

fn put_typed(b: &mut BytesMut, tag: u8, cmd: TypedCmd, args: &[Bytes]) {
    b.put_u8(tag);
    b.put_u8(cmd.code());
    b.put_u32_le(len32(args.len()));
    for a in args {
        put_str(b, a);
    }
}

/// The bytes `write` adds to the log entry [`encode_writes`] makes (which
/// is 1 byte plus the sum of its writes').
pub fn encoded_write_len(write: &Write) -> usize {
    write_size(write)
}

/// Encodes one log entry holding these writes, applied in order (an entry
/// with no writes is valid and has no replies).
///
/// # Panics
///
/// If a key or value is 4 GiB or longer (the server's limits are far lower).
pub fn encode_writes(writes: &[Write]) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + writes.iter().map(write_size).sum::<usize>());
    b.put_u8(WRITES_FORMAT);
    for w in writes {
        match w {
            Write::Set {
                key,
                value,
                condition,
                get,
                ttl,
            } => {
                b.put_u8(W_SET);
                let cond = match condition {
                    SetCondition::Always => 0,
                    SetCondition::IfAbsent => SET_NX,
                    SetCondition::IfPresent => SET_XX,
                };
                b.put_u8(cond | if *get { SET_GET } else { 0 } | ttl.flags());
                put_str(&mut b, key);
                put_str(&mut b, value);
                if let Some(t) = ttl.time() {
                    b.put_u64_le(t);
                }
            }
            Write::Del { keys } => {
                b.put_u8(W_DEL);
                b.put_u32_le(len32(keys.len()));
                for k in keys {
                    put_str(&mut b, k);
                }
            }
            Write::IncrBy { key, by } => {
                b.put_u8(W_INCRBY);
                put_str(&mut b, key);
                b.put_i64_le(*by);
            }
            Write::Append { key, value } => {
                b.put_u8(W_APPEND);
                put_str(&mut b, key);
                put_str(&mut b, value);
            }
            Write::MSet { pairs } => {
                b.put_u8(W_MSET);
                b.put_u32_le(len32(pairs.len()));
                for (k, v) in pairs {
                    put_str(&mut b, k);
                    put_str(&mut b, v);
                }
            }
            Write::GetSet { key, value } => {
                b.put_u8(W_GETSET);
                put_str(&mut b, key);
                put_str(&mut b, value);
            }
            Write::FlushDb => b.put_u8(W_FLUSHDB),
            Write::Cas { key, expected, new } => {
                b.put_u8(W_CAS);
                put_str(&mut b, key);
                match expected {
                    Some(e) => {
                        b.put_u8(1);
                        put_str(&mut b, e);
                    }
                    None => b.put_u8(0),
                }
                put_str(&mut b, new);
            }
            Write::AclSetUser { name, rules } => {
                b.put_u8(W_ACL_SETUSER);
                put_str(&mut b, name);
                b.put_u32_le(len32(rules.len()));
                for r in rules {
                    put_str(&mut b, &r.text());
                }
            }
            Write::AclDelUser { names } => {
                b.put_u8(W_ACL_DELUSER);
                b.put_u32_le(len32(names.len()));
                for n in names {
                    put_str(&mut b, n);
                }
            }
            Write::AclInit { password } => {
                b.put_u8(W_ACL_INIT);
                match password {
                    Some(h) => {
                        b.put_u8(1);
                        b.put_slice(&h.0);
                    }
                    None => b.put_u8(0),
                }
            }
            Write::Expire {
                key,
                when_ms,
                command,
                condition,
            } => {
                b.put_u8(W_EXPIRE);
                b.put_u8(command.code());
                b.put_u8(condition.code());
                put_str(&mut b, key);
                b.put_i64_le(*when_ms);
            }
            Write::Persist { key } => {
                b.put_u8(W_PERSIST);
                put_str(&mut b, key);
            }
            Write::GetEx { key, ttl } => {
                b.put_u8(W_GETEX);
                b.put_u8(getex_code(ttl));
                put_str(&mut b, key);
                if let super::GetExTtl::Set(t) = ttl {
                    put_str(&mut b, &t.time);
                }
            }
            Write::Typed { cmd, args } => put_typed(&mut b, W_TYPED, *cmd, args),
            Write::Exec { watches, ops } => {
                b.put_u8(W_EXEC);
                super::tx::encode_exec(&mut b, watches, ops);
            }
            Write::GetDel { key } => {
                b.put_u8(W_GETDEL);
                put_str(&mut b, key);
            }
            Write::SetRange { key, offset, value } => {
                b.put_u8(W_SETRANGE);
                put_str(&mut b, key);
                b.put_u64_le(*offset);
                put_str(&mut b, value);
            }
            Write::MSetNx { pairs } => {
                b.put_u8(W_MSETNX);
                b.put_u32_le(len32(pairs.len()));
                for (k, v) in pairs {
                    put_str(&mut b, k);
                    put_str(&mut b, v);
                }
            }
            Write::IncrByFloat { key, by } => {
                b.put_u8(W_INCRBYFLOAT);
                put_str(&mut b, key);
                put_str(&mut b, by);
            }
        }
    }
    b.freeze()
}

/// Encodes one query holding these reads, answered in order against one
/// state of the store.
///
/// # Panics
///
/// If a key or pattern is 4 GiB or longer.
pub fn encode_reads(reads: &[Read]) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + reads.iter().map(read_size).sum::<usize>());
    b.put_u8(READS_FORMAT);
    for r in reads {
        match r {
            Read::Get { key } => {
                b.put_u8(R_GET);
                put_str(&mut b, key);
            }
            Read::MGet { keys } | Read::Exists { keys } => {
                b.put_u8(if matches!(r, Read::MGet { .. }) {
                    R_MGET
                } else {
                    R_EXISTS
                });
                b.put_u32_le(len32(keys.len()));
                for k in keys {
                    put_str(&mut b, k);
                }
            }
            Read::Strlen { key } => {
                b.put_u8(R_STRLEN);
                put_str(&mut b, key);
            }
            Read::Ttl { key, kind } => {
                b.put_u8(R_TTL);
                b.put_u8(kind.code());
                put_str(&mut b, key);
            }
            Read::DbSize => b.put_u8(R_DBSIZE),
            Read::VolatileLen => b.put_u8(R_VOLATILE_LEN),
            Read::Keys { pattern } => {
                b.put_u8(R_KEYS);
                put_str(&mut b, pattern);
            }
            Read::Scan {
                cursor,
                pattern,
                count,
            } => {
                b.put_u8(R_SCAN);
                b.put_u64_le(*cursor);
                b.put_u64_le(*count as u64);
                match pattern {
                    Some(p) => {
                        b.put_u8(1);
                        put_str(&mut b, p);
                    }
                    None => b.put_u8(0),
                }
            }
            Read::Typed { cmd, args } => put_typed(&mut b, R_TYPED, *cmd, args),
            Read::GetRange { key, start, end } => {
                b.put_u8(R_GETRANGE);
                put_str(&mut b, key);
                b.put_i64_le(*start);
                b.put_i64_le(*end);
            }
            Read::Versions { keys } => {
                b.put_u8(R_VERSIONS);
                b.put_u32_le(len32(keys.len()));
                for k in keys {
                    put_str(&mut b, k);
                }
            }
        }
    }
    b.freeze()
}

/// How much room a bounded query's replies have ([`encode_bounded_reads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyRoom {
    /// The bytes the replies after the first may take in all: reads are
    /// answered in order while they fit, the rest are left unanswered.
    pub soft: usize,
    /// The bytes the first reply may take: if it does not fit, no read is
    /// answered.
    pub hard: usize,
    /// The largest reply any read may have (the client output buffer
    /// limit): a read whose reply would be larger is answered with an
    /// error naming it, and its reply is never built.
    pub limit: usize,
}

/// Encodes a query like [`encode_reads`] whose replies are bounded by
/// `room`, computed before any is built. Its answer is the number of reads
/// answered (u32 LE: the first ones, at least one unless the first did not
/// fit `room.hard`), the number of them refused for `room.limit` (u32 LE),
/// then their RESP replies; see [`split_bounded_answer`].
///
/// # Panics
///
/// If a key or pattern is 4 GiB or longer.
pub fn encode_bounded_reads(reads: &[Read], room: ReplyRoom) -> Bytes {
    let plain = encode_reads(reads);
    let mut b = BytesMut::with_capacity(plain.len() + 24);
    b.put_u8(BOUNDED_READS_FORMAT);
    b.put_u64_le(room.soft as u64);
    b.put_u64_le(room.hard as u64);
    b.put_u64_le(room.limit as u64);
    b.put_slice(&plain[1..]);
    b.freeze()
}

/// What a bounded query answered ([`encode_bounded_reads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedAnswer {
    /// How many of the reads were answered (the first ones).
    pub answered: usize,
    /// How many of those were refused for the client output buffer limit.
    pub refused: usize,
    /// Their replies, in parts to be sent one after the other (slices and
    /// clones of the answer's parts: no copy).
    pub replies: Vec<Bytes>,
}

/// Splits the answer to a bounded query, given in parts (one part for an
/// answer from [`raft_node::StateMachine::query`]): the counts are the
/// first 8 bytes of the first part (the store never splits them off);
/// `None` if it is not one (an error reply).
pub fn split_bounded_answer(answer: &[Bytes]) -> Option<BoundedAnswer> {
    let (first, rest) = answer.split_first()?;
    let count = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(first.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let (answered, refused) = (count(0)?, count(4)?);
    let mut replies = Vec::with_capacity(answer.len());
    if first.len() > 8 {
        replies.push(first.slice(8..));
    }
    replies.extend(rest.iter().cloned());
    Some(BoundedAnswer {
        answered,
        refused,
        replies,
    })
}

/// The length of `$<n>\r\n<n bytes>\r\n`.
pub(super) fn bulk_len(n: usize) -> usize {
    1 + decimal_len(n as u64) + 2 + n + 2
}

/// The length of `*<n>\r\n`.
pub(super) fn array_len(n: usize) -> usize {
    1 + decimal_len(n as u64) + 2
}

pub(super) fn decimal_len(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Reads an untrusted buffer; every length is checked against what is left.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(a)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub(super) fn str(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A 0/1 flag followed, if 1, by a string.
    pub(super) fn opt_str(&mut self) -> Option<Option<&'a [u8]>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }

    /// A count of groups of `per` strings, then the strings: checked whole.
    pub(super) fn list(&mut self, per: usize) -> Option<Items<'a>> {
        let n = (self.u32()? as usize).checked_mul(per)?;
        // Every string takes at least its 4-byte length.
        if n > self.buf.len() / 4 {
            return None;
        }
        let start = self.buf;
        for _ in 0..n {
            self.str()?;
        }
        let used = start.len() - self.buf.len();
        Some(Items {
            left: n,
            rd: Reader {
                buf: &start[..used],
            },
        })
    }
}

/// The strings of a list that was checked whole.
#[derive(Clone, Copy)]
pub(super) struct Items<'a> {
    pub(super) left: usize,
    pub(super) rd: Reader<'a>,
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.rd.str()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Items<'_> {}

/// A write borrowed from an entry.
pub(super) enum WriteOp<'a> {
    Set {
        key: &'a [u8],
        value: &'a [u8],
        condition: SetCondition,
        get: bool,
        ttl: SetTtl,
    },
    Del(Items<'a>),
    IncrBy {
        key: &'a [u8],
        by: i64,
    },
    Append {
        key: &'a [u8],
        value: &'a [u8],
    },
    /// Keys and values alternate.
    MSet(Items<'a>),
    GetSet {
        key: &'a [u8],
        value: &'a [u8],
    },
    FlushDb,
    Cas {
        key: &'a [u8],
        expected: Option<&'a [u8]>,
        new: &'a [u8],
    },
    AclSetUser {
        name: &'a [u8],
        rules: Items<'a>,
    },
    AclDelUser(Items<'a>),
    AclInit(Option<PasswordHash>),
    Expire {
        key: &'a [u8],
        when_ms: i64,
        command: ExpireCommand,
        condition: ExpireCondition,
    },
    Persist(&'a [u8]),
    GetEx {
        key: &'a [u8],
        op: GetExOp<'a>,
    },
    Typed(TypedCmd, Items<'a>),
    Exec(super::tx::ExecOp<'a>),
    GetDel(&'a [u8]),
    SetRange {
        key: &'a [u8],
        offset: u64,
        value: &'a [u8],
    },
    /// Keys and values alternate.
    MSetNx(Items<'a>),
    IncrByFloat {
        key: &'a [u8],
        by: &'a [u8],
    },
}

/// A read borrowed from a query.
pub(super) enum ReadOp<'a> {
    Get(&'a [u8]),
    MGet(Items<'a>),
    Exists(Items<'a>),
    Strlen(&'a [u8]),
    Ttl(&'a [u8], TtlKind),
    DbSize,
    VolatileLen,
    Keys(&'a [u8]),
    Scan {
        cursor: u64,
        pattern: Option<&'a [u8]>,
        count: usize,
    },
    Typed(TypedCmd, Items<'a>),
    GetRange(&'a [u8], i64, i64),
    Versions(Items<'a>),
}

pub(super) const CUT: &str = "cut off";

pub(super) fn parse_write<'a>(r: &mut Reader<'a>) -> Result<WriteOp<'a>, &'static str> {
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
            WriteOp::Set {
                key,
                value,
                condition,
                get: flags & SET_GET != 0,
                ttl: SetTtl::decode(flags, || r.u64())?,
            }
        }
        W_DEL => WriteOp::Del(r.list(1).ok_or(CUT)?),
        W_INCRBY => WriteOp::IncrBy {
            key: r.str().ok_or(CUT)?,
            by: r.u64().ok_or(CUT)? as i64,
        },
        W_APPEND => WriteOp::Append {
            key: r.str().ok_or(CUT)?,
            value: r.str().ok_or(CUT)?,
        },
        W_MSET => WriteOp::MSet(r.list(2).ok_or(CUT)?),
        W_GETSET => WriteOp::GetSet {
            key: r.str().ok_or(CUT)?,
            value: r.str().ok_or(CUT)?,
        },
        W_FLUSHDB => WriteOp::FlushDb,
        W_CAS => WriteOp::Cas {
            key: r.str().ok_or(CUT)?,
            expected: r.opt_str().ok_or("invalid CAS")?,
            new: r.str().ok_or(CUT)?,
        },
        W_ACL_SETUSER => WriteOp::AclSetUser {
            name: r.str().ok_or(CUT)?,
            rules: r.list(1).ok_or(CUT)?,
        },
        W_ACL_DELUSER => WriteOp::AclDelUser(r.list(1).ok_or(CUT)?),
        W_ACL_INIT => WriteOp::AclInit(match r.u8().ok_or(CUT)? {
            0 => None,
            1 => {
                let mut h = [0u8; 32];
                h.copy_from_slice(r.take(32).ok_or(CUT)?);
                Some(PasswordHash(h))
            }
            _ => return Err("invalid ACL init"),
        }),
        W_EXPIRE => {
            let command = ExpireCommand::from_code(r.u8().ok_or(CUT)?).ok_or("invalid EXPIRE")?;
            let condition =
                ExpireCondition::from_code(r.u8().ok_or(CUT)?).ok_or("invalid EXPIRE")?;
            WriteOp::Expire {
                key: r.str().ok_or(CUT)?,
                when_ms: r.u64().ok_or(CUT)? as i64,
                command,
                condition,
            }
        }
        W_PERSIST => WriteOp::Persist(r.str().ok_or(CUT)?),
        W_GETEX => {
            let mode = r.u8().ok_or(CUT)?;
            if !(1..=5).contains(&mode) {
                return Err("invalid GETEX");
            }
            let key = r.str().ok_or(CUT)?;
            let time = if mode == 1 {
                &[][..]
            } else {
                r.str().ok_or(CUT)?
            };
            WriteOp::GetEx {
                key,
                op: GetExOp { mode, time },
            }
        }
        W_TYPED => {
            let cmd = TypedCmd::from_code(r.u8().ok_or(CUT)?).ok_or("unknown typed command")?;
            WriteOp::Typed(cmd, r.list(1).ok_or(CUT)?)
        }
        W_EXEC => WriteOp::Exec(super::tx::parse_exec(r)?),
        W_GETDEL => WriteOp::GetDel(r.str().ok_or(CUT)?),
        W_SETRANGE => WriteOp::SetRange {
            key: r.str().ok_or(CUT)?,
            offset: r.u64().ok_or(CUT)?,
            value: r.str().ok_or(CUT)?,
        },
        W_MSETNX => WriteOp::MSetNx(r.list(2).ok_or(CUT)?),
        W_INCRBYFLOAT => WriteOp::IncrByFloat {
            key: r.str().ok_or(CUT)?,
            by: r.str().ok_or(CUT)?,
        },
        _ => return Err("unknown command"),
    };
    Ok(op)
}

pub(super) fn parse_read<'a>(r: &mut Reader<'a>) -> Result<ReadOp<'a>, &'static str> {
    let tag = r.u8().ok_or(CUT)?;
    let op = match tag {
        R_GET => ReadOp::Get(r.str().ok_or(CUT)?),
        R_MGET => ReadOp::MGet(r.list(1).ok_or(CUT)?),
        R_EXISTS => ReadOp::Exists(r.list(1).ok_or(CUT)?),
        R_STRLEN => ReadOp::Strlen(r.str().ok_or(CUT)?),
        R_TTL => {
            let kind = TtlKind::from_code(r.u8().ok_or(CUT)?).ok_or("invalid TTL")?;
            ReadOp::Ttl(r.str().ok_or(CUT)?, kind)
        }
        R_DBSIZE => ReadOp::DbSize,
        R_VOLATILE_LEN => ReadOp::VolatileLen,
        R_KEYS => ReadOp::Keys(r.str().ok_or(CUT)?),
        R_SCAN => {
            let cursor = r.u64().ok_or(CUT)?;
            let count = r.u64().ok_or(CUT)?;
            ReadOp::Scan {
                cursor,
                count: usize::try_from(count).unwrap_or(usize::MAX),
                pattern: r.opt_str().ok_or("invalid SCAN")?,
            }
        }
        R_TYPED => {
            let cmd = TypedCmd::from_code(r.u8().ok_or(CUT)?).ok_or("unknown typed command")?;
            ReadOp::Typed(cmd, r.list(1).ok_or(CUT)?)
        }
        R_GETRANGE => ReadOp::GetRange(
            r.str().ok_or(CUT)?,
            r.u64().ok_or(CUT)? as i64,
            r.u64().ok_or(CUT)? as i64,
        ),
        R_VERSIONS => ReadOp::Versions(r.list(1).ok_or(CUT)?),
        _ => return Err("unknown command"),
    };
    Ok(op)
}

/// Checks a whole batch (nothing is done unless all of it decodes); returns
/// the body after the format byte and the number of commands.
pub(super) fn check_batch<'a, T>(
    input: &'a [u8],
    format: u8,
    parse: impl Fn(&mut Reader<'a>) -> Result<T, &'static str>,
) -> Result<(&'a [u8], usize), String> {
    let Some((&first, body)) = input.split_first() else {
        return Err("it is empty".into());
    };
    if first != format {
        return Err(format!("unknown format byte {first:#04x}"));
    }
    let mut r = Reader { buf: body };
    let mut n = 0;
    while !r.is_empty() {
        parse(&mut r).map_err(|e| format!("command {}: {e}", n + 1))?;
        n += 1;
    }
    Ok((body, n))
}

pub(super) fn batch_error(what: &str, why: &str) -> Bytes {
    let mut out = BytesMut::new();
    put_error(&mut out, &format!("ERR not a raft-kv {what} batch ({why})"));
    out.freeze()
}
