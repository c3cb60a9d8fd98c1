//! TURN (RFC 8656) for relay peers (RFC 6940 §9): the server a relay peer
//! runs ([`server::TurnServer`]) and the pieces of the protocol both ends
//! share, over the STUN codec of [`crate::stun::message`]. UDP only, as
//! overlay links and media are UDP.

pub mod client;
pub mod server;

use std::net::SocketAddr;

/// RFC 8656 §18.1 (and RFC 8489 §18.3): the methods.
pub const ALLOCATE: u16 = 0x003;
pub const REFRESH: u16 = 0x004;
pub const SEND: u16 = 0x006;
pub const DATA: u16 = 0x007;
pub const CREATE_PERMISSION: u16 = 0x008;
pub const CHANNEL_BIND: u16 = 0x009;

/// RFC 8656 §18.2: the attributes TURN adds.
pub mod attribute {
    pub const CHANNEL_NUMBER: u16 = 0x000c;
    pub const LIFETIME: u16 = 0x000d;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001a;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const SOFTWARE: u16 = 0x8022;
}

/// RFC 8656 §14.7: REQUESTED-TRANSPORT's protocol number for UDP.
pub const UDP: u8 = 17;

/// RFC 8656 §12: the channel numbers a client binds.
pub const CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x4fff;
/// The channel numbers the server takes: RFC 5766 §11's 0x4000-0x7FFE,
/// which RFC 8656 narrowed, still used by clients such as coturn's
/// (measured: turnutils_uclient binds 0x78e7). The relay's port carries
/// no DTLS, so RFC 7983's narrower first-byte range does not matter
/// there.
pub const ACCEPTED_CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x7ffe;

/// RFC 8489 §9.2.2: the long-term credential key, MD5(username ":" realm
/// ":" password) (the strings as given: our user names and realms are
/// ASCII, so OpaqueString changes nothing).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    use md5::Digest;
    let mut md5 = md5::Md5::new();
    md5.update(format!("{username}:{realm}:{password}").as_bytes());
    md5.finalize().into()
}

/// RFC 8656 §12.4: a ChannelData message (over UDP no padding is needed).
pub fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(4 + data.len());
    bytes.extend_from_slice(&channel.to_be_bytes());
    bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// RFC 8656 §12.4: ChannelData (first byte 64-127 for the channels
/// [`ACCEPTED_CHANNELS`]); its channel and data, if its length fits the datagram
/// (UDP may carry padding after it).
pub fn parse_channel_data(datagram: &[u8]) -> Option<(u16, &[u8])> {
    let [a, b, c, d, rest @ ..] = datagram else {
        return None;
    };
    let channel = u16::from_be_bytes([*a, *b]);
    let len = usize::from(u16::from_be_bytes([*c, *d]));
    (ACCEPTED_CHANNELS.contains(&channel) && rest.len() >= len).then(|| (channel, &rest[..len]))
}

/// RFC 8656 §14.6 / §18.2: REQUESTED-ADDRESS-FAMILY's and the XOR
/// addresses' family codes.
pub fn family(address: &SocketAddr) -> u8 {
    if address.is_ipv4() {
        0x01
    } else {
        0x02
    }
}
