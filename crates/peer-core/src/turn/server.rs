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

use super::{
    attribute as turn, family, ACCEPTED_CHANNELS, ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, DATA, REFRESH, SEND, UDP,
};
use crate::budget::SourceBudget;
use crate::stun::message::{Builder, Class, Message};
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
/// The software's name in answers.
const SOFTWARE: &[u8] = b"p2psip relay";

/// What a relay offers and how much of it one user gets.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// RFC 8489 §9.2: the realm of the credentials.
    pub realm: String,
    /// The relayed transport addresses the driver bound, one per
    /// allocation.
    pub relayed: Vec<SocketAddr>,
    /// Where the server itself listens: no peer may be there (a loop,
    /// RFC 8656 §21.1.5). Relayed addresses may be peers: two clients of
    /// one relay reach each other relay to relay (ICE's relay-relay pair).
    pub listening: Vec<SocketAddr>,
    /// Whether peers may be loopback addresses (tests, and a relay for
    /// processes on its own host); never by default, nor link-local ones
    /// (RFC 8656 §21.1.5: the relay would reach services meant for its
    /// host or link alone).
    pub allow_loopback_peers: bool,
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
            listening: Vec::new(),
            allow_loopback_peers: false,
            allocations_per_user: 8,
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
    /// Ports held by EVEN-PORT's R bit, by RESERVATION-TOKEN, and until
    /// when (RFC 8656 §7.2).
    /// The user who reserved counts it against their allocations.
    reservations: HashMap<[u8; 8], (SocketAddr, u64, String)>,
    reservations_made: u64,
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
            reservations: HashMap::new(),
            reservations_made: 0,
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
        // A permission is per IP: the relay's own port is refused here.
        if self.config.listening.contains(&peer) || !answerable(peer) {
            return self.drop("loop");
        }
        self.relayed_bytes += data.len() as u64;
        self.transmits.push_back(Transmit {
            from: From::Relayed(relayed),
            to: peer,
            bytes: data.to_vec(),
        });
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

    fn remove_allocation(&mut self, client: SocketAddr) {
        if let Some(allocation) = self.allocations.remove(&client) {
            self.by_relayed.remove(&allocation.relayed);
            self.free.push(allocation.relayed);
            self.uncount(&allocation.username);
        }
    }

    /// One allocation or reservation fewer for `user`.
    fn uncount(&mut self, user: &str) {
        if let Some(count) = self.per_user.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                self.per_user.remove(user);
            }
        }
    }

    /// The next expiry of an allocation, permission, channel or
    /// reservation.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.allocations
            .values()
            .flat_map(|a| {
                std::iter::once(a.expires)
                    .chain(a.permissions.values().copied())
                    .chain(a.channels.values().map(|(_, until)| *until))
            })
            .chain(self.reservations.values().map(|(_, until, _)| *until))
            .min()
    }

    /// Ends what expired by `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        let ended: Vec<[u8; 8]> = self
            .reservations
            .iter()
            .filter(|(_, (_, until, _))| *until <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in ended {
            if let Some((address, _, user)) = self.reservations.remove(&token) {
                self.free.push(address);
                self.uncount(&user);
            }
        }
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

    /// Ends the allocations of users the credentials no longer know (a
    /// user removed from the relay's node): their Send indications and
    /// ChannelData carry no credentials, so nothing else would stop them.
    pub fn revalidate(&mut self) {
        let gone: Vec<SocketAddr> = self
            .allocations
            .iter()
            .filter(|(_, a)| (self.credentials)(&a.username).is_none())
            .map(|(client, _)| *client)
            .collect();
        for client in gone {
            self.remove_allocation(client);
        }
    }

    /// The user whose allocation `client` has.
    pub fn user_of(&self, client: SocketAddr) -> Option<&str> {
        self.allocations.get(&client).map(|a| a.username.as_str())
    }
}

/// A transaction id for a Data indication: nobody answers one, so ids
/// need only differ (RFC 8489 §6); a count does.
fn indication_id(count: &mut u64) -> [u8; 12] {
    *count += 1;
    let mut id = [0u8; 12];
    id[4..].copy_from_slice(&count.to_be_bytes());
    id
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

mod auth;
mod requests;

#[cfg(test)]
mod tests;
