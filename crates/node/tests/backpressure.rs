//! Apply back-pressure, end to end on the in-memory network in real time:
//! a state machine slower than the rate the cluster commits at slows the
//! proposers (on a leader) or leaves the leader's appends unanswered (on a
//! follower), so that the entries waiting for it stay bounded instead of
//! growing the node's memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_node::example::{kv_get, KvCommand, KvOutput, KvStateMachine};
use raft_node::{
    node_number, ApplyMode, Bootstrap, MemoryNetwork, MemoryPersistence, Node, Options, Role,
    StateMachine,
};
use tokio::time::Instant;

/// A key-value state machine that takes `delay` per command (a slow disk
/// or a costly computation behind it).
struct SlowMachine {
    inner: KvStateMachine,
    delay: Duration,
}

impl StateMachine for SlowMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        std::thread::sleep(self.delay);
        self.inner.apply(index, command)
    }
    fn query(&self, query: &[u8]) -> Bytes {
        self.inner.query(query)
    }
    fn snapshot(&self) -> Bytes {
        self.inner.snapshot()
    }
    fn restore(&mut self, snapshot: Bytes) -> Result<(), raft_node::RestoreError> {
        self.inner.restore(snapshot)
    }
}

const VALUE_BYTES: usize = 1024;

fn set(k: &str) -> Bytes {
    KvCommand::Set {
        key: Bytes::from(k.to_string()),
        value: Bytes::from(vec![b'v'; VALUE_BYTES]),
    }
    .encode()
}

async fn start(members: &[&str], tweak: impl Fn(&str, &mut Options)) -> (MemoryNetwork, Vec<Node>) {
    let net = MemoryNetwork::new();
    let list: Vec<(String, String)> = members
        .iter()
        .map(|m| (m.to_string(), m.to_string()))
        .collect();
    let mut nodes = Vec::new();
    for id in members {
        let mut o = Options {
            id: Some(id.to_string()),
            cluster: Some("backpressure".into()),
            transport: Some(Arc::new(net.transport(*id))),
            persistence: Some(Arc::new(MemoryPersistence::default())),
            bootstrap: Bootstrap::Static(list.clone()),
            seed: Some(node_number(id)),
            command_timeout: Duration::from_secs(60),
            // Slow state machines: applied on a task of their own.
            apply_mode: ApplyMode::Task,
            ..Options::default()
        };
        tweak(id, &mut o);
        nodes.push(Node::new(o).await.expect("start a node"));
    }
    (net, nodes)
}

