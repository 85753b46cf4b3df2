//! Random faults: partitions (symmetric and one-way), crashes and restarts,
//! a misbehaving network, membership changes, leader transfers, `weaken`,
//! messages from another cluster, and forged messages whose terms are
//! implausible.

use raft_core::{
    Append, Body, ConfChange, Entry, EntryPayload, Membership, Message, SnapshotChunk,
    SnapshotMeta, StepError, VoteRequest, MAX_TERM,
};
use rand::Rng;

use crate::cluster::{id_of, Ev, Sim, CLUSTER};
use crate::net::NetConfig;

/// Which faults a run may inject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultMix {
    /// Partitions: split, isolate, one-way links.
    pub partitions: bool,
    /// Crashes and restarts.
    pub crashes: bool,
    /// Changes to loss, duplication and delay.
    pub flaky_network: bool,
    /// Add and remove learners and voters (the leader included).
    pub membership: bool,
    /// Leader transfers and `weaken`.
    pub transfers: bool,
    /// The mean pause between faults.
    pub mean_interval_us: u64,
    /// How often a crash picks the leader rather than a random node.
    pub leader_crash_bias: f64,
}

impl FaultMix {
    /// Every kind of fault.
    pub fn all() -> FaultMix {
        FaultMix {
            partitions: true,
            crashes: true,
            flaky_network: true,
            membership: true,
            transfers: true,
            mean_interval_us: 300_000,
            leader_crash_bias: 0.3,
        }
    }

    /// No faults at all.
    pub fn none() -> FaultMix {
        FaultMix {
            partitions: false,
            crashes: false,
            flaky_network: false,
            membership: false,
            transfers: false,
            mean_interval_us: 300_000,
            leader_crash_bias: 0.3,
        }
    }
}

impl Sim {
    /// Injects random faults from `mix` until `until`.
    pub fn start_faults(&mut self, mix: FaultMix, until: u64) {
        self.fault_mix = mix;
        self.faults_until = until;
        let d = self.fault_pause();
        self.schedule(d, Ev::Fault);
    }

    fn fault_pause(&mut self) -> u64 {
        let mean = self.fault_mix.mean_interval_us.max(1);
        self.rng.random_range(mean / 4..=mean * 7 / 4)
    }

    pub(crate) fn random_fault(&mut self) {
        if self.now > self.faults_until {
            return;
        }
        let d = self.fault_pause();
        self.schedule(d, Ev::Fault);
        let mix = self.fault_mix;
        let mut kinds = Vec::with_capacity(8);
        if mix.partitions {
            kinds.extend([0, 0, 1]);
        }
        if mix.crashes {
            kinds.extend([2, 2]);
        }
        if mix.flaky_network {
            kinds.push(3);
        }
        if mix.membership {
            kinds.extend([4, 4]);
        }
        if mix.transfers {
            kinds.push(5);
        }
        kinds.push(6); // heal or restart: keep the cluster able to make progress
        kinds.push(7); // a message from another cluster
        kinds.push(8); // a forged message with an implausible term
                       // Every seed's first fault is a forged message, so that every seed
                       // exercises that defence.
        let kind = if self.stats.forged_terms_injected == 0 {
            8
        } else {
            kinds[self.rng.random_range(0..kinds.len())]
        };
        match kind {
            0 => self.random_partition(),
            1 => self.random_one_way(),
            2 => self.random_crash_or_restart(),
            3 => self.random_network(),
            4 => self.random_membership_change(),
            5 => self.random_transfer_or_weaken(),
            6 => self.heal_some(),
            8 => {
                let n = self.rng.random_range(0..self.nodes.len());
                self.inject_forged_term(n);
            }
            _ => {
                let n = self.rng.random_range(0..self.nodes.len());
                self.note(format!(
                    "n{} is sent a message from another cluster",
                    id_of(n)
                ));
                self.inject_foreign_message(n);
            }
        }
    }

