//! Finding where a user's phones are — RFC 7904 §4.2, run by the engine
//! task: Fetch the user's SIP-REGISTRATION, keep only what verifies,
//! then AppAttach (RFC 6940 §6.5.2) to each peer a route names, for the
//! address its SIP takes connections on. Answers of AppAttach are kept
//! for a while, so later calls to the same peer skip it and reuse the
//! SIP connection already open to that address.

use overlay::sip_usage::{self, Target};
use overlay::{OverlayNode, RequestFailure, RequestId, Security, Topology};
use reload_wire::storage::{ArrayRange, ModelSpecifier, StoredDataSpecifier, StoredDataValue};
use reload_wire::usages::kind_id;
use reload_wire::{Body, Destination, IpAddressPort, NodeId, ResourceId};
use sip::proxy::Location;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// How long an AppAttach answer is reused.
const ATTACH_REUSE_MS: u64 = 10 * 60 * 1000;

/// Replicas asked after the responsible peer (Chord-reload keeps two,
/// RFC 6940 §10.4).
const REPLICAS_ASKED: u8 = 2;

/// RFC 7904 §4.2: after a Fetch answered by `responder` gave no route
/// that verifies (the data is missing there, or forged), the holder whose
/// next replica to ask; `None` once `asked` replicas were, or when nobody
/// answered at all (a timeout names no responder). An unregistered user
/// costs the two extra Fetches too: an empty answer cannot tell "never
/// registered" from "not yet handed over".
fn ask_replica_after(usable_routes: usize, answered: bool, asked: u8, responder: NodeId) -> Option<NodeId> {
    (usable_routes == 0 && answered && asked < REPLICAS_ASKED).then_some(responder)
}

struct Locating {
    reply: oneshot::Sender<Location>,
    waiting: usize,
    peers: Vec<SocketAddr>,
    here: bool,
    failures: Vec<String>,
}

#[derive(Default)]
pub(crate) struct SipLocator {
    next: u64,
    locating: HashMap<u64, Locating>,
    /// Fetches in flight: the locate they serve, the name and Resource-ID,
    /// and how many replicas were asked before this one.
    fetches: HashMap<RequestId, (u64, String, ResourceId, u8)>,
    attaches: HashMap<RequestId, (u64, NodeId)>,
    /// Fetches of a user's certificate after no registration was found:
    /// the locate they finish and the user's resource.
    certificates: HashMap<RequestId, (u64, ResourceId)>,
    /// Where peers' SIP listens, from their AppAttach answers.
    known: HashMap<NodeId, (SocketAddr, u64)>,
}

