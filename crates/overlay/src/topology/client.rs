//! A RELOAD client (RFC 6940 §3.2, §4.2.1): a node that uses the overlay
//! (Store, Fetch, AppAttach, …) but neither routes for others nor stores.
//!
//! Of the two ways §4.2.1 offers, this is the first: the client Attaches
//! to the peer responsible for its own Node-ID and sends everything through
//! that one link, so requests addressed to its Node-ID reach it like any
//! peer's ("the responsible peer in the overlay will handle the final step
//! of routing to the client").
//!
//! §4.2.1 warns that the responsible peer can change as peers come and go,
//! and that a client which misses this stops receiving messages. The
//! client's Attach asks for no Update (§6.4.2.3), so instead of reading
//! the peer's routing table the client Attaches to its own Node-ID again
//! every [`RECHECK_MS`] and after any Update or Leave from its peer; when
//! another peer answers, it moves its link there. This works with any
//! topology plugin the overlay runs.
//!
//! Peers need nothing special: a node that Attached without Joining is
//! kept out of their routing tables (§6.5.1: "clients (unlike peers) can
//! simply Attach without sending Join or Update").

use super::{Answer, Holding, RequestFailure, Topology, TopologyCommand};
use reload_wire::{Destination, ErrorCode, JoinReq, LeaveReq, NodeId, ResourceId, RouteQueryReq};

/// How often a client checks that its peer is still the one responsible
/// for its Node-ID.
pub const RECHECK_MS: u64 = 15_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    /// The first Attach, sent through the bootstrap link.
    Attaching {
        bootstrap: NodeId,
        token: u64,
    },
    Attached {
        peer: NodeId,
        /// A re-check Attach in flight.
        checking: Option<u64>,
        next_check: u64,
    },
    Left,
}

/// The client role behind the [`Topology`] interface.
#[derive(Debug)]
pub struct ClientTopology {
    me: NodeId,
    hash: fn(&[u8]) -> ResourceId,
    phase: Phase,
    next_token: u64,
}

impl ClientTopology {
    /// A client with Node-ID `me` in an overlay whose topology hashes
    /// Resource Names with `hash` (§6.4.1).
    pub fn new(me: NodeId, hash: fn(&[u8]) -> ResourceId) -> Self {
        ClientTopology {
            me,
            hash,
            phase: Phase::Idle,
            next_token: 1,
        }
    }

    /// The peer this client sends everything through, once attached.
    pub fn attached_peer(&self) -> Option<NodeId> {
        match self.phase {
            Phase::Attached { peer, .. } => Some(peer),
            _ => None,
        }
    }

    fn attach_to_own_id(&mut self, out: &mut Vec<TopologyCommand>) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        out.push(TopologyCommand::Attach {
            token,
            destination: vec![Destination::Resource(ResourceId(self.me.as_bytes().to_vec()))],
            send_update: false,
        });
        token
    }

    fn check_soon(&mut self, now: u64) {
        if let Phase::Attached { next_check, .. } = &mut self.phase {
            *next_check = now;
        }
    }
}

