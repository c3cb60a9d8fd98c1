//! The TURN server usage, RFC 6940 §9: relay peers say where their TURN
//! server is, and any node finds relays through the overlay.
//!
//! - A relay peer stores a `TurnServer` value (its iteration d and its
//!   TURN address) at each of `turn-density` Resource-IDs, H(its Node-ID
//!   followed by d), d = 1..=density, under TURN-SERVICE (NODE-MULTIPLE:
//!   only the node whose Node-ID hashes there with some d ≤ 20 may write;
//!   d is a 32-bit big-endian integer, decision 0004). Stored for an hour,
//!   again at half of it; a leaving relay writes its values as gone.
//! - A node looking for relays asks the overlay a Find for TURN-SERVICE at
//!   a random Resource-ID (§9: "a random Resource-ID"); the peer
//!   responsible there answers the closest Resource-ID it stores values
//!   of, and a Fetch of that gives the address. An empty answer (0: none
//!   stored there) means another random place, up to [`SEARCH_TRIES`].
//!   Only values whose signature verifies and whose signer may write
//!   there count.

use crate::usage::{Usage, UsageKind};
use overlay::{AccessPolicy, OverlayNode, RequestFailure, RequestId, Security, Topology};
use reload_wire::storage::{DataValue, FetchReq, FindReq, ModelSpecifier, StoredDataSpecifier, StoredDataValue};
use reload_wire::usages::{kind_id, TurnServer};
use reload_wire::{Body, Decode, Encode, IpAddressPort, NodeId, Reader, ResourceId, Writer};
use std::collections::{HashMap, HashSet};

/// The Kind of the usage and its policy (§9).
pub const KINDS: &[UsageKind] = &[UsageKind {
    id: kind_id::TURN_SERVICE,
    name: "TURN-SERVICE",
    access: AccessPolicy::NodeMultiple { max: 20 },
}];

/// How long a relay's values live; stored again at half of it.
pub const ADVERTISEMENT_LIFETIME_S: u32 = 3_600;
/// Random places one search tries before it gives up.
pub const SEARCH_TRIES: u32 = 8;
/// After a failed store, how soon the values are stored again.
const RETRY_MS: u64 = 10_000;

/// What a search request is waiting for.
enum Step {
    Find {
        seed: [u8; 16],
        tries: u32,
    },
    Fetch {
        seed: [u8; 16],
        tries: u32,
        resource: ResourceId,
    },
}

/// Relay advertising and discovery.
#[derive(Default)]
pub struct RelayUsage {
    /// This node's TURN server, when it runs one, and how many places it
    /// is stored at.
    offered: Option<(IpAddressPort, u8)>,
    stores: HashSet<RequestId>,
    next_store: Option<u64>,
    /// The relays found, by TURN address.
    found: Vec<IpAddressPort>,
    searches: HashMap<RequestId, Step>,
}

/// §9: the Resource Name of iteration `d` of `node`'s advertisement.
pub fn resource_name(node: &NodeId, d: u32) -> Vec<u8> {
    let mut name = node.as_bytes().to_vec();
    name.extend_from_slice(&d.to_be_bytes());
    name
}

impl RelayUsage {
    /// From now on this node advertises its TURN server at `address` in
    /// `density` places (the configuration's turn-density; 0: nowhere).
    pub fn offer<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        address: IpAddressPort,
        density: u8,
    ) {
        self.offered = Some((address, density));
        if engine.is_joined() {
            self.store_all(engine, now);
        }
    }

    /// The relays found so far.
    pub fn found(&self) -> &[IpAddressPort] {
        &self.found
    }

    /// Whether a search is under way.
    pub fn searching(&self) -> bool {
        !self.searches.is_empty()
    }

    /// Starts a search at random places: H(`seed` and the try's number),
    /// `seed` from a random source.
    pub fn search<T: Topology, S: Security>(&mut self, engine: &mut OverlayNode<T, S>, now: u64, seed: [u8; 16]) {
        self.find(engine, now, seed, 1);
    }

    fn find<T: Topology, S: Security>(&mut self, engine: &mut OverlayNode<T, S>, now: u64, seed: [u8; 16], tries: u32) {
        let mut name = seed.to_vec();
        name.extend_from_slice(&tries.to_be_bytes());
        let at = engine.resource_id(&name);
        let find = FindReq {
            resource: at.clone(),
            kinds: vec![kind_id::TURN_SERVICE],
        };
        let id = engine.request(now, vec![reload_wire::Destination::Resource(at)], Body::FindReq(find));
        self.searches.insert(id, Step::Find { seed, tries });
    }

    fn store_all<T: Topology, S: Security>(&mut self, engine: &mut OverlayNode<T, S>, now: u64) {
        let Some((address, density)) = self.offered.clone() else {
            return;
        };
        let me = engine.node_id();
        for d in 1..=density {
            let value = TurnServer {
                iteration: d,
                server_address: address.clone(),
            };
            let mut w = Writer::new();
            value.encode(&mut w);
            let Ok(bytes) = w.finish() else { continue };
            let resource = engine.resource_id(&resource_name(&me, u32::from(d)));
            let stored = StoredDataValue::SingleValue(DataValue {
                exists: true,
                value: bytes,
            });
            let id = engine.store(
                now,
                resource,
                kind_id::TURN_SERVICE,
                vec![stored],
                ADVERTISEMENT_LIFETIME_S,
            );
            self.stores.insert(id);
        }
        self.next_store = Some(now + u64::from(ADVERTISEMENT_LIFETIME_S) * 500);
    }
}

