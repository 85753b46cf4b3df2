//! Client sessions: exactly-once commands (Raft dissertation, section 6.3).
//!
//! A session is registered through the log; its id is the index of the
//! entry that registered it, so every node knows the same sessions. Each
//! command of a session carries a sequence number, and the layer that
//! applies entries remembers, per session, the reply of every command it
//! applied whose caller may still be waiting: a command that reaches the
//! log twice (a retry after the first attempt's answer was lost) is applied
//! once, and the duplicate is answered with the first reply.
//!
//! The table is bounded (sessions, replies per session) and expires idle
//! sessions by log time: the leader stamps its wall clock into every entry
//! that registers a session or carries a numbered command, and the table's
//! clock is the largest stamp applied so far. Nothing reads a local clock,
//! so every node, and every restart from a snapshot (the table travels in
//! snapshots), drops and keeps the same sessions. A leader whose clock
//! jumps forward expires idle sessions early: their next command is refused
//! with [`SessionRefusal::Expired`] and never applied, and the node
//! registers a new session. A clock that jumps backward stops the table's
//! clock until it catches up (the table's clock never goes back).
//!
//! Entries of the log: a command sent without a session is stored as
//! given, unless it starts with one of the four tag bytes below (then it
//! is stored behind [`PLAIN`], one byte longer), so that commands without a
//! session cost nothing and logs written before sessions existed read the
//! same. The fourth tag, [`TIME`], marks the log's clock: entries a leader
//! proposes for a state machine that reads the log's time
//! ([`crate::StateMachine::uses_log_time`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_core::LogIndex;

use crate::state_machine::RestoreError;

/// Tag of a command without a session whose first byte is a tag byte.
pub(crate) const PLAIN: u8 = 0xE0;
/// Tag of an entry registering a session: `[REGISTER][time u64]`.
pub(crate) const REGISTER: u8 = 0xE1;
/// Tag of a numbered command:
/// `[NUMBERED][time u64][session u64][seq u64][floor u64][command]`.
pub(crate) const NUMBERED: u8 = 0xE2;
/// The length of a numbered command's header.
pub(crate) const NUMBERED_HEADER: usize = 1 + 4 * 8;
/// Tag of a time entry: `[TIME][time u64]`, the leader's wall clock (in
/// milliseconds since the Unix epoch) when it proposed the entry.
pub(crate) const TIME: u8 = 0xE3;

/// Whether a command without a session must be stored behind [`PLAIN`]
/// (it starts with a tag byte).
fn needs_prefix(command: &[u8]) -> bool {
    command.first().is_some_and(|b| (PLAIN..=TIME).contains(b))
}

/// The log entry that moves the log's time to `time`.
pub(crate) fn time_entry(time: u64) -> Bytes {
    in_arena(9, |b| {
        b.put_u8(TIME);
        b.put_u64_le(time);
    })
}

/// Entries of at most this many bytes are built in a block shared with
/// others ([`in_arena`]).
const ARENA_MAX_ENTRY: usize = 1024;
/// The size of one such block.
const ARENA_BLOCK: usize = 16 * 1024;

thread_local! {
    /// The free part of this thread's current block.
    static ARENA: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// A small entry of `len` bytes written by `fill`, carved from a block
/// shared with the entries made before it on this thread: one allocation
/// per block instead of one per entry, and the copies the log, the store
/// and the messages make of the entry cost a reference count each (an
/// entry frozen from a buffer of its own allocates again the first time
/// it is shared). A block is freed once every entry in it is.
fn in_arena(len: usize, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
    if len > ARENA_MAX_ENTRY {
        let mut b = BytesMut::with_capacity(len);
        fill(&mut b);
        return b.freeze();
    }
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.capacity() - arena.len() < len {
            *arena = BytesMut::with_capacity(ARENA_BLOCK);
        }
        fill(&mut arena);
        debug_assert_eq!(arena.len(), len);
        arena.split().freeze()
    })
}

