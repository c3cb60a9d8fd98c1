use super::*;

mod home_registration;
mod other_domains;
mod through_proxy_peers;
use crate::digest::{Algorithm, Ha1};
use crate::registrar::Registered;
use crate::testing::authorize;

const DOMAIN: &str = "overlay.test";

fn me() -> Interfaces {
    Interfaces {
        phones: "127.0.0.1:5060".parse().unwrap(),
        overlay: "127.0.0.1:6060".parse().unwrap(),
        phones_tls: Some("127.0.0.1:5061".parse().unwrap()),
        phones_other_family: None,
    }
}

fn udp(port: u16) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

fn tcp(addr: &str) -> Flow {
    Flow {
        transport: Transport::Tcp,
        remote: addr.parse().unwrap(),
    }
}

/// A flow to or from another peer: the AppAttach connection, over TLS.
fn tls(addr: &str) -> Flow {
    Flow {
        transport: Transport::Tls,
        remote: addr.parse().unwrap(),
    }
}

/// The overlay-side address of another peer.
const PEER4: &str = "127.0.0.2:6060";

fn registrar() -> Registrar {
    let users = [("alice", "secret"), ("bob", "hunter2")]
        .into_iter()
        .map(|(u, p)| (u.to_string(), Ha1::new(u, DOMAIN, p)))
        .collect();
    Registrar::new(DOMAIN, users, [7; 32]).with_digest_algorithms(&[Algorithm::Md5, Algorithm::Sha256])
}

/// Registers `contact` for `user` from `flow`, through the challenge.
fn register(reg: &mut Registrar, user: &str, password: &str, contact: &str, flow: Flow) {
    let text = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {contact_host};branch=z9hG4bKreg{n}\r\n\
         From: <sip:{user}@{DOMAIN}>;tag=r\r\nTo: <sip:{user}@{DOMAIN}>\r\nCall-ID: reg-{user}-{n}\r\n\
         CSeq: 1 REGISTER\r\nContact: <{contact}>\r\nContent-Length: 0\r\n\r\n",
        contact_host = flow.remote,
        n = flow.remote.port(),
    );
    let req = SipMessage::parse(text.as_bytes()).unwrap();
    let Registered::Answer(challenge) = reg.register(0, &req, flow) else {
        panic!("challenged first")
    };
    let outcome = reg.register(0, &authorize(&req, &challenge, user, password, Algorithm::Md5), flow);
    assert!(matches!(outcome, Registered::Publish { lifetime_s, .. } if lifetime_s > 0));
}

/// Record-Route entries with their dialog proof taken off, after checking
/// every entry of one request carries the same one.
/// Another SIP domain (decision 0034).
const CORP: &str = "corp.test";

/// alice's phone is registered from UDP port 7001: its requests are hers.
fn alice_registered() -> Registrar {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    reg
}

/// alice's INVITE for carol of [`CORP`].
fn invite_carol(branch: &str) -> SipMessage {
    request("INVITE", &format!("sip:carol@{CORP}"), 7001, branch, "")
}

/// `request` left this peer with its top Via sent by `via` (as in
/// `SIP/2.0/UDP 127.0.0.1:5060`) and these Record-Route entries, their
/// dialog proofs left out.
fn assert_left_as(request: &SipMessage, via: &str, record_route: &[&str], why: &str) {
    let vias = request.list("Via");
    assert!(vias[0].starts_with(&format!("{via};")), "{why}: {vias:?}");
    assert_eq!(without_proof(request.list("Record-Route")), record_route, "{why}");
}

fn without_proof(entries: Vec<String>) -> Vec<String> {
    let proofs: Vec<&str> = entries
        .iter()
        .map(|e| e.split(";dlg=").nth(1).expect("a dialog proof").trim_end_matches('>'))
        .collect();
    assert!(
        proofs
            .iter()
            .all(|p| p.len() >= 32 && p.len() % 16 == 0 && *p == proofs[0]),
        "{entries:?}"
    );
    entries
        .iter()
        .map(|e| e.split(";dlg=").next().unwrap().to_string() + ">")
        .collect()
}

fn request(method: &str, uri: &str, from_port: u16, branch: &str, extra: &str) -> SipMessage {
    let text = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{from_port};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@{DOMAIN}>;tag=a1\r\nTo: <sip:bob@{DOMAIN}>\r\n\
         Call-ID: call-1\r\nCSeq: 1 {method}\r\nContact: <sip:alice@127.0.0.1:{from_port}>\r\n{extra}\
         Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
    );
    SipMessage::parse(text.as_bytes()).unwrap()
}

fn invite(branch: &str) -> SipMessage {
    request("INVITE", &format!("sip:bob@{DOMAIN}"), 7001, branch, "")
}

/// A response to a request this proxy sent, as the next hop writes it.
fn respond(sent: &SipMessage, code: u16, to_tag: Option<&str>) -> SipMessage {
    let mut r = SipMessage::response_to(sent, code, "Whatever", to_tag);
    for rr in sent.list("Record-Route") {
        r.push("Record-Route", &rr);
    }
    r.push("Contact", "<sip:bob@127.0.0.1:7002>");
    r
}

fn sent(outputs: &[Output]) -> Vec<(Flow, SipMessage)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { flow, bytes } => Some((*flow, SipMessage::parse(bytes).unwrap())),
            Output::Locate { .. }
            | Output::LocateProxyPeers { .. }
            | Output::Resolve { .. }
            | Output::TlsDomain { .. }
            | Output::Observed(_) => None,
        })
        .collect()
}

fn lookup_of(outputs: &[Output]) -> (u64, String) {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Locate { lookup, user } => Some((*lookup, user.clone())),
            Output::Send { .. }
            | Output::LocateProxyPeers { .. }
            | Output::Resolve { .. }
            | Output::TlsDomain { .. }
            | Output::Observed(_) => None,
        })
        .expect("a lookup")
}

fn observed(outputs: &[Output]) -> Vec<Observation> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Observed(seen) => Some(seen.clone()),
            Output::Send { .. }
            | Output::Locate { .. }
            | Output::LocateProxyPeers { .. }
            | Output::Resolve { .. }
            | Output::TlsDomain { .. } => None,
        })
        .collect()
}

fn codes(out: &[(Flow, SipMessage)]) -> Vec<u16> {
    out.iter().filter_map(|(_, m)| m.status()).collect()
}

/// Alice (registered here over UDP 7001) calls bob; the overlay says bob
/// is at PEER4. Returns the proxy and the INVITE it sent there.
fn call_to_peer4(reg: &mut Registrar) -> (Proxy, SipMessage) {
    register(reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 1);
    let out = proxy.on_request(0, invite("z9hG4bKinv1"), udp(7001), Side::Phones, reg);
    let msgs = sent(&out);
    assert_eq!(codes(&msgs), vec![100], "100 Trying at once (§16.2)");
    let (lookup, user) = lookup_of(&out);
    assert_eq!(user, "bob");
    let location = Location::Found {
        peers: vec![PEER4.parse().unwrap()],
        here: false,
    };
    let out = sent(&proxy.located(10, lookup, location, reg));
    assert_eq!(out.len(), 1);
    let (flow, fwd) = out.into_iter().next().unwrap();
    assert_eq!(flow, tls(PEER4));
    (proxy, fwd)
}

