//! The SIP side of a peer (`peer --sip ADDR`): sockets in front of the
//! sans-IO registrar and proxy of the `sip` crate.
//!
//! - Phones use UDP and TCP on ADDR (RFC 3261 §18). A registration that
//!   changes is stored in the overlay by the engine task (RFC 7904 §3)
//!   before the phone gets its 200 OK.
//! - Other peers reach this peer's SIP over TLS on a second listener,
//!   whose address AppAttach hands out (RFC 7904 §4.2, application 5061),
//!   each end presenting its node certificate (decision 0027). Requests
//!   arriving there are for the phones attached here.
//! - TCP and TLS connections, accepted or opened, are kept by transport
//!   and remote address and reused for every later message to that
//!   address over that transport: a TLS connection to a peer never
//!   carries a phone's messages, nor a phone's TCP connection a peer's.

use crate::link::LinkTls;
use crate::log_budget::LogBudget;
use crate::peer::{now_ms, Input};
use crate::sip_report::{quoted, CallBook, ContactStatus, SipMetrics, SipStatus, SipUserStatus};
use crate::sip_tcp::{accept_tcp, open_connection, OpenFailure, Security, TlsTo};
use peer_core::sip_service::{SipEvent, SipInput as ServiceInput, SipOutput, SipService};
use peer_core::sip_usage::{Located, PublishError};
use reload_wire::NodeId;
use sip::message::ParseError;
use sip::proxy::{Observation, Proxy, Side};
use sip::registrar::{Flow, Registrar, Transport};
use sip::server_location::{Answer, Query};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

/// What the SIP side asks of the engine task.
pub enum SipOverlayRequest {
    /// Store (or, with lifetime 0, remove) the SIP-REGISTRATION of
    /// `resource_name`, signed as that user (RFC 7904 §3).
    Publish {
        resource_name: String,
        lifetime_s: u32,
        reply: oneshot::Sender<Result<(), PublishError>>,
    },
    /// Where the phones of `resource_name` are (RFC 7904 §4.2): Fetch the
    /// registration, check it, AppAttach to the peers it names.
    Locate {
        resource_name: String,
        reply: oneshot::Sender<Located>,
    },
    /// Where these peers' SIP listens (the overlay's proxy peers, decision
    /// 0036): AppAttach to each; those that answered, in this order.
    LocatePeers {
        peers: Vec<NodeId>,
        reply: oneshot::Sender<Located>,
    },
    /// A SIP address that could not be reached: whatever peer's AppAttach
    /// named it is asked again on the next call, rather than the address
    /// being reused until its answer ages out (a peer restarted on a new
    /// port would otherwise be unreachable for that long).
    Unreachable { address: SocketAddr },
}

/// What the engine task tells the SIP side.
pub enum SipControl {
    /// Serve exactly these users from now on (accounts added or removed
    /// while the peer runs); answered once in effect.
    Users {
        users: HashMap<String, sip::digest::Ha1>,
        reply: oneshot::Sender<()>,
    },
    /// What `/status` shows of the SIP side.
    Status(oneshot::Sender<SipStatus>),
    /// The proxy peers of configuration `sequence` from now on (decision
    /// 0036), unless a later configuration's came first.
    ProxyPeers {
        sequence: u16,
        proxy_peers: crate::config_doc::ProxyPeers,
    },
}

/// Failed authentications logged per minute at most; the rest are
/// counted in one line (a password-guessing flood must not flood the log).
const AUTH_FAILURE_LINES_PER_MINUTE: u32 = 20;

