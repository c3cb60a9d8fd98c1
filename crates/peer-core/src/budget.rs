//! Budgets for what a remote party can cause at will.

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
}
