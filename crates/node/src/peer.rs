//! The peer: a tokio driver around the sans-IO peer core
//! ([`peer_core::PeerCore`]: the engine with Chord-reload and
//! [`CertSecurity`], the usages, the link table, the bootstrap).
//!
//! One task owns the core. Link tasks, the listener, connection attempts
//! and the admin API talk to it through one channel; it turns the core's
//! outputs into link writes, connection attempts and datagrams, and sleeps
//! until the core's next timer.

use crate::identity::CertSecurity;
use crate::link::{run_link, LinkEvent, LinkTls, HANDSHAKE_TIMEOUT, LINK_QUEUE};
use crate::metrics::{Gauges, Metrics};
use crate::node_dir::{NodeDir, NodeDirError};
use crate::pki::cert_info;
use overlay::{ChordReload, ClientTopology, Event, OverlayNode, RequestFailure, RequestId, Topology};
use peer_core::bootstrap::BootstrapPlan;
use peer_core::links::{LinkEnd, LinkEvent as CoreLinkEvent, LinkReport};
use peer_core::sip_usage::Located;
use peer_core::{Input as CoreInput, Output, PeerCore};
use reload_wire::storage::{ArrayEntry, ArrayRange, DataValue, ModelSpecifier, StoredDataSpecifier, StoredDataValue};
use reload_wire::usages::kind_id;
use reload_wire::{
    Body, DecodeContext, Destination, FetchReq, IpAddressPort, KindId, NodeId, ProbeInformation, ProbeReq, ResourceId,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// How long a graceful leave may take before the process exits anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(60);
#[derive(Debug, Error)]
pub enum PeerError {
    #[error(transparent)]
    NodeDir(#[from] NodeDirError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot take UDP {addr}, the overlay port's STUN server (RFC 6940 §6.5.1.4): {source}; free that UDP port or choose another --listen port")]
    ListenUdp { addr: SocketAddr, source: std::io::Error },
    #[error("cannot use the multicast-bootstrap group {addr}: {source}")]
    Multicast { addr: SocketAddr, source: std::io::Error },
    #[error("this overlay's configuration does not permit clients (clients-permitted is false); run without --client")]
    ClientsNotPermitted,
    #[error("a client needs a peer to attach to: give --bootstrap ADDR, or use an overlay with bootstrap nodes or multicast bootstrap")]
    ClientWithoutBootstrap,
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the configuration's message limits are unusable: {0}")]
    Limits(#[from] reload_wire::EncodeError),
    #[error("the overlay's new configuration cannot be run by this peer: {0}")]
    IncompatibleConfiguration(String),
    #[error("--admin {0} is not a loopback address: give the admin API a token (P2PSIP_ADMIN_TOKEN or --admin-token-file FILE; clients send Authorization: Bearer TOKEN)")]
    AdminWithoutToken(SocketAddr),
    #[error(transparent)]
    Usage(#[from] peer_core::usage::KindPolicyMismatch),
    #[error(transparent)]
    Dtls(#[from] crate::link::dtls_config::DtlsConfigError),
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
    #[error("--sip-tls: {0}")]
    SipTls(#[from] crate::sip_tls::SipTlsError),
}

/// What `p2psip peer` was asked to do.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    pub bootstrap: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The bearer token the admin API asks for; required when `admin` is
    /// not a loopback address.
    pub admin_token: Option<String>,
    /// Run as a client (§4.2.1): use the overlay through the peer
    /// responsible for this node's Node-ID, neither routing nor storing.
    pub client: bool,
    /// Serve SIP phones (UDP and TCP) on this address: the registrar of the
    /// users enrolled into the node (RFC 7904).
    pub sip: Option<SocketAddr>,
    /// A dual-stack peer's phones' address in the other IP family.
    pub sip_other_family: Option<SocketAddr>,
    /// Where other peers' SIP connects (TCP); `None`: `sip`'s address
    /// with any free port.
    pub sip_peers: Option<SocketAddr>,
    /// The digest algorithms the SIP registrar challenges with, preferred
    /// first; empty for the default (MD5, decision 0008).
    pub sip_digest: Vec<sip::digest::Algorithm>,
    /// Seconds between keepalives to phones behind NATs; 0: none.
    pub sip_nat_keepalive_s: u64,
    /// DNS servers for finding other domains' SIP servers (RFC 3263);
    /// empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
    /// Made a proxy peer here (`--proxy-peer`): which users requests
    /// from other SIP domains may reach without digest (decision 0034),
    /// whatever the configuration's `<p2psip:proxy-peers>` says (0036).
    pub proxy_peer: Option<sip::proxy::Outsiders>,
    /// Phones' TLS (RFC 3261 §26.2): the address and the certificate
    /// chain and key files for the overlay's domain.
    pub sip_tls: Option<SipTlsOptions>,
    /// Trust anchors for TLS to other domains, besides the system's.
    pub sip_tls_ca: Vec<PathBuf>,
    /// Run a TURN server for the node's SIP users (`--relay`).
    pub relay: Option<crate::relay::RelayOptions>,
}

/// Where phones reach the peer over TLS, and with what certificate.
#[derive(Debug, Clone)]
pub struct SipTlsOptions {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The DNS the SIP side finds other domains' servers with (decision 0034).
fn dns(servers: &[SocketAddr]) -> Option<crate::dns::Dns> {
    match crate::dns::Dns::new(servers) {
        Ok(dns) => Some(dns),
        Err(e) => {
            tracing::warn!("sip: requests to other domains will get 503: {e}");
            None
        }
    }
}

/// The peer's state as `GET /status` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Status {
    pub node_id: String,
    /// `peer`, or `client` (§4.2.1: uses the overlay, neither routes nor
    /// stores).
    pub role: String,
    pub overlay: String,
    pub user: String,
    pub address: String,
    pub joined: bool,
    /// The sequence of the configuration document it runs on (§6.3.2.1).
    #[serde(default)]
    pub configuration_sequence: u16,
    pub uptime_s: u64,
    pub successors: Vec<String>,
    pub predecessors: Vec<String>,
    pub fingers: Vec<String>,
    pub links: Vec<String>,
    /// The peers among `links` linked over DTLS/UDP after ICE (§6.6.4);
    /// the others are over TLS/TCP.
    #[serde(default)]
    pub links_over_dtls: Vec<String>,
    pub stored: BTreeMap<String, usize>,
    pub messages_sent: u64,
    pub messages_forwarded: u64,
    pub messages_delivered: u64,
    pub malformed: u64,
    pub errors_sent: u64,
    /// The SIP side, when the peer runs one (`--sip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<crate::sip_report::SipStatus>,
    /// How a NAT in front of the overlay port maps it, judged from what
    /// the linked peers' STUN servers saw (RFC 4787 §4.1): `unknown`,
    /// `no NAT`, `endpoint-independent` or `destination-dependent`.
    #[serde(default)]
    pub nat_mapping: String,
    /// What each linked peer asked as a STUN server saw (RFC 6940
    /// §6.5.1.4).
    #[serde(default)]
    pub reflexive: Vec<ReflexiveAddress>,
    /// The relays (TURN servers of relay peers) found in the overlay
    /// (RFC 6940 §9).
    #[serde(default)]
    pub relays: Vec<String>,
}

/// The address one STUN server saw this peer's overlay port as.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ReflexiveAddress {
    pub peer: String,
    pub server: String,
    pub address: String,
}

/// Whether the peers whose status is given form one consistent ring: each
/// has joined, each one's first successor names it as first predecessor,
/// and following first successors visits every one of them (§10: the
/// Chord-reload invariants a stable ring keeps). A single peer alone is a
/// ring.
pub fn ring_consistent(statuses: Vec<Status>) -> Result<(), String> {
    let mut by_id: BTreeMap<String, Status> = BTreeMap::new();
    for s in statuses {
        if !s.joined {
            return Err(format!("{} not joined", s.node_id));
        }
        by_id.insert(s.node_id.clone(), s);
    }
    let Some(start) = by_id.keys().next().cloned() else {
        return Err("no peers".into());
    };
    if by_id.len() == 1 {
        return Ok(());
    }
    for (id, s) in &by_id {
        let succ = s.successors.first().ok_or(format!("{id} has no successor"))?;
        let next = by_id
            .get(succ)
            .ok_or(format!("{id}'s successor {succ} is not one of the peers"))?;
        if next.predecessors.first() != Some(id) {
            return Err(format!("{succ} does not name {id} as predecessor"));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut at = start.clone();
    while seen.insert(at.clone()) {
        at = by_id[&at].successors[0].clone();
    }
    if seen.len() != by_id.len() || at != start {
        return Err(format!(
            "the successor walk covers {} of {} peers",
            seen.len(),
            by_id.len()
        ));
    }
    Ok(())
}

/// A certificate fetched from the overlay (Certificate Store Usage, §8).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FetchedCertificate {
    pub node_id: String,
    /// The user name the certificate carries.
    pub user: String,
    /// DER, hex.
    pub certificate: String,
    /// Overlay hops the Fetch travelled.
    pub hops: u32,
}

/// A peer's answer to a Probe (§6.4.2.5) for every information type.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ProbedPeer {
    pub node_id: String,
    pub uptime_s: u32,
    /// Resources it stores (num_resources).
    pub resources: u32,
    /// The share of the ring it is responsible for, in parts per billion
    /// (responsible_set).
    pub responsible_ppb: u32,
    /// Overlay hops from the peer that asked.
    pub hops: u32,
}

/// Where a resource lives: the peer responsible for its Resource-ID and
/// how far away it is (`GET /responsible/NAME`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Responsible {
    /// The resource name asked about, e.g. a SIP AOR without its scheme.
    pub name: String,
    /// Its Resource-ID, hex.
    pub resource_id: String,
    /// The peer that answered the Probe sent to that Resource-ID.
    pub peer: ProbedPeer,
}

/// What this peer itself holds under a resource (`GET /held/NAME`):
/// as responsible peer or as a replica (RFC 6940 §10.4), values by Kind
/// name. Where is alice's registration, and has it been replicated?
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Held {
    pub name: String,
    /// Its Resource-ID, hex.
    pub resource_id: String,
    pub values: BTreeMap<String, usize>,
}

/// The whole overlay as one peer sees it by walking the ring.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RingWalk {
    /// The peer that walked.
    pub start: String,
    /// The walk came back to `start` having met each peer once.
    pub complete: bool,
    /// Every peer met, in ring order from the start's successor; the start
    /// itself is last when the walk is complete.
    pub peers: Vec<ProbedPeer>,
    /// Why the walk stopped short, if it did.
    pub problem: Option<String>,
}

/// Requests from the admin API to the engine task.
pub enum AdminRequest {
    Status(oneshot::Sender<Status>),
    /// Fetch the CERTIFICATE_BY_NODE of a Node-ID through the overlay.
    Certificate(NodeId, oneshot::Sender<Result<FetchedCertificate, String>>),
    /// Probe the peer responsible for a Resource-ID.
    Probe(ResourceId, oneshot::Sender<Result<ProbedPeer, String>>),
    /// The Resource-ID of a resource name, by the overlay's hash.
    ResourceId(String, oneshot::Sender<ResourceId>),
    /// What this peer holds under a resource name.
    Held(String, oneshot::Sender<Held>),
    /// The metrics as OpenMetrics text.
    Metrics(oneshot::Sender<String>),
    /// The signed configuration document the peer runs on.
    ConfigurationDocument(oneshot::Sender<String>),
    /// A configuration document from the operator (§6.5.4: judged and
    /// handed on as a ConfigUpdate would be).
    Configure(
        Vec<u8>,
        oneshot::Sender<Result<overlay::Offered, overlay::ConfigRefusal>>,
    ),
}

/// An admin request waiting for the overlay to answer.
enum AdminPending {
    Certificate(NodeId, oneshot::Sender<Result<FetchedCertificate, String>>),
    Probe(oneshot::Sender<Result<ProbedPeer, String>>),
}

/// An account reload ([`Input::ReloadUsers`]) whose changes the overlay
/// has not answered yet (the core's [`Output::AccountsStored`]): the new
/// users' certificates, the removed users' removals. It is answered once
/// they all are, so a caller of `p2psip user` knows the overlay has the
/// change when the command returns.
struct ReloadWait {
    summary: String,
    digests: HashMap<String, sip::digest::Ha1>,
    /// Users removed: the node signs as them until their removals are
    /// answered.
    removed: Vec<String>,
    reply: oneshot::Sender<Result<String, String>>,
}

pub(crate) enum Input {
    Link(LinkEvent),
    /// A TLS or DTLS link is up.
    LinkUp {
        peer: NodeId,
        link: u64,
        tx: LinkSender,
        /// The address this end dialled (the peer's listen address);
        /// `None` for a link the peer dialled.
        dialled: Option<SocketAddr>,
        /// The other end's address.
        remote: SocketAddr,
    },
    ConnectFailed {
        link: u64,
        expected: Option<NodeId>,
        address: SocketAddr,
        why: String,
    },
    Admin(AdminRequest),
    /// A peer that dialled us was refused or never finished its handshake.
    InboundLinkFailed,
    /// A multicast bootstrap datagram and where it came from.
    Discovery(crate::discovery::Datagram, SocketAddr),
    /// The SIP side needs the overlay.
    Sip(crate::sip_server::SipOverlayRequest),
    /// A configuration document fetched from the configuration server
    /// (§11.2), or why not.
    FetchedConfiguration(Result<Vec<u8>, String>),
    /// Read `users/` again (an account added or removed while running,
    /// [`crate::control`]); the answer says who is served now.
    ReloadUsers(oneshot::Sender<Result<String, String>>),
    /// A STUN response on the overlay UDP port.
    Stun {
        datagram: Vec<u8>,
        from: SocketAddr,
    },
}

/// Where the engine's messages for a link go: a TLS link's own task, or
/// the UDP task that runs every DTLS link.
#[derive(Debug, Clone)]
pub(crate) enum LinkSender {
    Tls(mpsc::Sender<Vec<u8>>),
    Dtls(mpsc::Sender<crate::overlay_udp::UdpCommand>),
}

impl LinkSender {
    /// Queues `bytes` for link `link`; false when the queue is full.
    fn try_send(&self, link: u64, bytes: Vec<u8>) -> bool {
        match self {
            LinkSender::Tls(tx) => tx.try_send(bytes).is_ok(),
            LinkSender::Dtls(tx) => tx
                .try_send(crate::overlay_udp::UdpCommand::Send { link, bytes })
                .is_ok(),
        }
    }

    /// Closes link `link`: a TLS link's task ends when its sender is
    /// dropped; a DTLS link is told.
    fn close(self, link: u64) {
        if let LinkSender::Dtls(tx) = self {
            // A Close must not be lost to a queue full of messages: the
            // link would linger, answering the peer, with nothing to end it.
            let close = crate::overlay_udp::UdpCommand::Close { link };
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(close)) = tx.try_send(close) {
                tokio::spawn(async move { tx.send(close).await });
            }
        }
    }
}

impl From<LinkEvent> for Input {
    fn from(e: LinkEvent) -> Self {
        Input::Link(e)
    }
}

/// The engines' clock, in milliseconds: a monotonic clock, counted from
/// the wall clock when the process started so that its times read like
/// dates. A step of the system clock (NTP correcting it, an operator
/// setting it) moves no timer. The wall clock itself reaches the engine
/// apart ([`wall_clock_ms`], for storage_time), and certificates are
/// checked against it (`pki.rs`).
pub(crate) fn now_ms() -> u64 {
    static START: std::sync::LazyLock<(Instant, u64)> = std::sync::LazyLock::new(|| {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        (Instant::now(), wall)
    });
    START.1 + START.0.elapsed().as_millis() as u64
}

/// The system clock, in milliseconds since the Unix epoch.
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The SIP users enrolled into the node directory (`users/`), each added
/// to `security` so the node signs as them: their digest secrets by
/// account name, and the names their certificates carry (`user@overlay`,
/// the names their registrations are stored under). A user of another
/// overlay or whose certificate is not this node's is skipped with a
/// warning.
fn load_users(dir: &NodeDir, security: &mut CertSecurity) -> (HashMap<String, sip::digest::Ha1>, BTreeSet<String>) {
    let mut digests = HashMap::new();
    let mut names = BTreeSet::new();
    for (user, cert) in dir.sip_users() {
        if user.realm != dir.config.instance_name {
            tracing::warn!(
                "SIP user {}: realm {:?} is not this overlay's; skipped",
                user.user,
                user.realm
            );
            continue;
        }
        match security.add_user(cert) {
            Ok(name) => {
                digests.insert(user.user.clone(), user.ha1());
                names.insert(name);
            }
            Err(e) => tracing::warn!("SIP user {}: {e}; skipped", user.user),
        }
    }
    (digests, names)
}

/// Runs a peer until `shutdown` completes, then leaves gracefully (§10.9).
pub async fn run(opts: PeerOptions, shutdown: impl Future<Output = ()>) -> Result<(), PeerError> {
    let dir = NodeDir::load(&opts.dir)?;
    let _lock = crate::node_dir::DirLock::take(&opts.dir)?;
    // One trust store for links, signatures and SIP between peers, so a
    // configuration update's bad-node list reaches them all at once.
    let trust = dir.config.trust_store();
    let mut security = dir.security_with(trust.clone())?;
    let (sip_users, _) = load_users(&dir, &mut security);
    let me = security.node_id();
    let config = dir.config.overlay_config();
    let ctx = Arc::new(config.decode_context()?);
    let tls = Arc::new(LinkTls::new(
        trust,
        dir.cert_der.clone(),
        crate::pki::rustls_key(&dir.key),
    )?);
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| PeerError::Listen {
            addr: opts.listen,
            source,
        })?;
    let listen = listener.local_addr().map_err(|source| PeerError::Listen {
        addr: opts.listen,
        source,
    })?;
    // Randomness for the engine: its transaction ids and its per-run
    // PingAns response_id, which must differ between two processes that
    // share a node directory even if they start in the same millisecond.
    let mut random = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    let seed =
        u64::from_le_bytes(me.as_bytes()[..8].try_into().unwrap_or_default()) ^ now_ms() ^ u64::from_le_bytes(random);
    if opts.client {
        if !dir.config.clients_permitted {
            return Err(PeerError::ClientsNotPermitted);
        }
        let known = !opts.bootstrap.is_empty()
            || !dir.config.bootstrap_nodes.is_empty()
            || !dir.cached_peers().is_empty()
            || dir.config.multicast_bootstrap.is_some();
        if !known {
            return Err(PeerError::ClientWithoutBootstrap);
        }
        let topology = ClientTopology::new(me, overlay::topology::chord::hash);
        drive(
            opts, dir, tls, ctx, listener, listen, topology, security, config, seed, sip_users, shutdown,
        )
        .await
    } else {
        let topology = ChordReload::new(me, config.chord.clone(), config.node_id_length, seed);
        drive(
            opts, dir, tls, ctx, listener, listen, topology, security, config, seed, sip_users, shutdown,
        )
        .await
    }
}

