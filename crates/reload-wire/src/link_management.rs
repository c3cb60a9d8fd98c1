//! Forwarding and link management methods — RFC 6940 §6.5: Attach (with
//! its ICE candidates), AppAttach, Ping, ConfigUpdate.

use crate::address::IpAddressPort;
use crate::codec::{Decode, Encode, LenPrefix, Reader, Writer};
use crate::error::DecodeError;

/// `enum { invalidOverlayLinkType(0), DTLS-UDP-SR(1), DTLS-UDP-SR-NO-ICE(3), TLS-TCP-FH-NO-ICE(4), (255) }`
/// — RFC 6940 §6.5.1.1; EXP-LINK(5) from §14.10. Kept as a byte: the
/// registry may grow, and a candidate of an unknown link type is still
/// well-formed (the node just cannot use it).
pub mod overlay_link_type {
    pub const DTLS_UDP_SR: u8 = 1;
    pub const DTLS_UDP_SR_NO_ICE: u8 = 3;
    pub const TLS_TCP_FH_NO_ICE: u8 = 4;
    pub const EXP_LINK: u8 = 5;
}

/// `CandType` — RFC 6940 §6.5.1.1, with the related address that srflx
/// and relay candidates carry.
///
/// The enum marks 3 `RESERVED`, yet the text lists "prflx" among the types
/// with a `rel_addr_port`; Wireshark and java-reload read 3 as prflx with a
/// related address, so we accept it the same way (we never send it: RELOAD
/// signals no peer-reflexive candidates). Other values cannot be skipped —
/// the structure has no length — so they are decode errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandType {
    Host,
    Srflx { rel_addr_port: IpAddressPort },
    Prflx { rel_addr_port: IpAddressPort },
    Relay { rel_addr_port: IpAddressPort },
}

pub mod cand_type {
    pub const HOST: u8 = 1;
    pub const SRFLX: u8 = 2;
    pub const PRFLX: u8 = 3;
    pub const RELAY: u8 = 4;
}

/// `IceExtension` — RFC 6940 §6.5.1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceExtension {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl Encode for IceExtension {
    fn encode(&self, w: &mut Writer) {
        w.opaque(LenPrefix::U16, "IceExtension.name", &self.name);
        w.opaque(LenPrefix::U16, "IceExtension.value", &self.value);
    }
}

impl Decode for IceExtension {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(IceExtension {
            name: r.opaque(LenPrefix::U16, "IceExtension.name")?,
            value: r.opaque(LenPrefix::U16, "IceExtension.value")?,
        })
    }
}

/// `IceCandidate` — RFC 6940 §6.5.1.1 (component id is always 1 and not sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCandidate {
    pub addr_port: IpAddressPort,
    pub overlay_link: u8,
    pub foundation: Vec<u8>,
    pub priority: u32,
    pub cand_type: CandType,
    pub extensions: Vec<IceExtension>,
}

impl Encode for IceCandidate {
    fn encode(&self, w: &mut Writer) {
        self.addr_port.encode(w);
        w.u8(self.overlay_link);
        w.opaque(LenPrefix::U8, "IceCandidate.foundation", &self.foundation);
        w.u32(self.priority);
        match &self.cand_type {
            CandType::Host => w.u8(cand_type::HOST),
            CandType::Srflx { rel_addr_port } => {
                w.u8(cand_type::SRFLX);
                rel_addr_port.encode(w);
            }
            CandType::Prflx { rel_addr_port } => {
                w.u8(cand_type::PRFLX);
                rel_addr_port.encode(w);
            }
            CandType::Relay { rel_addr_port } => {
                w.u8(cand_type::RELAY);
                rel_addr_port.encode(w);
            }
        }
        w.list(LenPrefix::U16, "IceCandidate.extensions", &self.extensions);
    }
}

