//! Keys' times to live, decided by the log's time.
//!
//! No node reads its own clock when it applies an entry. The leader stamps
//! "time entries" with its wall clock ([`raft_node::StateMachine::advance_time`]);
//! the store keeps the last one as its "now" (`KvStore::now_ms`), computes
//! relative times to live (`SET EX`, `EXPIRE`...) from it, and when the time
//! moves on removes every key whose deadline has come, at the same log
//! position on every node. A key therefore exists or not by log time alone:
//! a read never sees a key whose deadline has passed in log time, and every
//! replica agrees on which keys exist.
//!
//! The clock rules that follow:
//! - The log's time never goes back: a leader whose clock is behind the
//!   log's time does not move it (the node passes only increasing times).
//! - A leader whose clock runs ahead expires keys early (by as much as it
//!   runs ahead); a leader whose clock runs behind expires them late. A
//!   leader change to a node whose clock is behind makes keys live longer,
//!   never shorter, since the log's time does not go back.
//! - While the cluster is idle the log's time stands still, but the leader
//!   proposes a time entry once its clock passes the next deadline
//!   ([`raft_node::StateMachine::next_deadline_ms`]), so a key is removed
//!   about when it is due without any client write.
//! - TTL and PTTL answer the time left from the later of the log's time and
//!   the answering node's clock (the log's time stands still while nothing
//!   is written), never below 0 while the key exists; EXPIRETIME answers
//!   the deadline itself.
//!
//! Deadlines are kept twice: by key (for TTL, PERSIST and the commands
//! that clear or keep a time to live) and ordered by time, so that the
//! keys due at a time are found in O(due keys), in the same order on every
//! node. Every deadline is later than `now_ms` (a deadline that is not is
//! a key removed at once), and every key with a deadline exists.

use std::collections::{BTreeSet, HashMap};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::{key_hash, parse_i64, remove, KvStore};
use crate::frame::{put_bulk, put_error, put_int, put_null};

/// The command a relative `SET` time comes from (named in its error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetName {
    /// `SET ... EX|PX`.
    #[default]
    Set,
    /// `SETEX`.
    SetEx,
    /// `PSETEX`.
    PSetEx,
}

impl SetName {
    /// The command's name (in its errors).
    pub fn name(self) -> &'static str {
        match self {
            SetName::Set => "set",
            SetName::SetEx => "setex",
            SetName::PSetEx => "psetex",
        }
    }
}

/// What a `SET` does to the key's time to live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetTtl {
    /// None after it: a plain SET clears a time to live.
    #[default]
    Clear,
    /// `KEEPTTL`: the key keeps its time to live (none if it had none).
    Keep,
    /// `EX`/`PX` (`SETEX`, `PSETEX`): this many milliseconds (at least 1)
    /// after the log's time when the entry is applied. A time past
    /// `i64::MAX` ms since the epoch is refused then, as Redis refuses it.
    In {
        /// The milliseconds to live.
        ms: u64,
        /// The command, named in the error.
        name: SetName,
    },
    /// `EXAT`/`PXAT`: at this time (milliseconds since the Unix epoch, at
    /// least 1). A time not after the log's time removes the key at once.
    At(u64),
}

/// The command of an `EXPIRE`-like write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpireCommand {
    /// `EXPIRE key seconds`.
    Expire,
    /// `PEXPIRE key milliseconds`.
    PExpire,
    /// `EXPIREAT key unix-seconds`.
    ExpireAt,
    /// `PEXPIREAT key unix-milliseconds`.
    PExpireAt,
}

impl ExpireCommand {
    /// The command's name (in its errors).
    pub fn name(self) -> &'static str {
        match self {
            ExpireCommand::Expire => "expire",
            ExpireCommand::PExpire => "pexpire",
            ExpireCommand::ExpireAt => "expireat",
            ExpireCommand::PExpireAt => "pexpireat",
        }
    }

    /// Whether its time counts from now (EXPIRE, PEXPIRE) rather than from
    /// the epoch.
    pub fn is_relative(self) -> bool {
        matches!(self, ExpireCommand::Expire | ExpireCommand::PExpire)
    }

    /// Whether its time is in seconds.
    pub fn in_seconds(self) -> bool {
        matches!(self, ExpireCommand::Expire | ExpireCommand::ExpireAt)
    }
}