/// The rest of [`run`], for a peer (Chord-reload) or a client.
#[allow(clippy::too_many_arguments)]
async fn drive<T: Topology + Tables>(
    opts: PeerOptions,
    dir: NodeDir,
    tls: Arc<LinkTls>,
    ctx: Arc<DecodeContext>,
    listener: TcpListener,
    listen: SocketAddr,
    topology: T,
    security: CertSecurity,
    config: overlay::OverlayConfig,
    seed: u64,
    sip_users: std::collections::HashMap<String, sip::digest::Ha1>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PeerError> {
    let me = security.node_id();
    let mut engine = OverlayNode::new(
        Arc::new(config),
        ctx.clone(),
        IpAddressPort::Ip(listen),
        topology,
        security,
        seed,
        now_ms(),
    );
    engine.observe(true);
    let judge = crate::config_judge::DocumentJudge::new(&dir.document, dir.pinned_ca.clone())
        .map_err(|source| NodeDirError::Config {
            path: dir.path.join("reload-config.xml"),
            source,
        })?
        .for_node(&dir.info.node_ids);
    engine.take_configuration_updates(dir.document.clone().into_bytes(), Box::new(judge));
    let (input_tx, input_rx) = mpsc::channel::<Input>(4096);
    tokio::spawn(accept_loop(listener, tls.clone(), ctx.clone(), me, input_tx.clone()));
    let mut sip_control = None;
    let mut metrics = Metrics::new();
    let overlay_udp = crate::overlay_udp::bind(listen)
        .await
        .map_err(|source| PeerError::ListenUdp { addr: listen, source })?;
    let stun_metrics = crate::overlay_udp::StunMetrics::default();
    metrics.add_stun(&stun_metrics);
    // RFC 6940 §11.1: links form by ICE unless the overlay says no-ice.
    let dtls = if dir.config.no_ice {
        None
    } else {
        let configs =
            crate::link::dtls_config::DtlsConfigs::new(dir.config.trust_store(), dir.cert_der.clone(), &dir.key)?
                .with_key_log(std::env::var_os("SSLKEYLOGFILE").is_some());
        Some(configs)
    };
    let relay_users = match &opts.relay {
        Some(relay) => {
            let users = Arc::new(std::sync::RwLock::new(crate::relay::keys_of(&sip_users)));
            let relay_metrics = crate::relay::RelayMetrics::default();
            metrics.add_relay(&relay_metrics);
            crate::relay::start(relay, &dir.config.instance_name, users.clone(), relay_metrics).await?;
            Some(users)
        }
        None => None,
    };
    let (commands_tx, commands) = mpsc::channel(crate::overlay_udp::COMMAND_QUEUE);
    let dtls_links = dtls.is_some().then(|| commands_tx.clone());
    tokio::spawn(crate::overlay_udp::serve(crate::overlay_udp::OverlayUdp {
        socket: overlay_udp.clone(),
        engine: input_tx.clone(),
        metrics: stun_metrics,
        dtls,
        ctx: ctx.clone(),
        me,
        commands,
        commands_tx,
    }));
    if let Some(addr) = opts.sip {
        let phones_tls = match &opts.sip_tls {
            Some(t) => Some((
                t.listen,
                crate::sip_tls::server_config(&t.cert, &t.key, &dir.config.instance_name)?,
            )),
            None => None,
        };
        let own = opts.sip_tls.as_ref().map(|t| (t.cert.as_path(), t.key.as_path()));
        let domain_tls = crate::sip_tls::client_config(&opts.sip_tls_ca, own)?;
        let sockets = crate::sip_server::SipSockets::bind(addr, opts.sip_other_family, opts.sip_peers, phones_tls)
            .await
            .map_err(|(addr, source)| PeerError::Listen { addr, source })?;
        // Digest nonces and the dialog proofs in Record-Routes each get
        // a secret of their own, new with each run.
        let (mut secret, mut dialog_secret) = ([0u8; 32], [0u8; 32]);
        for s in [&mut secret, &mut dialog_secret] {
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), s).map_err(|_| PeerError::Listen {
                addr,
                source: std::io::Error::other("no system randomness for digest nonces and dialog proofs"),
            })?;
        }
        let users: Vec<String> = sip_users.keys().cloned().collect();
        let registrar = sip::registrar::Registrar::new(&dir.config.instance_name, sip_users, secret)
            .with_digest_algorithms(&opts.sip_digest);
        tracing::info!(
            "SIP on udp+tcp {}{}{} (peers: tcp {}) for {} users of {}: {}",
            sockets.local_addr().unwrap_or(addr),
            sockets
                .other_family_addr()
                .map(|a| format!(" and {a}"))
                .unwrap_or_default(),
            sockets.tls_addr().map(|a| format!(", tls {a}")).unwrap_or_default(),
            sockets.overlay_addr().unwrap_or(addr),
            users.len(),
            dir.config.instance_name,
            users.join(", ")
        );
        let overlay_side = sockets
            .overlay_addr()
            .map_err(|source| PeerError::Listen { addr, source })?;
        engine.offer_application(peer_core::sip_usage::SIPS_APPLICATION, IpAddressPort::Ip(overlay_side));
        let proxy_seed = u64::from_be_bytes(secret[..8].try_into().unwrap_or_default()) ^ seed;
        let (control_tx, control_rx) = mpsc::channel(4);
        sip_control = Some(control_tx);
        let sip_metrics = crate::sip_report::SipMetrics::new();
        metrics.add_sip(&sip_metrics);
        tokio::spawn(crate::sip_server::serve(
            sockets,
            tls.clone(),
            crate::sip_server::SipSetup {
                registrar,
                seed: proxy_seed,
                dialog_secret,
                interworking: sip::proxy::Interworking {
                    reach: sip::proxy::Reach::Direct,
                    // Only with a TLS listener of its own: the other
                    // domain's requests in the dialog come back there.
                    tls: opts.sip_tls.is_some(),
                    ..Default::default()
                },
                role: peer_core::sip_service::InterworkingRole {
                    me: Some(me),
                    own_policy: opts.proxy_peer.clone(),
                },
                proxy_peers: dir.config.proxy_peers.clone(),
                dns: dns(&opts.dns_servers),
                nat_keepalive_ms: Some(opts.sip_nat_keepalive_s * 1000).filter(|ms| *ms > 0),
                domain_tls: tokio_rustls::TlsConnector::from(domain_tls),
            },
            input_tx.clone(),
            control_rx,
            sip_metrics,
        ));
    }
    if let Some(admin) = opts.admin {
        if !admin.ip().is_loopback() && opts.admin_token.is_none() {
            return Err(PeerError::AdminWithoutToken(admin));
        }
        let listener = TcpListener::bind(admin)
            .await
            .map_err(|source| PeerError::Listen { addr: admin, source })?;
        tokio::spawn(crate::admin::serve(
            listener,
            input_tx.clone(),
            sip_control.clone(),
            opts.admin_token.clone(),
        ));
        tracing::info!("admin API on http://{admin}");
    }
    {
        let (path, input_tx) = (dir.path.clone(), input_tx.clone());
        tokio::spawn(async move { crate::control::serve(&path, input_tx).await });
    }
    tracing::info!(
        "{} {} of {} listening on {listen}",
        if opts.client { "client" } else { "peer" },
        me.to_hex(),
        dir.config.instance_name
    );

    let multicast = match dir.config.multicast_bootstrap {
        Some(group) => {
            let sockets = crate::discovery::open(group, listen.ip())
                .map_err(|source| PeerError::Multicast { addr: group, source })?;
            let sockets = Arc::new(sockets);
            tokio::spawn(discovery_listener(sockets.clone(), true, input_tx.clone()));
            tokio::spawn(discovery_listener(sockets.clone(), false, input_tx.clone()));
            tracing::info!("multicast bootstrap on {group}");
            Some(sockets)
        }
        None => None,
    };
    let plan = BootstrapPlan::new(
        listen,
        opts.client,
        &dir.config.bootstrap_nodes,
        &opts.bootstrap,
        &dir.cached_peers(),
        multicast.is_some(),
    );
    let certificate = Some((dir.cert_der.clone(), dir.info.user.clone()));
    let mut core = PeerCore::new(engine, plan, opts.client, certificate)?;
    core.use_stun_servers(now_ms(), system_entropy());
    if let Some(relay) = &opts.relay {
        core.offer_relay(now_ms(), relay.listen, dir.config.turn_density);
    }
    if dtls_links.is_some() {
        core.use_ice(listen, system_entropy());
    }
    let mut driver = Driver {
        client: opts.client,
        core,
        me,
        tls,
        ctx,
        links: HashMap::new(),
        next_link: 1,
        dials: HashMap::new(),
        input_tx,
        listen,
        dir,
        multicast,
        overlay_udp,
        dtls_links,
        dtls_peers: HashMap::new(),
        relay_users,
        started: now_ms(),
        pending: HashMap::new(),
        next_token: 0,
        publishes: HashMap::new(),
        locates: HashMap::new(),
        unverified_logged: 0,
        sip_control,
        reloads: HashMap::new(),
        left: false,
        refusal_logs: crate::log_budget::LogBudget::new(10, 60_000),
        must_exit: None,
        revoked: false,
        refetch: Default::default(),
        metrics,
    };
    driver
        .metrics
        .configuration(driver.core.engine().config().configuration_sequence);
    driver.plan_refetch();
    driver.core.start(now_ms());
    driver.run(input_rx, shutdown).await;
    match driver.must_exit {
        Some(why) => Err(PeerError::IncompatibleConfiguration(why)),
        None => Ok(()),
    }
}

