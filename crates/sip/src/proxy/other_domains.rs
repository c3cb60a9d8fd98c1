//! Interworking with other SIP domains (issue 34, decision 0034).
//!
//! - **Outbound.** A request from one of this peer's users for a domain
//!   other than the overlay's goes to that domain's servers, found by
//!   RFC 3263 ([`crate::server_location`]): the proxy hands the driver
//!   DNS questions ([`Output::Resolve`]) and takes the answers
//!   ([`Proxy::resolved`]), then tries the next hops one at a time,
//!   moving to the next on a timeout, a transport error or a 503 (§4.3).
//!   Only a user this peer authenticates may send a request out: the
//!   peer is no open relay.
//! - **Inbound** (a proxy peer, much like an I-CSCF): a request for a
//!   user of the overlay from a server of another domain carries no
//!   credentials of the overlay; [`Outsiders`] says which users such
//!   requests may reach. One whose From names the overlay's domain is
//!   never taken as an outsider's, so nobody outside can pose as a user.

use super::{Output, Proxy, ServerState, Side, Target, TIMER_C_MS, TRANSACTION_TIMEOUT_MS};
use crate::headers::NameAddr;
use crate::message::SipMessage;
use crate::registrar::{Flow, Transport};
use crate::server_location::{Answer, LocateError, Query, Resolution};
use crate::uri::Uri;
use std::collections::BTreeSet;

/// What this peer does for SIP domains other than the overlay's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interworking {
    /// Requests of this peer's users for other domains are sent there.
    pub outbound: bool,
    /// And over TLS where their DNS says so, or for a `sips:` URI
    /// (RFC 3261 §26.2; RFC 5922: the driver checks that the server's
    /// certificate names the domain, from [`Output::TlsDomain`]).
    pub tls: bool,
    /// Which users requests from other domains may reach.
    pub outsiders: Outsiders,
}

/// Which of the overlay's users requests from other domains (no digest
/// of the overlay) may reach through this peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Outsiders {
    /// None: such requests are challenged as any unknown caller is.
    #[default]
    Nobody,
    /// Every user of the overlay.
    Everyone,
    /// These users only.
    Users(BTreeSet<String>),
}

impl Outsiders {
    pub fn may_reach(&self, user: &str) -> bool {
        match self {
            Outsiders::Nobody => false,
            Outsiders::Everyone => true,
            Outsiders::Users(users) => users.contains(user),
        }
    }

    /// `none`, `all`, or a comma-separated list of user names.
    pub fn parse(text: &str) -> Result<Outsiders, String> {
        match text.trim() {
            "none" => Ok(Outsiders::Nobody),
            "all" => Ok(Outsiders::Everyone),
            list => {
                let users: BTreeSet<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
                    .collect();
                let valid = |u: &String| {
                    u.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$;?/".contains(c))
                };
                if users.is_empty() || !users.iter().all(valid) {
                    return Err(format!(
                        "{text:?} is not none, all, or a comma-separated list of user names"
                    ));
                }
                Ok(Outsiders::Users(users))
            }
        }
    }
}

/// Next hops a request for another domain tries at most: a DNS answer
/// can list hundreds of servers, and each try may take 64·T1.
pub const MAX_OUTSIDE_HOPS: usize = 8;

/// The next hops of a request for another domain, one at a time.
pub(super) struct OutsideHops {
    resolution: Resolution,
    /// The domain whose servers these are: what a TLS server among them
    /// must prove it is (RFC 5922 §4).
    domain: String,
    /// A DNS question went unanswered (a server failure or timeout, not
    /// "no such name").
    dns_failed: bool,
    /// A NAPTR or SRV question went unanswered: the domain's own choice
    /// of servers is unknown, so no fallback to its bare host name (that
    /// could be another server altogether) is tried.
    gave_up: bool,
    /// Next hops tried so far.
    tried: usize,
}

/// Why a request for another domain is refused before any DNS.
pub(super) fn refusal(error: &LocateError) -> (u16, &'static str) {
    match error {
        LocateError::UnsupportedTransport(_) => (400, "Unsupported Transport In Request-URI"),
        LocateError::InsecureTransport(_) => (400, "SIPS Over An Insecure Transport"),
    }
}

/// A request from outside the overlay for one of its users: no
/// credentials for this peer's `realm`, and a From of another domain.
pub(super) fn from_outsider(request: &SipMessage, realm: &str) -> bool {
    let own_credentials = request.headers.iter().any(|h| {
        h.is("Proxy-Authorization")
            && crate::digest::Credentials::parse(&h.value()).is_some_and(|c| c.realm.eq_ignore_ascii_case(realm))
    });
    !own_credentials && from_another_domain(request, realm)
}

