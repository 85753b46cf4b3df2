//! Counters of what a node did and refused.

/// Counters about what the node did and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Messages refused because they came from another cluster.
    pub refused_foreign_cluster: u64,
    /// Messages refused because they were not addressed to this node or came
    /// from an invalid sender.
    pub refused_misaddressed: u64,
    /// Messages refused because they contradicted themselves.
    pub refused_malformed: u64,
    /// Messages refused because they carried a term above
    /// [`MAX_TERM`](crate::MAX_TERM): forged or corrupt.
    pub refused_implausible_term: u64,
    /// Pre-vote rounds started.
    pub pre_elections: u64,
    /// Elections started (term increments by campaigning).
    pub elections: u64,
    /// Times this node became leader.
    pub leaderships: u64,
    /// Vote requests ignored because a leader was heard from recently.
    pub votes_ignored_in_lease: u64,
    /// Commands proposed while leader.
    pub proposals: u64,
    /// Proposals refused by back-pressure.
    pub proposals_refused: u64,
    /// Snapshots this node took.
    pub snapshots_taken: u64,
    /// Snapshot transfers this node (as leader) started.
    pub snapshots_sent: u64,
    /// Snapshots this node received and installed.
    pub snapshots_installed: u64,
    /// Reads confirmed by a heartbeat round.
    pub reads_by_round: u64,
    /// Reads served under the leader lease.
    pub reads_by_lease: u64,
    /// Leader transfers that timed out.
    pub transfers_aborted: u64,
    /// Leaderships handed over because this leader's own log writes
    /// stalled ([`crate::Config::disk_stall_ticks`]).
    pub disk_stall_handovers: u64,
    /// Messages produced.
    pub messages_sent: u64,
}
