//! RFC 7904 §3: the registrations a peer keeps in the overlay for the
//! users whose phones it serves, each a `sip_registration_route` to
//! itself, signed as the user; and their removal (§7.4.1.3 `exists =
//! false`) when the phones are gone or the peer leaves.

use super::route_to_me;
use overlay::{OverlayNode, RequestFailure, RequestId, Security, Topology};
use reload_wire::usages::kind_id;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How long a removal lives: long enough to replace the value at every
/// replica, and gone soon after (RFC 6940 leaves a removal's lifetime to
/// the storing node).
pub const REMOVAL_LIFETIME_S: u32 = 60;

/// Why a registration was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The node holds no certificate for the user, so cannot sign as it
    /// (USER-NODE-MATCH, RFC 7904 §3.3).
    #[error("this node holds no certificate for {0}")]
    NotEnrolled(String),
    #[error("{0}")]
    Refused(RequestFailure),
    /// The overlay side is gone (the peer is shutting down).
    #[error("the peer is shutting down")]
    ShuttingDown,
}

/// The registrations this node stores and the Stores in flight.
#[derive(Default)]
pub struct Registrations {
    /// Users whose registration this node keeps, withdrawn on leave.
    published: BTreeSet<String>,
    /// Publishes in flight, by request: their tokens.
    pending: BTreeMap<RequestId, u64>,
    /// Removals in flight for a leave.
    withdrawing: BTreeSet<RequestId>,
    finished: VecDeque<(u64, Result<(), PublishError>)>,
}

impl Registrations {
    /// Stores `resource_name`'s registration routing to this node for
    /// `lifetime_s`, or its removal with 0. The outcome comes out of
    /// [`poll_published`](Self::poll_published) with `token`.
    pub fn publish<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        resource_name: &str,
        lifetime_s: u32,
        token: u64,
    ) {
        if lifetime_s > 0 {
            self.published.insert(resource_name.to_string());
        } else {
            self.published.remove(resource_name);
        }
        match store_registration(engine, now, resource_name, lifetime_s > 0, lifetime_s) {
            Some(request) => {
                self.pending.insert(request, token);
            }
            None => self
                .finished
                .push_back((token, Err(PublishError::NotEnrolled(resource_name.to_string())))),
        }
    }

    /// Stores a removal of `resource_name`'s registration whose outcome
    /// nobody waits on here (an account removed from the node: the caller
    /// tracks the request).
    pub fn remove<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        resource_name: &str,
    ) -> Option<RequestId> {
        self.published.remove(resource_name);
        store_registration(engine, now, resource_name, false, REMOVAL_LIFETIME_S)
    }

    /// A finished publish: its token and outcome.
    pub fn poll_published(&mut self) -> Option<(u64, Result<(), PublishError>)> {
        self.finished.pop_front()
    }

    /// The users whose registrations this node keeps.
    pub fn published(&self) -> impl Iterator<Item = &str> {
        self.published.iter().map(String::as_str)
    }

    /// Before a graceful leave: each registration this node stored says
    /// "AppAttach to me" (RFC 7904 §3), which stops being true. Each is
    /// replaced by a removal, so callers stop asking a peer that is gone
    /// (they would wait for an AppAttach that is dropped, RFC 6940
    /// §6.1.1). A crashed peer's stay until they expire.
    pub fn withdraw<T: Topology, S: Security>(&mut self, engine: &mut OverlayNode<T, S>, now: u64) -> Vec<RequestId> {
        let mut requests = Vec::new();
        for name in std::mem::take(&mut self.published) {
            if let Some(request) = store_registration(engine, now, &name, false, REMOVAL_LIFETIME_S) {
                self.withdrawing.insert(request);
                requests.push(request);
            }
        }
        requests
    }

    /// Takes the outcome of a request this part started; `false` when it
    /// is not one of its.
    pub fn on_done(&mut self, request: RequestId, outcome: &Result<reload_wire::Body, RequestFailure>) -> bool {
        if self.withdrawing.remove(&request) {
            return true;
        }
        let Some(token) = self.pending.remove(&request) else {
            return false;
        };
        let result = match outcome {
            Ok(_) => Ok(()),
            Err(e) => Err(PublishError::Refused(e.clone())),
        };
        self.finished.push_back((token, result));
        true
    }
}

/// One Store of the registration value routing to this node (`exists`) or
/// of its removal, signed as the user; `None` when the node holds no
/// certificate for the user. [`Registrations`] keeps track of what it
/// stored.
fn store_registration<T: Topology, S: Security>(
    engine: &mut OverlayNode<T, S>,
    now: u64,
    resource_name: &str,
    exists: bool,
    lifetime_s: u32,
) -> Option<RequestId> {
    let resource = engine.resource_id(resource_name.as_bytes());
    let value = route_to_me(engine.node_id(), exists);
    let lifetime = if exists { lifetime_s } else { REMOVAL_LIFETIME_S };
    engine.store_as(
        now,
        resource_name,
        resource,
        kind_id::SIP_REGISTRATION,
        vec![value],
        lifetime,
    )
}
