//! Linearizable reads without writing to the log (Raft thesis 6.4):
//! ReadIndex, leader lease, and reads forwarded from followers.
//!
//! A read's index is the leader's commit index when the read arrives, taken
//! only once the leader has committed an entry of its own term (before that,
//! the commit index may be stale). The read may be served once
//! 1. the leader confirmed it was still leader after the read arrived: a
//!    majority acknowledged a heartbeat round started after it (ReadIndex), or
//!    the leader's lease holds (a majority acknowledged a round sent less than
//!    `election_timeout_ticks_min - lease_drift_ticks` ticks ago, so no other
//!    leader can have been elected meanwhile);
//! 2. the serving node has applied at least the read's index.
//!
//! Every message a leader sends carries its current round; replies echo it.

use std::collections::VecDeque;

use crate::bugs::Bug;
use crate::config::ReadMode;
use crate::message::Body;
use crate::quorum::committed_value;
use crate::raft::{Outbox, Raft};
use crate::ready::ReadState;
use crate::types::{LogIndex, NodeId, Role, NO_NODE};

/// Why a read cannot even be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No leader is known to confirm the read.
    #[error("no leader is known: retry after an election")]
    NoLeader,
}

/// The most round start times kept for lease computations.
const MAX_ROUND_TICKS: usize = 4096;

/// Who asked for a read the leader is confirming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requester {
    Local,
    Follower(NodeId),
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    from: Requester,
    id: u64,
    index: LogIndex,
    round: u64,
}

/// Reads in their various stages.
///
/// Invariants:
/// - `round` only grows, and `round_ticks` is ascending in both fields;
/// - every read in `confirming` has an index taken after the leader
///   committed an entry of its term, and a round started after it arrived;
/// - `confirmed` holds reads whose leadership check passed; they wait only
///   for the applied index.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// The current heartbeat round; every leader message carries it.
    pub round: u64,
    /// (round, tick at which the round started), for the lease.
    round_ticks: VecDeque<(u64, u64)>,
    /// Leader: an entry of this term has committed.
    term_committed: bool,
    /// Leader: reads that arrived before an entry of this term committed.
    awaiting_term_commit: Vec<(Requester, u64)>,
    /// Leader: reads with an index, waiting for the next round to start.
    unassigned: Vec<Pending>,
    /// Leader: reads waiting for a majority to acknowledge their round.
    confirming: VecDeque<Pending>,
    /// Reads confirmed, waiting for the applied index to reach theirs.
    confirmed: Vec<ReadState>,
    /// Reads forwarded to the leader: (id, leader).
    forwarded: Vec<(u64, NodeId)>,
}

impl Reads {
    /// Starts a new round at `tick`; reads waiting for one join it.
    pub fn new_round(&mut self, tick: u64) -> u64 {
        self.round += 1;
        self.round_ticks.push_back((self.round, tick));
        if self.round_ticks.len() > MAX_ROUND_TICKS {
            self.round_ticks.pop_front();
        }
        let round = self.round;
        for mut p in self.unassigned.drain(..) {
            p.round = round;
            self.confirming.push_back(p);
        }
        round
    }

    /// The tick at which `round` (or the latest round before it that is
    /// still remembered) started; 0 if unknown, which shortens the lease.
    fn tick_of(&self, round: u64) -> u64 {
        let i = self.round_ticks.partition_point(|&(r, _)| r <= round);
        if i == 0 {
            0
        } else {
            self.round_ticks[i - 1].1
        }
    }

    /// True when `ready` may have reads to hand out or a round to start.
    pub fn has_work(&self, applied: LogIndex) -> bool {
        !self.unassigned.is_empty() || self.confirmed.iter().any(|r| r.index <= applied)
    }

    /// Moves confirmed reads whose index is applied into `out`.
    pub fn take_ready(&mut self, applied: LogIndex, out: &mut Vec<ReadState>) {
        let mut i = 0;
        while i < self.confirmed.len() {
            if self.confirmed[i].index <= applied {
                out.push(self.confirmed.remove(i));
            } else {
                i += 1;
            }
        }
    }

    /// This node just became leader: nothing is confirmed for its term yet.
    pub fn become_leader(&mut self) {
        self.term_committed = false;
        self.round_ticks.clear();
    }

    /// This node stopped being leader: its unconfirmed local reads fail;
    /// followers' reads are dropped (they time out and retry).
    pub fn step_down(&mut self, out: &mut Outbox) {
        self.term_committed = false;
        let local = |from: Requester| from == Requester::Local;
        out.aborted_reads.extend(
            self.awaiting_term_commit
                .drain(..)
                .filter(|(from, _)| local(*from))
                .map(|(_, id)| id),
        );
        let pending = self.unassigned.drain(..).chain(self.confirming.drain(..));
        out.aborted_reads
            .extend(pending.filter(|p| local(p.from)).map(|p| p.id));
    }

    /// The leader changed: reads forwarded to the old one fail.
    pub fn leader_changed(&mut self, aborted: &mut Vec<u64>) {
        aborted.extend(self.forwarded.drain(..).map(|(id, _)| id));
    }
}

