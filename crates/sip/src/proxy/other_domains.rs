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
//! - **Through a proxy peer** (decision 0036): a peer that does not reach
//!   other domains itself sends its users' requests for them over the
//!   overlay to a proxy peer the configuration lists
//!   ([`Output::LocateProxyPeers`]), one at a time in the configuration's
//!   order, moving on as it would between another domain's servers. The
//!   proxy peer takes such requests from other peers (their TLS
//!   certificate vouches for them) and sends them out.

use super::{Location, Output, Proxy, ServerState, Side, Target, TIMER_C_MS, TRANSACTION_TIMEOUT_MS};
use crate::headers::NameAddr;
use crate::message::SipMessage;
use crate::registrar::{Flow, Transport};
use crate::server_location::{Answer, Destination, LocateError, Query, Resolution};
use crate::uri::Uri;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

/// What this peer does for SIP domains other than the overlay's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interworking {
    /// Whose requests for other domains this peer sends where.
    pub reach: Reach,
    /// Requests sent out go over TLS where their DNS says so, or for a
    /// `sips:` URI (RFC 3261 §26.2; RFC 5922: the driver checks that the
    /// server's certificate names the domain, from [`Output::TlsDomain`]).
    pub tls: bool,
    /// Which users requests from other domains may reach.
    pub outsiders: Outsiders,
}

/// How this peer reaches SIP domains other than the overlay's (decisions
/// 0034, 0036).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reach {
    /// It does not: its users' requests for them are refused (403).
    #[default]
    Nowhere,
    /// It sends its own users' requests there.
    Direct,
    /// It sends other peers' users' requests there too: a proxy peer
    /// the configuration lists.
    ForPeers,
    /// It sends its users' requests to the overlay's proxy peers.
    ThroughProxyPeers,
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

/// As [`Outsiders::parse`] reads it.
impl std::fmt::Display for Outsiders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outsiders::Nobody => f.write_str("none"),
            Outsiders::Everyone => f.write_str("all"),
            Outsiders::Users(users) => {
                let users: Vec<&str> = users.iter().map(String::as_str).collect();
                f.write_str(&users.join(","))
            }
        }
    }
}

/// How long a next hop toward another domain may stay silent (not even a
/// 100 Trying) before the next one is tried (RFC 3263 §4.3 names a
/// timeout; Timer B's 32 s would outlast the caller's patience, and a
/// phone's REGISTER gives up at its own Timer F). Only INVITE and
/// REGISTER: a server answers an INVITE with 100 within 200 ms (RFC 3261
/// §17.2.1, §16.2) and a REGISTER itself, whereas other requests may
/// rightly wait on a slow callee downstream, and trying a second server
/// then would deliver them twice. Kamailio operators shorten `fr_timer`
/// (30 s by default) for the same reason.
pub const SILENT_HOP_MS: u64 = 5_000;

/// Next hops a request for another domain tries at most: a DNS answer
/// can list hundreds of servers, and each try may take 64·T1.
pub const MAX_OUTSIDE_HOPS: usize = 8;

/// The next hops of a request for another domain, one at a time.
pub(super) struct OutsideHops {
    source: HopSource,
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

/// Where the next hops toward another domain come from.
enum HopSource {
    /// Its servers, by RFC 3263.
    Dns(Resolution),
    /// The overlay's proxy peers that answered, in the configuration's
    /// order; `None` until the overlay has answered.
    ProxyPeers(Option<VecDeque<SocketAddr>>),
}

impl OutsideHops {
    /// The next hop to try and the side it is on; `None` when none is
    /// known now (more may come from the DNS).
    fn next_hop(&mut self, tls: bool) -> Option<(Destination, Side)> {
        match &mut self.source {
            HopSource::Dns(resolution) => loop {
                match resolution.next_destination() {
                    Some(d) if d.transport == Transport::Tls && !tls => continue,
                    other => break other.map(|d| (d, Side::Phones)),
                }
            },
            // Peers speak SIP to each other over TLS (decision 0027).
            HopSource::ProxyPeers(peers) => peers.as_mut()?.pop_front().map(|address| {
                let hop = Destination {
                    transport: Transport::Tls,
                    address,
                };
                (hop, Side::Overlay)
            }),
        }
    }

