//! The stateful proxy every peer runs for the phones attached to it —
//! RFC 3261 §16 with the transactions of §17, RFC 7904 §4.2 for where
//! requests go.
//!
//! A request from a phone for `sip:user@overlay-domain` is authorized
//! (registered flow or proxy digest), then the driver is asked to locate
//! the user ([`Output::Locate`]: Fetch of the SIP-REGISTRATION and
//! AppAttach); it goes to the peers that hold the user's phones over
//! their overlay-side listener. A request arriving there is delivered to
//! the user's local contacts: parallel forking, the first 2xx wins and
//! the other branches are cancelled (§16.7 step 10). Every peer on the
//! way record-routes itself twice, once per side (RFC 5658), so that the
//! dialog's later requests follow the same peers and each hop keeps its
//! own transport.
//!
//! Sans-IO: time comes in as `now` (ms), randomness as a seed, and the
//! proxy returns what to send; the driver owns sockets and the overlay.

mod dialog_proof;
mod finished;
mod home_registration;
mod identity;
mod nat_keepalive;
mod observation;
mod other_domains;
mod route;
mod setup_budget;
#[cfg(test)]
mod tests;

pub use home_registration::registers_elsewhere;
pub use observation::{Observation, MAX_NAME};
pub use other_domains::{Interworking, Outsiders, Reach, SILENT_HOP_MS};
pub use route::{
    connection_alias, fix_nated_contact, host_ip, response_flow, stamp_received, uri_flow, Interfaces, Side,
};
pub use setup_budget::{MAX_SILENT_PER_PHONE, SETUP_WAIT_MS};

use crate::capacity::GiveBack;
use crate::headers::{NameAddr, Via};
use crate::message::{SipMessage, StartLine};
use crate::registrar::{Flow, Registrar, Transport};
use crate::server_location::Query;
use crate::transaction::{TransactionKey, T1_MS};
use crate::uri::Uri;
use dialog_proof::{DialogKey, Hop};
use finished::{Afterlife, Finished};
use other_domains::OutsideHops;
use route::{pop_own_routes, top_route};
use setup_budget::SetupBudget;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

/// RFC 3261 §17.1.2.2: T2, the longest retransmission interval.
pub const T2_MS: u64 = 4_000;
/// T4: how long the network may hold a message.
pub const T4_MS: u64 = 5_000;
/// Timers B, F, H, J and M: 64·T1.
pub const TRANSACTION_TIMEOUT_MS: u64 = 64 * T1_MS;
/// Timer C (§16.8): an INVITE branch that rings longer is cancelled.
pub const TIMER_C_MS: u64 = 180_000;
/// Seconds a 503 for overload asks the sender to wait (RFC 3261 §21.5.4).
pub const OVERLOAD_RETRY_AFTER_S: u32 = 5;
/// Max-Forwards a proxy writes when the request has none (§16.6 step 3).
pub const DEFAULT_MAX_FORWARDS: u32 = 70;
/// Most server transactions still working on their request (Locating,
/// Proceeding), each holding it and its branches' copies, a few KB; past
/// it new requests get 503 (requests inside a dialog past a quarter
/// more), so a flood cannot grow memory without bound.
pub const MAX_OPEN_SERVER_TRANSACTIONS: usize = 50_000;
/// Most server transactions that sent a final non-2xx to an INVITE and
/// wait for its ACK (Timers G and H: a failed call's, a few hundred
/// bytes each). Past it the longest waiting is forgotten early: that only
/// shortens how long retransmissions are absorbed, as a proxy with a
/// shorter wait timer does, and new calls are still served.
pub const MAX_FINISHED_SERVER_TRANSACTIONS: usize = 250_000;
/// Bytes the finished transactions may hold ([`finished`]): about 190
/// per transaction and what it resends, about 850 per call over UDP. 32
/// MiB keeps every call's for the whole 32 s of Timers J, L and M up to
/// about 1,200 calls/s, and for 16 s at 2,500 calls/s; past it the
/// oldest go first, as a proxy with a shorter wait timer does.
pub const MAX_FINISHED_BYTES: usize = 32 << 20;

/// Calls whose callee the overlay is being asked for at once (each an
/// overlay Fetch, maybe AppAttaches): past it a new call from a phone is
/// answered 503 with Retry-After before its credentials are even checked
/// (issue 36 §6: shed load early, never queue it without limit).
pub const MAX_LOCATING: usize = 2_048;

/// Calls being set up at once: INVITEs outside a dialog that no next hop
/// has taken yet (being looked up, or forwarded with no provisional
/// response back, not even a 100, for at most [`SETUP_WAIT_MS`]). At a sustainable rate a call spends
/// milliseconds there; when the peers behind fall behind, calls pile up
/// here first, and past the budget
/// new calls get 503 with Retry-After at once rather than join the queue
/// (issue 36 §6; decision 0029). 512 is 200 ms of calls at 2,500 calls/s,
/// the most a pair of peers sustains on the machine measured.
pub const MAX_CALLS_SETTING_UP: usize = 512;

/// How many server transactions a proxy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionLimits {
    /// See [`MAX_OPEN_SERVER_TRANSACTIONS`].
    pub open: usize,
    /// See [`MAX_FINISHED_SERVER_TRANSACTIONS`].
    pub finished: usize,
    /// See [`MAX_LOCATING`].
    pub locating: usize,
    /// See [`MAX_CALLS_SETTING_UP`].
    pub setting_up: usize,
    /// See [`MAX_SILENT_PER_PHONE`].
    pub silent_per_phone: usize,
    /// See [`MAX_FINISHED_BYTES`].
    pub finished_bytes: usize,
}

impl Default for TransactionLimits {
    fn default() -> Self {
        TransactionLimits {
            open: MAX_OPEN_SERVER_TRANSACTIONS,
            finished: MAX_FINISHED_SERVER_TRANSACTIONS,
            locating: MAX_LOCATING,
            setting_up: MAX_CALLS_SETTING_UP,
            silent_per_phone: MAX_SILENT_PER_PHONE,
            finished_bytes: MAX_FINISHED_BYTES,
        }
    }
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `bytes` over `flow`: a UDP datagram from the phone-side
    /// socket, or on the TCP connection to `flow.remote` (opened when
    /// there is none; report a failure with [`Proxy::flow_failed`]).
    Send { flow: Flow, bytes: Vec<u8> },
    /// Find the peers that hold `user`'s phones (RFC 7904 §4.2), then
    /// call [`Proxy::located`] with `lookup`.
    Locate { lookup: u64, user: String },
    /// Find the overlay's proxy peers (decision 0036) for a request to
    /// another domain, then call [`Proxy::located`] with `lookup` and the
    /// ones that answered, in the configuration's order.
    LocateProxyPeers { lookup: u64 },
    /// Ask the DNS `query` (RFC 3263, for a request to another domain),
    /// then call [`Proxy::resolved`] with `lookup`.
    Resolve { lookup: u64, query: Query },
    /// A TLS connection to `remote` is to a server of `domain`: its
    /// certificate must name that domain (RFC 5922 §4), not a Node-ID.
    TlsDomain { remote: SocketAddr, domain: String },
    /// For the operator's eyes only; nothing to do.
    Observed(Observation),
}

