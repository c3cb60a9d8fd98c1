//! [`CertSecurity`]: the engine's [`Security`] backed by real X.509
//! certificates and signatures — RFC 6940 §6.3.4 (messages) and §7.1
//! (stored data).
//!
//! Signing uses this node's enrolled key. Verifying finds the signer's
//! certificate by its SignerIdentity hash, among the certificates of the
//! message's bucket and those remembered from earlier messages (a peer
//! storing data keeps the certificates of that data, §6.3.4), checks that
//! it chains to the overlay's root and is valid now (§11.3), then checks
//! the signature with its public key.

use crate::pki::{CertInfo, PkiError, TrustStore};
use overlay::{Credential, Security, SecurityError, Signer};
use rcgen::{KeyPair, SigningKey};
use reload_wire::security::{certificate_type, hash_algorithm, signature_algorithm, SignerIdentity};
use reload_wire::Encode;
use reload_wire::{GenericCertificate, NodeId, Signature, SignatureAndHashAlgorithm};
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Most certificates remembered; past this the memory starts over (the
/// next message from each signer carries its certificate again).
const CERT_CACHE_LIMIT: usize = 8192;

/// The SignatureAndHashAlgorithm a key signs with.
pub fn algorithm_of(key: &KeyPair) -> Option<SignatureAndHashAlgorithm> {
    let alg = key.algorithm();
    let (hash, signature) = if alg == &rcgen::PKCS_ED25519 {
        // RFC 8422 §5.1.3: ed25519 carries its own hash, "Intrinsic" (8).
        (8, signature_algorithm::ED25519)
    } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        (hash_algorithm::SHA256, signature_algorithm::ECDSA)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        (hash_algorithm::SHA256, signature_algorithm::RSA)
    } else {
        return None;
    };
    Some(SignatureAndHashAlgorithm { hash, signature })
}

fn verification_algorithm(alg: SignatureAndHashAlgorithm) -> Option<&'static dyn SignatureVerificationAlgorithm> {
    use webpki::ring as algs;
    Some(match (alg.hash, alg.signature) {
        (8, signature_algorithm::ED25519) => algs::ED25519,
        (hash_algorithm::SHA256, signature_algorithm::ECDSA) => algs::ECDSA_P256_SHA256,
        (hash_algorithm::SHA384, signature_algorithm::ECDSA) => algs::ECDSA_P384_SHA384,
        (hash_algorithm::SHA256, signature_algorithm::RSA) => algs::RSA_PKCS1_2048_8192_SHA256,
        (hash_algorithm::SHA384, signature_algorithm::RSA) => algs::RSA_PKCS1_2048_8192_SHA384,
        (hash_algorithm::SHA512, signature_algorithm::RSA) => algs::RSA_PKCS1_2048_8192_SHA512,
        _ => return None,
    })
}

fn digest(hash_alg: u8, parts: &[&[u8]]) -> Option<Vec<u8>> {
    let alg = match hash_alg {
        hash_algorithm::SHA256 => &ring::digest::SHA256,
        hash_algorithm::SHA1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        hash_algorithm::SHA384 => &ring::digest::SHA384,
        hash_algorithm::SHA512 => &ring::digest::SHA512,
        _ => return None,
    };
    let mut ctx = ring::digest::Context::new(alg);
    for p in parts {
        ctx.update(p);
    }
    Some(ctx.finish().as_ref().to_vec())
}

/// A certificate seen, with the outcome of checking it once.
#[derive(Clone)]
struct KnownCert {
    der: Arc<[u8]>,
    verdict: Option<Result<CertInfo, String>>,
}

/// Most signatures remembered as good; past this the oldest go first.
const VERIFIED_LIMIT: usize = 16_384;

/// Signatures known to be good, by [`signature_key`]: made by this node or
/// checked once. The same stored value comes back in every Fetch answer
/// for it, and a peer delivers the requests and answers it sends itself;
/// neither needs the public-key operation again. A hit still checks the
/// signer's certificate (validity now), as a full verification would.
#[derive(Default)]
struct VerifiedSignatures {
    signers: HashMap<[u8; 32], FoundSigner>,
    order: VecDeque<[u8; 32]>,
}