#[test]
fn a_call_from_a_registered_phone_goes_to_the_peer_the_overlay_names_with_both_record_routes() {
    let mut reg = registrar();
    let (_, fwd) = call_to_peer4(&mut reg);
    assert_eq!(
        fwd.request_uri(),
        Some("sip:bob@overlay.test"),
        "the callee's peer does the last lookup"
    );
    assert_eq!(fwd.header("Max-Forwards").as_deref(), Some("69"));
    let vias = fwd.list("Via");
    assert_eq!(vias.len(), 2);
    assert!(
        vias[0].starts_with("SIP/2.0/TLS 127.0.0.1:6060;branch=z9hG4bK"),
        "{}",
        vias[0]
    );
    assert!(
        vias[1].contains("received=127.0.0.1") && vias[1].contains("rport=7001"),
        "{}",
        vias[1]
    );
    assert_eq!(
        without_proof(fwd.list("Record-Route")),
        vec!["<sip:127.0.0.1:6060;transport=tls;lr>", "<sip:127.0.0.1:5060;lr>"],
        "RFC 5658: the overlay side on top, the phone side beneath"
    );
    assert_eq!(fwd.body, b"v=0\n", "the body travels untouched");
}

#[test]
fn provisional_and_final_answers_come_back_to_the_phone_without_this_peers_via() {
    let mut reg = registrar();
    let (mut proxy, fwd) = call_to_peer4(&mut reg);
    let out = sent(&proxy.on_response(20, respond(&fwd, 180, Some("b1")), tls(PEER4)));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, udp(7001), "back where the INVITE came from");
    assert_eq!(out[0].1.status(), Some(180));
    assert_eq!(out[0].1.list("Via").len(), 1);
    assert!(
        sent(&proxy.on_response(21, respond(&fwd, 100, None), tls(PEER4))).is_empty(),
        "100 is hop by hop"
    );

    let out = sent(&proxy.on_response(30, respond(&fwd, 200, Some("b1")), tls(PEER4)));
    assert_eq!(codes(&out), vec![200]);
    assert_eq!(out[0].1.list("Record-Route").len(), 2);
    // A retransmitted 2xx goes on too (RFC 6026), and after the
    // transaction is gone, statelessly.
    assert_eq!(
        codes(&sent(&proxy.on_response(
            500,
            respond(&fwd, 200, Some("b1")),
            tls(PEER4)
        ))),
        vec![200]
    );
    proxy.tick(60_000);
    assert_eq!(proxy.transaction_count(), (0, 0), "all transactions forgotten");
    assert_eq!(
        codes(&sent(&proxy.on_response(
            60_001,
            respond(&fwd, 200, Some("b1")),
            tls(PEER4)
        ))),
        vec![200]
    );
}

#[test]
fn an_unknown_user_gets_404_and_its_ack_stops_the_retransmissions() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 1);
    let inv = request("INVITE", &format!("sip:nobody@{DOMAIN}"), 7001, "z9hG4bKx", "");
    let (lookup, user) = lookup_of(&proxy.on_request(0, inv.clone(), udp(7001), Side::Phones, &mut reg));
    assert_eq!(user, "nobody");
    let out = sent(&proxy.located(5, lookup, Location::NotFound, &reg));
    assert_eq!(codes(&out), vec![404]);
    let to_tag = NameAddr::parse(&out[0].1.header("To").unwrap())
        .unwrap()
        .tag()
        .map(str::to_string);
    assert!(to_tag.is_some(), "a final answer carries a To tag");
    // Timer G: the 404 again after T1 on UDP, until the ACK.
    assert_eq!(codes(&sent(&proxy.tick(5 + T1_MS))), vec![404]);
    let mut ack = request("ACK", &format!("sip:nobody@{DOMAIN}"), 7001, "z9hG4bKx", "");
    ack.set("CSeq", "1 ACK");
    ack.set("To", &out[0].1.header("To").unwrap());
    assert!(
        sent(&proxy.on_request(600, ack, udp(7001), Side::Phones, &mut reg)).is_empty(),
        "absorbed"
    );
    assert!(sent(&proxy.tick(10_000)).is_empty(), "no more retransmissions");
}

#[test]
fn other_domains_are_refused_with_interworking_not_configured() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 1);
    let out = sent(&proxy.on_request(
        0,
        request("INVITE", "sip:carol@example.com", 7001, "z9hG4bKe", ""),
        udp(7001),
        Side::Phones,
        &mut reg,
    ));
    assert_eq!(codes(&out), vec![403]);
    let StartLine::Response { reason, .. } = &out[0].1.start else {
        panic!()
    };
    assert!(reason.contains("Interworking"), "{reason}");
}

