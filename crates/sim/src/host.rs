//! What happens at one peer: its messages, links and timers. Events of
//! different peers less than the minimum latency apart touch nothing in
//! common, so a step of that many milliseconds can be shared out among
//! threads; whatever they change outside their own peer comes back as an
//! [`Effect`], applied afterwards in an order no thread can change
//! (decision 0011).

use crate::network::{host_in, host_of, socket_of, Host};
use crate::{lookup_found, Core, Item, SimConfig, EPOCH_MS};
use overlay::sorted::SortedMap;
use overlay::{Event, RequestFailure};
use peer_core::links::{LinkEnd, LinkEvent, LinkId};
use peer_core::{Input, Output};
use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;
use reload_wire::{Body, NodeId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Lookup { item: usize },
    Store { item: usize },
}

/// One simulated peer: the daemon's sans-IO peer core (engine, SIP usage,
/// bootstrap, link table) and what the simulator keeps beside it.
pub(crate) struct SimNode {
    /// Boxed: a slot stays small, so the slots of peers that left (never
    /// reused) and the slot vector's growth cost little.
    pub core: Box<Core>,
    pub joined: bool,
    pub leaving: bool,
    pub timer_at: Option<u64>,
    /// This peer's links by number ([`link_number`]), with the host at
    /// the far end.
    pub links: SortedMap<LinkId, Host>,
    /// Connections this peer dialled, for numbering the next.
    pub dialled: u32,
    /// The simulator's own Stores and Fetches of test data.
    pub pending: BTreeMap<u64, Pending>,
    pub item: Option<usize>,
    /// Calls from the phones served here whose callee's peer is being
    /// located, by locator token.
    pub calls: BTreeMap<u64, crate::phones::Call>,
    pub next_call: u64,
    /// This peer's own draws (message loss), so they do not depend on
    /// what other peers did in the same millisecond.
    pub rng: Xoshiro256PlusPlus,
}

/// The number both ends give the `dialled`th connection `a` opened: the
/// dialling host in the high half, so numbers never repeat and no thread
/// has to hand them out.
pub(crate) fn link_number(a: Host, dialled: u32) -> LinkId {
    (u64::from(a) << 32) | u64::from(dialled)
}

#[derive(Debug)]
pub(crate) enum Ev {
    Deliver {
        to: Host,
        from: Host,
        link: LinkId,
        bytes: Vec<u8>,
    },
    /// The dialling end `a` of a new connection to `b`, dialled for `b`'s
    /// Node-ID or, with `bootstrap`, for whoever is at its address.
    LinkUp {
        a: Host,
        b: Host,
        link: LinkId,
        bootstrap: bool,
    },
    /// The accepting end `b` of the same connection, at the same time.
    LinkAccepted {
        b: Host,
        a: Host,
        link: LinkId,
    },
    /// `a`'s dial for the Node-ID of `expected` (`None`: a bootstrap
    /// address) failed. Hosts rather than Node-IDs keep events small.
    ConnectFailed {
        a: Host,
        expected: Option<Host>,
    },
    /// The link closed at `at`: the far end `peer` closed it, crashed, or
    /// a partition cut it.
    LinkDown {
        at: Host,
        peer: Host,
        link: LinkId,
    },
    Timer {
        host: Host,
    },
    Join {
        host: Host,
    },
    Depart {
        host: Host,
    },
    Lookup,
    StoreItem {
        host: Host,
        attempt: u8,
    },
    Scenario(usize),
    LeaveOne {
        remaining: usize,
        interval_ms: u64,
    },
    LeaveDeadline {
        host: Host,
    },
    Heal,
    Sample,
    /// `home` stores `user`'s registration; `refresh` keeps doing so.
    Register {
        user: usize,
        home: Host,
        refresh: bool,
    },
    /// `user`'s phone registers with another peer.
    Failover {
        user: usize,
    },
    /// A random user calls another.
    Call,
}

impl Ev {
    /// The one peer a peer event concerns; `None` for the events that
    /// look at the whole simulation (arrivals, departures, lookups…).
    pub fn host(&self) -> Option<Host> {
        match *self {
            Ev::Deliver { to, .. } => Some(to),
            Ev::LinkUp { a, .. } | Ev::ConnectFailed { a, .. } => Some(a),
            Ev::LinkAccepted { b, .. } => Some(b),
            Ev::LinkDown { at, .. } => Some(at),
            Ev::Timer { host } => Some(host),
            _ => None,
        }
    }
}