impl VerifiedSignatures {
    fn insert(&mut self, key: [u8; 32], signer: FoundSigner) {
        if self.signers.insert(key, signer).is_none() {
            self.order.push_back(key);
            if self.order.len() > VERIFIED_LIMIT {
                if let Some(old) = self.order.pop_front() {
                    self.signers.remove(&old);
                }
            }
        }
    }
}

/// Signatures this process made and public-key checks it did (cached
/// verdicts not counted): the work RFC 6940's signatures cost, on
/// `/metrics` and in `bench/run`'s attribution of CPU per REGISTER.
pub static SIGNATURES_MADE: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);
pub static SIGNATURES_CHECKED: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// What identifies one signature over one input: SHA-256 of the
/// SignerIdentity, the algorithm, the signature and the input, each
/// length-prefixed so that no two different tuples hash alike.
fn signature_key(signature: &Signature, input: &[u8]) -> [u8; 32] {
    let identity = signature.identity.to_bytes().unwrap_or_default();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        &identity[..],
        &[signature.algorithm.hash, signature.algorithm.signature],
        &signature.signature_value,
        input,
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// The public-key check of `signature` over `input` by the certificate
/// `found`. Ed25519 goes through ed25519-dalek, which checks in about 60 %
/// of ring's time on this machine (its vector backend; decision 0010),
/// with the strict rules (canonical S, no small-order keys or R).
fn check_signature(
    found: &FoundSigner,
    info: &CertInfo,
    input: &[u8],
    signature: &Signature,
) -> Result<(), SecurityError> {
    SIGNATURES_CHECKED.inc();
    let ed25519 = SignatureAndHashAlgorithm {
        hash: 8,
        signature: signature_algorithm::ED25519,
    };
    if let (true, Some(key)) = (signature.algorithm == ed25519, &info.ed25519_key) {
        let value = ed25519_dalek::Signature::from_slice(&signature.signature_value)
            .map_err(|_| SecurityError::BadSignature)?;
        return key
            .verify_strict(input, &value)
            .map_err(|_| SecurityError::BadSignature);
    }
    let algorithm = verification_algorithm(signature.algorithm).ok_or(SecurityError::BadSignature)?;
    let der_ref = CertificateDer::from(&found.der[..]);
    let cert = webpki::EndEntityCert::try_from(&der_ref).map_err(|_| SecurityError::UnknownSigner)?;
    cert.verify_signature(algorithm, input, &signature.signature_value)
        .map_err(|_| SecurityError::BadSignature)
}

/// What a verified signature by `found` proves.
fn credential(found: &FoundSigner, info: CertInfo) -> Credential {
    // §6.3.4: cert_hash names a certificate with one Node-ID, which is
    // then the signer's.
    let signer_node_id = match (found.node, info.node_ids.as_slice()) {
        (Some(n), _) => Some(n),
        (None, [only]) => Some(*only),
        (None, _) => None,
    };
    Credential {
        user: info.user,
        node_ids: info.node_ids,
        signer_node_id,
    }
}

/// A remembered certificate found for a SignerIdentity.
#[derive(Clone)]
struct FoundSigner {
    /// SHA-256 of the DER: the key in [`CertVerifier::known`].
    key: Vec<u8>,
    der: Arc<[u8]>,
    node: Option<NodeId>,
}

/// Verifies signatures of overlay members: the overlay's trust decisions
/// plus the certificates seen so far.
pub struct CertVerifier {
    trust: TrustStore,
    /// Certificates by SHA-256 of their DER.
    known: Mutex<HashMap<Vec<u8>, KnownCert>>,
    verified: Arc<Mutex<VerifiedSignatures>>,
}

/// Signs as one certificate: the node's, or an enrolled user's, which
/// carries the same key and Node-ID.
pub struct CertSigner {
    key: Arc<KeyPair>,
    /// The same key for ed25519-dalek, which signs in about 70 % of
    /// ring's time (decision 0010); `None` for other key types.
    ed25519: Option<Arc<ed25519_dalek::SigningKey>>,
    algorithm: SignatureAndHashAlgorithm,
    cert: GenericCertificate,
    identity: SignerIdentity,
    /// Where its signatures are remembered as good, with the certificate
    /// that vouches for them.
    verified: Arc<Mutex<VerifiedSignatures>>,
    vouched_by: FoundSigner,
}

impl CertSigner {
    /// The SignerIdentity is cert_hash for a certificate with one Node-ID,
    /// cert_hash_node_id otherwise (§6.3.4).
    fn new(
        key: Arc<KeyPair>,
        cert_der: Vec<u8>,
        node_id: NodeId,
        info: &CertInfo,
        verifier: &CertVerifier,
    ) -> Result<Self, PkiError> {
        let algorithm = algorithm_of(&key).ok_or_else(|| PkiError::BadKey("unsupported key type".into()))?;
        if !info.node_ids.contains(&node_id) {
            return Err(PkiError::NoNodeId);
        }
        let one_node_id = info.node_ids.len() == 1;
        let vouched_by = FoundSigner {
            key: verifier.remember(&cert_der),
            der: cert_der.as_slice().into(),
            node: (!one_node_id).then_some(node_id),
        };
        let identity = if one_node_id {
            SignerIdentity::CertHash {
                hash_alg: hash_algorithm::SHA256,
                certificate_hash: digest(hash_algorithm::SHA256, &[&cert_der]).unwrap_or_default(),
            }
        } else {
            SignerIdentity::CertHashNodeId {
                hash_alg: hash_algorithm::SHA256,
                certificate_node_id_hash: digest(hash_algorithm::SHA256, &[node_id.as_bytes(), &cert_der])
                    .unwrap_or_default(),
            }
        };
        Ok(CertSigner {
            ed25519: ed25519_signing_key(&key),
            key,
            algorithm,
            cert: GenericCertificate {
                certificate_type: certificate_type::X509,
                certificate: cert_der,
            },
            identity,
            verified: verifier.verified.clone(),
            vouched_by,
        })
    }
}

impl Signer for CertSigner {
    fn identity(&self) -> SignerIdentity {
        self.identity.clone()
    }

    fn certificates(&self) -> Vec<GenericCertificate> {
        vec![self.cert.clone()]
    }

    fn sign(&self, input: &[u8]) -> Signature {
        SIGNATURES_MADE.inc();
        let signature = Signature {
            algorithm: self.algorithm,
            identity: self.identity.clone(),
            // Signing with a well-formed key of a supported type cannot fail.
            signature_value: match &self.ed25519 {
                Some(key) => ed25519_dalek::Signer::sign(key.as_ref(), input).to_bytes().to_vec(),
                None => self.key.sign(input).unwrap_or_default(),
            },
        };
        if !signature.signature_value.is_empty() {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(signature_key(&signature, input), self.vouched_by.clone());
        }
        signature
    }
}

/// `key` as an ed25519-dalek signing key, when it is an Ed25519 key whose
/// PKCS#8 form dalek reads to the same public key.
fn ed25519_signing_key(key: &KeyPair) -> Option<Arc<ed25519_dalek::SigningKey>> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    if key.algorithm() != &rcgen::PKCS_ED25519 {
        return None;
    }
    let signing = ed25519_dalek::SigningKey::from_pkcs8_der(&key.serialize_der()).ok()?;
    (signing.verifying_key().as_bytes()[..] == key.public_key_raw()[..]).then(|| Arc::new(signing))
}

