//! Blocking list pops: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP.
//!
//! Linearizable by construction: every attempt to pop is an ordinary write
//! through the log (the store applies it as Redis runs the command inside
//! MULTI: it pops at once or replies null, see `store/lists.rs`), so one
//! log entry decides, on every node alike, which client gets an element.
//! Waiting is only a hint. When an attempt finds every list empty, the
//! connection waits for a wake-up and sends the same write again, until its
//! timeout; a timed-out client gets a null array, as from Redis.
//!
//! A wake-up ([`Wakeups`]) is a signal of this node: its store fires it for
//! every key an applied write changes (the same keys WATCH sees change),
//! and for every key when a snapshot replaces the store. The waiters of a
//! key are queued in arrival order and only the first is woken; it passes
//! the wake-up on to the next one when it leaves (it popped, failed, timed
//! out or disconnected), so that on one node the longest-waiting client is
//! served first and a push of one element costs one attempt, not one per
//! waiter. Waiters on different nodes are not ordered among themselves:
//! whichever attempt the log holds first wins.
//!
//! As a safety net, a waiter not woken for [`SAFETY_NET`] reads its keys in
//! this node's store and attempts again if one holds something.
//!
//! A blocked client keeps its connection (and its slot under the
//! connection limit); its socket is watched meanwhile, so a client that
//! disconnects stops waiting, as does every client when the server shuts
//! down. What it sends while blocked is kept and run after the reply.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use raft_node::NodeError;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::Settings;
use crate::connection::Connection;
use crate::context::Context;
use crate::proposer::Limits;
use crate::server::MAX_BATCH_BYTES;
use crate::store::{
    blocking_timeout_ms, encode_reads, encoded_write_len, mpop_args, Read, TypedCmd, Write,
};

/// The reply of every blocking pop that timed out, as Redis gives it: a
/// null array, BLMOVE's and BRPOPLPUSH's too (whose attempt, as inside
/// MULTI, replies a null bulk string).
const TIMED_OUT: &[u8] = b"*-1\r\n";

/// How long a waiter waits for a wake-up before it looks at its keys
/// itself.
pub const SAFETY_NET: Duration = Duration::from_secs(1);

/// The waiters of this node, by the keys they wait for.
#[derive(Debug, Default)]
pub struct Wakeups {
    /// The registered waiters: when 0, a change needs no lock.
    waiters: AtomicUsize,
    /// The waiters whose first attempt found nothing (blocked clients).
    blocked: AtomicUsize,
    /// Each key's waiters, oldest first; a key without waiters has no
    /// entry.
    queues: Mutex<HashMap<Bytes, VecDeque<Arc<Notify>>>>,
}

impl Wakeups {
    /// A registry without waiters.
    pub fn new() -> Wakeups {
        Wakeups::default()
    }