/// Where the overlay says a user's phones are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The overlay-side SIP addresses of the other peers holding the
    /// user's phones; `here` when this peer holds some too.
    Found { peers: Vec<SocketAddr>, here: bool },
    /// The overlay holds no registration for the user, and no certificate
    /// either: nobody by that name is enrolled (404).
    NotFound,
    /// The user is enrolled (the overlay holds its certificate, RFC 6940
    /// §8) but no phone of theirs is registered (480).
    NoPhone,
    /// A registration exists but no peer holding it answered.
    Unreachable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerRef {
    Server(u64),
    Client(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// Waiting for the location lookup.
    Locating,
    /// Branches are out; no final response sent yet.
    Proceeding,
    /// A final non-2xx was sent; an INVITE waits for its ACK (§17.2.1).
    /// Every other final response makes the transaction [`finished`].
    Completed,
}

/// A server transaction. Once its final response has gone upstream it
/// keeps only what Timers G, H, I, J and L need: its key, where to
/// resend and at most the bytes to resend. At a few thousand calls per
/// second over UDP, tens of thousands of transactions sit in those
/// timers, so the request itself goes at once.
struct ServerTxn {
    key: TransactionKey,
    from: Flow,
    side: Side,
    invite: bool,
    state: ServerState,
    /// While no final response has been sent (Locating, Proceeding).
    open: Option<Box<OpenServer>>,
    /// What was last sent upstream, resent to a retransmitted request: a
    /// provisional while open, a non-INVITE's final response, or an
    /// INVITE's non-2xx until its ACK. None in Accepted: RFC 6026 §7.1
    /// absorbs a retransmitted INVITE there, the callee resends its 2xx.
    last_sent: Option<Box<[u8]>>,
    /// Timer G: retransmit `last_sent` (a final non-2xx to an INVITE over UDP).
    retransmit_at: Option<u64>,
    retransmit_every: u64,
    /// Timers H, I, J, L, or the lookup deadline.
    forget_at: u64,
    /// When its entry in [`Proxy::timers`] is due; `u64::MAX` for none.
    timer_at: u64,
}

/// What a server transaction needs until its final response.
struct OpenServer {
    request: SipMessage,
    branches: Vec<u64>,
    /// The best final response of the finished branches (§16.7 step 6).
    best: Option<SipMessage>,
    /// The lookup this transaction waits for.
    lookup: Option<u64>,
    /// For an INVITE outside a dialog: the call it starts.
    call: Option<CallSetup>,
    /// For a request outside a dialog: where later requests of the dialog
    /// it may start go back toward the caller (named in the proof).
    toward_caller: Vec<Hop>,
    /// For a request to another domain: its next hops (RFC 3263).
    outside: Option<Box<OutsideHops>>,
}

/// A call's INVITE, until its final answer.
struct CallSetup {
    call_id: String,
    started_ms: u64,
    /// A ringing or an answer has gone back already.
    progressed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// Sent; nothing back yet (Calling / Trying).
    Trying,
    /// A provisional response arrived.
    Proceeding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    No,
    /// Wanted, sent as soon as a provisional response arrives (§9.1).
    Wanted,
    Sent,
}

/// A client transaction until its final response; then it is
/// [`finished`].
struct ClientTxn {
    /// The server transaction this branch belongs to; `None` for a CANCEL
    /// this proxy sends on its own.
    server: Option<u64>,
    branch: String,
    method: String,
    /// The request as sent: retransmitted, cancelled or answered
    /// locally from it.
    request: Option<Box<SipMessage>>,
    flow: Flow,
    state: ClientState,
    retransmit_at: Option<u64>,
    retransmit_every: u64,
    /// Timer B/F, then Timer C for a proceeding INVITE.
    timeout_at: u64,
    cancel: Cancel,
    /// Where the server transaction's request came from: a 2xx goes
    /// there even once the server transaction is finished (RFC 6026).
    upstream: Option<Flow>,
    /// For an INVITE to a phone: the phone's address.
    phone: Option<SocketAddr>,
    /// Counted among the phone's silent INVITEs in [`SetupBudget`]
    /// until the first response.
    silent: bool,
    /// An INVITE of a call in setup: when its silence takes the call out
    /// of the setup budget ([`SETUP_WAIT_MS`]) and counts against its
    /// phone.
    leaves_setup_at: Option<u64>,
    /// A next hop toward another domain that has answered nothing by then
    /// is passed over for the next ([`SILENT_HOP_MS`]).
    passed_over_at: Option<u64>,
    /// When its entry in [`Proxy::timers`] is due; `u64::MAX` for none.
    timer_at: u64,
}

impl ClientTxn {
    fn due(&self) -> u64 {
        [self.retransmit_at, self.leaves_setup_at, self.passed_over_at]
            .into_iter()
            .flatten()
            .fold(self.timeout_at, u64::min)
    }
}

impl CallSetup {
    /// The call setup time, the first time a ringing or answer goes back.
    fn progress(&mut self, now: u64) -> Option<Observation> {
        if std::mem::replace(&mut self.progressed, true) {
            return None;
        }
        Some(Observation::CallProgress {
            call_id: self.call_id.clone(),
            setup_ms: now.saturating_sub(self.started_ms),
        })
    }

    /// The INVITE's final answer `code`: its setup time if nothing rang
    /// before a 2xx, then the outcome.
    fn answered(mut self, now: u64, code: u16) -> impl Iterator<Item = Observation> {
        let progress = (200..300).contains(&code).then(|| self.progress(now)).flatten();
        let answered = Observation::CallAnswered {
            call_id: self.call_id,
            code,
        };
        progress.into_iter().chain(std::iter::once(answered))
    }
}

impl ServerTxn {
    fn due(&self) -> u64 {
        self.retransmit_at.map_or(self.forget_at, |r| r.min(self.forget_at))
    }

    fn request(&self) -> Option<&SipMessage> {
        self.open.as_ref().map(|o| &o.request)
    }
}

/// One target of a forwarded request (§16.5).
struct Target {
    /// The Request-URI for this branch; `None` keeps the request's.
    request_uri: Option<String>,
    flow: Flow,
    side: Side,
    /// The user whose phone this is, for a phone of this peer.
    user: Option<String>,
}

pub struct Proxy {
    me: Interfaces,
    servers: HashMap<u64, ServerTxn>,
    server_ids: HashMap<TransactionKey, u64>,
    /// How many of `servers` are still open.
    open_servers: usize,
    setting_up: SetupBudget,
    /// Those that sent a final non-2xx to an INVITE, in that order; ids
    /// the timers forgot already are skipped.
    completed: VecDeque<u64>,
    /// Every other transaction once it is finished.
    finished: Finished,
    limits: TransactionLimits,
    clients: HashMap<u64, ClientTxn>,
    client_ids: HashMap<(String, String), u64>,
    lookups: HashMap<u64, u64>,
    /// One entry per transaction with a timer, at its earliest due time;
    /// moved when that changes, so nothing stale piles up behind Timer C.
    timers: BTreeSet<(u64, TimerRef)>,
    next_id: u64,
    salt: u64,
    dialog_key: DialogKey,
    interworking: Interworking,
    out: Vec<Output>,
}

impl Proxy {
    /// `seed` makes branches and tags unique to this run of the peer.
    pub fn new(me: Interfaces, seed: u64) -> Self {
        Proxy {
            me,
            servers: HashMap::new(),
            server_ids: HashMap::new(),
            open_servers: 0,
            setting_up: SetupBudget::default(),
            completed: VecDeque::new(),
            finished: Finished::new(MAX_FINISHED_BYTES),
            limits: TransactionLimits::default(),
            clients: HashMap::new(),
            client_ids: HashMap::new(),
            lookups: HashMap::new(),
            timers: BTreeSet::new(),
            next_id: 1,
            salt: seed,
            dialog_key: DialogKey::from_seed(seed),
            interworking: Interworking::default(),
            out: Vec::new(),
        }
    }

    /// The secret of the dialog proofs in this peer's Record-Routes
    /// ([`dialog_proof`]); by default one derived from the seed.
    pub fn with_dialog_secret(mut self, secret: [u8; 32]) -> Self {
        self.dialog_key = DialogKey::new(secret);
        self
    }

    /// Other bounds on the server transactions than the defaults.
    pub fn with_limits(mut self, limits: TransactionLimits) -> Self {
        self.limits = limits;
        self.finished = Finished::new(limits.finished_bytes);
        self
    }

    /// What this peer does for other SIP domains; by default nothing.
    pub fn with_interworking(mut self, interworking: Interworking) -> Self {
        self.interworking = interworking;
        self
    }

    /// Whether a REGISTER for another domain's registrar that arrived on
    /// `side` goes there through this proxy: a phone's, from a peer that
    /// reaches other domains itself or through a proxy peer; another
    /// peer's, at a proxy peer (decisions 0034, 0036).
    pub fn sends_home(&self, side: Side) -> bool {
        let w = &self.interworking;
        match side {
            Side::Phones => w.reach != Reach::Nowhere,
            Side::Overlay => w.reach == Reach::ForPeers,
        }
    }

    /// How this peer reaches other domains from now on (decision 0036:
    /// the configuration's proxy peers decide it).
    pub fn set_reach(&mut self, reach: Reach) {
        self.interworking.reach = reach;
    }

    /// Which users requests from other domains may reach from now on.
    pub fn set_outsiders(&mut self, outsiders: Outsiders) {
        self.interworking.outsiders = outsiders;
    }

    pub fn interfaces(&self) -> &Interfaces {
        &self.me
    }

    /// Transactions held (server, client), for metrics and tests.
    /// Whether `request` belongs to a server transaction this proxy holds
    /// (a retransmission): it gets the transaction's answer, never a
    /// refusal for overload.
    /// Whether `request` belongs to a server transaction held here, open
    /// or finished: its retransmission gets that transaction's answer,
    /// never an overload refusal.
    pub fn holds_transaction_of(&self, now: u64, request: &SipMessage) -> bool {
        TransactionKey::of(request)
            .is_some_and(|k| self.server_ids.contains_key(&k) || self.finished.get(self.server_key(&k), now).is_some())
    }

    pub fn transaction_count(&self) -> (usize, usize) {
        let (servers, clients) = self.finished.count();
        (self.servers.len() + servers, self.clients.len() + clients)
    }

    /// Bytes held by the finished transactions.
    pub fn finished_bytes(&self) -> usize {
        self.finished.bytes()
    }

    /// When [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let timers = self.timers.first().map(|(t, _)| *t);
        timers.into_iter().chain(self.finished.next_deadline()).min()
    }

    /// The key of a finished server transaction: keyed by this run's
    /// salt, so no sender can aim a key of its own at another's.
    fn server_key(&self, key: &TransactionKey) -> u64 {
        self.keyed_hash(&[b"S", key.as_str().as_bytes()])
    }

    /// The key of a finished client transaction (§17.1.3: branch and
    /// CSeq method).
    fn client_key(&self, branch: &str, method: &str) -> u64 {
        self.keyed_hash(&[b"C", branch.as_bytes(), b" ", method.as_bytes()])
    }

    fn keyed_hash(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.salt.hash(&mut h);
        for part in parts {
            h.write(part);
        }
        h.finish()
    }

    /// Server transaction `id` is finished: it leaves the open tables and
    /// keeps `afterlife` until `until` (none: forgotten at once).
    fn retire_server(&mut self, id: u64, until: Option<u64>, afterlife: Afterlife) {
        let Some(server) = self.servers.remove(&id) else {
            return;
        };
        if server.timer_at != u64::MAX {
            self.timers.remove(&(server.timer_at, TimerRef::Server(id)));
        }
        self.server_ids.remove(&server.key);
        if let Some(until) = until {
            let key = self.server_key(&server.key);
            self.finished.insert(key, until, afterlife);
        }
    }

    /// Client transaction `id` is finished, as [`retire_server`](Self::retire_server).
    fn retire_client(&mut self, id: u64, until: Option<u64>, afterlife: Afterlife) {
        let Some(client) = self.clients.remove(&id) else {
            return;
        };
        if client.timer_at != u64::MAX {
            self.timers.remove(&(client.timer_at, TimerRef::Client(id)));
        }
        if let Some(phone) = client.phone.filter(|_| client.silent) {
            self.setting_up.no_longer_silent(phone);
        }
        if let Some(until) = until {
            let key = self.client_key(&client.branch, &client.method);
            self.finished.insert(key, until, afterlife);
        }
        self.client_ids.remove(&(client.branch, client.method));
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn unique(&mut self) -> String {
        let n = self.id();
        self.to_tag(n)
    }

    /// A string no other id of this run of the peer gives: for a server
    /// transaction's id, the To tag of the responses it makes itself,
    /// derived rather than stored.
    fn to_tag(&self, id: u64) -> String {
        let mixed = (self.salt ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(17);
        format!("{mixed:016x}{id:x}")
    }

    fn send(&mut self, flow: Flow, bytes: Vec<u8>) {
        self.out.push(Output::Send { flow, bytes });
    }

    fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// Answers a request statelessly (§16.3 refusals, §8.2.6).
    fn reply(&mut self, request: &SipMessage, flow: Flow, code: u16, reason: &str) {
        let tag = self.unique();
        let answer = SipMessage::response_to(request, code, reason, Some(&tag));
        self.send(flow, answer.to_bytes());
    }

    // ----- requests ------------------------------------------------------

    /// A request that arrived on `side` over `flow`; REGISTER is the
    /// registrar's, not the proxy's. `registrar` knows this peer's users
    /// and their phones.
    pub fn on_request(
        &mut self,
        now: u64,
        mut request: SipMessage,
        flow: Flow,
        side: Side,
        registrar: &mut Registrar,
    ) -> Vec<Output> {
        stamp_received(&mut request, flow.remote);
        let Some(method) = request.method().map(str::to_string) else {
            return Vec::new();
        };
        match method.as_str() {
            "ACK" => self.on_ack(now, request, flow, side, registrar),
            "CANCEL" => self.on_cancel(now, request, flow),
            _ => self.on_new_request(now, request, flow, side, registrar),
        }
        self.take()
    }

    fn on_new_request(&mut self, now: u64, mut request: SipMessage, flow: Flow, side: Side, registrar: &mut Registrar) {
        let Some(key) = TransactionKey::of(&request) else {
            return;
        };
        if let Some(id) = self.server_ids.get(&key) {
            // §17.2.1 / §17.2.2: a retransmission gets the last response.
            if let Some(bytes) = self.servers.get(id).and_then(|s| s.last_sent.as_deref()) {
                self.send(flow, bytes.to_vec());
            }
            return;
        }
        if let Some(afterlife) = self.finished.get(self.server_key(&key), now) {
            // RFC 6026 §7.1: an Accepted INVITE absorbs its retransmissions.
            if let Afterlife::Answered { response: Some(bytes) } = afterlife {
                let bytes = bytes.to_vec();
                self.send(flow, bytes);
            }
            return;
        }
        // §16.3 request validation.
        let max_forwards = match request.header("Max-Forwards").map(|m| m.trim().parse::<u32>()) {
            None => DEFAULT_MAX_FORWARDS,
            Some(Ok(n)) => n,
            Some(Err(_)) => return self.reply(&request, flow, 400, "Bad Max-Forwards"),
        };
        if let Some(required) = request.header("Proxy-Require") {
            let required = required.trim().to_string();
            let tag = self.unique();
            let mut r = SipMessage::response_to(&request, 420, "Bad Extension", Some(&tag));
            r.push("Unsupported", &required);
            return self.send(flow, r.to_bytes());
        }
        let to_tagged = request.header("To").is_some_and(|t| NameAddr::has_tag(&t));
        // §16.4: this peer's own Route entries come off.
        let own_routes = pop_own_routes(&mut request, &self.me);
        let method = request.method().unwrap_or_default().to_string();
        let uri = match request.request_uri().map(Uri::parse) {
            Some(Ok(u)) => u,
            _ => return self.reply(&request, flow, 416, "Unsupported URI Scheme"),
        };
        // OPTIONS to the peer itself: a phone's keep-alive (§11).
        if method == "OPTIONS" && !to_tagged && uri.user.is_none() && !request.has("Route") {
            let tag = self.unique();
            let mut ok = SipMessage::response_to(&request, 200, "OK", Some(&tag));
            ok.push("Allow", ALLOW);
            return self.send(flow, ok.to_bytes());
        }
        if max_forwards == 0 {
            return self.reply(&request, flow, 483, "Too Many Hops");
        }
        if self.passed_here_before(&request) {
            return self.reply(&request, flow, 482, "Loop Detected");
        }
        // Past a budget, new work is refused before anything is done for
        // it. What finishes admitted work (in-dialog requests) has a
        // quarter more room, so a BYE still goes through when new calls
        // are refused, and memory stays bounded whatever the To tag says.
        let busy = if to_tagged {
            self.open_servers >= self.limits.open + self.limits.open / 4
        } else {
            self.open_servers >= self.limits.open
                || (method == "INVITE" && self.setting_up.len() >= self.limits.setting_up)
        };
        if busy {
            let tag = self.unique();
            let mut busy = SipMessage::response_to(&request, 503, "Service Unavailable", Some(&tag));
            busy.push("Retry-After", &OVERLOAD_RETRY_AFTER_S.to_string());
            return self.send(flow, busy.to_bytes());
        }
        // §16.5: where the request goes. A new request routed by this
        // peer's Path entry goes to the phone that registered with it.
        let routed_on = request.has("Route");
        let path_target = (own_routes.popped && !to_tagged)
            .then(|| home_registration::path_target(&self.dialog_key, &own_routes.users, routed_on, (registrar, now)))
            .flatten();
        let target = if let Some((flow, side)) = path_target {
            Some(Target {
                request_uri: None,
                flow,
                side,
                user: None,
            })
        } else if request.has("Route") && !to_tagged {
            return self.reply(&request, flow, 403, "Preloaded Route Not Accepted");
        } else if to_tagged {
            match dialog_next_hop(&request, &uri, own_routes.popped, registrar, now) {
                Ok(next) => {
                    let call_id = request.call_id().unwrap_or_default();
                    if !self.dialog_key.admits(&own_routes.proofs, &call_id, &next.hops()) {
                        // Not provably a dialog of this peer: only a user it
                        // authenticates may send it on (§16.4, §16.12).
                        if side != Side::Phones {
                            return self.reply(&request, flow, 403, "Not Routed Through This Peer");
                        }
                        if let Err(refused) = self.authenticated_caller(now, &mut request, flow, registrar, false) {
                            return self.send(flow, refused);
                        }
                    } else if side == Side::Phones {
                        identity::strip_from_phone(&mut request, registrar.domain());
                    }
                    Some(Target {
                        request_uri: None,
                        flow: next.flow,
                        side: next.side,
                        user: None,
                    })
                }
                Err(NoHop::Route) => return self.reply(&request, flow, 502, "Route Not Reachable"),
                Err(NoHop::RemoteTarget) => return self.reply(&request, flow, 502, "Remote Target Not Reachable"),
                Err(NoHop::NotOurs) => return self.reply(&request, flow, 403, "Not Routed Through This Peer"),
            }
        } else {
            None
        };
        let mut outside = None;
        let user = match (&target, registrar.user_of(&uri)) {
            (Some(_), _) => None,
            (None, Some(user)) => Some(user.to_string()),
            (None, None) if side != Side::Phones && self.interworking.reach != Reach::ForPeers => {
                // Not a proxy peer (or not yet: its configuration may lag
                // the sender's), so the sender tries the next one.
                let tag = self.unique();
                let mut refused = SipMessage::response_to(&request, 503, "Not A Proxy Peer", Some(&tag));
                refused.push("Retry-After", &OVERLOAD_RETRY_AFTER_S.to_string());
                return self.send(flow, refused.to_bytes());
            }
            (None, None) if self.interworking.reach == Reach::Nowhere => {
                return self.reply(&request, flow, 403, "Interworking With Other Domains Is Not Configured");
            }
            (None, None)
                if uri.scheme == "sips"
                    && self.interworking.reach != Reach::ThroughProxyPeers
                    && !self.interworking.tls =>
            {
                return self.reply(&request, flow, 416, "Unsupported URI Scheme");
            }
            (None, None) => match self.outside_hops(&uri) {
                Ok(hops) => {
                    outside = Some(Box::new(hops));
                    None
                }
                Err(error) => {
                    let (code, reason) = other_domains::refusal(&error);
                    return self.reply(&request, flow, code, reason);
                }
            },
        };
        let mut caller = None;
        let looked_up = user.is_some() || outside.is_some();
        if looked_up && side == Side::Phones && self.lookups.len() >= self.limits.locating {
            let tag = self.unique();
            let mut busy = SipMessage::response_to(&request, 503, "Service Unavailable", Some(&tag));
            busy.push("Retry-After", &OVERLOAD_RETRY_AFTER_S.to_string());
            return self.send(flow, busy.to_bytes());
        }
        if looked_up && side == Side::Phones {
            let outsider = match &user {
                Some(user) if other_domains::from_outsider(&request, registrar.domain()) => {
                    match &self.interworking.outsiders {
                        Outsiders::Nobody => false,
                        o if o.may_reach(user) => true,
                        _ => return self.reply(&request, flow, 403, "User Not Reachable From Other Domains"),
                    }
                }
                _ => false,
            };
            if outsider {
                // A proxy peer (decision 0034): the other domain's server
                // vouches for its caller as far as it can; nothing it says
                // of identity is taken into the overlay.
                identity::strip_from_phone(&mut request, registrar.domain());
            } else {
                match self.authenticated_caller(now, &mut request, flow, registrar, outside.is_some()) {
                    Ok(authenticated) => caller = Some(authenticated),
                    Err(refused) => return self.send(flow, refused),
                }
                if let (Some(user), true) = (&caller, method == "REGISTER") {
                    let bound = (&*registrar, user.as_str(), now);
                    let through_proxy_peer = self.interworking.reach == Reach::ThroughProxyPeers;
                    let me = (&self.me, through_proxy_peer);
                    home_registration::prepare(&mut request, me, &self.dialog_key, flow, bound);
                }
            }
        } else if method == "REGISTER" && outside.is_some() {
            // A proxy peer sends another peer's user's REGISTER home.
            home_registration::relay(&mut request, &self.me, &self.dialog_key, (flow, now));
        } else if let Some(user) = &user {
            if registrar.contacts(user, now).is_empty() {
                let (code, reason) = if registrar.serves(user) {
                    (480, "Temporarily Unavailable")
                } else {
                    (404, "Not Found")
                };
                return self.reply(&request, flow, code, reason);
            }
        }
        // §16.6 step 3.
        request.set("Max-Forwards", &(max_forwards - 1).to_string());
        let id = self.id();
        let invite = method == "INVITE";
        let toward_caller = if to_tagged {
            Vec::new()
        } else {
            dialog_proof::toward_caller(&request, flow, caller.as_deref(), registrar, now)
        };
        // §16.2: a stateful proxy answers an INVITE with 100 at once. A
        // proxy peer answers another peer's other requests for another
        // domain with 100 too (RFC 4320 §4.1 allows it over a reliable
        // transport): the sender then knows it was taken, and does not
        // send it to a second proxy peer while this one looks further.
        let taken_for_a_peer = side == Side::Overlay && outside.is_some() && flow.transport.reliable();
        let trying =
            (invite || taken_for_a_peer).then(|| SipMessage::response_to(&request, 100, "Trying", None).to_bytes());
        let mut server = ServerTxn {
            key: key.clone(),
            from: flow,
            side,
            invite,
            state: ServerState::Proceeding,
            open: Some(Box::new(OpenServer {
                call: (invite && !to_tagged).then(|| CallSetup {
                    call_id: observation::call_id(request.call_id().as_deref()),
                    started_ms: now,
                    progressed: false,
                }),
                request,
                branches: Vec::new(),
                best: None,
                lookup: None,
                toward_caller,
                outside,
            })),
            last_sent: trying.as_deref().map(Box::from),
            retransmit_at: None,
            retransmit_every: T1_MS,
            forget_at: now + TIMER_C_MS + TRANSACTION_TIMEOUT_MS,
            timer_at: u64::MAX,
        };
        if let Some(trying) = trying {
            self.send(flow, trying);
        }
        if let Some(open) = server.open.as_deref() {
            if let Some(call) = &open.call {
                let (from, to) = (open.request.header("From"), open.request.header("To"));
                self.out.push(Output::Observed(Observation::CallStarted {
                    call_id: call.call_id.clone(),
                    from: observation::party(from.as_deref()),
                    to: observation::party(to.as_deref()),
                }));
            } else if method == "BYE" {
                let call_id = observation::call_id(open.request.call_id().as_deref());
                self.out.push(Output::Observed(Observation::CallEnded { call_id }));
            }
        }
        // RFC 3261 §16.6 step 4: a REGISTER starts no dialog.
        let record_route = !to_tagged && method != "REGISTER";
        match (target, user) {
            (Some(t), _) => {
                self.admit(id, server);
                self.forward(now, id, vec![t], record_route);
            }
            (None, None) => {
                // A request for another domain: its servers are looked up.
                server.state = ServerState::Locating;
                server.forget_at = now + TRANSACTION_TIMEOUT_MS;
                self.admit(id, server);
                self.next_outside_hop(now, id);
            }
            (None, Some(user)) if side == Side::Phones => {
                let lookup = self.id();
                server.state = ServerState::Locating;
                if let Some(open) = server.open.as_mut() {
                    open.lookup = Some(lookup);
                }
                server.forget_at = now + TRANSACTION_TIMEOUT_MS;
                self.admit(id, server);
                self.lookups.insert(lookup, id);
                self.out.push(Output::Locate { lookup, user });
            }
            (None, Some(user)) => {
                self.admit(id, server);
                let targets = local_targets(registrar, &user, now);
                self.forward(now, id, targets, record_route);
            }
        }
    }

    /// The user a phone's request comes from, bound to its From and
    /// asserted, with what the phone may not bring into the overlay
    /// stripped ([`identity`]); otherwise the answer to send: a challenge,
    /// or 403 for wrong credentials or another user's From.
    /// A request for another domain may keep a From of a domain other than
    /// the overlay's (`to_other_domain`): the user's account there, which
    /// that domain authenticates itself (decision 0034); the peer asserts
    /// nothing for it.
    fn authenticated_caller(
        &mut self,
        now: u64,
        request: &mut SipMessage,
        flow: Flow,
        registrar: &mut Registrar,
        to_other_domain: bool,
    ) -> Result<String, Vec<u8>> {
        let foreign_from = to_other_domain && other_domains::from_another_domain(request, registrar.domain());
        if let Some(user) = registrar.user_on(flow, now).filter(|_| foreign_from) {
            // A phone of a user of this peer, speaking as its account
            // elsewhere: the flow it registered over vouches for it.
            let user = user.to_string();
            identity::strip_from_phone(request, registrar.domain());
            return Ok(user);
        }
        let user = match registrar.authorize(now, request, flow) {
            Ok(user) => user,
            Err(refusal) => {
                if let Some(user) = refusal.wrong_credentials {
                    self.out.push(Output::Observed(Observation::AuthFailed {
                        user,
                        remote: flow.remote,
                    }));
                }
                return Err(refusal.answer.to_bytes());
            }
        };
        identity::strip_from_phone(request, registrar.domain());
        if foreign_from {
            return Ok(user);
        }
        match identity::assert_user(request, &user, registrar.domain()) {
            Ok(()) => Ok(user),
            Err(why) => {
                let tag = self.unique();
                Err(SipMessage::response_to(request, 403, why, Some(&tag)).to_bytes())
            }
        }
    }

    /// A request that carries a Via this peer wrote has been forwarded by
    /// it before. RFC 3261 §16.3 step 4 would tell a loop from a spiral
    /// (the same request sent back with a changed Request-URI) by a hash
    /// in the branch; this peer is deliberately stricter and refuses both
    /// (482). In the overlay a request never spirals through one peer
    /// legitimately: each peer forwards it once, to a phone or to the
    /// callee's peer. So a Route set that bounces a request between two
    /// peers ends at its second visit instead of after Max-Forwards hops
    /// (the amplification RFC 5393 is about). Interworking with other
    /// domains (issue 34) may bring real spirals and the hash with them.
    fn passed_here_before(&self, request: &SipMessage) -> bool {
        request
            .list("Via")
            .iter()
            .filter_map(|v| Via::parse(v))
            .any(|v| self.me.wrote(&v))
    }

    fn admit(&mut self, id: u64, server: ServerTxn) {
        self.open_servers += usize::from(server.open.is_some());
        if server.open.as_ref().is_some_and(|o| o.call.is_some()) {
            self.setting_up.admit(id);
        }
        self.server_ids.insert(server.key.clone(), id);
        self.servers.insert(id, server);
        self.schedule(TimerRef::Server(id));
    }

    /// The driver's answer to [`Output::Locate`].
    pub fn located(&mut self, now: u64, lookup: u64, location: Location, registrar: &Registrar) -> Vec<Output> {
        let Some(id) = self.lookups.remove(&lookup) else {
            return Vec::new();
        };
        let to_tag = self.to_tag(id);
        let Some(server) = self.servers.get_mut(&id) else {
            return Vec::new();
        };
        let Some(open) = server.open.as_mut().filter(|_| server.state == ServerState::Locating) else {
            return Vec::new();
        };
        open.lookup = None;
        if open.outside.is_some() {
            self.proxy_peers_located(now, id, location);
            return self.take();
        }
        server.state = ServerState::Proceeding;
        server.forget_at = now + TIMER_C_MS + TRANSACTION_TIMEOUT_MS;
        let user = open
            .request
            .request_uri()
            .and_then(|u| Uri::parse(u).ok())
            .and_then(|u| u.user)
            .unwrap_or_default();
        match location {
            Location::Found { peers, here } => {
                let mut targets: Vec<Target> = peers
                    .into_iter()
                    .map(|remote| Target {
                        request_uri: None,
                        flow: Flow {
                            transport: Transport::Tls,
                            remote,
                        },
                        side: Side::Overlay,
                        user: None,
                    })
                    .collect();
                if here {
                    targets.extend(local_targets(registrar, &user, now));
                }
                if targets.is_empty() {
                    self.answer(now, id, 480, "Temporarily Unavailable");
                } else {
                    self.forward(now, id, targets, true);
                }
            }
            Location::NotFound => self.answer(now, id, 404, "Not Found"),
            Location::NoPhone => self.answer(now, id, 480, "Temporarily Unavailable"),
            Location::Unreachable(why) => {
                let mut r = SipMessage::response_to(&open.request, 480, "Temporarily Unavailable", Some(&to_tag));
                r.push(
                    "Warning",
                    &format!("399 p2psip \"{}\"", why.replace(['"', '\r', '\n'], " ")),
                );
                self.send_final(now, id, r);
            }
        }
        self.take()
    }

    /// §16.6: one copy of the server transaction's request per target.
    fn forward(&mut self, now: u64, server_id: u64, targets: Vec<Target>, record_route: bool) {
        if targets.is_empty() {
            return self.answer(now, server_id, 480, "Temporarily Unavailable");
        }
        let Some(server) = self.servers.get(&server_id) else {
            return;
        };
        let Some(base) = server.request().cloned() else {
            return;
        };
        let (in_side, upstream) = (server.side, server.from);
        let to_other_domain = server.open.as_ref().is_some_and(|o| o.outside.is_some());
        let toward_caller = server
            .open
            .as_ref()
            .map(|o| o.toward_caller.clone())
            .unwrap_or_default();
        let call_id = base.call_id().unwrap_or_default().into_owned();
        let method = base.method().unwrap_or_default().to_string();
        let mut ids = Vec::new();
        for target in targets {
            // A phone (another domain's servers are not: each failed one
            // is passed over, RFC 3263 §4.3, not counted as silent).
            let to_phone =
                (method == "INVITE" && target.side == Side::Phones && !to_other_domain).then_some(target.flow.remote);
            if to_phone.is_some_and(|phone| self.setting_up.phone_is_silent(phone, self.limits.silent_per_phone)) {
                continue;
            }
            let mut copy = base.clone();
            if let Some(uri) = &target.request_uri {
                set_request_uri(&mut copy, uri);
            }
            if record_route {
                let mut hops = toward_caller.clone();
                hops.push(Hop::Flow(target.flow));
                hops.extend(target.user.clone().map(Hop::User));
                let proof = self.dialog_key.proof(&call_id, &hops);
                // RFC 5658: one entry for the way in and, when it differs,
                // one for the way out; the request's next hop sees the
                // outer one first.
                // The way in and out differ by side, transport or, on a
                // dual-stack peer, IP family.
                let way_in = self.me.record_route(in_side, upstream, &proof);
                let way_out = self.me.record_route(target.side, target.flow, &proof);
                copy.prepend("Record-Route", &way_in);
                if way_out != way_in {
                    copy.prepend("Record-Route", &way_out);
                }
            }
            if target.side == Side::Phones {
                identity::keep_private(&mut copy);
                if method == "REGISTER" {
                    home_registration::aim_path(&mut copy, &self.me, target.flow);
                }
            }
            let branch = format!("z9hG4bK{}", self.unique());
            copy.prepend("Via", &self.me.via(target.side, target.flow, &branch));
            let id = self.start_client(now, Some(server_id), branch, &method, copy, target.flow);
            if let Some(client) = self.clients.get_mut(&id) {
                client.upstream = Some(upstream);
                client.phone = to_phone;
            }
            ids.push(id);
        }
        if ids.is_empty() {
            // Every phone of the callee has left as many calls silent as
            // it may: it is not there, as far as anyone can tell.
            return self.answer(now, server_id, 480, "Temporarily Unavailable");
        }
        if let Some(open) = self.servers.get_mut(&server_id).and_then(|s| s.open.as_mut()) {
            open.branches.extend(ids);
        }
    }

    fn start_client(
        &mut self,
        now: u64,
        server: Option<u64>,
        branch: String,
        method: &str,
        request: SipMessage,
        flow: Flow,
    ) -> u64 {
        let bytes = request.to_bytes();
        let id = self.id();
        let unreliable = !flow.transport.reliable();
        let request = Some(Box::new(request));
        self.client_ids.insert((branch.clone(), method.to_string()), id);
        self.clients.insert(
            id,
            ClientTxn {
                server,
                branch,
                method: method.to_string(),
                request,
                flow,
                state: ClientState::Trying,
                // Timers A and E (§17.1.1.2, §17.1.2.2).
                retransmit_at: unreliable.then_some(now + T1_MS),
                retransmit_every: T1_MS,
                timeout_at: now + TRANSACTION_TIMEOUT_MS,
                cancel: Cancel::No,
                upstream: None,
                phone: None,
                silent: false,
                leaves_setup_at: (method == "INVITE" && server.is_some()).then_some(now + SETUP_WAIT_MS),
                passed_over_at: None,
                timer_at: u64::MAX,
            },
        );
        self.schedule(TimerRef::Client(id));
        self.send(flow, bytes);
        id
    }

    /// §16.10: CANCEL matches the INVITE's server transaction; it is
    /// answered at once and every branch still ringing is cancelled.
    fn on_cancel(&mut self, now: u64, cancel: SipMessage, flow: Flow) {
        let Some(invite) = TransactionKey::of(&cancel).and_then(|k| k.of_invite()) else {
            return self.reply(&cancel, flow, 481, "Call/Transaction Does Not Exist");
        };
        let Some(&id) = self.server_ids.get(&invite) else {
            if self.finished.get(self.server_key(&invite), now).is_some() {
                // Answered already: nothing is left to cancel (§9.2).
                return self.reply(&cancel, flow, 200, "OK");
            }
            return self.reply(&cancel, flow, 481, "Call/Transaction Does Not Exist");
        };
        let Some(server) = self.servers.get(&id) else {
            return self.reply(&cancel, flow, 481, "Call/Transaction Does Not Exist");
        };
        let (lookup, branches) = server
            .open
            .as_ref()
            .map(|o| (o.lookup, o.branches.clone()))
            .unwrap_or_default();
        let state = server.state;
        let ok = SipMessage::response_to(&cancel, 200, "OK", Some(&self.to_tag(id)));
        self.send(flow, ok.to_bytes());
        match state {
            ServerState::Locating => {
                if let Some(lookup) = lookup {
                    self.lookups.remove(&lookup);
                }
                self.answer(now, id, 487, "Request Terminated");
            }
            ServerState::Proceeding => {
                for branch in branches {
                    self.cancel_branch(now, branch);
                }
            }
            _ => {}
        }
    }

    /// §9.1: CANCEL a pending INVITE branch, once it has a provisional
    /// response.
    fn cancel_branch(&mut self, now: u64, id: u64) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.cancel != Cancel::No || client.method != "INVITE" {
            return;
        }
        if client.state == ClientState::Trying {
            client.cancel = Cancel::Wanted;
            return;
        }
        let Some(request) = client.request.as_deref() else {
            return;
        };
        let cancel = cancel_for(request);
        client.cancel = Cancel::Sent;
        let (branch, flow) = (client.branch.clone(), client.flow);
        self.start_client(now, None, branch, "CANCEL", cancel, flow);
    }

    /// ACK: for a non-2xx it ends the server transaction (§17.2.1); for a
    /// 2xx it is a request of its own, routed along the dialog's route set
    /// statelessly (§16.11 for the branch).
    fn on_ack(&mut self, now: u64, mut ack: SipMessage, flow: Flow, side: Side, registrar: &Registrar) {
        if let Some(key) = TransactionKey::of(&ack) {
            if let Some(&id) = self.server_ids.get(&key) {
                if let Some(server) = self.servers.get_mut(&id) {
                    if server.state == ServerState::Completed {
                        // Timer I only absorbs ACKs: nothing is resent.
                        let until = (!server.from.transport.reliable()).then_some(now + T4_MS);
                        self.retire_server(id, until, Afterlife::Answered { response: None });
                    }
                    return;
                }
            } else if let Some(Afterlife::Answered { .. }) = self.finished.get(self.server_key(&key), now) {
                // Timer I: the ACK of a non-2xx, again.
                return;
            }
        }
        if self.passed_here_before(&ack) {
            return;
        }
        let own_routes = pop_own_routes(&mut ack, &self.me);
        let Some(uri) = ack.request_uri().and_then(|u| Uri::parse(u).ok()) else {
            return;
        };
        let Ok(hop) = dialog_next_hop(&ack, &uri, own_routes.popped, registrar, now) else {
            return;
        };
        // An ACK cannot be challenged: it goes on only inside a dialog of
        // this peer, or from a phone registered here.
        let call_id = ack.call_id().unwrap_or_default();
        let from_our_phone = side == Side::Phones && registrar.user_on(flow, now).is_some();
        if !self.dialog_key.admits(&own_routes.proofs, &call_id, &hop.hops()) && !from_our_phone {
            return;
        }
        if side == Side::Phones {
            identity::strip_from_phone(&mut ack, registrar.domain());
        }
        let (next, side) = (hop.flow, hop.side);
        let max_forwards = ack
            .header("Max-Forwards")
            .and_then(|m| m.trim().parse::<u32>().ok())
            .unwrap_or(DEFAULT_MAX_FORWARDS);
        if max_forwards == 0 {
            return;
        }
        ack.set("Max-Forwards", &(max_forwards - 1).to_string());
        // §16.11: a branch derived from the incoming one, so a
        // retransmitted ACK leaves with the same branch.
        let incoming = ack
            .list("Via")
            .first()
            .and_then(|v| Via::parse(v))
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let branch = format!(
            "z9hG4bK{:016x}",
            stable_hash(&[incoming.as_bytes(), &self.salt.to_be_bytes()])
        );
        ack.prepend("Via", &self.me.via(side, next, &branch));
        self.send(next, ack.to_bytes());
    }

    // ----- responses -----------------------------------------------------

    /// A response that arrived over `flow`.
    pub fn on_response(&mut self, now: u64, mut response: SipMessage, _flow: Flow) -> Vec<Output> {
        let Some(status) = response.status() else {
            return Vec::new();
        };
        let Some(top) = response.list("Via").into_iter().next().and_then(|v| Via::parse(&v)) else {
            return Vec::new();
        };
        if !self.me.wrote(&top) {
            return Vec::new();
        }
        let Some((_, method)) = response.cseq() else {
            return Vec::new();
        };
        let key = (top.branch().unwrap_or_default().to_string(), method);
        let Some(&id) = self.client_ids.get(&key) else {
            let (branch, method) = key;
            match self.finished.get(self.client_key(&branch, &method), now) {
                // RFC 6026 §7.2 (Timer M): a 2xx again goes upstream.
                Some(Afterlife::ClientAccepted { upstream }) if (200..300).contains(&status) => {
                    let upstream = *upstream;
                    response.remove_first("Via");
                    self.send(upstream, response.to_bytes());
                    return self.take();
                }
                // §17.1.1.2 (Timer D): a final non-2xx again is
                // acknowledged again.
                Some(Afterlife::ClientCompleted { to, ack: Some(ack) }) if status >= 300 => {
                    let (to, ack) = (*to, ack.to_vec());
                    self.send(to, ack);
                    return self.take();
                }
                Some(_) => return self.take(),
                None => {}
            }
            // §16.7 step 1, for the one case that matters: a 2xx to an
            // INVITE after its transaction is gone goes on statelessly.
            if method == "INVITE" && (200..300).contains(&status) {
                response.remove_first("Via");
                if let Some(next) = response.list("Via").first().and_then(|v| Via::parse(v)) {
                    if let Some(flow) = response_flow(&next) {
                        self.send(flow, response.to_bytes());
                    }
                }
            }
            return self.take();
        };
        self.on_client_response(now, id, response, status);
        self.take()
    }

    fn on_client_response(&mut self, now: u64, id: u64, mut response: SipMessage, status: u16) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.leaves_setup_at = None;
        client.passed_over_at = None;
        if let Some(phone) = client.phone.filter(|_| std::mem::take(&mut client.silent)) {
            self.setting_up.no_longer_silent(phone);
        }
        let invite = client.method == "INVITE";
        let server = client.server;
        let cancelled = client.cancel != Cancel::No;
        match status {
            100..=199 => {
                if client.state == ClientState::Trying {
                    client.state = ClientState::Proceeding;
                }
                if client.state != ClientState::Proceeding {
                    return;
                }
                if invite {
                    // Timer A stops; Timer C runs from the latest provisional.
                    client.retransmit_at = None;
                    client.timeout_at = now + TIMER_C_MS;
                    // The next hop took the call: it is no longer being
                    // set up here.
                    if let Some(server) = server {
                        self.setting_up.leave(server);
                    }
                } else if client.retransmit_at.is_some() {
                    client.retransmit_every = T2_MS;
                }
                let wanted = client.cancel == Cancel::Wanted;
                self.schedule(TimerRef::Client(id));
                if wanted {
                    if let Some(c) = self.clients.get_mut(&id) {
                        c.cancel = Cancel::No;
                    }
                    self.cancel_branch(now, id);
                }
                if status > 100 {
                    if let Some(server) = server {
                        self.for_upstream(server, &mut response);
                        self.relay_provisional(now, server, response);
                    }
                }
            }
            200..=299 if invite => {
                let upstream = client.upstream;
                // Timer M (RFC 6026 §8.4): a 2xx again goes upstream.
                let until = now + TRANSACTION_TIMEOUT_MS;
                match upstream {
                    Some(upstream) => self.retire_client(id, Some(until), Afterlife::ClientAccepted { upstream }),
                    None => self.retire_client(id, None, Afterlife::Accepted),
                }
                let proceeding =
                    server.filter(|s| self.servers.get(s).is_some_and(|s| s.state == ServerState::Proceeding));
                let Some(server) = proceeding else {
                    // Another branch answered first (or the caller's side
                    // is gone): RFC 6026 has this 2xx go upstream too.
                    if let Some(upstream) = upstream {
                        response.remove_first("Via");
                        self.send(upstream, response.to_bytes());
                    }
                    return;
                };
                // §16.7 step 10: the other branches are cancelled.
                let others: Vec<u64> = self
                    .servers
                    .get(&server)
                    .and_then(|s| s.open.as_ref())
                    .map(|o| o.branches.iter().copied().filter(|b| *b != id).collect())
                    .unwrap_or_default();
                self.for_upstream(server, &mut response);
                self.relay_2xx(now, server, response);
                for other in others {
                    self.cancel_branch(now, other);
                }
            }
            _ => {
                let to = client.flow;
                // §17.1.1.3: the ACK of a non-2xx is hop by hop.
                let ack = client
                    .request
                    .take()
                    .filter(|_| invite)
                    .map(|request| ack_for(&request, &response).to_bytes());
                // Timers D and K: a final response again is acknowledged
                // again (an INVITE's) or absorbed.
                let until = (!to.transport.reliable()).then_some(now + if invite { 32_000 } else { T4_MS });
                let kept_ack = ack.as_deref().map(Box::from);
                self.retire_client(id, until, Afterlife::ClientCompleted { to, ack: kept_ack });
                if let Some(ack) = ack {
                    self.send(to, ack);
                }
                let Some(server) = server else { return };
                self.for_upstream(server, &mut response);
                // §4.3 of RFC 3263: a 503 sends a request for another
                // domain on to that domain's next server, unless the call
                // is being cancelled.
                self.branch_finished(now, server, response, status == 503 && !cancelled);
            }
        }
    }

    /// §16.7 step 3: this peer's Via comes off. A response that held no
    /// other Via (a callee that dropped them) gets the Vias of the request
    /// it answers, so it still reaches the caller; after the final
    /// response that request is gone and a later 2xx of such a callee
    /// goes up without Vias, over the flow the request came in on.
    fn for_upstream(&self, server_id: u64, response: &mut SipMessage) {
        response.remove_first("Via");
        if response.has("Via") {
            return;
        }
        if let Some(request) = self.servers.get(&server_id).and_then(ServerTxn::request) {
            for via in request.list("Via").into_iter().rev() {
                response.prepend("Via", &via);
            }
        }
    }

    fn relay_provisional(&mut self, now: u64, server_id: u64, response: SipMessage) {
        let Some(server) = self.servers.get_mut(&server_id) else {
            return;
        };
        if server.state != ServerState::Proceeding {
            return;
        }
        let bytes = response.to_bytes();
        server.last_sent = Some(Box::from(bytes.as_slice()));
        // Timer C restarts with each provisional response (§16.8): the
        // transaction outlives its branches' Timer C and their Timer B.
        let outlives = now + TIMER_C_MS + TRANSACTION_TIMEOUT_MS + T1_MS;
        let extended = outlives > server.forget_at;
        server.forget_at = server.forget_at.max(outlives);
        let flow = server.from;
        let progress = server
            .open
            .as_deref_mut()
            .and_then(|o| o.call.as_mut())
            .and_then(|c| c.progress(now));
        if progress.is_some() {
            self.setting_up.leave(server_id);
        }
        self.out.extend(progress.map(Output::Observed));
        if extended {
            self.schedule(TimerRef::Server(server_id));
        }
        self.send(flow, bytes);
    }

    fn relay_2xx(&mut self, now: u64, server_id: u64, response: SipMessage) {
        let Some(server) = self.servers.get_mut(&server_id) else {
            return;
        };
        if server.state != ServerState::Proceeding {
            return;
        }
        let flow = server.from;
        if let Some(call) = server.open.take().and_then(|o| o.call) {
            self.out.extend(call.answered(now, 200).map(Output::Observed));
        }
        self.send(flow, response.to_bytes());
        self.closed(server_id);
        // Timer L (RFC 6026 §8.7): retransmitted INVITEs are absorbed.
        self.retire_server(server_id, Some(now + TRANSACTION_TIMEOUT_MS), Afterlife::Accepted);
    }

    /// A branch ended with a final response (a non-2xx to an INVITE, any
    /// to other methods): remember the best (§16.7 step 6) and answer
    /// once every branch has ended, or at once for a 2xx to a non-INVITE.
    /// When the next hop failed (`hop_failed`: no answer, no connection,
    /// or 503) a request for another domain tries that domain's next
    /// server first (RFC 3263 §4.3).
    fn branch_finished(&mut self, now: u64, server_id: u64, response: SipMessage, hop_failed: bool) {
        let status = response.status().unwrap_or(500);
        let Some(server) = self.servers.get_mut(&server_id) else {
            return;
        };
        let Some(open) = server.open.as_mut().filter(|_| server.state == ServerState::Proceeding) else {
            return;
        };
        if (200..300).contains(&status) {
            // A non-INVITE's 2xx ends it.
            return self.send_final(now, server_id, response);
        }
        let better = open
            .best
            .as_ref()
            .is_none_or(|b| rank(status) < rank(b.status().unwrap_or(500)));
        if better {
            open.best = Some(response);
        }
        let branches = open.branches.clone();
        if status >= 600 {
            for &branch in &branches {
                self.cancel_branch(now, branch);
            }
        }
        let all_done = branches.iter().all(|b| !self.clients.contains_key(b));
        if !all_done {
            return;
        }
        let open = self.servers.get_mut(&server_id).and_then(|s| s.open.as_mut());
        if hop_failed && open.as_ref().is_some_and(|o| o.outside.is_some()) {
            return self.next_outside_hop(now, server_id);
        }
        if let Some(best) = open.and_then(|o| o.best.take()) {
            self.send_best(now, server_id, best);
        }
    }

    /// The best final response of a transaction's branches goes upstream.
    fn send_best(&mut self, now: u64, server_id: u64, mut best: SipMessage) {
        if best.status() == Some(503) {
            // §16.7 step 6: a 503 means this proxy, not the callee,
            // is unavailable to the upstream, which would retry.
            best.start = StartLine::Response {
                code: 500,
                reason: "Server Internal Error".into(),
            };
        }
        self.send_final(now, server_id, best);
    }

    /// A final response this proxy generates itself for a transaction.
    fn answer(&mut self, now: u64, server_id: u64, code: u16, reason: &str) {
        self.answer_with(now, server_id, code, reason, None);
    }

    /// [`answer`](Self::answer), asking the sender to wait `retry_after_s`.
    fn answer_with(&mut self, now: u64, server_id: u64, code: u16, reason: &str, retry_after_s: Option<u32>) {
        let Some(request) = self.servers.get(&server_id).and_then(ServerTxn::request) else {
            return;
        };
        let mut response = SipMessage::response_to(request, code, reason, Some(&self.to_tag(server_id)));
        if let Some(seconds) = retry_after_s {
            response.push("Retry-After", &seconds.to_string());
        }
        self.send_final(now, server_id, response);
    }

    fn send_final(&mut self, now: u64, server_id: u64, response: SipMessage) {
        let Some(server) = self.servers.get_mut(&server_id) else {
            return;
        };
        let bytes = response.to_bytes();
        let reliable = server.from.transport.reliable();
        let success = response.status().is_some_and(|s| (200..300).contains(&s));
        let open = server.open.take();
        let closing = open.is_some();
        if let Some(call) = open.and_then(|o| o.call) {
            let code = response.status().unwrap_or(500);
            self.out.extend(call.answered(now, code).map(Output::Observed));
        }
        let Some(server) = self.servers.get_mut(&server_id) else {
            return;
        };
        let (flow, invite) = (server.from, server.invite);
        if invite && !success {
            // §17.2.1: Completed until the ACK; Timer G over UDP, Timer H.
            server.state = ServerState::Completed;
            server.retransmit_at = (!reliable).then_some(now + T1_MS);
            server.retransmit_every = T1_MS;
            server.forget_at = now + TRANSACTION_TIMEOUT_MS;
            server.last_sent = Some(Box::from(bytes.as_slice()));
            self.schedule(TimerRef::Server(server_id));
            self.send(flow, bytes);
            if closing {
                self.closed(server_id);
            }
            return;
        }
        // Timer J: a non-INVITE's retransmission gets its final response
        // again; RFC 6026 §7.1: an Accepted INVITE resends nothing itself.
        let afterlife = if invite {
            Afterlife::Accepted
        } else {
            Afterlife::Answered {
                response: Some(Box::from(bytes.as_slice())),
            }
        };
        self.send(flow, bytes);
        if closing {
            self.closed(server_id);
        }
        let until = (!reliable).then_some(now + TRANSACTION_TIMEOUT_MS);
        self.retire_server(server_id, until, afterlife);
    }

    /// Server transaction `id` sent its final response. A non-2xx to an
    /// INVITE waits for its ACK among the completed ones, and past their
    /// limit the longest waiting goes: they all wait about as long (Timer
    /// H is 64·T1), so oldest first is close to soonest due, and it never
    /// takes one whose final response has only just gone out.
    fn closed(&mut self, id: u64) {
        self.open_servers -= 1;
        self.setting_up.leave(id);
        if !self.servers.get(&id).is_some_and(|s| s.state == ServerState::Completed) {
            return;
        }
        self.completed.push_back(id);
        while self.servers.len() - self.open_servers > self.limits.finished {
            let Some(oldest) = self.completed.pop_front() else {
                break;
            };
            if let Some(s) = self.servers.get(&oldest) {
                self.timers.remove(&(s.timer_at, TimerRef::Server(oldest)));
                self.forget_server(oldest);
            }
        }
        // Those the timers forgot already leave the front as it comes by.
        while let Some(front) = self.completed.front() {
            if self.servers.contains_key(front) {
                break;
            }
            self.completed.pop_front();
        }
    }

    /// The driver could not send on `flow` (TCP connect or write failed):
    /// its pending branches end as if answered 503 (§16.7 step 2 / §8.1.3.1).
    pub fn flow_failed(&mut self, now: u64, flow: Flow) -> Vec<Output> {
        let failed: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.flow == flow)
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            self.branch_failed(now, id, 503, "Service Unavailable");
        }
        self.take()
    }

    fn branch_failed(&mut self, now: u64, id: u64, code: u16, reason: &str) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let local = client
            .request
            .take()
            .map(|r| SipMessage::response_to(&r, code, reason, None));
        let server = client.server;
        // RFC 3263 §4.3: a next hop that never answered, or could not be
        // reached, is passed over; one that rang, or a call being
        // cancelled, is not tried elsewhere.
        let unanswered = client.state == ClientState::Trying && client.cancel == Cancel::No;
        // Nothing came from the next hop: nothing of it can come again.
        self.retire_client(id, None, Afterlife::Accepted);
        if let (Some(server), Some(mut local)) = (server, local) {
            local.remove_first("Via");
            self.branch_finished(now, server, local, unanswered);
        }
    }

    /// A next hop toward another domain that stayed silent for
    /// [`SILENT_HOP_MS`] is as good as timed out (RFC 3263 §4.3): its
    /// server transaction moves on to the next hop. Its client transaction
    /// stays until its own timeout, detached: a late provisional gets a
    /// CANCEL (§9.1) and goes no further, and a late 2xx still goes
    /// upstream, as every 2xx to an INVITE does (§16.7 step 5, RFC 6026),
    /// where the caller takes or ends that dialog as it would any second
    /// answer of a forked call (§13.2.2.4).
    fn pass_over(&mut self, now: u64, id: u64) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.passed_over_at = None;
        let Some(server) = client.server.take() else {
            return;
        };
        if client.method == "INVITE" {
            client.cancel = Cancel::Wanted;
        }
        let local = client
            .request
            .as_ref()
            .map(|r| SipMessage::response_to(r, 408, "Request Timeout", None));
        self.schedule(TimerRef::Client(id));
        if let Some(open) = self.servers.get_mut(&server).and_then(|s| s.open.as_mut()) {
            open.branches.retain(|b| *b != id);
        }
        if let Some(mut local) = local {
            local.remove_first("Via");
            self.branch_finished(now, server, local, true);
        }
    }

    // ----- timers --------------------------------------------------------

    /// Puts the transaction's entry in `timers` at its current due time.
    fn schedule(&mut self, timer: TimerRef) {
        let (due, timer_at) = match timer {
            TimerRef::Server(id) => match self.servers.get_mut(&id) {
                Some(s) => (s.due(), &mut s.timer_at),
                None => return,
            },
            TimerRef::Client(id) => match self.clients.get_mut(&id) {
                Some(c) => (c.due(), &mut c.timer_at),
                None => return,
            },
        };
        let before = std::mem::replace(timer_at, due);
        if before == due {
            return;
        }
        if before != u64::MAX {
            self.timers.remove(&(before, timer));
        }
        if due != u64::MAX {
            self.timers.insert((due, timer));
        }
    }

    /// Runs every timer due at `now`.
    pub fn tick(&mut self, now: u64) -> Vec<Output> {
        while let Some(&(due, timer)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                TimerRef::Server(id) => {
                    if let Some(s) = self.servers.get_mut(&id) {
                        s.timer_at = u64::MAX;
                    }
                    self.server_timer(now, id);
                }
                TimerRef::Client(id) => {
                    if let Some(c) = self.clients.get_mut(&id) {
                        c.timer_at = u64::MAX;
                    }
                    self.client_timer(now, id);
                }
            }
            // Whatever the timer changed, the transaction (if still held)
            // is due again at its next deadline.
            self.schedule(timer);
        }
        self.servers.give_back();
        self.server_ids.give_back();
        self.setting_up.give_back();
        self.completed.give_back();
        self.finished.expire(now);
        self.clients.give_back();
        self.client_ids.give_back();
        self.lookups.give_back();
        self.take()
    }

    fn server_timer(&mut self, now: u64, id: u64) {
        let Some(server) = self.servers.get_mut(&id) else {
            return;
        };
        if server.forget_at <= now {
            if server.state == ServerState::Locating {
                // The overlay (or the DNS) never answered the lookup.
                if let Some(lookup) = server.open.as_mut().and_then(|o| o.lookup.take()) {
                    self.lookups.remove(&lookup);
                }
                let reason = match server.open.as_ref().and_then(|o| o.outside.as_ref()) {
                    Some(hops) if hops.through_proxy_peers() => "Proxy Peer Lookup Timed Out",
                    Some(_) => "DNS Lookup Timed Out",
                    None => "Location Lookup Timed Out",
                };
                self.answer(now, id, 408, reason);
                return;
            }
            return self.forget_server(id);
        }
        if let Some(at) = server.retransmit_at.filter(|t| *t <= now) {
            // Timer G.
            server.retransmit_every = (server.retransmit_every * 2).min(T2_MS);
            server.retransmit_at = Some(at.max(now) + server.retransmit_every);
            let (flow, bytes) = (server.from, server.last_sent.as_deref().map(<[u8]>::to_vec));
            self.schedule(TimerRef::Server(id));
            if let Some(bytes) = bytes {
                self.send(flow, bytes);
            }
        }
    }

    /// Drops server transaction `id`; its timer entry is gone already.
    fn forget_server(&mut self, id: u64) {
        let Some(server) = self.servers.remove(&id) else {
            return;
        };
        self.setting_up.leave(id);
        self.server_ids.remove(&server.key);
        if let Some(open) = server.open {
            self.open_servers -= 1;
            for b in open.branches {
                if let Some(c) = self.clients.get_mut(&b) {
                    c.server = None;
                }
            }
        }
    }

    fn client_timer(&mut self, now: u64, id: u64) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.leaves_setup_at.is_some_and(|at| at <= now) {
            client.leaves_setup_at = None;
            if let Some(server) = client.server {
                self.setting_up.leave(server);
            }
            if let Some(phone) = client.phone {
                client.silent = true;
                self.setting_up.went_silent(phone);
            }
        }
        if client.passed_over_at.is_some_and(|at| at <= now) {
            return self.pass_over(now, id);
        }
        if client.timeout_at <= now {
            if client.method == "INVITE" && client.state == ClientState::Proceeding && client.cancel == Cancel::No {
                // Timer C (§16.8): cancel, and give the callee Timer B
                // more to answer it with 487.
                client.timeout_at = now + TRANSACTION_TIMEOUT_MS;
                self.schedule(TimerRef::Client(id));
                self.cancel_branch(now, id);
                return;
            }
            // Timers B and F: the branch times out (§16.7 step 2: 408).
            return self.branch_failed(now, id, 408, "Request Timeout");
        }
        if let Some(at) = client.retransmit_at.filter(|t| *t <= now) {
            // Timer A doubles without bound, Timer E up to T2.
            client.retransmit_every = if client.method == "INVITE" {
                client.retransmit_every * 2
            } else {
                (client.retransmit_every * 2).min(T2_MS)
            };
            client.retransmit_at = Some(at.max(now) + client.retransmit_every);
            let (flow, bytes) = (client.flow, client.request.as_ref().map(|r| r.to_bytes()));
            self.schedule(TimerRef::Client(id));
            if let Some(bytes) = bytes {
                self.send(flow, bytes);
            }
        }
    }
}

