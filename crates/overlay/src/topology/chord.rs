//! CHORD-RELOAD — RFC 6940 §10.
//!
//! State is the set of linked peers known to be in the ring. The Neighbor
//! Table (§10.7: the closest successors and predecessors) and the Finger
//! Table (§10.3: finger i is a peer in [n+2^(128-i), n+2^(129-i)-1]) are
//! views of that set, so a link that comes or goes updates both at once and
//! a failed entry is always replaced by "the best match from the other
//! peers in its Routing Table" (§10.7.1). Choices the RFC leaves open are
//! listed in docs/decisions/0004-overlay-engine.md.

use super::{memory_span, Answer, Holding, ProbeLink, RequestFailure, Topology, TopologyCommand};
use crate::config::ChordConfig;
use crate::ring::{distance, in_open_closed, node_position, position_of, Position};
use crate::sorted::SortedMap;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use reload_wire::{
    Body, ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateType, Decode, DecodeContext, Destination, Encode,
    ErrorCode, JoinReq, LeaveReq, NodeId, ResourceId, RouteQueryReq,
};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};

/// §10.2: the Chord-reload hash of a Resource Name: SHA-1, truncated to
/// 128 bits.
pub fn hash(name: &[u8]) -> ResourceId {
    let digest = Sha1::digest(name);
    ResourceId(digest[..16].to_vec())
}

/// §10.7.4.3 "simple approach": the number of fingers whose smallest range
/// still reaches past a last successor this far clockwise.
fn finger_count_reaching(last_successor_distance: u128) -> usize {
    if last_successor_distance == 0 {
        return 1;
    }
    let log2 = 127 - last_successor_distance.leading_zeros() as usize;
    (127 - log2).clamp(1, 128)
}

/// Replicas kept on the successors of the responsible peer (§10.4: two).
pub const REPLICAS: usize = 2;

/// Least time between two corrective Updates to the same peer.
const CORRECTION_HOLDOFF_MS: u64 = 5_000;

/// How long a join may take before it is started over.
const JOIN_TIMEOUT_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Joining {
        bootstrap: NodeId,
        admitting: Option<NodeId>,
        admitting_updated: bool,
        join_sent: bool,
        started: u64,
    },
    Joined,
    Leaving {
        awaiting: usize,
    },
    Left,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Attach to the peer responsible for n+1 (§10.5 step 2).
    AdmittingAttach,
    /// Attach to a peer that belongs in the Neighbor Table (§10.7.3).
    NeighborAttach(NodeId),
    /// Attach for Finger Table entry i (§10.5, §10.7.4.2).
    FingerAttach(usize),
    /// Attach, through the admitting peer, to the peer of its Finger Table
    /// that a joining node takes for its own entry `index` (§10.5 step 3).
    CopiedFingerAttach {
        index: usize,
        peer: NodeId,
    },
    Join,
    Update(NodeId),
    Leave,
    /// §10.7.4.4: the Ping for our own ID through a bootstrap peer.
    PartitionProbe,
    /// §10.7.4.4: the Attach to the peer that answered it from another
    /// partition, routed through the bootstrap peer `via`.
    PartitionAttach {
        peer: NodeId,
        via: ProbeLink,
    },
}

/// How far past the start of a finger range, in peer spacings, a joining
/// node still takes the admitting peer's finger for its own. The first peer
/// after a point lies farther than 8 spacings with probability e^-8; a
/// finger that far off was learned when the ring was smaller, and copying
/// it would make it a hub (decision 0004, "Finger hubs and flash crowds").
const COPIED_FINGER_SLACK: u128 = 8;

/// About how long after joining a peer runs its first partition check
/// (§10.7.4.4), before the periodic ones. A ring built by a crowd of
/// joins can come out with stretches that the peers around them do not
/// know: a peer there is not in its would-be successor's tables, and that
/// successor answers for the stretch with values it does not hold. Only
/// the check finds such a peer; at the periodic interval the first checks
/// come 5 to 15 minutes after joining, and lookups fail until then
/// (decision 0004, "The first partition check comes a minute after
/// joining").
const FIRST_PARTITION_CHECK_MS: u64 = 60_000;

/// How long a peer that left is kept out of the tables if its link does
/// not close (a leave lasts at most about 60 s).
const DEPARTED_MS: u64 = 120_000;

/// The CHORD-RELOAD topology plugin.
pub struct ChordReload {
    me: NodeId,
    my_pos: Position,
    config: ChordConfig,
    ctx: DecodeContext,
    rng: Xoshiro256PlusPlus,
    phase: Phase,
    started_at: u64,
    /// Linked peers known to be in the ring: the routing table's members.
    peers: SortedMap<Position, NodeId>,
    /// Linked nodes not (yet) known to be peers, e.g. a joining node.
    others: BTreeSet<NodeId>,
    /// Closest first, derived from `peers`.
    predecessors: Vec<NodeId>,
    successors: Vec<NodeId>,
    /// Candidates being attached to, so one is not attached twice.
    attaching: BTreeSet<NodeId>,
    fingers_searching: BTreeSet<usize>,
    pending: BTreeMap<u64, Pending>,
    next_token: u64,
    update_due: Option<u64>,
    update_everyone: bool,
    /// When each peer last got a corrective Update from us.
    corrected: BTreeMap<NodeId, u64>,
    next_stabilize: Option<u64>,
    next_finger_search: Option<u64>,
    /// Peers whose Leave we took, and when: their links stay up until they
    /// close them, and until then an Attach answer or someone's stale
    /// Update must not put them back in the tables. One whose link never
    /// closes (its Leave came routed) may return after [`DEPARTED_MS`], as
    /// a new session; `on_timer` forgets it then.
    departed: BTreeMap<NodeId, u64>,
    next_partition_check: Option<u64>,
    /// Partitions found (§10.7.4.4): answers from a peer this one had no
    /// link to, to the Ping for its own ID.
    partitions_found: u64,
}

