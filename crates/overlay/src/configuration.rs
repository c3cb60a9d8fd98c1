//! Configuration updates: RFC 6940 §6.5.4 (ConfigUpdate), §6.3.2.1
//! (configuration sequence numbers) and the signing rules of §11.1.
//!
//! The engine decides which document a node runs on, when it tells
//! another node of a newer one and where an update goes next. Reading a
//! document (XML) and checking its signatures against the overlay's
//! certificates is the job of a [`ConfigurationJudge`] the driver gives
//! the engine: the daemon's reads the §11.1 XML, a test's can be trivial.

use crate::config::{AccessPolicy, KindDefinition, OverlayConfig};
use reload_wire::ErrorCode;
use reload_wire::KindId;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use thiserror::Error;

/// Reads and checks what a ConfigUpdate carries (§6.5.4.2).
pub trait ConfigurationJudge: Send {
    /// The configuration a whole document describes, if it is correctly
    /// signed by a configuration-signer of the configuration this node
    /// runs on (§11.1: "signed by one of the configuration-signer elements
    /// from the previous extant configuration") and this node can run it.
    /// The engine compares its sequence; the judge need not.
    fn judge_document(&mut self, document: &[u8]) -> Result<OverlayConfig, ConfigRefusal>;

    /// Whether this node can run a document judged before: §11.1 "If a
    /// node is not capable of supporting the new requirements, it MUST
    /// exit the overlay". Asked only of documents newer than the current
    /// one, so an old document replayed cannot make a node exit.
    fn check_runnable(&mut self, _document: &[u8]) -> Result<(), ConfigRefusal> {
        Ok(())
    }

    /// The Kinds a list of kind-block elements defines, if each is signed
    /// by a kind-signer of the current configuration and none conflicts
    /// with a known Kind signed by another signer (§6.5.4.2).
    fn judge_kinds(&mut self, kind_blocks: &[Vec<u8>]) -> Result<Vec<KindDefinition>, ConfigRefusal>;

    /// The node now runs on `document` (judged before): its signers judge
    /// the next update.
    fn adopt(&mut self, document: &[u8]);
}

/// Why a configuration update was not taken; each maps to one RELOAD
/// error code ([`ConfigRefusal::error_code`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigRefusal {
    #[error("not signed by a signer of this node's configuration: {0}")]
    NotSigned(String),
    #[error("not a valid configuration: {0}")]
    Invalid(String),
    /// Correctly signed, but this node cannot run it (§11.1: it must then
    /// exit the overlay).
    #[error("this node cannot run the new configuration: {0}")]
    Incompatible(String),
    /// The new configuration lists this node as a bad-node (§11.1): the
    /// overlay's operator revoked it. It must exit, and every peer cuts it
    /// off, so it has no data to hand over to anyone.
    #[error("the new configuration lists this node ({0}) as a bad-node")]
    Revoked(String),
    #[error("configuration sequence {theirs} is older than this node's {ours}")]
    Older { ours: u16, theirs: u16 },
    #[error("kind {0} is already defined otherwise; change a Kind with a new configuration document")]
    ConflictingKind(String),
    #[error("too many configuration updates to check; try again in a few seconds")]
    TooMany,
    #[error("this node takes no configuration updates")]
    NotTaken,
    #[error("unknown ConfigUpdateType {0}")]
    UnknownType(u8),
}

impl ConfigRefusal {
    /// §6.5.4.2: "appropriate errors MUST be generated". An older document
    /// is Error_Config_Too_Old, as a request with an older sequence would
    /// be (§6.3.2.1); a conflicting Kind is Error_Forbidden as the RFC
    /// says; a document this node cannot run is
    /// Error_Incompatible_with_Overlay.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ConfigRefusal::Older { .. } => ErrorCode::CONFIG_TOO_OLD,
            ConfigRefusal::Invalid(_) | ConfigRefusal::UnknownType(_) => ErrorCode::INVALID_MESSAGE,
            ConfigRefusal::Incompatible(_) | ConfigRefusal::Revoked(_) => ErrorCode::INCOMPATIBLE_WITH_OVERLAY,
            ConfigRefusal::NotSigned(_)
            | ConfigRefusal::ConflictingKind(_)
            | ConfigRefusal::TooMany
            | ConfigRefusal::NotTaken => ErrorCode::FORBIDDEN,
        }
    }
}

/// §6.3.2.1: sequences compare "by modulo arithmetic as in TCP": `theirs`
/// is newer than `ours` when it is less than half the number space ahead.
pub fn compare_sequences(theirs: u16, ours: u16) -> Ordering {
    (theirs.wrapping_sub(ours) as i16).cmp(&0)
}

/// §6.3.2.1: the sequence a ConfigUpdate carries so that it is taken
/// whatever the receiver's sequence.
pub const ANY_SEQUENCE: u16 = u16::MAX;

