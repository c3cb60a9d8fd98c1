//! RFC 6940 §11.4 bootstrap, as the peer core runs it: the known
//! addresses first (configured bootstrap nodes, `--bootstrap`, the peer
//! cache), then multicast discovery on the LAN ([`crate::discovery`]);
//! with nobody to reach, a new overlay if this peer may start one, else
//! another try after [`RETRY_MS`].
//!
//! When a peer may start a ring alone is our choice (the RFC leaves it
//! open): rather than split the overlay, a peer that knows where the
//! overlay lives keeps trying. It may start alone when it knows of no
//! other place the overlay lives, or when it is a configured bootstrap
//! node itself; a client never does.

use crate::budget::Budget;
use crate::discovery::{answer, Datagram, Round, RoundOutcome, ROUND_MS};
use reload_wire::NodeId;
use std::net::SocketAddr;

/// Pause between bootstrap attempts while nobody answers.
pub const RETRY_MS: u64 = 5_000;
/// Discovery rounds spent waiting for a smaller peer to start the overlay
/// before starting it anyway.
pub const MAX_ROUNDS_WAITED: u32 = 5;
/// Times the engine tries each bootstrap address before an attempt has
/// failed (§11.4).
pub const TRIES_PER_ADDRESS: usize = 3;
/// Discovery answers sent per second at most: a DISCOVER's source address
/// can be forged, and the peer must not be made to spray HERE datagrams.
pub const ANSWERS_PER_SECOND: u32 = 20;

/// What a peer knows about where the overlay lives when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapPlan {
    /// Addresses to join through, this peer's own excluded.
    pub addresses: Vec<SocketAddr>,
    /// Whether it may start a new overlay when nobody answers.
    pub may_start_alone: bool,
    /// Whether the overlay has multicast discovery on the LAN.
    pub multicast: bool,
}

impl BootstrapPlan {
    /// The plan of a peer that takes links at `listen`: `configured` are
    /// the configuration's bootstrap nodes, `extra` the operator's
    /// `--bootstrap` addresses and `cached` the peer cache.
    pub fn new(
        listen: SocketAddr,
        client: bool,
        configured: &[SocketAddr],
        extra: &[SocketAddr],
        cached: &[SocketAddr],
        multicast: bool,
    ) -> BootstrapPlan {
        let mut addresses = Vec::new();
        for a in extra.iter().chain(configured).chain(cached) {
            if *a != listen && !addresses.contains(a) {
                addresses.push(*a);
            }
        }
        let named = extra.iter().chain(configured).any(|a| *a != listen);
        let is_bootstrap_node = configured.contains(&listen);
        let may_start_alone = !client
            && if multicast {
                !named || is_bootstrap_node
            } else {
                addresses.is_empty() || is_bootstrap_node
            };
        BootstrapPlan {
            addresses,
            may_start_alone,
            multicast,
        }
    }
}

/// What the peer core does next to reach the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Join through these addresses.
    Join(Vec<SocketAddr>),
    /// Start a new overlay, for this reason.
    StartAlone(&'static str),
    /// Send this DISCOVER to the multicast group, twice (UDP may lose
    /// one): now and a third of a round later.
    Discover(Datagram),
    /// Wait until the bootstrap's timeout.
    Wait,
}

/// The bootstrap's state: the attempt under way, the discovery round, the
/// retry timer.
pub struct Bootstrap {
    plan: BootstrapPlan,
    overlay: String,
    me: NodeId,
    /// The port this peer takes links on, named in discovery datagrams.
    port: u16,
    /// Addresses the current join attempt tries, and how many dials failed.
    attempt: usize,
    failures: usize,
    retry_at: Option<u64>,
    round: Option<(Round, u64)>,
    rounds_waited: u32,
    /// Discovery answers sent, at most [`ANSWERS_PER_SECOND`].
    answers: Budget,
}

impl Bootstrap {
    pub fn new(plan: BootstrapPlan, overlay: &str, me: NodeId, port: u16) -> Bootstrap {
        Bootstrap {
            plan,
            overlay: overlay.to_string(),
            me,
            port,
            attempt: 0,
            failures: 0,
            retry_at: None,
            round: None,
            rounds_waited: 0,
            answers: Budget::new(ANSWERS_PER_SECOND, 1_000),
        }
    }

    /// The first step, and the one after each retry.
    pub fn start(&mut self, now: u64) -> Step {
        self.retry_at = None;
        if !self.plan.addresses.is_empty() {
            self.join_through(self.plan.addresses.clone())
        } else if self.plan.multicast {
            self.begin_round(now)
        } else {
            Step::StartAlone("no bootstrap peer known")
        }
    }

