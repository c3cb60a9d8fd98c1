//! The overlay core through its sans-IO interface: a few nodes wired by an
//! in-memory driver that delivers every message instantly (1 ms per hop).

use overlay::node::{BANNED_FOR_MS, OFFENCES_TO_CLOSE};
use overlay::testing::*;
use overlay::*;
use reload_wire::header::RELO_TOKEN;
use reload_wire::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A single value of the test Kind holding `v`.
fn single(v: &[u8]) -> StoredDataValue {
    StoredDataValue::SingleValue(DataValue {
        exists: true,
        value: v.to_vec(),
    })
}

/// A Fetch of the test Kind's single value under `resource`.
fn fetch_single(resource: &ResourceId) -> FetchReq {
    FetchReq {
        resource: resource.clone(),
        specifiers: vec![StoredDataSpecifier {
            kind: KIND,
            generation: 0,
            model_specifier: ModelSpecifier::SingleValue,
        }],
    }
}

#[test]
fn a_stored_value_lands_on_the_responsible_peer_and_its_two_successors() {
    let mut net = Net::ring(&IDS);
    let req = net.store_own(2, b"hello");
    let (outcome, _) = net.done(2, req);
    let Ok(Body::StoreAns(ans)) = outcome else {
        panic!("{outcome:?}")
    };
    net.advance(1_000);
    let rid = net.nodes[2].resource_id(net.users[2].as_bytes());
    let pos = u128::from_be_bytes(rid.as_bytes()[..16].try_into().unwrap());
    let mut sorted: Vec<u128> = IDS.to_vec();
    sorted.sort();
    let first = sorted.iter().position(|p| *p >= pos).unwrap_or(0);
    let want: Vec<NodeId> = (0..3).map(|k| NodeId::from_u128(sorted[(first + k) % 6])).collect();
    // §7.4.1.2: the answer lists where the data is replicated.
    assert_eq!(ans.kind_responses[0].replicas, want[1..].to_vec());
    for n in &net.nodes {
        let holds = n.storage().resource(&rid).is_some();
        assert_eq!(holds, want.contains(&n.node_id()), "node {:?}", n.node_id());
    }
}

/// §10.4: a Store that lands while the previous values are still being
/// pushed to the replicas cannot push its own (one push per replica at a
/// time); the replicas must still end with the new values, long before
/// the periodic sweep, rather than be counted as holding them.
#[test]
fn a_value_changed_while_its_replicas_are_being_pushed_reaches_them_too() {
    let mut net = Net::ring(&IDS);
    let rid = net.nodes[2].resource_id(net.users[2].as_bytes());
    let value = single;
    let now = net.now;
    let first = net.nodes[2].store(now, rid.clone(), KIND, vec![value(b"first")], 3600);
    let second = net.nodes[2].store(now + 1, rid.clone(), KIND, vec![value(b"second")], 3600);
    net.pump();
    assert!(matches!(net.done(2, first).0, Ok(Body::StoreAns(_))));
    assert!(matches!(net.done(2, second).0, Ok(Body::StoreAns(_))));
    net.advance(1_000);
    let copies: Vec<StoredDataValue> = net
        .nodes
        .iter()
        .filter_map(|n| n.storage().resource(&rid))
        .map(|r| r.export(net.now)[0].values[0].value.clone())
        .collect();
    assert_eq!(copies, vec![value(b"second"); 3], "responsible peer and both replicas");
}

/// §10.4: a replica Store that failed (here it never reached the replica,
/// so it timed out) is sent again after a second or so, not at the next
/// minute's sweep: until then the value has one copy fewer than the
/// overlay counts on.
#[test]
fn a_failed_replica_push_is_retried_within_seconds() {
    let mut net = Net::ring(&IDS);
    let rid = net.nodes[2].resource_id(net.users[2].as_bytes());
    let set = net.nodes[2].topology().replica_set(rid.as_bytes()).unwrap();
    // A replica that is not the storing node (which must hear its answer).
    let lost = *set[1..].iter().find(|n| **n != net.nodes[2].id()).unwrap();
    let replica = net.index_of(&lost).unwrap();
    net.drop_to = Some(lost);
    let now = net.now;
    let value = StoredDataValue::SingleValue(DataValue {
        exists: true,
        value: b"kept".to_vec(),
    });
    let store = net.nodes[2].store(now, rid.clone(), KIND, vec![value], 3600);
    net.pump();
    assert!(matches!(net.done(2, store).0, Ok(Body::StoreAns(_))));
    // Five transmissions, 3 s apart: the push fails at 15 s, and its
    // retry a second later is still unanswered when the replica becomes
    // reachable; a retransmission of it gets through.
    net.advance(16_000);
    assert!(net.nodes[replica].storage().resource(&rid).is_none());
    assert!(
        net.events
            .iter()
            .any(|(_, e)| matches!(e, Event::ReplicaPushFailed { to, .. } if *to == lost)),
        "the failure is reported"
    );
    net.drop_to = None;
    net.advance(3_000);
    assert!(
        net.nodes[replica].storage().resource(&rid).is_some(),
        "the replica got the value within 3 s of becoming reachable"
    );
}

/// §10.4: a replica that pushes its copy to the responsible peer holds
/// what it sent, not necessarily what the responsible peer holds. Seen on
/// a real 8-peer overlay: a replica still settling pushed back the older
/// values after a newer registration had been stored, was counted as
/// holding them, and was never sent the registration.
#[test]
fn a_replica_that_pushes_back_an_older_copy_is_still_sent_the_newer_values() {
    let mut net = Net::ring(&IDS);
    let rid = net.nodes[2].resource_id(net.users[2].as_bytes());
    let value = single;
    let now = net.now;
    let first = net.nodes[2].store(now, rid.clone(), KIND, vec![value(b"old")], 3600);
    net.pump();
    assert!(matches!(net.done(2, first).0, Ok(Body::StoreAns(_))));
    let set = net.nodes[2].topology().replica_set(rid.as_bytes()).unwrap();
    let responsible = net.index_of(&set[0]).unwrap();
    let stale = *set[1..].iter().find(|n| **n != net.nodes[2].id()).unwrap();
    let replica = net.index_of(&stale).unwrap();
    let old_copy = net.nodes[replica].storage().resource(&rid).unwrap().export(net.now);

    // The newer value's push to that replica is lost; meanwhile the
    // replica's old copy reaches the responsible peer as a replica Store.
    net.drop_to = Some(stale);
    let now = net.now + 1;
    let second = net.nodes[2].store(now, rid.clone(), KIND, vec![value(b"new")], 3600);
    net.pump();
    assert!(matches!(net.done(2, second).0, Ok(Body::StoreAns(_))));
    let push_back = Body::StoreReq(StoreReq {
        resource: rid.clone(),
        replica_number: 1,
        kind_data: old_copy,
    });
    let bytes = raw_request(&net, replica, vec![Destination::Node(set[0])], &push_back, 10);
    let now = net.now;
    net.nodes[responsible].receive(now, stale, &bytes);
    net.pump();
    assert!(
        matches!(answers_to(&net, stale).last(), Some(Body::StoreAns(_))),
        "the push-back itself is taken"
    );

    // The lost push fails after its 15 s of retransmissions; its retry a
    // second later gets through.
    net.advance(15_500);
    net.drop_to = None;
    net.advance(5_000);
    let held = net.nodes[replica].storage().resource(&rid).unwrap().export(net.now);
    assert_eq!(
        held[0].values[0].value,
        value(b"new"),
        "the replica was sent the newer value"
    );
}

/// RFC 7904 §4.2 "ask a replica": a Fetch routed past the responsible
/// peer reaches its successor, which answers from its replica copy, and
/// past that successor the second replica.
#[test]
fn a_fetch_after_the_responsible_peer_is_answered_by_each_replica_in_turn() {
    let mut net = Net::ring(&IDS);
    let req = net.store_own(2, b"hello");
    assert!(matches!(net.done(2, req).0, Ok(Body::StoreAns(_))));
    net.advance(1_000);
    let rid = net.nodes[2].resource_id(net.users[2].as_bytes());
    let ask = net.nodes[0].fetch(net.now, fetch_single(&rid));
    net.pump();
    let (outcome, responsible) = net.done_by(0, ask);
    assert!(matches!(outcome, Ok(Body::FetchAns(_))));
    let mut holder = responsible;
    let mut answered_by = vec![responsible];
    for _ in 0..2 {
        let now = net.now;
        let ask = net.nodes[0].fetch_after(now, fetch_single(&rid), &holder).unwrap();
        net.pump();
        let (outcome, responder) = net.done_by(0, ask);
        let Ok(Body::FetchAns(ans)) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(ans.kind_responses[0].values.len(), 1, "the replica's copy");
        answered_by.push(responder);
        holder = responder;
    }
    // The responsible peer and its two successors, in ring order.
    let mut sorted: Vec<u128> = IDS.to_vec();
    sorted.sort();
    let first = sorted
        .iter()
        .position(|p| NodeId::from_u128(*p) == responsible)
        .unwrap();
    let want: Vec<NodeId> = (0..3).map(|k| NodeId::from_u128(sorted[(first + k) % 6])).collect();
    assert_eq!(answered_by, want);
}

#[test]
fn a_fetch_reports_the_hops_it_took() {
    let mut net = Net::ring(&IDS);
    let req = net.store_own(0, b"v");
    assert!(net.done(0, req).0.is_ok());
    let rid = net.nodes[0].resource_id(net.users[0].as_bytes());
    for origin in 0..6 {
        let f = net.nodes[origin].fetch(net.now, fetch_single(&rid));
        net.pump();
        let (outcome, hops) = net.done(origin, f);
        let Ok(Body::FetchAns(ans)) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(ans.kind_responses[0].values.len(), 1);
        let responsible = net.nodes[origin].topology().is_responsible(rid.as_bytes());
        assert_eq!(hops == 0, responsible, "origin {origin}: {hops} hops");
        assert!(hops <= 3, "6 peers need at most 3 hops, took {hops}");
    }
}

