//! The SIP usage (RFC 7904) through the engine's sans-IO interface, on the
//! overlay's deterministic in-memory network ([`overlay::testing`]).

use overlay::testing::*;
use overlay::*;
use peer_core::sip_usage;
use reload_wire::*;
use std::net::SocketAddr;

/// RFC 7904 §3: a peer stores the registration of a user enrolled into it,
/// signed as that user, keyed by its own Node-ID; any peer fetches it and
/// reads back the route to that peer. Signed as the peer itself, or for a
/// user it does not hold, the same store is refused or impossible.
#[test]
fn a_sip_registration_is_stored_as_the_user_and_resolves_to_the_storing_peer() {
    let mut net = Net::ring(&IDS);
    net.advance(5_000);
    let name = sip_usage::resource_name("phone2", "engine.test.invalid");
    let resource = net.nodes[2].resource_id(name.as_bytes());
    let me = net.nodes[2].node_id();
    let value = sip_usage::route_to_me(me, true);
    let kind = usages::kind_id::SIP_REGISTRATION;

    let req = net.nodes[2]
        .store_as(net.now, &name, resource.clone(), kind, vec![value.clone()], 600)
        .expect("phone2 is enrolled into peer 2");
    net.pump();
    assert!(net.done(2, req).0.is_ok());

    let req = net.nodes[5].fetch(net.now, sip_usage::fetch_registrations(resource.clone()));
    net.pump();
    let Ok(Body::FetchAns(mut ans)) = net.done(5, req).0 else {
        panic!("fetch failed")
    };
    assert_eq!(net.nodes[5].keep_verified(&resource, &mut ans), 0);
    assert_eq!(
        sip_usage::targets(&ans),
        vec![sip_usage::Target::Route(vec![Destination::Node(me)])]
    );
    // A value a storing peer altered to route to another peer no longer
    // matches its signer (USER-NODE-MATCH), and a value read under a
    // Resource-ID its user does not hash to is not allowed either.
    let mut forged = ans.clone();
    forged.kind_responses[0].values[0].value = sip_usage::route_to_me(net.nodes[3].node_id(), true);
    assert_eq!(net.nodes[5].keep_verified(&resource, &mut forged), 1);
    assert!(sip_usage::targets(&forged).is_empty());
    let mut elsewhere = ans.clone();
    let other_resource = net.nodes[5].resource_id(b"someone-else@engine.test.invalid");
    assert_eq!(net.nodes[5].keep_verified(&other_resource, &mut elsewhere), 1);

    // USER-NODE-MATCH: the peer's own certificate names another user.
    let req = net.nodes[2].store(net.now, resource.clone(), kind, vec![value.clone()], 600);
    net.pump();
    assert!(
        matches!(net.done(2, req).0, Err(RequestFailure::Error(e)) if e.error_code == ErrorCode::FORBIDDEN),
        "a store signed by the peer, not the user, is refused"
    );
    // Peer 3 cannot sign as phone2 at all.
    assert!(net.nodes[3]
        .store_as(net.now, &name, resource, kind, vec![value], 600)
        .is_none());
}

/// RFC 6940 §6.5.2: a peer that offers SIP answers AppAttach with where its
/// SIP listens, signed by itself; one that offers nothing answers
/// Error_Not_Found.
#[test]
fn app_attach_names_the_address_of_the_application_the_peer_offers() {
    let mut net = Net::ring(&IDS);
    net.advance(5_000);
    let sip = IpAddressPort::from(SocketAddr::from(([127, 0, 0, 9], 5070)));
    net.nodes[4].offer_application(sip_usage::SIP_APPLICATION, sip.clone());
    let callee = net.nodes[4].node_id();

    let req = net.nodes[1].app_attach(net.now, callee, sip_usage::SIP_APPLICATION);
    net.pump();
    let (outcome, responder) = net.done_by(1, req);
    let Ok(Body::AppAttachAns(ans)) = outcome else {
        panic!("AppAttach failed: {outcome:?}")
    };
    assert_eq!(responder, callee, "answered by the peer asked, not by one on the way");
    assert_eq!(ans.application, sip_usage::SIP_APPLICATION);
    assert_eq!(sip_usage::app_address(&ans), Some(sip));

    let other = net.nodes[3].node_id();
    let req = net.nodes[1].app_attach(net.now, other, sip_usage::SIP_APPLICATION);
    net.pump();
    assert!(matches!(net.done(1, req).0, Err(RequestFailure::Error(e)) if e.error_code == ErrorCode::NOT_FOUND));
    let req = net.nodes[1].app_attach(net.now, callee, 5061);
    net.pump();
    assert!(matches!(net.done(1, req).0, Err(RequestFailure::Error(e)) if e.error_code == ErrorCode::NOT_FOUND));
}

