//! CHORD-RELOAD rules, each against the RFC 6940 text it implements.

use super::*;
use crate::topology::{Holding, TopologyCommand as C};
use reload_wire::AttachReqAns;

fn id(v: u128) -> NodeId {
    NodeId::from_u128(v)
}

fn chord(me: u128) -> ChordReload {
    ChordReload::new(id(me), ChordConfig::default(), 16, 1)
}

/// A joined peer linked (by its own Attaches) to `peers`.
fn joined(me: u128, peers: &[u128]) -> ChordReload {
    let mut c = chord(me);
    let mut out = Vec::new();
    c.start_alone(0, &mut out);
    for p in peers {
        c.on_link_up(0, id(*p), true, false, &mut out);
    }
    c
}

fn update_bytes(preds: &[u128], succs: &[u128]) -> Vec<u8> {
    ChordUpdate {
        uptime: 1,
        update: ChordUpdateType::Neighbors {
            predecessors: preds.iter().map(|p| id(*p)).collect(),
            successors: succs.iter().map(|s| id(*s)).collect(),
        },
    }
    .to_bytes()
    .unwrap()
}

/// The AttachAns a peer answers our Attach with.
fn attach_answer(from: u128) -> Answer {
    Answer {
        from: id(from),
        body: Body::AttachAns(AttachReqAns {
            ufrag: vec![],
            password: vec![],
            role: b"passive".to_vec(),
            candidates: vec![],
            send_update: false,
        }),
    }
}

fn attaches(out: &[C]) -> Vec<Vec<Destination>> {
    out.iter()
        .filter_map(|c| match c {
            C::Attach { destination, .. } => Some(destination.clone()),
            _ => None,
        })
        .collect()
}

fn requests(out: &[C]) -> Vec<(Vec<Destination>, Body)> {
    out.iter()
        .filter_map(|c| match c {
            C::Request { destination, body, .. } => Some((destination.clone(), body.clone())),
            _ => None,
        })
        .collect()
}

fn token_of(out: &[C], pred: impl Fn(&C) -> bool) -> u64 {
    out.iter()
        .find(|c| pred(c))
        .map(|c| match c {
            C::Attach { token, .. } | C::Request { token, .. } => *token,
            _ => unreachable!(),
        })
        .expect("command present")
}

#[test]
fn responsible_for_the_interval_from_predecessor_exclusive_to_self_inclusive() {
    // §10.1: x is responsible for k if k <= x and k > p.
    let c = joined(100, &[50, 200]);
    assert!(c.is_responsible(id(100).as_bytes()));
    assert!(c.is_responsible(id(51).as_bytes()));
    assert!(!c.is_responsible(id(50).as_bytes()));
    assert!(!c.is_responsible(id(101).as_bytes()));
}

#[test]
fn responsibility_wraps_around_zero() {
    // §10.1: "all math is modulo 2^128" — the peer after the top of the ring
    // owns the IDs just below 2^128 and the IDs from 0 up to itself.
    let c = joined(10, &[u128::MAX - 5, 500]);
    for k in [u128::MAX - 4, u128::MAX, 0, 3, 10] {
        assert!(c.is_responsible(id(k).as_bytes()), "should own {k}");
    }
    assert!(!c.is_responsible(id(u128::MAX - 5).as_bytes()));
    assert!(!c.is_responsible(id(11).as_bytes()));
    // A peer alone owns the whole ring (§6.4.2.1's first node).
    let alone = joined(10, &[]);
    assert!(alone.is_responsible(id(u128::MAX).as_bytes()));
}

#[test]
fn routes_to_the_largest_peer_between_self_and_the_target() {
    // §10.3: "route the request to the peer in the Routing Table that has the
    // largest Node-ID that is in the interval between the peer and k".
    let c = joined(0, &[100, 1000, 5000, 1u128 << 100]);
    assert_eq!(c.next_hop(id(4999).as_bytes()), Some(id(1000)));
    assert_eq!(c.next_hop(id(5000).as_bytes()), Some(id(5000)));
    assert_eq!(c.next_hop(id(u128::MAX).as_bytes()), Some(id(1u128 << 100)));
}

