//! The STUN messages of a plain Binding (RFC 8489 §5, §14): the header,
//! the attributes as type-length-value, XOR-MAPPED-ADDRESS (§14.2),
//! FINGERPRINT (§14.7) and the 420 of an unknown attribute (§14.8, §14.9).
//! Decoding is total: any byte string gives a message or a [`StunError`].
//!
//! Written here rather than taken from a crate (decision 0037): the ICE
//! crate's codec refuses a Binding without the ICE attributes, and
//! stun-types logs every malformed message from the network at WARN.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// §5: the magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
/// §5: the header's length.
pub const HEADER_LEN: usize = 20;
/// §18.3: the Binding method.
pub const BINDING: u16 = 0x001;

/// §18.3 attribute types this codec knows.
pub mod attribute {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000a;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001c;
    pub const USERHASH: u16 = 0x001e;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RFC 8445 §16.1: the ICE attributes a Binding request may carry.
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802a;
}

/// §5: the class, from the two class bits of the message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// What is wrong with bytes that were to be a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("not STUN (RFC 7983: first two bits, magic cookie)")]
    NotStun,
    #[error("STUN length {declared} does not match the {actual} bytes of the datagram")]
    Length { declared: usize, actual: usize },
    #[error("STUN attribute runs past the message")]
    Attribute,
    #[error("STUN FINGERPRINT does not match")]
    Fingerprint,
    #[error("STUN XOR-MAPPED-ADDRESS is malformed")]
    Address,
}

/// A decoded message: its header, and its attributes still as bytes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub class: Class,
    pub method: u16,
    pub transaction_id: [u8; 12],
    attributes: &'a [u8],
    /// The whole datagram, for MESSAGE-INTEGRITY.
    raw: &'a [u8],
}

/// One attribute: its type and its value (without the padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

impl<'a> Message<'a> {
    /// §5 and §6.3: one message filling the datagram. A FINGERPRINT, if
    /// present, must be the last attribute and match (§14.7).
    pub fn decode(datagram: &'a [u8]) -> Result<Message<'a>, StunError> {
        if datagram.len() < HEADER_LEN || datagram[0] & 0xc0 != 0 {
            return Err(StunError::NotStun);
        }
        let word = |at: usize| u32::from_be_bytes([datagram[at], datagram[at + 1], datagram[at + 2], datagram[at + 3]]);
        if word(4) != MAGIC_COOKIE {
            return Err(StunError::NotStun);
        }
        let declared = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        if declared % 4 != 0 || HEADER_LEN + declared != datagram.len() {
            return Err(StunError::Length {
                declared,
                actual: datagram.len(),
            });
        }
        let kind = u16::from_be_bytes([datagram[0], datagram[1]]);
        let class = match (kind >> 4 & 1, kind >> 8 & 1) {
            (0, 0) => Class::Request,
            (1, 0) => Class::Indication,
            (0, 1) => Class::Success,
            _ => Class::Error,
        };
        let method = (kind & 0x000f) | (kind >> 1 & 0x0070) | (kind >> 2 & 0x0f80);
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&datagram[8..20]);
        let message = Message {
            class,
            method,
            transaction_id,
            attributes: &datagram[HEADER_LEN..],
            raw: datagram,
        };
        let mut offset = HEADER_LEN;
        for attribute in message.attributes() {
            let attribute = attribute?;
            if attribute.kind == attribute::FINGERPRINT {
                let is_last = offset + 8 == datagram.len();
                let expected = crc32fast::hash(&datagram[..offset]) ^ 0x5354_554e;
                if !is_last || attribute.value != expected.to_be_bytes() {
                    return Err(StunError::Fingerprint);
                }
            }
            offset += 4 + attribute.value.len().next_multiple_of(4);
        }
        Ok(message)
    }

