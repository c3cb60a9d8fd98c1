//! The peer core through its one input and one output: peers that start
//! from a bootstrap plan, register a phone's user, find it from another
//! peer and withdraw it on leaving, on a deterministic in-memory network
//! (every message delivered in order, 1 ms per hop).

use overlay::testing::{addr, config, IDS, T0};
use overlay::*;
use peer_core::bootstrap::BootstrapPlan;
use peer_core::sip_usage::{self, Located, PublishError, SIPS_APPLICATION};
use peer_core::usage::KindPolicyMismatch;
use peer_core::{Input, Output, PeerCore};
use reload_wire::{IpAddressPort, NodeId};
use std::collections::VecDeque;
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
    /// A message to core `.0` from `.1`, or (no bytes) the link closing.
    queue: VecDeque<(usize, NodeId, Option<Vec<u8>>)>,
    published: Vec<(usize, u64, Result<(), PublishError>)>,
    located: Vec<(usize, u64, Located)>,
    multicasts: usize,
    left: Vec<usize>,
}

impl Mesh {
    /// Peers with `ids`; peer 0 may start the overlay alone, the others
    /// know peer 0's address. Nobody is started yet.
    fn new(ids: &[u128]) -> Mesh {
        let mut cores = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let cfg = config();
            let ctx = Arc::new(cfg.decode_context().unwrap());
            let id = NodeId::from_u128(*id);
            let security = SimulatedSecurity::new(id, format!("user{i}@{DOMAIN}")).with_user(phone(i));
            let topology = ChordReload::new(id, cfg.chord.clone(), 16, i as u64);
            let mut engine = OverlayNode::new(cfg, ctx, addr(i), topology, security, i as u64, T0);
            engine.offer_application(SIPS_APPLICATION, IpAddressPort::Ip(sip_address(i)));
            let known = if i == 0 { vec![] } else { vec![socket(0)] };
            let plan = BootstrapPlan::new(socket(i), false, &known, &[], &[], false);
            cores.push(PeerCore::new(engine, plan, false, None).unwrap());
        }
        Mesh {
            now: T0,
            cores,
            queue: VecDeque::new(),
            published: Vec::new(),
            located: Vec::new(),
            multicasts: 0,
            left: Vec::new(),
        }
    }

    /// Starts every peer, one after the other, and lets the ring settle.
    fn started(ids: &[u128]) -> Mesh {
        let mut mesh = Mesh::new(ids);
        for i in 0..mesh.cores.len() {
            mesh.cores[i].start(mesh.now);
            mesh.pump();
            mesh.advance(2_000);
        }
        mesh.advance(5_000);
        mesh
    }

    fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.cores.iter().position(|c| c.engine().node_id() == *id)
    }

    fn input(&mut self, i: usize, input: Input<'_>) {
        let now = self.now;
        self.cores[i].handle_input(now, input);
        self.pump();
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
            if let Some((to, from, bytes)) = self.queue.pop_front() {
                self.now += 1;
                let now = self.now;
                let input = match &bytes {
                    Some(bytes) => Input::Received { from, bytes },
                    None => Input::LinkDown { peer: from },
                };
                self.cores[to].handle_input(now, input);
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
            Output::Send { to, bytes, .. } => {
                if let Some(j) = self.index_of(&to) {
                    self.queue.push_back((j, me, Some(bytes)));
                }
            }
            Output::Connect { peer, address } => {
                let j = (0..self.cores.len()).find(|j| addr(*j) == address).unwrap();
                let them = self.cores[j].engine().node_id();
                let now = self.now;
                self.cores[j].handle_input(now, Input::LinkUp { peer: me });
                let up = match peer {
                    Some(_) => Input::LinkUp { peer: them },
                    None => Input::BootstrapLinkUp { peer: them },
                };
                self.cores[i].handle_input(now, up);
            }
            Output::Close { peer } => {
                if let Some(j) = self.index_of(&peer) {
                    self.queue.push_back((j, me, None));
                }
            }
            Output::Multicast { .. } => self.multicasts += 1,
            Output::Published { token, result } => self.published.push((i, token, result)),
            Output::Located { token, located } => self.located.push((i, token, located)),
            Output::Event(Event::Left) => self.left.push(i),
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

/// Where peer `i`'s SIP takes other peers' connections.
fn sip_address(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 9], 5070 + i as u16))
}

/// §11.4 through the core: a peer with no bootstrap address starts the
/// overlay, every other joins through it from its plan alone.
#[test]
fn peers_started_from_their_plans_form_one_ring() {
    let mesh = Mesh::started(&IDS);
    for core in &mesh.cores {
        assert!(core.engine().is_joined(), "{} joined", core.engine().node_id().to_hex());
    }
    let mut ring: Vec<NodeId> = mesh.cores.iter().map(|c| c.engine().node_id()).collect();
    ring.sort();
    for (k, core) in mesh.cores.iter().enumerate() {
        let me = core.engine().node_id();
        let at = ring.iter().position(|n| *n == me).unwrap();
        let next = ring[(at + 1) % ring.len()];
        assert_eq!(
            core.engine().topology().successors().first(),
            Some(&next),
            "peer {k}'s successor"
        );
    }
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
