//! SIP over TCP (RFC 3261 §18): the listeners' accept loops and one task
//! per connection, framing messages by Content-Length (§18.3). On the
//! listener other peers use, every connection is TLS with both node
//! certificates checked against the overlay's CA and bad nodes, as on
//! overlay links (the AppAttach connection of application 5061, decision
//! 0027): only enrolled members reach the phones attached here.
//!
//! Every connection is bounded, so that one host cannot lock the others
//! out or hold memory by doing nothing:
//! - at most [`MAX_TCP_CONNECTIONS`] open per listener, and at most
//!   [`MAX_TCP_PER_SOURCE`] from one IP address;
//! - a connection must bring its first whole message within
//!   [`FIRST_MESSAGE_TIMEOUT`], and a message once begun must be whole
//!   within [`MESSAGE_TIMEOUT`] (slowloris);
//! - a connection that carries nothing either way for [`IDLE_TIMEOUT`] is
//!   closed: longer than any registration lives (a phone refreshes within
//!   [`sip::registrar::MAX_EXPIRES_S`]), so no live flow is cut.

use crate::link::LinkTls;
use crate::log_budget::LogLimiter;
use crate::peer::now_ms;
use crate::sip_server::{refuse_malformed, SipInput, MAX_TCP_BUFFER, TCP_QUEUE};
use crate::source_caps::{ConnectionCaps, Full};
use reload_wire::NodeId;
use sip::message::{frame, Framing};
use sip::proxy::Side;
use sip::registrar::{Flow, Transport};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most TCP connections accepted at once, per listener.
pub const MAX_TCP_CONNECTIONS: usize = 4096;
/// Most TCP connections accepted at once from one IP address, per
/// listener: a phone needs one, a peer one or two; a NATed office of
/// phones behind one address stays far below.
pub const MAX_TCP_PER_SOURCE: usize = 64;
/// How long a new connection may take to bring its first whole message.
pub const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a message may take to arrive whole once its first byte has.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may carry nothing either way.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(sip::registrar::MAX_EXPIRES_S as u64 + 60);

static REFUSED: LazyLock<LogLimiter> = LazyLock::new(|| LogLimiter::new(20, 60_000, "refused SIP connections"));

/// What a SIP listener's connections are secured with.
#[derive(Clone)]
pub(crate) enum Security {
    /// Plain TCP (phones).
    Plain,
    /// TLS with both node certificates (the peers' listener).
    Peers(Arc<LinkTls>),
    /// TLS with the overlay domain's certificate (phones, RFC 3261 §26.2).
    Domain(tokio_rustls::TlsAcceptor),
}

/// Accepts SIP connections on `listener`, secured with `security`.
pub(crate) async fn accept_tcp(listener: TcpListener, side: Side, security: Security, events: mpsc::Sender<SipInput>) {
    let caps = ConnectionCaps::new(MAX_TCP_CONNECTIONS, MAX_TCP_PER_SOURCE);
    loop {
        let (stream, remote) = crate::source_caps::accept(&listener).await;
        let admitted = match caps.admit(remote.ip()) {
            Ok(admitted) => admitted,
            Err(full) => {
                if REFUSED.allow(now_ms()) {
                    match full {
                        Full::Total => {
                            tracing::warn!("sip: {MAX_TCP_CONNECTIONS} TCP connections open; refusing {remote}")
                        }
                        Full::Source => tracing::warn!(
                            "sip: {MAX_TCP_PER_SOURCE} TCP connections open from {}; refusing another",
                            remote.ip()
                        ),
                    }
                }
                continue;
            }
        };
        let events = events.clone();
        let security = security.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let accepted = Instant::now();
            let flow = |transport| Flow { transport, remote };
            match security {
                Security::Plain => serve_accepted(stream, flow(Transport::Tcp), side, events, accepted).await,
                Security::Domain(acceptor) => {
                    // The handshake counts against the first message's time.
                    match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_accepted(stream, flow(Transport::Tls), side, events, accepted).await,
                        Ok(Err(e)) => refused(remote, &e.to_string()),
                        Err(_) => refused(remote, "no TLS handshake within 10 s"),
                    }
                }
                Security::Peers(tls) => {
                    match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, tls.acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let ids = tls.peer_node_ids(stream.get_ref().1.peer_certificates());
                            tracing::debug!(
                                "sip: TLS connection from peer {} at {remote}",
                                ids.first().map(|n| n.to_hex()).unwrap_or_default()
                            );
                            serve_accepted(stream, flow(Transport::Tls), side, events, accepted).await;
                        }
                        Ok(Err(e)) => refused_peer(remote, &e.to_string()),
                        Err(_) => refused_peer(remote, "no TLS handshake within 10 s"),
                    }
                }
            }
            drop(admitted);
        });
    }
}