/// What a client asks the leader to put in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    /// A command without a session: applied each time it reaches the log.
    Plain(Bytes),
    /// Register a session; the reply is its id.
    Register,
    /// A command of a session.
    Numbered(Numbered),
}

/// A command of a session: applied once, however often it reaches the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Numbered {
    /// The session (the index of the entry that registered it).
    pub session: u64,
    /// The command's number in its session.
    pub seq: u64,
    /// Every command of the session numbered below it has been answered
    /// or given up by its caller: the table forgets their replies.
    pub floor: u64,
    /// The command for the state machine.
    pub command: Bytes,
}

impl Call {
    /// The log entry for this call, stamped with the leader's `time` (in
    /// milliseconds since the Unix epoch).
    pub(crate) fn entry(&self, time: u64) -> Bytes {
        match self {
            Call::Plain(c) if needs_prefix(c) => in_arena(1 + c.len(), |b| {
                b.put_u8(PLAIN);
                b.put_slice(c);
            }),
            // A small command is copied next to others (see `in_arena`);
            // a large one goes to the log as given.
            Call::Plain(c) if !c.is_empty() && c.len() <= ARENA_MAX_ENTRY => {
                in_arena(c.len(), |b| b.put_slice(c))
            }
            Call::Plain(c) => c.clone(),
            Call::Register => in_arena(9, |b| {
                b.put_u8(REGISTER);
                b.put_u64_le(time);
            }),
            Call::Numbered(n) => in_arena(NUMBERED_HEADER + n.command.len(), |b| {
                b.put_u8(NUMBERED);
                b.put_u64_le(time);
                b.put_u64_le(n.session);
                b.put_u64_le(n.seq);
                b.put_u64_le(n.floor);
                b.put_slice(&n.command);
            }),
        }
    }

    /// The size of the entry this call makes.
    pub(crate) fn entry_len(&self) -> usize {
        match self {
            Call::Plain(c) if needs_prefix(c) => 1 + c.len(),
            Call::Plain(c) => c.len(),
            Call::Register => 9,
            Call::Numbered(n) => NUMBERED_HEADER + n.command.len(),
        }
    }
}

/// A command entry of the log, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    /// A command without a session.
    Plain(&'a [u8]),
    /// The registration of a session, at `time`.
    Register {
        /// The leader's time.
        time: u64,
    },
    /// The log's time moves to `time` (if later than it is).
    Time {
        /// The leader's time.
        time: u64,
    },
    /// A numbered command, at `time`.
    Numbered {
        /// The leader's time.
        time: u64,
        /// The session.
        session: u64,
        /// The command's number.
        seq: u64,
        /// The caller's floor ([`Numbered::floor`]).
        floor: u64,
        /// The command for the state machine.
        command: &'a [u8],
    },
}

impl<'a> Entry<'a> {
    /// Decodes a command entry. A tagged entry too short for its header
    /// is taken as a command without a session (as given).
    pub(crate) fn decode(data: &'a [u8]) -> Entry<'a> {
        match data.first() {
            Some(&PLAIN) => Entry::Plain(&data[1..]),
            Some(&REGISTER) if data.len() == 9 => Entry::Register {
                time: u64::from_le_bytes(data[1..9].try_into().expect("8 bytes")),
            },
            Some(&TIME) if data.len() == 9 => Entry::Time {
                time: u64::from_le_bytes(data[1..9].try_into().expect("8 bytes")),
            },
            Some(&NUMBERED) if data.len() >= NUMBERED_HEADER => {
                let word = |i: usize| {
                    u64::from_le_bytes(data[1 + 8 * i..9 + 8 * i].try_into().expect("8 bytes"))
                };
                Entry::Numbered {
                    time: word(0),
                    session: word(1),
                    seq: word(2),
                    floor: word(3),
                    command: &data[NUMBERED_HEADER..],
                }
            }
            _ => Entry::Plain(data),
        }
    }
}

/// Why the table refused a numbered command (it was not applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionRefusal {
    /// The session is unknown: it expired (or was evicted to bound the
    /// table). The command was not applied now; an earlier attempt of it,
    /// if any, may have been.
    Expired,
    /// The command's number is below what the session still remembers: if
    /// it was applied, its reply is forgotten. It was not applied now.
    Forgotten,
}

