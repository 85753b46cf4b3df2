//! Randomised cross-check of the WGL search against the brute-force
//! reference on many small histories. Seeded: a failure prints the seed and
//! the history, and replays.

mod common;

use common::*;
use raft_lincheck::{check, CheckError, Input, Operation};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Multiplier for the number of random cases, from the `LINCHECK_SOAK`
/// environment variable (default 1), for longer soak runs, e.g.
/// `LINCHECK_SOAK=100 cargo test --release -p raft-lincheck --test random`.
fn soak() -> usize {
    std::env::var("LINCHECK_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Checks one history with both checkers; panics with a replayable message
/// on disagreement. Returns the verdict.
fn cross_check(seed: u64, case: usize, history: &[Operation], must_pass: bool) -> bool {
    let expected = brute_force(history);
    let got = check(history);
    let context = || format!("seed {seed}, case {case}, history:\n{history:#?}");
    match (&got, expected) {
        (Ok(_), true) => {}
        (Err(CheckError::Violation(v)), false) => {
            assert!(
                is_valid_prefix(&v.operations, &v.linearized_prefix),
                "invalid prefix in\n{v:#}\n{}",
                context()
            );
            // Rendering must not panic.
            let _ = v.to_string();
        }
        (Err(CheckError::Inconclusive { .. }), _) => {
            panic!("inconclusive on a tiny history; {}", context())
        }
        (Ok(_), false) => panic!("WGL says linearizable, brute force says not; {}", context()),
        (Err(e), true) => panic!(
            "WGL says not linearizable, brute force says it is:\n{e:#}\n{}",
            context()
        ),
    }
    if must_pass {
        assert!(
            expected,
            "an unmutated generated history must pass; {}",
            context()
        );
    }
    expected
}

#[test]
fn small_histories_agree_with_brute_force() {
    const SEED: u64 = 0x1234_5678;
    let cases = 20_000 * soak();
    let mut rng = SmallRng::seed_from_u64(SEED);
    let (mut legal, mut illegal) = (0, 0);
    for case in 0..cases {
        let (history, unmutated) = small_random_history(&mut rng);
        if cross_check(SEED, case, &history, unmutated) {
            legal += 1;
        } else {
            illegal += 1;
        }
    }
    println!("{legal} linearizable, {illegal} not");
    // Both verdicts must be well represented for the test to mean anything.
    assert!(
        legal > cases / 5 && illegal > cases / 5,
        "{legal} / {illegal}"
    );
}

#[test]
fn expiring_histories_agree_with_brute_force() {
    const SEED: u64 = 0x0E4B_17E5;
    let cases = 20_000 * soak();
    let mut rng = SmallRng::seed_from_u64(SEED);
    let (mut legal, mut illegal, mut expiring) = (0, 0, 0);
    for case in 0..cases {
        let (history, unmutated) = small_expiring_history(&mut rng);
        if history.iter().any(|o| matches!(o.input, Input::Expire(_))) {
            expiring += 1;
        }
        if cross_check(SEED, case, &history, unmutated) {
            legal += 1;
        } else {
            illegal += 1;
        }
    }
    println!("{legal} linearizable, {illegal} not, {expiring} with expiries");
    assert!(
        legal > cases / 5 && illegal > cases / 5 && expiring > cases / 3,
        "{legal} / {illegal} / {expiring}"
    );
}

#[test]
fn many_seeds_agree_with_brute_force() {
    // Many short runs from different seeds (a different corner of the space
    // each), 5,000 histories in all.
    for seed in 0..50 * soak() as u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        for case in 0..100 {
            let (history, unmutated) = small_random_history(&mut rng);
            cross_check(seed, case, &history, unmutated);
        }
    }
}

/// A somewhat larger single-key history: 6-10 operations, values 1-2 (so
/// that many orders are plausible), ~25% unacknowledged writes/CASes. If
/// `expiring`, half of the writes come with the open expiry of their value.
fn medium_history(rng: &mut SmallRng, expiring: bool) -> Vec<Operation> {
    let n = rng.random_range(6..=10);
    let mut history = Vec::with_capacity(n);
    for client in 0..n as u64 {
        let call = rng.random_range(0..30u64);
        let value = rng.random_range(1..=2);
        let op = match rng.random_range(0..10) {
            0..4 => read(
                client,
                (value != 2 || rng.random_bool(0.7)).then_some(value),
                call,
                call + rng.random_range(0..10),
            ),
            4..6 => write(client, value, call, call + rng.random_range(0..10)),
            6..8 => cas(
                client,
                rng.random_bool(0.7).then(|| 3 - value),
                value,
                rng.random_bool(0.5),
                call,
                call + rng.random_range(0..10),
            ),
            8 => open_write(client, value, call),
            _ => open_cas(client, rng.random_bool(0.7).then(|| 3 - value), value, call),
        };
        if let (true, Input::Write(v)) = (expiring, op.input) {
            if rng.random_bool(0.5) {
                history.push(expire(client, v, call));
            }
        }
        history.push(op);
    }
    history
}

#[test]
fn medium_histories_agree_with_brute_force() {
    const SEED: u64 = 77;
    let mut rng = SmallRng::seed_from_u64(SEED);
    let (mut legal, mut illegal) = (0, 0);
    for case in 0..3_000 * soak() {
        let history = medium_history(&mut rng, false);
        if cross_check(SEED, case, &history, false) {
            legal += 1;
        } else {
            illegal += 1;
        }
    }
    println!("{legal} linearizable, {illegal} not");
    assert!(legal > 100 && illegal > 100, "{legal} / {illegal}");
}

#[test]
fn medium_expiring_histories_agree_with_brute_force() {
    const SEED: u64 = 78;
    let mut rng = SmallRng::seed_from_u64(SEED);
    let (mut legal, mut illegal) = (0, 0);
    for case in 0..3_000 * soak() {
        let history = medium_history(&mut rng, true);
        if cross_check(SEED, case, &history, false) {
            legal += 1;
        } else {
            illegal += 1;
        }
    }
    println!("{legal} linearizable, {illegal} not");
    assert!(legal > 100 && illegal > 100, "{legal} / {illegal}");
}

#[test]
fn larger_histories_agree_with_brute_force() {
    const SEED: u64 = 2024;
    let mut rng = SmallRng::seed_from_u64(SEED);
    let (mut legal, mut illegal) = (0, 0);
    for case in 0..5_000 * soak() {
        let (history, unmutated) = mid_random_history(&mut rng);
        if cross_check(SEED, case, &history, unmutated) {
            legal += 1;
        } else {
            illegal += 1;
        }
    }
    println!("{legal} linearizable, {illegal} not");
    assert!(legal > 1_000 && illegal > 1_000, "{legal} / {illegal}");
}