/// A change outside the peer that made it.
#[derive(Debug)]
pub(crate) enum Effect {
    Schedule(u64, Ev),
    Joined(Host),
    Rejoining(Host),
    Left(Host),
    Stored {
        item: usize,
        ok: bool,
    },
    LookedUp {
        ok: bool,
        timeout: bool,
        hops: u32,
        latency_ms: u64,
    },
    Registered {
        user: usize,
        home: Host,
        ok: bool,
    },
    /// A call's lookup ended: whether it found the callee's peer.
    Called {
        found: bool,
        started: u64,
        latency_ms: u64,
    },
}

/// Messages sent, for the report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tally {
    pub messages: u64,
    pub maintenance_msgs: u64,
    pub maintenance_bytes: u64,
    /// Messages by message code (RFC 6940 §14.8): codes below
    /// [`CODE_SLOTS`] at their own index, Error and anything else at 0.
    pub by_code: [u64; CODE_SLOTS],
}

/// Message codes counted one by one: every request and answer up to
/// exp_b_ans (0x26).
pub(crate) const CODE_SLOTS: usize = 0x27;

impl Default for Tally {
    fn default() -> Self {
        Tally {
            messages: 0,
            maintenance_msgs: 0,
            maintenance_bytes: 0,
            by_code: [0; CODE_SLOTS],
        }
    }
}

impl Tally {
    fn count(&mut self, bytes: &[u8], maintenance: bool) {
        self.messages += 1;
        if maintenance {
            self.maintenance_msgs += 1;
            self.maintenance_bytes += bytes.len() as u64;
        }
        let code = reload_wire::header::peek_message_code(bytes).map_or(0, |c| c.0 as usize);
        self.by_code[if code < CODE_SLOTS { code } else { 0 }] += 1;
    }
}

/// An event of a step with its time.
pub(crate) type Timed = (u64, Ev);

/// One millisecond of a peer's events in a step.
type Slot = VecDeque<Ev>;

/// The milliseconds `[start, end)` handled as one step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    pub start: u64,
    pub end: u64,
}

/// What handling peer events produced.
pub(crate) struct Out {
    pub now: u64,
    pub effects: Vec<Effect>,
    pub tally: Tally,
    /// The shares of a step handled, in the order handled: each share's
    /// index and how many effects (the last ones before the next share's)
    /// it made.
    pub shares: Vec<(usize, usize)>,
    /// The peer whose event is being handled.
    host: Option<Host>,
    /// When events are handled in a step: the step, and the events of one
    /// peer by millisecond, where an event at the same peer within the
    /// step (a timer due at once) joins them.
    step: Option<(Step, Vec<Slot>)>,
}

impl Out {
    /// For one event handled on its own: everything is an effect.
    pub fn direct(now: u64) -> Self {
        Out {
            now,
            effects: Vec::new(),
            tally: Tally::default(),
            shares: Vec::new(),
            host: None,
            step: None,
        }
    }

    /// Ready for `step`, keeping the buffers of earlier steps: events and
    /// effects then move into memory still in cache rather than into
    /// fresh allocations.
    pub fn begin_step(&mut self, step: Step) {
        let mut slots = self.step.take().map(|(_, slots)| slots).unwrap_or_default();
        slots.resize_with((step.end - step.start) as usize, VecDeque::new);
        // Each step writes from the start of the same buffers.
        slots.iter_mut().for_each(VecDeque::clear);
        self.step = Some((step, slots));
        self.now = step.start;
        self.effects.clear();
        self.shares.clear();
        self.tally = Tally::default();
        self.host = None;
    }

    pub fn schedule(&mut self, at: u64, ev: Ev) {
        let at = at.max(self.now);
        let in_step = self.step.as_ref().is_some_and(|(step, _)| at < step.end);
        if in_step && ev.host().is_some() && ev.host() == self.host {
            self.schedule_in_step(at, ev);
        } else {
            self.effect(Effect::Schedule(at, ev));
        }
    }

    fn schedule_in_step(&mut self, at: u64, ev: Ev) {
        if let Some((step, slots)) = &mut self.step {
            slots[(at - step.start) as usize].push_back(ev);
        }
    }

    fn next_at(&mut self, t: u64) -> Option<Ev> {
        let (step, slots) = self.step.as_mut()?;
        slots[(t - step.start) as usize].pop_front()
    }

    fn effect(&mut self, e: Effect) {
        self.effects.push(e);
    }
}

