//! [`SipService`]: the SIP side of a peer as one sans-IO state machine:
//! the registrar (RFC 3261 §10) whose changes are stored in the overlay
//! (RFC 7904 §3), the proxy (§16) whose lookups the overlay answers (RFC
//! 7904 §4.2), REGISTER transactions (§17.2), and load shedding before any
//! work (decision 0029). A driver feeds it SIP messages with their flow
//! and how long they waited to be read, and carries out its
//! [`SipOutput`]s: messages to send, Stores and lookups for the overlay
//! (the peer core's [`Input::Publish`](crate::Input::Publish) and
//! [`Input::Locate`](crate::Input::Locate)), and what to count and log.
//!
//! It is a part of the peer core of its own so that a driver may run it
//! on another thread than the overlay (decision 0031): what passes
//! between the two is these typed requests and answers.

mod peer_ids;

pub use peer_ids::{check_presented, PeerIds};

use crate::sip_usage::{resource_name, Located, PublishError};
use reload_wire::NodeId;
use sip::intake::Intake;
use sip::message::ParseError;
use sip::proxy::{stamp_received, Location, Observation, Output, Outsiders, Proxy, Reach, Side};
use sip::registrar::{self, Flow, Registered, Registrar};
use sip::server_location::{Answer, Query};
use sip::transaction::{Arrival, ServerTransactions, TransactionKey};
use sip::SipMessage;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// How often registrations, REGISTER transactions and the like are
/// expired, in ms.
pub const EXPIRY_INTERVAL_MS: u64 = 1_000;
/// How often a phone behind a NAT gets an OPTIONS that keeps its NAT
/// binding open ([`sip::proxy::Proxy::keep_nat_open`]), by default: under
/// the 30 s many home routers keep an idle UDP binding.
pub const NAT_KEEPALIVE_MS: u64 = 25_000;
/// Keepalives a flow may leave unanswered (nothing at all heard from it
/// since) before it gets no more: a phone gone, or an address that was
/// never a phone's (a REGISTER from a forged source), is not pinged for
/// as long as its binding lives. Anything the flow sends resumes them.
pub const MAX_UNANSWERED_KEEPALIVES: u32 = 3;

/// What happens to the SIP side.
#[derive(Debug)]
pub enum SipInput<'a> {
    /// A message read from `flow` on `side`, which waited `waited_ms`
    /// between its arrival and now (when known).
    Message {
        bytes: &'a [u8],
        flow: Flow,
        side: Side,
        waited_ms: Option<u64>,
    },
    /// The overlay's answer to [`SipOutput::Publish`].
    Published {
        token: u64,
        result: Result<(), PublishError>,
    },
    /// The overlay's answer to [`SipOutput::Locate`].
    Located { token: u64, located: Located },
    /// A TCP or TLS connection to `flow` could not be opened, or broke.
    FlowFailed { flow: Flow },
    /// The DNS's answer to [`SipOutput::Resolve`]; `None` when the lookup
    /// failed (no answer, a server failure), as opposed to an empty one
    /// (no such name or record).
    Resolved {
        token: u64,
        query: &'a Query,
        answer: Option<Answer>,
    },
}

/// What the SIP side asks of its driver.
#[derive(Debug)]
pub enum SipOutput {
    /// Send `bytes` over `flow`. A TLS connection to open there must
    /// present `peer`'s Node-ID, when known (decision 0027), or be a
    /// server of the SIP `domain` (another domain's, RFC 5922 §4).
    Send {
        flow: Flow,
        bytes: Vec<u8>,
        peer: Option<NodeId>,
        domain: Option<String>,
    },
    /// Store `user`'s registration for `lifetime_s` (0: remove it); answer
    /// with [`SipInput::Published`] and `token`.
    Publish {
        resource_name: String,
        lifetime_s: u32,
        token: u64,
    },
    /// Find `user`'s phones; answer with [`SipInput::Located`].
    Locate { resource_name: String, token: u64 },
    /// Find where these peers' SIP listens (the overlay's proxy peers,
    /// decision 0036); answer with [`SipInput::Located`], the peers that
    /// answered in this order.
    LocatePeers { peers: Vec<NodeId>, token: u64 },
    /// Ask the DNS (RFC 3263, for a request to another domain); answer
    /// with [`SipInput::Resolved`].
    Resolve { query: Query, token: u64 },
    /// A peer's SIP address could not be reached: the overlay side should
    /// ask its peer again rather than reuse it.
    Unreachable { address: SocketAddr },
    /// Messages for `advertised` may go over the open connection of
    /// `connection` while it lasts (connection reuse toward another
    /// domain's server that connected here over TLS).
    Alias { advertised: Flow, connection: Flow },
    /// For metrics and logs.
    Event(SipEvent),
}

