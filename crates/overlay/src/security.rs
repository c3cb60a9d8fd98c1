//! The identity interface — RFC 6940 §6.3.4 (message signatures) and §7.1
//! (stored-data signatures). The engine decides *what* is signed and what a
//! verified signer may do; an implementation of [`Security`] decides *how*.
//! The daemon backs it with X.509 certificates from the enrollment server;
//! the simulator and tests use [`SimulatedSecurity`].

use reload_wire::security::{hash_algorithm, SignerIdentity};
use reload_wire::{GenericCertificate, NodeId, Signature, SignatureAndHashAlgorithm};
use thiserror::Error;

/// Who signed something, as vouched for by a certificate (§6.3.4, §7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The certificate's user name (rfc822Name), hashed by USER-MATCH.
    pub user: String,
    /// Every Node-ID the certificate carries.
    pub node_ids: Vec<NodeId>,
    /// The Node-ID the SignerIdentity singles out (cert_hash_node_id), if any.
    pub signer_node_id: Option<NodeId>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SecurityError {
    #[error("no certificate for the signer")]
    UnknownSigner,
    #[error("signature does not verify")]
    BadSignature,
    #[error("anonymous signature where one is required")]
    Anonymous,
}

/// Signs as one identity: this node, or a user enrolled into it.
pub trait Signer {
    /// The SignerIdentity these signatures carry.
    fn identity(&self) -> SignerIdentity;
    /// Certificates to put in the security block of a message (§6.3.4).
    fn certificates(&self) -> Vec<GenericCertificate>;
    /// Signs `input` (a message's or a stored value's signature input).
    fn sign(&self, input: &[u8]) -> Signature;
}

/// Signs on behalf of this node and verifies others.
pub trait Security: Signer {
    /// Signs as `user` instead of as the node: RFC 7904 §3.3 has a
    /// SIP-REGISTRATION signed by the user's certificate, which carries
    /// this node's Node-ID. `None` when no such user is enrolled here.
    fn user_signer(&self, _user: &str) -> Option<&dyn Signer> {
        None
    }
    /// The users enrolled into this node, whose certificates the node
    /// stores in the overlay (RFC 6940 §8) and signs as.
    fn enrolled_users(&self) -> Vec<String> {
        Vec::new()
    }
    /// The certificate (DER) of a user enrolled into this node.
    fn enrolled_certificate(&self, _user: &str) -> Option<Vec<u8>> {
        None
    }
    /// Certificates of other signers whose stored values a message carries
    /// (a replica Store, a Fetch answer): §6.3.4 asks the bucket to hold
    /// every certificate needed to verify the message, and a peer storing
    /// data to keep the certificates of that data.
    fn certificates_for(&self, _signers: &[&SignerIdentity]) -> Vec<GenericCertificate> {
        Vec::new()
    }
    /// The credential [`verify`](Self::verify) finds in a signature by this
    /// node (`None`) or by one of its enrolled users. A node takes the
    /// messages it sends to itself with this, unsigned: no other node
    /// sees them. It fails where verify would fail for the same signer,
    /// say once its certificate has expired.
    fn own_credential(&self, user: Option<&str>) -> Result<Credential, SecurityError>;
    /// Verifies `signature` over `input`, with `certificates` from the
    /// message's security block as extra candidates for the signer.
    fn verify(
        &self,
        input: &[u8],
        signature: &Signature,
        certificates: &[GenericCertificate],
    ) -> Result<Credential, SecurityError>;
    /// Whether [`verify`](Self::verify) reads `input`. When it does not, the
    /// engine skips building signature inputs.
    fn needs_signature_input(&self) -> bool {
        true
    }
}

/// A stand-in for certificates inside the simulator and unit tests: the
/// SignerIdentity names the Node-ID and the "signature" is the user name.
/// It proves nothing and must never back a real peer; it exists so the
/// access-control rules run in simulation exactly as in the daemon.
#[derive(Debug, Clone)]
pub struct SimulatedSecurity {
    pub node_id: NodeId,
    pub user: String,
    /// Users enrolled into this node, with its Node-ID.
    pub users: Vec<SimulatedSecurity>,
}

impl SimulatedSecurity {
    pub fn new(node_id: NodeId, user: impl Into<String>) -> Self {
        SimulatedSecurity {
            node_id,
            user: user.into(),
            users: Vec::new(),
        }
    }

    /// Enrols `user` into this node: it may then sign as that user.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.users.push(SimulatedSecurity::new(self.node_id, user));
        self
    }

    /// SHA-256 with the private-use signature algorithm 224, so that no real
    /// verifier mistakes a simulated signature for one it can check.
    pub const ALGORITHM: SignatureAndHashAlgorithm = SignatureAndHashAlgorithm {
        hash: hash_algorithm::SHA256,
        signature: 224,
    };
}

impl Signer for SimulatedSecurity {
    fn identity(&self) -> SignerIdentity {
        SignerIdentity::CertHashNodeId {
            hash_alg: hash_algorithm::SHA256,
            certificate_node_id_hash: self.node_id.as_bytes().to_vec(),
        }
    }

    fn certificates(&self) -> Vec<GenericCertificate> {
        Vec::new()
    }

    fn sign(&self, _input: &[u8]) -> Signature {
        Signature {
            algorithm: Self::ALGORITHM,
            identity: self.identity(),
            signature_value: self.user.as_bytes().to_vec(),
        }
    }
}

impl Security for SimulatedSecurity {
    fn user_signer(&self, user: &str) -> Option<&dyn Signer> {
        self.users.iter().find(|u| u.user == user).map(|u| u as &dyn Signer)
    }

    /// What [`verify`](Security::verify) makes of this signer's "signature"
    /// (the user name, with the node's Node-ID).
    fn own_credential(&self, user: Option<&str>) -> Result<Credential, SecurityError> {
        let user = match user {
            None => self.user.clone(),
            Some(u) if self.users.iter().any(|enrolled| enrolled.user == u) => u.to_string(),
            Some(_) => return Err(SecurityError::UnknownSigner),
        };
        Ok(Credential {
            user,
            node_ids: vec![self.node_id],
            signer_node_id: Some(self.node_id),
        })
    }

    fn verify(
        &self,
        _input: &[u8],
        signature: &Signature,
        _certificates: &[GenericCertificate],
    ) -> Result<Credential, SecurityError> {
        if signature.algorithm != Self::ALGORITHM {
            return Err(SecurityError::Anonymous);
        }
        let SignerIdentity::CertHashNodeId {
            certificate_node_id_hash,
            ..
        } = &signature.identity
        else {
            return Err(SecurityError::UnknownSigner);
        };
        let node = NodeId::from_slice(certificate_node_id_hash).map_err(|_| SecurityError::UnknownSigner)?;
        let user = String::from_utf8(signature.signature_value.clone()).map_err(|_| SecurityError::BadSignature)?;
        Ok(Credential {
            user,
            node_ids: vec![node],
            signer_node_id: Some(node),
        })
    }

    fn needs_signature_input(&self) -> bool {
        false
    }
}
