//! Data storage — RFC 6940 §7: the values a peer holds, the Store, Fetch,
//! Stat and Find semantics of §7.4, lifetimes, and the access-control
//! policies of §7.3. Signature verification is the caller's: it hands in a
//! function that turns a StoredData into the signer's [`Credential`].

use crate::config::{AccessPolicy, KindDefinition, OverlayConfig};
use crate::refusal::{Refusal, StorageMethod};
use crate::ring::{resource_position, Position};
use crate::security::{Credential, SecurityError};
use reload_wire::security::{hash_algorithm, SignerIdentity};
use reload_wire::{
    ArrayEntry, DataModel, DataValue, DictionaryEntry, FetchAns, FetchKindResponse, FetchReq, FindAns, FindKindData,
    FindReq, KindId, MetaData, MetaDataValue, ModelSpecifier, NodeId, ResourceId, Signature, StatAns, StatKindResponse,
    StoreAns, StoreKindData, StoreKindResponse, StoreReq, StoredData, StoredDataSpecifier, StoredDataValue,
    StoredMetaData,
};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};

/// §7.4.1.1: a Store at index 0xffffffff appends to the array.
pub const ARRAY_APPEND: u32 = u32::MAX;

mod quota;
pub use quota::Exceeded;
use quota::{Change, Owner, Usage};

#[derive(Debug, Clone)]
struct Entry {
    data: StoredData,
    expires_at: u64,
    owner: Owner,
}

#[derive(Debug, Clone)]
enum Values {
    Single(Option<Entry>),
    Array(BTreeMap<u32, Entry>),
    Dictionary(BTreeMap<Vec<u8>, Entry>),
}

impl Values {
    fn new(model: DataModel) -> Values {
        match model {
            DataModel::SingleValue => Values::Single(None),
            DataModel::Array => Values::Array(BTreeMap::new()),
            DataModel::Dictionary => Values::Dictionary(BTreeMap::new()),
        }
    }

    fn model(&self) -> DataModel {
        match self {
            Values::Single(_) => DataModel::SingleValue,
            Values::Array(_) => DataModel::Array,
            Values::Dictionary(_) => DataModel::Dictionary,
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::Single(v) => v.is_some() as usize,
            Values::Array(m) => m.len(),
            Values::Dictionary(m) => m.len(),
        }
    }

    fn entries(&self) -> Box<dyn Iterator<Item = &Entry> + '_> {
        match self {
            Values::Single(v) => Box::new(v.iter()),
            Values::Array(m) => Box::new(m.values()),
            Values::Dictionary(m) => Box::new(m.values()),
        }
    }

    /// The entry a value would replace.
    fn slot(&self, value: &StoredDataValue) -> Option<&Entry> {
        match (self, value) {
            (Values::Single(v), StoredDataValue::SingleValue(_)) => v.as_ref(),
            (Values::Array(m), StoredDataValue::Array(a)) => m.get(&a.index),
            (Values::Dictionary(m), StoredDataValue::Dictionary(d)) => m.get(&d.key),
            _ => None,
        }
    }

    /// Puts `entry` in its slot; the entry it replaced, if any.
    fn put(&mut self, entry: Entry) -> Option<Entry> {
        match (self, &entry.data.value) {
            (Values::Single(v), StoredDataValue::SingleValue(_)) => v.replace(entry),
            (Values::Array(m), StoredDataValue::Array(a)) => m.insert(a.index, entry),
            (Values::Dictionary(m), StoredDataValue::Dictionary(d)) => m.insert(d.key.clone(), entry),
            _ => None,
        }
    }

    /// Drops the entries expired by `now`, handing each to `gone`.
    fn expire(&mut self, now: u64, mut gone: impl FnMut(&Entry)) {
        let mut keep = |e: &Entry| {
            let live = e.expires_at > now;
            if !live {
                gone(e);
            }
            live
        };
        match self {
            Values::Single(v) => {
                if v.as_ref().is_some_and(|e| !keep(e)) {
                    *v = None;
                }
            }
            Values::Array(m) => m.retain(|_, e| keep(e)),
            Values::Dictionary(m) => m.retain(|_, e| keep(e)),
        }
    }
}

