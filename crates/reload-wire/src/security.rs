//! The security block — RFC 6940 §6.3.4: certificates and signatures.
//! Producing and checking signatures lives with the peer; these are the
//! structures and the exact signature inputs.

use crate::codec::{Decode, Encode, LenPrefix, Reader, Writer};
use crate::error::DecodeError;

/// TLS `HashAlgorithm` values (RFC 5246 §7.4.1.4.1) used in RELOAD.
pub mod hash_algorithm {
    pub const NONE: u8 = 0;
    pub const MD5: u8 = 1;
    pub const SHA1: u8 = 2;
    pub const SHA224: u8 = 3;
    pub const SHA256: u8 = 4;
    pub const SHA384: u8 = 5;
    pub const SHA512: u8 = 6;
}

/// TLS `SignatureAlgorithm` values (RFC 5246 §7.4.1.4.1, RFC 8422 for ed25519).
pub mod signature_algorithm {
    pub const ANONYMOUS: u8 = 0;
    pub const RSA: u8 = 1;
    pub const DSA: u8 = 2;
    pub const ECDSA: u8 = 3;
    pub const ED25519: u8 = 7;
}

/// `CertificateType` from RFC 6091: X.509(0), OpenPGP(1).
pub mod certificate_type {
    pub const X509: u8 = 0;
    pub const OPENPGP: u8 = 1;
}

/// TLS `SignatureAndHashAlgorithm` (RFC 5246 §7.4.1.4.1): hash, then signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureAndHashAlgorithm {
    pub hash: u8,
    pub signature: u8,
}

impl SignatureAndHashAlgorithm {
    /// {0, 0}, "none"/"anonymous": what a FetchAns carries for values the
    /// storing peer synthesised, e.g. a non-existent one (§7.4.2.2). A
    /// StoreReq signed this way MUST be refused with Error_Forbidden (§7.4.1.1).
    pub const ANONYMOUS: Self = SignatureAndHashAlgorithm { hash: 0, signature: 0 };
    /// The mandatory-to-implement RSASSA-PKCS1-v1_5 with SHA-256 (§6.3.4).
    pub const RSA_SHA256: Self = SignatureAndHashAlgorithm {
        hash: hash_algorithm::SHA256,
        signature: signature_algorithm::RSA,
    };
}

/// `GenericCertificate` — RFC 6940 §6.3.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericCertificate {
    pub certificate_type: u8,
    /// DER for X.509.
    pub certificate: Vec<u8>,
}

impl Encode for GenericCertificate {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.certificate_type);
        w.opaque(LenPrefix::U16, "GenericCertificate.certificate", &self.certificate);
    }
}

impl Decode for GenericCertificate {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(GenericCertificate {
            certificate_type: r.u8("GenericCertificate.type")?,
            certificate: r.opaque(LenPrefix::U16, "GenericCertificate.certificate")?,
        })
    }
}

/// `enum { invalidSignerIdentityType(0), cert_hash(1), cert_hash_node_id(2), none(3), (255) }`.
pub mod signer_identity_type {
    pub const CERT_HASH: u8 = 1;
    pub const CERT_HASH_NODE_ID: u8 = 2;
    pub const NONE: u8 = 3;
}

/// `SignerIdentity` — RFC 6940 §6.3.4: type, uint16 length, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerIdentity {
    /// H(certificate) for a certificate with one Node-ID.
    CertHash { hash_alg: u8, certificate_hash: Vec<u8> },
    /// H(NodeId || certificate) for a certificate with several Node-IDs.
    CertHashNodeId {
        hash_alg: u8,
        certificate_node_id_hash: Vec<u8>,
    },
    /// No identity; used with the {0, 0} algorithm on synthesised fetch results (§7.4.2.2).
    None,
    /// An identity type this document does not define, kept raw.
    Unknown { identity_type: u8, identity: Vec<u8> },
}

