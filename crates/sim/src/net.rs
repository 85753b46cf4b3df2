//! The simulated network: per-link blocking (symmetric and one-way
//! partitions), random loss, duplication and delay (which reorders).

use rand::rngs::SmallRng;
use rand::Rng;

/// How the network misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// Shortest one-way delay.
    pub delay_min_us: u64,
    /// Longest ordinary one-way delay.
    pub delay_max_us: u64,
    /// Messages lost, per thousand.
    pub drop_per_mille: u32,
    /// Messages delivered twice, per thousand.
    pub dup_per_mille: u32,
    /// Messages held back for a long time (up to `long_delay_max_us`), per
    /// thousand: this is what reorders messages badly.
    pub long_delay_per_mille: u32,
    /// Longest delay of a held-back message.
    pub long_delay_max_us: u64,
}

impl NetConfig {
    /// A network that delivers everything, in about a millisecond.
    pub fn reliable() -> NetConfig {
        NetConfig {
            delay_min_us: 200,
            delay_max_us: 2_000,
            drop_per_mille: 0,
            dup_per_mille: 0,
            long_delay_per_mille: 0,
            long_delay_max_us: 0,
        }
    }

    /// A network that loses, duplicates and reorders.
    pub fn unreliable() -> NetConfig {
        NetConfig {
            delay_min_us: 200,
            delay_max_us: 5_000,
            drop_per_mille: 100,
            dup_per_mille: 50,
            long_delay_per_mille: 20,
            long_delay_max_us: 300_000,
        }
    }
}

/// Which links are cut, and how the rest behave.
#[derive(Debug, Clone)]
pub struct Network {
    nodes: usize,
    /// `blocked[from * nodes + to]`: messages from `from` to `to` are lost.
    blocked: Vec<bool>,
    /// The current behaviour.
    pub config: NetConfig,
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Lost.
    Dropped,
    /// Delivered after the delay (and maybe a second time after another).
    Delivered(u64, Option<u64>),
}

impl Network {
    /// A network of `nodes` nodes, all links up.
    pub fn new(nodes: usize, config: NetConfig) -> Network {
        Network {
            nodes,
            blocked: vec![false; nodes * nodes],
            config,
        }
    }

    /// True when messages from `from` to `to` get through the partitions.
    pub fn connected(&self, from: usize, to: usize) -> bool {
        !self.blocked[from * self.nodes + to]
    }

    /// Cuts or restores the one-way link `from -> to`.
    pub fn set_link(&mut self, from: usize, to: usize, up: bool) {
        self.blocked[from * self.nodes + to] = !up;
    }

    /// Cuts every link between different groups and restores every link
    /// within a group. Nodes not listed in any group are isolated.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let mut group_of = vec![usize::MAX; self.nodes];
        for (g, members) in groups.iter().enumerate() {
            for &n in members {
                group_of[n] = g;
            }
        }
        for a in 0..self.nodes {
            for b in 0..self.nodes {
                let same = a == b || (group_of[a] != usize::MAX && group_of[a] == group_of[b]);
                self.blocked[a * self.nodes + b] = !same;
            }
        }
    }

    /// Cuts every link to and from `node`.
    pub fn isolate(&mut self, node: usize) {
        for other in 0..self.nodes {
            if other != node {
                self.set_link(node, other, false);
                self.set_link(other, node, false);
            }
        }
    }

    /// Restores every link to and from `node`.
    pub fn reconnect(&mut self, node: usize) {
        for other in 0..self.nodes {
            self.set_link(node, other, true);
            self.set_link(other, node, true);
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// True when some link is cut.
    pub fn is_partitioned(&self) -> bool {
        self.blocked.iter().any(|&b| b)
    }

    /// Decides what happens to a message sent now from `from` to `to`.
    pub fn fate(&self, from: usize, to: usize, rng: &mut SmallRng) -> Fate {
        if !self.connected(from, to) {
            return Fate::Dropped;
        }
        let c = &self.config;
        if c.drop_per_mille > 0 && rng.random_range(0..1000) < c.drop_per_mille {
            return Fate::Dropped;
        }
        let delay = |rng: &mut SmallRng| {
            if c.long_delay_per_mille > 0 && rng.random_range(0..1000) < c.long_delay_per_mille {
                rng.random_range(c.delay_max_us..=c.long_delay_max_us.max(c.delay_max_us))
            } else {
                rng.random_range(c.delay_min_us..=c.delay_max_us)
            }
        };
        let first = delay(rng);
        let dup = c.dup_per_mille > 0 && rng.random_range(0..1000) < c.dup_per_mille;
        let second = dup.then(|| delay(rng));
        Fate::Delivered(first, second)
    }
}