impl Decode for IceCandidate {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let addr_port = IpAddressPort::decode(r)?;
        let overlay_link = r.u8("IceCandidate.overlay_link")?;
        if overlay_link == 0 {
            return Err(DecodeError::InvalidValue {
                what: "IceCandidate.overlay_link",
                value: 0,
            });
        }
        let foundation = r.opaque(LenPrefix::U8, "IceCandidate.foundation")?;
        let priority = r.u32("IceCandidate.priority")?;
        let cand_type = match r.u8("IceCandidate.type")? {
            cand_type::HOST => CandType::Host,
            cand_type::SRFLX => CandType::Srflx {
                rel_addr_port: IpAddressPort::decode(r)?,
            },
            cand_type::PRFLX => CandType::Prflx {
                rel_addr_port: IpAddressPort::decode(r)?,
            },
            cand_type::RELAY => CandType::Relay {
                rel_addr_port: IpAddressPort::decode(r)?,
            },
            t => {
                return Err(DecodeError::InvalidValue {
                    what: "IceCandidate.type",
                    value: t.into(),
                })
            }
        };
        Ok(IceCandidate {
            addr_port,
            overlay_link,
            foundation,
            priority,
            cand_type,
            extensions: r.list(LenPrefix::U16, "IceCandidate.extensions", IceExtension::decode)?,
        })
    }
}

/// `AttachReqAns` — RFC 6940 §6.5.1.1; the body of both attach_req and attach_ans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachReqAns {
    pub ufrag: Vec<u8>,
    pub password: Vec<u8>,
    /// "active", "passive" or "actpass" (RFC 4145).
    pub role: Vec<u8>,
    pub candidates: Vec<IceCandidate>,
    pub send_update: bool,
}

impl Encode for AttachReqAns {
    fn encode(&self, w: &mut Writer) {
        w.opaque(LenPrefix::U8, "AttachReqAns.ufrag", &self.ufrag);
        w.opaque(LenPrefix::U8, "AttachReqAns.password", &self.password);
        w.opaque(LenPrefix::U8, "AttachReqAns.role", &self.role);
        w.list(LenPrefix::U16, "AttachReqAns.candidates", &self.candidates);
        w.boolean(self.send_update);
    }
}

impl Decode for AttachReqAns {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(AttachReqAns {
            ufrag: r.opaque(LenPrefix::U8, "AttachReqAns.ufrag")?,
            password: r.opaque(LenPrefix::U8, "AttachReqAns.password")?,
            role: r.opaque(LenPrefix::U8, "AttachReqAns.role")?,
            candidates: r.list(LenPrefix::U16, "AttachReqAns.candidates", IceCandidate::decode)?,
            send_update: r.boolean("AttachReqAns.send_update")?,
        })
    }
}

/// `AppAttachReq` — RFC 6940 §6.5.2.1. `AppAttachAns` (§6.5.2.2) has the
/// same fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAttachReq {
    pub ufrag: Vec<u8>,
    pub password: Vec<u8>,
    /// Application-ID (§14.5): 5060 for SIP, 5061 for SIP over TLS.
    pub application: u16,
    pub role: Vec<u8>,
    pub candidates: Vec<IceCandidate>,
}

/// `AppAttachAns` — RFC 6940 §6.5.2.2.
pub type AppAttachAns = AppAttachReq;

impl Encode for AppAttachReq {
    fn encode(&self, w: &mut Writer) {
        w.opaque(LenPrefix::U8, "AppAttach.ufrag", &self.ufrag);
        w.opaque(LenPrefix::U8, "AppAttach.password", &self.password);
        w.u16(self.application);
        w.opaque(LenPrefix::U8, "AppAttach.role", &self.role);
        w.list(LenPrefix::U16, "AppAttach.candidates", &self.candidates);
    }
}

impl Decode for AppAttachReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(AppAttachReq {
            ufrag: r.opaque(LenPrefix::U8, "AppAttach.ufrag")?,
            password: r.opaque(LenPrefix::U8, "AppAttach.password")?,
            application: r.u16("AppAttach.application")?,
            role: r.opaque(LenPrefix::U8, "AppAttach.role")?,
            candidates: r.list(LenPrefix::U16, "AppAttach.candidates", IceCandidate::decode)?,
        })
    }
}