impl SipLocator {
    pub fn start<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        resource_name: String,
        reply: oneshot::Sender<Location>,
    ) {
        self.next += 1;
        let id = self.next;
        let resource = engine.resource_id(resource_name.as_bytes());
        let request = engine.fetch(now, sip_usage::fetch_registrations(resource.clone()));
        self.fetches.insert(request, (id, resource_name, resource, 0));
        self.locating.insert(
            id,
            Locating {
                reply,
                waiting: 0,
                peers: Vec::new(),
                here: false,
                failures: Vec::new(),
            },
        );
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
        if let Some((id, resource_name, resource, asked)) = self.fetches.remove(&request) {
            let answered = match outcome {
                Ok(_) => true,
                // An Error answer names the peer that sent it.
                Err(RequestFailure::Error(_)) => responder != engine.node_id(),
                Err(_) => false,
            };
            let usable = self.fetched(engine, now, id, (&resource_name, &resource), outcome);
            if let Some(holder) = ask_replica_after(usable, answered, asked, responder) {
                let fetch = sip_usage::fetch_registrations(resource.clone());
                if let Some(next) = engine.fetch_after(now, fetch, &holder) {
                    tracing::debug!(
                        "sip: {resource_name} not usable at {}; asking the next replica",
                        holder.to_hex()
                    );
                    self.fetches.insert(next, (id, resource_name, resource, asked + 1));
                    return true;
                }
            }
            self.settle(engine, now, id, usable, outcome, (&resource_name, &resource));
            return true;
        }
        if let Some((id, resource)) = self.certificates.remove(&request) {
            let location = match outcome {
                Ok(Body::FetchAns(answer)) => {
                    let mut answer = answer.clone();
                    engine.keep_verified(&resource, &mut answer);
                    let enrolled = answer
                        .kind_responses
                        .iter()
                        .flat_map(|k| &k.values)
                        .any(|v| matches!(&v.value, StoredDataValue::Array(e) if e.value.exists));
                    if enrolled {
                        Location::NoPhone
                    } else {
                        Location::NotFound
                    }
                }
                // No answer about the user (a ring healing, say): not
                // "nobody by that name", which a phone takes as final.
                Ok(_) => Location::Unreachable("unexpected answer to the certificate Fetch".into()),
                Err(e) => Location::Unreachable(format!("the certificate Fetch: {e}")),
            };
            self.finish(id, location);
            return true;
        }
        if let Some((id, peer)) = self.attaches.remove(&request) {
            let address = match outcome {
                Ok(Body::AppAttachAns(ans)) if responder == peer => sip_usage::app_address(ans).and_then(socket),
                Ok(_) => None,
                Err(e) => {
                    self.failed(id, format!("AppAttach to {}: {e}", peer.to_hex()));
                    None
                }
            };
            if let Some(address) = address {
                self.known.insert(peer, (address, now + ATTACH_REUSE_MS));
                if let Some(l) = self.locating.get_mut(&id) {
                    l.peers.push(address);
                }
            }
            self.attached(id);
            return true;
        }
        false
    }

    /// Forgets every peer whose AppAttach answer named `address`: the next
    /// call to its users asks it again.
    pub fn forget(&mut self, address: SocketAddr) {
        self.known.retain(|_, (known, _)| *known != address);
    }

    /// Takes a Fetch answer: the routes that verify are attached to or
    /// used; returns how many there were (0: nothing usable here).
    fn fetched<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        id: u64,
        (resource_name, resource): (&str, &ResourceId),
        outcome: &Result<Body, RequestFailure>,
    ) -> usize {
        let Ok(Body::FetchAns(answer)) = outcome else {
            return 0;
        };
        let mut answer = answer.clone();
        let dropped = engine.keep_verified(resource, &mut answer);
        if dropped > 0 {
            tracing::warn!("sip: {dropped} values of {resource_name}'s registration did not verify; ignored");
        }
        let me = engine.node_id();
        self.known.retain(|_, (_, until)| *until > now);
        let mut attach = Vec::new();
        let Some(locating) = self.locating.get_mut(&id) else {
            return 0;
        };
        let mut usable = 0;
        for target in sip_usage::targets(&answer) {
            // §4.2: the last entry of a route is the peer holding the phone.
            // A URI target (a redirection to another AOR) is not followed yet.
            let Target::Route(route) = target else { continue };
            let Some(Destination::Node(peer)) = route.last() else {
                continue;
            };
            usable += 1;
            if *peer == me {
                locating.here = true;
            } else if let Some((address, _)) = self.known.get(peer) {
                locating.peers.push(*address);
            } else {
                attach.push(*peer);
            }
        }
        if usable == 0 {
            return 0;
        }
        locating.waiting = attach.len();
        for peer in attach {
            let request = engine.app_attach(now, peer, sip_usage::SIPS_APPLICATION);
            self.attaches.insert(request, (id, peer));
        }
        if self.locating.get(&id).is_some_and(|l| l.waiting == 0) {
            self.complete(id);
        }
        usable
    }

    /// Ends a locate whose last Fetch gave nothing usable and that asks no
    /// further replica. With no registration anywhere, the user's
    /// certificate (RFC 6940 §8, CERTIFICATE_BY_USER at the same
    /// Resource-ID) tells an enrolled user with no phone (480) from a name
    /// nobody enrolled (404).
    fn settle<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        id: u64,
        usable: usize,
        outcome: &Result<Body, RequestFailure>,
        (resource_name, resource): (&str, &ResourceId),
    ) {
        if usable > 0 {
            return;
        }
        let location = match outcome {
            Ok(Body::FetchAns(_)) => {
                let fetch = reload_wire::FetchReq {
                    resource: resource.clone(),
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
                self.certificates.insert(request, (id, resource.clone()));
                return;
            }
            Ok(_) => Location::Unreachable("unexpected answer to Fetch".into()),
            Err(e) => Location::Unreachable(format!("Fetch of {resource_name}: {e}")),
        };
        self.finish(id, location);
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
        let location = if l.peers.is_empty() && !l.here {
            Location::Unreachable(l.failures.join("; "))
        } else {
            Location::Found {
                peers: l.peers.clone(),
                here: l.here,
            }
        };
        self.finish(id, location);
    }

    fn finish(&mut self, id: u64, location: Location) {
        if let Some(l) = self.locating.remove(&id) {
            let _ = l.reply.send(location);
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

    /// RFC 7904 §4.2: nothing usable from an answering peer means the
    /// next replica is asked, twice at most; a route that verifies, or a
    /// Fetch nobody answered, ends the search.
    #[test]
    fn a_replica_is_asked_after_an_answer_with_nothing_usable_and_two_at_most() {
        let responder = NodeId::from_u128(7);
        assert_eq!(ask_replica_after(0, true, 0, responder), Some(responder));
        assert_eq!(ask_replica_after(0, true, 1, responder), Some(responder));
        assert_eq!(ask_replica_after(0, true, 2, responder), None, "both replicas asked");
        assert_eq!(ask_replica_after(1, true, 0, responder), None, "a usable route");
        assert_eq!(ask_replica_after(0, false, 0, responder), None, "no answer to go past");
    }

    #[test]
    fn an_unreachable_address_is_forgotten_and_the_others_kept() {
        let mut locator = SipLocator::default();
        let (old, other): (SocketAddr, SocketAddr) =
            ("127.0.0.1:5070".parse().unwrap(), "127.0.0.2:5070".parse().unwrap());
        locator.known.insert(NodeId::from_u128(1), (old, u64::MAX));
        locator.known.insert(NodeId::from_u128(2), (other, u64::MAX));
        locator.forget(old);
        assert!(!locator.known.contains_key(&NodeId::from_u128(1)));
        assert_eq!(locator.known.get(&NodeId::from_u128(2)).map(|k| k.0), Some(other));
    }
}
