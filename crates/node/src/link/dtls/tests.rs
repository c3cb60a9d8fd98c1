//! Two ends of a DTLS link over a deterministic datagram channel (a fixed
//! one-way delay, the datagrams a test chooses to lose), on a virtual
//! clock: the handshake, its checks, Simple Reliability over it.

use super::*;
use crate::link::dtls_config::DtlsConfigs;
use crate::pki::{generate_key, make_csr, Authority, TrustStore};
use std::time::SystemTime;

const OVERLAY: &str = "dtls.p2psip.example";
const DELAY: Duration = Duration::from_millis(5);

fn node(v: u128) -> NodeId {
    NodeId::from_u128(v)
}

/// A node's DTLS settings: a certificate from `ca` for `ids`.
fn configs(ca: &Authority, trusted: &Authority, ids: &[NodeId]) -> DtlsConfigs {
    let key = generate_key().unwrap();
    let csr = make_csr(&key, "someone@dtls.p2psip.example").unwrap();
    let cert = ca
        .issue_node(&csr, "someone@dtls.p2psip.example", ids, OVERLAY, SystemTime::now())
        .unwrap();
    let trust = TrustStore::new(OVERLAY, 16, vec![trusted.cert_der.clone()], Vec::new());
    DtlsConfigs::new(trust, cert.to_vec(), &key).unwrap().with_key_log(true)
}

fn ctx() -> DecodeContext {
    DecodeContext::default()
}

/// The DTLS server (the Attach requester, node 1) and client (node 2).
struct Wire {
    now: Instant,
    server: DtlsLink,
    client: DtlsLink,
    /// (arrival, to the server?, datagram)
    flying: Vec<(Instant, bool, Vec<u8>)>,
    /// Datagrams (counted from 0, both directions) to lose.
    lose: Vec<usize>,
    sent: usize,
    /// Every datagram the server sent, in order.
    server_sent: Vec<Vec<u8>>,
    server_events: Vec<DtlsEvent>,
    client_events: Vec<DtlsEvent>,
}

impl Wire {
    /// Node 1 serves expecting `server_expects`; node 2 connects
    /// expecting node 1.
    fn new(server: &DtlsConfigs, client: &DtlsConfigs, server_expects: NodeId) -> Wire {
        let now = Instant::now();
        let (a, b) = (
            SocketAddr::from(([10, 0, 0, 1], 5000)),
            SocketAddr::from(([10, 0, 0, 2], 5000)),
        );
        let mut wire = Wire {
            now,
            server: DtlsLink::accept(now, b, server_expects, server, Some(10)),
            client: DtlsLink::connect(now, a, node(1), client, Some(10)),
            flying: Vec::new(),
            lose: Vec::new(),
            sent: 0,
            server_sent: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
        };
        wire.collect();
        wire
    }

    fn collect(&mut self) {
        while let Some(d) = self.server.poll_transmit() {
            self.server_sent.push(d.clone());
            self.put(false, d);
        }
        while let Some(d) = self.client.poll_transmit() {
            self.put(true, d);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
    }

    fn put(&mut self, to_server: bool, datagram: Vec<u8>) {
        if !self.lose.contains(&self.sent) {
            self.flying.push((self.now + DELAY, to_server, datagram));
        }
        self.sent += 1;
    }

    /// Runs the virtual clock for `span`.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            let arrival = self.flying.iter().map(|f| f.0).min();
            let timers = [self.server.poll_timeout(), self.client.poll_timeout()];
            let Some(next) = timers.into_iter().chain([arrival]).flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = self.flying.drain(..).partition(|f| f.0 <= now);
            self.flying = later;
            for (_, to_server, datagram) in due {
                let link = if to_server { &mut self.server } else { &mut self.client };
                link.receive(now, &datagram, &ctx());
            }
            for link in [&mut self.server, &mut self.client] {
                if link.poll_timeout().is_some_and(|t| t <= now) {
                    link.handle_timeout(now);
                }
            }
            self.collect();
        }
        self.now = end;
    }

    fn messages(events: &[DtlsEvent]) -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                DtlsEvent::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
}

