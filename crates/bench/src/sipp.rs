//! SIPp (Debian `sip-tester`) as the load generator: scenario files, one
//! run, and the figures of its `-trace_stat` file.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What one SIPp run did, from the last line of its statistics file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SippRun {
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// From SIPp's start to its last statistics line.
    pub wall_s: f64,
}

impl SippRun {
    /// Successful scenarios (calls, registrations) per second.
    pub fn rate(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.successful as f64 / self.wall_s
        } else {
            0.0
        }
    }

    pub fn failure_ratio(&self) -> f64 {
        let all = self.successful + self.failed;
        if all == 0 {
            1.0
        } else {
            self.failed as f64 / all as f64
        }
    }
}

/// Copies `source` into `work` with `DOMAIN` replaced by `domain`, and
/// each `(from, to)` of `edits` applied.
pub fn scenario(work: &Path, source: &Path, domain: &str, edits: &[(&str, &str)]) -> Result<PathBuf> {
    let mut text = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read {}", source.display()))?
        .replace("DOMAIN", domain);
    for (from, to) in edits {
        anyhow::ensure!(text.contains(from), "{} has no {from:?} to edit", source.display());
        text = text.replace(from, to);
    }
    let name = source.file_name().context("a scenario file name")?;
    let path = work.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A SIPp injection file: `user;domain;password` per line, in order.
pub fn users_file(work: &Path, name: &str, users: &[String], domain: &str, password: &str) -> Result<PathBuf> {
    let mut text = String::from("SEQUENTIAL\n");
    for u in users {
        text.push_str(&format!("{u};{domain};{password}\n"));
    }
    let path = work.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// One SIPp process: a scenario against a target from a fixed local UDP
/// port.
pub struct Sipp<'a> {
    pub scenario: &'a Path,
    pub target: SocketAddr,
    pub local_port: u16,
    /// `-s`: the user part of the Request-URI.
    pub service: Option<&'a str>,
    /// `-inf`: users and passwords.
    pub inject: Option<&'a Path>,
    /// `-l`: scenarios in flight at once, started as fast as they end (a
    /// closed loop); none for a callee.
    pub concurrency: Option<u32>,
    /// `-r`: scenarios started per second whatever is in flight (an open
    /// loop at a fixed rate); ignored with `concurrency`.
    pub rate_per_s: Option<u32>,
    /// `-m`: scenarios to run before exiting. None for a callee, which
    /// runs until it is stopped: SIPp counts a late retransmitted INVITE
    /// as a new call, so a callee counting calls ends one call early.
    pub calls: Option<u64>,
    /// `-timeout`: the whole run's bound.
    pub timeout_s: u64,
    /// The statistics file to write.
    pub stats: PathBuf,
}

impl Sipp<'_> {
    fn command(&self) -> Command {
        let mut c = Command::new("sipp");
        c.arg(self.target.to_string())
            .arg("-sf")
            .arg(self.scenario)
            .args(["-i", "127.0.0.1", "-p", &self.local_port.to_string(), "-t", "u1"])
            .args(["-timeout", &format!("{}s", self.timeout_s)])
            .args(["-nostdin", "-trace_stat", "-trace_err", "-fd", "1"])
            // SIPp's sockets buffer 64 KB by default: a burst of 200
            // INVITEs overflows that, and what is dropped comes back as
            // retransmissions and aborted calls of the load generator's own
            // making.
            .args(["-buff_size", "4194304"])
            .arg("-stf")
            .arg(&self.stats)
            .current_dir(self.stats.parent().unwrap_or(Path::new(".")))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(m) = self.calls {
            c.args(["-m", &m.to_string()]);
        }
        if let Some(s) = self.service {
            c.args(["-s", s]);
        }
        if let Some(f) = self.inject {
            c.arg("-inf").arg(f);
        }
        if let Some(l) = self.concurrency {
            // Unbounded rate, bounded by the calls in flight: the closed
            // loop shared/REAL-TOOLS.md describes for throughput.
            c.args(["-r", "100000", "-rp", "1000", "-l", &l.to_string()])
                .args(["-recv_timeout", "3000"]);
        } else if let Some(r) = self.rate_per_s {
            c.args(["-r", &r.to_string(), "-rp", "1000"]);
        }
        c
    }

    pub fn spawn(&self) -> Result<Child> {
        self.spawn_with(&[])
    }

    /// [`spawn`](Self::spawn) with more of SIPp's options.
    pub fn spawn_with(&self, extra: &[&str]) -> Result<Child> {
        let _ = std::fs::remove_file(&self.stats);
        self.command()
            .args(extra)
            .spawn()
            .context("cannot start sipp: apt-get install sip-tester")
    }

    /// Runs to the end; SIPp's exit status only says whether any call
    /// failed, which the figures say better.
    pub fn run(&self) -> Result<SippRun> {
        self.spawn()?.wait()?;
        read_stats(&self.stats)
    }
}

/// The last line of a `-trace_stat` file.
pub fn read_stats(path: &Path) -> Result<SippRun> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("sipp wrote no statistics to {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().context("an empty statistics file")?.split(';').collect();
    let Some(last) = lines.next_back() else {
        bail!("{}: no statistics line after the header", path.display())
    };
    let values: Vec<&str> = last.split(';').collect();
    let field = |name: &str| -> Result<&str> {
        let i = header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no {name} column in {}", path.display()))?;
        values.get(i).copied().with_context(|| format!("no {name} value"))
    };
    let count = |name: &str| -> Result<u64> { Ok(field(name)?.trim().parse()?) };
    // "2026-11-22\t04:13:40.482173\t1795320820.482173": the epoch is last.
    let epoch = |name: &str| -> Result<f64> {
        let v = field(name)?;
        Ok(v.rsplit('\t').next().unwrap_or(v).trim().parse()?)
    };
    Ok(SippRun {
        successful: count("SuccessfulCall(C)")?,
        failed: count("FailedCall(C)")?,
        retransmissions: count("Retransmissions(C)")?,
        wall_s: epoch("CurrentTime")? - epoch("StartTime")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two lines of a SIPp 3.6 `-trace_stat` file, cut to the columns read
    /// plus neighbours: the figures come from the last line, the wall time
    /// from the epochs after the tabs.
    #[test]
    fn the_last_statistics_line_gives_counts_and_wall_time() {
        let dir = std::env::temp_dir().join(format!("p2psip-bench-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.csv");
        std::fs::write(
            &file,
            "StartTime;LastResetTime;CurrentTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n\
             2026-11-22\t04:13:40.482173\t1795320820.482173;x;2026-11-22\t04:13:41.000000\t1795320821.000000;5;5;0;0;\n\
             2026-11-22\t04:13:40.482173\t1795320820.482173;x;2026-11-22\t04:13:47.982173\t1795320827.982173;9;20000;3;75;\n",
        )
        .unwrap();
        let run = read_stats(&file).unwrap();
        assert_eq!((run.successful, run.failed, run.retransmissions), (20000, 3, 75));
        assert!((run.wall_s - 7.5).abs() < 1e-6, "{}", run.wall_s);
        assert!((run.rate() - 20000.0 / 7.5).abs() < 1e-6);
        assert!((run.failure_ratio() - 3.0 / 20003.0).abs() < 1e-12);
        std::fs::write(&file, "StartTime;CurrentTime\n").unwrap();
        assert!(read_stats(&file).is_err(), "a header alone is no result");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
