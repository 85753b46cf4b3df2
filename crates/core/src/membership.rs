//! Cluster configurations and the rules for changing them.
//!
//! Changes are single-server changes (Raft thesis chapter 4): each new
//! configuration differs from the one before it by at most one voter, so any
//! majority of the old and any majority of the new configuration overlap and
//! no joint consensus is needed. Learners (non-voting members) can be added and
//! removed freely and are promoted to voters by a single-server change.
//!
//! Safety rules, enforced by the leader before it appends a change:
//! - at most one change is in flight: the previous one must be committed;
//! - the leader has committed an entry of its own term (the fix to the
//!   single-server bug described on raft-dev in 2015);
//! - a configuration takes effect as soon as it is appended to a log, on every
//!   node, and is rolled back if that entry is truncated.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::types::{LogIndex, NodeId, NO_NODE};

/// Whether a member votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MemberRole {
    /// Counts towards elections and commit quorums.
    Voter,
    /// Receives the log but does not vote; can be promoted to voter.
    Learner,
}

/// One member of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Member {
    /// Voter or learner.
    pub role: MemberRole,
    /// Opaque bytes the embedding layer attaches to the member (its address,
    /// its string id): replicated and persisted with the configuration.
    pub context: Bytes,
}

/// A cluster configuration: who is a member, and in which role.
///
/// Invariant: [`NO_NODE`] is never a member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Membership {
    members: BTreeMap<NodeId, Member>,
}

/// A requested change to the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ConfChange {
    /// Add a voter, or promote an existing learner to voter.
    AddVoter {
        /// The node to add.
        id: NodeId,
        /// Context to store with it (ignored when promoting a learner that has one).
        context: Bytes,
    },
    /// Add a learner (a non-voting member that receives the log).
    AddLearner {
        /// The node to add.
        id: NodeId,
        /// Context to store with it.
        context: Bytes,
    },
    /// Remove a member, voter or learner.
    Remove {
        /// The node to remove.
        id: NodeId,
    },
}

/// Why a configuration change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved and cannot be a member")]
    ReservedId,
    /// The node is already a member in that role.
    #[error("node {0} is already a member in that role")]
    AlreadyMember(NodeId),
    /// The node is not a member.
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    /// Removing the last voter would leave no one to elect a leader.
    #[error("removing node {0} would leave the cluster without voters")]
    LastVoter(NodeId),
}

impl Membership {
    /// A configuration whose voters are `voters`, with empty contexts.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        let members = voters
            .into_iter()
            .filter(|&id| id != NO_NODE)
            .map(|id| {
                let member = Member {
                    role: MemberRole::Voter,
                    context: Bytes::new(),
                };
                (id, member)
            })
            .collect();
        Membership { members }
    }

    /// The number of members, voters and learners.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when there are no members at all (a node not yet bootstrapped).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member with its role and context, ordered by id.
    pub fn members(&self) -> impl Iterator<Item = (NodeId, &Member)> {
        self.members.iter().map(|(&id, m)| (id, m))
    }

    /// The member `id`, if it is one.
    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// The voters, ordered by id.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| m.role == MemberRole::Voter)
            .map(|(&id, _)| id)
    }

    /// The learners, ordered by id.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| m.role == MemberRole::Learner)
            .map(|(&id, _)| id)
    }

    /// True if `id` is a voter.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.members
            .get(&id)
            .is_some_and(|m| m.role == MemberRole::Voter)
    }

    /// True if `id` is a member in any role.
    pub fn contains(&self, id: NodeId) -> bool {
        self.members.contains_key(&id)
    }

    /// The configuration that results from applying `change`, or why it
    /// cannot be applied. The result differs from `self` by at most one voter.
    pub fn apply(&self, change: &ConfChange) -> Result<Membership, MembershipError> {
        let mut next = self.clone();
        match change {
            ConfChange::AddVoter { id, context } => {
                if *id == NO_NODE {
                    return Err(MembershipError::ReservedId);
                }
                match next.members.get_mut(id) {
                    Some(m) if m.role == MemberRole::Voter => {
                        return Err(MembershipError::AlreadyMember(*id))
                    }
                    Some(m) => {
                        m.role = MemberRole::Voter;
                        if !context.is_empty() {
                            m.context = context.clone();
                        }
                    }
                    None => {
                        let member = Member {
                            role: MemberRole::Voter,
                            context: context.clone(),
                        };
                        next.members.insert(*id, member);
                    }
                }
            }
            ConfChange::AddLearner { id, context } => {
                if *id == NO_NODE {
                    return Err(MembershipError::ReservedId);
                }
                if next.members.contains_key(id) {
                    return Err(MembershipError::AlreadyMember(*id));
                }
                let member = Member {
                    role: MemberRole::Learner,
                    context: context.clone(),
                };
                next.members.insert(*id, member);
            }
            ConfChange::Remove { id } => {
                let Some(removed) = next.members.remove(id) else {
                    return Err(MembershipError::NotMember(*id));
                };
                if removed.role == MemberRole::Voter && next.voters().next().is_none() {
                    return Err(MembershipError::LastVoter(*id));
                }
            }
        }
        debug_assert!(self.voter_difference(&next) <= 1);
        Ok(next)
    }

    /// How many voters are in one configuration and not the other.
    pub fn voter_difference(&self, other: &Membership) -> usize {
        let added = other.voters().filter(|&id| !self.is_voter(id)).count();
        let removed = self.voters().filter(|&id| !other.is_voter(id)).count();
        added + removed
    }
}

