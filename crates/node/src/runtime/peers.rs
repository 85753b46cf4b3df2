//! One sender task per peer: it connects through the transport (again,
//! with backoff, after a failure), sends the Raft messages queued for that
//! peer in order, and drops them when the queue is full (Raft recovers lost
//! messages; a slow peer must not grow memory without bound).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use raft_core::Message;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::events::Event;
use crate::transport::{Connection, Envelope, Reply, Request, Transport, TransportError};

/// Messages queued for one peer before new ones are dropped.
pub(crate) const PEER_QUEUE: usize = 4096;

/// The raft loop's handle on a sender task.
pub(crate) struct Peer {
    tx: mpsc::UnboundedSender<Message>,
    /// Messages queued and not yet taken by the sender task.
    queued: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    pub connected: Arc<AtomicBool>,
}

/// Counters shared by all sender tasks.
#[derive(Debug, Default)]
pub(crate) struct PeerStats {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    /// Every failed send, the oversized ones included.
    pub failed: AtomicU64,
    /// Sends refused as larger than the transport carries to that peer
    /// ([`TransportError::TooLarge`]): the peer cannot catch up past them.
    pub oversized: AtomicU64,
}

/// What every sender task needs.
#[derive(Clone)]
pub(crate) struct SenderContext {
    pub transport: Arc<dyn Transport>,
    pub cluster: u64,
    pub from: Arc<str>,
    pub events: broadcast::Sender<Event>,
    pub stats: Arc<PeerStats>,
}

impl Peer {
    /// Starts the sender task for the peer `id` at `address`.
    pub(crate) fn start(ctx: SenderContext, id: String, address: String) -> Peer {
        let (tx, rx) = mpsc::unbounded_channel();
        let connected = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run(ctx, id, address, rx, queued.clone(), connected.clone()));
        Peer {
            tx,
            queued,
            task,
            connected,
        }
    }

    /// Queues a message; drops it if the queue is full.
    pub(crate) fn send(&self, m: Message, stats: &PeerStats) {
        if self.queued.load(Ordering::Relaxed) >= PEER_QUEUE {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(m).is_err() {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Messages handed to the transport and not yet answered, per peer: a lost
/// or slow message must not hold up the ones behind it.
const WINDOW: usize = 64;

/// A message in flight: the first log index it carries (for an append with
/// entries), and the outcome.
type InFlight = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Option<u64>, Result<Reply, TransportError>)> + Send>,
>;

async fn run(
    ctx: SenderContext,
    id: String,
    address: String,
    mut rx: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
    connected: Arc<AtomicBool>,
) {
    let mut conn: Option<Arc<dyn Connection>> = None;
    let mut backoff = Duration::from_millis(10);
    // After a failure, no new connection before this (messages meanwhile
    // are dropped: Raft sends them again).
    let mut next_connect = tokio::time::Instant::now();
    // Polled concurrently; first polled in the order pushed, which is the
    // order the transport delivers in.
    let mut inflight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    // The first entry index of the last message found too large (`None`
    // inside for a message without entries): each is warned about once.
    let mut oversized_at: Option<Option<u64>> = None;
    loop {
        tokio::select! {
            biased;
            Some((first_index, result)) = inflight.next(), if !inflight.is_empty() => {
                match result {
                    Err(TransportError::TooLarge { bytes, max_bytes }) => {
                        // Not the connection's fault: it stays. Raft sends the
                        // append again, and it fails again, so say it once.
                        ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                        ctx.stats.oversized.fetch_add(1, Ordering::Relaxed);
                        if oversized_at != Some(first_index) {
                            oversized_at = Some(first_index);
                            tracing::warn!(
                                peer = %id,
                                %address,
                                bytes,
                                max_bytes,
                                first_index,
                                "cannot send to a peer: the message is larger than the largest frame it accepts; it stays behind from this entry on (give every node the same maximum frame size)"
                            );
                            let _ = ctx.events.send(Event::Warning(format!(
                                "a message of {bytes} bytes to {id} exceeds the largest frame it accepts ({max_bytes} bytes)"
                            )));
                        }
                    }
                    Ok(Reply::Error(reason)) => {
                        // The peer refused (it is shutting down, or belongs to
                        // another cluster): start afresh, after a backoff.
                        ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                        if conn.take().is_some() {
                            next_connect = tokio::time::Instant::now() + backoff;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                        disconnected(&ctx, &id, &connected, reason);
                    }
                    Ok(_) => {
                        ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
                        backoff = Duration::from_millis(10);
                        if !connected.swap(true, Ordering::Relaxed) {
                            let _ = ctx.events.send(Event::PeerConnected { id: id.clone() });
                        }
                    }
                    Err(e) => {
                        ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                        if conn.take().is_some() {
                            next_connect = tokio::time::Instant::now() + backoff;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                        disconnected(&ctx, &id, &connected, e.to_string());
                    }
                }
            }
            m = rx.recv(), if inflight.len() < WINDOW => {
                let Some(m) = m else { break };
                queued.fetch_sub(1, Ordering::Relaxed);
                let c = match &conn {
                    Some(c) => c.clone(),
                    None if tokio::time::Instant::now() < next_connect => {
                        ctx.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    None => match ctx.transport.connect(&address).await {
                        Ok(c) => {
                            conn = Some(c.clone());
                            c
                        }
                        Err(e) => {
                            disconnected(&ctx, &id, &connected, e.to_string());
                            ctx.stats.dropped.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                            continue;
                        }
                    },
                };
                let first_index = match &m.body {
                    raft_core::Body::Append(a) => a.entries.first().map(|e| e.index),
                    _ => None,
                };
                let envelope = Envelope {
                    cluster: ctx.cluster,
                    from: ctx.from.clone(),
                    request: Request::Raft(m),
                };
                inflight.push(Box::pin(async move { (first_index, c.invoke(envelope).await) }));
            }
        }
    }
}

fn disconnected(ctx: &SenderContext, id: &str, connected: &AtomicBool, reason: String) {
    if connected.swap(false, Ordering::Relaxed) {
        let _ = ctx.events.send(Event::PeerDisconnected {
            id: id.to_string(),
            reason,
        });
    }
}
