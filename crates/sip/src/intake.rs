//! What a SIP element does with the bytes of one message before any
//! transaction, registrar or proxy sees it (RFC 3261 §16.3 steps 1–2,
//! §18.3, §21.4.1): parse and check it, and refuse a broken request with
//! the right status. Responses that are broken are dropped (§18.1.2: a
//! response cannot be answered). The driver only reads sockets and logs.
//!
//! RFC 4475's torture messages are the test suite
//! (`tests/rfc4475.rs`); its choices are recorded there.

use crate::message::{ParseError, SipMessage};
use crate::registrar;

/// What came in.
#[derive(Debug)]
pub enum Intake {
    /// Nothing but line breaks (a keep-alive, RFC 5626 §3.5.1).
    KeepAlive,
    /// A request that parsed and passed §16.3's checks.
    Request(SipMessage),
    /// A response that parsed.
    Response(SipMessage),
    /// Broken: `answer` is what to send back, if anything can be (a request
    /// whose transaction headers can be read, and not an ACK).
    Refused {
        error: ParseError,
        answer: Option<SipMessage>,
    },
}

/// Parses and checks one message.
pub fn intake(bytes: &[u8]) -> Intake {
    let checked = SipMessage::parse(bytes).and_then(|m| {
        m.validate_request()?;
        check(&m)?;
        Ok(m)
    });
    match checked {
        Ok(m) if m.is_request() => Intake::Request(m),
        Ok(m) => Intake::Response(m),
        Err(ParseError::Empty) => Intake::KeepAlive,
        Err(error) => {
            let answer = refusal(bytes, &error);
            Intake::Refused { error, answer }
        }
    }
}

/// Header fields that appear once (RFC 3261 §7.3.1, §20).
const SINGLE: &[&str] = &["Call-ID", "To", "From", "CSeq", "Max-Forwards", "Content-Type"];

/// What the parser leaves to the element (RFC 3261 §16.3 step 1; RFC
/// 4475 §3.1.2, §3.3.8): single-valued header fields once, no empty Via
/// values or parameters, well-formed name-addr fields, and no escaped
/// headers in a SIP Request-URI. A response whose CSeq cannot be read is
/// dropped.
fn check(m: &SipMessage) -> Result<(), ParseError> {
    if !m.is_request() {
        return match m.cseq() {
            Some(_) => Ok(()),
            None => Err(ParseError::Malformed("CSeq")),
        };
    }
    for name in SINGLE {
        if m.headers.iter().filter(|h| h.is(name)).count() > 1 {
            return Err(ParseError::Malformed(name));
        }
    }
    if m.list("Via").iter().any(|v| {
        let v = v.trim();
        v.starts_with(';') || v.contains(";;") || v.ends_with(';')
    }) {
        return Err(ParseError::Malformed("Via"));
    }
    for name in ["From", "To"] {
        if m.list(name).len() != 1 {
            return Err(ParseError::Malformed(name));
        }
    }
    for name in ["From", "To", "Contact"] {
        for value in m.list(name) {
            if value.trim() != "*" && !well_formed_name_addr(&value) {
                return Err(ParseError::Malformed(name));
            }
        }
    }
    if has_escaped_headers(m.request_uri().unwrap_or_default()) {
        return Err(ParseError::Malformed("Request-URI"));
    }
    Ok(())
}

/// RFC 4475 §3.1.2.11: headers (`?...`) in a SIP Request-URI. A `?` in
/// the user part is allowed (§3.1.1.2), so only what follows the host
/// counts.
fn has_escaped_headers(uri: &str) -> bool {
    let lower = uri.get(..5).map(str::to_ascii_lowercase).unwrap_or_default();
    if !lower.starts_with("sip:") && !lower.starts_with("sips:") {
        return false;
    }
    uri.rsplit_once('@').map_or(uri, |(_, host)| host).contains('?')
}

/// `value` outside its quoted strings; `None` if a quote is not closed
/// (RFC 4475 §3.1.2.6).
fn outside_quotes(value: &str) -> Option<String> {
    let mut outside = String::with_capacity(value.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in value.chars() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
        } else if c == '"' {
            quoted = true;
        } else {
            outside.push(c);
        }
    }
    (!quoted).then_some(outside)
}

/// `;a=1;b` after an address: no empty parameter (RFC 4475 §3.1.2.1).
fn parameters_well_formed(rest: &str) -> bool {
    let rest = rest.trim();
    rest.is_empty()
        || rest
            .strip_prefix(';')
            .is_some_and(|r| r.split(';').all(|p| !p.trim().is_empty()))
}

/// RFC 3261 §20.10 and §25.1 where a lenient reading would go wrong (RFC
/// 4475 §3.1.2.1, .6, .13, .14): balanced quotes; no white space inside
/// `<...>`; a bare addr-spec without `?` or `,` (those need brackets); no
/// empty parameters. Unknown URI schemes are fine here (§3.3.4).
fn well_formed_name_addr(value: &str) -> bool {
    let Some(outside) = outside_quotes(value) else {
        return false;
    };
    match (outside.find('<'), outside.find('>')) {
        (Some(open), Some(close)) if open < close => {
            !outside[open + 1..close].contains(char::is_whitespace) && parameters_well_formed(&outside[close + 1..])
        }
        (None, None) => {
            let (addr, params) = outside
                .split_once(';')
                .map_or((outside.as_str(), ""), |(a, _)| (a, &outside[a.len()..]));
            // A bare addr-spec: one URI, scheme first, no white space.
            let addr = addr.trim();
            addr.contains(':')
                && !addr.contains(char::is_whitespace)
                && !addr.contains(['?', ','])
                && parameters_well_formed(params)
        }
        _ => false,
    }
}

/// The answer to a request that did not parse or check, when its
/// transaction can be told (RFC 3261 §8.2.6; RFC 4475 §3.3.1: a request
/// without Call-ID, From or To is still answered, matched by its Via and
/// CSeq).
pub fn refusal(bytes: &[u8], error: &ParseError) -> Option<SipMessage> {
    let head = SipMessage::parse_leniently(bytes)?;
    if !head.is_request() || head.method() == Some("ACK") {
        return None;
    }
    if ["Via", "CSeq"].iter().any(|h| !head.has(h)) {
        return None;
    }
    let reason = match error.status() {
        513 => "Message Too Large".to_string(),
        505 => "Version Not Supported".to_string(),
        501 => "Not Implemented".to_string(),
        _ => format!("Bad Request ({error})").replace(['\r', '\n'], " "),
    };
    Some(registrar::answer(&head, error.status(), &reason))
}
