//! The client against this crate's TURN server, in memory and on a
//! virtual clock: every datagram either makes goes straight to the other.

use super::*;
use crate::turn::server::{From, Transmit, TurnConfig, TurnServer};

const REALM: &str = "relay.test";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn counting_entropy() -> Entropy {
    let mut n = 0u8;
    Entropy(Box::new(move |bytes: &mut [u8]| {
        n = n.wrapping_add(1);
        bytes.fill(n);
    }))
}

/// A client behind `CLIENT` and a relay knowing alice (`a-pw`).
struct Setup {
    now: u64,
    client: TurnClient,
    server: TurnServer,
    /// What reached peers from the relay: (relayed, peer, bytes).
    to_peers: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// What the client got from peers.
    from_peers: Vec<(SocketAddr, Vec<u8>)>,
    events: Vec<ClientEvent>,
    /// Datagrams the client sent to the server.
    sent: usize,
}

const CLIENT: &str = "203.0.113.5:40000";
const PEER: &str = "192.0.2.9:6084";

impl Setup {
    fn new(password: &str) -> Setup {
        let config = TurnConfig::new(REALM, vec![addr("198.51.100.1:50000"), addr("198.51.100.1:50001")]);
        let key = long_term_key("alice", REALM, "a-pw");
        let server = TurnServer::new(config, Box::new(move |u: &str| (u == "alice").then_some(key)), [3; 32]);
        Setup {
            now: 0,
            client: TurnClient::new("alice", password, counting_entropy()),
            server,
            to_peers: Vec::new(),
            from_peers: Vec::new(),
            events: Vec::new(),
            sent: 0,
        }
    }