/// What the proxy lets through, for OPTIONS answers.
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, UPDATE, PRACK, INFO, REFER, NOTIFY, SUBSCRIBE, REGISTER";

/// Every live contact of a local user as a target, over the flow its
/// phone registered from.
fn local_targets(registrar: &Registrar, user: &str, now: u64) -> Vec<Target> {
    registrar
        .contacts(user, now)
        .into_iter()
        .map(|b| Target {
            request_uri: Some(b.contact.uri.to_string()),
            flow: b.flow,
            side: Side::Phones,
            user: Some(user.to_string()),
        })
        .collect()
}

/// Why a request inside a dialog has nowhere to go.
enum NoHop {
    /// The top Route is no IP-literal SIP URI.
    Route,
    /// The Request-URI (the remote target) is no IP-literal SIP URI.
    RemoteTarget,
    /// Neither a Route of this peer nor a phone of it: not its dialog.
    NotOurs,
}

/// Where a request inside a dialog goes next; its proof must name `flow`,
/// or `user` when it goes to a phone of this peer.
struct NextHop {
    flow: Flow,
    side: Side,
    user: Option<String>,
}

impl NextHop {
    fn hops(&self) -> Vec<Hop> {
        let mut hops = vec![Hop::Flow(self.flow)];
        hops.extend(self.user.clone().map(Hop::User));
        hops
    }
}

