//! The log's clock: a state machine that reads the log's time gets it
//! from time entries the leader proposes, at the same log position on
//! every node, never from a node's own clock while it applies; a deadline
//! it names is reached through the log without any client command.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use raft_node::{
    node_number, Bootstrap, MemoryNetwork, MemoryPersistence, Node, Options, RestoreError, Role,
    StateMachine,
};
use tokio::time::{sleep, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

/// What one node's machine saw: every call in log order, as
/// `(index, Time(t))` or `(index, Command(log time when applied))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Time(u64),
    Command(u64),
}

type Journal = Arc<Mutex<Vec<(u64, Seen)>>>;

/// A machine that reads the log's time: a command asks for a deadline
/// `ms` after the log's time (8 bytes, little endian; 0: none), its reply
/// is the log's time when it applied.
struct Clocked {
    now_ms: u64,
    deadline: Option<u64>,
    journal: Journal,
    uses: bool,
}

impl StateMachine for Clocked {
    fn apply(&mut self, index: u64, command: &[u8]) -> Bytes {
        let ms = u64::from_le_bytes(command.try_into().expect("8 bytes"));
        if ms > 0 {
            self.deadline = Some(self.now_ms + ms);
        }
        self.journal
            .lock()
            .unwrap()
            .push((index, Seen::Command(self.now_ms)));
        Bytes::from(self.now_ms.to_string())
    }

    fn query(&self, _query: &[u8]) -> Bytes {
        Bytes::from(self.now_ms.to_string())
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.now_ms.to_le_bytes())
    }

    fn restore(&mut self, snapshot: Bytes) -> Result<(), RestoreError> {
        self.now_ms = u64::from_le_bytes(snapshot[..8].try_into().expect("8 bytes"));
        Ok(())
    }

    fn uses_log_time(&self) -> bool {
        self.uses
    }

    fn advance_time(&mut self, index: u64, time_ms: u64) {
        assert!(time_ms > self.now_ms, "the log's time never goes back");
        self.now_ms = time_ms;
        if self.deadline.is_some_and(|d| d <= time_ms) {
            self.deadline = None;
        }
        self.journal
            .lock()
            .unwrap()
            .push((index, Seen::Time(time_ms)));
    }

    fn next_deadline_ms(&self) -> Option<u64> {
        self.deadline
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

async fn cluster(uses: bool) -> (Vec<Node>, BTreeMap<String, Journal>) {
    let net = MemoryNetwork::new();
    let members: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("n{i}"), format!("n{i}")))
        .collect();
    let mut nodes = Vec::new();
    let mut journals = BTreeMap::new();
    for (id, _) in &members {
        let journal = Journal::default();
        let node = Node::new(Options {
            id: Some(id.clone()),
            cluster: Some("clock".into()),
            transport: Some(Arc::new(net.transport(id))),
            persistence: Some(Arc::new(MemoryPersistence::new())),
            bootstrap: Bootstrap::Static(members.clone()),
            seed: Some(node_number(id)),
            state_machine: Some(Box::new(Clocked {
                now_ms: 0,
                deadline: None,
                journal: journal.clone(),
                uses,
            })),
            ..Options::default()
        })
        .await
        .expect("a node starts");
        nodes.push(node);
        journals.insert(id.clone(), journal);
    }
    (nodes, journals)
}

async fn leader(nodes: &[Node]) -> Node {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(n) = nodes.iter().find(|n| n.role() == Role::Leader) {
            return n.clone();
        }
        assert!(Instant::now() < deadline, "no leader");
        sleep(Duration::from_millis(20)).await;
    }
}

fn ask(deadline_in_ms: u64) -> Bytes {
    Bytes::copy_from_slice(&deadline_in_ms.to_le_bytes())
}

