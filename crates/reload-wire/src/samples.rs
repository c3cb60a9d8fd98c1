//! One realistic example of every message of RFC 6940 (and the Chord-reload
//! bodies inside Update, RouteQuery, Join and Leave). The CLI writes them
//! to a pcap for Wireshark, the tests hand them to tshark, the benchmarks
//! and fuzzers start from them.

use crate::address::IpAddressPort;
use crate::body::Body;
use crate::chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateType};
use crate::codec::Encode;
use crate::contents::{ErrorCode, ErrorResponse, MessageContents, MessageExtension};
use crate::header::{Destination, ForwardingHeader, ForwardingOption};
use crate::ids::{overlay_hash, NodeId, ResourceId};
use crate::link_management::{
    overlay_link_type, AppAttachReq, AttachReqAns, CandType, ConfigUpdateReq, IceCandidate, IceExtension, PingAns,
    PingReq,
};
use crate::message::Message;
use crate::security::{
    hash_algorithm, GenericCertificate, SecurityBlock, Signature, SignatureAndHashAlgorithm, SignerIdentity,
};
use crate::storage::*;
use crate::topology::{JoinAns, JoinReq, LeaveReq, ProbeAns, ProbeInformation, ProbeReq, RouteQueryReq};
use crate::usages::{kind_id, SipRegistration, TurnServer};
use std::net::SocketAddr;

/// A real DER X.509 certificate (P-256, CN=alice@overlay.example.org):
/// Wireshark dissects certificates, so the samples carry a genuine one.
pub const SAMPLE_CERTIFICATE: &[u8] = include_bytes!("fixtures/sample-cert.der");

/// The overlay name the samples use.
pub const OVERLAY: &str = "overlay.example.org";

pub fn node(n: u8) -> NodeId {
    NodeId::from_u128(u128::from_be_bytes([n; 16]))
}

fn resource() -> ResourceId {
    ResourceId(vec![0x2c; 16])
}

fn addr(s: &str) -> IpAddressPort {
    IpAddressPort::Ip(s.parse::<SocketAddr>().expect("literal address"))
}

fn signature(seed: u8) -> Signature {
    Signature {
        algorithm: SignatureAndHashAlgorithm::RSA_SHA256,
        identity: SignerIdentity::CertHash {
            hash_alg: hash_algorithm::SHA256,
            certificate_hash: vec![seed; 32],
        },
        signature_value: (0..64).map(|i| seed ^ i).collect(),
    }
}

fn stored(value: StoredDataValue, seed: u8) -> StoredData {
    StoredData {
        storage_time: 1_700_000_000_000 + u64::from(seed),
        lifetime: 3600,
        value,
        signature: signature(seed),
    }
}

fn candidates() -> Vec<IceCandidate> {
    vec![
        IceCandidate {
            addr_port: addr("192.0.2.1:6084"),
            overlay_link: overlay_link_type::TLS_TCP_FH_NO_ICE,
            foundation: b"1".to_vec(),
            priority: 2_130_706_431,
            cand_type: CandType::Host,
            extensions: vec![],
        },
        IceCandidate {
            addr_port: addr("[2001:db8::1]:6084"),
            overlay_link: overlay_link_type::DTLS_UDP_SR,
            foundation: b"2".to_vec(),
            priority: 1_694_498_815,
            cand_type: CandType::Srflx {
                rel_addr_port: addr("10.0.0.1:6084"),
            },
            extensions: vec![IceExtension {
                name: b"network-id".to_vec(),
                value: b"1".to_vec(),
            }],
        },
        IceCandidate {
            addr_port: addr("198.51.100.7:3478"),
            overlay_link: overlay_link_type::DTLS_UDP_SR,
            foundation: b"3".to_vec(),
            priority: 16_777_215,
            cand_type: CandType::Relay {
                rel_addr_port: addr("203.0.113.9:50000"),
            },
            extensions: vec![],
        },
    ]
}

fn sip_route() -> Vec<u8> {
    SipRegistration::Route {
        contact_prefs: b"audio;video".to_vec(),
        destination_list: vec![Destination::Node(node(0x20))],
    }
    .to_bytes()
    .expect("small")
}

