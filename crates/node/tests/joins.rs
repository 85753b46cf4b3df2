//! No learner is left stranded by a half-done join, whoever crashes: a
//! join whose caller and leader both crash is finished by the next leader
//! (the new node becomes a voter), or rolled back within `join_timeout` of
//! that leader taking it over when the new node is gone too. A learner
//! that was not added by a join (`add_learner`, or a member record written
//! before joins were marked) stays a learner. On the in-memory network, in
//! simulated time.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_core::{ConfChange, Membership};
use raft_node::{
    node_number, Bootstrap, Change, Identity, MemberRole, MemoryNetwork, MemoryPersistence, Node,
    Options, PeerStatus, Persistence,
};
use tokio::time::{sleep, Instant};

use common::{agreed_leader, set, SlowStore};

const CLUSTER: &str = "joins";

/// How long a test waits for something that should happen before it says
/// it did not.
const PATIENCE: Duration = Duration::from_secs(60);

/// Nodes on one in-memory network, each with its own store (which
/// survives a crash).
struct Cluster {
    net: MemoryNetwork,
    founders: Vec<(String, String)>,
    stores: BTreeMap<String, MemoryPersistence>,
    nodes: BTreeMap<String, Node>,
    join_timeout: Duration,
}

impl Cluster {
    /// `n1..nN`, founded together, with `join_timeout` on every node.
    async fn start(n: usize, join_timeout: Duration) -> Cluster {
        let founders: Vec<(String, String)> = (1..=n)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect();
        let mut cluster = Cluster {
            net: MemoryNetwork::new(),
            founders: founders.clone(),
            stores: BTreeMap::new(),
            nodes: BTreeMap::new(),
            join_timeout,
        };
        for (id, _) in &founders {
            cluster.spawn(id).await;
        }
        cluster
    }

    fn options(&mut self, id: &str, bootstrap: Bootstrap) -> Options {
        let store = self.stores.entry(id.to_string()).or_default().clone();
        Options {
            id: Some(id.to_string()),
            cluster: Some(CLUSTER.to_string()),
            transport: Some(Arc::new(self.net.transport(id))),
            persistence: Some(Arc::new(store)),
            bootstrap,
            join_timeout: self.join_timeout,
            seed: Some(node_number(id)),
            ..Options::default()
        }
    }

    /// Starts founder `id`, or restarts it from its store.
    async fn spawn(&mut self, id: &str) -> Node {
        let options = self.options(id, Bootstrap::Static(self.founders.clone()));
        self.spawn_with(id, options).await
    }

    async fn spawn_with(&mut self, id: &str, options: Options) -> Node {
        let node = Node::new(options)
            .await
            .unwrap_or_else(|e| panic!("starting {id}: {e}"));
        self.nodes.insert(id.to_string(), node.clone());
        node
    }

    /// Starts `id` empty, to be joined; its saves take `delay` each once
    /// the returned flag is set.
    async fn spawn_joining(&mut self, id: &str, delay: Duration) -> (Node, Arc<AtomicBool>) {
        let slow = Arc::new(AtomicBool::new(false));
        let mut options = self.options(id, Bootstrap::Join);
        options.persistence = Some(Arc::new(SlowStore {
            inner: MemoryPersistence::new(),
            slow: slow.clone(),
            delay,
        }));
        (self.spawn_with(id, options).await, slow)
    }

    /// Crashes node `id` (its store survives).
    async fn crash(&mut self, id: &str) {
        let node = self.nodes.remove(id).expect("a running node");
        node.crash().await;
    }

    /// The running founders (the nodes that can vote before the join).
    fn founders_up(&self) -> Vec<Node> {
        self.nodes
            .values()
            .filter(|n| self.founders.iter().any(|(id, _)| id == n.id()))
            .cloned()
            .collect()
    }
}

/// Member `id` as `node` sees it, if it is one.
async fn peer(node: &Node, id: &str) -> Option<PeerStatus> {
    let peers = node.peers().await.expect("peers");
    peers.into_iter().find(|p| p.id == id)
}

