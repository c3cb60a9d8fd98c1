//! `bench/results/latest.json` and `latest.md`: the machine, the raw
//! figures and the ratios to Kamailio.

use crate::footprint::Footprint;
use crate::forwarding::Forwarding;
use crate::latency::Latency;
use crate::scale::SimFigures;
use crate::throughput::Throughput;
use serde::Serialize;
use std::fmt::Write as _;
use std::process::Command;

#[derive(Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_mb: u64,
    pub kernel: String,
    pub p2psip_revision: String,
    pub kamailio: String,
    pub sipp: String,
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
                .unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mb: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kb| kb / 1024),
            kernel: first_line("uname", &["-sr"]),
            p2psip_revision: first_line("git", &["describe", "--always", "--dirty"]),
            kamailio: first_line("kamailio", &["-v"])
                .trim_start_matches("version: ")
                .to_string(),
            // "SIPp v3.6.1-SCTP-PCAP-RTPSTREAM.": the report adds its own stop.
            sipp: first_line("sipp", &["-v"]).trim_end_matches('.').to_string(),
        }
    }
}

/// Issue 6 §1.
#[derive(Serialize)]
pub struct Registers {
    /// Distinct users SIPp registers, round robin.
    pub users: usize,
    pub p2psip_one_peer: Throughput,
    pub p2psip_peer_of_three: Throughput,
    /// What RFC 6940's signatures cost each REGISTER (issue 37 §1).
    pub signatures_one_peer: crate::signatures::SignatureCost,
    pub signatures_peer_of_three: crate::signatures::SignatureCost,
    pub kamailio: Throughput,
    pub ratio_one_peer: f64,
    pub ratio_peer_of_three: f64,
    /// Kamailio's processes that used CPU under the load, and all of them.
    pub kamailio_busy: (usize, usize),
}

/// Issue 6 §2.
#[derive(Serialize)]
pub struct Calls {
    pub p2psip: Throughput,
    pub kamailio: Throughput,
    pub ratio: f64,
    /// Kamailio's processes that used CPU under the load, and all of them.
    pub kamailio_busy: (usize, usize),
}

/// Issue 34 (performance): calls from a Kamailio domain into the overlay
/// through one proxy peer, against Kamailio taking them itself.
#[derive(Serialize)]
pub struct InterworkingCalls {
    /// Kamailio → proxy peer → overlay → callee's peer; CPU of Kamailio
    /// and every peer.
    pub inbound: Throughput,
    pub kamailio: Throughput,
    pub ratio: f64,
    pub kamailio_busy: (usize, usize),
    /// INVITE→180 at the caller: into the overlay through Kamailio and
    /// the proxy peer, out of it through the caller's peer and Kamailio,
    /// out of it from a peer that is not a proxy peer through the proxy
    /// peer and Kamailio, and through Kamailio alone.
    pub inbound_setup: crate::latency::Percentiles,
    pub outbound_setup: crate::latency::Percentiles,
    pub through_proxy_peer_setup: crate::latency::Percentiles,
    pub kamailio_setup: crate::latency::Percentiles,
}

#[derive(Serialize)]
pub struct Report {
    pub date_utc: String,
    pub machine: Machine,
    pub kamailio_children: u32,
    pub seconds_per_run: f64,
    /// Runs at the chosen setting behind each throughput figure.
    pub runs_per_figure: u16,
    pub max_failure_ratio: f64,
    /// Calls per second while call setup is timed.
    pub latency_rate_per_s: u32,
    pub registers: Option<Registers>,
    pub calls: Option<Calls>,
    pub interworking: Option<InterworkingCalls>,
    pub latency: Option<Latency>,
    pub forwarding: Option<Forwarding>,
    pub footprint: Option<Footprint>,
    pub flood: Option<crate::overload::Flood>,
    pub overload: Option<crate::overload::Overload>,
    pub relay: Option<crate::relay::Relay>,
    pub scale: Vec<SimFigures>,
    /// CPU time the hypervisor gave to other guests while each section
    /// ran, % of all (steal, proc(5)).
    pub steal_percent: std::collections::BTreeMap<String, f64>,
}