fn sip_uri() -> Vec<u8> {
    SipRegistration::Uri(b"sip:alice@192.0.2.1".to_vec())
        .to_bytes()
        .expect("small")
}

fn meta(exists: bool) -> MetaData {
    MetaData {
        exists,
        value_length: 11,
        hash_algorithm: hash_algorithm::SHA256,
        hash_value: vec![0xab; 32],
    }
}

/// One body of every message code RFC 6940 defines, with a label naming
/// what it shows. Chord-reload bodies ride inside Join, Update, RouteQuery
/// and Leave.
pub fn bodies() -> Vec<(&'static str, Body)> {
    let data = |v: &[u8]| DataValue {
        exists: true,
        value: v.to_vec(),
    };
    let chord_update = ChordUpdate {
        uptime: 4242,
        update: ChordUpdateType::Full {
            predecessors: vec![node(0x10), node(0x0f)],
            successors: vec![node(0x30), node(0x31), node(0x32)],
            fingers: vec![node(0x40), node(0x80), node(0xc0)],
        },
    };
    let attach = AttachReqAns {
        ufrag: b"ufragA".to_vec(),
        password: b"icepasswordA1234567890".to_vec(),
        role: b"passive".to_vec(),
        candidates: candidates(),
        send_update: true,
    };
    vec![
        (
            "probe_req",
            Body::ProbeReq(ProbeReq {
                requested_info: vec![1, 2, 3],
            }),
        ),
        (
            "probe_ans",
            Body::ProbeAns(ProbeAns {
                probe_info: vec![
                    ProbeInformation::ResponsibleSet(250_000_000),
                    ProbeInformation::NumResources(17),
                    ProbeInformation::Uptime(3600),
                ],
            }),
        ),
        ("attach_req", Body::AttachReq(attach.clone())),
        (
            "attach_ans",
            Body::AttachAns(AttachReqAns {
                role: b"active".to_vec(),
                send_update: false,
                ..attach
            }),
        ),
        (
            "store_req",
            Body::StoreReq(StoreReq {
                resource: resource(),
                replica_number: 0,
                kind_data: vec![
                    StoreKindData {
                        kind: kind_id::SIP_REGISTRATION,
                        generation_counter: 7,
                        values: vec![stored(
                            StoredDataValue::Dictionary(DictionaryEntry {
                                key: node(0x20).as_bytes().to_vec(),
                                value: data(&sip_route()),
                            }),
                            1,
                        )],
                    },
                    StoreKindData {
                        kind: kind_id::CERTIFICATE_BY_NODE,
                        generation_counter: 1,
                        values: vec![stored(
                            StoredDataValue::Array(ArrayEntry {
                                index: 0xffff_ffff,
                                value: data(SAMPLE_CERTIFICATE),
                            }),
                            2,
                        )],
                    },
                    StoreKindData {
                        kind: kind_id::TURN_SERVICE,
                        generation_counter: 3,
                        values: vec![stored(
                            StoredDataValue::SingleValue(data(
                                &TurnServer {
                                    iteration: 1,
                                    server_address: addr("192.0.2.1:3478"),
                                }
                                .to_bytes()
                                .expect("small"),
                            )),
                            3,
                        )],
                    },
                ],
            }),
        ),
        (
            "store_ans",
            Body::StoreAns(StoreAns {
                kind_responses: vec![StoreKindResponse {
                    kind: kind_id::SIP_REGISTRATION,
                    generation_counter: 8,
                    replicas: vec![node(0x30), node(0x31)],
                }],
            }),
        ),
        (
            "fetch_req",
            Body::FetchReq(FetchReq {
                resource: resource(),
                specifiers: vec![
                    StoredDataSpecifier {
                        kind: kind_id::SIP_REGISTRATION,
                        generation: 0,
                        model_specifier: ModelSpecifier::Dictionary(vec![node(0x20).as_bytes().to_vec()]),
                    },
                    StoredDataSpecifier {
                        kind: kind_id::CERTIFICATE_BY_USER,
                        generation: 5,
                        model_specifier: ModelSpecifier::Array(vec![ArrayRange {
                            first: 0,
                            last: 0xffff_ffff,
                        }]),
                    },
                    StoredDataSpecifier {
                        kind: kind_id::TURN_SERVICE,
                        generation: 0,
                        model_specifier: ModelSpecifier::SingleValue,
                    },
                ],
            }),
        ),
        (
            "fetch_ans",
            Body::FetchAns(FetchAns {
                kind_responses: vec![FetchKindResponse {
                    kind: kind_id::SIP_REGISTRATION,
                    generation: 8,
                    values: vec![stored(
                        StoredDataValue::Dictionary(DictionaryEntry {
                            key: node(0x20).as_bytes().to_vec(),
                            value: data(&sip_uri()),
                        }),
                        4,
                    )],
                }],
            }),
        ),
        (
            "find_req",
            Body::FindReq(FindReq {
                resource: resource(),
                kinds: vec![kind_id::TURN_SERVICE],
            }),
        ),
        (
            "find_ans",
            Body::FindAns(FindAns {
                results: vec![FindKindData {
                    kind: kind_id::TURN_SERVICE,
                    closest: ResourceId(vec![0x2d; 16]),
                }],
            }),
        ),
        (
            "join_req",
            Body::JoinReq(JoinReq {
                joining_peer_id: node(0x21),
                overlay_specific_data: vec![],
            }),
        ),
        ("join_ans", Body::JoinAns(JoinAns::default())),
        (
            "leave_req (ChordLeaveData from_succ)",
            Body::LeaveReq(LeaveReq {
                leaving_peer_id: node(0x30),
                overlay_specific_data: ChordLeaveData::FromSucc {
                    successors: vec![node(0x31), node(0x32)],
                }
                .to_bytes()
                .expect("small"),
            }),
        ),
        ("leave_ans", Body::LeaveAns),
        (
            "update_req (ChordUpdate full)",
            Body::UpdateReq(chord_update.to_bytes().expect("small")),
        ),
        ("update_ans", Body::UpdateAns(vec![])),
        (
            "route_query_req",
            Body::RouteQueryReq(RouteQueryReq {
                send_update: true,
                destination: Destination::Resource(resource()),
                overlay_specific_data: vec![],
            }),
        ),
        (
            "route_query_ans (ChordRouteQueryAns)",
            Body::RouteQueryAns(ChordRouteQueryAns { next_peer: node(0x40) }.to_bytes().expect("small")),
        ),
        ("ping_req", Body::PingReq(PingReq { padding: vec![0; 32] })),
        (
            "ping_ans",
            Body::PingAns(PingAns {
                response_id: 0x0123_4567_89ab_cdef,
                time: 1_700_000_000_123,
            }),
        ),
        (
            "stat_req",
            Body::StatReq(StatReq {
                resource: resource(),
                specifiers: vec![StoredDataSpecifier {
                    kind: kind_id::SIP_REGISTRATION,
                    generation: 0,
                    model_specifier: ModelSpecifier::Dictionary(vec![]),
                }],
            }),
        ),
        (
            "stat_ans",
            Body::StatAns(StatAns {
                kind_responses: vec![
                    StatKindResponse {
                        kind: kind_id::SIP_REGISTRATION,
                        generation: 8,
                        values: vec![StoredMetaData {
                            storage_time: 1_700_000_000_004,
                            lifetime: 3600,
                            metadata: MetaDataValue::Dictionary {
                                key: node(0x20).as_bytes().to_vec(),
                                value: meta(true),
                            },
                        }],
                    },
                    StatKindResponse {
                        kind: kind_id::TURN_SERVICE,
                        generation: 3,
                        values: vec![StoredMetaData {
                            storage_time: 1_700_000_000_003,
                            lifetime: 3600,
                            metadata: MetaDataValue::SingleValue(meta(true)),
                        }],
                    },
                ],
            }),
        ),
        (
            "app_attach_req",
            Body::AppAttachReq(AppAttachReq {
                ufrag: b"ufragS".to_vec(),
                password: b"icepasswordS1234567890".to_vec(),
                application: 5060,
                role: b"passive".to_vec(),
                candidates: candidates()[..1].to_vec(),
            }),
        ),
        (
            "app_attach_ans",
            Body::AppAttachAns(AppAttachReq {
                ufrag: b"ufragT".to_vec(),
                password: b"icepasswordT1234567890".to_vec(),
                application: 5060,
                role: b"active".to_vec(),
                candidates: candidates()[..1].to_vec(),
            }),
        ),
        (
            "config_update_req (kinds)",
            Body::ConfigUpdateReq(ConfigUpdateReq::Kinds(vec![
                b"<kind name=\"SIP-REGISTRATION\"><max-count>10</max-count></kind>".to_vec(),
            ])),
        ),
        ("config_update_ans", Body::ConfigUpdateAns),
        (
            "error (Error_Not_Found)",
            Body::Error(ErrorResponse::new(ErrorCode::NOT_FOUND, "no such resource")),
        ),
        (
            "error (Error_Unknown_Kind)",
            Body::Error(ErrorResponse::new(
                ErrorCode::UNKNOWN_KIND,
                UnknownKinds(vec![0xf000_0001, 0xf000_0002]).to_bytes().expect("small"),
            )),
        ),
        (
            "error (Error_Generation_Counter_Too_Low)",
            Body::Error(ErrorResponse::new(
                ErrorCode::GENERATION_COUNTER_TOO_LOW,
                StoreAns {
                    kind_responses: vec![StoreKindResponse {
                        kind: kind_id::SIP_REGISTRATION,
                        generation_counter: 12,
                        replicas: vec![],
                    }],
                }
                .to_bytes()
                .expect("small"),
            )),
        ),
    ]
}

