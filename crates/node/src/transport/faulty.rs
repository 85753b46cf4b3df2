//! A [`Transport`] decorator for fault injection in tests of real
//! deployments: wrap any transport (TCP, in-memory, your own) in a
//! [`FaultyTransport`], give it to a node, and cut it off from chosen peers
//! while it runs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use raft_node::transport::faulty::FaultyTransport;
//! use raft_node::{Node, Options, TcpOptions, TcpTransport};
//!
//! let tls = raft_node::tls::TlsConfig::from_pem_files("certs/ca.crt", "certs/node.crt", "certs/node.key")?;
//! let tcp = TcpTransport::new(TcpOptions::new("n1", "my-cluster").with_tls(tls))?;
//! let faulty = Arc::new(FaultyTransport::new(Arc::new(tcp)));
//! let node = Node::new(Options {
//!     transport: Some(faulty.clone()),
//!     // ... id, cluster, address, bootstrap ...
//!     ..Options::default()
//! })
//! .await?;
//! faulty.block("127.0.0.1:7002"); // n1 can no longer reach n2
//! faulty.block_incoming(true); // and nobody reaches n1: it is isolated
//! faulty.unblock_all();
//! faulty.block_incoming(false); // healed
//! # let _ = node; Ok(()) }
//! ```
//!
//! # Outgoing: [`FaultyTransport::block`]
//!
//! Blocking an address simulates a partition the way a real one shows up:
//! connections break. While an address is blocked,
//!
//! - `connect` to it fails at once with [`TransportError::Unreachable`]
//!   whose reason is [`BLOCKED`];
//! - `invoke` on a connection to it fails at once the same way;
//! - requests in flight on such connections when the block starts fail at
//!   once with [`TransportError::Lost`] (reason [`BLOCKED`]): they may have
//!   reached the peer already, as over a real connection that breaks (their
//!   inner futures are dropped, which cancels them in the inner transport);
//! - the inner connections to it are dropped (and closed, when a tokio
//!   runtime is at hand): for TCP, the socket goes away, and the peer sees
//!   the connection close.
//!
//! Once unblocked, a connection made before the block reconnects through the
//! inner transport on its next `invoke` (as a TCP connection does after a
//! broken socket); requests are not retried. Addresses are compared exactly
//! as given (`127.0.0.1:7002` and `localhost:7002` are different).
//!
//! # Incoming: [`FaultyTransport::block_incoming`]
//!
//! While set, every request that reaches this transport, through its
//! listeners or a back channel ([`Connection::listen`]), is answered with
//! [`Reply::Error`] carrying [`BLOCKED`] instead of reaching the handler.
//! Together with blocking this node's outgoing connections and every other
//! node's connections to it, this isolates a node in both directions.
//!
//! # Order
//!
//! Requests on one connection reach the inner connection in the order their
//! `invoke` futures were first polled, as the [`Connection`] contract asks,
//! except across a reconnection after a block (the requests that wait for
//! the new inner connection then race for it).
//!
//! [`FaultyTransport::stats`] counts what was let through and what was
//! refused.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Connection, Envelope, Handler, Reply, Transport, TransportError};

/// The reason carried by everything refused by fault injection: the
/// [`TransportError::Unreachable`] of a blocked connect or invoke, and the
/// [`Reply::Error`] of a blocked incoming request.
pub const BLOCKED: &str = "blocked by fault injection";

/// Counters of a [`FaultyTransport`], from [`FaultyTransport::stats`]; they
/// only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultyStats {
    /// `connect` calls passed to the inner transport (reconnections after a
    /// block included).
    pub connects: u64,
    /// `connect` calls refused because the address was blocked.
    pub connects_blocked: u64,
    /// Requests passed to an inner connection.
    pub invokes: u64,
    /// Requests refused at once because the address was blocked.
    pub invokes_blocked: u64,
    /// Requests in flight that failed because their address got blocked.
    pub invokes_cut: u64,
    /// Inner connections dropped (and closed) because their address got
    /// blocked.
    pub connections_cut: u64,
    /// Requests that reached this transport's listeners or back channels and
    /// were passed to the handler.
    pub incoming: u64,
    /// Requests that reached this transport's listeners or back channels and
    /// were refused by [`FaultyTransport::block_incoming`].
    pub incoming_blocked: u64,
}

