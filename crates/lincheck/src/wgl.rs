//! The Wing & Gong / Lowe ("WGL") search for one key's history.
//!
//! See the crate documentation for the algorithm overview and the arguments
//! for why each pruning keeps the search complete; this module holds the
//! implementation details:
//!
//! * Operations that got a reply ("completed") get ids `0..n_completed` in
//!   invocation order; unacknowledged writes, CASes and expiries ("open") get the ids
//!   after those. Unacknowledged reads are dropped (they constrain nothing).
//! * All events (invocations of every op, returns of completed ops) are sorted
//!   by `(time, kind)` with invocations before returns at equal times, and
//!   numbered by *rank*. An op can be linearized next iff it is invoked before
//!   (in rank order) the earliest return of a not-yet-linearized completed op.
//! * The events of completed ops form a doubly linked list (the classic WGL
//!   list); linearizing an op *lifts* its call and return entries out of it,
//!   backtracking *unlifts* them. Open ops have no return event and live in a
//!   second linked list of their own, scanned after the completed candidates.
//! * A search node is `(done, open, value, pending)`: the linearized
//!   completed ops, the linearized open ops, the register value, and
//!   `pending` = `Some(previous value)` if the last linearized op was open.
//!   Nodes are memoised in a `Cache`; the search is an explicit-stack DFS
//!   (no recursion). Each stack frame remembers where to resume the scan of
//!   its parent's candidates (`Cursor`).
//!
//! Prunings (numbered as in the crate docs):
//!
//! 1. an open op is only linearized if it changes the register value;
//! 2. it must be immediately followed by an op whose outcome *depends* on it
//!    (compared with the value `pending` before it): a completed read, a
//!    successful completed CAS, a failed completed CAS that expected the
//!    previous value, or another effective open CAS or expiry. Writes, and failed CASes
//!    that would have failed anyway, cannot directly follow an open op. A
//!    lookahead (`Search::has_observer`) skips open ops that nothing could
//!    follow without creating a node;
//! 3. of open ops with identical inputs, only the earliest-invoked
//!    unlinearized one is tried;
//! 4. dominance (in `Cache`): a node is skipped if a failed node has the
//!    same completed set and state and a subset of its open ops;
//! 5. greedy: if a completed op that cannot change the value (a read, a
//!    failed CAS) can be linearized, it is the only candidate tried.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::cache::{Bitset, Cache, NodeState};
use crate::model::{Input, Operation, Output, ShowValue, Value};
use crate::report::render_op;

/// The result of checking one key.
pub(crate) enum KeyOutcome {
    /// A linearization exists.
    Linearizable { states: u64 },
    /// The search budget ran out.
    Inconclusive { states: u64 },
    /// No linearization exists (or the history is malformed).
    Violation {
        /// Indices (into the key's operations) of the longest linearizable
        /// prefix found, in linearization order.
        prefix: Vec<usize>,
        /// What could not be explained.
        message: String,
    },
}

/// An operation as the search sees it.
#[derive(Debug, Clone, Copy)]
struct SearchOp {
    input: Input,
    /// `None` for an open (unacknowledged) operation.
    output: Option<Output>,
    call_rank: u32,
    /// Rank of the return event; `u32::MAX` for open operations.
    ret_rank: u32,
    /// Index into the key's operations.
    orig: usize,
    /// Acknowledged, and its reply implies it did not change the value (a
    /// read, a failed CAS, or a successful `cas(v -> v)`).
    read_only: bool,
}

/// The node state after linearizing `op` in `st`, or `None` if `op` cannot
/// (or need not) be linearized there.
#[inline]
fn transition(op: &SearchOp, st: NodeState) -> Option<NodeState> {
    let (value, out) = op.input.apply(st.value);
    match op.output {
        Some(expected) => {
            if out != expected {
                return None;
            }
            if let Some(before) = st.pending {
                // Pruning 2: the previous (open) op must make a difference.
                match op.input {
                    Input::Write(_) => return None,
                    Input::Cas { expected, .. }
                        if out == Output::Cas(false) && expected != before =>
                    {
                        return None
                    }
                    _ => {}
                }
            }
            Some(NodeState {
                value,
                pending: None,
            })
        }
        None => {
            // Pruning 1: an open op without effect is never needed.
            // Pruning 2: an open write right after an open op would hide it.
            if value == st.value || (st.pending.is_some() && matches!(op.input, Input::Write(_))) {
                return None;
            }
            Some(NodeState {
                value,
                pending: Some(st.value),
            })
        }
    }
}

