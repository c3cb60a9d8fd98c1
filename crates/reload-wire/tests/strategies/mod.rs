//! proptest strategies for every RELOAD structure, within the limits the
//! length prefixes allow.

#![allow(dead_code)]

use proptest::collection::vec;
use proptest::prelude::*;
use reload_wire::chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateType};
use reload_wire::link_management::*;
use reload_wire::storage::*;
use reload_wire::topology::*;
use reload_wire::usages::{kind_id, SipRegistration, TurnServer};
use reload_wire::*;
use std::net::{IpAddr, SocketAddr};

pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

pub fn node_id() -> impl Strategy<Value = NodeId> {
    any::<u128>().prop_map(NodeId::from_u128)
}

pub fn resource_id() -> impl Strategy<Value = ResourceId> {
    bytes(40).prop_map(ResourceId)
}

pub fn ip_address_port() -> impl Strategy<Value = IpAddressPort> {
    prop_oneof![
        4 => (any::<IpAddr>(), any::<u16>()).prop_map(|(ip, p)| IpAddressPort::Ip(SocketAddr::new(ip, p))),
        1 => (3u8..=255, bytes(20)).prop_map(|(t, d)| IpAddressPort::Unknown { address_type: t, data: d }),
    ]
}

pub fn destination() -> impl Strategy<Value = Destination> {
    prop_oneof![
        node_id().prop_map(Destination::Node),
        resource_id().prop_map(Destination::Resource),
        bytes(30).prop_map(Destination::OpaqueId),
        (0x8000u16..=0xffff).prop_map(Destination::CompressedOpaqueId),
        (4u8..=0x7f, bytes(30)).prop_map(|(t, d)| Destination::Unknown {
            destination_type: t,
            data: d
        }),
    ]
}

pub fn forwarding_header() -> impl Strategy<Value = ForwardingHeader> {
    (
        (any::<u32>(), any::<u16>(), any::<u8>(), any::<u8>()),
        (any::<bool>(), 0u32..=0xff_ffff, 0u8..64),
        (any::<u64>(), any::<u32>()),
        vec(destination(), 0..4),
        vec(destination(), 0..4),
        vec(
            (any::<u8>(), any::<u8>(), bytes(10)).prop_map(|(t, f, o)| ForwardingOption {
                option_type: t,
                flags: f,
                option: o,
            }),
            0..3,
        ),
    )
        .prop_map(
            |((overlay, seq, version, ttl), (last, offset, reserved), (tid, mrl), via, dest, options)| {
                let raw = Fragment::new(last, offset).raw() | (u32::from(reserved) << 24);
                ForwardingHeader {
                    overlay,
                    configuration_sequence: seq,
                    version,
                    ttl,
                    fragment: Fragment::from_raw(raw).unwrap(),
                    transaction_id: tid,
                    max_response_length: mrl,
                    via_list: via,
                    destination_list: dest,
                    options,
                }
            },
        )
}

pub fn signer_identity() -> impl Strategy<Value = SignerIdentity> {
    prop_oneof![
        (any::<u8>(), bytes(64)).prop_map(|(h, c)| SignerIdentity::CertHash {
            hash_alg: h,
            certificate_hash: c
        }),
        (any::<u8>(), bytes(64)).prop_map(|(h, c)| SignerIdentity::CertHashNodeId {
            hash_alg: h,
            certificate_node_id_hash: c
        }),
        Just(SignerIdentity::None),
        (4u8..=255, bytes(20)).prop_map(|(t, d)| SignerIdentity::Unknown {
            identity_type: t,
            identity: d
        }),
    ]
}

pub fn signature() -> impl Strategy<Value = Signature> {
    (any::<u8>(), any::<u8>(), signer_identity(), bytes(128)).prop_map(|(h, s, identity, v)| Signature {
        algorithm: SignatureAndHashAlgorithm { hash: h, signature: s },
        identity,
        signature_value: v,
    })
}

pub fn security_block() -> impl Strategy<Value = SecurityBlock> {
    (
        vec(
            (any::<u8>(), bytes(64)).prop_map(|(t, c)| GenericCertificate {
                certificate_type: t,
                certificate: c,
            }),
            0..3,
        ),
        signature(),
    )
        .prop_map(|(certificates, signature)| SecurityBlock {
            certificates,
            signature,
        })
}

pub fn extension() -> impl Strategy<Value = MessageExtension> {
    (any::<u16>(), any::<bool>(), bytes(20)).prop_map(|(t, c, e)| MessageExtension {
        extension_type: t,
        critical: c,
        extension_contents: e,
    })
}