#[test]
fn with_nothing_in_between_routes_to_the_smallest_id_above_the_target() {
    // §10.3: "If no such node is found, the peer finds the smallest Node-ID
    // that is greater than k".
    let c = joined(1000, &[5000, 9000]);
    assert_eq!(c.next_hop(id(1500).as_bytes()), Some(id(5000)));
    // Across zero: from 9000's view, k = 10 lies after the wrap.
    let c = joined(9000, &[1000, 5000]);
    assert_eq!(c.next_hop(id(10).as_bytes()), Some(id(1000)));
    assert_eq!(c.next_hop(id(2000).as_bytes()), Some(id(1000)));
}

#[test]
fn finger_one_is_the_peer_half_way_around_the_ring() {
    // §10: "CHORD-RELOAD specifies finger[0] as the peer 180 degrees around".
    // §10.7.4.2: finger i is valid in [x + 2^(128-i), x + 2^(128-(i-1)) - 1].
    let me = 7u128;
    let half = me.wrapping_add(1 << 127);
    let c = joined(me, &[half + 3, me + (1 << 126) + 9, me + 5]);
    assert_eq!(c.finger(1), Some(id(half + 3)));
    assert_eq!(c.finger(2), Some(id(me + (1 << 126) + 9)));
    assert_eq!(c.finger(3), None, "no peer in [x+2^125, x+2^126)");
    // The start of a range belongs to it, the start of the previous does not.
    let c = joined(0, &[1 << 126, 1 << 127]);
    assert_eq!(c.finger(2), Some(id(1 << 126)));
    assert_eq!(c.finger(1), Some(id(1 << 127)));
}

#[test]
fn finger_table_reaches_just_past_the_last_successor() {
    // §10.7.4.3 "simple approach": large enough to contain the final successor.
    let c = joined(0, &[1 << 120, 2 << 120, 3 << 120]);
    assert_eq!(c.successors().last(), Some(&id(3 << 120)));
    // The smallest finger range, [2^(128-F), 2^(129-F)), must still begin
    // beyond 3·2^120: F = 6 (2^122 = 4·2^120).
    assert_eq!(c.finger_count(), 6);
}

#[test]
fn keeps_three_successors_and_predecessors_closest_first() {
    // §10.7: "at least three predecessors and three successors".
    let c = joined(1000, &[1001, 1002, 1003, 1004, 999, 998, 997, 996]);
    assert_eq!(c.successors(), &[id(1001), id(1002), id(1003)]);
    assert_eq!(c.predecessors(), &[id(999), id(998), id(997)]);
}

#[test]
fn replicas_are_the_next_two_successors_of_the_responsible_peer() {
    // §10.4: store at the responsible peer, then "its successor ... and to
    // that peer's successor".
    let c = joined(100, &[40, 60, 80, 120, 140, 160]);
    assert_eq!(c.replica_set(id(90).as_bytes()), Some(vec![id(100), id(120), id(140)]));
    assert_eq!(c.holding(id(90).as_bytes()), Holding::Responsible);
    assert_eq!(c.replica_set(id(70).as_bytes()), Some(vec![id(80), id(100), id(120)]));
    assert_eq!(c.holding(id(70).as_bytes()), Holding::Replica(1));
    assert_eq!(c.holding(id(50).as_bytes()), Holding::Replica(2));
    // §10.7.3: "three predecessors between x and R" — no longer a replica.
    assert_eq!(c.holding(id(30).as_bytes()), Holding::None);
}

#[test]
fn replica_stores_come_from_the_replica_set_or_from_closer_peers() {
    // §7.4.1.1: "replica StoreReqs MUST come from nodes which are either in
    // the known replica set for a given resource or which are closer than
    // some node in the replica set."
    let c = joined(200, &[100, 120, 150, 300, 400, 500]);
    let resource = id(110);
    assert_eq!(
        c.replica_set(resource.as_bytes()),
        Some(vec![id(120), id(150), id(200)])
    );
    assert!(c.plausible_replica_source(resource.as_bytes(), &id(150)), "a member");
    // 115 took over from 120 (crashed, say) before our tables noticed.
    assert!(
        c.plausible_replica_source(resource.as_bytes(), &id(115)),
        "closer than 120"
    );
    // Before the resource, or beyond every member: implausible.
    assert!(!c.plausible_replica_source(resource.as_bytes(), &id(105)));
    assert!(!c.plausible_replica_source(resource.as_bytes(), &id(700)));
}

