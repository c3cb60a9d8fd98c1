//! `GET /metrics`: what the peer does, as OpenMetrics text (which
//! Prometheus scrapes). All names start with `p2psip_`.
//!
//! The engine reports each message it handles as an [`Observation`]; the
//! driver feeds them here. Totals the engine already keeps
//! ([`NodeStats`]) and the state gauges are brought up to date when a
//! scrape asks.

use overlay::{CompletedResult, NodeStats, Observation};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use reload_wire::{ErrorCode, MessageCode};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    /// The §14.8 registry name, e.g. `store_req`.
    message: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodResultLabels {
    /// The request's method, e.g. `store` for store_req.
    method: &'static str,
    /// `ok`, a §14.9 error name such as `Error_Forbidden`, `timeout` or
    /// `no_route`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    /// `inbound` (a peer dialled us) or `outbound`.
    direction: &'static str,
}

type MethodHistograms = Family<MethodLabels, Histogram, fn() -> Histogram>;

/// Round trips of this peer's own requests: 1 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn message_name(code: MessageCode) -> &'static str {
    code.name().unwrap_or("unknown")
}

fn method_name(request: MessageCode) -> &'static str {
    let name = message_name(request);
    name.strip_suffix("_req").unwrap_or(name)
}

fn error_name(code: ErrorCode) -> &'static str {
    code.name().unwrap_or("Error_Unregistered")
}

/// Overlay hops of this peer's answered requests, 1 to 16: Chord-reload
/// routes in about log2 N, so a path beyond 16 is a routing fault, and
/// shows in `+Inf`.
fn hops_histogram() -> Histogram {
    Histogram::new(linear_buckets(1.0, 1.0, 16))
}

/// The state gauges, read from the engine when a scrape asks.
pub(crate) struct Gauges<'a> {
    pub joined: bool,
    pub uptime_s: u64,
    pub links: usize,
    pub successors: usize,
    pub predecessors: usize,
    pub fingers: usize,
    pub stored: &'a [(String, usize)],
    /// Bytes of stored values, as the storage quota counts them.
    pub stored_bytes: u64,
}

