//! The TURN server of a relay peer (RFC 8656 over UDP), sans-IO: datagrams
//! from clients (on the server's port) and from peers (on a relayed
//! address), and time, in; datagrams to send, each from the server's port
//! or a relayed address, out.
//!
//! - Every request is authenticated with the long-term credential
//!   mechanism (RFC 8489 §9.2); the key of a user name comes from the
//!   caller ([`TurnServer::new`]), so where credentials come from is the
//!   relay's business. Nonces are stateless: when they were issued and an
//!   HMAC of that and the client's address under a secret of this server;
//!   one older than [`NONCE_LIFETIME_MS`] gets 438.
//! - Answers to requests nobody authenticated (401, 400, 420) are held to
//!   [`UNAUTHENTICATED_PER_SOURCE`] a second per address: a spoofed source
//!   gets little from the server.
//! - Quotas: [`TurnConfig`] caps allocations per user (486 beyond),
//!   permissions and channels per allocation (508 beyond), and the bytes
//!   an allocation relays a second in both directions (the rest dropped);
//!   the relayed addresses are a fixed pool the driver bound (508 when
//!   none is free).
//! - No amplification: the relay sends a peer only what its client sent
//!   for it, and a client only what a peer it gave permission sent.
//! - Nothing is logged here; drops are counted by reason
//!   ([`TurnServer::dropped`]).

use super::{attribute as turn, family, ALLOCATE, CHANNELS, CHANNEL_BIND, CREATE_PERMISSION, DATA, REFRESH, SEND, UDP};
use crate::budget::SourceBudget;
use crate::stun::message::{attribute, binding_success, unknown_attributes, Builder, Class, Message, BINDING};
use crate::stun::server::{answerable, canonical};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// RFC 8656 §3.9: allocations live 10 minutes unless refreshed, at most
/// an hour at a time.
pub const DEFAULT_LIFETIME_S: u32 = 600;
pub const MAX_LIFETIME_S: u32 = 3_600;
/// §9: a permission lasts 5 minutes; §12: a channel binding 10.
pub const PERMISSION_LIFETIME_MS: u64 = 300_000;
pub const CHANNEL_LIFETIME_MS: u64 = 600_000;
/// How long a nonce is good for (RFC 8489 §9.2: the server's choice).
pub const NONCE_LIFETIME_MS: u64 = 600_000;
/// Answers a second to one address for requests not authenticated.
pub const UNAUTHENTICATED_PER_SOURCE: u32 = 10;
const UNAUTHENTICATED_TOTAL: u32 = 1_000;
const SOURCES: usize = 4_096;
/// The largest datagram taken from a client or a peer: a full Ethernet
/// frame's worth and then some; larger ones are dropped.
pub const MAX_DATAGRAM: usize = 2_048;
/// The realm's and the software's names in answers.
const SOFTWARE: &[u8] = b"p2psip relay";

/// What a relay offers and how much of it one user gets.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// RFC 8489 §9.2: the realm of the credentials.
    pub realm: String,
    /// The relayed transport addresses the driver bound, one per
    /// allocation.
    pub relayed: Vec<SocketAddr>,
    pub allocations_per_user: usize,
    pub permissions_per_allocation: usize,
    pub channels_per_allocation: usize,
    /// Bytes an allocation relays a second (both directions together),
    /// with a burst of twice that.
    pub bytes_per_second: u64,
}

impl TurnConfig {
    /// Quotas for overlay links and a handful of calls per user.
    pub fn new(realm: &str, relayed: Vec<SocketAddr>) -> TurnConfig {
        TurnConfig {
            realm: realm.to_string(),
            relayed,
            allocations_per_user: 4,
            permissions_per_allocation: 64,
            channels_per_allocation: 64,
            bytes_per_second: 256 * 1024,
        }
    }
}

