//! `p2psip sim`: runs the overlay engine at scale in the deterministic
//! simulator and reports what it measured.

use anyhow::{bail, Context, Result};
use clap::Args;
use sim::{Report, Scenario, SessionModel, SimConfig, Simulation};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Peers in the overlay.
    #[arg(long, default_value_t = 1000)]
    peers: usize,
    /// Simulated seconds to measure, after the ring is built and settled.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Median peer session in seconds; churn is off without it.
    #[arg(long, value_name = "SECS")]
    churn_median: Option<f64>,
    /// Session-time distribution: "exponential" or "pareto:SHAPE".
    #[arg(long, default_value = "exponential", value_parser = parse_session)]
    session: SessionModel,
    /// Fraction of churn departures that are crashes (the rest leave gracefully).
    #[arg(long, default_value_t = 0.5, value_parser = parse_fraction)]
    crash_fraction: f64,
    /// Crash this fraction of the peers at once, SECS into the run: F or F@SECS.
    #[arg(long, value_name = "F[@SECS]", value_parser = parse_at)]
    mass_crash: Option<(f64, u64)>,
    /// This fraction of the peers leaves gracefully, one at a time: F or F@SECS.
    #[arg(long, value_name = "F[@SECS]", value_parser = parse_at)]
    leave: Option<(f64, u64)>,
    /// Seconds between the graceful leaves of --leave.
    #[arg(long, default_value_t = 2)]
    leave_interval: u64,
    /// Split the network: this fraction of the peers can reach only each
    /// other, the rest only each other, SECS into the run, for LASTING
    /// seconds: F, F@SECS or F@SECS+LASTING (default 60 s in, 300 s long).
    #[arg(long, value_name = "F[@SECS[+LASTING]]", value_parser = parse_partition)]
    partition: Option<(f64, u64, u64)>,
    /// Seed of the run; the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Lookups (Fetches of stored values) per simulated second.
    #[arg(long, default_value_t = 20.0)]
    lookups_per_s: f64,
    /// SIP users whose phones the peers serve (round robin): each is
    /// registered in the overlay (RFC 7904) and refreshed; 0 for none.
    #[arg(long, default_value_t = 0)]
    users: usize,
    /// Calls per simulated second between random users (with --users):
    /// the caller's peer finds the callee's peer through the overlay.
    #[arg(long, value_name = "PER_S", default_value_t = 10.0)]
    call_rate: f64,
    /// Median one-way latency between two peers, in ms (log-normal, cut
    /// 3 deviations below the median).
    #[arg(long, default_value_t = 40.0, value_parser = parse_latency)]
    latency_ms: f64,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    loss: f64,
    /// Joins per simulated second while the ring is built (default: the
    /// whole ring in two minutes, at least 10 per second).
    #[arg(long, value_name = "PER_S")]
    join_rate: Option<f64>,
    /// Most the ring grows per simulated second while it is built, as a
    /// fraction of its size (0 = no limit: every join at the steady rate
    /// from the first second).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.2)]
    join_growth: f64,
    /// Threads that share the peers' work (default: one per core). The
    /// run is the same for any number.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write PNG charts into this directory: hops.png (hops against
    /// ½·log2 N), lookups.png (success over time), maintenance.png.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("{f} is not a fraction between 0 and 1"));
    }
    Ok(f)
}

fn parse_latency(s: &str) -> Result<f64, String> {
    let ms: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of milliseconds"))?;
    if !(ms.is_finite() && ms > 0.0) {
        return Err(format!("{ms} ms: give a positive median latency, e.g. 40"));
    }
    Ok(ms)
}

fn parse_at(s: &str) -> Result<(f64, u64), String> {
    let (f, at) = s.split_once('@').unwrap_or((s, "60"));
    let at = at.parse().map_err(|_| format!("'{at}' is not a number of seconds"))?;
    Ok((parse_fraction(f)?, at))
}

fn parse_partition(s: &str) -> Result<(f64, u64, u64), String> {
    let (at, lasting) = s.split_once('+').unwrap_or((s, "300"));
    let lasting = lasting
        .parse()
        .map_err(|_| format!("'{lasting}' is not a number of seconds (F@SECS+LASTING)"))?;
    let (fraction, at_s) = parse_at(at)?;
    Ok((fraction, at_s, lasting))
}

fn parse_session(s: &str) -> Result<SessionModel, String> {
    match s.split_once(':') {
        None if s == "exponential" => Ok(SessionModel::Exponential),
        Some(("pareto", shape)) => {
            let shape: f64 = shape.parse().map_err(|_| format!("'{shape}' is not a Pareto shape"))?;
            if shape <= 0.0 {
                return Err("the Pareto shape must be above 0".into());
            }
            Ok(SessionModel::Pareto { shape })
        }
        _ => Err(format!("'{s}' is not exponential or pareto:SHAPE")),
    }
}

