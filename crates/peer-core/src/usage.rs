//! RFC 6940 §5.2 "Usage Layer": each usage defines Kinds and what a node
//! keeps in the overlay with them. The peer core drives its usages through
//! one trait: they start requests on the engine, take the answers to their
//! own requests, keep their own timers, store what they keep when the node
//! joins and withdraw it before a graceful leave.

use overlay::{AccessPolicy, OverlayConfig, OverlayNode, RequestFailure, RequestId, Security, Topology};
use reload_wire::{Body, KindId, NodeId};

/// A Kind a usage defines, with the access policy its RFC gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageKind {
    pub id: KindId,
    pub name: &'static str,
    pub access: AccessPolicy,
}

/// One usage of the overlay, run by the peer core. Times are the engine's
/// clock (milliseconds).
pub trait Usage<T: Topology, S: Security> {
    /// The Kinds this usage defines.
    fn kinds(&self) -> &'static [UsageKind];

    /// The node is in the overlay (it joined, or rejoined): store what the
    /// usage keeps there.
    fn joined(&mut self, _engine: &mut OverlayNode<T, S>, _now: u64) {}

    /// Takes the outcome of a request this usage started; `false` when the
    /// request is not one of its.
    fn on_done(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        request: RequestId,
        outcome: &Result<Body, RequestFailure>,
        responder: NodeId,
    ) -> bool;

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    fn poll_timeout(&self) -> Option<u64> {
        None
    }

    fn handle_timeout(&mut self, _engine: &mut OverlayNode<T, S>, _now: u64) {}

    /// Before a graceful leave (§10.9): replace what this node stored that
    /// stops being true once it is gone. The requests to wait for.
    fn withdraw(&mut self, _engine: &mut OverlayNode<T, S>, _now: u64) -> Vec<RequestId> {
        Vec::new()
    }
}

/// A Kind a usage needs that the configuration document defines with
/// another access policy: every Store of it would be refused, or worse,
/// accepted under rules its RFC does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the configuration defines Kind {name} ({id}) with access policy {configured:?}, but its usage needs {needed:?}; fix the <kind> element of the configuration document"
)]
pub struct KindPolicyMismatch {
    pub name: &'static str,
    pub id: KindId,
    pub configured: AccessPolicy,
    pub needed: AccessPolicy,
}

/// Checks that `config` gives each of `kinds` its usage's access policy.
/// A Kind the configuration does not define is not an error here: the
/// usage's stores of it are refused by the overlay, and say so.
pub fn check_kinds(config: &OverlayConfig, kinds: &[UsageKind]) -> Result<(), KindPolicyMismatch> {
    for kind in kinds {
        if let Some(defined) = config.kind(kind.id) {
            if defined.access != kind.access {
                return Err(KindPolicyMismatch {
                    name: kind.name,
                    id: kind.id,
                    configured: defined.access,
                    needed: kind.access,
                });
            }
        }
    }
    Ok(())
}
