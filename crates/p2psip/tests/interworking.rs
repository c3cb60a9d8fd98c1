//! Whole-system tests of interworking with other SIP domains (issue 34,
//! decision 0034), with real processes on loopback: dnsmasq (Debian
//! `dnsmasq-base`) as the DNS of the other domain and of the overlay,
//! SIPp (`sip-tester`) as the phones and the other domain's servers.

mod common;
mod phones;

use common::*;
use phones::{sipp_at, sipp_on, Scenarios};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DOMAIN: &str = "overlay.test.invalid";
const CORP: &str = "corp.test";

/// A process of the test in a process group of its own, stopped with all
/// it forked when dropped: SIGTERM to the group (Kamailio's main process
/// then stops its workers), SIGKILL to what is left after 5 s. Through
/// `kill` run as root, since it may run as root through sudo.
struct Running {
    child: Child,
}

impl Running {
    fn spawn(mut command: Command) -> Running {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn().expect("the process starts");
        Running { child }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = as_root("kill").args(["-TERM", "--", &group]).status();
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(5) && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = as_root("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// dnsmasq answering for the zones of `records` (its options) at
/// `address`, nothing else; stopped when dropped. Port 53 needs root.
struct Dns {
    _process: Running,
    address: SocketAddr,
}

impl Dns {
    /// On a free port of 127.0.0.1.
    fn start(zones: &[&str], records: &[String]) -> Dns {
        Dns::start_at(loopback(free_port()), zones, records)
    }

    fn start_at(address: SocketAddr, zones: &[&str], records: &[String]) -> Dns {
        let mut c = if address.port() < 1024 {
            as_root("dnsmasq")
        } else {
            Command::new("dnsmasq")
        };
        c.args(["--keep-in-foreground", "--log-facility=-", "--no-resolv", "--no-hosts"])
            .args(["--conf-file=/dev/null", "--bind-interfaces", "--pid-file="])
            .arg(format!("--listen-address={}", address.ip()))
            .arg(format!("--port={}", address.port()))
            .args(zones.iter().map(|z| format!("--local=/{z}/")))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = Running::spawn(c);
        wait_for(Duration::from_secs(10), "dnsmasq to answer", || {
            std::net::UdpSocket::bind((address.ip(), 0)).is_ok_and(|s| {
                // A bare DNS query for the root's SOA: any answer will do.
                let query = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1];
                s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                s.send_to(&query, address).is_ok() && s.recv(&mut [0u8; 512]).is_ok()
            })
        });
        Dns {
            _process: process,
            address,
        }
    }
}

/// A SIPp call scenario of `tests/sipp/` from `from` (user@domain) to
/// `[service]@to_domain`.
fn call_scenario(dir: &Path, name: &str, from: &str, to_domain: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/sipp/{name}.xml"));
    let caller = from.split('@').next().unwrap();
    let text = std::fs::read_to_string(source)
        .unwrap()
        .replace("[service]@DOMAIN", &format!("[service]@{to_domain}"))
        .replace("CALLER@DOMAIN", from)
        .replace("CALLER", caller)
        .replace("DOMAIN", to_domain);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}-{caller}-{to_domain}.xml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A SIPp server of the other domain running `scenario` once on UDP `port`.
fn server(scenario: &Path, port: u16) -> Child {
    let limits = ["-m", "1", "-timeout", "60s", "-timeout_error"];
    sipp_at(scenario, loopback(5060), port, "s", &limits)
        .spawn()
        .expect("sipp starts")
}

/// A SIPp phone in one call: its scenario, the proxy it sends to, its UDP
/// port on 127.0.0.1 and its user (SIPp's `-s`).
struct Phone<'a> {
    scenario: &'a Path,
    proxy: SocketAddr,
    port: u16,
    user: &'a str,
}

/// One call: `callee`'s scenario answers while `caller`'s calls; each
/// must succeed (`what`: the caller's part and the callee's).
fn one_call(callee: Phone, caller: Phone, (caller_did, callee_did): (&str, &str)) {
    let limits = ["-m", "1", "-timeout", "60s", "-timeout_error"];
    let answering = sipp_at(callee.scenario, callee.proxy, callee.port, callee.user, &limits)
        .spawn()
        .unwrap();
    let ok = sipp_at(caller.scenario, caller.proxy, caller.port, caller.user, &limits)
        .status()
        .unwrap()
        .success();
    assert!(ok, "{caller_did}");
    finished_well(answering, callee_did);
}

fn finished_well(mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    assert!(status.success(), "{what} ({status})");
}

/// Issue 34 §1: alice, a user of the overlay, calls carol@corp.test. Her
/// peer finds corp.test's servers by NAPTR, SRV and A in a real DNS
/// server; the first (priority 10) answers 503, so the call goes on to
/// the second (§4.3), which takes it; the BYE follows the record-route.
/// A domain with no SIP server gets 404.
#[test]
fn a_user_calls_another_domain_found_by_dns_and_fails_over_on_503() {
    if !tool_answers("sipp", "-v", "sip-tester") || !tool_available("dnsmasq", "dnsmasq-base") {
        return;
    }
    let (first, second) = (free_port(), free_port());
    let dns = Dns::start(
        &[CORP],
        &[
            format!("--naptr-record={CORP},10,10,S,SIP+D2U,,_sip._udp.{CORP}"),
            format!("--srv-host=_sip._udp.{CORP},s1.{CORP},{first},10,10"),
            format!("--srv-host=_sip._udp.{CORP},s2.{CORP},{second},20,10"),
            format!("--host-record=s1.{CORP},127.0.0.1"),
            format!("--host-record=s2.{CORP},127.0.0.1"),
            "--local-ttl=60".into(),
        ],
    );
    let mut o = Overlay::create_with("iw-out", DOMAIN, &["--user", "alice:alice-pw"]);
    let dirs: Vec<PathBuf> = (0..2).map(|i| o.enroll(&format!("n{i}"))).collect();
    o.enroll_user(&dirs[0], "alice", "alice-pw");
    let sip = [loopback(free_port()), loopback(free_port())];
    let dns_arg = dns.address.to_string();
    let p0 = o.start_peer_with(
        &dirs[0],
        None,
        &["--sip", &sip[0].to_string(), "--dns-server", &dns_arg],
    );
    let p1 = o.start_peer_with(&dirs[1], Some(p0.listen), &["--sip", &sip[1].to_string()]);
    wait_consistent(&[&p0, &p1], Duration::from_secs(60), "the peers to form a ring");

    let scenarios = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let alice_port = free_port();
    scenarios.register_at(sip[0], alice_port, "alice", "alice-pw");
    let busy = server(&scenarios.named("uas_503", "alice"), first);
    let answering = server(&scenarios.named("uas_call", "alice"), second);
    let from = format!("alice@{DOMAIN}");
    let call = call_scenario(&scenarios.dir, "uac_call", &from, CORP);
    let limits = ["-m", "1", "-timeout", "60s", "-timeout_error"];
    let ok = sipp_at(&call, sip[0], alice_port, "carol", &limits)
        .status()
        .unwrap()
        .success();
    assert!(ok, "alice's call to carol@{CORP} completes");
    finished_well(busy, "the first server was tried and answered 503");
    finished_well(answering, "the second server took the call and its BYE");

    let nowhere = call_scenario(&scenarios.dir, "uac_404", &from, &format!("nothing.{CORP}"));
    let ok = sipp_at(&nowhere, sip[0], alice_port, "carol", &limits)
        .status()
        .unwrap()
        .success();
    assert!(ok, "a domain without SIP servers gets 404");
}

/// Issue 34 §6: a dual-stack peer (`--sip` once in IPv4, once in IPv6).
/// alice's phone registers and calls over IPv4; carol's domain has one
/// server, with an IPv6 address only (AAAA). The peer sends from its IPv6
/// socket, with Via and Record-Route of that family, and the call
/// completes, BYE included.
#[test]
fn a_dual_stack_peer_takes_an_ipv4_phones_call_to_a_domain_with_only_ipv6_servers() {
    if !tool_answers("sipp", "-v", "sip-tester") || !tool_available("dnsmasq", "dnsmasq-base") {
        return;
    }
    let v6_only = "v6only.test";
    let carol_port = free_port();
    let dns = Dns::start(
        &[v6_only],
        &[
            format!("--naptr-record={v6_only},10,10,S,SIP+D2U,,_sip._udp.{v6_only}"),
            format!("--srv-host=_sip._udp.{v6_only},s1.{v6_only},{carol_port},10,10"),
            format!("--host-record=s1.{v6_only},::1"),
            "--local-ttl=60".into(),
        ],
    );
    let mut o = Overlay::create_with("iw-dual", DOMAIN, &["--user", "alice:alice-pw"]);
    let dir = o.enroll("n0");
    o.enroll_user(&dir, "alice", "alice-pw");
    let (v4, v6) = (
        loopback(free_port()),
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], free_port())),
    );
    let dns_arg = dns.address.to_string();
    let args = [
        "--sip",
        &v4.to_string(),
        "--sip",
        &v6.to_string(),
        "--dns-server",
        &dns_arg,
    ];
    let peer = o.start_peer_with(&dir, None, &args);
    wait_for(Duration::from_secs(15), "the peer to start", || {
        status(peer.admin).is_some_and(|s| s.joined && s.sip.is_some())
    });

    let scenarios = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let alice_port = free_port();
    scenarios.register_at(v4, alice_port, "alice", "alice-pw");
    let limits = ["-m", "1", "-timeout", "30s", "-timeout_error"];
    // Twice: alice hangs up, then carol does, whose BYE follows the
    // Record-Route entry in her family and reaches alice's phone in its own.
    for (callee, caller, hangs_up) in [
        ("uas_call", "uac_call", "alice"),
        ("uas_call_hangs_up", "uac_call_hung_up", "carol"),
    ] {
        let carol = sipp_on(
            Command::new("sipp"),
            "::1",
            "u1",
            &scenarios.named(callee, "alice"),
            v6,
            carol_port,
            "carol",
            &limits,
        )
        .spawn()
        .expect("sipp starts");
        let call = call_scenario(&scenarios.dir, caller, &format!("alice@{DOMAIN}"), v6_only);
        let ok = sipp_at(&call, v4, alice_port, "carol", &limits)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "alice's call over IPv4 to carol@{v6_only} over IPv6 completes, {hangs_up} hanging up"
        );
        finished_well(
            carol,
            &format!("carol's phone on ::1 took the call, {hangs_up} hanging up"),
        );
    }
}