#[test]
fn join_attaches_to_the_successor_of_its_own_id_asking_for_an_update() {
    // §10.5 step 2: "JN SHOULD send an Attach request to the AP for
    // Resource-ID n+1. The send_update flag can be used to acquire the
    // Routing Table of AP."
    let mut jn = chord(500);
    let mut out = Vec::new();
    jn.join(0, id(9000), &mut out);
    assert!(out.iter().any(|c| matches!(c, C::Attach {
        destination, send_update: true, ..
    } if destination == &vec![Destination::Resource(ResourceId(501u128.to_be_bytes().to_vec()))])));
    assert!(!jn.is_joined());
}

/// JN = 500 joining through the bootstrap peer 9000: its Attach to the
/// peer responsible for 501 is answered by AP = 600, whose link is up.
/// Returns JN and what it asked for after the answer.
fn admitted_by_600() -> (ChordReload, Vec<C>) {
    let mut jn = chord(500);
    let mut out = Vec::new();
    jn.join(0, id(9000), &mut out);
    let attach = token_of(&out, |c| matches!(c, C::Attach { send_update: true, .. }));
    out.clear();
    jn.on_link_up(10, id(600), true, false, &mut out);
    jn.on_answer(10, attach, Ok(attach_answer(600)), &mut out);
    (jn, out)
}

/// The token of the JoinReq among `out`.
fn join_token(out: &[C]) -> u64 {
    token_of(out, |c| {
        matches!(
            c,
            C::Request {
                body: Body::JoinReq(_),
                ..
            }
        )
    })
}

#[test]
fn join_handshake_attaches_to_neighbours_through_the_admitting_peer_then_joins() {
    let (mut jn, mut out) = admitted_by_600();
    assert!(requests(&out).is_empty(), "no Join before AP's Update");
    out.clear();
    // AP's Update (§6.4.2.3) lists its neighbours.
    let update = ChordUpdate {
        uptime: 5,
        update: ChordUpdateType::Full {
            predecessors: vec![id(400), id(300), id(200)],
            successors: vec![id(700), id(800), id(900)],
            fingers: vec![id(1u128 << 127)],
        },
    }
    .to_bytes()
    .unwrap();
    jn.on_update(20, id(600), &update, &mut out).unwrap();
    // §10.6: Attaches to new neighbours are source-routed through the peer
    // that told us about them.
    let routed = attaches(&out);
    for n in [400, 300, 200, 700, 800] {
        assert!(
            routed.contains(&vec![Destination::Node(id(600)), Destination::Node(id(n))]),
            "attach to {n} via AP: {routed:?}"
        );
    }
    // §10.5: JN "MUST NOT send any Update ... until it has successfully
    // completed an Attach with each peer that should be in its Neighbor
    // Table" — nor the Join.
    assert!(requests(&out).is_empty());
    let neighbour_tokens: Vec<u64> = out
        .iter()
        .filter_map(|c| match c {
            C::Attach { token, destination, .. } if destination.len() == 2 => Some(*token),
            _ => None,
        })
        .collect();
    out.clear();
    for (i, t) in neighbour_tokens.iter().enumerate() {
        jn.on_answer(30, *t, Err(RequestFailure::Timeout), &mut out);
        let joins = requests(&out)
            .into_iter()
            .filter(|(_, b)| matches!(b, Body::JoinReq(_)))
            .count();
        assert_eq!(joins, usize::from(i + 1 == neighbour_tokens.len()));
    }
    // Step 5: the Join goes to AP.
    let (dest, body) = requests(&out).pop().unwrap();
    assert_eq!(dest, vec![Destination::Node(id(600))]);
    assert!(matches!(body, Body::JoinReq(JoinReq { joining_peer_id, .. }) if joining_peer_id == id(500)));
    let join = join_token(&out);
    out.clear();
    jn.on_answer(
        40,
        join,
        Ok(Answer {
            from: id(600),
            body: Body::JoinAns(Default::default()),
        }),
        &mut out,
    );
    assert!(jn.is_joined());
    assert!(out.contains(&C::Joined));
    // Step 9: "JN MUST send Updates to all of the peers in its Neighbor Table."
    let updated: Vec<Vec<Destination>> = requests(&out)
        .into_iter()
        .filter(|(_, b)| matches!(b, Body::UpdateReq(_)))
        .map(|(d, _)| d)
        .collect();
    assert!(updated.contains(&vec![Destination::Node(id(600))]));
}