#[test]
fn a_phone_that_has_not_registered_must_authenticate_as_a_user() {
    let mut reg = registrar();
    let mut proxy = Proxy::new(me(), 1);
    let inv = invite("z9hG4bKa1");
    let out = sent(&proxy.on_request(0, inv.clone(), udp(7009), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![407]);
    let offers = out[0].1.headers.iter().filter(|h| h.is("Proxy-Authenticate")).count();
    assert_eq!(offers, 2, "MD5 and SHA-256");
    let wrong = authorize(&invite("z9hG4bKa2"), &out[0].1, "alice", "guess", Algorithm::Sha256);
    assert_eq!(
        codes(&sent(&proxy.on_request(1, wrong, udp(7009), Side::Phones, &mut reg))),
        vec![403]
    );
    let right = authorize(&invite("z9hG4bKa3"), &out[0].1, "alice", "secret", Algorithm::Sha256);
    let out = proxy.on_request(2, right, udp(7009), Side::Phones, &mut reg);
    assert_eq!(lookup_of(&out).1, "bob");
}

/// Bob has two phones at this peer; the INVITE arrives from another peer
/// on the overlay side. Both ring; the first 200 wins and the other
/// branch is cancelled, its 487 absorbed.
#[test]
fn a_call_from_the_overlay_forks_to_every_contact_and_the_first_2xx_wins() {
    let mut reg = registrar();
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7002", udp(7002));
    register(
        &mut reg,
        "bob",
        "hunter2",
        "sip:bob@127.0.0.1:7003;transport=tcp",
        tcp("127.0.0.1:7003"),
    );
    let mut proxy = Proxy::new(me(), 2);
    let from_peer = tls("127.0.0.3:40000");
    let mut inv = invite("z9hG4bKfromp0");
    inv.prepend("Via", "SIP/2.0/TLS 127.0.0.3:6060;branch=z9hG4bKp0");
    let out = sent(&proxy.on_request(0, inv, from_peer, Side::Overlay, &mut reg));
    assert_eq!(codes(&out), vec![100]);
    let branches: Vec<_> = out.iter().filter(|(_, m)| m.is_request()).cloned().collect();
    assert_eq!(branches.len(), 2, "parallel forking");
    let by_flow = |f: Flow| branches.iter().find(|(flow, _)| *flow == f).unwrap().1.clone();
    let (b1, b2) = (by_flow(udp(7002)), by_flow(tcp("127.0.0.1:7003")));
    assert_eq!(b1.request_uri(), Some("sip:bob@127.0.0.1:7002"));
    assert_eq!(
        without_proof(b1.list("Record-Route")),
        vec!["<sip:127.0.0.1:5060;lr>", "<sip:127.0.0.1:6060;transport=tls;lr>"]
    );
    assert_eq!(
        without_proof(b2.list("Record-Route")),
        vec![
            "<sip:127.0.0.1:5060;transport=tcp;lr>",
            "<sip:127.0.0.1:6060;transport=tls;lr>"
        ],
        "a TCP phone reaches the phone side over TCP"
    );

    assert_eq!(
        codes(&sent(&proxy.on_response(5, respond(&b1, 180, Some("p1")), udp(7002)))),
        vec![180]
    );
    assert_eq!(
        codes(&sent(&proxy.on_response(6, respond(&b2, 180, Some("p2")), from_peer))),
        vec![180]
    );
    let out = sent(&proxy.on_response(9, respond(&b1, 200, Some("p1")), udp(7002)));
    let upstream: Vec<_> = out.iter().filter(|(f, _)| *f == from_peer).collect();
    assert_eq!(upstream.len(), 1);
    assert_eq!(upstream[0].1.status(), Some(200));
    let cancel = out
        .iter()
        .find(|(_, m)| m.method() == Some("CANCEL"))
        .expect("the other branch is cancelled");
    assert_eq!(cancel.0, tcp("127.0.0.1:7003"));
    assert_eq!(
        cancel.1.list("Via"),
        vec![b2.list("Via")[0].clone()],
        "§9.1: the branch's own Via"
    );
    assert_eq!(cancel.1.request_uri(), b2.request_uri());

    assert!(sent(&proxy.on_response(10, respond(&cancel.1, 200, Some("p2")), from_peer)).is_empty());
    let out = sent(&proxy.on_response(11, respond(&b2, 487, Some("p2")), from_peer));
    assert_eq!(out.len(), 1, "only the ACK of the 487; nothing upstream");
    assert_eq!(out[0].1.method(), Some("ACK"));
    assert_eq!(out[0].1.list("Via"), vec![b2.list("Via")[0].clone()]);
}

#[test]
fn cancel_before_answer_reaches_the_callee_and_the_caller_gets_487() {
    let mut reg = registrar();
    let (mut proxy, fwd) = call_to_peer4(&mut reg);
    let mut cancel = invite("z9hG4bKinv1");
    cancel.start = StartLine::Request {
        method: "CANCEL".into(),
        uri: "sip:bob@overlay.test".into(),
    };
    cancel.set("CSeq", "1 CANCEL");
    // Nothing provisional from the callee yet: the CANCEL waits (§9.1).
    let out = sent(&proxy.on_request(20, cancel.clone(), udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![200]);
    assert_eq!(out[0].1.cseq().unwrap().1, "CANCEL");
    assert!(out.iter().all(|(_, m)| !m.is_request()));
    let out = sent(&proxy.on_response(25, respond(&fwd, 180, Some("b")), tls(PEER4)));
    let down = out
        .iter()
        .find(|(_, m)| m.method() == Some("CANCEL"))
        .expect("sent once ringing");
    assert_eq!(down.0, tls(PEER4));
    assert_eq!(codes(&out), vec![180]);

    let out = sent(&proxy.on_response(30, respond(&fwd, 487, Some("b")), tls(PEER4)));
    let ack = out.iter().find(|(_, m)| m.method() == Some("ACK")).unwrap();
    assert_eq!(ack.0, tls(PEER4));
    let up = out.iter().find(|(_, m)| m.status() == Some(487)).unwrap();
    assert_eq!(up.0, udp(7001));
}

#[test]
fn a_silent_udp_contact_gets_retransmissions_then_the_caller_408() {
    let mut reg = registrar();
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7002", udp(7002));
    let mut proxy = Proxy::new(me(), 3);
    let mut inv = invite("z9hG4bKq");
    inv.prepend("Via", "SIP/2.0/TLS 127.0.0.3:6060;branch=z9hG4bKp0");
    let from_peer = tls("127.0.0.3:40000");
    proxy.on_request(0, inv, from_peer, Side::Overlay, &mut reg);
    let mut resent = Vec::new();
    let mut now = 0;
    while let Some(t) = proxy.next_deadline() {
        if t > 40_000 {
            break;
        }
        now = t;
        for (flow, m) in sent(&proxy.tick(now)) {
            if m.is_request() {
                assert_eq!(flow, udp(7002));
                resent.push(now);
            } else {
                assert_eq!((flow, m.status()), (from_peer, Some(408)));
                assert_eq!(now, TRANSACTION_TIMEOUT_MS, "Timer B");
            }
        }
    }
    assert_eq!(
        resent,
        vec![500, 1500, 3500, 7500, 15500, 31500],
        "Timer A doubles from T1"
    );
    assert!(now >= TRANSACTION_TIMEOUT_MS);
}

#[test]
fn a_bye_follows_the_record_routes_across_both_peers() {
    let mut reg = registrar();
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7002", udp(7002));
    let mut proxy = Proxy::new(me(), 4);
    // The proof this peer wrote into its Record-Routes for the call: its
    // two ends are peer 0's overlay side and bob's phone.
    let proof = proxy
        .dialog_key
        .proof("call-1", &[Hop::Flow(tls("127.0.0.3:6060")), Hop::Flow(udp(7002))]);
    // Bob hangs up: his route set is what the 200 carried, top first:
    // this peer's phone side, its overlay side, then peer 0's two.
    let text = format!(
        "BYE sip:alice@127.0.0.9:7001 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7002;branch=z9hG4bKbye\r\n\
        Route: <sip:127.0.0.1:5060;lr;dlg={proof}>, <sip:127.0.0.1:6060;transport=tls;lr;dlg={proof}>\r\n\
        Route: <sip:127.0.0.3:6060;transport=tls;lr>,<sip:127.0.0.3:5060;lr>\r\n\
        Max-Forwards: 70\r\nFrom: <sip:bob@overlay.test>;tag=b1\r\nTo: <sip:alice@overlay.test>;tag=a1\r\n\
        Call-ID: call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let bye = SipMessage::parse(text.as_bytes()).unwrap();
    let out = sent(&proxy.on_request(0, bye, udp(7002), Side::Phones, &mut reg));
    assert_eq!(out.len(), 1);
    let (flow, fwd) = &out[0];
    assert_eq!(*flow, tls("127.0.0.3:6060"), "to peer 0's overlay side over TLS");
    assert_eq!(
        fwd.list("Route"),
        vec!["<sip:127.0.0.3:6060;transport=tls;lr>", "<sip:127.0.0.3:5060;lr>"]
    );
    assert!(!fwd.has("Record-Route"), "no Record-Route inside a dialog");
    assert_eq!(fwd.request_uri(), Some("sip:alice@127.0.0.9:7001"));

    // At the last peer the route set is used up: the Request-URI is the
    // remote target, reached directly.
    let text = format!(
        "BYE sip:bob@127.0.0.1:7002 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.3:6060;branch=z9hG4bKbye2\r\n\
        Route: <sip:127.0.0.1:6060;transport=tls;lr;dlg={proof}>,<sip:127.0.0.1:5060;lr;dlg={proof}>\r\n\
        Max-Forwards: 69\r\nFrom: <sip:alice@overlay.test>;tag=a1\r\nTo: <sip:bob@overlay.test>;tag=b1\r\n\
        Call-ID: call-1\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let bye = SipMessage::parse(text.as_bytes()).unwrap();
    let out = sent(&proxy.on_request(1, bye, tls("127.0.0.3:40000"), Side::Overlay, &mut reg));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, udp(7002));
    assert!(!out[0].1.has("Route"));
}

#[test]
fn requests_off_any_dialog_this_peer_routes_are_refused() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 5);
    // An open-relay attempt: in-dialog, but not routed through this peer.
    let mut bye = request("BYE", "sip:carol@192.0.2.1", 7001, "z9hG4bKr1", "");
    bye.set("To", "<sip:carol@example.com>;tag=c");
    assert_eq!(
        codes(&sent(&proxy.on_request(0, bye, udp(7001), Side::Phones, &mut reg))),
        vec![403]
    );
    // A preloaded route beyond this peer.
    let inv = request(
        "INVITE",
        "sip:bob@overlay.test",
        7001,
        "z9hG4bKr2",
        "Route: <sip:192.0.2.1;lr>\r\n",
    );
    assert_eq!(
        codes(&sent(&proxy.on_request(0, inv, udp(7001), Side::Phones, &mut reg))),
        vec![403]
    );
    // Max-Forwards exhausted.
    let mut inv = invite("z9hG4bKr3");
    inv.set("Max-Forwards", "0");
    assert_eq!(
        codes(&sent(&proxy.on_request(0, inv, udp(7001), Side::Phones, &mut reg))),
        vec![483]
    );
}

#[test]
fn a_retransmitted_invite_is_answered_again_not_forwarded_twice() {
    let mut reg = registrar();
    let (mut proxy, fwd) = call_to_peer4(&mut reg);
    proxy.on_response(20, respond(&fwd, 180, Some("b")), tls(PEER4));
    let out = sent(&proxy.on_request(21, invite("z9hG4bKinv1"), udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![180]);
    assert!(out.iter().all(|(_, m)| !m.is_request()));
}

#[test]
fn message_is_routed_like_invite_and_its_200_comes_back() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 6);
    let msg = request("MESSAGE", "sip:bob@overlay.test", 7001, "z9hG4bKm", "");
    let out = proxy.on_request(0, msg, udp(7001), Side::Phones, &mut reg);
    assert!(sent(&out).is_empty(), "no 100 for a non-INVITE");
    let (lookup, _) = lookup_of(&out);
    let location = Location::Found {
        peers: vec![PEER4.parse().unwrap()],
        here: false,
    };
    let out = sent(&proxy.located(1, lookup, location, &reg));
    let fwd = out[0].1.clone();
    assert_eq!(fwd.method(), Some("MESSAGE"));
    let out = sent(&proxy.on_response(2, respond(&fwd, 200, Some("b")), tls(PEER4)));
    assert_eq!(codes(&out), vec![200]);
    assert_eq!(out[0].0, udp(7001));
}

