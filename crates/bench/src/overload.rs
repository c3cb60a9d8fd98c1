//! Issue 36's load acceptance, against the peer alice's phone registers
//! with (alice at peer 0 calls bob at peer 1 of 3):
//!
//! - **REGISTER flood**: 20,000 REGISTERs without credentials per second
//!   for 10 s, each from a new user, while alice calls bob at 50 calls/s.
//!   The calls must all complete, and the peer's memory 30 s after the
//!   flood must be within 10 % of what it is at that moment of the same
//!   calls on a fresh overlay with no flood (a control run): the calls'
//!   own transactions and tables keep growing for a while, and only what
//!   the flood adds is the flood's.
//! - **4× overload**: the highest open-loop call rate the pair of peers
//!   completes with under 0.1 % failures and nothing refused, then four
//!   times that for 10 s: what completes, what is refused with 503, how
//!   soon each refusal came (SIPp's response times) and the peak memory.

use crate::footprint::rss_mb;
use crate::rig::Demo;
use crate::sipp::{self, read_stats, Sipp};
use crate::throughput::{answering_callee, callee_scenario, register_once, Ports};
use crate::{admin, scratch};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The flood's rate and length (issue 36 acceptance).
const FLOOD_PER_S: u32 = 20_000;
const FLOOD_S: u32 = 10;
/// Calls during the flood: rate, and how long they run before it.
const CALLS_PER_S: u32 = 50;
const CALLS_BEFORE_FLOOD_S: u32 = 35;
/// Memory must be back this long after the flood.
const RECOVERY_S: u32 = 30;
/// Open-loop rates tried for the sustainable call rate, 5 s each.
const RATES: [u32; 8] = [1_000, 1_500, 2_000, 2_500, 3_000, 3_500, 4_000, 5_000];
const SEARCH_RUN_S: u32 = 5;
const OVERLOAD_S: u32 = 10;
/// A refusal is in time within this (issue 36 acceptance).
const REFUSAL_LIMIT_MS: f64 = 50.0;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Flood {
    pub registers_sent: u64,
    pub challenged: f64,
    pub shed: f64,
    pub calls_completed: u64,
    pub calls_failed: u64,
    /// The peer's resident memory: idle, when the flood began, at its
    /// highest, and `RECOVERY_S` after the flood.
    pub rss_idle_mb: f64,
    pub rss_flood_start_mb: f64,
    pub rss_peak_mb: f64,
    pub rss_after_mb: f64,
    /// The control run's memory at the same moment, and its calls.
    pub control_rss_after_mb: f64,
    pub control_calls_completed: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Overload {
    /// The highest rate tried with < 0.1 % failed and nothing refused.
    pub sustainable_per_s: u32,
    pub offered_per_s: u32,
    pub completed_per_s: f64,
    pub refused: u64,
    pub failed: u64,
    pub refusal_ms_p50: f64,
    pub refusal_ms_p99: f64,
    pub refusal_ms_max: f64,
    /// Share of refusals that came within `REFUSAL_LIMIT_MS`.
    pub refusals_in_time: f64,
    pub rss_peak_mb: f64,
}

/// The peer's resident memory, sampled every 250 ms until stopped.
struct RssWatch {
    samples: Arc<Mutex<Vec<(Instant, f64)>>>,
    running: Arc<AtomicBool>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicBool::new(true));
        let (s, r) = (samples.clone(), running.clone());
        std::thread::spawn(move || {
            while r.load(Ordering::Relaxed) {
                if let Ok(rss) = rss_mb(pid) {
                    s.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((Instant::now(), rss.all));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        RssWatch { samples, running }
    }

    fn peak(&self) -> f64 {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.iter().map(|(_, mb)| *mb).fold(0.0, f64::max)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

/// The scenarios of these runs, written into `work`.
struct Scenarios {
    register: PathBuf,
    caller: PathBuf,
    /// The caller's, taking a 503 as an answer and timing it (rtd 1).
    caller_or_refused: PathBuf,
    callee: PathBuf,
    flood: PathBuf,
}

fn scenarios(repo: &Path, work: &Path, domain: &str) -> Result<Scenarios> {
    let tests = repo.join("crates/p2psip/tests/sipp");
    let caller = tests.join("uac_call.xml");
    let refused_ack = format!(
        "  <recv response=\"200\" crlf=\"true\" next=\"end\"/>\n  <label id=\"refused\"/>\n  <send ack_txn=\"invite\"><![CDATA[\n\
         ACK sip:[service]@{domain} SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport\n\
         From: <sip:alice@{domain}>;tag=[call_number]\n[last_To:]\nCall-ID: [call_id]\nCSeq: 1 ACK\n\
         Max-Forwards: 70\nContent-Length: 0\n\n]]></send>\n  <label id=\"end\"/>\n</scenario>"
    );
    let refused_dir = work.join("refused");
    std::fs::create_dir_all(&refused_dir)?;
    Ok(Scenarios {
        register: sipp::scenario(work, &repo.join("bench/sipp/register.xml"), domain, &[])?,
        caller: sipp::scenario(work, &caller, domain, &[("CALLER", "alice")])?,
        caller_or_refused: sipp::scenario(
            &refused_dir,
            &caller,
            domain,
            &[
                ("CALLER", "alice"),
                (
                    r#"<send retrans="500" start_txn="invite">"#,
                    r#"<send retrans="500" start_txn="invite" start_rtd="1">"#,
                ),
                (
                    r#"  <recv response="200" rrs="true" response_txn="invite"/>"#,
                    "  <recv response=\"503\" optional=\"true\" response_txn=\"invite\" rtd=\"1\" next=\"refused\"/>\n  \
                     <recv response=\"200\" rrs=\"true\" response_txn=\"invite\"/>",
                ),
                ("  <recv response=\"200\" crlf=\"true\"/>\n</scenario>", refused_ack.as_str()),
            ],
        )?,
        callee: callee_scenario(work, &tests, domain)?,
        flood: sipp::scenario(work, &tests.join("register_flood.xml"), domain, &[])?,
    })
}

/// Registers alice at peer 0 and bob at peer 1 of `demo`.
fn register_phones(work: &Path, s: &Scenarios, demo: &Demo, ports: &Ports) -> Result<()> {
    let users = ["alice".to_string(), "bob".to_string()];
    let alice = sipp::users_file(work, "alice.csv", &users[..1], &demo.domain, &demo.password)?;
    let bob = sipp::users_file(work, "bob.csv", &users[1..], &demo.domain, &demo.password)?;
    register_once(work, &s.register, demo.sip[0], &alice, ports.caller)?;
    register_once(work, &s.register, demo.sip[1], &bob, ports.callee)
}

fn caller<'a>(
    scenario: &'a Path,
    target: SocketAddr,
    ports: &Ports,
    rate: u32,
    calls: u64,
    stats: PathBuf,
) -> Sipp<'a> {
    Sipp {
        scenario,
        target,
        local_port: ports.caller,
        service: Some("bob"),
        inject: None,
        concurrency: None,
        rate_per_s: Some(rate),
        calls: Some(calls),
        timeout_s: calls / u64::from(rate.max(1)) + 60,
        stats,
    }
}

/// The flood run, then the control run without the flood.
pub fn flood(repo: &Path, work_root: &Path, ports: &Ports, demo: impl Fn(&Path) -> Result<Demo>) -> Result<Flood> {
    let flooded = calls_and_flood(repo, work_root, ports, &demo, true)?;
    let control = calls_and_flood(repo, work_root, ports, &demo, false)?;
    Ok(Flood {
        control_rss_after_mb: control.rss_after_mb,
        control_calls_completed: control.calls_completed,
        ..flooded
    })
}

/// Alice calls bob for the whole run; with `flood`, the REGISTER flood
/// starts `CALLS_BEFORE_FLOOD_S` in.
fn calls_and_flood(
    repo: &Path,
    work_root: &Path,
    ports: &Ports,
    demo: &impl Fn(&Path) -> Result<Demo>,
    flood: bool,
) -> Result<Flood> {
    let work = scratch(work_root, if flood { "flood" } else { "flood-control" })?;
    let demo = demo(&work)?;
    let s = scenarios(repo, &work, &demo.domain)?;
    register_phones(&work, &s, &demo, ports)?;
    let pid = demo.pids[0];
    let rss_idle_mb = rss_mb(pid)?.all;
    let watch = RssWatch::start(pid);
    let callee = answering_callee(&work, &s.callee, demo.sip[1], ports.callee)?;
    let total_s = CALLS_BEFORE_FLOOD_S + FLOOD_S + RECOVERY_S;
    let calls = u64::from(CALLS_PER_S * total_s);
    let mut calling = caller(
        &s.caller,
        demo.sip[0],
        ports,
        CALLS_PER_S,
        calls,
        work.join("calls.csv"),
    )
    .spawn()?;
    std::thread::sleep(Duration::from_secs(u64::from(CALLS_BEFORE_FLOOD_S)));
    let rss_flood_start_mb = rss_mb(pid)?.all;
    let sent = u64::from(FLOOD_PER_S * FLOOD_S);
    let flood_started = Instant::now();
    if flood {
        let flooding = Sipp {
            scenario: &s.flood,
            target: demo.sip[0],
            local_port: ports.registrar_load,
            service: None,
            inject: None,
            concurrency: None,
            rate_per_s: Some(FLOOD_PER_S),
            calls: Some(sent),
            timeout_s: u64::from(FLOOD_S) + 20,
            stats: work.join("flood.csv"),
        };
        flooding
            .spawn_with(&["-l", &sent.to_string(), "-recv_timeout", "2000"])?
            .wait()?;
    }
    // The control run's moment is where the flood would have ended.
    let after = flood_started + Duration::from_secs(u64::from(FLOOD_S + RECOVERY_S));
    if let Some(wait) = after.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let rss_after_mb = rss_mb(pid)?.all;
    calling.wait()?;
    drop(callee);
    let calls = read_stats(&work.join("calls.csv"))?;
    Ok(Flood {
        registers_sent: if flood { sent } else { 0 },
        challenged: admin::metric(demo.admin[0], "p2psip_sip_responses_total{code=\"401\"}")?,
        shed: admin::metric(demo.admin[0], "p2psip_sip_requests_shed_total")?,
        calls_completed: calls.successful,
        calls_failed: calls.failed,
        rss_idle_mb,
        rss_flood_start_mb,
        rss_peak_mb: watch.peak(),
        rss_after_mb,
        control_rss_after_mb: 0.0,
        control_calls_completed: 0,
    })
}

pub fn overload(
    repo: &Path,
    work_root: &Path,
    ports: &Ports,
    demo: impl Fn(&Path) -> Result<Demo>,
) -> Result<Overload> {
    let work = scratch(work_root, "overload")?;
    let demo = demo(&work)?;
    let s = scenarios(repo, &work, &demo.domain)?;
    register_phones(&work, &s, &demo, ports)?;
    let mut sustainable = 0;
    for rate in RATES {
        let callee = answering_callee(&work, &s.callee, demo.sip[1], ports.callee)?;
        let before = responses_503(&demo)?;
        let run = caller(
            &s.caller,
            demo.sip[0],
            ports,
            rate,
            u64::from(rate * SEARCH_RUN_S),
            work.join("search.csv"),
        )
        .run()?;
        drop(callee);
        let refused = responses_503(&demo)? - before;
        eprintln!(
            "  {rate} calls/s offered: {} completed, {} failed, {refused} refused",
            run.successful, run.failed
        );
        if run.failure_ratio() >= crate::throughput::MAX_FAILURE_RATIO || refused > 0.0 {
            break;
        }
        sustainable = rate;
        // Let the finished transactions of the run age out of the way.
        std::thread::sleep(Duration::from_secs(2));
    }
    anyhow::ensure!(sustainable > 0, "not even {} calls/s completed cleanly", RATES[0]);
    let offered = 4 * sustainable;
    let watch = RssWatch::start(demo.pids[0]);
    let callee = answering_callee(&work, &s.callee, demo.sip[1], ports.callee)?;
    let load = caller(
        &s.caller_or_refused,
        demo.sip[0],
        ports,
        offered,
        u64::from(offered * OVERLOAD_S),
        work.join("refused").join("overload.csv"),
    );
    let started = Instant::now();
    load.spawn_with(&["-recv_timeout", "8000", "-trace_rtt", "-rtt_freq", "1"])?
        .wait()?;
    let wall_s = started.elapsed().as_secs_f64().max(f64::from(OVERLOAD_S));
    drop(callee);
    let run = read_stats(&work.join("refused").join("overload.csv"))?;
    let mut refusals = rtt_samples(&work.join("refused"))?;
    refusals.sort_by(f64::total_cmp);
    let at = |q: f64| {
        refusals
            .get(((refusals.len() as f64 * q) as usize).min(refusals.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let refused = refusals.len() as u64;
    Ok(Overload {
        sustainable_per_s: sustainable,
        offered_per_s: offered,
        completed_per_s: run.successful.saturating_sub(refused) as f64 / wall_s,
        refused,
        failed: run.failed,
        refusal_ms_p50: at(0.5),
        refusal_ms_p99: at(0.99),
        refusal_ms_max: refusals.last().copied().unwrap_or(0.0),
        refusals_in_time: if refusals.is_empty() {
            1.0
        } else {
            refusals.iter().filter(|ms| **ms <= REFUSAL_LIMIT_MS).count() as f64 / refusals.len() as f64
        },
        rss_peak_mb: watch.peak(),
    })
}

/// 503s alice's peer sent: its refusals for queue age and for its budgets.
fn responses_503(demo: &Demo) -> Result<f64> {
    admin::metric(demo.admin[0], "p2psip_sip_responses_total{code=\"503\"}")
}

/// Every response time SIPp recorded (`-trace_rtt`: date;ms;rtd), in ms.
fn rtt_samples(dir: &Path) -> Result<Vec<f64>> {
    let file = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_rtt.csv"));
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(';').nth(1)?.trim().parse().ok())
        .collect())
}
