//! SIP messages: RFC 3261 §7 (structure), §7.3.1 (header fields, folding),
//! §7.3.3 (compact forms), §18.3 (framing) and §25 (grammar).
//!
//! A parsed header keeps its whole line as it arrived, so a proxy that
//! adds a Via and a Record-Route re-emits every other line byte for byte
//! (decision 0006). Values are read through [`SipMessage::header`] and
//! friends, which unfold continuation lines and resolve compact names.

use memchr::memchr_iter;
use std::borrow::Cow;
use std::fmt::Write as _;
use thiserror::Error;

/// The largest message accepted on any transport. RFC 3261 §18.1.1 lets a
/// UDP datagram carry up to 65,535 bytes; a TCP message larger than that is
/// refused the same way (513) so one phone cannot make a peer buffer more.
pub const MAX_MESSAGE_SIZE: usize = 65_535;

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("only line breaks (a keep-alive)")]
    Empty,
    #[error("message larger than {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    #[error("no empty line ends the header section")]
    Unterminated,
    #[error("malformed start line {0:?}")]
    BadStartLine(String),
    #[error("SIP version {0:?} is not SIP/2.0")]
    Version(String),
    #[error("malformed header line {0:?}")]
    BadHeader(String),
    #[error("the header section is not UTF-8")]
    NotUtf8,
    #[error("Content-Length {0:?} is not a number")]
    BadContentLength(String),
    #[error("Content-Length says {declared} body bytes, {available} arrived")]
    ShortBody { declared: usize, available: usize },
    #[error("no Content-Length on a stream transport")]
    NoContentLength,
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("malformed {0} header")]
    Malformed(&'static str),
    #[error("CSeq method {cseq:?} is not the request method {method:?}")]
    CSeqMethod { cseq: String, method: String },
}

/// The most of a message's own text an error quotes: errors reach logs
/// and 400 reason phrases, and a message can be 64 KB of whatever the
/// sender chose.
pub const MAX_QUOTED: usize = 64;

/// The start of `text` that an error quotes (see [`MAX_QUOTED`]).
fn quote(text: &str) -> String {
    text.chars().take(MAX_QUOTED).collect()
}

impl ParseError {
    /// The status a request with this fault is answered with (RFC 3261
    /// §21.4.1 400, §21.4.24 513, §21.5.7 505).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::TooLarge => 513,
            ParseError::Version(_) => 505,
            // RFC 4475 §3.1.2.18: an unknown method whose CSeq names
            // another is better answered 501 than 400.
            ParseError::CSeqMethod { method, .. } if !KNOWN_METHODS.contains(&method.as_str()) => 501,
            _ => 400,
        }
    }
}

/// Methods of RFC 3261 and its extensions this element has heard of.
pub const KNOWN_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "MESSAGE",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "PUBLISH",
];

/// The first line: a request's method and Request-URI, or a response's
/// status (RFC 3261 §7.1, §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// One header line as it arrived (continuation lines included, joined by
/// CRLF), or as this program wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    line: String,
    name_end: usize,
    value_start: usize,
}

/// Compact forms (RFC 3261 §7.3.3 and the IANA SIP header registry).
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Whether a written header name (long or compact, any case) is `canonical`.
pub fn name_is(written: &str, canonical: &str) -> bool {
    if written.eq_ignore_ascii_case(canonical) {
        return true;
    }
    let [c] = written.as_bytes() else { return false };
    let c = c.to_ascii_lowercase();
    COMPACT
        .iter()
        .any(|(short, long)| *short == c && long.eq_ignore_ascii_case(canonical))
}

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Joins continuation lines into one logical line (RFC 3261 §7.3.1: a
/// line fold is equivalent to a single space).
pub fn unfold(value: &str) -> Cow<'_, str> {
    if !value.contains('\n') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut lines = value.split('\n');
    if let Some(first) = lines.next() {
        out.push_str(first.trim_end_matches('\r').trim_end());
    }
    for l in lines {
        out.push(' ');
        out.push_str(l.trim_end_matches('\r').trim());
    }
    Cow::Owned(out)
}

/// The bytes of `text` outside quoted strings (RFC 3261 §25.1
/// `quoted-string`, backslash escapes included), with their indexes: what
/// every list, parameter and bracket scan looks at.
pub(crate) fn unquoted(text: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let (mut quoted, mut escaped) = (false, false);
    text.bytes().enumerate().filter(move |&(_, b)| {
        if escaped {
            escaped = false;
        } else if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else {
            return true;
        }
        false
    })
}

