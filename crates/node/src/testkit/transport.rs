//! The transport conformance kit: checks that a [`Transport`] behaves the way
//! the node relies on. Any implementation, shipped or third-party, runs it
//! against itself from a test:
//!
//! ```
//! use std::sync::Arc;
//! use raft_node::testkit::transport::Kit;
//! use raft_node::transport::memory::MemoryNetwork;
//! use raft_node::transport::Transport;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let network = MemoryNetwork::new();
//! Kit::new(move |setup| {
//!     let network = network.clone();
//!     async move {
//!         network.set_timeout(setup.request_timeout);
//!         let address = format!("node-{}", setup.index);
//!         let transport: Arc<dyn Transport> = Arc::new(network.transport(address.clone()));
//!         (transport, address)
//!     }
//! })
//! .run_all()
//! .await;
//! # });
//! ```
//!
//! The factory receives a [`Setup`] and returns a fresh transport that does
//! not listen yet, with the address it is to listen at (a TCP transport
//! picks a free port, e.g. `127.0.0.1:41234`). The kit calls it with a new
//! [`Setup::index`] every time, and listens at the returned address only
//! once, except in [`Kit::restart`] where a second transport listens at the
//! address a first one gave up.
//!
//! Each check is a public method of [`Kit`]: implementers can run them one
//! by one. A check panics with a message saying what went wrong; it waits
//! for no operation longer than the request timeout plus a slack (so a hung
//! transport fails instead of hanging the test suite), shuts its transports
//! down when it passes, and lasts well under a second with the default
//! 200 ms request timeout. The checks work on a current-thread or a
//! multi-thread runtime, with real or paused time.
//!
//! # What the kit holds a transport to
//!
//! - Envelopes arrive equal to what was sent, for every request type and
//!   every Raft message type, large ones included, and replies come back
//!   equal to what the handler returned ([`Kit::request_reply`]).
//! - Requests on one connection are delivered (the handler's `handle` is
//!   called) in the order their `invoke` futures were first polled
//!   ([`Kit::ordering`]). Calling `invoke` on an `async-trait` method only
//!   creates a future; what the kit calls the order of invocation is the
//!   order in which those futures start running. To pipeline in order,
//!   create the futures in order and poll them in that order (as
//!   `join_all` does); spawning each on its own task does not keep order.
//! - Raft messages posted on one connection ([`Connection::post`]) arrive
//!   unchanged and in order, whether the handler takes them at once
//!   ([`Handler::post`]) or through `handle` ([`Kit::posts`]).
//! - Concurrent requests over many connections each get their own reply
//!   ([`Kit::concurrent`]), and a request that is never answered does not
//!   hold up later ones on the same connection
//!   ([`Kit::no_head_of_line_blocking`]).
//! - Closing, shutting down, unreachable peers, handlers that never answer,
//!   taken addresses and restarted listeners behave as documented on the
//!   trait ([`Kit::close`], [`Kit::shutdown`], [`Kit::unreachable`],
//!   [`Kit::handler_timeout`], [`Kit::address_in_use`], [`Kit::restart`]).
//! - Optionally ([`Kit::back_channel`]), [`Connection::listen`].

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{
    Append, AppendOutcome, AppendResponse, Body, ConfChange, Entry, EntryPayload, Membership,
    Message, SnapshotChunk, SnapshotMeta, SnapshotResponse, VoteRequest,
};
use tokio::time::Instant;

use crate::transport::{
    Connection, Envelope, Handler, Posted, Reply, Request, Transport, TransportError,
};

/// The request timeout the kit asks transports for unless told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

/// How much longer than the request timeout the kit waits for an operation
/// before declaring it hung, unless told otherwise.
pub const DEFAULT_SLACK: Duration = Duration::from_millis(800);

/// How many requests [`Kit::ordering`] pipelines on one connection.
pub const ORDERING_REQUESTS: usize = 1000;

/// What the kit asks of a transport the factory makes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Setup {
    /// A number the kit never passes twice: use it to make names and
    /// addresses unique.
    pub index: usize,
    /// The node id of the transport (`kit-node-<index>`): a transport that
    /// authenticates nodes (TCP with TLS) is made with a certificate for
    /// it, and the Raft messages the kit sends over it come from this node.
    pub node_id: String,
    /// How long `invoke` must wait for a reply before failing with
    /// [`TransportError::Timeout`]. The kit keeps it short so that its
    /// checks stay fast in real time.
    pub request_timeout: Duration,
}

/// The transport conformance kit: a factory of fresh transports and the
/// checks to run against them. See the [module documentation](self).
pub struct Kit<F> {
    factory: F,
    next_index: AtomicUsize,
    request_timeout: Duration,
    slack: Duration,
    back_channel: bool,
}

impl<F> std::fmt::Debug for Kit<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kit")
            .field("request_timeout", &self.request_timeout)
            .field("slack", &self.slack)
            .field("back_channel", &self.back_channel)
            .finish_non_exhaustive()
    }
}

/// Runs every check of the kit, with its defaults, against the transports
/// `factory` makes (see [`Kit::new`]).
pub async fn run_all<F, Fut>(factory: F)
where
    F: Fn(Setup) -> Fut,
    Fut: Future<Output = (Arc<dyn Transport>, String)>,
{
    Kit::new(factory).run_all().await;
}

/// A payload the kit's handler never answers.
const HANG: &[u8] = b"kit: never answer this";

/// The cluster id the kit's handler reports in [`Reply::Hello`].
const KIT_CLUSTER: &str = "kit-cluster";

