//! Helpers shared by the integration tests: short constructors, a brute-force
//! reference checker and random history generators.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};

use raft_lincheck::{Input, Key, Operation, Output, Value};
use rand::rngs::SmallRng;
use rand::Rng;

// ---------------------------------------------------------------------------
// Constructors. Client ids are arbitrary; key 0 unless stated.

pub fn write(client: u64, v: Value, call: u64, ret: u64) -> Operation {
    Operation::completed(client, 0, Input::Write(v), call, ret, Output::Write)
}

pub fn read(client: u64, v: Option<Value>, call: u64, ret: u64) -> Operation {
    Operation::completed(client, 0, Input::Read, call, ret, Output::Read(v))
}

pub fn cas(
    client: u64,
    expected: Option<Value>,
    new: Value,
    ok: bool,
    call: u64,
    ret: u64,
) -> Operation {
    Operation::completed(
        client,
        0,
        Input::Cas { expected, new },
        call,
        ret,
        Output::Cas(ok),
    )
}

pub fn open_write(client: u64, v: Value, call: u64) -> Operation {
    Operation::open(client, 0, Input::Write(v), call)
}

pub fn open_cas(client: u64, expected: Option<Value>, new: Value, call: u64) -> Operation {
    Operation::open(client, 0, Input::Cas { expected, new }, call)
}

pub fn open_read(client: u64, call: u64) -> Operation {
    Operation::open(client, 0, Input::Read, call)
}

/// The phantom expiry of `v`, recorded with an expiring write of `v` (same
/// invocation time).
pub fn expire(client: u64, v: Value, call: u64) -> Operation {
    Operation::open(client, 0, Input::Expire(v), call)
}

/// An acknowledged expiring write of `v`: the write and its expiry.
pub fn write_px(client: u64, v: Value, call: u64, ret: u64) -> [Operation; 2] {
    [write(client, v, call, ret), expire(client, v, call)]
}

/// The same operation on another key.
pub fn on(key: Key, mut op: Operation) -> Operation {
    op.key = key;
    op
}

// ---------------------------------------------------------------------------
// Brute-force reference checker.

/// Whether `history` is linearizable, by trying every order of every subset of
/// the operations that contains all acknowledged ones and respects real time
/// (`a` must precede `b` iff `a` returned strictly before `b` was invoked),
/// per key. Unacknowledged operations (reads included) are optional.
///
/// Shares no code with the crate's search besides `Input::apply`, and uses
/// none of its prunings; the only shortcut is remembering the `(placed set,
/// value)` pairs from which no order works. Exponential: at most 64 ops per
/// key, and only for small or low-concurrency histories.
pub fn brute_force(history: &[Operation]) -> bool {
    let mut by_key: BTreeMap<Key, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(op.clone());
    }
    by_key.values().all(|ops| {
        assert!(ops.len() <= 64);
        let required: u64 = ops
            .iter()
            .enumerate()
            .filter(|(_, o)| o.ret.is_some())
            .fold(0, |m, (i, _)| m | (1 << i));
        orders(ops, required, 0, None, &mut HashSet::new())
    })
}

/// Extends the partial order `used` (register value `state`) in every way.
fn orders(
    ops: &[Operation],
    required: u64,
    used: u64,
    state: Option<Value>,
    dead_ends: &mut HashSet<(u64, Option<Value>)>,
) -> bool {
    if used & required == required {
        return true;
    }
    if dead_ends.contains(&(used, state)) {
        return false;
    }
    let found = (0..ops.len()).any(|i| {
        if used & (1 << i) != 0 {
            return false;
        }
        // Every unplaced acknowledged op that returned before `i` was invoked
        // would have to come first.
        let blocked = (0..ops.len())
            .any(|j| used & (1 << j) == 0 && matches!(ops[j].ret, Some((t, _)) if t < ops[i].call));
        if blocked {
            return false;
        }
        let (next, out) = ops[i].input.apply(state);
        if let Some((_, expected)) = ops[i].ret {
            if out != expected {
                return false;
            }
        }
        orders(ops, required, used | (1 << i), next, dead_ends)
    });
    if !found {
        dead_ends.insert((used, state));
    }
    found
}

/// Checks that `prefix` (indices into `ops`, one key's operations) is a valid
/// linearizable prefix: legal sequentially, and respecting real time both
/// within the prefix and against the operations left out.
pub fn is_valid_prefix(ops: &[Operation], prefix: &[usize]) -> bool {
    let mut state = None;
    let mut placed = vec![false; ops.len()];
    for &i in prefix {
        if placed[i] {
            return false;
        }
        for (j, op) in ops.iter().enumerate() {
            if !placed[j] && j != i && matches!(op.ret, Some((t, _)) if t < ops[i].call) {
                return false;
            }
        }
        let (next, out) = ops[i].input.apply(state);
        if let Some((_, expected)) = ops[i].ret {
            if out != expected {
                return false;
            }
        }
        state = next;
        placed[i] = true;
    }
    true
}

