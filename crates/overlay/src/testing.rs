//! A deterministic in-memory network of engines for tests: of this crate's
//! engine, and of the crates built on it (the peer core's usages). Every
//! message is delivered in order, 1 ms per hop; timers fire as a test
//! moves time forward; a node can crash (fall silent) or be detected as
//! failed. Nothing here is used outside tests, and nothing in it is
//! random: the same calls give the same run.

use crate::*;
use reload_wire::*;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

pub const KIND: KindId = 0x4000_0001;
pub const T0: u64 = 1_800_000_000_000;

pub type Node = OverlayNode<ChordReload, SimulatedSecurity>;
pub type Client = OverlayNode<ClientTopology, SimulatedSecurity>;

/// What the harness needs of a node, peer or client.
pub trait Endpoint {
    fn id(&self) -> NodeId;
    fn next_action(&mut self) -> Option<Action>;
    fn deliver(&mut self, now: u64, from: NodeId, bytes: &[u8]);
    fn up(&mut self, now: u64, peer: NodeId);
    fn bootstrap_up(&mut self, now: u64, peer: NodeId);
    fn down(&mut self, now: u64, peer: NodeId);
    fn timeout(&self) -> Option<u64>;
    fn tick(&mut self, now: u64);
}

impl<T: Topology> Endpoint for OverlayNode<T, SimulatedSecurity> {
    fn id(&self) -> NodeId {
        self.node_id()
    }
    fn next_action(&mut self) -> Option<Action> {
        self.poll_action()
    }
    fn deliver(&mut self, now: u64, from: NodeId, bytes: &[u8]) {
        self.receive(now, from, bytes)
    }
    fn up(&mut self, now: u64, peer: NodeId) {
        self.link_up(now, peer)
    }
    fn bootstrap_up(&mut self, now: u64, peer: NodeId) {
        self.bootstrap_link_up(now, peer)
    }
    fn down(&mut self, now: u64, peer: NodeId) {
        self.link_down(now, peer)
    }
    fn timeout(&self) -> Option<u64> {
        self.poll_timeout()
    }
    fn tick(&mut self, now: u64) {
        self.handle_timeout(now)
    }
}

pub struct Net {
    pub now: u64,
    pub nodes: Vec<Node>,
    /// Clients (§4.2.1); in the harness they are numbered after the peers.
    pub clients: Vec<Client>,
    pub users: Vec<String>,
    /// In order: a message to node `.0` from `.1`, or (no bytes) the link
    /// to `.1` closing, after what was sent on it (as over TCP).
    pub queue: VecDeque<(usize, NodeId, Option<Vec<u8>>)>,
    pub events: Vec<(usize, Event)>,
    pub sent: Vec<(usize, NodeId, Vec<u8>)>,
    pub drop_to: Option<NodeId>,
    /// Crashed nodes: nothing reaches them and nothing they send arrives.
    pub silent: Vec<NodeId>,
}

pub fn config() -> Arc<OverlayConfig> {
    Arc::new(
        OverlayConfig::new("engine.test.invalid")
            .with_kind(KindDefinition {
                id: KIND,
                name: "test".into(),
                data_model: DataModel::SingleValue,
                access: AccessPolicy::UserMatch,
                max_count: 1,
                max_size: 100,
            })
            .with_kind(KindDefinition {
                id: usages::kind_id::CERTIFICATE_BY_USER,
                name: "CERTIFICATE_BY_USER".into(),
                data_model: DataModel::Array,
                access: AccessPolicy::UserMatch,
                max_count: 8,
                max_size: 4096,
            })
            .with_kind(KindDefinition {
                id: usages::kind_id::SIP_REGISTRATION,
                name: "SIP-REGISTRATION".into(),
                data_model: DataModel::Dictionary,
                access: AccessPolicy::UserNodeMatch,
                max_count: 32,
                max_size: 1024,
            })
            // RFC 6940 §9's TURN-SERVICE, as relay peers store it.
            .with_kind(KindDefinition {
                id: usages::kind_id::TURN_SERVICE,
                name: "TURN-SERVICE".into(),
                data_model: DataModel::SingleValue,
                access: AccessPolicy::NodeMultiple { max: 20 },
                max_count: 1,
                max_size: 100,
            }),
    )
}

