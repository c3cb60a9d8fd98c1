//! The link table (RFC 6940 §6.5): which of the transport links a driver
//! opened is the one to each peer. Two links to one peer are settled here:
//! dialled at once by both ends (the usual tie-break), a redial, a peer
//! that came back after its old link fell silent, or a second process
//! with the same Node-ID ([`same_node_id`]). The driver only numbers
//! links, moves bytes on them and closes the ones this says to close.

pub mod same_node_id;
pub mod simple_reliability;
mod table;

use crate::core::Output;
use overlay::sorted::SortedMap;
use overlay::{OverlayNode, RequestFailure, RequestId, Security, Topology};
use reload_wire::{Body, NodeId};
use same_node_id::{
    is_request, verdict, Answer, Check, Verdict, CHECK_LINKS_OLDER_THAN_MS, CHECK_TIMEOUT_MS, HELD_REQUESTS,
    REFUSING_FOR_MS,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use table::LinkTable;

/// A driver's number for one transport link.
pub type LinkId = u64;

/// The most announced peer addresses kept (a bound on memory a flood of
/// Attaches could take).
pub const ANNOUNCED_LIMIT: usize = 1024;
/// Announced addresses of peers not linked (yet) kept at most, beyond one
/// per link: Attaches whose links are still being set up.
pub const ANNOUNCED_SLACK: usize = 16;
/// The most peers cached for the next start (§11.4).
pub const CACHED_PEERS: usize = 10;

/// How a link came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEnd {
    /// This node dialled `address` (the peer's listen address) after an
    /// [`Output::Connect`] that expected `expected` there (`None`: a
    /// bootstrap address).
    Dialled {
        address: SocketAddr,
        expected: Option<NodeId>,
    },
    /// The peer dialled this node from `remote`.
    Accepted { remote: SocketAddr },
}

/// Which end dialled a link, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This node dialled the peer's listen address for its Node-ID.
    Dialled,
    /// This node dialled a bootstrap address, not knowing who is there.
    DialledBootstrap,
    /// The peer dialled this node.
    Accepted,
}

/// One link in the table, or being checked: a few words, as a peer of a
/// large overlay keeps hundreds and the simulator a table per peer.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub id: LinkId,
    /// The address this node dialled (the peer's listen address), or the
    /// one the peer dialled from.
    pub remote: SocketAddr,
    pub origin: Origin,
    /// When it came up (engine clock).
    pub up_since: u64,
    /// Reported silent (§6.6.5): out of the engine's routing table, kept
    /// open in case it resumes; a new link for the peer replaces it.
    pub silent: bool,
}

impl Link {
    fn new(id: LinkId, end: LinkEnd, now: u64) -> Link {
        let (remote, origin) = match end {
            LinkEnd::Dialled {
                address,
                expected: None,
            } => (address, Origin::DialledBootstrap),
            LinkEnd::Dialled { address, .. } => (address, Origin::Dialled),
            LinkEnd::Accepted { remote } => (remote, Origin::Accepted),
        };
        Link {
            id,
            remote,
            origin,
            up_since: now,
            silent: false,
        }
    }

    fn is_bootstrap(&self) -> bool {
        self.origin == Origin::DialledBootstrap
    }

    /// The peer's listen address, when this node dialled it.
    fn dialled(&self) -> Option<SocketAddr> {
        (self.origin != Origin::Accepted).then_some(self.remote)
    }

    /// The Node-ID of the end that dialled: `me` or `peer`.
    fn initiator(&self, me: NodeId, peer: NodeId) -> NodeId {
        if self.origin == Origin::Accepted {
            peer
        } else {
            me
        }
    }
}

/// The links of one node.
#[derive(Default)]
pub struct Links {
    table: LinkTable,
    /// Second links for a Node-ID already linked, being checked.
    checks: BTreeMap<NodeId, Check<Link>>,
    /// Where peers that sent an Attach take links, for the peer cache.
    announced: SortedMap<NodeId, SocketAddr>,
    /// Links to close once the outputs before them went out (nodes a new
    /// configuration lists as bad): peers whose link is in the table, and
    /// second links that were being checked.
    closing: Vec<NodeId>,
    closing_links: Vec<LinkId>,
    /// The nodes the configuration lists as bad (§11.1).
    bad: Vec<NodeId>,
    /// Bootstrap dials that came to nothing here (a link to this node
    /// itself, to a peer being checked, a duplicate): each counts as a
    /// failed dial for the bootstrap.
    failed_bootstrap_dials: usize,
}

