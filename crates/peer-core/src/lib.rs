//! The sans-IO peer core: what a peer does on top of the RELOAD overlay
//! engine ([`overlay::OverlayNode`]), with no sockets, files or clocks of
//! its own, so the daemon (`node`) and the simulator (`sim`) run the same
//! code.
//!
//! - [`sip_usage`]: the SIP usage (RFC 7904): registrations and finding
//!   where a user's phones are.

pub mod sip_usage;
