//! Tables give memory back once a burst is over: a hash map keeps the
//! capacity its busiest moment needed, so a peer that once took a flood
//! would hold that memory for the rest of its run.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// Tables at most this large keep their capacity.
pub(crate) const SHRINK_BELOW: usize = 1_024;

pub(crate) trait GiveBack {
    /// Shrinks the table when it holds under a quarter of its capacity
    /// (and more than [`SHRINK_BELOW`] entries' worth); cheap to call
    /// after every event.
    fn give_back(&mut self);
}

fn oversized(capacity: usize, len: usize) -> bool {
    capacity > 4 * len.max(SHRINK_BELOW)
}

impl<K: Eq + Hash, V> GiveBack for HashMap<K, V> {
    fn give_back(&mut self) {
        if oversized(self.capacity(), self.len()) {
            self.shrink_to_fit();
        }
    }
}

impl<T: Eq + Hash> GiveBack for HashSet<T> {
    fn give_back(&mut self) {
        if oversized(self.capacity(), self.len()) {
            self.shrink_to_fit();
        }
    }
}

impl<T> GiveBack for VecDeque<T> {
    fn give_back(&mut self) {
        if oversized(self.capacity(), self.len()) {
            self.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_shrinks_only_once_mostly_empty_and_large() {
        let mut m: HashMap<u32, u32> = (0..20_000).map(|i| (i, i)).collect();
        m.give_back();
        assert!(m.capacity() >= 20_000, "full: kept");
        m.retain(|k, _| *k < 10);
        m.give_back();
        assert!(m.capacity() < 4 * SHRINK_BELOW, "{}", m.capacity());
        let mut small: VecDeque<u32> = VecDeque::with_capacity(2 * SHRINK_BELOW);
        small.give_back();
        assert!(small.capacity() >= 2 * SHRINK_BELOW, "small tables keep theirs");
    }
}
