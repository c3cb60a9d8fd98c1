//! Finding where a user's phones are — RFC 7904 §4.2, sans-IO: Fetch the
//! user's SIP-REGISTRATION, keep only what verifies, ask the replicas when
//! the responsible peer has nothing usable, then AppAttach (RFC 6940
//! §6.5.2) to each peer a route names, for the address its SIP takes
//! connections on. AppAttach answers are kept for a while, so later calls
//! to the same peer skip it (and reuse the SIP connection already open to
//! that address). With no registration anywhere, the user's certificate
//! (RFC 6940 §8) tells an enrolled user with no phone from a name nobody
//! enrolled.
//!
//! Once one AppAttach answered, the others get [`FORK_GRACE_MS`] more: a
//! registration of a peer that crashed stays in the overlay until it
//! expires, and an AppAttach to a Node-ID nobody holds is dropped
//! silently (RFC 6940 §6.1.1), so waiting for it would hold every call to
//! that user for a whole transaction timeout (decision 0028).
//!
//! The driver starts a lookup with a token of its choosing, hands every
//! finished request of the engine to [`Locator::on_done`], calls
//! [`Locator::handle_timeout`] at [`Locator::poll_timeout`], and takes the
//! outcomes from [`Locator::poll_located`]. The daemon and the simulator
//! run this same code.

use super::{app_address, fetch_registrations, Target, SIPS_APPLICATION};
use overlay::Security;
use overlay::{OverlayNode, RequestId};
use overlay::{RequestFailure, Topology};
use reload_wire::storage::{ArrayRange, ModelSpecifier, StoredDataSpecifier, StoredDataValue};
use reload_wire::usages::kind_id;
use reload_wire::{Body, Destination, FetchReq, IpAddressPort, NodeId, ResourceId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

/// How long an AppAttach answer is reused.
pub const ATTACH_REUSE_MS: u64 = 10 * 60 * 1000;

/// Replicas asked after the responsible peer (Chord-reload keeps two,
/// RFC 6940 §10.4).
pub const REPLICAS_ASKED: u8 = 2;

/// How long the other AppAttaches of a lookup may still answer once one
/// has: a live peer answers within a few overlay round trips of the
/// first, a crashed one never.
pub const FORK_GRACE_MS: u64 = 2_000;

/// Where a user's phones are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// The other peers holding the user's phones and where their SIP
    /// listens (from their AppAttach answers); `here` when this peer holds
    /// some.
    Found { peers: Vec<SipPeer>, here: bool },
    /// No registration, and no certificate either: nobody by that name is
    /// enrolled.
    NotFound,
    /// The user is enrolled (its certificate is in the overlay) but no
    /// phone of theirs is registered.
    NoPhone,
    /// A registration exists but no peer holding it answered, or the
    /// overlay did not answer.
    Unreachable(String),
}

/// A peer holding some of a user's phones, and the address its own
/// AppAttach answer gave for its SIP. The connection a driver opens there
/// must present this Node-ID (decision 0027): whoever else listens at the
/// address now is not the peer the registration names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipPeer {
    pub node: NodeId,
    pub address: SocketAddr,
}

/// What the locator did, for a driver's logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocatorStats {
    /// Fetched registration values that did not verify (forged, or signed
    /// by a user the access policy does not allow), ignored.
    pub unverified_values: u64,
    /// Fetches sent to a replica after the responsible peer had nothing
    /// usable (RFC 7904 §4.2).
    pub replicas_asked: u64,
    /// AppAttaches saved by a remembered answer.
    pub attaches_reused: u64,
    /// Lookups that ended with AppAttaches unanswered after
    /// [`FORK_GRACE_MS`] (stale registrations of peers that are gone).
    pub attaches_given_up: u64,
}

/// RFC 7904 §4.2: after a Fetch answered by `responder` held no value
/// that verifies (the data is missing there, or forged), the holder whose
/// next replica to ask; `None` once `asked` replicas were, or when nobody
/// answered at all (a timeout names no responder). An unregistered user
/// costs the two extra Fetches too: an empty answer cannot tell "never
/// registered" from "not yet handed over". A verified removal (exists =
/// false) is an answer: a replica that has not seen it yet must not bring
/// the registration back.
fn ask_replica_after(verified_values: usize, answered: bool, asked: u8, responder: NodeId) -> Option<NodeId> {
    (verified_values == 0 && answered && asked < REPLICAS_ASKED).then_some(responder)
}

