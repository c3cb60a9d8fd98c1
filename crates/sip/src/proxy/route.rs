//! Where a SIP message goes next: the peer's own addresses, Via stamping
//! and URI resolution (RFC 3261 §16.4, §18.2.1, §18.2.2; RFC 3581).

use crate::headers::{NameAddr, Via};
use crate::message::SipMessage;
use crate::registrar::{Flow, Transport};
use crate::uri::Uri;
use std::net::{IpAddr, SocketAddr};

/// Which of the peer's SIP listeners a message came in on, or leaves
/// through: the one phones use (UDP and TCP, `--sip`) or the one other
/// peers reach over AppAttach (TCP, RFC 7904 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Phones,
    Overlay,
}

/// The peer's SIP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interfaces {
    /// Phones' UDP and TCP.
    pub phones: SocketAddr,
    pub overlay: SocketAddr,
    /// Phones' TLS (RFC 3261 §26.2), when the peer has a certificate for
    /// the overlay's domain.
    pub phones_tls: Option<SocketAddr>,
    /// A dual-stack peer's phones' UDP and TCP in the other IP family.
    pub phones_other_family: Option<SocketAddr>,
}

impl Interfaces {
    /// The address a side presents in Via and Record-Route over `flow`:
    /// between peers always the overlay-side listener; toward phones and
    /// other domains the listener of the transport, in the flow's IP
    /// family when the peer has one in both.
    pub fn address(&self, side: Side, flow: Flow) -> SocketAddr {
        match (side, flow.transport, self.phones_tls) {
            (Side::Phones, Transport::Tls, Some(tls)) => tls,
            (Side::Phones, _, _) => self
                .phones_other_family
                .filter(|other| other.is_ipv4() == flow.remote.is_ipv4())
                .unwrap_or(self.phones),
            (Side::Overlay, _, _) => self.overlay,
        }
    }

    /// Whether `uri` names this peer (a Route entry it wrote itself).
    pub fn is_mine(&self, uri: &Uri) -> bool {
        self.names_me(&uri.host, uri.port)
    }

    /// Whether `host[:port]` (port 5060 when absent) is one of this peer's
    /// SIP addresses.
    fn names_me(&self, host: &str, port: Option<u16>) -> bool {
        let mine = [
            Some(self.phones),
            Some(self.overlay),
            self.phones_tls,
            self.phones_other_family,
        ];
        host_ip(host).is_some_and(|ip| mine.contains(&Some(SocketAddr::new(ip, port.unwrap_or(5060)))))
    }

    /// The Record-Route entry for one side of this peer, the one `flow`
    /// leaves or came in by (RFC 3261 §16.6 step 4): `lr`, the transport
    /// when it is not UDP, and the dialog's proof ([`super::dialog_proof`]).
    pub fn record_route(&self, side: Side, flow: Flow, proof: &str) -> String {
        let addr = self.address(side, flow);
        let dlg = super::dialog_proof::PARAM;
        match flow.transport {
            Transport::Udp => format!("<sip:{addr};lr;{dlg}={proof}>"),
            Transport::Tcp => format!("<sip:{addr};transport=tcp;lr;{dlg}={proof}>"),
            Transport::Tls => format!("<sip:{addr};transport=tls;lr;{dlg}={proof}>"),
        }
    }

    /// The Via this peer puts on a request it sends over `flow` (§16.6
    /// step 8).
    pub fn via(&self, side: Side, flow: Flow, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            flow.transport.name(),
            self.address(side, flow)
        )
    }

    /// Whether a Via header value is one this peer wrote.
    pub fn wrote(&self, via: &Via) -> bool {
        self.names_me(&via.host, via.port)
    }
}