/// §16.7 step 6 turns a branch's 503 into 500 upstream; the Retry-After
/// it carried still tells the caller when to try again (§21.5.1 lets a
/// 500 carry one), so an overloaded callee's peer is not retried at once.
#[test]
fn a_503_from_the_next_hop_goes_upstream_as_500_with_its_retry_after() {
    let mut reg = registrar();
    let (mut proxy, fwd) = call_to_peer4(&mut reg);
    let mut busy = respond(&fwd, 503, None);
    busy.push("Retry-After", "5");
    let out = sent(&proxy.on_response(20, busy, tls(PEER4)));
    let last = out.last().expect("a final answer upstream");
    assert_eq!(last.1.status(), Some(500));
    assert_eq!(last.1.header("Retry-After").as_deref(), Some("5"));
}

#[test]
fn a_peer_that_cannot_be_reached_fails_its_branch_at_once() {
    let mut reg = registrar();
    let (mut proxy, _) = call_to_peer4(&mut reg);
    let out = sent(&proxy.flow_failed(20, tls(PEER4)));
    assert_eq!(
        codes(&out),
        vec![500],
        "a 503 from a branch goes upstream as 500 (§16.7 step 6)"
    );
}

#[test]
fn a_call_between_two_phones_of_one_peer_stays_on_it_with_one_record_route() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7002", udp(7002));
    let mut proxy = Proxy::new(me(), 7);
    let (lookup, _) = lookup_of(&proxy.on_request(0, invite("z9hG4bKl"), udp(7001), Side::Phones, &mut reg));
    let location = Location::Found {
        peers: Vec::new(),
        here: true,
    };
    let out = sent(&proxy.located(1, lookup, location, &reg));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, udp(7002));
    assert_eq!(out[0].1.request_uri(), Some("sip:bob@127.0.0.1:7002"));
    assert_eq!(
        without_proof(out[0].1.list("Record-Route")),
        vec!["<sip:127.0.0.1:5060;lr>"]
    );
}

#[test]
fn a_response_stripped_of_the_callers_vias_still_reaches_the_caller() {
    let mut reg = registrar();
    let (mut proxy, fwd) = call_to_peer4(&mut reg);
    let mut bare = respond(&fwd, 486, Some("b"));
    let ours = bare.list("Via")[0].clone();
    bare.set("Via", &ours);
    let out = sent(&proxy.on_response(20, bare, tls(PEER4)));
    let up = out.iter().find(|(_, m)| m.status() == Some(486)).expect("relayed");
    assert_eq!(up.0, udp(7001));
    assert_eq!(up.1.list("Via").len(), 1);
    assert!(up.1.list("Via")[0].contains("z9hG4bKinv1"), "the caller's own Via");
}

/// One whole call at the caller's peer as SIPp makes it: INVITE from the
/// phone, lookup, 180 and 200 from the callee's peer, ACK, then BYE and
/// its 200. Returns when every message has been handled.
fn one_call(proxy: &mut Proxy, reg: &mut Registrar, now: u64, n: usize) {
    let phone = udp(7001);
    let invite = format!(
        "INVITE sip:bob@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKcall{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@{DOMAIN}>;tag=a{n}\r\nTo: <sip:bob@{DOMAIN}>\r\n\
         Call-ID: call-{n}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:7001>\r\n\
         Subject: Performance Test\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\n\
         v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    let out = proxy.on_request(
        now,
        SipMessage::parse(invite.as_bytes()).unwrap(),
        phone,
        Side::Phones,
        reg,
    );
    let (lookup, _) = lookup_of(&out);
    let location = Location::Found {
        peers: vec![PEER4.parse().unwrap()],
        here: false,
    };
    let fwd = sent(&proxy.located(now, lookup, location, reg)).remove(0).1;
    proxy.on_response(now, respond(&fwd, 180, Some("b")), tls(PEER4));
    let ok = sent(&proxy.on_response(now, respond(&fwd, 200, Some("b")), tls(PEER4)))
        .remove(0)
        .1;
    assert_eq!(ok.status(), Some(200));
    // The caller's route set: this peer's two Record-Routes, then the
    // callee's peer's two.
    let routes = "<sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:6060;transport=tls;lr>, \
                  <sip:127.0.0.2:6060;transport=tls;lr>, <sip:127.0.0.2:5060;lr>";
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        let text = format!(
            "{method} sip:bob@127.0.0.1:7002 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7001;branch={branch};rport\r\n\
             Route: {routes}\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@{DOMAIN}>;tag=a{n}\r\n\
             To: <sip:bob@{DOMAIN}>;tag=b\r\nCall-ID: call-{n}@127.0.0.1\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        SipMessage::parse(text.as_bytes()).unwrap()
    };
    let acked = proxy.on_request(
        now,
        in_dialog("ACK", 1, &format!("z9hG4bKack{n}")),
        phone,
        Side::Phones,
        reg,
    );
    assert_eq!(sent(&acked).len(), 1, "the ACK goes on to the callee's peer");
    let out = sent(&proxy.on_request(
        now,
        in_dialog("BYE", 2, &format!("z9hG4bKbye{n}")),
        phone,
        Side::Phones,
        reg,
    ));
    let bye = &out.first().expect("the BYE goes on").1;
    let done = sent(&proxy.on_response(now, respond(bye, 200, Some("b")), tls(PEER4)));
    assert_eq!(codes(&done), vec![200]);
    proxy.tick(now);
}

#[test]
fn a_finished_call_keeps_only_what_retransmissions_need() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 9);
    // Warm up the maps so their growth is not billed to the calls below.
    for n in 0..1_000 {
        one_call(&mut proxy, &mut reg, 0, n);
    }
    let calls = 10_000;
    let before = crate::testing::heap_held();
    for n in 1_000..1_000 + calls {
        one_call(&mut proxy, &mut reg, 1, n);
    }
    let per_call = (crate::testing::heap_held() - before) / calls as isize;
    let (servers, clients) = proxy.transaction_count();
    assert_eq!(
        (servers, clients),
        (2 * (calls + 1_000), calls + 1_000),
        "INVITE and BYE server, INVITE client"
    );
    // 837 bytes when written; 1,460 while finished transactions kept
    // their open form, 7,351 while whole requests were kept.
    assert!(per_call < 900, "{per_call} bytes held per finished call");
}

