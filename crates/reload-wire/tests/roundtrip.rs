//! Property tests: for every structure, decode(encode(x)) == x; and for
//! bytes that decode at all, encode(decode(b)) == b (decoding is canonical).

mod strategies;

use proptest::prelude::*;
use reload_wire::chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate};
use reload_wire::usages::{SipRegistration, TurnServer};
use reload_wire::*;
use strategies::*;

fn ctx() -> DecodeContext {
    DecodeContext::new(16, 1 << 20).unwrap()
}

fn roundtrip<T: Encode + Decode + PartialEq + std::fmt::Debug>(x: &T) -> Result<(), TestCaseError> {
    let bytes = x.to_bytes().expect("generated values fit their length prefixes");
    let back = T::from_bytes(&bytes, &ctx()).map_err(|e| TestCaseError::fail(format!("{e} decoding {x:?}")))?;
    prop_assert_eq!(&back, x);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn destination_roundtrips(d in destination()) { roundtrip(&d)?; }

    #[test]
    fn ip_address_port_roundtrips(a in ip_address_port()) { roundtrip(&a)?; }

    #[test]
    fn security_block_roundtrips(s in security_block()) { roundtrip(&s)?; }

    #[test]
    fn extension_roundtrips(e in extension()) { roundtrip(&e)?; }

    #[test]
    fn ice_candidate_roundtrips(c in ice_candidate()) { roundtrip(&c)?; }

    #[test]
    fn probe_information_roundtrips(p in probe_information()) { roundtrip(&p)?; }

    #[test]
    fn chord_update_roundtrips(u in chord_update()) { roundtrip(&u)?; }

    #[test]
    fn chord_leave_roundtrips(l in chord_leave()) { roundtrip(&l)?; }

    #[test]
    fn chord_route_query_ans_roundtrips(a in chord_route_query_ans()) { roundtrip(&a)?; }

    #[test]
    fn turn_server_roundtrips(t in turn_server()) { roundtrip::<TurnServer>(&t)?; }

    #[test]
    fn sip_registration_roundtrips(s in sip_registration()) { roundtrip::<SipRegistration>(&s)?; }

    #[test]
    fn config_update_roundtrips(c in config_update()) { roundtrip(&c)?; }

    /// Every method body, through the message-code dispatch.
    #[test]
    fn body_roundtrips(b in body()) {
        let bytes = b.to_bytes().unwrap();
        let back = Body::decode(b.message_code(), &bytes, &ctx()).unwrap();
        prop_assert_eq!(back, b);
    }

    /// Whole messages: forwarding header, contents, security block.
    #[test]
    fn message_roundtrips(m in message()) {
        let bytes = m.to_bytes().unwrap();
        prop_assert_eq!(Message::decode(&bytes, &ctx()).unwrap(), m);
    }

    /// The forwarding fast path: split off the header, re-write it, and the
    /// bytes are unchanged.
    #[test]
    fn forwarding_header_split_and_rewrite(h in forwarding_header(), payload in bytes(64)) {
        let mut w = Writer::new();
        h.encode_with_payload(&mut w, &payload);
        let wire = w.finish().unwrap();
        let c = ctx();
        let (back, rest) = ForwardingHeader::split(&wire, &c).unwrap();
        prop_assert_eq!(&back, &h);
        prop_assert_eq!(rest, &payload[..]);
        let mut w = Writer::new();
        back.encode_with_payload(&mut w, rest);
        prop_assert_eq!(w.finish().unwrap(), wire);
    }

    /// A relaying peer's rewrite from the borrowed view gives the bytes
    /// of the owned header with the first `skip` destinations removed,
    /// the previous hop appended to the Via List and the TTL one less; the
    /// view's destinations are the decoded list's.
    #[test]
    fn a_relayed_view_is_the_rewritten_header(
        h in forwarding_header(),
        payload in bytes(64),
        via in destination(),
        skip in 0usize..3,
    ) {
        let mut w = Writer::new();
        h.encode_with_payload(&mut w, &payload);
        let wire = w.finish().unwrap();
        let c = ctx();
        let view = HeaderView::parse(&wire, &c).unwrap();
        prop_assert_eq!(view.payload(), &payload[..]);
        prop_assert_eq!(view.destination_count(), h.destination_list.len());
        let refs: Vec<DestinationRef> = view.destinations().map(|(d, _)| d).collect();
        let expected: Vec<DestinationRef> = h.destination_list.iter().map(Destination::as_ref).collect();
        prop_assert_eq!(refs, expected);
        let skip = skip.min(h.destination_list.len());
        let mut rewritten = h.clone();
        rewritten.destination_list.drain(..skip);
        rewritten.via_list.push(via.clone());
        let relayed = view.relayed(skip, &via);
        match h.ttl.checked_sub(1) {
            None => prop_assert_eq!(relayed, None),
            Some(ttl) => {
                rewritten.ttl = ttl;
                let mut w = Writer::new();
                rewritten.encode_with_payload(&mut w, &payload);
                prop_assert_eq!(relayed, w.finish().ok());
            }
        }
    }

    /// The reverse direction: flip, insert or delete bytes of a valid
    /// message; whenever the result still decodes, it re-encodes to exactly
    /// the same bytes, and the typed body does too.
    #[test]
    fn bytes_that_decode_reencode_identically(
        m in message(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = m.to_bytes().unwrap();
        for (at, val, kind) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = val,
                1 => bytes.insert(i, val),
                _ => { bytes.remove(i); }
            }
        }
        let c = ctx();
        if let Ok(decoded) = Message::decode(&bytes, &c) {
            prop_assert_eq!(decoded.to_bytes().unwrap(), bytes.clone());
            if let Ok(body) = decoded.message_contents.body(&c) {
                prop_assert_eq!(body.to_bytes().unwrap(), decoded.message_contents.message_body);
            }
        }
    }

    /// Arbitrary bytes as a body of every code: never a panic, and what
    /// decodes re-encodes identically.
    #[test]
    fn arbitrary_bodies_are_canonical(code in 1u16..=0x26, raw in bytes(200)) {
        let c = ctx();
        if let Ok(body) = Body::decode(MessageCode(code), &raw, &c) {
            prop_assert_eq!(body.to_bytes().unwrap(), raw);
        }
    }
}