/// This node's credentials, those of the users enrolled into it, plus a
/// [`CertVerifier`].
pub struct CertSecurity {
    node: CertSigner,
    users: HashMap<String, CertSigner>,
    node_id: NodeId,
    verifier: CertVerifier,
}

impl CertSecurity {
    /// `cert_der` must carry `node_id`.
    pub fn new(key: KeyPair, cert_der: Vec<u8>, node_id: NodeId, trust: TrustStore) -> Result<Self, PkiError> {
        let info = crate::pki::cert_info(&cert_der, &trust.overlay, trust.node_id_length)?;
        let verifier = CertVerifier::new(trust);
        let node = CertSigner::new(Arc::new(key), cert_der, node_id, &info, &verifier)?;
        Ok(CertSecurity {
            node,
            users: HashMap::new(),
            node_id,
            verifier,
        })
    }

    /// Adds a user enrolled into this node: its certificate must chain to
    /// the overlay's roots, carry this node's Node-ID and this node's key.
    /// Returns the user name it signs as.
    pub fn add_user(&mut self, cert_der: Vec<u8>) -> Result<String, PkiError> {
        let info = self
            .verifier
            .trust
            .verify(&CertificateDer::from(&cert_der[..]), &[], SystemTime::now())?;
        if !crate::pki::key_matches(&self.node.key, &cert_der) {
            return Err(PkiError::BadKey(
                "the user certificate is not for this node's key".into(),
            ));
        }
        let signer = CertSigner::new(self.node.key.clone(), cert_der, self.node_id, &info, &self.verifier)?;
        self.users.insert(info.user.clone(), signer);
        Ok(info.user)
    }

