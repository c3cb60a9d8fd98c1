//! Requests to and from other SIP domains (RFC 3263; decision 0034).

use super::*;
use crate::proxy::other_domains::SILENT_HOP_MS;
use crate::server_location::{Answer, Naptr, Srv};

fn outbound() -> Proxy {
    Proxy::new(me(), 1).with_interworking(Interworking {
        reach: Reach::Direct,
        tls: false,
        outsiders: Outsiders::Nobody,
    })
}

fn proxy_peer(outsiders: Outsiders) -> Proxy {
    Proxy::new(me(), 1).with_interworking(Interworking {
        reach: Reach::Nowhere,
        tls: false,
        outsiders,
    })
}

fn questions(outputs: &[Output]) -> Vec<(u64, Query)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Resolve { lookup, query } => Some((*lookup, query.clone())),
            _ => None,
        })
        .collect()
}

/// Answers the one question asked; the outputs that follow.
fn answer(proxy: &mut Proxy, now: u64, asked: &[Output], expected: Query, answer: Option<Answer>) -> Vec<Output> {
    let q = questions(asked);
    assert_eq!(q.len(), 1, "one question at a time: {q:?}");
    assert_eq!(q[0].1, expected);
    proxy.resolved(now, q[0].0, &q[0].1, answer)
}

fn srv(priority: u16, port: u16, target: &str) -> Srv {
    Srv {
        priority,
        weight: 0,
        port,
        target: target.into(),
    }
}

fn ip(a: &str) -> Answer {
    Answer::Address(vec![a.parse().unwrap()])
}

/// NAPTR says TCP; two SRV targets, a.corp.test before b.corp.test.
fn resolve_to_first_server(proxy: &mut Proxy, reg: &mut Registrar) -> Vec<Output> {
    let out = proxy.on_request(0, invite_carol("z9hG4bKo1"), udp(7001), Side::Phones, reg);
    assert_eq!(codes(&sent(&out)), vec![100], "only Trying while the DNS is asked");
    let naptr = Answer::Naptr(vec![Naptr {
        order: 10,
        preference: 10,
        flags: "S".into(),
        services: "SIP+D2T".into(),
        replacement: format!("_sip._tcp.{CORP}"),
    }]);
    let out = answer(proxy, 1, &out, Query::Naptr(CORP.into()), Some(naptr));
    let records = Answer::Srv(vec![srv(20, 5080, "b.corp.test."), srv(10, 5070, "a.corp.test.")]);
    let out = answer(proxy, 2, &out, Query::Srv(format!("_sip._tcp.{CORP}")), Some(records));
    answer(
        proxy,
        3,
        &out,
        Query::Address("a.corp.test".into()),
        Some(ip("10.0.0.1")),
    )
}

/// The status codes of what went back to alice's phone.
fn answers_to_alice(out: &[(Flow, SipMessage)]) -> Vec<u16> {
    out.iter()
        .filter(|(f, _)| *f == udp(7001))
        .filter_map(|(_, m)| m.status())
        .collect()
}

#[test]
fn a_users_call_to_another_domain_goes_to_the_server_its_dns_names() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let out = sent(&resolve_to_first_server(&mut proxy, &mut reg));
    assert_eq!(out.len(), 1, "{out:?}");
    let (flow, invite) = &out[0];
    assert_eq!(*flow, tcp("10.0.0.1:5070"), "the SRV target of priority 10, over TCP");
    assert_eq!(
        invite.request_uri(),
        Some("sip:carol@corp.test"),
        "the Request-URI is kept"
    );
    assert_eq!(invite.header("Max-Forwards").as_deref(), Some("69"));
    assert_eq!(
        invite.header("P-Asserted-Identity").as_deref(),
        Some("<sip:alice@overlay.test>"),
        "the peer vouches for the user it authenticated"
    );
    let via = invite.list("Via");
    assert!(via[0].starts_with("SIP/2.0/TCP 127.0.0.1:5060;"), "{via:?}");
    let rr = without_proof(invite.list("Record-Route"));
    assert_eq!(
        rr,
        vec!["<sip:127.0.0.1:5060;transport=tcp;lr>", "<sip:127.0.0.1:5060;lr>"],
        "the peer stays in the dialog, once per transport"
    );
    // carol answers; the answer goes to alice's phone.
    let ok = respond(invite, 200, Some("c1"));
    let up = sent(&proxy.on_response(10, ok, tcp("10.0.0.1:5070")));
    assert_eq!(up.len(), 1);
    assert_eq!((up[0].0, up[0].1.status()), (udp(7001), Some(200)));
}