/// The configurations a node knows about: the latest one in its log (the one
/// in force) and the ones before it that are not yet committed, so that a
/// truncation can roll back to the right one.
///
/// Invariants:
/// - `entries` is ordered by index and never empty; its first element is the
///   committed (or snapshot) configuration the rest were derived from;
/// - only the last element is in force.
#[derive(Debug, Clone)]
pub struct MembershipLog {
    entries: Vec<(LogIndex, Membership)>,
}

impl MembershipLog {
    /// A history that starts with `membership`, in force since `index`.
    pub fn new(index: LogIndex, membership: Membership) -> MembershipLog {
        MembershipLog {
            entries: vec![(index, membership)],
        }
    }

    /// The configuration in force (the latest appended).
    pub fn current(&self) -> &Membership {
        &self.entries[self.entries.len() - 1].1
    }

    /// The configuration before the one in force, if still remembered.
    pub fn previous(&self) -> Option<&Membership> {
        let n = self.entries.len();
        (n >= 2).then(|| &self.entries[n - 2].1)
    }

    /// The index of the entry that carried the configuration in force.
    pub fn current_index(&self) -> LogIndex {
        self.entries[self.entries.len() - 1].0
    }

    /// The configuration in force at `index` (the latest at or below it), if
    /// this history reaches back that far.
    pub fn at(&self, index: LogIndex) -> Option<&Membership> {
        self.entries
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, m)| m)
    }

    /// Records a configuration appended at `index`.
    pub fn push(&mut self, index: LogIndex, membership: Membership) {
        debug_assert!(index > self.current_index());
        self.entries.push((index, membership));
    }

    /// Forgets configurations at `index` and above (their entries were
    /// truncated). Returns true when the configuration in force changed.
    pub fn truncate_from(&mut self, index: LogIndex) -> bool {
        let before = self.entries.len();
        while self.entries.len() > 1 && self.entries[self.entries.len() - 1].0 >= index {
            self.entries.pop();
        }
        self.entries.len() != before
    }

    /// Drops history that is no longer needed once a snapshot covers `index`:
    /// the newest configuration at or below `index` becomes the base.
    pub fn prune_to(&mut self, index: LogIndex) {
        let keep_from = self
            .entries
            .iter()
            .rposition(|(i, _)| *i <= index)
            .unwrap_or(0);
        self.entries.drain(..keep_from);
    }

    /// Replaces the whole history with a snapshot's configuration.
    pub fn reset(&mut self, index: LogIndex, membership: Membership) {
        self.entries.clear();
        self.entries.push((index, membership));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_promote_remove() {
        let m = Membership::with_voters([1, 2, 3]);
        let m = m
            .apply(&ConfChange::AddLearner {
                id: 4,
                context: Bytes::from_static(b"addr4"),
            })
            .unwrap();
        assert!(!m.is_voter(4) && m.contains(4));
        assert_eq!(m.voter_difference(&Membership::with_voters([1, 2, 3])), 0);
        let m = m
            .apply(&ConfChange::AddVoter {
                id: 4,
                context: Bytes::new(),
            })
            .unwrap();
        assert!(m.is_voter(4));
        assert_eq!(m.get(4).unwrap().context, Bytes::from_static(b"addr4"));
        let m = m.apply(&ConfChange::Remove { id: 1 }).unwrap();
        assert_eq!(m.voters().collect::<Vec<_>>(), vec![2, 3, 4]);
    }

    #[test]
    fn refuses_bad_changes() {
        let m = Membership::with_voters([1]);
        assert_eq!(
            m.apply(&ConfChange::Remove { id: 1 }),
            Err(MembershipError::LastVoter(1))
        );
        assert_eq!(
            m.apply(&ConfChange::Remove { id: 2 }),
            Err(MembershipError::NotMember(2))
        );
        let add = ConfChange::AddVoter {
            id: 1,
            context: Bytes::new(),
        };
        assert_eq!(m.apply(&add), Err(MembershipError::AlreadyMember(1)));
        let add0 = ConfChange::AddLearner {
            id: 0,
            context: Bytes::new(),
        };
        assert_eq!(m.apply(&add0), Err(MembershipError::ReservedId));
    }

    #[test]
    fn history_rolls_back_on_truncation() {
        let mut log = MembershipLog::new(0, Membership::with_voters([1, 2, 3]));
        log.push(5, Membership::with_voters([1, 2, 3, 4]));
        log.push(9, Membership::with_voters([1, 2, 4]));
        assert_eq!(log.at(6), Some(&Membership::with_voters([1, 2, 3, 4])));
        assert!(log.truncate_from(9));
        assert_eq!(log.current(), &Membership::with_voters([1, 2, 3, 4]));
        log.prune_to(7);
        assert!(!log.truncate_from(6));
        assert_eq!(log.current_index(), 5);
    }
}
