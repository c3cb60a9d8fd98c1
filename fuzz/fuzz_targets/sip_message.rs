//! Any bytes as what a phone or a peer sends to the SIP port: framed as a
//! TCP stream would be, taken in (`sip::intake`), re-serialised, and handed
//! to the registrar and the proxy. No panic; whatever parses survives a
//! round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::message::{frame, Framing};
use sip::proxy::{Interfaces, Location, Output, Proxy, Side};
use sip::registrar::{Flow, Registrar, Transport};
use sip::SipMessage;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let _ = frame(data);
    let _ = SipMessage::parse_leniently(data);
    let message = match sip::intake::intake(data) {
        sip::intake::Intake::Request(m) | sip::intake::Intake::Response(m) => m,
        _ => return,
    };
    let again = SipMessage::parse(&message.to_bytes()).expect("what we write parses");
    assert_eq!(again.to_bytes(), message.to_bytes());
    if let Ok(Framing::Message(len)) = frame(data) {
        assert!(len <= data.len());
    }
    let users = HashMap::from([("alice".to_string(), sip::digest::Ha1::new("alice", "fuzz.test", "pw"))]);
    let mut registrar = Registrar::new("fuzz.test", users, [1; 32]);
    let me = Interfaces {
        phones: "127.0.0.1:5060".parse().unwrap(),
        overlay: "127.0.0.1:6060".parse().unwrap(),
    };
    let mut proxy = Proxy::new(me, 1);
    let flow = Flow {
        transport: Transport::Udp,
        remote: "127.0.0.1:7000".parse().unwrap(),
    };
    if message.method() == Some("REGISTER") {
        let _ = registrar.register(0, &message, flow);
        return;
    }
    let out = if message.is_request() {
        proxy.on_request(0, message.clone(), flow, Side::Overlay, &mut registrar)
    } else {
        proxy.on_response(0, message.clone(), flow)
    };
    for o in out {
        if let Output::Locate { lookup, .. } = o {
            let _ = proxy.located(1, lookup, Location::NotFound, &registrar);
        }
    }
    let _ = proxy.on_request(2, message, flow, Side::Phones, &mut registrar);
    let _ = proxy.tick(100_000);
});
