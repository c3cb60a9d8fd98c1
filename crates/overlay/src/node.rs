//! The overlay core of one node — RFC 6940 §6.1-§6.5 and §7 — as a sans-IO
//! state machine. Inputs: bytes from a link, link up/down, timers, API
//! calls, each with the current time. Outputs: [`Action`]s (bytes to send
//! on a link, links to open or close, events for the application).
//!
//! Forwarding is stateless: a forwarding peer appends the previous hop to
//! the Via List (§6.1.2, first strategy), on answers as well as requests,
//! so an originator learns how many hops its request took.

use crate::config::OverlayConfig;
use crate::configuration::{compare_sequences, ConfigRefusal, ConfigurationKeeper, ANY_SEQUENCE};
use crate::ring::{distance, node_position};
use crate::security::{Credential, Security, Signer};
use crate::sorted::SortedSet;
use crate::storage::{Storage, StoreRequest};
use crate::topology::{Answer, Holding, ProbeLink, RequestFailure, Topology, TopologyCommand};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use reload_wire::fragment::{Reassembler, Reassembly};
use reload_wire::header::{forwarding_flags, ForwardingOption, RELOAD_VERSION};
use reload_wire::link_management::overlay_link_type;
use reload_wire::security::{Signature, SignerIdentity};
use reload_wire::topology::probe_information_type;
use reload_wire::Decode;
use reload_wire::{
    AttachReqAns, Body, CandType, DecodeContext, Destination, DestinationRef, Encode, ErrorCode, ErrorResponse,
    FetchReq, ForwardingHeader, HeaderView, IceCandidate, IpAddressPort, KindId, Message, MessageCode, MessageContents,
    NodeId, PingAns, ProbeAns, ProbeInformation, Reader, ResourceId, SecurityBlock, StoreKindData, StoreReq,
    StoredData, StoredDataValue, Writer,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;

mod config_update;
pub use config_update::Offered;
mod push_retry;
use push_retry::PushRetry;

/// Identifies a request the application started.
pub type RequestId = u64;

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a message on the link to `to`. `maintenance` tells overlay
    /// upkeep (topology, links, replication) from application traffic.
    Send {
        to: NodeId,
        bytes: Vec<u8>,
        maintenance: bool,
    },
    /// Open a link to `address`; `peer` is the Node-ID expected there
    /// (unknown for a bootstrap address). Report [`OverlayNode::link_up`]
    /// or [`OverlayNode::link_failed`].
    Connect {
        peer: Option<NodeId>,
        address: IpAddressPort,
    },
    /// Close the link to a peer.
    Close { peer: NodeId },
    /// Boxed: the largest variant by far, and the rarest, so a Send, the
    /// action a peer emits for almost every message, does not carry its
    /// size (160 bytes instead of 56; the simulator's profile showed these
    /// writes to each peer's queue among its costliest cache misses).
    Event(Box<Event>),
}

/// How long a node must stay joined for a later loss of the overlay to
/// count as the first in a row again.
const STABLE_MS: u64 = 60_000;
/// The first delayed rejoin waits this long; each next one twice as long.
const REJOIN_BACKOFF_MS: u64 = 1_000;
/// The longest a rejoin waits.
const MAX_REJOIN_BACKOFF_MS: u64 = 60_000;

/// How long a node waits before joining again, having lost the overlay
/// `in_a_row` times before without staying joined: not at all the first
/// time (a crashed neighbour, a healed partition), then 1 s, 2 s, 4 s, up
/// to a minute. RFC 6940 §10.5 leaves the retry policy to the
/// implementation.
pub fn rejoin_delay_ms(in_a_row: u32) -> u64 {
    match in_a_row {
        0 => 0,
        n => REJOIN_BACKOFF_MS
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_REJOIN_BACKOFF_MS),
    }
}

/// Something the application may want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The node is part of the overlay.
    Joined,
    /// The node lost the overlay and joins again in `after_ms`: at once
    /// the first time, then after a delay that doubles with each loss in a
    /// row (see [`rejoin_delay_ms`]).
    Rejoining { after_ms: u64 },
    /// A graceful leave finished; the node may exit.
    Left,
    /// A request the application started is finished.
    Done {
        request: RequestId,
        outcome: Result<Body, RequestFailure>,
        /// Overlay hops the request travelled (0: answered locally).
        hops: u32,
        latency_ms: u64,
        /// The node whose signed answer this is; this node itself when the
        /// request failed here (timeout, no route).
        responder: NodeId,
    },
    /// The link to `peer` was closed because the peer sent
    /// [`OFFENCES_TO_CLOSE`] malformed or forged messages of its own
    /// within [`OFFENCE_WINDOW_MS`]; new links from it are closed for
    /// [`BANNED_FOR_MS`].
    Misbehaving { peer: NodeId, why: &'static str },
    /// While joining, a peer refused this node's request with
    /// Error_Forbidden: `info` is its reason (for instance, another
    /// process already uses this Node-ID).
    Refused { by: NodeId, info: String },
    /// A replica Store of `resource` to `to` (§10.4) failed; it is tried
    /// again after a backoff. For the operator's logs: until it gets
    /// through, the resource has a copy fewer. `rounds` counts the rounds
    /// of its pushes that failed in a row (1: the first; common while the
    /// ring settles).
    ReplicaPushFailed {
        resource: ResourceId,
        to: NodeId,
        why: String,
        rounds: u32,
    },
    /// The node runs on a new configuration (§6.5.4): a new signed
    /// `document` (None when only Kinds changed) with `sequence`, taken
    /// from the node `from` (None: offered by the driver).
    Reconfigured {
        sequence: u16,
        document: Option<Arc<[u8]>>,
        from: Option<NodeId>,
    },
    /// A ConfigUpdate from `from` was refused.
    ConfigurationRefused { from: NodeId, refusal: ConfigRefusal },
    /// `by` answered Error_Config_Too_Old: this node runs an older
    /// document. `by` sends the newer one in a ConfigUpdate if it fits in
    /// a message; a driver may also fetch it from the configuration
    /// server (§6.5.4: "the only available recovery mechanism").
    ConfigurationStale { by: NodeId },
    /// A peer's Attach (§6.5.1) named where it takes links: what a driver
    /// needs to cache a peer that dialled this one (§11.4).
    PeerAddress { peer: NodeId, address: IpAddressPort },
}

/// One thing the engine did, for a driver's metrics (`/metrics`). The
/// engine records them only after [`OverlayNode::observe`] turned them on,
/// so the simulator, which reads [`NodeStats`], pays nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A message addressed to this node arrived and was decoded.
    Received { code: MessageCode },
    /// This node forwarded a message for others (§6.1.2).
    Forwarded { code: MessageCode },
    /// This node answered a request: `error` is `None` for a success.
    Answered {
        request: MessageCode,
        error: Option<ErrorCode>,
    },
    /// A request this node originated finished after `latency_ms`; an
    /// answer came back over `hops` overlay hops (0 when it was answered
    /// locally or not at all).
    Completed {
        request: MessageCode,
        result: CompletedResult,
        latency_ms: u64,
        hops: u32,
    },
}

/// How a request this node originated ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompletedResult {
    Success,
    /// The responder sent an Error answer.
    Error(ErrorCode),
    /// No answer after every retransmission (§6.2.1).
    Timeout,
    /// It could not be sent at all.
    NoRoute,
}

impl CompletedResult {
    fn of(outcome: &Result<Body, RequestFailure>) -> Self {
        match outcome {
            Ok(_) => CompletedResult::Success,
            Err(RequestFailure::Error(e)) => CompletedResult::Error(e.error_code),
            Err(RequestFailure::Timeout) => CompletedResult::Timeout,
            Err(RequestFailure::NoRoute) => CompletedResult::NoRoute,
        }
    }
}

/// Counters of what the node did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub maintenance_messages_sent: u64,
    pub maintenance_bytes_sent: u64,
    pub forwarded: u64,
    pub delivered: u64,
    pub malformed: u64,
    pub errors_sent: u64,
    /// Messages dropped because the routing table's next hop had no link:
    /// a node that has left still has its table, not its links.
    pub unroutable: u64,
    pub retransmissions: u64,
    pub timeouts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Purpose {
    App(RequestId),
    Topology(u64),
    Attach {
        token: u64,
    },
    Push {
        resource: ResourceId,
        to: NodeId,
        /// The version of the resource's values sent (storage::Resource).
        version: u64,
    },
    /// A copy this peer can no longer place, routed to whoever is
    /// responsible for its Resource-ID.
    Migrate {
        resource: ResourceId,
    },
    /// The Ping of a partition check, routed through `bootstrap`.
    Probe {
        token: u64,
        bootstrap: ProbeLink,
    },
    /// A link's keepalive: sent once, its answer and its loss ignored
    /// (the link layer judges the peer by the ACK).
    Keepalive,
    /// A ConfigUpdate handing on this node's configuration (§6.5.4); a
    /// refusal is the receiver's to report.
    ConfigPush,
}

impl Purpose {
    fn maintenance(&self) -> bool {
        !matches!(self, Purpose::App(_))
    }
}

#[derive(Debug)]
struct Outstanding {
    bytes: Vec<u8>,
    method: MessageCode,
    purpose: Purpose,
    transmissions: u8,
    deadline: u64,
    started: u64,
}

/// End-to-end retransmission deadlines (§6.2.1) by (time, transaction
/// id), soonest first. The soonest time is also kept beside the heap:
/// the driver asks for it after every event, and this way the answer
/// reads no memory beyond the node itself.
#[derive(Debug, Default)]
struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    soonest: Option<u64>,
}

impl Deadlines {
    fn push(&mut self, at: u64, tid: u64) {
        self.heap.push(Reverse((at, tid)));
        self.soonest = Some(self.soonest.map_or(at, |s| s.min(at)));
    }

    fn peek(&self) -> Option<(u64, u64)> {
        self.heap.peek().map(|Reverse(d)| *d)
    }

    fn pop(&mut self) -> Option<(u64, u64)> {
        let first = self.heap.pop().map(|Reverse(d)| d);
        self.soonest = self.peek().map(|(t, _)| t);
        first
    }

    fn soonest(&self) -> Option<u64> {
        self.soonest
    }
}

/// A partition check (§10.7.4.4) waiting for its link to a bootstrap
/// address; once the link is up its Ping is an ordinary outstanding
/// request.
#[derive(Debug)]
struct BootstrapProbe {
    token: u64,
    target: Destination,
    since: u64,
}

/// The Attach an AttachAns answered, kept until the link is up.
#[derive(Debug)]
struct AwaitingLink {
    token: u64,
    answer: Body,
    since: u64,
}

const LINK_SETUP_TIMEOUT_MS: u64 = 15_000;

/// Bytes of fragments (§6.7) a node holds while their messages are not
/// whole, at most.
pub const REASSEMBLY_BUFFER: usize = 4 * 1024 * 1024;

/// Malformed or forged messages a linked peer may send itself within
/// [`OFFENCE_WINDOW_MS`] before its link is closed: a few are a bug or a
/// race (a certificate that just expired), a stream of them an attack.
pub const OFFENCES_TO_CLOSE: u32 = 20;
pub const OFFENCE_WINDOW_MS: u64 = 60_000;
/// How long a peer closed for misbehaving is kept out.
pub const BANNED_FOR_MS: u64 = 600_000;
/// Peers with offences remembered at most.
const MAX_OFFENDERS: usize = 4096;

/// Rounds of hand-over pushes before a graceful leave gives up on data no
/// successor confirmed. A round that waits on a dead target lasts one
/// request lifetime (15 s), so the rounds take at most about 45 s and the
/// Leaves after them 15 s more.
const HANDOVER_ROUNDS: u8 = 3;