fn up(events: &[DtlsEvent]) -> Option<(NodeId, Option<String>)> {
    events.iter().find_map(|e| match e {
        DtlsEvent::Up { peer, key_log } => Some((*peer, key_log.clone())),
        _ => None,
    })
}

fn closed(events: &[DtlsEvent]) -> Option<String> {
    events.iter().find_map(|e| match e {
        DtlsEvent::Closed(why) => Some(why.clone()),
        _ => None,
    })
}

/// The signature scheme of the ServerKeyExchange among DTLS datagrams
/// (RFC 6347 §4.1 records, §4.2.2 handshake headers; RFC 8422 §5.4).
fn server_key_exchange_scheme(datagrams: &[Vec<u8>]) -> Option<[u8; 2]> {
    for datagram in datagrams {
        let mut records = &datagram[..];
        while records.len() >= 13 {
            let length = usize::from(u16::from_be_bytes([records[11], records[12]]));
            let (record, rest) = records[13..].split_at(length.min(records.len() - 13));
            // A plaintext handshake record (epoch 0).
            if records[0] == 22 && records[3..5] == [0, 0] && record.len() > 12 && record[0] == 12 {
                let body = &record[12..];
                let point = usize::from(*body.get(3)?);
                return Some([*body.get(4 + point)?, *body.get(5 + point)?]);
            }
            records = rest;
        }
    }
    None
}

#[test]
fn the_ends_authenticate_each_other_with_ed25519_and_carry_messages_both_ways() {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let (one, two) = (configs(&ca, &ca, &[node(1)]), configs(&ca, &ca, &[node(2)]));
    let mut wire = Wire::new(&one, &two, node(2));
    wire.run(Duration::from_millis(200));

    let (server_peer, server_log) = up(&wire.server_events).expect("the server end is up");
    let (client_peer, client_log) = up(&wire.client_events).expect("the client end is up");
    assert_eq!((server_peer, client_peer), (node(2), node(1)));
    // RFC 8422 §5.4 / RFC 8446 §4.2.3: ed25519 is 0x0807.
    assert_eq!(server_key_exchange_scheme(&wire.server_sent), Some([0x08, 0x07]));
    // Both ends log the same association: the client's random and a
    // 48-byte master secret (96 hex digits).
    let line = server_log.expect("a key log line");
    assert_eq!(Some(&line), client_log.as_ref());
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!((fields[0], fields[1].len(), fields[2].len()), ("CLIENT_RANDOM", 64, 96));

    let now = wire.now;
    wire.server.send(now, b"from the server".to_vec(), &ctx()).unwrap();
    wire.client.send(now, b"from the client".to_vec(), &ctx()).unwrap();
    wire.collect();
    wire.run(Duration::from_millis(100));
    assert_eq!(Wire::messages(&wire.client_events), vec![b"from the server".to_vec()]);
    assert_eq!(Wire::messages(&wire.server_events), vec![b"from the client".to_vec()]);
    assert!(closed(&wire.server_events).is_none() && closed(&wire.client_events).is_none());
}

#[test]
fn a_lost_handshake_flight_and_lost_messages_are_sent_again() {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let (one, two) = (configs(&ca, &ca, &[node(1)]), configs(&ca, &ca, &[node(2)]));
    let mut wire = Wire::new(&one, &two, node(2));
    // The client's first ClientHello is lost: in flight already, so drop it.
    wire.flying.clear();
    wire.run(Duration::from_secs(3));
    assert!(up(&wire.server_events).is_some() && up(&wire.client_events).is_some());

    // Lose the next three datagrams, whatever they are.
    wire.lose = vec![wire.sent, wire.sent + 1, wire.sent + 2];
    let now = wire.now;
    for k in 0..5u8 {
        wire.client.send(now, vec![k; 300], &ctx()).unwrap();
    }
    wire.collect();
    wire.run(Duration::from_secs(5));
    let got = Wire::messages(&wire.server_events);
    for k in 0..5u8 {
        assert!(got.contains(&vec![k; 300]), "message {k} arrived");
    }
    assert!(closed(&wire.client_events).is_none());
}

