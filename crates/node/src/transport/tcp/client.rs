//! The connecting side: [`TcpConnection`], its queue, and the driver task
//! that (re)connects and feeds requests to the current TCP connection.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::frame::{self, FrameDecoder, FrameKind, Hello, MIN_VERSION, POST_VERSION, VERSION};
use super::session::{Ending, Out, Session, Side, Waiter};
use super::stream::{PeerAuth, PeerStream};
use super::{add_bytes, bump, lock, millis, Shared, TcpOptions};
use crate::tls::{describe_rustls_error, server_name, CertificateInfo, TlsConfig};
use crate::transport::{Connection, Envelope, Handler, Posted, Reply, Request, TransportError};

/// A request queued on a connection, waiting to be written.
struct Queued {
    id: u64,
    frame: Bytes,
    /// The frame's length (without its length prefix).
    length: usize,
    waiter: Waiter,
    deadline: Instant,
}

/// What a [`TcpConnection`] and its driver task share.
pub(crate) struct ConnShared {
    transport: Arc<Shared>,
    address: String,
    queue: mpsc::UnboundedSender<Queued>,
    /// Requests in `queue`.
    queued: AtomicUsize,
    next_id: AtomicU64,
    /// The TCP connection in use, if any.
    current: Mutex<Option<Arc<Session>>>,
    /// The back-channel handler ([`Connection::listen`]).
    back: Mutex<Option<Arc<dyn Handler>>>,
    closed: AtomicBool,
    /// Set to true on close: stops the driver.
    stop: watch::Sender<bool>,
}

impl ConnShared {
    fn closed_error(&self) -> TransportError {
        TransportError::Closed {
            address: self.address.clone(),
        }
    }

    /// Closes the connection (idempotent): the driver stops, queued and
    /// waiting requests fail with [`TransportError::Closed`].
    pub(crate) fn shut(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop.send_replace(true);
        let current = lock(&self.current).take();
        if let Some(session) = current {
            let _ = session.send(Out::Frame(frame::close_frame("the connection was closed")));
            session.kill("the connection was closed", Ending::Closed);
        }
        let back = lock(&self.back).take();
        drop(back);
    }

    /// The TCP connection in use, if any.
    pub(crate) fn current(&self) -> Option<Arc<Session>> {
        lock(&self.current).clone()
    }

    /// Starts using `session`: serves the back channel over it, if any.
    fn adopt(&self, session: &Arc<Session>) {
        let back = lock(&self.back).clone();
        if let Some(handler) = back {
            session.set_handler(handler);
            let _ = session.send(Out::Frame(frame::encode_frame(FrameKind::Listen, 0, &[])));
        }
        *lock(&self.current) = Some(session.clone());
    }
}

/// A [`Connection`] over TCP (see the [module documentation](super)):
/// one TCP connection at a time, re-established after a failure.
pub struct TcpConnection {
    shared: Arc<ConnShared>,
}

impl fmt::Debug for TcpConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpConnection")
            .field("address", &self.shared.address)
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TcpConnection {
    /// Connects (with the handshake) and starts the driver.
    pub(super) async fn open(
        transport: Arc<Shared>,
        address: &str,
    ) -> Result<TcpConnection, TransportError> {
        let session = dial(&transport, address, None).await?;
        let (queue, rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(ConnShared {
            transport: transport.clone(),
            address: address.to_owned(),
            queue,
            queued: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            current: Mutex::new(None),
            back: Mutex::new(None),
            closed: AtomicBool::new(false),
            stop,
        });
        shared.adopt(&session);
        {
            let mut connections = lock(&transport.connections);
            connections.retain(|c| c.strong_count() > 0);
            connections.push(Arc::downgrade(&shared));
        }
        tokio::spawn(drive(shared.clone(), rx, session));
        Ok(TcpConnection { shared })
    }

    /// The peer's address.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// True while a TCP connection is established (it may still turn out to
    /// be broken on the next request).
    pub fn is_connected(&self) -> bool {
        lock(&self.shared.current)
            .as_ref()
            .is_some_and(|s| s.dead_reason().is_none())
    }
}

impl Drop for TcpConnection {
    fn drop(&mut self) {
        self.shared.shut();
    }
}

/// Gives up a request whose `invoke` ended without its outcome (timed out or
/// dropped): it is skipped if still queued, cancelled if written.
struct InvokeGuard<'a> {
    shared: &'a ConnShared,
    id: u64,
    outcome: Option<oneshot::Receiver<Result<Reply, TransportError>>>,
}

