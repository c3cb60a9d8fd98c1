//! Replica pushes that failed, sent again after a backoff — RFC 6940
//! §10.4: the responsible peer "MUST ensure that the replicas have the
//! data". Until a failed push is redone the value has a copy fewer than
//! the overlay counts on, so the retry comes within seconds, not at the
//! minute's sweep. Each resource has its own backoff, doubling while its
//! pushes keep failing (a replica that refuses every push of it costs one
//! attempt per minute at most, whatever other pushes succeed) and
//! starting over once one of its pushes succeeds.

use reload_wire::ResourceId;
use std::collections::{BTreeMap, BTreeSet};

/// The first retry comes this long after a failure.
const FIRST_RETRY_MS: u64 = 1_000;
/// The backoff doubles up to this (the periodic sweep's interval).
const LONGEST_RETRY_MS: u64 = 60_000;

#[derive(Debug, Default)]
pub(super) struct PushRetry {
    /// Retries waiting, soonest first: (due, resource).
    due: BTreeSet<(u64, ResourceId)>,
    /// The resources in `due`.
    waiting: BTreeSet<ResourceId>,
    /// Each failing resource's next backoff, when it was last due (a
    /// resource quiet for two longest backoffs starts over), and how many
    /// rounds of its pushes failed in a row.
    backoff: BTreeMap<ResourceId, (u64, u64, u32)>,
}

impl PushRetry {
    /// A push of `resource` failed. Returns the rounds of its pushes that
    /// failed in a row, this one included: a first failure is common while
    /// the ring settles (a replica whose view differs refuses the push),
    /// one after a retry is worth an operator's attention.
    pub(super) fn failed(&mut self, now: u64, resource: ResourceId) -> u32 {
        let current = self
            .backoff
            .get(&resource)
            .filter(|(_, since, _)| now.saturating_sub(*since) < 2 * LONGEST_RETRY_MS)
            .copied();
        if !self.waiting.insert(resource.clone()) {
            return current.map_or(1, |(_, _, rounds)| rounds);
        }
        let (wait, rounds) = current.map_or((FIRST_RETRY_MS, 1), |(wait, _, rounds)| (wait, rounds + 1));
        self.due.insert((now + wait, resource.clone()));
        self.backoff
            .insert(resource, ((wait * 2).min(LONGEST_RETRY_MS), now + wait, rounds));
        rounds
    }

    /// A push of `resource` went through: its backoff starts over.
    pub(super) fn succeeded(&mut self, resource: &ResourceId) {
        self.backoff.remove(resource);
    }

    pub(super) fn due(&self) -> Option<u64> {
        self.due.first().map(|(t, _)| *t)
    }

    /// The resources to push again now.
    pub(super) fn take_due(&mut self, now: u64) -> Vec<ResourceId> {
        let mut out = Vec::new();
        while self.due.first().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, r)) = self.due.pop_first() {
                self.waiting.remove(&r);
                out.push(r);
            }
        }
        if !out.is_empty() {
            // Resources that stopped failing (stored elsewhere now, or
            // gone) are forgotten.
            self.backoff
                .retain(|_, (_, since, _)| now.saturating_sub(*since) < 2 * LONGEST_RETRY_MS);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(b: u8) -> ResourceId {
        ResourceId(vec![b])
    }

    #[test]
    fn each_resource_backs_off_on_its_own_and_starts_over_after_a_success() {
        let mut r = PushRetry::default();
        r.failed(0, rid(1));
        r.failed(10, rid(2));
        r.failed(20, rid(1));
        assert_eq!(r.due(), Some(1_000), "one retry waiting per resource");
        assert!(r.take_due(999).is_empty());
        assert_eq!(r.take_due(1_010), vec![rid(1), rid(2)]);
        assert_eq!(r.due(), None);
        // Resource 1 fails again: 2 s this time. Resource 2 got through.
        r.succeeded(&rid(2));
        assert_eq!(r.failed(1_500, rid(1)), 2, "its second round failing");
        assert_eq!(r.failed(1_500, rid(1)), 2, "a push to another replica, same round");
        assert_eq!(r.failed(1_500, rid(2)), 1, "starts over");
        assert_eq!(r.take_due(2_500), vec![rid(2)], "resource 2 starts over at 1 s");
        assert_eq!(r.take_due(3_500), vec![rid(1)]);
        // Failing on, resource 1 waits a minute at most, even while other
        // resources' pushes succeed.
        let mut now = 3_500;
        for _ in 0..10 {
            r.failed(now, rid(1));
            r.succeeded(&rid(3));
            now = r.due().unwrap();
            r.take_due(now);
        }
        r.failed(now, rid(1));
        assert_eq!(r.due(), Some(now + LONGEST_RETRY_MS));
    }

    #[test]
    fn a_resource_quiet_for_long_starts_over() {
        let mut r = PushRetry::default();
        for now in [0, 1_000, 3_000] {
            r.failed(now, rid(1));
            r.take_due(u64::MAX / 2);
        }
        r.failed(1_000_000, rid(1));
        assert_eq!(r.due(), Some(1_001_000));
    }
}
