//! Time: retransmissions, the answer cache, and the topology's commands
//! that follow each event.

use super::*;

impl<T: Topology, S: Security> OverlayNode<T, S> {
    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some((t, tid)) = self.transactions.retransmit_at.peek() {
            if t > now {
                break;
            }
            self.transactions.retransmit_at.pop();
            let Some(o) = self.transactions.outstanding.get_mut(&tid) else {
                continue;
            };
            if o.deadline != t {
                continue;
            }
            if matches!(o.purpose, Purpose::Keepalive) {
                self.transactions.outstanding.remove(&tid);
                continue;
            }
            if o.transmissions > self.config.max_retransmits {
                let o = self.transactions.outstanding.remove(&tid).expect("present");
                self.stats.timeouts += 1;
                self.complete(now, o, Err(RequestFailure::Timeout), self.me, 0);
                continue;
            }
            // §6.2.1: same transaction id, routed afresh.
            o.transmissions += 1;
            o.deadline = now + self.config.reliability_timer_ms;
            let deadline = o.deadline;
            let bytes = o.bytes.clone();
            let maintenance = o.purpose.maintenance();
            self.transactions.retransmit_at.push(deadline, tid);
            self.stats.retransmissions += 1;
            self.route_own(now, &bytes, maintenance);
        }
        self.replication
            .rebalance_soon
            .extend(self.replication.push_retry.take_due(now));
        if self.next_sweep <= now {
            self.transactions.forget_old_answers(now);
            self.reassembly.expire(now);
            self.next_sweep = now + self.config.expiry_sweep_ms;
            self.storage.expire(now);
            self.attaching
                .expected_links
                .retain(|_, (_, t)| *t + LINK_SETUP_TIMEOUT_MS > now);
            let stale: Vec<NodeId> = self
                .attaching
                .connecting
                .iter()
                .filter(|(_, w)| w.iter().all(|a| a.since + LINK_SETUP_TIMEOUT_MS <= now))
                .map(|(n, _)| *n)
                .collect();
            for n in stale {
                self.link_failed(now, Some(n));
            }
            if self
                .joining
                .probe
                .as_ref()
                .is_some_and(|p| p.since + LINK_SETUP_TIMEOUT_MS <= now)
            {
                // A bootstrap address that leads to this node itself, or
                // nowhere, gives no link at all.
                self.probe_failed(now);
            }
            // Retry replication that failed earlier.
            self.replication.rebalance_needed = true;
        }
        if self.topology.next_timer().is_some_and(|t| t <= now) {
            self.topology.on_timer(now, &mut self.commands);
        }
        if self.joining.rejoin_at.is_some_and(|t| t <= now) && self.leaving.is_none() {
            self.joining.rejoin_at = None;
            self.rejoin(now);
        }
        self.after_event(now);
    }

    /// Carries out what the topology asked for, then replica upkeep.
    pub(super) fn after_event(&mut self, now: u64) {
        self.run_commands(now);
        if self.replication.rebalance_needed {
            self.rebalance(now);
            self.run_commands(now);
        } else if !self.replication.rebalance_soon.is_empty() {
            self.rebalance_changed(now);
            self.run_commands(now);
        }
    }

    pub(super) fn run_commands(&mut self, now: u64) {
        while !self.commands.is_empty() {
            let commands = std::mem::take(&mut self.commands);
            for c in commands {
                match c {
                    TopologyCommand::Request {
                        token,
                        destination,
                        body,
                    } => self.originate(now, destination, &body, Purpose::Topology(token)),
                    TopologyCommand::Attach {
                        token,
                        destination,
                        send_update,
                    } => {
                        let (body, ice) = self.attach_offer(b"active", send_update);
                        let purpose = Purpose::Attach {
                            token,
                            ice: ice.map(Box::new),
                        };
                        self.originate(now, destination, &Body::AttachReq(body), purpose);
                    }
                    TopologyCommand::CloseLink(peer) => {
                        if self.links.remove(&peer) {
                            self.actions.push_back(Action::Close { peer });
                        }
                    }
                    TopologyCommand::ProbeThroughBootstrap { token, target } => self.start_probe(now, token, target),
                    TopologyCommand::ReplicasChanged => self.replication.rebalance_needed = true,
                    TopologyCommand::Joined => {
                        self.joining.joined(now);
                        self.actions.push_back(Action::Event(Box::new(Event::Joined)));
                    }
                    // A leaving peer that lost every neighbour has nobody
                    // left to hand over to or say goodbye to: it is done.
                    TopologyCommand::Rejoin if self.leaving.is_some() => self.exit(),
                    TopologyCommand::Rejoin => {
                        let after_ms = self.joining.lost(now);
                        self.actions
                            .push_back(Action::Event(Box::new(Event::Rejoining { after_ms })));
                        if after_ms == 0 {
                            self.rejoin(now);
                        }
                    }
                    TopologyCommand::Left => match &mut self.leaving {
                        Some(handover) if !self.replication.pushing.is_empty() => handover.exit_when_pushed = true,
                        _ => self.exit(),
                    },
                }
            }
        }
    }

    /// The end of a leave: every link closes and the node is done.
    pub(super) fn exit(&mut self) {
        if let Some(handover) = &mut self.leaving {
            if handover.exited {
                return;
            }
            handover.exited = true;
        }
        for peer in std::mem::take(&mut self.links) {
            self.actions.push_back(Action::Close { peer });
        }
        self.actions.push_back(Action::Event(Box::new(Event::Left)));
    }
}
