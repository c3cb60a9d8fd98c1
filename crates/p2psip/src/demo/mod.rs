//! `p2psip demo`: a whole local overlay from one command. It creates an
//! overlay, runs its enrollment server and N peers on 127.0.0.1 (or the
//! LAN address, `--lan`), each its own process enrolled like any other
//! node, waits until the ring is consistent and a ring walk meets all of
//! them, and writes `demo.json`. While it runs, a peer that dies is
//! reported and the rest go on ([`supervise`]); `p2psip demo restart N`
//! brings it back ([`control`]). Ctrl-C or SIGTERM stops every peer
//! gracefully (each leaves the overlay) and then the server.

mod control;
mod supervise;

use crate::overlay_cmds::{http_get, runtime, shutdown_signal};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use node::enrollment::{self, CaPin};
use node::overlay_dir::{InitOptions, OverlayDir};
use node::peer::{RingWalk, Status};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    action: Option<DemoAction>,
    #[command(flatten)]
    start: StartArgs,
}

#[derive(Subcommand)]
enum DemoAction {
    /// Bring a dead peer of a running demo back: the same node directory,
    /// Node-ID and ports; it joins through the peers still running.
    Restart {
        /// The peer's number in the demo's table.
        peer: u16,
        /// The running demo's directory (default: the one demo running
        /// under the temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct StartArgs {
    /// Peers to start, each its own process.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    peers: u16,
    /// Where the overlay and every peer keep their files; must be new or
    /// empty (default: a new directory under the system's temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Peer i takes BASE+i for RELOAD, BASE+100+i for its admin API and
    /// BASE+300+i for phones' SIP (UDP and TCP) and BASE+400+i for SIP
    /// between peers (TCP); the enrollment server takes
    /// BASE+200.
    #[arg(long, default_value_t = 6084)]
    base_port: u16,
    /// Accounts to create, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "alice,bob")]
    users: Vec<String>,
    /// Serve the accounts at these peers instead of spreading them
    /// (account j at peer j mod N): one peer for all of them (what a
    /// benchmark of one registrar needs), or one per account, in order.
    #[arg(long, value_name = "PEER", value_delimiter = ',')]
    users_at: Vec<u16>,
    /// Password of every account.
    #[arg(long, default_value = "p2psip-demo")]
    password: String,
    /// Overlay name (instance-name); also the accounts' domain.
    #[arg(long, default_value = "demo.p2psip.test")]
    overlay: String,
    /// Serve on this machine's LAN address instead of 127.0.0.1, so that
    /// phones on the network can register (the address of the default
    /// route's interface, or the one given: `--lan 192.168.1.20`).
    #[arg(long, value_name = "ADDRESS", num_args = 0..=1, default_missing_value = "auto")]
    lan: Option<String>,
    /// Make the first N peers the overlay's proxy peers (the configuration's
    /// `<p2psip:proxy-peers outsiders="all">`): they take calls from other
    /// SIP domains for the demo's accounts and send the other peers' calls
    /// to other domains out. The demo prints the DNS records that send
    /// those domains to them.
    #[arg(long, value_name = "N", default_value_t = 0)]
    proxy_peers: u16,
    /// The DNS server every peer finds other domains' SIP servers with
    /// (`peer --dns-server`; default: the system's).
    #[arg(long, value_name = "IP:PORT")]
    dns_server: Option<SocketAddr>,
}

/// Where one peer of the demo lives: its files and its addresses, the
/// same for every start of it.
pub(super) struct PeerSpec {
    node_dir: PathBuf,
    log: PathBuf,
    reload: SocketAddr,
    admin: SocketAddr,
    sip: SocketAddr,
    sip_peers: SocketAddr,
    /// `peer --threads`: the machine's cores shared among the demo's
    /// peers, so that peers on one machine do not outnumber its cores
    /// (each thread more costs CPU per request in wake-ups, decision 0031).
    threads: usize,
    dns_server: Option<SocketAddr>,
}

/// `demo.json`: what a script or a softphone user needs to reach the demo.
#[derive(Serialize)]
pub(super) struct DemoFile {
    overlay: String,
    enrollment: String,
    peers: Vec<DemoPeer>,
    accounts: Vec<DemoAccount>,
    /// The SIP addresses of the proxy peers, in the order of their SRV
    /// priority (`p2psip dns-records --proxy-peer`).
    proxy_peers: Vec<SocketAddr>,
}

#[derive(Serialize)]
struct DemoPeer {
    pid: u32,
    /// False once the process died, until it is restarted.
    alive: bool,
    node_id: String,
    reload: SocketAddr,
    /// Where phones register and send their calls (UDP and TCP).
    sip: SocketAddr,
    admin: SocketAddr,
}

#[derive(Serialize)]
struct DemoAccount {
    user: String,
    password: String,
    aor: String,
    /// The digest realm and the SIP domain.
    domain: String,
    /// Registrar and outbound proxy: the SIP address of the serving peer.
    registrar: SocketAddr,
    /// The string hashed into the Resource-ID of the account's
    /// registration (RFC 7904; decision 0006): the AOR without `sip:`.
    resource_name: String,
    /// Index into `peers` of the peer that serves this account.
    peer: usize,
}

/// How long the peers have to form a ring a walk closes over.
const FORMATION_LIMIT: Duration = Duration::from_secs(60);
/// How long each peer has to hand its data over and exit.
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// Every process the demo started; whatever is still running when this is
/// dropped (an error on the way) is killed, so nothing outlives the demo.
struct Children {
    server: Option<Child>,
    peers: Vec<Child>,
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in self.peers.iter_mut().chain(self.server.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The peer serving each of `accounts` accounts: account j at peer j mod
/// `peers`, unless `at` names one peer for all or one for each.
fn homes(accounts: usize, peers: u16, at: &[u16]) -> Result<Vec<usize>> {
    if let Some(&wrong) = at.iter().find(|&&p| p >= peers) {
        bail!(
            "--users-at {wrong} names no peer: the demo has --peers {peers}, numbered 0 to {}",
            peers - 1
        );
    }
    Ok(match at {
        [] => (0..accounts).map(|j| j % usize::from(peers)).collect(),
        [one] => vec![usize::from(*one); accounts],
        each if each.len() == accounts => each.iter().map(|&p| usize::from(p)).collect(),
        _ => bail!(
            "--users-at names {} peers for {accounts} accounts: give one peer for all, or one per account",
            at.len()
        ),
    })
}

pub fn demo(args: DemoArgs) -> Result<()> {
    match args.action {
        Some(DemoAction::Restart { peer, dir }) => control::restart(peer, dir.as_deref()),
        None => start(args.start),
    }
}

/// The address `--lan` asks for: the one given, or the source address of
/// this machine's default route (found by routing a UDP socket to a
/// documentation address; nothing is sent).
fn lan_address(asked: &str) -> Result<IpAddr> {
    if asked != "auto" {
        return asked
            .parse()
            .with_context(|| format!("--lan {asked:?} is not an IP address of this machine"));
    }
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket
        .connect("192.0.2.1:9")
        .and_then(|()| socket.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .context("this machine has no default route, so no LAN address; give one: --lan 192.168.1.20")
}

fn start(args: StartArgs) -> Result<()> {
    let n = usize::from(args.peers);
    if args.base_port > u16::MAX - 500 {
        bail!(
            "--base-port {} leaves no room: the demo uses ports BASE to BASE+499; give one below {}",
            args.base_port,
            u16::MAX - 500
        );
    }
    if args.proxy_peers > args.peers {
        bail!(
            "--proxy-peers {} is more than the {} peers: give at most --peers",
            args.proxy_peers,
            args.peers
        );
    }
    let homes = homes(args.users.len(), args.peers, &args.users_at)?;
    let home = |j: usize| homes[j];
    for u in &args.users {
        node::overlay_dir::check_user_name(u).with_context(|| format!("--users: {u:?}"))?;
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("p2psip-demo-{}", std::process::id())),
    };
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "--dir {} is not empty; give a new directory or remove this one",
            dir.display()
        );
    }
    let host = match &args.lan {
        Some(asked) => lan_address(asked)?,
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let port = |offset: usize| args.base_port + offset as u16;
    let at = |p: u16| SocketAddr::new(host, p);
    let reload: Vec<SocketAddr> = (0..n).map(|i| at(port(i))).collect();
    // The admin API stays on loopback: it is for whoever runs the demo.
    let admin: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], port(100 + i))))
        .collect();
    let sip: Vec<SocketAddr> = (0..n).map(|i| at(port(300 + i))).collect();
    let sip_peers: Vec<SocketAddr> = (0..n).map(|i| at(port(400 + i))).collect();
    let enrollment_addr = at(port(200));
    let server_url = format!("https://{enrollment_addr}");

    // Every peer enrolls under its own operator account; the demo's users
    // are the accounts people sign in with.
    let peer_account = |i: usize| format!("peer{i}");
    let mut accounts: Vec<(String, String)> = args.users.iter().map(|u| (u.clone(), args.password.clone())).collect();
    accounts.extend((0..n).map(|i| (peer_account(i), args.password.clone())));
    let overlay_dir = dir.join("overlay");
    let overlay = OverlayDir::init(
        &overlay_dir,
        &InitOptions {
            overlay: args.overlay.clone(),
            users: accounts,
            enrollment_url: format!("{server_url}/enroll"),
            bootstrap: vec![reload[0]],
            multicast_bootstrap: None,
            server_hosts: vec![host.to_string(), "127.0.0.1".into(), "localhost".into()],
            ice: false,
            turn_density: 1,
        },
    )?;
    let ca = overlay.authority()?;
    let exe = std::env::current_exe().context("cannot find the p2psip executable")?;
    let mut children = Children {
        server: None,
        peers: Vec::new(),
    };

    let server = child_command(&exe)
        .args(["enrollment-server", "--dir"])
        .arg(&overlay_dir)
        .args(["--listen", &enrollment_addr.to_string()])
        // Every peer and account of the demo is enrolled from here, at once.
        .args(["--requests-per-address", &(n + args.users.len() + 60).to_string()])
        .stdout(Stdio::null())
        .stderr(log_file(&dir.join("enrollment.log"))?)
        .spawn()
        .context("cannot start the enrollment server")?;
    children.server = Some(server);
    wait_until(Duration::from_secs(10), "the enrollment server to listen", || {
        exited(children.server.as_mut(), &dir.join("enrollment.log"))?;
        Ok(std::net::TcpStream::connect(enrollment_addr).is_ok())
    })?;

    let rt = runtime()?;
    let node_dirs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("peer{i}"))).collect();
    for (i, d) in node_dirs.iter().enumerate() {
        let pin = CaPin::Certificate(ca.cert_der.clone());
        rt.block_on(enrollment::enroll(
            &server_url,
            pin,
            &peer_account(i),
            &args.password,
            d,
        ))
        .with_context(|| format!("enrolling peer {i}"))?;
    }
    // Account j is served by its home peer (j mod n unless --users-at):
    // enrolled into its node dir, so that peer's registrar knows the
    // password and signs as the user.
    for (j, u) in args.users.iter().enumerate() {
        let pin = CaPin::Certificate(ca.cert_der.clone());
        rt.block_on(enrollment::enroll(
            &server_url,
            pin,
            u,
            &args.password,
            &node_dirs[home(j)],
        ))
        .with_context(|| format!("enrolling {u} into peer {}", home(j)))?;
    }

    if args.proxy_peers > 0 {
        list_proxy_peers(&overlay, &node_dirs, args.proxy_peers.into())?;
    }

    // Peer 0 is the configuration's bootstrap node and starts the ring; the
    // others join through it once it is up.
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let specs: Vec<PeerSpec> = (0..n)
        .map(|i| PeerSpec {
            threads: (cores / n).max(1),
            log: node_dirs[i].join("peer.log"),
            node_dir: node_dirs[i].clone(),
            reload: reload[i],
            admin: admin[i],
            sip: sip[i],
            sip_peers: sip_peers[i],
            dns_server: args.dns_server,
        })
        .collect();
    for (i, spec) in specs.iter().enumerate() {
        let child = spawn_peer(&exe, spec, &[]).with_context(|| format!("cannot start peer {i}"))?;
        children.peers.push(child);
        if i == 0 {
            wait_until(Duration::from_secs(15), "peer 0 to start the overlay", || {
                exited(children.peers.first_mut(), &spec.log)?;
                Ok(rt.block_on(status(admin[0])).is_some_and(|s| s.joined))
            })?;
        }
    }
    let started = Instant::now();
    let mut statuses = Vec::new();
    wait_until(FORMATION_LIMIT, "every peer to be in the ring", || {
        for (c, spec) in children.peers.iter_mut().zip(&specs) {
            exited(Some(c), &spec.log)?;
        }
        statuses = rt.block_on(async {
            let mut all = Vec::with_capacity(n);
            for a in &admin {
                all.push(status(*a).await);
            }
            all
        });
        if statuses.iter().any(Option::is_none) {
            return Ok(false);
        }
        let all: Vec<Status> = statuses.iter().flatten().cloned().collect();
        if node::peer::ring_consistent(all).is_err() {
            return Ok(false);
        }
        Ok(rt
            .block_on(ring_walk(admin[0]))
            .is_some_and(|w| w.complete && w.peers.len() == n))
    })?;
    let formed = started.elapsed();

    let statuses: Vec<Status> = statuses.into_iter().flatten().collect();
    let peers: Vec<DemoPeer> = (0..n)
        .map(|i| DemoPeer {
            pid: children.peers[i].id(),
            alive: true,
            node_id: statuses[i].node_id.clone(),
            reload: reload[i],
            sip: sip[i],
            admin: admin[i],
        })
        .collect();
    let demo_accounts: Vec<DemoAccount> = args
        .users
        .iter()
        .enumerate()
        .map(|(j, u)| DemoAccount {
            user: u.clone(),
            password: args.password.clone(),
            aor: format!("sip:{u}@{}", args.overlay),
            domain: args.overlay.clone(),
            registrar: sip[home(j)],
            resource_name: peer_core::sip_usage::resource_name(u, &args.overlay),
            peer: home(j),
        })
        .collect();
    let mut file = DemoFile {
        overlay: args.overlay.clone(),
        enrollment: server_url.clone(),
        peers,
        accounts: demo_accounts,
        proxy_peers: sip.iter().take(args.proxy_peers.into()).copied().collect(),
    };
    let json_path = dir.join("demo.json");
    write_demo_file(&json_path, &file)?;
    let dir_arg = match &args.dir {
        Some(d) => format!(" --dir {}", d.display()),
        None => String::new(),
    };
    print_summary(&file, &dir, &json_path, formed, &dir_arg);

    let outcome = {
        let Children { server, peers } = &mut children;
        let mut supervisor = supervise::Supervisor::new(&dir, &exe, &specs, peers, server, &mut file, dir_arg);
        rt.block_on(supervisor.run(shutdown_signal()))
    };
    println!("stopping: every peer leaves the overlay");
    stop_all(&mut children);
    outcome
}

