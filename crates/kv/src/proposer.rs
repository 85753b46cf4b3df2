//! Group commit: the writes of many connections as one log entry.
//!
//! A connection already sends its consecutive (pipelined) writes as one
//! entry. The [`Proposer`] joins those of different connections: a
//! connection whose writes arrive while no entry of client writes is under
//! way proposes them at once, alone (one client costs nothing more than
//! before); writes that arrive while one is under way wait in a queue, and
//! when it is answered, the first of them proposes, as one entry, its own
//! writes and those queued behind it that fit the bounds of an entry
//! ([`Limits`]). The store answers an entry with the replies of its writes,
//! concatenated in order; each caller gets its own slice of them, or the
//! error the whole entry failed with.
//!
//! A caller waits only for its own entry and for the one under way when it
//! arrived (so a write may take up to twice the command timeout to fail
//! with `TIMEOUT`). Every caller of an entry that fails (leadership lost,
//! a timeout, no leader) gets the entry's error. One that goes away while
//! it waits is left out (its writes are not proposed); one that goes away
//! while its entry is under way leaves the entry to a task that answers
//! the others.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use raft_node::{Node, NodeError};
use tokio::sync::oneshot;

use crate::frame::put_error;
use crate::metrics::Metrics;
use crate::store::{encode_writes, Write};

/// How many entries of client writes may be under way at once; writes that
/// arrive while that many are wait for the next one.
const MAX_IN_FLIGHT: usize = 1;

/// The bounds of one entry of several callers' writes. A caller's own
/// writes go in whatever their size (the connection bounds them); those of
/// others join only while the entry stays within both.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes of an entry (as [`encode_writes`] encodes it).
    pub bytes: usize,
    /// The most writes in an entry.
    pub writes: usize,
}

/// Joins the writes of concurrent callers into shared log entries; one per
/// server, shared by its connections.
#[derive(Debug, Default)]
pub struct Proposer {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Entries under way, counting one handed to a waiter that has not yet
    /// proposed it. The queue is empty unless this is `MAX_IN_FLIGHT`.
    in_flight: usize,
    /// The callers waiting for an entry, in the order they came.
    queue: VecDeque<Waiter>,
}

/// A caller waiting for its writes to be proposed.
#[derive(Debug)]
struct Waiter {
    writes: Vec<Write>,
    /// Their encoded bytes.
    bytes: usize,
    turn: oneshot::Sender<Turn>,
}

/// What a waiting caller is told.
#[derive(Debug)]
enum Turn {
    /// Its writes were proposed with others: their replies, or the error.
    Answered(Result<Bytes, NodeError>),
    /// Its turn to propose its writes and these others'.
    Propose(Vec<Waiter>),
}

impl Proposer {
    /// A proposer with nothing under way.
    pub fn new() -> Proposer {
        Proposer::default()
    }

    /// Proposes `writes` (of `bytes` encoded bytes, in order) through
    /// `node`, in one entry with those of other callers when some are under
    /// way; returns the replies of these writes, concatenated in order, or
    /// the error of the entry they were in. Every entry is counted in
    /// `metrics` ([`Metrics::write_batch`]).
    pub async fn propose(
        self: &Arc<Self>,
        node: &Node,
        metrics: &Arc<Metrics>,
        writes: Vec<Write>,
        bytes: usize,
        limits: Limits,
    ) -> Result<Bytes, NodeError> {
        let (turn, told) = oneshot::channel();
        let now = {
            let mut state = self.lock();
            if state.in_flight < MAX_IN_FLIGHT {
                state.in_flight += 1;
                Some(writes)
            } else {
                state.queue.push_back(Waiter {
                    writes,
                    bytes,
                    turn,
                });
                None
            }
        };
        if let Some(writes) = now {
            return self.run(node, metrics, writes, Vec::new(), limits).await;
        }
        let mut wait = Wait {
            told: Some(told),
            proposer: self,
            limits,
        };
        let turn = match &mut wait.told {
            Some(told) => told.await,
            None => return Err(NodeError::ShuttingDown),
        };
        wait.told = None;
        match turn {
            Ok(Turn::Answered(result)) => result,
            Ok(Turn::Propose(mut group)) => {
                let own = std::mem::take(&mut group[0].writes);
                self.run(node, metrics, own, group, limits).await
            }
            // The entry's proposer was dropped without answering (the
            // runtime is shutting down).
            Err(_) => Err(NodeError::ShuttingDown),
        }
    }

