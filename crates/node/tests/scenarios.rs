//! The seed lineage's (node-raft / skiff) integration scenarios, end to end
//! on the in-memory network and persistence, in simulated time.
//!
//! Every test tells one story: a cluster is started, something happens to
//! it (a write, a join, a removal, a crash, a partition...), and the test
//! checks what every node then says about itself, its state machine and its
//! storage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_core::EntryPayload;
use raft_node::example::{kv_get, KvCommand, KvOutput};
use raft_node::{
    node_number, Bootstrap, Event, Events, MemberRole, MemoryNetwork, MemoryPersistence, Node,
    NodeError, Options, Persistence, Role,
};
use tokio::time::{sleep, Instant};

/// The cluster every scenario runs, unless it says otherwise.
const CLUSTER: &str = "alpha";

/// How long a scenario waits for something that should happen before it
/// says it did not (simulated time).
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The harness.
// ---------------------------------------------------------------------------

type Tweak = Box<dyn Fn(&str, &mut Options)>;

/// A cluster of nodes `n1..nN` on one in-memory network, each with its own
/// in-memory store (kept here, so that a node can be restarted from it).
struct Cluster {
    net: MemoryNetwork,
    members: Vec<(String, String)>,
    stores: BTreeMap<String, MemoryPersistence>,
    nodes: BTreeMap<String, Node>,
    tweak: Tweak,
}

impl Cluster {
    /// Starts `n` nodes with the same static membership.
    async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, |_, _| {}).await
    }

    /// Starts `n` nodes; `tweak` adjusts each node's options (it is applied
    /// again to nodes added or restarted later).
    async fn start_with(n: usize, tweak: impl Fn(&str, &mut Options) + 'static) -> Cluster {
        let members = (1..=n)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect();
        let mut cluster = Cluster {
            net: MemoryNetwork::new(),
            members,
            stores: BTreeMap::new(),
            nodes: BTreeMap::new(),
            tweak: Box::new(tweak),
        };
        for (id, _) in cluster.members.clone() {
            cluster
                .spawn(&id, Bootstrap::Static(cluster.members.clone()))
                .await;
        }
        cluster
    }

    fn ids(&self) -> Vec<String> {
        self.members.iter().map(|(id, _)| id.clone()).collect()
    }

    /// The options node `id` starts (or restarts) with: its own store, a
    /// transport named after it, a seed of its own.
    fn options(&mut self, id: &str, bootstrap: Bootstrap) -> Options {
        let store = self.stores.entry(id.to_string()).or_default().clone();
        let mut options = Options {
            id: Some(id.to_string()),
            cluster: Some(CLUSTER.to_string()),
            transport: Some(Arc::new(self.net.transport(id))),
            persistence: Some(Arc::new(store)),
            bootstrap,
            seed: Some(node_number(id)),
            ..Options::default()
        };
        (self.tweak)(id, &mut options);
        options
    }

    /// Starts node `id` (fresh, or from its store if it ran before).
    async fn spawn(&mut self, id: &str, bootstrap: Bootstrap) -> Node {
        let options = self.options(id, bootstrap);
        let node = Node::new(options)
            .await
            .unwrap_or_else(|e| panic!("starting {id}: {e}"));
        assert_eq!(node.id(), id);
        self.nodes.insert(id.to_string(), node.clone());
        node
    }

    /// Restarts node `id` from its store, at the same address.
    async fn restart(&mut self, id: &str) -> Node {
        assert!(self.stores.contains_key(id), "{id} never ran");
        self.spawn(id, Bootstrap::Static(self.members.clone()))
            .await
    }

    /// Stops node `id` gracefully (its store survives).
    async fn kill(&mut self, id: &str) {
        let node = self.nodes.remove(id).expect("a running node");
        node.shutdown().await.expect("shutdown");
    }

    async fn kill_all(&mut self) {
        for id in self.nodes.keys().cloned().collect::<Vec<_>>() {
            self.kill(&id).await;
        }
    }

    fn node(&self, id: &str) -> Node {
        self.nodes
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} is not running"))
    }

    fn store(&self, id: &str) -> MemoryPersistence {
        self.stores[id].clone()
    }

    /// The running nodes.
    fn live(&self) -> Vec<Node> {
        self.nodes.values().cloned().collect()
    }

    /// Waits until the running nodes agree on one leader.
    async fn leader(&self) -> Node {
        agreed_leader(&self.live()).await
    }
}

/// Waits until exactly one of `nodes` leads and all of them name it, in the
/// same term; returns it.
async fn agreed_leader(nodes: &[Node]) -> Node {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let leaders: Vec<&Node> = nodes.iter().filter(|n| n.role() == Role::Leader).collect();
        if let [leader] = leaders[..] {
            let agreed = nodes.iter().all(|n| {
                n.leader().is_some_and(|l| l.id == leader.id()) && n.term() == leader.term()
            });
            if agreed {
                return leader.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader: {}",
            describe(nodes)
        );
        sleep(Duration::from_millis(10)).await;
    }
}

/// One line per node: role, term, leader, indexes.
fn describe(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            let m = n.metrics();
            format!(
                "{}: {:?} term {} leader {:?} commit {} applied {} snapshot {}",
                n.id(),
                m.role,
                m.term,
                m.leader.map(|l| l.id),
                m.commit_index,
                m.applied_index,
                m.snapshot_index
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Polls `check` until it holds, or fails saying `what` did not happen.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {PATIENCE:?}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

/// Reads events until one matches `pred`; fails if none does in time.
async fn expect_event(events: &mut Events, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("the node went away before {what}; saw {seen:?}"),
            Err(_) => panic!("no {what} within {PATIENCE:?}; saw {seen:?}"),
        }
    }
}

/// Every event already queued on `events`, without waiting.
async fn drain(events: &mut Events) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, events.next()).await {
        out.push(e);
    }
    out
}

