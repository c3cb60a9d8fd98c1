//! `p2psip init`, `enrollment-server` and `enroll`: creating an overlay and
//! admitting nodes to it (RFC 6940 §11).

use anyhow::{bail, Context, Result};
use clap::Args;
use node::enrollment::{self, CaPin};
use node::enrollment_limits::EnrollmentLimits;
use node::overlay_dir::{InitOptions, OverlayDir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct InitArgs {
    /// Directory for the new overlay's CA, configuration and accounts.
    #[arg(long)]
    dir: PathBuf,
    /// Overlay name (instance-name), e.g. office.example.org.
    #[arg(long)]
    overlay: String,
    /// An enrollment account, NAME:PASSWORD; repeat for more.
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = parse_user)]
    users: Vec<(String, String)>,
    /// URL peers enroll at (the enrollment-server element).
    #[arg(long, default_value = "https://127.0.0.1:6443/enroll")]
    enrollment_url: String,
    /// A bootstrap-node of the configuration; repeat for more.
    #[arg(long = "bootstrap", value_name = "HOST:PORT", value_parser = host_port)]
    bootstrap: Vec<SocketAddr>,
    /// Multicast group and port peers on the LAN ask "who is in this
    /// overlay?" when no bootstrap node answers (our extension to
    /// RFC 6940 §11.4), e.g. 239.255.84.84:6084.
    #[arg(long, value_name = "GROUP:PORT", value_parser = parse_multicast)]
    multicast_bootstrap: Option<SocketAddr>,
    /// Host names or addresses the enrollment server's certificate names
    /// (default: the enrollment URL's host, localhost and 127.0.0.1).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Peers link by ICE over DTLS/UDP (RFC 6940 §6.5.1, §6.6.4), so
    /// that peers behind NATs link to each other; without it the
    /// configuration says no-ice and peers link over TLS/TCP only.
    #[arg(long)]
    ice: bool,
    /// In how many places each relay peer advertises its TURN server
    /// (RFC 6940 §9's turn-density: 1 to 20; more places, faster to find).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=20))]
    turn_density: u8,
}

fn parse_multicast(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not GROUP:PORT, e.g. 239.255.84.84:6084"))?;
    if !addr.ip().is_multicast() || addr.port() == 0 {
        return Err(format!(
            "{s:?} is not a multicast group with a port: use 224.0.0.0/4 or ff00::/8, e.g. 239.255.84.84:6084"
        ));
    }
    Ok(addr)
}

/// An address as HOST:PORT, where HOST is an IP address or a name
/// (`localhost:7084`); a name that resolves to both families gives its
/// IPv4 address, as most of a LAN still is.
pub fn host_port(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let wrong = || format!("{s:?} is not HOST:PORT, e.g. 127.0.0.1:6084, [::1]:6084 or localhost:6084");
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(wrong)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(wrong());
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{host:?} has no address"))
}

/// FIRST-LAST, two port numbers, FIRST not above LAST.
fn port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let wrong = || format!("{s:?} is not FIRST-LAST, two ports with FIRST <= LAST, e.g. 49152-49215");
    let (first, last) = s.split_once('-').ok_or_else(wrong)?;
    let (first, last): (u16, u16) = (
        first.trim().parse().map_err(|_| wrong())?,
        last.trim().parse().map_err(|_| wrong())?,
    );
    if first == 0 || first > last {
        return Err(wrong());
    }
    Ok(first..=last)
}

fn parse_user(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(format!("{s:?} is not NAME:PASSWORD")),
    }
}