#[derive(Default)]
struct Counters {
    connects: AtomicU64,
    connects_blocked: AtomicU64,
    invokes: AtomicU64,
    invokes_blocked: AtomicU64,
    invokes_cut: AtomicU64,
    connections_cut: AtomicU64,
    incoming: AtomicU64,
    incoming_blocked: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Locks `mutex`, ignoring poisoning: no code of this module panics while
/// holding a lock, and no user code runs under one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn blocked_error(address: &str) -> TransportError {
    TransportError::Unreachable {
        address: address.to_owned(),
        reason: BLOCKED.to_owned(),
    }
}

/// What a transport and its connections and handlers share.
#[derive(Default)]
struct Faults {
    blocked: Mutex<HashSet<String>>,
    incoming_blocked: AtomicBool,
    /// Connections made through this transport (pruned as they go).
    connections: Mutex<Vec<Weak<ConnState>>>,
    counters: Counters,
}

impl Faults {
    fn is_blocked(&self, address: &str) -> bool {
        lock(&self.blocked).contains(address)
    }
}

/// A [`Transport`] that wraps another one and can refuse traffic on demand:
/// see the [module documentation](self). All controls take `&self`, are
/// thread-safe, and take effect at once, while nodes run.
pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    faults: Arc<Faults>,
}

impl fmt::Debug for FaultyTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyTransport")
            .field("blocked", &self.blocked())
            .field("incoming_blocked", &self.is_blocking_incoming())
            .finish_non_exhaustive()
    }
}