/// §16.4/§16.5 for a request inside a dialog (this peer's own Route
/// entries already popped): the next Route entry, else the remote target
/// `uri` — over the flow its phone registered from when it is a phone of
/// this peer, directly when this peer's Route led here.
fn dialog_next_hop(
    request: &SipMessage,
    uri: &Uri,
    on_our_route: bool,
    registrar: &Registrar,
    now: u64,
) -> Result<NextHop, NoHop> {
    let by_flow = |flow: Flow| NextHop {
        flow,
        side: side_toward(flow),
        user: None,
    };
    if let Some(next) = top_route(request) {
        let flow = next.ok().as_ref().and_then(uri_flow).ok_or(NoHop::Route)?;
        return Ok(by_flow(flow));
    }
    if let Some((user, b)) = registrar.user_and_binding_for(uri, now) {
        return Ok(NextHop {
            flow: b.flow,
            side: Side::Phones,
            user: Some(user.to_string()),
        });
    }
    if !on_our_route {
        return Err(NoHop::NotOurs);
    }
    let flow = uri_flow(uri).ok_or(NoHop::RemoteTarget)?;
    Ok(by_flow(flow))
}

/// A next hop reached over TLS is a peer (the AppAttach connection), over
/// UDP or TCP a phone: it only decides which of this peer's addresses the
/// Via names.
fn side_toward(flow: Flow) -> Side {
    match flow.transport {
        Transport::Tls => Side::Overlay,
        Transport::Tcp | Transport::Udp => Side::Phones,
    }
}