/// Whether the request's From names a domain other than `domain` (and is
/// not anonymous).
pub(super) fn from_another_domain(request: &SipMessage, domain: &str) -> bool {
    request
        .header("From")
        .and_then(|f| NameAddr::parse(&f).ok())
        .is_some_and(|f| {
            // A fully qualified name's trailing dot names the same domain.
            let host = f.uri.host.trim_end_matches('.');
            !host.eq_ignore_ascii_case(domain) && !host.eq_ignore_ascii_case("anonymous.invalid")
        })
}

impl Proxy {
    /// Starts locating `uri`'s servers (RFC 3263 §4) for a request of
    /// another domain.
    pub(super) fn outside_hops(&mut self, uri: &Uri) -> Result<OutsideHops, LocateError> {
        let random = self.keyed_hash(&[b"R", uri.host.as_bytes(), &self.next_id.to_be_bytes()]);
        Ok(OutsideHops {
            resolution: Resolution::new(uri, random)?,
            domain: uri
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            dns_failed: false,
            gave_up: false,
            tried: 0,
        })
    }

    /// The DNS answer (or `None` for a failed lookup) to a question of
    /// [`Output::Resolve`] for server transaction `lookup`.
    pub fn resolved(&mut self, now: u64, lookup: u64, query: &Query, answer: Option<Answer>) -> Vec<Output> {
        let Some(hops) = self
            .servers
            .get_mut(&lookup)
            .and_then(|s| s.open.as_mut())
            .and_then(|o| o.outside.as_mut())
        else {
            return self.take();
        };
        let answer = answer.unwrap_or_else(|| {
            hops.dns_failed = true;
            hops.gave_up |= !matches!(query, Query::Address(_));
            match query {
                Query::Naptr(_) => Answer::Naptr(Vec::new()),
                Query::Srv(_) => Answer::Srv(Vec::new()),
                Query::Address(_) => Answer::Address(Vec::new()),
            }
        });
        hops.resolution.answered(query, answer);
        self.next_outside_hop(now, lookup);
        self.take()
    }

    /// §4.3: sends the request to the next hop there is, asks the DNS
    /// what it must to find one, or answers when none is left.
    pub(super) fn next_outside_hop(&mut self, now: u64, server_id: u64) {
        let Some(server) = self.servers.get_mut(&server_id) else {
            return;
        };
        let Some(hops) = server.open.as_mut().and_then(|o| o.outside.as_mut()) else {
            return;
        };
        let tls = self.interworking.tls;
        let next = loop {
            if hops.tried >= MAX_OUTSIDE_HOPS {
                break None;
            }
            match hops.resolution.next_destination() {
                Some(d) if d.transport == Transport::Tls && !tls => continue,
                other => break other,
            }
        };
        if let Some(destination) = next {
            hops.tried += 1;
            let domain = (destination.transport == Transport::Tls).then(|| hops.domain.clone());
            server.state = ServerState::Proceeding;
            server.forget_at = now + TIMER_C_MS + TRANSACTION_TIMEOUT_MS;
            let target = Target {
                request_uri: None,
                flow: Flow {
                    transport: destination.transport,
                    remote: destination.address,
                },
                side: Side::Phones,
                user: None,
            };
            // RFC 3261 §16.6 step 4: a REGISTER starts no dialog.
            let record_route = server.request().is_some_and(|r| r.method() != Some("REGISTER"));
            if let Some(domain) = domain {
                self.out.push(Output::TlsDomain {
                    remote: destination.address,
                    domain,
                });
            }
            self.schedule(super::TimerRef::Server(server_id));
            return self.forward(now, server_id, vec![target], record_route);
        }
        // Questions are asked only when no hop is left to try: a call that
        // its first server takes costs no more DNS.
        let questions: Vec<Query> = std::iter::from_fn(|| hops.resolution.next_query()).collect();
        let more = !hops.resolution.is_exhausted() && !hops.gave_up && hops.tried < MAX_OUTSIDE_HOPS;
        if more {
            // Waiting for the DNS: a lookup that never ends times out
            // like the overlay's (408).
            if server.state != ServerState::Locating {
                server.state = ServerState::Locating;
                server.forget_at = now + TRANSACTION_TIMEOUT_MS;
                self.schedule(super::TimerRef::Server(server_id));
            }
            for query in questions {
                self.out.push(Output::Resolve {
                    lookup: server_id,
                    query,
                });
            }
            return;
        }
        let (tried, dns_failed) = (hops.tried, hops.dns_failed);
        server.state = ServerState::Proceeding;
        let best = server.open.as_mut().and_then(|o| o.best.take());
        match best {
            Some(best) => self.send_best(now, server_id, best),
            None if tried == 0 && dns_failed => self.answer_with(
                now,
                server_id,
                503,
                "DNS Lookup Failed",
                Some(super::OVERLOAD_RETRY_AFTER_S),
            ),
            None if tried == 0 => self.answer(now, server_id, 404, "Domain Has No SIP Server"),
            None => self.answer(now, server_id, 480, "Temporarily Unavailable"),
        }
    }
}
