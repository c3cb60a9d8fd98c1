//! What the unit tests of several modules share: a phone's side of
//! digest authentication.

use crate::digest::{Algorithm, Credentials, Ha1};
use crate::message::SipMessage;

/// Answers the `alg` challenge of a 401 or 407 as a phone would: the
/// request again with Authorization or Proxy-Authorization. When `alg` is
/// not offered it answers the first challenge with `alg` anyway, as a phone
/// trying a downgrade would.
pub fn authorize(req: &SipMessage, challenge: &SipMessage, user: &str, password: &str, alg: Algorithm) -> SipMessage {
    let proxy = challenge.status() == Some(407);
    let (asked, answer) = if proxy {
        ("Proxy-Authenticate", "Proxy-Authorization")
    } else {
        ("WWW-Authenticate", "Authorization")
    };
    let offers: Vec<String> = challenge
        .headers
        .iter()
        .filter(|h| h.is(asked))
        .map(|h| h.value().into_owned())
        .collect();
    let offer = offers
        .iter()
        .find(|v| v.contains(&format!("algorithm={}", alg.name())))
        .or(offers.first())
        .expect("the answer carries a challenge");
    let quoted = |name: &str| -> String {
        offer
            .split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("quoted parameter")
            .to_string()
    };
    let realm = quoted("realm");
    let mut c = Credentials {
        username: user.into(),
        realm: realm.clone(),
        nonce: quoted("nonce"),
        uri: format!("sip:{realm}"),
        response: String::new(),
        algorithm: Some(alg.name().into()),
        cnonce: Some("c0ffee".into()),
        nc: Some("00000001".into()),
        qop: Some("auth".into()),
        opaque: None,
    };
    let method = req.method().expect("a request");
    c.response = c
        .expected_response(method, &Ha1::new(user, &realm, password))
        .expect("computable");
    let mut out = req.clone();
    out.push(
        answer,
        &format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}, cnonce=\"c0ffee\", nc=00000001, qop=auth",
            c.username, c.realm, c.nonce, c.uri, c.response, alg.name()
        ),
    );
    out
}