impl ChordReload {
    pub fn new(me: NodeId, config: ChordConfig, node_id_length: usize, seed: u64) -> Self {
        let ctx = DecodeContext::new(node_id_length, usize::MAX).unwrap_or_default();
        ChordReload {
            me,
            my_pos: node_position(&me),
            config,
            ctx,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            phase: Phase::Idle,
            started_at: 0,
            peers: SortedMap::new(),
            others: BTreeSet::new(),
            predecessors: Vec::new(),
            successors: Vec::new(),
            attaching: BTreeSet::new(),
            fingers_searching: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_token: 1,
            update_due: None,
            update_everyone: false,
            corrected: BTreeMap::new(),
            next_stabilize: None,
            next_finger_search: None,
            departed: BTreeMap::new(),
            next_partition_check: None,
            partitions_found: 0,
        }
    }

    /// How many partition checks found another partition (§10.7.4.4).
    pub fn partitions_found(&self) -> u64 {
        self.partitions_found
    }

    /// §10.7.4.4 "periodically": about every `interval`, at a random
    /// offset like the other maintenance, so that peers do not check in
    /// step. No checks when the configured interval is 0.
    fn partition_check_after(&mut self, now: u64, interval: u64) -> Option<u64> {
        let i = interval.min(self.config.partition_check_interval_ms);
        (i > 0).then(|| now + i / 2 + self.rng.random_range(0..i))
    }

    /// Closes a link opened only for a partition check, unless the peer
    /// has come into the tables meanwhile.
    fn close_probe_link(&mut self, bootstrap: Option<ProbeLink>, out: &mut Vec<TopologyCommand>) {
        if let Some(b) = bootstrap.filter(|b| b.opened) {
            if self.others.remove(&b.peer) {
                out.push(TopologyCommand::CloseLink(b.peer));
            }
        }
    }

    pub fn predecessors(&self) -> &[NodeId] {
        &self.predecessors
    }

    pub fn successors(&self) -> &[NodeId] {
        &self.successors
    }

    /// Finger i (1-based, §10.3) covers [n + 2^(128-i), n + 2^(129-i) - 1].
    fn finger_range(&self, i: usize) -> (Position, Position) {
        let len = 1u128 << (128 - i);
        (self.my_pos.wrapping_add(len), len)
    }

    /// The first peer at or clockwise after `pos`.
    fn first_at_or_after(&self, pos: Position) -> Option<(&Position, &NodeId)> {
        self.peers.range(pos..).next().or_else(|| self.peers.iter().next())
    }

    fn finger(&self, i: usize) -> Option<NodeId> {
        let (start, len) = self.finger_range(i);
        let (p, id) = self.first_at_or_after(start)?;
        (distance(start, *p) < len).then_some(*id)
    }

    /// How many fingers the table needs: enough that the smallest one still
    /// reaches past the last successor (§10.7.4.3, "simple approach"). The
    /// entries beyond are covered by the Neighbor Table.
    pub fn finger_count(&self) -> usize {
        match self.successors.last() {
            Some(last) => finger_count_reaching(distance(self.my_pos, node_position(last))),
            None => 1,
        }
    }

    /// The Finger Table in numerically ascending order, as a full Update
    /// carries it (§10.7).
    pub fn fingers(&self) -> Vec<NodeId> {
        let mut f: Vec<NodeId> = (1..=self.finger_count()).filter_map(|i| self.finger(i)).collect();
        f.sort();
        f.dedup();
        f
    }