/// Splits a header value at the commas that separate list elements
/// (RFC 3261 §7.3.1), not those inside quotes or angle brackets.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut angle = false;
    let mut start = 0;
    for (i, b) in unquoted(value) {
        match b {
            b'<' => angle = true,
            b'>' => angle = false,
            b',' if !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|v| !v.is_empty());
    out
}

impl Header {
    /// A header this program writes: `Name: value`.
    pub fn new(name: &str, value: &str) -> Self {
        Header {
            line: format!("{name}: {value}"),
            name_end: name.len(),
            value_start: name.len() + 2,
        }
    }

    fn parse(line: String) -> Result<Self, ParseError> {
        let Some(colon) = line.find(':') else {
            return Err(ParseError::BadHeader(quote(&line)));
        };
        let name_end = line[..colon].trim_end_matches([' ', '\t']).len();
        if !is_token(&line[..name_end]) {
            return Err(ParseError::BadHeader(quote(&line)));
        }
        let after = &line[colon + 1..];
        let value_start = colon + 1 + (after.len() - after.trim_start_matches([' ', '\t', '\r', '\n']).len());
        let mut line = line;
        let kept = line.trim_end_matches([' ', '\t', '\r', '\n']).len().max(value_start);
        line.truncate(kept);
        Ok(Header {
            line,
            name_end,
            value_start,
        })
    }

    /// The name as written (compact or long).
    pub fn name(&self) -> &str {
        &self.line[..self.name_end]
    }

    /// The value as it arrived, continuation lines included.
    pub fn raw_value(&self) -> &str {
        &self.line[self.value_start..]
    }

    /// The value with continuation lines joined.
    pub fn value(&self) -> Cow<'_, str> {
        unfold(self.raw_value())
    }

    pub fn is(&self, canonical: &str) -> bool {
        name_is(self.name(), canonical)
    }

    /// The whole line, without its CRLF.
    pub fn line(&self) -> &str {
        &self.line
    }
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// What the front of a stream buffer holds (RFC 3261 §18.3, RFC 5626 §4.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Not a whole message yet.
    NeedMore,
    /// Line breaks before a start line, to be dropped; `pong` when they are
    /// a double-CRLF keep-alive ping, answered with a single CRLF.
    Skip { len: usize, pong: bool },
    /// One whole message of this many bytes.
    Message(usize),
}

/// Where the header section ends: the index just past its last line's
/// line feed, and where the body starts. Bare line feeds are accepted.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    for i in memchr_iter(b'\n', buf) {
        match buf.get(i + 1) {
            Some(b'\n') => return Some((i + 1, i + 2)),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some((i + 1, i + 3)),
            _ => {}
        }
    }
    None
}

fn leading_line_breaks(buf: &[u8]) -> usize {
    buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count()
}

