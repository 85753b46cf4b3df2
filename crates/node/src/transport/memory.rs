//! The in-memory transport: nodes of one process reach each other through a
//! shared [`MemoryNetwork`], with fault injection for tests.
//!
//! # Model
//!
//! A [`MemoryNetwork`] is a hub shared by cheap clones: a registry from
//! address to listening [`Handler`], the fault rules, a seeded random
//! generator and delivery counters. [`MemoryNetwork::transport`] returns a
//! [`MemoryTransport`] with a *name*: the source of its connections, which is
//! what fault rules match (use the address it listens at as its name).
//! Envelopes are handed over as they are: nothing is encoded.
//!
//! A request is *delivered* when the target handler's `handle` future is
//! first polled; its reply is the handler's output. A Raft message posted
//! on a healthy link ([`Connection::post`]) is delivered when the handler
//! takes it ([`Handler::post`]); one it does not take is invoked instead.
//!
//! # Time and determinism
//!
//! The transport spawns no task and starts no thread; it waits only with
//! [`tokio::time`], so under a paused clock (`start_paused = true`) delays
//! and timeouts take no real time. Every random choice (drops, delays) is
//! drawn from one `SmallRng` seeded by [`MemoryNetwork::with_seed`]: on a
//! current-thread runtime, the same seed and the same program give the same
//! sequence of deliveries and drops.
//!
//! # Order
//!
//! Requests on one connection are delivered in the order their `invoke`
//! futures were first polled (for `conn.invoke(x).await` in sequence, or
//! futures created and then polled in the same order, that is the order of
//! the calls). With delays on, each request gets a ticket when first polled
//! and a delivery time of `max(now + its random delay, the previous
//! request's delivery time)` on that connection, then waits for its turn:
//! a delay holds up everything queued behind it on the connection, like
//! head-of-line blocking on a TCP stream. Requests that are dropped, cut or
//! cancelled (their future dropped) give up their turn without blocking
//! the ones behind them.
//!
//! # Faults
//!
//! A request over a cut link (see [`MemoryNetwork::cut`],
//! [`MemoryNetwork::partition`], [`MemoryNetwork::isolate`]) or dropped at
//! random ([`MemoryNetwork::set_drop_rate`]) is lost: like on a real
//! network, the caller gets [`TransportError::Timeout`] once the timeout
//! ([`MemoryNetwork::set_timeout`], 5 s by default, measured from the first
//! poll of `invoke`) has passed. Links are checked when a request is sent
//! and again when it is delivered after a delay (a partition that forms
//! while a request is in flight loses it). A request to an address where
//! nothing listens fails at once with [`TransportError::Unreachable`].
//!
//! # Cost
//!
//! On a healthy link with no delay and no drop rate, `invoke` takes one
//! short per-connection lock (a cached route, refreshed only after the
//! network changed), bumps one counter and calls the handler in place: it
//! allocates nothing itself (the boxed futures of `async-trait` excepted)
//! and spawns nothing. The timeout timer is only armed if the handler does
//! not answer on its first poll. A `post` the handler takes costs the same
//! lock and counter, and no future at all.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use raft_core::Body;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Connection, Envelope, Handler, Posted, Reply, Request, Transport, TransportError};

/// The per-request timeout a new [`MemoryNetwork`] starts with.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A fault setting that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultError {
    /// A drop rate must be a probability.
    #[error("the drop rate must be between 0 and 1, got {0}")]
    DropRate(f64),
    /// The delay range is empty.
    #[error("the minimum delay {min:?} exceeds the maximum {max:?}")]
    Delay {
        /// The minimum asked for.
        min: Duration,
        /// The maximum asked for.
        max: Duration,
    },
}

/// Delivery counters of a [`MemoryNetwork`], from [`MemoryNetwork::stats`].
/// Requests that fail before being sent (closed connection, nothing listening)
/// are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests handed to a handler.
    pub delivered: u64,
    /// Requests lost: over a cut link or dropped at random.
    pub dropped: u64,
    /// The same, per message type ([`Request::kind`]); types never seen are
    /// left out.
    pub by_kind: BTreeMap<&'static str, KindStats>,
}

