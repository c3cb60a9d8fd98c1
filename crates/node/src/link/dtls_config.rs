//! The DTLS 1.2 handshake settings of overlay links over UDP (RFC 6940
//! §6.6.4, §6.5.1.13), shared by every link of a peer.
//!
//! - One cipher suite, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 7525
//!   §4.2's first choice for DTLS 1.2), with the extended master secret
//!   required (RFC 7627).
//! - The node's enrollment certificate and its Ed25519 key sign the
//!   handshake (RFC 8422 §5.4, signature scheme ed25519 0x0807), as on
//!   TLS links.
//! - §6.5.1.13: the DTLS server (the Attach requester) demands a client
//!   certificate, and each end checks the other's exactly as TLS links do
//!   ([`TrustStore::verify`]) and that it carries the Node-ID the Attach
//!   named.

use crate::pki::{cert_info, TrustStore};
use rcgen::KeyPair;
use reload_wire::NodeId;
use rtc_crypto::{CryptoError, PublicKey, RTCCryptoProvider, SignatureScheme as CryptoScheme, SigningKey};
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::{Certificate, CryptoPrivateKey};
use rtc_dtls::signature_hash_algorithm::SignatureScheme;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;
use std::time::SystemTime;

/// Why DTLS links cannot be configured.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up DTLS links: {0}")]
pub struct DtlsConfigError(String);

/// Handshake settings for both roles; the Node-ID each link expects is
/// checked by the link ([`super::dtls::DtlsLink`]), as the settings are
/// shared.
#[derive(Clone)]
pub struct DtlsConfigs {
    pub(super) server: Arc<HandshakeConfig>,
    pub(super) client: Arc<HandshakeConfig>,
    pub(super) trust: TrustStore,
    /// Whether links give their key log line (`SSLKEYLOGFILE` is set):
    /// the master secret is not copied out otherwise.
    pub(super) key_log: bool,
}

impl std::fmt::Debug for DtlsConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DtlsConfigs")
    }
}

impl DtlsConfigs {
    /// Settings that present `cert` (DER), signed for by `key`, and judge
    /// the other end by `trust`.
    pub fn new(trust: TrustStore, cert: Vec<u8>, key: &KeyPair) -> Result<Self, DtlsConfigError> {
        let provider = rtc_crypto::default_provider().map_err(|e| DtlsConfigError(e.to_string()))?;
        let signing_key = CryptoPrivateKey::from_key_pair(key, provider.crypto())
            .map_err(|e| DtlsConfigError(e.to_string()))?
            .signing_key;
        if !signing_key.supports(CryptoScheme::Ed25519) {
            return Err(DtlsConfigError("the node key is not Ed25519 (decision 0010)".into()));
        }
        let certificate = Certificate::from_signing_key(
            vec![CertificateDer::from(cert)],
            Arc::new(Ed25519ForEcdheEcdsa(signing_key)),
        );
        let verify = {
            let trust = trust.clone();
            Arc::new(move |chain: &[Vec<u8>], _: &[CertificateDer<'static>]| verify_chain(&trust, chain))
        };
        let builder = |provider: Arc<dyn RTCCryptoProvider>| {
            ConfigBuilder::default()
                .with_crypto_provider(provider)
                .with_certificates(vec![certificate.clone()])
                .with_cipher_suites(vec![CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256])
                // Ed25519 first: both roles sign with the first scheme of
                // this list their key can make. ECDSA is listed for
                // rtc-dtls's suite check only (see Ed25519ForEcdheEcdsa).
                .with_signature_schemes(vec![SignatureScheme::Ed25519, SignatureScheme::EcdsaWithP256AndSha256])
                .with_extended_master_secret(ExtendedMasterSecretType::Require)
                // The chain is judged by `verify` (the overlay's roots, the
                // bad-node list), not by a web PKI.
                .with_insecure_skip_verify(true)
                .with_verify_peer_certificate(Some(verify.clone()))
        };
        let server = builder(provider.clone())
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .build(false, None)
            .map_err(|e| DtlsConfigError(e.to_string()))?;
        let client = builder(provider)
            .build(true, None)
            .map_err(|e| DtlsConfigError(e.to_string()))?;
        Ok(DtlsConfigs {
            server: Arc::new(server),
            client: Arc::new(client),
            trust,
            key_log: false,
        })
    }

    /// Links give their NSS key log line when they come up (for
    /// `SSLKEYLOGFILE`, so Wireshark decrypts them).
    pub fn with_key_log(mut self, on: bool) -> Self {
        self.key_log = on;
        self
    }

    /// The Node-IDs of a chain the handshake accepted.
    pub(super) fn node_ids(&self, chain: &[Vec<u8>]) -> Vec<NodeId> {
        chain
            .first()
            .and_then(|c| cert_info(c, &self.trust.overlay, self.trust.node_id_length).ok())
            .map(|i| i.node_ids)
            .unwrap_or_default()
    }
}

/// The certificate check of TLS links ([`TrustStore::verify`]: chain,
/// validity now, Node-IDs, bad nodes) for the chain a DTLS peer sent.
fn verify_chain(trust: &TrustStore, chain: &[Vec<u8>]) -> rtc_shared::error::Result<()> {
    let refuse = |why: String| rtc_shared::error::Error::Other(why);
    let (end_entity, intermediates) = chain.split_first().ok_or_else(|| refuse("no certificate".into()))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates.iter().map(|c| CertificateDer::from(&c[..])).collect();
    trust
        .verify(
            &CertificateDer::from(&end_entity[..]),
            &intermediates,
            SystemTime::now(),
        )
        .map(|_| ())
        .map_err(|e| refuse(e.to_string()))
}

/// The node's Ed25519 key, made acceptable to rtc-dtls for the
/// ECDHE_ECDSA suites. RFC 8422 §2 lets those suites sign with EdDSA, but
/// rtc-dtls 0.21.1 (`ConfigBuilder::build`) keeps an ECDHE_ECDSA suite
/// only for a key that also claims an ECDSA scheme. So this key claims
/// ECDSA P-256 too and refuses to sign with it; Ed25519 is first in the
/// schemes offered, so it is the one both ends sign with (a test asserts
/// the handshake uses it). Remove once rtc-dtls accepts Ed25519 keys
/// there (decision 0038).
struct Ed25519ForEcdheEcdsa(Arc<dyn SigningKey>);

impl SigningKey for Ed25519ForEcdheEcdsa {
    fn supports(&self, scheme: CryptoScheme) -> bool {
        matches!(scheme, CryptoScheme::Ed25519 | CryptoScheme::EcdsaP256Sha256)
    }

    fn public_key(&self) -> PublicKey<'_> {
        self.0.public_key()
    }

    fn sign(&self, scheme: CryptoScheme, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match scheme {
            CryptoScheme::Ed25519 => self.0.sign(scheme, message),
            _ => Err(CryptoError::UnsupportedAlgorithm(
                rtc_crypto::CryptoAlgorithm::Signature(scheme),
            )),
        }
    }
}