/// Issue 34 §2: a proxy peer (`--proxy-peer all`) takes a call for bob
/// of the overlay from corp.test's server (no digest of the overlay),
/// finds bob's phone at another peer and stays in the path; a peer that
/// is no proxy peer challenges the same request. The records an operator
/// publishes come from `p2psip dns-records`, served by dnsmasq.
#[test]
fn a_proxy_peer_takes_calls_from_another_domain_for_the_overlays_users() {
    if !tool_answers("sipp", "-v", "sip-tester")
        || !tool_available("dnsmasq", "dnsmasq-base")
        || !tool_answers("dig", "-v", "bind9-dnsutils")
    {
        return;
    }
    let mut o = Overlay::create_with("iw-in", DOMAIN, &["--user", "bob:bob-pw"]);
    let dirs: Vec<PathBuf> = (0..3).map(|i| o.enroll(&format!("n{i}"))).collect();
    o.enroll_user(&dirs[2], "bob", "bob-pw");
    let sip: Vec<SocketAddr> = (0..3).map(|_| loopback(free_port())).collect();
    let p0 = o.start_peer_with(&dirs[0], None, &["--sip", &sip[0].to_string()]);
    let p1 = o.start_peer_with(
        &dirs[1],
        Some(p0.listen),
        &["--sip", &sip[1].to_string(), "--proxy-peer", "all"],
    );
    let p2 = o.start_peer_with(&dirs[2], Some(p0.listen), &["--sip", &sip[2].to_string()]);
    wait_consistent(&[&p0, &p1, &p2], Duration::from_secs(60), "the peers to form a ring");

    // The records p2psip prints for the proxy peer resolve in a real DNS.
    let records = run_ok(&[
        "dns-records",
        "--domain",
        DOMAIN,
        "--proxy-peer",
        &sip[1].to_string(),
        "--format",
        "dnsmasq",
        "--ttl",
        "60",
    ]);
    let records: Vec<String> = records.lines().map(str::to_string).collect();
    let dns = Dns::start(&[DOMAIN], &records);
    let dig = Command::new("dig")
        .args(["+short", "-p", &dns.address.port().to_string(), "@127.0.0.1"])
        .args([&format!("_sip._udp.{DOMAIN}"), "SRV"])
        .output()
        .expect("dig runs");
    let srv = String::from_utf8_lossy(&dig.stdout).into_owned();
    assert!(
        srv.contains(&format!("{} proxy-peer-1.{DOMAIN}.", sip[1].port())),
        "{srv}"
    );

    let scenarios = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let bob_port = free_port();
    scenarios.register_at(sip[2], bob_port, "bob", "bob-pw");
    let limits = ["-m", "1", "-timeout", "60s", "-timeout_error"];
    let bob = sipp_at(&scenarios.named("uas_call", "carol"), sip[2], bob_port, "bob", &limits)
        .spawn()
        .unwrap();
    let from_corp = call_scenario(&scenarios.dir, "uac_call", &format!("carol@{CORP}"), DOMAIN);
    let ok = sipp_at(&from_corp, sip[1], free_port(), "bob", &limits)
        .status()
        .unwrap()
        .success();
    assert!(ok, "carol@{CORP}'s call to bob through the proxy peer completes");
    finished_well(bob, "bob's phone took the call and its BYE");

    // The same request at a peer that is no proxy peer: challenged.
    let challenged = call_scenario(&scenarios.dir, "uac_407", &format!("carol@{CORP}"), DOMAIN);
    let ok = sipp_at(&challenged, sip[0], free_port(), "bob", &limits)
        .status()
        .unwrap()
        .success();
    assert!(
        ok,
        "a peer that is no proxy peer asks corp.test's caller to authenticate"
    );
}

