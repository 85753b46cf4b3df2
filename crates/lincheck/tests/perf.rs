//! Performance sanity tests: long histories generated from a real register
//! must check `Ok` (and mutated ones must fail) in reasonable time. Timings
//! are printed (`--nocapture`), not asserted.

mod common;

use std::time::Instant;

use common::*;
use raft_lincheck::{check, CheckError, Input, Operation, Output};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn timed_check(name: &str, history: &[Operation]) -> Result<raft_lincheck::Report, CheckError> {
    let start = Instant::now();
    let result = check(history);
    let states = match &result {
        Ok(r) => r.states_explored.to_string(),
        Err(e) => format!(
            "error ({})",
            if e.is_violation() {
                "violation"
            } else {
                "inconclusive"
            }
        ),
    };
    println!(
        "{name}: {} ops, {states} states, {:?}",
        history.len(),
        start.elapsed()
    );
    result
}

fn assert_ok(name: &str, history: &[Operation]) {
    if let Err(e) = timed_check(name, history) {
        panic!("{name}: expected Ok, got\n{e}");
    }
}

#[test]
fn one_key_5000_ops_5_clients() {
    let mut rng = SmallRng::seed_from_u64(1);
    let history = long_history(&mut rng, 5_000, 5, 1, 0);
    assert_ok("1 key, 5 clients", &history);
}

#[test]
fn one_key_5000_ops_10_clients_with_timeouts() {
    let mut rng = SmallRng::seed_from_u64(2);
    let history = long_history(&mut rng, 5_000, 10, 1, 50);
    assert_ok("1 key, 10 clients, 5% open", &history);
}

#[test]
fn ten_keys_5000_ops_10_clients_with_timeouts() {
    let mut rng = SmallRng::seed_from_u64(3);
    let history = long_history(&mut rng, 5_000, 10, 10, 50);
    assert_ok("10 keys, 10 clients, 5% open", &history);
}

#[test]
fn many_medium_histories() {
    // The chaos-test workload: many histories of ~2,000 operations.
    let mut rng = SmallRng::seed_from_u64(4);
    let start = Instant::now();
    let mut states = 0;
    for _ in 0..20 {
        let history = long_history(&mut rng, 2_000, 8, 6, 30);
        states += check(&history).expect("linearizable").states_explored;
    }
    println!(
        "20 x 2000 ops on 6 keys: {states} states, {:?}",
        start.elapsed()
    );
}

/// Breaks a long linearizable history by making one acknowledged read (near
/// position `at`) return a stale value: one written hundreds of operations
/// earlier (values are unique, so it was long overwritten).
fn break_read(history: &mut [Operation], at: usize) {
    let i = (at..history.len())
        .find(|&i| matches!(history[i].output(), Some(Output::Read(_))))
        .expect("a read");
    let key = history[i].key;
    let stale = history[..at - 500]
        .iter()
        .rev()
        .find_map(|op| match op.input {
            Input::Write(v) if op.key == key && op.ret.is_some() => Some(v),
            _ => None,
        })
        .expect("a write");
    let (t, _) = history[i].ret.unwrap();
    history[i].ret = Some((t, Output::Read(Some(stale))));
}

#[test]
fn violation_at_the_end_of_a_long_history() {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut history = long_history(&mut rng, 5_000, 5, 1, 0);
    break_read(&mut history, 4_900);
    let err = timed_check("1 key, 5 clients, broken near the end", &history).unwrap_err();
    let v = err.violation().expect("a violation, not inconclusive");
    assert!(
        v.linearized_prefix.len() > 4_000,
        "{}",
        v.linearized_prefix.len()
    );
    println!("{err}");
}

#[test]
fn violation_at_the_end_with_timeouts() {
    let mut rng = SmallRng::seed_from_u64(6);
    let mut history = long_history(&mut rng, 5_000, 10, 1, 50);
    break_read(&mut history, 4_900);
    let err = timed_check("1 key, 10 clients, 5% open, broken near the end", &history).unwrap_err();
    assert!(err.is_violation(), "{err}");
}

#[test]
fn stale_reads_in_long_histories() {
    let mut rng = SmallRng::seed_from_u64(7);
    for attempt in 0..5 {
        let mut history = long_history(&mut rng, 3_000, 8, 2, 20);
        let at = rng.random_range(1_000..2_900);
        break_read(&mut history, at);
        let name = format!("stale read at {at}, attempt {attempt}");
        let err = timed_check(&name, &history).unwrap_err();
        assert!(err.is_violation(), "{err}");
    }
}
