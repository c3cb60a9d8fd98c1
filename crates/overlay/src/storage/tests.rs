//! Storage semantics of RFC 6940 §7, rule by rule.

use super::*;
use crate::security::{Security, Signer, SimulatedSecurity};
use reload_wire::storage::UnknownKinds;
use reload_wire::{ArrayRange, Decode, DecodeContext, ErrorCode, SignatureAndHashAlgorithm};
use sha1::Sha1;

const SINGLE: KindId = 0x4000_0001;
const ARRAY: KindId = 0x4000_0002;
const DICT: KindId = 0x4000_0003;
const NODE_KIND: KindId = 0x4000_0004;
const MULTI: KindId = 0x4000_0005;

fn config() -> OverlayConfig {
    let kind = |id, data_model, access, max_count| KindDefinition {
        id,
        name: format!("k{id}"),
        data_model,
        access,
        max_count,
        max_size: 64,
    };
    OverlayConfig::new("test.invalid")
        .with_kind(kind(SINGLE, DataModel::SingleValue, AccessPolicy::UserMatch, 1))
        .with_kind(kind(ARRAY, DataModel::Array, AccessPolicy::UserMatch, 8))
        .with_kind(kind(DICT, DataModel::Dictionary, AccessPolicy::UserNodeMatch, 3))
        .with_kind(kind(NODE_KIND, DataModel::SingleValue, AccessPolicy::NodeMatch, 1))
        .with_kind(kind(
            MULTI,
            DataModel::SingleValue,
            AccessPolicy::NodeMultiple { max: 4 },
            1,
        ))
}

fn hash(name: &[u8]) -> ResourceId {
    ResourceId(Sha1::digest(name)[..16].to_vec())
}

fn alice() -> SimulatedSecurity {
    SimulatedSecurity::new(NodeId::from_u128(7), "alice@test.invalid")
}

fn alice_resource() -> ResourceId {
    hash(b"alice@test.invalid")
}

fn value(bytes: &[u8]) -> DataValue {
    DataValue {
        exists: true,
        value: bytes.to_vec(),
    }
}

fn signed(who: &SimulatedSecurity, storage_time: u64, v: StoredDataValue) -> StoredData {
    StoredData {
        storage_time,
        lifetime: 60,
        value: v,
        signature: who.sign(&[]),
    }
}

fn req(resource: ResourceId, kind: KindId, generation: u64, values: Vec<StoredData>) -> StoreReq {
    StoreReq {
        resource,
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind,
            generation_counter: generation,
            values,
        }],
    }
}

fn store_as(
    s: &mut Storage,
    who: &SimulatedSecurity,
    r: &StoreReq,
    replica: bool,
    now: u64,
) -> Result<StoreAns, Refusal> {
    store_with(&config(), s, who, r, replica, now)
}

fn store_with(
    config: &OverlayConfig,
    s: &mut Storage,
    who: &SimulatedSecurity,
    r: &StoreReq,
    replica: bool,
    now: u64,
) -> Result<StoreAns, Refusal> {
    store_full(config, s, who, r, replica, now, false)
}

/// A Store as the responsible peer takes it when `responsible`: the
/// per-signer quota applies to its replica Stores too.
fn store_full(
    config: &OverlayConfig,
    s: &mut Storage,
    who: &SimulatedSecurity,
    r: &StoreReq,
    replica: bool,
    now: u64,
    responsible: bool,
) -> Result<StoreAns, Refusal> {
    let cred = who.verify(&[], &who.sign(&[]), &[]).unwrap();
    let verify = |_: &ResourceId, _: KindId, sd: &StoredData| who.verify(&[], &sd.signature, &[]);
    s.store(
        config,
        r,
        replica,
        StoreRequest {
            now,
            per_signer_quota: responsible,
            request_signer: &cred,
            verify: &verify,
            hash: &hash,
        },
    )
}

fn fetch(s: &Storage, resource: ResourceId, kind: KindId, generation: u64, model: ModelSpecifier) -> FetchKindResponse {
    let r = FetchReq {
        resource,
        specifiers: vec![StoredDataSpecifier {
            kind,
            generation,
            model_specifier: model,
        }],
    };
    s.fetch(&config(), &r).unwrap().kind_responses.remove(0)
}

/// One original Store of `sd` under alice's resource, signed by `who`.
fn store_single(s: &mut Storage, who: &SimulatedSecurity, sd: StoredData) -> Result<StoreAns, Refusal> {
    store_as(s, who, &req(alice_resource(), SINGLE, 0, vec![sd]), false, 0)
}

