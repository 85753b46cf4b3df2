//! Elections: timeouts, pre-vote, vote, check-quorum, leader transfer and
//! `weaken`.
//!
//! Rules kept here:
//! - a node campaigns only if it is a voter of the configuration in force,
//!   is not weakened, and its randomized election timeout expired (or the
//!   leader told it to with TimeoutNow);
//! - a vote is granted only to a candidate whose log is at least as up to date
//!   (section 5.4.1), at most once per term, and never while a leader was
//!   heard from within the minimum election timeout (unless the election comes
//!   from a leader transfer);
//! - a pre-vote changes nothing on the voter, and a pre-candidate does not
//!   bump its term until a majority granted it;
//! - with check-quorum, a leader that has not heard from a majority for an
//!   election timeout steps down;
//! - a node whose term is at [`MAX_TERM`] starts no election (pre-vote
//!   included): its next term would be implausible, and wrapping around
//!   would send terms backwards.

use crate::bugs::Bug;
use crate::message::{Body, VoteRequest};
use crate::quorum::{vote_result, VoteResult};
use crate::raft::{Raft, Transfer};
use crate::types::{Entry, EntryPayload, NodeId, Role, Term, MAX_TERM, NO_NODE};

/// The term an election started now would run in, or `None` at
/// [`MAX_TERM`] (never past it, never wrapping around).
fn next_term(term: Term) -> Option<Term> {
    term.checked_add(1).filter(|&next| next <= MAX_TERM)
}

/// Why a leader transfer cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only the leader can hand leadership over.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The target is not a voter.
    #[error("node {0} is not a voter of the current configuration")]
    NotVoter(NodeId),
    /// The target is this node.
    #[error("node {0} is already the leader")]
    AlreadyLeader(NodeId),
}