pub fn addr(i: usize) -> IpAddressPort {
    IpAddressPort::Ip(SocketAddr::from(([127, 0, 0, 1 + i as u8], 6084)))
}

impl Net {
    /// Nodes with the given Node-IDs; the first starts the ring, the others
    /// join through it one after the other.
    pub fn ring(ids: &[u128]) -> Net {
        let mut net = Net {
            now: T0,
            nodes: Vec::new(),
            clients: Vec::new(),
            users: Vec::new(),
            queue: VecDeque::new(),
            events: Vec::new(),
            sent: Vec::new(),
            drop_to: None,
            silent: Vec::new(),
        };
        for id in ids {
            net.add_peer(*id);
        }
        net
    }

    pub fn user(&mut self, id: NodeId) -> (String, SimulatedSecurity) {
        let user = format!("user{}@engine.test.invalid", self.users.len());
        self.users.push(user.clone());
        (user.clone(), SimulatedSecurity::new(id, user))
    }

    /// A peer that starts the ring if it is the first, else joins through
    /// peer 0. (Clients' harness indexes move up by one.)
    pub fn add_peer(&mut self, id: u128) -> usize {
        assert!(self.queue.is_empty());
        let cfg = config();
        let ctx = Arc::new(cfg.decode_context().unwrap());
        let i = self.nodes.len();
        let id = NodeId::from_u128(id);
        let (_, security) = self.user(id);
        // Every peer serves one phone user (RFC 7904).
        let security = security.with_user(format!("phone{i}@engine.test.invalid"));
        let topology = ChordReload::new(id, cfg.chord.clone(), 16, i as u64);
        let node = OverlayNode::new(cfg, ctx, addr(i), topology, security, i as u64, self.now);
        self.nodes.push(node);
        if i == 0 {
            self.nodes[0].start_alone(self.now);
            self.pump();
        } else {
            self.nodes[i].join(self.now, vec![addr(0)]);
            self.pump();
            self.advance(2_000);
            assert!(self.nodes[i].is_joined(), "node {i} joined");
        }
        i
    }

