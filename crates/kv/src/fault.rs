//! A bug put in on purpose, for the chaos suite to catch: with
//! [`EARLY_ACK`] set, a leader acknowledges a plain `SET` once the entry
//! that holds it is durable in its own log, before a majority has it.
//!
//! Acknowledged writes then survive everything but the loss of that
//! leader before its followers got them: its appends leave [`EARLY_ACK`]
//! milliseconds late ([`HeldBack`]; heartbeats pass at once, so no
//! election follows) so that the window is wide enough for a kill to land
//! in it. On a
//! healthy cluster the history stays linearizable, because in this mode
//! every read first commits a no-op write through the log
//! ([`barrier_write`]): it commits everything before it, so every read sees
//! every write acknowledged before it began. Killing the leader (or
//! cutting it off) loses the writes it acknowledged in the last moments:
//! a lost acknowledged write, which the chaos check must report.
//!
//! Never set it outside such tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::EntryPayload;
use raft_node::persistence::{Change, Persistence, PersistenceError, State};
use raft_node::transport::{Connection, Envelope, Handler, Posted, Reply, Request, Transport};
use raft_node::TransportError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

use crate::store::Write;

/// The environment variable that turns the bug on: how many milliseconds
/// the node's appends are held back (`0` acknowledges early without
/// holding anything back).
pub const EARLY_ACK: &str = "RAFT_KV_TEST_FAULT_EARLY_ACK";

/// The environment variable of a second bug (`1` turns it on): EXEC
/// ignores the keys its connection watched, so a transaction runs even if
/// one of them changed after WATCH. Every node must have it (it acts where
/// EXEC is applied).
pub const IGNORE_WATCH: &str = "RAFT_KV_TEST_FAULT_IGNORE_WATCH";

/// Whether EXEC ignores watched keys ([`IGNORE_WATCH`] is `1`).
pub fn ignore_watch() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var(IGNORE_WATCH).is_ok_and(|v| v == "1"))
}

/// The key the barrier of a read deletes (never set by anyone).
const BARRIER_KEY: &[u8] = b"\0raft-kv-test-fault-barrier";

/// The bug's state in this process: the writes waiting to be durable.
pub struct EarlyAck {
    /// How long appends are held back.
    pub hold: Duration,
    waiting: Mutex<Vec<(Bytes, oneshot::Sender<()>)>>,
}

static EARLY: OnceLock<Option<Arc<EarlyAck>>> = OnceLock::new();

/// The bug, if [`EARLY_ACK`] turns it on; an error for a value that is not
/// a number of milliseconds.
pub fn from_env() -> Result<Option<Arc<EarlyAck>>, String> {
    let Ok(value) = std::env::var(EARLY_ACK) else {
        return Ok(None);
    };
    let ms: u64 = value
        .parse()
        .map_err(|_| format!("{EARLY_ACK}={value:?}: expected milliseconds"))?;
    warn!("{EARLY_ACK}={ms}: acknowledging writes once durable on the leader alone, appends held back {ms} ms (a fault for tests: acknowledged writes can be lost)");
    let early = Arc::new(EarlyAck {
        hold: Duration::from_millis(ms),
        waiting: Mutex::new(Vec::new()),
    });
    Ok(EARLY.get_or_init(|| Some(early)).clone())
}

/// The bug, if this process has it on.
pub fn early_ack() -> Option<&'static EarlyAck> {
    EARLY.get().and_then(|e| e.as_deref())
}

impl EarlyAck {
    /// A receiver told once an entry holding `writes` (encoded as one
    /// entry would hold them) is durable in this node's log.
    pub fn when_durable(&self, writes: &[Write]) -> oneshot::Receiver<()> {
        let encoded = crate::store::encode_writes(writes);
        // Without the format byte: the writes may share an entry.
        let needle = encoded.slice(1..);
        let (tx, rx) = oneshot::channel();
        self.lock().push((needle, tx));
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Bytes, oneshot::Sender<()>)>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the writers whose writes `change` made durable.
    fn saved(&self, change: &Change) {
        let mut waiting = self.lock();
        waiting.retain(|(_, tx)| !tx.is_closed());
        if waiting.is_empty() {
            return;
        }
        for entry in &change.entries {
            let EntryPayload::Command(payload) = &entry.payload else {
                continue;
            };
            let mut i = 0;
            while i < waiting.len() {
                if contains(payload, &waiting[i].0) {
                    let (_, tx) = waiting.swap_remove(i);
                    let _ = tx.send(());
                } else {
                    i += 1;
                }
            }
        }
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The no-op write a read commits first in this mode.
pub fn barrier_write() -> Write {
    Write::Del {
        keys: vec![Bytes::from_static(BARRIER_KEY)],
    }
}

/// A store that tells [`EarlyAck`] what became durable.
pub struct Durable {
    inner: Arc<dyn Persistence>,
    early: &'static EarlyAck,
}

impl Durable {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Persistence>, early: &'static EarlyAck) -> Durable {
        Durable { inner, early }
    }
}

#[async_trait]
impl Persistence for Durable {
    async fn save(&self, change: Change) -> Result<(), PersistenceError> {
        let saved = if change.entries.is_empty() {
            None
        } else {
            Some(Change {
                entries: change.entries.clone(),
                ..Change::default()
            })
        };
        self.inner.save(change).await?;
        if let Some(c) = saved {
            self.early.saved(&c);
        }
        Ok(())
    }