/// Delivery counters of one message type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Requests of this type handed to a handler.
    pub delivered: u64,
    /// Requests of this type lost.
    pub dropped: u64,
}

/// The names of [`Request::kind`], in the order of [`kind_index`].
const KINDS: [&str; 19] = [
    "append",
    "append-response",
    "heartbeat",
    "commit",
    "heartbeat-response",
    "pre-vote",
    "vote",
    "pre-vote-response",
    "vote-response",
    "snapshot",
    "snapshot-response",
    "timeout-now",
    "read-index",
    "read-index-response",
    "command",
    "read",
    "join",
    "leave",
    "hello",
];

/// The position of `request.kind()` in [`KINDS`], without comparing strings
/// (a unit test checks that both agree).
fn kind_index(request: &Request) -> usize {
    match request {
        Request::Raft(message) => match &message.body {
            Body::Append(_) => 0,
            Body::AppendResponse(_) => 1,
            Body::Heartbeat { .. } => 2,
            Body::Commit { .. } => 3,
            Body::HeartbeatResponse { .. } => 4,
            Body::Vote(vote) if vote.pre => 5,
            Body::Vote(_) => 6,
            Body::VoteResponse { pre: true, .. } => 7,
            Body::VoteResponse { .. } => 8,
            Body::Snapshot(_) => 9,
            Body::SnapshotResponse(_) => 10,
            Body::TimeoutNow => 11,
            Body::ReadIndex { .. } => 12,
            Body::ReadIndexResponse { .. } => 13,
        },
        Request::Command(_) | Request::SessionCommand { .. } | Request::OpenSession => 14,
        Request::Read(_) => 15,
        Request::Join { .. } => 16,
        Request::Leave { .. } => 17,
        Request::Hello => 18,
        Request::Within { call, .. } => kind_index(call),
    }
}

/// A counter alone on its cache line, so that counters of different message
/// types bumped from different threads do not contend.
#[repr(align(64))]
struct Counter(AtomicU64);

impl Counter {
    fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per message type delivery counters.
struct Counters {
    delivered: [Counter; KINDS.len()],
    dropped: [Counter; KINDS.len()],
}

impl Counters {
    fn new() -> Counters {
        Counters {
            delivered: std::array::from_fn(|_| Counter::new()),
            dropped: std::array::from_fn(|_| Counter::new()),
        }
    }
}

/// Locks `mutex`, ignoring poisoning: no code of this module panics while
/// holding a lock, and no user code runs under one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A listener registered with [`Transport::listen`].
struct Listener {
    /// The [`MemoryTransport`] that registered it.
    owner: u64,
    handler: Arc<dyn Handler>,
}

/// A handler registered with [`Connection::listen`].
struct BackChannel {
    /// The [`MemoryConnection`] that registered it.
    connection: u64,
    handler: Arc<dyn Handler>,
}

/// Everything the hub's lock protects.
struct State {
    /// Address -> listener.
    listeners: HashMap<String, Listener>,
    /// Connecting transport's name -> peer's name -> the handler that
    /// connection registered.
    back_channels: HashMap<String, HashMap<String, BackChannel>>,
    /// Source -> targets it cannot reach.
    cuts: HashMap<String, HashSet<String>>,
    /// Addresses cut from everyone, both ways.
    isolated: HashSet<String>,
    /// Probability of losing a request.
    drop_rate: f64,
    /// Uniform delay range; `None` when the maximum is zero.
    delay: Option<(Duration, Duration)>,
    /// Per-request timeout.
    timeout: Duration,
    /// The only source of randomness.
    rng: SmallRng,
}

impl State {
    /// How a request from `source` to `target` fares at this moment.
    fn route(&self, source: &str, target: &str) -> (Option<Arc<dyn Handler>>, bool) {
        let handler = match self.listeners.get(target) {
            Some(listener) => Some(listener.handler.clone()),
            None => self
                .back_channels
                .get(target)
                .and_then(|peers| peers.get(source))
                .map(|back| back.handler.clone()),
        };
        let cut = self.isolated.contains(source)
            || self.isolated.contains(target)
            || self
                .cuts
                .get(source)
                .is_some_and(|targets| targets.contains(target));
        (handler, cut)
    }