#[derive(Debug, Clone)]
struct KindData {
    generation: u64,
    values: Values,
}

/// The Kinds stored under one Resource-ID, sorted by Kind-ID. A resource
/// holds one to a few Kinds, and a sorted Vec holds them in a tenth of the
/// memory of a BTreeMap, whose smallest node has room for eleven.
#[derive(Debug, Clone, Default)]
struct KindMap(Vec<(KindId, KindData)>);

impl KindMap {
    fn get(&self, kind: &KindId) -> Option<&KindData> {
        let i = self.0.binary_search_by_key(kind, |(k, _)| *k).ok()?;
        Some(&self.0[i].1)
    }

    fn get_or_insert_with(&mut self, kind: KindId, make: impl FnOnce() -> KindData) -> &mut KindData {
        let i = match self.0.binary_search_by_key(&kind, |(k, _)| *k) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (kind, make()));
                i
            }
        };
        &mut self.0[i].1
    }

    fn iter(&self) -> impl Iterator<Item = (&KindId, &KindData)> {
        self.0.iter().map(|(k, d)| (k, d))
    }

    fn retain(&mut self, mut keep: impl FnMut(&mut KindData) -> bool) {
        self.0.retain_mut(|(_, d)| keep(d));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Everything stored under one Resource-ID.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: ResourceId,
    kinds: KindMap,
    /// Peers known to hold the current values (replication bookkeeping of
    /// §10.7.3; reset whenever a value changes). At most the replica set.
    holders: Vec<NodeId>,
    /// Counts the changes of the values: a push confirms a holder only if
    /// nothing changed while it was in flight.
    version: u64,
}

impl Resource {
    pub fn value_count(&self) -> usize {
        self.kinds.iter().map(|(_, k)| k.values.len()).sum()
    }

    /// Values held under this resource, by Kind.
    pub fn count_by_kind(&self) -> impl Iterator<Item = (KindId, usize)> + '_ {
        self.kinds.iter().map(|(k, d)| (*k, d.values.len()))
    }

    pub fn holds(&self, peer: &NodeId) -> bool {
        self.holders.contains(peer)
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn add_holder(&mut self, peer: NodeId) {
        if !self.holds(&peer) {
            self.holders.push(peer);
        }
    }

    /// Whether `sent` (a replica Store just merged in) carries every value
    /// this resource now holds: only then does its sender hold the current
    /// values. A replica that pushes back an older copy holds that copy,
    /// not what was stored since (§10.4).
    pub fn is_exactly(&self, sent: &[StoreKindData]) -> bool {
        self.kinds.iter().filter(|(_, k)| k.values.len() > 0).all(|(kind, k)| {
            let Some(theirs) = sent.iter().find(|s| s.kind == *kind) else {
                return false;
            };
            theirs.values.len() == k.values.len()
                && k.values
                    .entries()
                    .all(|e| theirs.values.iter().any(|t| is_same_signed_value(&e.data, t)))
        })
    }

    pub fn retain_holders(&mut self, keep: impl FnMut(&NodeId) -> bool) {
        self.holders.retain(keep);
    }

    /// The resource's values as StoreKindData, lifetimes shortened by the
    /// time already spent here (§7.4.1.1), for replica and migration Stores.
    pub fn export(&self, now: u64) -> Vec<StoreKindData> {
        self.kinds
            .iter()
            .filter(|(_, k)| k.values.len() > 0)
            .map(|(kind, k)| StoreKindData {
                kind: *kind,
                generation_counter: k.generation.max(1),
                values: k.values.entries().filter_map(|e| remaining(e, now)).collect(),
            })
            .collect()
    }
}

