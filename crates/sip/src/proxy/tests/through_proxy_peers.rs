//! Requests for other domains through the overlay's proxy peers (decision
//! 0036).

use super::*;

const PROXY_PEER_1: &str = "127.0.0.3:6060";
const PROXY_PEER_2: &str = "127.0.0.4:6060";

/// A peer that does not reach other domains itself.
fn not_a_proxy_peer() -> Proxy {
    let mut proxy = Proxy::new(me(), 1).with_interworking(Interworking {
        reach: Reach::Direct,
        ..Default::default()
    });
    proxy.set_reach(Reach::ThroughProxyPeers);
    proxy
}

fn proxy_peer_lookup(outputs: &[Output]) -> Option<u64> {
    outputs.iter().find_map(|o| match o {
        Output::LocateProxyPeers { lookup } => Some(*lookup),
        _ => None,
    })
}

fn asks_dns(outputs: &[Output]) -> bool {
    outputs.iter().any(|o| matches!(o, Output::Resolve { .. }))
}

/// alice calls carol@corp.test; both proxy peers answered the overlay.
fn call_through_proxy_peers(proxy: &mut Proxy, reg: &mut Registrar) -> Vec<(Flow, SipMessage)> {
    let out = proxy.on_request(0, invite_carol("z9hG4bKp1"), udp(7001), Side::Phones, reg);
    assert_eq!(codes(&sent(&out)), vec![100]);
    assert!(!asks_dns(&out), "a peer without reach asks no DNS");
    let lookup = proxy_peer_lookup(&out).expect("the overlay is asked for its proxy peers");
    let found = Location::Found {
        peers: vec![PROXY_PEER_1.parse().unwrap(), PROXY_PEER_2.parse().unwrap()],
        here: false,
    };
    sent(&proxy.located(5, lookup, found, reg))
}

#[test]
fn a_users_call_to_another_domain_goes_to_the_first_proxy_peer_over_the_peers_tls() {
    let mut reg = alice_registered();
    let mut proxy = not_a_proxy_peer();
    let out = call_through_proxy_peers(&mut proxy, &mut reg);
    assert_eq!(out.len(), 1, "one proxy peer at a time: {out:?}");
    let (flow, invite) = &out[0];
    assert_eq!(*flow, tls(PROXY_PEER_1));
    assert_eq!(invite.request_uri(), Some("sip:carol@corp.test"));
    assert_eq!(
        invite.header("P-Asserted-Identity").as_deref(),
        Some("<sip:alice@overlay.test>"),
        "the caller's peer vouches for the user it authenticated"
    );
    assert_left_as(
        invite,
        "SIP/2.0/TLS 127.0.0.1:6060",
        &["<sip:127.0.0.1:6060;transport=tls;lr>", "<sip:127.0.0.1:5060;lr>"],
        "from the peers' side, the caller's peer staying in the dialog",
    );
    let ok = respond(invite, 200, Some("c1"));
    let up = sent(&proxy.on_response(10, ok, tls(PROXY_PEER_1)));
    assert_eq!((up[0].0, up[0].1.status()), (udp(7001), Some(200)));
}

#[test]
fn a_proxy_peer_that_refuses_or_cannot_be_reached_is_passed_over_for_the_next() {
    let mut reg = alice_registered();
    let mut proxy = not_a_proxy_peer();
    let out = call_through_proxy_peers(&mut proxy, &mut reg);
    let busy = respond(&out[0].1, 503, Some("p1"));
    let after = sent(&proxy.on_response(10, busy, tls(PROXY_PEER_1)));
    let next: Vec<Flow> = after
        .iter()
        .filter(|(_, m)| m.is_request() && m.method() == Some("INVITE"))
        .map(|(f, _)| *f)
        .collect();
    assert_eq!(next, vec![tls(PROXY_PEER_2)], "{after:?}");
    // The second one's connection breaks: nobody is left, and alice hears
    // the best answer there was (§16.7: 503 becomes 500).
    let after = sent(&proxy.flow_failed(20, tls(PROXY_PEER_2)));
    let to_alice: Vec<u16> = after
        .iter()
        .filter(|(f, _)| *f == udp(7001))
        .filter_map(|(_, m)| m.status())
        .collect();
    assert_eq!(to_alice, vec![500]);
}

#[test]
fn no_proxy_peer_answering_the_overlay_is_503_with_retry_after() {
    let mut reg = alice_registered();
    let mut proxy = not_a_proxy_peer();
    let out = proxy.on_request(0, invite_carol("z9hG4bKp2"), udp(7001), Side::Phones, &mut reg);
    let lookup = proxy_peer_lookup(&out).unwrap();
    let out = sent(&proxy.located(5, lookup, Location::Unreachable("no answer".into()), &reg));
    let answer = out.iter().find(|(f, _)| *f == udp(7001)).map(|(_, m)| m).unwrap();
    assert_eq!(answer.status(), Some(503));
    assert!(answer.header("Retry-After").is_some());
    // And an overlay that never answers: 408, as a user's lookup.
    let out = proxy.on_request(10, invite_carol("z9hG4bKp3"), udp(7001), Side::Phones, &mut reg);
    assert!(proxy_peer_lookup(&out).is_some());
    let late = sent(&proxy.tick(10 + 64 * 500 + 1));
    assert!(
        late.iter().any(|(f, m)| *f == udp(7001) && m.status() == Some(408)),
        "{late:?}"
    );
}

