//! Simulated clients: each runs one operation at a time (read, write or
//! compare-and-set on a few keys) against some node, and the history of
//! invocations and completions is recorded for the linearizability checker.
//!
//! An operation that times out stays open: it may take effect later, or
//! never. A write whose entry was replaced by another term's entry at the
//! same index definitely did not take effect and is proposed again.

use raft_core::{LogIndex, ProposeError, Term};
use raft_lincheck::{Input, Operation, Output};
use rand::Rng;

use crate::cluster::{id_of, Ev, Sim};
use crate::kv::{Action, Command, Outcome};

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not answered yet.
    Pending,
    /// Answered.
    Done,
    /// The client gave up; the outcome is unknown.
    TimedOut,
    /// Known to have had no effect (a read that was abandoned).
    Dropped,
}

/// One client operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// The client.
    pub client: usize,
    /// The key.
    pub key: u64,
    /// What was asked.
    pub input: Input,
    /// Invocation time.
    pub call: u64,
    /// Completion time and result.
    pub ret: Option<(u64, Output)>,
    /// Where it stands.
    pub status: Status,
    /// For writes: where the entry was committed.
    pub committed_at: Option<(LogIndex, Term)>,
}

#[derive(Debug, Clone, Default)]
struct Client {
    busy: Option<u64>,
    target: usize,
    stopped: bool,
}

/// The clients and the history.
#[derive(Debug, Default)]
pub struct Workload {
    /// Every operation; op id `k` is `ops[k - 1]`.
    pub ops: Vec<Op>,
    clients: Vec<Client>,
    /// Last value each client saw written per key, to make CAS succeed often.
    recent_values: Vec<Option<u64>>,
    /// Time of the first write invoked at or after `watch_from` that
    /// completed, for the liveness measurement.
    pub first_write_after: Option<u64>,
    /// See `first_write_after`.
    pub watch_from: Option<u64>,
}

impl Workload {
    /// `clients` idle clients.
    pub fn new(clients: usize) -> Workload {
        Workload {
            ops: Vec::new(),
            clients: vec![Client::default(); clients],
            recent_values: Vec::new(),
            first_write_after: None,
            watch_from: None,
        }
    }

    /// The key of operation `op`.
    pub fn key_of(&self, op: u64) -> u64 {
        self.ops[(op - 1) as usize].key
    }

    /// The history for the checker: dropped operations are left out, open
    /// reads too (they have no effect).
    pub fn history(&self) -> Vec<Operation> {
        self.ops
            .iter()
            .filter(|op| op.status != Status::Dropped)
            .filter(|op| !(op.ret.is_none() && op.input == Input::Read))
            .map(|op| Operation {
                client: op.client as u64,
                key: op.key,
                input: op.input,
                call: op.call,
                ret: op.ret,
            })
            .collect()
    }

    /// Operations answered.
    pub fn completed(&self) -> usize {
        self.ops.iter().filter(|o| o.status == Status::Done).count()
    }

    /// Operations that timed out.
    pub fn timed_out(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| o.status == Status::TimedOut)
            .count()
    }
}

impl Sim {
    /// Starts every client.
    pub fn start_clients(&mut self) {
        for c in 0..self.workload.clients.len() {
            self.workload.clients[c].stopped = false;
            let d = self.rng.random_range(0..=self.cfg.think_us.1);
            self.schedule(d, Ev::Client(c));
        }
    }

    /// Stops clients from starting new operations.
    pub fn stop_clients(&mut self) {
        for c in &mut self.workload.clients {
            c.stopped = true;
        }
    }

    /// Client `c` starts its next operation.
    pub(crate) fn client_next(&mut self, c: usize) {
        let client = &self.workload.clients[c];
        if client.busy.is_some() || client.stopped {
            return;
        }
        let key = self.rng.random_range(0..self.cfg.keys);
        let op_id = self.workload.ops.len() as u64 + 1;
        let input = match self.rng.random_range(0..100) {
            0..45 => Input::Read,
            45..85 => Input::Write(op_id),
            _ => {
                if self.workload.recent_values.len() <= key as usize {
                    self.workload.recent_values.resize(key as usize + 1, None);
                }
                let expected = if self.rng.random_bool(0.8) {
                    self.workload.recent_values[key as usize]
                } else {
                    None
                };
                Input::Cas {
                    expected,
                    new: op_id,
                }
            }
        };
        self.workload.ops.push(Op {
            client: c,
            key,
            input,
            call: self.now,
            ret: None,
            status: Status::Pending,
            committed_at: None,
        });
        self.workload.clients[c].busy = Some(op_id);
        let timeout = self.cfg.client_timeout_us;
        self.schedule(timeout, Ev::Timeout(op_id));
        self.submit(op_id);
    }

    fn op(&self, op: u64) -> &crate::workload::Op {
        &self.workload.ops[(op - 1) as usize]
    }

