//! Registration with a home network through the overlay (issue 34 §3,
//! decision 0034), as a visited network's P-CSCF does: a user of this
//! peer registers an account of another domain (`dave@home.example`)
//! through it. The REGISTER goes to that domain's registrar like any
//! request for another domain, with a Path entry of this peer (RFC 3327)
//! so that the home network's requests for the phone come back through
//! it, and the home registrar's challenge goes back to the phone
//! untouched.
//!
//! The Path entry's user part is a flow token, as an RFC 5626 edge proxy
//! writes one: the phone's flow (transport, address and port as this peer
//! saw them, behind any NAT, over TCP or TLS as well) and a keyed hash of
//! it ([`super::dialog_proof`], with a key derived for Paths alone). A
//! request that arrives with a Route naming this peer and such a token goes
//! to that flow, when the hash holds and a user of this peer is still
//! registered over it: the home network reaches the phone that
//! registered, while it is there, and nobody can use the peer to reach
//! anyone else.
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
use super::route::{Interfaces, Side};
use crate::headers::NameAddr;
use crate::message::SipMessage;
use crate::registrar::{Flow, Registrar, Transport};

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
    let address = me.address(Side::Phones, Transport::Udp);
    request.prepend("Path", &format!("<sip:{}@{address};lr>", flow_token(key, phone)));
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
/// one of `tokens` (the user parts of this peer's Route entries) names,
/// when its hash holds and a user of this peer is still registered over it.
pub(super) fn path_target(key: &DialogKey, tokens: &[String], (registrar, now): (&Registrar, u64)) -> Option<Flow> {
    tokens
        .iter()
        .filter_map(|t| flow_of_token(key, t))
        .find(|flow| registrar.user_on(*flow, now).is_some())
}

/// `FLOW` `MAC`, both hex: the flow as transport (one byte), IP address
/// (4 or 16 bytes) and port; the MAC a keyed hash of it.
fn flow_token(key: &DialogKey, flow: Flow) -> String {
    let mut bytes = vec![match flow.transport {
        Transport::Udp => b'u',
        Transport::Tcp => b't',
        Transport::Tls => b's',
    }];
    match flow.remote.ip() {
        std::net::IpAddr::V4(ip) => bytes.extend(ip.octets()),
        std::net::IpAddr::V6(ip) => bytes.extend(ip.octets()),
    }
    bytes.extend(flow.remote.port().to_be_bytes());
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex + &key.derived(PATH_KEY).proof("", &[Hop::Flow(flow)])
}

/// The flow a token of [`flow_token`] names, if its MAC holds.
fn flow_of_token(key: &DialogKey, token: &str) -> Option<Flow> {
    let (flow_hex, mac) = token.split_at_checked(token.len().checked_sub(16)?)?;
    let bytes: Vec<u8> = (0..flow_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(flow_hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let (transport, rest) = bytes.split_first()?;
    let transport = match transport {
        b'u' => Transport::Udp,
        b't' => Transport::Tcp,
        b's' => Transport::Tls,
        _ => return None,
    };
    let (ip, port) = rest.split_at_checked(rest.len().checked_sub(2)?)?;
    let ip: std::net::IpAddr = match ip.len() {
        4 => <[u8; 4]>::try_from(ip).ok()?.into(),
        16 => <[u8; 16]>::try_from(ip).ok()?.into(),
        _ => return None,
    };
    let flow = Flow {
        transport,
        remote: std::net::SocketAddr::new(ip, u16::from_be_bytes(port.try_into().ok()?)),
    };
    key.derived(PATH_KEY)
        .admits(&[mac.to_string()], "", &[Hop::Flow(flow)])
        .then_some(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_token_names_its_flow_and_nothing_else() {
        let key = DialogKey::from_seed(7);
        for flow in [
            Flow {
                transport: Transport::Tls,
                remote: "[2001:db8::5]:40123".parse().unwrap(),
            },
            Flow {
                transport: Transport::Tcp,
                remote: "198.51.100.7:5060".parse().unwrap(),
            },
        ] {
            let token = flow_token(&key, flow);
            assert_eq!(flow_of_token(&key, &token), Some(flow));
            assert_eq!(
                flow_of_token(&DialogKey::from_seed(8), &token),
                None,
                "another peer's key"
            );
            let mut tampered = token.clone().into_bytes();
            tampered[4] = if tampered[4] == b'0' { b'1' } else { b'0' };
            assert_eq!(flow_of_token(&key, &String::from_utf8(tampered).unwrap()), None);
        }
        for garbage in ["", "zz", "73", "é0123456789abcdef0123", "0123456789abcdef"] {
            assert_eq!(flow_of_token(&key, garbage), None, "{garbage:?}");
        }
    }
}
