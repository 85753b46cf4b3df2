//! Results of a check: [`Report`] on success, [`CheckError`] / [`Violation`]
//! otherwise, and their human-readable rendering.

use std::fmt;

use crate::model::{no_reply, Key, Operation};

/// Statistics about a successful check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Number of distinct keys in the history.
    pub keys: usize,
    /// Number of operations in the history (including unacknowledged reads,
    /// which are ignored by the search).
    pub operations: usize,
    /// Total number of distinct search nodes (memoised `(linearized
    /// operations, value)` pairs) explored, summed over all keys.
    pub states_explored: u64,
}

/// Why a history could not be shown linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// The history is not linearizable (or is malformed).
    Violation(Violation),
    /// The search for `key` explored `states` distinct search nodes,
    /// exceeding its budget, without reaching a verdict. This is *not* a
    /// success: the history may or may not be linearizable.
    Inconclusive {
        /// The key whose search ran out of budget.
        key: Key,
        /// Number of search nodes explored on that key when the search gave up.
        states: u64,
    },
}

impl CheckError {
    /// The violation, if the history was proven not linearizable.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            CheckError::Violation(v) => Some(v),
            CheckError::Inconclusive { .. } => None,
        }
    }

    /// Whether the history was proven not linearizable (as opposed to an
    /// inconclusive search).
    pub fn is_violation(&self) -> bool {
        matches!(self, CheckError::Violation(_))
    }
}

impl fmt::Display for CheckError {
    /// Renders the violation (see [`Violation`]'s `Display`; the alternate
    /// form `{:#}` shows every operation), or the inconclusive key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Violation(v) => fmt::Display::fmt(v, f),
            CheckError::Inconclusive { key, states } => write!(
                f,
                "linearizability check of key {key} is inconclusive: gave up after exploring \
                 {states} search nodes (the history may or may not be linearizable)"
            ),
        }
    }
}

impl std::error::Error for CheckError {}

impl From<Violation> for CheckError {
    fn from(v: Violation) -> Self {
        CheckError::Violation(v)
    }
}

/// Proof that the history of one key is not linearizable, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key whose history is not linearizable.
    pub key: Key,
    /// What could not be explained: the operation that could not take effect
    /// in time after the longest linearizable prefix found, and why none of
    /// the operations that could have taken effect before it works. Operations
    /// are referred to as `#i`, an index into [`operations`](Self::operations).
    pub message: String,
    /// Every operation on `key`, sorted by invocation time (ties keep the
    /// order of the input history). Includes the unacknowledged reads, which
    /// the check ignores.
    pub operations: Vec<Operation>,
    /// The longest linearizable prefix found by the search, as indices into
    /// [`operations`](Self::operations), in linearization order. Empty when
    /// the violation was found without searching (a malformed history, or an
    /// operation needing a value that nothing could have written in time).
    pub linearized_prefix: Vec<usize>,
}

/// Renders operation `#i` of a key's history on one line, without the key.
pub(crate) fn render_op(i: usize, op: &Operation) -> String {
    let times = match op.ret {
        Some((t, _)) => format!("[{}, {t}]", op.call),
        None => format!("[{}, open]", op.call),
    };
    let result = match op.ret {
        Some((_, out)) => out.to_string(),
        None => no_reply(op.input).to_string(),
    };
    format!("#{i} client {} {times} {} -> {result}", op.client, op.input)
}

/// Above this many operations, the non-alternate `Display` of a [`Violation`]
/// only shows the operations around the point where the search got stuck.
const FULL_LISTING: usize = 60;

impl Violation {
    /// The range of operation indices worth showing: around the end of the
    /// longest prefix and the first operations it does not explain.
    fn interesting_range(&self) -> (usize, usize) {
        let n = self.operations.len();
        if n <= FULL_LISTING {
            return (0, n);
        }
        let mut in_prefix = vec![false; n];
        for &i in &self.linearized_prefix {
            in_prefix[i] = true;
        }
        let tail = self.linearized_prefix.iter().rev().take(10).copied();
        let unexplained = (0..n)
            .filter(|&i| !in_prefix[i] && !self.operations[i].is_open())
            .take(10);
        let (lo, hi) = tail
            .chain(unexplained)
            .fold((n, 0), |(lo, hi), i| (lo.min(i), hi.max(i)));
        if lo > hi {
            return (0, n.min(FULL_LISTING));
        }
        (lo.saturating_sub(5), (hi + 6).min(n))
    }
}

impl fmt::Display for Violation {
    /// A multi-line explanation: the key, what could not be explained, the
    /// key's operations with their times (only those around the problem for
    /// long histories, unless the alternate form `{:#}` is used) and the
    /// longest linearizable prefix found.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key;
        writeln!(f, "key {key} is not linearizable: {}", self.message)?;
        let n = self.operations.len();
        let (lo, hi) = if f.alternate() {
            (0, n)
        } else {
            self.interesting_range()
        };
        writeln!(
            f,
            "operations on key {key}, sorted by invocation ([call, return] times):"
        )?;
        if lo > 0 {
            writeln!(f, "  ... {lo} earlier operation(s) not shown")?;
        }
        for (i, op) in self.operations.iter().enumerate().take(hi).skip(lo) {
            writeln!(f, "  {}", render_op(i, op))?;
        }
        if hi < n {
            writeln!(f, "  ... {} later operation(s) not shown", n - hi)?;
        }
        let prefix = &self.linearized_prefix;
        write!(
            f,
            "longest linearizable prefix found ({} operation(s), in linearization order):",
            prefix.len()
        )?;
        const MAX_PREFIX: usize = 40;
        let skip = if f.alternate() {
            0
        } else {
            prefix.len().saturating_sub(MAX_PREFIX)
        };
        if skip > 0 {
            write!(f, " ... ({skip} earlier)")?;
        }
        if prefix.is_empty() {
            write!(f, " (none)")?;
        }
        for i in &prefix[skip..] {
            write!(f, " #{i}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}
