//! Whole-system tests: real `p2psip` processes on loopback. An overlay is
//! created with `init`, nodes enroll through a running
//! `enrollment-server`, peers join over TLS links, and the ring is judged
//! through each peer's admin API.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
    // The bound only: it returns once consistent, in about 3 s here. (It
    // took 18–30 s while test builds left Ed25519 unoptimised.)
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
    // No peer dialled itself while joining (it used to, answering its own
    // Attach, and was refused as a copy of itself).
    for p in &all {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(!log.contains("own Node-ID"), "{}: {log}", p.log.display());
    }

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
    // The crashed peers' neighbours saw their links lost.
    let lost = |peers: &[&Peer]| -> f64 { peers.iter().map(|p| metric(p.admin, "p2psip_links_lost_total")).sum() };
    let lost_to_crashes = lost(&alive);
    assert!(
        lost_to_crashes >= 5.0,
        "each crash cost a neighbour a link: {lost_to_crashes}"
    );
    let stay: Vec<&Peer> = alive.iter().copied().filter(|p| p.admin != alive[5].admin).collect();
    let lost_before_leave = lost(&stay);
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
    assert_eq!(
        lost(&rest),
        lost_before_leave,
        "a neighbour that leaves is no lost link"
    );
    // The leaver handed its data over before it went: no wait needed.
    certificates_fetchable(&rest, &ids).unwrap_or_else(|e| panic!("after a graceful leave: {e}"));
}

/// Multicast bootstrap (our extension to §11.4): four peers started at
/// the same moment, with no bootstrap node anywhere, find each other on the
/// LAN (here loopback) and form one ring, not four. A client (§4.2.1)
/// finds them the same way and uses the overlay without joining the ring.
/// A peer that left comes back through the peers it cached (§11.4).
#[test]
fn peers_started_together_find_each_other_by_multicast_and_rejoin_from_their_cache() {
    let group = format!("239.255.84.84:{}", free_port());
    let mut overlay = Overlay::create_with("multicast", "multicast.p2psip.test", &["--multicast-bootstrap", &group]);
    let dirs: Vec<PathBuf> = (0..4).map(|i| overlay.enroll(&format!("node{i}"))).collect();
    let peers: Vec<Peer> = dirs.iter().map(|d| overlay.start_peer(d, None)).collect();
    let all: Vec<&Peer> = peers.iter().collect();
    let took = wait_consistent(&all, Duration::from_secs(30), "4 peers finding each other");
    eprintln!("4 peers consistent after {took:?}");
    let started_alone: Vec<usize> = (0..4)
        .filter(|i| std::fs::read_to_string(&peers[*i].log).unwrap().contains("starting it"))
        .collect();
    assert_eq!(started_alone.len(), 1, "exactly one peer started the overlay");

    // A client: one link, to the peer responsible for its Node-ID; not in
    // the ring; it fetches every peer's certificate and the peers fetch
    // the one it stored.
    let client_dir = overlay.enroll("client");
    let client = overlay.start_client(&client_dir, None);
    wait_for(Duration::from_secs(20), "the client to attach", || {
        status(client.admin).is_some_and(|s| s.joined)
    });
    let me = status(client.admin).unwrap();
    assert_eq!(me.role, "client");
    assert_eq!(me.links.len(), 1, "{me:?}");
    assert!(me.successors.is_empty() && me.fingers.is_empty());
    assert!(me.stored.is_empty(), "a client stores nothing: {:?}", me.stored);
    assert_eq!(ring_walk(all[0]), sorted_ids(&all), "the ring is the 4 peers");
    assert_eq!(ring_walk(&client), sorted_ids(&all), "a client walks the ring too");
    let peer_ids: Vec<String> = all.iter().map(|p| status(p.admin).unwrap().node_id).collect();
    wait_fetchable(&[&client], &peer_ids, Duration::from_secs(20), "through the client");
    let own = std::slice::from_ref(&me.node_id);
    wait_fetchable(&all, own, Duration::from_secs(20), "the client's own");
    overlay.procs.0[client.child].kill().unwrap();

    // A flood of DISCOVERs (their source can be forged) gets at most 20
    // answers a second from each peer, not one each.
    let asker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let group_addr: SocketAddr = group.parse().unwrap();
    let started = std::time::Instant::now();
    for i in 0..200 {
        let line = format!("P2PSIP/1 DISCOVER multicast.p2psip.test {:032x} 7000", 0xabc0 + i);
        asker.send_to(line.as_bytes(), group_addr).unwrap();
    }
    asker.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut answers = 0;
    let mut buf = [0u8; 600];
    while asker.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    let seconds = started.elapsed().as_secs_f64().ceil() as usize + 1;
    assert!(answers >= 1, "the peers still answer");
    assert!(
        answers <= 4 * 20 * seconds,
        "{answers} answers to 200 DISCOVERs in about {seconds} s from 4 peers"
    );

    // SIGTERM the peer that started it, whose links the others dialled: it
    // caches its linked peers on the way out, by the address their
    // Attaches named.
    let l = started_alone[0];
    let leaver = &peers[l];
    let pid = overlay.procs.0[leaver.child].id();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let child = &mut overlay.procs.0[leaver.child];
    wait_for(Duration::from_secs(30), "the leaving peer to exit", || {
        child.try_wait().unwrap().is_some()
    });
    let cached: Vec<SocketAddr> =
        serde_json::from_str(&std::fs::read_to_string(dirs[l].join("peers.json")).unwrap()).unwrap();
    let others: Vec<&Peer> = (0..4).filter(|i| *i != l).map(|i| &peers[i]).collect();
    let addrs: Vec<SocketAddr> = others.iter().map(|p| p.listen).collect();
    assert!(!cached.is_empty() && cached.len() <= 10, "{cached:?}");
    assert!(
        cached.iter().all(|a| addrs.contains(a)),
        "only peers it was linked to, by the address they take links on: {cached:?} vs {addrs:?}"
    );
    std::fs::rename(&leaver.log, dirs[l].join("first-run.log")).unwrap();
    let back = overlay.start_peer(&dirs[l], None);
    let all: Vec<&Peer> = others.into_iter().chain([&back]).collect();
    wait_consistent(&all, Duration::from_secs(30), "the peer coming back");
    let log = std::fs::read_to_string(&back.log).unwrap();
    let through = log
        .lines()
        .find_map(|l| l.split_once("joining through ").map(|(_, a)| a.to_string()))
        .unwrap_or_else(|| panic!("no join attempt logged: {log}"));
    assert!(
        cached.iter().all(|a| through.contains(&a.to_string())),
        "rejoined through its cache {cached:?}, logged {through:?}"
    );
}