/// What the operator sees of the SIP side: counted, and logged within
/// budgets.
#[derive(Debug)]
pub enum SipEvent {
    /// A request arrived, counted by method: one SIP knows, or `other`
    /// (so a flood of made-up methods cannot grow a metric's label set).
    Request { method: &'static str },
    /// A message that does not parse, from `flow`.
    Malformed { error: ParseError, flow: Flow },
    /// A new request refused with 503 for overload.
    Shed,
    /// Credentials naming `user` did not verify.
    AuthFailed {
        user: String,
        remote: SocketAddr,
        what: &'static str,
    },
    /// What the proxy saw (calls started, answered, ended).
    Observed(Observation),
    /// `user`'s bindings are stored in the overlay: `contacts` of them for
    /// up to `lifetime_s`; `changed` unless it was a refresh.
    Registered {
        user: String,
        contacts: usize,
        lifetime_s: u32,
        flow: Flow,
        changed: bool,
    },
    /// The overlay did not take `user`'s registration; the phone got 500.
    NotStored { user: String, why: String },
    /// `user`'s last binding expired.
    Expired { user: String },
}

/// Whether a message's Contact is a dialog's remote target (RFC 3261
/// §12.1, RFC 6665, RFC 3515, RFC 3311): a request that makes or
/// refreshes a dialog, or its provisional or 2xx answer. Not a REGISTER's
/// (the binding keeps the phone's own words, and de-registration must
/// name them) nor a 3xx's (where to redirect to).
fn sets_remote_target(message: &SipMessage) -> bool {
    const TARGET_REFRESH: [&str; 5] = ["INVITE", "SUBSCRIBE", "NOTIFY", "REFER", "UPDATE"];
    match message.status() {
        None => message.method().is_some_and(|m| TARGET_REFRESH.contains(&m)),
        Some(status) if status < 300 => message
            .cseq()
            .is_some_and(|(_, m)| TARGET_REFRESH.contains(&m.as_str())),
        Some(_) => false,
    }
}

/// How a request's method is counted: by name if SIP knows it, else as
/// `other`, so a flood of made-up methods cannot grow a label set.
pub fn counted_method(method: &str) -> &'static str {
    sip::message::KNOWN_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// A map that keeps at most [`MAX_REMEMBERED`] entries: past it the
/// oldest go.
struct Bounded<K, V> {
    by_key: HashMap<K, V>,
    order: VecDeque<K>,
}

/// Entries a [`Bounded`] map keeps.
const MAX_REMEMBERED: usize = 4096;

impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Bounded {
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy, V: PartialEq> Bounded<K, V> {
    /// Whether `key` now maps to a value it did not map to before.
    fn learn(&mut self, key: K, value: V) -> bool {
        match self.by_key.insert(key, value) {
            None => self.order.push_back(key),
            Some(old) if Some(&old) == self.by_key.get(&key) => return false,
            Some(_) => {}
        }
        while self.order.len() > MAX_REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.by_key.remove(&oldest);
            }
        }
        true
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.by_key.get(key)
    }
}

/// Which other SIP domain each TLS server address the proxy sent to is
/// a server of, so that a connection opened there checks that name (RFC
/// 5922 §4).
type TlsDomains = Bounded<SocketAddr, String>;

/// How a peer was started for interworking (decision 0036).
#[derive(Debug, Clone, Default)]
pub struct InterworkingRole {
    /// This peer's Node-ID, to find it among the configuration's proxy
    /// peers.
    pub me: Option<NodeId>,
    /// Made a proxy peer by its operator (`peer --proxy-peer`), with this
    /// policy for other domains' requests, whatever the configuration
    /// lists.
    pub own_policy: Option<Outsiders>,
}

/// A REGISTER waiting for its Store in the overlay.
struct Registering {
    request: SipMessage,
    user: String,
    lifetime_s: u32,
    answer: SipMessage,
    key: Option<TransactionKey>,
    flow: Flow,
    changed: bool,
}