/// Most bytes buffered for one TCP connection before it is dropped.
pub(crate) const MAX_TCP_BUFFER: usize = 2 * sip::message::MAX_MESSAGE_SIZE;
/// Messages queued for one TCP connection before more are dropped.
pub(crate) const TCP_QUEUE: usize = 1024;
/// How long opening a TCP connection to a peer or phone may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) enum SipInput {
    Message {
        bytes: Vec<u8>,
        flow: Flow,
        side: Side,
        /// When its connection's reader had it whole.
        read_at: std::time::Instant,
    },
    Published {
        token: u64,
        result: Result<(), PublishError>,
    },
    Opened {
        flow: Flow,
        tx: mpsc::Sender<Vec<u8>>,
    },
    Closed {
        tx: mpsc::Sender<Vec<u8>>,
    },
    Located {
        token: u64,
        located: Located,
    },
    FlowFailed {
        flow: Flow,
    },
    Resolved {
        token: u64,
        query: Query,
        answer: Option<Answer>,
    },
}

/// The registrar and proxy the SIP side starts with.
pub(crate) struct SipSetup {
    pub registrar: Registrar,
    /// Varies branches, tags and the shedders' draws per run.
    pub seed: u64,
    /// The secret of the dialog proofs in Record-Routes.
    pub dialog_secret: [u8; 32],
    /// What the peer does for other SIP domains (decision 0034).
    pub interworking: sip::proxy::Interworking,
    /// How it was started for interworking, and the configuration's proxy
    /// peers (decision 0036).
    pub role: peer_core::sip_service::InterworkingRole,
    pub proxy_peers: crate::config_doc::ProxyPeers,
    /// The DNS it finds their servers with; none: requests out get 503.
    pub dns: Option<crate::dns::Dns>,
    /// TLS to other domains' servers (decision 0035).
    pub domain_tls: tokio_rustls::TlsConnector,
    /// How often phones behind NATs get a keepalive; `None`: never.
    pub nat_keepalive_ms: Option<u64>,
}

/// DNS lookups under way at once; past it a request for another domain
/// is answered as if the DNS had failed (503 with Retry-After).
const MAX_DNS_LOOKUPS: usize = 256;

/// What the UDP socket asks the kernel to buffer. A burst of calls brings
/// hundreds of datagrams at once; the Linux default (208 KB) drops some of
/// them while the peer signs and verifies, and each drop costs a 500 ms
/// retransmission. The kernel caps the request at `net.core.rmem_max`.
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// `only_v6`: an IPv6 socket of a dual-stack peer takes IPv6 only, so
/// that IPv4 comes in on the IPv4 socket (never as `::ffff:` addresses)
/// and both may share a port on wildcard addresses.
fn udp_socket(addr: SocketAddr, only_v6: bool) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && only_v6 {
        socket.set_only_v6(true)?;
    }
    // Best effort: a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let udp = UdpSocket::from_std(socket.into())?;
    // Without kernel stamps no request's queue age is known, and none is
    // shed for it (the transaction budgets still hold).
    if let Err(e) = crate::udp_timestamps::enable(&udp) {
        tracing::warn!("sip: no receive timestamps on UDP ({e}): load is shed by transaction counts only");
    }
    Ok(udp)
}

/// The SIP sockets, bound; [`serve`] runs them.
pub struct SipSockets {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    /// A dual-stack peer's phones' UDP and TCP in the other IP family.
    other_family: Option<(Arc<UdpSocket>, TcpListener)>,
    overlay: TcpListener,
    /// Phones' TLS, with the overlay domain's certificate.
    tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
}

impl SipSockets {
    /// Phones' UDP and TCP on `addr`, and on `other_family` too for a
    /// dual-stack peer; other peers' TCP on `peers`, or on `addr`'s IP
    /// with any free port; phones' TLS on `tls`'s address. A failure
    /// names the address it was for.
    pub async fn bind(
        addr: SocketAddr,
        other_family: Option<SocketAddr>,
        peers: Option<SocketAddr>,
        tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    ) -> Result<Self, (SocketAddr, std::io::Error)> {
        let dual = other_family.is_some();
        let phones = |addr: SocketAddr| -> std::io::Result<(UdpSocket, TcpListener)> {
            let udp = udp_socket(addr, dual)?;
            // TCP on the port UDP got, so `--sip 127.0.0.1:0` works too.
            let tcp = tcp_listener(udp.local_addr()?, dual)?;
            Ok((udp, tcp))
        };
        let (udp, tcp) = phones(addr).map_err(|e| (addr, e))?;
        let other_family = match other_family {
            Some(other) => {
                let (udp, tcp) = phones(other).map_err(|e| (other, e))?;
                Some((Arc::new(udp), tcp))
            }
            None => None,
        };
        let peers = peers.unwrap_or(SocketAddr::new(addr.ip(), 0));
        let overlay = TcpListener::bind(peers).await.map_err(|e| (peers, e))?;
        let tls = match tls {
            Some((at, config)) => Some((TcpListener::bind(at).await.map_err(|e| (at, e))?, config)),
            None => None,
        };
        Ok(SipSockets {
            udp: Arc::new(udp),
            tcp,
            other_family,
            overlay,
            tls,
        })
    }

