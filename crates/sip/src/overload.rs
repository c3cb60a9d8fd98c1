//! Load shedding before any work is done (issue 36 §6). A peer that falls
//! behind answers new work with 503 and Retry-After (RFC 3261 §21.5.4)
//! as soon as it reads it, from how long the request waited to be read:
//! the queue in front of the peer is where overload shows first and
//! costs most (a request that waited seconds is retransmitted by then,
//! and every retransmission is more work). Refusing takes a parse and
//! one short response; admitting means digest checks, an overlay lookup,
//! signatures and transactions.
//!
//! What is new work: a request outside any dialog (no To tag) other than
//! ACK and CANCEL. Responses, ACKs, CANCELs and in-dialog requests (a BYE
//! above all) finish work already admitted, so they always go on; shedding
//! them would only make the admitted calls retransmit.
//!
//! The budgets are a choice (decision 0029). From phones: a queue older
//! than 20 ms is more than a peer at its sustainable rate shows on
//! loopback (its queue then stays under 1 ms), and low enough that a
//! refusal reaches the phone well within 50 ms of its request. From other
//! peers ten times that: their requests were admitted by the caller's
//! peer, which has already spent a lookup, signatures and a connection on
//! them, so the callee's peer refuses them only when it is itself far
//! behind.
//!
//! A burst is not overload. Phones that all call at once make a queue
//! that drains again within milliseconds; refusing its tail would turn a
//! busy moment into failed calls where a conventional proxy is only a
//! few milliseconds slower. So the budget applies only while the queue
//! *stands*, as CoDel tells a standing queue from a burst (RFC 8289
//! §3.2): every message read for [`INTERVAL_MS`] waited longer than
//! [`STANDING_MS`]. Once the queue has stood, the budget applies at once
//! for [`ALERT_MS`] more, as CoDel re-enters its dropping state (§3.3), so
//! sustained overload is refused early however it oscillates. A request
//! that waited ten times the budget is refused whatever the queue did.

use crate::headers::NameAddr;
use crate::message::SipMessage;
use crate::proxy::OVERLOAD_RETRY_AFTER_S;

/// Requests from phones that waited longer than this to be read are
/// refused if new.
pub const QUEUE_AGE_BUDGET_MS: u64 = 20;
/// The same for requests from other peers.
pub const PEERS_QUEUE_AGE_BUDGET_MS: u64 = 10 * QUEUE_AGE_BUDGET_MS;
/// A message that waited longer than this is in a queue that has not
/// drained (CoDel's target, RFC 8289 §4.4).
pub const STANDING_MS: u64 = 5;
/// How long the queue must stay above [`STANDING_MS`] to stand (CoDel's
/// interval, §4.5).
pub const INTERVAL_MS: u64 = 50;
/// How long after the queue stood the budget keeps applying at once.
pub const ALERT_MS: u64 = 1_000;

/// Decides, per request read from one side (phones or peers), whether
/// to refuse it for overload. Time comes in as `now` (ms).
#[derive(Debug)]
pub struct Shedder {
    budget_ms: u64,
    /// Random per run: the refusals' To tags are unique across restarts
    /// and shedders (RFC 3261 §19.3).
    salt: u64,
    refused: u64,
    /// Since when every message read waited longer than [`STANDING_MS`].
    above_since: Option<u64>,
    /// When the last message was read: a gap of [`INTERVAL_MS`] with
    /// nothing read means the queue was empty (CoDel resets then too).
    last_read: u64,
    /// Until when the budget applies without waiting for the queue to
    /// stand again.
    alert_until: u64,
}

impl Shedder {
    pub fn new(budget_ms: u64, salt: u64) -> Self {
        Shedder {
            budget_ms,
            salt,
            refused: 0,
            above_since: None,
            last_read: 0,
            alert_until: 0,
        }
    }

    /// Every message read from this side, requests and responses: how
    /// long it waited tells whether the queue stands.
    pub fn observe(&mut self, now: u64, queue_age_ms: Option<u64>) {
        let Some(age) = queue_age_ms else { return };
        let idle = now.saturating_sub(self.last_read) > INTERVAL_MS;
        self.last_read = now;
        if age <= STANDING_MS {
            self.above_since = None;
            return;
        }
        if idle {
            self.above_since = None;
        }
        let since = *self.above_since.get_or_insert(now);
        if now.saturating_sub(since) >= INTERVAL_MS {
            self.alert_until = now + ALERT_MS;
        }
    }

    /// The 503 to answer `request` with, when it is new work and waited
    /// `queue_age_ms` (unknown: `None`, never refused) before it was read.
    pub fn refuse(&mut self, now: u64, request: &SipMessage, queue_age_ms: Option<u64>) -> Option<SipMessage> {
        if !self.over_budget(now, queue_age_ms) || !is_new_work(request) {
            return None;
        }
        self.refused += 1;
        // A final response to a request outside a dialog carries a To tag
        // (§8.2.6.2); any value unique to this answer will do.
        let tag = format!("shed{:x}.{:x}", self.salt, self.refused);
        let mut busy = SipMessage::response_to(request, 503, "Service Unavailable", Some(&tag));
        busy.push("Retry-After", &OVERLOAD_RETRY_AFTER_S.to_string());
        Some(busy)
    }

