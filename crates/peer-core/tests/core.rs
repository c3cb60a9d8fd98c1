//! The peer core through its one input and one output: peers that start
//! from a bootstrap plan, register a phone's user, find it from another
//! peer and withdraw it on leaving, on a deterministic in-memory network
//! (every message delivered in order, 1 ms per hop).

use overlay::testing::{addr, config, IDS, T0};
use overlay::*;
use peer_core::bootstrap::BootstrapPlan;
use peer_core::links::{LinkEnd, LinkEvent, LinkId, LinkReport};
use peer_core::sip_usage::{self, Located, PublishError, SIPS_APPLICATION};
use peer_core::stun::server::{BindingServer, Served};
use peer_core::stun::servers::MappingBehaviour;
use peer_core::usage::KindPolicyMismatch;
use peer_core::{Input, Output, PeerCore};
use reload_wire::{IpAddressPort, NodeId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

type Core = PeerCore<ChordReload, SimulatedSecurity>;

const DOMAIN: &str = "engine.test.invalid";

fn socket(i: usize) -> SocketAddr {
    match addr(i) {
        IpAddressPort::Ip(a) => a,
        _ => unreachable!(),
    }
}

/// The phone user enrolled into peer `i`.
fn phone(i: usize) -> String {
    sip_usage::resource_name(&format!("phone{i}"), DOMAIN)
}

/// Peers whose cores are driven only through `handle_input`,
/// `poll_output` and `handle_timeout`.
struct Mesh {
    now: u64,
    cores: Vec<Core>,
    /// A message to core `.0` on its link `.1` from `.2`, or (no bytes)
    /// that link closing.
    queue: VecDeque<(usize, LinkId, NodeId, Option<Vec<u8>>)>,
    /// Each core's links: its link number to the other core and that
    /// core's number for the same link.
    ends: Vec<HashMap<LinkId, (usize, LinkId)>>,
    next_link: LinkId,
    published: Vec<(usize, u64, Result<(), PublishError>)>,
    located: Vec<(usize, u64, Located)>,
    multicasts: usize,
    left: Vec<usize>,
    reports: Vec<(usize, LinkReport)>,
    /// Each core's STUN server on its UDP port.
    stun_servers: Vec<BindingServer>,
    /// Where a NAT makes a core's datagrams come from, if one does. A
    /// NATed core's own address is unreachable from the others, and its
    /// public one lets in only datagrams from addresses it sent to
    /// (endpoint-independent mapping, address-dependent filtering).
    seen_as: HashMap<usize, SocketAddr>,
    nat_permissions: HashSet<(usize, SocketAddr)>,
    /// Datagrams in flight: to core `.0`, from address `.1`.
    datagrams: VecDeque<(usize, SocketAddr, Vec<u8>)>,
    /// Links ICE formed, and dials for a Node-ID an Attach named.
    ice_links: usize,
    attach_dials: usize,
}

impl Mesh {
    /// Peers with `ids`; peer 0 may start the overlay alone, the others
    /// know peer 0's address. Nobody is started yet.
    fn new(ids: &[u128]) -> Mesh {
        let cores: Vec<Core> = ids.iter().enumerate().map(|(i, id)| core(i, *id, i as u64)).collect();
        Mesh {
            now: T0,
            ends: vec![HashMap::new(); cores.len()],
            cores,
            next_link: 1,
            queue: VecDeque::new(),
            published: Vec::new(),
            located: Vec::new(),
            multicasts: 0,
            left: Vec::new(),
            reports: Vec::new(),
            stun_servers: ids.iter().map(|_| BindingServer::default()).collect(),
            seen_as: HashMap::new(),
            nat_permissions: HashSet::new(),
            datagrams: VecDeque::new(),
            ice_links: 0,
            attach_dials: 0,
        }
    }

    /// Starts every peer, one after the other, and lets the ring settle.
    fn started(ids: &[u128]) -> Mesh {
        let mut mesh = Mesh::new(ids);
        mesh.start_all();
        mesh
    }

    fn start_all(&mut self) {
        for i in 0..self.cores.len() {
            self.cores[i].start(self.now);
            self.pump();
            self.advance(2_000);
        }
        self.advance(5_000);
    }

    fn input(&mut self, i: usize, input: Input<'_>) {
        let now = self.now;
        self.cores[i].handle_input(now, input);
        self.pump();
    }

    /// Core `i` dials core `j`, expecting `expected` there: the link's
    /// number at `i` and at `j`.
    fn connect(&mut self, i: usize, j: usize, expected: Option<NodeId>) -> (LinkId, LinkId) {
        let (me, them) = (self.cores[i].engine().node_id(), self.cores[j].engine().node_id());
        let (ours, theirs) = (self.next_link, self.next_link + 1);
        self.next_link += 2;
        self.ends[i].insert(ours, (j, theirs));
        self.ends[j].insert(theirs, (i, ours));
        let now = self.now;
        let accepted = LinkEvent::Up {
            link: theirs,
            peer: me,
            end: LinkEnd::Accepted { remote: socket(i) },
        };
        self.cores[j].handle_input(now, Input::Link(accepted));
        let dialled = LinkEvent::Up {
            link: ours,
            peer: them,
            end: LinkEnd::Dialled {
                address: socket(j),
                expected,
            },
        };
        self.cores[i].handle_input(now, Input::Link(dialled));
        (ours, theirs)
    }

    /// A copy of peer 1 (same Node-ID, another process) dials peer 0: the
    /// new link's number at peer 0.
    fn copy_of_peer1_dials_peer0(&mut self) -> LinkId {
        self.cores.push(core(1, IDS[1], 99));
        self.ends.push(HashMap::new());
        let copy = self.cores.len() - 1;
        let peer0 = self.cores[0].engine().node_id();
        self.connect(copy, 0, Some(peer0)).1
    }

    /// Carries out every output until the network is quiet.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.cores.len() {
                while let Some(output) = self.cores[i].poll_output(self.now) {
                    progressed = true;
                    self.carry_out(i, output);
                }
            }
            if let Some((to, from, bytes)) = self.datagrams.pop_front() {
                self.now += 1;
                self.datagram_arrives(to, from, bytes);
                continue;
            }
            if let Some((to, link, peer, bytes)) = self.queue.pop_front() {
                self.now += 1;
                let now = self.now;
                let event = match &bytes {
                    Some(bytes) => LinkEvent::Message { link, peer, bytes },
                    None => LinkEvent::Closed {
                        link,
                        peer,
                        why: "closed by the other end",
                    },
                };
                self.cores[to].handle_input(now, Input::Link(event));
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    fn carry_out(&mut self, i: usize, output: Output) {
        let me = self.cores[i].engine().node_id();
        match output {
            Output::Send { link, bytes, .. } => {
                if let Some(&(j, theirs)) = self.ends[i].get(&link).filter(|(j, _)| *j != usize::MAX) {
                    self.queue.push_back((j, theirs, me, Some(bytes)));
                }
            }
            Output::Connect { peer, address } => {
                let j = (0..self.cores.len()).find(|j| addr(*j) == address).unwrap();
                self.attach_dials += usize::from(peer.is_some());
                self.connect(i, j, peer);
            }
            Output::LinkOverIce(nominated) => {
                // The DTLS server's end dials; the client's is its other
                // end (one DTLS association, one link).
                if nominated.dtls_server {
                    let j = self.index_of(nominated.peer);
                    self.ice_links += 1;
                    self.connect(i, j, Some(nominated.peer));
                }
            }
            Output::CloseLink { link } => {
                if let Some((j, theirs)) = self.ends[i].remove(&link).filter(|(j, _)| *j != usize::MAX) {
                    self.ends[j].remove(&theirs);
                    self.queue.push_back((j, theirs, me, None));
                }
            }
            Output::Multicast { .. } => self.multicasts += 1,
            Output::Published { token, result } => self.published.push((i, token, result)),
            Output::Located { token, located } => self.located.push((i, token, located)),
            Output::Event(Event::Left) => self.left.push(i),
            Output::Link(report) => self.reports.push((i, report)),
            Output::Datagram { to, bytes } => self.send_datagram(i, to, bytes),
            Output::DiscoveryAnswer { .. } | Output::AccountsStored { .. } | Output::Event(_) => {}
        }
    }

    /// Moves time forward, firing the cores' timers as they fall due.
    fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while let Some(t) = self.cores.iter().filter_map(|c| c.poll_timeout()).min() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            let now = self.now;
            for core in &mut self.cores {
                if core.poll_timeout().is_some_and(|t| t <= now) {
                    core.handle_timeout(now);
                }
            }
            self.pump();
        }
        self.now = end;
    }

    fn index_of(&self, peer: NodeId) -> usize {
        (0..self.cores.len())
            .find(|j| self.cores[*j].engine().node_id() == peer)
            .unwrap()
    }

    /// Core `i` sends `bytes` to `to` from its UDP socket, through its
    /// NAT if it has one.
    fn send_datagram(&mut self, i: usize, to: SocketAddr, bytes: Vec<u8>) {
        let from = self.seen_as.get(&i).copied().unwrap_or(socket(i));
        if self.seen_as.contains_key(&i) {
            self.nat_permissions.insert((i, to));
        }
        let target = (0..self.cores.len()).find(|j| {
            match self.seen_as.get(j) {
                // Behind a NAT: reachable at the public address only, by
                // those it sent to.
                Some(public) => *public == to && self.nat_permissions.contains(&(*j, from)),
                None => socket(*j) == to,
            }
        });
        if let Some(j) = target {
            self.datagrams.push_back((j, from, bytes));
        }
    }

    /// A datagram reaches core `j`'s UDP socket: its STUN server answers
    /// Binding requests and passes the rest on.
    fn datagram_arrives(&mut self, j: usize, from: SocketAddr, bytes: Vec<u8>) {
        let now = self.now;
        match self.stun_servers[j].serve(now, &bytes, from) {
            Served::Answer(answer) => {
                // Back to the sender (through its NAT, which let the
                // answer in: it sent the request here).
                let sender = (0..self.cores.len())
                    .find(|k| self.seen_as.get(k).copied().unwrap_or(socket(*k)) == from)
                    .unwrap();
                let me = self.seen_as.get(&j).copied().unwrap_or(socket(j));
                self.datagrams.push_back((sender, me, answer));
            }
            Served::ForPeer => {
                let input = Input::Stun { datagram: &bytes, from };
                self.cores[j].handle_input(now, input);
            }
            Served::Keepalive | Served::Dropped(_) => {}
        }
    }

    fn locate(&mut self, at: usize, user: &str, token: u64) -> Located {
        let user = user.to_string();
        self.input(at, Input::Locate { user, token });
        self.advance(3_000);
        let k = self
            .located
            .iter()
            .position(|(i, t, _)| *i == at && *t == token)
            .expect("the lookup finished");
        self.located.remove(k).2
    }
}

