//! Known-answer vectors: byte strings written by hand from the RFC 6940
//! field definitions (annotated per field, section cited), checked both
//! ways: the value encodes to exactly these bytes and the bytes decode to
//! exactly this value.

use reload_wire::chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateType};
use reload_wire::framing::FramedMessage;
use reload_wire::link_management::overlay_link_type;
use reload_wire::storage::UnknownKinds;
use reload_wire::usages::{kind_id, SipRegistration, TurnServer};
use reload_wire::*;
use std::net::SocketAddr;

/// Hex with whitespace and `# comments` removed.
fn h(annotated: &str) -> Vec<u8> {
    let digits: String = annotated
        .lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd hex in vector");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

fn ctx() -> DecodeContext {
    DecodeContext::default()
}

fn n1() -> NodeId {
    NodeId::from_u128(u128::from_be_bytes([0x11; 16]))
}
fn n2() -> NodeId {
    NodeId::from_u128(u128::from_be_bytes([0x22; 16]))
}
const N1: &str = "11111111111111111111111111111111";
const N2: &str = "22222222222222222222222222222222";

fn foo() -> ResourceId {
    ResourceId(b"FOO".to_vec())
}

fn sa(s: &str) -> IpAddressPort {
    IpAddressPort::Ip(s.parse::<SocketAddr>().unwrap())
}

fn check<T: Encode + Decode + PartialEq + std::fmt::Debug>(value: T, annotated: &str) {
    let bytes = h(annotated);
    assert_eq!(value.to_bytes().unwrap(), bytes, "encoding of {value:?}");
    assert_eq!(T::from_bytes(&bytes, &ctx()).unwrap(), value, "decoding");
}

fn check_body(body: Body, annotated: &str) {
    let bytes = h(annotated);
    assert_eq!(body.to_bytes().unwrap(), bytes, "encoding of {body:?}");
    assert_eq!(
        Body::decode(body.message_code(), &bytes, &ctx()).unwrap(),
        body,
        "decoding"
    );
}

fn anonymous_signature() -> &'static str {
    "00 00        # SignatureAndHashAlgorithm {none, anonymous}
     03 0000      # SignerIdentity none, length 0
     0000         # signature_value<0..2^16-1> empty"
}

#[test]
fn ip_address_port_rfc_example() {
    // The example of §6.3.1.1 verbatim.
    check(sa("192.0.2.1:6084"), "01 06 c0000201 17c4");
    check(sa("[2001:db8::1]:5060"), "02 12 20010db8000000000000000000000001 13c4");
}

#[test]
fn destinations() {
    // §6.3.2.2: type, length of destination_data, data.
    check(Destination::Node(n1()), &format!("01 10 {N1}"));
    // ResourceId keeps its own length byte inside the TLV ("FOO" = 03 46 4f 4f, §6.3.1.1).
    check(Destination::Resource(foo()), "02 04 03 464f4f");
    check(Destination::OpaqueId(vec![0xaa, 0xbb]), "03 03 02 aabb");
    // Compressed form: a uint16 with the top bit set.
    check(Destination::CompressedOpaqueId(0x8123), "8123");
}

