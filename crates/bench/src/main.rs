//! `p2psip-bench`: what `bench/run` runs. It measures p2psip and Kamailio
//! side by side on this machine, in one run, and writes
//! `bench/results/latest.json` and `latest.md` (issue 6).

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod admin;
mod footprint;
mod forwarding;
mod interworking;
mod latency;
mod overload;
mod relay;
mod report;
mod rig;
mod scale;
mod signatures;
mod sipp;
mod steal;
mod throughput;
mod wake;

use report::{ratio, Calls, Machine, Registers, Report};
use rig::{scratch, Demo, DemoSpec, Kamailio};
use throughput::{Ports, Scenarios};

#[derive(Parser)]
#[command(name = "p2psip-bench", about = "Measure p2psip side by side with Kamailio")]
struct Args {
    /// The repository (scenarios in crates/p2psip/tests/sipp and bench/,
    /// results in bench/results).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The p2psip executable (default: next to this one).
    #[arg(long)]
    p2psip: Option<PathBuf>,
    /// Scratch space for overlays, configurations and SIPp statistics.
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Seconds each measured SIPp run should last.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Throughput runs at the chosen setting; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    repeats: u16,
    /// Distinct users the REGISTER load cycles through.
    #[arg(long, default_value_t = 500)]
    users: usize,
    /// Kamailio's UDP worker processes (default: one per core, as its
    /// own documentation advises).
    #[arg(long)]
    kamailio_children: Option<u32>,
    /// Measurements to run, comma-separated: registers, calls,
    /// interworking (calls from a Kamailio domain into the overlay through
    /// a proxy peer), latency, forwarding, footprint, overload (a REGISTER
    /// flood and 4x the sustainable call rate at one peer), scale, relay
    /// (RTP-like streams through a relay peer and through coturn).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "registers,calls,interworking,latency,forwarding,footprint,overload,scale,relay"
    )]
    only: Vec<Section>,
    /// Peers of the overlay call setup is timed through (at most 100,
    /// the demo's limit; 5-hop lookups need about that many).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(3..=100))]
    latency_peers: u16,
    /// Callee names whose lookup path lengths are probed from every
    /// caller's peer (in 100 peers, about 1 in 300 lookups takes 5 hops).
    #[arg(long, default_value_t = 100)]
    latency_callees: usize,
    /// Calls per second while call setup is timed: a moderate load.
    #[arg(long, default_value_t = 50)]
    latency_rate: u32,
    /// Calls timed per (caller's peer, callee) pair and for Kamailio.
    #[arg(long, default_value_t = 500)]
    latency_calls: u64,
    /// RTP-like streams the relay section plays through each TURN server
    /// (pairs of uclient clients; 100 streams are 50 two-way calls).
    #[arg(long, default_value_t = 100)]
    relay_streams: u32,
    /// Packets each stream sends, one every 20 ms (500: 10 s).
    #[arg(long, default_value_t = 500)]
    relay_packets: u32,
    /// Peers of the overlay whose idle footprint is measured.
    #[arg(long, default_value_t = 50)]
    footprint_peers: u16,
    /// How long the idle peers are watched, in seconds.
    #[arg(long, default_value_t = 300.0)]
    footprint_seconds: f64,
    /// Overlay sizes the simulator runs, comma-separated (100000 peers
    /// for 600 s take about 5 minutes and 2.3 GB).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    scale_peers: Vec<usize>,
    /// Simulated seconds of each scale run.
    #[arg(long, default_value_t = 600)]
    scale_duration: u64,
    /// The first of the 500 loopback ports the overlays take (SIPp and
    /// Kamailio take the 50 after them).
    #[arg(long, default_value_t = 17084)]
    base_port: u16,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Section {
    Registers,
    Calls,
    Interworking,
    Latency,
    Forwarding,
    Footprint,
    Overload,
    Scale,
    Relay,
}

/// Ports beside the overlay's block: Kamailio, then SIPp's.
struct Layout {
    kamailio: SocketAddr,
    sipp: Ports,
}

impl Layout {
    fn new(base: u16) -> Layout {
        let after = base + 500;
        Layout {
            kamailio: SocketAddr::from(([127, 0, 0, 1], after)),
            sipp: Ports {
                registrar_load: after + 10,
                caller: after + 20,
                callee: after + 30,
            },
        }
    }
}