    /// Sends operation `op` to the client's target node.
    pub(crate) fn submit(&mut self, op: u64) {
        if self.op(op).status != Status::Pending {
            return;
        }
        let c = self.op(op).client;
        let mut target = self.workload.clients[c].target;
        if target >= self.nodes.len() || !self.nodes[target].is_up() {
            let up = self.up_nodes();
            if up.is_empty() {
                self.schedule(10_000, Ev::Submit(op));
                return;
            }
            target = up[self.rng.random_range(0..up.len())];
            self.workload.clients[c].target = target;
        }
        let o = self.op(op).clone();
        let raft = self.nodes[target].raft.as_mut().expect("target is up");
        match o.input {
            Input::Read => match raft.read_index(op) {
                Ok(()) => {
                    self.nodes[target].reads.insert(op, op);
                }
                Err(_) => self.retry_elsewhere(op, c),
            },
            Input::Write(v) | Input::Cas { new: v, .. } => {
                let action = match o.input {
                    Input::Write(_) => Action::Write(v),
                    Input::Cas { expected, new } => Action::Cas { expected, new },
                    Input::Read | Input::Expire(_) => unreachable!("matched above"),
                };
                let cmd = Command {
                    op,
                    key: o.key,
                    action,
                };
                match raft.propose(cmd.encode()) {
                    Ok(index) => {
                        let term = raft.term();
                        self.nodes[target].proposals.insert(index, (term, op));
                    }
                    Err(ProposeError::NotLeader {
                        leader: Some(leader),
                    }) => {
                        self.workload.clients[c].target = (leader - 1) as usize;
                        self.schedule(1_000, Ev::Submit(op));
                    }
                    Err(_) => self.retry_elsewhere(op, c),
                }
            }
            Input::Expire(_) => unreachable!("the simulated clients write no time to live"),
        }
        self.drive(target);
    }

    fn retry_elsewhere(&mut self, op: u64, c: usize) {
        let n = self.nodes.len();
        self.workload.clients[c].target = self.rng.random_range(0..n);
        self.schedule(10_000, Ev::Submit(op));
    }

    /// A client gives up on `op`.
    pub(crate) fn timeout(&mut self, op: u64) {
        let o = &mut self.workload.ops[(op - 1) as usize];
        if o.status != Status::Pending {
            return;
        }
        o.status = if o.input == Input::Read {
            Status::Dropped
        } else {
            Status::TimedOut
        };
        let c = o.client;
        self.note(format!("op {op} times out"));
        self.client_done(c, op);
    }

    fn client_done(&mut self, c: usize, op: u64) {
        if self.workload.clients[c].busy == Some(op) {
            self.workload.clients[c].busy = None;
            let (a, b) = self.cfg.think_us;
            let d = self.rng.random_range(a..=b);
            self.schedule(d, Ev::Client(c));
        }
    }

    /// A write or CAS took effect at (`index`, `term`) with `outcome`.
    pub(crate) fn op_applied(&mut self, op: u64, outcome: Outcome, index: LogIndex, term: Term) {
        let now = self.now;
        let o = &mut self.workload.ops[(op - 1) as usize];
        o.committed_at = Some((index, term));
        if o.status != Status::Pending {
            return;
        }
        let out = match outcome {
            Outcome::Written => Output::Write,
            Outcome::Cas(ok) => Output::Cas(ok),
        };
        o.ret = Some((now, out));
        o.status = Status::Done;
        let (c, key, written) = match o.input {
            Input::Write(v) => (o.client, o.key, Some(v)),
            Input::Cas { new, .. } if outcome == Outcome::Cas(true) => (o.client, o.key, Some(new)),
            _ => (o.client, o.key, None),
        };
        if let Some(v) = written {
            if self.workload.recent_values.len() <= key as usize {
                self.workload.recent_values.resize(key as usize + 1, None);
            }
            self.workload.recent_values[key as usize] = Some(v);
        }
        if let (Some(from), None) = (self.workload.watch_from, self.workload.first_write_after) {
            if self.workload.ops[(op - 1) as usize].call >= from {
                self.workload.first_write_after = Some(now);
            }
        }
        self.client_done(c, op);
    }

    /// A write's entry was replaced by another: it had no effect; try again.
    pub(crate) fn op_lost(&mut self, op: u64) {
        let c = self.op(op).client;
        self.note(format!("op {op}'s entry was overwritten; proposing again"));
        self.retry_elsewhere(op, c);
    }

    /// A read returned `value`.
    pub(crate) fn op_read(&mut self, op: u64, value: Option<u64>) {
        let now = self.now;
        let o = &mut self.workload.ops[(op - 1) as usize];
        if o.status != Status::Pending {
            return;
        }
        o.ret = Some((now, Output::Read(value)));
        o.status = Status::Done;
        let c = o.client;
        self.client_done(c, op);
    }

    /// A read could not be confirmed: try again (reads have no effect).
    pub(crate) fn op_retry(&mut self, op: u64) {
        let c = self.op(op).client;
        self.retry_elsewhere(op, c);
    }

    /// Node slot of client `c`'s current target, for scenarios.
    pub fn client_target(&self, c: usize) -> u64 {
        id_of(self.workload.clients[c].target)
    }
}

impl Sim {
    /// Gives up on every pending operation (they stay open, or are dropped
    /// for reads) and frees the clients, so that new operations start now.
    pub fn abandon_pending_ops(&mut self) {
        for o in &mut self.workload.ops {
            if o.status == Status::Pending {
                o.status = if o.input == Input::Read {
                    Status::Dropped
                } else {
                    Status::TimedOut
                };
            }
        }
        for c in &mut self.workload.clients {
            c.busy = None;
        }
        for node in &mut self.nodes {
            node.reads.clear();
        }
    }
}