#[test]
fn a_503_sends_the_call_to_the_domains_next_server() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let out = sent(&resolve_to_first_server(&mut proxy, &mut reg));
    let busy = respond(&out[0].1, 503, Some("a1"));
    let after = proxy.on_response(10, busy, tcp("10.0.0.1:5070"));
    let acks: Vec<_> = sent(&after)
        .into_iter()
        .filter(|(_, m)| m.method() == Some("ACK"))
        .collect();
    assert_eq!(acks.len(), 1, "the 503 is acknowledged hop by hop");
    assert!(
        sent(&after).iter().all(|(f, _)| *f != udp(7001)),
        "nothing goes to the phone yet"
    );
    let out = sent(&answer(
        &mut proxy,
        11,
        &after,
        Query::Address("b.corp.test".into()),
        Some(ip("10.0.0.2")),
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, tcp("10.0.0.2:5080"));
    assert_eq!(out[0].1.method(), Some("INVITE"));
    let first_branch = Via::parse(&out[0].1.list("Via")[0])
        .unwrap()
        .branch()
        .map(str::to_string);
    assert_ne!(first_branch, None);
    let ok = respond(&out[0].1, 200, Some("b1"));
    let up = sent(&proxy.on_response(20, ok, tcp("10.0.0.2:5080")));
    assert_eq!((up[0].0, up[0].1.status()), (udp(7001), Some(200)));
}

#[test]
fn every_server_refusing_is_500_upstream() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let out = sent(&resolve_to_first_server(&mut proxy, &mut reg));
    let after = proxy.on_response(10, respond(&out[0].1, 503, Some("a1")), tcp("10.0.0.1:5070"));
    let out = sent(&answer(
        &mut proxy,
        11,
        &after,
        Query::Address("b.corp.test".into()),
        Some(ip("10.0.0.2")),
    ));
    let last = proxy.on_response(12, respond(&out[0].1, 503, Some("b1")), tcp("10.0.0.2:5080"));
    let to_phone = answers_to_alice(&sent(&last));
    assert_eq!(to_phone, vec![500], "§16.7 step 6: a 503 is not passed upstream");
}

#[test]
fn the_other_domains_requests_in_the_dialog_come_back_through_the_peer() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let out = sent(&resolve_to_first_server(&mut proxy, &mut reg));
    let invite = &out[0].1;
    let ok = respond(invite, 200, Some("c1"));
    proxy.on_response(10, ok, tcp("10.0.0.1:5070"));
    // carol's side hangs up: its BYE follows the Record-Route back.
    let route = invite.list("Record-Route");
    let mut bye = SipMessage::request("BYE", "sip:alice@127.0.0.1:7001");
    bye.push("Via", "SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bKbye1");
    bye.push("Route", &route[0]);
    bye.push("Route", &route[1]);
    bye.push("Max-Forwards", "70");
    bye.push("From", "<sip:carol@corp.test>;tag=c1");
    bye.push("To", "\"Alice\" <sip:alice@overlay.test>;tag=a1");
    bye.push("Call-ID", "call-1");
    bye.push("CSeq", "2 BYE");
    bye.push("Content-Length", "0");
    let out = sent(&proxy.on_request(20, bye, tcp("10.0.0.1:5070"), Side::Phones, &mut reg));
    assert!(
        out.iter().any(|(f, m)| *f == udp(7001) && m.method() == Some("BYE")),
        "{out:?}"
    );

    // A BYE with a made-up proof is not let through.
    let mut forged = SipMessage::request("BYE", "sip:alice@127.0.0.1:7001");
    forged.push("Via", "SIP/2.0/TCP 10.0.0.66:5070;branch=z9hG4bKbye2");
    forged.push(
        "Route",
        "<sip:127.0.0.1:5060;transport=tcp;lr;dlg=00000000000000000000000000000000>",
    );
    forged.push("From", "<sip:carol@corp.test>;tag=c1");
    forged.push("To", "<sip:alice@overlay.test>;tag=x");
    forged.push("Call-ID", "call-2");
    forged.push("CSeq", "2 BYE");
    forged.push("Content-Length", "0");
    let out = sent(&proxy.on_request(21, forged, tcp("10.0.0.66:5070"), Side::Phones, &mut reg));
    assert!(out.iter().all(|(f, _)| *f != udp(7001)), "{out:?}");
}