pub fn init(args: InitArgs) -> Result<()> {
    let uri: http::Uri = args
        .enrollment_url
        .parse()
        .ok()
        .filter(|u: &http::Uri| u.scheme_str() == Some("https") && u.host().is_some())
        .with_context(|| {
            format!(
                "--enrollment-url {:?} must be an https:// URL (RFC 6940 §11.1)",
                args.enrollment_url
            )
        })?;
    let mut hosts = args.hosts.clone();
    if hosts.is_empty() {
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_string();
        hosts = vec![host, "localhost".into(), "127.0.0.1".into()];
        hosts.dedup();
    }
    let dir = OverlayDir::init(
        &args.dir,
        &InitOptions {
            overlay: args.overlay.clone(),
            users: args.users.clone(),
            enrollment_url: args.enrollment_url.clone(),
            bootstrap: args.bootstrap.clone(),
            multicast_bootstrap: args.multicast_bootstrap,
            server_hosts: hosts,
            ice: args.ice,
            turn_density: args.turn_density,
        },
    )?;
    let ca = dir.authority()?;
    let listen = format!(
        "{}:{}",
        uri.host().unwrap_or("127.0.0.1"),
        uri.port_u16().unwrap_or(443)
    );
    let base = format!("https://{}", uri.authority().map(|a| a.as_str()).unwrap_or_default());
    println!("Created overlay {} in {}", args.overlay, args.dir.display());
    println!("  CA certificate   {}", dir.file("ca.crt").display());
    println!("  CA fingerprint   {}", enrollment::fingerprint(&ca.cert_der));
    println!("  configuration    {}", dir.file("reload-config.xml").display());
    println!(
        "  accounts         {}",
        args.users
            .iter()
            .map(|(u, _)| u.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!("Next:");
    println!(
        "  p2psip enrollment-server --dir {} --listen {listen}",
        args.dir.display()
    );
    println!(
        "  p2psip enroll --server {base} --ca-fingerprint {} --user NAME --password PASSWORD --dir NODE_DIR",
        enrollment::fingerprint(&ca.cert_der)
    );
    println!("  p2psip peer --dir NODE_DIR --listen 127.0.0.1:6084");
    Ok(())
}

#[derive(Args)]
pub struct ServerArgs {
    /// The overlay directory `p2psip init` created.
    #[arg(long)]
    dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443", value_name = "HOST:PORT", value_parser = host_port)]
    listen: SocketAddr,
    /// Distinct keys (machines) one account may hold certificates for.
    #[arg(long, default_value_t = EnrollmentLimits::default().keys_per_account, value_name = "N")]
    max_keys_per_account: usize,
    /// Node-IDs one account may hold in all (Sybil resistance rests on this).
    #[arg(long, default_value_t = EnrollmentLimits::default().node_ids_per_account, value_name = "N")]
    max_node_ids_per_account: usize,
    /// Failed authentications one address may make before it must wait
    /// (it regains one every 12 s).
    #[arg(long, default_value_t = EnrollmentLimits::default().failures_per_address, value_name = "N")]
    failures_per_address: u32,
    /// Failed authentications for one account, from any address, before
    /// it must wait (it regains one every 12 s).
    #[arg(long, default_value_t = EnrollmentLimits::default().failures_per_account, value_name = "N")]
    failures_per_account: u32,
    /// Enrollment requests one address may make in a burst (it regains
    /// one a second); a provisioning host that enrolls many machines or
    /// users at once needs more.
    #[arg(long, default_value_t = EnrollmentLimits::default().requests_per_address, value_name = "N")]
    requests_per_address: u32,
}

pub fn enrollment_server(args: ServerArgs) -> Result<()> {
    OverlayDir::open(&args.dir)?;
    crate::init_logging();
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(
            "enrollment server for {} on https://{}",
            args.dir.display(),
            args.listen
        );
        let limits = EnrollmentLimits {
            keys_per_account: args.max_keys_per_account,
            node_ids_per_account: args.max_node_ids_per_account,
            failures_per_address: args.failures_per_address,
            failures_per_account: args.failures_per_account,
            requests_per_address: args.requests_per_address,
            ..EnrollmentLimits::default()
        };
        enrollment::serve(&args.dir, listener, limits, shutdown_signal()).await?;
        tracing::info!("enrollment server stopped");
        Ok(())
    })
}

#[derive(Args)]
pub struct EnrollArgs {
    /// Base URL of the configuration server, e.g. https://127.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// The overlay's CA certificate (PEM), to trust the server.
    #[arg(long, conflicts_with = "ca_fingerprint", required_unless_present = "ca_fingerprint")]
    ca_cert: Option<PathBuf>,
    /// SHA-256 fingerprint of the overlay's CA certificate (hex).
    #[arg(long)]
    ca_fingerprint: Option<String>,
    /// The enrollment account to enroll as (`init --user NAME:...`): a
    /// peer's operator account for a new node directory, or a SIP user to
    /// add to an enrolled one.
    #[arg(long)]
    user: String,
    /// The account's password. Other users of the machine can read a
    /// command line: prefer --password-file or $P2PSIP_PASSWORD.
    #[arg(long, conflicts_with = "password_file")]
    password: Option<String>,
    #[command(flatten)]
    password_source: crate::user_cmd::PasswordSource,
    /// Where to keep this node's key, certificate and configuration. If
    /// the node is enrolled already under another user, this user is added
    /// to it: the peer then registers that user's SIP phones.
    #[arg(long)]
    dir: PathBuf,
}

