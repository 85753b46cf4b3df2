//! What an application that embeds a node relies on, end to end on the
//! in-memory network (simulated time) and over TCP: calls that need the
//! leader wait out elections and leader crashes within their own timeout,
//! a failed command says whether it may have taken effect, a forwarded
//! call keeps its own deadline, a node that founded a cluster of its own
//! is never added to another, and errors name nodes by their ids.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_node::example::{kv_get, KvOutput};
use raft_node::{
    cluster_number, node_number, Bootstrap, Connection, Envelope, MembershipError, MemoryNetwork,
    MemoryPersistence, Node, NodeError, Options, Reply, Request, Role, TcpOptions, TcpTransport,
};
use tokio::time::{sleep, Instant};

use common::{agreed_leader, set, SlowStore};

const CLUSTER: &str = "embed";

/// How long a test waits for something that should happen before it says
/// it did not.
const PATIENCE: Duration = Duration::from_secs(30);

/// Nodes `n1..nN` on one in-memory network, each with its own store.
struct Cluster {
    net: MemoryNetwork,
    members: Vec<(String, String)>,
    stores: BTreeMap<String, MemoryPersistence>,
    nodes: BTreeMap<String, Node>,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let members = (1..=n)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect::<Vec<_>>();
        let mut cluster = Cluster {
            net: MemoryNetwork::new(),
            members: members.clone(),
            stores: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        for (id, _) in &members {
            cluster.spawn(id, Bootstrap::Static(members.clone())).await;
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
            seed: Some(node_number(id)),
            ..Options::default()
        }
    }

    async fn spawn(&mut self, id: &str, bootstrap: Bootstrap) -> Node {
        let options = self.options(id, bootstrap);
        self.spawn_with(id, options).await
    }

    async fn spawn_with(&mut self, id: &str, options: Options) -> Node {
        let node = Node::new(options)
            .await
            .unwrap_or_else(|e| panic!("starting {id}: {e}"));
        self.nodes.insert(id.to_string(), node.clone());
        node
    }

    /// Crashes node `id` (its store survives).
    async fn crash(&mut self, id: &str) {
        let node = self.nodes.remove(id).expect("a running node");
        node.crash().await;
    }

    /// Restarts node `id` from its store.
    async fn restart(&mut self, id: &str) -> Node {
        self.spawn(id, Bootstrap::Static(self.members.clone()))
            .await
    }

    fn live(&self) -> Vec<Node> {
        self.nodes.values().cloned().collect()
    }

    async fn leader(&self) -> Node {
        agreed_leader(&self.live(), PATIENCE).await
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        sleep(Duration::from_millis(5)).await;
    }
}

async fn get(node: &Node, k: &str) -> Option<String> {
    let out = node.read(kv_get(k.as_bytes())).await.expect("read");
    match KvOutput::decode(&out) {
        Some(KvOutput::Value(v)) => v.map(|v| String::from_utf8_lossy(&v).into_owned()),
        other => panic!("unexpected output {other:?}"),
    }
}

fn follower_of(cluster: &Cluster, leader: &Node) -> Node {
    cluster
        .live()
        .into_iter()
        .find(|n| n.id() != leader.id())
        .expect("a follower")
}

/// True if `e` says the command may have taken effect.
fn may_have_taken_effect(e: &NodeError) -> bool {
    e.is_outcome_unknown()
}

