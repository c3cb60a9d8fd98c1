//! STUN on the overlay UDP port: the Binding server every peer runs
//! ([`server`]) and the linked peers this peer asks in turn
//! ([`servers`], RFC 6940 §6.5.1.4), over a plain Binding codec
//! ([`message`], RFC 8489).

pub mod message;
pub mod server;
pub mod servers;

/// RFC 7983 §7: a datagram whose first byte is 0 to 3 is STUN (20 to 63
/// would be DTLS, 64 to 79 TURN channel data).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| *b < 4)
}
