//! The [`Node`]: the seed's API in async Rust.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use raft_core::{ConfChange, Membership, Raft, Restored, Role, Term};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::timeout;

use crate::error::{
    Attempt, LeaderInfo, MembershipError, NodeError, OutcomeUnknown, RemoteError, Removed,
    RetryReason, UnknownKind,
};
use crate::events::Event;
use crate::example::KvStateMachine;
use crate::ids::{cluster_number, node_number, PeerContext};
use crate::options::ApplyMode;
use crate::options::{Bootstrap, Options};
use crate::persistence::memory::MemoryPersistence;
use crate::persistence::{Change, Corruption, Identity, Persistence, PersistenceError};
use crate::runtime::apply::{self, Applier, Applying};
use crate::runtime::backlog::{ApplyBacklog, ApplyBacklogStats};
use crate::runtime::driver::Driver;
use crate::runtime::peers::{PeerStats, SenderContext};
use crate::runtime::{ClientAddresses, Input, PeerStatus, Removal, Status};
use crate::session::{Call, Limits, Numbered, Sessions};
use crate::transport::memory::MemoryNetwork;
use crate::transport::{Connection, Envelope, ErrorCode, Handler, Reply, Request, Transport};

mod joins;

/// A Raft node: create it with [`Node::new`], then `command`, `read`,
/// `join`, `peers`... It is a cheap handle: clones share the node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    cluster: String,
    address: String,
    cluster_number: u64,
    inbox: crate::runtime::InboxSender,
    /// The apply task's queue ([`crate::ApplyMode::Task`]); `None` when the
    /// driver applies (local reads then go through the driver).
    apply_tx: Option<mpsc::UnboundedSender<apply::Job>>,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<Event>,
    transport: Arc<dyn Transport>,
    connections: Mutex<HashMap<String, Arc<dyn Connection>>>,
    peer_stats: Arc<PeerStats>,
    /// The index the state machine has applied and what it has left to
    /// apply (written by the driver and the apply task).
    backlog: Arc<ApplyBacklog>,
    forward: bool,
    /// The largest command the transport carries ([`Transport::max_entry_bytes`]).
    max_entry_bytes: Option<usize>,
    command_timeout: Duration,
    join_timeout: Duration,
    heartbeat: Duration,
    election_max: Duration,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Set by `shutdown` and `crash`: every later call is refused.
    closed: std::sync::atomic::AtomicBool,
    /// Set once this node knows it was removed from the cluster: every
    /// later command and read is refused.
    removal: Arc<Removal>,
    /// The members (id, address) the node's storage was created with.
    founding: Vec<(String, String)>,
    /// Where this node's clients reach it, if it serves any.
    client_address: Option<String>,
    /// Where the clients of each node reach it, as the nodes said.
    client_addresses: ClientAddresses,
    /// The client session of [`Node::command`].
    session: ClientSession,
    /// The clock stamped into the log while this node leads.
    wall_clock: crate::options::WallClock,
}

/// The client session a node's handles share: its id once registered, the
/// next command number, and the numbers whose callers still wait.
struct ClientSession {
    /// The session's id; `None` until registered, and after it expired.
    /// Held while a registration is under way, so that one is sent at a
    /// time.
    id: tokio::sync::Mutex<Option<u64>>,
    /// The id in `id`, or 0 (ids are log indexes, from 1): read without
    /// the lock by every command, which would otherwise queue on it one
    /// after another.
    current: std::sync::atomic::AtomicU64,
    /// The commands numbered and not yet released.
    in_flight: Mutex<InFlight>,
    /// [`InFlight::floor`], read without the lock.
    floor: std::sync::atomic::AtomicU64,
}

/// The numbers handed out, and which of them are still held: numbers are
/// handed out in order, so a window from the lowest held one up is all it
/// takes (no allocation per command once the window has grown).
struct InFlight {
    /// The number of `held[0]`.
    base: u64,
    /// From `base` up: whether the command of that number is still held.
    held: std::collections::VecDeque<bool>,
}

impl InFlight {
    /// The lowest number still held, or the next one if none is.
    fn floor(&self) -> u64 {
        self.base
    }

    fn next(&self) -> u64 {
        self.base + self.held.len() as u64
    }
}

/// The most numbers the window spans: a command held longer than this
/// many later ones counts as released (the session table keeps no more
/// replies than this per session anyway, see `session::Limits`).
const MAX_IN_FLIGHT: usize = 64 * 1024;

