//! [`PeerCore`]: one peer as one sans-IO state machine: the overlay engine
//! with the usages and the bootstrap on top of it. A driver feeds it
//! [`Input`]s with the time, carries out its [`Output`]s and wakes it at
//! [`PeerCore::poll_timeout`]; it decides nothing of the protocol itself.
//!
//! Times are the engine's clock, in milliseconds: the daemon gives the
//! wall clock at start advanced by a monotonic clock, the simulator its
//! simulated time.

use crate::bootstrap::{Bootstrap, BootstrapPlan, Step};
use crate::certificates::CertificateUsage;
use crate::discovery::{Datagram, ROUND_MS};
use crate::ice::{IceLinks, IceOutput, Nominated};
use crate::links::{LinkEvent, LinkId, LinkReport, Links};
use crate::sip_usage::{Located, PublishError, SipUsage};
use crate::stun::servers::StunServers;
use crate::usage::{check_kinds, KindPolicyMismatch, Usage};
use overlay::{Action, Entropy, Event, OverlayConfig, OverlayNode, RequestFailure, RequestId, Security, Topology};
use reload_wire::{Body, IpAddressPort, NodeId};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

/// RFC 8489 §5: a STUN transaction id, 96 bits from a cryptographic
/// source (an off-path host that guessed it could forge the answer).
fn transaction_id(entropy: &mut Entropy) -> [u8; 12] {
    let mut id = [0u8; 12];
    (entropy.0)(&mut id);
    id
}

/// How long a leave waits for the removals of the peer's registrations to
/// be answered before it begins (a Store each, answered in a few overlay
/// round trips).
pub const WITHDRAW_WAIT_MS: u64 = 3_000;