/// Finds the first message in a stream buffer (RFC 3261 §18.3: on a stream
/// the Content-Length is mandatory and frames the body).
pub fn frame(buf: &[u8]) -> Result<Framing, ParseError> {
    let skip = leading_line_breaks(buf);
    if skip > 0 {
        let pong = buf.starts_with(b"\r\n\r\n");
        if pong {
            return Ok(Framing::Skip { len: 4, pong });
        }
        if skip == buf.len() && buf.len() < 4 && b"\r\n\r\n".starts_with(buf) {
            return Ok(Framing::NeedMore);
        }
        return Ok(Framing::Skip { len: skip, pong: false });
    }
    let Some((head, body_start)) = head_end(&buf[..buf.len().min(MAX_MESSAGE_SIZE)]) else {
        return if buf.len() >= MAX_MESSAGE_SIZE {
            Err(ParseError::TooLarge)
        } else {
            Ok(Framing::NeedMore)
        };
    };
    let mut length = None;
    for line in buf[..head].split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]);
        if name_is(name.trim_end(), "Content-Length") {
            let value = String::from_utf8_lossy(&line[colon + 1..]);
            let value = value.trim();
            let this = value
                .parse::<usize>()
                .map_err(|_| ParseError::BadContentLength(quote(value)))?;
            // Two lengths that disagree would let framing and parsing
            // split the stream differently (request smuggling).
            if length.is_some_and(|l| l != this) {
                return Err(ParseError::BadContentLength(quote(value)));
            }
            length = Some(this);
        }
    }
    let length = length.ok_or(ParseError::NoContentLength)?;
    let total = body_start.checked_add(length).ok_or(ParseError::TooLarge)?;
    if total > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge);
    }
    Ok(if buf.len() < total {
        Framing::NeedMore
    } else {
        Framing::Message(total)
    })
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::BadStartLine(line.chars().take(120).collect());
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').ok_or_else(bad)?;
        if version != "2.0" {
            return Err(ParseError::Version(format!("SIP/{version}")));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| bad())?;
        if !(100..=699).contains(&code) || code_digits(code) != 3 {
            return Err(bad());
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    // RFC 4475 §3.1.2.7: a Request-URI is never in angle brackets.
    if !is_token(method) || uri.is_empty() || !uri.contains(':') || uri.starts_with('<') {
        return Err(bad());
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(ParseError::Version(version.chars().take(40).collect()));
    }
    Ok(StartLine::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

/// A request line read as leniently as a refusal needs: any runs of white
/// space between method, Request-URI and version (RFC 4475 §3.1.2.8–10),
/// any version (§3.1.2.16), so the request can still be answered.
fn request_line_leniently(line: &str) -> Option<StartLine> {
    let mut parts = line.split_whitespace();
    let method = parts.next().filter(|m| is_token(m))?;
    let uri = parts.next()?;
    Some(StartLine::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

fn code_digits(code: u16) -> usize {
    code.to_string().len()
}

/// Parses the start line and header lines of `head` (which ends with the
/// last header's line feed).
fn parse_head(head: &[u8]) -> Result<(StartLine, Vec<Header>), ParseError> {
    let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = parse_start_line(lines.next().unwrap_or_default())?;
    let mut raw: Vec<String> = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some(last) = raw.last_mut() else {
                return Err(ParseError::BadHeader(quote(line)));
            };
            last.push_str("\r\n");
            last.push_str(line);
        } else {
            raw.push(line.to_string());
        }
    }
    let headers = raw.into_iter().map(Header::parse).collect::<Result<_, _>>()?;
    Ok((start, headers))
}

impl SipMessage {
    /// Parses one message from a datagram, or from a stream after
    /// [`frame`] cut it out (RFC 3261 §18.3: bytes past the Content-Length
    /// are dropped; a body shorter than it is an error).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let skip = leading_line_breaks(bytes);
        let bytes = &bytes[skip..];
        if bytes.is_empty() {
            return Err(ParseError::Empty);
        }
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(ParseError::TooLarge);
        }
        let (head, body_start) = head_end(bytes).ok_or(ParseError::Unterminated)?;
        let (start, headers) = parse_head(&bytes[..head])?;
        let mut msg = SipMessage {
            start,
            headers,
            body: Vec::new(),
        };
        let available = bytes.len() - body_start;
        let mut declared = None;
        for h in msg.headers.iter().filter(|h| h.is("Content-Length")) {
            let v = h.value();
            let this = v
                .trim()
                .parse::<usize>()
                .map_err(|_| ParseError::BadContentLength(quote(v.as_ref())))?;
            if declared.is_some_and(|d| d != this) {
                return Err(ParseError::BadContentLength(v.into_owned()));
            }
            declared = Some(this);
        }
        let declared = declared.unwrap_or(available);
        if declared > available {
            return Err(ParseError::ShortBody { declared, available });
        }
        msg.body = bytes[body_start..body_start + declared].to_vec();
        Ok(msg)
    }

    /// As much of a faulty message as can be read, to answer it: the start
    /// line and the header lines that parse (RFC 3261 §21.4.1 400 needs
    /// Via, From, To, Call-ID and CSeq to be sent at all).
    pub fn parse_leniently(bytes: &[u8]) -> Option<Self> {
        let bytes = &bytes[leading_line_breaks(bytes)..];
        let bytes = &bytes[..bytes.len().min(MAX_MESSAGE_SIZE)];
        let head = head_end(bytes).map(|(h, _)| h).unwrap_or(bytes.len());
        let text = String::from_utf8_lossy(&bytes[..head]);
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = lines.next()?;
        let start = parse_start_line(first).ok().or_else(|| request_line_leniently(first))?;
        let headers = lines
            .filter(|l| !l.is_empty() && !l.starts_with([' ', '\t']))
            .filter_map(|l| Header::parse(l.to_string()).ok())
            .collect();
        Some(SipMessage {
            start,
            headers,
            body: Vec::new(),
        })
    }

    pub fn request(method: &str, uri: &str) -> Self {
        SipMessage {
            start: StartLine::Request {
                method: method.into(),
                uri: uri.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A response to `request` (RFC 3261 §8.2.6.2): Via, From, To, Call-ID
    /// and CSeq copied, and `to_tag` added to a To that has none.
    pub fn response_to(request: &SipMessage, code: u16, reason: &str, to_tag: Option<&str>) -> Self {
        let mut headers = Vec::with_capacity(8);
        for h in &request.headers {
            if h.is("Via") || h.is("From") || h.is("Call-ID") || h.is("CSeq") {
                headers.push(h.clone());
            } else if h.is("To") {
                match to_tag {
                    Some(tag) if !crate::headers::NameAddr::has_tag(&h.value()) => {
                        headers.push(Header::new(h.name(), &format!("{};tag={tag}", h.value())));
                    }
                    _ => headers.push(h.clone()),
                }
            }
        }
        SipMessage {
            start: StartLine::Response {
                code,
                reason: reason.into(),
            },
            headers,
            body: Vec::new(),
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The first header named `name` (long name; compact forms match too),
    /// unfolded.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers.iter().find(|h| h.is(name)).map(Header::value)
    }

    /// Every element of a list header (RFC 3261 §7.3.1), across all its
    /// lines, in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for h in self.headers.iter().filter(|h| h.is(name)) {
            out.extend(split_list(&h.value()).into_iter().map(str::to_string));
        }
        out
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.is(name))
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.headers.push(Header::new(name, value));
    }

    /// Puts a value in front of every other value of its header (a proxy's
    /// Via and Record-Route, RFC 3261 §16.6).
    pub fn prepend(&mut self, name: &str, value: &str) {
        let at = self.headers.iter().position(|h| h.is(name)).unwrap_or(0);
        self.headers.insert(at, Header::new(name, value));
    }

    /// Removes the first value of a list header and returns it; a line
    /// that held several values keeps the rest.
    pub fn remove_first(&mut self, name: &str) -> Option<String> {
        let at = self.headers.iter().position(|h| h.is(name))?;
        let value = self.headers[at].value().into_owned();
        let mut values = split_list(&value);
        if values.is_empty() {
            self.headers.remove(at);
            return self.remove_first(name);
        }
        let first = values.remove(0).to_string();
        if values.is_empty() {
            self.headers.remove(at);
        } else {
            let written = self.headers[at].name().to_string();
            self.headers[at] = Header::new(&written, &values.join(", "));
        }
        Some(first)
    }

    pub fn remove_all(&mut self, name: &str) {
        self.headers.retain(|h| !h.is(name));
    }

    /// Replaces every line of a header with one.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.headers.iter().position(|h| h.is(name)) {
            Some(at) => {
                self.headers[at] = Header::new(name, value);
                let mut i = 0;
                self.headers.retain(|h| {
                    i += 1;
                    i - 1 == at || !h.is(name)
                });
            }
            None => self.push(name, value),
        }
    }

    /// RFC 3261 §8.1.1 and §8.2.2: what every request needs before a
    /// registrar or proxy acts on it.
    pub fn validate_request(&self) -> Result<(), ParseError> {
        let Some(method) = self.method() else { return Ok(()) };
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if !self.has(name) {
                return Err(ParseError::Missing(name));
            }
        }
        let (_, cseq_method) = self.cseq().ok_or(ParseError::Malformed("CSeq"))?;
        if cseq_method != method {
            return Err(ParseError::CSeqMethod {
                cseq: quote(&cseq_method),
                method: quote(method),
            });
        }
        if let Some(mf) = self.header("Max-Forwards") {
            mf.trim()
                .parse::<u8>()
                .map_err(|_| ParseError::Malformed("Max-Forwards"))?;
        }
        Ok(())
    }

    /// CSeq number and method (RFC 3261 §20.16).
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut parts = v.split_whitespace();
        let n = parts.next()?.parse().ok()?;
        let m = parts.next()?;
        (parts.next().is_none() && is_token(m)).then(|| (n, m.to_string()))
    }

    pub fn call_id(&self) -> Option<Cow<'_, str>> {
        self.header("Call-ID")
    }

    /// The message on the wire. The Content-Length is the body's, written
    /// if missing or wrong (RFC 3261 §20.14); every other line is emitted
    /// as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256 + self.headers.iter().map(|h| h.line.len() + 2).sum::<usize>());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        let mut length_written = false;
        for h in &self.headers {
            if h.is("Content-Length") {
                if length_written {
                    continue;
                }
                length_written = true;
                if h.value().trim().parse::<usize>().ok() != Some(self.body.len()) {
                    let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
                    continue;
                }
            }
            out.push_str(&h.line);
            out.push_str("\r\n");
        }
        if !length_written {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

#[cfg(test)]
mod tests;
