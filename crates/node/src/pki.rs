//! Certificates of an overlay — RFC 6940 §11.3: the overlay's CA, the
//! certificates the enrollment server issues (empty subject; subjectAltName
//! holding the Node-IDs as RELOAD URIs and the user name as rfc822Name),
//! and the checks every peer applies to a certificate it is shown.
//!
//! Keys are Ed25519 (decision 0005): the fastest signature RELOAD can name
//! (TLS SignatureAndHashAlgorithm intrinsic/ed25519, RFC 8422 §5.1.3).
//! Certificates with RSA or ECDSA P-256 keys, or signed by such a CA, are
//! verified all the same.

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ED25519,
};
use reload_wire::{hex, unhex, Decode, Destination, Encode, NodeId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use webpki::{EndEntityCert, KeyUsage};

/// Lifetime of a node certificate. Re-enrolling with the same key keeps
/// the Node-IDs (§11.3), so a short life costs the user nothing.
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Lifetime of the overlay's CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("not a certificate signing request: {0}")]
    BadCsr(String),
    #[error("the certificate cannot be parsed: {0}")]
    BadCertificate(String),
    #[error("the certificate is not from this overlay's CA ({0:?})")]
    Untrusted(webpki::Error),
    #[error("the certificate has expired or is not yet valid")]
    Expired,
    #[error("the certificate carries no Node-ID of this overlay")]
    NoNodeId,
    #[error("the certificate carries no user name (rfc822Name)")]
    NoUserName,
    #[error("Node-ID {0} is listed as a bad-node in the configuration")]
    BadNode(NodeId),
    #[error("the private key cannot be read: {0}")]
    BadKey(String),
}

/// A new Ed25519 key pair.
pub fn generate_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&PKCS_ED25519)?)
}

/// Reads a PKCS#8 PEM private key (Ed25519, ECDSA P-256 or RSA).
pub fn key_from_pem(pem: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|e| PkiError::BadKey(e.to_string()))
}

