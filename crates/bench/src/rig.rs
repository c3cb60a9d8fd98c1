//! The systems under measurement, as real processes on loopback: a p2psip
//! overlay (`p2psip demo`) and Kamailio.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
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

/// A local overlay started by `p2psip demo`; dropped, it leaves.
pub struct Demo {
    child: Child,
    pub domain: String,
    pub password: String,
    /// Each peer's SIP address (UDP and TCP).
    pub sip: Vec<SocketAddr>,
}

#[derive(serde::Deserialize)]
struct DemoFile {
    overlay: String,
    peers: Vec<DemoPeer>,
    accounts: Vec<DemoAccount>,
}

#[derive(serde::Deserialize)]
struct DemoPeer {
    sip: SocketAddr,
}

#[derive(serde::Deserialize)]
struct DemoAccount {
    password: String,
}

/// What overlay to start.
pub struct DemoSpec<'a> {
    pub peers: u16,
    pub users: &'a [String],
    /// Serve every user at this peer rather than spreading them.
    pub users_at: Option<u16>,
    pub base_port: u16,
}

impl Demo {
    pub fn start(p2psip: &Path, dir: &Path, spec: &DemoSpec) -> Result<Demo> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let log = dir.join("demo.out");
        let mut c = Command::new(p2psip);
        c.arg("demo")
            .arg("--dir")
            .arg(dir.join("overlay"))
            .args(["--peers", &spec.peers.to_string()])
            .args(["--base-port", &spec.base_port.to_string()])
            .args(["--users", &spec.users.join(",")]);
        if let Some(at) = spec.users_at {
            c.args(["--users-at", &at.to_string()]);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", p2psip.display()))?;
        let file = dir.join("overlay").join("demo.json");
        let waited = wait_until(Duration::from_secs(300), "the demo overlay to form", || {
            if let Ok(Some(status)) = child.try_wait() {
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("p2psip demo exited ({status}): {}", out.lines().last().unwrap_or(""));
            }
            Ok(file.exists())
        });
        if let Err(e) = waited {
            stop(&mut child, Duration::from_secs(10));
            return Err(e);
        }
        let demo: DemoFile = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("cannot read {}", file.display()))?;
        Ok(Demo {
            child,
            domain: demo.overlay,
            password: demo.accounts.first().map(|a| a.password.clone()).unwrap_or_default(),
            sip: demo.peers.iter().map(|p| p.sip).collect(),
        })
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(20));
    }
}

/// Kamailio as registrar (usrloc in memory) and stateful record-routing
/// proxy, from `bench/kamailio/kamailio.cfg`.
pub struct Kamailio {
    child: Child,
    pub addr: SocketAddr,
}

impl Kamailio {
    pub fn start(template: &Path, dir: &Path, addr: SocketAddr, password: &str, children: u32) -> Result<Kamailio> {
        std::fs::create_dir_all(dir)?;
        let text = std::fs::read_to_string(template).with_context(|| format!("cannot read {}", template.display()))?;
        let config = dir.join("kamailio.cfg");
        std::fs::write(
            &config,
            text.replace("LISTEN", &addr.to_string())
                .replace("PASSWORD", password)
                .replace("CHILDREN", &children.to_string()),
        )?;
        let log = dir.join("kamailio.log");
        // -DD: in the foreground, so this process owns it; -m/-M: the
        // default 64 MB of shared memory runs out under SIPp load.
        let mut child = Command::new("kamailio")
            .arg("-f")
            .arg(&config)
            .args(["-DD", "-E", "-m", "1024", "-M", "32", "-w"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start kamailio: apt-get install kamailio")?;
        let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        let options = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbench\r\nFrom: <sip:bench@{addr}>;tag=1\r\n\
             To: <sip:{addr}>\r\nCall-ID: bench-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            me = probe.local_addr()?
        );
        let ready = wait_until(Duration::from_secs(20), "kamailio to answer OPTIONS", || {
            if let Ok(Some(status)) = child.try_wait() {
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("kamailio exited ({status}): {}", out.lines().last().unwrap_or(""));
            }
            probe.send_to(options.as_bytes(), addr)?;
            let mut buf = [0u8; 2048];
            Ok(probe.recv_from(&mut buf).is_ok())
        });
        if let Err(e) = ready {
            stop(&mut child, Duration::from_secs(5));
            return Err(e);
        }
        Ok(Kamailio { child, addr })
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}

/// A fresh scratch directory.
pub fn scratch(root: &Path, name: &str) -> Result<PathBuf> {
    let d = root.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
