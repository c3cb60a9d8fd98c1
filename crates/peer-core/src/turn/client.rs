//! A TURN client (RFC 8656 over UDP), sans-IO: what a peer behind a NAT
//! runs against a relay to get a relayed address for its ICE candidates.
//! Every datagram it makes goes to the one server it was made for;
//! datagrams from the server come back in through [`TurnClient::receive`].
//!
//! - The first Allocate goes without credentials; the 401 names the realm
//!   and a nonce, and every request after carries them (RFC 8489 §9.2.3);
//!   a 438 brings a new nonce and the request is sent again.
//! - Requests are retransmitted at 500 ms, doubling, seven times in all
//!   (RFC 8489 §6.2.1); one unanswered ends the allocation (an event says
//!   so).
//! - The allocation is refreshed a minute before it ends, permissions
//!   every 4 minutes (they last 5), channels every 9 (they last 10).
//! - Sending to a peer needs its permission installed; a bound channel
//!   carries data as ChannelData, else a Send indication does.

use super::{attribute as turn, channel_data, long_term_key, parse_channel_data, CHANNELS};
use super::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, DATA, REFRESH, SEND, UDP};
use crate::stun::message::{attribute, Builder, Class, Message};
use overlay::Entropy;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// RFC 8489 §6.2.1: the first retransmission timeout and the number of
/// transmissions (Rc).
pub const RTO_MS: u64 = 500;
pub const TRANSMISSIONS: u32 = 7;
/// Refresh this long before the server would end something.
const REFRESH_MARGIN_MS: u64 = 60_000;
const PERMISSION_REFRESH_MS: u64 = 240_000;
const CHANNEL_REFRESH_MS: u64 = 540_000;

/// What the client tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The relay gave `relayed`, and saw this client at `mapped`.
    Allocated {
        relayed: SocketAddr,
        mapped: SocketAddr,
    },
    PermissionCreated(IpAddr),
    ChannelBound {
        peer: SocketAddr,
        channel: u16,
    },
    /// The allocation is gone or never came, for this reason.
    Failed(String),
    /// A permission or channel could not be had or kept; it is forgotten.
    Lost(String),
}

/// What a datagram from the server was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Data a peer sent to the relayed address.
    Data { peer: SocketAddr, data: Vec<u8> },
    /// A response or something else for the client itself.
    Handled,
    /// Not for this client (another transaction, junk).
    Ignored,
}

/// Why `send` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no allocation yet")]
    NotAllocated,
    #[error("no permission for {0} yet")]
    NoPermission(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Allocate,
    Refresh { lifetime: u32 },
    Permission(IpAddr),
    Channel { peer: SocketAddr, channel: u16 },
}

struct Pending {
    request: Request,
    bytes: Vec<u8>,
    transmissions: u32,
    retransmit_at: u64,
    /// 401s and 438s answered with credentials so far.
    challenges: u8,
}

struct Allocation {
    relayed: SocketAddr,
    refresh_at: u64,
}

/// One client's allocation at one TURN server.
pub struct TurnClient {
    username: String,
    password: String,
    /// REALM and NONCE from the last challenge, and the key for them.
    realm: Option<(Vec<u8>, Vec<u8>, [u8; 16])>,
    entropy: Entropy,
    allocation: Option<Allocation>,
    /// Permissions installed, and when to refresh each.
    permissions: HashMap<IpAddr, u64>,
    /// Channels bound: peer → (channel, when to refresh).
    channels: HashMap<SocketAddr, (u16, u64)>,
    next_channel: u16,
    pending: HashMap<[u8; 12], Pending>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    failed: bool,
}

impl TurnClient {
    /// A client of the server that knows `username` with `password`;
    /// transaction ids from `entropy`.
    pub fn new(username: &str, password: &str, entropy: Entropy) -> TurnClient {
        TurnClient {
            username: username.to_string(),
            password: password.to_string(),
            realm: None,
            entropy,
            allocation: None,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            next_channel: *CHANNELS.start(),
            pending: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            failed: false,
        }
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.allocation.as_ref().map(|a| a.relayed)
    }