/// The system's cryptographic generator, for what an off-path attacker
/// must not guess (STUN transaction ids, ICE passwords).
fn system_entropy() -> overlay::Entropy {
    let system = ring::rand::SystemRandom::new();
    overlay::Entropy(Box::new(move |bytes: &mut [u8]| {
        // The kernel's generator does not fail once the process runs.
        let _ = ring::rand::SecureRandom::fill(&system, bytes);
    }))
}

/// What `/status` shows of a topology's routing tables.
pub trait Tables {
    fn successors(&self) -> Vec<NodeId>;
    fn predecessors(&self) -> Vec<NodeId>;
    fn fingers(&self) -> Vec<NodeId>;
}

impl Tables for ChordReload {
    fn successors(&self) -> Vec<NodeId> {
        ChordReload::successors(self).to_vec()
    }
    fn predecessors(&self) -> Vec<NodeId> {
        ChordReload::predecessors(self).to_vec()
    }
    fn fingers(&self) -> Vec<NodeId> {
        ChordReload::fingers(self)
    }
}

/// A client has no routing tables; its one link shows under `links`.
impl Tables for ClientTopology {
    fn successors(&self) -> Vec<NodeId> {
        Vec::new()
    }
    fn predecessors(&self) -> Vec<NodeId> {
        Vec::new()
    }
    fn fingers(&self) -> Vec<NodeId> {
        Vec::new()
    }
}

