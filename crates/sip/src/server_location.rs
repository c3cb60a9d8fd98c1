//! RFC 3263 "Locating SIP Servers", client side, sans-IO: which DNS
//! questions to ask for a SIP URI (NAPTR, then SRV, then A/AAAA), and the
//! ordered list of (transport, address) to try, the next one after each
//! failure (§4.3: a timeout, a transport error or a 503). A driver asks
//! the questions (through a DNS library) and feeds the answers back; the
//! randomness that orders SRV records of equal priority (RFC 2782) is an
//! input too, so a test replays any run.
//!
//! Choices where the RFC leaves one (decision 0033):
//! - Transports this node supports: UDP, TCP and TLS over TCP. NAPTR
//!   services and SRV names for others (SCTP, WebSocket) are skipped.
//! - Without NAPTR records, SRV names are tried in the order TLS (for a
//!   SIPS URI only), TCP, UDP (§4.1 leaves the order to the client; TCP
//!   first because requests may outgrow a datagram).
//! - A and AAAA are one question ([`Query::Address`]); the driver returns
//!   both kinds, IPv6 first if it prefers them.

use crate::registrar::Transport;
use crate::uri::Uri;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

/// The default SIP ports (RFC 3261 §19.1.2).
pub const SIP_PORT: u16 = 5060;
pub const SIPS_PORT: u16 = 5061;

/// A DNS question the driver must answer with [`Resolution::answered`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    Naptr(String),
    Srv(String),
    /// A and AAAA records of a name.
    Address(String),
}

/// A NAPTR record (RFC 3403) as far as SIP reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    /// `s` for a replacement that names SRV records.
    pub flags: String,
    /// `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`… (the IANA table of RFC 3263 §9).
    pub services: String,
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// What the DNS said to a [`Query`]; an empty answer stands for NXDOMAIN,
/// no data, or a failed lookup alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Naptr(Vec<Naptr>),
    Srv(Vec<Srv>),
    Address(Vec<IpAddr>),
}

/// One next hop to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub transport: Transport,
    pub address: SocketAddr,
}

/// Why a URI cannot be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("the URI's transport {0} is not one this node speaks (udp, tcp, tls)")]
    UnsupportedTransport(String),
    #[error("a SIPS URI cannot be reached over {0}")]
    InsecureTransport(&'static str),
}

/// Where a resolution is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Asked for the domain's NAPTR records.
    Naptr,
    /// Asking the SRV names in `names` in turn, each with its transport.
    Srv {
        names: VecDeque<(String, Transport)>,
    },
    /// Asking the addresses of SRV targets in turn.
    Targets,
    /// Asked for the host's addresses (no SRV): `port`, `transport`.
    Host {
        port: u16,
        transport: Transport,
    },
    Done,
}

/// The resolution of one URI into next hops (RFC 3263 §4).
#[derive(Debug)]
pub struct Resolution {
    host: String,
    secure: bool,
    /// The URI's `transport` parameter, if any.
    transport: Option<Transport>,
    stage: Stage,
    /// Questions not asked yet.
    questions: VecDeque<Query>,
    /// SRV targets whose addresses are still to be found, in order.
    targets: VecDeque<(Srv, Transport)>,
    /// Next hops found and not yet tried, in order.
    found: VecDeque<Destination>,
    /// Draws for the SRV weights (RFC 2782).
    random: u64,
}