/// Publishes the overlay's next configuration with the first `count`
/// peers of `node_dirs` as its proxy peers, reachable from other domains
/// for every user (decision 0036), and gives it to every enrolled peer
/// before they start.
fn list_proxy_peers(overlay: &OverlayDir, node_dirs: &[PathBuf], count: usize) -> Result<()> {
    use node::config_doc::{ProxyPeers, SignedConfiguration};
    use node::node_dir::NodeDir;
    let mut peers = Vec::new();
    for d in &node_dirs[..count] {
        let dir = NodeDir::load(d).with_context(|| format!("cannot read {}", d.display()))?;
        peers.extend(dir.info.node_ids.first().copied());
    }
    let mut config = SignedConfiguration::parse(&overlay.config_document()?, None)?.configuration;
    config.proxy_peers = ProxyPeers {
        peers,
        outsiders: sip::proxy::Outsiders::Everyone,
    };
    let (_, document) = overlay.publish(&config.to_signed_document(&overlay.signer()?))?;
    for d in node_dirs {
        NodeDir::load(d)?.save_config(&document)?;
    }
    Ok(())
}

/// Starts one peer of the demo; `through` are peers to join through (none
/// for the first start: the configuration names peer 0). A restart
/// appends to the peer's log, after the lines of the run that died.
pub(super) fn spawn_peer(exe: &Path, spec: &PeerSpec, through: &[SocketAddr]) -> Result<Child> {
    let mut cmd = child_command(exe);
    cmd.arg("peer")
        .arg("--dir")
        .arg(&spec.node_dir)
        .args(["--listen", &spec.reload.to_string(), "--admin", &spec.admin.to_string()])
        .args(["--threads", &spec.threads.to_string()])
        .args([
            "--sip",
            &spec.sip.to_string(),
            "--sip-peers",
            &spec.sip_peers.to_string(),
        ]);
    if let Some(dns) = spec.dns_server {
        cmd.args(["--dns-server", &dns.to_string()]);
    }
    for b in through {
        cmd.args(["--bootstrap", &b.to_string()]);
    }
    let log = if through.is_empty() {
        log_file(&spec.log)?
    } else {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&spec.log)
            .with_context(|| format!("cannot open {}", spec.log.display()))?;
        writeln!(log, "--- restarted by p2psip demo ---")?;
        log
    };
    Ok(cmd.stdout(Stdio::null()).stderr(log).spawn()?)
}

