//! Known Raft bugs that can be switched on, so that the simulator proves its
//! checkers would catch them. They do nothing unless the crate is built with
//! the `bug-injection` feature; never enable it in a deployment.

/// One injectable bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bug {
    /// Grant votes without checking that the candidate's log is up to date.
    VoteWithoutLogCheck,
    /// Commit an entry of an earlier term by counting replicas (Raft paper
    /// Figure 8).
    CommitOldTermByCount,
    /// Send messages before the term and vote they depend on are durable.
    SendBeforePersist,
    /// Truncate the log after `prev_index` on every append, without looking
    /// for a conflicting entry first.
    TruncateWithoutConflictCheck,
    /// Serve reads at once, without a ReadIndex round or a lease.
    ReadWithoutQuorum,
    /// Hand out entries for applying before they are committed.
    ApplyBeforeCommit,
    /// Accept an append whose previous entry does not match.
    AcceptMismatchedPrev,
    /// Install any snapshot by discarding the whole log, even one older than
    /// what the follower already acknowledged.
    SnapshotDropsUncommitted,
    /// The pipeline sends a batch's `messages_after_persist` before the
    /// save they depend on is durable.
    PipelineSendsBeforeSave,
    /// The pipeline holds back (does not wait for) a hard state whose term
    /// or vote changed, as if only its commit index had: a crash then
    /// loses the vote.
    PipelineHoldsVote,
    /// The pipeline hands out a batch's reads as soon as the core does,
    /// ahead of the committed entries they wait for (the batch's own and
    /// those of the batches waiting for the disk): a read is answered
    /// before the writes it must see are applied.
    PipelineAnswersBeforeApply,
    /// The pipeline keeps a held commit index after a newer hard state was
    /// written in its place, and writes it later: the durable commit index
    /// goes back (and term and vote with it, if they changed meanwhile), so
    /// a crash loses them.
    PipelineKeepsStaleCommit,
}

impl Bug {
    /// Every bug, in a fixed order.
    pub const ALL: [Bug; 12] = [
        Bug::VoteWithoutLogCheck,
        Bug::CommitOldTermByCount,
        Bug::SendBeforePersist,
        Bug::TruncateWithoutConflictCheck,
        Bug::ReadWithoutQuorum,
        Bug::ApplyBeforeCommit,
        Bug::AcceptMismatchedPrev,
        Bug::SnapshotDropsUncommitted,
        Bug::PipelineSendsBeforeSave,
        Bug::PipelineHoldsVote,
        Bug::PipelineAnswersBeforeApply,
        Bug::PipelineKeepsStaleCommit,
    ];

    /// The bug's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "vote-without-log-check",
            Bug::CommitOldTermByCount => "commit-old-term-by-count",
            Bug::SendBeforePersist => "send-before-persist",
            Bug::TruncateWithoutConflictCheck => "truncate-without-conflict-check",
            Bug::ReadWithoutQuorum => "read-without-quorum",
            Bug::ApplyBeforeCommit => "apply-before-commit",
            Bug::AcceptMismatchedPrev => "accept-mismatched-prev",
            Bug::SnapshotDropsUncommitted => "snapshot-drops-uncommitted",
            Bug::PipelineSendsBeforeSave => "pipeline-sends-before-save",
            Bug::PipelineHoldsVote => "pipeline-holds-vote",
            Bug::PipelineAnswersBeforeApply => "pipeline-answers-before-apply",
            Bug::PipelineKeepsStaleCommit => "pipeline-keeps-stale-commit",
        }
    }

    /// The bug with that command-line name.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// A set of bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BugSet(u16);

impl BugSet {
    /// The set holding just `bug`.
    pub fn only(bug: Bug) -> BugSet {
        BugSet(1 << bug as u16)
    }

    /// True if `bug` is switched on (and the crate was built to honour it).
    #[inline(always)]
    pub fn has(self, bug: Bug) -> bool {
        cfg!(feature = "bug-injection") && self.0 & (1 << bug as u16) != 0
    }
}
