//! The SIP side of the peer core without I/O: a REGISTER is answered only
//! once the overlay took its Store (RFC 7904 §3), a Store that failed
//! gets 500 with Retry-After, retransmissions get the same answer, and a
//! lookup's outcome becomes the proxy's next hop, with the Node-ID a TLS
//! connection there must present (decision 0027).

use peer_core::sip_service::{InterworkingRole, SipEvent, SipInput, SipOutput, SipService};
use peer_core::sip_usage::{Located, PublishError, SipPeer};
use reload_wire::NodeId;
use sip::digest::{Algorithm, Ha1};
use sip::proxy::{Interfaces, Interworking, Outsiders, Proxy, Reach, Side};
use sip::registrar::{Flow, Registrar, Transport};
use sip::testing::authorize;
use sip::SipMessage;
use std::net::SocketAddr;

const DOMAIN: &str = "overlay.test";
const T0: u64 = 1_800_000_000_000;

fn service() -> SipService {
    service_with(Interworking::default())
}

fn service_with(interworking: Interworking) -> SipService {
    let users = [("alice", "secret"), ("bob", "hunter2")]
        .into_iter()
        .map(|(u, p)| (u.to_string(), Ha1::new(u, DOMAIN, p)))
        .collect();
    let registrar = Registrar::new(DOMAIN, users, [7; 32]).with_digest_algorithms(&[Algorithm::Md5]);
    let interfaces = Interfaces {
        phones: "127.0.0.1:5060".parse().unwrap(),
        overlay: "127.0.0.1:6060".parse().unwrap(),
        phones_tls: None,
        phones_other_family: None,
    };
    let proxy = Proxy::new(interfaces, 1)
        .with_dialog_secret([9; 32])
        .with_interworking(interworking);
    SipService::new(registrar, proxy, 1)
}

fn udp(port: u16) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

fn outputs(service: &mut SipService) -> Vec<SipOutput> {
    std::iter::from_fn(|| service.poll_output()).collect()
}

fn sent(outputs: &[SipOutput]) -> Vec<(Flow, SipMessage, Option<NodeId>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            SipOutput::Send { flow, bytes, peer, .. } => Some((*flow, SipMessage::parse(bytes).unwrap(), *peer)),
            _ => None,
        })
        .collect()
}

fn input(service: &mut SipService, now: u64, bytes: &[u8], flow: Flow, side: Side) -> Vec<SipOutput> {
    let message = SipInput::Message {
        bytes,
        flow,
        side,
        waited_ms: Some(0),
    };
    service.handle_input(now, message);
    outputs(service)
}

fn register_request(user: &str, flow: Flow) -> SipMessage {
    let text = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {remote};branch=z9hG4bKreg1\r\n\
         From: <sip:{user}@{DOMAIN}>;tag=r\r\nTo: <sip:{user}@{DOMAIN}>\r\nCall-ID: reg-{user}\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:{user}@{remote}>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
        remote = flow.remote,
    );
    SipMessage::parse(text.as_bytes()).unwrap()
}

/// alice's REGISTER through the challenge: the outputs of the authorized
/// one, and its bytes.
fn authorized_register(service: &mut SipService, flow: Flow) -> (Vec<SipOutput>, Vec<u8>) {
    let request = register_request("alice", flow);
    let out = input(service, T0, &request.to_bytes(), flow, Side::Phones);
    let challenge = &sent(&out)[0].1;
    assert_eq!(challenge.status(), Some(401));
    let authorized = authorize(&request, challenge, "alice", "secret", Algorithm::Md5).to_bytes();
    (input(service, T0 + 1, &authorized, flow, Side::Phones), authorized)
}

fn publish_token(outputs: &[SipOutput]) -> u64 {
    outputs
        .iter()
        .find_map(|o| match o {
            SipOutput::Publish {
                resource_name,
                lifetime_s,
                token,
            } => {
                assert_eq!(resource_name, &format!("alice@{DOMAIN}"));
                assert_eq!(*lifetime_s, 600);
                Some(*token)
            }
            _ => None,
        })
        .expect("a Store for the overlay")
}

