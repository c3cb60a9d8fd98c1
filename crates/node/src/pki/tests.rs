use super::*;

const OVERLAY: &str = "test.p2psip.example";
const RSA_KEY: &str = include_str!("../../tests/data/rsa-2048.key.pem");

fn now() -> SystemTime {
    SystemTime::now()
}

fn node(v: u128) -> NodeId {
    NodeId::from_u128(v)
}

fn enrolled(ca: &Authority, user: &str, ids: &[NodeId]) -> CertificateDer<'static> {
    let key = generate_key().unwrap();
    let csr = make_csr(&key, user).unwrap();
    ca.issue_node(&csr, user, ids, OVERLAY, now()).unwrap()
}

fn trust(ca: &Authority) -> TrustStore {
    TrustStore::new(OVERLAY, 16, vec![ca.cert_der.clone()], Vec::new())
}

#[test]
fn reload_uri_is_the_hex_of_a_one_entry_destination_list() {
    // §14.15: type node_id (1), length 16, then the Node-ID.
    let uri = reload_uri(&node(0xabc), OVERLAY);
    assert_eq!(uri, format!("reload://0110{:032x}@{OVERLAY}/", 0xabc));
    assert_eq!(node_id_from_uri(&uri, OVERLAY, 16), Some(node(0xabc)));
}

#[test]
fn uri_parsing_accepts_a_bare_node_id_and_rejects_other_overlays_and_junk() {
    let bare = format!("reload://{:032x}@{OVERLAY}/", 7);
    assert_eq!(node_id_from_uri(&bare, OVERLAY, 16), Some(node(7)));
    let other = reload_uri(&node(7), "other.example");
    assert_eq!(node_id_from_uri(&other, OVERLAY, 16), None);
    for junk in [
        "reload://zz@x/",
        "http://a@b/",
        "reload://@test.p2psip.example/",
        "reload://01",
    ] {
        assert_eq!(node_id_from_uri(junk, OVERLAY, 16), None, "{junk}");
    }
    // A resource destination is not a Node-ID.
    let resource = format!("reload://0210{:032x}@{OVERLAY}/", 7);
    assert_eq!(node_id_from_uri(&resource, OVERLAY, 16), None);
}

#[test]
fn issued_certificate_has_an_empty_subject_and_exactly_the_node_ids_and_user() {
    let ca = Authority::create(OVERLAY, now()).unwrap();
    let cert = enrolled(&ca, "alice@test.p2psip.example", &[node(1), node(2)]);
    let info = trust(&ca).verify(&cert, &[], now()).unwrap();
    assert_eq!(info.user, "alice@test.p2psip.example");
    assert_eq!(info.node_ids, vec![node(1), node(2)]);
    use x509_parser::prelude::*;
    let (_, parsed) = X509Certificate::from_der(&cert).unwrap();
    assert_eq!(
        parsed.subject().iter().count(),
        0,
        "§11.3: the subject DN MUST be empty"
    );
    let san = parsed.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names.len(),
        3,
        "nothing but the two Node-IDs and the user"
    );
}

#[test]
fn the_server_not_the_csr_decides_the_names() {
    let ca = Authority::create(OVERLAY, now()).unwrap();
    let key = generate_key().unwrap();
    let csr = make_csr(&key, "mallory@evil.example").unwrap();
    let cert = ca
        .issue_node(&csr, "bob@test.p2psip.example", &[node(9)], OVERLAY, now())
        .unwrap();
    let info = cert_info(&cert, OVERLAY, 16).unwrap();
    assert_eq!(info.user, "bob@test.p2psip.example");
}

#[test]
fn a_foreign_ca_an_expired_certificate_and_a_bad_node_are_refused() {
    let ca = Authority::create(OVERLAY, now()).unwrap();
    let foreign = Authority::create(OVERLAY, now()).unwrap();
    let cert = enrolled(&foreign, "eve@x", &[node(3)]);
    assert!(matches!(
        trust(&ca).verify(&cert, &[], now()),
        Err(PkiError::Untrusted(_))
    ));

    let key = generate_key().unwrap();
    let csr = make_csr(&key, "old@x").unwrap();
    let day = Duration::from_secs(86_400);
    let expired = ca
        .issue_node_valid(&csr, "old@x", &[node(4)], OVERLAY, (now() - 10 * day, now() - day))
        .unwrap();
    assert!(matches!(
        trust(&ca).verify(&expired, &[], now()),
        Err(PkiError::Expired)
    ));

    let good = enrolled(&ca, "bad@x", &[node(5)]);
    let banned = TrustStore::new(OVERLAY, 16, vec![ca.cert_der.clone()], vec![node(5)]);
    assert!(matches!(banned.verify(&good, &[], now()), Err(PkiError::BadNode(n)) if n == node(5)));
}

#[test]
fn a_certificate_without_a_node_id_of_this_overlay_is_refused() {
    let ca = Authority::create(OVERLAY, now()).unwrap();
    let key = generate_key().unwrap();
    let csr = make_csr(&key, "a@x").unwrap();
    let cert = ca
        .issue_node(&csr, "a@x", &[node(1)], "another.overlay", now())
        .unwrap();
    assert!(matches!(trust(&ca).verify(&cert, &[], now()), Err(PkiError::NoNodeId)));
}

#[test]
fn an_rsa_ca_and_an_rsa_node_key_verify_too() {
    let ca = Authority::create_with_key(OVERLAY, key_from_pem(RSA_KEY).unwrap(), now()).unwrap();
    let rsa_node = key_from_pem(RSA_KEY).unwrap();
    let csr = make_csr(&rsa_node, "r@x").unwrap();
    let cert = ca.issue_node(&csr, "r@x", &[node(6)], OVERLAY, now()).unwrap();
    assert_eq!(trust(&ca).verify(&cert, &[], now()).unwrap().node_ids, vec![node(6)]);
}

#[test]
fn garbage_is_a_bad_csr_not_a_panic() {
    let ca = Authority::create(OVERLAY, now()).unwrap();
    for junk in [&b""[..], b"\x30\x03\x02\x01\x00", &[0xff; 300]] {
        assert!(matches!(
            ca.issue_node(junk, "a@x", &[node(1)], OVERLAY, now()),
            Err(PkiError::BadCsr(_))
        ));
    }
    assert!(cert_info(b"junk", OVERLAY, 16).is_err());
}

#[test]
fn authority_round_trips_through_pem() {
    let ca = Authority::create(OVERLAY, now()).unwrap();
    let again = Authority::load(&ca.cert_pem, &ca.key_pem()).unwrap();
    let cert = enrolled(&again, "a@x", &[node(1)]);
    assert!(trust(&ca).verify(&cert, &[], now()).is_ok());
    assert_eq!(pem_to_der(&der_to_pem(&cert)).unwrap(), cert);
}