    fn token(&mut self, p: Pending) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        self.pending.insert(t, p);
        t
    }

    fn uptime_s(&self, now: u64) -> u32 {
        (now.saturating_sub(self.started_at) / 1000).min(u32::MAX as u64) as u32
    }

    /// The `neighbors` closest peers clockwise from this one, closest first.
    /// `me` is never in `peers`, so the two ranges do not overlap.
    fn closest_successors(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.my_pos;
        self.peers
            .range((Excluded(me), Unbounded))
            .chain(self.peers.range(..me))
            .map(|(_, id)| *id)
            .take(self.config.neighbors)
    }

    /// The same counter-clockwise.
    fn closest_predecessors(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.my_pos;
        self.peers
            .range(..me)
            .rev()
            .chain(self.peers.range((Excluded(me), Unbounded)).rev())
            .map(|(_, id)| *id)
            .take(self.config.neighbors)
    }

    /// Recomputes the Neighbor Table after the peer set changed and asks for
    /// whatever the change implies (§10.7.1, §10.7.3).
    fn recompute(&mut self, now: u64, out: &mut Vec<TopologyCommand>) {
        // Most calls change nothing; compare before building new lists.
        if self.closest_successors().eq(self.successors.iter().copied())
            && self.closest_predecessors().eq(self.predecessors.iter().copied())
        {
            return;
        }
        let succs: Vec<NodeId> = self.closest_successors().collect();
        let preds: Vec<NodeId> = self.closest_predecessors().collect();
        let range_changed = preds.first() != self.predecessors.first();
        self.successors = succs;
        self.predecessors = preds;
        out.push(TopologyCommand::ReplicasChanged);
        if self.phase == Phase::Joined {
            if self.peers.is_empty() {
                self.phase = Phase::Idle;
                out.push(TopologyCommand::Rejoin);
                return;
            }
            if self.config.reactive {
                self.schedule_update(now, range_changed);
            }
        }
    }

    fn schedule_update(&mut self, now: u64, everyone: bool) {
        let due = now + self.config.reactive_delay_ms;
        self.update_due = Some(self.update_due.map_or(due, |d| d.min(due)));
        self.update_everyone |= everyone;
    }

    fn update_body(&self, now: u64, full: bool) -> Body {
        let update = if full {
            ChordUpdateType::Full {
                predecessors: self.predecessors.clone(),
                successors: self.successors.clone(),
                fingers: self.fingers(),
            }
        } else {
            ChordUpdateType::Neighbors {
                predecessors: self.predecessors.clone(),
                successors: self.successors.clone(),
            }
        };
        let u = ChordUpdate {
            uptime: self.uptime_s(now),
            update,
        };
        Body::UpdateReq(u.to_bytes().unwrap_or_default())
    }

    fn send_update(&mut self, now: u64, to: NodeId, full: bool, out: &mut Vec<TopologyCommand>) {
        let body = self.update_body(now, full);
        let token = self.token(Pending::Update(to));
        out.push(TopologyCommand::Request {
            token,
            destination: vec![Destination::Node(to)],
            body,
        });
    }

    /// §10.7.4.1 (and reactive recovery): Updates to every neighbour, or to
    /// every peer when the responsible range changed (§10.7.3).
    fn send_updates(&mut self, now: u64, everyone: bool, out: &mut Vec<TopologyCommand>) {
        let mut targets: Vec<NodeId> = if everyone {
            self.peers.values().copied().collect()
        } else {
            self.neighbors()
        };
        targets.sort();
        targets.dedup();
        for t in targets {
            self.send_update(now, t, false, out);
        }
    }

    fn is_linked(&self, id: &NodeId) -> bool {
        self.peers.contains_key(&node_position(id)) || self.others.contains(id)
    }

    /// Whether `c` would enter the Neighbor Table (§10.7.3 second case).
    fn would_be_neighbor(&self, c: &NodeId) -> bool {
        let k = self.config.neighbors;
        let pc = node_position(c);
        if pc == self.my_pos {
            return false;
        }
        let closer_succ = match self.successors.get(k - 1) {
            Some(last) if self.successors.len() >= k => {
                distance(self.my_pos, pc) < distance(self.my_pos, node_position(last))
            }
            _ => true,
        };
        let closer_pred = match self.predecessors.get(k - 1) {
            Some(last) if self.predecessors.len() >= k => {
                distance(pc, self.my_pos) < distance(node_position(last), self.my_pos)
            }
            _ => true,
        };
        closer_succ || closer_pred
    }

    /// Whether the sender of an Update is missing a peer we know that would
    /// be among its neighbours: then our own Update tells it (the "notify"
    /// half of Chord stabilization, which keeps recovery from waiting for
    /// the next periodic Update).
    fn sender_misses_neighbors(&self, from: &NodeId, preds: &[NodeId], succs: &[NodeId]) -> bool {
        let k = self.config.neighbors;
        let pf = node_position(from);
        let unknown = |n: &NodeId| n != from && !preds.contains(n) && !succs.contains(n);
        let (Some(worst_succ), Some(worst_pred)) = (
            succs.get(k.wrapping_sub(1)).filter(|_| succs.len() >= k),
            preds.get(k.wrapping_sub(1)).filter(|_| preds.len() >= k),
        ) else {
            // A short list: anyone it does not name is missing.
            return std::iter::once(&self.me).chain(self.peers.values()).any(unknown);
        };
        // Only peers strictly inside the arc its lists span can be closer.
        let succ_span = distance(pf, node_position(worst_succ));
        let pred_span = distance(node_position(worst_pred), pf);
        let me_closer =
            self.my_pos != pf && (distance(pf, self.my_pos) < succ_span || distance(self.my_pos, pf) < pred_span);
        (me_closer && unknown(&self.me))
            || self.peers_in_arc(pf.wrapping_sub(pred_span), pred_span).any(unknown)
            || self.peers_in_arc(pf, succ_span).any(unknown)
    }

    /// Linked peers strictly between `start` and `start + len`.
    fn peers_in_arc(&self, start: Position, len: u128) -> impl Iterator<Item = &NodeId> {
        let end = start.wrapping_add(len);
        let empty = || self.peers.range(1..1);
        let (first, second) = if len == 0 {
            (empty(), empty())
        } else if end > start {
            (self.peers.range((Excluded(start), Excluded(end))), empty())
        } else {
            (self.peers.range((Excluded(start), Unbounded)), self.peers.range(..end))
        };
        first.chain(second).map(|(_, id)| id)
    }

    /// Whether `c` would fill a Finger Table entry that has no peer.
    fn fills_empty_finger(&self, c: &NodeId) -> Option<usize> {
        let pc = node_position(c);
        let d = distance(self.my_pos, pc);
        if d == 0 {
            return None;
        }
        // Finger i holds distances in [2^(128-i), 2^(129-i)).
        let i = 128 - (127 - d.leading_zeros() as usize);
        (i <= self.finger_count() && self.finger(i).is_none()).then_some(i)
    }

    /// Learns of a peer from someone's Update or Leave: promote it if it is
    /// already linked, otherwise Attach to it when it belongs in the tables.
    fn consider(&mut self, c: NodeId, learned_from: Option<NodeId>, out: &mut Vec<TopologyCommand>) {
        if c == self.me
            || self.peers.contains_key(&node_position(&c))
            || self.attaching.contains(&c)
            || self.departed.contains_key(&c)
        {
            return;
        }
        let wanted = self.would_be_neighbor(&c) || self.fills_empty_finger(&c).is_some();
        if !wanted {
            return;
        }
        if self.others.remove(&c) {
            self.peers.insert(node_position(&c), c);
            return;
        }
        // §10.6: source-route through the peer that told us about it.
        let destination = match learned_from {
            Some(via) if via != c && self.is_linked(&via) => vec![Destination::Node(via), Destination::Node(c)],
            _ => vec![Destination::Node(c)],
        };
        self.attaching.insert(c);
        let token = self.token(Pending::NeighborAttach(c));
        out.push(TopologyCommand::Attach {
            token,
            destination,
            send_update: false,
        });
    }

    fn search_finger(&mut self, i: usize, out: &mut Vec<TopologyCommand>) {
        if !self.fingers_searching.insert(i) {
            return;
        }
        // §10.7.4.2: a random point of the range, not its start.
        let (start, len) = self.finger_range(i);
        let target = start.wrapping_add(self.rng.random_range(0..len));
        self.attach_finger_at(i, target, out);
    }

    /// An Attach for Finger Table entry i, routed to the peer responsible
    /// for ring position `target`.
    fn attach_finger_at(&mut self, i: usize, target: Position, out: &mut Vec<TopologyCommand>) {
        let token = self.token(Pending::FingerAttach(i));
        out.push(TopologyCommand::Attach {
            token,
            destination: vec![Destination::Resource(ResourceId(target.to_be_bytes().to_vec()))],
            send_update: false,
        });
    }

    /// §10.5 step 3: Attaches to "the desired peers in the Finger Table"
    /// of a joining node, chosen from the admitting peer's full Update.
    ///
    /// Our choice: for each entry, the admitting peer's peer nearest the
    /// range start, reached in two hops through the admitting peer, if it
    /// lies within [`COPIED_FINGER_SLACK`] peer spacings of that start; the
    /// spacing is read off the admitting peer's neighbour lists. Otherwise
    /// an Attach routed to the range start itself, n + 2^(128-i). Copying
    /// every finger instead keeps fingers that were right when the ring
    /// was small; passed on from joiner to joiner they turn early peers
    /// into hubs linked to a large part of the ring.
    fn attach_join_fingers(
        &mut self,
        ap: NodeId,
        preds: &[NodeId],
        succs: &[NodeId],
        fingers: &[NodeId],
        out: &mut Vec<TopologyCommand>,
    ) {
        let gaps = (preds.len() + succs.len()) as u128;
        let ap_pos = node_position(&ap);
        let first = preds.last().map_or(ap_pos, node_position);
        let last = succs.last().map_or(ap_pos, node_position);
        let slack = match distance(first, last) / gaps.max(1) {
            0 => u128::MAX,
            spacing => spacing.saturating_mul(COPIED_FINGER_SLACK),
        };
        // Our successors will be AP and the first k-1 of its successors.
        let our_last_successor = std::iter::once(&ap)
            .chain(succs.iter())
            .nth(self.config.neighbors.saturating_sub(1))
            .or(succs.last())
            .unwrap_or(&ap);
        let count = finger_count_reaching(distance(self.my_pos, node_position(our_last_successor)));
        let candidates: Vec<(Position, NodeId)> = std::iter::once(ap)
            .chain(preds.iter().chain(succs).chain(fingers).copied())
            .filter(|c| *c != self.me)
            .map(|c| (node_position(&c), c))
            .collect();
        for i in 1..=count {
            if self.finger(i).is_some() || self.fingers_searching.contains(&i) {
                continue;
            }
            let (start, len) = self.finger_range(i);
            let nearest = candidates
                .iter()
                .map(|(pos, c)| (distance(start, *pos), *c))
                .filter(|(d, _)| *d < len && *d <= slack)
                .min();
            match nearest {
                // AP itself is linked and lands here.
                Some((_, c)) if self.attaching.contains(&c) || self.is_linked(&c) => {}
                Some((_, c)) => {
                    self.fingers_searching.insert(i);
                    self.attaching.insert(c);
                    let token = self.token(Pending::CopiedFingerAttach { index: i, peer: c });
                    out.push(TopologyCommand::Attach {
                        token,
                        destination: vec![Destination::Node(ap), Destination::Node(c)],
                        send_update: false,
                    });
                }
                None => {
                    self.fingers_searching.insert(i);
                    self.attach_finger_at(i, start, out);
                }
            }
        }
    }

    fn neighbor_attaches_pending(&self) -> bool {
        self.pending.values().any(|p| matches!(p, Pending::NeighborAttach(_)))
    }

    /// §10.5 step 5: Join once every neighbour Attach has been answered.
    fn maybe_send_join(&mut self, out: &mut Vec<TopologyCommand>) {
        let Phase::Joining {
            admitting: Some(ap),
            admitting_updated: true,
            join_sent: false,
            ..
        } = self.phase
        else {
            return;
        };
        if self.neighbor_attaches_pending() {
            return;
        }
        if let Phase::Joining { join_sent, .. } = &mut self.phase {
            *join_sent = true;
        }
        let token = self.token(Pending::Join);
        out.push(TopologyCommand::Request {
            token,
            destination: vec![Destination::Node(ap)],
            body: Body::JoinReq(JoinReq {
                joining_peer_id: self.me,
                overlay_specific_data: Vec::new(),
            }),
        });
    }

    fn restart_join(&mut self, out: &mut Vec<TopologyCommand>) {
        self.phase = Phase::Idle;
        out.push(TopologyCommand::Rejoin);
    }

    fn schedule_maintenance(&mut self, now: u64) {
        // §10.7.4.1: randomly offset so that peers do not update in step.
        let u = self.config.update_interval_ms.max(1);
        self.next_stabilize = Some(now + u / 2 + self.rng.random_range(0..u));
        let p = self.config.ping_interval_ms.max(1);
        self.next_finger_search = Some(now + p / 2 + self.rng.random_range(0..p));
        self.next_partition_check = self.partition_check_after(now, FIRST_PARTITION_CHECK_MS);
    }

    /// Whether `peer` is in the Neighbor Table or the Finger Table.
    fn in_tables(&self, peer: &NodeId) -> bool {
        self.successors.contains(peer)
            || self.predecessors.contains(peer)
            || (1..=self.finger_count()).any(|i| self.finger(i) == Some(*peer))
    }

    fn remove_peer(&mut self, peer: &NodeId) -> Option<usize> {
        self.corrected.remove(peer);
        let was_finger = (1..=self.finger_count()).find(|&i| self.finger(i) == Some(*peer));
        self.peers.remove(&node_position(peer));
        self.others.remove(peer);
        was_finger
    }
}

