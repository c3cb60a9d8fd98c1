//! `p2psip-bench`: what `bench/run` runs. It measures p2psip and Kamailio
//! side by side on this machine, in one run, and writes
//! `bench/results/latest.json` and `latest.md` (issue 6).

use anyhow::{Context, Result};
use clap::Parser;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod footprint;
mod report;
mod rig;
mod scale;
mod sipp;
mod throughput;

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
    /// Distinct users the REGISTER load cycles through.
    #[arg(long, default_value_t = 500)]
    users: usize,
    /// Kamailio's UDP worker processes.
    #[arg(long, default_value_t = 4)]
    kamailio_children: u32,
    /// Measurements to run, comma-separated: registers, calls, footprint,
    /// scale.
    #[arg(long, value_delimiter = ',', default_value = "registers,calls,footprint,scale")]
    only: Vec<Section>,
    /// Peers of the overlay whose idle footprint is measured.
    #[arg(long, default_value_t = 50)]
    footprint_peers: u16,
    /// How long the idle peers are watched, in seconds.
    #[arg(long, default_value_t = 300.0)]
    footprint_seconds: f64,
    /// Overlay sizes the simulator runs, comma-separated (100000 takes
    /// about an hour and several GB).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    scale_peers: Vec<usize>,
    /// Simulated seconds of each scale run.
    #[arg(long, default_value_t = 600)]
    scale_duration: u64,
    /// The first of the 400 loopback ports the overlays take.
    #[arg(long, default_value_t = 17084)]
    base_port: u16,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Section {
    Registers,
    Calls,
    Footprint,
    Scale,
}

/// Ports beside the overlay's block: Kamailio, then SIPp's.
struct Layout {
    kamailio: SocketAddr,
    sipp: Ports,
}

