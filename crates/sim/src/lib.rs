//! A deterministic discrete-event simulator running many
//! [`peer_core::PeerCore`]s — the same peer core the daemon runs: engine,
//! SIP usage, bootstrap and link table — over a simulated network with
//! latency, loss, churn and crashes.
//!
//! Everything random comes from generators seeded from the run's seed (one
//! for the simulation, one per peer), every collection that is iterated is
//! ordered, and what threads compute is applied in a fixed order, so the
//! same configuration and seed give the same run, byte for byte, on any
//! number of threads.

mod crew;
mod host;
pub mod network;
mod phones;
mod queue;
mod report;

pub use network::{Host, LatencyModel};
pub use queue::EventQueue;
pub use report::{Report, Series};

use crew::Crew;
use host::{Effect, Ev, Out, Pending, SimNode, Step, View};
use network::{address_of, socket_of};
use overlay::sorted::SortedMap;
use overlay::{
    AccessPolicy, ChordReload, KindDefinition, OverlayConfig, OverlayNode, RequestFailure, SimulatedSecurity,
};
use peer_core::links::LinkId;
use peer_core::Input;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use reload_wire::{
    Body, DataModel, DataValue, DecodeContext, FetchReq, ModelSpecifier, NodeId, ResourceId, StoredDataSpecifier,
    StoredDataValue,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Simulated time starts here (ms since the Unix epoch), so storage_time
/// values look like real ones.
pub const EPOCH_MS: u64 = 1_800_000_000_000;

/// The Kind the simulated users store: one value per user, USER-MATCH.
pub const SIM_KIND: u32 = 0x4000_0001;

/// How long a peer stays: the distribution of session times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionModel {
    Exponential,
    /// Pareto with this shape (heavy-tailed sessions, as measured in
    /// deployed P2P systems).
    Pareto {
        shape: f64,
    },
}

/// Something that happens at a set time after measurement starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// This fraction of the live peers crashes at once.
    MassCrash { at_s: u64, fraction: f64 },
    /// This fraction of the peers leaves gracefully, one every `interval_s`.
    LeaveOneByOne { at_s: u64, fraction: f64, interval_s: u64 },
    /// The network splits: this fraction of the live peers, drawn at
    /// random, can reach only each other, the rest only each other, for
    /// `lasting_s`. Links across the cut fail as a crash does (after the
    /// failure-detection time), messages across it are lost and
    /// connections across it fail. Peers that arrive meanwhile are on the
    /// larger side and join through a peer there. It lasts at least the
    /// failure-detection time.
    Partition { at_s: u64, fraction: f64, lasting_s: u64 },
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub peers: usize,
    /// Measured time, after the ring is built and has settled.
    pub duration_s: u64,
    /// Median session time; `None` for no churn.
    pub churn_median_s: Option<f64>,
    pub session: SessionModel,
    /// Fraction of departures that are crashes rather than graceful leaves.
    pub crash_fraction: f64,
    pub seed: u64,
    pub latency: LatencyModel,
    /// Probability that a message is lost in transit.
    pub loss: f64,
    pub lookups_per_s: f64,
    /// Users (one per peer, at most `peers`) that store a value.
    pub items: usize,
    /// SIP users whose phones the peers serve, spread over the first
    /// peers round robin; each is registered in the overlay (RFC 7904).
    pub sip_users: usize,
    /// Calls per simulated second between random SIP users, measured.
    pub calls_per_s: f64,
    /// How long until the other end of a crashed peer's link notices.
    pub failure_detection_ms: u64,
    /// Joins per second while the ring is built.
    pub join_rate_per_s: f64,
    /// While building, the ring grows by at most this fraction of itself
    /// per second: join i comes no earlier than ln(i)/g seconds in, the
    /// growth of a population that recruits. A ring started from one peer
    /// that takes hundreds of joins a second before its first peers know
    /// one another splits into interleaved rings that only partition
    /// detection merges (decision 0004, "Finger hubs and flash crowds"). 0 turns it off.
    pub join_growth_per_s: f64,
    /// Quiet time between building the ring and measuring.
    pub settle_s: u64,
    pub scenarios: Vec<Scenario>,
    pub overlay: OverlayConfig,
    /// Threads that handle the peers' events of one millisecond side by
    /// side. The run is the same for any number (decision 0011).
    pub threads: usize,
    /// Fewest peer events in a millisecond worth sharing out among
    /// threads: below it, handing them over costs more than it saves.
    pub parallel_min_events: usize,
}

impl SimConfig {
    /// One-way latency between two hosts in this run.
    pub fn latency_ms(&self, a: Host, b: Host) -> u64 {
        self.latency.one_way_ms(self.seed, a, b)
    }

    pub fn new(peers: usize, duration_s: u64) -> Self {
        let overlay = OverlayConfig::new("sim.p2psip.invalid")
            .with_kind(KindDefinition {
                id: SIM_KIND,
                name: "sim-user-value".into(),
                data_model: DataModel::SingleValue,
                access: AccessPolicy::UserMatch,
                max_count: 1,
                max_size: 1024,
            })
            // RFC 7904 §3 and RFC 6940 §8, as the daemon's configuration
            // defines them.
            .with_kind(KindDefinition {
                id: reload_wire::usages::kind_id::SIP_REGISTRATION,
                name: "SIP-REGISTRATION".into(),
                data_model: DataModel::Dictionary,
                access: AccessPolicy::UserNodeMatch,
                max_count: 32,
                max_size: 1024,
            })
            .with_kind(KindDefinition {
                id: reload_wire::usages::kind_id::CERTIFICATE_BY_USER,
                name: "CERTIFICATE_BY_USER".into(),
                data_model: DataModel::Array,
                access: AccessPolicy::UserMatch,
                max_count: 8,
                max_size: 4096,
            });
        SimConfig {
            peers,
            duration_s,
            churn_median_s: None,
            session: SessionModel::Exponential,
            crash_fraction: 0.5,
            seed: 1,
            latency: LatencyModel::default(),
            loss: 0.0,
            lookups_per_s: 20.0,
            items: peers,
            sip_users: 0,
            calls_per_s: 10.0,
            failure_detection_ms: 3_000,
            join_rate_per_s: (peers as f64 / 120.0).max(10.0),
            join_growth_per_s: 0.2,
            settle_s: 60,
            scenarios: Vec::new(),
            overlay,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            parallel_min_events: 16,
        }
    }
}

