//! README's "An office LAN", off loopback: three peers on three hosts and
//! the phones on a fourth, each host a network namespace on one bridge
//! (10.84.0.0/24) that the test creates and removes. The peers enroll over
//! the LAN, join through the configured bootstrap peer, and SIPp phones
//! register with two of them and call across the LAN.

mod common;
mod phones;

use common::netns::{can_build_namespaces, Lan};
use common::*;
use phones::Scenarios;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const DOMAIN: &str = "office.test";
const PASSWORD: &str = "office-peer-pw";

/// Issue 32: the office LAN of the README, on three hosts and a phones'
/// host. alice is served by the peer on host 0, bob by the one on host 1;
/// their phones on host 3 register over the LAN and 10 calls go from
/// alice to bob, each through both peers.
#[test]
fn three_peers_on_three_hosts_serve_phones_on_a_fourth() {
    if !can_build_namespaces("the LAN test", false) || !tool_answers("sipp", "-v", "sip-tester") {
        return;
    }
    let lan = Lan::new(4);
    let dir = scratch("lan");
    let overlay_dir = dir.join("office");
    let (a, b, c, phone_host) = (0, 1, 2, 3);
    let enroll_url = format!("https://{}:6443", lan.addr(a));

    // Host 0: the overlay, its enrollment server, the first peer.
    let init = succeeded(
        Command::new(BIN)
            .args(["init", "--dir", overlay_dir.to_str().unwrap(), "--overlay", DOMAIN])
            .args(["--user", &format!("peer:{PASSWORD}")])
            .args(["--user", "alice:alice-pw", "--user", "bob:bob-pw"])
            .args(["--enrollment-url", &format!("{enroll_url}/enroll")])
            .args(["--bootstrap", &format!("{}:6084", lan.addr(a))])
            .output()
            .unwrap(),
        "init",
    );
    let fingerprint = ca_fingerprint(&init);
    let mut procs = Procs(Vec::new());
    procs.0.push(
        lan.on(a, BIN)
            .args(["enrollment-server", "--dir", overlay_dir.to_str().unwrap()])
            .args(["--listen", &format!("{}:6443", lan.addr(a))])
            .stderr(std::fs::File::create(dir.join("enrollment.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    // Passwords from files: sudo, where the test needs it, passes no
    // environment through.
    let password_file = |name: &str, password: &str| {
        let path = dir.join(format!("{name}.pw"));
        std::fs::write(&path, password).unwrap();
        path.to_str().unwrap().to_string()
    };
    let peer_pw = password_file("peer", PASSWORD);

    // Every peer enrolls over the LAN, pinning the CA by fingerprint.
    let node_dirs: Vec<_> = (0..3).map(|i| dir.join(format!("node{i}"))).collect();
    for (host, node_dir) in node_dirs.iter().enumerate() {
        let mut last = String::new();
        wait_for(Duration::from_secs(15), "enrollment over the LAN", || {
            let out = lan
                .on(host, BIN)
                .args(["enroll", "--server", &enroll_url, "--ca-fingerprint", &fingerprint])
                .args(["--user", "peer", "--dir", node_dir.to_str().unwrap()])
                .args(["--password-file", &peer_pw])
                .output()
                .unwrap();
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.success()
        });
        assert!(node_dir.join("node.crt").exists(), "{last}");
    }
    for host in [a, b, c] {
        let addr = lan.addr(host);
        procs.0.push(
            lan.on(host, BIN)
                .args(["peer", "--dir", node_dirs[host].to_str().unwrap()])
                .args(["--listen", &format!("{addr}:6084")])
                .args(["--sip", &format!("{addr}:5060"), "--sip-peers", &format!("{addr}:5070")])
                .args(["--admin", "127.0.0.1:7084"])
                .stderr(std::fs::File::create(dir.join(format!("peer{host}.log"))).unwrap())
                .spawn()
                .unwrap(),
        );
    }
    let status = |host: usize| -> Option<node::peer::Status> {
        let out = lan
            .on(host, BIN)
            .args(["status", "--json", "--admin", "127.0.0.1:7084"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    wait_for(
        Duration::from_secs(60),
        "three peers in one ring across the LAN",
        || {
            let all: Option<Vec<_>> = [a, b, c].into_iter().map(status).collect();
            all.is_some_and(|all| node::peer::ring_consistent(all).is_ok())
        },
    );
    let s = status(b).unwrap();
    assert_eq!(s.address, format!("{}:6084", lan.addr(b)));

    // alice at host 0's peer, bob at host 1's, each added while it runs.
    for (host, user, password) in [(a, "alice", "alice-pw"), (b, "bob", "bob-pw")] {
        let out = lan
            .on(host, BIN)
            .args(["user", "add", user, "--dir", node_dirs[host].to_str().unwrap()])
            .args(["--password-file", &password_file(user, password)])
            .output()
            .unwrap();
        assert!(succeeded(out, "user add").contains("The running peer took it"));
    }

    // The phones, on their own host.
    let scenarios = Scenarios::new(&dir.join("scenarios"), DOMAIN);
    let sip = |host: usize| -> SocketAddr { format!("{}:5060", lan.addr(host)).parse().unwrap() };
    let phone_ip = lan.addr(phone_host);
    let sipp = |scenario: &std::path::Path, target: SocketAddr, port: u16, service: &str, extra: &[&str]| {
        phones::sipp_on(
            lan.on(phone_host, "sipp"),
            &phone_ip,
            "u1",
            scenario,
            target,
            port,
            service,
            extra,
        )
    };
    let register = scenarios.register("register-lan", 3600, 200);
    for (host, user, password, port) in [(a, "alice", "alice-pw", 5061), (b, "bob", "bob-pw", 5062)] {
        let extra = phones::register_args(user, password);
        let registered = sipp(&register, sip(host), port, user, &extra).status().unwrap();
        assert!(registered.success(), "{user} registers at {} over the LAN", sip(host));
    }
    let limits = ["-m", "10", "-r", "10", "-timeout", "60s", "-timeout_error"];
    let mut callee = sipp(&scenarios.named("uas_call", "alice"), sip(b), 5062, "bob", &limits)
        .spawn()
        .unwrap();
    let called = sipp(&scenarios.named("uac_call", "alice"), sip(a), 5061, "bob", &limits)
        .status()
        .unwrap();
    assert!(called.success(), "alice's 10 calls to bob across the LAN");
    assert!(callee.wait().unwrap().success(), "bob's phone answered them");

    // Bob's peer knows his phone by its address on the phones' host.
    let bob_peer = status(b).unwrap();
    let bob_contacts = &bob_peer.sip.unwrap().users;
    let bob = bob_contacts.iter().find(|u| u.user == "bob").unwrap();
    assert_eq!(bob.contacts[0].flow, format!("UDP {phone_ip}:5062"));
}
