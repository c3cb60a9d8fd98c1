//! The calls a proxy is setting up: the budget that sheds new calls when
//! the peers behind fall behind (decision 0029), and the phones that
//! answer nothing.
//!
//! A call is in setup from its admission until a next hop takes it (any
//! response) or until it has waited [`SETUP_WAIT_MS`] on one that says
//! nothing. Past that wait the call is waiting on a phone, not on this
//! peer or the peers behind it, and holding its slot for Timer B (32 s)
//! would let a few dead contacts refuse every caller of the peer.
//!
//! A phone that answers nothing is also bounded on its own: at most
//! [`MAX_UNANSWERED_PER_PHONE`] INVITEs wait on one address at once. RFC
//! 3261 has a UAS send 100 within 200 ms (§17.2.1), so a live phone
//! never comes close; past it a call gets 480 there at once instead of
//! seven retransmissions more toward an address that may not even be a
//! phone.

use crate::capacity::GiveBack;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

/// How long an INVITE branch's silence keeps its call in setup: after
/// T1's first two retransmissions (0.5 s and 1.5 s) a phone that is
/// alive, even over a slow link, has answered.
pub const SETUP_WAIT_MS: u64 = 4 * crate::transaction::T1_MS;

/// Most INVITE branches one phone's address may leave unanswered at once.
pub const MAX_UNANSWERED_PER_PHONE: usize = 32;

#[derive(Default)]
pub(super) struct SetupBudget {
    /// Server transactions of calls no next hop has taken yet.
    calls: HashSet<u64>,
    /// INVITE branches sent to each phone address with nothing back yet.
    unanswered: HashMap<SocketAddr, usize>,
}

impl SetupBudget {
    pub(super) fn len(&self) -> usize {
        self.calls.len()
    }

    pub(super) fn admit(&mut self, server: u64) {
        self.calls.insert(server);
    }

    /// The call of `server` is no longer being set up here: a next hop
    /// took it, it was answered, or it waited [`SETUP_WAIT_MS`].
    pub(super) fn leave(&mut self, server: u64) {
        self.calls.remove(&server);
    }

    /// Whether `phone` has as many INVITEs unanswered as it may.
    pub(super) fn phone_is_full(&self, phone: SocketAddr, limit: usize) -> bool {
        self.unanswered.get(&phone).is_some_and(|n| *n >= limit)
    }

    pub(super) fn invite_sent_to(&mut self, phone: SocketAddr) {
        *self.unanswered.entry(phone).or_default() += 1;
    }

    /// An INVITE sent to `phone` got a response, or its branch ended.
    pub(super) fn phone_answered(&mut self, phone: SocketAddr) {
        if let Some(n) = self.unanswered.get_mut(&phone) {
            *n -= 1;
            if *n == 0 {
                self.unanswered.remove(&phone);
            }
        }
    }

    pub(super) fn give_back(&mut self) {
        self.calls.give_back();
        self.unanswered.give_back();
    }
}