/// Whether the tools of a test with Kamailio are here (SIPp, dnsmasq,
/// Kamailio) and, when it needs `root` (port 53, a mount namespace for
/// Kamailio's resolv.conf), root or password-less sudo. In CI a missing
/// one fails the test.
fn kamailio_lab(root: bool) -> bool {
    if !tool_answers("sipp", "-v", "sip-tester")
        || !tool_available("dnsmasq", "dnsmasq-base")
        || !tool_answers("kamailio", "-v", "kamailio")
    {
        return false;
    }
    if root && !can_be_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Kamailio interworking test needs root or password-less sudo in CI"
        );
        eprintln!("SKIPPED: the Kamailio interworking test needs root or password-less sudo");
        return false;
    }
    true
}

/// Kamailio (`tests/kamailio/corp.cfg`) as the registrar and proxy of
/// corp.test at `listen`, reading `nameserver` from a resolv.conf of its
/// own: Kamailio reads only /etc/resolv.conf, so it runs in a mount
/// namespace where that file is bind-mounted over (REAL-TOOLS.md).
fn kamailio(dir: &Path, listen: SocketAddr, nameserver: IpAddr, password: &str) -> Running {
    start_kamailio(dir, listen, Some(nameserver), password, None)
}

/// Kamailio's TLS listener and the certificate and key files it presents.
struct KamailioTls<'a> {
    listen: SocketAddr,
    cert: &'a Path,
    key: &'a Path,
}