/// Where a datagram goes out from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The server's own port (answers, Data indications, ChannelData).
    Server,
    /// A relayed address (to a peer).
    Relayed(SocketAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub from: From,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The key of a user name, if it is one (RFC 8489 §9.2.2's
/// MD5(username:realm:password)).
pub type Credentials = dyn FnMut(&str) -> Option<[u8; 16]> + Send;

struct Allocation {
    username: String,
    relayed: SocketAddr,
    expires: u64,
    /// Peer IP addresses and when their permission ends.
    permissions: HashMap<IpAddr, u64>,
    /// Channel → (peer, when the binding ends), and back.
    channels: HashMap<u16, (SocketAddr, u64)>,
    channel_of: HashMap<SocketAddr, u16>,
    bucket: TokenBucket,
    /// The last Allocate's transaction and answer: a retransmission gets
    /// the same answer (RFC 8656 §7.2).
    allocate_answer: ([u8; 12], Vec<u8>),
}

impl Allocation {
    /// RFC 8656 §9: whether `ip` has a permission in force.
    fn permits(&self, ip: IpAddr, now: u64) -> bool {
        self.permissions.get(&ip).is_some_and(|until| *until > now)
    }
}

/// A relay peer's TURN server.
pub struct TurnServer {
    config: TurnConfig,
    credentials: Box<Credentials>,
    nonce_secret: [u8; 32],
    allocations: HashMap<SocketAddr, Allocation>,
    by_relayed: HashMap<SocketAddr, SocketAddr>,
    free: Vec<SocketAddr>,
    per_user: HashMap<String, usize>,
    unauthenticated: SourceBudget,
    transmits: VecDeque<Transmit>,
    dropped: BTreeMap<&'static str, u64>,
    relayed_bytes: u64,
    indications: u64,
}

/// The outcome of checking a request's credentials.
enum Auth {
    Ok {
        username: String,
        key: [u8; 16],
    },
    /// Answer with this error (and a fresh nonce where it applies).
    Refused(u16, &'static str),
}

impl TurnServer {
    /// A server relaying through `config.relayed`, taking keys from
    /// `credentials`; `nonce_secret` must be random (it keeps nonces from
    /// being forged).
    pub fn new(config: TurnConfig, credentials: Box<Credentials>, nonce_secret: [u8; 32]) -> TurnServer {
        let mut free = config.relayed.clone();
        free.reverse();
        TurnServer {
            config,
            credentials,
            nonce_secret,
            allocations: HashMap::new(),
            by_relayed: HashMap::new(),
            free,
            per_user: HashMap::new(),
            unauthenticated: SourceBudget::new(UNAUTHENTICATED_PER_SOURCE, UNAUTHENTICATED_TOTAL, SOURCES, 1_000),
            transmits: VecDeque::new(),
            dropped: BTreeMap::new(),
            relayed_bytes: 0,
            indications: 0,
        }
    }

    /// Allocations in use.
    pub fn allocations(&self) -> usize {
        self.allocations.len()
    }

    /// Datagrams dropped, by reason.
    pub fn dropped(&self) -> &BTreeMap<&'static str, u64> {
        &self.dropped
    }

    /// Bytes of data relayed, both directions.
    pub fn relayed_bytes(&self) -> u64 {
        self.relayed_bytes
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    /// A datagram from a client on the server's port.
    pub fn from_client(&mut self, now: u64, datagram: &[u8], client: SocketAddr) {
        let client = canonical(client);
        if datagram.len() > MAX_DATAGRAM {
            return self.drop("oversized");
        }
        if !answerable(client) {
            return self.drop("bad_source");
        }
        if let Some((channel, data)) = super::parse_channel_data(datagram) {
            return self.channel_data_from_client(now, client, channel, data);
        }
        let Ok(message) = Message::decode(datagram) else {
            return self.drop("malformed");
        };
        match message.class {
            Class::Indication if message.method == SEND => self.send_indication(now, client, &message),
            Class::Request => self.request(now, client, &message),
            _ => self.drop("unexpected"),
        }
    }

    /// A datagram from `peer` to the relayed address `relayed`.
    pub fn from_peer(&mut self, now: u64, datagram: &[u8], peer: SocketAddr, relayed: SocketAddr) {
        let peer = canonical(peer);
        if datagram.len() > MAX_DATAGRAM {
            return self.drop("oversized");
        }
        let Some(client) = self.by_relayed.get(&relayed).copied() else {
            return self.drop("no_allocation");
        };
        let Some(allocation) = self.allocations.get_mut(&client) else {
            return self.drop("no_allocation");
        };
        // RFC 8656 §10.3: only from a peer the client gave permission.
        if !allocation.permits(peer.ip(), now) {
            return self.drop("no_permission");
        }
        if !allocation.bucket.take(now, datagram.len() as u64) {
            return self.drop("over_quota");
        }
        let bytes = match allocation.channel_of.get(&peer) {
            Some(channel) if allocation.channels.get(channel).is_some_and(|(_, until)| *until > now) => {
                super::channel_data(*channel, datagram)
            }
            _ => Builder::new(Class::Indication, DATA, indication_id(&mut self.indications))
                .xor_address(turn::XOR_PEER_ADDRESS, peer)
                .attribute(turn::DATA, datagram)
                .finish(),
        };
        self.relayed_bytes += datagram.len() as u64;
        self.transmits.push_back(Transmit {
            from: From::Server,
            to: client,
            bytes,
        });
    }

    fn channel_data_from_client(&mut self, now: u64, client: SocketAddr, channel: u16, data: &[u8]) {
        let Some(allocation) = self.allocations.get_mut(&client) else {
            return self.drop("no_allocation");
        };
        let Some((peer, until)) = allocation.channels.get(&channel).copied() else {
            return self.drop("no_channel");
        };
        if until <= now {
            return self.drop("no_channel");
        }
        if !allocation.bucket.take(now, data.len() as u64) {
            return self.drop("over_quota");
        }
        let relayed = allocation.relayed;
        self.relay_to_peer(relayed, peer, data);
    }

    /// RFC 8656 §11.2: a Send indication from the allocation's client,
    /// to a peer it has permission for.
    fn send_indication(&mut self, now: u64, client: SocketAddr, message: &Message<'_>) {
        let (Ok(peer), Some(data)) = (
            message.xor_address(turn::XOR_PEER_ADDRESS),
            message.attribute(turn::DATA),
        ) else {
            return self.drop("malformed");
        };
        let Some(allocation) = self.allocations.get_mut(&client) else {
            return self.drop("no_allocation");
        };
        if !allocation.permits(peer.ip(), now) {
            return self.drop("no_permission");
        }
        if !allocation.bucket.take(now, data.len() as u64) {
            return self.drop("over_quota");
        }
        let relayed = allocation.relayed;
        self.relay_to_peer(relayed, peer, data);
    }

    fn relay_to_peer(&mut self, relayed: SocketAddr, peer: SocketAddr, data: &[u8]) {
        self.relayed_bytes += data.len() as u64;
        self.transmits.push_back(Transmit {
            from: From::Relayed(relayed),
            to: peer,
            bytes: data.to_vec(),
        });
    }

    fn request(&mut self, now: u64, client: SocketAddr, message: &Message<'_>) {
        let id = message.transaction_id;
        let unknown = unknown_comprehension_required(message);
        if !unknown.is_empty() {
            let answer = unknown_attributes(message.method, id, &unknown);
            return self.answer_unauthenticated(now, client, answer);
        }
        if message.method == BINDING {
            return self.answer_unauthenticated(now, client, binding_success(id, client));
        }
        if ![ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND].contains(&message.method) {
            let answer = self.error(message.method, id, 400, "Bad Request", None, false, now, client);
            return self.answer_unauthenticated(now, client, answer);
        }
        let (username, key) = match self.authenticate(now, client, message) {
            Auth::Ok { username, key } => (username, key),
            Auth::Refused(code, reason) => {
                let with_nonce = matches!(code, 401 | 438);
                let answer = self.error(message.method, id, code, reason, None, with_nonce, now, client);
                return self.answer_unauthenticated(now, client, answer);
            }
        };
        // §6.2 and RFC 8489 §9.2.4: the allocation's requests come from
        // its user alone.
        if let Some(allocation) = self.allocations.get(&client) {
            if allocation.username != username {
                let answer = self.error(
                    message.method,
                    id,
                    441,
                    "Wrong Credentials",
                    Some(&key),
                    false,
                    now,
                    client,
                );
                return self.answer(client, answer);
            }
        }
        let answer = match message.method {
            ALLOCATE => self.allocate(now, client, message, username, key),
            REFRESH => self.refresh(now, client, message, &key),
            CREATE_PERMISSION => self.create_permission(now, client, message, &key),
            _ => self.channel_bind(now, client, message, &key),
        };
        self.answer(client, answer);
    }

    fn answer(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit {
            from: From::Server,
            to,
            bytes,
        });
    }

    fn answer_unauthenticated(&mut self, now: u64, to: SocketAddr, bytes: Vec<u8>) {
        if self.unauthenticated.take(now, to.ip()) {
            self.answer(to, bytes);
        } else {
            self.drop("over_budget");
        }
    }

    /// RFC 8489 §9.2.4.
    fn authenticate(&mut self, now: u64, client: SocketAddr, message: &Message<'_>) -> Auth {
        if message.attribute(attribute::MESSAGE_INTEGRITY).is_none() {
            return Auth::Refused(401, "Unauthenticated");
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            message.attribute(attribute::USERNAME),
            message.attribute(attribute::REALM),
            message.attribute(attribute::NONCE),
        ) else {
            return Auth::Refused(400, "Bad Request");
        };
        if realm != self.config.realm.as_bytes() {
            return Auth::Refused(401, "Unauthenticated");
        }
        if !self.nonce_valid(now, client, nonce) {
            return Auth::Refused(438, "Stale Nonce");
        }
        let Ok(username) = std::str::from_utf8(username) else {
            return Auth::Refused(401, "Unauthenticated");
        };
        let Some(key) = (self.credentials)(username) else {
            return Auth::Refused(401, "Unauthenticated");
        };
        if !message.integrity_matches(&key) {
            return Auth::Refused(401, "Unauthenticated");
        }
        Auth::Ok {
            username: username.to_string(),
            key,
        }
    }

    /// RFC 8656 §7.2.
    fn allocate(
        &mut self,
        now: u64,
        client: SocketAddr,
        message: &Message<'_>,
        username: String,
        key: [u8; 16],
    ) -> Vec<u8> {
        let id = message.transaction_id;
        if let Some(allocation) = self.allocations.get(&client) {
            return if allocation.allocate_answer.0 == id {
                allocation.allocate_answer.1.clone()
            } else {
                self.error(ALLOCATE, id, 437, "Allocation Mismatch", Some(&key), false, now, client)
            };
        }
        match message.attribute(turn::REQUESTED_TRANSPORT) {
            Some([protocol, ..]) if *protocol == UDP => {}
            Some(_) => {
                return self.error(
                    ALLOCATE,
                    id,
                    442,
                    "Unsupported Transport Protocol",
                    Some(&key),
                    false,
                    now,
                    client,
                )
            }
            None => return self.error(ALLOCATE, id, 400, "Bad Request", Some(&key), false, now, client),
        }
        let wanted_family = match message.attribute(turn::REQUESTED_ADDRESS_FAMILY) {
            Some([f, ..]) => *f,
            Some(_) => return self.error(ALLOCATE, id, 400, "Bad Request", Some(&key), false, now, client),
            None => 0x01,
        };
        if self.per_user.get(&username).copied().unwrap_or(0) >= self.config.allocations_per_user {
            return self.error(
                ALLOCATE,
                id,
                486,
                "Allocation Quota Reached",
                Some(&key),
                false,
                now,
                client,
            );
        }
        let Some(slot) = self.free.iter().rposition(|a| family(a) == wanted_family) else {
            let any_of_family = self.config.relayed.iter().any(|a| family(a) == wanted_family);
            return if any_of_family {
                self.error(
                    ALLOCATE,
                    id,
                    508,
                    "Insufficient Capacity",
                    Some(&key),
                    false,
                    now,
                    client,
                )
            } else {
                self.error(
                    ALLOCATE,
                    id,
                    440,
                    "Address Family not Supported",
                    Some(&key),
                    false,
                    now,
                    client,
                )
            };
        };
        let relayed = self.free.remove(slot);
        let lifetime = lifetime_s(message);
        let answer = Builder::new(Class::Success, ALLOCATE, id)
            .xor_address(turn::XOR_RELAYED_ADDRESS, relayed)
            .attribute(turn::LIFETIME, &lifetime.to_be_bytes())
            .xor_mapped_address(client)
            .attribute(turn::SOFTWARE, SOFTWARE)
            .finish_with_integrity(&key);
        *self.per_user.entry(username.clone()).or_default() += 1;
        self.by_relayed.insert(relayed, client);
        self.allocations.insert(
            client,
            Allocation {
                username,
                relayed,
                expires: now + u64::from(lifetime) * 1_000,
                permissions: HashMap::new(),
                channels: HashMap::new(),
                channel_of: HashMap::new(),
                bucket: TokenBucket::new(now, self.config.bytes_per_second),
                allocate_answer: (id, answer.clone()),
            },
        );
        answer
    }

    /// RFC 8656 §8.2: a new lifetime, or 0 to delete.
    fn refresh(&mut self, now: u64, client: SocketAddr, message: &Message<'_>, key: &[u8; 16]) -> Vec<u8> {
        let id = message.transaction_id;
        if !self.allocations.contains_key(&client) {
            return self.error(REFRESH, id, 437, "Allocation Mismatch", Some(key), false, now, client);
        }
        let zero = message.attribute(turn::LIFETIME) == Some(&[0, 0, 0, 0]);
        let lifetime = if zero {
            self.remove_allocation(client);
            0
        } else {
            let lifetime = lifetime_s(message);
            if let Some(allocation) = self.allocations.get_mut(&client) {
                allocation.expires = now + u64::from(lifetime) * 1_000;
            }
            lifetime
        };
        Builder::new(Class::Success, REFRESH, id)
            .attribute(turn::LIFETIME, &lifetime.to_be_bytes())
            .finish_with_integrity(key)
    }

    /// RFC 8656 §9.2: permissions for each XOR-PEER-ADDRESS's IP, all or
    /// none.
    fn create_permission(&mut self, now: u64, client: SocketAddr, message: &Message<'_>, key: &[u8; 16]) -> Vec<u8> {
        let id = message.transaction_id;
        let Some(allocation) = self.allocations.get(&client) else {
            return self.error(
                CREATE_PERMISSION,
                id,
                437,
                "Allocation Mismatch",
                Some(key),
                false,
                now,
                client,
            );
        };
        let peers: Result<Vec<SocketAddr>, _> = message.xor_addresses(turn::XOR_PEER_ADDRESS).into_iter().collect();
        let peers = match peers {
            Ok(peers) if !peers.is_empty() => peers,
            _ => return self.error(CREATE_PERMISSION, id, 400, "Bad Request", Some(key), false, now, client),
        };
        if let Some(code) = self.peer_refusal(allocation.relayed, &peers) {
            return self.error(CREATE_PERMISSION, id, code.0, code.1, Some(key), false, now, client);
        }
        let new = peers
            .iter()
            .map(|p| p.ip())
            .filter(|ip| !allocation.permissions.contains_key(ip))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if allocation.permissions.len() + new > self.config.permissions_per_allocation {
            return self.error(
                CREATE_PERMISSION,
                id,
                508,
                "Insufficient Capacity",
                Some(key),
                false,
                now,
                client,
            );
        }
        if let Some(allocation) = self.allocations.get_mut(&client) {
            for peer in peers {
                allocation.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME_MS);
            }
        }
        Builder::new(Class::Success, CREATE_PERMISSION, id).finish_with_integrity(key)
    }

    /// RFC 8656 §11.2: bind (or refresh) a channel to a peer, with its
    /// permission.
    fn channel_bind(&mut self, now: u64, client: SocketAddr, message: &Message<'_>, key: &[u8; 16]) -> Vec<u8> {
        let id = message.transaction_id;
        let bad = |s: &mut Self| s.error(CHANNEL_BIND, id, 400, "Bad Request", Some(key), false, now, client);
        let Some(allocation) = self.allocations.get(&client) else {
            return self.error(
                CHANNEL_BIND,
                id,
                437,
                "Allocation Mismatch",
                Some(key),
                false,
                now,
                client,
            );
        };
        let channel = match message.attribute(turn::CHANNEL_NUMBER) {
            Some([a, b, ..]) if CHANNELS.contains(&u16::from_be_bytes([*a, *b])) => u16::from_be_bytes([*a, *b]),
            _ => return bad(self),
        };
        let Ok(peer) = message.xor_address(turn::XOR_PEER_ADDRESS) else {
            return bad(self);
        };
        if let Some(code) = self.peer_refusal(allocation.relayed, &[peer]) {
            return self.error(CHANNEL_BIND, id, code.0, code.1, Some(key), false, now, client);
        }
        let bound_elsewhere = allocation.channels.get(&channel).is_some_and(|(p, _)| *p != peer)
            || allocation.channel_of.get(&peer).is_some_and(|c| *c != channel);
        if bound_elsewhere {
            return bad(self);
        }
        let new_channel = !allocation.channels.contains_key(&channel);
        let new_permission = !allocation.permissions.contains_key(&peer.ip());
        if new_channel && allocation.channels.len() >= self.config.channels_per_allocation
            || new_permission && allocation.permissions.len() >= self.config.permissions_per_allocation
        {
            return self.error(
                CHANNEL_BIND,
                id,
                508,
                "Insufficient Capacity",
                Some(key),
                false,
                now,
                client,
            );
        }
        if let Some(allocation) = self.allocations.get_mut(&client) {
            allocation.channels.insert(channel, (peer, now + CHANNEL_LIFETIME_MS));
            allocation.channel_of.insert(peer, channel);
            allocation.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME_MS);
        }
        Builder::new(Class::Success, CHANNEL_BIND, id).finish_with_integrity(key)
    }

    /// Why a client may not relay to these peers: another family than its
    /// relayed address (443), or an address no datagram may go to or one
    /// of this relay's own relayed addresses (403: a loop through the
    /// relay, RFC 8656 §21.1.5).
    fn peer_refusal(&self, relayed: SocketAddr, peers: &[SocketAddr]) -> Option<(u16, &'static str)> {
        if peers.iter().any(|p| family(p) != family(&relayed)) {
            return Some((443, "Peer Address Family Mismatch"));
        }
        let own = |p: &SocketAddr| self.config.relayed.iter().any(|r| r.ip() == p.ip());
        peers
            .iter()
            .any(|p| !answerable(*p) || own(p))
            .then_some((403, "Forbidden"))
    }

    /// An error answer; with a REALM and a fresh NONCE when `challenge`
    /// (401, 438), with MESSAGE-INTEGRITY when the request was
    /// authenticated (`key`).
    #[allow(clippy::too_many_arguments)]
    fn error(
        &self,
        method: u16,
        id: [u8; 12],
        code: u16,
        reason: &str,
        key: Option<&[u8; 16]>,
        challenge: bool,
        now: u64,
        client: SocketAddr,
    ) -> Vec<u8> {
        let mut value = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        value.extend_from_slice(reason.as_bytes());
        let mut builder = Builder::new(Class::Error, method, id).attribute(attribute::ERROR_CODE, &value);
        if challenge {
            builder = builder
                .attribute(attribute::REALM, self.config.realm.as_bytes())
                .attribute(attribute::NONCE, self.nonce(now, client).as_bytes());
        }
        match key {
            Some(key) => builder.finish_with_integrity(key),
            None => builder.finish(),
        }
    }

    /// A nonce: when it was issued and a MAC of that and the client's
    /// address.
    fn nonce(&self, issued: u64, client: SocketAddr) -> String {
        format!("{issued:016x}{}", hex(&self.nonce_mac(issued, client)))
    }

    fn nonce_mac(&self, issued: u64, client: SocketAddr) -> [u8; 8] {
        use hmac::{KeyInit, Mac};
        let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&self.nonce_secret) else {
            return [0; 8];
        };
        mac.update(&issued.to_be_bytes());
        mac.update(client.to_string().as_bytes());
        let full: [u8; 20] = mac.finalize().into_bytes().into();
        let mut short = [0u8; 8];
        short.copy_from_slice(&full[..8]);
        short
    }

    fn nonce_valid(&self, now: u64, client: SocketAddr, nonce: &[u8]) -> bool {
        let Some(issued) = nonce
            .get(..16)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            return false;
        };
        let fresh = issued <= now && now - issued < NONCE_LIFETIME_MS;
        fresh && nonce.len() == 32 && nonce[16..] == *hex(&self.nonce_mac(issued, client)).as_bytes()
    }

    fn remove_allocation(&mut self, client: SocketAddr) {
        if let Some(allocation) = self.allocations.remove(&client) {
            self.by_relayed.remove(&allocation.relayed);
            self.free.push(allocation.relayed);
            if let Some(count) = self.per_user.get_mut(&allocation.username) {
                *count -= 1;
                if *count == 0 {
                    self.per_user.remove(&allocation.username);
                }
            }
        }
    }

    /// The next expiry of an allocation, permission or channel.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.allocations
            .values()
            .flat_map(|a| {
                std::iter::once(a.expires)
                    .chain(a.permissions.values().copied())
                    .chain(a.channels.values().map(|(_, until)| *until))
            })
            .min()
    }

    /// Ends what expired by `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        let expired: Vec<SocketAddr> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(c, _)| *c)
            .collect();
        for client in expired {
            self.remove_allocation(client);
        }
        for allocation in self.allocations.values_mut() {
            allocation.permissions.retain(|_, until| *until > now);
            let ended: Vec<u16> = allocation
                .channels
                .iter()
                .filter(|(_, (_, until))| *until <= now)
                .map(|(c, _)| *c)
                .collect();
            for channel in ended {
                if let Some((peer, _)) = allocation.channels.remove(&channel) {
                    allocation.channel_of.remove(&peer);
                }
            }
        }
    }

    /// The user whose allocation `client` has.
    pub fn user_of(&self, client: SocketAddr) -> Option<&str> {
        self.allocations.get(&client).map(|a| a.username.as_str())
    }
}

