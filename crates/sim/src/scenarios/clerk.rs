//! A scripted key-value client: MIT's `Clerk`, confined to the servers it
//! can reach, for the kv scenarios that need clients on one side of a
//! partition (the simulator's own clients may reach any server).
//!
//! Both puts and gets go through the log, as in MIT's kvraft: a put is a
//! `kv::Command` write; a get is a marker entry the state machine ignores,
//! whose value is the key's value in the state after its index. The clerk
//! proposes at a server it can reach that believes it leads, and waits for
//! that index to be committed: by its entry (done), or by another one (lost:
//! propose again). It never proposes a put twice while an earlier attempt
//! may still commit, so a put takes effect once. Operations are recorded in
//! the simulator's history, so they are checked for linearizability.

use bytes::Bytes;
use raft_core::{EntryPayload, LogIndex, Role, Term};
use raft_lincheck::{Input, Output};

use super::support::{ensure, Tester, MS, SECOND};
use crate::cluster::Sim;
use crate::kv::{payload_hash, Action, Command, Kv};
use crate::workload::{Op, Status};

/// The operation a clerk runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Set `key` to the value.
    Put(u64, u64),
    /// Read `key`.
    Get(u64),
}

#[derive(Debug, Clone)]
struct Call {
    /// The operation's id in the history.
    op: u64,
    request: Request,
    payload: Bytes,
    /// The index and term of the attempt in flight.
    attempt: Option<(LogIndex, Term)>,
    result: Option<Output>,
}

/// A scripted client that can reach `servers` only.
#[derive(Debug, Clone)]
pub struct Clerk {
    /// The client id recorded in the history.
    pub client: usize,
    /// The servers this clerk can reach.
    pub servers: Vec<usize>,
    call: Option<Call>,
}

/// The key's value in the state after applying `index`, rebuilt from a
/// running server that committed `index`: its last durable snapshot at or
/// below `index`, then its log entries up to `index`.
fn value_at(sim: &Sim, key: u64, index: LogIndex) -> Option<Option<u64>> {
    'nodes: for node in &sim.nodes {
        let Some(raft) = &node.raft else { continue };
        if raft.commit_index() < index {
            continue;
        }
        let (mut kv, from) = match &node.disk.snapshot {
            Some(s) if s.meta.index <= index => (Kv::restore(&s.data)?, s.meta.index),
            Some(_) => continue,
            None => (Kv::default(), 0),
        };
        kv.applied = from;
        for i in from + 1..=index {
            let Some(e) = raft.entry(i) else {
                continue 'nodes;
            };
            let command = match &e.payload {
                EntryPayload::Command(data) => Command::decode(data),
                _ => None,
            };
            kv.apply(i, command.as_ref());
        }
        return Some(kv.get(key));
    }
    None
}

impl Clerk {
    /// A clerk for history client `client` that can reach `servers`.
    pub fn new(client: usize, servers: &[usize]) -> Clerk {
        Clerk {
            client,
            servers: servers.to_vec(),
            call: None,
        }
    }

    /// Starts `request` (the previous one must have finished).
    pub fn begin(&mut self, t: &mut Tester, request: Request) {
        assert!(
            self.call.as_ref().is_none_or(|c| c.result.is_some()),
            "one call at a time"
        );
        let ops = &mut t.sim.workload.ops;
        let op = ops.len() as u64 + 1;
        let (key, input, payload) = match request {
            Request::Put(key, value) => {
                let c = Command {
                    op,
                    key,
                    action: Action::Write(value),
                };
                (key, Input::Write(value), c.encode())
            }
            // Too short to decode as a command: the state machine skips it.
            Request::Get(key) => (key, Input::Read, Bytes::from(format!("get {op}"))),
        };
        ops.push(Op {
            client: self.client,
            key,
            input,
            call: t.sim.now,
            ret: None,
            status: Status::Pending,
            committed_at: None,
        });
        self.call = Some(Call {
            op,
            request,
            payload,
            attempt: None,
            result: None,
        });
    }

    /// The result of the current call, once it finished.
    pub fn result(&self) -> Option<Output> {
        self.call.as_ref().and_then(|c| c.result)
    }

    /// True while a call is in progress.
    pub fn busy(&self) -> bool {
        self.call.as_ref().is_some_and(|c| c.result.is_none())
    }

    /// Moves the current call along: proposes it if no attempt is in
    /// flight, or looks at what was committed at the attempt's index.
    pub fn poll(&mut self, t: &mut Tester) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        if call.result.is_some() {
            return;
        }
        let Some((index, term)) = call.attempt else {
            for &s in &self.servers {
                let leads = t.sim.raft(s).is_some_and(|r| r.role() == Role::Leader);
                if !leads {
                    continue;
                }
                if let Some(index) = t.sim.propose_at(s, call.payload.clone()) {
                    let term = t.sim.raft(s).map_or(0, |r| r.term());
                    call.attempt = Some((index, term));
                    break;
                }
            }
            return;
        };
        let Some((t2, h)) = t.sim.checker.committed_at(index) else {
            return;
        };
        if t2 != term || h != payload_hash(&EntryPayload::Command(call.payload.clone())) {
            call.attempt = None; // another entry won the index: try again
            return;
        }
        let output = match call.request {
            Request::Put(..) => Output::Write,
            Request::Get(key) => match value_at(&t.sim, key, index) {
                Some(v) => Output::Read(v),
                None => {
                    // Compacted everywhere already: a get may simply be retried.
                    call.attempt = None;
                    return;
                }
            },
        };
        call.result = Some(output);
        let op = &mut t.sim.workload.ops[(call.op - 1) as usize];
        op.ret = Some((t.sim.now, output));
        op.status = Status::Done;
        op.committed_at = Some((index, term));
    }

    /// Lets `d` pass, polling `clerks` every millisecond.
    pub fn run(t: &mut Tester, clerks: &mut [&mut Clerk], d: u64) -> Result<(), String> {
        let until = t.sim.now + d;
        while t.sim.now < until {
            for c in clerks.iter_mut() {
                c.poll(t);
            }
            t.sleep(MS.min(until - t.sim.now))?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for `clerks[which]` to finish its call,
    /// polling the others meanwhile; returns its result.
    pub fn await_result(
        t: &mut Tester,
        clerks: &mut [&mut Clerk],
        which: usize,
        timeout: u64,
    ) -> Result<Output, String> {
        let until = t.sim.now + timeout;
        loop {
            for c in clerks.iter_mut() {
                c.poll(t);
            }
            if let Some(out) = clerks[which].result() {
                return Ok(out);
            }
            ensure!(
                t,
                t.sim.now < until,
                "client {}'s {:?} did not complete within {} ms",
                clerks[which].client,
                clerks[which].call.as_ref().map(|c| c.request),
                timeout / MS
            );
            t.sleep(MS)?;
        }
    }

    /// MIT's `ck.Put(key, value)`, on its own: fails after 10 s.
    pub fn put(&mut self, t: &mut Tester, key: u64, value: u64) -> Result<(), String> {
        self.begin(t, Request::Put(key, value));
        Clerk::await_result(t, &mut [self], 0, 10 * SECOND)?;
        Ok(())
    }

    /// MIT's `ck.Get(key)`, on its own: fails after 10 s.
    pub fn get(&mut self, t: &mut Tester, key: u64) -> Result<Option<u64>, String> {
        self.begin(t, Request::Get(key));
        match Clerk::await_result(t, &mut [self], 0, 10 * SECOND)? {
            Output::Read(v) => Ok(v),
            other => Err(t.failure(&format!("a get returned {other:?}"))),
        }
    }
}