fn code(r: Result<StoreAns, Refusal>) -> ErrorCode {
    r.expect_err("should be refused").error_code()
}

#[test]
fn single_value_store_then_fetch_and_generation_counts_writes() {
    let mut s = Storage::new();
    let a = alice();
    let sd = signed(&a, 1000, StoredDataValue::SingleValue(value(b"one")));
    let ans = store_single(&mut s, &a, sd.clone()).unwrap();
    assert_eq!(ans.kind_responses[0].generation_counter, 1);
    let got = fetch(&s, alice_resource(), SINGLE, 0, ModelSpecifier::SingleValue);
    assert_eq!(got.values, vec![sd]);
    assert_eq!(got.generation, 1);
    // §7.4.2.1: the same generation in the Fetch means "nothing new".
    assert!(fetch(&s, alice_resource(), SINGLE, 1, ModelSpecifier::SingleValue)
        .values
        .is_empty());
    let sd2 = signed(&a, 2000, StoredDataValue::SingleValue(value(b"two")));
    let ans = store_as(&mut s, &a, &req(alice_resource(), SINGLE, 1, vec![sd2]), false, 0).unwrap();
    assert_eq!(ans.kind_responses[0].generation_counter, 2);
}

#[test]
fn an_older_storage_time_is_data_too_old() {
    // §7: "Any attempt to store a data value with a storage time before
    // that of a value already stored at this location MUST generate an
    // Error_Data_Too_Old error."
    let mut s = Storage::new();
    let a = alice();
    let new = signed(&a, 2000, StoredDataValue::SingleValue(value(b"new")));
    store_single(&mut s, &a, new.clone()).unwrap();
    let old = signed(&a, 1000, StoredDataValue::SingleValue(value(b"old")));
    let r = store_single(&mut s, &a, old);
    assert_eq!(code(r), ErrorCode::DATA_TOO_OLD);
    assert_eq!(
        fetch(&s, alice_resource(), SINGLE, 0, ModelSpecifier::SingleValue).values,
        vec![new]
    );
}

#[test]
fn the_same_signed_value_stored_again_changes_nothing_and_is_no_error() {
    // A Store retransmitted after its first copy reached the responsible
    // peer and was replicated can arrive at a replica that took over the
    // range: the value it brings is the one already there. §7 refuses only
    // a storage time *before* the stored one; a different value with the
    // same time stays refused, as replicas could not order the two.
    let mut s = Storage::new();
    let a = alice();
    let sd = signed(&a, 2000, StoredDataValue::SingleValue(value(b"same")));
    let first = store_single(&mut s, &a, sd.clone()).unwrap();
    let version = s.resource(&alice_resource()).unwrap().version();
    let replicated = StoredData {
        lifetime: sd.lifetime - 3,
        ..sd.clone()
    };
    let again = store_single(&mut s, &a, replicated).unwrap();
    assert_eq!(
        again.kind_responses[0].generation_counter, first.kind_responses[0].generation_counter,
        "no write happened"
    );
    assert_eq!(s.resource(&alice_resource()).unwrap().version(), version);
    // The owner asking for a longer lifetime is a refresh: a write, which
    // replicas hear of.
    let refresh = StoredData {
        lifetime: sd.lifetime + 60,
        ..sd.clone()
    };
    let refreshed = store_single(&mut s, &a, refresh).unwrap();
    assert_eq!(
        refreshed.kind_responses[0].generation_counter,
        first.kind_responses[0].generation_counter + 1
    );
    assert_eq!(
        s.resource(&alice_resource()).unwrap().export(0)[0].values[0].lifetime,
        sd.lifetime + 60
    );
    let rival = signed(&a, 2000, StoredDataValue::SingleValue(value(b"other")));
    let r = store_single(&mut s, &a, rival);
    assert_eq!(code(r), ErrorCode::DATA_TOO_OLD);
    let kept = fetch(&s, alice_resource(), SINGLE, 0, ModelSpecifier::SingleValue).values;
    assert!(is_same_signed_value(&kept[0], &sd), "{kept:?}");
}

