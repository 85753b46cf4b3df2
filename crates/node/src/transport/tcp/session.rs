//! One established TCP connection (after the handshake), on either side: a
//! writer task that batches frames onto the socket, and a reader task that
//! matches replies to waiting requests and runs the handler for requests
//! (first polled in arrival order, then concurrently, at most
//! `max_in_flight` at once).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::frame::{self, Frame, FrameDecoder, FrameError, FrameKind, Hello};
use super::stream::{self as peer_stream, PeerAuth, PeerStream, ReadHalf, WriteHalf};
use super::{add_bytes, bump, lock, Shared};
use crate::codec::{decode_envelope, decode_reply};
use crate::transport::{Handler, Reply, Request, TransportError};

/// How much the reader asks the socket for at least, per read.
const READ_CHUNK: usize = 64 * 1024;

/// The most bytes the writer gathers into one vectored write.
const WRITE_BATCH_BYTES: usize = 1 << 20;

/// The most frames the writer gathers into one batch.
const WRITE_BATCH_FRAMES: usize = 256;

/// Where a waiting request's outcome goes.
pub(crate) type Waiter = oneshot::Sender<Result<Reply, TransportError>>;

/// Something for the writer task.
pub(crate) enum Out {
    /// A frame (request, cancel, close, listen).
    Frame(Bytes),
    /// A reply frame: counted until written (the reader's window).
    Reply(Bytes),
    /// A post frame: counted until written (bounds what a peer that does
    /// not read makes this side hold).
    Post(Bytes),
    /// Write what came before, then shut the socket down and stop.
    Shutdown,
}

/// Which end of the TCP connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// This side connected.
    Dialed,
    /// A listener accepted it.
    Accepted,
}

/// Requests this side sent over the session and waits replies for.
#[derive(Default)]
struct Pending {
    /// Set when the session dies: nothing more is registered.
    closed: Option<Arc<str>>,
    waiters: HashMap<u64, Waiter>,
}

/// How a session failed: what its waiting requests get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The connection broke or the peer closed it:
    /// [`TransportError::Unreachable`].
    Lost,
    /// This side closed it: [`TransportError::Closed`].
    Closed,
}

/// One established connection.
pub(crate) struct Session {
    /// A serial number, for logs and registries.
    pub serial: u64,
    /// Who the peer is, for errors and logs (the address dialed, or the
    /// remote socket address).
    pub peer: String,
    /// The peer's handshake.
    pub hello: Hello,
    pub side: Side,
    /// Who the peer proved to be (TLS); `None` on a plain connection.
    pub auth: Option<PeerAuth>,
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Out>,
    dead: watch::Sender<Option<Arc<str>>>,
    handler: Mutex<Option<Arc<dyn Handler>>>,
    pending: Mutex<Pending>,
    /// Signalled when a waiting request is answered or given up (the
    /// sender's window moved).
    pub freed: Notify,
    /// Reply frames queued and not yet written.
    unwritten: Arc<AtomicUsize>,
    /// Signalled when reply frames were written.
    written: Arc<Notify>,
    /// Post frames queued and not yet written.
    unposted: Arc<AtomicUsize>,
    /// Ids for requests sent over a back channel.
    next_id: AtomicU64,
}

