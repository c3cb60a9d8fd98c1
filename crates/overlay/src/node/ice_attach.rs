//! Attach in an overlay that uses ICE (RFC 6940 §6.5.1.3–§6.5.1.9): the
//! Attach request is the offer, its answer the answer; each carries the
//! sender's ICE credentials and every candidate it has, and the link then
//! forms by connectivity checks, which the peer core runs. The engine
//! only signals: it says who checks with whom ([`IceAttach`]) and waits,
//! as for a dialled link, for [`OverlayNode::link_up`] or
//! [`OverlayNode::link_failed`].

use super::*;

/// RFC 8445 §5.3: a username fragment and password. Ours are 8 and 24
/// ice-chars (`[A-Za-z0-9+/]`, 6 bits each: 48 and 144 bits; §5.3 asks
/// at least 24 and 128), from a cryptographic source
/// ([`OverlayNode::use_ice`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: Vec<u8>,
    pub password: Vec<u8>,
}

/// A link to form by ICE: this node's end of an Attach exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceAttach {
    pub peer: NodeId,
    /// §6.5.1.9: the Attach requester controls; §6.5.1.13: it is also the
    /// DTLS server.
    pub controlling: bool,
    pub local: IceCredentials,
    pub remote: IceCredentials,
    pub remote_candidates: Vec<IceCandidate>,
}

const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Random bytes for what an attacker must not guess (ICE passwords, STUN
/// transaction ids): the system's generator in the daemon, a seeded one
/// in tests and the simulator.
pub struct Entropy(pub Box<FillBytes>);

/// Fills a buffer with random bytes.
pub type FillBytes = dyn FnMut(&mut [u8]) + Send;

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entropy")
    }
}

impl<T: Topology, S: Security> OverlayNode<T, S> {
    /// From now on Attaches offer ICE with these candidates (host,
    /// server-reflexive, relayed: the peer core gathers them and calls
    /// this again when they change) and credentials drawn from
    /// `entropy` (kept from the first call when `None`).
    pub fn use_ice(&mut self, candidates: Vec<IceCandidate>, entropy: Option<Entropy>) {
        self.ice_candidates = Some(candidates);
        if entropy.is_some() {
            self.ice_entropy = entropy;
        }
    }

    pub fn uses_ice(&self) -> bool {
        self.ice_candidates.is_some()
    }

    /// New credentials for one Attach: from the entropy `use_ice` was
    /// given, else (tests) from the engine's seeded generator.
    pub(super) fn ice_credentials(&mut self) -> IceCredentials {
        let mut bytes = [0u8; 32];
        match &mut self.ice_entropy {
            Some(Entropy(fill)) => fill(&mut bytes),
            None => bytes.iter_mut().for_each(|b| *b = self.rng.random()),
        }
        let chars: Vec<u8> = bytes.iter().map(|b| ICE_CHARS[usize::from(b & 63)]).collect();
        IceCredentials {
            ufrag: chars[..8].to_vec(),
            password: chars[8..].to_vec(),
        }
    }

    /// The AttachReqAns this node sends, with ICE when the overlay uses
    /// it: the credentials go in the body and back to the caller, who
    /// keeps them for the checks.
    pub(super) fn attach_offer(&mut self, role: &[u8], send_update: bool) -> (AttachReqAns, Option<IceCredentials>) {
        let Some(candidates) = self.ice_candidates.clone() else {
            return (self.attach_body(role, send_update), None);
        };
        let credentials = self.ice_credentials();
        let body = AttachReqAns {
            ufrag: credentials.ufrag.clone(),
            password: credentials.password.clone(),
            role: role.to_vec(),
            candidates,
            send_update,
        };
        (body, Some(credentials))
    }

    /// Tells the driver to run ICE checks with `peer`.
    pub(super) fn start_ice(&mut self, peer: NodeId, controlling: bool, local: IceCredentials, remote: &AttachReqAns) {
        let attach = IceAttach {
            peer,
            controlling,
            local,
            remote: IceCredentials {
                ufrag: remote.ufrag.clone(),
                password: remote.password.clone(),
            },
            remote_candidates: remote.candidates.clone(),
        };
        self.actions
            .push_back(Action::Event(Box::new(Event::IceAttach(Box::new(attach)))));
    }
}

/// Whether an Attach body offers ICE (a No-ICE one has no credentials,
/// §6.5.1.11).
pub(super) fn offers_ice(body: &AttachReqAns) -> bool {
    !body.ufrag.is_empty() && !body.password.is_empty()
}