/// The registrar, proxy and REGISTER transactions of one peer.
pub struct SipService {
    registrar: Registrar,
    proxy: Proxy,
    /// REGISTER transactions (the proxy keeps its own).
    registers: ServerTransactions,
    /// Refuses new work that waited too long to be read (issue 36 §6).
    shedder: sip::overload::Shedder,
    /// The same for requests from other peers, with a larger budget.
    peers_shedder: sip::overload::Shedder,
    /// Which peer each SIP address between peers belongs to.
    peer_ids: PeerIds,
    /// Which other domain each TLS server address belongs to.
    tls_domains: TlsDomains,
    /// The overlay's proxy peers other than this one, in the
    /// configuration's order (decision 0036).
    proxy_peers: Vec<NodeId>,
    /// How this peer was started for interworking.
    role: InterworkingRole,
    /// TLS connections in and the one address each sender listens on
    /// that was told to the driver (one each, so the driver's table grows
    /// with connections, not with what senders claim).
    aliases: Bounded<Flow, Flow>,
    registering: HashMap<u64, Registering>,
    next_token: u64,
    next_expiry: u64,
    /// Keepalives to phones behind NATs: every so often, or never.
    nat_keepalive_ms: Option<u64>,
    next_nat_keepalive: u64,
    /// Keepalives sent to each flow since it last sent anything.
    keepalives_unanswered: HashMap<Flow, u32>,
    outputs: VecDeque<SipOutput>,
}