// ---------------------------------------------------------------------------
// Random generators.

fn random_input<R: Rng>(rng: &mut R, values: Value) -> Input {
    let value = |rng: &mut R| rng.random_range(1..=values);
    match rng.random_range(0..100) {
        0..40 => Input::Read,
        40..75 => Input::Write(value(rng)),
        _ => Input::Cas {
            expected: if rng.random_bool(0.3) {
                None
            } else {
                Some(value(rng))
            },
            new: value(rng),
        },
    }
}

/// Fills in the outputs of `ops` by executing them on real registers in the
/// order of `points` (one linearization point per op; `None` = the op never
/// takes effect, only allowed for open ops), ties broken by `tiebreak`. Half
/// of the CASes that take effect are made to expect the current value.
fn execute(rng: &mut SmallRng, ops: &mut [Operation], points: &[Option<(u64, u64)>]) {
    let mut order: Vec<usize> = (0..ops.len()).filter(|&i| points[i].is_some()).collect();
    order.sort_by_key(|&i| points[i]);
    let mut regs: BTreeMap<Key, Option<Value>> = BTreeMap::new();
    for i in order {
        let reg = regs.entry(ops[i].key).or_default();
        if let Input::Cas { new, .. } = ops[i].input {
            if rng.random_bool(0.5) {
                ops[i].input = Input::Cas {
                    expected: *reg,
                    new,
                };
            }
        }
        let (next, out) = ops[i].input.apply(*reg);
        *reg = next;
        if let Some((t, _)) = ops[i].ret {
            ops[i].ret = Some((t, out));
        }
    }
}

/// A random small history: 1-3 keys, 2-7 operations, small values and times
/// (so that ties and coincidences are frequent), ~20% unacknowledged. The
/// outputs come from a real execution with random linearization points inside
/// the intervals; then, half of the time, one mutation is applied. Returns the
/// history and whether it was left unmutated (hence linearizable).
pub fn small_random_history(rng: &mut SmallRng) -> (Vec<Operation>, bool) {
    small_history(rng, false)
}

/// Like [`small_random_history`], but half of the writes expire: each comes
/// with an open [`Input::Expire`] of its value invoked with it, which takes
/// effect some time after the write (or never) in the execution.
pub fn small_expiring_history(rng: &mut SmallRng) -> (Vec<Operation>, bool) {
    small_history(rng, true)
}

fn small_history(rng: &mut SmallRng, expiring: bool) -> (Vec<Operation>, bool) {
    let keys = rng.random_range(1..=3u64);
    let n = rng.random_range(2..=7usize);
    let mut ops = Vec::with_capacity(n);
    let mut points = Vec::with_capacity(n);
    for client in 0..n as u64 {
        let key = rng.random_range(0..keys);
        let input = random_input(rng, 3);
        let call = rng.random_range(0..20u64);
        let tiebreak = rng.random::<u64>();
        if rng.random_bool(0.2) {
            ops.push(Operation::open(client, key, input, call));
            let at = call + rng.random_range(0..15u64);
            points.push(rng.random_bool(0.6).then_some((at, tiebreak)));
        } else {
            let ret = call + rng.random_range(0..8u64);
            // Placeholder output, fixed by `execute`.
            ops.push(Operation::completed(
                client,
                key,
                input,
                call,
                ret,
                Output::Write,
            ));
            points.push(Some((rng.random_range(call..=ret), tiebreak)));
        }
        if let (true, Input::Write(v), Some((at, _))) = (expiring, input, points[points.len() - 1])
        {
            if rng.random_bool(0.5) {
                ops.push(Operation::open(client, key, Input::Expire(v), call));
                let later = (at + rng.random_range(1..15u64), rng.random());
                points.push(rng.random_bool(0.7).then_some(later));
            }
        }
    }
    execute(rng, &mut ops, &points);
    if rng.random_bool(0.5) {
        return (ops, true);
    }
    for _ in 0..rng.random_range(1..=2) {
        mutate(rng, &mut ops);
    }
    (ops, false)
}