    fn faulty(&self) -> bool {
        self.drop_rate > 0.0 || self.delay.is_some()
    }

    fn cut(&mut self, from: &str, to: &str) {
        self.cuts
            .entry(from.to_owned())
            .or_default()
            .insert(to.to_owned());
    }
}

/// The shared part of a [`MemoryNetwork`].
struct Hub {
    /// Bumped (under the state lock) whenever anything a route depends on
    /// changes: connections compare it with their cached route's.
    generation: AtomicU64,
    state: Mutex<State>,
    /// Ids of transports and connections.
    next_id: AtomicU64,
    counters: Counters,
}

impl Hub {
    /// Changes the state under its lock and invalidates cached routes.
    fn change<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = lock(&self.state);
        let out = f(&mut state);
        self.generation.fetch_add(1, Ordering::AcqRel);
        out
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The route from `source` to `target` with the generation it is valid
    /// for.
    fn resolve(&self, source: &str, target: &str) -> Route {
        let state = lock(&self.state);
        let (handler, cut) = state.route(source, target);
        Route {
            generation: self.generation.load(Ordering::Acquire),
            handler,
            cut,
            faulty: state.faulty(),
            timeout: state.timeout,
        }
    }

    /// Draws the fate of one request: lost, or delivered after a delay.
    fn draw(&self) -> (bool, Duration) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        if state.drop_rate > 0.0 && state.rng.random::<f64>() < state.drop_rate {
            return (true, Duration::ZERO);
        }
        let delay = match state.delay {
            Some((min, max)) => {
                let nanos = state.rng.random_range(nanos(min)..=nanos(max));
                Duration::from_nanos(nanos)
            }
            None => Duration::ZERO,
        };
        (false, delay)
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A handle to an in-memory network: clones share it. See the
/// [module documentation](self) for the model.
#[derive(Clone)]
pub struct MemoryNetwork {
    hub: Arc<Hub>,
}

impl Default for MemoryNetwork {
    fn default() -> Self {
        MemoryNetwork::new()
    }
}

impl fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.hub.state);
        f.debug_struct("MemoryNetwork")
            .field("listeners", &state.listeners.keys().collect::<Vec<_>>())
            .field("drop_rate", &state.drop_rate)
            .field("delay", &state.delay)
            .field("timeout", &state.timeout)
            .finish_non_exhaustive()
    }
}

