//! Issue 35's relay figure: RTP-like streams relayed by one relay peer
//! (`peer --relay`) against coturn relaying the same streams in the same
//! run. coturn's own client, `turnutils_uclient`, plays the calls: N
//! clients in pairs, each allocating and sending one 172-byte packet (a
//! G.711 RTP packet: 12 bytes of header, 160 of audio) every 20 ms to the
//! other's relayed address, so every packet crosses the relay twice
//! (client to relay, relayed address to relayed address, relay to
//! client). The figures: packets delivered a second, lost, and each
//! server's CPU per delivered packet (all its threads, /proc schedstat).

use crate::footprint::cpu_seconds;
use crate::rig::{scratch, wait_until, Owned};
use crate::throughput::median;
use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const USER: &str = "alice";
const PASSWORD: &str = "alice-relay-pw";
const PACKET_BYTES: u32 = 172;
/// Where each server relays from (below Linux's ephemeral ports, apart).
const OUR_RELAY_PORTS: u16 = 21_000;
const COTURN_RELAY_PORTS: u16 = 23_000;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Relay {
    /// Streams (uclient clients), packets each, bytes each, runs per system.
    pub streams: u32,
    pub packets_per_stream: u32,
    pub packet_bytes: u32,
    pub runs: u16,
    pub p2psip: RelayFigures,
    pub coturn: RelayFigures,
    /// p2psip's CPU per packet over coturn's (median runs).
    pub cpu_ratio: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RelayFigures {
    pub delivered_per_s: f64,
    pub lost_percent: f64,
    /// CPU µs per delivered packet: median, and the lowest and highest
    /// of the runs.
    pub cpu_us_per_packet: f64,
    pub cpu_us_min: f64,
    pub cpu_us_max: f64,
}

/// One uclient run's outcome.
struct Run {
    delivered: f64,
    lost_percent: f64,
    seconds: f64,
    cpu_s: f64,
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `streams` streams of `packets` through each relay, `runs` times.
pub fn measure(p2psip: &Path, work: &Path, streams: u32, packets: u32, runs: u16) -> Result<Relay> {
    anyhow::ensure!(
        Command::new("turnutils_uclient").arg("-h").output().is_ok(),
        "turnutils_uclient is missing: apt-get install coturn"
    );
    let dir = scratch(work, "relay")?;
    let node = enroll_relay_peer(p2psip, &dir)?;
    let mut p2psip_runs = Vec::new();
    let mut coturn_runs = Vec::new();
    // Each run on fresh servers: allocations a run leaves behind (uclient
    // does not always delete them) would crowd the next one.
    for k in 0..runs {
        eprintln!("  relay run {}/{runs}: {streams} streams of {packets} packets", k + 1);
        let (peer, address, pid) = start_relay_peer(p2psip, &dir, &node, streams)?;
        p2psip_runs.push(run_uclient(address, pid, streams, packets)?);
        drop(peer);
        let (coturn, address, pid) = start_coturn(&dir, streams)?;
        coturn_runs.push(run_uclient(address, pid, streams, packets)?);
        drop(coturn);
    }
    let p2psip_figures = figures(&p2psip_runs);
    let coturn_figures = figures(&coturn_runs);
    Ok(Relay {
        streams,
        packets_per_stream: packets,
        packet_bytes: PACKET_BYTES,
        runs,
        cpu_ratio: if coturn_figures.cpu_us_per_packet > 0.0 {
            p2psip_figures.cpu_us_per_packet / coturn_figures.cpu_us_per_packet
        } else {
            0.0
        },
        p2psip: p2psip_figures,
        coturn: coturn_figures,
    })
}

fn figures(runs: &[Run]) -> RelayFigures {
    let per_packet: Vec<f64> = runs.iter().map(|r| r.cpu_s * 1e6 / r.delivered.max(1.0)).collect();
    let rates: Vec<f64> = runs.iter().map(|r| r.delivered / r.seconds.max(1e-3)).collect();
    let lost: Vec<f64> = runs.iter().map(|r| r.lost_percent).collect();
    RelayFigures {
        delivered_per_s: median(&rates),
        lost_percent: median(&lost),
        cpu_us_per_packet: median(&per_packet),
        cpu_us_min: per_packet.iter().copied().fold(f64::MAX, f64::min),
        cpu_us_max: per_packet.iter().copied().fold(0.0, f64::max),
    }
}

/// An overlay of one node serving `alice`: its directory.
fn enroll_relay_peer(p2psip: &Path, dir: &Path) -> Result<PathBuf> {
    let https = free_udp_port()?;
    let overlay = dir.join("overlay");
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new(p2psip).args(args).output()?;
        if !out.status.success() {
            bail!("p2psip {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    let url = format!("https://127.0.0.1:{https}/enroll");
    let alice = format!("{USER}:{PASSWORD}");
    run(&[
        "init",
        "--dir",
        overlay.to_str().unwrap_or_default(),
        "--overlay",
        "relay.bench",
        "--user",
        "peer:relay-peer-pw",
        "--user",
        &alice,
        "--enrollment-url",
        &url,
    ])?;
    let server = Owned(
        Command::new(p2psip)
            .args(["enrollment-server", "--dir", overlay.to_str().unwrap_or_default()])
            .args(["--listen", &format!("127.0.0.1:{https}")])
            .stderr(Stdio::null())
            .spawn()?,
        Duration::from_secs(5),
    );
    wait_until(Duration::from_secs(10), "the enrollment server", || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", https)).is_ok())
    })?;
    let node = dir.join("relay-peer");
    let ca = overlay.join("ca.crt");
    for (user, password) in [("peer", "relay-peer-pw"), (USER, PASSWORD)] {
        run(&[
            "enroll",
            "--server",
            &format!("https://127.0.0.1:{https}"),
            "--ca-cert",
            ca.to_str().unwrap_or_default(),
            "--user",
            user,
            "--password",
            password,
            "--dir",
            node.to_str().unwrap_or_default(),
        ])?;
    }
    drop(server);
    Ok(node)
}

/// The relay peer of `node`: its process, TURN address and pid.
fn start_relay_peer(p2psip: &Path, dir: &Path, node: &Path, streams: u32) -> Result<(Owned, SocketAddr, u32)> {
    let turn = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
    let first = OUR_RELAY_PORTS;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
    let peer = Command::new(p2psip)
        .env("P2PSIP_LOG", "warn")
        .args(["peer", "--dir", node.to_str().unwrap_or_default()])
        .args(["--listen", &listen.to_string(), "--relay", &turn.to_string()])
        .args(["--relay-ports", &format!("{first}-{}", first + 2 * streams as u16 + 8)])
        .args(["--relay-allocations-per-user", &(4 * streams).to_string()])
        .arg("--relay-allow-loopback-peers")
        .stderr(std::fs::File::create(dir.join("relay-peer.log"))?)
        .spawn()
        .context("cannot start the relay peer")?;
    let pid = peer.id();
    let peer = Owned(peer, Duration::from_secs(10));
    wait_until(Duration::from_secs(10), "the relay peer's TURN port", || {
        Ok(UdpSocket::bind(turn).is_err())
    })?;
    Ok((peer, turn, pid))
}

/// coturn on loopback with alice's credentials and no quotas of its own.
fn start_coturn(dir: &Path, streams: u32) -> Result<(Owned, SocketAddr, u32)> {
    let port = free_udp_port()?;
    let first = COTURN_RELAY_PORTS;
    let child = Command::new("turnserver")
        .args(["-n", "--listening-ip=127.0.0.1", &format!("--listening-port={port}")])
        .args(["--relay-ip=127.0.0.1", &format!("--min-port={first}")])
        // coturn picks ports at random in its range: room to spare.
        .arg(format!("--max-port={}", first + 8 * streams as u16 + 64))
        .args([
            "--lt-cred-mech",
            &format!("--user={USER}:{PASSWORD}"),
            "--realm=relay.bench",
        ])
        .args(["--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers"])
        .arg(format!("--userdb={}", dir.join("turndb").display()))
        .args(["--log-file=stdout", "--no-stdout-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start coturn's turnserver: apt-get install coturn")?;
    let pid = child.id();
    let coturn = Owned(child, Duration::from_secs(5));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(Duration::from_secs(10), "coturn's port", || {
        Ok(UdpSocket::bind(addr).is_err())
    })?;
    Ok((coturn, addr, pid))
}

fn run_uclient(server: SocketAddr, pid: u32, streams: u32, packets: u32) -> Result<Run> {
    let before = cpu_seconds(pid)?;
    let out = Command::new("turnutils_uclient")
        .args(["-u", USER, "-w", PASSWORD, "-y", "-c"])
        .args([
            "-m",
            &streams.to_string(),
            "-n",
            &packets.to_string(),
            "-l",
            &PACKET_BYTES.to_string(),
        ])
        .args(["-p", &server.port().to_string(), "-L", "127.0.0.1", "127.0.0.1"])
        .output()
        .context("cannot run turnutils_uclient")?;
    let cpu_s = cpu_seconds(pid)? - before;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("turnutils_uclient against {server} failed:\n{}", tail(&text));
    }
    let number_after = |label: &str| -> Option<f64> {
        text.lines().rev().find_map(|l| l.split(label).nth(1)).and_then(|rest| {
            rest.trim_start_matches(['=', ' '])
                .split([',', ' ', '('])
                .next()?
                .parse()
                .ok()
        })
    };
    let delivered = number_after("tot_recv_msgs").context("no tot_recv_msgs in uclient's output")?;
    let seconds = number_after("Total transmit time is").context("no transmit time in uclient's output")?;
    let lost_percent = text
        .lines()
        .rev()
        .find_map(|l| l.split("Total lost packets").nth(1))
        .and_then(|rest| rest.split('(').nth(1)?.split('%').next()?.trim().parse().ok())
        .unwrap_or(0.0);
    Ok(Run {
        delivered,
        lost_percent,
        seconds,
        cpu_s,
    })
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