const HEAD: u32 = 0;
const TAIL: u32 = 1;

#[inline]
fn call_node(op: u32) -> u32 {
    2 + 2 * op
}

#[inline]
fn ret_node(op: u32) -> u32 {
    3 + 2 * op
}

/// Where the candidate scan is.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// Just arrived at a node: look for an operation to linearize greedily.
    Enter,
    /// The current node has no (more) options: backtrack.
    Fail,
    /// At this node of the completed-ops list.
    Main(u32),
    /// At this node of the open-ops list; only ops invoked before rank
    /// `limit` (the earliest pending return) are candidates.
    Open(u32, u32),
}

/// One linearized op on the DFS stack, with what is needed to undo it.
#[derive(Debug, Clone, Copy)]
struct Frame {
    op: u32,
    /// The node state before `op`.
    state: NodeState,
    /// The cache entry of the node reached by linearizing `op`.
    entry: u32,
    /// Where to resume the scan of the node before `op` when backtracking.
    resume: Cursor,
}

/// Checks that every acknowledged operation is well-formed.
fn validate(ops: &[Operation]) -> Result<(), String> {
    for (i, op) in ops.iter().enumerate() {
        if let Some((t, out)) = op.ret {
            if t < op.call {
                return Err(format!(
                    "operation #{i} is malformed: it returned at t={t}, before its invocation at t={}",
                    op.call
                ));
            }
            if !op.input.accepts(out) {
                return Err(format!(
                    "operation #{i} is malformed: the reply {out:?} does not answer {}",
                    op.input
                ));
            }
        }
    }
    Ok(())
}

/// Finds an acknowledged op that needs the register to hold a value (a read
/// returning `Some(v)`, a successful CAS expecting `Some(v)`) that no
/// operation invoked before it returned could have written. Such an op can
/// never be linearized; detecting it up front is cheap and spares the search
/// an exhaustive (possibly budget-exceeding) refutation.
fn unexplainable_value(ops: &[Operation]) -> Option<String> {
    // Earliest invocation of an op that may write each value.
    let mut first_write: HashMap<Value, u64> = HashMap::new();
    for op in ops {
        let written = match (op.input, op.output()) {
            (Input::Write(v), _) => v,
            (Input::Cas { new, .. }, None | Some(Output::Cas(true))) => new,
            _ => continue,
        };
        let t = first_write.entry(written).or_insert(op.call);
        *t = (*t).min(op.call);
    }
    ops.iter().enumerate().find_map(|(i, op)| {
        let (ret, needed) = match (op.input, op.ret) {
            (_, Some((t, Output::Read(Some(v))))) => (t, v),
            (
                Input::Cas {
                    expected: Some(v), ..
                },
                Some((t, Output::Cas(true))),
            ) => (t, v),
            _ => return None,
        };
        let possible = first_write.get(&needed).is_some_and(|&call| call <= ret);
        (!possible).then(|| {
            format!(
                "{} needs the value {needed}, but no operation invoked before it returned \
                 writes {needed}",
                render_op(i, op)
            )
        })
    })
}