pub fn enroll(args: EnrollArgs) -> Result<()> {
    let pin = match (&args.ca_cert, &args.ca_fingerprint) {
        (Some(path), _) => {
            let pem =
                std::fs::read_to_string(path).with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
            CaPin::Certificate(node::pki::pem_to_der(&pem).with_context(|| format!("--ca-cert {}", path.display()))?)
        }
        (None, Some(f)) => CaPin::fingerprint(f)?,
        (None, None) => bail!("give --ca-cert FILE or --ca-fingerprint SHA256"),
    };
    let password = match args.password {
        Some(p) => p,
        None => args
            .password_source
            .read(&format!("{}'s enrollment password", args.user), false)?,
    };
    let done = runtime()?.block_on(enrollment::enroll(&args.server, pin, &args.user, &password, &args.dir))?;
    if done.added_user {
        println!(
            "Added user {} to the node in {}: its phones register there (digest user {:?}, realm {:?})",
            done.user,
            args.dir.display(),
            args.user,
            done.overlay
        );
        return crate::user_cmd::tell_peer(&args.dir);
    }
    println!(
        "Enrolled {} in overlay {} as Node-ID {}; credentials in {}",
        done.user,
        done.overlay,
        done.node_ids.iter().map(|n| n.to_hex()).collect::<Vec<_>>().join(", "),
        args.dir.display()
    );
    Ok(())
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[derive(Args)]
pub struct PeerArgs {
    /// The node directory `p2psip enroll` filled.
    #[arg(long)]
    dir: PathBuf,
    /// Address for overlay links (TLS over TCP).
    #[arg(long, default_value = "127.0.0.1:6084", value_name = "HOST:PORT", value_parser = host_port)]
    listen: SocketAddr,
    /// A peer to join through; repeat for more. Tried before the
    /// configuration's bootstrap nodes and the peers of the last run.
    #[arg(long = "bootstrap", value_name = "HOST:PORT", value_parser = host_port)]
    bootstrap: Vec<SocketAddr>,
    /// Serve the operations API (GET /status, /metrics, /ring) here.
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port)]
    admin: Option<SocketAddr>,
    /// A file whose first line is the bearer token the admin API asks for
    /// (or set P2PSIP_ADMIN_TOKEN); needed when --admin is not loopback.
    #[arg(long, value_name = "FILE", requires = "admin")]
    admin_token_file: Option<PathBuf>,
    /// Run as a client (RFC 6940 §4.2.1): use the overlay through the peer
    /// responsible for this node's Node-ID, neither routing nor storing
    /// for others. Needs a peer to reach (--bootstrap, the configuration's
    /// bootstrap nodes or multicast).
    #[arg(long)]
    client: bool,
    /// Run a relay (a TURN server, RFC 8656 over UDP) on this address,
    /// the one phones and peers reach it at: the node's SIP users
    /// allocate with their SIP user name and password (realm: the
    /// overlay's name), e.g. as their phones' TURN server for media.
    #[arg(long, value_name = "IP:PORT", value_parser = host_port)]
    relay: Option<SocketAddr>,
    /// The ports the relay relays on (one per allocation), on --relay's
    /// address.
    #[arg(long, value_name = "FIRST-LAST", value_parser = port_range, requires = "relay")]
    relay_ports: Option<std::ops::RangeInclusive<u16>>,
    /// Allocations one user may hold at the relay at once (a phone with
    /// audio and video holds two to four).
    #[arg(long, value_name = "N", default_value_t = 8, requires = "relay",
          value_parser = clap::value_parser!(u32).range(1..=65_535))]
    relay_allocations_per_user: u32,
    /// Let the relay send to loopback addresses (for relays serving
    /// processes on their own host, and tests); refused by default.
    #[arg(long, requires = "relay")]
    relay_allow_loopback_peers: bool,
    /// Serve SIP phones on this address (UDP and TCP): the registrar for
    /// the users enrolled into --dir, in the overlay's domain (RFC 7904).
    /// Give it twice, an IPv4 and an IPv6 address, for a dual-stack peer.
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port)]
    sip: Vec<SocketAddr>,
    /// Where other peers' SIP reaches this one (TCP; what this peer's
    /// AppAttach answers name). Default: --sip's address, any free port.
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port, requires = "sip")]
    sip_peers: Option<SocketAddr>,
    /// Digest algorithms the SIP registrar challenges phones with,
    /// preferred first: md5, sha-256 or both (`sha-256,md5`). MD5 alone by
    /// default, because phones older than RFC 8760 give up when any
    /// challenge is one they cannot answer.
    #[arg(long, value_name = "ALGS", value_delimiter = ',', value_parser = digest_algorithm)]
    sip_digest: Vec<sip::digest::Algorithm>,
    /// Seconds between the OPTIONS that keep a phone behind a NAT
    /// reachable (one registered over UDP from an address other than its
    /// Contact's); 0: none. Keep it under the NATs' UDP binding timeout.
    #[arg(long, value_name = "SECONDS", default_value_t = 25, requires = "sip",
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    sip_nat_keepalive: u64,
    /// A DNS server to find other domains' SIP servers with (RFC 3263:
    /// NAPTR, SRV, A/AAAA); repeat for more. Default: the system's
    /// (/etc/resolv.conf).
    #[arg(long = "dns-server", value_name = "IP:PORT", requires = "sip", value_parser = dns_server)]
    dns_servers: Vec<SocketAddr>,
    /// Serve as a proxy peer: take requests from other SIP domains (no
    /// digest of the overlay) for these users: `all`, or a comma-separated
    /// list. A From in the overlay's own domain must still authenticate.
    /// Publish the DNS records `p2psip dns-records` prints.
    #[arg(long, value_name = "all|USERS", requires = "sip", value_parser = sip::proxy::Outsiders::parse)]
    proxy_peer: Option<sip::proxy::Outsiders>,
    /// Serve phones SIP over TLS on this address (RFC 3261 §26.2), with
    /// the certificate of --sip-tls-cert and --sip-tls-key.
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port, requires_all = ["sip", "sip_tls_cert", "sip_tls_key"])]
    sip_tls: Option<SocketAddr>,
    /// The certificate chain (PEM) phones see over TLS: it must name the
    /// overlay's domain (`p2psip sip-cert` issues one).
    #[arg(long, value_name = "FILE", requires = "sip_tls")]
    sip_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --sip-tls-cert.
    #[arg(long, value_name = "FILE", requires = "sip_tls")]
    sip_tls_key: Option<PathBuf>,
    /// CA certificates (PEM) to trust for TLS to other domains' servers,
    /// besides the system's; repeat for more.
    #[arg(long = "sip-tls-ca", value_name = "FILE", requires = "sip")]
    sip_tls_ca: Vec<PathBuf>,
    /// Threads the peer runs on: the overlay engine, the SIP side and each
    /// link's TLS are tasks of their own, so a peer with two threads
    /// serves more REGISTERs than with one (decision 0031). Default: one
    /// per core, at most 8.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: Option<u16>,
}

