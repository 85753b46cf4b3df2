//! What an operator sees of a cluster, on the in-memory network in
//! simulated time: errors name nodes by the ids they were given (never by
//! the core's numbers), a removed node knows it and serves nothing, a
//! leader refuses what a non-member forwards, and every node's view of
//! which peers are up is current.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft_node::example::{kv_get, KvCommand, KvOutput};
use raft_node::{
    cluster_number, node_number, Bootstrap, Envelope, Event, MembershipError, MemoryNetwork, Node,
    NodeError, Options, Removed, Reply, Request, Role, Transport,
};
use tokio::time::{sleep, Instant};

const CLUSTER: &str = "ops";

/// Waits for `check`, polling every 10 ms of simulated time, for up to 20 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `n1..n<count>` on `net` with static membership.
async fn start(net: &MemoryNetwork, count: usize) -> Vec<Node> {
    let members: Vec<(String, String)> = (1..=count)
        .map(|i| (format!("n{i}"), format!("n{i}")))
        .collect();
    let mut nodes = Vec::new();
    for (id, address) in &members {
        let node = Node::new(Options {
            id: Some(id.clone()),
            cluster: Some(CLUSTER.into()),
            transport: Some(Arc::new(net.transport(address))),
            bootstrap: Bootstrap::Static(members.clone()),
            seed: Some(node_number(id)),
            ..Options::default()
        })
        .await
        .unwrap_or_else(|e| panic!("starting {id}: {e}"));
        nodes.push(node);
    }
    nodes
}

/// Waits until one node leads and every other names it; its index.
async fn leader(nodes: &[Node]) -> usize {
    let mut found = None;
    eventually("an agreed leader", || {
        found = nodes.iter().position(|n| n.role() == Role::Leader);
        found.is_some_and(|l| {
            nodes
                .iter()
                .all(|n| n.leader().is_some_and(|x| x.id == nodes[l].id()))
        })
    })
    .await;
    found.expect("found above")
}

fn set(k: &str, v: &str) -> Bytes {
    KvCommand::Set {
        key: k.to_string().into(),
        value: v.to_string().into(),
    }
    .encode()
}

async fn get_local(node: &Node, k: &str) -> Option<Bytes> {
    match KvOutput::decode(&node.read_local(kv_get(k.as_bytes())).await.unwrap()) {
        Some(KvOutput::Value(v)) => v,
        other => panic!("unexpected read output {other:?}"),
    }
}

