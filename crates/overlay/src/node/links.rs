//! Links (RFC 6940 §6.5): the link table as drivers report it, keepalives
//! and silent links (§6.6.5, decision 0022), partition probes through the
//! bootstrap peer (§10.7.4.4), fragments (§6.7) and peers that misbehave.

use super::*;

/// Links being set up by Attach (§6.5.1), until they are up or
/// [`LINK_SETUP_TIMEOUT_MS`] passed.
#[derive(Debug, Default)]
pub(super) struct Attaching {
    /// Links this node is opening after an AttachAns, by expected peer.
    pub(super) connecting: BTreeMap<NodeId, Vec<AwaitingLink>>,
    /// Peers whose Attach this node answered, with their send_update flag
    /// and when.
    pub(super) expected_links: BTreeMap<NodeId, (bool, u64)>,
}

/// The Attach an AttachAns answered, kept until the link is up.
#[derive(Debug)]
pub(super) struct AwaitingLink {
    pub(super) token: u64,
    pub(super) answer: Body,
    pub(super) since: u64,
}

impl<T: Topology, S: Security> OverlayNode<T, S> {
    /// The link a [`Action::Connect`] without a Node-ID opened (to a
    /// bootstrap address) is up, with `peer` at the other end; drivers
    /// report it here and every other link through
    /// [`link_up`](Self::link_up), so a node that happens to dial us is
    /// never taken for our bootstrap peer.
    pub fn bootstrap_link_up(&mut self, now: u64, peer: NodeId) {
        if self.is_banned(now, &peer) {
            return self.actions.push_back(Action::Close { peer });
        }
        let opened = self.links.insert(peer);
        if self.joining.bootstrap_pending {
            self.joining.bootstrap_pending = false;
            self.topology.join(now, peer, &mut self.commands);
        } else if self.joining.probe.is_some() && self.leaving.is_none() {
            self.bootstrap_reached(now, ProbeLink { peer, opened });
        } else if opened {
            // Nobody waits for it any more (its check timed out).
            self.links.remove(&peer);
            self.actions.push_back(Action::Close { peer });
        }
        self.after_event(now);
    }

    /// A link to `peer` (authenticated by the link layer) is up: one the
    /// peer dialled, or one dialled for a Node-ID an Attach named.
    pub fn link_up(&mut self, now: u64, peer: NodeId) {
        if self.is_banned(now, &peer) {
            return self.actions.push_back(Action::Close { peer });
        }
        self.links.insert(peer);
        if let Some(waiting) = self.attaching.connecting.remove(&peer) {
            self.topology.on_link_up(now, peer, true, false, &mut self.commands);
            for w in waiting {
                let answer = Ok(Answer {
                    from: peer,
                    body: w.answer,
                });
                self.topology.on_answer(now, w.token, answer, &mut self.commands);
            }
        } else {
            let send_update = self.attaching.expected_links.remove(&peer).is_some_and(|(s, _)| s);
            self.topology
                .on_link_up(now, peer, false, send_update, &mut self.commands);
        }
        self.after_event(now);
    }

    /// RFC 6940 §6.6.5: the link to `peer` carried nothing for a while
    /// and its link layer needs something the peer acknowledges, to tell
    /// a live peer from a silent one (see [`crate::link_liveness`]). A
    /// Ping (§6.5.3) to the neighbour itself goes over that link and
    /// nowhere else; it is never retransmitted. A link the engine does not
    /// use (not up yet, or taken out as silent) gets none.
    pub fn keepalive(&mut self, now: u64, peer: NodeId) {
        if !self.links.contains(&peer) {
            return;
        }
        let body = Body::PingReq(reload_wire::PingReq::default());
        self.originate(now, vec![Destination::Node(peer)], &body, Purpose::Keepalive);
        self.after_event(now);
    }

    /// RFC 6940 §6.6.5: the link to `peer`, taken out of the routing
    /// table because it stopped acknowledging ([`link_down`](Self::link_down)),
    /// acknowledges again: the failure was transient. The peer goes back
    /// into the routing table as one we attached to, and is sent an
    /// Update (§10.7.4.3) so both ends agree on the ring as it is now; the
    /// peer itself may not know it was missed (a process that was stopped
    /// saw no time pass).
    pub fn link_resumed(&mut self, now: u64, peer: NodeId) {
        // Only a peer that was in the routing table goes back into it: a
        // client or a joining node stays a link this node serves.
        let routed = self.silent_routers.remove(&peer);
        self.links.insert(peer);
        self.topology.on_link_up(now, peer, routed, routed, &mut self.commands);
        self.after_event(now);
    }

