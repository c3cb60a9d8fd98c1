//! Issue 6 §6: the simulator's hops and lookup success at growing overlay
//! sizes against ½·log2 N, under churn (median session 10 minutes).

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimFigures {
    pub peers: usize,
    pub simulated_s: f64,
    pub lookups: u64,
    pub lookup_success_rate: f64,
    pub hops_mean: f64,
    pub hops_p99: u32,
    pub hops_half_log2_n: f64,
    pub items_lost: u64,
    pub items_lost_expected: u64,
    pub maintenance_bytes_per_peer_s: f64,
    pub wall_s: f64,
    pub peak_rss_mb: f64,
}

/// `p2psip sim` at `peers`, seed 1, with its plots written to `plots`.
pub fn simulate(p2psip: &Path, peers: usize, duration_s: u64, plots: &Path) -> Result<SimFigures> {
    let out = Command::new(p2psip)
        .arg("sim")
        .args(["--peers", &peers.to_string()])
        .args(["--duration", &duration_s.to_string()])
        .args(["--churn-median", "600", "--seed", "1", "--json", "--plot"])
        .arg(plots)
        .output()
        .with_context(|| format!("cannot run {} sim", p2psip.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "p2psip sim --peers {peers} failed: {}",
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
    );
    serde_json::from_slice(&out.stdout).context("p2psip sim --json printed no report")
}