// ---------------------------------------------------------------------------
// Commands on a follower while the leader crashes.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn commands_on_a_follower_ride_out_a_leader_crash_and_say_whether_they_took_effect() {
    const CLIENTS: usize = 6;
    const COMMANDS: usize = 30;
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = follower_of(&cluster, &leader);
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let node = follower.clone();
        let acknowledged = acknowledged.clone();
        clients.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..COMMANDS {
                let key = format!("c{c}-{i}");
                let result = node.command(set(&key, "x")).await;
                if result.is_ok() {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                results.push((key, result));
                sleep(Duration::from_millis(2)).await;
            }
            results
        }));
    }
    // The leader crashes with commands in flight.
    eventually("some commands were acknowledged", || {
        acknowledged.load(Ordering::SeqCst) >= CLIENTS * 3
    })
    .await;
    let crashed = leader.id().to_string();
    cluster.crash(&crashed).await;

    let mut results = Vec::new();
    for client in clients {
        results.extend(client.await.expect("a client task"));
    }
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader.id(), crashed);
    let mut unknown = 0;
    for (key, result) in &results {
        let stored = get(&new_leader, key).await;
        match result {
            Ok(_) => assert_eq!(stored.as_deref(), Some("x"), "{key} was acknowledged"),
            Err(NodeError::Transport(e)) => {
                panic!("{key}: a transport error reached the caller: {e:?}")
            }
            Err(e) if may_have_taken_effect(e) => unknown += 1,
            Err(e) => assert_eq!(
                stored, None,
                "{key} failed with {e:?} ({e}), which says it took no effect, but it did"
            ),
        }
    }
    // The crash costs at most the commands that were in flight: the
    // others wait for the new leader and succeed.
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    assert!(
        failed <= CLIENTS,
        "{failed} of {} commands failed ({unknown} with an unknown outcome): {:?}",
        results.len(),
        results
            .iter()
            .filter_map(|(k, r)| r.as_ref().err().map(|e| format!("{k}: {e}")))
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------
// A node that bootstrapped itself.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_node_that_founded_its_own_cluster_is_refused_even_right_after_it_starts() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    // Joined at once: before the new node ran a single round.
    let single = cluster.spawn("s1", Bootstrap::Single).await;
    let err = leader
        .join("s1")
        .await
        .expect_err("a node of its own cluster");
    assert!(matches!(err, NodeError::Membership(_)), "{err:?} ({err})");
    assert!(err.to_string().contains("already holds a log"), "{err}");
    // Nothing of it stays in the cluster: no learner left behind.
    let peers = leader.peers().await.unwrap();
    assert!(peers.iter().all(|p| p.id != "s1"), "{peers:?}");
    assert_eq!(leader.members().len(), 3);
    eventually("s1 leads its own cluster", || single.role() == Role::Leader).await;
    assert!(single.peers().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// A forwarded call keeps its own deadline.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_join_through_a_follower_outlasts_the_transport_timeout() {
    let mut cluster = Cluster::start(3).await;
    cluster.net.set_timeout(Duration::from_secs(1));
    let leader = cluster.leader().await;
    let follower = follower_of(&cluster, &leader);
    for i in 0..20 {
        leader.command(set(&format!("k{i}"), "v")).await.unwrap();
    }
    // The new node saves slowly: catching up takes longer than the
    // transport's timeout, well within the join's.
    let slow = Arc::new(AtomicBool::new(false));
    let mut options = cluster.options("j1", Bootstrap::Join);
    options.persistence = Some(Arc::new(SlowStore {
        inner: MemoryPersistence::new(),
        slow: slow.clone(),
        delay: Duration::from_millis(1500),
    }));
    let joining = cluster.spawn_with("j1", options).await;
    slow.store(true, Ordering::SeqCst);
    let started = Instant::now();
    follower.join("j1").await.expect("the join completes");
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the join did not outlast the transport timeout: the test proves nothing"
    );
    let peers = leader.peers().await.unwrap();
    let j1 = peers.iter().find(|p| p.id == "j1").expect("j1 is a member");
    assert_eq!(j1.role, raft_node::MemberRole::Voter, "{peers:?}");
    eventually("j1 has the data", || joining.metrics().applied_index >= 20).await;
}

