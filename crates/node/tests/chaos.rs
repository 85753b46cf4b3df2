//! The node runtime under simulated time and network: seeded runs of 3 or
//! 5 nodes on the in-memory transport, with partitions, message loss,
//! crashes (a crash loses whatever was not saved) and restarts, while
//! clients read, write and compare-and-set; every history must be
//! linearizable, and after healing the cluster must take writes again.
//! Every command carries an id, and the state machine counts how often
//! each id was applied: every command is applied at most once, every
//! acknowledged one exactly once, and every one that failed saying it took
//! no effect not at all.
//!
//! The machine reads the log's time (`StateMachine::uses_log_time`) and
//! sets itself deadlines, while every node's wall clock is skewed and
//! jumps forward: every node must see the same log time and deadline at
//! every log position, and the log's time must never go back.
//!
//! `CHAOS_SEEDS=N cargo test --release -p raft-node --test chaos` runs more
//! seeds; `CHAOS_SEED=S` one seed.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use bytes::{Buf, BufMut, BytesMut};
use raft_lincheck::{Input, Operation, Output};
use raft_node::example::{kv_get, KvCommand, KvOutput, KvStateMachine};
use raft_node::{
    ApplyMode, Bootstrap, MemoryNetwork, MemoryPersistence, Node, NodeError, Options, RestoreError,
    Role, StateMachine,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use tokio::time::{sleep, timeout, Instant};

const KEYS: u64 = 3;

/// The query of [`Counted`] that answers the counts of applications.
const COUNTS: &[u8] = b"\xFFcounts";

/// The key-value machine, with commands prefixed by an id (8 bytes): it
/// counts how often each id was applied (in its state and snapshots). It
/// reads the log's time: each command sets a deadline a little after the
/// log's time, reached through the time entries the leader proposes.
#[derive(Default)]
struct Counted {
    kv: KvStateMachine,
    counts: BTreeMap<u64, u32>,
    /// The log's time, and the pending deadline (in its snapshots too).
    now_ms: u64,
    deadline_ms: Option<u64>,
    /// The last time the node passed since it started or restored.
    passed_ms: u64,
    clock: ClockJournal,
}

/// The log time and deadline a log position left behind.
type LeftBehind = (u64, Option<u64>);

/// Which log time and deadline each log position left behind, as the
/// first node to apply it saw them; and every disagreement since.
#[derive(Default, Clone)]
struct ClockJournal {
    node: String,
    at: Arc<Mutex<BTreeMap<u64, LeftBehind>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Counted {
    fn record(&self, index: u64) {
        let seen = (self.now_ms, self.deadline_ms);
        let mut at = self.clock.at.lock().unwrap();
        match at.get(&index) {
            Some(first) if *first != seen => {
                self.clock.violations.lock().unwrap().push(format!(
                    "{} left log time and deadline {seen:?} at index {index}, another node {first:?}",
                    self.clock.node
                ));
            }
            Some(_) => {}
            None => {
                at.insert(index, seen);
            }
        }
    }
}

fn with_id(id: u64, command: Bytes) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + command.len());
    b.put_u64_le(id);
    b.put_slice(&command);
    b.freeze()
}

fn decode_counts(mut b: &[u8]) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    while b.remaining() >= 12 {
        counts.insert(b.get_u64_le(), b.get_u32_le());
    }
    counts
}

