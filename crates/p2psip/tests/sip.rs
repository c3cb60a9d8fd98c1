//! Whole-system tests of the SIP side of the peers (issue 5), with real
//! processes on loopback: SIPp (Debian `sip-tester`) and baresip as the
//! phones.

mod common;
mod phones;
mod softphone;

use common::*;
use phones::{sipp, Phones, Scenarios};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

const DOMAIN: &str = "sip.test.invalid";

fn stored_registrations(peers: &[&Peer]) -> f64 {
    peers
        .iter()
        .map(|p| metric(p.admin, "p2psip_stored_items{kind=\"SIP-REGISTRATION\"}"))
        .sum()
}

/// One raw UDP exchange with a peer's SIP port; the answer's first line.
fn udp_exchange(socket: &UdpSocket, to: SocketAddr, message: &[u8]) -> Option<String> {
    socket.send_to(message, to).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n]).lines().next().map(str::to_string)
}

fn options(branch: &str, extra: &str) -> String {
    format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch}\r\n\
         From: <sip:probe@{DOMAIN}>;tag=1\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\n{extra}\r\n"
    )
}

/// An overlay for SIP tests with `n` enrolled peer directories; alice and
/// bob are accounts of it.
fn sip_overlay(tag: &str, n: usize) -> (Overlay, Vec<std::path::PathBuf>) {
    let o = Overlay::create_with(tag, DOMAIN, &["--user", "alice:alice-pw", "--user", "bob:bob-pw"]);
    let dirs = (0..n).map(|i| o.enroll(&format!("n{i}"))).collect();
    (o, dirs)
}

/// An overlay of `n` peers with `--sip`, alice enrolled at peer `a` and bob
/// at peer `b`; every peer's SIP address, and the peers.
fn alice_and_bob(tag: &str, n: usize, a: usize, b: usize) -> (Overlay, Vec<SocketAddr>, Vec<Peer>) {
    let (mut o, dirs) = sip_overlay(tag, n);
    o.enroll_user(&dirs[a], "alice", "alice-pw");
    o.enroll_user(&dirs[b], "bob", "bob-pw");
    let (sip, peers) = start_sip_peers(&mut o, &dirs);
    (o, sip, peers)
}

/// Starts a peer with `--sip` for every directory and waits for the ring.
fn start_sip_peers(o: &mut Overlay, dirs: &[std::path::PathBuf]) -> (Vec<SocketAddr>, Vec<Peer>) {
    let sip: Vec<SocketAddr> = dirs.iter().map(|_| loopback(free_port())).collect();
    let mut peers = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let bootstrap = peers.first().map(|p: &Peer| p.listen);
        peers.push(o.start_peer_with(d, bootstrap, &["--sip", &sip[i].to_string()]));
    }
    let all: Vec<&Peer> = peers.iter().collect();
    wait_consistent(&all, Duration::from_secs(60), "the peers to form a ring");
    (sip, peers)
}

/// Alice's phone registered at `alice_at`, bob's at `bob_at` (SIPp, with
/// digest), alice calling bob.
fn alice_and_bobs_phones(scenarios: Scenarios, alice_at: SocketAddr, bob_at: SocketAddr) -> Phones {
    let (alice_port, bob_port) = (free_port(), free_port());
    scenarios.register_at(alice_at, alice_port, "alice", "alice-pw");
    scenarios.register_at(bob_at, bob_port, "bob", "bob-pw");
    Phones {
        scenarios,
        caller: (alice_at, alice_port, "alice".into()),
        callee: (bob_at, bob_port, "bob".into()),
    }
}

