//! Server transactions for non-INVITE requests — RFC 3261 §17.2.2 and
//! §17.2.3: a retransmitted request is answered with the last response
//! sent, never handled twice; the transaction is remembered for Timer J
//! (64·T1 on UDP, zero on TCP).

use crate::capacity::GiveBack;
use crate::headers::Via;
use crate::message::SipMessage;
use std::collections::{HashMap, VecDeque};

/// RFC 3261 §17.1.1.1: T1, the round-trip estimate.
pub const T1_MS: u64 = 500;
/// Timer J for unreliable transports.
pub const TIMER_J_MS: u64 = 64 * T1_MS;
/// Most transactions remembered; the oldest go first past this, so a
/// flood of distinct requests cannot grow memory without bound.
pub const MAX_TRANSACTIONS: usize = 65_536;

/// What identifies a server transaction (§17.2.3): for an RFC 3261
/// branch (magic cookie `z9hG4bK`) the method, the sent-by and the
/// branch; for an RFC 2543 peer the Call-ID, CSeq, From tag and top Via.
///
/// The parts are joined into one string: a proxy at a few thousand calls
/// per second holds hundreds of thousands of keys through Timers J and
/// L, and one allocation each, not three or four, is what keeps that in
/// bounds. Every part but the last is prefixed with its length, so no
/// content of a part (the parser keeps any byte) can make two different
/// keys one string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey(Box<str>);

/// Marks the key of an RFC 3261 branch; a legacy key starts with `L`.
const BRANCH: char = 'B';
const LEGACY: char = 'L';

impl TransactionKey {
    /// The key of a request; `None` when it has no Via to key on. ACK is
    /// keyed as the INVITE it acknowledges.
    pub fn of(request: &SipMessage) -> Option<Self> {
        let top = request.list("Via").into_iter().next()?;
        let via = Via::parse(&top)?;
        let method = match request.method()? {
            "ACK" => "INVITE",
            m => m,
        };
        match via.branch() {
            Some(b) if b.starts_with("z9hG4bK") => {
                let sent_by = format!("{}:{}", via.host.to_ascii_lowercase(), via.port.unwrap_or(0));
                Some(Self::branch(method, &sent_by, b))
            }
            _ => {
                let call_id = request.call_id()?;
                let cseq = request.header("CSeq")?;
                let from_tag = request
                    .header("From")
                    .and_then(|f| crate::headers::NameAddr::parse(&f).ok())
                    .and_then(|n| n.tag().map(str::to_string))
                    .unwrap_or_default();
                Some(Self::joined(LEGACY, &[&call_id, &cseq, &from_tag, &top]))
            }
        }
    }

    fn branch(method: &str, sent_by: &str, branch: &str) -> Self {
        Self::joined(BRANCH, &[method, sent_by, branch])
    }

    fn joined(form: char, parts: &[&str]) -> Self {
        let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
        key.push(form);
        if let Some((last, rest)) = parts.split_last() {
            for part in rest {
                key.push_str(&format!("{}:{part}", part.len()));
            }
            key.push_str(last);
        }
        Self(key.into_boxed_str())
    }

    /// The key as one string, for hashing.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the request carried an RFC 3261 branch.
    pub fn is_branch(&self) -> bool {
        self.0.starts_with(BRANCH)
    }

    /// §9.2: the key of the INVITE a CANCEL with this key cancels: same
    /// branch and sent-by. `None` for a legacy key.
    pub fn of_invite(&self) -> Option<Self> {
        let rest = self.0.strip_prefix(BRANCH)?;
        let (length, rest) = rest.split_once(':')?;
        let sent_by_and_branch = rest.get(length.parse::<usize>().ok()?..)?;
        Some(Self(format!("{BRANCH}6:INVITE{sent_by_and_branch}").into_boxed_str()))
    }
}

/// What to do with an arriving request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// A new transaction: handle the request.
    New,
    /// A retransmission while the request is still being handled: drop it.
    InProgress,
    /// A retransmission after the final response: send this again.
    Answered(Vec<u8>),
}

struct State {
    response: Option<Vec<u8>>,
    /// Forget the transaction after this (set when it is answered).
    until: Option<u64>,
}

/// Non-INVITE server transactions of one SIP endpoint.
#[derive(Default)]
pub struct ServerTransactions {
    states: HashMap<TransactionKey, State>,
    order: VecDeque<(u64, TransactionKey)>,
}

