//! Storage quotas: how many bytes of stored values a peer holds, per
//! signer and in all. RFC 6940 §13.5.2 bounds each Kind's values
//! (max-size, max-count) and leaves the rest to the access-control
//! policies; our extension `<p2psip:storage-quota>` (decision 0030) also
//! bounds what one user or one Node-ID may keep at one peer, and the
//! peer's whole store, so no writer can fill a peer's memory.

use crate::config::StorageQuota;
use crate::security::Credential;
use reload_wire::{NodeId, StoredData, StoredDataValue};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who signed a stored value (§7.1): the quota it counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Owner {
    pub user: Arc<str>,
    pub node: Option<NodeId>,
}

/// Bytes a value costs: its value, dictionary key and signature, plus a
/// fixed 32 for its storage time, lifetime and bookkeeping.
pub(super) fn cost(sd: &StoredData) -> u64 {
    let (value, key) = match &sd.value {
        StoredDataValue::SingleValue(d) => (d.value.len(), 0),
        StoredDataValue::Array(a) => (a.value.value.len(), 4),
        StoredDataValue::Dictionary(d) => (d.value.value.len(), d.key.len()),
    };
    (value + key + sd.signature.signature_value.len() + 32) as u64
}

/// What the peer holds now, by signer and in all.
#[derive(Debug, Default)]
pub(super) struct Usage {
    total: u64,
    by_user: BTreeMap<Arc<str>, u64>,
    by_node: BTreeMap<NodeId, u64>,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The owner of a value signed by `who`, sharing the user name with
    /// the values already held.
    pub fn owner(&self, who: &Credential) -> Owner {
        let user = match self.by_user.get_key_value(who.user.as_str()) {
            Some((name, _)) => name.clone(),
            None => Arc::from(who.user.as_str()),
        };
        Owner {
            user,
            node: who.signer_node_id.or_else(|| who.node_ids.first().copied()),
        }
    }

    pub fn add(&mut self, owner: &Owner, bytes: u64) {
        self.total += bytes;
        *self.by_user.entry(owner.user.clone()).or_default() += bytes;
        if let Some(n) = owner.node {
            *self.by_node.entry(n).or_default() += bytes;
        }
    }

    pub fn remove(&mut self, owner: &Owner, bytes: u64) {
        self.total = self.total.saturating_sub(bytes);
        if let Some(u) = self.by_user.get_mut(&owner.user) {
            *u = u.saturating_sub(bytes);
            if *u == 0 {
                self.by_user.remove(&owner.user);
            }
        }
        if let Some(n) = owner.node {
            if let Some(b) = self.by_node.get_mut(&n) {
                *b = b.saturating_sub(bytes);
                if *b == 0 {
                    self.by_node.remove(&n);
                }
            }
        }
    }
}

/// The change one Store would make, checked before anything changes.
#[derive(Debug, Default)]
pub(super) struct Change {
    total: i64,
    by_user: BTreeMap<Arc<str>, i64>,
    by_node: BTreeMap<NodeId, i64>,
}

/// Which limit a Store would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    PerUser,
    PerNode,
    Total,
}

impl Exceeded {
    pub fn reason(self) -> &'static str {
        match self {
            Exceeded::PerUser => "the signer's storage quota at this peer is used up (storage-quota per-user)",
            Exceeded::PerNode => "the signing node's storage quota at this peer is used up (storage-quota per-node)",
            Exceeded::Total => "this peer's storage is full (storage-quota total)",
        }
    }
}

impl Change {
    pub fn add(&mut self, owner: &Owner, bytes: u64) {
        self.shift(owner, bytes as i64);
    }

    pub fn remove(&mut self, owner: &Owner, bytes: u64) {
        self.shift(owner, -(bytes as i64));
    }

    fn shift(&mut self, owner: &Owner, by: i64) {
        self.total += by;
        *self.by_user.entry(owner.user.clone()).or_default() += by;
        if let Some(n) = owner.node {
            *self.by_node.entry(n).or_default() += by;
        }
    }

    /// Whether `usage` changed by this passes a limit of `quota`. Only
    /// growth is refused: a write that shrinks what a signer holds goes
    /// through even above its quota (a quota lowered by a configuration
    /// update). The per-signer limits bind (`per_signer`) original Stores
    /// and every Store the responsible peer takes, replica Stores
    /// included, since anyone may send it one; a replica Store to a
    /// replica carries values a responsible peer admitted, and a replica
    /// holds three peers' ranges, so it may hold more of one signer than
    /// any of them: it is bound by the total alone.
    pub fn exceeds(&self, usage: &Usage, quota: &StorageQuota, per_signer: bool) -> Option<Exceeded> {
        let over = |held: u64, change: i64, limit: u64| change > 0 && held.saturating_add(change as u64) > limit;
        if over(usage.total, self.total, quota.total_bytes) {
            return Some(Exceeded::Total);
        }
        if !per_signer {
            return None;
        }
        if self
            .by_user
            .iter()
            .any(|(u, c)| over(usage.by_user.get(u).copied().unwrap_or(0), *c, quota.per_user_bytes))
        {
            return Some(Exceeded::PerUser);
        }
        if self
            .by_node
            .iter()
            .any(|(n, c)| over(usage.by_node.get(n).copied().unwrap_or(0), *c, quota.per_node_bytes))
        {
            return Some(Exceeded::PerNode);
        }
        None
    }
}