fn data_value() -> impl Strategy<Value = DataValue> {
    (any::<bool>(), bytes(40)).prop_map(|(exists, value)| DataValue { exists, value })
}

/// A Kind from the standard set paired with a value of its data model.
fn kind_and_value() -> impl Strategy<Value = (KindId, StoredDataValue)> {
    prop_oneof![
        data_value().prop_map(|v| (kind_id::TURN_SERVICE, StoredDataValue::SingleValue(v))),
        (any::<u32>(), data_value()).prop_map(|(index, value)| (
            kind_id::CERTIFICATE_BY_NODE,
            StoredDataValue::Array(ArrayEntry { index, value })
        )),
        (bytes(20), data_value()).prop_map(|(key, value)| (
            kind_id::SIP_REGISTRATION,
            StoredDataValue::Dictionary(DictionaryEntry { key, value })
        )),
    ]
}

fn stored_data_for(value: StoredDataValue) -> impl Strategy<Value = StoredData> {
    (any::<u64>(), any::<u32>(), signature()).prop_map(move |(storage_time, lifetime, signature)| StoredData {
        storage_time,
        lifetime,
        value: value.clone(),
        signature,
    })
}

pub fn store_kind_data() -> impl Strategy<Value = StoreKindData> {
    (kind_and_value(), any::<u64>(), 0usize..3).prop_flat_map(|((kind, value), generation_counter, n)| {
        vec(stored_data_for(value), n).prop_map(move |values| StoreKindData {
            kind,
            generation_counter,
            values,
        })
    })
}

pub fn store_req() -> impl Strategy<Value = StoreReq> {
    (resource_id(), any::<u8>(), vec(store_kind_data(), 0..3)).prop_map(|(resource, replica_number, kind_data)| {
        StoreReq {
            resource,
            replica_number,
            kind_data,
        }
    })
}

pub fn store_ans() -> impl Strategy<Value = StoreAns> {
    vec(
        (any::<u32>(), any::<u64>(), vec(node_id(), 0..3)).prop_map(|(kind, generation_counter, replicas)| {
            StoreKindResponse {
                kind,
                generation_counter,
                replicas,
            }
        }),
        0..3,
    )
    .prop_map(|kind_responses| StoreAns { kind_responses })
}

pub fn specifier() -> impl Strategy<Value = StoredDataSpecifier> {
    prop_oneof![
        any::<u64>().prop_map(|generation| StoredDataSpecifier {
            kind: kind_id::TURN_SERVICE,
            generation,
            model_specifier: ModelSpecifier::SingleValue
        }),
        (
            any::<u64>(),
            vec(
                (any::<u32>(), any::<u32>()).prop_map(|(first, last)| ArrayRange { first, last }),
                0..4
            )
        )
            .prop_map(|(generation, r)| StoredDataSpecifier {
                kind: kind_id::CERTIFICATE_BY_USER,
                generation,
                model_specifier: ModelSpecifier::Array(r),
            }),
        (any::<u64>(), vec(bytes(20), 0..4)).prop_map(|(generation, k)| StoredDataSpecifier {
            kind: kind_id::SIP_REGISTRATION,
            generation,
            model_specifier: ModelSpecifier::Dictionary(k),
        }),
    ]
}

pub fn fetch_req() -> impl Strategy<Value = FetchReq> {
    (resource_id(), vec(specifier(), 0..4)).prop_map(|(resource, specifiers)| FetchReq { resource, specifiers })
}

pub fn fetch_ans() -> impl Strategy<Value = FetchAns> {
    vec(store_kind_data(), 0..3).prop_map(|k| FetchAns {
        kind_responses: k
            .into_iter()
            .map(|d| FetchKindResponse {
                kind: d.kind,
                generation: d.generation_counter,
                values: d.values,
            })
            .collect(),
    })
}

fn metadata() -> impl Strategy<Value = MetaData> {
    (any::<bool>(), any::<u32>(), any::<u8>(), bytes(64)).prop_map(
        |(exists, value_length, hash_algorithm, hash_value)| MetaData {
            exists,
            value_length,
            hash_algorithm,
            hash_value,
        },
    )
}

