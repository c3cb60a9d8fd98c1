//! Forwarding (RFC 6940 §6.1): what a message that arrived on a link
//! becomes: relayed along its destination list, forwarded towards its
//! Resource-ID or delivered here.

use super::*;

impl<T: Topology, S: Security> OverlayNode<T, S> {
    /// A message arrived on the link from `link`.
    pub fn receive(&mut self, now: u64, link: NodeId, bytes: &[u8]) {
        let parsed = HeaderView::parse(bytes, &self.ctx).and_then(|view| {
            if self.relay(link, &view) {
                return Ok(None);
            }
            Ok(Some((view.to_header(&self.ctx)?, view.payload())))
        });
        match parsed {
            Ok(Some((header, payload))) => self.route(now, Some(link), header, payload, None, None),
            Ok(None) => {}
            Err(_) => {
                self.stats.malformed += 1;
                self.offence(now, link, "malformed forwarding headers");
            }
        }
        self.after_event(now);
    }

    /// §6.1.2: the fast path for a message this node only passes on: the
    /// header is rewritten from its bytes, the lists never decoded. False
    /// for anything else (delivery, an error to answer, a drop to count),
    /// which [`Self::route`] handles.
    pub(super) fn relay(&mut self, from: NodeId, view: &HeaderView<'_>) -> bool {
        if !self.processable(view.overlay, view.version)
            || view.ttl == 0
            || view.ttl > self.config.initial_ttl
            || view.has_options()
        {
            return false;
        }
        let count = view.destination_count();
        let mut destinations = view.destinations();
        let mut skip = 0;
        let next = loop {
            let Some((first, _)) = destinations.next() else {
                return false;
            };
            match self.hop(first, skip + 1 == count) {
                Hop::Skip => skip += 1,
                Hop::Forward(next) => break next,
                Hop::Deliver | Hop::Drop(_) => return false,
            }
        };
        let code = peek_code(view.payload());
        // §13.6.5: a loop attempt gets its Error from `forward`.
        if code.is_request() && repeats(view.destinations().skip(skip).map(|(_, raw)| raw)) {
            return false;
        }
        let Some(bytes) = view.relayed(skip, &Destination::Node(from)) else {
            return false;
        };
        self.stats.forwarded += 1;
        self.record(|| Observation::Forwarded { code });
        self.transmit(next, bytes, !is_application(code));
        true
    }

    /// §6.1: whether this peer can process a message of this overlay and
    /// version at all. Fragments (§6.7) are forwarded like any message and
    /// reassembled only where they are delivered.
    pub(super) fn processable(&self, overlay: u32, version: u8) -> bool {
        overlay == self.overlay && version == RELOAD_VERSION
    }

    /// §6.1, §10.3: what the first Destination List entry, `last` or not,
    /// asks of this node.
    pub(super) fn hop(&self, first: DestinationRef<'_>, last: bool) -> Hop {
        match first {
            DestinationRef::Node(n) if n == self.me => {
                if last {
                    Hop::Deliver
                } else {
                    Hop::Skip
                }
            }
            DestinationRef::Node(n) if n.as_bytes().iter().all(|b| *b == 0xff) => Hop::Deliver,
            DestinationRef::Resource(r) if self.topology.is_responsible(r) => {
                // §6.1.1: a Resource-ID must be the last entry.
                if last {
                    Hop::Deliver
                } else {
                    Hop::Drop(Dropped::Malformed)
                }
            }
            DestinationRef::Node(n) if self.links.contains(&n) => Hop::Forward(n),
            // §6.1.1: a Node-ID we own that is not ours nor linked.
            DestinationRef::Node(n) if self.topology.is_responsible(n.as_bytes()) => Hop::Drop(Dropped::Silently),
            DestinationRef::Node(_) | DestinationRef::Resource(_) => {
                let target = match first {
                    DestinationRef::Node(ref n) => n.as_bytes(),
                    DestinationRef::Resource(r) => r,
                    _ => &[],
                };
                match self.topology.next_hop(target) {
                    // Nothing goes out without a link: after `exit` the
                    // topology still names the peers it had.
                    Some(next) if self.links.contains(&next) => Hop::Forward(next),
                    Some(_) => Hop::Drop(Dropped::Unroutable),
                    None => Hop::Drop(Dropped::Silently),
                }
            }
            // Opaque IDs are only meaningful to the peer that made them
            // and this implementation makes none (§6.1.3).
            _ => Hop::Drop(Dropped::Malformed),
        }
    }

