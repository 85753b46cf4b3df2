//! Input dispatch: every message is checked (cluster, addressee, plausible
//! terms, shape), its term compared with ours (Raft paper Figure 2, plus the
//! pre-vote and check-quorum rules of thesis 9.6 and 6.2), then handed to the
//! module of its concern.

use crate::message::{Body, Message};
use crate::raft::Raft;
use crate::types::{NodeId, Role, Term, MAX_TERM, NO_NODE};

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The message belongs to another cluster.
    #[error(
        "message from node {from} of cluster {theirs} refused: this node is in cluster {ours}"
    )]
    ForeignCluster {
        /// The sender.
        from: NodeId,
        /// The sender's cluster.
        theirs: u64,
        /// Our cluster.
        ours: u64,
    },
    /// The message contradicts itself (entries out of order, terms above the
    /// sender's term, ...): a corrupt or hostile peer.
    #[error("malformed {kind} from {from}: {reason}")]
    Malformed {
        /// The sender.
        from: NodeId,
        /// The message type.
        kind: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The message carries a term above [`MAX_TERM`]: no cluster gets
    /// there, so it is forged or corrupt, and adopting it would leave this
    /// node unable to campaign for good.
    #[error("{kind} from {from} refused: it carries term {term}, above the highest plausible term {max} (MAX_TERM)")]
    ImplausibleTerm {
        /// The sender.
        from: NodeId,
        /// The message type.
        kind: &'static str,
        /// The highest term the message carries.
        term: Term,
        /// The bound, [`MAX_TERM`].
        max: Term,
    },
    /// The message is not for this node, or its sender is invalid.
    #[error("message from {from} to {to} refused: this is node {me}")]
    Misaddressed {
        /// The sender.
        from: NodeId,
        /// The addressee.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
}

impl Raft {
    /// Handles one message from a peer. A refused message changes nothing
    /// but a counter.
    pub fn step(&mut self, m: Message) -> Result<(), StepError> {
        if m.cluster != self.cfg.cluster {
            self.metrics.refused_foreign_cluster += 1;
            return Err(StepError::ForeignCluster {
                from: m.from,
                theirs: m.cluster,
                ours: self.cfg.cluster,
            });
        }
        if m.to != self.cfg.id || m.from == NO_NODE || m.from == self.cfg.id {
            self.metrics.refused_misaddressed += 1;
            return Err(StepError::Misaddressed {
                from: m.from,
                to: m.to,
                me: self.cfg.id,
            });
        }
        let term = m.highest_term();
        if term > MAX_TERM {
            self.metrics.refused_implausible_term += 1;
            return Err(StepError::ImplausibleTerm {
                from: m.from,
                kind: m.body.kind(),
                term,
                max: MAX_TERM,
            });
        }
        if let Err(reason) = validate(&m) {
            self.metrics.refused_malformed += 1;
            return Err(StepError::Malformed {
                from: m.from,
                kind: m.body.kind(),
                reason,
            });
        }
        if m.term > self.term {
            if !self.step_higher_term(&m) {
                return Ok(());
            }
        } else if m.term < self.term {
            self.step_lower_term(&m);
            return Ok(());
        }
        self.step_current(m);
        Ok(())
    }

    /// A message from a higher term. Returns false if it is to be ignored.
    fn step_higher_term(&mut self, m: &Message) -> bool {
        match &m.body {
            Body::Vote(req) => {
                if self.in_leader_lease() && !req.transfer {
                    // A leader was heard from within the minimum election
                    // timeout: this candidate cannot be legitimate yet
                    // (Raft thesis 4.2.3), so its term is not adopted.
                    self.metrics.votes_ignored_in_lease += 1;
                    return false;
                }
                if !req.pre {
                    // Adopt the term, but keep the election timer running:
                    // only granting the vote (or hearing from a leader)
                    // restarts it (paper Figure 2). A candidate with a stale
                    // log must not keep delaying the nodes that could win.
                    let (elapsed, timeout) = (self.election_elapsed, self.election_timeout);
                    self.become_follower(m.term, NO_NODE);
                    self.election_elapsed = elapsed;
                    self.election_timeout = timeout;
                }
            }
            // A granted pre-vote carries the term we would campaign in.
            Body::VoteResponse {
                pre: true,
                granted: true,
            } => {}
            Body::Append(_) | Body::Heartbeat { .. } | Body::Commit { .. } | Body::Snapshot(_) => {
                self.become_follower(m.term, m.from);
            }
            _ => self.become_follower(m.term, NO_NODE),
        }
        true
    }

    /// A message from a lower term: mostly ignored, but a stale leader is told
    /// our term so that it steps down, and a pre-candidate learns why it
    /// cannot win (the remedies for etcd #9586).
    fn step_lower_term(&mut self, m: &Message) {
        match &m.body {
            Body::Append(_) | Body::Heartbeat { .. } | Body::Commit { .. } | Body::Snapshot(_)
                if self.cfg.check_quorum || self.cfg.pre_vote =>
            {
                self.send(m.from, Body::HeartbeatResponse { round: 0 });
            }
            Body::Vote(req) if req.pre => {
                self.send(
                    m.from,
                    Body::VoteResponse {
                        pre: true,
                        granted: false,
                    },
                );
            }
            _ => {}
        }
    }

    /// A message of the current term (or a pre-vote exchange).
    fn step_current(&mut self, m: Message) {
        let from = m.from;
        match m.body {
            Body::Vote(req) => self.handle_vote_request(from, m.term, req),
            Body::VoteResponse { pre, granted } => {
                self.handle_vote_response(from, m.term, pre, granted)
            }
            Body::Append(req) => {
                if self.role == Role::Leader {
                    return; // impossible in one term; ignore rather than trust it
                }
                self.follow(m.term, from);
                self.handle_append(from, req);
            }
            Body::Heartbeat { commit, round } => {
                if self.role == Role::Leader {
                    return;
                }
                self.follow(m.term, from);
                self.handle_heartbeat(from, commit, round);
            }
            Body::Snapshot(chunk) => {
                if self.role == Role::Leader {
                    return;
                }
                self.follow(m.term, from);
                self.handle_snapshot_chunk(from, *chunk);
            }
            Body::Commit { commit } => {
                if self.role == Role::Leader {
                    return;
                }
                self.follow(m.term, from);
                self.handle_commit(commit);
            }
            Body::AppendResponse(resp) => self.handle_append_response(from, resp),
            Body::HeartbeatResponse { round } => self.handle_heartbeat_response(from, round),
            Body::SnapshotResponse(resp) => self.handle_snapshot_response(from, resp),
            Body::TimeoutNow => self.handle_timeout_now(from),
            Body::ReadIndex { id } => self.handle_read_index_request(from, id),
            Body::ReadIndexResponse { id, index } => self.handle_read_index_response(id, index),
        }
    }
}

/// Checks what a message says about itself, so that a corrupt or hostile
/// peer cannot break the log's invariants (or panic the node).
fn validate(m: &Message) -> Result<(), &'static str> {
    // Checked first: the checks below add to indexes.
    if m.highest_index() > crate::MAX_INDEX {
        return Err("an index beyond MAX_INDEX");
    }
    match &m.body {
        Body::Append(a) => {
            let mut prev = (a.prev_index, a.prev_term);
            for e in &a.entries {
                if e.index != prev.0 + 1 {
                    return Err("entries are not contiguous after prev_index");
                }
                if e.term < prev.1 || e.term > m.term {
                    return Err("entry terms go backwards or beyond the sender's term");
                }
                prev = (e.index, e.term);
            }
            if a.prev_term > m.term {
                return Err("prev_term beyond the sender's term");
            }
        }
        Body::Snapshot(c) => {
            if c.meta.term > m.term {
                return Err("snapshot term beyond the sender's term");
            }
            if c.offset.saturating_add(c.data.len() as u64) > c.total_bytes {
                return Err("chunk goes past the snapshot's size");
            }
        }
        Body::Vote(v) if v.last_term > m.term => {
            return Err("candidate's last log term beyond its term");
        }
        _ => {}
    }
    Ok(())
}