#[test]
fn a_server_that_cannot_be_reached_or_does_not_answer_is_passed_over() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    resolve_to_first_server(&mut proxy, &mut reg);
    // The TCP connection to the first server is refused.
    let after = proxy.flow_failed(5, tcp("10.0.0.1:5070"));
    let out = answer(
        &mut proxy,
        6,
        &after,
        Query::Address("b.corp.test".into()),
        Some(ip("10.0.0.2")),
    );
    assert_eq!(sent(&out)[0].0, tcp("10.0.0.2:5080"));
    // The second says nothing, not even 100 Trying: it is passed over
    // (well before Timer B), and nothing is left to try.
    assert!(sent(&proxy.tick(6 + SILENT_HOP_MS - 1)).is_empty());
    let end = sent(&proxy.tick(6 + SILENT_HOP_MS));
    let to_phone = answers_to_alice(&end);
    assert_eq!(
        to_phone,
        vec![408],
        "the best of 503 (refused) and 408 (no answer), §16.7 step 6"
    );
}

#[test]
fn an_answer_other_than_503_ends_the_call_without_trying_further() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let out = sent(&resolve_to_first_server(&mut proxy, &mut reg));
    let busy = respond(&out[0].1, 486, Some("a1"));
    let after = proxy.on_response(10, busy, tcp("10.0.0.1:5070"));
    assert!(questions(&after).is_empty(), "no further DNS");
    let to_phone = answers_to_alice(&sent(&after));
    assert_eq!(to_phone, vec![486]);
}

#[test]
fn a_domain_without_sip_servers_is_404_and_a_failing_dns_503() {
    for (dns_answers, code) in [(true, 404), (false, 503)] {
        let mut reg = alice_registered();
        let mut proxy = outbound();
        let mut out = proxy.on_request(0, invite_carol("z9hG4bKn1"), udp(7001), Side::Phones, &mut reg);
        let mut final_answer = None;
        for step in 0..10 {
            if let Some(q) = questions(&out).first().cloned() {
                let empty = match &q.1 {
                    Query::Naptr(_) => Answer::Naptr(vec![]),
                    Query::Srv(_) => Answer::Srv(vec![]),
                    Query::Address(_) => Answer::Address(vec![]),
                };
                out = proxy.resolved(step, q.0, &q.1, dns_answers.then_some(empty));
                continue;
            }
            final_answer = sent(&out)
                .iter()
                .find_map(|(_, m)| m.status().filter(|s| *s >= 200).map(|s| (s, m.clone())));
            break;
        }
        let (status, response) = final_answer.expect("an answer once every question was asked");
        assert_eq!(status, code);
        assert_eq!(response.has("Retry-After"), code == 503);
    }
}

#[test]
fn a_dns_that_never_answers_ends_the_call_with_408() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    proxy.on_request(0, invite_carol("z9hG4bKt1"), udp(7001), Side::Phones, &mut reg);
    let out = sent(&proxy.tick(TRANSACTION_TIMEOUT_MS));
    assert_eq!(codes(&out), vec![408]);
    let StartLine::Response { reason, .. } = &out[0].1.start else {
        panic!()
    };
    assert_eq!(reason, "DNS Lookup Timed Out");
}

#[test]
fn a_cancelled_call_stops_waiting_for_the_dns() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let invite = invite_carol("z9hG4bKc1");
    let out = proxy.on_request(0, invite.clone(), udp(7001), Side::Phones, &mut reg);
    let (lookup, query) = questions(&out)[0].clone();
    let cancel = cancel_for(&invite);
    let answered = codes(&sent(&proxy.on_request(1, cancel, udp(7001), Side::Phones, &mut reg)));
    assert_eq!(answered, vec![200, 487]);
    let late = proxy.resolved(2, lookup, &query, Some(Answer::Naptr(vec![])));
    assert!(late.is_empty(), "{late:?}");
}