impl FaultyTransport {
    /// Wraps `inner`; nothing is blocked until asked.
    pub fn new(inner: Arc<dyn Transport>) -> FaultyTransport {
        FaultyTransport {
            inner,
            faults: Arc::new(Faults::default()),
        }
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &Arc<dyn Transport> {
        &self.inner
    }

    /// Blocks the traffic of this transport towards `address`: connects
    /// and requests to it fail at once with [`TransportError::Unreachable`]
    /// ([`BLOCKED`]), requests in flight to it fail, and the inner
    /// connections to it are dropped and closed. Blocking an address twice
    /// changes nothing.
    pub fn block(&self, address: &str) {
        lock(&self.faults.blocked).insert(address.to_owned());
        let connections: Vec<Arc<ConnState>> = {
            let mut list = lock(&self.faults.connections);
            list.retain(|c| c.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for connection in connections {
            if connection.address == address {
                connection.cut(&self.faults.counters);
            }
        }
    }

    /// Lets traffic towards `address` through again. Connections cut by the
    /// block reconnect on their next request.
    pub fn unblock(&self, address: &str) {
        lock(&self.faults.blocked).remove(address);
    }

    /// Unblocks every address (not the incoming side: see
    /// [`FaultyTransport::block_incoming`]).
    pub fn unblock_all(&self) {
        lock(&self.faults.blocked).clear();
    }

    /// True while `address` is blocked.
    pub fn is_blocked(&self, address: &str) -> bool {
        self.faults.is_blocked(address)
    }

    /// The blocked addresses, sorted.
    pub fn blocked(&self) -> Vec<String> {
        let mut list: Vec<String> = lock(&self.faults.blocked).iter().cloned().collect();
        list.sort();
        list
    }

    /// While `blocked` is true, every request arriving at this transport is
    /// answered with [`Reply::Error`] ([`BLOCKED`]) instead of reaching the
    /// handler given to [`Transport::listen`] (or [`Connection::listen`]).
    /// Requests already being handled are not affected.
    pub fn block_incoming(&self, blocked: bool) {
        self.faults
            .incoming_blocked
            .store(blocked, Ordering::SeqCst);
    }

    /// True while incoming requests are refused.
    pub fn is_blocking_incoming(&self) -> bool {
        self.faults.incoming_blocked.load(Ordering::SeqCst)
    }

    /// The counters so far.
    pub fn stats(&self) -> FaultyStats {
        let c = &self.faults.counters;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultyStats {
            connects: get(&c.connects),
            connects_blocked: get(&c.connects_blocked),
            invokes: get(&c.invokes),
            invokes_blocked: get(&c.invokes_blocked),
            invokes_cut: get(&c.invokes_cut),
            connections_cut: get(&c.connections_cut),
            incoming: get(&c.incoming),
            incoming_blocked: get(&c.incoming_blocked),
        }
    }
}

#[async_trait]
impl Transport for FaultyTransport {
    /// Connects through the inner transport, unless `address` is blocked:
    /// then fails at once with [`TransportError::Unreachable`]
    /// ([`BLOCKED`]).
    async fn connect(&self, address: &str) -> Result<Arc<dyn Connection>, TransportError> {
        if self.faults.is_blocked(address) {
            bump(&self.faults.counters.connects_blocked);
            return Err(blocked_error(address));
        }
        bump(&self.faults.counters.connects);
        let inner = self.inner.connect(address).await?;
        let state = Arc::new(ConnState {
            address: address.to_owned(),
            transport: self.inner.clone(),
            faults: self.faults.clone(),
            current: Mutex::new(Some(inner)),
            closed: AtomicBool::new(false),
            generation: watch::channel(0).0,
            reconnecting: tokio::sync::Mutex::new(()),
            back_channel: Mutex::new(None),
        });
        {
            let mut list = lock(&self.faults.connections);
            list.retain(|c| c.strong_count() > 0);
            list.push(Arc::downgrade(&state));
        }
        // A block that raced with the inner connect: honour it.
        if self.faults.is_blocked(address) {
            state.cut(&self.faults.counters);
        }
        Ok(Arc::new(FaultyConnection { state }))
    }

    /// Listens through the inner transport with `handler` wrapped: while
    /// [`FaultyTransport::block_incoming`] is set, requests are refused.
    async fn listen(
        &self,
        address: &str,
        handler: Arc<dyn Handler>,
    ) -> Result<String, TransportError> {
        let wrapped = Arc::new(FaultyHandler {
            inner: handler,
            faults: self.faults.clone(),
        });
        self.inner.listen(address, wrapped).await
    }

    /// Shuts the inner transport down. The blocks stay as they are.
    async fn shutdown(&self) -> Result<(), TransportError> {
        self.inner.shutdown().await
    }

    /// The inner transport's.
    fn max_entry_bytes(&self) -> Option<usize> {
        self.inner.max_entry_bytes()
    }
}

/// Refuses requests while incoming traffic is blocked.
struct FaultyHandler {
    inner: Arc<dyn Handler>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Handler for FaultyHandler {
    async fn handle(&self, envelope: Envelope) -> Reply {
        if self.faults.incoming_blocked.load(Ordering::SeqCst) {
            bump(&self.faults.counters.incoming_blocked);
            return Reply::Error(BLOCKED.to_owned());
        }
        bump(&self.faults.counters.incoming);
        self.inner.handle(envelope).await
    }
}

/// A connection's state, shared with the transport (for `block`).
struct ConnState {
    address: String,
    transport: Arc<dyn Transport>,
    faults: Arc<Faults>,
    /// The inner connection; `None` after a cut (or a close).
    current: Mutex<Option<Arc<dyn Connection>>>,
    closed: AtomicBool,
    /// Bumped by every cut and by `close`: requests in flight under an
    /// older generation fail.
    generation: watch::Sender<u64>,
    /// Held while reconnecting, so that concurrent requests share one
    /// inner connection.
    reconnecting: tokio::sync::Mutex<()>,
    /// The handler given to `listen` (already wrapped), re-registered on
    /// every new inner connection.
    back_channel: Mutex<Option<Arc<dyn Handler>>>,
}

impl ConnState {
    /// Drops the inner connection (closing it if a runtime is at hand) and
    /// fails the requests in flight.
    fn cut(&self, counters: &Counters) {
        let taken = lock(&self.current).take();
        self.generation.send_modify(|g| *g += 1);
        if let Some(inner) = taken {
            bump(&counters.connections_cut);
            close_in_background(inner);
        }
    }

    /// The inner connection, reconnecting through the inner transport if a
    /// cut dropped it.
    async fn inner(&self) -> Result<Arc<dyn Connection>, TransportError> {
        if let Some(c) = lock(&self.current).clone() {
            return Ok(c);
        }
        let _turn = self.reconnecting.lock().await;
        if let Some(c) = lock(&self.current).clone() {
            return Ok(c);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Closed {
                address: self.address.clone(),
            });
        }
        if self.faults.is_blocked(&self.address) {
            bump(&self.faults.counters.invokes_blocked);
            return Err(blocked_error(&self.address));
        }
        bump(&self.faults.counters.connects);
        let generation = *self.generation.borrow();
        let fresh = self.transport.connect(&self.address).await?;
        if let Some(handler) = lock(&self.back_channel).clone() {
            fresh.listen(handler);
        }
        let mut current = lock(&self.current);
        if *self.generation.borrow() != generation || self.closed.load(Ordering::SeqCst) {
            // Cut or closed while connecting.
            drop(current);
            close_in_background(fresh);
            return Err(if self.closed.load(Ordering::SeqCst) {
                TransportError::Closed {
                    address: self.address.clone(),
                }
            } else {
                blocked_error(&self.address)
            });
        }
        *current = Some(fresh.clone());
        Ok(fresh)
    }
}

/// Closes `connection` on the current tokio runtime if there is one;
/// dropping it is enough otherwise (the last reference closes it).
fn close_in_background(connection: Arc<dyn Connection>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = connection.close().await;
        });
    }
}