/// What peer events may read of the rest of the simulation: nothing in it
/// changes while they are handled.
pub(crate) struct View<'a> {
    pub cfg: &'a SimConfig,
    pub ids: &'a [NodeId],
    pub alive: &'a [bool],
    pub cut: Option<&'a BTreeSet<Host>>,
    pub items: &'a [Item],
}

impl View<'_> {
    pub fn split(&self, a: Host, b: Host) -> bool {
        apart(self.cut, a, b)
    }

    pub fn latency(&self, a: Host, b: Host) -> u64 {
        self.cfg.latency_ms(a, b)
    }

    fn alive(&self, h: Host) -> bool {
        self.alive.get(h as usize).copied().unwrap_or(false)
    }
}

/// Whether a partition with `cut` on one side keeps `a` and `b` apart.
pub(crate) fn apart(cut: Option<&BTreeSet<Host>>, a: Host, b: Host) -> bool {
    cut.is_some_and(|c| c.contains(&a) != c.contains(&b))
}

/// The events of one step at a range of peers (`nodes`, host `base`
/// first), sorted by peer and each peer's in time order: what a thread
/// takes at a time (decision 0018).
pub(crate) struct Share<'a> {
    pub index: usize,
    pub nodes: &'a mut [Option<SimNode>],
    pub base: Host,
    pub events: &'a mut Vec<Timed>,
}

/// Handles a share peer by peer: each peer's events in time order, with
/// the events they cause at the same peer within the step. Peers of one
/// step cannot affect one another (decision 0011), so their order does
/// not matter to them; the simulation applies the effects by peer, in
/// the order of the shares, whichever thread handled which.
pub(crate) fn handle_share(view: &View, share: Share, out: &mut Out) {
    let Share {
        index,
        nodes,
        base,
        events,
    } = share;
    let made_before = out.effects.len();
    let run_end = |events: &[Timed], start: usize| {
        let host = events.get(start).and_then(|e| e.1.host());
        start + events[start..].iter().take_while(|e| e.1.host() == host).count()
    };
    // The current peer's events, the next peer's and the one after.
    let mut run = 0;
    let mut next = run_end(events, run);
    let mut after = run_end(events, next);
    let step_end = out.step.as_ref().map(|(step, _)| step.end);
    while run < events.len() {
        let (end, after_end) = (next, run_end(events, after));
        if let Some((_, ev)) = events.get(after) {
            prefetch(nodes, base, ev);
        }
        if let Some((_, ev)) = events.get(next) {
            prefetch_tables(nodes, base, ev);
        }
        for (_, ev) in events.get(next + 1..after).unwrap_or_default() {
            hint_message(ev);
        }
        let first_ms = events[run].0;
        for (t, ev) in &mut events[run..end] {
            out.schedule_in_step(*t, std::mem::replace(ev, Ev::Sample));
        }
        for t in first_ms..step_end.unwrap_or(first_ms + 1) {
            while let Some(ev) = out.next_at(t) {
                out.now = t;
                out.host = ev.host();
                handle(view, nodes, base, ev, out);
            }
        }
        (run, next, after) = (end, after, after_end);
    }
    events.clear();
    out.shares.push((index, out.effects.len() - made_before));
}

/// Most cache lines of one table [`prefetch_tables`] asks for: 2 KB, a
/// routing table of 64 peers. A larger table is hinted from its start only.
const TABLE_LINES: usize = 32;

/// The second stage of [`prefetch`], one peer later. The peer's slot is
/// in cache by now, so its tables' addresses are read without a stall,
/// and the tables (links, routing table) start loading while the peer
/// before is handled.
fn prefetch_tables(nodes: &[Option<SimNode>], base: Host, ev: &Ev) {
    let Some(Some(node)) = slot(nodes, base, ev) else {
        return;
    };
    let mut table = |start: *const u8, len: usize| hint_lines(start, len.min(TABLE_LINES * 64));
    let (start, len) = overlay::topology::memory_span(node.links.as_slice());
    table(start, len);
    node.core.hot_memory(&mut table);
}

/// The slot of the peer `ev` happens at, if it is among `nodes`.
fn slot<'a>(nodes: &'a [Option<SimNode>], base: Host, ev: &Ev) -> Option<&'a Option<SimNode>> {
    ev.host()
        .and_then(|h| h.checked_sub(base))
        .and_then(|i| nodes.get(i as usize))
}