/// The bounds of a session table. Every node must use the same (they
/// decide which commands apply): the node uses [`Limits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// A session idle (no command applied) for longer than this, in log
    /// time (milliseconds), expires.
    pub idle_ms: u64,
    /// The most sessions kept: registering one more evicts the one idle
    /// the longest.
    pub max_sessions: usize,
    /// The most replies kept per session: one more forgets the lowest
    /// numbered.
    pub max_replies: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle_ms: 60 * 60 * 1000,
            max_sessions: 16 * 1024,
            max_replies: 64 * 1024,
        }
    }
}

/// One session's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Session {
    /// Log time of its latest registration or command.
    last_active: u64,
    /// Replies of the commands applied at or above its floor.
    replies: Replies,
}

/// The replies of a session's commands from its floor up: a window of
/// numbers, since a node numbers its commands in order (no allocation per
/// command once the window has grown, unlike a tree).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Replies {
    /// Commands numbered below it are forgotten.
    floor: u64,
    /// The reply of command `floor + i`, if it was applied.
    slots: std::collections::VecDeque<Option<Bytes>>,
    /// How many slots hold a reply.
    count: usize,
}

impl Replies {
    /// The number of replies kept.
    fn len(&self) -> usize {
        self.count
    }

    fn get(&self, seq: u64) -> Option<&Bytes> {
        let i = usize::try_from(seq.checked_sub(self.floor)?).ok()?;
        self.slots.get(i)?.as_ref()
    }

    /// Forgets every reply numbered below `floor` (if above today's).
    fn raise_floor(&mut self, floor: u64) {
        if floor <= self.floor {
            return;
        }
        let drop = usize::try_from(floor - self.floor).unwrap_or(usize::MAX);
        if drop >= self.slots.len() {
            self.count = 0;
            self.slots.clear();
        } else {
            for _ in 0..drop {
                if let Some(Some(_)) = self.slots.pop_front() {
                    self.count -= 1;
                }
            }
        }
        self.floor = floor;
    }

    /// Keeps the reply of `seq` (at or above the floor): the window spans
    /// at most `max` numbers, so a number `max` or more above the floor
    /// forgets the lowest ones.
    fn insert(&mut self, seq: u64, reply: Bytes, max: usize) {
        debug_assert!(seq >= self.floor);
        let max = max.max(1) as u64;
        if seq - self.floor >= max {
            self.raise_floor(seq + 1 - max);
        }
        let i = (seq - self.floor) as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        if self.slots[i].replace(reply).is_none() {
            self.count += 1;
        }
    }

    /// The replies kept, by ascending number.
    fn iter(&self) -> impl Iterator<Item = (u64, &Bytes)> {
        let floor = self.floor;
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(i, r)| r.as_ref().map(|r| (floor + i as u64, r)))
    }
}

/// The session table of the layer that applies entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    limits: Limits,
    /// The log's time: the largest stamp applied.
    now: u64,
    sessions: BTreeMap<u64, Session>,
    /// (last_active, session), for expiry and eviction in order.
    by_activity: BTreeSet<(u64, u64)>,
}

/// The prefix of a snapshot that carries a session table before the state
/// machine's own snapshot.
const SNAPSHOT_MAGIC: &[u8; 8] = b"RNSESS\x00\x01";

impl Sessions {
    /// An empty table with `limits`.
    pub(crate) fn new(limits: Limits) -> Sessions {
        Sessions {
            limits,
            ..Sessions::default()
        }
    }

    /// The number of sessions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Advances the log's time to `time` (never back) and expires the
    /// sessions idle for longer than the limit.
    fn advance(&mut self, time: u64) {
        self.now = self.now.max(time);
        while let Some(&(last, id)) = self.by_activity.first() {
            if last.saturating_add(self.limits.idle_ms) >= self.now {
                break;
            }
            self.by_activity.pop_first();
            self.sessions.remove(&id);
        }
    }