#[test]
fn a_certificate_without_the_attached_node_id_closes_the_link() {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let (one, two) = (configs(&ca, &ca, &[node(1)]), configs(&ca, &ca, &[node(2)]));
    // The server's Attach named node 3; node 2 answers.
    let mut wire = Wire::new(&one, &two, node(3));
    wire.run(Duration::from_secs(1));
    assert!(up(&wire.server_events).is_none(), "never up at the server");
    let why = closed(&wire.server_events).expect("the server closes");
    assert!(why.contains("does not carry Node-ID"), "{why}");
    // The client was up for a moment (the server's certificate is right)
    // and hears the close_notify.
    assert!(closed(&wire.client_events).is_some(), "the client closes too");
}

#[test]
fn a_certificate_of_another_overlay_fails_the_handshake_at_both_ends() {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let stranger = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let one = configs(&ca, &ca, &[node(1)]);
    let two = configs(&stranger, &ca, &[node(2)]);
    let mut wire = Wire::new(&one, &two, node(2));
    wire.run(Duration::from_secs(12));
    assert!(up(&wire.server_events).is_none() && up(&wire.client_events).is_none());
    assert!(closed(&wire.server_events).is_some(), "the server refuses");
    assert!(closed(&wire.client_events).is_some(), "the client gives up");
    assert!(wire.server.poll_timeout().is_none() && wire.client.poll_timeout().is_none());
}

#[test]
fn a_handshake_nobody_answers_times_out() {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let two = configs(&ca, &ca, &[node(2)]);
    let start = Instant::now();
    let mut link = DtlsLink::connect(start, SocketAddr::from(([10, 0, 0, 1], 5000)), node(1), &two, None);
    let mut now = start;
    let mut hellos = 0;
    while let Some(t) = link.poll_timeout() {
        while link.poll_transmit().is_some() {
            hellos += 1;
        }
        now = t;
        link.handle_timeout(now);
    }
    assert!(hellos >= 2, "the ClientHello is retransmitted ({hellos})");
    assert!(now <= start + HANDSHAKE_TIMEOUT, "gave up within the handshake timeout");
    assert!(matches!(link.poll_event(), Some(DtlsEvent::Closed(_))));
    assert_eq!(link.send(now, b"x".to_vec(), &ctx()), Err(SendError::NotUp));
}

/// An encoded RELOAD message to `destinations` with `payload` after the
/// forwarding header.
fn message(destinations: usize, payload: usize) -> Vec<u8> {
    use reload_wire::{Destination, ForwardingHeader, Writer};
    let to = (0..destinations)
        .map(|k| Destination::Node(node(k as u128 + 10)))
        .collect();
    let header = ForwardingHeader::new(0x1234, 7, to);
    let mut w = Writer::new();
    header.encode_with_payload(&mut w, &vec![0x42; payload]);
    w.finish().unwrap()
}

#[test]
fn a_long_message_goes_in_fragments_that_fit_the_minimum_mtu() {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let (one, two) = (configs(&ca, &ca, &[node(1)]), configs(&ca, &ca, &[node(2)]));
    let mut wire = Wire::new(&one, &two, node(2));
    wire.run(Duration::from_millis(200));
    let whole = message(1, 4_500);
    let now = wire.now;
    wire.server_sent.clear();
    wire.server.send(now, whole.clone(), &ctx()).unwrap();
    wire.collect();
    wire.run(Duration::from_millis(100));
    // §6.7: pieces no larger than FRAGMENT_BYTES, each in a datagram that
    // fits IPv6's minimum MTU (less 48 bytes of IPv6 and UDP headers).
    assert!(wire.server_sent.len() >= 5, "{} datagrams", wire.server_sent.len());
    assert!(wire.server_sent.iter().all(|d| d.len() <= 1_280 - 48));
    let pieces = Wire::messages(&wire.client_events);
    assert!(pieces.len() >= 5 && pieces.iter().all(|p| p.len() <= FRAGMENT_BYTES));
    // The destination reassembles them into the message sent.
    let mut reassembler = reload_wire::fragment::Reassembler::new(1 << 20);
    let mut done = None;
    for piece in &pieces {
        if let Ok(reload_wire::fragment::Reassembly::Complete(m)) = reassembler.push(0, piece, &ctx()) {
            done = Some(m);
        }
    }
    assert_eq!(done.as_deref(), Some(&whole[..]), "reassembled");
}