/// A call forwarded with 200 ms left: the leader answers it by then (a
/// timeout: the command may still take effect), not after its own
/// `command_timeout`. The leader is cut off from its followers, with an
/// election timeout long enough for it to keep leading meanwhile, so that
/// nothing commits.
#[tokio::test(start_paused = true)]
async fn a_forwarded_call_ends_when_its_caller_stops_waiting() {
    let mut cluster = Cluster {
        net: MemoryNetwork::new(),
        members: (1..=3)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect(),
        stores: BTreeMap::new(),
        nodes: BTreeMap::new(),
    };
    let command_timeout = Duration::from_secs(2);
    for i in 1..=3 {
        let id = format!("n{i}");
        let mut options = cluster.options(&id, Bootstrap::Static(cluster.members.clone()));
        options.heartbeat_interval = Duration::from_millis(200);
        options.election_timeout_min = Duration::from_secs(4);
        options.election_timeout_max = Duration::from_secs(6);
        options.command_timeout = command_timeout;
        cluster.spawn_with(&id, options).await;
    }
    let leader = cluster.leader().await;
    leader.command(set("k", "v")).await.unwrap();
    let followers: Vec<String> = cluster
        .live()
        .iter()
        .filter(|n| n.id() != leader.id())
        .map(|n| n.id().to_string())
        .collect();
    for f in &followers {
        cluster.net.partition(leader.id(), f);
    }
    // A peer's connection, as a follower forwards through it.
    let probe = cluster.net.transport("probe").connect_to(leader.address());
    let within = Duration::from_millis(200);
    for (what, call) in [
        ("command", Request::Command(set("k", "w"))),
        ("read", Request::Read(kv_get(b"k"))),
    ] {
        let started = Instant::now();
        let reply = probe
            .invoke(Envelope {
                cluster: cluster_number(CLUSTER),
                from: Arc::from(followers[0].as_str()),
                request: Request::Within {
                    within,
                    call: Box::new(call),
                },
            })
            .await
            .expect("the leader answers");
        let took = started.elapsed();
        assert_eq!(leader.role(), Role::Leader, "the leader kept leading");
        assert!(
            matches!(&reply, Reply::Failed { message, .. } if message.contains("did not finish")),
            "{what}: a timeout, got {reply:?}"
        );
        assert!(
            took >= within && took < within + Duration::from_millis(100),
            "{what}: answered after {took:?}, not when its caller stopped waiting ({within:?}; the leader's command_timeout is {command_timeout:?})"
        );
    }
}

// ---------------------------------------------------------------------------
// Membership calls during an election.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_join_during_an_election_waits_for_the_new_leader() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let survivor = follower_of(&cluster, &leader);
    let other = cluster
        .live()
        .into_iter()
        .find(|n| n.id() != leader.id() && n.id() != survivor.id())
        .unwrap();
    let (leader_id, other_id) = (leader.id().to_string(), other.id().to_string());
    cluster.crash(&leader_id).await;
    cluster.crash(&other_id).await;
    eventually("the survivor knows no leader", || {
        survivor.leader().is_none()
    })
    .await;
    cluster.spawn("j1", Bootstrap::Join).await;
    let join = {
        let survivor = survivor.clone();
        tokio::spawn(async move { survivor.join("j1").await })
    };
    sleep(Duration::from_secs(2)).await;
    assert!(
        !join.is_finished(),
        "the join gave up during the election: {:?}",
        join.await
    );
    cluster.restart(&other_id).await;
    join.await
        .unwrap()
        .expect("the join completes under the new leader");
    let leader = agreed_leader(
        &[survivor.clone(), cluster.nodes[&other_id].clone()],
        PATIENCE,
    )
    .await;
    let peers = leader.peers().await.unwrap();
    assert!(peers.iter().any(|p| p.id == "j1"), "{peers:?}");
}

/// Who drives a join in [`a_join_whose_leader_crashes_is_finished_or_rolled_back`].
#[derive(Debug, Clone, Copy)]
enum JoinDriver {
    /// A member: `member.join(address)`.
    Member,
    /// The new node itself: `joining.join_cluster(member)`.
    Joining,
}

