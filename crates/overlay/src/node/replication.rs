//! Replication and hand-over (RFC 6940 §10.4, §10.7.3, §10.9): replica
//! Stores to the successors, data migrated when responsibility moves.

use super::*;

/// The replication state of one node.
#[derive(Debug, Default)]
pub(super) struct Replication {
    /// Replica Stores in flight: (resource, to whom).
    pub(super) pushing: BTreeSet<(ResourceId, NodeId)>,
    /// Resources being handed to the peer now responsible for them.
    pub(super) migrating: BTreeSet<ResourceId>,
    /// Every stored resource needs its replicas checked (the replica set
    /// moved, or the periodic retry is due).
    pub(super) rebalance_needed: bool,
    /// Only these resources do (a Store changed them, or a push of them
    /// completed): checking one costs what checking all would cost per
    /// resource, so a Store must not walk the whole store.
    pub(super) rebalance_soon: BTreeSet<ResourceId>,
    pub(super) push_retry: PushRetry,
}

impl Replication {
    /// When replica upkeep is next due: at once while resources wait to be
    /// checked, else when a failed push is retried.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        if self.rebalance_needed || !self.rebalance_soon.is_empty() {
            return Some(0);
        }
        self.push_retry.due()
    }
}

impl<T: Topology, S: Security> OverlayNode<T, S> {
    /// Sends a replica Store of everything held under `resource` to `to`.
    /// Returns whether a Store went out.
    pub(super) fn push(&mut self, now: u64, resource: &ResourceId, to: NodeId, force: bool) -> bool {
        if to == self.me || self.replication.pushing.contains(&(resource.clone(), to)) {
            return false;
        }
        let Some(res) = self.storage.resource(resource) else {
            return false;
        };
        if !force && res.holds(&to) {
            return false;
        }
        let version = res.version();
        let replica_number = self
            .topology
            .replica_set(resource.as_bytes())
            .and_then(|s| s.iter().position(|n| *n == to))
            .unwrap_or(1)
            .max(1) as u8;
        let Some(body) = self.replica_store(now, resource, replica_number) else {
            return false;
        };
        self.replication.pushing.insert((resource.clone(), to));
        let dest = vec![Destination::Node(to)];
        self.originate(
            now,
            dest,
            &body,
            Purpose::Push {
                resource: resource.clone(),
                to,
                version,
            },
        );
        true
    }

    /// A replica StoreReq of everything held under `resource`, lifetimes
    /// shortened by the time spent here; `None` when nothing is left.
    pub(super) fn replica_store(&self, now: u64, resource: &ResourceId, replica_number: u8) -> Option<Body> {
        let kind_data = self.storage.resource(resource)?.export(now);
        (!kind_data.is_empty()).then(|| {
            Body::StoreReq(StoreReq {
                resource: resource.clone(),
                replica_number,
                kind_data,
            })
        })
    }

    /// Sends a replica Store of everything held under `resource` towards
    /// the Resource-ID itself; the peer that answers is responsible for it.
    pub(super) fn migrate(&mut self, now: u64, resource: &ResourceId) {
        if self.replication.migrating.contains(resource) {
            return;
        }
        let Some(body) = self.replica_store(now, resource, 1) else {
            return;
        };
        self.replication.migrating.insert(resource.clone());
        let dest = vec![Destination::Resource(resource.clone())];
        let purpose = Purpose::Migrate {
            resource: resource.clone(),
        };
        self.originate(now, dest, &body, purpose);
    }

    /// §10.4 and §10.7.3: the responsible peer makes sure every replica has
    /// the data; a replica makes sure the responsible peer has it; a peer
    /// that left the replica set hands its data to the responsible peer and
    /// deletes it once that peer has it.
    pub(super) fn rebalance(&mut self, now: u64) {
        self.replication.rebalance_needed = false;
        self.replication.rebalance_soon.clear();
        if self.leaving.is_some() {
            self.recheck_handover(now);
            return;
        }
        if !self.topology.is_joined() {
            return;
        }
        for id in self.storage.resource_ids() {
            self.rebalance_resource(now, &id);
        }
    }

    /// [`Self::rebalance`] for the resources in `rebalance_soon` alone.
    pub(super) fn rebalance_changed(&mut self, now: u64) {
        let changed = std::mem::take(&mut self.replication.rebalance_soon);
        if self.leaving.is_some() {
            // A Store taken during the leave must reach the set too.
            self.recheck_handover(now);
            return;
        }
        if !self.topology.is_joined() {
            return;
        }
        for id in changed {
            if self.storage.resource(&id).is_some() {
                self.rebalance_resource(now, &id);
            }
        }
    }

    pub(super) fn rebalance_resource(&mut self, now: u64, id: &ResourceId) {
        let rid = id.as_bytes();
        let Some(set) = self.topology.replica_set(rid) else {
            // §10.7.3: "there are three predecessors between x and R" — no
            // longer in the replica set, and too far away to name it.
            // Peers that joined in between may never have been handed the
            // data (concurrent joins), and the old set's members may all
            // have moved away too, so the copy is routed to the responsible
            // peer and goes once it took it.
            self.migrate(now, id);
            return;
        };
        // A peer that left the set may have deleted its copy; if it comes
        // back it must be sent the data again.
        if let Some(r) = self.storage.resource_mut(id) {
            r.retain_holders(|h| set.contains(h));
        }
        match self.topology.holding(rid) {
            Holding::Responsible => {
                for m in set.iter().skip(1) {
                    self.push(now, id, *m, false);
                }
            }
            Holding::Replica(_) => {
                if let Some(r) = set.first() {
                    self.push(now, id, *r, false);
                }
            }
            Holding::None => {
                let Some(responsible) = set.first().copied() else {
                    return;
                };
                let handed_over = self.storage.resource(id).is_some_and(|r| r.holds(&responsible));
                if handed_over {
                    self.storage.remove(id);
                } else {
                    self.push(now, id, responsible, false);
                }
            }
        }
    }
}