struct Locating {
    token: u64,
    waiting: usize,
    /// When the lookup ends whatever is still unanswered: set by the
    /// first AppAttach answer.
    grace_until: Option<u64>,
    peers: Vec<SipPeer>,
    here: bool,
    failures: Vec<String>,
    /// For a lookup of given peers: the order their answers are given in.
    order: Option<Vec<NodeId>>,
}

impl Locating {
    fn new(token: u64, order: Option<Vec<NodeId>>) -> Self {
        Locating {
            token,
            waiting: 0,
            grace_until: None,
            peers: Vec::new(),
            here: false,
            failures: Vec::new(),
            order,
        }
    }
}

/// A Fetch of a user's registration in flight.
struct Fetching {
    locate: u64,
    name: String,
    resource: ResourceId,
    /// Replicas asked before this Fetch.
    asked: u8,
}

/// Lookups of users' phones through the overlay.
#[derive(Default)]
pub struct Locator {
    next: u64,
    locating: BTreeMap<u64, Locating>,
    fetches: BTreeMap<RequestId, Fetching>,
    attaches: BTreeMap<RequestId, (u64, NodeId)>,
    /// Fetches of a user's certificate after no registration was found:
    /// the locate they finish and the user's resource.
    certificates: BTreeMap<RequestId, (u64, ResourceId)>,
    /// Where peers' SIP listens, from their AppAttach answers, until when.
    known: BTreeMap<NodeId, (SocketAddr, u64)>,
    /// The lookups' grace deadlines, soonest first: (when, lookup).
    graces: BTreeSet<(u64, u64)>,
    located: VecDeque<(u64, Located)>,
    stats: LocatorStats,
}