    /// Proposes `own` and the writes of `others` (`others[0]` is the
    /// caller itself when it waited: its writes are `own`) as one entry,
    /// answers the others, hands the slot on, and returns the replies of
    /// `own`. If the caller goes away meanwhile, a task finishes this.
    async fn run(
        self: &Arc<Self>,
        node: &Node,
        metrics: &Arc<Metrics>,
        own: Vec<Write>,
        mut others: Vec<Waiter>,
        limits: Limits,
    ) -> Result<Bytes, NodeError> {
        let mut counts = Vec::with_capacity(others.len());
        let entry = if others.is_empty() {
            metrics.write_batch(own.len());
            encode_writes(&own)
        } else {
            let mut all = own;
            counts.push(all.len());
            for w in others.iter_mut().skip(1) {
                counts.push(w.writes.len());
                all.append(&mut w.writes);
            }
            metrics.write_batch(all.len());
            encode_writes(&all)
        };
        let (proposer, node) = (self.clone(), node.clone());
        let proposal = async move {
            // Without a client session: an entry fills up to the largest
            // the peers carry, with no room for a session's header.
            let result = node.command_without_session(entry).await;
            proposer.hand_on(Vec::new(), limits);
            share(result, &counts, others)
        };
        Detached(Some(Box::pin(proposal))).await
    }