/// RFC 8656 §7.2: min(requested, maximum), and the default if that is
/// less.
fn lifetime_s(message: &Message<'_>) -> u32 {
    let requested = match message.attribute(super::attribute::LIFETIME) {
        Some([a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => DEFAULT_LIFETIME_S,
    };
    requested.clamp(DEFAULT_LIFETIME_S, MAX_LIFETIME_S)
}

/// The comprehension-required attributes (below 0x8000) a TURN request
/// carries that this server does not take: RFC 8489 §6.3.1's 420.
/// EVEN-PORT, RESERVATION-TOKEN and DONT-FRAGMENT are among them (RFC 8656
/// §7.2: a server that does not support them answers 420).
fn unknown_comprehension_required(message: &Message<'_>) -> Vec<u16> {
    const UNDERSTOOD: &[u16] = &[
        attribute::USERNAME,
        attribute::MESSAGE_INTEGRITY,
        attribute::MESSAGE_INTEGRITY_SHA256,
        attribute::REALM,
        attribute::NONCE,
        attribute::XOR_MAPPED_ADDRESS,
        turn::CHANNEL_NUMBER,
        turn::LIFETIME,
        turn::XOR_PEER_ADDRESS,
        turn::DATA,
        turn::REQUESTED_TRANSPORT,
        turn::REQUESTED_ADDRESS_FAMILY,
    ];
    message
        .attributes()
        .flatten()
        .map(|a| a.kind)
        .filter(|k| *k < 0x8000 && !UNDERSTOOD.contains(k))
        .collect()
}

/// A transaction id for a Data indication: nobody answers one, so ids
/// need only differ (RFC 8489 §6); a count does.
fn indication_id(count: &mut u64) -> [u8; 12] {
    *count += 1;
    let mut id = [0u8; 12];
    id[4..].copy_from_slice(&count.to_be_bytes());
    id
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes a second, with a burst of two seconds' worth.
struct TokenBucket {
    rate: u64,
    tokens: u64,
    last: u64,
}

impl TokenBucket {
    fn new(now: u64, rate: u64) -> TokenBucket {
        TokenBucket {
            rate,
            tokens: 2 * rate,
            last: now,
        }
    }

    fn take(&mut self, now: u64, bytes: u64) -> bool {
        let refill = now.saturating_sub(self.last) * self.rate / 1_000;
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(2 * self.rate);
            self.last = now;
        }
        if self.tokens >= bytes {
            self.tokens -= bytes;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests;