/// Asks the CPU to load every cache line that `len` bytes from `start`
/// touch, the first and last included however `start` is aligned.
fn hint_lines(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        if len == 0 {
            return;
        }
        let offset = start as usize % 64;
        let first = start.wrapping_sub(offset);
        for line in (0..offset + len).step_by(64) {
            // SAFETY: a prefetch is a hint: it reads nothing the program
            // sees and never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(line).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

/// Asks the CPU to start loading the peer state (and message) an event
/// will touch, so that its cache misses overlap the peer before it. At
/// 30k peers and more, nearly every event lands on a peer whose state
/// left the cache long ago; its first touches were the largest single
/// stalls in `perf annotate` (decision 0013).
fn prefetch(nodes: &[Option<SimNode>], base: Host, ev: &Ev) {
    let Some(slot) = slot(nodes, base, ev) else {
        return;
    };
    hint_lines(
        (slot as *const Option<SimNode>).cast(),
        std::mem::size_of::<Option<SimNode>>(),
    );
    hint_message(ev);
}

/// The start of a delivered message, which its peer reads first.
fn hint_message(ev: &Ev) {
    if let Ev::Deliver { bytes, .. } = ev {
        hint_lines(bytes.as_ptr(), bytes.len().min(256));
    }
}

/// One peer event.
pub(crate) fn handle(view: &View, nodes: &mut [Option<SimNode>], base: Host, ev: Ev, out: &mut Out) {
    let now_abs = EPOCH_MS + out.now;
    let Some(h) = ev.host() else { return };
    let slot = h.checked_sub(base).and_then(|i| nodes.get_mut(i as usize));
    let Some(n) = slot.and_then(|n| n.as_mut()) else {
        return;
    };
    match ev {
        Ev::Deliver { from, link, bytes, .. } => {
            if view.split(from, h) || !n.links.contains_key(&link) {
                return; // in flight when the network split or the link closed
            }
            let peer = view.ids[from as usize];
            n.core.handle_input(
                now_abs,
                Input::Link(LinkEvent::Message {
                    link,
                    peer,
                    bytes: &bytes,
                }),
            );
        }
        Ev::LinkUp { b, link, bootstrap, .. } => {
            if !view.alive(b) || view.split(h, b) {
                connect_failed(h, (!bootstrap).then_some(b), out);
                return;
            }
            let end = LinkEnd::Dialled {
                address: socket_of(b),
                expected: (!bootstrap).then(|| view.ids[b as usize]),
            };
            link_up(view, n, now_abs, link, b, end);
        }
        Ev::LinkAccepted { a, link, .. } => {
            if !view.alive(a) || view.split(a, h) {
                return;
            }
            link_up(view, n, now_abs, link, a, LinkEnd::Accepted { remote: socket_of(a) });
        }
        Ev::ConnectFailed { expected, .. } => {
            let expected = expected.and_then(|e| view.ids.get(e as usize).copied());
            n.core.handle_input(now_abs, Input::LinkFailed { expected });
        }
        Ev::LinkDown { peer, link, .. } => {
            if n.links.remove(&link).is_none() {
                return;
            }
            let peer = view.ids[peer as usize];
            let why = "the far end went away";
            n.core
                .handle_input(now_abs, Input::Link(LinkEvent::Closed { link, peer, why }));
        }
        Ev::Timer { .. } => {
            if n.timer_at != Some(out.now) {
                return;
            }
            n.timer_at = None;
            n.core.handle_timeout(now_abs);
        }
        _ => return,
    }
    drive(view, n, h, out);
}

/// Carries out a peer's outputs and re-arms its timer.
pub(crate) fn drive(view: &View, n: &mut SimNode, h: Host, out: &mut Out) {
    let now = out.now;
    while let Some(output) = n.core.poll_output(EPOCH_MS + now) {
        match output {
            Output::Send {
                link,
                bytes,
                maintenance,
            } => send(view, n, h, link, bytes, maintenance, out),
            Output::Connect { peer, address } => {
                let link = link_number(h, n.dialled);
                n.dialled = n.dialled.wrapping_add(1);
                connect(view, h, link, peer, &address, out);
            }
            Output::CloseLink { link } => {
                if let Some(p) = n.links.remove(&link) {
                    out.schedule(now + view.latency(h, p), Ev::LinkDown { at: p, peer: h, link });
                }
            }
            Output::Event(e) => on_event(view, n, h, e, out),
            Output::Published { token, result } => out.effect(Effect::Registered {
                user: token as usize,
                home: h,
                ok: result.is_ok(),
            }),
            Output::Located { token, located } => {
                let Some(call) = n.calls.remove(&token) else { continue };
                out.effect(Effect::Called {
                    found: crate::phones::found_callee(&located, h, call.callee_home),
                    started: call.started,
                    latency_ms: now - call.started,
                });
            }
            // No multicast discovery, no operator, no account changes,
            // no NATs (so no STUN servers asked, no ICE) in the simulation.
            Output::Link(_)
            | Output::Multicast { .. }
            | Output::DiscoveryAnswer { .. }
            | Output::Datagram { .. }
            | Output::LinkOverIce(_)
            | Output::AccountsStored { .. } => {}
        }
    }
    let next = n.core.poll_timeout().map(|t| t.saturating_sub(EPOCH_MS).max(now));
    if next.is_some() && next != n.timer_at {
        n.timer_at = next;
        out.schedule(next.unwrap_or(now), Ev::Timer { host: h });
    }
}

fn send(view: &View, n: &mut SimNode, from: Host, link: LinkId, bytes: Vec<u8>, maintenance: bool, out: &mut Out) {
    out.tally.count(&bytes, maintenance);
    let Some(&to) = n.links.get(&link) else {
        return; // closed here; the core no longer routes on it
    };
    if !view.alive(to) || view.split(from, to) {
        // Crashed or cut off: the write goes nowhere, while this peer
        // learns of it only after the detection time (`LinkDown`).
        return;
    }
    if view.cfg.loss > 0.0 && n.rng.random_bool(view.cfg.loss) {
        return;
    }
    out.schedule(out.now + view.latency(from, to), Ev::Deliver { to, from, link, bytes });
}

fn connect(
    view: &View,
    a: Host,
    link: LinkId,
    peer: Option<NodeId>,
    address: &reload_wire::IpAddressPort,
    out: &mut Out,
) {
    let target = host_of(address).filter(|b| view.alive(*b));
    let target = target.filter(|b| peer.is_none_or(|p| host_in(&p) == *b));
    match target {
        Some(b) if b != a && !view.split(a, b) => {
            // TCP + TLS: about two round trips.
            let t = out.now + 4 * view.latency(a, b);
            out.schedule(t, Ev::LinkAccepted { b, a, link });
            let bootstrap = peer.is_none();
            out.schedule(t, Ev::LinkUp { a, b, link, bootstrap });
        }
        _ => connect_failed(a, peer.map(|p| host_in(&p)), out),
    }
}

/// `a`'s dial failed; it hears of it after a TCP connect timeout.
fn connect_failed(a: Host, expected: Option<Host>, out: &mut Out) {
    out.schedule(out.now + 3_000, Ev::ConnectFailed { a, expected });
}

/// A connection to `far` is up at this end.
fn link_up(view: &View, n: &mut SimNode, now_abs: u64, link: LinkId, far: Host, end: LinkEnd) {
    n.links.insert(link, far);
    let peer = view.ids[far as usize];
    n.core
        .handle_input(now_abs, Input::Link(LinkEvent::Up { link, peer, end }));
}

fn on_event(view: &View, n: &mut SimNode, h: Host, e: Event, out: &mut Out) {
    match e {
        Event::Joined => {
            if !n.joined {
                n.joined = true;
                out.effect(Effect::Joined(h));
            }
        }
        Event::Rejoining { .. } => {
            n.joined = false;
            out.effect(Effect::Rejoining(h));
        }
        Event::Left => out.effect(Effect::Left(h)),
        Event::Done {
            request,
            outcome,
            hops,
            latency_ms,
            ..
        } => match n.pending.remove(&request) {
            Some(Pending::Store { item }) => {
                let ok = matches!(outcome, Ok(Body::StoreAns(_)));
                out.effect(Effect::Stored { item, ok });
            }
            Some(Pending::Lookup { item }) => {
                let ok = lookup_found(&outcome, &view.items[item].value);
                let timeout = matches!(outcome, Err(RequestFailure::Timeout));
                out.effect(Effect::LookedUp {
                    ok,
                    timeout,
                    hops,
                    latency_ms,
                });
            }
            None => {}
        },
        // Simulated peers never share a Node-ID, so nobody refuses one,
        // and they take no configuration updates; the core runs ICE
        // attaches itself.
        Event::Reconfigured { .. }
        | Event::IceAttach(_)
        | Event::ConfigurationRefused { .. }
        | Event::ConfigurationStale { .. }
        | Event::PeerAddress { .. }
        | Event::Refused { .. }
        | Event::ReplicaPushFailed { .. }
        | Event::Misbehaving { .. } => {}
    }
}
