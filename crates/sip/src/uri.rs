//! SIP and SIPS URIs — RFC 3261 §19.1.

use crate::message::unquoted;
use std::fmt;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    #[error("{0:?} is not a sip: or sips: URI")]
    Scheme(String),
    #[error("{0:?} has no host")]
    NoHost(String),
    #[error("{0:?} has a bad port")]
    Port(String),
}

/// `sip:user:password@host:port;uri-parameters?headers` (RFC 3261 §19.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// `sip` or `sips`, lower case.
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// As written; an IPv6 reference keeps its brackets.
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
    /// Everything after `?`, as written.
    pub headers: Option<String>,
}

/// Splits `;a=b;c` into parameters, leaving `;` inside quotes alone.
pub fn parse_params(s: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut push = |part: &str| {
        let part = part.trim();
        if part.is_empty() {
            return;
        }
        match part.split_once('=') {
            Some((k, v)) => out.push((k.trim().to_string(), Some(v.trim().to_string()))),
            None => out.push((part.to_string(), None)),
        }
    };
    for (i, _) in unquoted(s).filter(|(_, b)| *b == b';') {
        push(&s[start..i]);
        start = i + 1;
    }
    push(&s[start..]);
    out
}

/// The value of a parameter: `Some(None)` for a flag like `;lr`.
pub fn param<'a>(params: &'a [(String, Option<String>)], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

pub fn write_params(f: &mut fmt::Formatter<'_>, params: &[(String, Option<String>)]) -> fmt::Result {
    for (k, v) in params {
        match v {
            Some(v) => write!(f, ";{k}={v}")?,
            None => write!(f, ";{k}")?,
        }
    }
    Ok(())
}

impl Uri {
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let text = text.trim();
        let (scheme, rest) = text.split_once(':').ok_or_else(|| UriError::Scheme(text.into()))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return Err(UriError::Scheme(text.into()));
        }
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h.to_string())),
            None => (rest, None),
        };
        let (userinfo, hostpart) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(u.to_string()), None),
            },
            None => (None, None),
        };
        let (hostport, params) = match hostpart.split_once(';') {
            Some((h, p)) => (h, parse_params(p)),
            None => (hostpart, Vec::new()),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| UriError::Port(text.into()))?;
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '<' || c == '>') {
            return Err(UriError::NoHost(text.into()));
        }
        Ok(Uri {
            scheme,
            user: user.filter(|u| !u.is_empty()),
            password,
            host: host.to_string(),
            port,
            params,
            headers,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }

    /// The address-of-record form: `scheme:user@host`, host in lower case,
    /// without port, parameters or headers (RFC 3261 §10.3 step 5).
    pub fn aor(&self) -> String {
        match &self.user {
            Some(u) => format!("{}:{}@{}", self.scheme, u, self.host.to_ascii_lowercase()),
            None => format!("{}:{}", self.scheme, self.host.to_ascii_lowercase()),
        }
    }

    /// The transport the `transport` parameter asks for, lower case.
    pub fn transport(&self) -> Option<String> {
        self.param("transport").flatten().map(|t| t.to_ascii_lowercase())
    }
}

/// `host[:port]`, with an IPv6 reference in brackets.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let s = s.trim();
    if s.starts_with('[') {
        let close = s.find(']')?;
        let (host, rest) = s.split_at(close + 1);
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part_and_writes_it_back() {
        let text = "sip:alice:secret@[::1]:5070;transport=tcp;lr?subject=hi";
        let u = Uri::parse(text).unwrap();
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, "[::1]");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.to_string(), text);
    }

    #[test]
    fn the_aor_drops_port_and_parameters_and_lowers_the_host() {
        let u = Uri::parse("SIP:bob@Overlay.Example:5060;user=phone").unwrap();
        assert_eq!(u.aor(), "sip:bob@overlay.example");
    }

    #[test]
    fn refuses_other_schemes_hostless_uris_and_bad_ports() {
        assert!(matches!(Uri::parse("tel:+15551234"), Err(UriError::Scheme(_))));
        assert!(matches!(Uri::parse("sip:alice@"), Err(UriError::NoHost(_))));
        assert!(matches!(Uri::parse("sip:alice@host:99999"), Err(UriError::Port(_))));
        assert!(matches!(Uri::parse("sip:[::1"), Err(UriError::Port(_))));
    }
}