impl<T: Topology, S: Security> Usage<T, S> for RelayUsage {
    fn kinds(&self) -> &'static [UsageKind] {
        KINDS
    }

    fn joined(&mut self, engine: &mut OverlayNode<T, S>, now: u64) {
        self.store_all(engine, now);
    }

    fn on_done(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        request: RequestId,
        outcome: &Result<Body, RequestFailure>,
        _responder: NodeId,
    ) -> bool {
        if self.stores.remove(&request) {
            if !matches!(outcome, Ok(Body::StoreAns(_))) {
                self.next_store = Some(now + RETRY_MS);
            }
            return true;
        }
        let Some(step) = self.searches.remove(&request) else {
            return false;
        };
        match (step, outcome) {
            (Step::Find { seed, tries }, Ok(Body::FindAns(answer))) => {
                let closest = answer
                    .results
                    .iter()
                    .find(|r| r.kind == kind_id::TURN_SERVICE)
                    .map(|r| r.closest.clone())
                    .filter(|c| c.as_bytes().iter().any(|b| *b != 0));
                match closest {
                    Some(resource) => {
                        let fetch = FetchReq {
                            resource: resource.clone(),
                            specifiers: vec![StoredDataSpecifier {
                                kind: kind_id::TURN_SERVICE,
                                generation: 0,
                                model_specifier: ModelSpecifier::SingleValue,
                            }],
                        };
                        let id = engine.fetch(now, fetch);
                        self.searches.insert(id, Step::Fetch { seed, tries, resource });
                    }
                    None => self.again(engine, now, seed, tries),
                }
            }
            (Step::Fetch { seed, tries, resource }, Ok(Body::FetchAns(answer))) => {
                let mut answer = answer.clone();
                engine.keep_verified(&resource, &mut answer);
                let addresses: Vec<IpAddressPort> = answer
                    .kind_responses
                    .iter()
                    .flat_map(|k| &k.values)
                    .filter_map(|v| match &v.value {
                        StoredDataValue::SingleValue(DataValue { exists: true, value }) => {
                            TurnServer::decode(&mut Reader::new(value, engine.decode_context())).ok()
                        }
                        _ => None,
                    })
                    .map(|t| t.server_address)
                    .collect();
                if addresses.is_empty() {
                    self.again(engine, now, seed, tries);
                }
                for address in addresses {
                    if !self.found.contains(&address) {
                        self.found.push(address);
                    }
                }
            }
            (Step::Find { seed, tries } | Step::Fetch { seed, tries, .. }, _) => self.again(engine, now, seed, tries),
        }
        true
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.offered.as_ref().and(self.next_store)
    }

    fn handle_timeout(&mut self, engine: &mut OverlayNode<T, S>, now: u64) {
        if self.next_store.is_some_and(|t| t <= now) && engine.is_joined() {
            self.store_all(engine, now);
        }
    }

    /// A relay that leaves writes its values as gone (§7.2.1's exists =
    /// false), so nobody is sent to a relay that is not there.
    fn withdraw(&mut self, engine: &mut OverlayNode<T, S>, now: u64) -> Vec<RequestId> {
        let Some((_, density)) = self.offered.take() else {
            return Vec::new();
        };
        let me = engine.node_id();
        (1..=density)
            .map(|d| {
                let resource = engine.resource_id(&resource_name(&me, u32::from(d)));
                let gone = StoredDataValue::SingleValue(DataValue {
                    exists: false,
                    value: Vec::new(),
                });
                engine.store(
                    now,
                    resource,
                    kind_id::TURN_SERVICE,
                    vec![gone],
                    ADVERTISEMENT_LIFETIME_S,
                )
            })
            .collect()
    }
}

impl RelayUsage {
    /// The next random place, unless the search has tried enough.
    fn again<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        seed: [u8; 16],
        tries: u32,
    ) {
        if tries < SEARCH_TRIES {
            self.find(engine, now, seed, tries + 1);
        }
    }
}
