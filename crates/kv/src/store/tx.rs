//! Transactions (MULTI/EXEC) and the key versions WATCH compares.
//!
//! An EXEC is one write ([`super::Write::Exec`]) in one log entry: the
//! versions its connection read at WATCH, then the queued commands. Every
//! node applies it at the same log position: if a watched key's version
//! is not the one read, the reply is a null array and nothing runs;
//! otherwise the commands run in order, writes and reads alike (a read
//! sees the transaction's own earlier writes), and the reply is the array
//! of their replies, runtime errors included, as in Redis.
//!
//! A key's version is the index of the log entry that last changed it
//! (set, removed, given or cleared a time to live, expired). The table
//! keeps the versions of the most recently changed keys only (at most
//! [`MAX_VERSIONS`] keys and [`MAX_VERSION_BYTES`] of key bytes): a key it
//! does not hold has the table's floor, the newest version it forgot. A
//! key forgotten since WATCH then reads as changed: EXEC may abort for a
//! key that did not change, never run over one that did. FLUSHDB changes
//! the keys it removes (of more than the table holds, it raises the floor
//! over every key). The table is part of the state (the same on every
//! node, kept in snapshots).

use std::collections::{HashMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};

use serde::{Deserialize, Serialize};

use super::batch::{put_str, Reader};
use super::reply::Answer;
use super::{GetExTtl, KvStore, Read, Write};
use crate::frame::{put_array, put_int};

/// The most keys whose versions the table remembers.
pub(super) const MAX_VERSIONS: usize = 1 << 16;

/// The most key bytes the table holds.
pub(super) const MAX_VERSION_BYTES: usize = 16 << 20;

/// One command of a transaction (generic over its byte strings as
/// [`Write`] is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxOp<B = Bytes> {
    /// A write, applied in its turn (never an EXEC).
    Write(Write<B>),
    /// A read, answered in its turn from the state the earlier commands
    /// left.
    Read(Read<B>),
    /// A reply known when the command was queued (an error found when it
    /// was parsed, PING...): sent in its place.
    Reply(B),
}

thread_local! {
    /// True while an EXEC's commands are being decoded (`exec_ops`).
    static IN_EXEC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Decodes an EXEC's commands, refusing an EXEC among them before reading
/// it: the decoder never goes more than one EXEC deep, so a crafted entry
/// of nested EXECs cannot take it deep into the stack.
pub(super) fn exec_ops<'de, D, B>(d: D) -> Result<Vec<TxOp<B>>, D::Error>
where
    D: serde::Deserializer<'de>,
    B: Deserialize<'de>,
{
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_EXEC.with(|e| e.set(false));
        }
    }
    if IN_EXEC.with(|e| e.replace(true)) {
        return Err(super::batch::refuse(format_args!("an EXEC inside an EXEC")));
    }
    let _leave = Leave;
    Vec::deserialize(d)
}

/// The versions of recently changed keys (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(super) struct Versions {
    by_key: HashMap<Bytes, u64>,
    /// Changes in log order; an entry whose key has since changed again
    /// is stale and skipped.
    order: VecDeque<(u64, Bytes)>,
    /// The bytes of the keys in `by_key`.
    bytes: usize,
    /// The version of every key `by_key` does not hold.
    floor: u64,
}

impl PartialEq for Versions {
    fn eq(&self, other: &Versions) -> bool {
        self.floor == other.floor && self.by_key == other.by_key
    }
}

impl Eq for Versions {}

impl Versions {
    /// The version of `key`.
    pub(super) fn get(&self, key: &[u8]) -> u64 {
        self.by_key.get(key).copied().unwrap_or(self.floor)
    }

    /// Records that `key` changed in the entry at `index`.
    pub(super) fn bump(&mut self, key: &[u8], index: u64) {
        match self.by_key.get_mut(key) {
            // Changed again in the same entry: already in `order`, so that
            // it holds each live key once.
            Some(v) if *v == index => return,
            Some(v) => *v = index,
            None => {
                self.by_key.insert(Bytes::copy_from_slice(key), index);
                self.bytes += key.len();
            }
        }
        self.order.push_back((index, Bytes::copy_from_slice(key)));
        while self.by_key.len() > MAX_VERSIONS || self.bytes > MAX_VERSION_BYTES {
            let Some((at, k)) = self.order.pop_front() else {
                break;
            };
            if self.by_key.get(&k) == Some(&at) {
                self.by_key.remove(&k);
                self.bytes -= k.len();
                self.floor = self.floor.max(at);
            }
        }
        if self.order.len() > 2 * self.by_key.len() + 1024 {
            let by_key = &self.by_key;
            self.order.retain(|(at, k)| by_key.get(k) == Some(at));
        }
    }