pub fn ratio(ours: &Throughput, theirs: &Throughput) -> f64 {
    if theirs.per_s > 0.0 {
        ours.per_s / theirs.per_s
    } else {
        0.0
    }
}

fn row(md: &mut String, what: &str, ours: &Throughput, theirs: &Throughput, ratio: f64) {
    let mark = |t: &Throughput| if t.within_failure_limit { "" } else { " †" };
    let _ = writeln!(
        md,
        "| {what} | {:.0}{} | {:.0}{} | {ratio:.2}× |",
        ours.per_s,
        mark(ours),
        theirs.per_s,
        mark(theirs)
    );
}

/// CPU per scenario, every process of each system: the ratio is p2psip's
/// over Kamailio's (lower is better, unlike the rates').
fn cpu_row(md: &mut String, what: &str, ours: &Throughput, theirs: &Throughput) {
    let _ = writeln!(
        md,
        "| {what} | {:.0} µs | {:.0} µs | {:.2}× its CPU |",
        ours.cpu_us_per_op,
        theirs.cpu_us_per_op,
        ours.cpu_us_per_op / theirs.cpu_us_per_op
    );
}

fn detail(md: &mut String, what: &str, t: &Throughput) {
    let r = &t.run;
    let rates: Vec<String> = t.rates.iter().map(|x| format!("{x:.0}")).collect();
    let cpu: Vec<String> = t.cpu_us_runs.iter().map(|x| format!("{x:.0}")).collect();
    let _ = writeln!(
        md,
        "| {what} | {:.0} ({}) | {:.0} ({}) | {} | {} | {} | {} | {:.1} |{}",
        t.per_s,
        rates.join(", "),
        t.cpu_us_per_op,
        cpu.join(", "),
        t.concurrency,
        r.successful,
        r.failed,
        r.retransmissions,
        r.wall_s,
        if t.within_failure_limit {
            ""
        } else {
            " a run at this setting went over the failure limit (see latest.json) |"
        }
    );
}

fn latency_table(md: &mut String, l: &Latency) {
    let _ = writeln!(
        md,
        "\n## Call setup latency\n\nINVITE→180 at {} calls/s, {} calls per (caller's peer, callee) pair, \
         timed from a loopback capture at the caller. Overlay of {} peers; the callee's phone is at \
         peer 1, the caller's at the peer named; the hops are those of the callee's lookup from the \
         caller's peer (pairs found per hop count: {:?}).\n\n\
         | path | pairs (caller's peer → callee, measured Fetch hops) | calls | p50 ms | p99 ms |\n\
         |---|---|---:|---:|---:|",
        l.rate_per_s, l.calls_per_pair, l.peers, l.pairs_by_hops
    );
    for c in &l.classes {
        let pairs: Vec<String> = c
            .pairs
            .iter()
            .map(|p| format!("{} → {} ({:.2})", p.caller_peer, p.callee, p.fetch_hops_mean))
            .collect();
        match &c.setup {
            Some(s) => {
                let _ = writeln!(
                    md,
                    "| p2psip, lookup {} hop(s) | {} | {} | {:.3} | {:.3} |",
                    c.hops,
                    pairs.join(", "),
                    s.calls,
                    s.p50_ms,
                    s.p99_ms
                );
            }
            None => {
                let _ = writeln!(md, "| p2psip, lookup {} hop(s) | none found | 0 | | |", c.hops);
            }
        }
    }
    let k = &l.kamailio;
    let _ = writeln!(
        md,
        "| Kamailio (one proxy, location in memory) | | {} | {:.3} | {:.3} |",
        k.calls, k.p50_ms, k.p99_ms
    );
    let us = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0} µs"));
    let _ = writeln!(
        md,
        "\nAdded per overlay hop (least-squares slope over the hop counts; target p50 ≤ 100 µs): \
         p50 {}, p99 {}. A hop carries the Fetch there and its answer back.",
        us(l.added_per_hop_p50_us),
        us(l.added_per_hop_p99_us)
    );
    let w = &l.wake_round_trip;
    let _ = writeln!(
        md,
        "\nThe machine's floor for that: a datagram to another idle process and back, one every {:.0} ms as the \
         calls are paced, takes p50 {:.0} µs, p99 {:.0} µs here. A hop wakes one process for the Fetch and one \
         for its answer, so it cannot add much less than this round trip.",
        1e3 / f64::from(l.rate_per_s.max(1)),
        w.p50_ms * 1e3,
        w.p99_ms * 1e3
    );
}

