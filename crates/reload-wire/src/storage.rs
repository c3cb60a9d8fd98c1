//! The data storage protocol — RFC 6940 §7: StoredData and its data
//! models (§7.2), Store (§7.4.1), Fetch (§7.4.2), Stat (§7.4.3), Find (§7.4.4).
//!
//! The data model of a value is not on the wire; it comes from the Kind's
//! definition in the configuration (§7.2), which the decoder learns from
//! [`DecodeContext::data_model`](crate::DecodeContext::data_model). Where a
//! message names Kinds whose model is unknown, decoding skips them (every
//! per-Kind block is length-delimited) and fails with
//! [`DecodeError::UnknownKinds`] listing all of them, which is exactly the
//! `error_info` of `Error_Unknown_Kind` (§7.4.1.2).

use crate::codec::{Decode, Encode, LenPrefix, Reader, Writer};
use crate::error::DecodeError;
use crate::ids::{KindId, NodeId, ResourceId};
use crate::security::{Signature, SignerIdentity};

/// Data models — RFC 6940 §7.2 (registry §14.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataModel {
    SingleValue,
    Array,
    Dictionary,
}

/// `DataValue` — RFC 6940 §7.2.1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataValue {
    pub exists: bool,
    pub value: Vec<u8>,
}

impl Encode for DataValue {
    fn encode(&self, w: &mut Writer) {
        w.boolean(self.exists);
        w.opaque(LenPrefix::U32, "DataValue.value", &self.value);
    }
}

impl Decode for DataValue {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DataValue {
            exists: r.boolean("DataValue.exists")?,
            value: r.opaque(LenPrefix::U32, "DataValue.value")?,
        })
    }
}

/// `ArrayEntry` — RFC 6940 §7.2.2. Index 0xffffffff on a Store means
/// "append".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayEntry {
    pub index: u32,
    pub value: DataValue,
}

/// `typedef opaque DictionaryKey<0..2^16-1>` — RFC 6940 §7.2.3.
pub type DictionaryKey = Vec<u8>;

/// `DictionaryEntry` — RFC 6940 §7.2.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictionaryEntry {
    pub key: DictionaryKey,
    pub value: DataValue,
}

/// `StoredDataValue` — RFC 6940 §7.2: one entry of the Kind's data model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredDataValue {
    SingleValue(DataValue),
    Array(ArrayEntry),
    Dictionary(DictionaryEntry),
}

impl StoredDataValue {
    pub fn data_model(&self) -> DataModel {
        match self {
            StoredDataValue::SingleValue(_) => DataModel::SingleValue,
            StoredDataValue::Array(_) => DataModel::Array,
            StoredDataValue::Dictionary(_) => DataModel::Dictionary,
        }
    }

    pub fn data_value(&self) -> &DataValue {
        match self {
            StoredDataValue::SingleValue(v) => v,
            StoredDataValue::Array(e) => &e.value,
            StoredDataValue::Dictionary(e) => &e.value,
        }
    }

    pub fn decode_as(r: &mut Reader<'_>, model: DataModel) -> Result<Self, DecodeError> {
        Ok(match model {
            DataModel::SingleValue => StoredDataValue::SingleValue(DataValue::decode(r)?),
            DataModel::Array => StoredDataValue::Array(ArrayEntry {
                index: r.u32("ArrayEntry.index")?,
                value: DataValue::decode(r)?,
            }),
            DataModel::Dictionary => StoredDataValue::Dictionary(DictionaryEntry {
                key: r.opaque(LenPrefix::U16, "DictionaryEntry.key")?,
                value: DataValue::decode(r)?,
            }),
        })
    }
}

impl Encode for StoredDataValue {
    fn encode(&self, w: &mut Writer) {
        match self {
            StoredDataValue::SingleValue(v) => v.encode(w),
            StoredDataValue::Array(e) => {
                w.u32(e.index);
                e.value.encode(w);
            }
            StoredDataValue::Dictionary(e) => {
                w.opaque(LenPrefix::U16, "DictionaryEntry.key", &e.key);
                e.value.encode(w);
            }
        }
    }
}

/// `StoredData` — RFC 6940 §7: one signed value with its storage time
/// and lifetime. `length` is derived on encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredData {
    /// Milliseconds since the Unix epoch.
    pub storage_time: u64,
    /// Seconds from when the storing peer received the StoreReq.
    pub lifetime: u32,
    pub value: StoredDataValue,
    pub signature: Signature,
}

