//! Proof that a request inside a dialog belongs to a dialog this peer is
//! part of (RFC 3261 §16.4, §16.12).
//!
//! A request with a To tag and a Route set would otherwise be forwarded
//! wherever its Route or Request-URI points: anyone could make the peer
//! an open relay, or ring a user's phone, by making up a To tag. The peer
//! keeps no dialog state; instead each Record-Route entry it writes on an
//! initial request carries a `dlg` URI parameter (§16.6 step 4 lets a
//! proxy put what it likes in its own Record-Route URI): two keyed hashes
//! of the Call-ID with each of the two flows later requests of the
//! dialog may leave this peer over: back toward the caller (the request's
//! top Record-Route as received, else its Contact, over the flow its phone
//! registered from when it is a phone of this peer) and on toward the
//! callee (the branch's target). A phone whose flow changes mid-call (it
//! registers again from another port) is reached only through a request
//! its user authenticates. A request inside a dialog is forwarded only to
//! a next hop one of those hashes names, for its Call-ID. Forging one
//! needs the peer's secret; replaying one reaches only the two ends of
//! the dialog it came from. A phone's request that carries no proof may
//! still go on if its user authenticates.

use super::route::uri_flow;
use crate::headers::NameAddr;
use crate::message::SipMessage;
use crate::registrar::{Flow, Registrar};
use crate::uri::Uri;
use sha2::{Digest as _, Sha256};

/// The Record-Route URI parameter carrying the proof.
pub const PARAM: &str = "dlg";
/// Hex digits of each keyed hash: 64 bits.
const MAC_HEX: usize = 16;
/// Most places one proof names.
const MAX_HOPS: usize = 4;

/// A place a request of the dialog may go from this peer: a flow, or a
/// user of this peer, whichever of its phones' flows is live then (a
/// phone may reconnect or register again from another port mid-call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    Flow(Flow),
    User(String),
}

/// The peer's secret for dialog proofs.
#[derive(Clone)]
pub struct DialogKey([u8; 32]);

impl DialogKey {
    pub fn new(secret: [u8; 32]) -> Self {
        DialogKey(secret)
    }

    /// For tests and the simulator: a key from a seed.
    pub fn from_seed(seed: u64) -> Self {
        let mut h = Sha256::new();
        h.update(b"p2psip dialog key");
        h.update(seed.to_be_bytes());
        DialogKey(h.finalize().into())
    }

    /// A key of its own for another kind of proof (Path entries): derived
    /// from this one, so no proof of one kind passes for the other.
    pub fn derived(&self, purpose: &[u8]) -> DialogKey {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(purpose);
        DialogKey(h.finalize().into())
    }