#[test]
fn only_a_user_this_peer_authenticates_may_send_a_request_out() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    // From a phone that never registered: challenged, no DNS asked.
    let stranger = request("INVITE", &format!("sip:carol@{CORP}"), 7009, "z9hG4bKs1", "");
    let out = proxy.on_request(0, stranger, udp(7009), Side::Phones, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![407]);
    assert!(questions(&out).is_empty());
    // From another peer: only a proxy peer sends it out (decision 0036);
    // this one refuses it so that the sender tries another.
    let relayed = request("INVITE", &format!("sip:carol@{CORP}"), 7009, "z9hG4bKs2", "");
    let out = proxy.on_request(0, relayed, tls(PEER4), Side::Overlay, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![503]);
    assert!(questions(&out).is_empty());
}

#[test]
fn a_numeric_host_needs_no_dns_and_sips_or_an_unknown_transport_is_refused() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let direct = request("INVITE", "sip:carol@10.0.0.9:5099", 7001, "z9hG4bKd1", "");
    let out = proxy.on_request(0, direct, udp(7001), Side::Phones, &mut reg);
    assert!(questions(&out).is_empty());
    assert!(sent(&out)
        .iter()
        .any(|(f, m)| *f == udp_to("10.0.0.9:5099") && m.method() == Some("INVITE")));
    let secure = request("INVITE", &format!("sips:carol@{CORP}"), 7001, "z9hG4bKd2", "");
    let out = proxy.on_request(0, secure, udp(7001), Side::Phones, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![416]);
    let insecure = request(
        "INVITE",
        &format!("sip:carol@{CORP};transport=sctp"),
        7001,
        "z9hG4bKd3",
        "",
    );
    let out = proxy.on_request(0, insecure, udp(7001), Side::Phones, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![400]);
}

fn udp_to(addr: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: addr.parse().unwrap(),
    }
}

/// An INVITE for bob of the overlay from carol of corp.test, as corp.test's
/// proxy sends it to a proxy peer.
fn invite_from_outside(branch: &str, from: &str) -> SipMessage {
    let mut invite = request("INVITE", &format!("sip:bob@{DOMAIN}"), 9000, branch, "");
    invite.set("From", &format!("<sip:{from}>;tag=o1"));
    invite.prepend("Record-Route", "<sip:127.0.0.1:9000;lr>");
    invite
}

#[test]
fn a_proxy_peer_takes_calls_from_other_domains_for_the_users_its_policy_names() {
    let mut reg = registrar();
    let mut everyone = proxy_peer(Outsiders::Everyone);
    let out = everyone.on_request(
        0,
        invite_from_outside("z9hG4bKi1", "carol@corp.test"),
        udp(9000),
        Side::Phones,
        &mut reg,
    );
    assert_eq!(codes(&sent(&out)), vec![100], "no challenge");
    assert_eq!(lookup_of(&out).1, "bob", "bob is looked up in the overlay");

    let mut nobody = proxy_peer(Outsiders::Nobody);
    let out = nobody.on_request(
        0,
        invite_from_outside("z9hG4bKi2", "carol@corp.test"),
        udp(9000),
        Side::Phones,
        &mut reg,
    );
    assert_eq!(
        codes(&sent(&out)),
        vec![407],
        "by default outsiders are callers to authenticate"
    );

    let mut alice_only = proxy_peer(Outsiders::parse("alice").unwrap());
    let out = alice_only.on_request(
        0,
        invite_from_outside("z9hG4bKi3", "carol@corp.test"),
        udp(9000),
        Side::Phones,
        &mut reg,
    );
    assert_eq!(codes(&sent(&out)), vec![403]);
}