    /// Moves datagrams both ways until none is left.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(bytes) = self.client.poll_transmit() {
                self.sent += 1;
                moved = true;
                self.server.from_client(self.now, &bytes, addr(CLIENT));
            }
            while let Some(Transmit { from, to, bytes }) = self.server.poll_transmit() {
                moved = true;
                match from {
                    From::Server => {
                        assert_eq!(to, addr(CLIENT));
                        if let Received::Data { peer, data } = self.client.receive(self.now, &bytes) {
                            self.from_peers.push((peer, data));
                        }
                    }
                    From::Relayed(relayed) => self.to_peers.push((relayed, to, bytes)),
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs both clocks to `until`.
    fn run_until(&mut self, until: u64) {
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = until;
    }
}

#[test]
fn the_client_allocates_after_the_challenge_and_relays_both_ways() {
    let mut s = Setup::new("a-pw");
    s.client.allocate(0);
    s.pump();
    let relayed = addr("198.51.100.1:50000");
    assert_eq!(
        s.events,
        vec![ClientEvent::Allocated {
            relayed,
            mapped: addr(CLIENT)
        }]
    );
    assert_eq!(s.client.relayed(), Some(relayed));
    let peer = addr(PEER);
    assert_eq!(s.client.send(peer, b"x"), Err(SendError::NoPermission(peer.ip())));
    s.client.create_permission(0, peer.ip());
    s.pump();
    assert!(s.client.has_permission(peer.ip()));
    s.client.send(peer, b"by indication").unwrap();
    s.pump();
    assert_eq!(s.to_peers, vec![(relayed, peer, b"by indication".to_vec())]);
    s.server.from_peer(1, b"answer", peer, relayed);
    s.pump();
    assert_eq!(s.from_peers, vec![(peer, b"answer".to_vec())]);

    s.client.bind_channel(2, peer);
    s.pump();
    assert!(s.events.contains(&ClientEvent::ChannelBound { peer, channel: 0x4000 }));
    s.client.send(peer, b"by channel").unwrap();
    s.server.from_peer(3, b"over the channel", peer, relayed);
    s.pump();
    assert_eq!(s.to_peers.last().unwrap().2, b"by channel".to_vec());
    assert_eq!(s.from_peers.last().unwrap(), &(peer, b"over the channel".to_vec()));
}

#[test]
fn a_wrong_password_fails_at_the_second_challenge_without_waiting() {
    let mut s = Setup::new("not-a-pw");
    s.client.allocate(0);
    s.pump();
    assert_eq!(s.sent, 2, "the bare Allocate and one with credentials");
    assert!(
        matches!(&s.events[..], [ClientEvent::Failed(why)] if why.contains("401")),
        "{:?}",
        s.events
    );
    assert_eq!(s.client.poll_timeout(), None);
    assert_eq!(s.server.allocations(), 0);
}

#[test]
fn refreshes_keep_the_allocation_permissions_and_channels_for_hours() {
    let mut s = Setup::new("a-pw");
    let peer = addr(PEER);
    s.client.allocate(0);
    s.pump();
    s.client.bind_channel(0, peer);
    s.pump();
    s.run_until(3 * 3_600_000);
    assert_eq!(s.server.allocations(), 1, "refreshed before it ended");
    let relayed = s.client.relayed().unwrap();
    s.server.from_peer(s.now, b"still here", peer, relayed);
    s.client.send(peer, b"and back").unwrap();
    s.pump();
    assert_eq!(s.from_peers.last().unwrap(), &(peer, b"still here".to_vec()));
    assert_eq!(s.to_peers.last().unwrap().2, b"and back".to_vec());
    assert!(!s.events.iter().any(|e| matches!(e, ClientEvent::Failed(_))));

    // Closing frees the relayed address at the server.
    s.client.close(s.now);
    s.pump();
    assert_eq!((s.server.allocations(), s.client.relayed()), (0, None));
}

#[test]
fn an_allocate_nobody_answers_fails_after_seven_transmissions() {
    let mut client = TurnClient::new("alice", "a-pw", counting_entropy());
    client.allocate(0);
    let mut sent = 0;
    let mut now = 0;
    while let Some(t) = client.poll_timeout() {
        while client.poll_transmit().is_some() {
            sent += 1;
        }
        now = t;
        client.handle_timeout(now);
    }
    assert_eq!(sent, TRANSMISSIONS as usize);
    // RFC 8489 §6.2.1: 500 ms doubling, then a last wait of 64 × 500 ms.
    assert_eq!(now, 500 + 1_000 + 2_000 + 4_000 + 8_000 + 16_000 + 32_000);
    assert!(matches!(client.poll_event(), Some(ClientEvent::Failed(_))));
}

#[test]
fn answers_without_the_key_and_data_from_unpermitted_peers_are_ignored() {
    let mut s = Setup::new("a-pw");
    s.client.allocate(0);
    // The bare Allocate reaches the server; its 401 comes back.
    let bare = s.client.poll_transmit().unwrap();
    s.server.from_client(0, &bare, addr(CLIENT));
    let challenge = s.server.poll_transmit().unwrap();
    assert_eq!(s.client.receive(0, &challenge.bytes), Received::Handled);
    // The Allocate with credentials is in flight; a forger answers it
    // first with a success it cannot sign.
    let with_credentials = s.client.poll_transmit().unwrap();
    let id = Message::decode(&with_credentials).unwrap().transaction_id;
    let forged = Builder::new(Class::Success, ALLOCATE, id)
        .xor_address(turn::XOR_RELAYED_ADDRESS, addr("6.6.6.6:6"))
        .xor_mapped_address(addr(CLIENT))
        .finish_with_integrity(&[0; 16]);
    assert_eq!(s.client.receive(0, &forged), Received::Ignored);
    let refusal = Builder::new(Class::Error, ALLOCATE, id)
        .attribute(attribute::ERROR_CODE, &[0, 0, 5, 8])
        .finish();
    assert_eq!(s.client.receive(0, &refusal), Received::Ignored, "an unsigned 508");
    // The real answer still counts.
    s.server.from_client(0, &with_credentials, addr(CLIENT));
    s.pump();
    assert_eq!(s.client.relayed(), Some(addr("198.51.100.1:50000")));
    // A Data indication from a peer without permission is not delivered.
    let stray = Builder::new(Class::Indication, DATA, [1; 12])
        .xor_address(turn::XOR_PEER_ADDRESS, addr(PEER))
        .attribute(turn::DATA, b"x")
        .finish();
    assert_eq!(s.client.receive(1, &stray), Received::Ignored);
}

/// A permission the relay stops answering for is forgotten once its
/// refresh has gone unanswered: `send` refuses instead of the relay
/// silently dropping, and asking again is possible.
#[test]
fn a_refresh_that_goes_unanswered_forgets_the_permission() {
    let mut s = Setup::new("a-pw");
    let peer = addr(PEER);
    s.client.allocate(0);
    s.pump();
    s.client.create_permission(0, peer.ip());
    s.pump();
    assert!(s.client.has_permission(peer.ip()));
    // From now on the relay hears nothing (its link died, say).
    let mut now = s.now;
    while let Some(t) = s.client.poll_timeout().filter(|t| *t < 400_000) {
        now = t;
        s.client.handle_timeout(now);
        while s.client.poll_transmit().is_some() {}
    }
    assert!(!s.client.has_permission(peer.ip()), "forgotten at {now} ms");
    assert_eq!(s.client.send(peer, b"x"), Err(SendError::NoPermission(peer.ip())));
    assert!(std::iter::from_fn(|| s.client.poll_event()).any(|e| matches!(e, ClientEvent::Lost(_))));
}
