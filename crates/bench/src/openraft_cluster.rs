//! openraft under the same load: three nodes in one process, an in-memory
//! "network" that calls the target node's `Raft` directly, an in-memory log
//! store and a state machine that only records what it applied. This is the
//! shape of openraft's own `benchmarks/minimal` (written anew here, against
//! the openraft release this crate depends on).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::{Stream, TryStreamExt};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::rt::watch::WatchReceiver;
use openraft::storage::{
    EntryResponder, IOFlushed, LogState, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder,
    RaftStateMachine,
};
use openraft::type_config::alias::{
    EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf,
};
use openraft::{Config, EntryPayload, OptionalSend, RaftNetworkFactory, RaftNetworkV2};

use crate::Client;

/// The command: nothing at all, like the benchmark's `ClientRequest {}`.
#[derive(Debug, Clone, Default)]
pub struct Request;

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Request")
    }
}

/// The state machine's answer: nothing either.
#[derive(Debug, Clone, Default)]
pub struct Response;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        Node = (),
);

type Raft = openraft::Raft<TypeConfig, StateMachine>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct LogInner {
    vote: Option<VoteOf<TypeConfig>>,
    committed: Option<LogIdOf<TypeConfig>>,
    log: BTreeMap<u64, EntryOf<TypeConfig>>,
    last_purged: Option<LogIdOf<TypeConfig>>,
}

/// The log: a map under a short lock. It is also its own reader.
#[derive(Clone, Default)]
pub struct LogStore(Arc<Mutex<LogInner>>);

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<TypeConfig>>, io::Error> {
        let inner = lock(&self.0);
        Ok(inner.log.range(range).map(|(_, e)| e.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        Ok(lock(&self.0).vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = lock(&self.0);
        let last = inner.log.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        lock(&self.0).vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        lock(&self.0).committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(lock(&self.0).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = lock(&self.0);
            inner
                .log
                .extend(entries.into_iter().map(|e| (e.log_id.index, e)));
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(
        &mut self,
        last_log_id: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        lock(&self.0).log.split_off(&from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        let mut inner = lock(&self.0);
        inner.last_purged = Some(log_id);
        let kept = inner.log.split_off(&(log_id.index + 1));
        inner.log = kept;
        Ok(())
    }
}

#[derive(Default)]
struct SmInner {
    applied: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
    snapshot: Option<SnapshotMetaOf<TypeConfig>>,
}

/// The state machine: remembers what it applied and the membership, answers
/// every command with nothing. Snapshots carry only their metadata.
#[derive(Clone, Default)]
pub struct StateMachine(Arc<Mutex<SmInner>>);

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = ();

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, ()>, io::Error> {
        let mut inner = lock(&self.0);
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: inner.applied,
            last_membership: inner.membership.clone(),
        };
        inner.snapshot = Some(meta.clone());
        Ok(SnapshotOf::<TypeConfig, ()> { meta, snapshot: () })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = ();
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let inner = lock(&self.0);
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            {
                let mut inner = lock(&self.0);
                inner.applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    inner.membership =
                        StoredMembershipOf::<TypeConfig>::new(Some(entry.log_id), m.clone());
                }
            }
            if let Some(r) = responder {
                r.send(Response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        _snapshot: (),
    ) -> Result<(), io::Error> {
        let mut inner = lock(&self.0);
        inner.applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some(meta.clone());
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, ()>>, io::Error> {
        Ok(lock(&self.0)
            .snapshot
            .clone()
            .map(|meta| SnapshotOf::<TypeConfig, ()> { meta, snapshot: () }))
    }
}

/// The "network": a table from node id to its `Raft` handle.
#[derive(Clone, Default)]
pub struct Router {
    table: Arc<Mutex<BTreeMap<u64, Raft>>>,
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Network;

    async fn new_client(&mut self, target: u64, _node: &()) -> Network {
        Network {
            target: lock(&self.table).get(&target).cloned(),
        }
    }
}

/// A "connection" to one node: calls its `Raft` in place.
pub struct Network {
    target: Option<Raft>,
}

impl Network {
    fn target(&self) -> Result<&Raft, Unreachable<TypeConfig>> {
        self.target
            .as_ref()
            .ok_or_else(|| Unreachable::new(&io::Error::other("no such node")))
    }
}

impl RaftNetworkV2<TypeConfig> for Network {
    type SnapshotData = ();

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.target()?
            .append_entries(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.target()?
            .vote(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, ()>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        self.target()?
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}

/// A running three-node cluster whose node 0 leads.
pub struct Cluster {
    nodes: Vec<Raft>,
}

impl Cluster {
    /// Starts the nodes, initializes node 0 with all three and waits until
    /// every node applied the membership entry. The configuration is the
    /// one of openraft's `benchmarks/minimal`.
    pub async fn start() -> Result<Cluster, String> {
        let config = Config {
            election_timeout_min: 200,
            election_timeout_max: 2000,
            purge_batch_size: 1024,
            max_payload_entries: 1024,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| e.to_string())?);
        let router = Router::default();
        let ids: BTreeSet<u64> = (0..3).collect();
        let mut nodes = Vec::new();
        for &id in &ids {
            let raft = Raft::new(
                id,
                config.clone(),
                router.clone(),
                LogStore::default(),
                StateMachine::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
            lock(&router.table).insert(id, raft.clone());
            nodes.push(raft);
        }
        nodes[0].initialize(ids).await.map_err(|e| e.to_string())?;
        for n in &nodes {
            n.wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(1), "init")
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(Cluster { nodes })
    }

    /// A client of the leader.
    pub fn client(&self) -> OpenraftClient {
        OpenraftClient(self.nodes[0].clone())
    }

    /// The leader's current term (to notice elections during a run).
    pub fn leader_term(&self) -> u64 {
        self.nodes[0].metrics().borrow_watched().current_term
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for n in self.nodes {
            let _ = n.shutdown().await;
        }
    }
}

/// Writes to the leader through `client_write`.
#[derive(Clone)]
pub struct OpenraftClient(Raft);

impl Client for OpenraftClient {
    async fn write(&self) -> Result<(), String> {
        self.0
            .client_write(Request)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