/// How long into a leave a failure still starts new pushes: late enough to
/// cover the rounds, early enough that they are answered (within a request
/// lifetime) before the 60 s the daemon and the simulator allow a leave.
const HANDOVER_RECHECK_MS: u64 = 40_000;

/// A graceful leave in progress. A round ends, and the node exits, only
/// once no push is in flight (`OverlayNode::pushing` is empty).
#[derive(Debug)]
struct Handover {
    started: u64,
    rounds_left: u8,
    /// The rounds are over and the Leaves went out.
    saying_goodbye: bool,
    /// The topology finished leaving while pushes were still in flight:
    /// the node exits when the last one is answered.
    exit_when_pushed: bool,
    /// `Event::Left` went out; nothing more happens.
    exited: bool,
}

/// One RELOAD node: forwarding, transactions, storage and a topology plugin.
pub struct OverlayNode<T: Topology, S: Security> {
    config: Arc<OverlayConfig>,
    ctx: Arc<DecodeContext>,
    overlay: u32,
    me: NodeId,
    address: IpAddressPort,
    topology: T,
    security: S,
    storage: Storage,
    rng: Xoshiro256PlusPlus,
    /// This run's PingAns `response_id` (see [`OverlayNode::instance_id`]).
    instance_id: u64,
    /// Routing-table peers whose links fell silent, until they resume or
    /// close.
    silent_routers: BTreeSet<NodeId>,
    /// Malformed or forged messages each linked peer sent itself, and
    /// peers whose links were closed for them, until when.
    offences: BTreeMap<NodeId, (u32, u64)>,
    banned: BTreeMap<NodeId, u64>,
    /// Fragments of messages for this node (§6.7).
    reassembly: Reassembler,
    started_at: u64,
    links: SortedSet<NodeId>,
    /// Links we are opening after an AttachAns, by expected peer.
    connecting: BTreeMap<NodeId, Vec<AwaitingLink>>,
    /// Peers whose Attach we answered, with their send_update flag.
    expected_links: BTreeMap<NodeId, (bool, u64)>,
    bootstraps: Vec<IpAddressPort>,
    next_bootstrap: usize,
    /// Times in a row the node lost the overlay without staying joined
    /// for [`STABLE_MS`] in between.
    rejoins_in_a_row: u32,
    /// When a delayed rejoin is due.
    rejoin_at: Option<u64>,
    /// When the node last joined, while it is joined.
    joined_at: Option<u64>,
    bootstrap_pending: bool,
    probe: Option<BootstrapProbe>,
    outstanding: BTreeMap<u64, Outstanding>,
    retransmit_at: Deadlines,
    answered: BTreeMap<u64, MessageContents>,
    answered_expiry: VecDeque<(u64, u64)>,
    pushing: BTreeSet<(ResourceId, NodeId)>,
    migrating: BTreeSet<ResourceId>,
    /// Every stored resource needs its replicas checked (the replica set
    /// moved, or the periodic retry is due).
    rebalance_needed: bool,
    /// Only these resources do (a Store changed them, or a push of them
    /// completed): checking one costs what checking all would cost per
    /// resource, so a Store must not walk the whole store.
    rebalance_soon: BTreeSet<ResourceId>,
    push_retry: PushRetry,
    next_sweep: u64,
    leaving: Option<Handover>,
    next_request: RequestId,
    actions: VecDeque<Action>,
    commands: Vec<TopologyCommand>,
    stats: NodeStats,
    observations: Option<VecDeque<Observation>>,
    /// Where this node's applications take AppAttach connections (§6.5.2),
    /// by Application-ID.
    applications: BTreeMap<u16, IpAddressPort>,
    /// The signed document behind `config` and the judge of updates.
    configuration: ConfigurationKeeper,
}

/// §7.1 signature input; array indexes are zeroed (§7.4.2.2) so an
/// appended value verifies at whatever index it landed.
fn data_signature_input<S: Security>(
    security: &S,
    resource: &ResourceId,
    kind: KindId,
    storage_time: u64,
    value: &StoredDataValue,
    identity: &reload_wire::SignerIdentity,
) -> Vec<u8> {
    if !security.needs_signature_input() {
        return Vec::new();
    }
    let mut v = value.clone();
    if let StoredDataValue::Array(a) = &mut v {
        a.index = 0;
    }
    StoredData::signature_input(resource, kind, storage_time, &v, identity).unwrap_or_default()
}

/// The signers of the stored values a message body carries, whose
/// certificates must travel with it (§6.3.4).
fn data_signers(body: &Body) -> Vec<&SignerIdentity> {
    let values: Box<dyn Iterator<Item = &StoredData>> = match body {
        Body::StoreReq(req) => Box::new(req.kind_data.iter().flat_map(|k| k.values.iter())),
        Body::FetchAns(ans) => Box::new(ans.kind_responses.iter().flat_map(|k| k.values.iter())),
        _ => return Vec::new(),
    };
    let mut signers: Vec<&SignerIdentity> = Vec::new();
    for v in values {
        if !signers.contains(&&v.signature.identity) {
            signers.push(&v.signature.identity);
        }
    }
    signers
}

/// A forwarded message's code, read without decoding the contents.
/// A whole message (§6.3): the header, then its contents and security
/// block.
fn encode(header: &ForwardingHeader, contents: &MessageContents, security_block: &SecurityBlock) -> Option<Vec<u8>> {
    let mut w = Writer::with_capacity(128 + contents.message_body.len());
    header.encode_with(&mut w, |w| {
        contents.encode(w);
        security_block.encode(w);
    });
    w.finish().ok()
}

/// RFC 6940 §6.3.2.1: a request delivered here must carry this node's
/// configuration sequence; otherwise the error that says whose document is
/// older (compared modulo 2^16, as TCP compares sequence numbers). A
/// ConfigUpdate with sequence 65535 is taken whatever this node's, and a
/// sequence of 0 is taken as unchecked.
fn sequence_mismatch(ours: u16, theirs: u16, code: MessageCode) -> Option<ErrorCode> {
    // 0 is what implementations send that do not track the sequence (the
    // Wireshark dissector reads it as "not verified"); refusing them would
    // keep them out of the overlay for a check they do not make.
    if theirs == 0 || (theirs == ANY_SEQUENCE && code == MessageCode::CONFIG_UPDATE_REQ) {
        return None;
    }
    match compare_sequences(theirs, ours) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Less => Some(ErrorCode::CONFIG_TOO_OLD),
        std::cmp::Ordering::Greater => Some(ErrorCode::CONFIG_TOO_NEW),
    }
}

/// RFC 6940 §6.3.2.3: whether `header` carries an option with `flag`.
/// This node understands no forwarding option (none is defined beyond
/// experimental ones), so any such option is one it does not understand.
fn critical(header: &ForwardingHeader, flag: u8) -> bool {
    header.options.iter().any(|o| o.flags & flag != 0)
}

fn peek_code(payload: &[u8]) -> MessageCode {
    match payload {
        [a, b, ..] => MessageCode(u16::from_be_bytes([*a, *b])),
        _ => MessageCode(0),
    }
}

/// Store, Fetch, Stat, Find and AppAttach, requests and answers: traffic
/// an application asked for rather than overlay upkeep.
fn is_application(code: MessageCode) -> bool {
    // §6.3.3: requests are odd, each answer is its request's code plus one.
    let request = if code.0.is_multiple_of(2) {
        MessageCode(code.0.wrapping_sub(1))
    } else {
        code
    };
    [
        MessageCode::STORE_REQ,
        MessageCode::FETCH_REQ,
        MessageCode::STAT_REQ,
        MessageCode::FIND_REQ,
        MessageCode::APP_ATTACH_REQ,
    ]
    .contains(&request)
}

/// §6.2.1: "For some requests (e.g., Fetch), this can be accomplished
/// merely by processing the request again. For other requests (e.g.,
/// Store), it may be necessary to maintain state". These are the others:
/// processing them twice would not give an equivalent answer (a second
/// Store is too old, a second Join or Attach acts twice). Probe, Fetch,
/// Stat, Find, Update, RouteQuery and Ping are answered afresh.
fn answer_is_cached(request: MessageCode) -> bool {
    [
        MessageCode::STORE_REQ,
        MessageCode::ATTACH_REQ,
        MessageCode::JOIN_REQ,
        MessageCode::LEAVE_REQ,
        MessageCode::APP_ATTACH_REQ,
        MessageCode::CONFIG_UPDATE_REQ,
    ]
    .contains(&request)
}

/// Whether any item equals an earlier one (§13.6.5 loop detection; the
/// lists are a few entries long).
fn repeats<T: PartialEq>(items: impl Iterator<Item = T> + Clone) -> bool {
    items
        .clone()
        .enumerate()
        .any(|(i, item)| items.clone().take(i).any(|earlier| earlier == item))
}

/// What the first Destination List entry means here (§6.1).
enum Hop {
    /// The message is for this node.
    Deliver,
    /// The entry is this node's and more follow: drop it and look again.
    Skip,
    Forward(NodeId),
    /// Not routable: §6.1.1 cases with nothing to do, or nothing linked
    /// to forward to.
    Drop(Dropped),
}

enum Dropped {
    Malformed,
    /// The next hop the topology names has no link (after `exit`).
    Unroutable,
    Silently,
}

impl<T: Topology, S: Security> OverlayNode<T, S> {
    pub fn new(
        config: Arc<OverlayConfig>,
        ctx: Arc<DecodeContext>,
        address: IpAddressPort,
        topology: T,
        security: S,
        seed: u64,
        now: u64,
    ) -> Self {
        let overlay = config.overlay_hash();
        let me = topology.local_id();
        OverlayNode {
            next_sweep: now + config.expiry_sweep_ms,
            config,
            ctx,
            overlay,
            me,
            address,
            topology,
            security,
            storage: Storage::new(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            instance_id: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x005E_ED1D).random(),
            started_at: now,
            silent_routers: BTreeSet::new(),
            offences: BTreeMap::new(),
            banned: BTreeMap::new(),
            reassembly: Reassembler::new(REASSEMBLY_BUFFER),
            links: SortedSet::new(),
            connecting: BTreeMap::new(),
            expected_links: BTreeMap::new(),
            bootstraps: Vec::new(),
            next_bootstrap: 0,
            rejoins_in_a_row: 0,
            rejoin_at: None,
            joined_at: None,
            bootstrap_pending: false,
            probe: None,
            outstanding: BTreeMap::new(),
            retransmit_at: Deadlines::default(),
            answered: BTreeMap::new(),
            answered_expiry: VecDeque::new(),
            pushing: BTreeSet::new(),
            migrating: BTreeSet::new(),
            rebalance_needed: false,
            rebalance_soon: BTreeSet::new(),
            push_retry: PushRetry::default(),
            leaving: None,
            next_request: 1,
            actions: VecDeque::new(),
            commands: Vec::new(),
            stats: NodeStats::default(),
            observations: None,
            applications: BTreeMap::new(),
            configuration: ConfigurationKeeper::default(),
        }
    }

    /// Turns recording of [`Observation`]s on or off.
    pub fn observe(&mut self, on: bool) {
        self.observations = on.then(VecDeque::new);
    }

    /// The next recorded [`Observation`], oldest first.
    pub fn poll_observation(&mut self) -> Option<Observation> {
        self.observations.as_mut()?.pop_front()
    }

    fn record(&mut self, observation: impl FnOnce() -> Observation) {
        if let Some(q) = &mut self.observations {
            q.push_back(observation());
        }
    }