/// When an `EXPIRE`-like write sets the time (its NX, XX, GT or LT).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpireCondition {
    /// Always.
    #[default]
    Always,
    /// `NX`: only if the key has no time to live.
    IfNone,
    /// `XX`: only if the key has one.
    IfSome,
    /// `GT`: only if the new time is later (no time to live counts as
    /// infinite, so never then).
    IfLater,
    /// `LT`: only if the new time is earlier (always when it has none).
    IfEarlier,
    /// `XX LT`: only if the key has a time and the new one is earlier.
    IfSomeEarlier,
}

/// A time given to GETEX, checked when the entry is applied (as Redis
/// checks it only once it found the key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GetExTime<B = Bytes> {
    /// EX or EXAT (seconds) rather than PX or PXAT.
    pub seconds: bool,
    /// EXAT or PXAT (since the epoch) rather than EX or PX.
    pub absolute: bool,
    /// The argument as the client sent it.
    pub time: B,
}

/// What `GETEX` does to the key's time to live.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GetExTtl<B = Bytes> {
    /// `PERSIST`: removes it.
    Persist,
    /// `EX`, `PX`, `EXAT`, `PXAT`: sets it.
    Set(GetExTime<B>),
}

/// Which time a TTL-like read answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TtlKind {
    /// `TTL`: seconds left (rounded).
    Ttl,
    /// `PTTL`: milliseconds left.
    PTtl,
    /// `EXPIRETIME`: the deadline in Unix seconds (rounded).
    ExpireTime,
    /// `PEXPIRETIME`: the deadline in Unix milliseconds.
    PExpireTime,
}

/// `ERR invalid expire time in '<name>' command`, as Redis words it.
pub fn invalid_expire_time(name: &str) -> String {
    format!("ERR invalid expire time in '{name}' command")
}

// ---------------------------------------------------------------------------
// The deadlines
// ---------------------------------------------------------------------------

/// Every key's deadline (milliseconds since the Unix epoch), by key and by
/// time. Invariants: the two hold the same pairs; every key here exists in
/// the store; every deadline is later than the store's `now_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Deadlines {
    by_key: HashMap<Bytes, u64>,
    by_time: BTreeSet<(u64, Bytes)>,
}

impl Deadlines {
    /// The key's deadline, if it has one.
    pub(super) fn get(&self, key: &[u8]) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// Sets (or moves) the key's deadline.
    pub(super) fn set(&mut self, key: &[u8], at_ms: u64) {
        match self.by_key.get_mut(key) {
            Some(old) => {
                let old_at = std::mem::replace(old, at_ms);
                if let Some((_, k)) = self.by_time.take(&(old_at, Bytes::copy_from_slice(key))) {
                    self.by_time.insert((at_ms, k));
                }
            }
            None => {
                let k = Bytes::copy_from_slice(key);
                self.by_key.insert(k.clone(), at_ms);
                self.by_time.insert((at_ms, k));
            }
        }
    }

    /// Removes the key's deadline; true if it had one.
    pub(super) fn clear(&mut self, key: &[u8]) -> bool {
        if self.by_key.is_empty() {
            return false;
        }
        match self.by_key.remove_entry(key) {
            Some((k, at)) => {
                self.by_time.remove(&(at, k));
                true
            }
            None => false,
        }
    }

    /// Removes every deadline.
    pub(super) fn clear_all(&mut self) {
        self.by_key.clear();
        self.by_time.clear();
    }

