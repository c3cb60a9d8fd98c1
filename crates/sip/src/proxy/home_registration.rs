//! Registration with a home network through the overlay (issue 34 §3,
//! decision 0034), as a visited network's P-CSCF does: a user of this
//! peer registers an account of another domain (`dave@home.example`)
//! through it. The REGISTER goes to that domain's registrar like any
//! request for another domain, with a Path entry of this peer (RFC 3327)
//! so that the home network's requests for the phone come back through
//! it, and the home registrar's challenge goes back to the phone
//! untouched.
//!
//! The Path entry carries a proof, as Record-Route entries do
//! ([`super::dialog_proof`], with a key derived for Paths alone): a keyed
//! hash of the phone's flow. A request that arrives with a Route naming
//! this peer and such a proof goes to the Request-URI (the contact the
//! home registrar stored) only when the proof names that contact's flow
//! and a user of this peer is still registered over it: the home network
//! reaches the phone that registered, while it is there, and nobody can
//! use the peer to reach anyone else.
//!
//! Choices where the RFCs leave one:
//! - Path is added whether or not the phone said `Supported: path`: RFC
//!   3327 §5.2 would have a proxy leave it out, but the home network
//!   could then not reach the phone through the overlay at all.
//! - The registration asked for lives at most as long as the phone's
//!   registration with the overlay over the same flow (the shorter of the
//!   two), or [`UNBOUND_MAX_EXPIRES_S`] without one: a peer that dies
//!   takes its Path with it, and the phone registers again elsewhere.

use super::dialog_proof::{DialogKey, Hop};
use super::route::{uri_flow, Interfaces, Side};
use crate::headers::NameAddr;
use crate::message::SipMessage;
use crate::registrar::{Flow, Registrar, Transport};
use crate::uri::Uri;

/// What the key of Path proofs is derived with.
const PATH_KEY: &[u8] = b"p2psip path proof";

/// Seconds a home registration may ask for when the phone holds no
/// registration with the overlay on the same flow.
pub const UNBOUND_MAX_EXPIRES_S: u32 = 600;

/// Whether `request` is a REGISTER for an address of record of another
/// domain than `domain`.
pub fn registers_elsewhere(request: &SipMessage, domain: &str) -> bool {
    request.method() == Some("REGISTER")
        && request
            .header("To")
            .and_then(|t| NameAddr::parse(&t).ok())
            .is_some_and(|to| !to.uri.host.eq_ignore_ascii_case(domain))
}

/// Readies a REGISTER of `user`'s phone on `phone` for the home
/// registrar: this peer's Path entry on top, the expiry capped.
pub(super) fn prepare(
    request: &mut SipMessage,
    me: &Interfaces,
    key: &DialogKey,
    phone: Flow,
    (registrar, user, now): (&Registrar, &str, u64),
) {
    let proof = key.derived(PATH_KEY).proof("", &[Hop::Flow(phone)]);
    request.prepend("Path", &me.record_route(Side::Phones, Transport::Udp, &proof));
    let overlay_left_s = registrar
        .contacts(user, now)
        .iter()
        .filter(|b| b.flow == phone)
        .map(|b| u32::try_from(b.expires_at_ms.saturating_sub(now) / 1000).unwrap_or(u32::MAX))
        .max();
    cap_expires(request, overlay_left_s.unwrap_or(UNBOUND_MAX_EXPIRES_S));
}

/// Every expiry of the REGISTER at most `cap_s`: the Expires header
/// (written when missing) and each Contact's `expires` parameter.
fn cap_expires(request: &mut SipMessage, cap_s: u32) {
    let asked = request
        .header("Expires")
        .and_then(|e| e.trim().parse::<u32>().ok())
        .unwrap_or(3600);
    request.set("Expires", &asked.min(cap_s).to_string());
    let contacts = request.list("Contact");
    if contacts.iter().any(|c| c.trim() == "*") {
        return;
    }
    let capped: Vec<String> = contacts
        .into_iter()
        .map(|c| match NameAddr::parse(&c) {
            Ok(mut contact) => {
                for (name, value) in contact.params.iter_mut() {
                    let longer = value
                        .as_deref()
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|v| v > u64::from(cap_s));
                    if name.eq_ignore_ascii_case("expires") && longer {
                        *value = Some(cap_s.to_string());
                    }
                }
                contact.to_string()
            }
            Err(_) => c,
        })
        .collect();
    request.headers.retain(|h| !h.is("Contact"));
    for contact in capped {
        request.push("Contact", &contact);
    }
}

/// The phone a request routed by this peer's Path entry goes to: the flow
/// of its Request-URI, when one of `proofs` names it and a user of this
/// peer is still registered over it.
pub(super) fn path_target(
    key: &DialogKey,
    proofs: &[String],
    request_uri: &Uri,
    (registrar, now): (&Registrar, u64),
) -> Option<Flow> {
    let flow = uri_flow(request_uri)?;
    let proven = key.derived(PATH_KEY).admits(proofs, "", &[Hop::Flow(flow)]);
    (proven && registrar.user_on(flow, now).is_some()).then_some(flow)
}