impl<F, Fut> Kit<F>
where
    F: Fn(Setup) -> Fut,
    Fut: Future<Output = (Arc<dyn Transport>, String)>,
{
    /// A kit whose transports come from `factory`: given a [`Setup`], it
    /// returns a new transport, not listening yet, and the address it is to
    /// listen at. The transport must apply [`Setup::request_timeout`].
    pub fn new(factory: F) -> Kit<F> {
        Kit {
            factory,
            next_index: AtomicUsize::new(0),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            slack: DEFAULT_SLACK,
            back_channel: true,
        }
    }

    /// Asks transports for this request timeout (default
    /// [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn request_timeout(mut self, timeout: Duration) -> Kit<F> {
        self.request_timeout = timeout;
        self
    }

    /// Waits this much longer than the request timeout before declaring an
    /// operation hung (default [`DEFAULT_SLACK`]).
    pub fn slack(mut self, slack: Duration) -> Kit<F> {
        self.slack = slack;
        self
    }

    /// Leaves [`Kit::back_channel`] out of [`Kit::run_all`], for transports
    /// whose [`Connection::listen`] does not follow the convention it
    /// checks.
    pub fn without_back_channel(mut self) -> Kit<F> {
        self.back_channel = false;
        self
    }

    /// Runs every check, one after the other.
    pub async fn run_all(&self) {
        self.request_reply().await;
        self.ordering().await;
        self.posts().await;
        self.concurrent().await;
        self.no_head_of_line_blocking().await;
        self.close().await;
        self.unreachable().await;
        self.handler_timeout().await;
        self.shutdown().await;
        self.address_in_use().await;
        self.restart().await;
        if self.back_channel {
            self.back_channel().await;
        }
    }

    /// Every envelope of [`sample_envelopes`] (every request type, every
    /// Raft message type, entries of every payload type, a 1,000-entry
    /// append, a 256 KiB snapshot chunk) reaches the listener unchanged, and
    /// its reply (of every reply type) comes back unchanged.
    pub async fn request_reply(&self) {
        const CHECK: &str = "request_reply";
        let (server, address, recorder) = self.serve(CHECK, "server").await;
        let (client, _, client_id) = self.make_node().await;
        let connection = self.connect(CHECK, &client, &address).await;
        // The Raft messages come from the client's node: a transport that
        // authenticates nodes lets a node speak only for itself.
        let from = crate::ids::node_number(&client_id);
        let samples: Vec<Envelope> = sample_envelopes()
            .into_iter()
            .map(|mut envelope| {
                if let Request::Raft(message) = &mut envelope.request {
                    message.from = from;
                }
                envelope
            })
            .collect();
        for (i, envelope) in samples.iter().enumerate() {
            let expected = reply_to("server", &envelope.request);
            let reply = self
                .call(CHECK, &connection, envelope.clone())
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "transport kit, {CHECK}: request {i} ({}) failed: {e}",
                        describe(envelope)
                    )
                });
            assert!(
                Some(&reply) == expected.as_ref(),
                "transport kit, {CHECK}: request {i} ({}): expected reply {expected:?}, got {reply:?}",
                describe(envelope)
            );
        }
        expect_arrived(
            CHECK,
            &recorder.seen(),
            &samples,
            ("requests", "sent"),
            "arrived changed",
        );
        self.finish(CHECK, &[&server, &client], &[&connection])
            .await;
    }

    /// [`ORDERING_REQUESTS`] requests pipelined on one connection (their
    /// `invoke` futures created in order and first polled in that order) are
    /// delivered in that order, and each gets its own reply.
    pub async fn ordering(&self) {
        const CHECK: &str = "ordering";
        let (server, address, recorder) = self.serve(CHECK, "server").await;
        let (client, _) = self.make().await;
        let connection = self.connect(CHECK, &client, &address).await;
        let envelopes: Vec<Envelope> = (0..ORDERING_REQUESTS)
            .map(|i| command(i as u64, format!("in order {i}")))
            .collect();
        let calls: Vec<_> = envelopes
            .iter()
            .map(|envelope| connection.invoke(envelope.clone()))
            .collect();
        let replies = self.within_bulk(CHECK, join_in_order(calls)).await;
        for (i, (reply, envelope)) in replies.iter().zip(&envelopes).enumerate() {
            let expected = reply_to("server", &envelope.request);
            assert!(
                reply.as_ref().ok() == expected.as_ref(),
                "transport kit, {CHECK}: request {i}: expected {expected:?}, got {reply:?}"
            );
        }
        let seen = recorder.seen();
        assert!(
            seen.len() == envelopes.len(),
            "transport kit, {CHECK}: {} requests delivered, {} sent",
            seen.len(),
            envelopes.len()
        );
        if let Some(i) = seen.iter().zip(&envelopes).position(|(a, b)| a != b) {
            let position = envelopes.iter().position(|e| *e == seen[i]);
            panic!(
                "transport kit, {CHECK}: requests on one connection were delivered out of order: \
                 delivery {i} was request {position:?}"
            );
        }
        self.finish(CHECK, &[&server, &client], &[&connection])
            .await;
    }

    /// Every Raft message of [`sample_envelopes`], posted on one connection
    /// ([`Connection::post`]; one the connection gives back is invoked in
    /// its place), reaches the listener unchanged and in order, whether the
    /// listener takes it at once ([`Handler::post`], which the kit's
    /// handler does for every other one) or through
    /// [`Handler::handle`].
    pub async fn posts(&self) {
        const CHECK: &str = "posts";
        let (server, address, recorder) = self.serve(CHECK, "server").await;
        let (client, _, client_id) = self.make_node().await;
        let connection = self.connect(CHECK, &client, &address).await;
        let from = crate::ids::node_number(&client_id);
        let samples: Vec<Envelope> = sample_envelopes()
            .into_iter()
            .filter_map(|mut envelope| match &mut envelope.request {
                Request::Raft(message) => {
                    message.from = from;
                    Some(envelope)
                }
                _ => None,
            })
            .collect();
        for (i, envelope) in samples.iter().enumerate() {
            match connection.post(envelope.clone()) {
                Posted::Sent => {}
                Posted::Unsupported(envelope) => {
                    let reply = self.call(CHECK, &connection, envelope).await;
                    assert!(
                        matches!(reply, Ok(Reply::Ack)),
                        "transport kit, {CHECK}: message {i} ({}), invoked, got {reply:?}",
                        describe(&samples[i])
                    );
                }
                Posted::Failed(e) => panic!(
                    "transport kit, {CHECK}: posting message {i} ({}) failed: {e}",
                    describe(&samples[i])
                ),
            }
        }
        // Posts are not answered: wait (bounded) until all have arrived.
        let deadline = Instant::now() + self.limit();
        while recorder.seen().len() < samples.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        expect_arrived(
            CHECK,
            &recorder.seen(),
            &samples,
            ("messages", "posted"),
            "arrived changed or out of order",
        );
        self.finish(CHECK, &[&server, &client], &[&connection])
            .await;
    }

    /// Many requests at once, from 4 transports with 2 connections each and
    /// 25 tasks per connection, each get their own reply, and each is
    /// delivered exactly once.
    pub async fn concurrent(&self) {
        const CHECK: &str = "concurrent";
        const CLIENTS: usize = 4;
        const CONNECTIONS: usize = 2;
        const TASKS: usize = 25;
        let (server, address, recorder) = self.serve(CHECK, "server").await;
        let mut clients = Vec::new();
        let mut connections = Vec::new();
        for _ in 0..CLIENTS {
            let (client, _) = self.make().await;
            for _ in 0..CONNECTIONS {
                connections.push(self.connect(CHECK, &client, &address).await);
            }
            clients.push(client);
        }
        let mut sent = Vec::new();
        let mut tasks = Vec::new();
        for (c, connection) in connections.iter().enumerate() {
            for t in 0..TASKS {
                let payload = Bytes::from(format!("connection {c} task {t}"));
                let request = if t % 2 == 0 {
                    Request::Command(payload)
                } else {
                    Request::Read(payload)
                };
                let envelope = Envelope {
                    cluster: (c * TASKS + t) as u64,
                    from: Arc::from(format!("client {c}")),
                    request,
                };
                sent.push(envelope.clone());
                let connection = connection.clone();
                tasks.push(tokio::spawn(async move {
                    let expected = reply_to("server", &envelope.request);
                    match connection.invoke(envelope.clone()).await {
                        Ok(reply) if Some(&reply) == expected.as_ref() => Ok(()),
                        other => Err(format!(
                            "{}: expected {expected:?}, got {other:?}",
                            describe(&envelope)
                        )),
                    }
                }));
            }
        }
        let results = self
            .within_bulk(CHECK, async {
                let mut results = Vec::new();
                for task in tasks {
                    results.push(task.await);
                }
                results
            })
            .await;
        for result in results {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(message)) => panic!("transport kit, {CHECK}: {message}"),
                Err(e) => panic!("transport kit, {CHECK}: a task failed: {e}"),
            }
        }
        let mut seen = recorder.seen();
        seen.sort_by_key(|e| e.cluster);
        assert!(
            seen == sent,
            "transport kit, {CHECK}: the listener did not receive each request exactly once \
             ({} received, {} sent)",
            seen.len(),
            sent.len()
        );
        let mut transports: Vec<&Arc<dyn Transport>> = clients.iter().collect();
        transports.push(&server);
        let connections: Vec<&Arc<dyn Connection>> = connections.iter().collect();
        self.finish(CHECK, &transports, &connections).await;
    }

    /// A request whose handler never answers does not hold up a later
    /// request on the same connection: the later one is answered before the
    /// first times out.
    pub async fn no_head_of_line_blocking(&self) {
        const CHECK: &str = "no_head_of_line_blocking";
        let (server, address, _) = self.serve(CHECK, "server").await;
        let (client, _) = self.make().await;
        let connection = self.connect(CHECK, &client, &address).await;
        let start = Instant::now();
        let stuck = async {
            let result = connection.invoke(hang()).await;
            (result, start.elapsed())
        };
        let next = command(1, "behind a stuck request".to_owned());
        let expected = reply_to("server", &next.request);
        let answered = async {
            let result = connection.invoke(next).await;
            (result, start.elapsed())
        };
        let calls: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> =
            vec![Box::pin(stuck), Box::pin(answered)];
        let results = self.within(CHECK, join_in_order(calls)).await;
        let (stuck, answered) = (&results[0], &results[1]);
        assert!(
            answered.0.as_ref().ok() == expected.as_ref(),
            "transport kit, {CHECK}: the request behind the stuck one: expected {expected:?}, got {:?}",
            answered.0
        );
        assert!(
            answered.1 < self.request_timeout,
            "transport kit, {CHECK}: the request behind the stuck one took {:?}, the request \
             timeout is {:?}: it waited for the stuck one",
            answered.1,
            self.request_timeout
        );
        assert!(
            matches!(stuck.0, Err(TransportError::Timeout { .. })),
            "transport kit, {CHECK}: a request never answered: expected Timeout, got {:?}",
            stuck.0
        );
        self.finish(CHECK, &[&server, &client], &[&connection])
            .await;
    }

    /// After `close`, `invoke` fails with [`TransportError::Closed`]; closing
    /// again succeeds and changes nothing; other connections to the same
    /// peer, and new ones, keep working.
    pub async fn close(&self) {
        const CHECK: &str = "close";
        let (server, address, _) = self.serve(CHECK, "server").await;
        let (client, _) = self.make().await;
        let closing = self.connect(CHECK, &client, &address).await;
        let other = self.connect(CHECK, &client, &address).await;
        self.expect_answer(CHECK, "before close", &closing, "server")
            .await;
        self.within(CHECK, closing.close())
            .await
            .unwrap_or_else(|e| panic!("transport kit, {CHECK}: close failed: {e}"));
        let after = self.call(CHECK, &closing, hello()).await;
        assert!(
            matches!(after, Err(TransportError::Closed { .. })),
            "transport kit, {CHECK}: invoke after close: expected Closed, got {after:?}"
        );
        self.within(CHECK, closing.close())
            .await
            .unwrap_or_else(|e| panic!("transport kit, {CHECK}: a second close failed: {e}"));
        let again = self.call(CHECK, &closing, hello()).await;
        assert!(
            matches!(again, Err(TransportError::Closed { .. })),
            "transport kit, {CHECK}: invoke after a second close: expected Closed, got {again:?}"
        );
        self.expect_answer(CHECK, "another connection", &other, "server")
            .await;
        let fresh = self.connect(CHECK, &client, &address).await;
        self.expect_answer(CHECK, "a new connection", &fresh, "server")
            .await;
        self.finish(CHECK, &[&server, &client], &[&other, &fresh])
            .await;
    }

    /// Requests to an address nobody listens at fail with
    /// [`TransportError::Unreachable`] or [`TransportError::Timeout`] (from
    /// `connect` or from `invoke`) within the request timeout, twice in a
    /// row; once a listener appears there, a new connection reaches it (and,
    /// best effort, the old one).
    pub async fn unreachable(&self) {
        const CHECK: &str = "unreachable";
        let (ghost, ghost_address) = self.make().await;
        let (client, _) = self.make().await;
        let early = match self.within(CHECK, client.connect(&ghost_address)).await {
            Ok(connection) => {
                for attempt in ["first", "second"] {
                    let result = self.call(CHECK, &connection, hello()).await;
                    assert!(
                        matches!(
                            result,
                            Err(TransportError::Unreachable { .. } | TransportError::Timeout { .. })
                        ),
                        "transport kit, {CHECK}: {attempt} invoke to an address nobody listens \
                         at: expected Unreachable or Timeout, got {result:?}"
                    );
                }
                Some(connection)
            }
            Err(TransportError::Unreachable { .. } | TransportError::Timeout { .. }) => None,
            Err(e) => panic!(
                "transport kit, {CHECK}: connect to an address nobody listens at: expected \
                 Unreachable or Timeout, got {e:?}"
            ),
        };
        let recorder = Recorder::new("late");
        self.within(CHECK, ghost.listen(&ghost_address, recorder))
            .await
            .unwrap_or_else(|e| panic!("transport kit, {CHECK}: listen failed: {e}"));
        let fresh = self.connect(CHECK, &client, &ghost_address).await;
        self.expect_answer(CHECK, "a new connection to a late listener", &fresh, "late")
            .await;
        let mut connections = vec![&fresh];
        if let Some(early) = &early {
            self.best_effort(
                CHECK,
                "the connection made before the listener",
                early,
                "late",
            )
            .await;
            connections.push(early);
        }
        self.finish(CHECK, &[&ghost, &client], &connections).await;
    }

    /// A handler that never answers makes `invoke` fail with
    /// [`TransportError::Timeout`], no sooner than half the request timeout
    /// and no later than the timeout plus the slack; the connection works
    /// afterwards.
    pub async fn handler_timeout(&self) {
        const CHECK: &str = "handler_timeout";
        let (server, address, _) = self.serve(CHECK, "server").await;
        let (client, _) = self.make().await;
        let connection = self.connect(CHECK, &client, &address).await;
        let start = Instant::now();
        let result = self.call(CHECK, &connection, hang()).await;
        let elapsed = start.elapsed();
        assert!(
            matches!(result, Err(TransportError::Timeout { .. })),
            "transport kit, {CHECK}: a request never answered: expected Timeout, got {result:?}"
        );
        assert!(
            elapsed >= self.request_timeout / 2,
            "transport kit, {CHECK}: Timeout after {elapsed:?}, the request timeout is {:?}",
            self.request_timeout
        );
        self.expect_answer(CHECK, "after a timeout", &connection, "server")
            .await;
        self.finish(CHECK, &[&server, &client], &[&connection])
            .await;
    }

    /// After `shutdown`, requests to the listener fail (on an existing
    /// connection and on a new one), within the request timeout.
    pub async fn shutdown(&self) {
        const CHECK: &str = "shutdown";
        let (server, address, recorder) = self.serve(CHECK, "server").await;
        let (client, _) = self.make().await;
        let connection = self.connect(CHECK, &client, &address).await;
        self.expect_answer(CHECK, "before shutdown", &connection, "server")
            .await;
        self.within(CHECK, server.shutdown())
            .await
            .unwrap_or_else(|e| panic!("transport kit, {CHECK}: shutdown failed: {e}"));
        let delivered = recorder.seen().len();
        let old = self.call(CHECK, &connection, hello()).await;
        assert!(
            old.is_err(),
            "transport kit, {CHECK}: invoke on an existing connection after the listener shut \
             down: expected an error, got {old:?}"
        );
        if let Ok(fresh) = self.within(CHECK, client.connect(&address)).await {
            let new = self.call(CHECK, &fresh, hello()).await;
            assert!(
                new.is_err(),
                "transport kit, {CHECK}: invoke on a new connection after the listener shut \
                 down: expected an error, got {new:?}"
            );
            self.close_quietly(&fresh).await;
        }
        assert!(
            recorder.seen().len() == delivered,
            "transport kit, {CHECK}: the handler received requests after shutdown"
        );
        self.finish(CHECK, &[&client], &[&connection]).await;
    }

    /// Listening at an address another live transport listens at fails, and
    /// leaves the first listener in place.
    pub async fn address_in_use(&self) {
        const CHECK: &str = "address_in_use";
        let (server, address, _) = self.serve(CHECK, "first").await;
        let (intruder, _) = self.make().await;
        let result = self
            .within(CHECK, intruder.listen(&address, Recorder::new("second")))
            .await;
        assert!(
            result.is_err(),
            "transport kit, {CHECK}: a second transport could listen at {address} while the \
             first still does"
        );
        let (client, _) = self.make().await;
        let connection = self.connect(CHECK, &client, &address).await;
        self.expect_answer(CHECK, "the first listener", &connection, "first")
            .await;
        self.finish(CHECK, &[&server, &intruder, &client], &[&connection])
            .await;
    }

    /// A listener restarted at the same address (a new transport, after the
    /// first shut down) is reachable by a new connection; a connection made
    /// before the restart either reaches the new listener or fails (best
    /// effort), but never reaches the old one.
    pub async fn restart(&self) {
        const CHECK: &str = "restart";
        let (first, address, _) = self.serve(CHECK, "first").await;
        let (client, _) = self.make().await;
        let old = self.connect(CHECK, &client, &address).await;
        self.expect_answer(CHECK, "before the restart", &old, "first")
            .await;
        self.within(CHECK, first.shutdown())
            .await
            .unwrap_or_else(|e| panic!("transport kit, {CHECK}: shutdown failed: {e}"));
        drop(first);
        let (second, _) = self.make().await;
        self.within(CHECK, second.listen(&address, Recorder::new("second")))
            .await
            .unwrap_or_else(|e| {
                panic!("transport kit, {CHECK}: listen again at {address} after shutdown: {e}")
            });
        let fresh = self.connect(CHECK, &client, &address).await;
        self.expect_answer(
            CHECK,
            "a new connection after the restart",
            &fresh,
            "second",
        )
        .await;
        self.best_effort(
            CHECK,
            "the connection made before the restart",
            &old,
            "second",
        )
        .await;
        self.finish(CHECK, &[&second, &client], &[&old, &fresh])
            .await;
    }

    /// [`Connection::listen`]: transport A, which does not listen, connects
    /// to B and listens on that connection; requests B then sends to A's
    /// address (the one the factory gave A) reach that handler; once A
    /// closes the connection, they fail.
    ///
    /// This is the convention of the in-memory transport; a transport that
    /// reaches peers' back channels some other way leaves this check out
    /// with [`Kit::without_back_channel`].
    pub async fn back_channel(&self) {
        const CHECK: &str = "back_channel (optional: a transport without a back \
                             channel leaves this check out with Kit::without_back_channel())";
        let (b, b_address, _) = self.serve(CHECK, "server").await;
        let (a, a_address) = self.make().await;
        let forth = self.connect(CHECK, &a, &b_address).await;
        let back = Recorder::new("back");
        forth.listen(back.clone());
        self.expect_answer(CHECK, "A to B", &forth, "server").await;
        let reverse = self.connect(CHECK, &b, &a_address).await;
        self.expect_answer(CHECK, "B to A over A's connection", &reverse, "back")
            .await;
        assert!(
            back.seen().len() == 1,
            "transport kit, {CHECK}: the back channel's handler received {} requests, expected 1",
            back.seen().len()
        );
        self.within(CHECK, forth.close())
            .await
            .unwrap_or_else(|e| panic!("transport kit, {CHECK}: close failed: {e}"));
        let after = self.call(CHECK, &reverse, hello()).await;
        assert!(
            after.is_err(),
            "transport kit, {CHECK}: B reached A's back channel after A closed the connection: \
             {after:?}"
        );
        self.finish(CHECK, &[&a, &b], &[&reverse]).await;
    }

    // --- helpers ---

    /// A fresh transport and its address.
    async fn make(&self) -> (Arc<dyn Transport>, String) {
        let (transport, address, _) = self.make_node().await;
        (transport, address)
    }

    /// A fresh transport, its address and its node id.
    async fn make_node(&self) -> (Arc<dyn Transport>, String, String) {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let node_id = format!("kit-node-{index}");
        let setup = Setup {
            index,
            node_id: node_id.clone(),
            request_timeout: self.request_timeout,
        };
        let (transport, address) = (self.factory)(setup).await;
        (transport, address, node_id)
    }

    /// A fresh transport listening with a recorder named `name`.
    async fn serve(&self, check: &str, name: &str) -> (Arc<dyn Transport>, String, Arc<Recorder>) {
        let (transport, address) = self.make().await;
        let recorder = Recorder::new(name);
        self.within(check, transport.listen(&address, recorder.clone()))
            .await
            .unwrap_or_else(|e| panic!("transport kit, {check}: listen at {address} failed: {e}"));
        (transport, address, recorder)
    }

    fn limit(&self) -> Duration {
        self.request_timeout.saturating_add(self.slack)
    }

    /// Awaits `future`, panicking if it takes longer than the request
    /// timeout plus the slack.
    async fn within<T>(&self, check: &str, future: impl Future<Output = T>) -> T {
        match tokio::time::timeout(self.limit(), future).await {
            Ok(output) => output,
            Err(_) => panic!(
                "transport kit, {check}: an operation hung for {:?} (request timeout {:?} plus \
                 slack {:?})",
                self.limit(),
                self.request_timeout,
                self.slack
            ),
        }
    }

    /// Like [`Kit::within`], with room for a thousand requests.
    async fn within_bulk<T>(&self, check: &str, future: impl Future<Output = T>) -> T {
        let limit = self.limit().saturating_mul(5);
        match tokio::time::timeout(limit, future).await {
            Ok(output) => output,
            Err(_) => {
                panic!("transport kit, {check}: the requests did not finish within {limit:?}")
            }
        }
    }

    async fn connect(
        &self,
        check: &str,
        transport: &Arc<dyn Transport>,
        address: &str,
    ) -> Arc<dyn Connection> {
        self.within(check, transport.connect(address))
            .await
            .unwrap_or_else(|e| panic!("transport kit, {check}: connect to {address} failed: {e}"))
    }

    async fn call(
        &self,
        check: &str,
        connection: &Arc<dyn Connection>,
        envelope: Envelope,
    ) -> Result<Reply, TransportError> {
        self.within(check, connection.invoke(envelope)).await
    }

    /// Sends a read and checks that the listener named `name` answers it.
    async fn expect_answer(
        &self,
        check: &str,
        what: &str,
        connection: &Arc<dyn Connection>,
        name: &str,
    ) {
        let envelope = read(what);
        let expected = reply_to(name, &envelope.request);
        let reply = self.call(check, connection, envelope).await;
        assert!(
            reply.as_ref().ok() == expected.as_ref(),
            "transport kit, {check}: {what}: expected {expected:?} (from listener {name:?}), \
             got {reply:?}"
        );
    }

    /// Like [`Kit::expect_answer`], but an error is accepted (and logged).
    async fn best_effort(
        &self,
        check: &str,
        what: &str,
        connection: &Arc<dyn Connection>,
        name: &str,
    ) {
        let envelope = read(what);
        let expected = reply_to(name, &envelope.request);
        match self.call(check, connection, envelope).await {
            Ok(reply) => assert!(
                Some(&reply) == expected.as_ref(),
                "transport kit, {check}: {what}: expected {expected:?} (from listener {name:?}) \
                 or an error, got {reply:?}"
            ),
            Err(e) => tracing::info!(check, what, error = %e, "best-effort check not met"),
        }
    }

    async fn close_quietly(&self, connection: &Arc<dyn Connection>) {
        let _ = tokio::time::timeout(self.limit(), connection.close()).await;
    }

    /// Closes the connections and shuts the transports down, which must
    /// succeed.
    async fn finish(
        &self,
        check: &str,
        transports: &[&Arc<dyn Transport>],
        connections: &[&Arc<dyn Connection>],
    ) {
        for connection in connections {
            self.within(check, connection.close())
                .await
                .unwrap_or_else(|e| panic!("transport kit, {check}: close failed: {e}"));
        }
        for transport in transports {
            self.within(check, transport.shutdown())
                .await
                .unwrap_or_else(|e| panic!("transport kit, {check}: shutdown failed: {e}"));
        }
    }
}