    fn touch(&mut self, id: u64) {
        let now = self.now;
        if let Some(s) = self.sessions.get_mut(&id) {
            if s.last_active != now {
                self.by_activity.remove(&(s.last_active, id));
                s.last_active = now;
                self.by_activity.insert((now, id));
            }
        }
    }

    /// Registers the session registered by the entry at `index`, stamped
    /// `time`; returns its id (`index`), as the reply's 8 bytes.
    pub(crate) fn register(&mut self, index: LogIndex, time: u64) -> Bytes {
        self.advance(time);
        while self.sessions.len() >= self.limits.max_sessions.max(1) {
            let Some((_, id)) = self.by_activity.pop_first() else {
                break;
            };
            self.sessions.remove(&id);
        }
        let session = Session {
            last_active: self.now,
            ..Session::default()
        };
        self.sessions.insert(index, session);
        self.by_activity.insert((self.now, index));
        Bytes::copy_from_slice(&index.to_le_bytes())
    }

    /// Applies the numbered command `seq` of `session` (stamped `time`,
    /// with the caller's `floor`) through `apply`, unless it was applied
    /// before: then its first reply, without applying it again.
    pub(crate) fn command(
        &mut self,
        time: u64,
        session: u64,
        seq: u64,
        floor: u64,
        apply: impl FnOnce() -> Bytes,
    ) -> Result<Bytes, SessionRefusal> {
        self.advance(time);
        self.touch(session);
        let max_replies = self.limits.max_replies.max(1);
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(SessionRefusal::Expired)?;
        s.replies.raise_floor(floor);
        if seq < s.replies.floor {
            return Err(SessionRefusal::Forgotten);
        }
        if let Some(reply) = s.replies.get(seq) {
            return Ok(reply.clone());
        }
        let reply = apply();
        s.replies.insert(seq, reply.clone(), max_replies);
        Ok(reply)
    }

    /// The snapshot of the table followed by the state machine's `data`;
    /// `data` itself while the table is empty (the format of a node
    /// without sessions).
    pub(crate) fn wrap_snapshot(&self, data: Bytes) -> Bytes {
        if self.sessions.is_empty() {
            return data;
        }
        let mut t = BytesMut::new();
        t.put_u64_le(self.now);
        t.put_u64_le(self.sessions.len() as u64);
        for (id, s) in &self.sessions {
            t.put_u64_le(*id);
            t.put_u64_le(s.last_active);
            t.put_u64_le(s.replies.floor);
            t.put_u64_le(s.replies.len() as u64);
            for (seq, reply) in s.replies.iter() {
                t.put_u64_le(seq);
                t.put_u64_le(reply.len() as u64);
                t.put_slice(reply);
            }
        }
        let mut all = BytesMut::with_capacity(SNAPSHOT_MAGIC.len() + 8 + t.len() + data.len());
        all.put_slice(SNAPSHOT_MAGIC);
        all.put_u64_le(t.len() as u64);
        all.put_slice(&t);
        all.put_slice(&data);
        all.freeze()
    }

