//! Log lines a remote party can cause at will (failed authentications,
//! malformed messages, refused connections), budgeted with the peer
//! core's [`Budget`], so a flood does not flood the log and what was held
//! back is still said.

pub(crate) use peer_core::budget::Budget as LogBudget;

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
