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
fn make_overlay(dir: &Path, users: &[&str], init_args: &[&str]) -> (PathBuf, String) {
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
            .args(init_args)
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

/// Where a host of the lab is: public host `i`, or the one host behind
/// NAT `n`.
#[derive(Debug, Clone, Copy)]
enum Site {
    Public(usize),
    Behind(usize),
}

impl Site {
    fn address(self) -> String {
        match self {
            Site::Public(i) => NatLab::public_addr(i),
            Site::Behind(n) => NatLab::private_addr(n, 0),
        }
    }
}

/// An overlay in the lab: made on public host 0, where its enrollment
/// server runs and its bootstrap peer listens (6084); each peer listens
/// on 6084 of its host and serves its admin API on 127.0.0.1:7084 there.
struct LabOverlay<'a> {
    lab: &'a NatLab,
    dir: PathBuf,
    fingerprint: String,
    password_file: PathBuf,
    procs: Procs,
}

impl<'a> LabOverlay<'a> {
    fn new(lab: &'a NatLab, tag: &str, init_args: &[&str]) -> LabOverlay<'a> {
        let dir = scratch(tag);
        let (overlay_dir, fingerprint) = make_overlay(&dir, &[], init_args);
        let procs = Procs(vec![enrollment_server(lab, &dir, &overlay_dir)]);
        let password_file = dir.join("peer.pw");
        std::fs::write(&password_file, PASSWORD).unwrap();
        LabOverlay {
            lab,
            dir,
            fingerprint,
            password_file,
            procs,
        }
    }

    fn on(&self, site: Site, program: &str) -> Command {
        match site {
            Site::Public(i) => self.lab.on_public(i, program),
            Site::Behind(n) => self.lab.behind(n, 0, program),
        }
    }

    /// Enrolls a node named `name` on `site` and starts its peer; returns
    /// the process's index in `procs`.
    fn start_peer(&mut self, site: Site, name: &str) -> usize {
        let node_dir = self.dir.join(name);
        let enroll_url = format!("https://{}:6443", NatLab::public_addr(0));
        let mut last = String::new();
        wait_for(Duration::from_secs(15), "enrollment across the lab", || {
            let out = self
                .on(site, BIN)
                .args(["enroll", "--server", &enroll_url, "--ca-fingerprint", &self.fingerprint])
                .args(["--user", "peer", "--dir", node_dir.to_str().unwrap()])
                .args(["--password-file", self.password_file.to_str().unwrap()])
                .output()
                .unwrap();
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.success()
        });
        assert!(node_dir.join("node.crt").exists(), "{last}");
        let peer = self
            .on(site, BIN)
            .args(["peer", "--dir", node_dir.to_str().unwrap()])
            .args(["--listen", &format!("{}:6084", site.address())])
            .args(["--admin", "127.0.0.1:7084"])
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        self.procs.0.push(peer);
        self.procs.0.len() - 1
    }

    fn status(&self, site: Site) -> Option<node::peer::Status> {
        let out = self
            .on(site, BIN)
            .args(["status", "--json", "--admin", "127.0.0.1:7084"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// What `p2psip CMD --admin ...` prints on `site`.
    fn cli(&self, site: Site, command: &str) -> String {
        let out = self
            .on(site, BIN)
            .args([command, "--admin", "127.0.0.1:7084"])
            .output()
            .unwrap();
        succeeded(out, command)
    }
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
    let mut overlay = LabOverlay::new(&lab, "nat-lab", &[]);
    let [public0, public1, cone, symmetric] = [Site::Public(0), Site::Public(1), Site::Behind(0), Site::Behind(1)];
    // The bootstrap peer first, so the others find it up.
    overlay.start_peer(public0, "public0");
    wait_for(Duration::from_secs(20), "the bootstrap peer", || {
        overlay.status(public0).is_some_and(|s| s.joined)
    });
    overlay.start_peer(public1, "public1");

    // What the public peers' STUN servers saw of the peer on `site`.
    let public_servers = [0, 1].map(|p| format!("{}:6084", NatLab::public_addr(p)));
    let public_seen = |overlay: &LabOverlay, site: Site| -> Vec<String> {
        overlay.status(site).map_or_else(Vec::new, |s| {
            s.reflexive
                .iter()
                .filter(|r| public_servers.contains(&r.server))
                .map(|r| r.address.clone())
                .collect()
        })
    };
    let wait_seen_by_both = |overlay: &LabOverlay, site: Site| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while public_seen(overlay, site).len() < 2 {
            if std::time::Instant::now() > deadline {
                let all: Vec<_> = [public0, public1, cone, symmetric].map(|s| overlay.status(s)).into();
                panic!("{site:?} did not hear from both public peers' STUN servers: {all:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // One NATed peer at a time: without ICE (this overlay says no-ice)
    // two NATed peers cannot link to each other, and a ring that needs
    // that link keeps one of them rejoining.
    let cone_process = overlay.start_peer(cone, "cone");
    wait_seen_by_both(&overlay, cone);
    let cone_status = overlay.status(cone).unwrap();
    let seen = public_seen(&overlay, cone);
    assert_eq!(
        cone_status.nat_mapping, "endpoint-independent",
        "{:?}",
        cone_status.reflexive
    );
    assert!(
        seen.iter()
            .all(|a| a.starts_with(&format!("{}:", NatLab::nat_addr(0))) && *a == seen[0]),
        "one public address and port for both servers: {seen:?}"
    );
    // `p2psip status` says it in words.
    let text = overlay.cli(cone, "status");
    let line = text.lines().find(|l| l.starts_with("nat ")).expect("a nat line");
    assert!(
        line.contains("endpoint-independent") && line.contains(&NatLab::nat_addr(0)),
        "{line}"
    );
    leave(overlay.procs.0.remove(cone_process));

    overlay.start_peer(symmetric, "symmetric");
    wait_seen_by_both(&overlay, symmetric);
    let symmetric_status = overlay.status(symmetric).unwrap();
    let seen = public_seen(&overlay, symmetric);
    assert_eq!(
        symmetric_status.nat_mapping, "destination-dependent",
        "{:?}",
        symmetric_status.reflexive
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
        || {
            [public0, public1]
                .iter()
                .all(|s| overlay.status(*s).is_some_and(|s| s.nat_mapping == "no NAT"))
        },
    );
}

/// Issue 35 §1, §2 and its first acceptance, for the NATs ICE can cross
/// without a relay: an overlay made with `init --ice`, two public peers
/// and a peer behind each of two endpoint-independent NATs that filter by
/// address and port. The NATed peers join through the public bootstrap
/// peer over TLS, learn their reflexive addresses, and Attach to each
/// other with ICE: the checks open both NATs (RFC 8445 §2.2), and the
/// link between them is DTLS over UDP, direct, with no relay. The ring
/// forms and a walk from each NATed peer lists all four.
#[test]
fn peers_behind_two_cone_nats_link_to_each_other_directly_by_ice_and_dtls() {
    if !can_build_namespaces("the NAT lab", true) {
        return;
    }
    let lab = NatLab::new(
        2,
        &[(Mapping::EndpointIndependent, 1), (Mapping::EndpointIndependent, 1)],
        30,
    );
    let mut overlay = LabOverlay::new(&lab, "nat-ice", &["--ice"]);
    let sites = [Site::Public(0), Site::Public(1), Site::Behind(0), Site::Behind(1)];
    overlay.start_peer(sites[0], "public0");
    wait_for(Duration::from_secs(20), "the bootstrap peer", || {
        overlay.status(sites[0]).is_some_and(|s| s.joined)
    });
    for (site, name) in sites[1..].iter().zip(["public1", "cone0", "cone1"]) {
        overlay.start_peer(*site, name);
    }
    let statuses = || -> Option<Vec<node::peer::Status>> { sites.iter().map(|s| overlay.status(*s)).collect() };
    let linked_directly = |all: &[node::peer::Status]| {
        let (cone0, cone1) = (&all[2], &all[3]);
        cone0.links_over_dtls.contains(&cone1.node_id) && cone1.links_over_dtls.contains(&cone0.node_id)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let now = statuses();
        if let Some(all) = &now {
            if node::peer::ring_consistent(all.clone()).is_ok() && linked_directly(all) {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ring with the NATed peers linked over DTLS after 90 s: {now:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let all = statuses().unwrap();
    for (status, site) in all.iter().zip(sites).skip(2) {
        assert_eq!(status.nat_mapping, "endpoint-independent", "{site:?}");
        // Its only TLS link is the one it dialled to join.
        assert!(
            status.links.len() - status.links_over_dtls.len() <= 1,
            "{site:?}: {:?} over DTLS of {:?}",
            status.links_over_dtls,
            status.links
        );
    }
    for site in &sites[2..] {
        let walk = overlay.cli(*site, "ring");
        assert!(walk.contains("4 peers; the ring is closed"), "{walk}");
        let status = overlay.cli(*site, "status");
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("links") && l.contains("over DTLS/UDP")),
            "{status}"
        );
    }
}

/// SIGTERM: the peer leaves the overlay gracefully (§10.9) and exits.
fn leave(mut peer: std::process::Child) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    unsafe { libc::kill(peer.id() as libc::pid_t, libc::SIGTERM) };
    let status = peer.wait().unwrap();
    assert!(status.success(), "the peer left and exited: {status}");
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
    let (overlay_dir, fingerprint) = make_overlay(&dir, &["alice", "bob", "carol"], &[]);
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
