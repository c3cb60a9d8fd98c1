//! What the enrollment server (RFC 6940 §11.3) allows, and how fast.
//!
//! Sybil resistance in RELOAD rests on the enrollment server: whoever
//! gets many Node-IDs can surround any Resource-ID. Issue 36 got 100
//! certificates carrying 1,600 Node-IDs for one account in 1.9 s, and
//! tried 200 passwords in 3.6 s. So:
//! - every request from one address spends a token of a bucket (each
//!   costs a 100,000-round PBKDF2, decision 0005);
//! - failed authentications spend tokens of a smaller bucket per address
//!   and one per account; with either empty, the request is refused
//!   before the password is even checked (429 with Retry-After), so
//!   guessing is slow from any number of addresses;
//! - an account holds at most so many keys (devices) and Node-IDs in
//!   all; a key that enrolls again keeps what it has and counts once.
//!
//! Time is an input (milliseconds); memory is bounded (the least recently
//! used buckets of full tables are forgotten, which only forgives).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// The limits; `p2psip enrollment-server` options set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentLimits {
    /// Requests one address may make in a burst; it regains one every
    /// `request_refill_ms`.
    pub requests_per_address: u32,
    pub request_refill_ms: u64,
    /// Failed authentications one address may make in a burst; it
    /// regains one every `failure_refill_ms`.
    pub failures_per_address: u32,
    /// Failed authentications for one account, from anywhere.
    pub failures_per_account: u32,
    pub failure_refill_ms: u64,
    /// Distinct keys (devices) one account may hold certificates for.
    pub keys_per_account: usize,
    /// Node-IDs one account may hold in all.
    pub node_ids_per_account: usize,
}

impl Default for EnrollmentLimits {
    fn default() -> Self {
        EnrollmentLimits {
            requests_per_address: 60,
            request_refill_ms: 1_000,
            failures_per_address: 5,
            failures_per_account: 10,
            failure_refill_ms: 12_000,
            keys_per_account: 16,
            node_ids_per_account: 64,
        }
    }
}

/// Addresses and accounts with a bucket, at most.
const MAX_TRACKED: usize = 10_000;

/// Why a request is refused before its password is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Throttled {
    /// Too many requests from this address: retry after this many seconds.
    Address { retry_after_s: u64 },
    /// Too many failed authentications from this address.
    Guessing { retry_after_s: u64 },
    /// Too many failed authentications for this account.
    Account { retry_after_s: u64 },
}

impl Throttled {
    pub fn retry_after_s(&self) -> u64 {
        match self {
            Throttled::Address { retry_after_s }
            | Throttled::Guessing { retry_after_s }
            | Throttled::Account { retry_after_s } => *retry_after_s,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    updated_ms: u64,
}

/// Token buckets by key, bounded in number.
#[derive(Debug)]
struct Buckets<K> {
    burst: u32,
    refill_ms: u64,
    by_key: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(burst: u32, refill_ms: u64) -> Self {
        Buckets {
            burst: burst.max(1),
            refill_ms: refill_ms.max(1),
            by_key: HashMap::new(),
        }
    }

    fn refilled(&self, key: &K, now: u64) -> Bucket {
        match self.by_key.get(key) {
            None => Bucket {
                tokens: self.burst,
                updated_ms: now,
            },
            Some(b) => {
                let gained = now.saturating_sub(b.updated_ms) / self.refill_ms;
                let tokens = (u64::from(b.tokens) + gained).min(u64::from(self.burst)) as u32;
                // Keep the fraction of a token already earned.
                let updated_ms = if tokens == self.burst {
                    now
                } else {
                    b.updated_ms + gained * self.refill_ms
                };
                Bucket { tokens, updated_ms }
            }
        }
    }

    /// Seconds until `key` has a token again; 0 if it has one.
    fn wait_s(&self, key: &K, now: u64) -> u64 {
        let b = self.refilled(key, now);
        if b.tokens > 0 {
            0
        } else {
            (b.updated_ms + self.refill_ms)
                .saturating_sub(now)
                .div_ceil(1000)
                .max(1)
        }
    }

    /// Whether `key` has every token (it spent none lately).
    fn is_full(&self, key: &K, now: u64) -> bool {
        self.refilled(key, now).tokens == self.burst
    }

    /// Spends one token of `key`; false if it had none.
    fn spend(&mut self, key: &K, now: u64) -> bool {
        let mut b = self.refilled(key, now);
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        if self.by_key.len() >= MAX_TRACKED && !self.by_key.contains_key(key) {
            self.forget_one(now);
        }
        self.by_key.insert(key.clone(), b);
        true
    }

    /// Drops a full bucket if there is one (nothing is forgiven), else the
    /// one touched longest ago.
    fn forget_one(&mut self, now: u64) {
        let victim = self
            .by_key
            .iter()
            .find(|(k, _)| self.refilled(k, now).tokens == self.burst)
            .or_else(|| self.by_key.iter().min_by_key(|(_, b)| b.updated_ms))
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            self.by_key.remove(&k);
        }
    }
}

/// The enrollment server's rate limits.
#[derive(Debug)]
pub struct Gate {
    requests: Buckets<IpAddr>,
    failures_by_address: Buckets<IpAddr>,
    failures_by_account: Buckets<String>,
}

impl Gate {
    pub fn new(limits: &EnrollmentLimits) -> Self {
        Gate {
            requests: Buckets::new(limits.requests_per_address, limits.request_refill_ms),
            failures_by_address: Buckets::new(limits.failures_per_address, limits.failure_refill_ms),
            failures_by_account: Buckets::new(limits.failures_per_account, limits.failure_refill_ms),
        }
    }