/// Peer `i` with Node-ID `id`; `seed` draws its instance id, so two cores
/// with one Node-ID and two seeds are two processes sharing an identity.
fn core(i: usize, id: u128, seed: u64) -> Core {
    let cfg = config();
    let ctx = Arc::new(cfg.decode_context().unwrap());
    let id = NodeId::from_u128(id);
    let security = SimulatedSecurity::new(id, format!("user{i}@{DOMAIN}")).with_user(phone(i));
    let topology = ChordReload::new(id, cfg.chord.clone(), 16, seed);
    let mut engine = OverlayNode::new(cfg, ctx, addr(i), topology, security, seed, T0);
    engine.offer_application(SIPS_APPLICATION, IpAddressPort::Ip(sip_address(i)));
    let known = if i == 0 { vec![] } else { vec![socket(0)] };
    let plan = BootstrapPlan::new(socket(i), false, &known, &[], &[], false);
    PeerCore::new(engine, plan, false, None).unwrap()
}

/// Where peer `i`'s SIP takes other peers' connections.
fn sip_address(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 9], 5070 + i as u16))
}

/// §11.4 through the core: a peer with no bootstrap address starts the
/// overlay, every other joins through it from its plan alone.
#[test]
fn peers_started_from_their_plans_form_one_ring() {
    let mesh = Mesh::started(&IDS);
    ring_is_consistent(&mesh);
    assert_eq!(mesh.multicasts, 0, "no multicast without a group");
}

