//! The peer's UDP socket on its overlay port (the TLS listener's address
//! and port): the STUN server of RFC 6940 §6.5.1.4, and where this peer's
//! own Binding requests to its linked peers go out from, so they see the
//! port's NAT mapping. What to answer is the peer core's
//! ([`BindingServer`]); this task only moves datagrams and counts.

use crate::peer::Input;
use peer_core::stun::server::{BindingServer, Served};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    reason: &'static str,
}

/// `p2psip_stun_*`.
#[derive(Clone, Default)]
pub(crate) struct StunMetrics {
    answered: Counter,
    dropped: Family<ReasonLabels, Counter>,
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
    }
}

/// Binds UDP on `listen` (the overlay port, already bound over TCP).
pub(crate) async fn bind(listen: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    Ok(Arc::new(UdpSocket::bind(listen).await?))
}

/// Serves the socket until the engine task is gone: answers Binding
/// requests, hands responses to the engine, drops the rest (counted).
pub(crate) async fn serve(socket: Arc<UdpSocket>, tx: mpsc::Sender<Input>, metrics: StunMetrics) {
    let mut server = BindingServer::default();
    let started = tokio::time::Instant::now();
    // One byte over the largest request taken: a larger datagram is seen
    // as oversized, not truncated into something else.
    let mut buf = vec![0u8; peer_core::stun::server::MAX_REQUEST + 1];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors of earlier sends surface here; nothing to do.
                tracing::debug!("overlay UDP socket: {e}");
                continue;
            }
        };
        let now = started.elapsed().as_millis() as u64;
        match server.serve(now, &buf[..n], from) {
            Served::Answer(answer) => {
                metrics.answered.inc();
                let _ = socket.try_send_to(&answer, from);
            }
            Served::ForPeer => {
                let input = Input::Stun {
                    datagram: buf[..n].to_vec(),
                    from,
                };
                if tx.try_send(input).is_err() && tx.is_closed() {
                    return;
                }
            }
            Served::Keepalive => {}
            Served::Dropped(why) => {
                metrics
                    .dropped
                    .get_or_create(&ReasonLabels { reason: why.label() })
                    .inc();
            }
        }
    }
}
