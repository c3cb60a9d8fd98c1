use super::*;
use crate::digest::Algorithm;
use crate::testing::authorize;

const DOMAIN: &str = "overlay.test";

/// A registrar offering SHA-256 and MD5, SHA-256 preferred.
fn registrar() -> Registrar {
    registrar_offering(&[Algorithm::Sha256, Algorithm::Md5])
}

fn registrar_offering(algorithms: &[Algorithm]) -> Registrar {
    let users = [("alice", "secret"), ("bob", "hunter2")]
        .into_iter()
        .map(|(u, p)| (u.to_string(), Ha1::new(u, DOMAIN, p)))
        .collect();
    Registrar::new(DOMAIN, users, [9; 32]).with_digest_algorithms(algorithms)
}

fn offered(answer: &SipMessage, header: &str) -> Vec<String> {
    answer
        .headers
        .iter()
        .filter(|h| h.is(header))
        .map(|h| h.value().into_owned())
        .collect()
}

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: "127.0.0.1:5061".parse().unwrap(),
    }
}

/// A REGISTER for `aor_user`, with `extra` header lines.
fn register(aor_user: &str, cseq: u32, extra: &str) -> SipMessage {
    let text = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK{cseq}\r\n\
         From: <sip:{aor_user}@{DOMAIN}>;tag=x\r\nTo: <sip:{aor_user}@{DOMAIN}>\r\nCall-ID: reg-1\r\n\
         CSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    SipMessage::parse(text.as_bytes()).unwrap()
}

fn answer_of(r: &Registered) -> &SipMessage {
    match r {
        Registered::Answer(a) | Registered::Publish { answer: a, .. } | Registered::AuthFailed { answer: a, .. } => a,
    }
}

/// Registers through the challenge; returns the final outcome.
fn registered(reg: &mut Registrar, now: u64, req: SipMessage, alg: Algorithm) -> Registered {
    let user = NameAddr::parse(&req.header("To").unwrap()).unwrap().uri.user.unwrap();
    let challenge = answer_of(&reg.register(now, &req, flow())).clone();
    assert_eq!(challenge.status(), Some(401));
    let password = if user == "alice" { "secret" } else { "hunter2" };
    reg.register(now, &authorize(&req, &challenge, &user, password, alg), flow())
}

#[test]
fn a_register_without_credentials_is_challenged_with_the_configured_algorithms_in_order() {
    let mut reg = registrar();
    let req = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n");
    let Registered::Answer(a) = reg.register(0, &req, flow()) else {
        panic!()
    };
    assert_eq!(a.status(), Some(401));
    let www = offered(&a, "WWW-Authenticate");
    assert_eq!(www.len(), 2);
    assert!(www[0].contains("algorithm=SHA-256") && www[0].contains("realm=\"overlay.test\""));
    assert!(www[1].contains("algorithm=MD5"));
    assert_eq!(reg.binding_count(), 0);

    // An algorithm named twice is offered once.
    let mut twice = registrar_offering(&[Algorithm::Md5, Algorithm::Sha256, Algorithm::Md5]);
    let Registered::Answer(a) = twice.register(0, &req, flow()) else {
        panic!()
    };
    assert_eq!(offered(&a, "WWW-Authenticate").len(), 2);

    // Unconfigured, a registrar challenges with MD5 alone (decision 0008).
    let users = HashMap::from([("alice".to_string(), Ha1::new("alice", DOMAIN, "secret"))]);
    let mut plain = Registrar::new(DOMAIN, users, [9; 32]);
    let Registered::Answer(a) = plain.register(0, &req, flow()) else {
        panic!()
    };
    let www = offered(&a, "WWW-Authenticate");
    assert_eq!(www.len(), 1);
    assert!(www[0].contains("algorithm=MD5"), "{www:?}");
}

/// An answer with an algorithm the registrar did not offer is challenged
/// again rather than accepted: configuring SHA-256 alone must keep MD5
/// out even from a phone that knows the password.
#[test]
fn an_answer_with_an_algorithm_not_offered_is_challenged_again() {
    let mut reg = registrar_offering(&[Algorithm::Sha256]);
    let req = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n");
    let Registered::Answer(challenge) = reg.register(0, &req, flow()) else {
        panic!()
    };
    assert_eq!(offered(&challenge, "WWW-Authenticate").len(), 1);
    let md5 = authorize(&req, &challenge, "alice", "secret", Algorithm::Md5);
    let again = reg.register(1, &md5, flow());
    assert_eq!(answer_of(&again).status(), Some(401));
    assert_eq!(reg.binding_count(), 0);
    let sha = authorize(&req, &challenge, "alice", "secret", Algorithm::Sha256);
    assert!(matches!(reg.register(2, &sha, flow()), Registered::Publish { .. }));
}

