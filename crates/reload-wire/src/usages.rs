//! Value formats of the usages RFC 6940 itself defines: TURN-SERVICE (§9)
//! and the certificate Kinds (§8, whose values are DER certificates).

use crate::address::IpAddressPort;
use crate::codec::{Decode, Encode, Reader, Writer};
use crate::error::DecodeError;
use crate::ids::KindId;
use crate::storage::DataModel;

/// Kind-IDs registered by RFC 6940 §14.6 and RFC 7904, with their data models.
pub mod kind_id {
    /// SIP-REGISTRATION, RFC 7904: dictionary keyed by Node-ID.
    pub const SIP_REGISTRATION: u32 = 0x1;
    /// TURN-SERVICE, RFC 6940 §9: single value.
    pub const TURN_SERVICE: u32 = 0x2;
    /// CERTIFICATE_BY_NODE, RFC 6940 §8: array.
    pub const CERTIFICATE_BY_NODE: u32 = 0x3;
    /// CERTIFICATE_BY_USER, RFC 6940 §8: array.
    pub const CERTIFICATE_BY_USER: u32 = 0x10;
}

/// The registered Kinds and their data models.
pub const STANDARD_KINDS: &[(KindId, DataModel)] = &[
    (kind_id::SIP_REGISTRATION, DataModel::Dictionary),
    (kind_id::TURN_SERVICE, DataModel::SingleValue),
    (kind_id::CERTIFICATE_BY_NODE, DataModel::Array),
    (kind_id::CERTIFICATE_BY_USER, DataModel::Array),
];

/// `TurnServer` — RFC 6940 §9: the value of the TURN-SERVICE Kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// The ReDiR-like density iteration at which the server registered.
    pub iteration: u8,
    pub server_address: IpAddressPort,
}

impl Encode for TurnServer {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.iteration);
        self.server_address.encode(w);
    }
}

impl Decode for TurnServer {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TurnServer {
            iteration: r.u8("TurnServer.iteration")?,
            server_address: IpAddressPort::decode(r)?,
        })
    }
}

/// `enum { sip_registration_uri(1), sip_registration_route(2), (255) } SipRegistrationType`
/// — RFC 7904 §3.
pub mod sip_registration_type {
    pub const SIP_REGISTRATION_URI: u8 = 1;
    pub const SIP_REGISTRATION_ROUTE: u8 = 2;
}

/// `SipRegistration` — RFC 7904 §3: the dictionary value of the
/// SIP-REGISTRATION Kind. Either a URI to re-target to (an AOR or a GRUU),
/// or the route to the Node-ID that holds the user's contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipRegistration {
    /// `opaque uri<0..2^16-1>`.
    Uri(Vec<u8>),
    /// `opaque contact_prefs<0..2^16-1>` (RFC 3840 callee capabilities as
    /// text) and `Destination destination_list<0..2^16-1>`.
    Route {
        contact_prefs: Vec<u8>,
        destination_list: Vec<crate::header::Destination>,
    },
    Unknown {
        registration_type: u8,
        data: Vec<u8>,
    },
}

impl Encode for SipRegistration {
    fn encode(&self, w: &mut Writer) {
        use crate::codec::LenPrefix::U16;
        match self {
            SipRegistration::Uri(uri) => {
                w.u8(sip_registration_type::SIP_REGISTRATION_URI);
                w.prefixed(U16, "SipRegistration.length", |w| {
                    w.opaque(U16, "SipRegistration.uri", uri)
                });
            }
            SipRegistration::Route {
                contact_prefs,
                destination_list,
            } => {
                w.u8(sip_registration_type::SIP_REGISTRATION_ROUTE);
                w.prefixed(U16, "SipRegistration.length", |w| {
                    w.opaque(U16, "SipRegistration.contact_prefs", contact_prefs);
                    w.list(U16, "SipRegistration.destination_list", destination_list);
                });
            }
            SipRegistration::Unknown {
                registration_type,
                data,
            } => {
                w.u8(*registration_type);
                w.opaque(U16, "SipRegistration.length", data);
            }
        }
    }
}

impl Decode for SipRegistration {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        use crate::codec::LenPrefix::U16;
        let t = r.u8("SipRegistration.type")?;
        let mut d = r.sub(U16, "SipRegistration.length")?;
        let v = match t {
            sip_registration_type::SIP_REGISTRATION_URI => SipRegistration::Uri(d.opaque(U16, "SipRegistration.uri")?),
            sip_registration_type::SIP_REGISTRATION_ROUTE => SipRegistration::Route {
                contact_prefs: d.opaque(U16, "SipRegistration.contact_prefs")?,
                destination_list: d.list(
                    U16,
                    "SipRegistration.destination_list",
                    crate::header::Destination::decode,
                )?,
            },
            0 => {
                return Err(DecodeError::InvalidValue {
                    what: "SipRegistration.type",
                    value: 0,
                })
            }
            _ => SipRegistration::Unknown {
                registration_type: t,
                data: d.rest().to_vec(),
            },
        };
        d.finish("SipRegistration.data")?;
        Ok(v)
    }
}
