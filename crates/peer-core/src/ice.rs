//! ICE for overlay links (RFC 6940 §6.5.1.3–§6.5.1.14, RFC 8445): one
//! agent per Attach exchange, run by the `is` crate (decision 0037) over
//! the peer's one UDP socket. This module turns the engine's
//! [`IceAttach`] into an agent, converts RELOAD's candidates, routes the
//! checks that arrive to the agent whose username they carry, and says
//! when a pair is nominated: the link layer then runs DTLS over it
//! (§6.5.1.13; the Attach requester is the DTLS server).
//!
//! The agent lives on with the link: §6.5.1.10.3 keeps it alive with STUN.
//!
//! Choices: regular nomination as `is` does it; an agent that has not
//! connected within [`CHECK_TIMEOUT_MS`] fails the link (RFC 8445 leaves
//! the time to the application; 10 s covers checks paced at 50 ms over a
//! few dozen pairs and the STUN retransmissions of a lossy path).

use overlay::{IceAttach, IceCredentials};
use reload_wire::link_management::overlay_link_type;
use reload_wire::{CandType, IceCandidate, IpAddressPort, NodeId};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An agent that has not connected by then fails its link.
pub const CHECK_TIMEOUT_MS: u64 = 10_000;
/// Agents checking or connected at once, at most (an Attach flood cannot
/// make more).
pub const MAX_AGENTS: usize = 512;
/// Remote candidates taken from one Attach: a peer has a host, a few
/// server-reflexive and relayed ones; more would only aim checks at
/// addresses of the sender's choosing.
pub const MAX_REMOTE_CANDIDATES: usize = 16;

/// A pair ICE nominated: the link layer's cue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nominated {
    pub peer: NodeId,
    /// Where to send the link's datagrams.
    pub remote: SocketAddr,
    /// §6.5.1.13: the Attach requester (the controlling agent) is the
    /// DTLS server.
    pub dtls_server: bool,
    /// The round trip of the successful check, the first RTT sample of
    /// Simple Reliability (§6.6.3.1).
    pub rtt_ms: Option<u64>,
}

/// What ICE asks of the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceOutput {
    /// Send a check (or its answer, or a keepalive) from the UDP socket.
    Datagram {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    Nominated(Nominated),
    /// No pair worked within [`CHECK_TIMEOUT_MS`].
    Failed {
        peer: NodeId,
    },
}

struct Agent {
    peer: NodeId,
    controlling: bool,
    local_ufrag: String,
    agent: is::IceAgent,
    started: u64,
    /// The agent's own next deadline (ms), cached: `is` asks `&mut` to
    /// tell it.
    next_at: Option<u64>,
    nominated: Option<SocketAddr>,
    reported: bool,
}

/// The agents of one peer.
pub struct IceLinks {
    /// Time zero of the agents' clock (`is` counts in `Instant`s).
    epoch: Instant,
    /// The UDP socket every agent's host candidate is.
    host: SocketAddr,
    agents: Vec<Agent>,
    outputs: VecDeque<IceOutput>,
}

impl IceLinks {
    pub fn new(host: SocketAddr) -> IceLinks {
        IceLinks {
            epoch: Instant::now(),
            host,
            agents: Vec::new(),
            outputs: VecDeque::new(),
        }
    }

    fn at(&self, now: u64) -> Instant {
        self.epoch + Duration::from_millis(now)
    }

    /// The candidates Attaches offer: the host candidate and one
    /// server-reflexive candidate per address the STUN servers saw
    /// (RFC 8445 §5.1.2 priorities: type preference 126 and 100, one
    /// component).
    pub fn local_candidates(&self, reflexive: impl IntoIterator<Item = SocketAddr>) -> Vec<IceCandidate> {
        let mut candidates = vec![candidate(self.host, CandType::Host, 126, b"1")];
        for (k, address) in reflexive.into_iter().filter(|a| *a != self.host).enumerate() {
            let base = CandType::Srflx {
                rel_addr_port: IpAddressPort::Ip(self.host),
            };
            let foundation = format!("s{k}");
            candidates.push(candidate(address, base, 100, foundation.as_bytes()));
        }
        candidates
    }