/// Waits until `id` is a learner on `leader` (checking it is marked as
/// joining or not, as `joining` says), and in the configuration of every
/// node of `all` (so that whichever of them is elected next has it).
async fn await_learner(leader: &Node, all: &[Node], id: &str, joining: bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(p) = peer(leader, id).await {
            assert_eq!(p.role, MemberRole::Learner, "{p:?}");
            assert_eq!(p.joining, joining, "{p:?}");
            if all.iter().all(|n| n.members().iter().any(|(m, _)| m == id)) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{id} never became a learner");
        sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `id` is a voter on `node`; its record no longer marked.
async fn await_voter(node: &Node, id: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let p = peer(node, id).await;
        if let Some(p) = &p {
            if p.role == MemberRole::Voter {
                assert!(!p.joining, "a voter is not joining: {p:?}");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{id} never became a voter: it stays {p:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `node` applied `index`.
async fn eventually_applied(node: &Node, index: u64) {
    let deadline = Instant::now() + PATIENCE;
    while node.metrics().applied_index < index {
        assert!(
            Instant::now() < deadline,
            "{} never applied {index}",
            node.id()
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Who called `join` in [`a_join_whose_caller_and_leader_crash_is_finished_by_the_next_leader`].
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// The leader itself.
    Leader,
    /// A follower, which forwarded the call to the leader; it is restarted
    /// from its store after the crash (without the call).
    Follower,
}

/// The caller and the leader of a join crash while the new node is a
/// learner being caught up (its saves are slow). Nobody is left to drive
/// the join: the survivors elect a leader, which finishes it: `j1` ends up
/// a voter, with the data.
#[tokio::test(start_paused = true)]
async fn a_join_whose_caller_and_leader_crash_is_finished_by_the_next_leader() {
    for caller in [Caller::Leader, Caller::Follower] {
        let mut cluster = Cluster::start(3, Duration::from_secs(30)).await;
        let leader = agreed_leader(&cluster.founders_up(), PATIENCE).await;
        for i in 0..20 {
            leader.command(set(&format!("k{i}"), "v")).await.unwrap();
        }
        let calling = match caller {
            Caller::Leader => leader.clone(),
            Caller::Follower => cluster
                .founders_up()
                .into_iter()
                .find(|n| n.id() != leader.id())
                .expect("a follower"),
        };
        let (joining, slow) = cluster
            .spawn_joining("j1", Duration::from_millis(1500))
            .await;
        slow.store(true, Ordering::SeqCst);
        let join = {
            let calling = calling.clone();
            tokio::spawn(async move { calling.join("j1").await })
        };
        await_learner(&leader, &cluster.founders_up(), "j1", true).await;

        // The caller and the leader crash (the call dies with its
        // process); a follower that called is restarted from its store.
        join.abort();
        let (leader_id, calling_id) = (leader.id().to_string(), calling.id().to_string());
        cluster.crash(&calling_id).await;
        if calling_id != leader_id {
            cluster.crash(&leader_id).await;
            cluster.spawn(&calling_id).await;
        }
        let survivors = cluster.founders_up();
        let new_leader = agreed_leader(&survivors, PATIENCE).await;
        assert_ne!(new_leader.id(), leader_id);
        await_voter(&new_leader, "j1").await;
        for node in &survivors {
            await_voter(node, "j1").await;
        }
        eventually_applied(&joining, new_leader.metrics().commit_index).await;
        // A voter now: it counts towards the quorum.
        slow.store(false, Ordering::SeqCst);
        new_leader.command(set("after", "v")).await.unwrap();
        eprintln!("{caller:?}: j1 was promoted by {}", new_leader.id());
        for node in cluster.nodes.values() {
            let _ = node.shutdown().await;
        }
    }
}

/// The caller, the leader and the new node itself crash while it is a
/// learner: the next leader removes it, within `join_timeout` counted from
/// when it took the join over (not from when the learner was added, 3 s
/// earlier), on its own clock.
#[tokio::test(start_paused = true)]
async fn a_join_whose_new_node_is_gone_too_is_rolled_back_within_join_timeout() {
    let join_timeout = Duration::from_secs(5);
    let mut cluster = Cluster::start(3, join_timeout).await;
    let leader = agreed_leader(&cluster.founders_up(), PATIENCE).await;
    for i in 0..20 {
        leader.command(set(&format!("k{i}"), "v")).await.unwrap();
    }
    // The new node never catches up: each save takes a minute.
    let (_joining, slow) = cluster.spawn_joining("j1", Duration::from_secs(60)).await;
    slow.store(true, Ordering::SeqCst);
    let join = {
        let leader = leader.clone();
        tokio::spawn(async move { leader.join("j1").await })
    };
    await_learner(&leader, &cluster.founders_up(), "j1", true).await;
    sleep(Duration::from_secs(3)).await;
    await_learner(&leader, &[], "j1", true).await;

    join.abort();
    let leader_id = leader.id().to_string();
    cluster.crash("j1").await;
    cluster.crash(&leader_id).await;
    let crashed = Instant::now();
    let survivors = cluster.founders_up();
    let new_leader = agreed_leader(&survivors, PATIENCE).await;
    let elected = Instant::now();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match peer(&new_leader, "j1").await {
            None => break,
            Some(p) => {
                assert_eq!(p.role, MemberRole::Learner, "never promoted: {p:?}");
                assert!(p.joining, "{p:?}");
            }
        }
        assert!(Instant::now() < deadline, "j1 was never removed");
        sleep(Duration::from_millis(10)).await;
    }
    let removed = Instant::now();
    let (after_election, after_crash) = (removed - elected, removed - crashed);
    eprintln!("j1 removed {after_election:?} after the election, {after_crash:?} after the crash");
    assert!(
        after_election >= join_timeout - Duration::from_millis(500),
        "removed {after_election:?} after the new leader was elected: before its join_timeout ({join_timeout:?}) passed"
    );
    assert!(
        after_election <= join_timeout + Duration::from_secs(1),
        "removed {after_election:?} after the new leader was elected: not within its join_timeout ({join_timeout:?})"
    );
    for node in &survivors {
        let deadline = Instant::now() + PATIENCE;
        while node.members().iter().any(|(id, _)| id == "j1") {
            assert!(Instant::now() < deadline, "{} still has j1", node.id());
            sleep(Duration::from_millis(10)).await;
        }
    }
    // The configuration is the founders' again: a write commits.
    new_leader.command(set("after", "v")).await.unwrap();
    for node in cluster.nodes.values() {
        let _ = node.shutdown().await;
    }
}

/// A member record as written before joins were marked (version 0):
/// `u32 id len, id, address`.
fn record_v0(id: &str, address: &str) -> Bytes {
    let mut b = (id.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(id.as_bytes());
    b.extend_from_slice(address.as_bytes());
    Bytes::from(b)
}

/// A member record marked as joining (version 1): `u32 0xFFFF_FFFF, u8
/// version 1, u8 flags (1: joining), u32 id len, id, address`.
fn record_v1_joining(id: &str, address: &str) -> Bytes {
    let mut b = vec![0xff, 0xff, 0xff, 0xff, 1, 1];
    b.extend_from_slice(&record_v0(id, address));
    Bytes::from(b)
}

/// A stored configuration (here the one a store was created with) whose
/// records are in the format of earlier releases loads: its learner `l1`
/// has no joining mark, and stays a learner for good; the learner `j1`,
/// marked as joining, is promoted by the leader. A learner added by
/// `add_learner` stays one too, until a `join` of it promotes it.
#[tokio::test(start_paused = true)]
async fn a_learner_without_the_joining_mark_stays_a_learner() {
    let join_timeout = Duration::from_secs(2);
    let mut membership = Membership::default();
    for change in [
        ConfChange::AddVoter {
            id: node_number("n1"),
            context: record_v0("n1", "n1"),
        },
        ConfChange::AddLearner {
            id: node_number("l1"),
            context: record_v0("l1", "l1"),
        },
        ConfChange::AddLearner {
            id: node_number("j1"),
            context: record_v1_joining("j1", "j1"),
        },
    ] {
        membership = membership.apply(&change).expect("a valid change");
    }
    let mut cluster = Cluster {
        net: MemoryNetwork::new(),
        founders: vec![("n1".into(), "n1".into())],
        stores: BTreeMap::new(),
        nodes: BTreeMap::new(),
        join_timeout,
    };
    let store = cluster.stores.entry("n1".into()).or_default().clone();
    store
        .save(Change {
            identity: Some(Identity {
                id: "n1".into(),
                cluster: CLUSTER.into(),
                bootstrap: membership,
            }),
            ..Change::default()
        })
        .await
        .expect("saved");
    let n1 = cluster.spawn("n1").await;
    let options = cluster.options("l1", Bootstrap::Join);
    let l1 = cluster.spawn_with("l1", options).await;
    let options = cluster.options("j1", Bootstrap::Join);
    cluster.spawn_with("j1", options).await;
    let options = cluster.options("l2", Bootstrap::Join);
    cluster.spawn_with("l2", options).await;
    agreed_leader(std::slice::from_ref(&n1), PATIENCE).await;
    n1.command(set("k", "v")).await.unwrap();

    await_voter(&n1, "j1").await;
    assert_eq!(n1.add_learner("l2").await.unwrap(), "l2");
    // Well past every join_timeout: neither promoted nor removed.
    sleep(join_timeout * 3).await;
    n1.command(set("k", "w")).await.unwrap();
    let commit = n1.metrics().commit_index;
    for id in ["l1", "l2"] {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let p = peer(&n1, id).await.expect("still a member");
            assert_eq!(p.role, MemberRole::Learner, "{p:?}");
            assert!(!p.joining, "{p:?}");
            // Caught up and answering: the leader could have promoted it.
            if p.connected && p.match_index >= Some(commit) {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never caught up: {p:?}");
            sleep(Duration::from_millis(10)).await;
        }
    }
    eventually_applied(&l1, commit).await;
    // A join of a learner without the mark promotes it.
    n1.join("l2").await.expect("the join promotes l2");
    await_voter(&n1, "l2").await;
    assert_eq!(
        peer(&n1, "l1").await.map(|p| p.role),
        Some(MemberRole::Learner)
    );
    for node in cluster.nodes.values() {
        let _ = node.shutdown().await;
    }
}
