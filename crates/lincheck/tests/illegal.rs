//! Hand-written non-linearizable histories: each must be reported as a
//! violation (never as success, never as inconclusive).

mod common;

use common::*;
use raft_lincheck::{check, check_with_limit, CheckError, Input, Operation, Output, Violation};

fn assert_violation(history: &[Operation]) -> Violation {
    assert!(!brute_force(history), "the reference checker disagrees");
    match check(history) {
        Ok(report) => panic!("expected a violation, got {report:?}"),
        Err(CheckError::Inconclusive { key, states }) => {
            panic!("inconclusive on key {key} after {states} states")
        }
        Err(CheckError::Violation(v)) => {
            // The prefix offered as evidence must itself be linearizable.
            assert!(
                is_valid_prefix(&v.operations, &v.linearized_prefix),
                "{v:#}"
            );
            let text = v.to_string();
            assert!(text.contains(&format!("key {}", v.key)), "{text}");
            v
        }
    }
}

#[test]
fn stale_read() {
    let v = assert_violation(&[write(1, 1, 0, 10), read(2, None, 20, 30)]);
    assert_eq!(v.key, 0);
    assert_eq!(v.linearized_prefix, vec![0]);
    assert!(v.message.contains("#1"), "{}", v.message);
}

#[test]
fn stale_read_after_overwrite() {
    assert_violation(&[
        write(1, 1, 0, 10),
        write(1, 2, 20, 30),
        read(2, Some(1), 40, 50),
    ]);
}

#[test]
fn lost_write() {
    // The completed write of 2 is never seen; a later read sees the value
    // from before it.
    assert_violation(&[
        write(1, 1, 0, 10),
        write(2, 2, 15, 25),
        read(3, Some(1), 30, 40),
        read(1, Some(1), 50, 60),
    ]);
}

#[test]
fn lost_write_with_concurrent_noise() {
    assert_violation(&[
        write(1, 1, 0, 10),
        write(2, 2, 5, 30),
        read(3, Some(2), 20, 25),
        read(4, Some(1), 35, 40),
    ]);
}

#[test]
fn cas_reported_success_but_value_differed() {
    assert_violation(&[write(1, 1, 0, 10), cas(2, Some(2), 3, true, 20, 30)]);
}

#[test]
fn cas_reported_success_on_absent_key_but_value_present() {
    assert_violation(&[write(1, 1, 0, 10), cas(2, None, 3, true, 20, 30)]);
}

#[test]
fn cas_reported_failure_but_value_matched() {
    assert_violation(&[
        write(1, 1, 0, 10),
        cas(2, Some(1), 3, false, 20, 30),
        read(3, Some(1), 40, 50),
    ]);
    // Even without a later read: nothing concurrent could have changed it.
    assert_violation(&[write(1, 1, 0, 10), cas(2, Some(1), 3, false, 20, 30)]);
    assert_violation(&[cas(2, None, 3, false, 20, 30)]);
}

#[test]
fn successful_cas_has_no_effect() {
    assert_violation(&[cas(1, None, 1, true, 0, 10), read(2, None, 20, 30)]);
}

#[test]
fn read_of_value_never_written() {
    let v = assert_violation(&[write(1, 1, 0, 10), read(2, Some(7), 5, 30)]);
    assert!(v.message.contains("needs the value 7"), "{v}");
    assert_violation(&[read(2, Some(7), 5, 30)]);
    // Written, but only after the read returned.
    assert_violation(&[read(2, Some(7), 5, 30), write(1, 7, 31, 40)]);
    assert_violation(&[read(2, Some(7), 5, 30), open_write(1, 7, 31)]);
    // A CAS that succeeded expecting a value never written.
    assert_violation(&[cas(1, Some(3), 4, true, 0, 10)]);
    // A failed CAS does not write its new value.
    assert_violation(&[cas(1, Some(3), 4, false, 0, 10), read(2, Some(4), 20, 30)]);
}

#[test]
fn read_of_value_written_by_a_concurrent_op_is_not_prejudged() {
    // Invoked exactly when the read returns: possible (closed intervals).
    let history = [read(2, Some(7), 5, 30), open_write(1, 7, 30)];
    assert!(check(&history).is_ok());
    assert!(brute_force(&history));
}

#[test]
fn read_goes_back_in_time() {
    // The write of 2 is slow; two sequential reads see new, then old.
    assert_violation(&[
        write(1, 1, 0, 10),
        write(1, 2, 20, 100),
        read(2, Some(2), 30, 40),
        read(2, Some(1), 50, 60),
    ]);
    // Same with the reads by different clients.
    assert_violation(&[
        write(1, 2, 20, 100),
        read(2, Some(2), 30, 40),
        read(3, None, 50, 60),
    ]);
}

#[test]
fn touching_but_not_overlapping_is_ordered() {
    // One tick apart: the write is over before the read starts.
    assert_violation(&[write(1, 1, 0, 10), read(2, None, 11, 20)]);
}

#[test]
fn open_write_cannot_act_before_its_invocation() {
    assert_violation(&[read(1, Some(1), 0, 10), open_write(2, 1, 20)]);
}

#[test]
fn open_write_cannot_be_seen_then_unseen_then_seen() {
    assert_violation(&[
        open_write(1, 1, 0),
        read(2, Some(1), 10, 20),
        read(2, None, 30, 40),
    ]);
}

#[test]
fn open_write_takes_effect_at_most_once() {
    assert_violation(&[
        write(3, 5, 0, 5),
        open_write(1, 1, 10),
        read(2, Some(1), 20, 30),
        write(3, 2, 40, 50),
        read(2, Some(1), 60, 70),
    ]);
}

