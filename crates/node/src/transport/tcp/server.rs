//! The accepting side: the listening socket, the handshake of accepted
//! connections, and back channels (requests sent to a peer over the
//! connection it opened).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::client::Refusal;

use super::client::{check_hello, check_identity, our_hello, read_hello, tls_failure};
use super::frame;
use super::session::{Out, Session, Side};
use super::stream::PeerStream;
use super::{add_bytes, bump, lock, millis, Listening, Shared};
use crate::transport::{Connection, Envelope, Handler, Reply, TransportError};

/// Binds `address` and spawns the accept loop.
pub(crate) async fn listen(
    shared: &Arc<Shared>,
    address: &str,
    handler: Arc<dyn Handler>,
) -> Result<String, TransportError> {
    let listener = TcpListener::bind(address).await.map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            TransportError::AddressInUse(address.to_owned())
        } else {
            TransportError::Other(format!("cannot listen at {address}: {e}"))
        }
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| TransportError::Other(format!("cannot listen at {address}: {e}")))?
        .to_string();
    let epoch = lock(&shared.accepted).epoch;
    let task = tokio::spawn(accept_loop(shared.clone(), listener, handler, epoch));
    lock(&shared.listening).push(Listening {
        address: bound.clone(),
        task,
    });
    tracing::debug!(address = %bound, "listening for TCP connections");
    Ok(bound)
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    epoch: u64,
) {
    let pending = Arc::new(Semaphore::new(shared.options.max_pending_handshakes));
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                bump(&shared.counters.connections_accepted);
                let Ok(permit) = pending.clone().try_acquire_owned() else {
                    // Nothing is read from it: no memory, no task.
                    bump(&shared.counters.handshakes_shed);
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        last_warning = Some(tokio::time::Instant::now());
                        tracing::warn!(
                            %peer,
                            limit = shared.options.max_pending_handshakes,
                            "closing TCP connections at once: too many handshakes are running (a flood of connections that do not finish theirs?)"
                        );
                    }
                    drop(stream);
                    continue;
                };
                tokio::spawn(accept(
                    shared.clone(),
                    stream,
                    peer,
                    handler.clone(),
                    epoch,
                    permit,
                ));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of
                // spinning; the listener stays open.
                tracing::warn!(error = %e, "cannot accept a TCP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The handshake of an accepted connection (TLS first, if configured);
/// then it is served.
async fn accept(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    handler: Arc<dyn Handler>,
    epoch: u64,
    pending: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let peer = peer.to_string();
    let options = &shared.options;
    let deadline = tokio::time::Instant::now() + options.connect_timeout;
    let mut stream = match shared.tls() {
        None => PeerStream::Plain(tcp),
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
            match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    PeerStream::Tls(Box::new(tokio_rustls::TlsStream::Server(stream)))
                }
                Ok(Err(e)) => {
                    // Nothing of ours was said: rustls sent its alert.
                    bump(&shared.counters.tls_handshake_failures);
                    tracing::warn!(%peer, reason = %tls_failure(&e), "refusing a connection: the TLS handshake failed");
                    return;
                }
                Err(_) => {
                    bump(&shared.counters.handshake_timeouts);
                    tracing::warn!(%peer, "closing a TCP connection: no TLS handshake in time");
                    return;
                }
            }
        }
    };
    let mut buf = BytesMut::new();
    let read = tokio::time::timeout_at(deadline, read_hello(&shared, &mut stream, &mut buf)).await;
    // The handshake is read: this connection no longer counts as pending.
    drop(pending);
    let refusal = match read {
        Err(_) => {
            bump(&shared.counters.handshake_timeouts);
            tracing::warn!(%peer, "closing a TCP connection: no handshake in time");
            Some(format!(
                "no handshake within {} ms",
                millis(options.connect_timeout)
            ))
        }
        Ok(Err(Ok(reason))) => {
            tracing::info!(%peer, %reason, "a peer closed its connection during the handshake");
            return;
        }
        Ok(Err(Err(reason))) => {
            tracing::warn!(%peer, %reason, "closing a TCP connection: bad handshake");
            Some(reason)
        }
        Ok(Ok(hello)) => {
            let checked = check_hello(&shared, &hello).and_then(|()| {
                check_identity(&shared, &stream, &hello, None)
                    .inspect_err(|_| bump(&shared.counters.identity_mismatches))
            });
            let open = lock(&shared.accepted).sessions.len();
            let checked = match checked {
                Ok(_) if open >= options.max_connections => {
                    bump(&shared.counters.connections_refused_full);
                    Err(Refusal {
                        peer: format!(
                            "too many connections: this node serves at most {} from its peers",
                            options.max_connections
                        ),
                        log: format!(
                            "{open} peer connections are open, the most this node serves (max_connections)"
                        ),
                    })
                }
                other => other,
            };
            match checked {
                Err(refusal) => {
                    bump(&shared.counters.handshakes_refused);
                    tracing::warn!(%peer, node = %hello.node, reason = %refusal.log, "refusing a peer's handshake");
                    Some(refusal.peer)
                }
                Ok(auth) => {
                    let answer = our_hello(&shared).frame();
                    let write = tokio::time::timeout(options.connect_timeout, async {
                        stream.write_all(&answer).await?;
                        stream.flush().await
                    });
                    if !matches!(write.await, Ok(Ok(()))) {
                        return;
                    }
                    add_bytes(&shared.counters.bytes_sent, answer.len());
                    let mut accepted = lock(&shared.accepted);
                    if accepted.epoch != epoch {
                        Some("the listener is shutting down".to_owned())
                    } else {
                        let session = Session::start(
                            shared.clone(),
                            stream,
                            buf,
                            Side::Accepted,
                            peer,
                            hello,
                            auth,
                            Some(handler),
                        );
                        accepted
                            .sessions
                            .insert(session.serial, Arc::downgrade(&session));
                        return;
                    }
                }
            }
        }
    };
    if let Some(reason) = refusal {
        let close = frame::close_frame(&reason);
        let _ = tokio::time::timeout(options.connect_timeout, async {
            if stream.write_all(&close).await.is_ok() {
                add_bytes(&shared.counters.bytes_sent, close.len());
            }
            let _ = stream.shutdown().await;
        })
        .await;
    }
}