impl SipService {
    /// `seed` varies the proxy's branches and the shedders' draws.
    pub fn new(registrar: Registrar, proxy: Proxy, seed: u64) -> Self {
        SipService {
            registrar,
            proxy,
            registers: ServerTransactions::new(),
            shedder: sip::overload::Shedder::new(sip::overload::QUEUE_AGE_BUDGET_MS, seed),
            peers_shedder: sip::overload::Shedder::new(sip::overload::PEERS_QUEUE_AGE_BUDGET_MS, !seed),
            peer_ids: PeerIds::default(),
            tls_domains: TlsDomains::default(),
            proxy_peers: Vec::new(),
            role: InterworkingRole::default(),
            aliases: Bounded::default(),
            registering: HashMap::new(),
            next_token: 0,
            next_expiry: 0,
            nat_keepalive_ms: Some(NAT_KEEPALIVE_MS),
            next_nat_keepalive: NAT_KEEPALIVE_MS,
            keepalives_unanswered: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// Phones behind NATs get a keepalive every `interval_ms` (`None`:
    /// never), instead of every [`NAT_KEEPALIVE_MS`].
    pub fn with_nat_keepalive(mut self, interval_ms: Option<u64>) -> Self {
        self.nat_keepalive_ms = interval_ms.filter(|ms| *ms > 0);
        self.next_nat_keepalive = self.nat_keepalive_ms.unwrap_or(0);
        self
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Open transactions: the proxy's servers and clients and the
    /// REGISTERs'.
    pub fn transactions(&self) -> usize {
        let (servers, clients) = self.proxy.transaction_count();
        servers + clients + self.registers.len()
    }

    /// New requests refused for overload so far.
    pub fn shed(&self) -> u64 {
        self.shedder.refused() + self.peers_shedder.refused()
    }

    /// Serves exactly these users from now on; the ones no longer served,
    /// whose bindings are gone.
    pub fn set_users(&mut self, users: HashMap<String, sip::digest::Ha1>) -> Vec<String> {
        self.registrar.set_users(users)
    }

    /// How this peer was started for interworking; then
    /// [`set_proxy_peers`](Self::set_proxy_peers) with each configuration.
    pub fn with_role(mut self, role: InterworkingRole) -> Self {
        self.role = role;
        self
    }

    /// The overlay's proxy peers, in the configuration's order, and which
    /// users of the overlay they let other domains reach (decision 0036).
    /// A listed peer sends other peers' requests for other domains out
    /// and takes other domains' requests for those users. A peer not
    /// listed sends its own users' requests for other domains to the
    /// listed ones, unless its operator made it a proxy peer of its own
    /// ([`InterworkingRole::own_policy`]), whose policy then wins.
    pub fn set_proxy_peers(&mut self, proxy_peers: &[NodeId], outsiders: &Outsiders) {
        let listed = self.role.me.is_some_and(|me| proxy_peers.contains(&me));
        self.proxy_peers = proxy_peers
            .iter()
            .copied()
            .filter(|p| Some(*p) != self.role.me)
            .collect();
        let through = !listed && self.role.own_policy.is_none() && !self.proxy_peers.is_empty();
        self.proxy.set_reach(match (listed, through) {
            (true, _) => Reach::ForPeers,
            (false, true) => Reach::ThroughProxyPeers,
            (false, false) => Reach::Direct,
        });
        let policy = match (&self.role.own_policy, listed) {
            (Some(own), _) => own.clone(),
            (None, true) => outsiders.clone(),
            (None, false) => Outsiders::Nobody,
        };
        self.proxy.set_outsiders(policy);
    }

    pub fn poll_output(&mut self) -> Option<SipOutput> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        let keepalive = self.nat_keepalive_ms.map(|_| self.next_nat_keepalive);
        [self.proxy.next_deadline(), Some(self.next_expiry), keepalive]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: u64) {
        let due = self.proxy.tick(now);
        self.proxy_outputs(due);
        if now >= self.next_expiry {
            for user in self.registrar.expire(now) {
                self.event(SipEvent::Expired { user });
            }
            self.registers.expire(now);
            self.next_expiry = now + EXPIRY_INTERVAL_MS;
        }
        if let Some(interval) = self.nat_keepalive_ms.filter(|_| now >= self.next_nat_keepalive) {
            let domain = self.registrar.domain().to_string();
            let flows = self.registrar.flows_behind_nat(now);
            // Only flows still behind a NAT are counted.
            self.keepalives_unanswered
                .retain(|flow, _| flows.iter().any(|(f, _)| f == flow));
            for (flow, contact) in flows {
                let unanswered = self.keepalives_unanswered.entry(flow).or_insert(0);
                if *unanswered >= MAX_UNANSWERED_KEEPALIVES {
                    continue;
                }
                *unanswered += 1;
                let out = self.proxy.keep_nat_open(flow, &contact, &domain);
                self.proxy_outputs(out);
            }
            self.next_nat_keepalive = now + interval;
        }
    }

    pub fn handle_input(&mut self, now: u64, input: SipInput<'_>) {
        match input {
            SipInput::Message {
                bytes,
                flow,
                side,
                waited_ms,
            } => self.message(now, bytes, flow, side, waited_ms),
            SipInput::Published { token, result } => self.published(now, token, result),
            SipInput::Located { token, located } => {
                let location = match located {
                    Located::Found { peers, here } => {
                        for p in &peers {
                            self.peer_ids.learn(p.address, p.node);
                        }
                        let peers = peers.into_iter().map(|p| p.address).collect();
                        Location::Found { peers, here }
                    }
                    Located::NotFound => Location::NotFound,
                    Located::NoPhone => Location::NoPhone,
                    Located::Unreachable(why) => Location::Unreachable(why),
                };
                let out = self.proxy.located(now, token, location, &self.registrar);
                self.proxy_outputs(out);
            }
            SipInput::Resolved { token, query, answer } => {
                let out = self.proxy.resolved(now, token, query, answer);
                self.proxy_outputs(out);
            }
            SipInput::FlowFailed { flow } => {
                self.peer_ids.forget(&flow.remote);
                self.outputs.push_back(SipOutput::Unreachable { address: flow.remote });
                let out = self.proxy.flow_failed(now, flow);
                self.proxy_outputs(out);
            }
        }
    }

    fn event(&mut self, event: SipEvent) {
        self.outputs.push_back(SipOutput::Event(event));
    }

    fn send(&mut self, flow: Flow, bytes: Vec<u8>) {
        let (peer, domain) = match flow.transport {
            // A peer's address is a peer's whatever a request named it.
            registrar::Transport::Tls => match self.peer_ids.expected(&flow.remote) {
                Some(peer) => (Some(peer), None),
                None => (None, self.tls_domains.get(&flow.remote).cloned()),
            },
            _ => (None, None),
        };
        self.outputs.push_back(SipOutput::Send {
            flow,
            bytes,
            peer,
            domain,
        });
    }

    fn proxy_outputs(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send { flow, bytes } => self.send(flow, bytes),
                Output::Locate { lookup, user } => {
                    let resource_name = resource_name(&user, self.registrar.domain());
                    self.outputs.push_back(SipOutput::Locate {
                        resource_name,
                        token: lookup,
                    });
                }
                Output::LocateProxyPeers { lookup } => {
                    self.outputs.push_back(SipOutput::LocatePeers {
                        peers: self.proxy_peers.clone(),
                        token: lookup,
                    });
                }
                Output::Resolve { lookup, query } => {
                    self.outputs.push_back(SipOutput::Resolve { query, token: lookup });
                }
                Output::TlsDomain { remote, domain } => {
                    self.tls_domains.learn(remote, domain);
                }
                Output::Observed(seen) => {
                    if let Observation::AuthFailed { user, remote } = seen {
                        self.event(SipEvent::AuthFailed {
                            user,
                            remote,
                            what: "proxy",
                        });
                    } else {
                        self.event(SipEvent::Observed(seen));
                    }
                }
            }
        }
    }

