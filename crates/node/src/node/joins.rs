//! Joins: adding a node as a learner, catching it up and promoting it, and
//! the leader's side that finishes every join it finds, whoever started
//! it and whoever crashed since.
//!
//! A learner added by a join carries the joining mark in its member record
//! ([`PeerContext::joining`]); a learner added by `add_learner` does not,
//! and stays a learner. While a node leads, its finisher task looks for
//! marked learners on winning the election and then each heartbeat: it
//! promotes one once it has caught up (its match index reached the commit
//! index) and answers, or removes it if it has not within `join_timeout`
//! of this leader taking the join over. The time is counted on this
//! leader's own monotonic clock, from the moment it first saw the join as
//! leader of its term: no clock is compared across nodes, and a new leader
//! gives the new node a full `join_timeout` again.
//!
//! Promotion and removal are proposed with the joining-only guard
//! ([`crate::runtime::Input::Change`]): each acts only while the member is
//! still a marked learner, so that the finisher and a join call waiting
//! on the same leader never undo each other's step, nor one an operator
//! took meanwhile (`promote`, `leave`).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use raft_core::{ConfChange, MemberRole, Role, Term};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Inner, Node};
use crate::error::{MembershipError, NodeError};
use crate::ids::{node_number, PeerContext};
use crate::runtime::Status;

/// The joins this node took over as leader, and in which term.
#[derive(Default)]
struct TakenOver {
    /// The term in which this node took them over (a new term, or a lost
    /// leadership, starts over).
    term: Term,
    /// Each joining learner's id, and when this leader took its join over.
    since: HashMap<String, Instant>,
}

/// Starts the task that finishes joins while this node leads. It holds the
/// node weakly: it ends with the node (shut down, crashed, or dropped).
pub(super) fn spawn_finisher(
    inner: &Arc<Inner>,
    status: watch::Receiver<Status>,
) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(inner);
    let period = inner.heartbeat;
    tokio::spawn(finish_joins(weak, status, period))
}

async fn finish_joins(weak: Weak<Inner>, mut status: watch::Receiver<Status>, period: Duration) {
    let mut taken_over = TakenOver::default();
    let mut heartbeat = tokio::time::interval(period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = (Role::Follower, 0);
    loop {
        // A round each heartbeat, and at once when the role or the term
        // changes (on winning an election).
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = {
                    let s = status.borrow_and_update();
                    (s.role, s.term)
                };
                if std::mem::replace(&mut seen, now) == now {
                    continue;
                }
            }
            _ = heartbeat.tick() => {}
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let node = Node { inner };
        if node.check_open().is_err() {
            return;
        }
        node.finish_joins_once(&mut taken_over).await;
    }
}

impl Node {
    /// One round of the finisher: if this node leads, takes over the joins
    /// it finds, and promotes or removes each learner whose join is due.
    async fn finish_joins_once(&self, taken_over: &mut TakenOver) {
        let (role, term, joining) = {
            let s = self.inner.status.borrow();
            let joining: Vec<PeerContext> = s
                .members
                .list
                .iter()
                .filter(|c| c.joining && c.id != self.inner.id)
                .cloned()
                .collect();
            (s.role, s.term, joining)
        };
        if role != Role::Leader || term != taken_over.term {
            taken_over.since.clear();
            taken_over.term = term;
        }
        taken_over
            .since
            .retain(|id, _| joining.iter().any(|c| c.id == *id));
        if role != Role::Leader || joining.is_empty() {
            return;
        }
        let Ok(peers) = self.peers().await else {
            return;
        };
        let commit = self.inner.status.borrow().commit_index;
        for learner in joining {
            let Some(peer) = peers.iter().find(|p| p.id == learner.id && p.joining) else {
                continue;
            };
            let now = Instant::now();
            let since = *taken_over.since.entry(learner.id.clone()).or_insert_with(|| {
                tracing::info!(node = %learner.id, term, "this leader takes over the join of a learner");
                now
            });
            let caught_up = peer.connected && peer.match_index.is_some_and(|m| m >= commit);
            let undo = now + self.inner.command_timeout;
            if caught_up {
                match self.promote_joining(&learner, undo).await {
                    Ok(()) => {
                        tracing::info!(node = %learner.id, "a join was finished: the learner caught up and was promoted")
                    }
                    Err(e) => {
                        tracing::debug!(node = %learner.id, error = %e, "promoting a joining learner failed; trying again")
                    }
                }
            } else if now.duration_since(since) >= self.inner.join_timeout {
                let id = &learner.id;
                let removed = self
                    .change_if(
                        ConfChange::Remove {
                            id: node_number(id),
                        },
                        id,
                        true,
                        undo,
                    )
                    .await;
                match removed {
                    Ok(()) => {
                        tracing::warn!(node = %id, join_timeout = ?self.inner.join_timeout, connected = peer.connected, "a join was rolled back: the learner did not catch up within join_timeout of this leader taking it over, and was removed")
                    }
                    Err(e) => {
                        tracing::debug!(node = %id, error = %e, "rolling back a join failed; trying again")
                    }
                }
            }
        }
    }

