//! Budgets for what a remote party can cause at will: log lines (failed
//! authentications, malformed messages, refused connections), so a flood
//! does not flood the log and what was held back is still said; and
//! answers to unauthenticated datagrams (multicast discovery).

/// At most `per_window` lines in each window; the rest are counted and
/// reported in one line when the next window opens. For log lines a
/// remote party can cause at will (failed authentications).
pub(crate) struct LogBudget {
    per_window: u32,
    window_ms: u64,
    window_start: u64,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    pub fn new(per_window: u32, window_ms: u64) -> Self {
        LogBudget {
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

/// A [`LogBudget`] shared by the tasks that may write one kind of line,
/// which says itself how many lines it held back.
pub(crate) struct LogLimiter {
    budget: std::sync::Mutex<LogBudget>,
    what: &'static str,
}

impl LogLimiter {
    pub fn new(per_window: u32, window_ms: u64, what: &'static str) -> Self {
        LogLimiter {
            budget: std::sync::Mutex::new(LogBudget::new(per_window, window_ms)),
            what,
        }
    }

    /// Whether a line may be written now; first logs how many were held
    /// back in the window that closed.
    pub fn allow(&self, now: u64) -> bool {
        let (ok, held_back) = self.budget.lock().unwrap_or_else(|p| p.into_inner()).take(now);
        if held_back > 0 {
            tracing::warn!("{held_back} more {} in the last window were not logged", self.what);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_budget_holds_back_a_flood_and_says_how_much() {
        let mut budget = LogBudget::new(3, 10_000);
        let allowed: Vec<bool> = (0..10).map(|i| budget.take(1_000 + i).0).collect();
        assert_eq!(allowed.iter().filter(|a| **a).count(), 3);
        assert_eq!(
            budget.take(12_000),
            (true, 7),
            "the next window reports the 7 held back"
        );
        assert_eq!(budget.take(12_001), (true, 0));
    }
}
