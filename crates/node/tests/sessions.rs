//! Exactly-once commands end to end: a command whose reply is lost, or
//! whose leader crashes after committing it, is sent again by the node
//! with the same session and number and applied once; a command without a
//! session whose reply is lost fails saying its outcome is unknown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_node::transport::{Posted, TransportError};
use raft_node::{
    node_number, Attempt, Bootstrap, Connection, Envelope, Handler, MemoryNetwork,
    MemoryPersistence, Node, NodeError, Options, Reply, Request, RestoreError, Role, StateMachine,
    Transport, UnknownKind,
};
use tokio::time::{sleep, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

/// Which node applied which command, in the order they did.
type Applications = Arc<Mutex<Vec<(String, u64)>>>;

/// A state machine that counts how often each command (an id, 8 bytes)
/// was applied; its reply is `id:count`, its query (an id) the count.
struct Counting {
    node: String,
    counts: BTreeMap<u64, u32>,
    seen: Applications,
}

fn command(id: u64) -> Bytes {
    Bytes::copy_from_slice(&id.to_le_bytes())
}

impl StateMachine for Counting {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
        let id = u64::from_le_bytes(command.try_into().expect("an 8-byte id"));
        let count = self.counts.entry(id).or_default();
        *count += 1;
        self.seen.lock().unwrap().push((self.node.clone(), id));
        Bytes::from(format!("{id}:{count}"))
    }

    fn query(&self, query: &[u8]) -> Bytes {
        let id = u64::from_le_bytes(query.try_into().expect("an 8-byte id"));
        Bytes::from(self.counts.get(&id).copied().unwrap_or(0).to_string())
    }

    fn snapshot(&self) -> Bytes {
        let mut b = BytesMut::new();
        for (id, count) in &self.counts {
            b.put_u64_le(*id);
            b.put_u32_le(*count);
        }
        b.freeze()
    }

    fn restore(&mut self, snapshot: Bytes) -> Result<(), RestoreError> {
        let mut b = &snapshot[..];
        let mut counts = BTreeMap::new();
        while b.remaining() >= 12 {
            counts.insert(b.get_u64_le(), b.get_u32_le());
        }
        if b.has_remaining() {
            return Err(RestoreError::TrailingBytes {
                what: "the last count".into(),
                bytes: b.remaining(),
            });
        }
        self.counts = counts;
        Ok(())
    }
}

/// A transport that, while asked to, loses the reply of a forwarded
/// command after the leader handled it (as a connection that breaks
/// between the request and its reply does).
struct ReplyLosing {
    inner: Arc<dyn Transport>,
    /// Replies still to lose.
    lose: Arc<AtomicUsize>,
}

struct LosingConnection {
    inner: Arc<dyn Connection>,
    address: String,
    lose: Arc<AtomicUsize>,
}

#[async_trait]
impl Transport for ReplyLosing {
    async fn connect(&self, address: &str) -> Result<Arc<dyn Connection>, TransportError> {
        Ok(Arc::new(LosingConnection {
            inner: self.inner.connect(address).await?,
            address: address.to_string(),
            lose: self.lose.clone(),
        }))
    }

    async fn listen(
        &self,
        address: &str,
        handler: Arc<dyn Handler>,
    ) -> Result<String, TransportError> {
        self.inner.listen(address, handler).await
    }

    async fn shutdown(&self) -> Result<(), TransportError> {
        self.inner.shutdown().await
    }
}

fn is_command(request: &Request) -> bool {
    match request {
        Request::Within { call, .. } => is_command(call),
        Request::Command(_) | Request::SessionCommand { .. } => true,
        _ => false,
    }
}

#[async_trait]
impl Connection for LosingConnection {
    async fn invoke(&self, envelope: Envelope) -> Result<Reply, TransportError> {
        let command = is_command(&envelope.request);
        let reply = self.inner.invoke(envelope).await?;
        let lost = command
            && self
                .lose
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if lost {
            return Err(TransportError::Lost {
                address: self.address.clone(),
                reason: "the reply was lost".into(),
            });
        }
        Ok(reply)
    }

    fn post(&self, envelope: Envelope) -> Posted {
        self.inner.post(envelope)
    }

