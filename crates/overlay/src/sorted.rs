//! Small ordered maps and sets kept in one sorted vector.
//!
//! A peer's tables (its links, the peers of its routing table) hold tens of
//! entries and are read on every message. A `BTreeMap` spreads even that
//! few over several nodes, each its own allocation, and a lookup walks from
//! node to node; in a simulation of 100,000 peers nearly every one of those
//! steps misses the cache. One sorted vector is a single allocation read
//! front to back, and an insert or remove moves a few hundred bytes for
//! a table of tens. The methods are those of `BTreeMap`/`BTreeSet` that
//! the engine uses, with the same meaning.

use std::ops::{Bound, RangeBounds};

/// Entries of a [`SortedMap`], as `BTreeMap` gives them: one type for
/// every range, so two ranges can be chained or swapped.
pub type Entries<'a, K, V> = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

fn pair<K, V>((k, v): &(K, V)) -> (&K, &V) {
    (k, v)
}

/// A map ordered by key, in one sorted vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap { entries: Vec::new() }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, key: &K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(key))
    }

    /// The entries, in key order.
    pub fn as_slice(&self) -> &[(K, V)] {
        &self.entries
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// Entries in key order.
    pub fn iter(&self) -> Entries<'_, K, V> {
        self.entries.iter().map(pair)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Entries whose keys fall in `range`, in key order.
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Entries<'_, K, V> {
        let start = match range.start_bound() {
            Bound::Included(s) => self.entries.partition_point(|(k, _)| k < s),
            Bound::Excluded(s) => self.entries.partition_point(|(k, _)| k <= s),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => self.entries.partition_point(|(k, _)| k <= e),
            Bound::Excluded(e) => self.entries.partition_point(|(k, _)| k < e),
            Bound::Unbounded => self.entries.len(),
        };
        self.entries[start..end.max(start)].iter().map(pair)
    }
}

/// A set ordered by value, in one sorted vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedSet<K> {
    items: Vec<K>,
}

impl<K> Default for SortedSet<K> {
    fn default() -> Self {
        SortedSet { items: Vec::new() }
    }
}

impl<K: Ord> SortedSet<K> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn contains(&self, item: &K) -> bool {
        self.items.binary_search(item).is_ok()
    }

    /// The items, in order.
    pub fn as_slice(&self) -> &[K] {
        &self.items
    }

    /// Whether `item` was new.
    pub fn insert(&mut self, item: K) -> bool {
        match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(i) => {
                self.items.insert(i, item);
                true
            }
        }
    }

    /// Whether `item` was there.
    pub fn remove(&mut self, item: &K) -> bool {
        match self.items.binary_search(item) {
            Ok(i) => {
                self.items.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Items in order.
    pub fn iter(&self) -> std::slice::Iter<'_, K> {
        self.items.iter()
    }
}

impl<K> IntoIterator for SortedSet<K> {
    type Item = K;
    type IntoIter = std::vec::IntoIter<K>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::ops::Bound::{Excluded, Included, Unbounded};

    #[test]
    fn as_slice_holds_the_entries_in_order() {
        let mut map = SortedMap::new();
        let mut set = SortedSet::new();
        for k in [3u64, 1, 2] {
            map.insert(k, k as u32 * 10);
            set.insert(k);
        }
        assert_eq!(map.as_slice(), &[(1, 10), (2, 20), (3, 30)]);
        assert_eq!(set.as_slice(), &[1, 2, 3]);
        assert!(SortedSet::<u64>::new().as_slice().is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
            any::<u8>().prop_map(Op::Remove),
        ]
    }

    fn bound() -> impl Strategy<Value = Bound<u8>> {
        prop_oneof![
            any::<u8>().prop_map(Included),
            any::<u8>().prop_map(Excluded),
            Just(Unbounded)
        ]
    }

    proptest! {
        /// Any sequence of inserts and removes leaves the same map as a
        /// BTreeMap, with the same answers to lookups and range queries.
        #[test]
        fn behaves_as_a_btree_map(ops in prop::collection::vec(op(), 0..200), lo in bound(), hi in bound(), probe: u8) {
            let mut ours = SortedMap::new();
            let mut std_map = BTreeMap::new();
            let mut our_set = SortedSet::new();
            let mut std_set = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(ours.insert(k, v), std_map.insert(k, v));
                        prop_assert_eq!(our_set.insert(k), std_set.insert(k));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(ours.remove(&k), std_map.remove(&k));
                        prop_assert_eq!(our_set.remove(&k), std_set.remove(&k));
                    }
                }
            }
            prop_assert!(ours.iter().eq(std_map.iter()));
            prop_assert!(our_set.iter().eq(std_set.iter()));
            prop_assert_eq!(ours.len(), std_map.len());
            prop_assert_eq!(ours.get(&probe), std_map.get(&probe));
            prop_assert_eq!(our_set.contains(&probe), std_set.contains(&probe));
            // BTreeMap::range panics on an inverted or empty-excluded range;
            // compare only the ranges it accepts.
            let valid = match (lo, hi) {
                (Included(a) | Excluded(a), Included(b) | Excluded(b)) => {
                    a < b || (a == b && !matches!((lo, hi), (Excluded(_), Excluded(_))))
                }
                _ => true,
            };
            if valid {
                prop_assert!(ours.range((lo, hi)).eq(std_map.range((lo, hi))));
                prop_assert!(ours.range((lo, hi)).rev().eq(std_map.range((lo, hi)).rev()));
            }
        }
    }
}
