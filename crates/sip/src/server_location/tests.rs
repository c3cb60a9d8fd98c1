use super::*;

fn uri(text: &str) -> Uri {
    Uri::parse(text).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
    Srv {
        priority,
        weight,
        port,
        target: target.into(),
    }
}

fn naptr(order: u16, preference: u16, services: &str, replacement: &str) -> Naptr {
    Naptr {
        order,
        preference,
        flags: "s".into(),
        services: services.into(),
        replacement: replacement.into(),
    }
}

/// Answers every question from `dns` until none is left; the hops in the
/// order they would be tried, and the questions asked.
fn resolve(mut r: Resolution, dns: impl Fn(&Query) -> Answer) -> (Vec<Destination>, Vec<Query>) {
    let mut asked = Vec::new();
    while let Some(q) = r.next_query() {
        let answer = dns(&q);
        r.answered(&q, answer);
        asked.push(q);
    }
    let hops = std::iter::from_fn(|| r.next_destination()).collect();
    assert!(r.is_exhausted());
    (hops, asked)
}

fn hop(transport: Transport, address: &str) -> Destination {
    Destination {
        transport,
        address: address.parse().unwrap(),
    }
}

fn nothing(q: &Query) -> Answer {
    match q {
        Query::Naptr(_) => Answer::Naptr(vec![]),
        Query::Srv(_) => Answer::Srv(vec![]),
        Query::Address(_) => Answer::Address(vec![]),
    }
}

#[test]
fn a_numeric_host_needs_no_dns_and_takes_the_default_port_and_transport() {
    let (hops, asked) = resolve(Resolution::new(&uri("sip:bob@192.0.2.7"), 1).unwrap(), nothing);
    assert!(asked.is_empty());
    assert_eq!(hops, vec![hop(Transport::Udp, "192.0.2.7:5060")]);
    let (hops, _) = resolve(Resolution::new(&uri("sips:bob@[2001:db8::1]"), 1).unwrap(), nothing);
    assert_eq!(hops, vec![hop(Transport::Tls, "[2001:db8::1]:5061")]);
    let (hops, _) = resolve(
        Resolution::new(&uri("sip:bob@192.0.2.7:5080;transport=tcp"), 1).unwrap(),
        nothing,
    );
    assert_eq!(hops, vec![hop(Transport::Tcp, "192.0.2.7:5080")]);
}

#[test]
fn a_host_with_a_port_is_looked_up_by_address_only() {
    let (hops, asked) = resolve(Resolution::new(&uri("sip:carol@pbx.example:5070"), 1).unwrap(), |q| {
        assert_eq!(q, &Query::Address("pbx.example".into()));
        Answer::Address(vec![ip("2001:db8::5"), ip("192.0.2.5")])
    });
    assert_eq!(asked.len(), 1);
    assert_eq!(
        hops,
        vec![
            hop(Transport::Udp, "[2001:db8::5]:5070"),
            hop(Transport::Udp, "192.0.2.5:5070")
        ]
    );
}

/// §4.1 and §4.2 in full: NAPTR gives the transport and the SRV name, SRV
/// the targets by priority, each target's addresses the hops, and every
/// hop is there to fail over to (§4.3).
#[test]
fn naptr_then_srv_then_addresses_give_hops_in_priority_order() {
    let r = Resolution::new(&uri("sip:carol@corp.example"), 7).unwrap();
    let (hops, asked) = resolve(r, |q| match q {
        Query::Naptr(name) => {
            assert_eq!(name, "corp.example");
            Answer::Naptr(vec![
                naptr(20, 10, "SIP+D2U", "_sip._udp.corp.example."),
                naptr(10, 10, "SIP+D2T", "_sip._tcp.corp.example."),
                naptr(5, 10, "SIP+D2S", "_sip._sctp.corp.example."),
            ])
        }
        Query::Srv(name) => {
            assert_eq!(name, "_sip._tcp.corp.example", "the lowest order this node supports");
            Answer::Srv(vec![
                srv(20, 0, 5060, "backup.corp.example."),
                srv(10, 0, 5062, "sip1.corp.example."),
            ])
        }
        Query::Address(name) if name == "sip1.corp.example" => Answer::Address(vec![ip("192.0.2.1")]),
        Query::Address(name) if name == "backup.corp.example" => Answer::Address(vec![ip("192.0.2.2")]),
        Query::Address(other) => panic!("asked for {other}"),
    });
    assert_eq!(
        hops,
        vec![
            hop(Transport::Tcp, "192.0.2.1:5062"),
            hop(Transport::Tcp, "192.0.2.2:5060")
        ]
    );
    assert_eq!(asked.len(), 4);
}