impl StoredData {
    pub fn decode_as(r: &mut Reader<'_>, model: DataModel) -> Result<Self, DecodeError> {
        let mut b = r.sub(LenPrefix::U32, "StoredData.length")?;
        let d = StoredData {
            storage_time: b.u64("StoredData.storage_time")?,
            lifetime: b.u32("StoredData.lifetime")?,
            value: StoredDataValue::decode_as(&mut b, model)?,
            signature: Signature::decode(&mut b)?,
        };
        b.finish("StoredData")?;
        Ok(d)
    }

    /// The bytes a stored-data signature covers (§7.1):
    /// `resource_id || kind || storage_time || StoredDataValue || SignerIdentity`.
    /// The Resource-ID is taken as its raw bytes, without length prefix,
    /// as the RFC's concatenation of the value itself reads.
    pub fn signature_input(
        resource: &ResourceId,
        kind: KindId,
        storage_time: u64,
        value: &StoredDataValue,
        signer: &SignerIdentity,
    ) -> Result<Vec<u8>, crate::EncodeError> {
        let mut w = Writer::new();
        w.bytes(resource.as_bytes());
        w.u32(kind);
        w.u64(storage_time);
        value.encode(&mut w);
        signer.encode(&mut w);
        w.finish()
    }
}

impl Encode for StoredData {
    fn encode(&self, w: &mut Writer) {
        w.prefixed(LenPrefix::U32, "StoredData.length", |w| {
            w.u64(self.storage_time);
            w.u32(self.lifetime);
            self.value.encode(w);
            self.signature.encode(w);
        });
    }
}

/// Reads a list of per-Kind blocks. `item` reads one block, returning
/// `Err(kind)` when the Kind's data model is unknown (it must then have
/// consumed the block). Unknown Kinds are gathered into one error.
fn per_kind_list<'a, T>(
    r: &mut Reader<'a>,
    prefix: LenPrefix,
    what: &'static str,
    mut item: impl FnMut(&mut Reader<'a>) -> Result<Result<T, KindId>, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut unknown: Vec<KindId> = Vec::new();
    let items = r.list(prefix, what, |r| item(r))?;
    let known = items
        .into_iter()
        .filter_map(|i| {
            i.map_err(|k| {
                if !unknown.contains(&k) {
                    unknown.push(k);
                }
            })
            .ok()
        })
        .collect();
    if unknown.is_empty() {
        Ok(known)
    } else {
        Err(DecodeError::UnknownKinds(unknown))
    }
}

/// Reads a Kind's `values<0..2^32-1>` (StoredData or StoredMetaData), or
/// skips the block and returns `Err(kind)` if the Kind's model is unknown.
fn values_of_kind<T>(
    r: &mut Reader<'_>,
    kind: KindId,
    what: &'static str,
    value: fn(&mut Reader<'_>, DataModel) -> Result<T, DecodeError>,
) -> Result<Result<Vec<T>, KindId>, DecodeError> {
    let values = r.sub(LenPrefix::U32, what)?;
    match r.ctx().data_model(kind) {
        Some(model) => Ok(Ok(values.items(|r| value(r, model))?)),
        None => Ok(Err(kind)),
    }
}

/// `StoreKindData` — RFC 6940 §7.4.1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKindData {
    pub kind: KindId,
    pub generation_counter: u64,
    pub values: Vec<StoredData>,
}

impl Encode for StoreKindData {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.kind);
        w.u64(self.generation_counter);
        w.list(LenPrefix::U32, "StoreKindData.values", &self.values);
    }
}

/// `StoreReq` — RFC 6940 §7.4.1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReq {
    pub resource: ResourceId,
    /// 0 for the original store, 1.. for replicas.
    pub replica_number: u8,
    pub kind_data: Vec<StoreKindData>,
}

impl Encode for StoreReq {
    fn encode(&self, w: &mut Writer) {
        self.resource.encode(w);
        w.u8(self.replica_number);
        w.list(LenPrefix::U32, "StoreReq.kind_data", &self.kind_data);
    }
}

impl Decode for StoreReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let resource = ResourceId::decode(r)?;
        let replica_number = r.u8("StoreReq.replica_number")?;
        let kind_data = per_kind_list(r, LenPrefix::U32, "StoreReq.kind_data", |r| {
            let kind = r.u32("StoreKindData.kind")?;
            let generation_counter = r.u64("StoreKindData.generation_counter")?;
            Ok(
                values_of_kind(r, kind, "StoreKindData.values", StoredData::decode_as)?.map(|values| StoreKindData {
                    kind,
                    generation_counter,
                    values,
                }),
            )
        })?;
        Ok(StoreReq {
            resource,
            replica_number,
            kind_data,
        })
    }
}