fn main() {
    if std::env::var_os(wake::ECHO_ENV).is_some() {
        wake::echo_child();
    }
    if let Err(e) = run(Args::parse()) {
        eprintln!("p2psip-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(mut args: Args) -> Result<()> {
    anyhow::ensure!(
        args.base_port <= u16::MAX - 550,
        "--base-port {} leaves no room for the 550 ports the benchmark uses; give one below {}",
        args.base_port,
        u16::MAX - 550
    );
    let p2psip = match &args.p2psip {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("p2psip"),
    };
    anyhow::ensure!(
        p2psip.exists(),
        "no p2psip executable at {}: build it with `cargo build --release` or give --p2psip",
        p2psip.display()
    );
    std::fs::create_dir_all(&args.work).with_context(|| format!("cannot create --work {}", args.work.display()))?;
    // SIPp runs in the work directory; every path it is given is absolute.
    args.work = args.work.canonicalize()?;
    args.repo = args.repo.canonicalize()?;
    let layout = Layout::new(args.base_port);
    let machine = Machine::describe();
    eprintln!(
        "p2psip-bench: {} ({} cores), Kamailio {}, {}",
        machine.cpu, machine.cores, machine.kamailio, machine.sipp
    );

    let mut steal = BTreeMap::new();
    let registers = section(&args, Section::Registers, &mut steal, || {
        registers(&args, &p2psip, &layout)
    })?;
    let calls = section(&args, Section::Calls, &mut steal, || calls(&args, &p2psip, &layout))?;
    let interworking = section(&args, Section::Interworking, &mut steal, || {
        interworking::measure(&args, &p2psip, &layout)
    })?;
    let latency = section(&args, Section::Latency, &mut steal, || latency(&args, &p2psip, &layout))?;
    let forwarding = section(&args, Section::Forwarding, &mut steal, || forwarding(&args, &p2psip))?;
    let footprint = section(&args, Section::Footprint, &mut steal, || footprint(&args, &p2psip))?;
    let overloads = section(&args, Section::Overload, &mut steal, || {
        overloads(&args, &p2psip, &layout)
    })?;
    let (flood, overload) = overloads.map_or((None, None), |(f, o)| (Some(f), Some(o)));
    let relay = section(&args, Section::Relay, &mut steal, || {
        relay::measure(
            &p2psip,
            &args.work,
            args.relay_streams,
            args.relay_packets,
            args.repeats.max(5),
        )
    })?;
    let results = args.repo.join("bench/results");
    let mut scale = Vec::new();
    if args.only.contains(&Section::Scale) {
        for &n in &args.scale_peers {
            eprintln!(
                "p2psip-bench: simulator at {n} peers, {} s of churn",
                args.scale_duration
            );
            let figures = scale::simulate(&p2psip, n, args.scale_duration, &results.join(format!("sim-{n}")))?;
            eprintln!(
                "  mean hops {:.2} (½·log2 N = {:.2}), lookups {:.3} % ok, {:.0} s wall",
                figures.hops_mean,
                figures.hops_half_log2_n,
                figures.lookup_success_rate * 100.0,
                figures.wall_s
            );
            scale.push(figures);
        }
        if !scale.is_empty() {
            scale::write_chart(&scale, &results.join("scale.png"))?;
        }
    }

    let report = Report {
        date_utc: report_date(),
        machine,
        kamailio_children: kamailio_workers(&args),
        seconds_per_run: args.seconds,
        runs_per_figure: args.repeats,
        max_failure_ratio: throughput::MAX_FAILURE_RATIO,
        latency_rate_per_s: args.latency_rate,
        registers,
        calls,
        interworking,
        latency,
        forwarding,
        footprint,
        flood,
        overload,
        relay,
        scale,
        steal_percent: steal,
    };
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("latest.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    let md = report.markdown();
    std::fs::write(results.join("latest.md"), &md)?;
    println!("{md}");
    eprintln!("p2psip-bench: wrote {}", results.join("latest.{md,json}").display());
    Ok(())
}

/// Runs one section of the benchmark if it was asked for, noting the
/// steal time while it ran under its name.
fn section<T>(
    args: &Args,
    wanted: Section,
    steal: &mut BTreeMap<String, f64>,
    run: impl FnOnce() -> Result<T>,
) -> Result<Option<T>> {
    if !args.only.contains(&wanted) {
        return Ok(None);
    }
    let (out, stolen) = steal::during(run);
    if let Some(s) = stolen {
        if let Some(name) = wanted.to_possible_value() {
            steal.insert(name.get_name().to_string(), s);
        }
    }
    out.map(Some)
}

fn report_date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Kamailio from `bench/kamailio/kamailio.cfg`, working in `work`.
fn kamailio(args: &Args, layout: &Layout, work: &Path, password: &str) -> Result<Kamailio> {
    routing_kamailio(args, layout, work, password, None)
}

/// [`kamailio`], sending requests for `route`'s domain to its proxy peer.
fn routing_kamailio(
    args: &Args,
    layout: &Layout,
    work: &Path,
    password: &str,
    route: Option<rig::Route>,
) -> Result<Kamailio> {
    Kamailio::start(
        &args.repo.join("bench/kamailio/kamailio.cfg"),
        work,
        layout.kamailio,
        password,
        kamailio_workers(args),
        route,
    )
}

fn kamailio_workers(args: &Args) -> u32 {
    args.kamailio_children
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)))
}