impl StateMachine for Counted {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        let (id, command) = command.split_at(8);
        let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
        *self.counts.entry(id).or_default() += 1;
        self.deadline_ms = Some(self.now_ms + 20 + id % 64);
        let out = self.kv.apply(index, command);
        self.record(index);
        out
    }

    fn uses_log_time(&self) -> bool {
        true
    }

    fn advance_time(&mut self, index: u64, time_ms: u64) {
        if time_ms <= self.passed_ms {
            self.clock.violations.lock().unwrap().push(format!(
                "{} was given log time {time_ms} at index {index} after {}",
                self.clock.node, self.passed_ms
            ));
        }
        self.passed_ms = time_ms;
        self.now_ms = self.now_ms.max(time_ms);
        if self.deadline_ms.is_some_and(|d| d <= self.now_ms) {
            self.deadline_ms = None;
        }
        self.record(index);
    }

    fn next_deadline_ms(&self) -> Option<u64> {
        self.deadline_ms
    }

    fn query(&self, query: &[u8]) -> Bytes {
        if query != COUNTS {
            return self.kv.query(query);
        }
        let mut b = BytesMut::new();
        for (id, count) in &self.counts {
            b.put_u64_le(*id);
            b.put_u32_le(*count);
        }
        b.freeze()
    }

    fn snapshot(&self) -> Bytes {
        let kv = self.kv.snapshot();
        let mut b = BytesMut::new();
        b.put_u64_le(self.now_ms);
        b.put_u64_le(self.deadline_ms.unwrap_or(0));
        b.put_u64_le(kv.len() as u64);
        b.put_slice(&kv);
        b.put_slice(&self.query(COUNTS));
        b.freeze()
    }

    fn restore(&mut self, snapshot: Bytes) -> Result<(), RestoreError> {
        self.passed_ms = 0;
        if snapshot.is_empty() {
            self.kv = KvStateMachine::default();
            self.counts.clear();
            (self.now_ms, self.deadline_ms) = (0, None);
            return Ok(());
        }
        let cut = || RestoreError::Truncated {
            what: "the key-value state".into(),
        };
        let mut b = &snapshot[..];
        self.now_ms = b.try_get_u64_le().map_err(|_| cut())?;
        self.deadline_ms = Some(b.try_get_u64_le().map_err(|_| cut())?).filter(|d| *d != 0);
        let len = b.try_get_u64_le().map_err(|_| cut())? as usize;
        if snapshot.len() < 24 + len {
            return Err(cut());
        }
        self.kv.restore(snapshot.slice(24..24 + len))?;
        self.counts = decode_counts(&snapshot[24 + len..]);
        Ok(())
    }
}

/// The ids of the commands sent, by what their callers were told.
#[derive(Default)]
struct Told {
    /// Acknowledged: applied exactly once.
    acknowledged: Vec<u64>,
    /// Failed, certainly not applied.
    not_applied: Vec<u64>,
    /// Failed with an unknown outcome: applied at most once.
    unknown: Vec<u64>,
}

struct Cluster {
    net: MemoryNetwork,
    members: Vec<(String, String)>,
    stores: Vec<MemoryPersistence>,
    nodes: Vec<Option<Node>>,
    seed: u64,
    /// Each node's wall clock: how far ahead of (or behind) the run's
    /// clock, in milliseconds (it survives restarts, and jumps forward).
    skews: Vec<Arc<AtomicI64>>,
    /// What the nodes' machines saw of the log's time.
    clock: ClockJournal,
}

/// The wall clock of the runs (any fixed start will do): the simulated
/// time since the runtime started, from a fixed date.
fn run_clock_ms(skew: &AtomicI64) -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    let ms = 1_700_000_000_000i64 + Instant::now().duration_since(start).as_millis() as i64;
    (ms + skew.load(Ordering::Relaxed)).max(0) as u64
}

impl Cluster {
    async fn start(seed: u64, size: usize) -> Cluster {
        let net = MemoryNetwork::with_seed(seed);
        net.set_timeout(Duration::from_millis(500));
        let members: Vec<(String, String)> = (1..=size)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect();
        let mut rng = SmallRng::seed_from_u64(seed ^ 0xC10C);
        let mut c = Cluster {
            net,
            members,
            stores: (0..size).map(|_| MemoryPersistence::new()).collect(),
            nodes: (0..size).map(|_| None).collect(),
            seed,
            skews: (0..size)
                .map(|_| Arc::new(AtomicI64::new(rng.random_range(-3_000..3_000))))
                .collect(),
            clock: ClockJournal::default(),
        };
        for i in 0..size {
            c.boot(i).await;
        }
        c
    }

    async fn boot(&mut self, i: usize) {
        let (id, addr) = self.members[i].clone();
        let node = Node::new(Options {
            id: Some(id),
            cluster: Some("chaos".into()),
            address: Some(addr.clone()),
            transport: Some(Arc::new(self.net.transport(&addr))),
            persistence: Some(Arc::new(self.stores[i].clone())),
            bootstrap: Bootstrap::Static(self.members.clone()),
            command_timeout: Duration::from_millis(800),
            snapshot_threshold: 50,
            snapshot_trailing: 10,
            seed: Some(self.seed ^ (i as u64) << 20),
            apply_mode: apply_mode(self.seed, i),
            state_machine: Some(Box::new(Counted {
                clock: ClockJournal {
                    node: format!("n{}", i + 1),
                    ..self.clock.clone()
                },
                ..Counted::default()
            })),
            wall_clock: {
                let skew = self.skews[i].clone();
                Arc::new(move || run_clock_ms(&skew))
            },
            ..Options::default()
        })
        .await
        .unwrap_or_else(|e| panic!("n{} cannot restart from its own storage: {e}", i + 1));
        self.nodes[i] = Some(node);
    }

