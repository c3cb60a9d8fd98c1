//! Structured header values — RFC 3261 §20: name-addr (From, To, Contact,
//! Route, Record-Route) and Via.

use crate::message::unquoted;
use crate::uri::{param, parse_params, split_host_port, write_params, Uri, UriError};
use std::fmt;

/// `[display-name] <uri>;params` or `uri;params` (RFC 3261 §20.10: without
/// angle brackets, parameters after the URI belong to the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// As written, quotes included.
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let text = text.trim();
        let (display, uri, rest) = match angle_brackets(text) {
            Some((open, close)) => {
                let display = text[..open].trim();
                (
                    (!display.is_empty()).then(|| display.to_string()),
                    &text[open + 1..close],
                    &text[close + 1..],
                )
            }
            None => match text.split_once(';') {
                Some((u, p)) => (None, u, &text[u.len()..][..p.len() + 1]),
                None => (None, text, ""),
            },
        };
        Ok(NameAddr {
            display,
            uri: Uri::parse(uri)?,
            params: parse_params(rest.trim_start().strip_prefix(';').unwrap_or(rest)),
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Whether a From or To value carries a tag, without parsing its URI.
    pub fn has_tag(value: &str) -> bool {
        let after = match angle_brackets(value) {
            Some((_, close)) => &value[close + 1..],
            None => value,
        };
        param(&parse_params(after.split_once(';').map_or("", |(_, p)| p)), "tag").is_some()
    }
}

/// The `<` and `>` around the URI, skipping a quoted display name.
fn angle_brackets(text: &str) -> Option<(usize, usize)> {
    let (open, _) = unquoted(text).find(|(_, b)| *b == b'<')?;
    text[open..].find('>').map(|close| (open, open + close))
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// One Contact value (RFC 3261 §20.10): an address or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Star,
    Address(NameAddr),
}

impl Contact {
    pub fn parse(text: &str) -> Result<Self, UriError> {
        if text.trim() == "*" {
            return Ok(Contact::Star);
        }
        NameAddr::parse(text).map(Contact::Address)
    }
}

/// `SIP/2.0/UDP host:port;branch=...` (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport token, upper case (`UDP`, `TCP`, `TLS`, ...).
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// RFC 3261 §25.1 `via-parm`: `sent-protocol LWS sent-by *( SEMI
    /// via-params )`, where the slashes of `sent-protocol` are SLASH, so
    /// whitespace may surround them (RFC 4475 §3.1.1.1 `wsinv`).
    pub fn parse(text: &str) -> Option<Self> {
        let mut rest = text.trim();
        let mut protocol = [""; 3];
        for (i, part) in protocol.iter_mut().enumerate() {
            if i > 0 {
                rest = rest.trim_start().strip_prefix('/')?.trim_start();
            }
            let end = rest
                .find(|c: char| c == '/' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            (*part, rest) = rest.split_at(end);
        }
        let [name, version, transport] = protocol;
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" || transport.is_empty() {
            return None;
        }
        if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
        let (sent_by, params) = match rest.split_once(';') {
            Some((s, p)) => (s, parse_params(p)),
            None => (rest, Vec::new()),
        };
        let (host, port) = split_host_port(sent_by)?;
        if host.is_empty() {
            return None;
        }
        Some(Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self.params.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            Some(p) => p.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_with_quoted_display_name_holding_brackets_and_semicolons() {
        let n = NameAddr::parse(r#""Bob <the; boss>" <sip:bob@example.com;transport=tcp>;tag=a1;expires=60"#).unwrap();
        assert_eq!(n.display.as_deref(), Some(r#""Bob <the; boss>""#));
        assert_eq!(n.uri.user.as_deref(), Some("bob"));
        assert_eq!(n.uri.transport().as_deref(), Some("tcp"));
        assert_eq!(n.tag(), Some("a1"));
        assert_eq!(n.param("expires"), Some(Some("60")));
    }

    #[test]
    fn addr_spec_parameters_belong_to_the_header() {
        let n = NameAddr::parse("sip:alice@10.0.0.1:5060;expires=0").unwrap();
        assert_eq!(n.uri.port, Some(5060));
        assert!(n.uri.params.is_empty());
        assert_eq!(n.param("expires"), Some(Some("0")));
        assert!(NameAddr::has_tag("sip:alice@x;tag=9"));
        assert!(!NameAddr::has_tag("<sip:alice@x;tag=9>"));
    }

    #[test]
    fn via_reads_transport_sent_by_and_branch() {
        let v = Via::parse("SIP/2.0/udp 127.0.0.1:5061 ;branch=z9hG4bK776;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!((v.host.as_str(), v.port), ("127.0.0.1", Some(5061)));
        assert_eq!(v.branch(), Some("z9hG4bK776"));
        assert_eq!(v.param("rport"), Some(None));
        assert!(Via::parse("SIP/3.0/UDP h").is_none());
        assert!(Via::parse("garbage").is_none());
        assert!(Via::parse("SIP/2.0/UDP/TCP h").is_none());
        assert!(Via::parse("SIP/2.0/UDPh").is_none());
        // RFC 4475 wsinv, unfolded: SLASH and SEMI take whitespace.
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.transport.as_str(), v.host.as_str()), ("UDP", "192.0.2.2"));
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8").unwrap();
        assert_eq!((v.transport.as_str(), v.host.as_str()), ("TCP", "spindle.example.com"));
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn contact_star() {
        assert_eq!(Contact::parse(" * ").unwrap(), Contact::Star);
    }
}
