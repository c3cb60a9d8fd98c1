//! SIP users in the simulator (issue 33 §6). Each user's phone is served
//! by one peer, which registers it in the overlay (RFC 7904 §3: a
//! SIP-REGISTRATION signed as the user, routing to the peer) and refreshes
//! it. Users call each other: the caller's peer finds the callee's peer
//! with the same sans-IO locator the daemon runs
//! ([`peer_core::sip_usage::Locator`]: Fetch, verify, ask the replicas,
//! AppAttach). When a user's peer leaves or crashes, the phone registers
//! with another peer after [`PHONE_FAILOVER_MS`], as a phone with a second
//! outbound proxy does. The SIP messages themselves (phone to peer, peer to
//! peer over the AppAttach connection) are not simulated: what is measured
//! is the overlay's part of call setup.

use crate::network::{address_of, Host};
use overlay::SimulatedSecurity;
use peer_core::sip_usage::Located;
use reload_wire::{IpAddressPort, ResourceId};
use std::net::SocketAddr;

/// The domain of the simulated users' AORs.
pub const DOMAIN: &str = "sim.p2psip.invalid";
/// How long a registration lives in the overlay (a phone's usual
/// Expires), in seconds.
pub const REGISTRATION_LIFETIME_S: u32 = 3600;
/// How often the serving peer stores the registration again: at half its
/// lifetime, as phones refresh.
pub const REFRESH_MS: u64 = REGISTRATION_LIFETIME_S as u64 * 500;
/// How long a phone whose peer is gone takes to register with another.
pub const PHONE_FAILOVER_MS: u64 = 30_000;
/// A failed registration Store is tried again after this long.
pub const REGISTER_RETRY_MS: u64 = 20_000;

/// One simulated SIP user.
pub(crate) struct User {
    /// The resource name of its AOR (RFC 7904 §3: the AOR without scheme).
    pub name: String,
    pub resource: ResourceId,
    pub pos: u128,
    /// The peer serving its phone now; `None` while the phone fails over.
    pub home: Option<Host>,
    /// The home's registration Store succeeded.
    pub registered: bool,
    /// A refresh chain runs for the current home.
    pub refreshing: bool,
}

impl User {
    pub fn new(index: usize, hasher: &overlay::ChordReload) -> Self {
        let name = peer_core::sip_usage::resource_name(&format!("phone{index}"), DOMAIN);
        let resource = overlay::Topology::resource_id(hasher, name.as_bytes());
        User {
            pos: overlay::ring::resource_position(&resource),
            name,
            resource,
            home: None,
            registered: false,
            refreshing: false,
        }
    }
}

/// A call in progress at the caller's peer, by locator token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    pub callee_home: Host,
    pub started: u64,
}

/// Whether a lookup found the peer serving the callee: `callee_home`'s
/// address among the peers the AppAttaches answered, or the caller's own
/// peer (`at`) when it serves the callee itself.
pub(crate) fn found_callee(located: &Located, at: Host, callee_home: Host) -> bool {
    match located {
        Located::Found { peers, here } => {
            (*here && at == callee_home)
                || sip_address(callee_home).is_some_and(|a| peers.iter().any(|p| p.address == a))
        }
        _ => false,
    }
}

/// Where a simulated peer takes SIP from other peers: its overlay address
/// (the simulator carries no SIP, so one address serves both).
pub(crate) fn sip_address(host: Host) -> Option<SocketAddr> {
    match address_of(host) {
        IpAddressPort::Ip(a) => Some(a),
        _ => None,
    }
}

/// Lets `security` sign as `user` (the user enrolled into the peer with
/// its Node-ID, RFC 7904 §3.3).
pub(crate) fn enroll(security: &mut SimulatedSecurity, user: &str) {
    if !security.users.iter().any(|u| u.user == user) {
        security.users.push(SimulatedSecurity::new(security.node_id, user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peer_core::sip_usage::SipPeer;
    use reload_wire::NodeId;

    #[test]
    fn a_call_finds_the_callee_only_at_its_own_peer() {
        let callee = 7;
        let peer = |host: Host| SipPeer {
            node: NodeId::from_u128(host as u128),
            address: sip_address(host).unwrap(),
        };
        let elsewhere = Located::Found {
            peers: vec![peer(3)],
            here: false,
        };
        let there = Located::Found {
            peers: vec![peer(3), peer(callee)],
            here: false,
        };
        assert!(!found_callee(&elsewhere, 1, callee));
        assert!(found_callee(&there, 1, callee));
        let here = Located::Found {
            peers: vec![],
            here: true,
        };
        assert!(found_callee(&here, callee, callee));
        assert!(!found_callee(&here, 1, callee), "here is the caller's peer");
        assert!(!found_callee(&Located::NoPhone, 1, callee));
    }
}