/// Checks the history of one key. `ops` must all be on that key, sorted by
/// invocation time; `max_states` bounds the number of distinct search states.
pub(crate) fn check_key(ops: &[Operation], max_states: u64) -> KeyOutcome {
    if let Some(message) = validate(ops).err().or_else(|| unexplainable_value(ops)) {
        return KeyOutcome::Violation {
            prefix: Vec::new(),
            message,
        };
    }
    let completed = ops.iter().enumerate().filter(|(_, o)| o.ret.is_some());
    let open = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.ret.is_none() && o.input != Input::Read);
    let mut sops: Vec<SearchOp> = completed
        .chain(open)
        .map(|(orig, o)| SearchOp {
            input: o.input,
            output: o.output(),
            call_rank: 0,
            ret_rank: u32::MAX,
            orig,
            read_only: match (o.input, o.output()) {
                (_, Some(Output::Read(_) | Output::Cas(false))) => true,
                (Input::Cas { expected, new }, Some(Output::Cas(true))) => expected == Some(new),
                _ => false,
            },
        })
        .collect();
    let n = sops.len();
    let n_completed = sops.iter().filter(|o| o.output.is_some()).count();
    assert!(
        n < (u32::MAX / 2 - 2) as usize,
        "too many operations on one key"
    );

    // Events: (time, kind (0 = call, 1 = return), op id).
    let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(n + n_completed);
    for (id, s) in sops.iter().enumerate() {
        let op = &ops[s.orig];
        events.push((op.call, 0, id as u32));
        if let Some(t) = op.ret_time() {
            events.push((t, 1, id as u32));
        }
    }
    events.sort_unstable();

    for (rank, &(_, kind, id)) in events.iter().enumerate() {
        let s = &mut sops[id as usize];
        if kind == 0 {
            s.call_rank = rank as u32;
        } else {
            s.ret_rank = rank as u32;
        }
    }

    let mut search = Search {
        originals: ops,
        ops: sops,
        n_completed,
        next: vec![TAIL; 2 + 2 * n_completed],
        prev: vec![HEAD; 2 + 2 * n_completed],
        onext: vec![TAIL; 2 + n - n_completed],
        oprev: vec![HEAD; 2 + n - n_completed],
        open_cas: Vec::new(),
        open_expire: Vec::new(),
        group: Vec::with_capacity(n - n_completed),
        group_linearized: Vec::new(),
        linearized: vec![false; n],
    };
    let mut groups: HashMap<Input, u32> = HashMap::new();
    for op in n_completed..n {
        let input = search.ops[op].input;
        match input {
            Input::Cas { expected, .. } => search.open_cas.push((expected, op as u32)),
            Input::Expire(v) => search.open_expire.push((v, op as u32)),
            Input::Read | Input::Write(_) => {}
        }
        let next_group = groups.len() as u32;
        let group = *groups.entry(input).or_insert(next_group);
        if group as usize == search.group_linearized.len() {
            search.group_linearized.push(0);
        }
        // Temporarily count the group's size in `group_linearized`.
        search
            .group
            .push((group, search.group_linearized[group as usize]));
        search.group_linearized[group as usize] += 1;
    }
    search.group_linearized.fill(0);
    search.open_cas.sort_unstable();
    search.open_expire.sort_unstable();
    let (mut last, mut olast) = (HEAD, HEAD);
    for &(_, kind, id) in &events {
        if (id as usize) < n_completed {
            let node = if kind == 0 {
                call_node(id)
            } else {
                ret_node(id)
            };
            search.next[last as usize] = node;
            search.prev[node as usize] = last;
            last = node;
        } else {
            let node = search.open_node(id);
            search.onext[olast as usize] = node;
            search.oprev[node as usize] = olast;
            olast = node;
        }
    }
    search.next[last as usize] = TAIL;
    search.prev[TAIL as usize] = last;
    search.onext[olast as usize] = TAIL;
    search.oprev[TAIL as usize] = olast;
    search.run(max_states)
}

