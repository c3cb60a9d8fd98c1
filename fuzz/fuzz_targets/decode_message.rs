//! Any bytes as a RELOAD message: header, contents, security block, every
//! body by its code, and the Chord bodies. Decoding must never panic, and
//! whatever decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reload_wire::chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate};
use reload_wire::usages::{SipRegistration, TurnServer};
use reload_wire::{Body, Decode, DecodeContext, Message, MessageCode};

fuzz_target!(|data: &[u8]| {
    let ctx = DecodeContext::new(16, 1 << 16).unwrap();
    if let Ok(m) = Message::decode(data, &ctx) {
        assert_eq!(m.to_bytes().unwrap(), data);
        if let Ok(b) = m.message_contents.body(&ctx) {
            assert_eq!(b.to_bytes().unwrap(), m.message_contents.message_body);
        }
    }
    // Bodies directly, so the fuzzer need not build a whole message to reach them.
    if let Some((&code, rest)) = data.split_first() {
        if let Ok(b) = Body::decode(MessageCode(u16::from(code % 0x27).max(1)), rest, &ctx) {
            assert_eq!(b.to_bytes().unwrap(), rest);
        }
        let _ = ChordUpdate::from_bytes(rest, &ctx);
        let _ = ChordLeaveData::from_bytes(rest, &ctx);
        let _ = ChordRouteQueryAns::from_bytes(rest, &ctx);
        let _ = SipRegistration::from_bytes(rest, &ctx);
        let _ = TurnServer::from_bytes(rest, &ctx);
    }
});