    /// The number of clients blocked: waiting, their first attempt having
    /// found nothing.
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Bytes, VecDeque<Arc<Notify>>>> {
        // A panic while holding it left the queues whole (no operation on
        // them panics midway): go on with them.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `key` changed: its oldest waiter is woken (or, if it is awake,
    /// attempts once more when it next waits).
    pub fn changed(&self, key: &[u8]) {
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        if let Some(first) = self.lock().get(key).and_then(VecDeque::front) {
            first.notify_one();
        }
    }

    /// Every key may have changed (a snapshot replaced the store): the
    /// oldest waiter of every key is woken.
    pub fn changed_all(&self) {
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        for first in self.lock().values().filter_map(VecDeque::front) {
            first.notify_one();
        }
    }

    /// Queues a new waiter on `keys` (each once), after the waiters there.
    pub fn register(self: &Arc<Self>, keys: &[Bytes]) -> Registration {
        let notify = Arc::new(Notify::new());
        let mut unique: Vec<Bytes> = Vec::with_capacity(keys.len());
        for k in keys {
            if !unique.contains(k) {
                unique.push(k.clone());
            }
        }
        {
            let mut queues = self.lock();
            for k in &unique {
                queues
                    .entry(k.clone())
                    .or_default()
                    .push_back(notify.clone());
            }
            self.waiters.fetch_add(1, Ordering::SeqCst);
        }
        Registration {
            wakeups: self.clone(),
            notify,
            keys: unique,
            blocked: false,
        }
    }
}

/// A waiter's place in the queues of its keys; dropping it leaves them,
/// passing the wake-up on to the next waiter of each key it was first of.
#[derive(Debug)]
pub struct Registration {
    wakeups: Arc<Wakeups>,
    notify: Arc<Notify>,
    keys: Vec<Bytes>,
    /// Counted in [`Wakeups::blocked`].
    blocked: bool,
}

impl Registration {
    /// Counts the waiter as blocked (once): its first attempt found
    /// nothing.
    pub fn blocked(&mut self) {
        if !std::mem::replace(&mut self.blocked, true) {
            self.wakeups.blocked.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Waits for a wake-up (at once if one came since the last).
    pub async fn woken(&self) {
        self.notify.notified().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut queues = self.wakeups.lock();
        for k in &self.keys {
            let Some(q) = queues.get_mut(k) else {
                continue;
            };
            let was_first = q.front().is_some_and(|n| Arc::ptr_eq(n, &self.notify));
            q.retain(|n| !Arc::ptr_eq(n, &self.notify));
            match q.front() {
                // It may have been woken for an element it did not take.
                Some(next) if was_first => next.notify_one(),
                Some(_) => {}
                None => {
                    queues.remove(k);
                }
            }
        }
        self.wakeups.waiters.fetch_sub(1, Ordering::SeqCst);
        if self.blocked {
            self.wakeups.blocked.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// True for a write that blocks when its lists are empty (one that has a
/// blocking timeout, valid or not).
pub fn is_blocking(w: &Write) -> bool {
    matches!(w, Write::Typed { cmd, args } if blocking_timeout_ms(*cmd, args).is_some())
}

/// Why a blocked client stopped waiting without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed its connection (or its socket failed).
    Disconnected,
    /// The server is shutting down.
    Shutdown,
}

/// How a blocking pop ended with a reply.
#[derive(Debug)]
pub struct Outcome {
    /// The reply, or the error of the last attempt.
    pub result: Result<Bytes, NodeError>,
    /// When the server's own work for the reply began (the last attempt,
    /// or the timeout): the command's latency counts from there, the wait
    /// before is not the server's.
    pub timed_from: Instant,
}

/// Runs a blocking pop (`w`, see [`is_blocking`]) for a client outside
/// MULTI: attempts until one pops or fails, or the timeout passes, each
/// attempt a write through the log within `--command-timeout-ms`; a
/// timed-out wait replies a null array (as Redis does, for BLMOVE too).
/// `Err` if the client left or the server is shutting down meanwhile.
pub async fn run(
    w: Write,
    ctx: &Context,
    settings: &Settings,
    conn: &mut Connection,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Outcome, Ended> {
    // Checked when parsed (the store would refuse it again): anything
    // else is one attempt.
    let blocks = match &w {
        Write::Typed { cmd, args } => match blocking_timeout_ms(*cmd, args) {
            Some(Ok(ms)) => Some((*cmd, args, ms)),
            _ => None,
        },
        _ => None,
    };
    let Some((cmd, args, timeout_ms)) = blocks else {
        let timed_from = Instant::now();
        return Ok(Outcome {
            result: attempt(&w, ctx, settings).await,
            timed_from,
        });
    };
    let deadline = (timeout_ms > 0)
        .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms)))
        .flatten();
    let keys: &[Bytes] = match cmd {
        TypedCmd::BLPop | TypedCmd::BRPop => &args[..args.len().saturating_sub(1)],
        TypedCmd::BLMPop => mpop_args(args.get(1..).unwrap_or_default()).map_or(&[], |m| m.0),
        _ => &args[..args.len().min(1)],
    };
    // In the queues before the first attempt: a change applied after it
    // wakes this waiter.
    let mut registration = ctx.wakeups.register(keys);
    loop {
        let timed_from = Instant::now();
        match attempt(&w, ctx, settings).await {
            Ok(reply) if is_null(&reply) => registration.blocked(),
            result => return Ok(Outcome { result, timed_from }),
        }
        // Waits for a reason to attempt again.
        loop {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = registration.woken() => break,
                _ = timeout => {
                    return Ok(Outcome {
                        result: Ok(Bytes::from_static(TIMED_OUT)),
                        timed_from: Instant::now(),
                    })
                }
                _ = tokio::time::sleep(SAFETY_NET) => {
                    if holds_something(keys, ctx).await {
                        break;
                    }
                }
                read = conn.read_while_blocked() => {
                    if !matches!(read, Ok(true)) {
                        return Err(Ended::Disconnected);
                    }
                }
                _ = stopping(shutdown) => return Err(Ended::Shutdown),
            }
        }
    }
}

/// Resolves once the server is shutting down (or its signal is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The borrow of the value ends here: it may not live across an await.
    let _ = shutdown.wait_for(|s| *s).await;
}

/// One attempt: the write through the log, alone in its request.
async fn attempt(w: &Write, ctx: &Context, settings: &Settings) -> Result<Bytes, NodeError> {
    let bytes = encoded_write_len(w);
    let limits = Limits {
        bytes: MAX_BATCH_BYTES.min(ctx.node.max_entry_bytes().unwrap_or(usize::MAX)),
        writes: settings.max_pipeline,
    };
    ctx.writes
        .propose(&ctx.node, &ctx.metrics, vec![w.clone()], bytes, limits)
        .await
}

/// The reply of an attempt that found nothing: a null array (BLPOP,
/// BRPOP, BLMPOP) or a null bulk string (BLMOVE, BRPOPLPUSH).
fn is_null(reply: &[u8]) -> bool {
    reply == b"*-1\r\n" || reply == b"$-1\r\n"
}

/// Whether one of `keys` holds something in this node's store (possibly
/// stale: only a hint to attempt again).
async fn holds_something(keys: &[Bytes], ctx: &Context) -> bool {
    let reads: Vec<Read> = keys
        .iter()
        .map(|k| Read::Typed {
            cmd: TypedCmd::Type,
            args: vec![k.clone()],
        })
        .collect();
    match ctx.node.read_local(encode_reads(&reads)).await {
        Ok(answer) => answer != b"+none\r\n".repeat(keys.len()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<Bytes> {
        names.iter().map(|k| Bytes::from(k.to_string())).collect()
    }

    /// Whether `r` has a wake-up waiting.
    async fn is_woken(r: &Registration) -> bool {
        tokio::time::timeout(Duration::from_millis(20), r.woken())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_oldest_waiter_is_woken_and_passes_it_on() {
        let w = Arc::new(Wakeups::new());
        w.changed(b"a"); // No waiter: nothing to do.
        let first = w.register(&keys(&["a", "b"]));
        let second = w.register(&keys(&["a"]));
        let mut third = w.register(&keys(&["b", "b"]));
        assert_eq!(w.blocked(), 0, "none has attempted yet");
        third.blocked();
        third.blocked();
        assert_eq!(w.blocked(), 1);
        w.changed(b"a");
        assert!(is_woken(&first).await);
        assert!(!is_woken(&second).await, "only the oldest");
        w.changed(b"c");
        assert!(!is_woken(&first).await);
        // A wake-up that comes while the waiter attempts is kept for it.
        w.changed(b"a");
        w.changed(b"a");
        assert!(is_woken(&first).await);
        assert!(!is_woken(&first).await, "one wake-up, however many changes");
        // Leaving passes it on, on every key it was first of.
        drop(first);
        assert!(is_woken(&second).await);
        assert!(is_woken(&third).await);
        // The last waiter of a key leaves no queue behind.
        drop(second);
        drop(third);
        assert_eq!(w.blocked(), 0);
        assert!(w.lock().is_empty());
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_behind_the_first_wakes_no_one() {
        let w = Arc::new(Wakeups::new());
        let first = w.register(&keys(&["a"]));
        let second = w.register(&keys(&["a"]));
        let third = w.register(&keys(&["a"]));
        drop(second);
        assert!(!is_woken(&first).await);
        assert!(!is_woken(&third).await);
        w.changed_all();
        assert!(is_woken(&first).await);
        assert!(!is_woken(&third).await);
    }

    #[tokio::test]
    async fn the_store_wakes_the_waiters_of_the_keys_it_changes() {
        use crate::store::{encode_writes, KvStore};
        use raft_node::StateMachine;
        let w = Arc::new(Wakeups::new());
        let mut s = KvStore::new().waking(w.clone());
        let apply = |s: &mut KvStore, index: u64, line: &str| {
            let crate::cmd::Command::Write(write) = crate::cmd::tests::p(line) else {
                panic!("{line} is not a write")
            };
            s.apply(index, &encode_writes(&[write]));
        };
        let r = w.register(&keys(&["k"]));
        apply(&mut s, 1, "SET other 1");
        assert!(!is_woken(&r).await, "another key");
        apply(&mut s, 2, "LPOP k");
        assert!(!is_woken(&r).await, "a write that changed nothing");
        apply(&mut s, 3, "RPUSH k a");
        assert!(is_woken(&r).await);
        apply(&mut s, 4, "LMOVE k k LEFT LEFT");
        assert!(is_woken(&r).await);
        apply(&mut s, 5, "COPY other k");
        assert!(!is_woken(&r).await, "COPY without REPLACE onto a key");
        apply(&mut s, 6, "DEL k");
        assert!(is_woken(&r).await);
        apply(&mut s, 7, "RENAME other k");
        assert!(is_woken(&r).await);
        let snapshot = s.snapshot();
        s.restore(snapshot).unwrap();
        assert!(is_woken(&r).await, "a snapshot may change any key");
    }

    #[test]
    fn only_the_blocking_pops_block() {
        let parse = |s: &str| match crate::cmd::tests::p(s) {
            crate::cmd::Command::Write(w) => w,
            other => panic!("{other:?}"),
        };
        assert!(is_blocking(&parse("BLPOP a b 0")));
        assert!(is_blocking(&parse("BRPOP a 1")));
        assert!(is_blocking(&parse("BLMOVE a b LEFT LEFT 1")));
        assert!(is_blocking(&parse("BRPOPLPUSH a b 1")));
        assert!(is_blocking(&parse("BLMPOP 1 2 a b LEFT COUNT 2")));
        assert!(!is_blocking(&parse("LPOP a")));
        assert!(!is_blocking(&parse("LMPOP 1 a LEFT")));
        assert!(!is_blocking(&parse("LMOVE a b LEFT LEFT")));
        assert!(is_null(b"*-1\r\n") && is_null(b"$-1\r\n"));
        assert!(!is_null(b"*0\r\n"));
    }
}