/// §4.1: no NAPTR: SRV names of each transport in turn; no SRV either: the
/// host's addresses at the default port, over UDP (TLS for SIPS).
#[test]
fn without_naptr_srv_names_are_tried_and_without_srv_the_host_itself() {
    let r = Resolution::new(&uri("sip:dave@small.example"), 3).unwrap();
    let (hops, asked) = resolve(r, |q| match q {
        Query::Srv(name) if name == "_sip._udp.small.example" => Answer::Srv(vec![srv(0, 0, 5060, "small.example.")]),
        Query::Address(name) if name == "small.example" => Answer::Address(vec![ip("192.0.2.9")]),
        other => nothing(other),
    });
    assert_eq!(
        asked,
        vec![
            Query::Naptr("small.example".into()),
            Query::Srv("_sip._tcp.small.example".into()),
            Query::Srv("_sip._udp.small.example".into()),
            Query::Address("small.example".into()),
        ]
    );
    assert_eq!(hops, vec![hop(Transport::Udp, "192.0.2.9:5060")]);

    let r = Resolution::new(&uri("sips:erin@bare.example"), 3).unwrap();
    let (hops, asked) = resolve(r, |q| match q {
        Query::Address(_) => Answer::Address(vec![ip("192.0.2.10")]),
        other => nothing(other),
    });
    assert_eq!(
        asked[1],
        Query::Srv("_sips._tcp.bare.example".into()),
        "SIPS asks TLS only"
    );
    assert_eq!(hops, vec![hop(Transport::Tls, "192.0.2.10:5061")]);
}

#[test]
fn a_sips_uri_takes_only_secure_naptr_records_and_refuses_udp() {
    let r = Resolution::new(&uri("sips:frank@corp.example"), 3).unwrap();
    let (hops, _) = resolve(r, |q| match q {
        Query::Naptr(_) => Answer::Naptr(vec![
            naptr(10, 10, "SIP+D2U", "_sip._udp.corp.example"),
            naptr(20, 10, "SIPS+D2T", "_sips._tcp.corp.example"),
        ]),
        Query::Srv(name) => {
            assert_eq!(name, "_sips._tcp.corp.example");
            Answer::Srv(vec![srv(1, 1, 5061, "tls.corp.example")])
        }
        Query::Address(_) => Answer::Address(vec![ip("192.0.2.20")]),
    });
    assert_eq!(hops, vec![hop(Transport::Tls, "192.0.2.20:5061")]);
    assert_eq!(
        Resolution::new(&uri("sips:frank@corp.example;transport=udp"), 1).unwrap_err(),
        LocateError::InsecureTransport("UDP")
    );
    assert!(matches!(
        Resolution::new(&uri("sip:frank@corp.example;transport=sctp"), 1),
        Err(LocateError::UnsupportedTransport(_))
    ));
}

/// A transport parameter without a port: that transport's SRV name only.
#[test]
fn a_transport_parameter_asks_that_transports_srv_records() {
    let r = Resolution::new(&uri("sip:gina@corp.example;transport=tcp"), 3).unwrap();
    let (hops, asked) = resolve(r, |q| match q {
        Query::Srv(_) => Answer::Srv(vec![srv(1, 1, 5070, "edge.corp.example")]),
        Query::Address(_) => Answer::Address(vec![ip("192.0.2.30")]),
        Query::Naptr(_) => panic!("no NAPTR with a transport parameter"),
    });
    assert_eq!(asked[0], Query::Srv("_sip._tcp.corp.example".into()));
    assert_eq!(hops, vec![hop(Transport::Tcp, "192.0.2.30:5070")]);
}

/// RFC 2782: within a priority, targets are drawn by weight; over many
/// draws a target of weight 30 comes first about three times as often as
/// one of weight 10, and one of weight 0 with a chance of 1 in 41 (the
/// RFC's draw from 0 to the sum of the weights).
#[test]
fn srv_weights_spread_the_first_choice_in_proportion() {
    let mut first = std::collections::HashMap::new();
    for seed in 0..4000u64 {
        let mut random = seed;
        let order = rfc2782_order(
            vec![
                srv(1, 30, 1, "heavy"),
                srv(1, 10, 1, "light"),
                srv(1, 0, 1, "zero"),
                srv(2, 100, 1, "later"),
            ],
            &mut random,
        );
        assert_eq!(
            order.last().unwrap().target,
            "later",
            "a higher priority number comes last"
        );
        *first.entry(order[0].target.clone()).or_insert(0u32) += 1;
    }
    let (heavy, light, zero) = (first["heavy"], first["light"], first.get("zero").copied().unwrap_or(0));
    assert!((2.4..3.8).contains(&(f64::from(heavy) / f64::from(light))), "{first:?}");
    assert!((40..200).contains(&zero), "{first:?}");
}

/// A target "." in an SRV answer means the service is not offered there.
#[test]
fn an_srv_target_of_dot_means_no_service() {
    let r = Resolution::new(&uri("sip:hal@none.example;transport=udp"), 3).unwrap();
    let (hops, asked) = resolve(r, |q| match q {
        Query::Srv(_) => Answer::Srv(vec![srv(0, 0, 0, ".")]),
        Query::Address(_) => Answer::Address(vec![ip("192.0.2.40")]),
        Query::Naptr(_) => unreachable!(),
    });
    assert_eq!(asked.last(), Some(&Query::Address("none.example".into())));
    assert_eq!(hops, vec![hop(Transport::Udp, "192.0.2.40:5060")]);
}