    /// Promotes the joining learner `learner`, its record losing the mark;
    /// only while it is still a joining learner.
    async fn promote_joining(
        &self,
        learner: &PeerContext,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        let change = ConfChange::AddVoter {
            id: node_number(&learner.id),
            context: learner.clone().marked(false).encode(),
        };
        self.change_if(change, &learner.id, true, deadline).await
    }

    /// Adds the node at `address` and waits until it is promoted; rolls the
    /// addition back if that does not happen by `deadline`. Runs on its
    /// own task: a caller that gives up (or a forwarded call whose
    /// connection drops) does not stop it half way.
    pub(super) async fn join_here(
        &self,
        address: &str,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        let node = self.clone();
        let address = address.to_string();
        let task = tokio::spawn(async move { node.join_to_the_end(&address, deadline).await });
        task.await.unwrap_or(Err(NodeError::ShuttingDown))
    }

    async fn join_to_the_end(&self, address: &str, deadline: Instant) -> Result<(), NodeError> {
        let (id, number) = self.add_learner_here(address, true, deadline).await?;
        let promoted = self.await_promotion(&id, deadline).await;
        match promoted {
            Err(e @ NodeError::Timeout { .. }) => {
                // Roll back: the caller stops waiting. The leader would
                // remove the learner too, a little later (its own deadline
                // counts from when it took the join over).
                let undo = Instant::now() + self.inner.command_timeout;
                let removed = self
                    .change_if(ConfChange::Remove { id: number }, &id, true, undo)
                    .await;
                match removed {
                    Ok(()) => {
                        tracing::info!(node = %id, error = %e, "a join that did not finish in time was rolled back: the learner was removed")
                    }
                    // Finished meanwhile: promoted, or removed.
                    Err(NodeError::Membership(MembershipError::NotJoining { .. })) => {
                        if self.role_of(&id).await == Some(MemberRole::Voter) {
                            return Ok(());
                        }
                    }
                    Err(undone) => {
                        tracing::warn!(node = %id, error = %undone, "a join that did not finish in time could not be rolled back yet: the next leader will")
                    }
                }
                Err(e)
            }
            other => other,
        }
    }