impl Encode for SignerIdentity {
    fn encode(&self, w: &mut Writer) {
        let (t, hash): (u8, Option<(u8, &[u8])>) = match self {
            SignerIdentity::CertHash {
                hash_alg,
                certificate_hash,
            } => (signer_identity_type::CERT_HASH, Some((*hash_alg, certificate_hash))),
            SignerIdentity::CertHashNodeId {
                hash_alg,
                certificate_node_id_hash,
            } => (
                signer_identity_type::CERT_HASH_NODE_ID,
                Some((*hash_alg, certificate_node_id_hash)),
            ),
            SignerIdentity::None => (signer_identity_type::NONE, None),
            SignerIdentity::Unknown {
                identity_type,
                identity,
            } => {
                w.u8(*identity_type);
                w.opaque(LenPrefix::U16, "SignerIdentity.length", identity);
                return;
            }
        };
        w.u8(t);
        w.prefixed(LenPrefix::U16, "SignerIdentity.length", |w| {
            if let Some((alg, h)) = hash {
                w.u8(alg);
                w.opaque(LenPrefix::U8, "SignerIdentityValue.certificate_hash", h);
            }
        });
    }
}

impl Decode for SignerIdentity {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let identity_type = r.u8("SignerIdentity.identity_type")?;
        let mut v = r.sub(LenPrefix::U16, "SignerIdentity.length")?;
        let id = match identity_type {
            signer_identity_type::CERT_HASH => SignerIdentity::CertHash {
                hash_alg: v.u8("SignerIdentityValue.hash_alg")?,
                certificate_hash: v.opaque(LenPrefix::U8, "SignerIdentityValue.certificate_hash")?,
            },
            signer_identity_type::CERT_HASH_NODE_ID => SignerIdentity::CertHashNodeId {
                hash_alg: v.u8("SignerIdentityValue.hash_alg")?,
                certificate_node_id_hash: v.opaque(LenPrefix::U8, "SignerIdentityValue.certificate_node_id_hash")?,
            },
            signer_identity_type::NONE => SignerIdentity::None,
            0 => {
                return Err(DecodeError::InvalidValue {
                    what: "SignerIdentity.identity_type",
                    value: 0,
                })
            }
            t => SignerIdentity::Unknown {
                identity_type: t,
                identity: v.rest().to_vec(),
            },
        };
        v.finish("SignerIdentity.identity")?;
        Ok(id)
    }
}

/// `Signature` — RFC 6940 §6.3.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub algorithm: SignatureAndHashAlgorithm,
    pub identity: SignerIdentity,
    pub signature_value: Vec<u8>,
}

impl Signature {
    /// The {0, 0} / none / empty signature of synthesised FetchAns values (§7.4.2.2).
    pub fn anonymous() -> Self {
        Signature {
            algorithm: SignatureAndHashAlgorithm::ANONYMOUS,
            identity: SignerIdentity::None,
            signature_value: Vec::new(),
        }
    }
}

impl Encode for Signature {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.algorithm.hash);
        w.u8(self.algorithm.signature);
        self.identity.encode(w);
        w.opaque(LenPrefix::U16, "Signature.signature_value", &self.signature_value);
    }
}

impl Decode for Signature {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Signature {
            algorithm: SignatureAndHashAlgorithm {
                hash: r.u8("SignatureAndHashAlgorithm.hash")?,
                signature: r.u8("SignatureAndHashAlgorithm.signature")?,
            },
            identity: SignerIdentity::decode(r)?,
            signature_value: r.opaque(LenPrefix::U16, "Signature.signature_value")?,
        })
    }
}

/// `SecurityBlock` — RFC 6940 §6.3.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityBlock {
    pub certificates: Vec<GenericCertificate>,
    pub signature: Signature,
}

impl Encode for SecurityBlock {
    fn encode(&self, w: &mut Writer) {
        w.list(LenPrefix::U16, "SecurityBlock.certificates", &self.certificates);
        self.signature.encode(w);
    }
}

impl Decode for SecurityBlock {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SecurityBlock {
            certificates: r.list(LenPrefix::U16, "SecurityBlock.certificates", GenericCertificate::decode)?,
            signature: Signature::decode(r)?,
        })
    }
}
