//! What the whole-system tests share: an overlay made with `p2psip init`
//! and a running enrollment server, peers as real processes, their admin
//! API, and the ring and data checks.
#![allow(dead_code)] // each test binary uses its own subset

pub mod netns;
pub mod raw_client;

use node::peer::{FetchedCertificate, RingWalk, Status};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_p2psip");
pub const PASSWORD: &str = "correct horse";

static FREE_PORT_NEXT: AtomicU32 = AtomicU32::new(0);

/// The n-th port of this test process's walk through 20000-31999.
fn walk_port(n: u32) -> u32 {
    20_000 + ((std::process::id() % 100) * 120 + n) % 12_000
}

/// A port below Linux's ephemeral range (32768-60999), so no outgoing
/// connection can take it between this check and the peer's bind; each
/// test process walks its own stretch.
pub fn free_port() -> u16 {
    loop {
        let port = walk_port(FREE_PORT_NEXT.fetch_add(1, Ordering::Relaxed)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `len` consecutive free ports, taken from the same walk as
/// [`free_port`] so no other test of this process is handed one of them.
pub fn free_port_block(len: u32) -> u16 {
    loop {
        let base = walk_port(FREE_PORT_NEXT.fetch_add(len, Ordering::Relaxed));
        if base + len > 32_000 {
            continue;
        }
        let base = base as u16;
        if (0..len as u16).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("p2psip-overlay-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn run_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "p2psip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The standard output of a command that must have succeeded; its output
/// and errors in the failure message otherwise.
pub fn succeeded(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CA fingerprint `p2psip init` prints, which enrolling peers pin.
pub fn ca_fingerprint(init_output: &str) -> String {
    init_output
        .lines()
        .find_map(|l| l.trim().strip_prefix("CA fingerprint"))
        .map(str::trim)
        .expect("init prints the CA fingerprint")
        .to_string()
}

/// Kills every process it started when dropped, so a failing test leaves
/// nothing running.
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Peer {
    pub child: usize,
    pub admin: SocketAddr,
    pub listen: SocketAddr,
    pub log: PathBuf,
}

pub struct Overlay {
    pub dir: PathBuf,
    pub procs: Procs,
    pub server: String,
}

impl Overlay {
    /// The operator's edit: `config show`, `edit` of its text, and `config
    /// publish` of the result through the admin API at `peer`. Returns what
    /// `publish` printed.
    pub fn publish_config(&self, peer: SocketAddr, edit: impl FnOnce(&str) -> String) -> String {
        let overlay_dir = self.dir.join("overlay");
        let shown = run_ok(&["config", "show", "--dir", overlay_dir.to_str().unwrap()]);
        let edited = edit(&shown);
        assert_ne!(edited, shown, "the edit changed the document");
        let edited_path = self.dir.join("edited-config.xml");
        std::fs::write(&edited_path, edited).unwrap();
        run_ok(&[
            "config",
            "publish",
            "--dir",
            overlay_dir.to_str().unwrap(),
            edited_path.to_str().unwrap(),
            "--peer",
            &peer.to_string(),
        ])
    }

    /// `init` plus a running enrollment server.
    pub fn create(tag: &str, name: &str) -> Overlay {
        Overlay::create_with(tag, name, &[])
    }

    /// `init` with more arguments, plus a running enrollment server.
    pub fn create_with(tag: &str, name: &str, init_args: &[&str]) -> Overlay {
        let dir = scratch(tag);
        let port = free_port();
        let overlay_dir = dir.join("overlay");
        let user = format!("peer:{PASSWORD}");
        let url = format!("https://127.0.0.1:{port}/enroll");
        let mut args = vec![
            "init",
            "--dir",
            overlay_dir.to_str().unwrap(),
            "--overlay",
            name,
            "--user",
            &user,
            "--enrollment-url",
            &url,
        ];
        args.extend_from_slice(init_args);
        run_ok(&args);
        // Every node of a test enrolls under the one account "peer".
        let server = Command::new(BIN)
            .args(["enrollment-server", "--dir", overlay_dir.to_str().unwrap(), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--max-keys-per-account", "100", "--max-node-ids-per-account", "400"])
            .stderr(std::fs::File::create(dir.join("enrollment.log")).unwrap())
            .spawn()
            .unwrap();
        let server_url = format!("https://127.0.0.1:{port}");
        wait_for(Duration::from_secs(10), "the enrollment server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Overlay {
            dir,
            procs: Procs(vec![server]),
            server: server_url,
        }
    }

    pub fn enroll(&self, name: &str) -> PathBuf {
        let node_dir = self.dir.join(name);
        self.enroll_user(&node_dir, "peer", PASSWORD);
        node_dir
    }

    pub fn start_peer(&mut self, node_dir: &Path, bootstrap: Option<SocketAddr>) -> Peer {
        let listen = loopback(free_port());
        self.start_peer_at(node_dir, listen, bootstrap, None)
    }

    /// Enrolls `user` into `node_dir`: the node's identity if the directory
    /// is new, else a user added to the node, whose phones the peer then
    /// registers.
    pub fn enroll_user(&self, node_dir: &Path, user: &str, password: &str) {
        run_ok(&[
            "enroll",
            "--server",
            &self.server,
            "--ca-cert",
            self.dir.join("overlay/ca.crt").to_str().unwrap(),
            "--user",
            user,
            "--password",
            password,
            "--dir",
            node_dir.to_str().unwrap(),
        ]);
    }

    /// A peer with more command-line arguments (`--sip ADDR`, ...).
    pub fn start_peer_with(&mut self, node_dir: &Path, bootstrap: Option<SocketAddr>, extra_args: &[&str]) -> Peer {
        let listen = loopback(free_port());
        self.start_node(node_dir, listen, bootstrap, None, extra_args, &[])
    }

    /// [`start_peer_with`](Self::start_peer_with) with environment
    /// variables set for the peer (`P2PSIP_LOG_FORMAT`, ...).
    pub fn start_peer_with_env(
        &mut self,
        node_dir: &Path,
        bootstrap: Option<SocketAddr>,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Peer {
        let listen = loopback(free_port());
        self.start_node(node_dir, listen, bootstrap, None, extra_args, env)
    }

    /// `p2psip peer --client` (§4.2.1).
    pub fn start_client(&mut self, node_dir: &Path, bootstrap: Option<SocketAddr>) -> Peer {
        let listen = loopback(free_port());
        self.start_node(node_dir, listen, bootstrap, None, &["--client"], &[])
    }

    /// A peer on a chosen listen address, writing its TLS secrets to
    /// `key_log` (SSLKEYLOGFILE) if given.
    pub fn start_peer_at(
        &mut self,
        node_dir: &Path,
        listen: SocketAddr,
        bootstrap: Option<SocketAddr>,
        key_log: Option<&Path>,
    ) -> Peer {
        self.start_node(node_dir, listen, bootstrap, key_log, &[], &[])
    }

    fn start_node(
        &mut self,
        node_dir: &Path,
        listen: SocketAddr,
        bootstrap: Option<SocketAddr>,
        key_log: Option<&Path>,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Peer {
        let admin = loopback(free_port());
        let log = node_dir.join("peer.log");
        let mut cmd = Command::new(BIN);
        cmd.args(["peer", "--dir", node_dir.to_str().unwrap()])
            .args(["--listen", &listen.to_string(), "--admin", &admin.to_string()])
            .args(extra_args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(b) = bootstrap {
            cmd.args(["--bootstrap", &b.to_string()]);
        }
        match key_log {
            Some(k) => cmd.env("SSLKEYLOGFILE", k),
            None => cmd.env_remove("SSLKEYLOGFILE"),
        };
        self.procs.0.push(cmd.spawn().unwrap());
        Peer {
            child: self.procs.0.len() - 1,
            admin,
            listen,
            log,
        }
    }
}

/// A running `p2psip demo` started by a test: its process, directory,
/// standard output and `demo.json`.
pub struct Demo {
    pub procs: Procs,
    pub dir: PathBuf,
    pub out: PathBuf,
    pub file: serde_json::Value,
}

impl Demo {
    /// `p2psip demo --base-port B --dir DIR` plus `args`, on ports of its
    /// own, once it has written `demo.json`.
    pub fn start(tag: &str, args: &[&str]) -> Demo {
        let dir = scratch(tag).join("demo");
        let out = dir.with_extension("out");
        let base = free_port_block(500);
        let procs = Procs(vec![Command::new(BIN)
            .args(["demo", "--base-port", &base.to_string(), "--dir", dir.to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(dir.with_extension("err")).unwrap())
            .spawn()
            .unwrap()]);
        let json = dir.join("demo.json");
        wait_for(Duration::from_secs(90), "demo.json", || json.exists());
        let file = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        Demo { procs, dir, out, file }
    }
}

pub fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// The body of `GET path` from an admin API.
pub fn get_text(admin: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(1)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).ok()?;
    Some(raw.split_once("\r\n\r\n")?.1.to_string())
}

pub fn get<T: serde::de::DeserializeOwned>(admin: SocketAddr, path: &str) -> Option<T> {
    serde_json::from_str(&get_text(admin, path)?).ok()
}

/// The value of one sample in a peer's `/metrics`, e.g.
/// `p2psip_links` or `p2psip_requests_total{method="fetch",result="ok"}`;
/// 0 when the series does not exist yet.
pub fn metric(admin: SocketAddr, series: &str) -> f64 {
    let text = get_text(admin, "/metrics").expect("the peer serves /metrics");
    assert!(text.trim_end().ends_with("# EOF"), "a whole OpenMetrics text: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

pub fn status(admin: SocketAddr) -> Option<Status> {
    get(admin, "/status")
}

/// The ring is consistent: every peer joined, each one's successor names
/// it as predecessor, and following successors visits exactly `peers`.
pub fn ring_consistent(peers: &[&Peer]) -> Result<(), String> {
    let mut statuses = Vec::with_capacity(peers.len());
    for p in peers {
        statuses.push(status(p.admin).ok_or(format!("{} does not answer", p.admin))?);
    }
    node::peer::ring_consistent(statuses)
}

pub fn wait_consistent(peers: &[&Peer], limit: Duration, what: &str) -> Duration {
    let mut last = String::new();
    let start = Instant::now();
    while start.elapsed() < limit {
        match ring_consistent(peers) {
            Ok(()) => return start.elapsed(),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: ring not consistent after {limit:?}: {last}");
}

/// Every peer's certificate (each peer stores its own, §8) can be fetched
/// through another live peer, each through a different one.
pub fn certificates_fetchable(via: &[&Peer], ids: &[String]) -> Result<(), String> {
    for (i, id) in ids.iter().enumerate() {
        let through = via[(i + 7) % via.len()];
        let got: FetchedCertificate = get(through.admin, &format!("/certificate/{id}")).ok_or(format!(
            "the certificate of {id} is not found through {}",
            through.admin
        ))?;
        if got.node_id != *id {
            return Err(format!("asked for {id}, got the certificate of {}", got.node_id));
        }
    }
    Ok(())
}

pub fn wait_fetchable(via: &[&Peer], ids: &[String], limit: Duration, what: &str) -> Duration {
    let mut last = String::new();
    let start = Instant::now();
    while start.elapsed() < limit {
        match certificates_fetchable(via, ids) {
            Ok(()) => return start.elapsed(),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not every certificate fetchable after {limit:?}: {last}");
}

/// `p2psip ring --json` through `from`: the Node-IDs it met, sorted.
pub fn ring_walk(from: &Peer) -> Vec<String> {
    let out = run_ok(&["ring", "--json", "--admin", &from.admin.to_string()]);
    let walk: RingWalk = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(walk.complete, "{walk:?}");
    assert_eq!(walk.peers.last().map(|p| &p.node_id), Some(&walk.start));
    let mut ids: Vec<String> = walk.peers.into_iter().map(|p| p.node_id).collect();
    ids.sort();
    ids
}

pub fn sorted_ids(peers: &[&Peer]) -> Vec<String> {
    let mut ids: Vec<String> = peers.iter().map(|p| status(p.admin).unwrap().node_id).collect();
    ids.sort();
    ids
}

/// `p2psip sip-cert`: a certificate for the SIP domain of the overlay in
/// `overlay_dir`, issued by its CA into `out`; the chain and key files.
pub fn sip_certificate(overlay_dir: &Path, out: &Path) -> (PathBuf, PathBuf) {
    run_ok(&[
        "sip-cert",
        "--dir",
        overlay_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    (out.join("sip-tls.crt"), out.join("sip-tls.key"))
}

/// Whether this process is root; if not, what needs root (namespaces,
/// port 53) is run through `sudo -n` (CI may run as a user with
/// password-less sudo).
pub fn root() -> bool {
    // SAFETY: geteuid(2) only reads this process's credentials.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this test can run programs as root: it is root, or has
/// password-less sudo.
pub fn can_be_root() -> bool {
    root()
        || Command::new("sudo")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success())
}

/// `program` run as root.
pub fn as_root(program: &str) -> Command {
    if root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", program]);
        c
    }
}

/// Whether a system tool runs; in CI its absence fails the test.
pub fn tool_available(tool: &str, package: &str) -> bool {
    let runs = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    require_tool(runs, tool, package)
}

/// [`tool_available`] for a tool whose version flag exits non-zero (SIPp's
/// `-v` exits 99): installed is enough.
pub fn tool_answers(tool: &str, version_arg: &str, package: &str) -> bool {
    let installed = Command::new(tool).arg(version_arg).output().is_ok();
    require_tool(installed, tool, package)
}

fn require_tool(ok: bool, tool: &str, package: &str) -> bool {
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required in CI: apt-get install {package} (.ci/run does this)");
        }
        eprintln!("SKIPPED: {tool} not installed (apt-get install {package})");
    }
    ok
}

/// tshark's reading of `pcap` (with `options`, such as a key log): the
/// `fields` of each frame `filter` selects, a line each. `finished`: the
/// capture is complete, so tshark must read it cleanly (a file still being
/// written may end mid-packet).
pub fn tshark_fields(pcap: &Path, options: &[String], filter: &str, fields: &[&str], finished: bool) -> String {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(pcap)
        .args(options)
        .args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success() || !finished,
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// How many RELOAD messages of each message code tshark finds in the
/// frames `filter` selects.
pub fn reload_codes(
    pcap: &Path,
    options: &[String],
    filter: &str,
    finished: bool,
) -> std::collections::BTreeMap<u16, usize> {
    tshark_fields(pcap, options, filter, &["reload.message.code"], finished)
        .split(['\n', ','])
        .filter_map(|c| c.trim().parse::<u16>().ok())
        .fold(std::collections::BTreeMap::new(), |mut m, c| {
            *m.entry(c).or_default() += 1;
            m
        })
}

/// A `dumpcap` capture on the loopback interface, stopped and flushed on
/// [`Capture::finish`] (or killed when dropped).
pub struct Capture {
    pub child: Child,
    pub file: PathBuf,
}

impl Capture {
    pub fn start(dir: &Path, filter: &str) -> Capture {
        let file = dir.join("overlay.pcapng");
        let log = dir.join("dumpcap.log");
        let child = Command::new("dumpcap")
            .args(["-i", "lo", "-f", filter, "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut capture = Capture { child, file };
        wait_for(Duration::from_secs(10), "dumpcap to start capturing", || {
            if let Ok(Some(status)) = capture.child.try_wait() {
                panic!(
                    "dumpcap exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Capturing on"))
        });
        capture
    }

    pub fn finish(mut self) -> PathBuf {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let child = &mut self.child;
        wait_for(Duration::from_secs(10), "dumpcap to write its file", || {
            child.try_wait().unwrap().is_some()
        });
        self.file.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