#[test]
fn only_a_user_the_peer_authenticates_reaches_a_proxy_peer() {
    let mut reg = alice_registered();
    let mut proxy = not_a_proxy_peer();
    let stranger = request("INVITE", &format!("sip:carol@{CORP}"), 7009, "z9hG4bKp4", "");
    let out = proxy.on_request(0, stranger, udp(7009), Side::Phones, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![407]);
    assert_eq!(proxy_peer_lookup(&out), None);
}

#[test]
fn a_proxy_peer_sends_another_peers_request_out_and_other_peers_refuse_it() {
    let mut reg = alice_registered();
    let relayed = || request("INVITE", &format!("sip:carol@{CORP}"), 7009, "z9hG4bKp5", "");
    let mut proxy_peer = Proxy::new(me(), 1).with_interworking(Interworking {
        reach: Reach::Direct,
        ..Default::default()
    });
    proxy_peer.set_reach(Reach::ForPeers);
    let out = proxy_peer.on_request(0, relayed(), tls(PEER4), Side::Overlay, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![100]);
    assert!(asks_dns(&out), "the proxy peer looks the domain up");
    // A peer the configuration does not list does not.
    let mut other = Proxy::new(me(), 1).with_interworking(Interworking {
        reach: Reach::Direct,
        ..Default::default()
    });
    let out = sent(&other.on_request(0, relayed(), tls(PEER4), Side::Overlay, &mut reg));
    assert_eq!(codes(&out), vec![503], "the sender tries its next proxy peer");
    assert!(out[0].1.has("Retry-After"));
    // Nor does one that itself goes through proxy peers: no ping-pong.
    let out = not_a_proxy_peer().on_request(0, relayed(), tls(PEER4), Side::Overlay, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![503]);
    assert_eq!(proxy_peer_lookup(&out), None);
    assert!(!asks_dns(&out));
}

/// A proxy peer answers another peer's MESSAGE for another domain with 100
/// at once (RFC 4320 §4.1: over a reliable transport): the sender knows it
/// was taken, and its own timeout does not send it to a second proxy peer
/// while this one tries the domain's servers.
#[test]
fn a_proxy_peer_says_trying_to_another_peers_request_so_it_is_not_sent_twice() {
    let mut reg = alice_registered();
    let mut proxy_peer = Proxy::new(me(), 1).with_interworking(Interworking {
        reach: Reach::Direct,
        ..Default::default()
    });
    proxy_peer.set_reach(Reach::ForPeers);
    let message = request("MESSAGE", &format!("sip:carol@{CORP}"), 7009, "z9hG4bKp6", "");
    let out = proxy_peer.on_request(0, message, tls(PEER4), Side::Overlay, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![100]);
    // Over UDP, from a phone, no 100 for a non-INVITE (RFC 4320 §4.1).
    let message = request("MESSAGE", &format!("sip:carol@{CORP}"), 7001, "z9hG4bKp8", "");
    let out = proxy_peer.on_request(0, message, udp(7001), Side::Phones, &mut reg);
    assert!(!codes(&sent(&out)).contains(&100));

    // The sender's side: once Trying came, the proxy peer is not passed
    // over, and a timeout is the caller's answer.
    let mut peer = not_a_proxy_peer();
    let message = request("MESSAGE", &format!("sip:carol@{CORP}"), 7001, "z9hG4bKp7", "");
    let out = peer.on_request(0, message, udp(7001), Side::Phones, &mut reg);
    let lookup = proxy_peer_lookup(&out).expect("the overlay is asked for its proxy peers");
    let found = Location::Found {
        peers: vec![PROXY_PEER_1.parse().unwrap(), PROXY_PEER_2.parse().unwrap()],
        here: false,
    };
    let out = sent(&peer.located(1, lookup, found, &reg));
    assert_eq!(out[0].0, tls(PROXY_PEER_1));
    let trying = respond(&out[0].1, 100, None);
    peer.on_response(2, trying, tls(PROXY_PEER_1));
    let mut later = Vec::new();
    for t in (1_000..=40_000).step_by(1_000) {
        later.extend(sent(&peer.tick(t)));
    }
    assert!(later.iter().all(|(f, _)| *f != tls(PROXY_PEER_2)), "{later:?}");
    assert_eq!(
        later
            .iter()
            .filter(|(f, _)| *f == udp(7001))
            .filter_map(|(_, m)| m.status())
            .collect::<Vec<_>>(),
        vec![408]
    );
}
