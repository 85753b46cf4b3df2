//! The event queue: events keyed by (time, sequence number), taken out in
//! key order, so that events due at the same time happen in the order they
//! were scheduled.
//!
//! Most queued events are clients' timeouts: one is scheduled for every
//! operation, a fixed time ahead, so they arrive in key order and wait
//! behind everything else. They go to a plain FIFO lane (constant time),
//! the rest into a binary heap that stays small; the next event is the
//! smaller of the two fronts.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// Events keyed by a `u128` (unique), taken out in key order.
#[derive(Debug)]
pub(crate) struct EventQueue<T> {
    /// Events in key order, each key above the one before.
    lane: VecDeque<(u128, T)>,
    heap: BinaryHeap<Keyed<T>>,
}

/// An event ordered by its key alone, smallest first.
#[derive(Debug)]
struct Keyed<T>(u128, T);

impl<T> PartialEq for Keyed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T> Eq for Keyed<T> {}
impl<T> PartialOrd for Keyed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Keyed<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the smallest key must compare greatest.
        other.0.cmp(&self.0)
    }
}

impl<T> EventQueue<T> {
    /// An empty queue.
    pub(crate) fn new() -> EventQueue<T> {
        EventQueue {
            lane: VecDeque::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// Events queued.
    pub(crate) fn len(&self) -> usize {
        self.lane.len() + self.heap.len()
    }

    /// Queues `item` under `key`.
    pub(crate) fn push(&mut self, key: u128, item: T) {
        self.heap.push(Keyed(key, item));
    }

    /// Queues `item` under `key`, which is likely above every key queued
    /// this way before (an event scheduled a fixed time ahead).
    pub(crate) fn push_in_order(&mut self, key: u128, item: T) {
        if self.lane.back().is_none_or(|last| last.0 < key) {
            self.lane.push_back((key, item));
        } else {
            self.heap.push(Keyed(key, item));
        }
    }

    /// Whether the next event is the lane's.
    fn lane_first(&self) -> bool {
        match (self.lane.front(), self.heap.peek()) {
            (Some(a), Some(b)) => a.0 < b.0,
            (a, _) => a.is_some(),
        }
    }

    /// The smallest key, if any.
    pub(crate) fn peek_key(&mut self) -> Option<u128> {
        if self.lane_first() {
            self.lane.front().map(|e| e.0)
        } else {
            self.heap.peek().map(|e| e.0)
        }
    }

    /// Takes out the event with the smallest key.
    pub(crate) fn pop(&mut self) -> Option<(u128, T)> {
        if self.lane_first() {
            self.lane.pop_front()
        } else {
            self.heap.pop().map(|Keyed(k, v)| (k, v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::cmp::Reverse;

    #[test]
    fn events_come_out_in_key_order() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut q = EventQueue::new();
        let mut reference = BinaryHeap::new();
        let (mut now, mut seq) = (0u64, 0u64);
        for round in 0..20_000 {
            let pushes = if round % 3 == 0 { 3 } else { 1 };
            for _ in 0..pushes {
                seq += 1;
                let delay = match rng.random_range(0..4) {
                    0 => 0,
                    1 => rng.random_range(0..100),
                    2 => rng.random_range(0..100_000),
                    _ => rng.random_range(0..10_000_000),
                };
                let key = ((now + delay) as u128) << 64 | seq as u128;
                if delay == 0 || delay > 5_000_000 {
                    q.push_in_order(key, seq);
                } else {
                    q.push(key, seq);
                }
                reference.push(Reverse((key, seq)));
            }
            assert_eq!(q.peek_key(), reference.peek().map(|r| r.0 .0));
            let got = q.pop();
            let want = reference.pop().map(|r| r.0);
            assert_eq!(got, want);
            now = (got.expect("not empty").0 >> 64) as u64;
            assert_eq!(q.len(), reference.len());
        }
        while let Some(Reverse(want)) = reference.pop() {
            assert_eq!(q.pop(), Some(want));
        }
        assert_eq!(q.pop(), None);
    }
}
