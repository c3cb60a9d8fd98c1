//! Any bytes as a multicast discovery datagram, as anyone on the LAN can
//! send one: parsed, answered and heard by a round. No panic; whatever
//! parses encodes back to a line that parses to the same datagram (when
//! it fits), and an answer is only ever a HERE for our own overlay.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peer_core::discovery::{answer, Datagram, Round, Verb, MAX_DATAGRAM};
use reload_wire::NodeId;

fuzz_target!(|data: &[u8]| {
    let Ok(datagram) = Datagram::parse(data) else {
        return;
    };
    assert!(data.len() <= MAX_DATAGRAM);
    // A 512-byte line without its newline encodes to 513 bytes, which no
    // one reads; anything shorter comes back the same.
    let encoded = datagram.encode();
    if encoded.len() <= MAX_DATAGRAM {
        assert_eq!(Datagram::parse(&encoded), Ok(datagram.clone()));
    }
    let me = NodeId::from_u128(7);
    if let Some(here) = answer("fuzz.test", me, 6084, &datagram) {
        assert_eq!((here.verb, here.overlay.as_str(), here.node_id), (Verb::Here, "fuzz.test", me));
        assert_eq!(datagram.overlay, "fuzz.test");
    }
    let mut round = Round::new("fuzz.test", me);
    round.heard(&datagram, "127.0.0.1:9".parse().unwrap());
    let _ = round.outcome();
});