pub fn stat_ans() -> impl Strategy<Value = StatAns> {
    let kind = prop_oneof![
        (any::<u64>(), vec((any::<u64>(), any::<u32>(), metadata()), 0..3)).prop_map(|(g, v)| StatKindResponse {
            kind: kind_id::TURN_SERVICE,
            generation: g,
            values: v
                .into_iter()
                .map(|(t, l, m)| StoredMetaData {
                    storage_time: t,
                    lifetime: l,
                    metadata: MetaDataValue::SingleValue(m)
                })
                .collect(),
        }),
        (
            any::<u64>(),
            vec((any::<u64>(), any::<u32>(), any::<u32>(), metadata()), 0..3)
        )
            .prop_map(|(g, v)| StatKindResponse {
                kind: kind_id::CERTIFICATE_BY_NODE,
                generation: g,
                values: v
                    .into_iter()
                    .map(|(t, l, index, value)| StoredMetaData {
                        storage_time: t,
                        lifetime: l,
                        metadata: MetaDataValue::Array { index, value }
                    })
                    .collect(),
            }),
        (
            any::<u64>(),
            vec((any::<u64>(), any::<u32>(), bytes(20), metadata()), 0..3)
        )
            .prop_map(|(g, v)| StatKindResponse {
                kind: kind_id::SIP_REGISTRATION,
                generation: g,
                values: v
                    .into_iter()
                    .map(|(t, l, key, value)| StoredMetaData {
                        storage_time: t,
                        lifetime: l,
                        metadata: MetaDataValue::Dictionary { key, value }
                    })
                    .collect(),
            }),
    ];
    vec(kind, 0..3).prop_map(|kind_responses| StatAns { kind_responses })
}

pub fn ice_candidate() -> impl Strategy<Value = IceCandidate> {
    let cand = prop_oneof![
        Just(CandType::Host),
        ip_address_port().prop_map(|rel_addr_port| CandType::Srflx { rel_addr_port }),
        ip_address_port().prop_map(|rel_addr_port| CandType::Prflx { rel_addr_port }),
        ip_address_port().prop_map(|rel_addr_port| CandType::Relay { rel_addr_port }),
    ];
    (
        ip_address_port(),
        1u8..=255,
        bytes(32),
        any::<u32>(),
        cand,
        vec(
            (bytes(12), bytes(12)).prop_map(|(name, value)| IceExtension { name, value }),
            0..3,
        ),
    )
        .prop_map(
            |(addr_port, overlay_link, foundation, priority, cand_type, extensions)| IceCandidate {
                addr_port,
                overlay_link,
                foundation,
                priority,
                cand_type,
                extensions,
            },
        )
}