impl Layout {
    fn new(base: u16) -> Layout {
        let after = base + 400;
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
    if let Err(e) = run(Args::parse()) {
        eprintln!("p2psip-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(mut args: Args) -> Result<()> {
    anyhow::ensure!(
        args.base_port <= u16::MAX - 450,
        "--base-port {} leaves no room for the 450 ports the benchmark uses; give one below {}",
        args.base_port,
        u16::MAX - 450
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

    let registers = match args.only.contains(&Section::Registers) {
        true => Some(registers(&args, &p2psip, &layout)?),
        false => None,
    };
    let calls = match args.only.contains(&Section::Calls) {
        true => Some(calls(&args, &p2psip, &layout)?),
        false => None,
    };
    let footprint = match args.only.contains(&Section::Footprint) {
        true => Some(footprint(&args, &p2psip)?),
        false => None,
    };
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
    }

    let report = Report {
        date_utc: report_date(),
        machine,
        kamailio_children: args.kamailio_children,
        seconds_per_run: args.seconds,
        max_failure_ratio: throughput::MAX_FAILURE_RATIO,
        registers,
        calls,
        footprint,
        scale,
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

fn report_date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Kamailio from `bench/kamailio/kamailio.cfg`, working in `work`.
fn kamailio(args: &Args, layout: &Layout, work: &Path, password: &str) -> Result<Kamailio> {
    Kamailio::start(
        &args.repo.join("bench/kamailio/kamailio.cfg"),
        work,
        layout.kamailio,
        password,
        args.kamailio_children,
    )
}

fn register_scenario(args: &Args, work: &Path, domain: &str) -> Result<PathBuf> {
    sipp::scenario(work, &args.repo.join("bench/sipp/register.xml"), domain, &[])
}

/// Issue 6 §1: one peer alone, one peer of three, Kamailio.
fn registers(args: &Args, p2psip: &Path, layout: &Layout) -> Result<Registers> {
    let users: Vec<String> = (0..args.users).map(|i| format!("u{i:04}")).collect();
    let measure = |name: &str, peers: u16| -> Result<(throughput::Throughput, String, String)> {
        eprintln!("p2psip-bench: REGISTER throughput, p2psip with {peers} peer(s)");
        let work = scratch(&args.work, name)?;
        let demo = Demo::start(
            p2psip,
            &work,
            &DemoSpec {
                peers,
                users: &users,
                users_at: Some(0),
                base_port: args.base_port,
            },
        )?;
        let scenario = register_scenario(args, &work, &demo.domain)?;
        let inject = sipp::users_file(&work, "users.csv", &users, &demo.domain, &demo.password)?;
        let t = throughput::registers(
            &work,
            &scenario,
            demo.sip[0],
            &inject,
            layout.sipp.registrar_load,
            args.seconds,
        )?;
        eprintln!("  {:.0}/s", t.per_s);
        Ok((t, demo.domain.clone(), demo.password.clone()))
    };
    let (alone, domain, password) = measure("register-1", 1)?;
    let (of_three, _, _) = measure("register-3", 3)?;

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
    )?;
    eprintln!("  {:.0}/s", reference.per_s);
    drop(kamailio);
    Ok(Registers {
        users: users.len(),
        ratio_one_peer: ratio(&alone, &reference),
        ratio_peer_of_three: ratio(&of_three, &reference),
        p2psip_one_peer: alone,
        p2psip_peer_of_three: of_three,
        kamailio: reference,
    })
}

/// Issue 6 §2: alice's SIPp calls bob's through two peers of a 3-peer
/// overlay, and through Kamailio.
fn calls(args: &Args, p2psip: &Path, layout: &Layout) -> Result<Calls> {
    let users = ["alice".to_string(), "bob".to_string()];
    let scenarios_dir = args.repo.join("crates/p2psip/tests/sipp");
    let run = |work: &Path, domain: &str, password: &str, caller: SocketAddr, callee: SocketAddr| {
        let register = register_scenario(args, work, domain)?;
        // The tests' scenarios. Under load a proxy with several workers
        // (Kamailio) may deliver the BYE before the ACK over UDP; the
        // callee then takes the BYE without waiting for the ACK instead of
        // counting a failed call.
        let uac = sipp::scenario(work, &scenarios_dir.join("uac_call.xml"), domain, &[])?;
        let uas = sipp::scenario(
            work,
            &scenarios_dir.join("uas_call.xml"),
            domain,
            &[(
                r#"<recv request="ACK" crlf="true"/>"#,
                r#"<recv request="ACK" crlf="true" optional="true"/>"#,
            )],
        )?;
        let alice = sipp::users_file(work, "alice.csv", &users[..1], domain, password)?;
        let bob = sipp::users_file(work, "bob.csv", &users[1..], domain, password)?;
        throughput::calls(
            work,
            &Scenarios {
                register: &register,
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
        )
    };

    eprintln!("p2psip-bench: call throughput, p2psip (alice at peer 0, bob at peer 1 of 3)");
    let work = scratch(&args.work, "calls-p2psip")?;
    let demo = Demo::start(
        p2psip,
        &work,
        &DemoSpec {
            peers: 3,
            users: &users,
            users_at: None,
            base_port: args.base_port,
        },
    )?;
    let ours = run(&work, &demo.domain, &demo.password, demo.sip[0], demo.sip[1]).context("p2psip call throughput")?;
    eprintln!("  {:.0}/s", ours.per_s);
    let (domain, password) = (demo.domain.clone(), demo.password.clone());
    drop(demo);

    eprintln!("p2psip-bench: call throughput, Kamailio");
    let work = scratch(&args.work, "calls-kamailio")?;
    let kamailio = kamailio(args, layout, &work, &password)?;
    let reference = run(&work, &domain, &password, kamailio.addr, kamailio.addr).context("Kamailio call throughput")?;
    eprintln!("  {:.0}/s", reference.per_s);
    Ok(Calls {
        ratio: ratio(&ours, &reference),
        p2psip: ours,
        kamailio: reference,
    })
}

/// Issue 6 §5: an idle overlay of real peer processes.
fn footprint(args: &Args, p2psip: &Path) -> Result<footprint::Footprint> {
    eprintln!(
        "p2psip-bench: idle footprint of {} peers over {:.0} s",
        args.footprint_peers, args.footprint_seconds
    );
    let work = scratch(&args.work, "footprint")?;
    let demo = Demo::start(
        p2psip,
        &work,
        &DemoSpec {
            peers: args.footprint_peers,
            users: &["alice".to_string()],
            users_at: None,
            base_port: args.base_port,
        },
    )?;
    let f = footprint::idle(&demo, std::time::Duration::from_secs(30), args.footprint_seconds)?;
    eprintln!(
        "  RSS {:.1} MB mean, {:.1} MB max; CPU {:.2} % mean, {:.2} % max; upkeep {:.0} B/s per peer",
        f.rss_mb_mean, f.rss_mb_max, f.cpu_percent_mean, f.cpu_percent_max, f.maintenance_bytes_per_peer_s
    );
    Ok(f)
}
