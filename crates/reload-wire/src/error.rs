//! Typed errors of the codec.

use thiserror::Error;

/// Why bytes could not be decoded. Every variant names the RFC structure
/// or field that was being read, so a log line points at the culprit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A field or length prefix claims more bytes than are present.
    #[error("{what}: needs {needed} bytes, only {available} present")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// Bytes remain after a structure that must fill its container exactly.
    #[error("{what}: {extra} trailing bytes")]
    TrailingBytes { what: &'static str, extra: usize },
    /// A field holds a value the RFC does not allow here.
    #[error("{what}: invalid value {value:#x}")]
    InvalidValue { what: &'static str, value: u64 },
    /// A length field disagrees with the fixed size its type implies.
    #[error("{what}: length {found} where {expected} is required")]
    BadLength {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// The message claims to be larger than the overlay's max-message-size.
    #[error("message of {length} bytes exceeds the maximum of {max}")]
    MessageTooLarge { length: usize, max: usize },
    /// The forwarding header does not start with the RELOAD token (§6.3.2).
    #[error("not a RELOAD message: relo_token {0:#010x}")]
    NotReload(u32),
    /// Stored data of Kinds whose data model this node does not know; the
    /// destination answers `Error_Unknown_Kind` listing them (RFC 6940 §7.4.1.2).
    #[error("unknown kinds {0:?}")]
    UnknownKinds(Vec<u32>),
}

/// Why a value could not be encoded: a variable-length field is longer than
/// its length prefix can express (RFC 6940 §6.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("{what}: {length} bytes do not fit a length prefix with maximum {max}")]
    TooLong {
        what: &'static str,
        length: usize,
        max: usize,
    },
    /// A field whose size is fixed by the overlay (a Node-ID) has another size.
    #[error("{what}: length {found} where {expected} is required")]
    BadLength {
        what: &'static str,
        expected: usize,
        found: usize,
    },
}