impl Resolution {
    /// Starts resolving `uri` (§4.1, §4.2). A numeric host needs no DNS.
    pub fn new(uri: &Uri, random: u64) -> Result<Resolution, LocateError> {
        let secure = uri.scheme == "sips";
        let transport = match uri.param("transport").flatten() {
            None => None,
            Some(t) => Some(match t.to_ascii_lowercase().as_str() {
                "udp" => Transport::Udp,
                "tcp" if secure => Transport::Tls,
                "tcp" => Transport::Tcp,
                "tls" => Transport::Tls,
                other => return Err(LocateError::UnsupportedTransport(other.to_string())),
            }),
        };
        if secure && transport == Some(Transport::Udp) {
            return Err(LocateError::InsecureTransport("UDP"));
        }
        let host = uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let default_transport = transport.unwrap_or(if secure { Transport::Tls } else { Transport::Udp });
        let default_port = if default_transport == Transport::Tls {
            SIPS_PORT
        } else {
            SIP_PORT
        };
        let mut r = Resolution {
            host: host.clone(),
            secure,
            transport,
            stage: Stage::Done,
            questions: VecDeque::new(),
            targets: VecDeque::new(),
            found: VecDeque::new(),
            random,
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            // §4.1, §4.2: a numeric IP address: no DNS at all.
            r.found.push_back(Destination {
                transport: default_transport,
                address: SocketAddr::new(ip, uri.port.unwrap_or(default_port)),
            });
        } else if let Some(port) = uri.port {
            // §4.2: a port but no numeric address: A/AAAA only.
            r.ask_host(port, default_transport);
        } else if let Some(t) = transport {
            // §4.1: the transport is given: its SRV records.
            r.stage = Stage::Srv {
                names: VecDeque::from([(srv_name(secure, t, &host), t)]),
            };
            r.ask_next_srv();
        } else {
            r.stage = Stage::Naptr;
            r.questions.push_back(Query::Naptr(host));
        }
        Ok(r)
    }

    /// The next DNS question to ask, if any is due.
    pub fn next_query(&mut self) -> Option<Query> {
        self.questions.pop_front()
    }

    /// The DNS answered `query`.
    pub fn answered(&mut self, query: &Query, answer: Answer) {
        match (self.stage.clone(), query, answer) {
            (Stage::Naptr, Query::Naptr(_), Answer::Naptr(records)) => self.naptr(records),
            (Stage::Srv { .. }, Query::Srv(_), Answer::Srv(records)) => self.srv(records),
            (Stage::Targets, Query::Address(_), Answer::Address(ips)) => {
                if let Some((srv, transport)) = self.targets.pop_front() {
                    for ip in ips {
                        self.found.push_back(Destination {
                            transport,
                            address: SocketAddr::new(ip, srv.port),
                        });
                    }
                }
                self.ask_next_target();
            }
            (Stage::Host { port, transport }, Query::Address(_), Answer::Address(ips)) => {
                for ip in ips {
                    self.found.push_back(Destination {
                        transport,
                        address: SocketAddr::new(ip, port),
                    });
                }
                self.stage = Stage::Done;
            }
            // An answer to another question than the one asked: ignored.
            _ => {}
        }
    }

    /// The next hop to try: the first, or the one after a failure (§4.3).
    /// `None` while DNS answers are awaited, or when every hop was tried
    /// ([`is_exhausted`](Self::is_exhausted)).
    pub fn next_destination(&mut self) -> Option<Destination> {
        self.found.pop_front()
    }

    /// Every question answered and every hop handed out.
    pub fn is_exhausted(&self) -> bool {
        self.found.is_empty() && self.questions.is_empty() && self.stage == Stage::Done
    }

    /// §4.1: NAPTR records for the transports this node speaks, by order
    /// and preference; the first one's SRV name is asked. With none, the
    /// SRV names of each transport are asked in turn.
    fn naptr(&mut self, mut records: Vec<Naptr>) {
        records.retain(|r| r.flags.eq_ignore_ascii_case("s"));
        records.sort_by_key(|r| (r.order, r.preference));
        let usable: Vec<(String, Transport)> = records
            .into_iter()
            .filter_map(|r| {
                let transport = match r.services.to_ascii_uppercase().as_str() {
                    "SIPS+D2T" => Transport::Tls,
                    "SIP+D2T" if !self.secure => Transport::Tcp,
                    "SIP+D2U" if !self.secure => Transport::Udp,
                    _ => return None,
                };
                Some((r.replacement.trim_end_matches('.').to_ascii_lowercase(), transport))
            })
            .collect();
        // §4.1: the first supported record's SRV name; the next ones if
        // its SRV records are missing (and with no usable NAPTR at all,
        // the SRV names of each transport, as with no NAPTR records).
        let names: VecDeque<(String, Transport)> = match usable.is_empty() {
            false => usable.into(),
            true => {
                let mut names = VecDeque::new();
                if self.secure {
                    names.push_back((srv_name(true, Transport::Tls, &self.host), Transport::Tls));
                } else {
                    names.push_back((srv_name(false, Transport::Tcp, &self.host), Transport::Tcp));
                    names.push_back((srv_name(false, Transport::Udp, &self.host), Transport::Udp));
                }
                names
            }
        };
        self.stage = Stage::Srv { names };
        self.ask_next_srv();
    }

