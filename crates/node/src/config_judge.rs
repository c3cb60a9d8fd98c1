//! The daemon's [`ConfigurationJudge`]: reads §11.1 documents and kind
//! blocks and checks their signatures against the configuration the peer
//! runs on (RFC 6940 §6.5.4.2 and §11.1). The engine compares sequences and
//! decides what to adopt and whom to tell.

use crate::config_doc::{read_kind_block, Configuration, SignedConfiguration, MAX_DOCUMENT_SIZE};
use crate::identity::CertVerifier;
use overlay::{ConfigRefusal, ConfigurationJudge, KindDefinition, OverlayConfig};
use reload_wire::{KindId, NodeId};
use std::collections::BTreeMap;

#[derive(Clone)]
pub struct DocumentJudge {
    /// The CA the node was enrolled under (`ca.crt`): a document that drops
    /// it would leave the node unable to start again.
    pinned_ca: Vec<u8>,
    current: Configuration,
    /// Who signed each Kind the node knows (§6.5.4.2 conflicts).
    kind_signers: BTreeMap<KindId, Vec<NodeId>>,
    /// This node's own Node-IDs: a document listing one as a bad-node
    /// cannot be run.
    own_node_ids: Vec<NodeId>,
}

impl DocumentJudge {
    /// A judge for a peer running on `document` (verified when the node
    /// directory was loaded), enrolled under `pinned_ca`.
    pub fn new(document: &str, pinned_ca: Vec<u8>) -> Result<Self, crate::config_doc::ConfigError> {
        let signed = SignedConfiguration::parse(document, None)?;
        let mut judge = DocumentJudge {
            pinned_ca,
            current: signed.configuration.clone(),
            kind_signers: BTreeMap::new(),
            own_node_ids: Vec::new(),
        };
        judge.learn_kind_signers(&signed);
        Ok(judge)
    }

    /// The Node-IDs of the node this judge works for.
    pub fn for_node(mut self, node_ids: &[NodeId]) -> Self {
        self.own_node_ids = node_ids.to_vec();
        self
    }

    fn verifier(&self) -> CertVerifier {
        CertVerifier::new(self.current.trust_store())
    }

    fn learn_kind_signers(&mut self, signed: &SignedConfiguration) {
        let verifier = self.verifier();
        self.kind_signers = signed
            .kind_signers(&verifier)
            .into_iter()
            .map(|(kind, signers)| (kind.id, signers))
            .collect();
    }
}

impl ConfigurationJudge for DocumentJudge {
    fn judge_document(&mut self, document: &[u8]) -> Result<OverlayConfig, ConfigRefusal> {
        if document.len() > MAX_DOCUMENT_SIZE {
            return Err(ConfigRefusal::Invalid(format!("larger than {MAX_DOCUMENT_SIZE} bytes")));
        }
        let text = std::str::from_utf8(document).map_err(|_| ConfigRefusal::Invalid("not UTF-8".into()))?;
        let signed = SignedConfiguration::parse(text, Some(&self.current.instance_name))
            .map_err(|e| ConfigRefusal::Invalid(e.to_string()))?;
        signed
            .verify_signed_by(&self.verifier(), &self.current.configuration_signers)
            .map_err(|e| ConfigRefusal::NotSigned(e.to_string()))?;
        let new = &signed.configuration;
        // §11.1: "A monotonically increasing sequence number between 0 and
        // 2^16-2"; 65535 is reserved for ConfigUpdate headers.
        if new.sequence == u16::MAX {
            return Err(ConfigRefusal::Invalid("sequence 65535 is reserved".into()));
        }
        Ok(new.overlay_config())
    }

    fn check_runnable(&mut self, document: &[u8]) -> Result<(), ConfigRefusal> {
        let new = std::str::from_utf8(document)
            .ok()
            .and_then(|t| SignedConfiguration::parse(t, None).ok())
            .ok_or_else(|| ConfigRefusal::Invalid("unreadable".into()))?
            .configuration;
        if !new.root_certs.iter().any(|r| r.as_ref() == self.pinned_ca.as_slice()) {
            return Err(ConfigRefusal::Incompatible(
                "it drops the root-cert this node was enrolled under; enroll the node again".into(),
            ));
        }
        // §11.1: the overlay's operator has revoked this node.
        if let Some(me) = self.own_node_ids.iter().find(|n| new.bad_nodes.contains(n)) {
            return Err(ConfigRefusal::Revoked(me.to_hex()));
        }
        Ok(())
    }

    fn judge_kinds(&mut self, kind_blocks: &[Vec<u8>]) -> Result<Vec<KindDefinition>, ConfigRefusal> {
        let verifier = self.verifier();
        let mut kinds = Vec::new();
        for block in kind_blocks {
            let (kind, signers) = read_kind_block(block, &verifier).map_err(|e| match e {
                crate::config_doc::ConfigError::BadSignature(why) => ConfigRefusal::NotSigned(why),
                other => ConfigRefusal::Invalid(other.to_string()),
            })?;
            if !signers.iter().any(|n| self.current.kind_signers.contains(n)) {
                return Err(ConfigRefusal::NotSigned(format!(
                    "kind {} is not signed by a kind-signer",
                    kind.name
                )));
            }
            let known = self.kind_signers.get(&kind.id);
            if known.is_some_and(|by| !by.iter().any(|n| signers.contains(n))) {
                return Err(ConfigRefusal::ConflictingKind(kind.name));
            }
            kinds.push((kind, signers));
        }
        // Judged means taken (the engine adopts what changes something).
        Ok(kinds
            .into_iter()
            .map(|(kind, signers)| {
                self.kind_signers.insert(kind.id, signers);
                kind
            })
            .collect())
    }

    fn adopt(&mut self, document: &[u8]) {
        let Some(signed) = std::str::from_utf8(document)
            .ok()
            .and_then(|t| SignedConfiguration::parse(t, None).ok())
        else {
            return;
        };
        self.current = signed.configuration.clone();
        self.learn_kind_signers(&signed);
    }
}

#[cfg(test)]
mod tests;