pub fn run(args: SimArgs) -> Result<()> {
    if args.peers < 2 {
        bail!("--peers must be at least 2");
    }
    if args.duration == 0 {
        bail!("--duration must be at least 1 second");
    }
    if args.churn_median.is_some_and(|m| m <= 0.0) {
        bail!("--churn-median must be above 0 seconds");
    }
    crate::huge_pages(true);
    crate::rare_heap_walks();
    let mut cfg = SimConfig::new(args.peers, args.duration);
    cfg.churn_median_s = args.churn_median;
    cfg.session = args.session;
    cfg.crash_fraction = args.crash_fraction;
    cfg.seed = args.seed;
    if !(args.lookups_per_s.is_finite() && args.lookups_per_s > 0.0) {
        bail!("--lookups-per-s {}: give a positive rate, e.g. 20", args.lookups_per_s);
    }
    cfg.lookups_per_s = args.lookups_per_s;
    if !(args.call_rate.is_finite() && args.call_rate > 0.0) {
        bail!(
            "--call-rate {}: give a positive number of calls per second, e.g. 10",
            args.call_rate
        );
    }
    cfg.sip_users = args.users;
    cfg.calls_per_s = args.call_rate;
    cfg.latency.median_ms = args.latency_ms;
    cfg.loss = args.loss;
    if let Some(rate) = args.join_rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--join-rate {rate}: give a positive number of joins per second, e.g. --join-rate 50");
        }
        cfg.join_rate_per_s = rate;
    }
    if !(args.join_growth.is_finite() && args.join_growth >= 0.0) {
        bail!(
            "--join-growth {}: give a fraction of the ring per second, 0 or more, e.g. --join-growth 0.2",
            args.join_growth
        );
    }
    cfg.join_growth_per_s = args.join_growth;
    if let Some(threads) = args.threads {
        if threads == 0 {
            bail!("--threads 0: give at least 1, e.g. --threads 2");
        }
        cfg.threads = threads;
    }
    if let Some((fraction, at_s)) = args.mass_crash {
        cfg.scenarios.push(Scenario::MassCrash { at_s, fraction });
    }
    if let Some((fraction, at_s)) = args.leave {
        cfg.scenarios.push(Scenario::LeaveOneByOne {
            at_s,
            fraction,
            interval_s: args.leave_interval,
        });
    }
    if let Some((fraction, at_s, lasting_s)) = args.partition {
        cfg.scenarios.push(Scenario::Partition {
            at_s,
            fraction,
            lasting_s,
        });
    }
    if let Some(dir) = &args.plot {
        // Fail now rather than after a long run.
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the plot directory {}", dir.display()))?;
    }
    let bar = indicatif::ProgressBar::new(args.duration);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} simulated {pos}/{len} s [{bar:40}] {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = Simulation::new(cfg)?.run(&mut |done_ms, _| bar.set_position(done_ms / 1000));
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    if let Some(dir) = &args.plot {
        for path in crate::plot::write_charts(&report, dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn print_table(r: &Report) {
    let rows: Vec<(&str, String)> = vec![
        ("peers", r.peers.to_string()),
        ("seed", r.seed.to_string()),
        (
            "churn median session",
            r.churn_median_s.map_or("none".into(), |m| format!("{m} s")),
        ),
        (
            "ring built in",
            format!("{:.1} s simulated, {:.1} s wall", r.build_s, r.build_wall_s),
        ),
        (
            "messages while building",
            format!("{} ({:.0} per peer)", r.build_messages, r.build_messages_per_peer),
        ),
        ("simulated", format!("{:.0} s", r.simulated_s)),
        ("lookups", r.lookups.to_string()),
        (
            "lookup success",
            format!(
                "{:.3} % ({} timeouts, {} errors)",
                r.lookup_success_rate * 100.0,
                r.lookup_timeouts,
                r.lookup_errors
            ),
        ),
        (
            "hops mean / p50 / p99",
            format!(
                "{:.2} / {} / {}  (½·log2 N = {:.2})",
                r.hops_mean, r.hops_p50, r.hops_p99, r.hops_half_log2_n
            ),
        ),
        (
            "lookup latency p50 / p99",
            format!("{} / {} ms", r.lookup_latency_ms_p50, r.lookup_latency_ms_p99),
        ),
        ("items stored", r.items_stored.to_string()),
        (
            "items lost / expected",
            format!("{} / {}", r.items_lost, r.items_lost_expected),
        ),
        (
            "replication complete",
            format!("{:.2} %", r.replication_complete * 100.0),
        ),
        ("ring consistent", format!("{:.2} %", r.ring_consistent * 100.0)),
        ("SIP users", r.sip_users.to_string()),
        (
            "registrations stored / failed",
            format!("{} / {}", r.registrations_stored, r.registration_failures),
        ),
        (
            "registrations missing / unavoidable",
            format!("{} / {}", r.registrations_missing_end, r.registrations_lost_expected),
        ),
        (
            "calls / found the callee's peer",
            format!(
                "{} / {} ({:.3} %; {} not started: registration lost)",
                r.calls,
                r.calls_found,
                r.call_success_rate * 100.0,
                r.calls_to_lost_registrations
            ),
        ),
        (
            "call setup in the overlay p50 / p99",
            format!("{} / {} ms", r.call_setup_ms_p50, r.call_setup_ms_p99),
        ),
        (
            "crashes / graceful leaves / rejoins",
            format!("{} / {} / {}", r.crashes, r.graceful_leaves, r.rejoins),
        ),
        ("partitions found (§10.7.4.4)", r.partitions_found.to_string()),
        (
            "links per peer mean / p99 / max",
            format!(
                "{:.1} / {} / {}",
                r.links_per_peer_mean, r.links_per_peer_p99, r.links_per_peer_max
            ),
        ),
        (
            "maintenance per peer",
            format!(
                "{:.3} msg/s, {:.1} B/s",
                r.maintenance_msgs_per_peer_s, r.maintenance_bytes_per_peer_s
            ),
        ),
        ("wall time", format!("{:.1} s", r.wall_s)),
        ("peak RSS", format!("{:.0} MB", r.peak_rss_mb)),
    ];
    for (k, v) in rows {
        println!("{k:<36} {v}");
    }
}