impl Topology for ChordReload {
    fn name(&self) -> &'static str {
        "CHORD-RELOAD"
    }

    fn local_id(&self) -> NodeId {
        self.me
    }

    /// §10.2: SHA-1 truncated to its most significant 128 bits.
    fn resource_id(&self, name: &[u8]) -> ResourceId {
        hash(name)
    }

    /// §10.4: the replicas are the responsible peer's successors, and the
    /// peer after `holder` is responsible for the ID right after it.
    fn next_replica_point(&self, holder: &NodeId) -> Option<ResourceId> {
        let bytes: [u8; 16] = holder.as_bytes().try_into().ok()?;
        Some(ResourceId(
            u128::from_be_bytes(bytes).wrapping_add(1).to_be_bytes().to_vec(),
        ))
    }

    /// §10.1: responsible for k if k is in (predecessor, self].
    fn is_responsible(&self, id: &[u8]) -> bool {
        match self.predecessors.first() {
            None => true,
            Some(p) => in_open_closed(node_position(p), position_of(id), self.my_pos),
        }
    }

    /// §10.3: the peer with the largest Node-ID in (self, k]; failing that
    /// the smallest Node-ID greater than k. A key our predecessor owns
    /// goes clockwise too (the MUST leaves no shortcut), so in a small ring
    /// it can take two hops where the predecessor list shows the owner.
    fn next_hop(&self, id: &[u8]) -> Option<NodeId> {
        let k = position_of(id);
        let me = self.my_pos;
        let preceding = if me < k {
            self.peers
                .range((Excluded(me), std::ops::Bound::Included(k)))
                .next_back()
        } else {
            self.peers
                .range(..=k)
                .next_back()
                .or_else(|| self.peers.range((Excluded(me), Unbounded)).next_back())
        };
        preceding
            .or_else(|| self.peers.range((Excluded(k), Unbounded)).next())
            .or_else(|| self.peers.iter().next())
            .map(|(_, id)| *id)
    }

    fn holding(&self, resource: &[u8]) -> Holding {
        if self.is_responsible(resource) {
            return Holding::Responsible;
        }
        let k = position_of(resource);
        // A predecessor list shorter than the table means the ring is that
        // small: the last predecessor's own predecessor is this peer, and
        // the range it is responsible for ends here too.
        let mut chain = self.predecessors.clone();
        if !chain.is_empty() && chain.len() < self.config.neighbors {
            chain.push(self.me);
        }
        for (n, pair) in chain.windows(2).take(REPLICAS).enumerate() {
            if in_open_closed(node_position(&pair[1]), k, node_position(&pair[0])) {
                return Holding::Replica(n as u8 + 1);
            }
        }
        Holding::None
    }

    fn replica_set(&self, resource: &[u8]) -> Option<Vec<NodeId>> {
        let k = position_of(resource);
        let mut ring: Vec<NodeId> = self.predecessors.iter().rev().copied().collect();
        ring.push(self.me);
        ring.extend(self.successors.iter().copied());
        let responsible =
            (1..ring.len()).find(|&j| in_open_closed(node_position(&ring[j - 1]), k, node_position(&ring[j])));
        let responsible = match responsible {
            Some(j) => j,
            None if self.predecessors.is_empty() => ring.iter().position(|n| *n == self.me)?,
            None => return None,
        };
        let mut set = Vec::with_capacity(REPLICAS + 1);
        for id in &ring[responsible..] {
            if set.len() == REPLICAS + 1 || set.contains(id) {
                break;
            }
            set.push(*id);
        }
        Some(set)
    }

    /// §7.4.1.1: "replica StoreReqs MUST come from nodes which are either
    /// in the known replica set for a given resource or which are closer
    /// than some node in the replica set". Closer means clockwise from the
    /// resource, where responsibility runs: a peer that took over the range
    /// while our tables still list its crashed predecessor qualifies. Our
    /// own neighbours also qualify, so data handed back by a peer that just
    /// left the set is taken in (decision 0004).
    fn plausible_replica_source(&self, resource: &[u8], sender: &NodeId) -> bool {
        if self.predecessors.contains(sender) || self.successors.contains(sender) {
            return true;
        }
        let Some(set) = self.replica_set(resource) else {
            return false;
        };
        let k = position_of(resource);
        let from_resource = |n: &NodeId| distance(k, node_position(n));
        set.contains(sender) || set.iter().any(|m| from_resource(sender) < from_resource(m))
    }

    fn is_joined(&self) -> bool {
        self.phase == Phase::Joined
    }

    fn routes_through(&self, peer: &NodeId) -> bool {
        self.peers.contains_key(&node_position(peer))
    }

    fn is_first_neighbor(&self, peer: &NodeId) -> bool {
        self.successors.first() == Some(peer) || self.predecessors.first() == Some(peer)
    }

    fn neighbors(&self) -> Vec<NodeId> {
        let mut n = self.predecessors.clone();
        for s in &self.successors {
            if !n.contains(s) {
                n.push(*s);
            }
        }
        n
    }

    fn start_alone(&mut self, now: u64, out: &mut Vec<TopologyCommand>) {
        self.started_at = now;
        self.phase = Phase::Joined;
        self.schedule_maintenance(now);
        out.push(TopologyCommand::Joined);
    }

    /// §10.5 steps 1-2: Attach to the peer responsible for n+1, asking for
    /// its routing table.
    fn join(&mut self, now: u64, bootstrap: NodeId, out: &mut Vec<TopologyCommand>) {
        self.started_at = now;
        self.phase = Phase::Joining {
            bootstrap,
            admitting: None,
            admitting_updated: false,
            join_sent: false,
            started: now,
        };
        self.others.remove(&bootstrap);
        self.peers.insert(node_position(&bootstrap), bootstrap);
        self.recompute(now, out);
        let next = self.my_pos.wrapping_add(1);
        let token = self.token(Pending::AdmittingAttach);
        out.push(TopologyCommand::Attach {
            token,
            destination: vec![Destination::Resource(ResourceId(next.to_be_bytes().to_vec()))],
            send_update: true,
        });
    }

    /// §10.9: a Leave to every neighbour, carrying the lists the other side
    /// needs to replace this peer.
    fn leave(&mut self, _now: u64, out: &mut Vec<TopologyCommand>) {
        let mut awaiting = 0;
        let mut sent = BTreeSet::new();
        let lists = [
            (
                self.predecessors.clone(),
                ChordLeaveData::FromSucc {
                    successors: self.successors.clone(),
                },
            ),
            (
                self.successors.clone(),
                ChordLeaveData::FromPred {
                    predecessors: self.predecessors.clone(),
                },
            ),
        ];
        for (targets, data) in lists {
            let data = data.to_bytes().unwrap_or_default();
            for t in targets {
                if !sent.insert(t) {
                    continue;
                }
                awaiting += 1;
                let token = self.token(Pending::Leave);
                out.push(TopologyCommand::Request {
                    token,
                    destination: vec![Destination::Node(t)],
                    body: Body::LeaveReq(LeaveReq {
                        leaving_peer_id: self.me,
                        overlay_specific_data: data.clone(),
                    }),
                });
            }
        }
        self.update_due = None;
        if awaiting == 0 {
            self.phase = Phase::Left;
            out.push(TopologyCommand::Left);
        } else {
            self.phase = Phase::Leaving { awaiting };
        }
    }

    fn on_link_up(
        &mut self,
        now: u64,
        peer: NodeId,
        we_attached: bool,
        send_update: bool,
        out: &mut Vec<TopologyCommand>,
    ) {
        if matches!(self.phase, Phase::Leaving { .. } | Phase::Left) {
            return;
        }
        self.attaching.remove(&peer);
        if self.departed.contains_key(&peer) {
            return;
        }
        if we_attached {
            self.others.remove(&peer);
            self.peers.insert(node_position(&peer), peer);
            self.recompute(now, out);
        } else if !self.peers.contains_key(&node_position(&peer)) {
            self.others.insert(peer);
        }
        // §6.4.2.3: the Attach asked for our routing table.
        if send_update && self.phase == Phase::Joined {
            self.send_update(now, peer, true, out);
        }
    }

    /// §10.7.1 and §10.7.2: drop the peer everywhere; the views put the best
    /// remaining peers in its place. Reactive recovery searches for a new
    /// finger at once.
    fn on_link_down(&mut self, now: u64, peer: NodeId, out: &mut Vec<TopologyCommand>) {
        self.attaching.remove(&peer);
        self.departed.remove(&peer);
        let was_finger = self.remove_peer(&peer);
        match self.phase {
            // A leaving peer still hands its data to the set as it now is.
            // Its neighbours keep their links until it closes them, so a
            // link going down now is a failure.
            Phase::Leaving { .. } => {
                self.recompute(now, out);
                return;
            }
            Phase::Left => return,
            _ => {}
        }
        if let Phase::Joining {
            admitting, bootstrap, ..
        } = &self.phase
        {
            if *admitting == Some(peer) || (admitting.is_none() && *bootstrap == peer) {
                self.restart_join(out);
                return;
            }
        }
        self.recompute(now, out);
        if let (Some(i), true, Phase::Joined) = (was_finger, self.config.reactive, &self.phase) {
            if self.finger(i).is_none() {
                self.search_finger(i, out);
            }
        }
    }

    /// §10.7.3: take in the sender's view; Attach to peers that belong in
    /// our tables.
    fn on_update(
        &mut self,
        now: u64,
        from: NodeId,
        body: &[u8],
        out: &mut Vec<TopologyCommand>,
    ) -> Result<Vec<u8>, ErrorCode> {
        let update = ChordUpdate::from_bytes(body, &self.ctx).map_err(|_| ErrorCode::INVALID_MESSAGE)?;
        if matches!(self.phase, Phase::Leaving { .. } | Phase::Left) {
            return Ok(Vec::new());
        }
        // An Update says its sender is a peer (§10.5 step 9). Most senders
        // already are one; only look in `others` for those that are not.
        if !self.peers.contains_key(&node_position(&from)) && self.others.remove(&from) {
            self.peers.insert(node_position(&from), from);
        }
        let admitting_update = matches!(
            self.phase,
            Phase::Joining {
                admitting: Some(ap),
                admitting_updated: false,
                ..
            } if ap == from
        );
        let peer_ready = matches!(update.update, ChordUpdateType::PeerReady);
        let (predecessors, successors, fingers) = match update.update {
            ChordUpdateType::PeerReady => (Vec::new(), Vec::new(), Vec::new()),
            ChordUpdateType::Neighbors {
                predecessors,
                successors,
            } => (predecessors, successors, Vec::new()),
            ChordUpdateType::Full {
                predecessors,
                successors,
                fingers,
            } => (predecessors, successors, fingers),
        };
        let misses = !peer_ready && self.sender_misses_neighbors(&from, &predecessors, &successors);
        // The admitting peer's fingers are weighed by `attach_join_fingers`.
        let copied_fingers: &[NodeId] = if admitting_update { &[] } else { &fingers };
        let learned: Vec<NodeId> = std::iter::once(from)
            .chain(predecessors.iter().copied())
            .chain(successors.iter().copied())
            .chain(copied_fingers.iter().copied())
            .collect();
        let recently = self
            .corrected
            .get(&from)
            .is_some_and(|t| now < t + CORRECTION_HOLDOFF_MS);
        if misses && !recently && self.phase == Phase::Joined && self.is_linked(&from) {
            self.corrected.insert(from, now);
            self.send_update(now, from, false, out);
        }
        for c in learned {
            self.consider(c, Some(from), out);
        }
        self.recompute(now, out);
        if let (true, Phase::Joining { admitting_updated, .. }) = (admitting_update, &mut self.phase) {
            *admitting_updated = true;
            self.attach_join_fingers(from, &predecessors, &successors, &fingers, out);
        }
        self.maybe_send_join(out);
        Ok(Vec::new())
    }

    /// §10.5 steps 5-8 on the admitting peer: the joining node becomes a
    /// peer; the Neighbor Table change triggers the data transfer and the
    /// Updates.
    fn on_join(
        &mut self,
        now: u64,
        from: NodeId,
        req: &JoinReq,
        out: &mut Vec<TopologyCommand>,
    ) -> Result<Vec<u8>, ErrorCode> {
        if req.joining_peer_id != from {
            return Err(ErrorCode::FORBIDDEN);
        }
        if self.phase != Phase::Joined {
            return Err(ErrorCode::NOT_FOUND);
        }
        self.others.remove(&from);
        self.peers.insert(node_position(&from), from);
        self.recompute(now, out);
        // Steps 7-8 are MUSTs even without reactive recovery.
        self.schedule_update(now, true);
        Ok(Vec::new())
    }

    /// §10.9: treat the leaving peer as failed and learn its lists.
    fn on_leave(
        &mut self,
        now: u64,
        from: NodeId,
        req: &LeaveReq,
        out: &mut Vec<TopologyCommand>,
    ) -> Result<(), ErrorCode> {
        if req.leaving_peer_id != from {
            return Err(ErrorCode::FORBIDDEN);
        }
        let data = ChordLeaveData::from_bytes(&req.overlay_specific_data, &self.ctx)
            .map_err(|_| ErrorCode::INVALID_MESSAGE)?;
        // Out of the tables, but the link stays: the leaver may still be
        // handing data over, and closes every link itself once done (a
        // link it sees fail meanwhile is a real failure).
        self.remove_peer(&from);
        self.attaching.remove(&from);
        self.departed.insert(from, now);
        if self.phase != Phase::Joined {
            return Ok(());
        }
        let learned = match data {
            ChordLeaveData::FromSucc { successors } => successors,
            ChordLeaveData::FromPred { predecessors } => predecessors,
        };
        for c in learned {
            self.consider(c, None, out);
        }
        if self.peers.is_empty() {
            // The last other peer left gracefully: this peer is the ring
            // now, as after starting alone. Rejoining is for a peer cut off
            // by failures; here there is nobody to rejoin.
            self.successors.clear();
            self.predecessors.clear();
            out.push(TopologyCommand::ReplicasChanged);
            return Ok(());
        }
        // §10.9: as for a failed neighbour (§10.7.1), an Update to the
        // Neighbor Table; `recompute` widens it to every link when the
        // leaver was our predecessor and our range grew.
        self.recompute(now, out);
        self.schedule_update(now, false);
        Ok(())
    }

    /// §10.8: the next hop, and an Update if asked.
    fn on_route_query(
        &mut self,
        now: u64,
        from: NodeId,
        req: &RouteQueryReq,
        out: &mut Vec<TopologyCommand>,
    ) -> Result<Vec<u8>, ErrorCode> {
        let target: &[u8] = match &req.destination {
            Destination::Node(n) => n.as_bytes(),
            Destination::Resource(r) => r.as_bytes(),
            _ => return Err(ErrorCode::INVALID_MESSAGE),
        };
        let next_peer = if self.is_responsible(target) {
            self.me
        } else {
            self.next_hop(target).ok_or(ErrorCode::NOT_FOUND)?
        };
        if req.send_update && self.is_linked(&from) {
            self.send_update(now, from, true, out);
        }
        ChordRouteQueryAns { next_peer }
            .to_bytes()
            .map_err(|_| ErrorCode::INVALID_MESSAGE)
    }

    fn on_answer(
        &mut self,
        now: u64,
        token: u64,
        answer: Result<Answer, RequestFailure>,
        out: &mut Vec<TopologyCommand>,
    ) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        match p {
            Pending::AdmittingAttach => match answer {
                Ok(a) => {
                    if let Phase::Joining { admitting, .. } = &mut self.phase {
                        *admitting = Some(a.from);
                    }
                    self.maybe_send_join(out);
                }
                Err(_) => self.restart_join(out),
            },
            Pending::NeighborAttach(c) => {
                self.attaching.remove(&c);
                self.maybe_send_join(out);
            }
            Pending::FingerAttach(i) => {
                self.fingers_searching.remove(&i);
            }
            Pending::CopiedFingerAttach { index, peer } => {
                self.fingers_searching.remove(&index);
                self.attaching.remove(&peer);
            }
            Pending::Join => match answer {
                Ok(_) => {
                    let bootstrap = match self.phase {
                        Phase::Joining { bootstrap, .. } => Some(bootstrap),
                        _ => None,
                    };
                    self.phase = Phase::Joined;
                    self.schedule_maintenance(now);
                    out.push(TopologyCommand::Joined);
                    // The bootstrap peer only got us in. Kept, its link would
                    // stay for good at both ends, and early peers, everyone's
                    // bootstrap while a ring grows, would end up linked to a
                    // good part of it and Update all of them on every change
                    // (§10.7.3). So unless it is a neighbour or a finger, it
                    // goes (§10.5 leaves this open).
                    if let Some(b) = bootstrap.filter(|b| !self.in_tables(b)) {
                        self.remove_peer(&b);
                        out.push(TopologyCommand::CloseLink(b));
                    }
                    // §10.5 step 9.
                    self.send_updates(now, false, out);
                }
                Err(_) => self.restart_join(out),
            },
            Pending::Update(peer) => {
                // §10.7.1: a failed request means a failed neighbour.
                if answer == Err(RequestFailure::Timeout) && self.is_linked(&peer) {
                    let was_finger = self.remove_peer(&peer);
                    out.push(TopologyCommand::CloseLink(peer));
                    self.recompute(now, out);
                    if let (Some(i), true) = (was_finger, self.config.reactive) {
                        self.search_finger(i, out);
                    }
                }
            }
            Pending::PartitionProbe => {}
            Pending::PartitionAttach { peer, via } => {
                self.attaching.remove(&peer);
                // "followed by an Update sent to S'": our whole view, so S'
                // starts its own stabilization toward our side.
                if answer.is_ok() && self.phase == Phase::Joined && self.is_linked(&peer) {
                    self.send_update(now, peer, true, out);
                }
                // When S' is B itself and the Attach succeeded, B is in the
                // tables now and its link stays.
                self.close_probe_link(Some(via), out);
            }
            Pending::Leave => {
                if let Phase::Leaving { awaiting } = &mut self.phase {
                    *awaiting -= 1;
                    if *awaiting == 0 {
                        self.phase = Phase::Left;
                        out.push(TopologyCommand::Left);
                    }
                }
            }
        }
    }

    /// §10.7.4.4: an answer from a node that is neither this one nor a
    /// peer it is linked to means the bootstrap peer is in another
    /// partition (the RFC names "not P's successor"; any linked peer is
    /// in our partition, so we treat all of them alike). Attach to it
    /// through the bootstrap peer, then Update it; stabilization on both
    /// sides merges the rings from there.
    fn on_bootstrap_probe(
        &mut self,
        _now: u64,
        token: u64,
        bootstrap: Option<ProbeLink>,
        responder: Result<NodeId, RequestFailure>,
        out: &mut Vec<TopologyCommand>,
    ) {
        if self.pending.remove(&token) != Some(Pending::PartitionProbe) {
            return;
        }
        let other_partition = responder.ok().filter(|s| {
            *s != self.me
                && !self.peers.contains_key(&node_position(s))
                && !self.attaching.contains(s)
                && !self.departed.contains_key(s)
        });
        match (other_partition, bootstrap) {
            (Some(s), Some(b)) if self.phase == Phase::Joined => {
                self.partitions_found += 1;
                let destination = if s == b.peer {
                    vec![Destination::Node(s)]
                } else {
                    vec![Destination::Node(b.peer), Destination::Node(s)]
                };
                self.attaching.insert(s);
                let token = self.token(Pending::PartitionAttach { peer: s, via: b });
                out.push(TopologyCommand::Attach {
                    token,
                    destination,
                    send_update: true,
                });
            }
            _ => self.close_probe_link(bootstrap, out),
        }
    }

    fn responsible_ppb(&self) -> u32 {
        let Some(p) = self.predecessors.first() else {
            return 1_000_000_000;
        };
        let d = distance(node_position(p), self.my_pos);
        (((d >> 64) * 1_000_000_000) >> 64) as u32
    }

    fn hot_memory(&self, visit: &mut dyn FnMut(*const u8, usize)) {
        for (start, len) in [
            memory_span(self.peers.as_slice()),
            memory_span(&self.successors),
            memory_span(&self.predecessors),
        ] {
            visit(start, len);
        }
    }

    /// Only the §11.1 elements change; the neighbour count and our own
    /// timing choices stay.
    fn reconfigure(&mut self, chord: &ChordConfig) {
        self.config.update_interval_ms = chord.update_interval_ms;
        self.config.ping_interval_ms = chord.ping_interval_ms;
        self.config.reactive = chord.reactive;
    }

    fn next_timer(&self) -> Option<u64> {
        match self.phase {
            Phase::Joining { started, .. } => Some(started + JOIN_TIMEOUT_MS),
            Phase::Joined => [
                self.update_due,
                self.next_stabilize,
                self.next_finger_search,
                self.next_partition_check,
            ]
            .into_iter()
            .flatten()
            .min(),
            _ => None,
        }
    }

    fn on_timer(&mut self, now: u64, out: &mut Vec<TopologyCommand>) {
        self.departed.retain(|_, at| now.saturating_sub(*at) < DEPARTED_MS);
        if let Phase::Joining { started, .. } = self.phase {
            if now >= started + JOIN_TIMEOUT_MS {
                self.restart_join(out);
                return;
            }
        }
        if self.phase != Phase::Joined {
            return;
        }
        if self.update_due.is_some_and(|d| d <= now) {
            self.update_due = None;
            let everyone = std::mem::take(&mut self.update_everyone);
            self.send_updates(now, everyone, out);
        }
        if self.next_stabilize.is_some_and(|d| d <= now) {
            let u = self.config.update_interval_ms.max(1);
            self.next_stabilize = Some(now + u / 2 + self.rng.random_range(0..u));
            self.send_updates(now, false, out);
        }
        if self.next_finger_search.is_some_and(|d| d <= now) {
            let p = self.config.ping_interval_ms.max(1);
            self.next_finger_search = Some(now + p / 2 + self.rng.random_range(0..p));
            // §10.7.4.2 Alternative 1: walk from i=1, take each invalid entry
            // with probability 1/2.
            for i in 1..=self.finger_count() {
                if self.finger(i).is_none() && self.rng.random_bool(0.5) {
                    self.search_finger(i, out);
                    break;
                }
            }
        }
        if self.next_partition_check.is_some_and(|d| d <= now) {
            self.next_partition_check = self.partition_check_after(now, self.config.partition_check_interval_ms);
            // §10.7.4.4 asks for "a Ping for its own Node-ID". We route it
            // as a Resource-ID of the same value: a Node-ID destination
            // is dropped by any peer that is responsible for it but not it
            // (§6.1.1), which in the other partition is exactly the peer
            // that should answer. In one ring the answer comes from us.
            let token = self.token(Pending::PartitionProbe);
            out.push(TopologyCommand::ProbeThroughBootstrap {
                token,
                target: Destination::Resource(ResourceId(self.me.as_bytes().to_vec())),
            });
        }
    }
}

#[cfg(test)]
mod tests;