    fn shedder_of(&mut self, side: Side) -> &mut sip::overload::Shedder {
        match side {
            Side::Phones => &mut self.shedder,
            Side::Overlay => &mut self.peers_shedder,
        }
    }

    /// A message read from `flow`, which waited `waited` ms (when known)
    /// between its arrival and now.
    fn message(&mut self, now: u64, bytes: &[u8], flow: Flow, side: Side, waited: Option<u64>) {
        self.shedder_of(side).observe(now, waited);
        // The flow is alive: its keepalives may go on.
        if !self.keepalives_unanswered.is_empty() {
            self.keepalives_unanswered.remove(&flow);
        }
        let mut message = match sip::intake::intake(bytes) {
            Intake::Request(m) | Intake::Response(m) => m,
            Intake::KeepAlive => return,
            Intake::Refused { error, answer } => {
                self.event(SipEvent::Malformed { error, flow });
                if let Some(answer) = answer {
                    self.send(flow, answer.to_bytes());
                }
                return;
            }
        };
        // A registered phone behind a NAT: later requests of its dialogs
        // go where its messages come from, as its registration's do.
        if side == Side::Phones
            && flow.transport == sip::registrar::Transport::Udp
            && sets_remote_target(&message)
            && self.registrar.user_on(flow, now).is_some()
        {
            sip::proxy::fix_nated_contact(&mut message, flow.remote);
        }
        if !message.is_request() {
            let out = self.proxy.on_response(now, message, flow);
            return self.proxy_outputs(out);
        }
        // One alias per connection, and never a registered phone's
        // address: its calls stay its own.
        let alias = (side == Side::Phones && self.aliases.get(&flow).is_none())
            .then(|| sip::proxy::connection_alias(&message, flow))
            .flatten()
            .filter(|a| self.registrar.user_on(*a, now).is_none());
        if let Some(advertised) = alias {
            self.aliases.learn(flow, advertised);
            self.outputs.push_back(SipOutput::Alias {
                advertised,
                connection: flow,
            });
        }
        let method = counted_method(message.method().unwrap_or_default());
        self.event(SipEvent::Request { method });
        // A retransmission of a request already taken gets its
        // transaction's answer, never a refusal (§17.2).
        let refused =
            if self.shedder_of(side).over_budget(now, waited) && !self.holds_transaction_of(now, &message, side) {
                self.shedder_of(side).refuse(now, &message, waited)
            } else {
                None
            };
        if let Some(busy) = refused {
            self.event(SipEvent::Shed);
            return self.send(flow, busy.to_bytes());
        }
        if message.method() == Some("REGISTER") && !self.registers_at_home(&message, side) {
            return self.register(now, message, flow, side);
        }
        let out = self.proxy.on_request(now, message, flow, side, &mut self.registrar);
        self.proxy_outputs(out);
    }

    /// A phone's REGISTER for an account of another domain, at that
    /// domain's registrar: the proxy takes it there (decision 0034).
    fn registers_at_home(&self, request: &SipMessage, side: Side) -> bool {
        let domain = self.registrar.domain();
        let to_another_registrar = request
            .request_uri()
            .and_then(|u| sip::uri::Uri::parse(u).ok())
            .is_some_and(|u| !u.host.eq_ignore_ascii_case(domain));
        self.proxy.sends_home(side) && to_another_registrar && sip::proxy::registers_elsewhere(request, domain)
    }

    /// Whether `request` is a retransmission of a transaction held here.
    fn holds_transaction_of(&self, now: u64, request: &SipMessage, side: Side) -> bool {
        match request.method() {
            Some("REGISTER") if !self.registers_at_home(request, side) => {
                TransactionKey::of(request).is_some_and(|k| self.registers.holds(&k))
            }
            _ => self.proxy.holds_transaction_of(now, request),
        }
    }

