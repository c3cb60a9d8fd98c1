//! RELOAD (RFC 6940) wire codec: every message structure of §6 and §7, the
//! Chord-reload bodies of §10, the link framing of §6.6 and fragmentation
//! of §6.7. Pure data in, data out: no I/O, no clocks.
//!
//! Types are named after the RFC's structures (`StoreReq`, `ForwardingHeader`,
//! `IceCandidate`, …) and their doc comments cite the section that defines
//! them. Decoders are total: they return [`DecodeError`] on any input they
//! cannot read, check every length against the bytes present before using
//! it, enforce the overlay's max-message-size, and reject trailing bytes.
//! Decoding is canonical, so `encode(decode(b)) == b` for any `b` that decodes.
//!
//! ```
//! use reload_wire::*;
//!
//! // A Fetch of the SIP registrations stored under a Resource-ID (§7.4.2).
//! let body = Body::FetchReq(FetchReq {
//!     resource: ResourceId(vec![0x2c; 16]),
//!     specifiers: vec![StoredDataSpecifier {
//!         kind: usages::kind_id::SIP_REGISTRATION,
//!         generation: 0,
//!         model_specifier: ModelSpecifier::Dictionary(vec![]), // every key
//!     }],
//! });
//! let header = ForwardingHeader::new(
//!     overlay_hash("example.org"),
//!     0x1234,
//!     vec![Destination::Resource(ResourceId(vec![0x2c; 16]))],
//! );
//! let message = Message {
//!     forwarding_header: header,
//!     message_contents: MessageContents::from_body(&body)?,
//!     security_block: SecurityBlock { certificates: vec![], signature: Signature::anonymous() },
//! };
//! let bytes = message.to_bytes()?;
//! assert_eq!(&bytes[..4], &[0xd2, 0x45, 0x4c, 0x4f]); // relo_token
//!
//! let ctx = DecodeContext::default(); // NodeIdLength 16, max-message-size 5000
//! let back = Message::decode(&bytes, &ctx)?;
//! assert_eq!(back.message_contents.body(&ctx)?, body);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod address;
pub mod body;
pub mod chord;
pub mod codec;
pub mod contents;
pub mod error;
pub mod fragment;
pub mod framing;
pub mod header;
pub mod ids;
pub mod link_management;
pub mod message;
pub mod pcap;
pub mod samples;
pub mod security;
pub mod storage;
pub mod topology;
pub mod usages;

pub use address::IpAddressPort;
pub use body::Body;
pub use chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateType};
pub use codec::{Decode, Encode, LenPrefix, Reader, Writer};
pub use contents::{ErrorCode, ErrorResponse, MessageCode, MessageContents, MessageExtension};
pub use error::{DecodeError, EncodeError};
pub use framing::FramedMessage;
pub use header::{Destination, DestinationRef, ForwardingHeader, ForwardingOption, Fragment, HeaderView};
pub use ids::{hex, overlay_hash, unhex, KindId, NodeId, ResourceId};
pub use link_management::{
    AppAttachAns, AppAttachReq, AttachReqAns, CandType, ConfigUpdateReq, IceCandidate, IceExtension, PingAns, PingReq,
};
pub use message::Message;
pub use security::{GenericCertificate, SecurityBlock, Signature, SignatureAndHashAlgorithm, SignerIdentity};
pub use storage::{
    ArrayEntry, ArrayRange, DataModel, DataValue, DictionaryEntry, FetchAns, FetchKindResponse, FetchReq, FindAns,
    FindKindData, FindReq, MetaData, MetaDataValue, ModelSpecifier, StatAns, StatKindResponse, StatReq, StoreAns,
    StoreKindData, StoreKindResponse, StoreReq, StoredData, StoredDataSpecifier, StoredDataValue, StoredMetaData,
};
pub use topology::{JoinAns, JoinReq, LeaveReq, ProbeAns, ProbeInformation, ProbeReq, RouteQueryReq};
pub use usages::TurnServer;

use std::collections::HashMap;

/// What decoding needs to know about the overlay (its configuration
/// document, RFC 6940 §11.1): the Node-ID length, the largest message it
/// accepts, and the data model of each Kind it knows.
#[derive(Debug, Clone)]
pub struct DecodeContext {
    /// NodeIdLength, 16 to 20 bytes (§6.3.1.1). Chord-reload uses 16.
    pub node_id_length: usize,
    /// max-message-size (§11.1), 5000 unless configured.
    pub max_message_size: usize,
    kinds: HashMap<KindId, DataModel>,
}

impl DecodeContext {
    /// Default of §11.1 for `max-message-size`.
    pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 5000;

    /// A context knowing the registered Kinds of RFC 6940 and RFC 7904.
    /// Fails unless `node_id_length` is 16 to 20 (§6.3.1.1).
    pub fn new(node_id_length: usize, max_message_size: usize) -> Result<Self, EncodeError> {
        if !(ids::MIN_NODE_ID_LENGTH..=ids::MAX_NODE_ID_LENGTH).contains(&node_id_length) {
            return Err(EncodeError::BadLength {
                what: "NodeIdLength (16 to 20)",
                expected: ids::MIN_NODE_ID_LENGTH,
                found: node_id_length,
            });
        }
        Ok(DecodeContext {
            node_id_length,
            max_message_size,
            kinds: usages::STANDARD_KINDS.iter().copied().collect(),
        })
    }

    /// Declares (or redeclares) a Kind's data model, as a configuration's
    /// `<kind>` element does.
    pub fn with_kind(mut self, kind: KindId, model: DataModel) -> Self {
        self.kinds.insert(kind, model);
        self
    }

    pub fn data_model(&self, kind: KindId) -> Option<DataModel> {
        self.kinds.get(&kind).copied()
    }
}

impl Default for DecodeContext {
    fn default() -> Self {
        DecodeContext {
            node_id_length: ids::MIN_NODE_ID_LENGTH,
            max_message_size: Self::DEFAULT_MAX_MESSAGE_SIZE,
            kinds: usages::STANDARD_KINDS.iter().copied().collect(),
        }
    }
}