type Core = peer_core::PeerCore<ChordReload, SimulatedSecurity>;

/// Why a simulation cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the overlay configuration cannot be encoded: {0}")]
    Encode(#[from] reload_wire::EncodeError),
    #[error("the peer core cannot run this overlay configuration: {0}")]
    Configuration(#[from] peer_core::usage::KindPolicyMismatch),
}

pub(crate) struct Item {
    resource: ResourceId,
    pos: u128,
    pub value: Vec<u8>,
    stored: bool,
    /// Every copy was on peers that crashed.
    lost: bool,
}

/// Copies of a value only ever live on peers that are, or recently were,
/// in its replica set: within this many peers of its position on the ring.
const COPY_NEIGHBOURHOOD: usize = 8;

/// A simulation in progress.
pub struct Simulation {
    cfg: SimConfig,
    overlay: Arc<OverlayConfig>,
    ctx: Arc<DecodeContext>,
    rng: Xoshiro256PlusPlus,
    now: u64,
    queue: EventQueue<Ev>,
    nodes: Vec<Option<SimNode>>,
    /// Node-ID of every host ever created, alive or not.
    ids: Vec<NodeId>,
    /// Whether each host ever created is still there.
    alive: Vec<bool>,
    /// Ground truth: the live, joined peers by ring position.
    ring: BTreeMap<u128, Host>,
    items: Vec<Item>,
    item_at: HashMap<u128, usize>,
    users: Vec<phones::User>,
    /// Users by the ring position of their registration's Resource-ID.
    user_at: HashMap<u128, usize>,
    /// The SIP users each peer serves.
    served: BTreeMap<Host, Vec<usize>>,
    measure_from: Option<u64>,
    report: Report,
    peer_ms: u128,
    live_count: usize,
    last_count_change: u64,
    /// While the network is split: the hosts on the smaller side.
    cut: Option<BTreeSet<Host>>,
    /// Partition checks that found another partition, by peers now gone.
    partitions_found_by_gone: u64,
    /// The other threads, while `run` runs on more than one.
    crew: Option<Crew>,
    step: StepBuffers,
}

/// What one step of peer events moves through, kept from step to step:
/// the events and effects of a step then move through memory still in
/// cache, not through fresh allocations (each peer's own state is cold
/// enough).
#[derive(Default)]
struct StepBuffers {
    /// The step's peer events, in the order they came.
    events: Vec<host::Timed>,
    /// The events by share, each sorted by peer.
    shares: Vec<Vec<host::Timed>>,
    /// The first host of each share.
    share_hosts: Vec<Host>,
    /// What each thread produced.
    outs: Vec<Out>,
    /// Effects of all threads, in the order of the shares.
    effects: Vec<Effect>,
    /// The events by (host, index in `events`), to share them out.
    keys: Vec<u64>,
    /// Which thread handled each share, and how many effects it made.
    made_by: Vec<(usize, usize)>,
}

/// Fewest events in a share, so that a step is not cut into more shares
/// than it gains from.
const LEAST_SHARE: usize = 4;

impl StepBuffers {
    fn ready(&mut self, threads: usize) {
        if self.outs.len() < threads {
            self.outs.resize_with(threads, || Out::direct(0));
        }
    }

    /// Cuts the step's events into shares of whole peers, in host order,
    /// each a fraction of what is left (`1 / 2·threads`): a thread that
    /// finishes a share takes the next, so the threads finish close
    /// together however uneven the peers' work (guided scheduling;
    /// decision 0018). Returns how many shares.
    fn share_out(&mut self, threads: usize) -> usize {
        self.keys.clear();
        let keys = self
            .events
            .iter()
            .enumerate()
            .map(|(i, (_, ev))| (u64::from(ev.host().unwrap_or(Host::MAX)) << 32) | i as u64);
        self.keys.extend(keys);
        self.keys.sort_unstable();
        let host = |key: u64| (key >> 32) as Host;
        let n = self.keys.len();
        self.share_hosts.clear();
        let mut start = 0;
        while start < n {
            let size = if threads > 1 {
                ((n - start) / (2 * threads)).max(LEAST_SHARE)
            } else {
                n
            };
            let mut end = (start + size).min(n);
            while end < n && host(self.keys[end]) == host(self.keys[end - 1]) {
                end += 1;
            }
            let c = self.share_hosts.len();
            if self.shares.len() <= c {
                self.shares.push(Vec::new());
            }
            self.share_hosts.push(host(self.keys[start]));
            let share = &mut self.shares[c];
            for key in &self.keys[start..end] {
                let (t, ev) = &mut self.events[(key & u64::from(u32::MAX)) as usize];
                share.push((*t, std::mem::replace(ev, Ev::Sample)));
            }
            start = end;
        }
        self.events.clear();
        self.share_hosts.len()
    }

    fn push(&mut self, t: u64, ev: Ev) {
        self.events.push((t, ev));
    }
}

fn session_ms(rng: &mut Xoshiro256PlusPlus, median_s: f64, model: SessionModel) -> u64 {
    let u: f64 = rng.random_range(1e-12..1.0);
    let s = match model {
        // median = ln2 * mean
        SessionModel::Exponential => -u.ln() * median_s / std::f64::consts::LN_2,
        // median = x_m * 2^(1/shape)
        SessionModel::Pareto { shape } => {
            let x_m = median_s / 2f64.powf(1.0 / shape);
            x_m / u.powf(1.0 / shape)
        }
    };
    (s * 1000.0) as u64 + 1
}

impl Simulation {
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        peer_core::check_configuration(&cfg.overlay)?;
        let ctx = Arc::new(cfg.overlay.decode_context()?);
        let overlay = Arc::new(cfg.overlay.clone());
        let mut items = Vec::with_capacity(cfg.items.min(cfg.peers));
        let hasher = ChordReload::new(NodeId::from_u128(0), cfg.overlay.chord.clone(), 16, 0);
        for i in 0..cfg.items.min(cfg.peers) {
            let resource = overlay::Topology::resource_id(&hasher, user_name(i as Host).as_bytes());
            items.push(Item {
                pos: overlay::ring::resource_position(&resource),
                resource,
                value: format!("value of user {i}").into_bytes(),
                stored: false,
                lost: false,
            });
        }
        let item_at = items.iter().enumerate().map(|(i, it)| (it.pos, i)).collect();
        let mut users = Vec::with_capacity(cfg.sip_users);
        let mut served: BTreeMap<Host, Vec<usize>> = BTreeMap::new();
        for u in 0..cfg.sip_users {
            let mut user = phones::User::new(u, &hasher);
            if cfg.peers > 0 {
                let home = (u % cfg.peers) as Host;
                user.home = Some(home);
                served.entry(home).or_default().push(u);
            }
            users.push(user);
        }
        let user_at = users.iter().enumerate().map(|(i, u)| (u.pos, i)).collect();
        Ok(Simulation {
            item_at,
            user_at,
            users,
            served,
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed),
            report: Report::new(&cfg),
            cfg,
            overlay,
            ctx,
            now: 0,
            queue: EventQueue::new(),
            nodes: Vec::new(),
            ids: Vec::new(),
            alive: Vec::new(),
            ring: BTreeMap::new(),
            items,
            measure_from: None,
            peer_ms: 0,
            live_count: 0,
            last_count_change: 0,
            cut: None,
            partitions_found_by_gone: 0,
            crew: None,
            step: StepBuffers::default(),
        })
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.queue.push(t, ev);
    }

    fn node(&mut self, h: Host) -> Option<&mut SimNode> {
        self.nodes.get_mut(h as usize).and_then(|n| n.as_mut())
    }

    fn measuring(&self) -> bool {
        self.measure_from.is_some_and(|t| self.now >= t)
    }

    fn count_live(&mut self, delta: isize) {
        if self.measuring() {
            self.peer_ms += self.live_count as u128 * (self.now - self.last_count_change) as u128;
        }
        self.last_count_change = self.now;
        self.live_count = (self.live_count as isize + delta) as usize;
    }

    fn spawn(&mut self) -> Host {
        let host = self.nodes.len() as Host;
        let id = network::node_id_of(host, self.rng.random());
        let seed: u64 = self.rng.random();
        let topology = ChordReload::new(id, self.cfg.overlay.chord.clone(), 16, seed ^ 0x5eed);
        let mut security = SimulatedSecurity::new(id, user_name(host));
        for u in self.served.get(&host).into_iter().flatten() {
            phones::enroll(&mut security, &self.users[*u].name);
        }
        let mut engine = OverlayNode::new(
            self.overlay.clone(),
            self.ctx.clone(),
            address_of(host),
            topology,
            security,
            seed,
            EPOCH_MS + self.now,
        );
        engine.offer_application(peer_core::sip_usage::SIPS_APPLICATION, address_of(host));
        // A peer learns where to join when its turn comes (`start_join`);
        // one that finds nobody starts the overlay.
        let plan = peer_core::bootstrap::BootstrapPlan::default();
        let core = match Core::new(engine, plan, false, None) {
            Ok(core) => Box::new(core),
            Err(e) => unreachable!("Simulation::new checked the configuration: {e}"),
        };
        let item = ((host as usize) < self.items.len()).then_some(host as usize);
        self.nodes.push(Some(SimNode {
            core,
            joined: false,
            leaving: false,
            timer_at: None,
            links: SortedMap::new(),
            dialled: 0,
            pending: BTreeMap::new(),
            item,
            calls: BTreeMap::new(),
            next_call: 0,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x1055),
        }));
        self.alive.push(true);
        self.ids.push(id);
        self.count_live(1);
        host
    }

    /// A random peer of the ring that is not on its way out (and, while
    /// the network is split, on `near`'s side of it).
    fn random_joined_near(&mut self, near: Host) -> Option<Host> {
        for _ in 0..16 {
            let h = self.random_joined()?;
            if !self.split(near, h) {
                return Some(h);
            }
        }
        None
    }

    /// A random peer of the ring that is not on its way out.
    fn random_joined(&mut self) -> Option<Host> {
        for _ in 0..16 {
            let p: u128 = self.rng.random();
            let h = self
                .ring
                .range(p..)
                .next()
                .or_else(|| self.ring.iter().next())
                .map(|(_, h)| *h)?;
            if self.nodes[h as usize].as_ref().is_some_and(|n| !n.leaving) {
                return Some(h);
            }
        }
        None
    }

    /// What peer events may read, beside the peers themselves.
    fn parts(&mut self) -> (View<'_>, &mut [Option<SimNode>]) {
        let view = View {
            cfg: &self.cfg,
            ids: &self.ids,
            alive: &self.alive,
            cut: self.cut.as_ref(),
            items: &self.items,
        };
        (view, &mut self.nodes)
    }

    /// Drains a node's actions into the event queue and re-arms its timer.
    fn drive(&mut self, h: Host) {
        let mut out = Out::direct(self.now);
        let (view, nodes) = self.parts();
        if let Some(n) = nodes.get_mut(h as usize).and_then(|n| n.as_mut()) {
            host::drive(&view, n, h, &mut out);
        }
        self.apply(out);
    }

    /// Whether a partition keeps `a` and `b` apart.
    fn split(&self, a: Host, b: Host) -> bool {
        host::apart(self.cut.as_ref(), a, b)
    }

    /// Handles the peer events of one step (`self.step.events`): on
    /// threads when there are enough of them, each thread taking shares
    /// (ranges of hosts) until none is left, then applies what they caused
    /// peer by peer in host order, which no thread can change.
    fn handle_peer_events(&mut self, step: Step) {
        let mut buffers = std::mem::take(&mut self.step);
        let events = buffers.events.len();
        if events == 0 {
            self.step = buffers;
            return;
        }
        let threads = self.cfg.threads.max(1).min(events);
        let parallel = threads > 1 && events >= self.cfg.parallel_min_events.max(2);
        let threads = if parallel && self.crew.is_some() { threads } else { 1 };
        buffers.ready(threads);
        let count = buffers.share_out(threads);
        let mut crew = self.crew.take();
        let (view, nodes) = self.parts();
        let StepBuffers {
            shares,
            share_hosts,
            outs,
            effects,
            made_by,
            ..
        } = &mut buffers;
        let outs = &mut outs[..threads];
        for out in outs.iter_mut() {
            out.begin_step(step);
        }
        // Each share with the peers from its first host to the next
        // share's first host.
        let hosts = nodes.len();
        let bound = |c: usize| share_hosts.get(c).map_or(hosts, |&h| hosts.min(h as usize));
        let mut work = Vec::with_capacity(count);
        let mut rest = &mut nodes[bound(0)..];
        for (c, events) in shares[..count].iter_mut().enumerate() {
            let (mine, others) = std::mem::take(&mut rest).split_at_mut(bound(c + 1) - bound(c));
            rest = others;
            work.push(Mutex::new(Some(host::Share {
                index: c,
                nodes: mine,
                base: bound(c) as Host,
                events,
            })));
        }
        let taken = AtomicUsize::new(0);
        let take = || {
            let c = taken.fetch_add(1, Ordering::Relaxed);
            work.get(c)
                .and_then(|share| share.lock().unwrap_or_else(PoisonError::into_inner).take())
        };
        let view = &view;
        match crew.as_mut().filter(|_| threads > 1) {
            None => {
                while let Some(share) = take() {
                    host::handle_share(view, share, &mut outs[0]);
                }
            }
            Some(crew) => {
                let take = &take;
                let jobs: Vec<Box<dyn FnOnce() + Send + '_>> = outs
                    .iter_mut()
                    .map(|out| {
                        Box::new(move || {
                            while let Some(share) = take() {
                                host::handle_share(view, share, out);
                            }
                        }) as Box<dyn FnOnce() + Send + '_>
                    })
                    .collect();
                crew.run(jobs);
            }
        }
        drop(work);
        // The effects in the order of the shares: each thread took its
        // shares in that order, so each thread's effects are runs of
        // consecutive shares.
        made_by.clear();
        made_by.resize(count, (0, 0));
        for (thread, out) in outs.iter().enumerate() {
            for &(c, made) in &out.shares {
                made_by[c] = (thread, made);
            }
        }
        let mut made: Vec<_> = outs.iter_mut().map(|out| out.effects.drain(..)).collect();
        for &(thread, n) in made_by.iter() {
            effects.extend(made[thread].by_ref().take(n));
        }
        drop(made);
        self.crew = crew;
        // What the step caused applies at its end.
        self.now = step.end - 1;
        for out in &buffers.outs[..threads] {
            self.count_messages(out.tally);
        }
        let mut effects = std::mem::take(&mut buffers.effects);
        for mut e in effects.drain(..) {
            if let Effect::Schedule(at, ev) = &mut e {
                // Nothing a peer does reaches another peer within the
                // step (`step_ms`); were it to, it comes late rather than
                // in a millisecond already handled.
                debug_assert!(*at >= step.end || ev.host().is_none(), "{ev:?} at {at} inside {step:?}");
                *at = (*at).max(step.end);
            }
            self.apply_effect(e);
        }
        buffers.effects = effects;
        self.step = buffers;
    }

    /// How many milliseconds one step may span: events at different peers
    /// less than this apart cannot affect one another, since whatever one
    /// peer does reaches another at least one latency later (a message, a
    /// link going down; a connection takes four). Decision 0011.
    fn step_ms(&self) -> u64 {
        self.cfg.latency.floor_ms()
    }

    /// Applies what one event at a peer caused, in the order it caused it.
    fn apply(&mut self, out: Out) {
        self.count_messages(out.tally);
        for e in out.effects {
            self.apply_effect(e);
        }
    }

    fn count_messages(&mut self, tally: host::Tally) {
        if self.measuring() {
            let t = self.now - self.measure_from.unwrap_or(0);
            self.report.count_messages(t, tally);
        } else if self.measure_from.is_none() {
            self.report.count_build_messages(tally.messages);
        }
    }

    fn apply_effect(&mut self, e: Effect) {
        match e {
            Effect::Schedule(at, ev) => self.at(at, ev),
            Effect::Joined(h) => {
                let Some(n) = self.node(h) else { return };
                let pos = overlay::ring::node_position(&n.core.engine().node_id());
                let item = n.item;
                self.ring.insert(pos, h);
                if item.is_some_and(|i| !self.items[i].stored) {
                    self.at(self.now + 1_000, Ev::StoreItem { host: h, attempt: 0 });
                }
                let waiting: Vec<usize> = self
                    .served
                    .get(&h)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|u| !self.users[*u].refreshing)
                    .collect();
                for (k, u) in waiting.into_iter().enumerate() {
                    self.users[u].refreshing = true;
                    // Phones spread their first registrations a little.
                    let at = self.now + 1_000 + 10 * k as u64;
                    self.at(
                        at,
                        Ev::Register {
                            user: u,
                            home: h,
                            refresh: true,
                        },
                    );
                }
            }
            Effect::Rejoining(h) => {
                if let Some(n) = self.node(h) {
                    let pos = overlay::ring::node_position(&n.core.engine().node_id());
                    self.ring.remove(&pos);
                }
                self.report.rejoins += 1;
            }
            Effect::Left(h) => self.remove(h, false),
            Effect::Stored { item, ok } => {
                if ok {
                    self.items[item].stored = true;
                    self.report.items_stored += 1;
                } else {
                    self.report.store_failures += 1;
                }
            }
            Effect::LookedUp {
                ok,
                timeout,
                hops,
                latency_ms,
            } => {
                if !ok {
                    self.report.record_failure(timeout);
                }
                let t = self.now - self.measure_from.unwrap_or(0);
                self.report.record_lookup(t, ok, hops, latency_ms);
            }
            Effect::Registered { user, home, ok } => {
                if self.users[user].home != Some(home) {
                    return;
                }
                if ok {
                    self.users[user].registered = true;
                    self.report.registrations_stored += 1;
                } else {
                    self.report.registration_failures += 1;
                    let retry = Ev::Register {
                        user,
                        home,
                        refresh: false,
                    };
                    self.at(self.now + phones::REGISTER_RETRY_MS, retry);
                }
            }
            Effect::Called {
                found,
                started,
                latency_ms,
            } => {
                let t = started.saturating_sub(self.measure_from.unwrap_or(0));
                self.report.record_call(t, found, latency_ms);
            }
        }
    }

    /// `user`'s phone is served by `home` from now on; it registers there.
    fn serve(&mut self, user: usize, home: Host) {
        let name = self.users[user].name.clone();
        let Some(n) = self.node(home) else { return };
        phones::enroll(n.core.engine_mut().security_mut(), &name);
        let u = &mut self.users[user];
        u.home = Some(home);
        u.registered = false;
        u.refreshing = true;
        self.served.entry(home).or_default().push(user);
        self.at(
            self.now,
            Ev::Register {
                user,
                home,
                refresh: true,
            },
        );
    }

    /// The phones `h` served look for another peer.
    fn orphan_phones(&mut self, h: Host) {
        for u in self.served.remove(&h).unwrap_or_default() {
            let user = &mut self.users[u];
            user.home = None;
            user.registered = false;
            user.refreshing = false;
            self.at(self.now + phones::PHONE_FAILOVER_MS, Ev::Failover { user: u });
        }
    }

    /// Registered users whose every registration copy is on a peer in
    /// `dying` while their own peer lives on: lost until its next refresh,
    /// whatever the overlay does.
    fn registrations_dying_with(&self, dying: &BTreeSet<Host>) -> u64 {
        // Only users whose registration a dying peer holds can lose it.
        let mut held: BTreeSet<usize> = BTreeSet::new();
        for &d in dying {
            let Some(n) = self.nodes.get(d as usize).and_then(|n| n.as_ref()) else {
                continue;
            };
            for r in n.core.engine().storage().resources() {
                if let Some(&u) = self.user_at.get(&overlay::ring::resource_position(&r.id)) {
                    held.insert(u);
                }
            }
        }
        held.into_iter()
            .filter(|u| {
                let user = &self.users[*u];
                user.registered
                    && user.home.is_some_and(|h| !dying.contains(&h))
                    && !self.copy_survives(&user.resource, user.pos, dying)
            })
            .count() as u64
    }

    /// Whether a live peer holds `user`'s registration.
    fn registration_held(&self, user: usize) -> bool {
        let u = &self.users[user];
        self.copy_survives(&u.resource, u.pos, &BTreeSet::new())
    }

    /// Takes a node out: a crash (links notice after the detection time) or
    /// the end of a graceful leave (links were closed by the node).
    fn remove(&mut self, h: Host, crash: bool) {
        let Some(n) = self.nodes.get_mut(h as usize).and_then(|n| n.take()) else {
            return;
        };
        let id = n.core.engine().node_id();
        self.alive[h as usize] = false;
        self.orphan_phones(h);
        // Lookups the caller's peer took with it: the phone retries at its
        // next peer; not a lookup that failed to find anyone.
        self.report.calls_abandoned += n.calls.len() as u64;
        self.partitions_found_by_gone += n.core.engine().topology().partitions_found();
        self.ring.remove(&overlay::ring::node_position(&id));
        self.count_live(-1);
        let delay = if crash { self.cfg.failure_detection_ms } else { 0 };
        for &(link, p) in n.links.as_slice() {
            let t = self.now + delay.max(self.cfg.latency_ms(h, p));
            self.at(t, Ev::LinkDown { at: p, peer: h, link });
        }
    }

    fn schedule_departure(&mut self, h: Host) {
        if let Some(median) = self.cfg.churn_median_s {
            let d = session_ms(&mut self.rng, median, self.cfg.session);
            self.at(self.now + d, Ev::Depart { host: h });
        }
    }

    fn start_join(&mut self, h: Host) {
        let boot = self.random_joined_near(h);
        let now = EPOCH_MS + self.now;
        let Some(n) = self.node(h) else { return };
        if let Some(b) = boot {
            n.core.add_bootstrap_addresses(socket_of(h), &[socket_of(b)]);
        }
        n.core.start(now);
        self.drive(h);
    }

    fn leave(&mut self, h: Host) {
        let now = EPOCH_MS + self.now;
        let Some(n) = self.node(h) else { return };
        if n.leaving {
            return;
        }
        // A leaving peer stays on the ring (it still serves and hands its
        // data over) until it has left. Its core first withdraws the
        // registrations it stored.
        n.leaving = true;
        n.core.handle_input(now, Input::Leave);
        self.drive(h);
        self.at(self.now + 60_000, Ev::LeaveDeadline { host: h });
    }

    /// Marks the items whose every copy is on a peer in `dying` as lost and
    /// returns how many there are: the losses no repair could prevent.
    fn unavoidable_losses(&mut self, dying: &BTreeSet<Host>) -> u64 {
        let mut lost = 0;
        let mut checked = BTreeSet::new();
        for &d in dying {
            let Some(n) = self.nodes.get(d as usize).and_then(|n| n.as_ref()) else {
                continue;
            };
            let positions: Vec<u128> = n
                .core
                .engine()
                .storage()
                .resources()
                .map(|r| overlay::ring::resource_position(&r.id))
                .collect();
            for pos in positions {
                let Some(&i) = self.item_at.get(&pos) else { continue };
                if self.items[i].lost || !checked.insert(i) {
                    continue;
                }
                if !self.copy_survives(&self.items[i].resource, pos, dying) {
                    self.items[i].lost = true;
                    lost += 1;
                }
            }
        }
        lost
    }

    /// Whether a live peer outside `dying` holds `resource`: first where
    /// copies normally are (near its position), then anywhere, so the
    /// answer is exact even for copies left far away.
    fn copy_survives(&self, resource: &ResourceId, pos: u128, dying: &BTreeSet<Host>) -> bool {
        let holds = |h: &Host| {
            !dying.contains(h)
                && self.nodes[*h as usize]
                    .as_ref()
                    .is_some_and(|n| n.core.engine().storage().resource(resource).is_some())
        };
        let after = self.ring.range(pos..).chain(self.ring.range(..pos));
        let before = self.ring.range(..pos).rev().chain(self.ring.range(pos..).rev());
        let nearby = after
            .take(COPY_NEIGHBOURHOOD)
            .chain(before.take(COPY_NEIGHBOURHOOD))
            .any(|(_, h)| holds(h));
        nearby || (0..self.nodes.len() as Host).any(|h| holds(&h))
    }

    fn ideal_set(&self, pos: u128) -> Vec<Host> {
        self.ring
            .range(pos..)
            .chain(self.ring.range(..pos))
            .take(3)
            .map(|(_, h)| *h)
            .collect()
    }

    /// An event that looks at the whole simulation.
    fn handle_global(&mut self, ev: Ev) {
        let now_abs = EPOCH_MS + self.now;
        match ev {
            Ev::Join { host } => {
                self.start_join(host);
                if self.measuring() {
                    self.schedule_departure(host);
                }
            }
            Ev::Depart { host } => {
                if self.node(host).is_none_or(|n| n.leaving) {
                    return;
                }
                if self.rng.random_bool(self.cfg.crash_fraction) {
                    self.report.crashes += 1;
                    self.crash_batch(vec![host]);
                } else {
                    self.report.graceful_leaves += 1;
                    self.leave(host);
                }
                // Churn keeps the population steady: someone new arrives.
                let newcomer = self.spawn();
                self.at(self.now, Ev::Join { host: newcomer });
            }
            Ev::Lookup => {
                let mean_gap = 1000.0 / self.cfg.lookups_per_s;
                let gap = (-self.rng.random_range(1e-12..1.0f64).ln() * mean_gap) as u64 + 1;
                self.at(self.now + gap, Ev::Lookup);
                let stored: usize = self.items.len();
                if stored == 0 {
                    return;
                }
                let item = self.rng.random_range(0..stored);
                if !self.items[item].stored || self.items[item].lost {
                    return;
                }
                let Some(origin) = self.random_joined() else { return };
                let req = FetchReq {
                    resource: self.items[item].resource.clone(),
                    specifiers: vec![StoredDataSpecifier {
                        kind: SIM_KIND,
                        generation: 0,
                        model_specifier: ModelSpecifier::SingleValue,
                    }],
                };
                let Some(n) = self.node(origin) else { return };
                let id = n.core.engine_mut().fetch(now_abs, req);
                n.pending.insert(id, Pending::Lookup { item });
                self.drive(origin);
            }
            Ev::StoreItem { host, attempt } => {
                let Some(n) = self.node(host) else { return };
                let Some(item) = n.item else { return };
                if !n.joined || self.items[item].stored {
                    return;
                }
                let it = &self.items[item];
                let (resource, value) = (it.resource.clone(), it.value.clone());
                let lifetime = (self.cfg.duration_s * 4 + 86_400) as u32;
                let n = self.node(host).expect("checked");
                let id = n.core.engine_mut().store(
                    now_abs,
                    resource,
                    SIM_KIND,
                    vec![StoredDataValue::SingleValue(DataValue { exists: true, value })],
                    lifetime,
                );
                n.pending.insert(id, Pending::Store { item });
                self.drive(host);
                if attempt < 3 {
                    self.at(
                        self.now + 20_000,
                        Ev::StoreItem {
                            host,
                            attempt: attempt + 1,
                        },
                    );
                }
            }
            Ev::Scenario(i) => match self.cfg.scenarios[i].clone() {
                Scenario::MassCrash { fraction, .. } => {
                    let live: Vec<Host> = self.ring.values().copied().collect();
                    let count = (live.len() as f64 * fraction).round() as usize;
                    let mut chosen = BTreeSet::new();
                    while chosen.len() < count {
                        chosen.insert(live[self.rng.random_range(0..live.len())]);
                    }
                    self.report.crashes += count as u64;
                    self.crash_batch(chosen.into_iter().collect());
                }
                Scenario::Partition {
                    fraction, lasting_s, ..
                } => self.partition(fraction, lasting_s),
                Scenario::LeaveOneByOne {
                    fraction, interval_s, ..
                } => {
                    let count = (self.ring.len() as f64 * fraction).round() as usize;
                    self.at(
                        self.now,
                        Ev::LeaveOne {
                            remaining: count,
                            interval_ms: interval_s * 1000,
                        },
                    );
                }
            },
            Ev::LeaveOne { remaining, interval_ms } => {
                if remaining == 0 {
                    return;
                }
                if let Some(h) = self.random_joined() {
                    self.report.graceful_leaves += 1;
                    self.leave(h);
                }
                self.at(
                    self.now + interval_ms,
                    Ev::LeaveOne {
                        remaining: remaining - 1,
                        interval_ms,
                    },
                );
            }
            Ev::Register { user, home, refresh } => {
                if self.users[user].home != Some(home) {
                    return;
                }
                let name = self.users[user].name.clone();
                if refresh {
                    let next = Ev::Register { user, home, refresh };
                    self.at(self.now + phones::REFRESH_MS, next);
                }
                let Some(n) = self.node(home) else { return };
                if !n.joined || n.leaving {
                    return;
                }
                let publish = Input::Publish {
                    user: &name,
                    lifetime_s: phones::REGISTRATION_LIFETIME_S,
                    token: user as u64,
                };
                n.core.handle_input(now_abs, publish);
                self.drive(home);
            }
            Ev::Failover { user } => {
                if self.users[user].home.is_some() {
                    return;
                }
                match self.random_joined() {
                    Some(h) => self.serve(user, h),
                    None => self.at(self.now + phones::PHONE_FAILOVER_MS, Ev::Failover { user }),
                }
            }
            Ev::Call => {
                let mean_gap = 1000.0 / self.cfg.calls_per_s;
                let gap = (-self.rng.random_range(1e-12..1.0f64).ln() * mean_gap) as u64 + 1;
                self.at(self.now + gap, Ev::Call);
                let n = self.users.len();
                let (caller, callee) = (self.rng.random_range(0..n), self.rng.random_range(0..n));
                let (Some(from), Some(to)) = (self.users[caller].home, self.users[callee].home) else {
                    return;
                };
                let usable = |s: &Self, h: Host| s.nodes[h as usize].as_ref().is_some_and(|n| n.joined && !n.leaving);
                if caller == callee || !self.users[callee].registered || !usable(self, from) || !usable(self, to) {
                    return;
                }
                if !self.registration_held(callee) {
                    // Every copy died with its peers: unreachable until the
                    // callee's peer refreshes it, whatever the overlay does.
                    self.report.calls_to_lost_registrations += 1;
                    return;
                }
                let name = self.users[callee].name.clone();
                let started = self.now;
                let Some(n) = self.node(from) else { return };
                n.next_call += 1;
                let token = n.next_call;
                n.calls.insert(
                    token,
                    phones::Call {
                        callee_home: to,
                        started,
                    },
                );
                n.core.handle_input(now_abs, Input::Locate { user: name, token });
                self.drive(from);
            }
            Ev::Heal => self.cut = None,
            Ev::LeaveDeadline { host } => {
                if self.node(host).is_some() {
                    self.report.leave_timeouts += 1;
                    self.remove(host, false);
                }
            }
            Ev::Sample => {
                self.at(self.now + 60_000, Ev::Sample);
                let t = self.now - self.measure_from.unwrap_or(0);
                self.report.sample(t, self.ring.len());
            }
            peer_event => {
                let step = Step {
                    start: self.now,
                    end: self.now + 1,
                };
                // On its own, apart from a step `run` may be gathering.
                let gathered = std::mem::take(&mut self.step.events);
                self.step.push(self.now, peer_event);
                self.handle_peer_events(step);
                self.step.events = gathered;
            }
        }
    }

    /// Splits the network; links across the cut fail at both ends once
    /// the failure-detection time has passed, as with a crash.
    fn partition(&mut self, fraction: f64, lasting_s: u64) {
        let live: Vec<Host> = self.ring.values().copied().collect();
        let count = (live.len() as f64 * fraction).round() as usize;
        let mut side = BTreeSet::new();
        while side.len() < count.min(live.len()) {
            side.insert(live[self.rng.random_range(0..live.len())]);
        }
        self.cut = Some(side);
        let t = self.now + self.cfg.failure_detection_ms;
        for a in 0..self.nodes.len() as Host {
            let Some(n) = self.nodes[a as usize].as_ref() else {
                continue;
            };
            let across: Vec<(LinkId, Host)> = n
                .links
                .as_slice()
                .iter()
                .copied()
                .filter(|(_, b)| host::apart(self.cut.as_ref(), a, *b))
                .collect();
            for (link, peer) in across {
                self.at(t, Ev::LinkDown { at: a, peer, link });
            }
        }
        // Not before the links across the cut have failed: a late LinkDown
        // must not hit a link made after healing.
        self.at(
            self.now + (lasting_s * 1000).max(self.cfg.failure_detection_ms),
            Ev::Heal,
        );
    }

    fn crash_batch(&mut self, hosts: Vec<Host>) {
        let dying: BTreeSet<Host> = hosts.iter().copied().collect();
        self.report.items_lost_expected += self.unavoidable_losses(&dying);
        self.report.registrations_lost_expected += self.registrations_dying_with(&dying);
        for h in hosts {
            self.remove(h, true);
        }
    }

    /// Builds the ring, lets it settle, measures, and reports.
    pub fn run(mut self, progress: &mut dyn FnMut(u64, u64)) -> Report {
        if self.cfg.threads > 1 {
            // Without the helpers (the system would not start a thread)
            // the run is the same, on one thread.
            self.crew = Crew::new(self.cfg.threads - 1).ok();
        }
        let wall = std::time::Instant::now();
        // Build: one peer starts the overlay, the others join at a steady
        // rate once the growth limit allows it.
        let mut last_join = 0;
        for i in 0..self.cfg.peers {
            let h = self.spawn();
            last_join = join_time_ms(i, self.cfg.join_rate_per_s, self.cfg.join_growth_per_s);
            self.at(last_join, Ev::Join { host: h });
        }
        let build_deadline = last_join + 120_000;
        let mut last_progress = 0;
        while let Some((t, ev)) = self.queue.pop() {
            self.now = t;
            if self.measure_from.is_none()
                && (self.ring.len() >= self.cfg.peers && self.items_done() || t >= build_deadline)
            {
                self.report
                    .end_build(self.now as f64 / 1000.0, wall.elapsed().as_secs_f64());
                self.begin_measurement();
            }
            if let Some(m) = self.measure_from {
                if t >= m + self.cfg.duration_s * 1000 {
                    self.now = m + self.cfg.duration_s * 1000;
                    break;
                }
            }
            // The events of this millisecond that look at the whole
            // simulation first, one by one, then those at single peers,
            // with those of the next milliseconds of the step as long as
            // they are all at single peers.
            let mut next = Some(ev);
            while let Some(ev) = next {
                match ev.host() {
                    Some(_) => self.step.push(t, ev),
                    None => self.handle_global(ev),
                }
                next = self.queue.pop_at(t);
            }
            let last_ms = self.measure_from.map(|m| m + self.cfg.duration_s * 1000);
            let mut end = t + 1;
            while end < t + self.step_ms()
                && last_ms.is_none_or(|l| end < l)
                && self.queue.all_at(end, |e| e.host().is_some())
            {
                for ev in self.queue.drain_at(end) {
                    self.step.push(end, ev);
                }
                end += 1;
            }
            self.handle_peer_events(Step { start: t, end });
            let total = self.cfg.duration_s * 1000;
            let done = self.measure_from.map_or(0, |m| self.now.saturating_sub(m));
            if done >= last_progress + total / 200 {
                last_progress = done;
                progress(done, total);
            }
        }
        self.count_live(0);
        progress(self.cfg.duration_s * 1000, self.cfg.duration_s * 1000);
        self.finish(wall.elapsed().as_secs_f64())
    }

    fn items_done(&self) -> bool {
        self.items.iter().all(|i| i.stored)
    }

    fn begin_measurement(&mut self) {
        let m = self.now + self.cfg.settle_s * 1000;
        self.measure_from = Some(m);
        self.last_count_change = m;
        self.at(m, Ev::Lookup);
        self.at(m, Ev::Sample);
        if self.users.len() >= 2 && self.cfg.calls_per_s > 0.0 {
            self.at(m, Ev::Call);
        }
        for i in 0..self.cfg.scenarios.len() {
            let at_s = match self.cfg.scenarios[i] {
                Scenario::MassCrash { at_s, .. }
                | Scenario::LeaveOneByOne { at_s, .. }
                | Scenario::Partition { at_s, .. } => at_s,
            };
            self.at(m + at_s * 1000, Ev::Scenario(i));
        }
        if self.cfg.churn_median_s.is_some() {
            let hosts: Vec<Host> = self.ring.values().copied().collect();
            self.now = m;
            for h in hosts {
                self.schedule_departure(h);
            }
        }
    }

    fn finish(mut self, wall_s: f64) -> Report {
        let links = self.nodes.iter().flatten().map(|n| n.links.len() as u32).collect();
        self.report.record_links(links);
        // Who holds what, from the live peers' own storage.
        let mut holders: HashMap<u128, Vec<Host>> = HashMap::new();
        for (h, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            for r in n.core.engine().storage().resources() {
                holders
                    .entry(overlay::ring::resource_position(&r.id))
                    .or_default()
                    .push(h as Host);
            }
        }
        let mut complete = 0u64;
        for item in self.items.iter().filter(|i| i.stored) {
            match holders.get(&item.pos) {
                None => self.report.items_lost += 1,
                Some(hs) => {
                    if self.ideal_set(item.pos).iter().all(|h| hs.contains(h)) {
                        complete += 1;
                    }
                }
            }
        }
        self.report.registrations_missing_end = (0..self.users.len())
            .filter(|u| self.users[*u].registered && !holders.contains_key(&self.users[*u].pos))
            .count() as u64;
        let alive = self.report.items_stored.saturating_sub(self.report.items_lost);
        self.report.replication_complete = if alive == 0 {
            1.0
        } else {
            complete as f64 / alive as f64
        };
        // Ring consistency: first successor and predecessor match the truth.
        let ring: Vec<(u128, Host)> = self.ring.iter().map(|(p, h)| (*p, *h)).collect();
        let mut consistent = 0usize;
        for (i, (_, h)) in ring.iter().enumerate() {
            let succ = ring[(i + 1) % ring.len()].1;
            let pred = ring[(i + ring.len() - 1) % ring.len()].1;
            let Some(n) = self.nodes[*h as usize].as_ref() else {
                continue;
            };
            let t = n.core.engine().topology();
            let want_succ = self.nodes[succ as usize].as_ref().map(|n| n.core.engine().node_id());
            let want_pred = self.nodes[pred as usize].as_ref().map(|n| n.core.engine().node_id());
            let single = ring.len() == 1;
            if single
                || (t.successors().first().copied() == want_succ && t.predecessors().first().copied() == want_pred)
            {
                consistent += 1;
            }
        }
        self.report.ring_consistent = if ring.is_empty() {
            0.0
        } else {
            consistent as f64 / ring.len() as f64
        };
        self.report.live_peers_end = ring.len();
        self.report.partitions_found = self.partitions_found_by_gone
            + self
                .nodes
                .iter()
                .flatten()
                .map(|n| n.core.engine().topology().partitions_found())
                .sum::<u64>();
        let measured_s = self.cfg.duration_s as f64;
        let avg_peers = if measured_s > 0.0 {
            self.peer_ms as f64 / (measured_s * 1000.0)
        } else {
            self.live_count as f64
        };
        self.report.finish(measured_s, avg_peers, wall_s);
        self.report
    }
}