#[test]
fn a_message_that_cannot_be_fragmented_or_sent_whole_is_refused_and_the_link_goes_on() {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let (one, two) = (configs(&ca, &ca, &[node(1)]), configs(&ca, &ca, &[node(2)]));
    let mut wire = Wire::new(&one, &two, node(2));
    wire.run(Duration::from_millis(200));
    let now = wire.now;
    // A forwarding header so long that no fragment could carry 256 bytes.
    let huge = message(60, 3_500);
    assert_eq!(
        wire.client.send(now, huge.clone(), &ctx()),
        Err(SendError::TooLarge(huge.len()))
    );
    assert!(matches!(
        wire.client.send(now, vec![0; 2 * FRAGMENT_BYTES], &ctx()),
        Err(SendError::Unfragmentable(_))
    ));
    wire.client.send(now, b"after".to_vec(), &ctx()).unwrap();
    wire.collect();
    wire.run(Duration::from_millis(100));
    assert_eq!(Wire::messages(&wire.server_events), vec![b"after".to_vec()]);
}

#[test]
fn junk_from_the_remote_address_does_not_end_a_link_that_is_up() {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let (one, two) = (configs(&ca, &ca, &[node(1)]), configs(&ca, &ca, &[node(2)]));
    let mut wire = Wire::new(&one, &two, node(2));
    wire.run(Duration::from_millis(200));
    let now = wire.now;
    // An application-data record of epoch 1 that does not decrypt, and
    // bytes that are no record at all.
    let mut forged = vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 40];
    forged.extend([0x55; 40]);
    for junk in [&forged[..], &[23, 0xfe][..], &[0x16; 300][..]] {
        wire.server.receive(now, junk, &ctx());
    }
    wire.collect();
    wire.client.send(now, b"still here".to_vec(), &ctx()).unwrap();
    wire.collect();
    wire.run(Duration::from_millis(100));
    assert_eq!(Wire::messages(&wire.server_events), vec![b"still here".to_vec()]);
    assert!(closed(&wire.server_events).is_none());
}

/// Two Attaches crossed and each end kept one association: the dropped
/// one's handshake messages, still on the wire, come first to the kept
/// ones: a HelloVerifyRequest to the server, a ClientHello to the client.
/// They are ignored and the kept handshake completes.
#[test]
fn handshake_messages_of_a_dropped_crossed_association_are_ignored() {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let (one, two) = (configs(&ca, &ca, &[node(1)]), configs(&ca, &ca, &[node(2)]));
    let mut wire = Wire::new(&one, &two, node(2));
    let now = wire.now;
    // The dropped association: node 1 as client, node 2 as server.
    let (a, b) = (
        SocketAddr::from(([10, 0, 0, 1], 5000)),
        SocketAddr::from(([10, 0, 0, 2], 5000)),
    );
    let mut dropped_client = DtlsLink::connect(now, b, node(2), &one, None);
    let mut dropped_server = DtlsLink::accept(now, a, node(1), &two, None);
    let stray_hello = dropped_client.poll_transmit().unwrap();
    dropped_server.receive(now, &stray_hello, &ctx());
    let stray_verify_request = dropped_server.poll_transmit().unwrap();
    // They reach the kept links before anything else does.
    wire.server.receive(now, &stray_verify_request, &ctx());
    wire.client.receive(now, &stray_hello, &ctx());
    assert!(wire.server.poll_transmit().is_none() && wire.client.poll_transmit().is_none());
    wire.collect();
    wire.run(Duration::from_millis(300));
    assert!(up(&wire.server_events).is_some() && up(&wire.client_events).is_some());
}
