//! Hand-written linearizable histories: each must check `Ok`.

mod common;

use common::*;
use raft_lincheck::{check, Input, Operation, Output};

fn assert_legal(history: &[Operation]) {
    match check(history) {
        Ok(report) => assert_eq!(report.operations, history.len()),
        Err(e) => panic!("expected a linearizable history, got:\n{e:#}"),
    }
    assert!(brute_force(history), "the reference checker disagrees");
}

#[test]
fn empty_history() {
    let report = check(&[]).unwrap();
    assert_eq!((report.keys, report.operations), (0, 0));
}

#[test]
fn sequential_history() {
    assert_legal(&[
        read(1, None, 0, 1),
        write(1, 1, 2, 3),
        read(2, Some(1), 4, 5),
        write(3, 2, 6, 7),
        read(1, Some(2), 8, 9),
        cas(2, Some(2), 3, true, 10, 11),
        read(3, Some(3), 12, 13),
        cas(1, Some(2), 4, false, 14, 15),
        cas(2, None, 4, false, 16, 17),
        read(2, Some(3), 18, 19),
    ]);
}

#[test]
fn operations_in_any_input_order() {
    let mut history = vec![
        write(1, 1, 0, 10),
        read(2, Some(1), 20, 30),
        write(1, 2, 40, 50),
        read(2, Some(2), 60, 70),
    ];
    history.reverse();
    assert_legal(&history);
}

#[test]
fn concurrent_read_sees_old_value() {
    assert_legal(&[
        write(1, 1, 0, 10),
        write(1, 2, 20, 40),
        read(2, Some(1), 25, 35),
        read(2, Some(2), 50, 60),
    ]);
}

#[test]
fn concurrent_read_sees_new_value() {
    assert_legal(&[
        write(1, 1, 0, 10),
        write(1, 2, 20, 40),
        read(2, Some(2), 25, 35),
        read(3, Some(2), 36, 39),
    ]);
}

#[test]
fn concurrent_reads_see_both_values_in_a_consistent_order() {
    // Two overlapping reads during a write: old then new is fine.
    assert_legal(&[
        write(1, 1, 0, 100),
        read(2, None, 10, 20),
        read(2, Some(1), 30, 40),
        read(3, None, 15, 35),
    ]);
}

#[test]
fn concurrent_writes_either_order() {
    let writes = [write(1, 1, 0, 50), write(2, 2, 10, 60)];
    for last in [1, 2] {
        let mut h = writes.to_vec();
        h.push(read(3, Some(last), 70, 80));
        assert_legal(&h);
    }
}

#[test]
fn open_write_takes_effect_late() {
    assert_legal(&[
        open_write(1, 7, 0),
        read(2, None, 100, 110),
        read(2, None, 150, 160),
        read(3, Some(7), 200, 210),
        read(2, Some(7), 300, 310),
    ]);
}

#[test]
fn open_write_never_takes_effect() {
    assert_legal(&[
        write(1, 1, 0, 10),
        open_write(1, 2, 20),
        read(2, Some(1), 30, 40),
        read(3, Some(1), 1_000, 1_010),
    ]);
}

#[test]
fn open_write_overwritten_before_being_seen() {
    assert_legal(&[
        open_write(1, 2, 0),
        write(2, 3, 10, 20),
        read(3, Some(3), 30, 40),
        cas(3, Some(3), 4, true, 50, 60),
    ]);
}

#[test]
fn open_write_is_seen_then_overwritten() {
    assert_legal(&[
        open_write(1, 2, 0),
        read(2, Some(2), 10, 20),
        write(3, 3, 30, 40),
        read(2, Some(3), 50, 60),
    ]);
}

#[test]
fn two_open_writes_seen_in_sequence() {
    assert_legal(&[
        open_write(1, 1, 0),
        open_write(2, 2, 5),
        read(3, Some(2), 10, 20),
        read(3, Some(1), 30, 40),
        read(4, Some(1), 50, 60),
    ]);
}

#[test]
fn open_cas_takes_effect() {
    assert_legal(&[
        write(1, 1, 0, 10),
        open_cas(2, Some(1), 5, 20),
        read(3, Some(1), 30, 40),
        read(3, Some(5), 50, 60),
    ]);
}

#[test]
fn chain_of_open_cases() {
    assert_legal(&[
        open_write(1, 1, 0),
        open_cas(2, Some(1), 2, 5),
        open_cas(3, Some(2), 3, 6),
        read(4, Some(3), 10, 20),
    ]);
}

#[test]
fn open_operation_enabling_a_cas_failure() {
    // The CAS fails although nothing acknowledged changed the value: an
    // unacknowledged write explains it.
    assert_legal(&[open_write(1, 9, 0), cas(2, None, 1, false, 10, 20)]);
}

#[test]
fn open_reads_are_ignored() {
    assert_legal(&[
        write(1, 1, 0, 10),
        open_read(2, 5),
        open_read(3, 20),
        read(2, Some(1), 30, 40),
    ]);
}

#[test]
fn only_open_operations() {
    assert_legal(&[
        open_write(1, 1, 0),
        open_cas(2, None, 2, 1),
        open_read(3, 2),
    ]);
}