/// An accepted connection, announced to the SIP side and then run.
/// `accepted` is when its TCP connection was: a TLS handshake counts
/// against the first message's time.
async fn serve_accepted<S>(stream: S, flow: Flow, side: Side, events: mpsc::Sender<SipInput>, accepted: Instant)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (tx, rx) = mpsc::channel(TCP_QUEUE);
    if events.send(SipInput::Opened { flow, tx: tx.clone() }).await.is_ok() {
        run_connection(stream, flow, side, events, tx, rx, accepted).await;
    }
}

/// Until when a connection's reader waits: the idle limit, and before
/// that the first message's or the message under way's.
fn deadline(last_activity: Instant, message_began: Option<Instant>, whole_messages: u64, started: Instant) -> Instant {
    let idle = last_activity + IDLE_TIMEOUT;
    if whole_messages == 0 {
        return idle.min(started + FIRST_MESSAGE_TIMEOUT);
    }
    match message_began {
        Some(began) => idle.min(began + MESSAGE_TIMEOUT),
        None => idle,
    }
}

/// A connection on the peers' port that did not show a node certificate
/// the overlay trusts: closed, and logged within a budget.
fn refused_peer(remote: SocketAddr, why: &str) {
    if REFUSED.allow(now_ms()) {
        tracing::info!("sip: refused a connection from {remote} on the peers' port: {why}");
    }
}

/// A TLS connection to the phones' port that failed its handshake.
fn refused(remote: SocketAddr, why: &str) {
    if REFUSED.allow(now_ms()) {
        tracing::info!("sip: refused a TLS connection from {remote}: {why}");
    }
}

/// Why a connection could not be opened.
pub(crate) enum OpenFailure {
    /// No TCP connection, or no TLS handshake, in time.
    Unreachable(String),
    /// The peer at the address is not the one a lookup named there.
    WrongPeer(String),
    /// The server at the address is not one of the domain it was sent to.
    WrongServer(String),
}

/// Who a TLS connection is opened to.
pub(crate) enum TlsTo {
    /// Another peer, as this node: it must present `expected`'s Node-ID
    /// when given (decision 0027).
    Peer {
        link: Arc<LinkTls>,
        expected: Option<NodeId>,
    },
    /// A server of another SIP domain: its certificate must name
    /// `domain` (RFC 5922 §4), from a CA the peer trusts.
    Domain {
        connector: tokio_rustls::TlsConnector,
        domain: String,
    },
}