/// Chord-reload bodies travel inside the generic ones.
#[test]
fn chord_bodies_decode_from_their_carriers() {
    let ctx = ctx();
    for (_, body) in reload_wire::samples::bodies() {
        match body {
            Body::UpdateReq(b) => {
                ChordUpdate::from_bytes(&b, &ctx).unwrap();
            }
            Body::RouteQueryAns(b) => {
                ChordRouteQueryAns::from_bytes(&b, &ctx).unwrap();
            }
            Body::LeaveReq(l) => {
                ChordLeaveData::from_bytes(&l.overlay_specific_data, &ctx).unwrap();
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// §6.7: any message, any fragment size, any arrival order: the
    /// destination gets back exactly the original, and every fragment obeys
    /// the size limit and the 256-byte minimum.
    #[test]
    fn fragments_reassemble_to_the_original(
        padding in 0usize..6000,
        max_len in 300usize..3000,
        order in any::<prop::sample::Index>(),
    ) {
        use reload_wire::fragment::{fragment, Reassembler, Reassembly};
        let c = ctx();
        let body = Body::PingReq(PingReq { padding: vec![7; padding] });
        let whole = reload_wire::samples::message(&body, 9).to_bytes().unwrap();
        let mut frags = fragment(&whole, max_len, &c).unwrap();
        if frags.len() > 1 {
            for f in &frags {
                prop_assert!(f.len() <= max_len);
                prop_assert!(ForwardingHeader::split(f, &c).unwrap().1.len() >= 256);
            }
        }
        let n = frags.len();
        frags.rotate_left(order.index(n));
        let mut r = Reassembler::new(1 << 20);
        let mut out = Vec::new();
        for f in &frags {
            if let Reassembly::Complete(m) = r.push(0, f, &c).unwrap() {
                out.push(m);
            }
        }
        prop_assert_eq!(out, vec![whole]);
        prop_assert_eq!(r.buffered(), 0);
    }
}