    /// A new configuration names bootstrap nodes (§6.5.4): later attempts
    /// try them too.
    pub fn add_addresses(&mut self, listen: SocketAddr, addresses: &[SocketAddr]) {
        for a in addresses {
            if *a != listen && !self.plan.addresses.contains(a) {
                self.plan.addresses.push(*a);
            }
        }
    }

    /// The node is in the overlay: a retry or discovery round still
    /// pending would only join it again.
    pub fn joined(&mut self) {
        self.retry_at = None;
        self.round = None;
        self.failures = 0;
        self.rounds_waited = 0;
    }

    /// A dial to a bootstrap address failed before the node joined. Every
    /// dial without an expected Node-ID ends in exactly one link or one
    /// failure, including a link the driver drops (a second link to a peer
    /// already linked, a duplicate process), so failures are counted per
    /// dial.
    pub fn dial_failed(&mut self, now: u64) -> Step {
        self.failures += 1;
        if self.failures < self.attempt * TRIES_PER_ADDRESS {
            return Step::Wait;
        }
        self.failures = 0;
        if self.plan.multicast && self.round.is_none() {
            self.begin_round(now)
        } else {
            self.start_alone_or_retry(now, "no bootstrap peer answered")
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        [self.retry_at, self.round.as_ref().map(|(_, ends)| *ends)]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: u64) -> Step {
        if self.retry_at.is_some_and(|t| t <= now) {
            return self.start(now);
        }
        if self.round.as_ref().is_some_and(|(_, ends)| *ends <= now) {
            return self.end_round(now);
        }
        Step::Wait
    }

    /// A discovery datagram from `from`. A joined peer (never a client)
    /// answers a DISCOVER for its overlay, within the answer budget.
    pub fn heard(&mut self, now: u64, datagram: &Datagram, from: SocketAddr, answers: bool) -> Option<Datagram> {
        if let Some((round, _)) = &mut self.round {
            round.heard(datagram, from);
        }
        if !answers {
            return None;
        }
        let here = answer(&self.overlay, self.me, self.port, datagram)?;
        let (within_budget, _) = self.answers.take(now);
        within_budget.then_some(here)
    }

    /// Whether a discovery round is under way.
    pub fn discovering(&self) -> bool {
        self.round.is_some()
    }

    fn join_through(&mut self, addresses: Vec<SocketAddr>) -> Step {
        self.attempt = addresses.len();
        self.failures = 0;
        Step::Join(addresses)
    }

    fn start_alone_or_retry(&mut self, now: u64, why: &'static str) -> Step {
        if self.plan.may_start_alone {
            Step::StartAlone(why)
        } else {
            tracing::warn!("{why}; retrying in {} s", RETRY_MS / 1000);
            self.retry_at = Some(now + RETRY_MS);
            Step::Wait
        }
    }

    fn begin_round(&mut self, now: u64) -> Step {
        let round = Round::new(&self.overlay, self.me);
        let discover = round.discover(self.port);
        self.round = Some((round, now + ROUND_MS));
        Step::Discover(discover)
    }

    fn end_round(&mut self, now: u64) -> Step {
        let Some((round, _)) = self.round.take() else {
            return Step::Wait;
        };
        match round.outcome() {
            RoundOutcome::Join(addresses) => self.join_through(addresses),
            RoundOutcome::Wait if self.rounds_waited < MAX_ROUNDS_WAITED => {
                self.rounds_waited += 1;
                tracing::info!("a peer with a smaller Node-ID is starting the overlay; asking again");
                self.begin_round(now)
            }
            // A smaller peer that never starts the overlay (it keeps
            // trying bootstrap nodes of its own) does not hold us back
            // for ever.
            RoundOutcome::Wait | RoundOutcome::StartAlone => {
                self.rounds_waited = 0;
                self.start_alone_or_retry(now, "nobody on the LAN is in the overlay")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Verb;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn who_may_start_an_overlay_alone() {
        let me = at(1);
        let alone = |configured: &[SocketAddr], extra: &[SocketAddr], cached: &[SocketAddr], multicast| {
            BootstrapPlan::new(me, false, configured, extra, cached, multicast).may_start_alone
        };
        assert!(alone(&[], &[], &[], false), "nobody else known");
        assert!(alone(&[me], &[], &[], false), "only itself configured");
        assert!(alone(&[me, at(2)], &[], &[], false), "a configured bootstrap node");
        assert!(!alone(&[at(2)], &[], &[], false), "another bootstrap node");
        assert!(!alone(&[], &[], &[at(3)], false), "cached peers");
        assert!(
            alone(&[], &[], &[at(3)], true),
            "on a LAN, cached peers alone do not hold it back"
        );
        assert!(
            !alone(&[], &[at(2)], &[], true),
            "--bootstrap names where the overlay is"
        );
        assert!(
            !BootstrapPlan::new(me, true, &[], &[], &[], false).may_start_alone,
            "a client"
        );
        let plan = BootstrapPlan::new(me, false, &[me, at(2)], &[at(2), at(4)], &[at(4), at(5)], false);
        assert_eq!(
            plan.addresses,
            vec![at(2), at(4), at(5)],
            "own address and repeats left out"
        );
    }

    #[test]
    fn failed_dials_lead_to_a_discovery_round_whose_answers_are_joined() {
        let plan = BootstrapPlan::new(at(1), false, &[at(2)], &[], &[], true);
        let mut bootstrap = Bootstrap::new(plan, "o", NodeId::from_u128(5), 1);
        assert_eq!(bootstrap.start(0), Step::Join(vec![at(2)]));
        for _ in 1..TRIES_PER_ADDRESS {
            assert_eq!(bootstrap.dial_failed(10), Step::Wait);
        }
        let Step::Discover(ask) = bootstrap.dial_failed(10) else {
            panic!("a round after the last failed try")
        };
        assert_eq!((ask.verb, ask.port), (Verb::Discover, 1));
        assert_eq!(bootstrap.poll_timeout(), Some(10 + ROUND_MS));
        let here = Datagram {
            verb: Verb::Here,
            overlay: "o".into(),
            node_id: NodeId::from_u128(9),
            port: 7000,
        };
        bootstrap.heard(20, &here, SocketAddr::from(([10, 0, 0, 9], 40000)), false);
        assert_eq!(
            bootstrap.handle_timeout(10 + ROUND_MS),
            Step::Join(vec![SocketAddr::from(([10, 0, 0, 9], 7000))]),
            "joined at the answer's source address and named port"
        );
    }

    #[test]
    fn joining_ends_the_retries_and_rounds_under_way() {
        let plan = BootstrapPlan::new(at(1), false, &[at(2)], &[], &[], true);
        let mut bootstrap = Bootstrap::new(plan, "o", NodeId::from_u128(5), 1);
        bootstrap.start(0);
        for _ in 0..TRIES_PER_ADDRESS {
            bootstrap.dial_failed(10);
        }
        assert!(bootstrap.discovering() && bootstrap.poll_timeout().is_some());
        bootstrap.joined();
        assert_eq!(bootstrap.poll_timeout(), None);
        assert_eq!(bootstrap.handle_timeout(10 + ROUND_MS), Step::Wait);
    }

    #[test]
    fn a_smaller_peer_asking_too_is_waited_for_a_few_rounds_only() {
        let mut bootstrap = Bootstrap::new(
            BootstrapPlan::new(at(1), false, &[], &[], &[], true),
            "o",
            NodeId::from_u128(5),
            1,
        );
        assert!(matches!(bootstrap.start(0), Step::Discover(_)));
        let smaller = Datagram {
            verb: Verb::Discover,
            overlay: "o".into(),
            node_id: NodeId::from_u128(2),
            port: 9,
        };
        let mut now = 0;
        for _ in 0..MAX_ROUNDS_WAITED {
            bootstrap.heard(now + 1, &smaller, at(9), false);
            now += ROUND_MS;
            assert!(
                matches!(bootstrap.handle_timeout(now), Step::Discover(_)),
                "asked again"
            );
        }
        bootstrap.heard(now + 1, &smaller, at(9), false);
        now += ROUND_MS;
        assert!(matches!(bootstrap.handle_timeout(now), Step::StartAlone(_)));
    }

    #[test]
    fn discovery_answers_are_budgeted_per_second() {
        let mut bootstrap = Bootstrap::new(BootstrapPlan::default(), "o", NodeId::from_u128(5), 1);
        let ask = Datagram {
            verb: Verb::Discover,
            overlay: "o".into(),
            node_id: NodeId::from_u128(7),
            port: 9,
        };
        let answered = (0..100)
            .filter(|_| bootstrap.heard(5_000, &ask, at(9), true).is_some())
            .count();
        assert_eq!(answered, ANSWERS_PER_SECOND as usize);
        assert!(bootstrap.heard(6_000, &ask, at(9), true).is_some(), "a new second");
        assert!(
            bootstrap.heard(6_000, &ask, at(9), false).is_none(),
            "not joined: no answer"
        );
    }
}