#[test]
fn whole_message_with_forwarding_header() {
    // §6.3.2 forwarding header, §6.3.3 contents (ping_req), §6.3.4 security block.
    let m = Message {
        forwarding_header: ForwardingHeader {
            overlay: 0x0102_0304,
            configuration_sequence: 5,
            version: 0x0a,
            ttl: 100,
            fragment: Fragment::UNFRAGMENTED,
            transaction_id: 0x0102_0304_0506_0708,
            max_response_length: 0,
            via_list: vec![],
            destination_list: vec![Destination::Node(n1())],
            options: vec![],
        },
        message_contents: MessageContents {
            message_code: MessageCode::PING_REQ,
            message_body: vec![0, 0],
            extensions: vec![],
        },
        security_block: SecurityBlock {
            certificates: vec![],
            signature: Signature {
                algorithm: SignatureAndHashAlgorithm::RSA_SHA256,
                identity: SignerIdentity::CertHash {
                    hash_alg: 4,
                    certificate_hash: vec![0xaa],
                },
                signature_value: vec![0xbb, 0xcc],
            },
        },
    };
    let bytes = h(&format!(
        "d2454c4f            # relo_token
         01020304            # overlay
         0005                # configuration_sequence
         0a                  # version 1.0
         64                  # ttl 100
         c0000000            # fragment: high bit, last fragment, offset 0
         00000052            # length 82 = 38 fixed + 18 destinations + 12 contents + 14 security
         0102030405060708    # transaction_id
         00000000            # max_response_length
         0000                # via_list_length
         0012                # destination_list_length 18
         0000                # options_length
         01 10 {N1}          # Destination node
         0017                # message_code ping_req
         00000002 0000       # message_body<0..2^32-1>: PingReq with empty padding
         00000000            # extensions<0..2^32-1> empty
         0000                # certificates<0..2^16-1> empty
         04 01               # sha256, rsa
         01 0003 04 01 aa    # SignerIdentity cert_hash: length 3, hash_alg, certificate_hash<0..2^8-1>
         0002 bbcc           # signature_value"
    ));
    assert_eq!(m.to_bytes().unwrap(), bytes);
    assert_eq!(Message::decode(&bytes, &ctx()).unwrap(), m);
    // The signature input of §6.3.4: overlay || transaction_id || MessageContents || SignerIdentity.
    let input = Message::signature_input(
        m.forwarding_header.overlay,
        m.forwarding_header.transaction_id,
        &m.message_contents,
        &m.security_block.signature.identity,
    )
    .unwrap();
    assert_eq!(
        input,
        h("01020304 0102030405060708 0017 00000002 0000 00000000 01 0003 04 01 aa")
    );
}

#[test]
fn header_parts() {
    check(
        ForwardingOption {
            option_type: 1,
            flags: 0x04,
            option: vec![9, 9],
        },
        "01 04 0002 0909 # type exp-forward, RESPONSE_COPY, length, option",
    );
    check(
        MessageExtension {
            extension_type: 1,
            critical: false,
            extension_contents: b"exp".to_vec(),
        },
        "0001 00 00000003 657870",
    );
    check(
        GenericCertificate {
            certificate_type: 0,
            certificate: vec![1, 2, 3],
        },
        "00 0003 010203 # X.509, certificate<0..2^16-1>",
    );
    check(
        SignerIdentity::CertHashNodeId {
            hash_alg: 4,
            certificate_node_id_hash: vec![0xaa, 0xbb],
        },
        "02 0004 04 02 aabb # cert_hash_node_id",
    );
}

#[test]
fn probe() {
    // §6.4.2.5: requested_info<0..2^8-1>; ProbeInformation type, length, uint32.
    check_body(
        Body::ProbeReq(ProbeReq {
            requested_info: vec![1, 3],
        }),
        "02 01 03",
    );
    check_body(
        Body::ProbeAns(ProbeAns {
            probe_info: vec![ProbeInformation::Uptime(3600)],
        }),
        "0006 03 04 00000e10",
    );
}

#[test]
fn attach() {
    // §6.5.1.1 AttachReqAns with one host candidate.
    let body = Body::AttachReq(AttachReqAns {
        ufrag: b"u".to_vec(),
        password: b"p".to_vec(),
        role: b"active".to_vec(),
        candidates: vec![IceCandidate {
            addr_port: sa("192.0.2.1:6084"),
            overlay_link: overlay_link_type::TLS_TCP_FH_NO_ICE,
            foundation: b"1".to_vec(),
            priority: 0x7eff_ffff,
            cand_type: CandType::Host,
            extensions: vec![],
        }],
        send_update: true,
    });
    check_body(
        body,
        "01 75                # ufrag<0..2^8-1>
         01 70                # password
         06 616374697665      # role active
         0012                 # candidates<0..2^16-1>: 18 bytes
         01 06 c0000201 17c4  # addr_port
         04                   # overlay_link TLS-TCP-FH-NO-ICE
         01 31                # foundation<0..255>
         7effffff             # priority
         01                   # type host (no rel_addr_port)
         0000                 # extensions empty
         01                   # send_update true",
    );
}

