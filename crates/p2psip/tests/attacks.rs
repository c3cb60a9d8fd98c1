//! Attacks on a real peer's SIP side (issue 36, first part): one host
//! that opens connections and sends nothing cannot lock the phones out
//! of SIP over TCP, a message that never completes is dropped, and a
//! flood of malformed datagrams does not flood the log.

mod common;
mod phones;

use common::*;
use phones::{sipp_on, Scenarios};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

const DOMAIN: &str = "attacks.test.invalid";

/// One peer serving alice, with SIP on `sip`.
fn one_peer(tag: &str) -> (Overlay, Peer, SocketAddr) {
    let mut o = Overlay::create_with(tag, DOMAIN, &["--user", "alice:alice-pw"]);
    let dir = o.enroll("n0");
    o.enroll_user(&dir, "alice", "alice-pw");
    let sip = loopback(free_port());
    let peer = o.start_peer_with(&dir, None, &["--sip", &sip.to_string()]);
    wait_for(Duration::from_secs(15), "the peer to start", || {
        status(peer.admin).is_some_and(|s| s.joined && s.sip.is_some())
    });
    (o, peer, sip)
}

/// Whether the peer has closed `conn` (EOF) within `limit`.
fn closed_within(mut conn: &TcpStream, limit: Duration) -> bool {
    conn.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    match conn.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// 100 idle TCP connections from 127.0.0.1: past 64 the peer closes them
/// at once, and the 64 it took are closed when no message came within
/// 10 s. Meanwhile alice's phone, on 127.0.0.2, registers over TCP.
#[test]
fn one_host_cannot_lock_the_phones_out_of_sip_over_tcp() {
    if !tool_answers("sipp", "-v", "sip-tester") {
        return;
    }
    let (o, _peer, sip) = one_peer("attack-tcp");
    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(sip).unwrap()).collect();
    // The ones past the per-source cap are closed at once.
    let refused = idle[64..]
        .iter()
        .filter(|c| closed_within(c, Duration::from_secs(2)))
        .count();
    assert_eq!(refused, 36, "the connections past 64 from one address are refused");

    let scenarios = Scenarios::new(&o.dir.join("scenarios"), DOMAIN);
    let register = scenarios.register("register-tcp", 600, 200);
    let mut phone = sipp_on(
        Command::new("sipp"),
        "127.0.0.2",
        "t1",
        &register,
        sip,
        free_port(),
        "alice",
        &[
            "-t",
            "t1",
            "-au",
            "alice",
            "-ap",
            "alice-pw",
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
        ],
    );
    assert!(
        phone.status().unwrap().success(),
        "alice registers over TCP from another address"
    );

    // The 64 it took sent nothing: each is closed by the first-message
    // limit (10 s), not held for ever.
    let still_open = idle[..64]
        .iter()
        .filter(|c| !closed_within(c, Duration::from_secs(15)))
        .count();
    assert_eq!(still_open, 0);
    // Not at once: the limit is 10 s (with room for a loaded machine).
    assert!(
        opened.elapsed() >= Duration::from_secs(5),
        "closed by the limit, not at once"
    );
}

/// A request sent a few bytes at a time, never finished, is dropped
/// after the 10 s a message may take, and the peer answers others.
#[test]
fn a_message_that_never_completes_is_dropped() {
    let (_o, peer, sip) = one_peer("attack-slow");
    let mut slow = TcpStream::connect(sip).unwrap();
    let started = Instant::now();
    slow.write_all(b"OPTIONS sip:attacks.test.invalid SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKs\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut byte = [0u8; 1];
    let mut closed_after = None;
    while started.elapsed() < Duration::from_secs(20) {
        // One more header byte now and then keeps the connection busy,
        // but never completes the message.
        if slow.write_all(b"X").is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        match slow.read(&mut byte) {
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                closed_after = Some(started.elapsed());
                break;
            }
            _ => {}
        }
    }
    let after = closed_after.expect("the peer closed the slow connection");
    assert!(
        after >= Duration::from_secs(5) && after < Duration::from_secs(20),
        "closed after {after:?}, the limit is 10 s"
    );
    assert!(status(peer.admin).is_some(), "the peer still serves");
}

/// 1,000 malformed datagrams, each with a 60 KB header line: the log
/// gains at most the budget's 20 lines, each quoting a short prefix, and
/// the peer still answers.
#[test]
fn malformed_datagrams_do_not_flood_the_log() {
    let (_o, peer, sip) = one_peer("attack-log");
    let before = std::fs::metadata(&peer.log).unwrap().len();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let junk = format!("OPTIONS sip:x SIP/2.0\r\n{}\r\n\r\n", "y".repeat(60_000));
    for _ in 0..1_000 {
        let _ = socket.send_to(junk.as_bytes(), sip);
    }
    // The peer still answers, after every datagram before it.
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let options = "OPTIONS sip:attacks.test.invalid SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKok\r\n\
        From: <sip:probe@attacks.test.invalid>;tag=1\r\nTo: <sip:attacks.test.invalid>\r\nCall-ID: ok\r\n\
        CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let mut buf = [0u8; 4096];
    let answered = (0..5).any(|_| {
        socket.send_to(options.as_bytes(), sip).unwrap();
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) if buf[..n].starts_with(b"SIP/2.0 200") => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    });
    assert!(answered, "the peer answers after the flood");
    let log = std::fs::read_to_string(&peer.log).unwrap();
    let grew = std::fs::metadata(&peer.log).unwrap().len() - before;
    assert!(grew < 20_000, "the log grew by {grew} bytes");
    let lines = log.matches("sip: malformed message from").count();
    assert!((1..=20).contains(&lines), "{lines} malformed-message lines");
}