/// What the driver reports about a link.
#[derive(Debug)]
pub enum LinkEvent<'a> {
    Up {
        link: LinkId,
        peer: NodeId,
        end: LinkEnd,
    },
    Message {
        link: LinkId,
        peer: NodeId,
        bytes: &'a [u8],
    },
    /// Nothing was sent on it for a while (decision 0022).
    Idle {
        link: LinkId,
        peer: NodeId,
    },
    /// It stopped acknowledging after `waited_ms`.
    Silent {
        link: LinkId,
        peer: NodeId,
        waited_ms: u64,
    },
    Resumed {
        link: LinkId,
        peer: NodeId,
    },
    /// It closed, for this reason.
    Closed {
        link: LinkId,
        peer: NodeId,
        why: &'a str,
    },
}

/// What the operator hears of a link (for the driver's log and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkReport {
    /// The link to `peer` fell silent after `waited_ms`; `neighbour` when
    /// the peer was a first successor or predecessor (it is lost).
    Silent {
        peer: NodeId,
        waited_ms: u64,
        neighbour: bool,
    },
    /// The link to `peer` acknowledges again.
    Resumed { peer: NodeId },
    /// The link to `peer`, the current one, closed, for this reason;
    /// `neighbour` as for [`LinkReport::Silent`].
    Closed { peer: NodeId, why: String, neighbour: bool },
    /// A second process with `peer`'s Node-ID was refused (decision 0024).
    Duplicate { peer: NodeId, from: SocketAddr },
    /// Links to nodes a new configuration lists as bad were closed.
    ClosedForBadNode { peers: Vec<NodeId> },
    /// A bootstrap address led to this node itself: a failed dial.
    OwnAddress { address: SocketAddr },
}

impl Links {
    /// How many peers this node has a link to.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// The table's memory, for a driver that loads it into cache ahead of
    /// the next event (the simulator; a hint only).
    pub fn hot_memory(&self, visit: &mut dyn FnMut(*const u8, usize)) {
        self.table.hot_memory(visit);
    }

    pub fn get(&self, peer: &NodeId) -> Option<&Link> {
        self.table.get(peer)
    }