pub(crate) struct Metrics {
    registry: Registry,
    received: Family<MessageLabels, Counter>,
    forwarded: Family<MessageLabels, Counter>,
    answered: Family<MethodResultLabels, Counter>,
    requests: Family<MethodResultLabels, Counter>,
    latency: MethodHistograms,
    hops: MethodHistograms,
    link_failures: Family<DirectionLabels, Counter>,
    links_lost: Counter,
    links_silent: Counter,
    duplicate_node_ids: Counter,
    links_closed_for_abuse: Counter,
    links_closed_for_bad_node: Counter,
    configuration_sequence: Gauge,
    configuration_updates_refused: Counter,
    messages_sent: Counter,
    bytes_sent: Counter,
    maintenance_bytes_sent: Counter,
    malformed: Counter,
    unroutable: Counter,
    retransmissions: Counter,
    joined: Gauge,
    uptime: Gauge,
    links: Gauge,
    successors: Gauge,
    predecessors: Gauge,
    fingers: Gauge,
    stored_bytes: Gauge,
    stored: Family<KindLabels, Gauge>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("p2psip"),
            received: Family::default(),
            forwarded: Family::default(),
            answered: Family::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            hops: Family::new_with_constructor(hops_histogram),
            link_failures: Family::default(),
            links_lost: Counter::default(),
            links_silent: Counter::default(),
            duplicate_node_ids: Counter::default(),
            links_closed_for_abuse: Counter::default(),
            links_closed_for_bad_node: Counter::default(),
            configuration_sequence: Gauge::default(),
            configuration_updates_refused: Counter::default(),
            messages_sent: Counter::default(),
            bytes_sent: Counter::default(),
            maintenance_bytes_sent: Counter::default(),
            malformed: Counter::default(),
            unroutable: Counter::default(),
            retransmissions: Counter::default(),
            joined: Gauge::default(),
            uptime: Gauge::default(),
            links: Gauge::default(),
            successors: Gauge::default(),
            predecessors: Gauge::default(),
            fingers: Gauge::default(),
            stored_bytes: Gauge::default(),
            stored: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "messages_received",
            "RELOAD messages addressed to this peer, by message code",
            m.received.clone(),
        );
        r.register(
            "messages_forwarded",
            "RELOAD messages this peer forwarded for others, by message code",
            m.forwarded.clone(),
        );
        r.register(
            "requests_answered",
            "Requests this peer answered, by method and result (ok or the RELOAD error sent)",
            m.answered.clone(),
        );
        r.register(
            "requests",
            "Requests this peer originated, by method and result (ok, the RELOAD error received, timeout, no_route)",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Round trip of the requests this peer originated, by method (fetch is the lookup)",
            Unit::Seconds,
            m.latency.clone(),
        );
        r.register(
            "request_hops",
            "Overlay hops the answered requests this peer originated travelled, by method (fetch: the lookup's path length)",
            m.hops.clone(),
        );
        r.register(
            "link_failures",
            "Overlay links that could not be set up: refused certificate, handshake failure or timeout",
            m.link_failures.clone(),
        );
        r.register(
            "links_lost",
            "Links to the first successor or predecessor lost without a Leave: closed by the other end (a crashed process, a reset) or silent (no acknowledgement for 2 s: a frozen process, a cut cable)",
            m.links_lost.clone(),
        );
        r.register(
            "links_silent",
            "Links taken out of the routing table because the peer stopped acknowledging Data frames (RFC 6940 §6.6.5)",
            m.links_silent.clone(),
        );
        r.register(
            "duplicate_node_ids",
            "Second processes refused because they presented the Node-ID of a peer already linked here (a copied node directory)",
            m.duplicate_node_ids.clone(),
        );
        r.register(
            "links_closed_for_abuse",
            "Links closed because the peer sent 20 malformed or forged messages of its own within a minute (it is kept out for 10 minutes)",
            m.links_closed_for_abuse.clone(),
        );
        r.register(
            "links_closed_for_bad_node",
            "Links closed because a configuration update listed their peer as a bad-node (RFC 6940 §11.1)",
            m.links_closed_for_bad_node.clone(),
        );
        r.register(
            "signatures_made",
            "Signatures this peer made (messages, stored values; RFC 6940 §6.3.4, §7)",
            crate::identity::SIGNATURES_MADE.clone(),
        );
        r.register(
            "signatures_checked",
            "Public-key checks of signatures this peer did; signatures it had checked before are not checked again",
            crate::identity::SIGNATURES_CHECKED.clone(),
        );
        r.register(
            "configuration_sequence",
            "Sequence of the configuration document the peer runs on (RFC 6940 §6.3.2.1)",
            m.configuration_sequence.clone(),
        );
        r.register(
            "configuration_updates_refused",
            "ConfigUpdates refused: not signed by a signer of the current configuration, older, malformed, or more than 16 to check in 10 s",
            m.configuration_updates_refused.clone(),
        );
        r.register(
            "messages_sent",
            "RELOAD messages sent on links",
            m.messages_sent.clone(),
        );
        r.register_with_unit(
            "sent",
            "Bytes of RELOAD messages sent on links",
            Unit::Bytes,
            m.bytes_sent.clone(),
        );
        r.register_with_unit(
            "maintenance_sent",
            "Bytes of overlay upkeep (joins, updates, replicas, pings) sent on links",
            Unit::Bytes,
            m.maintenance_bytes_sent.clone(),
        );
        r.register(
            "malformed_messages",
            "Messages received that could not be decoded or did not belong to this overlay",
            m.malformed.clone(),
        );
        r.register(
            "unroutable_messages",
            "Messages dropped because the next hop towards their destination had no link",
            m.unroutable.clone(),
        );
        r.register(
            "retransmissions",
            "Requests sent again after no answer (RFC 6940 §6.2.1)",
            m.retransmissions.clone(),
        );
        r.register("joined", "1 while the peer is part of the overlay", m.joined.clone());
        r.register_with_unit("uptime", "Time since the peer started", Unit::Seconds, m.uptime.clone());
        r.register("links", "Open overlay links", m.links.clone());
        r.register("successors", "Entries in the successor list", m.successors.clone());
        r.register(
            "predecessors",
            "Entries in the predecessor list",
            m.predecessors.clone(),
        );
        r.register("fingers", "Entries in the finger table", m.fingers.clone());
        r.register("stored_items", "Stored values by Kind", m.stored.clone());
        r.register(
            "stored_bytes",
            "Bytes of stored values held, as the storage quota counts them",
            m.stored_bytes.clone(),
        );
        m
    }

    /// Adds the overlay UDP port's STUN counters (`p2psip_stun_*`).
    pub(crate) fn add_stun(&mut self, stun: &crate::overlay_udp::StunMetrics) {
        stun.register(&mut self.registry);
    }

    /// Adds the relay's (`p2psip_relay_*`).
    pub(crate) fn add_relay(&mut self, relay: &crate::relay::RelayMetrics) {
        relay.register(&mut self.registry);
    }

    /// Adds the SIP side's families (`p2psip_sip_*`) to this registry.
    pub(crate) fn add_sip(&mut self, sip: &crate::sip_report::SipMetrics) {
        sip.register(&mut self.registry);
    }

    /// A link to a routing neighbour closed without the neighbour leaving.
    pub(crate) fn link_lost(&self) {
        self.links_lost.inc();
    }

    /// A link closed because its peer kept sending bad messages.
    pub(crate) fn link_closed_for_abuse(&self) {
        self.links_closed_for_abuse.inc();
    }

    /// `n` links closed because their peers became bad nodes.
    pub(crate) fn links_closed_for_bad_node(&self, n: usize) {
        self.links_closed_for_bad_node.inc_by(n as u64);
    }

    /// The peer runs on configuration `sequence` now.
    pub(crate) fn configuration(&self, sequence: u16) {
        self.configuration_sequence.set(i64::from(sequence));
    }

    pub(crate) fn configuration_update_refused(&self) {
        self.configuration_updates_refused.inc();
    }

    /// A second process with a linked peer's Node-ID was refused.
    pub(crate) fn duplicate_node_id(&self) {
        self.duplicate_node_ids.inc();
    }

    /// A link whose peer stopped acknowledging (§6.6.5).
    pub(crate) fn link_silent(&self) {
        self.links_silent.inc();
    }

    pub(crate) fn observe(&self, observation: Observation) {
        match observation {
            Observation::Received { code } => {
                self.received
                    .get_or_create(&MessageLabels {
                        message: message_name(code),
                    })
                    .inc();
            }
            Observation::Forwarded { code } => {
                self.forwarded
                    .get_or_create(&MessageLabels {
                        message: message_name(code),
                    })
                    .inc();
            }
            Observation::Answered { request, error } => {
                let labels = MethodResultLabels {
                    method: method_name(request),
                    result: error.map_or("ok", error_name),
                };
                self.answered.get_or_create(&labels).inc();
            }
            Observation::Completed {
                request,
                result,
                latency_ms,
                hops,
            } => {
                let method = method_name(request);
                if matches!(result, CompletedResult::Success | CompletedResult::Error(_)) {
                    self.hops
                        .get_or_create(&MethodLabels { method })
                        .observe(f64::from(hops));
                }
                let result = match result {
                    CompletedResult::Success => "ok",
                    CompletedResult::Error(e) => error_name(e),
                    CompletedResult::Timeout => "timeout",
                    CompletedResult::NoRoute => "no_route",
                };
                self.requests
                    .get_or_create(&MethodResultLabels { method, result })
                    .inc();
                self.latency
                    .get_or_create(&MethodLabels { method })
                    .observe(latency_ms as f64 / 1000.0);
            }
        }
    }

    pub(crate) fn link_failed(&self, inbound: bool) {
        let direction = if inbound { "inbound" } else { "outbound" };
        self.link_failures.get_or_create(&DirectionLabels { direction }).inc();
    }

    /// The scrape: totals and gauges brought up to date, then the text.
    pub(crate) fn render(&self, stats: &NodeStats, gauges: Gauges<'_>) -> String {
        let catch_up = |c: &Counter, total: u64| {
            c.inc_by(total.saturating_sub(c.get()));
        };
        catch_up(&self.messages_sent, stats.messages_sent);
        catch_up(&self.bytes_sent, stats.bytes_sent);
        catch_up(&self.maintenance_bytes_sent, stats.maintenance_bytes_sent);
        catch_up(&self.malformed, stats.malformed);
        catch_up(&self.unroutable, stats.unroutable);
        catch_up(&self.retransmissions, stats.retransmissions);
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.joined, gauges.joined as u64);
        set(&self.uptime, gauges.uptime_s);
        set(&self.links, gauges.links as u64);
        set(&self.successors, gauges.successors as u64);
        set(&self.predecessors, gauges.predecessors as u64);
        set(&self.fingers, gauges.fingers as u64);
        set(&self.stored_bytes, gauges.stored_bytes);
        self.stored.clear();
        for (kind, n) in gauges.stored {
            set(
                &self.stored.get_or_create(&KindLabels { kind: kind.clone() }),
                *n as u64,
            );
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_gauges() -> Gauges<'static> {
        Gauges {
            joined: true,
            uptime_s: 7,
            links: 2,
            successors: 2,
            predecessors: 2,
            fingers: 5,
            stored: &[],
            stored_bytes: 0,
        }
    }

    #[test]
    fn observations_become_labelled_counters_and_latency_and_hop_histograms() {
        let m = Metrics::new();
        m.observe(Observation::Answered {
            request: MessageCode::STORE_REQ,
            error: Some(ErrorCode::FORBIDDEN),
        });
        m.observe(Observation::Answered {
            request: MessageCode::STORE_REQ,
            error: None,
        });
        for (latency_ms, hops) in [(3, 1), (40, 5)] {
            m.observe(Observation::Completed {
                request: MessageCode::FETCH_REQ,
                result: CompletedResult::Success,
                latency_ms,
                hops,
            });
        }
        m.observe(Observation::Completed {
            request: MessageCode::PING_REQ,
            result: CompletedResult::Timeout,
            latency_ms: 15_000,
            hops: 0,
        });
        m.observe(Observation::Received {
            code: MessageCode::STORE_REQ,
        });
        let stats = NodeStats {
            malformed: 4,
            unroutable: 2,
            ..NodeStats::default()
        };
        let stored = [("SIP-REGISTRATION".to_string(), 3)];
        let text = m.render(
            &stats,
            Gauges {
                stored: &stored,
                stored_bytes: 1234,
                ..empty_gauges()
            },
        );
        for line in [
            "p2psip_stored_bytes 1234",
            "p2psip_requests_answered_total{method=\"store\",result=\"Error_Forbidden\"} 1",
            "p2psip_requests_answered_total{method=\"store\",result=\"ok\"} 1",
            "p2psip_requests_total{method=\"fetch\",result=\"ok\"} 2",
            "p2psip_requests_total{method=\"ping\",result=\"timeout\"} 1",
            "p2psip_request_duration_seconds_count{method=\"fetch\"} 2",
            "p2psip_request_duration_seconds_bucket{le=\"0.004\",method=\"fetch\"} 1",
            "p2psip_request_duration_seconds_bucket{le=\"0.064\",method=\"fetch\"} 2",
            "p2psip_request_hops_sum{method=\"fetch\"} 6.0",
            "p2psip_request_hops_bucket{le=\"1.0\",method=\"fetch\"} 1",
            "p2psip_request_hops_bucket{le=\"4.0\",method=\"fetch\"} 1",
            "p2psip_request_hops_bucket{le=\"5.0\",method=\"fetch\"} 2",
            "p2psip_messages_received_total{message=\"store_req\"} 1",
            "p2psip_malformed_messages_total 4",
            "p2psip_unroutable_messages_total 2",
            "p2psip_stored_items{kind=\"SIP-REGISTRATION\"} 3",
            "p2psip_links 2",
            "p2psip_uptime_seconds 7",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // A request nobody answered travelled no path.
        assert!(!text.contains("p2psip_request_hops_count{method=\"ping\"}"), "{text}");
    }

    /// Engine totals only grow; a scrape adds what is new, so two scrapes
    /// in a row report the same total, not double.
    #[test]
    fn totals_follow_the_engine_without_double_counting() {
        let m = Metrics::new();
        let mut stats = NodeStats {
            messages_sent: 10,
            ..NodeStats::default()
        };
        m.render(&stats, empty_gauges());
        let text = m.render(&stats, empty_gauges());
        assert!(text.contains("p2psip_messages_sent_total 10\n"), "{text}");
        stats.messages_sent = 25;
        let text = m.render(&stats, empty_gauges());
        assert!(text.contains("p2psip_messages_sent_total 25\n"), "{text}");
    }

    #[test]
    fn a_kind_no_longer_stored_leaves_the_gauges() {
        let m = Metrics::new();
        let stored = [("CERTIFICATE_BY_NODE".to_string(), 1)];
        let text = m.render(
            &NodeStats::default(),
            Gauges {
                stored: &stored,
                ..empty_gauges()
            },
        );
        assert!(text.contains("kind=\"CERTIFICATE_BY_NODE\""));
        let text = m.render(&NodeStats::default(), empty_gauges());
        assert!(!text.contains("kind=\"CERTIFICATE_BY_NODE\""), "{text}");
    }
}
