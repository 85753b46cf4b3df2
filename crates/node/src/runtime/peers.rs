//! One sender task per peer: it connects through the transport (again,
//! with backoff, after a failure), sends the Raft messages queued for that
//! peer in order, and drops them when the queue is full (Raft recovers lost
//! messages; a slow peer must not grow memory without bound). Messages go
//! as one-way posts when the transport takes them, else as requests whose
//! replies are awaited. A member's task also probes it (a `Hello`) when it
//! invoked nothing for a heartbeat interval (posts do not count: they are
//! not answered), so that a peer counts as connected only while it
//! answers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use raft_core::Message;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::events::Event;
use crate::transport::{Connection, Envelope, Posted, Reply, Request, Transport, TransportError};

/// Messages queued for one peer before new ones are dropped.
pub(crate) const PEER_QUEUE: usize = 4096;

/// The raft loop's handle on a sender task.
pub(crate) struct Peer {
    tx: mpsc::UnboundedSender<Message>,
    /// Messages queued and not yet taken by the sender task.
    queued: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    link: Arc<Link>,
    connected_for: Duration,
    epoch: tokio::time::Instant,
}

/// What a sender task and the raft loop share about the peer.
#[derive(Debug)]
struct Link {
    /// The last message got through (and no failure since).
    connected: AtomicBool,
    /// When a message or probe was last answered, in milliseconds after
    /// `SenderContext::epoch` (0: never).
    answered_ms: AtomicU64,
    /// Probe the peer while idle (it is a member).
    probe: AtomicBool,
    /// Wakes the task when probing is turned on.
    probe_changed: tokio::sync::Notify,
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
    /// How long a member's task stays idle before it probes the peer (the
    /// heartbeat interval).
    pub probe_interval: Duration,
    /// How long after its last answer a peer still counts as connected
    /// (the longest election timeout).
    pub connected_for: Duration,
    /// Where `Link::answered_ms` counts from.
    pub epoch: tokio::time::Instant,
    /// Where each peer's clients reach it: every new connection starts
    /// with a `Hello`, whose answer says.
    pub client_addresses: crate::runtime::ClientAddresses,
}

impl SenderContext {
    fn now_ms(&self) -> u64 {
        // At least 1: 0 means never.
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }
}

