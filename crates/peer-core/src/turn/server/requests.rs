//! The requests of RFC 8656, each authenticated first: Allocate (§7.2,
//! with EVEN-PORT and RESERVATION-TOKEN), Refresh (§8.2),
//! CreatePermission (§9.2) and ChannelBind (§11.2).

use super::auth::Auth;
use super::{
    family, turn, Allocation, TokenBucket, TurnServer, ACCEPTED_CHANNELS, ALLOCATE, CHANNEL_BIND, CHANNEL_LIFETIME_MS,
    CREATE_PERMISSION, DEFAULT_LIFETIME_S, MAX_LIFETIME_S, PERMISSION_LIFETIME_MS, REFRESH, UDP,
};
use crate::stun::message::{attribute, binding_success, unknown_attributes, Builder, Class, Message, BINDING};
use crate::stun::server::answerable;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

/// RFC 8656 §7.2: a reserved port waits this long for its Allocate.
pub const RESERVATION_LIFETIME_MS: u64 = 30_000;

/// What every answer to one request needs.
struct Answering {
    method: u16,
    id: [u8; 12],
    client: SocketAddr,
    now: u64,
    /// The key the request was authenticated with; answers carry
    /// MESSAGE-INTEGRITY made with it.
    key: Option<[u8; 16]>,
}

impl Answering {
    fn success(&self) -> Builder {
        Builder::new(Class::Success, self.method, self.id)
    }

    fn finish(&self, builder: Builder) -> Vec<u8> {
        match &self.key {
            Some(key) => builder.finish_with_integrity(key),
            None => builder.finish(),
        }
    }
}

impl TurnServer {
    pub(super) fn request(&mut self, now: u64, client: SocketAddr, message: &Message<'_>) {
        let mut answering = Answering {
            method: message.method,
            id: message.transaction_id,
            client,
            now,
            key: None,
        };
        let unknown = unknown_comprehension_required(message);
        if !unknown.is_empty() {
            let answer = unknown_attributes(message.method, answering.id, &unknown);
            return self.answer_unauthenticated(now, client, answer);
        }
        if message.method == BINDING {
            return self.answer_unauthenticated(now, client, binding_success(answering.id, client));
        }
        if ![ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND].contains(&message.method) {
            let answer = self.refuse(&answering, 400, "Bad Request");
            return self.answer_unauthenticated(now, client, answer);
        }
        let (username, key) = match self.authenticate(now, client, message) {
            Auth::Ok { username, key } => (username, key),
            Auth::Refused(code, reason) => {
                let answer = self.refuse(&answering, code, reason);
                return self.answer_unauthenticated(now, client, answer);
            }
        };
        answering.key = Some(key);
        // RFC 8489 §9.2.4, RFC 8656 §6.2: an allocation's requests come
        // from its user alone.
        let answer = match self.allocations.get(&client) {
            Some(allocation) if allocation.username != username => self.refuse(&answering, 441, "Wrong Credentials"),
            _ => match message.method {
                ALLOCATE => self.allocate(&answering, message, username),
                REFRESH => self.refresh(&answering, message),
                CREATE_PERMISSION => self.create_permission(&answering, message),
                _ => self.channel_bind(&answering, message),
            },
        };
        self.answer(client, answer);
    }

    /// An error answer: with a REALM and a fresh NONCE for 401 and 438
    /// (RFC 8489 §9.2.4), with MESSAGE-INTEGRITY once authenticated.
    fn refuse(&self, answering: &Answering, code: u16, reason: &str) -> Vec<u8> {
        let mut value = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        value.extend_from_slice(reason.as_bytes());
        let mut builder =
            Builder::new(Class::Error, answering.method, answering.id).attribute(attribute::ERROR_CODE, &value);
        if matches!(code, 401 | 438) && answering.key.is_none() {
            builder = builder
                .attribute(attribute::REALM, self.config.realm.as_bytes())
                .attribute(attribute::NONCE, self.nonce(answering.now, answering.client).as_bytes());
        }
        answering.finish(builder)
    }

