//! The p2psip peer as a program: the overlay's PKI and configuration
//! document (RFC 6940 §11), the enrollment server and client, and the
//! tokio driver of the sans-IO peer core (`peer-core`) over TLS links and
//! SIP sockets.

pub mod admin;
pub mod config_doc;
pub mod config_judge;
pub mod control;
pub mod discovery;
pub mod dns;
pub mod enrollment;
pub mod enrollment_limits;
pub mod identity;
pub mod link;
mod log_budget;
pub mod metrics;
pub mod node_dir;
pub mod overlay_dir;
mod overlay_udp;
pub mod peer;
pub mod pki;
pub mod relay;
pub mod sip_report;
pub mod sip_server;
mod sip_tcp;
pub mod sip_tls;
mod source_caps;
pub mod udp_timestamps;
