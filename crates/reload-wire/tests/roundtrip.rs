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