impl Drop for InvokeGuard<'_> {
    fn drop(&mut self) {
        let Some(mut outcome) = self.outcome.take() else {
            return;
        };
        // Closed first: the driver checks it under the session's lock
        // before registering, so the request is either never registered or
        // found here.
        outcome.close();
        let current = lock(&self.shared.current).clone();
        if let Some(session) = current {
            session.abandon(self.id);
        }
    }
}

#[async_trait]
impl Connection for TcpConnection {
    /// Queues the request at once (first poll), then waits for its reply;
    /// see the [module documentation](super) for back-pressure, timeouts
    /// and reconnection.
    async fn invoke(&self, envelope: Envelope) -> Result<Reply, TransportError> {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(shared.closed_error());
        }
        let options = &shared.transport.options;
        let timeout = envelope.request.reply_timeout(options.request_timeout);
        let deadline = super::after(timeout);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (frame, length) = frame::request_frame(id, &envelope);
        drop(envelope);
        if length > options.max_frame_size {
            return Err(TransportError::TooLarge {
                bytes: length,
                max_bytes: options.max_frame_size,
            });
        }
        if shared.queued.fetch_add(1, Ordering::AcqRel) >= options.queue_capacity {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            bump(&shared.transport.counters.queue_full);
            return Err(TransportError::Other(format!(
                "the queue of requests to {} is full ({} waiting): the peer is too slow",
                shared.address, options.queue_capacity
            )));
        }
        let (waiter, outcome) = oneshot::channel();
        let queued = Queued {
            id,
            frame,
            length,
            waiter,
            deadline,
        };
        if shared.queue.send(queued).is_err() {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(shared.closed_error());
        }
        let mut guard = InvokeGuard {
            shared,
            id,
            outcome: Some(outcome),
        };
        let Some(outcome) = guard.outcome.as_mut() else {
            return Err(shared.closed_error());
        };
        let result = tokio::time::timeout_at(deadline, outcome).await;
        match result {
            Ok(Ok(result)) => {
                guard.outcome = None;
                result
            }
            // The driver dropped the request: the connection closed.
            Ok(Err(_)) => {
                guard.outcome = None;
                Err(shared.closed_error())
            }
            Err(_) => {
                bump(&shared.transport.counters.timeouts);
                Err(TransportError::Timeout {
                    address: shared.address.clone(),
                    timeout_ms: millis(timeout),
                })
            }
        }
    }

    /// Serves requests the peer sends over this connection with `handler`
    /// (a back channel; see the [module documentation](super)), on this TCP
    /// connection and the ones that replace it. Does nothing once closed.
    fn listen(&self, handler: Arc<dyn Handler>) {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        *lock(&shared.back) = Some(handler.clone());
        let current = lock(&shared.current).clone();
        if let Some(session) = current {
            session.set_handler(handler);
            let _ = session.send(Out::Frame(frame::encode_frame(FrameKind::Listen, 0, &[])));
        }
    }

    /// Writes a `Post` frame on the TCP connection in use, if there is one,
    /// its peer takes posts, no request waits in the queue (it would be
    /// overtaken) and fewer than a window's worth of posts wait to be
    /// written; otherwise gives the envelope back. Only Raft messages are
    /// posted.
    fn post(&self, envelope: Envelope) -> Posted {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Posted::Failed(shared.closed_error());
        }
        if !matches!(envelope.request, Request::Raft(_))
            || shared.queued.load(Ordering::Acquire) > 0
        {
            return Posted::Unsupported(envelope);
        }
        let Some(session) = shared.current() else {
            return Posted::Unsupported(envelope);
        };
        if session.hello.version < POST_VERSION || session.dead_reason().is_some() {
            return Posted::Unsupported(envelope);
        }
        let (frame, length) = frame::post_frame(&envelope);
        let max_bytes = shared
            .transport
            .options
            .max_frame_size
            .min(session.peer_max_frame());
        if length > max_bytes {
            return Posted::Failed(TransportError::TooLarge {
                bytes: length,
                max_bytes,
            });
        }
        // A window's worth of posts not yet written (the peer does not
        // read): a request then, which waits its turn in the bounded queue.
        if !session.post(frame) {
            return Posted::Unsupported(envelope);
        }
        bump(&shared.transport.counters.requests_sent);
        Posted::Sent
    }

    /// Closes the TCP connection and stops reconnecting: requests in flight
    /// and later ones fail with [`TransportError::Closed`]. Idempotent.
    async fn close(&self) -> Result<(), TransportError> {
        self.shared.shut();
        Ok(())
    }
}