#[test]
fn nobody_outside_can_call_as_a_user_of_the_overlay() {
    let mut reg = registrar();
    let mut proxy = proxy_peer(Outsiders::Everyone);
    let mut forged = invite_from_outside("z9hG4bKf1", "alice@overlay.test");
    forged.push("P-Asserted-Identity", "<sip:alice@overlay.test>");
    let out = proxy.on_request(0, forged, udp(9000), Side::Phones, &mut reg);
    assert_eq!(
        codes(&sent(&out)),
        vec![407],
        "a From of the overlay's domain must authenticate"
    );

    // An outsider's assertion of identity does not enter the overlay.
    let mut asserted = invite_from_outside("z9hG4bKf2", "carol@corp.test");
    asserted.push("P-Asserted-Identity", "<sip:alice@overlay.test>");
    let out = proxy.on_request(0, asserted, udp(9000), Side::Phones, &mut reg);
    let (lookup, _) = lookup_of(&out);
    let found = Location::Found {
        peers: vec![PEER4.parse().unwrap()],
        here: false,
    };
    let out = sent(&proxy.located(1, lookup, found, &reg));
    let forwarded = &out
        .iter()
        .find(|(f, _)| *f == tls(PEER4))
        .expect("sent to bob's peer")
        .1;
    assert!(!forwarded.has("P-Asserted-Identity"), "{forwarded:?}");
    assert_eq!(
        forwarded.header("From").as_deref(),
        Some("<sip:carol@corp.test>;tag=o1")
    );
}

#[test]
fn outsider_policies_parse_and_refuse_nonsense() {
    assert_eq!(Outsiders::parse("none"), Ok(Outsiders::Nobody));
    assert_eq!(Outsiders::parse("all"), Ok(Outsiders::Everyone));
    let Ok(Outsiders::Users(users)) = Outsiders::parse("alice, bob") else {
        panic!()
    };
    assert_eq!(users.into_iter().collect::<Vec<_>>(), vec!["alice", "bob"]);
    assert!(Outsiders::parse(",").is_err());
    assert!(Outsiders::parse("alice bob").is_err());
}

#[test]
fn a_domain_that_asks_for_tls_gets_it_and_its_certificate_must_name_the_domain() {
    let mut reg = alice_registered();
    let mut proxy = Proxy::new(me(), 1).with_interworking(Interworking {
        reach: Reach::Direct,
        tls: true,
        outsiders: Outsiders::Nobody,
    });
    let out = proxy.on_request(0, invite_carol("z9hG4bKs1"), udp(7001), Side::Phones, &mut reg);
    let naptr = Answer::Naptr(vec![Naptr {
        order: 10,
        preference: 10,
        flags: "S".into(),
        services: "SIPS+D2T".into(),
        replacement: format!("_sips._tcp.{CORP}"),
    }]);
    let out = answer(&mut proxy, 1, &out, Query::Naptr(CORP.into()), Some(naptr));
    let out = answer(
        &mut proxy,
        2,
        &out,
        Query::Srv(format!("_sips._tcp.{CORP}")),
        Some(Answer::Srv(vec![srv(10, 5061, "sip.corp.test.")])),
    );
    let out = answer(
        &mut proxy,
        3,
        &out,
        Query::Address("sip.corp.test".into()),
        Some(ip("10.0.0.1")),
    );
    let server = SocketAddr::from(([10, 0, 0, 1], 5061));
    let named = out
        .iter()
        .position(|o| matches!(o, Output::TlsDomain { remote, domain } if *remote == server && domain == CORP));
    let sent_at = out
        .iter()
        .position(|o| matches!(o, Output::Send { flow, .. } if flow.transport == Transport::Tls));
    assert!(
        named.is_some() && named < sent_at,
        "the domain is named before the INVITE goes: {out:?}"
    );
    let invite = &sent(&out)[0].1;
    assert_left_as(
        invite,
        "SIP/2.0/TLS 127.0.0.1:5061",
        &["<sip:127.0.0.1:5061;transport=tls;lr>", "<sip:127.0.0.1:5060;lr>"],
        "the TLS side names the TLS listener",
    );

    // A sips: URI is taken too, and asks for TLS only (§4.1).
    let secure = request("INVITE", &format!("sips:carol@{CORP}"), 7001, "z9hG4bKs2", "");
    let out = proxy.on_request(10, secure, udp(7001), Side::Phones, &mut reg);
    assert_eq!(questions(&out)[0].1, Query::Naptr(CORP.into()));
}

