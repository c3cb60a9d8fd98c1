//! The relay through its sans-IO core: a client's exchanges as RFC 8656
//! describes them, what the relay refuses, and that it relays only what
//! permissions allow.

use super::requests::RESERVATION_LIFETIME_MS;
use super::*;
use crate::stun::message::attribute;
use crate::turn::{channel_data, long_term_key, parse_channel_data};
use proptest::prelude::*;

const REALM: &str = "relay.test";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn relayed(k: u16) -> SocketAddr {
    SocketAddr::new("198.51.100.1".parse().unwrap(), 50_000 + k)
}

/// Users `alice` (password `a-pw`) and `bob` (`b-pw`).
fn server(pool: u16) -> TurnServer {
    let mut config = TurnConfig::new(REALM, (0..pool).map(relayed).collect());
    config.listening = vec![addr(LISTENING)];
    server_with(config)
}

const LISTENING: &str = "198.51.100.1:3478";

fn server_with(config: TurnConfig) -> TurnServer {
    let credentials = Box::new(|user: &str| match user {
        "alice" => Some(long_term_key("alice", REALM, "a-pw")),
        "bob" => Some(long_term_key("bob", REALM, "b-pw")),
        _ => None,
    });
    TurnServer::new(config, credentials, [9; 32])
}

/// A client at `address`, with what it learnt from the last challenge.
struct Client {
    address: SocketAddr,
    user: &'static str,
    key: [u8; 16],
    nonce: Vec<u8>,
    next_id: u8,
}

impl Client {
    fn new(address: &str, user: &'static str, password: &str) -> Client {
        Client {
            address: addr(address),
            user,
            key: long_term_key(user, REALM, password),
            nonce: Vec::new(),
            next_id: 0,
        }
    }

    fn id(&mut self) -> [u8; 12] {
        self.next_id += 1;
        [self.next_id; 12]
    }

    /// A request with the credentials (after `challenge`).
    fn request(&mut self, method: u16, add: impl FnOnce(Builder) -> Builder) -> Vec<u8> {
        let id = self.id();
        add(Builder::new(Class::Request, method, id))
            .attribute(attribute::USERNAME, self.user.as_bytes())
            .attribute(attribute::REALM, REALM.as_bytes())
            .attribute(attribute::NONCE, &self.nonce)
            .finish_with_integrity(&self.key)
    }

    /// Sends `datagram`; the one answer to this client.
    fn exchange(&mut self, server: &mut TurnServer, now: u64, datagram: &[u8]) -> Vec<u8> {
        server.from_client(now, datagram, self.address);
        let answers = drain(server);
        assert_eq!(answers.len(), 1, "one answer: {answers:?}");
        assert_eq!((answers[0].from, answers[0].to), (From::Server, self.address));
        answers[0].bytes.clone()
    }

    /// An unauthenticated Allocate, answered by 401: keeps the nonce.
    fn challenge(&mut self, server: &mut TurnServer, now: u64) {
        let id = self.id();
        let bare = Builder::new(Class::Request, ALLOCATE, id)
            .attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0])
            .finish();
        let answer = self.exchange(server, now, &bare);
        let answer = Message::decode(&answer).unwrap();
        assert_eq!(error_code(&answer), Some(401));
        assert_eq!(answer.attribute(attribute::REALM), Some(REALM.as_bytes()));
        self.nonce = answer.attribute(attribute::NONCE).unwrap().to_vec();
    }

    /// Challenge and Allocate: the relayed address.
    fn allocate(&mut self, server: &mut TurnServer, now: u64) -> SocketAddr {
        self.challenge(server, now);
        let request = self.request(ALLOCATE, |b| b.attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0]));
        let answer = self.exchange(server, now, &request);
        let answer = Message::decode(&answer).unwrap();
        assert_eq!(answer.class, Class::Success, "{:?}", error_code(&answer));
        assert!(answer.integrity_matches(&self.key), "the answer is authenticated");
        answer.xor_address(turn::XOR_RELAYED_ADDRESS).unwrap()
    }

    /// A request's answer class and error code.
    fn ask(
        &mut self,
        server: &mut TurnServer,
        now: u64,
        method: u16,
        add: impl FnOnce(Builder) -> Builder,
    ) -> Option<u16> {
        let request = self.request(method, add);
        let answer = self.exchange(server, now, &request);
        error_code(&Message::decode(&answer).unwrap())
    }

    fn permit(&mut self, server: &mut TurnServer, now: u64, peer: SocketAddr) -> Option<u16> {
        self.ask(server, now, CREATE_PERMISSION, |b| {
            b.xor_address(turn::XOR_PEER_ADDRESS, peer)
        })
    }

    fn send(&self, server: &mut TurnServer, now: u64, peer: SocketAddr, data: &[u8]) {
        let indication = Builder::new(Class::Indication, SEND, [0xee; 12])
            .xor_address(turn::XOR_PEER_ADDRESS, peer)
            .attribute(turn::DATA, data)
            .finish();
        server.from_client(now, &indication, self.address);
    }
}