    /// A client (§4.2.1) that attaches through peer `via`; its index in
    /// `clients`.
    pub fn add_client(&mut self, id: u128, via: usize) -> usize {
        let cfg = config();
        let ctx = Arc::new(cfg.decode_context().unwrap());
        let id = NodeId::from_u128(id);
        let (_, security) = self.user(id);
        let topology = ClientTopology::new(id, crate::topology::chord::hash);
        // Nobody dials a client; an address no peer has.
        let address = addr(200 + self.clients.len());
        let mut client = OverlayNode::new(cfg, ctx, address, topology, security, 99, self.now);
        client.join(self.now, vec![addr(via)]);
        self.clients.push(client);
        self.pump();
        self.clients.len() - 1
    }

    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        (0..self.endpoints()).find(|i| self.endpoint(*i).id() == *id)
    }

    pub fn endpoints(&self) -> usize {
        self.nodes.len() + self.clients.len()
    }

    pub fn endpoint(&self, i: usize) -> &dyn Endpoint {
        match self.nodes.get(i) {
            Some(n) => n,
            None => &self.clients[i - self.nodes.len()],
        }
    }

    pub fn endpoint_mut(&mut self, i: usize) -> &mut dyn Endpoint {
        let peers = self.nodes.len();
        match self.nodes.get_mut(i) {
            Some(n) => n,
            None => &mut self.clients[i - peers],
        }
    }

    /// Runs every action until the network is quiet.
    pub fn pump(&mut self) {
        self.pump_with(|_, _, _| {});
    }

    /// [`pump`](Self::pump), with `rewrite` seeing every message (to,
    /// from, bytes) before it is delivered: a test's stand-in for a peer
    /// that answers otherwise.
    pub fn pump_with(&mut self, mut rewrite: impl FnMut(NodeId, NodeId, &mut Vec<u8>)) {
        loop {
            let mut progressed = false;
            for i in 0..self.endpoints() {
                while let Some(a) = self.endpoint_mut(i).next_action() {
                    progressed = true;
                    self.act(i, a);
                }
            }
            if let Some((to, from, bytes)) = self.queue.pop_front() {
                self.now += 1;
                let now = self.now;
                match bytes {
                    Some(mut bytes) => {
                        rewrite(self.endpoint(to).id(), from, &mut bytes);
                        self.endpoint_mut(to).deliver(now, from, &bytes)
                    }
                    None => self.endpoint_mut(to).down(now, from),
                }
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    pub fn act(&mut self, i: usize, a: Action) {
        match a {
            Action::Send { to, bytes, .. } => {
                self.sent.push((i, to, bytes.clone()));
                if self.drop_to == Some(to) || self.silent.contains(&to) || self.silent.contains(&self.endpoint(i).id())
                {
                    return;
                }
                if let Some(j) = self.index_of(&to) {
                    let from = self.endpoint(i).id();
                    self.queue.push_back((j, from, Some(bytes)));
                }
            }
            Action::Connect { address, peer } => {
                let j = (0..self.endpoints()).find(|j| addr(*j) == address).unwrap();
                let (a, b) = (self.endpoint(i).id(), self.endpoint(j).id());
                let now = self.now;
                self.endpoint_mut(j).up(now, a);
                match peer {
                    Some(_) => self.endpoint_mut(i).up(now, b),
                    None => self.endpoint_mut(i).bootstrap_up(now, b),
                }
            }
            Action::Close { peer } => {
                let me = self.endpoint(i).id();
                if let (Some(j), false) = (self.index_of(&peer), self.silent.contains(&me)) {
                    self.queue.push_back((j, me, None));
                }
            }
            Action::Event(e) => self.events.push((i, *e)),
        }
    }

    /// Moves time forward, firing timers as they fall due.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        loop {
            let next = (0..self.endpoints()).filter_map(|i| self.endpoint(i).timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for i in 0..self.endpoints() {
                        let n = self.endpoint_mut(i);
                        if n.timeout().is_some_and(|t| t <= now) {
                            n.tick(now);
                        }
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    pub fn done(&mut self, node: usize, request: RequestId) -> (Result<Body, RequestFailure>, u32) {
        let (outcome, hops, _) = self.finished(node, request);
        (outcome, hops)
    }

    /// The outcome of a request and the node that answered it.
    pub fn done_by(&mut self, node: usize, request: RequestId) -> (Result<Body, RequestFailure>, NodeId) {
        let (outcome, _, responder) = self.finished(node, request);
        (outcome, responder)
    }

    pub fn finished(&mut self, node: usize, request: RequestId) -> (Result<Body, RequestFailure>, u32, NodeId) {
        let i = self
            .events
            .iter()
            .position(|(n, e)| *n == node && matches!(e, Event::Done { request: r, .. } if *r == request))
            .expect("request finished");
        match self.events.remove(i).1 {
            Event::Done {
                outcome,
                hops,
                responder,
                ..
            } => (outcome, hops, responder),
            _ => unreachable!(),
        }
    }

    /// Node `i` crashes: it falls silent, and nobody notices yet.
    pub fn crash(&mut self, i: usize) {
        self.silent.push(self.endpoint(i).id());
    }

    /// Every other node's link to node `i` goes down (failure detected).
    pub fn detect(&mut self, i: usize) {
        let id = self.endpoint(i).id();
        let now = self.now;
        for j in (0..self.endpoints()).filter(|j| *j != i) {
            self.endpoint_mut(j).down(now, id);
        }
        self.pump();
    }

    pub fn store_own(&mut self, node: usize, value: &[u8]) -> RequestId {
        let rid = self.nodes[node].resource_id(self.users[node].as_bytes());
        let v = StoredDataValue::SingleValue(DataValue {
            exists: true,
            value: value.to_vec(),
        });
        let id = self.nodes[node].store(self.now, rid, KIND, vec![v], 3600);
        self.pump();
        id
    }
}

/// Node-IDs of a six-peer ring, spread unevenly around it.
pub const IDS: [u128; 6] = [1 << 120, 3 << 120, 5 << 120, 70 << 120, 140 << 120, 200 << 120];