struct Driver<T: Topology + Tables> {
    client: bool,
    core: PeerCore<T, CertSecurity>,
    me: NodeId,
    tls: Arc<LinkTls>,
    ctx: Arc<DecodeContext>,
    /// The links up, by the number this driver gave them.
    links: HashMap<u64, LinkSender>,
    next_link: u64,
    /// Links being dialled, and the Node-ID each expects (`None`: a
    /// bootstrap address).
    dials: HashMap<u64, Option<NodeId>>,
    input_tx: mpsc::Sender<Input>,
    listen: SocketAddr,
    dir: NodeDir,
    multicast: Option<Arc<crate::discovery::Sockets>>,
    /// The UDP socket on the overlay port: STUN (RFC 6940 §6.5.1.4).
    overlay_udp: Arc<tokio::net::UdpSocket>,
    /// The UDP task's DTLS links, when the overlay uses ICE.
    dtls_links: Option<mpsc::Sender<crate::overlay_udp::UdpCommand>>,
    /// The peers of the DTLS links up, by link.
    dtls_peers: HashMap<u64, NodeId>,
    /// Who may allocate at this peer's relay, when it runs one.
    relay_users: Option<crate::relay::RelayUsers>,
    started: u64,
    /// Certificate fetches the admin API is waiting on.
    pending: HashMap<RequestId, AdminPending>,
    /// Tokens of the core's publishes, lookups and account changes.
    next_token: u64,
    /// The SIP side waiting on a registration Store, by token.
    publishes: HashMap<u64, oneshot::Sender<Result<(), peer_core::sip_usage::PublishError>>>,
    /// The SIP side waiting on a lookup, by token.
    locates: HashMap<u64, oneshot::Sender<Located>>,
    /// Unverified registration values already logged.
    unverified_logged: u64,
    /// Tells the SIP side which users it serves, when it runs.
    sip_control: Option<mpsc::Sender<crate::sip_server::SipControl>>,
    /// Account reloads waiting for their stores to be answered, by token.
    reloads: HashMap<u64, ReloadWait>,
    /// Refused ConfigUpdates logged: any member can send one.
    refusal_logs: crate::log_budget::LogBudget,
    /// The overlay moved to a configuration this peer cannot run (§11.1):
    /// why; the peer leaves and exits with it.
    must_exit: Option<String>,
    /// The overlay listed this node as a bad-node: it exits without
    /// leaving (§11.1).
    revoked: bool,
    /// When to fetch the configuration document again (§11.1, §6.5.4).
    refetch: peer_core::config_refetch::Refetch,
    /// A leave finished (`Event::Left` came out of the engine), even if
    /// the actions were carried out outside the main loop.
    left: bool,
    metrics: Metrics,
}

