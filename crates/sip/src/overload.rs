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

use crate::headers::NameAddr;
use crate::message::SipMessage;
use crate::proxy::OVERLOAD_RETRY_AFTER_S;

/// Requests from phones that waited longer than this to be read are
/// refused if new.
pub const QUEUE_AGE_BUDGET_MS: u64 = 20;
/// The same for requests from other peers.
pub const PEERS_QUEUE_AGE_BUDGET_MS: u64 = 10 * QUEUE_AGE_BUDGET_MS;

/// Decides, per request read, whether to refuse it for overload.
#[derive(Debug)]
pub struct Shedder {
    budget_ms: u64,
    /// Random per run: the refusals' To tags are unique across restarts
    /// and shedders (RFC 3261 §19.3).
    salt: u64,
    refused: u64,
}

impl Shedder {
    pub fn new(budget_ms: u64, salt: u64) -> Self {
        Shedder {
            budget_ms,
            salt,
            refused: 0,
        }
    }

    /// The 503 to answer `request` with, when it is new work and waited
    /// `queue_age_ms` (unknown: `None`, never refused) before it was read.
    pub fn refuse(&mut self, request: &SipMessage, queue_age_ms: Option<u64>) -> Option<SipMessage> {
        if !self.over_budget(queue_age_ms) || !is_new_work(request) {
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

    /// Whether a request that waited `queue_age_ms` waited too long.
    pub fn over_budget(&self, queue_age_ms: Option<u64>) -> bool {
        queue_age_ms.is_some_and(|age| age > self.budget_ms)
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

    #[test]
    fn new_work_that_waited_past_the_budget_gets_503_with_retry_after() {
        let mut shedder = Shedder::new(QUEUE_AGE_BUDGET_MS, 7);
        let invite = request("INVITE", "");
        assert!(shedder.refuse(&invite, Some(QUEUE_AGE_BUDGET_MS)).is_none());
        assert!(shedder.refuse(&invite, None).is_none(), "an unknown age admits");
        let busy = shedder.refuse(&invite, Some(QUEUE_AGE_BUDGET_MS + 1)).unwrap();
        assert_eq!(busy.status(), Some(503));
        assert_eq!(busy.header("Retry-After").as_deref(), Some("5"));
        assert!(NameAddr::has_tag(&busy.header("To").unwrap()));
        assert_eq!(busy.header("Call-ID").as_deref(), Some("c"));
        for method in ["REGISTER", "MESSAGE", "OPTIONS", "SUBSCRIBE"] {
            assert!(shedder.refuse(&request(method, ""), Some(1_000)).is_some(), "{method}");
        }
        assert_eq!(shedder.refused(), 5);
    }

    #[test]
    fn what_finishes_admitted_work_is_never_shed() {
        let mut shedder = Shedder::new(QUEUE_AGE_BUDGET_MS, 7);
        for (method, tag) in [("ACK", ""), ("CANCEL", ""), ("BYE", ";tag=9"), ("INVITE", ";tag=9")] {
            assert!(
                shedder.refuse(&request(method, tag), Some(10_000)).is_none(),
                "{method}{tag}"
            );
        }
        let response = SipMessage::response_to(&request("INVITE", ""), 180, "Ringing", Some("t"));
        assert!(shedder.refuse(&response, Some(10_000)).is_none());
    }
}
