//! Finished transactions: what a transaction still answers for after its
//! final response, until Timers D, I, J, K, L or M end it (RFC 3261
//! §17, RFC 6026 §8).
//!
//! At a few thousand calls a second over UDP, each call leaves three
//! transactions waiting 32 s, so these far outnumber the open ones. Each
//! keeps only what its timer needs, in one entry of a queue in the order
//! they finished: a keyed hash of its key, when it ends, and at most the
//! bytes it resends: 837 bytes per call over UDP where the transactions
//! in their open form took 1,460
//! (`a_finished_call_keeps_only_what_retransmissions_need`).
//!
//! Memory is bounded by a byte budget ([`super::TransactionLimits`]):
//! past it the oldest finished transaction goes first, as with a proxy
//! whose wait timer is shorter (Kamailio's `wt_timer` is 5 s). All but
//! Timers I and K are 64·T1, so the oldest is also about the soonest
//! due; those two end early and are checked when looked up.

use crate::capacity::GiveBack;
use crate::registrar::Flow;
use std::collections::{HashMap, VecDeque};

/// What a finished transaction does when its request or response comes
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Afterlife {
    /// A server transaction that sent its final response (a non-INVITE,
    /// or an INVITE whose non-2xx was acknowledged): a retransmitted
    /// request gets `response` again, or is absorbed when there is none
    /// (Timer I absorbs ACKs).
    Answered { response: Option<Box<[u8]>> },
    /// A server INVITE transaction that sent a 2xx (RFC 6026 Timer L):
    /// a retransmitted INVITE is absorbed, an ACK with its key passes on.
    Accepted,
    /// A client INVITE transaction that received a 2xx (Timer M): a
    /// retransmitted 2xx goes on to `upstream`.
    ClientAccepted { upstream: Flow },
    /// A client transaction that received a final non-2xx (Timers D and
    /// K): a retransmitted final response is acknowledged again with
    /// `ack` over `to` (an INVITE's), or absorbed.
    ClientCompleted { to: Flow, ack: Option<Box<[u8]>> },
}

impl Afterlife {
    fn bytes(&self) -> usize {
        let held = match self {
            Afterlife::Answered { response } => response.as_ref().map_or(0, |r| r.len()),
            Afterlife::ClientCompleted { ack, .. } => ack.as_ref().map_or(0, |a| a.len()),
            Afterlife::Accepted | Afterlife::ClientAccepted { .. } => 0,
        };
        // The entry in the queue, which doubles as it grows, and in the
        // index, at most 7/8 full; and what it resends.
        let entry = std::mem::size_of::<Entry>();
        entry + entry / 2 + 2 * std::mem::size_of::<(u64, u64)>() + held
    }

    fn is_server(&self) -> bool {
        matches!(self, Afterlife::Answered { .. } | Afterlife::Accepted)
    }
}

struct Entry {
    key: u64,
    until: u64,
    afterlife: Afterlife,
}

pub(super) struct Finished {
    /// In the order they finished; entry `i` has sequence number
    /// `first_seq + i`.
    entries: VecDeque<Entry>,
    first_seq: u64,
    /// Key to sequence number.
    index: HashMap<u64, u64>,
    bytes: usize,
    budget: usize,
    servers: usize,
}

impl Finished {
    pub(super) fn new(budget: usize) -> Self {
        Finished {
            entries: VecDeque::new(),
            first_seq: 0,
            index: HashMap::new(),
            bytes: 0,
            budget,
            servers: 0,
        }
    }

    /// Remembers a finished transaction until `until`; past the budget
    /// the oldest are forgotten.
    pub(super) fn insert(&mut self, key: u64, until: u64, afterlife: Afterlife) {
        self.bytes += afterlife.bytes();
        self.servers += usize::from(afterlife.is_server());
        let seq = self.first_seq + self.entries.len() as u64;
        self.index.insert(key, seq);
        self.entries.push_back(Entry { key, until, afterlife });
        while self.bytes > self.budget && self.forget_oldest() {}
    }

    /// What the transaction with `key` still does at `now`.
    pub(super) fn get(&self, key: u64, now: u64) -> Option<&Afterlife> {
        let seq = *self.index.get(&key)?;
        let entry = self.entries.get(usize::try_from(seq - self.first_seq).ok()?)?;
        (entry.until > now).then_some(&entry.afterlife)
    }

    /// Forgets every transaction whose timer has ended by `now`, as they
    /// come to the front of the queue.
    pub(super) fn expire(&mut self, now: u64) {
        while self.entries.front().is_some_and(|e| e.until <= now) && self.forget_oldest() {}
        self.entries.give_back();
        self.index.give_back();
    }

    /// When [`expire`](Self::expire) has something to do.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.entries.front().map(|e| e.until)
    }

    fn forget_oldest(&mut self) -> bool {
        let Some(entry) = self.entries.pop_front() else {
            return false;
        };
        let seq = self.first_seq;
        self.first_seq += 1;
        self.bytes -= entry.afterlife.bytes();
        self.servers -= usize::from(entry.afterlife.is_server());
        if self.index.get(&entry.key) == Some(&seq) {
            self.index.remove(&entry.key);
        }
        true
    }

    /// Server and client transactions held.
    pub(super) fn count(&self) -> (usize, usize) {
        (self.servers, self.entries.len() - self.servers)
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(n: usize) -> Afterlife {
        Afterlife::Answered {
            response: Some(vec![b'x'; n].into_boxed_slice()),
        }
    }

    #[test]
    fn an_entry_answers_until_its_timer_ends_then_is_forgotten() {
        let mut f = Finished::new(1 << 20);
        f.insert(1, 100, answered(10));
        f.insert(2, 50, Afterlife::Accepted);
        assert_eq!(f.get(1, 99), Some(&answered(10)));
        assert_eq!(f.get(2, 50), None, "ended early, checked when looked up");
        assert_eq!(f.get(3, 0), None);
        assert_eq!(f.count(), (2, 0));
        f.expire(99);
        assert_eq!(f.count(), (2, 0), "the front is not due yet");
        f.expire(100);
        assert_eq!((f.count(), f.bytes(), f.next_deadline()), ((0, 0), 0, None));
    }

    #[test]
    fn past_the_budget_the_oldest_go_first() {
        let one = answered(100).bytes();
        let mut f = Finished::new(3 * one);
        for key in 0..5 {
            f.insert(key, 1_000, answered(100));
        }
        assert_eq!(f.count(), (3, 0));
        assert!(f.bytes() <= 3 * one);
        assert_eq!(f.get(1, 0), None);
        assert!(f.get(2, 0).is_some() && f.get(4, 0).is_some());
    }

    #[test]
    fn a_key_finished_again_answers_with_its_newest_entry() {
        let mut f = Finished::new(1 << 20);
        f.insert(7, 10, Afterlife::Accepted);
        f.insert(7, 20, answered(1));
        f.expire(10);
        assert_eq!(f.get(7, 15), Some(&answered(1)), "the older entry's expiry left it");
    }
}
