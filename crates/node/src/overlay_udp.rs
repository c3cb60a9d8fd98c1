//! The peer's UDP socket on its overlay port (the TLS listener's address
//! and port): the STUN server of RFC 6940 §6.5.1.4, where this peer's own
//! Binding requests and ICE checks go out from, and the DTLS overlay links
//! ICE forms (§6.6.4). Datagrams are told apart by their first byte (RFC
//! 7983 §7): 0–3 STUN, 20–63 DTLS. What to answer is the peer core's
//! ([`BindingServer`]) and the links' ([`DtlsLink`]); this task only moves
//! datagrams, events and time, and counts.

use crate::link::dtls::{DtlsEvent, DtlsLink};
use crate::link::dtls_config::DtlsConfigs;
use crate::link::dtls_key_log::append_to_key_log_file;
use crate::link::LinkEvent;
use crate::peer::{Input, LinkSender};
use peer_core::ice::Nominated;
use peer_core::stun::server::{BindingServer, Served};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use reload_wire::{DecodeContext, NodeId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Commands for DTLS links waiting in the UDP task, at most; beyond, a
/// message is dropped (end-to-end retransmission recovers it, §6.2.1).
pub(crate) const COMMAND_QUEUE: usize = 4096;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    reason: &'static str,
}

/// `p2psip_stun_*` and `p2psip_dtls_*`.
#[derive(Clone, Default)]
pub(crate) struct StunMetrics {
    answered: Counter,
    dropped: Family<ReasonLabels, Counter>,
    dtls_dropped: Family<ReasonLabels, Counter>,
}

impl StunMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "stun_answered",
            "STUN Binding requests answered on the overlay UDP port (RFC 6940 §6.5.1.4)",
            self.answered.clone(),
        );
        registry.register(
            "stun_dropped",
            "Datagrams to the overlay UDP port dropped unanswered, by reason: malformed, oversized, not_binding, bad_source, over_budget",
            self.dropped.clone(),
        );
        registry.register(
            "dtls_dropped",
            "DTLS datagrams to the overlay UDP port dropped, by reason: no_link (from an address ICE did not nominate), disabled (the overlay uses no ICE)",
            self.dtls_dropped.clone(),
        );
    }
}

/// What the engine asks of the DTLS links.
#[derive(Debug)]
pub(crate) enum UdpCommand {
    /// ICE nominated a pair: form link `link` over it (§6.5.1.13).
    Open {
        link: u64,
        nominated: Nominated,
    },
    Send {
        link: u64,
        bytes: Vec<u8>,
    },
    Close {
        link: u64,
    },
}

/// Binds UDP on `listen` (the overlay port, already bound over TCP).
pub(crate) async fn bind(listen: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    Ok(Arc::new(UdpSocket::bind(listen).await?))
}

/// One DTLS link and what the engine knows it by.
struct Link {
    id: u64,
    peer: NodeId,
    /// The DTLS server dialled, in the engine's terms (the Attach
    /// requester, which expected `peer`); the client accepted.
    dtls_server: bool,
    dtls: DtlsLink,
    up: bool,
}

/// The socket, the STUN server and the DTLS links.
pub(crate) struct OverlayUdp {
    pub socket: Arc<UdpSocket>,
    pub engine: mpsc::Sender<Input>,
    pub metrics: StunMetrics,
    /// `None`: the overlay uses no ICE, so no DTLS link forms.
    pub dtls: Option<DtlsConfigs>,
    pub ctx: Arc<DecodeContext>,
    /// This node, for the choice between crossed Attaches.
    pub me: NodeId,
    pub commands: mpsc::Receiver<UdpCommand>,
    /// The sender of `commands`, handed to the engine with each link.
    pub commands_tx: mpsc::Sender<UdpCommand>,
}