fn drain(server: &mut TurnServer) -> Vec<Transmit> {
    std::iter::from_fn(|| server.poll_transmit()).collect()
}

fn error_code(message: &Message<'_>) -> Option<u16> {
    match message.attribute(attribute::ERROR_CODE)? {
        [_, _, class, number, ..] => Some(u16::from(*class) * 100 + u16::from(*number)),
        _ => None,
    }
}

#[test]
fn an_allocation_relays_both_ways_through_permissions_then_a_channel() {
    let mut relay = server(2);
    let mut alice = Client::new("203.0.113.5:40000", "alice", "a-pw");
    let peer = addr("192.0.2.9:6084");
    let relayed = alice.allocate(&mut relay, 0);
    assert_eq!(relayed, self::relayed(0));
    assert_eq!(relay.user_of(alice.address), Some("alice"));
    assert_eq!(alice.permit(&mut relay, 10, peer), None);

    // Send indication: the data, from the relayed address, to the peer.
    alice.send(&mut relay, 20, peer, b"to the peer");
    assert_eq!(
        drain(&mut relay),
        vec![Transmit {
            from: From::Relayed(relayed),
            to: peer,
            bytes: b"to the peer".to_vec()
        }]
    );
    // The peer answers the relayed address: a Data indication to alice.
    relay.from_peer(30, b"to alice", peer, relayed);
    let out = drain(&mut relay);
    assert_eq!((out.len(), out[0].from, out[0].to), (1, From::Server, alice.address));
    let data = Message::decode(&out[0].bytes).unwrap();
    assert_eq!((data.class, data.method), (Class::Indication, DATA));
    assert_eq!(data.xor_address(turn::XOR_PEER_ADDRESS), Ok(peer));
    assert_eq!(data.attribute(turn::DATA), Some(&b"to alice"[..]));

    // A channel: ChannelData both ways from now on.
    let bound = alice.ask(&mut relay, 40, CHANNEL_BIND, |b| {
        b.attribute(turn::CHANNEL_NUMBER, &[0x40, 0x01, 0, 0])
            .xor_address(turn::XOR_PEER_ADDRESS, peer)
    });
    assert_eq!(bound, None);
    relay.from_peer(50, b"over the channel", peer, relayed);
    let out = drain(&mut relay);
    assert_eq!(
        parse_channel_data(&out[0].bytes),
        Some((0x4001, &b"over the channel"[..]))
    );
    relay.from_client(60, &channel_data(0x4001, b"back"), alice.address);
    assert_eq!(
        drain(&mut relay)[0],
        Transmit {
            from: From::Relayed(relayed),
            to: peer,
            bytes: b"back".to_vec()
        }
    );
    assert_eq!(relay.relayed_bytes(), 11 + 8 + 16 + 4);
}