    /// Called when an entry was answered (or its proposer went away):
    /// `back` (waiters taken from the queue but not proposed) go back to
    /// its front, then the slot passes to the first waiter with those
    /// behind it that fit, or is freed if none waits.
    fn hand_on(&self, back: Vec<Waiter>, limits: Limits) {
        let mut state = self.lock();
        for w in back.into_iter().rev() {
            state.queue.push_front(w);
        }
        loop {
            let group = take_group(&mut state.queue, limits);
            if group.is_empty() {
                state.in_flight -= 1;
                return;
            }
            let mut group = group;
            let turn = group[0].turn_sender();
            // A waiter that goes away either refuses it here or finds it
            // as it goes (and hands it on).
            match turn.send(Turn::Propose(group)) {
                Ok(()) => return,
                Err(Turn::Propose(refused)) => {
                    // Gone: its writes are dropped, the others go back.
                    for w in refused.into_iter().skip(1).rev() {
                        state.queue.push_front(w);
                    }
                }
                Err(Turn::Answered(_)) => unreachable!("a Propose was sent"),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Waiter {
    /// Takes its sender, leaving a closed one.
    fn turn_sender(&mut self) -> oneshot::Sender<Turn> {
        std::mem::replace(&mut self.turn, oneshot::channel().0)
    }
}

/// Takes from the front of `queue` the waiters of the next entry: the
/// first that is still there, and those behind it while they fit `limits`.
/// Waiters that went away are dropped.
fn take_group(queue: &mut VecDeque<Waiter>, limits: Limits) -> Vec<Waiter> {
    let mut group: Vec<Waiter> = Vec::new();
    let (mut bytes, mut writes) = (1, 0);
    while let Some(next) = queue.front() {
        if next.turn.is_closed() {
            queue.pop_front();
            continue;
        }
        if !group.is_empty()
            && (bytes + next.bytes > limits.bytes || writes + next.writes.len() > limits.writes)
        {
            break;
        }
        bytes += next.bytes;
        writes += next.writes.len();
        group.extend(queue.pop_front());
    }
    group
}

/// Splits the answer of an entry between its callers: `counts[i]` writes
/// each, the proposer first, then `others` past the first (which is the
/// proposer when it waited); answers the others and returns the
/// proposer's part.
fn share(
    result: Result<Bytes, NodeError>,
    counts: &[usize],
    others: Vec<Waiter>,
) -> Result<Bytes, NodeError> {
    if others.is_empty() {
        return result;
    }
    let mut parts = match &result {
        Ok(replies) => split_replies(replies, counts).into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let mut part = || match &result {
        Ok(_) => Ok(parts.next().unwrap_or_default()),
        Err(e) => Err(e.clone()),
    };
    let own = part();
    for mut w in others.into_iter().skip(1) {
        // One that went away is not answered.
        let _ = w.turn_sender().send(Turn::Answered(part()));
    }
    own
}

/// Splits `replies` (RESP replies, concatenated) into parts of `counts[i]`
/// replies each. A part the replies run out for is that many errors (the
/// store answers every write of a valid entry: it cannot happen).
fn split_replies(replies: &Bytes, counts: &[usize]) -> Vec<Bytes> {
    let mut at = 0;
    counts
        .iter()
        .map(|&n| {
            let start = at;
            for _ in 0..n {
                match reply_len(&replies[at..]) {
                    Some(len) => at += len,
                    None => {
                        at = replies.len();
                        let mut errors = BytesMut::new();
                        for _ in 0..n {
                            put_error(&mut errors, "ERR the store did not answer this write");
                        }
                        return errors.freeze();
                    }
                }
            }
            replies.slice(start..at)
        })
        .collect()
}

/// The length of the RESP2 reply at the start of `buf`, if it holds a
/// whole one.
fn reply_len(buf: &[u8]) -> Option<usize> {
    let line = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = line + 2;
    let number = || {
        std::str::from_utf8(buf.get(1..line)?)
            .ok()?
            .parse::<i64>()
            .ok()
    };
    match buf.first()? {
        b'+' | b'-' | b':' => Some(head),
        b'$' => match number()? {
            n if n < 0 => Some(head),
            n => {
                let end = head.checked_add(usize::try_from(n).ok()?)?.checked_add(2)?;
                (buf.len() >= end).then_some(end)
            }
        },
        b'*' => {
            let mut at = head;
            for _ in 0..number()?.max(0) {
                at += reply_len(&buf[at..])?;
            }
            Some(at)
        }
        _ => None,
    }
}

/// A caller's wait in the queue; if it goes away when told to propose, it
/// hands the turn on.
struct Wait<'a> {
    told: Option<oneshot::Receiver<Turn>>,
    proposer: &'a Proposer,
    limits: Limits,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let Some(mut told) = self.told.take() else {
            return;
        };
        told.close();
        if let Ok(Turn::Propose(mut group)) = told.try_recv() {
            group.remove(0);
            self.proposer.hand_on(group, self.limits);
        }
    }
}

type Proposal = Pin<Box<dyn Future<Output = Result<Bytes, NodeError>> + Send>>;

/// A proposal that finishes in a task of its own if its caller goes away
/// before it does: the other callers of its entry are answered, and the
/// next entry proposed, all the same.
struct Detached(Option<Proposal>);

impl Future for Detached {
    type Output = Result<Bytes, NodeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(proposal) = self.0.as_mut() else {
            return Poll::Ready(Err(NodeError::ShuttingDown));
        };
        let done = proposal.as_mut().poll(cx);
        if done.is_ready() {
            self.0 = None;
        }
        done
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(proposal) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(proposal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_measured_whole() {
        assert_eq!(reply_len(b"+OK\r\nrest"), Some(5));
        assert_eq!(reply_len(b"-WRONGTYPE x\r\n"), Some(14));
        assert_eq!(reply_len(b":12\r\n"), Some(5));
        assert_eq!(reply_len(b"$-1\r\n"), Some(5));
        assert_eq!(reply_len(b"$3\r\na\r\n\r\n:1\r\n"), Some(9));
        assert_eq!(reply_len(b"*2\r\n$1\r\na\r\n*-1\r\n"), Some(16));
        assert_eq!(reply_len(b"$3\r\nab"), None);
        assert_eq!(reply_len(b"*2\r\n:1\r\n"), None);
        assert_eq!(reply_len(b"+OK"), None);
        assert_eq!(reply_len(b"?\r\n"), None);
    }

    #[test]
    fn an_answer_is_split_between_its_callers_in_order() {
        let replies = Bytes::from_static(b"+OK\r\n:3\r\n-WRONGTYPE no\r\n$1\r\nv\r\n+OK\r\n");
        let parts = split_replies(&replies, &[2, 1, 0, 2]);
        assert_eq!(parts[0], &b"+OK\r\n:3\r\n"[..]);
        assert_eq!(parts[1], &b"-WRONGTYPE no\r\n"[..]);
        assert_eq!(parts[2], &b""[..]);
        assert_eq!(parts[3], &b"$1\r\nv\r\n+OK\r\n"[..]);
    }

    #[test]
    fn callers_the_replies_run_out_for_get_one_error_per_write() {
        let replies = Bytes::from_static(b"-ERR not a raft-kv command batch\r\n");
        let parts = split_replies(&replies, &[1, 2]);
        assert_eq!(parts[0], &b"-ERR not a raft-kv command batch\r\n"[..]);
        assert_eq!(
            crate::frame::count_frames(&parts[1], &Default::default()),
            Ok(2)
        );
        assert!(parts[1].starts_with(b"-ERR the store did not answer"));
    }

    fn waiter(writes: usize, bytes: usize) -> (Waiter, oneshot::Receiver<Turn>) {
        let (turn, told) = oneshot::channel();
        let set = Write::Set {
            key: Bytes::from_static(b"k"),
            value: Bytes::new(),
            condition: Default::default(),
            get: false,
            ttl: Default::default(),
        };
        let w = Waiter {
            writes: vec![set; writes],
            bytes,
            turn,
        };
        (w, told)
    }

    #[test]
    fn an_entry_takes_waiters_in_order_within_its_bounds() {
        let limits = Limits {
            bytes: 100,
            writes: 4,
        };
        let mut queue = VecDeque::new();
        let mut receivers = Vec::new();
        for (writes, bytes) in [(2, 500), (2, 40), (1, 40), (1, 10), (1, 1)] {
            let (w, r) = waiter(writes, bytes);
            queue.push_back(w);
            receivers.push(r);
        }
        // The first goes whatever its size; the next would pass the bytes.
        assert_eq!(take_group(&mut queue, limits).len(), 1);
        // 1 + 40 + 40 + 10 bytes in 4 writes; the next would pass 4 writes.
        let group = take_group(&mut queue, limits);
        assert_eq!(
            group.iter().map(|w| w.bytes).collect::<Vec<_>>(),
            [40, 40, 10]
        );
        assert_eq!(queue.len(), 1);
        // One that went away is left out.
        drop(receivers.pop());
        assert!(take_group(&mut queue, limits).is_empty());
        assert!(queue.is_empty());
    }

    #[test]
    fn a_waiter_that_goes_away_when_its_turn_comes_hands_it_on() {
        let proposer = Proposer::new();
        let limits = Limits {
            bytes: 100,
            writes: 1,
        };
        proposer.lock().in_flight = MAX_IN_FLIGHT;
        let mut waits = Vec::new();
        for _ in 0..3 {
            let (w, told) = waiter(1, 10);
            proposer.lock().queue.push_back(w);
            waits.push(Wait {
                told: Some(told),
                proposer: &proposer,
                limits,
            });
        }
        // The entry under way is answered: the first waiter's turn.
        proposer.hand_on(Vec::new(), limits);
        let mut waits = waits.into_iter();
        // It goes away before it proposes: the turn passes to the next.
        drop(waits.next());
        let mut second = waits.next().unwrap();
        let told = second.told.as_mut().unwrap().try_recv();
        assert!(matches!(told, Ok(Turn::Propose(ref group)) if group.len() == 1));
        second.told = None;
        // The third goes away while it waits: it is left out, and once the
        // second's entry is answered nothing is under way.
        drop(waits.next());
        proposer.hand_on(Vec::new(), limits);
        assert_eq!(proposer.lock().in_flight, MAX_IN_FLIGHT - 1);
        assert!(proposer.lock().queue.is_empty());
    }

    /// A single-node leader in memory applying the raft-kv store.
    async fn leader() -> Node {
        let options = raft_node::Options {
            state_machine: Some(Box::new(crate::store::KvStore::new())),
            ..raft_node::Options::default()
        };
        let node = Node::new(options).await.expect("a single node starts");
        for _ in 0..1000 {
            if node.role() == raft_node::Role::Leader {
                return node;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the single node never led");
    }

    fn incr(key: &str) -> Write {
        Write::IncrBy {
            key: Bytes::copy_from_slice(key.as_bytes()),
            by: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_that_go_away_leave_the_others_answered() {
        let node = leader().await;
        let proposer = Arc::new(Proposer::new());
        let metrics = Arc::new(Metrics::new());
        let limits = Limits {
            bytes: 1 << 20,
            writes: 1024,
        };
        const CALLERS: usize = 40;
        const ROUNDS: i64 = 20;
        for round in 1..=ROUNDS {
            let calls: Vec<_> = (0..CALLERS)
                .map(|i| {
                    let (proposer, node, metrics) =
                        (proposer.clone(), node.clone(), metrics.clone());
                    let key = format!("k{i}");
                    tokio::spawn(async move {
                        let w = incr(&key);
                        let bytes = crate::store::encoded_write_len(&w);
                        proposer
                            .propose(&node, &metrics, vec![w], bytes, limits)
                            .await
                    })
                })
                .collect();
            // Every third caller goes away at once, waiting or proposing.
            for (i, call) in calls.iter().enumerate() {
                if i % 3 == 0 {
                    call.abort();
                }
            }
            for (i, call) in calls.into_iter().enumerate() {
                let answered = tokio::time::timeout(std::time::Duration::from_secs(10), call);
                match answered
                    .await
                    .expect("every caller is answered within 10 s")
                {
                    Ok(answer) => {
                        let got = answer.expect("a write of a cluster of one");
                        assert!(got.starts_with(b":") && got.ends_with(b"\r\n"), "{got:?}");
                    }
                    Err(e) => assert!(e.is_cancelled() && i % 3 == 0, "caller {i}: {e}"),
                }
            }
            // The callers that stayed have each of their writes applied.
            let w = incr("k1");
            let bytes = crate::store::encoded_write_len(&w);
            let got = proposer.propose(&node, &metrics, vec![w], bytes, limits);
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), got).await;
            assert_eq!(
                got.expect("answered within 10 s").unwrap(),
                Bytes::from(format!(":{}\r\n", 2 * round))
            );
        }
        // Nothing is left under way: the next write proposes at once.
        assert_eq!(proposer.lock().in_flight, 0);
        assert!(proposer.lock().queue.is_empty());
        let snapshot = metrics.snapshot();
        assert!(snapshot.write_batches < snapshot.write_batch_commands);
        let _ = node.shutdown().await;
    }
}