/// §6.4.2.5: a Probe may be addressed to a Resource-ID; sent one past each
/// peer in turn, it is answered by that peer's successor, so following the
/// answers walks the ring (how `p2psip ring` sees the whole overlay).
#[test]
fn probes_one_past_each_peer_walk_the_whole_ring() {
    let mut net = Net::ring(&IDS);
    net.advance(1_000);
    let mut sorted: Vec<NodeId> = IDS.iter().map(|i| NodeId::from_u128(*i)).collect();
    sorted.sort();
    let start = net.nodes[3].node_id();
    let mut at = start;
    let mut walked = vec![start];
    for _ in 0..IDS.len() {
        let probe = Body::ProbeReq(ProbeReq {
            requested_info: vec![
                reload_wire::topology::probe_information_type::RESPONSIBLE_SET,
                reload_wire::topology::probe_information_type::NUM_RESOURCES,
                reload_wire::topology::probe_information_type::UPTIME,
            ],
        });
        let req = net.nodes[3].request(
            net.now,
            vec![Destination::Resource(overlay::ring::just_after(&at))],
            probe,
        );
        net.pump();
        let i = net
            .events
            .iter()
            .position(|(n, e)| *n == 3 && matches!(e, Event::Done { request, .. } if *request == req))
            .expect("the probe finished");
        let Event::Done { outcome, responder, .. } = net.events.remove(i).1 else {
            unreachable!()
        };
        let Ok(Body::ProbeAns(ans)) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(ans.probe_info.len(), 3, "every requested item is answered: {ans:?}");
        let k = sorted.iter().position(|n| *n == at).unwrap();
        assert_eq!(
            responder,
            sorted[(k + 1) % sorted.len()],
            "the successor of {at:?} answers"
        );
        at = responder;
        if at == start {
            break;
        }
        walked.push(at);
    }
    assert_eq!(at, start, "the walk comes back to where it began");
    walked.sort();
    assert_eq!(walked, sorted);
}

fn ping() -> Body {
    Body::PingReq(PingReq { padding: vec![] })
}

fn raw_request(net: &Net, from: usize, dest: Vec<Destination>, body: &Body, ttl: u8) -> Vec<u8> {
    let cfg = config();
    static NEXT_TID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0xfeed);
    let tid = NEXT_TID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut h = ForwardingHeader::new(cfg.overlay_hash(), tid, dest);
    h.ttl = ttl;
    let contents = MessageContents::from_body(body).unwrap();
    let sec = SimulatedSecurity::new(net.nodes[from].node_id(), net.users[from].clone());
    let m = Message {
        forwarding_header: h,
        message_contents: contents,
        security_block: SecurityBlock {
            certificates: vec![],
            signature: sec.sign(&[]),
        },
    };
    m.to_bytes().unwrap()
}

fn answers_to(net: &Net, to: NodeId) -> Vec<Body> {
    let ctx = config().decode_context().unwrap();
    net.sent
        .iter()
        .filter(|(_, t, _)| *t == to)
        .filter_map(|(_, _, b)| Message::decode(b, &ctx).ok())
        .filter(|m| !m.message_contents.message_code.is_request())
        .filter_map(|m| m.message_contents.body(&ctx).ok())
        .collect()
}

#[test]
fn garbage_from_a_link_is_counted_and_the_peer_keeps_serving() {
    let mut net = Net::ring(&IDS[..3]);
    let from = net.nodes[1].node_id();
    for junk in [&[][..], &[0xd2, 0x45], &RELO_TOKEN.to_be_bytes(), &[0xff; 300]] {
        net.nodes[0].receive(net.now, from, junk);
    }
    assert_eq!(net.nodes[0].stats().malformed, 4);
    // A well-formed message whose Ping body is truncated gets an Error back.
    let mut m = Message::decode(
        &raw_request(&net, 1, vec![Destination::Node(net.nodes[0].node_id())], &ping(), 100),
        &config().decode_context().unwrap(),
    )
    .unwrap();
    m.message_contents.message_body = vec![0, 9]; // 9 bytes of padding promised, none there
    net.sent.clear();
    net.nodes[0].receive(net.now, from, &m.to_bytes().unwrap());
    net.pump();
    assert!(answers_to(&net, from)
        .iter()
        .any(|b| matches!(b, Body::Error(e) if e.error_code == ErrorCode::INVALID_MESSAGE)));
    // Still answers a good Ping.
    let ping = raw_request(&net, 1, vec![Destination::Node(net.nodes[0].node_id())], &ping(), 100);
    net.nodes[0].receive(net.now, from, &ping);
    net.pump();
    assert!(answers_to(&net, from).iter().any(|b| matches!(b, Body::PingAns(_))));
}

/// Issue 36 §12: a linked peer that keeps sending malformed or forged
/// messages of its own is disconnected and kept out for a while; the
/// peer that only relays someone else's forgeries is not blamed.
#[test]
fn a_peer_that_keeps_sending_garbage_is_cut_off_and_kept_out() {
    let mut net = Net::ring(&IDS[..3]);
    let bad = net.nodes[1].node_id();
    let now = net.now;
    for _ in 0..OFFENCES_TO_CLOSE - 1 {
        net.nodes[0].receive(now, bad, &[0xff; 40]);
    }
    assert!(!net.nodes[0].is_banned(now, &bad), "a few are forgiven");
    // A forged request relayed through another peer (a Via entry) does
    // not count against the relay.
    let relay = net.nodes[2].node_id();
    let mut forged = Message::decode(
        &raw_request(&net, 1, vec![Destination::Node(net.nodes[0].node_id())], &ping(), 10),
        &config().decode_context().unwrap(),
    )
    .unwrap();
    forged.forwarding_header.via_list = vec![Destination::Node(bad)];
    forged.security_block.signature = Signature::anonymous();
    for _ in 0..OFFENCES_TO_CLOSE {
        net.nodes[0].receive(now, relay, &forged.to_bytes().unwrap());
    }
    assert!(!net.nodes[0].is_banned(now, &relay));
    let actions: Vec<Action> = std::iter::from_fn(|| net.nodes[0].poll_action()).collect();
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Close { peer } if *peer == relay)));
    let ctx = config().decode_context().unwrap();
    let refused = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { bytes, .. } => Message::decode(bytes, &ctx).ok(),
            _ => None,
        })
        .filter(|m| matches!(m.message_contents.body(&ctx), Ok(Body::Error(e)) if e.error_code == ErrorCode::FORBIDDEN))
        .count();
    assert_eq!(
        refused as u32, OFFENCES_TO_CLOSE,
        "each forgery was checked and refused"
    );
    // The twentieth from the peer itself closes its link.
    net.nodes[0].receive(now, bad, &[0xff; 40]);
    let actions: Vec<Action> = std::iter::from_fn(|| net.nodes[0].poll_action()).collect();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Close { peer } if *peer == bad)));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Event(e) if matches!(**e, Event::Misbehaving { peer, .. } if peer == bad))));
    // It is kept out: a new link is closed at once, until the ban ends.
    net.nodes[0].link_up(now + 1, bad);
    assert!(matches!(net.nodes[0].poll_action(), Some(Action::Close { peer }) if peer == bad));
    assert!(!net.nodes[0].is_banned(now + BANNED_FOR_MS, &bad));
}

/// RFC 6940 §6.7: a message may arrive in fragments. A peer on the way
/// forwards each fragment as it comes; only the destination reassembles,
/// then handles the whole message as if it had come in one piece.
#[test]
fn a_fragmented_request_is_forwarded_in_pieces_and_answered_whole() {
    let mut net = Net::ring(&IDS[..3]);
    let ctx = config().decode_context().unwrap();
    let from = net.nodes[1].node_id();
    let far = net.nodes[2].node_id();
    let padded = Body::PingReq(PingReq {
        padding: vec![7; 3_000],
    });
    let whole = raw_request(&net, 1, vec![Destination::Node(far)], &padded, 10);
    let pieces = reload_wire::fragment::fragment(&whole, 1_200, &ctx).unwrap();
    assert!(pieces.len() >= 3, "{} fragments", pieces.len());
    net.sent.clear();
    // Node 0 gets them from node 1, last first, and passes each on.
    for piece in pieces.iter().rev() {
        net.nodes[0].receive(net.now, from, piece);
    }
    net.pump();
    let forwarded = net.sent.iter().filter(|(f, t, _)| *f == 0 && *t == far).count();
    assert!(forwarded >= pieces.len(), "each fragment forwarded as it came");
    assert!(
        answers_to(&net, from).iter().any(|b| matches!(b, Body::PingAns(_))),
        "node 2 put the Ping together and answered it"
    );
    // Fragments of a message that never becomes whole are dropped after
    // the request lifetime, and the node keeps serving.
    let lonely = raw_request(&net, 1, vec![Destination::Node(far)], &padded, 10);
    let lonely = reload_wire::fragment::fragment(&lonely, 1_200, &ctx).unwrap();
    let zero = net.nodes[0].node_id();
    net.nodes[2].receive(net.now, zero, &lonely[0]);
    net.advance(70_000);
    net.sent.clear();
    let ping = raw_request(&net, 1, vec![Destination::Node(far)], &ping(), 10);
    net.nodes[0].receive(net.now, from, &ping);
    net.pump();
    assert!(answers_to(&net, from).iter().any(|b| matches!(b, Body::PingAns(_))));
}

