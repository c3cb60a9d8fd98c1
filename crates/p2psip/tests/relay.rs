//! A relay peer's TURN server (`peer --relay`, issue 35 §4) judged by a
//! real TURN client: coturn's `turnutils_uclient`, as a phone would use
//! it, with a SIP user's credentials.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const OVERLAY: &str = "relay.p2psip.test";

/// coturn's client allocates twice (RTP and RTCP ports, EVEN-PORT with a
/// reservation) for each of two clients that are each other's peer,
/// binds channels, and sends 5 messages each way through the relay: all
/// arrive. A wrong password gets no allocation, its 401s held to the
/// per-source budget; the relay counts what it relayed.
#[test]
fn coturns_client_allocates_and_relays_through_a_relay_peer_with_sip_credentials() {
    if !tool_answers("turnutils_uclient", "-h", "coturn") {
        return;
    }
    let mut overlay = Overlay::create_with("relay", OVERLAY, &["--user", "alice:alice-pw"]);
    let node = overlay.enroll("relay");
    overlay.enroll_user(&node, "alice", "alice-pw");
    let turn_port = free_port();
    let relay_ports = free_port_block(16);
    let peer = overlay.start_peer_with(
        &node,
        None,
        &[
            "--relay",
            &format!("127.0.0.1:{turn_port}"),
            "--relay-ports",
            &format!("{relay_ports}-{}", relay_ports + 15),
            "--relay-allow-loopback-peers",
        ],
    );
    wait_for(Duration::from_secs(10), "the relay peer", || {
        status(peer.admin).is_some_and(|s| s.joined)
    });
    let uclient = |password: &str| {
        Command::new("turnutils_uclient")
            .args(["-u", "alice", "-w", password, "-r", OVERLAY, "-y", "-n", "5"])
            .args(["-p", &turn_port.to_string(), "-L", "127.0.0.1", "127.0.0.1"])
            .output()
            .unwrap()
    };
    let out = uclient("alice-pw");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "turnutils_uclient:\n{text}");
    assert!(
        text.contains("tot_send_msgs=20, tot_recv_msgs=20") && text.contains("Total lost packets 0"),
        "every message through the relay:\n{text}"
    );
    // 20 messages of 100 bytes, each relayed client to peer and peer to
    // client (the peer being the other client's relayed address).
    assert_eq!(metric(peer.admin, "p2psip_relay_relayed_bytes_total"), 4_000.0);

    let refused = uclient("not-alices");
    let text = String::from_utf8_lossy(&refused.stdout).into_owned() + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a wrong password allocates nothing:\n{text}");
    assert!(text.contains("Cannot complete Allocation"), "{text}");
    assert_eq!(metric(peer.admin, "p2psip_relay_relayed_bytes_total"), 4_000.0);
    assert!(status(peer.admin).is_some_and(|s| s.joined), "the peer serves on");
}

/// A relay address that peers cannot reach (unspecified) is refused in
/// one line that says what to give instead.
#[test]
fn an_unspecified_relay_address_is_refused_in_one_line() {
    let overlay = Overlay::create("relay-refused", OVERLAY);
    let node = overlay.enroll("relay");
    let out = Command::new(BIN)
        .args(["peer", "--dir", node.to_str().unwrap()])
        .args(["--listen", &loopback(free_port()).to_string()])
        .args(["--relay", "0.0.0.0:3478"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.contains("--relay 0.0.0.0:3478") && line.contains("not an unspecified one"),
        "{err}"
    );
}

/// RFC 6940 §9: a relay peer advertises its TURN server under
/// TURN-SERVICE (here in 20 places, `init --turn-density 20`), and the
/// other peers of an overlay that uses ICE find it by Find and Fetch at
/// random places; `p2psip status` lists it.
#[test]
fn peers_find_a_relay_peer_through_the_overlay() {
    let mut overlay = Overlay::create_with("relay-find", OVERLAY, &["--ice", "--turn-density", "20"]);
    let dirs: Vec<_> = (0..3).map(|i| overlay.enroll(&format!("node{i}"))).collect();
    let turn = format!("127.0.0.1:{}", free_port());
    let relay_ports = free_port_block(4);
    let relay = overlay.start_peer_with(
        &dirs[0],
        None,
        &[
            "--relay",
            &turn,
            "--relay-ports",
            &format!("{relay_ports}-{}", relay_ports + 3),
        ],
    );
    wait_for(Duration::from_secs(10), "the relay peer", || {
        status(relay.admin).is_some_and(|s| s.joined)
    });
    let others: Vec<Peer> = dirs[1..]
        .iter()
        .map(|d| overlay.start_peer(d, Some(relay.listen)))
        .collect();
    let all: Vec<&Peer> = std::iter::once(&relay).chain(&others).collect();
    wait_consistent(&all, Duration::from_secs(30), "3 peers joining");
    for peer in &others {
        wait_for(Duration::from_secs(90), "the relay found through the overlay", || {
            status(peer.admin).is_some_and(|s| s.relays == vec![turn.clone()])
        });
    }
    let text = run_ok(&["status", "--admin", &others[0].admin.to_string()]);
    assert!(
        text.lines().any(|l| l.starts_with("relays") && l.contains(&turn)),
        "{text}"
    );
}