    /// When a check next needs the timer.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.checks
            .values()
            .map(|c| c.refusing_until.unwrap_or(c.deadline))
            .min()
    }

    /// Whether `link` is the one this node uses to reach `peer`.
    fn is_current(&self, link: LinkId, peer: &NodeId) -> bool {
        self.table.id(peer) == Some(link)
    }

    /// An Attach named where `peer` takes links (kept for the peer cache).
    /// Only linked peers' addresses are of use, so the others (peers that
    /// never linked, or left) go once there are [`ANNOUNCED_SLACK`] of
    /// them: a peer hears Attaches from far more peers over a day than it
    /// keeps links to, and the simulator keeps a table per peer.
    pub fn announced(&mut self, peer: NodeId, address: SocketAddr) {
        if self.announced.len() >= (self.table.len() + ANNOUNCED_SLACK).min(ANNOUNCED_LIMIT) {
            let table = &self.table;
            self.announced.retain(|id, _| table.contains_key(id));
        }
        if self.announced.len() < ANNOUNCED_LIMIT {
            self.announced.insert(peer, address);
        }
    }

    /// §11.4: up to [`CACHED_PEERS`] peers of `order` (neighbours first)
    /// this node has a link to, by the address they take links on: the one
    /// this node dialled, or the one their Attach named. Only peers from
    /// the routing tables: a link outside them may be a client (§4.2.1),
    /// which admits nobody.
    pub fn to_cache(&self, order: impl IntoIterator<Item = NodeId>) -> Vec<SocketAddr> {
        let mut peers = Vec::new();
        for id in order {
            if let Some(a) = self.listen_address(&id).filter(|a| !peers.contains(a)) {
                peers.push(a);
            }
            if peers.len() == CACHED_PEERS {
                break;
            }
        }
        peers
    }

    /// Where a linked peer takes links: the address this node dialled,
    /// or the one its Attach named.
    fn listen_address(&self, peer: &NodeId) -> Option<SocketAddr> {
        self.table
            .get(peer)
            .and_then(|l| l.dialled().or_else(|| self.announced.get(peer).copied()))
    }

    /// The linked peers, by where they take links (those whose address
    /// is known): the STUN servers of RFC 6940 §6.5.1.4.
    pub fn listen_addresses(&self) -> impl Iterator<Item = (NodeId, SocketAddr)> + '_ {
        self.table
            .keys()
            .filter_map(|peer| self.listen_address(peer).map(|a| (*peer, a)))
    }

    /// A new configuration lists `bad` as bad nodes (§11.1): checks of
    /// their links end, and their links close once the outputs queued
    /// before go out (the new document among them). The nodes whose links
    /// close.
    pub fn bad_nodes(&mut self, bad: &[NodeId]) -> Vec<NodeId> {
        self.bad = bad.to_vec();
        let (listed, kept): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.checks)
            .into_iter()
            .partition(|(peer, _)| bad.contains(peer));
        self.checks = kept;
        self.closing_links.extend(listed.values().map(|check| check.new.id));
        let closed: Vec<NodeId> = self.table.keys().filter(|n| bad.contains(n)).copied().collect();
        self.closing.extend(closed.iter().copied());
        closed
    }

    /// Bootstrap dials that came to nothing since last asked.
    pub fn take_failed_bootstrap_dials(&mut self) -> usize {
        std::mem::take(&mut self.failed_bootstrap_dials)
    }

    /// The links to close now that the outputs before them went out.
    pub fn take_closing<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        outputs: &mut VecDeque<Output>,
    ) -> bool {
        let closing = std::mem::take(&mut self.closing);
        let links = std::mem::take(&mut self.closing_links);
        let any = !closing.is_empty() || !links.is_empty();
        for link in links {
            outputs.push_back(Output::CloseLink { link });
        }
        for peer in closing {
            if let Some(link) = self.table.remove(&peer) {
                outputs.push_back(Output::CloseLink { link: link.id });
                engine.link_down(now, peer);
            }
        }
        any
    }

    /// The engine asks for a link to `peer`: one that is up and not silent
    /// serves (the other end dialled first).
    pub fn already_linked(&self, peer: &NodeId) -> bool {
        self.table.get(peer).is_some_and(|l| !l.silent)
    }

    /// The engine closes its link to `peer`.
    pub fn close<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        peer: NodeId,
        outputs: &mut VecDeque<Output>,
    ) {
        if let Some(link) = self.table.remove(&peer) {
            outputs.push_back(Output::CloseLink { link: link.id });
            engine.link_down(now, peer);
        }
    }

    /// The link that carries a message to `peer`.
    pub fn route(&self, peer: &NodeId) -> Option<LinkId> {
        self.table.id(peer)
    }

    /// A driver's link event.
    pub fn on_event<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        event: LinkEvent<'_>,
        outputs: &mut VecDeque<Output>,
    ) {
        match event {
            LinkEvent::Up { link, peer, end } => self.up(engine, now, link, peer, end, outputs),
            LinkEvent::Message { link, peer, bytes } => {
                if self.is_current(link, &peer) {
                    engine.receive(now, peer, bytes);
                } else {
                    self.second_link_message(engine, now, link, peer, bytes, outputs);
                }
            }
            LinkEvent::Idle { link, peer } => {
                if self.is_current(link, &peer) {
                    engine.keepalive(now, peer);
                }
            }
            LinkEvent::Silent { link, peer, waited_ms } => {
                if self.table.set_silent(&peer, link, true) {
                    let neighbour = engine.topology().is_first_neighbor(&peer);
                    outputs.push_back(Output::Link(LinkReport::Silent {
                        peer,
                        waited_ms,
                        neighbour,
                    }));
                    engine.link_silent(now, peer);
                }
            }
            LinkEvent::Resumed { link, peer } => {
                if self.table.set_silent(&peer, link, false) {
                    outputs.push_back(Output::Link(LinkReport::Resumed { peer }));
                    engine.link_resumed(now, peer);
                }
            }
            LinkEvent::Closed { link, peer, why } => {
                if !self.is_current(link, &peer) {
                    if self.checks.get(&peer).is_some_and(|c| c.new.id == link) {
                        self.checks.remove(&peer);
                    }
                    return;
                }
                let neighbour = engine.topology().is_first_neighbor(&peer);
                outputs.push_back(Output::Link(LinkReport::Closed {
                    peer,
                    why: why.to_string(),
                    neighbour,
                }));
                self.table.remove(&peer);
                engine.link_down(now, peer);
                // A second link being checked takes its place.
                if let Some(check) = self.checks.get_mut(&peer) {
                    check.old = [Answer::Failed; 2];
                    self.settle(engine, now, peer, false, outputs);
                }
            }
        }
    }

    fn up<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        id: LinkId,
        peer: NodeId,
        end: LinkEnd,
        outputs: &mut VecDeque<Output>,
    ) {
        let me = engine.node_id();
        let link = Link::new(id, end, now);
        if peer == me {
            // A bootstrap address that is this node's own.
            outputs.push_back(Output::CloseLink { link: id });
            if link.is_bootstrap() {
                outputs.push_back(Output::Link(LinkReport::OwnAddress { address: link.remote }));
                self.failed_bootstrap_dials += 1;
            }
            return;
        }
        if self.checks.contains_key(&peer) {
            // A third link while two are being checked: not now.
            outputs.push_back(Output::CloseLink { link: id });
            if link.is_bootstrap() {
                self.failed_bootstrap_dials += 1;
            }
            return;
        }
        if let Some(old) = self.table.get(&peer).filter(|old| old.silent) {
            // The peer came back (a restart after a crash): the silent
            // link gives way at once.
            outputs.push_back(Output::CloseLink { link: old.id });
            self.table.remove(&peer);
        }
        let old_enough = self
            .table
            .get(&peer)
            .is_some_and(|old| now.saturating_sub(old.up_since) >= CHECK_LINKS_OLDER_THAN_MS);
        if old_enough {
            return self.check_second_link(engine, now, peer, link, outputs);
        }
        self.take(engine, now, peer, link, outputs);
    }

    /// A link to `peer` is up: it joins the link table, unless `peer`
    /// already has a link that the usual tie-break keeps (two links to
    /// one peer dialled at once: keep the one the smaller Node-ID dialled,
    /// so both ends keep the same one; a redial by the same end wins).
    fn take<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        peer: NodeId,
        link: Link,
        outputs: &mut VecDeque<Output>,
    ) {
        let bootstrap = link.is_bootstrap();
        if self.bad.contains(&peer) {
            // Listed while its handshake or second-link check was under way.
            outputs.push_back(Output::CloseLink { link: link.id });
            return;
        }
        if let Some(old) = self.table.get(&peer) {
            let me = engine.node_id();
            let (old_by, new_by) = (old.initiator(me, peer), link.initiator(me, peer));
            let keep_old = old_by < new_by;
            if keep_old {
                outputs.push_back(Output::CloseLink { link: link.id });
                if bootstrap {
                    // The bootstrap peer is reached all the same.
                    engine.bootstrap_link_up(now, peer);
                }
                return;
            }
            outputs.push_back(Output::CloseLink { link: old.id });
        }
        tracing::debug!("link {} up with {}", link.id, peer.to_hex());
        self.table.insert(peer, link);
        if bootstrap {
            engine.bootstrap_link_up(now, peer);
        } else {
            engine.link_up(now, peer);
        }
    }

    /// [`same_node_id`]: two Pings over the old link to `peer` and one over
    /// the new, which is kept aside until they are answered.
    fn check_second_link<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        peer: NodeId,
        new: Link,
        outputs: &mut VecDeque<Output>,
    ) {
        let Some(old) = self.table.get(&peer).map(|l| l.id) else {
            return self.take(engine, now, peer, new, outputs);
        };
        // A Ping a full link queue drops makes the check time out, and an
        // old link that answers nothing gives way: on a link that busy,
        // rare and harmless.
        let mut ping_over = |link: LinkId| {
            let (id, bytes) = engine.direct_ping(now, peer)?;
            outputs.push_back(Output::Send {
                link,
                bytes,
                maintenance: true,
            });
            Some(id)
        };
        let (Some(first), Some(second), Some(ping_new)) = (ping_over(old), ping_over(old), ping_over(new.id)) else {
            return self.take(engine, now, peer, new, outputs);
        };
        tracing::debug!(
            "a second link to {} (from {}): checking both",
            peer.to_hex(),
            new.remote
        );
        self.checks.insert(
            peer,
            Check {
                new,
                ping_old: [first, second],
                ping_new,
                old: [Answer::Waiting; 2],
                new_answer: Answer::Waiting,
                deadline: now + CHECK_TIMEOUT_MS,
                held: Vec::new(),
                refusing_until: None,
                refusal: String::new(),
            },
        );
    }

    /// A check's Ping was answered (or failed); `false` if it was none.
    pub fn ping_done<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        request: RequestId,
        outcome: &Result<Body, RequestFailure>,
        outputs: &mut VecDeque<Output>,
    ) -> bool {
        let answer = match outcome {
            Ok(Body::PingAns(a)) => Answer::Instance(a.response_id),
            _ => Answer::Failed,
        };
        let Some((&peer, check)) = self
            .checks
            .iter_mut()
            .find(|(_, c)| c.ping_old.contains(&request) || c.ping_new == request)
        else {
            return false;
        };
        match check.ping_old.iter().position(|r| *r == request) {
            Some(i) => check.old[i] = answer,
            None => check.new_answer = answer,
        }
        self.settle(engine, now, peer, false, outputs);
        true
    }

    /// Acts on a check's verdict once there is one.
    fn settle<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        peer: NodeId,
        timed_out: bool,
        outputs: &mut VecDeque<Output>,
    ) {
        let Some(check) = self.checks.get(&peer) else {
            return;
        };
        if check.refusing_until.is_some() {
            if timed_out {
                // The refusals had their time; the link closes.
                if let Some(check) = self.checks.remove(&peer) {
                    outputs.push_back(Output::CloseLink { link: check.new.id });
                }
            }
            return;
        }
        let verdict = verdict(check.old, check.new_answer, timed_out);
        match verdict {
            Verdict::Wait => {}
            Verdict::SameProcess | Verdict::OldGone => {
                let Some(check) = self.checks.remove(&peer) else {
                    return;
                };
                if verdict == Verdict::OldGone {
                    tracing::info!(
                        "the link to {} no longer answers; the new one from {} replaces it",
                        peer.to_hex(),
                        check.new.remote
                    );
                    if let Some(old) = self.table.remove(&peer) {
                        outputs.push_back(Output::CloseLink { link: old.id });
                    }
                }
                let link = check.new.id;
                self.take(engine, now, peer, check.new, outputs);
                if self.is_current(link, &peer) {
                    for bytes in check.held {
                        engine.receive(now, peer, &bytes);
                    }
                }
            }
            Verdict::NewGone => {
                if let Some(check) = self.checks.remove(&peer) {
                    outputs.push_back(Output::CloseLink { link: check.new.id });
                    if check.new.is_bootstrap() {
                        self.failed_bootstrap_dials += 1;
                    }
                }
            }
            Verdict::Duplicate { .. } => {
                let old_remote = self.table.get(&peer).map(|l| l.remote);
                let Some(check) = self.checks.get_mut(&peer) else {
                    return;
                };
                let refusal = format!(
                    "Node-ID {} is in use by another peer (linked from {}): two processes must never share a node \
                     directory; enroll each machine with `p2psip enroll`",
                    peer.to_hex(),
                    old_remote.map_or_else(|| "elsewhere".to_string(), |a| a.to_string())
                );
                tracing::warn!(
                    "refused a second process with Node-ID {} (from {}): {refusal}",
                    peer.to_hex(),
                    check.new.remote
                );
                outputs.push_back(Output::Link(LinkReport::Duplicate {
                    peer,
                    from: check.new.remote,
                }));
                let bootstrap = check.new.is_bootstrap();
                check.refusal = refusal;
                check.refusing_until = Some(now + REFUSING_FOR_MS);
                let held = std::mem::take(&mut check.held);
                if bootstrap {
                    // The bootstrap address led to the duplicate: try the next.
                    self.failed_bootstrap_dials += 1;
                }
                for bytes in held {
                    self.refuse_over_second_link(engine, peer, &bytes, outputs);
                }
            }
        }
    }

    /// Answers a request that came over `peer`'s refused second link with
    /// the refusal, over that link.
    fn refuse_over_second_link<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        peer: NodeId,
        bytes: &[u8],
        outputs: &mut VecDeque<Output>,
    ) {
        let Some(check) = self.checks.get(&peer) else {
            return;
        };
        if let Some(answer) = engine.refuse(peer, bytes, reload_wire::ErrorCode::FORBIDDEN, &check.refusal) {
            outputs.push_back(Output::Send {
                link: check.new.id,
                bytes: answer,
                maintenance: true,
            });
        }
    }

    /// A message over a link that is not `peer`'s current one: a Ping
    /// answer or a held request while a check runs, a refusal once it
    /// found a duplicate; otherwise ignored (the link was replaced).
    fn second_link_message<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        link: LinkId,
        peer: NodeId,
        bytes: &[u8],
        outputs: &mut VecDeque<Output>,
    ) {
        let Some(check) = self.checks.get_mut(&peer).filter(|c| c.new.id == link) else {
            return;
        };
        if !is_request(bytes, engine.decode_context()) {
            return engine.receive(now, peer, bytes);
        }
        if check.refusing_until.is_some() {
            return self.refuse_over_second_link(engine, peer, bytes, outputs);
        }
        if check.held.len() < HELD_REQUESTS {
            check.held.push(bytes.to_vec());
        }
    }

    /// Settles the checks whose time is up.
    pub fn handle_timeout<T: Topology, S: Security>(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        outputs: &mut VecDeque<Output>,
    ) {
        let due: Vec<NodeId> = self
            .checks
            .iter()
            .filter(|(_, c)| c.refusing_until.unwrap_or(c.deadline) <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.settle(engine, now, peer, true, outputs);
        }
    }
}