    /// RFC 6940 §6.5.3 asks only that a PingAns `response_id` be random
    /// and tell Ping responses apart. This node draws it once per run and
    /// answers every Ping with it, so two links that present the same
    /// Node-ID can be told apart: one process answers both with the same
    /// id, two processes sharing a Node-ID (a copied node directory) with
    /// different ones. Transaction ids still tell the responses apart.
    pub fn instance_id(&self) -> u64 {
        self.instance_id
    }

    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// The address this node takes links on, as its Attaches name it.
    pub fn address(&self) -> &IpAddressPort {
        &self.address
    }

    pub fn topology(&self) -> &T {
        &self.topology
    }

    /// The node's credentials, to add or remove the users it signs as
    /// while it runs.
    pub fn security_mut(&mut self) -> &mut S {
        &mut self.security
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    pub fn links(&self) -> impl Iterator<Item = &NodeId> {
        self.links.iter()
    }

    pub fn is_joined(&self) -> bool {
        self.topology.is_joined()
    }

    /// The heap memory nearly every message at this node reads: its link
    /// table and the topology's routing tables, as (start, bytes) blocks
    /// (see [`Topology::hot_memory`]).
    pub fn hot_memory(&self, visit: &mut dyn FnMut(*const u8, usize)) {
        let (start, len) = crate::topology::memory_span(self.links.as_slice());
        visit(start, len);
        self.topology.hot_memory(visit);
    }

    pub fn uptime_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.started_at)
    }

    /// The next thing the driver must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front();
        if action.is_none() && self.actions.capacity() > 0 {
            // Drained: the buffer goes back to the allocator, whose next
            // block is one it handed out lately. A peer of a large
            // overlay handles an event now and then, and a buffer of its
            // own would be out of the cache by the next one.
            self.actions = VecDeque::new();
        }
        action
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = [
            self.retransmit_at.soonest(),
            self.topology.next_timer(),
            Some(self.next_sweep),
            self.rejoin_at,
            self.push_retry.due(),
        ]
        .into_iter()
        .flatten()
        .min();
        if self.rebalance_needed || !self.rebalance_soon.is_empty() {
            t = Some(0);
        }
        t
    }

    /// Joins again after losing the overlay: through a peer still linked,
    /// else the bootstrap addresses from the start.
    fn rejoin(&mut self, now: u64) {
        match self.links.iter().next().copied() {
            Some(peer) => self.topology.join(now, peer, &mut self.commands),
            None => {
                self.next_bootstrap = 0;
                self.connect_bootstrap(now);
            }
        }
    }

    /// Starts a new overlay alone.
    pub fn start_alone(&mut self, now: u64) {
        self.topology.start_alone(now, &mut self.commands);
        self.run_commands(now);
    }

    /// Joins through the first bootstrap address that answers (§11.4).
    pub fn join(&mut self, now: u64, bootstraps: Vec<IpAddressPort>) {
        self.bootstraps = bootstraps;
        self.next_bootstrap = 0;
        self.connect_bootstrap(now);
    }

    fn connect_bootstrap(&mut self, _now: u64) {
        if self.bootstraps.is_empty() {
            return;
        }
        let address = self.bootstraps[self.next_bootstrap % self.bootstraps.len()].clone();
        self.next_bootstrap += 1;
        self.bootstrap_pending = true;
        self.actions.push_back(Action::Connect { peer: None, address });
    }

    /// Leaves gracefully: hands stored data to the peers that will hold it,
    /// then sends Leave to the neighbours (§10.9). [`Event::Left`] follows.
    pub fn leave(&mut self, now: u64) {
        if self.leaving.is_some() {
            return;
        }
        // A leaving node checks for no partition.
        self.probe = None;
        self.leaving = Some(Handover {
            started: now,
            rounds_left: HANDOVER_ROUNDS,
            saying_goodbye: false,
            exit_when_pushed: false,
            exited: false,
        });
        self.hand_over(now);
    }

    /// One round of the hand-over: the first pushes everything to the
    /// replica set and the next successor; later rounds push again only
    /// what no peer of the current set has confirmed, to the set as it is
    /// now (a target may have crashed or refused meanwhile).
    fn hand_over(&mut self, now: u64) {
        let Some(handover) = &mut self.leaving else { return };
        let first = handover.rounds_left == HANDOVER_ROUNDS;
        handover.rounds_left = handover.rounds_left.saturating_sub(1);
        self.push_handover(now, first);
        // Pushes started before the leave are waited for too.
        if self.pushing.is_empty() {
            self.finish_handover(now);
        }
    }

    /// Who a leaving peer hands `id` to: the rest of its replica set and
    /// the next successor, who joins the set once this peer is gone.
    fn handover_targets(&self, id: &ResourceId) -> Option<Vec<NodeId>> {
        let mut targets = self.topology.replica_set(id.as_bytes())?;
        targets.retain(|n| *n != self.me);
        if let Some(next) = self.first_successor_not_in(&targets) {
            targets.push(next);
        }
        Some(targets)
    }

    /// While a leave is under way the set it hands over to can change: a
    /// peer that confirmed a copy may crash before this one is gone (its
    /// failure noticed only later). Copies whose every confirmed target
    /// left the set are pushed again to the set as it is now, and the
    /// leave does not finish before those pushes are answered.
    fn recheck_handover(&mut self, now: u64) {
        let Some(handover) = &self.leaving else { return };
        if handover.exited || now >= handover.started + HANDOVER_RECHECK_MS {
            return;
        }
        self.push_handover(now, false);
    }

    /// Pushes held copies to their [`Self::handover_targets`]: all of them
    /// when `all` (the first round), else only those no current target
    /// holds (holders that left the set are forgotten first).
    fn push_handover(&mut self, now: u64, all: bool) {
        for id in self.storage.resource_ids() {
            let Some(targets) = self.handover_targets(&id) else {
                continue;
            };
            let Some(r) = self.storage.resource_mut(&id) else {
                continue;
            };
            r.retain_holders(|h| targets.contains(h));
            if !all && targets.iter().any(|t| r.holds(t)) {
                continue;
            }
            for to in targets {
                self.push(now, &id, to, all);
            }
        }
    }

    fn first_successor_not_in(&self, set: &[NodeId]) -> Option<NodeId> {
        let me = node_position(&self.me);
        let mut succs: Vec<NodeId> = self.topology.neighbors();
        succs.sort_by_key(|n| distance(me, node_position(n)));
        succs.into_iter().find(|n| !set.contains(n))
    }

    fn finish_handover(&mut self, now: u64) {
        if let Some(handover) = &mut self.leaving {
            handover.saying_goodbye = true;
        }
        self.topology.leave(now, &mut self.commands);
        self.run_commands(now);
    }

    /// Stores values of one Kind at a Resource-ID, signing each (§7.4.1).
    pub fn store(
        &mut self,
        now: u64,
        resource: ResourceId,
        kind: KindId,
        values: Vec<StoredDataValue>,
        lifetime_s: u32,
    ) -> RequestId {
        self.store_signed(now, None, resource, kind, values, lifetime_s)
            .unwrap_or_default()
    }

    /// [`store`](Self::store) signed, values and message alike, as a user
    /// enrolled into this node (RFC 7904 §3.3: a SIP-REGISTRATION is
    /// written under USER-NODE-MATCH by the user's certificate). `None`
    /// when this node holds no certificate for `user`.
    pub fn store_as(
        &mut self,
        now: u64,
        user: &str,
        resource: ResourceId,
        kind: KindId,
        values: Vec<StoredDataValue>,
        lifetime_s: u32,
    ) -> Option<RequestId> {
        self.store_signed(now, Some(user), resource, kind, values, lifetime_s)
    }

    fn store_signed(
        &mut self,
        now: u64,
        user: Option<&str>,
        resource: ResourceId,
        kind: KindId,
        values: Vec<StoredDataValue>,
        lifetime_s: u32,
    ) -> Option<RequestId> {
        let signer = self.signer(user)?;
        let values = values
            .into_iter()
            .map(|value| self.sign_value(signer, &resource, kind, now, value, lifetime_s))
            .collect();
        let body = Body::StoreReq(StoreReq {
            resource: resource.clone(),
            replica_number: 0,
            kind_data: vec![StoreKindData {
                kind,
                generation_counter: 0,
                values,
            }],
        });
        Some(self.request_as(now, vec![Destination::Resource(resource)], body, user))
    }

    /// The node itself, or a user enrolled into it.
    fn signer(&self, user: Option<&str>) -> Option<&dyn Signer> {
        match user {
            None => Some(&self.security),
            Some(u) => self.security.user_signer(u),
        }
    }

    /// Fetches values (§7.4.2).
    pub fn fetch(&mut self, now: u64, req: FetchReq) -> RequestId {
        let dest = vec![Destination::Resource(req.resource.clone())];
        self.request(now, dest, Body::FetchReq(req))
    }

    /// Fetches from the replica after `holder` (RFC 7904 §4.2: "ask a
    /// replica" when the responsible peer's answer is missing or does not
    /// verify). A replica answers from its copy (§7.4.2 does not ask the
    /// answering peer to be responsible). `None` when the topology cannot
    /// name the next replica.
    pub fn fetch_after(&mut self, now: u64, req: FetchReq, holder: &NodeId) -> Option<RequestId> {
        let point = self.topology.next_replica_point(holder)?;
        Some(self.request(now, vec![Destination::Resource(point)], Body::FetchReq(req)))
    }

    /// Sends any request; [`Event::Done`] reports its outcome.
    pub fn request(&mut self, now: u64, destination: Vec<Destination>, body: Body) -> RequestId {
        self.request_as(now, destination, body, None)
    }

    fn request_as(&mut self, now: u64, destination: Vec<Destination>, body: Body, user: Option<&str>) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.originate_as(now, destination, &body, Purpose::App(id), user);
        self.after_event(now);
        id
    }

    /// Answers AppAttach for `application` (§6.5.2.2) with `address`, where
    /// the application listens. Without it an AppAttach for that
    /// Application-ID gets Error_Not_Found.
    pub fn offer_application(&mut self, application: u16, address: IpAddressPort) {
        self.applications.insert(application, address);
    }

    /// Asks `peer` where its `application` takes connections (§6.5.2.1);
    /// [`Event::Done`] carries the AppAttachAns, whose signer the engine
    /// checked like any answer's. The request offers this node's own
    /// address for the application when it has one.
    pub fn app_attach(&mut self, now: u64, peer: NodeId, application: u16) -> RequestId {
        let body = Body::AppAttachReq(self.app_attach_body(application, b"active"));
        self.request(now, vec![Destination::Node(peer)], body)
    }

    /// Decision 0007: no ICE for applications either; the one candidate
    /// is the application's listening address, a host candidate of the
    /// only no-ICE stream link type RFC 6940 registers.
    fn app_attach_body(&self, application: u16, role: &[u8]) -> reload_wire::AppAttachReq {
        reload_wire::AppAttachReq {
            ufrag: Vec::new(),
            password: Vec::new(),
            application,
            role: role.to_vec(),
            candidates: self
                .applications
                .get(&application)
                .map(|address| IceCandidate {
                    addr_port: address.clone(),
                    overlay_link: overlay_link_type::TLS_TCP_FH_NO_ICE,
                    foundation: b"1".to_vec(),
                    priority: 1,
                    cand_type: CandType::Host,
                    extensions: Vec::new(),
                })
                .into_iter()
                .collect(),
        }
    }

    /// Keeps only the fetched values whose signature verifies (§7.1) and
    /// whose signer the Kind's access policy lets write them (§7.3): what
    /// a Fetch answer says is only as good as the storing node, so the
    /// reader checks what it got (RFC 7904 §4.2). Returns how many values
    /// were dropped.
    pub fn keep_verified(&self, resource: &ResourceId, answer: &mut reload_wire::FetchAns) -> usize {
        let hash = |name: &[u8]| self.topology.resource_id(name);
        let mut dropped = 0;
        for kr in &mut answer.kind_responses {
            let Some(policy) = self.config.kind(kr.kind).map(|k| k.access) else {
                dropped += kr.values.len();
                kr.values.clear();
                continue;
            };
            let before = kr.values.len();
            kr.values.retain(|sd| {
                let input = data_signature_input(
                    &self.security,
                    resource,
                    kr.kind,
                    sd.storage_time,
                    &sd.value,
                    &sd.signature.identity,
                );
                self.security
                    .verify(&input, &sd.signature, &[])
                    .is_ok_and(|who| crate::storage::authorized(policy, resource, &sd.value, &who, &hash))
            });
            dropped += before - kr.values.len();
        }
        dropped
    }

    /// The Resource-ID of a Resource Name under the overlay's hash.
    pub fn resource_id(&self, name: &[u8]) -> ResourceId {
        self.topology.resource_id(name)
    }

    fn sign_value(
        &self,
        signer: &dyn Signer,
        resource: &ResourceId,
        kind: KindId,
        now: u64,
        value: StoredDataValue,
        lifetime: u32,
    ) -> StoredData {
        let identity = signer.identity();
        let input = data_signature_input(&self.security, resource, kind, now, &value, &identity);
        StoredData {
            storage_time: now,
            lifetime,
            value,
            signature: signer.sign(&input),
        }
    }

    // ----- links -------------------------------------------------------

    /// The link a [`Action::Connect`] without a Node-ID opened (to a
    /// bootstrap address) is up, with `peer` at the other end; drivers
    /// report it here and every other link through
    /// [`link_up`](Self::link_up), so a node that happens to dial us is
    /// never taken for our bootstrap peer.
    pub fn bootstrap_link_up(&mut self, now: u64, peer: NodeId) {
        if self.is_banned(now, &peer) {
            return self.actions.push_back(Action::Close { peer });
        }
        let opened = self.links.insert(peer);
        if self.bootstrap_pending {
            self.bootstrap_pending = false;
            self.topology.join(now, peer, &mut self.commands);
        } else if self.probe.is_some() && self.leaving.is_none() {
            self.bootstrap_reached(now, ProbeLink { peer, opened });
        } else if opened {
            // Nobody waits for it any more (its check timed out).
            self.links.remove(&peer);
            self.actions.push_back(Action::Close { peer });
        }
        self.after_event(now);
    }

    /// A link to `peer` (authenticated by the link layer) is up: one the
    /// peer dialled, or one dialled for a Node-ID an Attach named.
    pub fn link_up(&mut self, now: u64, peer: NodeId) {
        if self.is_banned(now, &peer) {
            return self.actions.push_back(Action::Close { peer });
        }
        self.links.insert(peer);
        if let Some(waiting) = self.connecting.remove(&peer) {
            self.topology.on_link_up(now, peer, true, false, &mut self.commands);
            for w in waiting {
                let answer = Ok(Answer {
                    from: peer,
                    body: w.answer,
                });
                self.topology.on_answer(now, w.token, answer, &mut self.commands);
            }
        } else {
            let send_update = self.expected_links.remove(&peer).is_some_and(|(s, _)| s);
            self.topology
                .on_link_up(now, peer, false, send_update, &mut self.commands);
        }
        self.after_event(now);
    }

    /// RFC 6940 §6.6.5: the link to `peer` carried nothing for a while
    /// and its link layer needs something the peer acknowledges, to tell
    /// a live peer from a silent one (see [`crate::link_liveness`]). A
    /// Ping (§6.5.3) to the neighbour itself goes over that link and
    /// nowhere else; it is never retransmitted. A link the engine does not
    /// use (not up yet, or taken out as silent) gets none.
    pub fn keepalive(&mut self, now: u64, peer: NodeId) {
        if !self.links.contains(&peer) {
            return;
        }
        let body = Body::PingReq(reload_wire::PingReq::default());
        self.originate(now, vec![Destination::Node(peer)], &body, Purpose::Keepalive);
        self.after_event(now);
    }

    /// RFC 6940 §6.6.5: the link to `peer`, taken out of the routing
    /// table because it stopped acknowledging ([`link_down`](Self::link_down)),
    /// acknowledges again: the failure was transient. The peer goes back
    /// into the routing table as one we attached to, and is sent an
    /// Update (§10.7.4.3) so both ends agree on the ring as it is now; the
    /// peer itself may not know it was missed (a process that was stopped
    /// saw no time pass).
    pub fn link_resumed(&mut self, now: u64, peer: NodeId) {
        // Only a peer that was in the routing table goes back into it: a
        // client or a joining node stays a link this node serves.
        let routed = self.silent_routers.remove(&peer);
        self.links.insert(peer);
        self.topology.on_link_up(now, peer, routed, routed, &mut self.commands);
        self.after_event(now);
    }

    /// RFC 6940 §6.6.5: the link to `peer` stopped acknowledging; the peer
    /// leaves the routing table as if its link had gone down
    /// ([`link_down`](Self::link_down)), and the link may resume
    /// ([`link_resumed`](Self::link_resumed)).
    pub fn link_silent(&mut self, now: u64, peer: NodeId) {
        let routed = self.topology.routes_through(&peer);
        self.link_down(now, peer);
        if routed {
            self.silent_routers.insert(peer);
        }
    }

    /// §6.3.3.1: answers a request that arrived from `link` with an Error
    /// and does nothing else with it: the driver refused the connection
    /// it came on (say, a second process claiming a Node-ID that is
    /// already here). Anything but a request is dropped.
    /// Returns the answer's bytes, for the driver to write on that very
    /// connection (the link table names another one for `link`).
    pub fn refuse(&mut self, link: NodeId, bytes: &[u8], code: ErrorCode, why: &str) -> Option<Vec<u8>> {
        let (request, payload) = ForwardingHeader::split(bytes, &self.ctx).ok()?;
        let method = peek_code(payload);
        if !method.is_request() {
            return None;
        }
        self.stats.errors_sent += 1;
        self.record(|| Observation::Answered {
            request: method,
            error: Some(code),
        });
        let body = Body::Error(ErrorResponse::new(code, why.as_bytes().to_vec()));
        let contents = MessageContents::from_body(&body).ok()?;
        let header = self.answer_header(Some(link), &request);
        self.encode_message(&header, &contents, &[], &self.security)
    }

    /// A Ping (§6.5.3) to `peer` whose bytes the driver writes on a
    /// connection of its choice (say, one of two that present `peer`'s
    /// Node-ID). Sent once: it times out after one reliability timer. Its
    /// outcome is an [`Event::Done`] like any request's.
    pub fn direct_ping(&mut self, now: u64, peer: NodeId) -> Option<(RequestId, Vec<u8>)> {
        let body = Body::PingReq(reload_wire::PingReq::default());
        let contents = MessageContents::from_body(&body).ok()?;
        let tid: u64 = self.rng.random();
        let mut header = ForwardingHeader::new(self.overlay, tid, vec![Destination::Node(peer)]);
        header.ttl = self.config.initial_ttl;
        header.configuration_sequence = self.config.configuration_sequence;
        let bytes = self.encode_message(&header, &contents, &[], &self.security)?;
        let id = self.next_request;
        self.next_request += 1;
        let deadline = now + self.config.reliability_timer_ms;
        self.outstanding.insert(
            tid,
            Outstanding {
                bytes: Vec::new(),
                method: MessageCode::PING_REQ,
                purpose: Purpose::App(id),
                // One transmission is all it gets.
                transmissions: self.config.max_retransmits.saturating_add(1),
                deadline,
                started: now,
            },
        );
        self.retransmit_at.push(deadline, tid);
        Some((id, bytes))
    }

    /// Opening a link failed. `peer` is `None` for a bootstrap address.
    pub fn link_failed(&mut self, now: u64, peer: Option<NodeId>) {
        match peer {
            // Not joining: the dial was a partition check's, if anyone's.
            None if !self.bootstrap_pending => self.probe_failed(now),
            None => {
                if self.next_bootstrap < self.bootstraps.len() * 3 {
                    self.connect_bootstrap(now);
                } else {
                    self.bootstrap_pending = false;
                }
            }
            Some(p) => {
                for w in self.connecting.remove(&p).unwrap_or_default() {
                    self.topology
                        .on_answer(now, w.token, Err(RequestFailure::NoRoute), &mut self.commands);
                }
            }
        }
        self.after_event(now);
    }

    /// §10.7.4.4: a partition check starts by reaching a bootstrap peer
    /// afresh, at the next bootstrap address that is not this node's own.
    fn start_probe(&mut self, now: u64, token: u64, target: Destination) {
        let address = (0..self.bootstraps.len())
            .map(|i| self.bootstraps[(self.next_bootstrap + i) % self.bootstraps.len()].clone())
            .find(|a| *a != self.address);
        let Some(address) = address.filter(|_| self.probe.is_none() && !self.bootstrap_pending) else {
            let failure = Err(RequestFailure::NoRoute);
            return self
                .topology
                .on_bootstrap_probe(now, token, None, failure, &mut self.commands);
        };
        self.next_bootstrap += 1;
        self.probe = Some(BootstrapProbe {
            token,
            target,
            since: now,
        });
        self.actions.push_back(Action::Connect { peer: None, address });
    }

    /// The probe's link is up: `bootstrap` is B. The Ping goes to the
    /// target through B ([Node(B), target], §6.1.1), so the answer comes
    /// from whichever partition B is in.
    fn bootstrap_reached(&mut self, now: u64, bootstrap: ProbeLink) {
        let Some(probe) = self.probe.take() else { return };
        if bootstrap.opened {
            self.topology
                .on_link_up(now, bootstrap.peer, false, false, &mut self.commands);
        }
        let destination = if probe.target == Destination::Node(bootstrap.peer) {
            vec![probe.target]
        } else {
            vec![Destination::Node(bootstrap.peer), probe.target]
        };
        let body = Body::PingReq(reload_wire::PingReq::default());
        let purpose = Purpose::Probe {
            token: probe.token,
            bootstrap,
        };
        self.originate(now, destination, &body, purpose);
    }

    fn probe_failed(&mut self, now: u64) {
        if let Some(probe) = self.probe.take() {
            let failure = Err(RequestFailure::NoRoute);
            self.topology
                .on_bootstrap_probe(now, probe.token, None, failure, &mut self.commands);
        }
    }

    /// §6.7: a fragment of a message for this node waits for the others;
    /// the whole message is then delivered as if it had come in one piece.
    /// Memory is bounded ([`REASSEMBLY_BUFFER`]); what is not whole within
    /// the request lifetime is dropped.
    fn reassemble(&mut self, now: u64, link: Option<NodeId>, header: ForwardingHeader, payload: &[u8]) {
        let mut w = Writer::with_capacity(payload.len() + 128);
        header.encode_with_payload(&mut w, payload);
        let Ok(fragment) = w.finish() else {
            return self.stats.malformed += 1;
        };
        match self.reassembly.push(now, &fragment, &self.ctx) {
            Ok(Reassembly::Complete(whole)) => match ForwardingHeader::split(&whole, &self.ctx) {
                Ok((header, payload)) if header.fragment.is_unfragmented() => {
                    self.deliver(now, link, header, payload, None)
                }
                _ => self.stats.malformed += 1,
            },
            Ok(Reassembly::Pending) => {}
            Ok(Reassembly::Dropped) | Err(_) => self.stats.malformed += 1,
        }
    }

    /// Counts a malformed or forged message that `peer` sent itself over
    /// its link; at [`OFFENCES_TO_CLOSE`] within [`OFFENCE_WINDOW_MS`] the
    /// link is closed and the peer kept out for [`BANNED_FOR_MS`]
    /// (issue 36 §12; RFC 6940 §13.6.4 leaves the policy to the node).
    fn offence(&mut self, now: u64, peer: NodeId, why: &'static str) {
        if self.offences.len() >= MAX_OFFENDERS && !self.offences.contains_key(&peer) {
            self.offences.retain(|_, (_, since)| *since + OFFENCE_WINDOW_MS > now);
            if self.offences.len() >= MAX_OFFENDERS {
                return;
            }
        }
        let entry = self.offences.entry(peer).or_insert((0, now));
        if entry.1 + OFFENCE_WINDOW_MS <= now {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 < OFFENCES_TO_CLOSE {
            return;
        }
        self.offences.remove(&peer);
        self.banned.retain(|_, until| *until > now);
        self.banned.insert(peer, now + BANNED_FOR_MS);
        self.actions
            .push_back(Action::Event(Box::new(Event::Misbehaving { peer, why })));
        self.actions.push_back(Action::Close { peer });
    }

    /// Whether `peer` was closed for misbehaving and is still kept out.
    pub fn is_banned(&self, now: u64, peer: &NodeId) -> bool {
        self.banned.get(peer).is_some_and(|until| *until > now)
    }

    /// The link to `peer` closed or failed.
    pub fn link_down(&mut self, now: u64, peer: NodeId) {
        self.silent_routers.remove(&peer);
        if !self.links.remove(&peer) {
            return;
        }
        self.topology.on_link_down(now, peer, &mut self.commands);
        self.after_event(now);
    }

    // ----- receiving ----------------------------------------------------

    /// A message arrived on the link from `link`.
    pub fn receive(&mut self, now: u64, link: NodeId, bytes: &[u8]) {
        let parsed = HeaderView::parse(bytes, &self.ctx).and_then(|view| {
            if self.relay(link, &view) {
                return Ok(None);
            }
            Ok(Some((view.to_header(&self.ctx)?, view.payload())))
        });
        match parsed {
            Ok(Some((header, payload))) => self.route(now, Some(link), header, payload, None, None),
            Ok(None) => {}
            Err(_) => {
                self.stats.malformed += 1;
                self.offence(now, link, "malformed forwarding headers");
            }
        }
        self.after_event(now);
    }

    /// §6.1.2: the fast path for a message this node only passes on: the
    /// header is rewritten from its bytes, the lists never decoded. False
    /// for anything else (delivery, an error to answer, a drop to count),
    /// which [`Self::route`] handles.
    fn relay(&mut self, from: NodeId, view: &HeaderView<'_>) -> bool {
        if !self.processable(view.overlay, view.version)
            || view.ttl == 0
            || view.ttl > self.config.initial_ttl
            || view.has_options()
        {
            return false;
        }
        let count = view.destination_count();
        let mut destinations = view.destinations();
        let mut skip = 0;
        let next = loop {
            let Some((first, _)) = destinations.next() else {
                return false;
            };
            match self.hop(first, skip + 1 == count) {
                Hop::Skip => skip += 1,
                Hop::Forward(next) => break next,
                Hop::Deliver | Hop::Drop(_) => return false,
            }
        };
        let code = peek_code(view.payload());
        // §13.6.5: a loop attempt gets its Error from `forward`.
        if code.is_request() && repeats(view.destinations().skip(skip).map(|(_, raw)| raw)) {
            return false;
        }
        let Some(bytes) = view.relayed(skip, &Destination::Node(from)) else {
            return false;
        };
        self.stats.forwarded += 1;
        self.record(|| Observation::Forwarded { code });
        self.transmit(next, bytes, !is_application(code));
        true
    }

    /// §6.1: whether this peer can process a message of this overlay and
    /// version at all. Fragments (§6.7) are forwarded like any message and
    /// reassembled only where they are delivered.
    fn processable(&self, overlay: u32, version: u8) -> bool {
        overlay == self.overlay && version == RELOAD_VERSION
    }

    /// §6.1, §10.3: what the first Destination List entry, `last` or not,
    /// asks of this node.
    fn hop(&self, first: DestinationRef<'_>, last: bool) -> Hop {
        match first {
            DestinationRef::Node(n) if n == self.me => {
                if last {
                    Hop::Deliver
                } else {
                    Hop::Skip
                }
            }
            DestinationRef::Node(n) if n.as_bytes().iter().all(|b| *b == 0xff) => Hop::Deliver,
            DestinationRef::Resource(r) if self.topology.is_responsible(r) => {
                // §6.1.1: a Resource-ID must be the last entry.
                if last {
                    Hop::Deliver
                } else {
                    Hop::Drop(Dropped::Malformed)
                }
            }
            DestinationRef::Node(n) if self.links.contains(&n) => Hop::Forward(n),
            // §6.1.1: a Node-ID we own that is not ours nor linked.
            DestinationRef::Node(n) if self.topology.is_responsible(n.as_bytes()) => Hop::Drop(Dropped::Silently),
            DestinationRef::Node(_) | DestinationRef::Resource(_) => {
                let target = match first {
                    DestinationRef::Node(ref n) => n.as_bytes(),
                    DestinationRef::Resource(r) => r,
                    _ => &[],
                };
                match self.topology.next_hop(target) {
                    // Nothing goes out without a link: after `exit` the
                    // topology still names the peers it had.
                    Some(next) if self.links.contains(&next) => Hop::Forward(next),
                    Some(_) => Hop::Drop(Dropped::Unroutable),
                    None => Hop::Drop(Dropped::Silently),
                }
            }
            // Opaque IDs are only meaningful to the peer that made them
            // and this implementation makes none (§6.1.3).
            _ => Hop::Drop(Dropped::Malformed),
        }
    }

    /// §6.1: examine the first Destination List entry until the message is
    /// delivered here, forwarded, or dropped. `unchanged` is the encoded
    /// message of a node's own origin, sent as it is while its header needs
    /// no change.
    fn route(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        mut header: ForwardingHeader,
        payload: &[u8],
        maintenance: Option<bool>,
        mut unchanged: Option<&[u8]>,
    ) {
        if !self.processable(header.overlay, header.version) {
            self.stats.malformed += 1;
            return;
        }
        let code = peek_code(payload);
        if header.ttl > self.config.initial_ttl {
            if code.is_request() {
                self.send_error(
                    now,
                    link,
                    &header,
                    code,
                    ErrorCode::TTL_EXCEEDED,
                    "TTL above initial-ttl",
                );
            }
            return;
        }
        loop {
            let Some(first) = header.destination_list.first() else {
                // An answer to a request this node sent to itself.
                return self.deliver(now, link, header, payload, None);
            };
            match self.hop(first.as_ref(), header.destination_list.len() == 1) {
                Hop::Deliver => return self.deliver(now, link, header, payload, None),
                Hop::Skip => {
                    header.destination_list.remove(0);
                    unchanged = None;
                }
                Hop::Forward(next) => {
                    if code.is_request() && critical(&header, forwarding_flags::FORWARD_CRITICAL) {
                        let why = "a FORWARD_CRITICAL forwarding option is not understood";
                        let refusal = ErrorCode::UNSUPPORTED_FORWARDING_OPTION;
                        return self.send_error(now, link, &header, code, refusal, why);
                    }
                    let m = maintenance.unwrap_or(!is_application(code));
                    return self.forward(now, link, header, payload, unchanged, next, m);
                }
                Hop::Drop(Dropped::Malformed) => return self.stats.malformed += 1,
                Hop::Drop(Dropped::Unroutable) => return self.stats.unroutable += 1,
                Hop::Drop(Dropped::Silently) => return,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        mut header: ForwardingHeader,
        payload: &[u8],
        unchanged: Option<&[u8]>,
        next: NodeId,
        maintenance: bool,
    ) {
        let code = peek_code(payload);
        if let Some(from) = link {
            // §13.6.5: a Destination List with duplicates is a loop attempt.
            if code.is_request() && repeats(header.destination_list.iter()) {
                self.send_error(
                    now,
                    link,
                    &header,
                    code,
                    ErrorCode::INVALID_MESSAGE,
                    "duplicate destination",
                );
                return;
            }
            // §6.3.2: TTL 0 and not for us.
            if header.ttl == 0 {
                if code.is_request() {
                    self.send_error(now, link, &header, code, ErrorCode::TTL_EXCEEDED, "TTL exceeded");
                }
                return;
            }
            header.ttl -= 1;
            header.via_list.push(Destination::Node(from));
            self.stats.forwarded += 1;
            self.record(|| Observation::Forwarded { code });
        } else if let Some(bytes) = unchanged {
            return self.transmit(next, bytes.to_vec(), maintenance);
        }
        let mut w = Writer::with_capacity(payload.len() + 64);
        header.encode_with_payload(&mut w, payload);
        if let Ok(bytes) = w.finish() {
            self.transmit(next, bytes, maintenance);
        }
    }

    fn transmit(&mut self, to: NodeId, bytes: Vec<u8>, maintenance: bool) {
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        if maintenance {
            self.stats.maintenance_messages_sent += 1;
            self.stats.maintenance_bytes_sent += bytes.len() as u64;
        }
        self.actions.push_back(Action::Send { to, bytes, maintenance });
    }

    /// §6.1.1: the message is for this node. `own` is the credential of a
    /// message this node sent to itself unsigned ([`Self::deliver_own`]).
    fn deliver(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        header: ForwardingHeader,
        payload: &[u8],
        own: Option<Credential>,
    ) {
        if !header.fragment.is_unfragmented() {
            return self.reassemble(now, link, header, payload);
        }
        let code = peek_code(payload);
        let mut r = Reader::new(payload, &self.ctx);
        let parsed = MessageContents::decode(&mut r).and_then(|c| {
            let sb = SecurityBlock::decode(&mut r)?;
            r.finish("Message")?;
            Ok((c, sb))
        });
        let Ok((contents, security_block)) = parsed else {
            self.stats.malformed += 1;
            if let Some(l) = link.filter(|_| header.via_list.is_empty()) {
                self.offence(now, l, "undecodable messages");
            }
            if code.is_request() {
                self.send_error(
                    now,
                    link,
                    &header,
                    code,
                    ErrorCode::INVALID_MESSAGE,
                    "undecodable message",
                );
            }
            return;
        };
        if own.is_none() && code.is_request() {
            if let Some(refusal) =
                sequence_mismatch(self.config.configuration_sequence, header.configuration_sequence, code)
            {
                self.send_error(now, link, &header, code, refusal, "configuration sequence differs");
                if refusal == ErrorCode::CONFIG_TOO_OLD {
                    // §6.3.2.1: "the node MUST generate a ConfigUpdate
                    // message to update the requesting node", along the
                    // path the answer took.
                    let path = self.answer_header(link, &header).destination_list;
                    self.tell_configuration(now, path);
                }
                return;
            }
            if critical(&header, forwarding_flags::DESTINATION_CRITICAL) {
                let why = "a DESTINATION_CRITICAL forwarding option is not understood";
                let refusal = ErrorCode::UNSUPPORTED_FORWARDING_OPTION;
                return self.send_error(now, link, &header, code, refusal, why);
            }
        }
        // §6.3.4: verify the message signature.
        let verified = match own {
            Some(credential) => Ok(credential),
            None => {
                let input = if self.security.needs_signature_input() {
                    Message::signature_input(
                        header.overlay,
                        header.transaction_id,
                        &contents,
                        &security_block.signature.identity,
                    )
                    .unwrap_or_default()
                } else {
                    Vec::new()
                };
                self.security
                    .verify(&input, &security_block.signature, &security_block.certificates)
            }
        };
        let credential = match verified {
            Ok(c) => c,
            Err(_) => {
                // A message the link's peer signed itself (no Via entry):
                // a peer relaying someone else's forgery is not to blame.
                if let Some(l) = link.filter(|_| header.via_list.is_empty()) {
                    self.offence(now, l, "messages with bad signatures");
                }
                if contents.message_code.is_request() {
                    self.send_error(
                        now,
                        link,
                        &header,
                        contents.message_code,
                        ErrorCode::FORBIDDEN,
                        "bad message signature",
                    );
                }
                return;
            }
        };
        let Some(sender) = credential
            .signer_node_id
            .or_else(|| credential.node_ids.first().copied())
        else {
            return;
        };
        self.stats.delivered += 1;
        let code = contents.message_code;
        self.record(|| Observation::Received { code });
        if contents.message_code.is_request() {
            self.handle_request(now, link, &header, contents, sender, &credential);
        } else {
            let hops = header.via_list.len() as u32 + link.is_some() as u32;
            self.handle_answer(now, &header, contents, sender, hops);
        }
    }

    fn handle_request(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        header: &ForwardingHeader,
        contents: MessageContents,
        sender: NodeId,
        credential: &Credential,
    ) {
        let tid = header.transaction_id;
        let cache = answer_is_cached(contents.message_code);
        // §6.2.1: a retransmission gets the same answer. Only answers to
        // the requests `answer_is_cached` names are kept; the others are
        // answered afresh without a look.
        if let Some(cached) = cache.then(|| self.answered.get(&tid)).flatten().cloned() {
            self.send_answer(now, link, header, cached, &[], true);
            return;
        }
        let maintenance = !is_application(contents.message_code);
        let answer = match contents.body(&self.ctx) {
            Ok(body) => self.dispatch(now, link, header, body, sender, credential),
            Err(reload_wire::DecodeError::UnknownKinds(kinds)) => Err(ErrorResponse::new(
                ErrorCode::UNKNOWN_KIND,
                reload_wire::storage::UnknownKinds(kinds).to_bytes().unwrap_or_default(),
            )),
            Err(e) => Err(ErrorResponse::new(
                ErrorCode::INVALID_MESSAGE,
                e.to_string().into_bytes(),
            )),
        };
        let request = contents.message_code;
        let body = match answer {
            Ok(b) => b,
            Err(e) => {
                self.stats.errors_sent += 1;
                Body::Error(e)
            }
        };
        let error = match &body {
            Body::Error(e) => Some(e.error_code),
            _ => None,
        };
        self.record(|| Observation::Answered { request, error });
        let Ok(contents) = MessageContents::from_body(&body) else {
            return;
        };
        // §6.3.2: max_response_length.
        let contents = if header.max_response_length != 0
            && contents.message_body.len() + 200 > header.max_response_length as usize
        {
            let e = Body::Error(ErrorResponse::new(
                ErrorCode::INCOMPATIBLE_WITH_OVERLAY,
                b"response longer than max_response_length".to_vec(),
            ));
            MessageContents::from_body(&e).unwrap_or(contents)
        } else {
            contents
        };
        if cache {
            self.forget_old_answers(now);
            self.answered.insert(tid, contents.clone());
            self.answered_expiry
                .push_back((now + self.config.request_lifetime_ms, tid));
        }
        self.send_answer(now, link, header, contents, &data_signers(&body), maintenance);
    }

    fn dispatch(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        header: &ForwardingHeader,
        body: Body,
        sender: NodeId,
        credential: &Credential,
    ) -> Result<Body, ErrorResponse> {
        let err = |code: ErrorCode, why: &str| ErrorResponse::new(code, why.as_bytes().to_vec());
        // §6.4.2.1-2: Join and Leave only over the sender's own link.
        let direct = if link == Some(sender) && header.via_list.is_empty() {
            Ok(())
        } else {
            Err(err(
                ErrorCode::FORBIDDEN,
                "Join and Leave must come over the sender's own link",
            ))
        };
        match body {
            Body::PingReq(_) => Ok(Body::PingAns(PingAns {
                response_id: self.instance_id,
                time: now,
            })),
            Body::ProbeReq(req) => {
                let probe_info = req
                    .requested_info
                    .iter()
                    .filter_map(|t| match *t {
                        probe_information_type::RESPONSIBLE_SET => {
                            Some(ProbeInformation::ResponsibleSet(self.topology.responsible_ppb()))
                        }
                        probe_information_type::NUM_RESOURCES => {
                            Some(ProbeInformation::NumResources(self.storage.resource_count() as u32))
                        }
                        probe_information_type::UPTIME => {
                            Some(ProbeInformation::Uptime((self.uptime_ms(now) / 1000) as u32))
                        }
                        _ => None,
                    })
                    .collect();
                Ok(Body::ProbeAns(ProbeAns { probe_info }))
            }
            Body::AttachReq(req) => {
                if let Some(c) = req.candidates.first() {
                    self.actions.push_back(Action::Event(Box::new(Event::PeerAddress {
                        peer: sender,
                        address: c.addr_port.clone(),
                    })));
                }
                if self.links.contains(&sender) {
                    self.topology
                        .on_link_up(now, sender, false, req.send_update, &mut self.commands);
                } else {
                    self.expected_links.insert(sender, (req.send_update, now));
                }
                Ok(Body::AttachAns(self.attach_body(b"passive", false)))
            }
            Body::StoreReq(req) => self.handle_store(now, req, sender, credential),
            Body::FetchReq(req) => self.storage.fetch(&self.config, &req).map(Body::FetchAns),
            Body::StatReq(req) => self.storage.stat(&self.config, &req).map(Body::StatAns),
            Body::FindReq(req) => {
                if !self.topology.is_responsible(req.resource.as_bytes()) {
                    return Err(err(ErrorCode::NOT_FOUND, "not responsible for this Resource-ID"));
                }
                self.storage.find(&self.config, &req).map(Body::FindAns)
            }
            Body::JoinReq(req) => {
                direct?;
                self.topology
                    .on_join(now, sender, &req, &mut self.commands)
                    .map(|data| {
                        Body::JoinAns(reload_wire::JoinAns {
                            overlay_specific_data: data,
                        })
                    })
                    .map_err(|c| err(c, "join refused"))
            }
            Body::LeaveReq(req) => {
                direct?;
                self.topology
                    .on_leave(now, sender, &req, &mut self.commands)
                    .map(|_| Body::LeaveAns)
                    .map_err(|c| err(c, "leave refused"))
            }
            Body::UpdateReq(data) => self
                .topology
                .on_update(now, sender, &data, &mut self.commands)
                .map(Body::UpdateAns)
                .map_err(|c| err(c, "bad Update")),
            Body::RouteQueryReq(req) => self
                .topology
                .on_route_query(now, sender, &req, &mut self.commands)
                .map(Body::RouteQueryAns)
                .map_err(|c| err(c, "bad RouteQuery")),
            Body::ConfigUpdateReq(req) => self.on_config_update(now, link, sender, req),
            Body::AppAttachReq(req) => {
                if self.applications.contains_key(&req.application) {
                    Ok(Body::AppAttachAns(self.app_attach_body(req.application, b"passive")))
                } else {
                    Err(err(ErrorCode::NOT_FOUND, "no such application on this node"))
                }
            }
            _ => Err(err(ErrorCode::INVALID_MESSAGE, "not a request this node handles")),
        }
    }

    /// Store — §7.4.1.1 with the replica rules of §10.4.
    fn handle_store(
        &mut self,
        now: u64,
        req: StoreReq,
        sender: NodeId,
        credential: &Credential,
    ) -> Result<Body, ErrorResponse> {
        let rid = req.resource.as_bytes().to_vec();
        let replica = req.replica_number != 0;
        if replica {
            // §7.4.1.1 wants replica Stores only from the replica set or
            // closer. The responsible peer also takes them from farther
            // away: after several concurrent joins the only copy may sit on
            // a peer that no longer sees the set, and every value is still
            // checked against its own signature and the Kind's access
            // policy (decision 0004).
            let accepted = match self.topology.holding(&rid) {
                Holding::Responsible => true,
                Holding::Replica(_) => self.topology.plausible_replica_source(&rid, &sender),
                Holding::None => false,
            };
            if !accepted {
                return Err(ErrorResponse::new(
                    ErrorCode::FORBIDDEN,
                    b"replica Store from a node outside the replica set".to_vec(),
                ));
            }
        } else if !self.topology.is_responsible(&rid) {
            return Err(ErrorResponse::new(
                ErrorCode::NOT_FOUND,
                b"not responsible for this Resource-ID".to_vec(),
            ));
        }
        let config = self.config.clone();
        let topology = &self.topology;
        let hash = |name: &[u8]| topology.resource_id(name);
        let security = &self.security;
        let verify = |resource: &ResourceId, kind: KindId, sd: &StoredData| {
            let input = data_signature_input(
                security,
                resource,
                kind,
                sd.storage_time,
                &sd.value,
                &sd.signature.identity,
            );
            security.verify(&input, &sd.signature, &[])
        };
        let mut ans = self.storage.store(
            &config,
            &req,
            replica,
            StoreRequest {
                now,
                // Anyone may send the responsible peer a replica Store.
                per_signer_quota: self.topology.is_responsible(&rid),
                request_signer: credential,
                verify: &verify,
                hash: &hash,
            },
        )?;
        let set = self.topology.replica_set(&rid).unwrap_or_default();
        if let Some(res) = self.storage.resource_mut(&req.resource) {
            // A sender outside the set hands its copy over and deletes it.
            if replica && set.contains(&sender) && res.is_exactly(&req.kind_data) {
                res.add_holder(sender);
            }
        }
        let replicas: Vec<NodeId> = set.into_iter().filter(|n| *n != self.me).collect();
        for k in &mut ans.kind_responses {
            k.replicas = replicas.clone();
        }
        self.rebalance_soon.insert(req.resource.clone());
        Ok(Body::StoreAns(ans))
    }

    fn attach_body(&self, role: &[u8], send_update: bool) -> AttachReqAns {
        AttachReqAns {
            ufrag: Vec::new(),
            password: Vec::new(),
            role: role.to_vec(),
            candidates: vec![IceCandidate {
                addr_port: self.address.clone(),
                overlay_link: overlay_link_type::TLS_TCP_FH_NO_ICE,
                foundation: b"1".to_vec(),
                priority: 1,
                cand_type: CandType::Host,
                extensions: Vec::new(),
            }],
            send_update,
        }
    }

    fn handle_answer(
        &mut self,
        now: u64,
        header: &ForwardingHeader,
        contents: MessageContents,
        sender: NodeId,
        hops: u32,
    ) {
        let Some(out) = self.outstanding.remove(&header.transaction_id) else {
            return; // late duplicate or unknown
        };
        let outcome = match contents.body(&self.ctx) {
            Ok(Body::Error(e)) => Err(RequestFailure::Error(e)),
            Ok(b) => Ok(b),
            Err(e) => Err(RequestFailure::Error(ErrorResponse::new(
                ErrorCode::INVALID_MESSAGE,
                e.to_string().into_bytes(),
            ))),
        };
        if let Err(RequestFailure::Error(e)) = &outcome {
            if e.error_code == ErrorCode::FORBIDDEN && out.purpose.maintenance() && !self.is_joined() {
                let info = String::from_utf8_lossy(&e.error_info).into_owned();
                self.actions
                    .push_back(Action::Event(Box::new(Event::Refused { by: sender, info })));
            }
        }
        self.complete(now, out, outcome, sender, hops);
    }

    fn complete(&mut self, now: u64, out: Outstanding, outcome: Result<Body, RequestFailure>, from: NodeId, hops: u32) {
        self.record(|| Observation::Completed {
            request: out.method,
            result: CompletedResult::of(&outcome),
            latency_ms: now.saturating_sub(out.started),
            hops,
        });
        if let Err(RequestFailure::Error(e)) = &outcome {
            if e.error_code == ErrorCode::CONFIG_TOO_NEW && from != self.me {
                // §6.5.4: the responder runs an older document.
                self.tell_configuration(now, vec![Destination::Node(from)]);
            } else if e.error_code == ErrorCode::CONFIG_TOO_OLD && from != self.me {
                self.actions
                    .push_back(Action::Event(Box::new(Event::ConfigurationStale { by: from })));
            }
        }
        match out.purpose {
            Purpose::App(request) => self.actions.push_back(Action::Event(Box::new(Event::Done {
                request,
                outcome,
                hops,
                latency_ms: now.saturating_sub(out.started),
                responder: from,
            }))),
            Purpose::Topology(token) => {
                let answer = outcome.map(|body| Answer { from, body });
                self.topology.on_answer(now, token, answer, &mut self.commands);
            }
            Purpose::Attach { token } => match outcome {
                Ok(Body::AttachAns(_)) if from == self.me => {
                    // This node answered its own Attach (it is responsible
                    // for the target in its own view, as while it joins):
                    // there is no one to link to, and dialling its own
                    // address would only be refused as a copy of itself.
                    self.topology
                        .on_answer(now, token, Err(RequestFailure::NoRoute), &mut self.commands);
                }
                Ok(Body::AttachAns(ans)) => {
                    let address = ans.candidates.first().map(|c| c.addr_port.clone());
                    if self.links.contains(&from) {
                        self.topology.on_link_up(now, from, true, false, &mut self.commands);
                        let answer = Ok(Answer {
                            from,
                            body: Body::AttachAns(ans),
                        });
                        self.topology.on_answer(now, token, answer, &mut self.commands);
                    } else if let Some(address) = address {
                        let first = !self.connecting.contains_key(&from);
                        self.connecting.entry(from).or_default().push(AwaitingLink {
                            token,
                            answer: Body::AttachAns(ans),
                            since: now,
                        });
                        if first {
                            self.actions.push_back(Action::Connect {
                                peer: Some(from),
                                address,
                            });
                        }
                    } else {
                        self.topology
                            .on_answer(now, token, Err(RequestFailure::NoRoute), &mut self.commands);
                    }
                }
                Ok(_) | Err(_) => {
                    let failure = outcome.err().unwrap_or(RequestFailure::NoRoute);
                    self.topology.on_answer(now, token, Err(failure), &mut self.commands);
                }
            },
            Purpose::Keepalive | Purpose::ConfigPush => {}
            Purpose::Probe { token, bootstrap } => {
                let responder = outcome.map(|_| from);
                self.topology
                    .on_bootstrap_probe(now, token, Some(bootstrap), responder, &mut self.commands);
            }
            Purpose::Migrate { resource } => {
                self.migrating.remove(&resource);
                // Taken by the responsible peer, or it has the same values
                // or newer ones: either way this copy is no longer needed.
                // A copy the ring has since brought back into our set stays.
                if matches!(outcome, Ok(Body::StoreAns(_)))
                    && self.topology.holding(resource.as_bytes()) == Holding::None
                    && from != self.me
                {
                    self.storage.remove(&resource);
                }
            }
            Purpose::Push { resource, to, version } => {
                self.pushing.remove(&(resource.clone(), to));
                let ok = matches!(outcome, Ok(Body::StoreAns(_)));
                if ok {
                    // Only the values sent are confirmed: a Store that
                    // changed them meanwhile found this push in flight and
                    // could not send its own.
                    if let Some(r) = self.storage.resource_mut(&resource).filter(|r| r.version() == version) {
                        r.add_holder(to);
                    }
                }
                if let Some(handover) = &self.leaving {
                    if self.pushing.is_empty() && !handover.exited {
                        if handover.exit_when_pushed {
                            self.exit();
                        } else if handover.saying_goodbye {
                            // Waiting for the Leaves' answers still.
                        } else if handover.rounds_left > 0 {
                            self.hand_over(now);
                        } else {
                            self.finish_handover(now);
                        }
                    }
                } else if ok {
                    // Changed while the push was in flight? Then the new
                    // values go out now.
                    self.push_retry.succeeded(&resource);
                    self.rebalance_soon.insert(resource);
                } else {
                    let why = match &outcome {
                        Err(e) => e.to_string(),
                        Ok(_) => "an answer other than StoreAns".to_string(),
                    };
                    let rounds = self.push_retry.failed(now, resource.clone());
                    self.actions.push_back(Action::Event(Box::new(Event::ReplicaPushFailed {
                        resource,
                        to,
                        why,
                        rounds,
                    })));
                }
            }
        }
    }

    // ----- sending ------------------------------------------------------

    fn sign_contents(
        &self,
        tid: u64,
        contents: &MessageContents,
        data_signers: &[&SignerIdentity],
        signer: &dyn Signer,
    ) -> SecurityBlock {
        let identity = signer.identity();
        let mut certificates = signer.certificates();
        if !data_signers.is_empty() {
            certificates.extend(self.security.certificates_for(data_signers));
        }
        let input = if self.security.needs_signature_input() {
            Message::signature_input(self.overlay, tid, contents, &identity).unwrap_or_default()
        } else {
            Vec::new()
        };
        SecurityBlock {
            certificates,
            signature: signer.sign(&input),
        }
    }

    /// A message for this node itself: its security block is the empty
    /// {0, 0} signature and no certificates, as nobody else ever reads it
    /// ([`Self::deliver_own`]).
    fn encode_unsigned(&self, header: &ForwardingHeader, contents: &MessageContents) -> Option<Vec<u8>> {
        let security_block = SecurityBlock {
            certificates: Vec::new(),
            signature: Signature::anonymous(),
        };
        encode(header, contents, &security_block)
    }

    /// Delivers a message this node sent to itself and did not sign: a
    /// request for a resource it is responsible for, or the answer to one.
    /// §6.3.4 has every message signed so that the nodes it crosses and
    /// reaches can tell who sent it; this one crosses none and reaches its
    /// sender, which knows. `credential` is what verifying the signature
    /// would have given ([`Security::own_credential`]). Its bytes never go
    /// to a link: a request still unanswered after delivery is signed
    /// before it can be retransmitted (see [`Self::originate_as`]).
    fn deliver_own(&mut self, now: u64, bytes: &[u8], credential: Credential) {
        if let Ok((header, payload)) = ForwardingHeader::split(bytes, &self.ctx) {
            self.deliver(now, None, header, payload, Some(credential));
        }
    }

    fn encode_message(
        &self,
        header: &ForwardingHeader,
        contents: &MessageContents,
        data_signers: &[&SignerIdentity],
        signer: &dyn Signer,
    ) -> Option<Vec<u8>> {
        let security_block = self.sign_contents(header.transaction_id, contents, data_signers, signer);
        encode(header, contents, &security_block)
    }

    /// §6.2.1: build, sign and send a request; remember it for
    /// retransmission.
    fn originate(&mut self, now: u64, destination: Vec<Destination>, body: &Body, purpose: Purpose) {
        self.originate_as(now, destination, body, purpose, None)
    }

    /// [`originate`](Self::originate), signed as `user` when one is given.
    fn originate_as(
        &mut self,
        now: u64,
        destination: Vec<Destination>,
        body: &Body,
        purpose: Purpose,
        user: Option<&str>,
    ) {
        let tid: u64 = self.rng.random();
        let method = body.message_code();
        let Ok(contents) = MessageContents::from_body(body) else {
            return self.fail_now(now, method, purpose);
        };
        // A request this node will deliver to itself goes unsigned.
        let own = match destination.as_slice() {
            [only] if matches!(self.hop(only.as_ref(), true), Hop::Deliver) => self.security.own_credential(user).ok(),
            _ => None,
        };
        let mut header = ForwardingHeader::new(self.overlay, tid, destination);
        header.ttl = self.config.initial_ttl;
        // §6.3.2.1: a ConfigUpdate carries 65535, so that a node running
        // another document takes it.
        header.configuration_sequence = if method == MessageCode::CONFIG_UPDATE_REQ {
            ANY_SEQUENCE
        } else {
            self.config.configuration_sequence
        };
        let sign = |node: &Self| {
            node.signer(user)
                .and_then(|signer| node.encode_message(&header, &contents, &data_signers(body), signer))
        };
        let encoded = match own {
            Some(_) => self.encode_unsigned(&header, &contents),
            None => sign(self),
        };
        let Some(bytes) = encoded else {
            return self.fail_now(now, method, purpose);
        };
        let deadline = now + self.config.reliability_timer_ms;
        let maintenance = purpose.maintenance();
        self.outstanding.insert(
            tid,
            Outstanding {
                bytes: bytes.clone(),
                method,
                purpose,
                transmissions: 1,
                deadline,
                started: now,
            },
        );
        self.retransmit_at.push(deadline, tid);
        match own {
            Some(credential) => {
                self.deliver_own(now, &bytes, credential);
                // Not answered at once: a retransmission may go to another
                // node by then, so it must be signed.
                if self.outstanding.contains_key(&tid) {
                    match sign(self) {
                        Some(signed) => {
                            if let Some(o) = self.outstanding.get_mut(&tid) {
                                o.bytes = signed;
                            }
                        }
                        None => {
                            if let Some(o) = self.outstanding.remove(&tid) {
                                self.complete(now, o, Err(RequestFailure::NoRoute), self.me, 0);
                            }
                        }
                    }
                }
            }
            None => self.route_own(now, &bytes, maintenance),
        }
    }

    /// Routes a message this node just encoded (a request, a retransmission
    /// or an answer) as if it had arrived, minus the Via List entry.
    fn route_own(&mut self, now: u64, bytes: &[u8], maintenance: bool) {
        if let Ok((header, payload)) = ForwardingHeader::split(bytes, &self.ctx) {
            self.route(now, None, header, payload, Some(maintenance), Some(bytes));
        }
    }

    fn fail_now(&mut self, now: u64, method: MessageCode, purpose: Purpose) {
        let out = Outstanding {
            bytes: Vec::new(),
            method,
            purpose,
            transmissions: 0,
            deadline: now,
            started: now,
        };
        self.complete(now, out, Err(RequestFailure::NoRoute), self.me, 0);
    }

    /// §6.2.2: the header of an answer to `request` from `link`: back along
    /// the reversed Via List.
    fn answer_header(&self, link: Option<NodeId>, request: &ForwardingHeader) -> ForwardingHeader {
        let mut path: Vec<Destination> = request.via_list.clone();
        if let Some(l) = link {
            path.push(Destination::Node(l));
        }
        path.reverse();
        let mut header = ForwardingHeader::new(self.overlay, request.transaction_id, path);
        header.ttl = self.config.initial_ttl;
        header.configuration_sequence = self.config.configuration_sequence;
        // §6.3.2.3: RESPONSE_COPY options come back, with no flags set.
        header.options = request
            .options
            .iter()
            .filter(|o| o.flags & forwarding_flags::RESPONSE_COPY != 0)
            .map(|o| ForwardingOption { flags: 0, ..o.clone() })
            .collect();
        header
    }

    /// §6.2.2: the answer goes back along the reversed Via List.
    fn send_answer(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        request: &ForwardingHeader,
        contents: MessageContents,
        data_signers: &[&SignerIdentity],
        maintenance: bool,
    ) {
        let header = self.answer_header(link, request);
        // The answer to a request this node sent itself goes unsigned.
        if header.destination_list.is_empty() {
            if let Ok(credential) = self.security.own_credential(None) {
                if let Some(bytes) = self.encode_unsigned(&header, &contents) {
                    self.deliver_own(now, &bytes, credential);
                }
                return;
            }
        }
        let Some(bytes) = self.encode_message(&header, &contents, data_signers, &self.security) else {
            return;
        };
        match header.destination_list.first() {
            Some(Destination::Node(n)) if self.links.contains(n) => {
                let n = *n;
                self.transmit(n, bytes, maintenance);
            }
            _ => {
                self.route_own(now, &bytes, maintenance);
            }
        }
    }

    /// An Error answer to a request this node did not process: it could
    /// not be routed, decoded or verified.
    fn send_error(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        header: &ForwardingHeader,
        request: MessageCode,
        code: ErrorCode,
        why: &str,
    ) {
        self.stats.errors_sent += 1;
        self.record(|| Observation::Answered {
            request,
            error: Some(code),
        });
        let body = Body::Error(ErrorResponse::new(code, why.as_bytes().to_vec()));
        if let Ok(contents) = MessageContents::from_body(&body) {
            self.send_answer(now, link, header, contents, &[], true);
        }
    }

    /// Sends a replica Store of everything held under `resource` to `to`.
    /// Returns whether a Store went out.
    fn push(&mut self, now: u64, resource: &ResourceId, to: NodeId, force: bool) -> bool {
        if to == self.me || self.pushing.contains(&(resource.clone(), to)) {
            return false;
        }
        let Some(res) = self.storage.resource(resource) else {
            return false;
        };
        if !force && res.holds(&to) {
            return false;
        }
        let version = res.version();
        let replica_number = self
            .topology
            .replica_set(resource.as_bytes())
            .and_then(|s| s.iter().position(|n| *n == to))
            .unwrap_or(1)
            .max(1) as u8;
        let Some(body) = self.replica_store(now, resource, replica_number) else {
            return false;
        };
        self.pushing.insert((resource.clone(), to));
        let dest = vec![Destination::Node(to)];
        self.originate(
            now,
            dest,
            &body,
            Purpose::Push {
                resource: resource.clone(),
                to,
                version,
            },
        );
        true
    }

    /// A replica StoreReq of everything held under `resource`, lifetimes
    /// shortened by the time spent here; `None` when nothing is left.
    fn replica_store(&self, now: u64, resource: &ResourceId, replica_number: u8) -> Option<Body> {
        let kind_data = self.storage.resource(resource)?.export(now);
        (!kind_data.is_empty()).then(|| {
            Body::StoreReq(StoreReq {
                resource: resource.clone(),
                replica_number,
                kind_data,
            })
        })
    }

    /// Sends a replica Store of everything held under `resource` towards
    /// the Resource-ID itself; the peer that answers is responsible for it.
    fn migrate(&mut self, now: u64, resource: &ResourceId) {
        if self.migrating.contains(resource) {
            return;
        }
        let Some(body) = self.replica_store(now, resource, 1) else {
            return;
        };
        self.migrating.insert(resource.clone());
        let dest = vec![Destination::Resource(resource.clone())];
        let purpose = Purpose::Migrate {
            resource: resource.clone(),
        };
        self.originate(now, dest, &body, purpose);
    }

    /// §10.4 and §10.7.3: the responsible peer makes sure every replica has
    /// the data; a replica makes sure the responsible peer has it; a peer
    /// that left the replica set hands its data to the responsible peer and
    /// deletes it once that peer has it.
    fn rebalance(&mut self, now: u64) {
        self.rebalance_needed = false;
        self.rebalance_soon.clear();
        if self.leaving.is_some() {
            self.recheck_handover(now);
            return;
        }
        if !self.topology.is_joined() {
            return;
        }
        for id in self.storage.resource_ids() {
            self.rebalance_resource(now, &id);
        }
    }

    /// [`Self::rebalance`] for the resources in `rebalance_soon` alone.
    fn rebalance_changed(&mut self, now: u64) {
        let changed = std::mem::take(&mut self.rebalance_soon);
        if self.leaving.is_some() {
            // A Store taken during the leave must reach the set too.
            self.recheck_handover(now);
            return;
        }
        if !self.topology.is_joined() {
            return;
        }
        for id in changed {
            if self.storage.resource(&id).is_some() {
                self.rebalance_resource(now, &id);
            }
        }
    }

    fn rebalance_resource(&mut self, now: u64, id: &ResourceId) {
        let rid = id.as_bytes();
        let Some(set) = self.topology.replica_set(rid) else {
            // §10.7.3: "there are three predecessors between x and R" — no
            // longer in the replica set, and too far away to name it.
            // Peers that joined in between may never have been handed the
            // data (concurrent joins), and the old set's members may all
            // have moved away too, so the copy is routed to the responsible
            // peer and goes once it took it.
            self.migrate(now, id);
            return;
        };
        // A peer that left the set may have deleted its copy; if it comes
        // back it must be sent the data again.
        if let Some(r) = self.storage.resource_mut(id) {
            r.retain_holders(|h| set.contains(h));
        }
        match self.topology.holding(rid) {
            Holding::Responsible => {
                for m in set.iter().skip(1) {
                    self.push(now, id, *m, false);
                }
            }
            Holding::Replica(_) => {
                if let Some(r) = set.first() {
                    self.push(now, id, *r, false);
                }
            }
            Holding::None => {
                let Some(responsible) = set.first().copied() else {
                    return;
                };
                let handed_over = self.storage.resource(id).is_some_and(|r| r.holds(&responsible));
                if handed_over {
                    self.storage.remove(id);
                } else {
                    self.push(now, id, responsible, false);
                }
            }
        }
    }

    // ----- time ---------------------------------------------------------

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some((t, tid)) = self.retransmit_at.peek() {
            if t > now {
                break;
            }
            self.retransmit_at.pop();
            let Some(o) = self.outstanding.get_mut(&tid) else {
                continue;
            };
            if o.deadline != t {
                continue;
            }
            if matches!(o.purpose, Purpose::Keepalive) {
                self.outstanding.remove(&tid);
                continue;
            }
            if o.transmissions > self.config.max_retransmits {
                let o = self.outstanding.remove(&tid).expect("present");
                self.stats.timeouts += 1;
                self.complete(now, o, Err(RequestFailure::Timeout), self.me, 0);
                continue;
            }
            // §6.2.1: same transaction id, routed afresh.
            o.transmissions += 1;
            o.deadline = now + self.config.reliability_timer_ms;
            let deadline = o.deadline;
            let bytes = o.bytes.clone();
            let maintenance = o.purpose.maintenance();
            self.retransmit_at.push(deadline, tid);
            self.stats.retransmissions += 1;
            self.route_own(now, &bytes, maintenance);
        }
        self.rebalance_soon.extend(self.push_retry.take_due(now));
        if self.next_sweep <= now {
            self.forget_old_answers(now);
            self.reassembly.expire(now);
            self.next_sweep = now + self.config.expiry_sweep_ms;
            self.storage.expire(now);
            self.expected_links.retain(|_, (_, t)| *t + LINK_SETUP_TIMEOUT_MS > now);
            let stale: Vec<NodeId> = self
                .connecting
                .iter()
                .filter(|(_, w)| w.iter().all(|a| a.since + LINK_SETUP_TIMEOUT_MS <= now))
                .map(|(n, _)| *n)
                .collect();
            for n in stale {
                self.link_failed(now, Some(n));
            }
            if self
                .probe
                .as_ref()
                .is_some_and(|p| p.since + LINK_SETUP_TIMEOUT_MS <= now)
            {
                // A bootstrap address that leads to this node itself, or
                // nowhere, gives no link at all.
                self.probe_failed(now);
            }
            // Retry replication that failed earlier.
            self.rebalance_needed = true;
        }
        if self.topology.next_timer().is_some_and(|t| t <= now) {
            self.topology.on_timer(now, &mut self.commands);
        }
        if self.rejoin_at.is_some_and(|t| t <= now) && self.leaving.is_none() {
            self.rejoin_at = None;
            self.rejoin(now);
        }
        self.after_event(now);
    }

    /// Drops cached answers older than the request lifetime. This runs as
    /// answers are added and at each sweep rather than on a timer of its
    /// own, so a cache entry costs no wake-up.
    fn forget_old_answers(&mut self, now: u64) {
        while let Some((t, tid)) = self.answered_expiry.front().copied() {
            if t > now {
                break;
            }
            self.answered_expiry.pop_front();
            self.answered.remove(&tid);
        }
    }

    /// Carries out what the topology asked for, then replica upkeep.
    fn after_event(&mut self, now: u64) {
        self.run_commands(now);
        if self.rebalance_needed {
            self.rebalance(now);
            self.run_commands(now);
        } else if !self.rebalance_soon.is_empty() {
            self.rebalance_changed(now);
            self.run_commands(now);
        }
    }

    fn run_commands(&mut self, now: u64) {
        while !self.commands.is_empty() {
            let commands = std::mem::take(&mut self.commands);
            for c in commands {
                match c {
                    TopologyCommand::Request {
                        token,
                        destination,
                        body,
                    } => self.originate(now, destination, &body, Purpose::Topology(token)),
                    TopologyCommand::Attach {
                        token,
                        destination,
                        send_update,
                    } => {
                        let body = Body::AttachReq(self.attach_body(b"active", send_update));
                        self.originate(now, destination, &body, Purpose::Attach { token });
                    }
                    TopologyCommand::CloseLink(peer) => {
                        if self.links.remove(&peer) {
                            self.actions.push_back(Action::Close { peer });
                        }
                    }
                    TopologyCommand::ProbeThroughBootstrap { token, target } => self.start_probe(now, token, target),
                    TopologyCommand::ReplicasChanged => self.rebalance_needed = true,
                    TopologyCommand::Joined => {
                        self.joined_at = Some(now);
                        self.rejoin_at = None;
                        self.actions.push_back(Action::Event(Box::new(Event::Joined)));
                    }
                    // A leaving peer that lost every neighbour has nobody
                    // left to hand over to or say goodbye to: it is done.
                    TopologyCommand::Rejoin if self.leaving.is_some() => self.exit(),
                    TopologyCommand::Rejoin => {
                        // A node that keeps losing the overlay as soon as
                        // it (re)joins (a bootstrap peer that drops it, a
                        // second process with its Node-ID) backs off
                        // instead of rejoining in a tight loop.
                        if self.joined_at.is_some_and(|t| now.saturating_sub(t) >= STABLE_MS) {
                            self.rejoins_in_a_row = 0;
                        }
                        self.joined_at = None;
                        let after_ms = rejoin_delay_ms(self.rejoins_in_a_row);
                        self.rejoins_in_a_row = self.rejoins_in_a_row.saturating_add(1);
                        self.actions
                            .push_back(Action::Event(Box::new(Event::Rejoining { after_ms })));
                        if after_ms == 0 {
                            self.rejoin(now);
                        } else {
                            self.rejoin_at = Some(now + after_ms);
                        }
                    }
                    TopologyCommand::Left => match &mut self.leaving {
                        Some(handover) if !self.pushing.is_empty() => handover.exit_when_pushed = true,
                        _ => self.exit(),
                    },
                }
            }
        }
    }

    /// The end of a leave: every link closes and the node is done.
    fn exit(&mut self) {
        if let Some(handover) = &mut self.leaving {
            if handover.exited {
                return;
            }
            handover.exited = true;
        }
        for peer in std::mem::take(&mut self.links) {
            self.actions.push_back(Action::Close { peer });
        }
        self.actions.push_back(Action::Event(Box::new(Event::Left)));
    }
}