    /// RFC 6940 §6.6.5: the link to `peer` stopped acknowledging; the peer
    /// leaves the routing table as if its link had gone down
    /// ([`link_down`](Self::link_down)), and the link may resume
    /// ([`link_resumed`](Self::link_resumed)).
    pub fn link_silent(&mut self, now: u64, peer: NodeId) {
        let routed = self.topology.routes_through(&peer);
        self.link_down(now, peer);
        if routed {
            self.silent_routers.insert(peer);
        }
    }

    /// §6.3.3.1: answers a request that arrived from `link` with an Error
    /// and does nothing else with it: the driver refused the connection
    /// it came on (say, a second process claiming a Node-ID that is
    /// already here). Anything but a request is dropped.
    /// Returns the answer's bytes, for the driver to write on that very
    /// connection (the link table names another one for `link`).
    pub fn refuse(&mut self, link: NodeId, bytes: &[u8], code: ErrorCode, why: &str) -> Option<Vec<u8>> {
        let (request, payload) = ForwardingHeader::split(bytes, &self.ctx).ok()?;
        let method = peek_code(payload);
        if !method.is_request() {
            return None;
        }
        self.stats.errors_sent += 1;
        self.record(|| Observation::Answered {
            request: method,
            error: Some(code),
        });
        let body = Body::Error(ErrorResponse::new(code, why.as_bytes().to_vec()));
        let contents = MessageContents::from_body(&body).ok()?;
        let header = self.answer_header(Some(link), &request);
        self.encode_message(&header, &contents, &[], &self.security)
    }

    /// A Ping (§6.5.3) to `peer` whose bytes the driver writes on a
    /// connection of its choice (say, one of two that present `peer`'s
    /// Node-ID). Sent once: it times out after one reliability timer. Its
    /// outcome is an [`Event::Done`] like any request's.
    pub fn direct_ping(&mut self, now: u64, peer: NodeId) -> Option<(RequestId, Vec<u8>)> {
        let body = Body::PingReq(reload_wire::PingReq::default());
        let contents = MessageContents::from_body(&body).ok()?;
        let tid: u64 = self.rng.random();
        let mut header = ForwardingHeader::new(self.overlay, tid, vec![Destination::Node(peer)]);
        header.ttl = self.config.initial_ttl;
        header.configuration_sequence = self.config.configuration_sequence;
        let bytes = self.encode_message(&header, &contents, &[], &self.security)?;
        let id = self.transactions.next_id();
        let deadline = now + self.config.reliability_timer_ms;
        self.transactions.outstanding.insert(
            tid,
            Outstanding {
                bytes: Vec::new(),
                method: MessageCode::PING_REQ,
                purpose: Purpose::App(id),
                // One transmission is all it gets.
                transmissions: self.config.max_retransmits.saturating_add(1),
                deadline,
                started: now,
            },
        );
        self.transactions.retransmit_at.push(deadline, tid);
        Some((id, bytes))
    }

    /// Opening a link failed. `peer` is `None` for a bootstrap address.
    pub fn link_failed(&mut self, now: u64, peer: Option<NodeId>) {
        match peer {
            // Not joining: the dial was a partition check's, if anyone's.
            None if !self.joining.bootstrap_pending => self.probe_failed(now),
            None => {
                if self.joining.next_bootstrap < self.joining.bootstraps.len() * 3 {
                    self.connect_bootstrap(now);
                } else {
                    self.joining.bootstrap_pending = false;
                }
            }
            Some(p) => {
                for w in self.attaching.connecting.remove(&p).unwrap_or_default() {
                    self.topology
                        .on_answer(now, w.token, Err(RequestFailure::NoRoute), &mut self.commands);
                }
            }
        }
        self.after_event(now);
    }

    /// §10.7.4.4: a partition check starts by reaching a bootstrap peer
    /// afresh, at the next bootstrap address that is not this node's own.
    pub(super) fn start_probe(&mut self, now: u64, token: u64, target: Destination) {
        let address = (0..self.joining.bootstraps.len())
            .map(|i| self.joining.bootstraps[(self.joining.next_bootstrap + i) % self.joining.bootstraps.len()].clone())
            .find(|a| *a != self.address);
        let Some(address) = address.filter(|_| self.joining.probe.is_none() && !self.joining.bootstrap_pending) else {
            let failure = Err(RequestFailure::NoRoute);
            return self
                .topology
                .on_bootstrap_probe(now, token, None, failure, &mut self.commands);
        };
        self.joining.next_bootstrap += 1;
        self.joining.probe = Some(BootstrapProbe {
            token,
            target,
            since: now,
        });
        self.actions.push_back(Action::Connect { peer: None, address });
    }

