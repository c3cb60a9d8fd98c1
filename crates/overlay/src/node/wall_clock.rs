//! The wall clock, kept apart from the engine's clock. Every timer runs on
//! the `now` each call is given, which a driver takes from a monotonic
//! clock; only storage_time needs the time of day (RFC 6940 §7: "the number
//! of milliseconds elapsed since midnight Jan 1, 1970 UTC", and "the node
//! SHOULD make a best-effort attempt to use a correct clock"). A driver
//! tells the engine the wall clock now and again
//! ([`OverlayNode::set_wall_clock`](super::OverlayNode::set_wall_clock));
//! until it does, the engine's clock stands in (the simulator's clock is
//! simulated wall time).
//!
//! §7 also says a store older than the value it replaces "MUST generate
//! an Error_Data_Too_Old error" (and our storage refuses another value
//! with the same time too, as replicas could not tell which is newer), so
//! a wall clock stepped backwards would have every new value of this
//! node's refused until the clock caught up. The storage_time this node
//! writes is therefore always above the last one it wrote (by 1 ms while
//! the clock is behind it, as §7 allows: "a storage_time that increments
//! the value used with the previous store"); a step forward is taken at
//! once.

#[derive(Debug, Default)]
pub(crate) struct WallClock {
    /// The wall clock minus the engine clock, in ms, as last told.
    offset_ms: i64,
    last_storage_time: u64,
}

impl WallClock {
    /// At engine time `now` the wall clock read `wall_ms`.
    pub fn set(&mut self, now: u64, wall_ms: u64) {
        self.offset_ms = wall_ms.wrapping_sub(now) as i64;
    }

    /// The storage_time of the values this node stores at engine time
    /// `now`, one store at a time.
    pub fn storage_time(&mut self, now: u64) -> u64 {
        let wall = now.saturating_add_signed(self.offset_ms);
        self.last_storage_time = wall.max(self.last_storage_time.saturating_add(1));
        self.last_storage_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_time_follows_the_wall_clock_and_never_goes_back() {
        let mut clock = WallClock::default();
        assert_eq!(clock.storage_time(5_000), 5_000, "untold, the engine clock stands in");
        clock.set(6_000, 1_700_000_000_000);
        assert_eq!(clock.storage_time(6_500), 1_700_000_000_500);
        // The system clock is stepped back an hour: what this node stores
        // counts on from the last storage_time until the clock passes it.
        clock.set(7_000, 1_700_000_000_000 - 3_600_000);
        assert_eq!(clock.storage_time(7_000), 1_700_000_000_501);
        assert_eq!(clock.storage_time(7_001), 1_700_000_000_502);
        assert_eq!(clock.storage_time(3_608_000), 1_700_000_001_000);
        // Stepped forward: taken at once.
        clock.set(3_609_000, 1_800_000_000_000);
        assert_eq!(clock.storage_time(3_609_001), 1_800_000_000_001);
    }
}