/// [`kamailio`], with no DNS of its own when `nameserver` is none, and a
/// TLS listener (its `tls` module) when `tls` is given.
fn start_kamailio(
    dir: &Path,
    listen: SocketAddr,
    nameserver: Option<IpAddr>,
    password: &str,
    tls: Option<KamailioTls>,
) -> Running {
    std::fs::create_dir_all(dir).unwrap();
    let mut cfg = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio/corp.cfg"))
        .unwrap()
        .replace("LISTEN", &listen.to_string())
        .replace("CORP", CORP)
        .replace("PASSWORD", password)
        .replace("CTL", &dir.join("kamailio.ctl").display().to_string());
    if let Some(tls) = &tls {
        let profile = dir.join("tls.cfg");
        std::fs::write(
            &profile,
            format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
                 certificate = {}\nprivate_key = {}\n\n[client:default]\nmethod = TLSv1.2+\n\
                 verify_certificate = no\nrequire_certificate = no\n",
                tls.cert.display(),
                tls.key.display()
            ),
        )
        .unwrap();
        cfg = cfg
            .replace("SECURE_ADDRESS", &tls.listen.to_string())
            .replace("TLS_PROFILE", &profile.display().to_string());
    }
    let cfg_file = dir.join("corp.cfg");
    std::fs::write(&cfg_file, cfg).unwrap();
    let with_tls = if tls.is_some() { "-A WITH_TLS " } else { "" };
    let run = format!(
        "exec kamailio -DD -E -m 64 -M 8 {with_tls}-f {} -w {}",
        cfg_file.display(),
        dir.display()
    );
    let log = std::fs::File::create(dir.join("kamailio.log")).unwrap();
    let mut command = match nameserver {
        Some(nameserver) => {
            let resolv = dir.join("resolv.conf");
            let options = "options attempts:1 timeout:1";
            std::fs::write(&resolv, format!("nameserver {nameserver}\n{options}\n")).unwrap();
            let mut c = as_root("unshare");
            let script = format!("mount --bind {} /etc/resolv.conf && {run}", resolv.display());
            c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", &run]);
            c
        }
    };
    command.stdout(Stdio::null()).stderr(log);
    let running = Running::spawn(command);
    let probe = std::net::UdpSocket::bind((listen.ip(), 0)).unwrap();
    probe.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    wait_for(Duration::from_secs(20), "Kamailio to answer SIP", || {
        let options = format!(
            "OPTIONS sip:{listen} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKprobe\r\nFrom: <sip:probe@{CORP}>;tag=1\r\n\
             To: <sip:{listen}>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\nContent-Length: 0\r\n\r\n",
            probe.local_addr().unwrap()
        );
        probe.send_to(options.as_bytes(), listen).is_ok() && probe.recv(&mut [0u8; 2048]).is_ok()
    });
    running
}

/// Issue 34's acceptance with Kamailio as the conventional domain
/// corp.test, both domains in one real DNS server: carol, registered at
/// Kamailio with digest, calls alice of the overlay (Kamailio finds the
/// overlay's proxy peers by the records `p2psip dns-records` printed);
/// alice calls carol (her peer finds Kamailio by corp.test's records);
/// then the first proxy peer is killed and carol's next call reaches alice
/// through the second.
#[test]
fn a_kamailio_domain_and_the_overlay_call_each_other_and_fail_over_between_proxy_peers() {
    kamailio_and_the_overlay("iw-kamailio", std::net::Ipv4Addr::LOCALHOST.into());
}

/// The same over IPv6 (issue 34 §6): phones, peers' SIP, Kamailio and the
/// DNS's AAAA records on ::1.
#[test]
fn a_kamailio_domain_and_the_overlay_call_each_other_over_ipv6() {
    kamailio_and_the_overlay("iw-kamailio-v6", std::net::Ipv6Addr::LOCALHOST.into());
}

/// Phones, the peers' SIP, Kamailio and the records on `ip`.
fn kamailio_and_the_overlay(tag: &str, ip: IpAddr) {
    if !kamailio_lab(true) {
        return;
    }
    let at = |port: u16| SocketAddr::new(ip, port);
    let mut o = Overlay::create_with(tag, DOMAIN, &["--user", "alice:alice-pw"]);
    let dirs: Vec<PathBuf> = (0..4).map(|i| o.enroll(&format!("n{i}"))).collect();
    o.enroll_user(&dirs[0], "alice", "alice-pw");
    let sip: Vec<String> = (0..4).map(|_| at(free_port()).to_string()).collect();
    // A loopback address of this test's own for port 53.
    let nameserver = IpAddr::from([
        127,
        77,
        (std::process::id() % 100) as u8 + if ip.is_ipv6() { 100 } else { 0 },
        53,
    ]);
    let dns_arg = SocketAddr::new(nameserver, 53).to_string();
    let p0 = o.start_peer_with(&dirs[0], None, &["--sip", &sip[0], "--dns-server", &dns_arg]);
    let p1 = o.start_peer_with(&dirs[1], Some(p0.listen), &["--sip", &sip[1], "--proxy-peer", "all"]);
    let p2 = o.start_peer_with(&dirs[2], Some(p0.listen), &["--sip", &sip[2], "--proxy-peer", "all"]);
    let p3 = o.start_peer_with(&dirs[3], Some(p0.listen), &["--sip", &sip[3]]);
    wait_consistent(
        &[&p0, &p1, &p2, &p3],
        Duration::from_secs(60),
        "the peers to form a ring",
    );

    let corp_server = at(free_port());
    let published = run_ok(&[
        "dns-records",
        "--domain",
        DOMAIN,
        "--proxy-peer",
        &sip[1],
        "--proxy-peer",
        &sip[2],
        "--format",
        "dnsmasq",
        "--ttl",
        "60",
    ]);
    let mut records: Vec<String> = published.lines().map(str::to_string).collect();
    records.extend([
        format!("--naptr-record={CORP},10,10,S,SIP+D2U,,_sip._udp.{CORP}"),
        format!("--srv-host=_sip._udp.{CORP},sip.{CORP},{},10,10", corp_server.port()),
        format!("--host-record=sip.{CORP},{ip}"),
    ]);
    let _dns = Dns::start_at(SocketAddr::new(nameserver, 53), &[CORP, DOMAIN], &records);
    let _kamailio = kamailio(&o.dir.join("kamailio"), corp_server, nameserver, "carol-pw");

    let overlay_phones = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let corp_phones = Scenarios::new(&o.dir.join("corp-scenarios"), CORP);
    let (alice_at, alice_port, carol_port) = (sip[0].parse().unwrap(), free_port(), free_port());
    let local_ip = ip.to_string();
    overlay_phones.register_from(&local_ip, alice_at, alice_port, "alice", "alice-pw");
    corp_phones.register_from(&local_ip, corp_server, carol_port, "carol", "carol-pw");
    let limits = ["-m", "1", "-timeout", "60s", "-timeout_error"];
    let phone = |scenario: &Path, target: SocketAddr, port: u16, service: &str| {
        sipp_on(
            Command::new("sipp"),
            &local_ip,
            "u1",
            scenario,
            target,
            port,
            service,
            &limits,
        )
    };
    let carol_calls_alice = |what: &str| {
        let alice = phone(
            &overlay_phones.named("uas_call", "carol"),
            alice_at,
            alice_port,
            "alice",
        )
        .spawn()
        .unwrap();
        let call = call_scenario(&corp_phones.dir, "uac_call", &format!("carol@{CORP}"), DOMAIN);
        let ok = phone(&call, corp_server, carol_port, "alice")
            .status()
            .unwrap()
            .success();
        assert!(ok, "{what}: carol's call to alice through Kamailio completes");
        finished_well(alice, &format!("{what}: alice's phone took the call and its BYE"));
    };
    carol_calls_alice("from corp.test");

    let carol = phone(
        &corp_phones.named("uas_call", "alice"),
        corp_server,
        carol_port,
        "carol",
    )
    .spawn()
    .unwrap();
    let call = call_scenario(&overlay_phones.dir, "uac_call", &format!("alice@{DOMAIN}"), CORP);
    let ok = phone(&call, alice_at, alice_port, "carol").status().unwrap().success();
    assert!(ok, "alice's call to carol@{CORP} completes");
    finished_well(carol, "carol's phone at Kamailio took the call and its BYE");

    // The first proxy peer dies; Kamailio's next call times out on it and
    // goes to the second, which the DNS names next.
    o.procs.0[p1.child].kill().unwrap();
    o.procs.0[p1.child].wait().unwrap();
    wait_consistent(
        &[&p0, &p2, &p3],
        Duration::from_secs(60),
        "the ring to close without the first proxy peer",
    );
    carol_calls_alice("after the first proxy peer died");
}

