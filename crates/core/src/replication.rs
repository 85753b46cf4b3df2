//! Log replication: proposals, appends and their replies, heartbeats, and
//! the commit rule.
//!
//! Rules kept here:
//! - a follower appends only after the entry before the new ones matches
//!   (section 5.3), and truncates only from the first entry that conflicts;
//! - a leader commits only an entry of its own term, by counting the voters
//!   that durably hold it (section 5.4.2, Figure 8); entries of earlier terms
//!   commit with it;
//! - a leader never sends a follower a commit index beyond what the follower
//!   is known to hold (heartbeats cap it at the follower's match index);
//! - membership changes: one at a time, only after the leader committed an
//!   entry of its own term, in force as soon as appended.

use bytes::Bytes;

use crate::bugs::Bug;
use crate::membership::{ConfChange, MembershipError};
use crate::message::{Append, AppendOutcome, AppendResponse, Body};
use crate::progress::ReplicationState;
use crate::quorum::committed_value;
use crate::raft::Raft;
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, Role, NO_NODE};

/// Why a proposal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes proposals.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Leadership is being handed over; retry on the new leader.
    #[error("a leader transfer is in progress")]
    TransferInProgress,
    /// Too many bytes are waiting to be committed.
    #[error("{uncommitted_bytes} bytes are waiting to commit (limit {limit}): retry later")]
    Backpressure {
        /// Bytes beyond the commit index.
        uncommitted_bytes: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A configuration change is already in flight.
    #[error("the configuration change at index {0} is not committed yet")]
    ChangeInProgress(LogIndex),
    /// The leader has not yet committed an entry of its term.
    #[error("the new leader has not committed an entry of its term yet: retry shortly")]
    NotReady,
    /// The change itself is invalid.
    #[error("invalid membership change: {0}")]
    Membership(#[from] MembershipError),
}

impl Raft {
    /// Appends a command to the leader's log. Returns its index; the command
    /// took effect once an entry with this index and the current term is
    /// handed out in `committed_entries`.
    pub fn propose(&mut self, data: Bytes) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        let size = data.len() + 24;
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + size > self.cfg.max_uncommitted_bytes
        {
            self.metrics.proposals_refused += 1;
            return Err(ProposeError::Backpressure {
                uncommitted_bytes: self.uncommitted_bytes,
                limit: self.cfg.max_uncommitted_bytes,
            });
        }
        self.metrics.proposals += 1;
        Ok(self.append_own(EntryPayload::Command(data)))
    }

    /// Proposes a membership change (single-server: at most one voter added
    /// or removed). Returns the index of the configuration entry.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        if self.conf.current_index() > self.log.commit {
            return Err(ProposeError::ChangeInProgress(self.conf.current_index()));
        }
        if self.log.term(self.log.commit) != Some(self.term) {
            return Err(ProposeError::NotReady);
        }
        let next = self.conf.current().apply(&change)?;
        Ok(self.append_own(EntryPayload::Membership(next)))
    }

    fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        Ok(())
    }

    /// Appends an entry of the current term as leader; it is sent at the next
    /// flush, batched with whatever else was proposed meanwhile.
    fn append_own(&mut self, payload: EntryPayload) -> LogIndex {
        let entry = Entry {
            term: self.term,
            index: self.log.last_index() + 1,
            payload,
        };
        let index = entry.index;
        self.uncommitted_bytes += entry.size_bytes();
        let membership = match &entry.payload {
            EntryPayload::Membership(m) => Some(m.clone()),
            _ => None,
        };
        self.log.append(entry);
        if let Some(m) = membership {
            self.conf.push(index, m);
            self.sync_progress();
            // A change that shrank the quorum may commit more at once.
            self.maybe_commit();
        }
        self.needs_flush = true;
        index
    }

    /// Sends what each follower is missing, as far as its window allows.
    pub(crate) fn flush(&mut self) {
        if !self.needs_flush {
            return;
        }
        self.needs_flush = false;
        // Walks the progress map by key, as sending borrows it mutably.
        let mut next = self.progress.keys().next().copied();
        while let Some(id) = next {
            self.send_append(id);
            self.send_commit(id);
            next = self.progress.range(id + 1..).next().map(|(&id, _)| id);
        }
        let others = self.conf.current().len() - self.conf.current().contains(self.cfg.id) as usize;
        if self.progress.len() > others {
            // Removed members that just learned of their removal can go.
            self.sync_progress();
        }
    }

    /// Tells an idle follower about a commit index it has not heard of yet
    /// (busy followers learn it from the appends on their way).
    fn send_commit(&mut self, to: NodeId) {
        let commit = self.log.commit;
        let Some(pr) = self.progress.get(&to) else {
            return;
        };
        let known = commit.min(pr.match_index);
        if pr.state != ReplicationState::Replicate
            || !pr.inflight.is_empty()
            || pr.commit_sent >= known
        {
            return;
        }
        self.send(to, Body::Commit { commit: known });
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.commit_sent = known;
        }
    }

    /// Sends `to` as many appends as its replication state allows (one probe,
    /// or a window of pipelined batches), or snapshot chunks if the entries it
    /// needs were compacted.
    pub(crate) fn send_append(&mut self, to: NodeId) {
        loop {
            let Some(pr) = self.progress.get(&to) else {
                return;
            };
            if let ReplicationState::Snapshot(_) = pr.state {
                self.send_snapshot_chunks(to);
                return;
            }
            if !pr.can_send(self.cfg.max_inflight_appends) {
                return;
            }
            let next = pr.next_index;
            let probing = pr.state == ReplicationState::Probe;
            let last = self.log.last_index();
            if !probing && next > last {
                return;
            }
            let prev_index = next - 1;
            let Some(prev_term) = self.log.term(prev_index) else {
                if self.start_snapshot(to) {
                    continue;
                }
                return;
            };
            let to_index = last.min(prev_index + self.cfg.max_append_entries as u64);
            let entries = if next <= last {
                self.log.slice(next, to_index, self.cfg.max_append_bytes)
            } else {
                Vec::new()
            };
            let sent_last = prev_index + entries.len() as u64;
            let n = entries.len();
            let append = Append {
                prev_index,
                prev_term,
                entries,
                commit: self.log.commit,
                round: self.reads.round,
            };
            self.send(to, Body::Append(append));
            let commit = self.log.commit;
            let pr = self.progress.get_mut(&to).expect("checked above");
            pr.commit_sent = pr.commit_sent.max(commit.min(sent_last));
            pr.sent(sent_last, n);
            if probing {
                return;
            }
        }
    }

    /// Sends every follower a heartbeat that starts a new round.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let round = self.reads.new_round(self.ticks);
        let peers: Vec<(NodeId, LogIndex)> = self
            .progress
            .iter()
            .map(|(&id, p)| (id, p.match_index))
            .collect();
        for (id, matched) in peers {
            let commit = self.log.commit.min(matched);
            self.send(id, Body::Heartbeat { commit, round });
            if let Some(pr) = self.progress.get_mut(&id) {
                pr.commit_sent = pr.commit_sent.max(commit);
            }
        }
        self.check_read_quorum();
    }

    /// Follower: an append from the leader of the current term.
    pub(crate) fn handle_append(&mut self, from: NodeId, req: Append) {
        let round = req.round;
        let outcome = self.append_from_leader(req);
        let body = Body::AppendResponse(AppendResponse { round, outcome });
        self.send(from, body);
    }

    fn append_from_leader(&mut self, req: Append) -> AppendOutcome {
        let Append {
            prev_index,
            prev_term,
            mut entries,
            commit,
            ..
        } = req;
        if prev_index < self.log.commit && !self.bug(Bug::TruncateWithoutConflictCheck) {
            // Everything up to our commit index matches the leader's log
            // already: tell it where to resume.
            return AppendOutcome::Accepted {
                match_index: self.log.commit,
            };
        }
        let last = self.log.last_index();
        let matches = prev_index <= last
            && (self.bug(Bug::AcceptMismatchedPrev)
                || self.log.term(prev_index) == Some(prev_term));
        if !matches {
            return AppendOutcome::Rejected {
                prev_index,
                last_index: last,
                conflict: self.conflict_hint(prev_index),
            };
        }
        let last_new = prev_index + entries.len() as u64;
        if self.bug(Bug::TruncateWithoutConflictCheck) {
            let from = (prev_index + 1).max(self.log.commit + 1);
            self.truncate_log_from(from);
            entries.retain(|e| e.index >= from);
            self.append_entries(entries);
        } else if let Some(k) = self.log.find_conflict(&entries) {
            let first = entries[k].index;
            if first <= last {
                self.truncate_log_from(first);
            }
            entries.drain(..k);
            self.append_entries(entries);
        }
        let new_commit = commit.min(last_new);
        self.commit_to(new_commit);
        AppendOutcome::Accepted {
            match_index: last_new,
        }
    }

    /// The term at `prev_index` and the first index of that term in our log,
    /// or `None` when we have no entry there.
    fn conflict_hint(&self, prev_index: LogIndex) -> Option<(u64, LogIndex)> {
        let term = self.log.term(prev_index)?;
        let floor = self.log.commit.max(self.log.first_index());
        let mut first = prev_index;
        while first > floor && self.log.term(first - 1) == Some(term) {
            first -= 1;
        }
        Some((term, first))
    }

    /// Drops entries from `index` on, rolling back any configuration they
    /// carried.
    fn truncate_log_from(&mut self, index: LogIndex) {
        if index > self.log.last_index() {
            return;
        }
        self.log.truncate_from(index);
        if self.log.applied >= index {
            // Only reachable with Bug::ApplyBeforeCommit.
            self.log.applied = index - 1;
        }
        self.conf.truncate_from(index);
    }

    fn append_entries(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        self.note_membership_entries(&entries);
        for e in entries {
            self.log.append(e);
        }
    }

    /// Follower: the leader's commit index moved; it is capped at what the
    /// leader knows we hold, so it is safe to commit up to it.
    pub(crate) fn handle_commit(&mut self, commit: LogIndex) {
        self.commit_to(commit.min(self.log.last_index()));
    }

    /// Follower: a heartbeat from the leader of the current term.
    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, round: u64) {
        // The leader caps `commit` at what it knows we hold, so it is safe to
        // commit up to it (within what we have).
        self.commit_to(commit.min(self.log.last_index()));
        self.send(from, Body::HeartbeatResponse { round });
    }

    /// Leader: a reply to an append.
    pub(crate) fn handle_append_response(&mut self, from: NodeId, resp: AppendResponse) {
        if self.role != Role::Leader {
            return;
        }
        let ticks = self.ticks;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.last_contact_tick = ticks;
        pr.acked_round = pr.acked_round.max(resp.round);
        match resp.outcome {
            AppendOutcome::Accepted { match_index } if match_index > self.log.last_index() => {
                // Claims entries we never had: ignore it.
            }
            AppendOutcome::Accepted { match_index } => {
                if let ReplicationState::Snapshot(s) = &pr.state {
                    if match_index < s.snapshot.meta.index {
                        self.check_read_quorum();
                        return;
                    }
                }
                let advanced = pr.acknowledge(match_index);
                if pr.state != ReplicationState::Replicate {
                    pr.become_replicate();
                }
                if pr.commit_sent < self.log.commit {
                    // It may not know the commit index yet: the next flush
                    // tells it, unless an append carries it first.
                    self.needs_flush = true;
                }
                if advanced {
                    self.maybe_commit();
                }
                self.maybe_send_timeout_now(from);
            }
            AppendOutcome::Rejected {
                prev_index,
                last_index,
                conflict,
            } => {
                let stale = match pr.state {
                    ReplicationState::Probe => prev_index + 1 != pr.next_index,
                    ReplicationState::Replicate => prev_index <= pr.match_index,
                    ReplicationState::Snapshot(_) => true,
                };
                if !stale {
                    let next = self.next_after_reject(prev_index, last_index, conflict);
                    let pr = self.progress.get_mut(&from).expect("present above");
                    pr.become_probe(next);
                }
            }
        }
        self.check_read_quorum();
        if self.role == Role::Leader {
            // What the follower is missing now goes at the next flush, in
            // one append with whatever else this round proposed and the
            // commit index this round reached: one message per follower
            // per round, however many replies the round took in.
            self.needs_flush = true;
        }
    }

    /// Where to probe next after a rejection, using the follower's hint to
    /// skip a whole conflicting term at a time.
    fn next_after_reject(
        &self,
        prev_index: LogIndex,
        follower_last: LogIndex,
        conflict: Option<(u64, LogIndex)>,
    ) -> LogIndex {
        let next = match conflict {
            None => follower_last + 1,
            Some((term, first)) => {
                // If we hold entries of that term, the follower's match with
                // them ends where ours do; otherwise skip the whole term.
                let mut i = prev_index.min(self.log.last_index());
                let floor = self.log.first_index();
                while i >= floor && self.log.term(i).is_some_and(|t| t > term) {
                    i -= 1;
                }
                if self.log.term(i) == Some(term) {
                    i + 1
                } else {
                    first
                }
            }
        };
        // Always move back, never forward, never past our own log, and never
        // at or below a known match (`become_probe` sees to that).
        next.min(prev_index).min(self.log.last_index() + 1).max(1)
    }

    /// Leader: a heartbeat reply (or a nudge from a node of a higher term,
    /// handled before this).
    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        if self.role != Role::Leader {
            return;
        }
        let ticks = self.ticks;
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.last_contact_tick = ticks;
        pr.acked_round = pr.acked_round.max(round);
        pr.probe_sent = false;
        let stalled = pr.match_index == pr.match_at_heartbeat;
        pr.match_at_heartbeat = pr.match_index;
        match &mut pr.state {
            ReplicationState::Replicate if stalled && !pr.inflight.is_empty() => {
                // Nothing acknowledged for a whole heartbeat interval while
                // appends are outstanding: they were probably lost.
                let next = pr.match_index + 1;
                pr.become_probe(next);
            }
            ReplicationState::Snapshot(s) => {
                if s.acked_bytes == s.acked_bytes_at_heartbeat {
                    s.sent_bytes = s.acked_bytes;
                }
                s.acked_bytes_at_heartbeat = s.acked_bytes;
            }
            _ => {}
        }
        self.check_read_quorum();
        let lagging = self
            .progress
            .get(&from)
            .is_some_and(|p| p.match_index < last);
        if lagging {
            self.send_append(from);
        }
    }

    /// Leader: commits the highest entry of its own term that a majority of
    /// voters durably hold.
    pub(crate) fn maybe_commit(&mut self) {
        let me = self.cfg.id;
        self.scratch.clear();
        for v in self.conf.current().voters() {
            let matched = if v == me {
                self.log.persisted
            } else {
                self.progress.get(&v).map_or(0, |p| p.match_index)
            };
            self.scratch.push(matched);
        }
        let index = committed_value(&mut self.scratch);
        if index <= self.log.commit {
            return;
        }
        if self.bug(Bug::CommitOldTermByCount) || self.log.term(index) == Some(self.term) {
            self.commit_to(index);
        }
    }

    /// Leader: the commit index moved from `old` to `new`.
    pub(crate) fn leader_committed(&mut self, old: LogIndex, new: LogIndex) {
        let term = self.term;
        for i in old + 1..=new {
            if let Some(e) = self.log.get(i) {
                if e.term == term {
                    self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(e.size_bytes());
                }
            }
        }
        self.needs_flush = true; // followers learn the new commit index
        if self.log.term(new) == Some(term) {
            self.on_term_committed();
        }
        let conf_index = self.conf.current_index();
        if conf_index > old && conf_index <= new {
            self.sync_progress();
            if !self.conf.current().is_voter(self.cfg.id) {
                self.step_down_removed();
            }
        }
    }

    /// Leader removed from (or demoted in) a committed configuration: hand
    /// over to the most up-to-date voter at once and step down.
    fn step_down_removed(&mut self) {
        let best = self
            .conf
            .current()
            .voters()
            .filter_map(|v| self.progress.get(&v).map(|p| (p.match_index, v)))
            .max();
        if let Some((matched, v)) = best {
            if matched == self.log.last_index() {
                self.lease_revoked = true;
                self.send(v, Body::TimeoutNow);
            }
        }
        self.become_follower(self.term, NO_NODE);
    }
}