/// The leader crashes while a join is catching the new node up (its saves
/// are slow): the join either completes (the node is a voter) or fails and
/// the node is no longer in the configuration; never a learner for good.
#[tokio::test(start_paused = true)]
async fn a_join_whose_leader_crashes_is_finished_or_rolled_back() {
    for driver in [JoinDriver::Member, JoinDriver::Joining] {
        let mut cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        for i in 0..20 {
            leader.command(set(&format!("k{i}"), "v")).await.unwrap();
        }
        let follower = follower_of(&cluster, &leader);
        let slow = Arc::new(AtomicBool::new(false));
        let mut options = cluster.options("j1", Bootstrap::Join);
        options.persistence = Some(Arc::new(SlowStore {
            inner: MemoryPersistence::new(),
            slow: slow.clone(),
            delay: Duration::from_millis(1500),
        }));
        let joining = cluster.spawn_with("j1", options).await;
        slow.store(true, Ordering::SeqCst);
        let join = {
            let (follower, joining) = (follower.clone(), joining.clone());
            tokio::spawn(async move {
                match driver {
                    JoinDriver::Member => follower.join("j1").await,
                    JoinDriver::Joining => joining.join_cluster(follower.address()).await,
                }
            })
        };
        // Crash the leader once the new node is a learner being caught up.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let peers = leader.peers().await.unwrap();
            if peers
                .iter()
                .any(|p| p.id == "j1" && p.role == raft_node::MemberRole::Learner)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{driver:?}: j1 never became a learner"
            );
            sleep(Duration::from_millis(5)).await;
        }
        let leader_id = leader.id().to_string();
        cluster.crash(&leader_id).await;
        let result = join.await.unwrap();
        let survivors: Vec<Node> = cluster
            .live()
            .into_iter()
            .filter(|n| n.id() != "j1")
            .collect();
        let new_leader = agreed_leader(&survivors, PATIENCE).await;
        let role_of_j1 = || async {
            new_leader
                .peers()
                .await
                .unwrap()
                .into_iter()
                .find(|p| p.id == "j1")
                .map(|p| p.role)
        };
        match &result {
            Ok(()) => assert_eq!(
                role_of_j1().await,
                Some(raft_node::MemberRole::Voter),
                "{driver:?}: the join succeeded"
            ),
            Err(e) => {
                eprintln!("{driver:?}: the join failed: {e}");
                // Rolled back: give the removal time to commit.
                let deadline = Instant::now() + PATIENCE;
                while role_of_j1().await.is_some() {
                    assert!(
                        Instant::now() < deadline,
                        "{driver:?}: the join failed ({e}) and j1 stays a {:?}",
                        role_of_j1().await
                    );
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }
        // And it stays so: no learner left behind later either.
        sleep(Duration::from_secs(5)).await;
        let role = role_of_j1().await;
        assert!(
            role != Some(raft_node::MemberRole::Learner),
            "{driver:?}: j1 is left a learner ({result:?})"
        );
        eprintln!("{driver:?}: {result:?}, j1 is {role:?}");
        for node in cluster.live() {
            let _ = node.shutdown().await;
        }
    }
}

