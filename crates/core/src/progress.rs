//! What a leader knows of each follower's log, and how it paces replication.

use std::collections::{BTreeMap, VecDeque};

use crate::types::{LogIndex, NodeId, Snapshot};

/// How the leader is replicating to one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationState {
    /// The follower's position is unknown: one append at a time, each waiting
    /// for its reply (or the next heartbeat reply) before the next.
    Probe,
    /// The follower's position is known: appends are pipelined, up to
    /// `max_inflight_appends` at a time.
    Replicate,
    /// The follower needs entries that were compacted: a snapshot is being
    /// sent in chunks.
    Snapshot(SnapshotSend),
}

/// A snapshot transfer to one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSend {
    /// The snapshot being sent. The transfer finishes with this one even if a
    /// newer one is taken meanwhile (restarting would risk the livelock of
    /// hashicorp/raft #697).
    pub snapshot: Snapshot,
    /// Bytes the follower acknowledged.
    pub acked_bytes: u64,
    /// Bytes sent so far (`acked_bytes <= sent_bytes`).
    pub sent_bytes: u64,
    /// `acked_bytes` at the previous heartbeat reply: no progress between two
    /// replies means chunks were lost and are sent again.
    pub acked_bytes_at_heartbeat: u64,
}

/// The leader's view of one follower (or learner).
///
/// Invariants:
/// - `match_index < next_index`;
/// - in `Replicate`, `inflight` holds the last index of each append sent and
///   not yet acknowledged, ascending, at most `max_inflight_appends` of them;
/// - in `Probe`, at most one append is outstanding (`probe_sent`).
#[derive(Debug, Clone)]
pub struct Progress {
    /// The highest index known to be durably replicated on the follower.
    pub match_index: LogIndex,
    /// The next index to send.
    pub next_index: LogIndex,
    /// How replication proceeds.
    pub state: ReplicationState,
    /// In `Probe`: an append is outstanding; wait for its reply.
    pub probe_sent: bool,
    /// In `Replicate`: the last index of each outstanding append.
    pub inflight: VecDeque<LogIndex>,
    /// `match_index` at the previous heartbeat reply (stall detection).
    pub match_at_heartbeat: LogIndex,
    /// The follower answered since the last check-quorum.
    pub recent_active: bool,
    /// The highest heartbeat round the follower acknowledged.
    pub acked_round: u64,
    /// The leader tick at the last reply, for stats.
    pub last_contact_tick: u64,
    /// The highest commit index sent to the follower (capped at what it
    /// holds): when the leader commits more and nothing else is on its way,
    /// an empty append tells the follower.
    pub commit_sent: LogIndex,
}

impl Progress {
    /// A follower whose position is unknown; probing starts at `next_index`.
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ReplicationState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            match_at_heartbeat: 0,
            recent_active: false,
            acked_round: 0,
            last_contact_tick: 0,
            commit_sent: 0,
        }
    }

    /// Goes back to probing from `next_index`.
    pub fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ReplicationState::Probe;
        self.next_index = next_index.max(self.match_index + 1);
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// Starts pipelining after `match_index`.
    pub fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// Starts sending `snapshot`.
    pub fn become_snapshot(&mut self, snapshot: Snapshot) {
        self.state = ReplicationState::Snapshot(SnapshotSend {
            snapshot,
            acked_bytes: 0,
            sent_bytes: 0,
            acked_bytes_at_heartbeat: 0,
        });
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// The follower holds everything up to `index`. Returns true if that is
    /// news.
    pub fn acknowledge(&mut self, index: LogIndex) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        advanced
    }

    /// True when the leader may send this follower another append now.
    pub fn can_send(&self, max_inflight: usize) -> bool {
        match self.state {
            ReplicationState::Probe => !self.probe_sent,
            ReplicationState::Replicate => self.inflight.len() < max_inflight,
            ReplicationState::Snapshot(_) => false,
        }
    }

    /// Records an append of entries up to `last` just sent.
    pub fn sent(&mut self, last: LogIndex, entries: usize) {
        match self.state {
            ReplicationState::Probe => self.probe_sent = true,
            ReplicationState::Replicate if entries > 0 => {
                self.next_index = last + 1;
                self.inflight.push_back(last);
            }
            _ => {}
        }
    }

    /// Checks the invariants (debug builds only).
    pub fn debug_check(&self, max_inflight: usize) {
        debug_assert!(self.match_index < self.next_index, "{self:?}");
        debug_assert!(self.inflight.len() <= max_inflight);
    }
}

/// Every follower's progress, keyed by node id (the leader itself excluded).
pub type ProgressMap = BTreeMap<NodeId, Progress>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sends_one_at_a_time() {
        let mut p = Progress::new(5);
        assert!(p.can_send(4));
        p.sent(7, 3);
        assert!(!p.can_send(4));
        assert_eq!(p.next_index, 5, "probing does not move next_index");
    }

    #[test]
    fn replicate_pipelines_up_to_the_window() {
        let mut p = Progress::new(1);
        p.acknowledge(3);
        p.become_replicate();
        assert_eq!(p.next_index, 4);
        p.sent(5, 2);
        p.sent(8, 3);
        assert!(!p.can_send(2));
        assert!(p.acknowledge(5));
        assert!(p.can_send(2));
        assert_eq!(p.inflight, VecDeque::from([8]));
        assert_eq!(p.next_index, 9);
    }

    #[test]
    fn stale_acknowledgement_changes_nothing() {
        let mut p = Progress::new(1);
        p.acknowledge(6);
        assert!(!p.acknowledge(4));
        assert_eq!(p.match_index, 6);
    }
}
