//! What the SIP side shows its operator: the `p2psip_sip_*` metrics,
//! `/status`'s SIP section and the calls in progress.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    /// A method of RFC 3261 or its extensions, or `other`.
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `answered` (2xx) or `failed` (any other final answer).
    outcome: &'static str,
}

/// Call setup times, INVITE to the first 18x or 2xx: 5 ms to about 80 s.
fn setup_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The SIP side's metrics; the SIP task counts, the admin API's scrape
/// reads (both hold clones of the same atomics).
#[derive(Clone)]
pub(crate) struct SipMetrics {
    requests: Family<MethodLabels, Counter>,
    responses: Family<CodeLabels, Counter>,
    auth_failures: Counter,
    shed: Counter,
    malformed: Counter,
    calls: Family<OutcomeLabels, Counter>,
    call_setup: Histogram,
    pub registrations: Gauge,
    pub users: Gauge,
    pub transactions: Gauge,
    pub finished_transaction_bytes: Gauge,
    pub calls_in_progress: Gauge,
}

impl SipMetrics {
    pub(crate) fn new() -> Self {
        SipMetrics {
            requests: Family::default(),
            responses: Family::default(),
            auth_failures: Counter::default(),
            shed: Counter::default(),
            malformed: Counter::default(),
            calls: Family::default(),
            call_setup: setup_histogram(),
            registrations: Gauge::default(),
            users: Gauge::default(),
            transactions: Gauge::default(),
            finished_transaction_bytes: Gauge::default(),
            calls_in_progress: Gauge::default(),
        }
    }

    /// Adds the SIP families to the peer's registry (prefix `p2psip_`).
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "sip_requests",
            "SIP requests received from phones and peers, by method",
            self.requests.clone(),
        );
        r.register(
            "sip_responses",
            "SIP responses sent, this peer's own and those relayed, by status code",
            self.responses.clone(),
        );
        r.register(
            "sip_auth_failures",
            "Digest credentials that did not verify (REGISTER 401/403, proxy 407/403)",
            self.auth_failures.clone(),
        );
        r.register(
            "sip_requests_shed",
            "New requests refused with 503 and Retry-After because they waited too long to be read (overload)",
            self.shed.clone(),
        );
        r.register(
            "sip_malformed_messages",
            "SIP messages refused as malformed (400 where one can be built, else dropped); the log names at most 20 a minute",
            self.malformed.clone(),
        );
        r.register(
            "sip_calls",
            "Calls (INVITEs outside a dialog) finished setting up, by outcome",
            self.calls.clone(),
        );
        r.register_with_unit(
            "sip_call_setup",
            "Call setup time: the INVITE's arrival to the first ringing or answer sent back",
            Unit::Seconds,
            self.call_setup.clone(),
        );
        r.register(
            "sip_registrations",
            "Contact bindings of the phones registered at this peer",
            self.registrations.clone(),
        );
        r.register("sip_users", "SIP users this peer serves", self.users.clone());
        r.register(
            "sip_transactions",
            "SIP transactions held: the proxy's server and client transactions, open and finished, and REGISTER transactions",
            self.transactions.clone(),
        );
        r.register_with_unit(
            "sip_finished_transactions",
            "Memory the proxy's finished transactions hold until Timers D, I, J, K, L and M end (bounded by a budget, oldest first)",
            Unit::Bytes,
            self.finished_transaction_bytes.clone(),
        );
        r.register(
            "sip_dialogs",
            "Calls in progress through this peer: ringing or answered, not yet ended",
            self.calls_in_progress.clone(),
        );
    }

    /// A new request refused for overload.
    pub(crate) fn shed(&self) {
        self.shed.inc();
    }

    pub(crate) fn malformed(&self) {
        self.malformed.inc();
    }

    /// Counts a request by method (a SIP method or `other`, as
    /// [`peer_core::sip_service::SipEvent::Request`] names it).
    pub(crate) fn request(&self, method: &'static str) {
        self.requests.get_or_create(&MethodLabels { method }).inc();
    }

    /// Counts a message sent if it is a response.
    pub(crate) fn sent(&self, bytes: &[u8]) {
        let code = bytes
            .strip_prefix(b"SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse::<u16>().ok());
        if let Some(code @ 100..=699) = code {
            self.responses.get_or_create(&CodeLabels { code }).inc();
        }
    }

    pub(crate) fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    pub(crate) fn call_setup(&self, setup_ms: u64) {
        self.call_setup.observe(setup_ms as f64 / 1000.0);
    }

    pub(crate) fn call_finished(&self, answered: bool) {
        let outcome = if answered { "answered" } else { "failed" };
        self.calls.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

/// The SIP side as `/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SipStatus {
    /// Where phones register and call: UDP and TCP.
    pub phones: String,
    /// Where other peers' SIP reaches this peer (TCP; what AppAttach for
    /// application 5060 answers).
    pub peers: String,
    pub users: Vec<SipUserStatus>,
    pub calls: Vec<CallStatus>,
    /// Open SIP transactions.
    pub transactions: usize,
}

/// One served user and the phones registered for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SipUserStatus {
    pub user: String,
    pub contacts: Vec<ContactStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContactStatus {
    /// The Contact URI the phone registered.
    pub contact: String,
    /// Where its messages come from, e.g. `UDP 192.0.2.7:5060`.
    pub flow: String,
    /// Seconds until the binding expires.
    pub expires_s: u32,
}

/// A call in progress as `/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallStatus {
    pub call_id: String,
    pub from: String,
    pub to: String,
    /// `ringing` until a 2xx, then `answered`.
    pub state: String,
    pub age_s: u64,
}

struct Call {
    from: String,
    to: String,
    answered: bool,
    since_ms: u64,
}