/// RFC 7904 §3 and §4.2 through the core's input and output: a peer
/// publishes its phone's registration, another peer's lookup finds it
/// there, and once the peer leaves gracefully its withdrawal makes the
/// next lookup say the user has no phone instead of naming a peer that
/// is gone.
#[test]
fn a_published_registration_is_found_elsewhere_and_withdrawn_on_leaving() {
    let mut mesh = Mesh::started(&IDS);
    let user = phone(2);
    mesh.input(
        2,
        Input::Publish {
            user: &user,
            lifetime_s: 600,
            token: 7,
        },
    );
    assert_eq!(mesh.published, vec![(2, 7, Ok(()))]);

    let peer2 = mesh.cores[2].engine().node_id();
    match mesh.locate(5, &user, 8) {
        Located::Found { peers, here } => {
            assert!(!here);
            assert_eq!(peers.len(), 1);
            assert_eq!((peers[0].node, peers[0].address), (peer2, sip_address(2)));
        }
        other => panic!("not found: {other:?}"),
    }
    assert!(
        matches!(mesh.locate(2, &user, 9), Located::Found { here: true, .. }),
        "the serving peer finds the phone here"
    );

    mesh.input(2, Input::Leave);
    mesh.advance(5_000);
    assert_eq!(mesh.left, vec![2], "the leave finished after the withdrawal");
    // No certificate of the user is in this overlay, so "no registration"
    // reads as nobody by that name (404), not as a peer that is gone.
    assert_eq!(
        mesh.locate(5, &user, 10),
        Located::NotFound,
        "a withdrawn registration names no peer"
    );
}