impl ClientSession {
    fn new() -> ClientSession {
        ClientSession {
            id: tokio::sync::Mutex::new(None),
            current: std::sync::atomic::AtomicU64::new(0),
            in_flight: Mutex::new(InFlight {
                base: 1,
                held: Default::default(),
            }),
            floor: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight
            .lock()
            .expect("the lock is never held across a panic")
    }

    /// A new command number, counted in flight until released.
    fn take(&self) -> u64 {
        let mut w = self.in_flight();
        let seq = w.next();
        w.held.push_back(true);
        if w.held.len() > MAX_IN_FLIGHT {
            w.held.pop_front();
            w.base += 1;
            self.slide(&mut w);
        }
        seq
    }

    /// The command numbered `seq` will not be sent again.
    fn release(&self, seq: u64) {
        let mut w = self.in_flight();
        let Some(i) = seq.checked_sub(w.base) else {
            return;
        };
        if let Some(h) = w.held.get_mut(i as usize) {
            *h = false;
        }
        if i == 0 {
            self.slide(&mut w);
        }
    }

    /// Drops the released numbers at the window's front, and publishes
    /// the floor.
    fn slide(&self, w: &mut InFlight) {
        while w.held.front() == Some(&false) {
            w.held.pop_front();
            w.base += 1;
        }
        self.floor
            .store(w.floor(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The lowest number whose caller may still send it: the session may
    /// forget the replies below it.
    fn floor(&self) -> u64 {
        self.floor.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A command of the node's client session, with its number: sending it
/// again (after an error whose outcome is unknown) never applies it twice,
/// the leader answers a duplicate with the first reply. Made by
/// [`Node::numbered_command`]; [`Node::command`] is one `send`.
///
/// The session remembers the reply until this value is dropped (or the
/// session expires, after an hour without commands, or the node's session
/// holds more than 65536 replies): keep it only while it may be sent again.
pub struct NumberedCommand {
    node: Node,
    seq: u64,
    command: Bytes,
    /// The session it was first sent in (0: not sent yet).
    session: std::sync::atomic::AtomicU64,
    /// Set once an attempt's outcome was unknown.
    uncertain: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for NumberedCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberedCommand")
            .field("seq", &self.seq)
            .field("session", &self.session())
            .field("bytes", &self.command.len())
            .finish()
    }
}

impl NumberedCommand {
    /// The command's number in its session.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The session it was sent in, once sent.
    pub fn session(&self) -> Option<u64> {
        match self.session.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            s => Some(s),
        }
    }

    /// Replicates the command and returns the state machine's output, as
    /// [`Node::command`] does; may be called again after any error: a
    /// command already applied is not applied again, the first reply comes
    /// back instead.
    pub async fn send(&self) -> Result<Bytes, NodeError> {
        use std::sync::atomic::Ordering;
        let node = &self.node;
        let deadline = tokio::time::Instant::now() + node.inner.command_timeout;
        // Refused before a session is registered for it.
        if let Some(max_bytes) = node.inner.max_entry_bytes {
            let bytes = crate::session::NUMBERED_HEADER + self.command.len();
            if bytes > max_bytes {
                return Err(NodeError::EntryTooLarge { bytes, max_bytes });
            }
        }
        let result = loop {
            let session = match self.session() {
                Some(s) => s,
                None => {
                    let s = node.session_id(deadline).await?;
                    self.session.store(s, Ordering::Release);
                    s
                }
            };
            let call = Call::Numbered(Numbered {
                session,
                seq: self.seq,
                floor: node.inner.session.floor(),
                command: self.command.clone(),
            });
            match node
                .command_here(call, node.inner.forward, deadline, true, false)
                .await
            {
                // No attempt of it was applied: again, in a new session.
                Err(NodeError::SessionExpired { session })
                    if !self.uncertain.load(Ordering::Acquire)
                        && tokio::time::Instant::now() < deadline =>
                {
                    node.session_expired(session).await;
                    self.session.store(0, Ordering::Release);
                }
                Err(e @ NodeError::SessionExpired { session })
                    if self.uncertain.load(Ordering::Acquire) =>
                {
                    break Err(OutcomeUnknown::new(
                        Attempt::NumberedCommand {
                            session,
                            seq: self.seq,
                        },
                        UnknownKind::SessionExpired,
                    )
                    .caused_by(e)
                    .into())
                }
                other => break other,
            }
        };
        if result.as_ref().is_err_and(NodeError::is_outcome_unknown) {
            self.uncertain.store(true, Ordering::Release);
        }
        result
    }
}

impl Drop for NumberedCommand {
    fn drop(&mut self) {
        self.node.inner.session.release(self.seq);
    }
}

/// Counters and positions of a node. Role, term, leader and `stopped` are
/// current, and so is `applied_index`; the other positions and counters are
/// refreshed once per tick (so that a busy node does not wake its watchers
/// on every round).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMetrics {
    /// The node's role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows.
    pub leader: Option<LeaderInfo>,
    /// Its commit index.
    pub commit_index: u64,
    /// The index the state machine has applied: a local read (or the state
    /// machine's own view) reflects every entry up to it.
    pub applied_index: u64,
    /// Its last log index.
    pub last_index: u64,
    /// The index of its latest snapshot.
    pub snapshot_index: u64,
    /// Raft messages handed to the transport and acknowledged.
    pub messages_sent: u64,
    /// Raft messages dropped (a peer's queue was full, or it was unreachable).
    pub messages_dropped: u64,
    /// Raft messages whose sending failed.
    pub messages_failed: u64,
    /// Raft messages larger than the largest frame their peer accepts
    /// (counted in `messages_failed` too): the peer falls behind at that
    /// entry. Give every node the same maximum frame size.
    pub messages_oversized: u64,
    /// The core's counters (elections, refused messages, reads, ...).
    pub core: raft_core::Metrics,
    /// Why the node stopped acknowledging, after a storage failure.
    pub stopped: Option<String>,
    /// Set once the node knows it was removed from the cluster.
    pub removed: Option<Removed>,
    /// Committed entries waiting for the state machine, and how often
    /// back-pressure acted ([`Options::max_unapplied_bytes`]).
    pub apply_backlog: ApplyBacklogStats,
}

/// A subscription to a node's [`Event`]s.
pub struct Events {
    rx: broadcast::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the node is gone. A subscriber that fell
    /// behind gets a [`Event::Warning`] saying how many events it missed.
    pub async fn next(&mut self) -> Option<Event> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Event::Warning(format!(
                "this subscriber fell behind and missed {n} events"
            ))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Node {
    /// Creates and starts a node. Errors say which option is wrong, or what
    /// the stored state or the transport refused.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), raft_node::NodeError> {
    /// use raft_node::{Node, Options};
    ///
    /// // A single-node key-value store in memory; see `Options` for a
    /// // cluster, a transport and a store of your own.
    /// let node = Node::new(Options::default()).await?;
    /// assert!(!node.id().is_empty()); // self-assigned (cuid2)
    /// # node.shutdown().await?; Ok(()) }
    /// ```
    pub async fn new(mut options: Options) -> Result<Node, NodeError> {
        options.validate()?;
        let persistence: Arc<dyn Persistence> = match options.persistence.take() {
            Some(p) => p,
            None => Arc::new(MemoryPersistence::new()),
        };
        let stored = persistence.load().await?;
        if let Some(state) = &stored {
            check_identity(&options, &state.identity)?;
        }
        let id = match &stored {
            Some(state) => state.identity.id.clone(),
            None => options.id.clone().unwrap_or_else(|| (options.uuid)()),
        };
        let cluster = match &stored {
            Some(state) => state.identity.cluster.clone(),
            None => options.cluster.clone().unwrap_or_else(|| (options.uuid)()),
        };
        // A new identity takes this cluster id too.
        options.cluster = Some(cluster.clone());
        let wanted = options.address.clone().unwrap_or_else(|| id.clone());
        let transport: Arc<dyn Transport> = match options.transport.take() {
            Some(t) => t,
            None => Arc::new(MemoryNetwork::new().transport(&wanted)),
        };
        transport.bind_node(&id, &cluster)?;
        // Listen first: the address actually bound (a TCP port 0 becomes a
        // real port) is the one peers must be told.
        let handler = Arc::new(NodeHandler {
            node: std::sync::OnceLock::new(),
        });
        let address = transport.listen(&wanted, handler.clone()).await?;
        let started =
            Self::start(options, persistence, stored, id, address, transport.clone()).await;
        match started {
            Ok(node) => {
                let _ = handler.node.set(Arc::downgrade(&node.inner));
                Ok(node)
            }
            Err(e) => {
                let _ = transport.shutdown().await;
                Err(e)
            }
        }
    }

    async fn start(
        mut options: Options,
        persistence: Arc<dyn Persistence>,
        stored: Option<crate::persistence::State>,
        id: String,
        address: String,
        transport: Arc<dyn Transport>,
    ) -> Result<Node, NodeError> {
        let (identity, hard_state, snapshot, entries) = match stored {
            Some(state) => (
                state.identity,
                state.hard_state,
                state.snapshot,
                state.entries,
            ),
            None => {
                let identity = new_identity(&options, id, &address);
                let change = Change {
                    identity: Some(identity.clone()),
                    ..Change::default()
                };
                persistence.save(change).await?;
                (identity, Default::default(), None, Vec::new())
            }
        };
        let me = node_number(&identity.id);
        let cluster = cluster_number(&identity.cluster);
        let seed = options.seed.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ me
        });
        let mut config = options.core_config(me, cluster, seed);
        // Snapshots from the leader are spooled to a file, never gathered
        // in memory.
        config.stream_snapshots = true;
        let spool = match options
            .snapshot_spool
            .clone()
            .or_else(|| persistence.snapshot_spool())
        {
            Some(dir) => crate::runtime::spool::Spool::open(dir, &identity.id),
            None => crate::runtime::spool::Spool::private(&identity.id),
        };
        let mut sm = options
            .state_machine
            .take()
            .unwrap_or_else(|| Box::new(KvStateMachine::default()));
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.meta.index);
        let membership = match &snapshot {
            Some(s) => s.meta.membership.clone(),
            None => identity.bootstrap.clone(),
        };
        let mut sessions = Sessions::new(Limits::default());
        if let Some(s) = &snapshot {
            sessions
                .unwrap_snapshot(s.data.clone())
                .and_then(|data| sm.restore(data))
                .map_err(|e| {
                    PersistenceError::Corrupt(
                        Corruption::new(format!(
                            "the state machine cannot restore the stored snapshot: {e}"
                        ))
                        .at_index(s.meta.index),
                    )
                })?;
        }
        let restored = Restored {
            hard_state,
            snapshot,
            bootstrap: identity.bootstrap.clone(),
            entries,
        };
        let raft = Raft::new(config, restored).map_err(|e| {
            PersistenceError::corrupt(format!("cannot restart from the stored state: {e}"))
        })?;

        let (inbox_tx, inbox_rx) = crate::runtime::inbox();
        // The configuration is known before the driver runs its first round.
        let (status_tx, status_rx) = watch::channel(Status {
            members: Arc::new(crate::runtime::driver::members_view(
                raft.membership(),
                &HashMap::new(),
            )),
            ..Status::default()
        });
        let (events, _) = broadcast::channel(1024);
        let peer_stats = Arc::new(PeerStats::default());
        let from: Arc<str> = Arc::from(address.as_str());
        let client_addresses = ClientAddresses::default();
        if let Some(a) = &options.client_address {
            client_addresses.learn(&identity.id, a);
        }
        let sender = SenderContext {
            transport: transport.clone(),
            cluster,
            from,
            events: events.clone(),
            stats: peer_stats.clone(),
            probe_interval: options.heartbeat_interval,
            connected_for: options.election_timeout_max,
            epoch: tokio::time::Instant::now(),
            client_addresses: client_addresses.clone(),
        };
        let removal = Arc::new(Removal::default());
        let founding: Vec<(String, String)> = identity
            .bootstrap
            .members()
            .filter_map(|(_, m)| PeerContext::decode(&m.context))
            .map(|c| (c.id, c.address))
            .collect();
        let soft = raft_core::SoftState {
            role: raft.role(),
            leader: raft_core::NO_NODE,
            term: raft.term(),
        };
        let backlog = Arc::new(ApplyBacklog::new(
            snapshot_index,
            options.max_unapplied_bytes,
            options.max_unapplied_entries,
        ));
        // The log's clock: the log's time and the state machine's next
        // deadline, published by the applier for the driver (which
        // proposes time entries).
        let log_clock = sm.uses_log_time().then(|| {
            crate::runtime::driver::LogClock::new(options.wall_clock.clone(), sm.next_deadline_ms())
        });
        let published = log_clock.as_ref().map_or_else(
            || Arc::new(apply::PublishedClock::new(None)),
            |c| c.published.clone(),
        );
        let applier = Applier {
            sm,
            sessions,
            applied: snapshot_index,
            backlog: backlog.clone(),
            snapshot_index,
            snapshot_threshold: options.snapshot_threshold,
            membership,
            waiters: Default::default(),
            command_timeout: options.command_timeout,
            events: events.clone(),
            to_raft: inbox_tx.downgrade(),
            me,
            removal: removal.clone(),
            log_time: 0,
            clock: published,
        };
        let (applying, apply_task, apply_tx) = match options.apply_mode {
            ApplyMode::Task => {
                let (apply_tx, apply_rx) = mpsc::unbounded_channel();
                (
                    Applying::Task(apply_tx.clone()),
                    Some((applier, apply_rx)),
                    Some(apply_tx),
                )
            }
            ApplyMode::Inline => (Applying::inline(applier), None, None),
        };
        let driver = Driver {
            raft,
            me,
            id: identity.id.clone(),
            address: address.clone(),
            tick: options.tick,
            inbox: inbox_rx,
            saving: None,
            spool,
            persistence: persistence.clone(),
            applying,
            backlog: backlog.clone(),
            sender,
            peer_stats: peer_stats.clone(),
            status_tx,
            events: events.clone(),
            pipeline: raft_core::pipeline::Pipeline::new(
                crate::runtime::driver::FLUSH_AFTER_TICKS,
                Default::default(),
            ),
            peers: HashMap::new(),
            addresses: HashMap::new(),
            pending_reads: HashMap::new(),
            next_read: 1,
            soft,
            stopped: None,
            closing: None,
            proposed: 0,
            announced_leader: None,
            published_leader: raft_core::NO_NODE,
            leader_placeholder: (false, false),
            ticks: 0,
            registrations: Vec::new(),
            published_membership: None,
            addresses_changed: false,
            handing_over: None,
            released: Vec::new(),
            log_clock,
        };
        let mut tasks = vec![tokio::spawn(driver.run())];
        if let Some((applier, apply_rx)) = apply_task {
            tasks.push(tokio::spawn(applier.run(apply_rx)));
        }
        let finishing = status_rx.clone();
        let inner = Arc::new(Inner {
            id: identity.id,
            cluster: identity.cluster,
            address: address.clone(),
            cluster_number: cluster,
            inbox: inbox_tx,
            apply_tx,
            status: status_rx,
            events,
            transport: transport.clone(),
            connections: Mutex::new(HashMap::new()),
            peer_stats,
            backlog,
            forward: options.forward_to_leader,
            max_entry_bytes: transport.max_entry_bytes(),
            command_timeout: options.command_timeout,
            join_timeout: options.join_timeout,
            heartbeat: options.heartbeat_interval,
            election_max: options.election_timeout_max,
            tasks: Mutex::new(tasks),
            closed: std::sync::atomic::AtomicBool::new(false),
            removal,
            founding,
            client_address: options.client_address.clone(),
            client_addresses,
            session: ClientSession::new(),
            wall_clock: options.wall_clock.clone(),
        });
        let finisher = joins::spawn_finisher(&inner, finishing);
        inner
            .tasks
            .lock()
            .expect("the lock is never held across a panic")
            .push(finisher);
        Ok(Node { inner })
    }

    /// The node's id (given, persisted, or generated by `uuid`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The id of the cluster the node belongs to.
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// Where the node listens, in its transport's terms.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.inner.status.borrow().role
    }

