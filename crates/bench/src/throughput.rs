//! Issue 6 §1 and §2: REGISTER (with digest) and call throughput, each the
//! highest closed-loop rate SIPp sustains with under 0.1 % failures.

use crate::rig::Owned;
use crate::sipp::{Sipp, SippRun};
use anyhow::Result;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The failure ratio a throughput figure may carry (issue 6: < 0.1 %).
pub const MAX_FAILURE_RATIO: f64 = 0.001;

/// SIPp's calls in flight, tried from the first down until a run stays
/// under [`MAX_FAILURE_RATIO`].
const CONCURRENCY: [u32; 4] = [400, 200, 100, 50];

/// One SIPp run of a throughput search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    pub concurrency: u32,
    pub run: SippRun,
    /// CPU time all processes of the system under test spent per
    /// successful scenario during the run, in µs.
    pub cpu_us_per_op: f64,
}

/// CPU seconds all processes of the system under test have used so far.
pub type CpuMeter<'a> = &'a dyn Fn() -> Result<f64>;

/// One throughput figure and how it was obtained.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    /// Successful scenarios per second: the median of `rates`.
    pub per_s: f64,
    /// The rate of each run at the chosen concurrency and length, in order.
    pub rates: Vec<f64>,
    pub concurrency: u32,
    pub run: SippRun,
    /// Whether every run at the chosen setting stayed under
    /// [`MAX_FAILURE_RATIO`]; when no concurrency did, the last (lowest)
    /// is reported.
    pub within_failure_limit: bool,
    /// Every run of the search, sizing runs included.
    pub attempts: Vec<Attempt>,
    /// CPU µs per successful scenario, all processes of the system under
    /// test (issue 37 §1): the median of `cpu_us_runs`, one per run at the
    /// chosen setting. Steadier than the rates on a shared machine.
    pub cpu_us_per_op: f64,
    pub cpu_us_runs: Vec<f64>,
}

/// Runs `scenario_run(concurrency, count)` with counts grown until a run
/// lasts about `seconds`, lowering the concurrency while failures exceed
/// the limit; then runs the chosen setting until there are `repeats` runs
/// of it, and reports their median (one run on this shared machine moves
/// by ±15 %).
pub fn saturate(
    seconds: f64,
    repeats: usize,
    cpu: CpuMeter,
    mut scenario_run: impl FnMut(u32, u64) -> Result<SippRun>,
) -> Result<Throughput> {
    let mut measured = |concurrency: u32, count: u64| -> Result<Attempt> {
        let before = cpu()?;
        let run = scenario_run(concurrency, count)?;
        let spent = cpu()? - before;
        Ok(Attempt {
            concurrency,
            cpu_us_per_op: spent * 1e6 / run.successful.max(1) as f64,
            run,
        })
    };
    let mut count = 1_000u64;
    let mut attempts = Vec::new();
    for concurrency in CONCURRENCY {
        let mut first = measured(concurrency, count)?;
        // A run much shorter than asked for is a sizing run: SIPp's start
        // and the first calls weigh too much in it.
        for _ in 0..3 {
            if first.run.wall_s >= 0.6 * seconds || first.run.successful == 0 {
                break;
            }
            count = ((first.run.rate() * seconds) as u64).clamp(1_000, 1_000_000);
            attempts.push(first);
            first = measured(concurrency, count)?;
        }
        let run = first.run.clone();
        let mut ok = run.failure_ratio() < MAX_FAILURE_RATIO;
        if ok || concurrency == CONCURRENCY[CONCURRENCY.len() - 1] {
            let mut rates = vec![run.rate()];
            let mut cpu_us_runs = vec![first.cpu_us_per_op];
            attempts.push(first);
            while rates.len() < repeats {
                let again = measured(concurrency, count)?;
                ok &= again.run.failure_ratio() < MAX_FAILURE_RATIO;
                rates.push(again.run.rate());
                cpu_us_runs.push(again.cpu_us_per_op);
                attempts.push(again);
            }
            return Ok(Throughput {
                per_s: median(&rates),
                rates,
                concurrency,
                run,
                within_failure_limit: ok,
                attempts,
                cpu_us_per_op: median(&cpu_us_runs),
                cpu_us_runs,
            });
        }
        attempts.push(first);
    }
    anyhow::bail!("no concurrency to try")
}

/// The middle value; the mean of the two middle ones for an even count.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Local UDP ports of the SIPp instances.
pub struct Ports {
    pub registrar_load: u16,
    pub caller: u16,
    pub callee: u16,
}

