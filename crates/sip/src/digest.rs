//! HTTP Digest for SIP — RFC 3261 §22.4, RFC 7616 (MD5 and SHA-256) and
//! RFC 8760 (SHA-256 in SIP).
//!
//! Nonces are stateless: a timestamp and a keyed hash of it, so any number
//! of phones can be challenged without the registrar remembering anything.
//! A nonce older than [`NONCE_LIFETIME_MS`] is answered with `stale=true`
//! (RFC 7616 §3.3), which makes the phone retry with the same password.
//! Which nonce counts a nonce has used is remembered once it authorized
//! something ([`crate::nonce_counts`]), so credentials are not replayable.

use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;

/// How long a nonce is accepted.
pub const NONCE_LIFETIME_MS: u64 = 5 * 60 * 1000;

/// RFC 7616 §3.3 `algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// The algorithm an RFC 7616 `algorithm` token names (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// `H(data)` in lower-case hex (RFC 7616 §3.4.1).
    pub fn hash(self, parts: &[&[u8]]) -> String {
        match self {
            Algorithm::Md5 => {
                let mut h = Md5::new();
                parts.iter().for_each(|p| h.update(p));
                hex(&h.finalize())
            }
            Algorithm::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                hex(&h.finalize())
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `H(username ":" realm ":" password)` for both algorithms: what a
/// registrar keeps instead of the password (RFC 7616 §3.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ha1 {
    pub md5: String,
    pub sha256: String,
}

impl Ha1 {
    pub fn new(username: &str, realm: &str, password: &str) -> Self {
        let input = [username.as_bytes(), b":", realm.as_bytes(), b":", password.as_bytes()];
        Ha1 {
            md5: Algorithm::Md5.hash(&input),
            sha256: Algorithm::Sha256.hash(&input),
        }
    }

    fn for_algorithm(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.md5,
            Algorithm::Sha256 => &self.sha256,
        }
    }
}

/// The parameters of an `Authorization` or `Proxy-Authorization` value
/// (RFC 3261 §25.1 `digest-response`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// Absent means MD5 (RFC 7616 §3.3).
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub nc: Option<String>,
    pub qop: Option<String>,
    pub opaque: Option<String>,
}

/// Splits `k=v, k="v, with comma"` into pairs, unquoting values.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = rest[eq + 1..].trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut end = None;
            let mut escaped = false;
            for (i, c) in q.char_indices() {
                if escaped {
                    value.push(c);
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = Some(i + 1);
                    break;
                } else {
                    value.push(c);
                }
            }
            match end {
                Some(e) => (value, &q[e..]),
                None => (value, ""),
            }
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