#[test]
fn a_joining_node_copies_the_admitting_peers_fingers_only_where_they_are_still_close() {
    // §10.5 step 3: "Attach requests ... to the desired peers in the Finger
    // Table". AP's neighbours span 700 around it, 6 gaps: a spacing of 116.
    let (mut jn, mut out) = admitted_by_600();
    out.clear();
    let half = 500 + (1u128 << 127);
    let quarter = 500 + (1u128 << 126);
    let close = half + 100; // within 8 spacings of finger 1's start
    let stale = quarter + 1_000_000; // a million past finger 2's start
    let update = ChordUpdate {
        uptime: 5,
        update: ChordUpdateType::Full {
            predecessors: vec![id(400), id(300), id(200)],
            successors: vec![id(700), id(800), id(900)],
            fingers: vec![id(stale), id(close)],
        },
    }
    .to_bytes()
    .unwrap();
    jn.on_update(20, id(600), &update, &mut out).unwrap();
    let routed = attaches(&out);
    assert!(
        routed.contains(&vec![Destination::Node(id(600)), Destination::Node(id(close))]),
        "the close finger is reached through AP: {routed:?}"
    );
    assert!(
        !routed.iter().any(|d| d.contains(&Destination::Node(id(stale)))),
        "the stale finger is not copied"
    );
    let start_of_2 = Destination::Resource(ResourceId(quarter.to_be_bytes().to_vec()));
    assert!(
        routed.contains(&vec![start_of_2]),
        "finger 2 is looked up at n + 2^126 instead"
    );
    let start_of_1 = Destination::Resource(ResourceId(half.to_be_bytes().to_vec()));
    assert!(!routed.contains(&vec![start_of_1]), "finger 1 came from AP");
}

#[test]
fn admitting_peer_takes_the_joining_node_as_predecessor_and_updates_its_neighbours() {
    let mut ap = joined(600, &[400, 700]);
    let mut out = Vec::new();
    // §6.4.2.1: "Receivers of the JoinReq MUST verify that the
    // joining_peer_id field matches the Node-ID used to sign the message".
    let forged = JoinReq {
        joining_peer_id: id(501),
        overlay_specific_data: vec![],
    };
    assert_eq!(ap.on_join(0, id(500), &forged, &mut out), Err(ErrorCode::FORBIDDEN));
    let req = JoinReq {
        joining_peer_id: id(500),
        overlay_specific_data: vec![],
    };
    ap.on_link_up(0, id(500), false, false, &mut out);
    out.clear();
    ap.on_join(0, id(500), &req, &mut out).unwrap();
    assert_eq!(ap.predecessors().first(), Some(&id(500)));
    // Step 6: data moves (the core acts on ReplicasChanged).
    assert!(out.contains(&C::ReplicasChanged));
    // Steps 7-8: Updates to all neighbours, JN included, after the
    // coalescing delay.
    out.clear();
    let due = ap.next_timer().unwrap();
    ap.on_timer(due, &mut out);
    let to: Vec<Vec<Destination>> = requests(&out).into_iter().map(|(d, _)| d).collect();
    for n in [500, 400, 700] {
        assert!(to.contains(&vec![Destination::Node(id(n))]), "Update to {n}: {to:?}");
    }
}

