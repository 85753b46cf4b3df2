//! The global invariants, checked as the run unfolds. Each check is
//! incremental: it looks at what just happened against what the whole
//! cluster did before, so that checking after every step stays cheap.

use std::collections::HashMap;

use raft_core::{Entry, LogIndex, NodeId, Raft, Term};

use crate::hash::BuildWordHasher;
use crate::kv::payload_hash;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The simulated time, in microseconds.
    pub time_us: u64,
    /// The invariant's name.
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
}

type Check = Result<(), (&'static str, String)>;

fn fail(invariant: &'static str, detail: String) -> Check {
    Err((invariant, detail))
}

/// What the whole cluster did so far.
#[derive(Debug, Default)]
pub struct Checker {
    /// term -> the leader of that term.
    leaders: HashMap<Term, NodeId, BuildWordHasher>,
    /// (voter, term) -> the candidate it granted its vote to.
    votes: HashMap<(NodeId, Term), NodeId, BuildWordHasher>,
    /// (index, term) -> (payload hash, term of the entry before it): with
    /// this, two logs that share an entry share the whole prefix.
    entries: HashMap<(LogIndex, Term), (u64, Term), BuildWordHasher>,
    /// The committed log, as far as known: index -> (term, payload hash).
    committed: Vec<Option<(Term, u64)>>,
    /// The state machine's state hash after applying each index.
    state_after: Vec<Option<u64>>,
}

impl Checker {
    /// A node became (or still is) leader of `term`.
    pub fn leader(&mut self, node: NodeId, term: Term) -> Check {
        match self.leaders.insert(term, node) {
            Some(other) if other != node => fail(
                "election safety",
                format!("n{node} and n{other} are both leaders of term {term}"),
            ),
            _ => Ok(()),
        }
    }

    /// A vote grant left `voter` for `candidate` in `term`.
    pub fn vote(&mut self, voter: NodeId, term: Term, candidate: NodeId) -> Check {
        match self.votes.insert((voter, term), candidate) {
            Some(other) if other != candidate => fail(
                "one vote per term",
                format!("n{voter} voted for n{other} and for n{candidate} in term {term}"),
            ),
            _ => Ok(()),
        }
    }

    /// `node` appended `entries`; `prev_term` is the term of the entry before
    /// the first one.
    pub fn appended(
        &mut self,
        node: NodeId,
        entries: &[Entry],
        mut prev_term: Option<Term>,
    ) -> Check {
        for e in entries {
            let hash = payload_hash(&e.payload);
            if let Some(prev) = prev_term {
                match self.entries.get(&(e.index, e.term)) {
                    Some(&(h, p)) if h != hash || p != prev => {
                        return fail(
                            "log matching",
                            format!(
                                "n{node} holds entry {}/{} after term {prev}, but another log holds {}/{} {} after term {p}",
                                e.index,
                                e.term,
                                e.index,
                                e.term,
                                if h != hash { "with a different payload" } else { "" }
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        self.entries.insert((e.index, e.term), (hash, prev));
                    }
                }
            }
            prev_term = Some(e.term);
        }
        Ok(())
    }

    /// `node` crashed with `durable_term` on its disk, having sent no message
    /// of a term above `max_term_sent`. A term above both that it led (a
    /// lone voter wins before its new term is durable) died with it: its
    /// entries never left the node and are gone, so the node may lead that
    /// term again with other entries. They are forgotten, as if never
    /// appended.
    pub fn crashed(&mut self, node: NodeId, durable_term: Term, max_term_sent: Term) {
        let lost = |term: Term| {
            term > durable_term.max(max_term_sent) && self.leaders.get(&term) == Some(&node)
        };
        self.entries.retain(|&(_, term), _| !lost(term));
    }

    /// Entry `index` of term `term` with payload hash `hash` is committed.
    pub fn committed(&mut self, node: NodeId, index: LogIndex, term: Term, hash: u64) -> Check {
        let i = index as usize;
        if self.committed.len() <= i {
            self.committed.resize(i + 1, None);
        }
        match self.committed[i] {
            Some((t, h)) if t != term || h != hash => fail(
                "state machine safety",
                format!(
                    "n{node} commits entry {index} of term {term}, but entry {index} of term {t} was committed{}",
                    if t == term { " with another payload" } else { "" }
                ),
            ),
            Some(_) => Ok(()),
            None => {
                self.committed[i] = Some((term, hash));
                Ok(())
            }
        }
    }

    /// The state machine of `node` reached `state` after applying `index`.
    pub fn applied(&mut self, node: NodeId, index: LogIndex, state: u64) -> Check {
        let i = index as usize;
        if self.state_after.len() <= i {
            self.state_after.resize(i + 1, None);
        }
        match self.state_after[i] {
            Some(s) if s != state => fail(
                "state machine safety",
                format!("n{node}'s state after applying {index} differs from another node's"),
            ),
            Some(_) => Ok(()),
            None => {
                self.state_after[i] = Some(state);
                Ok(())
            }
        }
    }

    /// The state after `index`, if some node applied it.
    pub fn state_after(&self, index: LogIndex) -> Option<u64> {
        self.state_after.get(index as usize).copied().flatten()
    }

    /// Leader completeness: a new leader holds every committed entry it has
    /// not compacted away.
    pub fn leader_complete(&self, node: NodeId, raft: &Raft) -> Check {
        let from = raft.first_index().max(1);
        for index in from..self.committed.len() as u64 {
            let Some((term, hash)) = self.committed[index as usize] else {
                continue;
            };
            match raft.entry(index) {
                Some(e) if e.term == term && payload_hash(&e.payload) == hash => {}
                Some(e) => {
                    return fail(
                        "leader completeness",
                        format!(
                            "n{node} leads term {} with entry {index} of term {}, but entry {index} of term {term} was committed",
                            raft.term(),
                            e.term
                        ),
                    )
                }
                None => {
                    return fail(
                        "leader completeness",
                        format!(
                            "n{node} leads term {} with a log ending at {}, missing committed entry {index}",
                            raft.term(),
                            raft.last_index()
                        ),
                    )
                }
            }
        }
        Ok(())
    }

    /// The highest index known committed.
    pub fn commit_known(&self) -> LogIndex {
        self.committed.len().saturating_sub(1) as LogIndex
    }

    /// The committed entry at `index`, if known.
    pub fn committed_at(&self, index: LogIndex) -> Option<(Term, u64)> {
        self.committed.get(index as usize).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raft_core::EntryPayload;

    use super::*;

    fn entry(index: LogIndex, term: Term, data: &'static [u8]) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Command(Bytes::from_static(data)),
        }
    }

    #[test]
    fn a_term_that_died_unsent_with_its_leader_may_be_led_again() {
        let mut c = Checker::default();
        c.leader(1, 5).unwrap();
        c.appended(1, &[entry(7, 5, b"lost")], Some(4)).unwrap();
        // Term 5 never reached n1's disk (durable term 4), nothing of it was
        // sent: its entries are gone with the crash.
        c.crashed(1, 4, 4);
        c.leader(1, 5).unwrap();
        c.appended(1, &[entry(7, 5, b"again")], Some(4)).unwrap();
    }

    #[test]
    fn a_term_that_was_sent_or_durable_is_not_forgotten() {
        for (durable, sent) in [(5, 4), (4, 5)] {
            let mut c = Checker::default();
            c.leader(1, 5).unwrap();
            c.appended(1, &[entry(7, 5, b"first")], Some(4)).unwrap();
            c.crashed(1, durable, sent);
            let err = c.appended(2, &[entry(7, 5, b"other")], Some(4));
            assert_eq!(err.unwrap_err().0, "log matching");
        }
    }
}