/// `StoreKindResponse` — RFC 6940 §7.4.1.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKindResponse {
    pub kind: KindId,
    pub generation_counter: u64,
    pub replicas: Vec<NodeId>,
}

impl Encode for StoreKindResponse {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.kind);
        w.u64(self.generation_counter);
        w.list(LenPrefix::U16, "StoreKindResponse.replicas", &self.replicas);
    }
}

impl Decode for StoreKindResponse {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(StoreKindResponse {
            kind: r.u32("StoreKindResponse.kind")?,
            generation_counter: r.u64("StoreKindResponse.generation_counter")?,
            replicas: r.list(LenPrefix::U16, "StoreKindResponse.replicas", NodeId::decode)?,
        })
    }
}

/// `StoreAns` — RFC 6940 §7.4.1.2. Also the `error_info` of
/// `Error_Generation_Counter_Too_Low`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreAns {
    pub kind_responses: Vec<StoreKindResponse>,
}

impl Encode for StoreAns {
    fn encode(&self, w: &mut Writer) {
        w.list(LenPrefix::U16, "StoreAns.kind_responses", &self.kind_responses);
    }
}

impl Decode for StoreAns {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(StoreAns {
            kind_responses: r.list(LenPrefix::U16, "StoreAns.kind_responses", StoreKindResponse::decode)?,
        })
    }
}

/// `KindId unknown_kinds<0..2^8-1>`: the `error_info` of
/// `Error_Unknown_Kind` — RFC 6940 §7.4.1.2. The prefix holds at most 63
/// Kind-IDs; a request naming more unknown Kinds is answered with the
/// first 63, which is enough for the requester to send ConfigUpdates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnknownKinds(pub Vec<KindId>);

impl UnknownKinds {
    /// Most Kind-IDs the one-byte length prefix can carry.
    pub const MAX: usize = 0xff / 4;
}

impl Encode for UnknownKinds {
    fn encode(&self, w: &mut Writer) {
        w.prefixed(LenPrefix::U8, "unknown_kinds", |w| {
            for k in self.0.iter().take(Self::MAX) {
                w.u32(*k);
            }
        });
    }
}

impl Decode for UnknownKinds {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(UnknownKinds(
            r.list(LenPrefix::U8, "unknown_kinds", |r| r.u32("KindId"))?,
        ))
    }
}

/// `ArrayRange` — RFC 6940 §7.4.2.1. The RFC declares the fields `int32`
/// yet uses 0xffffffff as `last` for "the final element"; we read them as
/// unsigned, which is the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayRange {
    pub first: u32,
    pub last: u32,
}

/// The `model_specifier` of a StoredDataSpecifier — RFC 6940 §7.4.2.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpecifier {
    SingleValue,
    Array(Vec<ArrayRange>),
    /// Empty means every key (a wildcard fetch).
    Dictionary(Vec<DictionaryKey>),
}

/// `StoredDataSpecifier` — RFC 6940 §7.4.2.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDataSpecifier {
    pub kind: KindId,
    /// The last generation the requester saw, or 0.
    pub generation: u64,
    pub model_specifier: ModelSpecifier,
}

impl Encode for StoredDataSpecifier {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.kind);
        w.u64(self.generation);
        w.prefixed(LenPrefix::U16, "StoredDataSpecifier.length", |w| {
            match &self.model_specifier {
                ModelSpecifier::SingleValue => {}
                ModelSpecifier::Array(ranges) => w.prefixed(LenPrefix::U16, "StoredDataSpecifier.indices", |w| {
                    for r in ranges {
                        w.u32(r.first);
                        w.u32(r.last);
                    }
                }),
                ModelSpecifier::Dictionary(keys) => w.prefixed(LenPrefix::U16, "StoredDataSpecifier.keys", |w| {
                    for k in keys {
                        w.opaque(LenPrefix::U16, "DictionaryKey", k);
                    }
                }),
            }
        });
    }
}

