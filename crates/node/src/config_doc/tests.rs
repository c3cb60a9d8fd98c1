use super::*;
use crate::pki::{generate_key, make_csr, Authority};
use std::time::Duration;

const OVERLAY: &str = "test.p2psip.example";
const RFC_EXAMPLE: &str = include_str!("../../tests/data/rfc6940-example-config.xml");

struct Setup {
    ca: Authority,
    signer: CertSecurity,
    config: Configuration,
}

fn setup() -> Setup {
    let now = SystemTime::now();
    let ca = Authority::create(OVERLAY, now).unwrap();
    let key = generate_key().unwrap();
    let id = NodeId::from_u128(0x5151);
    let cert = ca
        .issue_node(&make_csr(&key, "signer").unwrap(), "signer@x", &[id], OVERLAY, now)
        .unwrap();
    let trust = TrustStore::new(OVERLAY, 16, vec![ca.cert_der.clone()], Vec::new());
    let signer = CertSecurity::new(key, cert.to_vec(), id, trust).unwrap();
    let mut config = Configuration::new(OVERLAY);
    config.root_certs = vec![ca.cert_der.clone()];
    config.enrollment_servers = vec!["https://127.0.0.1:8443".into()];
    config.bootstrap_nodes = vec!["127.0.0.1:6084".parse().unwrap(), "[::1]:7000".parse().unwrap()];
    config.multicast_bootstrap = Some("239.255.60.84:6084".parse().unwrap());
    config.configuration_signers = vec![id];
    config.kind_signers = vec![id];
    config.bad_nodes = vec![NodeId::from_u128(666)];
    config.storage_quota = StorageQuota {
        per_user_bytes: 4096,
        per_node_bytes: 8192,
        total_bytes: 1 << 24,
    };
    config.proxy_peers = ProxyPeers {
        peers: vec![NodeId::from_u128(0x70), NodeId::from_u128(0x71)],
        outsiders: sip::proxy::Outsiders::Everyone,
    };
    config.expiration = Some(rfc3339(now + Duration::from_secs(86_400)));
    Setup { ca, signer, config }
}

fn verifier(s: &Setup) -> CertVerifier {
    CertVerifier::new(TrustStore::new(OVERLAY, 16, vec![s.ca.cert_der.clone()], Vec::new()))
}

#[test]
fn a_signed_document_reads_back_equal_and_verifies() {
    let s = setup();
    let doc = s.config.to_signed_document(&s.signer);
    let parsed = SignedConfiguration::parse(&doc, Some(OVERLAY)).unwrap();
    assert_eq!(parsed.configuration, s.config);
    parsed.verify(&verifier(&s)).unwrap();
    let engine = parsed.configuration.overlay_config();
    assert_eq!(engine.kinds.len(), 4);
    assert_eq!(engine.chord.update_interval_ms, 600_000);
    assert_eq!(engine.storage_quota.per_node_bytes, 8192);
}

#[test]
fn the_storage_quota_takes_defaults_for_what_it_leaves_out_and_refuses_nonsense() {
    let s = setup();
    let doc = s.config.to_signed_document(&s.signer);
    let partial = doc.replacen(" per-node=\"8192\"", "", 1);
    let parsed = SignedConfiguration::parse(&partial, None).unwrap();
    assert_eq!(
        parsed.configuration.storage_quota,
        StorageQuota {
            per_node_bytes: StorageQuota::DEFAULT.per_node_bytes,
            ..s.config.storage_quota
        }
    );
    for bad in ["per-user=\"0\"", "per-user=\"-1\"", "per-user=\"4 KB\""] {
        let doc = doc.replacen("per-user=\"4096\"", bad, 1);
        let err = SignedConfiguration::parse(&doc, None).unwrap_err().to_string();
        assert!(err.contains("storage-quota") && err.contains("per-user"), "{err}");
    }
}

/// §9, §11.1: turn-density reads back; absent it is 1; above 20 (more
/// places than TURN-SERVICE's NODE-MULTIPLE lets a relay store at) the
/// document is refused with the reason.
#[test]
fn turn_density_reads_back_defaults_to_one_and_stays_within_twenty() {
    let s = setup();
    let doc = s.config.to_signed_document(&s.signer);
    assert!(doc.contains("<turn-density>1</turn-density>"), "{doc}");
    let five = doc.replacen("<turn-density>1</turn-density>", "<turn-density>5</turn-density>", 1);
    assert_eq!(
        SignedConfiguration::parse(&five, None)
            .unwrap()
            .configuration
            .turn_density,
        5
    );
    let absent = doc.replacen("<turn-density>1</turn-density>", "", 1);
    assert_eq!(
        SignedConfiguration::parse(&absent, None)
            .unwrap()
            .configuration
            .turn_density,
        1
    );
    let too_many = doc.replacen("<turn-density>1</turn-density>", "<turn-density>21</turn-density>", 1);
    let err = SignedConfiguration::parse(&too_many, None).unwrap_err().to_string();
    assert!(err.contains("turn-density") && err.contains("at most 20"), "{err}");
}

