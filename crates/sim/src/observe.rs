//! The per-node invariants checked after every batch of a node's output,
//! and a one-line-per-node description for violation reports.

use raft_core::{Role, MAX_TERM};

use crate::cluster::{id_of, Sim};
use crate::kv::payload_hash;

impl Sim {
    /// The per-node invariants, after each batch of its output.
    pub(crate) fn check_node(&mut self, n: usize) {
        let id = id_of(n);
        let Some(raft) = self.nodes[n].raft.as_ref() else {
            return;
        };
        let (term, commit, role) = (raft.term(), raft.commit_index(), raft.role());
        let durable_term = raft.durable_term();
        let node = &self.nodes[n];
        if term > MAX_TERM {
            let detail = format!("n{id}'s term {term} is above MAX_TERM ({MAX_TERM})");
            self.fail("terms stay within MAX_TERM", detail);
            return;
        }
        if term < node.term_seen {
            let detail = format!("n{id}'s term went from {} to {term}", node.term_seen);
            self.fail("terms never decrease", detail);
            return;
        }
        if commit < node.commit_seen {
            let detail = format!(
                "n{id}'s commit index went from {} to {commit}",
                node.commit_seen
            );
            self.fail("commit never goes backwards", detail);
            return;
        }
        if commit > raft.last_index() {
            let detail = format!(
                "n{id} has commit index {commit} beyond its last entry {}",
                raft.last_index()
            );
            self.fail("committed entries are held", detail);
            return;
        }
        // Every check runs (the checker records what it sees); the first
        // failure is the one reported.
        let mut first: Option<(&'static str, String)> = None;
        let mut keep = |r: Result<(), (&'static str, String)>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        for index in node.commit_seen + 1..=commit {
            if let Some(e) = raft.entry(index) {
                keep(
                    self.checker
                        .committed(id, index, e.term, payload_hash(&e.payload)),
                );
            }
        }
        if role == Role::Leader {
            if node.leader_recorded != term && durable_term == term {
                // Recorded once per term, from when its term is durable: a
                // lone voter leads in memory at once, but nothing it does as
                // leader takes effect before then, and a crash before then
                // leaves another free to win the same term (its vote was
                // never durable).
                keep(self.checker.leader(id, term));
            }
            if commit > node.commit_seen && raft.entry_term(commit) != Some(term) {
                // Paper Figure 8: a leader commits by counting replicas only
                // an entry of its own term.
                keep(Err((
                    "leader commits only its own term",
                    format!(
                        "leader n{id} of term {term} moved its commit index to {commit}, an entry of term {:?}",
                        raft.entry_term(commit)
                    ),
                )));
            }
            if node.checked_leader_term < term {
                keep(self.checker.leader_complete(id, raft));
            }
            if let Some((t, last)) = node.leading {
                if t == term && raft.last_index() < last {
                    keep(Err((
                        "leader append-only",
                        format!(
                            "leader n{id}'s log shrank from {last} to {}",
                            raft.last_index()
                        ),
                    )));
                }
            }
        }
        let last = raft.last_index();
        let node = &mut self.nodes[n];
        node.term_seen = term;
        node.commit_seen = commit;
        if role == Role::Leader {
            node.checked_leader_term = term;
            node.leading = Some((term, last));
            if durable_term == term {
                node.leader_recorded = term;
            }
        } else {
            node.leading = None;
        }
        if let Some((invariant, detail)) = first {
            self.fail(invariant, detail);
        }
    }
}

impl Sim {
    /// One line per node: role, term, log, commit, configuration.
    pub fn describe_nodes(&self) -> String {
        let mut out = String::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let id = id_of(n);
            match &node.raft {
                None => out.push_str(&format!("  n{id}: down\n")),
                Some(r) => {
                    let m = r.membership();
                    let voters: Vec<u64> = m.voters().collect();
                    let learners: Vec<u64> = m.learners().collect();
                    out.push_str(&format!(
                        "  n{id}: {} term {} vote {} last {}/{} commit {} applied {} (handed out {}, {} writes queued) voters {voters:?} learners {learners:?}\n",
                        r.role(),
                        r.term(),
                        r.vote(),
                        r.last_index(),
                        r.last_term(),
                        r.commit_index(),
                        node.kv.applied,
                        r.applied_index(),
                        node.pipeline.waiting()
                            + node.flushing.as_ref().map_or(0, |j| j.batches.len()),
                    ));
                }
            }
        }
        out
    }
}
