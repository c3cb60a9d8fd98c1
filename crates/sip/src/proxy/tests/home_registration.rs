//! Registering an account of another domain through the peer, with Path
//! (RFC 3327; decision 0034).

use super::*;

const HOME: &str = "home.test";

fn proxy() -> Proxy {
    Proxy::new(me(), 1).with_interworking(Interworking {
        reach: Reach::Direct,
        tls: false,
        outsiders: Outsiders::Nobody,
    })
}

fn home_register(from_port: u16, expires: u32) -> SipMessage {
    let text = format!(
        "REGISTER sip:10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{from_port};branch=z9hG4bKhr{expires};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:dave@{HOME}>;tag=d1\r\nTo: <sip:dave@{HOME}>\r\nCall-ID: home-reg\r\n\
         CSeq: {expires} REGISTER\r\nContact: <sip:dave@127.0.0.1:{from_port}>;expires={expires}\r\n\
         Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    );
    SipMessage::parse(text.as_bytes()).unwrap()
}

fn home_registrar() -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: "10.0.0.5:5060".parse().unwrap(),
    }
}

/// The REGISTER as the home registrar receives it.
fn registered_at_home(proxy: &mut Proxy, reg: &mut Registrar) -> SipMessage {
    let out = sent(&proxy.on_request(0, home_register(7001, 7200), udp(7001), Side::Phones, reg));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, home_registrar());
    out[0].1.clone()
}

#[test]
fn a_users_registration_at_home_carries_the_peers_path_and_lives_no_longer_than_the_overlays() {
    let mut reg = alice_registered();
    let mut proxy = proxy();
    let forwarded = registered_at_home(&mut proxy, &mut reg);
    let path = forwarded.list("Path");
    assert_eq!(path.len(), 1);
    assert!(
        path[0].starts_with("<sip:") && path[0].ends_with("@127.0.0.1:5060;lr>"),
        "a flow token at the peer's address: {path:?}"
    );
    assert!(!forwarded.has("Record-Route"), "a REGISTER starts no dialog");
    assert!(!forwarded.has("P-Asserted-Identity"), "dave is his home's to vouch for");
    // alice's own registration lives 3600 s: so does dave's at home.
    assert_eq!(forwarded.header("Expires").as_deref(), Some("3600"));
    assert!(
        forwarded.list("Contact")[0].ends_with(";expires=3600"),
        "{:?}",
        forwarded.list("Contact")
    );

    // The home registrar's challenge reaches the phone untouched.
    let mut challenge = respond(&forwarded, 401, Some("h1"));
    challenge.push(
        "WWW-Authenticate",
        "Digest realm=\"home.test\", nonce=\"abc\", qop=\"auth\"",
    );
    let up = sent(&proxy.on_response(1, challenge, home_registrar()));
    assert_eq!(up.len(), 1);
    assert_eq!((up[0].0, up[0].1.status()), (udp(7001), Some(401)));
    assert_eq!(
        up[0].1.header("WWW-Authenticate").as_deref(),
        Some("Digest realm=\"home.test\", nonce=\"abc\", qop=\"auth\"")
    );
}

/// X, a proxy peer the configuration lists (decision 0036), at 127.0.0.3.
fn proxy_peer_x() -> Proxy {
    let x_interfaces = Interfaces {
        phones: "127.0.0.3:5060".parse().unwrap(),
        overlay: "127.0.0.3:6060".parse().unwrap(),
        phones_tls: None,
        phones_other_family: None,
    };
    let mut x = Proxy::new(x_interfaces, 2);
    x.set_reach(Reach::ForPeers);
    x
}