#[test]
fn an_update_naming_a_closer_peer_leads_to_an_attach_and_an_unchanged_one_to_nothing() {
    // §10.7.3, the two cases.
    let mut c = joined(1000, &[900, 800, 700, 1100, 1200, 1300]);
    let mut out = Vec::new();
    c.on_update(
        0,
        id(1100),
        &update_bytes(&[1000, 900, 800], &[1200, 1300, 1400]),
        &mut out,
    )
    .unwrap();
    assert!(
        attaches(&out).is_empty(),
        "1400 is farther than our 3rd successor: {out:?}"
    );
    out.clear();
    c.on_update(0, id(1100), &update_bytes(&[1050, 1000, 900], &[1200, 1300]), &mut out)
        .unwrap();
    assert_eq!(
        attaches(&out),
        vec![vec![Destination::Node(id(1100)), Destination::Node(id(1050))]]
    );
    // "x MUST attempt to Attach to the new peers, and if it is successful,
    // it MUST adjust its neighbor set accordingly."
    c.on_link_up(1, id(1050), true, false, &mut out);
    assert_eq!(c.successors(), &[id(1050), id(1100), id(1200)]);
}

#[test]
fn an_update_from_a_peer_that_misses_a_closer_neighbour_gets_one_back() {
    let mut c = joined(1000, &[900, 1100, 1200, 1300]);
    let mut out = Vec::new();
    // 1100 believes its predecessors are 900, 800, 700; we (1000) are closer.
    c.on_update(
        0,
        id(1100),
        &update_bytes(&[900, 800, 700], &[1200, 1300, 1400]),
        &mut out,
    )
    .unwrap();
    assert!(requests(&out)
        .iter()
        .any(|(d, b)| d == &vec![Destination::Node(id(1100))] && matches!(b, Body::UpdateReq(_))));
    out.clear();
    c.on_update(1, id(1100), &update_bytes(&[1000, 900], &[1200, 1300, 1400]), &mut out)
        .unwrap();
    assert!(requests(&out).is_empty(), "nothing to correct");
}

#[test]
fn a_failed_successor_is_replaced_by_the_next_best_peer_and_neighbours_are_told() {
    // §10.7.1: "remove the entry ... replace it with the best match it has
    // from the other peers in its Routing Table ... send an immediate Update".
    let mut c = joined(1000, &[900, 1100, 1200, 1300, 1400]);
    let mut out = Vec::new();
    c.on_link_down(0, id(1100), &mut out);
    assert_eq!(c.successors(), &[id(1200), id(1300), id(1400)]);
    assert!(out.contains(&C::ReplicasChanged));
    out.clear();
    c.on_timer(c.next_timer().unwrap(), &mut out);
    assert!(!requests(&out).is_empty(), "reactive Updates");
}

#[test]
fn losing_every_peer_means_joining_again() {
    // §10.7.1: "If connectivity is lost to all successor peers ... behave as
    // if it is joining the network".
    let mut c = joined(1000, &[1100]);
    let mut out = Vec::new();
    c.on_link_down(0, id(1100), &mut out);
    assert!(out.contains(&C::Rejoin));
    assert!(!c.is_joined());
}

#[test]
fn leave_tells_predecessors_the_successors_and_successors_the_predecessors() {
    // §10.9: from_succ carries the successor list, from_pred the predecessors.
    let mut c = joined(1000, &[700, 800, 900, 1100, 1200, 1300]);
    let mut out = Vec::new();
    c.leave(0, &mut out);
    let sent = requests(&out);
    assert_eq!(sent.len(), 6, "one Leave per neighbour");
    for (dest, body) in &sent {
        let Body::LeaveReq(req) = body else { panic!("{body:?}") };
        assert_eq!(req.leaving_peer_id, id(1000));
        let data = ChordLeaveData::from_bytes(&req.overlay_specific_data, &DecodeContext::default()).unwrap();
        let Destination::Node(to) = dest[0] else { panic!() };
        if [id(700), id(800), id(900)].contains(&to) {
            let successors = vec![id(1100), id(1200), id(1300)];
            assert_eq!(data, ChordLeaveData::FromSucc { successors });
        } else {
            let predecessors = vec![id(900), id(800), id(700)];
            assert_eq!(data, ChordLeaveData::FromPred { predecessors });
        }
    }
    let tokens: Vec<u64> = out
        .iter()
        .filter_map(|c| match c {
            C::Request { token, .. } => Some(*token),
            _ => None,
        })
        .collect();
    out.clear();
    for (i, t) in tokens.iter().enumerate() {
        assert!(!out.contains(&C::Left));
        let answer = if i % 2 == 0 {
            Ok(Answer {
                from: id(900),
                body: Body::LeaveAns,
            })
        } else {
            Err(RequestFailure::Timeout)
        };
        c.on_answer(1, *t, answer, &mut out);
    }
    assert!(out.contains(&C::Left), "Left once every Leave is answered or timed out");
}

