//! Replay protection for digest credentials: RFC 7616 §3.3 and §3.4.6,
//! RFC 3261 §22.4.
//!
//! Nonces stay stateless when issued ([`crate::digest::Nonces`]): a
//! challenge costs nothing to remember. Only a nonce that authorized
//! something is remembered, with the highest nonce count (`nc`) it used,
//! until it goes stale; the same or a lower count again is a replay
//! ("If the same value is seen twice, the request is a replay", RFC 2617
//! §3.2.2). Credentials without `nc` (no `qop`) use their nonce once.
//!
//! The table is bounded. When full, the oldest entries are forgotten and
//! every nonce issued up to the newest of them is treated as stale from
//! then on (the `horizon`), so forgetting never reopens a replay; a
//! legitimate phone is just challenged again.

use crate::digest::NONCE_LIFETIME_MS;
use std::collections::{HashMap, VecDeque};

/// Nonces remembered at most: about 200 authenticated requests a second
/// sustained over a nonce's 5-minute life.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// What a nonce count is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Higher than any this nonce used: the request may proceed.
    Fresh,
    /// Used before, or the nonce is older than what is remembered:
    /// challenge again (`stale=true`, RFC 7616 §3.3).
    Replayed,
}

#[derive(Debug, Clone)]
pub struct NonceCounts {
    highest: HashMap<String, u32>,
    /// Remembered nonces by issue time, oldest first.
    by_issue: VecDeque<(u64, String)>,
    /// Nonces issued at or before this are stale whatever their age.
    horizon: Option<u64>,
    capacity: usize,
}

impl Default for NonceCounts {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl NonceCounts {
    pub fn with_capacity(capacity: usize) -> Self {
        NonceCounts {
            highest: HashMap::new(),
            by_issue: VecDeque::new(),
            horizon: None,
            capacity: capacity.max(1),
        }
    }

    /// Records that `nonce` (issued at `issued_ms`, already checked to be
    /// ours and fresh) authorized a request with nonce count `nc` (`None`
    /// without `qop`); whether that is a first use of the count.
    pub fn use_count(&mut self, now_ms: u64, nonce: &str, issued_ms: u64, nc: Option<u32>) -> Count {
        self.forget_stale(now_ms);
        if self.horizon.is_some_and(|h| issued_ms <= h) {
            return Count::Replayed;
        }
        let nc = nc.unwrap_or(u32::MAX);
        if let Some(highest) = self.highest.get_mut(nonce) {
            if nc <= *highest {
                return Count::Replayed;
            }
            *highest = nc;
            return Count::Fresh;
        }
        while self.highest.len() >= self.capacity {
            let Some((issued, oldest)) = self.by_issue.pop_front() else {
                break;
            };
            self.highest.remove(&oldest);
            self.horizon = Some(self.horizon.map_or(issued, |h| h.max(issued)));
        }
        if self.horizon.is_some_and(|h| issued_ms <= h) {
            return Count::Replayed;
        }
        self.highest.insert(nonce.to_string(), nc);
        // Issue times are nearly in order; keep the queue sorted.
        let at = self.by_issue.partition_point(|(t, _)| *t <= issued_ms);
        self.by_issue.insert(at, (issued_ms, nonce.to_string()));
        Count::Fresh
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.highest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.highest.is_empty()
    }

    /// Stale nonces are refused before they get here; their entries go.
    fn forget_stale(&mut self, now_ms: u64) {
        while let Some((issued, _)) = self.by_issue.front() {
            if now_ms.saturating_sub(*issued) <= NONCE_LIFETIME_MS {
                break;
            }
            if let Some((_, nonce)) = self.by_issue.pop_front() {
                self.highest.remove(&nonce);
            }
        }
    }
}

/// `nc` as the credentials carry it: 8 hex digits (RFC 7616 §3.4).
pub fn parse_nc(nc: &str) -> Option<u32> {
    (nc.len() == 8).then(|| u32::from_str_radix(nc, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_of_a_nonce_is_used_once_and_only_upwards() {
        let mut c = NonceCounts::default();
        assert_eq!(c.use_count(1_000, "n1", 900, Some(1)), Count::Fresh);
        assert_eq!(c.use_count(1_001, "n1", 900, Some(1)), Count::Replayed, "the same nc");
        assert_eq!(c.use_count(1_002, "n1", 900, Some(3)), Count::Fresh);
        assert_eq!(c.use_count(1_003, "n1", 900, Some(2)), Count::Replayed, "a lower nc");
        assert_eq!(c.use_count(1_004, "n2", 950, Some(1)), Count::Fresh, "another nonce");
        assert_eq!(c.use_count(1_005, "n3", 960, None), Count::Fresh);
        assert_eq!(c.use_count(1_006, "n3", 960, None), Count::Replayed, "no qop: once");
    }

    #[test]
    fn stale_nonces_are_forgotten() {
        let mut c = NonceCounts::default();
        c.use_count(1_000, "n1", 1_000, Some(1));
        c.use_count(2_000, "n2", 2_000, Some(1));
        c.use_count(1_000 + NONCE_LIFETIME_MS + 1, "n3", 1_000 + NONCE_LIFETIME_MS, Some(1));
        assert_eq!(c.len(), 2, "n1 is stale and gone");
    }

    /// A full table forgets its oldest nonces but never lets them be
    /// replayed: everything issued up to them counts as stale.
    #[test]
    fn a_full_table_never_reopens_a_replay() {
        let mut c = NonceCounts::with_capacity(2);
        c.use_count(10, "a", 1, Some(1));
        c.use_count(11, "b", 2, Some(1));
        assert_eq!(c.use_count(12, "c", 3, Some(1)), Count::Fresh);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.use_count(13, "a", 1, Some(1)),
            Count::Replayed,
            "forgotten, still refused"
        );
        assert_eq!(
            c.use_count(14, "a", 1, Some(9)),
            Count::Replayed,
            "even with a higher nc"
        );
        assert_eq!(c.use_count(15, "c", 3, Some(2)), Count::Fresh);
    }

    #[test]
    fn nc_is_eight_hex_digits() {
        assert_eq!(parse_nc("00000001"), Some(1));
        assert_eq!(parse_nc("0000000a"), Some(10));
        assert_eq!(parse_nc("1"), None);
        assert_eq!(parse_nc("0000000g"), None);
    }
}