    /// §4.2 / RFC 2782: the records ordered by priority, and within one
    /// priority by weighted draws; their targets' addresses are asked in
    /// that order. No records: the next SRV name, or the host itself.
    fn srv(&mut self, records: Vec<Srv>) {
        let Stage::Srv { names } = &mut self.stage else {
            return;
        };
        let Some((_, transport)) = names.pop_front() else {
            return;
        };
        // RFC 2782: a single record with target "." means no service.
        let records: Vec<Srv> = records.into_iter().filter(|r| r.target != ".").collect();
        if records.is_empty() {
            return self.ask_next_srv();
        }
        let ordered = rfc2782_order(records, &mut self.random);
        self.targets = ordered.into_iter().map(|r| (r, transport)).collect();
        self.stage = Stage::Targets;
        self.ask_next_target();
    }

    fn ask_next_srv(&mut self) {
        let next = match &self.stage {
            Stage::Srv { names } => names.front().map(|(name, _)| name.clone()),
            _ => None,
        };
        match next {
            Some(name) => self.questions.push_back(Query::Srv(name)),
            None => {
                // §4.2: no SRV records: the host's addresses, default port.
                let transport = self
                    .transport
                    .unwrap_or(if self.secure { Transport::Tls } else { Transport::Udp });
                let port = if transport == Transport::Tls {
                    SIPS_PORT
                } else {
                    SIP_PORT
                };
                self.ask_host(port, transport);
            }
        }
    }

    fn ask_next_target(&mut self) {
        match self.targets.front() {
            Some((srv, _)) => self
                .questions
                .push_back(Query::Address(srv.target.trim_end_matches('.').to_ascii_lowercase())),
            None => self.stage = Stage::Done,
        }
    }

    fn ask_host(&mut self, port: u16, transport: Transport) {
        self.stage = Stage::Host { port, transport };
        self.questions.push_back(Query::Address(self.host.clone()));
    }
}

/// `_sips._tcp.host`, `_sip._tcp.host` or `_sip._udp.host` (§4.1).
pub fn srv_name(secure: bool, transport: Transport, host: &str) -> String {
    match (secure, transport) {
        (true, _) | (false, Transport::Tls) => format!("_sips._tcp.{host}"),
        (false, Transport::Tcp) => format!("_sip._tcp.{host}"),
        (false, Transport::Udp) => format!("_sip._udp.{host}"),
    }
}

/// RFC 2782's ordering: lowest priority first; within a priority, records
/// drawn one by one with a probability proportional to their weight
/// (records of weight 0 first in the list, so they have a small chance).
fn rfc2782_order(mut records: Vec<Srv>, random: &mut u64) -> Vec<Srv> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records.iter().take_while(|r| r.priority == priority).count();
        let mut group: Vec<Srv> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let draw = next_random(random) % (total + 1);
            let mut running = 0;
            let pick = group
                .iter()
                .position(|r| {
                    running += u64::from(r.weight);
                    running >= draw
                })
                .unwrap_or(0);
            out.push(group.remove(pick));
        }
    }
    out
}

/// splitmix64: enough to spread load over SRV targets, seeded by the
/// driver.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