/// Issue 5 acceptance, registration part: SIPp registers alice at peer 0
/// and bob at peer 2 over UDP and TCP with digest; each registration is
/// stored in the overlay at all three replicas; a wrong password gets 401
/// then 403; garbage and truncated messages get a log line or a 400 and
/// the peer keeps answering.
#[test]
fn phones_register_with_digest_and_their_registrations_land_in_the_overlay() {
    if !tool_answers("sipp", "-v", "sip-tester") {
        return;
    }
    let (o, sip, peers) = alice_and_bob("sip-register", 3, 0, 2);
    let all: Vec<&Peer> = peers.iter().collect();

    let scenarios = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let register = scenarios.register("register", 600, 200);
    assert!(
        sipp(&register, sip[0], "alice", "alice-pw", "u1"),
        "alice registers over UDP"
    );
    assert!(sipp(&register, sip[2], "bob", "bob-pw", "t1"), "bob registers over TCP");
    // Each AOR is one dictionary entry, at the responsible peer and both
    // its replicas: 2 users x 3 copies.
    wait_for(Duration::from_secs(10), "both registrations at 3 replicas", || {
        stored_registrations(&all) == 6.0
    });
    assert!(metric(peers[0].admin, "p2psip_requests_total{method=\"store\",result=\"ok\"}") >= 1.0);

    // Alice's password at bob's peer, and a wrong password: 401, then 403.
    let refused = scenarios.register("refused", 600, 403);
    assert!(
        sipp(&refused, sip[0], "alice", "not-her-password", "u1"),
        "wrong password: 401 then 403"
    );
    assert!(
        sipp(&refused, sip[2], "alice", "alice-pw", "u1"),
        "alice is not served by bob's peer"
    );

    // Garbage and truncated messages: logged, a 400 where one can be sent,
    // and the peer keeps serving.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    probe
        .send_to(b"\x00\x01garbage that is not SIP\r\n\r\n", sip[1])
        .unwrap();
    let truncated = options("trunc", "Content-Length: 100\r\n\r\nshort");
    assert_eq!(
        udp_exchange(&probe, sip[1], truncated.as_bytes()).as_deref(),
        Some("SIP/2.0 400 Bad Request (Content-Length says 100 body bytes, 7 arrived)")
    );
    let mut tcp = std::net::TcpStream::connect(sip[1]).unwrap();
    std::io::Write::write_all(&mut tcp, b"INVITE nonsense\r\n\r\n").unwrap();
    drop(tcp);
    assert_eq!(
        udp_exchange(&probe, sip[1], options("alive", "Content-Length: 0\r\n").as_bytes()).as_deref(),
        Some("SIP/2.0 200 OK")
    );
    let log = std::fs::read_to_string(&peers[1].log).unwrap();
    assert!(log.contains("sip: malformed message from 127.0.0.1"), "{log}");
    assert!(status(peers[1].admin).is_some(), "peer 1 still serves");

    // Expires: 0 removes alice's binding; the overlay entry is replaced
    // by a removal at every replica.
    let unregister = scenarios.register("unregister", 0, 200);
    assert!(
        sipp(&unregister, sip[0], "alice", "alice-pw", "u1"),
        "alice unregisters"
    );
}

