//! The STUN server every peer runs on its overlay UDP port (RFC 6940
//! §6.5.1.4: peers use their linked peers "like STUN servers"): it answers
//! Binding requests with the address they came from (RFC 8489 §6.3.1),
//! within budgets per source and in all, and hands responses and ICE
//! checks on to the peer core ([`StunServers`](super::servers::StunServers),
//! [`crate::ice`]).
//! Nothing it answers is larger than three times the request, and it
//! answers no more than [`PER_SOURCE`] requests a second to one address,
//! so a spoofed source gets little from it.

use super::message::{attribute, binding_success, unknown_attributes, Class, Message, BINDING};
use crate::budget::SourceBudget;
use std::net::{IpAddr, SocketAddr};

/// The largest datagram taken as a Binding request: 548 bytes, what RFC
/// 8489 §6.1 expects to fit any IPv4 path. Checks and plain requests are
/// under 150.
pub const MAX_REQUEST: usize = 548;
/// Requests answered and responses taken a second from one address (an
/// IPv6 source counts by its /64).
pub const PER_SOURCE: u32 = 20;
/// Requests answered and responses taken a second in all.
pub const TOTAL: u32 = 2_000;
/// Sources tracked in one second: beyond, new sources wait for the next.
pub const SOURCES: usize = 4_096;
const WINDOW_MS: u64 = 1_000;

/// What became of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// Send this back to where the request came from.
    Answer(Vec<u8>),
    /// For the peer core: a Binding response (to its STUN servers'
    /// requests or its ICE checks) or an ICE check (a request with
    /// USERNAME, RFC 8445 §7.2.2, which only an agent can answer).
    ForPeer,
    /// A Binding indication (RFC 8489 §6.3.2): a keepalive, nothing to do.
    Keepalive,
    Dropped(Dropped),
}

/// Why a datagram was dropped (counted by reason; never logged whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not a STUN message, or one that does not decode.
    Malformed,
    /// Larger than [`MAX_REQUEST`].
    Oversized,
    /// A method other than Binding (TURN belongs to relay peers' own port).
    NotBinding,
    /// From an address no answer may go to (port 0, unspecified,
    /// multicast, broadcast).
    BadSource,
    /// Over the budget of its source or of the server.
    OverBudget,
}

impl Dropped {
    /// The `reason` label of `p2psip_stun_dropped_total`.
    pub fn label(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::Oversized => "oversized",
            Dropped::NotBinding => "not_binding",
            Dropped::BadSource => "bad_source",
            Dropped::OverBudget => "over_budget",
        }
    }
}

/// Attribute types a Binding request may carry that require
/// comprehension (RFC 8489 §14, RFC 8445 §16.1); any other below 0x8000
/// gets 420 (RFC 8489 §6.3.1.1).
const UNDERSTOOD: [u16; 8] = [
    attribute::USERNAME,
    attribute::MESSAGE_INTEGRITY,
    attribute::MESSAGE_INTEGRITY_SHA256,
    attribute::USERHASH,
    attribute::REALM,
    attribute::NONCE,
    attribute::PRIORITY,
    attribute::USE_CANDIDATE,
];

/// The answering side, with its budgets.
#[derive(Debug)]
pub struct BindingServer {
    budget: SourceBudget,
}

impl Default for BindingServer {
    fn default() -> Self {
        BindingServer {
            budget: SourceBudget::new(PER_SOURCE, TOTAL, SOURCES, WINDOW_MS),
        }
    }
}