/// How many of Kamailio's processes worked under the load just run, and
/// how many it runs; says so when fewer worked than it has UDP workers.
fn note_busy(kamailio: &Kamailio) -> (usize, usize) {
    let (busy, all) = kamailio.busy_processes();
    eprintln!("  Kamailio: {busy} of its {all} processes used CPU under load");
    if busy < kamailio.workers as usize {
        eprintln!(
            "  WARNING: Kamailio has {} UDP workers but only {busy} processes worked: the reference ran below its capacity",
            kamailio.workers
        );
    }
    (busy, all)
}

fn register_scenario(args: &Args, work: &Path, domain: &str) -> Result<PathBuf> {
    sipp::scenario(work, &args.repo.join("bench/sipp/register.xml"), domain, &[])
}

/// `p2psip demo` in `work` on the benchmark's ports.
fn start_demo(args: &Args, p2psip: &Path, work: &Path, peers: u16, users: &[String], users_at: &[u16]) -> Result<Demo> {
    start_demo_with_proxy_peers(args, p2psip, work, (peers, 0), users, users_at)
}

/// [`start_demo`] whose first `proxy_peers` of `peers` are proxy peers.
fn start_demo_with_proxy_peers(
    args: &Args,
    p2psip: &Path,
    work: &Path,
    (peers, proxy_peers): (u16, u16),
    users: &[String],
    users_at: &[u16],
) -> Result<Demo> {
    Demo::start(
        p2psip,
        work,
        &DemoSpec {
            peers,
            users,
            users_at,
            base_port: args.base_port,
            proxy_peers,
        },
    )
}

/// REGISTER, the caller's and the callee's scenario, with `domain`.
fn call_scenarios(args: &Args, work: &Path, domain: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let tests = args.repo.join("crates/p2psip/tests/sipp");
    // The tests' scenarios.
    Ok((
        register_scenario(args, work, domain)?,
        // The caller is alice: a peer takes calls only from the user the
        // phone authenticated as (issue 36 §4).
        sipp::scenario(work, &tests.join("uac_call.xml"), domain, &[("CALLER", "alice")])?,
        throughput::callee_scenario(work, &tests, domain)?,
    ))
}