#[test]
fn a_stale_generation_counter_is_refused_with_the_current_counters() {
    // §7.4.1.2: Error_Generation_Counter_Too_Low, error_info a StoreAns.
    let mut s = Storage::new();
    let a = alice();
    for t in [1000, 2000] {
        let sd = signed(&a, t, StoredDataValue::SingleValue(value(b"v")));
        store_single(&mut s, &a, sd).unwrap();
    }
    let sd = signed(&a, 3000, StoredDataValue::SingleValue(value(b"v")));
    let e = store_as(&mut s, &a, &req(alice_resource(), SINGLE, 1, vec![sd]), false, 0).unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::GENERATION_COUNTER_TOO_LOW);
    let info = StoreAns::from_bytes(&e.error_info(), &DecodeContext::default()).unwrap();
    assert_eq!(info.kind_responses[0].generation_counter, 2);
    assert!(info.kind_responses[0].replicas.is_empty());
}

#[test]
fn unknown_kinds_are_listed_in_the_error() {
    // §7.4.1.2: Error_Unknown_Kind lists "all the Kinds that were unrecognized".
    let mut s = Storage::new();
    let a = alice();
    let sd = signed(&a, 1, StoredDataValue::SingleValue(value(b"v")));
    let mut r = req(alice_resource(), 0x7777, 0, vec![sd.clone()]);
    r.kind_data.push(StoreKindData {
        kind: 0x8888,
        generation_counter: 0,
        values: vec![sd],
    });
    let e = store_as(&mut s, &a, &r, false, 0).unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::UNKNOWN_KIND);
    let kinds = UnknownKinds::from_bytes(&e.error_info(), &DecodeContext::default()).unwrap();
    assert_eq!(kinds.0, vec![0x7777, 0x8888]);
}

#[test]
fn user_match_refuses_a_user_whose_name_does_not_hash_to_the_resource() {
    // §7.3.1.
    let mut s = Storage::new();
    let mallory = SimulatedSecurity::new(NodeId::from_u128(9), "mallory@test.invalid");
    let sd = signed(&mallory, 1, StoredDataValue::SingleValue(value(b"v")));
    let r = store_single(&mut s, &mallory, sd);
    assert_eq!(code(r), ErrorCode::FORBIDDEN);
    assert_eq!(s.resource_count(), 0);
}

#[test]
fn anonymous_values_are_forbidden() {
    // §7.4.1.1: identity "none" or algorithm {0,0} MUST be rejected.
    let mut s = Storage::new();
    let a = alice();
    let mut sd = signed(&a, 1, StoredDataValue::SingleValue(value(b"v")));
    sd.signature.algorithm = SignatureAndHashAlgorithm { hash: 0, signature: 0 };
    let r = store_single(&mut s, &a, sd);
    assert_eq!(code(r), ErrorCode::FORBIDDEN);
}

#[test]
fn size_and_count_limits_are_enforced() {
    let mut s = Storage::new();
    let a = alice();
    let big = signed(&a, 1, StoredDataValue::SingleValue(value(&[0; 65])));
    assert_eq!(
        code(store_as(
            &mut s,
            &a,
            &req(alice_resource(), SINGLE, 0, vec![big]),
            false,
            0
        )),
        ErrorCode::DATA_TOO_LARGE
    );
    let at = |i| {
        signed(
            &a,
            1,
            StoredDataValue::Array(ArrayEntry {
                index: i,
                value: value(b"x"),
            }),
        )
    };
    assert_eq!(
        code(store_as(
            &mut s,
            &a,
            &req(alice_resource(), ARRAY, 0, vec![at(8)]),
            false,
            0
        )),
        ErrorCode::DATA_TOO_LARGE,
        "index beyond max-count"
    );
}

#[test]
fn a_store_is_atomic() {
    // §7.4.1.1: "If any operation fails, the state MUST be rolled back".
    let mut s = Storage::new();
    let a = alice();
    let good = signed(&a, 1, StoredDataValue::SingleValue(value(b"ok")));
    let bad = signed(&a, 1, StoredDataValue::SingleValue(value(&[0; 100])));
    let mut r = req(alice_resource(), SINGLE, 0, vec![good]);
    r.kind_data.push(StoreKindData {
        kind: ARRAY,
        generation_counter: 0,
        values: vec![bad],
    });
    assert!(store_as(&mut s, &a, &r, false, 0).is_err());
    assert_eq!(s.resource_count(), 0);
}