fn set(k: &str, v: &str) -> Bytes {
    KvCommand::Set {
        key: Bytes::copy_from_slice(k.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
    .encode()
}

fn value_of(out: &Bytes) -> Option<String> {
    match KvOutput::decode(out) {
        Some(KvOutput::Value(v)) => v.map(|v| String::from_utf8(v.to_vec()).expect("utf-8")),
        other => panic!("unexpected read output {other:?}"),
    }
}

/// A linearizable read of `k` on `node`.
async fn get(node: &Node, k: &str) -> Option<String> {
    let out = node
        .read(kv_get(k.as_bytes()))
        .await
        .unwrap_or_else(|e| panic!("read {k} on {}: {e}", node.id()));
    value_of(&out)
}

/// A local (possibly stale) read of `k` on `node`.
async fn get_local(node: &Node, k: &str) -> Option<String> {
    let out = node
        .read_local(kv_get(k.as_bytes()))
        .await
        .unwrap_or_else(|e| panic!("local read {k} on {}: {e}", node.id()));
    value_of(&out)
}

/// Writes `k = v` through `node` and checks the state machine's answer.
async fn write(node: &Node, k: &str, v: &str) {
    let out = node
        .command(set(k, v))
        .await
        .unwrap_or_else(|e| panic!("set {k} via {}: {e}", node.id()));
    assert_eq!(
        KvOutput::decode(&out),
        Some(KvOutput::Done),
        "set {k} via {}",
        node.id()
    );
}

/// Writes `prefix0..prefixN` (value `v<i>`) through `node`.
async fn write_many(node: &Node, prefix: &str, n: usize) {
    for i in 0..n {
        write(node, &format!("{prefix}{i}"), &format!("v{i}")).await;
    }
}

/// Waits until `node`'s own state machine holds `prefix0..prefixN`.
async fn wait_local(node: &Node, prefix: &str, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    for i in 0..n {
        let k = format!("{prefix}{i}");
        while get_local(node, &k).await.as_deref() != Some(&format!("v{i}")) {
            assert!(
                Instant::now() < deadline,
                "{} never applied {k}: {}",
                node.id(),
                describe(std::slice::from_ref(node))
            );
            sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The ids of the members `node` sees besides itself, with their roles.
async fn peers(node: &Node) -> BTreeMap<String, MemberRole> {
    node.peers()
        .await
        .unwrap_or_else(|e| panic!("peers of {}: {e}", node.id()))
        .into_iter()
        .map(|p| (p.id, p.role))
        .collect()
}

/// The `Set` commands a store holds in its log, with their index and term.
fn stored_sets(store: &MemoryPersistence) -> Vec<(u64, u64, String, String)> {
    let state = store.stored().expect("the store holds a state");
    state
        .entries
        .iter()
        .filter_map(|e| match &e.payload {
            // `Node::command` registers a client session (an entry of 9
            // bytes, tag 0xE1), and stores each command behind a 33-byte
            // header (tag 0xE2).
            EntryPayload::Command(data) if data.first() == Some(&0xE1) => None,
            EntryPayload::Command(data) => match KvCommand::decode(match data.first() {
                Some(0xE2) => &data[33..],
                _ => data,
            }) {
                Some(KvCommand::Set { key, value }) => Some((
                    e.index,
                    e.term,
                    String::from_utf8(key.to_vec()).unwrap(),
                    String::from_utf8(value.to_vec()).unwrap(),
                )),
                other => panic!("unexpected command {other:?}"),
            },
            _ => None,
        })
        .collect()
}

/// Asserts that `err` is one of the "no majority" errors and says so.
fn assert_no_majority_error(err: &NodeError) {
    let text = err.to_string();
    match err {
        NodeError::Timeout { what, after } => {
            assert_eq!(*what, "command");
            assert!(text.contains("did not finish within"), "{text}");
            assert!(text.contains(&format!("{after:?}")), "{text}");
        }
        NodeError::LeadershipLost => {
            assert!(text.contains("leadership lost"), "{text}");
            assert!(text.contains("no majority reachable"), "{text}");
        }
        NodeError::NotLeader { leader: None } => {
            assert!(text.contains("no leader is known"), "{text}");
        }
        other => panic!("expected Timeout, LeadershipLost or NotLeader, got {other:?} ({other})"),
    }
}

// ---------------------------------------------------------------------------
// 1. Election.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn three_nodes_elect_exactly_one_leader_that_all_agree_on() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let nodes = cluster.live();

    let leaders = nodes.iter().filter(|n| n.role() == Role::Leader).count();
    assert_eq!(leaders, 1, "{}", describe(&nodes));
    for n in &nodes {
        assert_eq!(
            n.leader().map(|l| l.id),
            Some(leader.id().to_string()),
            "{}",
            n.id()
        );
        assert_eq!(
            n.leader().map(|l| l.address),
            Some(leader.address().to_string())
        );
        assert_eq!(n.term(), leader.term(), "{}", describe(&nodes));
        if n.id() != leader.id() {
            assert_eq!(n.role(), Role::Follower, "{}", n.id());
        }
    }
    assert!(leader.term() >= 1);

    // The leadership is stable: a quiet, healthy cluster holds no election.
    let term = leader.term();
    sleep(Duration::from_secs(5)).await;
    let again = cluster.leader().await;
    assert_eq!(again.id(), leader.id(), "{}", describe(&nodes));
    assert_eq!(again.term(), term, "a healthy cluster changed term");
}

// ---------------------------------------------------------------------------
// 2. Commands.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn commands_through_any_node_are_persisted_and_applied_everywhere() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let nodes = cluster.live();
    assert!(nodes.iter().any(|n| n.id() != leader.id()));

    // 30 commands, round robin: two in three go through a follower, which
    // forwards them to the leader.
    const N: usize = 30;
    for i in 0..N {
        write(&nodes[i % nodes.len()], &format!("k{i}"), &format!("v{i}")).await;
    }

    // Linearizable reads: every node answers with every write.
    for n in &nodes {
        for i in 0..N {
            assert_eq!(
                get(n, &format!("k{i}")).await,
                Some(format!("v{i}")),
                "read k{i} on {}",
                n.id()
            );
        }
        assert_eq!(get(n, "never-written").await, None);
    }
    // Local reads, once the followers have applied.
    sleep(Duration::from_millis(500)).await;
    for n in &nodes {
        for i in 0..N {
            assert_eq!(
                get_local(n, &format!("k{i}")).await,
                Some(format!("v{i}")),
                "local k{i} on {}",
                n.id()
            );
        }
    }
    let commits: Vec<u64> = nodes.iter().map(|n| n.metrics().commit_index).collect();
    let applied: Vec<u64> = nodes.iter().map(|n| n.metrics().applied_index).collect();
    assert!(
        commits.iter().all(|&c| c == commits[0]),
        "{}",
        describe(&nodes)
    );
    assert_eq!(commits, applied, "{}", describe(&nodes));

    // Every store holds the 30 commands, in the order they were written, at
    // the same indexes and terms, and its commit index covers them.
    let expected: Vec<(String, String)> =
        (0..N).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    let reference = stored_sets(&cluster.store(leader.id()));
    for id in cluster.ids() {
        let sets = stored_sets(&cluster.store(&id));
        let pairs: Vec<(String, String)> = sets
            .iter()
            .map(|(_, _, k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(pairs, expected, "the log stored by {id}");
        assert_eq!(sets, reference, "{id}'s log differs from the leader's");
        let state = cluster
            .store(&id)
            .load()
            .await
            .unwrap()
            .expect("a stored state");
        assert_eq!(state.identity.id, id);
        assert_eq!(state.identity.cluster, CLUSTER);
        let last = sets.last().unwrap().0;
        assert!(
            state.hard_state.commit >= last,
            "{id} stored commit {} < {last}",
            state.hard_state.commit
        );
    }
}

// ---------------------------------------------------------------------------
// 3. Joining a running cluster.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_node_added_while_running_catches_up_by_log() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    write_many(&leader, "k", 10).await;

    let n4 = cluster.spawn("n4", Bootstrap::Join).await;
    assert_eq!(n4.cluster(), CLUSTER);
    assert!(
        peers(&n4).await.is_empty(),
        "a joining node starts with no membership"
    );
    let mut n4_events = n4.subscribe();

    leader.join("n4").await.expect("join n4");

    // A voter in the leader's view...
    let seen = peers(&leader).await;
    assert_eq!(seen.get("n4"), Some(&MemberRole::Voter), "{seen:?}");
    assert_eq!(seen.len(), 3);
    // ...and, once told, in its own and every other member's.
    for n in cluster.live() {
        let id = n.id().to_string();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let p = peers(&n).await;
            let expect_n4 = id == "n4" || p.get("n4") == Some(&MemberRole::Voter);
            if expect_n4 && p.len() == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "{id} sees {p:?}");
            sleep(Duration::from_millis(10)).await;
        }
    }

    // It has the data, by log: no snapshot was needed.
    wait_local(&n4, "k", 10).await;
    for i in 0..10 {
        assert_eq!(get(&n4, &format!("k{i}")).await, Some(format!("v{i}")));
    }
    assert_eq!(n4.metrics().snapshot_index, 0);
    assert!(cluster.store("n4").stored().unwrap().snapshot.is_none());
    let events = drain(&mut n4_events).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::SnapshotInstalled { .. })),
        "{events:?}"
    );

    // It follows the leader and takes part in new writes.
    write(&n4, "after", "join").await;
    for n in cluster.live() {
        assert_eq!(
            get(&n, "after").await.as_deref(),
            Some("join"),
            "{}",
            n.id()
        );
    }
    assert_eq!(n4.leader().map(|l| l.id), Some(leader.id().to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_node_added_after_compaction_catches_up_by_snapshot() {
    let mut cluster = Cluster::start_with(3, |_, o| {
        o.snapshot_threshold = 20;
        o.snapshot_trailing = 5;
    })
    .await;
    let leader = cluster.leader().await;
    write_many(&leader, "k", 70).await;

    // The leader compacted its log: its store no longer starts at index 1.
    eventually("the leader snapshots", || {
        leader.metrics().snapshot_index > 0
    })
    .await;
    let stored = cluster.store(leader.id()).stored().unwrap();
    let snapshot = stored
        .snapshot
        .as_ref()
        .expect("the leader stored a snapshot");
    assert!(
        snapshot.meta.index >= 20,
        "snapshot at {}",
        snapshot.meta.index
    );
    assert!(
        stored.entries.first().is_none_or(|e| e.index > 1),
        "the log was not compacted"
    );

    let n4 = cluster.spawn("n4", Bootstrap::Join).await;
    let mut n4_events = n4.subscribe();
    // Joined through a follower: the call is forwarded to the leader.
    let follower = cluster
        .live()
        .into_iter()
        .find(|n| n.id() != leader.id() && n.id() != "n4")
        .unwrap();
    follower
        .join("n4")
        .await
        .expect("join n4 through a follower");

    let installed = expect_event(&mut n4_events, "SnapshotInstalled on n4", |e| {
        matches!(e, Event::SnapshotInstalled { .. })
    })
    .await;
    let Event::SnapshotInstalled { index } = installed else {
        unreachable!()
    };
    assert!(index >= 20, "installed a snapshot at {index}");
    eventually("n4 reports a snapshot", || n4.metrics().snapshot_index > 0).await;
    assert!(
        cluster.store("n4").stored().unwrap().snapshot.is_some(),
        "n4 stored the snapshot"
    );

    wait_local(&n4, "k", 70).await;
    assert_eq!(peers(&leader).await.get("n4"), Some(&MemberRole::Voter));
    write(&n4, "after", "snapshot").await;
    assert_eq!(get(&n4, "after").await.as_deref(), Some("snapshot"));
}

// ---------------------------------------------------------------------------
// 4-6. Removing members.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_removed_follower_leaves_and_the_others_keep_writing() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let nodes = cluster.live();
    let followers: Vec<&Node> = nodes.iter().filter(|n| n.id() != leader.id()).collect();
    let (gone, stays) = (followers[0], followers[1]);
    write(&leader, "before", "1").await;

    let mut leader_events = leader.subscribe();
    let mut stays_events = stays.subscribe();
    // Asked of a follower: forwarded to the leader.
    stays.leave(gone.id()).await.expect("leave");

    expect_event(&mut leader_events, "Left on the leader", |e| {
        *e == Event::Left {
            id: gone.id().to_string(),
        }
    })
    .await;
    expect_event(&mut stays_events, "Left on the other follower", |e| {
        *e == Event::Left {
            id: gone.id().to_string(),
        }
    })
    .await;
    let p = peers(&leader).await;
    assert!(!p.contains_key(gone.id()), "{p:?}");
    assert_eq!(p.len(), 1);
    let p = peers(stays).await;
    assert!(!p.contains_key(gone.id()), "{p:?}");

    // The two that stay write, through either of them; the removed one no
    // longer gets the log.
    let term = leader.term();
    write(&leader, "after", "1").await;
    write(stays, "after2", "2").await;
    for n in [&leader, stays] {
        assert_eq!(get(n, "after").await.as_deref(), Some("1"));
        assert_eq!(get(n, "after2").await.as_deref(), Some("2"));
    }
    sleep(Duration::from_secs(3)).await;
    // The removed node knows it: it serves nothing, not even local reads;
    // and it no longer gets the log.
    assert!(gone.removed().is_some_and(|r| r.index.is_some()));
    assert!(matches!(
        gone.read_local(kv_get(b"before")).await,
        Err(NodeError::Removed(_))
    ));
    assert!(
        gone.metrics().last_index < leader.metrics().last_index,
        "the removed node still gets the log"
    );

    // The removed node does not disrupt the cluster.
    let still = agreed_leader(&[leader.clone(), stays.clone()]).await;
    assert_eq!(still.id(), leader.id());
    assert_eq!(still.term(), term, "the removed node forced an election");
    write(&leader, "later", "3").await;
}

#[tokio::test(start_paused = true)]
async fn when_the_leader_is_removed_the_rest_elect_a_new_one_and_keep_writing() {
    let cluster = Cluster::start(3).await;
    let old = cluster.leader().await;
    write(&old, "before", "1").await;
    let rest: Vec<Node> = cluster
        .live()
        .into_iter()
        .filter(|n| n.id() != old.id())
        .collect();
    let mut events = rest[0].subscribe();

    let left = old.leave(old.id()).await;

    expect_event(&mut events, "Left of the old leader", |e| {
        *e == Event::Left {
            id: old.id().to_string(),
        }
    })
    .await;
    let new = agreed_leader(&rest).await;
    assert_ne!(new.id(), old.id());
    assert!(new.term() > 0);
    eventually("the old leader steps down", || old.role() != Role::Leader).await;
    let p = peers(&new).await;
    assert!(!p.contains_key(old.id()), "{p:?}");
    assert_eq!(p.len(), 1);

    for n in &rest {
        write(n, &format!("via-{}", n.id()), "x").await;
    }
    for n in &rest {
        for m in &rest {
            assert_eq!(
                get(n, &format!("via-{}", m.id())).await.as_deref(),
                Some("x")
            );
        }
        assert_eq!(get(n, "before").await.as_deref(), Some("1"));
    }
    // The removal committed (every node applied it), so the caller must be
    // told it succeeded, not that its outcome is unknown.
    assert_eq!(left, Ok(()), "leave of the leader itself, which committed");
}

#[tokio::test(start_paused = true)]
async fn removing_all_but_one_leaves_that_one_leading_alone() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let mut events = leader.subscribe();
    let followers: Vec<Node> = cluster
        .live()
        .into_iter()
        .filter(|n| n.id() != leader.id())
        .collect();
    for f in &followers {
        leader
            .leave(f.id())
            .await
            .unwrap_or_else(|e| panic!("leave {}: {e}", f.id()));
        expect_event(&mut events, "Left", |e| {
            *e == Event::Left {
                id: f.id().to_string(),
            }
        })
        .await;
    }
    assert!(peers(&leader).await.is_empty());

    // Alone, it is a majority of one: it stays leader and writes.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        leader.role(),
        Role::Leader,
        "{}",
        describe(std::slice::from_ref(&leader))
    );
    write(&leader, "alone", "yes").await;
    assert_eq!(get(&leader, "alone").await.as_deref(), Some("yes"));
    for f in &followers {
        assert_ne!(f.role(), Role::Leader, "{}", f.id());
        assert!(
            f.removed().is_some(),
            "{} does not know it was removed",
            f.id()
        );
        assert!(f.metrics().last_index < leader.metrics().last_index);
    }
}