#[test]
fn the_right_password_with_either_algorithm_binds_and_publishes_for_the_expiry() {
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let mut reg = registrar();
        let req = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>;expires=600\r\n");
        let r = registered(&mut reg, 1_000, req, alg);
        let Registered::Publish {
            user,
            lifetime_s,
            answer,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!((user.as_str(), lifetime_s), ("alice", 600));
        assert_eq!(answer.status(), Some(200));
        assert_eq!(answer.list("Contact"), vec!["<sip:alice@127.0.0.1:5061>;expires=600"]);
        let contacts = reg.contacts("alice", 1_000);
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0].flow, flow());
    }
}

#[test]
fn a_wrong_password_or_an_unknown_user_is_forbidden_after_the_challenge() {
    let mut reg = registrar();
    let req = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n");
    let challenge = answer_of(&reg.register(0, &req, flow())).clone();
    let wrong = reg.register(
        0,
        &authorize(&req, &challenge, "alice", "guess", Algorithm::Md5),
        flow(),
    );
    assert_eq!(answer_of(&wrong).status(), Some(403));
    let req = register("mallory", 1, "Contact: <sip:m@127.0.0.1:5061>\r\n");
    let unknown = reg.register(0, &authorize(&req, &challenge, "mallory", "x", Algorithm::Md5), flow());
    assert_eq!(answer_of(&unknown).status(), Some(403));
    // Bob's password does not register Alice.
    let req = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n");
    let bob_for_alice = reg.register(
        0,
        &authorize(&req, &challenge, "bob", "hunter2", Algorithm::Md5),
        flow(),
    );
    assert_eq!(answer_of(&bob_for_alice).status(), Some(403));
    assert_eq!(reg.binding_count(), 0);
}

#[test]
fn an_old_nonce_is_challenged_again_as_stale() {
    let mut reg = registrar();
    let req = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n");
    let challenge = answer_of(&reg.register(0, &req, flow())).clone();
    let late = authorize(&req, &challenge, "alice", "secret", Algorithm::Md5);
    let r = reg.register(crate::digest::NONCE_LIFETIME_MS + 1, &late, flow());
    let a = answer_of(&r);
    assert_eq!(a.status(), Some(401));
    assert!(a.header("WWW-Authenticate").unwrap().contains("stale=true"));
}

#[test]
fn several_contacts_a_query_and_removal_with_expires_zero() {
    let mut reg = registrar();
    let two = "Contact: <sip:alice@127.0.0.1:5061>;expires=300, <sip:alice@127.0.0.1:5071>\r\nExpires: 900\r\n";
    let r = registered(&mut reg, 0, register("alice", 1, two), Algorithm::Md5);
    assert!(matches!(r, Registered::Publish { lifetime_s: 900, .. }));
    // A query changes nothing and publishes nothing.
    let q = registered(&mut reg, 100_000, register("alice", 2, ""), Algorithm::Md5);
    let Registered::Answer(a) = q else { panic!("{q:?}") };
    assert_eq!(
        a.list("Contact"),
        vec![
            "<sip:alice@127.0.0.1:5071>;expires=800",
            "<sip:alice@127.0.0.1:5061>;expires=200"
        ]
    );
    // Removing the longer one shortens the overlay lifetime to the other's.
    let remove = "Contact: <sip:alice@127.0.0.1:5071>;expires=0\r\n";
    let r = registered(&mut reg, 100_000, register("alice", 3, remove), Algorithm::Md5);
    assert!(matches!(r, Registered::Publish { lifetime_s: 200, .. }), "{r:?}");
    // Expiry drops the last one locally; the overlay copy lapses by itself.
    reg.expire(300_000);
    assert_eq!(reg.binding_count(), 0);
}

#[test]
fn the_wildcard_removes_everything_only_with_expires_zero() {
    let mut reg = registrar();
    registered(
        &mut reg,
        0,
        register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n"),
        Algorithm::Md5,
    );
    let bad = registered(&mut reg, 0, register("alice", 2, "Contact: *\r\n"), Algorithm::Md5);
    assert_eq!(answer_of(&bad).status(), Some(400));
    let r = registered(
        &mut reg,
        0,
        register("alice", 3, "Contact: *\r\nExpires: 0\r\n"),
        Algorithm::Md5,
    );
    assert!(matches!(r, Registered::Publish { lifetime_s: 0, .. }));
    assert!(answer_of(&r).list("Contact").is_empty());
    assert_eq!(reg.binding_count(), 0);
}