impl MemoryNetwork {
    /// A network with no fault, the default timeout and random seed 0.
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::with_seed(0)
    }

    /// A network whose random choices (drops, delays) come from a generator
    /// seeded with `seed`.
    pub fn with_seed(seed: u64) -> MemoryNetwork {
        let state = State {
            listeners: HashMap::new(),
            back_channels: HashMap::new(),
            cuts: HashMap::new(),
            isolated: HashSet::new(),
            drop_rate: 0.0,
            delay: None,
            timeout: DEFAULT_TIMEOUT,
            rng: SmallRng::seed_from_u64(seed),
        };
        MemoryNetwork {
            hub: Arc::new(Hub {
                generation: AtomicU64::new(1),
                state: Mutex::new(state),
                next_id: AtomicU64::new(1),
                counters: Counters::new(),
            }),
        }
    }

    /// A transport on this network whose connections come from `name` (the
    /// address fault rules match; normally the address it listens at).
    pub fn transport(&self, name: impl Into<String>) -> MemoryTransport {
        MemoryTransport {
            hub: self.hub.clone(),
            name: Arc::from(name.into()),
            id: self.hub.id(),
        }
    }

    /// Cuts the links between `a` and `b`, both ways.
    pub fn partition(&self, a: &str, b: &str) {
        self.hub.change(|state| {
            state.cut(a, b);
            state.cut(b, a);
        });
    }

    /// Cuts the link from `from` to `to` only: requests from `to` to `from`
    /// still arrive.
    pub fn cut(&self, from: &str, to: &str) {
        self.hub.change(|state| state.cut(from, to));
    }

    /// Cuts `address` from every other address, both ways, including
    /// addresses that appear later.
    pub fn isolate(&self, address: &str) {
        self.hub.change(|state| {
            state.isolated.insert(address.to_owned());
        });
    }

    /// Restores every link to and from `address` (undoes [`isolate`],
    /// [`cut`] and [`partition`] for it).
    ///
    /// [`isolate`]: MemoryNetwork::isolate
    /// [`cut`]: MemoryNetwork::cut
    /// [`partition`]: MemoryNetwork::partition
    pub fn reconnect(&self, address: &str) {
        self.hub.change(|state| {
            state.isolated.remove(address);
            state.cuts.remove(address);
            for targets in state.cuts.values_mut() {
                targets.remove(address);
            }
            state.cuts.retain(|_, targets| !targets.is_empty());
        });
    }

    /// Restores every link. The drop rate and delays stay as they are.
    pub fn heal(&self) {
        self.hub.change(|state| {
            state.isolated.clear();
            state.cuts.clear();
        });
    }

    /// Loses each request with probability `rate` (0 turns drops off).
    pub fn set_drop_rate(&self, rate: f64) -> Result<(), FaultError> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(FaultError::DropRate(rate));
        }
        self.hub.change(|state| state.drop_rate = rate);
        Ok(())
    }

    /// Delays each request by a duration drawn uniformly from `min..=max`
    /// (both zero turns delays off). Order on a connection is kept: see the
    /// [module documentation](self).
    pub fn set_delay(&self, min: Duration, max: Duration) -> Result<(), FaultError> {
        if min > max {
            return Err(FaultError::Delay { min, max });
        }
        let delay = (max > Duration::ZERO).then_some((min, max));
        self.hub.change(|state| state.delay = delay);
        Ok(())
    }

    /// Sets how long `invoke` waits for a reply before failing with
    /// [`TransportError::Timeout`] (measured from its first poll, delays
    /// included).
    pub fn set_timeout(&self, timeout: Duration) {
        self.hub.change(|state| state.timeout = timeout);
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        lock(&self.hub.state).timeout
    }

    /// True if a transport listens at `address`.
    pub fn is_listening(&self, address: &str) -> bool {
        lock(&self.hub.state).listeners.contains_key(address)
    }

    /// The delivery counters since the network was created.
    pub fn stats(&self) -> Stats {
        let counters = &self.hub.counters;
        let mut stats = Stats::default();
        for (index, kind) in KINDS.iter().enumerate() {
            let delivered = counters.delivered[index].get();
            let dropped = counters.dropped[index].get();
            stats.delivered += delivered;
            stats.dropped += dropped;
            if delivered > 0 || dropped > 0 {
                stats.by_kind.insert(kind, KindStats { delivered, dropped });
            }
        }
        stats
    }
}

