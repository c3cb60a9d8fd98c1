//! The topology-plugin boundary — RFC 6940 §6.4.1. Everything that depends
//! on the DHT algorithm lives behind [`Topology`]: who is responsible for
//! an ID, where a message goes next, which peers hold replicas, and how
//! joins, leaves and Updates change that. The overlay core (forwarding,
//! transactions, storage, links) is written against this trait only, so a
//! second algorithm (self-tuning Chord, RFC 7363; Kademlia) is a new
//! implementation of it and nothing else.

pub mod chord;
pub mod client;

use reload_wire::{Body, Destination, ErrorCode, ErrorResponse, JoinReq, LeaveReq, NodeId, ResourceId, RouteQueryReq};

/// Why a request a plugin asked for did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestFailure {
    /// No answer after every retransmission (§6.2.1).
    Timeout,
    /// The peer answered with an Error (§6.3.3.1).
    Error(ErrorResponse),
    /// There was no link to send it on.
    NoRoute,
}

/// The bootstrap peer a partition check reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeLink {
    pub peer: NodeId,
    /// The link was opened for the check (there was none before), so the
    /// plugin closes it afterwards unless it wants the peer.
    pub opened: bool,
}

/// A successful answer: who signed it and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub from: NodeId,
    pub body: Body,
}

/// What a plugin asks the overlay core to do. Plugins never build messages
/// or touch links themselves.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologyCommand {
    /// Originate a request and report its outcome with `token`
    /// ([`Topology::on_answer`]).
    Request {
        token: u64,
        destination: Vec<Destination>,
        body: Body,
    },
    /// Attach (§6.5.1) to the node a destination list leads to and open a
    /// link to it; the outcome comes back through [`Topology::on_answer`]
    /// (the AttachAns once the link is up) and [`Topology::on_link_up`].
    Attach {
        token: u64,
        destination: Vec<Destination>,
        send_update: bool,
    },
    /// Close the link to a peer the plugin no longer needs.
    CloseLink(NodeId),
    /// RFC 6940 §10.7.4.4: repeat the discovery of a bootstrap peer B (a
    /// fresh link to a bootstrap address), then send a Ping for `target`
    /// routed through B. The outcome comes back through
    /// [`Topology::on_bootstrap_probe`].
    ProbeThroughBootstrap { token: u64, target: Destination },
    /// The responsible range or the replica set changed: stored data must
    /// be re-checked (§10.7.3).
    ReplicasChanged,
    /// The peer is now part of the overlay (§10.5 step 7).
    Joined,
    /// Every neighbour is gone; the core should reconnect to a bootstrap
    /// peer and call [`Topology::join`] again (§10.7.1).
    Rejoin,
    /// Leave is complete; the node may exit (§10.9).
    Left,
}

/// The role of this peer for a Resource-ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// This peer is responsible for it.
    Responsible,
    /// This peer is the n-th replica (n >= 1).
    Replica(u8),
    /// This peer should not hold it.
    None,
}

/// Where a table's items are in memory: (start, bytes). For
/// [`Topology::hot_memory`], whose visitor takes any table's items.
pub fn memory_span<T>(items: &[T]) -> (*const u8, usize) {
    (items.as_ptr().cast(), std::mem::size_of_val(items))
}

/// A DHT algorithm — RFC 6940 §6.4.1.
///
/// All methods are synchronous and pure state transitions: inputs are the
/// current time in milliseconds and the event; outputs are appended to
/// `out`. A plugin draws randomness from a generator seeded at creation.
pub trait Topology {
    /// The algorithm's name in the configuration document (`topology-plugin`).
    fn name(&self) -> &'static str;

    fn local_id(&self) -> NodeId;

    /// The algorithm's hash of a Resource Name to a Resource-ID (§6.4.1).
    fn resource_id(&self, name: &[u8]) -> ResourceId;

    /// Whether this peer is responsible for an ID (§6.1): a Resource-ID's
    /// bytes, or a Node-ID's.
    fn is_responsible(&self, id: &[u8]) -> bool;

    /// The connected peer a message for `id` goes to next (§6.1.2), given
    /// that this peer is not responsible for it.
    fn next_hop(&self, id: &[u8]) -> Option<NodeId>;

    /// This peer's role for `resource` in the replication strategy (§6.4.1).
    fn holding(&self, resource: &[u8]) -> Holding;

    /// The peers that should hold `resource`, responsible first, as far as
    /// this peer can tell; `None` when it is too far away to know.
    fn replica_set(&self, resource: &[u8]) -> Option<Vec<NodeId>>;

    /// An ID that `holder`'s next replica is responsible for: a request
    /// routed to it reaches the peer after `holder` in the replica set, to
    /// ask a replica directly (RFC 7904 §4.2: when the responsible peer's
    /// answer is missing or does not verify). `None` when the algorithm
    /// cannot name one.
    fn next_replica_point(&self, _holder: &NodeId) -> Option<ResourceId> {
        None
    }

    /// Whether a replica Store for `resource` from `sender` is plausible
    /// (§7.4.1.1: it comes from a node in or closer than the replica set).
    fn plausible_replica_source(&self, resource: &[u8], sender: &NodeId) -> bool;

    /// Whether the peer has joined and routes for others.
    fn is_joined(&self) -> bool;