impl Locator {
    /// Looks up `resource_name` (RFC 7904 §3: the AOR without its scheme);
    /// its outcome comes out of [`poll_located`](Self::poll_located) with
    /// `token`.
    pub fn start<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        resource_name: String,
        token: u64,
    ) {
        self.next += 1;
        let id = self.next;
        let resource = engine.resource_id(resource_name.as_bytes());
        let request = engine.fetch(now, fetch_registrations(resource.clone()));
        self.fetches.insert(
            request,
            Fetching {
                locate: id,
                name: resource_name,
                resource,
                asked: 0,
            },
        );
        self.locating.insert(id, Locating::new(token, None));
    }

    /// Finds where `peers`' SIP listens (AppAttach, or a remembered
    /// answer): its outcome comes out of [`poll_located`](Self::poll_located)
    /// with `token`, as [`Located::Found`] with the peers that answered in
    /// the order given, or [`Located::Unreachable`] when none did. Once one
    /// answered, the others get [`FORK_GRACE_MS`], as a user's lookup's do.
    pub fn start_peers<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        peers: &[NodeId],
        token: u64,
    ) {
        self.next += 1;
        let id = self.next;
        self.locating.insert(id, Locating::new(token, Some(peers.to_vec())));
        let me = engine.node_id();
        let others = peers.iter().copied().filter(|p| *p != me).collect();
        self.attach_to(engine, now, id, others);
    }

    /// A finished lookup: its token and outcome.
    pub fn poll_located(&mut self) -> Option<(u64, Located)> {
        self.located.pop_front()
    }

    pub fn stats(&self) -> &LocatorStats {
        &self.stats
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    /// Asked after every event a peer handles, so it reads one entry.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.graces.first().map(|(at, _)| *at)
    }

    /// Ends the lookups whose grace is over with what they found.
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some(&(at, id)) = self.graces.first() {
            if at > now {
                break;
            }
            self.graces.pop_first();
            self.stats.attaches_given_up += 1;
            self.complete(id);
        }
    }

    /// Lookups under way.
    pub fn in_progress(&self) -> usize {
        self.locating.len()
    }

    /// Takes the outcome of a request this locator started; `false` when
    /// the request is not one of its.
    pub fn on_done<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        request: RequestId,
        outcome: &Result<Body, RequestFailure>,
        responder: NodeId,
    ) -> bool {
        if let Some(fetching) = self.fetches.remove(&request) {
            let answered = match outcome {
                Ok(_) => true,
                // An Error answer names the peer that sent it.
                Err(RequestFailure::Error(_)) => responder != engine.node_id(),
                Err(_) => false,
            };
            let (usable, verified) = self.fetched(engine, now, &fetching, outcome);
            if let Some(holder) = ask_replica_after(verified, answered, fetching.asked, responder) {
                let fetch = fetch_registrations(fetching.resource.clone());
                if let Some(next) = engine.fetch_after(now, fetch, &holder) {
                    self.stats.replicas_asked += 1;
                    self.fetches.insert(
                        next,
                        Fetching {
                            asked: fetching.asked + 1,
                            ..fetching
                        },
                    );
                    return true;
                }
            }
            self.settle(engine, now, usable, outcome, &fetching);
            return true;
        }
        if let Some((id, resource)) = self.certificates.remove(&request) {
            let located = match outcome {
                Ok(Body::FetchAns(answer)) => {
                    let mut answer = answer.clone();
                    engine.keep_verified(&resource, &mut answer);
                    let enrolled = answer
                        .kind_responses
                        .iter()
                        .flat_map(|k| &k.values)
                        .any(|v| matches!(&v.value, StoredDataValue::Array(e) if e.value.exists));
                    if enrolled {
                        Located::NoPhone
                    } else {
                        Located::NotFound
                    }
                }
                // No answer about the user (a ring healing, say): not
                // "nobody by that name", which a phone takes as final.
                Ok(_) => Located::Unreachable("unexpected answer to the certificate Fetch".into()),
                Err(e) => Located::Unreachable(format!("the certificate Fetch: {e}")),
            };
            self.finish(id, located);
            return true;
        }
        if let Some((id, peer)) = self.attaches.remove(&request) {
            let address = match outcome {
                // Only the peer asked may say where its SIP is.
                Ok(Body::AppAttachAns(ans)) if responder == peer => app_address(ans).and_then(socket),
                Ok(_) => None,
                Err(e) => {
                    self.failed(id, format!("AppAttach to {}: {e}", peer.to_hex()));
                    None
                }
            };
            if let Some(address) = address {
                self.known.insert(peer, (address, now + ATTACH_REUSE_MS));
                if let Some(l) = self.locating.get_mut(&id) {
                    l.peers.push(SipPeer { node: peer, address });
                    if l.grace_until.is_none() {
                        l.grace_until = Some(now + FORK_GRACE_MS);
                        self.graces.insert((now + FORK_GRACE_MS, id));
                    }
                }
            }
            self.attached(id);
            return true;
        }
        false
    }

    /// Forgets every peer whose AppAttach answer named `address`: the next
    /// call to its users asks it again (a peer restarted on a new port).
    pub fn forget(&mut self, address: SocketAddr) {
        self.known.retain(|_, (known, _)| *known != address);
    }

    /// Takes a Fetch answer: the routes that verify are attached to or
    /// used. Returns how many there were (0: nothing usable here) and how
    /// many values verified, removals included.
    fn fetched<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        fetching: &Fetching,
        outcome: &Result<Body, RequestFailure>,
    ) -> (usize, usize) {
        let Ok(Body::FetchAns(answer)) = outcome else {
            return (0, 0);
        };
        let mut answer = answer.clone();
        self.stats.unverified_values += engine.keep_verified(&fetching.resource, &mut answer) as u64;
        let verified = answer.kind_responses.iter().map(|k| k.values.len()).sum();
        let me = engine.node_id();
        let Some(locating) = self.locating.get_mut(&fetching.locate) else {
            return (0, verified);
        };
        let mut others = Vec::new();
        let mut usable = 0;
        for target in super::targets(&answer) {
            // §4.2: the last entry of a route is the peer holding the phone.
            // A URI target (a redirection to another AOR) is not followed yet.
            let Target::Route(route) = target else { continue };
            let Some(Destination::Node(peer)) = route.last() else {
                continue;
            };
            usable += 1;
            if *peer == me {
                locating.here = true;
            } else {
                others.push(*peer);
            }
        }
        if usable == 0 {
            return (0, verified);
        }
        self.attach_to(engine, now, fetching.locate, others);
        (usable, verified)
    }

    /// Lookup `id` needs where `peers`' SIP listens (RFC 6940 §6.5.2):
    /// remembered answers are taken, the others asked by AppAttach. Once
    /// something is found the rest get [`FORK_GRACE_MS`]; with nothing
    /// left to ask the lookup ends at once.
    fn attach_to<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        id: u64,
        peers: Vec<NodeId>,
    ) {
        self.known.retain(|_, (_, until)| *until > now);
        let Some(locating) = self.locating.get_mut(&id) else {
            return;
        };
        let mut attach = Vec::new();
        for peer in peers {
            if let Some((address, _)) = self.known.get(&peer) {
                self.stats.attaches_reused += 1;
                locating.peers.push(SipPeer {
                    node: peer,
                    address: *address,
                });
            } else if !attach.contains(&peer) {
                attach.push(peer);
            }
        }
        locating.waiting = attach.len();
        if locating.here || !locating.peers.is_empty() {
            // Found already (here, or through a remembered answer).
            locating.grace_until = Some(now + FORK_GRACE_MS);
            self.graces.insert((now + FORK_GRACE_MS, id));
        }
        for peer in attach {
            let request = engine.app_attach(now, peer, SIPS_APPLICATION);
            self.attaches.insert(request, (id, peer));
        }
        if self.locating.get(&id).is_some_and(|l| l.waiting == 0) {
            self.complete(id);
        }
    }

    /// Ends a locate whose last Fetch gave nothing usable and that asks no
    /// further replica: an answer with no registration leads to the
    /// certificate Fetch; no answer at all to Unreachable.
    fn settle<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        usable: usize,
        outcome: &Result<Body, RequestFailure>,
        fetching: &Fetching,
    ) {
        if usable > 0 {
            return;
        }
        let located = match outcome {
            Ok(Body::FetchAns(_)) => {
                let fetch = FetchReq {
                    resource: fetching.resource.clone(),
                    specifiers: vec![StoredDataSpecifier {
                        kind: kind_id::CERTIFICATE_BY_USER,
                        generation: 0,
                        model_specifier: ModelSpecifier::Array(vec![ArrayRange {
                            first: 0,
                            last: u32::MAX,
                        }]),
                    }],
                };
                let request = engine.fetch(now, fetch);
                self.certificates
                    .insert(request, (fetching.locate, fetching.resource.clone()));
                return;
            }
            Ok(_) => Located::Unreachable("unexpected answer to Fetch".into()),
            Err(e) => Located::Unreachable(format!("Fetch of {}: {e}", fetching.name)),
        };
        self.finish(fetching.locate, located);
    }

    fn failed(&mut self, id: u64, why: String) {
        if let Some(l) = self.locating.get_mut(&id) {
            l.failures.push(why);
        }
    }

    fn attached(&mut self, id: u64) {
        let Some(l) = self.locating.get_mut(&id) else {
            return;
        };
        l.waiting = l.waiting.saturating_sub(1);
        if l.waiting == 0 {
            self.complete(id);
        }
    }

    fn complete(&mut self, id: u64) {
        let Some(l) = self.locating.get(&id) else {
            return;
        };
        let located = if l.peers.is_empty() && !l.here {
            Located::Unreachable(l.failures.join("; "))
        } else {
            let mut peers = l.peers.clone();
            if let Some(order) = &l.order {
                peers.sort_by_key(|p| order.iter().position(|o| *o == p.node));
            }
            Located::Found { peers, here: l.here }
        };
        self.finish(id, located);
    }

    fn finish(&mut self, id: u64, located: Located) {
        if let Some(l) = self.locating.remove(&id) {
            if let Some(at) = l.grace_until {
                self.graces.remove(&(at, id));
            }
            self.located.push_back((l.token, located));
        }
    }
}

