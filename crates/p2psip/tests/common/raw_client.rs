//! A linked client that frames and signs RELOAD messages by hand: what
//! a careless or hostile node, or a test that needs a Kind no command
//! stores, sends a real peer.

use node::node_dir::NodeDir;
use node::pki::rustls_key;
use reload_wire::framing::{encode_data, FrameDecoder};
use reload_wire::{
    Body, DecodeContext, Destination, ForwardingHeader, FramedMessage, Message, MessageContents, NodeId, SecurityBlock,
    Signature, Writer,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One signed, framed message and its transaction ID.
pub struct Framed {
    pub tid: u64,
    pub bytes: Vec<u8>,
}

/// A linked client that frames and signs RELOAD messages by hand.
pub struct RawClient {
    pub tls: tokio_rustls::client::TlsStream<TcpStream>,
    pub ctx: DecodeContext,
    pub overlay: u32,
    /// The configuration document's sequence (§6.3.2.1).
    pub configuration: u16,
    pub hasher: overlay::ChordReload,
    pub security: node::identity::CertSecurity,
    pub me: NodeId,
    pub sequence: u32,
    pub frames: FrameDecoder,
}

impl RawClient {
    /// A link to the peer at `peer`, as the node of `node`.
    pub async fn connect(node: &NodeDir, peer: SocketAddr) -> RawClient {
        let config = client_config(node.config.trust_store(), Some((node.cert_der.clone(), node)));
        let tcp = TcpStream::connect(peer).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(peer.ip().into());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let overlay_config = node.config.overlay_config();
        RawClient {
            tls,
            ctx: overlay_config.decode_context().unwrap(),
            overlay: overlay_config.overlay_hash(),
            configuration: overlay_config.configuration_sequence,
            hasher: overlay::ChordReload::new(node.info.node_ids[0], overlay_config.chord.clone(), 16, 0),
            security: node.security().unwrap(),
            me: node.info.node_ids[0],
            sequence: 0,
            frames: FrameDecoder::new(),
        }
    }

    /// Sends `body` to `to` with `signature` (None: signed properly) and
    /// returns the answer's body.
    pub async fn ask(&mut self, to: Destination, body: &Body, signature: Option<Signature>) -> Body {
        let framed = self.frame(to, body, signature);
        self.tls.write_all(&framed.bytes).await.unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.answer_to(framed.tid))
            .await
            .expect("the peer answers within 15 s")
    }

    /// `body` to `to`, signed (with `signature`, or properly when None)
    /// and framed, ready to write on the link.
    pub fn frame(&mut self, to: Destination, body: &Body, signature: Option<Signature>) -> Framed {
        use overlay::Signer;
        // Unique across connections: the peer answers a transaction ID it
        // has seen in the last 15 s from its cache (§6.2.1).
        static NEXT_TID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let tid = u64::from(std::process::id()) << 32 | NEXT_TID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sequence += 1;
        let contents = MessageContents::from_body(body).unwrap();
        let signature = signature.unwrap_or_else(|| {
            let input = Message::signature_input(self.overlay, tid, &contents, &self.security.identity()).unwrap();
            self.security.sign(&input)
        });
        let mut header = ForwardingHeader::new(self.overlay, tid, vec![to]);
        header.configuration_sequence = self.configuration;
        let message = Message {
            forwarding_header: header,
            message_contents: contents,
            security_block: SecurityBlock {
                certificates: self.security.certificates(),
                signature,
            },
        };
        let bytes = message.to_bytes().unwrap();
        let mut w = Writer::with_capacity(bytes.len() + 16);
        encode_data(&mut w, self.sequence, &bytes);
        Framed {
            tid,
            bytes: w.finish().unwrap(),
        }
    }

    pub async fn answer_to(&mut self, tid: u64) -> Body {
        self.next_message(|m| m.forwarding_header.transaction_id == tid).await
    }

    /// The next request the peer sends this client.
    pub async fn next_request(&mut self, limit: Duration) -> Option<Body> {
        tokio::time::timeout(
            limit,
            self.next_message(|m| m.message_contents.message_code.is_request()),
        )
        .await
        .ok()
    }

    async fn next_message(&mut self, wanted: impl Fn(&Message) -> bool) -> Body {
        let mut buf = vec![0u8; 65_536];
        loop {
            while let Some(frame) = self.frames.next_frame(&self.ctx).unwrap() {
                let FramedMessage::Data { message, .. } = frame else {
                    continue;
                };
                let m = Message::decode(&message, &self.ctx).unwrap();
                if wanted(&m) {
                    return m.message_contents.body(&self.ctx).unwrap();
                }
            }
            let n = self.tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "the peer closed the link instead of answering");
            self.frames.push(&buf[..n]);
        }
    }
}

pub fn client_config(trust: node::pki::TrustStore, cert: Option<(Vec<u8>, &NodeDir)>) -> rustls::ClientConfig {
    let provider = node::enrollment::crypto_provider();
    let verifier = Arc::new(node::link::OverlayCertVerifier::new(trust));
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match cert {
        Some((der, dir)) => builder
            .with_client_auth_cert(vec![der.into()], rustls_key(&dir.key))
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}