    pub fn has_permission(&self, ip: IpAddr) -> bool {
        self.permissions.contains_key(&ip)
    }

    /// Asks for an allocation (RFC 8656 §7.1).
    pub fn allocate(&mut self, now: u64) {
        self.start(now, Request::Allocate);
    }

    /// Installs a permission for `ip` (RFC 8656 §9.1).
    pub fn create_permission(&mut self, now: u64, ip: IpAddr) {
        let asked = self.pending.values().any(|p| p.request == Request::Permission(ip));
        if !asked && !self.permissions.contains_key(&ip) {
            self.start(now, Request::Permission(ip));
        }
    }

    /// Binds a channel to `peer` (RFC 8656 §11.1), with its permission.
    pub fn bind_channel(&mut self, now: u64, peer: SocketAddr) {
        let asked = self
            .pending
            .values()
            .any(|p| matches!(p.request, Request::Channel { peer: q, .. } if q == peer));
        if asked || self.channels.contains_key(&peer) || self.next_channel > *CHANNELS.end() {
            return;
        }
        let channel = self.next_channel;
        self.next_channel += 1;
        self.start(now, Request::Channel { peer, channel });
    }

    /// Sends `data` to `peer` through the relay.
    pub fn send(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), SendError> {
        if self.allocation.is_none() {
            return Err(SendError::NotAllocated);
        }
        if !self.permissions.contains_key(&peer.ip()) {
            return Err(SendError::NoPermission(peer.ip()));
        }
        let bytes = match self.channels.get(&peer) {
            Some((channel, _)) => channel_data(*channel, data),
            None => {
                let mut id = [0u8; 12];
                (self.entropy.0)(&mut id);
                Builder::new(Class::Indication, SEND, id)
                    .xor_address(turn::XOR_PEER_ADDRESS, peer)
                    .attribute(turn::DATA, data)
                    .finish()
            }
        };
        self.transmits.push_back(bytes);
        Ok(())
    }

    /// Ends the allocation (a Refresh with lifetime 0, RFC 8656 §8.1).
    pub fn close(&mut self, now: u64) {
        if self.allocation.is_some() {
            self.start(now, Request::Refresh { lifetime: 0 });
        }
    }