/// Issue 6 §1: one peer alone, one peer of three, Kamailio.
fn registers(args: &Args, p2psip: &Path, layout: &Layout) -> Result<Registers> {
    let users: Vec<String> = (0..args.users).map(|i| format!("u{i:04}")).collect();
    type Measured = (throughput::Throughput, signatures::SignatureCost, String, String);
    let measure = |name: &str, peers: u16| -> Result<Measured> {
        eprintln!("p2psip-bench: REGISTER throughput, p2psip with {peers} peer(s)");
        let work = scratch(&args.work, name)?;
        let demo = start_demo(args, p2psip, &work, peers, &users, &[0])?;
        let scenario = register_scenario(args, &work, &demo.domain)?;
        let inject = sipp::users_file(&work, "users.csv", &users, &demo.domain, &demo.password)?;
        let before = signatures::counted(&demo.admin)?;
        let t = throughput::registers(
            &work,
            &scenario,
            demo.sip[0],
            &inject,
            layout.sipp.registrar_load,
            args.seconds,
            usize::from(args.repeats),
            &|| demo.cpu_seconds(),
        )?;
        let after = signatures::counted(&demo.admin)?;
        let registered = t.attempts.iter().map(|a| a.run.successful).sum();
        // Priced as the responsible peer's first replica checks what the
        // serving peer signed; one peer alone checks its own.
        let checker = &demo.node_dirs[demo.node_dirs.len() - 1];
        let cost = signatures::cost(
            after.0 - before.0,
            after.1 - before.1,
            registered,
            &demo.node_dirs[0],
            checker,
        )?;
        eprintln!(
            "  {:.0}/s (median of {:.0?}), {:.0} µs CPU each; {:.1} signatures made and {:.1} checked each, {:.0} µs of CPU at {:.1} and {:.1} µs",
            t.per_s, t.rates, t.cpu_us_per_op, cost.made_per_register, cost.checked_per_register, cost.floor_us, cost.sign_us, cost.check_us
        );
        Ok((t, cost, demo.domain.clone(), demo.password.clone()))
    };
    let (alone, alone_signatures, domain, password) = measure("register-1", 1)?;
    let (of_three, of_three_signatures, _, _) = measure("register-3", 3)?;

    eprintln!("p2psip-bench: REGISTER throughput, Kamailio");
    let work = scratch(&args.work, "register-kamailio")?;
    let kamailio = kamailio(args, layout, &work, &password)?;
    let scenario = register_scenario(args, &work, &domain)?;
    let inject = sipp::users_file(&work, "users.csv", &users, &domain, &password)?;
    let reference = throughput::registers(
        &work,
        &scenario,
        kamailio.addr,
        &inject,
        layout.sipp.registrar_load,
        args.seconds,
        usize::from(args.repeats),
        &|| kamailio.cpu_seconds(),
    )?;
    eprintln!(
        "  {:.0}/s (median of {:.0?}), {:.0} µs CPU each",
        reference.per_s, reference.rates, reference.cpu_us_per_op
    );
    let kamailio_busy = note_busy(&kamailio);
    drop(kamailio);
    Ok(Registers {
        users: users.len(),
        ratio_one_peer: ratio(&alone, &reference),
        ratio_peer_of_three: ratio(&of_three, &reference),
        p2psip_one_peer: alone,
        p2psip_peer_of_three: of_three,
        signatures_one_peer: alone_signatures,
        signatures_peer_of_three: of_three_signatures,
        kamailio: reference,
        kamailio_busy,
    })
}

/// Issue 6 §2: alice's SIPp calls bob's through two peers of a 3-peer
/// overlay, and through Kamailio.
fn calls(args: &Args, p2psip: &Path, layout: &Layout) -> Result<Calls> {
    let users = ["alice".to_string(), "bob".to_string()];

    eprintln!("p2psip-bench: call throughput, p2psip (alice at peer 0, bob at peer 1 of 3)");
    let work = scratch(&args.work, "calls-p2psip")?;
    let demo = start_demo(args, p2psip, &work, 3, &users, &[])?;
    let cpu = || demo.cpu_seconds();
    let overlay = (demo.domain.as_str(), demo.password.as_str());
    let ours = alice_calls_bob(args, layout, &work, overlay, (demo.sip[0], demo.sip[1]), &cpu)
        .context("p2psip call throughput")?;
    eprintln!(
        "  {:.0}/s (median of {:.0?}), {:.0} µs CPU each",
        ours.per_s, ours.rates, ours.cpu_us_per_op
    );
    let (domain, password) = (demo.domain.clone(), demo.password.clone());
    drop(demo);

    eprintln!("p2psip-bench: call throughput, Kamailio");
    let work = scratch(&args.work, "calls-kamailio")?;
    let kamailio = kamailio(args, layout, &work, &password)?;
    let cpu = || kamailio.cpu_seconds();
    let at = (kamailio.addr, kamailio.addr);
    let reference =
        alice_calls_bob(args, layout, &work, (&domain, &password), at, &cpu).context("Kamailio call throughput")?;
    eprintln!(
        "  {:.0}/s (median of {:.0?}), {:.0} µs CPU each",
        reference.per_s, reference.rates, reference.cpu_us_per_op
    );
    let kamailio_busy = note_busy(&kamailio);
    Ok(Calls {
        ratio: ratio(&ours, &reference),
        p2psip: ours,
        kamailio: reference,
        kamailio_busy,
    })
}