impl Raft {
    /// Starts a linearizable read with the caller's `id`. The outcome comes
    /// back in a later [`crate::Ready`]: in `reads` once it may be served, or
    /// in `aborted_reads` if leadership was lost meanwhile.
    pub fn read_index(&mut self, id: u64) -> Result<(), ReadError> {
        if self.role == Role::Leader {
            self.leader_read(Requester::Local, id);
            return Ok(());
        }
        if self.leader == NO_NODE {
            return Err(ReadError::NoLeader);
        }
        self.reads.forwarded.push((id, self.leader));
        self.send(self.leader, Body::ReadIndex { id });
        Ok(())
    }

    fn leader_read(&mut self, from: Requester, id: u64) {
        if self.bug(Bug::ReadWithoutQuorum) {
            let index = self.log.commit;
            self.confirm_read(from, id, index);
            return;
        }
        if !self.reads.term_committed {
            self.reads.awaiting_term_commit.push((from, id));
            return;
        }
        let index = self.log.commit;
        if self.lease_valid() {
            self.metrics.reads_by_lease += 1;
            self.confirm_read(from, id, index);
            return;
        }
        self.reads.unassigned.push(Pending {
            from,
            id,
            index,
            round: 0,
        });
        // The round starts at the next flush, so reads arriving together
        // share one heartbeat round.
        self.needs_flush = true;
    }

    fn confirm_read(&mut self, from: Requester, id: u64, index: LogIndex) {
        match from {
            Requester::Local => self.reads.confirmed.push(ReadState { id, index }),
            Requester::Follower(node) => {
                let body = Body::ReadIndexResponse {
                    id,
                    index: Some(index),
                };
                self.send(node, body);
            }
        }
    }

    /// Leader: an entry of the current term committed at `index`; reads that
    /// waited for it can take their index now.
    pub(crate) fn on_term_committed(&mut self) {
        if self.reads.term_committed {
            return;
        }
        self.reads.term_committed = true;
        let waiting = std::mem::take(&mut self.reads.awaiting_term_commit);
        for (from, id) in waiting {
            self.leader_read(from, id);
        }
    }

    /// Leader: starts a heartbeat round if reads wait for one.
    pub(crate) fn start_read_round(&mut self) {
        if !self.reads.unassigned.is_empty() {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Leader: confirms the reads whose round a majority acknowledged.
    pub(crate) fn check_read_quorum(&mut self) {
        if self.reads.confirming.is_empty() && self.cfg.read_mode != ReadMode::Lease {
            return;
        }
        let me = self.cfg.id;
        self.scratch.clear();
        for v in self.conf.current().voters() {
            let round = if v == me {
                self.reads.round
            } else {
                self.progress.get(&v).map_or(0, |p| p.acked_round)
            };
            self.scratch.push(round);
        }
        let quorum_round = committed_value(&mut self.scratch);
        while let Some(p) = self.reads.confirming.front().copied() {
            if p.round > quorum_round {
                break;
            }
            self.reads.confirming.pop_front();
            self.metrics.reads_by_round += 1;
            self.confirm_read(p.from, p.id, p.index);
        }
        // Rounds before the majority's are no longer needed for the lease.
        while self.reads.round_ticks.len() > 1 && self.reads.round_ticks[1].0 <= quorum_round {
            self.reads.round_ticks.pop_front();
        }
    }

    /// True when the leader lease holds at this tick.
    fn lease_valid(&mut self) -> bool {
        if self.cfg.read_mode != ReadMode::Lease || !self.cfg.check_quorum || self.lease_revoked {
            return false;
        }
        let me = self.cfg.id;
        let now = self.ticks;
        self.scratch.clear();
        for v in self.conf.current().voters() {
            let tick = if v == me {
                now
            } else {
                let acked = self.progress.get(&v).map_or(0, |p| p.acked_round);
                if acked == 0 {
                    0
                } else {
                    self.reads.tick_of(acked)
                }
            };
            self.scratch.push(tick);
        }
        if self.scratch.is_empty() {
            return false;
        }
        let since = committed_value(&mut self.scratch);
        let lease = self.cfg.election_timeout_ticks_min - self.cfg.lease_drift_ticks;
        now < since + lease
    }

    /// Leader: a follower asks for a read index.
    pub(crate) fn handle_read_index_request(&mut self, from: NodeId, id: u64) {
        if self.role == Role::Leader {
            self.leader_read(Requester::Follower(from), id);
        } else {
            self.send(from, Body::ReadIndexResponse { id, index: None });
        }
    }

    /// Follower: the leader's answer to a forwarded read.
    pub(crate) fn handle_read_index_response(&mut self, id: u64, index: Option<LogIndex>) {
        let Some(pos) = self.reads.forwarded.iter().position(|&(i, _)| i == id) else {
            return;
        };
        self.reads.forwarded.remove(pos);
        match index {
            Some(index) => self.reads.confirmed.push(ReadState { id, index }),
            None => self.out.aborted_reads.push(id),
        }
    }
}