/// A retransmission of the phone's `n`th call's request, as `one_call` sent it.
fn retransmitted(method: &str, n: usize) -> SipMessage {
    let (uri, to_tag, cseq) = match method {
        "INVITE" => (format!("sip:bob@{DOMAIN}"), "", 1),
        _ => ("sip:bob@127.0.0.1:7002".to_string(), ";tag=b", 2),
    };
    let branch = if method == "INVITE" { "call" } else { "bye" };
    let text = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bK{branch}{n};rport\r\n\
         Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=a{n}\r\n\
         To: <sip:bob@{DOMAIN}>{to_tag}\r\nCall-ID: call-{n}@127.0.0.1\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    SipMessage::parse(text.as_bytes()).unwrap()
}

#[test]
fn after_the_final_response_retransmissions_are_absorbed_or_answered_as_rfc_6026_says() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 9);
    one_call(&mut proxy, &mut reg, 0, 1);
    // Held, so the peer's overload shedding leaves them alone.
    assert!(proxy.holds_transaction_of(100, &retransmitted("INVITE", 1)));
    assert!(proxy.holds_transaction_of(100, &retransmitted("BYE", 1)));
    // Accepted (RFC 6026 §7.1): the INVITE is absorbed, the callee
    // resends its own 2xx.
    let out = proxy.on_request(100, retransmitted("INVITE", 1), udp(7001), Side::Phones, &mut reg);
    assert!(out.is_empty(), "{out:?}");
    // Timer J: the BYE gets its 200 again, from memory.
    let out = sent(&proxy.on_request(100, retransmitted("BYE", 1), udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![200]);
    assert_eq!(out[0].0, udp(7001));
    proxy.tick(TRANSACTION_TIMEOUT_MS);
    assert_eq!(proxy.transaction_count(), (0, 0), "Timers J, L and M ended");
    assert!(!proxy.holds_transaction_of(TRANSACTION_TIMEOUT_MS, &retransmitted("BYE", 1)));
}

#[test]
fn open_transactions_are_capped_with_503_and_finished_ones_give_way_oldest_first() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut probe = Proxy::new(me(), 9);
    one_call(&mut probe, &mut reg, 0, 1);
    let one_call_bytes = probe.finished_bytes();
    let limits = TransactionLimits {
        open: 2,
        finished_bytes: 2 * one_call_bytes,
        ..TransactionLimits::default()
    };
    let mut proxy = Proxy::new(me(), 9).with_limits(limits);
    // Two calls finished at t=0 and t=10: as many bytes as allowed, in
    // three finished transactions each.
    one_call(&mut proxy, &mut reg, 0, 1);
    one_call(&mut proxy, &mut reg, 10, 2);
    assert_eq!(proxy.transaction_count(), (4, 2));
    // A third call needs room: the transactions of the first go, the
    // oldest finished, and it is served.
    one_call(&mut proxy, &mut reg, 20, 3);
    assert_eq!(proxy.transaction_count(), (4, 2));
    assert!(proxy.finished_bytes() <= 2 * one_call_bytes);
    let out = sent(&proxy.on_request(30, retransmitted("BYE", 3), udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![200], "the last call's BYE is answered from memory");
    let out = sent(&proxy.on_request(30, retransmitted("BYE", 1), udp(7001), Side::Phones, &mut reg));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        out[0].1.method(),
        Some("BYE"),
        "the first call's is forgotten: it is a new request, forwarded"
    );

    // That BYE waits for an answer; with one INVITE left ringing the
    // open limit is reached and the next request gets 503.
    let out = proxy.on_request(40, retransmitted("INVITE", 10), udp(7001), Side::Phones, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![100]);
    let out = sent(&proxy.on_request(40, retransmitted("INVITE", 11), udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![503]);
    assert_eq!(out[0].1.header("Retry-After").as_deref(), Some("5"), "RFC 3261 §21.5.4");
}

/// What the operator sees of a call: it starts when the INVITE is taken,
/// its setup time runs to the first ringing, its answer and its end are
/// reported once each; wrong credentials name the user they claimed.
#[test]
fn a_call_is_observed_from_invite_to_bye_and_wrong_credentials_are_named() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 1);
    let out = proxy.on_request(1_000, invite("z9hG4bKobs"), udp(7001), Side::Phones, &mut reg);
    assert_eq!(
        observed(&out),
        [Observation::CallStarted {
            call_id: "call-1".into(),
            from: format!("alice@{DOMAIN}"),
            to: format!("bob@{DOMAIN}"),
        }]
    );
    let (lookup, _) = lookup_of(&out);
    let location = Location::Found {
        peers: vec![PEER4.parse().unwrap()],
        here: false,
    };
    let fwd = sent(&proxy.located(1_010, lookup, location, &reg)).remove(0).1;
    let ringing = proxy.on_response(1_250, respond(&fwd, 180, Some("b1")), tls(PEER4));
    let setup = Observation::CallProgress {
        call_id: "call-1".into(),
        setup_ms: 250,
    };
    assert_eq!(observed(&ringing), [setup]);
    assert!(observed(&proxy.on_response(1_300, respond(&fwd, 183, Some("b1")), tls(PEER4))).is_empty());
    let answered = proxy.on_response(4_000, respond(&fwd, 200, Some("b1")), tls(PEER4));
    let up = Observation::CallAnswered {
        call_id: "call-1".into(),
        code: 200,
    };
    assert_eq!(observed(&answered), [up]);
    assert!(
        observed(&proxy.on_response(4_500, respond(&fwd, 200, Some("b1")), tls(PEER4))).is_empty(),
        "a retransmitted 2xx is the same call"
    );

    let text = "BYE sip:bob@127.0.0.1:7002 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKobsbye\r\n\
        Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:6060;transport=tls;lr>\r\n\
        Route: <sip:127.0.0.2:6060;transport=tls;lr>\r\nMax-Forwards: 70\r\n\
        From: <sip:alice@overlay.test>;tag=a1\r\nTo: <sip:bob@overlay.test>;tag=b1\r\n\
        Call-ID: call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let bye = SipMessage::parse(text.as_bytes()).unwrap();
    let out = proxy.on_request(9_000, bye, udp(7001), Side::Phones, &mut reg);
    assert_eq!(codes(&sent(&out)), Vec::<u16>::new(), "the BYE is forwarded");
    assert_eq!(
        observed(&out),
        [Observation::CallEnded {
            call_id: "call-1".into()
        }]
    );

    // A call that fails before anything rings: no setup time, its code.
    let inv = request("INVITE", &format!("sip:nobody@{DOMAIN}"), 7001, "z9hG4bKobs2", "");
    let (lookup, _) = lookup_of(&proxy.on_request(10_000, inv, udp(7001), Side::Phones, &mut reg));
    let out = proxy.located(10_005, lookup, Location::NotFound, &reg);
    assert_eq!(
        observed(&out),
        [Observation::CallAnswered {
            call_id: "call-1".into(),
            code: 404
        }]
    );

    let challenge = sent(&proxy.on_request(11_000, invite("z9hG4bKobs3"), udp(7009), Side::Phones, &mut reg));
    let wrong = authorize(
        &invite("z9hG4bKobs4"),
        &challenge[0].1,
        "alice",
        "guess",
        Algorithm::Md5,
    );
    let out = proxy.on_request(11_001, wrong, udp(7009), Side::Phones, &mut reg);
    assert_eq!(codes(&sent(&out)), [403]);
    assert_eq!(
        observed(&out),
        [Observation::AuthFailed {
            user: "alice".into(),
            remote: udp(7009).remote
        }]
    );
}