/// A user the node holds no certificate for cannot be published: the
/// refusal comes back with its token, nothing is stored.
#[test]
fn publishing_a_user_not_enrolled_here_is_refused_at_once() {
    let mut mesh = Mesh::started(&IDS[..3]);
    let stranger = phone(9);
    mesh.input(
        1,
        Input::Publish {
            user: &stranger,
            lifetime_s: 600,
            token: 3,
        },
    );
    assert_eq!(
        mesh.published,
        vec![(1, 3, Err(PublishError::NotEnrolled(stranger.clone())))]
    );
}

/// A peer that never joined leaves at once: nothing to withdraw.
#[test]
fn a_peer_that_never_joined_leaves_at_once() {
    let mut mesh = Mesh::new(&IDS[..2]);
    mesh.input(1, Input::Leave);
    assert_eq!(mesh.left, vec![1]);
}

/// A peer that may not start the overlay alone (it knows a bootstrap
/// address) keeps trying it: after three failed dials per address, it
/// waits 5 s and tries again rather than start a second ring.
#[test]
fn a_peer_whose_bootstrap_peer_is_down_retries_and_never_starts_alone() {
    let mut mesh = Mesh::new(&IDS[..2]);
    let now = mesh.now;
    mesh.cores[1].start(now);
    let mut dials = 0;
    for _ in 0..20 {
        while let Some(output) = mesh.cores[1].poll_output(mesh.now) {
            if let Output::Connect { peer: None, .. } = output {
                dials += 1;
                let now = mesh.now;
                mesh.cores[1].handle_input(now, Input::LinkFailed { expected: None });
            }
        }
        let next = mesh.cores[1].poll_timeout().unwrap();
        mesh.now = next;
        let now = mesh.now;
        mesh.cores[1].handle_timeout(now);
        if mesh.now - T0 > 30_000 {
            break;
        }
    }
    assert!(!mesh.cores[1].engine().is_joined(), "no ring of its own");
    assert!(
        dials >= 6,
        "the bootstrap address is dialled again after the pause ({dials} dials)"
    );
}

