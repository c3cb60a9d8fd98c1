//! The simulator's event queue: a timing wheel of 1 ms slots with an
//! ordered overflow for events beyond its window.
//!
//! Events come out in time order and, at equal times, in the order they
//! were pushed, exactly as a heap keyed by (time, sequence number) would
//! give them, but each push and pop is O(1) and touches one slot instead of
//! sifting through a heap of millions of entries.

use std::collections::{BTreeMap, VecDeque};

/// Slots in the wheel: events less than this many ms ahead go straight in.
/// Messages (tens to hundreds of ms) fit; timers minutes away wait in the
/// overflow.
const WINDOW_MS: u64 = 1 << 12;

/// A drained slot keeps at most this much capacity, so the wheel's memory
/// follows the events pending now rather than the busiest moment so far
/// (at most 4096 × 256 events), while a slot of a large overlay (about a
/// hundred events a millisecond at 100k peers) is not grown afresh on
/// each turn of the wheel.
const KEPT_SLOT_CAPACITY: usize = 256;

pub struct EventQueue<E> {
    slots: Vec<VecDeque<E>>,
    /// The time being drained; nothing earlier is left.
    now: u64,
    in_wheel: usize,
    /// Events at or beyond `now + WINDOW_MS`, by (time, push order).
    overflow: BTreeMap<(u64, u64), E>,
    pushed: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            slots: (0..WINDOW_MS).map(|_| VecDeque::new()).collect(),
            now: 0,
            in_wheel: 0,
            overflow: BTreeMap::new(),
            pushed: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.in_wheel + self.overflow.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Schedules `event` at time `at`; a time already past means now.
    pub fn push(&mut self, at: u64, event: E) {
        let at = at.max(self.now);
        self.pushed += 1;
        if at < self.now + WINDOW_MS {
            self.slots[(at % WINDOW_MS) as usize].push_back(event);
            self.in_wheel += 1;
        } else {
            self.overflow.insert((at, self.pushed), event);
        }
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        loop {
            if self.in_wheel == 0 {
                let (&(t, _), _) = self.overflow.first_key_value()?;
                self.now = t;
                self.admit_overflow();
            }
            let slot = &mut self.slots[(self.now % WINDOW_MS) as usize];
            if let Some(e) = slot.pop_front() {
                self.in_wheel -= 1;
                return Some((self.now, e));
            }
            if slot.capacity() > KEPT_SLOT_CAPACITY {
                *slot = VecDeque::new();
            } else {
                // Back to the buffer's start (a drained deque's next push
                // would go where its last pop left off): the next turn
                // writes the lines this one wrote.
                slot.clear();
            }
            self.now += 1;
            self.admit_overflow();
        }
    }

    /// The next event if it is at `t`, the time [`pop`](Self::pop) last
    /// returned: the rest of that millisecond, including what was pushed
    /// for it meanwhile.
    pub fn pop_at(&mut self, t: u64) -> Option<E> {
        if t != self.now || self.in_wheel == 0 {
            return None;
        }
        let e = self.slots[(t % WINDOW_MS) as usize].pop_front()?;
        self.in_wheel -= 1;
        Some(e)
    }

    /// Whether every event pushed so far for `t`, a time after the one
    /// [`pop`](Self::pop) last returned and within the wheel, passes `test`.
    pub fn all_at(&self, t: u64, test: impl Fn(&E) -> bool) -> bool {
        self.ahead_in_wheel(t) && self.slots[(t % WINDOW_MS) as usize].iter().all(test)
    }

