//! Any bytes as a datagram to a peer's overlay UDP port, as anyone on the
//! Internet can send one: served by the STUN Binding server and taken as
//! a response by the linked-peer STUN client. No panic; an answer is a
//! STUN response to the same transaction, never more than three times
//! the size of what asked for it (no amplification), and carries the
//! asker's address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peer_core::stun::message::{Class, Message};
use peer_core::stun::server::{BindingServer, Served};
use peer_core::stun::servers::StunServers;
use reload_wire::NodeId;
use std::net::SocketAddr;

fuzz_target!(|data: &[u8]| {
    let from: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
    let mut server = BindingServer::default();
    if let Served::Answer(answer) = server.serve(0, data, from) {
        assert!(answer.len() <= 3 * data.len(), "{} bytes for {}", answer.len(), data.len());
        let request = Message::decode(data).unwrap();
        let answer = Message::decode(&answer).unwrap();
        assert_eq!(answer.transaction_id, request.transaction_id);
        match answer.class {
            Class::Success => assert_eq!(answer.xor_mapped_address(), Ok(from)),
            Class::Error => {}
            other => panic!("answered with a {other:?}"),
        }
    }
    let mut servers = StunServers::default();
    let mut id = || [0u8; 12];
    servers.sync(0, [(NodeId::from_u128(1), from)], &mut id);
    servers.on_response(1, data, from);
    assert!(servers.mappings().count() <= 1);
});