    fn take(&mut self, i: usize) -> Option<Node> {
        self.nodes[i].take()
    }

    fn live(&self) -> Vec<Node> {
        self.nodes.iter().flatten().cloned().collect()
    }
}

/// Where node `i` of seed `seed`'s cluster applies: the two ways
/// alternate between the nodes, starting with the other one every other
/// pair of seeds, so that both lead, follow, snapshot and restart.
fn apply_mode(seed: u64, i: usize) -> ApplyMode {
    if (seed / 2 + i as u64).is_multiple_of(2) {
        ApplyMode::Task
    } else {
        ApplyMode::Inline
    }
}

type History = Rc<RefCell<Vec<Operation>>>;

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

/// One client: random operations against random live nodes, recorded.
async fn client(
    id: u64,
    cluster: Rc<RefCell<Cluster>>,
    history: History,
    told: Rc<RefCell<Told>>,
    start: Instant,
    until: Instant,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut next_value = id << 32;
    while Instant::now() < until {
        let live = cluster.borrow().live();
        if live.is_empty() {
            sleep(Duration::from_millis(20)).await;
            continue;
        }
        let node = live[rng.random_range(0..live.len())].clone();
        let k = rng.random_range(0..KEYS);
        let call = now_us(start);
        let command_id = (id << 32) | ((next_value & 0xFFFF_FFFF) + 1);
        let command = |cmd: KvCommand| with_id(command_id, cmd.encode());
        let (input, result) = match rng.random_range(0..10) {
            0..4 => {
                let r = node.read(kv_get(&key(k))).await;
                (Input::Read, r)
            }
            4..8 => {
                next_value += 1;
                let cmd = KvCommand::Set {
                    key: key(k),
                    value: value(next_value),
                };
                (Input::Write(next_value), node.command(command(cmd)).await)
            }
            _ => {
                next_value += 1;
                let expected = rng.random_bool(0.5).then(|| next_value - 1);
                let cmd = KvCommand::Cas {
                    key: key(k),
                    expected: expected.map(value),
                    new: value(next_value),
                };
                let input = Input::Cas {
                    expected,
                    new: next_value,
                };
                (input, node.command(command(cmd)).await)
            }
        };
        if input != Input::Read {
            let mut told = told.borrow_mut();
            match &result {
                Ok(_) => told.acknowledged.push(command_id),
                Err(e) if e.is_outcome_unknown() => told.unknown.push(command_id),
                Err(_) => told.not_applied.push(command_id),
            }
        }
        let ret = match result {
            Ok(out) => {
                let output = match (KvOutput::decode(&out), input) {
                    (Some(KvOutput::Value(v)), Input::Read) => Output::Read(v.as_ref().map(parse)),
                    (Some(KvOutput::Done), Input::Write(_)) => Output::Write,
                    (Some(KvOutput::Changed(ok)), Input::Cas { .. }) => Output::Cas(ok),
                    (other, _) => panic!("unexpected output {other:?} for {input:?}"),
                };
                Some((now_us(start), output))
            }
            // A read that failed had no effect, nor had a command whose
            // error says so: both are left out of the history (had such a
            // command taken effect, a read would see a value no operation
            // wrote, and the check fails). A command whose outcome is
            // unknown may or may not have taken effect: it stays open.
            Err(e) => {
                if std::env::var("CHAOS_DEBUG").is_ok() && !matches!(e, NodeError::Timeout { .. }) {
                    eprintln!("client {id} at {}: {e}", node.id());
                }
                if input == Input::Read {
                    continue;
                }
                if !e.is_outcome_unknown() {
                    continue;
                }
                None
            }
        };
        history.borrow_mut().push(Operation {
            client: id,
            key: k,
            input,
            call,
            ret,
        });
        sleep(Duration::from_millis(rng.random_range(0..20))).await;
    }
}