    fn register(&mut self, now: u64, mut request: SipMessage, flow: Flow, side: Side) {
        stamp_received(&mut request, flow.remote);
        let key = TransactionKey::of(&request);
        if let Some(key) = &key {
            match self.registers.check(now, key) {
                Arrival::New => {}
                Arrival::InProgress => return,
                Arrival::Answered(bytes) => return self.send(flow, bytes),
            }
        }
        let answer = if side == Side::Overlay && sip::proxy::registers_elsewhere(&request, self.registrar.domain()) {
            // Another peer's user's REGISTER at home, sent here as to a
            // proxy peer: this one is not (or not yet), so the sender tries
            // the next (decision 0036).
            let mut refused = registrar::answer(&request, 503, "Not A Proxy Peer");
            refused.push("Retry-After", &sip::proxy::OVERLOAD_RETRY_AFTER_S.to_string());
            refused
        } else if side == Side::Overlay {
            registrar::answer(&request, 403, "Phones Register On The Phone Side")
        } else {
            let aor_user = request
                .header("To")
                .and_then(|t| sip::headers::NameAddr::parse(&t).ok())
                .and_then(|n| n.uri.user);
            let before = aor_user.as_deref().map(|u| self.contact_set(u, now));
            match self.registrar.register(now, &request, flow) {
                Registered::Publish {
                    user,
                    lifetime_s,
                    answer,
                } => {
                    let changed = before.as_ref() != Some(&self.contact_set(&user, now));
                    if let Some(key) = &key {
                        self.registers.begin(now, key);
                    }
                    self.next_token += 1;
                    let token = self.next_token;
                    let resource_name = resource_name(&user, self.registrar.domain());
                    self.registering.insert(
                        token,
                        Registering {
                            request,
                            user,
                            lifetime_s,
                            answer,
                            key,
                            flow,
                            changed,
                        },
                    );
                    self.outputs.push_back(SipOutput::Publish {
                        resource_name,
                        lifetime_s,
                        token,
                    });
                    return;
                }
                Registered::Answer(a) => a,
                Registered::AuthFailed { user, answer } => {
                    self.event(SipEvent::AuthFailed {
                        user,
                        remote: flow.remote,
                        what: "REGISTER",
                    });
                    answer
                }
            }
        };
        let bytes = answer.to_bytes();
        // A refusal, a challenge above all, is sent statelessly (RFC 3261
        // §26.3.2.4): a retransmission is refused again, and a flood of
        // unauthenticated REGISTERs leaves nothing behind.
        if let (Some(key), true) = (&key, answer.status().is_some_and(|s| s < 400)) {
            self.registers.begin(now, key);
            self.registers.answered(now, key, &bytes, flow.transport.reliable());
        }
        self.send(flow, bytes);
    }

    /// The overlay answered a REGISTER's Store: the phone gets the
    /// registrar's answer, or 500 with Retry-After if it was not stored.
    fn published(&mut self, now: u64, token: u64, result: Result<(), PublishError>) {
        self.registrar.published();
        let Some(r) = self.registering.remove(&token) else {
            return;
        };
        let answer = match result {
            Ok(()) => {
                let contacts = r.answer.list("Contact").len();
                self.event(SipEvent::Registered {
                    user: r.user,
                    contacts,
                    lifetime_s: r.lifetime_s,
                    flow: r.flow,
                    changed: r.changed,
                });
                r.answer
            }
            Err(why) => {
                let why = why.to_string();
                let answer = registrar::store_failed(&r.request, &why);
                self.event(SipEvent::NotStored { user: r.user, why });
                answer
            }
        };
        let bytes = answer.to_bytes();
        if let Some(key) = &r.key {
            self.registers.answered(now, key, &bytes, r.flow.transport.reliable());
        }
        self.send(r.flow, bytes);
    }

    /// The contacts `user` has registered here now, for telling a change
    /// from a refresh.
    fn contact_set(&self, user: &str, now: u64) -> Vec<String> {
        let mut contacts: Vec<String> = self
            .registrar
            .contacts(user, now)
            .into_iter()
            .map(|b| b.contact.uri.to_string())
            .collect();
        contacts.sort();
        contacts
    }
}