impl ServerTransactions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether transaction `key` is held (in progress or answered).
    pub fn holds(&self, key: &TransactionKey) -> bool {
        self.states.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// What to do with a request of transaction `key`; a new one is
    /// remembered as in progress.
    pub fn arrive(&mut self, now: u64, key: &TransactionKey) -> Arrival {
        let arrival = self.check(now, key);
        if arrival == Arrival::New {
            self.begin(now, key);
        }
        arrival
    }

    /// What to do with a request of transaction `key`, remembering
    /// nothing yet: a request that will be refused (a challenge, a 4xx)
    /// need leave no state behind (RFC 3261 §26.3.2.4), so a flood of
    /// them costs no memory.
    pub fn check(&mut self, now: u64, key: &TransactionKey) -> Arrival {
        self.expire(now);
        match self.states.get(key) {
            Some(State {
                response: Some(bytes), ..
            }) => Arrival::Answered(bytes.clone()),
            Some(_) => Arrival::InProgress,
            None => Arrival::New,
        }
    }

    /// Remembers transaction `key` as in progress: its retransmissions are
    /// dropped until [`answered`](Self::answered).
    pub fn begin(&mut self, now: u64, key: &TransactionKey) {
        if self.states.contains_key(key) {
            return;
        }
        if self.states.len() >= MAX_TRANSACTIONS {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.states.remove(&oldest);
            }
        }
        self.states.insert(
            key.clone(),
            State {
                response: None,
                until: None,
            },
        );
        // A transaction never answered is forgotten after Timer J too,
        // from its arrival.
        self.order.push_back((now + TIMER_J_MS, key.clone()));
    }

    /// Forgets transactions whose time is over, and gives memory back once
    /// a burst is gone: a driver calls this now and then, so a flood's
    /// transactions do not outlive it for want of new requests.
    pub fn expire(&mut self, now: u64) {
        while let Some((at, key)) = self.order.front() {
            if *at > now {
                break;
            }
            let key = key.clone();
            self.order.pop_front();
            if self.states.get(&key).is_some_and(|s| s.until.is_none_or(|u| u <= now)) {
                self.states.remove(&key);
            }
        }
        self.order.give_back();
        self.states.give_back();
    }

    /// The final response was sent: keep it for retransmissions, for
    /// Timer J on an unreliable transport and not at all on a reliable one.
    pub fn answered(&mut self, now: u64, key: &TransactionKey, response: &[u8], reliable: bool) {
        if reliable {
            self.states.remove(key);
            return;
        }
        if let Some(s) = self.states.get_mut(key) {
            s.response = Some(response.to_vec());
            s.until = Some(now + TIMER_J_MS);
            self.order.push_back((now + TIMER_J_MS, key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(branch: &str, method: &str) -> SipMessage {
        let text = format!(
            "{method} sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\nFrom: <sip:a@y>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        SipMessage::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_retransmission_is_dropped_while_handled_then_answered_until_timer_j() {
        let mut t = ServerTransactions::new();
        let key = TransactionKey::of(&request("z9hG4bK1", "REGISTER")).unwrap();
        assert_eq!(t.arrive(0, &key), Arrival::New);
        assert_eq!(t.arrive(500, &key), Arrival::InProgress);
        t.answered(600, &key, b"SIP/2.0 200 OK", false);
        assert_eq!(t.arrive(1000, &key), Arrival::Answered(b"SIP/2.0 200 OK".to_vec()));
        assert_eq!(
            t.arrive(600 + TIMER_J_MS - 1, &key),
            Arrival::Answered(b"SIP/2.0 200 OK".to_vec())
        );
        assert_eq!(t.arrive(600 + TIMER_J_MS, &key), Arrival::New);
    }

    #[test]
    fn reliable_transports_forget_at_once_and_keys_tell_methods_and_branches_apart() {
        let mut t = ServerTransactions::new();
        let key = TransactionKey::of(&request("z9hG4bK1", "REGISTER")).unwrap();
        t.arrive(0, &key);
        t.answered(1, &key, b"x", true);
        assert!(t.is_empty());
        let other = TransactionKey::of(&request("z9hG4bK2", "REGISTER")).unwrap();
        let options = TransactionKey::of(&request("z9hG4bK1", "OPTIONS")).unwrap();
        assert_ne!(key, other);
        assert_ne!(key, options);
        let ack = TransactionKey::of(&request("z9hG4bK1", "ACK")).unwrap();
        assert_eq!(ack, TransactionKey::of(&request("z9hG4bK1", "INVITE")).unwrap());
        let legacy = TransactionKey::of(&request("old-style", "REGISTER")).unwrap();
        assert!(!legacy.is_branch());
        assert!(key.is_branch());
        let cancel = TransactionKey::of(&request("z9hG4bK1", "CANCEL")).unwrap();
        assert_eq!(cancel.of_invite(), TransactionKey::of(&request("z9hG4bK1", "INVITE")));
        assert_eq!(legacy.of_invite(), None);
        // Parts cannot run into each other: a separator inside one is content.
        assert_ne!(
            TransactionKey::joined(BRANCH, &["INVITE", "a:1", "z9hG4bKx"]),
            TransactionKey::joined(BRANCH, &["INVITE", "a", ":1z9hG4bKx"])
        );
    }

    #[test]
    fn a_checked_request_leaves_no_state_until_it_begins() {
        let mut t = ServerTransactions::new();
        let key = TransactionKey::of(&request("z9hG4bK1", "REGISTER")).unwrap();
        assert_eq!(t.check(0, &key), Arrival::New);
        assert_eq!(t.check(1, &key), Arrival::New, "a retransmission is handled again");
        assert!(t.is_empty());
        t.begin(2, &key);
        assert_eq!(t.check(3, &key), Arrival::InProgress);
    }

    #[test]
    fn a_burst_is_forgotten_and_its_memory_given_back_without_new_requests() {
        let mut t = ServerTransactions::new();
        for i in 0..20_000 {
            let key = TransactionKey::of(&request(&format!("z9hG4bK{i}"), "OPTIONS")).unwrap();
            t.arrive(0, &key);
            t.answered(0, &key, b"SIP/2.0 200 OK", false);
        }
        assert!(t.states.capacity() >= 20_000);
        t.expire(TIMER_J_MS);
        assert!(t.is_empty());
        let small = 4 * crate::capacity::SHRINK_BELOW;
        assert!(t.states.capacity() < small, "{}", t.states.capacity());
        assert!(t.order.capacity() < small, "{}", t.order.capacity());
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = ServerTransactions::new();
        for i in 0..MAX_TRANSACTIONS + 10 {
            t.arrive(
                0,
                &TransactionKey::of(&request(&format!("z9hG4bK{i}"), "OPTIONS")).unwrap(),
            );
        }
        assert_eq!(t.len(), MAX_TRANSACTIONS);
    }
}
