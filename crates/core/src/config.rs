//! The knobs of one node, all in ticks, entries and bytes, validated before use.

use crate::bugs::BugSet;
use crate::types::{NodeId, NO_NODE};

/// How linearizable reads are confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// The leader confirms it is still leader with a heartbeat round to a
    /// quorum before serving (Raft thesis 6.4). Safe whatever the clocks do.
    #[default]
    ReadIndex,
    /// The leader serves reads without a round while its lease holds: a
    /// quorum acknowledged a heartbeat sent less than
    /// `election_timeout_ticks_min - lease_drift_ticks` ticks ago. Needs
    /// check-quorum, and clocks whose drift stays within the bound.
    Lease,
}

/// The configuration of one node.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id; never [`NO_NODE`].
    pub id: NodeId,
    /// The cluster id carried in every message.
    pub cluster: u64,
    /// Ticks between heartbeats from the leader.
    pub heartbeat_interval_ticks: u64,
    /// The shortest election timeout; also the check-quorum period and the
    /// length of a follower's "leader is alive" lease.
    pub election_timeout_ticks_min: u64,
    /// One past the longest election timeout; each timeout is drawn uniformly
    /// from `[min, max)`.
    pub election_timeout_ticks_max: u64,
    /// Ask for pre-votes before a real election (Raft thesis 9.6).
    pub pre_vote: bool,
    /// The leader steps down when it has not heard from a quorum for an
    /// election timeout, and followers that hear from a leader ignore vote
    /// requests (Raft thesis 6.2).
    pub check_quorum: bool,
    /// How reads are confirmed.
    pub read_mode: ReadMode,
    /// The bound on clock drift that lease reads assume, in ticks taken off
    /// the lease.
    pub lease_drift_ticks: u64,
    /// The most payload bytes in one append message (at least one entry is
    /// always sent).
    pub max_append_bytes: usize,
    /// The most entries in one append message.
    pub max_append_entries: usize,
    /// The most append messages in flight to one follower.
    pub max_inflight_appends: usize,
    /// The most bytes of proposals the leader accepts beyond the commit index
    /// before it refuses new ones (back-pressure).
    pub max_uncommitted_bytes: usize,
    /// The most committed bytes handed out in one `Ready` for applying.
    pub max_apply_bytes: usize,
    /// The size of one InstallSnapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Snapshot chunks in flight to one follower.
    pub max_inflight_snapshot_chunks: usize,
    /// Hand the chunks of a snapshot received from the leader out in
    /// [`crate::Ready::snapshot_chunks`] (for the driver to write to a file)
    /// instead of gathering them in memory; the installed snapshot then comes
    /// out with empty data and [`crate::Ready::snapshot_streamed`] set, and
    /// the driver gives the data back with [`crate::Raft::set_snapshot_data`]
    /// once it can be read (so that this node can send it on).
    pub stream_snapshots: bool,
    /// Log entries kept below a snapshot, so that slightly lagging followers
    /// catch up from the log instead of a snapshot.
    pub snapshot_trailing_entries: u64,
    /// A leader whose own log write has made no progress for this many
    /// ticks, while it holds entries not yet durable here, hands its
    /// leadership to the most up-to-date voter (0: never). Such a leader
    /// answers nothing (a write is answered once durable here too), yet
    /// its heartbeats keep the followers from electing another: without
    /// this, one node's stalled disk stalls the whole cluster for as long
    /// as the stall lasts.
    pub disk_stall_ticks: u64,
    /// Seed of this node's random number generator (election timeouts).
    pub seed: u64,
    /// Bugs to switch on; only honoured with the `bug-injection` feature.
    #[doc(hidden)]
    pub bugs: BugSet,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            id: 1,
            cluster: 0,
            heartbeat_interval_ticks: 1,
            election_timeout_ticks_min: 10,
            election_timeout_ticks_max: 20,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::ReadIndex,
            lease_drift_ticks: 2,
            max_append_bytes: 1 << 20,
            max_append_entries: 4096,
            max_inflight_appends: 64,
            max_uncommitted_bytes: 64 << 20,
            max_apply_bytes: 16 << 20,
            snapshot_chunk_bytes: 1 << 20,
            max_inflight_snapshot_chunks: 4,
            stream_snapshots: false,
            snapshot_trailing_entries: 1024,
            disk_stall_ticks: 0,
            seed: 0,
            bugs: BugSet::default(),
        }
    }
}

/// A configuration value that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Id 0 is reserved for "no node".
    #[error("node id 0 is reserved for \"no node\"; pick another id")]
    ReservedId,
    /// A value must be positive.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The election timeout range is empty.
    #[error("election_timeout_ticks_max ({max}) must be greater than election_timeout_ticks_min ({min})")]
    ElectionRange {
        /// The minimum given.
        min: u64,
        /// The maximum given.
        max: u64,
    },
    /// Heartbeats must come well within an election timeout.
    #[error("heartbeat_interval_ticks ({heartbeat}) must be less than election_timeout_ticks_min ({min})")]
    HeartbeatTooSlow {
        /// The heartbeat interval given.
        heartbeat: u64,
        /// The minimum election timeout given.
        min: u64,
    },
    /// Lease reads rely on check-quorum.
    #[error("read_mode = Lease needs check_quorum = true")]
    LeaseWithoutCheckQuorum,
    /// The drift bound eats the whole lease.
    #[error("lease_drift_ticks ({drift}) must be less than election_timeout_ticks_min ({min})")]
    LeaseDrift {
        /// The drift bound given.
        drift: u64,
        /// The minimum election timeout given.
        min: u64,
    },
}

impl Config {
    /// Checks that the configuration can work; says what is wrong if not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NO_NODE {
            return Err(ConfigError::ReservedId);
        }
        let positive: [(&'static str, u64); 8] = [
            ("heartbeat_interval_ticks", self.heartbeat_interval_ticks),
            (
                "election_timeout_ticks_min",
                self.election_timeout_ticks_min,
            ),
            ("max_append_bytes", self.max_append_bytes as u64),
            ("max_append_entries", self.max_append_entries as u64),
            ("max_inflight_appends", self.max_inflight_appends as u64),
            ("max_apply_bytes", self.max_apply_bytes as u64),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes as u64),
            (
                "max_inflight_snapshot_chunks",
                self.max_inflight_snapshot_chunks as u64,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        let (min, max) = (
            self.election_timeout_ticks_min,
            self.election_timeout_ticks_max,
        );
        if max <= min {
            return Err(ConfigError::ElectionRange { min, max });
        }
        if self.heartbeat_interval_ticks >= min {
            return Err(ConfigError::HeartbeatTooSlow {
                heartbeat: self.heartbeat_interval_ticks,
                min,
            });
        }
        if self.read_mode == ReadMode::Lease {
            if !self.check_quorum {
                return Err(ConfigError::LeaseWithoutCheckQuorum);
            }
            if self.lease_drift_ticks >= min {
                return Err(ConfigError::LeaseDrift {
                    drift: self.lease_drift_ticks,
                    min,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let bad = Config {
            election_timeout_ticks_min: 20,
            election_timeout_ticks_max: 10,
            ..Config::default()
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err, ConfigError::ElectionRange { min: 20, max: 10 });
        assert!(err.to_string().contains("must be greater than"));
        let bad = Config {
            id: 0,
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::ReservedId));
        let bad = Config {
            read_mode: ReadMode::Lease,
            check_quorum: false,
            ..Config::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::LeaseWithoutCheckQuorum));
        let bad = Config {
            max_inflight_appends: 0,
            ..Config::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ConfigError::Zero("max_inflight_appends"))
        );
    }
}