/// Random faults until `until`.
async fn faults(cluster: Rc<RefCell<Cluster>>, until: Instant, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xFA17);
    let size = cluster.borrow().members.len();
    while Instant::now() < until {
        sleep(Duration::from_millis(rng.random_range(50..400))).await;
        let net = cluster.borrow().net.clone();
        let name = |i: usize| format!("n{}", i + 1);
        let kind = rng.random_range(0..9);
        if std::env::var("CHAOS_DEBUG").is_ok() {
            let states: Vec<String> = cluster
                .borrow()
                .nodes
                .iter()
                .map(|n| match n {
                    Some(n) => {
                        let m = n.metrics();
                        format!(
                            "{}:{:?}/t{}/c{}/l{}",
                            n.id(),
                            m.role,
                            m.term,
                            m.commit_index,
                            m.last_index
                        )
                    }
                    None => "down".into(),
                })
                .collect();
            eprintln!("fault {kind} at {:?}: {states:?}", Instant::now());
        }
        match kind {
            0 => net.isolate(&name(rng.random_range(0..size))),
            1 => {
                let (a, b) = (rng.random_range(0..size), rng.random_range(0..size));
                if a != b {
                    net.partition(&name(a), &name(b));
                }
            }
            2 => {
                let _ = net.set_drop_rate(rng.random_range(0.0..0.3));
            }
            3 | 4 => net.heal(),
            8 => {
                // A node's clock jumps forward.
                let i = rng.random_range(0..size);
                let jump = rng.random_range(1..5_000);
                cluster.borrow().skews[i].fetch_add(jump, Ordering::Relaxed);
            }
            5 => {
                let i = rng.random_range(0..size);
                let node = cluster.borrow_mut().take(i);
                if let Some(n) = node {
                    n.crash().await;
                }
                sleep(Duration::from_millis(rng.random_range(10..500))).await;
                // Hold no borrow across the restart's awaits.
                let mut c = cluster.replace(placeholder());
                c.boot(i).await;
                cluster.replace(c);
            }
            _ => {
                // Crash whoever leads.
                let leader = cluster
                    .borrow()
                    .nodes
                    .iter()
                    .position(|n| n.as_ref().is_some_and(|n| n.role() == Role::Leader));
                if let Some(i) = leader {
                    let node = cluster.borrow_mut().take(i);
                    if let Some(n) = node {
                        n.crash().await;
                    }
                    let mut c = cluster.replace(placeholder());
                    c.boot(i).await;
                    cluster.replace(c);
                }
            }
        }
    }
}

fn placeholder() -> Cluster {
    Cluster {
        net: MemoryNetwork::new(),
        members: Vec::new(),
        stores: Vec::new(),
        nodes: Vec::new(),
        seed: 0,
        skews: Vec::new(),
        clock: ClockJournal::default(),
    }
}