/// Issue 5 acceptance, calls: alice's SIPp at one peer calls bob's SIPp at
/// another through the overlay (Fetch of bob's registration, AppAttach to
/// bob's peer, SIP over the connection it names): 100 calls with
/// INVITE/180/200/ACK/BYE, a MESSAGE, a re-INVITE inside a dialog, a
/// CANCEL while bob's phone rings, a user nobody registered (404); then
/// the peer responsible for bob's registration is killed and calls still
/// go through once the ring has repaired.
#[test]
fn phones_at_different_peers_call_each_other_through_the_overlay() {
    if !tool_answers("sipp", "-v", "sip-tester") {
        return;
    }
    let (mut o, dirs) = sip_overlay("sip-calls", 5);
    // The peer responsible for bob's registration (Chord: the first Node-ID
    // at or after its Resource-ID) is killed later; neither phone's peer
    // may be that one.
    let ids: Vec<Vec<u8>> = dirs
        .iter()
        .map(|d| {
            node::node_dir::NodeDir::load(d).unwrap().info.node_ids[0]
                .as_bytes()
                .to_vec()
        })
        .collect();
    let bob_resource = overlay::topology::chord::hash(format!("bob@{DOMAIN}").as_bytes());
    let mut ring: Vec<usize> = (0..5).collect();
    ring.sort_by_key(|&i| ids[i].clone());
    let responsible = ring
        .iter()
        .copied()
        .find(|&i| ids[i].as_slice() >= bob_resource.as_bytes())
        .unwrap_or(ring[0]);
    let others: Vec<usize> = (0..5).filter(|&i| i != responsible).collect();
    let (a, b) = (others[0], others[3]);
    o.enroll_user(&dirs[a], "alice", "alice-pw");
    o.enroll_user(&dirs[b], "bob", "bob-pw");
    let (sip, peers) = start_sip_peers(&mut o, &dirs);
    let (sip_a, sip_b) = (sip[a], sip[b]);

    let scenarios = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let phones = alice_and_bobs_phones(scenarios, sip_a, sip_b);
    phones.run(
        Some("uas_call"),
        "uac_call",
        "bob",
        100,
        "alice's 100 calls to bob all complete",
    );
    phones.run(
        Some("uas_message"),
        "uac_message",
        "bob",
        1,
        "the MESSAGE reaches bob whole and is answered",
    );
    phones.run(
        Some("uas_reinvite"),
        "uac_reinvite",
        "bob",
        1,
        "the re-INVITE reaches bob inside the dialog and his answer comes back",
    );
    phones.run(
        Some("uas_cancel"),
        "uac_cancel",
        "bob",
        1,
        "CANCEL while ringing: 200 for it, 487 for the INVITE, bob's phone stops",
    );
    phones.run(None, "uac_404", "nobody", 1, "a user nobody registered gets 404");
    for p in &peers {
        assert!(status(p.admin).is_some(), "every peer still serves");
    }

    // SIGKILL the peer responsible for bob's registration: once the ring
    // has repaired, a replica answers the Fetch and calls go through
    // again, without bob registering anew.
    o.procs.0[peers[responsible].child].kill().unwrap();
    o.procs.0[peers[responsible].child].wait().unwrap();
    let alive: Vec<&Peer> = others.iter().map(|&i| &peers[i]).collect();
    wait_consistent(&alive, Duration::from_secs(30), "4 peers after the crash");
    phones.run(
        Some("uas_call"),
        "uac_call",
        "bob",
        10,
        "calls succeed after the registration's peer crashed",
    );

    // Bob's peer leaves gracefully and withdraws the registration it
    // stored: a call to bob gets 480 at once, not after an AppAttach to a
    // peer that is gone has timed out (RFC 6940 §6.1.1 drops it silently).
    let pid = o.procs.0[peers[b].child].id();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let child = &mut o.procs.0[peers[b].child];
    wait_for(Duration::from_secs(60), "bob's peer to leave", || {
        child.try_wait().unwrap().is_some()
    });
    let log = std::fs::read_to_string(&peers[b].log).unwrap();
    assert!(log.contains("withdrew this peer's SIP registrations"), "{log}");
    let started = std::time::Instant::now();
    phones.run(None, "uac_480", "bob", 1, "bob, whose peer left, gets 480");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the 480 took {:?}",
        started.elapsed()
    );
}

