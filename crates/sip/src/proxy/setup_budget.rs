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
//! A phone that answers nothing is also bounded on its own: once
//! [`MAX_SILENT_PER_PHONE`] INVITEs sent to one address have had no
//! answer for [`SETUP_WAIT_MS`], it is sent no new one until it answers
//! something or their Timer B ends; a call gets 480 there at once
//! instead of seven retransmissions more toward an address that may not
//! even be a phone. RFC 3261 has a UAS send 100 within 200 ms (§17.2.1):
//! a live phone, or a PBX taking thousands of calls a second, leaves
//! none silent that long, however many it has unanswered at once.

use crate::capacity::GiveBack;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

/// How long an INVITE branch's silence keeps its call in setup: after
/// T1's first two retransmissions (0.5 s and 1.5 s) a phone that is
/// alive, even over a slow link, has answered.
pub const SETUP_WAIT_MS: u64 = 4 * crate::transaction::T1_MS;

/// How many silent INVITEs (unanswered for [`SETUP_WAIT_MS`]) one
/// phone address may have before it is sent no new one. More than one,
/// so that a lost datagram and its first two retransmissions on a lossy
/// link do not make a live phone unreachable.
pub const MAX_SILENT_PER_PHONE: usize = 8;

#[derive(Default)]
pub(super) struct SetupBudget {
    /// Server transactions of calls no next hop has taken yet.
    calls: HashSet<u64>,
    /// INVITE branches to each phone address silent past the wait.
    silent: HashMap<SocketAddr, usize>,
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

    /// Whether `phone` has as many silent INVITEs as it may.
    pub(super) fn phone_is_silent(&self, phone: SocketAddr, limit: usize) -> bool {
        self.silent.get(&phone).is_some_and(|n| *n >= limit)
    }

    /// An INVITE sent to `phone` has had no answer for [`SETUP_WAIT_MS`].
    pub(super) fn went_silent(&mut self, phone: SocketAddr) {
        *self.silent.entry(phone).or_default() += 1;
    }

    /// A silent INVITE sent to `phone` got a response, or its branch ended.
    pub(super) fn no_longer_silent(&mut self, phone: SocketAddr) {
        if let Some(n) = self.silent.get_mut(&phone) {
            *n -= 1;
            if *n == 0 {
                self.silent.remove(&phone);
            }
        }
    }

    pub(super) fn give_back(&mut self) {
        self.calls.give_back();
        self.silent.give_back();
    }
}