/// The Leave a peer sends its predecessors (§10.9: from_succ, with its
/// successors).
fn leave_to_predecessors(leaver: u128, successors: &[u128]) -> LeaveReq {
    LeaveReq {
        leaving_peer_id: id(leaver),
        overlay_specific_data: ChordLeaveData::FromSucc {
            successors: successors.iter().map(|s| id(*s)).collect(),
        }
        .to_bytes()
        .unwrap(),
    }
}

#[test]
fn a_leave_is_handled_like_a_failure_and_teaches_the_successors_list() {
    let mut c = joined(1000, &[900, 1100, 1200]);
    let mut out = Vec::new();
    let req = leave_to_predecessors(1100, &[1200, 1250]);
    c.on_leave(0, id(1100), &req, &mut out).unwrap();
    assert!(!c.successors().contains(&id(1100)));
    assert!(
        !out.contains(&C::CloseLink(id(1100))),
        "the leaver closes the link once it has handed its data over"
    );
    assert!(attaches(&out).contains(&vec![Destination::Node(id(1250))]));
    let forged = LeaveReq {
        leaving_peer_id: id(900),
        overlay_specific_data: req.overlay_specific_data.clone(),
    };
    assert_eq!(c.on_leave(0, id(1200), &forged, &mut out), Err(ErrorCode::FORBIDDEN));
}

/// Where the reactive Updates go once the delay has passed.
fn update_targets_after_delay(c: &mut ChordReload) -> BTreeSet<NodeId> {
    let mut out = Vec::new();
    c.on_timer(c.next_timer().unwrap(), &mut out);
    requests(&out)
        .into_iter()
        .filter(|(_, body)| matches!(body, Body::UpdateReq(_)))
        .map(|(d, _)| match d[..] {
            [Destination::Node(n)] => n,
            _ => panic!("an Update goes straight to a linked peer: {d:?}"),
        })
        .collect()
}

#[test]
fn a_leave_updates_the_neighbours_and_only_a_range_change_updates_every_link() {
    // §10.9: a Leave is handled as a failure (§10.7.1): "an immediate Update
    // to all nodes in its Neighbor Table"; only "if the neighbor failure
    // affects the peer's range of responsible IDs" to the Connection Table.
    let finger = 1000 + (1u128 << 127);
    let peers = [700, 800, 900, 1100, 1200, 1300, 1400, finger];
    let mut c = joined(1000, &peers);
    update_targets_after_delay(&mut c); // the Updates the links set off
    let mut out = Vec::new();
    c.on_leave(0, id(1100), &leave_to_predecessors(1100, &[1200, 1300, 1400]), &mut out)
        .unwrap();
    let neighbours: BTreeSet<NodeId> = [700, 800, 900, 1200, 1300, 1400].map(id).into();
    assert_eq!(update_targets_after_delay(&mut c), neighbours, "a successor left");

    let from_pred = LeaveReq {
        leaving_peer_id: id(900),
        overlay_specific_data: ChordLeaveData::FromPred {
            predecessors: vec![id(800), id(700)],
        }
        .to_bytes()
        .unwrap(),
    };
    c.on_leave(1, id(900), &from_pred, &mut out).unwrap();
    let everyone: BTreeSet<NodeId> = [700, 800, 1200, 1300, 1400, finger].map(id).into();
    assert_eq!(
        update_targets_after_delay(&mut c),
        everyone,
        "the predecessor left: our range grew"
    );
}