    /// Starts the checks of an Attach exchange, with `local` the
    /// candidates this node offered.
    pub fn start(&mut self, now: u64, attach: &IceAttach, local: &[IceCandidate]) {
        self.remove(&attach.peer, Some(attach.controlling));
        if self.agents.len() >= MAX_AGENTS {
            self.outputs.push_back(IceOutput::Failed { peer: attach.peer });
            return;
        }
        let (Some(local_creds), Some(remote_creds)) = (creds(&attach.local), creds(&attach.remote)) else {
            self.outputs.push_back(IceOutput::Failed { peer: attach.peer });
            return;
        };
        let local_ufrag = local_creds.ufrag.clone();
        let mut agent = is::IceAgent::new(local_creds);
        agent.set_controlling(attach.controlling);
        agent.set_remote_credentials(remote_creds);
        for c in local.iter().filter_map(|c| to_agent(c, self.host)) {
            agent.add_local_candidate(c);
        }
        let remote = attach.remote_candidates.iter().take(MAX_REMOTE_CANDIDATES);
        for c in remote.filter_map(|c| to_agent(c, self.host)) {
            agent.add_remote_candidate(c);
        }
        agent.handle_timeout(self.at(now));
        self.agents.push(Agent {
            peer: attach.peer,
            controlling: attach.controlling,
            local_ufrag,
            agent,
            started: now,
            next_at: None,
            nominated: None,
            reported: false,
        });
        self.collect(now);
    }

    /// A STUN datagram for an agent: true if one took it (a check whose
    /// USERNAME names its ufrag, or the answer to one of its checks).
    pub fn receive(&mut self, now: u64, datagram: &[u8], from: SocketAddr) -> bool {
        // Only a check naming one of our agents, or a response, reaches
        // the agents' parser (which logs what it does not like).
        let Ok(plain) = crate::stun::message::Message::decode(datagram) else {
            return false;
        };
        if plain.class == crate::stun::message::Class::Request {
            let username = plain
                .attribute(crate::stun::message::attribute::USERNAME)
                .unwrap_or_default();
            let ours = username.split(|b| *b == b':').next().unwrap_or_default();
            if !self.agents.iter().any(|a| a.local_ufrag.as_bytes() == ours) {
                return false;
            }
        }
        let Ok(message) = is::stun::StunMessage::parse(datagram) else {
            return false;
        };
        let at = self.at(now);
        let host = self.host;
        let Some(agent) = self.agents.iter_mut().find(|a| {
            // A request names "our ufrag:theirs" (RFC 8445 §7.2.2); a
            // response is matched by the agent's transactions.
            let ours = message
                .split_username()
                .is_some_and(|(local, _)| local == a.local_ufrag);
            (ours || message.is_successful_binding_response() || message.is_failed_binding_response())
                && a.agent.accepts_message(&message)
        }) else {
            return false;
        };
        let packet = is::stun::StunPacket {
            proto: is::Protocol::Udp,
            source: from,
            destination: host,
            message,
        };
        let taken = agent.agent.handle_packet(at, packet);
        self.collect(now);
        taken
    }

    /// Drops the agent(s) of `peer` (its link closed, or another took
    /// its place); `controlling` picks one of the two a crossed Attach
    /// makes.
    pub fn remove(&mut self, peer: &NodeId, controlling: Option<bool>) {
        self.agents
            .retain(|a| !(a.peer == *peer && controlling.is_none_or(|c| c == a.controlling)));
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn poll_output(&mut self) -> Option<IceOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        let agents = self.agents.iter().filter_map(|a| a.next_at);
        let deadlines = self
            .agents
            .iter()
            .filter(|a| !a.reported)
            .map(|a| a.started + CHECK_TIMEOUT_MS);
        agents.chain(deadlines).min()
    }