fn remaining(e: &Entry, now: u64) -> Option<StoredData> {
    let left_ms = e.expires_at.checked_sub(now).filter(|l| *l > 0)?;
    let mut data = e.data.clone();
    data.lifetime = (left_ms / 1000).clamp(1, u32::MAX as u64) as u32;
    Some(data)
}

/// The facts about a Store request the storage layer cannot find out itself.
pub struct StoreRequest<'a> {
    pub now: u64,
    /// Whether the storage quota's per-user and per-node limits apply:
    /// for original Stores and at the responsible peer (decision 0030).
    pub per_signer_quota: bool,
    /// Who signed the StoreReq message (checked for original stores).
    pub request_signer: &'a Credential,
    /// Verifies one value's signature (§7.1) and returns its signer.
    pub verify: &'a dyn Fn(&ResourceId, KindId, &StoredData) -> Result<Credential, SecurityError>,
    /// The overlay's hash of a name to a Resource-ID (§7.3).
    pub hash: &'a dyn Fn(&[u8]) -> ResourceId,
}

/// Whether `who` may write `value` of a Kind at `resource` — RFC 6940 §7.3.
pub fn authorized(
    policy: AccessPolicy,
    resource: &ResourceId,
    value: &StoredDataValue,
    who: &Credential,
    hash: &dyn Fn(&[u8]) -> ResourceId,
) -> bool {
    let signer_node = who.signer_node_id.filter(|n| who.node_ids.contains(n));
    match policy {
        AccessPolicy::UserMatch => hash(who.user.as_bytes()) == *resource,
        AccessPolicy::NodeMatch => signer_node.is_some_and(|n| hash(n.as_bytes()) == *resource),
        AccessPolicy::UserNodeMatch => {
            let StoredDataValue::Dictionary(d) = value else {
                return false;
            };
            hash(who.user.as_bytes()) == *resource && signer_node.is_some_and(|n| d.key == n.as_bytes())
        }
        // §7.3.4 leaves the encoding of i open; it is a 32-bit big-endian
        // integer here (decision 0004).
        AccessPolicy::NodeMultiple { max } => signer_node.is_some_and(|n| {
            (1..=max).any(|i| {
                let mut input = n.as_bytes().to_vec();
                input.extend_from_slice(&i.to_be_bytes());
                hash(&input) == *resource
            })
        }),
    }
}

fn is_anonymous(sig: &Signature) -> bool {
    sig.identity == SignerIdentity::None || (sig.algorithm.hash == 0 && sig.algorithm.signature == 0)
}

/// A value that is not there, as §7.4.2.2 synthesizes it.
fn nonexistent(value: StoredDataValue) -> StoredData {
    StoredData {
        storage_time: 0,
        lifetime: 0,
        value,
        signature: Signature::anonymous(),
    }
}

fn value_len(v: &StoredDataValue) -> usize {
    match v {
        StoredDataValue::SingleValue(d) => d.value.len(),
        StoredDataValue::Array(a) => a.value.value.len(),
        StoredDataValue::Dictionary(d) => d.value.value.len(),
    }
}

fn data_value(v: &StoredDataValue) -> &DataValue {
    match v {
        StoredDataValue::SingleValue(d) => d,
        StoredDataValue::Array(a) => &a.value,
        StoredDataValue::Dictionary(d) => &d.value,
    }
}

/// All values this peer stores, ordered by ring position.
#[derive(Debug, Default)]
pub struct Storage {
    resources: BTreeMap<(Position, Vec<u8>), Resource>,
    usage: Usage,
}

fn key(id: &ResourceId) -> (Position, Vec<u8>) {
    (resource_position(id), id.as_bytes().to_vec())
}

impl Storage {
    pub fn new() -> Self {
        Storage::default()
    }

    pub fn resource(&self, id: &ResourceId) -> Option<&Resource> {
        self.resources.get(&key(id))
    }