/// The configuration must give a usage's Kind the access policy its RFC
/// does: SIP-REGISTRATION under USER-MATCH would let any of a user's
/// peers overwrite another's entry.
#[test]
fn a_configuration_that_changes_a_usages_access_policy_is_refused() {
    let cfg = Arc::new(OverlayConfig::new(DOMAIN).with_kind(KindDefinition {
        id: reload_wire::usages::kind_id::SIP_REGISTRATION,
        name: "SIP-REGISTRATION".into(),
        data_model: reload_wire::DataModel::Dictionary,
        access: AccessPolicy::UserMatch,
        max_count: 32,
        max_size: 1024,
    }));
    let ctx = Arc::new(cfg.decode_context().unwrap());
    let id = NodeId::from_u128(IDS[0]);
    let topology = ChordReload::new(id, cfg.chord.clone(), 16, 0);
    let engine = OverlayNode::new(cfg, ctx, addr(0), topology, SimulatedSecurity::new(id, "u"), 0, T0);
    let refused = PeerCore::new(engine, BootstrapPlan::default(), false, None).err();
    assert_eq!(
        refused,
        Some(KindPolicyMismatch {
            name: "SIP-REGISTRATION",
            id: reload_wire::usages::kind_id::SIP_REGISTRATION,
            configured: AccessPolicy::UserMatch,
            needed: AccessPolicy::UserNodeMatch,
        })
    );
}

/// The link table (decision 0024): a second process with the same
/// Node-ID dialling a peer is refused (two Pings over the link that is up
/// and one over the new one answer with two instance ids), and the link
/// that was up stays and keeps serving.
#[test]
fn a_second_process_with_a_linked_node_id_is_refused_and_the_link_up_stays() {
    let mut mesh = Mesh::started(&IDS[..3]);
    let peer1 = mesh.cores[1].engine().node_id();
    let up = mesh.cores[0].links().get(&peer1).expect("linked").id;
    let copied = mesh.copy_of_peer1_dials_peer0();
    mesh.pump();
    mesh.advance(5_000);
    assert_eq!(
        mesh.cores[0].links().get(&peer1).map(|l| l.id),
        Some(up),
        "the link that was up stays"
    );
    assert!(!mesh.ends[0].contains_key(&copied), "the copy's link was closed");
    let refused: Vec<_> = mesh
        .reports
        .iter()
        .filter(|(i, r)| *i == 0 && matches!(r, LinkReport::Duplicate { peer, .. } if *peer == peer1))
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", mesh.reports);
    // Peer 1 still stores through the link that stayed.
    let user = phone(1);
    mesh.input(
        1,
        Input::Publish {
            user: &user,
            lifetime_s: 600,
            token: 5,
        },
    );
    assert_eq!(mesh.published.last(), Some(&(1, 5, Ok(()))));
}

