//! Simple Reliability (RFC 6940 §6.6.3) for a link over datagrams (DTLS
//! over UDP, §6.6.4): every Data frame is acknowledged at once by the
//! receiver (§6.6.2); the sender retransmits unacknowledged messages,
//! each transmission under a new sequence number, and tells the peer's
//! driver when the link falls silent, resumes or fails.
//!
//! The sender is not §6.6.3.1's stop-and-wait (one message in flight, 10
//! ms after each ACK: at most 100 messages a second, too few for an
//! overlay that carries SIP): §6.6.4 allows "any compliant sender
//! algorithm", and §6.6.3 asks only that it meet RFC 8085 (formerly
//! 5405) §3.1's congestion control. So a window of messages in flight
//! grows and shrinks as TCP's does (RFC 5681, counted in messages rather
//! than bytes): slow start from [`INITIAL_WINDOW`], congestion avoidance,
//! halved on a loss the ACKs' bitmasks reveal (three later messages
//! acknowledged, RFC 5681 §3.2's threshold), one after a timeout. The
//! rest is §6.6.3.1 as written: the RTO of RFC 6298 rounded to the
//! millisecond, seeded with the ICE check's RTT, doubled per
//! retransmission; five transmissions at most, after which the link
//! fails; silent when no ACK came for an RTO and three retransmissions
//! beyond it, resumed when ACKs come again. Every ACK gives an RTT sample
//! for the frame it answers: a retransmission has its own sequence number,
//! so no sample is ambiguous (Karn's problem does not arise).
//!
//! Each message must already fit one datagram: the caller fragments
//! larger ones (§6.7). Times are milliseconds.

/// Nothing sent or heard for this long: ask the engine for a keepalive,
/// the same interval as TLS links (decision 0022).
pub use overlay::link_liveness::KEEPALIVE_INTERVAL_MS;
use reload_wire::framing::{acked_sequences, encode_data, FramedMessage, ReceivedWindow, RtoEstimator};
use reload_wire::{DecodeContext, DecodeError, Writer};
use std::collections::VecDeque;

/// Messages in flight before the first loss (RFC 5681 §3.1's IW of 4
/// segments, here messages).
pub const INITIAL_WINDOW: f64 = 4.0;
/// Transmissions of one message before the link fails (§6.6.3.1).
pub const MAX_TRANSMISSIONS: u32 = 5;
/// Messages waiting for room in the window, at most; beyond, `send`
/// refuses (the link is that far behind).
pub const MAX_QUEUED: usize = 1_024;
/// Retransmissions beyond an RTO without any ACK after which the link is
/// reported silent (§6.6.3.1: "three retransmissions").
pub const SILENT_AFTER_RETRANSMISSIONS: u32 = 3;
/// How many later messages acknowledged make an unacknowledged one lost.
const REORDERING_THRESHOLD: u32 = 3;
/// RTO bounds: §6.6.3.1 rounds to the millisecond; 100 ms is the floor
/// (links on one LAN), 60 s the ceiling RFC 6298 §2.5 allows.
const MIN_RTO_MS: u64 = 100;
const MAX_RTO_MS: u64 = 60_000;

/// What the link tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message arrived (perhaps again: a retransmission whose first
    /// copy arrived too; RELOAD's transaction ids tell them apart).
    Message(Vec<u8>),
    /// Nothing sent or heard for [`KEEPALIVE_INTERVAL_MS`].
    Idle,
    /// No ACK for an RTO and three retransmissions since: out of the
    /// routing table, link kept (§6.6.3.1).
    Silent,
    /// ACKs again after [`Event::Silent`].
    Resumed,
    /// A message went unacknowledged through all its transmissions: the
    /// link should be closed (§6.6.3.1's SHOULD).
    Failed,
}

/// `send` found [`MAX_QUEUED`] messages waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the link has {MAX_QUEUED} messages waiting; message dropped")]
pub struct Full;

#[derive(Debug)]
struct InFlight {
    message: Vec<u8>,
    /// The sequence number and send time of each transmission.
    sent: Vec<(u32, u64)>,
    retransmit_at: u64,
    /// Counted as lost by the ACKs and retransmitted already (once per
    /// transmission).
    fast_retransmitted: bool,
}