/// Call throughput of alice (registered at `caller`) calling bob
/// (registered at `callee`), both of `domain`: the tests' scenarios.
fn alice_calls_bob(
    args: &Args,
    layout: &Layout,
    work: &Path,
    (domain, password): (&str, &str),
    (caller, callee): (SocketAddr, SocketAddr),
    cpu: throughput::CpuMeter,
) -> Result<throughput::Throughput> {
    let (register, uac, uas) = call_scenarios(args, work, domain)?;
    let alice = sipp::users_file(work, "alice.csv", &["alice".to_string()], domain, password)?;
    let bob = sipp::users_file(work, "bob.csv", &["bob".to_string()], domain, password)?;
    throughput::calls(
        work,
        &Scenarios {
            register: &register,
            register_callee: None,
            caller: &uac,
            callee: &uas,
        },
        &layout.sipp,
        caller,
        callee,
        &alice,
        &bob,
        "bob",
        args.seconds,
        usize::from(args.repeats),
        cpu,
    )
}

fn latency_calling<'a>(
    args: &Args,
    layout: &Layout,
    work: &'a Path,
    (register, caller, callee): (&'a Path, &'a Path, &'a Path),
) -> latency::Calling<'a> {
    latency::Calling {
        work,
        register,
        caller,
        callee,
        caller_port: layout.sipp.caller,
        callee_port: layout.sipp.callee,
        rate_per_s: args.latency_rate,
        calls: args.latency_calls,
    }
}

/// Issue 6 §3: INVITE→180 through an overlay, by the hops of the callee's
/// lookup, and through Kamailio.
fn latency(args: &Args, p2psip: &Path, layout: &Layout) -> Result<latency::Latency> {
    let peers = args.latency_peers;
    eprintln!(
        "p2psip-bench: call setup latency, {} calls/s, {peers} peers, callees at peer 1",
        args.latency_rate
    );
    let caller = |peer: usize| format!("a{peer:03}");
    let callees: Vec<String> = (0..args.latency_callees).map(|i| format!("c{i:03}")).collect();
    let callee_peer = 1;
    let users: Vec<String> = (0..usize::from(peers))
        .map(caller)
        .chain(callees.iter().cloned())
        .collect();
    let users_at: Vec<u16> = (0..peers)
        .chain(std::iter::repeat_n(callee_peer as u16, callees.len()))
        .collect();
    let setup = |work: &Path, domain: &str| call_scenarios(args, work, domain);
    let work = scratch(&args.work, "latency-p2psip")?;
    let demo = start_demo(args, p2psip, &work, peers, &users, &users_at)?;
    let files = setup(&work, &demo.domain)?;
    let (pairs_by_hops, classes) = latency::through_overlay(
        &demo,
        &latency_calling(args, layout, &work, (&files.0, &files.1, &files.2)),
        &callees,
        callee_peer,
        caller,
    )
    .context("call setup through the overlay")?;
    // Measured with the overlay still up: the same background as the calls.
    let gap = std::time::Duration::from_secs_f64(1.0 / f64::from(args.latency_rate.max(1)));
    let wake_round_trip = wake::round_trips(250, gap).context("the machine's wake-up round trip")?;
    eprintln!(
        "  the machine's floor: a datagram to an idle process and back every {gap:?}: p50 {:.0} µs, p99 {:.0} µs",
        wake_round_trip.p50_ms * 1e3,
        wake_round_trip.p99_ms * 1e3
    );
    let (domain, password) = (demo.domain.clone(), demo.password.clone());
    drop(demo);

    eprintln!("p2psip-bench: call setup latency, Kamailio");
    let work = scratch(&args.work, "latency-kamailio")?;
    let kamailio = kamailio(args, layout, &work, &password)?;
    let files = setup(&work, &domain)?;
    let kamailio_times = latency::through_kamailio(
        &latency_calling(args, layout, &work, (&files.0, &files.1, &files.2)),
        kamailio.addr,
        &domain,
        &password,
    )
    .context("call setup through Kamailio")?;
    drop(kamailio);
    let (added_per_hop_p50_us, added_per_hop_p99_us) = latency::added_per_hop(&classes);

    eprintln!(
        "  Kamailio INVITE→180 p50 {:.3} ms, p99 {:.3} ms; p2psip adds {:.0} µs p50 per overlay hop",
        kamailio_times.p50_ms,
        kamailio_times.p99_ms,
        added_per_hop_p50_us.unwrap_or(f64::NAN)
    );
    Ok(latency::Latency {
        peers,
        rate_per_s: args.latency_rate,
        calls_per_pair: args.latency_calls,
        pairs_by_hops,
        classes,
        kamailio: kamailio_times,
        added_per_hop_p50_us,
        added_per_hop_p99_us,
        wake_round_trip,
    })
}