    /// Replaces the table with the one in `snapshot` (none: an empty
    /// table) and returns the state machine's part of it (a slice of
    /// `snapshot`, not a copy).
    pub(crate) fn unwrap_snapshot(&mut self, snapshot: Bytes) -> Result<Bytes, RestoreError> {
        let limits = self.limits;
        *self = Sessions::new(limits);
        if !snapshot.starts_with(SNAPSHOT_MAGIC) {
            return Ok(snapshot);
        }
        let mut b = &snapshot[SNAPSHOT_MAGIC.len()..];
        let cut = || RestoreError::Truncated {
            what: "the session table".into(),
        };
        let word = |b: &mut &[u8]| {
            if b.remaining() < 8 {
                Err(cut())
            } else {
                Ok(b.get_u64_le())
            }
        };
        let table = usize::try_from(word(&mut b)?).map_err(|_| cut())?;
        let end = SNAPSHOT_MAGIC.len() + 8 + table;
        if snapshot.len() < end || table < 16 {
            return Err(cut());
        }
        let mut b = &snapshot[SNAPSHOT_MAGIC.len() + 8..end];
        self.now = word(&mut b)?;
        let count = word(&mut b)?;
        for _ in 0..count {
            let id = word(&mut b)?;
            let last_active = word(&mut b)?;
            let floor = word(&mut b)?;
            let n = word(&mut b)?;
            let mut replies = Replies {
                floor,
                ..Replies::default()
            };
            let mut last = None;
            for _ in 0..n {
                let seq = word(&mut b)?;
                let len = usize::try_from(word(&mut b)?).map_err(|_| cut())?;
                if b.remaining() < len {
                    return Err(cut());
                }
                if seq < replies.floor || last.is_some_and(|l| seq <= l) {
                    return Err(RestoreError::Malformed {
                        reason: format!(
                            "in the session table, reply {seq} of session {id} is out of order or below its floor {floor}"
                        ),
                    });
                }
                last = Some(seq);
                let at = end - b.remaining();
                replies.insert(seq, snapshot.slice(at..at + len), self.limits.max_replies);
                b.advance(len);
            }
            self.by_activity.insert((last_active, id));
            self.sessions.insert(
                id,
                Session {
                    last_active,
                    replies,
                },
            );
        }
        if !b.is_empty() {
            return Err(RestoreError::TrailingBytes {
                what: "the session table".into(),
                bytes: b.remaining(),
            });
        }
        Ok(snapshot.slice(end..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(idle_ms: u64, max_sessions: usize, max_replies: usize) -> Limits {
        Limits {
            idle_ms,
            max_sessions,
            max_replies,
        }
    }

    /// Applies `seq` of `session` at `time`, counting applications.
    fn run(
        t: &mut Sessions,
        applied: &mut u32,
        time: u64,
        session: u64,
        seq: u64,
        floor: u64,
    ) -> Result<Bytes, SessionRefusal> {
        t.command(time, session, seq, floor, || {
            *applied += 1;
            Bytes::from(format!("reply {seq} #{applied}"))
        })
    }

    #[test]
    fn a_duplicate_is_answered_with_the_first_reply_and_not_applied() {
        let mut t = Sessions::new(Limits::default());
        let s = u64::from_le_bytes(t.register(7, 100)[..].try_into().unwrap());
        assert_eq!(s, 7);
        let mut applied = 0;
        let first = run(&mut t, &mut applied, 101, s, 1, 1).unwrap();
        let again = run(&mut t, &mut applied, 102, s, 1, 1).unwrap();
        assert_eq!(first, again);
        assert_eq!(applied, 1);
        // Commands of a session may arrive out of order (they are sent
        // concurrently).
        run(&mut t, &mut applied, 103, s, 3, 1).unwrap();
        run(&mut t, &mut applied, 103, s, 2, 1).unwrap();
        run(&mut t, &mut applied, 103, s, 3, 1).unwrap();
        assert_eq!(applied, 3);
    }

    #[test]
    fn commands_of_an_unknown_session_are_refused_and_not_applied() {
        let mut t = Sessions::new(Limits::default());
        let mut applied = 0;
        assert_eq!(
            run(&mut t, &mut applied, 1, 42, 1, 1),
            Err(SessionRefusal::Expired)
        );
        assert_eq!(applied, 0);
    }

    #[test]
    fn the_floor_forgets_replies_and_refuses_what_is_below_it() {
        let mut t = Sessions::new(Limits::default());
        t.register(1, 0);
        let mut applied = 0;
        for seq in 1..=5 {
            run(&mut t, &mut applied, 0, 1, seq, 1).unwrap();
        }
        assert_eq!(t.sessions[&1].replies.len(), 5);
        run(&mut t, &mut applied, 0, 1, 6, 5).unwrap();
        assert_eq!(t.sessions[&1].replies.len(), 2);
        assert_eq!(
            run(&mut t, &mut applied, 0, 1, 3, 5),
            Err(SessionRefusal::Forgotten)
        );
        assert_eq!(applied, 6);
    }

    #[test]
    fn replies_of_numbers_out_of_order_and_with_gaps_are_kept_and_travel_in_snapshots() {
        let mut t = Sessions::new(Limits::default());
        t.register(1, 0);
        let mut applied = 0;
        for seq in [5, 2, 9, 3] {
            run(&mut t, &mut applied, 0, 1, seq, 1).unwrap();
        }
        assert_eq!(t.sessions[&1].replies.len(), 4);
        // Duplicates are answered, not applied again.
        for seq in [2, 3, 5, 9] {
            run(&mut t, &mut applied, 0, 1, seq, 1).unwrap();
        }
        assert_eq!(applied, 4);
        let mut restored = Sessions::new(Limits::default());
        let data = restored
            .unwrap_snapshot(t.wrap_snapshot(Bytes::from_static(b"sm")))
            .unwrap();
        assert_eq!(&data[..], b"sm");
        assert_eq!(restored, t);
        // The floor passes 2 and 3: they are forgotten, 5 and 9 kept.
        run(&mut restored, &mut applied, 0, 1, 10, 4).unwrap();
        assert_eq!(restored.sessions[&1].replies.len(), 3);
        assert_eq!(
            run(&mut restored, &mut applied, 0, 1, 3, 4),
            Err(SessionRefusal::Forgotten)
        );
    }

    #[test]
    fn replies_per_session_are_bounded_and_the_forgotten_never_apply_again() {
        let mut t = Sessions::new(limits(1000, 10, 3));
        t.register(1, 0);
        let mut applied = 0;
        for seq in 1..=10 {
            run(&mut t, &mut applied, 0, 1, seq, 1).unwrap();
        }
        assert_eq!(t.sessions[&1].replies.len(), 3);
        assert_eq!(
            run(&mut t, &mut applied, 0, 1, 2, 1),
            Err(SessionRefusal::Forgotten)
        );
        assert!(run(&mut t, &mut applied, 0, 1, 9, 1).is_ok());
        assert_eq!(applied, 10);
    }

    #[test]
    fn sessions_are_bounded_by_evicting_the_one_idle_the_longest() {
        let mut t = Sessions::new(limits(1000, 2, 10));
        t.register(1, 10);
        t.register(2, 20);
        let mut applied = 0;
        run(&mut t, &mut applied, 30, 1, 1, 1).unwrap();
        t.register(3, 40);
        assert_eq!(t.len(), 2);
        assert_eq!(
            run(&mut t, &mut applied, 41, 2, 1, 1),
            Err(SessionRefusal::Expired)
        );
        assert!(run(&mut t, &mut applied, 41, 1, 2, 1).is_ok());
        assert!(run(&mut t, &mut applied, 41, 3, 1, 1).is_ok());
    }

    #[test]
    fn sessions_expire_by_the_time_in_the_log_only() {
        let mut t = Sessions::new(limits(100, 10, 10));
        t.register(1, 1_000);
        t.register(2, 1_000);
        let mut applied = 0;
        // Session 2 stays active; session 1 idles.
        run(&mut t, &mut applied, 1_090, 2, 1, 1).unwrap();
        run(&mut t, &mut applied, 1_100, 1, 1, 1).unwrap();
        run(&mut t, &mut applied, 1_150, 2, 2, 1).unwrap();
        // A stamp from a clock that went back does not move the log's time
        // back.
        run(&mut t, &mut applied, 500, 2, 3, 1).unwrap();
        assert_eq!(t.now, 1_150);
        run(&mut t, &mut applied, 1_201, 2, 4, 1).unwrap();
        assert_eq!(
            run(&mut t, &mut applied, 1_201, 1, 2, 1),
            Err(SessionRefusal::Expired)
        );
        assert_eq!(t.len(), 1);
        // The same entries give the same table, whenever they are applied.
        let mut u = Sessions::new(limits(100, 10, 10));
        u.register(1, 1_000);
        u.register(2, 1_000);
        let mut other = 0;
        for (time, session, seq) in [(1_090, 2, 1), (1_100, 1, 1), (1_150, 2, 2), (500, 2, 3)] {
            run(&mut u, &mut other, time, session, seq, 1).unwrap();
        }
        run(&mut u, &mut other, 1_201, 2, 4, 1).unwrap();
        let _ = run(&mut u, &mut other, 1_201, 1, 2, 1);
        assert_eq!(t, u);
    }

    #[test]
    fn the_table_travels_in_snapshots_and_dedupes_the_same_after_a_restore() {
        let mut t = Sessions::new(Limits::default());
        t.register(1, 5);
        t.register(4, 6);
        let mut applied = 0;
        run(&mut t, &mut applied, 7, 1, 1, 1).unwrap();
        run(&mut t, &mut applied, 8, 4, 1, 1).unwrap();
        run(&mut t, &mut applied, 8, 4, 2, 1).unwrap();
        let data = Bytes::from_static(b"the state machine's own snapshot");
        let wrapped = t.wrap_snapshot(data.clone());
        let mut restored = Sessions::new(Limits::default());
        assert_eq!(restored.unwrap_snapshot(wrapped.clone()).unwrap(), data);
        assert_eq!(restored, t);
        let first = run(&mut t, &mut applied, 9, 4, 2, 1).unwrap();
        let mut after = applied;
        assert_eq!(run(&mut restored, &mut after, 9, 4, 2, 1).unwrap(), first);
        assert_eq!(after, applied);
        // A snapshot without sessions is the state machine's own.
        let mut empty = Sessions::new(Limits::default());
        assert_eq!(empty.wrap_snapshot(data.clone()), data);
        assert_eq!(restored.unwrap_snapshot(data.clone()).unwrap(), data);
        assert_eq!(restored.len(), 0);
        // A cut-off table is an error, not a guess.
        let cut = wrapped.slice(..SNAPSHOT_MAGIC.len() + 20);
        assert!(empty.unwrap_snapshot(cut).is_err());
    }

    #[test]
    fn entries_round_trip_and_plain_commands_are_stored_as_given() {
        let plain = Bytes::from_static(b"\x01set k v");
        let entry = Call::Plain(plain.clone()).entry(9);
        assert_eq!(entry, plain);
        assert_eq!(Entry::decode(&entry), Entry::Plain(&plain[..]));
        let tagged = Bytes::from_static(&[NUMBERED, 1, 2]);
        let entry = Call::Plain(tagged.clone()).entry(9);
        assert_eq!(entry.len(), Call::Plain(tagged.clone()).entry_len());
        assert_eq!(Entry::decode(&entry), Entry::Plain(&tagged[..]));
        // A command that looks like a time entry is stored behind a prefix.
        let timelike = time_entry(5);
        let entry = Call::Plain(timelike.clone()).entry(9);
        assert_eq!(entry.len(), timelike.len() + 1);
        assert_eq!(Entry::decode(&entry), Entry::Plain(&timelike[..]));
        assert_eq!(Entry::decode(&time_entry(123)), Entry::Time { time: 123 });
        assert_eq!(
            Entry::decode(&Call::Register.entry(77)),
            Entry::Register { time: 77 }
        );
        let n = Numbered {
            session: 3,
            seq: 4,
            floor: 2,
            command: Bytes::from_static(b"cmd"),
        };
        let call = Call::Numbered(n);
        let entry = call.entry(88);
        assert_eq!(entry.len(), call.entry_len());
        assert_eq!(
            Entry::decode(&entry),
            Entry::Numbered {
                time: 88,
                session: 3,
                seq: 4,
                floor: 2,
                command: b"cmd"
            }
        );
    }
}