/// Polls `futures` in order (every one on every wake-up) until all are done;
/// their outputs in the same order. The first polls happen in order.
async fn join_in_order<T, Fut>(futures: Vec<Fut>) -> Vec<T>
where
    Fut: Future<Output = T> + Unpin,
{
    let mut pending: Vec<Option<Fut>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    let mut remaining = pending.len();
    std::future::poll_fn(|cx| {
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                if let Poll::Ready(value) = Pin::new(future).poll(cx) {
                    *output = Some(value);
                    *slot = None;
                    remaining -= 1;
                }
            }
        }
        if remaining == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The kit's handler: records what it receives and answers with
/// [`reply_to`] (or never, for [`HANG`]).
pub(crate) struct Recorder {
    name: String,
    seen: Mutex<Vec<Envelope>>,
    /// Posts offered to [`Handler::post`]: every other one is taken there.
    offered: AtomicUsize,
}

impl Recorder {
    pub(crate) fn new(name: &str) -> Arc<Recorder> {
        Arc::new(Recorder {
            name: name.to_owned(),
            seen: Mutex::new(Vec::new()),
            offered: AtomicUsize::new(0),
        })
    }

    pub(crate) fn seen(&self) -> Vec<Envelope> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, envelope: Envelope) -> Reply {
        let reply = reply_to(&self.name, &envelope.request);
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(envelope);
        match reply {
            Some(reply) => reply,
            None => std::future::pending().await,
        }
    }

    /// Takes every other post at once, and gives the rest back (to be
    /// handled by `handle`): both ways get checked.
    fn post(&self, envelope: Envelope) -> Result<(), Envelope> {
        if self.offered.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
            return Err(envelope);
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(envelope);
        Ok(())
    }
}