    /// Waits until the member `id` is a voter: promoted by this leader's
    /// finisher if a join added it, else (a learner added by
    /// `add_learner`) promoted here once it has caught up. Fails with
    /// [`NodeError::NotLeader`] once this node no longer leads (the caller
    /// goes on with the next leader), [`MembershipError::JoinRolledBack`]
    /// if the learner was removed, or a timeout at `deadline`.
    async fn await_promotion(&self, id: &str, deadline: Instant) -> Result<(), NodeError> {
        let started = Instant::now();
        loop {
            let peers = self.peers().await?;
            match peers.iter().find(|p| p.id == id) {
                Some(p) if p.role == MemberRole::Voter => return Ok(()),
                Some(p) if !p.joining => return self.promote_learner(id, deadline).await,
                Some(_) => {}
                None => {
                    return Err(NodeError::Membership(MembershipError::JoinRolledBack {
                        id: id.to_string(),
                    }))
                }
            }
            if self.role() != Role::Leader {
                return Err(NodeError::NotLeader {
                    leader: self.leader(),
                });
            }
            if Instant::now() >= deadline {
                return Err(NodeError::Timeout {
                    what: "catching up the new node",
                    after: started.elapsed(),
                });
            }
            tokio::time::sleep(self.inner.heartbeat).await;
        }
    }

    /// Promotes the learner `id` (one added by `add_learner`) once it has
    /// caught up.
    async fn promote_learner(&self, id: &str, deadline: Instant) -> Result<(), NodeError> {
        self.wait_caught_up(id, deadline).await?;
        let change = ConfChange::AddVoter {
            id: node_number(id),
            context: Bytes::new(),
        };
        self.change(change, id, deadline).await
    }

    async fn wait_caught_up(&self, id: &str, deadline: Instant) -> Result<(), NodeError> {
        let started = Instant::now();
        loop {
            let commit = self.metrics().commit_index;
            let matched = self
                .peers()
                .await?
                .into_iter()
                .find(|p| p.id == id)
                .and_then(|p| p.match_index);
            match matched {
                Some(m) if m >= commit => return Ok(()),
                None if self.role() != Role::Leader => {
                    return Err(NodeError::NotLeader {
                        leader: self.leader(),
                    })
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(NodeError::Timeout {
                    what: "catching up the new node",
                    after: started.elapsed(),
                });
            }
            tokio::time::sleep(self.inner.heartbeat).await;
        }
    }

    /// The role of the member `id`, as this node sees it now.
    async fn role_of(&self, id: &str) -> Option<MemberRole> {
        let peers = self.peers().await.ok()?;
        peers.into_iter().find(|p| p.id == id).map(|p| p.role)
    }

    /// A join driven from this node failed for good (its `join_timeout`
    /// passed, or it was refused): if the new node was promoted after all,
    /// the join succeeded; if it was left a joining learner (its leader
    /// crashed, and no later attempt finished), it is removed again, so
    /// that a failed join leaves the configuration as it was. A learner
    /// added by `add_learner` stays one.
    pub(super) async fn after_failed_join(
        &self,
        address: &str,
        error: NodeError,
    ) -> Result<(), NodeError> {
        let Ok(peers) = self.peers().await else {
            return Err(error);
        };
        let Some(joined) = peers.into_iter().find(|p| p.address == address) else {
            return Err(error);
        };
        if joined.role == MemberRole::Voter {
            return Ok(());
        }
        if !joined.joining {
            return Err(error);
        }
        let undo = Instant::now() + self.inner.command_timeout;
        let id = joined.id;
        // On the leader, only while it is still a joining learner; a
        // follower asks the leader to remove it.
        let request = crate::transport::Request::Leave { id: id.clone() };
        let here = || {
            self.change_if(
                ConfChange::Remove {
                    id: node_number(&id),
                },
                &id,
                true,
                undo,
            )
        };
        let removed = self.membership_call(request, undo, false, here).await;
        match removed {
            Ok(()) => {
                tracing::info!(node = %id, error = %error, "a failed join was rolled back: the learner was removed")
            }
            Err(NodeError::Membership(MembershipError::NotJoining { .. })) => {
                if self.role_of(&id).await == Some(MemberRole::Voter) {
                    return Ok(());
                }
            }
            Err(undone) => {
                tracing::warn!(node = %id, error = %undone, "a failed join could not be rolled back from here: the leader rolls it back once join_timeout passes")
            }
        }
        Err(error)
    }
}