/// A connection of a [`FaultyTransport`]: it passes requests to an inner
/// connection unless its address is blocked.
struct FaultyConnection {
    state: Arc<ConnState>,
}

#[async_trait]
impl Connection for FaultyConnection {
    async fn invoke(&self, envelope: Envelope) -> Result<Reply, TransportError> {
        let state = &self.state;
        let counters = &state.faults.counters;
        // Subscribe before checking, so that a cut after the check is seen.
        let mut generation = state.generation.subscribe();
        generation.borrow_and_update();
        if state.closed.load(Ordering::SeqCst) {
            return Err(TransportError::Closed {
                address: state.address.clone(),
            });
        }
        if state.faults.is_blocked(&state.address) {
            bump(&counters.invokes_blocked);
            return Err(blocked_error(&state.address));
        }
        let inner = state.inner().await?;
        bump(&counters.invokes);
        tokio::select! {
            biased;
            _ = generation.changed() => {
                if state.closed.load(Ordering::SeqCst) {
                    Err(TransportError::Closed { address: state.address.clone() })
                } else {
                    // Sent already: the peer may have handled it.
                    bump(&counters.invokes_cut);
                    Err(TransportError::Lost {
                        address: state.address.clone(),
                        reason: BLOCKED.to_owned(),
                    })
                }
            }
            reply = inner.invoke(envelope) => reply,
        }
    }

    fn listen(&self, handler: Arc<dyn Handler>) {
        let wrapped: Arc<dyn Handler> = Arc::new(FaultyHandler {
            inner: handler,
            faults: self.state.faults.clone(),
        });
        *lock(&self.state.back_channel) = Some(wrapped.clone());
        if let Some(inner) = lock(&self.state.current).clone() {
            inner.listen(wrapped);
        }
    }

