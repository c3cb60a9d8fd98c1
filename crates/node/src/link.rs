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

/// The largest message a Data frame carries: its length is 24 bits
/// (§6.6.4). The engine never makes one this large; one that is, is
/// dropped rather than sent with a wrong length.
const MAX_FRAMED_MESSAGE: usize = 0xff_ffff;

/// Queued messages are gathered into one write up to about this many
/// bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// Room for each read from a link: one TLS record's plaintext.
const READ_ROOM: usize = 16 * 1024;

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

/// Runs one established link until it fails or `outgoing` closes: frames
/// outgoing messages as Data (§6.6.4), acknowledges every Data received
/// (one write for all the frames a read brought, after the engine had its
/// turn), reports each message.
/// Every write is flushed; over a [`LinkTcp`] several frames go out in one
/// system call.
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
    let mut frames = DataFrames { sequence: 0 };
    let why = loop {
        tokio::select! {
            read = rd.read_buf(decoder.input(READ_ROOM)) => {
                match read {
                    Ok(0) => break "closed by the peer".to_string(),
                    Ok(_) => {}
                    Err(e) => break e.to_string(),
                };
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
                    // The ACKs wait until the engine and the other links
                    // ran: a message this peer forwards leaves before the
                    // ACK wakes the previous hop, which would otherwise
                    // compete for the CPU with the forwarded message's
                    // path. Still "immediately" in §6.6.4's sense: within
                    // the same turn of the runtime, microseconds later.
                    // An answer queued for this link meanwhile goes out in
                    // the same write.
                    //
                    // Two yields: a yielded task runs again once the run
                    // queue is empty. The first lets the engine take the
                    // message; the daemon's engine is the runtime's main
                    // future, polled only then, and the link it wakes is
                    // queued behind this one. The second lets that link
                    // write first.
                    tokio::task::yield_now().await;
                    tokio::task::yield_now().await;
                    let written = match acks.finish() {
                        Ok(bytes) => wr.write_all(&bytes).await,
                        Err(_) => Ok(()),
                    };
                    let sent = match written {
                        Ok(()) => frames.write(&mut wr, outgoing.try_recv().ok(), &mut outgoing).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = sent {
                        break e.to_string();
                    }
                }
            }
            message = outgoing.recv() => {
                let Some(first) = message else {
                    let _ = wr.shutdown().await;
                    return;
                };
                if let Err(e) = frames.write(&mut wr, Some(first), &mut outgoing).await {
                    break e.to_string();
                }
            }
        }
    };
    let _ = events.send(LinkEvent::Closed { link, peer, why }.into()).await;
}

/// The sending side of a link's Data frames (§6.6.4): each connection
/// numbers its messages from 1.
struct DataFrames {
    sequence: u32,
}