/// One link's Simple Reliability, both directions.
#[derive(Debug)]
pub struct SimpleReliability {
    next_sequence: u32,
    rto: RtoEstimator,
    window: f64,
    slow_start_threshold: f64,
    waiting: VecDeque<Vec<u8>>,
    in_flight: VecDeque<InFlight>,
    received: ReceivedWindow,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    /// The highest sequence number acknowledged so far (for the loss
    /// threshold), and when the last ACK came.
    highest_acked: Option<u32>,
    last_ack_at: u64,
    /// Retransmissions since the last ACK, once an RTO passed without one.
    retransmissions_unanswered: u32,
    silent: bool,
    last_activity: u64,
    idle_reported: bool,
    failed: bool,
}

impl SimpleReliability {
    /// A link that came up at `now`; `ice_rtt_ms` is the RTT of its
    /// successful ICE check, §6.6.3.1's first measurement.
    pub fn new(now: u64, ice_rtt_ms: Option<u64>) -> Self {
        let mut rto = RtoEstimator::new(RtoEstimator::DEFAULT_RTO_MS, MIN_RTO_MS, MAX_RTO_MS);
        if let Some(rtt) = ice_rtt_ms {
            rto.on_rtt_sample(rtt * 1000);
        }
        SimpleReliability {
            next_sequence: 0,
            rto,
            window: INITIAL_WINDOW,
            slow_start_threshold: f64::MAX,
            waiting: VecDeque::new(),
            in_flight: VecDeque::new(),
            received: ReceivedWindow::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            highest_acked: None,
            last_ack_at: now,
            retransmissions_unanswered: 0,
            silent: false,
            last_activity: now,
            idle_reported: false,
            failed: false,
        }
    }

    /// Queues `message` (at most one datagram's worth) for reliable
    /// delivery.
    pub fn send(&mut self, now: u64, message: Vec<u8>) -> Result<(), Full> {
        if self.waiting.len() >= MAX_QUEUED {
            return Err(Full);
        }
        self.waiting.push_back(message);
        self.fill_window(now);
        Ok(())
    }

    /// A datagram's plaintext from the peer: a Data frame (acknowledged
    /// at once, its message delivered) or an ACK.
    pub fn receive(&mut self, now: u64, frame: &[u8], ctx: &DecodeContext) -> Result<(), DecodeError> {
        match FramedMessage::decode(frame, ctx)? {
            FramedMessage::Data { sequence, message } => {
                let ack = self.received.on_data(sequence);
                if let Ok(bytes) = ack.to_bytes() {
                    self.transmits.push_back(bytes);
                }
                self.events.push_back(Event::Message(message));
            }
            FramedMessage::Ack { ack_sequence, received } => self.on_ack(now, ack_sequence, received),
        }
        self.active(now);
        Ok(())
    }

    fn on_ack(&mut self, now: u64, ack_sequence: u32, received: u32) {
        // An ACK for a sequence this end never sent (forged, or from an
        // earlier association) says nothing.
        let sent = |s: u32| self.next_sequence.wrapping_sub(s).wrapping_sub(1) < 1 << 31 && s != self.next_sequence;
        if !sent(ack_sequence) || self.next_sequence == 0 {
            return;
        }
        self.last_ack_at = now;
        self.retransmissions_unanswered = 0;
        if self.silent {
            self.silent = false;
            self.events.push_back(Event::Resumed);
        }
        if self.highest_acked.is_none_or(|h| newer(ack_sequence, h)) {
            self.highest_acked = Some(ack_sequence);
        }
        for sequence in acked_sequences(ack_sequence, received) {
            let Some(k) = self
                .in_flight
                .iter()
                .position(|f| f.sent.iter().any(|(s, _)| *s == sequence))
            else {
                continue;
            };
            let Some(done) = self.in_flight.remove(k) else {
                continue;
            };
            // The RTT is sampled from the frame this ACK answers, which
            // the peer acknowledged on arrival; the bitmask's frames may
            // have arrived long before, their own ACKs lost.
            if sequence == ack_sequence {
                if let Some((_, sent_at)) = done.sent.iter().find(|(s, _)| *s == sequence) {
                    self.rto.on_rtt_sample(now.saturating_sub(*sent_at).max(1) * 1000);
                }
            }
            // RFC 5681 §3.1: slow start below the threshold, then one
            // more message per window's worth of ACKs.
            if self.window < self.slow_start_threshold {
                self.window += 1.0;
            } else {
                self.window += 1.0 / self.window;
            }
        }
        self.detect_losses(now);
        self.fill_window(now);
    }