/// When the i-th peer (from 0) joins while the ring is built: at the
/// steady rate, but no earlier than the growth limit allows.
fn join_time_ms(i: usize, rate_per_s: f64, growth_per_s: f64) -> u64 {
    let steady = i as f64 / rate_per_s;
    let grown = if growth_per_s > 0.0 && i > 0 {
        (i as f64).ln() / growth_per_s
    } else {
        0.0
    };
    (steady.max(grown) * 1000.0) as u64
}

fn user_name(host: Host) -> String {
    format!("user{host}@sim.p2psip.invalid")
}

pub(crate) fn lookup_found(outcome: &Result<Body, RequestFailure>, value: &[u8]) -> bool {
    let Ok(Body::FetchAns(ans)) = outcome else { return false };
    ans.kind_responses.iter().any(|k| {
        k.values.iter().any(|v| match &v.value {
            StoredDataValue::SingleValue(d) => d.exists && d.value == value,
            _ => false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::join_time_ms;

    #[test]
    fn joins_follow_the_steady_rate_once_the_growth_limit_allows() {
        // 20 % a second: the second peer waits ln 2 / 0.2 = 3.47 s.
        assert_eq!(join_time_ms(0, 100.0, 0.2), 0);
        assert_eq!(join_time_ms(1, 100.0, 0.2), 10);
        assert_eq!(join_time_ms(2, 100.0, 0.2), 3465);
        // Past the crossover the steady rate rules: peer 5000 at 50 s.
        assert_eq!(join_time_ms(5000, 100.0, 0.2), 50_000);
        // No limit: the steady rate from the start.
        assert_eq!(join_time_ms(2, 100.0, 0.0), 20);
    }
}