#[test]
fn too_brief_out_of_order_foreign_and_extension_requests_are_refused() {
    let mut reg = registrar();
    let brief = registered(
        &mut reg,
        0,
        register("alice", 1, "Contact: <sip:a@h>;expires=30\r\n"),
        Algorithm::Md5,
    );
    assert_eq!(answer_of(&brief).status(), Some(423));
    assert_eq!(answer_of(&brief).header("Min-Expires").as_deref(), Some("60"));
    registered(
        &mut reg,
        0,
        register("alice", 5, "Contact: <sip:a@h>\r\n"),
        Algorithm::Md5,
    );
    let old = registered(
        &mut reg,
        0,
        register("alice", 4, "Contact: <sip:a@h>\r\n"),
        Algorithm::Md5,
    );
    assert_eq!(answer_of(&old).status(), Some(500));
    let ext = reg.register(0, &register("alice", 6, "Require: gruu\r\n"), flow());
    assert_eq!(answer_of(&ext).status(), Some(420));
    assert_eq!(answer_of(&ext).header("Unsupported").as_deref(), Some("gruu"));
    let mut foreign = register("alice", 7, "Contact: <sip:a@h>\r\n");
    foreign.set("To", "<sip:alice@elsewhere.example>");
    let challenge = answer_of(&reg.register(0, &foreign, flow())).clone();
    let r = reg.register(
        0,
        &authorize(&foreign, &challenge, "alice", "secret", Algorithm::Md5),
        flow(),
    );
    assert_eq!(answer_of(&r).status(), Some(403));
}

/// Accounts change while the peer runs: a user added registers at once,
/// a user removed loses its bindings and is refused (403) from then on.
#[test]
fn users_added_and_removed_take_effect_at_once() {
    let mut reg = registrar();
    let contact = "Contact: <sip:alice@127.0.0.1:5061>\r\nExpires: 600\r\n";
    assert!(matches!(
        registered(&mut reg, 0, register("alice", 1, contact), Algorithm::Md5),
        Registered::Publish { .. }
    ));
    assert_eq!(reg.binding_count(), 1);

    let mut users: HashMap<String, Ha1> = HashMap::new();
    users.insert("bob".into(), Ha1::new("bob", DOMAIN, "hunter2"));
    users.insert("carol".into(), Ha1::new("carol", DOMAIN, "hunter2"));
    assert_eq!(reg.set_users(users), ["alice"]);
    assert_eq!(reg.users(), ["bob", "carol"]);
    assert_eq!(reg.binding_count(), 0, "alice's binding went with her account");
    assert!(reg.user_on(flow(), 1).is_none(), "her phone's flow authorizes nothing");

    let again = register("alice", 2, contact);
    let challenge = answer_of(&reg.register(1, &again, flow())).clone();
    let refused = reg.register(
        1,
        &authorize(&again, &challenge, "alice", "secret", Algorithm::Md5),
        flow(),
    );
    assert_eq!(answer_of(&refused).status(), Some(403));

    let carol = register("carol", 3, "Contact: <sip:carol@127.0.0.1:5061>\r\n");
    let challenge = answer_of(&reg.register(1, &carol, flow())).clone();
    let accepted = reg.register(
        1,
        &authorize(&carol, &challenge, "carol", "hunter2", Algorithm::Md5),
        flow(),
    );
    assert!(matches!(accepted, Registered::Publish { ref user, .. } if user == "carol"));
}

/// Issue 36 §2: a captured REGISTER Authorization, replayed on a new
/// REGISTER (another Call-ID, the attacker's Contact), re-binds nothing:
/// its nonce count was used (RFC 7616 §3.4.6), so it is challenged again
/// with `stale=true`, and the victim's binding stays.
#[test]
fn a_replayed_register_authorization_is_challenged_not_bound() {
    let mut reg = registrar();
    let req = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n");
    let challenge = answer_of(&reg.register(0, &req, flow())).clone();
    let signed = authorize(&req, &challenge, "alice", "secret", Algorithm::Md5);
    assert!(matches!(reg.register(1, &signed, flow()), Registered::Publish { .. }));

    let credentials = signed.header("Authorization").unwrap().into_owned();
    let attacker = Flow {
        transport: Transport::Udp,
        remote: "192.0.2.66:5060".parse().unwrap(),
    };
    let text = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bKevil\r\n\
         From: <sip:alice@{DOMAIN}>;tag=evil\r\nTo: <sip:alice@{DOMAIN}>\r\nCall-ID: evil-1\r\n\
         CSeq: 7 REGISTER\r\nContact: <sip:alice@192.0.2.66:5060>\r\nAuthorization: {credentials}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let replay = SipMessage::parse(text.as_bytes()).unwrap();
    let outcome = reg.register(2, &replay, attacker);
    let answer = answer_of(&outcome);
    assert_eq!(answer.status(), Some(401));
    assert!(offered(answer, "WWW-Authenticate")
        .iter()
        .all(|c| c.contains("stale=true")));
    let contacts: Vec<String> = reg
        .contacts("alice", 3)
        .iter()
        .map(|b| b.contact.uri.to_string())
        .collect();
    assert_eq!(contacts, vec!["sip:alice@127.0.0.1:5061".to_string()]);
}

