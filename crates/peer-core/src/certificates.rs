//! The Certificate Store Usage, RFC 6940 §8: "A user/node MUST store its
//! certificate at Resource-IDs derived from two Resource Names: the user
//! name in the certificate [and] the Node-ID in the certificate." The
//! node stores its own certificate under CERTIFICATE_BY_NODE at
//! H(Node-ID) and under CERTIFICATE_BY_USER at H(its user name), and the
//! certificate of every SIP user enrolled into it at H(user@overlay),
//! signed as that user (USER-MATCH). Peers that never met it verify its
//! signatures with them, and a caller's peer tells a user who exists but
//! has no phone registered (480) from one nobody enrolled (404).
//!
//! Every certificate is written at array index 0 and stored again at half
//! its lifetime. §8 appends new certificates to the end of the list so a
//! renewed one can sit beside the old; we have no renewal yet, and index
//! 0 keeps a refresh from growing the list. A user enrolled into two
//! nodes has two certificates; whichever wrote last is there, and either
//! one proves the user exists.

use crate::usage::{Usage, UsageKind};
use overlay::{AccessPolicy, OverlayNode, RequestFailure, RequestId, Security, Topology};
use reload_wire::storage::{ArrayEntry, DataValue, StoredDataValue};
use reload_wire::usages::kind_id;
use reload_wire::{Body, NodeId};
use std::collections::HashMap;

/// Lifetime of the certificates stored; stored again at half of it.
pub const CERTIFICATE_LIFETIME_S: u32 = 24 * 3600;
/// How soon everything is stored again after a store failed, in ms;
/// doubled after each round with a failure, up to [`MAX_RETRY_MS`], so a
/// store the overlay keeps refusing does not cost every user's store
/// every 10 s.
const RETRY_MS: u64 = 10_000;
const MAX_RETRY_MS: u64 = 3_600_000;

/// The Kinds of the Certificate Store Usage and their policies (§8).
pub const KINDS: &[UsageKind] = &[
    UsageKind {
        id: kind_id::CERTIFICATE_BY_NODE,
        name: "CERTIFICATE_BY_NODE",
        access: AccessPolicy::NodeMatch,
    },
    UsageKind {
        id: kind_id::CERTIFICATE_BY_USER,
        name: "CERTIFICATE_BY_USER",
        access: AccessPolicy::UserMatch,
    },
];

fn value(der: Vec<u8>, exists: bool) -> StoredDataValue {
    StoredDataValue::Array(ArrayEntry {
        index: 0,
        value: DataValue { exists, value: der },
    })
}

/// The node's certificate, the stores in flight and when to store
/// everything again.
pub struct CertificateUsage {
    /// The node's certificate (DER) and the user name it carries.
    node_certificate: Vec<u8>,
    node_user: String,
    /// Each store in flight and what it stores, for the log.
    pending: HashMap<RequestId, String>,
    /// When to store everything again (engine clock).
    next: Option<u64>,
    /// Rounds in a row in which a store failed.
    failed_rounds: u32,
    /// Whether a store of the current round failed.
    round_failed: bool,
}

impl CertificateUsage {
    pub fn new(node_certificate: Vec<u8>, node_user: String) -> Self {
        CertificateUsage {
            node_certificate,
            node_user,
            pending: HashMap::new(),
            next: None,
            failed_rounds: 0,
            round_failed: false,
        }
    }

    /// Stores the node's certificate by Node-ID and by user name, and every
    /// SIP user's by user name.
    pub fn store_all<T: Topology, S: Security>(&mut self, engine: &mut OverlayNode<T, S>, now: u64) {
        if std::mem::take(&mut self.round_failed) {
            self.failed_rounds += 1;
        } else {
            self.failed_rounds = 0;
        }
        let me = engine.node_id();
        let own = [
            (kind_id::CERTIFICATE_BY_NODE, me.as_bytes().to_vec(), me.to_hex()),
            (
                kind_id::CERTIFICATE_BY_USER,
                self.node_user.as_bytes().to_vec(),
                self.node_user.clone(),
            ),
        ];
        for (kind, name, shown) in own {
            let resource = engine.resource_id(&name);
            let value = vec![value(self.node_certificate.clone(), true)];
            let id = engine.store(now, resource, kind, value, CERTIFICATE_LIFETIME_S);
            self.pending.insert(id, format!("the certificate of {shown}"));
        }
        // The node's own account is often a SIP user of it too; its
        // certificate by user name is the one just stored.
        let users: Vec<String> = engine
            .security_mut()
            .enrolled_users()
            .into_iter()
            .filter(|u| *u != self.node_user)
            .collect();
        for user in users {
            self.store_user(engine, now, &user, true);
        }
        self.next = Some(now + u64::from(CERTIFICATE_LIFETIME_S) * 500);
    }

    /// Stores a SIP user's certificate at H(user), signed as the user, or,
    /// when `exists` is false, a removal in its place (an account removed
    /// from the node). The request, if the node signs as `user`.
    pub fn store_user<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        user: &str,
        exists: bool,
    ) -> Option<RequestId> {
        let cert = engine.security_mut().enrolled_certificate(user)?;
        let resource = engine.resource_id(user.as_bytes());
        let id = engine.store_as(
            now,
            user,
            resource,
            kind_id::CERTIFICATE_BY_USER,
            vec![value(cert, exists)],
            CERTIFICATE_LIFETIME_S,
        )?;
        let what = if exists { "the certificate of" } else { "the removal of" };
        self.pending.insert(id, format!("{what} {user}"));
        Some(id)
    }
}

impl<T: Topology, S: Security> Usage<T, S> for CertificateUsage {
    fn kinds(&self) -> &'static [UsageKind] {
        KINDS
    }

    fn joined(&mut self, engine: &mut OverlayNode<T, S>, now: u64) {
        self.store_all(engine, now);
    }

    fn on_done(
        &mut self,
        _engine: &mut OverlayNode<T, S>,
        now: u64,
        request: RequestId,
        outcome: &Result<Body, RequestFailure>,
        _responder: NodeId,
    ) -> bool {
        let Some(what) = self.pending.remove(&request) else {
            return false;
        };
        match outcome {
            Ok(_) => tracing::debug!("stored {what} in the overlay"),
            Err(e) if !self.round_failed => {
                self.round_failed = true;
                let wait = RETRY_MS
                    .saturating_mul(1 << self.failed_rounds.min(9))
                    .min(MAX_RETRY_MS);
                tracing::warn!(
                    "storing {what} failed ({e}); storing every certificate again in {} s",
                    wait / 1000
                );
                self.next = Some(now + wait);
            }
            Err(e) => tracing::debug!("storing {what} failed too ({e})"),
        }
        true
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.next
    }

    fn handle_timeout(&mut self, engine: &mut OverlayNode<T, S>, now: u64) {
        if self.next.is_some_and(|t| t <= now) {
            self.store_all(engine, now);
        }
    }
}