    /// The earliest deadline.
    pub(super) fn next_ms(&self) -> Option<u64> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest key whose deadline is at or before
    /// `now_ms`.
    pub(super) fn pop_due(&mut self, now_ms: u64) -> Option<Bytes> {
        if self.next_ms()? > now_ms {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// The number of keys with a deadline.
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Every (deadline, key), earliest first (then by key).
    pub(super) fn iter(&self) -> impl Iterator<Item = &(u64, Bytes)> {
        self.by_time.iter()
    }
}

// ---------------------------------------------------------------------------
// Applying and answering
// ---------------------------------------------------------------------------

/// `now_ms` as Redis's signed milliseconds.
fn signed(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl KvStore {
    /// The log's time: the last time entry applied (0 before the first).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The number of keys with a time to live.
    pub fn volatile_len(&self) -> usize {
        self.deadlines.len()
    }

    /// The earliest deadline of any key.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.next_ms()
    }

    /// Moves the log's time to `time_ms` (never back) and removes every
    /// key whose deadline is at or before it, earliest first. Returns how
    /// many keys it removed.
    pub fn advance_log_time(&mut self, time_ms: u64) -> usize {
        self.now_ms = self.now_ms.max(time_ms);
        let mut n = 0;
        while let Some(key) = self.deadlines.pop_due(self.now_ms) {
            let gone = remove(&mut self.map, key_hash(&key), &key);
            debug_assert!(gone.is_some(), "a key with a deadline exists");
            if gone.is_some() {
                self.len -= 1;
                n += 1;
            }
        }
        n
    }

    /// The deadline of a SET that is about to set its key: `Ok(None)` for
    /// none or KEEPTTL, `Err` with the reply for a time out of range.
    pub(super) fn set_deadline(&self, ttl: SetTtl) -> Result<Option<u64>, String> {
        match ttl {
            SetTtl::Clear | SetTtl::Keep => Ok(None),
            SetTtl::At(at) => Ok(Some(at)),
            SetTtl::In { ms, name } => match self.now_ms.checked_add(ms) {
                Some(at) if at <= i64::MAX as u64 => Ok(Some(at)),
                _ => Err(invalid_expire_time(name.name())),
            },
        }
    }

    /// Gives a key that was just set the time to live its SET asked for:
    /// none (cleared), kept, or `deadline` (which, if already passed,
    /// removes the key).
    pub(super) fn settle_ttl(&mut self, key: &[u8], ttl: SetTtl, deadline: Option<u64>) {
        match (ttl, deadline) {
            (SetTtl::Keep, _) => {}
            (_, Some(at)) => self.expire_at(key, at),
            (_, None) => {
                self.deadlines.clear(key);
            }
        }
    }

    /// Sets an existing key's deadline; one not after the log's time
    /// removes the key.
    fn expire_at(&mut self, key: &[u8], at_ms: u64) {
        if at_ms <= self.now_ms {
            self.deadlines.clear(key);
            if remove(&mut self.map, key_hash(key), key).is_some() {
                self.len -= 1;
            }
        } else {
            self.deadlines.set(key, at_ms);
        }
    }

    /// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`: `when_ms` is the
    /// argument in milliseconds (converted from seconds when parsed).
    pub(super) fn write_expire(
        &mut self,
        key: &[u8],
        when_ms: i64,
        command: ExpireCommand,
        condition: ExpireCondition,
        out: &mut BytesMut,
    ) {
        let base = if command.is_relative() {
            signed(self.now_ms)
        } else {
            0
        };
        let Some(when) = when_ms.checked_add(base) else {
            put_error(out, &invalid_expire_time(command.name()));
            return;
        };
        if self.get(key).is_none() {
            put_int(out, 0);
            return;
        }
        let current = self.deadlines.get(key).map(signed);
        let refused = match condition {
            ExpireCondition::Always => false,
            ExpireCondition::IfNone => current.is_some(),
            ExpireCondition::IfSome => current.is_none(),
            ExpireCondition::IfLater => current.is_none_or(|c| when <= c),
            ExpireCondition::IfEarlier => current.is_some_and(|c| when >= c),
            ExpireCondition::IfSomeEarlier => current.is_none_or(|c| when >= c),
        };
        if refused {
            put_int(out, 0);
            return;
        }
        // A time before the epoch has passed too.
        self.expire_at(key, u64::try_from(when).unwrap_or(0));
        put_int(out, 1);
    }

    /// `PERSIST key`: 1 if it removed a time to live.
    pub(super) fn write_persist(&mut self, key: &[u8], out: &mut BytesMut) {
        put_int(out, i64::from(self.deadlines.clear(key)));
    }

    /// `GETEX key [EX|PX|EXAT|PXAT time | PERSIST]`: the value (null if
    /// absent, then nothing changes), after checking the time.
    pub(super) fn write_getex(&mut self, key: &[u8], ttl: GetExTtl<&[u8]>, out: &mut BytesMut) {
        let value = match self.get_str(key) {
            Ok(Some(v)) => v.clone(),
            Ok(None) => return put_null(out),
            Err(e) => return put_error(out, e),
        };
        let GetExTtl::Set(GetExTime {
            seconds,
            absolute,
            time,
        }) = ttl
        else {
            self.deadlines.clear(key);
            super::reply::bulk(out, &value);
            return;
        };
        let Some(t) = parse_i64(time) else {
            put_error(out, "ERR value is not an integer or out of range");
            return;
        };
        let max = if seconds { i64::MAX / 1000 } else { i64::MAX };
        if t <= 0 || t > max {
            put_error(out, &invalid_expire_time("getex"));
            return;
        }
        let ms = if seconds { t * 1000 } else { t };
        let at = if absolute {
            Some(ms)
        } else {
            ms.checked_add(signed(self.now_ms))
        };
        let Some(at) = at else {
            put_error(out, &invalid_expire_time("getex"));
            return;
        };
        put_bulk(out, &value);
        self.expire_at(key, at as u64);
    }

    /// `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`: -2 without the key, -1
    /// without a time to live. The time left counts from the later of the
    /// log's time and `wall_ms` (this node's clock).
    pub(super) fn read_ttl(&self, key: &[u8], kind: TtlKind, wall_ms: u64, out: &mut BytesMut) {
        if self.get(key).is_none() {
            put_int(out, -2);
            return;
        }
        let Some(at) = self.deadlines.get(key) else {
            put_int(out, -1);
            return;
        };
        let left = signed(at.saturating_sub(self.now_ms.max(wall_ms)));
        let at = signed(at);
        put_int(
            out,
            match kind {
                TtlKind::Ttl => (left + 500) / 1000,
                TtlKind::PTtl => left,
                // Rounded without overflow, as Redis answers for the
                // largest deadline too.
                TtlKind::ExpireTime => ((i128::from(at) + 500) / 1000) as i64,
                TtlKind::PExpireTime => at,
            },
        );
    }

    /// Checks the invariants of the deadlines (for tests).
    #[cfg(test)]
    pub(super) fn check_deadlines(&self) {
        assert_eq!(self.deadlines.by_key.len(), self.deadlines.by_time.len());
        for (at, k) in self.deadlines.iter() {
            assert_eq!(self.deadlines.get(k), Some(*at));
            assert!(*at > self.now_ms, "a deadline passed but its key is here");
            assert!(self.get(k).is_some(), "a key with a deadline exists");
        }
    }
}

/// Writes the expiry part of a snapshot: `now_ms`, the number of keys with
/// a deadline, then each key and its deadline, earliest first.
pub(super) fn put_snapshot_part(b: &mut BytesMut, now_ms: u64, deadlines: &Deadlines) {
    b.put_u64_le(now_ms);
    b.put_u64_le(deadlines.len() as u64);
    for (at, k) in deadlines.iter() {
        super::batch::put_str(b, k);
        b.put_u64_le(*at);
    }
}

/// The bytes [`put_snapshot_part`] writes.
pub(super) fn snapshot_part_len(deadlines: &Deadlines) -> usize {
    16 + deadlines.iter().map(|(_, k)| 12 + k.len()).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::super::{encode_reads, encode_writes, WallClock};
    use super::*;
    use crate::cmd::{parse, Command};
    use crate::frame::{Frame, Limits};
    use raft_node::StateMachine;

    /// The time the tests start at (ms since the epoch).
    const T0: u64 = 1_700_000_000_000;

    /// A store at log time `T0` whose clock (for TTL) reads `T0` too.
    fn store() -> KvStore {
        let mut s = KvStore::new();
        s.advance_log_time(T0);
        s.wall_clock = WallClock(Some(T0));
        s
    }

    fn frame(out: &[u8]) -> Frame {
        let (f, used) = Frame::parse(out, &Limits::default()).expect("one frame");
        assert_eq!(used, out.len(), "one reply");
        f
    }

    /// Runs one command as the server would: parsed, then applied through
    /// an entry or answered by a query.
    fn run(s: &mut KvStore, line: &str) -> Frame {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        match parse(&args) {
            Command::Write(w) => frame(&s.apply(1, &encode_writes(&[w]))),
            Command::Read(r) => frame(&s.query(&encode_reads(&[r]))),
            Command::Invalid(e) | Command::Refused(e) => Frame::Error(e),
            other => panic!("{line}: {other:?}"),
        }
    }

    fn int(n: i64) -> Frame {
        Frame::Integer(n)
    }

    fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn err(s: &str) -> Frame {
        Frame::Error(s.into())
    }

    /// Runs each `command => reply` line, checking the store's invariants
    /// after each.
    fn script(s: &mut KvStore, lines: &[(&str, Frame)]) {
        for (line, want) in lines {
            assert_eq!(&run(s, line), want, "{line}");
            s.check_deadlines();
        }
    }

    #[test]
    fn set_with_a_time_and_the_ttl_reads() {
        let mut s = store();
        let at = T0 + 10_000;
        script(
            &mut s,
            &[
                ("SET k v EX 10", ok()),
                ("TTL k", int(10)),
                ("PTTL k", int(10_000)),
                ("EXPIRETIME k", int((at / 1000) as i64)),
                ("PEXPIRETIME k", int(at as i64)),
                ("TTL nokey", int(-2)),
                ("PEXPIRETIME nokey", int(-2)),
                ("SET p v", ok()),
                ("TTL p", int(-1)),
                ("PEXPIRETIME p", int(-1)),
                ("SET k v PX 1500", ok()),
                ("TTL k", int(2)), // 1.5 s rounds up, as in Redis
                ("SET k v PX 1499", ok()),
                ("TTL k", int(1)),
                ("SET k v PXAT 1700000005000", ok()),
                ("PTTL k", int(5000)),
                ("SET k v EXAT 1700000006", ok()),
                ("PTTL k", int(6000)),
                ("SETEX k 7 v", ok()),
                ("PTTL k", int(7000)),
                ("PSETEX k 8 v", ok()),
                ("PTTL k", int(8)),
            ],
        );
        // The time left counts from the later of the log's time and this
        // node's clock, and never goes below 0 while the key exists.
        s.wall_clock = WallClock(Some(T0 + 5));
        assert_eq!(run(&mut s, "PTTL k"), int(3));
        s.wall_clock = WallClock(Some(T0 + 60_000));
        assert_eq!(run(&mut s, "PTTL k"), int(0));
        assert_eq!(run(&mut s, "TTL k"), int(0));
        assert_eq!(run(&mut s, "GET k"), bulk("v"), "log time decides");
        s.wall_clock = WallClock(Some(1));
        assert_eq!(run(&mut s, "PTTL k"), int(8));
    }

    #[test]
    fn the_log_time_removes_exactly_the_due_keys() {
        let mut s = store();
        for (k, ms) in [("a", 2000), ("b", 3000), ("c", 3000), ("d", 4000)] {
            assert_eq!(run(&mut s, &format!("SET {k} v PX {ms}")), ok());
        }
        run(&mut s, "SET e forever");
        assert_eq!(s.next_deadline_ms(), Some(T0 + 2000));
        assert_eq!(s.advance_log_time(T0 + 1999), 0);
        assert_eq!(s.len(), 5);
        assert_eq!(s.advance_log_time(T0 + 3000), 3);
        s.check_deadlines();
        assert_eq!(s.len(), 2);
        for k in ["a", "b", "c"] {
            assert_eq!(run(&mut s, &format!("GET {k}")), Frame::Null);
            assert_eq!(run(&mut s, &format!("TTL {k}")), int(-2));
        }
        assert_eq!(run(&mut s, "PTTL d"), int(1000));
        assert_eq!(s.next_deadline_ms(), Some(T0 + 4000));
        // The log's time never goes back.
        assert_eq!(s.advance_log_time(T0), 0);
        assert_eq!(s.now_ms(), T0 + 3000);
        // The node's calls: the same.
        assert!(s.uses_log_time());
        assert_eq!(StateMachine::next_deadline_ms(&s), Some(T0 + 4000));
        StateMachine::advance_time(&mut s, 9, T0 + 3999);
        assert_eq!(s.len(), 2);
        StateMachine::advance_time(&mut s, 10, T0 + 4000);
        assert_eq!(s.len(), 1);
        assert_eq!(StateMachine::next_deadline_ms(&s), None);
        run(&mut s, "SET d v PX 10");
        assert_eq!(s.advance_log_time(u64::MAX), 1);
        assert_eq!(s.next_deadline_ms(), None);
        assert_eq!(run(&mut s, "GET e"), bulk("forever"));
        assert_eq!(s.volatile_len(), 0);
    }

    #[test]
    fn which_writes_keep_and_which_clear_a_time_to_live() {
        let mut s = store();
        script(
            &mut s,
            &[
                ("SET k 1 EX 100", ok()),
                ("INCR k", int(2)),
                ("INCRBY k 5", int(7)),
                ("DECR k", int(6)),
                ("APPEND k 0", int(2)),
                ("TTL k", int(100)),
                ("SET k v KEEPTTL", ok()),
                ("TTL k", int(100)),
                ("SET k v XX KEEPTTL GET", bulk("v")),
                ("TTL k", int(100)),
                ("SET k v NX EX 5", Frame::Null),
                ("TTL k", int(100)),
                ("SET k w", ok()),
                ("TTL k", int(-1)),
                ("SET new v KEEPTTL", ok()),
                ("TTL new", int(-1)),
                ("SET k v EX 100", ok()),
                ("GETSET k w", bulk("v")),
                ("TTL k", int(-1)),
                ("SET k v EX 100", ok()),
                ("SET j v EX 100", ok()),
                ("MSET k 1 x 2", ok()),
                ("TTL k", int(-1)),
                ("TTL j", int(100)),
                ("CAS j v w", int(1)),
                ("TTL j", int(-1)),
                ("SET j v EX 100", ok()),
                ("CAS j nope w", int(0)),
                ("TTL j", int(100)),
                ("DEL j", int(1)),
                ("SET j v", ok()),
                ("TTL j", int(-1)),
                ("SET j v EX 100", ok()),
                ("FLUSHDB", ok()),
                ("SET j v", ok()),
                ("TTL j", int(-1)),
            ],
        );
        assert_eq!(s.volatile_len(), 0);
    }

    #[test]
    fn set_times_are_checked_against_the_log_time() {
        let mut s = store();
        script(
            &mut s,
            &[
                ("SET k old", ok()),
                // Past the largest time once added to the log's time.
                (
                    "SET k v PX 9223372036854775807",
                    err("ERR invalid expire time in 'set' command"),
                ),
                (
                    "PSETEX k 9223372036854775807 v",
                    err("ERR invalid expire time in 'psetex' command"),
                ),
                (
                    "SETEX k 9223372036854775 v",
                    err("ERR invalid expire time in 'setex' command"),
                ),
                ("GET k", bulk("old")),
                // A deadline already passed: set, then removed at once.
                ("SET k v PXAT 1000 GET", bulk("old")),
                ("GET k", Frame::Null),
                ("SET k v EXAT 1", ok()),
                ("EXISTS k", int(0)),
                ("SET k v PXAT 1700000000000", ok()),
                ("EXISTS k", int(0)),
                ("SET k v PXAT 1700000000001", ok()),
                ("PTTL k", int(1)),
                ("SET k v PXAT 9223372036854775807", ok()),
                ("PEXPIRETIME k", int(i64::MAX)),
                ("EXPIRETIME k", int(i64::MAX / 1000 + 1)),
            ],
        );
    }

    #[test]
    fn expire_and_its_conditions() {
        let mut s = store();
        script(
            &mut s,
            &[
                ("EXPIRE nokey 10", int(0)),
                ("SET k v", ok()),
                ("EXPIRE k 10 XX", int(0)),
                ("EXPIRE k 10 GT", int(0)),
                ("EXPIRE k 10 NX", int(1)),
                ("EXPIRE k 20 NX", int(0)),
                ("TTL k", int(10)),
                ("EXPIRE k 20 XX", int(1)),
                ("EXPIRE k 15 GT", int(0)),
                ("EXPIRE k 20 GT", int(0)),
                ("EXPIRE k 30 GT", int(1)),
                ("EXPIRE k 40 LT", int(0)),
                ("EXPIRE k 30 LT", int(0)),
                ("EXPIRE k 25 LT XX", int(1)),
                ("TTL k", int(25)),
                ("PEXPIRE k 1234", int(1)),
                ("PTTL k", int(1234)),
                ("EXPIREAT k 1700000100", int(1)),
                ("PTTL k", int(100_000)),
                ("PEXPIREAT k 1700000000500", int(1)),
                ("PTTL k", int(500)),
                ("PERSIST k", int(1)),
                ("PERSIST k", int(0)),
                ("PERSIST nokey", int(0)),
                ("TTL k", int(-1)),
                // LT on a key without a time: no time is infinite.
                ("EXPIRE k 50 LT", int(1)),
                ("PERSIST k", int(1)),
                ("EXPIRE k 50 XX LT", int(0)),
                ("TTL k", int(-1)),
                // A time already passed removes the key, and replies 1.
                ("EXPIRE k 0", int(1)),
                ("EXISTS k", int(0)),
                ("SET k v", ok()),
                ("PEXPIRE k -5", int(1)),
                ("EXISTS k", int(0)),
                ("SET k v", ok()),
                ("EXPIREAT k 1700000000", int(1)),
                ("EXISTS k", int(0)),
                ("SET k v", ok()),
                ("PEXPIREAT k -9223372036854775808", int(1)),
                ("EXISTS k", int(0)),
                // Overflow once added to the log's time.
                (
                    "PEXPIRE nokey 9223372036854775807",
                    err("ERR invalid expire time in 'pexpire' command"),
                ),
                (
                    "EXPIRE nokey 9223372036854775",
                    err("ERR invalid expire time in 'expire' command"),
                ),
                ("PEXPIREAT nokey 9223372036854775807", int(0)),
            ],
        );
    }

    #[test]
    fn getex_reads_and_changes_the_time() {
        let mut s = store();
        script(
            &mut s,
            &[
                // No key: null, whatever the time says.
                ("GETEX nokey EX x", Frame::Null),
                ("GETEX nokey PX 0", Frame::Null),
                ("SET k v", ok()),
                ("GETEX k", bulk("v")),
                ("GETEX k EX 10", bulk("v")),
                ("TTL k", int(10)),
                ("GETEX k PX 100", bulk("v")),
                ("PTTL k", int(100)),
                ("GETEX k EXAT 1700000020", bulk("v")),
                ("TTL k", int(20)),
                ("GETEX k PXAT 1700000000300", bulk("v")),
                ("PTTL k", int(300)),
                ("GETEX k PERSIST", bulk("v")),
                ("TTL k", int(-1)),
                (
                    "GETEX k EX x",
                    err("ERR value is not an integer or out of range"),
                ),
                (
                    "GETEX k EX 0",
                    err("ERR invalid expire time in 'getex' command"),
                ),
                (
                    "GETEX k EX 9223372036854776",
                    err("ERR invalid expire time in 'getex' command"),
                ),
                (
                    "GETEX k PX 9223372036854775807",
                    err("ERR invalid expire time in 'getex' command"),
                ),
                ("GETEX k PXAT 9223372036854775807", bulk("v")),
                ("PEXPIRETIME k", int(i64::MAX)),
                (
                    "GETEX k EX -1",
                    err("ERR invalid expire time in 'getex' command"),
                ),
                // A deadline already passed: the value, then no key.
                ("GETEX k PXAT 1000", bulk("v")),
                ("EXISTS k", int(0)),
            ],
        );
    }

    #[test]
    fn snapshots_keep_the_log_time_and_every_deadline() {
        let mut s = store();
        for i in 0..50 {
            run(&mut s, &format!("SET k{i} v PX {}", 1000 + (i % 7) * 100));
            run(&mut s, &format!("SET p{i} v"));
        }
        let snap = s.snapshot();
        let mut t = KvStore::new();
        t.restore(snap.clone()).unwrap();
        assert_eq!(t, s);
        assert_eq!(t.now_ms(), T0);
        assert_eq!(t.volatile_len(), 50);
        assert_eq!(t.snapshot(), snap);
        t.check_deadlines();
        // Both expire the same keys at the same time.
        assert_eq!(s.advance_log_time(T0 + 1300), t.advance_log_time(T0 + 1300));
        assert_eq!(s, t);
        assert_eq!(s.len(), 50 + 50 - 29);
        // A version 2 snapshot (before times) reads as time 0, no deadlines.
        let mut u = KvStore::new();
        run(&mut u, "SET a 1");
        u.versions = super::super::tx::Versions::default();
        let v3 = u.snapshot_v3();
        let mut v2 = v3[..v3.len() - 4 - 16].to_vec();
        v2[4] = 2;
        let crc = crc32c::crc32c(&v2);
        v2.extend_from_slice(&crc.to_le_bytes());
        let mut w = store();
        w.restore(Bytes::from(v2)).unwrap();
        assert_eq!(w, u);
        assert_eq!(w.now_ms(), 0);
    }

    #[test]
    fn snapshots_with_bad_deadlines_are_refused() {
        let mut s = store();
        run(&mut s, "SET abcdefgh v PX 10");
        // One deadline: the key's length, the key, the time.
        let dl = 4 + 8 + 8;
        // As version 3 (no key versions after the deadlines).
        let snap = s.snapshot_v3();
        let body = &snap[..snap.len() - 4];
        let reseal = |body: Vec<u8>| {
            let mut body = body;
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            Bytes::from(body)
        };
        let says = |bytes: Bytes, what: &str| {
            let mut t = KvStore::new();
            let e = t.restore(bytes).unwrap_err().to_string();
            assert!(e.contains(what), "{e} should say {what:?}");
            assert_eq!(t, KvStore::new());
        };
        // The deadline's key made one the snapshot does not hold.
        let mut v = body.to_vec();
        let at = v.len() - 8 - 1;
        v[at] = b'b';
        says(reseal(v), "does not hold");
        // A deadline not after the snapshot's time.
        let mut v = body.to_vec();
        let n = v.len();
        v[n - 8..].copy_from_slice(&T0.to_le_bytes());
        says(reseal(v), "not after its time");
        let mut v = body.to_vec();
        v.truncate(v.len() - 3);
        says(reseal(v), "cut off in deadline 1 of 1");
        let mut v = body.to_vec();
        v.truncate(v.len() - dl - 8);
        says(reseal(v), "cut off in its time");
        let mut v = body.to_vec();
        let n = v.len();
        v[n - dl - 8..n - dl].copy_from_slice(&1000u64.to_le_bytes());
        says(reseal(v), "claims 1000 deadlines");
    }

    #[test]
    fn replicas_given_the_same_entries_and_times_agree() {
        // xorshift64*, seeded.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        };
        let commands = [
            "SET k{} v PX {}",
            "SET k{} v",
            "SET k{} v KEEPTTL",
            "PEXPIRE k{} {}",
            "PEXPIRE k{} {} GT",
            "PEXPIREAT k{} 1700000000{}",
            "GETEX k{} PX {}",
            "PERSIST k{}",
            "DEL k{}",
            "INCR k{}",
            "SETEX k{} {} v",
        ];
        let mut a = store();
        let mut b = KvStore::new();
        b.advance_log_time(T0);
        let mut time = T0;
        for step in 0..3000 {
            if next(5) == 0 {
                time += next(400);
                assert_eq!(a.advance_log_time(time), b.advance_log_time(time));
            }
            let c = commands[next(commands.len() as u64) as usize];
            let line = c.replacen("{}", &next(20).to_string(), 1).replacen(
                "{}",
                &(1 + next(2000)).to_string(),
                1,
            );
            assert_eq!(run(&mut a, &line), run(&mut b, &line), "{line}");
            if step == 1500 {
                b = KvStore::new();
                b.restore(a.snapshot()).unwrap();
            }
            a.check_deadlines();
        }
        assert_eq!(a, b);
        assert_eq!(a.snapshot(), b.snapshot());
    }
}
