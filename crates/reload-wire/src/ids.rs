//! Identifiers: NodeId, ResourceId (RFC 6940 §6.3.1.1) and the overlay
//! hash of the forwarding header (§6.3.2).

use crate::codec::{Decode, Encode, LenPrefix, Reader, Writer};
use crate::error::{DecodeError, EncodeError};
use sha1::{Digest, Sha1};
use std::fmt;

/// Smallest NodeIdLength an overlay may configure (§6.3.1.1: 128 bits).
pub const MIN_NODE_ID_LENGTH: usize = 16;
/// Largest NodeIdLength an overlay may configure (§6.3.1.1: 160 bits).
pub const MAX_NODE_ID_LENGTH: usize = 20;

/// `typedef opaque NodeId[NodeIdLength]` — RFC 6940 §6.3.1.1.
///
/// Fixed length per overlay (16 to 20 bytes), most significant byte first,
/// so the derived ordering is the numeric one for Node-IDs of one overlay.
/// Stored inline so that routing code can copy it freely.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    len: u8,
    bytes: [u8; MAX_NODE_ID_LENGTH],
}

impl NodeId {
    /// A Node-ID from its raw bytes; fails outside 16..=20 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, EncodeError> {
        if !(MIN_NODE_ID_LENGTH..=MAX_NODE_ID_LENGTH).contains(&b.len()) {
            return Err(EncodeError::BadLength {
                what: "NodeId",
                expected: MIN_NODE_ID_LENGTH,
                found: b.len(),
            });
        }
        let mut bytes = [0u8; MAX_NODE_ID_LENGTH];
        bytes[..b.len()].copy_from_slice(b);
        Ok(NodeId {
            len: b.len() as u8,
            bytes,
        })
    }

    /// A 128-bit Node-ID, the Chord-reload default length.
    pub fn from_u128(v: u128) -> Self {
        let mut bytes = [0u8; MAX_NODE_ID_LENGTH];
        bytes[..16].copy_from_slice(&v.to_be_bytes());
        NodeId { len: 16, bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The all-ones wildcard Node-ID (RFC 6940 §6.1, "wildcard Node-ID").
    pub fn wildcard(len: usize) -> Result<Self, EncodeError> {
        Self::from_slice(&[0xff; MAX_NODE_ID_LENGTH + 1][..len.min(MAX_NODE_ID_LENGTH + 1)])
    }

    pub fn to_hex(&self) -> String {
        hex(self.as_bytes())
    }

    /// The inverse of [`to_hex`](Self::to_hex); `None` for anything that is
    /// not 16 to 20 bytes of hex.
    pub fn from_hex(text: &str) -> Option<NodeId> {
        NodeId::from_slice(&unhex(text)?).ok()
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.to_hex())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Encode for NodeId {
    fn encode(&self, w: &mut Writer) {
        w.bytes(self.as_bytes());
    }
}

impl Decode for NodeId {
    /// Reads `NodeIdLength` bytes as configured for the overlay.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.ctx().node_id_length;
        let b = r.bytes(n, "NodeId")?;
        NodeId::from_slice(b).map_err(|_| DecodeError::BadLength {
            what: "NodeId",
            expected: MIN_NODE_ID_LENGTH,
            found: n,
        })
    }
}

/// `typedef opaque ResourceId<0..2^8-1>` — RFC 6940 §6.3.1.1.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ResourceId(pub Vec<u8>);

impl ResourceId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({})", hex(&self.0))
    }
}

impl Encode for ResourceId {
    fn encode(&self, w: &mut Writer) {
        w.opaque(LenPrefix::U8, "ResourceId", &self.0);
    }
}

impl Decode for ResourceId {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ResourceId(r.opaque(LenPrefix::U8, "ResourceId")?))
    }
}

/// `typedef uint32 KindId` — RFC 6940 §6.5.4.1.
pub type KindId = u32;

/// The `overlay` field of the forwarding header: the lower 32 bits of the
/// SHA-1 hash of the overlay name (RFC 6940 §6.3.2).
pub fn overlay_hash(overlay_name: &str) -> u32 {
    let digest = Sha1::digest(overlay_name.as_bytes());
    u32::from_be_bytes([digest[16], digest[17], digest[18], digest[19]])
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Bytes from hex digits (either case); `None` unless every pair is hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