/// RFC 3261 §22.4 / RFC 7616 §3.4.6: credentials made for one party's
/// Request-URI do not authorize a request for another (a captured INVITE
/// credential cannot call someone else): 400. A user-less digest URI (a
/// server's, as SIPp writes the proxy's address) is accepted.
#[test]
fn credentials_for_another_party_are_refused() {
    assert!(digest_uri_fits("sip:bob@overlay.test", "sip:bob@overlay.test"));
    assert!(digest_uri_fits("sip:bob@OVERLAY.test", "sip:bob@overlay.test"));
    assert!(digest_uri_fits("sip:127.0.0.1:5060", "sip:bob@overlay.test"));
    assert!(!digest_uri_fits("sip:bob@overlay.test", "sip:carol@overlay.test"));
    assert!(!digest_uri_fits("not a uri", "sip:carol@overlay.test"));

    let mut reg = registrar();
    let req = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n");
    let challenge = answer_of(&reg.register(0, &req, flow())).clone();
    let signed = authorize(&req, &challenge, "alice", "secret", Algorithm::Md5);
    let text = String::from_utf8(signed.to_bytes()).unwrap();
    let text = text.replace(&format!("uri=\"sip:{DOMAIN}\""), &format!("uri=\"sip:bob@{DOMAIN}\""));
    let elsewhere = SipMessage::parse(text.as_bytes()).unwrap();
    let outcome = reg.register(1, &elsewhere, flow());
    let answer = answer_of(&outcome);
    let text = String::from_utf8(answer.to_bytes()).unwrap();
    assert!(
        text.starts_with("SIP/2.0 400 Digest URI Does Not Match The Request-URI\r\n"),
        "{text}"
    );
    assert!(reg.contacts("alice", 2).is_empty());
}

/// Without qop the digest response does not cover `nc`, so a higher `nc`
/// makes no replay fresh: such a nonce authorizes once.
#[test]
fn without_qop_a_nonce_authorizes_once_whatever_nc_says() {
    let mut reg = registrar_offering(&[Algorithm::Md5]);
    let req = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n");
    let challenge = answer_of(&reg.register(0, &req, flow())).clone();
    // A phone that ignores qop (RFC 2069 style) but still sends nc.
    let offer = offered(&challenge, "WWW-Authenticate")
        .remove(0)
        .replace(", qop=\"auth\"", "");
    let c = Credentials::answering(
        &offer,
        "alice",
        "secret",
        ("REGISTER", &format!("sip:{DOMAIN}")),
        ("c", 1),
    )
    .unwrap();
    assert_eq!(c.qop, None);
    let with_nc = |nc: &str| {
        let line = format!("Authorization: {}, nc={nc}\r\n", c.header_value());
        register("alice", 2, &format!("Contact: <sip:alice@127.0.0.1:5061>\r\n{line}"))
    };
    assert!(matches!(
        reg.register(1, &with_nc("00000001"), flow()),
        Registered::Publish { .. }
    ));
    let again = reg.register(2, &with_nc("00000009"), flow());
    assert_eq!(
        answer_of(&again).status(),
        Some(401),
        "a higher nc does not make a replay fresh"
    );
}

/// Issue 36 §6: while as many registrations are being stored in the
/// overlay as the budget allows, a REGISTER gets 503 with Retry-After
/// before any digest work; once a store is answered, REGISTERs are taken.
#[test]
fn registrations_past_the_store_budget_are_shed_at_once() {
    let mut reg = registrar().with_max_publishing(1);
    let alice = register("alice", 1, "Contact: <sip:alice@127.0.0.1:5061>\r\n");
    assert!(matches!(
        registered(&mut reg, 0, alice, Algorithm::Md5),
        Registered::Publish { .. }
    ));
    let bob = register("bob", 1, "Contact: <sip:bob@127.0.0.1:5062>\r\n");
    let shed = reg.register(1, &bob, flow());
    let answer = answer_of(&shed);
    assert_eq!(answer.status(), Some(503));
    assert_eq!(answer.header("Retry-After").as_deref(), Some("5"));
    reg.published();
    assert_eq!(
        answer_of(&reg.register(2, &bob, flow())).status(),
        Some(401),
        "room again"
    );
}