/// `PingReq` — RFC 6940 §6.5.3.1: only padding, for path-MTU discovery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PingReq {
    pub padding: Vec<u8>,
}

impl Encode for PingReq {
    fn encode(&self, w: &mut Writer) {
        w.opaque(LenPrefix::U16, "PingReq.padding", &self.padding);
    }
}

impl Decode for PingReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PingReq {
            padding: r.opaque(LenPrefix::U16, "PingReq.padding")?,
        })
    }
}

/// `PingAns` — RFC 6940 §6.5.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingAns {
    pub response_id: u64,
    /// Milliseconds since the Unix epoch, like storage_time (§7).
    pub time: u64,
}

impl Encode for PingAns {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.response_id);
        w.u64(self.time);
    }
}

impl Decode for PingAns {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PingAns {
            response_id: r.u64("PingAns.response_id")?,
            time: r.u64("PingAns.time")?,
        })
    }
}

/// `enum { invalidConfigUpdateType(0), config(1), kind(2), (255) }` — RFC 6940 §6.5.4.1.
pub mod config_update_type {
    pub const CONFIG: u8 = 1;
    pub const KIND: u8 = 2;
}

/// `ConfigUpdateReq` — RFC 6940 §6.5.4.1: type, uint32 length, then the
/// configuration document or a list of XML kind blocks. `ConfigUpdateAns`
/// is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigUpdateReq {
    /// `opaque config_data<0..2^24-1>`: a whole configuration document.
    Config(Vec<u8>),
    /// `KindDescription kinds<0..2^24-1>`, each `opaque<0..2^16-1>` of UTF-8 XML.
    Kinds(Vec<Vec<u8>>),
    Unknown {
        update_type: u8,
        data: Vec<u8>,
    },
}

impl Encode for ConfigUpdateReq {
    fn encode(&self, w: &mut Writer) {
        match self {
            ConfigUpdateReq::Config(c) => {
                w.u8(config_update_type::CONFIG);
                w.prefixed(LenPrefix::U32, "ConfigUpdateReq.length", |w| {
                    w.opaque(LenPrefix::U24, "ConfigUpdateReq.config_data", c)
                });
            }
            ConfigUpdateReq::Kinds(kinds) => {
                w.u8(config_update_type::KIND);
                w.prefixed(LenPrefix::U32, "ConfigUpdateReq.length", |w| {
                    w.prefixed(LenPrefix::U24, "ConfigUpdateReq.kinds", |w| {
                        for k in kinds {
                            w.opaque(LenPrefix::U16, "KindDescription", k);
                        }
                    })
                });
            }
            ConfigUpdateReq::Unknown { update_type, data } => {
                w.u8(*update_type);
                w.opaque(LenPrefix::U32, "ConfigUpdateReq.length", data);
            }
        }
    }
}

impl Decode for ConfigUpdateReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let t = r.u8("ConfigUpdateReq.type")?;
        let mut body = r.sub(LenPrefix::U32, "ConfigUpdateReq.length")?;
        let v = match t {
            config_update_type::CONFIG => {
                ConfigUpdateReq::Config(body.opaque(LenPrefix::U24, "ConfigUpdateReq.config_data")?)
            }
            config_update_type::KIND => {
                ConfigUpdateReq::Kinds(body.list(LenPrefix::U24, "ConfigUpdateReq.kinds", |r| {
                    r.opaque(LenPrefix::U16, "KindDescription")
                })?)
            }
            0 => {
                return Err(DecodeError::InvalidValue {
                    what: "ConfigUpdateReq.type",
                    value: 0,
                })
            }
            _ => ConfigUpdateReq::Unknown {
                update_type: t,
                data: body.rest().to_vec(),
            },
        };
        body.finish("ConfigUpdateReq")?;
        Ok(v)
    }
}