fn dns_server(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{s:?} is not IP or IP:PORT, e.g. 127.0.0.1:5353 or [::1]:53"))
}

fn digest_algorithm(name: &str) -> Result<sip::digest::Algorithm, String> {
    let name = name.trim();
    sip::digest::Algorithm::from_name(name)
        .ok_or_else(|| format!("'{name}' is not a digest algorithm: use md5 or sha-256"))
}

/// The admin API's bearer token: the first line of `file`, else
/// P2PSIP_ADMIN_TOKEN, else none.
fn admin_token(file: Option<&std::path::Path>) -> Result<Option<String>> {
    let token = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read --admin-token-file {}", f.display()))?;
            Some(text.lines().next().unwrap_or_default().trim().to_string())
        }
        None => std::env::var("P2PSIP_ADMIN_TOKEN").ok().map(|t| t.trim().to_string()),
    };
    match token {
        Some(t) if t.len() < 16 => bail!("the admin token is {} characters: use at least 16", t.len()),
        other => Ok(other),
    }
}

pub fn peer(args: PeerArgs) -> Result<()> {
    crate::init_logging();
    let (sip, sip_other_family) = match args.sip[..] {
        [] => (None, None),
        [one] => (Some(one), None),
        [first, second] if first.is_ipv4() != second.is_ipv4() => (Some(first), Some(second)),
        _ => anyhow::bail!(
            "--sip is given {} times: give one address, or one IPv4 and one IPv6 address for a dual-stack peer",
            args.sip.len()
        ),
    };
    let opts = node::peer::PeerOptions {
        admin_token: admin_token(args.admin_token_file.as_deref())?,
        dir: args.dir,
        listen: args.listen,
        bootstrap: args.bootstrap,
        admin: args.admin,
        client: args.client,
        sip,
        sip_other_family,
        sip_peers: args.sip_peers,
        sip_digest: args.sip_digest,
        sip_nat_keepalive_s: args.sip_nat_keepalive,
        dns_servers: args.dns_servers,
        proxy_peer: args.proxy_peer,
        sip_tls: match (args.sip_tls, args.sip_tls_cert, args.sip_tls_key) {
            (Some(listen), Some(cert), Some(key)) => Some(node::peer::SipTlsOptions { listen, cert, key }),
            _ => None,
        },
        sip_tls_ca: args.sip_tls_ca,
        relay: args.relay.map(|listen| node::relay::RelayOptions {
            listen,
            ports: args.relay_ports.unwrap_or(node::relay::DEFAULT_PORTS),
            allocations_per_user: args.relay_allocations_per_user as usize,
            allow_loopback_peers: args.relay_allow_loopback_peers,
        }),
    };
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        usize::from,
    );
    // The engine runs on this thread (`block_on`); the other tasks on the
    // runtime's workers, so N threads in all are N - 1 workers.
    let runtime = match threads {
        1 => runtime()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n - 1)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?,
    };
    runtime.block_on(node::peer::run(opts, shutdown_signal()))?;
    Ok(())
}