    /// Records that every key changed at `index` (FLUSHDB).
    pub(super) fn bump_all(&mut self, index: u64) {
        self.by_key.clear();
        self.order.clear();
        self.bytes = 0;
        self.floor = self.floor.max(index);
    }

    /// The snapshot part: the floor, the number of keys, then each key
    /// and its version, oldest first.
    pub(super) fn put_snapshot_part(&self, b: &mut BytesMut) {
        let mut keys: Vec<(&u64, &Bytes)> = self.by_key.iter().map(|(k, v)| (v, k)).collect();
        keys.sort_unstable();
        b.put_u64_le(self.floor);
        b.put_u64_le(keys.len() as u64);
        for (v, k) in keys {
            put_str(b, k);
            b.put_u64_le(*v);
        }
    }

    /// The bytes [`Versions::put_snapshot_part`] writes.
    pub(super) fn snapshot_part_len(&self) -> usize {
        16 + self.by_key.keys().map(|k| 12 + k.len()).sum::<usize>()
    }

    /// Reads the snapshot part back.
    pub(super) fn decode(rd: &mut Reader<'_>) -> Result<Versions, String> {
        let (Some(floor), Some(n)) = (rd.u64(), rd.u64()) else {
            return Err("the snapshot is cut off in its key versions".into());
        };
        if n > (rd.buf.len() / 12) as u64 {
            return Err(format!(
                "the snapshot claims {n} key versions but has only {} bytes left",
                rd.buf.len()
            ));
        }
        let mut v = Versions {
            floor,
            ..Versions::default()
        };
        let mut last = 0;
        for i in 1..=n {
            let (Some(k), Some(at)) = (rd.str(), rd.u64()) else {
                return Err(format!("the snapshot is cut off in key version {i} of {n}"));
            };
            if at < last || at < floor {
                return Err(format!(
                    "the snapshot's key version {i} ({at}) is out of order or below its floor ({floor})"
                ));
            }
            last = at;
            let k = Bytes::copy_from_slice(k);
            if v.by_key.insert(k.clone(), at).is_some() {
                return Err(format!("the snapshot has two versions for key {i}"));
            }
            v.bytes += k.len();
            v.order.push_back((at, k));
        }
        Ok(v)
    }
}