/// The reconnection state of a driver.
struct Backoff {
    next: Duration,
    /// No attempt before this.
    retry_at: Option<Instant>,
    last_error: String,
}

impl Backoff {
    /// A failure: the next attempt waits.
    fn failed(&mut self, options: &TcpOptions, error: String) {
        self.retry_at = Some(super::after(self.next));
        self.next = self
            .next
            .saturating_mul(2)
            .min(options.reconnect_backoff_max);
        self.last_error = error;
    }
}

/// Fails `queued` with `error` (unless given up).
fn fail(queued: Queued, error: TransportError) {
    let _ = queued.waiter.send(Err(error));
}

/// Writes `queued` on `session`, or fails it.
fn send(shared: &ConnShared, session: &Session, queued: Queued) {
    if queued.length > session.peer_max_frame() {
        let error = TransportError::TooLarge {
            bytes: queued.length,
            max_bytes: session.peer_max_frame(),
        };
        return fail(queued, error);
    }
    match session.register(queued.id, queued.waiter) {
        Ok(()) => {
            bump(&shared.transport.counters.requests_sent);
            let _ = session.send(Out::Frame(queued.frame));
        }
        Err((waiter, Some(error))) => {
            let _ = waiter.send(Err(error));
        }
        Err((_, None)) => {}
    }
}

