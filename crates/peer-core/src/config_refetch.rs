//! When a peer fetches the configuration document again from the
//! configuration server (RFC 6940 §11.2):
//!
//! - §11.1 `expiration`: "The node SHOULD retrieve a new copy of the
//!   configuration at a randomly selected time that is before the
//!   expiration time." We pick a time between 50 % and 90 % of the
//!   validity left, so that a whole overlay does not ask at once.
//! - §6.5.4: a node that missed updates "attempt[s] to retrieve a new
//!   Configuration Document": when a peer answers Error_Config_Too_Old,
//!   for instance because the new document is larger than a ConfigUpdate
//!   may be.
//!
//! At most one fetch runs at a time and fetches start at least
//! [`MIN_INTERVAL`] apart, however often peers say the document is old.

use std::time::{Duration, SystemTime};

/// The least time between two fetches.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// A document this close to its expiration (or past it) is fetched within
/// a minute or two.
const SOON: Duration = Duration::from_secs(120);

/// The wall-clock time to fetch a document that expires at `expiration`,
/// seen at `now`; `random` spreads the overlay's peers.
pub fn refetch_time(expiration: SystemTime, now: SystemTime, random: u64) -> SystemTime {
    let left = expiration.duration_since(now).unwrap_or_default();
    if left <= SOON {
        return now + MIN_INTERVAL + Duration::from_secs(random % 60);
    }
    let percent = 50 + (random % 41) as u32;
    now + left * percent / 100
}

/// The schedule of one peer's fetches.
#[derive(Debug, Default)]
pub struct Refetch {
    /// When the document should be fetched (wall clock, as `expiration`).
    at: Option<SystemTime>,
    in_flight: bool,
    last_started: Option<SystemTime>,
}

impl Refetch {
    /// Plans the fetch for a document expiring at `expiration` (none: no
    /// periodic fetch).
    pub fn plan(&mut self, expiration: Option<SystemTime>, now: SystemTime, random: u64) {
        self.at = expiration.map(|e| refetch_time(e, now, random));
    }

    /// A peer said this node's document is old: fetch as soon as allowed.
    pub fn stale(&mut self, now: SystemTime) {
        let allowed = self.last_started.map_or(now, |l| (l + MIN_INTERVAL).max(now));
        self.at = Some(allowed);
    }

    /// When to look again (at most a day ahead, so a clock change or a
    /// far expiration never makes a very long timer).
    pub fn wake_in(&self, now: SystemTime) -> Option<Duration> {
        if self.in_flight {
            return None;
        }
        let at = self.at?;
        Some(
            at.duration_since(now)
                .unwrap_or_default()
                .min(Duration::from_secs(86_400)),
        )
    }

    /// Whether a fetch starts now; if so it is in flight until
    /// [`finished`](Self::finished).
    pub fn start(&mut self, now: SystemTime) -> bool {
        if self.in_flight || self.at.is_none_or(|at| now < at) {
            return false;
        }
        self.in_flight = true;
        self.last_started = Some(now);
        self.at = None;
        true
    }

    /// The fetch ended. If it failed, try again after [`MIN_INTERVAL`];
    /// if it brought a document, the caller plans by its expiration.
    pub fn finished(&mut self, now: SystemTime, failed: bool) {
        self.in_flight = false;
        if failed {
            self.at = Some(now + MIN_INTERVAL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_fetch_is_planned_between_half_and_nine_tenths_of_the_validity_left() {
        let now = SystemTime::UNIX_EPOCH + DAY * 1000;
        let expiration = now + DAY * 100;
        let times: Vec<SystemTime> = (0..200).map(|r| refetch_time(expiration, now, r)).collect();
        assert!(times.iter().all(|t| *t >= now + DAY * 50 && *t <= now + DAY * 90));
        assert!(times.iter().any(|t| *t < now + DAY * 55) && times.iter().any(|t| *t > now + DAY * 85));
        // Expired, or nearly: within a minute or two.
        for expiration in [now - DAY, now + Duration::from_secs(30)] {
            let t = refetch_time(expiration, now, 7);
            assert!(t >= now + MIN_INTERVAL && t < now + MIN_INTERVAL * 2);
        }
    }

    #[test]
    fn stale_reports_fetch_at_once_but_never_more_than_once_a_minute() {
        let now = SystemTime::UNIX_EPOCH + DAY * 1000;
        let mut r = Refetch::default();
        r.plan(Some(now + DAY * 365), now, 1);
        assert!(!r.start(now), "not due yet");
        r.stale(now);
        assert_eq!(r.wake_in(now), Some(Duration::ZERO));
        assert!(r.start(now));
        assert_eq!(r.wake_in(now), None, "one at a time");
        r.stale(now);
        assert!(!r.start(now), "in flight");
        r.finished(now + Duration::from_secs(1), false);
        r.stale(now + Duration::from_secs(2));
        assert!(!r.start(now + Duration::from_secs(2)), "a minute between fetches");
        assert!(r.start(now + MIN_INTERVAL));
        r.finished(now + MIN_INTERVAL, true);
        assert_eq!(
            r.wake_in(now + MIN_INTERVAL),
            Some(MIN_INTERVAL),
            "a failure retries after a minute"
        );
    }

    #[test]
    fn a_far_expiration_never_makes_a_timer_longer_than_a_day() {
        let now = SystemTime::UNIX_EPOCH + DAY * 1000;
        let mut r = Refetch::default();
        r.plan(Some(now + DAY * 3650), now, 0);
        assert_eq!(r.wake_in(now), Some(DAY));
        r.plan(None, now, 0);
        assert_eq!(r.wake_in(now), None);
    }
}