    /// Whether a request that waited `queue_age_ms` waited too long: past
    /// the budget while the queue stands, or ten times the budget.
    pub fn over_budget(&self, now: u64, queue_age_ms: Option<u64>) -> bool {
        let Some(age) = queue_age_ms else { return false };
        age > 10 * self.budget_ms || (age > self.budget_ms && now < self.alert_until)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

/// A request that would start new work: outside a dialog, not an ACK or
/// a CANCEL.
pub fn is_new_work(request: &SipMessage) -> bool {
    request.is_request()
        && !matches!(request.method(), Some("ACK" | "CANCEL"))
        && !request.header("To").is_some_and(|t| NameAddr::has_tag(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, to_tag: &str) -> SipMessage {
        let text = format!(
            "{method} sip:bob@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
             From: <sip:alice@x>;tag=1\r\nTo: <sip:bob@x>{to_tag}\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        SipMessage::parse(text.as_bytes()).unwrap()
    }

    /// Every message read for one interval, from `from` on, waited 10 ms.
    fn stand(shedder: &mut Shedder, from: u64) -> u64 {
        for t in (from..=from + INTERVAL_MS).step_by(10) {
            shedder.observe(t, Some(10));
        }
        from + INTERVAL_MS
    }

    #[test]
    fn new_work_that_waited_past_the_budget_while_the_queue_stands_gets_503_with_retry_after() {
        let mut shedder = Shedder::new(QUEUE_AGE_BUDGET_MS, 7);
        let now = stand(&mut shedder, 0);
        let invite = request("INVITE", "");
        assert!(shedder.refuse(now, &invite, Some(QUEUE_AGE_BUDGET_MS)).is_none());
        assert!(shedder.refuse(now, &invite, None).is_none(), "an unknown age admits");
        let busy = shedder.refuse(now, &invite, Some(QUEUE_AGE_BUDGET_MS + 1)).unwrap();
        assert_eq!(busy.status(), Some(503));
        assert_eq!(busy.header("Retry-After").as_deref(), Some("5"));
        assert!(NameAddr::has_tag(&busy.header("To").unwrap()));
        assert_eq!(busy.header("Call-ID").as_deref(), Some("c"));
        for method in ["REGISTER", "MESSAGE", "OPTIONS", "SUBSCRIBE"] {
            assert!(
                shedder.refuse(now, &request(method, ""), Some(1_000)).is_some(),
                "{method}"
            );
        }
        assert_eq!(shedder.refused(), 5);
    }

    #[test]
    fn what_finishes_admitted_work_is_never_shed() {
        let mut shedder = Shedder::new(QUEUE_AGE_BUDGET_MS, 7);
        let now = stand(&mut shedder, 0);
        for (method, tag) in [("ACK", ""), ("CANCEL", ""), ("BYE", ";tag=9"), ("INVITE", ";tag=9")] {
            assert!(
                shedder.refuse(now, &request(method, tag), Some(10_000)).is_none(),
                "{method}{tag}"
            );
        }
        let response = SipMessage::response_to(&request("INVITE", ""), 180, "Ringing", Some("t"));
        assert!(shedder.refuse(now, &response, Some(10_000)).is_none());
    }

    /// Phones that all call at once: the queue's tail waits past the
    /// budget, but the queue drains within the interval, so nothing is
    /// refused; a request that waited ten times the budget always is.
    #[test]
    fn a_burst_that_drains_is_not_shed() {
        let mut shedder = Shedder::new(QUEUE_AGE_BUDGET_MS, 7);
        let invite = request("INVITE", "");
        for round in 0..20 {
            let start = round * 60;
            for (dt, age) in [(0, 1), (10, 10), (20, 20), (30, 30), (40, 45)] {
                shedder.observe(start + dt, Some(age));
                assert!(
                    shedder.refuse(start + dt, &invite, Some(age)).is_none(),
                    "t={}",
                    start + dt
                );
            }
            shedder.observe(start + 50, Some(1));
        }
        let late = 10 * QUEUE_AGE_BUDGET_MS + 1;
        assert!(shedder.refuse(1_200, &invite, Some(late)).is_some());
    }

    /// Messages far apart that each waited a little are no standing
    /// queue: the queue emptied in between.
    #[test]
    fn an_idle_gap_is_not_a_standing_queue() {
        let mut shedder = Shedder::new(QUEUE_AGE_BUDGET_MS, 7);
        let invite = request("INVITE", "");
        let age = Some(QUEUE_AGE_BUDGET_MS + 5);
        for t in (0..1_000).step_by(200) {
            shedder.observe(t, age);
            assert!(shedder.refuse(t, &invite, age).is_none(), "t={t}");
        }
    }

    /// Sustained overload that oscillates (the shedding drains the queue,
    /// then it fills again) is refused at once for a while after the queue
    /// first stood, as CoDel re-enters dropping.
    #[test]
    fn once_the_queue_has_stood_the_budget_applies_at_once_for_a_while() {
        let mut shedder = Shedder::new(QUEUE_AGE_BUDGET_MS, 7);
        let invite = request("INVITE", "");
        let stood = stand(&mut shedder, 1_000);
        shedder.observe(stood + 5, Some(1));
        let age = Some(QUEUE_AGE_BUDGET_MS + 5);
        shedder.observe(stood + 10, age);
        assert!(
            shedder.refuse(stood + 10, &invite, age).is_some(),
            "at once, drained or not"
        );
        assert!(shedder.refuse(stood + ALERT_MS - 1, &invite, age).is_some());
        shedder.observe(stood + ALERT_MS, Some(1));
        assert!(
            shedder.refuse(stood + ALERT_MS, &invite, age).is_none(),
            "the alert is over"
        );
    }
}