#[test]
fn a_tls_connection_in_is_reused_only_toward_its_own_hosts_address() {
    let conn = tls("10.0.0.5:40001");
    let mut invite = request("INVITE", &format!("sip:bob@{DOMAIN}"), 9000, "z9hG4bKa1", "");
    invite.set("Via", "SIP/2.0/TLS 10.0.0.5:5061;branch=z9hG4bKa1");
    assert_eq!(connection_alias(&invite, conn), Some(tls("10.0.0.5:5061")));
    invite.set("Via", "SIP/2.0/TLS 10.0.0.5;branch=z9hG4bKa1");
    assert_eq!(
        connection_alias(&invite, conn),
        Some(tls("10.0.0.5:5061")),
        "5061 by default"
    );
    // Another host's address never takes this connection's requests.
    invite.set("Via", "SIP/2.0/TLS 10.0.0.6:5061;branch=z9hG4bKa1");
    assert_eq!(connection_alias(&invite, conn), None);
    // Nor does anything but TLS.
    invite.set("Via", "SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bKa1");
    assert_eq!(connection_alias(&invite, conn), None);
    invite.set("Via", "SIP/2.0/TLS 10.0.0.5:5061;branch=z9hG4bKa1");
    assert_eq!(connection_alias(&invite, tcp("10.0.0.5:40001")), None);
}

#[test]
fn a_dns_that_cannot_say_which_servers_the_domain_has_gets_no_guess() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let out = proxy.on_request(0, invite_carol("z9hG4bKg1"), udp(7001), Side::Phones, &mut reg);
    // NAPTR: no records; the SRV lookup fails (SERVFAIL, timeout).
    let out = answer(
        &mut proxy,
        1,
        &out,
        Query::Naptr(CORP.into()),
        Some(Answer::Naptr(vec![])),
    );
    let out = answer(&mut proxy, 2, &out, Query::Srv(format!("_sip._tcp.{CORP}")), None);
    assert!(
        questions(&out).is_empty(),
        "no fallback to the domain's own address: {out:?}"
    );
    let response = sent(&out)
        .into_iter()
        .find(|(f, _)| *f == udp(7001))
        .expect("an answer");
    assert_eq!(response.1.status(), Some(503));
    assert!(response.1.has("Retry-After"));
}

#[test]
fn a_server_that_rang_is_not_replaced_by_the_next_one() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let out = sent(&resolve_to_first_server(&mut proxy, &mut reg));
    let ringing = respond(&out[0].1, 180, Some("a1"));
    proxy.on_response(10, ringing, tcp("10.0.0.1:5070"));
    // Timer C: the branch is cancelled; the server never answers even
    // that, and Timer B ends the branch.
    let cancel = sent(&proxy.tick(10 + TIMER_C_MS));
    assert!(cancel.iter().any(|(_, m)| m.method() == Some("CANCEL")), "{cancel:?}");
    let after = proxy.tick(20 + TIMER_C_MS + TRANSACTION_TIMEOUT_MS);
    assert!(questions(&after).is_empty(), "no other server is tried: {after:?}");
    let to_phone = answers_to_alice(&sent(&after));
    assert_eq!(to_phone, vec![408]);
}

#[test]
fn a_trailing_dot_does_not_make_the_overlays_domain_another() {
    let mut reg = registrar();
    let mut proxy = proxy_peer(Outsiders::Everyone);
    let forged = invite_from_outside("z9hG4bKdot", "alice@overlay.test.");
    let out = proxy.on_request(0, forged, udp(9000), Side::Phones, &mut reg);
    assert_eq!(codes(&sent(&out)), vec![407]);
}