/// Serves the socket until the engine task is gone.
pub(crate) async fn serve(mut udp: OverlayUdp) {
    let mut server = BindingServer::default();
    let started = tokio::time::Instant::now();
    let mut links: HashMap<SocketAddr, Link> = HashMap::new();
    let mut by_id: HashMap<u64, SocketAddr> = HashMap::new();
    // The largest UDP payload: a DTLS datagram of another implementation
    // may exceed our own 1,280; STUN requests over 548 bytes are refused
    // by the server, not truncated into something else.
    let mut buf = vec![0u8; 65_535];
    loop {
        let wake = links.values().filter_map(|l| l.dtls.poll_timeout()).min();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let touched: Vec<SocketAddr> = tokio::select! {
            received = udp.socket.recv_from(&mut buf) => {
                let (n, from) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        // ICMP errors of earlier sends surface here.
                        tracing::debug!("overlay UDP socket: {e}");
                        continue;
                    }
                };
                let datagram = &buf[..n];
                // An empty datagram is nothing (RFC 7983 needs a first byte).
                let Some(first) = datagram.first() else { continue };
                if (20..=63).contains(first) {
                    match links.get_mut(&from) {
                        Some(link) => {
                            link.dtls.receive(Instant::now(), datagram, &udp.ctx);
                            vec![from]
                        }
                        None => {
                            let reason = if udp.dtls.is_some() { "no_link" } else { "disabled" };
                            udp.metrics.dtls_dropped.get_or_create(&ReasonLabels { reason }).inc();
                            continue;
                        }
                    }
                } else {
                    let now = started.elapsed().as_millis() as u64;
                    if !serve_stun(&mut server, &udp, now, datagram, from) {
                        return;
                    }
                    continue;
                }
            }
            command = udp.commands.recv() => {
                let Some(command) = command else { return };
                match command {
                    UdpCommand::Open { link, nominated } => {
                        let Some(configs) = &udp.dtls else { continue };
                        let (now, remote) = (Instant::now(), nominated.remote);
                        if links.get(&remote).is_some_and(|existing| keeps_existing(udp.me, existing, &nominated)) {
                            tracing::debug!("crossed Attaches with {}: one DTLS link kept", nominated.peer.to_hex());
                            continue;
                        }
                        let dtls = if nominated.dtls_server {
                            DtlsLink::accept(now, remote, nominated.peer, configs, nominated.rtt_ms)
                        } else {
                            DtlsLink::connect(now, remote, nominated.peer, configs, nominated.rtt_ms)
                        };
                        // One association per address: the new one takes
                        // the 5-tuple, so the old one ends without a word
                        // on the wire (its close_notify would be the new
                        // one's).
                        if let Some(old) = links.remove(&remote) {
                            by_id.remove(&old.id);
                            if old.up {
                                let why = "replaced by a new DTLS link with the same address".to_string();
                                let closed = LinkEvent::Closed { link: old.id, peer: old.peer, why };
                                if udp.engine.send(Input::Link(closed)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        by_id.insert(link, remote);
                        let new = Link { id: link, peer: nominated.peer, dtls_server: nominated.dtls_server, dtls, up: false };
                        links.insert(remote, new);
                        vec![remote]
                    }
                    UdpCommand::Send { link, bytes } => {
                        let Some(link) = by_id.get(&link).and_then(|a| links.get_mut(a)) else { continue };
                        if let Err(e) = link.dtls.send(Instant::now(), bytes, &udp.ctx) {
                            tracing::debug!("DTLS link {} to {}: message dropped: {e}", link.id, link.peer.to_hex());
                        }
                        vec![link.dtls.remote()]
                    }
                    UdpCommand::Close { link } => {
                        let Some(remote) = by_id.get(&link).copied() else { continue };
                        if let Some(link) = links.get_mut(&remote) {
                            link.dtls.close(Instant::now());
                        }
                        vec![remote]
                    }
                }
            }
            _ = sleep => {
                let now = Instant::now();
                let due: Vec<SocketAddr> = links
                    .iter()
                    .filter(|(_, l)| l.dtls.poll_timeout().is_some_and(|t| t <= now))
                    .map(|(a, _)| *a)
                    .collect();
                for remote in &due {
                    if let Some(link) = links.get_mut(remote) {
                        link.dtls.handle_timeout(now);
                    }
                }
                due
            }
        };
        for remote in touched {
            let Some(link) = links.get_mut(&remote) else { continue };
            if !flush(&udp, link).await {
                return;
            }
            if link.dtls.is_closed() {
                by_id.remove(&link.id);
                links.remove(&remote);
            }
        }
    }
}

/// Whether a nomination for the address of `existing` leaves it be. When
/// two Attaches cross (each peer sent one), ICE nominates the same pair
/// of addresses twice, and one 5-tuple carries one DTLS association (RFC
/// 6347 §4.2.8). Both ends keep the same one: the one already up, else
/// the one whose DTLS server, the Attach requester (§6.5.1.13), has the
/// larger Node-ID. The dropped one is never reported: the kept link's Up
/// answers both Attaches (a link up to a peer is what an Attach waits
/// for). A nomination of the same role (a new Attach) or for another peer
/// (the address changed hands) replaces the old link.
fn keeps_existing(me: NodeId, existing: &Link, new: &Nominated) -> bool {
    if existing.peer != new.peer || existing.dtls_server == new.dtls_server {
        return false;
    }
    if existing.up {
        return true;
    }
    let this_end_serves_the_kept_one = me > new.peer;
    existing.dtls_server == this_end_serves_the_kept_one
}

/// Answers or passes on one non-DTLS datagram; false once the engine is
/// gone.
fn serve_stun(server: &mut BindingServer, udp: &OverlayUdp, now: u64, datagram: &[u8], from: SocketAddr) -> bool {
    match server.serve(now, datagram, from) {
        Served::Answer(answer) => {
            udp.metrics.answered.inc();
            let _ = udp.socket.try_send_to(&answer, from);
        }
        Served::ForPeer => {
            let input = Input::Stun {
                datagram: datagram.to_vec(),
                from,
            };
            if udp.engine.try_send(input).is_err() && udp.engine.is_closed() {
                return false;
            }
        }
        Served::Keepalive => {}
        Served::Dropped(why) => {
            udp.metrics
                .dropped
                .get_or_create(&ReasonLabels { reason: why.label() })
                .inc();
        }
    }
    true
}

/// Sends what a link has to send and tells the engine what happened to
/// it; false once the engine is gone.
async fn flush(udp: &OverlayUdp, link: &mut Link) -> bool {
    let remote = link.dtls.remote();
    while let Some(datagram) = link.dtls.poll_transmit() {
        // UDP: a datagram lost to a full buffer is sent again by DTLS or
        // Simple Reliability.
        let _ = udp.socket.try_send_to(&datagram, remote);
    }
    let (id, peer) = (link.id, link.peer);
    while let Some(event) = link.dtls.poll_event() {
        let input = match event {
            DtlsEvent::Up { key_log, .. } => {
                if let Some(line) = key_log {
                    append_to_key_log_file(&line);
                }
                link.up = true;
                Input::LinkUp {
                    peer,
                    link: id,
                    tx: LinkSender::Dtls(udp.commands_tx.clone()),
                    dialled: link.dtls_server.then_some(remote),
                    remote,
                }
            }
            DtlsEvent::Message(bytes) => Input::Link(LinkEvent::Message { link: id, peer, bytes }),
            DtlsEvent::Idle => Input::Link(LinkEvent::Idle { link: id, peer }),
            DtlsEvent::Silent { waited_ms } => Input::Link(LinkEvent::Silent {
                link: id,
                peer,
                waited_ms,
            }),
            DtlsEvent::Resumed => Input::Link(LinkEvent::Resumed { link: id, peer }),
            DtlsEvent::Closed(why) if link.up => Input::Link(LinkEvent::Closed { link: id, peer, why }),
            // Either end: the link ICE formed for `peer` failed, and the
            // core drops the agent that nominated it.
            DtlsEvent::Closed(why) => Input::ConnectFailed {
                link: id,
                expected: Some(peer),
                address: remote,
                why,
            },
        };
        if udp.engine.send(input).await.is_err() {
            return false;
        }
    }
    true
}