/// What the kit's handler named `name` answers to `request` (`None`: it
/// never answers). Every reply type appears.
pub(crate) fn reply_to(name: &str, request: &Request) -> Option<Reply> {
    let reply = match request {
        Request::Raft(_) => Reply::Ack,
        Request::Command(payload) if payload.as_ref() == HANG => return None,
        Request::Command(payload) => Reply::Output(payload.clone()),
        Request::SessionCommand { command, .. } => Reply::Output(command.clone()),
        Request::OpenSession => Reply::Output(Bytes::from_static(&[1, 0, 0, 0, 0, 0, 0, 0])),
        Request::Read(payload) => {
            Reply::Output(Bytes::from([name.as_bytes(), b" read ", payload].concat()))
        }
        Request::Join { address } => Reply::Error(format!("{name} refuses {address}")),
        Request::Leave { id } => Reply::Output(Bytes::from(id.clone())),
        Request::Hello => Reply::Hello {
            id: name.to_owned(),
            cluster: KIT_CLUSTER.to_owned(),
            empty: true,
            client_address: String::new(),
        },
        Request::Within { call, .. } => match reply_to(name, call)? {
            Reply::Output(out) => Reply::Failed {
                code: crate::transport::ErrorCode::Refused,
                message: String::from_utf8_lossy(&out).into_owned(),
            },
            other => other,
        },
    };
    Some(reply)
}