/// RFC 3263 §4.3 with a timeout of our choosing (`SILENT_HOP_MS`): a server
/// that says nothing to an INVITE is passed over after 5 s, not Timer B's
/// 32 s; one that answered 100 Trying is given the call's time; and a
/// request other than INVITE or REGISTER waits for its own timeout, since
/// a second server would deliver it twice.
#[test]
fn a_silent_server_is_passed_over_after_seconds_and_one_that_said_trying_is_not() {
    let mut reg = alice_registered();
    let mut proxy = outbound();
    let first = sent(&resolve_to_first_server(&mut proxy, &mut reg));
    assert_eq!(first[0].0, tcp("10.0.0.1:5070"));
    let t = 3 + SILENT_HOP_MS;
    let out = proxy.tick(t);
    let out = answer(
        &mut proxy,
        t + 1,
        &out,
        Query::Address("b.corp.test".into()),
        Some(ip("10.0.0.2")),
    );
    let second = sent(&out);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0, tcp("10.0.0.2:5080"), "the next server, 5 s on");
    let trying = respond(&second[0].1, 100, None);
    proxy.on_response(t + 2, trying, tcp("10.0.0.2:5080"));
    // The first one wakes up late: its ringing gets a CANCEL (§9.1) and
    // goes no further; an answer all the same goes to alice, as every 2xx
    // does (§16.7 step 5), for her phone to take or end.
    let late_ringing = respond(&first[0].1, 180, Some("late"));
    let out = sent(&proxy.on_response(t + 3, late_ringing, tcp("10.0.0.1:5070")));
    assert!(
        out.iter()
            .any(|(f, m)| *f == tcp("10.0.0.1:5070") && m.method() == Some("CANCEL")),
        "{out:?}"
    );
    assert!(answers_to_alice(&out).is_empty(), "{out:?}");
    let late_answer = respond(&first[0].1, 200, Some("late"));
    let out = sent(&proxy.on_response(t + 4, late_answer, tcp("10.0.0.1:5070")));
    assert_eq!(answers_to_alice(&out), vec![200]);
    let later = sent(&proxy.tick(t + 10 * SILENT_HOP_MS));
    assert!(
        answers_to_alice(&later).is_empty(),
        "a server that is trying keeps the call: {later:?}"
    );

    let mut proxy = outbound();
    let message = request("MESSAGE", &format!("sip:carol@{CORP}"), 7001, "z9hG4bKm1", "");
    let out = proxy.on_request(0, message, udp(7001), Side::Phones, &mut reg);
    let out = answer(
        &mut proxy,
        1,
        &out,
        Query::Naptr(CORP.into()),
        Some(Answer::Naptr(Vec::new())),
    );
    let srv_records = Answer::Srv(vec![srv(10, 5070, "a.corp.test."), srv(20, 5080, "b.corp.test.")]);
    let out = answer(
        &mut proxy,
        2,
        &out,
        Query::Srv(format!("_sip._tcp.{CORP}")),
        Some(srv_records),
    );
    let out = answer(
        &mut proxy,
        3,
        &out,
        Query::Address("a.corp.test".into()),
        Some(ip("10.0.0.1")),
    );
    assert_eq!(sent(&out).len(), 1);
    let quiet = proxy.tick(3 + SILENT_HOP_MS);
    assert!(questions(&quiet).is_empty(), "no next server for a MESSAGE yet");
    let quiet: Vec<_> = sent(&quiet)
        .into_iter()
        .filter(|(f, _)| f.remote.port() == 5080)
        .collect();
    assert!(quiet.is_empty());
}

/// Issue 34 §6: a dual-stack peer sends toward an IPv6 next hop with its
/// IPv6 address in Via and in the Record-Route entry for the way out, and
/// keeps its IPv4 one for the way in from an IPv4 phone.
#[test]
fn a_dual_stack_peer_names_its_address_in_the_next_hops_family() {
    let mut reg = alice_registered();
    let mut dual = me();
    dual.phones_other_family = Some("[::1]:5060".parse().unwrap());
    let mut proxy = Proxy::new(dual, 1).with_interworking(Interworking {
        reach: Reach::Direct,
        ..Default::default()
    });
    let invite = request("INVITE", "sip:carol@[2001:db8::9]:5099", 7001, "z9hG4bKv6", "");
    let out = sent(&proxy.on_request(0, invite, udp(7001), Side::Phones, &mut reg));
    let (flow, invite) = out.iter().find(|(_, m)| m.method() == Some("INVITE")).expect("sent on");
    assert_eq!(*flow, udp_to("[2001:db8::9]:5099"));
    assert_left_as(
        invite,
        "SIP/2.0/UDP [::1]:5060",
        &["<sip:[::1]:5060;lr>", "<sip:127.0.0.1:5060;lr>"],
        "one entry per family, the way out first",
    );
    // Its IPv6 address is its own: a Route naming it comes off.
    assert!(proxy.interfaces().is_mine(&Uri::parse("sip:[::1]:5060;lr").unwrap()));
}