    pub fn resource_mut(&mut self, id: &ResourceId) -> Option<&mut Resource> {
        self.resources.get_mut(&key(id))
    }

    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values()
    }

    pub fn resource_ids(&self) -> Vec<ResourceId> {
        self.resources.values().map(|r| r.id.clone()).collect()
    }

    pub fn remove(&mut self, id: &ResourceId) -> Option<Resource> {
        let gone = self.resources.remove(&key(id))?;
        for (_, k) in gone.kinds.iter() {
            for e in k.values.entries() {
                self.usage.remove(&e.owner, quota::cost(&e.data));
            }
        }
        Some(gone)
    }

    /// Bytes of stored values held, as the storage quota counts them.
    pub fn bytes_held(&self) -> u64 {
        self.usage.total()
    }

    /// Number of Resource-IDs held (Probe num_resources, §6.4.2.5).
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Values held per Kind.
    pub fn count_by_kind(&self) -> BTreeMap<KindId, usize> {
        let mut out = BTreeMap::new();
        for r in self.resources.values() {
            for (k, n) in r.count_by_kind() {
                *out.entry(k).or_default() += n;
            }
        }
        out
    }

    /// Drops every value whose lifetime has run out (§7).
    pub fn expire(&mut self, now: u64) {
        let usage = &mut self.usage;
        self.resources.retain(|_, r| {
            r.kinds.retain(|k| {
                k.values.expire(now, |e| usage.remove(&e.owner, quota::cost(&e.data)));
                k.values.len() > 0
            });
            !r.kinds.is_empty()
        });
    }

    /// Store — RFC 6940 §7.4.1.1. `replica` is a nonzero replica_number:
    /// values are merged by storage_time, as when a partition heals, and the
    /// generation counter is taken from the request if a value was newer. The whole request is
    /// checked before anything changes, so it is atomic.
    pub fn store(
        &mut self,
        config: &OverlayConfig,
        req: &StoreReq,
        replica: bool,
        r: StoreRequest<'_>,
    ) -> Result<StoreAns, Refusal> {
        let unknown: Vec<KindId> = req
            .kind_data
            .iter()
            .map(|k| k.kind)
            .filter(|k| config.kind(*k).is_none())
            .collect();
        if !unknown.is_empty() {
            return Err(Refusal::UnknownKinds(unknown));
        }
        let mut seen = BTreeSet::new();
        if !req.kind_data.iter().all(|k| seen.insert(k.kind)) {
            return Err(Refusal::KindTwice(StorageMethod::Store));
        }
        let existing = self.resources.get(&key(&req.resource));
        // Validate everything first.
        let mut plans: Vec<(KindId, Vec<Entry>)> = Vec::with_capacity(req.kind_data.len());
        let mut change = Change::default();
        for kd in &req.kind_data {
            let def = config.kind(kd.kind).expect("checked above");
            let current = existing.and_then(|e| e.kinds.get(&kd.kind));
            if replica && kd.generation_counter == 0 {
                return Err(Refusal::ReplicaGenerationZero);
            }
            if !replica && kd.generation_counter != 0 {
                let have = current.map_or(0, |c| c.generation);
                if kd.generation_counter != have {
                    return Err(generation_too_low(req, existing));
                }
            }
            // Values kept under a Kind whose data model a newer
            // configuration changed cannot take this Store's; they go.
            let mut values = match current {
                Some(c) if c.values.model() == def.data_model => c.values.clone(),
                Some(c) => {
                    for e in c.values.entries() {
                        change.remove(&e.owner, quota::cost(&e.data));
                    }
                    Values::new(def.data_model)
                }
                None => Values::new(def.data_model),
            };
            let mut accepted = Vec::with_capacity(kd.values.len());
            for sd in &kd.values {
                let mut sd = sd.clone();
                let signer = check_value(def, &req.resource, &mut sd, &values, replica, &r)?;
                if !replica {
                    let who = r.request_signer;
                    if !authorized(def.access, &req.resource, &sd.value, who, r.hash) {
                        return Err(Refusal::RequestSignerMayNotWrite);
                    }
                }
                if let Some(old) = values.slot(&sd.value) {
                    // The same signed value again: a retransmitted Store
                    // that reached another member of the replica set after
                    // the first copy was replicated to it (with the lifetime
                    // left then, which the signature does not cover, §7.1),
                    // or a value its owner stored twice. It changes nothing
                    // and is no error (§7 refuses only a storage_time
                    // *before* the stored one; for a different value with
                    // the same time we keep `Error_Data_Too_Old`, since
                    // replicas could not agree which of the two is newer).
                    if is_same_signed_value(&old.data, &sd) {
                        // Unless its owner asks for a longer lifetime: a
                        // refresh, which replicas must hear of too.
                        let refreshed = r.now + sd.lifetime as u64 * 1000 > old.expires_at;
                        if replica || !refreshed {
                            continue;
                        }
                    } else if old.data.storage_time >= sd.storage_time {
                        if replica {
                            continue; // merge rule: the newer value stays
                        }
                        return Err(Refusal::DataTooOld);
                    }
                }
                let entry = Entry {
                    expires_at: r.now + sd.lifetime as u64 * 1000,
                    owner: self.usage.owner(&signer),
                    data: sd,
                };
                change.add(&entry.owner, quota::cost(&entry.data));
                if let Some(old) = values.put(entry.clone()) {
                    change.remove(&old.owner, quota::cost(&old.data));
                }
                accepted.push(entry);
            }
            if values.len() > def.max_count as usize {
                return Err(Refusal::TooManyValues);
            }
            plans.push((kd.kind, accepted));
        }
        if let Some(limit) = change.exceeds(&self.usage, &config.storage_quota, r.per_signer_quota || !replica) {
            return Err(Refusal::Quota(limit));
        }
        // Apply.
        let entry = self.resources.entry(key(&req.resource)).or_insert_with(|| Resource {
            id: req.resource.clone(),
            kinds: KindMap::default(),
            holders: Vec::new(),
            version: 0,
        });
        let mut responses = Vec::with_capacity(plans.len());
        for ((kind, accepted), kd) in plans.into_iter().zip(&req.kind_data) {
            let def = config.kind(kind).expect("checked above");
            let k = entry.kinds.get_or_insert_with(kind, || KindData {
                generation: 0,
                values: Values::new(def.data_model),
            });
            if k.values.model() != def.data_model {
                for e in k.values.entries() {
                    self.usage.remove(&e.owner, quota::cost(&e.data));
                }
                k.values = Values::new(def.data_model);
            }
            let changed = !accepted.is_empty();
            for entry in accepted {
                self.usage.add(&entry.owner, quota::cost(&entry.data));
                if let Some(old) = k.values.put(entry) {
                    self.usage.remove(&old.owner, quota::cost(&old.data));
                }
            }
            // The generation counts writes: a replica Store takes the
            // sender's only when it brought something newer, so a push of
            // stale values (a replay, or a node outside the replica set)
            // cannot move it.
            if replica && changed {
                k.generation = k.generation.max(kd.generation_counter);
            } else if changed {
                k.generation = k.generation.saturating_add(1);
            }
            if changed {
                entry.holders.clear();
                entry.version += 1;
            }
            responses.push(StoreKindResponse {
                kind,
                generation_counter: k.generation,
                replicas: Vec::new(),
            });
        }
        if entry.kinds.is_empty() {
            self.resources.remove(&key(&req.resource));
        }
        Ok(StoreAns {
            kind_responses: responses,
        })
    }

    /// Fetch — RFC 6940 §7.4.2.
    pub fn fetch(&self, config: &OverlayConfig, req: &FetchReq) -> Result<FetchAns, Refusal> {
        check_known(config, &req.specifiers)?;
        let res = self.resources.get(&key(&req.resource));
        let mut kind_responses = Vec::with_capacity(req.specifiers.len());
        for spec in &req.specifiers {
            let (generation, values) = match res.and_then(|r| r.kinds.get(&spec.kind)) {
                Some(k) if spec.generation != 0 && spec.generation == k.generation => (k.generation, Vec::new()),
                Some(k) => (k.generation, select(&k.values, spec)),
                None => (0, select(&Values::new(model_of(config, spec.kind)), spec)),
            };
            kind_responses.push(FetchKindResponse {
                kind: spec.kind,
                generation,
                values,
            });
        }
        Ok(FetchAns { kind_responses })
    }

    /// Stat — RFC 6940 §7.4.3: what Fetch would return, as metadata.
    pub fn stat(&self, config: &OverlayConfig, req: &FetchReq) -> Result<StatAns, Refusal> {
        let fetched = self.fetch(config, req)?;
        let kind_responses = fetched
            .kind_responses
            .into_iter()
            .map(|k| StatKindResponse {
                kind: k.kind,
                generation: k.generation,
                values: k.values.iter().map(meta_of).collect(),
            })
            .collect();
        Ok(StatAns { kind_responses })
    }

    /// Find — RFC 6940 §7.4.4: per Kind, the first Resource-ID at or after
    /// the one asked for that holds values of that Kind, or 0 (no wrap).
    pub fn find(&self, config: &OverlayConfig, req: &FindReq) -> Result<FindAns, Refusal> {
        let mut seen = BTreeSet::new();
        if !req.kinds.iter().all(|k| seen.insert(*k)) {
            return Err(Refusal::KindTwice(StorageMethod::Find));
        }
        let start = key(&req.resource);
        let zero = ResourceId(vec![0; req.resource.as_bytes().len().max(16)]);
        let results = req
            .kinds
            .iter()
            .map(|kind| {
                let closest = config
                    .kind(*kind)
                    .and_then(|_| {
                        self.resources
                            .range(start.clone()..)
                            .find(|(_, r)| r.kinds.get(kind).is_some_and(|k| k.values.len() > 0))
                            .map(|(_, r)| r.id.clone())
                    })
                    .unwrap_or_else(|| zero.clone());
                FindKindData { kind: *kind, closest }
            })
            .collect();
        Ok(FindAns { results })
    }
}

