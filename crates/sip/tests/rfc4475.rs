//! RFC 4475's torture messages (tests/rfc4475/*.dat, see EXPECTED.md)
//! through the element's intake, and the ones that parse through the
//! registrar and proxy. Where RFC 4475 lets an element be strict or
//! liberal, this element is strict (400) except where the RFC asks it to
//! accept.

use sip::digest::Ha1;
use sip::intake::{intake, Intake};
use sip::proxy::{Interfaces, Output, Proxy, Side};
use sip::registrar::{Flow, Registered, Registrar, Transport};
use std::collections::HashMap;

/// What intake should make of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A request that goes on to the registrar or proxy.
    Request,
    Response,
    /// Refused with this status.
    Refused(u16),
    /// A broken response: dropped, nothing to answer.
    Dropped,
}

use Want::*;

/// `tests/rfc4475/cases.txt`: one message per line, its name and what
/// intake should make of it.
fn cases() -> Vec<(String, Want)> {
    let path = format!("{}/tests/rfc4475/cases.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, want) = l.split_once(' ').unwrap_or_else(|| panic!("{path}: {l:?}"));
            let want = match want {
                "request" => Request,
                "response" => Response,
                "dropped" => Dropped,
                code => Refused(code.parse().unwrap_or_else(|_| panic!("{path}: {l:?}"))),
            };
            (name.to_string(), want)
        })
        .collect()
}

fn message(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn got(bytes: &[u8]) -> (Want, Option<String>) {
    match intake(bytes) {
        Intake::Request(_) => (Request, None),
        Intake::Response(_) => (Response, None),
        Intake::Refused { error, answer: Some(a) } => (Refused(a.status().unwrap_or(0)), Some(error.to_string())),
        Intake::Refused { error, answer: None } => (Dropped, Some(error.to_string())),
        Intake::KeepAlive => (Dropped, Some("keep-alive".into())),
    }
}

#[test]
fn every_torture_message_is_taken_or_refused_as_rfc_4475_says() {
    let mut wrong = Vec::new();
    let cases = cases();
    for (name, want) in &cases {
        let (have, why) = got(&message(name));
        if have != *want {
            wrong.push(format!(
                "{name}: want {want:?}, got {have:?} {}",
                why.unwrap_or_default()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {}:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// The display-name rule of §3.1.2.15 on its own (`baddn.dat` as the
/// archive has it also lacks the empty line that ends its header), and a
/// From with two values in one line (§3.3.8's rule within a line).
#[test]
fn a_bare_display_name_and_two_values_in_one_from_are_refused() {
    let mut baddn = message("baddn");
    baddn.extend_from_slice(b"\r\n");
    assert_eq!(got(&baddn).0, Refused(400), "{:?}", got(&baddn).1);
    let invite = |from: &str| {
        format!(
            "INVITE sip:user@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKtwo\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:user@example.com>\r\nCall-ID: two\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    assert_eq!(got(invite("<sip:a@example.net>;tag=1").as_bytes()).0, Request);
    let two = invite("<sip:a@example.net>;tag=1, <sip:b@example.net>");
    assert_eq!(got(two.as_bytes()).0, Refused(400), "{:?}", got(two.as_bytes()).1);
}

/// Every file of the directory is in the table.
#[test]
fn the_table_covers_every_message() {
    let dir = format!("{}/tests/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".dat")
                .map(str::to_string)
        })
        .collect();
    files.sort();
    let mut named: Vec<String> = cases().into_iter().map(|(n, _)| n).collect();
    named.sort();
    assert_eq!(files, named);
}

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: "192.0.2.1:5060".parse().unwrap(),
    }
}

/// The status of the first response the element sends for `name`, as a
/// registrar and proxy for example.com with one user.
fn answered(name: &str) -> Option<u16> {
    let Intake::Request(request) = intake(&message(name)) else {
        panic!("{name} does not parse as a request");
    };
    let users: HashMap<_, _> = [("j.user".to_string(), Ha1::new("j.user", "example.com", "pw"))].into();
    let mut registrar = Registrar::new("example.com", users, [3; 32]);
    if request.method() == Some("REGISTER") {
        let answer = match registrar.register(0, &request, flow()) {
            Registered::Answer(a)
            | Registered::AuthFailed { answer: a, .. }
            | Registered::Publish { answer: a, .. } => a,
        };
        return answer.status();
    }
    let me = Interfaces {
        phones: "192.0.2.9:5060".parse().unwrap(),
        overlay: "192.0.2.9:5070".parse().unwrap(),
        phones_tls: None,
        phones_other_family: None,
    };
    let mut proxy = Proxy::new(me, 1);
    proxy
        .on_request(0, request, flow(), Side::Phones, &mut registrar)
        .into_iter()
        .find_map(|o| match o {
            Output::Send { bytes, .. } => sip::message::SipMessage::parse(&bytes).ok()?.status(),
            _ => None,
        })
        .filter(|s| *s != 100)
}

/// §3.3: what the registrar and proxy answer the messages that parse.
#[test]
fn the_registrar_and_proxy_answer_the_application_layer_tests_as_rfc_4475_says() {
    let cases: &[(&str, &[u16])] = &[
        // §3.3.2: an unknown scheme in the Request-URI.
        ("unkscm", &[416]),
        // §3.3.3: a scheme that is never meaningful here.
        ("novelsc", &[416]),
        // §3.3.4: a registrar needs a SIP To.
        ("unksm2", &[400]),
        // §3.3.5: Proxy-Require names what a proxy does not support.
        ("bext01", &[420]),
        // §3.3.7: a registrar that authenticates challenges.
        ("regaut01", &[401]),
        // §3.3.11: a proxy does not forward Max-Forwards 0.
        ("zeromf", &[483]),
    ];
    let mut wrong = Vec::new();
    for (name, want) in cases {
        let have = answered(name);
        if !have.is_some_and(|h| want.contains(&h)) {
            wrong.push(format!("{name}: want one of {want:?}, got {have:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