/// A peer that restarted (a new process, its old link not yet noticed
/// dead) dials again: the old link no longer answers its Pings, so the new
/// one replaces it.
#[test]
fn a_restarted_peer_replaces_its_dead_link() {
    let mut mesh = Mesh::started(&IDS[..3]);
    let peer1 = mesh.cores[1].engine().node_id();
    let old = mesh.cores[0].links().get(&peer1).expect("linked").id;
    // Peer 1 freezes: nothing sent on its old link arrives any more (the
    // harness's "nowhere" end).
    let (_, theirs_old) = mesh.ends[0][&old];
    mesh.ends[1].remove(&theirs_old);
    mesh.ends[0].insert(old, (usize::MAX, 0));
    // The same identity comes back as a new process and dials peer 0.
    mesh.cores[1] = core(1, IDS[1], 77);
    mesh.ends[1].clear();
    let (_, new) = mesh.connect(1, 0, Some(mesh.cores[0].engine().node_id()));
    mesh.pump();
    mesh.advance(5_000);
    assert_eq!(
        mesh.cores[0].links().get(&peer1).map(|l| l.id),
        Some(new),
        "the new link replaced {old}"
    );
}

/// Two links dialled at once by both ends: each end keeps the one the
/// smaller Node-ID dialled, so both keep the same one.
#[test]
fn links_dialled_at_once_by_both_ends_settle_on_the_same_one() {
    let mut mesh = Mesh::new(&IDS[..2]);
    let now = mesh.now;
    mesh.cores[0].start(now);
    mesh.pump();
    let (a, b) = (mesh.cores[0].engine().node_id(), mesh.cores[1].engine().node_id());
    assert!(a < b);
    let (zero_dialled, at_one) = mesh.connect(0, 1, Some(b));
    mesh.connect(1, 0, Some(a));
    mesh.pump();
    let kept_at_zero = mesh.cores[0].links().get(&b).map(|l| l.id);
    let kept_at_one = mesh.cores[1].links().get(&a).map(|l| l.id);
    // Peer 0 has the smaller Node-ID: the link it dialled is kept by both.
    assert_eq!((kept_at_zero, kept_at_one), (Some(zero_dialled), Some(at_one)));
}

/// §11.1: links to nodes a new configuration lists as bad close, after
/// the outputs queued before (the new document among them) went out.
#[test]
fn links_to_bad_nodes_close_after_what_was_queued_before() {
    let mut mesh = Mesh::started(&IDS[..3]);
    let bad = mesh.cores[2].engine().node_id();
    let link = mesh.cores[0].links().get(&bad).expect("linked").id;
    let now = mesh.now;
    mesh.cores[0].engine_mut().keepalive(now, bad);
    mesh.cores[0].handle_input(now, Input::BadNodes(vec![bad]));
    let outputs: Vec<Output> = std::iter::from_fn(|| mesh.cores[0].poll_output(now)).collect();
    let sent = outputs
        .iter()
        .position(|o| matches!(o, Output::Send { link: l, .. } if *l == link))
        .expect("the keepalive went out");
    let closed = outputs
        .iter()
        .position(|o| matches!(o, Output::CloseLink { link: l } if *l == link))
        .expect("the link closed");
    assert!(sent < closed, "{outputs:?}");
    assert!(mesh.cores[0].links().get(&bad).is_none());
}

/// A node listed as bad while a second link of its is being checked: that
/// link closes too, not only the one in the table.
#[test]
fn a_bad_nodes_link_under_check_closes_as_well() {
    let mut mesh = Mesh::started(&IDS[..3]);
    let peer1 = mesh.cores[1].engine().node_id();
    let up = mesh.cores[0].links().get(&peer1).expect("linked").id;
    // Peer 0 starts checking the copy's link.
    let checked = mesh.copy_of_peer1_dials_peer0();
    assert!(mesh.ends[0].contains_key(&checked));
    let now = mesh.now;
    mesh.cores[0].handle_input(now, Input::BadNodes(vec![peer1]));
    let closed: Vec<LinkId> = std::iter::from_fn(|| mesh.cores[0].poll_output(now))
        .filter_map(|o| match o {
            Output::CloseLink { link } => Some(link),
            _ => None,
        })
        .collect();
    assert!(closed.contains(&up) && closed.contains(&checked), "{closed:?}");
}