    /// The leader this node knows of (with its client address once this
    /// node heard it).
    pub fn leader(&self) -> Option<LeaderInfo> {
        let mut leader = self.inner.status.borrow().leader.clone()?;
        if leader.client_address.is_none() {
            leader.client_address = self.inner.client_addresses.get(&leader.id);
        }
        Some(leader)
    }

    /// The node's current term.
    pub fn term(&self) -> Term {
        self.inner.status.borrow().term
    }

    /// Positions and counters.
    pub fn metrics(&self) -> NodeMetrics {
        let s = self.inner.status.borrow().clone();
        let p = &self.inner.peer_stats;
        use std::sync::atomic::Ordering::Relaxed;
        NodeMetrics {
            role: s.role,
            term: s.term,
            leader: s.leader.map(|mut l| {
                if l.client_address.is_none() {
                    l.client_address = self.inner.client_addresses.get(&l.id);
                }
                l
            }),
            commit_index: s.commit_index,
            applied_index: self.inner.backlog.applied(),
            apply_backlog: self.inner.backlog.stats(),
            last_index: s.last_index,
            snapshot_index: s.snapshot_index,
            messages_sent: p.sent.load(Relaxed),
            messages_dropped: p.dropped.load(Relaxed),
            messages_failed: p.failed.load(Relaxed),
            messages_oversized: p.oversized.load(Relaxed),
            core: s.core,
            stopped: s.stopped.map(|e| match e {
                NodeError::Stopped(reason) => reason.to_string(),
                _ => "shut down".to_owned(),
            }),
            removed: self.inner.removal.get(),
        }
    }

    /// Set once this node knows it was removed from the cluster (it applied
    /// the configuration without it, or the leader refused it as a
    /// non-member): it then refuses every command and read.
    pub fn removed(&self) -> Option<Removed> {
        self.inner.removal.get()
    }

    /// The members (id, address) this node's storage was created with: the
    /// cluster it founded ([`Bootstrap::Single`], [`Bootstrap::Static`]),
    /// or none for a node that joined ([`Bootstrap::Join`]).
    pub fn founding_members(&self) -> &[(String, String)] {
        &self.inner.founding
    }

    /// The members (id, address) of the configuration in force on this
    /// node (the latest it holds, committed or not), itself included if it
    /// is one.
    pub fn members(&self) -> Vec<(String, String)> {
        self.inner
            .status
            .borrow()
            .members
            .list
            .iter()
            .map(|c| (c.id.clone(), c.address.clone()))
            .collect()
    }

    /// Waits until the node stops acknowledging, and returns why:
    /// [`NodeError::Stopped`] when its storage failed (a failed fsync, a
    /// full disk: [`NodeError::storage_error`] gives the typed
    /// [`PersistenceError`]; the node is then of no further use, and a
    /// process should exit so that clients and a supervisor notice), or
    /// [`NodeError::ShuttingDown`] when it was shut down.
    pub async fn stopped(&self) -> NodeError {
        let mut status = self.inner.status.clone();
        loop {
            if let Some(reason) = status.borrow_and_update().stopped.clone() {
                return reason;
            }
            if status.changed().await.is_err() {
                return NodeError::ShuttingDown;
            }
        }
    }

    /// Subscribes to the node's events.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), raft_node::NodeError> {
    /// # use std::sync::Arc;
    /// # use raft_node::{Bootstrap, MemoryNetwork, Node, Options};
    /// # let net = MemoryNetwork::new();
    /// # let options = |id: &str, bootstrap| Options {
    /// #     id: Some(id.into()), cluster: Some("doc".into()),
    /// #     transport: Some(Arc::new(net.transport(id))), bootstrap, ..Options::default()
    /// # };
    /// use raft_node::Event;
    ///
    /// let node = Node::new(options("a", Bootstrap::Single)).await?;
    /// let b = Node::new(options("b", Bootstrap::Join)).await?;
    /// let mut events = b.subscribe(); // what b sees from now on
    /// node.join("b").await?;
    /// let leader = loop {
    ///     match events.next().await {
    ///         Some(Event::LeaderChanged { leader: Some(leader), .. }) => break leader,
    ///         Some(_) => continue,
    ///         None => panic!("b stopped"),
    ///     }
    /// };
    /// assert_eq!(leader, "a");
    /// # b.shutdown().await?;
    /// # node.shutdown().await?; Ok(()) }
    /// ```
    pub fn subscribe(&self) -> Events {
        Events {
            rx: self.inner.events.subscribe(),
        }
    }