impl StoredDataSpecifier {
    fn decode_known(r: &mut Reader<'_>) -> Result<Result<Self, KindId>, DecodeError> {
        let kind = r.u32("StoredDataSpecifier.kind")?;
        let generation = r.u64("StoredDataSpecifier.generation")?;
        let mut body = r.sub(LenPrefix::U16, "StoredDataSpecifier.length")?;
        let Some(model) = r.ctx().data_model(kind) else {
            return Ok(Err(kind));
        };
        let model_specifier = match model {
            DataModel::SingleValue => ModelSpecifier::SingleValue,
            DataModel::Array => {
                ModelSpecifier::Array(body.list(LenPrefix::U16, "StoredDataSpecifier.indices", |r| {
                    Ok(ArrayRange {
                        first: r.u32("ArrayRange.first")?,
                        last: r.u32("ArrayRange.last")?,
                    })
                })?)
            }
            DataModel::Dictionary => {
                ModelSpecifier::Dictionary(body.list(LenPrefix::U16, "StoredDataSpecifier.keys", |r| {
                    r.opaque(LenPrefix::U16, "DictionaryKey")
                })?)
            }
        };
        body.finish("StoredDataSpecifier.model_specifier")?;
        Ok(Ok(StoredDataSpecifier {
            kind,
            generation,
            model_specifier,
        }))
    }
}

/// `FetchReq` — RFC 6940 §7.4.2.1. `StatReq` (§7.4.3.1) has the same form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReq {
    pub resource: ResourceId,
    pub specifiers: Vec<StoredDataSpecifier>,
}

/// `StatReq` — RFC 6940 §7.4.3.1.
pub type StatReq = FetchReq;

impl Encode for FetchReq {
    fn encode(&self, w: &mut Writer) {
        self.resource.encode(w);
        w.list(LenPrefix::U16, "FetchReq.specifiers", &self.specifiers);
    }
}

impl Decode for FetchReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FetchReq {
            resource: ResourceId::decode(r)?,
            specifiers: per_kind_list(
                r,
                LenPrefix::U16,
                "FetchReq.specifiers",
                StoredDataSpecifier::decode_known,
            )?,
        })
    }
}

/// `FetchKindResponse` — RFC 6940 §7.4.2.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchKindResponse {
    pub kind: KindId,
    pub generation: u64,
    pub values: Vec<StoredData>,
}

impl Encode for FetchKindResponse {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.kind);
        w.u64(self.generation);
        w.list(LenPrefix::U32, "FetchKindResponse.values", &self.values);
    }
}

/// `FetchAns` — RFC 6940 §7.4.2.2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchAns {
    pub kind_responses: Vec<FetchKindResponse>,
}

impl Encode for FetchAns {
    fn encode(&self, w: &mut Writer) {
        w.list(LenPrefix::U32, "FetchAns.kind_responses", &self.kind_responses);
    }
}

impl Decode for FetchAns {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FetchAns {
            kind_responses: per_kind_list(r, LenPrefix::U32, "FetchAns.kind_responses", |r| {
                let kind = r.u32("FetchKindResponse.kind")?;
                let generation = r.u64("FetchKindResponse.generation")?;
                Ok(
                    values_of_kind(r, kind, "FetchKindResponse.values", StoredData::decode_as)?.map(|values| {
                        FetchKindResponse {
                            kind,
                            generation,
                            values,
                        }
                    }),
                )
            })?,
        })
    }
}

/// `MetaData` — RFC 6940 §7.4.3.2: what Stat reports instead of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaData {
    pub exists: bool,
    pub value_length: u32,
    pub hash_algorithm: u8,
    pub hash_value: Vec<u8>,
}

impl Encode for MetaData {
    fn encode(&self, w: &mut Writer) {
        w.boolean(self.exists);
        w.u32(self.value_length);
        w.u8(self.hash_algorithm);
        w.opaque(LenPrefix::U8, "MetaData.hash_value", &self.hash_value);
    }
}

impl Decode for MetaData {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MetaData {
            exists: r.boolean("MetaData.exists")?,
            value_length: r.u32("MetaData.value_length")?,
            hash_algorithm: r.u8("MetaData.hash_algorithm")?,
            hash_value: r.opaque(LenPrefix::U8, "MetaData.hash_value")?,
        })
    }
}

/// `MetaDataValue` — RFC 6940 §7.4.3.2, the Stat counterpart of
/// StoredDataValue (`ArrayEntryMeta`, `DictionaryEntryMeta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaDataValue {
    SingleValue(MetaData),
    Array { index: u32, value: MetaData },
    Dictionary { key: DictionaryKey, value: MetaData },
}

impl Encode for MetaDataValue {
    fn encode(&self, w: &mut Writer) {
        match self {
            MetaDataValue::SingleValue(m) => m.encode(w),
            MetaDataValue::Array { index, value } => {
                w.u32(*index);
                value.encode(w);
            }
            MetaDataValue::Dictionary { key, value } => {
                w.opaque(LenPrefix::U16, "DictionaryEntryMeta.key", key);
                value.encode(w);
            }
        }
    }
}

