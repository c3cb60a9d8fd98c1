//! Ring arithmetic of Chord-reload — RFC 6940 §10.1: positions are 128-bit
//! integers and all arithmetic is modulo 2^128.
//!
//! Node-IDs may be 16 to 20 bytes long (§6.3.1.1), but Chord-reload's
//! identifier space is 128 bits (§10.2), so a position is the first 16 bytes
//! of an identifier, zero-padded if shorter. (Choice recorded in decision 0004.)

use reload_wire::{NodeId, ResourceId};

/// A point on the ring.
pub type Position = u128;

/// The ring position of any identifier's bytes (its 128 most significant bits).
pub fn position_of(bytes: &[u8]) -> Position {
    let mut b = [0u8; 16];
    let n = bytes.len().min(16);
    b[..n].copy_from_slice(&bytes[..n]);
    u128::from_be_bytes(b)
}

pub fn node_position(id: &NodeId) -> Position {
    position_of(id.as_bytes())
}

pub fn resource_position(id: &ResourceId) -> Position {
    position_of(id.as_bytes())
}

/// The Resource-ID one past a node (§10.5's "Resource-ID n+1"): the node's
/// successor is responsible for it, so a request sent there walks the ring.
pub fn just_after(id: &NodeId) -> ResourceId {
    ResourceId(node_position(id).wrapping_add(1).to_be_bytes().to_vec())
}

/// Clockwise distance from `from` to `to`.
pub fn distance(from: Position, to: Position) -> Position {
    to.wrapping_sub(from)
}

/// Whether `x` lies in the half-open ring interval `(a, b]`. With `a == b`
/// the interval is the whole ring: a peer alone is responsible for every ID.
pub fn in_open_closed(a: Position, x: Position, b: Position) -> bool {
    if a == b {
        return true;
    }
    let dx = distance(a, x);
    dx != 0 && dx <= distance(a, b)
}

/// Whether `x` lies in the open ring interval `(a, b)`.
pub fn in_open(a: Position, x: Position, b: Position) -> bool {
    let dx = distance(a, x);
    dx != 0 && (a == b || dx < distance(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_open_interval_wraps_around_zero() {
        let a = u128::MAX - 10;
        assert!(in_open_closed(a, u128::MAX, 5));
        assert!(in_open_closed(a, 0, 5));
        assert!(in_open_closed(a, 5, 5));
        assert!(!in_open_closed(a, a, 5));
        assert!(!in_open_closed(a, 6, 5));
        assert!(!in_open_closed(10, 5, 20));
        assert!(in_open_closed(7, 3, 7), "a peer alone owns the whole ring");
    }

    #[test]
    fn open_interval_excludes_both_ends() {
        assert!(in_open(10, 11, 20));
        assert!(!in_open(10, 10, 20));
        assert!(!in_open(10, 20, 20));
        assert!(in_open(u128::MAX, 0, 1));
        assert!(in_open(5, 9, 5), "(a, a) is the ring without a");
        assert!(!in_open(5, 5, 5));
    }

    #[test]
    fn one_past_the_top_of_the_ring_is_zero() {
        let top = NodeId::from_u128(u128::MAX);
        assert_eq!(resource_position(&just_after(&top)), 0);
        assert_eq!(resource_position(&just_after(&NodeId::from_u128(41))), 42);
    }

    #[test]
    fn positions_use_the_most_significant_128_bits() {
        let id = NodeId::from_slice(&[0xab; 20]).unwrap();
        assert_eq!(node_position(&id), u128::from_be_bytes([0xab; 16]));
        assert_eq!(position_of(&[1]), 1u128 << 120);
    }
}
