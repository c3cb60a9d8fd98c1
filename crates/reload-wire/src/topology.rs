//! Methods for topology plug-ins — RFC 6940 §6.4.2: Join, Leave, Update,
//! RouteQuery, Probe. Their overlay-specific parts stay opaque here; the
//! Chord-reload forms are in [`crate::chord`].

use crate::codec::{Decode, Encode, LenPrefix, Reader, Writer};
use crate::error::DecodeError;
use crate::header::Destination;
use crate::ids::NodeId;

/// `JoinReq` — RFC 6940 §6.4.2.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReq {
    pub joining_peer_id: NodeId,
    pub overlay_specific_data: Vec<u8>,
}

impl Encode for JoinReq {
    fn encode(&self, w: &mut Writer) {
        self.joining_peer_id.encode(w);
        w.opaque(
            LenPrefix::U16,
            "JoinReq.overlay_specific_data",
            &self.overlay_specific_data,
        );
    }
}

impl Decode for JoinReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(JoinReq {
            joining_peer_id: NodeId::decode(r)?,
            overlay_specific_data: r.opaque(LenPrefix::U16, "JoinReq.overlay_specific_data")?,
        })
    }
}

/// `JoinAns` — RFC 6940 §6.4.2.1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinAns {
    pub overlay_specific_data: Vec<u8>,
}

impl Encode for JoinAns {
    fn encode(&self, w: &mut Writer) {
        w.opaque(
            LenPrefix::U16,
            "JoinAns.overlay_specific_data",
            &self.overlay_specific_data,
        );
    }
}

impl Decode for JoinAns {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(JoinAns {
            overlay_specific_data: r.opaque(LenPrefix::U16, "JoinAns.overlay_specific_data")?,
        })
    }
}

/// `LeaveReq` — RFC 6940 §6.4.2.2. For Chord-reload the data is a
/// [`crate::chord::ChordLeaveData`]. `LeaveAns` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveReq {
    pub leaving_peer_id: NodeId,
    pub overlay_specific_data: Vec<u8>,
}

impl Encode for LeaveReq {
    fn encode(&self, w: &mut Writer) {
        self.leaving_peer_id.encode(w);
        w.opaque(
            LenPrefix::U16,
            "LeaveReq.overlay_specific_data",
            &self.overlay_specific_data,
        );
    }
}

impl Decode for LeaveReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(LeaveReq {
            leaving_peer_id: NodeId::decode(r)?,
            overlay_specific_data: r.opaque(LenPrefix::U16, "LeaveReq.overlay_specific_data")?,
        })
    }
}

/// `RouteQueryReq` — RFC 6940 §6.4.2.4.1. The answer is overlay specific
/// ([`crate::chord::ChordRouteQueryAns`] for Chord-reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQueryReq {
    pub send_update: bool,
    pub destination: Destination,
    pub overlay_specific_data: Vec<u8>,
}

impl Encode for RouteQueryReq {
    fn encode(&self, w: &mut Writer) {
        w.boolean(self.send_update);
        self.destination.encode(w);
        w.opaque(
            LenPrefix::U16,
            "RouteQueryReq.overlay_specific_data",
            &self.overlay_specific_data,
        );
    }
}

impl Decode for RouteQueryReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(RouteQueryReq {
            send_update: r.boolean("RouteQueryReq.send_update")?,
            destination: Destination::decode(r)?,
            overlay_specific_data: r.opaque(LenPrefix::U16, "RouteQueryReq.overlay_specific_data")?,
        })
    }
}

/// `enum { invalidProbeInformationType(0), responsible_set(1), num_resources(2), uptime(3), (255) }`
/// — RFC 6940 §6.4.2.5.1; exp-probe(4) from §14.13.
pub mod probe_information_type {
    pub const RESPONSIBLE_SET: u8 = 1;
    pub const NUM_RESOURCES: u8 = 2;
    pub const UPTIME: u8 = 3;
    pub const EXP_PROBE: u8 = 4;
}

/// `ProbeReq` — RFC 6940 §6.4.2.5.1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeReq {
    pub requested_info: Vec<u8>,
}

impl Encode for ProbeReq {
    fn encode(&self, w: &mut Writer) {
        w.opaque(LenPrefix::U8, "ProbeReq.requested_info", &self.requested_info);
    }
}

impl Decode for ProbeReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ProbeReq {
            requested_info: r.opaque(LenPrefix::U8, "ProbeReq.requested_info")?,
        })
    }
}

/// `ProbeInformation` — RFC 6940 §6.4.2.5.2: type, uint8 length, value.
/// The three defined types carry a uint32; others are kept raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeInformation {
    /// Fraction of the overlay this peer is responsible for, in parts per billion.
    ResponsibleSet(u32),
    NumResources(u32),
    /// Seconds since the peer started.
    Uptime(u32),
    Unknown {
        probe_type: u8,
        value: Vec<u8>,
    },
}

impl Encode for ProbeInformation {
    fn encode(&self, w: &mut Writer) {
        let (t, v) = match self {
            ProbeInformation::ResponsibleSet(v) => (probe_information_type::RESPONSIBLE_SET, v),
            ProbeInformation::NumResources(v) => (probe_information_type::NUM_RESOURCES, v),
            ProbeInformation::Uptime(v) => (probe_information_type::UPTIME, v),
            ProbeInformation::Unknown { probe_type, value } => {
                w.u8(*probe_type);
                w.opaque(LenPrefix::U8, "ProbeInformation.length", value);
                return;
            }
        };
        w.u8(t);
        w.u8(4);
        w.u32(*v);
    }
}

impl Decode for ProbeInformation {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let t = r.u8("ProbeInformation.type")?;
        let mut v = r.sub(LenPrefix::U8, "ProbeInformation.length")?;
        let make: fn(u32) -> ProbeInformation = match t {
            probe_information_type::RESPONSIBLE_SET => ProbeInformation::ResponsibleSet,
            probe_information_type::NUM_RESOURCES => ProbeInformation::NumResources,
            probe_information_type::UPTIME => ProbeInformation::Uptime,
            0 => {
                return Err(DecodeError::InvalidValue {
                    what: "ProbeInformation.type",
                    value: 0,
                })
            }
            _ => {
                return Ok(ProbeInformation::Unknown {
                    probe_type: t,
                    value: v.rest().to_vec(),
                })
            }
        };
        let value = v.u32("ProbeInformationData")?;
        v.finish("ProbeInformationData")?;
        Ok(make(value))
    }
}

/// `ProbeAns` — RFC 6940 §6.4.2.5.2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeAns {
    pub probe_info: Vec<ProbeInformation>,
}

impl Encode for ProbeAns {
    fn encode(&self, w: &mut Writer) {
        w.list(LenPrefix::U16, "ProbeAns.probe_info", &self.probe_info);
    }
}

impl Decode for ProbeAns {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ProbeAns {
            probe_info: r.list(LenPrefix::U16, "ProbeAns.probe_info", ProbeInformation::decode)?,
        })
    }
}