/// `StoredMetaData` — RFC 6940 §7.4.3.2.
///
/// Its first field, named `value_length` in the struct, is read as the
/// RFC's prose defines it: "the same as the corresponding fields in
/// StoredData", whose first field is the length of the rest of the
/// structure. It is derived on encoding, like `StoredData.length`, and
/// Wireshark reads it the same way (docs/decisions/0002-rfc6940-ambiguities.md).
/// The stored value's own length is `MetaData::value_length`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMetaData {
    pub storage_time: u64,
    pub lifetime: u32,
    pub metadata: MetaDataValue,
}

impl Encode for StoredMetaData {
    fn encode(&self, w: &mut Writer) {
        w.prefixed(LenPrefix::U32, "StoredMetaData.value_length", |w| {
            w.u64(self.storage_time);
            w.u32(self.lifetime);
            self.metadata.encode(w);
        });
    }
}

impl StoredMetaData {
    fn decode_as(r: &mut Reader<'_>, model: DataModel) -> Result<Self, DecodeError> {
        let mut b = r.sub(LenPrefix::U32, "StoredMetaData.value_length")?;
        let m = StoredMetaData {
            storage_time: b.u64("StoredMetaData.storage_time")?,
            lifetime: b.u32("StoredMetaData.lifetime")?,
            metadata: match model {
                DataModel::SingleValue => MetaDataValue::SingleValue(MetaData::decode(&mut b)?),
                DataModel::Array => MetaDataValue::Array {
                    index: b.u32("ArrayEntryMeta.index")?,
                    value: MetaData::decode(&mut b)?,
                },
                DataModel::Dictionary => MetaDataValue::Dictionary {
                    key: b.opaque(LenPrefix::U16, "DictionaryEntryMeta.key")?,
                    value: MetaData::decode(&mut b)?,
                },
            },
        };
        b.finish("StoredMetaData")?;
        Ok(m)
    }
}

/// `StatKindResponse` — RFC 6940 §7.4.3.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatKindResponse {
    pub kind: KindId,
    pub generation: u64,
    pub values: Vec<StoredMetaData>,
}

impl Encode for StatKindResponse {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.kind);
        w.u64(self.generation);
        w.list(LenPrefix::U32, "StatKindResponse.values", &self.values);
    }
}

/// `StatAns` — RFC 6940 §7.4.3.2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatAns {
    pub kind_responses: Vec<StatKindResponse>,
}

impl Encode for StatAns {
    fn encode(&self, w: &mut Writer) {
        w.list(LenPrefix::U32, "StatAns.kind_responses", &self.kind_responses);
    }
}

impl Decode for StatAns {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(StatAns {
            kind_responses: per_kind_list(r, LenPrefix::U32, "StatAns.kind_responses", |r| {
                let kind = r.u32("StatKindResponse.kind")?;
                let generation = r.u64("StatKindResponse.generation")?;
                Ok(
                    values_of_kind(r, kind, "StatKindResponse.values", StoredMetaData::decode_as)?.map(|values| {
                        StatKindResponse {
                            kind,
                            generation,
                            values,
                        }
                    }),
                )
            })?,
        })
    }
}

/// `FindReq` — RFC 6940 §7.4.4.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindReq {
    pub resource: ResourceId,
    pub kinds: Vec<KindId>,
}

impl Encode for FindReq {
    fn encode(&self, w: &mut Writer) {
        self.resource.encode(w);
        w.prefixed(LenPrefix::U8, "FindReq.kinds", |w| {
            for k in &self.kinds {
                w.u32(*k);
            }
        });
    }
}

impl Decode for FindReq {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FindReq {
            resource: ResourceId::decode(r)?,
            kinds: r.list(LenPrefix::U8, "FindReq.kinds", |r| r.u32("KindId"))?,
        })
    }
}

/// `FindKindData` — RFC 6940 §7.4.4.2. An empty `closest` means none found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindKindData {
    pub kind: KindId,
    pub closest: ResourceId,
}

impl Encode for FindKindData {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.kind);
        self.closest.encode(w);
    }
}

impl Decode for FindKindData {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FindKindData {
            kind: r.u32("FindKindData.kind")?,
            closest: ResourceId::decode(r)?,
        })
    }
}

/// `FindAns` — RFC 6940 §7.4.4.2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindAns {
    pub results: Vec<FindKindData>,
}

impl Encode for FindAns {
    fn encode(&self, w: &mut Writer) {
        w.list(LenPrefix::U16, "FindAns.results", &self.results);
    }
}

impl Decode for FindAns {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FindAns {
            results: r.list(LenPrefix::U16, "FindAns.results", FindKindData::decode)?,
        })
    }
}
