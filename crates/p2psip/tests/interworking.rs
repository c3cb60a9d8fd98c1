//! Whole-system tests of interworking with other SIP domains (issue 34,
//! decision 0034), with real processes on loopback: dnsmasq (Debian
//! `dnsmasq-base`) as the DNS of the other domain and of the overlay,
//! SIPp (`sip-tester`) as the phones and the other domain's servers.

mod common;
mod phones;

use common::*;
use phones::{sipp_at, Scenarios};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DOMAIN: &str = "overlay.test.invalid";
const CORP: &str = "corp.test";

/// dnsmasq answering for the zones of `records` (its options) on a free
/// port of 127.0.0.1, nothing else; killed when dropped.
struct Dns {
    child: Child,
    address: SocketAddr,
}

impl Dns {
    fn start(zones: &[&str], records: &[String]) -> Dns {
        let port = free_port();
        let mut c = Command::new("dnsmasq");
        c.args(["--keep-in-foreground", "--log-facility=-", "--no-resolv", "--no-hosts"])
            .args([
                "--conf-file=/dev/null",
                "--pid-file=",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
            ])
            .arg(format!("--port={port}"))
            .args(zones.iter().map(|z| format!("--local=/{z}/")))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = c.spawn().expect("dnsmasq starts");
        let address = loopback(port);
        wait_for(Duration::from_secs(10), "dnsmasq to answer", || {
            std::net::UdpSocket::bind("127.0.0.1:0").is_ok_and(|s| {
                // A bare DNS query for the root's SOA: any answer will do.
                let query = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1];
                s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                s.send_to(&query, address).is_ok() && s.recv(&mut [0u8; 512]).is_ok()
            })
        });
        Dns { child, address }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