impl Raft {
    /// Follower or candidate tick: campaign when the election timeout expires.
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed < self.election_timeout {
            return;
        }
        self.reset_election_timer();
        if self.can_campaign() {
            self.campaign(self.cfg.pre_vote, false);
        }
    }

    /// Leader tick: heartbeats, check-quorum, transfer timeout.
    pub(crate) fn tick_leader(&mut self) {
        self.leader_contact_tick = self.ticks;
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if let Some(t) = &mut self.transfer {
            t.elapsed_ticks += 1;
            if t.elapsed_ticks >= self.cfg.election_timeout_ticks_min {
                self.transfer = None;
                self.metrics.transfers_aborted += 1;
            }
        }
        if self.election_elapsed >= self.cfg.election_timeout_ticks_min {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_recently_active() {
                self.become_follower(self.term, NO_NODE);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        self.check_disk_stall();
    }

    /// Hands leadership over if this leader's own log writes stalled for
    /// [`crate::Config::disk_stall_ticks`]: entries wait to be durable here
    /// and the durable index has not moved for that long. The target is
    /// the voter holding the most of the log (the lowest id among equals);
    /// a transfer that does not finish is abandoned after an election
    /// timeout as usual, and tried again after another stall period.
    fn check_disk_stall(&mut self) {
        let stall = self.cfg.disk_stall_ticks;
        let durable = self.log.persisted;
        if stall == 0 || durable >= self.log.last_index() || durable != self.durable_since.0 {
            self.durable_since = (durable, self.ticks);
            return;
        }
        if self.ticks - self.durable_since.1 < stall || self.transfer.is_some() {
            return;
        }
        self.durable_since.1 = self.ticks;
        let me = self.cfg.id;
        let target = self
            .conf
            .current()
            .voters()
            .filter(|&v| v != me)
            .filter_map(|v| self.progress.get(&v).map(|p| (p.match_index, v)))
            .min_by_key(|&(m, v)| (std::cmp::Reverse(m), v));
        if let Some((_, to)) = target {
            if self.transfer_leader(to).is_ok() {
                self.metrics.disk_stall_handovers += 1;
            }
        }
    }

    /// True if a majority of voters (this leader included) were heard from
    /// since the previous check; clears the marks for the next period.
    fn quorum_recently_active(&mut self) -> bool {
        let me = self.cfg.id;
        let voters: Vec<NodeId> = self.conf.current().voters().collect();
        let mut active = 0;
        for &v in &voters {
            if v == me || self.progress.get(&v).is_some_and(|p| p.recent_active) {
                active += 1;
            }
        }
        for p in self.progress.values_mut() {
            p.recent_active = false;
        }
        active >= crate::quorum::majority(voters.len())
    }

    /// True if this node may start an election now: it is not weakened, and
    /// it is a voter of the configuration in force, or of the one before it
    /// while the one in force is uncommitted. (A leader that removed itself
    /// and crashed before the change committed may hold the only log that
    /// can win; it must still be able to campaign, and it wins only with a
    /// majority of the new configuration. See Raft thesis 4.2.2.)
    fn can_campaign(&self) -> bool {
        if self.ticks < self.weakened_until {
            return false;
        }
        let me = self.cfg.id;
        if self.conf.current().is_voter(me) {
            return true;
        }
        self.conf.current_index() > self.log.commit
            && self.conf.previous().is_some_and(|m| m.is_voter(me))
    }

    /// Starts a pre-election (if `pre`) or an election. A transfer election
    /// skips pre-vote and asks voters to disregard their leader lease.
    /// Does nothing at [`MAX_TERM`]: the term is never raised past it.
    pub(crate) fn campaign(&mut self, pre: bool, transfer: bool) {
        let Some(next) = next_term(self.term) else {
            return;
        };
        let me = self.cfg.id;
        let term = if pre {
            self.metrics.pre_elections += 1;
            self.role = Role::PreCandidate;
            next
        } else {
            self.metrics.elections += 1;
            self.term = next;
            self.vote = me;
            self.role = Role::Candidate;
            next
        };
        if self.leader != NO_NODE {
            self.reads.leader_changed(&mut self.out.aborted_reads);
        }
        self.leader = NO_NODE;
        self.votes.clear();
        self.votes.insert(me, true);
        self.reset_election_timer();
        match self.poll() {
            VoteResult::Won => {
                if pre {
                    self.campaign(false, transfer);
                } else {
                    self.become_leader();
                }
                return;
            }
            VoteResult::Lost => return,
            VoteResult::Pending => {}
        }
        let req = VoteRequest {
            pre,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            transfer,
        };
        let voters: Vec<NodeId> = self.conf.current().voters().filter(|&v| v != me).collect();
        for v in voters {
            self.send_with_term(v, term, Body::Vote(req));
        }
    }

    /// Counts the votes of the current (pre-)election among the voters.
    fn poll(&self) -> VoteResult {
        let conf = self.conf.current();
        let voters = conf.voters().count();
        let (mut granted, mut refused) = (0, 0);
        for (&id, &g) in &self.votes {
            if conf.is_voter(id) {
                if g {
                    granted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        vote_result(voters, granted, refused)
    }

    /// A (pre-)vote request; `term` is the message's term, at least ours.
    pub(crate) fn handle_vote_request(&mut self, from: NodeId, term: Term, req: VoteRequest) {
        let can_vote = self.vote == from
            || (self.vote == NO_NODE && self.leader == NO_NODE)
            || (req.pre && term > self.term);
        let up_to_date = self.bug(Bug::VoteWithoutLogCheck)
            || self.log.is_up_to_date(req.last_index, req.last_term);
        if can_vote && up_to_date {
            if !req.pre {
                self.vote = from;
                self.election_elapsed = 0;
            }
            let body = Body::VoteResponse {
                pre: req.pre,
                granted: true,
            };
            self.send_with_term(from, term, body);
        } else {
            let body = Body::VoteResponse {
                pre: req.pre,
                granted: false,
            };
            self.send(from, body);
        }
    }

    /// A (pre-)vote reply.
    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre: bool,
        granted: bool,
    ) {
        let counts = match self.role {
            Role::PreCandidate => pre && (Some(term) == next_term(self.term) || !granted),
            Role::Candidate => !pre && term == self.term,
            _ => false,
        };
        if !counts {
            return;
        }
        self.votes.entry(from).or_insert(granted);
        if granted && !pre {
            // Our vote request left only once our term was durable.
            self.durable_term = self.durable_term.max(term);
        }
        match self.poll() {
            VoteResult::Won if self.role == Role::PreCandidate => self.campaign(false, false),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, NO_NODE),
            VoteResult::Pending => {}
        }
    }

    /// Won the election: take over replication with a blank entry of the new
    /// term, whose commit tells this leader its commit index (section 8).
    pub(crate) fn become_leader(&mut self) {
        debug_assert_eq!(self.role, Role::Candidate);
        self.metrics.leaderships += 1;
        self.role = Role::Leader;
        self.leader = self.cfg.id;
        self.transfer = None;
        self.durable_since = (self.log.persisted, self.ticks);
        self.lease_revoked = false;
        self.uncommitted_bytes = 0;
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.votes.clear();
        self.progress.clear();
        self.reads.become_leader();
        self.sync_progress();
        let entry = Entry {
            term: self.term,
            index: self.log.last_index() + 1,
            payload: EntryPayload::Blank,
        };
        self.log.append(entry);
        self.needs_flush = true;
        self.maybe_commit();
    }

    /// The leader told this node to campaign at once (leader transfer).
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.role == Role::Leader || from != self.leader {
            return;
        }
        if self.can_campaign() {
            self.campaign(false, true);
        }
    }

    /// Hands leadership to `to`: stop taking proposals, bring `to` up to date,
    /// then tell it to campaign at once. Abandoned after an election timeout.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader(),
            });
        }
        if to == self.cfg.id {
            return Err(TransferError::AlreadyLeader(to));
        }
        if !self.conf.current().is_voter(to) {
            return Err(TransferError::NotVoter(to));
        }
        if self.transfer.is_some_and(|t| t.to == to) {
            return Ok(());
        }
        self.transfer = Some(Transfer {
            to,
            elapsed_ticks: 0,
        });
        self.maybe_send_timeout_now(to);
        if self.transfer.is_some() {
            self.send_append(to);
        }
        Ok(())
    }

    /// Sends TimeoutNow to the transfer target once it holds the whole log.
    pub(crate) fn maybe_send_timeout_now(&mut self, to: NodeId) {
        let Some(t) = self.transfer else { return };
        if t.to != to {
            return;
        }
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.lease_revoked = true;
            self.send(to, Body::TimeoutNow);
        }
    }

    /// This node starts no election for the next `ticks` ticks (it still
    /// votes, and a leader stays leader).
    pub fn weaken(&mut self, ticks: u64) {
        self.weakened_until = self.ticks + ticks;
    }

    /// Starts an election now (pre-vote first if configured), as if the
    /// election timeout had expired. Does nothing on a leader or a node that
    /// may not campaign.
    pub fn campaign_now(&mut self) {
        if self.role != Role::Leader && self.can_campaign() {
            self.campaign(self.cfg.pre_vote, false);
        }
    }
}