    /// Whether a request from `from` for `account` may have its password
    /// checked. Every request spends a request token first, so polling
    /// costs the same whatever the answer. An account that guessing from
    /// elsewhere has locked stays open to an address that has failed no
    /// password lately: its own user is not locked out by the attack, and
    /// each fresh address buys an attacker one guess.
    pub fn admit(&mut self, now: u64, from: IpAddr, account: &str) -> Result<(), Throttled> {
        if !self.requests.spend(&from, now) {
            let retry_after_s = self.requests.wait_s(&from, now);
            return Err(Throttled::Address { retry_after_s });
        }
        let guessing = self.failures_by_address.wait_s(&from, now);
        if guessing > 0 {
            return Err(Throttled::Guessing {
                retry_after_s: guessing,
            });
        }
        let locked = self.failures_by_account.wait_s(&account.to_string(), now);
        if locked > 0 && !self.failures_by_address.is_full(&from, now) {
            return Err(Throttled::Account { retry_after_s: locked });
        }
        Ok(())
    }

    /// A request from `from` for `account` failed authentication.
    pub fn failed(&mut self, now: u64, from: IpAddr, account: &str) {
        self.failures_by_address.spend(&from, now);
        self.failures_by_account.spend(&account.to_string(), now);
    }
}

/// Whether an account that holds `keys` keys and `node_ids` Node-IDs may
/// get a certificate for a new key with `more` Node-IDs; the reason if not.
pub fn may_add_key(limits: &EnrollmentLimits, keys: usize, node_ids: usize, more: usize) -> Result<(), String> {
    if keys >= limits.keys_per_account {
        return Err(format!(
            "the account holds certificates for {keys} keys, the most allowed (--max-keys-per-account)"
        ));
    }
    if node_ids + more > limits.node_ids_per_account {
        return Err(format!(
            "the account holds {node_ids} Node-IDs; {more} more would pass the {} allowed (--max-node-ids-per-account)",
            limits.node_ids_per_account
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    /// Issue 36 §9: 200 wrong passwords from one address. After five, the
    /// address is refused before any password is checked, and it regains
    /// one try every 12 s.
    #[test]
    fn guessing_from_one_address_is_slowed_to_one_try_in_12_s() {
        let mut gate = Gate::new(&EnrollmentLimits::default());
        let mut checked = 0;
        for i in 0..200u64 {
            if gate.admit(i * 18, ip(1), "alice").is_ok() {
                checked += 1;
                gate.failed(i * 18, ip(1), "alice");
            }
        }
        assert_eq!(checked, 5, "200 tries in 3.6 s check 5 passwords");
        assert!(matches!(
            gate.admit(3_600, ip(1), "bob"),
            Err(Throttled::Guessing { .. } | Throttled::Address { .. })
        ));
        assert!(gate.admit(15_000, ip(1), "bob").is_ok(), "one more after 12 s");
    }

    /// Guessing one account's password from many addresses locks the
    /// account for the addresses that failed, never for a clean one
    /// (review finding: anyone could otherwise lock any account for good).
    #[test]
    fn guessing_one_account_from_many_addresses_locks_only_the_guessers() {
        let mut gate = Gate::new(&EnrollmentLimits::default());
        let mut checked = 0;
        for a in 1..=100u8 {
            if gate.admit(u64::from(a), ip(a), "alice").is_ok() {
                checked += 1;
                gate.failed(u64::from(a), ip(a), "alice");
            }
        }
        assert_eq!(checked, 100, "each fresh address gets one guess");
        assert!(matches!(
            gate.admit(200, ip(1), "alice"),
            Err(Throttled::Account { .. })
        ));
        assert!(
            gate.admit(200, ip(200), "alice").is_ok(),
            "the account's user is not locked out"
        );
        assert!(gate.admit(200, ip(200), "bob").is_ok());
    }

    #[test]
    fn one_address_makes_60_requests_at_once_then_one_a_second() {
        let mut gate = Gate::new(&EnrollmentLimits::default());
        let ok = (0..100).filter(|_| gate.admit(0, ip(9), "peer").is_ok()).count();
        assert_eq!(ok, 60);
        assert_eq!(
            gate.admit(0, ip(9), "peer"),
            Err(Throttled::Address { retry_after_s: 1 })
        );
        assert!(gate.admit(1_000, ip(9), "peer").is_ok());
        assert!(gate.admit(1_000, ip(10), "peer").is_ok(), "another address has its own");
    }

    #[test]
    fn the_tables_stay_bounded() {
        let mut gate = Gate::new(&EnrollmentLimits::default());
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let from = IpAddr::from(i.to_be_bytes());
            let _ = gate.admit(u64::from(i), from, "x");
        }
        assert!(gate.requests.by_key.len() <= MAX_TRACKED);
    }

    #[test]
    fn an_account_holds_so_many_keys_and_node_ids() {
        let limits = EnrollmentLimits::default();
        assert!(may_add_key(&limits, 15, 60, 4).is_ok());
        assert!(may_add_key(&limits, 16, 0, 1).unwrap_err().contains("16 keys"));
        assert!(may_add_key(&limits, 3, 60, 5).unwrap_err().contains("64 allowed"));
    }
}