/// Applies one random mutation (which may or may not break linearizability).
fn mutate(rng: &mut SmallRng, ops: &mut [Operation]) {
    let observers: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i].output(), Some(Output::Read(_) | Output::Cas(_))))
        .collect();
    let mut kind = rng.random_range(0..8);
    let i = if kind < 5 && !observers.is_empty() {
        kind = 0;
        observers[rng.random_range(0..observers.len())]
    } else {
        kind = kind.max(4);
        rng.random_range(0..ops.len())
    };
    let op = &mut ops[i];
    match kind {
        // Change a reply (to a different one, when there is a choice).
        0..4 => {
            if let Some((t, out)) = op.ret {
                let out = match out {
                    Output::Read(old) => {
                        let new = (old.unwrap_or(0) + rng.random_range(1..=3)) % 4;
                        Output::Read((new != 0).then_some(new))
                    }
                    Output::Cas(b) => Output::Cas(!b),
                    Output::Write => Output::Write,
                };
                op.ret = Some((t, out));
            }
        }
        // Move the interval.
        4 => {
            let shift = rng.random_range(0..10u64);
            if rng.random_bool(0.5) {
                op.call += shift;
                if let Some((t, out)) = op.ret {
                    op.ret = Some((t + shift, out));
                }
            } else {
                op.call = op.call.saturating_sub(shift);
                if let Some((t, out)) = op.ret {
                    op.ret = Some((t.saturating_sub(shift).max(op.call), out));
                }
            }
        }
        // Shrink the interval to its start or end.
        5 => {
            if let Some((t, out)) = op.ret {
                if rng.random_bool(0.5) {
                    op.ret = Some((op.call, out));
                } else {
                    op.call = t;
                }
            }
        }
        // Drop the reply or invent one.
        _ => match op.ret {
            Some(_) => op.ret = None,
            None if matches!(op.input, Input::Expire(_)) => {}
            None => {
                let out = match op.input {
                    Input::Read => Output::Read(Some(rng.random_range(1..=3))),
                    Input::Write(_) => Output::Write,
                    Input::Cas { .. } => Output::Cas(rng.random_bool(0.5)),
                    Input::Expire(_) => unreachable!("expiries never get a reply"),
                };
                op.ret = Some((op.call + rng.random_range(0..8), out));
            }
        },
    }
}

/// A long linearizable history: `clients` clients each issue operations
/// back-to-back (random think time and duration) on `keys` keys, with
/// `open_permille`‰ of them left unacknowledged (the client then moves on, and
/// the op takes effect later or never). Values written are unique. Outputs
/// come from a real execution at random points inside the intervals; CASes
/// expect the current value about half of the time.
pub fn long_history(
    rng: &mut SmallRng,
    ops_total: usize,
    clients: u64,
    keys: u64,
    open_permille: u32,
) -> Vec<Operation> {
    concurrent_history(rng, ops_total, clients, keys, None, open_permille)
}

/// Like [`long_history`], but with values drawn from `1..=values` when
/// `values` is given (so that different writes can be confused).
pub fn concurrent_history(
    rng: &mut SmallRng,
    ops_total: usize,
    clients: u64,
    keys: u64,
    values: Option<Value>,
    open_permille: u32,
) -> Vec<Operation> {
    let mut ops = Vec::with_capacity(ops_total);
    let mut points = Vec::with_capacity(ops_total);
    let mut clock = vec![0u64; clients as usize];
    for n in 0..ops_total {
        let client = rng.random_range(0..clients);
        let key = rng.random_range(0..keys);
        let call = clock[client as usize] + rng.random_range(0..5);
        let value = match values {
            Some(k) => rng.random_range(1..=k),
            None => n as Value + 1,
        };
        let input = match rng.random_range(0..10) {
            0..5 => Input::Read,
            5..8 => Input::Write(value),
            _ => Input::Cas {
                expected: Some(rng.random_range(1..=value)),
                new: value,
            },
        };
        let tiebreak = rng.random::<u64>();
        if rng.random_range(0..1000) < open_permille {
            ops.push(Operation::open(client, key, input, call));
            let at = call + rng.random_range(0..200);
            points.push(rng.random_bool(0.5).then_some((at, tiebreak)));
            clock[client as usize] = call + 50;
        } else {
            let ret = call + rng.random_range(1..30);
            ops.push(Operation::completed(
                client,
                key,
                input,
                call,
                ret,
                Output::Write,
            ));
            points.push(Some((rng.random_range(call..=ret), tiebreak)));
            clock[client as usize] = ret;
        }
    }
    execute(rng, &mut ops, &points);
    ops
}

/// A history of 12-30 operations on 1-2 keys by 3-6 clients, values 1-4, 15%
/// unacknowledged, from a real execution; half of the time 1-2 mutations
/// are applied. Small enough for [`brute_force`], large enough for the
/// search's prunings and cache to interact.
pub fn mid_random_history(rng: &mut SmallRng) -> (Vec<Operation>, bool) {
    let n = rng.random_range(12..=30);
    let clients = rng.random_range(3..=6);
    let keys = rng.random_range(1..=2);
    let mut ops = concurrent_history(rng, n, clients, keys, Some(4), 150);
    if rng.random_bool(0.5) {
        return (ops, true);
    }
    for _ in 0..rng.random_range(1..=2) {
        mutate(rng, &mut ops);
    }
    (ops, false)
}
