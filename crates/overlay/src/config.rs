//! The parts of the overlay configuration document (RFC 6940 §11.1) the
//! engine runs on. The daemon fills this from the XML document; the
//! simulator from its command line.

use reload_wire::{overlay_hash, DataModel, DecodeContext, KindId};

/// Access-control policy of a Kind — RFC 6940 §7.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessPolicy {
    /// §7.3.1: the signer's user name hashes to the Resource-ID.
    UserMatch,
    /// §7.3.2: a Node-ID of the signer hashes to the Resource-ID.
    NodeMatch,
    /// §7.3.3: user name hashes to the Resource-ID and the dictionary key is
    /// the signer's Node-ID (dictionaries only).
    UserNodeMatch,
    /// §7.3.4: H(Node-ID || i) is the Resource-ID for some 1 <= i <= max.
    NodeMultiple { max: u32 },
}

/// A `<kind>` element — RFC 6940 §11.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindDefinition {
    pub id: KindId,
    pub name: String,
    pub data_model: DataModel,
    pub access: AccessPolicy,
    /// `max-count`: most values one Resource-ID may hold for this Kind.
    pub max_count: u32,
    /// `max-size`: largest single value in bytes.
    pub max_size: u32,
}

/// Chord-reload parameters — RFC 6940 §10 and the chord-* elements of §11.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChordConfig {
    /// `chord-update-interval`: period of the neighbour Updates (§10.7.4.1).
    pub update_interval_ms: u64,
    /// `chord-ping-interval`: least time between finger searches (§10.7.4.2).
    pub ping_interval_ms: u64,
    /// `chord-reactive`: send Updates as soon as the neighbour table changes
    /// and search for a replacement finger as soon as one fails (§10.7.1-2).
    pub reactive: bool,
    /// Successors and predecessors kept; at least 3 (§10.7).
    pub neighbors: usize,
    /// How long reactive Updates wait so that one burst of changes (a crash
    /// noticed by several links at once) sends one Update, not several.
    pub reactive_delay_ms: u64,
    /// Fewest Finger Table entries the peer tries to keep (§10.7.4.3: 16).
    pub min_fingers: usize,
    /// How often the peer checks for a partition (§10.7.4.4: "periodically"
    /// with no configuration element; our choice is the Update interval's
    /// default). 0 turns the check off.
    pub partition_check_interval_ms: u64,
}

impl Default for ChordConfig {
    fn default() -> Self {
        ChordConfig {
            update_interval_ms: 600_000,
            ping_interval_ms: 3_600_000,
            reactive: true,
            neighbors: 3,
            reactive_delay_ms: 200,
            min_fingers: 16,
            partition_check_interval_ms: 600_000,
        }
    }
}

/// Our extension `<p2psip:storage-quota per-user per-node total>`
/// (decision 0030): bytes of stored values one peer keeps at most for one
/// signing user, for one signing Node-ID, and in all. RFC 6940 §13.5.2
/// bounds each Kind; this bounds a peer's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageQuota {
    pub per_user_bytes: u64,
    pub per_node_bytes: u64,
    pub total_bytes: u64,
}

impl StorageQuota {
    /// 1 MiB per user and per Node-ID (a SIP user with ten phones keeps
    /// about 10 KB: registrations and certificates), 256 MiB in all.
    pub const DEFAULT: StorageQuota = StorageQuota {
        per_user_bytes: 1 << 20,
        per_node_bytes: 1 << 20,
        total_bytes: 256 << 20,
    };
}

impl Default for StorageQuota {
    fn default() -> Self {
        StorageQuota::DEFAULT
    }
}

/// What the engine needs from the configuration document.
#[derive(Debug, Clone)]
pub struct OverlayConfig {
    /// `instance-name`; its hash goes in every forwarding header (§6.3.2).
    pub instance_name: String,
    /// The configuration document's `sequence` (§6.3.2.1): sent in every
    /// forwarding header and checked on every request delivered here.
    pub configuration_sequence: u16,
    pub node_id_length: usize,
    pub max_message_size: usize,
    /// `initial-ttl` (§6.3.2), 100 unless configured.
    pub initial_ttl: u8,
    /// `overlay-reliability-timer` in ms (§6.2.1), 3000 unless configured.
    pub reliability_timer_ms: u64,
    /// Retransmissions of an unanswered request after the first (§6.2.1: 4).
    pub max_retransmits: u8,
    /// How long answers are remembered to answer retransmitted requests
    /// identically (§6.2.1: the maximum request lifetime, 15 s).
    pub request_lifetime_ms: u64,
    /// How often stored values are checked for expiry (§7).
    pub expiry_sweep_ms: u64,
    pub chord: ChordConfig,
    pub kinds: Vec<KindDefinition>,
    pub storage_quota: StorageQuota,
}

impl OverlayConfig {
    /// A configuration with the RFC's defaults and no Kinds.
    pub fn new(instance_name: impl Into<String>) -> Self {
        OverlayConfig {
            instance_name: instance_name.into(),
            configuration_sequence: 0,
            node_id_length: 16,
            max_message_size: DecodeContext::DEFAULT_MAX_MESSAGE_SIZE,
            initial_ttl: reload_wire::header::DEFAULT_INITIAL_TTL,
            reliability_timer_ms: 3000,
            max_retransmits: 4,
            request_lifetime_ms: 15_000,
            expiry_sweep_ms: 60_000,
            chord: ChordConfig::default(),
            kinds: Vec::new(),
            storage_quota: StorageQuota::DEFAULT,
        }
    }

    pub fn with_kind(mut self, kind: KindDefinition) -> Self {
        self.kinds.retain(|k| k.id != kind.id);
        self.kinds.push(kind);
        self
    }

    pub fn overlay_hash(&self) -> u32 {
        overlay_hash(&self.instance_name)
    }

    pub fn kind(&self, id: KindId) -> Option<&KindDefinition> {
        self.kinds.iter().find(|k| k.id == id)
    }

    /// The decoder limits and Kind data models this configuration implies.
    pub fn decode_context(&self) -> Result<DecodeContext, reload_wire::EncodeError> {
        let mut ctx = DecodeContext::new(self.node_id_length, self.max_message_size)?;
        for k in &self.kinds {
            ctx = ctx.with_kind(k.id, k.data_model);
        }
        Ok(ctx)
    }
}