/// RFC 3261 §21.4.18: a user the overlay knows (enrolled, RFC 6940 §8)
/// with no phone registered is temporarily unavailable, not unknown.
#[test]
fn a_known_user_with_no_phone_gets_480_an_unknown_one_404() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 1);
    for (branch, location, code) in [
        ("z9hG4bKknown", Location::NoPhone, 480),
        ("z9hG4bKunknown", Location::NotFound, 404),
    ] {
        let inv = request("INVITE", &format!("sip:carol@{DOMAIN}"), 7001, branch, "");
        let (lookup, _) = lookup_of(&proxy.on_request(0, inv, udp(7001), Side::Phones, &mut reg));
        assert_eq!(codes(&sent(&proxy.located(5, lookup, location, &reg))), vec![code]);
    }
}

/// A request inside a dialog as an attacker makes it up: a To tag, and
/// `route` (Route header lines, or nothing).
fn made_up_in_dialog(method: &str, uri: &str, from_port: u16, route: &str) -> SipMessage {
    let text = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.66:{from_port};branch=z9hG4bKevil{from_port};rport\r\n\
         {route}Max-Forwards: 70\r\nFrom: <sip:alice@{DOMAIN}>;tag=evil\r\nTo: <sip:bob@{DOMAIN}>;tag=madeup\r\n\
         Call-ID: evil-1\r\nCSeq: 1 {method}\r\nContact: <sip:x@192.0.2.66:{from_port}>\r\nContent-Length: 0\r\n\r\n"
    );
    SipMessage::parse(text.as_bytes()).unwrap()
}

fn from_attacker(port: u16) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: SocketAddr::from(([192, 0, 2, 66], port)),
    }
}

/// Issue 36 §1: a made-up To tag no longer skips authorization. An
/// INVITE with a Route to any host is not relayed (a phone that did not
/// register is challenged; another peer's side is refused), nor is one
/// that rings a user's phone directly, nor one that names this peer in a
/// Route with a forged proof, nor an ACK (which cannot be challenged).
#[test]
fn a_made_up_dialog_relays_nothing_and_rings_no_phone() {
    let mut reg = registrar();
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7002", udp(7002));
    let mut proxy = Proxy::new(me(), 5);
    let elsewhere = "Route: <sip:203.0.113.9:5060;lr>\r\n";
    let forged = "Route: <sip:127.0.0.1:5060;lr;dlg=00112233445566778899aabbccddeeff>, <sip:203.0.113.9:5060;lr>\r\n";
    let cases = [
        ("sip:anyone@203.0.113.9", elsewhere, "a Route anywhere"),
        ("sip:bob@127.0.0.1:7002", "", "straight to a registered phone"),
        ("sip:anyone@203.0.113.9", forged, "a forged proof"),
    ];
    for (i, (uri, route, what)) in cases.into_iter().enumerate() {
        let port = 6000 + i as u16;
        let req = made_up_in_dialog("INVITE", uri, port, route);
        let out = sent(&proxy.on_request(0, req.clone(), from_attacker(port), Side::Phones, &mut reg));
        assert_eq!(codes(&out), vec![407], "{what} from a phone");
        assert!(
            out.iter().all(|(f, _)| *f == from_attacker(port)),
            "{what}: nothing forwarded"
        );
        let peer = Flow {
            transport: Transport::Tls,
            remote: SocketAddr::from(([192, 0, 2, 66], port)),
        };
        let out = sent(&proxy.on_request(0, req, peer, Side::Overlay, &mut reg));
        assert_eq!(codes(&out), vec![403], "{what} from the overlay side");
        let ack = made_up_in_dialog("ACK", uri, port, route);
        assert!(sent(&proxy.on_request(0, ack, from_attacker(port), Side::Phones, &mut reg)).is_empty());
    }
}

/// A proof taken from a real dialog reaches only that dialog's two ends:
/// the same Call-ID with another next hop is refused.
#[test]
fn a_real_proof_does_not_open_another_route() {
    let mut reg = registrar();
    let mut proxy = Proxy::new(me(), 6);
    let proof = proxy.dialog_key.proof(
        "evil-1",
        &[Hop::Flow(from_attacker(6000)), Hop::Flow(tls("127.0.0.3:6060"))],
    );
    let route = format!("Route: <sip:127.0.0.1:5060;lr;dlg={proof}>, <sip:203.0.113.9:5060;lr>\r\n");
    let req = made_up_in_dialog("BYE", "sip:x@203.0.113.9", 6000, &route);
    let peer = tls("127.0.0.3:40000");
    assert_eq!(
        codes(&sent(&proxy.on_request(0, req, peer, Side::Overlay, &mut reg))),
        vec![403]
    );
    let route = format!("Route: <sip:127.0.0.1:5060;lr;dlg={proof}>, <sip:127.0.0.3:6060;transport=tls;lr>\r\n");
    let req = made_up_in_dialog("BYE", "sip:x@203.0.113.9", 6000, &route);
    let out = sent(&proxy.on_request(0, req, peer, Side::Overlay, &mut reg));
    assert_eq!(out[0].0, tls("127.0.0.3:6060"), "its own dialog's end is reached");
}

