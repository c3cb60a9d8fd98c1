//! Keeping phones behind NATs reachable: a phone that registered over UDP
//! from an address other than its Contact's is reached through the NAT
//! binding its REGISTER opened (RFC 3581), which the NAT drops after a
//! minute or two of silence (RFC 4787 REQ-5 asks at least two minutes;
//! many home routers keep 30 s). The peer sends such a phone an OPTIONS
//! (RFC 3261 §11) now and then, as conventional proxies do for phones
//! without SIP outbound (RFC 5626 keepalives are the phone's own): the
//! request and the phone's answer both refresh the binding, the answer
//! also where a NAT refreshes only on outbound packets (RFC 4787 REQ-6).
//! The answer matches no transaction and is dropped like any stray
//! response to this peer's Via.

use super::*;

impl Proxy {
    /// An OPTIONS to the phone whose Contact is `contact`, over `flow`
    /// (the flow it registered from).
    pub fn keep_nat_open(&mut self, flow: Flow, contact: &str, domain: &str) -> Vec<Output> {
        let id = self.unique();
        let via = self.me.via(Side::Phones, flow, &format!("z9hG4bK{id}"));
        let request = format!(
            "OPTIONS {contact} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: <sip:keepalive@{domain}>;tag={id}\r\nTo: <{contact}>\r\nCall-ID: {id}@{domain}\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        self.send(flow, request.into_bytes());
        self.take()
    }
}