// ---------------------------------------------------------------------------
// 7-8. Losing the majority.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_command_fails_clearly_when_no_majority_is_reachable() {
    let cluster = Cluster::start_with(3, |_, o| o.command_timeout = Duration::from_secs(1)).await;
    let leader = cluster.leader().await;
    write(&leader, "before", "1").await;
    let followers: Vec<Node> = cluster
        .live()
        .into_iter()
        .filter(|n| n.id() != leader.id())
        .collect();
    for f in &followers {
        cluster.net.isolate(f.address());
    }

    let started = Instant::now();
    let err = leader
        .command(set("lost", "1"))
        .await
        .expect_err("no majority: the command must fail");
    assert_no_majority_error(&err);
    assert!(
        started.elapsed() <= Duration::from_millis(1100),
        "took {:?}",
        started.elapsed()
    );

    // Check-quorum: the cut-off leader steps down; from then on commands are
    // refused at once, saying no leader is known.
    eventually("the leader steps down", || leader.role() != Role::Leader).await;
    let started = Instant::now();
    let err = leader
        .command(set("lost", "2"))
        .await
        .expect_err("still no majority");
    assert!(
        matches!(err, NodeError::NotLeader { leader: None }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no leader is known"), "{err}");
    // The node waits for a leader to appear, up to `command_timeout`,
    // before giving up.
    assert!(
        started.elapsed() <= Duration::from_millis(1100),
        "refused only after {:?}",
        started.elapsed()
    );
    for f in &followers {
        let err = f
            .command(set("lost", "3"))
            .await
            .expect_err("an isolated follower cannot write");
        assert_no_majority_error(&err);
    }

    // Healed: a leader is elected again and writes go through.
    cluster.net.heal();
    let leader = cluster.leader().await;
    write(&leader, "after", "1").await;
    for n in cluster.live() {
        assert_eq!(get(&n, "after").await.as_deref(), Some("1"));
        assert_eq!(get(&n, "before").await.as_deref(), Some("1"));
    }
}

#[tokio::test(start_paused = true)]
async fn five_nodes_write_with_two_down_stop_with_three_down_and_resume_when_one_returns() {
    let mut cluster =
        Cluster::start_with(5, |_, o| o.command_timeout = Duration::from_secs(1)).await;
    let leader = cluster.leader().await;
    write(&leader, "all", "5").await;
    let followers: Vec<String> = cluster
        .ids()
        .into_iter()
        .filter(|id| id != leader.id())
        .collect();

    // Two down: three of five are a majority.
    cluster.kill(&followers[0]).await;
    cluster.kill(&followers[1]).await;
    write(&leader, "k", "3-of-5").await;
    write(&cluster.node(&followers[2]), "k2", "3-of-5").await;
    assert_eq!(
        get(&cluster.node(&followers[3]), "k").await.as_deref(),
        Some("3-of-5")
    );

    // Three down: no majority; commands fail.
    cluster.kill(&followers[2]).await;
    let err = leader
        .command(set("k3", "2-of-5"))
        .await
        .expect_err("2 of 5 cannot write");
    assert_no_majority_error(&err);
    sleep(Duration::from_secs(2)).await;
    for n in cluster.live() {
        assert_ne!(
            n.role(),
            Role::Leader,
            "{} leads without a majority",
            n.id()
        );
        let err = n
            .command(set("k4", "2-of-5"))
            .await
            .expect_err("2 of 5 cannot write");
        assert_no_majority_error(&err);
    }

    // One comes back from its store: a majority again.
    let back = cluster.restart(&followers[0]).await;
    let leader = cluster.leader().await;
    write(&leader, "k5", "3-of-5-again").await;
    write(&back, "k6", "via-restarted").await;
    // The restarted node caught up with what was written while it was down.
    for (k, v) in [
        ("all", "5"),
        ("k", "3-of-5"),
        ("k2", "3-of-5"),
        ("k5", "3-of-5-again"),
        ("k6", "via-restarted"),
    ] {
        assert_eq!(
            get(&back, k).await.as_deref(),
            Some(v),
            "{k} on the restarted node"
        );
    }
}

// ---------------------------------------------------------------------------
// 9. Weakened nodes.
// ---------------------------------------------------------------------------

/// `n1` times out first (it becomes the first leader), `n2` next, `n3` last.
/// Check-quorum is off: with it, a follower ignores candidates for its own
/// minimum election timeout after hearing from the leader (its lease), so
/// slow `n3` would refuse fast `n2` and win anyway, and the weakening would
/// prove nothing.
fn staggered_timeouts(id: &str, o: &mut Options) {
    o.check_quorum = false;
    let (min, max) = match id {
        "n1" => (100, 110),
        "n2" => (300, 320),
        _ => (1000, 1100),
    };
    o.election_timeout_min = Duration::from_millis(min);
    o.election_timeout_max = Duration::from_millis(max);
}

/// Starts the staggered cluster, makes sure `n1` leads, writes once.
async fn staggered_cluster_led_by_n1() -> Cluster {
    let cluster = Cluster::start_with(3, staggered_timeouts).await;
    let leader = cluster.leader().await;
    if leader.id() != "n1" {
        leader
            .transfer_leadership("n1")
            .await
            .expect("hand over to n1");
    }
    assert_eq!(cluster.leader().await.id(), "n1");
    write(&cluster.node("n1"), "k", "v").await;
    cluster
}

#[tokio::test(start_paused = true)]
async fn without_weakening_the_fastest_follower_wins_the_next_election() {
    // The control for the next scenario: n2 times out long before n3.
    let mut cluster = staggered_cluster_led_by_n1().await;
    cluster.kill("n1").await;
    let leader = cluster.leader().await;
    assert_eq!(leader.id(), "n2", "{}", describe(&cluster.live()));
}

#[tokio::test(start_paused = true)]
async fn a_weakened_node_is_not_elected() {
    let mut cluster = staggered_cluster_led_by_n1().await;
    let n2 = cluster.node("n2");
    // Everyone but n3 is weakened, for longer than the test.
    for id in ["n1", "n2"] {
        cluster
            .node(id)
            .weaken(Duration::from_secs(600))
            .await
            .unwrap();
    }
    let mut n2_events = n2.subscribe();
    cluster.kill("n1").await;

    let leader = cluster.leader().await;
    assert_eq!(leader.id(), "n3", "{}", describe(&cluster.live()));
    // n2 never even tried, but it voted (n3 needed its vote).
    let events = drain(&mut n2_events).await;
    let tried: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::RoleChanged { role, .. } if *role != Role::Follower))
        .collect();
    assert!(tried.is_empty(), "the weakened node campaigned: {tried:?}");
    assert_eq!(n2.leader().map(|l| l.id).as_deref(), Some("n3"));
    write(&n2, "after", "weakened").await;
    assert_eq!(get(&leader, "after").await.as_deref(), Some("weakened"));
}