impl BindingServer {
    /// What to do with `datagram` from `from` at `now` (ms).
    pub fn serve(&mut self, now: u64, datagram: &[u8], from: SocketAddr) -> Served {
        // An IPv4 sender on a dual-stack socket shows as ::ffff:a.b.c.d.
        let from = canonical(from);
        if datagram.len() > MAX_REQUEST {
            return Served::Dropped(Dropped::Oversized);
        }
        let Ok(message) = Message::decode(datagram) else {
            return Served::Dropped(Dropped::Malformed);
        };
        if message.method != BINDING {
            return Served::Dropped(Dropped::NotBinding);
        }
        if message.class == Class::Indication {
            return Served::Keepalive;
        }
        if !answerable(from) {
            return Served::Dropped(Dropped::BadSource);
        }
        // Responses count too: each costs the engine a look.
        if !self.budget.take(now, from.ip()) {
            return Served::Dropped(Dropped::OverBudget);
        }
        if message.class != Class::Request || message.attribute(attribute::USERNAME).is_some() {
            return Served::ForPeer;
        }
        let mut unknown = Vec::new();
        for attribute in message.attributes() {
            match attribute {
                Ok(a) if a.kind < 0x8000 && !UNDERSTOOD.contains(&a.kind) => unknown.push(a.kind),
                Ok(_) => {}
                Err(_) => return Served::Dropped(Dropped::Malformed),
            }
        }
        if !unknown.is_empty() {
            return Served::Answer(unknown_attributes(BINDING, message.transaction_id, &unknown));
        }
        Served::Answer(binding_success(message.transaction_id, from))
    }
}

/// `from` with an IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(from: SocketAddr) -> SocketAddr {
    SocketAddr::new(from.ip().to_canonical(), from.port())
}