impl Peer {
    /// Starts the sender task for the peer `id` at `address`.
    pub(crate) fn start(ctx: SenderContext, id: String, address: String) -> Peer {
        let (tx, rx) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            connected: AtomicBool::new(false),
            answered_ms: AtomicU64::new(0),
            probe: AtomicBool::new(false),
            probe_changed: tokio::sync::Notify::new(),
        });
        let queued = Arc::new(AtomicUsize::new(0));
        let connected_for = ctx.connected_for;
        let epoch = ctx.epoch;
        let task = tokio::spawn(run(ctx, id, address, rx, queued.clone(), link.clone()));
        Peer {
            tx,
            queued,
            task,
            link,
            connected_for,
            epoch,
        }
    }

    /// Whether the peer answered within the last `connected_for` and
    /// nothing failed since.
    pub(crate) fn is_connected(&self) -> bool {
        let answered = self.link.answered_ms.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        self.link.connected.load(Ordering::Relaxed)
            && answered != 0
            && now.saturating_sub(answered) <= self.connected_for.as_millis() as u64
    }

    /// Probes the peer while idle (a member), or not (a former member, a
    /// node not yet added).
    pub(crate) fn probe(&self, on: bool) {
        if self.link.probe.swap(on, Ordering::Relaxed) != on {
            self.link.probe_changed.notify_one();
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

/// A message in flight: whether it is a probe, the first log index it
/// carries (for an append with entries), and the outcome.
type InFlight = std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>>;

async fn run(
    ctx: SenderContext,
    id: String,
    address: String,
    mut rx: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
    link: Arc<Link>,
) {
    let mut conn: Option<Arc<dyn Connection>> = None;
    let mut backoff = Duration::from_millis(10);
    // After a failure, no new connection before this (messages meanwhile
    // are dropped: Raft sends them again).
    let mut next_connect = tokio::time::Instant::now();
    // When the last message or probe was handed to the transport.
    let mut last_sent = tokio::time::Instant::now();
    // Polled concurrently; first polled in the order pushed, which is the
    // order the transport delivers in. Each carries whether it is a probe.
    let mut inflight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    // The first entry index of the last message found too large (`None`
    // inside for a message without entries): each is warned about once.
    let mut oversized_at: Option<Option<u64>> = None;
    // A message the transport answered on its first poll, handled next.
    let mut answered: Option<Done> = None;
    loop {
        let probing = link.probe.load(Ordering::Relaxed);
        let probe_at = last_sent.max(next_connect) + ctx.probe_interval;
        tokio::select! {
            biased;
            Some((probe, first_index, result)) = next_done(&mut answered, &mut inflight), if answered.is_some() || !inflight.is_empty() => {
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
                        if !probe {
                            ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        if conn.take().is_some() {
                            next_connect = tokio::time::Instant::now() + backoff;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                        disconnected(&ctx, &id, &link, reason);
                    }
                    Ok(reply) => {
                        if !probe {
                            ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Reply::Hello { client_address, .. } = &reply {
                            if !client_address.is_empty() {
                                ctx.client_addresses.learn(&id, client_address);
                            }
                        }
                        backoff = Duration::from_millis(10);
                        link.answered_ms.store(ctx.now_ms(), Ordering::Relaxed);
                        if !link.connected.swap(true, Ordering::Relaxed) {
                            let _ = ctx.events.send(Event::PeerConnected { id: id.clone() });
                        }
                    }
                    Err(e) => {
                        if !probe {
                            ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        if conn.take().is_some() {
                            next_connect = tokio::time::Instant::now() + backoff;
                            backoff = (backoff * 2).min(Duration::from_secs(1));
                        }
                        disconnected(&ctx, &id, &link, e.to_string());
                    }
                }
            }
            m = rx.recv(), if inflight.len() < WINDOW => {
                let Some(m) = m else { break };
                queued.fetch_sub(1, Ordering::Relaxed);
                let Some((c, fresh)) = connection(&ctx, &id, &address, &link, &mut conn, &mut backoff, next_connect).await else {
                    ctx.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if fresh {
                    start(hello(&ctx, c.clone()), &mut inflight, &mut answered);
                }
                let first_index = match &m.body {
                    raft_core::Body::Append(a) => a.entries.first().map(|e| e.index),
                    _ => None,
                };
                let envelope = Envelope {
                    cluster: ctx.cluster,
                    from: ctx.from.clone(),
                    request: Request::Raft(m),
                };
                // Posted when the transport can (no reply to wait for; the
                // probes, which do not wait for idleness then, tell whether
                // the peer answers), else invoked.
                match c.post(envelope) {
                    Posted::Sent => {
                        ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Posted::Failed(e) => {
                        inflight.push(Box::pin(async move { (false, first_index, Err(e)) }));
                    }
                    Posted::Unsupported(envelope) => {
                        last_sent = tokio::time::Instant::now();
                        let sending: InFlight = Box::pin(async move { (false, first_index, c.invoke(envelope).await) });
                        start(sending, &mut inflight, &mut answered);
                    }
                }
            }
            _ = tokio::time::sleep_until(probe_at), if probing && inflight.is_empty() => {
                last_sent = tokio::time::Instant::now();
                let Some((c, _)) = connection(&ctx, &id, &address, &link, &mut conn, &mut backoff, next_connect).await else {
                    continue;
                };
                start(hello(&ctx, c), &mut inflight, &mut answered);
            }
            _ = link.probe_changed.notified(), if !probing => {}
        }
    }
}

/// What a message in flight came to.
type Done = (bool, Option<u64>, Result<Reply, TransportError>);

/// The message answered on its first poll, if any, else the next one of
/// `inflight` to finish.
async fn next_done(
    answered: &mut Option<Done>,
    inflight: &mut FuturesUnordered<InFlight>,
) -> Option<Done> {
    match answered.take() {
        Some(done) => Some(done),
        None => inflight.next().await,
    }
}

/// Polls `sending` once, so that it is under way before anything sent
/// after it (a later post must not overtake it), and keeps it until it is
/// done: in `inflight`, or in `answered` if the transport answered at once
/// (in memory), which then costs no task node.
fn start(
    mut sending: InFlight,
    inflight: &mut FuturesUnordered<InFlight>,
    answered: &mut Option<Done>,
) {
    match poll_once(sending.as_mut()) {
        Poll::Ready(done) if answered.is_none() => *answered = Some(done),
        Poll::Ready(done) => inflight.push(Box::pin(std::future::ready(done))),
        Poll::Pending => inflight.push(sending),
    }
}

/// Polls `future` once, without a waker: a transport that answers at once
/// is done; any other is polled again (with a waker) in `inflight`.
fn poll_once<F: std::future::Future + ?Sized>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

/// A `Hello` to the peer on `c` (a probe: its answer says the peer is up,
/// and where its clients reach it).
fn hello(ctx: &SenderContext, c: Arc<dyn Connection>) -> InFlight {
    let envelope = Envelope {
        cluster: ctx.cluster,
        from: ctx.from.clone(),
        request: Request::Hello,
    };
    Box::pin(async move { (true, None, c.invoke(envelope).await) })
}

/// The connection to the peer: the one open (`false`), or a new one
/// (`true`) unless it is too early after a failure (`None`: nothing to
/// send on now).
async fn connection(
    ctx: &SenderContext,
    id: &str,
    address: &str,
    link: &Link,
    conn: &mut Option<Arc<dyn Connection>>,
    backoff: &mut Duration,
    next_connect: tokio::time::Instant,
) -> Option<(Arc<dyn Connection>, bool)> {
    if let Some(c) = conn {
        return Some((c.clone(), false));
    }
    if tokio::time::Instant::now() < next_connect {
        return None;
    }
    match ctx.transport.connect(address).await {
        Ok(c) => {
            *conn = Some(c.clone());
            Some((c, true))
        }
        Err(e) => {
            disconnected(ctx, id, link, e.to_string());
            tokio::time::sleep(*backoff).await;
            *backoff = (*backoff * 2).min(Duration::from_secs(1));
            None
        }
    }
}

fn disconnected(ctx: &SenderContext, id: &str, link: &Link, reason: String) {
    if link.connected.swap(false, Ordering::Relaxed) {
        let _ = ctx.events.send(Event::PeerDisconnected {
            id: id.to_string(),
            reason,
        });
    }
}
