//! The SIP side of a peer (`peer --sip ADDR`): UDP and TCP sockets in
//! front of the sans-IO registrar of the `sip` crate (RFC 3261 §18 for the
//! transports). A registration that changes is stored in the overlay by
//! the engine task (RFC 7904 §3) before the phone gets its 200 OK.
//!
//! Requests other than REGISTER, OPTIONS and ACK are answered 501 until
//! call routing through the overlay lands (issue 5, next step).

use crate::peer::{now_ms, Input};
use sip::message::{frame, Framing, ParseError};
use sip::registrar::{self, Flow, Registered, Registrar, Transport};
use sip::transaction::{Arrival, ServerTransactions, TransactionKey};
use sip::SipMessage;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

/// What the SIP side asks of the engine task.
pub enum SipOverlayRequest {
    /// Store (or, with lifetime 0, remove) the SIP-REGISTRATION of
    /// `resource_name`, signed as that user (RFC 7904 §3).
    Publish {
        resource_name: String,
        lifetime_s: u32,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Most bytes buffered for one TCP connection before it is dropped.
const MAX_TCP_BUFFER: usize = 2 * sip::message::MAX_MESSAGE_SIZE;
/// Most TCP connections served at once.
const MAX_TCP_CONNECTIONS: usize = 4096;

/// Where a response goes: a UDP address, or a TCP connection's writer.
#[derive(Clone)]
enum ReplyPath {
    Udp(Arc<UdpSocket>, SocketAddr),
    Tcp(mpsc::Sender<Vec<u8>>),
}

impl ReplyPath {
    async fn send(&self, bytes: Vec<u8>) {
        match self {
            ReplyPath::Udp(socket, to) => {
                if let Err(e) = socket.send_to(&bytes, to).await {
                    tracing::debug!("sip: cannot send to {to}: {e}");
                }
            }
            ReplyPath::Tcp(tx) => {
                let _ = tx.send(bytes).await;
            }
        }
    }
}

enum SipInput {
    Message {
        bytes: Vec<u8>,
        flow: Flow,
        path: ReplyPath,
    },
    Published {
        key: Option<TransactionKey>,
        flow: Flow,
        path: ReplyPath,
        answer: Vec<u8>,
    },
}

/// The SIP sockets, bound; [`serve`] runs them.
pub struct SipSockets {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
}

impl SipSockets {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let udp = UdpSocket::bind(addr).await?;
        // TCP on the port UDP got, so `--sip 127.0.0.1:0` works too.
        let tcp = TcpListener::bind(udp.local_addr()?).await?;
        Ok(SipSockets {
            udp: Arc::new(udp),
            tcp,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Serves SIP until the engine task goes away.
pub(crate) async fn serve(sockets: SipSockets, mut registrar: Registrar, overlay: mpsc::Sender<Input>) {
    let (tx, mut rx) = mpsc::channel::<SipInput>(1024);
    tokio::spawn(accept_tcp(sockets.tcp, tx.clone()));
    let udp = sockets.udp;
    let mut transactions = ServerTransactions::new();
    let mut buf = vec![0u8; sip::message::MAX_MESSAGE_SIZE + 1];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            received = udp.recv_from(&mut buf) => {
                let Ok((n, from)) = received else { continue };
                let flow = Flow { transport: Transport::Udp, remote: from };
                let path = ReplyPath::Udp(udp.clone(), from);
                handle(&mut registrar, &mut transactions, &overlay, &tx, buf[..n].to_vec(), flow, path).await;
            }
            Some(input) = rx.recv() => match input {
                SipInput::Message { bytes, flow, path } => {
                    handle(&mut registrar, &mut transactions, &overlay, &tx, bytes, flow, path).await;
                }
                SipInput::Published { key, flow, path, answer } => {
                    if let Some(key) = key {
                        transactions.answered(now_ms(), &key, &answer, flow.transport.reliable());
                    }
                    path.send(answer).await;
                }
            },
            _ = tick.tick() => registrar.expire(now_ms()),
        }
        if overlay.is_closed() {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    registrar: &mut Registrar,
    transactions: &mut ServerTransactions,
    overlay: &mpsc::Sender<Input>,
    tx: &mpsc::Sender<SipInput>,
    bytes: Vec<u8>,
    flow: Flow,
    path: ReplyPath,
) {
    let now = now_ms();
    let request = match SipMessage::parse(&bytes).and_then(|m| m.validate_request().map(|()| m)) {
        Ok(m) => m,
        Err(ParseError::Empty) => return,
        Err(e) => return refuse_malformed(&bytes, &e, flow, &path).await,
    };
    let Some(method) = request.method().map(str::to_string) else {
        // Responses: nothing this peer sent a request for yet.
        return;
    };
    if method == "ACK" {
        return;
    }
    let key = TransactionKey::of(&request);
    if let Some(key) = &key {
        match transactions.arrive(now, key) {
            Arrival::New => {}
            Arrival::InProgress => return,
            Arrival::Answered(bytes) => return path.send(bytes).await,
        }
    }
    let answer = match method.as_str() {
        "REGISTER" => match registrar.register(now, &request, flow) {
            Registered::Answer(a) => a,
            Registered::Publish {
                user,
                lifetime_s,
                answer,
            } => {
                let resource_name = overlay::sip_usage::resource_name(&user, registrar.domain());
                let (reply, done) = oneshot::channel();
                let publish = SipOverlayRequest::Publish {
                    resource_name,
                    lifetime_s,
                    reply,
                };
                if overlay.send(Input::Sip(publish)).await.is_err() {
                    return;
                }
                let tx = tx.clone();
                tokio::spawn(async move {
                    let answer = match done.await {
                        Ok(Ok(())) => answer,
                        Ok(Err(why)) => {
                            tracing::warn!("sip: registration of {user} not stored: {why}");
                            registrar::store_failed(&request, &why)
                        }
                        Err(_) => registrar::store_failed(&request, "the peer is shutting down"),
                    };
                    let answer = answer.to_bytes();
                    let _ = tx
                        .send(SipInput::Published {
                            key,
                            flow,
                            path,
                            answer,
                        })
                        .await;
                });
                return;
            }
        },
        "OPTIONS" => {
            let mut ok = registrar::answer(&request, 200, "OK");
            ok.push("Allow", "REGISTER, OPTIONS");
            ok
        }
        _ => registrar::answer(&request, 501, "Calls Through The Overlay Not Implemented Yet"),
    };
    let bytes = answer.to_bytes();
    if let Some(key) = &key {
        transactions.answered(now, key, &bytes, flow.transport.reliable());
    }
    path.send(bytes).await;
}

/// A message that does not parse: answered when it is a request whose
/// transaction headers can be read (RFC 3261 §21.4.1), logged either way.
async fn refuse_malformed(bytes: &[u8], error: &ParseError, flow: Flow, path: &ReplyPath) {
    tracing::info!(
        "sip: malformed message from {} over {}: {error}",
        flow.remote,
        flow.transport.name()
    );
    let Some(head) = SipMessage::parse_leniently(bytes) else {
        return;
    };
    if !head.is_request() || head.method() == Some("ACK") {
        return;
    }
    if ["Via", "From", "To", "Call-ID", "CSeq"].iter().any(|h| !head.has(h)) {
        return;
    }
    let reason = match error.status() {
        513 => "Message Too Large".to_string(),
        505 => "Version Not Supported".to_string(),
        _ => format!("Bad Request ({error})").replace(['\r', '\n'], " "),
    };
    path.send(registrar::answer(&head, error.status(), &reason).to_bytes())
        .await;
}

async fn accept_tcp(listener: TcpListener, tx: mpsc::Sender<SipInput>) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!("sip: {MAX_TCP_CONNECTIONS} TCP connections open; refusing {remote}");
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            serve_tcp(stream, remote, tx).await;
            drop(permit);
        });
    }
}

/// One TCP connection: frames messages by Content-Length (RFC 3261
/// §18.3) and writes what the SIP task sends back on it.
async fn serve_tcp(stream: TcpStream, remote: SocketAddr, tx: mpsc::Sender<SipInput>) {
    let (mut reader, mut writer) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let write = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let flow = Flow {
        transport: Transport::Tcp,
        remote,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame(&buf) {
                Ok(Framing::NeedMore) => break,
                Ok(Framing::Skip { len, pong }) => {
                    buf.drain(..len);
                    if pong {
                        let _ = out_tx.send(b"\r\n".to_vec()).await;
                    }
                }
                Ok(Framing::Message(len)) => {
                    let bytes: Vec<u8> = buf.drain(..len).collect();
                    let path = ReplyPath::Tcp(out_tx.clone());
                    if tx.send(SipInput::Message { bytes, flow, path }).await.is_err() {
                        break 'read;
                    }
                }
                Err(e) => {
                    // The stream cannot be framed any more: answer what can
                    // be answered, then close (RFC 3261 §18.3).
                    refuse_malformed(&buf, &e, flow, &ReplyPath::Tcp(out_tx.clone())).await;
                    break 'read;
                }
            }
        }
        if buf.len() > MAX_TCP_BUFFER {
            tracing::info!(
                "sip: {remote} sent {} bytes without a whole message; closing",
                buf.len()
            );
            break;
        }
    }
    drop(out_tx);
    let _ = write.await;
}
