//! Finding where a user's phones are — RFC 7904 §4.2, run by the engine
//! task: Fetch the user's SIP-REGISTRATION, keep only what verifies,
//! then AppAttach (RFC 6940 §6.5.2) to each peer a route names, for the
//! address its SIP takes connections on. Answers of AppAttach are kept
//! for a while, so later calls to the same peer skip it and reuse the
//! SIP connection already open to that address.

use overlay::sip_usage::{self, Target};
use overlay::{OverlayNode, RequestFailure, RequestId, Security, Topology};
use reload_wire::{Body, Destination, IpAddressPort, NodeId, ResourceId};
use sip::proxy::Location;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// How long an AppAttach answer is reused.
const ATTACH_REUSE_MS: u64 = 10 * 60 * 1000;

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
    fetches: HashMap<RequestId, (u64, String, ResourceId)>,
    attaches: HashMap<RequestId, (u64, NodeId)>,
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
        self.fetches.insert(request, (id, resource_name, resource));
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
        if let Some((id, resource_name, resource)) = self.fetches.remove(&request) {
            self.fetched(engine, now, id, (&resource_name, &resource), outcome);
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

    fn fetched<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        id: u64,
        (resource_name, resource): (&str, &ResourceId),
        outcome: &Result<Body, RequestFailure>,
    ) {
        let mut answer = match outcome {
            Ok(Body::FetchAns(ans)) => ans.clone(),
            Ok(_) => return self.finish(id, Location::Unreachable("unexpected answer to Fetch".into())),
            Err(e) => return self.finish(id, Location::Unreachable(format!("Fetch of {resource_name}: {e}"))),
        };
        let dropped = engine.keep_verified(resource, &mut answer);
        if dropped > 0 {
            tracing::warn!("sip: {dropped} values of {resource_name}'s registration did not verify; ignored");
        }
        let me = engine.node_id();
        self.known.retain(|_, (_, until)| *until > now);
        let mut attach = Vec::new();
        let Some(locating) = self.locating.get_mut(&id) else {
            return;
        };
        for target in sip_usage::targets(&answer) {
            // §4.2: the last entry of a route is the peer holding the phone.
            // A URI target (a redirection to another AOR) is not followed yet.
            let Target::Route(route) = target else { continue };
            let Some(Destination::Node(peer)) = route.last() else {
                continue;
            };
            if *peer == me {
                locating.here = true;
            } else if let Some((address, _)) = self.known.get(peer) {
                locating.peers.push(*address);
            } else {
                attach.push(*peer);
            }
        }
        if !locating.here && locating.peers.is_empty() && attach.is_empty() {
            return self.finish(id, Location::NotFound);
        }
        locating.waiting = attach.len();
        for peer in attach {
            let request = engine.app_attach(now, peer, sip_usage::SIP_APPLICATION);
            self.attaches.insert(request, (id, peer));
        }
        if self.locating.get(&id).is_some_and(|l| l.waiting == 0) {
            self.complete(id);
        }
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