    /// Takes every event pushed so far for `t` (as [`all_at`](Self::all_at)),
    /// in push order. Later pushes for `t` are popped as usual. The slot
    /// keeps its buffer, as one drained by [`pop`](Self::pop) does.
    pub fn drain_at(&mut self, t: u64) -> impl Iterator<Item = E> + '_ {
        let ahead = self.ahead_in_wheel(t);
        let slot = &mut self.slots[(t % WINDOW_MS) as usize];
        let n = if ahead { slot.len() } else { 0 };
        self.in_wheel -= n;
        slot.drain(..n)
    }

    fn ahead_in_wheel(&self, t: u64) -> bool {
        t > self.now && t < self.now + WINDOW_MS
    }

    /// Moves overflow events that the window now covers into their slots.
    /// This runs before any event of the new time is handled, so they go in
    /// ahead of anything pushed for the same time later: push order holds.
    fn admit_overflow(&mut self) {
        while let Some(entry) = self.overflow.first_entry() {
            let at = entry.key().0;
            if at >= self.now + WINDOW_MS {
                break;
            }
            let event = entry.remove();
            self.slots[(at % WINDOW_MS) as usize].push_back(event);
            self.in_wheel += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    #[test]
    fn pop_at_drains_one_millisecond_including_what_is_pushed_meanwhile() {
        let mut q = EventQueue::new();
        q.push(5, "a");
        q.push(5, "b");
        q.push(6, "later");
        q.push(10_000, "far");
        assert_eq!(q.pop_at(5), None, "nothing popped yet: the queue is not at 5");
        assert_eq!(q.pop(), Some((5, "a")));
        q.push(5, "pushed at 5");
        assert_eq!(q.pop_at(5), Some("b"));
        assert_eq!(q.pop_at(5), Some("pushed at 5"));
        assert_eq!(q.pop_at(5), None);
        assert_eq!(q.pop_at(6), None, "6 is not the millisecond being drained");
        assert_eq!(q.pop(), Some((6, "later")));
        assert_eq!(q.pop(), Some((10_000, "far")));
        assert!(q.is_empty());
    }

    #[test]
    fn the_next_milliseconds_can_be_inspected_and_taken_whole() {
        let mut q = EventQueue::new();
        q.push(5, 1);
        q.push(6, 2);
        q.push(6, 4);
        q.push(7, 3);
        assert_eq!(q.pop(), Some((5, 1)));
        assert!(q.all_at(6, |e| e % 2 == 0));
        assert!(!q.all_at(7, |e| e % 2 == 0));
        assert!(!q.all_at(5, |_| true), "the current millisecond is pop_at's");
        assert!(q.all_at(9, |_| false), "nothing pushed for 9");
        q.push(5, 7);
        assert_eq!(q.drain_at(5).count(), 0, "the current millisecond is pop_at's");
        assert_eq!(q.pop_at(5), Some(7));
        assert_eq!(q.drain_at(6).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(q.len(), 1);
        q.push(6, 8);
        assert_eq!(q.pop(), Some((6, 8)), "pushed after the take: popped as usual");
        assert_eq!(q.pop(), Some((7, 3)));
        assert!(q.is_empty());
    }

    proptest! {
        /// Same order as a heap keyed by (time, push order), including
        /// events pushed while draining and far beyond the window.
        #[test]
        fn pops_in_time_then_push_order(
            initial in prop::collection::vec(0u64..300_000, 0..200),
            follow_ups in prop::collection::vec((0u64..200_000, 0usize..3), 0..200),
        ) {
            let mut q = EventQueue::new();
            let mut heap = BinaryHeap::new();
            let mut seq = 0u64;
            for &t in &initial {
                q.push(t, seq);
                heap.push(Reverse((t, seq)));
                seq += 1;
            }
            let mut follow = follow_ups.into_iter();
            while let Some(Reverse((t, s))) = heap.pop() {
                prop_assert_eq!(q.pop(), Some((t, s)));
                // Handling an event may schedule more, some at the same time.
                if let Some((delay, n)) = follow.next() {
                    for _ in 0..n {
                        let at = t + delay * (s % 2);
                        q.push(at, seq);
                        heap.push(Reverse((at, seq)));
                        seq += 1;
                    }
                }
            }
            prop_assert_eq!(q.pop(), None);
            prop_assert!(q.is_empty());
        }
    }
}
