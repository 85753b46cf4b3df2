//! A linearizability checker for histories of a key-value store whose keys are
//! independent registers supporting read, write and compare-and-set, with
//! values that may expire.
//!
//! ```
//! use raft_lincheck::{check, Input, Operation, Output};
//!
//! let history = [
//!     // client 1 writes 5 to key 0 during [0, 10]
//!     Operation::completed(1, 0, Input::Write(5), 0, 10, Output::Write),
//!     // client 2 reads key 0 during [5, 15], concurrently: it may see 5 or nothing
//!     Operation::completed(2, 0, Input::Read, 5, 15, Output::Read(None)),
//!     // client 3 reads after the write completed: it must see 5
//!     Operation::completed(3, 0, Input::Read, 20, 30, Output::Read(Some(5))),
//! ];
//! assert!(check(&history).is_ok());
//!
//! let stale = [
//!     Operation::completed(1, 0, Input::Write(5), 0, 10, Output::Write),
//!     Operation::completed(2, 0, Input::Read, 20, 30, Output::Read(None)),
//! ];
//! let err = check(&stale).unwrap_err();
//! assert!(err.is_violation());
//! println!("{err}"); // a readable explanation
//! ```
//!
//! # Semantics
//!
//! Every key is a register that starts absent (`None`). A history is
//! linearizable if there is a total order of (a subset of) its operations that
//! (1) contains every acknowledged operation, (2) respects real time: if `a`
//! returned before `b` was invoked, `a` comes first, and (3) is a legal
//! sequential execution: every acknowledged operation's [`Output`] is what
//! [`Input::apply`] gives in that order. Unacknowledged operations
//! (`ret: None`) may take effect at any time after their invocation, or never:
//! they are treated as returning at +infinity and are *optional* in the order.
//! Unacknowledged reads constrain nothing and are dropped.
//!
//! ## Expiring values
//!
//! A write with a time to live (`SET k v PX ms`) is recorded as the write of
//! `v` plus an unacknowledged [`Input::Expire`]`(v)` invoked at the same
//! time: the expiry may take effect at any instant after that, or never, and
//! removes the value only if the key still holds `v`. Nothing about *when* it
//! happens is checked (a leader whose clock runs fast expires keys early),
//! but a value that was seen gone cannot come back, and the expiry of `v`
//! never removes another value, provided values are unique per write.
//!
//! ```
//! use raft_lincheck::{check, Input, Operation, Output};
//!
//! let write_px = Operation::completed(1, 0, Input::Write(5), 0, 10, Output::Write);
//! let expiry = Operation::open(1, 0, Input::Expire(5), 0);
//! let gone = Operation::completed(2, 0, Input::Read, 20, 30, Output::Read(None));
//! let back = Operation::completed(2, 0, Input::Read, 40, 50, Output::Read(Some(5)));
//! assert!(check(&[write_px.clone(), expiry.clone(), gone.clone()]).is_ok());
//! assert!(check(&[write_px, expiry, gone, back]).unwrap_err().is_violation());
//! ```
//!
//! ## The tie rule
//!
//! Intervals are **closed**: an operation returning at `t` and one invoked at
//! the same `t` are *concurrent* and may be linearized in either order. Only
//! `a.ret < b.call` (strictly) forces `a` before `b`. This is the conservative
//! choice: it allows every order that half-open intervals would allow, and
//! more, so coinciding timestamps can never cause a false violation (if the
//! simulator's clock cannot order two events, the checker does not order
//! them either). Internally, events are sorted by time with
//! invocations before returns at equal times.
//!
//! # Algorithm
//!
//! 1. **Partition by key** (P-compositionality, Herlihy & Wing): a history of
//!    independent objects is linearizable iff each object's sub-history is.
//!    Keys are checked one at a time, in ascending order.
//! 2. **Quick refutation.** An acknowledged read returning `Some(v)` (or a
//!    successful CAS expecting `Some(v)`) while no operation invoked before it
//!    returned writes `v` can never be linearized; this is checked up front.
//! 3. **Per key: the Wing & Gong search with Lowe's memoisation** ("WGL", as
//!    in Porcupine and Knossos). The invocation and return events of the
//!    acknowledged operations form a doubly linked list sorted by time. An
//!    operation may be linearized next iff its invocation precedes the first
//!    remaining return event. Linearizing it *lifts* its two events out of
//!    the list; a dead end (no candidate works before the first remaining
//!    return, i.e. some operation's deadline passes) pops the explicit
//!    backtracking stack and *unlifts*. Each search node (set of linearized
//!    operations, register value) is recorded in a cache and never explored
//!    twice. The search succeeds as soon as every acknowledged operation is
//!    linearized.
//! 4. **Unacknowledged writes, CASes and expiries** have no return event; they are
//!    candidates from their invocation on, for ever, and optional. Naively
//!    each of them doubles the search space, so their use is restricted:
//!
//!    1. one is only linearized if it *changes* the value;
//!    2. it is only linearized *immediately before an operation whose outcome
//!       depends on it*, compared with the value just before it: an
//!       acknowledged read, a successful acknowledged CAS, a failed
//!       acknowledged CAS that expected the value before it, or another
//!       effective unacknowledged CAS or expiry (chains of those end at an
//!       acknowledged read or CAS; an unacknowledged write of `v` followed by
//!       the expiry of `v` is how a value can vanish). The search node carries the value before the last
//!       operation when that operation is unacknowledged;
//!    3. unacknowledged operations with identical inputs are interchangeable
//!       (both are available at any later point), so only the earliest-invoked
//!       unused one is tried;
//!    4. *dominance*: a node is skipped if a node with the same acknowledged
//!       operations linearized, the same state and a *subset* of its
//!       unacknowledged operations linearized has failed: that node could do
//!       everything the new one can (unacknowledged operations never have to
//!       be linearized). This stops the search from re-exploring the rest of
//!       the history once per harmless use of an unacknowledged write.
//!
//!    Rules 1 and 2 are complete: take any valid linearization and repeatedly
//!    (a) delete an unacknowledged operation that has no effect, or that is
//!    followed by a write (which makes the value independent of it) or by
//!    nothing, or (b) swap it with a following acknowledged failed CAS that
//!    fails both before and after it. Each step keeps the order valid (the
//!    outputs of the acknowledged operations are unchanged; real-time order
//!    is kept because an unacknowledged operation can always move later) and
//!    the process terminates, ending in a linearization that obeys both
//!    rules.
//! 5. **Greedy read-only operations.** If an acknowledged operation that never
//!    changes the value (a read, a failed CAS, a successful `cas(v -> v)`) can
//!    be linearized now, it can be moved to the front of any way of
//!    completing the search (it was concurrent with everything still
//!    pending, and nothing else sees the difference), so it is the only
//!    candidate tried. This removes most of the interleavings of concurrent
//!    reads.
//! 6. **Compact cache.** The linearized sets are bitsets hashed incrementally
//!    (Zobrist hashing, O(1) per step) and stored compressed (number of
//!    leading all-ones words + the other non-zero words), so each cached
//!    node costs around a hundred bytes even when a key has thousands of
//!    operations. Lookups compare the full sets: hash collisions cannot cause
//!    a false verdict.
//!
//! The randomized tests cross-check all of this against a brute-force
//! enumeration of all orders and all subsets of unacknowledged operations.
//!
//! Splitting a key's history at quiescent points is *not* done: the value at
//! such a point is not determined in general (and unacknowledged operations
//! stay pending for ever), so it is not sound by itself.
//!
//! # Performance
//!
//! For bounded concurrency the number of nodes explored grows linearly with
//! the history length. Typical figures (release build): a linearizable
//! 5,000-operation history on one key with 10 clients and 5% unacknowledged
//! operations explores ~20,000 nodes in ~10 ms; refuting the same history
//! with one stale read near its end takes ~60 ms. Proving a violation can in
//! general require exploring every node, and with a *small value domain*
//! (different writes of the same value) combined with unacknowledged writes,
//! almost any read can be explained in many ways, so refuting a long history
//! can exceed the budget and end [`CheckError::Inconclusive`]. Workloads
//! should write unique values (e.g. derived from the client id and a
//! sequence number): linearizable histories check fast either way, but
//! violations are then found fast too.
//!
//! # Search budget and return types
//!
//! Both [`check`] and [`check_with_limit`] return `Result<Report, CheckError>`.
//! The budget bounds the number of distinct search nodes *per key* (memory
//! use is roughly 100-150 bytes per node). If it runs out, the result is
//! [`CheckError::Inconclusive`] — never `Ok`. If some key is proven
//! non-linearizable, that [`CheckError::Violation`] is returned even if
//! another key (checked earlier) was inconclusive; otherwise the first
//! inconclusive key is reported. With several violating keys, the one with
//! the smallest key is reported. [`check`] uses [`DEFAULT_MAX_STATES`].
//!
//! A malformed history (an acknowledged operation returning before its
//! invocation, or a reply of the wrong kind, e.g. a read answered with
//! [`Output::Write`]) is reported as a [`Violation`] of that key.