/// What happens to a peer.
#[derive(Debug)]
pub enum Input<'a> {
    /// Something happened on a link: it came up, a message arrived, it
    /// fell idle, silent, resumed or closed.
    Link(LinkEvent<'a>),
    /// A dial after [`Output::Connect`] failed; `expected` is the Node-ID
    /// it was for, `None` for a bootstrap address.
    LinkFailed { expected: Option<NodeId> },
    /// The configuration now lists these nodes as bad (§11.1; the driver's
    /// TLS and signature checks refuse them already): their links close
    /// once the outputs queued before go out, so they hear of it.
    BadNodes(Vec<NodeId>),
    /// A multicast discovery datagram and where it came from.
    Discovery { datagram: Datagram, from: SocketAddr },
    /// Store (lifetime > 0) or remove (0) the registration of a user whose
    /// phones this peer serves (RFC 7904 §3); answered by
    /// [`Output::Published`] with `token`.
    Publish { user: &'a str, lifetime_s: u32, token: u64 },
    /// Where the phones of `user` are (RFC 7904 §4.2); answered by
    /// [`Output::Located`] with `token`.
    Locate { user: String, token: u64 },
    /// Where these peers' SIP listens (the overlay's proxy peers, decision
    /// 0036); answered by [`Output::Located`] with `token`: the peers
    /// that answered, in this order.
    LocatePeers { peers: Vec<NodeId>, token: u64 },
    /// A SIP address of another peer could not be reached: ask its peer
    /// again on the next call rather than reuse the address.
    Unreachable { address: SocketAddr },
    /// Users were enrolled into this node or removed from it (the
    /// security already signs as the added ones and still as the removed
    /// ones): store the added users' certificates, replace the removed
    /// users' registrations and certificates by removals. Answered by
    /// [`Output::AccountsStored`] with `token` once the overlay answered
    /// every Store.
    Accounts {
        added: Vec<String>,
        removed: Vec<String>,
        token: u64,
    },
    /// A STUN datagram on the overlay UDP port that the driver's
    /// [`BindingServer`](crate::stun::server::BindingServer) passed on: a
    /// response (to a STUN server's request or an ICE check) or an ICE
    /// check.
    Stun { datagram: &'a [u8], from: SocketAddr },
    /// Leave gracefully (§10.9): withdraw this peer's registrations, then
    /// leave. [`Event::Left`] comes out when done (at once if the peer
    /// never joined).
    Leave,
}

/// What a peer asks of its driver.
#[derive(Debug)]
pub enum Output {
    /// Send on this link. `maintenance`: overlay upkeep (§6.4.2: Update,
    /// Ping, Attach, replication…), not a request the node's users made;
    /// the simulator counts the two apart.
    Send {
        link: LinkId,
        bytes: Vec<u8>,
        maintenance: bool,
    },
    /// Open a link; report it with [`LinkEvent::Up`] (a
    /// [`LinkEnd::Dialled`](crate::links::LinkEnd::Dialled) naming
    /// `peer` as expected) or [`Input::LinkFailed`].
    Connect {
        peer: Option<NodeId>,
        address: IpAddressPort,
    },
    /// Close this link; events still reported on it are ignored.
    CloseLink {
        link: LinkId,
    },
    /// What the operator hears of links.
    Link(LinkReport),
    /// Send `datagram` to the multicast group now and again after
    /// `again_after_ms` (UDP may lose one).
    Multicast {
        datagram: Datagram,
        again_after_ms: u64,
    },
    /// Answer a discovery datagram from `to`.
    DiscoveryAnswer {
        to: SocketAddr,
        datagram: Datagram,
    },
    Published {
        token: u64,
        result: Result<(), PublishError>,
    },
    Located {
        token: u64,
        located: Located,
    },
    /// The overlay answered every Store of an [`Input::Accounts`]: the
    /// failures, if any (a removed user's old values then live out their
    /// lifetimes).
    AccountsStored {
        token: u64,
        failures: Vec<String>,
    },
    /// Send this from the overlay UDP port: a STUN request to a linked
    /// peer (RFC 6940 §6.5.1.4), an ICE check, its answer or keepalive.
    Datagram {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// ICE nominated a pair for the link to a peer: run DTLS with it over
    /// the UDP socket (§6.5.1.13), and report the link up (as dialled by
    /// the DTLS server, accepted by the client) or failed.
    LinkOverIce(Nominated),
    /// What the engine tells the application, other than the answers to
    /// the core's own requests.
    Event(Event),
}

/// An [`Input::Accounts`] waiting for the overlay's answers.
struct AccountsWait {
    token: u64,
    waiting: BTreeSet<RequestId>,
    failures: Vec<String>,
}

/// One peer (or client) of the overlay: engine, usages and bootstrap.
pub struct PeerCore<T: Topology, S: Security> {
    engine: OverlayNode<T, S>,
    sip: SipUsage,
    /// The Certificate Store Usage (§8), when the node has a certificate
    /// to store (the simulator's stand-in security has none).
    certificates: Option<CertificateUsage>,
    /// Relays: this node's advertised, and those found (§9).
    relays: crate::relays::RelayUsage,
    bootstrap: Bootstrap,
    links: Links,
    /// A client (§4.2.1) answers no discovery.
    client: bool,
    /// The removals of a leave's withdrawal not answered yet, and until
    /// when the leave waits for them.
    withdrawing: BTreeSet<RequestId>,
    leave_at: Option<u64>,
    accounts: Vec<AccountsWait>,
    /// The linked peers asked for this peer's reflexive address, once the
    /// driver has a UDP socket on the overlay port.
    stun: Option<(StunServers, Entropy)>,
    /// The ICE agents of links being formed and up, once the overlay
    /// uses ICE ([`PeerCore::use_ice`]), and the candidates offered.
    ice: Option<IceLinks>,
    ice_candidates: Vec<reload_wire::IceCandidate>,
    outputs: VecDeque<Output>,
}

impl<T: Topology, S: Security> PeerCore<T, S> {
    /// A core around `engine`; `certificates` is the node's certificate
    /// (DER) and the user name it carries, for the Certificate Store Usage.
    /// Refused when the configuration gives a usage's Kind another access
    /// policy than its RFC.
    pub fn new(
        engine: OverlayNode<T, S>,
        plan: BootstrapPlan,
        client: bool,
        certificates: Option<(Vec<u8>, String)>,
    ) -> Result<Self, KindPolicyMismatch> {
        let mut engine = engine;
        check_configuration(engine.config())?;
        for kinds in USAGE_KINDS {
            let policies: Vec<_> = kinds.iter().map(|k| (k.id, k.access)).collect();
            engine.require_kind_policies(&policies);
        }
        let me = engine.node_id();
        let (overlay, port) = (engine.config().instance_name.clone(), listen_port(&engine));
        Ok(PeerCore {
            bootstrap: Bootstrap::new(plan, &overlay, me, port),
            links: Links::default(),
            engine,
            sip: SipUsage::default(),
            certificates: certificates.map(|(der, user)| CertificateUsage::new(der, user)),
            relays: Default::default(),
            client,
            withdrawing: BTreeSet::new(),
            leave_at: None,
            accounts: Vec::new(),
            stun: None,
            ice: None,
            ice_candidates: Vec::new(),
            outputs: VecDeque::new(),
        })
    }

    pub fn engine(&self) -> &OverlayNode<T, S> {
        &self.engine
    }

    /// The engine, for what the core does not wrap (the operator's
    /// requests, configuration updates, statistics).
    pub fn engine_mut(&mut self) -> &mut OverlayNode<T, S> {
        &mut self.engine
    }

    pub fn sip(&self) -> &SipUsage {
        &self.sip
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    /// From now on the linked peers serve as STUN servers (RFC 6940
    /// §6.5.1.4): the driver sends [`Output::Datagram`]s from its UDP
    /// socket on the overlay port and hands back the responses.
    /// Transaction ids come from `entropy`.
    pub fn use_stun_servers(&mut self, now: u64, entropy: Entropy) {
        self.stun = Some((StunServers::default(), entropy));
        self.sync_stun_servers(now);
    }

    /// The linked peers asked for this peer's reflexive address, and
    /// what they saw.
    pub fn stun_servers(&self) -> Option<&StunServers> {
        self.stun.as_ref().map(|(s, _)| s)
    }

    /// From now on links form by ICE (RFC 6940 §6.5.1.3): Attaches offer
    /// `udp` (the overlay UDP socket) as host candidate and the addresses
    /// the STUN servers saw as server-reflexive ones, with credentials
    /// from `entropy`.
    pub fn use_ice(&mut self, udp: SocketAddr, entropy: Entropy) {
        let ice = IceLinks::new(udp);
        let candidates = ice.local_candidates(self.reflexive_addresses());
        self.ice = Some(ice);
        self.ice_candidates = candidates.clone();
        self.engine.use_ice(candidates, Some(entropy));
    }

    /// One address per group of STUN servers (§6.5.1.4).
    fn reflexive_addresses(&self) -> Vec<SocketAddr> {
        self.stun_servers()
            .map(|s| s.one_per_group().into_iter().map(|m| m.reflexive).collect())
            .unwrap_or_default()
    }

    /// From now on this node advertises its TURN server at `address` in
    /// `density` places (RFC 6940 §9; the configuration's turn-density).
    pub fn offer_relay(&mut self, now: u64, address: SocketAddr, density: u8) {
        self.relays
            .offer(&mut self.engine, now, IpAddressPort::Ip(address), density);
    }

    /// Looks for relays in the overlay (§9), from random places derived
    /// from `seed`; [`PeerCore::relays_found`] tells what it found.
    pub fn search_relays(&mut self, now: u64, seed: [u8; 16]) {
        self.relays.search(&mut self.engine, now, seed);
    }

    /// The relays' TURN addresses found so far, and whether a search is
    /// still under way.
    pub fn relays_found(&self) -> (&[IpAddressPort], bool) {
        (self.relays.found(), self.relays.searching())
    }

    /// The ICE agents, when the overlay uses ICE.
    pub fn ice(&self) -> Option<&IceLinks> {
        self.ice.as_ref()
    }

    /// Gives the engine the candidates to offer, when they changed.
    fn offer_ice_candidates(&mut self) {
        let Some(ice) = &self.ice else { return };
        let candidates = ice.local_candidates(self.reflexive_addresses());
        if candidates != self.ice_candidates {
            self.ice_candidates = candidates.clone();
            self.engine.use_ice(candidates, None);
        }
    }

    fn sync_stun_servers(&mut self, now: u64) {
        if let Some((stun, entropy)) = &mut self.stun {
            stun.sync(now, self.links.listen_addresses(), &mut || transaction_id(entropy));
        }
    }

    /// The heap memory nearly every message at this peer reads, as
    /// (start, bytes) blocks: the link table and the engine's (see
    /// [`OverlayNode::hot_memory`]). For the simulator, which loads a
    /// peer's tables into cache while the peer before it runs.
    pub fn hot_memory(&self, visit: &mut dyn FnMut(*const u8, usize)) {
        self.links.hot_memory(visit);
        self.engine.hot_memory(visit);
    }

    /// §11.4: the peers to cache for the next start, up to ten, neighbours
    /// first: `order` lists the routing table's peers (successors,
    /// predecessors, fingers).
    pub fn peers_to_cache(&self, order: impl IntoIterator<Item = NodeId>) -> Vec<SocketAddr> {
        if !self.engine.is_joined() {
            return Vec::new();
        }
        self.links.to_cache(order)
    }

    /// Starts reaching the overlay (§11.4).
    pub fn start(&mut self, now: u64) {
        let step = self.bootstrap.start(now);
        self.follow(now, step);
    }

    /// A new configuration named bootstrap nodes: later attempts try them.
    pub fn add_bootstrap_addresses(&mut self, listen: SocketAddr, addresses: &[SocketAddr]) {
        self.bootstrap.add_addresses(listen, addresses);
    }

    pub fn handle_input(&mut self, now: u64, input: Input<'_>) {
        match input {
            Input::Link(event) => {
                let membership = matches!(event, LinkEvent::Up { .. } | LinkEvent::Closed { .. });
                let closed = match event {
                    LinkEvent::Closed { peer, .. } => Some(peer),
                    _ => None,
                };
                self.links.on_event(&mut self.engine, now, event, &mut self.outputs);
                self.bootstrap_dials_failed(now);
                if membership {
                    self.sync_stun_servers(now);
                }
                // Its ICE agent goes with the link.
                if let (Some(peer), Some(ice)) = (closed, &mut self.ice) {
                    if self.links.route(&peer).is_none() {
                        ice.remove(&peer, None);
                    }
                }
            }
            Input::LinkFailed { expected } => {
                // A link ICE nominated that its DTLS could not open: the
                // agent goes (it would keep checking an address nobody
                // uses).
                if let (Some(peer), Some(ice)) = (expected, &mut self.ice) {
                    if self.links.route(&peer).is_none() {
                        ice.remove(&peer, None);
                    }
                }
                self.dial_failed(now, expected)
            }
            Input::BadNodes(bad) => {
                let peers = self.links.bad_nodes(&bad);
                self.outputs
                    .push_back(Output::Link(LinkReport::ClosedForBadNode { peers }));
            }
            Input::Discovery { datagram, from } => {
                let answers = !self.client && self.engine.is_joined();
                if let Some(here) = self.bootstrap.heard(now, &datagram, from, answers) {
                    self.outputs.push_back(Output::DiscoveryAnswer {
                        to: from,
                        datagram: here,
                    });
                }
            }
            Input::Publish {
                user,
                lifetime_s,
                token,
            } => self
                .sip
                .registrations
                .publish(&mut self.engine, now, user, lifetime_s, token),
            Input::Locate { user, token } => self.sip.locator.start(&mut self.engine, now, user, token),
            Input::LocatePeers { peers, token } => self.sip.locator.start_peers(&mut self.engine, now, &peers, token),
            Input::Unreachable { address } => self.sip.locator.forget(address),
            Input::Accounts { added, removed, token } => self.accounts_changed(now, added, removed, token),
            Input::Stun { datagram, from } => {
                if self.ice.as_mut().is_some_and(|ice| ice.receive(now, datagram, from)) {
                    return;
                }
                if let Some((stun, _)) = &mut self.stun {
                    stun.on_response(now, datagram, from);
                    self.offer_ice_candidates();
                }
            }
            Input::Leave => self.leave(now),
        }
    }

    /// The next thing for the driver to do. `now` is when the driver asks
    /// (the engine's events are handled then).
    pub fn poll_output(&mut self, now: u64) -> Option<Output> {
        loop {
            self.collect_usage_outputs();
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            if let Some((to, bytes)) = self.stun.as_mut().and_then(|(s, _)| s.poll_transmit()) {
                return Some(Output::Datagram { to, bytes });
            }
            if let Some(output) = self.ice.as_mut().and_then(IceLinks::poll_output) {
                match output {
                    IceOutput::Datagram { to, bytes } => return Some(Output::Datagram { to, bytes }),
                    IceOutput::Nominated(nominated) => return Some(Output::LinkOverIce(nominated)),
                    IceOutput::Failed { peer } => {
                        tracing::info!(
                            "no ICE check with {} succeeded: no link to it this time (RFC 8445 §7.2.5.3)",
                            peer.to_hex()
                        );
                        self.engine.link_failed(now, Some(peer));
                        continue;
                    }
                }
            }
            let Some(action) = self.engine.poll_action() else {
                // Links to nodes just listed as bad close once everything
                // before them went out.
                if self.links.take_closing(&mut self.engine, now, &mut self.outputs) {
                    continue;
                }
                return None;
            };
            match action {
                Action::Send { to, bytes, maintenance } => match self.links.route(&to) {
                    Some(link) => {
                        return Some(Output::Send {
                            link,
                            bytes,
                            maintenance,
                        })
                    }
                    None => tracing::debug!("no link to {}; message dropped", to.to_hex()),
                },
                Action::Connect { peer: Some(peer), .. } if self.links.already_linked(&peer) => {
                    // The other end dialled first.
                    self.engine.link_up(now, peer);
                }
                Action::Connect { peer, address } => return Some(Output::Connect { peer, address }),
                Action::Close { peer } => self.links.close(&mut self.engine, now, peer, &mut self.outputs),
                Action::Event(event) => self.on_event(now, *event),
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due: the soonest
    /// of the engine's, the usages' and the bootstrap's deadlines.
    pub fn poll_timeout(&self) -> Option<u64> {
        let usages = [
            Usage::<T, S>::poll_timeout(&self.sip),
            self.certificates.as_ref().and_then(Usage::<T, S>::poll_timeout),
            Usage::<T, S>::poll_timeout(&self.relays),
        ];
        [
            self.engine.poll_timeout(),
            self.bootstrap.poll_timeout(),
            self.leave_at,
            self.links.poll_timeout(),
            self.stun_servers().and_then(StunServers::poll_timeout),
            self.ice.as_ref().and_then(IceLinks::poll_timeout),
        ]
        .into_iter()
        .chain(usages)
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if self.links.poll_timeout().is_some_and(|t| t <= now) {
            self.links.handle_timeout(&mut self.engine, now, &mut self.outputs);
            self.bootstrap_dials_failed(now);
        }
        if self.bootstrap.poll_timeout().is_some_and(|t| t <= now) {
            let step = self.bootstrap.handle_timeout(now);
            self.follow(now, step);
        }
        if self.leave_at.is_some_and(|t| t <= now) {
            self.leave_at = None;
            self.engine.leave(now);
        }
        if Usage::<T, S>::poll_timeout(&self.sip).is_some_and(|t| t <= now) {
            Usage::<T, S>::handle_timeout(&mut self.sip, &mut self.engine, now);
        }
        if let Some(certificates) = &mut self.certificates {
            if Usage::<T, S>::poll_timeout(certificates).is_some_and(|t| t <= now) {
                certificates.handle_timeout(&mut self.engine, now);
            }
        }
        if Usage::<T, S>::poll_timeout(&self.relays).is_some_and(|t| t <= now) {
            Usage::<T, S>::handle_timeout(&mut self.relays, &mut self.engine, now);
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        if let Some((stun, entropy)) = &mut self.stun {
            if stun.poll_timeout().is_some_and(|t| t <= now) {
                stun.handle_timeout(now, &mut || transaction_id(entropy));
            }
        }
        if let Some(ice) = &mut self.ice {
            if ice.poll_timeout().is_some_and(|t| t <= now) {
                ice.handle_timeout(now);
            }
        }
    }

    fn follow(&mut self, now: u64, step: Step) {
        match step {
            Step::Join(addresses) => {
                tracing::info!(
                    "joining through {}",
                    addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                );
                self.engine
                    .join(now, addresses.into_iter().map(IpAddressPort::Ip).collect());
            }
            Step::StartAlone(why) => {
                tracing::info!("{why}: starting it alone, a new overlay");
                self.engine.start_alone(now);
            }
            Step::Discover(datagram) => self.outputs.push_back(Output::Multicast {
                datagram,
                again_after_ms: ROUND_MS / 3,
            }),
            Step::Wait => {}
        }
    }

    fn on_event(&mut self, now: u64, event: Event) {
        match event {
            Event::Done {
                request,
                outcome,
                hops,
                latency_ms,
                responder,
            } => {
                if self.withdrawing.remove(&request) {
                    self.sip.on_done(&mut self.engine, now, request, &outcome, responder);
                    if self.withdrawing.is_empty() && self.leave_at.take().is_some() {
                        self.engine.leave(now);
                    }
                    return;
                }
                if self
                    .links
                    .ping_done(&mut self.engine, now, request, &outcome, &mut self.outputs)
                {
                    return self.bootstrap_dials_failed(now);
                }
                self.account_progress(request, &outcome);
                let taken = self.sip.on_done(&mut self.engine, now, request, &outcome, responder)
                    || self
                        .certificates
                        .as_mut()
                        .is_some_and(|c| c.on_done(&mut self.engine, now, request, &outcome, responder))
                    || self.relays.on_done(&mut self.engine, now, request, &outcome, responder);
                if !taken {
                    self.outputs.push_back(Output::Event(Event::Done {
                        request,
                        outcome,
                        hops,
                        latency_ms,
                        responder,
                    }));
                }
            }
            Event::Joined => {
                self.bootstrap.joined();
                if let Some(certificates) = &mut self.certificates {
                    certificates.joined(&mut self.engine, now);
                }
                Usage::<T, S>::joined(&mut self.relays, &mut self.engine, now);
                self.outputs.push_back(Output::Event(Event::Joined));
            }
            Event::PeerAddress {
                peer,
                address: IpAddressPort::Ip(address),
            } if !address.ip().is_unspecified() => {
                self.links.announced(peer, address);
                // A linked peer's address, learned after its link came
                // up: it can serve as a STUN server now.
                if self.links.get(&peer).is_some() {
                    self.sync_stun_servers(now);
                }
            }
            Event::IceAttach(attach) => match &mut self.ice {
                // The other end's link came first: nothing to check.
                Some(_) if attach.controlling && self.links.already_linked(&attach.peer) => {
                    self.engine.link_up(now, attach.peer);
                }
                Some(ice) => ice.start(now, &attach, &self.ice_candidates),
                None => self.engine.link_failed(now, Some(attach.peer)),
            },
            other => self.outputs.push_back(Output::Event(other)),
        }
    }

    /// A dial failed: the engine hears of it, and a bootstrap dial counts
    /// against the attempt under way (§11.4).
    fn dial_failed(&mut self, now: u64, expected: Option<NodeId>) {
        self.engine.link_failed(now, expected);
        if expected.is_none() && !self.engine.is_joined() {
            let step = self.bootstrap.dial_failed(now);
            self.follow(now, step);
        }
    }

    /// Bootstrap dials whose links the link table did not take.
    fn bootstrap_dials_failed(&mut self, now: u64) {
        for _ in 0..self.links.take_failed_bootstrap_dials() {
            self.dial_failed(now, None);
        }
    }

    fn collect_usage_outputs(&mut self) {
        while let Some((token, result)) = self.sip.registrations.poll_published() {
            self.outputs.push_back(Output::Published { token, result });
        }
        while let Some((token, located)) = self.sip.locator.poll_located() {
            self.outputs.push_back(Output::Located { token, located });
        }
    }

    fn leave(&mut self, now: u64) {
        if !self.engine.is_joined() {
            self.outputs.push_back(Output::Event(Event::Left));
            return;
        }
        self.withdrawing
            .extend(Usage::<T, S>::withdraw(&mut self.sip, &mut self.engine, now));
        self.withdrawing
            .extend(Usage::<T, S>::withdraw(&mut self.relays, &mut self.engine, now));
        if self.withdrawing.is_empty() {
            self.engine.leave(now);
        } else {
            tracing::info!("withdrew this peer's SIP registrations from the overlay; leaving once they are answered");
            self.leave_at = Some(now + WITHDRAW_WAIT_MS);
        }
    }

    fn accounts_changed(&mut self, now: u64, added: Vec<String>, removed: Vec<String>, token: u64) {
        let mut wait = AccountsWait {
            token,
            waiting: BTreeSet::new(),
            failures: Vec::new(),
        };
        if !self.engine.is_joined() {
            // Nothing reaches the overlay now. Added users' certificates
            // are stored when the peer joins; removed users' old values
            // expire by their lifetimes (a registration's, at most 2 h).
            if !removed.is_empty() {
                wait.failures
                    .push("the peer is not in the overlay: the removals were not stored".into());
            }
            self.outputs.push_back(Output::AccountsStored {
                token,
                failures: wait.failures,
            });
            return;
        }
        for user in &added {
            if let Some(certificates) = &mut self.certificates {
                wait.waiting
                    .extend(certificates.store_user(&mut self.engine, now, user, true));
            }
        }
        for user in &removed {
            wait.waiting
                .extend(self.sip.registrations.remove(&mut self.engine, now, user));
            if let Some(certificates) = &mut self.certificates {
                wait.waiting
                    .extend(certificates.store_user(&mut self.engine, now, user, false));
            }
        }
        if wait.waiting.is_empty() {
            self.outputs.push_back(Output::AccountsStored {
                token,
                failures: Vec::new(),
            });
        } else {
            self.accounts.push(wait);
        }
    }

    /// Counts an answered request against the account changes waiting
    /// for it.
    fn account_progress(&mut self, request: RequestId, outcome: &Result<Body, RequestFailure>) {
        let mut i = 0;
        while i < self.accounts.len() {
            let wait = &mut self.accounts[i];
            if wait.waiting.remove(&request) {
                if let Err(e) = outcome {
                    wait.failures.push(e.to_string());
                }
            }
            if wait.waiting.is_empty() {
                let wait = self.accounts.swap_remove(i);
                self.outputs.push_back(Output::AccountsStored {
                    token: wait.token,
                    failures: wait.failures,
                });
            } else {
                i += 1;
            }
        }
    }
}

/// The Kinds of the usages every core runs.
const USAGE_KINDS: [&[crate::usage::UsageKind]; 3] = [
    crate::sip_usage::KINDS,
    crate::certificates::KINDS,
    crate::relays::KINDS,
];

/// Whether a core can run under `config`: refused when it gives a usage's
/// Kind another access policy than the usage's RFC (what
/// [`PeerCore::new`] checks).
pub fn check_configuration(config: &OverlayConfig) -> Result<(), KindPolicyMismatch> {
    USAGE_KINDS.into_iter().try_for_each(|kinds| check_kinds(config, kinds))
}

/// The port this node takes links on, named in its discovery answers.
fn listen_port<T: Topology, S: Security>(engine: &OverlayNode<T, S>) -> u16 {
    match engine.address() {
        IpAddressPort::Ip(a) => a.port(),
        _ => 0,
    }
}
