//! What a simulation measured.

use crate::host::{Tally, CODE_SLOTS};
use crate::SimConfig;
use reload_wire::MessageCode;
use serde::Serialize;
use std::collections::BTreeMap;

/// Per-minute figures for the charts.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Series {
    /// Minute index since measurement started.
    pub minute: Vec<u64>,
    pub lookups: Vec<u64>,
    pub lookups_ok: Vec<u64>,
    pub maintenance_msgs: Vec<u64>,
    pub maintenance_bytes: Vec<u64>,
    pub live_peers: Vec<u64>,
}

impl Series {
    fn slot(&mut self, t_ms: u64) -> usize {
        let m = (t_ms / 60_000) as usize;
        while self.minute.len() <= m {
            self.minute.push(self.minute.len() as u64);
            self.lookups.push(0);
            self.lookups_ok.push(0);
            self.maintenance_msgs.push(0);
            self.maintenance_bytes.push(0);
            self.live_peers.push(0);
        }
        m
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    pub peers: usize,
    pub seed: u64,
    pub churn_median_s: Option<f64>,
    pub simulated_s: f64,
    /// Simulated time the ring took to build before measuring.
    pub build_s: f64,
    pub lookups: u64,
    pub lookups_ok: u64,
    pub lookup_success_rate: f64,
    pub lookup_timeouts: u64,
    pub lookup_errors: u64,
    pub hops_mean: f64,
    pub hops_p50: u32,
    pub hops_p99: u32,
    /// ½·log2 N, the Chord expectation.
    pub hops_half_log2_n: f64,
    pub hops_histogram: Vec<u64>,
    pub lookup_latency_ms_p50: u64,
    pub lookup_latency_ms_p99: u64,
    pub items_stored: u64,
    pub store_failures: u64,
    pub items_lost: u64,
    pub items_lost_expected: u64,
    /// Fraction of surviving items held by their whole ideal replica set.
    pub replication_complete: f64,
    /// Fraction of live peers whose first successor and predecessor are right.
    pub ring_consistent: f64,
    pub live_peers_end: usize,
    pub crashes: u64,
    pub graceful_leaves: u64,
    pub leave_timeouts: u64,
    pub rejoins: u64,
    /// Partition checks (RFC 6940 §10.7.4.4) that found another partition.
    pub partitions_found: u64,
    pub maintenance_msgs: u64,
    pub maintenance_bytes: u64,
    pub maintenance_msgs_per_peer_s: f64,
    pub maintenance_bytes_per_peer_s: f64,
    pub messages: u64,
    /// The measured period's messages by message code (RFC 6940 §14.8):
    /// which requests and answers the traffic is made of.
    pub messages_by_code: BTreeMap<&'static str, u64>,
    /// Messages sent while the ring was built (every join, its Attaches,
    /// Updates and data transfer) and their number per peer: what joining
    /// costs, and whether that grows faster than log N.
    pub build_messages: u64,
    pub build_messages_per_peer: f64,
    /// Wall time the build took, part of `wall_s`.
    pub build_wall_s: f64,
    /// Links each live peer holds at the end (its Connection Table). A peer
    /// far above the mean is a hub: the finger of many, sending an Update
    /// to each of them whenever its range changes (RFC 6940 §10.7.3).
    pub links_per_peer_mean: f64,
    pub links_per_peer_p99: u64,
    pub links_per_peer_max: u64,
    pub wall_s: f64,
    pub peak_rss_mb: f64,
    /// SIP users the peers served (0: no calls simulated).
    pub sip_users: usize,
    /// Registration Stores (RFC 7904 §3) that succeeded, refreshes
    /// included, and those that failed.
    pub registrations_stored: u64,
    pub registration_failures: u64,
    /// Registered users whose registration no live peer holds at the end.
    pub registrations_missing_end: u64,
    /// Registrations whose every copy crashed at once while the user's
    /// own peer lived (the most that may be missing until refreshed).
    pub registrations_lost_expected: u64,
    /// Calls whose lookup ended (started with caller and callee served by
    /// live peers and the callee registered), and those that found the
    /// callee's peer.
    pub calls: u64,
    pub calls_found: u64,
    pub call_success_rate: f64,
    /// Calls not started because every copy of the callee's registration
    /// died with its peers (it comes back at the next refresh).
    pub calls_to_lost_registrations: u64,
    /// Calls whose lookup was under way when the caller's peer left or
    /// crashed (not in `calls`).
    pub calls_abandoned: u64,
    /// The overlay's part of call setup: Fetch, replicas, AppAttach.
    pub call_setup_ms_p50: u64,
    pub call_setup_ms_p99: u64,
    /// When the last call that did not find its callee started, in
    /// seconds into the measurement.
    pub last_failed_call_s: Option<f64>,
    pub series: Series,
    #[serde(skip)]
    call_latencies: Vec<u32>,
    #[serde(skip)]
    latencies: Vec<u32>,
    #[serde(skip)]
    by_code: Vec<u64>,
}

impl Report {
    pub(crate) fn new(cfg: &SimConfig) -> Self {
        Report {
            peers: cfg.peers,
            seed: cfg.seed,
            churn_median_s: cfg.churn_median_s,
            hops_half_log2_n: (cfg.peers.max(1) as f64).log2() / 2.0,
            sip_users: cfg.sip_users,
            by_code: vec![0; CODE_SLOTS],
            ..Report::default()
        }
    }

