//! Overlay links: TLS over TCP with the framing header, no ICE — RFC 6940
//! §6.6.2 and §6.6.5 ("TLS/TCP with FH, No-ICE").
//!
//! Both ends present their enrollment certificate and both check the
//! other's: it must chain to a root-cert of the configuration, be valid
//! now, carry a Node-ID of this overlay and none on the bad-node list
//! (§11.3, §11.1). A refused certificate fails the handshake and the
//! reason is logged. TLS 1.3 only.

use crate::pki::{cert_info, PkiError, TrustStore};
use reload_wire::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

pub mod dtls;
pub mod dtls_config;
pub mod dtls_key_log;
mod framed;
use framed::BATCH_BYTES;
pub use framed::{run_link, LinkEvent};

/// Time allowed for TCP connect plus TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one link before new ones are dropped (end-to-end
/// retransmission recovers them, §6.2.1).
pub const LINK_QUEUE: usize = 1024;

/// Judges overlay certificates for both ends of a TLS link.
#[derive(Debug)]
pub struct OverlayCertVerifier {
    trust: TrustStore,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl OverlayCertVerifier {
    pub fn new(trust: TrustStore) -> Self {
        OverlayCertVerifier {
            trust,
            provider: crate::enrollment::crypto_provider(),
        }
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        self.trust
            .verify(end_entity, intermediates, now)
            .map(|_| ())
            .map_err(|e| {
                rustls::Error::InvalidCertificate(match e {
                    PkiError::Expired => CertificateError::Expired,
                    PkiError::Untrusted(_) => CertificateError::UnknownIssuer,
                    other => CertificateError::Other(OtherError(Arc::new(other))),
                })
            })
    }
}

impl ServerCertVerifier for OverlayCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now)
            .map(|_| ServerCertVerified::assertion())
    }

    /// Links negotiate TLS 1.3 only, so this is not reached; it verifies
    /// properly rather than fail with a misleading reason.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for OverlayCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

/// TLS configurations for both directions, with SSLKEYLOGFILE honoured.
pub struct LinkTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub connector: tokio_rustls::TlsConnector,
    pub trust: TrustStore,
}

impl LinkTls {
    pub fn new(trust: TrustStore, cert: Vec<u8>, key: PrivateKeyDer<'static>) -> Result<Self, rustls::Error> {
        let provider = crate::enrollment::crypto_provider();
        let verifier = Arc::new(OverlayCertVerifier::new(trust.clone()));
        let chain = vec![CertificateDer::from(cert)];
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.key_log = Arc::new(rustls::KeyLogFile::new());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)?;
        client.key_log = Arc::new(rustls::KeyLogFile::new());
        Ok(LinkTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            trust,
        })
    }

    /// The Node-IDs of the certificate the other end presented.
    pub fn peer_node_ids(&self, certs: Option<&[CertificateDer<'_>]>) -> Vec<NodeId> {
        certs
            .and_then(|c| c.first())
            .and_then(|c| cert_info(c, &self.trust.overlay, self.trust.node_id_length).ok())
            .map(|i| i.node_ids)
            .unwrap_or_default()
    }
}

/// The TCP stream a link's TLS runs over: TLS records are gathered in a
/// buffer and reach the socket when the link flushes, so a batch of
/// messages costs one system call. `run_link` flushes after every batch
/// and every ACK.
pub type LinkTcp = tokio::io::BufWriter<tokio::net::TcpStream>;

fn link_tcp(tcp: tokio::net::TcpStream) -> LinkTcp {
    tokio::io::BufWriter::with_capacity(BATCH_BYTES + 4096, tcp)
}

impl LinkTls {
    /// The TLS handshake of a link we dial. A failed handshake still
    /// sends its alert: the buffer under TLS is flushed, so the other end
    /// logs why (say, UnknownCA) rather than a bare end of stream.
    pub async fn connect(
        &self,
        name: ServerName<'static>,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<LinkTcp>> {
        match self.connector.connect(name, link_tcp(tcp)).into_fallible().await {
            Ok(stream) => Ok(stream),
            Err((e, mut io)) => {
                let _ = io.flush().await;
                Err(e)
            }
        }
    }

    /// The TLS handshake of a link we accept; see [`LinkTls::connect`].
    pub async fn accept(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<LinkTcp>> {
        match self.acceptor.accept(link_tcp(tcp)).into_fallible().await {
            Ok(stream) => Ok(stream),
            Err((e, mut io)) => {
                let _ = io.flush().await;
                Err(e)
            }
        }
    }
}