/// `dns-records` of a running demo's proxy peers, as dnsmasq options
/// (without the TTL option, which the caller gives once).
fn demo_records(demo: &Demo) -> Vec<String> {
    let domain = demo.file["overlay"].as_str().unwrap().to_string();
    let mut args = vec!["dns-records".to_string(), "--domain".into(), domain];
    for peer in demo.file["proxy_peers"].as_array().unwrap() {
        args.extend(["--proxy-peer".to_string(), peer.as_str().unwrap().to_string()]);
    }
    args.extend(["--format".into(), "dnsmasq".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&args)
        .lines()
        .filter(|l| !l.starts_with("--local-ttl"))
        .map(str::to_string)
        .collect()
}

/// Issue 34 §4: two overlays, each a `p2psip demo` with a proxy peer and
/// its own domain, call each other by the same DNS: alice of office-a
/// reaches bob of office-b and bob reaches alice. Their users are on peers
/// that are not proxy peers, so calls out go through the overlay to the
/// proxy peer its configuration lists (decision 0036).
#[test]
fn two_overlays_call_each_other_through_their_proxy_peers() {
    if !tool_answers("sipp", "-v", "sip-tester") || !tool_available("dnsmasq", "dnsmasq-base") {
        return;
    }
    let dns_at = loopback(free_port());
    let dns_arg = dns_at.to_string();
    let start = |tag: &str, domain: &str, user: &str| {
        let args = [
            "--peers",
            "3",
            "--overlay",
            domain,
            "--users",
            user,
            "--users-at",
            "1",
            "--proxy-peers",
            "1",
            "--dns-server",
            &dns_arg,
        ];
        Demo::start(tag, &args)
    };
    let (a, b) = (
        start("iw-office-a", "office-a.test", "alice"),
        start("iw-office-b", "office-b.test", "bob"),
    );
    let mut records = demo_records(&a);
    records.extend(demo_records(&b));
    records.push("--local-ttl=60".into());
    let _dns = Dns::start_at(dns_at, &["office-a.test", "office-b.test"], &records);

    let registrar =
        |demo: &Demo| -> SocketAddr { demo.file["accounts"][0]["registrar"].as_str().unwrap().parse().unwrap() };
    let (alice_at, bob_at) = (registrar(&a), registrar(&b));
    let office_a = Scenarios::new(&a.dir.join("scenarios"), "office-a.test");
    let office_b = Scenarios::new(&b.dir.join("scenarios"), "office-b.test");
    let (alice_port, bob_port) = (free_port(), free_port());
    office_a.register_at(alice_at, alice_port, "alice", "p2psip-demo");
    office_b.register_at(bob_at, bob_port, "bob", "p2psip-demo");

    let call = call_scenario(&office_a.dir, "uac_call", "alice@office-a.test", "office-b.test");
    one_call(
        Phone {
            scenario: &office_b.named("uas_call", "alice"),
            proxy: bob_at,
            port: bob_port,
            user: "bob",
        },
        Phone {
            scenario: &call,
            proxy: alice_at,
            port: alice_port,
            user: "bob",
        },
        (
            "alice@office-a.test's call to bob@office-b.test completes",
            "bob's phone took alice's call and its BYE",
        ),
    );
    // alice's peer is not a proxy peer: her call went out through
    // office-a's (decision 0036).
    let proxy_peer_admin: SocketAddr = a.file["peers"][0]["admin"].as_str().unwrap().parse().unwrap();
    assert!(
        metric(proxy_peer_admin, "p2psip_sip_requests_total{method=\"INVITE\"}") >= 1.0,
        "alice's INVITE passed office-a's proxy peer"
    );

    let call = call_scenario(&office_b.dir, "uac_call", "bob@office-b.test", "office-a.test");
    one_call(
        Phone {
            scenario: &office_a.named("uas_call", "bob"),
            proxy: alice_at,
            port: alice_port,
            user: "alice",
        },
        Phone {
            scenario: &call,
            proxy: bob_at,
            port: bob_port,
            user: "alice",
        },
        (
            "bob@office-b.test's call to alice@office-a.test completes",
            "alice's phone took bob's call and its BYE",
        ),
    );
}

/// What Kamailio's location table holds (`kamcmd ul.dump`).
fn kamailio_locations(dir: &Path) -> String {
    let socket = format!("unix:{}", dir.join("kamailio.ctl").display());
    let out = as_root("kamcmd")
        .args(["-s", &socket, "ul.dump"])
        .output()
        .expect("kamcmd runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 34 §3: alice of the overlay also has an account at corp.test,
/// dave, and her phone registers it through her peer (the IMS way: the
/// peer finds corp.test's registrar by DNS, adds its Path and passes
/// Kamailio's digest challenge through). Kamailio's location table then
/// holds the Path through the peer, carol's call to dave comes back
/// through it to the phone, and the phone calls carol as dave.
#[test]
fn a_user_registers_an_account_at_home_through_the_overlay_and_is_reached_by_path() {
    home_registration_at_kamailio("iw-home", 78, false);
}

/// The same through a proxy peer (decision 0036): alice's peer has no DNS
/// and is not listed; the operator publishes a configuration listing the
/// other peer as the overlay's proxy peer while both run. dave's REGISTER
/// then goes through it, Kamailio stores both peers' Path entries, and
/// the calls both ways pass both peers.
#[test]
fn a_home_registration_goes_through_the_configurations_proxy_peer() {
    home_registration_at_kamailio("iw-home-pp", 80, true);
}

/// `lab`: the second byte of the loopback address this test's DNS server
/// listens on (port 53), so that tests running at once do not share one.
fn home_registration_at_kamailio(tag: &str, lab: u8, through_proxy_peer: bool) {
    if !kamailio_lab(true) {
        return;
    }
    let mut o = Overlay::create_with(tag, DOMAIN, &["--user", "alice:alice-pw"]);
    let dirs: Vec<PathBuf> = (0..2).map(|i| o.enroll(&format!("n{i}"))).collect();
    o.enroll_user(&dirs[0], "alice", "alice-pw");
    let sip: Vec<String> = (0..2).map(|_| loopback(free_port()).to_string()).collect();
    let nameserver = IpAddr::from([127, lab, (std::process::id() % 200) as u8, 53]);
    let dns_arg = SocketAddr::new(nameserver, 53).to_string();
    let (dns_at_0, dns_at_1): (&[&str], &[&str]) = if through_proxy_peer {
        (&[], &["--dns-server", &dns_arg])
    } else {
        (&["--dns-server", &dns_arg], &[])
    };
    let p0 = o.start_peer_with(&dirs[0], None, &[&["--sip", &sip[0]][..], dns_at_0].concat());
    let p1 = o.start_peer_with(&dirs[1], Some(p0.listen), &[&["--sip", &sip[1]][..], dns_at_1].concat());
    wait_consistent(&[&p0, &p1], Duration::from_secs(60), "the peers to form a ring");
    if through_proxy_peer {
        let proxy_peer = status(p1.admin).unwrap().node_id;
        let element = format!(
            "<p2psip:proxy-peers outsiders=\"none\"><p2psip:proxy-peer>{proxy_peer}</p2psip:proxy-peer></p2psip:proxy-peers>\n    <required-kinds>"
        );
        o.publish_config(p0.admin, |shown| shown.replacen("<required-kinds>", &element, 1));
        wait_for(Duration::from_secs(10), "both peers on the new configuration", || {
            [&p0, &p1]
                .iter()
                .all(|p| status(p.admin).is_some_and(|s| s.configuration_sequence == 2))
        });
    }
    let corp_server = loopback(free_port());
    let records = [
        format!("--naptr-record={CORP},10,10,S,SIP+D2U,,_sip._udp.{CORP}"),
        format!("--srv-host=_sip._udp.{CORP},sip.{CORP},{},10,10", corp_server.port()),
        format!("--host-record=sip.{CORP},127.0.0.1"),
        "--local-ttl=60".to_string(),
    ];
    let _dns = Dns::start_at(SocketAddr::new(nameserver, 53), &[CORP], &records);
    let kamailio_dir = o.dir.join("kamailio");
    let _kamailio = kamailio(&kamailio_dir, corp_server, nameserver, "corp-pw");

    let overlay_phones = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let corp_phones = Scenarios::new(&o.dir.join("corp-scenarios"), CORP);
    let alice_at: SocketAddr = sip[0].parse().unwrap();
    let (alice_port, carol_port) = (free_port(), free_port());
    overlay_phones.register_at(alice_at, alice_port, "alice", "alice-pw");
    // The same phone registers dave@corp.test through its peer.
    corp_phones.register_at(alice_at, alice_port, "dave", "corp-pw");
    corp_phones.register_at(corp_server, carol_port, "carol", "corp-pw");
    let locations = kamailio_locations(&kamailio_dir);
    if through_proxy_peer {
        let alices_peer = status(p0.admin).unwrap().sip.unwrap().peers;
        let proxy_peers_entry = locations.find(&format!("@{};lr>", sip[1]));
        let alices_peers_entry = locations.find(&format!("@{alices_peer};transport=tls;lr>"));
        assert!(
            proxy_peers_entry.is_some() && proxy_peers_entry < alices_peers_entry,
            "dave's binding at Kamailio carries the proxy peer's Path, then alice's peer's: {locations}"
        );
    } else {
        assert!(
            locations.contains(&format!("@{alice_at};lr>")),
            "dave's binding at Kamailio carries the peer's Path: {locations}"
        );
    }

    let call = call_scenario(&corp_phones.dir, "uac_call", &format!("carol@{CORP}"), CORP);
    one_call(
        Phone {
            scenario: &corp_phones.named("uas_call", "carol"),
            proxy: alice_at,
            port: alice_port,
            user: "dave",
        },
        Phone {
            scenario: &call,
            proxy: corp_server,
            port: carol_port,
            user: "dave",
        },
        (
            &format!("carol's call to dave@{CORP} completes"),
            "dave's phone took carol's call, through the Path, and its BYE",
        ),
    );
    let passed = |peer: &Peer| {
        std::fs::read_to_string(&peer.log)
            .unwrap()
            .contains(&format!("from carol@{CORP} to dave@{CORP} answered"))
    };
    assert!(passed(&p0), "the call went through alice's peer");
    assert_eq!(
        passed(&p1),
        through_proxy_peer,
        "and through the proxy peer only when there is one"
    );

    let call = call_scenario(&corp_phones.dir, "uac_call", &format!("dave@{CORP}"), CORP);
    one_call(
        Phone {
            scenario: &corp_phones.named("uas_call", "dave"),
            proxy: corp_server,
            port: carol_port,
            user: "carol",
        },
        Phone {
            scenario: &call,
            proxy: alice_at,
            port: alice_port,
            user: "carol",
        },
        (
            &format!("dave's call to carol@{CORP} through his peer completes"),
            "carol's phone took dave's call and its BYE",
        ),
    );
}

/// A CA for `domain` (`p2psip init`) and the certificate it issues for
/// that domain (`p2psip sip-cert`): the CA's certificate, the chain and key.
fn domain_certificate(dir: &Path, domain: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_dir = dir.join(format!("{domain}-ca"));
    run_ok(&[
        "init",
        "--dir",
        ca_dir.to_str().unwrap(),
        "--overlay",
        domain,
        "--user",
        "ops:ops-pw",
    ]);
    let (cert, key) = sip_certificate(&ca_dir, &dir.join(format!("{domain}-cert")));
    (ca_dir.join("ca.crt"), cert, key)
}

/// Issue 34 §5: corp.test's DNS asks for TLS (NAPTR SIPS+D2T); alice's
/// peer calls carol at Kamailio over TLS, checking that Kamailio's
/// certificate names corp.test. Kamailio then presents one for another
/// name, from a CA the peer trusts as well: the peer refuses it and
/// alice's call fails (500) instead of going to the wrong server.
#[test]
fn a_call_to_another_domain_goes_over_tls_to_a_server_whose_certificate_names_it() {
    if !kamailio_lab(false) {
        return;
    }
    let mut o = Overlay::create_with("iw-tls", DOMAIN, &["--user", "alice:alice-pw"]);
    let (corp_ca, corp_cert, corp_key) = domain_certificate(&o.dir, CORP);
    let (wrong_ca, wrong_cert, wrong_key) = domain_certificate(&o.dir, "wrong.test");
    let dirs: Vec<PathBuf> = (0..2).map(|i| o.enroll(&format!("n{i}"))).collect();
    o.enroll_user(&dirs[0], "alice", "alice-pw");
    let (udp, tls) = (loopback(free_port()), loopback(free_port()));
    let dns_at = loopback(free_port());
    let _dns = Dns::start_at(
        dns_at,
        &[CORP],
        &[
            format!("--naptr-record={CORP},10,10,S,SIPS+D2T,,_sips._tcp.{CORP}"),
            format!("--srv-host=_sips._tcp.{CORP},sip.{CORP},{},10,10", tls.port()),
            format!("--host-record=sip.{CORP},127.0.0.1"),
            "--local-ttl=60".into(),
        ],
    );
    let sip = [loopback(free_port()), loopback(free_port())];
    let (sip0, dns_arg) = (sip[0].to_string(), dns_at.to_string());
    // TLS to other domains takes a TLS listener of the peer's own.
    let (own_cert, own_key) = sip_certificate(&o.dir.join("overlay"), &o.dir.join("overlay-cert"));
    let own_tls = loopback(free_port()).to_string();
    let p0 = o.start_peer_with(
        &dirs[0],
        None,
        &[
            "--sip",
            &sip0,
            "--sip-tls",
            &own_tls,
            "--sip-tls-cert",
            own_cert.to_str().unwrap(),
            "--sip-tls-key",
            own_key.to_str().unwrap(),
            "--dns-server",
            &dns_arg,
            "--sip-tls-ca",
            corp_ca.to_str().unwrap(),
            "--sip-tls-ca",
            wrong_ca.to_str().unwrap(),
        ],
    );
    let p1 = o.start_peer_with(&dirs[1], Some(p0.listen), &["--sip", &sip[1].to_string()]);
    wait_consistent(&[&p0, &p1], Duration::from_secs(60), "the peers to form a ring");

    let overlay_phones = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let corp_phones = Scenarios::new(&o.dir.join("corp-scenarios"), CORP);
    let (alice_port, carol_port) = (free_port(), free_port());
    overlay_phones.register_at(sip[0], alice_port, "alice", "alice-pw");
    let limits = ["-m", "1", "-timeout", "60s", "-timeout_error"];
    let from = format!("alice@{DOMAIN}");
    {
        let tls_server = KamailioTls {
            listen: tls,
            cert: &corp_cert,
            key: &corp_key,
        };
        let _kamailio = start_kamailio(&o.dir.join("kamailio"), udp, None, "corp-pw", Some(tls_server));
        corp_phones.register_at(udp, carol_port, "carol", "corp-pw");
        let call = call_scenario(&overlay_phones.dir, "uac_call", &from, CORP);
        one_call(
            Phone {
                scenario: &corp_phones.named("uas_call", "alice"),
                proxy: udp,
                port: carol_port,
                user: "carol",
            },
            Phone {
                scenario: &call,
                proxy: sip[0],
                port: alice_port,
                user: "carol",
            },
            (
                &format!("alice's call to carol@{CORP} over TLS completes"),
                "carol's phone took the call and its BYE",
            ),
        );
    }
    let tls_server = KamailioTls {
        listen: tls,
        cert: &wrong_cert,
        key: &wrong_key,
    };
    let _kamailio = start_kamailio(&o.dir.join("kamailio-wrong"), udp, None, "corp-pw", Some(tls_server));
    let refused = call_scenario(&overlay_phones.dir, "uac_500", &from, CORP);
    let ok = sipp_at(&refused, sip[0], alice_port, "carol", &limits)
        .status()
        .unwrap()
        .success();
    assert!(ok, "a server whose certificate names another domain gets no call: 500");
    let log = std::fs::read_to_string(&p0.log).unwrap();
    assert!(
        log.contains(&format!("not a server of {CORP}")),
        "the peer says why: {log}"
    );
}

/// Issue 34 §5, the other way: Kamailio reaches the overlay's proxy peer
/// over TLS. The overlay publishes only its TLS records (`p2psip
/// dns-records --proxy-peer-tls`), so carol's call to alice can only come
/// in over TLS; the proxy peer presents the overlay domain's certificate
/// (`p2psip sip-cert`); carol's BYE follows the route set back over TLS.
#[test]
fn a_kamailio_domain_calls_into_the_overlay_over_tls() {
    if !kamailio_lab(true) {
        return;
    }
    let mut o = Overlay::create_with("iw-tls-in", DOMAIN, &["--user", "alice:alice-pw"]);
    let (_, corp_cert, corp_key) = domain_certificate(&o.dir, CORP);
    let (cert, key) = sip_certificate(&o.dir.join("overlay"), &o.dir.join("overlay-cert"));
    let dirs: Vec<PathBuf> = (0..2).map(|i| o.enroll(&format!("n{i}"))).collect();
    o.enroll_user(&dirs[1], "alice", "alice-pw");
    let sip = [loopback(free_port()), loopback(free_port())];
    let proxy_tls = loopback(free_port());
    let proxy_args = [
        "--sip".to_string(),
        sip[0].to_string(),
        "--proxy-peer".into(),
        "all".into(),
        "--sip-tls".into(),
        proxy_tls.to_string(),
        "--sip-tls-cert".into(),
        cert.display().to_string(),
        "--sip-tls-key".into(),
        key.display().to_string(),
    ];
    let proxy_args: Vec<&str> = proxy_args.iter().map(String::as_str).collect();
    let p0 = o.start_peer_with(&dirs[0], None, &proxy_args);
    let p1 = o.start_peer_with(&dirs[1], Some(p0.listen), &["--sip", &sip[1].to_string()]);
    wait_consistent(&[&p0, &p1], Duration::from_secs(60), "the peers to form a ring");

    let published = run_ok(&[
        "dns-records",
        "--domain",
        DOMAIN,
        "--proxy-peer",
        &sip[0].to_string(),
        "--proxy-peer-tls",
        &proxy_tls.to_string(),
        "--format",
        "dnsmasq",
        "--ttl",
        "60",
    ]);
    // Only the TLS records, and the host's address.
    let records: Vec<String> = published
        .lines()
        .filter(|l| l.contains("SIPS+D2T") || l.contains("_sips._tcp") || !l.contains("_sip"))
        .map(str::to_string)
        .collect();
    assert!(records.iter().any(|r| r.contains("SIPS+D2T")), "{published}");
    let nameserver = IpAddr::from([127, 79, (std::process::id() % 200) as u8, 53]);
    let _dns = Dns::start_at(SocketAddr::new(nameserver, 53), &[DOMAIN], &records);
    let (corp_udp, corp_tls) = (loopback(free_port()), loopback(free_port()));
    let tls_server = KamailioTls {
        listen: corp_tls,
        cert: &corp_cert,
        key: &corp_key,
    };
    let _kamailio = start_kamailio(
        &o.dir.join("kamailio"),
        corp_udp,
        Some(nameserver),
        "corp-pw",
        Some(tls_server),
    );

    let overlay_phones = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let corp_phones = Scenarios::new(&o.dir.join("corp-scenarios"), CORP);
    let (alice_port, carol_port) = (free_port(), free_port());
    overlay_phones.register_at(sip[1], alice_port, "alice", "alice-pw");
    corp_phones.register_at(corp_udp, carol_port, "carol", "corp-pw");
    // First carol hangs up; then alice does, and her BYE leaves the proxy
    // peer for Kamailio's TLS address over the connection Kamailio opened
    // (connection reuse).
    for (caller, callee, what) in [
        (
            "uac_call",
            "uas_call",
            [
                "carol's call to alice comes in over TLS and completes",
                "alice's phone took the call and its BYE",
            ],
        ),
        (
            "uac_call_hung_up",
            "uas_call_hangs_up",
            [
                "carol's phone gets alice's BYE through Kamailio",
                "alice's BYE was answered",
            ],
        ),
    ] {
        let call = call_scenario(&corp_phones.dir, caller, &format!("carol@{CORP}"), DOMAIN);
        one_call(
            Phone {
                scenario: &overlay_phones.named(callee, "carol"),
                proxy: sip[1],
                port: alice_port,
                user: "alice",
            },
            Phone {
                scenario: &call,
                proxy: corp_udp,
                port: carol_port,
                user: "alice",
            },
            (what[0], what[1]),
        );
    }
}
