//! Budgets for what a remote party can cause at will.

use std::collections::HashMap;
use std::net::IpAddr;

/// At most `per_window` of something in each window of `window_ms`; the
/// rest are counted and reported when the next window opens. For what a
/// remote party can cause at will: log lines (failed authentications,
/// malformed messages), answers to unauthenticated datagrams.
pub struct Budget {
    per_window: u32,
    window_ms: u64,
    window_start: u64,
    used: u32,
    suppressed: u64,
}

impl Budget {
    pub fn new(per_window: u32, window_ms: u64) -> Self {
        Budget {
            per_window,
            window_ms,
            window_start: 0,
            used: 0,
            suppressed: 0,
        }
    }

    /// How many lines were held back in a window that has closed by
    /// `now`, once (for a periodic tick, so a flood that stops is still
    /// reported).
    pub fn flush(&mut self, now: u64) -> u64 {
        if now.saturating_sub(self.window_start) >= self.window_ms {
            self.window_start = now;
            self.used = 0;
            std::mem::take(&mut self.suppressed)
        } else {
            0
        }
    }

    /// Whether a line may be written now, and how many were held back in
    /// the window that just closed (to say so first).
    pub fn take(&mut self, now: u64) -> (bool, u64) {
        let mut held_back = 0;
        if now.saturating_sub(self.window_start) >= self.window_ms {
            self.window_start = now;
            self.used = 0;
            held_back = std::mem::take(&mut self.suppressed);
        }
        if self.used < self.per_window {
            self.used += 1;
            (true, held_back)
        } else {
            self.suppressed += 1;
            (false, held_back)
        }
    }
}

/// At most `per_source` a window from one address (an IPv6 source counts
/// by its /64, which one host gets whole) and `total` from all, tracking
/// at most `sources` addresses in a window: for answers to datagrams
/// nobody authenticated, which a spoofed source could aim at a victim.
#[derive(Debug)]
pub struct SourceBudget {
    per_source: u32,
    total: u32,
    sources: usize,
    window_ms: u64,
    window_start: u64,
    used: u32,
    by_source: HashMap<IpAddr, u32>,
}

impl SourceBudget {
    pub fn new(per_source: u32, total: u32, sources: usize, window_ms: u64) -> Self {
        SourceBudget {
            per_source,
            total,
            sources,
            window_ms,
            window_start: 0,
            used: 0,
            by_source: HashMap::new(),
        }
    }

    /// Whether one more from `ip` fits at `now` (and counts it if so).
    pub fn take(&mut self, now: u64, ip: IpAddr) -> bool {
        if now.saturating_sub(self.window_start) >= self.window_ms {
            self.window_start = now;
            self.used = 0;
            self.by_source.clear();
        }
        if self.used >= self.total {
            return false;
        }
        let source = source_key(ip);
        if !self.by_source.contains_key(&source) && self.by_source.len() >= self.sources {
            return false;
        }
        let count = self.by_source.entry(source).or_insert(0);
        if *count >= self.per_source {
            return false;
        }
        *count += 1;
        self.used += 1;
        true
    }
}

/// An IPv6 source counts by its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_holds_back_a_flood_and_says_how_much() {
        let mut budget = Budget::new(3, 10_000);
        let allowed: Vec<bool> = (0..10).map(|i| budget.take(1_000 + i).0).collect();
        assert_eq!(allowed.iter().filter(|a| **a).count(), 3);
        assert_eq!(
            budget.take(12_000),
            (true, 7),
            "the next window reports the 7 held back"
        );
        assert_eq!(budget.take(12_001), (true, 0));
    }

    /// A source budget caps each address, the total, and how many
    /// addresses a window tracks; an IPv6 /64 is one source; the next
    /// window starts afresh.
    #[test]
    fn a_source_budget_caps_each_source_the_total_and_the_sources_tracked() {
        let mut budget = SourceBudget::new(2, 6, 3, 1_000);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(budget.take(0, ip("192.0.2.1")) && budget.take(0, ip("192.0.2.1")));
        assert!(!budget.take(0, ip("192.0.2.1")), "per source");
        assert!(budget.take(0, ip("2001:db8::1")));
        assert!(budget.take(0, ip("2001:db8::ffff")), "the same /64");
        assert!(!budget.take(0, ip("2001:db8::2")), "the /64 spent its two");
        assert!(budget.take(0, ip("192.0.2.3")));
        assert!(!budget.take(0, ip("192.0.2.4")), "a fourth source is not tracked");
        assert!(budget.take(0, ip("192.0.2.3")), "the sixth");
        let mut total = SourceBudget::new(10, 3, 10, 1_000);
        let taken = (1..=5)
            .filter(|k| total.take(0, ip(&format!("198.51.100.{k}"))))
            .count();
        assert_eq!(taken, 3, "the total");
        assert!(budget.take(1_000, ip("192.0.2.4")), "a new window");
    }
}