/// A join whose leader crashes, and whose caller's `join_timeout` passes
/// before a new leader is elected (a majority is down): the caller rolls
/// the join back once a leader is back, instead of leaving a learner.
#[tokio::test(start_paused = true)]
async fn a_join_that_times_out_after_its_leader_crashed_is_rolled_back() {
    let mut cluster = Cluster {
        net: MemoryNetwork::new(),
        members: (1..=3)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect(),
        stores: BTreeMap::new(),
        nodes: BTreeMap::new(),
    };
    for i in 1..=3 {
        let id = format!("n{i}");
        let mut options = cluster.options(&id, Bootstrap::Static(cluster.members.clone()));
        options.join_timeout = Duration::from_secs(3);
        options.command_timeout = Duration::from_secs(10);
        cluster.spawn_with(&id, options).await;
    }
    let leader = cluster.leader().await;
    for i in 0..20 {
        leader.command(set(&format!("k{i}"), "v")).await.unwrap();
    }
    let caller = follower_of(&cluster, &leader);
    let other = cluster
        .live()
        .into_iter()
        .find(|n| n.id() != leader.id() && n.id() != caller.id())
        .unwrap();
    // The new node never catches up: each save takes a minute.
    let slow = Arc::new(AtomicBool::new(false));
    let mut options = cluster.options("j1", Bootstrap::Join);
    options.persistence = Some(Arc::new(SlowStore {
        inner: MemoryPersistence::new(),
        slow: slow.clone(),
        delay: Duration::from_secs(60),
    }));
    cluster.spawn_with("j1", options).await;
    slow.store(true, Ordering::SeqCst);
    let join = {
        let caller = caller.clone();
        tokio::spawn(async move { caller.join("j1").await })
    };
    let deadline = Instant::now() + PATIENCE;
    while !caller.members().iter().any(|(id, _)| id == "j1") {
        assert!(Instant::now() < deadline, "j1 never became a learner");
        sleep(Duration::from_millis(5)).await;
    }
    let (leader_id, other_id) = (leader.id().to_string(), other.id().to_string());
    cluster.crash(&leader_id).await;
    cluster.crash(&other_id).await;
    // The join's timeout passes while no leader can be elected; then a
    // majority is back.
    sleep(Duration::from_secs(4)).await;
    cluster.restart(&other_id).await;
    let err = join
        .await
        .unwrap()
        .expect_err("j1 cannot catch up: the join fails");
    eprintln!("the join failed: {err}");
    let deadline = Instant::now() + PATIENCE;
    while caller.members().iter().any(|(id, _)| id == "j1") {
        assert!(
            Instant::now() < deadline,
            "the join failed ({err}) and j1 is left in the configuration: {:?}",
            caller.peers().await
        );
        sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Ids as given.
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn errors_name_nodes_by_the_ids_they_were_given() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = follower_of(&cluster, &leader);
    let number = node_number("nobody").to_string();
    for (node, how) in [(&leader, "on the leader"), (&follower, "forwarded")] {
        let err = node.leave("nobody").await.expect_err("not a member");
        let text = err.to_string();
        assert!(text.contains("nobody"), "{how}: {text}");
        assert!(!text.contains(&number), "{how}: {text}");
    }
    let err = leader.promote("nobody").await.expect_err("not a member");
    assert!(err.to_string().contains("nobody"), "{err}");
    assert!(
        matches!(&err, NodeError::Membership(MembershipError::NotMember { id, add_first: true }) if id == "nobody"),
        "{err:?}"
    );
    let err = leader
        .transfer_leadership("nobody")
        .await
        .expect_err("not a voter");
    assert!(err.to_string().contains("nobody"), "{err}");
}

/// Three TCP nodes, their leader and one follower, holding 20 keys; and
/// `j1`, a node started to join, whose store takes 1.5 s for every save
/// from now on (so that a join through the follower takes longer than a
/// transport timeout of 1 s).
struct TcpJoin {
    nodes: Vec<Node>,
    leader: Node,
    follower: Node,
    joining: Node,
}

async fn tcp_cluster_and_a_slow_joiner(tune: impl Fn(&mut TcpOptions)) -> TcpJoin {
    let free_address = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        listener.local_addr().expect("local address").to_string()
    };
    let transport = |id: &str| {
        let mut o = TcpOptions::new(id, CLUSTER).insecure();
        tune(&mut o);
        Arc::new(TcpTransport::new(o).expect("valid options"))
    };
    let members: Vec<(String, String)> =
        (1..=3).map(|i| (format!("n{i}"), free_address())).collect();
    let mut nodes = Vec::new();
    for (id, address) in &members {
        let node = Node::new(Options {
            id: Some(id.clone()),
            cluster: Some(CLUSTER.into()),
            address: Some(address.clone()),
            transport: Some(transport(id)),
            bootstrap: Bootstrap::Static(members.clone()),
            ..Options::default()
        })
        .await
        .expect("a node starts");
        nodes.push(node);
    }
    let leader = agreed_leader(&nodes, PATIENCE).await;
    let follower = nodes
        .iter()
        .find(|n| n.id() != leader.id())
        .unwrap()
        .clone();
    for i in 0..20 {
        leader.command(set(&format!("k{i}"), "v")).await.unwrap();
    }
    let slow = Arc::new(AtomicBool::new(false));
    let joining = Node::new(Options {
        id: Some("j1".into()),
        cluster: Some(CLUSTER.into()),
        address: Some(free_address()),
        transport: Some(transport("j1")),
        persistence: Some(Arc::new(SlowStore {
            inner: MemoryPersistence::new(),
            slow: slow.clone(),
            delay: Duration::from_millis(1500),
        })),
        bootstrap: Bootstrap::Join,
        ..Options::default()
    })
    .await
    .expect("the new node starts");
    slow.store(true, Ordering::SeqCst);
    TcpJoin {
        nodes,
        leader,
        follower,
        joining,
    }
}

