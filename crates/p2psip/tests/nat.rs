//! The NAT lab (issue 35): public hosts and hosts behind real NATs, each
//! a network namespace the test creates, the NATs iptables MASQUERADE
//! with endpoint-independent or address-and-port-dependent mapping.
//! Peers behind them learn through their linked peers' STUN servers (RFC
//! 6940 §6.5.1.4) what address the overlay port is seen as, and how their
//! NAT maps it.

mod common;
mod phones;

use common::netns::{can_build_namespaces, Mapping, NatLab};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DOMAIN: &str = "nat.test";
const PASSWORD: &str = "nat-peer-pw";

/// An overlay made on the first public host, with the accounts `peer`
/// and `users` (each with password `USER-pw`): its directory, and the CA
/// fingerprint peers pin when they enroll.
fn make_overlay(dir: &Path, users: &[&str]) -> (PathBuf, String) {
    let accounts: Vec<String> = users.iter().map(|u| format!("{u}:{u}-pw")).collect();
    let overlay_dir = dir.join("overlay");
    let bootstrap = format!("{}:6084", NatLab::public_addr(0));
    let init = succeeded(
        Command::new(BIN)
            .args(["init", "--dir", overlay_dir.to_str().unwrap(), "--overlay", DOMAIN])
            .args(["--user", &format!("peer:{PASSWORD}")])
            .args(accounts.iter().flat_map(|a| ["--user", a.as_str()]))
            .args([
                "--enrollment-url",
                &format!("https://{}:6443/enroll", NatLab::public_addr(0)),
            ])
            .args(["--bootstrap", &bootstrap])
            .output()
            .unwrap(),
        "init",
    );
    let fingerprint = ca_fingerprint(&init);
    (overlay_dir, fingerprint)
}

/// The overlay's enrollment server, on the first public host.
fn enrollment_server(lab: &NatLab, dir: &Path, overlay_dir: &Path) -> std::process::Child {
    lab.on_public(0, BIN)
        .args(["enrollment-server", "--dir", overlay_dir.to_str().unwrap()])
        .args(["--listen", &format!("{}:6443", NatLab::public_addr(0))])
        .stderr(std::fs::File::create(dir.join("enrollment.log")).unwrap())
        .spawn()
        .unwrap()
}