/// Decision 0027: a call goes to the SIP address a peer's own AppAttach
/// answer gave, and the TLS connection there must present that peer's
/// Node-ID. Bob's peer is killed; a new peer (another Node-ID) starts on
/// its old SIP address. Alice's peer still remembers the address for
/// bob's peer, and bob's registration still names that peer: the call is
/// refused (500, RFC 3261 §16.7) with a WARN line, and the new peer never sees the
/// INVITE. Calls to users of the new peer go on.
#[test]
fn a_peer_that_took_over_another_peers_sip_address_is_not_sent_its_calls() {
    if !tool_answers("sipp", "-v", "sip-tester") {
        return;
    }
    let (mut o, dirs) = sip_overlay("sip-rebound", 4);
    o.enroll_user(&dirs[0], "alice", "alice-pw");
    o.enroll_user(&dirs[1], "bob", "bob-pw");
    let sip: Vec<SocketAddr> = (0..4).map(|_| loopback(free_port())).collect();
    let bobs_peers_port = loopback(free_port()).to_string();
    let mut peers: Vec<Peer> = Vec::new();
    for i in 0..3 {
        let bootstrap = peers.first().map(|p| p.listen);
        let mut args = vec!["--sip".to_string(), sip[i].to_string()];
        if i == 1 {
            args.extend(["--sip-peers".to_string(), bobs_peers_port.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        peers.push(o.start_peer_with(&dirs[i], bootstrap, &args));
    }
    wait_consistent(
        &peers.iter().collect::<Vec<_>>(),
        Duration::from_secs(60),
        "three peers",
    );
    let scenarios = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let phones = alice_and_bobs_phones(scenarios, sip[0], sip[1]);
    phones.run(Some("uas_call"), "uac_call", "bob", 1, "alice calls bob");

    o.procs.0[peers[1].child].kill().unwrap();
    o.procs.0[peers[1].child].wait().unwrap();
    wait_consistent(
        &[&peers[0], &peers[2]],
        Duration::from_secs(30),
        "two peers after the crash",
    );
    let newcomer = o.start_peer_with(
        &dirs[3],
        Some(peers[0].listen),
        &["--sip", &sip[3].to_string(), "--sip-peers", &bobs_peers_port],
    );
    wait_consistent(
        &[&peers[0], &peers[2], &newcomer],
        Duration::from_secs(30),
        "the newcomer in the ring",
    );

    phones.run(
        None,
        "uac_500",
        "bob",
        1,
        "a call to bob is refused, not sent to the newcomer",
    );
    let invites = "p2psip_sip_requests_total{method=\"INVITE\"}";
    assert_eq!(metric(newcomer.admin, invites), 0.0, "the newcomer got no INVITE");
    let log = std::fs::read_to_string(&peers[0].log).unwrap();
    let newcomer_id = status(newcomer.admin).unwrap().node_id;
    assert!(
        log.contains(&format!(
            "refused the peer at {bobs_peers_port}: it presented Node-ID {newcomer_id}"
        )),
        "{log}"
    );
    // The newcomer serves its own users: alice's peer still calls out.
    assert!(status(peers[0].admin).is_some_and(|s| s.joined));
}

/// alice's phone decoded bob's 660 Hz tone and bob's alice's 440 Hz: at
/// least 2 s of each, within 5 % of its pitch.
fn each_hears_the_other(alice: &softphone::Softphone, bob: &softphone::Softphone) {
    for (phone, expected_hz, who) in [(bob, 440.0, "bob hears alice"), (alice, 660.0, "alice hears bob")] {
        let mut last = None;
        wait_for(Duration::from_secs(10), who, || {
            last = phone.heard();
            last.as_ref().is_some_and(|t| t.sounding_s >= 2.0)
        });
        let tone = last.unwrap();
        assert!(
            (tone.hz - expected_hz).abs() < expected_hz * 0.05,
            "{who}: {tone:?}, expected about {expected_hz} Hz"
        );
    }
}

/// bob's baresip on UDP at `peer`, sending a 660 Hz tone, once registered.
fn bobs_baresip(phones: &std::path::Path, peer: SocketAddr, procs: &mut Procs) -> softphone::Softphone {
    let bob = softphone::Softphone::start(
        phones,
        &softphone::Account {
            user: "bob",
            password: "bob-pw",
            domain: DOMAIN,
            peer,
            tone_hz: 660,
            tone_s: 60,
            tls: None,
        },
        &[],
        procs,
    );
    wait_for(Duration::from_secs(20), "bob's baresip to register", || {
        bob.logged("bob@sip.test.invalid: {0/UDP/v4} 200 OK () [1 binding]")
    });
    bob
}

/// Issue 5 acceptance, a real softphone: two baresip instances, alice's at
/// peer 0 and bob's at peer 2, each registered with digest. Alice dials bob
/// through the overlay (her phone also answers the 407 of the first
/// INVITE); bob's answers on its own, both send a tone over RTP for the
/// call, and alice hangs up when her tone ends. Each must have decoded the
/// other's tone, which shows the SDP crossed the overlay intact.
#[test]
fn baresip_phones_at_different_peers_call_each_other_and_hear_each_other() {
    if !tool_answers("baresip", "-h", "baresip") {
        return;
    }
    let (mut o, sip, peers) = alice_and_bob("sip-baresip", 3, 0, 2);
    let all: Vec<&Peer> = peers.iter().collect();
    let phones = o.dir.join("phones");
    let bob = bobs_baresip(&phones, sip[2], &mut o.procs);
    wait_for(Duration::from_secs(10), "bob's registration at 3 replicas", || {
        stored_registrations(&all) == 3.0
    });

    let alice = softphone::Softphone::start(
        &phones,
        &softphone::Account {
            user: "alice",
            password: "alice-pw",
            domain: DOMAIN,
            peer: sip[0],
            tone_hz: 440,
            tone_s: 4,
            tls: None,
        },
        &[&format!("/dial sip:bob@{DOMAIN}")],
        &mut o.procs,
    );
    wait_for(Duration::from_secs(30), "alice to hang up when her tone ends", || {
        alice.logged(&format!("Call with sip:bob@{DOMAIN} terminated"))
    });
    let alice_log = alice.log_text();
    assert!(
        alice_log.contains(&format!("Call established: sip:bob@{DOMAIN}")),
        "{alice_log}"
    );
    // The dialog's route set names both peers: the call crossed the
    // overlay from peer 0 to peer 2.
    for peer in [sip[2], sip[0]] {
        assert!(
            alice_log.contains(&format!("Record-Route: <sip:{peer};lr;dlg=")),
            "the route set names {peer}: {alice_log}"
        );
    }
    // Alice's BYE reached bob along the route set.
    wait_for(Duration::from_secs(10), "bob's phone to end the call", || {
        bob.logged(&format!("Call with sip:alice@{DOMAIN} terminated"))
    });
    assert!(bob.logged(&format!("Call established: sip:alice@{DOMAIN}")));

    // Each decoded the other's tone: at least 2 of alice's 4 seconds.
    each_hears_the_other(&alice, &bob);
    for p in &peers {
        assert!(status(p.admin).is_some(), "every peer still serves");
    }
}

/// Issue 34 §5: alice's baresip registers with her peer over TLS (the
/// peer presents the overlay domain's certificate that `p2psip sip-cert`
/// issued, which baresip checks against the overlay's CA) and calls bob,
/// whose baresip is on UDP at another peer; each hears the other.
#[test]
fn a_baresip_phone_registers_and_calls_over_tls() {
    if !tool_answers("baresip", "-h", "baresip") {
        return;
    }
    let (mut o, dirs) = sip_overlay("sip-tls", 3);
    o.enroll_user(&dirs[0], "alice", "alice-pw");
    o.enroll_user(&dirs[2], "bob", "bob-pw");
    let overlay_dir = o.dir.join("overlay");
    let (cert, key) = sip_certificate(&overlay_dir, &o.dir.join("sip-tls"));
    let sip: Vec<SocketAddr> = (0..3).map(|_| loopback(free_port())).collect();
    let alice_tls = loopback(free_port());
    let tls_args = [
        "--sip",
        &sip[0].to_string(),
        "--sip-tls",
        &alice_tls.to_string(),
        "--sip-tls-cert",
        cert.to_str().unwrap(),
        "--sip-tls-key",
        key.to_str().unwrap(),
    ]
    .map(String::from);
    let tls_args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    let p0 = o.start_peer_with(&dirs[0], None, &tls_args);
    let p1 = o.start_peer_with(&dirs[1], Some(p0.listen), &["--sip", &sip[1].to_string()]);
    let p2 = o.start_peer_with(&dirs[2], Some(p0.listen), &["--sip", &sip[2].to_string()]);
    wait_consistent(&[&p0, &p1, &p2], Duration::from_secs(60), "the peers to form a ring");

    let phones = o.dir.join("phones");
    let ca = overlay_dir.join("ca.crt");
    let bob = bobs_baresip(&phones, sip[2], &mut o.procs);
    let alice = softphone::Softphone::start(
        &phones,
        &softphone::Account {
            user: "alice",
            password: "alice-pw",
            domain: DOMAIN,
            peer: sip[0],
            tone_hz: 440,
            tone_s: 4,
            tls: Some((alice_tls, &ca)),
        },
        &[&format!("/dial sip:bob@{DOMAIN}")],
        &mut o.procs,
    );
    wait_for(Duration::from_secs(30), "alice to hang up when her tone ends", || {
        alice.logged(&format!("Call with sip:bob@{DOMAIN} terminated"))
    });
    let alice_log = alice.log_text();
    assert!(
        alice_log.contains("alice@sip.test.invalid: {0/TLS/v4} 200 OK () [1 binding]"),
        "alice registered over TLS: {alice_log}"
    );
    assert!(
        alice_log.contains(&format!("Call established: sip:bob@{DOMAIN}")),
        "{alice_log}"
    );
    // Her side of the route set is the peer's TLS address.
    assert!(
        alice_log.contains(&format!("Record-Route: <sip:{alice_tls};transport=tls;lr;dlg=")),
        "{alice_log}"
    );
    each_hears_the_other(&alice, &bob);
}

/// `p2psip user` against the directories with a running peer.
fn user_cmd(args: &[&str], password: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("user").args(args);
    match password {
        Some(p) => cmd.env("P2PSIP_PASSWORD", p),
        None => cmd.env_remove("P2PSIP_PASSWORD"),
    };
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "p2psip user {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Issue 32, accounts while peers run: an account added to the overlay
/// and then to a running peer's node directory is known at once (a call
/// to it gets 480 until its phone registers), registers at once, and
/// alice's phone at another peer calls it; removed from the node, its
/// REGISTER is refused (403), the registration it had is withdrawn from
/// the overlay, and a call to it gets 404. No peer restarts.
#[test]
fn accounts_added_to_and_removed_from_a_running_peer_count_at_once() {
    if !tool_answers("sipp", "-v", "sip-tester") {
        return;
    }
    let (mut o, dirs) = sip_overlay("sip-accounts", 3);
    o.enroll_user(&dirs[0], "alice", "alice-pw");
    let (sip, peers) = start_sip_peers(&mut o, &dirs);
    let all: Vec<&Peer> = peers.iter().collect();
    let overlay_dir = o.dir.join("overlay");
    let (ov, n2) = (overlay_dir.to_str().unwrap(), dirs[2].to_str().unwrap());

    // The enrollment account, its password from a file; then the SIP user
    // at the running peer 2, its password from the environment.
    let password_file = o.dir.join("carol.pw");
    std::fs::write(&password_file, "carol-pw\n").unwrap();
    let added = user_cmd(
        &[
            "add",
            "carol",
            "--dir",
            ov,
            "--password-file",
            password_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(added.contains("Added account carol"), "{added}");
    assert!(user_cmd(&["list", "--dir", ov], None).contains("carol"));
    let added = user_cmd(&["add", "carol", "--dir", n2], Some("carol-pw"));
    assert!(
        added.contains("The running peer took it: SIP users (2): carol, peer; added carol@"),
        "{added}"
    );
    assert_eq!(user_cmd(&["list", "--dir", n2], None), "carol\npeer\n");

    let scenarios = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let (alice_port, carol_port) = (free_port(), free_port());
    scenarios.register_at(sip[0], alice_port, "alice", "alice-pw");
    // Known, but no phone yet: 480, not 404 (her certificate is in the
    // overlay, RFC 6940 §8, stored before `user add` returned).
    let before = Phones {
        scenarios: Scenarios::new(&o.dir.join("scenarios"), DOMAIN),
        caller: (sip[0], alice_port, "alice".into()),
        callee: (sip[2], free_port(), "carol".into()),
    };
    before.run(
        None,
        "uac_480",
        "carol",
        1,
        "a call to carol before her phone registers gets 480",
    );
    scenarios.register_at(sip[2], carol_port, "carol", "carol-pw");
    wait_for(Duration::from_secs(10), "carol's registration at 3 replicas", || {
        stored_registrations(&all) == 6.0
    });
    let phones = Phones {
        scenarios,
        caller: (sip[0], alice_port, "alice".into()),
        callee: (sip[2], carol_port, "carol".into()),
    };
    phones.run(Some("uas_call"), "uac_call", "carol", 3, "alice calls the new user");

    let removed = user_cmd(&["remove", "carol", "--dir", n2], None);
    assert!(
        removed.contains("The running peer took it: SIP users (1): peer; removed carol@"),
        "{removed}"
    );
    let refused = phones.scenarios.register("carol-refused", 600, 403);
    assert!(
        sipp(&refused, sip[2], "carol", "carol-pw", "u1"),
        "a removed user's REGISTER: 401, then 403"
    );
    phones.run(None, "uac_404", "carol", 1, "a call to the removed user gets 404");
    let log = std::fs::read_to_string(&peers[2].log).unwrap();
    assert!(
        log.contains("accounts reloaded: SIP users (1): peer; removed carol@"),
        "{log}"
    );
    for p in &peers {
        assert!(o.procs.0[p.child].try_wait().unwrap().is_none(), "no peer restarted");
        assert!(status(p.admin).is_some(), "every peer still serves");
    }

    // The account itself goes too: carol can no longer enroll.
    user_cmd(&["remove", "carol", "--dir", ov], None);
    let again = std::process::Command::new(BIN)
        .args(["user", "add", "carol", "--dir", n2])
        .env("P2PSIP_PASSWORD", "carol-pw")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("wrong user name or password"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// Issue 32, the SIP side is visible: after a wrong-password REGISTER and
/// 10 calls, alice's peer counts them in `/metrics` (`p2psip_sip_*`),
/// logs one line per registration change, failed authentication and
/// call, shows its listeners, users and their contacts in `/status` and
/// `p2psip status`; with `P2PSIP_LOG_FORMAT=json` every log line is one
/// JSON object.
#[test]
fn the_sip_side_shows_in_metrics_logs_and_status() {
    if !tool_answers("sipp", "-v", "sip-tester") {
        return;
    }
    let (mut o, dirs) = sip_overlay("sip-visible", 2);
    o.enroll_user(&dirs[0], "alice", "alice-pw");
    o.enroll_user(&dirs[1], "bob", "bob-pw");
    let sip = [loopback(free_port()), loopback(free_port())];
    let sip_peers = loopback(free_port());
    let json = [("P2PSIP_LOG_FORMAT", "json")];
    let alice_peer = o.start_peer_with_env(
        &dirs[0],
        None,
        &["--sip", &sip[0].to_string(), "--sip-peers", &sip_peers.to_string()],
        &json,
    );
    let bob_peer = o.start_peer_with(&dirs[1], Some(alice_peer.listen), &["--sip", &sip[1].to_string()]);
    wait_consistent(&[&alice_peer, &bob_peer], Duration::from_secs(30), "two peers");

    let scenarios = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let refused = scenarios.register("refused", 600, 403);
    assert!(sipp(&refused, sip[0], "alice", "not-her-password", "u1"));
    let phones = alice_and_bobs_phones(scenarios, sip[0], sip[1]);
    let alice_port = phones.caller.1;
    phones.run(Some("uas_call"), "uac_call", "bob", 10, "10 calls");

    let admin = alice_peer.admin;
    assert_eq!(metric(admin, "p2psip_sip_auth_failures_total"), 1.0);
    assert_eq!(metric(admin, "p2psip_sip_calls_total{outcome=\"answered\"}"), 10.0);
    assert_eq!(metric(admin, "p2psip_sip_call_setup_seconds_count"), 10.0);
    assert!(metric(admin, "p2psip_sip_requests_total{method=\"INVITE\"}") >= 10.0);
    assert!(metric(admin, "p2psip_sip_requests_total{method=\"BYE\"}") >= 10.0);
    assert!(metric(admin, "p2psip_sip_requests_total{method=\"REGISTER\"}") >= 4.0);
    assert!(metric(admin, "p2psip_sip_responses_total{code=\"180\"}") >= 10.0);
    assert_eq!(metric(admin, "p2psip_sip_responses_total{code=\"403\"}"), 1.0);
    // The gauges are brought up to date every second.
    wait_for(
        Duration::from_secs(5),
        "the gauges: 1 phone, 2 users, no call left",
        || {
            metric(admin, "p2psip_sip_registrations") == 1.0
            && metric(admin, "p2psip_sip_users") == 2.0 // alice and the node's own account
            && metric(admin, "p2psip_sip_dialogs") == 0.0
        },
    );

    // The log: one JSON object per line, and the lines an operator needs.
    let log = std::fs::read_to_string(&alice_peer.log).unwrap();
    let messages: Vec<String> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
            v["fields"]["message"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let count = |needle: &str| messages.iter().filter(|m| m.contains(needle)).count();
    assert_eq!(
        count("sip: wrong credentials for alice from 127.0.0.1"),
        1,
        "{messages:#?}"
    );
    assert_eq!(
        count("sip: alice registered 1 contact(s)"),
        1,
        "one REGISTER changed a binding"
    );
    assert_eq!(count(&format!("from alice@{DOMAIN} to bob@{DOMAIN} answered")), 10);
    assert_eq!(count(" ended after "), 10);

    let status: node::peer::Status = get(admin, "/status").unwrap();
    let sip_status = status.sip.expect("a SIP section");
    assert_eq!(sip_status.phones, sip[0].to_string());
    assert_eq!(
        sip_status.peers,
        sip_peers.to_string(),
        "--sip-peers is where peers connect"
    );
    let alice = sip_status.users.iter().find(|u| u.user == "alice").unwrap();
    assert_eq!(alice.contacts.len(), 1);
    assert_eq!(alice.contacts[0].flow, format!("UDP 127.0.0.1:{alice_port}"));
    assert!(alice.contacts[0].expires_s > 3000);
    assert!(sip_status.calls.is_empty());
    let text = run_ok(&["status", "--admin", &admin.to_string()]);
    assert!(text.contains(&format!("sip       phones {}", sip[0])), "{text}");
    assert!(
        text.contains(&format!("alice            sip:alice@127.0.0.1:{alice_port}")),
        "{text}"
    );
}