    fn check_open(&self) -> Result<(), NodeError> {
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(NodeError::ShuttingDown);
        }
        Ok(())
    }

    /// Refuses calls for the cluster (commands, reads, membership changes)
    /// once this node knows it is no longer a member.
    fn check_member(&self) -> Result<(), NodeError> {
        self.check_open()?;
        match self.inner.removal.get() {
            Some(removed) => Err(NodeError::Removed(removed)),
            None => Ok(()),
        }
    }

    async fn input(&self, input: Input) -> Result<(), NodeError> {
        self.check_open()?;
        self.inner
            .inbox
            .send(input)
            .await
            .map_err(|_| NodeError::ShuttingDown)
    }

    async fn wait<T>(
        &self,
        what: &'static str,
        after: Duration,
        rx: oneshot::Receiver<Result<T, NodeError>>,
    ) -> Result<T, NodeError> {
        match timeout(after, rx).await {
            Err(_) => Err(NodeError::Timeout { what, after }),
            Ok(Err(_)) => Err(NodeError::ShuttingDown),
            Ok(Ok(r)) => r,
        }
    }

    /// Replicates `cmd` and returns the state machine's output once it is
    /// applied, exactly once. On a follower it is forwarded to the leader
    /// (unless `forward_to_leader` is off: then [`NodeError::NotLeader`]
    /// names the leader). A command larger than [`Node::max_entry_bytes`]
    /// is refused with [`NodeError::EntryTooLarge`], here and on the
    /// leader, before it reaches the log.
    ///
    /// The command is numbered in the node's client session (registered
    /// through the log at the first command; clones of a `Node` share it,
    /// and commands may run concurrently). Within `command_timeout` the
    /// call waits out elections and leader changes and sends the command
    /// again, with the same number, whenever an attempt failed: the layer
    /// that applies entries applies a number once and answers a duplicate
    /// with the first reply. A failed call says which of two it is:
    /// [`NodeError::is_outcome_unknown`] is true when the command may
    /// still have been applied (the last attempt's answer was lost);
    /// otherwise it certainly took no effect. To retry after an unknown
    /// outcome without applying twice, use [`Node::numbered_command`] and
    /// send the same [`NumberedCommand`] again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), raft_node::NodeError> {
    /// use raft_node::example::{KvCommand, KvOutput};
    /// use raft_node::{Node, Options};
    ///
    /// let node = Node::new(Options::default()).await?;
    /// let set = KvCommand::Set { key: "k".into(), value: "v".into() };
    /// match node.command(set.encode()).await {
    ///     Ok(output) => assert_eq!(KvOutput::decode(&output), Some(KvOutput::Done)),
    ///     // Sent again with the same number until `command_timeout`; an
    ///     // unknown outcome is retried without applying twice with
    ///     // `numbered_command`.
    ///     Err(e) if e.is_outcome_unknown() => { /* may have been applied */ }
    ///     Err(e) => return Err(e), // certainly not applied
    /// }
    /// # node.shutdown().await?; Ok(()) }
    /// ```
    pub async fn command(&self, cmd: impl Into<Bytes>) -> Result<Bytes, NodeError> {
        self.numbered_command(cmd).send().await
    }

    /// A command of the node's client session, numbered but not sent yet:
    /// [`NumberedCommand::send`] it, and send it again after an error
    /// whose outcome is unknown; it is applied at most once.
    pub fn numbered_command(&self, cmd: impl Into<Bytes>) -> NumberedCommand {
        NumberedCommand {
            node: self.clone(),
            seq: self.inner.session.take(),
            command: cmd.into(),
            session: std::sync::atomic::AtomicU64::new(0),
            uncertain: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Replicates `cmd` without a session, as [`Node::command`] but with no
    /// protection against applying it twice: the call waits out elections
    /// and sends again only an attempt that certainly never reached the
    /// log; after an unknown outcome it fails with
    /// [`NodeError::OutcomeUnknown`] (or `Timeout`, `LeadershipLost`), and
    /// retrying it may apply it twice. It costs less: the command goes to
    /// the log as given (a numbered command is copied behind a 33-byte
    /// header) and leaves nothing in the session table. For commands that
    /// are idempotent by themselves (a `set`), or that carry their own
    /// deduplication.
    pub async fn command_without_session(&self, cmd: impl Into<Bytes>) -> Result<Bytes, NodeError> {
        let deadline = tokio::time::Instant::now() + self.inner.command_timeout;
        self.command_here(
            Call::Plain(cmd.into()),
            self.inner.forward,
            deadline,
            false,
            false,
        )
        .await
    }

    /// The node's client session, registered through the log (on the
    /// leader) if it has none yet.
    async fn session_id(&self, deadline: tokio::time::Instant) -> Result<u64, NodeError> {
        use std::sync::atomic::Ordering;
        match self.inner.session.current.load(Ordering::Acquire) {
            0 => {}
            id => return Ok(id),
        }
        let mut id = self.inner.session.id.lock().await;
        if let Some(id) = *id {
            return Ok(id);
        }
        // A registration whose outcome is unknown is sent again: at worst
        // it registers a session nobody uses, which expires.
        let reply = self
            .command_here(Call::Register, self.inner.forward, deadline, true, false)
            .await?;
        let bytes: [u8; 8] = reply[..].try_into().map_err(|_| {
            NodeError::Remote(RemoteError::Unexpected {
                reply: format!("a session id of {} bytes", reply.len()),
            })
        })?;
        let registered = u64::from_le_bytes(bytes);
        *id = Some(registered);
        self.inner
            .session
            .current
            .store(registered, Ordering::Release);
        Ok(registered)
    }

    /// The node's client session `session` expired: the next command
    /// registers a new one.
    async fn session_expired(&self, session: u64) {
        let mut id = self.inner.session.id.lock().await;
        if *id == Some(session) {
            *id = None;
            self.inner
                .session
                .current
                .store(0, std::sync::atomic::Ordering::Release);
        }
    }

    /// The largest command this node replicates: what its transport carries
    /// to a peer in one append ([`Transport::max_entry_bytes`]); `None` if
    /// there is no limit (the in-memory transport).
    pub fn max_entry_bytes(&self) -> Option<usize> {
        self.inner.max_entry_bytes
    }

    /// Proposes `call` here, or forwards it to the leader (if `forward`),
    /// until `deadline`: waits out elections, and sends again an attempt
    /// that certainly took no effect (it never reached the leader, or the
    /// node it reached was not the leader). An attempt that may have taken
    /// effect is sent again only if `again_if_unknown` (a numbered command,
    /// which the leader applies once); else its caller gets
    /// [`NodeError::OutcomeUnknown`]. A call that gives up after any
    /// attempt of unknown outcome fails with an error of unknown outcome.
    async fn command_here(
        &self,
        call: Call,
        forward: bool,
        deadline: tokio::time::Instant,
        again_if_unknown: bool,
        bounded: bool,
    ) -> Result<Bytes, NodeError> {
        self.check_member()?;
        if let Some(max_bytes) = self.inner.max_entry_bytes {
            let bytes = call.entry_len();
            if bytes > max_bytes {
                return Err(NodeError::EntryTooLarge { bytes, max_bytes });
            }
        }
        let mut uncertain = false;
        loop {
            // Proposed here first: the driver knows best whether this node
            // leads, or is stopping.
            let attempt = match self.propose(&call, bounded.then_some(deadline)).await {
                Err(NodeError::NotLeader { leader: Some(l) })
                    if forward && l.id != self.inner.id =>
                {
                    self.forward(&l.address, call.request(), deadline).await
                }
                other => Forwarded::Done(other),
            };
            let error = match attempt {
                Forwarded::Again(e) => e,
                // Forwarding is off: the caller is told the leader.
                Forwarded::Done(Err(NodeError::NotLeader { leader: Some(l) })) if !forward => {
                    return Err(NodeError::NotLeader { leader: Some(l) })
                }
                Forwarded::Done(Err(e @ NodeError::NotLeader { .. })) => e,
                // A number below its session's window is never applied
                // again: sending it again cannot help.
                Forwarded::Done(Err(e))
                    if e.unknown_kind() == Some(UnknownKind::WindowExceeded) =>
                {
                    return Err(call.refine(e))
                }
                Forwarded::Done(Err(e)) if again_if_unknown && e.is_outcome_unknown() => {
                    uncertain = true;
                    e
                }
                Forwarded::Done(Err(e @ NodeError::SessionExpired { .. })) if uncertain => {
                    return Err(
                        OutcomeUnknown::new(call.attempt(), UnknownKind::SessionExpired)
                            .caused_by(e)
                            .into(),
                    );
                }
                Forwarded::Done(Err(e)) => return Err(call.refine(e)),
                Forwarded::Done(other) => return other,
            };
            if !self.pause(deadline).await {
                let error = self.check_member().err().unwrap_or(error);
                if uncertain && !error.is_outcome_unknown() {
                    // An earlier attempt may have been applied; the last
                    // failed, and the deadline passed (or the node can no
                    // longer serve the call).
                    return Err(
                        OutcomeUnknown::new(call.attempt(), UnknownKind::DeadlinePassed)
                            .caused_by(error)
                            .into(),
                    );
                }
                return Err(call.refine(error));
            }
        }
    }

    /// Proposes `call` on this node and waits for its output, never longer
    /// than `command_timeout`, and until `deadline` at the latest if given
    /// (a call forwarded by a peer carries its caller's).
    async fn propose(
        &self,
        call: &Call,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Bytes, NodeError> {
        // Apply back-pressure: while this node leads and its state machine
        // is too far behind (`Options::max_unapplied_bytes`), a command
        // waits (within `command_timeout`) before it is proposed, and
        // counts until it is answered.
        let _admitted = if self.inner.status.borrow().role == Role::Leader {
            let after = deadline.map_or(self.inner.command_timeout, |d| self.bounded(d));
            Some(
                timeout(after, self.inner.backlog.admit(call.entry_len()))
                    .await
                    .map_err(|_| NodeError::Timeout {
                        what: "command (the state machine is behind)",
                        after,
                    })?,
            )
        } else {
            None
        };
        let (tx, rx) = oneshot::channel();
        // A session entry carries this node's clock: it only enters the
        // log if this node leads (the session table's time is the
        // leader's).
        let time = match call {
            Call::Plain(_) => 0,
            _ => (self.inner.wall_clock)(),
        };
        self.input(Input::Propose {
            data: call.entry(time),
            reply: tx,
        })
        .await?;
        // The apply task fails commands that waited longer than
        // `command_timeout`; a timer of its own only for a call whose
        // caller waits less (one forwarded with little time left). A reply
        // dropped unanswered means the node stopped (a crash) with the
        // command possibly in its log.
        let reply = async {
            rx.await.unwrap_or_else(|_| {
                Err(OutcomeUnknown::new(call.attempt(), UnknownKind::NodeStopped).into())
            })
        };
        let Some(deadline) = deadline else {
            return reply.await;
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left >= self.inner.command_timeout {
            return reply.await;
        }
        tokio::time::timeout_at(deadline, reply)
            .await
            .unwrap_or(Err(NodeError::Timeout {
                what: "command",
                after: left,
            }))
    }

    /// How long a wait may take that ends at `deadline` (a caller's, or a
    /// forwarded call's) and never lasts longer than `command_timeout`.
    fn bounded(&self, deadline: tokio::time::Instant) -> Duration {
        deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(self.inner.command_timeout)
    }

    /// Before a call that needs the leader is tried again: waits for a
    /// leader while none is known, else a heartbeat interval (the leader
    /// this node knows may have crashed: an election follows). False if
    /// `deadline` passed or the node can no longer serve the call.
    async fn pause(&self, deadline: tokio::time::Instant) -> bool {
        if self.check_member().is_err() || self.inner.status.borrow().stopped.is_some() {
            return false;
        }
        if self.leader().is_none() {
            return self.await_leader(deadline).await;
        }
        let until = deadline.min(tokio::time::Instant::now() + self.inner.heartbeat);
        tokio::time::sleep_until(until).await;
        tokio::time::Instant::now() < deadline
    }

    /// Waits until some leader is known, or `deadline`; true if one is.
    async fn await_leader(&self, deadline: tokio::time::Instant) -> bool {
        let mut status = self.inner.status.clone();
        let found = tokio::time::timeout_at(deadline, async {
            loop {
                {
                    let s = status.borrow_and_update();
                    if s.stopped.is_some() {
                        return false;
                    }
                    if s.leader.is_some() {
                        return true;
                    }
                }
                if status.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        found.unwrap_or(false)
    }

    /// Sends a client call to the leader at `address`, with the time its
    /// caller still waits (until `deadline`), and says what came of it.
    async fn forward(
        &self,
        address: &str,
        request: Request,
        deadline: tokio::time::Instant,
    ) -> Forwarded {
        if let Err(e) = self.check_open() {
            return Forwarded::Done(Err(e));
        }
        let is_command = matches!(
            request,
            Request::Command(_) | Request::SessionCommand { .. } | Request::OpenSession
        );
        let session = match &request {
            Request::SessionCommand { session, .. } => *session,
            _ => 0,
        };
        let attempt = match &request {
            Request::SessionCommand { session, seq, .. } => Attempt::NumberedCommand {
                session: *session,
                seq: *seq,
            },
            Request::OpenSession => Attempt::OpenSession,
            Request::Read(_) => Attempt::Read,
            Request::Join { .. } | Request::Leave { .. } => Attempt::MembershipChange,
            _ => Attempt::Command,
        };
        // The node the call goes to, by its id when it is the leader this
        // node knows.
        let node = match self.leader() {
            Some(l) if l.address == address => l.id,
            _ => address.to_string(),
        };
        let conn = match self.connection(address).await {
            Ok(c) => c,
            // Connecting sent nothing.
            Err(e) => return Forwarded::Again(e),
        };
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        let envelope = Envelope {
            cluster: self.inner.cluster_number,
            from: Arc::from(self.inner.address.as_str()),
            request: Request::Within {
                within,
                call: Box::new(request),
            },
        };
        let reply = match timeout(within, conn.invoke(envelope)).await {
            Err(_) => {
                return Forwarded::Done(Err(NodeError::Timeout {
                    what: "forwarded call",
                    after: within,
                }))
            }
            Ok(Err(e)) => {
                self.forget_connection(address);
                if e.not_delivered() {
                    return Forwarded::Again(NodeError::Transport(e));
                }
                let kind = match e {
                    crate::transport::TransportError::Timeout { .. } => UnknownKind::ReplyLost,
                    _ => UnknownKind::ConnectionClosed,
                };
                return Forwarded::Done(Err(OutcomeUnknown::new(attempt, kind)
                    .at(node)
                    .caused_by(NodeError::Transport(e))
                    .into()));
            }
            Ok(Ok(reply)) => reply,
        };
        let result = match reply {
            Reply::Output(b) => Ok(b),
            Reply::Failed { code, message } => match code {
                ErrorCode::NoLeader => {
                    return Forwarded::Again(NodeError::NotLeader { leader: None })
                }
                ErrorCode::NotLeader => {
                    return Forwarded::Again(NodeError::NotLeader {
                        leader: self.leader(),
                    })
                }
                ErrorCode::Retry => {
                    return Forwarded::Again(NodeError::Retry(RetryReason::Remote {
                        node: address.to_string(),
                        message,
                    }))
                }
                ErrorCode::Refused => Err(NodeError::Remote(RemoteError::Refused { message })),
                ErrorCode::OutcomeUnknown(kind) => Err(NodeError::OutcomeUnknown(OutcomeUnknown {
                    message: Some(message),
                    ..OutcomeUnknown::new(attempt, kind).at(node)
                })),
                ErrorCode::SessionExpired => Err(NodeError::SessionExpired { session }),
            },
            // A failure the transport reported for the peer (its handler
            // did not answer in time, say): a command may have been applied.
            Reply::Error(reason) if is_command => Err(NodeError::OutcomeUnknown(OutcomeUnknown {
                message: Some(reason),
                ..OutcomeUnknown::new(attempt, UnknownKind::RemoteFailed).at(node)
            })),
            Reply::Error(message) => Err(NodeError::Remote(RemoteError::Failed { message })),
            Reply::NotMember(reason) => {
                if self.inner.removal.told() {
                    tracing::warn!(
                        leader = %address,
                        %reason,
                        "the leader refused this node as a non-member: it was removed from the cluster; it serves no more commands or reads; stop it, or add it again as a new, empty node"
                    );
                    let _ = self.inner.events.send(Event::Removed { index: None });
                }
                Err(NodeError::Removed(
                    self.inner.removal.get().unwrap_or(Removed { index: None }),
                ))
            }
            other => Err(NodeError::Remote(RemoteError::Unexpected {
                reply: format!("{other:?}"),
            })),
        };
        Forwarded::Done(result)
    }

    async fn connection(&self, address: &str) -> Result<Arc<dyn Connection>, NodeError> {
        let cached = self
            .inner
            .connections
            .lock()
            .expect("the lock is never held across a panic")
            .get(address)
            .cloned();
        if let Some(c) = cached {
            return Ok(c);
        }
        let c = self.inner.transport.connect(address).await?;
        self.inner
            .connections
            .lock()
            .expect("the lock is never held across a panic")
            .insert(address.to_string(), c.clone());
        Ok(c)
    }

    fn forget_connection(&self, address: &str) {
        self.inner
            .connections
            .lock()
            .expect("the lock is never held across a panic")
            .remove(address);
    }

    /// A linearizable read: `query` is answered by the state machine once
    /// this node has applied everything committed before the read began
    /// (ReadIndex, or the leader lease when `read_mode` is `Lease`). On a
    /// follower the leader confirms the read index.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), raft_node::NodeError> {
    /// use raft_node::example::{kv_get, KvCommand, KvOutput};
    /// use raft_node::{Node, Options};
    ///
    /// let node = Node::new(Options::default()).await?;
    /// node.command(KvCommand::Set { key: "k".into(), value: "v".into() }.encode()).await?;
    /// let answer = node.read(kv_get(b"k")).await?;
    /// assert_eq!(KvOutput::decode(&answer), Some(KvOutput::Value(Some("v".into()))));
    /// # node.shutdown().await?; Ok(()) }
    /// ```
    pub async fn read(&self, query: impl Into<Bytes>) -> Result<Bytes, NodeError> {
        let deadline = tokio::time::Instant::now() + self.inner.command_timeout;
        self.read_here(query.into(), deadline).await.map(concat)
    }

    /// A linearizable read like [`Node::read`], whose answer comes in the
    /// parts the state machine gave ([`StateMachine::query_parts`]): their
    /// concatenation is what `read` returns. Parts may be the machine's
    /// stored values themselves (shared, not copied), so a caller that
    /// sends them on (a vectored write) never copies a large answer. (A
    /// read a peer sends over the transport, [`Request::Read`], is answered
    /// with the parts concatenated: the wire carries one answer.)
    ///
    /// [`StateMachine::query_parts`]: crate::StateMachine::query_parts
    pub async fn read_parts(&self, query: impl Into<Bytes>) -> Result<Vec<Bytes>, NodeError> {
        let deadline = tokio::time::Instant::now() + self.inner.command_timeout;
        self.read_here(query.into(), deadline).await
    }

    /// A linearizable read, answered by `deadline` at the latest.
    async fn read_here(
        &self,
        query: Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Bytes>, NodeError> {
        self.check_member()?;
        loop {
            let (tx, rx) = oneshot::channel();
            let input = Input::Read {
                query: query.clone(),
                reply: tx,
            };
            self.input(input).await?;
            match self.wait("read", self.bounded(deadline), rx).await {
                Err(NodeError::NotLeader { leader: None }) if self.await_leader(deadline).await => {
                }
                other => return other,
            }
        }
    }

    /// A read of this node's state as it is: fast, but possibly stale (it
    /// may miss writes other nodes already acknowledged).
    pub async fn read_local(&self, query: impl Into<Bytes>) -> Result<Bytes, NodeError> {
        self.read_local_parts(query).await.map(concat)
    }

    /// A possibly stale read like [`Node::read_local`], whose answer comes
    /// in the parts the state machine gave, as [`Node::read_parts`]'s.
    pub async fn read_local_parts(&self, query: impl Into<Bytes>) -> Result<Vec<Bytes>, NodeError> {
        self.check_member()?;
        let (tx, rx) = oneshot::channel();
        let query = query.into();
        match &self.inner.apply_tx {
            Some(apply_tx) => apply_tx
                .send(apply::Job::LocalRead { query, reply: tx })
                .map_err(|_| NodeError::ShuttingDown)?,
            None => self.input(Input::LocalRead { query, reply: tx }).await?,
        }
        self.wait("local read", self.inner.command_timeout, rx)
            .await
    }

    /// Adds the node listening at `address` (in the transport's terms) to
    /// the cluster: as a learner first, then, once it has caught up, as a
    /// voter. On a follower the call goes to the leader. The joining node
    /// must be empty (started with `Bootstrap::Join`) and of this cluster:
    /// the leader asks it. Waits out elections, within `join_timeout`.
    ///
    /// A join is finished or rolled back, never left half done (a learner
    /// for good), whoever crashes:
    ///
    /// - the new node's member record says it was added by a join (a
    ///   learner added by [`Node::add_learner`] carries no such mark, and
    ///   stays a learner); [`PeerStatus::joining`] shows it;
    /// - every leader, on winning an election and then each heartbeat,
    ///   finishes the joins it finds: it promotes such a learner once it
    ///   has caught up (its match index reached the commit index) and
    ///   answers, or removes it again if it has not within `join_timeout`
    ///   of this leader taking the join over (a learner that cannot be
    ///   reached that long included). Each leader counts that time on its
    ///   own clock, from when it took over: no clocks are compared across
    ///   nodes. So a join whose caller and leader both crashed (a
    ///   forwarded call whose member and leader crashed, say) is finished
    ///   by the next leader, or rolled back if the new node is gone too;
    /// - the caller waits until the new node is a voter, within
    ///   `join_timeout`; if the leader crashes or loses leadership
    ///   meanwhile, the call is sent again to the next leader, which takes
    ///   "already a joining learner" as progress;
    /// - if the call fails for good while the new node is still a joining
    ///   learner (its `join_timeout` passed), the caller removes the
    ///   learner (waiting, within `command_timeout`, for a leader to do
    ///   it), and returns the error, so that a failed join leaves the
    ///   configuration as it was. If the new node was promoted after all,
    ///   the join succeeded.
    ///
    /// A `join` of a learner added by [`Node::add_learner`] promotes it
    /// once it has caught up (and leaves it a learner if that fails).
    /// [`Node::join_cluster`] (the new node asking to be added) retries
    /// the same way until its own `join_timeout`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), raft_node::NodeError> {
    /// use std::sync::Arc;
    /// use raft_node::{Bootstrap, MemoryNetwork, Node, Options};
    ///
    /// let net = MemoryNetwork::new();
    /// let options = |id: &str, bootstrap| Options {
    ///     id: Some(id.into()),
    ///     cluster: Some("doc".into()),
    ///     transport: Some(Arc::new(net.transport(id))),
    ///     bootstrap,
    ///     ..Options::default()
    /// };
    /// let node = Node::new(options("a", Bootstrap::Single)).await?;
    /// let b = Node::new(options("b", Bootstrap::Join)).await?;
    /// node.join("b").await?; // b's address on this network
    /// assert_eq!(node.members().len(), 2);
    /// # b.shutdown().await?; node.shutdown().await?; Ok(()) }
    /// ```
    pub async fn join(&self, address: &str) -> Result<(), NodeError> {
        self.check_member()?;
        let deadline = tokio::time::Instant::now() + self.inner.join_timeout;
        let request = Request::Join {
            address: address.to_string(),
        };
        let joined = self
            .membership_call(request, deadline, true, || {
                self.join_here(address, deadline)
            })
            .await;
        match joined {
            Ok(()) => Ok(()),
            Err(e) => self.after_failed_join(address, e).await,
        }
    }

    /// Asks the member listening at `member` (in the transport's terms) to
    /// add this node to its cluster; the member passes the request on to
    /// its leader. This node must be empty (started with
    /// `Bootstrap::Join` and the cluster's id). Retries while the cluster
    /// has no leader or the member cannot be reached, up to `join_timeout`.
    /// A node that is already a member (it holds a log) returns at once.
    pub async fn join_cluster(&self, member: &str) -> Result<(), NodeError> {
        self.check_open()?;
        if member == self.inner.address {
            return Err(NodeError::Membership(MembershipError::JoinSelf));
        }
        if !self.inner.status.borrow().empty {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.inner.join_timeout;
        loop {
            let request = Request::Join {
                address: self.inner.address.clone(),
            };
            let error = match self.forward(member, request, deadline).await {
                Forwarded::Done(Ok(_)) => return Ok(()),
                Forwarded::Done(Err(e)) if e.is_outcome_unknown() => e,
                Forwarded::Done(Err(e)) => return Err(e),
                Forwarded::Again(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(error);
            }
            tokio::time::sleep(self.inner.election_max).await;
        }
    }

    /// Runs a membership call until `deadline`: `here` while this node
    /// leads, else `request` forwarded to the leader (if forwarding is on).
    /// Waits out elections, and sends again a forward that certainly took
    /// no effect, or, with `again_if_unknown` (a call that may be repeated:
    /// a join, which goes on from where an earlier attempt stopped), one
    /// whose outcome is unknown (the leader crashed with it in hand).
    async fn membership_call<F, Fut>(
        &self,
        request: Request,
        deadline: tokio::time::Instant,
        again_if_unknown: bool,
        here: F,
    ) -> Result<(), NodeError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), NodeError>>,
    {
        loop {
            let error = match self.leader() {
                _ if self.role() == Role::Leader => match here().await {
                    Err(e @ NodeError::NotLeader { .. }) => e,
                    other => return other,
                },
                Some(l) if self.inner.forward && l.id != self.inner.id => {
                    match self.forward(&l.address, request.clone(), deadline).await {
                        Forwarded::Done(Err(e)) if again_if_unknown && e.is_outcome_unknown() => e,
                        Forwarded::Done(r) => return r.map(|_| ()),
                        Forwarded::Again(e) => e,
                    }
                }
                Some(l) if l.id != self.inner.id => {
                    return Err(NodeError::NotLeader { leader: Some(l) })
                }
                _ => NodeError::NotLeader { leader: None },
            };
            if !self.pause(deadline).await {
                return Err(self.check_member().err().unwrap_or(error));
            }
        }
    }

    /// Waits (until `deadline`) while no leader is known; then `Ok` if this
    /// node leads, else [`NodeError::NotLeader`] naming the leader.
    async fn lead_or_name_leader(&self, deadline: tokio::time::Instant) -> Result<(), NodeError> {
        loop {
            if self.role() == Role::Leader {
                return Ok(());
            }
            let leader = self.leader();
            if leader.as_ref().is_some_and(|l| l.id != self.inner.id) {
                return Err(NodeError::NotLeader { leader });
            }
            if !self.pause(deadline).await {
                return Err(NodeError::NotLeader { leader: None });
            }
        }
    }

    /// A call a member that is not the leader received from a peer: passed
    /// on to the leader it knows, once (no loops).
    async fn pass_on(
        &self,
        request: Request,
        deadline: tokio::time::Instant,
    ) -> Result<(), NodeError> {
        match self.leader() {
            Some(l) if !self.inner.forward => Err(NodeError::NotLeader { leader: Some(l) }),
            Some(l) if l.id != self.inner.id => {
                match self.forward(&l.address, request, deadline).await {
                    Forwarded::Done(r) => r.map(|_| ()),
                    Forwarded::Again(e @ NodeError::NotLeader { .. }) => Err(e),
                    Forwarded::Again(e) => Err(NodeError::Retry(RetryReason::Remote {
                        node: l.id.clone(),
                        message: e.to_string(),
                    })),
                }
            }
            _ => Err(NodeError::NotLeader { leader: None }),
        }
    }

    /// Adds the node at `address` as a learner (a member that receives the
    /// log but does not vote); returns its id. It stays a learner (no
    /// leader promotes or removes it, unlike a learner added by a join)
    /// until [`Node::promote`] or [`Node::join`] promotes it, or
    /// [`Node::leave`] removes it. A node that is already a member is left
    /// as it is. Waits out elections, within `join_timeout`; not forwarded: on a
    /// follower it fails with [`NodeError::NotLeader`] naming the leader.
    pub async fn add_learner(&self, address: &str) -> Result<String, NodeError> {
        self.check_member()?;
        let deadline = tokio::time::Instant::now() + self.inner.join_timeout;
        self.lead_or_name_leader(deadline).await?;
        self.add_learner_here(address, false, deadline)
            .await
            .map(|(id, _)| id)
    }

    /// Adds the node at `address` as a learner, marked as joining if
    /// `joining` (added by a join, to be promoted or removed again); a
    /// node that is already a member is left as it is. Returns its id and
    /// number.
    async fn add_learner_here(
        &self,
        address: &str,
        joining: bool,
        deadline: tokio::time::Instant,
    ) -> Result<(String, u64), NodeError> {
        if address == self.inner.address {
            return Err(NodeError::Membership(MembershipError::JoinSelf));
        }
        let conn = self.connection(address).await?;
        let hello = Envelope {
            cluster: self.inner.cluster_number,
            from: Arc::from(self.inner.address.as_str()),
            request: Request::Hello,
        };
        let reply = timeout(self.inner.command_timeout, conn.invoke(hello)).await;
        let (id, cluster, empty) = match reply {
            Ok(Ok(Reply::Hello {
                id,
                cluster,
                empty,
                client_address,
            })) => {
                if !client_address.is_empty() {
                    self.inner.client_addresses.learn(&id, &client_address);
                }
                (id, cluster, empty)
            }
            Ok(Ok(Reply::Failed { message, .. })) => {
                return Err(NodeError::Remote(RemoteError::Refused { message }))
            }
            Ok(Ok(Reply::Error(message))) => {
                return Err(NodeError::Remote(RemoteError::Failed { message }))
            }
            Ok(Ok(other)) => {
                return Err(NodeError::Remote(RemoteError::Unexpected {
                    reply: format!("{other:?}"),
                }))
            }
            Ok(Err(e)) => {
                self.forget_connection(address);
                return Err(e.into());
            }
            Err(_) => {
                return Err(NodeError::Timeout {
                    what: "hello",
                    after: self.inner.command_timeout,
                })
            }
        };
        if cluster != self.inner.cluster {
            return Err(NodeError::Membership(MembershipError::OtherCluster {
                address: address.to_string(),
                cluster,
                expected: self.inner.cluster.clone(),
            }));
        }
        if id == self.inner.id {
            return Err(NodeError::Membership(MembershipError::JoinSelf));
        }
        let number = node_number(&id);
        let peers = self.peers().await?;
        if peers.iter().any(|p| p.id == id) {
            return Ok((id, number));
        }
        if let Some(p) = peers.iter().find(|p| node_number(&p.id) == number) {
            return Err(NodeError::Membership(MembershipError::IdCollision {
                id,
                member: p.id.clone(),
            }));
        }
        if !empty {
            return Err(NodeError::Membership(MembershipError::NotEmpty {
                id,
                address: address.to_string(),
            }));
        }
        let context = PeerContext::new(id.clone(), address)
            .marked(joining)
            .encode();
        self.change(
            ConfChange::AddLearner {
                id: number,
                context,
            },
            &id,
            deadline,
        )
        .await?;
        Ok((id, number))
    }

    /// Promotes the learner `id` to voter (one added by a join too: that
    /// finishes its join). Waits out elections, within `join_timeout`.
    pub async fn promote(&self, id: &str) -> Result<(), NodeError> {
        self.check_member()?;
        let change = ConfChange::AddVoter {
            id: node_number(id),
            context: Bytes::new(),
        };
        let deadline = tokio::time::Instant::now() + self.inner.join_timeout;
        self.change(change, id, deadline).await
    }

    /// Removes the member `id` (voter or learner). Removing the leader makes
    /// it hand over and step down once the change commits. On a follower
    /// the call goes to the leader; waits out elections, within
    /// `join_timeout`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), raft_node::NodeError> {
    /// # use std::sync::Arc;
    /// # use raft_node::{Bootstrap, MemoryNetwork, Node, Options};
    /// # let net = MemoryNetwork::new();
    /// # let options = |id: &str, bootstrap| Options {
    /// #     id: Some(id.into()), cluster: Some("doc".into()),
    /// #     transport: Some(Arc::new(net.transport(id))), bootstrap, ..Options::default()
    /// # };
    /// # let node = Node::new(options("a", Bootstrap::Single)).await?;
    /// # let b = Node::new(options("b", Bootstrap::Join)).await?;
    /// node.join("b").await?;
    /// node.leave("b").await?;
    /// assert_eq!(node.members().len(), 1);
    /// // An id that is not a member is refused, named as given.
    /// let refused = node.leave("nobody").await.unwrap_err();
    /// assert!(refused.to_string().contains("nobody"));
    /// # b.shutdown().await.ok(); node.shutdown().await?; Ok(()) }
    /// ```
    pub async fn leave(&self, id: &str) -> Result<(), NodeError> {
        self.check_member()?;
        let deadline = tokio::time::Instant::now() + self.inner.join_timeout;
        let request = Request::Leave { id: id.to_string() };
        self.membership_call(request, deadline, false, || self.leave_here(id, deadline))
            .await
    }

    async fn leave_here(&self, id: &str, deadline: tokio::time::Instant) -> Result<(), NodeError> {
        self.change(
            ConfChange::Remove {
                id: node_number(id),
            },
            id,
            deadline,
        )
        .await
    }

    /// Proposes a membership change of the member `id`, retrying while
    /// another is in flight or no leader is known, until it commits or
    /// `deadline` passes.
    async fn change(
        &self,
        change: ConfChange,
        id: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), NodeError> {
        self.change_if(change, id, false, deadline).await
    }

    /// [`Node::change`], made only while `id` is a learner added by a join
    /// that has not finished if `joining_only` (else refused with
    /// [`MembershipError::NotJoining`]).
    async fn change_if(
        &self,
        change: ConfChange,
        id: &str,
        joining_only: bool,
        deadline: tokio::time::Instant,
    ) -> Result<(), NodeError> {
        loop {
            let (tx, rx) = oneshot::channel();
            let input = Input::Change {
                change: change.clone(),
                id: id.to_string(),
                joining_only,
                reply: tx,
            };
            self.input(input).await?;
            match self
                .wait("membership change", self.bounded(deadline), rx)
                .await
            {
                Err(NodeError::Retry(_)) | Err(NodeError::NotLeader { leader: None })
                    if tokio::time::Instant::now() < deadline =>
                {
                    if self.leader().is_none() {
                        self.await_leader(deadline).await;
                    } else {
                        tokio::time::sleep(self.inner.heartbeat).await;
                    }
                }
                other => return other,
            }
        }
    }

    /// Every member other than this node, with its role and, on the leader,
    /// its replication state.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), raft_node::NodeError> {
    /// use raft_node::{Node, Options};
    ///
    /// let node = Node::new(Options::default()).await?;
    /// // A single node has no peers; see `join` for a cluster.
    /// assert!(node.peers().await?.is_empty());
    /// # node.shutdown().await?; Ok(()) }
    /// ```
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.input(Input::Peers(tx)).await?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Hands leadership to the voter `to` and waits until it leads.
    pub async fn transfer_leadership(&self, to: &str) -> Result<(), NodeError> {
        self.check_member()?;
        let deadline = tokio::time::Instant::now() + self.inner.command_timeout;
        loop {
            let (tx, rx) = oneshot::channel();
            self.input(Input::Transfer {
                to: node_number(to),
                id: to.to_string(),
                reply: tx,
            })
            .await?;
            match self
                .wait("leadership transfer", self.inner.command_timeout, rx)
                .await
            {
                // During an election: wait for a leader, then try again.
                Err(e @ NodeError::NotLeader { leader: None }) => {
                    if !self.pause(deadline).await {
                        return Err(e);
                    }
                }
                other => break other?,
            }
        }
        let after = self.inner.election_max * 4;
        let mut status = self.inner.status.clone();
        let reached = timeout(after, async {
            loop {
                if status.borrow().leader.as_ref().is_some_and(|l| l.id == to) {
                    return;
                }
                if status.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        match reached {
            Ok(()) if self.leader().is_some_and(|l| l.id == to) => Ok(()),
            Ok(()) => Err(NodeError::ShuttingDown),
            Err(_) => Err(NodeError::Timeout {
                what: "leadership transfer",
                after,
            }),
        }
    }

    /// This node starts no election for `duration` (it still votes, and a
    /// leader stays leader).
    pub async fn weaken(&self, duration: Duration) -> Result<(), NodeError> {
        self.input(Input::Weaken(duration)).await
    }

    /// Stops the node at once, as a crash (or `kill -9`) would: nothing in
    /// flight is finished, and what was not yet saved is lost. For fault
    /// injection in tests; use [`Node::shutdown`] to stop a node cleanly.
    pub async fn crash(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .expect("the lock is never held across a panic"),
        );
        for t in tasks {
            t.abort();
        }
        let _ = self.inner.transport.shutdown().await;
    }

    /// Stops the node: new calls are refused, calls in flight finish (or
    /// fail with [`NodeError::ShuttingDown`] after a short grace period),
    /// what was handed to the disk is saved, and the transport stops.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        let (tx, rx) = oneshot::channel();
        if self.input(Input::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner.transport.shutdown().await?;
        Ok(())
    }
}

impl Call {
    /// What this call attempts, as an error of unknown outcome says it.
    fn attempt(&self) -> Attempt {
        match self {
            Call::Plain(_) => Attempt::Command,
            Call::Register => Attempt::OpenSession,
            Call::Numbered(n) => Attempt::NumberedCommand {
                session: n.session,
                seq: n.seq,
            },
        }
    }

    /// `e`, naming this call as what was attempted if its outcome is
    /// unknown (the layers below know less of it).
    fn refine(&self, e: NodeError) -> NodeError {
        match e {
            NodeError::OutcomeUnknown(mut u) => {
                u.attempt = self.attempt();
                NodeError::OutcomeUnknown(u)
            }
            e => e,
        }
    }

    /// The request that forwards this call to the leader.
    fn request(&self) -> Request {
        match self {
            Call::Plain(c) => Request::Command(c.clone()),
            Call::Register => Request::OpenSession,
            Call::Numbered(n) => Request::SessionCommand {
                session: n.session,
                seq: n.seq,
                floor: n.floor,
                command: n.command.clone(),
            },
        }
    }
}

/// An answer's parts as one `Bytes`: the part itself when there is one (no
/// copy), else the parts copied into one buffer.
fn concat(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.swap_remove(0),
        _ => {
            let mut all = bytes::BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for p in &parts {
                all.extend_from_slice(p);
            }
            all.freeze()
        }
    }
}

fn new_identity(options: &Options, id: String, address: &str) -> Identity {
    let cluster = options.cluster.clone().unwrap_or_else(|| (options.uuid)());
    let bootstrap = match &options.bootstrap {
        Bootstrap::Single => members([(id.clone(), address.to_string())]),
        Bootstrap::Static(list) => members(list.iter().cloned()),
        Bootstrap::Join => Membership::default(),
    };
    Identity {
        id,
        cluster,
        bootstrap,
    }
}

fn members(list: impl IntoIterator<Item = (String, String)>) -> Membership {
    let mut m = Membership::default();
    for (id, address) in list {
        let change = ConfChange::AddVoter {
            id: node_number(&id),
            context: PeerContext::new(id, address).encode(),
        };
        if let Ok(next) = m.apply(&change) {
            m = next;
        }
    }
    m
}

fn check_identity(options: &Options, stored: &Identity) -> Result<(), NodeError> {
    if let Some(id) = &options.id {
        if id != &stored.id {
            return Err(NodeError::InvalidOption {
                option: "id",
                reason: format!(
                    "the storage belongs to node {}, not {id}: leave `id` unset or point `persistence` at this node's own storage",
                    stored.id
                ),
            });
        }
    }
    if let Some(cluster) = &options.cluster {
        if cluster != &stored.cluster {
            return Err(NodeError::InvalidOption {
                option: "cluster",
                reason: format!(
                    "the storage belongs to cluster {}, not {cluster}",
                    stored.cluster
                ),
            });
        }
    }
    Ok(())
}

/// Answers requests from peers.
struct NodeHandler {
    /// Set once the node is built (it listens before).
    node: std::sync::OnceLock<Weak<Inner>>,
}

#[async_trait]
impl Handler for NodeHandler {
    /// A Raft message of this cluster goes straight into the driver's
    /// queue when it has room; anything else goes to `handle`.
    fn post(&self, envelope: Envelope) -> Result<(), Envelope> {
        let Some(inner) = self.node.get().and_then(Weak::upgrade) else {
            return Err(envelope);
        };
        let Envelope {
            cluster,
            from,
            request,
        } = envelope;
        let back = |request, from| Envelope {
            cluster,
            from,
            request,
        };
        let Request::Raft(m) = request else {
            return Err(back(request, from));
        };
        if cluster != inner.cluster_number {
            return Err(back(Request::Raft(m), from));
        }
        match inner.inbox.try_send(Input::Message(m, from)) {
            Ok(()) => Ok(()),
            Err(Input::Message(m, from)) => Err(back(Request::Raft(m), from)),
            // `try_send` gives back what it was given.
            Err(_) => Ok(()),
        }
    }

    async fn handle(&self, envelope: Envelope) -> Reply {
        let Some(inner) = self.node.get().and_then(Weak::upgrade) else {
            return Reply::Failed {
                code: ErrorCode::Retry,
                message: "the node is starting or shut down".into(),
            };
        };
        let node = Node { inner };
        if let Request::Hello = envelope.request {
            return node.hello().await;
        }
        if envelope.cluster != node.inner.cluster_number {
            // The peer's cluster is not ours: it learns nothing of ours.
            return Reply::Error("refused: this node is of another cluster".into());
        }
        // A client call carries the time its caller still waits.
        let (request, within) = match envelope.request {
            Request::Within { within, call } => (*call, Some(within)),
            request => (request, None),
        };
        // A leader serves forwarded commands, reads and leaves only for
        // members: a node that was removed is told so, and stops serving.
        // The sender is known by the address it listens at (a removed node
        // is no longer in the configuration, nor are the addresses it was
        // heard from); a join comes from a node that is not a member yet.
        if matches!(
            request,
            Request::Command(_)
                | Request::SessionCommand { .. }
                | Request::OpenSession
                | Request::Read(_)
                | Request::Leave { .. }
        ) && node.role() == Role::Leader
            && !node
                .inner
                .status
                .borrow()
                .members
                .has_address(&envelope.from)
        {
            return Reply::NotMember(format!(
                "the node at {} is not a member of this cluster's configuration",
                envelope.from
            ));
        }
        let now = tokio::time::Instant::now();
        let deadline = |default: Duration| now + within.unwrap_or(default);
        // A forwarded command waits no longer than its caller.
        let bounded = within.is_some();
        let (command_deadline, join_deadline) = (
            deadline(node.inner.command_timeout),
            deadline(node.inner.join_timeout),
        );
        // Forwarded calls are handled here, never forwarded again (no loops).
        let result = match request {
            Request::Raft(m) => {
                return match node
                    .inner
                    .inbox
                    .send(Input::Message(m, envelope.from))
                    .await
                {
                    Ok(()) => Reply::Ack,
                    Err(_) => Reply::Error("the node is shutting down".into()),
                };
            }
            Request::Command(cmd) => {
                node.command_here(Call::Plain(cmd), false, command_deadline, false, bounded)
                    .await
            }
            Request::SessionCommand {
                session,
                seq,
                floor,
                command,
            } => {
                let call = Call::Numbered(Numbered {
                    session,
                    seq,
                    floor,
                    command,
                });
                node.command_here(call, false, command_deadline, false, bounded)
                    .await
            }
            Request::OpenSession => {
                node.command_here(Call::Register, false, command_deadline, false, bounded)
                    .await
            }
            // The wire carries one answer: the parts are concatenated.
            Request::Read(query) => node.read_here(query, command_deadline).await.map(concat),
            // A member that is not the leader passes a join or a leave on to
            // the leader it knows (one hop: two nodes cannot each believe
            // the other leads the same term).
            Request::Join { address } if node.role() != Role::Leader => node
                .pass_on(Request::Join { address }, join_deadline)
                .await
                .map(|_| Bytes::new()),
            Request::Join { address } => node
                .join_here(&address, join_deadline)
                .await
                .map(|_| Bytes::new()),
            Request::Leave { id } if node.role() != Role::Leader => node
                .pass_on(Request::Leave { id }, join_deadline)
                .await
                .map(|_| Bytes::new()),
            Request::Leave { id } => node
                .leave_here(&id, join_deadline)
                .await
                .map(|_| Bytes::new()),
            Request::Hello | Request::Within { .. } => {
                Err(NodeError::Remote(RemoteError::NotAClientCall))
            }
        };
        match result {
            Ok(b) => Reply::Output(b),
            Err(e) => Reply::Failed {
                code: error_code(&e),
                message: e.to_string(),
            },
        }
    }
}

/// What became of a call forwarded to the leader.
enum Forwarded {
    /// The leader's answer, or a failure after which the call may have
    /// taken effect or would fail again.
    Done(Result<Bytes, NodeError>),
    /// The call certainly took no effect (it never reached the leader, or
    /// the node it reached was not the leader, or could not take it now):
    /// it may be sent again.
    Again(NodeError),
}

/// The wire code of a failed client call: whether the caller may try it
/// again, and whether it may have taken effect.
fn error_code(e: &NodeError) -> ErrorCode {
    match e {
        NodeError::NotLeader { leader: None } => ErrorCode::NoLeader,
        NodeError::NotLeader { leader: Some(_) } => ErrorCode::NotLeader,
        NodeError::Retry(_) | NodeError::Busy | NodeError::ShuttingDown => ErrorCode::Retry,
        NodeError::SessionExpired { .. } => ErrorCode::SessionExpired,
        e => match e.unknown_kind() {
            Some(kind) => ErrorCode::OutcomeUnknown(kind),
            None => ErrorCode::Refused,
        },
    }
}

impl Node {
    /// The answer to [`Request::Hello`]: who this node is, and whether it
    /// is empty, as its driver says now (never a status published earlier:
    /// a node that has just founded its own cluster is not empty).
    async fn hello(&self) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.input(Input::Empty(tx)).await.is_err() {
            return Reply::Failed {
                code: ErrorCode::Retry,
                message: "the node is shutting down".into(),
            };
        }
        let Ok(empty) = rx.await else {
            return Reply::Failed {
                code: ErrorCode::Retry,
                message: "the node is shutting down".into(),
            };
        };
        Reply::Hello {
            id: self.inner.id.clone(),
            cluster: self.inner.cluster.clone(),
            empty,
            client_address: self.inner.client_address.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_unknown_outcome_travel_with_their_kind() {
        let cases = [
            (NodeError::LeadershipLost, UnknownKind::LeadershipLost),
            (
                NodeError::Timeout {
                    what: "command",
                    after: Duration::from_millis(5),
                },
                UnknownKind::DeadlinePassed,
            ),
            (
                OutcomeUnknown::new(Attempt::Command, UnknownKind::NodeStopped)
                    .caused_by(NodeError::ShuttingDown)
                    .into(),
                UnknownKind::NodeStopped,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(error_code(&e), ErrorCode::OutcomeUnknown(kind), "{e}");
        }
        assert_eq!(error_code(&NodeError::ShuttingDown), ErrorCode::Retry);
        assert_eq!(
            error_code(&NodeError::EntryTooLarge {
                bytes: 2,
                max_bytes: 1
            }),
            ErrorCode::Refused
        );
    }

    #[test]
    fn the_session_floor_is_the_lowest_number_still_held() {
        let s = ClientSession::new();
        assert_eq!(s.floor(), 1);
        let (a, b, c) = (s.take(), s.take(), s.take());
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(s.floor(), 1);
        s.release(b);
        assert_eq!(s.floor(), 1, "1 is still held");
        s.release(a);
        assert_eq!(s.floor(), 3, "2 was released before");
        s.release(c);
        assert_eq!(s.floor(), 4, "none held: the next number");
        s.release(c);
        s.release(1);
        assert_eq!(s.floor(), 4, "releasing twice changes nothing");
        // A number held longer than the window spans counts as released.
        let held = s.take();
        for _ in 0..MAX_IN_FLIGHT {
            let n = s.take();
            s.release(n);
        }
        assert!(s.floor() > held);
        s.release(held);
        assert_eq!(s.floor(), s.in_flight().next());
    }
}