    /// The probe's link is up: `bootstrap` is B. The Ping goes to the
    /// target through B ([Node(B), target], §6.1.1), so the answer comes
    /// from whichever partition B is in.
    pub(super) fn bootstrap_reached(&mut self, now: u64, bootstrap: ProbeLink) {
        let Some(probe) = self.joining.probe.take() else { return };
        if bootstrap.opened {
            self.topology
                .on_link_up(now, bootstrap.peer, false, false, &mut self.commands);
        }
        let destination = if probe.target == Destination::Node(bootstrap.peer) {
            vec![probe.target]
        } else {
            vec![Destination::Node(bootstrap.peer), probe.target]
        };
        let body = Body::PingReq(reload_wire::PingReq::default());
        let purpose = Purpose::Probe {
            token: probe.token,
            bootstrap,
        };
        self.originate(now, destination, &body, purpose);
    }

    pub(super) fn probe_failed(&mut self, now: u64) {
        if let Some(probe) = self.joining.probe.take() {
            let failure = Err(RequestFailure::NoRoute);
            self.topology
                .on_bootstrap_probe(now, probe.token, None, failure, &mut self.commands);
        }
    }

    /// §6.7: a fragment of a message for this node waits for the others;
    /// the whole message is then delivered as if it had come in one piece.
    /// Memory is bounded ([`REASSEMBLY_BUFFER`]); what is not whole within
    /// the request lifetime is dropped.
    pub(super) fn reassemble(&mut self, now: u64, link: Option<NodeId>, header: ForwardingHeader, payload: &[u8]) {
        let mut w = Writer::with_capacity(payload.len() + 128);
        header.encode_with_payload(&mut w, payload);
        let Ok(fragment) = w.finish() else {
            return self.stats.malformed += 1;
        };
        match self.reassembly.push(now, &fragment, &self.ctx) {
            Ok(Reassembly::Complete(whole)) => match ForwardingHeader::split(&whole, &self.ctx) {
                Ok((header, payload)) if header.fragment.is_unfragmented() => {
                    self.deliver(now, link, header, payload, None)
                }
                _ => self.stats.malformed += 1,
            },
            Ok(Reassembly::Pending) => {}
            Ok(Reassembly::Dropped) | Err(_) => self.stats.malformed += 1,
        }
    }

    /// Counts a malformed or forged message that `peer` sent itself over
    /// its link; at [`OFFENCES_TO_CLOSE`] within [`OFFENCE_WINDOW_MS`] the
    /// link is closed and the peer kept out for [`BANNED_FOR_MS`]
    /// (issue 36 §12; RFC 6940 §13.6.4 leaves the policy to the node).
    pub(super) fn offence(&mut self, now: u64, peer: NodeId, why: &'static str) {
        if self.offences.len() >= MAX_OFFENDERS && !self.offences.contains_key(&peer) {
            self.offences.retain(|_, (_, since)| *since + OFFENCE_WINDOW_MS > now);
            if self.offences.len() >= MAX_OFFENDERS {
                return;
            }
        }
        let entry = self.offences.entry(peer).or_insert((0, now));
        if entry.1 + OFFENCE_WINDOW_MS <= now {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 < OFFENCES_TO_CLOSE {
            return;
        }
        self.offences.remove(&peer);
        self.banned.retain(|_, until| *until > now);
        self.banned.insert(peer, now + BANNED_FOR_MS);
        self.actions
            .push_back(Action::Event(Box::new(Event::Misbehaving { peer, why })));
        self.actions.push_back(Action::Close { peer });
    }

    /// Whether `peer` was closed for misbehaving and is still kept out.
    pub fn is_banned(&self, now: u64, peer: &NodeId) -> bool {
        self.banned.get(peer).is_some_and(|until| *until > now)
    }

    /// The link to `peer` closed or failed.
    pub fn link_down(&mut self, now: u64, peer: NodeId) {
        self.silent_routers.remove(&peer);
        if !self.links.remove(&peer) {
            return;
        }
        self.topology.on_link_down(now, peer, &mut self.commands);
        self.after_event(now);
    }
}