#[test]
fn a_ttl_above_initial_ttl_is_ttl_exceeded() {
    // §6.3.2: "Implementations which receive messages with a TTL greater than
    // the current value of initial-ttl ... MUST discard the message and send
    // an Error_TTL_Exceeded error."
    let mut net = Net::ring(&IDS[..3]);
    let from = net.nodes[1].node_id();
    let m = raw_request(&net, 1, vec![Destination::Node(net.nodes[0].node_id())], &ping(), 101);
    net.sent.clear();
    net.nodes[0].receive(net.now, from, &m);
    net.pump();
    let errors: Vec<ErrorCode> = answers_to(&net, from)
        .into_iter()
        .filter_map(|b| match b {
            Body::Error(e) => Some(e.error_code),
            _ => None,
        })
        .collect();
    assert_eq!(errors, vec![ErrorCode::TTL_EXCEEDED]);
}

/// RFC 6940 §6.3.2.1: a request delivered to a node must carry its
/// configuration sequence; an older one gets Error_Config_Too_Old, a newer
/// one Error_Config_Too_New (compared modulo 2^16), and only a
/// ConfigUpdate with sequence 65535 is taken whatever the sequence.
#[test]
fn a_request_with_another_configuration_sequence_is_refused_with_the_right_error() {
    let mut net = Net::ring(&IDS[..3]);
    let from = net.nodes[1].node_id();
    let to = net.nodes[0].node_id();
    let errors_for = |net: &mut Net, sequence: u16, body: &Body| {
        let m = raw_request(net, 1, vec![Destination::Node(to)], body, 10);
        let mut m = Message::decode(&m, &config().decode_context().unwrap()).unwrap();
        m.forwarding_header.configuration_sequence = sequence;
        net.sent.clear();
        net.nodes[0].receive(net.now, from, &m.to_bytes().unwrap());
        net.pump();
        answers_to(net, from)
            .into_iter()
            .map(|b| match b {
                Body::Error(e) => Some(e.error_code),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // The test configuration's sequence is 0.
    assert_eq!(
        errors_for(&mut net, 0, &ping()),
        vec![None],
        "the same sequence: answered"
    );
    assert_eq!(errors_for(&mut net, 3, &ping()), vec![Some(ErrorCode::CONFIG_TOO_NEW)]);
    assert_eq!(
        errors_for(&mut net, 65_530, &ping()),
        vec![Some(ErrorCode::CONFIG_TOO_OLD)],
        "mod 2^16"
    );
    // A node whose document says 1 answers a peer that sends 0 (one that
    // does not track sequences) all the same.
    let mut cfg = (*config()).clone();
    cfg.configuration_sequence = 1;
    let ctx = Arc::new(cfg.decode_context().unwrap());
    let id = NodeId::from_u128(99 << 120);
    let (_, security) = net.user(id);
    let topology = ChordReload::new(id, cfg.chord.clone(), 16, 1);
    let mut one = OverlayNode::new(Arc::new(cfg), ctx, addr(60), topology, security, 1, net.now);
    one.start_alone(net.now);
    one.link_up(net.now, from);
    while one.poll_action().is_some() {}
    let m = raw_request(&net, 1, vec![Destination::Node(id)], &ping(), 10);
    one.receive(net.now, from, &m);
    let decode = config().decode_context().unwrap();
    let answered = std::iter::from_fn(|| one.poll_action()).any(|a| match a {
        Action::Send { bytes, .. } => {
            Message::decode(&bytes, &decode).is_ok_and(|m| m.message_contents.message_code == MessageCode::PING_ANS)
        }
        _ => false,
    });
    assert!(answered, "sequence 0 is not checked");
    let update = Body::ConfigUpdateReq(ConfigUpdateReq::Kinds(Vec::new()));
    assert!(
        !errors_for(&mut net, 65_535, &update).contains(&Some(ErrorCode::CONFIG_TOO_OLD)),
        "a ConfigUpdate with 65535 is taken"
    );
}

/// RFC 6940 §6.3.2.3: this node understands no forwarding option. One
/// marked FORWARD_CRITICAL stops a request at the first peer that would
/// forward it, DESTINATION_CRITICAL at the node that would answer it
/// (Error_Unsupported_Forwarding_Option); a RESPONSE_COPY option comes
/// back in the answer with its flags cleared; others are passed on.
#[test]
fn forwarding_options_are_honoured_as_the_rfc_says() {
    use reload_wire::header::{forwarding_flags as f, ForwardingOption};
    let mut net = Net::ring(&IDS[..3]);
    let ctx = config().decode_context().unwrap();
    let from = net.nodes[1].node_id();
    let far = net.nodes[2].node_id();
    let ask = |net: &mut Net, to: NodeId, flags: u8| {
        let m = raw_request(net, 1, vec![Destination::Node(to)], &ping(), 10);
        let mut m = Message::decode(&m, &ctx).unwrap();
        m.forwarding_header.options = vec![ForwardingOption {
            option_type: 99,
            flags,
            option: vec![7],
        }];
        net.sent.clear();
        net.nodes[0].receive(net.now, from, &m.to_bytes().unwrap());
        net.pump();
        net.sent
            .iter()
            .filter(|(_, t, _)| *t == from)
            .filter_map(|(_, _, b)| Message::decode(b, &ctx).ok())
            .filter(|m| !m.message_contents.message_code.is_request())
            .map(|m| (m.message_contents.body(&ctx).unwrap(), m.forwarding_header.options))
            .collect::<Vec<_>>()
    };
    let refused = |answers: &[(Body, Vec<ForwardingOption>)]| matches!(answers, [(Body::Error(e), _)] if e.error_code == ErrorCode::UNSUPPORTED_FORWARDING_OPTION);
    // Node 0 forwards to node 2: FORWARD_CRITICAL stops it there.
    assert!(refused(&ask(&mut net, far, f::FORWARD_CRITICAL)));
    // Node 0 answers itself: DESTINATION_CRITICAL stops it.
    let me = net.nodes[0].node_id();
    assert!(refused(&ask(&mut net, me, f::DESTINATION_CRITICAL)));
    // DESTINATION_CRITICAL is no concern of a node that only forwards.
    let answers = ask(&mut net, far, f::DESTINATION_CRITICAL);
    assert!(refused(&answers), "node 2 refuses it: {answers:?}");
    // RESPONSE_COPY: the answer carries the option back, flags cleared.
    let answers = ask(&mut net, me, f::RESPONSE_COPY);
    assert!(matches!(answers[0].0, Body::PingAns(_)));
    assert_eq!(
        answers[0].1,
        vec![ForwardingOption {
            option_type: 99,
            flags: 0,
            option: vec![7]
        }]
    );
}

#[test]
fn a_ttl_of_zero_is_not_forwarded() {
    // §6.3.2: TTL 0 and not for us: not propagated, Error_TTL_Exceeded.
    let mut net = Net::ring(&IDS[..4]);
    let from = net.nodes[1].node_id();
    let far = net.nodes[3].node_id();
    let m = raw_request(
        &net,
        1,
        vec![Destination::Node(NodeId::from_u128(far_point(&far)))],
        &ping(),
        0,
    );
    net.sent.clear();
    let forwarded = net.nodes[0].stats().forwarded;
    net.nodes[0].receive(net.now, from, &m);
    net.pump();
    assert!(answers_to(&net, from)
        .iter()
        .any(|b| matches!(b, Body::Error(e) if e.error_code == ErrorCode::TTL_EXCEEDED)));
    assert_eq!(net.nodes[0].stats().forwarded, forwarded);
}

fn far_point(id: &NodeId) -> u128 {
    u128::from_be_bytes(id.as_bytes()[..16].try_into().unwrap()) - 1
}

#[test]
fn a_duplicate_destination_list_is_an_invalid_message() {
    // §13.6.5: "check the Destination List for duplicate entries and discard
    // such records with an Error_Invalid_Message error".
    let mut net = Net::ring(&IDS[..3]);
    let from = net.nodes[1].node_id();
    let x = Destination::Node(net.nodes[2].node_id());
    let m = raw_request(&net, 1, vec![x.clone(), x], &ping(), 100);
    net.sent.clear();
    net.nodes[0].receive(net.now, from, &m);
    net.pump();
    assert!(answers_to(&net, from)
        .iter()
        .any(|b| matches!(b, Body::Error(e) if e.error_code == ErrorCode::INVALID_MESSAGE)));
}

#[test]
fn a_relayed_message_loses_this_peers_entry_and_gains_the_previous_hop() {
    // §6.1.2 and §6.3.2: the forwarding peer removes its own first entry,
    // appends the peer it received from to the Via List and decrements the
    // TTL; everything after the header goes on as it came.
    let mut net = Net::ring(&IDS[..3]);
    let (a, b, c) = (net.nodes[1].node_id(), net.nodes[0].node_id(), net.nodes[2].node_id());
    let m = raw_request(&net, 1, vec![Destination::Node(b), Destination::Node(c)], &ping(), 9);
    let ctx = config().decode_context().unwrap();
    let (sent_header, sent_payload) = ForwardingHeader::split(&m, &ctx).unwrap();
    net.sent.clear();
    let forwarded = net.nodes[0].stats().forwarded;
    net.nodes[0].receive(net.now, a, &m);
    net.pump();
    let relayed = net.sent.iter().find(|(from, to, _)| *from == 0 && *to == c).unwrap();
    let (header, payload) = ForwardingHeader::split(&relayed.2, &ctx).unwrap();
    assert_eq!(header.destination_list, vec![Destination::Node(c)]);
    assert_eq!(header.via_list, vec![Destination::Node(a)]);
    assert_eq!(header.ttl, 8);
    assert_eq!(header.transaction_id, sent_header.transaction_id);
    assert_eq!(payload, sent_payload);
    // Once there; the answer a second time on its way back.
    assert_eq!(net.nodes[0].stats().forwarded, forwarded + 2);
    // The answer comes back along the Via List, through the same peer.
    assert!(answers_to(&net, a).iter().any(|b| matches!(b, Body::PingAns(_))));
}

#[test]
fn an_unanswered_request_is_sent_five_times_then_times_out() {
    // §6.2.1: retransmit with the same transaction id up to 4 times; after
    // the timer of the fifth transmission the request has failed.
    let mut net = Net::ring(&IDS[..3]);
    let target = net.nodes[2].node_id();
    net.drop_to = Some(target);
    net.sent.clear();
    let req = net.nodes[1].request(net.now, vec![Destination::Node(target)], ping());
    net.pump();
    let start = net.now;
    net.advance(14_900);
    assert!(!net.events.iter().any(|(_, e)| matches!(e, Event::Done { .. })));
    net.advance(200);
    let (outcome, _) = net.done(1, req);
    assert_eq!(outcome, Err(RequestFailure::Timeout));
    let ctx = config().decode_context().unwrap();
    let tids: Vec<u64> = net
        .sent
        .iter()
        .filter(|(from, to, _)| *from == 1 && *to == target)
        .filter_map(|(_, _, b)| Message::decode(b, &ctx).ok())
        .filter(|m| m.message_contents.message_code == MessageCode::PING_REQ)
        .map(|m| m.forwarding_header.transaction_id)
        .collect();
    assert_eq!(tids.len(), 5, "{tids:?}");
    assert!(tids.iter().all(|t| *t == tids[0]));
    assert!(net.now - start >= 15_000);
}

/// RFC 6940 §6.6.5: a link asks for a keepalive; the engine sends one
/// Ping over that very link to the neighbour, which answers it. A lost
/// keepalive is not retransmitted (the link judges the peer by the ACK)
/// and fails nothing; a peer the engine has no link to gets none.
#[test]
fn a_keepalive_is_one_ping_over_the_link_answered_by_the_neighbour() {
    let mut net = Net::ring(&IDS[..3]);
    let ctx = config().decode_context().unwrap();
    let neighbour = net.nodes[2].node_id();
    let pings = |net: &Net, code: MessageCode| {
        net.sent
            .iter()
            .filter_map(|(from, to, b)| Message::decode(b, &ctx).ok().map(|m| (*from, *to, m)))
            .filter(|(_, _, m)| m.message_contents.message_code == code)
            .map(|(from, to, _)| (from, to))
            .collect::<Vec<_>>()
    };
    net.sent.clear();
    net.nodes[1].keepalive(net.now, neighbour);
    net.pump();
    assert_eq!(pings(&net, MessageCode::PING_REQ), vec![(1, neighbour)]);
    assert_eq!(pings(&net, MessageCode::PING_ANS), vec![(2, net.nodes[1].node_id())]);

    net.drop_to = Some(neighbour);
    net.sent.clear();
    let timeouts = net.nodes[1].stats().timeouts;
    net.nodes[1].keepalive(net.now, neighbour);
    net.pump();
    net.advance(20_000);
    assert_eq!(pings(&net, MessageCode::PING_REQ), vec![(1, neighbour)], "sent once");
    assert_eq!(net.nodes[1].stats().timeouts, timeouts);
    assert!(!net.events.iter().any(|(_, e)| matches!(e, Event::Done { .. })));

    net.drop_to = None;
    net.nodes[1].link_down(net.now, neighbour);
    net.pump();
    net.sent.clear();
    net.nodes[1].keepalive(net.now, neighbour);
    net.pump();
    assert!(pings(&net, MessageCode::PING_REQ).is_empty(), "no link, no keepalive");
}

/// RFC 6940 §6.6.5: a peer that stops acknowledging (a stopped process)
/// is taken out of every routing table; its neighbours close the ring
/// without it and its successor answers for its values. When it
/// acknowledges again its links resume and it is back in the ring,
/// though it saw no time pass and sends nothing of its own accord.
#[test]
fn a_peer_silent_for_a_while_is_routed_around_then_taken_back() {
    let mut net = Net::ring(&IDS);
    net.advance(2_000);
    let frozen = 3;
    let id = net.nodes[frozen].node_id();
    let rid = net.nodes[frozen].resource_id(net.users[frozen].as_bytes());
    let req = net.store_own(frozen, b"kept");
    assert!(matches!(net.done(frozen, req).0, Ok(Body::StoreAns(_))));
    net.crash(frozen);
    let now = net.now;
    for j in (0..net.nodes.len()).filter(|j| *j != frozen) {
        net.nodes[j].link_silent(now, id);
    }
    net.pump();
    net.advance(5_000);
    for (i, n) in net.nodes.iter().enumerate().filter(|(i, _)| *i != frozen) {
        assert!(!n.topology().neighbors().contains(&id), "node {i} still lists it");
    }
    assert_eq!(
        net.nodes[2].topology().successors().first(),
        Some(&net.nodes[4].node_id())
    );
    let fetch = net.nodes[0].fetch(net.now, fetch_single(&rid));
    net.pump();
    let (outcome, responder) = net.done_by(0, fetch);
    assert!(matches!(outcome, Ok(Body::FetchAns(_))), "{outcome:?}");
    assert_ne!(responder, id, "a replica answers");

    net.silent.clear();
    let now = net.now;
    for j in (0..net.nodes.len()).filter(|j| *j != frozen) {
        net.nodes[j].link_resumed(now, id);
    }
    net.pump();
    net.advance(1_000);
    assert_eq!(net.nodes[2].topology().successors().first(), Some(&id));
    assert_eq!(net.nodes[4].topology().predecessors().first(), Some(&id));
    let fetch = net.nodes[0].fetch(net.now, fetch_single(&rid));
    net.pump();
    let (outcome, _) = net.done_by(0, fetch);
    assert!(matches!(outcome, Ok(Body::FetchAns(_))), "{outcome:?}");
}

/// One process answers every Ping with the same `response_id`, another
/// process with another (RFC 6940 §6.5.3 only asks it to be random): what
/// tells two processes presenting one Node-ID apart.
#[test]
fn every_ping_of_one_node_is_answered_with_its_instance_id() {
    let mut net = Net::ring(&IDS[..3]);
    let mut ids = Vec::new();
    for target in [1, 1, 2] {
        let to = net.nodes[target].node_id();
        let req = net.nodes[0].request(net.now, vec![Destination::Node(to)], ping());
        net.pump();
        match net.done(0, req).0 {
            Ok(Body::PingAns(a)) => ids.push(a.response_id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0], net.nodes[1].instance_id());
    assert_ne!(ids[0], ids[2], "another node, another id");
}

/// A Ping whose bytes the driver writes on a connection of its choice:
/// the engine sends nothing itself, matches the answer, and gives up
/// after one reliability timer instead of retransmitting.
#[test]
fn a_direct_ping_is_answered_or_times_out_without_retransmission() {
    let mut net = Net::ring(&IDS[..2]);
    let (a, b) = (net.nodes[0].node_id(), net.nodes[1].node_id());
    let (id, bytes) = net.nodes[0].direct_ping(net.now, b).unwrap();
    assert!(net.nodes[0].poll_action().is_none());
    net.nodes[1].receive(net.now, a, &bytes);
    net.pump();
    match net.done(0, id).0 {
        Ok(Body::PingAns(p)) => assert_eq!(p.response_id, net.nodes[1].instance_id()),
        other => panic!("{other:?}"),
    }
    let (id, _lost) = net.nodes[0].direct_ping(net.now, b).unwrap();
    net.sent.clear();
    net.advance(3_100);
    assert_eq!(net.done(0, id).0, Err(RequestFailure::Timeout));
    let ctx = config().decode_context().unwrap();
    let pings = net
        .sent
        .iter()
        .filter(|(from, _, _)| *from == 0)
        .filter_map(|(_, _, m)| Message::decode(m, &ctx).ok())
        .filter(|m| m.message_contents.message_code == MessageCode::PING_REQ)
        .count();
    assert_eq!(pings, 0, "not retransmitted");
}

/// A request the driver refuses (it came over a link it will not keep)
/// is answered with an Error and nothing else; a joining node that is
/// refused this way says so in an event, with the reason.
#[test]
fn a_refused_join_is_reported_with_its_reason() {
    let mut net = Net::ring(&IDS[..2]);
    let cfg = config();
    let ctx = Arc::new(cfg.decode_context().unwrap());
    let id = NodeId::from_u128(90 << 120);
    let (_, security) = net.user(id);
    let topology = ChordReload::new(id, cfg.chord.clone(), 16, 77);
    let mut joiner = OverlayNode::new(cfg, ctx, addr(50), topology, security, 77, net.now);
    joiner.join(net.now, vec![addr(0)]);
    let now = net.now;
    let peer0 = net.nodes[0].node_id();
    let mut refused = Vec::new();
    for _ in 0..10 {
        while let Some(action) = joiner.poll_action() {
            match action {
                Action::Connect { peer: None, .. } => {
                    net.nodes[0].link_up(now, id);
                    joiner.bootstrap_link_up(now, peer0);
                }
                Action::Send { to, bytes, .. } if to == peer0 => {
                    let refusal = net.nodes[0].refuse(id, &bytes, ErrorCode::FORBIDDEN, "Node-ID in use at 192.0.2.1");
                    assert!(
                        net.nodes[0].poll_action().is_none(),
                        "the driver writes it, not the engine"
                    );
                    if let Some(answer) = refusal {
                        joiner.receive(now, peer0, &answer);
                    }
                }
                Action::Event(e) => refused.push(*e),
                _ => {}
            }
        }
    }
    assert!(
        refused.contains(&Event::Refused {
            by: peer0,
            info: "Node-ID in use at 192.0.2.1".into()
        }),
        "{refused:?}"
    );
    assert!(!joiner.is_joined());
}

/// A client (§4.2.1) whose link falls silent and resumes stays a link its
/// peer serves: it never enters the routing table.
#[test]
fn a_client_that_resumes_stays_out_of_the_routing_table() {
    let mut net = Net::ring(&IDS[..3]);
    let c = net.add_client(0x77 << 120, 0);
    let client = net.clients[c].node_id();
    let peer = (0..3)
        .find(|i| net.nodes[*i].links().any(|l| *l == client))
        .expect("a peer serves the client");
    assert!(!net.nodes[peer].topology().routes_through(&client));
    let now = net.now;
    net.nodes[peer].link_silent(now, client);
    net.nodes[peer].link_resumed(now, client);
    net.pump();
    assert!(!net.nodes[peer].topology().routes_through(&client));
    assert!(!net.nodes[peer].topology().neighbors().contains(&client));
}

#[test]
fn a_retransmitted_store_gets_the_same_answer() {
    // §6.2.1: "Receiving nodes MUST generate semantically equivalent
    // responses to retransmissions of the same request".
    let mut net = Net::ring(&IDS[..3]);
    let req = net.store_own(1, b"once");
    let first = net.done(1, req).0;
    assert!(matches!(first, Ok(Body::StoreAns(_))));
    // Replay the exact StoreReq bytes that reached a peer.
    let ctx = config().decode_context().unwrap();
    let (to, bytes) = net
        .sent
        .iter()
        .find_map(|(from, to, b)| {
            let m = Message::decode(b, &ctx).ok()?;
            (*from == 1 && m.message_contents.message_code == MessageCode::STORE_REQ).then(|| (*to, b.clone()))
        })
        .unwrap();
    let j = net.index_of(&to).unwrap();
    let from = net.nodes[1].node_id();
    net.sent.clear();
    net.nodes[j].receive(net.now, from, &bytes);
    net.pump();
    let again = answers_to(&net, from);
    assert!(again.iter().any(|b| matches!(b, Body::StoreAns(_))), "{again:?}");
    assert!(!again.iter().any(|b| matches!(b, Body::Error(_))));
}

/// When the others leave one by one, the last peer is the ring: it stays
/// joined, owns the whole ring and keeps every value, rather than looking
/// for a bootstrap peer as a peer cut off by failures would.
#[test]
fn the_last_peer_after_graceful_leaves_is_the_ring() {
    let mut net = Net::ring(&IDS[..3]);
    for i in 0..3 {
        let req = net.store_own(i, b"x");
        assert!(net.done(i, req).0.is_ok());
    }
    net.advance(2_000);
    for leaver in [2, 1] {
        net.nodes[leaver].leave(net.now);
        net.pump();
        net.advance(5_000);
        assert!(net.events.iter().any(|(n, e)| *n == leaver && *e == Event::Left));
    }
    assert!(
        !net.events
            .iter()
            .any(|(n, e)| *n == 0 && matches!(e, Event::Rejoining { .. })),
        "the last peer does not rejoin"
    );
    let last = &net.nodes[0];
    assert!(last.is_joined());
    assert!(last.topology().neighbors().is_empty());
    for i in 0..3 {
        let rid = last.resource_id(net.users[i].as_bytes());
        assert!(last.topology().is_responsible(rid.as_bytes()));
        assert!(last.storage().resource(&rid).is_some(), "value of user {i} kept");
    }
}

#[test]
fn a_graceful_leave_hands_data_over_and_the_ring_closes() {
    let mut net = Net::ring(&IDS);
    let mut reqs = BTreeMap::new();
    for i in 0..6 {
        reqs.insert(i, net.store_own(i, b"x"));
    }
    net.advance(2_000);
    let leaver = 3;
    net.nodes[leaver].leave(net.now);
    net.pump();
    net.advance(5_000);
    assert!(net.events.iter().any(|(n, e)| *n == leaver && *e == Event::Left));
    let gone = net.nodes[leaver].node_id();
    for (i, n) in net.nodes.iter().enumerate() {
        if i != leaver {
            assert!(
                !n.topology().neighbors().contains(&gone),
                "node {i} still lists the leaver"
            );
        }
    }
    // Every value still has three holders among the remaining five.
    for i in 0..6 {
        let rid = net.nodes[i].resource_id(net.users[i].as_bytes());
        let holders = (0..6)
            .filter(|j| *j != leaver && net.nodes[*j].storage().resource(&rid).is_some())
            .count();
        assert_eq!(holders, 3, "value of user {i}");
    }
}

/// A message still in flight to a peer that has left finds its routing
/// table but none of its links: it is dropped and counted, never sent on
/// a link that is gone (the daemon's write would fail; RFC 6940 §6.1.2
/// forwards only over the Connection Table).
#[test]
fn a_peer_that_has_left_sends_nothing_on_the_links_it_closed() {
    let mut net = Net::ring(&IDS);
    let leaver = 3;
    net.nodes[leaver].leave(net.now);
    net.pump();
    net.advance(5_000);
    assert!(net.events.iter().any(|(n, e)| *n == leaver && *e == Event::Left));
    // For a Resource-ID the leaver's stale table routes towards peer 0.
    let target = ResourceId(net.nodes[0].node_id().as_bytes().to_vec());
    let request = raw_request(&net, 2, vec![Destination::Resource(target)], &ping(), 100);
    net.sent.clear();
    let from = net.nodes[2].node_id();
    net.nodes[leaver].receive(net.now, from, &request);
    net.pump();
    assert!(
        net.sent.iter().all(|(i, _, _)| *i != leaver),
        "the leaver sent on a closed link"
    );
    assert_eq!(net.nodes[leaver].stats().unroutable, 1);
}

/// The leaver's successors confirm its data, then crash unnoticed while it
/// waits for an unanswered push; the leave goes on to say goodbye, and
/// only then are the crashes noticed. The leaver hands the data to its
/// first live successor and, though its Leaves are all answered or timed
/// out first, exits only once that peer took it (and says so once),
/// rather than leaving with the last copy.
#[test]
fn a_leave_rehands_data_whose_holders_crash_before_it_exits() {
    // The leaver's three successors and three predecessors are six
    // different peers, and one more follows.
    let ids: Vec<u128> = [1u128, 3, 5, 70, 100, 140, 170, 200].iter().map(|i| i << 120).collect();
    let mut net = Net::ring(&ids);
    let req = net.store_own(0, b"x");
    assert!(net.done(0, req).0.is_ok());
    net.advance(2_000);
    let rid = net.nodes[0].resource_id(net.users[0].as_bytes());
    let leaver = (0..ids.len())
        .find(|i| net.nodes[*i].topology().is_responsible(rid.as_bytes()))
        .unwrap();
    let after = |k: usize| (leaver + k) % ids.len();
    let (s1, s2, s3, s4) = (after(1), after(2), after(3), after(4));
    let holds = |net: &Net, i: usize| net.nodes[i].storage().resource(&rid).is_some();
    let lefts = |net: &Net| {
        net.events
            .iter()
            .filter(|(n, e)| *n == leaver && *e == Event::Left)
            .count()
    };
    assert!(holds(&net, s1) && holds(&net, s2) && !holds(&net, s4));

    // t = 0: the hand-over's push to s3 goes unanswered for a request
    // lifetime (15 s); s1 and s2 confirm theirs, then crash unnoticed just
    // before it times out. At 15 s the leaver sends its Leaves; those to
    // s1, s2 and s3 go unanswered until 30 s.
    net.crash(s3);
    net.nodes[leaver].leave(net.now);
    net.pump();
    net.advance(14_000);
    net.crash(s1);
    net.crash(s2);
    // t = 20 s: the crashes are noticed. The push to s4 that follows is
    // lost until 31 s, so it is still in flight when the Leaves are done.
    net.advance(6_000);
    net.drop_to = Some(net.nodes[s4].node_id());
    for dead in [s1, s2, s3] {
        net.detect(dead);
    }
    net.advance(11_000);
    assert_eq!(lefts(&net), 0, "no exit while the push to s4 is unanswered");
    net.drop_to = None;
    net.advance(30_000);
    assert_eq!(lefts(&net), 1, "one Left, once s4 answered");
    assert!(holds(&net, s4), "the value reached the leaver's first live successor");
}

fn observations(node: &mut Node) -> Vec<Observation> {
    std::iter::from_fn(|| node.poll_observation()).collect()
}

/// What `/metrics` counts: off by default (the simulator pays nothing);
/// once on, the origin sees its request complete with the responder's
/// verdict, the responder sees the request and its own answer, and a
/// refused Store is one error on both sides.
#[test]
fn observations_record_requests_answers_and_refusals_once_turned_on() {
    let mut net = Net::ring(&IDS);
    net.advance(5_000);
    let req = net.store_own(1, b"unobserved");
    assert!(net.done(1, req).0.is_ok());
    assert!(net.nodes.iter_mut().all(|n| n.poll_observation().is_none()));

    for n in &mut net.nodes {
        n.observe(true);
    }
    let rid = net.nodes[1].resource_id(net.users[1].as_bytes());
    let responsible = (0..6)
        .find(|i| net.nodes[*i].topology().is_responsible(rid.as_bytes()))
        .unwrap();
    let stranger = (0..6).find(|i| *i != responsible && *i != 1).unwrap();
    // USER-MATCH: only user 1 may store under user 1's Resource-ID.
    for (origin, verdict) in [(1, None), (stranger, Some(ErrorCode::FORBIDDEN))] {
        let v = StoredDataValue::SingleValue(DataValue {
            exists: true,
            value: format!("from {origin}").into_bytes(),
        });
        let req = net.nodes[origin].store(net.now, rid.clone(), KIND, vec![v], 60);
        net.pump();
        assert_eq!(net.done(origin, req).0.is_err(), verdict.is_some());

        let seen = observations(&mut net.nodes[origin]);
        let completed: Vec<CompletedResult> = seen
            .iter()
            .filter_map(|o| match o {
                Observation::Completed {
                    request: MessageCode::STORE_REQ,
                    result,
                    ..
                } => Some(*result),
                _ => None,
            })
            .collect();
        let want = verdict.map_or(CompletedResult::Success, CompletedResult::Error);
        assert_eq!(completed, vec![want], "origin {origin}");
        let answer = if verdict.is_some() {
            MessageCode::ERROR
        } else {
            MessageCode::STORE_ANS
        };
        assert!(seen.contains(&Observation::Received { code: answer }));

        let seen = if origin == responsible {
            seen
        } else {
            observations(&mut net.nodes[responsible])
        };
        assert!(seen.contains(&Observation::Received {
            code: MessageCode::STORE_REQ
        }));
        let answered: Vec<&Observation> = seen
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Observation::Answered {
                        request: MessageCode::STORE_REQ,
                        ..
                    }
                )
            })
            .collect();
        let want = Observation::Answered {
            request: MessageCode::STORE_REQ,
            error: verdict,
        };
        assert_eq!(answered, vec![&want], "origin {origin}");
        for n in &mut net.nodes {
            observations(n);
        }
    }
}

/// §4.2.1, first option: a client Attaches to the peer responsible for its
/// Node-ID and uses only that link. It stores and fetches like a peer, is
/// reachable at its Node-ID, never enters anyone's routing table, and
/// follows the responsibility for its Node-ID to a peer that joins.
#[test]
fn a_client_uses_the_overlay_through_its_responsible_peer_and_follows_it() {
    let mut net = Net::ring(&IDS);
    net.advance(5_000);
    // 100 << 120 lies between peers 70 << 120 and 140 << 120 (index 4).
    let client_id = NodeId::from_u128(100 << 120);
    let c = net.add_client(100 << 120, 0);
    net.advance(1_000);
    let client = &net.clients[c];
    assert!(client.is_joined());
    assert_eq!(client.topology().attached_peer(), Some(net.nodes[4].node_id()));
    assert_eq!(
        client.links().copied().collect::<Vec<_>>(),
        vec![net.nodes[4].node_id()]
    );
    for n in &net.nodes {
        assert!(
            !n.topology().neighbors().contains(&client_id),
            "a client is no neighbour"
        );
        assert!(!n.topology().fingers().contains(&client_id), "a client is no finger");
    }

    // Store and Fetch through the overlay; the client holds nothing.
    let user = net.nodes.len() + c;
    let rid = net.clients[c].resource_id(net.users[user].as_bytes());
    let v = StoredDataValue::SingleValue(DataValue {
        exists: true,
        value: b"from a client".to_vec(),
    });
    let req = net.clients[c].store(net.now, rid.clone(), KIND, vec![v], 600);
    net.pump();
    let client_index = net.nodes.len() + c;
    assert!(net.done(client_index, req).0.is_ok());
    let req = net.clients[c].fetch(net.now, fetch_single(&rid));
    net.pump();
    let Ok(Body::FetchAns(ans)) = net.done(client_index, req).0 else {
        panic!("fetch failed")
    };
    assert_eq!(
        ans.kind_responses[0].values[0].value,
        StoredDataValue::SingleValue(DataValue {
            exists: true,
            value: b"from a client".to_vec(),
        })
    );
    assert_eq!(net.clients[c].storage().resource_count(), 0);

    // Any peer reaches the client at its Node-ID.
    let ping = |net: &mut Net, from: usize| {
        let req = net.nodes[from].request(net.now, vec![Destination::Node(client_id)], ping());
        net.pump();
        net.advance(10_000);
        let (outcome, _) = net.done(from, req);
        outcome
    };
    assert!(matches!(ping(&mut net, 1), Ok(Body::PingAns(_))));

    // A peer joins between 100 and 140: it becomes responsible for the
    // client's Node-ID, and within one re-check the client moves there.
    let newcomer = net.add_peer(120 << 120);
    net.advance(overlay::topology::client::RECHECK_MS + 5_000);
    let c_now = &net.clients[c];
    assert_eq!(c_now.topology().attached_peer(), Some(net.nodes[newcomer].node_id()));
    assert_eq!(c_now.links().count(), 1, "the old link is closed");
    assert!(matches!(ping(&mut net, 1), Ok(Body::PingAns(_))));
}

/// In rings of two and three peers every peer holds every value: the
/// peer two after the responsible one knows the ring wraps back to it and
/// takes the replica Store (it used to refuse it as Forbidden).
#[test]
fn in_rings_smaller_than_the_replica_set_every_peer_holds_every_value() {
    for ids in [&IDS[..2], &IDS[..3]] {
        let mut net = Net::ring(ids);
        net.advance(5_000);
        for i in 0..ids.len() {
            let req = net.store_own(i, b"hello");
            assert!(net.done(i, req).0.is_ok());
        }
        net.advance(1_000);
        for n in &net.nodes {
            assert_eq!(n.storage().resource_count(), ids.len(), "node {:?}", n.node_id());
            assert_eq!(n.stats().errors_sent, 0, "no refusals");
        }
    }
}

/// RFC 6940 §10.7.4.4 through the core: every peer that joined through a
/// bootstrap address dials it again now and then and sends a Ping for its
/// own ID routed through the peer there. In one ring that Ping comes back
/// to the sender, so nobody Attaches to anyone and no partition is found.
#[test]
fn partition_checks_ping_our_own_id_through_the_bootstrap_peer_and_find_one_ring() {
    let mut net = Net::ring(&[100, 200, 300]);
    net.sent.clear();
    let every = config().chord.partition_check_interval_ms;
    net.advance(every * 3 / 2);
    let ctx = config().decode_context().unwrap();
    let bootstrap = net.nodes[0].node_id();
    for i in 1..3 {
        let me = net.nodes[i].node_id();
        let through_bootstrap = vec![
            Destination::Node(bootstrap),
            Destination::Resource(ResourceId(me.as_bytes().to_vec())),
        ];
        let probes = net
            .sent
            .iter()
            .filter(|(from, _, bytes)| {
                *from == i
                    && ForwardingHeader::split(bytes, &ctx).is_ok_and(|(h, _)| h.destination_list == through_bootstrap)
            })
            .count();
        assert!(probes >= 1, "node {i} checked for a partition");
        assert_eq!(net.nodes[i].topology().partitions_found(), 0, "one ring");
        assert!(
            net.nodes[i].links().any(|l| *l == bootstrap),
            "node {i} keeps its link to the bootstrap peer, a neighbour from before the check"
        );
    }
}

/// [`SimulatedSecurity`] that counts the signatures it makes.
struct CountingSecurity {
    inner: SimulatedSecurity,
    signed: Arc<std::sync::atomic::AtomicUsize>,
}

impl Signer for CountingSecurity {
    fn identity(&self) -> SignerIdentity {
        self.inner.identity()
    }
    fn certificates(&self) -> Vec<GenericCertificate> {
        self.inner.certificates()
    }
    fn sign(&self, input: &[u8]) -> Signature {
        self.signed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.sign(input)
    }
}

impl Security for CountingSecurity {
    fn own_credential(&self, user: Option<&str>) -> Result<Credential, SecurityError> {
        self.inner.own_credential(user)
    }
    fn verify(
        &self,
        input: &[u8],
        signature: &Signature,
        certificates: &[GenericCertificate],
    ) -> Result<Credential, SecurityError> {
        self.inner.verify(input, signature, certificates)
    }
    fn needs_signature_input(&self) -> bool {
        self.inner.needs_signature_input()
    }
}

/// §6.3.4 signs messages so that the nodes they cross and reach can tell
/// who sent them. A request a node delivers to itself, and its answer,
/// cross and reach nobody else: they go unsigned. The stored value is
/// still signed (§7.4.1.1), as replicas and fetchers check it.
#[test]
fn a_node_signs_the_values_it_stores_but_not_the_requests_it_sends_itself() {
    let cfg = config();
    let ctx = Arc::new(cfg.decode_context().unwrap());
    let id = NodeId::from_u128(7 << 120);
    let user = "solo@engine.test.invalid";
    let signed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let security = CountingSecurity {
        inner: SimulatedSecurity::new(id, user),
        signed: signed.clone(),
    };
    let topology = ChordReload::new(id, cfg.chord.clone(), 16, 1);
    let mut node = OverlayNode::new(cfg, ctx, addr(0), topology, security, 1, T0);
    node.start_alone(T0);
    let mut outcomes = Vec::new();
    let drain = |node: &mut OverlayNode<ChordReload, CountingSecurity>, outcomes: &mut Vec<_>| {
        while let Some(action) = node.poll_action() {
            match action {
                Action::Event(e) => {
                    if let Event::Done { outcome, hops, .. } = *e {
                        outcomes.push((outcome, hops));
                    }
                }
                Action::Send { .. } => panic!("a node alone sent {action:?}"),
                _ => {}
            }
        }
    };
    drain(&mut node, &mut outcomes);
    outcomes.clear();
    let before = signed.load(std::sync::atomic::Ordering::Relaxed);

    let rid = node.resource_id(user.as_bytes());
    let value = StoredDataValue::SingleValue(DataValue {
        exists: true,
        value: b"hello".to_vec(),
    });
    node.store(T0 + 1, rid.clone(), KIND, vec![value], 3600);
    drain(&mut node, &mut outcomes);
    assert!(
        matches!(outcomes.as_slice(), [(Ok(Body::StoreAns(_)), 0)]),
        "{outcomes:?}"
    );
    assert_eq!(
        signed.load(std::sync::atomic::Ordering::Relaxed) - before,
        1,
        "only the stored value is signed"
    );

    outcomes.clear();
    node.fetch(T0 + 2, fetch_single(&rid));
    drain(&mut node, &mut outcomes);
    let [(Ok(Body::FetchAns(ans)), 0)] = outcomes.as_slice() else {
        panic!("{outcomes:?}")
    };
    let StoredDataValue::SingleValue(got) = &ans.kind_responses[0].values[0].value else {
        panic!("{ans:?}")
    };
    assert_eq!(got.value, b"hello");
    // The value came back with its signature, which the node made.
    assert_eq!(ans.kind_responses[0].values[0].signature.identity, node_identity(id));
    assert_eq!(
        signed.load(std::sync::atomic::Ordering::Relaxed) - before,
        1,
        "the Fetch and its answer went unsigned"
    );
}

fn node_identity(id: NodeId) -> SignerIdentity {
    SimulatedSecurity::new(id, "").identity()
}

/// A node that loses the overlay again and again right after reaching
/// it (its bootstrap peer drops the link at once, as when a second
/// process with its Node-ID is linked there) does not rejoin in a tight
/// loop: the first rejoin is immediate, the next ones wait 1 s, 2 s, 4 s…
#[test]
fn a_node_that_keeps_losing_the_overlay_backs_off() {
    assert_eq!(
        (0..9).map(overlay::node::rejoin_delay_ms).collect::<Vec<_>>(),
        [0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
    );
    let cfg = config();
    let ctx = Arc::new(cfg.decode_context().unwrap());
    let me = NodeId::from_u128(7 << 120);
    let bootstrap = NodeId::from_u128(9 << 120);
    let topology = ChordReload::new(me, cfg.chord.clone(), 16, 1);
    let security = SimulatedSecurity::new(me, "me@engine.test.invalid");
    let mut node = OverlayNode::new(cfg, ctx, addr(0), topology, security, 1, T0);
    node.join(T0, vec![addr(1)]);
    let mut now = T0;
    let mut dials = Vec::new();
    let mut delays = Vec::new();
    // Each time the node dials its bootstrap address, the link comes up
    // and is dropped at once.
    while now < T0 + 40_000 {
        let mut dialled = false;
        while let Some(action) = node.poll_action() {
            match action {
                Action::Connect { peer: None, .. } => dialled = true,
                Action::Event(e) => {
                    if let Event::Rejoining { after_ms } = *e {
                        delays.push(after_ms);
                    }
                }
                _ => {}
            }
        }
        if dialled {
            dials.push(now - T0);
            node.bootstrap_link_up(now, bootstrap);
            node.link_down(now + 1, bootstrap);
            now += 1;
            continue;
        }
        match node.poll_timeout() {
            Some(t) if t <= T0 + 40_000 => {
                now = now.max(t);
                node.handle_timeout(now);
            }
            _ => break,
        }
    }
    assert!(delays.len() >= 4, "it kept trying: {delays:?}");
    assert_eq!(&delays[..4], &[0, 1_000, 2_000, 4_000], "{delays:?}");
    assert!(
        dials.len() <= delays.len() + 1,
        "one dial per rejoin, none in between: {dials:?} {delays:?}"
    );
    assert!(dials.len() < 10, "no storm: {} dials in 40 s", dials.len());
}

/// A second Kind, defined only by a configuration update.
const NEW_KIND: KindId = 0x4000_0002;

/// A stand-in for the daemon's XML judge: a document reads
/// `seq=N signer=S [kinds=ID,ID] [next-signer=S]`, a kind block
/// `signer=S id=N`. It takes what its current signer signed.
struct TextJudge {
    signer: String,
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.split(' ').find_map(|f| f.strip_prefix(name))
}

fn new_kind(id: KindId) -> KindDefinition {
    KindDefinition {
        id,
        name: format!("kind-{id}"),
        data_model: DataModel::SingleValue,
        access: AccessPolicy::UserMatch,
        max_count: 1,
        max_size: 100,
    }
}

impl ConfigurationJudge for TextJudge {
    fn judge_document(&mut self, document: &[u8]) -> Result<OverlayConfig, ConfigRefusal> {
        let text = std::str::from_utf8(document).map_err(|_| ConfigRefusal::Invalid("not UTF-8".into()))?;
        if field(text, "signer=") != Some(self.signer.as_str()) {
            return Err(ConfigRefusal::NotSigned(format!("{text:?}")));
        }
        let mut c = (*config()).clone();
        c.configuration_sequence = field(text, "seq=")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ConfigRefusal::Invalid("no seq".into()))?;
        for id in field(text, "kinds=").into_iter().flat_map(|k| k.split(',')) {
            c = c.with_kind(new_kind(id.parse().unwrap()));
        }
        Ok(c)
    }

    fn judge_kinds(&mut self, blocks: &[Vec<u8>]) -> Result<Vec<KindDefinition>, ConfigRefusal> {
        blocks
            .iter()
            .map(|b| {
                let text = String::from_utf8_lossy(b);
                if field(&text, "signer=") != Some(self.signer.as_str()) {
                    return Err(ConfigRefusal::NotSigned(text.to_string()));
                }
                let mut kind = new_kind(field(&text, "id=").unwrap().parse().unwrap());
                if let Some(size) = field(&text, "size=") {
                    kind.max_size = size.parse().unwrap();
                }
                Ok(kind)
            })
            .collect()
    }

    fn adopt(&mut self, document: &[u8]) {
        if let Some(next) = field(&String::from_utf8_lossy(document), "next-signer=") {
            self.signer = next.to_string();
        }
    }
}

/// Five peers that take configuration updates, all on sequence 5.
fn configurable_ring() -> Net {
    let mut net = Net::ring(&IDS[..5]);
    for n in &mut net.nodes {
        n.take_configuration_updates(
            b"seq=0 signer=ops".to_vec(),
            Box::new(TextJudge { signer: "ops".into() }),
        );
    }
    let now = net.now;
    let offered = net.nodes[0].offer_configuration(now, b"seq=5 signer=ops".to_vec());
    assert_eq!(offered, Ok(Offered::Adopted { sequence: 5 }));
    net.pump();
    net.events.clear();
    net
}

fn sequences(net: &Net) -> Vec<u16> {
    net.nodes.iter().map(|n| n.config().configuration_sequence).collect()
}

fn store_kind(net: &mut Net, node: usize, kind: KindId) -> Result<Body, RequestFailure> {
    let rid = net.nodes[node].resource_id(net.users[node].as_bytes());
    let v = StoredDataValue::SingleValue(DataValue {
        exists: true,
        value: b"v".to_vec(),
    });
    let now = net.now;
    let id = net.nodes[node].store(now, rid, kind, vec![v], 3600);
    net.pump();
    net.done(node, id).0
}

/// RFC 6940 §6.5.4: a document offered to one peer reaches every peer
/// through ConfigUpdates (sequence 65535, §6.3.2.1), each adopts it once,
/// and the Kind it adds can be stored everywhere.
#[test]
fn a_new_configuration_reaches_every_peer_once_and_its_new_kind_is_stored() {
    let mut net = configurable_ring();
    assert_eq!(sequences(&net), vec![5; 5], "the first update reached all five");
    assert!(store_kind(&mut net, 3, NEW_KIND).is_err(), "the Kind is unknown yet");
    net.sent.clear();
    let now = net.now;
    let offered = net.nodes[0].offer_configuration(now, format!("seq=6 signer=ops kinds={NEW_KIND}").into_bytes());
    assert_eq!(offered, Ok(Offered::Adopted { sequence: 6 }));
    net.pump();
    assert_eq!(sequences(&net), vec![6; 5]);
    for (i, n) in net.nodes.iter().enumerate() {
        assert!(n.config().kind(NEW_KIND).is_some(), "node {i} knows the new Kind");
        let adopted = net
            .events
            .iter()
            .filter(|(j, e)| *j == i && matches!(e, Event::Reconfigured { sequence: 6, .. }))
            .count();
        assert_eq!(adopted, 1, "node {i} adopted the document once");
    }
    // Each node hands the document on over each of its links at most once.
    let ctx = config().decode_context().unwrap();
    let updates: Vec<_> = net
        .sent
        .iter()
        .filter_map(|(_, _, b)| Message::decode(b, &ctx).ok())
        .filter(|m| m.message_contents.message_code == MessageCode::CONFIG_UPDATE_REQ)
        .collect();
    let links: usize = net.nodes.iter().map(|n| n.links().count()).sum();
    assert!(
        !updates.is_empty() && updates.len() <= links,
        "{} updates, {links} links",
        updates.len()
    );
    assert!(updates
        .iter()
        .all(|m| m.forwarding_header.configuration_sequence == u16::MAX));
    for i in [1, 3] {
        let stored = store_kind(&mut net, i, NEW_KIND);
        assert!(matches!(stored, Ok(Body::StoreAns(_))), "node {i}: {stored:?}");
    }
}

/// §11.1: a node whose usage needs a Kind under one access policy cannot
/// run a document that gives the Kind another: the document is refused as
/// incompatible (the node must exit, which its driver does), and a kind
/// update that would do the same is refused as invalid.
#[test]
fn a_document_that_changes_a_kind_policy_a_usage_needs_cannot_be_run() {
    let mut net = configurable_ring();
    let now = net.now;
    // The node's usage needs NEW_KIND under USER-NODE-MATCH; the TextJudge
    // defines it under USER-MATCH.
    net.nodes[2].require_kind_policies(&[(NEW_KIND, AccessPolicy::UserNodeMatch)]);
    let document = format!("seq=6 signer=ops kinds={NEW_KIND}").into_bytes();
    let refused = net.nodes[2].offer_configuration(now, document.clone());
    assert!(
        matches!(&refused, Err(ConfigRefusal::Incompatible(why)) if why.contains("UserNodeMatch")),
        "{refused:?}"
    );
    assert_eq!(net.nodes[2].config().configuration_sequence, 5, "nothing adopted");
    // Another node, with no such usage, runs it.
    assert_eq!(
        net.nodes[1].offer_configuration(now, document),
        Ok(Offered::Adopted { sequence: 6 })
    );
    // Requirements outlive a new judge.
    net.nodes[3].require_kind_policies(&[(NEW_KIND, AccessPolicy::UserNodeMatch)]);
    net.nodes[3].take_configuration_updates(
        b"seq=5 signer=ops".to_vec(),
        Box::new(TextJudge { signer: "ops".into() }),
    );
    let again = net.nodes[3].offer_configuration(now, format!("seq=7 signer=ops kinds={NEW_KIND}").into_bytes());
    assert!(matches!(again, Err(ConfigRefusal::Incompatible(_))), "{again:?}");
}

/// §6.3.2.1: a request made under an older document is refused with
/// Error_Config_Too_Old, and the refusing node sends the requester a
/// ConfigUpdate with its document (once, however often it asks).
#[test]
fn a_request_under_an_older_document_is_refused_and_the_requester_is_told() {
    let mut net = configurable_ring();
    let from = net.nodes[1].node_id();
    let to = net.nodes[0].node_id();
    let ctx = config().decode_context().unwrap();
    let mut told = 0;
    for _ in 0..3 {
        let mut m = Message::decode(&raw_request(&net, 1, vec![Destination::Node(to)], &ping(), 10), &ctx).unwrap();
        m.forwarding_header.configuration_sequence = 4;
        net.sent.clear();
        let now = net.now;
        net.nodes[0].receive(now, from, &m.to_bytes().unwrap());
        while let Some(a) = net.nodes[0].poll_action() {
            let Action::Send { to, bytes, .. } = a else { continue };
            let m = Message::decode(&bytes, &ctx).unwrap();
            assert_eq!(to, from);
            match m.message_contents.body(&ctx).unwrap() {
                Body::Error(e) => assert_eq!(e.error_code, ErrorCode::CONFIG_TOO_OLD),
                Body::ConfigUpdateReq(ConfigUpdateReq::Config(d)) => {
                    assert_eq!(d, b"seq=5 signer=ops");
                    told += 1;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(told, 1, "told once, not once per request");
}

/// §6.5.4.2 and §11.1: a document not signed by a configuration-signer of
/// the current one, an older one, and kinds from another signer are all
/// refused with the RFC's errors, and nothing changes.
#[test]
fn unsigned_older_and_foreign_updates_are_refused_and_change_nothing() {
    let mut net = configurable_ring();
    let from = net.nodes[1].node_id();
    let to = net.nodes[0].node_id();
    let refused = |net: &mut Net, update: ConfigUpdateReq| {
        let m = raw_request(net, 1, vec![Destination::Node(to)], &Body::ConfigUpdateReq(update), 10);
        net.sent.clear();
        let now = net.now;
        net.nodes[0].receive(now, from, &m);
        net.pump();
        answers_to(net, from).into_iter().find_map(|b| match b {
            Body::Error(e) => Some(e.error_code),
            Body::ConfigUpdateAns => None,
            _ => None,
        })
    };
    let forged = ConfigUpdateReq::Config(format!("seq=9 signer=mallory kinds={NEW_KIND}").into_bytes());
    assert_eq!(refused(&mut net, forged), Some(ErrorCode::FORBIDDEN));
    let older = ConfigUpdateReq::Config(b"seq=3 signer=ops".to_vec());
    assert_eq!(refused(&mut net, older), Some(ErrorCode::CONFIG_TOO_OLD));
    let kinds = ConfigUpdateReq::Kinds(vec![format!("signer=mallory id={NEW_KIND}").into_bytes()]);
    assert_eq!(refused(&mut net, kinds), Some(ErrorCode::FORBIDDEN));
    let unknown = ConfigUpdateReq::Unknown {
        update_type: 9,
        data: vec![1],
    };
    assert_eq!(refused(&mut net, unknown), Some(ErrorCode::INVALID_MESSAGE));
    assert_eq!(sequences(&net), vec![5; 5]);
    assert!(net.nodes.iter().all(|n| n.config().kind(NEW_KIND).is_none()));
    let refusals = net
        .events
        .iter()
        .filter(|(i, e)| *i == 0 && matches!(e, Event::ConfigurationRefused { .. }))
        .count();
    assert_eq!(refusals, 4, "each refusal reported to the driver");
    // Kinds signed by the kind-signer are taken and handed on.
    let kinds = ConfigUpdateReq::Kinds(vec![format!("signer=ops id={NEW_KIND}").into_bytes()]);
    assert_eq!(refused(&mut net, kinds), None);
    assert!(net.nodes.iter().all(|n| n.config().kind(NEW_KIND).is_some()));
    assert_eq!(sequences(&net), vec![5; 5], "a kind update keeps the sequence");
    // A kind update carries no sequence, so it may be a replay: it adds
    // Kinds but never changes one (that takes a new document), and the
    // same Kind twice in one update is refused.
    let other = ConfigUpdateReq::Kinds(vec![format!("signer=ops id={NEW_KIND} size=7").into_bytes()]);
    assert_eq!(refused(&mut net, other), Some(ErrorCode::FORBIDDEN));
    let twice = ConfigUpdateReq::Kinds(vec![
        format!("signer=ops id={} size=7", NEW_KIND + 1).into_bytes(),
        format!("signer=ops id={} size=8", NEW_KIND + 1).into_bytes(),
    ]);
    assert_eq!(refused(&mut net, twice), Some(ErrorCode::INVALID_MESSAGE));
    assert!(net
        .nodes
        .iter()
        .all(|n| n.config().kind(NEW_KIND).unwrap().max_size == 100));
    assert!(net.nodes.iter().all(|n| n.config().kind(NEW_KIND + 1).is_none()));
}

/// §11.1: a document is judged by the signers of the one before it, so a
/// new configuration-signer signs only after a document names it; and a
/// flood of documents to check is cut off after a budget.
#[test]
fn the_signer_of_the_next_document_is_named_by_the_current_one_and_checks_are_budgeted() {
    let mut net = configurable_ring();
    let now = net.now;
    let by_new = |seq: u16| format!("seq={seq} signer=ops2").into_bytes();
    assert!(matches!(
        net.nodes[2].offer_configuration(now, by_new(6)),
        Err(ConfigRefusal::NotSigned(_))
    ));
    let handover = b"seq=6 signer=ops next-signer=ops2".to_vec();
    assert_eq!(
        net.nodes[2].offer_configuration(now, handover),
        Ok(Offered::Adopted { sequence: 6 })
    );
    net.pump();
    assert_eq!(sequences(&net), vec![6; 5]);
    let now = net.now;
    assert_eq!(
        net.nodes[4].offer_configuration(now, by_new(7)),
        Ok(Offered::Adopted { sequence: 7 })
    );
    net.pump();
    assert_eq!(sequences(&net), vec![7; 5]);
    // Judging costs a signature check: a burst of ConfigUpdates from a
    // member is cut off (the operator's own offers are not).
    net.advance(60_000);
    net.events.clear();
    let (from, to) = (net.nodes[2].node_id(), net.nodes[1].node_id());
    for i in 0..40 {
        let update = Body::ConfigUpdateReq(ConfigUpdateReq::Config(format!("seq=9 signer=x{i}").into_bytes()));
        let m = raw_request(&net, 2, vec![Destination::Node(to)], &update, 10);
        let now = net.now;
        net.nodes[1].receive(now, from, &m);
    }
    net.pump();
    let refusals: Vec<&ConfigRefusal> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::ConfigurationRefused { refusal, .. } if *i == 1 => Some(refusal),
            _ => None,
        })
        .collect();
    assert_eq!(refusals.len(), 40);
    let judged = refusals.iter().filter(|r| !matches!(r, ConfigRefusal::TooMany)).count();
    assert_eq!(judged, 16, "documents judged in one window");
    let now = net.now;
    assert!(
        matches!(
            net.nodes[1].offer_configuration(now, b"seq=1 signer=x".to_vec()),
            Err(ConfigRefusal::NotSigned(_))
        ),
        "the operator's offer is judged all the same"
    );
    // The current document is recognised without a check.
    let current = net.nodes[1].configuration_document().unwrap().to_vec();
    assert_eq!(
        net.nodes[1].offer_configuration(now, current),
        Ok(Offered::Current { sequence: 7 })
    );
}

/// RFC 6940 §7: storage_time is the time of day; every timer runs on the
/// engine's clock. A value stored after the driver told the wall clock
/// carries it, and a wall clock stepped back an hour does not get the
/// node's next store refused as older (it counts on from the last
/// storage_time instead).
#[test]
fn stored_values_carry_the_wall_clock_and_a_step_back_gets_no_store_refused() {
    let mut net = Net::ring(&IDS);
    let rid = net.nodes[2].resource_id(net.users[2].as_bytes());
    let wall = 2_000_000_000_000;
    let now = net.now;
    net.nodes[2].set_wall_clock(now, wall);
    let first = net.nodes[2].store(now, rid.clone(), KIND, vec![single(b"first")], 3600);
    net.pump();
    assert!(matches!(net.done(2, first).0, Ok(Body::StoreAns(_))));
    let set = net.nodes[2].topology().replica_set(rid.as_bytes()).unwrap();
    let responsible = net.index_of(&set[0]).unwrap();
    let stored_time = |net: &Net| {
        let held = net.nodes[responsible].storage().resource(&rid).unwrap().export(net.now);
        (held[0].values[0].storage_time, held[0].values[0].value.clone())
    };
    assert_eq!(stored_time(&net), (wall, single(b"first")));

    let now = net.now + 1_000;
    net.nodes[2].set_wall_clock(now, wall - 3_600_000);
    let second = net.nodes[2].store(now, rid.clone(), KIND, vec![single(b"second")], 3600);
    net.pump();
    assert!(
        matches!(net.done(2, second).0, Ok(Body::StoreAns(_))),
        "not refused as older"
    );
    assert_eq!(stored_time(&net), (wall + 1, single(b"second")));
}