impl DataFrames {
    /// Writes `first` and whatever else is queued, up to [`BATCH_BYTES`],
    /// then flushes. Under load several messages wait; each goes out as its
    /// own TLS record (what a dissector reading one frame per record
    /// expects) into the buffer under TLS, and one flush sends them all:
    /// one system call instead of one each (most of a forwarding peer's
    /// time).
    async fn write<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        first: Option<Vec<u8>>,
        outgoing: &mut mpsc::Receiver<Vec<u8>>,
    ) -> std::io::Result<()> {
        let mut next = first;
        let mut batched = 0;
        while let Some(message) = next.take() {
            if message.len() <= MAX_FRAMED_MESSAGE {
                self.sequence = self.sequence.wrapping_add(1);
                let mut w = Writer::with_capacity(message.len() + 8);
                encode_data(&mut w, self.sequence, &message);
                if let Ok(frame) = w.finish() {
                    wr.write_all(&frame).await?;
                    batched += frame.len();
                }
            }
            if batched < BATCH_BYTES {
                next = outgoing.try_recv().ok();
            }
        }
        wr.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages queued while the link is busy go out in one batch, each its
    /// own Data frame with the next sequence number (§6.6.4). A message
    /// received is reported and acknowledged.
    #[tokio::test]
    async fn queued_messages_go_out_as_consecutive_data_frames_and_data_is_acked() {
        let ctx = Arc::new(DecodeContext::new(16, 5000).unwrap());
        let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
        let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
        let (ev_tx, mut ev_rx) = mpsc::channel::<LinkEvent>(LINK_QUEUE);
        for i in 0..3u8 {
            out_tx.send(vec![i; 100 + usize::from(i)]).await.unwrap();
        }
        let peer = NodeId::from_slice(&[7; 16]).unwrap();
        let link = tokio::spawn(run_link(9, peer, ours, ctx.clone(), out_rx, ev_tx));

        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        let mut buf = [0u8; 4096];
        while frames.len() < 3 {
            let n = theirs.read(&mut buf).await.unwrap();
            assert!(n > 0, "the link closed early");
            decoder.push(&buf[..n]);
            while let Some(f) = decoder.next_frame(&ctx).unwrap() {
                frames.push(f);
            }
        }
        let want: Vec<FramedMessage> = (0..3u8)
            .map(|i| FramedMessage::Data {
                sequence: u32::from(i) + 1,
                message: vec![i; 100 + usize::from(i)],
            })
            .collect();
        assert_eq!(frames, want);

        let mut w = Writer::new();
        encode_data(&mut w, 41, b"hello");
        theirs.write_all(&w.finish().unwrap()).await.unwrap();
        match ev_rx.recv().await.unwrap() {
            LinkEvent::Message {
                link,
                peer: from,
                bytes,
            } => {
                assert_eq!((link, from, bytes.as_slice()), (9, peer, &b"hello"[..]));
            }
            LinkEvent::Closed { why, .. } => panic!("closed: {why}"),
        }
        let n = theirs.read(&mut buf).await.unwrap();
        decoder.push(&buf[..n]);
        assert!(
            matches!(
                decoder.next_frame(&ctx).unwrap(),
                Some(FramedMessage::Ack { ack_sequence: 41, .. })
            ),
            "the Data is acknowledged"
        );
        drop(out_tx);
        link.await.unwrap();
    }

    /// A stream that notes in a shared log, by name, each write it takes.
    struct Logged {
        inner: tokio::io::DuplexStream,
        name: &'static str,
        log: Arc<std::sync::Mutex<Vec<&'static str>>>,
    }

    impl tokio::io::AsyncRead for Logged {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for Logged {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let name = self.name;
            self.log.lock().unwrap().push(name);
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A message the engine forwards from one link to another leaves before
    /// the first link acknowledges it: the ACK waits for the engine's turn
    /// and for the link it woke, so it never delays the forwarded
    /// message's path. The daemon runs its engine in the runtime's
    /// `block_on` future (polled only once the run queue is empty), the
    /// bench in a task; both must get this order.
    #[tokio::test]
    async fn a_forwarded_message_leaves_before_its_ack_when_the_engine_is_the_main_future() {
        assert_eq!(forward_one_message(false).await.first(), Some(&"data on B"));
    }

    #[tokio::test]
    async fn a_forwarded_message_leaves_before_its_ack_when_the_engine_is_a_task() {
        assert_eq!(forward_one_message(true).await.first(), Some(&"data on B"));
    }

    /// Runs two links and an engine that passes whatever arrives on link A
    /// out on link B; one Data frame arrives on A. The writes the links
    /// made, in order.
    async fn forward_one_message(engine_is_a_task: bool) -> Vec<&'static str> {
        let ctx = Arc::new(DecodeContext::new(16, 5000).unwrap());
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a_ours, mut a_theirs) = tokio::io::duplex(64 * 1024);
        let (b_ours, mut b_theirs) = tokio::io::duplex(64 * 1024);
        let logged = |inner, name| Logged {
            inner,
            name,
            log: log.clone(),
        };
        let (a_out_tx, a_out_rx) = mpsc::channel(LINK_QUEUE);
        let (b_out_tx, b_out_rx) = mpsc::channel(LINK_QUEUE);
        let (ev_tx, mut ev_rx) = mpsc::channel::<LinkEvent>(LINK_QUEUE);
        let peer = NodeId::from_slice(&[7; 16]).unwrap();
        let link_a = tokio::spawn(run_link(
            1,
            peer,
            logged(a_ours, "ack on A"),
            ctx.clone(),
            a_out_rx,
            ev_tx.clone(),
        ));
        let link_b = tokio::spawn(run_link(
            2,
            peer,
            logged(b_ours, "data on B"),
            ctx.clone(),
            b_out_rx,
            ev_tx,
        ));
        let engine = async move {
            while let Some(LinkEvent::Message { bytes, .. }) = ev_rx.recv().await {
                b_out_tx.send(bytes).await.unwrap();
            }
        };
        // The far ends of both links: A's sends one Data frame, then both
        // read what they get.
        let far_ends = tokio::spawn({
            let ctx = ctx.clone();
            async move {
                let mut w = Writer::new();
                encode_data(&mut w, 1, b"pass me on");
                a_theirs.write_all(&w.finish().unwrap()).await.unwrap();
                let mut decoder = FrameDecoder::new();
                let mut buf = [0u8; 4096];
                let n = b_theirs.read(&mut buf).await.unwrap();
                decoder.push(&buf[..n]);
                assert!(matches!(
                    decoder.next_frame(&ctx).unwrap(),
                    Some(FramedMessage::Data { sequence: 1, message }) if message == b"pass me on"
                ));
                let n = a_theirs.read(&mut buf).await.unwrap();
                decoder.push(&buf[..n]);
                assert!(matches!(
                    decoder.next_frame(&ctx).unwrap(),
                    Some(FramedMessage::Ack { ack_sequence: 1, .. })
                ));
                (a_theirs, b_theirs)
            }
        });
        let (_a_theirs, b_theirs) = if engine_is_a_task {
            let engine = tokio::spawn(engine);
            let ends = far_ends.await.unwrap();
            engine.abort();
            ends
        } else {
            tokio::select! {
                _ = engine => panic!("the engine stopped"),
                ends = far_ends => ends.unwrap(),
            }
        };
        let writes = log.lock().unwrap().clone();
        drop(a_out_tx);
        link_a.await.unwrap();
        drop(b_theirs);
        link_b.await.unwrap();
        writes
    }
}