#[test]
fn app_attach_with_relay_candidate() {
    // §6.5.2.1 AppAttachReq; relay candidates carry rel_addr_port.
    let body = Body::AppAttachReq(AppAttachReq {
        ufrag: b"u".to_vec(),
        password: b"p".to_vec(),
        application: 5060,
        role: b"passive".to_vec(),
        candidates: vec![IceCandidate {
            addr_port: sa("198.51.100.7:3478"),
            overlay_link: overlay_link_type::DTLS_UDP_SR,
            foundation: b"3".to_vec(),
            priority: 0x00ff_ffff,
            cand_type: CandType::Relay {
                rel_addr_port: sa("203.0.113.9:50000"),
            },
            extensions: vec![IceExtension {
                name: b"a".to_vec(),
                value: b"b".to_vec(),
            }],
        }],
    });
    check_body(
        body,
        "01 75 01 70              # ufrag, password
         13c4                     # application 5060 (SIP)
         07 70617373697665        # role passive
         0020                     # candidates: 32 bytes
         01 06 c6336407 0d96      # addr_port 198.51.100.7:3478
         01                       # DTLS-UDP-SR
         01 33                    # foundation 3
         00ffffff                 # priority
         04                       # relay
         01 06 cb007109 c350      # rel_addr_port 203.0.113.9:50000
         0006 0001 61 0001 62     # extensions: name<0..2^16-1>, value<0..2^16-1>",
    );
}

#[test]
fn store() {
    // §7.4.1.1 StoreReq → StoreKindData → StoredData (§7) → single value (§7.2.1).
    let body = Body::StoreReq(StoreReq {
        resource: foo(),
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind: kind_id::TURN_SERVICE,
            generation_counter: 1,
            values: vec![StoredData {
                storage_time: 0x0000_018b_cfe5_6800,
                lifetime: 3600,
                value: StoredDataValue::SingleValue(DataValue {
                    exists: true,
                    value: b"hi".to_vec(),
                }),
                signature: Signature::anonymous(),
            }],
        }],
    });
    check_body(
        body,
        &format!(
            "03 464f4f           # resource FOO
             00                  # replica_number
             0000002e            # kind_data<0..2^32-1>: 46 bytes
             00000002            # kind TURN-SERVICE
             0000000000000001    # generation_counter
             0000001e            # values<0..2^32-1>: 30 bytes
             0000001a            # StoredData.length: 26 bytes follow
             0000018bcfe56800    # storage_time
             00000e10            # lifetime 3600
             01 00000002 6869    # DataValue exists, value<0..2^32-1>
             {}",
            anonymous_signature()
        ),
    );
    check_body(
        Body::StoreAns(StoreAns {
            kind_responses: vec![StoreKindResponse {
                kind: 1,
                generation_counter: 2,
                replicas: vec![n1()],
            }],
        }),
        &format!("001e 00000001 0000000000000002 0010 {N1} # §7.4.1.2"),
    );
}

#[test]
fn fetch() {
    // §7.4.2.1: one specifier per data model.
    let body = Body::FetchReq(FetchReq {
        resource: foo(),
        specifiers: vec![
            StoredDataSpecifier {
                kind: kind_id::SIP_REGISTRATION,
                generation: 0,
                model_specifier: ModelSpecifier::Dictionary(vec![b"k".to_vec()]),
            },
            StoredDataSpecifier {
                kind: kind_id::CERTIFICATE_BY_NODE,
                generation: 0,
                model_specifier: ModelSpecifier::Array(vec![ArrayRange {
                    first: 0,
                    last: 0xffff_ffff,
                }]),
            },
            StoredDataSpecifier {
                kind: kind_id::TURN_SERVICE,
                generation: 7,
                model_specifier: ModelSpecifier::SingleValue,
            },
        ],
    });
    check_body(
        body,
        "03 464f4f                                # resource
         0039                                     # specifiers<0..2^16-1>: 57 bytes
         00000001 0000000000000000 0005 0003 0001 6b   # dictionary: length 5, keys<..>: key k
         00000003 0000000000000000 000a 0008 00000000 ffffffff  # array: one ArrayRange 0..last
         00000002 0000000000000007 0000           # single value: empty specifier",
    );
    // §7.4.2.2 FetchAns with a dictionary entry (§7.2.3).
    let body = Body::FetchAns(FetchAns {
        kind_responses: vec![FetchKindResponse {
            kind: kind_id::SIP_REGISTRATION,
            generation: 2,
            values: vec![StoredData {
                storage_time: 1,
                lifetime: 60,
                value: StoredDataValue::Dictionary(DictionaryEntry {
                    key: b"k".to_vec(),
                    value: DataValue {
                        exists: true,
                        value: b"v".to_vec(),
                    },
                }),
                signature: Signature::anonymous(),
            }],
        }],
    });
    check_body(
        body,
        &format!(
            "00000030 00000001 0000000000000002   # kind_responses 48 bytes; kind; generation
             00000020 0000001c                    # values 32 bytes; StoredData.length 28
             0000000000000001 0000003c            # storage_time, lifetime
             0001 6b 01 00000001 76               # DictionaryEntry key k, DataValue v
             {}",
            anonymous_signature()
        ),
    );
}