    pub(super) fn through_proxy_peers(&self) -> bool {
        matches!(self.source, HopSource::ProxyPeers(_))
    }
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
    /// Through a proxy peer ([`Reach::ThroughProxyPeers`]), the overlay is
    /// asked for the proxy peers instead.
    pub(super) fn outside_hops(&mut self, uri: &Uri) -> Result<OutsideHops, LocateError> {
        let source = if self.interworking.reach != Reach::ThroughProxyPeers {
            let random = self.keyed_hash(&[b"R", uri.host.as_bytes(), &self.next_id.to_be_bytes()]);
            HopSource::Dns(Resolution::new(uri, random)?)
        } else {
            HopSource::ProxyPeers(None)
        };
        Ok(OutsideHops {
            source,
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
        let HopSource::Dns(resolution) = &mut hops.source else {
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
        resolution.answered(query, answer);
        self.next_outside_hop(now, lookup);
        self.take()
    }

    /// §4.3: sends the request to the next hop there is, asks the DNS
    /// what it must to find one, or answers when none is left.
    pub(super) fn next_outside_hop(&mut self, now: u64, server_id: u64) {
        let Some(server) = self.servers.get_mut(&server_id) else {
            return;
        };
        let asked_overlay = server.open.as_ref().is_some_and(|o| o.lookup.is_some());
        let Some(hops) = server.open.as_mut().and_then(|o| o.outside.as_mut()) else {
            return;
        };
        let tls = self.interworking.tls;
        let next = if hops.tried < MAX_OUTSIDE_HOPS {
            hops.next_hop(tls)
        } else {
            None
        };
        if let Some((destination, side)) = next {
            hops.tried += 1;
            let domain = (destination.transport == Transport::Tls && side == Side::Phones).then(|| hops.domain.clone());
            server.state = ServerState::Proceeding;
            server.forget_at = now + TIMER_C_MS + TRANSACTION_TIMEOUT_MS;
            let target = Target {
                request_uri: None,
                flow: Flow {
                    transport: destination.transport,
                    remote: destination.address,
                },
                side,
                user: None,
            };
            // RFC 3261 §16.6 step 4: a REGISTER starts no dialog.
            let record_route = server.request().is_some_and(|r| r.method() != Some("REGISTER"));
            let watched = server
                .request()
                .is_some_and(|r| matches!(r.method(), Some("INVITE" | "REGISTER")));
            if let Some(domain) = domain {
                self.out.push(Output::TlsDomain {
                    remote: destination.address,
                    domain,
                });
            }
            self.schedule(super::TimerRef::Server(server_id));
            self.forward(now, server_id, vec![target], record_route);
            let branch = self
                .servers
                .get(&server_id)
                .and_then(|s| s.open.as_ref())
                .and_then(|o| o.branches.last().copied());
            if let Some(branch) = branch.filter(|_| watched) {
                if let Some(client) = self.clients.get_mut(&branch) {
                    client.passed_over_at = Some(now + SILENT_HOP_MS);
                }
                self.schedule(super::TimerRef::Client(branch));
            }
            return;
        }
        // Questions are asked only when no hop is left to try: a call that
        // its first server takes costs no more DNS.
        let (questions, exhausted) = match &mut hops.source {
            HopSource::Dns(resolution) => (
                std::iter::from_fn(|| resolution.next_query()).collect(),
                resolution.is_exhausted(),
            ),
            HopSource::ProxyPeers(peers) => (Vec::new(), peers.is_some()),
        };
        let more = !exhausted && !hops.gave_up && hops.tried < MAX_OUTSIDE_HOPS;
        if more {
            // Waiting for the DNS or the overlay: a lookup that never ends
            // times out like the overlay's (408).
            let ask_overlay = !asked_overlay && matches!(hops.source, HopSource::ProxyPeers(None));
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
            if ask_overlay {
                // Answered through [`Proxy::located`], as a user's lookup is.
                let lookup = self.id();
                self.lookups.insert(lookup, server_id);
                if let Some(open) = self.servers.get_mut(&server_id).and_then(|s| s.open.as_mut()) {
                    open.lookup = Some(lookup);
                }
                self.out.push(Output::LocateProxyPeers { lookup });
            }
            return;
        }
        let (tried, dns_failed, proxy_peers) = (hops.tried, hops.dns_failed, hops.through_proxy_peers());
        server.state = ServerState::Proceeding;
        let best = server.open.as_mut().and_then(|o| o.best.take());
        match best {
            Some(best) => self.send_best(now, server_id, best),
            None if tried == 0 && proxy_peers => self.answer_with(
                now,
                server_id,
                503,
                "No Proxy Peer Reachable",
                Some(super::OVERLOAD_RETRY_AFTER_S),
            ),
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

impl Proxy {
    /// The overlay's answer to [`Output::LocateProxyPeers`]: the proxy
    /// peers that answered become the next hops, in the order given.
    pub(super) fn proxy_peers_located(&mut self, now: u64, server_id: u64, location: Location) {
        let Some(hops) = self
            .servers
            .get_mut(&server_id)
            .and_then(|s| s.open.as_mut())
            .and_then(|o| o.outside.as_mut())
        else {
            return;
        };
        let peers = match location {
            Location::Found { peers, .. } => peers,
            _ => Vec::new(),
        };
        hops.source = HopSource::ProxyPeers(Some(peers.into()));
        self.next_outside_hop(now, server_id);
    }
}