/// A process of the demo: in its own process group, so a Ctrl-C in the
/// terminal reaches only the demo, which then stops the peers in order; and
/// sent SIGTERM by the kernel if the demo dies first, so none outlives it.
fn child_command(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.process_group(0);
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the
    // parent; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// While the demo starts, a process that exits stops it: an error naming
/// how it ended and its log's last line (where its error is).
fn exited(child: Option<&mut Child>, log: &Path) -> Result<()> {
    let Some(child) = child else { return Ok(()) };
    if let Ok(Some(status)) = child.try_wait() {
        bail!(
            "a process of the demo exited ({}) while starting: {} (log: {})",
            supervise::describe_exit(status),
            supervise::last_line(log),
            log.display()
        );
    }
    Ok(())
}

fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

pub(super) async fn status(admin: SocketAddr) -> Option<Status> {
    serde_json::from_str(&http_get(admin, "/status").await.ok()?).ok()
}

pub(super) async fn ring_walk(admin: SocketAddr) -> Option<RingWalk> {
    serde_json::from_str(&http_get(admin, "/ring").await.ok()?).ok()
}

pub(super) fn write_demo_file(path: &Path, file: &DemoFile) -> Result<()> {
    let text = serde_json::to_string_pretty(file)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn print_summary(file: &DemoFile, dir: &Path, json: &Path, formed: Duration, dir_arg: &str) {
    println!(
        "Overlay {} is up: {} peers in one ring after {:.1} s",
        file.overlay,
        file.peers.len(),
        formed.as_secs_f64()
    );
    println!();
    println!(
        "{:<4} {:<34} {:<21} {:<21} {:<21} {:>8}",
        "PEER", "NODE-ID", "RELOAD", "SIP", "ADMIN", "PID"
    );
    for (i, p) in file.peers.iter().enumerate() {
        println!(
            "{:<4} {:<34} {:<21} {:<21} {:<21} {:>8}",
            i,
            p.node_id,
            p.reload.to_string(),
            p.sip.to_string(),
            p.admin.to_string(),
            p.pid
        );
    }
    if !file.accounts.is_empty() {
        println!();
        println!("Softphone accounts (registrar and outbound proxy: the serving peer, UDP or TCP):");
        for a in &file.accounts {
            println!(
                "  user {:<12} password {:<14} domain {:<20} registrar/proxy {:<21} (peer {})",
                a.user, a.password, a.domain, a.registrar, a.peer
            );
        }
    }
    if !file.proxy_peers.is_empty() {
        let peers: Vec<String> = file.proxy_peers.iter().map(|p| format!(" --proxy-peer {p}")).collect();
        println!();
        println!("Other SIP domains reach these accounts through the proxy peers once the DNS says so:");
        println!("  p2psip dns-records --domain {}{}", file.overlay, peers.concat());
    }
    println!();
    println!("Enrollment server  {}", file.enrollment);
    println!("Files              {}", dir.display());
    println!("Machine-readable   {}", json.display());
    println!(
        "Look around        p2psip ring --admin {}   |   p2psip status --admin {}",
        file.peers[0].admin, file.peers[0].admin
    );
    println!();
    println!("A peer that dies is reported here and the others go on; the ring heals.");
    println!("`p2psip demo restart N{dir_arg}` (or r typed here) brings a dead peer back.");
    println!("Ctrl-C stops every peer (each leaves the overlay gracefully) and the server.");
}

/// SIGTERM to one peer after another, last started first, each once the
/// previous one has left: a peer leaving hands its data to neighbours that
/// stay, which it could not if they were all leaving at the same time.
/// Then the enrollment server. A peer that has not exited in time is
/// killed.
fn stop_all(children: &mut Children) {
    for (i, c) in children.peers.iter_mut().enumerate().rev() {
        terminate(c);
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            match c.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => {
                    eprintln!("peer {i} exited with {status}");
                    break;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                _ => {
                    eprintln!("peer {i} did not finish leaving in {STOP_LIMIT:?}; killed");
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
    if let Some(server) = children.server.as_mut() {
        terminate(server);
        let _ = server.wait();
    }
    println!("all stopped");
}

fn terminate(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return; // already exited and reaped: its PID may belong to another process now
    }
    // SAFETY: kill(2) on a child that has not been reaped, so the PID is
    // still this child's (an exited child stays a zombie until reaped).
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

#[cfg(test)]
mod tests {
    use super::homes;

    #[test]
    fn accounts_are_spread_round_robin_unless_placed() {
        assert_eq!(homes(5, 3, &[]).unwrap(), [0, 1, 2, 0, 1]);
        assert_eq!(homes(3, 3, &[2]).unwrap(), [2, 2, 2]);
        assert_eq!(homes(3, 3, &[0, 1, 1]).unwrap(), [0, 1, 1]);
    }

    #[test]
    fn a_placement_that_names_no_peer_or_fits_no_account_is_refused() {
        let wrong = homes(2, 3, &[3]).unwrap_err().to_string();
        assert!(
            wrong.contains("--users-at 3 names no peer") && wrong.contains("0 to 2"),
            "{wrong}"
        );
        let mismatch = homes(3, 3, &[0, 1]).unwrap_err().to_string();
        assert!(mismatch.contains("2 peers for 3 accounts"), "{mismatch}");
    }
}