impl Topology for ClientTopology {
    fn name(&self) -> &'static str {
        "client"
    }

    fn local_id(&self) -> NodeId {
        self.me
    }

    fn resource_id(&self, name: &[u8]) -> ResourceId {
        (self.hash)(name)
    }

    /// A client is responsible for nothing; messages for its own Node-ID
    /// are delivered before this is asked (§6.1.1).
    fn is_responsible(&self, _id: &[u8]) -> bool {
        false
    }

    fn next_hop(&self, _id: &[u8]) -> Option<NodeId> {
        match self.phase {
            Phase::Attaching { bootstrap, .. } => Some(bootstrap),
            Phase::Attached { peer, .. } => Some(peer),
            Phase::Idle | Phase::Left => None,
        }
    }

    fn holding(&self, _resource: &[u8]) -> Holding {
        Holding::None
    }

    fn replica_set(&self, _resource: &[u8]) -> Option<Vec<NodeId>> {
        None
    }

    /// A client stores nothing, replicas included.
    fn plausible_replica_source(&self, _resource: &[u8], _sender: &NodeId) -> bool {
        false
    }

    fn is_joined(&self) -> bool {
        matches!(self.phase, Phase::Attached { .. })
    }

    fn neighbors(&self) -> Vec<NodeId> {
        self.attached_peer().into_iter().collect()
    }

    /// A client cannot start an overlay; it waits to be given a bootstrap
    /// link.
    fn start_alone(&mut self, _now: u64, _out: &mut Vec<TopologyCommand>) {}

    fn join(&mut self, _now: u64, bootstrap: NodeId, out: &mut Vec<TopologyCommand>) {
        let token = self.attach_to_own_id(out);
        self.phase = Phase::Attaching { bootstrap, token };
    }

    fn leave(&mut self, _now: u64, out: &mut Vec<TopologyCommand>) {
        // Nobody routes through a client: there is nothing to hand over
        // and no neighbour to tell.
        self.phase = Phase::Left;
        out.push(TopologyCommand::Left);
    }

    fn on_link_up(
        &mut self,
        _now: u64,
        _peer: NodeId,
        _we_attached: bool,
        _send_update: bool,
        _out: &mut Vec<TopologyCommand>,
    ) {
    }

    fn on_link_down(&mut self, _now: u64, peer: NodeId, out: &mut Vec<TopologyCommand>) {
        let lost = match self.phase {
            Phase::Attaching { bootstrap, .. } => bootstrap == peer,
            Phase::Attached { peer: p, .. } => p == peer,
            Phase::Idle | Phase::Left => false,
        };
        if lost {
            self.phase = Phase::Idle;
            out.push(TopologyCommand::Rejoin);
        }
    }

    /// §4.2.1: an Update may mean the peer is no longer responsible for
    /// this client; check now.
    fn on_update(
        &mut self,
        now: u64,
        _from: NodeId,
        _body: &[u8],
        _out: &mut Vec<TopologyCommand>,
    ) -> Result<Vec<u8>, ErrorCode> {
        self.check_soon(now);
        Ok(Vec::new())
    }

    fn on_join(
        &mut self,
        _now: u64,
        _from: NodeId,
        _req: &JoinReq,
        _out: &mut Vec<TopologyCommand>,
    ) -> Result<Vec<u8>, ErrorCode> {
        Err(ErrorCode::FORBIDDEN)
    }

    /// The peer leaving is usually ours: find the one taking over.
    fn on_leave(
        &mut self,
        now: u64,
        _from: NodeId,
        _req: &LeaveReq,
        _out: &mut Vec<TopologyCommand>,
    ) -> Result<(), ErrorCode> {
        self.check_soon(now);
        Ok(())
    }

    fn on_route_query(
        &mut self,
        _now: u64,
        _from: NodeId,
        _req: &RouteQueryReq,
        _out: &mut Vec<TopologyCommand>,
    ) -> Result<Vec<u8>, ErrorCode> {
        Err(ErrorCode::FORBIDDEN)
    }

    fn on_answer(
        &mut self,
        now: u64,
        token: u64,
        answer: Result<Answer, RequestFailure>,
        out: &mut Vec<TopologyCommand>,
    ) {
        match (&self.phase, answer) {
            (Phase::Attaching { bootstrap, token: t }, Ok(Answer { from, .. })) if *t == token => {
                if *bootstrap != from {
                    out.push(TopologyCommand::CloseLink(*bootstrap));
                }
                self.phase = Phase::Attached {
                    peer: from,
                    checking: None,
                    next_check: now + RECHECK_MS,
                };
                out.push(TopologyCommand::Joined);
            }
            (Phase::Attaching { token: t, .. }, Err(_)) if *t == token => {
                self.phase = Phase::Idle;
                out.push(TopologyCommand::Rejoin);
            }
            (
                Phase::Attached {
                    peer,
                    checking: Some(t),
                    ..
                },
                answer,
            ) if *t == token => {
                let old = *peer;
                let peer = match answer {
                    Ok(Answer { from, .. }) if from != old => {
                        out.push(TopologyCommand::CloseLink(old));
                        from
                    }
                    // Unchanged, or the check failed: keep the link we
                    // have; losing it is what makes a client start over.
                    _ => old,
                };
                self.phase = Phase::Attached {
                    peer,
                    checking: None,
                    next_check: now + RECHECK_MS,
                };
            }
            _ => {}
        }
    }

    fn responsible_ppb(&self) -> u32 {
        0
    }

    fn next_timer(&self) -> Option<u64> {
        match self.phase {
            Phase::Attached {
                checking: None,
                next_check,
                ..
            } => Some(next_check),
            _ => None,
        }
    }

    fn on_timer(&mut self, now: u64, out: &mut Vec<TopologyCommand>) {
        if self.next_timer().is_some_and(|t| now >= t) {
            let token = self.attach_to_own_id(out);
            if let Phase::Attached { checking, .. } = &mut self.phase {
                *checking = Some(token);
            }
        }
    }
}