/// The IP address a host names when it is an IP literal (IPv6 in
/// brackets or not); `None` for a host name, which this peer never resolves.
pub fn host_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// A phone behind a NAT writes its private address in Contact; the
/// requests of its dialogs must go to the address its messages come from
/// (RFC 3581's `received`/`rport` for responses, here for the dialog's
/// remote target), as conventional proxies do for phones without SIP
/// outbound (Kamailio's `fix_nated_contact`). A Contact whose host is an
/// IP address other than `from`'s, or whose port differs, gets `from`'s;
/// its user part and parameters stay. Only one Contact is rewritten (a
/// dialog has one remote target); a wildcard or a host name is left.
pub fn fix_nated_contact(message: &mut SipMessage, from: SocketAddr) {
    let contacts = message.list("Contact");
    let [only] = contacts.as_slice() else {
        return;
    };
    let Ok(mut contact) = NameAddr::parse(only) else {
        return;
    };
    let default_port = if contact.uri.scheme == "sips" { 5061 } else { 5060 };
    let Some(ip) = host_ip(&contact.uri.host) else {
        return;
    };
    if SocketAddr::new(ip, contact.uri.port.unwrap_or(default_port)) == from {
        return;
    }
    contact.uri.host = match from.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    contact.uri.port = Some(from.port());
    // The flow is UDP: a transport the phone named for its own address
    // does not go with the NAT's.
    contact
        .uri
        .params
        .retain(|(name, _)| !name.eq_ignore_ascii_case("transport"));
    message.remove_all("Contact");
    message.push("Contact", &contact.to_string());
}

/// RFC 3261 §18.2.1 and RFC 3581 §4: the top Via of a request gets
/// `received` when its sent-by is not where the request came from, and
/// `rport` filled in when the sender asked for it, so responses (and
/// requests to a phone behind a NAT) find their way back.
pub fn stamp_received(request: &mut SipMessage, from: SocketAddr) {
    let Some(top) = request.list("Via").into_iter().next() else {
        return;
    };
    let Some(mut via) = Via::parse(&top) else {
        return;
    };
    let source = from.ip().to_string();
    let sent_by_ip = host_ip(&via.host);
    let mut changed = false;
    if sent_by_ip != Some(from.ip()) {
        via.set_param("received", Some(source.clone()));
        changed = true;
    }
    if via.param("rport").is_some() {
        via.set_param("rport", Some(from.port().to_string()));
        if via.param("received").is_none() {
            via.set_param("received", Some(source));
        }
        changed = true;
    }
    if changed {
        request.remove_first("Via");
        request.prepend("Via", &via.to_string());
    }
}

/// The address a request's sender listens on for TLS, when it came over
/// a TLS connection from another port of the same host: its top Via's
/// sent-by (RFC 3261 §18.2.2; port 5061 by default). Requests this peer
/// later sends to that address may go over the same connection (RFC 5923
/// §5's reuse, without its `alias` flag, which most servers do not send:
/// only toward the same host's address, so no sender can draw another
/// host's requests onto its connection).
pub fn connection_alias(request: &SipMessage, flow: Flow) -> Option<Flow> {
    if flow.transport != Transport::Tls {
        return None;
    }
    let top = Via::parse(request.list("Via").first()?)?;
    let ip = host_ip(&top.host).filter(|ip| *ip == flow.remote.ip())?;
    let advertised = SocketAddr::new(ip, top.port.unwrap_or(5061));
    (top.transport == "TLS" && advertised != flow.remote).then_some(Flow {
        transport: Transport::Tls,
        remote: advertised,
    })
}

/// Where a response goes after this peer took its own Via off (§18.2.2):
/// the `received`/`rport` of the next Via, or its sent-by.
pub fn response_flow(via: &Via) -> Option<Flow> {
    let transport = match via.transport.as_str() {
        "UDP" => Transport::Udp,
        "TCP" => Transport::Tcp,
        "TLS" => Transport::Tls,
        _ => return None,
    };
    let host = via.param("received").flatten().unwrap_or(&via.host);
    let ip = host_ip(host)?;
    let port = via
        .param("rport")
        .flatten()
        .and_then(|p| p.parse::<u16>().ok())
        .or(via.port)
        .unwrap_or(5060);
    Some(Flow {
        transport,
        remote: SocketAddr::new(ip, port),
    })
}