    async fn close(&self) -> Result<(), TransportError> {
        let state = &self.state;
        state.closed.store(true, Ordering::SeqCst);
        let taken = lock(&state.current).take();
        state.generation.send_modify(|g| *g += 1);
        *lock(&state.back_channel) = None;
        match taken {
            Some(inner) => inner.close().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::testkit::transport::Kit;
    use crate::transport::memory::MemoryNetwork;
    use crate::transport::tcp::{TcpOptions, TcpTransport};
    use crate::transport::Request;

    /// Answers reads with their payload; never answers a read of "hang".
    struct Echo;

    #[async_trait]
    impl Handler for Echo {
        async fn handle(&self, envelope: Envelope) -> Reply {
            match envelope.request {
                Request::Read(p) if p.as_ref() == b"hang" => {
                    std::future::pending::<()>().await;
                    Reply::Ack
                }
                Request::Read(p) => Reply::Output(p),
                _ => Reply::Ack,
            }
        }
    }

    fn read(what: &str) -> Envelope {
        Envelope {
            cluster: 1,
            from: Arc::from("test"),
            request: Request::Read(Bytes::from(what.to_owned())),
        }
    }

    fn is_blocked(result: &Result<Reply, TransportError>) -> bool {
        matches!(result, Err(TransportError::Unreachable { reason, .. }) if reason == BLOCKED)
    }

    async fn memory_pair() -> (Arc<FaultyTransport>, Arc<FaultyTransport>) {
        let network = MemoryNetwork::new();
        network.set_timeout(Duration::from_secs(2));
        let a = Arc::new(FaultyTransport::new(Arc::new(network.transport("a"))));
        let b = Arc::new(FaultyTransport::new(Arc::new(network.transport("b"))));
        b.listen("b", Arc::new(Echo)).await.expect("listen");
        (a, b)
    }

    #[tokio::test]
    async fn passes_the_transport_conformance_kit_over_memory() {
        let network = MemoryNetwork::new();
        Kit::new(move |setup: crate::testkit::transport::Setup| {
            let network = network.clone();
            async move {
                network.set_timeout(setup.request_timeout);
                let address = format!("node-{}", setup.index);
                let inner: Arc<dyn Transport> = Arc::new(network.transport(address.clone()));
                let t: Arc<dyn Transport> = Arc::new(FaultyTransport::new(inner));
                (t, address)
            }
        })
        .run_all()
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_transport_conformance_kit_over_tcp() {
        Kit::new(|setup: crate::testkit::transport::Setup| async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = listener.local_addr().expect("address").to_string();
            drop(listener);
            let mut options = TcpOptions::new(format!("kit-{}", setup.index), "kit").insecure();
            options.request_timeout = setup.request_timeout;
            options.advertise = Some(address.clone());
            let inner: Arc<dyn Transport> = Arc::new(TcpTransport::new(options).expect("options"));
            let t: Arc<dyn Transport> = Arc::new(FaultyTransport::new(inner));
            (t, address)
        })
        .run_all()
        .await;
    }

    #[tokio::test]
    async fn a_blocked_address_fails_connect_and_invoke_at_once_until_unblocked() {
        let (a, _b) = memory_pair().await;
        let connection = a.connect("b").await.expect("connect");
        assert_eq!(
            connection.invoke(read("one")).await,
            Ok(Reply::Output(Bytes::from("one")))
        );
        a.block("b");
        assert!(a.is_blocked("b"));
        assert_eq!(a.blocked(), vec!["b".to_string()]);
        assert!(is_blocked(&connection.invoke(read("two")).await));
        let refused = a.connect("b").await.err();
        assert_eq!(
            refused,
            Some(TransportError::Unreachable {
                address: "b".into(),
                reason: BLOCKED.into()
            })
        );
        a.unblock("b");
        // The old connection reconnects; a new one works too.
        assert_eq!(
            connection.invoke(read("three")).await,
            Ok(Reply::Output(Bytes::from("three")))
        );
        let fresh = a.connect("b").await.expect("connect");
        assert_eq!(
            fresh.invoke(read("four")).await,
            Ok(Reply::Output(Bytes::from("four")))
        );
        a.block("b");
        a.block("c");
        a.unblock_all();
        assert!(a.blocked().is_empty());
        let s = a.stats();
        assert_eq!(s.connects_blocked, 1, "{s:?}");
        assert_eq!(s.invokes_blocked, 1, "{s:?}");
        assert_eq!(s.invokes, 3, "{s:?}");
        // The first connect, the reconnection, the second connect.
        assert_eq!(s.connects, 3, "{s:?}");
        // The first block cut one connection, the second one two.
        assert_eq!(s.connections_cut, 3, "{s:?}");
    }

    #[tokio::test]
    async fn a_block_fails_requests_in_flight() {
        let (a, _b) = memory_pair().await;
        let connection = a.connect("b").await.expect("connect");
        let hung = {
            let connection = connection.clone();
            tokio::spawn(async move { connection.invoke(read("hang")).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.block("b");
        let result = tokio::time::timeout(Duration::from_millis(500), hung)
            .await
            .expect("the request in flight fails at once")
            .expect("no panic");
        // It may have reached the peer: never "not delivered", which would
        // let a caller send it again as if it had not.
        match &result {
            Err(e @ TransportError::Lost { reason, .. }) => {
                assert_eq!(reason, BLOCKED);
                assert!(!e.not_delivered());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.stats().invokes_cut, 1);
    }

    #[tokio::test]
    async fn blocking_one_address_leaves_the_others_alone() {
        let network = MemoryNetwork::new();
        let a = FaultyTransport::new(Arc::new(network.transport("a")));
        let b = network.transport("b");
        let c = network.transport("c");
        b.listen("b", Arc::new(Echo)).await.expect("listen");
        c.listen("c", Arc::new(Echo)).await.expect("listen");
        let to_b = a.connect("b").await.expect("connect");
        let to_c = a.connect("c").await.expect("connect");
        a.block("b");
        assert!(is_blocked(&to_b.invoke(read("x")).await));
        assert_eq!(
            to_c.invoke(read("y")).await,
            Ok(Reply::Output(Bytes::from("y")))
        );
        assert!(!a.is_blocked("c"));
    }

    #[tokio::test]
    async fn blocked_incoming_requests_get_an_error_reply() {
        let (a, b) = memory_pair().await;
        let connection = a.connect("b").await.expect("connect");
        b.block_incoming(true);
        assert!(b.is_blocking_incoming());
        assert_eq!(
            connection.invoke(read("x")).await,
            Ok(Reply::Error(BLOCKED.into()))
        );
        b.block_incoming(false);
        assert_eq!(
            connection.invoke(read("y")).await,
            Ok(Reply::Output(Bytes::from("y")))
        );
        let s = b.stats();
        assert_eq!((s.incoming_blocked, s.incoming), (1, 1), "{s:?}");
    }

    #[tokio::test]
    async fn close_fails_later_invokes_even_after_a_cut() {
        let (a, _b) = memory_pair().await;
        let connection = a.connect("b").await.expect("connect");
        a.block("b");
        connection.close().await.expect("close");
        a.unblock("b");
        assert!(matches!(
            connection.invoke(read("x")).await,
            Err(TransportError::Closed { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_tcp_a_block_closes_the_socket_and_an_unblock_reconnects() {
        let server = Arc::new(
            TcpTransport::new(TcpOptions::new("server", "c").insecure()).expect("options"),
        );
        let address = server
            .listen("127.0.0.1:0", Arc::new(Echo))
            .await
            .expect("listen");
        let client = FaultyTransport::new(Arc::new(
            TcpTransport::new(TcpOptions::new("client", "c").insecure()).expect("options"),
        ));
        let connection = client.connect(&address).await.expect("connect");
        assert_eq!(
            connection.invoke(read("a")).await,
            Ok(Reply::Output(Bytes::from("a")))
        );
        assert_eq!(server.stats().connections_accepted, 1);
        client.block(&address);
        assert!(is_blocked(&connection.invoke(read("b")).await));
        client.unblock(&address);
        assert_eq!(
            connection.invoke(read("c")).await,
            Ok(Reply::Output(Bytes::from("c")))
        );
        // A new TCP connection was accepted: the first one was closed.
        assert_eq!(server.stats().connections_accepted, 2);
        assert_eq!(client.stats().connections_cut, 1);
        server.shutdown().await.expect("shutdown");
    }
}