    /// §6.1: examine the first Destination List entry until the message is
    /// delivered here, forwarded, or dropped. `unchanged` is the encoded
    /// message of a node's own origin, sent as it is while its header needs
    /// no change.
    pub(super) fn route(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        mut header: ForwardingHeader,
        payload: &[u8],
        maintenance: Option<bool>,
        mut unchanged: Option<&[u8]>,
    ) {
        if !self.processable(header.overlay, header.version) {
            self.stats.malformed += 1;
            return;
        }
        let code = peek_code(payload);
        if header.ttl > self.config.initial_ttl {
            if code.is_request() {
                self.send_error(now, link, &header, code, Refusal::TtlAboveInitial);
            }
            return;
        }
        loop {
            let Some(first) = header.destination_list.first() else {
                // An answer to a request this node sent to itself.
                return self.deliver(now, link, header, payload, None);
            };
            match self.hop(first.as_ref(), header.destination_list.len() == 1) {
                Hop::Deliver => return self.deliver(now, link, header, payload, None),
                Hop::Skip => {
                    header.destination_list.remove(0);
                    unchanged = None;
                }
                Hop::Forward(next) => {
                    if code.is_request() && critical(&header, forwarding_flags::FORWARD_CRITICAL) {
                        let refusal = Refusal::UnsupportedForwardingOption(CriticalOption::Forward);
                        return self.send_error(now, link, &header, code, refusal);
                    }
                    let m = maintenance.unwrap_or(!is_application(code));
                    return self.forward(now, link, header, payload, unchanged, next, m);
                }
                Hop::Drop(Dropped::Malformed) => return self.stats.malformed += 1,
                Hop::Drop(Dropped::Unroutable) => return self.stats.unroutable += 1,
                Hop::Drop(Dropped::Silently) => return,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        mut header: ForwardingHeader,
        payload: &[u8],
        unchanged: Option<&[u8]>,
        next: NodeId,
        maintenance: bool,
    ) {
        let code = peek_code(payload);
        if let Some(from) = link {
            // §13.6.5: a Destination List with duplicates is a loop attempt.
            if code.is_request() && repeats(header.destination_list.iter()) {
                self.send_error(now, link, &header, code, Refusal::DuplicateDestination);
                return;
            }
            // §6.3.2: TTL 0 and not for us.
            if header.ttl == 0 {
                if code.is_request() {
                    self.send_error(now, link, &header, code, Refusal::TtlExceeded);
                }
                return;
            }
            header.ttl -= 1;
            header.via_list.push(Destination::Node(from));
            self.stats.forwarded += 1;
            self.record(|| Observation::Forwarded { code });
        } else if let Some(bytes) = unchanged {
            return self.transmit(next, bytes.to_vec(), maintenance);
        }
        let mut w = Writer::with_capacity(payload.len() + 64);
        header.encode_with_payload(&mut w, payload);
        if let Ok(bytes) = w.finish() {
            self.transmit(next, bytes, maintenance);
        }
    }

    pub(super) fn transmit(&mut self, to: NodeId, bytes: Vec<u8>, maintenance: bool) {
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        if maintenance {
            self.stats.maintenance_messages_sent += 1;
            self.stats.maintenance_bytes_sent += bytes.len() as u64;
        }
        self.actions.push_back(Action::Send { to, bytes, maintenance });
    }
}
