use super::*;
use proptest::prelude::*;

/// A REGISTER as phones write them: compact forms, a folded line, two Via
/// values on one line, an unknown header with odd spacing, any order.
const REGISTER: &str = "REGISTER sip:overlay.test SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-0\r\n\
Max-Forwards: 70\r\n\
f: \"Alice\" <sip:alice@overlay.test>;tag=1928\r\n\
t: <sip:alice@overlay.test>\r\n\
i: a84b4c76e66710\r\n\
CSeq: 1 REGISTER\r\n\
X-Odd-Header :  keep,,this ;;exactly  \r\n\
m: <sip:alice@127.0.0.1:5061>;expires=600,\r\n\
\x20  <sip:alice@127.0.0.1:5099>;q=0.5\r\n\
Subject: folded\r\n\
\tvalue\r\n\
l: 4\r\n\
\r\n\
body";

#[test]
fn reads_compact_forms_folded_lines_and_comma_joined_values() {
    let m = SipMessage::parse(REGISTER.as_bytes()).unwrap();
    assert_eq!(m.method(), Some("REGISTER"));
    assert_eq!(m.request_uri(), Some("sip:overlay.test"));
    assert_eq!(m.call_id().as_deref(), Some("a84b4c76e66710"));
    assert_eq!(m.cseq(), Some((1, "REGISTER".into())));
    assert_eq!(m.list("Via").len(), 2);
    let contacts = m.list("Contact");
    assert_eq!(
        contacts,
        vec![
            "<sip:alice@127.0.0.1:5061>;expires=600",
            "<sip:alice@127.0.0.1:5099>;q=0.5"
        ]
    );
    assert_eq!(m.header("Subject").as_deref(), Some("folded value"));
    assert_eq!(m.header("x-odd-header").as_deref(), Some("keep,,this ;;exactly"));
    assert_eq!(m.body, b"body");
    m.validate_request().unwrap();
}

#[test]
fn an_unchanged_message_is_written_back_byte_for_byte() {
    let m = SipMessage::parse(REGISTER.as_bytes()).unwrap();
    // Trailing blanks of a line are not part of its value (RFC 3261 §7.3.1).
    let expected = REGISTER.replace("exactly  \r\n", "exactly\r\n");
    assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), expected);
}

#[test]
fn a_proxy_edit_leaves_every_other_line_untouched() {
    let mut m = SipMessage::parse(REGISTER.as_bytes()).unwrap();
    m.prepend("Via", "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-proxy");
    m.prepend("Record-Route", "<sip:127.0.0.2:5060;lr>");
    let out = String::from_utf8(m.to_bytes()).unwrap();
    assert!(out.contains("\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-proxy\r\nv: SIP/2.0/UDP 127.0.0.1:5061"));
    assert!(out.contains("\r\nX-Odd-Header :  keep,,this ;;exactly\r\n"));
    assert!(out.contains("\r\nSubject: folded\r\n\tvalue\r\n"));
    // Popping the top Via of a two-value line keeps the other value.
    let mut back = SipMessage::parse(out.as_bytes()).unwrap();
    assert_eq!(
        back.remove_first("Via").unwrap(),
        "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-proxy"
    );
    assert_eq!(
        back.remove_first("Via").unwrap(),
        "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport"
    );
    assert_eq!(back.list("Via"), vec!["SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-0"]);
}

#[test]
fn content_length_frames_the_body_of_a_datagram() {
    let short = REGISTER.replace("l: 4", "l: 40");
    assert_eq!(
        SipMessage::parse(short.as_bytes()),
        Err(ParseError::ShortBody {
            declared: 40,
            available: 4
        })
    );
    let long = REGISTER.replace("l: 4", "l: 2");
    assert_eq!(SipMessage::parse(long.as_bytes()).unwrap().body, b"bo");
    let twice = REGISTER.replace("l: 4", "l: 4\r\nContent-Length: 0");
    assert!(matches!(
        SipMessage::parse(twice.as_bytes()),
        Err(ParseError::BadContentLength(_))
    ));
    assert!(matches!(frame(twice.as_bytes()), Err(ParseError::BadContentLength(_))));
    let bad = REGISTER.replace("l: 4", "l: four");
    assert!(matches!(
        SipMessage::parse(bad.as_bytes()),
        Err(ParseError::BadContentLength(_))
    ));
}

#[test]
fn oversized_messages_are_513_and_other_versions_505() {
    let mut big = REGISTER
        .replace("l: 4", &format!("l: {}", MAX_MESSAGE_SIZE))
        .into_bytes();
    big.resize(REGISTER.len() + MAX_MESSAGE_SIZE, b'x');
    let e = SipMessage::parse(&big).unwrap_err();
    assert_eq!((e.clone(), e.status()), (ParseError::TooLarge, 513));
    assert_eq!(frame(&big), Err(ParseError::TooLarge));
    let lenient = SipMessage::parse_leniently(&big).unwrap();
    assert_eq!(lenient.call_id().as_deref(), Some("a84b4c76e66710"));
    let v3 = REGISTER.replace("sip:overlay.test SIP/2.0", "sip:overlay.test SIP/3.0");
    assert_eq!(SipMessage::parse(v3.as_bytes()).unwrap_err().status(), 505);
}

