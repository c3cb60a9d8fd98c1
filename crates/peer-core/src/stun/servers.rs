//! RFC 6940 §6.5.1.4, Collecting STUN Servers: the peers this one is
//! linked to serve as its STUN servers. It asks each (up to
//! [`MAX_SERVERS`]) for the address it sees this peer's overlay UDP port
//! as, groups them by that reflexive address, and keeps one per group for
//! gathering candidates (ICE, RFC 8445 §5.1.1.2). A peer whose link is
//! lost is no longer used (§6.5.1.4's MUST).
//!
//! Choices the RFC leaves open: a peer's STUN server is on its overlay
//! listen port over UDP (every peer runs one there, [`super::server`]);
//! requests are retransmitted after 500 ms and 1.5 s (RFC 8489 §6.2.1's
//! RTO, three tries rather than seven: a linked peer that does not answer
//! within 3.5 s is slow or filtered, and is asked again in a minute); a
//! mapping is asked for again every [`REFRESH_MS`], so a NAT that
//! rebooted is noticed.

use super::message::{binding_request, Class, Message};
use reload_wire::NodeId;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// Peers asked at most: enough to tell how a NAT maps (two servers on
/// different addresses) and to find the groups of a nested NAT.
pub const MAX_SERVERS: usize = 8;
/// RFC 8489 §6.2.1's initial RTO.
pub const RTO_MS: u64 = 500;
/// Requests sent before a server counts as not answering.
pub const TRIES: u32 = 3;
/// How long an answered mapping is trusted before it is asked again.
pub const REFRESH_MS: u64 = 10 * 60_000;
/// How long a server that did not answer rests before it is asked again.
pub const RETRY_MS: u64 = 60_000;

/// How this peer's NAT (if any) maps its UDP port, from what the servers
/// saw (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingBehaviour {
    /// Fewer than two servers on different addresses answered.
    Unknown,
    /// Every server saw the address the peer listens on: no NAT.
    NoNat,
    /// Every server saw one address other than the listening one:
    /// endpoint-independent mapping ("cone").
    EndpointIndependent,
    /// Servers saw different addresses: the mapping depends on the
    /// destination ("symmetric"), or the peer is behind nested NATs.
    DestinationDependent,
}

impl MappingBehaviour {
    pub fn label(self) -> &'static str {
        match self {
            MappingBehaviour::Unknown => "unknown",
            MappingBehaviour::NoNat => "no NAT",
            MappingBehaviour::EndpointIndependent => "endpoint-independent",
            MappingBehaviour::DestinationDependent => "destination-dependent",
        }
    }
}