#[test]
fn array_append_lands_after_the_last_index_and_fetch_synthesizes_gaps() {
    // §7.4.1.1: index 0xffffffff appends; §7.2.2: arrays are sparse.
    let mut s = Storage::new();
    let a = alice();
    let entry = |index, v: &[u8]| signed(&a, 1, StoredDataValue::Array(ArrayEntry { index, value: value(v) }));
    store_as(
        &mut s,
        &a,
        &req(alice_resource(), ARRAY, 0, vec![entry(2, b"X")]),
        false,
        0,
    )
    .unwrap();
    store_as(
        &mut s,
        &a,
        &req(alice_resource(), ARRAY, 0, vec![entry(ARRAY_APPEND, b"Y")]),
        false,
        0,
    )
    .unwrap();
    let got = fetch(
        &s,
        alice_resource(),
        ARRAY,
        0,
        ModelSpecifier::Array(vec![ArrayRange {
            first: 0,
            last: ARRAY_APPEND,
        }]),
    );
    let seen: Vec<(u32, bool, Vec<u8>)> = got
        .values
        .iter()
        .map(|sd| match &sd.value {
            StoredDataValue::Array(e) => (e.index, e.value.exists, e.value.value.clone()),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, false, vec![]),
            (1, false, vec![]),
            (2, true, b"X".to_vec()),
            (3, true, b"Y".to_vec())
        ]
    );
    // §7.4.2.2: synthesized values carry the empty signature.
    assert_eq!(got.values[0].signature.identity, SignerIdentity::None);
}

#[test]
fn dictionary_user_node_match_and_wildcard_fetch() {
    // §7.3.3: the key must be the signer's Node-ID; §7.4.2.1: no keys is a
    // wildcard fetch.
    let mut s = Storage::new();
    let a = alice();
    let entry = |key: &[u8]| {
        signed(
            &a,
            1,
            StoredDataValue::Dictionary(DictionaryEntry {
                key: key.to_vec(),
                value: value(b"contact"),
            }),
        )
    };
    let mine = NodeId::from_u128(7);
    store_as(
        &mut s,
        &a,
        &req(alice_resource(), DICT, 0, vec![entry(mine.as_bytes())]),
        false,
        0,
    )
    .unwrap();
    let other = NodeId::from_u128(8);
    assert_eq!(
        code(store_as(
            &mut s,
            &a,
            &req(alice_resource(), DICT, 0, vec![entry(other.as_bytes())]),
            false,
            0
        )),
        ErrorCode::FORBIDDEN
    );
    let all = fetch(&s, alice_resource(), DICT, 0, ModelSpecifier::Dictionary(vec![]));
    assert_eq!(all.values.len(), 1);
    let missing = fetch(
        &s,
        alice_resource(),
        DICT,
        0,
        ModelSpecifier::Dictionary(vec![other.as_bytes().to_vec()]),
    );
    assert!(matches!(&missing.values[0].value, StoredDataValue::Dictionary(d) if !d.value.exists));
}

#[test]
fn node_match_and_node_multiple_hash_the_signers_node_id() {
    // §7.3.2 and §7.3.4 (i as a 32-bit big-endian integer, decision 0004).
    let a = alice();
    let cred = a.verify(&[], &a.sign(&[]), &[]).unwrap();
    let v = StoredDataValue::SingleValue(value(b"v"));
    let node = NodeId::from_u128(7);
    assert!(authorized(
        AccessPolicy::NodeMatch,
        &hash(node.as_bytes()),
        &v,
        &cred,
        &hash
    ));
    assert!(!authorized(
        AccessPolicy::NodeMatch,
        &alice_resource(),
        &v,
        &cred,
        &hash
    ));
    let mut input = node.as_bytes().to_vec();
    input.extend_from_slice(&3u32.to_be_bytes());
    let multi = hash(&input);
    assert!(authorized(
        AccessPolicy::NodeMultiple { max: 4 },
        &multi,
        &v,
        &cred,
        &hash
    ));
    assert!(!authorized(
        AccessPolicy::NodeMultiple { max: 2 },
        &multi,
        &v,
        &cred,
        &hash
    ));
}