/// Runs `locator`'s lookup of `name` at node `at` to its end, each message
/// seen by `rewrite` first; the outcome.
fn locate_with(
    net: &mut Net,
    locator: &mut sip_usage::Locator,
    at: usize,
    name: &str,
    rewrite: impl FnMut(NodeId, NodeId, &mut Vec<u8>),
) -> sip_usage::Located {
    let now = net.now;
    locator.start(&mut net.nodes[at], now, name.to_string(), 7);
    run_lookup(net, locator, at, rewrite).unwrap_or_else(|| panic!("the lookup of {name} did not end"))
}

/// Runs the lookup `locator` started at node `at` (token 7) to its end.
fn run_lookup(
    net: &mut Net,
    locator: &mut sip_usage::Locator,
    at: usize,
    mut rewrite: impl FnMut(NodeId, NodeId, &mut Vec<u8>),
) -> Option<sip_usage::Located> {
    for _ in 0..100 {
        net.pump_with(&mut rewrite);
        let done: Vec<Event> = {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut net.events)
                .into_iter()
                .partition(|(n, e)| *n == at && matches!(e, Event::Done { .. }));
            net.events = rest;
            mine.into_iter().map(|(_, e)| e).collect()
        };
        for e in done {
            if let Event::Done {
                request,
                outcome,
                responder,
                ..
            } = e
            {
                let now = net.now;
                locator.on_done(&mut net.nodes[at], now, request, &outcome, responder);
            }
        }
        if let Some((token, located)) = locator.poll_located() {
            assert_eq!(token, 7);
            return Some(located);
        }
        // Nothing moves: time passes to the next timer (the engine's
        // retransmissions, the locator's grace).
        let next = locator.poll_timeout().unwrap_or(net.now + 500).max(net.now + 1);
        net.advance(next - net.now);
        let now = net.now;
        locator.handle_timeout(now);
    }
    None
}

fn locate(net: &mut Net, locator: &mut sip_usage::Locator, at: usize, name: &str) -> sip_usage::Located {
    locate_with(net, locator, at, name, |_, _, _| {})
}

/// Peer `i` stores `name`'s registration, a route to itself (RFC 7904 §3),
/// signed as that user.
fn store_registration(net: &mut Net, i: usize, name: &str) {
    let resource = net.nodes[i].resource_id(name.as_bytes());
    let value = sip_usage::route_to_me(net.nodes[i].node_id(), true);
    let now = net.now;
    let kind = usages::kind_id::SIP_REGISTRATION;
    let req = net.nodes[i]
        .store_as(now, name, resource, kind, vec![value], 600)
        .unwrap();
    net.pump();
    assert!(net.done(i, req).0.is_ok());
}

/// Peer `i`'s phone user registers: peer `i` stores the route to itself
/// (RFC 7904 §3) and offers SIP over TLS at 127.0.0.9:(5070 + i).
/// A phone registered at peer `i`, and where that peer's SIP listens.
fn register_phone(net: &mut Net, i: usize) -> (String, sip_usage::SipPeer) {
    let name = sip_usage::resource_name(&format!("phone{i}"), "engine.test.invalid");
    store_registration(net, i, &name);
    let address = SocketAddr::from(([127, 0, 0, 9], 5070 + i as u16));
    net.nodes[i].offer_application(sip_usage::SIPS_APPLICATION, IpAddressPort::from(address));
    let node = net.nodes[i].id();
    (name, sip_usage::SipPeer { node, address })
}

fn app_attaches_sent(net: &Net, from: usize) -> usize {
    let ctx = config().decode_context().unwrap();
    net.sent
        .iter()
        .filter(|(i, _, b)| {
            *i == from
                && Message::decode(b, &ctx)
                    .is_ok_and(|m| m.message_contents.message_code == MessageCode::APP_ATTACH_REQ)
        })
        .count()
}