#[test]
fn a_register_is_answered_once_the_overlay_stored_it_and_retransmissions_get_that_answer() {
    let mut service = service();
    let phone = udp(7001);
    let (out, authorized) = authorized_register(&mut service, phone);
    assert!(sent(&out).is_empty(), "no answer before the Store is answered");
    let token = publish_token(&out);

    let again = input(&mut service, T0 + 2, &authorized, phone, Side::Phones);
    assert!(sent(&again).is_empty(), "a retransmission while storing is absorbed");

    service.handle_input(T0 + 3, SipInput::Published { token, result: Ok(()) });
    let out = outputs(&mut service);
    let answers = sent(&out);
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].0, answers[0].1.status()), (phone, Some(200)));
    assert!(out.iter().any(|o| matches!(
        o,
        SipOutput::Event(SipEvent::Registered {
            contacts: 1,
            changed: true,
            ..
        })
    )));

    let again = input(&mut service, T0 + 4, &authorized, phone, Side::Phones);
    assert_eq!(sent(&again)[0].1.status(), Some(200), "the transaction's answer, again");
}

#[test]
fn a_register_the_overlay_did_not_store_gets_500_with_retry_after() {
    let mut service = service();
    let (out, _) = authorized_register(&mut service, udp(7002));
    let token = publish_token(&out);
    let result = Err(PublishError::ShuttingDown);
    service.handle_input(T0 + 3, SipInput::Published { token, result });
    let out = outputs(&mut service);
    let answer = &sent(&out)[0].1;
    assert_eq!(answer.status(), Some(500));
    assert!(answer.header("Retry-After").is_some());
    assert!(out
        .iter()
        .any(|o| matches!(o, SipOutput::Event(SipEvent::NotStored { .. }))));
}

#[test]
fn phones_do_not_register_through_the_port_between_peers() {
    let mut service = service();
    let peer = Flow {
        transport: Transport::Tls,
        remote: "127.0.0.2:6060".parse().unwrap(),
    };
    let request = register_request("alice", peer);
    let out = input(&mut service, T0, &request.to_bytes(), peer, Side::Overlay);
    assert_eq!(sent(&out)[0].1.status(), Some(403));
    assert!(!out.iter().any(|o| matches!(o, SipOutput::Publish { .. })));
}

/// bob is registered at another peer: alice's INVITE (authenticated by
/// her registration's flow) makes the service ask the overlay, and the
/// answer sends the INVITE over TLS to that peer, naming the Node-ID its
/// connection must present.
#[test]
fn a_located_peer_gets_the_call_over_a_connection_that_must_present_its_node_id() {
    let mut service = service();
    let phone = udp(7003);
    let (out, _) = authorized_register(&mut service, phone);
    let token = publish_token(&out);
    service.handle_input(T0 + 2, SipInput::Published { token, result: Ok(()) });
    outputs(&mut service);

    let invite = format!(
        "INVITE sip:bob@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bKinv1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=a1\r\nTo: <sip:bob@{DOMAIN}>\r\n\
         Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{phone}>\r\nContent-Length: 0\r\n\r\n",
        phone = phone.remote
    );
    let out = input(&mut service, T0 + 10, invite.as_bytes(), phone, Side::Phones);
    let (resource_name, token) = out
        .iter()
        .find_map(|o| match o {
            SipOutput::Locate { resource_name, token } => Some((resource_name.clone(), *token)),
            _ => None,
        })
        .expect("a lookup");
    assert_eq!(resource_name, format!("bob@{DOMAIN}"));

    let bobs_peer = SipPeer {
        node: NodeId::from_u128(42),
        address: "127.0.0.5:6061".parse().unwrap(),
    };
    let located = Located::Found {
        peers: vec![bobs_peer],
        here: false,
    };
    service.handle_input(T0 + 20, SipInput::Located { token, located });
    let out = outputs(&mut service);
    let forwarded: Vec<_> = sent(&out)
        .into_iter()
        .filter(|(_, m, _)| m.method() == Some("INVITE"))
        .collect();
    assert_eq!(forwarded.len(), 1);
    let (flow, _, peer) = &forwarded[0];
    assert_eq!((flow.transport, flow.remote), (Transport::Tls, bobs_peer.address));
    assert_eq!(*peer, Some(bobs_peer.node));

    // The connection fails: the overlay side is told to ask that peer
    // again, and the address is no longer tied to its Node-ID.
    service.handle_input(T0 + 30, SipInput::FlowFailed { flow: *flow });
    let out = outputs(&mut service);
    assert!(out
        .iter()
        .any(|o| matches!(o, SipOutput::Unreachable { address } if *address == bobs_peer.address)));
}