/// Scenario files, with the domain filled in.
pub struct Scenarios<'a> {
    /// The caller's registration.
    pub register: &'a Path,
    /// The callee's, when it is of another domain than the caller's.
    pub register_callee: Option<&'a Path>,
    pub caller: &'a Path,
    pub callee: &'a Path,
}

/// REGISTER throughput against `registrar` for the users of `inject`.
#[allow(clippy::too_many_arguments)]
pub fn registers(
    work: &Path,
    register: &Path,
    registrar: SocketAddr,
    inject: &Path,
    port: u16,
    seconds: f64,
    repeats: usize,
    cpu: CpuMeter,
) -> Result<Throughput> {
    saturate(seconds, repeats, cpu, |concurrency, count| {
        Sipp {
            scenario: register,
            target: registrar,
            local_port: port,
            service: None,
            inject: Some(inject),
            concurrency: Some(concurrency),
            rate_per_s: None,
            calls: Some(count),
            timeout_s: 600,
            stats: work.join("register.csv"),
        }
        .run()
    })
}

/// Registers the one user of `inject` from `port` at `registrar`.
pub fn register_once(work: &Path, register: &Path, registrar: SocketAddr, inject: &Path, port: u16) -> Result<()> {
    let run = Sipp {
        scenario: register,
        target: registrar,
        local_port: port,
        service: None,
        inject: Some(inject),
        concurrency: None,
        rate_per_s: None,
        calls: Some(1),
        timeout_s: 30,
        stats: work.join("register-once.csv"),
    }
    .run()?;
    anyhow::ensure!(
        run.successful == 1,
        "registering at {registrar} from port {port} failed"
    );
    Ok(())
}

/// Call throughput: a caller registered at `caller_proxy` calls `callee`,
/// whose phone is registered at `callee_proxy` and answers every call.
#[allow(clippy::too_many_arguments)]
pub fn calls(
    work: &Path,
    scenarios: &Scenarios,
    ports: &Ports,
    caller_proxy: SocketAddr,
    callee_proxy: SocketAddr,
    caller_user: &Path,
    callee_user: &Path,
    callee_name: &str,
    seconds: f64,
    repeats: usize,
    cpu: CpuMeter,
) -> Result<Throughput> {
    register_once(work, scenarios.register, caller_proxy, caller_user, ports.caller)?;
    let register_callee = scenarios.register_callee.unwrap_or(scenarios.register);
    register_once(work, register_callee, callee_proxy, callee_user, ports.callee)?;
    saturate(seconds, repeats, cpu, |concurrency, count| {
        let callee = answering_callee(work, scenarios.callee, callee_proxy, ports.callee)?;
        let run = Sipp {
            scenario: scenarios.caller,
            target: caller_proxy,
            local_port: ports.caller,
            service: Some(callee_name),
            inject: None,
            concurrency: Some(concurrency),
            rate_per_s: None,
            calls: Some(count),
            timeout_s: 600,
            stats: work.join("caller.csv"),
        }
        .run();
        // Every call the caller counted is over: the callee has nothing
        // left to answer, and is stopped when `callee` goes.
        drop(callee);
        run
    })
}

/// The tests' callee scenario (in `tests`) for `domain`. Under load a
/// proxy with several workers (Kamailio) may deliver the BYE before the
/// ACK over UDP; the callee then takes the BYE without waiting for the
/// ACK instead of counting a failed call.
pub fn callee_scenario(work: &Path, tests: &Path, domain: &str) -> Result<std::path::PathBuf> {
    crate::sipp::scenario(
        work,
        &tests.join("uas_call.xml"),
        domain,
        &[(
            r#"<recv request="ACK" crlf="true"/>"#,
            r#"<recv request="ACK" crlf="true" optional="true"/>"#,
        )],
    )
}

/// The callee's SIPp, answering every call sent to it through `proxy`
/// until dropped; returned once its socket is up, so that no INVITE finds
/// the port closed.
pub fn answering_callee(work: &Path, scenario: &Path, proxy: SocketAddr, port: u16) -> Result<Owned> {
    let callee = Owned(
        Sipp {
            scenario,
            target: proxy,
            local_port: port,
            service: None,
            inject: None,
            concurrency: None,
            rate_per_s: None,
            calls: None,
            timeout_s: 3600,
            stats: work.join("callee.csv"),
        }
        .spawn()?,
        // Dropped once every call the caller counted is over: nothing is
        // left to answer.
        Duration::ZERO,
    );
    let start = Instant::now();
    while !udp_bound(port) {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "the callee's sipp did not bind port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(callee)
}

/// Whether some socket listens on UDP `port` of 127.0.0.1, from
/// /proc/net/udp (binding the port to find out could steal it).
fn udp_bound(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|table| {
        table
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(wanted.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