pub fn attach() -> impl Strategy<Value = AttachReqAns> {
    (
        bytes(32),
        bytes(32),
        bytes(8),
        vec(ice_candidate(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(ufrag, password, role, candidates, send_update)| AttachReqAns {
            ufrag,
            password,
            role,
            candidates,
            send_update,
        })
}

pub fn app_attach() -> impl Strategy<Value = AppAttachReq> {
    (bytes(32), bytes(32), any::<u16>(), bytes(8), vec(ice_candidate(), 0..4)).prop_map(
        |(ufrag, password, application, role, candidates)| AppAttachReq {
            ufrag,
            password,
            application,
            role,
            candidates,
        },
    )
}

pub fn probe_information() -> impl Strategy<Value = ProbeInformation> {
    prop_oneof![
        any::<u32>().prop_map(ProbeInformation::ResponsibleSet),
        any::<u32>().prop_map(ProbeInformation::NumResources),
        any::<u32>().prop_map(ProbeInformation::Uptime),
        (4u8..=255, bytes(8)).prop_map(|(t, v)| ProbeInformation::Unknown {
            probe_type: t,
            value: v
        }),
    ]
}

pub fn config_update() -> impl Strategy<Value = ConfigUpdateReq> {
    prop_oneof![
        bytes(200).prop_map(ConfigUpdateReq::Config),
        vec(bytes(60), 0..4).prop_map(ConfigUpdateReq::Kinds),
        (3u8..=255, bytes(30)).prop_map(|(t, d)| ConfigUpdateReq::Unknown {
            update_type: t,
            data: d
        }),
    ]
}

pub fn chord_update() -> impl Strategy<Value = ChordUpdate> {
    let ids = || vec(node_id(), 0..5);
    let update = prop_oneof![
        Just(ChordUpdateType::PeerReady),
        (ids(), ids()).prop_map(|(predecessors, successors)| ChordUpdateType::Neighbors {
            predecessors,
            successors
        }),
        (ids(), ids(), ids()).prop_map(|(predecessors, successors, fingers)| {
            ChordUpdateType::Full {
                predecessors,
                successors,
                fingers,
            }
        }),
    ];
    (any::<u32>(), update).prop_map(|(uptime, update)| ChordUpdate { uptime, update })
}

pub fn chord_leave() -> impl Strategy<Value = ChordLeaveData> {
    prop_oneof![
        vec(node_id(), 0..5).prop_map(|successors| ChordLeaveData::FromSucc { successors }),
        vec(node_id(), 0..5).prop_map(|predecessors| ChordLeaveData::FromPred { predecessors }),
    ]
}

pub fn chord_route_query_ans() -> impl Strategy<Value = ChordRouteQueryAns> {
    node_id().prop_map(|next_peer| ChordRouteQueryAns { next_peer })
}

pub fn turn_server() -> impl Strategy<Value = TurnServer> {
    (any::<u8>(), ip_address_port()).prop_map(|(iteration, server_address)| TurnServer {
        iteration,
        server_address,
    })
}

pub fn sip_registration() -> impl Strategy<Value = SipRegistration> {
    prop_oneof![
        bytes(60).prop_map(SipRegistration::Uri),
        (bytes(30), vec(destination(), 0..3)).prop_map(|(contact_prefs, destination_list)| {
            SipRegistration::Route {
                contact_prefs,
                destination_list,
            }
        }),
        (3u8..=255, bytes(20)).prop_map(|(t, d)| SipRegistration::Unknown {
            registration_type: t,
            data: d
        }),
    ]
}

/// Any message body of RFC 6940.
pub fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        bytes(10).prop_map(|r| Body::ProbeReq(ProbeReq { requested_info: r })),
        vec(probe_information(), 0..4).prop_map(|p| Body::ProbeAns(ProbeAns { probe_info: p })),
        attach().prop_map(Body::AttachReq),
        attach().prop_map(Body::AttachAns),
        store_req().prop_map(Body::StoreReq),
        store_ans().prop_map(Body::StoreAns),
        fetch_req().prop_map(Body::FetchReq),
        fetch_ans().prop_map(Body::FetchAns),
        (resource_id(), vec(any::<u32>(), 0..5))
            .prop_map(|(resource, kinds)| Body::FindReq(FindReq { resource, kinds })),
        vec(
            (any::<u32>(), resource_id()).prop_map(|(kind, closest)| FindKindData { kind, closest }),
            0..4
        )
        .prop_map(|results| Body::FindAns(FindAns { results })),
        (node_id(), bytes(30)).prop_map(|(j, o)| Body::JoinReq(JoinReq {
            joining_peer_id: j,
            overlay_specific_data: o
        })),
        bytes(30).prop_map(|o| Body::JoinAns(JoinAns {
            overlay_specific_data: o
        })),
        (node_id(), bytes(30)).prop_map(|(l, o)| Body::LeaveReq(LeaveReq {
            leaving_peer_id: l,
            overlay_specific_data: o
        })),
        Just(Body::LeaveAns),
        bytes(60).prop_map(Body::UpdateReq),
        bytes(10).prop_map(Body::UpdateAns),
        (any::<bool>(), destination(), bytes(20)).prop_map(|(s, d, o)| Body::RouteQueryReq(RouteQueryReq {
            send_update: s,
            destination: d,
            overlay_specific_data: o
        })),
        bytes(20).prop_map(Body::RouteQueryAns),
        bytes(100).prop_map(|p| Body::PingReq(PingReq { padding: p })),
        (any::<u64>(), any::<u64>()).prop_map(|(r, t)| Body::PingAns(PingAns {
            response_id: r,
            time: t
        })),
        fetch_req().prop_map(Body::StatReq),
        stat_ans().prop_map(Body::StatAns),
        app_attach().prop_map(Body::AppAttachReq),
        app_attach().prop_map(Body::AppAttachAns),
        config_update().prop_map(Body::ConfigUpdateReq),
        Just(Body::ConfigUpdateAns),
        (any::<u16>(), bytes(40)).prop_map(|(c, i)| Body::Error(ErrorResponse {
            error_code: ErrorCode(c),
            error_info: i
        })),
        (
            prop_oneof![0x23u16..=0x26, 0x27u16..=0x7fff, 0x8000u16..=0xfffe],
            bytes(30)
        )
            .prop_map(|(c, b)| Body::Other {
                code: MessageCode(c),
                body: b
            }),
    ]
}

pub fn message() -> impl Strategy<Value = Message> {
    (forwarding_header(), body(), vec(extension(), 0..2), security_block()).prop_map(
        |(mut h, body, extensions, security_block)| {
            h.fragment = Fragment::UNFRAGMENTED;
            let mut message_contents = MessageContents::from_body(&body).unwrap();
            message_contents.extensions = extensions;
            Message {
                forwarding_header: h,
                message_contents,
                security_block,
            }
        },
    )
}