    /// Where phones reach this peer over TLS, if they can.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Where phones reach this peer.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Where phones reach this dual-stack peer in the other IP family.
    pub fn other_family_addr(&self) -> Option<SocketAddr> {
        self.other_family.as_ref().and_then(|(udp, _)| udp.local_addr().ok())
    }

    /// Where other peers reach this peer's SIP (AppAttach answers this).
    pub fn overlay_addr(&self) -> std::io::Result<SocketAddr> {
        self.overlay.local_addr()
    }
}

/// A TCP or TLS connection's queue of messages to write.
struct Connection {
    tx: mpsc::Sender<Vec<u8>>,
    /// The peer it was opened to (it presented this Node-ID), when a
    /// lookup named the address.
    peer: Option<NodeId>,
}

/// The sockets, connections and reporting around the sans-IO
/// [`SipService`].
struct Core {
    service: SipService,
    metrics: SipMetrics,
    calls: CallBook,
    auth_failures_logged: LogBudget,
    /// Refusals already logged, and when the next log line may come.
    shed_logged: (u64, u64),
    udp: Arc<UdpSocket>,
    /// A dual-stack peer's UDP socket in the other IP family, and
    /// whether that family is IPv4.
    udp_other_family: Option<(Arc<UdpSocket>, bool)>,
    /// The configuration whose proxy peers apply, once one was told.
    proxy_peers_sequence: Option<u16>,
    connections: HashMap<Flow, Connection>,
    /// The node's certificate and the overlay's trust, for TLS to peers.
    tls: Arc<LinkTls>,
    events: mpsc::Sender<SipInput>,
    overlay: mpsc::Sender<Input>,
    dns: Option<crate::dns::Dns>,
    dns_lookups: Arc<tokio::sync::Semaphore>,
    domain_tls: tokio_rustls::TlsConnector,
}