/// Issue 36 §3 and §4: the caller's credentials for this realm stop at
/// its peer, the peer asserts who authenticated, and a phone that claims
/// to be someone else in From is refused, whether it authenticated by
/// digest or by registering.
#[test]
fn credentials_stop_here_the_caller_is_asserted_and_a_forged_from_is_refused() {
    let mut reg = registrar();
    let mut proxy = Proxy::new(me(), 7);
    let inv = request(
        "INVITE",
        &format!("sip:bob@{DOMAIN}"),
        7009,
        "z9hG4bKc1",
        "P-Asserted-Identity: <sip:ceo@overlay.test>\r\n",
    );
    let challenge = sent(&proxy.on_request(0, inv.clone(), udp(7009), Side::Phones, &mut reg))
        .remove(0)
        .1;
    let mut signed = authorize(&inv, &challenge, "alice", "secret", Algorithm::Md5);
    signed.set("Via", "SIP/2.0/UDP 127.0.0.1:7009;branch=z9hG4bKc2;rport");
    let (lookup, _) = lookup_of(&proxy.on_request(1, signed, udp(7009), Side::Phones, &mut reg));
    let location = Location::Found {
        peers: vec![PEER4.parse().unwrap()],
        here: false,
    };
    let fwd = sent(&proxy.located(1, lookup, location, &reg)).remove(0).1;
    assert!(!fwd.has("Proxy-Authorization"), "the credentials stayed at this peer");
    assert_eq!(fwd.list("P-Asserted-Identity"), vec![format!("<sip:alice@{DOMAIN}>")]);

    // Alice's registered phone says it is bob: bob never registered over
    // its flow, so it must prove it is bob; alice's password does not.
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let as_bob = |branch: &str| {
        let text = String::from_utf8(invite(branch).to_bytes()).unwrap().replace(
            &format!("From: \"Alice\" <sip:alice@{DOMAIN}>"),
            &format!("From: \"Bob\" <sip:bob@{DOMAIN}>"),
        );
        SipMessage::parse(text.as_bytes()).unwrap()
    };
    let forged = as_bob("z9hG4bKc3");
    let out = sent(&proxy.on_request(2, forged.clone(), udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![407]);
    let with_alices = authorize(&as_bob("z9hG4bKc4"), &out[0].1, "alice", "secret", Algorithm::Md5);
    let out = sent(&proxy.on_request(3, with_alices, udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![403]);
    // A phone with two lines on one flow calls from either.
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7001", udp(7001));
    let out = proxy.on_request(4, as_bob("z9hG4bKc5"), udp(7001), Side::Phones, &mut reg);
    assert_eq!(lookup_of(&out).1, "bob", "accepted without a challenge");
}

/// Issue 36 §5: a request that comes back to a peer that forwarded it
/// (a Route set bouncing it between two peers, each hop authenticated)
/// ends with 482 at its second visit instead of after Max-Forwards hops;
/// a looping ACK is dropped.
#[test]
fn a_request_that_comes_back_is_a_loop() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let mut proxy = Proxy::new(me(), 8);
    for (method, want) in [("INVITE", vec![482]), ("ACK", vec![])] {
        let text = format!(
            "{method} sip:x@127.0.0.2:6060 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.2:6060;branch=z9hG4bKpb\r\n\
             Via: SIP/2.0/TLS 127.0.0.1:6060;branch=z9hG4bKpa\r\nVia: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKa\r\n\
             Route: <sip:127.0.0.2:6060;transport=tls;lr>\r\nMax-Forwards: 250\r\n\
             From: <sip:alice@{DOMAIN}>;tag=a\r\nTo: <sip:bob@{DOMAIN}>;tag=b\r\nCall-ID: loop-1\r\n\
             CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        let req = SipMessage::parse(text.as_bytes()).unwrap();
        let out = sent(&proxy.on_request(0, req, udp(7001), Side::Phones, &mut reg));
        assert_eq!(codes(&out), want, "{method}");
        assert!(out.iter().all(|(f, _)| *f == udp(7001)), "{method}: nothing forwarded");
    }
}

/// Review finding: the caller's side of a proof comes from the sender's
/// own words (Record-Route, Contact). Whoever can reach the port between
/// peers could name a third party there, read the proof from the answer
/// and then use it to relay to that party. A place is named only where the
/// request came from.
#[test]
fn a_proof_never_names_a_place_the_request_did_not_come_from() {
    let mut reg = registrar();
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7002", udp(7002));
    let mut proxy = Proxy::new(me(), 9);
    let attacker = tcp("192.0.2.66:40000");
    let invite = format!(
        "INVITE sip:bob@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.66:40000;branch=z9hG4bKrr\r\n\
         Record-Route: <sip:203.0.113.9:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:x@{DOMAIN}>;tag=x\r\n\
         To: <sip:bob@{DOMAIN}>\r\nCall-ID: rr-1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@203.0.113.9>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let out = sent(&proxy.on_request(
        0,
        SipMessage::parse(invite.as_bytes()).unwrap(),
        attacker,
        Side::Overlay,
        &mut reg,
    ));
    let rung = out
        .iter()
        .find(|(f, m)| *f == udp(7002) && m.is_request())
        .expect("bob's phone rings")
        .1
        .clone();
    let ours = rung.list("Record-Route").into_iter().next().unwrap();
    let bye = format!(
        "BYE sip:x@203.0.113.9 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.66:40000;branch=z9hG4bKbye\r\n\
         Route: {ours}, <sip:203.0.113.9:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:bob@{DOMAIN}>;tag=b\r\n\
         To: <sip:x@{DOMAIN}>;tag=x\r\nCall-ID: rr-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let out = sent(&proxy.on_request(
        1,
        SipMessage::parse(bye.as_bytes()).unwrap(),
        attacker,
        Side::Overlay,
        &mut reg,
    ));
    assert_eq!(codes(&out), vec![403], "nothing relayed to 203.0.113.9");
}

/// Issue 36 §6: with as many calls waiting for the overlay as the budget
/// allows, a new call from a phone gets 503 with Retry-After at once,
/// before its credentials are looked at; once a lookup is answered, calls
/// are taken again.
#[test]
fn calls_past_the_lookup_budget_are_shed_at_once() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let limits = TransactionLimits {
        locating: 2,
        ..TransactionLimits::default()
    };
    let mut proxy = Proxy::new(me(), 10).with_limits(limits);
    let first = lookup_of(&proxy.on_request(0, invite("z9hG4bKs1"), udp(7001), Side::Phones, &mut reg));
    lookup_of(&proxy.on_request(0, invite("z9hG4bKs2"), udp(7001), Side::Phones, &mut reg));
    let out = sent(&proxy.on_request(0, invite("z9hG4bKs3"), udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![503]);
    assert_eq!(out[0].1.header("Retry-After").as_deref(), Some("5"));
    // Not even a stranger's call gets a challenge first.
    let out = sent(&proxy.on_request(0, invite("z9hG4bKs4"), udp(7999), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![503], "shed before any digest work");
    proxy.located(1, first.0, Location::NotFound, &reg);
    let out = proxy.on_request(2, invite("z9hG4bKs5"), udp(7001), Side::Phones, &mut reg);
    assert_eq!(lookup_of(&out).1, "bob", "room again");
}

/// Issue 36 §6: with as many calls being set up as the budget allows (no
/// provisional response from the next hop yet), a new call gets 503 with
/// Retry-After at once; a call the next hop takes (its 100) makes room.
/// Requests inside a dialog are never refused for it.
#[test]
fn calls_past_the_setup_budget_are_shed_and_one_the_next_hop_takes_makes_room() {
    let mut reg = registrar();
    register(&mut reg, "alice", "secret", "sip:alice@127.0.0.1:7001", udp(7001));
    let limits = TransactionLimits {
        setting_up: 1,
        ..TransactionLimits::default()
    };
    let mut proxy = Proxy::new(me(), 11).with_limits(limits);
    let (lookup, _) = lookup_of(&proxy.on_request(0, invite("z9hG4bKu1"), udp(7001), Side::Phones, &mut reg));
    let location = Location::Found {
        peers: vec![PEER4.parse().unwrap()],
        here: false,
    };
    let forwarded = sent(&proxy.located(1, lookup, location, &reg))[0].1.clone();
    let out = sent(&proxy.on_request(2, invite("z9hG4bKu2"), udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![503]);
    assert_eq!(out[0].1.header("Retry-After").as_deref(), Some("5"));
    let mut in_dialog = invite("z9hG4bKu3");
    in_dialog.set("To", "<sip:bob@p2psip.test>;tag=b");
    let out = sent(&proxy.on_request(3, in_dialog, udp(7001), Side::Phones, &mut reg));
    assert!(!codes(&out).contains(&503), "{:?}", codes(&out));
    assert!(
        proxy.holds_transaction_of(3, &invite("z9hG4bKu1")),
        "its retransmission is not new work"
    );
    assert!(!proxy.holds_transaction_of(3, &invite("z9hG4bKu9")));
    // The callee's peer says it is working on the call.
    let out = sent(&proxy.on_response(4, respond(&forwarded, 100, None), tls(PEER4)));
    assert!(out.is_empty(), "a 100 goes no further");
    let out = proxy.on_request(5, invite("z9hG4bKu4"), udp(7001), Side::Phones, &mut reg);
    assert_eq!(
        lookup_of(&out).1,
        "bob",
        "room again once the next hop took the first call"
    );
}

/// Issue 36 §2: a captured INVITE credential places no new call: replayed
/// on a new INVITE (another Call-ID) to the same callee, or to another,
/// it is refused, and no lookup is started for it.
#[test]
fn a_captured_invite_credential_places_no_new_call() {
    let mut reg = registrar();
    let mut proxy = Proxy::new(me(), 12);
    let challenge = sent(&proxy.on_request(0, invite("z9hG4bKr1"), udp(7009), Side::Phones, &mut reg))
        .remove(0)
        .1;
    let signed = authorize(&invite("z9hG4bKr2"), &challenge, "alice", "secret", Algorithm::Md5);
    let captured = signed.header("Proxy-Authorization").unwrap().to_string();
    assert_eq!(
        lookup_of(&proxy.on_request(1, signed, udp(7009), Side::Phones, &mut reg)).1,
        "bob"
    );

    let replay = |branch: &str, callee: &str| {
        let text = String::from_utf8(invite(branch).to_bytes())
            .unwrap()
            .replace("sip:bob@", &format!("sip:{callee}@"))
            .replace("Call-ID: call-1", &format!("Call-ID: replay-{branch}"));
        let mut m = SipMessage::parse(text.as_bytes()).unwrap();
        m.set("Proxy-Authorization", &captured);
        m
    };
    for (at, branch, callee) in [(2, "z9hG4bKr3", "bob"), (3, "z9hG4bKr4", "carol")] {
        let out = proxy.on_request(at, replay(branch, callee), udp(7666), Side::Phones, &mut reg);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Locate { .. })),
            "a replay to {callee} started a call: {out:?}"
        );
        let refused = codes(&sent(&out));
        assert!(
            refused.iter().any(|c| matches!(c, 400 | 403 | 407)),
            "a replay to {callee} got {refused:?}"
        );
    }
}

