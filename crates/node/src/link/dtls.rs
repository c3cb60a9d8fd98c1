//! One overlay link over DTLS/UDP with Simple Reliability (RFC 6940
//! §6.6.4), sans-IO: datagrams, messages and time in, datagrams, events
//! and a deadline out. The driver (`overlay_udp`) owns the socket.
//!
//! - §6.5.1.13: once ICE nominated a pair, the Attach requester is the
//!   DTLS server and asks for the client's certificate; each end checks
//!   the other's ([`DtlsConfigs`]) and that it carries the Node-ID the
//!   Attach named; a link that presents another closes.
//! - §6.6.3: every RELOAD message goes in a Data frame of the framing
//!   header (§6.6.2), one frame per DTLS record, acknowledged and
//!   retransmitted by [`SimpleReliability`].
//! - A handshake that has not finished within [`HANDSHAKE_TIMEOUT`] fails,
//!   as on TLS links.

use super::dtls_config::DtlsConfigs;
use super::dtls_key_log::key_log_line;
use super::HANDSHAKE_TIMEOUT;
use bytes::BytesMut;
use peer_core::links::simple_reliability::{Event as SrEvent, Full, SimpleReliability, MAX_QUEUED};
use reload_wire::fragment::fragment;
use reload_wire::{DecodeContext, NodeId};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_shared::TransportProtocol;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// §6.7: a message longer than this goes out in fragments of at most
/// this many bytes, so that a datagram (8 bytes of framing header, 29 of
/// DTLS record with AES-GCM, 48 of IPv6 and UDP) fits IPv6's minimum MTU
/// of 1,280 bytes and no IP fragmentation is needed on any path.
pub const FRAGMENT_BYTES: usize = 1_180;
/// The longest frame put in one DTLS record: rtc-dtls 0.21.1 loses records
/// of about 5 KB and more (measured: 4,000 bytes arrive, 6,000 do not),
/// far under RFC 6347's 2^14. Only a message that cannot be fragmented
/// (a forwarding header so long that no fragment could carry §6.7's 256
/// bytes of body) could need more; it is refused.
pub const MAX_FRAME: usize = 4_096;

/// The record content type of alerts (RFC 5246 §6.2.1).
const ALERT: u8 = 21;

/// What a link tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake finished and the other end is `peer`; `key_log` is
    /// the NSS key log line of the association, when asked for
    /// ([`DtlsConfigs::with_key_log`]).
    Up {
        peer: NodeId,
        key_log: Option<String>,
    },
    /// A RELOAD message arrived.
    Message(Vec<u8>),
    /// Nothing was sent or heard for a while: the engine should send a
    /// keepalive (decision 0022).
    Idle,
    /// Messages went unacknowledged for `waited_ms` (§6.6.3.1).
    Silent {
        waited_ms: u64,
    },
    Resumed,
    /// The link is over, for this reason; nothing more comes out of it.
    Closed(String),
}

/// Why a message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the DTLS link is not up")]
    NotUp,
    #[error("a {0}-byte message whose fragments could not carry 256 bytes each does not fit one DTLS record")]
    TooLarge(usize),
    #[error("a message that cannot be fragmented (RFC 6940 §6.7): {0}")]
    Unfragmentable(String),
    #[error(transparent)]
    Full(#[from] Full),
}

enum Phase {
    Handshaking { deadline: Instant },
    Up { reliability: Box<SimpleReliability> },
    Closed,
}

/// One DTLS association with one remote address, and the link over it.
pub struct DtlsLink {
    /// rtc-dtls's sans-IO endpoint, holding this link's one association.
    endpoint: Endpoint,
    remote: SocketAddr,
    expected: NodeId,
    configs: DtlsConfigs,
    /// Simple Reliability counts milliseconds from here.
    origin: Instant,
    /// The ICE check's round trip, Simple Reliability's first RTT sample.
    ice_rtt_ms: Option<u64>,
    server: bool,
    phase: Phase,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
}

impl DtlsLink {
    /// The DTLS client's end (§6.5.1.13: the node that answered the
    /// Attach): sends its ClientHello now.
    pub fn connect(
        now: Instant,
        remote: SocketAddr,
        expected: NodeId,
        configs: &DtlsConfigs,
        ice_rtt_ms: Option<u64>,
    ) -> Self {
        let mut link = DtlsLink::new(now, remote, expected, configs, None, ice_rtt_ms);
        let connected = link.endpoint.connect(now, remote, configs.client.clone(), None);
        if let Err(e) = connected {
            link.close_with(format!("DTLS handshake refused: {e}"));
        }
        link.collect_transmits();
        link
    }