/// Waits until every journal holds `commands` commands at least, then
/// checks they agree on their common prefix.
async fn agreed(journals: &BTreeMap<String, Journal>, commands: usize) -> Vec<(u64, Seen)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let all: Vec<Vec<(u64, Seen)>> = journals
            .values()
            .map(|j| j.lock().unwrap().clone())
            .collect();
        let count = |j: &Vec<(u64, Seen)>| {
            j.iter()
                .filter(|(_, s)| matches!(s, Seen::Command(_)))
                .count()
        };
        if all.iter().all(|j| count(j) >= commands) {
            let shortest = all.iter().map(Vec::len).min().unwrap_or(0);
            for j in &all[1..] {
                assert_eq!(
                    &j[..shortest],
                    &all[0][..shortest],
                    "every node sees the same times at the same log positions"
                );
            }
            return all[0].clone();
        }
        assert!(Instant::now() < deadline, "the journals did not fill up");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_apply_at_the_leaders_time_and_every_node_agrees() {
    let (nodes, journals) = cluster(true).await;
    leader(&nodes).await;
    let mut sent = Vec::new();
    for i in 0..20 {
        // Through every node: a follower forwards, the leader stamps.
        let node = &nodes[i % nodes.len()];
        let before = wall_ms();
        let out = node.command(ask(0)).await.expect("the command applies");
        let after = wall_ms();
        let at: u64 = std::str::from_utf8(&out).unwrap().parse().unwrap();
        sent.push((before, at, after));
        if i % 5 == 4 {
            sleep(Duration::from_millis(3)).await;
        }
    }
    for (before, at, after) in &sent {
        // The leader's clock is this machine's clock: a command applies at
        // a log time stamped no earlier than its call began.
        assert!(
            before <= at && at <= after,
            "a command sent at {before} and answered at {after} applied at log time {at}"
        );
    }
    let journal = agreed(&journals, 20).await;
    let times: Vec<u64> = journal
        .iter()
        .filter_map(|(_, s)| match s {
            Seen::Time(t) => Some(*t),
            Seen::Command(_) => None,
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "times only move forward: {times:?}"
    );
    assert!(!times.is_empty());
    for n in nodes {
        n.shutdown().await.expect("shuts down");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_is_reached_through_the_log_without_a_command() {
    let (nodes, journals) = cluster(true).await;
    let leader = leader(&nodes).await;
    let out = leader.command(ask(300)).await.expect("applies");
    let at: u64 = std::str::from_utf8(&out).unwrap().parse().unwrap();
    let due = at + 300;
    // No more commands: the leader must propose a time entry once its
    // clock passes the deadline, and every node must apply it.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let all_past = journals.values().all(|j| {
            j.lock()
                .unwrap()
                .iter()
                .any(|(_, s)| matches!(s, Seen::Time(t) if *t >= due))
        });
        if all_past {
            break;
        }
        assert!(Instant::now() < deadline, "the deadline {due} never came");
        sleep(Duration::from_millis(10)).await;
    }
    let reached = wall_ms();
    assert!(reached >= due, "not before the deadline");
    let journal = agreed(&journals, 1).await;
    // Once the deadline passed, no more time entries come while idle.
    sleep(Duration::from_millis(300)).await;
    let count = |j: &Journal| j.lock().unwrap().len();
    let settled: Vec<usize> = journals.values().map(count).collect();
    sleep(Duration::from_millis(300)).await;
    let later: Vec<usize> = journals.values().map(count).collect();
    assert_eq!(
        settled, later,
        "an idle cluster without deadlines proposes nothing: {journal:?}"
    );
    for n in nodes {
        n.shutdown().await.expect("shuts down");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_does_not_read_the_log_time_gets_no_time_entries() {
    let (nodes, journals) = cluster(false).await;
    let leader = leader(&nodes).await;
    for _ in 0..10 {
        leader.command(ask(50)).await.expect("applies");
        sleep(Duration::from_millis(2)).await;
    }
    sleep(Duration::from_millis(200)).await;
    let journal = agreed(&journals, 10).await;
    assert!(
        journal.iter().all(|(_, s)| *s == Seen::Command(0)),
        "no time entries and a log time that never moves: {journal:?}"
    );
    for n in nodes {
        n.shutdown().await.expect("shuts down");
    }
}