    /// The next datagram for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn start(&mut self, now: u64, request: Request) {
        if self.failed {
            return;
        }
        let mut id = [0u8; 12];
        (self.entropy.0)(&mut id);
        let bytes = self.encode(request, id);
        self.transmits.push_back(bytes.clone());
        self.pending.insert(
            id,
            Pending {
                request,
                bytes,
                transmissions: 1,
                retransmit_at: now + RTO_MS,
                challenges: 0,
            },
        );
    }

    fn encode(&self, request: Request, id: [u8; 12]) -> Vec<u8> {
        let builder = match request {
            Request::Allocate => {
                Builder::new(Class::Request, ALLOCATE, id).attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0])
            }
            Request::Refresh { lifetime } => {
                Builder::new(Class::Request, REFRESH, id).attribute(turn::LIFETIME, &lifetime.to_be_bytes())
            }
            Request::Permission(ip) => Builder::new(Class::Request, CREATE_PERMISSION, id)
                .xor_address(turn::XOR_PEER_ADDRESS, SocketAddr::new(ip, 0)),
            Request::Channel { peer, channel } => Builder::new(Class::Request, CHANNEL_BIND, id)
                .attribute(turn::CHANNEL_NUMBER, &[(channel >> 8) as u8, channel as u8, 0, 0])
                .xor_address(turn::XOR_PEER_ADDRESS, peer),
        };
        match &self.realm {
            Some((realm, nonce, key)) => builder
                .attribute(attribute::USERNAME, self.username.as_bytes())
                .attribute(attribute::REALM, realm)
                .attribute(attribute::NONCE, nonce)
                .finish_with_integrity(key),
            None => builder.finish(),
        }
    }

    /// A datagram from the server.
    pub fn receive(&mut self, now: u64, datagram: &[u8]) -> Received {
        if let Some((channel, data)) = parse_channel_data(datagram) {
            return match self.channels.iter().find(|(_, (c, _))| *c == channel) {
                Some((peer, _)) => Received::Data {
                    peer: *peer,
                    data: data.to_vec(),
                },
                None => Received::Ignored,
            };
        }
        let Ok(message) = Message::decode(datagram) else {
            return Received::Ignored;
        };
        if message.class == Class::Indication {
            if message.method != DATA || self.allocation.is_none() {
                return Received::Ignored;
            }
            return match (
                message.xor_address(turn::XOR_PEER_ADDRESS),
                message.attribute(turn::DATA),
            ) {
                (Ok(peer), Some(data)) if self.permissions.contains_key(&peer.ip()) => Received::Data {
                    peer,
                    data: data.to_vec(),
                },
                _ => Received::Ignored,
            };
        }
        let Some(pending) = self.pending.remove(&message.transaction_id) else {
            return Received::Ignored;
        };
        // A response from anyone who knows the key, or an error before
        // there is one (the challenge itself).
        let authentic = match &self.realm {
            Some((_, _, key)) => message.integrity_matches(key),
            None => false,
        };
        match message.class {
            Class::Success if authentic => {
                self.succeeded(now, pending.request, &message);
                Received::Handled
            }
            Class::Error => self.refused(now, pending, &message, authentic),
            _ => {
                // Forged or garbled: keep waiting for the real answer.
                self.pending.insert(message.transaction_id, pending);
                Received::Ignored
            }
        }
    }

    fn succeeded(&mut self, now: u64, request: Request, message: &Message<'_>) {
        match request {
            Request::Allocate => {
                let (Ok(relayed), Ok(mapped)) = (
                    message.xor_address(turn::XOR_RELAYED_ADDRESS),
                    message.xor_mapped_address(),
                ) else {
                    return self.fail("the Allocate answer lacks an address".into());
                };
                let lifetime = lifetime_ms(message);
                self.allocation = Some(Allocation {
                    relayed,
                    refresh_at: now + lifetime.saturating_sub(REFRESH_MARGIN_MS),
                });
                self.events.push_back(ClientEvent::Allocated { relayed, mapped });
            }
            Request::Refresh { lifetime: 0 } => {
                self.allocation = None;
                self.permissions.clear();
                self.channels.clear();
            }
            Request::Refresh { .. } => {
                let lifetime = lifetime_ms(message);
                if let Some(allocation) = &mut self.allocation {
                    allocation.refresh_at = now + lifetime.saturating_sub(REFRESH_MARGIN_MS);
                }
            }
            Request::Permission(ip) => {
                if self.permissions.insert(ip, now + PERMISSION_REFRESH_MS).is_none() {
                    self.events.push_back(ClientEvent::PermissionCreated(ip));
                }
            }
            Request::Channel { peer, channel } => {
                self.permissions.insert(peer.ip(), now + PERMISSION_REFRESH_MS);
                if self
                    .channels
                    .insert(peer, (channel, now + CHANNEL_REFRESH_MS))
                    .is_none()
                {
                    self.events.push_back(ClientEvent::ChannelBound { peer, channel });
                }
            }
        }
    }

    /// RFC 8489 §9.2.5: a 401 to a request without credentials, or a 438
    /// (at most twice), naming a realm and a nonce, is answered by the
    /// same request with credentials; once credentials are
    /// known, another error counts only if authenticated (anyone on the
    /// path could send one), and a 401 to a request that carried them
    /// means they are wrong.
    fn refused(&mut self, now: u64, pending: Pending, message: &Message<'_>, authentic: bool) -> Received {
        let code = match message.attribute(attribute::ERROR_CODE) {
            Some([_, _, class, number, ..]) => u16::from(*class) * 100 + u16::from(*number),
            _ => 0,
        };
        let challenge = matches!(code, 401 | 438);
        let retry = match code {
            401 => pending.challenges == 0,
            438 => pending.challenges < 2,
            _ => false,
        };
        if retry {
            if let (Some(realm), Some(nonce)) =
                (message.attribute(attribute::REALM), message.attribute(attribute::NONCE))
            {
                let key = long_term_key(&self.username, &String::from_utf8_lossy(realm), &self.password);
                self.realm = Some((realm.to_vec(), nonce.to_vec(), key));
                let mut id = [0u8; 12];
                (self.entropy.0)(&mut id);
                let bytes = self.encode(pending.request, id);
                self.transmits.push_back(bytes.clone());
                let retry = Pending {
                    request: pending.request,
                    bytes,
                    transmissions: 1,
                    retransmit_at: now + RTO_MS,
                    challenges: pending.challenges + 1,
                };
                self.pending.insert(id, retry);
                return Received::Handled;
            }
        }
        if !challenge && !authentic && self.realm.is_some() {
            self.pending.insert(message.transaction_id, pending);
            return Received::Ignored;
        }
        let reason = format!("{:?} refused with {code}", pending.request);
        self.lost(pending.request, reason);
        Received::Handled
    }

    /// A request that will not succeed: the allocation fails with an
    /// Allocate or Refresh; a permission or channel (new or refreshed) is
    /// forgotten, so `send` stops using it and asking again is possible.
    fn lost(&mut self, request: Request, reason: String) {
        match request {
            Request::Allocate | Request::Refresh { .. } => self.fail(reason),
            Request::Permission(ip) => {
                self.permissions.remove(&ip);
                self.events.push_back(ClientEvent::Lost(reason));
            }
            Request::Channel { peer, .. } => {
                self.channels.remove(&peer);
                self.events.push_back(ClientEvent::Lost(reason));
            }
        }
    }

    fn fail(&mut self, reason: String) {
        if !self.failed {
            self.failed = true;
            self.allocation = None;
            self.pending.clear();
            self.events.push_back(ClientEvent::Failed(reason));
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        if self.failed {
            return None;
        }
        let retransmits = self.pending.values().map(|p| p.retransmit_at);
        let refresh = self.allocation.iter().map(|a| a.refresh_at);
        let permissions = self.permissions.values().copied();
        let channels = self.channels.values().map(|(_, at)| *at);
        retransmits.chain(refresh).chain(permissions).chain(channels).min()
    }

    pub fn handle_timeout(&mut self, now: u64) {
        let due: Vec<[u8; 12]> = self
            .pending
            .iter()
            .filter(|(_, p)| p.retransmit_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(pending) = self.pending.get_mut(&id) else {
                continue;
            };
            if pending.transmissions >= TRANSMISSIONS {
                let request = pending.request;
                self.pending.remove(&id);
                self.lost(request, format!("the relay did not answer {request:?}"));
                if self.failed {
                    return;
                }
                continue;
            }
            pending.transmissions += 1;
            pending.retransmit_at = now + (RTO_MS << (pending.transmissions - 1));
            self.transmits.push_back(pending.bytes.clone());
        }
        if self.allocation.as_ref().is_some_and(|a| a.refresh_at <= now) {
            if let Some(allocation) = &mut self.allocation {
                allocation.refresh_at = u64::MAX;
            }
            self.start(now, Request::Refresh { lifetime: 600 });
        }
        let stale: Vec<IpAddr> = self
            .permissions
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in stale {
            self.permissions.insert(ip, u64::MAX);
            self.start(now, Request::Permission(ip));
        }
        let stale: Vec<(SocketAddr, u16)> = self
            .channels
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(peer, (channel, _))| (*peer, *channel))
            .collect();
        for (peer, channel) in stale {
            self.channels.insert(peer, (channel, u64::MAX));
            self.start(now, Request::Channel { peer, channel });
        }
    }
}

/// The LIFETIME of an answer, in ms (the default if absent).
fn lifetime_ms(message: &Message<'_>) -> u64 {
    let seconds = match message.attribute(turn::LIFETIME) {
        Some([a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => super::server::DEFAULT_LIFETIME_S,
    };
    u64::from(seconds) * 1_000
}

#[cfg(test)]
mod tests;