/// Issue 6 §4: what one peer forwards per second on loopback.
fn forwarding(args: &Args, p2psip: &Path) -> Result<forwarding::Forwarding> {
    eprintln!("p2psip-bench: forwarding rate of one peer on loopback");
    let work = scratch(&args.work, "forwarding")?;
    let demo = start_demo(args, p2psip, &work, 1, &["alice".to_string()], &[])?;
    let f = forwarding::measure(&demo, &work, args.seconds).context("forwarding rate")?;
    eprintln!(
        "  {:.0} messages/s of {} bytes; the peer used {:.0} % of a core, {:.1} µs per message",
        f.per_s, f.message_bytes, f.peer_cpu_percent, f.peer_cpu_us_per_message
    );
    eprintln!(
        "  one at a time: p50 {:.0} µs, p99 {:.0} µs through the peer, {:.0} µs of its CPU each (an idle process's round trip: p50 {:.0} µs, p99 {:.0} µs)",
        f.paced.p50_ms * 1e3,
        f.paced.p99_ms * 1e3,
        f.paced_peer_cpu_us_per_message,
        f.wake_round_trip.p50_ms * 1e3,
        f.wake_round_trip.p99_ms * 1e3
    );
    Ok(f)
}

/// Issue 36's load acceptance: a REGISTER flood, then 4x the sustainable
/// call rate, each at alice's peer (peer 0 of 3; bob at peer 1).
fn overloads(args: &Args, p2psip: &Path, layout: &Layout) -> Result<(overload::Flood, overload::Overload)> {
    let users = ["alice".to_string(), "bob".to_string()];
    let demo = |work: &Path| start_demo(args, p2psip, work, 3, &users, &[0, 1]);
    eprintln!("p2psip-bench: REGISTER flood, 20,000/s for 10 s, during calls at 50/s");
    let flood = overload::flood(&args.repo, &args.work, &layout.sipp, demo).context("the REGISTER flood")?;
    eprintln!(
        "  calls {} completed, {} failed; RSS {:.1} MB at the flood's start, {:.1} MB peak, {:.1} MB 30 s after \
         (without the flood: {:.1} MB)",
        flood.calls_completed,
        flood.calls_failed,
        flood.rss_flood_start_mb,
        flood.rss_peak_mb,
        flood.rss_after_mb,
        flood.control_rss_after_mb
    );
    eprintln!("p2psip-bench: the sustainable call rate, then four times it");
    let overload = overload::overload(&args.repo, &args.work, &layout.sipp, demo).context("the 4x overload")?;
    eprintln!(
        "  {} calls/s sustained; at {}/s {:.0} completed/s, {} refused (p99 {:.0} ms), {} failed",
        overload.sustainable_per_s,
        overload.offered_per_s,
        overload.completed_per_s,
        overload.refused,
        overload.refusal_ms_p99,
        overload.failed
    );
    Ok((flood, overload))
}

/// Issue 6 §5: an idle overlay of real peer processes.
fn footprint(args: &Args, p2psip: &Path) -> Result<footprint::Footprint> {
    eprintln!(
        "p2psip-bench: idle footprint of {} peers over {:.0} s",
        args.footprint_peers, args.footprint_seconds
    );
    let work = scratch(&args.work, "footprint")?;
    let demo = start_demo(args, p2psip, &work, args.footprint_peers, &["alice".to_string()], &[])?;
    let f = footprint::idle(&demo, std::time::Duration::from_secs(30), args.footprint_seconds)?;
    eprintln!(
        "  RSS {:.1} MB mean ({:.1} MB own, {:.1} MB files), {:.1} MB max; CPU {:.2} % mean, {:.2} % max; upkeep {:.0} B/s per peer",
        f.rss_mb_mean, f.rss_anonymous_mb_mean, f.rss_files_mb_mean, f.rss_mb_max, f.cpu_percent_mean, f.cpu_percent_max, f.maintenance_bytes_per_peer_s
    );
    Ok(f)
}