#[derive(Args)]
pub struct StatusArgs {
    /// The peer's --admin address.
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port)]
    admin: SocketAddr,
    /// Print the JSON as the peer returns it.
    #[arg(long)]
    json: bool,
}

pub fn status(args: StatusArgs) -> Result<()> {
    let body = runtime()?.block_on(http_get(args.admin, "/status"))?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let s: node::peer::Status =
        serde_json::from_str(&body).with_context(|| format!("{} did not return a peer status", args.admin))?;
    println!("node      {}", s.node_id);
    println!("user      {}", s.user);
    println!(
        "overlay   {}  ({})",
        s.overlay,
        if s.joined { "joined" } else { "not joined" }
    );
    println!("address   {}", s.address);
    println!("config    sequence {}", s.configuration_sequence);
    println!("uptime    {} s", s.uptime_s);
    println!("preds     {}", s.predecessors.join(" "));
    println!("succs     {}", s.successors.join(" "));
    println!("fingers   {}", s.fingers.len());
    println!(
        "links     {} ({} over DTLS/UDP)",
        s.links.len(),
        s.links_over_dtls.len()
    );
    if !s.relays.is_empty() {
        println!("relays    {}", s.relays.join(" "));
    }
    let mut seen_as: Vec<&str> = s.reflexive.iter().map(|r| r.address.as_str()).collect();
    seen_as.sort_unstable();
    seen_as.dedup();
    println!(
        "nat       {} (overlay port seen as {} by {} linked peers)",
        s.nat_mapping,
        if seen_as.is_empty() {
            "-".to_string()
        } else {
            seen_as.join(" ")
        },
        s.reflexive.len()
    );
    let stored: Vec<String> = s.stored.iter().map(|(k, n)| format!("{k}={n}")).collect();
    println!(
        "stored    {}",
        if stored.is_empty() {
            "nothing".into()
        } else {
            stored.join(" ")
        }
    );
    println!(
        "messages  {} sent, {} forwarded, {} delivered, {} malformed, {} errors sent",
        s.messages_sent, s.messages_forwarded, s.messages_delivered, s.malformed, s.errors_sent
    );
    if let Some(sip) = &s.sip {
        print_sip(sip);
    }
    Ok(())
}