/// RFC 7904 §4.2 through the sans-IO locator: a lookup fetches the
/// registration, AppAttaches to the peer it names and gives that peer's
/// SIP address; a second lookup reuses the answer without an AppAttach
/// until it is 10 minutes old; the callee's own peer finds the phone here.
#[test]
fn a_lookup_finds_the_callees_peer_and_reuses_its_appattach_answer_until_it_expires() {
    let mut net = Net::ring(&IDS);
    net.advance(5_000);
    let (name, sip) = register_phone(&mut net, 4);
    let mut locator = sip_usage::Locator::default();
    let found = sip_usage::Located::Found {
        peers: vec![sip],
        here: false,
    };
    net.sent.clear();
    assert_eq!(locate(&mut net, &mut locator, 1, &name), found);
    assert_eq!(app_attaches_sent(&net, 1), 1);
    net.sent.clear();
    assert_eq!(locate(&mut net, &mut locator, 1, &name), found);
    assert_eq!(app_attaches_sent(&net, 1), 0, "the answer is reused");
    assert_eq!(locator.stats().attaches_reused, 1);
    net.advance(sip_usage::ATTACH_REUSE_MS);
    net.sent.clear();
    assert_eq!(locate(&mut net, &mut locator, 1, &name), found);
    assert_eq!(app_attaches_sent(&net, 1), 1, "asked again once the answer is old");
    // Forgotten (the address could not be reached): asked again at once.
    locator.forget(sip.address);
    net.sent.clear();
    assert_eq!(locate(&mut net, &mut locator, 1, &name), found);
    assert_eq!(app_attaches_sent(&net, 1), 1);
    let mut own = sip_usage::Locator::default();
    assert_eq!(
        locate(&mut net, &mut own, 4, &name),
        sip_usage::Located::Found {
            peers: vec![],
            here: true
        }
    );
    assert_eq!(locator.in_progress(), 0);
}

/// RFC 7904 §4.2 "ask a replica": the responsible peer answers without
/// the registration (a hand-over under way, or a value that does not
/// verify); the locator asks the replica after it and finds the phone.
#[test]
fn a_registration_the_responsible_peer_lacks_is_found_at_a_replica() {
    let mut net = Net::ring(&IDS);
    net.advance(5_000);
    let (name, sip) = register_phone(&mut net, 4);
    let resource = net.nodes[1].resource_id(name.as_bytes());
    let holders: Vec<NodeId> = net
        .nodes
        .iter()
        .filter(|n| n.storage().resource(&resource).is_some())
        .map(|n| n.node_id())
        .collect();
    assert_eq!(holders.len(), 3, "responsible peer and two replicas");
    let ctx = config().decode_context().unwrap();
    // A caller that holds no copy itself, so the Fetch goes out.
    let at = (0..net.nodes.len())
        .find(|i| !holders.contains(&net.nodes[*i].node_id()))
        .unwrap();
    let caller = net.nodes[at].node_id();
    let mut first_answer = None;
    // The first FetchAns to reach the caller is emptied: it comes from the
    // responsible peer.
    let mut empty_first = |to: NodeId, _from: NodeId, bytes: &mut Vec<u8>| {
        if to != caller || first_answer.is_some() {
            return;
        }
        let Ok(mut m) = Message::decode(bytes, &ctx) else {
            return;
        };
        if m.message_contents.message_code != MessageCode::FETCH_ANS {
            return;
        }
        let Ok(Body::FetchAns(mut ans)) = m.message_contents.body(&ctx) else {
            return;
        };
        for k in &mut ans.kind_responses {
            k.values.clear();
        }
        first_answer = Some(m.security_block.signature.identity.clone());
        m.message_contents = MessageContents::from_body(&Body::FetchAns(ans)).unwrap();
        *bytes = m.to_bytes().unwrap();
    };
    let mut locator = sip_usage::Locator::default();
    let located = locate_with(&mut net, &mut locator, at, &name, &mut empty_first);
    assert_eq!(
        located,
        sip_usage::Located::Found {
            peers: vec![sip],
            here: false
        }
    );
    assert_eq!(locator.stats().replicas_asked, 1, "one replica asked");
}