/// A [`Transport`] on a [`MemoryNetwork`].
///
/// Dropping it (or calling [`Transport::shutdown`]) unregisters its
/// listeners. The network holds the handlers it listens with: if a handler
/// owns its transport, only `shutdown` breaks that cycle.
pub struct MemoryTransport {
    hub: Arc<Hub>,
    name: Arc<str>,
    id: u64,
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MemoryTransport {
    /// The name its connections come from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connects to `address` (see [`Transport::connect`]), with the
    /// concrete type.
    pub fn connect_to(&self, address: &str) -> MemoryConnection {
        MemoryConnection {
            hub: self.hub.clone(),
            id: self.hub.id(),
            source: self.name.clone(),
            target: Arc::from(address),
            closed: AtomicBool::new(false),
            back_channel: AtomicBool::new(false),
            route: Mutex::new(Route {
                generation: 0,
                handler: None,
                cut: false,
                faulty: false,
                timeout: DEFAULT_TIMEOUT,
            }),
            order: Mutex::new(Order::default()),
            queued: AtomicUsize::new(0),
            turn: Notify::new(),
        }
    }

    fn unlisten(&self) {
        let mut state = lock(&self.hub.state);
        let mine: Vec<String> = state
            .listeners
            .iter()
            .filter(|(_, listener)| listener.owner == self.id)
            .map(|(address, _)| address.clone())
            .collect();
        let removed: Vec<Listener> = mine
            .iter()
            .filter_map(|address| state.listeners.remove(address))
            .collect();
        if !removed.is_empty() {
            self.hub.generation.fetch_add(1, Ordering::AcqRel);
        }
        // Handlers are dropped after the lock is released: dropping one may
        // drop transports and connections, which take the lock.
        drop(state);
        drop(removed);
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        self.unlisten();
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    /// Never fails: the connection is lazy, an address where nothing listens
    /// shows up as [`TransportError::Unreachable`] on `invoke`.
    async fn connect(&self, address: &str) -> Result<Arc<dyn Connection>, TransportError> {
        Ok(Arc::new(self.connect_to(address)))
    }

    /// Registers `handler` at `address`; fails with
    /// [`TransportError::Other`] if another transport listens there. Listening
    /// again at the same address replaces the handler.
    async fn listen(
        &self,
        address: &str,
        handler: Arc<dyn Handler>,
    ) -> Result<String, TransportError> {
        let mut state = lock(&self.hub.state);
        if let Some(listener) = state.listeners.get(address) {
            if listener.owner != self.id {
                return Err(TransportError::AddressInUse(address.to_owned()));
            }
        }
        let listener = Listener {
            owner: self.id,
            handler,
        };
        let replaced = state.listeners.insert(address.to_owned(), listener);
        self.hub.generation.fetch_add(1, Ordering::AcqRel);
        drop(state);
        drop(replaced);
        Ok(address.to_owned())
    }

    /// Unregisters every address this transport listens at; requests to them
    /// then fail with [`TransportError::Unreachable`]. Idempotent.
    async fn shutdown(&self) -> Result<(), TransportError> {
        self.unlisten();
        Ok(())
    }
}

/// A connection's cached view of its route.
#[derive(Clone)]
struct Route {
    /// The hub generation it was resolved at.
    generation: u64,
    /// Who answers, if anyone.
    handler: Option<Arc<dyn Handler>>,
    /// The link is cut.
    cut: bool,
    /// Drops or delays are on.
    faulty: bool,
    timeout: Duration,
}

/// The turnstile that keeps delayed requests of a connection in order.
///
/// Invariant: `serving` is the smallest ticket not finished yet (or
/// `next_ticket` if all are); `cancelled` holds the finished tickets above
/// it.
#[derive(Default)]
struct Order {
    next_ticket: u64,
    serving: u64,
    cancelled: BTreeSet<u64>,
    /// The delivery time of the latest ticket, while tickets are queued.
    last_deadline: Option<Instant>,
}

/// A place in a connection's queue; dropping it gives up the turn (after
/// delivery, or when the request is lost or cancelled).
struct Ticket<'a> {
    connection: &'a MemoryConnection,
    number: u64,
    deadline: Instant,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.connection.finish(self.number);
    }
}

/// A [`Connection`] on a [`MemoryNetwork`].
///
/// [`Connection::listen`] on a connection from the transport named `S` to
/// address `T` registers a *back channel*: requests that a transport named
/// `T` sends to address `S` reach that handler while nothing listens at
/// `S` (a listener takes precedence). It models a node that does not
/// listen but is answered over the connection it opened. A later `listen`
/// from `S` to `T` on any connection replaces it; closing or dropping the
/// connection removes it; `listen` on a closed connection does nothing.
///
/// `close` lets requests already delivered finish; requests still delayed
/// fail with [`TransportError::Closed`].
pub struct MemoryConnection {
    hub: Arc<Hub>,
    id: u64,
    source: Arc<str>,
    target: Arc<str>,
    closed: AtomicBool,
    /// `listen` was called (so dropping must clean up).
    back_channel: AtomicBool,
    route: Mutex<Route>,
    order: Mutex<Order>,
    /// Tickets taken and not finished: while non-zero, every request goes
    /// through the turnstile.
    queued: AtomicUsize,
    /// Signalled when the turn moves.
    turn: Notify,
}

impl fmt::Debug for MemoryConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConnection")
            .field("from", &self.source)
            .field("to", &self.target)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Polls `future` once: `Ready(output)` or `Pending` (with the waker
/// registered).
fn poll_once<F: Future + Unpin>(future: &mut F) -> impl Future<Output = Poll<F::Output>> + '_ {
    std::future::poll_fn(move |cx| Poll::Ready(Pin::new(&mut *future).poll(cx)))
}

impl MemoryConnection {
    /// The peer's address.
    pub fn address(&self) -> &str {
        &self.target
    }