#[test]
fn requests_without_valid_credentials_get_no_allocation() {
    let mut relay = server(2);
    let mut alice = Client::new("203.0.113.5:40000", "alice", "a-pw");
    alice.challenge(&mut relay, 0);
    let transport = |b: Builder| b.attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0]);

    // A wrong password.
    let mut mallory = Client::new("203.0.113.5:40000", "alice", "guess");
    mallory.nonce = alice.nonce.clone();
    assert_eq!(mallory.ask(&mut relay, 1, ALLOCATE, transport), Some(401));
    // A user nobody knows.
    let mut nobody = Client::new("203.0.113.5:40000", "nobody", "x");
    nobody.nonce = alice.nonce.clone();
    assert_eq!(nobody.ask(&mut relay, 2, ALLOCATE, transport), Some(401));
    // A nonce made up, one issued to another address, one too old.
    let mut forger = Client::new("203.0.113.5:40000", "alice", "a-pw");
    forger.nonce = b"0000000000000000ffffffffffffffff".to_vec();
    assert_eq!(forger.ask(&mut relay, 3, ALLOCATE, transport), Some(438));
    let mut elsewhere = Client::new("203.0.113.6:40000", "alice", "a-pw");
    elsewhere.nonce = alice.nonce.clone();
    assert_eq!(elsewhere.ask(&mut relay, 4, ALLOCATE, transport), Some(438));
    assert_eq!(alice.ask(&mut relay, NONCE_LIFETIME_MS, ALLOCATE, transport), Some(438));
    // Credentials missing a part: 400.
    let id = alice.id();
    let no_realm = Builder::new(Class::Request, ALLOCATE, id)
        .attribute(attribute::USERNAME, b"alice")
        .attribute(attribute::NONCE, &alice.nonce)
        .finish_with_integrity(&alice.key);
    let answer = alice.exchange(&mut relay, 5, &no_realm);
    assert_eq!(error_code(&Message::decode(&answer).unwrap()), Some(400));
    assert_eq!(relay.allocations(), 0);
    // And the right ones, with a fresh nonce, work.
    assert_eq!(alice.allocate(&mut relay, NONCE_LIFETIME_MS + 1), relayed(0));
}

#[test]
fn nothing_is_relayed_without_a_permission_in_either_direction() {
    let mut relay = server(2);
    let mut alice = Client::new("203.0.113.5:40000", "alice", "a-pw");
    let relayed = alice.allocate(&mut relay, 0);
    let (friend, stranger) = (addr("192.0.2.9:6084"), addr("192.0.2.66:6084"));
    assert_eq!(alice.permit(&mut relay, 0, friend), None);
    // To a peer without permission: dropped.
    alice.send(&mut relay, 1, stranger, b"spam");
    // From one: dropped, however it got the relayed address.
    relay.from_peer(2, b"probe", stranger, relayed);
    // A Send indication from an address with no allocation: dropped.
    let mut other = Client::new("203.0.113.7:40000", "alice", "a-pw");
    other.address = addr("203.0.113.7:40000");
    other.send(&mut relay, 3, friend, b"not mine");
    // ChannelData on a channel nobody bound: dropped.
    relay.from_client(4, &channel_data(0x4444, b"x"), alice.address);
    assert!(drain(&mut relay).is_empty());
    let dropped = relay.dropped();
    assert_eq!(
        (
            dropped.get("no_permission"),
            dropped.get("no_allocation"),
            dropped.get("no_channel")
        ),
        (Some(&2), Some(&1), Some(&1))
    );
    // The permission covers the friend's IP on any port, and ends after
    // five minutes unless refreshed.
    relay.from_peer(5, b"hi", addr("192.0.2.9:7000"), relayed);
    assert_eq!(drain(&mut relay).len(), 1);
    relay.handle_timeout(PERMISSION_LIFETIME_MS);
    relay.from_peer(PERMISSION_LIFETIME_MS, b"late", friend, relayed);
    assert!(drain(&mut relay).is_empty());
}