fn model_of(config: &OverlayConfig, kind: KindId) -> DataModel {
    config.kind(kind).map_or(DataModel::SingleValue, |k| k.data_model)
}

fn check_known(config: &OverlayConfig, specs: &[StoredDataSpecifier]) -> Result<(), Refusal> {
    let unknown: Vec<KindId> = specs
        .iter()
        .map(|s| s.kind)
        .filter(|k| config.kind(*k).is_none())
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Refusal::UnknownKinds(unknown))
}

/// The per-value checks of §7.4.1.1, and the append index of §7.4.1.1.
/// Whether two StoredData are one signed write: the same storage_time,
/// value and signature (RFC 6940 §7.1 signs these, not the lifetime).
fn is_same_signed_value(a: &StoredData, b: &StoredData) -> bool {
    a.storage_time == b.storage_time && a.value == b.value && a.signature == b.signature
}

fn check_value(
    def: &KindDefinition,
    resource: &ResourceId,
    sd: &mut StoredData,
    values: &Values,
    replica: bool,
    r: &StoreRequest<'_>,
) -> Result<Credential, Refusal> {
    let model_ok = matches!(
        (def.data_model, &sd.value),
        (DataModel::SingleValue, StoredDataValue::SingleValue(_))
            | (DataModel::Array, StoredDataValue::Array(_))
            | (DataModel::Dictionary, StoredDataValue::Dictionary(_))
    );
    if !model_ok {
        return Err(Refusal::WrongDataModel);
    }
    if is_anonymous(&sd.signature) {
        return Err(Refusal::Unsigned);
    }
    if value_len(&sd.value) > def.max_size as usize {
        return Err(Refusal::ValueTooLarge);
    }
    if let StoredDataValue::Array(a) = &mut sd.value {
        if a.index == ARRAY_APPEND && !replica {
            a.index = match values {
                Values::Array(m) => m.keys().next_back().map_or(0, |i| i + 1),
                _ => 0,
            };
        }
        if a.index >= def.max_count {
            return Err(Refusal::IndexBeyondMaxCount);
        }
    }
    // §7.1: the signature is over the value as the signer stored it; for an
    // append that is index 0 (§7.4.2.2), which the verifier reconstructs.
    let who = (r.verify)(resource, def.id, sd).map_err(|_| Refusal::BadValueSignature)?;
    if !authorized(def.access, resource, &sd.value, &who, r.hash) {
        return Err(Refusal::ValueSignerMayNotWrite);
    }
    Ok(who)
}