    /// The DTLS server's end (the Attach requester): waits for the
    /// client's ClientHello.
    pub fn accept(
        now: Instant,
        remote: SocketAddr,
        expected: NodeId,
        configs: &DtlsConfigs,
        ice_rtt_ms: Option<u64>,
    ) -> Self {
        let server = Some(configs.server.clone());
        DtlsLink::new(now, remote, expected, configs, server, ice_rtt_ms)
    }

    fn new(
        now: Instant,
        remote: SocketAddr,
        expected: NodeId,
        configs: &DtlsConfigs,
        server: Option<std::sync::Arc<rtc_dtls::config::HandshakeConfig>>,
        ice_rtt_ms: Option<u64>,
    ) -> Self {
        // The endpoint's own address is only a label on what it queues.
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let is_server = server.is_some();
        DtlsLink {
            endpoint: Endpoint::new(unspecified, TransportProtocol::UDP, server),
            remote,
            expected,
            configs: configs.clone(),
            origin: now,
            ice_rtt_ms,
            server: is_server,
            phase: Phase::Handshaking {
                deadline: now + HANDSHAKE_TIMEOUT,
            },
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up { .. })
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether this end is the DTLS server (the Attach requester).
    pub fn is_server(&self) -> bool {
        self.server
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// A DTLS datagram from the remote address.
    pub fn receive(&mut self, now: Instant, datagram: &[u8], ctx: &DecodeContext) {
        if self.is_closed() {
            return;
        }
        // When two Attaches cross, the association dropped at one end may
        // still answer from the other: its handshake messages, for the
        // other role, must not take the place of ours (rtc-dtls keeps the
        // first message it sees at each sequence number).
        if !self.is_up() && for_the_other_role(datagram, self.server) {
            return;
        }
        let sent_before = self.transmits.len();
        let read = self.endpoint.read(now, self.remote, None, BytesMut::from(datagram));
        self.collect_transmits();
        let events = match read {
            Ok(events) => events,
            Err(e) => {
                // RFC 6347 §4.1.2.7: an invalid record is dropped and the
                // association goes on (a stray datagram of a crossed
                // Attach, junk). It ends when either end gave up with an
                // alert: the peer's, or ours (an alert record among what
                // this read queued, say for a certificate refused).
                let alerted = self
                    .transmits
                    .iter()
                    .skip(sent_before)
                    .any(|d| d.first() == Some(&ALERT));
                let peer_alerted = matches!(e, rtc_shared::error::Error::ErrAlertFatalOrClose);
                if alerted || peer_alerted || self.endpoint.get_connection_state(self.remote).is_none() && self.is_up()
                {
                    self.close_with(format!("DTLS: {e}"));
                }
                return;
            }
        };
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete => self.handshake_complete(now),
                EndpointEvent::ApplicationData(frame) => self.frame_in(now, &frame, ctx),
                EndpointEvent::PeerClosed => {
                    self.collect_transmits();
                    self.close_with("closed by the peer (close_notify)".into());
                }
                _ => {}
            }
        }
        self.pump(now);
    }

    fn handshake_complete(&mut self, now: Instant) {
        let Some(state) = self.endpoint.get_connection_state(self.remote) else {
            return self.close_with("DTLS association vanished".into());
        };
        let ids = self.configs.node_ids(&state.peer_certificates);
        if !ids.contains(&self.expected) {
            let why = format!(
                "its certificate does not carry Node-ID {} (§6.5.1.13)",
                self.expected.to_hex()
            );
            self.endpoint.stop(now, self.remote);
            self.collect_transmits();
            return self.close_with(why);
        }
        let key_log = if self.configs.key_log {
            key_log_line(state)
        } else {
            None
        };
        let ms = self.ms(now);
        self.phase = Phase::Up {
            reliability: Box::new(SimpleReliability::new(ms, self.ice_rtt_ms)),
        };
        self.events.push_back(DtlsEvent::Up {
            peer: self.expected,
            key_log,
        });
    }

    fn frame_in(&mut self, now: Instant, frame: &[u8], ctx: &DecodeContext) {
        let ms = self.ms(now);
        if let Phase::Up { reliability, .. } = &mut self.phase {
            // A frame that does not parse came through an authenticated
            // association: the peer is broken, not an attacker; drop it.
            if let Err(e) = reliability.receive(ms, frame, ctx) {
                tracing::debug!("DTLS link to {}: unreadable frame: {e}", self.remote);
            }
        }
    }