#[test]
fn replica_stores_merge_by_storage_time_and_take_the_generation() {
    // §7.4.1.1: replicas set the generation counter from the message; the
    // partition-merge rule orders values by storage_time.
    let mut s = Storage::new();
    let a = alice();
    let newer = signed(&a, 5000, StoredDataValue::SingleValue(value(b"newer")));
    store_as(
        &mut s,
        &a,
        &req(alice_resource(), SINGLE, 9, vec![newer.clone()]),
        true,
        0,
    )
    .unwrap();
    let older = signed(&a, 1000, StoredDataValue::SingleValue(value(b"older")));
    let ans = store_as(
        &mut s,
        &a,
        &req(alice_resource(), SINGLE, 4, vec![older.clone()]),
        true,
        0,
    )
    .unwrap();
    assert_eq!(ans.kind_responses[0].generation_counter, 9);
    // A push of stale values (a replay, a forged push) moves no
    // generation, however far ahead it claims to be.
    let ans = store_as(
        &mut s,
        &a,
        &req(alice_resource(), SINGLE, 1_000_000, vec![older]),
        true,
        0,
    )
    .unwrap();
    assert_eq!(ans.kind_responses[0].generation_counter, 9);
    assert_eq!(
        fetch(&s, alice_resource(), SINGLE, 0, ModelSpecifier::SingleValue).values,
        vec![newer]
    );
    // "Replica Stores MUST NOT use a generation counter of 0."
    let sd = signed(&a, 6000, StoredDataValue::SingleValue(value(b"x")));
    assert_eq!(
        code(store_as(
            &mut s,
            &a,
            &req(alice_resource(), SINGLE, 0, vec![sd]),
            true,
            0
        )),
        ErrorCode::INVALID_MESSAGE
    );
}

#[test]
fn values_expire_and_exports_carry_the_remaining_lifetime() {
    // §7.4.1.1: a peer passing data on "MUST adjust the lifetime value
    // downward to reflect the amount of time the value was stored".
    let mut s = Storage::new();
    let a = alice();
    let sd = signed(&a, 1, StoredDataValue::SingleValue(value(b"v")));
    store_as(&mut s, &a, &req(alice_resource(), SINGLE, 0, vec![sd]), false, 10_000).unwrap();
    let exported = s.resource(&alice_resource()).unwrap().export(40_000);
    assert_eq!(exported[0].values[0].lifetime, 30);
    s.expire(69_999);
    assert_eq!(s.resource_count(), 1);
    s.expire(70_000);
    assert_eq!(s.resource_count(), 0);
}

#[test]
fn stat_digests_the_value_with_its_length_prefix() {
    // §7.4.3.2: "A digest using hash_algorithm on the value field of the
    // DataValue, including its 4 leading length bytes."
    let mut s = Storage::new();
    let a = alice();
    let sd = signed(&a, 1, StoredDataValue::SingleValue(value(b"abc")));
    store_single(&mut s, &a, sd).unwrap();
    let r = FetchReq {
        resource: alice_resource(),
        specifiers: vec![StoredDataSpecifier {
            kind: SINGLE,
            generation: 0,
            model_specifier: ModelSpecifier::SingleValue,
        }],
    };
    let stat = s.stat(&config(), &r).unwrap();
    let MetaDataValue::SingleValue(m) = &stat.kind_responses[0].values[0].metadata else {
        panic!()
    };
    assert_eq!(m.value_length, 3);
    assert_eq!(m.hash_value, Sha1::digest([0, 0, 0, 3, b'a', b'b', b'c']).to_vec());
}

#[test]
fn find_returns_the_closest_resource_at_or_after_the_one_asked() {
    // §7.4.4: walking the overlay with R_{n+1} = nearest(1 + R_n).
    let mut s = Storage::new();
    let a = alice();
    let sd = signed(&a, 1, StoredDataValue::SingleValue(value(b"v")));
    store_single(&mut s, &a, sd).unwrap();
    let zero = ResourceId(vec![0; 16]);
    let f = s
        .find(
            &config(),
            &FindReq {
                resource: zero.clone(),
                kinds: vec![SINGLE, ARRAY, 0x9999],
            },
        )
        .unwrap();
    assert_eq!(f.results[0].closest, alice_resource());
    assert_eq!(f.results[1].closest, zero, "no array values stored");
    assert_eq!(f.results[2].closest, zero, "unknown Kind gives 0");
    let dup = FindReq {
        resource: zero,
        kinds: vec![SINGLE, SINGLE],
    };
    assert_eq!(
        s.find(&config(), &dup).unwrap_err(),
        Refusal::KindTwice(StorageMethod::Find)
    );
}

fn array_value(who: &SimulatedSecurity, storage_time: u64, index: u32) -> StoredData {
    signed(
        who,
        storage_time,
        StoredDataValue::Array(ArrayEntry {
            index,
            value: value(b"sixteen bytes..."),
        }),
    )
}

fn reason(r: Result<StoreAns, Refusal>) -> (ErrorCode, String) {
    let e = r.expect_err("should be refused");
    (e.error_code(), e.to_string())
}

