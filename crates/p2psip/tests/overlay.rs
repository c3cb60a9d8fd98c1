//! Whole-system tests: real `p2psip` processes on loopback. An overlay is
//! created with `init`, nodes enroll through a running
//! `enrollment-server`, peers join over TLS links, and the ring is judged
//! through each peer's admin API.

use node::peer::{FetchedCertificate, RingWalk, Status};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_p2psip");
const PASSWORD: &str = "correct horse";

/// A port below Linux's ephemeral range (32768-60999), so no outgoing
/// connection can take it between this check and the peer's bind; each
/// test process walks its own stretch.
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 100) * 120;
    loop {
        let port = (20_000 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("p2psip-overlay-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "p2psip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills every process it started when dropped, so a failing test leaves
/// nothing running.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Peer {
    child: usize,
    admin: SocketAddr,
    listen: SocketAddr,
    log: PathBuf,
}

struct Overlay {
    dir: PathBuf,
    procs: Procs,
    server: String,
}

impl Overlay {
    /// `init` plus a running enrollment server.
    fn create(tag: &str, name: &str) -> Overlay {
        let dir = scratch(tag);
        let port = free_port();
        let overlay_dir = dir.join("overlay");
        run_ok(&[
            "init",
            "--dir",
            overlay_dir.to_str().unwrap(),
            "--overlay",
            name,
            "--user",
            &format!("peer:{PASSWORD}"),
            "--enrollment-url",
            &format!("https://127.0.0.1:{port}/enroll"),
        ]);
        let server = Command::new(BIN)
            .args(["enrollment-server", "--dir", overlay_dir.to_str().unwrap(), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
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

    fn enroll(&self, name: &str) -> PathBuf {
        let node_dir = self.dir.join(name);
        run_ok(&[
            "enroll",
            "--server",
            &self.server,
            "--ca-cert",
            self.dir.join("overlay/ca.crt").to_str().unwrap(),
            "--user",
            "peer",
            "--password",
            PASSWORD,
            "--dir",
            node_dir.to_str().unwrap(),
        ]);
        node_dir
    }

    fn start_peer(&mut self, node_dir: &Path, bootstrap: Option<SocketAddr>) -> Peer {
        let listen = loopback(free_port());
        self.start_peer_at(node_dir, listen, bootstrap, None)
    }

    /// A peer on a chosen listen address, writing its TLS secrets to
    /// `key_log` (SSLKEYLOGFILE) if given.
    fn start_peer_at(
        &mut self,
        node_dir: &Path,
        listen: SocketAddr,
        bootstrap: Option<SocketAddr>,
        key_log: Option<&Path>,
    ) -> Peer {
        let admin = loopback(free_port());
        let log = node_dir.join("peer.log");
        let mut cmd = Command::new(BIN);
        cmd.args(["peer", "--dir", node_dir.to_str().unwrap()])
            .args(["--listen", &listen.to_string(), "--admin", &admin.to_string()])
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

fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

fn get<T: serde::de::DeserializeOwned>(admin: SocketAddr, path: &str) -> Option<T> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(1)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).ok()?;
    serde_json::from_str(raw.split_once("\r\n\r\n")?.1).ok()
}

fn status(admin: SocketAddr) -> Option<Status> {
    get(admin, "/status")
}

/// The ring is consistent: every peer joined, each one's successor names
/// it as predecessor, and following successors visits exactly `peers`.
fn ring_consistent(peers: &[&Peer]) -> Result<(), String> {
    let mut by_id: BTreeMap<String, Status> = BTreeMap::new();
    for p in peers {
        let s = status(p.admin).ok_or(format!("{} does not answer", p.admin))?;
        if !s.joined {
            return Err(format!("{} not joined", s.node_id));
        }
        by_id.insert(s.node_id.clone(), s);
    }
    for (id, s) in &by_id {
        let succ = s.successors.first().ok_or(format!("{id} has no successor"))?;
        let next = by_id
            .get(succ)
            .ok_or(format!("{id}'s successor {succ} is not a live peer"))?;
        if next.predecessors.first() != Some(id) {
            return Err(format!("{succ} does not name {id} as predecessor"));
        }
    }
    let start = by_id.keys().next().unwrap().clone();
    let mut seen = BTreeSet::new();
    let mut at = start.clone();
    loop {
        if !seen.insert(at.clone()) {
            break;
        }
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

fn wait_consistent(peers: &[&Peer], limit: Duration, what: &str) -> Duration {
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
fn certificates_fetchable(via: &[&Peer], ids: &[String]) -> Result<(), String> {
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

fn wait_fetchable(via: &[&Peer], ids: &[String], limit: Duration, what: &str) -> Duration {
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
fn ring_walk(from: &Peer) -> Vec<String> {
    let out = run_ok(&["ring", "--json", "--admin", &from.admin.to_string()]);
    let walk: RingWalk = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(walk.complete, "{walk:?}");
    assert_eq!(walk.peers.last().map(|p| &p.node_id), Some(&walk.start));
    let mut ids: Vec<String> = walk.peers.into_iter().map(|p| p.node_id).collect();
    ids.sort();
    ids
}

fn sorted_ids(peers: &[&Peer]) -> Vec<String> {
    let mut ids: Vec<String> = peers.iter().map(|p| status(p.admin).unwrap().node_id).collect();
    ids.sort();
    ids
}

#[test]
fn twenty_peers_form_a_ring_heal_five_crashes_and_one_leaves_gracefully() {
    let mut overlay = Overlay::create("ring", "ring.p2psip.test");
    let dirs: Vec<PathBuf> = (0..20).map(|i| overlay.enroll(&format!("node{i}"))).collect();
    let first = overlay.start_peer(&dirs[0], None);
    let bootstrap = first.listen;
    wait_for(Duration::from_secs(10), "the first peer", || {
        status(first.admin).is_some_and(|s| s.joined)
    });
    let mut peers = vec![first];
    for d in &dirs[1..] {
        peers.push(overlay.start_peer(d, Some(bootstrap)));
    }
    let all: Vec<&Peer> = peers.iter().collect();
    let took = wait_consistent(&all, Duration::from_secs(30), "20 peers joining");
    eprintln!("20 peers consistent after {took:?}");
    let ids: Vec<String> = all.iter().map(|p| status(p.admin).unwrap().node_id).collect();
    let took = wait_fetchable(&all, &ids, Duration::from_secs(20), "after joining");
    eprintln!("all 20 certificates fetchable after {took:?} more");
    assert_eq!(
        ring_walk(all[3]),
        sorted_ids(&all),
        "`p2psip ring` lists exactly the 20"
    );

    // SIGKILL five peers at once: every fourth in ring order, so each
    // replica set (a peer and its two successors) keeps a live member.
    let mut ring_order: Vec<usize> = (0..peers.len()).collect();
    ring_order.sort_by_key(|&i| ids[i].clone());
    let killed: Vec<usize> = ring_order.iter().step_by(4).copied().collect();
    assert_eq!(killed.len(), 5);
    for &k in &killed {
        overlay.procs.0[peers[k].child].kill().unwrap();
        overlay.procs.0[peers[k].child].wait().unwrap();
    }
    let alive: Vec<&Peer> = peers
        .iter()
        .enumerate()
        .filter(|(i, _)| !killed.contains(i))
        .map(|(_, p)| p)
        .collect();
    let took = wait_consistent(&alive, Duration::from_secs(20), "after 5 crashes");
    eprintln!("15 peers consistent again after {took:?}");
    assert_eq!(
        ring_walk(alive[0]),
        sorted_ids(&alive),
        "`p2psip ring` lists the 15 survivors"
    );
    // The crashed peers' certificates too: their replicas survive them.
    let took = wait_fetchable(&alive, &ids, Duration::from_secs(20), "after 5 crashes");
    eprintln!("all 20 certificates fetchable after {took:?} more");

    // SIGTERM: a graceful leave, then exit status 0.
    let leaver = alive[5];
    let pid = overlay.procs.0[leaver.child].id();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let child = &mut overlay.procs.0[leaver.child];
    wait_for(Duration::from_secs(30), "the leaving peer to exit", || {
        child.try_wait().unwrap().is_some()
    });
    assert!(child.wait().unwrap().success(), "a graceful leave exits 0");
    let log = std::fs::read_to_string(&leaver.log).unwrap();
    assert!(log.contains("left the overlay"), "{log}");
    let rest: Vec<&Peer> = alive.iter().copied().filter(|p| p.admin != leaver.admin).collect();
    wait_consistent(&rest, Duration::from_secs(20), "after a graceful leave");
    // The leaver handed its data over before it went: no wait needed.
    certificates_fetchable(&rest, &ids).unwrap_or_else(|e| panic!("after a graceful leave: {e}"));
}

#[test]
fn a_peer_enrolled_by_another_ca_is_refused() {
    let mut ours = Overlay::create("ours", "same-name.p2psip.test");
    let mut theirs = Overlay::create("theirs", "same-name.p2psip.test");
    let good = ours.enroll("good");
    let bad = theirs.enroll("bad");
    let first = ours.start_peer(&good, None);
    wait_for(Duration::from_secs(10), "the first peer", || {
        status(first.admin).is_some_and(|s| s.joined)
    });
    let intruder = theirs.start_peer(&bad, Some(first.listen));
    wait_for(Duration::from_secs(20), "the refusal to be logged", || {
        std::fs::read_to_string(&first.log).is_ok_and(|l| l.contains("refused link from"))
    });
    // TLS 1.3: the dialling end judges the listener's certificate first,
    // so the intruder's own check fails and our peer sees its alert; both
    // ends log why.
    let log = std::fs::read_to_string(&first.log).unwrap();
    assert!(log.contains("UnknownCA"), "the reason is logged: {log}");
    let log = std::fs::read_to_string(&intruder.log).unwrap();
    assert!(log.contains("invalid peer certificate: UnknownIssuer"), "{log}");
    let s = status(intruder.admin).expect("the intruder still runs");
    assert!(!s.joined);
    let s = status(first.admin).unwrap();
    assert!(s.links.is_empty(), "no link to the intruder: {:?}", s.links);
}

/// Whether a system tool runs; in CI its absence fails the test.
fn tool_available(tool: &str, package: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required in CI: apt-get install {package} (.ci/run does this)");
        }
        eprintln!("SKIPPED: {tool} not installed (apt-get install {package})");
    }
    ok
}

/// A `dumpcap` capture on the loopback interface, stopped and flushed on
/// [`Capture::finish`] (or killed when dropped).
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    fn start(dir: &Path, filter: &str) -> Capture {
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

    fn finish(mut self) -> PathBuf {
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

/// Wireshark judges our wire format on live traffic: every overlay link is
/// TLS, the peers write their secrets with SSLKEYLOGFILE, and tshark,
/// given those secrets, must find each method the peers used (§6.6.2
/// framing inside TLS) and nothing it cannot parse.
#[test]
fn tshark_decodes_a_captured_overlay_session_with_nothing_malformed() {
    if !tool_available("tshark", "tshark") || !tool_available("dumpcap", "tshark") {
        return;
    }
    let mut overlay = Overlay::create("capture", "capture.p2psip.test");
    let dirs: Vec<PathBuf> = (0..5).map(|i| overlay.enroll(&format!("node{i}"))).collect();
    let listen: Vec<SocketAddr> = dirs.iter().map(|_| loopback(free_port())).collect();
    let filter = listen
        .iter()
        .map(|a| format!("tcp port {}", a.port()))
        .collect::<Vec<_>>()
        .join(" or ");
    let capture = Capture::start(&overlay.dir, &filter);

    let key_logs: Vec<PathBuf> = (0..5).map(|i| overlay.dir.join(format!("keys{i}.log"))).collect();
    let first = overlay.start_peer_at(&dirs[0], listen[0], None, Some(&key_logs[0]));
    wait_for(Duration::from_secs(10), "the first peer", || {
        status(first.admin).is_some_and(|s| s.joined)
    });
    let mut peers = vec![first];
    for i in 1..5 {
        peers.push(overlay.start_peer_at(&dirs[i], listen[i], Some(listen[0]), Some(&key_logs[i])));
    }
    let all: Vec<&Peer> = peers.iter().collect();
    wait_consistent(&all, Duration::from_secs(30), "5 peers joining");
    let ids: Vec<String> = all.iter().map(|p| status(p.admin).unwrap().node_id).collect();
    wait_fetchable(&all, &ids, Duration::from_secs(20), "after joining");
    assert_eq!(ring_walk(all[2]), sorted_ids(&all));
    let leaver = overlay.procs.0[peers[4].child].id().to_string();
    Command::new("kill").args(["-TERM", &leaver]).status().unwrap();
    let child = &mut overlay.procs.0[peers[4].child];
    wait_for(Duration::from_secs(30), "the leaving peer to exit", || {
        child.try_wait().unwrap().is_some()
    });
    let pcap = capture.finish();

    let mut secrets = String::new();
    for k in &key_logs {
        secrets.push_str(&std::fs::read_to_string(k).expect("each peer wrote its TLS secrets"));
    }
    let key_log = overlay.dir.join("keys.log");
    std::fs::write(&key_log, secrets).unwrap();
    // tshark decrypts TLS on a port whose ssl_keys entry names the
    // protocol inside; the RSA key file is a formality (TLS 1.3 uses the
    // key log).
    let pem = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/tests/data/rsa-2048.key.pem");
    let mut options = vec!["-o".to_string(), format!("tls.keylog_file:{}", key_log.display())];
    for a in &listen {
        options.push("-o".into());
        options.push(format!(
            "uat:ssl_keys:\"127.0.0.1\",\"{}\",\"reload-framing\",\"{}\",\"\"",
            a.port(),
            pem.display()
        ));
    }
    let tshark = |filter: &str, fields: &[&str]| -> String {
        let mut cmd = Command::new("tshark");
        cmd.args(["-n", "-r"]).arg(&pcap).args(&options).args(["-Y", filter]);
        cmd.args(["-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let codes: BTreeMap<u16, usize> = tshark("reload", &["reload.message.code"])
        .split(['\n', ','])
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().parse::<u16>().unwrap_or_else(|_| panic!("code {c:?}")))
        .fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c).or_default() += 1;
            m
        });
    use reload_wire::MessageCode as C;
    for (method, req, ans) in [
        ("Join", C::JOIN_REQ, C::JOIN_ANS),
        ("Update", C::UPDATE_REQ, C::UPDATE_ANS),
        ("Store", C::STORE_REQ, C::STORE_ANS),
        ("Fetch", C::FETCH_REQ, C::FETCH_ANS),
        ("Probe", C::PROBE_REQ, C::PROBE_ANS),
        ("Leave", C::LEAVE_REQ, C::LEAVE_ANS),
        ("Attach", C::ATTACH_REQ, C::ATTACH_ANS),
    ] {
        assert!(
            codes.contains_key(&req.0) && codes.contains_key(&ans.0),
            "tshark found no {method} request and answer; codes seen: {codes:?}"
        );
    }
    let bad = tshark(
        "_ws.malformed || (reload && _ws.expert.severity >= \"warning\")",
        &["frame.number", "_ws.col.Info"],
    );
    assert!(bad.trim().is_empty(), "tshark flags RELOAD frames:\n{bad}");
    eprintln!(
        "tshark decoded {} RELOAD messages: {codes:?}",
        codes.values().sum::<usize>()
    );
}