#[test]
fn two_open_writes_cannot_alternate() {
    // 2, 1, 2 would need the write of 2 to take effect twice.
    assert_violation(&[
        open_write(1, 1, 0),
        open_write(2, 2, 5),
        read(3, Some(2), 10, 20),
        read(3, Some(1), 30, 40),
        read(4, Some(2), 50, 60),
    ]);
}

#[test]
fn two_violations_on_different_keys_reports_one() {
    let history = [
        on(4, write(1, 1, 0, 10)),
        on(4, read(2, None, 20, 30)),
        on(9, write(1, 1, 0, 10)),
        on(9, read(2, Some(1), 20, 30)),
        on(2, write(1, 1, 0, 10)),
        on(2, read(2, Some(3), 20, 30)),
    ];
    let v = assert_violation(&history);
    assert!(v.key == 4 || v.key == 2);
    // Deterministically the smallest violating key.
    assert_eq!(v.key, 2);
    assert!(v.operations.iter().all(|o| o.key == 2));
}

#[test]
fn malformed_operations_are_violations() {
    let backwards = write(1, 1, 10, 5);
    let err = check(&[backwards]).unwrap_err();
    assert!(err.is_violation());
    assert!(err.to_string().contains("malformed"), "{err}");

    let wrong_kind = Operation::completed(1, 0, Input::Read, 0, 1, Output::Write);
    let err = check(&[wrong_kind]).unwrap_err();
    assert!(err.to_string().contains("malformed"), "{err}");
}

#[test]
fn exhausted_budget_is_inconclusive_not_ok() {
    // Eight concurrent writes and a later read seeing none of them:
    // refuting it needs to explore many orders.
    let mut history: Vec<Operation> = (0..8).map(|c| write(c, c + 1, 0, 100)).collect();
    history.push(read(9, None, 200, 300));
    history.push(on(1, write(1, 1, 0, 100)));
    let err = check_with_limit(&history, 10).unwrap_err();
    assert_eq!(err, CheckError::Inconclusive { key: 0, states: 11 });
    assert!(!err.is_violation());
    assert!(err.to_string().contains("inconclusive"));
    // With a real budget it is a violation.
    assert!(check(&history).unwrap_err().is_violation());
}

#[test]
fn violation_wins_over_inconclusive() {
    let mut history: Vec<Operation> = (0..8).map(|c| write(c, c + 1, 0, 100)).collect();
    history.push(read(9, None, 200, 300));
    history.push(on(5, read(1, Some(1), 0, 10)));
    let err = check_with_limit(&history, 10).unwrap_err();
    assert_eq!(err.violation().map(|v| v.key), Some(5));
}

#[test]
fn display_is_readable() {
    let v = assert_violation(&[
        write(1, 1, 0, 10),
        open_read(3, 12),
        write(2, 2, 15, 25),
        read(3, Some(1), 30, 40),
    ]);
    let text = format!("{v}");
    println!("{text}");
    for needle in [
        "key 0 is not linearizable",
        "#0 client 1 [0, 10] write(1) -> ok",
        "#1 client 3 [12, open] read -> no reply (ignored)",
        "#3 client 3 [30, 40] read -> 1",
        "longest linearizable prefix",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

// ---------------------------------------------------------------------------
// Expiring writes: `write_px` is the write and its phantom open expiry.

fn history(parts: &[&[Operation]]) -> Vec<Operation> {
    parts.concat()
}

#[test]
fn expired_value_comes_back() {
    let v = assert_violation(&history(&[
        &write_px(1, 1, 0, 10),
        &[read(2, None, 20, 30), read(3, Some(1), 40, 50)],
    ]));
    let text = v.to_string();
    assert!(
        text.contains("expire(1) -> at any time, or never"),
        "{text}"
    );
}

#[test]
fn expiry_does_not_remove_a_later_value() {
    assert_violation(&history(&[
        &write_px(1, 1, 0, 10),
        &[write(2, 2, 20, 30), read(3, None, 40, 50)],
    ]));
}

#[test]
fn expiry_does_not_remove_a_value_swapped_in() {
    // CAS clears the time to live: the value it sets does not expire.
    assert_violation(&history(&[
        &write_px(1, 1, 0, 10),
        &[cas(2, Some(1), 2, true, 20, 30), read(3, None, 40, 50)],
    ]));
}

#[test]
fn expiry_does_not_remove_the_previous_value() {
    // The expiring write of 2 comes after 1 was overwritten by 3.
    assert_violation(&history(&[
        &[write(1, 1, 0, 10)],
        &write_px(2, 2, 20, 30),
        &[write(1, 3, 40, 50), read(3, None, 60, 70)],
    ]));
}

#[test]
fn unacknowledged_expiring_write_cannot_resurrect() {
    assert_violation(&history(&[
        &[open_write(1, 1, 0), expire(1, 1, 0)],
        &[
            read(2, Some(1), 10, 20),
            read(3, None, 30, 40),
            read(2, Some(1), 50, 60),
        ],
    ]));
}

#[test]
fn second_expiring_value_cannot_come_back() {
    // Two expiring writes of different values: the first one's expiry
    // cannot remove the second value.
    assert_violation(&history(&[
        &write_px(1, 1, 0, 10),
        &write_px(2, 2, 20, 30),
        &[read(3, None, 40, 50), read(3, Some(2), 60, 70)],
    ]));
}

#[test]
fn expiry_with_a_reply_is_malformed() {
    let op = Operation::completed(1, 0, Input::Expire(1), 0, 1, Output::Write);
    let v = check(&[write(1, 1, 0, 1), op]).unwrap_err();
    assert!(v.is_violation(), "{v}");
    assert!(v.to_string().contains("malformed"), "{v}");
}