    fn listen(&self, handler: Arc<dyn Handler>) {
        self.inner.listen(handler)
    }

    async fn close(&self) -> Result<(), TransportError> {
        self.inner.close().await
    }
}

/// Three nodes on one in-memory network, counting applications; each
/// node's outgoing replies to commands can be lost on demand.
struct Cluster {
    nodes: BTreeMap<String, Node>,
    lose: BTreeMap<String, Arc<AtomicUsize>>,
    seen: Applications,
}

impl Cluster {
    async fn start() -> Cluster {
        let net = MemoryNetwork::new();
        let members: Vec<(String, String)> = (1..=3)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect();
        let seen = Applications::default();
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            lose: BTreeMap::new(),
            seen: seen.clone(),
        };
        for (id, _) in &members {
            let lose = Arc::new(AtomicUsize::new(0));
            let transport = ReplyLosing {
                inner: Arc::new(net.transport(id)),
                lose: lose.clone(),
            };
            let node = Node::new(Options {
                id: Some(id.clone()),
                cluster: Some("sessions".into()),
                transport: Some(Arc::new(transport)),
                persistence: Some(Arc::new(MemoryPersistence::new())),
                bootstrap: Bootstrap::Static(members.clone()),
                seed: Some(node_number(id)),
                state_machine: Some(Box::new(Counting {
                    node: id.clone(),
                    counts: BTreeMap::new(),
                    seen: seen.clone(),
                })),
                ..Options::default()
            })
            .await
            .expect("a node starts");
            cluster.nodes.insert(id.clone(), node);
            cluster.lose.insert(id.clone(), lose);
        }
        cluster
    }

    async fn leader(&self) -> Node {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let live: Vec<&Node> = self.nodes.values().collect();
            let leaders: Vec<&&Node> = live.iter().filter(|n| n.role() == Role::Leader).collect();
            if let [leader] = leaders[..] {
                if live
                    .iter()
                    .all(|n| n.leader().is_some_and(|l| l.id == leader.id()))
                {
                    return (*leader).clone();
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader");
            sleep(Duration::from_millis(10)).await;
        }
    }

    fn follower(&self, leader: &Node) -> Node {
        self.nodes
            .values()
            .find(|n| n.id() != leader.id())
            .expect("a follower")
            .clone()
    }

    /// How often each live node applied command `id` (a linearizable read
    /// on each).
    async fn counts(&self, id: u64) -> Vec<(String, String)> {
        let mut counts = Vec::new();
        for (name, node) in &self.nodes {
            let count = node.read(command(id)).await.expect("a read");
            counts.push((name.clone(), String::from_utf8_lossy(&count).into_owned()));
        }
        counts
    }
}