/// A peer announced (with a `Listen` frame) that it serves requests over
/// `session`: requests to its advertised address can go there.
pub(crate) fn register_back_channel(session: &Arc<Session>) {
    let address = session.hello.address.clone();
    if address.is_empty() {
        tracing::debug!(peer = %session.peer, "a back channel without an address is ignored");
        return;
    }
    let shared = session.shared();
    let mut accepted = lock(&shared.accepted);
    if !accepted.sessions.contains_key(&session.serial) {
        return;
    }
    accepted
        .back_channels
        .insert(address, Arc::downgrade(session));
}

/// A connection over the back channel a peer announcing `address` opened,
/// if there is a live one.
pub(crate) fn back_channel(shared: &Arc<Shared>, address: &str) -> Option<BackConnection> {
    let session = lock(&shared.accepted)
        .back_channels
        .get(address)
        .and_then(|s| s.upgrade())?;
    if session.dead_reason().is_some() {
        return None;
    }
    Some(BackConnection {
        session,
        closed: AtomicBool::new(false),
    })
}

/// A [`Connection`] over a connection the peer opened (a back channel).
/// It ends with that connection: it does not reconnect.
pub(crate) struct BackConnection {
    session: Arc<Session>,
    closed: AtomicBool,
}

/// Gives up a back-channel request whose `invoke` ended without its outcome.
struct BackGuard<'a> {
    session: &'a Session,
    id: u64,
    armed: bool,
}

impl Drop for BackGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.session.abandon(self.id);
        }
    }
}

#[async_trait]
impl Connection for BackConnection {
    async fn invoke(&self, envelope: Envelope) -> Result<Reply, TransportError> {
        let session = &*self.session;
        let address = session.hello.address.clone();
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed { address });
        }
        if let Some(reason) = session.dead_reason() {
            return Err(TransportError::Unreachable {
                address,
                reason: format!("the back channel closed: {reason}"),
            });
        }
        let options = &session.shared().options;
        let timeout = options.request_timeout;
        let deadline = super::after(timeout);
        let id = session.next_id();
        let (bytes, length) = frame::request_frame(id, &envelope);
        drop(envelope);
        let max_bytes = session.peer_max_frame().min(options.max_frame_size);
        if length > max_bytes {
            return Err(TransportError::TooLarge {
                bytes: length,
                max_bytes,
            });
        }
        if session.in_flight() >= session.window() {
            bump(&session.shared().counters.queue_full);
            return Err(TransportError::Other(format!(
                "{} requests are in flight over the back channel to {address}: the queue is full",
                session.window()
            )));
        }
        let (waiter, outcome) = oneshot::channel();
        match session.register(id, waiter) {
            Ok(()) => {}
            Err((_, Some(error))) => return Err(error),
            Err((_, None)) => return Err(TransportError::Closed { address }),
        }
        let mut guard = BackGuard {
            session,
            id,
            armed: true,
        };
        bump(&session.shared().counters.requests_sent);
        let _ = session.send(Out::Frame(bytes));
        let result = tokio::time::timeout_at(deadline, outcome).await;
        guard.armed = false;
        match result {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Closed { address }),
            Err(_) => {
                guard.armed = true;
                bump(&session.shared().counters.timeouts);
                Err(TransportError::Timeout {
                    address,
                    timeout_ms: millis(timeout),
                })
            }
        }
    }

    /// Does nothing: requests the peer sends over this connection already
    /// reach the listener's handler.
    fn listen(&self, _handler: Arc<dyn Handler>) {}

    /// Stops using the back channel (the peer's connection stays open).
    async fn close(&self) -> Result<(), TransportError> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}