/// Documents judged at most per [`JUDGING_WINDOW_MS`]: each costs a
/// signature check, and any enrolled node may send one.
pub const MAX_JUDGED: u32 = 16;
pub const JUDGING_WINDOW_MS: u64 = 10_000;

/// A node is told of a newer document at most once per this long
/// (§6.3.2.1 pushes after Error_Config_Too_Old).
pub const TELL_AGAIN_AFTER_MS: u64 = 10_000;
/// Nodes told of the document per second at most, whoever asks.
pub const MAX_TOLD_PER_S: u32 = 20;
/// Nodes remembered as told, at most.
const MAX_REMEMBERED: usize = 1024;

/// A budget of events per window.
#[derive(Debug, Default)]
struct Window {
    start: u64,
    used: u32,
}

impl Window {
    fn take(&mut self, now: u64, length_ms: u64, most: u32) -> bool {
        if now >= self.start + length_ms {
            self.start = now;
            self.used = 0;
        }
        if self.used >= most {
            return false;
        }
        self.used += 1;
        true
    }
}

/// What a node keeps of its configuration beyond [`OverlayConfig`]: the
/// signed document it hands on, its judge, and the budgets that keep
/// updates from costing more than a few signature checks and messages.
#[derive(Default)]
pub struct ConfigurationKeeper {
    judge: Option<Box<dyn ConfigurationJudge>>,
    document: Option<std::sync::Arc<[u8]>>,
    /// Kind blocks taken since the document, by their bytes: copies of
    /// them arriving over every link are recognised without a check.
    kind_blocks: std::collections::BTreeSet<Vec<u8>>,
    judged: Window,
    told_window: Window,
    told: BTreeMap<Vec<u8>, u64>,
    /// Kinds whose access policy the node's usages depend on: a document
    /// that changes one cannot be run by this node.
    required: Vec<(KindId, AccessPolicy)>,
}

impl std::fmt::Debug for ConfigurationKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigurationKeeper")
            .field("judge", &self.judge.is_some())
            .field("document_len", &self.document.as_ref().map(|d| d.len()))
            .finish()
    }
}

impl ConfigurationKeeper {
    pub fn new(document: Vec<u8>, judge: Box<dyn ConfigurationJudge>) -> Self {
        ConfigurationKeeper {
            judge: Some(judge),
            document: Some(document.into()),
            ..Default::default()
        }
    }

    /// Takes configuration updates from now on, judged by `judge`, the
    /// node running on `document`; the Kind policies required stay.
    pub fn take_updates(&mut self, document: Vec<u8>, judge: Box<dyn ConfigurationJudge>) {
        let required = std::mem::take(&mut self.required);
        *self = ConfigurationKeeper::new(document, judge);
        self.required = required;
    }

    /// The signed document this node runs on, if it was given one.
    pub fn document(&self) -> Option<&std::sync::Arc<[u8]>> {
        self.document.as_ref()
    }

    /// Judges `document` against `current` (§6.5.4.2): `Ok(None)` when it
    /// is the document this node already runs on. `budgeted` documents
    /// (from other nodes) count against [`MAX_JUDGED`]; the operator's and
    /// the configuration server's do not.
    pub fn judge_document(
        &mut self,
        now: u64,
        current: &OverlayConfig,
        document: &[u8],
        budgeted: bool,
    ) -> Result<Option<OverlayConfig>, ConfigRefusal> {
        if self.document.as_deref() == Some(document) {
            return Ok(None);
        }
        let judge = self.judge.as_mut().ok_or(ConfigRefusal::NotTaken)?;
        if budgeted && !self.judged.take(now, JUDGING_WINDOW_MS, MAX_JUDGED) {
            return Err(ConfigRefusal::TooMany);
        }
        let new = judge.judge_document(document)?;
        let (ours, theirs) = (current.configuration_sequence, new.configuration_sequence);
        match compare_sequences(theirs, ours) {
            Ordering::Greater => {}
            Ordering::Equal => return Ok(None),
            Ordering::Less => return Err(ConfigRefusal::Older { ours, theirs }),
        }
        if new.instance_name != current.instance_name || new.node_id_length != current.node_id_length {
            return Err(ConfigRefusal::Incompatible(format!(
                "it is for overlay {} with {}-byte Node-IDs",
                new.instance_name, new.node_id_length
            )));
        }
        check_required(&self.required, &new).map_err(ConfigRefusal::Incompatible)?;
        new.decode_context()
            .map_err(|e| ConfigRefusal::Invalid(format!("its limits are unusable: {e}")))?;
        judge.check_runnable(document)?;
        Ok(Some(new))
    }

