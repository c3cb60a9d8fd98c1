//! The daemon's side of finding where a user's phones are: the sans-IO
//! [`Locator`] of the SIP usage (RFC 7904 §4.2) runs on the engine task,
//! and each outcome goes back to the SIP task that asked.

use overlay::{OverlayNode, RequestFailure, RequestId, Security, Topology};
use peer_core::sip_usage::{Located, Locator};
use reload_wire::{Body, NodeId};
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::oneshot;

#[derive(Default)]
pub(crate) struct SipLocator {
    locator: Locator,
    next: u64,
    replies: HashMap<u64, oneshot::Sender<Located>>,
    /// Unverified registration values already logged.
    unverified_logged: u64,
}

impl SipLocator {
    pub fn start<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        resource_name: String,
        reply: oneshot::Sender<Located>,
    ) {
        self.next += 1;
        self.replies.insert(self.next, reply);
        self.locator.start(engine, now, resource_name, self.next);
        self.deliver();
    }

    /// Takes the outcome of a request the locator started; `false` when
    /// the request is not one of its.
    pub fn on_done<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        request: RequestId,
        outcome: &Result<Body, RequestFailure>,
        responder: NodeId,
    ) -> bool {
        let taken = self.locator.on_done(engine, now, request, outcome, responder);
        self.deliver();
        taken
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due (engine clock).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.locator.poll_timeout()
    }

    /// Ends lookups whose grace for the other AppAttaches is over.
    pub fn handle_timeout(&mut self, now: u64) {
        self.locator.handle_timeout(now);
        self.deliver();
    }

    /// The next call to the users of the peer at `address` asks it again.
    pub fn forget(&mut self, address: SocketAddr) {
        self.locator.forget(address);
    }

    fn deliver(&mut self) {
        while let Some((token, located)) = self.locator.poll_located() {
            if let Some(reply) = self.replies.remove(&token) {
                let _ = reply.send(located);
            }
        }
        let unverified = self.locator.stats().unverified_values;
        if unverified > self.unverified_logged {
            tracing::warn!(
                "sip: {} fetched registration values did not verify; ignored",
                unverified - self.unverified_logged
            );
            self.unverified_logged = unverified;
        }
    }
}
