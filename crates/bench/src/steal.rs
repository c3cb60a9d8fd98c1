//! How much CPU the hypervisor gave to other guests while a section ran:
//! the "steal" column of /proc/stat (proc(5)). On a shared VM a section
//! measured under heavy steal does not compare with another day's run;
//! the report says how much there was.

/// The machine's CPU time so far, in clock ticks: stolen and all.
#[derive(Debug, Clone, Copy)]
pub struct CpuTicks {
    steal: u64,
    total: u64,
}

impl CpuTicks {
    /// None where /proc/stat cannot be read (not Linux).
    pub fn now() -> Option<CpuTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        parse(stat.lines().next()?)
    }

    /// Steal as a share of all CPU time since `self`, in percent.
    pub fn steal_percent_until(&self, end: &CpuTicks) -> Option<f64> {
        let total = end.total.checked_sub(self.total)?;
        let steal = end.steal.checked_sub(self.steal)?;
        (total > 0).then(|| 100.0 * steal as f64 / total as f64)
    }
}

/// The aggregate "cpu" line: user nice system idle iowait irq softirq
/// steal [guest guest_nice]. Guest time is already counted in user.
fn parse(line: &str) -> Option<CpuTicks> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    (ticks.len() == 8).then(|| CpuTicks {
        steal: ticks[7],
        total: ticks.iter().sum(),
    })
}

/// Runs `section` and returns what it returned with the steal during it.
pub fn during<T>(section: impl FnOnce() -> T) -> (T, Option<f64>) {
    let start = CpuTicks::now();
    let out = section();
    let steal = start.zip(CpuTicks::now()).and_then(|(s, e)| s.steal_percent_until(&e));
    (out, steal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_eighth_field_over_the_sum_of_the_first_eight() {
        let start = parse("cpu  100 0 50 800 10 0 5 35 0 0").unwrap();
        let end = parse("cpu  200 0 100 1500 10 0 5 185 7 0").unwrap();
        // 1000 ticks passed, 150 of them stolen.
        assert_eq!(start.steal_percent_until(&end), Some(15.0));
    }

    #[test]
    fn a_line_that_is_not_the_cpu_total_is_refused() {
        assert!(parse("cpu0 1 2 3 4 5 6 7 8").is_none());
        assert!(parse("cpu 1 2 3").is_none());
        let t = parse("cpu 1 1 1 1 1 1 1 1").unwrap();
        assert_eq!(t.steal_percent_until(&t), None, "no time passed");
    }
}