/// Different bytes each time, the same in every run, another sequence
/// for each `seed`.
fn counting_entropy(seed: u8) -> overlay::Entropy {
    let mut n = seed;
    overlay::Entropy(Box::new(move |bytes: &mut [u8]| {
        for b in bytes {
            n = n.wrapping_mul(31).wrapping_add(17);
            *b = n;
        }
    }))
}

fn stun(mesh: &Mesh, i: usize) -> &peer_core::stun::servers::StunServers {
    mesh.cores[i].stun_servers().unwrap()
}

/// RFC 6940 §6.5.1.4 through the core: each peer asks the peers it is
/// linked to what they see of its UDP port. A NAT in front of peer 3
/// shows all of them one public address, so peer 3 reports an
/// endpoint-independent mapping and the others no NAT; once peer 2 has
/// left, nobody still counts it among their STUN servers.
#[test]
fn linked_peers_serve_as_stun_servers_and_one_that_left_is_dropped() {
    let mut mesh = Mesh::new(&IDS[..5]);
    let public: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    mesh.seen_as.insert(3, public);
    let now = mesh.now;
    for (i, core) in mesh.cores.iter_mut().enumerate() {
        core.use_stun_servers(now, counting_entropy(i as u8));
    }
    mesh.start_all();
    let behind_nat = mesh.cores[3].engine().node_id();
    for i in 0..5 {
        // Linked peers whose listen address it knows (not a joiner that
        // dialled it as its bootstrap peer, which sent no Attach), but
        // for the one behind the NAT, which nobody reaches at its own
        // address.
        let known = mesh.cores[i]
            .links()
            .listen_addresses()
            .filter(|(peer, _)| *peer != behind_nat)
            .count();
        assert!(known >= 2, "peer {i} knows {known} linked peers' addresses");
        assert_eq!(stun(&mesh, i).mappings().count(), known, "peer {i} asked every one");
    }
    assert_eq!(
        stun(&mesh, 3).mapping_behaviour(socket(3)),
        MappingBehaviour::EndpointIndependent
    );
    assert!(stun(&mesh, 3).mappings().all(|m| m.reflexive == public));
    for i in [0, 1, 2, 4] {
        assert_eq!(
            stun(&mesh, i).mapping_behaviour(socket(i)),
            MappingBehaviour::NoNat,
            "peer {i}"
        );
    }
    let peer2 = mesh.cores[2].engine().node_id();
    mesh.input(2, Input::Leave);
    mesh.advance(10_000);
    assert_eq!(mesh.left, vec![2]);
    for i in [0, 1, 3, 4] {
        assert!(
            stun(&mesh, i).mappings().all(|m| m.peer != peer2),
            "peer {i} still asks the peer that left"
        );
    }
}

/// A mesh whose peers run ICE (and ask their linked peers' STUN
/// servers), peers in `natted` behind NATs of their own.
fn ice_mesh(count: usize, natted: &[usize]) -> Mesh {
    let mut mesh = Mesh::new(&IDS[..count]);
    for n in natted {
        mesh.seen_as
            .insert(*n, SocketAddr::from(([203, 0, 113, 100 + *n as u8], 40_000)));
    }
    let now = mesh.now;
    for i in 0..count {
        mesh.cores[i].use_stun_servers(now, counting_entropy(i as u8));
        mesh.cores[i].use_ice(socket(i), counting_entropy(100 + i as u8));
    }
    mesh
}

fn ring_is_consistent(mesh: &Mesh) {
    let mut ring: Vec<NodeId> = mesh.cores.iter().map(|c| c.engine().node_id()).collect();
    ring.sort();
    for (k, core) in mesh.cores.iter().enumerate() {
        assert!(core.engine().is_joined(), "peer {k} joined");
        let me = core.engine().node_id();
        let at = ring.iter().position(|n| *n == me).unwrap();
        let next = ring[(at + 1) % ring.len()];
        assert_eq!(
            core.engine().topology().successors().first(),
            Some(&next),
            "peer {k}'s successor"
        );
    }
}