fn print_sip(sip: &node::sip_report::SipStatus) {
    println!();
    println!("sip       phones {} (udp, tcp); peers {} (tcp)", sip.phones, sip.peers);
    println!(
        "          {} users, {} transactions open, {} calls in progress",
        sip.users.len(),
        sip.transactions,
        sip.calls.len()
    );
    // Contacts and call parties come from the network: escaped, so no
    // control sequence reaches the terminal.
    let q = node::sip_report::quoted;
    for u in &sip.users {
        if u.contacts.is_empty() {
            println!("  {:<16} no phone registered", q(&u.user));
        }
        for c in &u.contacts {
            println!(
                "  {:<16} {}  via {}  expires in {} s",
                q(&u.user),
                q(&c.contact),
                c.flow,
                c.expires_s
            );
        }
    }
    for c in &sip.calls {
        println!(
            "  call {}  {} -> {}  {}  {} s",
            q(&c.call_id),
            q(&c.from),
            q(&c.to),
            c.state,
            c.age_s
        );
    }
}

#[derive(Args)]
pub struct RingArgs {
    /// The --admin address of any peer of the overlay.
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port)]
    admin: SocketAddr,
    /// Print the JSON as the peer returns it.
    #[arg(long)]
    json: bool,
}

/// How long a ring walk may take: one Probe round trip per peer.
const RING_WALK_TIMEOUT: Duration = Duration::from_secs(300);

/// `p2psip ring`: the whole overlay, walked by Probe from one peer. Exits
/// with status 1 when the walk did not come back around.
pub fn ring(args: RingArgs) -> Result<()> {
    let body = runtime()?.block_on(http_get_within(args.admin, "/ring", RING_WALK_TIMEOUT))?;
    let walk: node::peer::RingWalk =
        serde_json::from_str(&body).with_context(|| format!("{} did not return a ring walk", args.admin))?;
    if args.json {
        println!("{body}");
    } else {
        println!(
            "{:<34} {:>10} {:>9} {:>8} {:>5}",
            "NODE-ID", "UPTIME-S", "RESOURCES", "SHARE-%", "HOPS"
        );
        for p in &walk.peers {
            let mark = if p.node_id == walk.start {
                " (walked from here)"
            } else {
                ""
            };
            println!(
                "{:<34} {:>10} {:>9} {:>8.3} {:>5}{mark}",
                p.node_id,
                p.uptime_s,
                p.resources,
                f64::from(p.responsible_ppb) / 1e7,
                p.hops
            );
        }
        match &walk.problem {
            None => println!("{} peers; the ring is closed", walk.peers.len()),
            Some(why) => println!("{} peers met, then: {why}", walk.peers.len()),
        }
    }
    if !walk.complete {
        std::process::exit(1);
    }
    Ok(())
}

/// A plain HTTP GET to a peer's admin API.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    http_get_within(addr, path, Duration::from_secs(10)).await
}

/// [`http_get`] for requests that take a while.
pub async fn http_get_within(addr: SocketAddr, path: &str, limit: Duration) -> Result<String> {
    http_request(addr, "GET", path, None, limit).await
}

/// A plain HTTP request to a peer's admin API, with an optional body
/// (content type, bytes); the body of a 200 answer.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    limit: Duration,
) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("{addr}: timed out"))?
        .with_context(|| format!("cannot reach the admin API at {addr}; is the peer running with --admin {addr}?"))?;
    let authorization = admin_token(None)?
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content = body
        .map(|(kind, bytes)| format!("Content-Type: {kind}\r\nContent-Length: {}\r\n", bytes.len()))
        .unwrap_or_default();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}{content}Connection: close\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(body.map(|(_, b)| b).unwrap_or_default());
    tcp.write_all(&request).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(limit, tcp.read_to_end(&mut raw))
        .await
        .map_err(|_| anyhow::anyhow!("{addr}: no answer"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("no answer");
        let why = body.lines().next().unwrap_or_default();
        bail!("{addr}{path}: {status} {why}");
    }
    Ok(body.to_string())
}
