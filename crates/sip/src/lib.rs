//! Sans-IO SIP for p2psip: the adapter/proxy-peer role (RFC 7890) every
//! peer plays for the phones attached to it.
//!
//! - [`message`]: parse and serialise SIP messages (RFC 3261 §7, §18.3,
//!   §25), keeping every header line it does not change byte-exact.
//! - [`uri`], [`headers`]: the structured values a registrar and proxy read
//!   (SIP-URI, name-addr, Via, Contact, CSeq).
//! - [`digest`]: HTTP Digest (RFC 3261 §22, RFC 7616) with MD5 and SHA-256.
//! - [`registrar`]: the phones' registrar (§10.3); [`proxy`]: the
//!   stateful proxy (§16, §17) that routes their calls through the overlay.
//!
//! Nothing here touches a socket or a clock: time comes in as an argument.

mod capacity;
pub mod digest;
pub mod headers;
pub mod intake;
pub mod message;
pub mod nonce_counts;
pub mod overload;
pub mod proxy;
pub mod registrar;
pub mod server_location;
pub mod testing;
pub mod transaction;
pub mod uri;

pub use message::{Framing, Header, ParseError, SipMessage, StartLine};
pub use uri::Uri;
