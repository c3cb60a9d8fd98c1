//! Chord-reload's overlay-specific bodies — RFC 6940 §10.7, §10.8, §10.9.
//! They travel inside the opaque overlay-specific fields of Update,
//! RouteQuery and Leave (§6.4.2).

use crate::codec::{Decode, Encode, LenPrefix, Reader, Writer};
use crate::error::DecodeError;
use crate::ids::NodeId;

/// `enum { invalidChordUpdateType(0), peer_ready(1), neighbors(2), full(3), (255) }`.
pub mod chord_update_type {
    pub const PEER_READY: u8 = 1;
    pub const NEIGHBORS: u8 = 2;
    pub const FULL: u8 = 3;
}

/// The variant part of a ChordUpdate — RFC 6940 §10.7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChordUpdateType {
    /// The sender has Attached and can now be routed through.
    PeerReady,
    /// Sent to members of the neighbor table.
    Neighbors {
        predecessors: Vec<NodeId>,
        successors: Vec<NodeId>,
    },
    /// Sent on a RouteQuery with send_update; fingers ascending.
    Full {
        predecessors: Vec<NodeId>,
        successors: Vec<NodeId>,
        fingers: Vec<NodeId>,
    },
}

/// `ChordUpdate` — RFC 6940 §10.7: the whole body of an update_req.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChordUpdate {
    /// Seconds the sender has been up.
    pub uptime: u32,
    pub update: ChordUpdateType,
}

fn node_list(w: &mut Writer, what: &'static str, ids: &[NodeId]) {
    w.list(LenPrefix::U16, what, ids);
}

fn read_node_list(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<NodeId>, DecodeError> {
    r.list(LenPrefix::U16, what, NodeId::decode)
}

impl Encode for ChordUpdate {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.uptime);
        match &self.update {
            ChordUpdateType::PeerReady => w.u8(chord_update_type::PEER_READY),
            ChordUpdateType::Neighbors {
                predecessors,
                successors,
            } => {
                w.u8(chord_update_type::NEIGHBORS);
                node_list(w, "ChordUpdate.predecessors", predecessors);
                node_list(w, "ChordUpdate.successors", successors);
            }
            ChordUpdateType::Full {
                predecessors,
                successors,
                fingers,
            } => {
                w.u8(chord_update_type::FULL);
                node_list(w, "ChordUpdate.predecessors", predecessors);
                node_list(w, "ChordUpdate.successors", successors);
                node_list(w, "ChordUpdate.fingers", fingers);
            }
        }
    }
}

impl Decode for ChordUpdate {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let uptime = r.u32("ChordUpdate.uptime")?;
        let update = match r.u8("ChordUpdate.type")? {
            chord_update_type::PEER_READY => ChordUpdateType::PeerReady,
            chord_update_type::NEIGHBORS => ChordUpdateType::Neighbors {
                predecessors: read_node_list(r, "ChordUpdate.predecessors")?,
                successors: read_node_list(r, "ChordUpdate.successors")?,
            },
            chord_update_type::FULL => ChordUpdateType::Full {
                predecessors: read_node_list(r, "ChordUpdate.predecessors")?,
                successors: read_node_list(r, "ChordUpdate.successors")?,
                fingers: read_node_list(r, "ChordUpdate.fingers")?,
            },
            t => {
                return Err(DecodeError::InvalidValue {
                    what: "ChordUpdate.type",
                    value: t.into(),
                })
            }
        };
        Ok(ChordUpdate { uptime, update })
    }
}

/// `ChordRouteQueryAns` — RFC 6940 §10.8: the whole body of a route_query_ans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChordRouteQueryAns {
    pub next_peer: NodeId,
}

impl Encode for ChordRouteQueryAns {
    fn encode(&self, w: &mut Writer) {
        self.next_peer.encode(w);
    }
}

impl Decode for ChordRouteQueryAns {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ChordRouteQueryAns {
            next_peer: NodeId::decode(r)?,
        })
    }
}

/// `enum { invalidChordLeaveType(0), from_succ(1), from_pred(2), (255) }`.
pub mod chord_leave_type {
    pub const FROM_SUCC: u8 = 1;
    pub const FROM_PRED: u8 = 2;
}

/// `ChordLeaveData` — RFC 6940 §10.9: the overlay_specific_data of a LeaveReq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChordLeaveData {
    /// Sent by a successor of the recipient: the sender's successor list.
    FromSucc { successors: Vec<NodeId> },
    /// Sent by a predecessor of the recipient: the sender's predecessor list.
    FromPred { predecessors: Vec<NodeId> },
}

impl Encode for ChordLeaveData {
    fn encode(&self, w: &mut Writer) {
        match self {
            ChordLeaveData::FromSucc { successors } => {
                w.u8(chord_leave_type::FROM_SUCC);
                node_list(w, "ChordLeaveData.successors", successors);
            }
            ChordLeaveData::FromPred { predecessors } => {
                w.u8(chord_leave_type::FROM_PRED);
                node_list(w, "ChordLeaveData.predecessors", predecessors);
            }
        }
    }
}

impl Decode for ChordLeaveData {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("ChordLeaveData.type")? {
            chord_leave_type::FROM_SUCC => Ok(ChordLeaveData::FromSucc {
                successors: read_node_list(r, "ChordLeaveData.successors")?,
            }),
            chord_leave_type::FROM_PRED => Ok(ChordLeaveData::FromPred {
                predecessors: read_node_list(r, "ChordLeaveData.predecessors")?,
            }),
            t => Err(DecodeError::InvalidValue {
                what: "ChordLeaveData.type",
                value: t.into(),
            }),
        }
    }
}