#![warn(missing_docs)]

mod cache;
mod model;
mod report;
mod wgl;

use std::collections::BTreeMap;

pub use model::{Input, Key, Operation, Output, Value};
pub use report::{CheckError, Report, Violation};

/// The per-key search budget used by [`check`]: 10 million distinct search
/// nodes (on the order of 1-1.5 GB of memory and a few tens of seconds in
/// the worst case). Linearizable histories of thousands of operations with
/// ~10 concurrent clients typically need a few nodes per operation.
pub const DEFAULT_MAX_STATES: u64 = 10_000_000;

/// Checks that `history` is linearizable, with the default search budget
/// ([`DEFAULT_MAX_STATES`] per key).
///
/// The operations may be given in any order. Returns statistics on success;
/// a [`CheckError::Violation`] explaining the problem if some key's history is
/// not linearizable; or [`CheckError::Inconclusive`] if the budget ran out.
pub fn check(history: &[Operation]) -> Result<Report, CheckError> {
    check_with_limit(history, DEFAULT_MAX_STATES)
}

/// Like [`check`], with an explicit budget: the search of each key may explore
/// at most `max_states` distinct search nodes before giving up with
/// [`CheckError::Inconclusive`].
pub fn check_with_limit(history: &[Operation], max_states: u64) -> Result<Report, CheckError> {
    let mut by_key: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        by_key.entry(op.key).or_default().push(i);
    }
    let mut report = Report {
        keys: by_key.len(),
        operations: history.len(),
        states_explored: 0,
    };
    let mut inconclusive = None;
    for (key, mut indices) in by_key {
        // Stable: equal invocation times keep the input order.
        indices.sort_by_key(|&i| history[i].call);
        let ops: Vec<Operation> = indices.iter().map(|&i| history[i].clone()).collect();
        match wgl::check_key(&ops, max_states) {
            wgl::KeyOutcome::Linearizable { states } => report.states_explored += states,
            wgl::KeyOutcome::Inconclusive { states } => {
                report.states_explored += states;
                inconclusive.get_or_insert(CheckError::Inconclusive { key, states });
            }
            wgl::KeyOutcome::Violation { prefix, message } => {
                return Err(CheckError::Violation(Violation {
                    key,
                    message,
                    operations: ops,
                    linearized_prefix: prefix,
                }));
            }
        }
    }
    match inconclusive {
        Some(err) => Err(err),
        None => Ok(report),
    }
}