    /// The attributes in order; an error where one runs past the end.
    pub fn attributes(&self) -> impl Iterator<Item = Result<Attribute<'a>, StunError>> + 'a {
        let mut rest = self.attributes;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            if rest.len() < 4 {
                rest = &[];
                return Some(Err(StunError::Attribute));
            }
            let kind = u16::from_be_bytes([rest[0], rest[1]]);
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            let padded = len.next_multiple_of(4);
            if rest.len() < 4 + padded {
                rest = &[];
                return Some(Err(StunError::Attribute));
            }
            let value = &rest[4..4 + len];
            rest = &rest[4 + padded..];
            Some(Ok(Attribute { kind, value }))
        })
    }

    /// The first attribute of this type.
    pub fn attribute(&self, kind: u16) -> Option<&'a [u8]> {
        self.attributes().flatten().find(|a| a.kind == kind).map(|a| a.value)
    }

    /// §14.2: the XOR-MAPPED-ADDRESS, the address the server saw.
    pub fn xor_mapped_address(&self) -> Result<SocketAddr, StunError> {
        self.xor_address(attribute::XOR_MAPPED_ADDRESS)
    }

    /// §14.2's encoding, in the attribute `kind` (TURN's XOR-PEER-ADDRESS
    /// and XOR-RELAYED-ADDRESS use it too, RFC 8656 §18.3, §18.5).
    pub fn xor_address(&self, kind: u16) -> Result<SocketAddr, StunError> {
        let value = self.attribute(kind).ok_or(StunError::Address)?;
        xor_address_value(value, &self.transaction_id)
    }

    /// Every attribute `kind` as an XOR address (CreatePermission may
    /// carry several XOR-PEER-ADDRESSes, RFC 8656 §9.1).
    pub fn xor_addresses(&self, kind: u16) -> Vec<Result<SocketAddr, StunError>> {
        self.attributes()
            .flatten()
            .filter(|a| a.kind == kind)
            .map(|a| xor_address_value(a.value, &self.transaction_id))
            .collect()
    }

    /// §14.5: whether the MESSAGE-INTEGRITY (HMAC-SHA1 over the message up
    /// to it, the length counting it) was made with `key`. False without
    /// one, or with attributes other than FINGERPRINT after it.
    pub fn integrity_matches(&self, key: &[u8]) -> bool {
        let mut offset = HEADER_LEN;
        for attribute in self.attributes().flatten() {
            if attribute.kind == attribute::MESSAGE_INTEGRITY {
                if attribute.value.len() != 20 {
                    return false;
                }
                // Only a FINGERPRINT may follow (§14.5): anything else
                // after it would be unprotected but read all the same.
                let end = offset + 24;
                let fingerprint_follows = self.raw.len() == end + 8
                    && u16::from_be_bytes([self.raw[end], self.raw[end + 1]]) == attribute::FINGERPRINT;
                let after_ok = self.raw.len() == end || fingerprint_follows;
                let expected = integrity(&self.raw[..offset], end - HEADER_LEN, key);
                return after_ok && subtle_eq(&expected, attribute.value);
            }
            offset += 4 + attribute.value.len().next_multiple_of(4);
        }
        false
    }
}

/// Compares in time independent of where the bytes differ.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// §14.5: HMAC-SHA1 over `before` (the header and the attributes before
/// MESSAGE-INTEGRITY), with the header's length set to `length`.
fn integrity(before: &[u8], length: usize, key: &[u8]) -> [u8; 20] {
    use hmac::{KeyInit, Mac};
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&before[..HEADER_LEN]);
    header[2..4].copy_from_slice(&(length as u16).to_be_bytes());
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(key) else {
        return [0; 20];
    };
    mac.update(&header);
    mac.update(&before[HEADER_LEN..]);
    mac.finalize().into_bytes().into()
}