impl<T: Topology + Tables> Driver<T> {
    /// Sends a DISCOVER to the multicast group, again after
    /// `again_after_ms`.
    fn multicast(&self, datagram: crate::discovery::Datagram, again_after_ms: u64) {
        let Some(sockets) = self.multicast.clone() else {
            return;
        };
        let (bytes, group) = (datagram.encode(), sockets.group_addr);
        tokio::spawn(async move {
            for _ in 0..2 {
                if let Err(e) = sockets.unicast.send_to(&bytes, group).await {
                    tracing::warn!("cannot send to the multicast group {group}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(again_after_ms)).await;
            }
        });
        tracing::debug!("asking {group} who is in the overlay");
    }

    /// Answers a discovery datagram from `to`.
    fn discovery_answer(&self, to: SocketAddr, datagram: crate::discovery::Datagram) {
        if let Some(sockets) = self.multicast.clone() {
            tokio::spawn(async move { sockets.unicast.send_to(&datagram.encode(), to).await });
        }
    }

    async fn run(&mut self, mut inputs: mpsc::Receiver<Input>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut leave_deadline: Option<Instant> = None;
        let mut next_cache = Instant::now() + Duration::from_secs(30);
        loop {
            self.core.engine_mut().set_wall_clock(now_ms(), wall_clock_ms());
            if self.drain_actions() {
                tracing::info!("left the overlay");
                return;
            }
            let timer = self
                .core
                .poll_timeout()
                .map(|t| Instant::now() + Duration::from_millis(t.saturating_sub(now_ms())));
            let wake = [
                timer,
                leave_deadline,
                Some(next_cache),
                self.refetch
                    .wake_in(std::time::SystemTime::now())
                    .map(|d| Instant::now() + d),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                Some(input) = inputs.recv() => self.on_input(input),
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if leave_deadline.is_some_and(|d| now >= d) {
                        tracing::warn!("leave did not finish in {LEAVE_TIMEOUT:?}; exiting");
                        return;
                    }
                    self.maybe_refetch();
                    if now >= next_cache {
                        next_cache = now + Duration::from_secs(60);
                        self.cache_peers();
                        self.search_relays();
                    }
                    self.core.handle_timeout(now_ms());
                }
                _ = async {}, if self.must_exit.is_some() && leave_deadline.is_none() => {
                    leave_deadline = Some(Instant::now() + LEAVE_TIMEOUT);
                    if self.revoked || !self.begin_leave() {
                        return;
                    }
                }
                _ = &mut shutdown, if leave_deadline.is_none() => {
                    tracing::info!("leaving the overlay (handing stored data over)");
                    self.cache_peers();
                    leave_deadline = Some(Instant::now() + LEAVE_TIMEOUT);
                    if !self.begin_leave() {
                        return;
                    }
                }
            }
        }
    }

    /// Carries out the core's outputs; true once a leave finished.
    fn drain_actions(&mut self) -> bool {
        while let Some(o) = self.core.engine_mut().poll_observation() {
            self.metrics.observe(o);
        }
        let mut left = self.left;
        self.drain_outputs(&mut left);
        self.left = left;
        left
    }

    fn drain_outputs(&mut self, left: &mut bool) {
        let now = now_ms();
        while let Some(output) = self.core.poll_output(now) {
            match output {
                Output::Send { link, bytes, .. } => match self.links.get(&link) {
                    Some(tx) => {
                        if !tx.try_send(link, bytes) {
                            tracing::debug!("link {link} is full; message dropped");
                        }
                    }
                    None => tracing::debug!("link {link} is gone; message dropped"),
                },
                Output::Connect { peer, address } => self.connect(peer, address),
                Output::CloseLink { link } => {
                    self.dtls_peers.remove(&link);
                    if let Some(tx) = self.links.remove(&link) {
                        tx.close(link);
                    }
                }
                Output::Link(report) => self.link_report(report),
                Output::Multicast {
                    datagram,
                    again_after_ms,
                } => self.multicast(datagram, again_after_ms),
                Output::DiscoveryAnswer { to, datagram } => self.discovery_answer(to, datagram),
                Output::LinkOverIce(nominated) => self.link_over_ice(nominated),
                Output::Datagram { to, bytes } => {
                    // UDP: a request lost to a full buffer is retransmitted.
                    let _ = self.overlay_udp.try_send_to(&bytes, to);
                }
                Output::Published { token, result } => {
                    if let Some(reply) = self.publishes.remove(&token) {
                        let _ = reply.send(result);
                    }
                }
                Output::Located { token, located } => self.located(token, located),
                Output::AccountsStored { token, failures } => {
                    if let Some(wait) = self.reloads.remove(&token) {
                        self.reload_done(wait, failures);
                    }
                }
                Output::Event(event) => *left |= self.on_event(event),
            }
        }
    }

    /// ICE nominated a pair for a link (§6.5.1.13): the UDP task forms
    /// the DTLS link over it and reports it up or failed, as a dial is.
    fn link_over_ice(&mut self, nominated: peer_core::ice::Nominated) {
        let link = self.next_link;
        self.next_link += 1;
        let (peer, dtls_server) = (nominated.peer, nominated.dtls_server);
        let open = crate::overlay_udp::UdpCommand::Open { link, nominated };
        let opened = self.dtls_links.as_ref().is_some_and(|tx| tx.try_send(open).is_ok());
        if !opened {
            tracing::warn!("cannot form a DTLS link to {} now; the Attach fails", peer.to_hex());
            let expected = dtls_server.then_some(peer);
            self.core.handle_input(now_ms(), CoreInput::LinkFailed { expected });
        }
    }

    /// In an overlay that uses ICE, looks for relays (RFC 6940 §9) until
    /// some are found: on joining, then each minute.
    fn search_relays(&mut self) {
        let (found, searching) = self.core.relays_found();
        if self.dtls_links.is_none() || !found.is_empty() || searching || !self.core.engine().is_joined() {
            return;
        }
        let mut seed = [0u8; 16];
        (system_entropy().0)(&mut seed);
        self.core.search_relays(now_ms(), seed);
    }

    /// Hands a lookup's outcome to the SIP side that asked.
    fn located(&mut self, token: u64, located: Located) {
        if let Some(reply) = self.locates.remove(&token) {
            let _ = reply.send(located);
        }
        let unverified = self.core.sip().locator.stats().unverified_values;
        if unverified > self.unverified_logged {
            tracing::warn!(
                "sip: {} fetched registration values did not verify; ignored",
                unverified - self.unverified_logged
            );
            self.unverified_logged = unverified;
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// The engine runs on a new configuration (§6.5.4): keep the document
    /// for the next start and follow what the driver reads of it.
    fn reconfigured(&mut self, sequence: u16, document: Option<Arc<[u8]>>, from: Option<NodeId>) {
        self.metrics.configuration(sequence);
        // New links frame with the new limits; links up keep theirs.
        self.ctx = self.core.engine().decode_context().clone();
        let source = from.map_or("the operator".to_string(), |n| format!("peer {}", n.to_hex()));
        let Some(document) = document else {
            return tracing::info!(
                "Kinds updated by a ConfigUpdate from {source}; they last until the peer restarts unless a new configuration document carries them"
            );
        };
        let text = std::str::from_utf8(&document).map_err(|_| "the document is not UTF-8".to_string());
        // The engine's judge checked the document's signatures: its
        // bad-node list applies even if it cannot be saved.
        let configuration = text
            .as_ref()
            .ok()
            .and_then(|text| crate::config_doc::SignedConfiguration::parse(text, None).ok())
            .map(|signed| signed.configuration);
        if let Some(configuration) = configuration {
            self.follow_bad_nodes(sequence, configuration.bad_nodes);
            self.follow_proxy_peers(sequence, configuration.proxy_peers);
        }
        let roots_before = self.dir.config.root_certs.clone();
        let saved = text.and_then(|text| self.dir.save_config(text).map_err(|e| e.to_string()));
        match saved {
            Ok(()) => tracing::info!("configuration sequence {sequence} adopted from {source} and saved"),
            Err(e) => {
                self.plan_refetch();
                return tracing::error!(
                    "configuration sequence {sequence} adopted from {source} but not saved ({e}); the next start runs on the previous document"
                );
            }
        }
        if self.dir.config.root_certs != roots_before {
            tracing::warn!(
                "configuration sequence {sequence} changes root-cert: links and signatures follow it once the peer restarts"
            );
        }
        self.core
            .add_bootstrap_addresses(self.listen, &self.dir.config.bootstrap_nodes);
        self.plan_refetch();
    }

    /// RFC 6940 §11.1: the nodes a new configuration lists as bad are
    /// refused from now on (their links, signatures and SIP connections
    /// all check the shared trust store), and their links are closed.
    /// What they stored stays until it expires.
    fn follow_bad_nodes(&mut self, sequence: u16, bad: Vec<NodeId>) {
        if bad == self.tls.trust.bad_nodes() {
            return;
        }
        self.tls.trust.set_bad_nodes(bad.clone());
        tracing::warn!("configuration sequence {sequence} lists {} bad nodes", bad.len());
        self.core.handle_input(now_ms(), CoreInput::BadNodes(bad));
    }

    /// A new configuration's proxy peers (decision 0036) apply to the next
    /// requests for or from other domains.
    fn follow_proxy_peers(&mut self, sequence: u16, proxy_peers: crate::config_doc::ProxyPeers) {
        if proxy_peers == self.dir.config.proxy_peers {
            return;
        }
        tracing::info!(
            "configuration sequence {sequence} lists {} proxy peers, reachable from other domains: {}",
            proxy_peers.peers.len(),
            proxy_peers.outsiders
        );
        if let Some(sip) = self.sip_control.clone() {
            tokio::spawn(async move {
                let told = crate::sip_server::SipControl::ProxyPeers { sequence, proxy_peers };
                if sip.send(told).await.is_err() {
                    tracing::warn!("the SIP side is not running: the new proxy peers apply after a restart");
                }
            });
        }
    }

    /// Logs and counts what the core says of a link.
    fn link_report(&mut self, report: LinkReport) {
        match report {
            LinkReport::Silent {
                peer,
                waited_ms,
                neighbour,
            } => {
                if neighbour {
                    self.metrics.link_lost();
                }
                self.metrics.link_silent();
                tracing::warn!(
                    "{} {} has not acknowledged for {:.1} s: out of the routing table; its link stays open {} s in case it comes back",
                    if neighbour { "neighbour" } else { "peer" },
                    peer.to_hex(),
                    waited_ms as f64 / 1000.0,
                    overlay::link_liveness::RETAIN_SILENT_MS / 1000
                );
            }
            LinkReport::Resumed { peer } => {
                tracing::info!("{} acknowledges again: back in the routing table", peer.to_hex())
            }
            LinkReport::Closed { peer, why, neighbour } => {
                if neighbour {
                    self.metrics.link_lost();
                    tracing::warn!("lost the link to neighbour {}: {why}", peer.to_hex());
                } else {
                    tracing::info!("link to {} closed: {why}", peer.to_hex());
                }
            }
            LinkReport::Duplicate { .. } => self.metrics.duplicate_node_id(),
            LinkReport::OwnAddress { address } => {
                self.metrics.link_failed(false);
                tracing::info!("cannot link to {address}: it is this peer's own address");
            }
            LinkReport::ClosedForBadNode { peers } => {
                self.metrics.links_closed_for_bad_node(peers.len());
                let names: Vec<String> = peers.iter().map(|n| n.to_hex()).collect();
                tracing::warn!(
                    "links closed to bad nodes: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
        }
    }

    /// Starts a graceful leave (§10.9; the core withdraws this peer's
    /// registrations first). `false` when the node never joined and may
    /// simply exit.
    fn begin_leave(&mut self) -> bool {
        if !self.core.engine().is_joined() {
            return false;
        }
        self.core.handle_input(now_ms(), CoreInput::Leave);
        true
    }

    /// §11.1: fetch the document again at a random time before it
    /// expires.
    fn plan_refetch(&mut self) {
        // No configuration server named: nothing to fetch from.
        let expiration = self
            .dir
            .config
            .expiration
            .as_deref()
            .and_then(crate::config_doc::parse_rfc3339)
            .filter(|_| !self.dir.config.enrollment_servers.is_empty());
        let random = u64::from_le_bytes(self.me.as_bytes()[8..16].try_into().unwrap_or_default()) ^ now_ms();
        self.refetch.plan(expiration, std::time::SystemTime::now(), random);
    }

    /// Starts a due fetch from the configuration server (the enrollment
    /// server's host, §11.2), over TLS pinned to the node's CA.
    fn maybe_refetch(&mut self) {
        let Some(server) = self.dir.config.enrollment_servers.first().cloned() else {
            return self.refetch.plan(None, std::time::SystemTime::now(), 0);
        };
        if !self.refetch.start(std::time::SystemTime::now()) {
            return;
        }
        let pin = crate::enrollment::CaPin::Certificate(self.dir.pinned_ca.clone().into());
        let input = self.input_tx.clone();
        tokio::spawn(async move {
            let fetched = tokio::time::timeout(
                Duration::from_secs(30),
                crate::enrollment::fetch_configuration(&server, pin),
            )
            .await
            .map_err(|_| format!("{server}: no answer within 30 s"))
            .and_then(|f| f.map_err(|e| format!("{server}: {e}")));
            let _ = input.send(Input::FetchedConfiguration(fetched)).await;
        });
    }

    fn fetched_configuration(&mut self, fetched: Result<Vec<u8>, String>) {
        let now = std::time::SystemTime::now();
        let document = match fetched {
            Ok(d) => d,
            Err(why) => {
                self.refetch.finished(now, true);
                return tracing::warn!("cannot fetch the configuration document: {why}; trying again in a minute");
            }
        };
        self.refetch.finished(now, false);
        match self.core.engine_mut().offer_configuration(now_ms(), document) {
            Ok(overlay::Offered::Adopted { .. }) => {}
            Ok(overlay::Offered::Current { sequence }) => {
                tracing::debug!("the configuration server has sequence {sequence}, the one this peer runs");
                self.plan_refetch();
            }
            Err(refusal) => {
                self.metrics.configuration_update_refused();
                tracing::warn!("the configuration server's document was refused: {refusal}");
                self.plan_refetch();
            }
        }
    }

    /// What the engine tells the application; true once a leave finished.
    fn on_event(&mut self, event: Event) -> bool {
        match event {
            Event::Joined => {
                tracing::info!("joined the overlay");
                self.cache_peers();
                self.search_relays();
            }
            Event::Done {
                request,
                outcome,
                hops,
                responder,
                ..
            } => self.on_done(request, outcome, hops, responder),
            Event::Rejoining { after_ms: 0 } => tracing::warn!("lost the overlay; joining again"),
            Event::Rejoining { after_ms } => tracing::warn!(
                "lost the overlay again soon after joining; joining again in {} s (a second process with this \
                 Node-ID elsewhere, a copied node directory, also looks like this)",
                after_ms.div_ceil(1000)
            ),
            Event::Left => return true,
            // A first failure is routine while the ring settles (the
            // replica's view still differs); one that outlived a retry is not.
            Event::ReplicaPushFailed {
                resource,
                to,
                why,
                rounds,
            } if rounds > 1 && REPLICA_PUSHES_FAILED.allow(now_ms()) => {
                tracing::info!(
                    "replica Store of {} to {} failed again ({why}; {rounds} rounds in a row); trying again later",
                    reload_wire::hex(resource.as_bytes()),
                    to.to_hex()
                );
            }
            Event::ReplicaPushFailed { resource, to, why, .. } => tracing::debug!(
                "replica Store of {} to {} failed ({why}); trying again shortly",
                reload_wire::hex(resource.as_bytes()),
                to.to_hex()
            ),
            Event::Misbehaving { peer, why } => {
                self.metrics.link_closed_for_abuse();
                tracing::warn!(
                    "closed the link to {}: it sent {} {why} within {} s; its links are refused for {} min",
                    peer.to_hex(),
                    overlay::node::OFFENCES_TO_CLOSE,
                    overlay::node::OFFENCE_WINDOW_MS / 1000,
                    overlay::node::BANNED_FOR_MS / 60_000
                );
            }
            Event::Reconfigured {
                sequence,
                document,
                from,
            } => self.reconfigured(sequence, document, from),
            Event::ConfigurationStale { .. } if self.dir.config.enrollment_servers.is_empty() => {}
            Event::ConfigurationStale { by } => {
                if self.refetch.wake_in(std::time::SystemTime::now()) != Some(Duration::ZERO) {
                    tracing::info!(
                        "peer {} runs a newer configuration; fetching it from the configuration server",
                        by.to_hex()
                    );
                }
                self.refetch.stale(std::time::SystemTime::now());
            }
            Event::ConfigurationRefused { from, refusal } => {
                self.metrics.configuration_update_refused();
                if let overlay::ConfigRefusal::Incompatible(why) = &refusal {
                    // §11.1: "If a node is not capable of supporting the
                    // new requirements, it MUST exit the overlay."
                    tracing::error!(
                        "the overlay's new configuration (from {}) cannot be run by this peer: {why}; leaving the overlay",
                        from.to_hex()
                    );
                    self.must_exit = Some(why.clone());
                } else if let overlay::ConfigRefusal::Revoked(_) = &refusal {
                    // Every peer cuts a revoked node off: there is no one
                    // to hand data over to, so it exits at once.
                    tracing::error!("{refusal} (from {}); exiting", from.to_hex());
                    self.must_exit = Some(refusal.to_string());
                    self.revoked = true;
                } else if self.refusal_logs.take(now_ms()).0 {
                    tracing::warn!("refused a ConfigUpdate from {}: {refusal}", from.to_hex());
                }
            }
            // The reason comes from another (authenticated) peer: escaped,
            // and long enough to say what to do.
            Event::Refused { by, info } => tracing::warn!(
                "peer {} refused this node: {}",
                by.to_hex(),
                info.chars().take(240).flat_map(char::escape_debug).collect::<String>()
            ),
            _ => {}
        }
        false
    }

    fn connect(&mut self, peer: Option<NodeId>, address: IpAddressPort) {
        let IpAddressPort::Ip(address) = address else {
            self.core
                .handle_input(now_ms(), CoreInput::LinkFailed { expected: peer });
            return;
        };
        let (tls, tx) = (self.tls.clone(), self.input_tx.clone());
        let ctx = self.ctx.clone();
        let link = self.next_link;
        self.next_link += 1;
        self.dials.insert(link, peer);
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                let tcp = TcpStream::connect(address).await.map_err(|e| e.to_string())?;
                let _ = tcp.set_nodelay(true);
                let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
                tls.connect(name, tcp).await.map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
            let linked = outcome.and_then(|stream| {
                let ids = tls.peer_node_ids(stream.get_ref().1.peer_certificates());
                let their = match peer {
                    Some(p) if ids.contains(&p) => Some(p),
                    Some(_) => None,
                    None => ids.first().copied(),
                };
                their.map(|t| (stream, t)).ok_or_else(|| {
                    let why = format!(
                        "refused {address}: its certificate does not carry Node-ID {}",
                        peer.map(|p| p.to_hex()).unwrap_or_default()
                    );
                    tracing::warn!("{why}");
                    why
                })
            });
            match linked {
                Ok((stream, their)) => {
                    let ends = LinkEnds {
                        peer: their,
                        dialled: Some(address),
                        remote: address,
                    };
                    serve_link(stream, link, ends, ctx, tx).await
                }
                Err(why) => {
                    let failed = Input::ConnectFailed {
                        link,
                        expected: peer,
                        address,
                        why,
                    };
                    let _ = tx.send(failed).await;
                }
            }
        });
    }

    fn on_input(&mut self, input: Input) {
        let now = now_ms();
        match input {
            Input::Link(e) => self.on_link_event(e),
            Input::LinkUp {
                peer,
                link,
                tx,
                dialled,
                remote,
                ..
            } => {
                let end = match dialled {
                    Some(address) => LinkEnd::Dialled {
                        address,
                        // A DTLS server's link was for the peer ICE
                        // nominated, whose certificate it checked.
                        expected: match tx {
                            LinkSender::Dtls(_) => Some(peer),
                            LinkSender::Tls(_) => self.dials.remove(&link).flatten(),
                        },
                    },
                    None => LinkEnd::Accepted { remote },
                };
                if matches!(tx, LinkSender::Dtls(_)) {
                    self.dtls_peers.insert(link, peer);
                }
                self.links.insert(link, tx);
                let up = CoreLinkEvent::Up { link, peer, end };
                self.core.handle_input(now, CoreInput::Link(up));
            }
            Input::InboundLinkFailed => self.metrics.link_failed(true),
            Input::Discovery(datagram, from) => self.core.handle_input(now, CoreInput::Discovery { datagram, from }),
            Input::Stun { datagram, from } => self.core.handle_input(
                now,
                CoreInput::Stun {
                    datagram: &datagram,
                    from,
                },
            ),
            Input::ConnectFailed {
                link,
                expected,
                address,
                why,
            } => {
                self.dials.remove(&link);
                tracing::info!("cannot link to {address}: {why}");
                self.metrics.link_failed(false);
                self.core.handle_input(now, CoreInput::LinkFailed { expected });
            }
            Input::Sip(crate::sip_server::SipOverlayRequest::Publish {
                resource_name,
                lifetime_s,
                reply,
            }) => {
                let token = self.token();
                self.publishes.insert(token, reply);
                let user = &resource_name;
                self.core.handle_input(
                    now,
                    CoreInput::Publish {
                        user,
                        lifetime_s,
                        token,
                    },
                );
            }
            Input::Sip(crate::sip_server::SipOverlayRequest::Locate { resource_name, reply }) => {
                let token = self.token();
                self.locates.insert(token, reply);
                let user = resource_name;
                self.core.handle_input(now, CoreInput::Locate { user, token });
            }
            Input::Sip(crate::sip_server::SipOverlayRequest::LocatePeers { peers, reply }) => {
                let token = self.token();
                self.locates.insert(token, reply);
                self.core.handle_input(now, CoreInput::LocatePeers { peers, token });
            }
            Input::Sip(crate::sip_server::SipOverlayRequest::Unreachable { address }) => {
                self.core.handle_input(now, CoreInput::Unreachable { address });
            }
            Input::ReloadUsers(reply) => self.reload_users(reply),
            Input::FetchedConfiguration(fetched) => self.fetched_configuration(fetched),
            Input::Admin(AdminRequest::Status(reply)) => {
                let _ = reply.send(self.status());
            }
            Input::Admin(AdminRequest::Metrics(reply)) => {
                let _ = reply.send(self.render_metrics());
            }
            Input::Admin(AdminRequest::ConfigurationDocument(reply)) => {
                let _ = reply.send(self.dir.document.clone());
            }
            Input::Admin(AdminRequest::Configure(document, reply)) => {
                let offered = self.core.engine_mut().offer_configuration(now, document);
                if let Err(refusal) = &offered {
                    self.metrics.configuration_update_refused();
                    tracing::warn!("the operator's configuration was refused: {refusal}");
                }
                let _ = reply.send(offered);
            }
            Input::Admin(AdminRequest::Certificate(node, reply)) => {
                let req = FetchReq {
                    resource: self.core.engine().resource_id(node.as_bytes()),
                    specifiers: vec![StoredDataSpecifier {
                        kind: kind_id::CERTIFICATE_BY_NODE,
                        generation: 0,
                        model_specifier: ModelSpecifier::Array(vec![ArrayRange { first: 0, last: 0 }]),
                    }],
                };
                let id = self.core.engine_mut().fetch(now, req);
                self.pending.insert(id, AdminPending::Certificate(node, reply));
            }
            Input::Admin(AdminRequest::ResourceId(name, reply)) => {
                let _ = reply.send(self.core.engine().resource_id(name.as_bytes()));
            }
            Input::Admin(AdminRequest::Held(name, reply)) => {
                let resource = self.core.engine().resource_id(name.as_bytes());
                let kinds: Vec<(KindId, usize)> = self
                    .core
                    .engine()
                    .storage()
                    .resource(&resource)
                    .map(|r| r.count_by_kind().collect())
                    .unwrap_or_default();
                let _ = reply.send(Held {
                    name,
                    resource_id: reload_wire::hex(resource.as_bytes()),
                    values: self.kind_names(kinds).into_iter().collect(),
                });
            }
            Input::Admin(AdminRequest::Probe(resource, reply)) => {
                use reload_wire::topology::probe_information_type as info;
                let probe = Body::ProbeReq(ProbeReq {
                    requested_info: vec![info::RESPONSIBLE_SET, info::NUM_RESOURCES, info::UPTIME],
                });
                let id = self
                    .core
                    .engine_mut()
                    .request(now, vec![Destination::Resource(resource)], probe);
                self.pending.insert(id, AdminPending::Probe(reply));
            }
        }
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        let now = now_ms();
        let event = match &event {
            LinkEvent::Message { link, peer, bytes } => CoreLinkEvent::Message {
                link: *link,
                peer: *peer,
                bytes,
            },
            LinkEvent::Idle { link, peer } => CoreLinkEvent::Idle {
                link: *link,
                peer: *peer,
            },
            LinkEvent::Silent { link, peer, waited_ms } => CoreLinkEvent::Silent {
                link: *link,
                peer: *peer,
                waited_ms: *waited_ms,
            },
            LinkEvent::Resumed { link, peer } => CoreLinkEvent::Resumed {
                link: *link,
                peer: *peer,
            },
            LinkEvent::Closed { link, peer, why } => {
                self.links.remove(link);
                self.dtls_peers.remove(link);
                CoreLinkEvent::Closed {
                    link: *link,
                    peer: *peer,
                    why,
                }
            }
        };
        self.core.handle_input(now, CoreInput::Link(event));
    }

    /// Takes the users of `users/` as they are now: new ones are served at
    /// once; a removed one stops being signed for, its registration held
    /// for this node is withdrawn from the overlay (a removal value, RFC
    /// 7904 §3), and the SIP side drops its bindings.
    fn reload_users(&mut self, reply: oneshot::Sender<Result<String, String>>) {
        let now = now_ms();
        let security = self.core.engine_mut().security_mut();
        let before: BTreeSet<String> = security.user_names().map(str::to_string).collect();
        let (digests, names) = load_users(&self.dir, security);
        if let Some(users) = &self.relay_users {
            if let Ok(mut users) = users.write() {
                *users = crate::relay::keys_of(&digests);
            }
        }
        let added: Vec<String> = names.difference(&before).cloned().collect();
        let removed: Vec<String> = before.difference(&names).cloned().collect();
        let list = |v: &[String]| v.join(", ");
        let mut served: Vec<&String> = digests.keys().collect();
        served.sort();
        let mut summary = format!(
            "SIP users ({}): {}",
            served.len(),
            served.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
        if !added.is_empty() {
            summary.push_str(&format!("; added {}", list(&added)));
        }
        if !removed.is_empty() {
            summary.push_str(&format!("; removed {} (registrations withdrawn)", list(&removed)));
        }
        tracing::info!("accounts reloaded: {summary}");
        let token = self.token();
        let wait = ReloadWait {
            summary,
            digests,
            removed: removed.clone(),
            reply,
        };
        self.reloads.insert(token, wait);
        let accounts = CoreInput::Accounts { added, removed, token };
        self.core.handle_input(now, accounts);
    }

    /// Tells the SIP side the users it serves now, then answers.
    fn reload_done(&mut self, wait: ReloadWait, failures: Vec<String>) {
        let ReloadWait {
            mut summary,
            digests,
            removed,
            reply,
        } = wait;
        for name in &removed {
            self.core.engine_mut().security_mut().remove_user(name);
        }
        if !failures.is_empty() {
            // An added user's certificate is stored again with the next
            // refresh; a removal is not, and the old values live out
            // their lifetimes: say so rather than claim success.
            let why = format!(
                "{summary}; but the overlay did not take {} of the stores ({})",
                failures.len(),
                failures.join("; ")
            );
            tracing::warn!("accounts reloaded: {why}");
            if !removed.is_empty() {
                let _ = reply.send(Err(format!(
                    "{why}: a removed user's registration and certificate stay in the overlay until they expire"
                )));
                return self.tell_sip(digests, None);
            }
            summary = why;
        }
        self.tell_sip(digests, Some((reply, summary)));
    }

    /// Tells the SIP side which users it serves now; then answers, if
    /// asked to.
    fn tell_sip(
        &mut self,
        digests: HashMap<String, sip::digest::Ha1>,
        answer: Option<(oneshot::Sender<Result<String, String>>, String)>,
    ) {
        match self.sip_control.clone() {
            Some(sip) => {
                tokio::spawn(async move {
                    let (tx, rx) = oneshot::channel();
                    let told = sip
                        .send(crate::sip_server::SipControl::Users {
                            users: digests,
                            reply: tx,
                        })
                        .await;
                    let applied = told.is_ok() && rx.await.is_ok();
                    if let Some((reply, summary)) = answer {
                        let _ = reply.send(if applied {
                            Ok(summary)
                        } else {
                            Err("the SIP side is not running".into())
                        });
                    }
                });
            }
            None => {
                if let Some((reply, summary)) = answer {
                    let _ = reply.send(Ok(summary));
                }
            }
        }
    }

    /// The answer to a request the driver made (the admin API's, the
    /// second-link checks' Pings).
    fn on_done(&mut self, request: RequestId, outcome: Result<Body, RequestFailure>, hops: u32, responder: NodeId) {
        match self.pending.remove(&request) {
            Some(AdminPending::Certificate(node, reply)) => {
                let _ = reply.send(self.fetched_certificate(node, outcome, hops));
            }
            Some(AdminPending::Probe(reply)) => {
                let _ = reply.send(probed_peer(outcome, hops, responder));
            }
            None => {}
        }
    }

    fn fetched_certificate(
        &self,
        node: NodeId,
        outcome: Result<Body, RequestFailure>,
        hops: u32,
    ) -> Result<FetchedCertificate, String> {
        match outcome {
            Ok(Body::FetchAns(ans)) => ans
                .kind_responses
                .into_iter()
                .flat_map(|k| k.values)
                .find_map(|v| match v.value {
                    StoredDataValue::Array(ArrayEntry {
                        value: DataValue { exists: true, value },
                        ..
                    }) => Some(value),
                    _ => None,
                })
                .ok_or_else(|| format!("no certificate stored for {}", node.to_hex()))
                .and_then(|der| {
                    let info = cert_info(&der, &self.tls.trust.overlay, self.tls.trust.node_id_length)
                        .map_err(|e| e.to_string())?;
                    if !info.node_ids.contains(&node) {
                        return Err(format!("the stored certificate does not carry {}", node.to_hex()));
                    }
                    Ok(FetchedCertificate {
                        node_id: node.to_hex(),
                        user: info.user,
                        certificate: reload_wire::hex(&der),
                        hops,
                    })
                }),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// §11.4: the peers the core picks (neighbours first) are cached for
    /// the next start. With none, the old cache stays.
    fn cache_peers(&self) {
        let chord = self.core.engine().topology();
        let order = chord
            .successors()
            .into_iter()
            .chain(chord.predecessors())
            .chain(chord.fingers());
        let peers = self.core.peers_to_cache(order);
        if !peers.is_empty() {
            self.dir.save_peers(&peers);
        }
    }

    /// Stored values by Kind name.
    fn stored_by_kind(&self) -> Vec<(String, usize)> {
        self.kind_names(self.core.engine().storage().count_by_kind())
    }

    /// Counts by Kind-ID, named as the configuration names the Kinds.
    fn kind_names(&self, counts: impl IntoIterator<Item = (KindId, usize)>) -> Vec<(String, usize)> {
        let kinds = &self.dir.config.kinds;
        counts
            .into_iter()
            .map(|(k, n)| {
                let name = kinds
                    .iter()
                    .find(|d| d.id == k)
                    .map(|d| d.name.clone())
                    .unwrap_or_else(|| format!("kind-{k}"));
                (name, n)
            })
            .collect()
    }

    fn render_metrics(&self) -> String {
        let chord = self.core.engine().topology();
        let stored = self.stored_by_kind();
        let gauges = Gauges {
            joined: self.core.engine().is_joined(),
            uptime_s: now_ms().saturating_sub(self.started) / 1000,
            links: self.core.links().len(),
            successors: chord.successors().len(),
            predecessors: chord.predecessors().len(),
            fingers: chord.fingers().len(),
            stored: &stored,
            stored_bytes: self.core.engine().storage().bytes_held(),
        };
        self.metrics.render(self.core.engine().stats(), gauges)
    }

    fn status(&self) -> Status {
        let chord = self.core.engine().topology();
        let stored = self.stored_by_kind().into_iter().collect();
        let stats = self.core.engine().stats();
        let stun = self.core.stun_servers();
        Status {
            node_id: self.me.to_hex(),
            role: if self.client { "client" } else { "peer" }.to_string(),
            overlay: self.dir.config.instance_name.clone(),
            user: self.dir.info.user.clone(),
            address: self.listen.to_string(),
            joined: self.core.engine().is_joined(),
            configuration_sequence: self.core.engine().config().configuration_sequence,
            uptime_s: now_ms().saturating_sub(self.started) / 1000,
            successors: chord.successors().iter().map(NodeId::to_hex).collect(),
            predecessors: chord.predecessors().iter().map(NodeId::to_hex).collect(),
            fingers: chord.fingers().iter().map(NodeId::to_hex).collect(),
            links: self.core.engine().links().map(NodeId::to_hex).collect(),
            links_over_dtls: {
                let mut peers: Vec<String> = self.dtls_peers.values().map(NodeId::to_hex).collect();
                peers.sort_unstable();
                peers.dedup();
                peers
            },
            stored,
            messages_sent: stats.messages_sent,
            messages_forwarded: stats.forwarded,
            messages_delivered: stats.delivered,
            malformed: stats.malformed,
            errors_sent: stats.errors_sent,
            sip: None,
            nat_mapping: stun
                .map_or("unknown", |s| s.mapping_behaviour(self.listen).label())
                .to_string(),
            reflexive: stun
                .into_iter()
                .flat_map(|s| s.mappings())
                .map(|m| ReflexiveAddress {
                    peer: m.peer.to_hex(),
                    server: m.server.to_string(),
                    address: m.reflexive.to_string(),
                })
                .collect(),
            relays: self
                .core
                .relays_found()
                .0
                .iter()
                .map(|a| match a {
                    IpAddressPort::Ip(address) => address.to_string(),
                    other => format!("{other:?}"),
                })
                .collect(),
        }
    }
}

fn probed_peer(outcome: Result<Body, RequestFailure>, hops: u32, responder: NodeId) -> Result<ProbedPeer, String> {
    let ans = match outcome {
        Ok(Body::ProbeAns(ans)) => ans,
        Ok(other) => return Err(format!("unexpected answer {other:?}")),
        Err(e) => return Err(format!("{e:?}")),
    };
    let mut peer = ProbedPeer {
        node_id: responder.to_hex(),
        uptime_s: 0,
        resources: 0,
        responsible_ppb: 0,
        hops,
    };
    for item in ans.probe_info {
        match item {
            ProbeInformation::ResponsibleSet(v) => peer.responsible_ppb = v,
            ProbeInformation::NumResources(v) => peer.resources = v,
            ProbeInformation::Uptime(v) => peer.uptime_s = v,
            ProbeInformation::Unknown { .. } => {}
        }
    }
    Ok(peer)
}

/// Reads multicast bootstrap datagrams from the group socket (`group`) or
/// the unicast one and hands the well-formed ones to the engine task.
async fn discovery_listener(sockets: Arc<crate::discovery::Sockets>, group: bool, tx: mpsc::Sender<Input>) {
    let socket = if group { &sockets.group } else { &sockets.unicast };
    let mut buf = [0u8; crate::discovery::MAX_DATAGRAM + 1];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("multicast bootstrap socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match crate::discovery::Datagram::parse(&buf[..n]) {
            Ok(d) => {
                if tx.send(Input::Discovery(d, from)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!("ignored a datagram from {from} on the bootstrap socket: {e}"),
        }
    }
}

/// Inbound links at once (handshaking or up).
const MAX_INBOUND_LINKS: usize = 1024;
/// TLS handshakes under way at once, and from one address (or IPv6 /64):
/// they need no certificate yet.
const MAX_HANDSHAKES: usize = 256;
const MAX_HANDSHAKES_PER_SOURCE: usize = 16;

/// Failed replica Stores logged per minute at most.
static REPLICA_PUSHES_FAILED: std::sync::LazyLock<crate::log_budget::LogLimiter> =
    std::sync::LazyLock::new(|| crate::log_budget::LogLimiter::new(10, 60_000, "failed replica Stores"));

/// Refused links logged per minute at most: anyone who can reach the
/// listener can cause them.
static REFUSED_LINKS: std::sync::LazyLock<crate::log_budget::LogLimiter> =
    std::sync::LazyLock::new(|| crate::log_budget::LogLimiter::new(20, 60_000, "refused links"));

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<LinkTls>,
    ctx: Arc<DecodeContext>,
    me: NodeId,
    tx: mpsc::Sender<Input>,
) {
    let mut next: u64 = 1 << 62;
    let handshakes = crate::source_caps::ConnectionCaps::new(MAX_HANDSHAKES, MAX_HANDSHAKES_PER_SOURCE);
    let linked = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_LINKS));
    loop {
        let (tcp, remote) = crate::source_caps::accept(&listener).await;
        // Bounded like every listener (issue 36 §12). Handshakes need no
        // certificate yet, so they get their own small share, per address
        // too; an authenticated link only counts against the total.
        let handshake = match (handshakes.admit(remote.ip()), linked.clone().try_acquire_owned()) {
            (Ok(handshake), Ok(link_place)) => (handshake, link_place),
            _ => {
                if REFUSED_LINKS.allow(now_ms()) {
                    tracing::warn!("refused link from {remote}: too many handshakes or links open");
                }
                let _ = tx.try_send(Input::InboundLinkFailed);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let link = next;
        next += 1;
        let (tls, tx, ctx) = (tls.clone(), tx.clone(), ctx.clone());
        tokio::spawn(async move {
            let (handshake, _link_place) = handshake;
            let accepted = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let ids = tls.peer_node_ids(stream.get_ref().1.peer_certificates());
                    match ids.first() {
                        Some(peer) => Ok((stream, *peer)),
                        None => Err("no Node-ID in its certificate".to_string()),
                    }
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("handshake timed out".to_string()),
            };
            let (stream, peer) = match accepted {
                Ok(linked) => linked,
                Err(why) => {
                    if REFUSED_LINKS.allow(now_ms()) {
                        tracing::warn!("refused link from {remote}: {why}");
                    }
                    let _ = tx.send(Input::InboundLinkFailed).await;
                    return;
                }
            };
            if peer == me {
                if REFUSED_LINKS.allow(now_ms()) {
                    tracing::warn!(
                        "refused link from {remote}: it presents this peer's own Node-ID {}: another process uses \
                         this node's identity (a copied node directory?); each machine must enroll its own",
                        me.to_hex()
                    );
                }
                return;
            }
            // Authenticated: no longer a handshake.
            drop(handshake);
            let ends = LinkEnds {
                peer,
                dialled: None,
                remote,
            };
            serve_link(stream, link, ends, ctx, tx).await;
        });
    }
}

/// Who is at each end of an authenticated link and how it was made.
struct LinkEnds {
    peer: NodeId,
    /// The address this end dialled; `None` for a link the peer dialled.
    dialled: Option<SocketAddr>,
    remote: SocketAddr,
}

/// Hands an authenticated link to the engine task, then runs it.
async fn serve_link<S>(stream: S, link: u64, ends: LinkEnds, ctx: Arc<DecodeContext>, engine: mpsc::Sender<Input>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
    let peer = ends.peer;
    let up = Input::LinkUp {
        peer,
        link,
        tx: LinkSender::Tls(out_tx),
        dialled: ends.dialled,
        remote: ends.remote,
    };
    if engine.send(up).await.is_ok() {
        run_link(link, peer, stream, ctx, out_rx, engine).await;
    }
}

#[cfg(test)]
mod clock_tests {
    use super::now_ms;
    use std::time::SystemTime;

    /// The engines' clock starts at the wall clock and never goes back.
    #[test]
    fn the_engine_clock_starts_at_the_wall_clock_and_never_goes_back() {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let first = now_ms();
        assert!(first.abs_diff(wall) < 5_000, "{first} vs {wall}");
        let mut last = first;
        for _ in 0..1_000 {
            let next = now_ms();
            assert!(next >= last);
            last = next;
        }
    }
}