/// Serves SIP until the engine task goes away.
pub(crate) async fn serve(
    sockets: SipSockets,
    tls: Arc<LinkTls>,
    setup: SipSetup,
    overlay: mpsc::Sender<Input>,
    mut control: mpsc::Receiver<SipControl>,
    metrics: SipMetrics,
) {
    let SipSetup {
        registrar,
        seed,
        dialog_secret,
        interworking,
        role,
        proxy_peers,
        dns,
        domain_tls,
        nat_keepalive_ms,
    } = setup;
    let (events, mut rx) = mpsc::channel::<SipInput>(4096);
    let interfaces = sip::proxy::Interfaces {
        phones: sockets.udp.local_addr().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        overlay: sockets
            .overlay
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        phones_tls: sockets.tls_addr(),
        phones_other_family: sockets.other_family_addr(),
    };
    tokio::spawn(accept_tcp(sockets.tcp, Side::Phones, Security::Plain, events.clone()));
    tokio::spawn(accept_tcp(
        sockets.overlay,
        Side::Overlay,
        Security::Peers(tls.clone()),
        events.clone(),
    ));
    if let Some((listener, config)) = sockets.tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(accept_tcp(
            listener,
            Side::Phones,
            Security::Domain(acceptor),
            events.clone(),
        ));
    }
    let udp = sockets.udp;
    let sockets_other_family_is_ipv4 = interfaces.phones_other_family.map(|a| a.is_ipv4());
    let udp_other_family = match sockets.other_family {
        Some((udp, tcp)) => {
            tokio::spawn(accept_tcp(tcp, Side::Phones, Security::Plain, events.clone()));
            Some(udp)
        }
        None => None,
    };
    let proxy = Proxy::new(interfaces, seed)
        .with_dialog_secret(dialog_secret)
        .with_interworking(interworking);
    let mut core = Core {
        service: SipService::new(registrar, proxy, seed)
            .with_role(role)
            .with_nat_keepalive(nat_keepalive_ms),
        metrics,
        calls: CallBook::default(),
        auth_failures_logged: LogBudget::new(AUTH_FAILURE_LINES_PER_MINUTE, 60_000),
        shed_logged: (0, 0),
        udp: udp.clone(),
        udp_other_family: udp_other_family.clone().zip(sockets_other_family_is_ipv4),
        proxy_peers_sequence: None,
        connections: HashMap::new(),
        tls,
        events,
        overlay,
        dns,
        dns_lookups: Arc::new(tokio::sync::Semaphore::new(MAX_DNS_LOOKUPS)),
        domain_tls,
    };
    core.service.set_proxy_peers(&proxy_peers.peers, &proxy_peers.outsiders);
    let mut buf = vec![0u8; sip::message::MAX_MESSAGE_SIZE + 1];
    let mut other_buf = vec![0u8; if udp_other_family.is_some() { buf.len() } else { 0 }];
    let mut next_report = now_ms();
    loop {
        let now = now_ms();
        let wait = core
            .service
            .poll_timeout()
            .map_or(1000, |d| d.saturating_sub(now).min(1000));
        tokio::select! {
            received = crate::udp_timestamps::recv_from(&udp, &mut buf) => {
                if let Ok((n, from, stamp)) = received {
                    core.datagram(&buf[..n], from, stamp);
                }
            }
            received = recv_other_family(udp_other_family.as_deref(), &mut other_buf) => {
                if let Ok((n, from, stamp)) = received {
                    core.datagram(&other_buf[..n], from, stamp);
                }
            }
            Some(input) = rx.recv() => core.input(input),
            Some(request) = control.recv() => core.control(request),
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
        let now = now_ms();
        if core.service.poll_timeout().is_some_and(|t| t <= now) {
            core.service.handle_timeout(now);
        }
        core.carry_out().await;
        if now >= next_report {
            core.calls.expire(now);
            core.log_shedding(now);
            let held_back = core.auth_failures_logged.flush(now);
            if held_back > 0 {
                tracing::warn!("sip: {held_back} more failed authentications in the last minute were not logged");
            }
            core.update_gauges();
            next_report = now + 1000;
        }
        if core.overlay.is_closed() {
            return;
        }
    }
}