    /// A message whose latest transmission is [`REORDERING_THRESHOLD`]
    /// older than the highest ACKed sequence was lost: sent again at
    /// once, and the window halves (RFC 5681 §3.2) once per loss event.
    fn detect_losses(&mut self, now: u64) {
        let Some(highest) = self.highest_acked else {
            return;
        };
        let mut lost = Vec::new();
        for (k, f) in self.in_flight.iter().enumerate() {
            let latest = f.sent.last().map_or(highest, |(s, _)| *s);
            let more_allowed = (f.sent.len() as u32) < MAX_TRANSMISSIONS;
            if more_allowed
                && !f.fast_retransmitted
                && newer(highest, latest)
                && highest.wrapping_sub(latest) >= REORDERING_THRESHOLD
            {
                lost.push(k);
            }
        }
        if lost.is_empty() {
            return;
        }
        self.slow_start_threshold = (self.in_flight.len() as f64 / 2.0).max(2.0);
        self.window = self.slow_start_threshold;
        for k in lost {
            self.retransmit(now, k, true);
        }
    }

    /// Sends waiting messages while the window has room.
    fn fill_window(&mut self, now: u64) {
        while (self.in_flight.len() as f64) < self.window.floor().max(1.0) {
            let Some(message) = self.waiting.pop_front() else {
                break;
            };
            let sequence = self.take_sequence();
            self.transmits.push_back(frame(sequence, &message));
            self.in_flight.push_back(InFlight {
                message,
                sent: vec![(sequence, now)],
                retransmit_at: now + self.rto_ms(),
                fast_retransmitted: false,
            });
            self.active(now);
        }
    }

    fn retransmit(&mut self, now: u64, k: usize, fast: bool) {
        let sequence = self.take_sequence();
        let rto = self.rto_ms();
        let Some(f) = self.in_flight.get_mut(k) else {
            return;
        };
        f.sent.push((sequence, now));
        f.fast_retransmitted = fast;
        // §6.6.3.1: the wait doubles after each retransmission, up to
        // RFC 6298 §2.5's ceiling.
        f.retransmit_at = now + (rto << (f.sent.len() - 1).min(10)).min(MAX_RTO_MS);
        self.transmits.push_back(frame(sequence, &f.message));
        self.active(now);
    }

    fn take_sequence(&mut self) -> u32 {
        let s = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        s
    }

    fn rto_ms(&self) -> u64 {
        self.rto.rto_us().div_ceil(1000)
    }

    fn active(&mut self, now: u64) {
        self.last_activity = now;
        self.idle_reported = false;
    }

    /// The next frame to write to the link.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Messages sent and not yet acknowledged, and waiting to be sent.
    pub fn backlog(&self) -> (usize, usize) {
        (self.in_flight.len(), self.waiting.len())
    }

    /// How long since the last ACK came (or the link came up).
    pub fn since_last_ack(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_ack_at)
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        if self.failed {
            return None;
        }
        let retransmit = self.in_flight.iter().map(|f| f.retransmit_at).min();
        let idle = (!self.idle_reported).then_some(self.last_activity + KEEPALIVE_INTERVAL_MS);
        [retransmit, idle].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if self.failed {
            return;
        }
        let due: Vec<usize> = (0..self.in_flight.len())
            .filter(|k| self.in_flight[*k].retransmit_at <= now)
            .collect();
        // §6.6.3.1 counts retransmission rounds, not messages: several
        // messages due at once are one round.
        if !due.is_empty() && now.saturating_sub(self.last_ack_at) >= self.rto_ms() {
            self.retransmissions_unanswered += 1;
        }
        for k in due {
            if self.in_flight[k].sent.len() as u32 >= MAX_TRANSMISSIONS {
                self.failed = true;
                self.events.push_back(Event::Failed);
                return;
            }
            // RFC 5681 §3.1 on a timeout: one message in flight again.
            self.slow_start_threshold = (self.in_flight.len() as f64 / 2.0).max(2.0);
            self.window = 1.0;
            self.retransmit(now, k, false);
        }
        if !self.silent && self.retransmissions_unanswered >= SILENT_AFTER_RETRANSMISSIONS {
            self.silent = true;
            self.events.push_back(Event::Silent);
        }
        if !self.idle_reported && now >= self.last_activity + KEEPALIVE_INTERVAL_MS {
            self.idle_reported = true;
            self.events.push_back(Event::Idle);
        }
    }
}

/// Whether sequence `a` comes after `b` (wrapping, as serial numbers).
fn newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

fn frame(sequence: u32, message: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    encode_data(&mut w, sequence, message);
    w.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests;
