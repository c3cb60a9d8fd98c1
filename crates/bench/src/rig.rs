//! The systems under measurement, as real processes on loopback: a p2psip
//! overlay (`p2psip demo`) and Kamailio.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops `child` with SIGTERM, then SIGKILL if it lingers.
fn stop(child: &mut Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on a child this process spawned and still owns.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `ready` every 100 ms until it holds or `limit` passes.
pub(crate) fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

/// A local overlay started by `p2psip demo`; dropped, it leaves.
pub struct Demo {
    child: Owned,
    pub domain: String,
    pub password: String,
    /// Each peer's SIP address (UDP and TCP).
    pub sip: Vec<SocketAddr>,
    /// Each peer's process id and admin API, for footprint figures.
    pub pids: Vec<u32>,
    pub admin: Vec<SocketAddr>,
    /// Each peer's RELOAD address and node directory.
    pub reload: Vec<SocketAddr>,
    pub node_dirs: Vec<PathBuf>,
    /// The enrollment server's URL.
    pub enrollment: String,
}

#[derive(serde::Deserialize)]
struct DemoFile {
    overlay: String,
    enrollment: String,
    peers: Vec<DemoPeer>,
    accounts: Vec<DemoAccount>,
}

#[derive(serde::Deserialize)]
struct DemoPeer {
    pid: u32,
    reload: SocketAddr,
    sip: SocketAddr,
    admin: SocketAddr,
}

#[derive(serde::Deserialize)]
struct DemoAccount {
    password: String,
}

/// What overlay to start.
pub struct DemoSpec<'a> {
    pub peers: u16,
    pub users: &'a [String],
    /// The peer serving all users, or each user in order; empty spreads
    /// them (`p2psip demo --users-at`).
    pub users_at: &'a [u16],
    pub base_port: u16,
    /// The first N peers are proxy peers (`p2psip demo --proxy-peers`).
    pub proxy_peers: u16,
}

impl Demo {
    /// CPU seconds every peer of the overlay has used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        self.pids.iter().map(|pid| crate::footprint::cpu_seconds(*pid)).sum()
    }

    pub fn start(p2psip: &Path, dir: &Path, spec: &DemoSpec) -> Result<Demo> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let log = dir.join("demo.out");
        let mut c = Command::new(p2psip);
        // Warnings only: the peers' per-call log lines (issue 32) are for
        // operators; Kamailio logs no line per call either.
        c.env("P2PSIP_LOG", "warn")
            .arg("demo")
            .arg("--dir")
            .arg(dir.join("overlay"))
            .args(["--peers", &spec.peers.to_string()])
            .args(["--base-port", &spec.base_port.to_string()])
            .args(["--users", &spec.users.join(",")]);
        if spec.proxy_peers > 0 {
            c.args(["--proxy-peers", &spec.proxy_peers.to_string()]);
        }
        if !spec.users_at.is_empty() {
            let at: Vec<String> = spec.users_at.iter().map(u16::to_string).collect();
            c.args(["--users-at", &at.join(",")]);
        }
        let stdout = std::fs::File::create(&log)?;
        let errors = dir.join("demo.err");
        let mut child = Owned(
            c.stdin(Stdio::null())
                .stdout(stdout)
                .stderr(std::fs::File::create(&errors)?)
                .spawn()
                .with_context(|| format!("cannot start {}", p2psip.display()))?,
            Duration::from_secs(20),
        );
        let file = dir.join("overlay").join("demo.json");
        wait_until(Duration::from_secs(300), "the demo overlay to form", || {
            if let Ok(Some(status)) = child.0.try_wait() {
                let said = std::fs::read_to_string(&errors).unwrap_or_default();
                bail!("p2psip demo exited ({status}): {}", said.trim());
            }
            Ok(file.exists())
        })?;
        let demo: DemoFile = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("cannot read {}", file.display()))?;
        Ok(Demo {
            child,
            domain: demo.overlay,
            password: demo.accounts.first().map(|a| a.password.clone()).unwrap_or_default(),
            sip: demo.peers.iter().map(|p| p.sip).collect(),
            pids: demo.peers.iter().map(|p| p.pid).collect(),
            admin: demo.peers.iter().map(|p| p.admin).collect(),
            reload: demo.peers.iter().map(|p| p.reload).collect(),
            node_dirs: (0..demo.peers.len())
                .map(|i| dir.join("overlay").join(format!("peer{i}")))
                .collect(),
            enrollment: demo.enrollment,
        })
    }
}