async fn run_seed(seed: u64) -> (usize, Duration) {
    let size = if seed.is_multiple_of(2) { 3 } else { 5 };
    let cluster = Rc::new(RefCell::new(Cluster::start(seed, size).await));
    let history: History = Rc::new(RefCell::new(Vec::new()));
    // What each command's caller was told (the commands that failed
    // saying they took no effect ran, but are not in the history).
    let told = Rc::new(RefCell::new(Told::default()));
    let start = Instant::now();
    let until = start + Duration::from_secs(8);
    let mut tasks = Vec::new();
    let local = tokio::task::LocalSet::new();
    for c in 0..4u64 {
        let f = client(
            c,
            cluster.clone(),
            history.clone(),
            told.clone(),
            start,
            until,
            seed * 100 + c,
        );
        tasks.push(local.spawn_local(f));
    }
    tasks.push(local.spawn_local(faults(cluster.clone(), until, seed)));
    local
        .run_until(async {
            for t in tasks {
                t.await.expect("no task panics");
            }
        })
        .await;
    // Heal: every link up, every node running; a write must complete soon.
    let net = cluster.borrow().net.clone();
    net.heal();
    let _ = net.set_drop_rate(0.0);
    for i in 0..size {
        if cluster.borrow().nodes[i].is_none() {
            let mut c = cluster.replace(placeholder());
            c.boot(i).await;
            cluster.replace(c);
        }
    }
    let healed = Instant::now();
    let node = cluster.borrow().live()[0].clone();
    let cmd = KvCommand::Set {
        key: key(0),
        value: value(u64::MAX - 1),
    };
    let recovered = timeout(Duration::from_secs(10), async {
        loop {
            match node.command(with_id(u64::MAX, cmd.encode())).await {
                Ok(_) => return,
                Err(NodeError::Timeout { .. }) | Err(_) => sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert!(
        recovered.is_ok(),
        "seed {seed}: no write completed within 10 s after healing"
    );
    let recovery = healed.elapsed();
    let ops = history.borrow().clone();
    let completed = ops.iter().filter(|o| o.ret.is_some()).count();
    if std::env::var("CHAOS_DEBUG").is_ok() {
        let timed_out = ops.len() - completed;
        let n = cluster.borrow().live()[0].metrics();
        eprintln!("seed {seed}: {} ops, {completed} completed, {timed_out} open; term {} commit {} elections {} {:?}", ops.len(), n.term, n.commit_index, n.core.elections, n.role);
    }
    assert!(
        completed > 20,
        "seed {seed}: only {completed} operations completed"
    );
    if let Err(e) = raft_lincheck::check(&ops) {
        panic!(
            "seed {seed}: history of {} operations is not linearizable:\n{e}",
            ops.len()
        );
    }
    let clock = cluster.borrow().clock.clone();
    let violations = clock.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "seed {seed}: the nodes disagree on the log's time:\n{}",
        violations.join("\n")
    );
    let times: Vec<u64> = clock.at.lock().unwrap().values().map(|t| t.0).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "seed {seed}: the log's time went back"
    );
    let moves = times.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(
        moves > 10,
        "seed {seed}: the log's time moved only {moves} times in {} log positions",
        times.len()
    );
    if std::env::var("CHAOS_DEBUG").is_ok() {
        eprintln!(
            "seed {seed}: the log's time moved {moves} times over {} log positions, from {:?} to {:?}",
            times.len(),
            times.first(),
            times.last()
        );
    }
    let live = cluster.borrow().live();
    let told = std::mem::take(&mut *told.borrow_mut());
    for n in &live {
        let mut counts = None;
        for _ in 0..50 {
            match n.read(COUNTS).await {
                Ok(c) => {
                    counts = Some(decode_counts(&c));
                    break;
                }
                Err(_) => sleep(Duration::from_millis(100)).await,
            }
        }
        let counts =
            counts.unwrap_or_else(|| panic!("seed {seed}: no read of the counts on {}", n.id()));
        if let Some((id, count)) = counts.iter().find(|(_, c)| **c > 1) {
            panic!("seed {seed}: command {id:#x} was applied {count} times");
        }
        for id in &told.acknowledged {
            assert_eq!(
                counts.get(id),
                Some(&1),
                "seed {seed}: acknowledged command {id:#x} is not applied on {}",
                n.id()
            );
        }
        for id in &told.not_applied {
            assert_eq!(
                counts.get(id),
                None,
                "seed {seed}: command {id:#x} failed saying it took no effect, but it did"
            );
        }
        if std::env::var("CHAOS_DEBUG").is_ok() {
            let applied = told.unknown.iter().filter(|id| counts.contains_key(id));
            eprintln!(
                "seed {seed} on {}: {} acknowledged, {} not applied, {} unknown of which {} applied",
                n.id(),
                told.acknowledged.len(),
                told.not_applied.len(),
                told.unknown.len(),
                applied.count()
            );
        }
    }
    for n in live {
        n.shutdown().await.expect("clean shutdown");
    }
    (ops.len() + told.not_applied.len(), recovery)
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("CHAOS_SEED") {
        return vec![s.parse().expect("CHAOS_SEED is a number")];
    }
    let n = std::env::var("CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    (0..n).collect()
}

#[test]
fn histories_stay_linearizable_under_faults() {
    let mut total_ops = 0;
    let mut worst = Duration::ZERO;
    for seed in seeds() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let (ops, recovery) = rt.block_on(run_seed(seed));
        assert!(ops > 50, "seed {seed}: only {ops} operations ran");
        let _ = rt;
        total_ops += ops;
        worst = worst.max(recovery);
    }
    eprintln!("{total_ops} operations checked; slowest recovery after healing {worst:?}");
}
