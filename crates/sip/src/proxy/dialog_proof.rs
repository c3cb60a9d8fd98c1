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

    fn mac(&self, call_id: &str, hop: Flow) -> String {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(Sha256::digest(call_id.as_bytes()));
        h.update(hop.transport.name().as_bytes());
        h.update(hop.remote.to_string().as_bytes());
        let digest = h.finalize();
        digest[..MAC_HEX / 2].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The `dlg` value for a dialog whose later requests may go to
    /// `toward_caller` (when it can be told) or `toward_callee`.
    pub fn proof(&self, call_id: &str, toward_caller: Option<Flow>, toward_callee: Flow) -> String {
        let up = toward_caller.map_or_else(|| "0".repeat(MAC_HEX), |h| self.mac(call_id, h));
        up + &self.mac(call_id, toward_callee)
    }

    /// Whether one of `proofs` (the `dlg` values of this peer's own Route
    /// entries) allows a request of `call_id` to go to `next`.
    pub fn admits(&self, proofs: &[String], call_id: &str, next: Flow) -> bool {
        let mac = self.mac(call_id, next);
        proofs.iter().any(|p| {
            p.len() == 2 * MAC_HEX
                && p.is_ascii()
                && (constant_time_eq(&p[..MAC_HEX], &mac) || constant_time_eq(&p[MAC_HEX..], &mac))
        })
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where a later request of the dialog that `request` (an initial
/// request as it arrived) starts would go from this peer toward the
/// caller: the top Record-Route entry so far, else the Contact; over the
/// flow the caller's phone registered from when the Contact is its.
/// [`super::dialog_next_hop`] resolves the same way.
pub fn toward_caller(request: &SipMessage, registrar: &Registrar, now: u64) -> Option<Flow> {
    if let Some(top) = request.list("Record-Route").into_iter().next() {
        return NameAddr::parse(&top).ok().and_then(|n| uri_flow(&n.uri));
    }
    let contact = NameAddr::parse(&request.list("Contact").into_iter().next()?).ok()?.uri;
    registrar
        .binding_for(&contact, now)
        .map(|b| b.flow)
        .or_else(|| uri_flow(&contact))
}

/// The `dlg` value of a Route entry naming this peer.
pub fn proof_of(uri: &Uri) -> Option<String> {
    crate::uri::param(&uri.params, PARAM).flatten().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::Transport;

    fn flow(s: &str) -> Flow {
        Flow {
            transport: Transport::Udp,
            remote: s.parse().unwrap(),
        }
    }

    #[test]
    fn a_proof_admits_its_two_ends_for_its_call_and_nothing_else() {
        let key = DialogKey::from_seed(1);
        let (caller, callee) = (flow("192.0.2.1:5060"), flow("192.0.2.2:5060"));
        let proofs = [key.proof("call-1", Some(caller), callee)];
        assert!(key.admits(&proofs, "call-1", caller));
        assert!(key.admits(&proofs, "call-1", callee));
        assert!(!key.admits(&proofs, "call-1", flow("203.0.113.9:5060")), "elsewhere");
        assert!(!key.admits(&proofs, "call-2", callee), "another call");
        let tcp = Flow {
            transport: Transport::Tcp,
            remote: callee.remote,
        };
        assert!(!key.admits(&proofs, "call-1", tcp), "another transport");
        assert!(
            !DialogKey::from_seed(2).admits(&proofs, "call-1", callee),
            "another peer's key"
        );
        let unknown_caller = key.proof("call-1", None, callee);
        assert!(!key.admits(&[unknown_caller], "call-1", caller));
        assert!(!key.admits(&["zz".into()], "call-1", callee));
        assert!(
            !key.admits(&["é".repeat(16)], "call-1", callee),
            "no panic on non-ASCII"
        );
    }
}