    /// The route, refreshed if the network changed since it was cached.
    fn route(&self) -> Route {
        let generation = self.hub.generation.load(Ordering::Acquire);
        let mut cached = lock(&self.route);
        if cached.generation == generation {
            return cached.clone();
        }
        let fresh = self.hub.resolve(&self.source, &self.target);
        let stale = std::mem::replace(&mut *cached, fresh);
        let route = cached.clone();
        drop(cached);
        // Dropped outside the lock (it may hold the last handle to a handler).
        drop(stale);
        route
    }

    fn closed_error(&self) -> TransportError {
        TransportError::Closed {
            address: self.target.to_string(),
        }
    }

    fn unreachable_error(&self) -> TransportError {
        TransportError::Unreachable {
            address: self.target.to_string(),
            reason: "nothing listens at this address".to_owned(),
        }
    }

    fn timeout_error(&self, timeout: Duration) -> TransportError {
        TransportError::Timeout {
            address: self.target.to_string(),
            timeout_ms: millis(timeout),
        }
    }

    /// Takes the next place in the queue, to be delivered `delay` from now
    /// but not before the previous one.
    fn take_ticket(&self, delay: Duration) -> Ticket<'_> {
        let now = Instant::now();
        // A delay too long for the clock is as good as a year (the timeout
        // fires first in any sensible setting).
        let mut deadline = now
            .checked_add(delay)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(now);
        let mut order = lock(&self.order);
        if let Some(last) = order.last_deadline {
            deadline = deadline.max(last);
        }
        order.last_deadline = Some(deadline);
        let number = order.next_ticket;
        order.next_ticket += 1;
        self.queued.fetch_add(1, Ordering::AcqRel);
        Ticket {
            connection: self,
            number,
            deadline,
        }
    }

    /// Ticket `number` is done (delivered, lost or cancelled).
    fn finish(&self, number: u64) {
        let mut order = lock(&self.order);
        if number == order.serving {
            let mut serving = number + 1;
            while order.cancelled.remove(&serving) {
                serving += 1;
            }
            order.serving = serving;
        } else {
            order.cancelled.insert(number);
        }
        if self.queued.fetch_sub(1, Ordering::AcqRel) == 1 {
            order.last_deadline = None;
        }
        drop(order);
        self.turn.notify_waiters();
    }

    /// Waits until ticket `number` is the one being served.
    async fn wait_turn(&self, number: u64) {
        loop {
            let notified = self.turn.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            let serving = lock(&self.order).serving;
            if serving == number {
                return;
            }
            notified.await;
        }
    }

    /// The path for lossy, delayed or queued requests: runs inside the
    /// timeout; a lost request never completes.
    async fn deliver_in_turn(
        &self,
        envelope: Envelope,
        route: Route,
        kind: usize,
    ) -> Result<Reply, TransportError> {
        let (lost, delay) = if route.cut {
            (true, Duration::ZERO)
        } else if route.faulty {
            self.hub.draw()
        } else {
            (false, Duration::ZERO)
        };
        if lost {
            self.hub.counters.dropped[kind].bump();
            return std::future::pending().await;
        }
        let ticket = self.take_ticket(delay);
        tokio::time::sleep_until(ticket.deadline).await;
        self.wait_turn(ticket.number).await;
        // The network may have changed while the request was in flight.
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let route = self.route();
        if route.cut {
            drop(ticket);
            self.hub.counters.dropped[kind].bump();
            return std::future::pending().await;
        }
        let Some(handler) = route.handler else {
            return Err(self.unreachable_error());
        };
        self.hub.counters.delivered[kind].bump();
        let mut reply = handler.handle(envelope);
        let first = poll_once(&mut reply).await;
        drop(ticket);
        match first {
            Poll::Ready(reply) => Ok(reply),
            Poll::Pending => Ok(reply.await),
        }
    }

    fn remove_back_channel(&self) {
        if !self.back_channel.load(Ordering::Acquire) {
            return;
        }
        let removed: Vec<BackChannel> = self.hub.change(|state| {
            let Some(peers) = state.back_channels.get_mut(&*self.source) else {
                return Vec::new();
            };
            let mine: Vec<String> = peers
                .iter()
                .filter(|(_, back)| back.connection == self.id)
                .map(|(peer, _)| peer.clone())
                .collect();
            let removed = mine.iter().filter_map(|peer| peers.remove(peer)).collect();
            if peers.is_empty() {
                state.back_channels.remove(&*self.source);
            }
            removed
        });
        // Dropped outside the lock (see `MemoryTransport::unlisten`).
        drop(removed);
    }
}

