//! Whether the peer at the other end of an overlay link still answers:
//! RFC 6940 §6.6.5 (TLS/TCP with FH, No-ICE).
//!
//! > Because the TCP layer's application-level timeout is too slow to be
//! > useful for overlay routing, the Overlay Link implementation MUST use
//! > the framing header to measure the RTT of the connection and calculate
//! > an RTO as specified in Section 2 of [RFC6298]. The resulting RTO is
//! > not used for retransmissions, but rather as a timeout to indicate
//! > when the link SHOULD be removed from the Routing Table. It is
//! > RECOMMENDED that such a connection be retained for 30 seconds to
//! > determine if the failure was transient before concluding the link
//! > has failed permanently.
//!
//! An idle link has nothing to acknowledge, so a silent peer would never
//! be noticed; the link asks for a keepalive (a Ping, §6.5.3, which the
//! engine makes: [`crate::OverlayNode::keepalive`]) once it has neither
//! sent nor heard anything for [`KEEPALIVE_INTERVAL_MS`]. The choices are
//! recorded in docs/decisions/0022-link-keepalive.md.
//!
//! Times are milliseconds of a monotonic clock; the driver feeds it what
//! happens on the link and calls [`LinkLiveness::handle_timeout`] at
//! [`LinkLiveness::poll_timeout`].

/// A link that has neither sent nor heard anything for this long asks
/// for a keepalive.
pub const KEEPALIVE_INTERVAL_MS: u64 = 1_000;
/// The least time a Data frame may wait for its ACK before the link is
/// taken out of the routing table, whatever the RTO. RFC 6298's minimum
/// RTO (1 s) would drop a live neighbour whenever a loaded machine delays
/// one ACK; with this floor a silent peer is noticed 2 to 3 s after it
/// last answered.
pub const SILENCE_FLOOR_MS: u64 = 2_000;
/// How long a silent link is kept open in case the peer comes back
/// (§6.6.5's RECOMMENDED 30 s) before it is closed for good.
pub const RETAIN_SILENT_MS: u64 = 30_000;
/// A timer that fires this much later than it was due means this process
/// did not run (stopped, swapped out, the machine suspended): the ACKs it
/// waited for may be unread in its socket, so nothing is concluded.
pub const STALL_TOLERANCE_MS: u64 = 1_000;

/// RFC 6298 §2: the initial RTO before any measurement, its floor
/// (§2.4) and the ceiling this implementation places on it (§2.5).
const INITIAL_RTO_MS: u64 = 1_000;
const MIN_RTO_MS: u64 = 1_000;
const MAX_RTO_MS: u64 = 60_000;
/// The clock granularity G of §2 (the driver's clock counts milliseconds).
const CLOCK_GRANULARITY_MS: u64 = 1;

/// What the link should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessSignal {
    /// Nothing was sent or heard for [`KEEPALIVE_INTERVAL_MS`]: send
    /// something the peer acknowledges.
    Keepalive,
    /// A Data frame went unacknowledged for the timeout: take the peer
    /// out of the routing table, keep the connection.
    Silent { waited_ms: u64 },
    /// An ACK came from a link reported [`Silent`](Self::Silent): the
    /// peer may go back into the routing table.
    Resumed,
    /// Silent for [`RETAIN_SILENT_MS`]: close the connection.
    Dead,
}

/// The RFC 6298 estimator: smoothed RTT and its variation, in
/// microseconds so loopback links (well under a millisecond) still
/// measure something.
#[derive(Debug, Clone, Copy)]
struct RttEstimate {
    srtt_us: u64,
    rttvar_us: u64,
}

/// One link's liveness. Memory is constant whatever the traffic: one
/// frame is timed at a time for the RTT (as TCP does), and of the frames
/// in flight only the time the oldest has waited since is kept.
#[derive(Debug, Clone)]
pub struct LinkLiveness {
    estimate: Option<RttEstimate>,
    /// The Data frame being timed and when it was sent.
    timing: Option<(u32, u64)>,
    last_sequence_sent: Option<u32>,
    last_sent_at: u64,
    last_heard_at: u64,
    keepalive_asked_at: u64,
    /// Since when some Data frame has waited for its ACK (the oldest one's
    /// send time, or later when an ACK confirmed only part of them).
    unacked_since: Option<u64>,
    silent_since: Option<u64>,
    /// [`LivenessSignal::Dead`] was given: nothing more happens.
    dead: bool,
}

impl LinkLiveness {
    /// A link that came up at `now`.
    pub fn new(now: u64) -> Self {
        LinkLiveness {
            estimate: None,
            timing: None,
            last_sequence_sent: None,
            last_sent_at: now,
            last_heard_at: now,
            keepalive_asked_at: now,
            unacked_since: None,
            silent_since: None,
            dead: false,
        }
    }