/// A TCP listener on `addr` (`only_v6` as for [`udp_socket`]).
fn tcp_listener(addr: SocketAddr, only_v6: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && only_v6 {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A datagram on a dual-stack peer's socket of the other IP family; on
/// a peer with one socket, never.
async fn recv_other_family(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<std::time::SystemTime>)> {
    match socket {
        Some(socket) => crate::udp_timestamps::recv_from(socket, buf).await,
        None => std::future::pending().await,
    }
}

/// Overload lines are logged at most this often.
const SHED_LOG_INTERVAL_MS: u64 = 10_000;

impl Core {
    /// A datagram from a phone, with when the kernel received it.
    fn datagram(&mut self, bytes: &[u8], from: SocketAddr, stamp: Option<std::time::SystemTime>) {
        let flow = Flow {
            transport: Transport::Udp,
            remote: from,
        };
        let waited_ms = crate::udp_timestamps::age_ms(stamp, std::time::SystemTime::now());
        let message = ServiceInput::Message {
            bytes,
            flow,
            side: Side::Phones,
            waited_ms,
        };
        self.service.handle_input(now_ms(), message);
    }

    /// The UDP socket that reaches `remote`: the one of its IP family.
    fn udp_toward(&self, remote: SocketAddr) -> &UdpSocket {
        match &self.udp_other_family {
            Some((other, ipv4)) if *ipv4 == remote.is_ipv4() => other,
            _ => &self.udp,
        }
    }

    /// One line now and then while load is being shed.
    fn log_shedding(&mut self, now: u64) {
        let (logged, next) = self.shed_logged;
        let refused = self.service.shed();
        if refused > logged && now >= next {
            tracing::warn!(
                "sip: overloaded: refused {} new requests with 503 (Retry-After {} s) since the last line; they \
                 waited over {} ms to be read ({} ms from other peers)",
                refused - logged,
                sip::proxy::OVERLOAD_RETRY_AFTER_S,
                sip::overload::QUEUE_AGE_BUDGET_MS,
                sip::overload::PEERS_QUEUE_AGE_BUDGET_MS
            );
            self.shed_logged = (refused, now + SHED_LOG_INTERVAL_MS);
        }
    }

    fn control(&mut self, request: SipControl) {
        match request {
            SipControl::Users { users, reply } => {
                let removed = self.service.set_users(users);
                if !removed.is_empty() {
                    tracing::info!("sip: no longer serving {}; their bindings are gone", removed.join(", "));
                }
                let _ = reply.send(());
            }
            SipControl::ProxyPeers { sequence, proxy_peers } => {
                let newer = self
                    .proxy_peers_sequence
                    .is_none_or(|applied| overlay::configuration::compare_sequences(sequence, applied).is_gt());
                if newer {
                    self.proxy_peers_sequence = Some(sequence);
                    self.service.set_proxy_peers(&proxy_peers.peers, &proxy_peers.outsiders);
                }
            }
            SipControl::Status(reply) => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn status(&self) -> SipStatus {
        let now = now_ms();
        let registrar = self.service.registrar();
        let users = registrar
            .users()
            .into_iter()
            .map(|user| SipUserStatus {
                user: user.to_string(),
                contacts: registrar
                    .contacts(user, now)
                    .into_iter()
                    .map(|b| ContactStatus {
                        contact: b.contact.uri.to_string(),
                        flow: format!("{} {}", b.flow.transport.name(), b.flow.remote),
                        expires_s: b.remaining_s(now),
                    })
                    .collect(),
            })
            .collect();
        SipStatus {
            phones: self.service.proxy().interfaces().phones.to_string(),
            peers: self.service.proxy().interfaces().overlay.to_string(),
            users,
            calls: self.calls.status(now),
            transactions: self.service.transactions(),
        }
    }

    fn update_gauges(&self) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let registrar = self.service.registrar();
        self.metrics.registrations.set(gauge(registrar.binding_count()));
        self.metrics.users.set(gauge(registrar.users().len()));
        self.metrics.transactions.set(gauge(self.service.transactions()));
        self.metrics
            .finished_transaction_bytes
            .set(gauge(self.service.proxy().finished_bytes()));
        self.metrics.calls_in_progress.set(gauge(self.calls.len()));
    }

    /// Log lines and metrics for what the SIP side saw.
    fn report(&mut self, event: SipEvent) {
        let now = now_ms();
        match event {
            SipEvent::Request { method } => self.metrics.request(method),
            SipEvent::Malformed { error, flow } => {
                self.metrics.malformed();
                log_malformed(&error, flow);
            }
            SipEvent::Shed => self.metrics.shed(),
            SipEvent::AuthFailed { user, remote, what } => self.auth_failed(now, &user, remote, what),
            SipEvent::Observed(seen) => self.observe(now, seen),
            SipEvent::Registered {
                user,
                contacts,
                lifetime_s,
                flow,
                changed,
            } => {
                if !changed {
                    tracing::debug!("sip: {user} refreshed {contacts} contact(s) for up to {lifetime_s} s");
                } else if contacts == 0 {
                    tracing::info!("sip: {user} unregistered: no phone registered");
                } else {
                    tracing::info!(
                        "sip: {user} registered {contacts} contact(s) for up to {lifetime_s} s, from {} {}",
                        flow.transport.name(),
                        flow.remote
                    );
                }
            }
            SipEvent::NotStored { user, why } => tracing::warn!("sip: registration of {user} not stored: {why}"),
            SipEvent::Expired { user } => tracing::info!("sip: {user}'s registration expired: no phone registered"),
        }
    }

    fn observe(&mut self, now: u64, seen: Observation) {
        match seen {
            Observation::CallStarted { call_id, from, to } => self.calls.started(now, call_id, from, to),
            Observation::CallProgress { setup_ms, .. } => self.metrics.call_setup(setup_ms),
            Observation::CallAnswered { call_id, code } => {
                let ok = (200..300).contains(&code);
                self.metrics.call_finished(ok);
                let (from, to) = self.calls.answered(&call_id, ok).unwrap_or_default();
                let (call_id, from, to) = (quoted(&call_id), quoted(&from), quoted(&to));
                if ok {
                    tracing::info!("sip: call {call_id} from {from} to {to} answered");
                } else {
                    tracing::info!("sip: call {call_id} from {from} to {to} failed: {code}");
                }
            }
            Observation::CallEnded { call_id } => {
                if let Some(ms) = self.calls.ended(now, &call_id) {
                    tracing::info!("sip: call {} ended after {} s", quoted(&call_id), ms / 1000);
                }
            }
            Observation::AuthFailed { user, remote } => self.auth_failed(now, &user, remote, "proxy"),
        }
    }

    /// A failed authentication: counted always, logged within the budget.
    fn auth_failed(&mut self, now: u64, user: &str, remote: SocketAddr, what: &str) {
        self.metrics.auth_failed();
        let (log, held_back) = self.auth_failures_logged.take(now);
        if held_back > 0 {
            tracing::warn!("sip: {held_back} more failed authentications in the last minute were not logged");
        }
        if log {
            tracing::warn!("sip: wrong credentials for {} from {remote} ({what})", quoted(user));
        }
    }

    fn input(&mut self, input: SipInput) {
        let now = now_ms();
        let input = match input {
            SipInput::Message {
                bytes,
                flow,
                side,
                read_at,
            } => {
                let waited_ms = Some(read_at.elapsed().as_millis() as u64);
                let message = ServiceInput::Message {
                    bytes: &bytes,
                    flow,
                    side,
                    waited_ms,
                };
                return self.service.handle_input(now, message);
            }
            SipInput::Published { token, result } => ServiceInput::Published { token, result },
            SipInput::Opened { flow, tx } => {
                self.connections.insert(flow, Connection { tx, peer: None });
                return;
            }
            SipInput::Closed { tx } => {
                self.connections.retain(|_, c| !c.tx.same_channel(&tx));
                return;
            }
            SipInput::Located { token, located } => ServiceInput::Located { token, located },
            SipInput::Resolved { token, query, answer } => {
                let input = ServiceInput::Resolved {
                    token,
                    query: &query,
                    answer,
                };
                return self.service.handle_input(now, input);
            }
            SipInput::FlowFailed { flow } => {
                tracing::info!("sip: cannot reach {} over {}", flow.remote, flow.transport.name());
                ServiceInput::FlowFailed { flow }
            }
        };
        self.service.handle_input(now, input);
    }

    /// Carries out what the service asks for.
    async fn carry_out(&mut self) {
        while let Some(output) = self.service.poll_output() {
            match output {
                SipOutput::Send {
                    flow,
                    bytes,
                    peer,
                    domain,
                } => self.send(flow, bytes, peer, domain).await,
                SipOutput::Publish {
                    resource_name,
                    lifetime_s,
                    token,
                } => {
                    let (reply, done) = oneshot::channel();
                    let publish = SipOverlayRequest::Publish {
                        resource_name,
                        lifetime_s,
                        reply,
                    };
                    let sent = self.overlay.send(Input::Sip(publish)).await.is_ok();
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let result = match sent {
                            true => done.await.unwrap_or(Err(PublishError::ShuttingDown)),
                            false => Err(PublishError::ShuttingDown),
                        };
                        let _ = events.send(SipInput::Published { token, result }).await;
                    });
                }
                SipOutput::Locate { resource_name, token } => {
                    let (reply, answer) = oneshot::channel();
                    self.locate(SipOverlayRequest::Locate { resource_name, reply }, answer, token)
                        .await;
                }
                SipOutput::LocatePeers { peers, token } => {
                    let (reply, answer) = oneshot::channel();
                    self.locate(SipOverlayRequest::LocatePeers { peers, reply }, answer, token)
                        .await;
                }
                SipOutput::Resolve { query, token } => self.resolve(query, token),
                SipOutput::Alias { advertised, connection } => self.alias(advertised, connection),
                SipOutput::Unreachable { address } => {
                    let forget = SipOverlayRequest::Unreachable { address };
                    let _ = self.overlay.send(Input::Sip(forget)).await;
                }
                SipOutput::Event(event) => self.report(event),
            }
        }
    }

    /// Messages for `advertised` go over `connection` while it is open:
    /// when it closes, its every entry goes (`SipInput::Closed`). A
    /// connection of its own to that address stays.
    fn alias(&mut self, advertised: Flow, connection: Flow) {
        if self.connections.contains_key(&advertised) {
            return;
        }
        if let Some(open) = self.connections.get(&connection) {
            let alias = Connection {
                tx: open.tx.clone(),
                peer: open.peer,
            };
            self.connections.insert(advertised, alias);
        }
    }

    /// Asks the overlay side `request`; its answer comes back as
    /// [`SipInput::Located`] with `token`.
    async fn locate(&mut self, request: SipOverlayRequest, answer: oneshot::Receiver<Located>, token: u64) {
        let sent = self.overlay.send(Input::Sip(request)).await.is_ok();
        let events = self.events.clone();
        tokio::spawn(async move {
            let located = match sent {
                true => answer.await.ok(),
                false => None,
            };
            let located = located.unwrap_or_else(|| Located::Unreachable("the peer is shutting down".into()));
            let _ = events.send(SipInput::Located { token, located }).await;
        });
    }

    /// Asks the DNS in a task of its own; the answer comes back as
    /// [`SipInput::Resolved`]. Addresses of an IP family none of the
    /// phones' sockets has are left out: this peer could not send there.
    fn resolve(&mut self, query: Query, token: u64) {
        let events = self.events.clone();
        let permit = self.dns_lookups.clone().try_acquire_owned().ok();
        let dns = self.dns.clone().zip(permit);
        let families: Vec<bool> = std::iter::once(self.udp.local_addr().map_or(true, |a| a.is_ipv4()))
            .chain(self.udp_other_family.as_ref().map(|(_, ipv4)| *ipv4))
            .collect();
        tokio::spawn(async move {
            let answer = match dns {
                Some((dns, _permit)) => match dns.ask(&query).await {
                    Some(Answer::Address(ips)) => Some(Answer::Address(
                        ips.into_iter().filter(|ip| families.contains(&ip.is_ipv4())).collect(),
                    )),
                    other => other,
                },
                None => None,
            };
            let _ = events.send(SipInput::Resolved { token, query, answer }).await;
        });
    }

    /// Sends over UDP, or over the TCP or TLS connection to `flow.remote`;
    /// a TLS connection must present `expected` (decision 0027).
    async fn send(&mut self, flow: Flow, bytes: Vec<u8>, expected: Option<NodeId>, domain: Option<String>) {
        self.metrics.sent(&bytes);
        match flow.transport {
            Transport::Udp => {
                if let Err(e) = self.udp_toward(flow.remote).send_to(&bytes, flow.remote).await {
                    tracing::debug!("sip: cannot send to {}: {e}", flow.remote);
                }
            }
            Transport::Tcp | Transport::Tls => {
                // A connection opened for another peer than the one now
                // known at this address does not carry this message.
                let usable = self
                    .connections
                    .get(&flow)
                    .filter(|c| expected.is_none() || c.peer == expected);
                let bytes = match usable {
                    Some(c) => match c.tx.try_send(bytes) {
                        Ok(()) => return,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::warn!("sip: connection to {} is backed up; message dropped", flow.remote);
                            return;
                        }
                        Err(mpsc::error::TrySendError::Closed(bytes)) => {
                            self.connections.remove(&flow);
                            bytes
                        }
                    },
                    None => bytes,
                };
                self.connect(flow, expected, domain, bytes);
            }
        }
    }

    /// Opens a connection to `flow.remote` (RFC 3261 §18.1.1, §18.2.2):
    /// TLS as this node to another peer, TLS to a server of another
    /// `domain`, TCP to a phone or another domain; `first` is queued on it
    /// and messages sent meanwhile queue behind it.
    fn connect(&mut self, flow: Flow, peer: Option<NodeId>, domain: Option<String>, first: Vec<u8>) {
        let (tx, rx) = mpsc::channel(TCP_QUEUE);
        let _ = tx.try_send(first);
        self.connections.insert(flow, Connection { tx: tx.clone(), peer });
        let tls = match domain {
            Some(domain) => TlsTo::Domain {
                connector: self.domain_tls.clone(),
                domain,
            },
            None => TlsTo::Peer {
                link: self.tls.clone(),
                expected: peer,
            },
        };
        let events = self.events.clone();
        tokio::spawn(async move {
            let opened = open_connection(flow, tls, CONNECT_TIMEOUT, events.clone(), tx.clone(), rx).await;
            if let Err(failure) = opened {
                match failure {
                    OpenFailure::Unreachable(why) => tracing::debug!(
                        "sip: cannot connect to {} over {}: {why}",
                        flow.remote,
                        flow.transport.name()
                    ),
                    OpenFailure::WrongPeer(why) if WRONG_PEER.allow(now_ms()) => {
                        tracing::warn!("sip: refused the peer at {}: {why}", flow.remote)
                    }
                    OpenFailure::WrongServer(why) if WRONG_PEER.allow(now_ms()) => {
                        tracing::warn!("sip: refused the server at {}: {why}", flow.remote)
                    }
                    OpenFailure::WrongPeer(_) | OpenFailure::WrongServer(_) => {}
                }
                let _ = events.send(SipInput::Closed { tx }).await;
                let _ = events.send(SipInput::FlowFailed { flow }).await;
            }
        });
    }
}

/// Connections refused for presenting another Node-ID, or a certificate
/// for another domain, logged per minute.
static WRONG_PEER: std::sync::LazyLock<crate::log_budget::LogLimiter> = std::sync::LazyLock::new(|| {
    crate::log_budget::LogLimiter::new(10, 60_000, "connections to peers that presented another Node-ID")
});

/// Malformed messages logged per minute at most; the rest are counted in
/// one line.
static MALFORMED: std::sync::LazyLock<crate::log_budget::LogLimiter> =
    std::sync::LazyLock::new(|| crate::log_budget::LogLimiter::new(20, 60_000, "malformed SIP messages"));

/// A message that does not parse: the answer to send when it is a request
/// whose transaction can be told ([`sip::intake::refusal`]); logged either
/// way.
pub(crate) fn refuse_malformed(bytes: &[u8], error: &ParseError, flow: Flow) -> Option<Vec<u8>> {
    log_malformed(error, flow);
    sip::intake::refusal(bytes, error).map(|a| a.to_bytes())
}

fn log_malformed(error: &ParseError, flow: Flow) {
    if MALFORMED.allow(now_ms()) {
        tracing::info!(
            "sip: malformed message from {} over {}: {error}",
            flow.remote,
            flow.transport.name()
        );
    }
}