#[test]
fn stat() {
    check_body(
        Body::StatReq(StatReq {
            resource: foo(),
            specifiers: vec![StoredDataSpecifier {
                kind: 2,
                generation: 0,
                model_specifier: ModelSpecifier::SingleValue,
            }],
        }),
        "03 464f4f 000e 00000002 0000000000000000 0000 # §7.4.3.1",
    );
    // §7.4.3.2: StoredMetaData's first field is the length of the rest.
    check_body(
        Body::StatAns(StatAns {
            kind_responses: vec![StatKindResponse {
                kind: kind_id::CERTIFICATE_BY_NODE,
                generation: 1,
                values: vec![StoredMetaData {
                    storage_time: 1,
                    lifetime: 60,
                    metadata: MetaDataValue::Array {
                        index: 0,
                        value: MetaData {
                            exists: true,
                            value_length: 2,
                            hash_algorithm: 4,
                            hash_value: vec![0xab, 0xcd],
                        },
                    },
                }],
            }],
        }),
        "0000002d 00000003 0000000000000001 # kind_responses 45 bytes; kind; generation
         0000001d                           # values 29 bytes
         00000019                           # StoredMetaData length 25
         0000000000000001 0000003c          # storage_time, lifetime
         00000000                           # ArrayEntryMeta index
         01 00000002 04 02 abcd             # MetaData exists, value_length, sha256, hash_value<0..255>",
    );
}

#[test]
fn find() {
    check_body(
        Body::FindReq(FindReq {
            resource: foo(),
            kinds: vec![2, 3],
        }),
        "03 464f4f 08 00000002 00000003 # §7.4.4.1 kinds<0..2^8-1>",
    );
    check_body(
        Body::FindAns(FindAns {
            results: vec![FindKindData {
                kind: 2,
                closest: ResourceId(b"FOP".to_vec()),
            }],
        }),
        "0008 00000002 03 464f50 # §7.4.4.2",
    );
}

#[test]
fn join_leave_update_route_query() {
    check_body(
        Body::JoinReq(JoinReq {
            joining_peer_id: n1(),
            overlay_specific_data: vec![],
        }),
        &format!("{N1} 0000 # §6.4.2.1"),
    );
    check_body(Body::JoinAns(JoinAns::default()), "0000");
    let leave = ChordLeaveData::FromPred {
        predecessors: vec![n2()],
    };
    check(leave.clone(), &format!("02 0010 {N2} # §10.9 from_pred"));
    check_body(
        Body::LeaveReq(LeaveReq {
            leaving_peer_id: n1(),
            overlay_specific_data: leave.to_bytes().unwrap(),
        }),
        &format!("{N1} 0013 02 0010 {N2} # §6.4.2.2 carrying ChordLeaveData"),
    );
    check_body(Body::LeaveAns, "");
    check(
        ChordUpdate {
            uptime: 60,
            update: ChordUpdateType::Neighbors {
                predecessors: vec![n1()],
                successors: vec![n2()],
            },
        },
        &format!("0000003c 02 0010 {N1} 0010 {N2} # §10.7 neighbors"),
    );
    check(
        ChordUpdate {
            uptime: 60,
            update: ChordUpdateType::PeerReady,
        },
        "0000003c 01",
    );
    check_body(Body::UpdateReq(h("0000003c 01")), "0000003c 01");
    check_body(Body::UpdateAns(vec![]), "");
    check_body(
        Body::RouteQueryReq(RouteQueryReq {
            send_update: false,
            destination: Destination::Resource(foo()),
            overlay_specific_data: vec![],
        }),
        "00 02 04 03 464f4f 0000 # §6.4.2.4.1",
    );
    check(ChordRouteQueryAns { next_peer: n2() }, N2);
}