#[test]
fn route_query_answers_the_next_hop() {
    // §10.8: "the single Node-ID of the next peer to which the responding
    // peer would have routed the request".
    let mut c = joined(0, &[100, 1000]);
    let mut out = Vec::new();
    let req = RouteQueryReq {
        send_update: false,
        destination: Destination::Resource(ResourceId(id(500).as_bytes().to_vec())),
        overlay_specific_data: vec![],
    };
    let ans = c.on_route_query(0, id(100), &req, &mut out).unwrap();
    let ans = ChordRouteQueryAns::from_bytes(&ans, &DecodeContext::default()).unwrap();
    assert_eq!(ans.next_peer, id(100));
    // 1500 lies in (1000, 0]: this peer is responsible and names itself.
    let req = RouteQueryReq {
        destination: Destination::Resource(ResourceId(id(1500).as_bytes().to_vec())),
        ..req
    };
    let ans = c.on_route_query(0, id(100), &req, &mut out).unwrap();
    let ans = ChordRouteQueryAns::from_bytes(&ans, &DecodeContext::default()).unwrap();
    assert_eq!(ans.next_peer, id(0));
}

#[test]
fn resource_ids_are_sha1_truncated_to_128_bits() {
    // §10.2.
    let c = chord(1);
    let rid = c.resource_id(b"alice@example.org");
    let full = Sha1::digest(b"alice@example.org");
    assert_eq!(rid.as_bytes(), &full[..16]);
}

#[test]
fn a_malformed_update_is_an_invalid_message() {
    let mut c = joined(1000, &[900]);
    let mut out = Vec::new();
    assert_eq!(
        c.on_update(0, id(900), &[3, 0, 0], &mut out),
        Err(ErrorCode::INVALID_MESSAGE)
    );
}

/// A peer whose Leave we took keeps its link until it closes it (it may
/// still be handing data over); meanwhile a late Attach answer must not
/// put it back in the tables. Once its link closed it may return.
#[test]
fn a_departed_peer_is_not_taken_back_before_its_link_closes() {
    let mut c = joined(1000, &[900, 1100, 1200]);
    let mut out = Vec::new();
    let req = leave_to_predecessors(1100, &[1200]);
    c.on_leave(0, id(1100), &req, &mut out).unwrap();
    c.on_link_up(1, id(1100), true, false, &mut out);
    assert!(!c.successors().contains(&id(1100)), "taken back while leaving");
    c.on_link_down(2, id(1100), &mut out);
    c.on_link_up(3, id(1100), true, false, &mut out);
    assert!(c.successors().contains(&id(1100)), "a new session is welcome");
}

/// A link to `peer` opened for a partition check.
fn opened(peer: u128) -> ProbeLink {
    ProbeLink {
        peer: id(peer),
        opened: true,
    }
}

/// Runs the next partition check and returns its token and target.
fn partition_check(c: &mut ChordReload) -> (u64, u64, Destination) {
    let due = c.next_partition_check.expect("scheduled while joined");
    let mut out = Vec::new();
    c.on_timer(due, &mut out);
    let (token, target) = out
        .iter()
        .find_map(|x| match x {
            C::ProbeThroughBootstrap { token, target } => Some((*token, target.clone())),
            _ => None,
        })
        .expect("a probe through a bootstrap peer");
    (due, token, target)
}