fn everywhere(cluster: &Cluster, count: &str) -> Vec<(String, String)> {
    cluster
        .nodes
        .keys()
        .map(|n| (n.clone(), count.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_command_whose_reply_is_lost_is_sent_again_and_applied_once() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(&leader);
    cluster.lose[follower.id()].store(1, Ordering::SeqCst);

    let reply = follower.command(command(1)).await.expect("the command");

    assert_eq!(cluster.lose[follower.id()].load(Ordering::SeqCst), 0);
    // The retry was answered with the first reply.
    assert_eq!(reply, Bytes::from("1:1"));
    assert_eq!(cluster.counts(1).await, everywhere(&cluster, "1"));
}

#[tokio::test(start_paused = true)]
async fn a_command_without_a_session_whose_reply_is_lost_has_an_unknown_outcome() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(&leader);
    cluster.lose[follower.id()].store(1, Ordering::SeqCst);

    let err = follower
        .command_without_session(command(2))
        .await
        .expect_err("the reply was lost");

    assert!(err.is_outcome_unknown(), "{err:?}");
    let NodeError::OutcomeUnknown(why) = &err else {
        panic!("{err:?}");
    };
    // The connection broke with the reply on its way back, after the call
    // was sent to the leader (named by its id).
    assert_eq!(why.attempt, Attempt::Command, "{err}");
    assert_eq!(why.kind, UnknownKind::ConnectionClosed, "{err}");
    assert_eq!(why.node.as_deref(), Some(leader.id()), "{err}");
    assert!(
        matches!(why.source.as_deref(), Some(NodeError::Transport(_))),
        "{err:?}"
    );
    // It was applied, once: nothing sent it again.
    assert_eq!(cluster.counts(2).await, everywhere(&cluster, "1"));
}

#[tokio::test(start_paused = true)]
async fn a_command_sent_after_its_sessions_window_moved_past_it_is_not_applied_and_says_why() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(&leader);
    follower
        .command(command(5))
        .await
        .expect("the session is registered");
    let late = follower.numbered_command(command(6));
    // More numbers are taken after it than the window holds: the floor the
    // next command carries is above its number.
    for _ in 0..=64 * 1024 {
        drop(follower.numbered_command(command(7)));
    }
    follower.command(command(8)).await.expect("a later command");

    let err = late
        .send()
        .await
        .expect_err("its number is below the floor");

    let NodeError::OutcomeUnknown(why) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(why.kind, UnknownKind::WindowExceeded, "{err}");
    assert_eq!(err.unknown_kind(), Some(UnknownKind::WindowExceeded));
    assert_eq!(
        why.attempt,
        Attempt::NumberedCommand {
            session: late.session().expect("it was sent"),
            seq: late.seq()
        },
        "{err}"
    );
    // The leader refused it (the kind came back with the forwarded call),
    // and it names the leader by the id it was given.
    assert_eq!(why.node.as_deref(), Some(leader.id()), "{err}");
    assert_eq!(cluster.counts(6).await, everywhere(&cluster, "0"));
    assert_eq!(cluster.counts(8).await, everywhere(&cluster, "1"));
}

#[tokio::test(start_paused = true)]
async fn a_numbered_command_sent_again_after_an_unknown_outcome_is_not_applied_twice() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(&leader);
    let numbered = follower.numbered_command(command(3));
    let first = numbered.send().await.expect("the command");
    let again = numbered.send().await.expect("the command again");
    assert_eq!(first, again);
    assert_eq!(numbered.session().map(|s| s > 0), Some(true));
    let other = follower.numbered_command(command(3));
    assert_ne!(other.seq(), numbered.seq());
    // Another number is another command.
    assert_eq!(other.send().await.expect("a second command"), "3:2");
    assert_eq!(cluster.counts(3).await, everywhere(&cluster, "2"));
}

#[tokio::test(start_paused = true)]
async fn a_leader_crash_after_commit_does_not_apply_the_retried_command_twice() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(&leader);
    // The reply is lost, and the leader crashes once it applied the
    // command: the retry goes to the next leader, which knows the number.
    cluster.lose[follower.id()].store(1, Ordering::SeqCst);
    let sent = {
        let follower = follower.clone();
        tokio::spawn(async move { follower.command(command(4)).await })
    };
    let deadline = Instant::now() + PATIENCE;
    while !cluster
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|(n, id)| n == leader.id() && *id == 4)
    {
        assert!(Instant::now() < deadline, "the leader never applied it");
        tokio::task::yield_now().await;
        sleep(Duration::from_micros(100)).await;
    }
    leader.crash().await;
    cluster.nodes.remove(leader.id());

    let reply = sent.await.expect("the task").expect("the command");

    assert_eq!(reply, Bytes::from("4:1"));
    let next = cluster.leader().await;
    assert_ne!(next.id(), leader.id());
    assert_eq!(cluster.counts(4).await, everywhere(&cluster, "1"));
}

#[tokio::test(start_paused = true)]
async fn concurrent_commands_of_one_session_each_apply_once() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(&leader);
    cluster.lose[follower.id()].store(5, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for id in 100..120u64 {
        let node = if id % 2 == 0 {
            follower.clone()
        } else {
            leader.clone()
        };
        tasks.push(tokio::spawn(async move { node.command(command(id)).await }));
    }
    for (id, task) in (100..120u64).zip(tasks) {
        let reply = task.await.expect("the task").expect("the command");
        assert_eq!(reply, Bytes::from(format!("{id}:1")));
    }
    for id in 100..120u64 {
        assert_eq!(cluster.counts(id).await, everywhere(&cluster, "1"), "{id}");
    }
}
