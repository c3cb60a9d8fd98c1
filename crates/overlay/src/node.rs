//! The overlay core of one node — RFC 6940 §6.1-§6.5 and §7 — as a sans-IO
//! state machine. Inputs: bytes from a link, link up/down, timers, API
//! calls, each with the current time. Outputs: [`Action`]s (bytes to send
//! on a link, links to open or close, events for the application).
//!
//! Forwarding is stateless: a forwarding peer appends the previous hop to
//! the Via List (§6.1.2, first strategy), on answers as well as requests,
//! so an originator learns how many hops its request took.
//!
//! This file holds the node's state and its API; the rest is split by RFC
//! concept: `node/links.rs` (§6.5, §6.7), `node/forwarding.rs` (§6.1), `node/delivery.rs`
//! (§6.3, §7), `node/sending.rs` (§6.2, §6.3.4), `node/replication.rs` (§10.4),
//! `node/config_update.rs` (§6.5.4) and `node/timers.rs`.

use crate::config::OverlayConfig;
use crate::configuration::{compare_sequences, ConfigRefusal, ConfigurationKeeper, ANY_SEQUENCE};
use crate::refusal::{CriticalOption, Refusal};
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
mod delivery;
mod forwarding;
mod ice_attach;
mod links;
pub use config_update::Offered;
pub use ice_attach::{Entropy, IceAttach, IceCredentials};
mod joining;
mod push_retry;
mod replication;
mod sending;
mod timers;
mod transactions;
mod wall_clock;
use joining::{BootstrapProbe, Joining};
use links::{Attaching, AwaitingLink};
use push_retry::PushRetry;
use replication::Replication;
use transactions::{Outstanding, Transactions};

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
    /// An Attach exchange in an overlay that uses ICE: run the checks
    /// (see [`IceAttach`]) and report the link as dialled.
    IceAttach(Box<IceAttach>),
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
        /// The ICE credentials the request offered (an ICE overlay).
        ice: Option<Box<IceCredentials>>,
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
    wall_clock: wall_clock::WallClock,
    links: SortedSet<NodeId>,
    /// Links being set up by Attach (§6.5.1).
    attaching: Attaching,
    /// Joining, rejoining and partition checks (§11.4, §10.7.4.4).
    joining: Joining,
    /// This node's requests in flight and the answers it gave (§6.2).
    transactions: Transactions,
    /// Replicas and hand-over of stored data (§10.7.3–§10.7.4.3).
    replication: Replication,
    /// When the answer cache, fragments, stored values and unfinished
    /// link setups are next swept.
    next_sweep: u64,
    leaving: Option<Handover>,
    actions: VecDeque<Action>,
    commands: Vec<TopologyCommand>,
    stats: NodeStats,
    observations: Option<VecDeque<Observation>>,
    /// Where this node's applications take AppAttach connections (§6.5.2),
    /// by Application-ID.
    applications: BTreeMap<u16, IpAddressPort>,
    /// The candidates Attaches offer when the overlay uses ICE
    /// ([`OverlayNode::use_ice`]); `None`: No-ICE (§6.5.1.11).
    ice_candidates: Option<Vec<IceCandidate>>,
    /// Where ICE credentials come from (see [`Entropy`]).
    ice_entropy: Option<Entropy>,
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
fn sequence_mismatch(ours: u16, theirs: u16, code: MessageCode) -> Option<Refusal> {
    // 0 is what implementations send that do not track the sequence (the
    // Wireshark dissector reads it as "not verified"); refusing them would
    // keep them out of the overlay for a check they do not make.
    if theirs == 0 || (theirs == ANY_SEQUENCE && code == MessageCode::CONFIG_UPDATE_REQ) {
        return None;
    }
    match compare_sequences(theirs, ours) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Less => Some(Refusal::ConfigTooOld),
        std::cmp::Ordering::Greater => Some(Refusal::ConfigTooNew),
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
            wall_clock: Default::default(),
            silent_routers: BTreeSet::new(),
            offences: BTreeMap::new(),
            banned: BTreeMap::new(),
            reassembly: Reassembler::new(REASSEMBLY_BUFFER),
            links: SortedSet::new(),
            attaching: Attaching::default(),
            joining: Joining::default(),
            transactions: Transactions::default(),
            replication: Replication::default(),
            leaving: None,
            actions: VecDeque::new(),
            commands: Vec::new(),
            stats: NodeStats::default(),
            observations: None,
            applications: BTreeMap::new(),
            ice_candidates: None,
            ice_entropy: None,
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

    /// At engine time `now` the wall clock reads `wall_ms` (ms since the
    /// Unix epoch): the storage_time of what this node stores from now on
    /// follows it (see [`wall_clock`]). Timers are not moved.
    pub fn set_wall_clock(&mut self, now: u64, wall_ms: u64) {
        self.wall_clock.set(now, wall_ms);
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
        [
            self.transactions.next_deadline(),
            self.topology.next_timer(),
            Some(self.next_sweep),
            self.joining.rejoin_at,
            self.replication.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Joins again after losing the overlay: through a peer still linked,
    /// else the bootstrap addresses from the start.
    fn rejoin(&mut self, now: u64) {
        match self.links.iter().next().copied() {
            Some(peer) => self.topology.join(now, peer, &mut self.commands),
            None => {
                self.joining.next_bootstrap = 0;
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
        self.joining.bootstraps = bootstraps;
        self.joining.next_bootstrap = 0;
        self.connect_bootstrap(now);
    }

    fn connect_bootstrap(&mut self, _now: u64) {
        if self.joining.bootstraps.is_empty() {
            return;
        }
        let address = self.joining.bootstraps[self.joining.next_bootstrap % self.joining.bootstraps.len()].clone();
        self.joining.next_bootstrap += 1;
        self.joining.bootstrap_pending = true;
        self.actions.push_back(Action::Connect { peer: None, address });
    }

    /// Leaves gracefully: hands stored data to the peers that will hold it,
    /// then sends Leave to the neighbours (§10.9). [`Event::Left`] follows.
    pub fn leave(&mut self, now: u64) {
        if self.leaving.is_some() {
            return;
        }
        // A leaving node checks for no partition.
        self.joining.probe = None;
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
        if self.replication.pushing.is_empty() {
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
        // No storage_time is used up by a store that cannot be signed.
        self.signer(user)?;
        let storage_time = self.wall_clock.storage_time(now);
        let signer = self.signer(user)?;
        let values = values
            .into_iter()
            .map(|value| self.sign_value(signer, &resource, kind, storage_time, value, lifetime_s))
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
        let id = self.transactions.next_id();
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
        storage_time: u64,
        value: StoredDataValue,
        lifetime: u32,
    ) -> StoredData {
        let identity = signer.identity();
        let input = data_signature_input(&self.security, resource, kind, storage_time, &value, &identity);
        StoredData {
            storage_time,
            lifetime,
            value,
            signature: signer.sign(&input),
        }
    }
}