/// The key in the form rustls takes it.
pub fn rustls_key(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// The subjectAltName URI of a Node-ID — RFC 6940 §14.15: `reload://`, the
/// hex of a Destination List with one node_id entry, `@`, the overlay, `/`.
pub fn reload_uri(node: &NodeId, overlay: &str) -> String {
    let destination = Destination::Node(*node).to_bytes().unwrap_or_default();
    format!("reload://{}@{}/", hex(&destination), overlay)
}

/// The Node-ID in a RELOAD URI of `overlay`, if it names one. Besides the
/// §14.15 form we accept the bare Node-ID in hex, as some implementations
/// write it (decision 0005).
pub fn node_id_from_uri(uri: &str, overlay: &str, node_id_length: usize) -> Option<NodeId> {
    let rest = uri.strip_prefix("reload://")?;
    let (destination, tail) = rest.split_once('@')?;
    if tail.trim_end_matches('/') != overlay {
        return None;
    }
    let bytes = unhex(destination)?;
    if bytes.len() == node_id_length {
        return NodeId::from_slice(&bytes).ok();
    }
    let ctx =
        reload_wire::DecodeContext::new(node_id_length, reload_wire::DecodeContext::DEFAULT_MAX_MESSAGE_SIZE).ok()?;
    match Destination::from_bytes(&bytes, &ctx) {
        Ok(Destination::Node(n)) => Some(n),
        _ => None,
    }
}

/// The overlay's certificate authority: signs node certificates at
/// enrollment and the enrollment server's own TLS certificate.
pub struct Authority {
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    key: KeyPair,
}

impl Authority {
    /// A new CA named after the overlay.
    pub fn create(overlay: &str, now: SystemTime) -> Result<Self, PkiError> {
        Self::create_with_key(overlay, generate_key()?, now)
    }

    /// A new CA with a given key (an RSA one, say).
    pub fn create_with_key(overlay: &str, key: KeyPair, now: SystemTime) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, format!("{overlay} RELOAD overlay CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + CA_VALIDITY).into();
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key,
        })
    }

    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = key_from_pem(key_pem)?;
        let cert_der = pem_to_der(cert_pem)?;
        Ok(Authority {
            cert_der,
            cert_pem: cert_pem.to_string(),
            key,
        })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_der(&self.cert_der, &self.key)?)
    }

    /// A node certificate for the key in `csr_der` — §11.3: empty subject;
    /// subjectAltName holds exactly the Node-IDs (RELOAD URIs) and the user
    /// name (rfc822Name). Whatever else the CSR asks for is ignored.
    pub fn issue_node(
        &self,
        csr_der: &[u8],
        user_name: &str,
        node_ids: &[NodeId],
        overlay: &str,
        now: SystemTime,
    ) -> Result<CertificateDer<'static>, PkiError> {
        let validity = (now - Duration::from_secs(3600), now + NODE_CERT_VALIDITY);
        self.issue_node_valid(csr_der, user_name, node_ids, overlay, validity)
    }

    /// [`issue_node`](Self::issue_node) with an explicit validity window
    /// (tests use it for expired certificates).
    pub fn issue_node_valid(
        &self,
        csr_der: &[u8],
        user_name: &str,
        node_ids: &[NodeId],
        overlay: &str,
        (not_before, not_after): (SystemTime, SystemTime),
    ) -> Result<CertificateDer<'static>, PkiError> {
        let mut csr = parse_csr(csr_der)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let mut names = Vec::with_capacity(node_ids.len() + 1);
        for n in node_ids {
            let uri = reload_uri(n, overlay).try_into().map_err(PkiError::Generate)?;
            names.push(SanType::URI(uri));
        }
        names.push(SanType::Rfc822Name(
            user_name.try_into().map_err(|_| PkiError::NoUserName)?,
        ));
        params.subject_alt_names = names;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        csr.params = params;
        Ok(csr.signed_by(&self.issuer()?)?.der().clone())
    }

    /// The enrollment server's HTTPS certificate for `hosts` (DNS names or
    /// IP addresses); returns certificate and key.
    pub fn issue_server(
        &self,
        hosts: &[String],
        now: SystemTime,
    ) -> Result<(CertificateDer<'static>, KeyPair), PkiError> {
        self.issue_named(hosts, generate_key()?, vec![ExtendedKeyUsagePurpose::ServerAuth], now)
    }

    /// A certificate for a SIP domain (RFC 5922 §7.1: its DNS names in
    /// subjectAltName), for TLS as a server to phones and as either end
    /// to other domains; returns certificate and key. The key is ECDSA
    /// P-256, which phones and other SIP servers' TLS stacks read (many
    /// cannot use an Ed25519 key of their own or a peer's).
    pub fn issue_sip_domain(
        &self,
        names: &[String],
        now: SystemTime,
    ) -> Result<(CertificateDer<'static>, KeyPair), PkiError> {
        let usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        self.issue_named(names, key, usages, now)
    }

    /// A certificate with `key` for `names`, for `usages`.
    fn issue_named(
        &self,
        names: &[String],
        key: KeyPair,
        usages: Vec<ExtendedKeyUsagePurpose>,
        now: SystemTime,
    ) -> Result<(CertificateDer<'static>, KeyPair), PkiError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.extended_key_usages = usages;
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + CA_VALIDITY).into();
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok((cert.der().clone(), key))
    }
}

fn parse_csr(csr_der: &[u8]) -> Result<CertificateSigningRequestParams, PkiError> {
    let der = rustls::pki_types::CertificateSigningRequestDer::from(csr_der.to_vec());
    CertificateSigningRequestParams::from_der(&der).map_err(|e| PkiError::BadCsr(e.to_string()))
}

/// SHA-256 of the subjectPublicKeyInfo a CSR asks a certificate for, in
/// hex: how the enrollment server recognises a returning key.
pub fn csr_key_id(csr_der: &[u8]) -> Result<String, PkiError> {
    use rcgen::PublicKeyData;
    let csr = parse_csr(csr_der)?;
    let spki = csr.public_key.subject_public_key_info();
    Ok(hex(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref()))
}

/// A PKCS#10 request for `key`; the user name goes in as the requested
/// rfc822Name (§11.3: the server decides what the certificate carries).
pub fn make_csr(key: &KeyPair, user_name: &str) -> Result<Vec<u8>, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Ok(name) = user_name.try_into() {
        params.subject_alt_names = vec![SanType::Rfc822Name(name)];
    }
    Ok(params.serialize_request(key)?.der().to_vec())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system randomness");
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// A cryptographically random Node-ID (§11.3).
pub fn random_node_id(length: usize) -> NodeId {
    let mut bytes = vec![0u8; length];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system randomness");
    NodeId::from_slice(&bytes).expect("configured Node-ID length")
}

/// The first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::BadCertificate(e.to_string()))
}

pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// What an overlay certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The rfc822Name (§11.3).
    pub user: String,
    /// The Node-IDs, in certificate order.
    pub node_ids: Vec<NodeId>,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: u64,
    /// The public key when it is an Ed25519 one (RFC 8410), decompressed
    /// once for the faster verifier of signatures (decision 0010).
    pub ed25519_key: Option<ed25519_dalek::VerifyingKey>,
}

