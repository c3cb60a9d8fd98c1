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
//! Through a proxy peer (decision 0036), the user's peer writes its Path
//! entry with its address between peers, and the proxy peer the
//! REGISTER goes out through adds one of its own above it, whose token
//! names that address and how long the registration asked for: the home
//! network's requests reach the proxy peer, which passes them over the
//! overlay to the user's peer, which takes them to the phone as above.
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
/// registrar: this peer's Path entry on top, the expiry capped. Through a
/// proxy peer (`through_proxy_peer`) the entry names this peer's address
/// between peers, where the proxy peer passes the home network's requests.
pub(super) fn prepare(
    request: &mut SipMessage,
    (me, through_proxy_peer): (&Interfaces, bool),
    key: &DialogKey,
    phone: Flow,
    (registrar, user, now): (&Registrar, &str, u64),
) {
    let token = path_token(key, PathHop::Phone(phone));
    let entry = if through_proxy_peer {
        format!("<sip:{token}@{};transport=tls;lr>", me.overlay)
    } else {
        // The home registrar is not found yet: a dual-stack peer names its
        // address in the phone's IP family.
        let udp = Flow {
            transport: Transport::Udp,
            remote: phone.remote,
        };
        format!("<sip:{token}@{};lr>", me.address(Side::Phones, udp))
    };
    request.prepend("Path", &entry);
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

/// Seconds a registration through a proxy peer may ask for: its relay
/// token lasts as long (the user's peer caps it further, to the phone's
/// registration with the overlay).
pub const RELAY_MAX_EXPIRES_S: u32 = 3600;

/// A proxy peer's Path entry above the user's peer's (decision 0036), for
/// a REGISTER that came from another peer over `from`: its token names
/// the address the peer's own entry gave (between peers, over TLS, on the
/// host the REGISTER came from) and when the registration asked for ends,
/// at most [`RELAY_MAX_EXPIRES_S`] on. Nothing is added when the top entry
/// is not such an address: no peer can have a proxy peer's token lead to
/// an address of someone else's.
pub(super) fn relay(request: &mut SipMessage, me: &Interfaces, key: &DialogKey, (from, now): (Flow, u64)) {
    let Some(peer) = request
        .list("Path")
        .first()
        .and_then(|p| NameAddr::parse(p).ok())
        .and_then(|p| super::route::uri_flow(&p.uri))
        .filter(|f| f.transport == Transport::Tls && f.remote.ip() == from.remote.ip())
    else {
        return;
    };
    cap_expires(request, RELAY_MAX_EXPIRES_S);
    let asked_s = request
        .header("Expires")
        .and_then(|e| e.trim().parse::<u64>().ok())
        .unwrap_or(u64::from(RELAY_MAX_EXPIRES_S));
    let hop = PathHop::Peer {
        peer,
        until_ms: now.saturating_add(asked_s.saturating_mul(1000)),
    };
    // Its address is aimed at the home registrar's family once that is
    // known ([`aim_path`]).
    request.prepend("Path", &format!("<sip:{}@{};lr>", path_token(key, hop), me.phones));
}

/// A dual-stack peer's own Path entry on top of a REGISTER about to go to
/// `registrar` names the peer's address in the registrar's IP family, so
/// that the home network can come back to it.
pub(super) fn aim_path(request: &mut SipMessage, me: &Interfaces, registrar: Flow) {
    let Some(mut top) = request.list("Path").first().and_then(|p| NameAddr::parse(p).ok()) else {
        return;
    };
    let on_phones_side = top.uri.transport().is_none() && me.is_mine(&top.uri);
    let toward = Flow {
        transport: Transport::Udp,
        remote: registrar.remote,
    };
    let address = me.address(Side::Phones, toward);
    if !on_phones_side || super::route::host_ip(&top.uri.host) == Some(address.ip()) {
        return;
    }
    top.uri.host = match address.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    top.uri.port = Some(address.port());
    request.remove_first("Path");
    request.prepend("Path", &top.to_string());
}

/// Where a request routed by this peer's Path entry goes: the phone one of
/// `tokens` (the user parts of this peer's Route entries) names, when its
/// hash holds and a user of this peer is still registered over it; or,
/// at a proxy peer, the user's peer a relay token names, until the
/// registration it was written for ends. `routed_on` says whether the
/// request still has Route entries (the user's peer's): a phone's token
/// is the last hop, a relay token never.
pub(super) fn path_target(
    key: &DialogKey,
    tokens: &[String],
    routed_on: bool,
    (registrar, now): (&Registrar, u64),
) -> Option<(Flow, Side)> {
    tokens
        .iter()
        .filter_map(|t| hop_of_token(key, t))
        .find_map(|hop| match hop {
            PathHop::Phone(flow) if !routed_on && registrar.user_on(flow, now).is_some() => Some((flow, Side::Phones)),
            PathHop::Peer { peer, until_ms } if routed_on && now < until_ms => Some((peer, Side::Overlay)),
            _ => None,
        })
}

/// What one of this peer's Path tokens leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathHop {
    /// The phone that registered, over this flow.
    Phone(Flow),
    /// The user's peer, at its address between peers, until then.
    Peer { peer: Flow, until_ms: u64 },
}