fn command(cluster: u64, payload: String) -> Envelope {
    Envelope {
        cluster,
        from: Arc::from(""),
        request: Request::Command(Bytes::from(payload)),
    }
}

fn read(what: &str) -> Envelope {
    Envelope {
        cluster: 1,
        from: Arc::from(""),
        request: Request::Read(Bytes::from(what.to_owned())),
    }
}

fn hello() -> Envelope {
    Envelope {
        cluster: 1,
        from: Arc::from(""),
        request: Request::Hello,
    }
}

fn hang() -> Envelope {
    Envelope {
        cluster: 1,
        from: Arc::from(""),
        request: Request::Command(Bytes::from_static(HANG)),
    }
}

/// A short description of an envelope (its payloads may be large).
pub(crate) fn describe(envelope: &Envelope) -> String {
    let mut out = format!(
        "{} request, cluster {:#x}",
        envelope.request.kind(),
        envelope.cluster
    );
    match &envelope.request {
        Request::Raft(message) => {
            let _ = write!(
                out,
                ", from {} to {} term {}",
                message.from, message.to, message.term
            );
            match &message.body {
                Body::Append(append) => {
                    let _ = write!(out, ", {} entries", append.entries.len());
                }
                Body::Snapshot(chunk) => {
                    let _ = write!(out, ", {} bytes", chunk.data.len());
                }
                _ => {}
            }
        }
        Request::Command(payload) | Request::Read(payload) => {
            let _ = write!(out, ", {} bytes", payload.len());
        }
        Request::Join { address } => {
            let _ = write!(out, ", address {address:?}");
        }
        Request::Leave { id } => {
            let _ = write!(out, ", id {id:?}");
        }
        Request::SessionCommand {
            session,
            seq,
            command,
            ..
        } => {
            let _ = write!(
                out,
                ", session {session}, seq {seq}, {} bytes",
                command.len()
            );
        }
        Request::Hello | Request::OpenSession => {}
        Request::Within { within, .. } => {
            let _ = write!(out, ", within {within:?}");
        }
    }
    out
}