/// Opens the TCP connection of `flow`, with TLS when the flow is TLS,
/// within `limit`; then runs it.
pub(crate) async fn open_connection(
    flow: Flow,
    tls: TlsTo,
    limit: Duration,
    events: mpsc::Sender<SipInput>,
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<Vec<u8>>,
) -> Result<(), OpenFailure> {
    use OpenFailure::Unreachable;
    let remote = flow.remote;
    let tcp = tokio::time::timeout(limit, TcpStream::connect(remote))
        .await
        .map_err(|_| Unreachable(format!("no TCP connection within {limit:?}")))?
        .map_err(|e| Unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    if flow.transport != Transport::Tls {
        run_connection(tcp, flow, Side::Phones, events, tx, rx, Instant::now()).await;
        return Ok(());
    }
    let (link, expected) = match tls {
        TlsTo::Peer { link, expected } => (link, expected),
        TlsTo::Domain { connector, domain } => {
            let name = rustls::pki_types::ServerName::try_from(domain.clone()).map_err(|_| {
                OpenFailure::WrongServer(format!("{domain:?} is no DNS name to check a certificate against"))
            })?;
            let stream = tokio::time::timeout(limit, connector.connect(name, tcp))
                .await
                .map_err(|_| Unreachable(format!("no TLS handshake within {limit:?}")))?
                .map_err(|e| OpenFailure::WrongServer(format!("not a server of {domain}: {e}")))?;
            run_connection(stream, flow, Side::Phones, events, tx, rx, Instant::now()).await;
            return Ok(());
        }
    };
    let name = rustls::pki_types::ServerName::IpAddress(remote.ip().into());
    let stream = tokio::time::timeout(limit, link.connector.connect(name, tcp))
        .await
        .map_err(|_| Unreachable(format!("no TLS handshake within {limit:?}")))?
        .map_err(|e| Unreachable(e.to_string()))?;
    let presented = link.peer_node_ids(stream.get_ref().1.peer_certificates());
    peer_core::sip_service::check_presented(expected, &presented).map_err(OpenFailure::WrongPeer)?;
    run_connection(stream, flow, Side::Overlay, events, tx, rx, Instant::now()).await;
    Ok(())
}

/// One connection: frames messages by Content-Length (RFC 3261 §18.3) and
/// writes what is queued on `rx`. Each SIP message is written whole; the
/// caller turned Nagle's algorithm off, which would hold the next one (a
/// 180 right after a 100, the ACK after the 200) until the other end's
/// delayed ACK, some 40 ms later.
pub(crate) async fn run_connection<S>(
    stream: S,
    flow: Flow,
    side: Side,
    events: mpsc::Sender<SipInput>,
    tx: mpsc::Sender<Vec<u8>>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    started: Instant,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    // The writer reports when it last wrote, so a connection busy only
    // the other way is not idle.
    let last_write = Arc::new(Mutex::new(Instant::now()));
    let written = last_write.clone();
    let write = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            *written.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    });
    let remote = flow.remote;
    let mut last_read = started;
    let mut message_began: Option<Instant> = None;
    let mut whole_messages = 0u64;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let last_activity = last_read.max(*last_write.lock().unwrap_or_else(|p| p.into_inner()));
        let until = deadline(last_activity, message_began, whole_messages, started);
        let n = match tokio::time::timeout_at(until, reader.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                let why = if whole_messages == 0 {
                    "no whole message since it connected"
                } else if message_began.is_some() {
                    "a message that never arrived whole"
                } else {
                    "nothing either way for too long"
                };
                tracing::debug!("sip: closing the TCP connection from {remote}: {why}");
                break;
            }
        };
        last_read = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame(&buf) {
                Ok(Framing::NeedMore) => break,
                Ok(Framing::Skip { len, pong }) => {
                    buf.drain(..len);
                    if pong {
                        let _ = tx.try_send(b"\r\n".to_vec());
                    }
                }
                Ok(Framing::Message(len)) => {
                    let bytes: Vec<u8> = buf.drain(..len).collect();
                    whole_messages += 1;
                    let read_at = std::time::Instant::now();
                    let message = SipInput::Message {
                        bytes,
                        flow,
                        side,
                        read_at,
                    };
                    if events.send(message).await.is_err() {
                        break 'read;
                    }
                }
                Err(e) => {
                    // The stream cannot be framed any more: answer what can
                    // be answered, then close (RFC 3261 §18.3).
                    if let Some(answer) = refuse_malformed(&buf, &e, flow) {
                        let _ = tx.try_send(answer);
                    }
                    break 'read;
                }
            }
        }
        // A keep-alive's line breaks are consumed above; bytes left are the
        // start of a message, timed from its first byte.
        message_began = match (buf.is_empty(), message_began) {
            (true, _) => None,
            (false, Some(began)) => Some(began),
            (false, None) => Some(last_read),
        };
        if buf.len() > MAX_TCP_BUFFER {
            if REFUSED.allow(now_ms()) {
                tracing::info!(
                    "sip: {remote} sent {} bytes without a whole message; closing",
                    buf.len()
                );
            }
            break;
        }
    }
    let _ = events.send(SipInput::Closed { tx: tx.clone() }).await;
    drop(tx);
    // The writer ends once every sender is gone (the pool dropped its copy
    // on Closed), after writing what was queued.
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_must_send_a_message_soon_and_finish_what_it_begins() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(3);
        assert_eq!(deadline(later, None, 0, t0), t0 + FIRST_MESSAGE_TIMEOUT);
        assert_eq!(deadline(later, Some(later), 0, t0), t0 + FIRST_MESSAGE_TIMEOUT);
        assert_eq!(deadline(later, Some(later), 5, t0), later + MESSAGE_TIMEOUT);
        assert_eq!(deadline(later, None, 5, t0), later + IDLE_TIMEOUT);
        assert!(IDLE_TIMEOUT > Duration::from_secs(u64::from(sip::registrar::MAX_EXPIRES_S)));
    }
}