    /// RFC 8656 §7.2.
    fn allocate(&mut self, answering: &Answering, message: &Message<'_>, username: String) -> Vec<u8> {
        let (now, client) = (answering.now, answering.client);
        if let Some(allocation) = self.allocations.get(&client) {
            return if allocation.allocate_answer.0 == answering.id {
                allocation.allocate_answer.1.clone()
            } else {
                self.refuse(answering, 437, "Allocation Mismatch")
            };
        }
        match message.attribute(turn::REQUESTED_TRANSPORT) {
            Some([protocol, ..]) if *protocol == UDP => {}
            Some(_) => return self.refuse(answering, 442, "Unsupported Transport Protocol"),
            None => return self.refuse(answering, 400, "Bad Request"),
        }
        let wanted_family = match message.attribute(turn::REQUESTED_ADDRESS_FAMILY) {
            Some([f, ..]) => *f,
            Some(_) => return self.refuse(answering, 400, "Bad Request"),
            None => 0x01,
        };
        let even_port = message.attribute(turn::EVEN_PORT);
        let token = message.attribute(turn::RESERVATION_TOKEN);
        if even_port.is_some() && token.is_some() || token.is_some_and(|t| t.len() != 8) {
            return self.refuse(answering, 400, "Bad Request");
        }
        if self.per_user.get(&username).copied().unwrap_or(0) >= self.config.allocations_per_user {
            return self.refuse(answering, 486, "Allocation Quota Reached");
        }
        if !self.config.relayed.iter().any(|a| family(a) == wanted_family) {
            return self.refuse(answering, 440, "Address Family not Supported");
        }
        let picked = match (even_port, token) {
            (_, Some(token)) => self.take_reservation(now, token),
            (Some(value), None) => {
                let reserve_next = value.first().is_some_and(|b| b & 0x80 != 0);
                // The reserved port counts as one of the user's allocations.
                if reserve_next
                    && self.per_user.get(&username).copied().unwrap_or(0) + 1 >= self.config.allocations_per_user
                {
                    return self.refuse(answering, 486, "Allocation Quota Reached");
                }
                self.take_even_port(now, wanted_family, reserve_next, &username)
            }
            (None, None) => self
                .free
                .iter()
                .rposition(|a| family(a) == wanted_family)
                .map(|slot| (self.free.remove(slot), None)),
        };
        let Some((relayed, reservation)) = picked else {
            return self.refuse(answering, 508, "Insufficient Capacity");
        };
        let lifetime = lifetime_s(message);
        let mut builder = answering
            .success()
            .xor_address(turn::XOR_RELAYED_ADDRESS, relayed)
            .attribute(turn::LIFETIME, &lifetime.to_be_bytes());
        if let Some(token) = reservation {
            builder = builder.attribute(turn::RESERVATION_TOKEN, &token);
        }
        let answer = answering.finish(
            builder
                .xor_mapped_address(client)
                .attribute(turn::SOFTWARE, super::SOFTWARE),
        );
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
                allocate_answer: (answering.id, answer.clone()),
            },
        );
        answer
    }

    /// RFC 8656 §7.2 step 5: a free relayed address with an even port;
    /// with `reserve_next`, the next port too, held for a later Allocate
    /// that names the token this returns.
    fn take_even_port(
        &mut self,
        now: u64,
        wanted_family: u8,
        reserve_next: bool,
        user: &str,
    ) -> Option<(SocketAddr, Option<[u8; 8]>)> {
        let next = |a: &SocketAddr| SocketAddr::new(a.ip(), a.port().wrapping_add(1));
        let slot = self.free.iter().rposition(|a| {
            family(a) == wanted_family && a.port() % 2 == 0 && (!reserve_next || self.free.contains(&next(a)))
        })?;
        let even = self.free.remove(slot);
        if !reserve_next {
            return Some((even, None));
        }
        let odd = next(&even);
        self.free.retain(|a| *a != odd);
        self.reservations_made += 1;
        let token = self.mac(&[b"reservation", &self.reservations_made.to_be_bytes()]);
        self.reservations
            .insert(token, (odd, now + RESERVATION_LIFETIME_MS, user.to_string()));
        *self.per_user.entry(user.to_string()).or_default() += 1;
        Some((even, Some(token)))
    }

    /// The address a RESERVATION-TOKEN holds, if it still does.
    fn take_reservation(&mut self, now: u64, token: &[u8]) -> Option<(SocketAddr, Option<[u8; 8]>)> {
        let token: [u8; 8] = token.try_into().ok()?;
        let (address, until, user) = self.reservations.remove(&token)?;
        // The allocation that takes it counts for its own user instead.
        self.uncount(&user);
        if until > now {
            Some((address, None))
        } else {
            self.free.push(address);
            None
        }
    }

    /// RFC 8656 §8.2: a new lifetime, or 0 to delete.
    fn refresh(&mut self, answering: &Answering, message: &Message<'_>) -> Vec<u8> {
        let (now, client) = (answering.now, answering.client);
        if !self.allocations.contains_key(&client) {
            return self.refuse(answering, 437, "Allocation Mismatch");
        }
        let lifetime = if message.attribute(turn::LIFETIME) == Some(&[0, 0, 0, 0]) {
            self.remove_allocation(client);
            0
        } else {
            let lifetime = lifetime_s(message);
            if let Some(allocation) = self.allocations.get_mut(&client) {
                allocation.expires = now + u64::from(lifetime) * 1_000;
            }
            lifetime
        };
        answering.finish(answering.success().attribute(turn::LIFETIME, &lifetime.to_be_bytes()))
    }

    /// RFC 8656 §9.2: permissions for each XOR-PEER-ADDRESS's IP, all or
    /// none.
    fn create_permission(&mut self, answering: &Answering, message: &Message<'_>) -> Vec<u8> {
        let (now, client) = (answering.now, answering.client);
        let Some(allocation) = self.allocations.get(&client) else {
            return self.refuse(answering, 437, "Allocation Mismatch");
        };
        let peers: Result<Vec<SocketAddr>, _> = message.xor_addresses(turn::XOR_PEER_ADDRESS).into_iter().collect();
        let peers = match peers {
            Ok(peers) if !peers.is_empty() => peers,
            _ => return self.refuse(answering, 400, "Bad Request"),
        };
        // §9.2: a permission is for an IP address; the port is ignored
        // (what goes to the relay's own port is dropped when relayed).
        let ips: Vec<SocketAddr> = peers.iter().map(|p| SocketAddr::new(p.ip(), 9)).collect();
        if let Some((code, reason)) = self.peer_refusal(allocation.relayed, &ips) {
            return self.refuse(answering, code, reason);
        }
        let new: BTreeSet<_> = peers
            .iter()
            .map(|p| p.ip())
            .filter(|ip| !allocation.permissions.contains_key(ip))
            .collect();
        if allocation.permissions.len() + new.len() > self.config.permissions_per_allocation {
            return self.refuse(answering, 508, "Insufficient Capacity");
        }
        if let Some(allocation) = self.allocations.get_mut(&client) {
            for peer in peers {
                allocation.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME_MS);
            }
        }
        answering.finish(answering.success())
    }

    /// RFC 8656 §11.2: bind (or refresh) a channel to a peer, with its
    /// permission.
    fn channel_bind(&mut self, answering: &Answering, message: &Message<'_>) -> Vec<u8> {
        let (now, client) = (answering.now, answering.client);
        let Some(allocation) = self.allocations.get(&client) else {
            return self.refuse(answering, 437, "Allocation Mismatch");
        };
        let channel = match message.attribute(turn::CHANNEL_NUMBER) {
            Some([a, b, ..]) if ACCEPTED_CHANNELS.contains(&u16::from_be_bytes([*a, *b])) => {
                u16::from_be_bytes([*a, *b])
            }
            _ => return self.refuse(answering, 400, "Bad Request"),
        };
        let Ok(peer) = message.xor_address(turn::XOR_PEER_ADDRESS) else {
            return self.refuse(answering, 400, "Bad Request");
        };
        if let Some((code, reason)) = self.peer_refusal(allocation.relayed, &[peer]) {
            return self.refuse(answering, code, reason);
        }
        let bound_elsewhere = allocation.channels.get(&channel).is_some_and(|(p, _)| *p != peer)
            || allocation.channel_of.get(&peer).is_some_and(|c| *c != channel);
        if bound_elsewhere {
            return self.refuse(answering, 400, "Bad Request");
        }
        let new_channel = !allocation.channels.contains_key(&channel);
        let new_permission = !allocation.permissions.contains_key(&peer.ip());
        if new_channel && allocation.channels.len() >= self.config.channels_per_allocation
            || new_permission && allocation.permissions.len() >= self.config.permissions_per_allocation
        {
            return self.refuse(answering, 508, "Insufficient Capacity");
        }
        if let Some(allocation) = self.allocations.get_mut(&client) {
            allocation.channels.insert(channel, (peer, now + CHANNEL_LIFETIME_MS));
            allocation.channel_of.insert(peer, channel);
            allocation.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME_MS);
        }
        answering.finish(answering.success())
    }

    /// Why a client may not relay to these peers: another family than its
    /// relayed address (443), or an address no datagram may go to, where
    /// this server listens (a loop), a link-local one, or a loopback one
    /// unless allowed (403, RFC 8656 §21.1.5).
    fn peer_refusal(&self, relayed: SocketAddr, peers: &[SocketAddr]) -> Option<(u16, &'static str)> {
        if peers.iter().any(|p| family(p) != family(&relayed)) {
            return Some((443, "Peer Address Family Mismatch"));
        }
        let local = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(v4) => v4.is_link_local(),
            std::net::IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        };
        let forbidden = |p: &SocketAddr| {
            !answerable(*p)
                || self.config.listening.contains(p)
                || local(p.ip())
                || p.ip().is_loopback() && !self.config.allow_loopback_peers
        };
        peers.iter().any(forbidden).then_some((403, "Forbidden"))
    }
}

/// RFC 8656 §7.2: min(requested, maximum), and the default if that is
/// less.
fn lifetime_s(message: &Message<'_>) -> u32 {
    let requested = match message.attribute(turn::LIFETIME) {
        Some([a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => DEFAULT_LIFETIME_S,
    };
    requested.clamp(DEFAULT_LIFETIME_S, MAX_LIFETIME_S)
}

/// The comprehension-required attributes (below 0x8000) a request carries
/// that this server does not take: RFC 8489 §6.3.1's 420. DONT-FRAGMENT
/// is among them (RFC 8656 §7.2: a server that cannot set DF answers 420).
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
        turn::EVEN_PORT,
        turn::RESERVATION_TOKEN,
    ];
    message
        .attributes()
        .flatten()
        .map(|a| a.kind)
        .filter(|k| *k < 0x8000 && !UNDERSTOOD.contains(k))
        .collect()
}