/// RFC 6940 §6.5.1.3–§6.5.1.9 through the core: in an overlay that uses
/// ICE, every link an Attach sets up forms by connectivity checks between
/// the candidates the Attach and its answer carried (the requester
/// controlling), never by dialling the address an Attach named; only
/// the joining peers' bootstrap links are dialled.
#[test]
fn in_an_ice_overlay_attaches_form_links_by_connectivity_checks() {
    let mut mesh = ice_mesh(5, &[]);
    mesh.start_all();
    ring_is_consistent(&mesh);
    assert_eq!(mesh.attach_dials, 0, "no link dialled for an Attach");
    assert!(mesh.ice_links >= 4, "{} links formed by ICE", mesh.ice_links);
    // Every agent is the agent of a link that is up (checks done, kept
    // for keepalives, §6.5.1.10.3).
    for (i, core) in mesh.cores.iter().enumerate() {
        let agents = core.ice().unwrap().len();
        assert!(agents <= core.links().len() * 2, "peer {i}: {agents} agents");
    }
}

/// Two peers behind NATs (endpoint-independent mapping, filtering by
/// address): neither is reachable at its own address, yet they link to
/// each other and to everyone through their server-reflexive candidates,
/// which their linked peers' STUN servers told them (§6.5.1.4), and the
/// ring closes.
#[test]
fn peers_behind_nats_link_through_their_server_reflexive_candidates() {
    let mut mesh = ice_mesh(5, &[3, 4]);
    mesh.start_all();
    mesh.advance(60_000);
    ring_is_consistent(&mesh);
    assert_eq!(mesh.attach_dials, 0);
    let (three, four) = (mesh.cores[3].engine().node_id(), mesh.cores[4].engine().node_id());
    let linked = mesh.cores[3].links().route(&four).is_some() || mesh.cores[4].links().route(&three).is_some();
    let needed = mesh.cores[3].engine().topology().successors().contains(&four)
        || mesh.cores[3].engine().topology().predecessors().contains(&four);
    assert!(!needed || linked, "the two NATed peers are neighbours and linked");
    for k in [3, 4] {
        let offered = mesh.cores[k].engine().uses_ice();
        assert!(offered);
        let stun = mesh.cores[k].stun_servers().unwrap();
        assert!(stun
            .mappings()
            .all(|m| Some(m.reflexive) == mesh.seen_as.get(&k).copied()));
    }
}

/// RFC 6940 §9 through the core: a relay peer advertises its TURN server
/// in turn-density places; another peer's search at random places finds
/// it by Find and Fetch; once the relay leaves gracefully, its values are
/// written as gone and a new search finds no relay.
#[test]
fn a_relay_peers_turn_server_is_found_by_search_and_gone_once_it_leaves() {
    let mut mesh = Mesh::started(&IDS);
    let turn = SocketAddr::from(([192, 0, 2, 1], 3478));
    let now = mesh.now;
    mesh.cores[1].offer_relay(now, turn, 20);
    mesh.pump();
    mesh.cores[4].search_relays(now, [7; 16]);
    mesh.pump();
    mesh.advance(2_000);
    let (found, searching) = mesh.cores[4].relays_found();
    assert_eq!(found.iter().collect::<Vec<_>>(), vec![&IpAddressPort::Ip(turn)]);
    assert!(!searching, "the search ended");

    mesh.input(1, Input::Leave);
    mesh.advance(5_000);
    assert_eq!(mesh.left, vec![1]);
    let now = mesh.now;
    mesh.cores[3].search_relays(now, [9; 16]);
    mesh.pump();
    mesh.advance(5_000);
    let (found, searching) = mesh.cores[3].relays_found();
    assert!(found.is_empty() && !searching, "{found:?}");
}