    /// Peers in the Neighbor Table (for status and tests).
    fn neighbors(&self) -> Vec<NodeId>;

    /// Whether `peer` is this node's first successor or first predecessor.
    /// A neighbour that leaves sends those a Leave first (§10.9), which
    /// drop it before its link closes; if one of them goes without a Leave
    /// (its link closes or falls silent), it is lost. Further entries may
    /// not have been told, and fingers never are, so losing them proves
    /// nothing.
    fn is_first_neighbor(&self, _peer: &NodeId) -> bool {
        false
    }

    /// Whether `peer` is in this node's routing tables (as opposed to a
    /// link it only serves, such as a client's or a joining node's).
    fn routes_through(&self, peer: &NodeId) -> bool {
        self.neighbors().contains(peer)
    }

    /// Start a new overlay alone (§6.4.2.1: "potentially the first node").
    fn start_alone(&mut self, now: u64, out: &mut Vec<TopologyCommand>);

    /// Join through the admitting peer reached over the link to `bootstrap`.
    fn join(&mut self, now: u64, bootstrap: NodeId, out: &mut Vec<TopologyCommand>);

    /// Leave gracefully (§6.4.2.2).
    fn leave(&mut self, now: u64, out: &mut Vec<TopologyCommand>);

    /// A link to `peer` is up. `we_attached` when this peer asked for it
    /// (it Attached to a peer in the overlay); `send_update` when the other
    /// side's Attach asked for an Update (§6.4.2.3).
    fn on_link_up(
        &mut self,
        now: u64,
        peer: NodeId,
        we_attached: bool,
        send_update: bool,
        out: &mut Vec<TopologyCommand>,
    );

    /// The link to `peer` is gone (closed, failed, or the peer left).
    fn on_link_down(&mut self, now: u64, peer: NodeId, out: &mut Vec<TopologyCommand>);

    /// An UpdateReq from `from` (§6.4.2.3). Returns the UpdateAns body.
    fn on_update(
        &mut self,
        now: u64,
        from: NodeId,
        body: &[u8],
        out: &mut Vec<TopologyCommand>,
    ) -> Result<Vec<u8>, ErrorCode>;

    /// A JoinReq arriving directly over the link from `from` (§6.4.2.1).
    /// Returns the JoinAns overlay_specific_data.
    fn on_join(
        &mut self,
        now: u64,
        from: NodeId,
        req: &JoinReq,
        out: &mut Vec<TopologyCommand>,
    ) -> Result<Vec<u8>, ErrorCode>;

    /// A LeaveReq arriving directly over the link from `from` (§6.4.2.2).
    fn on_leave(
        &mut self,
        now: u64,
        from: NodeId,
        req: &LeaveReq,
        out: &mut Vec<TopologyCommand>,
    ) -> Result<(), ErrorCode>;

    /// A RouteQueryReq (§6.4.2.4). Returns the RouteQueryAns body.
    fn on_route_query(
        &mut self,
        now: u64,
        from: NodeId,
        req: &RouteQueryReq,
        out: &mut Vec<TopologyCommand>,
    ) -> Result<Vec<u8>, ErrorCode>;

    /// The outcome of a [`TopologyCommand::Request`] or `Attach`.
    fn on_answer(
        &mut self,
        now: u64,
        token: u64,
        answer: Result<Answer, RequestFailure>,
        out: &mut Vec<TopologyCommand>,
    );

    /// The fraction of the ID space this peer is responsible for, in parts
    /// per billion (Probe responsible_set, §6.4.2.5).
    fn responsible_ppb(&self) -> u32;

    /// The outcome of a [`TopologyCommand::ProbeThroughBootstrap`]: the
    /// bootstrap peer reached (`None` when none was) and the node that
    /// answered the Ping.
    fn on_bootstrap_probe(
        &mut self,
        _now: u64,
        _token: u64,
        _bootstrap: Option<ProbeLink>,
        _responder: Result<NodeId, RequestFailure>,
        _out: &mut Vec<TopologyCommand>,
    ) {
    }

    /// The memory nearly every message reads (the routing tables), as
    /// (start, bytes) blocks (see [`memory_span`]), for a driver that loads
    /// it into cache ahead of the next event: the simulator, where a peer's
    /// tables have left the cache long before its next message. A hint only.
    fn hot_memory(&self, _visit: &mut dyn FnMut(*const u8, usize)) {}

    /// When [`on_timer`](Self::on_timer) next wants to run.
    fn next_timer(&self) -> Option<u64>;

    /// Periodic work: stabilization, finger refresh, delayed Updates.
    fn on_timer(&mut self, now: u64, out: &mut Vec<TopologyCommand>);

    /// A new configuration document changed the chord-* elements (§11.1):
    /// the next timers follow them.
    fn reconfigure(&mut self, _chord: &crate::config::ChordConfig) {}
}

impl std::fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestFailure::Timeout => f.write_str("no answer after every retransmission"),
            RequestFailure::NoRoute => f.write_str("no link into the overlay"),
            RequestFailure::Error(e) => write!(
                f,
                "{} ({})",
                e.error_code.name().unwrap_or("an unknown error"),
                String::from_utf8_lossy(&e.error_info)
                    .chars()
                    .take(120)
                    .collect::<String>()
            ),
        }
    }
}