    /// A Data frame with `sequence` was written to the link.
    pub fn data_sent(&mut self, now: u64, sequence: u32) {
        self.last_sent_at = now;
        self.last_sequence_sent = Some(sequence);
        self.unacked_since.get_or_insert(now);
        self.timing.get_or_insert((sequence, now));
    }

    /// A Data frame arrived: the peer is alive, so this end need not ask.
    pub fn data_received(&mut self, now: u64) {
        self.last_heard_at = now;
    }

    /// An ACK arrived for `ack_sequence`. Over TCP the frames arrive in
    /// order, so it confirms every frame up to it, whatever its bitmask
    /// says (§6.6.3's bitmask matters where frames can be lost). Returns
    /// [`LivenessSignal::Resumed`] if the link had been reported silent.
    pub fn ack_received(&mut self, now: u64, ack_sequence: u32) -> Option<LivenessSignal> {
        let Some(last) = self.last_sequence_sent.filter(|_| !self.dead) else {
            return None; // Nothing was sent that it could acknowledge.
        };
        if precedes(last, ack_sequence) {
            return None; // Acknowledges a frame never sent.
        }
        self.last_heard_at = now;
        if let Some((timed, sent_at)) = self.timing {
            if !precedes(ack_sequence, timed) {
                self.sample(now.saturating_sub(sent_at) * 1000);
                self.timing = None;
            }
        }
        self.unacked_since = (ack_sequence != last).then_some(now);
        self.silent_since.take().map(|_| LivenessSignal::Resumed)
    }

    /// RFC 6298 §2.2–§2.3 with α = 1/8, β = 1/4.
    fn sample(&mut self, rtt_us: u64) {
        self.estimate = Some(match self.estimate {
            None => RttEstimate {
                srtt_us: rtt_us,
                rttvar_us: rtt_us / 2,
            },
            Some(e) => RttEstimate {
                rttvar_us: (3 * e.rttvar_us + e.srtt_us.abs_diff(rtt_us)) / 4,
                srtt_us: (7 * e.srtt_us + rtt_us) / 8,
            },
        });
    }

    /// The smoothed RTT in microseconds, once one was measured.
    pub fn srtt_us(&self) -> Option<u64> {
        self.estimate.map(|e| e.srtt_us)
    }

    /// RFC 6298 §2: SRTT + max(G, 4·RTTVAR), at least 1 s, at most 60 s.
    pub fn rto_ms(&self) -> u64 {
        let Some(e) = self.estimate else {
            return INITIAL_RTO_MS;
        };
        let rto_us = e.srtt_us + (CLOCK_GRANULARITY_MS * 1000).max(4 * e.rttvar_us);
        rto_us.div_ceil(1000).clamp(MIN_RTO_MS, MAX_RTO_MS)
    }

    /// How long a Data frame may wait for its ACK before the link is
    /// reported silent.
    pub fn silence_timeout_ms(&self) -> u64 {
        self.rto_ms().max(SILENCE_FLOOR_MS)
    }

    pub fn is_silent(&self) -> bool {
        self.silent_since.is_some()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> u64 {
        if self.dead {
            u64::MAX
        } else if let Some(since) = self.silent_since {
            since + RETAIN_SILENT_MS
        } else if let Some(since) = self.unacked_since {
            since + self.silence_timeout_ms()
        } else {
            self.last_sent_at.max(self.last_heard_at).max(self.keepalive_asked_at) + KEEPALIVE_INTERVAL_MS
        }
    }

    /// What the link should do at `now`, if anything.
    pub fn handle_timeout(&mut self, now: u64) -> Option<LivenessSignal> {
        let due = self.poll_timeout();
        if now < due {
            return None;
        }
        if now - due > STALL_TOLERANCE_MS {
            // This process did not run: time the frames in flight afresh,
            // and take no RTT sample across the gap (Karn, RFC 6298 §3).
            self.timing = None;
            if self.unacked_since.is_some() {
                self.unacked_since = Some(now);
            }
            if self.silent_since.is_some() {
                self.silent_since = Some(now);
            }
            self.keepalive_asked_at = now;
            return None;
        }
        if self.silent_since.is_some() {
            self.dead = true;
            return Some(LivenessSignal::Dead);
        }
        if let Some(since) = self.unacked_since {
            self.silent_since = Some(now);
            // An ACK after the silence measures the silence, not the path.
            self.timing = None;
            return Some(LivenessSignal::Silent { waited_ms: now - since });
        }
        self.keepalive_asked_at = now;
        Some(LivenessSignal::Keepalive)
    }
}

/// Sequence order modulo 2^32: whether `a` comes before `b`.
fn precedes(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

#[cfg(test)]
mod tests;