    fn mac(&self, call_id: &str, hop: &Hop) -> String {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(Sha256::digest(call_id.as_bytes()));
        match hop {
            Hop::Flow(f) => {
                h.update(b"flow ");
                h.update(f.transport.name().as_bytes());
                h.update(f.remote.to_string().as_bytes());
            }
            Hop::User(u) => {
                h.update(b"user ");
                h.update(u.as_bytes());
            }
        }
        let digest = h.finalize();
        digest[..MAC_HEX / 2].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The `dlg` value for a dialog whose later requests may go to any
    /// of `hops` (at most four are named).
    pub fn proof(&self, call_id: &str, hops: &[Hop]) -> String {
        hops.iter().take(MAX_HOPS).map(|h| self.mac(call_id, h)).collect()
    }

    /// Whether one of `proofs` (the `dlg` values of this peer's own Route
    /// entries) allows a request of `call_id` to go to a next hop that is
    /// any of `next` (its flow, and its user when it is a phone of ours).
    pub fn admits(&self, proofs: &[String], call_id: &str, next: &[Hop]) -> bool {
        let macs: Vec<String> = next.iter().map(|h| self.mac(call_id, h)).collect();
        proofs
            .iter()
            .filter(|p| p.is_ascii() && p.len() % MAC_HEX == 0)
            .any(|p| {
                p.as_bytes()
                    .chunks(MAC_HEX)
                    .any(|chunk| macs.iter().any(|m| constant_time_eq(chunk, m.as_bytes())))
            })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where later requests of the dialog that `request` (an initial request
/// as it arrived over `from`) starts go from this peer toward the caller,
/// resolved as [`super::dialog_next_hop`] will: the top Record-Route so
/// far, else the Contact (over the flow the caller's phone registered
/// from, when it is one of ours). Both are the sender's words, and the
/// port between peers takes requests from anyone: a place is trusted
/// only where the request came from (a Record-Route or Contact at the
/// sending address, or a binding registered over `from`), so nobody can
/// write a proof for a third party's address. `caller` is the user this
/// peer authenticated the request as.
pub fn toward_caller(
    request: &SipMessage,
    from: Flow,
    caller: Option<&str>,
    registrar: &Registrar,
    now: u64,
) -> Vec<Hop> {
    let sender = |f: &Flow| f.remote.ip() == from.remote.ip();
    let mut hops = Vec::new();
    if let Some(top) = request.list("Record-Route").into_iter().next() {
        let flow = NameAddr::parse(&top).ok().and_then(|n| uri_flow(&n.uri));
        hops.extend(flow.filter(sender).map(Hop::Flow));
    } else if let Some(contact) = contact_of(request) {
        let flow = match registrar.binding_for(&contact, now) {
            Some(b) => Some(b.flow).filter(|f| *f == from),
            None => uri_flow(&contact).filter(sender),
        };
        hops.extend(flow.map(Hop::Flow));
    }
    hops.extend(caller.map(|u| Hop::User(u.to_string())));
    hops
}

fn contact_of(request: &SipMessage) -> Option<Uri> {
    NameAddr::parse(&request.list("Contact").into_iter().next()?)
        .ok()
        .map(|n| n.uri)
}

/// The `dlg` value of a Route entry naming this peer.
pub fn proof_of(uri: &Uri) -> Option<String> {
    crate::uri::param(&uri.params, PARAM).flatten().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::Transport;

    fn flow(s: &str) -> Hop {
        Hop::Flow(Flow {
            transport: Transport::Udp,
            remote: s.parse().unwrap(),
        })
    }

    #[test]
    fn a_proof_admits_the_places_it_names_for_its_call_and_nothing_else() {
        let key = DialogKey::from_seed(1);
        let (caller, callee) = (flow("192.0.2.1:5060"), flow("192.0.2.2:5060"));
        let bob = Hop::User("bob".into());
        let proofs = [key.proof("call-1", &[caller.clone(), callee.clone(), bob.clone()])];
        assert!(key.admits(&proofs, "call-1", std::slice::from_ref(&caller)));
        assert!(key.admits(&proofs, "call-1", std::slice::from_ref(&callee)));
        let moved = flow("192.0.2.2:40000");
        assert!(
            key.admits(&proofs, "call-1", &[moved.clone(), bob.clone()]),
            "bob's phone from another port"
        );
        assert!(!key.admits(&proofs, "call-1", std::slice::from_ref(&moved)));
        assert!(!key.admits(&proofs, "call-1", &[flow("203.0.113.9:5060")]), "elsewhere");
        assert!(
            !key.admits(&proofs, "call-1", &[Hop::User("carol".into())]),
            "another user"
        );
        assert!(
            !key.admits(&proofs, "call-2", std::slice::from_ref(&callee)),
            "another call"
        );
        let tcp = Hop::Flow(Flow {
            transport: Transport::Tcp,
            remote: "192.0.2.2:5060".parse().unwrap(),
        });
        assert!(!key.admits(&proofs, "call-1", &[tcp]), "another transport");
        assert!(
            !DialogKey::from_seed(2).admits(&proofs, "call-1", std::slice::from_ref(&callee)),
            "another peer's key"
        );
        assert!(!key.admits(&["zz".into()], "call-1", std::slice::from_ref(&callee)));
        assert!(
            !key.admits(&["é".repeat(16)], "call-1", &[callee]),
            "no panic on non-ASCII"
        );
    }
}