impl Report {
    fn throughput_tables(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "Each figure is the median closed-loop rate of {} SIPp runs of about {:.0} s each, back to back, at \
             the most scenarios in flight that kept failures under {:.1} %, measured in this run against \
             Kamailio on the same machine. † marks a figure where a run at that setting went over the failure \
             limit (see Runs).\n",
            self.runs_per_figure,
            self.seconds_per_run,
            self.max_failure_ratio * 100.0
        );
        let _ = writeln!(md, "| measurement | p2psip | Kamailio | ratio |\n|---|---:|---:|---:|");
        if let Some(r) = &self.registers {
            row(
                md,
                "REGISTER/s with digest, one peer alone",
                &r.p2psip_one_peer,
                &r.kamailio,
                r.ratio_one_peer,
            );
            row(
                md,
                "REGISTER/s with digest, one peer of 3 (signed Store, 2 replicas)",
                &r.p2psip_peer_of_three,
                &r.kamailio,
                r.ratio_peer_of_three,
            );
        }
        if let Some(c) = &self.calls {
            row(
                md,
                "calls/s, UAC → peer A → overlay → peer B → UAS (Kamailio: UAC → Kamailio → UAS)",
                &c.p2psip,
                &c.kamailio,
                c.ratio,
            );
        }
        if let Some(i) = &self.interworking {
            row(
                md,
                "calls/s from another domain, UAC → Kamailio → proxy peer → overlay → peer B → UAS \
                 (Kamailio: UAC → Kamailio → UAS)",
                &i.inbound,
                &i.kamailio,
                i.ratio,
            );
        }
        if let Some(r) = &self.registers {
            cpu_row(md, "CPU per REGISTER, one peer alone", &r.p2psip_one_peer, &r.kamailio);
            cpu_row(
                md,
                "CPU per REGISTER, the 3 peers of the overlay",
                &r.p2psip_peer_of_three,
                &r.kamailio,
            );
        }
        if let Some(c) = &self.calls {
            cpu_row(md, "CPU per call, the 3 peers of the overlay", &c.p2psip, &c.kamailio);
        }
        if let Some(i) = &self.interworking {
            cpu_row(
                md,
                "CPU per call from another domain, Kamailio and the 3 peers",
                &i.inbound,
                &i.kamailio,
            );
        }
        if self.registers.is_some() || self.calls.is_some() {
            let _ = writeln!(
                md,
                "\nCPU is the time every process of the system under test used during each run (the \
                 peers' threads from /proc/PID/task/*/schedstat, all of Kamailio's processes), over the \
                 run's successful scenarios; SIPp's own is not counted. Per-run figures are under Runs."
            );
        }
        if let Some(r) = &self.registers {
            let _ = writeln!(
                md,
                "\nThe signatures' share (issue 37 §1): the peers count the signatures they make and the \
                 public-key checks they do (`p2psip_signatures_made_total`, `p2psip_signatures_checked_total`), \
                 priced at what one costs through the peer's code on this machine, over a {}-byte input.\n\n\
                 | REGISTER | made each | checked each | µs per signature | µs per check | signatures' µs | of the CPU each |\n\
                 |---|---:|---:|---:|---:|---:|---:|",
                crate::signatures::INPUT_BYTES
            );
            for (what, cost, t) in [
                ("one peer alone", &r.signatures_one_peer, &r.p2psip_one_peer),
                (
                    "the 3 peers of the overlay",
                    &r.signatures_peer_of_three,
                    &r.p2psip_peer_of_three,
                ),
            ] {
                let _ = writeln!(
                    md,
                    "| {what} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} % |",
                    cost.made_per_register,
                    cost.checked_per_register,
                    cost.sign_us,
                    cost.check_us,
                    cost.floor_us,
                    cost.floor_us / t.cpu_us_per_op * 100.0
                );
            }
        }
        if self.calls.is_some() {
            let _ = writeln!(
                md,
                "\nA p2psip call crosses two peers (the caller's and the callee's), and each INVITE costs \
                 an overlay Fetch of the callee's signed registration; a Kamailio call crosses one proxy \
                 that looks the callee up in memory."
            );
        }
        let _ = writeln!(
            md,
            "\n## Runs\n\nPer s is the median of the runs at the chosen setting (each run's rate in brackets); the \
             other columns are the first of those runs.\n\n\
             | run | per s | CPU µs each | in flight | successful | failed | retransmissions | wall s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|"
        );
        if let Some(r) = &self.registers {
            detail(md, "REGISTER, p2psip one peer", &r.p2psip_one_peer);
            detail(md, "REGISTER, p2psip one peer of 3", &r.p2psip_peer_of_three);
            detail(md, "REGISTER, Kamailio", &r.kamailio);
        }
        if let Some(c) = &self.calls {
            detail(md, "calls, p2psip", &c.p2psip);
            detail(md, "calls, Kamailio", &c.kamailio);
        }
        if let Some(i) = &self.interworking {
            detail(md, "calls from another domain, Kamailio and p2psip", &i.inbound);
            detail(md, "calls from another domain, Kamailio alone", &i.kamailio);
        }
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut md = String::new();
        let _ = writeln!(md, "# p2psip benchmarks, {}\n", self.date_utc);
        let _ = writeln!(
            md,
            "Machine: {} ({} cores, {} MB), {}. p2psip {}, Kamailio {} ({} forked UDP workers, `-DD`), {}.\n",
            m.cpu, m.cores, m.memory_mb, m.kernel, m.p2psip_revision, m.kamailio, self.kamailio_children, m.sipp
        );
        let busy = [
            self.registers.as_ref().map(|r| ("registers", r.kamailio_busy)),
            self.calls.as_ref().map(|c| ("calls", c.kamailio_busy)),
            self.interworking.as_ref().map(|i| ("interworking", i.kamailio_busy)),
        ];
        let each: Vec<String> = busy
            .into_iter()
            .flatten()
            .map(|(section, (busy, all))| format!("{section} {busy} of {all}"))
            .collect();
        if !each.is_empty() {
            let _ = writeln!(
                md,
                "Kamailio processes that used CPU under load (its UDP workers among them): {}.\n",
                each.join(", ")
            );
        }
        if !self.steal_percent.is_empty() {
            let each: Vec<String> = self
                .steal_percent
                .iter()
                .map(|(section, s)| format!("{section} {s:.1} %"))
                .collect();
            let _ = writeln!(
                md,
                "CPU time the hypervisor gave to other guests (steal) while each section ran: {}. \
                 Figures taken under much steal do not compare with another run's.\n",
                each.join(", ")
            );
        }
        if self.registers.is_some() || self.calls.is_some() || self.interworking.is_some() {
            self.throughput_tables(&mut md);
        }
        if let Some(i) = &self.interworking {
            let _ = writeln!(
                md,
                "\n## Calls with another domain (issue 34)\n\nINVITE→180 at the caller, {} calls at {} calls/s each \
                 (captured on loopback).\n\n\
                 | path | p50 | p99 |\n|---|---:|---:|\n\
                 | into the overlay: UAC → Kamailio → proxy peer → overlay → peer B → UAS | {:.2} ms | {:.2} ms |\n\
                 | out of the overlay: UAC → peer A → Kamailio → UAS | {:.2} ms | {:.2} ms |\n\
                 | out through the proxy peer: UAC → peer B → proxy peer → Kamailio → UAS | {:.2} ms | {:.2} ms |\n\
                 | Kamailio alone: UAC → Kamailio → UAS | {:.2} ms | {:.2} ms |",
                i.kamailio_setup.calls,
                self.latency_rate_per_s,
                i.inbound_setup.p50_ms,
                i.inbound_setup.p99_ms,
                i.outbound_setup.p50_ms,
                i.outbound_setup.p99_ms,
                i.through_proxy_peer_setup.p50_ms,
                i.through_proxy_peer_setup.p99_ms,
                i.kamailio_setup.p50_ms,
                i.kamailio_setup.p99_ms
            );
        }
        if let Some(l) = &self.latency {
            latency_table(&mut md, l);
        }
        if let Some(r) = &self.relay {
            let row = |md: &mut String, name: &str, f: &crate::relay::RelayFigures| {
                let _ = writeln!(
                    md,
                    "| {name} | {:.0} | {:.2} % | {:.1} µs ({:.1}-{:.1}) |",
                    f.delivered_per_s, f.lost_percent, f.cpu_us_per_packet, f.cpu_us_min, f.cpu_us_max
                );
            };
            let _ = writeln!(
                md,
                "\n## Relay (TURN)\n\n{} RTP-like streams ({}-byte packets every 20 ms, {} each; coturn's \
                 `turnutils_uclient -y -c`, pairs of clients sending to each other's relayed address) through a \
                 relay peer (`peer --relay`) and through coturn, {} runs each, alternating. CPU is the server's, \
                 per packet delivered: median (lowest-highest).\n\n\
                 | relay | delivered per s | lost | CPU per packet |\n|---|---:|---:|---:|",
                r.streams, r.packet_bytes, r.packets_per_stream, r.runs
            );
            row(&mut md, "p2psip relay peer", &r.p2psip);
            row(&mut md, "coturn", &r.coturn);
            let _ = writeln!(md, "\np2psip's CPU per packet is {:.2}× coturn's.", r.cpu_ratio);
        }
        if let Some(f) = &self.forwarding {
            let _ = writeln!(
                md,
                "\n## Forwarding\n\nOne peer forwards {}-byte messages ({}) from a sender linked to it to a \
                 sink linked to it, both TLS links on loopback, at most {} in flight, for {:.1} s. The \
                 forwarding cost of the codec alone is `cargo bench -p reload-wire --bench codec` \
                 (relay).\n\n\
                 | forwarded per s | messages | peer's count | peer CPU | peer CPU per message |\n\
                 |---:|---:|---:|---:|---:|\n\
                 | {:.0} | {} | {:.0} | {:.0} % | {:.1} µs |",
                f.message_bytes,
                f.message,
                f.window,
                f.seconds,
                f.per_s,
                f.messages,
                f.peer_counted,
                f.peer_cpu_percent,
                f.peer_cpu_us_per_message
            );
            let _ = writeln!(
                md,
                "\nOne message at a time, one every {:.0} ms, takes p50 {:.0} µs, p99 {:.0} µs from the sender \
                 through the peer to the sink: the request's half of an overlay hop. The floor, a datagram \
                 to another idle process and back at that pace, wakes two processes as a forward does: \
                 p50 {:.0} µs, p99 {:.0} µs.",
                f.paced_gap_ms,
                f.paced.p50_ms * 1e3,
                f.paced.p99_ms * 1e3,
                f.wake_round_trip.p50_ms * 1e3,
                f.wake_round_trip.p99_ms * 1e3
            );
        }
        if let Some(f) = &self.footprint {
            let _ = writeln!(
                md,
                "\n## Idle footprint\n\n{} peer processes, watched for {:.0} s after 30 s to settle \
                 (targets: RSS ≤ 10 MB, CPU ≤ 0.5 %).\n\n\
                 | RSS mean | of which own (anonymous) | of which files | RSS max | CPU mean | CPU max | sent per peer | upkeep per peer |\n\
                 |---:|---:|---:|---:|---:|---:|---:|---:|\n\
                 | {:.1} MB | {:.1} MB | {:.1} MB | {:.1} MB | {:.2} % | {:.2} % | {:.0} B/s | {:.0} B/s |\n\n\
                 Files are mostly the executable's pages, which every peer process on the machine shares.",
                f.peers,
                f.seconds,
                f.rss_mb_mean,
                f.rss_anonymous_mb_mean,
                f.rss_files_mb_mean,
                f.rss_mb_max,
                f.cpu_percent_mean,
                f.cpu_percent_max,
                f.bytes_per_peer_s,
                f.maintenance_bytes_per_peer_s
            );
        }
        if let Some(f) = &self.flood {
            let _ = writeln!(
                md,
                "\n## REGISTER flood (issue 36)\n\n{} REGISTERs without credentials in 10 s at alice's peer, \
                 while alice calls bob at 50 calls/s (35 s before the flood, 30 s after it); the control run makes \
                 the same calls on a fresh overlay with no flood. Targets (issue 36): calls ≥ 99 %, memory 30 s \
                 after the flood within 10 % of its start; the control run's at that moment shows how much a peer \
                 moves without a flood.\n\n\
                 | challenged (401) | refused (503) | calls completed | calls failed | RSS idle | RSS at the flood's start | \
                 RSS peak | RSS 30 s after | control run, then |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
                 | {:.0} | {:.0} | {} | {} | {:.1} MB | {:.1} MB | {:.1} MB | {:.1} MB ({:+.1} %) | {:.1} MB ({:+.1} %) |",
                f.registers_sent,
                f.challenged,
                f.shed,
                f.calls_completed,
                f.calls_failed,
                f.rss_idle_mb,
                f.rss_flood_start_mb,
                f.rss_peak_mb,
                f.rss_after_mb,
                (f.rss_after_mb / f.rss_flood_start_mb - 1.0) * 100.0,
                f.control_rss_after_mb,
                (f.rss_after_mb / f.control_rss_after_mb - 1.0) * 100.0
            );
        }
        if let Some(o) = &self.overload {
            let _ = writeln!(
                md,
                "\n## Four times the sustainable call rate (issue 36)\n\nSustainable: the highest open-loop rate \
                 alice's calls to bob complete at with < 0.1 % failed and nothing refused, {} calls/s. Then {} calls/s \
                 for 10 s. Targets: refusals are 503 with Retry-After within 50 ms; at least 90 % of the sustainable \
                 rate completes; memory within the budget: what finished transactions keep is at most {} MiB \
                 (`sip::proxy::MAX_FINISHED_BYTES`), what open ones hold is bounded by the calls in setup.\n\n\
                 | completed/s | of sustainable | refused (503) | failed | refusal p50 | p99 | max | within 50 ms | RSS peak |\n\
                 |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
                 | {:.0} | {:.0} % | {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} % | {:.0} MB |",
                o.sustainable_per_s,
                o.offered_per_s,
                sip::proxy::MAX_FINISHED_BYTES >> 20,
                o.completed_per_s,
                o.completed_per_s / f64::from(o.sustainable_per_s) * 100.0,
                o.refused,
                o.failed,
                o.refusal_ms_p50,
                o.refusal_ms_p99,
                o.refusal_ms_max,
                o.refusals_in_time * 100.0,
                o.rss_peak_mb
            );
        }
        if !self.scale.is_empty() {
            let _ = writeln!(
                md,
                "\n## Scale (simulator, churn with median session {} s, seed {})\n\n\
                 | peers | simulated s | lookups | success | mean hops | ½·log2 N | p99 hops | items lost (expected) | upkeep B/s per peer | wall s | peak RSS MB |\n\
                 |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                crate::scale::CHURN_MEDIAN_S,
                crate::scale::SEED
            );
            for s in &self.scale {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {} | {:.3} % | {:.2} | {:.2} | {} | {} ({}) | {:.0} | {:.0} | {:.0} |",
                    s.peers,
                    s.simulated_s,
                    s.lookups,
                    s.lookup_success_rate * 100.0,
                    s.hops_mean,
                    s.hops_half_log2_n,
                    s.hops_p99,
                    s.items_lost,
                    s.items_lost_expected,
                    s.maintenance_bytes_per_peer_s,
                    s.wall_s,
                    s.peak_rss_mb
                );
            }
            let _ = writeln!(
                md,
                "\nMean and p99 hops against ½·log2 N, and lookup success, at every size: `scale.png`. \
                 Per size, the hop distribution, lookup success over time and upkeep traffic: `sim-N/*.png`."
            );
        }
        md
    }
}