/// The flow a URI names (RFC 3263 reduced to what a peer needs: an IP
/// address, a port defaulting to 5060, UDP unless `transport=tcp` or
/// `transport=tls`, which only peers' Record-Routes carry). Host names,
/// `sips:` and other transports give `None`: this peer resolves no DNS
/// and takes TLS only from other peers.
pub fn uri_flow(uri: &Uri) -> Option<Flow> {
    if uri.scheme != "sip" {
        return None;
    }
    let ip = host_ip(&uri.host)?;
    let transport = match uri.transport().as_deref() {
        None | Some("udp") => Transport::Udp,
        Some("tcp") => Transport::Tcp,
        Some("tls") => Transport::Tls,
        Some(_) => return None,
    };
    Some(Flow {
        transport,
        remote: SocketAddr::new(ip, uri.port.unwrap_or(5060)),
    })
}

/// This peer's own entries at the top of a request's route set.
#[derive(Debug, Default)]
pub struct OwnRoutes {
    /// There were some: the request follows a dialog that went through
    /// this peer, if their proofs say so.
    pub popped: bool,
    /// Their `dlg` proofs ([`super::dialog_proof`]).
    pub proofs: Vec<String>,
    /// Their user parts: the flow tokens of this peer's Path entries
    /// ([`super::home_registration`]).
    pub users: Vec<String>,
}

/// §16.4: takes the Route entries that name this peer off the top of the
/// route set.
pub fn pop_own_routes(request: &mut SipMessage, me: &Interfaces) -> OwnRoutes {
    let mut own = OwnRoutes::default();
    while let Some(top) = request.list("Route").into_iter().next() {
        let Some(uri) = NameAddr::parse(&top).ok().map(|r| r.uri).filter(|u| me.is_mine(u)) else {
            break;
        };
        own.proofs.extend(super::dialog_proof::proof_of(&uri));
        own.users.extend(uri.user.clone());
        request.remove_first("Route");
        own.popped = true;
    }
    own
}

/// The URI of the top Route entry, if any.
pub fn top_route(request: &SipMessage) -> Option<Result<Uri, ()>> {
    let top = request.list("Route").into_iter().next()?;
    Some(NameAddr::parse(&top).map(|n| n.uri).map_err(|_| ()))
}

#[cfg(test)]
mod nated_contact_tests {
    use super::*;

    fn with_contact(contact: &str) -> SipMessage {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
             To: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\nContent-Length: 0\r\n\r\n"
        );
        SipMessage::parse(text.as_bytes()).unwrap()
    }

    fn contact_after(contact: &str, from: &str) -> String {
        let mut message = with_contact(contact);
        fix_nated_contact(&mut message, from.parse().unwrap());
        message.list("Contact").join(", ")
    }

    #[test]
    fn a_private_contact_takes_the_address_the_message_came_from() {
        assert_eq!(
            contact_after("<sip:bob@10.1.0.2:5062;transport=UDP;ob>", "203.0.113.101:40000"),
            "<sip:bob@203.0.113.101:40000;ob>"
        );
        assert_eq!(
            contact_after("<sip:10.1.0.2>", "[2001:db8::7]:5070"),
            "<sip:[2001:db8::7]:5070>"
        );
    }

    #[test]
    fn a_contact_that_is_where_the_message_came_from_or_a_name_or_several_stay() {
        for (contact, from) in [
            ("<sip:bob@198.51.100.7:5060>", "198.51.100.7:5060"),
            ("<sip:bob@198.51.100.7>", "198.51.100.7:5060"),
            ("<sip:bob@phone.example>", "198.51.100.7:5060"),
            ("<sip:a@10.0.0.1>, <sip:b@10.0.0.2>", "198.51.100.7:5060"),
        ] {
            let mut message = with_contact(contact);
            let before = message.to_bytes();
            fix_nated_contact(&mut message, from.parse().unwrap());
            assert_eq!(message.to_bytes(), before, "{contact}");
        }
    }
}