#[test]
fn a_partition_check_pings_our_own_id_through_a_bootstrap_peer() {
    // §10.7.4.4: "periodically", at a random offset like the Updates;
    // the first about a minute after joining.
    let mut c = joined(100, &[50, 200]);
    let (first, _, _) = partition_check(&mut c);
    assert!((30_000..90_000).contains(&first), "first check at {first} ms");
    let (due, token, target) = partition_check(&mut c);
    let every = ChordConfig::default().partition_check_interval_ms;
    assert!((first + every / 2..first + every * 3 / 2).contains(&due), "{due}");
    assert_eq!(
        target,
        Destination::Resource(ResourceId(id(100).as_bytes().to_vec())),
        "our own ID, as a Resource-ID so the other partition answers it"
    );
    // One ring: the Ping came back to us. The link opened to the
    // bootstrap peer 999 only for the check is closed again.
    let mut out = Vec::new();
    c.on_link_up(due, id(999), false, false, &mut out);
    out.clear();
    c.on_bootstrap_probe(due, token, Some(opened(999)), Ok(id(100)), &mut out);
    assert_eq!(out, vec![C::CloseLink(id(999))]);
    // A peer we are linked to answering is our ring too (a neighbour not
    // yet aware of us): nothing to heal. The bootstrap peer 888 was linked
    // before the check (it uses us as a finger): its link stays.
    c.on_link_up(due, id(888), false, false, &mut out);
    let (due, token, _) = partition_check(&mut c);
    out.clear();
    let existing = ProbeLink {
        peer: id(888),
        opened: false,
    };
    c.on_bootstrap_probe(due, token, Some(existing), Ok(id(200)), &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(c.partitions_found(), 0);
}

#[test]
fn an_answer_from_a_stranger_is_a_partition_healed_by_an_attach_through_the_bootstrap_peer_then_an_update() {
    let mut c = joined(100, &[50, 200]);
    let (due, token, _) = partition_check(&mut c);
    let mut out = Vec::new();
    c.on_link_up(due, id(999), false, false, &mut out);
    out.clear();
    // 150 answered: a peer between us and our successor that we have never
    // heard of. The overlay is partitioned (§10.7.4.4).
    c.on_bootstrap_probe(due, token, Some(opened(999)), Ok(id(150)), &mut out);
    assert_eq!(c.partitions_found(), 1);
    assert_eq!(
        attaches(&out),
        vec![vec![Destination::Node(id(999)), Destination::Node(id(150))]],
        "an Attach to S' routed through B"
    );
    let attach = token_of(&out, |x| matches!(x, C::Attach { send_update: true, .. }));
    out.clear();
    c.on_link_up(due + 10, id(150), true, false, &mut out);
    assert_eq!(c.successors()[0], id(150), "S' is our successor now");
    out.clear();
    c.on_answer(due + 10, attach, Ok(attach_answer(150)), &mut out);
    let updates = requests(&out);
    assert_eq!(updates.len(), 1, "{out:?}");
    assert_eq!(updates[0].0, vec![Destination::Node(id(150))]);
    let Body::UpdateReq(bytes) = &updates[0].1 else {
        panic!("an Update, not {:?}", updates[0].1)
    };
    let update = ChordUpdate::from_bytes(bytes, &c.ctx).unwrap();
    assert!(
        matches!(update.update, ChordUpdateType::Full { .. }),
        "our whole view, so S' starts stabilizing toward our side"
    );
    assert!(
        out.contains(&C::CloseLink(id(999))),
        "the bootstrap link has done its job"
    );
}

#[test]
fn a_joined_peer_drops_its_bootstrap_link_unless_the_bootstrap_peer_is_in_its_tables() {
    // §10.5 says nothing of the link to the bootstrap peer after the join.
    let run = |other_finger: Option<u128>| {
        let (mut jn, mut out) = admitted_by_600();
        jn.on_update(20, id(600), &update_bytes(&[400], &[700]), &mut out)
            .unwrap();
        let far = [u128::MAX - 10, u128::MAX - 20];
        for n in [400, 700].into_iter().chain(far).chain(other_finger) {
            jn.on_link_up(25, id(n), true, false, &mut out);
        }
        for t in out
            .iter()
            .filter_map(|c| match c {
                C::Attach { token, .. } => Some(*token),
                _ => None,
            })
            .collect::<Vec<_>>()
        {
            jn.on_answer(26, t, Err(RequestFailure::Timeout), &mut out);
        }
        let join = join_token(&out);
        out.clear();
        let joined = Answer {
            from: id(600),
            body: Body::JoinAns(Default::default()),
        };
        jn.on_answer(40, join, Ok(joined), &mut out);
        assert!(jn.is_joined());
        out.contains(&C::CloseLink(id(9000)))
    };
    // 9000 is our third successor.
    assert!(!run(None), "a neighbour stays");
    // 8800 is: 9000 is neither neighbour nor finger and only got us in.
    assert!(run(Some(8800)), "the bootstrap link goes");
}