fn xor_address_value(value: &[u8], transaction_id: &[u8; 12]) -> Result<SocketAddr, StunError> {
    let (family, port) = match value {
        [_, family, p0, p1, ..] => (*family, u16::from_be_bytes([*p0, *p1]) ^ (MAGIC_COOKIE >> 16) as u16),
        _ => return Err(StunError::Address),
    };
    let mask = xor_mask(transaction_id);
    let ip = match (family, &value[4..]) {
        (0x01, address) if address.len() == 4 => {
            let mut octets = [0u8; 4];
            for (i, o) in octets.iter_mut().enumerate() {
                *o = address[i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        (0x02, address) if address.len() == 16 => {
            let mut octets = [0u8; 16];
            for (i, o) in octets.iter_mut().enumerate() {
                *o = address[i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return Err(StunError::Address),
    };
    Ok(SocketAddr::new(ip, port))
}

fn xor_mask(transaction_id: &[u8; 12]) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(transaction_id);
    mask
}

/// Builds a message attribute by attribute; [`finish`](Self::finish)
/// sets the length and appends the FINGERPRINT (§14.7).
pub struct Builder {
    bytes: Vec<u8>,
    transaction_id: [u8; 12],
}

impl Builder {
    pub fn new(class: Class, method: u16, transaction_id: [u8; 12]) -> Builder {
        let class_bits = match class {
            Class::Request => 0x0000,
            Class::Indication => 0x0010,
            Class::Success => 0x0100,
            Class::Error => 0x0110,
        };
        let kind = (method & 0x000f) | (method & 0x0070) << 1 | (method & 0x0f80) << 2 | class_bits;
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&kind.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        bytes.extend_from_slice(&transaction_id);
        Builder { bytes, transaction_id }
    }

    /// Appends one attribute, padded to four bytes (values here are
    /// never longer than a few dozen bytes).
    pub fn attribute(mut self, kind: u16, value: &[u8]) -> Builder {
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&kind.to_be_bytes());
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(&value[..usize::from(len)]);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        self
    }

    /// §14.2: XOR-MAPPED-ADDRESS of `address`.
    pub fn xor_mapped_address(self, address: SocketAddr) -> Builder {
        self.xor_address(attribute::XOR_MAPPED_ADDRESS, address)
    }

    /// §14.2's encoding of `address` in the attribute `kind`.
    pub fn xor_address(self, kind: u16, address: SocketAddr) -> Builder {
        let mask = xor_mask(&self.transaction_id);
        let port = address.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let mut value = vec![0];
        match address.ip() {
            IpAddr::V4(ip) => {
                value.push(0x01);
                value.extend_from_slice(&port.to_be_bytes());
                value.extend(ip.octets().iter().zip(mask).map(|(o, m)| o ^ m));
            }
            IpAddr::V6(ip) => {
                value.push(0x02);
                value.extend_from_slice(&port.to_be_bytes());
                value.extend(ip.octets().iter().zip(mask).map(|(o, m)| o ^ m));
            }
        }
        self.attribute(kind, &value)
    }

    /// The message with a MESSAGE-INTEGRITY made with `key` (§14.5), its
    /// length and a FINGERPRINT.
    pub fn finish_with_integrity(mut self, key: &[u8]) -> Vec<u8> {
        let length = self.bytes.len() - HEADER_LEN + 24;
        let mac = integrity(&self.bytes, length, key);
        self = self.attribute(attribute::MESSAGE_INTEGRITY, &mac);
        self.finish()
    }

    /// The message with its length and a FINGERPRINT.
    pub fn finish(mut self) -> Vec<u8> {
        let set_length = |bytes: &mut Vec<u8>| {
            let len = (bytes.len() - HEADER_LEN) as u16;
            bytes[2..4].copy_from_slice(&len.to_be_bytes());
        };
        // The FINGERPRINT covers the header with a length that counts it.
        self.bytes.extend_from_slice(&[0; 8]);
        set_length(&mut self.bytes);
        self.bytes.truncate(self.bytes.len() - 8);
        let crc = crc32fast::hash(&self.bytes) ^ 0x5354_554e;
        self.attribute(attribute::FINGERPRINT, &crc.to_be_bytes()).bytes
    }
}

/// §6.1: a Binding request.
pub fn binding_request(transaction_id: [u8; 12]) -> Vec<u8> {
    Builder::new(Class::Request, BINDING, transaction_id).finish()
}

/// §7.3.1.1 and §14.2: the success answer to a Binding request from
/// `from`.
pub fn binding_success(transaction_id: [u8; 12], from: SocketAddr) -> Vec<u8> {
    Builder::new(Class::Success, BINDING, transaction_id)
        .xor_mapped_address(from)
        .finish()
}

/// §6.3.1.1, §14.8 and §14.9: 420 Unknown Attribute, naming the first
/// four (the answer stays under three times the smallest such request).
pub fn unknown_attributes(method: u16, transaction_id: [u8; 12], unknown: &[u16]) -> Vec<u8> {
    let mut error = vec![0, 0, 4, 20];
    error.extend_from_slice(b"Unknown Attribute");
    let listed: Vec<u8> = unknown.iter().take(4).flat_map(|t| t.to_be_bytes()).collect();
    Builder::new(Class::Error, method, transaction_id)
        .attribute(attribute::ERROR_CODE, &error)
        .attribute(attribute::UNKNOWN_ATTRIBUTES, &listed)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: [u8; 12] = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];

    /// RFC 5769 §2.2: the sample IPv4 response's XOR-MAPPED-ADDRESS
    /// (192.0.2.1:32853) and its FINGERPRINT, which this codec reads, and
    /// the same address and transaction id encoded here.
    #[test]
    fn rfc5769_sample_response_address_decodes_and_encodes_alike() {
        let sample: [u8; 12] = [0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        let address: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let built = binding_success(TID, address);
        assert_eq!(&built[HEADER_LEN..HEADER_LEN + 12], &sample);
        let message = Message::decode(&built).unwrap();
        assert_eq!(message.class, Class::Success);
        assert_eq!(message.method, BINDING);
        assert_eq!(message.transaction_id, TID);
        assert_eq!(message.xor_mapped_address(), Ok(address));
    }

    /// RFC 5769 §2.3: the IPv6 sample's address value.
    #[test]
    fn rfc5769_ipv6_address_encodes_as_the_sample() {
        let address: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap();
        let built = binding_success(TID, address);
        let sample: [u8; 24] = [
            0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
            0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        ];
        assert_eq!(&built[HEADER_LEN..HEADER_LEN + 24], &sample);
        assert_eq!(Message::decode(&built).unwrap().xor_mapped_address(), Ok(address));
    }

    /// RFC 5769 §2.1: the sample request (with USERNAME, ICE attributes,
    /// MESSAGE-INTEGRITY and FINGERPRINT) decodes, its FINGERPRINT checked.
    #[test]
    fn rfc5769_sample_request_decodes() {
        let sample = hex(concat!(
            "000100582112a442b7e7a701bc34d686fa87dfae",
            "802200105354554e207465737420636c69656e74",
            "002400046e0001ff80290008932ff9b151263b36",
            "000600096576746a3a68367659202020",
            "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2",
            "80280004e57a3bcf",
        ));
        let message = Message::decode(&sample).unwrap();
        assert_eq!(message.class, Class::Request);
        assert_eq!(message.method, BINDING);
        assert_eq!(message.attribute(attribute::USERNAME), Some(&b"evtj:h6vY"[..]));
        let mut tampered = sample.clone();
        tampered[30] ^= 1;
        assert_eq!(Message::decode(&tampered).err(), Some(StunError::Fingerprint));
        // §2.1's short-term password is the MESSAGE-INTEGRITY key.
        assert!(message.integrity_matches(b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!message.integrity_matches(b"VOkJxbRl1RmTxUk/WvJxBT"));
    }

    /// §14.5: what `finish_with_integrity` makes, `integrity_matches`
    /// accepts with the same key only, and not once a byte changed
    /// (FINGERPRINT recomputed, as an attacker would).
    #[test]
    fn message_integrity_round_trips_and_catches_tampering() {
        let key = [7u8; 16];
        let built = Builder::new(Class::Request, 0x003, TID)
            .attribute(attribute::USERNAME, b"alice")
            .finish_with_integrity(&key);
        let message = Message::decode(&built).unwrap();
        assert!(message.integrity_matches(&key));
        assert!(!message.integrity_matches(&[8u8; 16]));
        let mut tampered = built.clone();
        tampered[HEADER_LEN + 4] ^= 0x20;
        let body = tampered.len() - 8;
        let crc = crc32fast::hash(&tampered[..body]) ^ 0x5354_554e;
        tampered[body + 4..].copy_from_slice(&crc.to_be_bytes());
        assert!(!Message::decode(&tampered).unwrap().integrity_matches(&key));
        // An attribute slipped in after it, in the FINGERPRINT's place,
        // is caught.
        let mut swapped = built.clone();
        let at = swapped.len() - 8;
        swapped[at..at + 2].copy_from_slice(&0x000du16.to_be_bytes());
        let body_len = swapped.len() - HEADER_LEN;
        swapped[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
        assert!(!Message::decode(&swapped).unwrap().integrity_matches(&key));
        // Without MESSAGE-INTEGRITY nothing matches.
        let plain = binding_request(TID);
        assert!(!Message::decode(&plain).unwrap().integrity_matches(&key));
    }

    #[test]
    fn what_is_not_one_whole_message_is_refused() {
        let request = binding_request(TID);
        assert!(Message::decode(&request).is_ok());
        assert_eq!(Message::decode(&request[..19]).err(), Some(StunError::NotStun));
        let mut longer = request.clone();
        longer.push(0);
        assert!(matches!(Message::decode(&longer), Err(StunError::Length { .. })));
        let mut rtp = request.clone();
        rtp[0] = 0x80;
        assert_eq!(Message::decode(&rtp).err(), Some(StunError::NotStun));
        // An attribute whose length runs past the end.
        let mut runaway = Builder::new(Class::Request, BINDING, TID)
            .attribute(attribute::USERNAME, b"abcd")
            .finish();
        runaway[HEADER_LEN + 3] = 200;
        assert_eq!(Message::decode(&runaway).err(), Some(StunError::Attribute));
    }

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }
}