#[test]
fn a_signers_quota_refuses_growth_but_not_a_replacement_nor_a_replica() {
    // Decision 0030: `<p2psip:storage-quota per-user>` bounds the bytes
    // one user's values take at one peer; §13.5.2's max-size and
    // max-count alone would let this Kind take 8 values.
    for limit in ["per-user", "per-node"] {
        a_quota_of_three_values(limit);
    }
}

fn a_quota_of_three_values(limit: &str) {
    let a = alice();
    let each = quota::cost(&array_value(&a, 1, 0));
    let mut cfg = config();
    match limit {
        "per-user" => cfg.storage_quota.per_user_bytes = 3 * each,
        _ => cfg.storage_quota.per_node_bytes = 3 * each,
    }
    let mut s = Storage::new();
    for i in 0..3 {
        let r = req(alice_resource(), ARRAY, 0, vec![array_value(&a, 1, i)]);
        store_with(&cfg, &mut s, &a, &r, false, 0).unwrap();
    }
    assert_eq!(s.bytes_held(), 3 * each);
    let fourth = req(alice_resource(), ARRAY, 0, vec![array_value(&a, 1, 3)]);
    let (code, why) = reason(store_with(&cfg, &mut s, &a, &fourth, false, 0));
    assert_eq!(code, ErrorCode::DATA_TOO_LARGE);
    assert!(why.contains(limit), "{why}");
    assert_eq!(s.bytes_held(), 3 * each, "nothing of the refused Store was kept");
    // A newer value in a slot already held does not grow the total.
    let newer = req(alice_resource(), ARRAY, 0, vec![array_value(&a, 2, 0)]);
    store_with(&cfg, &mut s, &a, &newer, false, 0).unwrap();
    // A replica Store to a replica carries what a responsible peer
    // admitted; the responsible peer itself, which anyone may send a
    // replica Store, holds it to the signer's quota.
    let mut replica = fourth.clone();
    replica.replica_number = 1;
    replica.kind_data[0].generation_counter = 5;
    let (code, _) = reason(store_full(&cfg, &mut s, &a, &replica, true, 0, true));
    assert_eq!(
        code,
        ErrorCode::DATA_TOO_LARGE,
        "a replica Store cannot bypass the quota"
    );
    store_with(&cfg, &mut s, &a, &replica, true, 0).unwrap();
    assert_eq!(s.bytes_held(), 4 * each);
}

#[test]
fn the_total_binds_replica_stores_too_and_expiry_and_removal_give_the_bytes_back() {
    let a = alice();
    let each = quota::cost(&array_value(&a, 1, 0));
    let mut cfg = config();
    cfg.storage_quota.total_bytes = 2 * each;
    let mut s = Storage::new();
    let two = req(
        alice_resource(),
        ARRAY,
        0,
        vec![array_value(&a, 1, 0), array_value(&a, 1, 1)],
    );
    store_with(&cfg, &mut s, &a, &two, false, 0).unwrap();
    let mut third = req(alice_resource(), ARRAY, 5, vec![array_value(&a, 1, 2)]);
    third.replica_number = 1;
    let (code, why) = reason(store_with(&cfg, &mut s, &a, &third, true, 0));
    assert_eq!(code, ErrorCode::DATA_TOO_LARGE);
    assert!(why.contains("total"), "{why}");
    // Lifetimes are 60 s.
    s.expire(60_000);
    assert_eq!((s.resource_count(), s.bytes_held()), (0, 0));
    store_with(&cfg, &mut s, &a, &third, true, 60_000).unwrap();
    assert_eq!(s.bytes_held(), each);
    s.remove(&alice_resource());
    assert_eq!(s.bytes_held(), 0);
}

#[test]
fn values_under_a_kind_whose_data_model_changed_give_way_and_their_bytes_back() {
    // A newer configuration may redefine a Kind: what was kept under the
    // old data model cannot hold the new values, and goes.
    let a = alice();
    let mut s = Storage::new();
    let one = signed(&a, 1, StoredDataValue::SingleValue(value(b"single")));
    store_single(&mut s, &a, one).unwrap();
    let mut cfg = config();
    for k in &mut cfg.kinds {
        if k.id == SINGLE {
            k.data_model = DataModel::Array;
        }
    }
    let entry = array_value(&a, 2, 0);
    store_with(
        &cfg,
        &mut s,
        &a,
        &req(alice_resource(), SINGLE, 0, vec![entry.clone()]),
        false,
        0,
    )
    .unwrap();
    assert_eq!(s.bytes_held(), quota::cost(&entry));
    s.remove(&alice_resource());
    assert_eq!(s.bytes_held(), 0);
}