    async fn load(&self) -> Result<Option<State>, PersistenceError> {
        self.inner.load().await
    }

    async fn mapped_snapshot(&self) -> Option<(raft_core::LogIndex, Bytes)> {
        self.inner.mapped_snapshot().await
    }
}

/// A transport whose outgoing appends (and snapshot chunks) leave `hold`
/// late, in the order they were sent; everything else (heartbeats, which
/// carry no entries, commit notices, responses, votes, forwarded
/// commands) passes at once: elections and reads go on as before, while a
/// write commits `hold` after it is durable on the leader.
pub struct HeldBack {
    inner: Arc<dyn Transport>,
    hold: Duration,
}

impl HeldBack {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Transport>, hold: Duration) -> HeldBack {
        HeldBack { inner, hold }
    }
}

#[async_trait]
impl Transport for HeldBack {
    async fn connect(&self, address: &str) -> Result<Arc<dyn Connection>, TransportError> {
        let inner = self.inner.connect(address).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(deliver(inner.clone(), rx));
        Ok(Arc::new(HeldConnection {
            inner,
            hold: self.hold,
            queue: tx,
        }))
    }

    async fn listen(
        &self,
        address: &str,
        handler: Arc<dyn Handler>,
    ) -> Result<String, TransportError> {
        self.inner.listen(address, handler).await
    }

    async fn shutdown(&self) -> Result<(), TransportError> {
        self.inner.shutdown().await
    }

    fn bind_node(&self, node_id: &str, cluster: &str) -> Result<(), TransportError> {
        self.inner.bind_node(node_id, cluster)
    }

    fn max_entry_bytes(&self) -> Option<usize> {
        self.inner.max_entry_bytes()
    }
}

/// A connection whose Raft messages wait in a queue.
struct HeldConnection {
    inner: Arc<dyn Connection>,
    hold: Duration,
    queue: mpsc::UnboundedSender<(Instant, Envelope)>,
}

/// Sends the queued messages of one connection, each when its time comes,
/// in order.
async fn deliver(
    inner: Arc<dyn Connection>,
    mut queue: mpsc::UnboundedReceiver<(Instant, Envelope)>,
) {
    let mut later: VecDeque<(Instant, Envelope)> = VecDeque::new();
    while let Some(next) = queue.recv().await {
        later.push_back(next);
        while let Some((at, envelope)) = later.pop_front() {
            tokio::time::sleep_until(at).await;
            if let Posted::Unsupported(envelope) = inner.post(envelope) {
                // Not connected yet, or a window full: one at a time
                // would hold up the rest behind a slow connect.
                let inner = inner.clone();
                tokio::spawn(async move { inner.invoke(envelope).await });
            }
            while let Ok(next) = queue.try_recv() {
                later.push_back(next);
            }
        }
    }
}

/// Whether `envelope` carries log entries (or a snapshot) to a follower.
fn carries_entries(envelope: &Envelope) -> bool {
    use raft_core::Body;
    matches!(
        &envelope.request,
        Request::Raft(m) if matches!(
            m.body,
            Body::Append(_) | Body::Snapshot(_)
        )
    )
}

#[async_trait]
impl Connection for HeldConnection {
    async fn invoke(&self, envelope: Envelope) -> Result<Reply, TransportError> {
        if carries_entries(&envelope) {
            tokio::time::sleep(self.hold).await;
        }
        self.inner.invoke(envelope).await
    }

    fn post(&self, envelope: Envelope) -> Posted {
        if !carries_entries(&envelope) {
            return self.inner.post(envelope);
        }
        match self.queue.send((Instant::now() + self.hold, envelope)) {
            Ok(()) => Posted::Sent,
            Err(e) => Posted::Unsupported(e.0 .1),
        }
    }

    async fn close(&self) -> Result<(), TransportError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_needle_is_found_anywhere_in_an_entry() {
        assert!(contains(b"abcdef", b"cde"));
        assert!(!contains(b"abcdef", b"cdf"));
        assert!(contains(b"abc", b""));
    }
}