/// Decision 0036: the proxy peers' element reads back as written; a list
/// of users, `none`, no peer, or a bad Node-ID are told apart.
#[test]
fn the_proxy_peers_read_back_and_nonsense_is_refused() {
    let s = setup();
    let doc = s.config.to_signed_document(&s.signer);
    assert!(doc.contains("<p2psip:proxy-peers outsiders=\"all\">"), "{doc}");
    let users = doc.replacen("outsiders=\"all\"", "outsiders=\"alice, bob\"", 1);
    let parsed = SignedConfiguration::parse(&users, None).unwrap().configuration;
    assert_eq!(
        parsed.proxy_peers.outsiders,
        sip::proxy::Outsiders::parse("alice,bob").unwrap()
    );
    let left_out = doc.replacen(" outsiders=\"all\"", "", 1);
    let parsed = SignedConfiguration::parse(&left_out, None).unwrap().configuration;
    assert_eq!(parsed.proxy_peers.outsiders, sip::proxy::Outsiders::Nobody);
    assert_eq!(parsed.proxy_peers.peers, s.config.proxy_peers.peers);
    let first = format!(
        "<p2psip:proxy-peer>{}</p2psip:proxy-peer>",
        NodeId::from_u128(0x70).to_hex()
    );
    let second = format!(
        "<p2psip:proxy-peer>{}</p2psip:proxy-peer>",
        NodeId::from_u128(0x71).to_hex()
    );
    for (bad, expected) in [
        (doc.replacen("outsiders=\"all\"", "outsiders=\"a b\"", 1), "outsiders"),
        (
            doc.replacen(&first, "<p2psip:proxy-peer>xyz</p2psip:proxy-peer>", 1),
            "proxy-peer",
        ),
        (doc.replacen(&first, "", 1).replacen(&second, "", 1), "lists no"),
    ] {
        let err = SignedConfiguration::parse(&bad, None).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn one_changed_byte_breaks_the_signature() {
    let s = setup();
    let doc = s.config.to_signed_document(&s.signer);
    let tampered = doc.replacen("<initial-ttl>100", "<initial-ttl>101", 1);
    assert_ne!(doc, tampered);
    let parsed = SignedConfiguration::parse(&tampered, None).unwrap();
    assert!(matches!(
        parsed.verify(&verifier(&s)),
        Err(ConfigError::BadSignature(_))
    ));
}

#[test]
fn only_a_listed_configuration_signer_may_sign() {
    let mut s = setup();
    s.config.configuration_signers = vec![NodeId::from_u128(1)];
    let doc = s.config.to_signed_document(&s.signer);
    let parsed = SignedConfiguration::parse(&doc, None).unwrap();
    assert!(matches!(
        parsed.verify(&verifier(&s)),
        Err(ConfigError::NotAConfigurationSigner(_))
    ));
}

#[test]
fn kinds_must_be_signed_by_a_kind_signer() {
    let mut s = setup();
    s.config.kind_signers = vec![NodeId::from_u128(1)];
    let doc = s.config.to_signed_document(&s.signer);
    let parsed = SignedConfiguration::parse(&doc, None).unwrap();
    assert!(matches!(parsed.verify(&verifier(&s)), Err(ConfigError::UnsignedKind(k)) if k == "SIP-REGISTRATION"));
}

#[test]
fn a_document_from_another_ca_does_not_verify() {
    let s = setup();
    let doc = s.config.to_signed_document(&s.signer);
    let other = setup();
    let parsed = SignedConfiguration::parse(&doc, None).unwrap();
    assert!(matches!(
        parsed.verify(&verifier(&other)),
        Err(ConfigError::BadSignature(_))
    ));
}

#[test]
fn an_unsigned_document_is_refused() {
    let s = setup();
    let doc = s.config.to_signed_document(&s.signer);
    let start = doc.find("<signature>").unwrap();
    let end = doc.find("</signature>").unwrap() + "</signature>".len();
    let unsigned = format!("{}{}", &doc[..start], &doc[end..]);
    let parsed = SignedConfiguration::parse(&unsigned, None).unwrap();
    assert!(matches!(parsed.verify(&verifier(&s)), Err(ConfigError::Unsigned)));
}

#[test]
fn the_rfc_example_reads_once_its_unknown_mandatory_extension_is_gone() {
    // §11.1: a node that does not support a mandatory extension must not join.
    let err = SignedConfiguration::parse(RFC_EXAMPLE, None).unwrap_err();
    assert!(err.to_string().contains("config-ext1 is not supported"), "{err}");
    let start = RFC_EXAMPLE.find("<mandatory-extension>").unwrap();
    let end = RFC_EXAMPLE.find("</mandatory-extension>").unwrap() + "</mandatory-extension>".len();
    let doc = format!("{}{}", &RFC_EXAMPLE[..start], &RFC_EXAMPLE[end..]);
    // Its Node-IDs are 8 bytes, abbreviations for a 16-byte overlay.
    let err = SignedConfiguration::parse(&doc, None).unwrap_err();
    assert!(err.to_string().contains("not a 16-byte Node-ID"), "{err}");
    let mut doc = doc;
    for short in [
        "47112162e84c69ba",
        "6eba45d31a900c06",
        "6ebc45d31a900c06",
        "6ebc45d31a900ca6",
    ] {
        doc = doc.replace(short, &short.repeat(2));
    }
    let c = SignedConfiguration::parse(&doc, Some("overlay.example.org"))
        .unwrap()
        .configuration;
    assert_eq!(c.sequence, 22);
    assert_eq!(c.bootstrap_nodes.len(), 3);
    assert_eq!(
        c.bootstrap_nodes[2],
        "[2001:db8::1]:6084".parse::<std::net::SocketAddr>().unwrap()
    );
    assert_eq!(c.max_message_size, 4000);
    assert_eq!(c.initial_ttl, 30);
    assert_eq!(c.turn_density, 20);
    assert_eq!((c.chord_update_interval_s, c.chord_ping_interval_s), (400, 30));
    assert_eq!(c.kinds[0].id, kind_id::SIP_REGISTRATION);
    assert_eq!(c.kinds[1].id, 2000);
    assert_eq!(c.kinds[1].access, AccessPolicy::NodeMultiple { max: 3 });
    assert_eq!(c.bad_nodes.len(), 2);
    assert_eq!(c.kind_signers.len(), 2);
    let other = SignedConfiguration::parse(&doc, Some("other.example.net")).unwrap();
    assert_eq!(other.configuration.instance_name, "other.example.net");
}

#[test]
fn hostile_or_broken_documents_get_errors() {
    let deep = format!("<overlay xmlns=\"{NS_BASE}\">{}", "<a>".repeat(100));
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "overlay"),
        ("<foo/>".into(), "overlay"),
        (format!("<overlay xmlns=\"{NS_BASE}\"><configuration>"), "end"),
        (deep, "deeper"),
        (format!("<overlay xmlns=\"{NS_BASE}\"><x:y/></overlay>"), "prefix"),
        (format!("<overlay xmlns=\"{NS_BASE}\"><configuration instance-name=\"a\"><initial-ttl>&bomb;</initial-ttl></configuration></overlay>"), "entity"),
        (format!("<overlay xmlns=\"{NS_BASE}\"><configuration instance-name=\"a\"><node-id-length>99</node-id-length></configuration></overlay>"), "between 16 and 20"),
        (format!("<overlay xmlns=\"{NS_BASE}\"><configuration instance-name=\"a\"><kind-signer>xyz</kind-signer></configuration></overlay>"), "Node-ID"),
        (format!("<overlay xmlns=\"{NS_BASE}\"><configuration instance-name=\"a\"><bootstrap-node address=\"nowhere\"/></configuration></overlay>"), "IP address"),
        (format!("<overlay xmlns=\"{NS_BASE}\"><configuration instance-name=\"a\"><root-cert>!!</root-cert></configuration></overlay>"), "base64"),
        (format!("<overlay xmlns=\"{NS_BASE}\"><configuration instance-name=\"a\"><topology-plugin>KADEMLIA</topology-plugin></configuration></overlay>"), "not supported"),
        (format!("<overlay xmlns=\"{NS_BASE}\"><configuration instance-name=\"b\"/></overlay>"), "no <configuration>"),
    ];
    for (doc, expect) in cases {
        let err = SignedConfiguration::parse(&doc, Some("a")).unwrap_err().to_string();
        assert!(err.contains(expect), "{doc:?}: {err}");
    }
    let huge = " ".repeat(MAX_DOCUMENT_SIZE + 1);
    assert!(matches!(
        SignedConfiguration::parse(&huge, None),
        Err(ConfigError::TooLarge)
    ));
}

#[test]
fn expiration_is_rfc3339_utc() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = SignedConfiguration::parse(&text, None);
    }

    #[test]
    fn mangled_documents_never_panic(cut in 0usize..4000, byte in 0u8..128) {
        let s = setup();
        let doc = s.config.to_signed_document(&s.signer);
        let mut bytes = doc.into_bytes();
        let i = cut % bytes.len();
        bytes[i] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            if let Ok(parsed) = SignedConfiguration::parse(&text, None) {
                let _ = parsed.verify(&verifier(&s));
            }
        }
    }
}