/// alice (registered) calls carol@corp.test: what the service asks for.
fn call_to_another_domain(service: &mut SipService, branch: &str) -> Vec<SipOutput> {
    let phone = udp(7004);
    let invite = format!(
        "INVITE sip:carol@corp.test SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=a1\r\nTo: <sip:carol@corp.test>\r\n\
         Call-ID: {branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{phone}>\r\nContent-Length: 0\r\n\r\n",
        phone = phone.remote
    );
    let invite = SipMessage::parse(invite.as_bytes()).unwrap();
    let out = input(service, T0 + 10, &invite.to_bytes(), phone, Side::Phones);
    let challenge = &sent(&out)[0].1;
    assert_eq!(challenge.status(), Some(407));
    let mut authorized = authorize(&invite, challenge, "alice", "secret", Algorithm::Md5);
    authorized.set("CSeq", "2 INVITE");
    let via = format!("SIP/2.0/UDP {};branch={branch}x;rport", phone.remote);
    authorized.set("Via", &via);
    input(service, T0 + 11, &authorized.to_bytes(), phone, Side::Phones)
}

fn asks_for_peers(out: &[SipOutput]) -> Option<Vec<NodeId>> {
    out.iter().find_map(|o| match o {
        SipOutput::LocatePeers { peers, .. } => Some(peers.clone()),
        _ => None,
    })
}

fn asks_dns(out: &[SipOutput]) -> bool {
    out.iter().any(|o| matches!(o, SipOutput::Resolve { .. }))
}

/// Decision 0036: the configuration's proxy peers decide where a user's
/// request for another domain goes: to them from a peer not listed, out
/// from a listed one, out from one its operator made a proxy peer itself;
/// and a new list applies to the next request.
#[test]
fn the_configurations_proxy_peers_decide_who_sends_requests_for_other_domains_out() {
    let (me, other) = (NodeId::from_u128(1), NodeId::from_u128(2));
    let interworking = Interworking {
        reach: Reach::Direct,
        ..Default::default()
    };
    let with_role = |own_policy: Option<Outsiders>| {
        service_with(interworking.clone()).with_role(InterworkingRole {
            me: Some(me),
            own_policy,
        })
    };
    // No list: every peer sends out itself, as before.
    let mut service = with_role(None);
    service.set_proxy_peers(&[], &Outsiders::Everyone);
    assert!(asks_dns(&call_to_another_domain(&mut service, "z9hG4bKa")));
    // Another peer is listed: the call goes to it, not to the DNS.
    service.set_proxy_peers(&[other], &Outsiders::Everyone);
    let out = call_to_another_domain(&mut service, "z9hG4bKb");
    assert_eq!(asks_for_peers(&out), Some(vec![other]));
    assert!(!asks_dns(&out));
    // This peer is listed too: it sends out itself.
    service.set_proxy_peers(&[other, me], &Outsiders::Everyone);
    let out = call_to_another_domain(&mut service, "z9hG4bKc");
    assert!(asks_dns(&out) && asks_for_peers(&out).is_none());
    // Made a proxy peer by its operator: out itself, whatever is listed.
    let mut own = with_role(Some(Outsiders::Nobody));
    own.set_proxy_peers(&[other], &Outsiders::Everyone);
    assert!(asks_dns(&call_to_another_domain(&mut own, "z9hG4bKd")));
}

/// alice registers `contact` over UDP `flow` (challenge, credentials,
/// the overlay's Store answered) and the service is past all of it.
fn registered_with_contact(service: &mut SipService, flow: Flow, contact: &str, at: u64) {
    registered_for(service, flow, contact, at, 600);
}

