//! A 3-node cluster over TCP with mutual TLS on 127.0.0.1 with file
//! persistence, in real time: the leader is killed, nodes are isolated and links partitioned (by
//! closing and blocking connections with a [`FaultyTransport`]), nodes are
//! crashed and restarted from their directories, one is shut down cleanly
//! and restarted, while clients read, write and compare-and-set; the
//! cluster keeps its data and the history stays linearizable.
//!
//! Members apply on the driver or on an apply task ([`ApplyMode`]),
//! alternately.
//!
//! A second test writes 2,000 commands without faults, then stops all three
//! nodes and starts them again from their directories at once.
//!
//! `TCP_FILE_SEED=S` fixes the seed of the random choices (the timing is
//! real, so a run is not reproducible exactly); `TCP_FILE_DEBUG=1` prints
//! client errors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use raft_lincheck::{Input, Operation, Output};
use raft_node::example::{kv_get, KvCommand, KvOutput};
use raft_node::persistence::file::FilePersistence;
use raft_node::tls::{CertificateAuthority, TlsConfig, Validity};
use raft_node::{
    ApplyMode, Bootstrap, Change, FaultyTransport, Node, NodeError, Options, Persistence,
    PersistenceError, Role, State, TcpOptions, TcpTransport, TransportError,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{sleep, timeout};

const CLUSTER: &str = "tcp-file";
const KEYS: u64 = 4;
const SIZE: usize = 3;
/// How long the clients run under faults (at least; the fault script ends
/// its last fault first).
const LOAD: Duration = Duration::from_secs(12);
/// The bound on the first write after healing.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// Only one of this file's tests runs at a time: both are timing-sensitive
/// and the machine may have two cores.
static SERIAL: Mutex<()> = Mutex::new(());

// --- a file store that says when it is gone ---

/// A [`FilePersistence`] that raises a flag once dropped (after its writer
/// thread has finished), so that a restarted node never opens its directory
/// while the crashed one's writer may still write there (a real crash ends
/// the process; an in-process crash drops the store a little later).
struct Store {
    // Fields drop in order: the store (joining its writer), then the flag.
    inner: FilePersistence,
    _gone: Gone,
}

struct Gone(Arc<AtomicBool>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Persistence for Store {
    async fn save(&self, change: Change) -> Result<(), PersistenceError> {
        self.inner.save(change).await
    }

    async fn load(&self) -> Result<Option<State>, PersistenceError> {
        self.inner.load().await
    }
}

// --- the cluster ---

/// Three distinct free addresses.
fn free_addresses() -> Vec<String> {
    // Hold the listeners until all three are chosen, so they differ.
    let listeners: Vec<std::net::TcpListener> = (0..SIZE)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").to_string())
        .collect()
}

/// The cluster's certificate authority (one per test process).
fn authority() -> &'static CertificateAuthority {
    static CA: std::sync::OnceLock<CertificateAuthority> = std::sync::OnceLock::new();
    CA.get_or_init(|| CertificateAuthority::generate(Validity::days(1)).expect("a CA"))
}

/// Mutual TLS for node `id`: a certificate from the cluster's CA.
fn tls(id: &str) -> TlsConfig {
    let ca = authority();
    let issued = ca
        .issue_node(CLUSTER, id, &["127.0.0.1".into()], Validity::days(1))
        .expect("a node certificate");
    TlsConfig::from_pem(
        ca.certificate_pem().as_bytes(),
        issued.certificate_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .expect("valid TLS material")
}

/// Where member `i` applies: the first and the third on the driver, the
/// second on an apply task, so that both ways lead, follow and restart.
fn apply_mode(i: usize) -> ApplyMode {
    if i.is_multiple_of(2) {
        ApplyMode::Inline
    } else {
        ApplyMode::Task
    }
}

fn tcp_options(id: &str) -> TcpOptions {
    let mut o = TcpOptions::new(id, CLUSTER).with_tls(tls(id));
    o.request_timeout = Duration::from_secs(1);
    o.connect_timeout = Duration::from_millis(500);
    o.reconnect_backoff_max = Duration::from_millis(200);
    o
}

/// One member: where it lives, and what runs now.
struct Slot {
    id: String,
    address: String,
    dir: PathBuf,
    /// The running node's transports.
    faulty: Option<Arc<FaultyTransport>>,
    tcp: Option<Arc<TcpTransport>>,
    /// Raised once the last store opened on `dir` is dropped.
    gone: Option<Arc<AtomicBool>>,
    starts: u32,
}

/// Totals of the transports of nodes that stopped (summed into the
/// summary).
#[derive(Default, Debug)]
struct TransportTotals {
    invokes_blocked: u64,
    connects_blocked: u64,
    invokes_cut: u64,
    connections_cut: u64,
    incoming_blocked: u64,
    tcp_connections_opened: u64,
    tcp_reconnects: u64,
    tcp_connect_failures: u64,
    tcp_bad_frames: u64,
}

type Live = Arc<Mutex<Vec<Option<Node>>>>;

struct Cluster {
    members: Vec<(String, String)>,
    slots: Vec<Slot>,
    /// The nodes running, shared with the clients.
    live: Live,
    /// Blocked directed links (from, to) and nodes refusing incoming
    /// requests: applied to every transport a restarted node gets.
    links: HashSet<(usize, usize)>,
    deaf: [bool; SIZE],
    totals: TransportTotals,
    _dirs: tempfile::TempDir,
}

impl Cluster {
    /// Starts three nodes on free ports, each with its own directory; if a
    /// port was taken meanwhile, starts again on other ports.
    async fn start() -> Cluster {
        for attempt in 0..5 {
            let dirs = tempfile::tempdir().expect("a temporary directory");
            let addresses = free_addresses();
            let members: Vec<(String, String)> = addresses
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("n{}", i + 1), a.clone()))
                .collect();
            let slots = members
                .iter()
                .map(|(id, address)| {
                    let dir = dirs.path().join(id);
                    std::fs::create_dir_all(&dir).expect("a node directory");
                    Slot {
                        id: id.clone(),
                        address: address.clone(),
                        dir,
                        faulty: None,
                        tcp: None,
                        gone: None,
                        starts: 0,
                    }
                })
                .collect();
            let mut c = Cluster {
                members,
                slots,
                live: Arc::new(Mutex::new(vec![None, None, None])),
                links: HashSet::new(),
                deaf: [false; SIZE],
                totals: TransportTotals::default(),
                _dirs: dirs,
            };
            let mut taken = false;
            for i in 0..SIZE {
                match c.try_start(i).await {
                    Ok(()) => {}
                    Err(NodeError::Transport(TransportError::AddressInUse(a))) => {
                        eprintln!("port {a} was taken meanwhile (attempt {attempt}): new ports");
                        taken = true;
                        break;
                    }
                    Err(e) => panic!("n{} does not start: {e}", i + 1),
                }
            }
            if !taken {
                return c;
            }
            for i in 0..SIZE {
                c.stop(i, true).await;
            }
        }
        panic!("could not find three free ports");
    }

    fn node(&self, i: usize) -> Option<Node> {
        self.live.lock().unwrap()[i].clone()
    }

    fn nodes(&self) -> Vec<Node> {
        self.live
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Waits until the store last opened in node `i`'s directory is
    /// dropped.
    async fn wait_store_closed(&self, i: usize) {
        if let Some(gone) = &self.slots[i].gone {
            let start = Instant::now();
            while !gone.load(Ordering::SeqCst) {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "the store of {} is still open 10 s after the node stopped",
                    self.slots[i].id
                );
                sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Starts node `i` from its directory on its port, with the blocks in
    /// force applied to its new transport.
    async fn try_start(&mut self, i: usize) -> Result<(), NodeError> {
        self.wait_store_closed(i).await;
        let slot = &self.slots[i];
        let gone = Arc::new(AtomicBool::new(false));
        let store = Store {
            inner: FilePersistence::open(&slot.dir).await?,
            _gone: Gone(gone.clone()),
        };
        let tcp = Arc::new(TcpTransport::new(tcp_options(&slot.id))?);
        let faulty = Arc::new(FaultyTransport::new(tcp.clone()));
        for &(from, to) in &self.links {
            if from == i {
                faulty.block(&self.slots[to].address);
            }
        }
        faulty.block_incoming(self.deaf[i]);
        let started = Node::new(Options {
            id: Some(slot.id.clone()),
            cluster: Some(CLUSTER.into()),
            address: Some(slot.address.clone()),
            transport: Some(faulty.clone()),
            persistence: Some(Arc::new(store)),
            bootstrap: Bootstrap::Static(self.members.clone()),
            tick: Duration::from_millis(5),
            heartbeat_interval: Duration::from_millis(20),
            election_timeout_min: Duration::from_millis(100),
            election_timeout_max: Duration::from_millis(200),
            snapshot_threshold: 200,
            snapshot_trailing: 50,
            command_timeout: Duration::from_secs(1),
            apply_mode: apply_mode(i),
            ..Options::default()
        })
        .await;
        let slot = &mut self.slots[i];
        slot.gone = Some(gone);
        let node = started?;
        assert_eq!(node.address(), slot.address);
        slot.faulty = Some(faulty);
        slot.tcp = Some(tcp);
        slot.starts += 1;
        self.live.lock().unwrap()[i] = Some(node);
        Ok(())
    }

    /// Starts node `i`, retrying while its port is still taken.
    async fn restart(&mut self, i: usize) -> Duration {
        let start = Instant::now();
        loop {
            match self.try_start(i).await {
                Ok(()) => return start.elapsed(),
                Err(NodeError::Transport(TransportError::AddressInUse(_)))
                    if start.elapsed() < Duration::from_secs(10) =>
                {
                    sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!(
                    "{} cannot restart from its directory: {e}",
                    self.slots[i].id
                ),
            }
        }
    }

    /// Stops node `i`: a crash (tasks aborted, nothing more saved) or a
    /// clean shutdown. Every handle the cluster holds is dropped.
    async fn stop(&mut self, i: usize, crash: bool) {
        let node = self.live.lock().unwrap()[i].take();
        if let Some(node) = node {
            if crash {
                node.crash().await;
            } else {
                node.shutdown().await.expect("a clean shutdown");
            }
        }
        let slot = &mut self.slots[i];
        if let Some(f) = slot.faulty.take() {
            let s = f.stats();
            let t = &mut self.totals;
            t.invokes_blocked += s.invokes_blocked;
            t.connects_blocked += s.connects_blocked;
            t.invokes_cut += s.invokes_cut;
            t.connections_cut += s.connections_cut;
            t.incoming_blocked += s.incoming_blocked;
        }
        if let Some(tcp) = slot.tcp.take() {
            let s = tcp.stats();
            let t = &mut self.totals;
            t.tcp_connections_opened += s.connections_opened;
            t.tcp_reconnects += s.reconnects;
            t.tcp_connect_failures += s.connect_failures;
            t.tcp_bad_frames += s.malformed_frames + s.oversized_frames + s.unknown_frames;
        }
    }

    fn block(&mut self, from: usize, to: usize) {
        self.links.insert((from, to));
        if let Some(f) = &self.slots[from].faulty {
            f.block(&self.slots[to].address);
        }
    }

    /// Cuts node `i` off in both directions: the others' connections to it
    /// are closed and blocked, it refuses what still arrives, and its own
    /// connections are closed and blocked.
    fn isolate(&mut self, i: usize) {
        for j in 0..SIZE {
            if j != i {
                self.block(j, i);
                self.block(i, j);
            }
        }
        self.deaf[i] = true;
        if let Some(f) = &self.slots[i].faulty {
            f.block_incoming(true);
        }
    }

    /// Node `i` answers every request with an error; its own requests go
    /// out.
    fn deafen(&mut self, i: usize) {
        self.deaf[i] = true;
        if let Some(f) = &self.slots[i].faulty {
            f.block_incoming(true);
        }
    }

    /// Both directions between `a` and `b`.
    fn partition(&mut self, a: usize, b: usize) {
        self.block(a, b);
        self.block(b, a);
    }

    fn heal(&mut self) {
        self.links.clear();
        self.deaf = [false; SIZE];
        for slot in &self.slots {
            if let Some(f) = &slot.faulty {
                f.unblock_all();
                f.block_incoming(false);
            }
        }
    }

    /// The node that leads in the highest term, waiting up to `limit`.
    async fn leader(&self, limit: Duration) -> Option<usize> {
        let start = Instant::now();
        loop {
            let found = (0..SIZE)
                .filter_map(|i| self.node(i).map(|n| (i, n)))
                .filter(|(_, n)| n.role() == Role::Leader)
                .max_by_key(|(_, n)| n.term())
                .map(|(i, _)| i);
            if found.is_some() || start.elapsed() >= limit {
                return found;
            }
            sleep(Duration::from_millis(10)).await;
        }
    }

    fn max_snapshot_index(&self) -> u64 {
        self.nodes()
            .iter()
            .map(|n| n.metrics().snapshot_index)
            .max()
            .unwrap_or(0)
    }

    /// Everything the nodes say about themselves, for failure messages.
    async fn diagnose(&self) -> String {
        let mut out = String::new();
        for i in 0..SIZE {
            let Some(n) = self.node(i) else {
                out += &format!("{}: down\n", self.slots[i].id);
                continue;
            };
            out += &format!("{}: {:?}\n", n.id(), n.metrics());
            match timeout(Duration::from_secs(1), n.peers()).await {
                Ok(Ok(peers)) => out += &format!("  peers: {peers:?}\n"),
                other => out += &format!("  peers: {other:?}\n"),
            }
            if let Some(f) = &self.slots[i].faulty {
                out += &format!("  faults: {:?} {:?}\n", f, f.stats());
            }
            if let Some(t) = &self.slots[i].tcp {
                out += &format!("  tcp: {:?}\n", t.stats());
            }
        }
        out
    }

    fn describe(&self) -> String {
        (0..SIZE)
            .map(|i| match self.node(i) {
                Some(n) => {
                    let m = n.metrics();
                    format!(
                        "{}:{:?}/t{}/c{}/s{}",
                        n.id(),
                        m.role,
                        m.term,
                        m.commit_index,
                        m.snapshot_index
                    )
                }
                None => format!("{}:down", self.slots[i].id),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

// --- clients ---

type History = Arc<Mutex<Vec<Operation>>>;

fn now_us(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

fn key(k: u64) -> Bytes {
    Bytes::from(format!("k{k}"))
}

fn value(v: u64) -> Bytes {
    Bytes::from(v.to_string())
}

fn parse(v: &Bytes) -> u64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// What the clients saw, beyond the history.
#[derive(Default, Debug)]
struct ClientStats {
    failed_reads: u64,
    errors: BTreeMap<&'static str, u64>,
}

fn error_kind(e: &NodeError) -> &'static str {
    match e {
        NodeError::Timeout { .. } => "timeout",
        NodeError::NotLeader { .. } => "not leader",
        NodeError::LeadershipLost => "leadership lost",
        NodeError::ShuttingDown => "shutting down",
        NodeError::Transport(_) => "transport",
        NodeError::Remote(_) => "remote",
        NodeError::Busy | NodeError::Retry(_) => "busy",
        NodeError::Stopped(_) => "stopped",
        NodeError::OutcomeUnknown(_) => "outcome unknown",
        _ => "other",
    }
}

/// The longest a client waits for one call (the node's own timeouts are
/// shorter; this catches a call that hangs).
const CALL_LIMIT: Duration = Duration::from_secs(4);

/// One client: random reads, writes and compare-and-sets on random live
/// nodes until `stop`, recorded in `history`. Values are unique: the
/// client's id in the high bits, a sequence number in the low ones.
async fn client(
    id: u64,
    live: Live,
    history: History,
    stats: Arc<Mutex<ClientStats>>,
    start: Instant,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let debug = std::env::var("TCP_FILE_DEBUG").is_ok();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut next_value = (id + 1) << 32;
    let mut seen: HashMap<u64, Option<u64>> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        let nodes: Vec<Node> = live.lock().unwrap().iter().flatten().cloned().collect();
        if nodes.is_empty() {
            sleep(Duration::from_millis(20)).await;
            continue;
        }
        let node = nodes[rng.random_range(0..nodes.len())].clone();
        let k = rng.random_range(0..KEYS);
        let call = now_us(start);
        let (input, result) = match rng.random_range(0..10) {
            0..4 => (
                Input::Read,
                timeout(CALL_LIMIT, node.read(kv_get(&key(k)))).await,
            ),
            4..8 => {
                next_value += 1;
                let cmd = KvCommand::Set {
                    key: key(k),
                    value: value(next_value),
                };
                (
                    Input::Write(next_value),
                    timeout(CALL_LIMIT, node.command(cmd.encode())).await,
                )
            }
            _ => {
                next_value += 1;
                let expected = seen.get(&k).copied().flatten();
                let cmd = KvCommand::Cas {
                    key: key(k),
                    expected: expected.map(value),
                    new: value(next_value),
                };
                let input = Input::Cas {
                    expected,
                    new: next_value,
                };
                (input, timeout(CALL_LIMIT, node.command(cmd.encode())).await)
            }
        };
        let result = result.unwrap_or(Err(NodeError::Timeout {
            what: "client call",
            after: CALL_LIMIT,
        }));
        let ret = match result {
            Ok(out) => {
                let output = match (KvOutput::decode(&out), input) {
                    (Some(KvOutput::Value(v)), Input::Read) => Output::Read(v.as_ref().map(parse)),
                    (Some(KvOutput::Done), Input::Write(_)) => Output::Write,
                    (Some(KvOutput::Changed(ok)), Input::Cas { .. }) => Output::Cas(ok),
                    (other, _) => panic!("unexpected output {other:?} for {input:?}"),
                };
                match (input, output) {
                    (_, Output::Read(v)) => {
                        seen.insert(k, v);
                    }
                    (Input::Write(v), _) | (Input::Cas { new: v, .. }, Output::Cas(true)) => {
                        seen.insert(k, Some(v));
                    }
                    _ => {}
                }
                Some((now_us(start), output))
            }
            // A read that failed had no effect; a command that failed may
            // or may not have taken effect: it stays open.
            Err(e) => {
                if debug {
                    eprintln!("client {id} at {}: {e}", node.id());
                }
                {
                    let mut s = stats.lock().unwrap();
                    *s.errors.entry(error_kind(&e)).or_default() += 1;
                    if input == Input::Read {
                        s.failed_reads += 1;
                    }
                }
                if input == Input::Read {
                    sleep(Duration::from_millis(5)).await;
                    continue;
                }
                None
            }
        };
        history.lock().unwrap().push(Operation {
            client: id,
            key: k,
            input,
            call,
            ret,
        });
        sleep(Duration::from_millis(rng.random_range(0..8))).await;
    }
}

// --- faults ---

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Crash the leader; restart it from its directory after a pause.
    KillLeader,
    /// Crash a follower; restart it after a pause.
    CrashFollower,
    /// Shut a node down cleanly; restart it after a pause.
    CleanRestart,
    /// Isolate a random node in both directions for a while.
    Isolate,
    /// Isolate the leader for a while (the others elect a new one).
    IsolateLeader,
    /// Cut the link between two nodes for a while (each still reaches the
    /// third).
    PartitionLink,
    /// A node refuses every request that reaches it for a while, but its
    /// own requests go out (an asymmetric partition: a leader's heartbeats
    /// arrive, the answers do not).
    Deaf,
}

#[derive(Default, Debug)]
struct FaultCounts {
    leader_kills: u32,
    follower_crashes: u32,
    clean_restarts: u32,
    isolations: u32,
    link_partitions: u32,
    deaf: u32,
    restarts: u32,
    slowest_restart: Duration,
}

async fn inject(
    c: &mut Cluster,
    fault: Fault,
    rng: &mut SmallRng,
    counts: &mut FaultCounts,
    t0: Instant,
) {
    let at = t0.elapsed().as_secs_f64();
    let pause = Duration::from_millis(rng.random_range(200..700));
    let hold = Duration::from_millis(rng.random_range(600..1500));
    match fault {
        Fault::KillLeader | Fault::CrashFollower | Fault::CleanRestart => {
            let leader = c.leader(Duration::from_secs(2)).await;
            let i = match fault {
                Fault::KillLeader => match leader {
                    Some(i) => i,
                    None => {
                        eprintln!("[{at:6.2}s] no leader to kill: {}", c.describe());
                        return;
                    }
                },
                Fault::CrashFollower => {
                    let followers: Vec<usize> = (0..SIZE).filter(|&i| Some(i) != leader).collect();
                    followers[rng.random_range(0..followers.len())]
                }
                _ => rng.random_range(0..SIZE),
            };
            let what = match fault {
                Fault::KillLeader => "kill leader",
                Fault::CrashFollower => "crash follower",
                _ => "clean shutdown of",
            };
            eprintln!(
                "[{at:6.2}s] {what} {} ({}), down for {pause:?}",
                c.slots[i].id,
                c.describe()
            );
            c.stop(i, fault != Fault::CleanRestart).await;
            match fault {
                Fault::KillLeader => counts.leader_kills += 1,
                Fault::CrashFollower => counts.follower_crashes += 1,
                _ => counts.clean_restarts += 1,
            }
            sleep(pause).await;
            let took = c.restart(i).await;
            counts.restarts += 1;
            counts.slowest_restart = counts.slowest_restart.max(took);
        }
        Fault::Isolate | Fault::IsolateLeader => {
            let i = match fault {
                Fault::IsolateLeader => match c.leader(Duration::from_secs(2)).await {
                    Some(i) => i,
                    None => return,
                },
                _ => rng.random_range(0..SIZE),
            };
            eprintln!(
                "[{at:6.2}s] isolate {} for {hold:?} ({})",
                c.slots[i].id,
                c.describe()
            );
            c.isolate(i);
            counts.isolations += 1;
            sleep(hold).await;
            c.heal();
        }
        Fault::Deaf => {
            let i = match c.leader(Duration::from_secs(2)).await {
                Some(l) if rng.random_bool(0.5) => l,
                _ => rng.random_range(0..SIZE),
            };
            eprintln!(
                "[{at:6.2}s] {} refuses incoming requests for {hold:?} ({})",
                c.slots[i].id,
                c.describe()
            );
            c.deafen(i);
            counts.deaf += 1;
            sleep(hold).await;
            c.heal();
        }
        Fault::PartitionLink => {
            let a = rng.random_range(0..SIZE);
            let b = (a + rng.random_range(1..SIZE)) % SIZE;
            eprintln!(
                "[{at:6.2}s] partition {} <-> {} for {hold:?} ({})",
                c.slots[a].id,
                c.slots[b].id,
                c.describe()
            );
            c.partition(a, b);
            counts.link_partitions += 1;
            sleep(hold).await;
            c.heal();
        }
    }
}

fn seed() -> u64 {
    match std::env::var("TCP_FILE_SEED") {
        Ok(s) => s.parse().expect("TCP_FILE_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Reads `k` on `node` (linearizable), retrying failures for up to `limit`.
async fn read_key(node: &Node, k: &[u8], limit: Duration) -> Result<Option<Bytes>, NodeError> {
    let start = Instant::now();
    loop {
        let r = match timeout(CALL_LIMIT, node.read(kv_get(k))).await {
            Ok(r) => r,
            Err(_) => Err(NodeError::Timeout {
                what: "read",
                after: CALL_LIMIT,
            }),
        };
        match r {
            Ok(out) => match KvOutput::decode(&out) {
                Some(KvOutput::Value(v)) => return Ok(v),
                other => panic!("unexpected read output {other:?}"),
            },
            Err(e) if start.elapsed() >= limit => return Err(e),
            Err(_) => sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Checks that every acknowledged write (or successful CAS) of `history`
/// is in `finals` or was superseded: the operation that wrote the final
/// value did not end before it began. Also that the final values were
/// written by someone.
fn check_acknowledged_writes(history: &[Operation], finals: &[Option<u64>]) {
    for (k, fin) in finals.iter().enumerate() {
        let k = k as u64;
        let writes: Vec<&Operation> = history
            .iter()
            .filter(|o| o.key == k)
            .filter(|o| matches!(o.input, Input::Write(_) | Input::Cas { .. }))
            .collect();
        let acked = writes
            .iter()
            .filter(|o| matches!(o.output(), Some(Output::Write) | Some(Output::Cas(true))));
        let written = |o: &Operation| match o.input {
            Input::Write(v) | Input::Cas { new: v, .. } => Some(v),
            Input::Read | Input::Expire(_) => None,
        };
        let Some(fin) = fin else {
            let lost: Vec<_> = acked.collect();
            assert!(
                lost.is_empty(),
                "key {k} is absent at the end, but {} writes to it were acknowledged, e.g. {:?}",
                lost.len(),
                lost[0]
            );
            continue;
        };
        let source = writes
            .iter()
            .find(|o| written(o) == Some(*fin) && o.output() != Some(Output::Cas(false)))
            .unwrap_or_else(|| panic!("key {k} ends with {fin}, which nobody wrote"));
        for w in acked {
            if written(w) == Some(*fin) {
                continue;
            }
            if let Some(end) = source.ret_time() {
                assert!(
                    end >= w.call,
                    "key {k}: the acknowledged {w:?} was lost: the final value {fin} was written by \
                     {source:?}, which ended before it began"
                );
            }
        }
    }
}

#[test]
fn a_tcp_cluster_with_files_survives_kills_partitions_and_restarts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = seed();
    eprintln!("seed {seed} (TCP_FILE_SEED={seed} to choose the same faults)");
    runtime().block_on(chaos(seed));
}

async fn chaos(seed: u64) {
    let t0 = Instant::now();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut c = Cluster::start().await;
    let first = c
        .leader(Duration::from_secs(5))
        .await
        .expect("a leader is elected");
    eprintln!(
        "[{:6.2}s] started on {:?}; {} leads",
        t0.elapsed().as_secs_f64(),
        c.members.iter().map(|(_, a)| a).collect::<Vec<_>>(),
        c.slots[first].id
    );

    let history: History = Arc::new(Mutex::new(Vec::new()));
    let stats = Arc::new(Mutex::new(ClientStats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let clients: Vec<_> = (0..4u64)
        .map(|id| {
            tokio::spawn(client(
                id,
                c.live.clone(),
                history.clone(),
                stats.clone(),
                start,
                stop.clone(),
                seed.wrapping_mul(31).wrapping_add(id),
            ))
        })
        .collect();

    // Every kind of fault at least once, in a random order, then random
    // ones (no more clean shutdowns) until the load time is over.
    let mut script = [
        Fault::KillLeader,
        Fault::Isolate,
        Fault::CrashFollower,
        Fault::CleanRestart,
        Fault::PartitionLink,
        Fault::IsolateLeader,
        Fault::KillLeader,
        Fault::Deaf,
    ];
    for i in (1..script.len()).rev() {
        script.swap(i, rng.random_range(0..=i));
    }
    let mut counts = FaultCounts::default();
    let mut snapshot_seen = 0;
    let mut step = 0;
    loop {
        sleep(Duration::from_millis(rng.random_range(300..800))).await;
        snapshot_seen = snapshot_seen.max(c.max_snapshot_index());
        let fault = if step < script.len() {
            script[step]
        } else if start.elapsed() < LOAD {
            [
                Fault::KillLeader,
                Fault::CrashFollower,
                Fault::Isolate,
                Fault::IsolateLeader,
                Fault::PartitionLink,
                Fault::Deaf,
            ][rng.random_range(0..6)]
        } else {
            break;
        };
        step += 1;
        inject(&mut c, fault, &mut rng, &mut counts, t0).await;
    }
    // End without a quorum, clients still running: the leader crashed and
    // a follower isolated. Then heal everything and restart the leader;
    // a write must complete within the bound.
    if let Some(l) = c.leader(Duration::from_secs(2)).await {
        let f = (l + rng.random_range(1..SIZE)) % SIZE;
        eprintln!(
            "[{:6.2}s] last fault: kill leader {} and isolate {} ({})",
            t0.elapsed().as_secs_f64(),
            c.slots[l].id,
            c.slots[f].id,
            c.describe()
        );
        c.stop(l, true).await;
        counts.leader_kills += 1;
        c.isolate(f);
        counts.isolations += 1;
        sleep(Duration::from_millis(500)).await;
    }
    let healed = Instant::now();
    c.heal();
    for i in 0..SIZE {
        if c.node(i).is_none() {
            c.restart(i).await;
            counts.restarts += 1;
        }
    }
    eprintln!(
        "[{:6.2}s] healed: {}",
        t0.elapsed().as_secs_f64(),
        c.describe()
    );
    let mut attempt = 0;
    let recovery = loop {
        let nodes = c.nodes();
        let node = &nodes[attempt % nodes.len()];
        // Unique values, as the clients' (a retry is another write).
        let final_value = u64::MAX - 1 - attempt as u64;
        attempt += 1;
        let cmd = KvCommand::Set {
            key: key(0),
            value: value(final_value),
        };
        let call = now_us(start);
        let r = timeout(CALL_LIMIT, node.command(cmd.encode())).await;
        let ok = matches!(r, Ok(Ok(_)));
        history.lock().unwrap().push(Operation {
            client: 99,
            key: 0,
            input: Input::Write(final_value),
            call,
            ret: ok.then(|| (now_us(start), Output::Write)),
        });
        if ok {
            break healed.elapsed();
        }
        if healed.elapsed() >= RECOVERY_BOUND {
            panic!(
                "no write completed within {RECOVERY_BOUND:?} after healing; last error {r:?}\n{}",
                c.diagnose().await
            );
        }
        sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::SeqCst);
    for t in clients {
        t.await.expect("no client panics");
    }
    let load = start.elapsed();

    // Every node reads back the same values (linearizable reads), which
    // join the history.
    let mut finals: Vec<Option<u64>> = Vec::new();
    for i in 0..SIZE {
        let node = c.node(i).expect("every node runs");
        let mut values = Vec::new();
        for k in 0..KEYS {
            let call = now_us(start);
            let v = match read_key(&node, &key(k), Duration::from_secs(10)).await {
                Ok(v) => v,
                Err(e) => panic!(
                    "{} cannot read k{k} for 10 s after healing: {e}\n{}",
                    node.id(),
                    c.diagnose().await
                ),
            };
            let v = v.as_ref().map(parse);
            history.lock().unwrap().push(Operation {
                client: 100 + i as u64,
                key: k,
                input: Input::Read,
                call,
                ret: Some((now_us(start), Output::Read(v))),
            });
            values.push(v);
        }
        if finals.is_empty() {
            finals = values;
        } else {
            assert_eq!(
                values,
                finals,
                "{} reads other final values than n1",
                node.id()
            );
        }
    }
    // The clients may have written k0 after the final write.
    snapshot_seen = snapshot_seen.max(c.max_snapshot_index());

    let ops = history.lock().unwrap().clone();
    let completed = ops.iter().filter(|o| o.ret.is_some()).count();
    let open = ops.len() - completed;
    assert!(
        completed > 200,
        "only {completed} operations completed in {load:?}"
    );
    check_acknowledged_writes(&ops, &finals);
    let checked = Instant::now();
    let report = match raft_lincheck::check(&ops) {
        Ok(r) => r,
        Err(e) => panic!(
            "seed {seed}: the history of {} operations is not linearizable:\n{e}",
            ops.len()
        ),
    };
    let check_time = checked.elapsed();
    assert!(snapshot_seen > 0, "no node took a snapshot (threshold 200)");
    assert!(counts.leader_kills >= 1 && counts.clean_restarts == 1 && counts.isolations >= 1);

    let metrics: Vec<String> = c
        .nodes()
        .iter()
        .map(|n| {
            let m = n.metrics();
            format!(
                "{} {:?} term {} commit {} snapshot {} elections {}",
                n.id(),
                m.role,
                m.term,
                m.commit_index,
                m.snapshot_index,
                m.core.elections
            )
        })
        .collect();
    for i in 0..SIZE {
        c.stop(i, false).await;
    }
    let s = stats.lock().unwrap();
    let t = &c.totals;
    assert_eq!(t.tcp_bad_frames, 0, "no malformed frames between nodes");
    eprintln!("--- summary (seed {seed}) ---");
    eprintln!(
        "operations: {} recorded in {load:.1?} ({completed} completed, {open} open), {} reads failed; errors {:?}",
        ops.len(),
        s.failed_reads,
        s.errors
    );
    eprintln!(
        "faults: {} leader kills, {} follower crashes, {} clean restarts, {} isolations, {} link partitions, {} deaf nodes; {} restarts (slowest {:.1?}); starts per node {:?}",
        counts.leader_kills,
        counts.follower_crashes,
        counts.clean_restarts,
        counts.isolations,
        counts.link_partitions,
        counts.deaf,
        counts.restarts,
        counts.slowest_restart,
        c.slots.iter().map(|s| s.starts).collect::<Vec<_>>()
    );
    eprintln!(
        "fault injection: {} invokes and {} connects refused, {} requests cut in flight, {} connections closed, {} incoming refused; tcp: {} connections opened, {} reconnects, {} failed attempts",
        t.invokes_blocked,
        t.connects_blocked,
        t.invokes_cut,
        t.connections_cut,
        t.incoming_blocked,
        t.tcp_connections_opened,
        t.tcp_reconnects,
        t.tcp_connect_failures
    );
    eprintln!("snapshot index reached: {snapshot_seen}; final: {metrics:?}");
    eprintln!(
        "recovery after healing: first write in {recovery:.1?}; finals {finals:?}; linearizable ({} operations, {} states, checked in {check_time:.1?}); total {:.1?}",
        report.operations,
        report.states_explored,
        t0.elapsed()
    );
}

// --- restarting everything at once ---

#[test]
fn two_thousand_writes_survive_a_restart_of_the_whole_cluster() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    runtime().block_on(full_restart());
}

/// Waits until exactly one node leads and every node knows it.
async fn settled_leader(c: &Cluster, limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let nodes: Vec<Node> = (0..SIZE).filter_map(|i| c.node(i)).collect();
        let leaders: Vec<usize> = (0..SIZE)
            .filter(|&i| c.node(i).is_some_and(|n| n.role() == Role::Leader))
            .collect();
        if leaders.len() == 1 && nodes.len() == SIZE {
            let id = &c.slots[leaders[0]].id;
            if nodes
                .iter()
                .all(|n| n.leader().is_some_and(|l| &l.id == id))
            {
                return leaders[0];
            }
        }
        assert!(
            start.elapsed() < limit,
            "no leader settled within {limit:?}: {}",
            c.describe()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

async fn full_restart() {
    const WRITES: u64 = 2000;
    const WRITERS: u64 = 8;
    const KEYS_PER_WRITER: u64 = 25;
    let t0 = Instant::now();
    let mut c = Cluster::start().await;
    settled_leader(&c, Duration::from_secs(5)).await;
    // Eight writers, each on its own keys, through all three nodes.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let live = c.live.clone();
            tokio::spawn(async move {
                let mut last = BTreeMap::new();
                for j in 0..WRITES / WRITERS {
                    let node = live.lock().unwrap()[(j % SIZE as u64) as usize]
                        .clone()
                        .expect("running");
                    let k = format!("w{w}-k{}", j % KEYS_PER_WRITER);
                    let v = format!("{w}:{j}");
                    let cmd = KvCommand::Set {
                        key: k.clone().into(),
                        value: v.clone().into(),
                    };
                    let mut tries = 0;
                    loop {
                        match node.command(cmd.encode()).await {
                            Ok(_) => break,
                            // Not a fault test: a retry is fine (a set is
                            // idempotent), but it should be rare.
                            Err(e) if tries < 3 => {
                                eprintln!("writer {w}: {e}; retrying");
                                tries += 1;
                            }
                            Err(e) => panic!("writer {w}: write {j} failed: {e}"),
                        }
                    }
                    last.insert(k, v);
                }
                last
            })
        })
        .collect();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for w in writers {
        expected.extend(w.await.expect("no writer panics"));
    }
    let wrote = t0.elapsed();
    let before: Vec<u64> = c
        .nodes()
        .iter()
        .map(|n| n.metrics().snapshot_index)
        .collect();
    // Metrics are refreshed once per tick: give them one.
    let mut commit_before = 0;
    for _ in 0..100 {
        commit_before = c
            .nodes()
            .iter()
            .map(|n| n.metrics().commit_index)
            .max()
            .unwrap_or(0);
        if commit_before >= WRITES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(commit_before >= WRITES, "commit index {commit_before}");

    // Stop all three at once, then start all three at once.
    let stopping: Vec<_> = c
        .nodes()
        .into_iter()
        .map(|n| tokio::spawn(async move { n.shutdown().await }))
        .collect();
    for s in stopping {
        s.await.expect("no panic").expect("a clean shutdown");
    }
    for i in 0..SIZE {
        c.stop(i, false).await;
    }
    for i in 0..SIZE {
        c.wait_store_closed(i).await;
    }
    let restarted = Instant::now();
    // Each node's store is opened and the node started concurrently.
    let mut starting = Vec::new();
    for i in 0..SIZE {
        let slot = &c.slots[i];
        let (id, address, dir, members) = (
            slot.id.clone(),
            slot.address.clone(),
            slot.dir.clone(),
            c.members.clone(),
        );
        starting.push(tokio::spawn(async move {
            let began = Instant::now();
            loop {
                let gone = Arc::new(AtomicBool::new(false));
                let store = Store {
                    inner: FilePersistence::open(&dir).await.expect("the store opens"),
                    _gone: Gone(gone.clone()),
                };
                let recovery = store.inner.recovery().clone();
                let tcp = Arc::new(TcpTransport::new(tcp_options(&id)).expect("options"));
                let faulty = Arc::new(FaultyTransport::new(tcp.clone()));
                let started = Node::new(Options {
                    id: Some(id.clone()),
                    cluster: Some(CLUSTER.into()),
                    address: Some(address.clone()),
                    transport: Some(faulty.clone()),
                    persistence: Some(Arc::new(store)),
                    bootstrap: Bootstrap::Static(members.clone()),
                    tick: Duration::from_millis(5),
                    heartbeat_interval: Duration::from_millis(20),
                    election_timeout_min: Duration::from_millis(100),
                    election_timeout_max: Duration::from_millis(200),
                    snapshot_threshold: 200,
                    snapshot_trailing: 50,
                    command_timeout: Duration::from_secs(1),
                    apply_mode: apply_mode(i),
                    ..Options::default()
                })
                .await;
                match started {
                    Ok(node) => return (node, faulty, tcp, gone, recovery),
                    Err(NodeError::Transport(TransportError::AddressInUse(_)))
                        if began.elapsed() < Duration::from_secs(10) =>
                    {
                        sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => panic!("{id} cannot restart from its directory: {e}"),
                }
            }
        }));
    }
    for (i, s) in starting.into_iter().enumerate() {
        let (node, faulty, tcp, gone, recovery) = s.await.expect("no panic");
        assert!(
            !recovery.created,
            "{}: the store was created anew",
            c.slots[i].id
        );
        c.slots[i].faulty = Some(faulty);
        c.slots[i].tcp = Some(tcp);
        c.slots[i].gone = Some(gone);
        c.slots[i].starts += 1;
        c.live.lock().unwrap()[i] = Some(node);
    }
    let leader = settled_leader(&c, Duration::from_secs(5)).await;
    let election = restarted.elapsed();
    let after: Vec<u64> = c
        .nodes()
        .iter()
        .map(|n| n.metrics().snapshot_index)
        .collect();
    assert!(
        after.iter().any(|&s| s > 0),
        "no node restarted from a snapshot: snapshot indexes {after:?} (before the restart {before:?})"
    );
    // Data intact on every node.
    for node in c.nodes() {
        for (k, v) in &expected {
            let got = read_key(&node, k.as_bytes(), Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("{}: read {k}: {e}", node.id()));
            assert_eq!(
                got.as_deref(),
                Some(v.as_bytes()),
                "{}: {k} after the restart",
                node.id()
            );
        }
        let m = node.metrics();
        assert!(
            m.applied_index >= commit_before,
            "{}: applied {} < {commit_before}",
            node.id(),
            m.applied_index
        );
    }
    // And it takes writes again.
    c.nodes()[0]
        .command(
            KvCommand::Set {
                key: "after".into(),
                value: "restart".into(),
            }
            .encode(),
        )
        .await
        .expect("a write after the restart");
    let metrics: Vec<String> = c
        .nodes()
        .iter()
        .map(|n| {
            let m = n.metrics();
            format!(
                "{} {:?} term {} commit {} snapshot {}",
                n.id(),
                m.role,
                m.term,
                m.commit_index,
                m.snapshot_index
            )
        })
        .collect();
    for i in 0..SIZE {
        c.stop(i, false).await;
    }
    eprintln!("--- summary (full restart) ---");
    eprintln!(
        "{WRITES} writes on {} keys in {wrote:.1?}; commit index {commit_before}; snapshot indexes before {before:?}, after restart {after:?}; {} leads {election:.1?} after the restart; final {metrics:?}; total {:.1?}",
        expected.len(),
        c.slots[leader].id,
        t0.elapsed()
    );
}
