//! The engine's side of configuration updates — RFC 6940 §6.5.4 and
//! §6.3.2.1: taking a ConfigUpdate, reconfiguring, handing the update on
//! to every linked node, and telling a node whose requests or answers
//! show an older document.
//!
//! Choices (decision 0026): a node that adopts a document sends it at once
//! to every node it has a link to, with configuration sequence 65535 so it
//! is taken whatever the receiver runs; receivers that already run it
//! answer and stop there, so the update floods the overlay once.

use super::{Event, OverlayNode, Purpose};
use crate::config::OverlayConfig;
use crate::configuration::{ConfigRefusal, ConfigurationJudge};
use crate::security::Security;
use crate::topology::Topology;
use crate::Refusal;
use reload_wire::{Body, ConfigUpdateReq, Destination, NodeId};
use std::sync::Arc;

/// What became of a configuration this node was offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// The node runs on it now and passes it on.
    Adopted { sequence: u16 },
    /// The node already runs on it.
    Current { sequence: u16 },
}

impl<T: Topology, S: Security> OverlayNode<T, S> {
    /// The signed document the node runs on and the judge of updates to
    /// it. Without them the node refuses ConfigUpdates (the simulator).
    pub fn take_configuration_updates(&mut self, document: Vec<u8>, judge: Box<dyn ConfigurationJudge>) {
        self.configuration.take_updates(document, judge);
    }

    /// The usages built on this node need these Kinds under these access
    /// policies: a configuration update that changes one is refused, and a
    /// newer document that does is one this node cannot run (§11.1).
    pub fn require_kind_policies(&mut self, kinds: &[(reload_wire::KindId, crate::AccessPolicy)]) {
        self.configuration.require(kinds);
    }

    /// The signed document the node runs on, if it was given one.
    pub fn configuration_document(&self) -> Option<&Arc<[u8]>> {
        self.configuration.document()
    }

    pub fn config(&self) -> &Arc<OverlayConfig> {
        &self.config
    }

    /// The decoder limits of the configuration the node runs on now.
    pub fn decode_context(&self) -> &Arc<reload_wire::DecodeContext> {
        &self.ctx
    }

    /// A document from the operator or the configuration server (§11.1
    /// refetch): judged and adopted as a ConfigUpdate would be.
    pub fn offer_configuration(&mut self, now: u64, document: Vec<u8>) -> Result<Offered, ConfigRefusal> {
        let judged = self.configuration.judge_document(now, &self.config, &document, false);
        match judged? {
            Some(config) => {
                let sequence = config.configuration_sequence;
                self.adopt(now, config, Some(document.into()), None);
                Ok(Offered::Adopted { sequence })
            }
            None => Ok(Offered::Current {
                sequence: self.config.configuration_sequence,
            }),
        }
    }

    /// §6.5.4.2: a ConfigUpdate delivered here, from `sender` over `link`.
    pub(super) fn on_config_update(
        &mut self,
        now: u64,
        link: Option<NodeId>,
        sender: NodeId,
        req: ConfigUpdateReq,
    ) -> Result<Body, Refusal> {
        let judged = match &req {
            ConfigUpdateReq::Config(document) => self
                .configuration
                .judge_document(now, &self.config, document, true)
                .map(|c| c.map(|c| (c, Some(Arc::<[u8]>::from(document.as_slice()))))),
            ConfigUpdateReq::Kinds(blocks) => self
                .configuration
                .judge_kinds(now, &self.config, blocks)
                .map(|c| c.map(|c| (c, None))),
            ConfigUpdateReq::Unknown { update_type, .. } => Err(ConfigRefusal::UnknownType(*update_type)),
        };
        match judged {
            Ok(Some((config, document))) => {
                let kinds = matches!(req, ConfigUpdateReq::Kinds(_)).then_some(req);
                self.adopt_from(now, config, document, kinds, Some(sender), link);
                Ok(Body::ConfigUpdateAns)
            }
            Ok(None) => Ok(Body::ConfigUpdateAns),
            Err(refusal) => {
                if let ConfigRefusal::Older { .. } = refusal {
                    // §6.3.2.1: the sender runs an older document; tell it.
                    self.tell_configuration(now, vec![Destination::Node(sender)]);
                }
                self.actions
                    .push_back(super::Action::Event(Box::new(Event::ConfigurationRefused {
                        from: sender,
                        refusal: refusal.clone(),
                    })));
                Err(refusal.into())
            }
        }
    }

    fn adopt(&mut self, now: u64, config: OverlayConfig, document: Option<Arc<[u8]>>, from: Option<NodeId>) {
        self.adopt_from(now, config, document, None, from, None)
    }

    /// Runs on `config` from now on and hands the update on to every
    /// linked node but the one it came from.
    fn adopt_from(
        &mut self,
        now: u64,
        config: OverlayConfig,
        document: Option<Arc<[u8]>>,
        kinds: Option<ConfigUpdateReq>,
        from: Option<NodeId>,
        link: Option<NodeId>,
    ) {
        // Judged usable before.
        let Ok(ctx) = config.decode_context() else {
            return;
        };
        self.topology.reconfigure(&config.chord);
        self.ctx = Arc::new(ctx);
        self.config = Arc::new(config);
        if let Some(d) = &document {
            self.configuration.adopt(d.clone());
        }
        let update = match (&document, kinds) {
            (Some(d), _) => ConfigUpdateReq::Config(d.to_vec()),
            (None, Some(kinds)) => kinds,
            (None, None) => return,
        };
        self.actions
            .push_back(super::Action::Event(Box::new(Event::Reconfigured {
                sequence: self.config.configuration_sequence,
                document,
                from,
            })));
        let body = Body::ConfigUpdateReq(update);
        let targets: Vec<NodeId> = self
            .links
            .iter()
            .copied()
            .filter(|l| Some(*l) != link && Some(*l) != from)
            .collect();
        for peer in targets {
            self.originate(now, vec![Destination::Node(peer)], &body, Purpose::ConfigPush);
        }
    }

    /// §6.3.2.1 and §6.5.4: "Whenever a node detects that another node has
    /// old configuration data, it MUST generate a ConfigUpdate request",
    /// here along `path`, at most as often as the keeper allows.
    pub(super) fn tell_configuration(&mut self, now: u64, path: Vec<Destination>) {
        let Some(Destination::Node(node)) = path.last() else {
            return;
        };
        if *node == self.me || !self.configuration.may_tell(now, node.as_bytes()) {
            return;
        }
        let Some(document) = self.configuration.document().cloned() else {
            return;
        };
        let body = Body::ConfigUpdateReq(ConfigUpdateReq::Config(document.to_vec()));
        self.originate(now, path, &body, Purpose::ConfigPush);
    }
}