/// The keys a write is about to change, found before it runs.
enum Change<'a> {
    None,
    /// These keys, unless the write fails.
    Keys(Vec<&'a [u8]>),
    /// These keys, if the write replies `:1`.
    IfOne(Vec<&'a [u8]>),
    /// These keys (the ones FLUSHDB removes), unless it fails.
    Owned(Vec<Bytes>),
    /// Every key (FLUSHDB of more keys than the table holds).
    All,
}

impl KvStore {
    /// Applies one write of the entry at `index`, recording the versions
    /// of the keys it changes.
    pub(super) fn apply_write(&mut self, index: u64, op: Write<&[u8]>, out: &mut BytesMut) {
        let op = match op {
            Write::Exec { watches, ops } => return self.exec(index, &watches, ops, out),
            // A typed write knows what it changed only as it runs (a field
            // new or not, a list emptied, a destination made or removed).
            Write::Typed { cmd, args } => {
                let mut changed = Vec::new();
                self.write_typed(cmd, &args, out, &mut changed);
                changed.iter().for_each(|k| self.changed(k, index));
                return;
            }
            op => op,
        };
        let change = self.change(&op);
        let start = out.len();
        self.write(op, out);
        let reply = &out[start..];
        if reply.first() == Some(&b'-') {
            return;
        }
        match change {
            Change::None => {}
            Change::Keys(keys) => keys.iter().for_each(|k| self.changed(k, index)),
            Change::IfOne(keys) => {
                if reply == b":1\r\n" {
                    keys.iter().for_each(|k| self.changed(k, index));
                }
            }
            Change::Owned(keys) => keys.iter().for_each(|k| self.changed(k, index)),
            Change::All => self.versions.bump_all(index),
        }
    }

    /// What `op` will change if it succeeds, from the state before it.
    fn change<'a>(&self, op: &Write<&'a [u8]>) -> Change<'a> {
        let exists = |k: &[u8]| self.get(k).is_some();
        match *op {
            Write::Set { key, condition, .. } => {
                let runs = match condition {
                    super::SetCondition::Always => true,
                    super::SetCondition::IfAbsent => !exists(key),
                    super::SetCondition::IfPresent => exists(key),
                };
                if runs {
                    Change::Keys(vec![key])
                } else {
                    Change::None
                }
            }
            Write::Del { ref keys } => {
                Change::Keys(keys.iter().copied().filter(|k| exists(k)).collect())
            }
            Write::GetDel { key } => Change::Keys(if exists(key) { vec![key] } else { vec![] }),
            Write::IncrBy { key, .. }
            | Write::Append { key, .. }
            | Write::GetSet { key, .. }
            | Write::IncrByFloat { key, .. } => Change::Keys(vec![key]),
            Write::SetRange { key, value, .. } => {
                Change::Keys(if value.is_empty() { vec![] } else { vec![key] })
            }
            Write::MSet { ref pairs } => Change::Keys(pairs.iter().map(|&(k, _)| k).collect()),
            Write::MSetNx { ref pairs } => Change::IfOne(pairs.iter().map(|&(k, _)| k).collect()),
            Write::Cas { key, .. } | Write::Expire { key, .. } | Write::Persist { key } => {
                Change::IfOne(vec![key])
            }
            Write::GetEx { key, ref ttl } => {
                let changes = exists(key)
                    && (matches!(ttl, GetExTtl::Set(_)) || self.deadlines.get(key).is_some());
                Change::Keys(if changes { vec![key] } else { vec![] })
            }
            // As in Redis, FLUSHDB changes the keys it removes: a watched
            // key that did not exist is not changed by it.
            Write::FlushDb if self.len <= MAX_VERSIONS => {
                Change::Owned(self.iter().map(|(k, _)| k.clone()).collect())
            }
            Write::FlushDb => Change::All,
            Write::AclSetUser { .. }
            | Write::AclDelUser { .. }
            | Write::AclInit { .. }
            | Write::Exec { .. } => Change::None,
            // Recorded by `apply_write` from what `write_typed` changed.
            Write::Typed { .. } => Change::None,
        }
    }

    /// Applies an EXEC: a null array if a watched key changed, else every
    /// command in order and the array of their replies.
    fn exec(
        &mut self,
        index: u64,
        watches: &[(&[u8], u64)],
        ops: Vec<TxOp<&[u8]>>,
        out: &mut BytesMut,
    ) {
        for &(k, v) in watches {
            if self.versions.get(k) != v && !crate::fault::ignore_watch() {
                out.extend_from_slice(b"*-1\r\n");
                return;
            }
        }
        put_array(out, ops.len());
        // Each command of the transaction gets its own seed for random
        // picks (two SPOPs in one EXEC pick apart), the same on every node.
        let (at, place) = self.seed.0;
        for (i, op) in ops.into_iter().enumerate() {
            self.seed.0 = (at, (place << 32) | (i as u64 + 1));
            match op {
                // Never an EXEC: refused when the entry was decoded.
                TxOp::Write(op) => self.apply_write(index, op, out),
                TxOp::Read(op) => {
                    let mut answer = Answer::whole();
                    self.read(op, &mut answer);
                    out.extend_from_slice(&answer.into_bytes());
                }
                TxOp::Reply(reply) => out.extend_from_slice(reply),
            }
        }
    }

    /// `VERSIONS key...` (WATCH's read): the keys' versions.
    pub(super) fn read_versions(&self, keys: &[&[u8]], out: &mut BytesMut) {
        put_array(out, keys.len());
        for &k in keys {
            put_int(out, self.versions.get(k) as i64);
        }
    }

    /// Moves the log's time at entry `index`, recording the versions of the
    /// keys that expire.
    pub(super) fn advance_time_at(&mut self, index: u64, time_ms: u64) {
        let due: Vec<Bytes> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= time_ms.max(self.now_ms))
            .map(|(_, k)| k.clone())
            .collect();
        self.advance_log_time(time_ms);
        for k in due {
            self.changed(&k, index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{parse, Command};
    use crate::frame::{Frame, Limits};
    use crate::store::{encode_reads, encode_writes};
    use raft_node::StateMachine;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn frame(out: &[u8]) -> Frame {
        let (f, used) = Frame::parse(out, &Limits::default()).expect("one frame");
        assert_eq!(used, out.len(), "one reply");
        f
    }

    fn op(line: &str) -> TxOp {
        let args: Vec<Bytes> = line.split(' ').map(b).collect();
        match parse(&args) {
            Command::Write(w) => TxOp::Write(w),
            Command::Read(r) => TxOp::Read(r),
            Command::Invalid(e) => TxOp::Reply(Frame::Error(e).to_bytes()),
            other => panic!("{line}: {other:?}"),
        }
    }

    /// Applies one command at `index`, as the server would.
    fn run(s: &mut KvStore, index: u64, line: &str) -> Frame {
        match op(line) {
            TxOp::Write(w) => frame(&s.apply(index, &encode_writes(&[w]))),
            TxOp::Read(r) => frame(&s.query(&encode_reads(&[r]))),
            TxOp::Reply(r) => frame(&r),
        }
    }

    fn exec(s: &mut KvStore, index: u64, watches: &[(&str, u64)], lines: &[&str]) -> Frame {
        let write = Write::Exec {
            watches: watches.iter().map(|(k, v)| (b(k), *v)).collect(),
            ops: lines.iter().map(|l| op(l)).collect(),
        };
        frame(&s.apply(index, &encode_writes(&[write])))
    }

    fn version(s: &KvStore, key: &str) -> u64 {
        match frame(&s.query(&encode_reads(&[Read::Versions { keys: vec![b(key)] }]))) {
            Frame::Array(v) => match v[..] {
                [Frame::Integer(n)] => n as u64,
                _ => panic!("{v:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(b(s))
    }

    #[test]
    fn exec_runs_every_command_in_order_and_reads_see_earlier_writes() {
        let mut s = KvStore::new();
        let reply = exec(
            &mut s,
            3,
            &[],
            &[
                "SET a 1",
                "GET a",
                "INCR a",
                "SET b x",
                "INCR b",
                "SET c v NX XX",
                "MGET a b c",
            ],
        );
        assert_eq!(
            reply,
            Frame::Array(vec![
                Frame::Simple("OK".into()),
                bulk("1"),
                Frame::Integer(2),
                Frame::Simple("OK".into()),
                Frame::Error("ERR value is not an integer or out of range".into()),
                Frame::Error("ERR syntax error".into()),
                Frame::Array(vec![bulk("2"), bulk("x"), Frame::Null]),
            ])
        );
        assert_eq!(exec(&mut s, 4, &[], &[]), Frame::Array(vec![]));
        assert_eq!(version(&s, "a"), 3);
        assert_eq!(version(&s, "b"), 3);
        // The failed INCR and SET changed nothing; c never existed.
        assert_eq!(version(&s, "c"), 0);
    }

    #[test]
    fn exec_runs_only_if_no_watched_key_changed() {
        let mut s = KvStore::new();
        run(&mut s, 1, "SET k 1");
        let v = version(&s, "k");
        assert_eq!(v, 1);
        let absent = version(&s, "nope");
        // Writes that change nothing leave the version alone.
        for (i, line) in [
            "SET k 2 NX",
            "SET nope 1 XX",
            "DEL nope",
            "EXPIRE nope 10",
            "PERSIST k",
            "GETDEL nope",
            "SETRANGE k 3 ",
            "MSETNX k 1 other 2",
            "CAS k 9 10",
            "INCRBYFLOAT k x",
        ]
        .iter()
        .enumerate()
        {
            run(&mut s, 2 + i as u64, line);
            assert_eq!(version(&s, "k"), v, "{line}");
            assert_eq!(version(&s, "nope"), absent, "{line}");
        }
        let ok = Frame::Array(vec![Frame::Integer(2)]);
        assert_eq!(
            exec(&mut s, 20, &[("k", v), ("nope", absent)], &["INCR k"]),
            ok
        );
        // Its own EXEC changed k.
        assert_eq!(exec(&mut s, 21, &[("k", v)], &["INCR k"]), Frame::NullArray);
        assert_eq!(run(&mut s, 22, "GET k"), bulk("2"));
        // A watched key created, changed, deleted, given a time to live...
        for (i, line) in [
            "SET nope 1",
            "DEL k",
            "SET k 5",
            "EXPIRE k 100",
            "PERSIST k",
            "SET nope 2",
        ]
        .iter()
        .enumerate()
        {
            let index = 30 + 2 * i as u64;
            let watched: Vec<(&str, u64)> =
                ["k", "nope"].iter().map(|k| (*k, version(&s, k))).collect();
            run(&mut s, index, line);
            assert_eq!(
                exec(&mut s, index + 1, &watched, &["SET w 1"]),
                Frame::NullArray,
                "{line}"
            );
        }
        // FLUSHDB changes the keys it removes, not absent ones.
        let (k, gone) = (version(&s, "k"), version(&s, "gone"));
        run(&mut s, 50, "FLUSHDB");
        assert_eq!(version(&s, "k"), 50);
        assert_eq!(version(&s, "gone"), gone);
        assert_ne!(k, 50);
    }

    #[test]
    fn expiry_changes_the_version_and_snapshots_keep_versions() {
        let mut s = KvStore::new();
        s.advance_time(1, 1_000);
        run(&mut s, 2, "SET t 1 PX 50");
        run(&mut s, 3, "SET u 1");
        assert_eq!(version(&s, "t"), 2);
        s.advance_time(4, 1_049);
        assert_eq!(version(&s, "t"), 2);
        s.advance_time(5, 1_050);
        assert_eq!(version(&s, "t"), 5);
        assert_eq!(run(&mut s, 6, "GET t"), Frame::Null);
        // Snapshots carry the versions.
        let snap = s.snapshot();
        let mut restored = KvStore::new();
        restored.restore(snap.clone()).unwrap();
        assert_eq!(restored, s);
        assert_eq!(version(&restored, "t"), 5);
        assert_eq!(version(&restored, "u"), 3);
        // A version 3 snapshot (no versions) still loads: floor 0.
        let mut old = KvStore::new();
        run(&mut old, 1, "SET a 1");
        let mut loaded = KvStore::new();
        loaded.restore(Bytes::from(old.snapshot_v3())).unwrap();
        assert_eq!(run(&mut loaded, 2, "GET a"), bulk("1"));
        assert_eq!(version(&loaded, "a"), 0);
        // A version 4 snapshot (strings only, with versions) keeps them.
        let mut loaded = KvStore::new();
        loaded.restore(Bytes::from(s.snapshot_v4())).unwrap();
        assert_eq!(loaded, s);
        assert_eq!(version(&loaded, "t"), 5);
        assert_eq!(version(&loaded, "u"), 3);
        // A corrupt versions part is refused with a reason.
        let mut bad = snap.to_vec();
        let at = bad.len() - 4 - s.versions.snapshot_part_len() + 8;
        bad[at] = 0xff;
        let n = bad.len() - 4;
        let crc = crc32c::crc32c(&bad[..n]);
        bad[n..].copy_from_slice(&crc.to_le_bytes());
        let e = KvStore::new().restore(Bytes::from(bad)).unwrap_err();
        assert!(e.to_string().contains("key versions"), "{e}");
    }

    #[test]
    fn typed_writes_change_the_versions_of_the_keys_they_really_change() {
        let mut s = KvStore::new();
        let mut index = 0;
        // Runs `line` at the next index; `changed` are the keys whose
        // version must become that index, every other key of `keys` must
        // keep its version.
        let mut check = |s: &mut KvStore, line: &str, changed: &[&str]| {
            let keys = ["h", "s", "l", "m", "d", "x"];
            let before: Vec<u64> = keys.iter().map(|k| version(s, k)).collect();
            index += 1;
            run(s, index, line);
            for (k, was) in keys.iter().zip(before) {
                let want = if changed.contains(k) { index } else { was };
                assert_eq!(version(s, k), want, "{line}: {k}");
            }
        };
        check(&mut s, "HSET h f 1", &["h"]);
        check(&mut s, "HSET h f 1", &["h"]); // set again, as Redis signals
        check(&mut s, "HSETNX h f 2", &[]);
        check(&mut s, "HSETNX h g 2", &["h"]);
        check(&mut s, "HDEL h nope", &[]);
        check(&mut s, "HINCRBY h f 3", &["h"]);
        check(&mut s, "HINCRBY h f x", &[]);
        check(&mut s, "HINCRBYFLOAT h f 0.5", &["h"]);
        check(&mut s, "HINCRBYFLOAT x f 0.5", &["x"]);
        check(&mut s, "HRANDFIELD h 2", &[]);
        check(&mut s, "HGET h f", &[]);
        check(&mut s, "HDEL h f g", &["h"]); // emptied: removed
        assert_eq!(run(&mut s, 99, "EXISTS h"), Frame::Integer(0));
        check(&mut s, "SADD s a b c", &["s"]);
        check(&mut s, "SADD s a", &[]);
        check(&mut s, "SREM s z", &[]);
        check(&mut s, "SREM s a", &["s"]);
        check(&mut s, "SRANDMEMBER s 5", &[]);
        check(&mut s, "SADD m b z", &["m"]);
        check(&mut s, "SINTERSTORE d s m", &["d"]);
        check(&mut s, "SDIFFSTORE d nope1 nope2", &["d"]); // emptied: removed
        check(&mut s, "SDIFFSTORE d nope1 nope2", &[]); // absent and stays so
        check(&mut s, "SUNIONSTORE d s x", &[]); // WRONGTYPE: x is a hash
        check(&mut s, "SPOP s 0", &[]);
        check(&mut s, "SPOP nope", &[]);
        check(&mut s, "SPOP s", &["s"]);
        check(&mut s, "SPOP s 5", &["s"]);
        check(&mut s, "LPUSH s e", &["s"]); // gone: a new list now
        check(&mut s, "RPUSH l a b c b", &["l"]);
        check(&mut s, "LSET l 0 z", &["l"]);
        check(&mut s, "LSET l 9 z", &[]);
        check(&mut s, "LREM l 0 nope", &[]);
        check(&mut s, "LREM l 1 b", &["l"]);
        check(&mut s, "LTRIM l 0 -1", &[]);
        check(&mut s, "LTRIM l 1 -1", &["l"]);
        check(&mut s, "LPOP l 0", &[]);
        check(&mut s, "LMOVE l d LEFT RIGHT", &["l", "d"]);
        check(&mut s, "LMOVE nope d LEFT RIGHT", &[]);
        check(&mut s, "LMOVE l x LEFT RIGHT", &[]); // WRONGTYPE
        check(&mut s, "RPOP l", &["l"]); // emptied: removed
        check(&mut s, "LPUSH x e", &[]); // WRONGTYPE
        check(&mut s, "RENAME nope m", &[]);
        check(&mut s, "RENAMENX x d", &[]); // d exists
        check(&mut s, "RENAME x x", &[]);
        check(&mut s, "COPY x m", &[]); // m exists
        check(&mut s, "COPY nope h", &[]);
        check(&mut s, "COPY x h", &["h"]);
        check(&mut s, "COPY x h REPLACE", &["h"]);
        check(&mut s, "RENAME h s", &["h", "s"]);
        check(&mut s, "RENAMENX s l", &["s", "l"]);
        // Inside EXEC too, at the EXEC's index.
        let watched = [("d", version(&s, "d")), ("m", version(&s, "m"))];
        assert_eq!(
            exec(&mut s, 200, &watched, &["RPOP d", "SREM m b"]),
            Frame::Array(vec![bulk("c"), Frame::Integer(1)])
        );
        assert_eq!((version(&s, "d"), version(&s, "m")), (200, 200));
        assert_eq!(exec(&mut s, 201, &watched, &["SCARD m"]), Frame::NullArray);
        // WRONGTYPE is a runtime error in the array, the others still run,
        // and it changes nothing.
        let wrong = || Frame::Error(super::super::WRONGTYPE.into());
        let m = version(&s, "m");
        assert_eq!(
            exec(
                &mut s,
                202,
                &[],
                &[
                    "GET m",
                    "GETRANGE m 0 1",
                    "INCRBYFLOAT m 1",
                    "SETRANGE m 0 x",
                    "GETDEL m",
                    "HSET m f v",
                    "LPUSH m e",
                    "SCARD m"
                ]
            ),
            Frame::Array(vec![
                wrong(),
                wrong(),
                wrong(),
                wrong(),
                wrong(),
                wrong(),
                wrong(),
                Frame::Integer(1)
            ])
        );
        assert_eq!(version(&s, "m"), m);
    }

    #[test]
    fn random_picks_in_one_exec_are_seeded_apart_and_alike_on_every_node() {
        let fill = |s: &mut KvStore| {
            let members: Vec<String> = (0..64).map(|i| format!("m{i}")).collect();
            run(s, 1, &format!("SADD s {}", members.join(" ")));
        };
        let (mut a, mut b) = (KvStore::new(), KvStore::new());
        fill(&mut a);
        fill(&mut b);
        let lines = ["SRANDMEMBER s 8", "SRANDMEMBER s 8", "SPOP s 4", "SPOP s 4"];
        let ra = exec(&mut a, 2, &[], &lines);
        assert_eq!(ra, exec(&mut b, 2, &[], &lines));
        assert_eq!(a, b);
        let Frame::Array(items) = ra else {
            panic!("{ra:?}")
        };
        assert_ne!(items[0], items[1], "two picks of one EXEC differ");
        assert_eq!(run(&mut a, 3, "SCARD s"), Frame::Integer(56));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_upward() {
        let mut v = Versions::default();
        for i in 1..=(MAX_VERSIONS as u64 + 10) {
            v.bump(format!("k{i}").as_bytes(), i);
            v.bump(b"hot", i);
        }
        assert!(v.by_key.len() <= MAX_VERSIONS);
        assert!(v.order.len() <= 2 * MAX_VERSIONS + 1024);
        // Forgotten keys read as changed at the floor, never earlier.
        assert!(v.floor >= 10);
        assert_eq!(v.get(b"k1"), v.floor);
        assert_eq!(v.get(b"hot"), MAX_VERSIONS as u64 + 10);
        assert_eq!(v.get(b"never"), v.floor);
        // One key changed many times in one entry is one entry in `order`
        // (a pipelined MSET of the same key must not make `bump` costly).
        let mut v = Versions::default();
        for _ in 0..100_000 {
            v.bump(b"same", 7);
        }
        assert_eq!(v.order.len(), 1);
        // Keys evicted from one entry leave the others at the floor: a
        // snapshot of that state loads.
        let mut s = KvStore::new();
        let pairs: Vec<(Bytes, Bytes)> = (0..MAX_VERSIONS + 5)
            .map(|i| (b(&format!("k{i}")), b("v")))
            .collect();
        s.apply(3, &encode_writes(&[Write::MSet { pairs }]));
        assert_eq!(s.versions.floor, 3);
        let mut t = KvStore::new();
        t.restore(s.snapshot()).unwrap();
        assert_eq!(t, s);
    }

    #[test]
    fn an_exec_inside_an_exec_is_not_an_entry() {
        let inner = Write::Exec {
            watches: vec![],
            ops: vec![],
        };
        let outer = Write::Exec {
            watches: vec![(b("k"), 1)],
            ops: vec![TxOp::Write(inner)],
        };
        let mut s = KvStore::new();
        let reply = frame(&s.apply(1, &encode_writes(&[outer])));
        assert!(
            matches!(&reply, Frame::Error(e) if e.contains("an EXEC inside an EXEC")),
            "{reply:?}"
        );
        // Cut off anywhere: an error, never a panic.
        let whole = encode_writes(&[Write::Exec {
            watches: vec![(b("k"), 1)],
            ops: vec![
                op("SET a 1"),
                TxOp::Read(Read::Get { key: b("a") }),
                TxOp::Reply(b("+PONG\r\n")),
            ],
        }]);
        for n in 2..whole.len() {
            let reply = frame(&s.apply(1, &whole[..n]));
            assert!(matches!(reply, Frame::Error(_)), "{n}");
        }
    }
}
