//! Issue 6 §5: what an idle peer costs, in a 50-peer overlay of real
//! processes: resident memory, CPU, and the overlay upkeep it sends.

use crate::admin;
use crate::rig::Demo;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Footprint {
    pub peers: usize,
    pub seconds: f64,
    pub rss_mb_mean: f64,
    pub rss_mb_max: f64,
    /// The mean's two parts: the peer's own memory (RssAnon) and mapped
    /// files (RssFile), mostly the executable's pages, shared by every
    /// peer process on the machine.
    pub rss_anonymous_mb_mean: f64,
    pub rss_files_mb_mean: f64,
    pub cpu_percent_mean: f64,
    pub cpu_percent_max: f64,
    /// RELOAD bytes sent per peer per second: all, and upkeep alone
    /// (joins, updates, replicas, pings).
    pub bytes_per_peer_s: f64,
    pub maintenance_bytes_per_peer_s: f64,
}

/// User plus system CPU time of a process so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("peer {pid} is gone"))?;
    // Fields after the command name, which may hold spaces, in brackets.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat(5); 12 and 13 here.
    // SAFETY: sysconf has no preconditions.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11) + ticks(12)) as f64 / per_s)
}

/// CPU time of every thread of process `pid`, in seconds, to the
/// nanosecond (schedstat(5)): utime and stime count in 10 ms ticks, too
/// coarse for a few hundred paced messages.
pub fn cpu_seconds_exact(pid: u32) -> Result<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("peer {pid} is gone"))?;
    let mut ns = 0u64;
    for task in tasks {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(ns as f64 / 1e9)
}

/// Resident memory of a process in MB: all of it, its own (anonymous:
/// heap, stacks) and the files it maps (mostly the executable's pages,
/// which every peer process on the machine shares).
struct Rss {
    all: f64,
    anonymous: f64,
    files: f64,
}

fn rss_mb(pid: u32) -> Result<Rss> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("peer {pid} is gone"))?;
    let mb = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    Ok(Rss {
        all: mb("VmRSS:"),
        anonymous: mb("RssAnon:"),
        files: mb("RssFile:"),
    })
}

fn sent(admin: SocketAddr) -> Result<(f64, f64)> {
    Ok((
        admin::metric(admin, "p2psip_sent_bytes_total")?,
        admin::metric(admin, "p2psip_maintenance_sent_bytes_total")?,
    ))
}

/// Watches every peer of `demo` for `seconds`, after `settle` seconds for
/// the joins to calm down.
pub fn idle(demo: &Demo, settle: Duration, seconds: f64) -> Result<Footprint> {
    std::thread::sleep(settle);
    let n = demo.pids.len();
    let cpu_start: Vec<f64> = demo.pids.iter().map(|p| cpu_seconds(*p)).collect::<Result<_>>()?;
    let sent_start: Vec<(f64, f64)> = demo.admin.iter().map(|a| sent(*a)).collect::<Result<_>>()?;
    let start = Instant::now();
    let mut rss_max = vec![0.0f64; n];
    let mut rss_sum = vec![0.0f64; n];
    let (mut anonymous_sum, mut files_sum) = (0.0, 0.0);
    let mut samples = 0u32;
    loop {
        for (i, p) in demo.pids.iter().enumerate() {
            let r = rss_mb(*p)?;
            rss_max[i] = rss_max[i].max(r.all);
            rss_sum[i] += r.all;
            anonymous_sum += r.anonymous;
            files_sum += r.files;
        }
        samples += 1;
        if start.elapsed().as_secs_f64() >= seconds {
            break;
        }
        std::thread::sleep(Duration::from_secs(5).min(Duration::from_secs_f64(seconds / 4.0)));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu: Vec<f64> = demo
        .pids
        .iter()
        .zip(&cpu_start)
        .map(|(p, s)| Ok((cpu_seconds(*p)? - s) / elapsed * 100.0))
        .collect::<Result<_>>()?;
    let mut bytes = 0.0;
    let mut upkeep = 0.0;
    for (a, (b0, m0)) in demo.admin.iter().zip(&sent_start) {
        let (b1, m1) = sent(*a)?;
        bytes += b1 - b0;
        upkeep += m1 - m0;
    }
    let per_peer_s = |total: f64| total / n as f64 / elapsed;
    let rss_mean: Vec<f64> = rss_sum.iter().map(|s| s / f64::from(samples)).collect();
    Ok(Footprint {
        peers: n,
        seconds: elapsed,
        rss_mb_mean: rss_mean.iter().sum::<f64>() / n as f64,
        rss_mb_max: rss_max.iter().copied().fold(0.0, f64::max),
        rss_anonymous_mb_mean: anonymous_sum / f64::from(samples) / n as f64,
        rss_files_mb_mean: files_sum / f64::from(samples) / n as f64,
        cpu_percent_mean: cpu.iter().sum::<f64>() / n as f64,
        cpu_percent_max: cpu.iter().copied().fold(0.0, f64::max),
        bytes_per_peer_s: per_peer_s(bytes),
        maintenance_bytes_per_peer_s: per_peer_s(upkeep),
    })
}