#[test]
fn quotas_hold_per_user_per_allocation_and_for_the_pool() {
    let mut config = TurnConfig::new(REALM, (0..3).map(relayed).collect());
    config.allocations_per_user = 2;
    config.permissions_per_allocation = 2;
    config.bytes_per_second = 1_000;
    let mut relay = server_with(config);
    let transport = |b: Builder| b.attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0]);
    let mut a1 = Client::new("203.0.113.5:40001", "alice", "a-pw");
    let mut a2 = Client::new("203.0.113.5:40002", "alice", "a-pw");
    let mut a3 = Client::new("203.0.113.5:40003", "alice", "a-pw");
    let r1 = a1.allocate(&mut relay, 0);
    a2.allocate(&mut relay, 0);
    a3.challenge(&mut relay, 0);
    assert_eq!(a3.ask(&mut relay, 0, ALLOCATE, transport), Some(486), "alice's third");
    let mut b1 = Client::new("203.0.113.8:40001", "bob", "b-pw");
    b1.allocate(&mut relay, 0);
    let mut b2 = Client::new("203.0.113.8:40002", "bob", "b-pw");
    b2.challenge(&mut relay, 0);
    assert_eq!(
        b2.ask(&mut relay, 0, ALLOCATE, transport),
        Some(508),
        "the pool is empty"
    );

    // Two permissions per allocation; a third peer is refused.
    let peers = ["192.0.2.1:1", "192.0.2.2:1", "192.0.2.3:1"].map(addr);
    assert_eq!(a1.permit(&mut relay, 0, peers[0]), None);
    assert_eq!(a1.permit(&mut relay, 0, peers[1]), None);
    assert_eq!(a1.permit(&mut relay, 0, peers[0]), None, "a refresh is no new one");
    assert_eq!(a1.permit(&mut relay, 0, peers[2]), Some(508));

    // 1,000 bytes a second with a burst of 2,000: a flood is cut there.
    for _ in 0..30 {
        a1.send(&mut relay, 1, peers[0], &[0; 100]);
    }
    assert_eq!(drain(&mut relay).len(), 20);
    relay.from_peer(2, &[0; 100], peers[0], r1);
    assert!(drain(&mut relay).is_empty(), "the bucket counts both directions");
    relay.from_peer(1_002, &[0; 100], peers[0], r1);
    assert_eq!(drain(&mut relay).len(), 1, "a second later there is room again");

    // Freed by a Refresh to 0, the address serves the next user.
    assert_eq!(
        a1.ask(&mut relay, 3, REFRESH, |b| b.attribute(turn::LIFETIME, &[0; 4])),
        None
    );
    assert_eq!(relay.allocations(), 2);
    assert_eq!(b2.allocate(&mut relay, 4), r1);
}

#[test]
fn an_allocation_is_its_users_and_its_five_tuples_alone() {
    let mut relay = server(4);
    let mut alice = Client::new("203.0.113.5:40000", "alice", "a-pw");
    alice.allocate(&mut relay, 0);
    // The same Allocate again (a retransmission): the same answer.
    let id = alice.id();
    let again = |c: &Client, id: [u8; 12]| {
        Builder::new(Class::Request, ALLOCATE, id)
            .attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0])
            .attribute(attribute::USERNAME, c.user.as_bytes())
            .attribute(attribute::REALM, REALM.as_bytes())
            .attribute(attribute::NONCE, &c.nonce)
            .finish_with_integrity(&c.key)
    };
    let first = alice.exchange(&mut relay, 1, &again(&alice, id));
    assert_eq!(
        error_code(&Message::decode(&first).unwrap()),
        Some(437),
        "a new Allocate on the 5-tuple"
    );
    // bob, from alice's address and port, may not touch her allocation.
    let mut bob = Client::new("203.0.113.5:40000", "bob", "b-pw");
    bob.nonce = alice.nonce.clone();
    assert_eq!(bob.ask(&mut relay, 2, REFRESH, |b| b), Some(441));
    assert_eq!(relay.user_of(alice.address), Some("alice"));
    // A Refresh, CreatePermission or ChannelBind without an allocation.
    let mut carol = Client::new("203.0.113.9:40000", "bob", "b-pw");
    carol.challenge(&mut relay, 3);
    assert_eq!(carol.ask(&mut relay, 3, REFRESH, |b| b), Some(437));
    assert_eq!(carol.permit(&mut relay, 3, addr("192.0.2.1:1")), Some(437));
}

#[test]
fn a_retransmitted_allocate_gets_the_first_answer() {
    let mut relay = server(2);
    let mut alice = Client::new("203.0.113.5:40000", "alice", "a-pw");
    alice.challenge(&mut relay, 0);
    let request = alice.request(ALLOCATE, |b| b.attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0]));
    let first = alice.exchange(&mut relay, 0, &request);
    let second = alice.exchange(&mut relay, 100, &request);
    assert_eq!(first, second);
    assert_eq!(relay.allocations(), 1);
}