impl Drop for Demo {
    /// The demo makes its peers leave one after another; the next overlay
    /// takes the same ports, so this waits until every peer is gone.
    fn drop(&mut self) {
        stop(&mut self.child.0, self.child.1);
        let start = Instant::now();
        let alive = |pid: &u32| Path::new(&format!("/proc/{pid}")).exists();
        while self.pids.iter().any(alive) && start.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in self.pids.iter().filter(|p| alive(p)) {
            if let Ok(pid) = i32::try_from(*pid) {
                // SAFETY: kill(2) on a peer the demo started; it outlived
                // the demo and its own leave.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// A child process stopped (SIGTERM, then SIGKILL after the grace) when
/// dropped, on every path.
pub struct Owned(pub Child, pub Duration);

impl Drop for Owned {
    fn drop(&mut self) {
        stop(&mut self.0, self.1);
    }
}

/// Kamailio as registrar (usrloc in memory) and stateful record-routing
/// proxy, from `bench/kamailio/kamailio.cfg`, run as operators run it:
/// forked UDP workers (issue 37 §0; `-D`, no-fork mode, had one process
/// read all SIP and overstated every ratio by 2-3x).
pub struct Kamailio {
    child: Child,
    pub addr: SocketAddr,
    /// UDP workers asked for (`children`).
    pub workers: u32,
    /// CPU seconds of each process of its group when it was up.
    cpu_at_start: BTreeMap<u32, f64>,
}

/// Where Kamailio sends requests for another domain: that domain's proxy
/// peer (the interworking measurement).
pub struct Route<'a> {
    pub domain: &'a str,
    pub proxy_peer: SocketAddr,
}

impl Kamailio {
    pub fn start(
        template: &Path,
        dir: &Path,
        addr: SocketAddr,
        password: &str,
        children: u32,
        route: Option<Route>,
    ) -> Result<Kamailio> {
        std::fs::create_dir_all(dir)?;
        let text = std::fs::read_to_string(template).with_context(|| format!("cannot read {}", template.display()))?;
        let config = dir.join("kamailio.cfg");
        std::fs::write(
            &config,
            text.replace("LISTEN", &addr.to_string())
                .replace("PASSWORD", password)
                .replace("CHILDREN", &children.to_string())
                .replace(
                    "PROXY_PEER",
                    &route
                        .as_ref()
                        .map_or("127.0.0.1:9".into(), |r| r.proxy_peer.to_string()),
                )
                .replace("OVERLAY", route.as_ref().map_or("nobody.invalid", |r| r.domain)),
        )?;
        let log = dir.join("kamailio.log");
        // -DD: the main process stays in the foreground, owned by this
        // one, and forks its workers; its own process group lets every
        // process be stopped together. -m/-M: the default 64 MB of shared
        // memory runs out under SIPp load.
        let stderr = std::fs::File::create(&log)?;
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&config)
            .args(["-DD", "-E", "-m", "1024", "-M", "32", "-w"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .context("cannot start kamailio: apt-get install kamailio")?;
        let mut kamailio = Kamailio {
            child,
            addr,
            workers: children,
            cpu_at_start: BTreeMap::new(),
        };
        let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        let options = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbench\r\nFrom: <sip:bench@{addr}>;tag=1\r\n\
             To: <sip:{addr}>\r\nCall-ID: bench-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            me = probe.local_addr()?
        );
        wait_until(Duration::from_secs(20), "kamailio to answer OPTIONS", || {
            if let Ok(Some(status)) = kamailio.child.try_wait() {
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("kamailio exited ({status}): {}", out.lines().last().unwrap_or(""));
            }
            probe.send_to(options.as_bytes(), addr)?;
            let mut buf = [0u8; 2048];
            Ok(probe.recv_from(&mut buf).is_ok())
        })?;
        let processes = kamailio.group().len();
        if processes <= children as usize {
            bail!(
                "kamailio runs {processes} processes, fewer than its {children} UDP workers and the main one: \
                 see {}",
                log.display()
            );
        }
        kamailio.cpu_at_start = kamailio.cpu_by_process();
        Ok(kamailio)
    }

    /// The processes of Kamailio's group: those whose /proc/PID/stat names
    /// the main process as their process group (field 5, proc(5)).
    fn group(&self) -> Vec<u32> {
        let leader = self.child.id().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                // After the command name's closing parenthesis: state,
                // ppid, pgrp.
                let (_, rest) = stat.rsplit_once(") ")?;
                (rest.split_whitespace().nth(2)? == leader).then_some(pid)
            })
            .collect()
    }

    /// CPU seconds of each of Kamailio's processes so far.
    fn cpu_by_process(&self) -> BTreeMap<u32, f64> {
        self.group()
            .into_iter()
            .filter_map(|pid| Some((pid, crate::footprint::cpu_seconds(pid).ok()?)))
            .collect()
    }

    /// CPU seconds all of Kamailio's processes have used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        self.group().into_iter().map(crate::footprint::cpu_seconds).sum()
    }

    /// How many of Kamailio's processes used at least 0.1 s of CPU since it
    /// started, and how many it runs: under load every UDP worker must,
    /// or the reference is not the forked Kamailio this bench claims.
    pub fn busy_processes(&self) -> (usize, usize) {
        let now = self.cpu_by_process();
        let busy = now
            .iter()
            .filter(|(pid, s)| **s - self.cpu_at_start.get(pid).copied().unwrap_or(0.0) >= 0.1)
            .count();
        (busy, now.len())
    }
}

impl Drop for Kamailio {
    /// SIGTERM to the whole group, SIGKILL to what is left after 10 s, and
    /// only then the main process reaped, so the group's ID cannot have
    /// been reused by the time it is signalled.
    fn drop(&mut self) {
        let Ok(group) = i32::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) on the process group this process created, whose
        // leader it has not reaped yet.
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) && self.group().len() > 1 {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// A fresh scratch directory.
pub fn scratch(root: &Path, name: &str) -> Result<PathBuf> {
    let d = root.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