async fn leader_of(nodes: &[Node]) -> Node {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = nodes.iter().find(|n| n.role() == Role::Leader) {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Samples `node`'s entries held beyond its applied index (in its log or
/// on their way to its state machine) every millisecond until `stop`;
/// returns the peak.
fn sample_unapplied(
    node: Node,
    stop: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<(u64, usize)> {
    tokio::spawn(async move {
        let (mut peak_entries, mut peak_backlog) = (0u64, 0usize);
        loop {
            let m = node.metrics();
            peak_entries = peak_entries.max(m.last_index.saturating_sub(m.applied_index));
            peak_backlog = peak_backlog.max(m.apply_backlog.entries + m.apply_backlog.admitted);
            tokio::select! {
                _ = stop.notified() => return (peak_entries, peak_backlog),
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_whose_state_machine_is_ten_times_slower_holds_a_bounded_backlog() {
    const MAX_ENTRIES: usize = 256;
    const WINDOW: usize = 4;
    const WRITES: usize = 12_000;
    const WRITERS: usize = 64;
    let (_net, nodes) = start(&["n1", "n2", "n3"], |id, o| {
        o.max_inflight_appends = WINDOW;
        // No snapshots: n3 must catch up by applying every entry (one sent
        // a snapshot skips them).
        o.snapshot_threshold = 0;
        if id == "n3" {
            // Applies at most ~4,000 commands a second.
            o.state_machine = Some(Box::new(SlowMachine {
                inner: KvStateMachine::default(),
                delay: Duration::from_micros(250),
            }));
            o.max_unapplied_entries = MAX_ENTRIES;
            o.max_unapplied_bytes = MAX_ENTRIES * VALUE_BYTES;
        } else {
            // Only n3 may fall behind: a slow n3 must not lead.
            o.election_timeout_min = Duration::from_millis(150);
            o.election_timeout_max = Duration::from_millis(300);
        }
    })
    .await;
    let mut leader = leader_of(&nodes).await;
    if leader.id() == "n3" {
        leader
            .transfer_leadership("n1")
            .await
            .expect("transfer to n1");
        tokio::time::sleep(Duration::from_millis(200)).await;
        leader = leader_of(&nodes).await;
    }
    assert_ne!(leader.id(), "n3");
    let n3 = nodes[2].clone();

    let stop = Arc::new(tokio::sync::Notify::new());
    let sampler = sample_unapplied(n3.clone(), stop.clone());
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let leader = leader.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..WRITES).step_by(WRITERS) {
                leader
                    .command(set(&format!("k{i}")))
                    .await
                    .unwrap_or_else(|e| panic!("write k{i}: {e}"));
            }
        }));
    }
    for w in writers {
        w.await.expect("a writer");
    }
    let write_time = started.elapsed();
    // The leader's applied index, not its commit index: the commit index
    // in the metrics is refreshed once per tick and may not yet cover the
    // last acknowledged writes; the applied index is current, and every
    // acknowledged write is applied on the leader.
    let target = leader.metrics().applied_index;
    let deadline = Instant::now() + Duration::from_secs(90);
    while n3.metrics().applied_index < target {
        assert!(
            Instant::now() < deadline,
            "n3 did not catch up: applied {} of {target}",
            n3.metrics().applied_index
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let catch_up = started.elapsed();
    stop.notify_one();
    let (peak_unapplied, peak_backlog) = sampler.await.expect("the sampler");
    let m = n3.metrics();
    println!(
        "{WRITES} writes of {VALUE_BYTES} B in {write_time:?} (n3 caught up after {catch_up:?}); \
         n3: peak entries beyond applied {peak_unapplied}, peak apply backlog {peak_backlog}, \
         appends deferred {}",
        m.apply_backlog.appends_deferred
    );
    // n3 must have held the leader back, not queued everything: what it
    // holds beyond its applied index stays within its limit plus what the
    // leader had in flight to it when the limit was reached (WINDOW appends
    // of at most 1 MiB).
    let per_append = (1 << 20) / VALUE_BYTES + 1;
    let bound = (MAX_ENTRIES + WINDOW * per_append) as u64;
    assert!(
        m.apply_backlog.appends_deferred > 0,
        "n3 never deferred an append: was its state machine slower than the cluster?"
    );
    assert!(
        peak_unapplied <= bound,
        "n3 held {peak_unapplied} entries beyond its applied index (bound {bound})"
    );
    assert!(
        (WRITES as u64) > 2 * bound,
        "the test writes too little to tell"
    );
    // And it has every write.
    for i in [0, WRITES / 2, WRITES - 1] {
        let got = KvOutput::decode(
            &n3.read_local(kv_get(format!("k{i}").as_bytes()))
                .await
                .unwrap(),
        );
        assert!(
            matches!(got, Some(KvOutput::Value(Some(ref v))) if v.len() == VALUE_BYTES),
            "n3 lacks k{i}: {got:?}"
        );
    }
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_state_machine_is_slow_makes_its_proposers_wait() {
    const MAX_ENTRIES: usize = 64;
    const COMMANDS: usize = 2_000;
    let (_net, nodes) = start(&["solo"], |_, o| {
        o.bootstrap = Bootstrap::Single;
        o.state_machine = Some(Box::new(SlowMachine {
            inner: KvStateMachine::default(),
            delay: Duration::from_micros(250),
        }));
        o.max_unapplied_entries = MAX_ENTRIES;
    })
    .await;
    let leader = leader_of(&nodes).await;
    let stop = Arc::new(tokio::sync::Notify::new());
    let sampler = sample_unapplied(leader.clone(), stop.clone());
    // Open loop: every command at once, as from many clients.
    let mut calls = Vec::new();
    for i in 0..COMMANDS {
        let leader = leader.clone();
        calls.push(tokio::spawn(async move {
            leader.command(set(&format!("k{i}"))).await
        }));
    }
    for c in calls {
        c.await.expect("a call").expect("a command");
    }
    stop.notify_one();
    let (peak_unapplied, peak_backlog) = sampler.await.expect("the sampler");
    let m = leader.metrics();
    println!(
        "{COMMANDS} commands at once: peak entries beyond applied {peak_unapplied}, peak backlog \
         {peak_backlog}, proposals that waited {}",
        m.apply_backlog.proposals_waited
    );
    assert!(m.apply_backlog.proposals_waited > 0, "nobody waited");
    assert!(
        peak_unapplied <= 2 * MAX_ENTRIES as u64,
        "the leader held {peak_unapplied} entries beyond its applied index (limit {MAX_ENTRIES})"
    );
    assert_eq!(m.apply_backlog.admitted, 0);
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}
