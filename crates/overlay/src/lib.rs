//! The RELOAD overlay engine (RFC 6940) as sans-IO state machines.
//!
//! - [`node::OverlayNode`]: one node's forwarding (§6.1), symmetric
//!   recursive routing and end-to-end retransmission (§6.2), Attach and
//!   link bookkeeping (§6.5), storage (§7) and replica upkeep.
//! - [`topology::Topology`]: the topology-plugin boundary (§6.4.1), with
//!   [`topology::chord::ChordReload`] (§10) as the first plugin.
//! - [`storage::Storage`]: data models, lifetimes, Store/Fetch/Stat/Find
//!   and the access-control policies (§7.3).
//! - [`security::Security`]: how signatures are made and checked; the
//!   daemon backs it with certificates, the simulator with a stand-in.
//!
//! Nothing here touches a socket, a clock or a thread: every input carries
//! the current time in milliseconds since the Unix epoch, randomness comes
//! from seeded generators, and outputs are [`node::Action`]s for a driver.

pub mod config;
pub mod configuration;
pub mod link_liveness;
pub mod node;
pub mod refusal;
pub mod ring;
pub mod security;
pub mod sorted;
pub mod storage;
pub mod testing;
pub mod topology;

pub use config::{AccessPolicy, ChordConfig, KindDefinition, OverlayConfig, StorageQuota};
pub use configuration::{ConfigRefusal, ConfigurationJudge};
pub use node::{
    Action, CompletedResult, Entropy, Event, IceAttach, IceCredentials, NodeStats, Observation, Offered, OverlayNode,
    RequestId,
};
pub use refusal::Refusal;
pub use security::{Credential, Security, SecurityError, Signer, SimulatedSecurity};
pub use topology::chord::ChordReload;
pub use topology::client::ClientTopology;
pub use topology::{Answer, Holding, ProbeLink, RequestFailure, Topology, TopologyCommand};
