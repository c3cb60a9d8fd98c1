//! Replica pushes that failed, sent again after a backoff — RFC 6940
//! §10.4: the responsible peer "MUST ensure that the replicas have the
//! data". Until a failed push is redone the value has a copy fewer than
//! the overlay counts on, so the retry comes within seconds, not at the
//! minute's sweep; the backoff doubles while pushes keep failing (a
//! replica that refuses every push costs one attempt per resource per
//! minute at most) and starts over at the first push that succeeds.

use reload_wire::ResourceId;
use std::collections::BTreeSet;

/// The first retry comes this long after a failure.
const FIRST_RETRY_MS: u64 = 1_000;
/// The backoff doubles up to this (the periodic sweep's interval).
const LONGEST_RETRY_MS: u64 = 60_000;

#[derive(Debug)]
pub(super) struct PushRetry {
    resources: BTreeSet<ResourceId>,
    due: Option<u64>,
    backoff_ms: u64,
}

impl Default for PushRetry {
    fn default() -> Self {
        PushRetry {
            resources: BTreeSet::new(),
            due: None,
            backoff_ms: FIRST_RETRY_MS,
        }
    }
}

impl PushRetry {
    pub(super) fn failed(&mut self, now: u64, resource: ResourceId) {
        self.resources.insert(resource);
        if self.due.is_none() {
            self.due = Some(now + self.backoff_ms);
            self.backoff_ms = (self.backoff_ms * 2).min(LONGEST_RETRY_MS);
        }
    }

    pub(super) fn succeeded(&mut self) {
        self.backoff_ms = FIRST_RETRY_MS;
    }

    pub(super) fn due(&self) -> Option<u64> {
        self.due
    }

    /// The resources to push again, once the retry is due.
    pub(super) fn take_due(&mut self, now: u64) -> BTreeSet<ResourceId> {
        match self.due {
            Some(t) if t <= now => {
                self.due = None;
                std::mem::take(&mut self.resources)
            }
            _ => BTreeSet::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(b: u8) -> ResourceId {
        ResourceId(vec![b])
    }

    #[test]
    fn failures_are_retried_after_a_doubling_backoff_that_success_resets() {
        let mut r = PushRetry::default();
        r.failed(0, rid(1));
        r.failed(10, rid(2));
        assert_eq!(r.due(), Some(1_000), "one retry for both");
        assert!(r.take_due(999).is_empty());
        assert_eq!(r.take_due(1_000), BTreeSet::from([rid(1), rid(2)]));
        assert_eq!(r.due(), None);
        r.failed(1_500, rid(1));
        assert_eq!(r.due(), Some(3_500), "2 s after the second failure");
        r.take_due(3_500);
        for _ in 0..10 {
            let now = 10_000;
            r.failed(now, rid(1));
            r.take_due(u64::MAX);
        }
        r.failed(0, rid(1));
        assert_eq!(r.due(), Some(LONGEST_RETRY_MS), "at most a minute");
        r.take_due(u64::MAX);
        r.succeeded();
        r.failed(0, rid(1));
        assert_eq!(r.due(), Some(FIRST_RETRY_MS));
    }
}