/// With no registration anywhere the locator asks both replicas, then the
/// user's certificate decides: an enrolled user with no phone (480 to the
/// caller), or nobody by that name (404).
#[test]
fn an_unregistered_user_is_told_from_a_name_nobody_enrolled() {
    let mut net = Net::ring(&IDS);
    net.advance(5_000);
    let mut locator = sip_usage::Locator::default();
    let nobody = sip_usage::resource_name("nobody", "engine.test.invalid");
    assert_eq!(locate(&mut net, &mut locator, 2, &nobody), sip_usage::Located::NotFound);
    assert_eq!(locator.stats().replicas_asked, 2);
    // phone3's certificate is in the overlay (RFC 6940 §8), no phone of
    // theirs registered.
    let name = sip_usage::resource_name("phone3", "engine.test.invalid");
    let resource = net.nodes[3].resource_id(name.as_bytes());
    let certificate = StoredDataValue::Array(ArrayEntry {
        index: 0,
        value: DataValue {
            exists: true,
            value: b"phone3's certificate".to_vec(),
        },
    });
    let now = net.now;
    let kind = usages::kind_id::CERTIFICATE_BY_USER;
    let req = net.nodes[3]
        .store_as(now, &name, resource, kind, vec![certificate], 600)
        .unwrap();
    net.pump();
    assert!(net.done(3, req).0.is_ok());
    assert_eq!(locate(&mut net, &mut locator, 2, &name), sip_usage::Located::NoPhone);
}

/// A registration left by a peer that crashed stays until it expires, and
/// an AppAttach to its Node-ID is dropped silently (RFC 6940 §6.1.1): the
/// lookup ends with the live peer it found once the grace after the first
/// answer is over, not after the dead one's transaction timeout.
#[test]
fn a_stale_registration_of_a_crashed_peer_does_not_hold_the_call() {
    let mut net = Net::ring(&IDS);
    net.advance(5_000);
    let (name, sip) = register_phone(&mut net, 4);
    // The phone was served by peer 5 before, which registered it too.
    let five = net.nodes[5].node_id();
    net.nodes[5]
        .security_mut()
        .users
        .push(SimulatedSecurity::new(five, name.clone()));
    store_registration(&mut net, 5, &name);
    net.advance(1_000);
    net.crash(5);
    net.detect(5);
    net.advance(5_000);
    let mut locator = sip_usage::Locator::default();
    let started = net.now;
    let located = locate(&mut net, &mut locator, 1, &name);
    assert_eq!(
        located,
        sip_usage::Located::Found {
            peers: vec![sip],
            here: false
        }
    );
    let took = net.now - started;
    // The harness steps 500 ms when nothing moves; a transaction timeout
    // (§6.2.1: 3 s, four retransmissions) would be over 15 s.
    assert!(
        took <= sip_usage::FORK_GRACE_MS + 1_000,
        "the lookup took {took} ms, waiting for the crashed peer"
    );
    assert_eq!(locator.stats().attaches_given_up, 1);
}

/// Decision 0036: the overlay's proxy peers are found by AppAttach to
/// each; the ones that answered come back in the configuration's order,
/// and a crashed one costs the grace, not a transaction timeout.
#[test]
fn proxy_peers_are_found_in_the_configurations_order_without_waiting_for_a_dead_one() {
    let mut net = Net::ring(&IDS);
    net.advance(5_000);
    let (_, three) = register_phone(&mut net, 3);
    let (_, four) = register_phone(&mut net, 4);
    let dead = net.nodes[5].node_id();
    net.crash(5);
    net.detect(5);
    net.advance(5_000);
    let mut locator = sip_usage::Locator::default();
    let started = net.now;
    let now = net.now;
    let order = [four.node, dead, three.node];
    locator.start_peers(&mut net.nodes[1], now, &order, 7);
    let located = run_lookup(&mut net, &mut locator, 1, |_, _, _| {});
    assert_eq!(
        located,
        Some(sip_usage::Located::Found {
            peers: vec![four, three],
            here: false
        })
    );
    assert!(net.now - started <= sip_usage::FORK_GRACE_MS + 1_000);
    // Asked again: the answers are reused, and the order is kept.
    net.sent.clear();
    let reversed = [three.node, four.node];
    let now = net.now;
    locator.start_peers(&mut net.nodes[1], now, &reversed, 7);
    assert_eq!(
        locator.poll_located(),
        Some((
            7,
            sip_usage::Located::Found {
                peers: vec![three, four],
                here: false
            }
        ))
    );
    assert_eq!(app_attaches_sent(&net, 1), 0);
    // None of them alive: unreachable, not found.
    let now = net.now;
    locator.start_peers(&mut net.nodes[1], now, &[dead], 7);
    let located = run_lookup(&mut net, &mut locator, 1, |_, _, _| {});
    assert!(
        matches!(located, Some(sip_usage::Located::Unreachable(_))),
        "{located:?}"
    );
}