/// Issue 35 §3 and §6: two public peers (one the bootstrap), a peer
/// behind an endpoint-independent NAT and one behind an
/// address-and-port-dependent NAT. The NATed peers join by dialling out,
/// ask their linked public peers' STUN servers, and report: the first
/// seen at its NAT's address on one port by both, the second at its NAT's
/// address on a different port by each; the public peers see no NAT.
#[test]
fn peers_behind_nats_learn_how_their_nat_maps_from_their_linked_peers() {
    if !can_build_namespaces("the NAT lab", true) {
        return;
    }
    let lab = NatLab::new(
        2,
        &[(Mapping::EndpointIndependent, 1), (Mapping::AddressAndPortDependent, 1)],
        30,
    );
    let dir = scratch("nat-lab");
    let (overlay_dir, fingerprint) = make_overlay(&dir, &[]);
    let mut procs = Procs(vec![enrollment_server(&lab, &dir, &overlay_dir)]);
    let password_file = dir.join("peer.pw");
    std::fs::write(&password_file, PASSWORD).unwrap();

    // The hosts: public 0 and 1, then one behind each NAT.
    let hosts = [
        (NatLab::public_addr(0), "public0"),
        (NatLab::public_addr(1), "public1"),
        (NatLab::private_addr(0, 0), "cone"),
        (NatLab::private_addr(1, 0), "symmetric"),
    ];
    let on = |i: usize, program: &str| -> Command {
        match i {
            0 => lab.on_public(0, program),
            1 => lab.on_public(1, program),
            2 => lab.behind(0, 0, program),
            _ => lab.behind(1, 0, program),
        }
    };
    let enroll_url = format!("https://{}:6443", NatLab::public_addr(0));
    let start_peer = |i: usize, procs: &mut Procs| {
        let (address, name) = &hosts[i];
        let node_dir = dir.join(name);
        let mut last = String::new();
        wait_for(Duration::from_secs(15), "enrollment across the lab", || {
            let out = on(i, BIN)
                .args(["enroll", "--server", &enroll_url, "--ca-fingerprint", &fingerprint])
                .args(["--user", "peer", "--dir", node_dir.to_str().unwrap()])
                .args(["--password-file", password_file.to_str().unwrap()])
                .output()
                .unwrap();
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.success()
        });
        assert!(node_dir.join("node.crt").exists(), "{last}");
        procs.0.push(
            on(i, BIN)
                .args(["peer", "--dir", node_dir.to_str().unwrap()])
                .args(["--listen", &format!("{address}:6084")])
                .args(["--admin", "127.0.0.1:7084"])
                .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
                .spawn()
                .unwrap(),
        );
    };
    // The bootstrap peer first, so the others find it up.
    start_peer(0, &mut procs);
    wait_for(Duration::from_secs(20), "the bootstrap peer", || {
        status_on(&on, 0).is_some_and(|s| s.joined)
    });
    start_peer(1, &mut procs);

    // What the public peers' STUN servers saw of peer `i`.
    let public_servers = [0, 1].map(|p| format!("{}:6084", NatLab::public_addr(p)));
    let public_seen = |i: usize| -> Vec<String> {
        status_on(&on, i).map_or_else(Vec::new, |s| {
            s.reflexive
                .iter()
                .filter(|r| public_servers.contains(&r.server))
                .map(|r| r.address.clone())
                .collect()
        })
    };
    let wait_seen_by_both = |i: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while public_seen(i).len() < 2 {
            if std::time::Instant::now() > deadline {
                let all: Vec<_> = (0..4).map(|i| status_on(&on, i)).collect();
                panic!("peer {i} did not hear from both public peers' STUN servers: {all:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // One NATed peer at a time: until the overlay links through ICE, two
    // NATed peers cannot link to each other, and a ring that needs that
    // link keeps one of them rejoining.
    start_peer(2, &mut procs);
    wait_seen_by_both(2);
    let cone = status_on(&on, 2).unwrap();
    let seen = public_seen(2);
    assert_eq!(cone.nat_mapping, "endpoint-independent", "{:?}", cone.reflexive);
    assert!(
        seen.iter()
            .all(|a| a.starts_with(&format!("{}:", NatLab::nat_addr(0))) && *a == seen[0]),
        "one public address and port for both servers: {seen:?}"
    );
    // `p2psip status` says it in words.
    let text = succeeded(
        on(2, BIN)
            .args(["status", "--admin", "127.0.0.1:7084"])
            .output()
            .unwrap(),
        "status",
    );
    let line = text.lines().find(|l| l.starts_with("nat ")).expect("a nat line");
    assert!(
        line.contains("endpoint-independent") && line.contains(&NatLab::nat_addr(0)),
        "{line}"
    );
    let cone_process = procs.0.pop().unwrap();
    leave(cone_process);

    start_peer(3, &mut procs);
    wait_seen_by_both(3);
    let symmetric = status_on(&on, 3).unwrap();
    let seen = public_seen(3);
    assert_eq!(
        symmetric.nat_mapping, "destination-dependent",
        "{:?}",
        symmetric.reflexive
    );
    assert!(
        seen.iter().all(|a| a.starts_with(&format!("{}:", NatLab::nat_addr(1)))) && seen[0] != seen[1],
        "the NAT's address, a port per server: {seen:?}"
    );
    // The public peers: seen where they listen (the NATed peers' servers
    // are not reachable from outside and are not counted).
    wait_for(
        Duration::from_secs(20),
        "the public peers know they are not NATed",
        || (0..2).all(|i| status_on(&on, i).is_some_and(|s| s.nat_mapping == "no NAT")),
    );
}

/// SIGTERM: the peer leaves the overlay gracefully (§10.9) and exits.
fn leave(mut peer: std::process::Child) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    unsafe { libc::kill(peer.id() as libc::pid_t, libc::SIGTERM) };
    let status = peer.wait().unwrap();
    assert!(status.success(), "the peer left and exited: {status}");
}

fn status_on(on: &dyn Fn(usize, &str) -> Command, i: usize) -> Option<node::peer::Status> {
    let out = on(i, BIN)
        .args(["status", "--json", "--admin", "127.0.0.1:7084"])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Issue 35 §5 and its acceptance: SIPp phones behind an
/// address-and-port-dependent NAT whose UDP bindings last 10 s of
/// silence. bob registers at a peer that keeps phones behind NATs
/// reachable (an OPTIONS every 4 s over the flow his REGISTER came in
/// on), carol at one with the keepalives off. After two minutes in
/// which neither phone sends anything of its own, alice's call to bob
/// reaches him and is answered; her call to carol finds the NAT binding
/// gone and fails.
#[test]
fn a_phone_behind_a_symmetric_nat_stays_reachable_through_two_silent_minutes() {
    if !can_build_namespaces("the NAT lab", true) || !tool_answers("sipp", "-v", "sip-tester") {
        return;
    }
    let lab = NatLab::new(2, &[(Mapping::AddressAndPortDependent, 1)], 10);
    let dir = scratch("nat-phones");
    let (overlay_dir, fingerprint) = make_overlay(&dir, &["alice", "bob", "carol"]);
    let mut procs = Procs(vec![enrollment_server(&lab, &dir, &overlay_dir)]);
    let password_file = |name: &str, password: &str| {
        let path = dir.join(format!("{name}.pw"));
        std::fs::write(&path, password).unwrap();
        path.to_str().unwrap().to_string()
    };
    let peer_pw = password_file("peer", PASSWORD);
    let enroll_url = format!("https://{}:6443", NatLab::public_addr(0));
    // Peer A on public host 0 keeps NATed phones open every 4 s; peer B
    // on public host 1 does not.
    let peers = [
        (0, "a", "4", ["alice", "bob"].as_slice()),
        (1, "b", "0", ["carol"].as_slice()),
    ];
    for (host, name, keepalive, users) in peers {
        let node_dir = dir.join(name);
        let address = NatLab::public_addr(host);
        let mut last = String::new();
        wait_for(Duration::from_secs(15), "enrollment", || {
            let out = lab
                .on_public(host, BIN)
                .args(["enroll", "--server", &enroll_url, "--ca-fingerprint", &fingerprint])
                .args([
                    "--user",
                    "peer",
                    "--dir",
                    node_dir.to_str().unwrap(),
                    "--password-file",
                    &peer_pw,
                ])
                .output()
                .unwrap();
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.success()
        });
        assert!(node_dir.join("node.crt").exists(), "{last}");
        for user in users {
            let out = lab
                .on_public(host, BIN)
                .args(["enroll", "--server", &enroll_url, "--ca-fingerprint", &fingerprint])
                .args(["--user", user, "--dir", node_dir.to_str().unwrap()])
                .args(["--password-file", &password_file(user, &format!("{user}-pw"))])
                .output()
                .unwrap();
            succeeded(out, &format!("{user} enrolls into peer {name}"));
        }
        procs.0.push(
            lab.on_public(host, BIN)
                .args(["peer", "--dir", node_dir.to_str().unwrap()])
                .args(["--listen", &format!("{address}:6084")])
                .args(["--sip", &format!("{address}:5060"), "--sip-nat-keepalive", keepalive])
                .args(["--admin", "127.0.0.1:7084"])
                .stderr(std::fs::File::create(dir.join(format!("peer-{name}.log"))).unwrap())
                .spawn()
                .unwrap(),
        );
        let on = |program: &str| lab.on_public(host, program);
        wait_for(Duration::from_secs(30), "the peer joined with its SIP side", || {
            let out = on(BIN).args(["status", "--json", "--admin", "127.0.0.1:7084"]).output();
            out.ok()
                .and_then(|o| serde_json::from_slice::<node::peer::Status>(&o.stdout).ok())
                .is_some_and(|s| s.joined && s.sip.is_some())
        });
    }
    let sip = |host: usize| -> std::net::SocketAddr { format!("{}:5060", NatLab::public_addr(host)).parse().unwrap() };
    let scenarios = phones::Scenarios::new(&dir.join("scenarios"), DOMAIN);
    let register = scenarios.register("register-nat", 3600, 200);
    let phone_ip = NatLab::private_addr(0, 0);
    let behind = |user: &str, peer: usize, port: u16, scenario: &std::path::Path, extra: &[&str]| {
        phones::sipp_on(
            lab.behind(0, 0, "sipp"),
            &phone_ip,
            "u1",
            scenario,
            sip(peer),
            port,
            user,
            extra,
        )
    };
    for (user, peer, port) in [("bob", 0, 5062), ("carol", 1, 5063)] {
        let password = format!("{user}-pw");
        let registered = behind(user, peer, port, &register, &phones::register_args(user, &password))
            .status()
            .unwrap();
        assert!(registered.success(), "{user} registers from behind the NAT");
    }
    // The called phones wait on the ports they registered from, answering
    // OPTIONS (-aa; SIPp counts each as a call, so no -m) and never
    // sending anything of their own.
    let wait = ["-aa", "-timeout", "300s"];
    for (user, peer, port) in [("bob", 0, 5062), ("carol", 1, 5063)] {
        let mut waiting = behind(user, peer, port, &scenarios.named("uas_call", "alice"), &wait);
        procs.0.push(waiting.spawn().unwrap());
    }
    let alice_ip = NatLab::public_addr(1);
    // alice's phone on public host 1, at peer A; `service`: whom it
    // registers as or calls.
    let alice = |scenario: &std::path::Path, service: &str, extra: &[&str]| {
        phones::sipp_on(
            lab.on_public(1, "sipp"),
            &alice_ip,
            "u1",
            scenario,
            sip(0),
            5061,
            service,
            extra,
        )
    };
    let alice_registered = alice(&register, "alice", &phones::register_args("alice", "alice-pw"))
        .status()
        .unwrap();
    assert!(alice_registered.success(), "alice registers");

    std::thread::sleep(Duration::from_secs(120));

    let call = ["-m", "1", "-timeout", "45s", "-timeout_error"];
    let to_bob = alice(&scenarios.named("uac_call", "alice"), "bob", &call)
        .status()
        .unwrap();
    assert!(
        to_bob.success(),
        "alice's call reaches bob after two silent minutes, and he answers"
    );
    let to_carol = alice(&scenarios.named("uac_call", "alice"), "carol", &call)
        .status()
        .unwrap();
    assert!(
        !to_carol.success(),
        "without keepalives carol's NAT binding is gone, and so is the call to her"
    );
    // For that reason: her peer's INVITE went unanswered (Timer B).
    let log = std::fs::read_to_string(dir.join("peer-b.log")).unwrap();
    assert!(log.contains("to carol@nat.test failed: 408"), "{log}");
}