impl Credentials {
    /// Parses a `Digest ...` credentials value; `None` for another scheme
    /// or a value missing a required parameter.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (scheme, params) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Credentials::default();
        let (mut user, mut realm, mut nonce, mut uri, mut response) = (false, false, false, false, false);
        for (k, v) in auth_params(params) {
            match k.as_str() {
                "username" => (c.username, user) = (v, true),
                "realm" => (c.realm, realm) = (v, true),
                "nonce" => (c.nonce, nonce) = (v, true),
                "uri" => (c.uri, uri) = (v, true),
                "response" => (c.response, response) = (v, true),
                "algorithm" => c.algorithm = Some(v),
                "cnonce" => c.cnonce = Some(v),
                "nc" => c.nc = Some(v),
                "qop" => c.qop = Some(v),
                "opaque" => c.opaque = Some(v),
                _ => {}
            }
        }
        (user && realm && nonce && uri && response).then_some(c)
    }

    /// A phone's side (RFC 7616 §3.4): the credentials that answer
    /// `challenge` (a WWW-Authenticate or Proxy-Authenticate value) for
    /// `method` on `uri`, with qop=auth, `cnonce` and nonce count `nc` when
    /// the challenge offers qop. `None` for a challenge that is not Digest
    /// or names an algorithm this crate does not know.
    pub fn answering(
        challenge: &str,
        user: &str,
        password: &str,
        (method, uri): (&str, &str),
        (cnonce, nc): (&str, u32),
    ) -> Option<Credentials> {
        let (scheme, params) = challenge.trim().split_once(|c: char| c.is_ascii_whitespace())?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Credentials {
            username: user.into(),
            uri: uri.into(),
            ..Default::default()
        };
        for (k, v) in auth_params(params) {
            match k.as_str() {
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "algorithm" => c.algorithm = Some(v),
                "opaque" => c.opaque = Some(v),
                "qop" if v.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) => {
                    c.qop = Some("auth".into());
                    c.cnonce = Some(cnonce.into());
                    c.nc = Some(format!("{nc:08x}"));
                }
                _ => {}
            }
        }
        c.response = c.expected_response(method, &Ha1::new(user, &c.realm, password))?;
        Some(c)
    }

    /// The `Digest ...` value of an Authorization or Proxy-Authorization
    /// header carrying these credentials.
    pub fn header_value(&self) -> String {
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
            self.username, self.realm, self.nonce, self.uri, self.response
        );
        if let Some(a) = &self.algorithm {
            v.push_str(&format!(", algorithm={a}"));
        }
        if let (Some(qop), Some(cnonce), Some(nc)) = (&self.qop, &self.cnonce, &self.nc) {
            v.push_str(&format!(", cnonce=\"{cnonce}\", nc={nc}, qop={qop}"));
        }
        if let Some(o) = &self.opaque {
            v.push_str(&format!(", opaque=\"{o}\""));
        }
        v
    }

    pub fn algorithm(&self) -> Option<Algorithm> {
        match &self.algorithm {
            None => Some(Algorithm::Md5),
            Some(a) => Algorithm::from_name(a),
        }
    }

    /// The `response` a phone knowing the password computes for a request
    /// with this `method` (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1 without qop).
    pub fn expected_response(&self, method: &str, ha1: &Ha1) -> Option<String> {
        let alg = self.algorithm()?;
        let ha1 = ha1.for_algorithm(alg);
        let ha2 = alg.hash(&[method.as_bytes(), b":", self.uri.as_bytes()]);
        Some(match self.qop.as_deref() {
            Some(qop) if qop.eq_ignore_ascii_case("auth") => {
                let (cnonce, nc) = (self.cnonce.as_deref()?, self.nc.as_deref()?);
                alg.hash(&[
                    ha1.as_bytes(),
                    b":",
                    self.nonce.as_bytes(),
                    b":",
                    nc.as_bytes(),
                    b":",
                    cnonce.as_bytes(),
                    b":",
                    qop.as_bytes(),
                    b":",
                    ha2.as_bytes(),
                ])
            }
            // auth-int protects the body too; phones do not use it.
            Some(_) => return None,
            None => alg.hash(&[ha1.as_bytes(), b":", self.nonce.as_bytes(), b":", ha2.as_bytes()]),
        })
    }

    /// Whether the phone knew the password.
    pub fn verify(&self, method: &str, ha1: &Ha1) -> bool {
        self.expected_response(method, ha1).is_some_and(|expected| {
            constant_time_eq(expected.as_bytes(), self.response.to_ascii_lowercase().as_bytes())
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    Fresh {
        issued_ms: u64,
    },
    /// Ours but too old: challenge again with `stale=true`.
    Stale,
    /// Not made by this registrar.
    Invalid,
}

/// Issues and checks stateless nonces: 16 hex digits of milliseconds, 8
/// of a counter (two challenges in one millisecond get different nonces,
/// so one phone's nonce count never collides with another's), and 32 of
/// SHA-256(secret, stamp, realm). The input has a fixed length, so the
/// keyed hash is not open to length extension.
#[derive(Clone)]
pub struct Nonces {
    secret: [u8; 32],
    issued: u32,
}

/// Hex digits of time and counter before the keyed hash.
const STAMP_LEN: usize = 24;
const NONCE_LEN: usize = STAMP_LEN + 32;

impl Nonces {
    pub fn new(secret: [u8; 32]) -> Self {
        Nonces { secret, issued: 0 }
    }

    fn mac(&self, stamp: &str, realm: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(stamp.as_bytes());
        h.update(Sha256::digest(realm.as_bytes()));
        hex(&h.finalize()[..16])
    }

    pub fn issue(&mut self, now_ms: u64, realm: &str) -> String {
        self.issued = self.issued.wrapping_add(1);
        let stamp = format!("{now_ms:016x}{:08x}", self.issued);
        let mac = self.mac(&stamp, realm);
        stamp + &mac
    }

    pub fn check(&self, nonce: &str, now_ms: u64, realm: &str) -> NonceState {
        if nonce.len() != NONCE_LEN || !nonce.is_ascii() {
            return NonceState::Invalid;
        }
        let (stamp, mac) = nonce.split_at(STAMP_LEN);
        if !constant_time_eq(self.mac(stamp, realm).as_bytes(), mac.as_bytes()) {
            return NonceState::Invalid;
        }
        let Ok(issued) = u64::from_str_radix(&stamp[..16], 16) else {
            return NonceState::Invalid;
        };
        if now_ms.saturating_sub(issued) > NONCE_LIFETIME_MS || issued > now_ms + 1000 {
            NonceState::Stale
        } else {
            NonceState::Fresh { issued_ms: issued }
        }
    }
}

/// The challenges a registrar offers when nothing else is configured: MD5
/// alone. Phones older than RFC 8760 give up on a response carrying any
/// challenge they cannot answer, even next to an MD5 one (baresip 1.0 of
/// Debian 12 ends registration with ENOSYS); Kamailio and Asterisk
/// challenge with MD5 alone for the same reason. Decision 0008.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::Md5];

/// `WWW-Authenticate` values, one per algorithm in `algorithms`, in that
/// order: RFC 7616 §3.7 and RFC 8760 §2.4 want the preferred one first.
pub fn challenges(realm: &str, nonce: &str, stale: bool, algorithms: &[Algorithm]) -> Vec<String> {
    let stale = if stale { ", stale=true" } else { "" };
    algorithms
        .iter()
        .map(|a| {
            format!(
                "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                a.name()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1: the worked example (an HTTP request, with both
    /// algorithms) pins the hashing down byte for byte.
    #[test]
    fn rfc7616_worked_example_for_md5_and_sha256() {
        let ha1 = Ha1::new("Mufasa", "http-auth@example.org", "Circle of Life");
        let mut c = Credentials {
            username: "Mufasa".into(),
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            uri: "/dir/index.html".into(),
            response: String::new(),
            algorithm: Some("MD5".into()),
            cnonce: Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into()),
            nc: Some("00000001".into()),
            qop: Some("auth".into()),
            opaque: Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS".into()),
        };
        assert_eq!(
            c.expected_response("GET", &ha1).unwrap(),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        c.algorithm = Some("SHA-256".into());
        assert_eq!(
            c.expected_response("GET", &ha1).unwrap(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn parses_quoted_values_with_commas_and_verifies_without_qop() {
        let ha1 = Ha1::new("alice", "overlay.test", "pw");
        let nonce = "abc";
        let ha2 = Algorithm::Md5.hash(&[b"REGISTER:sip:overlay.test"]);
        let response = Algorithm::Md5.hash(&[ha1.md5.as_bytes(), b":abc:", ha2.as_bytes()]);
        let value = format!(
            r#"Digest username="alice",realm="overlay.test", nonce="{nonce}", uri="sip:overlay.test", response="{response}", opaque="a,b""#
        );
        let c = Credentials::parse(&value).unwrap();
        assert_eq!(c.opaque.as_deref(), Some("a,b"));
        assert!(c.verify("REGISTER", &ha1));
        assert!(!c.verify("INVITE", &ha1));
        assert!(!c.verify("REGISTER", &Ha1::new("alice", "overlay.test", "wrong")));
        assert!(Credentials::parse("Basic YWxpY2U6cHc=").is_none());
        assert!(Credentials::parse(r#"Digest username="alice""#).is_none());
    }

    #[test]
    fn nonces_are_fresh_then_stale_and_forgeries_are_invalid() {
        let mut n = Nonces::new([7; 32]);
        let nonce = n.issue(1_000_000, "r");
        assert_ne!(n.issue(1_000_000, "r"), nonce, "unique within a millisecond");
        assert_eq!(
            n.check(&nonce, 1_000_500, "r"),
            NonceState::Fresh { issued_ms: 1_000_000 }
        );
        assert_eq!(
            n.check(&nonce, 1_000_000 + NONCE_LIFETIME_MS + 1, "r"),
            NonceState::Stale
        );
        assert_eq!(n.check(&nonce, 1_000_500, "other realm"), NonceState::Invalid);
        assert_eq!(Nonces::new([8; 32]).check(&nonce, 1_000_500, "r"), NonceState::Invalid);
        let mut forged = nonce.clone().into_bytes();
        forged[3] ^= 1;
        assert_eq!(
            n.check(&String::from_utf8(forged).unwrap(), 1_000_500, "r"),
            NonceState::Invalid
        );
        assert_eq!(n.check("short", 0, "r"), NonceState::Invalid);
    }
    /// A phone's answer to a challenge parses back and verifies (the
    /// registrar's side of the same credentials), with qop and without.
    #[test]
    fn an_answer_to_a_challenge_verifies() {
        let ha1 = Ha1::new("alice", "overlay.test", "secret");
        for offer in [
            r#"Digest realm="overlay.test", nonce="abc", algorithm=MD5, qop="auth""#,
            r#"Digest realm="overlay.test", nonce="abc""#,
        ] {
            let c = Credentials::answering(offer, "alice", "secret", ("INVITE", "sip:bob@overlay.test"), ("c1", 3))
                .unwrap();
            let back = Credentials::parse(&c.header_value()).unwrap();
            assert_eq!(back, c);
            assert!(back.verify("INVITE", &ha1), "{offer}");
            assert!(!back.verify("BYE", &ha1));
        }
        assert!(Credentials::answering("Basic realm=x", "a", "b", ("INVITE", "sip:x"), ("c", 1)).is_none());
    }
}