/// An INVITE of the home network for dave, routed by the Path the home
/// registrar stored.
fn invite_from_home(route: &str, contact_port: u16, branch: &str) -> SipMessage {
    let text = format!(
        "INVITE sip:dave@127.0.0.1:{contact_port} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch={branch}\r\n\
         Route: {route}\r\nRecord-Route: <sip:10.0.0.5;lr>\r\nMax-Forwards: 69\r\nFrom: <sip:erin@{HOME}>;tag=e1\r\n\
         To: <sip:dave@{HOME}>\r\nCall-ID: {branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:erin@10.0.0.6>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    SipMessage::parse(text.as_bytes()).unwrap()
}

#[test]
fn the_home_networks_calls_come_back_through_the_path_to_that_phone_only() {
    let mut reg = alice_registered();
    let mut proxy = proxy();
    let path = registered_at_home(&mut proxy, &mut reg).list("Path")[0].clone();
    let out = sent(&proxy.on_request(
        10,
        invite_from_home(&path, 7001, "z9hG4bKh1"),
        home_registrar(),
        Side::Phones,
        &mut reg,
    ));
    let to_phone = out.iter().find(|(f, _)| *f == udp(7001)).expect("the phone rings");
    assert_eq!(to_phone.1.request_uri(), Some("sip:dave@127.0.0.1:7001"));
    assert!(to_phone.1.has("Record-Route"), "the peer stays in the dialog");

    // The Path leads to the flow the phone registered over, whatever
    // contact the home registrar stored (a phone behind a NAT writes its
    // private address there), and to no other address.
    let out = sent(&proxy.on_request(
        11,
        invite_from_home(&path, 7002, "z9hG4bKh2"),
        home_registrar(),
        Side::Phones,
        &mut reg,
    ));
    assert!(out
        .iter()
        .any(|(f, m)| *f == udp(7001) && m.request_uri() == Some("sip:dave@127.0.0.1:7002")));
    assert!(out.iter().all(|(f, _)| f.remote.port() != 7002), "{out:?}");
    // A made-up token leads nowhere: 75 is 'u', then 127.0.0.1:7001.
    let forged = "<sip:757f0000011b590123456789abcdef@127.0.0.1:5060;lr>";
    let out = sent(&proxy.on_request(
        12,
        invite_from_home(forged, 7001, "z9hG4bKh3"),
        home_registrar(),
        Side::Phones,
        &mut reg,
    ));
    assert!(out.iter().all(|(f, _)| *f != udp(7001)), "{out:?}");
}

#[test]
fn only_a_phone_of_a_user_of_the_peer_registers_elsewhere_through_it() {
    let mut reg = alice_registered();
    let mut proxy = proxy();
    let out = sent(&proxy.on_request(0, home_register(7009, 600), udp(7009), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![407]);
    assert!(out.iter().all(|(f, _)| *f != home_registrar()));
}

#[test]
fn a_phone_calls_out_as_its_home_account() {
    let mut reg = alice_registered();
    let mut proxy = proxy();
    let mut invite = request("INVITE", "sip:erin@10.0.0.5", 7001, "z9hG4bKout", "");
    invite.set("From", &format!("<sip:dave@{HOME}>;tag=d2"));
    let out = sent(&proxy.on_request(0, invite, udp(7001), Side::Phones, &mut reg));
    let sent_home = out
        .iter()
        .find(|(f, _)| *f == home_registrar())
        .expect("sent to the home network");
    assert_eq!(
        sent_home.1.header("From").as_deref(),
        Some("<sip:dave@home.test>;tag=d2")
    );
    assert!(!sent_home.1.has("P-Asserted-Identity"));
    // Into the overlay the same From is no user the flow vouches for:
    // the phone must authenticate, and then speak as that user.
    let mut inside = request("INVITE", &format!("sip:bob@{DOMAIN}"), 7001, "z9hG4bKin", "");
    inside.set("From", &format!("<sip:dave@{HOME}>;tag=d3"));
    let out = sent(&proxy.on_request(1, inside, udp(7001), Side::Phones, &mut reg));
    assert_eq!(codes(&out), vec![407]);
}

#[test]
fn a_path_leads_nowhere_once_the_phone_is_no_longer_registered() {
    let mut reg = alice_registered();
    let mut proxy = proxy();
    let path = registered_at_home(&mut proxy, &mut reg).list("Path")[0].clone();
    // alice's registration with the overlay (3600 s) has run out.
    let later = 3_601_000;
    reg.expire(later);
    let out = sent(&proxy.on_request(
        later,
        invite_from_home(&path, 7001, "z9hG4bKh9"),
        home_registrar(),
        Side::Phones,
        &mut reg,
    ));
    assert!(out.iter().all(|(f, _)| *f != udp(7001)), "{out:?}");
}

/// Decision 0036: alice's peer reaches other domains only through the
/// proxy peer X. Her phone's REGISTER at home goes to X over the overlay
/// with her peer's Path naming its address between peers; X adds its own
/// Path above it; the home network's INVITE comes to X, X passes it over
/// the overlay to alice's peer, which rings her phone. X's token leads
/// nowhere once the registration it was written for has run out.
#[test]
fn a_registration_at_home_through_a_proxy_peer_brings_the_home_networks_calls_back_the_same_way() {
    let mut reg = alice_registered();
    let mut peer = proxy();
    peer.set_reach(Reach::ThroughProxyPeers);
    let mut x = proxy_peer_x();
    let mut x_reg = registrar();

    let out = peer.on_request(0, home_register(7001, 7200), udp(7001), Side::Phones, &mut reg);
    let lookup = out
        .iter()
        .find_map(|o| match o {
            Output::LocateProxyPeers { lookup } => Some(*lookup),
            _ => None,
        })
        .expect("the overlay is asked for its proxy peers");
    let found = Location::Found {
        peers: vec!["127.0.0.3:6060".parse().unwrap()],
        here: false,
    };
    let out = sent(&peer.located(1, lookup, found, &reg));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, tls("127.0.0.3:6060"));
    let peers_path = out[0].1.list("Path");
    assert_eq!(peers_path.len(), 1);
    assert!(
        peers_path[0].ends_with("@127.0.0.1:6060;transport=tls;lr>"),
        "alice's peer at its address between peers: {peers_path:?}"
    );

    let from_peer = tls("127.0.0.1:40001");
    let out = sent(&x.on_request(2, out[0].1.clone(), from_peer, Side::Overlay, &mut x_reg));
    let at_home = &out.iter().find(|(f, _)| *f == home_registrar()).expect("sent home").1;
    let path = at_home.list("Path");
    assert_eq!(path.len(), 2, "{path:?}");
    assert!(
        path[0].ends_with("@127.0.0.3:5060;lr>"),
        "X's own entry on top: {path:?}"
    );
    assert_eq!(path[1], peers_path[0]);
    assert_eq!(at_home.header("Expires").as_deref(), Some("3600"));

    let route = path.join(", ");
    let out = sent(&x.on_request(
        10,
        invite_from_home(&route, 7001, "z9hG4bKx1"),
        home_registrar(),
        Side::Phones,
        &mut x_reg,
    ));
    let (flow, to_peer) = out
        .iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .expect("X passes the call on");
    assert_eq!(*flow, tls("127.0.0.1:6060"), "to alice's peer, between peers");
    assert_eq!(to_peer.list("Route"), vec![peers_path[0].clone()]);
    let out = sent(&peer.on_request(11, to_peer.clone(), tls("127.0.0.3:40002"), Side::Overlay, &mut reg));
    assert!(
        out.iter().any(|(f, m)| *f == udp(7001) && m.method() == Some("INVITE")),
        "alice's phone rings: {out:?}"
    );

    // An hour on, X's token has run out: X passes nothing on.
    let later = 2 + 3_600_000;
    let out = sent(&x.on_request(
        later,
        invite_from_home(&route, 7001, "z9hG4bKx2"),
        home_registrar(),
        Side::Phones,
        &mut x_reg,
    ));
    assert!(out.iter().all(|(f, _)| *f != tls("127.0.0.1:6060")), "{out:?}");
    assert_eq!(codes(&out), vec![403]);
}

/// Decision 0036: a proxy peer writes a relay token only for the address
/// of the peer the REGISTER came from, and for an hour at most whatever
/// the REGISTER asks.
#[test]
fn a_proxy_peer_relays_only_to_the_peer_that_registered_and_for_an_hour_at_most() {
    let mut x = proxy_peer_x();
    let mut x_reg = registrar();
    let from_peer = tls("127.0.0.1:40001");
    let sent_home = |x: &mut Proxy, x_reg: &mut Registrar, path: &str, expires: &str, branch: &str| {
        let mut register = home_register(7001, 600);
        register.set("Via", &format!("SIP/2.0/TLS 127.0.0.1:6060;branch={branch}"));
        register.set("Expires", expires);
        register.prepend("Path", path);
        let out = sent(&x.on_request(0, register, from_peer, Side::Overlay, x_reg));
        out.into_iter()
            .find(|(f, _)| *f == home_registrar())
            .map(|(_, m)| m)
            .expect("sent home")
    };
    // A Path naming another host than the sender's gets no relay entry.
    let elsewhere = "<sip:0011@192.0.2.7:6060;transport=tls;lr>";
    let at_home = sent_home(&mut x, &mut x_reg, elsewhere, "600", "z9hG4bKr1");
    assert_eq!(at_home.list("Path"), vec![elsewhere.to_string()]);
    // Asking for ever is an hour.
    let own = "<sip:0011@127.0.0.1:6060;transport=tls;lr>";
    let at_home = sent_home(&mut x, &mut x_reg, own, "18446744073709551615", "z9hG4bKr2");
    assert_eq!(at_home.header("Expires").as_deref(), Some("3600"));
    let route = at_home.list("Path").join(", ");
    let passes = |x: &mut Proxy, x_reg: &mut Registrar, now: u64, branch: &str| {
        let out = sent(&x.on_request(
            now,
            invite_from_home(&route, 7001, branch),
            home_registrar(),
            Side::Phones,
            x_reg,
        ));
        out.iter().any(|(f, _)| *f == tls("127.0.0.1:6060"))
    };
    assert!(passes(&mut x, &mut x_reg, 3_599_000, "z9hG4bKr3"));
    assert!(!passes(&mut x, &mut x_reg, 3_600_001, "z9hG4bKr4"));
}