/// What one server told, for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub peer: NodeId,
    /// Where its STUN server is.
    pub server: SocketAddr,
    /// The address it saw this peer's requests come from.
    pub reflexive: SocketAddr,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Asking {
        transaction_id: [u8; 12],
        tries: u32,
        next_at: u64,
    },
    Mapped {
        reflexive: SocketAddr,
        refresh_at: u64,
    },
    Unanswered {
        retry_at: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Server {
    address: SocketAddr,
    state: State,
}

/// The linked peers used as STUN servers.
#[derive(Debug, Default)]
pub struct StunServers {
    servers: BTreeMap<NodeId, Server>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl StunServers {
    /// Makes the set the linked peers (their listen addresses): those no
    /// longer linked go, new ones are asked while there is room.
    /// `transaction_id` draws a new random transaction id (RFC 8489 §5).
    pub fn sync(
        &mut self,
        now: u64,
        linked: impl IntoIterator<Item = (NodeId, SocketAddr)>,
        transaction_id: &mut dyn FnMut() -> [u8; 12],
    ) {
        let linked: BTreeMap<NodeId, SocketAddr> = linked
            .into_iter()
            .map(|(peer, address)| (peer, super::server::canonical(address)))
            .collect();
        self.servers
            .retain(|peer, server| linked.get(peer) == Some(&server.address));
        for (peer, address) in linked.iter() {
            if self.servers.len() >= MAX_SERVERS {
                break;
            }
            if self.servers.contains_key(peer) {
                continue;
            }
            let mut server = Server {
                address: *address,
                state: State::Unanswered { retry_at: now },
            };
            self.ask(now, &mut server, transaction_id());
            self.servers.insert(*peer, server);
        }
    }

    fn ask(&mut self, now: u64, server: &mut Server, transaction_id: [u8; 12]) {
        server.state = State::Asking {
            transaction_id,
            tries: 1,
            next_at: now + RTO_MS,
        };
        self.transmits
            .push_back((server.address, binding_request(transaction_id)));
    }

    /// A Binding response arrived from `from` (the server has decided it
    /// is one). Ignored unless it answers the request in flight to that
    /// server.
    pub fn on_response(&mut self, now: u64, datagram: &[u8], from: SocketAddr) {
        let from = super::server::canonical(from);
        let Ok(message) = Message::decode(datagram) else {
            return;
        };
        let Some(server) = self.servers.values_mut().find(|s| {
            s.address == from
                && matches!(s.state, State::Asking { transaction_id, .. } if transaction_id == message.transaction_id)
        }) else {
            return;
        };
        server.state = match (message.class, message.xor_mapped_address()) {
            (Class::Success, Ok(reflexive)) => State::Mapped {
                reflexive,
                refresh_at: now + REFRESH_MS,
            },
            _ => State::Unanswered {
                retry_at: now + RETRY_MS,
            },
        };
    }

    /// A Binding request to send from the overlay UDP port.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.servers
            .values()
            .map(|s| match s.state {
                State::Asking { next_at, .. } => next_at,
                State::Mapped { refresh_at, .. } => refresh_at,
                State::Unanswered { retry_at } => retry_at,
            })
            .min()
    }

    /// Retransmits, gives up on silent servers, asks again when due.
    pub fn handle_timeout(&mut self, now: u64, transaction_id: &mut dyn FnMut() -> [u8; 12]) {
        let peers: Vec<NodeId> = self.servers.keys().copied().collect();
        for peer in peers {
            let Some(mut server) = self.servers.get(&peer).copied() else {
                continue;
            };
            match server.state {
                State::Asking {
                    transaction_id: id,
                    tries,
                    next_at,
                } if next_at <= now => {
                    if tries >= TRIES {
                        server.state = State::Unanswered {
                            retry_at: now + RETRY_MS,
                        };
                    } else {
                        server.state = State::Asking {
                            transaction_id: id,
                            tries: tries + 1,
                            next_at: now + (RTO_MS << tries),
                        };
                        self.transmits.push_back((server.address, binding_request(id)));
                    }
                }
                State::Mapped { refresh_at: at, .. } | State::Unanswered { retry_at: at } if at <= now => {
                    self.ask(now, &mut server, transaction_id());
                }
                _ => continue,
            }
            self.servers.insert(peer, server);
        }
    }

    /// What each server that answered saw.
    pub fn mappings(&self) -> impl Iterator<Item = Mapping> + '_ {
        self.servers.iter().filter_map(|(peer, s)| match s.state {
            State::Mapped { reflexive, .. } => Some(Mapping {
                peer: *peer,
                server: s.address,
                reflexive,
            }),
            _ => None,
        })
    }

    /// §6.5.1.4: one server per reflexive address seen, for gathering.
    pub fn one_per_group(&self) -> Vec<Mapping> {
        let mut chosen: Vec<Mapping> = Vec::new();
        for m in self.mappings() {
            if !chosen.iter().any(|c| c.reflexive == m.reflexive) {
                chosen.push(m);
            }
        }
        chosen
    }

    /// How the NAT in front of `listen` (the overlay port) maps, judged
    /// from servers on at least two addresses.
    pub fn mapping_behaviour(&self, listen: SocketAddr) -> MappingBehaviour {
        let mappings: Vec<Mapping> = self.mappings().collect();
        let server_ips = {
            let mut ips: Vec<_> = mappings.iter().map(|m| m.server.ip()).collect();
            ips.sort();
            ips.dedup();
            ips.len()
        };
        if mappings.iter().all(|m| m.reflexive == listen) && !mappings.is_empty() {
            return MappingBehaviour::NoNat;
        }
        if mappings.iter().any(|m| m.reflexive != mappings[0].reflexive) {
            return MappingBehaviour::DestinationDependent;
        }
        if server_ips >= 2 {
            MappingBehaviour::EndpointIndependent
        } else {
            MappingBehaviour::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::message::binding_success;

    fn node(n: u8) -> NodeId {
        NodeId::from_u128(u128::from(n))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Transaction ids 1, 2, 3… in the last byte.
    fn ids() -> impl FnMut() -> [u8; 12] {
        let mut n = 0u8;
        move || {
            n += 1;
            let mut id = [0; 12];
            id[11] = n;
            id
        }
    }

    /// Answers every request queued, as a server that sees the peer at
    /// `seen` would.
    fn answer_all(servers: &mut StunServers, now: u64, seen: impl Fn(SocketAddr) -> SocketAddr) -> usize {
        let mut answered = 0;
        while let Some((to, request)) = servers.poll_transmit() {
            let id = Message::decode(&request).unwrap().transaction_id;
            servers.on_response(now, &binding_success(id, seen(to)), to);
            answered += 1;
        }
        answered
    }

    const LISTEN: &str = "10.1.0.2:6084";

    #[test]
    fn servers_on_two_addresses_that_see_one_address_mean_an_endpoint_independent_nat() {
        let mut servers = StunServers::default();
        let mut ids = ids();
        let linked = [(node(1), addr("203.0.113.1:6084")), (node(2), addr("203.0.113.2:6084"))];
        servers.sync(0, linked, &mut ids);
        assert_eq!(servers.mapping_behaviour(addr(LISTEN)), MappingBehaviour::Unknown);
        assert_eq!(answer_all(&mut servers, 10, |_| addr("203.0.113.101:6084")), 2);
        assert_eq!(
            servers.mapping_behaviour(addr(LISTEN)),
            MappingBehaviour::EndpointIndependent
        );
        assert_eq!(servers.one_per_group().len(), 1);
    }

    #[test]
    fn different_reflexive_addresses_mean_a_destination_dependent_mapping_and_two_groups() {
        let mut servers = StunServers::default();
        let mut ids = ids();
        let linked = [(node(1), addr("203.0.113.1:6084")), (node(2), addr("203.0.113.2:6084"))];
        servers.sync(0, linked, &mut ids);
        // A new public port for each destination.
        answer_all(&mut servers, 10, |to| {
            let port = if to.ip() == addr("203.0.113.1:0").ip() {
                20_001
            } else {
                20_002
            };
            SocketAddr::new(addr("203.0.113.101:0").ip(), port)
        });
        assert_eq!(
            servers.mapping_behaviour(addr(LISTEN)),
            MappingBehaviour::DestinationDependent
        );
        assert_eq!(servers.one_per_group().len(), 2);
    }

    #[test]
    fn servers_that_see_the_listen_address_mean_no_nat() {
        let mut servers = StunServers::default();
        let mut ids = ids();
        servers.sync(0, [(node(1), addr("203.0.113.1:6084"))], &mut ids);
        answer_all(&mut servers, 10, |_| addr(LISTEN));
        assert_eq!(servers.mapping_behaviour(addr(LISTEN)), MappingBehaviour::NoNat);
    }

    /// RFC 8489 §6.2.1: retransmitted after RTO, then 2·RTO; after three
    /// tries the server rests, and is asked again with a new transaction.
    #[test]
    fn a_silent_server_gets_three_tries_then_rests() {
        let mut servers = StunServers::default();
        let mut ids = ids();
        servers.sync(0, [(node(1), addr("203.0.113.1:6084"))], &mut ids);
        let first = servers.poll_transmit().unwrap().1;
        let mut sent = vec![0];
        while let Some(now) = servers.poll_timeout().filter(|at| *at <= 10_000) {
            servers.handle_timeout(now, &mut ids);
            if let Some((_, again)) = servers.poll_transmit() {
                assert_eq!(again, first, "a retransmission is the same request");
                sent.push(now);
            }
        }
        assert_eq!(sent, [0, 500, 1500]);
        assert_eq!(servers.poll_timeout(), Some(3_500 + RETRY_MS));
        servers.handle_timeout(3_500 + RETRY_MS, &mut ids);
        let next = servers.poll_transmit().unwrap().1;
        let id = |bytes: &[u8]| Message::decode(bytes).unwrap().transaction_id;
        assert_ne!(id(&next), id(&first));
    }

    /// A response from another address, or with another transaction id,
    /// is not taken (an off-path attacker must guess both).
    #[test]
    fn only_the_answer_to_the_request_in_flight_counts() {
        let mut servers = StunServers::default();
        let mut ids = ids();
        let server = addr("203.0.113.1:6084");
        servers.sync(0, [(node(1), server)], &mut ids);
        let request = servers.poll_transmit().unwrap().1;
        let id = Message::decode(&request).unwrap().transaction_id;
        let forged = addr("192.0.2.66:1");
        servers.on_response(1, &binding_success(id, forged), addr("203.0.113.9:6084"));
        servers.on_response(1, &binding_success([9; 12], forged), server);
        assert_eq!(servers.mappings().count(), 0);
        servers.on_response(1, &binding_success(id, addr("203.0.113.101:4000")), server);
        assert_eq!(
            servers.mappings().next().map(|m| m.reflexive),
            Some(addr("203.0.113.101:4000"))
        );
    }

    /// §6.5.1.4: a peer no longer linked is no longer a server; another
    /// linked peer takes its place; never more than [`MAX_SERVERS`].
    #[test]
    fn the_set_follows_the_links_and_stays_bounded() {
        let mut servers = StunServers::default();
        let mut ids = ids();
        let linked: Vec<_> = (1..=20)
            .map(|n| (node(n), SocketAddr::new([203, 0, 113, n].into(), 6084)))
            .collect();
        servers.sync(0, linked.clone(), &mut ids);
        assert_eq!(answer_all(&mut servers, 1, |_| addr("203.0.113.101:1")), MAX_SERVERS);
        servers.sync(2, linked[1..].to_vec(), &mut ids);
        assert!(servers.mappings().all(|m| m.peer != node(1)));
        assert_eq!(
            answer_all(&mut servers, 3, |_| addr("203.0.113.101:1")),
            1,
            "one newcomer asked"
        );
        assert_eq!(servers.mappings().count(), MAX_SERVERS);
    }
}