#[test]
fn requests_missing_mandatory_headers_or_with_a_foreign_cseq_are_refused() {
    let no_call_id = REGISTER.replace("i: a84b4c76e66710\r\n", "");
    let m = SipMessage::parse(no_call_id.as_bytes()).unwrap();
    assert_eq!(m.validate_request(), Err(ParseError::Missing("Call-ID")));
    let wrong = REGISTER.replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE");
    let m = SipMessage::parse(wrong.as_bytes()).unwrap();
    assert!(matches!(m.validate_request(), Err(ParseError::CSeqMethod { .. })));
}

#[test]
fn garbage_is_refused_without_panicking() {
    for junk in [
        &b"\x00\xff\xfe"[..],
        b"hello\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\n continuation first\r\n\r\n",
        b"SIP/2.0 99 Too Small\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nVia: x\r\n",
        b"INVITE  sip:x SIP/2.0\r\n\r\n",
    ] {
        assert!(SipMessage::parse(junk).is_err(), "{junk:?}");
    }
    assert_eq!(SipMessage::parse(b"\r\n\r\n"), Err(ParseError::Empty));
}

#[test]
fn stream_framing_waits_for_whole_messages_and_answers_keepalives() {
    let one = REGISTER.as_bytes();
    let mut two = one.to_vec();
    two.extend_from_slice(one);
    assert_eq!(frame(&two), Ok(Framing::Message(one.len())));
    for cut in [1, 10, one.len() - 5, one.len() - 1] {
        assert_eq!(frame(&one[..cut]), Ok(Framing::NeedMore), "cut at {cut}");
    }
    assert_eq!(frame(b"\r\n\r\nREG"), Ok(Framing::Skip { len: 4, pong: true }));
    assert_eq!(frame(b"\r\n"), Ok(Framing::NeedMore));
    assert_eq!(frame(b"\r\nINVITE"), Ok(Framing::Skip { len: 2, pong: false }));
    let no_length = REGISTER.replace("l: 4\r\n", "");
    assert_eq!(frame(no_length.as_bytes()), Err(ParseError::NoContentLength));
}

#[test]
fn a_response_copies_the_transaction_headers_and_tags_the_to() {
    let req = SipMessage::parse(REGISTER.as_bytes()).unwrap();
    let resp = SipMessage::response_to(&req, 200, "OK", Some("srv1"));
    let text = String::from_utf8(resp.to_bytes()).unwrap();
    assert!(text.starts_with("SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport, SIP/2.0/UDP"));
    assert!(text.contains("\r\nt: <sip:alice@overlay.test>;tag=srv1\r\n"));
    assert!(text.contains("\r\nCSeq: 1 REGISTER\r\n"));
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    assert!(!text.contains("Contact"));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = SipMessage::parse(&bytes);
        let _ = SipMessage::parse_leniently(&bytes);
        let _ = frame(&bytes);
    }

    /// Whatever parses is written so that it parses to the same message.
    #[test]
    fn what_parses_survives_a_round_trip(
        method in "[A-Z]{3,9}",
        names in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,12}", 0..6),
        values in proptest::collection::vec("[ -~]{0,30}", 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut text = format!("{method} sip:x@y SIP/2.0\r\n");
        for (n, v) in names.iter().zip(&values) {
            if !name_is(n, "Content-Length") {
                text.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&body);
        if let Ok(m) = SipMessage::parse(&bytes) {
            let again = SipMessage::parse(&m.to_bytes()).unwrap();
            prop_assert_eq!(again, m);
        }
    }
}

/// Errors quote at most a short prefix of what came in: they reach logs
/// and 400 reason phrases, and the sender chooses the bytes.
#[test]
fn parse_errors_quote_only_a_prefix_of_the_message() {
    let long = "x".repeat(10_000);
    for text in [
        format!("OPTIONS sip:a SIP/2.0\r\n{long}\r\n\r\n"),
        format!("OPTIONS sip:a SIP/2.0\r\nContent-Length: {long}\r\n\r\n"),
        format!("OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 {long}\r\nContent-Length: 0\r\n\r\n"),
    ] {
        let error = SipMessage::parse(text.as_bytes())
            .and_then(|m| m.validate_request().map(|()| m))
            .unwrap_err();
        let shown = error.to_string();
        assert!(shown.len() < 2 * MAX_QUOTED + 80, "{} bytes: {shown:.100}", shown.len());
    }
}