#[test]
fn ping_config_update_error() {
    check_body(Body::PingReq(PingReq { padding: vec![0, 0] }), "0002 0000");
    check_body(
        Body::PingAns(PingAns {
            response_id: 0x0102_0304_0506_0708,
            time: 0x0000_018b_cfe5_6800,
        }),
        "0102030405060708 0000018bcfe56800 # §6.5.3.2",
    );
    check_body(
        Body::ConfigUpdateReq(ConfigUpdateReq::Config(b"<x/>".to_vec())),
        "01 00000007 000004 3c782f3e # §6.5.4.1 type config, length, config_data<0..2^24-1>",
    );
    check_body(
        Body::ConfigUpdateReq(ConfigUpdateReq::Kinds(vec![b"<k/>".to_vec()])),
        "02 00000009 000006 0004 3c6b2f3e # kinds<0..2^24-1> of KindDescription<0..2^16-1>",
    );
    check_body(Body::ConfigUpdateAns, "");
    check_body(
        Body::Error(ErrorResponse::new(ErrorCode::FORBIDDEN, "no")),
        "0002 0002 6e6f # §6.3.3.1 Error_Forbidden",
    );
    check_body(
        Body::Error(ErrorResponse::new(
            ErrorCode::UNKNOWN_KIND,
            UnknownKinds(vec![0xf000_0001, 0xf000_0002]).to_bytes().unwrap(),
        )),
        "000c 0009 08 f0000001 f0000002 # Error_Unknown_Kind with unknown_kinds<0..2^8-1>",
    );
}

#[test]
fn error_codes_match_the_registry() {
    // §14.9, every code.
    let names: Vec<(u16, &str)> = ErrorCode::ALL.iter().map(|c| (c.0, c.name().unwrap())).collect();
    assert_eq!(names.len(), 19);
    assert_eq!(names[0], (0x02, "Error_Forbidden"));
    assert_eq!(names[18], (0x14, "Error_Invalid_Message"));
    assert_eq!(ErrorCode(0x0c).name(), Some("Error_Unknown_Kind"));
    assert_eq!(ErrorCode(0x01).name(), None);
}

#[test]
fn framing() {
    // §6.6.2
    let data = FramedMessage::Data {
        sequence: 1,
        message: b"abc".to_vec(),
    };
    let bytes = h("80 00000001 000003 616263 # data, sequence, message<0..2^24-1>");
    assert_eq!(data.to_bytes().unwrap(), bytes);
    assert_eq!(FramedMessage::decode(&bytes, &ctx()).unwrap(), data);
    let ack = FramedMessage::Ack {
        ack_sequence: 5,
        received: 3,
    };
    let bytes = h("81 00000005 00000003 # ack, ack_sequence, received");
    assert_eq!(ack.to_bytes().unwrap(), bytes);
    assert_eq!(FramedMessage::decode(&bytes, &ctx()).unwrap(), ack);
}

#[test]
fn usage_values() {
    check(
        TurnServer {
            iteration: 1,
            server_address: sa("192.0.2.1:3478"),
        },
        "01 01 06 c0000201 0d96 # §9 iteration, IpAddressPort",
    );
    check(
        SipRegistration::Uri(b"sip:a@b".to_vec()),
        "01 0009 0007 7369703a614062 # RFC 7904 sip_registration_uri",
    );
    check(
        SipRegistration::Route {
            contact_prefs: vec![],
            destination_list: vec![Destination::Node(n1())],
        },
        &format!("02 0016 0000 0012 01 10 {N1} # sip_registration_route"),
    );
}

#[test]
fn overlay_hash_is_low_32_bits_of_sha1() {
    // Python: hashlib.sha1(b"overlay.example.org").hexdigest()[-8:] == "9aa32b8d".
    assert_eq!(overlay_hash("overlay.example.org"), 0x9aa3_2b8d);
}