fn socket(address: IpAddressPort) -> Option<SocketAddr> {
    match address {
        IpAddressPort::Ip(a) => Some(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7904 §4.2: nothing verified from an answering peer means the
    /// next replica is asked, twice at most; a value that verifies (a
    /// route, or a removal), or a Fetch nobody answered, ends the search.
    #[test]
    fn a_replica_is_asked_after_an_answer_with_nothing_verified_and_two_at_most() {
        let responder = NodeId::from_u128(7);
        assert_eq!(ask_replica_after(0, true, 0, responder), Some(responder));
        assert_eq!(ask_replica_after(0, true, 1, responder), Some(responder));
        assert_eq!(ask_replica_after(0, true, 2, responder), None, "both replicas asked");
        assert_eq!(ask_replica_after(1, true, 0, responder), None, "a verified value");
        assert_eq!(ask_replica_after(0, false, 0, responder), None, "no answer to go past");
    }

    #[test]
    fn an_unreachable_address_is_forgotten_and_the_others_kept() {
        let mut locator = Locator::default();
        let (old, other): (SocketAddr, SocketAddr) =
            ("127.0.0.1:5070".parse().unwrap(), "127.0.0.2:5070".parse().unwrap());
        locator.known.insert(NodeId::from_u128(1), (old, u64::MAX));
        locator.known.insert(NodeId::from_u128(2), (other, u64::MAX));
        locator.forget(old);
        assert!(!locator.known.contains_key(&NodeId::from_u128(1)));
        assert_eq!(locator.known.get(&NodeId::from_u128(2)).map(|k| k.0), Some(other));
    }
}
