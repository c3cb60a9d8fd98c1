//! The configuration document we write is valid against the RELAX NG
//! grammar of RFC 6940 §11.1.1 (`tests/data/rfc6940-config.rnc`, the
//! grammar as printed), judged by jing (Debian package `jing`). Outside CI
//! a missing jing skips the test with a message; with CI=true it fails.

use node::config_doc::Configuration;
use node::identity::CertSecurity;
use node::pki::{generate_key, make_csr, Authority, TrustStore};
use reload_wire::NodeId;
use std::process::Command;
use std::time::SystemTime;

fn jing_available() -> bool {
    let found = Command::new("jing").arg("-h").output().is_ok();
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("jing is required in CI: apt-get install jing (.ci/run does this)");
        }
        eprintln!("skipping: jing not installed (apt-get install jing)");
    }
    found
}

#[test]
fn the_written_configuration_document_is_valid_against_the_rfc_grammar() {
    if !jing_available() {
        return;
    }
    let overlay = "schema.p2psip.example";
    let now = SystemTime::now();
    let ca = Authority::create(overlay, now).unwrap();
    let key = generate_key().unwrap();
    let id = NodeId::from_u128(42);
    let cert = ca
        .issue_node(&make_csr(&key, "s").unwrap(), "s@x", &[id], overlay, now)
        .unwrap();
    let trust = TrustStore::new(overlay, 16, vec![ca.cert_der.clone()], Vec::new());
    let signer = CertSecurity::new(key, cert.to_vec(), id, trust).unwrap();
    let mut config = Configuration::new(overlay);
    config.root_certs = vec![ca.cert_der.clone()];
    config.enrollment_servers = vec!["https://127.0.0.1:8443".into()];
    config.bootstrap_nodes = vec!["127.0.0.1:6084".parse().unwrap()];
    config.multicast_bootstrap = Some("239.255.60.84:6084".parse().unwrap());
    config.configuration_signers = vec![id];
    config.kind_signers = vec![id];
    config.bad_nodes = vec![NodeId::from_u128(7)];
    config.proxy_peers = node::config_doc::ProxyPeers {
        peers: vec![NodeId::from_u128(8), NodeId::from_u128(9)],
        outsiders: sip::proxy::Outsiders::parse("alice,bob").unwrap(),
    };
    config.expiration = Some(node::config_doc::rfc3339(now));
    let doc = config.to_signed_document(&signer);

    let dir = std::env::temp_dir().join(format!("p2psip-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reload-config.xml");
    std::fs::write(&path, &doc).unwrap();
    let grammar = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc6940-config.rnc");
    let out = Command::new("jing").arg("-c").arg(grammar).arg(&path).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = report.lines().filter(|l| !l.starts_with("[warning]")).collect();
    assert!(out.status.success() && errors.is_empty(), "jing: {report}\n{doc}");

    // The judge is not asleep: the RFC's own example carries
    // overlay-reliability-timer, which the grammar omits.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc6940-example-config.xml");
    let out = Command::new("jing")
        .arg("-c")
        .arg(grammar)
        .arg(example)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("overlay-reliability-timer"));
    std::fs::remove_dir_all(&dir).ok();
}