/// Whether an answer may go to `from` (a real unicast address and port).
pub fn answerable(from: SocketAddr) -> bool {
    let ip = from.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    from.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::message::{binding_request, Builder};

    const TID: [u8; 12] = *b"abcdefghijkl";

    fn phone() -> SocketAddr {
        "198.51.100.7:40000".parse().unwrap()
    }

    #[test]
    fn a_binding_request_is_answered_with_where_it_came_from() {
        let mut server = BindingServer::default();
        let Served::Answer(answer) = server.serve(0, &binding_request(TID), phone()) else {
            panic!("no answer");
        };
        let answer = Message::decode(&answer).unwrap();
        assert_eq!((answer.class, answer.transaction_id), (Class::Success, TID));
        assert_eq!(answer.xor_mapped_address(), Ok(phone()));
    }

    #[test]
    fn an_unknown_attribute_that_needs_comprehension_gets_420_naming_it() {
        let mut server = BindingServer::default();
        let request = Builder::new(Class::Request, BINDING, TID)
            .attribute(0x0003, &[0, 0, 0, 6]) // CHANGE-REQUEST (RFC 5780), not served
            .attribute(0x8022, b"ignored") // SOFTWARE: optional
            .finish();
        let Served::Answer(answer) = server.serve(0, &request, phone()) else {
            panic!("no answer");
        };
        let answer = Message::decode(&answer).unwrap();
        assert_eq!(answer.class, Class::Error);
        assert_eq!(
            answer.attribute(attribute::ERROR_CODE).map(|v| (v[2], v[3])),
            Some((4, 20))
        );
        assert_eq!(answer.attribute(attribute::UNKNOWN_ATTRIBUTES), Some(&[0u8, 3][..]));
    }

    #[test]
    fn responses_indications_and_junk_are_told_apart() {
        let mut server = BindingServer::default();
        let response = binding_success(TID, phone());
        assert_eq!(server.serve(0, &response, phone()), Served::ForPeer);
        let check = Builder::new(Class::Request, BINDING, TID)
            .attribute(attribute::USERNAME, b"ours:theirs")
            .finish();
        assert_eq!(server.serve(0, &check, phone()), Served::ForPeer, "an ICE check");
        let keepalive = Builder::new(Class::Indication, BINDING, TID).finish();
        assert_eq!(server.serve(0, &keepalive, phone()), Served::Keepalive);
        let allocate = Builder::new(Class::Request, 0x003, TID).finish();
        assert_eq!(
            server.serve(0, &allocate, phone()),
            Served::Dropped(Dropped::NotBinding)
        );
        assert_eq!(
            server.serve(0, b"INVITE sip:x SIP/2.0\r\n", phone()),
            Served::Dropped(Dropped::Malformed)
        );
        let mut big = Builder::new(Class::Request, BINDING, TID)
            .attribute(0x8022, &[b'x'; 600])
            .finish();
        assert_eq!(server.serve(0, &big, phone()), Served::Dropped(Dropped::Oversized));
        big.truncate(40);
        assert_eq!(server.serve(0, &big, phone()), Served::Dropped(Dropped::Malformed));
        let zero_port: SocketAddr = "198.51.100.7:0".parse().unwrap();
        assert_eq!(
            server.serve(0, &binding_request(TID), zero_port),
            Served::Dropped(Dropped::BadSource)
        );
    }

    /// One source gets [`PER_SOURCE`] answers a second (an IPv6 /64 as
    /// one); another still gets its own; the next second all are
    /// answered again.
    #[test]
    fn answers_to_one_source_are_capped_per_second() {
        let mut server = BindingServer::default();
        let request = binding_request(TID);
        let answered = |server: &mut BindingServer, now, from| {
            (0..100)
                .filter(|_| matches!(server.serve(now, &request, from), Served::Answer(_)))
                .count()
        };
        assert_eq!(answered(&mut server, 5, phone()), PER_SOURCE as usize);
        let other: SocketAddr = "198.51.100.8:40000".parse().unwrap();
        assert_eq!(answered(&mut server, 6, other), PER_SOURCE as usize);
        let (v6a, v6b): (SocketAddr, SocketAddr) = (
            "[2001:db8::1]:5000".parse().unwrap(),
            "[2001:db8::2]:5000".parse().unwrap(),
        );
        assert_eq!(
            answered(&mut server, 7, v6a) + answered(&mut server, 7, v6b),
            PER_SOURCE as usize
        );
        assert_eq!(answered(&mut server, 1_005, phone()), PER_SOURCE as usize);
    }

    proptest::proptest! {
        /// Any datagram: no panic, and an answer is a STUN message to the
        /// same transaction at most three times the request's size.
        #[test]
        fn any_datagram_is_served_without_amplification(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            stun_header in proptest::prelude::any::<bool>(),
        ) {
            let mut data = data;
            if stun_header && data.len() >= 20 {
                // Often a well-formed header, so the attribute walk runs.
                data[0] &= 0x3f;
                let length = (data.len() - 20) as u16;
                data[2..4].copy_from_slice(&length.to_be_bytes());
                data[4..8].copy_from_slice(&crate::stun::message::MAGIC_COOKIE.to_be_bytes());
            }
            let mut server = BindingServer::default();
            if let Served::Answer(answer) = server.serve(0, &data, phone()) {
                proptest::prop_assert!(answer.len() <= 3 * data.len());
                let answer = Message::decode(&answer).unwrap();
                proptest::prop_assert_eq!(answer.transaction_id, Message::decode(&data).unwrap().transaction_id);
            }
        }
    }

    /// A dual-stack socket's IPv4 senders are IPv4 to the budgets and in
    /// the answer, not one shared ::ffff:0:0/64.
    #[test]
    fn ipv4_senders_on_a_dual_stack_socket_are_told_apart() {
        let mut server = BindingServer::default();
        let request = binding_request(TID);
        let mapped = |last: u8| -> SocketAddr { format!("[::ffff:198.51.100.{last}]:4000").parse().unwrap() };
        let Served::Answer(answer) = server.serve(0, &request, mapped(1)) else {
            panic!("no answer");
        };
        let seen = Message::decode(&answer).unwrap().xor_mapped_address().unwrap();
        assert_eq!(seen, "198.51.100.1:4000".parse().unwrap());
        let answered = (2..60)
            .filter(|last| matches!(server.serve(0, &request, mapped(*last)), Served::Answer(_)))
            .count();
        assert_eq!(answered, 58, "each address its own budget");
    }

    #[test]
    fn the_total_is_capped() {
        let mut server = BindingServer::default();
        let request = binding_request(TID);
        let answered = (0..SOURCES as u32 + 10)
            .filter(|i| {
                let from = SocketAddr::new(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + i)), 5000);
                matches!(server.serve(0, &request, from), Served::Answer(_))
            })
            .count();
        assert_eq!(answered, TOTAL as usize);
    }
}
