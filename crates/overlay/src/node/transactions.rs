//! RFC 6940 §6.2: this node's requests in flight, with their end-to-end
//! retransmissions (§6.2.1), and the answers it gave, kept for the
//! request lifetime so a retransmitted request gets the same answer
//! (§6.2.2).

use super::*;

/// The transaction state of one node.
#[derive(Debug)]
pub(super) struct Transactions {
    pub(super) outstanding: BTreeMap<u64, Outstanding>,
    pub(super) retransmit_at: Deadlines,
    pub(super) answered: BTreeMap<u64, MessageContents>,
    /// When each cached answer goes, oldest first: (time, transaction id).
    pub(super) answered_expiry: VecDeque<(u64, u64)>,
    next_request: RequestId,
}

impl Default for Transactions {
    fn default() -> Self {
        Transactions {
            outstanding: BTreeMap::new(),
            retransmit_at: Deadlines::default(),
            answered: BTreeMap::new(),
            answered_expiry: VecDeque::new(),
            next_request: 1,
        }
    }
}

impl Transactions {
    /// A transaction id for a new request of this node.
    pub(super) fn next_id(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// When the next retransmission or timeout is due.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.retransmit_at.soonest()
    }

    /// Drops cached answers older than the request lifetime. This runs as
    /// answers are added and at each sweep rather than on a timer of its
    /// own, so a cache entry costs no wake-up.
    pub(super) fn forget_old_answers(&mut self, now: u64) {
        while let Some((t, tid)) = self.answered_expiry.front().copied() {
            if t > now {
                break;
            }
            self.answered_expiry.pop_front();
            self.answered.remove(&tid);
        }
    }
}

#[derive(Debug)]
pub(super) struct Outstanding {
    pub(super) bytes: Vec<u8>,
    pub(super) method: MessageCode,
    pub(super) purpose: Purpose,
    pub(super) transmissions: u8,
    pub(super) deadline: u64,
    pub(super) started: u64,
}

/// End-to-end retransmission deadlines (§6.2.1) by (time, transaction
/// id), soonest first. The soonest time is also kept beside the heap:
/// the driver asks for it after every event, and this way the answer
/// reads no memory beyond the node itself.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    pub(super) heap: BinaryHeap<Reverse<(u64, u64)>>,
    pub(super) soonest: Option<u64>,
}

impl Deadlines {
    pub(super) fn push(&mut self, at: u64, tid: u64) {
        self.heap.push(Reverse((at, tid)));
        self.soonest = Some(self.soonest.map_or(at, |s| s.min(at)));
    }

    pub(super) fn peek(&self) -> Option<(u64, u64)> {
        self.heap.peek().map(|Reverse(d)| *d)
    }

    pub(super) fn pop(&mut self) -> Option<(u64, u64)> {
        let first = self.heap.pop().map(|Reverse(d)| d);
        self.soonest = self.peek().map(|(t, _)| t);
        first
    }

    pub(super) fn soonest(&self) -> Option<u64> {
        self.soonest
    }
}