/// id-Ed25519 (RFC 8410 §3).
const ED25519_OID: &str = "1.3.101.112";

/// Reads user name and Node-IDs from a certificate, without judging it.
pub fn cert_info(der: &[u8], overlay: &str, node_id_length: usize) -> Result<CertInfo, PkiError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let mut user = None;
    let mut node_ids = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => node_ids.extend(node_id_from_uri(uri, overlay, node_id_length)),
                GeneralName::RFC822Name(n) if user.is_none() => user = Some(n.to_string()),
                _ => {}
            }
        }
    }
    let spki = cert.public_key();
    let ed25519_key = (spki.algorithm.algorithm.to_id_string() == ED25519_OID)
        .then(|| <[u8; 32]>::try_from(&spki.subject_public_key.data[..]).ok())
        .flatten()
        .and_then(|raw| ed25519_dalek::VerifyingKey::from_bytes(&raw).ok());
    Ok(CertInfo {
        user: user.ok_or(PkiError::NoUserName)?,
        node_ids,
        not_after: cert.validity().not_after.timestamp().max(0) as u64,
        ed25519_key,
    })
}

/// The trust decisions of one overlay: its root certificates (the
/// configuration's root-cert elements) and its bad-node list (§11.1).
///
/// Clones share one bad-node list, so a running peer that adopts a new
/// configuration refuses the nodes it names at once, in every check:
/// links, signatures and SIP between peers
/// ([`set_bad_nodes`](Self::set_bad_nodes)).
#[derive(Debug, Clone)]
pub struct TrustStore {
    pub overlay: String,
    pub node_id_length: usize,
    roots: Vec<CertificateDer<'static>>,
    bad_nodes: Arc<RwLock<Vec<NodeId>>>,
}

impl TrustStore {
    pub fn new(
        overlay: &str,
        node_id_length: usize,
        roots: Vec<CertificateDer<'static>>,
        bad_nodes: Vec<NodeId>,
    ) -> Self {
        TrustStore {
            overlay: overlay.to_string(),
            node_id_length,
            roots,
            bad_nodes: Arc::new(RwLock::new(bad_nodes)),
        }
    }

    pub fn bad_nodes(&self) -> Vec<NodeId> {
        self.bad_nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the bad-node list of this store and of every clone.
    pub fn set_bad_nodes(&self, nodes: Vec<NodeId>) {
        *self.bad_nodes.write().unwrap_or_else(|p| p.into_inner()) = nodes;
    }

    /// The first of `node_ids` on the bad-node list.
    pub fn bad_node_among(&self, node_ids: &[NodeId]) -> Option<NodeId> {
        let bad = self.bad_nodes.read().unwrap_or_else(|p| p.into_inner());
        node_ids.iter().find(|n| bad.contains(n)).copied()
    }

    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// Checks `end_entity` chains to a root (through `intermediates`), is
    /// valid at `now`, carries a user name and at least one Node-ID of this
    /// overlay, and none of them is a bad node.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: SystemTime,
    ) -> Result<CertInfo, PkiError> {
        let info = self.verify_chain(end_entity, intermediates, now)?;
        if let Some(bad) = self.bad_node_among(&info.node_ids) {
            return Err(PkiError::BadNode(bad));
        }
        Ok(info)
    }

    /// [`verify`](Self::verify) without the bad-node list, for a verdict
    /// kept while the list may change.
    pub fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: SystemTime,
    ) -> Result<CertInfo, PkiError> {
        let anchors: Vec<_> = self
            .roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect();
        let cert = EndEntityCert::try_from(end_entity).map_err(|e| PkiError::BadCertificate(format!("{e:?}")))?;
        let time = UnixTime::since_unix_epoch(now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            intermediates,
            time,
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => PkiError::Expired,
            other => PkiError::Untrusted(other),
        })?;
        let info = cert_info(end_entity, &self.overlay, self.node_id_length)?;
        if info.node_ids.is_empty() {
            return Err(PkiError::NoNodeId);
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests;

/// Whether `cert_der` certifies `key`'s public key.
pub fn key_matches(key: &KeyPair, cert_der: &[u8]) -> bool {
    use rcgen::PublicKeyData;
    use x509_parser::prelude::*;
    X509Certificate::from_der(cert_der)
        .map(|(_, c)| c.public_key().raw == key.subject_public_key_info().as_slice())
        .unwrap_or(false)
}