/// The driver task of a connection: takes requests off the queue in order,
/// writes them while the window allows, reconnects with backoff.
async fn drive(
    shared: Arc<ConnShared>,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    first: Arc<Session>,
) {
    let options = shared.transport.options.clone();
    let mut stop = shared.stop.subscribe();
    let mut session = Some((first, Instant::now()));
    let mut backoff = Backoff {
        next: options.reconnect_backoff_min,
        retry_at: None,
        last_error: String::new(),
    };
    loop {
        if *stop.borrow() {
            break;
        }
        if let Some((current, since)) = session.clone() {
            let full = current.in_flight() >= current.window();
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                reason = current.died() => {
                    session = None;
                    if since.elapsed() >= options.reconnect_backoff_max {
                        backoff.next = options.reconnect_backoff_min;
                    }
                    backoff.failed(&options, reason.to_string());
                    let mut slot = lock(&shared.current);
                    if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &current)) {
                        *slot = None;
                    }
                }
                _ = current.freed.notified(), if full => {}
                queued = rx.recv(), if !full => {
                    let Some(queued) = queued else { break };
                    // Counted until written: a post does not overtake it.
                    send(&shared, &current, queued);
                    shared.queued.fetch_sub(1, Ordering::AcqRel);
                }
            }
            continue;
        }
        // No connection: wait for a request, then reconnect for it.
        let queued = tokio::select! {
            biased;
            _ = stop.changed() => break,
            queued = rx.recv() => queued,
        };
        let Some(queued) = queued else { break };
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        if queued.waiter.is_closed() {
            continue;
        }
        if let Some(at) = backoff.retry_at {
            let now = Instant::now();
            if at > now {
                if queued.deadline <= at {
                    let reason = format!(
                        "{}; next connection attempt in {} ms",
                        backoff.last_error,
                        millis(at - now)
                    );
                    fail(queued, unreachable(&shared.address, reason));
                    continue;
                }
                tokio::select! {
                    biased;
                    _ = stop.changed() => {
                        fail(queued, shared.closed_error());
                        break;
                    }
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
        }
        let back = lock(&shared.back).clone();
        let attempt = tokio::select! {
            biased;
            _ = stop.changed() => {
                fail(queued, shared.closed_error());
                break;
            }
            attempt = dial(&shared.transport, &shared.address, back) => attempt,
        };
        match attempt {
            Ok(fresh) => {
                bump(&shared.transport.counters.reconnects);
                backoff.retry_at = None;
                if shared.closed.load(Ordering::Acquire) {
                    fresh.kill("the connection was closed", Ending::Closed);
                    fail(queued, shared.closed_error());
                    break;
                }
                // Written before the session is in use: a post does not
                // overtake it.
                send(&shared, &fresh, queued);
                shared.adopt(&fresh);
                session = Some((fresh, Instant::now()));
            }
            Err(error) => {
                let reason = match &error {
                    TransportError::Unreachable { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                backoff.failed(&options, reason);
                // Every request waiting for this attempt fails with it.
                fail(queued, error.clone());
                while let Ok(queued) = rx.try_recv() {
                    shared.queued.fetch_sub(1, Ordering::AcqRel);
                    fail(queued, error.clone());
                }
            }
        }
    }
    // Closed (or the connection dropped): nothing more is accepted.
    rx.close();
    while let Ok(queued) = rx.try_recv() {
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        fail(queued, shared.closed_error());
    }
    if let Some((current, _)) = session {
        current.kill("the connection was closed", Ending::Closed);
    }
}

fn unreachable(address: &str, reason: String) -> TransportError {
    TransportError::Unreachable {
        address: address.to_owned(),
        reason,
    }
}

/// Why a handshake was refused: the full story for this side's log, and
/// what the peer is told (never this node's cluster or id: a refused peer
/// may be a stranger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub log: String,
    pub peer: String,
}

impl Refusal {
    fn same(reason: String) -> Refusal {
        Refusal {
            log: reason.clone(),
            peer: reason,
        }
    }
}

/// Checks a peer's handshake against this side's options.
pub(crate) fn check_hello(transport: &Shared, hello: &Hello) -> Result<(), Refusal> {
    if !(MIN_VERSION..=VERSION).contains(&hello.version) {
        return Err(Refusal {
            log: format!(
                "protocol version mismatch: {MIN_VERSION} to {VERSION} (node {:?}) vs {} (node {:?})",
                transport.node_id(), hello.version, hello.node
            ),
            peer: format!(
                "protocol version mismatch: this node speaks versions {MIN_VERSION} to {VERSION}, not {}",
                hello.version
            ),
        });
    }
    if hello.cluster != transport.cluster() {
        return Err(Refusal {
            log: format!(
                "cluster mismatch: {:?} (node {:?}) vs {:?} (node {:?})",
                transport.cluster(),
                transport.node_id(),
                hello.cluster,
                hello.node
            ),
            peer: format!(
                "cluster mismatch: this node is not of cluster {:?}",
                hello.cluster
            ),
        });
    }
    if (hello.max_frame as usize) < super::MIN_FRAME_SIZE {
        return Err(Refusal::same(format!(
            "the peer's maximum frame size {} is below the minimum of {}",
            hello.max_frame,
            super::MIN_FRAME_SIZE
        )));
    }
    if hello.max_in_flight == 0 {
        return Err(Refusal::same(
            "the peer takes no request in flight".to_owned(),
        ));
    }
    Ok(())
}

/// Checks that the certificate a TLS peer showed names the node its
/// handshake claims (in this cluster): who it is for the rest of the
/// session.
pub(crate) fn check_identity(
    transport: &Shared,
    stream: &PeerStream,
    hello: &Hello,
    server_name: Option<rustls::pki_types::ServerName<'static>>,
) -> Result<Option<PeerAuth>, Refusal> {
    if matches!(stream, PeerStream::Plain(_)) {
        return Ok(None);
    }
    let chain = stream.peer_certificates().unwrap_or_default();
    let Some(end_entity) = chain.first() else {
        return Err(Refusal::same("the peer showed no certificate".into()));
    };
    let named = CertificateInfo::from_der(end_entity, "the peer's certificate")
        .map(|info| info.is_for_node(transport.cluster(), &hello.node))
        .unwrap_or(false);
    if !named {
        return Err(Refusal {
            log: format!(
                "the peer claims to be node {:?} of cluster {:?}, but its certificate names another node",
                hello.node, hello.cluster
            ),
            peer: format!(
                "your certificate does not name node {:?}: a node must use its own certificate",
                hello.node
            ),
        });
    }
    Ok(Some(PeerAuth {
        node: crate::ids::node_number(&hello.node),
        chain,
        server_name,
    }))
}

/// This side's handshake.
pub(crate) fn our_hello(transport: &Shared) -> Hello {
    let options = &transport.options;
    Hello {
        version: VERSION,
        max_frame: u32::try_from(options.max_frame_size).unwrap_or(u32::MAX),
        max_in_flight: u32::try_from(options.max_in_flight).unwrap_or(u32::MAX),
        cluster: transport.cluster().to_owned(),
        node: transport.node_id().to_owned(),
        address: transport.advertised(),
    }
}

/// Reads the peer's handshake frame from `stream` into `buf`: its `Hello`,
/// or what went wrong (`Err(Ok(reason))` if the peer refused us with a
/// `Close` frame, `Err(Err(reason))` for anything else, counted).
pub(crate) async fn read_hello<S: AsyncRead + Unpin>(
    transport: &Shared,
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Hello, Result<String, String>> {
    let counters = &transport.counters;
    let decoder = FrameDecoder::new(
        transport
            .options
            .max_frame_size
            .min(frame::MAX_HANDSHAKE_FRAME),
    );
    loop {
        match decoder.decode(buf) {
            Ok(Some(frame)) => {
                return match frame.kind {
                    FrameKind::Hello => Hello::decode(&frame.payload).map_err(|e| {
                        bump(&counters.malformed_frames);
                        Err(format!("bad handshake: {e}"))
                    }),
                    FrameKind::Close => Err(Ok(frame::decode_close(&frame.payload))),
                    other => {
                        bump(&counters.malformed_frames);
                        Err(Err(format!("expected a handshake, got a {other:?} frame")))
                    }
                };
            }
            Ok(None) => {}
            Err(e) => {
                let counter = match e {
                    frame::FrameError::Oversized { .. } => &counters.oversized_frames,
                    frame::FrameError::TooShort { .. } => &counters.malformed_frames,
                    frame::FrameError::UnknownKind(_) => &counters.unknown_frames,
                };
                bump(counter);
                return Err(Err(format!("bad handshake frame: {e}")));
            }
        }
        buf.reserve(decoder.missing(buf).max(4096));
        match stream.read_buf(buf).await {
            Ok(0) => {
                return Err(Err(
                    "the peer closed the connection during the handshake".to_owned()
                ))
            }
            Ok(n) => add_bytes(&counters.bytes_received, n),
            Err(e) => return Err(Err(format!("read error during the handshake: {e}"))),
        }
    }
}

/// Connects to `address` and does the handshake, within the connect
/// timeout; the session is serving `back` if given.
pub(crate) async fn dial(
    transport: &Arc<Shared>,
    address: &str,
    back: Option<Arc<dyn Handler>>,
) -> Result<Arc<Session>, TransportError> {
    let options = &transport.options;
    let attempt = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = transport.tls();
        let (mut stream, name) = match &tls {
            None => (PeerStream::Plain(tcp), None),
            Some(tls) => {
                let (stream, name) = tls_connect(transport, tls, address, tcp).await?;
                (stream, Some(name))
            }
        };
        let ours = our_hello(transport).frame();
        stream
            .write_all(&ours)
            .await
            .map_err(|e| format!("write error during the handshake: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("write error during the handshake: {e}"))?;
        add_bytes(&transport.counters.bytes_sent, ours.len());
        let mut buf = BytesMut::new();
        let hello = match read_hello(transport, &mut stream, &mut buf).await {
            Ok(hello) => hello,
            Err(Ok(reason)) => {
                bump(&transport.counters.refused_by_peer);
                tracing::warn!(peer = %address, %reason, "the peer refused the handshake");
                return Err(format!("the peer refused the handshake: {reason}"));
            }
            Err(Err(reason)) => {
                tracing::warn!(peer = %address, %reason, "closing a TCP connection: bad handshake");
                return Err(reason);
            }
        };
        let checked = check_hello(transport, &hello).and_then(|()| {
            check_identity(transport, &stream, &hello, name).inspect_err(|_| {
                bump(&transport.counters.identity_mismatches);
            })
        });
        match checked {
            Ok(auth) => Ok((stream, buf, hello, auth)),
            Err(refusal) => {
                bump(&transport.counters.handshakes_refused);
                tracing::warn!(peer = %address, node = %hello.node, reason = %refusal.log, "refusing the peer's handshake");
                let close = frame::close_frame(&refusal.peer);
                if stream.write_all(&close).await.is_ok() {
                    add_bytes(&transport.counters.bytes_sent, close.len());
                }
                let _ = stream.shutdown().await;
                Err(format!("refused the peer's handshake: {}", refusal.log))
            }
        }
    };
    let result = match tokio::time::timeout(options.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no connection and handshake within {} ms",
            millis(options.connect_timeout)
        )),
    };
    match result {
        Ok((stream, buf, hello, auth)) => {
            bump(&transport.counters.connections_opened);
            tracing::debug!(peer = %address, node = %hello.node, tls = auth.is_some(), "TCP connection established");
            Ok(Session::start(
                transport.clone(),
                stream,
                buf,
                Side::Dialed,
                address.to_owned(),
                hello,
                auth,
                back,
            ))
        }
        Err(reason) => {
            bump(&transport.counters.connect_failures);
            Err(unreachable(address, reason))
        }
    }
}

/// The TLS handshake of a dialed connection: the listener's certificate
/// must chain to a trusted CA and be valid for the host dialed.
async fn tls_connect(
    transport: &Shared,
    tls: &TlsConfig,
    address: &str,
    tcp: TcpStream,
) -> Result<(PeerStream, rustls::pki_types::ServerName<'static>), String> {
    let name = server_name(address)?;
    let connector = tokio_rustls::TlsConnector::from(tls.client_config());
    match connector.connect(name.clone(), tcp).await {
        Ok(stream) => Ok((
            PeerStream::Tls(Box::new(tokio_rustls::TlsStream::Client(stream))),
            name,
        )),
        Err(e) => {
            bump(&transport.counters.tls_handshake_failures);
            let reason = tls_failure(&e);
            tracing::warn!(peer = %address, %reason, "TLS handshake with a peer failed");
            Err(format!("TLS handshake failed: {reason}"))
        }
    }
}

/// What went wrong in a TLS handshake, in words an operator acts on.
pub(crate) fn tls_failure(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the peer refused our certificate ({alert:?})")
        }
        Some(tls) => describe_rustls_error(tls),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection (it may not speak TLS, or refused us)".into()
        }
        None => e.to_string(),
    }
}