/// No decimal number of the core's kind (a hash of an id) in `text`.
fn no_hashed_id(text: &str, ids: &[&str]) {
    for id in ids {
        let number = node_number(id).to_string();
        assert!(
            !text.contains(&number),
            "{text:?} shows the number {number} of {id}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn refused_membership_changes_and_transfers_name_nodes_by_id() {
    let net = MemoryNetwork::new();
    let nodes = start(&net, 3).await;
    let l = leader(&nodes).await;
    let leader = &nodes[l];

    let e = leader.leave("n9").await.unwrap_err();
    assert!(
        matches!(&e, NodeError::Membership(MembershipError::NotMember { id, .. }) if id == "n9"),
        "{e}"
    );
    no_hashed_id(&e.to_string(), &["n9"]);

    let e = leader.transfer_leadership("n9").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "leadership transfer refused: n9 is not a voter of the current configuration"
    );
    let e = leader.transfer_leadership(leader.id()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "leadership transfer refused: {} is already the leader",
            leader.id()
        )
    );

    // Removing all but the leader: the last removal would leave no voter.
    for f in nodes.iter().filter(|n| n.id() != leader.id()) {
        leader.leave(f.id()).await.expect("leave");
    }
    let e = leader.leave(leader.id()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "membership change refused: removing node {} would leave the cluster without voters",
            leader.id()
        )
    );
    for n in &nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_removed_node_knows_it_and_serves_nothing() {
    let net = MemoryNetwork::new();
    let nodes = start(&net, 4).await;
    let l = leader(&nodes).await;
    let gone = nodes
        .iter()
        .find(|n| n.id() != nodes[l].id())
        .expect("a follower")
        .clone();
    gone.command(set("before", "1"))
        .await
        .expect("a member writes");
    let mut events = gone.subscribe();

    nodes[l].leave(gone.id()).await.expect("leave");

    eventually("the removed node knows it", || gone.removed().is_some()).await;
    let removed = gone.removed().unwrap();
    let index = removed.index.expect("it applied its removal");
    assert!(index > 0);
    assert_eq!(gone.metrics().removed, Some(removed));
    loop {
        match events.next().await {
            Some(Event::Removed { index: i }) => {
                assert_eq!(i, Some(index));
                break;
            }
            Some(_) => {}
            None => panic!("no Removed event"),
        }
    }
    let e = gone.command(set("after", "x")).await.unwrap_err();
    assert_eq!(e, NodeError::Removed(removed));
    assert_eq!(
        e.to_string(),
        format!(
            "this node was removed from the cluster at index {index}; stop it, or add it again as a new, empty node"
        )
    );
    assert!(matches!(
        gone.read(kv_get(b"before")).await,
        Err(NodeError::Removed(_))
    ));
    assert!(matches!(
        gone.read_local(kv_get(b"before")).await,
        Err(NodeError::Removed(_))
    ));
    assert!(matches!(
        gone.leave(nodes[l].id()).await,
        Err(NodeError::Removed(_))
    ));
    // The key it was asked to write is nowhere.
    sleep(Duration::from_secs(1)).await;
    for n in nodes.iter().filter(|n| n.id() != gone.id()) {
        assert_eq!(get_local(n, "before").await.as_deref(), Some(&b"1"[..]));
        assert_eq!(get_local(n, "after").await, None, "on {}", n.id());
        assert_eq!(n.removed(), None);
    }
    for n in &nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn the_leader_refuses_what_a_non_member_forwards_and_the_sender_learns_it() {
    let net = MemoryNetwork::new();
    let nodes = start(&net, 3).await;
    let l = leader(&nodes).await;
    let leader_address = nodes[l].address().to_string();

    // A node of this cluster's name that is not a member forwards a
    // command, a read and a leave: each is refused, and nothing is written.
    let stranger = net.transport("n9");
    let conn = stranger.connect(&leader_address).await.unwrap();
    for request in [
        Request::Command(set("k", "stranger")),
        Request::Read(kv_get(b"k")),
        Request::Leave { id: "n2".into() },
    ] {
        let reply = conn
            .invoke(Envelope {
                cluster: cluster_number(CLUSTER),
                from: Arc::from("n9"),
                request,
            })
            .await
            .unwrap();
        match reply {
            Reply::NotMember(why) => assert!(
                why.contains("the node at n9 is not a member of this cluster's configuration"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }
    // A member's forwarded command is served.
    let follower = nodes.iter().find(|n| n.id() != nodes[l].id()).unwrap();
    follower
        .command(set("k", "member"))
        .await
        .expect("forwarded");
    assert_eq!(
        get_local(&nodes[l], "k").await.as_deref(),
        Some(&b"member"[..])
    );
    assert_eq!(nodes[l].members().len(), 3);

    // A member cut off while it was removed never applies its removal; the
    // leader's refusal of its next forwarded command tells it. (It starts
    // no election meanwhile, so it still takes the leader for its own.)
    let cut = nodes
        .iter()
        .find(|n| n.id() != nodes[l].id() && n.id() != follower.id())
        .unwrap()
        .clone();
    cut.weaken(Duration::from_secs(3600)).await.unwrap();
    let cut_address = cut.address().to_string();
    net.isolate(&cut_address);
    nodes[l].leave(cut.id()).await.expect("leave");
    // A later change drops the leader's record of the node it removed.
    nodes[l].leave(follower.id()).await.expect("leave");
    net.reconnect(&cut_address);
    assert_eq!(cut.removed(), None, "it missed its removal");
    assert_eq!(cut.leader().map(|x| x.id), Some(nodes[l].id().to_string()));
    let e = match cut.command(set("late", "x")).await {
        Err(NodeError::Removed(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(e, Removed { index: None });
    assert_eq!(cut.removed(), Some(Removed { index: None }));
    assert_eq!(get_local(&nodes[l], "late").await, None);
    for n in &nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_follower_sees_a_dead_peer_disconnected_within_an_election_timeout() {
    let net = MemoryNetwork::new();
    let nodes = start(&net, 3).await;
    let l = leader(&nodes).await;
    let followers: Vec<&Node> = nodes.iter().filter(|n| n.id() != nodes[l].id()).collect();
    let (watcher, dying) = (followers[0], followers[1]);
    let connected = |to: &str| {
        let watcher = watcher.clone();
        let to = to.to_string();
        async move {
            watcher
                .peers()
                .await
                .unwrap()
                .into_iter()
                .find(|p| p.id == to)
                .is_some_and(|p| p.connected)
        }
    };
    // Followers exchange no Raft messages in a quiet cluster: they probe.
    sleep(Duration::from_secs(2)).await;
    assert!(
        connected(dying.id()).await,
        "a live follower shows as connected"
    );
    assert!(connected(nodes[l].id()).await);

    dying.crash().await;
    let crashed = Instant::now();
    let election_timeout = Options::default().election_timeout_max;
    loop {
        if !connected(dying.id()).await {
            break;
        }
        assert!(
            crashed.elapsed() <= election_timeout + Duration::from_millis(100),
            "still connected {:?} after the crash",
            crashed.elapsed()
        );
        sleep(Duration::from_millis(5)).await;
    }
    assert!(connected(nodes[l].id()).await, "the leader is still up");
    for n in [&nodes[l], watcher] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn followers_know_the_leaders_client_address() {
    let net = MemoryNetwork::new();
    let members: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("n{i}"), format!("n{i}")))
        .collect();
    let mut nodes = Vec::new();
    for (id, address) in &members {
        let node = Node::new(Options {
            id: Some(id.clone()),
            cluster: Some(CLUSTER.into()),
            transport: Some(Arc::new(net.transport(address))),
            bootstrap: Bootstrap::Static(members.clone()),
            seed: Some(node_number(id)),
            forward_to_leader: false,
            client_address: Some(format!("clients-of-{id}:6379")),
            ..Options::default()
        })
        .await
        .unwrap();
        nodes.push(node);
    }
    let l = leader(&nodes).await;
    let expected = format!("clients-of-{}:6379", nodes[l].id());
    for n in &nodes {
        eventually("the leader's client address known", || {
            n.leader().and_then(|x| x.client_address) == Some(expected.clone())
        })
        .await;
        assert_eq!(
            n.metrics().leader.and_then(|x| x.client_address),
            Some(expected.clone())
        );
    }
    let follower = nodes.iter().find(|n| n.id() != nodes[l].id()).unwrap();
    match follower.command(set("k", "v")).await {
        Err(NodeError::NotLeader { leader: Some(info) }) => {
            assert_eq!(info.id, nodes[l].id());
            assert_eq!(info.address, nodes[l].address());
            assert_eq!(info.client_address, Some(expected.clone()));
        }
        other => panic!("{other:?}"),
    }
    for n in &nodes {
        n.shutdown().await.unwrap();
    }
}