/// Calls in progress through this peer, from their INVITE to their BYE
/// or failure. Bounded: past [`CallBook::LIMIT`] the oldest is forgotten,
/// and a call with no BYE (a phone that died) is after
/// [`CallBook::MAX_AGE_MS`].
#[derive(Default)]
pub(crate) struct CallBook {
    calls: HashMap<String, Call>,
    order: VecDeque<(u64, String)>,
}

impl CallBook {
    pub const LIMIT: usize = 10_000;
    pub const MAX_AGE_MS: u64 = 12 * 3600 * 1000;

    pub fn started(&mut self, now: u64, call_id: String, from: String, to: String) {
        while self.calls.len() >= Self::LIMIT {
            let Some((_, oldest)) = self.order.pop_front() else {
                break;
            };
            self.calls.remove(&oldest);
        }
        if self.order.len() >= 2 * Self::LIMIT {
            // Ended calls behind a long one still in progress: dropped
            // here, so the queue stays within twice the limit.
            let calls = &self.calls;
            self.order
                .retain(|(since, id)| calls.get(id).is_some_and(|c| c.since_ms == *since));
        }
        self.order.push_back((now, call_id.clone()));
        self.calls.insert(
            call_id,
            Call {
                from,
                to,
                answered: false,
                since_ms: now,
            },
        );
    }

    /// The parties of a call, once answered (`true`) or gone for good.
    pub fn answered(&mut self, call_id: &str, ok: bool) -> Option<(String, String)> {
        if ok {
            let call = self.calls.get_mut(call_id)?;
            call.answered = true;
            Some((call.from.clone(), call.to.clone()))
        } else {
            self.calls.remove(call_id).map(|c| (c.from, c.to))
        }
    }

    /// How long an ended call lasted since its INVITE, if it was known.
    pub fn ended(&mut self, now: u64, call_id: &str) -> Option<u64> {
        self.calls.remove(call_id).map(|c| now.saturating_sub(c.since_ms))
    }

    pub fn expire(&mut self, now: u64) {
        while let Some((since, id)) = self.order.front() {
            // An entry whose call ended, or was started again later.
            let gone = self.calls.get(id).is_none_or(|c| c.since_ms != *since);
            if !gone && now.saturating_sub(*since) < Self::MAX_AGE_MS {
                break;
            }
            if !gone {
                self.calls.remove(id);
            }
            self.order.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn status(&self, now: u64) -> Vec<CallStatus> {
        let mut out: Vec<CallStatus> = self
            .calls
            .iter()
            .map(|(id, c)| CallStatus {
                call_id: id.clone(),
                from: c.from.clone(),
                to: c.to.clone(),
                state: if c.answered { "answered" } else { "ringing" }.into(),
                age_s: now.saturating_sub(c.since_ms) / 1000,
            })
            .collect();
        out.sort_by(|a, b| b.age_s.cmp(&a.age_s).then_with(|| a.call_id.cmp(&b.call_id)));
        out
    }
}

/// A name from the network as a log line may quote it: control
/// characters escaped, at most 64 characters.
pub fn quoted(name: &str) -> String {
    name.chars().take(64).flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_book_follows_calls_and_stays_bounded() {
        let mut book = CallBook::default();
        book.started(0, "c1".into(), "alice@o".into(), "bob@o".into());
        book.started(10, "c2".into(), "bob@o".into(), "alice@o".into());
        assert_eq!(book.answered("c1", true), Some(("alice@o".into(), "bob@o".into())));
        assert_eq!(book.answered("c2", false), Some(("bob@o".into(), "alice@o".into())));
        let status = book.status(5_000);
        assert_eq!(status.len(), 1);
        assert_eq!((status[0].state.as_str(), status[0].age_s), ("answered", 5));
        assert_eq!(book.ended(65_000, "c1"), Some(65_000));
        assert_eq!(book.len(), 0);
        assert_eq!(book.ended(65_000, "c1"), None, "ended once");

        for i in 0..(CallBook::LIMIT + 5) {
            book.started(i as u64, format!("x{i}"), "a".into(), "b".into());
        }
        assert_eq!(book.len(), CallBook::LIMIT, "the oldest give way");
        book.expire(CallBook::MAX_AGE_MS + 100);
        assert!(book.len() < CallBook::LIMIT, "calls with no BYE age out");
        book.expire(u64::MAX);
        assert_eq!(book.len(), 0);

        // One long call in front, a million short ones behind it: the
        // queue of start times stays bounded.
        book.started(0, "long".into(), "a".into(), "b".into());
        for i in 0..1_000_000u64 {
            book.started(i, format!("s{i}"), "a".into(), "b".into());
            book.ended(i, &format!("s{i}"));
        }
        book.expire(1_000_000);
        assert_eq!(book.len(), 1);
        assert!(book.order.len() <= 2 * CallBook::LIMIT, "{}", book.order.len());
    }

    #[test]
    fn names_from_the_network_are_escaped_and_cut() {
        assert_eq!(quoted("evil\r\nname"), "evil\\r\\nname");
        assert_eq!(quoted(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn only_responses_are_counted_by_code_and_unknown_methods_are_other() {
        let m = SipMetrics::new();
        m.sent(b"SIP/2.0 404 Not Found\r\n");
        m.sent(b"INVITE sip:x SIP/2.0\r\n");
        m.sent(b"SIP/2.0 99x bogus");
        m.request(peer_core::sip_service::counted_method("FROB"));
        m.request(peer_core::sip_service::counted_method("INVITE"));
        assert_eq!(m.responses.get_or_create(&CodeLabels { code: 404 }).get(), 1);
        assert_eq!(m.requests.get_or_create(&MethodLabels { method: "other" }).get(), 1);
        assert_eq!(m.requests.get_or_create(&MethodLabels { method: "INVITE" }).get(), 1);
    }
}