#[test]
fn allocations_end_when_their_lifetime_does_and_free_their_address() {
    let mut relay = server(1);
    let mut alice = Client::new("203.0.113.5:40000", "alice", "a-pw");
    alice.allocate(&mut relay, 0);
    assert_eq!(relay.poll_timeout(), Some(u64::from(DEFAULT_LIFETIME_S) * 1_000));
    // A Refresh asking for a day gets the maximum, an hour.
    let request = alice.request(REFRESH, |b| b.attribute(turn::LIFETIME, &86_400u32.to_be_bytes()));
    let answer = alice.exchange(&mut relay, 1_000, &request);
    let answer = Message::decode(&answer).unwrap();
    assert_eq!(
        answer.attribute(turn::LIFETIME),
        Some(&MAX_LIFETIME_S.to_be_bytes()[..])
    );
    relay.handle_timeout(1_000 + u64::from(MAX_LIFETIME_S) * 1_000 - 1);
    assert_eq!(relay.allocations(), 1);
    relay.handle_timeout(1_000 + u64::from(MAX_LIFETIME_S) * 1_000);
    assert_eq!(relay.allocations(), 0);
    let mut bob = Client::new("203.0.113.8:40000", "bob", "b-pw");
    assert_eq!(bob.allocate(&mut relay, 4_000_000), relayed(0));
}

#[test]
fn peers_that_loop_broadcast_or_are_of_another_family_are_refused() {
    let mut relay = server(2);
    let mut alice = Client::new("203.0.113.5:40000", "alice", "a-pw");
    alice.allocate(&mut relay, 0);
    // A permission is per IP, so the relay's own IP may have one; what is
    // sent to its TURN port through it goes nowhere, and a channel to it
    // is refused.
    assert_eq!(alice.permit(&mut relay, 0, addr(LISTENING)), None);
    alice.send(&mut relay, 0, addr(LISTENING), b"back into the relay");
    assert!(drain(&mut relay).is_empty());
    assert_eq!(relay.dropped().get("loop"), Some(&1));
    let into_itself = alice.ask(&mut relay, 0, CHANNEL_BIND, |b| {
        b.attribute(turn::CHANNEL_NUMBER, &[0x40, 0x09, 0, 0])
            .xor_address(turn::XOR_PEER_ADDRESS, addr(LISTENING))
    });
    assert_eq!(into_itself, Some(403));
    assert_eq!(
        alice.permit(&mut relay, 0, relayed(1)),
        None,
        "another client's relayed address"
    );
    assert_eq!(alice.permit(&mut relay, 0, addr("0.0.0.0:9")), Some(403));
    assert_eq!(alice.permit(&mut relay, 0, addr("127.0.0.1:9")), Some(403), "loopback");
    assert_eq!(
        alice.permit(&mut relay, 0, addr("169.254.1.1:9")),
        Some(403),
        "link-local"
    );
    assert_eq!(alice.permit(&mut relay, 0, addr("255.255.255.255:9")), Some(403));
    assert_eq!(alice.permit(&mut relay, 0, addr("[2001:db8::1]:9")), Some(443));
    let bad_channel = alice.ask(&mut relay, 0, CHANNEL_BIND, |b| {
        b.attribute(turn::CHANNEL_NUMBER, &[0x30, 0x00, 0, 0])
            .xor_address(turn::XOR_PEER_ADDRESS, addr("192.0.2.1:1"))
    });
    assert_eq!(bad_channel, Some(400), "a channel number below 0x4000");
    let old_range = alice.ask(&mut relay, 0, CHANNEL_BIND, |b| {
        b.attribute(turn::CHANNEL_NUMBER, &[0x78, 0xe7, 0, 0])
            .xor_address(turn::XOR_PEER_ADDRESS, addr("192.0.2.3:1"))
    });
    assert_eq!(old_range, None, "RFC 5766's range, as coturn's client uses");
    // A channel already bound to one peer is not rebound to another.
    let bind = |c: &mut Client, r: &mut TurnServer, peer: &str| {
        c.ask(r, 0, CHANNEL_BIND, |b| {
            b.attribute(turn::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0])
                .xor_address(turn::XOR_PEER_ADDRESS, addr(peer))
        })
    };
    assert_eq!(bind(&mut alice, &mut relay, "192.0.2.1:1"), None);
    assert_eq!(bind(&mut alice, &mut relay, "192.0.2.1:1"), None, "a refresh");
    assert_eq!(bind(&mut alice, &mut relay, "192.0.2.2:1"), Some(400));
}