/// The same over TCP, in real time: a 1 s request (and handler) timeout,
/// a join that takes longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_through_a_follower_outlasts_the_tcp_request_timeout() {
    let TcpJoin {
        nodes,
        leader,
        follower,
        joining,
    } = tcp_cluster_and_a_slow_joiner(|o| {
        o.request_timeout = Duration::from_secs(1);
        o.handler_timeout = Duration::from_secs(1);
    })
    .await;
    let started = Instant::now();
    follower
        .join(joining.address())
        .await
        .expect("the join completes");
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the join did not outlast the transport timeout: the test proves nothing"
    );
    let peers = leader.peers().await.unwrap();
    let j1 = peers.iter().find(|p| p.id == "j1").expect("j1 is a member");
    assert_eq!(j1.role, raft_node::MemberRole::Voter, "{peers:?}");
    for node in nodes.iter().chain([&joining]) {
        node.shutdown().await.expect("shutdown");
    }
}

/// [`a_join_whose_leader_crashes_is_finished_or_rolled_back`] over TCP, in
/// real time, where the forwarded join's connection breaks after the
/// request was sent (its outcome is unknown to the member that forwarded
/// it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_whose_leader_crashes_over_tcp_is_finished_or_rolled_back() {
    let TcpJoin {
        nodes,
        leader,
        follower,
        joining,
    } = tcp_cluster_and_a_slow_joiner(|_| {}).await;
    let join = {
        let (follower, address) = (follower.clone(), joining.address().to_string());
        tokio::spawn(async move { follower.join(&address).await })
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let peers = leader.peers().await.unwrap();
        if peers
            .iter()
            .any(|p| p.id == "j1" && p.role == raft_node::MemberRole::Learner)
        {
            break;
        }
        assert!(Instant::now() < deadline, "j1 never became a learner");
        sleep(Duration::from_millis(5)).await;
    }
    leader.crash().await;
    let result = join.await.unwrap();
    let survivors: Vec<Node> = nodes
        .iter()
        .filter(|n| n.id() != leader.id())
        .cloned()
        .collect();
    let new_leader = agreed_leader(&survivors, PATIENCE).await;
    let role_of_j1 = || async {
        new_leader
            .peers()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.id == "j1")
            .map(|p| p.role)
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let role = role_of_j1().await;
        match (&result, role) {
            (Ok(()), Some(raft_node::MemberRole::Voter)) | (Err(_), None) => break,
            (Ok(()), role) => panic!("the join succeeded, and j1 is {role:?}"),
            (Err(e), role) => assert!(
                Instant::now() < deadline,
                "the join failed ({e}) and j1 stays a {role:?}"
            ),
        }
        sleep(Duration::from_millis(50)).await;
    }
    eprintln!("join: {result:?}, j1 is {:?}", role_of_j1().await);
    for node in survivors.iter().chain([&joining]) {
        node.shutdown().await.expect("shutdown");
    }
}
