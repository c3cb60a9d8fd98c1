//! The sans-IO peer core: what a peer does on top of the RELOAD overlay
//! engine ([`overlay::OverlayNode`]), with no sockets, files or clocks of
//! its own, so the daemon (`node`) and the simulator (`sim`) run the same
//! code (decision 0032).
//!
//! - [`PeerCore`]: one peer as one state machine, with one [`Input`], one
//!   [`Output`] and one `poll_timeout`.
//! - [`usage`]: the usage layer (RFC 6940 §5.2) as one trait.
//! - [`sip_usage`]: the SIP usage (RFC 7904): registrations and finding
//!   where a user's phones are.
//! - [`certificates`]: the Certificate Store Usage (RFC 6940 §8).
//! - [`sip_service`]: the registrar and proxy of a peer (RFC 3261, RFC
//!   7904), which the overlay side serves through publish and locate.
//! - [`bootstrap`] and [`discovery`]: reaching the overlay (§11.4), with
//!   our multicast extension on the LAN.

pub mod bootstrap;
pub mod budget;
pub mod certificates;
pub mod config_refetch;
mod core;
pub mod discovery;
pub mod ice;
pub mod links;
pub mod relays;
pub mod sip_service;
pub mod sip_usage;
pub mod stun;
pub mod turn;
pub mod usage;

pub use crate::core::{check_configuration, Input, Output, PeerCore, WITHDRAW_WAIT_MS};