/// [`registered_with_contact`] for `expires` seconds (0: unregistered),
/// the phone's REGISTERs sharing one Call-ID (RFC 3261 §10.2.4).
fn registered_for(service: &mut SipService, flow: Flow, contact: &str, at: u64, expires: u32) {
    let text = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {contact};branch=z9hG4bKnat{at}\r\n\
         From: <sip:alice@{DOMAIN}>;tag=r\r\nTo: <sip:alice@{DOMAIN}>\r\nCall-ID: nat-{contact}\r\n\
         CSeq: {at} REGISTER\r\nContact: <sip:alice@{contact}>\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n",
        at = at % 1_000_000,
    );
    let request = SipMessage::parse(text.as_bytes()).unwrap();
    let out = input(service, at, &request.to_bytes(), flow, Side::Phones);
    let challenge = &sent(&out)[0].1;
    let authorized = authorize(&request, challenge, "alice", "secret", Algorithm::Md5).to_bytes();
    let out = input(service, at + 1, &authorized, flow, Side::Phones);
    service.handle_input(
        at + 2,
        SipInput::Published {
            token: out
                .iter()
                .find_map(|o| match o {
                    SipOutput::Publish { token, .. } => Some(*token),
                    _ => None,
                })
                .expect("a Store or removal for the overlay"),
            result: Ok(()),
        },
    );
    assert_eq!(sent(&outputs(service))[0].1.status(), Some(200));
}

/// What the service sends when its timers run from `from` to `to`.
fn run_timers(service: &mut SipService, from: u64, to: u64) -> Vec<(u64, Flow, SipMessage)> {
    let mut sent_at = Vec::new();
    let mut now = from;
    while let Some(t) = service.poll_timeout().filter(|t| *t <= to) {
        now = now.max(t);
        service.handle_timeout(now);
        for (flow, message, _) in sent(&outputs(service)) {
            sent_at.push((now, flow, message));
        }
    }
    sent_at
}

/// [`run_timers`] with the phone on `flow` answering each keepalive.
fn run_answering(service: &mut SipService, from: u64, to: u64, flow: Flow) -> Vec<(u64, Flow, SipMessage)> {
    let mut sent_at = Vec::new();
    let mut now = from;
    while let Some(t) = service.poll_timeout().filter(|t| *t <= to) {
        now = now.max(t);
        service.handle_timeout(now);
        for (to_flow, message, _) in sent(&outputs(service)) {
            if to_flow == flow && message.method() == Some("OPTIONS") {
                let answer = SipMessage::response_to(&message, 200, "OK", None);
                input(service, now, &answer.to_bytes(), flow, Side::Phones);
            }
            sent_at.push((now, to_flow, message));
        }
    }
    sent_at
}

/// Issue 35 §5: a phone that registered over UDP from behind a NAT (its
/// Contact is a private address; the REGISTER came from the NAT's) gets
/// an OPTIONS over that flow every keepalive interval, which keeps the
/// NAT's binding open for calls to it; its answer goes nowhere. A phone
/// whose Contact is where it sends from gets none.
#[test]
fn a_phone_behind_a_nat_gets_keepalives_over_the_flow_it_registered_from() {
    let interval = 20_000;
    let mut service = service().with_nat_keepalive(Some(interval));
    let natted = udp(40_001);
    registered_with_contact(&mut service, natted, "192.168.1.20:5060", T0);
    let direct = udp(7005);
    registered_with_contact(&mut service, direct, "127.0.0.1:7005", T0 + 10);
    let sent = run_timers(&mut service, T0 + 20, T0 + 20 + 3 * interval - 1);
    let pings: Vec<_> = sent.iter().filter(|(_, _, m)| m.method() == Some("OPTIONS")).collect();
    assert_eq!(
        pings.len(),
        3,
        "one per interval: {:?}",
        pings.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    for (_, flow, options) in &pings {
        assert_eq!(*flow, natted, "only the NATed phone, over its flow");
        assert_eq!(
            options.request_uri().map(|u| u.to_string()),
            Some("sip:alice@192.168.1.20:5060".into())
        );
    }
    let gaps: Vec<u64> = pings.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.iter().all(|g| *g == interval), "{gaps:?}");
    // The phone answers: absorbed, no output.
    let answer = SipMessage::response_to(&pings[0].2, 200, "OK", None);
    let out = input(
        &mut service,
        T0 + 5 * interval,
        &answer.to_bytes(),
        natted,
        Side::Phones,
    );
    assert!(sent_nothing(&out), "{out:?}");
}