// ---------------------------------------------------------------------------
// 10. Leadership transfer.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn leadership_transfer_makes_the_target_leader() {
    let cluster = Cluster::start(3).await;
    let old = cluster.leader().await;
    write(&old, "k", "1").await;
    let target = cluster
        .live()
        .into_iter()
        .find(|n| n.id() != old.id())
        .unwrap();
    let other = cluster
        .live()
        .into_iter()
        .find(|n| n.id() != old.id() && n.id() != target.id())
        .unwrap();
    let term = old.term();

    // Only the leader hands over; a follower says who leads.
    let err = other
        .transfer_leadership(target.id())
        .await
        .expect_err("a follower cannot transfer");
    match &err {
        NodeError::NotLeader { leader: Some(l) } => assert_eq!(l.id, old.id()),
        e => panic!("expected NotLeader naming {}, got {e:?}", old.id()),
    }
    // Not to a stranger.
    let err = old
        .transfer_leadership("nobody")
        .await
        .expect_err("not a voter");
    assert!(err.to_string().contains("not a voter"), "{err}");

    old.transfer_leadership(target.id())
        .await
        .expect("transfer");
    let new = cluster.leader().await;
    assert_eq!(new.id(), target.id());
    assert!(new.term() > term);
    assert_eq!(old.role(), Role::Follower);
    write(&target, "k", "2").await;
    write(&old, "k2", "via-old-leader").await;
    for n in cluster.live() {
        assert_eq!(get(&n, "k").await.as_deref(), Some("2"));
        assert_eq!(get(&n, "k2").await.as_deref(), Some("via-old-leader"));
    }
}