/// `HOP` `MAC`, both hex: the hop as a kind and transport (one byte: `u`,
/// `t`, `s` for a phone's flow over UDP, TCP, TLS; `r` for a peer over
/// TLS), IP address (4 or 16 bytes), port, and for a peer the end of its
/// validity (8 bytes); the MAC a keyed hash of all of it.
fn path_token(key: &DialogKey, hop: PathHop) -> String {
    let (flow, until) = match hop {
        PathHop::Phone(flow) => (flow, None),
        PathHop::Peer { peer, until_ms } => (peer, Some(until_ms)),
    };
    let mut bytes = vec![match (flow.transport, until) {
        (_, Some(_)) => b'r',
        (Transport::Udp, None) => b'u',
        (Transport::Tcp, None) => b't',
        (Transport::Tls, None) => b's',
    }];
    match flow.remote.ip() {
        std::net::IpAddr::V4(ip) => bytes.extend(ip.octets()),
        std::net::IpAddr::V6(ip) => bytes.extend(ip.octets()),
    }
    bytes.extend(flow.remote.port().to_be_bytes());
    if let Some(until) = until {
        bytes.extend(until.to_be_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mac = key.derived(PATH_KEY).proof(&until_text(until), &[Hop::Flow(flow)]);
    hex + &mac
}

/// What a token's MAC covers besides the flow.
fn until_text(until: Option<u64>) -> String {
    until.map(|u| format!("until {u}")).unwrap_or_default()
}

/// The hop a token of [`path_token`] names, if its MAC holds.
fn hop_of_token(key: &DialogKey, token: &str) -> Option<PathHop> {
    let (hop_hex, mac) = token.split_at_checked(token.len().checked_sub(16)?)?;
    let bytes: Vec<u8> = (0..hop_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hop_hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let (kind, rest) = bytes.split_first()?;
    let (transport, relay) = match kind {
        b'u' => (Transport::Udp, false),
        b't' => (Transport::Tcp, false),
        b's' => (Transport::Tls, false),
        b'r' => (Transport::Tls, true),
        _ => return None,
    };
    let (rest, until) = if relay {
        let (rest, until) = rest.split_at_checked(rest.len().checked_sub(8)?)?;
        (rest, Some(u64::from_be_bytes(until.try_into().ok()?)))
    } else {
        (rest, None)
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
    if !key
        .derived(PATH_KEY)
        .admits(&[mac.to_string()], &until_text(until), &[Hop::Flow(flow)])
    {
        return None;
    }
    Some(match until {
        Some(until_ms) => PathHop::Peer { peer: flow, until_ms },
        None => PathHop::Phone(flow),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_token_names_its_hop_and_nothing_else() {
        let key = DialogKey::from_seed(7);
        let peer = Flow {
            transport: Transport::Tls,
            remote: "192.0.2.9:6061".parse().unwrap(),
        };
        for hop in [
            PathHop::Phone(Flow {
                transport: Transport::Tls,
                remote: "[2001:db8::5]:40123".parse().unwrap(),
            }),
            PathHop::Phone(Flow {
                transport: Transport::Tcp,
                remote: "198.51.100.7:5060".parse().unwrap(),
            }),
            PathHop::Peer {
                peer,
                until_ms: 1 << 40,
            },
        ] {
            let token = path_token(&key, hop);
            assert_eq!(hop_of_token(&key, &token), Some(hop));
            assert_eq!(
                hop_of_token(&DialogKey::from_seed(8), &token),
                None,
                "another peer's key"
            );
            // Any one hex digit changed, the address or the end of
            // validity above all, and the MAC no longer holds.
            for i in 0..token.len() - 16 {
                let mut tampered = token.clone().into_bytes();
                tampered[i] = if tampered[i] == b'0' { b'1' } else { b'0' };
                assert_eq!(hop_of_token(&key, &String::from_utf8(tampered).unwrap()), None);
            }
        }
        for garbage in ["", "zz", "73", "é0123456789abcdef0123", "0123456789abcdef"] {
            assert_eq!(hop_of_token(&key, garbage), None, "{garbage:?}");
        }
    }
}