fn sent_nothing(out: &[SipOutput]) -> bool {
    sent(out).is_empty()
}

/// Keepalives off: nothing is sent to the phone behind the NAT.
#[test]
fn with_keepalives_off_a_phone_behind_a_nat_gets_none() {
    let mut service = service().with_nat_keepalive(None);
    registered_with_contact(&mut service, udp(40_002), "192.168.1.21:5060", T0);
    let sent = run_timers(&mut service, T0 + 10, T0 + 120_000);
    assert!(sent.iter().all(|(_, _, m)| m.method() != Some("OPTIONS")));
}

/// A phone behind a NAT that registers again and then unregisters: its
/// binding keeps the Contact it wrote (only a dialog's remote target is
/// rewritten to the NAT's address), so the refresh renews that binding
/// and the keepalives go on past the first one's expiry, and the
/// de-registration naming it leaves nothing to keep open.
#[test]
fn a_natted_phone_that_registers_again_keeps_its_binding_and_unregistering_ends_the_keepalives() {
    let interval = 20_000;
    let mut service = service().with_nat_keepalive(Some(interval));
    let natted = udp(40_003);
    let contact = "192.168.1.22:5060";
    registered_for(&mut service, natted, contact, T0, 600);
    registered_for(&mut service, natted, contact, T0 + 300_000, 600);
    let bindings = service.registrar().contacts("alice", T0 + 300_010);
    assert_eq!(bindings.len(), 1, "the refresh renewed the one binding");
    assert_eq!(bindings[0].contact.uri.to_string(), format!("sip:alice@{contact}"));
    let sent = run_answering(&mut service, T0 + 300_010, T0 + 700_000, natted);
    let after_first_expiry = sent
        .iter()
        .filter(|(t, _, m)| *t > T0 + 600_000 && m.method() == Some("OPTIONS"))
        .count();
    assert!(
        after_first_expiry >= 4,
        "{after_first_expiry} keepalives after the first REGISTER's expiry"
    );
    registered_for(&mut service, natted, contact, T0 + 700_000, 0);
    assert!(service.registrar().contacts("alice", T0 + 700_010).is_empty());
    let sent = run_timers(&mut service, T0 + 700_010, T0 + 800_000);
    assert!(
        sent.iter().all(|(_, _, m)| m.method() != Some("OPTIONS")),
        "no keepalive after unregistering"
    );
}

/// A flow that answers nothing (a phone gone, or a source that was
/// forged) gets three keepalives and then none, until it sends something
/// again.
#[test]
fn a_flow_that_never_answers_gets_three_keepalives_then_none_until_it_speaks() {
    let interval = 20_000;
    let mut service = service().with_nat_keepalive(Some(interval));
    let natted = udp(40_004);
    registered_with_contact(&mut service, natted, "192.168.1.23:5060", T0);
    let options =
        |sent: &[(u64, Flow, SipMessage)]| sent.iter().filter(|(_, _, m)| m.method() == Some("OPTIONS")).count();
    let sent = run_timers(&mut service, T0 + 10, T0 + 10 * interval);
    assert_eq!(options(&sent), 3, "three unanswered, then silence");
    // The phone speaks (an OPTIONS of its own here): keepalives resume.
    let ping = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.23:5060;branch=z9hG4bKp1\r\n\
         From: <sip:alice@{DOMAIN}>;tag=p\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: p1\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    input(
        &mut service,
        T0 + 10 * interval + 1,
        ping.as_bytes(),
        natted,
        Side::Phones,
    );
    let sent = run_timers(&mut service, T0 + 10 * interval + 2, T0 + 12 * interval);
    assert!(options(&sent) >= 1, "keepalives again once it spoke");
}