impl Session {
    /// Starts the reader and writer tasks on `stream`, whose handshake is
    /// done (`buffered`: bytes read past the handshake).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        shared: Arc<Shared>,
        stream: PeerStream,
        buffered: BytesMut,
        side: Side,
        peer: String,
        hello: Hello,
        auth: Option<PeerAuth>,
        handler: Option<Arc<dyn Handler>>,
    ) -> Arc<Session> {
        let (read, write) = peer_stream::split(stream);
        let (out, rx) = mpsc::unbounded_channel();
        let (dead, _) = watch::channel(None);
        let session = Arc::new(Session {
            serial: shared.serial(),
            peer,
            hello,
            side,
            auth,
            shared,
            out,
            dead,
            handler: Mutex::new(handler),
            pending: Mutex::new(Pending::default()),
            freed: Notify::new(),
            unwritten: Arc::new(AtomicUsize::new(0)),
            written: Arc::new(Notify::new()),
            unposted: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(write_loop(
            Arc::downgrade(&session),
            session.shared.clone(),
            write,
            rx,
            session.dead.subscribe(),
            session.unwritten.clone(),
            session.written.clone(),
            session.unposted.clone(),
            session.shared.options.connect_timeout,
        ));
        tokio::spawn(read_loop(session.clone(), read, buffered));
        session
    }

    /// The transport's shared state.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The largest frame the peer accepts.
    pub(crate) fn peer_max_frame(&self) -> usize {
        self.hello.max_frame as usize
    }

    /// How many requests this side keeps in flight: its own limit, or the
    /// peer's if lower.
    pub(crate) fn window(&self) -> usize {
        let theirs = self.hello.max_in_flight as usize;
        self.shared.options.max_in_flight.min(theirs).max(1)
    }

    /// A fresh request id (back channels).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `out` for the writer; false if the writer is gone.
    pub(crate) fn send(&self, out: Out) -> bool {
        self.out.send(out).is_ok()
    }

    /// Queues a post frame for the writer, unless the window's worth of
    /// posts wait to be written already (the peer does not read) or the
    /// writer is gone; false then.
    pub(crate) fn post(&self, frame: Bytes) -> bool {
        if self.unposted.fetch_add(1, Ordering::AcqRel) >= self.window()
            || !self.send(Out::Post(frame))
        {
            self.unposted.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Why the session died, if it did.
    pub(crate) fn dead_reason(&self) -> Option<Arc<str>> {
        self.dead.borrow().clone()
    }

    /// Waits until the session dies; why.
    pub(crate) async fn died(&self) -> Arc<str> {
        let mut rx = self.dead.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The sender lives in `self`: not reached.
            Err(_) => None,
        };
        reason.unwrap_or_else(|| Arc::from("closed"))
    }

    /// Sets (or replaces) the handler for requests the peer sends.
    pub(crate) fn set_handler(&self, handler: Arc<dyn Handler>) {
        *lock(&self.handler) = Some(handler);
    }

    /// Hands no more requests to the handler (they are answered with an
    /// error until the session closes).
    pub(crate) fn stop_serving(&self) {
        let old = lock(&self.handler).take();
        drop(old);
    }

    /// Requests sent and not answered.
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.pending).waiters.len()
    }

    /// Registers `waiter` for the reply to request `id`. Gives it back if
    /// its invoke was given up (`None`) or the session died (`Some(error)`).
    pub(crate) fn register(
        &self,
        id: u64,
        waiter: Waiter,
    ) -> Result<(), (Waiter, Option<TransportError>)> {
        let mut pending = lock(&self.pending);
        if waiter.is_closed() {
            return Err((waiter, None));
        }
        if let Some(reason) = &pending.closed {
            // Not written: the request never reached the peer.
            let error = TransportError::Unreachable {
                address: self.peer.clone(),
                reason: format!("connection lost: {reason}"),
            };
            return Err((waiter, Some(error)));
        }
        pending.waiters.insert(id, waiter);
        Ok(())
    }

    /// The caller of request `id` gave up: forgets it and tells the peer
    /// (a `Cancel` frame) if it was waiting.
    pub(crate) fn abandon(&self, id: u64) {
        let removed = lock(&self.pending).waiters.remove(&id);
        if removed.is_some() {
            self.freed.notify_one();
            let _ = self.send(Out::Frame(frame::encode_frame(FrameKind::Cancel, id, &[])));
        }
    }

    /// The error of a request written to a connection that broke before
    /// its reply came: the peer may have handled it.
    fn lost(&self, reason: &str) -> TransportError {
        TransportError::Lost {
            address: self.peer.clone(),
            reason: format!("connection lost: {reason}"),
        }
    }

    /// Ends the session: waiting requests fail, the tasks stop (the writer
    /// writes what was queued first, for at most the connect timeout).
    pub(crate) fn kill(&self, reason: &str, ending: Ending) {
        let reason: Arc<str> = Arc::from(reason);
        let first = self.dead.send_if_modified(|dead| {
            if dead.is_none() {
                *dead = Some(reason.clone());
                true
            } else {
                false
            }
        });
        if !first {
            return;
        }
        let waiters = {
            let mut pending = lock(&self.pending);
            pending.closed = Some(reason.clone());
            std::mem::take(&mut pending.waiters)
        };
        for (_, waiter) in waiters {
            let error = match ending {
                Ending::Lost => self.lost(&reason),
                Ending::Closed => TransportError::Closed {
                    address: self.peer.clone(),
                },
            };
            let _ = waiter.send(Err(error));
        }
        self.freed.notify_one();
        let _ = self.send(Out::Shutdown);
        tracing::debug!(peer = %self.peer, serial = self.serial, %reason, "TCP connection closed");
    }

    /// Tells the peer why (a `Close` frame), then ends the session.
    pub(crate) fn close(&self, reason: &str) {
        if self.dead_reason().is_none() {
            let _ = self.send(Out::Frame(frame::close_frame(reason)));
        }
        self.kill(reason, Ending::Closed);
    }

    /// Closes the session for a protocol violation by the peer: logged,
    /// counted, and the peer told why.
    fn violation(&self, counter: &AtomicU64, reason: &str) -> String {
        bump(counter);
        tracing::warn!(
            peer = %self.peer,
            node = %self.hello.node,
            %reason,
            "closing a TCP connection: the peer broke the protocol"
        );
        let _ = self.send(Out::Frame(frame::close_frame(reason)));
        reason.to_owned()
    }

    /// Queues a reply to request `id` (an error if it is too large for the
    /// peer).
    fn reply(&self, id: u64, reply: Reply) {
        let (mut bytes, length) = frame::reply_frame(id, &reply);
        if length > self.peer_max_frame() {
            let error = Reply::Error(format!(
                "the reply of {length} bytes exceeds the peer's maximum frame size of {} bytes",
                self.peer_max_frame()
            ));
            bytes = frame::reply_frame(id, &error).0;
        }
        self.unwritten.fetch_add(1, Ordering::AcqRel);
        if !self.send(Out::Reply(bytes)) {
            self.unwritten.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A handler future: the request id with the reply (`None` if it was
/// cancelled), or `None` for a post (not answered).
type Running = Pin<Box<dyn Future<Output = Option<(u64, Option<Reply>)>> + Send>>;

/// Why reading stopped.
enum ReadError {
    Io(io::Error),
    Frame(FrameError),
    /// The peer closed the connection in the middle of a frame.
    Truncated,
}

/// Reads the next frame: `Ok(None)` at a clean end of stream. Cancel-safe:
/// bytes read stay in `buf` (and are counted in `received` as read).
async fn read_frame(
    read: &mut ReadHalf,
    buf: &mut BytesMut,
    decoder: &FrameDecoder,
    received: &AtomicU64,
) -> Result<Option<Frame>, ReadError> {
    loop {
        if let Some(frame) = decoder.decode(buf).map_err(ReadError::Frame)? {
            return Ok(Some(frame));
        }
        buf.reserve(decoder.missing(buf).max(READ_CHUNK));
        let n = read.read_buf(buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Truncated)
            };
        }
        add_bytes(received, n);
    }
}

async fn read_loop(session: Arc<Session>, mut read: ReadHalf, mut buf: BytesMut) {
    let reason = serve(&session, &mut read, &mut buf).await;
    session.kill(&reason, Ending::Lost);
    if session.side == Side::Accepted {
        let mut accepted = lock(&session.shared.accepted);
        accepted.sessions.remove(&session.serial);
        let stale: Vec<String> = accepted
            .back_channels
            .iter()
            .filter(|(_, s)| s.upgrade().is_none_or(|s| Arc::ptr_eq(&s, &session)))
            .map(|(address, _)| address.clone())
            .collect();
        for address in stale {
            accepted.back_channels.remove(&address);
        }
    }
}

/// The reader's loop; returns why it stopped.
async fn serve(session: &Arc<Session>, read: &mut ReadHalf, buf: &mut BytesMut) -> String {
    let options = &session.shared.options;
    let decoder = FrameDecoder::new(options.max_frame_size);
    let received = &session.shared.counters.bytes_received;
    let mut running: FuturesUnordered<Running> = FuturesUnordered::new();
    let mut cancels: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
    let mut dead = session.dead.subscribe();
    // A request read while every handler slot is taken waits here (and
    // reading stops) until a slot frees; meanwhile the frames before it,
    // cancels included, have been handled.
    let mut stalled: Option<Frame> = None;
    loop {
        if let Some(reason) = session.dead_reason() {
            return reason.to_string();
        }
        let busy =
            running.len() + session.unwritten.load(Ordering::Acquire) >= options.max_in_flight;
        if !busy {
            if let Some(frame) = stalled.take() {
                if let Err(reason) = dispatch(session, frame, &mut running, &mut cancels) {
                    return reason;
                }
                continue;
            }
        }
        tokio::select! {
            biased;
            _ = dead.changed() => {}
            Some(done) = running.next(), if !running.is_empty() => {
                if let Some((id, reply)) = done {
                    cancels.remove(&id);
                    if let Some(reply) = reply {
                        session.reply(id, reply);
                    }
                }
            }
            _ = session.written.notified(), if busy => {}
            read = read_frame(read, buf, &decoder, received), if stalled.is_none() => {
                let frame = match read {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return "the peer closed the connection".to_owned(),
                    Err(ReadError::Truncated) => {
                        return "the peer closed the connection in the middle of a frame".to_owned()
                    }
                    Err(ReadError::Io(e)) => return format!("read error: {e}"),
                    Err(ReadError::Frame(e)) => return frame_violation(session, &e),
                };
                if busy && matches!(frame.kind, FrameKind::Request | FrameKind::Post) {
                    stalled = Some(frame);
                } else if let Err(reason) = dispatch(session, frame, &mut running, &mut cancels) {
                    return reason;
                }
            }
        }
    }
}

/// Closes for a bad frame head, with the counter of its kind.
fn frame_violation(session: &Session, error: &FrameError) -> String {
    let counters = &session.shared.counters;
    let counter = match error {
        FrameError::Oversized { .. } => &counters.oversized_frames,
        FrameError::TooShort { .. } => &counters.malformed_frames,
        FrameError::UnknownKind(_) => &counters.unknown_frames,
    };
    session.violation(counter, &error.to_string())
}

/// Acts on one frame; `Err(reason)` closes the session.
fn dispatch(
    session: &Arc<Session>,
    frame: Frame,
    running: &mut FuturesUnordered<Running>,
    cancels: &mut HashMap<u64, oneshot::Sender<()>>,
) -> Result<(), String> {
    let counters = &session.shared.counters;
    match frame.kind {
        FrameKind::Request => {
            let envelope = decode_envelope(&frame.payload).map_err(|e| {
                session.violation(&counters.malformed_frames, &format!("bad request: {e}"))
            })?;
            bump(&counters.requests_received);
            if let (Some(auth), Request::Raft(message)) = (&session.auth, &envelope.request) {
                if message.from != auth.node {
                    return Err(session.violation(
                        &counters.sender_mismatches,
                        &format!(
                            "a Raft message from node number {} on the connection of node {:?}: a node speaks only for itself",
                            message.from, session.hello.node
                        ),
                    ));
                }
            }
            let handler = lock(&session.handler).clone();
            let Some(handler) = handler else {
                session.reply(
                    frame.id,
                    Reply::Error("this side takes no requests over this connection".into()),
                );
                return Ok(());
            };
            let (cancel, cancelled) = oneshot::channel();
            // A peer reusing an id cancels the older request.
            cancels.insert(frame.id, cancel);
            let id = frame.id;
            let limit = envelope
                .request
                .reply_timeout(session.shared.options.handler_timeout);
            // Pushed in arrival order: FuturesUnordered first polls new
            // futures in the order pushed, so `handle` futures start in
            // the order the requests arrived.
            running.push(Box::pin(async move {
                let handle = handler.handle(envelope);
                tokio::select! {
                    biased;
                    _ = cancelled => Some((id, None)),
                    reply = tokio::time::timeout(limit, handle) => {
                        let reply = reply.unwrap_or_else(|_| Reply::Error(format!(
                            "the handler did not answer within {} ms",
                            super::millis(limit)
                        )));
                        Some((id, Some(reply)))
                    }
                }
            }));
        }
        FrameKind::Post => {
            let envelope = decode_envelope(&frame.payload).map_err(|e| {
                session.violation(&counters.malformed_frames, &format!("bad post: {e}"))
            })?;
            let Request::Raft(message) = &envelope.request else {
                return Err(session.violation(
                    &counters.malformed_frames,
                    "a post that is not a Raft message",
                ));
            };
            bump(&counters.requests_received);
            if let Some(auth) = &session.auth {
                if message.from != auth.node {
                    return Err(session.violation(
                        &counters.sender_mismatches,
                        &format!(
                            "a Raft message from node number {} on the connection of node {:?}: a node speaks only for itself",
                            message.from, session.hello.node
                        ),
                    ));
                }
            }
            // Nobody to tell when no handler takes it: it is dropped, as
            // Raft messages may be.
            let Some(handler) = lock(&session.handler).clone() else {
                return Ok(());
            };
            // Taken at once when the handler can (no future); else polled
            // first in arrival order, like requests. Either way it starts
            // after the frames before it: the reader polls every handler
            // future it pushed before it reads the next frame.
            let Err(envelope) = handler.post(envelope) else {
                return Ok(());
            };
            let limit = session.shared.options.handler_timeout;
            running.push(Box::pin(async move {
                let _ = tokio::time::timeout(limit, handler.handle(envelope)).await;
                None
            }));
        }
        FrameKind::Reply => {
            let reply = decode_reply(&frame.payload).map_err(|e| {
                session.violation(&counters.malformed_frames, &format!("bad reply: {e}"))
            })?;
            let waiter = lock(&session.pending).waiters.remove(&frame.id);
            // A reply to a request given up is dropped.
            if let Some(waiter) = waiter {
                let _ = waiter.send(Ok(reply));
                session.freed.notify_one();
            }
        }
        FrameKind::Cancel => {
            if let Some(cancel) = cancels.remove(&frame.id) {
                let _ = cancel.send(());
            }
        }
        FrameKind::Close => {
            let reason = frame::decode_close(&frame.payload);
            tracing::info!(peer = %session.peer, node = %session.hello.node, %reason, "the peer closed the TCP connection");
            return Err(format!("closed by the peer: {reason}"));
        }
        FrameKind::Hello => {
            return Err(session.violation(
                &counters.malformed_frames,
                "a second handshake on an established connection",
            ));
        }
        FrameKind::Listen => {
            if session.side == Side::Accepted {
                super::server::register_back_channel(session);
            }
        }
    }
    Ok(())
}

/// Writes `frames` in as few system calls as possible, counting the bytes
/// written in `sent`, then flushes (TLS buffers what it encrypts).
async fn write_frames(
    write: &mut WriteHalf,
    frames: &mut VecDeque<Bytes>,
    sent: &AtomicU64,
) -> io::Result<()> {
    while !frames.is_empty() {
        let slices: Vec<IoSlice<'_>> = frames.iter().take(64).map(|f| IoSlice::new(f)).collect();
        let mut written = write.write_vectored(&slices).await?;
        drop(slices);
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        add_bytes(sent, written);
        while written > 0 {
            let Some(front) = frames.front_mut() else {
                break;
            };
            if written >= front.len() {
                written -= front.len();
                frames.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
    write.flush().await
}

/// Waits until the session dies, then `linger` more.
async fn dead_then(mut dead: watch::Receiver<Option<Arc<str>>>, linger: Duration) {
    let _ = dead.wait_for(Option::is_some).await;
    tokio::time::sleep(linger).await;
}

#[allow(clippy::too_many_arguments)]
async fn write_loop(
    session: Weak<Session>,
    shared: Arc<Shared>,
    mut write: WriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    dead: watch::Receiver<Option<Arc<str>>>,
    unwritten: Arc<AtomicUsize>,
    written: Arc<Notify>,
    unposted: Arc<AtomicUsize>,
    linger: Duration,
) {
    let mut frames: VecDeque<Bytes> = VecDeque::new();
    let mut stop = false;
    while !stop {
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut bytes = 0;
        let mut replies = 0;
        let mut posts = 0;
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Out::Frame(f) => {
                    bytes += f.len();
                    frames.push_back(f);
                }
                Out::Reply(f) => {
                    bytes += f.len();
                    replies += 1;
                    frames.push_back(f);
                }
                Out::Post(f) => {
                    bytes += f.len();
                    posts += 1;
                    frames.push_back(f);
                }
                Out::Shutdown => {
                    stop = true;
                    break;
                }
            }
            if bytes < WRITE_BATCH_BYTES && frames.len() < WRITE_BATCH_FRAMES {
                next = rx.try_recv().ok();
            }
        }
        let result = tokio::select! {
            result = write_frames(&mut write, &mut frames, &shared.counters.bytes_sent) => result,
            _ = dead_then(dead.clone(), linger) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not read what was left to send",
            )),
        };
        if replies > 0 {
            unwritten.fetch_sub(replies, Ordering::AcqRel);
            written.notify_one();
        }
        if posts > 0 {
            unposted.fetch_sub(posts, Ordering::AcqRel);
        }
        if let Err(e) = result {
            if let Some(session) = session.upgrade() {
                session.kill(&format!("write error: {e}"), Ending::Lost);
            }
            return;
        }
    }
    let _ = tokio::time::timeout(linger, write.shutdown()).await;
}
