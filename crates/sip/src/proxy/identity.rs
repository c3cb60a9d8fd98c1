//! Who a phone's request is from, as the overlay sees it.
//!
//! - RFC 3261 §22.3: credentials for this peer's own realm were for this
//!   peer; they go no further (the callee's phone would otherwise see the
//!   caller's Proxy-Authorization, ready to replay).
//! - RFC 3325: the overlay is the trust domain. What a phone says about
//!   itself in P-Asserted-Identity or P-Preferred-Identity is dropped; the
//!   peer asserts the user it authenticated (by digest, or by the flow
//!   that user's phone registered over), and a From that names anyone
//!   else is refused, so a callee's phone never shows a forged caller.

use crate::digest::Credentials;
use crate::headers::NameAddr;
use crate::message::SipMessage;

/// Removes what a phone may not bring into the overlay: identity
/// assertions it made itself and credentials for this peer's `realm`.
pub fn strip_from_phone(request: &mut SipMessage, realm: &str) {
    request.headers.retain(|h| {
        let own_credentials = h.is("Proxy-Authorization")
            && Credentials::parse(&h.value()).is_some_and(|c| c.realm.eq_ignore_ascii_case(realm));
        !(own_credentials || h.is("P-Asserted-Identity") || h.is("P-Preferred-Identity"))
    });
}

/// Binds a request from a phone to the `user` of `domain` it was
/// authenticated as: its From must name that user, or nobody (RFC 3323
/// §4.1.1.3's anonymous From, a phone hiding its number), and the peer
/// asserts the user (RFC 3325 §9.1). `Err` is the reason phrase of the
/// 403 to send.
pub fn assert_user(request: &mut SipMessage, user: &str, domain: &str) -> Result<(), &'static str> {
    let from = request
        .header("From")
        .and_then(|f| NameAddr::parse(&f).ok())
        .ok_or("From Does Not Match The Authenticated User")?;
    let same_user = from.uri.user.as_deref() == Some(user) && from.uri.host.eq_ignore_ascii_case(domain);
    let anonymous = from.uri.host.eq_ignore_ascii_case("anonymous.invalid");
    if !same_user && !anonymous {
        return Err("From Does Not Match The Authenticated User");
    }
    request.push("P-Asserted-Identity", &format!("<sip:{user}@{domain}>"));
    Ok(())
}

/// RFC 3325 §7: a request whose Privacy asks for `id` reaches a phone
/// without the caller's asserted identity.
pub fn keep_private(request: &mut SipMessage) {
    let private = request
        .list("Privacy")
        .iter()
        .flat_map(|v| v.split(';').map(str::trim).collect::<Vec<_>>())
        .any(|p| p.eq_ignore_ascii_case("id"));
    if private {
        request.headers.retain(|h| !h.is("P-Asserted-Identity"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(from: &str, extra: &str) -> SipMessage {
        let text = format!(
            "INVITE sip:bob@overlay.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7001;branch=z9hG4bKx\r\n\
             From: {from};tag=1\r\nTo: <sip:bob@overlay.test>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        );
        SipMessage::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn own_realm_credentials_and_self_assertions_are_stripped_others_kept() {
        let mut r = invite(
            "<sip:alice@overlay.test>",
            "Proxy-Authorization: Digest username=\"alice\", realm=\"overlay.test\", nonce=\"n\", uri=\"sip:bob@overlay.test\", response=\"r\"\r\n\
             Proxy-Authorization: Digest username=\"alice\", realm=\"carrier.example\", nonce=\"n\", uri=\"sip:bob@overlay.test\", response=\"r\"\r\n\
             P-Asserted-Identity: <sip:ceo@overlay.test>\r\nP-Preferred-Identity: <sip:ceo@overlay.test>\r\n",
        );
        strip_from_phone(&mut r, "OVERLAY.test");
        let left: Vec<String> = r.headers.iter().map(|h| h.value().into_owned()).collect();
        assert!(left.iter().all(|v| !v.contains("realm=\"overlay.test\"")), "{left:?}");
        assert!(
            left.iter().any(|v| v.contains("realm=\"carrier.example\"")),
            "another realm's stay"
        );
        assert!(!r.has("P-Asserted-Identity") && !r.has("P-Preferred-Identity"));
    }

    #[test]
    fn the_from_must_name_the_authenticated_user_who_is_then_asserted() {
        let mut r = invite("\"Alice\" <sip:alice@Overlay.Test>", "");
        assert_eq!(assert_user(&mut r, "alice", "overlay.test"), Ok(()));
        assert_eq!(
            r.header("P-Asserted-Identity").as_deref(),
            Some("<sip:alice@overlay.test>")
        );
        for from in [
            "<sip:bob@overlay.test>",
            "<sip:alice@elsewhere.example>",
            "<sip:overlay.test>",
        ] {
            let mut r = invite(from, "");
            assert!(assert_user(&mut r, "alice", "overlay.test").is_err(), "{from}");
        }
        let mut hidden = invite("\"Anonymous\" <sip:anonymous@anonymous.invalid>", "Privacy: id\r\n");
        assert_eq!(assert_user(&mut hidden, "alice", "overlay.test"), Ok(()), "RFC 3323");
        assert!(hidden.has("P-Asserted-Identity"), "asserted inside the overlay");
        keep_private(&mut hidden);
        assert!(
            !hidden.has("P-Asserted-Identity"),
            "but not shown to the callee's phone"
        );
        let mut open = invite("<sip:alice@overlay.test>", "Privacy: none\r\n");
        assert_user(&mut open, "alice", "overlay.test").unwrap();
        keep_private(&mut open);
        assert!(open.has("P-Asserted-Identity"));
    }
}