    /// Messages sent at `t_ms` into the measurement.
    pub(crate) fn count_messages(&mut self, t_ms: u64, sent: Tally) {
        self.messages += sent.messages;
        for (sum, n) in self.by_code.iter_mut().zip(sent.by_code) {
            *sum += n;
        }
        self.maintenance_msgs += sent.maintenance_msgs;
        self.maintenance_bytes += sent.maintenance_bytes;
        if sent.maintenance_msgs > 0 {
            let m = self.series.slot(t_ms);
            self.series.maintenance_msgs[m] += sent.maintenance_msgs;
            self.series.maintenance_bytes[m] += sent.maintenance_bytes;
        }
    }

    pub(crate) fn record_lookup(&mut self, t_ms: u64, ok: bool, hops: u32, latency_ms: u64) {
        self.lookups += 1;
        let m = self.series.slot(t_ms);
        self.series.lookups[m] += 1;
        if ok {
            self.lookups_ok += 1;
            self.series.lookups_ok[m] += 1;
            let h = hops as usize;
            if self.hops_histogram.len() <= h {
                self.hops_histogram.resize(h + 1, 0);
            }
            self.hops_histogram[h] += 1;
            self.latencies.push(latency_ms.min(u32::MAX as u64) as u32);
        }
    }

    /// A call that started `t_ms` into the measurement.
    pub(crate) fn record_call(&mut self, t_ms: u64, found: bool, setup_ms: u64) {
        self.calls += 1;
        if found {
            self.calls_found += 1;
            self.call_latencies.push(setup_ms.min(u32::MAX as u64) as u32);
        } else {
            let t = t_ms as f64 / 1000.0;
            self.last_failed_call_s = Some(self.last_failed_call_s.map_or(t, |l| l.max(t)));
        }
    }

    pub(crate) fn record_failure(&mut self, timeout: bool) {
        match timeout {
            true => self.lookup_timeouts += 1,
            false => self.lookup_errors += 1,
        }
    }

    pub(crate) fn count_build_messages(&mut self, n: u64) {
        self.build_messages += n;
    }

    pub(crate) fn end_build(&mut self, simulated_s: f64, wall_s: f64) {
        self.build_s = simulated_s;
        self.build_wall_s = wall_s;
        self.build_messages_per_peer = self.build_messages as f64 / self.peers.max(1) as f64;
    }

    /// The Connection Table sizes of the live peers, in any order.
    pub(crate) fn record_links(&mut self, mut links: Vec<u32>) {
        if links.is_empty() {
            return;
        }
        links.sort_unstable();
        let total: u64 = links.iter().map(|l| *l as u64).sum();
        self.links_per_peer_mean = total as f64 / links.len() as f64;
        self.links_per_peer_p99 = percentile(&links, 0.99);
        self.links_per_peer_max = links.last().copied().unwrap_or(0) as u64;
    }

    pub(crate) fn sample(&mut self, t_ms: u64, live: usize) {
        let m = self.series.slot(t_ms);
        self.series.live_peers[m] = live as u64;
    }

    pub(crate) fn finish(&mut self, measured_s: f64, avg_peers: f64, wall_s: f64) {
        self.simulated_s = measured_s;
        self.lookup_success_rate = if self.lookups == 0 {
            0.0
        } else {
            self.lookups_ok as f64 / self.lookups as f64
        };
        let n: u64 = self.hops_histogram.iter().sum();
        if n > 0 {
            let total: u64 = self.hops_histogram.iter().enumerate().map(|(h, c)| h as u64 * c).sum();
            self.hops_mean = total as f64 / n as f64;
            self.hops_p50 = percentile_of_histogram(&self.hops_histogram, 0.50);
            self.hops_p99 = percentile_of_histogram(&self.hops_histogram, 0.99);
        }
        self.call_success_rate = if self.calls == 0 {
            0.0
        } else {
            self.calls_found as f64 / self.calls as f64
        };
        self.call_latencies.sort_unstable();
        self.call_setup_ms_p50 = percentile(&self.call_latencies, 0.50);
        self.call_setup_ms_p99 = percentile(&self.call_latencies, 0.99);
        self.latencies.sort_unstable();
        self.lookup_latency_ms_p50 = percentile(&self.latencies, 0.50);
        self.lookup_latency_ms_p99 = percentile(&self.latencies, 0.99);
        let peer_s = avg_peers * measured_s;
        if peer_s > 0.0 {
            self.maintenance_msgs_per_peer_s = self.maintenance_msgs as f64 / peer_s;
            self.maintenance_bytes_per_peer_s = self.maintenance_bytes as f64 / peer_s;
        }
        for (code, n) in self.by_code.iter().enumerate().filter(|(_, n)| **n > 0) {
            let name = match code {
                0 => "error_or_other",
                c => MessageCode(c as u16).name().unwrap_or("unassigned"),
            };
            self.messages_by_code.insert(name, *n);
        }
        self.wall_s = wall_s;
        self.peak_rss_mb = peak_rss_mb();
    }
}

fn percentile(sorted: &[u32], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as u64
}

fn percentile_of_histogram(h: &[u64], q: f64) -> u32 {
    let n: u64 = h.iter().sum();
    let want = ((n as f64 * q).ceil() as u64).max(1);
    let mut seen = 0;
    for (value, count) in h.iter().enumerate() {
        seen += count;
        if seen >= want {
            return value as u32;
        }
    }
    h.len().saturating_sub(1) as u32
}

/// Peak resident memory of this process (Linux VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_histogram() {
        // values 0..=3 with counts 1, 2, 6, 1
        let h = [1, 2, 6, 1];
        assert_eq!(percentile_of_histogram(&h, 0.5), 2);
        assert_eq!(percentile_of_histogram(&h, 0.1), 0);
        assert_eq!(percentile_of_histogram(&h, 0.99), 3);
        assert_eq!(percentile(&[5, 6, 7, 8], 0.5), 6);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
