//! The machine's floor under the per-hop latency: what it costs here to
//! wake another, idle process and hear back. An overlay hop carries the
//! request one process further and the answer one process back, so on
//! this machine a hop cannot add much less than one such round trip
//! (decision 0009).

use crate::latency::{percentiles, Percentiles};
use anyhow::{Context, Result};
use std::io::BufRead;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the environment of the child that echoes datagrams.
pub const ECHO_ENV: &str = "P2PSIP_BENCH_UDP_ECHO";

/// The child's side: prints its UDP port, then sends every datagram back
/// until one says "quit".
pub fn echo_child() -> ! {
    let code = match echo() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("p2psip-bench echo: {e}");
            1
        }
    };
    std::process::exit(code)
}

fn echo() -> std::io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    println!("{}", socket.local_addr()?.port());
    let mut buf = [0u8; 64];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        if &buf[..n] == b"quit" {
            return Ok(());
        }
        socket.send_to(&buf[..n], from)?;
    }
}

/// Round trips to an echoing child process, one every `gap` (the calls'
/// pacing, so both processes are as idle as the peers are between calls).
pub fn round_trips(pings: usize, gap: Duration) -> Result<Percentiles> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(ECHO_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the echo child")?;
    let result = (|| {
        let mut line = String::new();
        let stdout = child.stdout.take().context("the echo child has no stdout")?;
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let port: u16 = line.trim().parse().context("the echo child did not say its port")?;
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(("127.0.0.1", port))?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut rtts_ms = Vec::with_capacity(pings);
        let mut buf = [0u8; 64];
        for _ in 0..pings {
            std::thread::sleep(gap);
            let sent = Instant::now();
            socket.send(b"ping")?;
            socket
                .recv(&mut buf)
                .context("the echo child did not answer within 1 s")?;
            rtts_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        }
        let _ = socket.send(b"quit");
        percentiles(&rtts_ms).context("no round trips")
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