#[test]
fn a_client_with_no_peer_to_reach_is_told_so_in_one_line() {
    let mut overlay = Overlay::create("lonely", "lonely.p2psip.test");
    let dir = overlay.enroll("client");
    let client = overlay.start_client(&dir, None);
    let child = &mut overlay.procs.0[client.child];
    wait_for(Duration::from_secs(10), "the client to give up", || {
        child.try_wait().unwrap().is_some()
    });
    assert_eq!(child.wait().unwrap().code(), Some(2));
    let log = std::fs::read_to_string(&client.log).unwrap();
    assert!(log.contains("a client needs a peer to attach to"), "{log}");
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
    let pcap = capture.file.clone();

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
    let tshark =
        |filter: &str, fields: &[&str], finished: bool| tshark_fields(&pcap, &options, filter, fields, finished);
    let codes = |finished: bool| reload_codes(&pcap, &options, "reload", finished);
    use reload_wire::MessageCode as C;
    let methods = [
        ("Join", C::JOIN_REQ, C::JOIN_ANS),
        ("Update", C::UPDATE_REQ, C::UPDATE_ANS),
        ("Store", C::STORE_REQ, C::STORE_ANS),
        ("Fetch", C::FETCH_REQ, C::FETCH_ANS),
        ("Probe", C::PROBE_REQ, C::PROBE_ANS),
        ("Leave", C::LEAVE_REQ, C::LEAVE_ANS),
        ("Attach", C::ATTACH_REQ, C::ATTACH_ANS),
    ];
    let missing = |codes: &BTreeMap<u16, usize>| -> Vec<&str> {
        methods
            .iter()
            .filter(|(_, req, ans)| !codes.contains_key(&req.0) || !codes.contains_key(&ans.0))
            .map(|(name, ..)| *name)
            .collect()
    };
    // dumpcap gets packets from the kernel in blocks and writes them out
    // every 100 ms; stopped at once, it can lose the last block. So the
    // capture runs until the file shows every method (or 30 s pass).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !missing(&codes(false)).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    capture.finish();
    let codes = codes(true);
    let missing = missing(&codes);
    assert!(
        missing.is_empty(),
        "tshark found no request and answer of {missing:?}; codes seen: {codes:?}"
    );
    let bad = tshark(
        "_ws.malformed || (reload && _ws.expert.severity >= \"warning\")",
        &["frame.number", "_ws.col.Info"],
        true,
    );
    assert!(bad.trim().is_empty(), "tshark flags RELOAD frames:\n{bad}");
    eprintln!(
        "tshark decoded {} RELOAD messages: {codes:?}",
        codes.values().sum::<usize>()
    );
}