    fn random_partition(&mut self) {
        let total = self.nodes.len();
        if self.rng.random_bool(0.4) {
            let n = self.rng.random_range(0..total);
            self.net.isolate(n);
            self.note(format!("n{} isolated", id_of(n)));
            return;
        }
        let mut a = Vec::new();
        let mut b = Vec::new();
        for n in 0..total {
            if self.rng.random_bool(0.5) {
                a.push(n);
            } else {
                b.push(n);
            }
        }
        let show = |g: &[usize]| {
            g.iter()
                .map(|&n| id_of(n).to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        self.note(format!("partition {{{}}} | {{{}}}", show(&a), show(&b)));
        self.net.partition(&[a, b]);
    }

    fn random_one_way(&mut self) {
        let total = self.nodes.len();
        let from = self.rng.random_range(0..total);
        let to = self.rng.random_range(0..total);
        if from != to {
            self.net.set_link(from, to, false);
            self.note(format!("link n{} -> n{} cut", id_of(from), id_of(to)));
        }
    }

    fn random_crash_or_restart(&mut self) {
        let total = self.nodes.len();
        let down: Vec<usize> = (0..total).filter(|&n| !self.nodes[n].is_up()).collect();
        // Keep a majority running most of the time, so that there is
        // progress for bugs to corrupt; crash the leader often: that is where
        // bugs hide (the shape of MIT 6.5840's Figure 8 test).
        if !down.is_empty() && (total - down.len() <= total / 2 || self.rng.random_bool(0.3)) {
            let n = down[self.rng.random_range(0..down.len())];
            self.restart(n);
            return;
        }
        let bias = self.fault_mix.leader_crash_bias;
        let target = match self.leader() {
            Some(l) if self.rng.random_bool(bias) => l,
            _ => self.rng.random_range(0..total),
        };
        if self.nodes[target].is_up() {
            self.crash(target);
            let back = self
                .rng
                .random_range(10_000..=self.fault_mix.mean_interval_us * 3);
            self.schedule(back, Ev::Restart(target));
        }
    }

    fn random_network(&mut self) {
        let c = match self.rng.random_range(0..4) {
            0 => NetConfig::reliable(),
            1 => NetConfig::unreliable(),
            2 => NetConfig {
                drop_per_mille: self.rng.random_range(0..300),
                dup_per_mille: self.rng.random_range(0..200),
                ..NetConfig::unreliable()
            },
            _ => NetConfig {
                delay_max_us: 40_000,
                long_delay_per_mille: 100,
                long_delay_max_us: 1_000_000,
                ..NetConfig::reliable()
            },
        };
        self.note(format!(
            "network: drop {}‰ dup {}‰ delay {}-{}us long {}‰",
            c.drop_per_mille,
            c.dup_per_mille,
            c.delay_min_us,
            c.delay_max_us,
            c.long_delay_per_mille
        ));
        self.net.config = c;
    }

    fn random_membership_change(&mut self) {
        let Some(l) = self.leader() else { return };
        let membership = self.nodes[l]
            .raft
            .as_ref()
            .expect("leader is up")
            .membership()
            .clone();
        let total = self.nodes.len();
        let voters: Vec<u64> = membership.voters().collect();
        let learners: Vec<u64> = membership.learners().collect();
        let outsiders: Vec<u64> = (1..=total as u64)
            .filter(|&id| !membership.contains(id))
            .collect();
        let change = match self.rng.random_range(0..3) {
            0 if !outsiders.is_empty() => ConfChange::AddLearner {
                id: outsiders[self.rng.random_range(0..outsiders.len())],
                context: Default::default(),
            },
            1 if !learners.is_empty() => {
                // Promote a learner once it has caught up.
                let id = learners[self.rng.random_range(0..learners.len())];
                let raft = self.nodes[l].raft.as_ref().expect("leader is up");
                let caught_up = raft
                    .progress(id)
                    .is_some_and(|p| p.match_index + 5 >= raft.commit_index());
                if !caught_up {
                    return;
                }
                ConfChange::AddVoter {
                    id,
                    context: Default::default(),
                }
            }
            _ if voters.len() > 3 || (voters.len() > 1 && self.rng.random_bool(0.1)) => {
                // Remove a voter, the leader itself now and then.
                let id = if self.rng.random_bool(0.3) {
                    id_of(l)
                } else {
                    voters[self.rng.random_range(0..voters.len())]
                };
                ConfChange::Remove { id }
            }
            _ if !learners.is_empty() => ConfChange::Remove {
                id: learners[self.rng.random_range(0..learners.len())],
            },
            _ => return,
        };
        self.change_membership(change);
    }

    fn random_transfer_or_weaken(&mut self) {
        let total = self.nodes.len();
        let n = self.rng.random_range(0..total);
        if self.rng.random_bool(0.7) {
            self.transfer_leader(n);
        } else {
            let ticks = self.rng.random_range(5..50);
            self.weaken(n, ticks);
        }
    }

    /// Hands node `n` a forged message of this cluster, from a sender outside
    /// it, that carries a term above [`MAX_TERM`] (as its own term, or inside
    /// a message of a plausible term): the node must refuse it, count it, and
    /// keep its term and role. (One such message once left a whole cluster
    /// unable to elect a leader for good.)
    pub fn inject_forged_term(&mut self, n: usize) {
        let forger = id_of(self.nodes.len());
        let Some(raft) = self.nodes[n].raft.as_ref() else {
            return;
        };
        let (term, role) = (raft.term(), raft.role());
        let (last_index, last_term) = (raft.last_index(), raft.last_term());
        let before = raft.metrics().refused_implausible_term;
        let implausible = match self.rng.random_range(0..4) {
            0 => u64::MAX,
            1 => u64::MAX - 1,
            2 => MAX_TERM + 1,
            _ => self.rng.random_range(MAX_TERM + 1..=u64::MAX),
        };
        // A term the node would adopt, were the message not refused.
        let next = term + 1;
        let (pre, transfer) = (self.rng.random_bool(0.5), self.rng.random_bool(0.5));
        let vote = |last_term| {
            Body::Vote(VoteRequest {
                pre,
                last_index,
                last_term,
                transfer,
            })
        };
        let (message_term, body) = match self.rng.random_range(0..6) {
            0 => (
                implausible,
                Body::Heartbeat {
                    commit: 0,
                    round: 0,
                },
            ),
            1 => (implausible, vote(last_term)),
            2 => (next, vote(implausible)),
            3 => (
                next,
                Body::Append(Append {
                    prev_index: last_index,
                    prev_term: last_term,
                    entries: vec![Entry {
                        index: last_index + 1,
                        term: implausible,
                        payload: EntryPayload::Blank,
                    }],
                    commit: last_index + 1,
                    round: 0,
                }),
            ),
            4 => (
                next,
                Body::Snapshot(Box::new(SnapshotChunk {
                    meta: SnapshotMeta {
                        index: last_index + 1,
                        term: implausible,
                        membership: Membership::with_voters([forger]),
                    },
                    total_bytes: 0,
                    offset: 0,
                    data: Default::default(),
                    round: 0,
                })),
            ),
            _ => (implausible, Body::TimeoutNow),
        };
        let kind = body.kind();
        self.note(format!(
            "n{} is sent a forged {kind} of term {message_term} carrying term {implausible}",
            id_of(n)
        ));
        self.stats.forged_terms_injected += 1;
        let m = Message {
            cluster: CLUSTER,
            from: forger,
            to: id_of(n),
            term: message_term,
            body,
        };
        let raft = self.nodes[n].raft.as_mut().expect("checked up");
        let refused = matches!(raft.step(m), Err(StepError::ImplausibleTerm { .. }));
        let counted = raft.metrics().refused_implausible_term == before + 1;
        let now = raft.term();
        let unchanged = (now, raft.role()) == (term, role);
        if !(refused && counted && unchanged) {
            self.fail(
                "implausible terms refused",
                format!(
                    "n{} took a forged {kind} carrying term {implausible} (refused: {refused}, counted: {counted}, term {term} -> {now})",
                    id_of(n),
                ),
            );
        }
        self.check_node(n);
    }

    /// Undoes some of the damage: heals the network or restarts a node.
    fn heal_some(&mut self) {
        if self.rng.random_bool(0.5) {
            self.net.heal();
            self.note("network healed".to_string());
        } else {
            let down: Vec<usize> = (0..self.nodes.len())
                .filter(|&n| !self.nodes[n].is_up())
                .collect();
            if let Some(&n) = down.first() {
                self.restart(n);
            }
        }
    }

    /// Ends every fault: all links up, a reliable network, every node running.
    pub fn heal_all(&mut self) {
        self.faults_until = 0;
        self.net.heal();
        self.net.config = NetConfig::reliable();
        self.note("heal: every link up, every node running".to_string());
        for n in 0..self.nodes.len() {
            self.restart(n);
        }
    }
}