#[test]
fn cas_success_and_failure_paths() {
    assert_legal(&[
        cas(1, None, 1, true, 0, 10),
        cas(2, None, 2, false, 20, 30),
        cas(1, Some(1), 2, true, 40, 50),
        cas(2, Some(1), 3, false, 60, 70),
        read(3, Some(2), 80, 90),
    ]);
}

#[test]
fn concurrent_cas_one_winner() {
    for winner in [1, 2] {
        let loser = 3 - winner;
        assert_legal(&[
            cas(winner, None, winner, true, 0, 20),
            cas(loser, None, loser, false, 5, 25),
            read(3, Some(winner), 30, 40),
        ]);
    }
}

#[test]
fn touching_intervals_are_concurrent() {
    // The read is invoked at the very instant the write returns: it may be
    // linearized before it.
    assert_legal(&[write(1, 1, 0, 10), read(2, None, 10, 20)]);
    // Zero-length operations.
    assert_legal(&[
        write(1, 1, 5, 5),
        read(2, None, 5, 5),
        read(2, Some(1), 5, 5),
    ]);
}

#[test]
fn independent_keys() {
    let report = check(&[
        on(1, write(1, 1, 0, 10)),
        on(2, write(2, 2, 0, 10)),
        on(1, read(3, Some(1), 20, 30)),
        on(2, read(3, Some(2), 20, 30)),
        on(3, read(3, None, 20, 30)),
    ])
    .unwrap();
    assert_eq!(report.keys, 3);
    assert_eq!(report.operations, 5);
    assert!(report.states_explored >= 5);
}

#[test]
fn read_of_absent_key_after_failed_cas() {
    assert_legal(&[
        Operation::completed(
            1,
            0,
            Input::Cas {
                expected: Some(3),
                new: 4,
            },
            0,
            10,
            Output::Cas(false),
        ),
        read(2, None, 20, 30),
    ]);
}

// ---------------------------------------------------------------------------
// Expiring writes: `write_px` is the write and its phantom open expiry.

fn history(parts: &[&[Operation]]) -> Vec<Operation> {
    parts.concat()
}

#[test]
fn expired_value_reads_absent_for_good() {
    assert_legal(&history(&[
        &write_px(1, 1, 0, 10),
        &[read(2, None, 20, 30), read(3, None, 40, 50)],
    ]));
}

#[test]
fn expiring_value_is_seen_then_gone() {
    assert_legal(&history(&[
        &write_px(1, 1, 0, 10),
        &[
            read(2, Some(1), 20, 30),
            read(3, Some(1), 40, 50),
            read(2, None, 60, 70),
            read(3, None, 80, 90),
        ],
    ]));
}

#[test]
fn expiring_value_may_never_expire() {
    assert_legal(&history(&[
        &write_px(1, 1, 0, 10),
        &[read(2, Some(1), 20, 30), read(3, Some(1), 1_000, 1_010)],
    ]));
}

#[test]
fn expiry_may_come_before_the_write_returns() {
    // Seen, then gone, all while the write is still in flight.
    assert_legal(&history(&[
        &write_px(1, 1, 0, 100),
        &[read(2, Some(1), 10, 20), read(3, None, 30, 40)],
    ]));
}

#[test]
fn expiring_write_replaces_the_old_value_then_expires() {
    assert_legal(&history(&[
        &[write(1, 1, 0, 10)],
        &write_px(1, 2, 20, 30),
        &[read(2, Some(2), 40, 50), read(3, None, 60, 70)],
    ]));
}

#[test]
fn unacknowledged_expiring_write_may_take_effect_and_expire() {
    // The write of 2 never got a reply, yet 1 vanished: only the write of 2
    // followed by its expiry explains it (an open write then its expiry,
    // with no acknowledged operation in between).
    let history = history(&[
        &[write(1, 1, 0, 10)],
        &[open_write(2, 2, 20), expire(2, 2, 20)],
        &[read(3, None, 30, 40), read(3, None, 50, 60)],
    ]);
    assert_legal(&history);
    // Without the expiry, nothing removes 1.
    let mut without = history.clone();
    without.remove(2);
    assert!(check(&without).unwrap_err().is_violation());
}

#[test]
fn unacknowledged_expiring_write_may_never_happen() {
    assert_legal(&history(&[
        &[write(1, 1, 0, 10)],
        &[open_write(2, 2, 20), expire(2, 2, 20)],
        &[read(3, Some(1), 30, 40)],
    ]));
}

#[test]
fn cas_from_absent_after_an_expiry() {
    assert_legal(&history(&[
        &write_px(1, 1, 0, 10),
        &[
            read(2, None, 20, 30),
            cas(3, None, 2, true, 40, 50),
            read(2, Some(2), 60, 70),
        ],
    ]));
}

#[test]
fn expiries_on_several_keys() {
    let mut history = history(&[&write_px(1, 1, 0, 10), &[read(2, None, 20, 30)]]);
    history.extend(
        write_px(1, 2, 0, 10)
            .into_iter()
            .chain([read(2, Some(2), 20, 30)])
            .map(|op| on(1, op)),
    );
    assert_legal(&history);
}