#[test]
fn unsupported_options_get_420_and_other_transports_442() {
    let mut relay = server(2);
    let mut alice = Client::new("203.0.113.5:40000", "alice", "a-pw");
    alice.challenge(&mut relay, 0);
    let dont_fragment = alice.request(ALLOCATE, |b| {
        b.attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0])
            .attribute(turn::DONT_FRAGMENT, &[])
    });
    let answer = alice.exchange(&mut relay, 0, &dont_fragment);
    let answer = Message::decode(&answer).unwrap();
    assert_eq!(error_code(&answer), Some(420));
    assert_eq!(answer.attribute(attribute::UNKNOWN_ATTRIBUTES), Some(&[0x00, 0x1a][..]));
    assert_eq!(
        alice.ask(&mut relay, 0, ALLOCATE, |b| b
            .attribute(turn::REQUESTED_TRANSPORT, &[6, 0, 0, 0])),
        Some(442)
    );
    assert_eq!(relay.allocations(), 0);
}

#[test]
fn one_source_gets_ten_unauthenticated_answers_a_second() {
    let mut relay = server(2);
    let victim = addr("192.0.2.200:5000");
    for k in 0..100u8 {
        let request = Builder::new(Class::Request, ALLOCATE, [k; 12]).finish();
        relay.from_client(0, &request, victim);
    }
    assert_eq!(drain(&mut relay).len(), UNAUTHENTICATED_PER_SOURCE as usize);
    assert_eq!(relay.dropped().get("over_budget"), Some(&90));
    relay.from_client(1_000, &Builder::new(Class::Request, ALLOCATE, [1; 12]).finish(), victim);
    assert_eq!(drain(&mut relay).len(), 1, "the next second");
}

proptest! {
    /// Whatever arrives, from clients or peers, nothing panics and
    /// nothing goes out but answers to the sender: with no allocation,
    /// nobody else is sent anything.
    #[test]
    fn junk_never_panics_and_is_answered_only_to_its_sender(
        datagrams in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..600), any::<bool>()), 1..40)
    ) {
        let mut relay = server(2);
        let client = addr("203.0.113.5:40000");
        for (now, (bytes, from_peer)) in datagrams.iter().enumerate() {
            if *from_peer {
                relay.from_peer(now as u64, bytes, addr("192.0.2.9:1"), relayed(0));
            } else {
                relay.from_client(now as u64, bytes, client);
            }
            for t in drain(&mut relay) {
                prop_assert_eq!((t.from, t.to), (From::Server, client));
                prop_assert!(t.bytes.len() <= 3 * bytes.len().max(100));
            }
        }
        prop_assert_eq!(relay.allocations(), 0);
    }
}

/// RFC 8656 §7.2: EVEN-PORT gives an even relayed port; with its R bit the
/// next port is held for an Allocate naming the RESERVATION-TOKEN (RTP
/// and RTCP), for 30 s; EVEN-PORT and a token together are refused.
#[test]
fn even_port_reserves_the_next_port_for_its_token() {
    let mut relay = server(4);
    let transport = |b: Builder| b.attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0]);
    let mut rtp = Client::new("203.0.113.5:40000", "alice", "a-pw");
    rtp.challenge(&mut relay, 0);
    let request = rtp.request(ALLOCATE, |b| transport(b).attribute(turn::EVEN_PORT, &[0x80]));
    let answer = rtp.exchange(&mut relay, 0, &request);
    let answer = Message::decode(&answer).unwrap();
    let relayed_rtp = answer.xor_address(turn::XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(relayed_rtp.port() % 2, 0);
    let token = answer.attribute(turn::RESERVATION_TOKEN).unwrap().to_vec();
    assert_eq!(token.len(), 8);

    let mut rtcp = Client::new("203.0.113.5:40001", "alice", "a-pw");
    rtcp.challenge(&mut relay, 1);
    let both = rtcp.ask(&mut relay, 1, ALLOCATE, |b| {
        transport(b)
            .attribute(turn::EVEN_PORT, &[0])
            .attribute(turn::RESERVATION_TOKEN, &token)
    });
    assert_eq!(both, Some(400));
    let request = rtcp.request(ALLOCATE, |b| transport(b).attribute(turn::RESERVATION_TOKEN, &token));
    let answer = rtcp.exchange(&mut relay, 2, &request);
    let relayed_rtcp = Message::decode(&answer)
        .unwrap()
        .xor_address(turn::XOR_RELAYED_ADDRESS)
        .unwrap();
    assert_eq!(relayed_rtcp.port(), relayed_rtp.port() + 1);
    // A token is good once.
    let mut again = Client::new("203.0.113.5:40002", "bob", "b-pw");
    again.challenge(&mut relay, 3);
    assert_eq!(
        again.ask(&mut relay, 3, ALLOCATE, |b| transport(b)
            .attribute(turn::RESERVATION_TOKEN, &token)),
        Some(508)
    );

    // A reservation nobody claims returns to the pool after 30 s.
    let mut held = Client::new("203.0.113.6:40000", "bob", "b-pw");
    held.challenge(&mut relay, 4);
    let request = held.request(ALLOCATE, |b| transport(b).attribute(turn::EVEN_PORT, &[0x80]));
    held.exchange(&mut relay, 4, &request);
    let mut late = Client::new("203.0.113.6:40001", "bob", "b-pw");
    late.challenge(&mut relay, 5);
    assert_eq!(
        late.ask(&mut relay, 5, ALLOCATE, transport),
        Some(508),
        "all four ports are taken or held"
    );
    relay.handle_timeout(4 + RESERVATION_LIFETIME_MS);
    late.challenge(&mut relay, 4 + RESERVATION_LIFETIME_MS);
    assert_eq!(
        late.ask(&mut relay, 4 + RESERVATION_LIFETIME_MS, ALLOCATE, transport),
        None
    );
}