struct Search<'a> {
    /// The key's operations, as given.
    originals: &'a [Operation],
    ops: Vec<SearchOp>,
    n_completed: usize,
    /// The list of call/return events of completed ops (nodes: `HEAD`,
    /// `TAIL`, `call_node(op)`, `ret_node(op)`).
    next: Vec<u32>,
    prev: Vec<u32>,
    /// The list of open ops (nodes: `HEAD`, `TAIL`, `open_node(op)`).
    onext: Vec<u32>,
    oprev: Vec<u32>,
    /// Open CASes, as `(expected, op)`, sorted.
    open_cas: Vec<(Option<Value>, u32)>,
    /// Open expiries, as `(value, op)`, sorted.
    open_expire: Vec<(Value, u32)>,
    /// Whether each op is currently linearized (lifted).
    linearized: Vec<bool>,
    /// Per open op (indexed from `n_completed`): its group of open ops with
    /// the same input, and its position in the group (in invocation order).
    group: Vec<(u32, u32)>,
    /// Per group: how many of its members are linearized. Members of a
    /// group are interchangeable, so they are linearized in invocation
    /// order: the linearized ones are always the first ones.
    group_linearized: Vec<u32>,
}

impl Search<'_> {
    #[inline]
    fn open_node(&self, op: u32) -> u32 {
        2 + op - self.n_completed as u32
    }

    #[inline]
    fn open_op(&self, node: u32) -> u32 {
        node - 2 + self.n_completed as u32
    }

    #[inline]
    fn is_completed(&self, op: u32) -> bool {
        (op as usize) < self.n_completed
    }

    #[inline]
    fn unlink(next: &mut [u32], prev: &mut [u32], node: u32) {
        let (p, n) = (prev[node as usize], next[node as usize]);
        next[p as usize] = n;
        prev[n as usize] = p;
    }

    #[inline]
    fn relink(next: &mut [u32], prev: &mut [u32], node: u32) {
        let (p, n) = (prev[node as usize], next[node as usize]);
        next[p as usize] = node;
        prev[n as usize] = node;
    }

    fn lift(&mut self, op: u32) {
        self.linearized[op as usize] = true;
        if self.is_completed(op) {
            Self::unlink(&mut self.next, &mut self.prev, call_node(op));
            Self::unlink(&mut self.next, &mut self.prev, ret_node(op));
        } else {
            let node = self.open_node(op);
            Self::unlink(&mut self.onext, &mut self.oprev, node);
            let (group, _) = self.group[op as usize - self.n_completed];
            self.group_linearized[group as usize] += 1;
        }
    }

    fn unlift(&mut self, op: u32) {
        self.linearized[op as usize] = false;
        if self.is_completed(op) {
            Self::relink(&mut self.next, &mut self.prev, ret_node(op));
            Self::relink(&mut self.next, &mut self.prev, call_node(op));
        } else {
            let node = self.open_node(op);
            Self::relink(&mut self.onext, &mut self.oprev, node);
            let (group, _) = self.group[op as usize - self.n_completed];
            self.group_linearized[group as usize] -= 1;
        }
    }

    fn run(mut self, max_states: u64) -> KeyOutcome {
        let n_completed = self.n_completed;
        let mut done = Bitset::new(n_completed);
        let mut open = Bitset::new(self.ops.len() - n_completed);
        let mut cache = Cache::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut state = NodeState {
            value: None,
            pending: None,
        };
        let mut remaining = n_completed;
        // Longest prefix (ending with a completed op) reached so far, and the
        // length of its common prefix with the current stack.
        let mut best: Vec<u32> = Vec::new();
        let mut common = 0usize;
        let mut cursor = Cursor::Enter;

        loop {
            if remaining == 0 {
                return KeyOutcome::Linearizable {
                    states: cache.len() as u64,
                };
            }
            // Pick the next candidate `(op, cursor if it fails)`, or backtrack.
            let candidate = match cursor {
                Cursor::Enter => {
                    // Pruning 5 (greedy): an acknowledged op that never
                    // changes the value (a read, a failed CAS) and may take
                    // effect now can be moved to the front of any completion,
                    // so if there is one, it is the only option worth trying.
                    let mut node = self.next[HEAD as usize];
                    let mut greedy = None;
                    while node.is_multiple_of(2) {
                        let op = (node - 2) / 2;
                        let sop = &self.ops[op as usize];
                        if sop.read_only && transition(sop, state).is_some() {
                            greedy = Some(op);
                            break;
                        }
                        node = self.next[node as usize];
                    }
                    match greedy {
                        Some(op) => Some((op, Cursor::Fail)),
                        None => {
                            cursor = Cursor::Main(self.next[HEAD as usize]);
                            continue;
                        }
                    }
                }
                Cursor::Fail => None,
                Cursor::Main(node) => {
                    if node % 2 == 0 {
                        let op = (node - 2) / 2;
                        Some((op, Cursor::Main(self.next[node as usize])))
                    } else {
                        // The earliest pending return: from here on, only
                        // open ops invoked before it are candidates.
                        debug_assert_ne!(node, TAIL);
                        let limit = self.ops[((node - 3) / 2) as usize].ret_rank;
                        cursor = Cursor::Open(self.onext[HEAD as usize], limit);
                        continue;
                    }
                }
                Cursor::Open(node, limit) => {
                    if node == TAIL || self.ops[self.open_op(node) as usize].call_rank >= limit {
                        None
                    } else {
                        let op = self.open_op(node);
                        let fallback = Cursor::Open(self.onext[node as usize], limit);
                        // Pruning 3 (symmetry): of interchangeable open ops,
                        // only the first unlinearized one is tried.
                        let (group, position) = self.group[op as usize - n_completed];
                        let first_of_group = self.group_linearized[group as usize] == position;
                        // Lookahead: an open op must be followed by an
                        // observer (pruning 2); skip it without creating a
                        // node if none is available.
                        match transition(&self.ops[op as usize], state) {
                            Some(next) if first_of_group && self.has_observer(next, limit) => {
                                Some((op, fallback))
                            }
                            _ => {
                                cursor = fallback;
                                continue;
                            }
                        }
                    }
                }
            };

            match candidate {
                Some((op, fallback)) => {
                    let Some(next_state) = transition(&self.ops[op as usize], state) else {
                        cursor = fallback;
                        continue;
                    };
                    let completed = self.is_completed(op);
                    let (set, index) = if completed {
                        (&mut done, op as usize)
                    } else {
                        (&mut open, op as usize - n_completed)
                    };
                    set.insert(index);
                    let Some(entry) = cache.visit(&done, &open, next_state) else {
                        if completed {
                            done.remove(index);
                        } else {
                            open.remove(index);
                        }
                        cursor = fallback;
                        continue;
                    };
                    if cache.len() as u64 > max_states {
                        return KeyOutcome::Inconclusive {
                            states: cache.len() as u64,
                        };
                    }
                    // Keep `common` = length of the common prefix of `best` and the stack.
                    if common == stack.len() && best.get(common) == Some(&op) {
                        common += 1;
                    }
                    stack.push(Frame {
                        op,
                        state,
                        entry,
                        resume: fallback,
                    });
                    state = next_state;
                    self.lift(op);
                    if completed {
                        remaining -= 1;
                        if stack.len() > best.len() {
                            best.truncate(common);
                            best.extend(stack[common..].iter().map(|f| f.op));
                            common = stack.len();
                        }
                    }
                    cursor = Cursor::Enter;
                }
                None => {
                    let Some(frame) = stack.pop() else {
                        let (prefix, message) = self.explain(&best);
                        return KeyOutcome::Violation { prefix, message };
                    };
                    cache.mark_failed(frame.entry, &done, state);
                    common = common.min(stack.len());
                    let op = frame.op;
                    self.unlift(op);
                    state = frame.state;
                    if self.is_completed(op) {
                        done.remove(op as usize);
                        remaining += 1;
                    } else {
                        open.remove(op as usize - n_completed);
                    }
                    cursor = frame.resume;
                }
            }
        }
    }

    /// Whether some operation may be linearized in `state` (reached by
    /// linearizing an open op) while the earliest pending return has rank
    /// `limit`: an acknowledged op before that return, an open CAS expecting
    /// the current value, or the open expiry of the current value (an open
    /// write then its expiry is how a value can vanish).
    fn has_observer(&self, state: NodeState, limit: u32) -> bool {
        let mut node = self.next[HEAD as usize];
        while node.is_multiple_of(2) {
            if transition(&self.ops[((node - 2) / 2) as usize], state).is_some() {
                return true;
            }
            node = self.next[node as usize];
        }
        // Otherwise only an open op that changes the value can follow: a CAS
        // expecting the current value, or the expiry of the current value.
        let available = |op: u32| {
            let sop = &self.ops[op as usize];
            !self.linearized[op as usize]
                && sop.call_rank < limit
                && transition(sop, state).is_some()
        };
        if let Some(value) = state.value {
            let first = self.open_expire.partition_point(|&(v, _)| v < value);
            let expiries = self.open_expire[first..].iter();
            if expiries
                .take_while(|&&(v, _)| v == value)
                .any(|&(_, op)| available(op))
            {
                return true;
            }
        }
        let first = self.open_cas.partition_point(|&(v, _)| v < state.value);
        self.open_cas[first..]
            .iter()
            .take_while(|&&(v, _)| v == state.value)
            .any(|&(_, op)| available(op))
    }

    /// Builds the explanation of a failed search from the longest prefix found.
    fn explain(&self, best: &[u32]) -> (Vec<usize>, String) {
        let mut state = None;
        let mut linearized = vec![false; self.ops.len()];
        for &op in best {
            state = self.ops[op as usize].input.apply(state).0;
            linearized[op as usize] = true;
        }
        let stuck = (0..self.n_completed)
            .filter(|&i| !linearized[i])
            .min_by_key(|&i| self.ops[i].ret_rank)
            .expect("a failed search leaves a completed operation unexplained");
        let limit = self.ops[stuck].ret_rank;
        let show = |i: usize| {
            let orig = self.ops[i].orig;
            render_op(orig, &self.originals[orig])
        };

        let mut msg = String::new();
        let _ = write!(
            msg,
            "no linearization explains all {} acknowledged operation(s). The longest \
             linearizable prefix found ({} operation(s), listed below) leaves the value at {}. \
             After it, {} must take effect before it returns, but nothing that may take effect \
             first makes that possible:",
            self.n_completed,
            best.len(),
            ShowValue(state),
            show(stuck),
        );
        let mut candidates: Vec<usize> = (0..self.ops.len())
            .filter(|&i| !linearized[i] && self.ops[i].call_rank < limit)
            .collect();
        candidates.sort_by_key(|&i| self.ops[i].orig);
        const MAX_LINES: usize = 20;
        for &i in candidates.iter().take(MAX_LINES) {
            let op = &self.ops[i];
            let (next, out) = op.input.apply(state);
            let reason = match op.output {
                Some(expected) if expected != out => {
                    format!("the client was told {expected}, but it would get {out}")
                }
                None if next == state => "it would not change the value".to_string(),
                _ => format!(
                    "possible (value becomes {}), but no linearization continues from there",
                    ShowValue(next)
                ),
            };
            let _ = write!(msg, "\n  {}: {reason}", show(i));
        }
        if candidates.len() > MAX_LINES {
            let _ = write!(msg, "\n  ... and {} more", candidates.len() - MAX_LINES);
        }

        // Where could the value the stuck op needs have come from?
        let needed = match (self.ops[stuck].input, self.ops[stuck].output) {
            (_, Some(Output::Read(Some(v)))) => Some(v),
            (Input::Cas { expected, .. }, Some(Output::Cas(true))) => expected,
            _ => None,
        };
        if let Some(v) = needed {
            let writes = |o: &Operation| match (o.input, o.output()) {
                (Input::Write(w), _) => w == v,
                (Input::Cas { new, .. }, None | Some(Output::Cas(true))) => new == v,
                _ => false,
            };
            let mut writers = self.originals.iter().enumerate().filter(|(_, o)| writes(o));
            let _ = write!(msg, "\nThe value {v} is written by:");
            for (i, o) in writers.by_ref().take(3) {
                let _ = write!(msg, "\n  {}", render_op(i, o));
            }
            let more = writers.count();
            if more > 0 {
                let _ = write!(msg, "\n  ... and {more} more");
            }
        }
        let prefix = best.iter().map(|&o| self.ops[o as usize].orig).collect();
        (prefix, msg)
    }
}