/// Wraps `body` into a signed-looking message from node 0x20 to the sample
/// resource, with transaction id `tid`.
pub fn message(body: &Body, tid: u64) -> Message {
    let code = body.message_code();
    let mut header = ForwardingHeader::new(overlay_hash(OVERLAY), tid, Vec::new());
    header.configuration_sequence = 3;
    if code.is_request() {
        header.via_list = vec![Destination::Node(node(0x20))];
        header.destination_list = vec![Destination::Node(node(0x40)), Destination::Resource(resource())];
    } else {
        header.destination_list = vec![Destination::CompressedOpaqueId(0x8123), Destination::Node(node(0x20))];
        header.ttl = 98;
    }
    Message {
        forwarding_header: header,
        message_contents: MessageContents::from_body(body).expect("sample bodies are small"),
        security_block: SecurityBlock {
            certificates: vec![],
            signature: signature(0x5a),
        },
    }
}

/// Every sample message, with its label.
pub fn messages() -> Vec<(&'static str, Message)> {
    bodies()
        .into_iter()
        .enumerate()
        .map(|(i, (label, body))| (label, message(&body, 0x1000 + i as u64)))
        .collect()
}

/// A message exercising the rarer header features: an opaque destination,
/// a forwarding option, a message extension, certificates, and a
/// cert_hash_node_id signer.
pub fn header_features() -> Message {
    let mut m = message(&Body::PingReq(PingReq::default()), 0xfeed);
    m.forwarding_header.destination_list = vec![Destination::OpaqueId(vec![1, 2, 3, 4]), Destination::Node(node(0x40))];
    m.forwarding_header.options = vec![ForwardingOption {
        option_type: 1,
        flags: crate::header::forwarding_flags::RESPONSE_COPY,
        option: vec![9, 9],
    }];
    m.message_contents.extensions = vec![MessageExtension {
        extension_type: 1,
        critical: false,
        extension_contents: b"exp".to_vec(),
    }];
    m.security_block.signature.identity = SignerIdentity::CertHashNodeId {
        hash_alg: hash_algorithm::SHA256,
        certificate_node_id_hash: vec![0x77; 32],
    };
    m.security_block.certificates = vec![GenericCertificate {
        certificate_type: crate::security::certificate_type::X509,
        certificate: SAMPLE_CERTIFICATE.to_vec(),
    }];
    m
}
