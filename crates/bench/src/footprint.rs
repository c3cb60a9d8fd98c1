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

/// CPU time of every thread of process `pid` so far, in seconds, to the
/// nanosecond (the first field of each thread's schedstat, proc(5)). The
/// utime and stime of /proc/PID/stat count 10 ms ticks, too coarse for a
/// few hundred paced messages.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("peer {pid} is gone"))?;
    let mut ns = 0u64;
    let mut read = 0;
    for task in tasks {
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue;
        };
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .with_context(|| format!("unreadable schedstat of process {pid}: {stat:?}"))?;
        read += 1;
    }
    anyhow::ensure!(
        read > 0,
        "no /proc/{pid}/task/*/schedstat: this kernel does not report CPU time per thread (CONFIG_SCHED_INFO)"
    );
    Ok(ns as f64 / 1e9)
}

/// Resident memory of a process in MB: all of it, its own (anonymous:
/// heap, stacks) and the files it maps (mostly the executable's pages,
/// which every peer process on the machine shares).
pub(crate) struct Rss {
    pub(crate) all: f64,
    anonymous: f64,
    files: f64,
}

pub(crate) fn rss_mb(pid: u32) -> Result<Rss> {
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