impl Drop for MemoryConnection {
    fn drop(&mut self) {
        self.remove_back_channel();
    }
}

#[async_trait]
impl Connection for MemoryConnection {
    /// Delivers `envelope` to the handler at the connection's address and
    /// returns its reply; see the [module documentation](self) for order,
    /// faults and timeouts.
    async fn invoke(&self, envelope: Envelope) -> Result<Reply, TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let route = self.route();
        let kind = kind_index(&envelope.request);
        let timeout = envelope.request.reply_timeout(route.timeout);
        if route.cut || route.faulty || self.queued.load(Ordering::Acquire) > 0 {
            let delivery = self.deliver_in_turn(envelope, route, kind);
            return match tokio::time::timeout(timeout, delivery).await {
                Ok(result) => result,
                Err(_) => Err(self.timeout_error(timeout)),
            };
        }
        // The hot path: a healthy link, nothing queued.
        let Some(handler) = route.handler else {
            return Err(self.unreachable_error());
        };
        self.hub.counters.delivered[kind].bump();
        let mut reply = handler.handle(envelope);
        let result = match poll_once(&mut reply).await {
            Poll::Ready(reply) => Ok(reply),
            Poll::Pending => match tokio::time::timeout(timeout, reply).await {
                Ok(reply) => Ok(reply),
                Err(_) => Err(self.timeout_error(timeout)),
            },
        };
        // Like any tokio resource, take part in cooperative scheduling so that
        // a loop of invokes answered at once cannot starve other tasks. After
        // delivery, so that it cannot reorder deliveries.
        tokio::task::consume_budget().await;
        result
    }

    /// Hands a Raft message to the handler at once ([`Handler::post`]) on
    /// a healthy link with nothing queued; anything else (a fault rule on
    /// the link, requests waiting their turn, a handler that cannot take
    /// it now) goes back to be invoked, which keeps the order.
    fn post(&self, envelope: Envelope) -> Posted {
        if !matches!(envelope.request, Request::Raft(_)) || self.closed.load(Ordering::Acquire) {
            return Posted::Unsupported(envelope);
        }
        let route = self.route();
        if route.cut || route.faulty || self.queued.load(Ordering::Acquire) > 0 {
            return Posted::Unsupported(envelope);
        }
        let Some(handler) = route.handler else {
            return Posted::Unsupported(envelope);
        };
        let kind = kind_index(&envelope.request);
        match handler.post(envelope) {
            Ok(()) => {
                self.hub.counters.delivered[kind].bump();
                Posted::Sent
            }
            Err(envelope) => Posted::Unsupported(envelope),
        }
    }

    fn listen(&self, handler: Arc<dyn Handler>) {
        let mut state = lock(&self.hub.state);
        // Checked under the hub lock: `close` removes the back channel under
        // it after setting `closed`, so none survives a close.
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let back = BackChannel {
            connection: self.id,
            handler,
        };
        let replaced = state
            .back_channels
            .entry(self.source.to_string())
            .or_default()
            .insert(self.target.to_string(), back);
        self.back_channel.store(true, Ordering::Release);
        self.hub.generation.fetch_add(1, Ordering::AcqRel);
        drop(state);
        // Dropped outside the lock (see `MemoryTransport::unlisten`).
        drop(replaced);
    }

    /// Idempotent.
    async fn close(&self) -> Result<(), TransportError> {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.remove_back_channel();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::transport::sample_envelopes;

    #[test]
    fn kind_index_agrees_with_request_kind() {
        let samples = sample_envelopes();
        let mut seen = [false; KINDS.len()];
        for envelope in &samples {
            let index = kind_index(&envelope.request);
            assert_eq!(KINDS[index], envelope.request.kind());
            seen[index] = true;
        }
        assert!(seen.iter().all(|&s| s), "the samples cover every kind");
    }
}