    /// Stops signing as `user` (an account removed from the node); whether
    /// it was there.
    pub fn remove_user(&mut self, user: &str) -> bool {
        self.users.remove(user).is_some()
    }

    /// The user names this node signs as, besides its own.
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// The certificate (DER) of a user this node signs as.
    pub fn user_certificate(&self, user: &str) -> Option<&[u8]> {
        self.users.get(user).map(|s| s.cert.certificate.as_slice())
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn verifier(&self) -> &CertVerifier {
        &self.verifier
    }
}

impl CertVerifier {
    pub fn new(trust: TrustStore) -> Self {
        CertVerifier {
            trust,
            known: Mutex::new(HashMap::new()),
            verified: Arc::default(),
        }
    }

    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, KnownCert>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, VerifiedSignatures> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, der: &[u8]) -> Vec<u8> {
        let hash = digest(hash_algorithm::SHA256, &[der]).unwrap_or_default();
        let mut known = self.known();
        if !known.contains_key(&hash) {
            if known.len() >= CERT_CACHE_LIMIT {
                known.clear();
            }
            known.insert(
                hash.clone(),
                KnownCert {
                    der: der.into(),
                    verdict: None,
                },
            );
        }
        hash
    }

    /// The certificate a SignerIdentity names (with its SHA-256, the key it
    /// is remembered under), and the Node-ID it signs as.
    fn find_signer(&self, identity: &SignerIdentity) -> Result<FoundSigner, SecurityError> {
        match identity {
            SignerIdentity::CertHash {
                hash_alg,
                certificate_hash,
            } => {
                let known = self.known();
                let found = if *hash_alg == hash_algorithm::SHA256 {
                    known.get_key_value(certificate_hash)
                } else {
                    known
                        .iter()
                        .find(|(_, k)| digest(*hash_alg, &[&k.der]).as_ref() == Some(certificate_hash))
                };
                found
                    .map(|(key, k)| FoundSigner {
                        key: key.clone(),
                        der: k.der.clone(),
                        node: None,
                    })
                    .ok_or(SecurityError::UnknownSigner)
            }
            SignerIdentity::CertHashNodeId {
                hash_alg,
                certificate_node_id_hash,
            } => {
                let candidates: Vec<(Vec<u8>, Arc<[u8]>)> = self
                    .known()
                    .iter()
                    .map(|(key, k)| (key.clone(), k.der.clone()))
                    .collect();
                for (key, der) in candidates {
                    let Ok(info) = self.check(&key, &der) else { continue };
                    for n in info.node_ids {
                        if digest(*hash_alg, &[n.as_bytes(), &der]).as_ref() == Some(certificate_node_id_hash) {
                            return Ok(FoundSigner {
                                key,
                                der,
                                node: Some(n),
                            });
                        }
                    }
                }
                Err(SecurityError::UnknownSigner)
            }
            _ => Err(SecurityError::Anonymous),
        }
    }

    /// The remembered certificates of these signers.
    pub fn certificates_for(&self, signers: &[&SignerIdentity]) -> Vec<GenericCertificate> {
        let mut out: Vec<GenericCertificate> = Vec::new();
        for s in signers {
            if let Ok(FoundSigner { der, .. }) = self.find_signer(s) {
                if !out.iter().any(|c| *c.certificate == *der) {
                    out.push(GenericCertificate {
                        certificate_type: certificate_type::X509,
                        certificate: der.to_vec(),
                    });
                }
            }
        }
        out
    }