/// The position of a Raft message type in the list of them: an exhaustive
/// match, so that a new message type fails to compile here until
/// [`sample_messages`] covers it.
fn body_variant(body: &Body) -> usize {
    match body {
        Body::Append(_) => 0,
        Body::AppendResponse(_) => 1,
        Body::Heartbeat { .. } => 2,
        Body::Commit { .. } => 3,
        Body::HeartbeatResponse { .. } => 4,
        Body::Vote(_) => 5,
        Body::VoteResponse { .. } => 6,
        Body::Snapshot(_) => 7,
        Body::SnapshotResponse(_) => 8,
        Body::TimeoutNow => 9,
        Body::ReadIndex { .. } => 10,
        Body::ReadIndexResponse { .. } => 11,
    }
}

/// How many Raft message types [`body_variant`] knows.
const BODY_VARIANTS: usize = 12;

/// Raft messages of every type and shape: entries of every payload type, a
/// probe, a 1,000-entry append, a 256 KiB snapshot chunk, extreme numbers.
/// For transports' own tests too (an encoder must round-trip all of them).
pub fn sample_messages() -> Vec<Message> {
    let membership = Membership::with_voters([1, 2, 3])
        .apply(&ConfChange::AddLearner {
            id: 4,
            context: Bytes::from_static("node-4 at 10.0.0.4:7000, nœud".as_bytes()),
        })
        .expect("adding a learner that is not a member to a valid configuration succeeds");
    let message = |from, to, term, body| Message {
        cluster: 0x5eed_cafe_f00d,
        from,
        to,
        term,
        body,
    };
    let entries = vec![
        Entry {
            term: 3,
            index: 8,
            payload: EntryPayload::Blank,
        },
        Entry {
            term: 3,
            index: 9,
            payload: EntryPayload::Command(Bytes::from_static(b"set x = 1")),
        },
        Entry {
            term: 4,
            index: 10,
            payload: EntryPayload::Membership(membership.clone()),
        },
        Entry {
            term: 4,
            index: 11,
            payload: EntryPayload::Command(Bytes::new()),
        },
    ];
    let many: Vec<Entry> = (1..=1000u64)
        .map(|index| Entry {
            term: 7,
            index,
            payload: EntryPayload::Command(Bytes::from(vec![index as u8; (index % 97) as usize])),
        })
        .collect();
    let chunk: Bytes = (0..256 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    vec![
        message(
            1,
            2,
            4,
            Body::Append(Append {
                prev_index: 7,
                prev_term: 3,
                entries,
                commit: 7,
                round: 12,
            }),
        ),
        message(
            1,
            3,
            4,
            Body::Append(Append {
                prev_index: 0,
                prev_term: 0,
                entries: Vec::new(),
                commit: 0,
                round: 0,
            }),
        ),
        message(
            1,
            2,
            7,
            Body::Append(Append {
                prev_index: 0,
                prev_term: 0,
                entries: many,
                commit: 500,
                round: 13,
            }),
        ),
        message(
            2,
            1,
            4,
            Body::AppendResponse(AppendResponse {
                round: 12,
                outcome: AppendOutcome::Accepted { match_index: 11 },
            }),
        ),
        message(
            3,
            1,
            4,
            Body::AppendResponse(AppendResponse {
                round: 12,
                outcome: AppendOutcome::Rejected {
                    prev_index: 9,
                    last_index: 5,
                    conflict: Some((2, 4)),
                },
            }),
        ),
        message(
            3,
            1,
            4,
            Body::AppendResponse(AppendResponse {
                round: 0,
                outcome: AppendOutcome::Rejected {
                    prev_index: 1,
                    last_index: 0,
                    conflict: None,
                },
            }),
        ),
        message(
            1,
            2,
            u64::MAX,
            Body::Heartbeat {
                commit: 11,
                round: u64::MAX,
            },
        ),
        message(1, 2, 4, Body::Commit { commit: 11 }),
        message(2, 1, 4, Body::HeartbeatResponse { round: 12 }),
        message(
            2,
            1,
            5,
            Body::Vote(VoteRequest {
                pre: true,
                last_index: 11,
                last_term: 4,
                transfer: false,
            }),
        ),
        message(
            2,
            3,
            5,
            Body::Vote(VoteRequest {
                pre: false,
                last_index: 11,
                last_term: 4,
                transfer: true,
            }),
        ),
        message(
            1,
            2,
            5,
            Body::VoteResponse {
                pre: true,
                granted: false,
            },
        ),
        message(
            3,
            2,
            5,
            Body::VoteResponse {
                pre: false,
                granted: true,
            },
        ),
        message(
            1,
            4,
            4,
            Body::Snapshot(Box::new(SnapshotChunk {
                meta: SnapshotMeta {
                    index: 11,
                    term: 4,
                    membership,
                },
                total_bytes: 3 * 256 * 1024,
                offset: 256 * 1024,
                data: chunk,
                round: 13,
            })),
        ),
        message(
            4,
            1,
            4,
            Body::SnapshotResponse(SnapshotResponse {
                snapshot_index: 11,
                next_offset: 2 * 256 * 1024,
                done: false,
                round: 13,
            }),
        ),
        message(1, 2, 4, Body::TimeoutNow),
        message(3, 1, 4, Body::ReadIndex { id: 42 }),
        message(
            1,
            3,
            4,
            Body::ReadIndexResponse {
                id: 42,
                index: Some(11),
            },
        ),
        message(
            1,
            3,
            4,
            Body::ReadIndexResponse {
                id: u64::MAX,
                index: None,
            },
        ),
    ]
}

/// Envelopes of every request type: every message of [`sample_messages`],
/// and commands, reads, joins, leaves and hellos of various sizes and
/// encodings, with extreme cluster ids.
pub fn sample_envelopes() -> Vec<Envelope> {
    let messages = sample_messages();
    let mut covered = [false; BODY_VARIANTS];
    for message in &messages {
        covered[body_variant(&message.body)] = true;
    }
    assert!(
        covered.iter().all(|&c| c),
        "sample_messages covers every Raft message type"
    );
    let mut envelopes: Vec<Envelope> = messages
        .into_iter()
        .map(|message| Envelope {
            cluster: message.cluster,
            from: Arc::from(format!("10.0.0.{}:7000", message.from)),
            request: Request::Raft(message),
        })
        .collect();
    let big: Bytes = (0..64 * 1024).map(|i| (i % 253) as u8).collect();
    envelopes.extend([
        Envelope {
            cluster: 0,
            from: Arc::from(""),
            request: Request::Hello,
        },
        Envelope {
            cluster: u64::MAX,
            from: Arc::from("127.0.0.1:7001"),
            request: Request::Command(Bytes::new()),
        },
        Envelope {
            cluster: 7,
            from: Arc::from("nœud-☃"),
            request: Request::Command(Bytes::from_static(b"set x = 1")),
        },
        Envelope {
            cluster: 7,
            from: Arc::from("127.0.0.1:7001"),
            request: Request::Command(big),
        },
        Envelope {
            cluster: 7,
            from: Arc::from(""),
            request: Request::Read(Bytes::from_static(b"get x")),
        },
        Envelope {
            cluster: 7,
            from: Arc::from("[::1]:7004"),
            request: Request::Join {
                address: "127.0.0.1:7004 (nœud ☃)".to_owned(),
            },
        },
        Envelope {
            cluster: 7,
            from: Arc::from(""),
            request: Request::Leave { id: String::new() },
        },
        Envelope {
            cluster: 7,
            from: Arc::from("127.0.0.1:7002"),
            request: Request::Leave {
                id: "node-☃".to_owned(),
            },
        },
        Envelope {
            cluster: 7,
            from: Arc::from("127.0.0.1:7002"),
            request: Request::Within {
                within: std::time::Duration::from_millis(30_000),
                call: Box::new(Request::Join {
                    address: "127.0.0.1:7005".to_owned(),
                }),
            },
        },
    ]);
    envelopes
}

/// Asserts that `seen` is `sent`, one for one: `noun` names what travelled
/// and how it was sent, `how` what is wrong with one that differs.
fn expect_arrived(
    check: &str,
    seen: &[Envelope],
    sent: &[Envelope],
    (noun, verb): (&str, &str),
    how: &str,
) {
    assert!(
        seen.len() == sent.len(),
        "transport kit, {check}: the listener received {} {noun}, {} were {verb}",
        seen.len(),
        sent.len()
    );
    let one = noun.trim_end_matches('s');
    for (i, (got, sent)) in seen.iter().zip(sent).enumerate() {
        assert!(
            got == sent,
            "transport kit, {check}: {one} {i} {how}: sent {}, received {}",
            describe(sent),
            describe(got)
        );
    }
}