/// A reserved port counts against its user's allocations until it is
/// taken or expires, so Allocate with the R bit and Refresh to 0 in a
/// loop cannot hold the pool's odd ports.
#[test]
fn reservations_count_against_the_users_quota() {
    let mut config = TurnConfig::new(REALM, (0..8).map(relayed).collect());
    config.listening = vec![addr(LISTENING)];
    config.allocations_per_user = 3;
    let mut relay = server_with(config);
    let transport = |b: Builder| b.attribute(turn::REQUESTED_TRANSPORT, &[UDP, 0, 0, 0]);
    let mut held = 0;
    for k in 0..4u16 {
        let mut c = Client::new(&format!("203.0.113.5:{}", 40_000 + k), "alice", "a-pw");
        c.challenge(&mut relay, 0);
        let answer = c.ask(&mut relay, 0, ALLOCATE, |b| {
            transport(b).attribute(turn::EVEN_PORT, &[0x80])
        });
        if answer.is_none() {
            held += 1;
            assert_eq!(
                c.ask(&mut relay, 0, REFRESH, |b| b.attribute(turn::LIFETIME, &[0; 4])),
                None
            );
        } else {
            assert_eq!(answer, Some(486));
        }
    }
    assert_eq!(
        held, 2,
        "each leaves a reservation behind; the third would pass the quota of 3"
    );
    relay.handle_timeout(RESERVATION_LIFETIME_MS);
    let mut later = Client::new("203.0.113.5:41000", "alice", "a-pw");
    later.challenge(&mut relay, RESERVATION_LIFETIME_MS);
    assert_eq!(
        later.ask(&mut relay, RESERVATION_LIFETIME_MS, ALLOCATE, |b| transport(b)
            .attribute(turn::EVEN_PORT, &[0x80])),
        None,
        "the reservations expired and no longer count"
    );
}

/// A user removed from the relay's node loses the allocations it holds at
/// the next revalidation; nothing it sends is relayed after.
#[test]
fn a_removed_user_loses_its_allocations() {
    let known = std::sync::Arc::new(std::sync::Mutex::new(true));
    let still = known.clone();
    let key = long_term_key("alice", REALM, "a-pw");
    let credentials = Box::new(move |u: &str| (u == "alice" && *still.lock().unwrap()).then_some(key));
    let mut relay = TurnServer::new(TurnConfig::new(REALM, vec![relayed(0)]), credentials, [9; 32]);
    let mut alice = Client::new("203.0.113.5:40000", "alice", "a-pw");
    alice.allocate(&mut relay, 0);
    let peer = addr("192.0.2.9:6084");
    assert_eq!(alice.permit(&mut relay, 0, peer), None);
    relay.revalidate();
    assert_eq!(relay.allocations(), 1, "still enrolled");
    *known.lock().unwrap() = false;
    relay.revalidate();
    assert_eq!(relay.allocations(), 0);
    alice.send(&mut relay, 1, peer, b"after removal");
    assert!(drain(&mut relay).is_empty());
}