// ---------------------------------------------------------------------------
// 11. Join refusals.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn joins_of_another_cluster_of_itself_or_of_a_used_node_are_refused() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster
        .live()
        .into_iter()
        .find(|n| n.id() != leader.id())
        .unwrap();

    // A node of another cluster.
    let mut stranger_options = cluster.options("x1", Bootstrap::Join);
    stranger_options.cluster = Some("beta".into());
    let stranger = Node::new(stranger_options).await.unwrap();
    let err = leader.join("x1").await.expect_err("another cluster");
    assert!(matches!(err, NodeError::Membership(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("beta") && text.contains(CLUSTER), "{text}");
    // Through a follower, the leader's refusal comes back.
    let err = follower
        .join("x1")
        .await
        .expect_err("another cluster, forwarded");
    let text = err.to_string();
    assert!(text.contains("beta") && text.contains(CLUSTER), "{err:?}");

    // Itself.
    let err = leader.join(leader.address()).await.expect_err("itself");
    assert!(matches!(err, NodeError::Membership(_)), "{err:?}");
    assert!(err.to_string().contains("cannot join itself"), "{err}");

    // A node that already has a log and a membership of its own.
    let used = cluster.spawn("s1", Bootstrap::Single).await;
    eventually("s1 leads its own cluster of one", || {
        used.role() == Role::Leader
    })
    .await;
    write(&used, "mine", "1").await;
    let err = leader.join("s1").await.expect_err("a used node");
    assert!(matches!(err, NodeError::Membership(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("s1") && text.contains("already holds a log"),
        "{text}"
    );
    assert!(
        text.contains("Bootstrap::Join"),
        "the message says what to do: {text}"
    );

    // None of it changed the cluster.
    let p = peers(&leader).await;
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(!p.contains_key("x1") && !p.contains_key("s1"), "{p:?}");
    assert!(peers(&stranger).await.is_empty());
    assert!(peers(&used).await.is_empty());
    write(&leader, "still", "ok").await;
    assert_eq!(get_local(&used, "still").await, None);
}

// ---------------------------------------------------------------------------
// 12. Options.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn bad_options_are_refused_naming_the_option() {
    let err = Node::new(Options {
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(200),
        ..Options::default()
    })
    .await
    .err()
    .expect("max below min must be refused");
    assert!(
        matches!(
            err,
            NodeError::InvalidOption {
                option: "election_timeout_max",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("election_timeout_max"), "{err}");

    let err = Node::new(Options {
        bootstrap: Bootstrap::Join,
        ..Options::default()
    })
    .await
    .err()
    .expect("joining needs a cluster id");
    assert!(
        matches!(
            err,
            NodeError::InvalidOption {
                option: "cluster",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_persisted_id_wins_over_a_generated_one_and_another_id_is_refused() {
    let counter = Arc::new(AtomicU64::new(0));
    let generator = {
        let counter = counter.clone();
        Arc::new(move || format!("gen-{}", counter.fetch_add(1, Ordering::Relaxed)))
    };
    let store = MemoryPersistence::new();
    let options = || Options {
        persistence: Some(Arc::new(store.clone())),
        uuid: generator.clone(),
        ..Options::default()
    };

    let first = Node::new(options()).await.unwrap();
    let (id, cluster) = (first.id().to_string(), first.cluster().to_string());
    assert!(id.starts_with("gen-") && cluster.starts_with("gen-") && id != cluster);
    eventually("the single node leads", || first.role() == Role::Leader).await;
    write(&first, "k", "v").await;
    first.shutdown().await.unwrap();

    // Restarted with no id: the stored one, not a new one.
    let again = Node::new(options()).await.unwrap();
    assert_eq!(again.id(), id);
    assert_eq!(again.cluster(), cluster);
    eventually("the restarted node leads", || again.role() == Role::Leader).await;
    assert_eq!(get(&again, "k").await.as_deref(), Some("v"));
    again.shutdown().await.unwrap();

    // Another explicit id on the same store is refused, naming both.
    let err = Node::new(Options {
        id: Some("someone-else".into()),
        ..options()
    })
    .await
    .err()
    .expect("another id on this store");
    assert!(
        matches!(err, NodeError::InvalidOption { option: "id", .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("someone-else") && text.contains(&id),
        "{text}"
    );
    // So is another cluster.
    let err = Node::new(Options {
        cluster: Some("elsewhere".into()),
        ..options()
    })
    .await
    .err()
    .expect("another cluster on this store");
    assert!(
        matches!(
            err,
            NodeError::InvalidOption {
                option: "cluster",
                ..
            }
        ),
        "{err:?}"
    );
    // The same explicit id is fine.
    let same = Node::new(Options {
        id: Some(id.clone()),
        ..options()
    })
    .await
    .unwrap();
    assert_eq!(same.id(), id);
    assert_eq!(store.stored().unwrap().identity.id, id);
}

// ---------------------------------------------------------------------------
// 13. Events.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn subscribers_see_role_leader_join_and_apply_events() {
    let mut cluster = Cluster {
        net: MemoryNetwork::new(),
        members: vec![("n1".into(), "n1".into())],
        stores: BTreeMap::new(),
        nodes: BTreeMap::new(),
        tweak: Box::new(|_, _| {}),
    };
    let n1 = cluster.spawn("n1", Bootstrap::Single).await;
    let mut events = n1.subscribe();

    let e = expect_event(&mut events, "RoleChanged to Leader", |e| {
        matches!(
            e,
            Event::RoleChanged {
                role: Role::Leader,
                ..
            }
        )
    })
    .await;
    let Event::RoleChanged { term, .. } = e else {
        unreachable!()
    };
    assert!(term >= 1);
    expect_event(
        &mut events,
        "LeaderChanged to n1",
        |e| matches!(e, Event::LeaderChanged { leader: Some(l), .. } if l == "n1"),
    )
    .await;

    write(&n1, "k", "v").await;
    let applied_index = n1.metrics().applied_index;
    expect_event(
        &mut events,
        "Applied",
        |e| matches!(e, Event::Applied { index } if *index >= applied_index),
    )
    .await;

    let n2 = cluster.spawn("n2", Bootstrap::Join).await;
    let mut n2_events = n2.subscribe();
    n1.join("n2").await.expect("join n2");
    // First a learner, then a voter.
    expect_event(&mut events, "Joined n2 as a learner", |e| {
        matches!(e, Event::Joined { id, address, voter: false } if id == "n2" && address == "n2")
    })
    .await;
    expect_event(
        &mut events,
        "Joined n2 as a voter",
        |e| matches!(e, Event::Joined { id, voter: true, .. } if id == "n2"),
    )
    .await;
    // The new node applies the log, sees itself join, and knows its leader.
    eventually("n2 applies k", || {
        n2.metrics().applied_index >= applied_index
    })
    .await;
    eventually("n2 names n1 as its leader", || {
        n2.leader().is_some_and(|l| l.id == "n1")
    })
    .await;
    assert_eq!(get_local(&n2, "k").await.as_deref(), Some("v"));
    let seen = drain(&mut n2_events).await;
    assert!(
        seen.iter().any(|e| matches!(e, Event::Applied { .. })),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Joined { id, voter: true, .. } if id == "n2")),
        "{seen:?}"
    );
    // Its subscriber was told who leads, by the leader's id.
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::LeaderChanged { leader: Some(l), .. } if l == "n1")),
        "n2's subscriber was never told that n1 leads: {seen:?}"
    );
}

// ---------------------------------------------------------------------------
// 14. Shutdown.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_or_refuses_calls_in_flight_and_refuses_later_ones() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    write(&leader, "before", "1").await;

    // Commands in flight when the leader is told to stop...
    let mut before = Vec::new();
    for i in 0..20 {
        let node = leader.clone();
        before.push(tokio::spawn(async move {
            (i, node.command(set(&format!("f{i}"), "x")).await)
        }));
    }
    tokio::task::yield_now().await;
    // ...and commands issued right after it was told.
    let started = Instant::now();
    let (shut, after) = tokio::join!(leader.shutdown(), async {
        let mut results = Vec::new();
        for i in 0..5 {
            results.push(leader.command(set(&format!("late{i}"), "x")).await);
        }
        results
    });
    shut.expect("shutdown");
    assert!(
        started.elapsed() <= Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    for r in after {
        assert_eq!(r, Err(NodeError::ShuttingDown));
    }
    let mut done = Vec::new();
    for task in before {
        let (i, r) = task.await.unwrap();
        match r {
            Ok(out) => {
                assert_eq!(KvOutput::decode(&out), Some(KvOutput::Done));
                done.push(i);
            }
            // In the log when the node stopped: it may still be applied.
            Err(e) if e.is_outcome_unknown() => {}
            Err(NodeError::ShuttingDown) => {}
            Err(e) => panic!("command f{i} in flight at shutdown failed with {e:?} ({e})"),
        }
    }

    // What it acknowledged is committed: the others have it.
    let rest: Vec<Node> = cluster
        .live()
        .into_iter()
        .filter(|n| n.id() != leader.id())
        .collect();
    let new = agreed_leader(&rest).await;
    for i in done {
        assert_eq!(
            get(&new, &format!("f{i}")).await.as_deref(),
            Some("x"),
            "acknowledged f{i} lost"
        );
    }

    // After shutdown, every call says so.
    assert_eq!(
        leader.command(set("k", "v")).await,
        Err(NodeError::ShuttingDown)
    );
    assert_eq!(
        leader.read(kv_get(b"before")).await,
        Err(NodeError::ShuttingDown)
    );
    assert_eq!(leader.peers().await, Err(NodeError::ShuttingDown));
    assert_eq!(leader.leave(new.id()).await, Err(NodeError::ShuttingDown));
    assert_eq!(
        leader.transfer_leadership(new.id()).await,
        Err(NodeError::ShuttingDown)
    );
    assert_eq!(
        leader.weaken(Duration::from_secs(1)).await,
        Err(NodeError::ShuttingDown)
    );
    assert_eq!(
        NodeError::ShuttingDown.to_string(),
        "the node is shutting down"
    );
    assert!(
        !cluster.net.is_listening(leader.address()),
        "a stopped node still listens"
    );
    // Shutting down twice is harmless.
    leader.shutdown().await.expect("second shutdown");
}

#[tokio::test(start_paused = true)]
async fn calls_on_a_stopped_node_are_refused_and_take_no_effect() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    write(&leader, "k", "v").await;
    let followers: Vec<Node> = cluster
        .live()
        .into_iter()
        .filter(|n| n.id() != leader.id())
        .collect();
    let (stopped, other) = (&followers[0], &followers[1]);
    cluster.spawn("n4", Bootstrap::Join).await;
    stopped.shutdown().await.unwrap();

    // Every call is tried; the wrong answers are reported together.
    let mut wrong = Vec::new();
    let r = stopped.read_local(kv_get(b"k")).await.map(|b| value_of(&b));
    if r != Err(NodeError::ShuttingDown) {
        wrong.push(format!("read_local on a stopped follower: {r:?}"));
    }
    let r = stopped.join("n4").await;
    if r != Err(NodeError::ShuttingDown) {
        wrong.push(format!(
            "join of an empty node through a stopped follower: {r:?}"
        ));
    }
    let r = stopped.leave(other.id()).await;
    if r != Err(NodeError::ShuttingDown) {
        wrong.push(format!(
            "leave of a live member through a stopped follower: {r:?}"
        ));
    }
    // What a stopped node was asked must not have changed the cluster.
    sleep(Duration::from_secs(1)).await;
    let members = peers(&leader).await;
    let expected: BTreeMap<String, MemberRole> = [stopped, other]
        .iter()
        .map(|n| (n.id().to_string(), MemberRole::Voter))
        .collect();
    if members != expected {
        wrong.push(format!(
            "the membership changed through a stopped follower: {members:?}"
        ));
    }

    leader.shutdown().await.unwrap();
    let r = leader.join("nowhere").await;
    if r != Err(NodeError::ShuttingDown) {
        wrong.push(format!("join on a stopped leader: {r:?}"));
    }
    if leader.role() == Role::Leader {
        wrong.push("a stopped leader still reports role Leader".into());
    }
    assert!(wrong.is_empty(), "calls on a stopped node: {wrong:#?}");
}

// ---------------------------------------------------------------------------
// 15. Restart.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_cluster_restarted_from_its_stores_keeps_its_data_and_elects_a_leader() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    write_many(&leader, "k", 20).await;
    let term = leader.term();
    sleep(Duration::from_millis(500)).await;
    cluster.kill_all().await;
    assert!(cluster.nodes.is_empty());

    for id in cluster.ids() {
        cluster.restart(&id).await;
    }
    let leader = cluster.leader().await;
    assert!(leader.term() > term, "a new election, in a later term");
    for n in cluster.live() {
        wait_local(&n, "k", 20).await;
        for i in 0..20 {
            assert_eq!(
                get(&n, &format!("k{i}")).await,
                Some(format!("v{i}")),
                "k{i} on {}",
                n.id()
            );
        }
    }
    write(&leader, "after", "restart").await;
    for n in cluster.live() {
        assert_eq!(get(&n, "after").await.as_deref(), Some("restart"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_crashed_node_dropped_without_shutdown_restarts_from_its_store() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    write(&leader, "before", "1").await;
    let victim = cluster
        .ids()
        .into_iter()
        .find(|id| id != leader.id())
        .unwrap();
    sleep(Duration::from_millis(500)).await;

    // A crash: every handle dropped, no shutdown.
    let node = cluster.nodes.remove(&victim).unwrap();
    drop(node);
    sleep(Duration::from_secs(1)).await;
    assert!(
        !cluster.net.is_listening(&victim),
        "{victim} still listens a second after its last handle was dropped: its tasks live on"
    );
    write(&leader, "while-down", "1").await;

    let options = cluster.options(&victim, Bootstrap::Static(cluster.members.clone()));
    let back = Node::new(options)
        .await
        .unwrap_or_else(|e| panic!("restarting {victim} after a crash at the same address: {e}"));
    cluster.nodes.insert(victim.clone(), back.clone());
    cluster.leader().await;
    assert_eq!(get(&back, "before").await.as_deref(), Some("1"));
    assert_eq!(get(&back, "while-down").await.as_deref(), Some("1"));
}

/// A store whose saves take `delay` while `slow` is set.
#[derive(Clone)]
struct SlowStore {
    inner: MemoryPersistence,
    slow: Arc<std::sync::atomic::AtomicBool>,
    delay: Duration,
}

#[async_trait::async_trait]
impl Persistence for SlowStore {
    async fn save(&self, change: raft_node::Change) -> Result<(), raft_node::PersistenceError> {
        if self.slow.load(Ordering::SeqCst) {
            sleep(self.delay).await;
        }
        self.inner.save(change).await
    }

    async fn load(&self) -> Result<Option<raft_node::State>, raft_node::PersistenceError> {
        self.inner.load().await
    }
}

/// `metrics().applied_index` is what the state machine has applied, not
/// what the core has handed out: once a follower says it applied an index,
/// a local read there sees every entry up to it, even while its disk is
/// slow (before, the index ran ahead of the state machine by the entries
/// still waiting for the follower's own save).
#[tokio::test(start_paused = true)]
async fn the_applied_index_a_node_reports_is_visible_to_its_local_reads() {
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let n3_slow = slow.clone();
    let cluster = Cluster::start_with(3, move |id, o| {
        if id == "n3" {
            let inner = MemoryPersistence::default();
            o.persistence = Some(Arc::new(SlowStore {
                inner,
                slow: n3_slow.clone(),
                delay: Duration::from_millis(300),
            }));
        }
    })
    .await;
    let leader = cluster.leader().await;
    // n3 must be a follower for the story (the leader is elected by n1/n2
    // as easily as by n3; pick a follower that is n3 or skip the check).
    let n3 = cluster.node("n3");
    if leader.id() == "n3" {
        leader
            .transfer_leadership("n1")
            .await
            .expect("transfer to n1");
    }
    let leader = cluster.leader().await;
    assert_ne!(leader.id(), "n3");
    write_many(&leader, "warm", 3).await;
    wait_local(&n3, "warm", 3).await;

    slow.store(true, Ordering::SeqCst);
    let mut checked = 0;
    for i in 0..5 {
        let k = format!("slow{i}");
        write(&leader, &k, "v").await;
        // The leader answered once it applied the write: its applied index
        // is at least the write's.
        let target = leader.metrics().applied_index;
        assert!(
            target >= 4 + i as u64,
            "the leader's applied index {target}"
        );
        let deadline = Instant::now() + PATIENCE;
        while n3.metrics().applied_index < target {
            assert!(Instant::now() < deadline, "n3 never applied {target}");
            sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            get_local(&n3, &k).await.as_deref(),
            Some("v"),
            "n3 reports applied index {} (>= {target}) but its state machine lacks {k}",
            n3.metrics().applied_index
        );
        checked += 1;
    }
    assert_eq!(checked, 5);
}
