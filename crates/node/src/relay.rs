//! A relay peer's TURN server (`peer --relay ADDR`, RFC 6940 §9 and RFC
//! 8656 over UDP): a UDP socket on ADDR for clients and one per relayed
//! address on the same IP (`--relay-ports`), moved by this task; what to
//! answer and relay is [`TurnServer`]'s.
//!
//! Who may allocate: the SIP users enrolled into the node, with their SIP
//! credentials, so a phone configured with this relay as its TURN server
//! (user name and password as for SIP, realm the overlay's name) gets a
//! relayed address for its media. The long-term key is the user's SIP
//! digest HA1 (RFC 8489 §9.2.2 and RFC 7616 hash the same string), so the
//! relay needs no password of its own.

use peer_core::turn::server::{From, TurnConfig, TurnServer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, RwLock};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams from peers waiting for the relay task, at most; beyond, they
/// are dropped and counted (`queue_full`).
const PEER_QUEUE: usize = 4096;

/// Where the relay listens and which ports it relays on.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub listen: SocketAddr,
    pub ports: RangeInclusive<u16>,
    pub allocations_per_user: usize,
    /// Relay to loopback peers too (tests; never by default).
    pub allow_loopback_peers: bool,
}

/// The relayed ports when `--relay-ports` is not given: 64 allocations.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 49_152..=49_215;

/// The users who may allocate, by name: their long-term keys.
pub(crate) type RelayUsers = Arc<RwLock<HashMap<String, [u8; 16]>>>;

/// Long-term keys from the SIP users' digests (HA1 with MD5 is
/// MD5(user:realm:password), RFC 8489 §9.2.2's key when the realm is the
/// overlay's).
pub(crate) fn keys_of(digests: &HashMap<String, sip::digest::Ha1>) -> HashMap<String, [u8; 16]> {
    digests
        .iter()
        .filter_map(|(user, ha1)| {
            let key = <[u8; 16]>::try_from(reload_wire::unhex(&ha1.md5)?).ok()?;
            Some((user.clone(), key))
        })
        .collect()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// `p2psip_relay_*`.
#[derive(Clone, Default)]
pub(crate) struct RelayMetrics {
    allocations: Gauge,
    relayed_bytes: Counter,
    dropped: Family<ReasonLabels, Counter>,
}

impl RelayMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "relay_allocations",
            "TURN allocations this relay peer holds (RFC 8656)",
            self.allocations.clone(),
        );
        registry.register(
            "relay_relayed_bytes",
            "Bytes of data relayed between TURN clients and their peers, both ways",
            self.relayed_bytes.clone(),
        );
        registry.register(
            "relay_dropped",
            "Datagrams the relay dropped, by reason: malformed, oversized, bad_source, unexpected, no_allocation, no_permission, no_channel, over_quota, over_budget, loop, queue_full",
            self.dropped.clone(),
        );
    }
}

/// Why the relay cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "--relay {0}: give the address peers and phones reach the relay at, not an unspecified one (0.0.0.0 or ::)"
    )]
    Unspecified(SocketAddr),
    #[error("--relay-ports {0:?} is empty")]
    NoPorts(RangeInclusive<u16>),
    #[error("cannot listen on {addr} for the relay (UDP): {source}; is another process using it? choose another --relay address or --relay-ports")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the relay's sockets and starts serving; the realm is the
/// overlay's name.
pub(crate) async fn start(
    options: &RelayOptions,
    realm: &str,
    users: RelayUsers,
    metrics: RelayMetrics,
) -> Result<(), RelayError> {
    if options.listen.ip().is_unspecified() {
        return Err(RelayError::Unspecified(options.listen));
    }
    if options.ports.is_empty() {
        return Err(RelayError::NoPorts(options.ports.clone()));
    }
    let bind = |addr: SocketAddr| async move {
        UdpSocket::bind(addr)
            .await
            .map(Arc::new)
            .map_err(|source| RelayError::Bind { addr, source })
    };
    let listen = bind(options.listen).await?;
    let mut relayed = HashMap::new();
    for port in options.ports.clone() {
        let addr = SocketAddr::new(options.listen.ip(), port);
        relayed.insert(addr, bind(addr).await?);
    }
    let mut config = TurnConfig::new(
        realm,
        options
            .ports
            .clone()
            .map(|p| SocketAddr::new(options.listen.ip(), p))
            .collect(),
    );
    config.listening = vec![options.listen];
    config.allocations_per_user = options.allocations_per_user;
    config.allow_loopback_peers = options.allow_loopback_peers;
    let credentials = Box::new(move |user: &str| users.read().ok()?.get(user).copied());
    let mut secret = [0u8; 32];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
    let server = TurnServer::new(config, credentials, secret);
    tracing::info!(
        "relay (TURN) on udp {}, relaying on ports {}-{}",
        options.listen,
        options.ports.start(),
        options.ports.end()
    );
    tokio::spawn(serve(server, listen, relayed, metrics));
    Ok(())
}

async fn serve(
    mut server: TurnServer,
    listen: Arc<UdpSocket>,
    relayed: HashMap<SocketAddr, Arc<UdpSocket>>,
    metrics: RelayMetrics,
) {
    let (tx, mut from_peers) = mpsc::channel::<(SocketAddr, SocketAddr, Vec<u8>)>(PEER_QUEUE);
    for (addr, socket) in &relayed {
        let (addr, socket, tx, metrics) = (*addr, socket.clone(), tx.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; peer_core::turn::server::MAX_DATAGRAM + 1];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                if tx.try_send((addr, peer, buf[..n].to_vec())).is_err() {
                    if tx.is_closed() {
                        return;
                    }
                    metrics
                        .dropped
                        .get_or_create(&ReasonLabels { reason: "queue_full" })
                        .inc();
                }
            }
        });
    }
    drop(tx);
    let started = tokio::time::Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    let mut buf = vec![0u8; peer_core::turn::server::MAX_DATAGRAM + 1];
    let mut counted: HashMap<&'static str, u64> = HashMap::new();
    let mut relayed_bytes = 0;
    // Users removed from the node lose their allocations within this.
    let mut revalidate = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        let wake = server
            .poll_timeout()
            .map(|t| started + std::time::Duration::from_millis(t));
        tokio::select! {
            received = listen.recv_from(&mut buf) => {
                if let Ok((n, client)) = received {
                    server.from_client(now(), &buf[..n], client);
                }
            }
            Some((addr, peer, datagram)) = from_peers.recv() => server.from_peer(now(), &datagram, peer, addr),
            _ = async { tokio::time::sleep_until(wake.unwrap_or(started)).await }, if wake.is_some() => {
                server.handle_timeout(now());
            }
            _ = revalidate.tick() => server.revalidate(),
        }
        while let Some(t) = server.poll_transmit() {
            // UDP: what a full buffer loses, the ends send again.
            let _ = match t.from {
                From::Server => listen.try_send_to(&t.bytes, t.to),
                From::Relayed(addr) => match relayed.get(&addr) {
                    Some(socket) => socket.try_send_to(&t.bytes, t.to),
                    None => continue,
                },
            };
        }
        metrics.allocations.set(server.allocations() as i64);
        metrics.relayed_bytes.inc_by(server.relayed_bytes() - relayed_bytes);
        relayed_bytes = server.relayed_bytes();
        for (reason, total) in server.dropped() {
            let seen = counted.entry(reason).or_default();
            if *total > *seen {
                metrics
                    .dropped
                    .get_or_create(&ReasonLabels { reason })
                    .inc_by(total - *seen);
                *seen = *total;
            }
        }
    }
}