    pub fn handle_timeout(&mut self, now: u64) {
        let at = self.at(now);
        for a in &mut self.agents {
            if a.next_at.is_some_and(|t| t <= now) {
                a.agent.handle_timeout(at);
            }
        }
        self.collect(now);
        let failed: Vec<NodeId> = self
            .agents
            .iter()
            .filter(|a| !a.reported && a.started + CHECK_TIMEOUT_MS <= now)
            .map(|a| a.peer)
            .collect();
        self.agents.retain(|a| a.reported || a.started + CHECK_TIMEOUT_MS > now);
        for peer in failed {
            self.outputs.push_back(IceOutput::Failed { peer });
        }
    }

    /// Moves the agents' datagrams and events to the outputs.
    fn collect(&mut self, _now: u64) {
        let epoch = self.epoch;
        for a in &mut self.agents {
            while let Some(t) = a.agent.poll_transmit() {
                self.outputs.push_back(IceOutput::Datagram {
                    to: t.destination,
                    bytes: t.contents.into(),
                });
            }
            while let Some(event) = a.agent.poll_event() {
                match event {
                    is::IceAgentEvent::NominatedSend { destination, .. } => a.nominated = Some(destination),
                    is::IceAgentEvent::IceConnectionStateChange(state) if state.is_connected() => {}
                    _ => {}
                }
            }
            // Rounded up: woken a little late rather than early and idle.
            a.next_at = a
                .agent
                .poll_timeout()
                .map(|t| t.saturating_duration_since(epoch).as_micros().div_ceil(1000) as u64);
            if let (Some(remote), false) = (a.nominated, a.reported) {
                if a.agent.state().is_connected() {
                    a.reported = true;
                    let rtt_ms = a.agent.nominated_pair_rtt().map(|d| d.as_millis() as u64);
                    self.outputs.push_back(IceOutput::Nominated(Nominated {
                        peer: a.peer,
                        remote,
                        dtls_server: a.controlling,
                        rtt_ms,
                    }));
                }
            }
        }
    }
}

fn candidate(address: SocketAddr, cand_type: CandType, type_preference: u32, foundation: &[u8]) -> IceCandidate {
    // RFC 8445 §5.1.2.1: type preference, local preference (one
    // interface: 65535), component 1.
    let priority = (type_preference << 24) | (65_535 << 8) | (256 - 1);
    IceCandidate {
        addr_port: IpAddressPort::Ip(address),
        overlay_link: overlay_link_type::DTLS_UDP_SR,
        foundation: foundation.to_vec(),
        priority,
        cand_type,
        extensions: Vec::new(),
    }
}

fn creds(c: &IceCredentials) -> Option<is::IceCreds> {
    Some(is::IceCreds {
        ufrag: String::from_utf8(c.ufrag.clone()).ok()?,
        pass: String::from_utf8(c.password.clone()).ok()?,
    })
}

/// A RELOAD candidate as the agent's: DTLS-UDP-SR candidates on IP
/// addresses only (others are for link types this peer does not run).
fn to_agent(c: &IceCandidate, host: SocketAddr) -> Option<is::Candidate> {
    if c.overlay_link != overlay_link_type::DTLS_UDP_SR {
        return None;
    }
    let IpAddressPort::Ip(address) = c.addr_port else {
        return None;
    };
    let candidate = match &c.cand_type {
        CandType::Host => is::Candidate::host(address, "udp"),
        CandType::Srflx { rel_addr_port } | CandType::Prflx { rel_addr_port } => {
            let base = match rel_addr_port {
                IpAddressPort::Ip(base) => *base,
                _ => host,
            };
            let base = if base.is_ipv4() == address.is_ipv4() {
                base
            } else {
                address
            };
            is::Candidate::server_reflexive(address, base, "udp")
        }
        CandType::Relay { .. } => is::Candidate::relayed(address, host, "udp"),
    };
    candidate.ok()
}
