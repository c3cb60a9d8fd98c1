//! Any bytes as a configuration document (RFC 6940 §11.1) or a kind block
//! (§6.5.4.1), which ConfigUpdates from other peers and the configuration
//! server bring: the parser and the daemon's judge give an answer or an
//! error, never a panic, and never take what no configuration-signer
//! signed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::config_doc::SignedConfiguration;
use node::config_judge::DocumentJudge;
use overlay::ConfigurationJudge;
use std::sync::LazyLock;

/// A judge for an overlay whose only signer is a key this target never
/// signs with, so nothing the fuzzer writes may be taken.
static JUDGE: LazyLock<DocumentJudge> = LazyLock::new(|| {
    let now = std::time::SystemTime::now();
    let ca = node::pki::Authority::create("fuzz.test", now).expect("a CA");
    let mut config = node::config_doc::Configuration::new("fuzz.test");
    config.root_certs = vec![ca.cert_der.clone()];
    config.configuration_signers = vec![reload_wire::NodeId::from_u128(1)];
    config.kind_signers = vec![reload_wire::NodeId::from_u128(1)];
    // Unsigned: the judge reads the current document without checking it.
    let key = node::pki::generate_key().expect("a key");
    let id = reload_wire::NodeId::from_u128(2);
    let csr = node::pki::make_csr(&key, "someone").expect("a CSR");
    let cert = ca.issue_node(&csr, "someone@x", &[id], "fuzz.test", now).expect("a cert");
    let signer = node::identity::CertSecurity::new(key, cert.to_vec(), id, config.trust_store()).expect("a signer");
    let document = config.to_signed_document(&signer);
    DocumentJudge::new(&document, ca.cert_der.to_vec()).expect("the current document reads")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SignedConfiguration::parse(text, None);
        let _ = SignedConfiguration::parse(text, Some("fuzz.test"));
    }
    // A fresh copy each run: what one input taught the judge must not
    // carry over to the next.
    let mut judge = JUDGE.clone();
    assert!(judge.judge_document(data).is_err(), "taken without a signer's signature");
    let _ = judge.check_runnable(data);
    assert!(judge.judge_kinds(&[data.to_vec()]).is_err(), "kinds taken unsigned");
});