fn generation_too_low(req: &StoreReq, existing: Option<&Resource>) -> Refusal {
    let ans = StoreAns {
        kind_responses: req
            .kind_data
            .iter()
            .map(|kd| StoreKindResponse {
                kind: kd.kind,
                generation_counter: existing.and_then(|e| e.kinds.get(&kd.kind)).map_or(0, |k| k.generation),
                replicas: Vec::new(),
            })
            .collect(),
    };
    Refusal::GenerationTooLow(ans)
}

/// The values a specifier selects, with nonexistent ones synthesized (§7.4.2.2).
fn select(values: &Values, spec: &StoredDataSpecifier) -> Vec<StoredData> {
    match (values, &spec.model_specifier) {
        (Values::Single(v), _) => vec![v.as_ref().map_or_else(
            || {
                nonexistent(StoredDataValue::SingleValue(DataValue {
                    exists: false,
                    value: Vec::new(),
                }))
            },
            |e| e.data.clone(),
        )],
        (Values::Array(m), ModelSpecifier::Array(ranges)) => {
            let Some(&last_index) = m.keys().next_back() else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for range in ranges {
                let last = if range.last == ARRAY_APPEND {
                    last_index
                } else {
                    range.last.min(last_index)
                };
                for i in range.first..=last {
                    out.push(m.get(&i).map_or_else(
                        || {
                            nonexistent(StoredDataValue::Array(ArrayEntry {
                                index: i,
                                value: DataValue {
                                    exists: false,
                                    value: Vec::new(),
                                },
                            }))
                        },
                        |e| e.data.clone(),
                    ));
                }
            }
            out
        }
        (Values::Dictionary(m), ModelSpecifier::Dictionary(keys)) if keys.is_empty() => {
            m.values().map(|e| e.data.clone()).collect()
        }
        (Values::Dictionary(m), ModelSpecifier::Dictionary(keys)) => keys
            .iter()
            .map(|k| {
                m.get(k).map_or_else(
                    || {
                        nonexistent(StoredDataValue::Dictionary(DictionaryEntry {
                            key: k.clone(),
                            value: DataValue {
                                exists: false,
                                value: Vec::new(),
                            },
                        }))
                    },
                    |e| e.data.clone(),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// §7.4.3.2: metadata of a value; the digest covers the value with its
/// 4-byte length prefix.
fn meta_of(sd: &StoredData) -> StoredMetaData {
    let dv = data_value(&sd.value);
    let mut h = Sha1::new();
    h.update((dv.value.len() as u32).to_be_bytes());
    h.update(&dv.value);
    let meta = MetaData {
        exists: dv.exists,
        value_length: dv.value.len() as u32,
        hash_algorithm: hash_algorithm::SHA1,
        hash_value: h.finalize().to_vec(),
    };
    StoredMetaData {
        storage_time: sd.storage_time,
        lifetime: sd.lifetime,
        metadata: match &sd.value {
            StoredDataValue::SingleValue(_) => MetaDataValue::SingleValue(meta),
            StoredDataValue::Array(a) => MetaDataValue::Array {
                index: a.index,
                value: meta,
            },
            StoredDataValue::Dictionary(d) => MetaDataValue::Dictionary {
                key: d.key.clone(),
                value: meta,
            },
        },
    }
}

#[cfg(test)]
mod tests;