    /// Queues a RELOAD message for reliable delivery, in fragments when
    /// it is longer than [`FRAGMENT_BYTES`] (§6.7).
    pub fn send(&mut self, now: Instant, message: Vec<u8>, ctx: &DecodeContext) -> Result<(), SendError> {
        let ms = self.ms(now);
        let Phase::Up { reliability, .. } = &mut self.phase else {
            return Err(SendError::NotUp);
        };
        let pieces = if message.len() > FRAGMENT_BYTES {
            fragment(&message, FRAGMENT_BYTES, ctx).map_err(|e| SendError::Unfragmentable(e.to_string()))?
        } else {
            vec![message]
        };
        // The Data frame header is 8 bytes (§6.6.2).
        if let Some(long) = pieces.iter().find(|p| p.len() + 8 > MAX_FRAME) {
            return Err(SendError::TooLarge(long.len()));
        }
        let (_, waiting) = reliability.backlog();
        if waiting + pieces.len() > MAX_QUEUED {
            return Err(SendError::Full(Full));
        }
        for piece in pieces {
            reliability.send(ms, piece)?;
        }
        self.pump(now);
        Ok(())
    }

    /// Moves Simple Reliability's frames into DTLS records and its events
    /// out.
    fn pump(&mut self, now: Instant) {
        let Phase::Up { reliability, .. } = &mut self.phase else {
            return;
        };
        let mut failed = false;
        while let Some(frame) = reliability.poll_transmit() {
            if self.endpoint.write(now, self.remote, &frame).is_err() {
                failed = true;
                break;
            }
        }
        let ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        while let Some(event) = reliability.poll_event() {
            self.events.push_back(match event {
                SrEvent::Message(bytes) => DtlsEvent::Message(bytes),
                SrEvent::Idle => DtlsEvent::Idle,
                SrEvent::Silent => DtlsEvent::Silent {
                    waited_ms: reliability.since_last_ack(ms),
                },
                SrEvent::Resumed => DtlsEvent::Resumed,
                SrEvent::Failed => {
                    failed = true;
                    continue;
                }
            });
        }
        self.collect_transmits();
        if failed {
            self.endpoint.stop(now, self.remote);
            self.collect_transmits();
            self.close_with("a message went unacknowledged through all its transmissions (§6.6.3.1)".into());
        }
    }

    fn collect_transmits(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            self.transmits.push_back(t.message.to_vec());
        }
    }

    fn close_with(&mut self, why: String) {
        if !self.is_closed() {
            self.phase = Phase::Closed;
            self.events.push_back(DtlsEvent::Closed(why));
        }
    }

    /// Closes the link with a close_notify (RFC 5246 §7.2.1).
    pub fn close(&mut self, now: Instant) {
        self.endpoint.stop(now, self.remote);
        self.collect_transmits();
        self.close_with("closed by this peer".into());
    }

    /// The next datagram to send to [`DtlsLink::remote`].
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// When [`DtlsLink::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Handshaking { deadline } => {
                let retransmit = self.endpoint.poll_timeout(&self.remote);
                Some(retransmit.map_or(*deadline, |r| r.min(*deadline)))
            }
            Phase::Up { reliability, .. } => {
                let reliability = reliability
                    .poll_timeout()
                    .map(|ms| self.origin + Duration::from_millis(ms));
                [reliability, self.endpoint.poll_timeout(&self.remote)]
                    .into_iter()
                    .flatten()
                    .min()
            }
            Phase::Closed => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Handshaking { deadline } = self.phase {
            if now >= deadline {
                self.endpoint.stop(now, self.remote);
                self.transmits.clear();
                return self.close_with("DTLS handshake timed out".into());
            }
        }
        if self.endpoint.poll_timeout(&self.remote).is_some_and(|t| t <= now) {
            let retransmitted = self.endpoint.handle_timeout(self.remote, now);
            self.collect_transmits();
            if let Err(e) = retransmitted {
                return self.close_with(format!("DTLS handshake failed: {e}"));
            }
        }
        let ms = self.ms(now);
        if let Phase::Up { reliability, .. } = &mut self.phase {
            if reliability.poll_timeout().is_some_and(|t| t <= ms) {
                reliability.handle_timeout(ms);
            }
        }
        self.pump(now);
    }
}

/// Whether `datagram` carries a plaintext handshake message this role
/// never receives (RFC 6347 §4.2.2; RFC 5246 §7.4 numbers): a server takes
/// ClientHello, Certificate, CertificateVerify and ClientKeyExchange; a
/// client HelloVerifyRequest, ServerHello, Certificate, ServerKeyExchange,
/// CertificateRequest and ServerHelloDone.
fn for_the_other_role(datagram: &[u8], server: bool) -> bool {
    let mut rest = datagram;
    while let [content, _, _, epoch_hi, epoch_lo, _, _, _, _, _, _, len_hi, len_lo, body @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
        let Some(record) = body.get(..len) else { return false };
        if *content == 22 && [*epoch_hi, *epoch_lo] == [0, 0] {
            if let Some(kind) = record.first() {
                let ours = if server {
                    matches!(kind, 1 | 11 | 15 | 16)
                } else {
                    matches!(kind, 2 | 3 | 11 | 12 | 13 | 14)
                };
                if !ours {
                    return true;
                }
            }
        }
        rest = &body[len..];
    }
    false
}

#[cfg(test)]
mod tests;