/// The README's run command: one command brings up a whole overlay of
/// separate processes, describes it in demo.json, and SIGTERM takes it all
/// down gracefully.
#[test]
fn demo_runs_an_overlay_of_processes_and_stops_it_gracefully() {
    let dir = std::env::temp_dir().join(format!("p2psip-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Ports BASE..=BASE+302, none handed to a concurrent test.
    let base = free_port_block(303);
    let mut demo = Procs(vec![Command::new(BIN)
        .args(["demo", "--peers", "3", "--dir", dir.to_str().unwrap()])
        .args(["--base-port", &base.to_string(), "--users", "alice,bob,carol"])
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::File::create(std::env::temp_dir().join(format!("p2psip-demo-test-{}.log", std::process::id())))
                .unwrap(),
        )
        .spawn()
        .unwrap()]);
    let json = dir.join("demo.json");
    wait_for(Duration::from_secs(60), "demo.json", || json.exists());
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(file["overlay"], "demo.p2psip.test");
    assert_eq!(file["enrollment"], format!("https://127.0.0.1:{}", base + 200));
    let peers = file["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 3);
    let mut ids = Vec::new();
    let mut pids = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        let admin: SocketAddr = p["admin"].as_str().unwrap().parse().unwrap();
        assert_eq!(p["reload"], format!("127.0.0.1:{}", base + i as u16));
        assert_eq!(p["sip"], format!("127.0.0.1:{}", base + 300 + i as u16));
        let s = status(admin).expect("each peer's admin API answers");
        assert!(s.joined);
        assert_eq!(p["node_id"].as_str().unwrap(), s.node_id);
        ids.push(s.node_id);
        pids.push(p["pid"].as_u64().unwrap());
    }
    ids.sort();
    let out = run_ok(&["ring", "--json", "--admin", peers[1]["admin"].as_str().unwrap()]);
    let walk: node::peer::RingWalk = serde_json::from_str(&out).unwrap();
    assert!(walk.complete, "{walk:?}");
    let mut walked: Vec<String> = walk.peers.into_iter().map(|p| p.node_id).collect();
    walked.sort();
    assert_eq!(walked, ids, "the ring holds exactly the demo's peers");

    // Where alice's registration lives: the first peer at or after its
    // Resource-ID round the ring (RFC 6940 §10.2). From peer 1 that is no
    // hop when peer 1 owns it, else one, or two when its predecessor owns
    // it: the Probe goes round by the successor, which knows its own.
    let asked: SocketAddr = peers[1]["admin"].as_str().unwrap().parse().unwrap();
    let home: node::peer::Responsible =
        get(asked, "/responsible/alice@demo.p2psip.test").expect("GET /responsible answers");
    let resource = reload_wire::hex(overlay::topology::chord::hash(b"alice@demo.p2psip.test").as_bytes());
    assert_eq!(home.resource_id, resource);
    let owner = ids.iter().find(|id| **id >= resource).unwrap_or(&ids[0]);
    assert_eq!(&home.peer.node_id, owner, "resource {resource}, peers {ids:?}");
    let asker = peers[1]["node_id"].as_str().unwrap();
    match owner == asker {
        true => assert_eq!(home.peer.hops, 0),
        false => assert!((1..=2).contains(&home.peer.hops), "{} hops", home.peer.hops),
    }
    let accounts = file["accounts"].as_array().unwrap();
    let users: Vec<(&str, &str, &str, u64)> = accounts
        .iter()
        .map(|a| {
            (
                a["user"].as_str().unwrap(),
                a["aor"].as_str().unwrap(),
                a["resource_name"].as_str().unwrap(),
                a["peer"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        users,
        [
            ("alice", "sip:alice@demo.p2psip.test", "alice@demo.p2psip.test", 0),
            ("bob", "sip:bob@demo.p2psip.test", "bob@demo.p2psip.test", 1),
            ("carol", "sip:carol@demo.p2psip.test", "carol@demo.p2psip.test", 2)
        ]
    );
    for (i, a) in accounts.iter().enumerate() {
        assert_eq!(a["registrar"], peers[i]["sip"], "each account registers at its peer");
        assert_eq!(a["domain"], "demo.p2psip.test");
    }
    // The demo's peers serve the accounts: carol's peer answers an
    // unauthenticated REGISTER with a digest challenge for the domain.
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    phone.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let register = "REGISTER sip:demo.p2psip.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKdemo\r\n\
        From: <sip:carol@demo.p2psip.test>;tag=1\r\nTo: <sip:carol@demo.p2psip.test>\r\nCall-ID: demo\r\n\
        CSeq: 1 REGISTER\r\nContact: <sip:carol@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n";
    let registrar: SocketAddr = accounts[2]["registrar"].as_str().unwrap().parse().unwrap();
    phone.send_to(register.as_bytes(), registrar).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = phone.recv_from(&mut buf).expect("the registrar answers");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 401"), "{answer}");
    assert!(answer.contains("realm=\"demo.p2psip.test\""), "{answer}");

    let pid = demo.0[0].id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let child = &mut demo.0[0];
    wait_for(Duration::from_secs(90), "the demo to stop", || {
        child.try_wait().unwrap().is_some()
    });
    assert!(
        child.wait().unwrap().success(),
        "the demo exits 0 after stopping everything"
    );
    for (i, pid) in pids.iter().enumerate() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "peer {i} (pid {pid}) still runs"
        );
        let log = std::fs::read_to_string(dir.join(format!("peer{i}/peer.log"))).unwrap();
        assert!(log.contains("left the overlay"), "peer {i} left gracefully: {log}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 35 §3 and §7: every peer's STUN server on its overlay port, as
/// tshark judges it: a Binding request gets a success response carrying
/// the requester's address and port, and nothing tshark reads is
/// malformed. Junk (oversized, malformed, another method) is dropped and
/// counted by reason; one source gets 20 answers a second however many it
/// asks, while another source is still answered.
#[test]
fn the_overlay_port_answers_stun_binding_and_drops_the_rest() {
    use peer_core::stun::message::{binding_request, Builder, Class, Message};
    if !tool_available("tshark", "tshark") || !tool_available("dumpcap", "tshark") {
        return;
    }
    let mut overlay = Overlay::create("stun", "stun.p2psip.test");
    let dir = overlay.enroll("node0");
    let peer = overlay.start_peer(&dir, None);
    wait_for(Duration::from_secs(10), "the peer", || {
        status(peer.admin).is_some_and(|s| s.joined)
    });
    let capture = Capture::start(&overlay.dir, &format!("udp port {}", peer.listen.port()));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = socket.local_addr().unwrap();
    let mut buf = [0u8; 1500];
    let mut ask = |id: u8| -> Option<Vec<u8>> {
        socket.send_to(&binding_request([id; 12]), peer.listen).unwrap();
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    };
    let answer = ask(0xaa).expect("the peer answers a Binding request on its overlay port");
    let answer = Message::decode(&answer).unwrap();
    assert_eq!((answer.class, answer.transaction_id), (Class::Success, [0xaa; 12]));
    assert_eq!(answer.xor_mapped_address(), Ok(me));

    // Junk, each kind once.
    let junk = socket.try_clone().unwrap();
    // An empty datagram first: it has no first byte to tell what it is.
    junk.send_to(&[], peer.listen).unwrap();
    junk.send_to(&[0u8; 1400], peer.listen).unwrap();
    junk.send_to(&binding_request([2; 12])[..24], peer.listen).unwrap();
    junk.send_to(&Builder::new(Class::Request, 0x003, [3; 12]).finish(), peer.listen)
        .unwrap();
    let dropped = |reason: &str| metric(peer.admin, &format!("p2psip_stun_dropped_total{{reason=\"{reason}\"}}"));
    wait_for(Duration::from_secs(5), "the junk counted", || {
        dropped("oversized") == 1.0 && dropped("malformed") == 1.0 && dropped("not_binding") == 1.0
    });

    // 100 requests at once from one source: 20 answered, the rest
    // dropped. The budget's window is a second from the first request
    // after the last one closed: after 1.1 s of no requests, the flood
    // opens a window of its own and stays inside it.
    std::thread::sleep(Duration::from_millis(1_100));
    let flood = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..100u8 {
        flood.send_to(&binding_request([i; 12]), peer.listen).unwrap();
    }
    flood.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut answered = 0;
    while flood.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    assert_eq!(answered, 20, "answers to one source in a second");
    let other = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    other.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    other.send_to(&binding_request([9; 12]), peer.listen).unwrap();
    assert!(other.recv_from(&mut buf).is_ok(), "another source is still answered");
    assert!(dropped("over_budget") >= 80.0);
    assert!(status(peer.admin).is_some_and(|s| s.joined), "the peer serves on");

    std::thread::sleep(Duration::from_millis(300));
    let pcap = capture.finish();
    let tshark = |filter: &str, fields: &[&str]| -> String {
        let mut c = Command::new("tshark");
        c.args(["-r"]).arg(&pcap).args(["-Y", filter, "-T", "fields"]);
        for f in fields {
            c.args(["-e", f]);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = tshark(
        "stun.type == 0x0101 && stun.id == aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa:aa",
        &["stun.att.ipv4", "stun.att.port"],
    );
    assert_eq!(
        first.trim(),
        format!("{}\t{}", me.ip(), me.port()),
        "tshark's reading of the answer"
    );
    let answers = tshark("stun.type == 0x0101", &["frame.number"]).lines().count();
    assert!(answers >= 20, "tshark sees {answers} Binding success responses");
    let bad = tshark(
        &format!(
            "(_ws.malformed || _ws.expert.severity >= \"warning\") && ip.src == 127.0.0.1 && udp.srcport == {}",
            peer.listen.port()
        ),
        &["frame.number", "_ws.col.Info"],
    );
    assert!(bad.trim().is_empty(), "tshark flags the peer's STUN answers:\n{bad}");
}

/// An overlay created with `init --ice` (`<no-ice>false</no-ice>`): peers
/// join through the bootstrap peer's TLS listener, then form their other
/// links by Attach with ICE and DTLS over UDP (RFC 6940 §6.5.1, §6.6.4).
/// Wireshark judges the links: given the key log, it finds DTLS 1.2
/// handshakes signed with Ed25519, RELOAD inside them (§6.6.2 framing,
/// §6.7 fragments reassembled), the ICE checks as STUN, and nothing
/// malformed. DTLS from an address ICE did not nominate is dropped.
#[test]
fn peers_of_an_ice_overlay_link_over_dtls_that_tshark_decodes() {
    if !tool_available("tshark", "tshark") || !tool_available("dumpcap", "tshark") {
        return;
    }
    let mut overlay = Overlay::create_with("ice", "ice.p2psip.test", &["--ice"]);
    let dirs: Vec<PathBuf> = (0..4).map(|i| overlay.enroll(&format!("node{i}"))).collect();
    let listen: Vec<SocketAddr> = dirs.iter().map(|_| loopback(free_port())).collect();
    let filter = listen
        .iter()
        .map(|a| format!("udp port {}", a.port()))
        .collect::<Vec<_>>()
        .join(" or ");
    let capture = Capture::start(&overlay.dir, &filter);
    let key_log = overlay.dir.join("keys.log");
    let first = overlay.start_peer_at(&dirs[0], listen[0], None, Some(&key_log));
    wait_for(Duration::from_secs(10), "the first peer", || {
        status(first.admin).is_some_and(|s| s.joined)
    });
    let mut peers = vec![first];
    for i in 1..4 {
        peers.push(overlay.start_peer_at(&dirs[i], listen[i], Some(listen[0]), Some(&key_log)));
    }
    let all: Vec<&Peer> = peers.iter().collect();
    wait_consistent(&all, Duration::from_secs(30), "4 peers joining");
    let ids: Vec<String> = all.iter().map(|p| status(p.admin).unwrap().node_id).collect();
    wait_fetchable(&all, &ids, Duration::from_secs(20), "after joining");
    // Every peer but the bootstrap one dialled it over TLS and Attached
    // to the others: those links are DTLS, each seen from both ends.
    let statuses: Vec<_> = all.iter().map(|p| status(p.admin).unwrap()).collect();
    for (s, p) in statuses.iter().zip(&all).skip(1) {
        assert!(
            !s.links_over_dtls.is_empty(),
            "{} has no DTLS link: {:?}",
            p.listen,
            s.links
        );
        assert!(s.links_over_dtls.iter().all(|l| s.links.contains(l)));
    }
    for s in &statuses {
        for other in &s.links_over_dtls {
            let theirs = statuses.iter().find(|t| &t.node_id == other).unwrap();
            assert!(
                theirs.links_over_dtls.contains(&s.node_id),
                "both ends count the DTLS link"
            );
        }
    }
    // DTLS from an address no ICE check nominated.
    let no_link = || metric(all[1].admin, "p2psip_dtls_dropped_total{reason=\"no_link\"}");
    let before = no_link();
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut hello = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40];
    hello.extend([1; 40]);
    stranger.send_to(&hello, listen[1]).unwrap();
    wait_for(Duration::from_secs(5), "the stranger's DTLS counted", || {
        no_link() > before
    });
    wait_fetchable(&all, &ids, Duration::from_secs(20), "after the stranger");

    let pcap = capture.file.clone();
    let options = ["-o".to_string(), format!("tls.keylog_file:{}", key_log.display())];
    let tshark =
        |filter: &str, fields: &[&str], finished: bool| tshark_fields(&pcap, &options, filter, fields, finished);
    let codes = |finished: bool| reload_codes(&pcap, &options, "dtls && reload", finished);
    use reload_wire::MessageCode as C;
    // What DTLS-linked neighbours always exchange: Updates (§10.4) and
    // replica Stores (§10.7.3). Which link a routed Fetch takes depends on
    // where the Resource-IDs fall, so it is not required.
    let wanted = [C::UPDATE_REQ, C::UPDATE_ANS, C::STORE_REQ, C::STORE_ANS];
    let missing = |codes: &BTreeMap<u16, usize>| wanted.iter().filter(|c| !codes.contains_key(&c.0)).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while missing(&codes(false)) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    capture.finish();
    let codes = codes(true);
    assert_eq!(missing(&codes), 0, "RELOAD over DTLS: codes seen {codes:?}");
    // RFC 8422 §5.4: ed25519 (0x0807) signs the ServerKeyExchange and the
    // client's CertificateVerify (the first scheme of each frame; a
    // CertificateRequest in the same frame lists those the server takes).
    for (message, kind) in [(12, "ServerKeyExchange"), (15, "CertificateVerify")] {
        let schemes = tshark(
            &format!("dtls.handshake.type == {message}"),
            &["dtls.handshake.sig_hash_alg"],
            true,
        );
        let first: Vec<&str> = schemes.lines().map(|l| l.split(',').next().unwrap_or("")).collect();
        assert!(
            !first.is_empty() && first.iter().all(|s| *s == "0x0807"),
            "{kind} signature schemes: {schemes:?}"
        );
    }
    // The ICE checks: Binding requests with USERNAME and MESSAGE-INTEGRITY.
    let checks = tshark(
        "stun.type == 0x0001 && stun.att.username && stun.att.hmac",
        &["frame.number"],
        true,
    );
    assert!(
        checks.lines().count() >= 2,
        "ICE checks seen: {}",
        checks.lines().count()
    );
    let bad = tshark(
        "_ws.malformed || ((reload || dtls || stun) && _ws.expert.severity >= \"warning\")",
        &["frame.number", "_ws.col.Info"],
        true,
    );
    // The stranger's record is the one DTLS frame allowed to look odd.
    let bad: Vec<&str> = bad.lines().filter(|l| !l.contains("Client Hello")).collect();
    assert!(bad.is_empty(), "tshark flags frames:\n{}", bad.join("\n"));
    eprintln!(
        "tshark decoded {} RELOAD messages over DTLS: {codes:?}",
        codes.values().sum::<usize>()
    );
}