fn set_request_uri(request: &mut SipMessage, uri: &str) {
    if let StartLine::Request { uri: u, .. } = &mut request.start {
        *u = uri.to_string();
    }
}

/// §16.7 step 6: 6xx first, then the lowest class; within 4xx the more
/// telling answers before 408 and 480.
fn rank(status: u16) -> u32 {
    match status {
        600..=699 => 0,
        300..=399 => 1,
        408 | 480 => 3,
        400..=499 => 2,
        _ => 4,
    }
}

/// §9.1: the CANCEL of a request this proxy sent.
fn cancel_for(request: &SipMessage) -> SipMessage {
    hop_by_hop("CANCEL", request, request.header("To").map(|t| t.into_owned()))
}

/// §17.1.1.3: the ACK of a non-2xx final response to `invite`.
fn ack_for(invite: &SipMessage, response: &SipMessage) -> SipMessage {
    hop_by_hop("ACK", invite, response.header("To").map(|t| t.into_owned()))
}

/// A request that goes where `sent` went and belongs to its transaction:
/// the same Request-URI, top Via, Route, From, Call-ID and CSeq number,
/// with `to` as its To.
fn hop_by_hop(method: &str, sent: &SipMessage, to: Option<String>) -> SipMessage {
    let mut out = SipMessage::request(method, sent.request_uri().unwrap_or_default());
    if let Some(via) = sent.list("Via").into_iter().next() {
        out.push("Via", &via);
    }
    for name in ["Route", "From", "Call-ID"] {
        for h in sent.headers.iter().filter(|h| h.is(name)) {
            out.headers.push(h.clone());
        }
    }
    if let Some(to) = to {
        out.push("To", &to);
    }
    let number = sent.cseq().map_or(1, |(n, _)| n);
    out.push("CSeq", &format!("{number} {method}"));
    out.push("Max-Forwards", &DEFAULT_MAX_FORWARDS.to_string());
    out.push("Content-Length", "0");
    out
}

/// FNV-1a over the parts: a stable branch for a stateless ACK.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
