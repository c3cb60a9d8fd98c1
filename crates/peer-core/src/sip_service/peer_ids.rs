//! Which peer a SIP address between peers belongs to (decision 0027). The
//! locator learns it from the peer's own AppAttach answer (RFC 7904 §4.2,
//! signed by that peer); the TLS connection opened to the address must
//! then present that Node-ID, not merely some certificate the overlay
//! trusts: another node that took over the address (a restart on a reused
//! port, an address handed on) is not the peer the registration names.

use reload_wire::NodeId;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Addresses remembered at once; the oldest is forgotten first. A
/// forgotten address is still checked against the overlay's trust.
const REMEMBERED: usize = 4096;

#[derive(Debug, Default)]
pub struct PeerIds {
    by_address: HashMap<SocketAddr, NodeId>,
    order: VecDeque<SocketAddr>,
}

impl PeerIds {
    pub fn learn(&mut self, address: SocketAddr, node: NodeId) {
        if self.by_address.insert(address, node).is_none() {
            self.order.push_back(address);
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.by_address.remove(&old);
            }
        }
    }

    /// Forgets `address`: it could not be reached, or someone else
    /// answered there, and the next lookup asks again.
    pub fn forget(&mut self, address: &SocketAddr) {
        if self.by_address.remove(address).is_some() {
            self.order.retain(|a| a != address);
        }
    }

    /// The Node-ID a connection to `address` must present, if known.
    pub fn expected(&self, address: &SocketAddr) -> Option<NodeId> {
        self.by_address.get(address).copied()
    }
}

/// Whether the Node-IDs a peer's certificate carries include the one
/// expected at its address; the reason to refuse it if not.
pub fn check_presented(expected: Option<NodeId>, presented: &[NodeId]) -> Result<(), String> {
    match expected {
        Some(want) if !presented.contains(&want) => Err(format!(
            "it presented Node-ID {}, not {} whose AppAttach answer named this address",
            presented.iter().map(|n| n.to_hex()).collect::<Vec<_>>().join(", "),
            want.to_hex()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_connection_must_present_the_node_id_the_appattach_answer_came_from() {
        let (x, y) = (NodeId::from_u128(1), NodeId::from_u128(2));
        assert!(check_presented(Some(x), &[y, x]).is_ok());
        let refused = check_presented(Some(x), &[y]).unwrap_err();
        assert!(
            refused.contains(&y.to_hex()) && refused.contains(&x.to_hex()),
            "{refused}"
        );
        assert!(check_presented(None, &[y]).is_ok(), "an address no lookup named");
    }

    #[test]
    fn the_latest_answer_counts_and_the_memory_is_bounded() {
        let mut ids = PeerIds::default();
        ids.learn(addr(1), NodeId::from_u128(1));
        ids.learn(addr(1), NodeId::from_u128(2));
        assert_eq!(ids.expected(&addr(1)), Some(NodeId::from_u128(2)));
        for p in 2..(REMEMBERED as u16 + 2) {
            ids.learn(addr(p), NodeId::from_u128(3));
        }
        assert_eq!(ids.expected(&addr(1)), None, "the oldest is forgotten");
        assert_eq!(ids.by_address.len(), REMEMBERED);
        assert_eq!(ids.order.len(), REMEMBERED);
        ids.forget(&addr(2));
        assert_eq!(ids.expected(&addr(2)), None);
        assert_eq!(ids.order.len(), REMEMBERED - 1);
    }
}