    /// Checks `signature` over `input`; `certificates` (a message's
    /// bucket) are remembered for later messages and stored data.
    pub fn verify(
        &self,
        input: &[u8],
        signature: &Signature,
        certificates: &[GenericCertificate],
    ) -> Result<Credential, SecurityError> {
        for c in certificates {
            if c.certificate_type == certificate_type::X509 {
                self.remember(&c.certificate);
            }
        }
        let known_good = signature_key(signature, input);
        let remembered = self.verified().signers.get(&known_good).cloned();
        match remembered {
            Some(found) => self.credential_of(&found),
            None => {
                let found = self.find_signer(&signature.identity)?;
                let info = self.check(&found.key, &found.der)?;
                check_signature(&found, &info, input, signature)?;
                self.verified().insert(known_good, found.clone());
                Ok(credential(&found, info))
            }
        }
    }

    /// The credential of a signer whose signature needs no check (already
    /// verified, or this node's own); its certificate still does.
    fn credential_of(&self, found: &FoundSigner) -> Result<Credential, SecurityError> {
        // The certificate memory may have started over since: keep the
        // signer's certificate, as a full check would have needed it.
        if !self.known().contains_key(&found.key) {
            self.remember(&found.der);
        }
        let info = self.check(&found.key, &found.der)?;
        Ok(credential(found, info))
    }

    /// Chain, validity and bad-node checks of a remembered certificate,
    /// done once; expiry and the bad-node list are checked again on
    /// every use.
    fn check(&self, key: &[u8], der: &[u8]) -> Result<CertInfo, SecurityError> {
        let cached = self.known().get(key).and_then(|k| k.verdict.clone());
        let verdict = match cached {
            Some(v) => v,
            None => {
                let v = self
                    .trust
                    .verify_chain(&CertificateDer::from(der), &[], SystemTime::now())
                    .map_err(|e| e.to_string());
                if let Some(k) = self.known().get_mut(key) {
                    k.verdict = Some(v.clone());
                }
                v
            }
        };
        let info = verdict.map_err(|_| SecurityError::UnknownSigner)?;
        // The bad-node list may have changed since the verdict.
        if self.trust.bad_node_among(&info.node_ids).is_some() {
            return Err(SecurityError::UnknownSigner);
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if now > info.not_after {
            return Err(SecurityError::UnknownSigner);
        }
        Ok(info)
    }
}

impl Signer for CertSecurity {
    fn identity(&self) -> SignerIdentity {
        self.node.identity()
    }

    fn certificates(&self) -> Vec<GenericCertificate> {
        self.node.certificates()
    }

    fn sign(&self, input: &[u8]) -> Signature {
        self.node.sign(input)
    }
}

impl Security for CertSecurity {
    fn user_signer(&self, user: &str) -> Option<&dyn Signer> {
        self.users.get(user).map(|s| s as &dyn Signer)
    }

    fn enrolled_users(&self) -> Vec<String> {
        self.user_names().map(str::to_string).collect()
    }

    fn enrolled_certificate(&self, user: &str) -> Option<Vec<u8>> {
        self.user_certificate(user).map(<[u8]>::to_vec)
    }

    fn own_credential(&self, user: Option<&str>) -> Result<Credential, SecurityError> {
        let signer = match user {
            None => &self.node,
            Some(u) => self.users.get(u).ok_or(SecurityError::UnknownSigner)?,
        };
        self.verifier.credential_of(&signer.vouched_by)
    }

    fn certificates_for(&self, signers: &[&SignerIdentity]) -> Vec<GenericCertificate> {
        let others: Vec<&SignerIdentity> = signers.iter().copied().filter(|s| **s != self.node.identity).collect();
        self.verifier.certificates_for(&others)
    }

    fn verify(
        &self,
        input: &[u8],
        signature: &Signature,
        certificates: &[GenericCertificate],
    ) -> Result<Credential, SecurityError> {
        self.verifier.verify(input, signature, certificates)
    }
}

#[cfg(test)]
mod tests;
