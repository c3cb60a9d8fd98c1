//! Overlay links: TLS over TCP with the framing header, no ICE — RFC 6940
//! §6.6.2 and §6.6.5 ("TLS/TCP with FH, No-ICE").
//!
//! Both ends present their enrollment certificate and both check the
//! other's: it must chain to a root-cert of the configuration, be valid
//! now, carry a Node-ID of this overlay and none on the bad-node list
//! (§11.3, §11.1). A refused certificate fails the handshake and the
//! reason is logged. TLS 1.3 only.

use crate::pki::{cert_info, PkiError, TrustStore};
use reload_wire::framing::{encode_data, FrameDecoder, ReceivedWindow};
use reload_wire::{DecodeContext, FramedMessage, NodeId, Writer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

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

/// What a link task reports to the peer's engine task.
#[derive(Debug)]
pub enum LinkEvent {
    Message { link: u64, peer: NodeId, bytes: Vec<u8> },
    Closed { link: u64, peer: NodeId, why: String },
}

/// Runs one established link until it fails or `outgoing` closes: frames
/// outgoing messages as Data (§6.6.4), acknowledges every Data received,
/// reports each message.
pub async fn run_link<S, E>(
    link: u64,
    peer: NodeId,
    stream: S,
    ctx: Arc<DecodeContext>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<E>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    E: From<LinkEvent>,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut decoder = FrameDecoder::new();
    let mut window = ReceivedWindow::new();
    let mut sequence: u32 = 0;
    let mut buf = vec![0u8; 16 * 1024];
    let why = loop {
        tokio::select! {
            read = rd.read(&mut buf) => {
                let n = match read {
                    Ok(0) => break "closed by the peer".to_string(),
                    Ok(n) => n,
                    Err(e) => break e.to_string(),
                };
                decoder.push(&buf[..n]);
                let mut acks = Writer::new();
                loop {
                    match decoder.next_frame(&ctx) {
                        Ok(Some(FramedMessage::Data { sequence, message })) => {
                            window.on_data(sequence).encode(&mut acks);
                            if events.send(LinkEvent::Message { link, peer, bytes: message }.into()).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(FramedMessage::Ack { .. })) => {}
                        Ok(None) => break,
                        Err(e) => {
                            // A broken frame stream cannot be resynchronised.
                            let _ = events.send(LinkEvent::Closed { link, peer, why: format!("malformed frame: {e}") }.into()).await;
                            return;
                        }
                    }
                }
                if !acks.is_empty() {
                    if let Ok(bytes) = acks.finish() {
                        if let Err(e) = wr.write_all(&bytes).await {
                            break e.to_string();
                        }
                    }
                }
            }
            message = outgoing.recv() => {
                let Some(message) = message else {
                    let _ = wr.shutdown().await;
                    return;
                };
                sequence = sequence.wrapping_add(1);
                let mut w = Writer::with_capacity(message.len() + 8);
                encode_data(&mut w, sequence, &message);
                let Ok(frame) = w.finish() else { continue };
                if let Err(e) = wr.write_all(&frame).await {
                    break e.to_string();
                }
            }
        }
    };
    let _ = events.send(LinkEvent::Closed { link, peer, why }.into()).await;
}