    /// Judges kind blocks (§6.5.4.2): the configuration with them merged
    /// in, or `None` when they change nothing.
    pub fn judge_kinds(
        &mut self,
        now: u64,
        current: &OverlayConfig,
        blocks: &[Vec<u8>],
    ) -> Result<Option<OverlayConfig>, ConfigRefusal> {
        if blocks.iter().all(|b| self.kind_blocks.contains(b)) {
            return Ok(None);
        }
        let judge = self.judge.as_mut().ok_or(ConfigRefusal::NotTaken)?;
        if !self.judged.take(now, JUDGING_WINDOW_MS, MAX_JUDGED) {
            return Err(ConfigRefusal::TooMany);
        }
        let kinds = judge.judge_kinds(blocks)?;
        // A kind update carries no sequence: it could be a replay of an
        // older definition. So it only adds Kinds; changing one takes a new
        // document with a higher sequence (§11.1: "the new information in
        // the configuration files overrides any previously learned").
        let mut ids = std::collections::BTreeSet::new();
        for k in &kinds {
            if !ids.insert(k.id) {
                return Err(ConfigRefusal::Invalid(format!("kind {} is defined twice", k.name)));
            }
            if current.kind(k.id).is_some_and(|known| known != k) {
                return Err(ConfigRefusal::ConflictingKind(k.name.clone()));
            }
        }
        if kinds.iter().all(|k| current.kind(k.id).is_some()) {
            return Ok(None);
        }
        let new = kinds.into_iter().fold(current.clone(), OverlayConfig::with_kind);
        check_required(&self.required, &new).map_err(ConfigRefusal::Invalid)?;
        new.decode_context()
            .map_err(|e| ConfigRefusal::Invalid(format!("the Kinds are unusable: {e}")))?;
        if self.kind_blocks.len() < 256 {
            self.kind_blocks.extend(blocks.iter().cloned());
        }
        Ok(Some(new))
    }

    /// The node's usages need these Kinds under these access policies.
    pub fn require(&mut self, kinds: &[(KindId, AccessPolicy)]) {
        for kind in kinds {
            if !self.required.contains(kind) {
                self.required.push(*kind);
            }
        }
    }

    /// The node runs on `document` from now on.
    pub fn adopt(&mut self, document: std::sync::Arc<[u8]>) {
        if let Some(judge) = self.judge.as_mut() {
            judge.adopt(&document);
        }
        self.document = Some(document);
        self.kind_blocks.clear();
    }

    /// Whether to send `node` (a Destination's bytes) this node's document
    /// now: once per node per [`TELL_AGAIN_AFTER_MS`] and
    /// [`MAX_TOLD_PER_S`] nodes a second, so forged requests with old
    /// sequences cannot make this node a flood source.
    pub fn may_tell(&mut self, now: u64, node: &[u8]) -> bool {
        if self.document.is_none() {
            return false;
        }
        if self.told.get(node).is_some_and(|&at| now < at + TELL_AGAIN_AFTER_MS) {
            return false;
        }
        if !self.told_window.take(now, 1_000, MAX_TOLD_PER_S) {
            return false;
        }
        if self.told.len() >= MAX_REMEMBERED {
            self.told.retain(|_, at| now < *at + TELL_AGAIN_AFTER_MS);
            if self.told.len() >= MAX_REMEMBERED {
                return false;
            }
        }
        self.told.insert(node.to_vec(), now);
        true
    }
}

/// Why `config` breaks a Kind policy the node's usages need, if it does.
fn check_required(required: &[(KindId, AccessPolicy)], config: &OverlayConfig) -> Result<(), String> {
    for (id, needed) in required {
        if let Some(defined) = config.kind(*id).filter(|d| d.access != *needed) {
            return Err(format!(
                "it gives Kind {} ({id}) access policy {:?}, where this node's usage needs {needed:?}",
                defined.name, defined.access
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_compare_modulo_2_16() {
        assert_eq!(compare_sequences(2, 1), Ordering::Greater);
        assert_eq!(compare_sequences(1, 2), Ordering::Less);
        assert_eq!(compare_sequences(7, 7), Ordering::Equal);
        // §6.3.2.1: after 65534 comes 0.
        assert_eq!(compare_sequences(0, 65_534), Ordering::Greater);
        assert_eq!(compare_sequences(65_534, 3), Ordering::Less);
    }

    #[test]
    fn a_node_is_told_once_per_interval_and_the_whole_overlay_at_a_bounded_rate() {
        let mut k = ConfigurationKeeper {
            document: Some(b"doc".to_vec().into()),
            ..Default::default()
        };
        assert!(k.may_tell(0, b"a"));
        assert!(!k.may_tell(1, b"a"), "the same node again at once");
        assert!(k.may_tell(TELL_AGAIN_AFTER_MS, b"a"), "after the interval");
        let told = (0..100u32).filter(|i| k.may_tell(20_000, &i.to_be_bytes())).count();
        assert_eq!(told, MAX_TOLD_PER_S as usize, "nodes told in one second");
        assert!(
            !ConfigurationKeeper::default().may_tell(0, b"a"),
            "nothing to tell without a document"
        );
    }
}