/// A call from another peer for bob, who is registered here.
fn call_from_peer(n: usize) -> SipMessage {
    let text = String::from_utf8(invite(&format!("z9hG4bKd{n}")).to_bytes())
        .unwrap()
        .replace("Call-ID: call-1", &format!("Call-ID: dead-{n}"));
    let mut m = SipMessage::parse(text.as_bytes()).unwrap();
    m.prepend("Via", &format!("SIP/2.0/TLS 127.0.0.3:6060;branch=z9hG4bKp{n}"));
    m
}

/// Issue 36: a contact that answers nothing (a phone that died while
/// registered) holds a call's setup slot for [`SETUP_WAIT_MS`], not for
/// Timer B's 32 s: past the wait the call waits on the phone, not on the
/// peers, and the next caller is served.
#[test]
fn a_call_to_a_silent_phone_leaves_the_setup_budget_after_the_wait() {
    let mut reg = registrar();
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7002", udp(7002));
    let limits = TransactionLimits {
        setting_up: 1,
        ..TransactionLimits::default()
    };
    let mut proxy = Proxy::new(me(), 13).with_limits(limits);
    let from_peer = tls("127.0.0.3:40000");
    let out = sent(&proxy.on_request(0, call_from_peer(1), from_peer, Side::Overlay, &mut reg));
    assert!(out.iter().any(|(f, m)| *f == udp(7002) && m.is_request()), "rung");
    let out = sent(&proxy.on_request(SETUP_WAIT_MS - 1, call_from_peer(2), from_peer, Side::Overlay, &mut reg));
    assert_eq!(codes(&out), vec![503], "the first call is still being set up");
    proxy.tick(SETUP_WAIT_MS);
    let out = sent(&proxy.on_request(SETUP_WAIT_MS, call_from_peer(3), from_peer, Side::Overlay, &mut reg));
    assert!(
        out.iter().any(|(f, m)| *f == udp(7002) && m.is_request()),
        "the silent phone no longer holds the budget: {:?}",
        codes(&out)
    );
    // The first call still runs its course: Timer B, then 408 upstream.
    let mut answers = Vec::new();
    while let Some(t) = proxy.next_deadline().filter(|t| *t <= TRANSACTION_TIMEOUT_MS) {
        answers.extend(codes(&sent(&proxy.tick(t))));
    }
    assert!(answers.contains(&408), "{answers:?}");
}

/// Issue 36: once `silent_per_phone` INVITEs to one address have had no
/// answer for [`SETUP_WAIT_MS`], a call rings the callee's other phones
/// only, or gets 480 at once, and nothing more is sent there until the
/// address answers something. Calls it is still in time to answer are
/// not counted: a busy PBX may have many unanswered at once.
#[test]
fn a_phone_that_answers_nothing_is_sent_only_so_many_calls() {
    let mut reg = registrar();
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7002", udp(7002));
    let limits = TransactionLimits {
        silent_per_phone: 2,
        ..TransactionLimits::default()
    };
    let mut proxy = Proxy::new(me(), 14).with_limits(limits);
    let from_peer = tls("127.0.0.3:40000");
    let rings_7002 = |out: &[(Flow, SipMessage)]| out.iter().any(|(f, m)| *f == udp(7002) && m.is_request());
    let mut rung_7002 = Vec::new();
    for n in 1..=3 {
        let out = sent(&proxy.on_request(n, call_from_peer(n as usize), from_peer, Side::Overlay, &mut reg));
        assert!(rings_7002(&out), "call {n}: unanswered, but not silent yet");
        rung_7002.extend(out.into_iter().filter(|(f, _)| *f == udp(7002)).map(|(_, m)| m));
    }
    proxy.tick(2 + SETUP_WAIT_MS);
    let out = sent(&proxy.on_request(2 + SETUP_WAIT_MS, call_from_peer(4), from_peer, Side::Overlay, &mut reg));
    assert_eq!(codes(&out), vec![100, 480], "nothing more for 7002");
    assert!(!rings_7002(&out));

    // bob's other phone still rings, the silent one is left out.
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7003", udp(7003));
    let out = sent(&proxy.on_request(3_000, call_from_peer(5), from_peer, Side::Overlay, &mut reg));
    let rung: Vec<Flow> = out.iter().filter(|(_, m)| m.is_request()).map(|(f, _)| *f).collect();
    assert_eq!(rung, vec![udp(7003)]);

    // 7002 answers two of its three silent calls: it is sent the next.
    for invite in &rung_7002[..2] {
        proxy.on_response(3_100, respond(invite, 180, Some("b1")), udp(7002));
    }
    let out = sent(&proxy.on_request(3_200, call_from_peer(6), from_peer, Side::Overlay, &mut reg));
    assert!(rings_7002(&out));
}

/// §17.1.1.2 Timer D, kept among the finished transactions: a phone
/// that did not hear the ACK of its 486 sends the 486 again and is
/// acknowledged again, and the caller's side hears it once.
#[test]
fn a_final_non_2xx_again_is_acknowledged_again_and_not_passed_on() {
    let mut reg = registrar();
    register(&mut reg, "bob", "hunter2", "sip:bob@127.0.0.1:7002", udp(7002));
    let mut proxy = Proxy::new(me(), 15);
    let from_peer = tls("127.0.0.3:40000");
    let out = sent(&proxy.on_request(0, call_from_peer(1), from_peer, Side::Overlay, &mut reg));
    let rung = out
        .into_iter()
        .find(|(f, m)| *f == udp(7002) && m.is_request())
        .unwrap()
        .1;
    let busy = respond(&rung, 486, Some("b1"));
    let out = sent(&proxy.on_response(10, busy.clone(), udp(7002)));
    let mut seen: Vec<(Flow, String)> = out
        .iter()
        .map(|(f, m)| {
            (
                *f,
                m.method()
                    .map_or_else(|| m.status().unwrap().to_string(), str::to_string),
            )
        })
        .collect();
    seen.sort_by_key(|(_, what)| what.clone());
    assert_eq!(
        seen,
        vec![(from_peer, "486".to_string()), (udp(7002), "ACK".to_string())]
    );
    let out = sent(&proxy.on_response(20, busy.clone(), udp(7002)));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1.method()), (udp(7002), Some("ACK")));
    proxy.tick(10 + 32_000);
    assert!(
        sent(&proxy.on_response(10 + 32_000, busy, udp(7002))).is_empty(),
        "Timer D ended"
    );
}
